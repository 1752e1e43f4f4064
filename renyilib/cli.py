"""The ``renyilib`` command.

::

    renyilib zoo list   --task digits-cnn --profile cpu
    renyilib zoo run    --task digits-cnn digits-mlp --profile cpu --out data/zoo --jobs 2
    renyilib zoo run    --task cifar10-resnet18 --profile paper --out runs --index $SLURM_ARRAY_TASK_ID
    renyilib zoo status --task digits-cnn --profile cpu --out data/zoo
    renyilib zoo table  --out data/zoo [--task digits-cnn] [--measures] [--csv zoo.csv]

``run`` trains every unfinished run of the grid (:func:`renyilib.zoo.grid`) with
``--jobs`` worker processes; ``--index I`` trains only the I-th config of the
listed tasks' grids (in the order of ``zoo list``), one job-array element per
config on a cluster. The data root is ``--data-root``, else ``$RENYI_DATA``,
else ``data/``. ``status`` exits with 1 when any run failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from renyilib.config import PROFILES

__all__ = ["main"]


def _configs(args: argparse.Namespace) -> list[dict]:
    from renyilib import zoo

    configs: list[dict] = []
    for task in args.task:
        configs += zoo.grid(task, args.profile, config_path=args.config)
    return configs


def _settings(args: argparse.Namespace) -> dict:
    from renyilib import zoo

    return zoo.profile_settings(args.task[0], args.profile, config_path=args.config)


def _cmd_list(args: argparse.Namespace) -> int:
    from renyilib import zoo

    df = zoo.status(args.out, _configs(args))
    with pd.option_context("display.max_rows", None, "display.width", 200):
        print(df.to_string(index=False))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from renyilib import zoo

    configs = _configs(args)
    if args.index is not None:
        if not 0 <= args.index < len(configs):
            print(
                f"error: --index must be in [0, {len(configs) - 1}] "
                f"({len(configs)} configs), got {args.index}",
                file=sys.stderr,
            )
            return 2
        configs = [configs[args.index]]
    s = _settings(args)
    counts = zoo.run_zoo(
        configs,
        args.out,
        jobs=args.jobs,
        threads=args.threads,
        data_root=args.data_root,
        device=args.device,
        progress=not args.no_progress,
        criterion={k: s[k] for k in ("min_train_acc", "max_train_loss") if k in s},
        eval_every=int(s.get("eval_every", 1)),
    )
    print(
        f"{counts['done']} trained, {counts['skipped']} already done, {counts['failed']} failed "
        f"(out: {args.out})"
    )
    if counts["failed"]:
        print("failed runs have error.json in their folder; `renyilib zoo status` lists them")
    return 1 if counts["failed"] else 0


def _cmd_status(args: argparse.Namespace) -> int:
    from renyilib import zoo

    df = zoo.status(args.out, _configs(args))
    counts = df.groupby(["task", "status"]).size().unstack(fill_value=0)
    for col in ("done", "missing", "failed"):
        if col not in counts:
            counts[col] = 0
    print(counts[["done", "missing", "failed"]].to_string())
    failed = df[df.status == "failed"]
    for _, row in failed.iterrows():
        from renyilib.io import read_json

        err = read_json(Path(args.out) / row.task / row.hash / "error.json")["error"]
        print(f"failed [{row['index']}] {row.task}/{row.hash}: {err}")
    return 1 if len(failed) else 0


def _cmd_table(args: argparse.Namespace) -> int:
    from renyilib import zoo
    from renyilib.io import atomic_write

    task = args.task[0] if args.task else None
    df = zoo.table(
        args.out, task, measures=args.measures, include_unfinished=args.include_unfinished
    )
    if args.csv:
        atomic_write(args.csv, lambda tmp: df.to_csv(tmp, index=False))
        print(f"{len(df)} runs -> {args.csv}")
    else:
        with pd.option_context("display.max_rows", None, "display.width", 200):
            cols = [c for c in df.columns if c != "path"]
            print(df[cols].to_string(index=False) if len(df) else "(no finished runs)")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="renyilib", description="Rényi sharpness tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    zoo_p = sub.add_parser("zoo", help="train and inspect model zoos")
    zsub = zoo_p.add_subparsers(dest="zoo_command", required=True)

    def common(p: argparse.ArgumentParser, task_required: bool = True) -> None:
        p.add_argument(
            "--task", nargs="+", required=task_required, help="task name(s), e.g. digits-cnn"
        )
        p.add_argument("--out", default="data/zoo", help="zoo folder (default: data/zoo)")
        p.add_argument("--config", default=None, help="_config.yml (default: found upwards)")

    for name, helptext in (
        ("list", "list the configs of a grid with their index and status"),
        ("status", "count done / missing / failed runs"),
        ("run", "train the unfinished runs of a grid"),
    ):
        p = zsub.add_parser(name, help=helptext)
        common(p)
        p.add_argument("--profile", default="cpu", choices=PROFILES)
        if name == "run":
            p.add_argument("--jobs", type=int, default=1, help="worker processes")
            p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
            p.add_argument("--index", type=int, default=None, help="run only the I-th config")
            p.add_argument("--data-root", default=None, help="data root (else $RENYI_DATA)")
            p.add_argument("--device", default=None, help="e.g. cpu, cuda, cuda:1")
            p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p = zsub.add_parser("table", help="print or write the table of finished runs")
    common(p, task_required=False)
    p.add_argument("--csv", default=None, help="write CSV here instead of printing")
    p.add_argument("--measures", action="store_true", help="add cached measures as columns")
    p.add_argument("--include-unfinished", action="store_true", help="list failed/missing too")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``renyilib`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.command == "zoo":
        if args.zoo_command != "table":
            for task in args.task:
                from renyilib.zoo import TASKS

                if task not in TASKS:
                    print(
                        f"error: --task {task!r} unknown; known: {', '.join(sorted(TASKS))}",
                        file=sys.stderr,
                    )
                    return 2
        if args.zoo_command == "run" and args.jobs < 1:
            print(f"error: --jobs must be >= 1, got {args.jobs}", file=sys.stderr)
            return 2
        handler = {
            "list": _cmd_list,
            "run": _cmd_run,
            "status": _cmd_status,
            "table": _cmd_table,
        }[args.zoo_command]
        return handler(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
