"""Table 1: SGD, SAM, ASAM, Eigen-SAM and RSAM over tasks and seeds (Sec. 6.2, App. G.3.2).

The runner trains every (task, method, seed) of a profile (``experiments: rsam:``
in the top-level ``_config.yml``) and reports the test accuracy as mean ±
standard error over seeds, next to the paper's Table 1
(``book/reference/paper_table1.csv``).

Hyperparameters are those of Tables 4-6 (:data:`PAPER_HPARAMS`: momentum 0.9,
batch 128, cosine decay from lr 0.1 (0.2 on TinyImageNet) without warm-up,
weight decay 5e-4 (1e-4), 200 (100) epochs; ρ, η and α per method; RSAM's
SGD warm-up ``sgd_epochs`` and TinyImageNet's 30 % switch). Small tasks
(scikit-learn digits) borrow the CIFAR-10 ResNet-20 row. A profile may scale
the budget (``epochs``; ``sgd_epochs`` scales with it) and, with ``tune``,
choose each method's ρ on a stratified validation split carved out of the
training set by **the same search for every method**: the method's paper ρ
times each of the same ``factors`` (SGD has no ρ and is trained once), one
seed, best mean validation accuracy (ties: the smaller ρ).

Runs follow the zoo's conventions (:mod:`renyilib.experiments.zoo`): each run is keyed by
the hash of its full config and lives in ``<out>/<task>/<hash>/`` with
``config.json``, ``weights.pt`` and, written last, ``metrics.json`` (its
presence marks the run finished; final metrics and per-epoch curves, including
the mean and maximum :math:`\\|\\epsilon\\|_2` of the epoch read from
``optimizer.last_perturbation_norm``), all written atomically by
:mod:`renyilib.experiments.io`; rerunning skips finished runs. Training is the
zoo's loop, :func:`renyilib.experiments.train.train`, with Table 1's settings
(:func:`train_config`: no linear scaling, no warm-up, cosine decay per step,
evaluation every epoch, perturbation curves).

**Validation split.** RSAM's SGD phase on Tiny ImageNet ends once the
*validation* top-1 accuracy exceeds 30 % (Table 6). The optimizer is only ever
told the accuracy of a split held out of the training set
(:func:`renyilib.experiments.splits.hold_out`): in a tuning run, its
``val_size`` validation points; in a final run, ``holdout`` training points
(the profile's ``holdout``, per task under ``task_overrides``) that every
method of the task leaves out, while the test set is still what the run
reports. Without a validation split the optimizer gets ``nan``, and a method
with ``switch_accuracy`` is refused by :func:`make_config`.

Command line::

    python -m renyilib.experiments.table1 --profile cpu [--tasks cifar10-resnet20] [--csv data/results/x.csv]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from renyilib.experiments.config import default_device, load_profile, seed_everything
from renyilib.experiments.io import (
    atomic_write,
    code_version,
    config_hash,
    read_json,
    save_state_dict,
    write_json,
)
from renyilib.experiments.parallel import map_processes
from renyilib.experiments.splits import hold_out
from renyilib.experiments.train import TrainConfig, train
from renyilib.experiments.zoo import build_run_model  # one model builder for zoo and Table 1 runs

__all__ = [
    "METHODS",
    "METHOD_LABELS",
    "PAPER_HPARAMS",
    "TASKS",
    "eval_split",
    "final_configs",
    "load_paper_table",
    "make_config",
    "load_model",
    "run",
    "run_data",
    "run_dir",
    "run_table1",
    "runs_table",
    "summarize",
    "train_config",
    "train_run",
    "tune_configs",
    "tuned_rho",
]

#: Method keys of the runner, in table order.
METHODS = ("sgd", "sam", "asam", "eigensam", "rsam", "rsam-fixed")
#: Column labels (the paper's spelling).
METHOD_LABELS = {
    "sgd": "SGD",
    "sam": "SAM",
    "asam": "ASAM",
    "eigensam": "Eigen-SAM",
    "rsam": "RSAM",
    "rsam-fixed": "RSAM (fixed radius)",
}

#: task -> dataset, model, model kwargs, the paper's dataset / model labels of Table 1.
TASKS: dict[str, dict[str, Any]] = {
    "digits-mlp": dict(dataset="digits", model="mlp", num_classes=10, in_channels=1, image_size=8),
    "digits-cnn": dict(
        dataset="digits", model="digits-cnn", num_classes=10, in_channels=1, image_size=8
    ),
    "cifar10-resnet20": dict(
        dataset="cifar10", model="resnet20", num_classes=10, in_channels=3, image_size=32,
        paper=("CIFAR10", "ResNet20"),
    ),
    "cifar10-resnet56": dict(
        dataset="cifar10", model="resnet56", num_classes=10, in_channels=3, image_size=32,
        paper=("CIFAR10", "ResNet56"),
    ),
    "cifar10-wrn28-10": dict(
        dataset="cifar10", model="wrn28-10", num_classes=10, in_channels=3, image_size=32,
        paper=("CIFAR10", "WideResNet-28-10"),
    ),
    "cifar100-resnet20": dict(
        dataset="cifar100", model="resnet20", num_classes=100, in_channels=3, image_size=32,
        paper=("CIFAR100", "ResNet20"),
    ),
    "cifar100-resnet56": dict(
        dataset="cifar100", model="resnet56", num_classes=100, in_channels=3, image_size=32,
        paper=("CIFAR100", "ResNet56"),
    ),
    "cifar100-wrn28-10": dict(
        dataset="cifar100", model="wrn28-10", num_classes=100, in_channels=3, image_size=32,
        paper=("CIFAR100", "WideResNet-28-10"),
    ),
    "tinyimagenet-resnet50": dict(
        dataset="tinyimagenet", model="resnet50", num_classes=200, in_channels=3, image_size=64,
        paper=("TinyImageNet", "ResNet50"),
    ),
}  # fmt: skip

_CIFAR = {"lr": 0.1, "momentum": 0.9, "batch_size": 128, "weight_decay": 5e-4, "epochs": 200}
_TINY = {"lr": 0.2, "momentum": 0.9, "batch_size": 128, "weight_decay": 1e-4, "epochs": 100}


def _rows(common: dict, sam: float, asam: float, rsam: tuple[float, float], sgd_epochs: int = 5):
    return {
        "sgd": {**common, "kwargs": {}},
        "sam": {**common, "kwargs": {"rho": sam}},
        "asam": {**common, "kwargs": {"rho": asam, "eta": 0.01}},
        "eigensam": {**common, "kwargs": {"rho": sam, "alpha": 0.2, "freq": 100, "power_iters": 5}},
        "rsam": {
            **common,
            "kwargs": {"rho": rsam[0], "alpha": rsam[1], "sgd_epochs": sgd_epochs},
        },
        # Not in the paper: Eq. 11 with a fixed l_p radius; its rho is SAM's (equal at alpha = 1).
        "rsam-fixed": {
            **common,
            "kwargs": {"rho": sam, "alpha": rsam[1], "radius": "fixed", "sgd_epochs": sgd_epochs},
        },
    }


#: Tables 4-6: (task, method) -> training settings and optimizer keywords.
PAPER_HPARAMS: dict[str, dict[str, dict[str, Any]]] = {
    "cifar10-resnet20": _rows(_CIFAR, 0.05, 0.5, (0.65, 1.2)),
    "cifar10-resnet56": _rows(_CIFAR, 0.05, 0.5, (0.8, 1.2)),
    "cifar10-wrn28-10": _rows(_CIFAR, 0.05, 0.5, (0.76, 1.1)),
    "cifar100-resnet20": _rows(_CIFAR, 0.1, 1.0, (0.76, 1.1)),
    "cifar100-resnet56": _rows(_CIFAR, 0.1, 1.0, (0.9, 1.1)),
    "cifar100-wrn28-10": _rows(_CIFAR, 0.1, 1.0, (1.0, 1.1)),
    "tinyimagenet-resnet50": _rows(_TINY, 0.05, 1.0, (1.25, 1.1), sgd_epochs=20),
}
# Table 6 note: on TinyImageNet the SGD phase ends once validation top-1 > 30 %.
for _m in ("rsam", "rsam-fixed"):
    PAPER_HPARAMS["tinyimagenet-resnet50"][_m]["kwargs"].update(
        sgd_epochs=None, switch_accuracy=0.30
    )
PAPER_HPARAMS["digits-mlp"] = copy.deepcopy(PAPER_HPARAMS["cifar10-resnet20"])
PAPER_HPARAMS["digits-cnn"] = copy.deepcopy(PAPER_HPARAMS["cifar10-resnet20"])


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise KeyError(f"task {task!r} unknown; known: {sorted(TASKS)}")


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def make_config(
    task: str,
    method: str,
    seed: int,
    *,
    epochs: int | None = None,
    rho: float | None = None,
    width: float = 1.0,
    train_subset: int | None = None,
    test_subset: int | None = None,
    val_size: int | None = None,
    augment: bool = True,
    method_overrides: dict[str, Any] | None = None,
    batch_size: int | None = None,
    holdout: int | None = None,
) -> dict[str, Any]:
    """One run config (JSON-serializable; its hash names the run folder).

    Args:
        task: A key of :data:`TASKS`.
        method: A key of :data:`METHODS`.
        seed: Seed of initialization, shuffling and augmentation.
        epochs: Epoch budget (default: the paper's). RSAM's ``sgd_epochs`` is
            scaled by ``epochs / paper_epochs`` (rounded, at least 1).
        rho: Override of the method's ρ (ignored for SGD).
        width: Channel/width multiplier of the model.
        train_subset, test_subset: Stratified subsets (``None``: all).
        val_size: If set, the run is a *tuning* run: ``val_size`` stratified
            training points are held out and evaluated instead of the test set.
        augment: Training augmentation of the dataset.
        method_overrides: Extra optimizer keywords for this method (e.g. Eigen-SAM's ``freq``).
        batch_size: Override of the paper's 128.
        holdout: For a final run: this many stratified training points are
            held out as a validation split, evaluated every epoch and read by
            the optimizer's ``on_epoch_end`` (RSAM's ``switch_accuracy``); the
            run still reports the test set. Stored as ``data.val_size`` with
            ``data.eval_split = "test"``.

    Raises:
        KeyError: Unknown ``task``.
        ValueError: Unknown ``method``; both ``val_size`` and ``holdout``; a
            non-positive size; or a method that switches on validation
            accuracy (``switch_accuracy``) with neither ``val_size`` nor
            ``holdout``.
    """
    _check_task(task)
    _check_method(method)
    hp = copy.deepcopy(PAPER_HPARAMS[task][method])
    kwargs = dict(hp["kwargs"])
    paper_epochs = hp["epochs"]
    epochs = int(epochs or paper_epochs)
    if kwargs.get("sgd_epochs"):
        kwargs["sgd_epochs"] = max(1, round(kwargs["sgd_epochs"] * epochs / paper_epochs))
    if rho is not None and method != "sgd":
        kwargs["rho"] = float(rho)
    kwargs.update(method_overrides or {})
    if method == "rsam-fixed":
        kwargs["radius"] = "fixed"
    for name, value in (("val_size", val_size), ("holdout", holdout)):
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 1
        ):
            raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    if val_size is not None and holdout is not None:
        raise ValueError(
            "give val_size (a tuning run, evaluated on the validation split) or holdout "
            "(a final run with a validation split beside the test set), not both"
        )
    if kwargs.get("switch_accuracy") is not None and val_size is None and holdout is None:
        raise ValueError(
            f"method {method!r} of task {task!r} ends its SGD phase on validation accuracy "
            f"(switch_accuracy={kwargs['switch_accuracy']}); give holdout=<number of training "
            "points held out as the validation split> (profile key `holdout`), or val_size "
            "for a tuning run: the test accuracy is never used"
        )
    data: dict[str, Any] = {
        "train_subset": train_subset,
        "test_subset": test_subset,
        "val_size": val_size,
    }
    if holdout is not None:  # key absent otherwise: the hashes of other runs stay as they were
        data.update(val_size=holdout, eval_split="test")
    t = TASKS[task]
    return {
        "experiment": "rsam-table1",
        "task": task,
        "dataset": t["dataset"],
        "model": t["model"],
        "model_kwargs": {
            "num_classes": t["num_classes"],
            "in_channels": t["in_channels"],
            "image_size": t["image_size"],
            "width": width,
        },
        "data": data,
        "train": {
            "method": method,
            "lr": hp["lr"],
            "momentum": hp["momentum"],
            "weight_decay": hp["weight_decay"],
            "batch_size": int(batch_size or hp["batch_size"]),
            "epochs": epochs,
            "augment": bool(augment),
            "seed": int(seed),
            "optimizer_kwargs": kwargs,
        },
    }


# ----------------------------------------------------------------------------- data

_BUNDLES: dict[str, Any] = {}


def run_data(config: dict[str, Any], root: str | os.PathLike | None = None) -> Any:
    """The run's data (cached per process).

    Returns:
        The :class:`~renyilib.experiments.data.DataBundle` of the config's
        dataset and subsets; when ``config["data"]["val_size"]`` is set, a
        :class:`~renyilib.experiments.splits.ValidationBundle` whose ``"val"``
        split holds that many stratified training points out of the training
        split (:func:`renyilib.experiments.splits.hold_out`, its fixed seed).
    """
    from renyilib.experiments.data import load_data

    d = config["data"]
    key = config_hash({"dataset": config["dataset"], "data": d, "root": str(root)})
    if key in _BUNDLES:
        return _BUNDLES[key]
    bundle = load_data(
        config["dataset"],
        root,
        train_subset=d.get("train_subset"),
        test_subset=d.get("test_subset"),
        seed=0,
        progress=False,
    )
    if d.get("val_size"):
        bundle = hold_out(bundle, int(d["val_size"]))
    _BUNDLES[key] = bundle
    return bundle


def eval_split(config: dict[str, Any]) -> str:
    """The split a run reports as ``eval_*``: ``"val"`` for a tuning run, else ``"test"``.

    ``config["data"]["eval_split"]`` when given (``"test"`` for a final run
    with a ``holdout``), else ``"val"`` if ``val_size`` is set, else ``"test"``.
    """
    d = config["data"]
    split = d.get("eval_split") or ("val" if d.get("val_size") else "test")
    if split not in ("val", "test") or (split == "val" and not d.get("val_size")):
        raise ValueError(
            f"config['data']['eval_split'] must be 'test', or 'val' with a val_size, got {split!r}"
        )
    return split


def train_config(config: dict[str, Any]) -> TrainConfig:
    """The :class:`~renyilib.experiments.train.TrainConfig` of a run config's ``train`` entry.

    Table 1's schedule (App. G.3.2): the learning rate ``lr`` as given (no
    linear scaling), no warm-up, cosine decay to 0 over all steps;
    ``rsam-fixed`` is RSAM with ``radius="fixed"``; Eigen-SAM's power
    iteration is seeded with the run's seed unless its keywords give one, and
    its eigenvector weight, stored as ``alpha`` in the run configs (so their
    hashes stay), is passed as ``eigvec_weight``.
    """
    t = config["train"]
    method = t["method"]
    kwargs = dict(t["optimizer_kwargs"])
    if method == "eigensam":
        kwargs.setdefault("seed", t["seed"])
        if "alpha" in kwargs:
            kwargs["eigvec_weight"] = kwargs.pop("alpha")
    return TrainConfig(
        optimizer="rsam" if method == "rsam-fixed" else method,
        lr=t["lr"],
        batch_size=t["batch_size"],
        weight_decay=t["weight_decay"],
        epochs=t["epochs"],
        warmup_epochs=0,
        lr_scaling=False,
        momentum=t["momentum"],
        augment=t["augment"],
        seed=t["seed"],
        optimizer_kwargs=kwargs,
    )


# ----------------------------------------------------------------------------- training


def train_run(
    config: dict[str, Any],
    *,
    data_root: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train one run config; return the model and the metrics record (with curves).

    :func:`renyilib.experiments.train.train` with :func:`train_config`,
    evaluated every epoch on the training set, the validation split (if the
    config holds one out) and the test set (unless it is a tuning run), with
    the perturbation curves. ``on_epoch_end(epoch, val_acc=)`` gets the
    validation accuracy, or ``nan`` without a validation split.

    Returns:
        ``(model, record)``; ``record`` holds the final ``train_loss/acc``,
        ``eval_loss/acc`` (test, or validation for tuning runs; see
        :func:`eval_split`), ``diverged``, ``seconds``, ``n_train``, ``n_eval``
        (``n_val`` too for a final run with a holdout) and ``curves`` per epoch
        (``epoch, lr, batch_loss, train_loss, train_acc, eval_loss, eval_acc,
        eps_mean, eps_max, perturbed``, and ``val_loss, val_acc`` for a final
        run with a holdout).
    """
    t = config["train"]
    split = eval_split(config)
    bundle = run_data(config, data_root)
    has_val = getattr(bundle, "val_y", None) is not None
    seed_everything(t["seed"])  # the model's initialization
    model = build_run_model(config)
    result = train(
        model,
        bundle,
        train_config(config),
        device=device,
        progress=progress,
        eval_splits=("val",) if split == "val" else (("val", "test") if has_val else ("test",)),
        perturbation_curves=True,
        desc=f"{config['task']} {t['method']}",
    )
    curves = dict(result.curves)
    curves["eval_loss"] = curves.pop(f"{split}_loss")
    curves["eval_acc"] = curves.pop(f"{split}_acc")
    final = {"val": (result.val_loss, result.val_acc), "test": (result.test_loss, result.test_acc)}
    record = {
        "train_loss": result.train_loss,
        "train_acc": result.train_acc,
        "eval_loss": final[split][0],
        "eval_acc": final[split][1],
        "eval_split": split,
        "diverged": result.diverged,
        "epochs_run": result.epochs_run,
        "steps": result.steps,
        "num_clean_steps": int(result.optimizer_stats.get("num_clean_steps", 0)),
        "switched_at_epoch": result.optimizer_stats.get("switched_at_epoch"),
        "seconds": result.seconds,
        "n_train": bundle.num_train,
        "n_eval": bundle.num_val if split == "val" else bundle.num_test,
        "curves": curves,
    }
    if has_val and split == "test":
        record.update(val_loss=result.val_loss, val_acc=result.val_acc, n_val=bundle.num_val)
    return model, record


def run_dir(out: str | os.PathLike, config: dict[str, Any]) -> Path:
    """``<out>/<task>/<config_hash(config)>`` (the zoo's layout)."""
    return Path(out) / config["task"] / config_hash(config)


def run(
    config: dict[str, Any],
    out: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> str:
    """Train ``config`` into its run folder unless finished: ``"skipped"`` or ``"done"``.

    Writes ``config.json``, trains, writes ``weights.pt`` and then
    ``metrics.json``, each atomically: a run killed at any point, the weights'
    save included, has no ``metrics.json`` and reruns.
    """
    path = run_dir(out, config)
    if (path / "metrics.json").is_file():
        return "skipped"
    write_json(
        path / "config.json", {"config": config, "hash": path.name, "code_version": code_version()}
    )
    model, record = train_run(config, data_root=data_root, device=device, progress=progress)
    save_state_dict(path / "weights.pt", model.state_dict())
    record.update(hash=path.name, code_version=code_version(), device=str(default_device(device)))
    write_json(path / "metrics.json", record)
    return "done"


def load_model(path: str | os.PathLike, device: str | torch.device | None = None) -> nn.Module:
    """The trained model of a finished run folder (weights loaded with ``weights_only=True``)."""
    from renyilib.experiments.io import load_state_dict

    config = read_json(Path(path) / "config.json")["config"]
    model = build_run_model(config)
    model.load_state_dict(load_state_dict(Path(path) / "weights.pt"))
    return model.to(default_device(device)).eval()


# ----------------------------------------------------------------------------- tuning and tables


def _settings(profile: dict[str, Any], task: str) -> dict[str, Any]:
    keys = ("epochs", "width", "train_subset", "test_subset", "holdout")
    s = {k: profile[k] for k in keys if k in profile}
    s.update((profile.get("task_overrides") or {}).get(task, {}) or {})
    return s


def tune_configs(profile: dict[str, Any], task: str) -> list[dict[str, Any]]:
    """The tuning runs of ``task``: every method with ρ ∈ paper ρ × ``tune.factors`` (SGD once)."""
    tune = profile.get("tune") or {}
    s = _settings(profile, task)
    over = profile.get("method_overrides") or {}
    configs = []
    for method in profile["methods"]:
        base = PAPER_HPARAMS[task][method]["kwargs"].get("rho")
        factors = [None] if method == "sgd" else tune["factors"]
        for f in factors:
            configs.append(
                make_config(
                    task,
                    method,
                    int(tune.get("seed", 0)),
                    rho=None if f is None else base * f,
                    val_size=int(tune["val_size"]),
                    method_overrides=over.get(method),
                    epochs=tune.get("epochs", s.get("epochs")),
                    # a tuning run's validation split is its val_size (no holdout)
                    **{k: v for k, v in s.items() if k not in ("epochs", "holdout")},
                )
            )
    return configs


def tuned_rho(out: str | os.PathLike, configs: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """Best ρ per method from finished tuning runs: highest validation accuracy, ties -> smaller ρ."""
    best: dict[str, tuple[float, float]] = {}
    for c in configs:
        m = read_json(run_dir(out, c) / "metrics.json")
        method = c["train"]["method"]
        rho = c["train"]["optimizer_kwargs"].get("rho")
        acc = m["eval_acc"] if not m["diverged"] else -1.0
        key = (acc, -(rho or 0.0))
        if method not in best or key > (best[method][0], -(best[method][1] or 0.0)):
            best[method] = (acc, rho)
    return {method: v[1] for method, v in best.items()}


def final_configs(
    profile: dict[str, Any], task: str, rhos: dict[str, float | None] | None = None
) -> list[dict[str, Any]]:
    """The test runs of ``task``: every method x seed (with the tuned ρ when given)."""
    s = _settings(profile, task)
    over = profile.get("method_overrides") or {}
    return [
        make_config(
            task,
            method,
            seed,
            rho=(rhos or {}).get(method),
            method_overrides=over.get(method),
            **s,
        )
        for method in profile["methods"]
        for seed in profile["seeds"]
    ]


def runs_table(out: str | os.PathLike, configs: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per finished run of ``configs``: task, method, seed, rho, metrics, path."""
    rows = []
    for c in configs:
        path = run_dir(out, c)
        if not (path / "metrics.json").is_file():
            continue
        m = read_json(path / "metrics.json")
        t = c["train"]
        rows.append(
            {
                "task": c["task"],
                "method": t["method"],
                "seed": t["seed"],
                "rho": t["optimizer_kwargs"].get("rho"),
                "epochs": t["epochs"],
                "eval_split": m["eval_split"],
                "acc": 100 * m["eval_acc"],
                "loss": m["eval_loss"],
                "train_acc": 100 * m["train_acc"],
                "train_loss": m["train_loss"],
                "diverged": m["diverged"],
                "seconds": m["seconds"],
                "eps_last": m["curves"]["eps_mean"][-1] if m["curves"]["eps_mean"] else 0.0,
                "path": str(path),
            }
        )
    return pd.DataFrame(rows)


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard error (std / sqrt(n), ddof=1) of test accuracy per task x method."""
    if runs.empty:
        raise ValueError("runs is empty: no finished runs to summarize")
    g = runs.groupby(["task", "method"], sort=False)["acc"]
    out = g.agg(mean="mean", std=lambda a: a.std(ddof=1), n="count").reset_index()
    out["stderr"] = out["std"] / np.sqrt(out["n"])
    out["label"] = out["method"].map(METHOD_LABELS)
    return out


def load_paper_table(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """The paper's Table 1 (``book/reference/paper_table1.csv``; '#' lines are comments).

    Columns: ``dataset, model, method, mean, stderr, note``; cells the OCR
    garbled are empty (NaN) with the reason in ``note``.
    """
    if path is None:
        path = Path(__file__).resolve().parents[2] / "book" / "reference" / "paper_table1.csv"
    return pd.read_csv(path, comment="#", dtype={"note": str})


def _run_all(
    configs: list[dict[str, Any]],
    out: Any,
    desc: str,
    jobs: int,
    threads: int | None,
    progress: bool,
    data_root: Any,
    device: Any,
) -> None:
    kwargs = {
        "out": str(out),
        "data_root": None if data_root is None else str(data_root),
        "device": None if device is None else str(device),
    }
    results = map_processes(
        run, configs, jobs=jobs, threads=threads, kwargs=kwargs, progress=progress, desc=desc
    )
    errors = [(c, r) for c, r in zip(configs, results) if isinstance(r, BaseException)]
    if errors:
        c, err = errors[0]
        raise RuntimeError(
            f"{len(errors)} of {len(configs)} runs of {desc!r} raised; the first "
            f"({c['train']['method']}, seed {c['train']['seed']}): {err!r}"
        ) from err


def run_table1(
    profile: str | dict[str, Any],
    out: str | os.PathLike,
    *,
    tasks: Sequence[str] | None = None,
    data_root: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    jobs: int = 1,
    threads: int | None = None,
) -> dict[str, Any]:
    """Tune (if the profile says so) and train every run of a profile; resumable.

    Args:
        profile: A profile name of ``experiments: rsam:`` or its settings dict.
        out: Run folder root.
        tasks: Subset of the profile's ``tasks``.
        data_root, device, progress: As in :func:`train_run`.
        jobs: Worker processes (:func:`renyilib.experiments.parallel.map_processes`); the
            tuning runs of a task finish before its final runs start.
        threads: torch threads per worker (``None``: leave as is).

    Raises:
        RuntimeError: If a run raised (after the other runs of its stage finished).

    Returns:
        ``{"rhos": {task: {method: rho}}, "runs": DataFrame, "summary": DataFrame,
        "tune_runs": DataFrame}``.
    """
    prof = load_profile("rsam", profile) if isinstance(profile, str) else profile
    tasks = list(tasks or prof["tasks"])
    all_final, all_tune, rhos = [], [], {}
    for task in tasks:
        tune = []
        if prof.get("tune"):
            tune = tune_configs(prof, task)
            _run_all(tune, out, f"tune {task}", jobs, threads, progress, data_root, device)
            rhos[task] = tuned_rho(out, tune)
        final = final_configs(prof, task, rhos.get(task))
        _run_all(final, out, f"table1 {task}", jobs, threads, progress, data_root, device)
        all_final += final
        all_tune += tune
    runs = runs_table(out, all_final)
    return {
        "rhos": rhos,
        "runs": runs,
        "summary": summarize(runs),
        "tune_runs": runs_table(out, all_tune),
        "configs": all_final,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Table 1: SGD/SAM/ASAM/Eigen-SAM/RSAM runs.")
    parser.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "paper"])
    parser.add_argument("--tasks", nargs="*", help="tasks (default: the profile's)")
    parser.add_argument("--extra", action="store_true", help="run the profile's extra_tasks")
    parser.add_argument("--out", default=None, help="run folder (default: the profile's out)")
    parser.add_argument("--csv", default=None, help="write the per-run table here (atomically)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (per worker)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    prof = load_profile("rsam", args.profile)
    tasks = args.tasks or (prof.get("extra_tasks") if args.extra else None)
    if args.extra and prof.get("extra"):
        prof = {**prof, **prof["extra"]}
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    res = run_table1(
        prof,
        args.out or prof.get("out", "data/runs/rsam"),
        tasks=tasks,
        jobs=args.jobs,
        threads=args.threads,
    )
    print(res["rhos"])
    print(res["summary"].to_string(index=False))
    if args.csv:
        # Final runs and the tuning runs (validation accuracy), told apart by `stage`.
        runs = pd.concat(
            [res["runs"].assign(stage="final"), res["tune_runs"].assign(stage="tune")],
            ignore_index=True,
        )
        text = runs.drop(columns=["path"], errors="ignore").to_csv(index=False)
        atomic_write(args.csv, lambda tmp: tmp.write_text(text))
        # Provenance beside the table: the settings that produced it and the code version.
        write_json(
            f"{args.csv}.meta.json",
            {
                "command": ["python", "-m", "renyilib.experiments.table1", *(argv or sys.argv[1:])],
                "settings": prof,
                "tasks": tasks,
                "tuned_rho": res["rhos"],
                "code_version": code_version(),
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
