"""Run the book's notebooks with papermill, record what produced each chapter, check the book.

``python -m renyilib.experiments.report --profile cpu`` executes every chapter
listed under ``generated/`` in ``book/_toc.yml`` (in that order; ``--notebooks``
names a subset) from ``notebooks/<name>.ipynb`` into
``book/generated/<name>.ipynb``. The executed copies are committed: the book
renders them without executing anything (``execute_notebooks: "off"``), so a
fresh clone's ``jupyter-book build book/`` shows every chapter.

Each executed chapter is made to read like a paper and records what produced it:

* every code cell is tagged ``hide-input`` (collapsed behind a toggle), the
  ``parameters`` cell and papermill's ``injected-parameters`` cell are tagged
  ``remove-cell``; stderr streams (warnings, progress bars) are removed from
  the outputs and written to ``<book>/_build/report-logs/<name>.stderr.log``;
  papermill's per-cell metadata (absolute paths, timings) is dropped;
* ``metadata["renyilib"]`` holds the profile, the ``_config.yml`` sections the
  notebook read (every :func:`~renyilib.experiments.config.load_profile` call,
  recorded while it ran, with the hash of what it returned), a hash of the
  source notebook, the code version, the date, the machine and the wall time.

:func:`chapter_status` compares those records with the current ``_config.yml``
and ``notebooks/``: a chapter is ``missing``, ``unrecorded``, ``stale`` (a
section it read changed or disappeared, or its notebook changed) or ``ok``.
The book's Sphinx extension (``book/_ext/renyibook.py``) refuses to build a book
with a chapter that is not ``ok``, and ``tests/test_book.py`` fails on one; both
name the chapter and the command that regenerates it (``make report
NOTEBOOKS=<name>``). ``python -m renyilib.experiments.report --check`` lists the
status of every chapter, ``--stale`` reruns only the chapters that are not ok
(a chapter whose code cells are unchanged and whose sections still match only
gets its Markdown and tags refreshed from the notebook, :func:`refresh_text`).

While it runs, the driver prints which chapter runs, its wall time, the time
so far and an estimate of what is left (from the wall times recorded in the
chapters' previous runs in the same profile, else the mean of this run's).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import functools
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from renyilib.experiments import config as config_module
from renyilib.experiments.config import PROFILES, find_config
from renyilib.experiments.io import atomic_write, code_version, config_hash

__all__ = [
    "METADATA_KEY",
    "SECTIONS_ENV",
    "ChapterStatus",
    "toc_chapters",
    "source_hash",
    "record_profiles",
    "finalize_notebook",
    "chapter_metadata",
    "chapter_status",
    "book_problems",
    "refresh_text",
    "estimate_remaining",
    "prepare_book",
    "run_notebooks",
    "main",
]

#: Key of the executed notebook's metadata that holds the driver's record.
METADATA_KEY = "renyilib"
#: Environment variable naming the file that :func:`record_profiles` appends to.
SECTIONS_ENV = "RENYI_REPORT_SECTIONS"
#: Tag of the cell the driver puts first into the notebook it executes (removed afterwards).
INJECTED_TAG = "renyilib-report-hook"
INJECTED_SOURCE = (
    "# Recorded by the report driver: which _config.yml sections this chapter reads.\n"
    "from renyilib.experiments.report import record_profiles\n"
    "\n"
    "record_profiles()"
)
#: Environment of the kernel: no progress bars in a chapter.
KERNEL_ENV = {"TQDM_DISABLE": "1"}
#: Tags that already say how a cell shows; other code cells get ``hide-input``.
_VISIBILITY_TAGS = {
    "remove-cell",
    "remove-input",
    "remove-output",
    "hide-cell",
    "hide-input",
    "hide-output",
}
_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


@dataclass(frozen=True)
class ChapterStatus:
    """Whether the committed copy of one chapter still matches what would produce it.

    Attributes:
        name: Chapter (notebook) name, e.g. ``"zoo"``.
        state: ``"ok"``, ``"missing"`` (no executed copy), ``"unrecorded"`` (a
            copy without the driver's metadata) or ``"stale"``.
        reasons: One sentence per mismatch (empty when ``ok``).
        profile: The profile the copy ran in (``None`` unless recorded).
        sections_ok: Whether every ``_config.yml`` section it read is unchanged.
        text_only: Stale only because the notebook's Markdown or tags changed,
            its code cells unchanged: :func:`refresh_text` (``make
            report-stale``) brings it up to date without executing it.
    """

    name: str
    state: str
    reasons: tuple[str, ...] = ()
    profile: str | None = None
    sections_ok: bool = True
    text_only: bool = False

    @property
    def ok(self) -> bool:
        return self.state == "ok"

    @property
    def command(self) -> str:
        """The command that regenerates this chapter (in its recorded profile)."""
        profile = f" PROFILE={self.profile}" if self.profile not in (None, "cpu") else ""
        if self.text_only:
            return f"make report-stale NOTEBOOKS={self.name}{profile} (refreshes, runs nothing)"
        return f"make report NOTEBOOKS={self.name}{profile}"

    def message(self) -> str:
        """One line: the chapter, what is wrong, and the command that fixes it."""
        what = {
            "missing": "has no executed copy",
            "unrecorded": "was not produced by the report driver (no run record)",
            "stale": "is stale",
        }.get(self.state, "is ok")
        detail = f": {'; '.join(self.reasons)}" if self.reasons else ""
        return f"chapter {self.name!r} {what}{detail}; regenerate it with `{self.command}`"


def toc_chapters(book: str | os.PathLike = "book") -> list[str]:
    """Names of the notebook chapters in ``<book>/_toc.yml``, in reading order.

    A chapter is a toc entry ``generated/<name>``: the executed copy of
    ``notebooks/<name>.ipynb``. Other entries (``intro``, ``notes``) are pages.

    Raises:
        FileNotFoundError: ``book`` has no ``_toc.yml``.
    """
    toc_path = Path(book) / "_toc.yml"
    if not toc_path.is_file():
        raise FileNotFoundError(f"book must be a Jupyter Book folder with _toc.yml; got {book}")
    toc = yaml.safe_load(toc_path.read_text()) or {}
    names: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            file = node.get("file")
            if isinstance(file, str) and file.startswith("generated/"):
                names.append(Path(file).stem)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return list(dict.fromkeys(names))


def _text(source: str | list[str]) -> str:
    return "".join(source) if isinstance(source, list) else source


def _tags(cell: dict) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _ran_code(executed: dict) -> list[dict]:
    """The code cells of an executed copy that came from its notebook (not papermill's)."""
    return [
        c
        for c in executed.get("cells", [])
        if c.get("cell_type") == "code" and "injected-parameters" not in _tags(c)
    ]


def _same_code(executed: dict, source: dict) -> bool:
    code = [c for c in source.get("cells", []) if c.get("cell_type") == "code"]
    ran = _ran_code(executed)
    return [_text(c.get("source", "")) for c in ran] == [_text(c.get("source", "")) for c in code]


def source_hash(notebook: str | os.PathLike | dict) -> str:
    """Hash of a notebook's cells: type, source and tags (outputs and other metadata ignored).

    Tags count because they decide what a page shows (``hide-cell``,
    ``remove-input``, ...).

    Args:
        notebook: Path of an ``.ipynb`` file, or a notebook as a dict.
    """
    if isinstance(notebook, dict):
        nb = notebook
    else:
        nb = json.loads(Path(notebook).read_text())
    cells = [
        [cell.get("cell_type"), _text(cell.get("source", "")), _tags(cell)]
        for cell in nb.get("cells", [])
    ]
    return config_hash({"cells": cells})


def record_profiles(log: str | os.PathLike | None = None) -> bool:
    """Record every ``load_profile`` call of this process (the hook run first in a chapter).

    Wraps :func:`renyilib.experiments.config.load_profile` so that each call
    appends ``{"experiment", "profile", "hash"}`` (the :func:`config_hash` of
    the returned settings) as one JSON line to ``log``. Code that imports
    ``load_profile`` after this call gets the wrapper; calling it twice wraps once.

    Args:
        log: File to append to; default ``$RENYI_REPORT_SECTIONS``.

    Returns:
        Whether recording is on (``False`` when no log file is given).
    """
    from renyilib.experiments import config

    log_path = log if log is not None else os.environ.get(SECTIONS_ENV)
    if not log_path:
        return False
    original = getattr(config.load_profile, "__wrapped__", config.load_profile)

    @functools.wraps(original)
    def load_profile(*args: Any, **kwargs: Any) -> dict[str, Any]:
        settings = original(*args, **kwargs)
        entry = {
            "experiment": settings["experiment"],
            "profile": settings["profile"],
            "hash": config_hash(settings),
        }
        with open(log_path, "a") as fh:
            fh.write(json.dumps(entry) + "\n")
        return settings

    config.load_profile = load_profile
    return True


def _read_sections(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    seen: dict[tuple[str, str], dict[str, str]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            seen[(entry["experiment"], entry["profile"])] = entry
    return [seen[k] for k in sorted(seen)]


def finalize_notebook(nb: dict, record: dict[str, Any]) -> tuple[dict, list[str]]:
    """Make an executed notebook read like a page of the book, and attach its run record.

    Removes the driver's hook cell; tags the ``parameters`` and
    ``injected-parameters`` cells ``remove-cell`` and every other code cell
    without a visibility tag ``hide-input``; removes stderr streams and widget
    outputs; drops papermill's and the kernel's per-cell and notebook metadata
    (paths, timings, widget state); stores ``record`` under
    ``metadata["renyilib"]``.

    Args:
        nb: The executed notebook (a dict, modified in place and returned).
        record: The run record (see :func:`run_notebooks`).

    Returns:
        The notebook and the text of the stderr streams removed from it.
    """
    if not isinstance(record, dict):
        raise TypeError(f"record must be a dict, got {type(record).__name__}")
    stderr: list[str] = []
    cells = []
    for cell in nb.get("cells", []):
        meta = cell.setdefault("metadata", {})
        tags = list(meta.get("tags", []))
        if INJECTED_TAG in tags:
            continue
        for key in ("papermill", "execution", "ExecuteTime", "collapsed", "scrolled"):
            meta.pop(key, None)
        if cell.get("cell_type") == "code":
            if {"parameters", "injected-parameters"} & set(tags):
                if "remove-cell" not in tags:
                    tags.append("remove-cell")
            elif not _VISIBILITY_TAGS & set(tags):
                tags.append("hide-input")
            outputs = []
            for out in cell.get("outputs", []):
                if out.get("output_type") == "stream" and out.get("name") == "stderr":
                    text = out.get("text", "")
                    stderr.append("".join(text) if isinstance(text, list) else text)
                    continue
                if _WIDGET_MIME in out.get("data", {}):
                    continue
                outputs.append(out)
            cell["outputs"] = outputs
        if tags:
            meta["tags"] = tags
        cells.append(cell)
    nb["cells"] = cells
    nb_meta = nb.setdefault("metadata", {})
    for key in ("papermill", "widgets"):
        nb_meta.pop(key, None)
    nb_meta[METADATA_KEY] = record
    return nb, stderr


def chapter_metadata(path: str | os.PathLike) -> dict[str, Any] | None:
    """The run record of an executed chapter, or ``None`` if it has none.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    nb = json.loads(Path(path).read_text())
    record = nb.get("metadata", {}).get(METADATA_KEY)
    return record if isinstance(record, dict) else None


def _project_config(book: Path, config: str | os.PathLike | None) -> Path:
    return Path(config) if config is not None else find_config(book)


def chapter_status(
    book: str | os.PathLike = "book",
    config: str | os.PathLike | None = None,
    notebooks: str | os.PathLike | None = None,
    names: Sequence[str] | None = None,
) -> list[ChapterStatus]:
    """Check every chapter's executed copy against ``_config.yml`` and its source notebook.

    A chapter is stale when a ``_config.yml`` section it read (experiment and
    profile) no longer exists or now hashes differently, or when
    ``notebooks/<name>.ipynb`` changed (or disappeared) since it ran.

    Args:
        book: The book folder (with ``_toc.yml`` and ``generated/``).
        config: The project's ``_config.yml``; found from ``book`` upwards if omitted.
        notebooks: Folder of the source notebooks; default ``notebooks/`` beside ``config``.
        names: Chapters to check; default every chapter of the toc.

    Returns:
        One :class:`ChapterStatus` per chapter, in toc order.
    """
    book = Path(book)
    config_path = _project_config(book, config)
    sources = Path(notebooks) if notebooks is not None else config_path.parent / "notebooks"
    load_profile = getattr(config_module.load_profile, "__wrapped__", config_module.load_profile)
    out = []
    for name in toc_chapters(book) if names is None else names:
        path = book / "generated" / f"{name}.ipynb"
        if not path.is_file():
            out.append(ChapterStatus(name, "missing"))
            continue
        record = chapter_metadata(path)
        if record is None:
            out.append(ChapterStatus(name, "unrecorded"))
            continue
        reasons: list[str] = []
        for section in record.get("sections", []):
            exp, prof = section["experiment"], section["profile"]
            where = f"experiments.{exp}.{prof} of _config.yml"
            try:
                settings = load_profile(exp, prof, config_path)
            except (KeyError, ValueError):
                reasons.append(f"{where} no longer exists")
                continue
            if config_hash(settings) != section["hash"]:
                reasons.append(f"{where} changed since it ran")
        sections_ok = not reasons
        text_only = False
        src = sources / f"{name}.ipynb"
        if not src.is_file():
            reasons.append(f"its source notebook {src.name} no longer exists")
        elif source_hash(src) != record.get("source_hash"):
            source = json.loads(src.read_text())
            if _same_code(json.loads(path.read_text()), source):
                reasons.append(f"the text or tags of notebooks/{src.name} changed since it ran")
                text_only = sections_ok and len(reasons) == 1
            else:
                reasons.append(f"notebooks/{src.name} changed since it ran")
        state = "stale" if reasons else "ok"
        out.append(
            ChapterStatus(
                name, state, tuple(reasons), record.get("profile"), sections_ok, text_only
            )
        )
    return out


def book_problems(
    book: str | os.PathLike = "book", config: str | os.PathLike | None = None
) -> list[str]:
    """One message per chapter of the book that is not ``ok`` (empty: the book may be built)."""
    return [s.message() for s in chapter_status(book, config) if not s.ok]


def refresh_text(
    name: str, src: str | os.PathLike = "notebooks", book: str | os.PathLike = "book"
) -> bool:
    """Bring a chapter's text and cell tags up to date with its notebook, without executing it.

    Possible only when the executed copy's code cells are exactly the
    notebook's (same sources, same order): then its outputs are what the
    notebook's code produces, and the Markdown cells and tags are taken from
    the notebook. The run record keeps its profile, sections, code version and
    time; its ``source_hash`` becomes the notebook's and ``text_refreshed_utc``
    says when. Whether the ``_config.yml`` sections still match is not checked
    here (see :func:`chapter_status`).

    Args:
        name: Chapter name.
        src: Folder of the source notebooks.
        book: Book folder.

    Returns:
        ``True`` if the copy was refreshed, ``False`` if its code differs (it
        must be executed again).

    Raises:
        FileNotFoundError: The notebook or the executed copy does not exist.
        ValueError: The executed copy has no run record.
    """
    source = json.loads((Path(src) / f"{name}.ipynb").read_text())
    path = Path(book) / "generated" / f"{name}.ipynb"
    executed = json.loads(path.read_text())
    record = executed.get("metadata", {}).get(METADATA_KEY)
    if not isinstance(record, dict):
        raise ValueError(
            f"{path} has no run record; execute it with `make report NOTEBOOKS={name}`"
        )
    injected = [c for c in executed["cells"] if "injected-parameters" in _tags(c)]
    if not _same_code(executed, source):
        return False
    outputs = iter(_ran_code(executed))
    cells = []
    for cell in source["cells"]:
        if cell.get("cell_type") != "code":
            cells.append(json.loads(json.dumps(cell)))
            continue
        done = next(outputs)
        cells.append({**done, "metadata": json.loads(json.dumps(cell.get("metadata", {})))})
        if "parameters" in _tags(cell):
            cells.extend(injected)
    refreshed = {
        **record,
        "source_hash": source_hash(source),
        "text_refreshed_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
    }
    nb, _ = finalize_notebook({**executed, "cells": cells}, refreshed)
    text = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    atomic_write(path, lambda t: t.write_text(text))
    return True


def estimate_remaining(
    done: dict[str, float], remaining: Sequence[str], previous: dict[str, float]
) -> float | None:
    """Seconds left: each remaining chapter's previous wall time, else the mean so far.

    >>> estimate_remaining({"a": 10.0}, ["b", "c"], {"b": 30.0})
    40.0
    >>> estimate_remaining({}, ["b"], {}) is None
    True
    """
    mean = sum(done.values()) / len(done) if done else None
    total = 0.0
    for name in remaining:
        if name in previous:
            total += previous[name]
        elif mean is not None:
            total += mean
        else:
            return None
    return total


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def prepare_book(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy a book's sources to ``dst`` for a separate build; keep ``dst``'s chapters.

    Everything of ``src`` but ``_build/`` and ``generated/`` replaces what
    ``dst`` had; ``dst/generated/`` (chapters executed there before) stays, so
    that a rerun of some chapters keeps the others. ``make report
    PROFILE=smoke`` executes into such a copy (``build/smoke-book``), so the
    committed chapters of ``book/`` are never overwritten by another profile's.

    Raises:
        FileNotFoundError: ``src`` is not a book folder.
        ValueError: ``dst`` is ``src``.
    """
    src, dst = Path(src), Path(dst)
    if not (src / "_toc.yml").is_file():
        raise FileNotFoundError(f"src must be a Jupyter Book folder with _toc.yml; got {src}")
    if dst.resolve() == src.resolve():
        raise ValueError("dst must differ from src")
    keep = {"generated", "_build"}
    if dst.exists():
        for child in dst.iterdir():
            if child.name in keep:
                continue
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
    dst.mkdir(parents=True, exist_ok=True)
    for child in src.iterdir():
        if child.name in keep:
            continue
        if child.is_dir():
            shutil.copytree(child, dst / child.name)
        else:
            shutil.copy2(child, dst / child.name)
    (dst / "generated").mkdir(exist_ok=True)
    return dst


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _machine() -> dict[str, Any]:
    import torch

    device = f"CUDA: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "CPU"
    return {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "device": device,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def run_notebooks(
    names: Sequence[str] | None,
    profile: str,
    src: str | os.PathLike = "notebooks",
    book: str | os.PathLike = "book",
    *,
    log: Callable[[str], None] = print,
) -> dict[str, float]:
    """Execute ``src/<name>.ipynb`` into ``<book>/generated/<name>.ipynb`` in ``profile``.

    Each chapter is executed with papermill (``profile`` passed to its
    ``parameters`` cell, the working directory ``<book>/generated``, progress
    bars off), made to read like a page (:func:`finalize_notebook`), given its
    run record and written by temp file and rename: a chapter that raises
    leaves the previous copy in place and its failed copy in
    ``<book>/_build/failed/<name>.ipynb``. The first failure stops the run.

    Args:
        names: Chapter names in execution order; ``None``: every chapter of the toc.
        profile: ``"smoke"``, ``"cpu"`` or ``"paper"``.
        src: Folder of the source notebooks.
        book: Book folder (``generated/`` inside it receives the chapters).
        log: Where progress lines go.

    Returns:
        Wall time in seconds per chapter.

    Raises:
        ValueError: Unknown ``profile``.
        FileNotFoundError: A named notebook does not exist.
        papermill.PapermillExecutionError: A notebook raised.
    """
    import papermill as pm

    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    src, book = Path(src), Path(book)
    names = list(toc_chapters(book) if names is None else names)
    missing = [n for n in names if not (src / f"{n}.ipynb").is_file()]
    if missing:
        raise FileNotFoundError(f"notebooks not found in {src}: {missing}")
    generated = book / "generated"
    generated.mkdir(parents=True, exist_ok=True)
    logs = book / "_build" / "report-logs"
    previous: dict[str, float] = {}
    for name in names:
        old = generated / f"{name}.ipynb"
        record = chapter_metadata(old) if old.is_file() else None
        if record and record.get("profile") == profile and "elapsed_s" in record:
            previous[name] = float(record["elapsed_s"])
    version = code_version()
    if version.endswith("-dirty"):
        log(f"note: uncommitted changes in the checkout; the chapters record {version}")
    machine = _machine()
    times: dict[str, float] = {}
    start_all = time.perf_counter()
    for i, name in enumerate(names, 1):
        log(f"[{i}/{len(names)}] {name} ({profile} profile) ...")
        path = generated / f"{name}.ipynb"
        source = json.loads((src / f"{name}.ipynb").read_text())
        hook = {
            "cell_type": "code",
            "execution_count": None,
            "id": "renyilib-report-hook",
            "metadata": {"tags": [INJECTED_TAG]},
            "outputs": [],
            "source": INJECTED_SOURCE,
        }
        to_run = {**source, "cells": [hook, *source["cells"]]}
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            sections_log = tmp / "sections.jsonl"
            (tmp / "in.ipynb").write_text(json.dumps(to_run))
            started = time.perf_counter()
            executed_at = _dt.datetime.now(_dt.timezone.utc)
            try:
                with _environ({**KERNEL_ENV, SECTIONS_ENV: str(sections_log)}):
                    pm.execute_notebook(
                        str(tmp / "in.ipynb"),
                        str(tmp / "out.ipynb"),
                        parameters={"profile": profile},
                        cwd=str(generated),
                        kernel_name="python3",
                        progress_bar=False,
                    )
            except Exception:
                failed = book / "_build" / "failed" / f"{name}.ipynb"
                failed.parent.mkdir(parents=True, exist_ok=True)
                if (tmp / "out.ipynb").is_file():
                    shutil.copyfile(tmp / "out.ipynb", failed)
                    log(f"    {name} raised; the executed copy with its traceback: {failed}")
                raise
            elapsed = time.perf_counter() - started
            record = {
                "profile": profile,
                "sections": _read_sections(sections_log),
                "source_hash": source_hash(source),
                "code_version": version,
                "executed_utc": executed_at.strftime("%Y-%m-%d %H:%M"),
                "elapsed_s": round(elapsed, 1),
                **machine,
            }
            nb, stderr = finalize_notebook(json.loads((tmp / "out.ipynb").read_text()), record)
        text = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
        atomic_write(path, lambda t, text=text: t.write_text(text))
        times[name] = elapsed
        note = ""
        if stderr:
            logs.mkdir(parents=True, exist_ok=True)
            err = logs / f"{name}.stderr.log"
            err.write_text("\n".join(stderr))
            note = f"; {len(stderr)} stderr outputs removed, kept in {err}"
        left = estimate_remaining(times, names[i:], previous)
        eta = "" if left is None or i == len(names) else f", about {_minutes(left)} left"
        so_far = time.perf_counter() - start_all
        log(f"    {name}: {_minutes(elapsed)} (total {_minutes(so_far)}{eta}){note}")
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=list(PROFILES))
    parser.add_argument(
        "--notebooks", nargs="*", default=None, help="chapter names, in order (default: the toc's)"
    )
    parser.add_argument("--src", default="notebooks", help="folder of the source notebooks")
    parser.add_argument("--book", default="book", help="book folder (chapters go to generated/)")
    parser.add_argument(
        "--copy-from",
        default=None,
        help="first copy this book's sources into --book (a separate build, e.g. the smoke book)",
    )
    parser.add_argument(
        "--check", action="store_true", help="list each chapter's status, run nothing"
    )
    parser.add_argument(
        "--stale",
        action="store_true",
        help="run only chapters that are not ok (refresh text-only changes without running)",
    )
    args = parser.parse_args(argv)
    if args.copy_from:
        prepare_book(args.copy_from, args.book)
    names = args.notebooks or None
    if args.check or args.stale:
        status = chapter_status(args.book, names=names)
        if args.check:
            for s in status:
                print(f"{s.name:24s} {s.state:10s} {s.profile or '-':6s} {'; '.join(s.reasons)}")
            return 0 if all(s.ok for s in status) else 1
        names = []
        for s in status:
            if s.ok and s.profile == args.profile:
                continue
            if s.text_only and s.profile == args.profile:
                if refresh_text(s.name, args.src, args.book):
                    print(f"{s.name}: text and tags refreshed from its notebook (code unchanged)")
                    continue
            names.append(s.name)
        if not names:
            print("every chapter is up to date")
            return 0
    run_notebooks(names, args.profile, args.src, args.book)
    return 0


if __name__ == "__main__":
    sys.exit(main())
