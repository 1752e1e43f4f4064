"""The adaptive-sharpness study: three zoos, every measure, Kendall τ, the published code's deviations.

Replicates Hammoud, Liossatos & Nicollier, "Adaptive Sharpness and
Generalization" (``papers/adaptive-sharpness-replication.md``): for FCNN /
Abalone, LeNet-5 / Fashion-MNIST and GAT / Cora, zoos of models trained from
Xavier initialization by SGD (batch 64, the replication's learning rates,
Table I), stopped when the relative change of the epoch's training loss falls
below 5% or after 10 epochs (GAT: at least 10, at most 20 epochs, as its
notebook), then

* adaptive worst-case l∞ m-sharpness (:func:`renyilib.perturbation.adaptive_sharpness`,
  m = 64, 5 steps, 50 restarts) at the replication's ρ and over a ρ sweep,
  its non-adaptive and average-case variants,
* Rényi sharpness per layer and for all parameters (exact spectra for blocks
  up to ``exact_max_dim`` parameters, SLQ beyond),
* the baselines of :func:`renyilib.measures.compute_measures`,

and Kendall τ of each against the test loss and the generalization gap.

Two zoos per task (:func:`zoo_configs`): ``"seed"`` (the replication's: only
the seed, i.e. initialization, data order and dropout, differs) and
``"hparam"`` (learning rate × batch size × weight decay, cycled over a grid,
one seed per run).

Layout (every file written atomically, :mod:`renyilib.experiments.io`)::

    <out>/<task>/<run-hash>/config.json    run config + code version
                            metrics.json   losses, accuracies, epochs (written last)
                            weights.pt     state dict (weights_only)
                            measures/<measure-hash>.json

A killed run leaves no ``metrics.json`` and reruns; measurements are keyed by
their own settings. :func:`published_pga` re-implements the published
notebooks' projected gradient ascent with switches for their deviations
(inverted clamp, train-mode ascent, moving centre, raw-gradient steps with the
training learning rate), for the deviations study.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from renyilib.experiments.correlation_study import BASELINES
from renyilib.experiments.io import (
    code_version,
    config_hash,
    load_state_dict,
    read_json,
    save_state_dict,
    write_json,
)
from renyilib.experiments.replication_data import ReplicationData, load_replication_data
from renyilib.experiments.replication_models import (
    build_replication_model,
    fold_batchnorm,
    xavier_init,
)
from renyilib.measures import compute_measures
from renyilib.perturbation import adaptive_sharpness, average_sharpness
from renyilib.renyi import renyi_sharpness
from renyilib.rescaling import minimum_sharpness
from renyilib.statistics import kendall_tau

__all__ = [
    "DEVIATIONS",
    "REPLICATION_TAU",
    "TASKS",
    "correlations",
    "deviation_table",
    "load_task_data",
    "loss_function",
    "measure_min_sharpness",
    "measure_run",
    "measure_zoo",
    "min_sharpness_settings",
    "published_pga",
    "run_and_measure_parallel",
    "run_zoo",
    "train_run",
    "verdict",
    "zoo_configs",
    "zoo_sizes_sentence",
    "zoo_status",
    "zoo_table",
]

#: The three tasks: dataset, model, loss, the replication's lr and ρ (Table I), epoch limits.
TASKS: dict[str, dict[str, Any]] = {
    "abalone-fcnn": {
        "dataset": "abalone",
        "model": "fcnn",
        "loss": "mse",
        "lr": 0.014,
        "rho": 0.025,
        "min_epochs": 1,
        "max_epochs": 10,
    },
    "fmnist-lenet5": {
        "dataset": "fashion-mnist",
        "model": "lenet5",
        "loss": "cross_entropy",
        "lr": 0.05,
        "rho": 1e-4,
        "min_epochs": 1,
        "max_epochs": 10,
    },
    "cora-gat": {
        "dataset": "cora",
        "model": "gat",
        "loss": "cross_entropy",
        "lr": 0.236,
        "rho": 0.02,
        "min_epochs": 10,
        "max_epochs": 20,
    },
}

#: Kendall τ (adaptive sharpness vs test loss) reported by the replication (Fig. 1).
REPLICATION_TAU = {"abalone-fcnn": -0.311, "fmnist-lenet5": -0.180, "cora-gat": -0.185}

#: Switches of :func:`published_pga`, one per deviation of the published notebooks.
DEVIATIONS = ("lr_steps", "inverted_clamp", "train_mode", "moving_centre")

_HPARAM_GRID = {
    "lr_factor": (0.5, 1.0, 2.0),
    "batch_size": (32, 64, 128),
    "weight_decay": (0.0, 5e-4),
}


def loss_function(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``"mse"`` (:class:`torch.nn.MSELoss`) or ``"cross_entropy"``."""
    if name == "mse":
        return nn.MSELoss()
    if name == "cross_entropy":
        return nn.CrossEntropyLoss()
    raise ValueError(f"loss must be 'mse' or 'cross_entropy', got {name!r}")


def _task(name: str) -> dict[str, Any]:
    if name not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {name!r}")
    return TASKS[name]


# --------------------------------------------------------------------------- configs


def zoo_configs(
    task: str,
    zoo: str = "seed",
    size: int = 50,
    *,
    synthetic: bool = False,
    first_seed: int = 0,
    **overrides: Any,
) -> list[dict[str, Any]]:
    """Run configs of one zoo.

    Args:
        task: A key of :data:`TASKS`.
        zoo: ``"seed"`` (seeds ``first_seed … first_seed + size − 1``, the task's
            lr, batch 64, no weight decay) or ``"hparam"`` (run ``i`` takes the
            ``i``-th combination, cyclically, of lr × {0.5, 1, 2}, batch size
            {32, 64, 128} and weight decay {0, 5e-4}, and seed ``first_seed + i``).
        size: Models in the zoo.
        synthetic: Train on :func:`~renyilib.experiments.replication_data.synthetic_data`.
        **overrides: Replace config entries (e.g. ``max_epochs=1`` for a smoke run).
    """
    t = _task(task)
    if zoo not in ("seed", "hparam"):
        raise ValueError(f"zoo must be 'seed' or 'hparam', got {zoo!r}")
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    combos = list(itertools.product(*_HPARAM_GRID.values()))
    out = []
    for i in range(size):
        cfg = {
            "task": task,
            "zoo": zoo,
            "seed": first_seed + i,
            "lr": t["lr"],
            "batch_size": 64,
            "weight_decay": 0.0,
            "min_epochs": t["min_epochs"],
            "max_epochs": t["max_epochs"],
            "tol": 0.05,
            "init": "xavier",
            "synthetic": bool(synthetic),
        }
        if zoo == "hparam":
            f, bs, wd = combos[i % len(combos)]
            cfg.update(lr=t["lr"] * f, batch_size=bs, weight_decay=wd)
        cfg.update(overrides)
        out.append(cfg)
    return out


_DATA_CACHE: dict[tuple[str, bool, Any], ReplicationData] = {}


def load_task_data(task: str, synthetic: bool = False, root: Any = None) -> ReplicationData:
    """The task's data (cached per process)."""
    key = (task, bool(synthetic), str(root))
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = load_replication_data(_task(task)["dataset"], root, synthetic=synthetic)
    return _DATA_CACHE[key]


def _model_kwargs(task: str) -> dict[str, Any]:
    return {}


# --------------------------------------------------------------------------- training


def _mean_loss(
    model: nn.Module, loss_fn: Callable, x: Any, y: torch.Tensor, chunk: int = 4096
) -> float:
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(y), chunk):
            total += float(loss_fn(model(x[i : i + chunk]), y[i : i + chunk])) * len(
                y[i : i + chunk]
            )
    return total / len(y)


def _accuracy(model: nn.Module, x: Any, y: torch.Tensor, chunk: int = 4096) -> float:
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), chunk):
            correct += int((model(x[i : i + chunk]).argmax(1) == y[i : i + chunk]).sum())
    return correct / len(y)


def evaluate_model(model: nn.Module, task: str, data: ReplicationData) -> dict[str, float]:
    """Train / test loss (and accuracy for classification) in eval mode; ``gap`` = test − train loss."""
    loss_fn = loss_function(_task(task)["loss"])
    was = model.training
    model.eval()
    try:
        out = {
            "train_loss": _mean_loss(model, loss_fn, *data.train),
            "test_loss": _mean_loss(model, loss_fn, *data.test),
        }
        if data.kind == "classification":
            out["train_acc"] = _accuracy(model, *data.train)
            out["test_acc"] = _accuracy(model, *data.test)
    finally:
        model.train(was)
    out["gap"] = out["test_loss"] - out["train_loss"]
    return out


def train_run(
    config: dict[str, Any], data: ReplicationData, progress: bool = False
) -> tuple[nn.Module, dict]:
    """Train one model of a zoo (SGD, mini-batches, the relative-change stopping rule).

    After each epoch, the mean of its mini-batch losses (train mode, as the
    replication's notebooks) is compared with the previous epoch's; training
    stops once ``|ℓ_e − ℓ_{e−1}| / ℓ_{e−1} < tol`` and at least ``min_epochs``
    epochs ran, or after ``max_epochs``.

    Returns:
        ``(model, metrics)`` with the model in eval mode and ``metrics`` from
        :func:`evaluate_model` plus ``epochs``, ``epoch_losses`` and ``seconds``.
    """
    t = _task(config["task"])
    start = time.process_time()
    torch.manual_seed(config["seed"])
    gen = torch.Generator().manual_seed(config["seed"])
    model = build_replication_model(t["model"], data, **_model_kwargs(config["task"]))
    if config.get("init", "xavier") == "xavier":
        xavier_init(model, generator=gen)
    loss_fn = loss_function(t["loss"])
    opt = torch.optim.SGD(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    x, y = data.train
    n, bs = len(y), int(config["batch_size"])
    losses: list[float] = []
    model.train()
    for epoch in tqdm(range(config["max_epochs"]), disable=not progress, desc=config["task"]):
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for i in range(0, n, bs):
            idx = perm[i : i + bs]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite training loss at epoch {epoch}")
            loss.backward()
            opt.step()
            total += float(loss.detach())
        losses.append(total / math.ceil(n / bs))
        if epoch + 1 >= config["min_epochs"] and len(losses) > 1:
            if abs(losses[-1] - losses[-2]) / losses[-2] < config["tol"]:
                break
    model.eval()
    metrics = evaluate_model(model, config["task"], data)
    metrics.update(epochs=len(losses), epoch_losses=losses, seconds=time.process_time() - start)
    return model, metrics


def _run_dir(out: Path, config: dict[str, Any]) -> Path:
    return Path(out) / config["task"] / config_hash(config)


def _load_model(path: Path, config: dict[str, Any], data: ReplicationData) -> nn.Module:
    model = build_replication_model(
        _task(config["task"])["model"], data, **_model_kwargs(config["task"])
    )
    model.load_state_dict(load_state_dict(path / "weights.pt"))
    return model.eval()


def run_zoo(
    configs: Sequence[dict[str, Any]], out: str | Path, *, root: Any = None, progress: bool = True
) -> list[Path]:
    """Train every config not yet finished (resumable); returns the run folders."""
    dirs = []
    for cfg in tqdm(list(configs), disable=not progress, desc="zoo"):
        d = _run_dir(Path(out), cfg)
        dirs.append(d)
        if (d / "metrics.json").is_file():
            continue
        data = load_task_data(cfg["task"], cfg["synthetic"], root)
        write_json(d / "config.json", {**cfg, "code_version": code_version()})
        model, metrics = train_run(cfg, data)
        save_state_dict(d / "weights.pt", model.state_dict())
        write_json(d / "metrics.json", metrics)
    return dirs


# --------------------------------------------------------------------------- measuring


def default_measure_settings(task: str, **overrides: Any) -> dict[str, Any]:
    """Settings of :func:`measure_run` for a task (the cpu study's), overridable."""
    t = _task(task)
    rho = t["rho"]
    s: dict[str, Any] = {
        "rho": rho,
        "restarts": 50,
        "steps": 5,
        "batch_size": 64,
        "rho_sweep": [rho / 4, rho / 2, 2 * rho, 4 * rho],
        "sweep_restarts": 20,
        "renyi": True,
        "renyi_samples": 512,
        "alphas": [0.5, 1.0, 1.5, 2.0, 3.0],
        "num_probes": 10,
        "lanczos_steps": 20,
        "exact_max_dim": 700,
        # the Hessian-product backend: "graph" (the "auto" of an earlier core switched to
        # linearized maps (make_fx), which crashed the interpreter on the 10-64-64-1 FCNN).
        "hessian_method": "graph",
        "baselines": ["trace", "lambda_max", "fisher_rao", "param_norm", "sam", "asam"]
        + ([] if t["loss"] == "mse" else ["pacbayes"]),
        "baseline_settings": {
            "lambda_max": {"max_steps": 30, "tol": 1e-4},
            "sam": {"rho": 0.05, "m": 64, "steps": 5, "num_batches": 8},
            "asam": {"rho": 0.5, "m": 64, "steps": 5, "num_batches": 8},
            "pacbayes": {"mc_samples": 4, "search_depth": 10},
            # GATConv's linear maps are not torch.nn.Linear: give the depth explicitly.
            **({"fisher_rao": {"depth": 2}} if t["model"] == "gat" else {}),
        },
        "deviations": True,
        "seed": 0,
    }
    s.update(_TASK_MEASURE_SETTINGS.get(task, {}))
    s.update(overrides)
    return s


#: Per-task changes to the cpu study's measure settings, chosen to fit this machine:
#: LeNet-5 (175k parameters, 60k images) gets fewer Rényi samples / probes; the GAT
#: a shorter ρ sweep and only the deviations that can change its τ's sign.
_TASK_MEASURE_SETTINGS: dict[str, dict[str, Any]] = {
    "fmnist-lenet5": {"renyi_samples": 256, "num_probes": 5, "lanczos_steps": 15},
    "cora-gat": {
        "sweep_restarts": 10,
        "rho_sweep": [0.01, 0.04],
        "num_probes": 4,
        "lanczos_steps": 10,
        "deviation_variants": ["lr_steps", "inverted_clamp", "published"],
    },
}


def _renyi_blocks(model: nn.Module) -> list[str]:
    names = [n for n, p in model.named_parameters() if p.dim() >= 2]
    return [*names, "all"]


def _subset(data: tuple, n: int, seed: int) -> tuple:
    x, y = data
    if len(y) <= n:
        return x, y
    idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:n]
    return x[idx], y[idx]


def measure_run(
    path: str | Path, settings: dict[str, Any], *, root: Any = None, force: bool = False
) -> dict[str, Any]:
    """Measure one trained run (cached in ``measures/<hash>.json``).

    Returns a flat dict: ``adaptive`` (the headline estimate) and its
    ``adaptive_stderr``, ``adaptive_rho=<ρ>`` for the sweep, ``nonadaptive``
    (c = 1, same ρ as an absolute radius), ``average`` (Gaussian, adaptive),
    ``renyi:<block>:<α>`` (−H_α), the baselines, ``pga:<variant>`` for the
    deviations study (when ``settings["deviations"]``) and ``seconds``.
    """
    path = Path(path)
    cfg = read_json(path / "config.json")
    key = config_hash(settings)
    cache = path / "measures" / f"{key}.json"
    if cache.is_file() and not force:
        return read_json(cache)["values"]
    task = cfg["task"]
    data = load_task_data(task, cfg["synthetic"], root)
    model = _load_model(path, cfg, data)
    loss_fn = loss_function(_task(task)["loss"])
    s = settings
    seed = s["seed"]
    start = time.process_time()
    out: dict[str, Any] = {}
    common = {"batch_size": s["batch_size"], "steps": s["steps"], "seed": seed}
    est = adaptive_sharpness(model, loss_fn, data.train, s["rho"], restarts=s["restarts"], **common)
    out["adaptive"], out["adaptive_stderr"] = est.value, est.stderr
    for r in s["rho_sweep"]:
        out[f"adaptive_rho={r:g}"] = adaptive_sharpness(
            model, loss_fn, data.train, r, restarts=s["sweep_restarts"], **common
        ).value
    out["nonadaptive"] = adaptive_sharpness(
        model, loss_fn, data.train, s["rho"], restarts=s["sweep_restarts"], adaptive=False, **common
    ).value
    out["average"] = average_sharpness(
        model,
        loss_fn,
        data.train,
        s["rho"],
        restarts=s["restarts"],
        batch_size=s["batch_size"],
        seed=seed,
    ).value
    sub = _subset(data.train, s["renyi_samples"], seed)
    quad = None
    if s["renyi"]:
        df, quads = renyi_sharpness(
            model,
            loss_fn,
            sub,
            alphas=s["alphas"],
            blocks=_renyi_blocks(model),
            num_probes=s["num_probes"],
            lanczos_steps=s["lanczos_steps"],
            spectrum="auto",
            exact_max_dim=s["exact_max_dim"],
            backend=s["hessian_method"],
            seed=seed,
            progress=False,
            return_quadratures=True,
        )
        for row in df.itertuples():
            out[f"renyi:{row.block}:{row.alpha:g}"] = float(row.sharpness)
        for block, m in df.groupby("block")["method"].first().items():
            out[f"renyi_method:{block}"] = m
        quad = quads.get("all")
    base = compute_measures(
        model,
        loss_fn,
        sub,
        which=s["baselines"],
        seed=seed,
        settings=s["baseline_settings"],
        quadrature=quad,
    )
    for k, v in base.items():
        if k not in ("details", "seconds"):
            out[k] = float(v)
    if s["deviations"]:
        out.update(_deviation_values(model, task, loss_fn, data, s))
    out["seconds"] = time.process_time() - start
    write_json(cache, {"settings": settings, "code_version": code_version(), "values": out})
    return out


def min_sharpness_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """What :func:`measure_min_sharpness` depends on: the Rényi subset (size, seed).

    Minimum sharpness is cached apart from :func:`measure_run` (it was added
    after the zoos were measured), keyed by this dict only.
    """
    return {
        "measure": "min_sharpness",
        "samples": settings["renyi_samples"],
        "seed": settings["seed"],
    }


def measure_min_sharpness(
    path: str | Path, settings: dict[str, Any], *, root: Any = None, force: bool = False
) -> dict[str, Any]:
    """Minimum sharpness (Ibayashi et al. 2021) of one trained run, on the Rényi subset.

    * FCNN (ReLU, MSE): the exact Hessian diagonal by Hessian-vector-product
      columns (the Gauss–Newton identity of the cheap route needs cross-entropy).
    * LeNet-5: of the BatchNorm-folded network
      (:func:`~renyilib.experiments.replication_models.fold_batchnorm`), the same
      eval-mode function as a plain ReLU CNN; with BatchNorm the layer-wise
      rescaling does not preserve the function (its running statistics are not
      rescaled) and the measure is undefined.
    * GAT: refused (attention and ELU are not positively homogeneous): NaN, with
      the reason in ``min_sharpness_refused``.

    Returns:
        ``min_sharpness`` (NaN when refused or unconverged), ``min_sharpness_trace``
        (the raw diagonal trace of the measured network), ``min_sharpness_network``
        (``"as trained"`` / ``"BatchNorm folded"``), ``min_sharpness_seconds``
        (process CPU) and ``min_sharpness_refused`` (``""`` unless refused); cached
        in ``measures/min_sharpness-<hash>.json``.
    """
    path = Path(path)
    ms = min_sharpness_settings(settings)
    cache = path / "measures" / f"min_sharpness-{config_hash(ms)}.json"
    if cache.is_file() and not force:
        return read_json(cache)["values"]
    cfg = read_json(path / "config.json")
    task = cfg["task"]
    data = load_task_data(task, cfg["synthetic"], root)
    model = _load_model(path, cfg, data)
    network = "as trained"
    if _task(task)["model"] == "lenet5":
        model, network = fold_batchnorm(model), "BatchNorm folded"
    sub = _subset(data.train, ms["samples"], ms["seed"])
    start = time.process_time()
    out: dict[str, Any] = {"min_sharpness_network": network, "min_sharpness_refused": ""}
    try:
        res = minimum_sharpness(model, loss_function(_task(task)["loss"]), sub, seed=ms["seed"])
        out["min_sharpness"] = res.value if res.converged else float("nan")
        out["min_sharpness_trace"] = res.trace
    except ValueError as err:
        out.update(min_sharpness=float("nan"), min_sharpness_trace=float("nan"))
        out["min_sharpness_refused"] = str(err)
    out["min_sharpness_seconds"] = time.process_time() - start
    write_json(cache, {"settings": ms, "code_version": code_version(), "values": out})
    return out


def _deviation_values(
    model: nn.Module, task: str, loss_fn: Callable, data: ReplicationData, s: dict
) -> dict:
    t = _task(task)
    variants = {
        "lr_steps": {"lr_steps": True},
        "inverted_clamp": {"lr_steps": True, "inverted_clamp": True},
        "train_mode": {"lr_steps": True, "train_mode": True},
        "moving_centre": {"lr_steps": True, "moving_centre": True},
        "published": _PUBLISHED[task],
    }
    keep = s.get("deviation_variants")
    if keep is not None:
        variants = {k: v for k, v in variants.items() if k in keep}
    out = {}
    for name, flags in variants.items():
        vals = published_pga(
            model,
            loss_fn,
            data.train,
            t["rho"],
            lr=t["lr"],
            steps=s["steps"],
            restarts=s["sweep_restarts"],
            batch_size=s["batch_size"],
            seed=s["seed"],
            **flags,
        )
        out[f"pga:{name}"] = float(vals.mean())
    return out


#: What each published notebook does (verified from its code; see the chapter).
_PUBLISHED = {
    "abalone-fcnn": {"lr_steps": True, "inverted_clamp": True},
    "fmnist-lenet5": {"lr_steps": True, "train_mode": True, "moving_centre": True},
    "cora-gat": {"lr_steps": True, "train_mode": True},
}


def measure_zoo(
    dirs: Sequence[str | Path], settings: dict[str, Any], *, root: Any = None, progress: bool = True
) -> list[dict[str, Any]]:
    """:func:`measure_run` and :func:`measure_min_sharpness` over finished runs (cached; resumable)."""
    out = []
    for d in tqdm(list(dirs), disable=not progress, desc="measure"):
        if (Path(d) / "metrics.json").is_file():
            values = measure_run(d, settings, root=root)
            out.append({**values, **measure_min_sharpness(d, settings, root=root)})
    return out


def zoo_table(out: str | Path, task: str, settings: dict[str, Any] | None = None) -> pd.DataFrame:
    """One row per finished run of ``task`` under ``out``: config, metrics and (if measured) measures."""
    rows = []
    key = config_hash(settings) if settings is not None else None
    for d in sorted((Path(out) / task).glob("*")):
        if not (d / "metrics.json").is_file():
            continue
        cfg = read_json(d / "config.json")
        met = read_json(d / "metrics.json")
        row = {"run": d.name, **{k: v for k, v in cfg.items()}}
        row.update({k: v for k, v in met.items() if not isinstance(v, list) and k != "seconds"})
        row["train_seconds"] = met["seconds"]
        if key is not None:
            m = d / "measures" / f"{key}.json"
            if not m.is_file():
                continue
            values = dict(read_json(m)["values"])
            row["measure_seconds"] = values.pop("seconds")
            row.update(values)
            ms = (
                d
                / "measures"
                / f"min_sharpness-{config_hash(min_sharpness_settings(settings))}.json"
            )
            if ms.is_file():
                row.update(read_json(ms)["values"])
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the published PGA


def published_pga(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    data: tuple[Any, torch.Tensor],
    rho: float,
    *,
    lr: float | None = None,
    steps: int = 5,
    restarts: int = 50,
    batch_size: int = 64,
    lr_steps: bool = True,
    inverted_clamp: bool = False,
    train_mode: bool = False,
    moving_centre: bool = False,
    seed: int = 0,
) -> np.ndarray:
    """The published notebooks' projected gradient ascent, with one switch per deviation.

    Per restart, on a copy of the model and a fresh batch of ``batch_size``
    training samples: ``steps`` times, an SGD step on :math:`-L_B` and the
    projection ``param = torch.clamp(param, lo, hi)``; the value is the largest
    :math:`L_B(w_k) - L_B(w)` over the iterates (as the notebooks, without the
    centre). The switches:

    * ``lr_steps``: the step is ``lr · ∇`` (SGD with the training learning rate,
      the notebooks' choice); ``False``: the geometry-respecting signed step
      ``ρ |w| ⊙ sign ∇`` of :func:`~renyilib.perturbation.adaptive_sharpness`.
    * ``inverted_clamp``: the FCNN notebook's bounds ``(w0 − ρ w0, w0 + ρ w0)``;
      for a negative weight ``lo > hi`` and ``torch.clamp`` returns ``hi =
      w0 (1 + ρ)``: every negative weight is pinned there (moved away from
      zero by ρ|w0|), whatever the gradient. ``False``: ``(w0 − ρ|w0|, w0 + ρ|w0|)``.
    * ``train_mode``: ascent *and* loss evaluations in train mode (dropout on,
      BatchNorm on batch statistics, its running statistics updated on the
      copy), as the GAT notebook; the LeNet-5 notebook ascends in train mode
      and evaluates in eval mode with the running statistics the ascent
      updated (not reproduced: here both are in train mode).
    * ``moving_centre``: the ball's centre becomes the weights after the first
      SGD step (the LeNet-5 notebook's ``param.detach()`` shares storage with
      the parameter, which the in-place step updates before the first
      projection replaces ``param.data``).

    Returns:
        float64 array ``(restarts,)`` of per-batch values.
    """
    if lr_steps and (lr is None or not lr > 0):
        raise ValueError(f"lr must be a positive number when lr_steps=True, got {lr!r}")
    if not (isinstance(rho, int | float) and rho > 0):
        raise ValueError(f"rho must be a positive number, got {rho!r}")
    x_all, y_all = data
    n = len(y_all)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout masks in train mode
    values = np.empty(restarts)
    for r in range(restarts):
        idx = torch.randperm(n, generator=gen)[: min(batch_size, n)]
        xb, yb = x_all[idx], y_all[idx]
        net = copy.deepcopy(model)
        net.train(train_mode)
        params = [p for p in net.parameters() if p.requires_grad]
        centre = [p.detach().clone() for p in params]
        with torch.no_grad():
            base = float(loss_fn(net(xb), yb))
        best = -math.inf
        for k in range(steps):
            net.zero_grad(set_to_none=True)
            loss = -loss_fn(net(xb), yb)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            with torch.no_grad():
                for p, g, c in zip(params, grads, centre):
                    if g is None:
                        continue
                    if lr_steps:
                        p.sub_(lr * g)  # SGD on −L: ascent along ∇L
                    else:
                        p.add_(rho * c.abs() * torch.sign(-g))
                if moving_centre and k == 0:
                    centre = [p.detach().clone() for p in params]
                for p, c in zip(params, centre):
                    half = rho * c if inverted_clamp else rho * c.abs()
                    p.copy_(torch.clamp(p, c - half, c + half))
                values_k = float(loss_fn(net(xb), yb))
            best = max(best, values_k - base)
        values[r] = best
    return values


# --------------------------------------------------------------------------- correlations


def correlations(
    table: pd.DataFrame, measures: Sequence[str], targets: Sequence[str] = ("test_loss", "gap")
) -> pd.DataFrame:
    """Kendall τ-b and its two-sided p-value of each measure against each target."""
    rows = []
    for m in measures:
        if m not in table.columns:
            continue
        for t in targets:
            k = kendall_tau(
                pd.to_numeric(table[m], errors="coerce").to_numpy(float), table[t].to_numpy(float)
            )
            rows.append({"measure": m, "target": t, "tau": k.tau, "pvalue": k.pvalue, "n": k.n})
    return pd.DataFrame(rows)


def deviation_table(table: pd.DataFrame, task: str) -> pd.DataFrame:
    """τ against test loss for the correct protocol and each published-code variant."""
    names = {
        "adaptive": "correct protocol (η = ρ signed steps, eval mode, fixed centre)",
        "pga:lr_steps": "raw-gradient steps with the training lr",
        "pga:inverted_clamp": "  + inverted clamp for negative weights",
        "pga:train_mode": "  + train-mode ascent and evaluation",
        "pga:moving_centre": "  + centre moves after the first step",
        "pga:published": "as the published notebook",
    }
    c = correlations(table, list(names), targets=("test_loss",))
    c.insert(0, "variant", c["measure"].map(names))
    c.insert(0, "task", task)
    return c


def verdict(taus: pd.DataFrame) -> str:
    """One sentence per task on the sign and significance of τ(adaptive sharpness, test loss)."""
    lines = []
    for row in taus.itertuples():
        if not np.isfinite(row.tau):
            lines.append(
                f"{row.task}: τ not computed ({row.n} models, too few for a rank correlation); "
                f"the replication reported {REPLICATION_TAU[row.task]:+.3f}."
            )
            continue
        sig = "significant" if row.pvalue < 0.05 else "not significant"
        sign = "negative" if row.tau < 0 else "positive"
        same = (row.tau < 0) == (REPLICATION_TAU[row.task] < 0)
        lines.append(
            f"{row.task}: τ = {row.tau:+.3f} (p = {row.pvalue:.3g}, {sig}; {row.n} models), {sign}; "
            f"the replication reported {REPLICATION_TAU[row.task]:+.3f}"
            + (" — same sign." if same else " — opposite sign.")
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- running and exporting


def _train_and_measure(config: dict[str, Any], out: str, settings: dict, root: Any) -> str:
    (d,) = run_zoo([config], out, root=root, progress=False)
    measure_zoo([d], settings, root=root, progress=False)
    return str(d)


def run_and_measure(
    configs: Sequence[dict[str, Any]],
    out: str | Path,
    settings: dict[str, Any],
    *,
    root: Any = None,
    progress: bool = True,
) -> None:
    """Train and measure one run after the other (a killed job leaves only whole runs)."""
    for cfg in tqdm(
        list(configs), disable=not progress, desc=configs[0]["task"] if configs else "zoo"
    ):
        _train_and_measure(cfg, out, settings, root)


def export_results(
    out: str | Path,
    task: str,
    settings: dict[str, Any],
    dest: str | Path = "data/results/adaptive-sharpness",
    command: str = "",
) -> Path:
    """Write ``<dest>/<task>.csv`` (one row per measured run) and ``<task>.meta.json`` (settings, code version)."""
    table = zoo_table(out, task, settings)
    if table.empty:
        raise ValueError(f"no measured runs of {task!r} under {out}")
    dest = Path(dest)
    path = dest / f"{task}.csv"
    from renyilib.experiments.io import atomic_write

    atomic_write(path, lambda tmp: table.to_csv(tmp, index=False))
    versions = sorted(set(table["code_version"])) if "code_version" in table else []
    write_json(
        dest / f"{task}.meta.json",
        {
            "task": task,
            "task_settings": _task(task),
            "measure_settings": settings,
            "measure_hash": config_hash(settings),
            "runs": int(len(table)),
            "zoos": {k: int(v) for k, v in table["zoo"].value_counts().items()},
            "training_code_versions": versions,
            "export_code_version": code_version(),
            "command": command,
        },
    )
    return path


def run_and_measure_parallel(
    configs: Sequence[dict[str, Any]],
    out: str | Path,
    settings: dict[str, Any],
    *,
    jobs: int = 1,
    threads: int | None = 1,
    root: Any = None,
    progress: bool = True,
) -> list[Any]:
    """:func:`run_and_measure` over ``jobs`` spawned workers (``renyilib zoo run --jobs``).

    Each worker trains and measures one config after the other; a run is whole
    or absent, so the call is resumable. Returns each config's run folder, or
    the exception its worker raised.
    """
    from renyilib.experiments.parallel import map_processes

    return map_processes(
        _train_and_measure,
        list(configs),
        jobs=jobs,
        threads=threads,
        kwargs={"out": str(out), "settings": settings, "root": None if root is None else str(root)},
        progress=progress,
        desc=configs[0]["task"] if configs else "zoo",
    )


def zoo_status(out: str | Path, configs: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per config: ``index, task, zoo, seed, hash, status`` (done / missing) and ``measured``."""
    rows = []
    for i, cfg in enumerate(configs):
        d = _run_dir(Path(out), cfg)
        rows.append(
            {
                "index": i,
                "task": cfg["task"],
                "zoo": cfg["zoo"],
                "seed": cfg["seed"],
                "lr": cfg["lr"],
                "batch_size": cfg["batch_size"],
                "weight_decay": cfg["weight_decay"],
                "hash": d.name,
                "status": "done" if (d / "metrics.json").is_file() else "missing",
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- analysis (the chapter)


def measure_columns(table: pd.DataFrame) -> list[str]:
    """The measure columns of a zoo table, in display order (adaptive family, Rényi, baselines)."""
    cols = [c for c in ("adaptive", "nonadaptive", "average") if c in table]
    cols += sorted(
        (c for c in table if c.startswith("adaptive_rho=")), key=lambda c: float(c.split("=")[1])
    )
    cols += [c for c in table if c.startswith("renyi:")]
    cols += [c for c in BASELINES if c in table]
    return cols


def load_tables(results: str | Path) -> dict[str, pd.DataFrame]:
    """The exported ``<task>.csv`` tables under ``results`` (tasks without a table are left out)."""
    out = {}
    for task in TASKS:
        p = Path(results) / f"{task}.csv"
        if p.is_file():
            out[task] = pd.read_csv(p)
    return out


def synthetic_tables(
    out: str | Path, size: int = 4, *, measure_overrides: dict[str, Any] | None = None
) -> dict[str, pd.DataFrame]:
    """Train and measure tiny synthetic zoos of every task (both zoos; seconds), for smoke runs."""
    tables = {}
    over = {
        "restarts": 3,
        "sweep_restarts": 2,
        "batch_size": 16,
        "num_probes": 2,
        "lanczos_steps": 4,
        "renyi_samples": 16,
        "alphas": [0.5, 1.0, 2.0],
    }
    over.update(measure_overrides or {})
    for task in TASKS:
        s = default_measure_settings(task, **over)
        s["rho_sweep"] = [2 * TASKS[task]["rho"]]
        s["baseline_settings"] = {
            **s["baseline_settings"],
            "pacbayes": {"mc_samples": 2, "search_depth": 4},
            "sam": {"rho": 0.05, "m": 16, "steps": 2, "num_batches": 2},
            "asam": {"rho": 0.5, "m": 16, "steps": 2, "num_batches": 2},
            "lambda_max": {"max_steps": 5, "tol": 1e-2},
        }
        for zoo in ("seed", "hparam"):
            cfgs = zoo_configs(task, zoo, size, synthetic=True, max_epochs=2, min_epochs=1)
            run_and_measure(cfgs, out, s, progress=False)
        tables[task] = zoo_table(out, task, s)
    return tables


def headline(tables: dict[str, pd.DataFrame], measure: str = "adaptive") -> pd.DataFrame:
    """τ (and p) of ``measure`` against test loss per task and zoo, beside the replication's τ."""
    rows = []
    for task, t in tables.items():
        for zoo, g in t.groupby("zoo"):
            k = kendall_tau(g[measure].to_numpy(float), g["test_loss"].to_numpy(float))
            rows.append(
                {
                    "task": task,
                    "zoo": zoo,
                    "tau": k.tau,
                    "pvalue": k.pvalue,
                    "n": k.n,
                    "replication_tau": REPLICATION_TAU[task],
                }
            )
    return pd.DataFrame(rows)


def all_measures(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """τ and p of every measure against test loss and against the gap, per task and zoo."""
    rows = []
    for task, t in tables.items():
        for zoo, g in t.groupby("zoo"):
            c = correlations(g, measure_columns(g))
            c.insert(0, "zoo", zoo)
            c.insert(0, "task", task)
            rows.append(c)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def rho_sweep(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """τ(adaptive sharpness at ρ, test loss) over the ρ sweep (the headline ρ included)."""
    rows = []
    for task, t in tables.items():
        rho0 = TASKS[task]["rho"]
        cols = {rho0: "adaptive"} | {
            float(c.split("=")[1]): c for c in t if c.startswith("adaptive_rho=")
        }
        for zoo, g in t.groupby("zoo"):
            for rho, c in sorted(cols.items()):
                k = kendall_tau(g[c].to_numpy(float), g["test_loss"].to_numpy(float))
                rows.append(
                    {
                        "task": task,
                        "zoo": zoo,
                        "rho": rho,
                        "rho_over_paper": rho / rho0,
                        "tau": k.tau,
                        "pvalue": k.pvalue,
                    }
                )
    return pd.DataFrame(rows)


def deviations(tables: dict[str, pd.DataFrame], zoo: str = "seed") -> pd.DataFrame:
    """:func:`deviation_table` for every task (on its ``zoo``)."""
    parts = [
        deviation_table(t[t["zoo"] == zoo], task)
        for task, t in tables.items()
        if (t["zoo"] == zoo).any()
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def renyi_long(tables: dict[str, pd.DataFrame], target: str = "test_loss") -> pd.DataFrame:
    """Long table (task, zoo, run, block, alpha, sharpness, target) of the Rényi columns."""
    rows = []
    for task, t in tables.items():
        for c in (c for c in t if c.startswith("renyi:")):
            _, block, alpha = c.split(":")
            part = t[["zoo", "run", c, target]].rename(columns={c: "sharpness"})
            part = part.assign(task=task, block=block, alpha=float(alpha))
            rows.append(part)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def renyi_heldout(
    tables: dict[str, pd.DataFrame], target: str = "test_loss", n_splits: int = 200, seed: int = 0
) -> pd.DataFrame:
    """Rényi sharpness with a held-out α: α chosen on a random half of a zoo, τ on the other half.

    Uses :func:`renyilib.statistics.split_selection` (criterion ``"abs"``: the α
    with the largest |τ| on the selection half, its signed τ reported on the
    held-out half), per task, zoo and block (zoos of fewer than 4 models are
    left out). Returns the median held-out τ, its 10–90% range over splits
    and the most often chosen α.
    """
    from renyilib.statistics import split_selection

    long = renyi_long(tables, target)
    if long.empty:
        return pd.DataFrame()
    long = long.rename(columns={target: "target"})
    # split_selection splits the runs of each "task" group: one group per task and zoo
    long["task"] = long["task"] + "/" + long["zoo"]
    runs = long.groupby("task")["run"].nunique()
    long = long[long["task"].isin(runs[runs >= 4].index)]  # a split needs two halves of 2+
    if long.empty:
        return pd.DataFrame()
    sel = split_selection(
        long,
        n_splits=n_splits,
        seed=seed,
        value="sharpness",
        target="target",
        by=("task", "block"),
        run="run",
        restrict=False,
        criterion="abs",
    )
    sel = sel.rename(columns={"task": "task_zoo"})
    g = sel.groupby(["task_zoo", "block"])
    out = pd.DataFrame(
        {
            "tau_heldout_median": g["tau_heldout"].median(),
            "tau_heldout_q10": g["tau_heldout"].quantile(0.1),
            "tau_heldout_q90": g["tau_heldout"].quantile(0.9),
            "alpha_mode": g["alpha"].agg(lambda a: a.mode().iloc[0]),
        }
    ).reset_index()
    out[["task", "zoo"]] = out["task_zoo"].str.split("/", expand=True)
    return out.drop(columns="task_zoo")[
        [
            "task",
            "zoo",
            "block",
            "alpha_mode",
            "tau_heldout_median",
            "tau_heldout_q10",
            "tau_heldout_q90",
        ]
    ]


def zoo_summary(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per task and zoo: models, epochs, test loss / accuracy ranges, training and measuring CPU seconds."""
    rows = []
    for task, t in tables.items():
        for zoo, g in t.groupby("zoo"):
            row = {
                "task": task,
                "zoo": zoo,
                "models": len(g),
                "epochs_mean": g["epochs"].mean(),
                "epochs_max": int(g["epochs"].max()),
                "train_loss_mean": g["train_loss"].mean(),
                "test_loss_min": g["test_loss"].min(),
                "test_loss_max": g["test_loss"].max(),
                "train_seconds_mean": g["train_seconds"].mean(),
            }
            if "measure_seconds" in g:
                row["measure_seconds_mean"] = g["measure_seconds"].mean()
            if "test_acc" in g:
                row["test_acc_min"] = g["test_acc"].min()
                row["test_acc_max"] = g["test_acc"].max()
            rows.append(row)
    return pd.DataFrame(rows)


def zoo_sizes_sentence(summary: pd.DataFrame, target: int = 50) -> str:
    """Which zoos have the replication's ``target`` models and which fewer, from :func:`zoo_summary`."""
    full, short = [], []
    for row in summary.itertuples():
        name = f"{row.task} {row.zoo}"
        (full if row.models >= target else short).append(f"{name} ({row.models})")
    parts = []
    if full:
        parts.append(f"{len(full)} zoo(s) have {target} models: " + ", ".join(full))
    if short:
        parts.append("fewer models, what fitted in this study's CPU time: " + ", ".join(short))
    return "; ".join(parts) + "." if parts else "No zoo was measured."


def comparison_verdict(head: pd.DataFrame, heldout: pd.DataFrame, allm: pd.DataFrame) -> str:
    """Per task and zoo: adaptive sharpness's τ, the best held-out Rényi block and the best baseline.

    "Best" is the largest |τ| against test loss; the sentence says whether
    Rényi sharpness with a held-out α beats adaptive sharpness in |τ|.
    """
    lines = []
    base = allm[(allm["target"] == "test_loss") & allm["measure"].isin(BASELINES)]
    for row in head.itertuples():
        if not np.isfinite(row.tau):
            lines.append(f"{row.task} ({row.zoo} zoo, {row.n} models): too few models for τ.")
            continue
        h = (
            heldout[(heldout["task"] == row.task) & (heldout["zoo"] == row.zoo)]
            if len(heldout)
            else heldout
        )
        b = base[(base["task"] == row.task) & (base["zoo"] == row.zoo)].dropna(subset=["tau"])
        text = f"{row.task} ({row.zoo} zoo, {row.n} models): adaptive sharpness τ = {row.tau:+.3f} (p = {row.pvalue:.2g})"
        if len(h):
            best = h.loc[h["tau_heldout_median"].abs().idxmax()]
            better = abs(best["tau_heldout_median"]) > abs(row.tau)
            text += (
                f"; best Rényi block {best['block']} with held-out α: median τ = {best['tau_heldout_median']:+.3f} "
                f"({'larger' if better else 'not larger'} in |τ|)"
            )
        if len(b):
            bb = b.loc[b["tau"].abs().idxmax()]
            text += (
                f"; best baseline {bb['measure']}: τ = {bb['tau']:+.3f} (p = {bb['pvalue']:.2g})"
            )
        lines.append(text + ".")
    return "\n".join(lines)
