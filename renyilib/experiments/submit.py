"""Zoos on a cluster: ``zoo run`` and ``zoo measure`` as job arrays through submitit.

A zoo at the paper's scale (90 runs per task, each measured on 2,000 images)
is trained and measured as a Slurm job array, one element per run index of
the grid (``renyilib zoo run --index I``) or per measurement shard
(``renyilib zoo measure --shard K/N``). Each element runs exactly the command a
user would run by hand, in the job's own process, so it is resumable and
idempotent like the local runner:

* training: only the unfinished runs (no ``metrics.json``: missing, failed or
  killed) are submitted, and a run that finished meanwhile is skipped by the
  element itself (:func:`renyilib.experiments.zoo.run_config`); every file is
  written to a temporary name and renamed, ``metrics.json`` last, so an
  element killed at its time limit leaves a run that simply reruns;
* measuring: one element per shard that holds at least one finished run;
  measurements are cached per run and measurement config, so an element
  that reruns (or overlaps an earlier array) only reads the cache.

Resubmitting while an earlier array still runs submits its unfinished runs
again; both copies write the same files atomically, so the result is the
same, at the cost of the duplicated work.

Executors (``executor=``):

``"slurm"``
    ``sbatch`` job arrays (``partition``, ``gpus_per_node``, ``cpus_per_task``,
    ``mem_gb``, ``timeout_min``, ``array_parallelism`` as ``%P`` of
    ``--array``, ``setup`` lines such as ``module load`` / ``source venv``,
    and any other ``sbatch`` option through ``slurm_args``).
``"local"``
    submitit's local executor: ``array_parallelism`` worker processes on
    this machine (default 1), each running its share of the elements in
    turn; for a workstation.
``"debug"``
    submitit's debug executor: the elements run in this process, one after
    the other, when their results are requested (:meth:`Submission.wait`).

submitit is an optional dependency (``pip install renyilib[cluster]``);
users without it find an ``sbatch`` script doing the same in the README
("Run experiments").

Example::

    from renyilib.experiments.submit import submit_run
    sub = submit_run(["cifar10-resnet18"], "paper", "runs", executor="slurm",
                     partition="gpu", gpus_per_node=1, timeout_min=720)
    print(sub.job_ids)
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_TIMEOUT_MIN",
    "EXECUTORS",
    "Submission",
    "make_executor",
    "measure_argvs",
    "pending_indices",
    "run_argvs",
    "submit_measure",
    "submit_run",
    "zoo_job",
]

#: The submitit executors :func:`make_executor` builds.
EXECUTORS = ("slurm", "local", "debug")
#: Time limit of an element unless given (minutes): one day; set your partition's limit.
DEFAULT_TIMEOUT_MIN = 24 * 60


@dataclass
class Submission:
    """The jobs of one submission and what each element runs.

    Attributes:
        jobs: submitit jobs, one per array element (local: one per worker).
        argvs: Per job, the ``renyilib`` argument lists it runs in turn.
        folder: submitit's folder (job scripts, pickles, logs).
        skipped: Items not submitted (finished runs; shards without a finished run).
        executor: ``"slurm"``, ``"local"`` or ``"debug"``.
    """

    jobs: list[Any]
    argvs: list[list[list[str]]]
    folder: Path
    skipped: int = 0
    executor: str = "slurm"
    commands: list[str] = field(default_factory=list)

    @property
    def job_ids(self) -> list[str]:
        """The jobs' ids (Slurm: ``<array id>_<index>``)."""
        return [str(job.job_id) for job in self.jobs]

    def wait(self) -> list[Any]:
        """Wait for every job; per job its result (a list of exit codes, all 0) or the exception it raised."""
        results: list[Any] = []
        for job in self.jobs:
            try:
                results.append(job.result())
            except Exception as exc:  # a failed element; the others still count
                results.append(exc)
        return results


def zoo_job(*argvs: Sequence[str]) -> list[int]:
    """One array element: ``renyilib <argv>`` for each ``argv``, in this process.

    Runs every command even if one fails, then raises ``RuntimeError`` naming
    the failed ones (so that submitit and Slurm mark the element failed).

    Returns:
        The exit codes (all 0).
    """
    from renyilib.experiments.cli import main

    codes, failed = [], []
    for argv in argvs:
        code = main(list(argv))
        codes.append(code)
        if code != 0:
            failed.append(f"renyilib {shlex.join(argv)} (exit {code})")
    if failed:
        raise RuntimeError("failed: " + "; ".join(failed))
    return codes


def _common_argv(
    tasks: Sequence[str],
    profile: str,
    out: str | os.PathLike,
    config: str | os.PathLike | None,
    data_root: str | os.PathLike | None,
    device: str | None,
    threads: int | None,
) -> list[str]:
    from renyilib.experiments.config import find_config

    # Absolute paths: an element may start in another folder than the submission.
    argv = ["--task", *tasks, "--profile", profile, "--out", str(Path(out).resolve())]
    argv += ["--config", str(Path(config or find_config()).resolve())]
    if data_root is not None:
        argv += ["--data-root", str(Path(data_root).resolve())]
    if device is not None:
        argv += ["--device", str(device)]
    if threads is not None:
        argv += ["--threads", str(threads)]
    return [*argv, "--no-progress"]


def _check_tasks(tasks: Sequence[str]) -> list[str]:
    from renyilib.experiments.zoo import TASKS

    if isinstance(tasks, str) or not tasks:
        raise ValueError(f"tasks: expected a non-empty list of task names, got {tasks!r}")
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise KeyError(f"tasks: unknown {unknown}; known: {sorted(TASKS)}")
    return list(tasks)


def pending_indices(
    tasks: Sequence[str],
    profile: str,
    out: str | os.PathLike,
    *,
    config: str | os.PathLike | None = None,
) -> tuple[list[int], int]:
    """Indices (as in ``renyilib zoo list``) of the unfinished runs of the tasks' grids.

    Returns:
        ``(indices, total)``: the indices of runs without ``metrics.json``
        (missing or failed) and the number of configs.
    """
    from renyilib.experiments import zoo

    configs = [c for t in _check_tasks(tasks) for c in zoo.grid(t, profile, config_path=config)]
    todo = [i for i, c in enumerate(configs) if zoo.run_status(zoo.run_dir(out, c)) != "done"]
    return todo, len(configs)


def run_argvs(
    tasks: Sequence[str],
    profile: str,
    out: str | os.PathLike,
    indices: Sequence[int],
    *,
    config: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    device: str | None = None,
    threads: int | None = 1,
) -> list[list[str]]:
    """The ``renyilib zoo run ... --index I`` argument list of each index."""
    base = _common_argv(tasks, profile, out, config, data_root, device, threads)
    return [["zoo", "run", *base, "--index", str(int(i))] for i in indices]


def measure_argvs(
    tasks: Sequence[str],
    profile: str,
    out: str | os.PathLike,
    shards: int,
    *,
    config: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    device: str | None = None,
    threads: int | None = None,
    only_useful: bool = True,
) -> tuple[list[list[str]], int]:
    """The ``renyilib zoo measure ... --shard K/N`` argument list of each shard ``K < shards``.

    With ``only_useful``, shards without a finished run of any task are left
    out (they would measure nothing).

    Returns:
        ``(argvs, skipped)``: the argument lists and the number of shards left out.
    """
    from renyilib.experiments import zoo
    from renyilib.experiments.zoo_measure import measure_settings

    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise ValueError(f"shards: expected a positive int, got {shards!r}")
    useful = set(range(shards))
    if only_useful:
        useful = set()
        for task in _check_tasks(tasks):
            grid_profile = measure_settings(profile, task, config).get("zoo_profile", profile)
            for i, c in enumerate(zoo.grid(task, grid_profile, config_path=config)):
                if zoo.run_status(zoo.run_dir(out, c)) == "done":
                    useful.add(i % shards)
    base = _common_argv(tasks, profile, out, config, data_root, device, threads)
    argvs = [["zoo", "measure", *base, "--shard", f"{k}/{shards}"] for k in sorted(useful)]
    return argvs, shards - len(argvs)


def make_executor(
    executor: str,
    folder: str | os.PathLike,
    *,
    name: str = "renyilib",
    partition: str | None = None,
    gpus_per_node: int | None = None,
    cpus_per_task: int | None = None,
    mem_gb: float | None = None,
    timeout_min: int | None = DEFAULT_TIMEOUT_MIN,
    array_parallelism: int | None = None,
    setup: Sequence[str] | None = None,
    slurm_args: dict[str, Any] | None = None,
) -> Any:
    """A configured ``submitit.AutoExecutor`` for ``executor`` (``"slurm"``, ``"local"``, ``"debug"``).

    Args:
        executor: One of :data:`EXECUTORS`.
        folder: submitit's folder for job scripts, pickles and logs (``%j`` allowed).
        name: Job name.
        partition: Slurm partition.
        gpus_per_node, cpus_per_task, mem_gb, timeout_min: Resources per element
            (``timeout_min``, default :data:`DEFAULT_TIMEOUT_MIN`, is also the local
            executor's time limit; submitit's own defaults, 5 min on Slurm and
            2 min locally, would kill a training run).
        array_parallelism: Slurm: most elements running at once (``--array=0-N%P``).
        setup: Shell lines run before each element (Slurm, local), e.g.
            ``["module load cuda", "source .venv/bin/activate"]``.
        slurm_args: Further ``sbatch`` options, e.g. ``{"account": "proj", "qos": "long"}``.

    Raises:
        ValueError: unknown executor or a bad resource value.
        ImportError: submitit is not installed.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    for key, value in (
        ("gpus_per_node", gpus_per_node),
        ("cpus_per_task", cpus_per_task),
        ("timeout_min", timeout_min),
        ("array_parallelism", array_parallelism),
    ):
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < (0 if key == "gpus_per_node" else 1)
        ):
            raise ValueError(
                f"{key}: expected a {'non-negative' if key == 'gpus_per_node' else 'positive'} int, got {value!r}"
            )
    if mem_gb is not None and not (isinstance(mem_gb, int | float) and mem_gb > 0):
        raise ValueError(f"mem_gb: expected a positive number, got {mem_gb!r}")
    try:
        import submitit
    except ImportError as err:
        raise ImportError(
            "submitting needs submitit: pip install 'renyilib[cluster]' (or use the sbatch "
            "example of the README)"
        ) from err
    try:
        ex = submitit.AutoExecutor(folder=str(folder), cluster=executor)
    except RuntimeError as err:  # e.g. no srun on this machine for "slurm"
        raise RuntimeError(f"executor {executor!r}: {err}") from err
    params: dict[str, Any] = {
        "name": name,
        "gpus_per_node": gpus_per_node,
        "cpus_per_task": cpus_per_task,
        "mem_gb": mem_gb,
        "timeout_min": timeout_min,
    }
    if executor == "slurm":
        params.update(
            slurm_partition=partition,
            slurm_array_parallelism=array_parallelism,
            slurm_setup=list(setup) if setup else None,
            slurm_additional_parameters=dict(slurm_args) if slurm_args else None,
        )
    elif executor == "local" and setup:
        params["local_setup"] = list(setup)
    ex.update_parameters(**params)
    return ex


def _submit(
    argvs: list[list[str]],
    executor: str,
    folder: str | os.PathLike,
    skipped: int,
    array_parallelism: int | None,
    options: dict[str, Any],
) -> Submission:
    folder = Path(folder)
    commands = ["renyilib " + shlex.join(a) for a in argvs]
    if not argvs:  # nothing to do: no executor, no folder
        if executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
        return Submission([], [], folder, skipped, executor, commands)
    ex = make_executor(executor, folder, array_parallelism=array_parallelism, **options)
    if executor == "slurm":
        groups = [[a] for a in argvs]  # one array element per run index / shard
    else:  # local and debug: `array_parallelism` workers share the elements
        workers = max(1, min(len(argvs), array_parallelism or 1))
        groups = [argvs[w::workers] for w in range(workers)]
    jobs = ex.map_array(_run_group, groups)
    return Submission(jobs, groups, folder, skipped, executor, commands)


def _run_group(group: list[list[str]]) -> list[int]:
    return zoo_job(*group)


def submit_run(
    tasks: Sequence[str],
    profile: str,
    out: str | os.PathLike,
    *,
    executor: str = "slurm",
    folder: str | os.PathLike | None = None,
    indices: Sequence[int] | None = None,
    config: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    device: str | None = None,
    threads: int | None = 1,
    array_parallelism: int | None = None,
    **resources: Any,
) -> Submission:
    """Submit the unfinished runs of the tasks' grids, one array element per run index.

    Args:
        tasks: Task names (their grids concatenated, as in ``renyilib zoo list``).
        profile: Zoo profile (``smoke``, ``cpu``, ``paper``).
        out: The zoo folder.
        executor: ``"slurm"``, ``"local"`` or ``"debug"`` (see the module docstring).
        folder: submitit's folder (default ``<out>/submitit``).
        indices: Only these run indices (default: all); finished runs are
            always left out.
        config, data_root, device, threads: Passed to ``renyilib zoo run``.
        array_parallelism: Slurm: elements running at once; local/debug: worker count.
        **resources: ``partition``, ``gpus_per_node``, ``cpus_per_task``,
            ``mem_gb``, ``timeout_min``, ``setup``, ``slurm_args``, ``name``
            (see :func:`make_executor`).

    Returns:
        A :class:`Submission` (no jobs when every run is finished).
    """
    todo, total = pending_indices(tasks, profile, out, config=config)
    if indices is not None:
        bad = [i for i in indices if not (isinstance(i, int) and 0 <= i < total)]
        if bad:
            raise ValueError(f"indices: expected ints in [0, {total}), got {bad}")
        todo = [i for i in todo if i in set(indices)]
        total = len(set(indices))
    argvs = run_argvs(
        tasks,
        profile,
        out,
        todo,
        config=config,
        data_root=data_root,
        device=device,
        threads=threads,
    )
    return _submit(
        argvs,
        executor,
        folder or Path(out) / "submitit",
        total - len(argvs),
        array_parallelism,
        {"name": f"zoo-run-{profile}", **resources},
    )


def submit_measure(
    tasks: Sequence[str],
    profile: str,
    out: str | os.PathLike,
    shards: int,
    *,
    executor: str = "slurm",
    folder: str | os.PathLike | None = None,
    config: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    device: str | None = None,
    threads: int | None = None,
    array_parallelism: int | None = None,
    **resources: Any,
) -> Submission:
    """Submit ``renyilib zoo measure --shard K/shards``, one array element per shard with a finished run.

    Args:
        tasks: Task names.
        profile: ``correlation`` profile (its ``zoo_profile`` names the grid).
        out: The zoo folder.
        shards: Number of shards ``N`` (run index modulo ``N``).
        executor, folder, config, data_root, device, threads, array_parallelism,
            resources: As in :func:`submit_run`.

    Returns:
        A :class:`Submission`; afterwards ``renyilib zoo measure --export DIR``
        (no shard) writes the tables from the cache.
    """
    argvs, skipped = measure_argvs(
        tasks,
        profile,
        out,
        shards,
        config=config,
        data_root=data_root,
        device=device,
        threads=threads,
    )
    return _submit(
        argvs,
        executor,
        folder or Path(out) / "submitit",
        skipped,
        array_parallelism,
        {"name": f"zoo-measure-{profile}", **resources},
    )
