"""The ``renyilib`` command.

::

    renyilib zoo list   --task digits-cnn --profile cpu
    renyilib zoo run    --task digits-cnn digits-mlp --profile cpu --out data/zoo --jobs 2
    renyilib zoo run    --task cifar10-resnet18 --profile paper --out runs --index $SLURM_ARRAY_TASK_ID
    renyilib zoo status --task digits-cnn --profile cpu --out data/zoo
    renyilib zoo table  --out data/zoo [--task digits-cnn] [--measures] [--csv zoo.csv]
    renyilib zoo measure --task cifar10-resnet18 --profile cpu [--shard 0/2] [--export DIR]
    renyilib zoo export --task cifar10-resnet18 --profile cpu --dest data/results/cifar10-resnet18
    renyilib zoo run    --task fmnist-lenet5 --zoo hparam --size 50 --jobs 2   # <out>/adaptive
    renyilib zoo export --task fmnist-lenet5 --dest data/results/adaptive-sharpness

``run`` trains every unfinished run of the grid (:func:`renyilib.experiments.zoo.grid`) with
``--jobs`` worker processes; ``--index I`` trains only the I-th config of the
listed tasks' grids (in the order of ``zoo list``), one job-array element per
config on a cluster. The data root is ``--data-root``, else ``$RENYI_DATA``,
else ``data/``. ``status`` exits with 1 when any run failed.

``measure`` measures every finished run of the grid with the settings of the
``correlation`` profile of the same name (:func:`renyilib.experiments.zoo_measure.measure_settings`),
cached per run; ``--shard K/N`` measures only the runs whose grid index is K
modulo N, so N processes share the work. ``--export DIR`` then writes the
measurement tables (:func:`renyilib.experiments.zoo_measure.export_measurements`);
``export`` writes the zoo table and training curves
(:func:`renyilib.experiments.zoo.export_results`). The book renders a zoo too long for
``make report`` from these files.

``run`` and ``measure`` with ``--executor slurm|local|debug`` submit instead
of running here (:mod:`renyilib.experiments.submit`, needs submitit): one
job-array element per unfinished run index (``run``) or per measurement shard
of ``--shards N`` (``measure``), each running ``renyilib zoo run --index I`` /
``renyilib zoo measure --shard K/N``::

    renyilib zoo run --task cifar10-resnet18 --profile paper --out runs \
        --executor slurm --partition gpu --gpus-per-node 1 --timeout-min 720
    renyilib zoo measure --task cifar10-resnet18 --profile paper --out runs \
        --executor slurm --shards 30 --partition gpu --gpus-per-node 1 --timeout-min 240
    renyilib zoo run --task digits-cnn --profile cpu --executor local --array-parallelism 2

Slurm submissions return at once (``--wait`` waits); ``local`` and ``debug``
wait for their jobs. Logs and job files go to ``--log-dir`` (default
``<out>/submitit``). Resubmitting submits only what is unfinished.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from renyilib.experiments.config import PROFILES

__all__ = ["main"]


def _configs(args: argparse.Namespace) -> list[dict]:
    from renyilib.experiments import zoo

    configs: list[dict] = []
    for task in args.task:
        configs += zoo.grid(task, args.profile, config_path=args.config)
    return configs


def _settings(args: argparse.Namespace) -> dict:
    from renyilib.experiments import zoo

    return zoo.profile_settings(args.task[0], args.profile, config_path=args.config)


def _cmd_list(args: argparse.Namespace) -> int:
    from renyilib.experiments import zoo

    df = zoo.status(args.out, _configs(args))
    with pd.option_context("display.max_rows", None, "display.width", 200):
        print(df.to_string(index=False))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from renyilib.experiments import zoo

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
    from renyilib.experiments import zoo

    df = zoo.status(args.out, _configs(args))
    counts = df.groupby(["task", "status"]).size().unstack(fill_value=0)
    for col in ("done", "missing", "failed"):
        if col not in counts:
            counts[col] = 0
    print(counts[["done", "missing", "failed"]].to_string())
    failed = df[df.status == "failed"]
    for _, row in failed.iterrows():
        from renyilib.experiments.io import read_json

        err = read_json(Path(args.out) / row.task / row.hash / "error.json")["error"]
        print(f"failed [{row['index']}] {row.task}/{row.hash}: {err}")
    return 1 if len(failed) else 0


def _cmd_table(args: argparse.Namespace) -> int:
    from renyilib.experiments import zoo
    from renyilib.experiments.io import atomic_write

    task = args.task[0] if args.task else None
    configs = None
    if args.profile is not None:
        if args.task is None or len(args.task) != 1:
            print("error: --profile needs exactly one --task", file=sys.stderr)
            return 2
        try:
            configs = zoo.grid(task, args.profile, config_path=args.config)
        except KeyError as e:
            print(f"error: --profile: {e.args[0]}", file=sys.stderr)
            return 2
    df = zoo.table(
        args.out,
        task,
        configs=configs,
        measures=args.measures,
        include_unfinished=args.include_unfinished,
    )
    if args.csv:
        atomic_write(args.csv, lambda tmp: df.to_csv(tmp, index=False))
        print(f"{len(df)} runs -> {args.csv}")
    else:
        with pd.option_context("display.max_rows", None, "display.width", 200):
            cols = [c for c in df.columns if c != "path"]
            print(df[cols].to_string(index=False) if len(df) else "(no finished runs)")
    return 0


def _cmd_measure(args: argparse.Namespace) -> int:
    from renyilib.experiments import zoo
    from renyilib.experiments.zoo_measure import export_measurements, measure_settings, measure_zoo

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    status = 0
    for task in args.task:
        cfg = measure_settings(args.profile, task, args.config)
        configs = zoo.grid(task, cfg.get("zoo_profile", args.profile), config_path=args.config)
        k, n = args.shard
        mine = [c for i, c in enumerate(configs) if i % n == k]
        res = measure_zoo(
            args.out,
            task,
            cfg["renyi"],
            cfg["baselines"],
            data_root=args.data_root,
            device=args.device,
            progress=not args.no_progress,
            configs=mine,
        )
        n_done = len(res["runs"]) - len(res["failed"])
        print(f"{task}: measured {n_done} of {len(mine)} runs (shard {k}/{n})")
        if len(res["failed"]):
            print(res["failed"].to_string(index=False))
        if args.export:
            if n != 1:
                print("error: --export needs every run: use it without --shard", file=sys.stderr)
                return 2
            missing = len(configs) - len(res["runs"])
            meta = {
                "task": task,
                "profile": args.profile,
                "settings": {"renyi": cfg["renyi"], "baselines": cfg["baselines"]},
                "command": ["renyilib", *sys.argv[1:]] if args.argv is None else args.argv,
                "runs_measured": int(res["runs"].shape[0]),
                "runs_missing": int(missing),
            }
            dest = Path(args.export)
            paths = export_measurements(res, dest, meta=meta)
            paths.update(
                zoo.export_results(args.out, task, configs, dest, meta={"command": meta["command"]})
            )
            for name, path in paths.items():
                print(f"  {name}: {path}")
            status = max(status, 1 if missing else 0)
    return status


def _cmd_export(args: argparse.Namespace) -> int:
    from renyilib.experiments import zoo

    task = args.task[0]
    configs = zoo.grid(task, args.profile, config_path=args.config)
    cmd = ["renyilib", *sys.argv[1:]] if args.argv is None else args.argv
    for name, path in zoo.export_results(
        args.out, task, configs, args.dest, meta={"command": cmd}
    ).items():
        print(f"{name}: {path}")
    return 0


def _cmd_submit(args: argparse.Namespace) -> int:
    """``zoo run`` / ``zoo measure`` with ``--executor``: submit through submitit."""
    from renyilib.experiments import submit

    measure = args.zoo_command == "measure"
    if measure and (args.shard != (0, 1) or args.export):
        print(
            "error: with --executor, give the number of shards with --shards N (not --shard), "
            "and export afterwards with `renyilib zoo measure --export DIR` (no --executor)",
            file=sys.stderr,
        )
        return 2
    if not measure and args.jobs != 1:
        print(
            "error: --jobs is for worker processes here; with --executor, "
            "--array-parallelism sets how many elements run at once",
            file=sys.stderr,
        )
        return 2
    slurm_args = {}
    for item in args.slurm_arg or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"error: --slurm-arg expects KEY=VALUE, got {item!r}", file=sys.stderr)
            return 2
        slurm_args[key] = value
    resources = {
        "partition": args.partition,
        "gpus_per_node": args.gpus_per_node,
        "cpus_per_task": args.cpus_per_task,
        "mem_gb": args.mem_gb,
        "timeout_min": args.timeout_min,
        "setup": args.setup,
        "slurm_args": slurm_args or None,
    }
    common = {
        "executor": args.executor,
        "folder": args.log_dir,
        "config": args.config,
        "data_root": args.data_root,
        "device": args.device,
        "threads": args.threads,
        "array_parallelism": args.array_parallelism,
    }
    try:
        if measure:
            sub = submit.submit_measure(
                args.task, args.profile, args.out, args.shards, **common, **resources
            )
        else:
            indices = None if args.index is None else [args.index]
            sub = submit.submit_run(
                args.task, args.profile, args.out, indices=indices, **common, **resources
            )
    except (ValueError, KeyError, ImportError, RuntimeError) as err:  # nothing submitted
        print(f"error: {err}", file=sys.stderr)
        return 2
    what = "shards" if measure else "runs"
    print(
        f"{args.executor}: {len(sub.commands)} {what} in {len(sub.jobs)} job(s), "
        f"{sub.skipped} {'without a finished run' if measure else 'already done'}; logs in {sub.folder}"
    )
    for job_id, group in zip(sub.job_ids, sub.argvs):
        for argv in group:
            print(f"  {job_id}: renyilib {' '.join(argv)}")
    if not sub.jobs or (args.executor == "slurm" and not args.wait):
        return 0
    failed = 0
    for job_id, result in zip(sub.job_ids, sub.wait()):
        if isinstance(result, BaseException):
            failed += 1
            print(f"job {job_id} failed: {str(result).strip().splitlines()[-1]}", file=sys.stderr)
    print(f"{len(sub.jobs) - failed} of {len(sub.jobs)} job(s) finished, {failed} failed")
    return 1 if failed else 0


def _adaptive_tasks(tasks: list[str]) -> bool:
    from renyilib.experiments.adaptive_study import TASKS

    return any(t in TASKS for t in tasks)


def _cmd_adaptive(args: argparse.Namespace) -> int:
    """``list / status / run / measure / export`` of the adaptive-sharpness zoos (``<out>/adaptive``).

    The zoos are :func:`renyilib.experiments.adaptive_study.zoo_configs` (``--zoo``,
    ``--size``); ``run`` trains and measures each run
    (:func:`~renyilib.experiments.adaptive_study.run_and_measure_parallel`),
    ``measure`` (re)measures the finished ones (cached), ``export`` writes
    ``<dest>/<task>.csv`` and its meta for the book.
    """
    from renyilib.experiments import adaptive_study as study

    if not all(t in study.TASKS for t in args.task):
        print(
            "error: adaptive-sharpness tasks cannot be mixed with other tasks in one call",
            file=sys.stderr,
        )
        return 2
    if args.zoo_command in ("run", "measure") and args.executor is not None:
        print("error: --executor is not available for the adaptive-sharpness zoos", file=sys.stderr)
        return 2
    if args.size < 1:
        print(f"error: --size must be >= 1, got {args.size}", file=sys.stderr)
        return 2
    out = Path(args.out) / "adaptive"
    cmd = ["renyilib", *sys.argv[1:]] if args.argv is None else args.argv
    status = 0
    for task in args.task:
        configs = study.zoo_configs(task, args.zoo, args.size, synthetic=args.synthetic)
        settings = study.default_measure_settings(task)
        if args.zoo_command in ("list", "status"):
            df = study.zoo_status(out, configs)
            if args.zoo_command == "list":
                print(df.to_string(index=False))
            else:
                print(
                    f"{task} ({args.zoo} zoo): "
                    + ", ".join(f"{k} {v}" for k, v in df["status"].value_counts().items())
                )
            status = max(status, int((df["status"] != "done").any()))
        elif args.zoo_command == "run":
            if args.jobs < 1:
                print(f"error: --jobs must be >= 1, got {args.jobs}", file=sys.stderr)
                return 2
            if args.index is not None:
                if not 0 <= args.index < len(configs):
                    print(
                        f"error: --index must be in [0, {len(configs) - 1}], got {args.index}",
                        file=sys.stderr,
                    )
                    return 2
                configs = [configs[args.index]]
            res = study.run_and_measure_parallel(
                configs,
                out,
                settings,
                jobs=args.jobs,
                threads=args.threads,
                root=args.data_root,
                progress=not args.no_progress,
            )
            failed = [r for r in res if isinstance(r, BaseException)]
            for r in failed:
                print(f"failed: {r!r}", file=sys.stderr)
            print(
                f"{task}: {len(res) - len(failed)} runs trained and measured, {len(failed)} failed"
            )
            status = max(status, int(bool(failed)))
        elif args.zoo_command == "measure":
            k, n = args.shard
            hashes = study.zoo_status(out, configs)["hash"]
            dirs = [out / task / h for i, h in enumerate(hashes) if i % n == k]
            res = study.measure_zoo(
                dirs, settings, root=args.data_root, progress=not args.no_progress
            )
            print(f"{task}: measured {len(res)} of {len(dirs)} runs (shard {k}/{n})")
            if args.export:
                print(study.export_results(out, task, settings, args.export, " ".join(cmd)))
        else:  # export
            print(study.export_results(out, task, settings, args.dest, " ".join(cmd)))
    return status


def _shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N (e.g. 0/2), got {text!r}") from None
    if n < 1 or not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"expected 0 <= K < N, got {text!r}")
    return k, n


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
        g = p.add_argument_group("adaptive-sharpness tasks (abalone-fcnn, fmnist-lenet5, cora-gat)")
        g.add_argument("--zoo", default="seed", choices=["seed", "hparam"], help="which zoo")
        g.add_argument("--size", type=int, default=50, help="models in the zoo (default 50)")
        g.add_argument(
            "--synthetic", action="store_true", help="tiny synthetic data of the task (tests)"
        )

    def cluster(p: argparse.ArgumentParser) -> None:
        g = p.add_argument_group("submission (renyilib.experiments.submit, needs submitit)")
        g.add_argument(
            "--executor",
            choices=["slurm", "local", "debug"],
            default=None,
            help="submit job-array elements instead of running here",
        )
        g.add_argument("--partition", default=None, help="Slurm partition")
        g.add_argument("--gpus-per-node", type=int, default=None, help="GPUs per element")
        g.add_argument("--cpus-per-task", type=int, default=None, help="CPUs per element")
        g.add_argument("--mem-gb", type=float, default=None, help="memory per element (GB)")
        g.add_argument(
            "--timeout-min", type=int, default=24 * 60, help="time limit per element (default 1440)"
        )
        g.add_argument(
            "--array-parallelism",
            type=int,
            default=None,
            help="Slurm: most elements at once; local/debug: worker processes (default 1)",
        )
        g.add_argument(
            "--setup", action="append", default=None, help="shell line run before each element"
        )
        g.add_argument(
            "--slurm-arg", action="append", default=None, help="further sbatch option KEY=VALUE"
        )
        g.add_argument("--log-dir", default=None, help="submitit folder (default <out>/submitit)")
        g.add_argument("--wait", action="store_true", help="Slurm: wait for the jobs")

    def compute(p: argparse.ArgumentParser, threads: int | None) -> None:
        p.add_argument("--threads", type=int, default=threads, help="torch threads (per worker)")
        p.add_argument("--data-root", default=None, help="data root (else $RENYI_DATA)")
        p.add_argument("--device", default=None, help="e.g. cpu, cuda, cuda:1")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")

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
            p.add_argument("--index", type=int, default=None, help="run only the I-th config")
            compute(p, threads=1)
            cluster(p)
    p = zsub.add_parser("measure", help="measure the finished runs (correlation settings)")
    common(p)
    p.add_argument("--profile", default="cpu", choices=PROFILES)
    p.add_argument("--shard", type=_shard, default=(0, 1), help="K/N: only grid index %% N == K")
    p.add_argument("--export", default=None, help="write the measurement CSVs into this folder")
    p.add_argument(
        "--shards", type=int, default=1, help="with --executor: number of shards (array elements)"
    )
    compute(p, threads=None)
    cluster(p)
    p = zsub.add_parser("export", help="write the zoo table and curves for the book")
    common(p)
    p.add_argument("--profile", default="cpu", choices=PROFILES)
    p.add_argument("--dest", required=True, help="destination folder, e.g. data/results/<task>")
    p = zsub.add_parser("table", help="print or write the table of finished runs")
    common(p, task_required=False)
    p.add_argument("--csv", default=None, help="write CSV here instead of printing")
    p.add_argument("--measures", action="store_true", help="add cached measures as columns")
    p.add_argument("--include-unfinished", action="store_true", help="list failed/missing too")
    p.add_argument(
        "--profile",
        default=None,
        choices=PROFILES,
        help="only the runs of this profile's grid (one --task)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``renyilib`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    args.argv = None if argv is None else ["renyilib", *argv]
    if args.command == "zoo":
        if args.zoo_command != "table" and _adaptive_tasks(args.task):
            return _cmd_adaptive(args)
        if args.zoo_command != "table":
            for task in args.task:
                from renyilib.experiments.zoo import TASKS

                if task not in TASKS:
                    print(
                        f"error: --task {task!r} unknown; known: {', '.join(sorted(TASKS))}",
                        file=sys.stderr,
                    )
                    return 2
        if args.zoo_command == "run" and args.jobs < 1:
            print(f"error: --jobs must be >= 1, got {args.jobs}", file=sys.stderr)
            return 2
        if args.zoo_command in ("run", "measure") and args.executor is not None:
            return _cmd_submit(args)
        if args.zoo_command == "measure" and args.shards != 1:
            print("error: --shards needs --executor (here: --shard K/N)", file=sys.stderr)
            return 2
        handler = {
            "list": _cmd_list,
            "run": _cmd_run,
            "status": _cmd_status,
            "table": _cmd_table,
            "measure": _cmd_measure,
            "export": _cmd_export,
        }[args.zoo_command]
        return handler(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
