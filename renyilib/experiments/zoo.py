"""Model zoos: tasks, the training grids of each profile, a resumable runner and a result cache.

A *zoo* is a task (dataset + architecture, :data:`TASKS`) trained over a
hyper-parameter grid. The paper's grid (Appendix G.3.1: SGD with lr
{0.001, 0.03, 0.1} or Adam with lr {1e-5, 3e-4, 1e-3}, batch size
{128, 384, 1280}, weight decay {1e-5, 5e-5, 1e-4, 3e-4, 5e-4}, 200 epochs,
10 warm-up epochs, linear scaling rule) is the ``paper`` profile; the ``cpu``
and ``smoke`` profiles shrink epochs, data and grid. All profiles live in the
top-level ``_config.yml`` under ``experiments: zoo:`` (:func:`grid`).

Layout of a zoo folder (every file written atomically by :mod:`renyilib.experiments.io`)::

    <out>/<task>/<run-hash>/
        config.json     the run config (hashed by renyilib.experiments.io.config_hash) + code version
        weights.pt      final state dict (torch.load(..., weights_only=True))
        metrics.json    final record + per-epoch curves (renyilib.experiments.train.TrainResult);
                        written after weights.pt: its presence marks the run as finished
        error.json      the traceback of a failed attempt (removed on success)
        measures/<measure-hash>.json   cached measurements (:func:`measure`)

Rerunning skips finished runs; a run killed midway has no ``metrics.json`` and
simply reruns; a failed run is recorded and does not stop the others (and is
retried on the next invocation). Measurements are keyed by their own config,
so adding a measure never retrains.

API for the other modules and notebooks: :func:`grid`, :func:`run_zoo`,
:func:`status`, :func:`table`, :func:`load_run`, :func:`run_data`,
:func:`measure`, :func:`measure_records`. The ``renyilib zoo`` command
(:mod:`renyilib.experiments.cli`) wraps them.
"""

from __future__ import annotations

import copy
import itertools
import os
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from renyilib.experiments.config import default_device, load_profile, seed_everything
from renyilib.experiments.data import DATASETS
from renyilib.experiments.io import (
    code_version,
    config_hash,
    load_state_dict,
    read_json,
    save_state_dict,
)
from renyilib.experiments.io import write_json as _write_json
from renyilib.experiments.parallel import map_processes
from renyilib.experiments.train import (
    CONVERGED_TRAIN_ACC,
    CONVERGED_TRAIN_LOSS,
    TrainConfig,
    train,
)

__all__ = [
    "TASKS",
    "Task",
    "build_run_model",
    "curves",
    "export_results",
    "grid",
    "load_run",
    "measure",
    "measure_records",
    "profile_settings",
    "run_config",
    "run_dir",
    "run_data",
    "run_status",
    "run_zoo",
    "status",
    "table",
]


@dataclass(frozen=True)
class Task:
    """A dataset and an architecture (names understood by ``renyilib.experiments.data`` / ``renyilib.experiments.models``).

    Attributes:
        name: Task name, e.g. ``"cifar10-resnet18"``.
        dataset: :func:`renyilib.experiments.data.load_data` name.
        model: :func:`renyilib.experiments.models.build_model` name.
        num_classes, in_channels, image_size: The model's input/output shape.
        description: One line for tables.
    """

    name: str
    dataset: str
    model: str
    num_classes: int
    in_channels: int
    image_size: int
    description: str


TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task("digits-mlp", "digits", "mlp", 10, 1, 8, "scikit-learn digits (8x8), MLP"),
        Task(
            "digits-cnn", "digits", "digits-cnn", 10, 1, 8, "scikit-learn digits (8x8), small CNN"
        ),
        Task("cifar10-resnet18", "cifar10", "resnet18", 10, 3, 32, "CIFAR-10, ResNet-18 (Table 2)"),
        Task("cifar10-resnet34", "cifar10", "resnet34", 10, 3, 32, "CIFAR-10, ResNet-34 (Table 2)"),
        Task("cifar10-vit", "cifar10", "vit", 10, 3, 32, "CIFAR-10, SimpleViT (vit-pytorch)"),
        Task(
            "cifar100-resnet18",
            "cifar100",
            "resnet18",
            100,
            3,
            32,
            "CIFAR-100, ResNet-18 (Table 2)",
        ),
        Task(
            "cifar100-resnet34",
            "cifar100",
            "resnet34",
            100,
            3,
            32,
            "CIFAR-100, ResNet-34 (Table 2)",
        ),
        Task(
            "tinyimagenet-resnet18",
            "tinyimagenet",
            "resnet18-tiny",
            200,
            3,
            64,
            "Tiny ImageNet (64x64), ResNet-18 ImageNet stem (Table 2)",
        ),
    ]
}

# Settings a profile may give (at ``defaults`` or per task under ``overrides``).
_TRAIN_KEYS = ("epochs", "warmup_epochs", "lr_scaling", "base_batch_size", "momentum", "augment")
_OTHER_KEYS = (
    "grid",
    "seeds",
    "width",
    "model_options",
    "train_subset",
    "test_subset",
    "data_seed",
    "min_train_acc",
    "max_train_loss",
    "eval_every",
)
# Order of the grid axes (fixes the run index used by ``--index``).
_AXES = ("lr", "batch_size", "weight_decay")


def _task(name: str) -> Task:
    if name not in TASKS:
        raise KeyError(f"task {name!r} unknown; known tasks: {sorted(TASKS)}")
    return TASKS[name]


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if key == "grid":  # a task's grid replaces the default grid as a whole
            out[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def profile_settings(
    task: str, profile: str, *, config_path: str | os.PathLike | None = None
) -> dict[str, Any]:
    """The zoo settings of ``task`` in ``profile``: ``defaults`` merged with ``overrides[task]``.

    Args:
        task: A key of :data:`TASKS`.
        profile: ``"smoke"``, ``"cpu"`` or ``"paper"``.
        config_path: Explicit ``_config.yml`` (found by
            :func:`renyilib.experiments.config.find_config` otherwise).

    Returns:
        A dict with the keys of the profile (``grid``, ``epochs``, ``seeds``, ...).
    """
    _task(task)
    prof = load_profile("zoo", profile, config_path)
    settings = _merge(prof.get("defaults", {}), prof.get("overrides", {}).get(task, {}) or {})
    unknown = sorted(set(settings) - set(_TRAIN_KEYS) - set(_OTHER_KEYS))
    if unknown:
        raise KeyError(
            f"zoo profile {profile!r} (task {task!r}) has unknown keys {unknown}; "
            f"known: {sorted(_TRAIN_KEYS + _OTHER_KEYS)}"
        )
    if "grid" not in settings or not settings["grid"]:
        raise KeyError(f"zoo profile {profile!r} (task {task!r}) defines no grid")
    return settings


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, list | tuple) else [value]


def grid(
    task: str, profile: str, *, config_path: str | os.PathLike | None = None
) -> list[dict[str, Any]]:
    """The run configs of ``task``'s zoo in ``profile``, in a fixed order.

    A profile's ``grid`` maps each optimizer to its axes, e.g.
    ``{sgd: {lr: [...], batch_size: [...], weight_decay: [...]}}``; any other
    :class:`~renyilib.experiments.train.TrainConfig` field may appear there too (a list is
    an axis, a scalar is fixed for that optimizer). The runs are the product
    over optimizer (in file order), ``lr``, ``batch_size``, ``weight_decay``,
    the remaining axes (sorted by name) and ``seeds``. That order defines the
    index of ``renyilib zoo run --index``.

    Each run config is a JSON-serializable dict::

        {"task", "dataset", "model",
         "model_kwargs": {"num_classes", "in_channels", "image_size", "width"},
         "data": {"train_subset", "test_subset", "seed"},
         "train": TrainConfig fields}

    and its :func:`renyilib.experiments.io.config_hash` names the run's folder.
    """
    t = _task(task)
    s = profile_settings(task, profile, config_path=config_path)
    base_train = {k: s[k] for k in _TRAIN_KEYS if k in s}
    configs = []
    for optimizer, axes in s["grid"].items():
        axes = dict(axes or {})
        names = [a for a in _AXES if a in axes] + sorted(set(axes) - set(_AXES))
        values = [_as_list(axes[a]) for a in names]
        for combo in itertools.product(*values):
            for seed in _as_list(s.get("seeds", [0])):
                train_cfg = {**base_train, **dict(zip(names, combo)), "optimizer": optimizer}
                train_cfg["seed"] = seed
                tc = TrainConfig.from_dict(train_cfg)  # validates
                configs.append(
                    {
                        "task": t.name,
                        "dataset": t.dataset,
                        "model": t.model,
                        "model_kwargs": {
                            "num_classes": t.num_classes,
                            "in_channels": t.in_channels,
                            "image_size": t.image_size,
                            "width": s.get("width", 1),
                            "options": dict(s.get("model_options") or {}),
                        },
                        "data": {
                            "train_subset": s.get("train_subset"),
                            "test_subset": s.get("test_subset"),
                            "seed": s.get("data_seed", 0),
                        },
                        "train": tc.to_dict(),
                    }
                )
    return configs


def run_dir(out: str | os.PathLike, config: dict[str, Any]) -> Path:
    """``<out>/<task>/<config_hash(config)>``."""
    return Path(out) / config["task"] / config_hash(config)


def run_status(path: str | os.PathLike) -> str:
    """``"done"`` (``metrics.json`` present), ``"failed"`` (``error.json``) or ``"missing"``."""
    path = Path(path)
    if (path / "metrics.json").is_file():
        return "done"
    if (path / "error.json").is_file():
        return "failed"
    return "missing"


# --------------------------------------------------------------------------- data and models

_BUNDLES: dict[str, Any] = {}


def run_data(config: dict[str, Any], root: str | os.PathLike | None = None) -> Any:
    """The :class:`renyilib.experiments.data.DataBundle` of a run config (cached per process).

    The same ``(dataset, subsets, seed, root)`` is loaded once per process, so a
    worker training many runs of a zoo decodes its data once.
    """
    from renyilib.experiments.data import load_data

    d = config["data"]
    key = config_hash({"dataset": config["dataset"], "data": d, "root": str(root)})
    if key not in _BUNDLES:
        _BUNDLES[key] = load_data(
            config["dataset"],
            root,
            train_subset=d.get("train_subset"),
            test_subset=d.get("test_subset"),
            seed=d.get("seed", 0),
        )
    return _BUNDLES[key]


def build_run_model(config: dict[str, Any]) -> nn.Module:
    """The freshly initialized model of a run config (zoo or Table 1), weights not loaded.

    Args:
        config: A run config (``config["model"]`` and ``config["model_kwargs"]``).

    Returns:
        :func:`renyilib.experiments.models.build_model` of that architecture, on the CPU.
    """
    from renyilib.experiments.models import build_model

    kw = config["model_kwargs"]
    return build_model(
        config["model"],
        kw["num_classes"],
        in_channels=kw["in_channels"],
        width=kw["width"],
        image_size=kw["image_size"],
        **kw.get("options", {}),
    )


def load_run(
    path: str | os.PathLike, device: str | torch.device | None = None
) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """Rebuild a finished run's model with its final weights.

    Args:
        path: The run folder ``<out>/<task>/<hash>``.
        device: Device of the model (default :func:`renyilib.experiments.config.default_device`).

    Returns:
        ``(model, config, metrics)``: the model in eval mode with the weights of
        ``weights.pt`` (loaded with ``weights_only=True``), the run config and
        the final record of ``metrics.json``.
    """
    path = Path(path)
    if run_status(path) != "done" or not (path / "weights.pt").is_file():
        raise FileNotFoundError(f"{path} is not a finished run (no metrics.json / weights.pt)")
    config = read_json(path / "config.json")["config"]
    metrics = read_json(path / "metrics.json")
    model = build_run_model(config)
    model.load_state_dict(load_state_dict(path / "weights.pt"))
    model.to(default_device(device)).eval()
    return model, config, metrics


# --------------------------------------------------------------------------- the runner


def _clean_temp(path: Path) -> None:
    if path.is_dir():
        for tmp in path.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)


def run_config(
    config: dict[str, Any],
    out: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
    criterion: dict[str, float] | None = None,
    eval_every: int = 1,
) -> str:
    """Train one run of a zoo unless it is finished; never raises on a training error.

    Writes ``config.json``, trains, then ``weights.pt`` and last ``metrics.json``
    (each atomically), so a run killed at any point, inside the weights' save
    included, is not finished and reruns. The optimizer's ``on_epoch_end`` is
    told ``nan`` for the validation accuracy (a zoo run holds no validation
    split out; an optimizer with ``switch_accuracy`` is refused by
    :func:`renyilib.experiments.train.train`).

    Args:
        config: A run config from :func:`grid`.
        out: The zoo folder.
        data_root: Data root (else ``RENYI_DATA``, else ``data/``).
        device: Training device (default :func:`renyilib.experiments.config.default_device`).
        progress: tqdm bar over the run's epochs.
        criterion: ``{"min_train_acc", "max_train_loss"}`` of the convergence check.
        eval_every: Evaluate train/test metrics every this many epochs.

    Returns:
        ``"skipped"`` (already finished), ``"done"`` or ``"failed"`` (the
        traceback is in ``error.json``; ``KeyboardInterrupt`` still propagates).
    """
    path = run_dir(out, config)
    if run_status(path) == "done":
        return "skipped"
    _clean_temp(path)
    criterion = criterion or {}
    try:
        _write_json(
            path / "config.json",
            {"config": config, "hash": path.name, "code_version": code_version()},
        )
        data = run_data(config, data_root)
        seed_everything(config["train"]["seed"])  # the model's initialization
        model = build_run_model(config)
        result = train(
            model,
            data,
            config["train"],
            device=device,
            progress=progress,
            eval_every=eval_every,
            min_acc=criterion.get("min_train_acc", CONVERGED_TRAIN_ACC),
            max_loss=criterion.get("max_train_loss", CONVERGED_TRAIN_LOSS),
        )
        save_state_dict(path / "weights.pt", model.state_dict())
        record = result.to_dict()
        record.update(
            hash=path.name,
            code_version=code_version(),
            peak_lr=TrainConfig.from_dict(config["train"]).peak_lr,
            n_train=len(data.train_y),
            n_test=len(data.test_y),
            device=str(default_device(device)),
        )
        _write_json(path / "metrics.json", record)
        (path / "error.json").unlink(missing_ok=True)
        return "done"
    except Exception as exc:
        _write_json(
            path / "error.json",
            {
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
                "code_version": code_version(),
                "config": config,
            },
        )
        return "failed"


def _worker(config: dict, out: str, kwargs: dict) -> str:
    return run_config(config, out, **kwargs)


def run_zoo(
    configs: Sequence[dict[str, Any]],
    out: str | os.PathLike,
    *,
    jobs: int = 1,
    threads: int | None = 1,
    data_root: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    criterion: dict[str, float] | None = None,
    eval_every: int = 1,
) -> dict[str, int]:
    """Train every unfinished run of ``configs`` under ``out`` (resumable, failure-tolerant).

    Args:
        configs: Run configs (e.g. :func:`grid`).
        out: The zoo folder.
        jobs: Worker processes (``1``: in this process). Workers are spawned,
            train one run at a time and load each dataset once.
        threads: ``torch.set_num_threads`` in each worker (``None``: leave as
            is); with ``jobs=1`` it applies to this process during the call.
        data_root, device, criterion, eval_every: As in :func:`run_config`.
        progress: tqdm bar over runs.

    Returns:
        Counts ``{"done", "skipped", "failed"}`` over ``configs``.
    """
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive int, got {jobs!r}")
    counts = {"done": 0, "skipped": 0, "failed": 0}
    pending = []
    for config in configs:
        if run_status(run_dir(out, config)) == "done":
            counts["skipped"] += 1
        else:
            pending.append(config)
    kwargs = {
        "data_root": None if data_root is None else str(data_root),
        "device": None if device is None else str(device),
        "criterion": criterion,
        "eval_every": eval_every,
    }

    def tally(i: int, result: Any) -> None:
        if isinstance(result, BaseException):  # a worker died (e.g. killed by the OS)
            _write_json(
                run_dir(out, pending[i]) / "error.json",
                {
                    "error": f"worker process died: {result!r}",
                    "traceback": "",
                    "code_version": code_version(),
                },
            )
            result = "failed"
        counts[result] += 1

    map_processes(
        _worker,
        pending,
        jobs=jobs,
        threads=threads,
        kwargs={"out": str(out), "kwargs": kwargs},
        progress=progress,
        desc="zoo",
        on_result=tally,
    )
    return counts


# --------------------------------------------------------------------------- results


def status(out: str | os.PathLike, configs: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per config: ``index, task, hash, status`` (done / failed / missing) and the grid axes."""
    rows = []
    for i, config in enumerate(configs):
        path = run_dir(out, config)
        t = config["train"]
        rows.append(
            {
                "index": i,
                "task": config["task"],
                "hash": path.name,
                "status": run_status(path),
                "optimizer": t["optimizer"],
                "lr": t["lr"],
                "batch_size": t["batch_size"],
                "weight_decay": t["weight_decay"],
                "epochs": t["epochs"],
                "seed": t["seed"],
            }
        )
    return pd.DataFrame(rows)


def _flatten(prefix: str, obj: Any, out: dict[str, Any]) -> None:
    if isinstance(obj, dict):
        for key, value in obj.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), value, out)
    elif isinstance(obj, bool | int | float | str) or obj is None:
        out[prefix] = obj


def _run_dirs(out: Path, task: str | None) -> Iterable[Path]:
    tasks = [out / task] if task else sorted(p for p in out.iterdir() if p.is_dir())
    for folder in tasks:
        if folder.is_dir():
            yield from sorted(p for p in folder.iterdir() if (p / "config.json").is_file())


def table(
    out: str | os.PathLike,
    task: str | None = None,
    *,
    measures: bool = False,
    include_unfinished: bool = False,
    configs: Sequence[dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """One row per run of the zoo(s) under ``out``: config columns, final metrics, measures.

    Args:
        out: The zoo folder.
        task: Only this task (default: every task folder under ``out``).
        configs: Only the runs of these configs (e.g. ``grid(task, profile)``),
            so that runs of other profiles sharing the folder are left out.
        measures: Add the scalar entries of every cached measurement as
            columns ``"<name>.<key>"`` (nested keys joined by dots); when a run
            has several measurements of the same name (different configs),
            their columns are ``"<name>[<measure-hash>].<key>"``.
        include_unfinished: Also list failed and missing runs (metrics NaN).

    Returns:
        A DataFrame with columns ``task, run, status, dataset, model, width,
        train_subset, optimizer, lr, peak_lr, batch_size, weight_decay, epochs,
        warmup_epochs, augment, augmentation (the policy applied: the dataset's
        default of :data:`renyilib.experiments.data.DATASETS` when ``augment``, e.g.
        "crop-flip" for CIFAR and "none" for digits), seed, ..., train_loss, train_acc, test_loss, test_acc,
        gap, converged, diverged, epochs_run, seconds, path`` (empty with these
        columns when there is no run).
    """
    out = Path(out)
    keep = None if configs is None else {run_dir(out, c) for c in configs}
    rows = []
    if out.is_dir():
        for path in _run_dirs(out, task):
            if keep is not None and path not in keep:
                continue
            st = run_status(path)
            if st != "done" and not include_unfinished:
                continue
            config = read_json(path / "config.json")["config"]
            t = config["train"]
            row: dict[str, Any] = {
                "task": config["task"],
                "run": path.name,
                "status": st,
                "dataset": config["dataset"],
                "model": config["model"],
                "width": config["model_kwargs"]["width"],
                "train_subset": config["data"]["train_subset"],
                "optimizer": t["optimizer"],
                "lr": t["lr"],
                "peak_lr": TrainConfig.from_dict(t).peak_lr,
                "batch_size": t["batch_size"],
                "weight_decay": t["weight_decay"],
                "epochs": t["epochs"],
                "warmup_epochs": t["warmup_epochs"],
                "lr_scaling": t["lr_scaling"],
                "base_batch_size": t["base_batch_size"],
                "augment": t["augment"],
                # the policy actually applied: `augment` switches on the dataset's default
                "augmentation": DATASETS[config["dataset"]].augmentation
                if t["augment"]
                else "none",
                "seed": t["seed"],
            }
            for key, value in sorted(t.get("optimizer_kwargs", {}).items()):
                row[f"optimizer_kwargs.{key}"] = value
            if st == "done":
                m = read_json(path / "metrics.json")
                for key in (
                    "train_loss",
                    "train_acc",
                    "test_loss",
                    "test_acc",
                    "gap",
                    "converged",
                    "diverged",
                    "epochs_run",
                    "seconds",
                ):
                    row[key] = m[key]
                if measures:
                    row.update(_measure_columns(path))
            elif st == "failed":
                row["error"] = read_json(path / "error.json")["error"]
            row["path"] = str(path)
            rows.append(row)
    columns = [
        "task",
        "run",
        "status",
        "optimizer",
        "lr",
        "batch_size",
        "weight_decay",
        "train_loss",
        "train_acc",
        "test_loss",
        "test_acc",
        "gap",
        "converged",
        "path",
    ]
    df = pd.DataFrame(rows)
    return df if rows else pd.DataFrame(columns=columns)


def curves(
    out: str | os.PathLike,
    task: str | None = None,
    *,
    configs: Sequence[dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """The per-epoch training curves of every finished run, as one long table.

    Args:
        out: The zoo folder.
        task: Only this task (default: every task under ``out``).
        configs: Only the runs of these configs (as in :func:`table`).

    Returns:
        One row per (run, evaluated epoch): ``task, run, optimizer, epoch, lr,
        batch_loss, train_loss, train_acc, test_loss, test_acc`` (the entries of
        ``metrics.json``'s ``curves``; train metrics on the un-augmented set).
    """
    return _curves_and_versions(table(out, task, configs=configs))[0]


def _curves_and_versions(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The long curves table of ``runs`` (a :func:`table`) and the code versions that
    trained them, from one read of each ``metrics.json``."""
    frames, versions = [], set()
    for _, row in runs.iterrows():
        m = read_json(Path(row["path"]) / "metrics.json")
        versions.add(m["code_version"])
        c = pd.DataFrame(m["curves"])
        frames.append(c.assign(task=row["task"], run=row["run"], optimizer=row["optimizer"]))
    first = ["task", "run", "optimizer", "epoch"]
    if not frames:
        return pd.DataFrame(columns=first), []
    df = pd.concat(frames, ignore_index=True)
    return df[first + [c for c in df.columns if c not in first]], sorted(versions)


def export_results(
    out: str | os.PathLike,
    task: str,
    configs: Sequence[dict[str, Any]],
    dest: str | os.PathLike,
    *,
    meta: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write a zoo's summary where the book can render it without the zoo (``data/results/<task>/``).

    Writes, each atomically: ``zoo_table.csv`` (:func:`table` without the
    machine-specific ``path``), ``curves.csv`` (:func:`curves`) and
    ``zoo_meta.json`` (the grid's settings, the code versions that trained the
    runs, the exporting code version and ``meta``).

    Args:
        out: The zoo folder.
        task: Task name.
        configs: The grid whose runs are exported (e.g. ``grid(task, "cpu")``).
        dest: Destination folder (created).
        meta: Extra provenance (e.g. the command and data root).

    Returns:
        ``{"zoo_table": path, "curves": path, "zoo_meta": path}``.

    Raises:
        ValueError: If none of ``configs`` has a finished run under ``out``.
    """
    from renyilib.experiments.io import atomic_write

    dest = Path(dest)
    runs = table(out, task, configs=configs)
    if runs.empty:
        raise ValueError(f"configs: no finished run of task {task!r} under {str(out)!r}")
    run_curves, versions = _curves_and_versions(runs)
    paths = {
        "zoo_table": dest / "zoo_table.csv",
        "curves": dest / "curves.csv",
        "zoo_meta": dest / "zoo_meta.json",
    }
    table_csv = runs.drop(columns=["path"]).to_csv(index=False)
    curves_csv = run_curves.to_csv(index=False)
    atomic_write(paths["zoo_table"], lambda tmp: tmp.write_text(table_csv))
    atomic_write(paths["curves"], lambda tmp: tmp.write_text(curves_csv))
    _write_json(
        paths["zoo_meta"],
        {
            "task": task,
            "runs": len(runs),
            "grid_size": len(configs),
            "converged": int(runs["converged"].astype(bool).sum()),
            "configs": list(configs),
            "trained_with_code_version": versions,
            "exported_with_code_version": code_version(),
            **(meta or {}),
        },
    )
    return paths


def _measure_files(path: Path) -> list[dict[str, Any]]:
    folder = path / "measures"
    if not folder.is_dir():
        return []
    return [read_json(f) for f in sorted(folder.glob("*.json"))]


def _measure_columns(path: Path) -> dict[str, Any]:
    records = _measure_files(path)
    names = [r["name"] for r in records]
    cols: dict[str, Any] = {}
    for r in records:
        prefix = r["name"] if names.count(r["name"]) == 1 else f"{r['name']}[{r['hash']}]"
        _flatten(prefix, r["result"], cols)
    return cols


# --------------------------------------------------------------------------- measurement cache


def _measure_path(path: Path, name: str, config: dict[str, Any]) -> Path:
    return path / "measures" / f"{config_hash({'name': name, 'config': config})}.json"


def measure(
    path: str | os.PathLike,
    name: str,
    config: dict[str, Any],
    compute: Callable[[], dict[str, Any]],
    *,
    force: bool = False,
) -> dict[str, Any]:
    """A measurement of a run, computed once and cached in ``measures/<hash>.json``.

    The cache key is :func:`renyilib.experiments.io.config_hash` of ``{"name": name,
    "config": config}``; the file records ``name``, ``config``, ``hash``, the
    code version, the compute time and the ``result``. Put everything that
    determines the value in ``config`` (estimator settings, α grid, sample size,
    seed): a different config is a different measurement.

    Args:
        path: A finished run folder.
        name: Measure name, e.g. ``"renyi"`` or ``"trace"``.
        config: JSON-serializable settings of the measurement.
        compute: Called on a cache miss; returns a JSON-serializable dict
            (numpy/torch scalars and arrays are converted).
        force: Recompute and overwrite even when cached.

    Returns:
        The result, as read back from the JSON file (so a hit and a miss return
        equal values: arrays become lists).
    """
    path = Path(path)
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty str, got {name!r}")
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    if run_status(path) != "done":
        raise FileNotFoundError(f"path {path} is not a finished run (no metrics.json)")
    file = _measure_path(path, name, config)
    if file.is_file() and not force:
        return read_json(file)["result"]
    start = time.perf_counter()
    result = compute()
    if not isinstance(result, dict):
        raise TypeError(f"compute must return a dict, got {type(result).__name__}")
    _write_json(
        file,
        {
            "name": name,
            "config": config,
            "hash": file.stem,
            "code_version": code_version(),
            "seconds": time.perf_counter() - start,
            "result": result,
        },
    )
    return read_json(file)["result"]


def measure_records(
    out: str | os.PathLike, task: str | None = None, name: str | None = None
) -> pd.DataFrame:
    """Long table of cached measurements: one row per run × measurement.

    Columns: ``task, run, name, measure_hash, code_version`` then the
    measurement's flattened scalar ``config.*`` and ``result.*`` entries, and
    the run's ``gap``/``test_loss``/``train_loss``/``converged``.
    """
    out = Path(out)
    rows = []
    if out.is_dir():
        for path in _run_dirs(out, task):
            if run_status(path) != "done":
                continue
            m = read_json(path / "metrics.json")
            for r in _measure_files(path):
                if name is not None and r["name"] != name:
                    continue
                row: dict[str, Any] = {
                    "task": path.parent.name,
                    "run": path.name,
                    "name": r["name"],
                    "measure_hash": r["hash"],
                    "code_version": r["code_version"],
                }
                _flatten("config", r["config"], row)
                _flatten("result", r["result"], row)
                row.update(
                    gap=m["gap"],
                    test_loss=m["test_loss"],
                    train_loss=m["train_loss"],
                    converged=m["converged"],
                )
                rows.append(row)
    return pd.DataFrame(rows)
