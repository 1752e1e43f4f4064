"""What a chapter needs before it runs, checked up front, with the command that makes it.

A chapter of the book reads what other steps made: a trained zoo
(``renyilib zoo run``), committed results (``renyilib zoo measure --export``,
``python -m renyilib.experiments.table1``), a benchmark table (``make bench``).
Each study function of the experiments layer calls one of these checks first,
so that a chapter run before its inputs exist stops at once with one sentence
naming what is missing and the command that makes it, instead of failing deep
inside on an empty table.

* :func:`require_zoo` — every run of a task's grid in a zoo profile is finished.
* :func:`require_files` — a results folder holds the named files.
* :class:`MissingInputError` — the error both raise (a ``FileNotFoundError``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["MissingInputError", "require_files", "require_zoo", "zoo_command"]


class MissingInputError(FileNotFoundError):
    """A chapter's input (a zoo, a results table) does not exist yet.

    The message is one sentence: what is missing and the command that makes it.
    """


def zoo_command(task: str, zoo_profile: str) -> str:
    """The shell command that trains ``task``'s zoo in ``zoo_profile``."""
    return f"renyilib zoo run --task {task} --profile {zoo_profile}"


def require_zoo(
    task: str,
    zoo_profile: str,
    out: str | os.PathLike,
    *,
    allow_failed: bool = True,
) -> list[dict[str, Any]]:
    """Check that every run of ``task``'s grid in ``zoo_profile`` is trained under ``out``.

    Args:
        task: Task name (``renyilib.experiments.zoo.TASKS``).
        zoo_profile: Profile of the ``zoo`` section of ``_config.yml``.
        out: The zoo folder.
        allow_failed: Runs that failed (``error.json``) count as present; the
            zoo chapter reports them and later chapters leave them out.

    Returns:
        The run configs of the grid (:func:`renyilib.experiments.zoo.grid`).

    Raises:
        MissingInputError: No run, or only some runs, of the grid are finished;
            the message gives the count and ``renyilib zoo run ...``.
        KeyError: Unknown task or profile.
    """
    from renyilib.experiments import zoo

    configs = zoo.grid(task, zoo_profile)
    status = [zoo.run_status(zoo.run_dir(out, c)) for c in configs]
    done = sum(s == "done" for s in status)
    failed = sum(s == "failed" for s in status)
    missing = len(configs) - done - (failed if allow_failed else 0)
    if done == 0 or missing > 0:
        what = (
            "no run"
            if done == 0
            else f"{missing} of the {len(configs)} runs (others finished: {done})"
        )
        raise MissingInputError(
            f"{what} of the {task} zoo ({zoo_profile} profile, {len(configs)} runs) "
            f"is trained in {Path(out)}: train it first with "
            f"`{zoo_command(task, zoo_profile)}` (finished runs are skipped; "
            f"`--jobs N` for N workers, `--index I` for one run of a job array)."
        )
    return configs


def require_files(
    folder: str | os.PathLike, names: Sequence[str], *, what: str, command: str
) -> Path:
    """Check that ``folder`` holds every file of ``names``.

    Args:
        folder: The results folder.
        names: File names inside it.
        what: What the files are, for the message (e.g. "the CIFAR-10 zoo's measurements").
        command: The command that writes them.

    Returns:
        ``folder`` as a :class:`~pathlib.Path`.

    Raises:
        MissingInputError: A file is missing; the message names it and ``command``.
        ValueError: ``names`` is empty.
    """
    if not names:
        raise ValueError("names must list at least one file")
    folder = Path(folder)
    absent = [n for n in names if not (folder / n).is_file()]
    if absent:
        raise MissingInputError(
            f"{what} ({', '.join(absent)}) are not in {folder}: make them with `{command}`."
        )
    return folder
