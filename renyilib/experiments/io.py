"""Atomic result files, config hashing and the code version.

Every result renyilib writes goes through these helpers, so a killed run never
leaves a half-written file: data is written to a temporary file in the same
folder and then renamed over the target (``os.replace`` is atomic on POSIX).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "atomic_write",
    "write_json",
    "read_json",
    "read_results",
    "save_state_dict",
    "load_state_dict",
    "config_hash",
    "code_version",
]


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Write a file atomically: ``write(tmp)`` fills a temp file that is renamed to ``path``.

    Args:
        path: Final file path; parent folders are created.
        write: Callable receiving the temporary path to write to.

    Returns:
        The final path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (numpy/torch scalars and arrays converted)."""
    text = json.dumps(_jsonable(obj), indent=2, sort_keys=True, allow_nan=True)
    return atomic_write(path, lambda tmp: tmp.write_text(text + "\n"))


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file written by :func:`write_json`."""
    return json.loads(Path(path).read_text())


def read_results(
    folder: str | os.PathLike, stem: str, suffixes: Sequence[str] = (".csv", ".meta.json")
) -> list[Any] | None:
    """A committed result made of several files ``<folder>/<stem><suffix>``, or ``None`` if one is missing.

    Each file is read by its kind: ``.csv`` (or gzipped ``.csv.gz``) as a
    :class:`pandas.DataFrame`, ``.json`` with :func:`read_json`.

    Args:
        folder: The results folder (e.g. ``benchmarks/results``).
        stem: The files' common name (e.g. ``"frontier"``).
        suffixes: The parts, in the order returned.

    Returns:
        The parts in the order of ``suffixes``, or ``None`` when any is absent
        (the book then says which command makes it).
    """
    import pandas as pd

    paths = [Path(folder) / f"{stem}{s}" for s in suffixes]
    if not all(p.is_file() for p in paths):
        return None
    out = []
    for p in paths:
        if p.name.endswith((".csv", ".csv.gz")):
            out.append(pd.read_csv(p))
        elif p.suffix == ".json":
            out.append(read_json(p))
        else:
            raise ValueError(f"suffixes: cannot read {p.name} (expected .csv, .csv.gz or .json)")
    return out


def save_state_dict(path: str | os.PathLike, state_dict: dict[str, torch.Tensor]) -> Path:
    """Atomically save a state dict (tensors moved to CPU) loadable with ``weights_only=True``."""
    cpu = {k: v.detach().cpu() for k, v in state_dict.items()}
    return atomic_write(path, lambda tmp: torch.save(cpu, tmp))


def load_state_dict(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a state dict saved by :func:`save_state_dict` with ``weights_only=True``."""
    return torch.load(path, map_location=map_location, weights_only=True)


def config_hash(config: dict[str, Any], length: int = 12) -> str:
    """Stable short hash of a JSON-serializable config (key order does not matter).

    >>> config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    True
    """
    text = json.dumps(_jsonable(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The code version recorded with every cached result.

    ``renyilib.__version__`` plus the git commit (and ``-dirty`` when the tree has
    uncommitted changes) when the package runs from a git checkout. Read once
    per process, when :mod:`renyilib.experiments.io` is imported (i.e. when the code is
    loaded): a long run records the version it runs, not a commit made while
    it was running.
    """
    from renyilib import __version__

    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}{'-dirty' if dirty else ''}"


code_version()  # the version of the code this process loaded
