"""The zoo chapter's computation: the tasks, the grids, training the zoos, convergence and gaps.

The correlation study (Sec. 5, App. G.3.1) needs zoos of models trained to
the end the paper assumes (train loss near zero) whose generalization gaps
differ. This module describes the tasks and the grids of every profile,
trains a profile's zoos (:func:`renyilib.experiments.zoo.run_zoo`: finished
runs are skipped), and summarizes the finished runs: per optimizer and
learning rate, convergence, and the spread of the gaps. :func:`zoo_study`
runs it in the chapter's order.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "ZooStudy",
    "convergence_table",
    "grid_row",
    "grid_table",
    "run_summary",
    "task_table",
    "train_zoos",
    "zoo_study",
]


def task_table(profile: str, trained: Sequence[str]) -> pd.DataFrame:
    """Every task of :data:`renyilib.experiments.zoo.TASKS`: data, model, size in ``profile``.

    Args:
        profile: The zoo profile whose width the parameter count uses.
        trained: The tasks this chapter trains (flagged in ``trained here``).

    Returns:
        Index ``task``; ``dataset, model, classes, input, width (<profile>),
        parameters (<profile>), trained here, description``.
    """
    from renyilib.experiments import zoo
    from renyilib.experiments.models import build_model, count_parameters

    rows = []
    for t in zoo.TASKS.values():
        width = zoo.profile_settings(t.name, profile).get("width", 1)
        n = count_parameters(
            build_model(
                t.model,
                t.num_classes,
                in_channels=t.in_channels,
                width=width,
                image_size=t.image_size,
            )
        )
        rows.append(
            {
                "task": t.name,
                "dataset": t.dataset,
                "model": t.model,
                "classes": t.num_classes,
                "input": f"{t.in_channels}×{t.image_size}×{t.image_size}",
                f"width ({profile})": width,
                f"parameters ({profile})": n,
                "trained here": t.name in trained,
                "description": t.description,
            }
        )
    return pd.DataFrame(rows).set_index("task")


def grid_row(task: str, profile: str) -> dict[str, Any]:
    """One task's grid in one profile: runs, epochs, warm-up, B0, data, width and every axis."""
    from renyilib.experiments import zoo

    s = zoo.profile_settings(task, profile)
    row = {
        "profile": profile,
        "task": task,
        "runs": len(zoo.grid(task, profile)),
        "epochs": s.get("epochs"),
        "warm-up": s.get("warmup_epochs"),
        "B0": s.get("base_batch_size"),
        "train images": s.get("train_subset") or "all",
        "width": s.get("width", 1),
    }
    for opt, axes in s["grid"].items():
        for axis in ("lr", "batch_size", "weight_decay"):
            row[f"{opt} {axis}"] = str(axes.get(axis))
    return row


def grid_table(shown: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """:func:`grid_row` of each ``(task, profile)``, transposed (one column per task and profile)."""
    return pd.DataFrame([grid_row(t, p) for t, p in shown]).set_index(["profile", "task"]).T


def train_zoos(
    tasks: Sequence[str], profile: str, out: str | os.PathLike, *, jobs: int = 1
) -> dict[str, Any]:
    """Train every unfinished run of ``tasks``' grids in ``profile`` (finished runs are skipped).

    Returns:
        ``configs`` (task → run configs), ``counts`` (task → done / skipped /
        failed), ``status`` (:func:`renyilib.experiments.zoo.status` of all),
        ``criterion`` (the convergence thresholds used), ``eval_every`` and ``seconds``.
    """
    from renyilib.experiments import zoo

    configs = {t: zoo.grid(t, profile) for t in tasks}
    s0 = zoo.profile_settings(tasks[0], profile)
    criterion = {k: s0[k] for k in ("min_train_acc", "max_train_loss") if k in s0}
    start = time.perf_counter()
    counts = {}
    for t in tasks:
        counts[t] = zoo.run_zoo(
            configs[t],
            out,
            jobs=jobs,
            threads=1,
            progress=False,
            criterion=criterion,
            eval_every=int(s0.get("eval_every", 1)),
        )
    return {
        "configs": configs,
        "counts": counts,
        "status": pd.concat([zoo.status(out, configs[t]) for t in tasks]),
        "criterion": criterion,
        "settings": s0,
        "seconds": time.perf_counter() - start,
    }


def run_summary(
    runs: pd.DataFrame, by: Sequence[str] = ("task", "optimizer", "lr")
) -> pd.DataFrame:
    """Per group (default: task, optimizer, learning rate) of a zoo table.

    Returns:
        Runs, worst train loss and accuracy, mean test accuracy, smallest and
        largest gap, converged runs and recorded training minutes.
    """
    return runs.groupby(list(by)).agg(
        runs=("run", "size"),
        train_loss_max=("train_loss", "max"),
        train_acc_min=("train_acc", "min"),
        test_acc_mean=("test_acc", "mean"),
        gap_min=("gap", "min"),
        gap_max=("gap", "max"),
        converged=("converged", "sum"),
        minutes=("seconds", lambda s: s.sum() / 60),
    )


def convergence_table(runs: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Per task: runs, converged, diverged, worst train accuracy and loss; and the verdict sentence."""
    conv = runs.groupby("task").agg(
        runs=("run", "size"),
        converged=("converged", "sum"),
        diverged=("diverged", "sum"),
        worst_train_acc=("train_acc", "min"),
        worst_train_loss=("train_loss", "max"),
    )
    n_runs, n_conv = int(conv.runs.sum()), int(conv.converged.sum())
    verdict = (
        "every run met the criterion"
        if n_conv == n_runs and len(runs)
        else f"{n_runs - n_conv} of {n_runs} runs missed the criterion"
    )
    return conv, verdict


@dataclass
class ZooStudy:
    """Everything the zoo chapter shows."""

    tasks: list[str]
    out: Path
    task_table: pd.DataFrame
    grids: pd.DataFrame
    training: dict[str, Any]
    runs: pd.DataFrame
    curves: pd.DataFrame
    summary: pd.DataFrame
    convergence: pd.DataFrame
    missed: pd.DataFrame
    spread: pd.DataFrame
    numbers: dict[str, Any] = field(default_factory=dict)


def zoo_study(
    profile: str, *, jobs: int | None = None, root: str | os.PathLike | None = None
) -> ZooStudy:
    """The whole zoo chapter for one ``zoo`` profile: describe, train, summarize.

    Args:
        profile: Profile of the ``zoo`` section of ``_config.yml`` (its ``run_tasks`` are trained).
        jobs: Worker processes (default: the profile's ``jobs``).
        root: Project root (default: the folder of ``_config.yml``).

    Returns:
        A :class:`ZooStudy`; ``numbers`` holds what the chapter quotes.
    """
    from renyilib.experiments import zoo
    from renyilib.experiments.config import find_config, load_profile
    from renyilib.experiments.io import code_version
    from renyilib.experiments.summary import display_version
    from renyilib.experiments.train import CONVERGED_TRAIN_ACC, CONVERGED_TRAIN_LOSS

    cfg = load_profile("zoo", profile)
    root = Path(root) if root is not None else find_config().parent
    out = root / cfg.get("out", "data/zoo")
    tasks = list(cfg["run_tasks"])
    jobs = int(jobs or cfg.get("jobs", 1))
    shown = [(t, "smoke") for t in load_profile("zoo", "smoke")["run_tasks"]]
    shown += [(t, "cpu") for t in load_profile("zoo", "cpu")["run_tasks"]]
    shown += [("cifar10-resnet18", "cpu"), ("cifar10-resnet18", "paper")]
    shown += [("tinyimagenet-resnet18", "paper")]
    training = train_zoos(tasks, profile, out, jobs=jobs)
    configs, counts, s0 = training["configs"], training["counts"], training["settings"]
    runs = pd.concat([zoo.table(out, t, configs=configs[t]) for t in tasks], ignore_index=True)
    curves = pd.concat([zoo.curves(out, t, configs=configs[t]) for t in tasks], ignore_index=True)
    conv, verdict = convergence_table(runs)
    missed = runs[~runs.converged.astype(bool)]
    criterion = training["criterion"]
    cifar = zoo.profile_settings("cifar10-resnet18", "cpu")
    numbers: dict[str, Any] = {
        "code_version": display_version(code_version()),
        "tasks": ", ".join(tasks),
        "jobs": jobs,
        "train_minutes": f"{training['seconds'] / 60:.1f}",
        "n_trained": sum(c["done"] for c in counts.values()),
        "n_cached": sum(c["skipped"] for c in counts.values()),
        "n_failed": sum(c["failed"] for c in counts.values()),
        "recorded_minutes": f"{runs.seconds.sum() / 60:.0f}",
        "min_acc_pct": f"{100 * criterion.get('min_train_acc', CONVERGED_TRAIN_ACC):g}",
        "max_loss": f"{criterion.get('max_train_loss', CONVERGED_TRAIN_LOSS):g}",
        "n_runs": int(conv.runs.sum()),
        "n_converged": int(conv.converged.sum()),
        "worst_train_acc": f"{100 * runs.train_acc.min():.2f}",
        "worst_train_loss": f"{runs.train_loss.max():.4f}",
        "convergence_verdict": verdict,
        "test_acc_min": f"{100 * runs.test_acc.min():.1f}",
        "test_acc_max": f"{100 * runs.test_acc.max():.1f}",
        "paper_runs_cifar": len(zoo.grid("cifar10-resnet18", "paper")),
        "paper_runs_tiny": len(zoo.grid("tinyimagenet-resnet18", "paper")),
        "cpu_runs_cifar": len(zoo.grid("cifar10-resnet18", "cpu")),
        "epochs": s0["epochs"],
        "cifar_width": cifar["width"],
        "cifar_train": f"{cifar['train_subset']:,}",
        "cifar_epochs": cifar["epochs"],
    }
    for t in tasks:
        g = runs[runs.task == t].gap
        numbers[f"gap_min_{t}"] = f"{g.min():.3f}"
        numbers[f"gap_max_{t}"] = f"{g.max():.3f}"
        numbers[f"gap_ratio_{t}"] = f"{g.max() / g.min():.1f}" if g.min() > 0 else "n/a"
    return ZooStudy(
        tasks=tasks,
        out=out,
        task_table=task_table(profile, tasks),
        grids=grid_table(shown),
        training=training,
        runs=runs,
        curves=curves,
        summary=run_summary(runs),
        convergence=conv,
        missed=missed,
        spread=runs.groupby("task").gap.describe()[["count", "min", "50%", "max", "std"]],
        numbers=numbers,
    )
