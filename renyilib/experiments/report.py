"""Run the book's notebooks with papermill and record how the report was built.

``python -m renyilib.experiments.report --profile cpu`` executes every notebook of
``notebooks/`` (in the order given) into ``book/generated/`` with the chosen
profile, stops at the first notebook that raises (the book is never built from
a broken chapter), and writes ``book/generated/build_info.md``: profile, code
version, date, and the wall time of every chapter. ``make report`` calls it and
then ``jupyter-book build book/``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import platform
import sys
import time
from pathlib import Path

import torch

from renyilib.experiments.io import atomic_write, code_version

__all__ = ["run_notebooks"]


def run_notebooks(
    names: list[str],
    profile: str,
    src: str | Path = "notebooks",
    dst: str | Path = "book/generated",
) -> dict[str, float]:
    """Execute ``src/<name>.ipynb`` into ``dst/<name>.ipynb`` with ``profile``.

    Args:
        names: Notebook names without extension, in execution order.
        profile: Run profile passed to each notebook's ``parameters`` cell.
        src: Folder of the source notebooks.
        dst: Output folder (also the working directory of each notebook).

    Returns:
        Wall time in seconds per notebook.

    Raises:
        FileNotFoundError: A named notebook does not exist.
        papermill.PapermillExecutionError: A notebook raised (the output
            notebook is kept so the traceback can be read).
    """
    import papermill as pm

    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    missing = [n for n in names if not (src / f"{n}.ipynb").is_file()]
    if missing:
        raise FileNotFoundError(f"notebooks not found in {src}: {missing}")
    times: dict[str, float] = {}
    for name in names:
        print(f"== papermill {name} (profile={profile})", flush=True)
        start = time.perf_counter()
        pm.execute_notebook(
            str(src / f"{name}.ipynb"),
            str(dst / f"{name}.ipynb"),
            parameters={"profile": profile},
            cwd=str(dst),
            kernel_name="python3",
            progress_bar=False,
        )
        times[name] = time.perf_counter() - start
        print(f"   {name}: {times[name]:.1f} s", flush=True)
    _write_build_info(dst / "build_info.md", profile, times)
    return times


def _write_build_info(path: Path, profile: str, times: dict[str, float]) -> None:
    rows = "\n".join(f"| {name} | {sec / 60:.1f} min |" for name, sec in times.items())
    device = "CUDA: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    text = f"""| built | |
|---|---|
| profile | **{profile}** |
| code version | `{code_version()}` |
| date (UTC) | {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} |
| machine | {platform.machine()}, {torch.get_num_threads()} torch threads, {device} |
| torch | {torch.__version__} |

| chapter | wall time |
|---|---|
{rows}
| **total** | {sum(times.values()) / 60:.1f} min |
"""
    atomic_write(path, lambda tmp: tmp.write_text(text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "paper"])
    parser.add_argument("--notebooks", nargs="+", required=True, help="names, in order")
    parser.add_argument("--src", default="notebooks")
    parser.add_argument("--dst", default="book/generated")
    args = parser.parse_args(argv)
    run_notebooks(args.notebooks, args.profile, args.src, args.dst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
