"""The randomized-label experiment of Minimum sharpness, on scikit-learn digits.

Ibayashi, Hamaguchi & Imaizumi (2021, arXiv 2106.12612, Sec. 5) train a
LeNet and an MLP on MNIST with a fraction :math:`r \\in \\{0, 0.1, \\dots, 1\\}`
of the training labels shuffled, to fit (the last epoch), and plot minimum
sharpness against the generalization gap (train minus test accuracy): the
more labels are random, the larger the gap and the sharpness. Their code
(GitHub ``ibayashi-hikaru/minimum-sharpness``) shuffles the labels *among* a
random subset of :math:`\\lfloor rN \\rfloor` training points (a permutation,
so the class frequencies stay), and so does :func:`shuffle_labels`.

Here, at a 2-core machine's scale: the 1,437 / 360 scikit-learn digits (8×8),
a LeNet-like CNN (:func:`digits_lenet`: two 3×3 conv + max-pool stages, two
linear layers; 20,218 parameters) and an MLP (64-128-128-10, 26,122
parameters; ``renyilib.experiments.models`` ``"mlp"``), both ReLU without
normalization so that minimum sharpness is defined, trained with Adam by
:func:`renyilib.experiments.train.train` until they fit. Per run it records

* ``min_sharpness`` — :func:`renyilib.rescaling.minimum_sharpness`
  on the (noisy-label) training set, from the exact Hessian diagonal;
* ``trace`` — the raw :math:`\\operatorname{Tr} H` from the same diagonal
  (not invariant to the layer rescaling);
* ``renyi_<α>`` — Rényi sharpness :math:`-H_\\alpha` of the whole-model
  Hessian (Eq. 6 of the main paper) by SLQ, :func:`renyilib.renyi.renyi_sharpness`
  (exact ``eigvalsh`` where the block is small enough, ``spectrum="auto"``);
* ``gap`` — train minus test accuracy (the paper's gap), and ``loss_gap``.

:func:`random_label_study` runs the grid resumably (one JSON record per run
in a cache folder, keyed by the run's config hash; a killed study resumes),
:func:`kendall_table` gives Kendall's :math:`\\tau` of each measure with the gap,
and ``python -m renyilib.experiments.random_labels --profile cpu`` writes the
table to ``data/results/minimum-sharpness/`` for the book.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from renyilib.experiments.config import cache_dir, load_profile
from renyilib.experiments.data import DataBundle, load_data
from renyilib.experiments.io import atomic_write, code_version, config_hash, read_json, write_json
from renyilib.experiments.models import build_model
from renyilib.experiments.train import train
from renyilib.renyi import renyi_sharpness
from renyilib.rescaling import minimum_sharpness
from renyilib.statistics import kendall_tau

__all__ = [
    "MEASURES",
    "MODELS",
    "build_study_model",
    "digits_lenet",
    "kendall_table",
    "random_label_study",
    "read_results",
    "run_one",
    "shuffle_labels",
    "write_results",
]

#: The study's two networks.
MODELS = ("lenet", "mlp")
#: Measures correlated with the gap, besides the ``renyi_<alpha>`` columns.
MEASURES = ("min_sharpness", "trace")
#: Leading columns of the study's table (the ``renyi_<alpha>`` and timing columns follow).
_COLUMNS = (
    "model",
    "ratio",
    "seed",
    "gap",
    "min_sharpness",
    "trace",
    "train_acc",
    "test_acc",
    "train_loss",
    "test_loss",
    "loss_gap",
    "converged",
    "ms_converged",
    "params",
    "key",
)
#: Version of the run record (bump when a run's content changes).
_RECORD_VERSION = 1


def digits_lenet(num_classes: int = 10, width: float = 1.0) -> nn.Module:
    """LeNet-like ReLU CNN for 1×8×8 digits, no normalization (20,218 parameters at width 1).

    conv3×3/8 (pad 1) → ReLU → max-pool 2 (4×4) → conv3×3/32 (pad 1) → ReLU →
    max-pool 2 (2×2) → flatten (128) → linear 128 → ReLU → linear ``num_classes``.
    Every layer is positively homogeneous, so the layer-wise rescaling of
    minimum sharpness preserves its function.

    Args:
        num_classes: Outputs.
        width: Channel / hidden-unit multiplier.
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if not (isinstance(width, int | float) and width > 0):
        raise ValueError(f"width must be a positive number, got {width!r}")
    c1, c2, h = (max(1, round(c * width)) for c in (8, 32, 128))
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * 4, h),
        nn.ReLU(),
        nn.Linear(h, num_classes),
    )


def build_study_model(name: str, seed: int, width: float = 1.0) -> nn.Module:
    """The study's ``"lenet"`` (:func:`digits_lenet`) or ``"mlp"`` (64-128-128-10), seeded init."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {name!r}")
    torch.manual_seed(seed)
    if name == "lenet":
        return digits_lenet(10, width)
    return build_model("mlp", 10, in_channels=1, image_size=8, width=width, hidden=(128, 128))


def shuffle_labels(labels: torch.Tensor, ratio: float, seed: int) -> torch.Tensor:
    """Labels with those of a random fraction ``ratio`` of the points permuted among themselves.

    ``round(ratio · N)`` indices are drawn without replacement and their labels
    are randomly permuted (the authors' scheme): at ``ratio = 1`` every label
    is a random permutation of the originals. Some shuffled points keep their
    label by chance (about 1/10 for balanced classes).

    Args:
        labels: ``(N,)`` integer labels (not modified).
        ratio: Fraction in ``[0, 1]``.
        seed: Seed of the choice and the permutation.

    Returns:
        The new ``(N,)`` labels.
    """
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1:
        raise TypeError("labels must be a 1-D tensor")
    if not (isinstance(ratio, int | float) and 0.0 <= ratio <= 1.0):
        raise ValueError(f"ratio must be in [0, 1], got {ratio!r}")
    gen = torch.Generator().manual_seed(int(seed))
    n = labels.numel()
    k = int(round(float(ratio) * n))
    out = labels.clone()
    idx = torch.randperm(n, generator=gen)[:k]
    out[idx] = labels[idx][torch.randperm(k, generator=gen)]
    return out


def _run_config(model: str, ratio: float, seed: int, settings: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "epochs",
        "lr",
        "batch_size",
        "weight_decay",
        "width",
        "train_subset",
        "test_subset",
        "alphas",
        "num_probes",
        "lanczos_steps",
        "measure_samples",
    )
    cfg = {k: settings[k] for k in keys}
    cfg["alphas"] = [float(a) for a in cfg["alphas"]]
    return {
        "study": "minimum-sharpness-random-labels",
        "version": _RECORD_VERSION,
        "model": model,
        "ratio": round(float(ratio), 6),
        "seed": int(seed),
        **cfg,
    }


DEFAULTS: dict[str, Any] = {
    "epochs": 150,
    "lr": 3e-3,
    "batch_size": 64,
    "weight_decay": 0.0,
    "width": 1.0,
    "train_subset": None,
    "test_subset": None,
    "alphas": [0.5, 1.0, 2.0],
    "num_probes": 20,
    "lanczos_steps": 30,
    "measure_samples": None,
}


def _bundle(settings: dict[str, Any]) -> DataBundle:
    return load_data(
        "digits",
        train_subset=settings["train_subset"],
        test_subset=settings["test_subset"],
        progress=False,
    )


def run_one(
    model_name: str,
    ratio: float,
    seed: int,
    settings: dict[str, Any] | None = None,
    *,
    bundle: DataBundle | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> dict[str, Any]:
    """Train one model on digits with a fraction ``ratio`` of shuffled labels and measure it.

    The label shuffle uses ``seed``, the initialization and the mini-batch
    order too (so seed ``s`` at every ratio starts from the same weights).
    Training: Adam, constant-then-cosine schedule of
    :func:`renyilib.experiments.train.train`, no augmentation, ``epochs``
    epochs. Measures on the training set with the shuffled labels (the data
    the model fits), or on a seeded subset of ``measure_samples`` of its
    points, in float32 on ``device``.

    Args:
        model_name: ``"lenet"`` or ``"mlp"``.
        ratio: Fraction of shuffled training labels.
        seed: Run seed.
        settings: Overrides of :data:`DEFAULTS` (epochs, lr, batch_size,
            weight_decay, width, train_subset, test_subset, alphas,
            num_probes, lanczos_steps, measure_samples: ``None`` for the
            whole training set).
        bundle: The digits :class:`DataBundle` (loaded if omitted).
        device: Training and measuring device.
        progress: tqdm bar of the training epochs.

    Returns:
        The run record: config, train/test accuracy and loss, ``gap``
        (train − test accuracy), ``loss_gap``, ``converged``,
        ``min_sharpness``, ``trace``, ``renyi_<α>`` and timings.
    """
    settings = {**DEFAULTS, **(settings or {})}
    config = _run_config(model_name, ratio, seed, settings)
    bundle = _bundle(settings) if bundle is None else bundle
    noisy = dataclasses.replace(bundle, train_y=shuffle_labels(bundle.train_y, ratio, seed))
    model = build_study_model(model_name, seed, settings["width"])
    t0 = time.perf_counter()
    result = train(
        model,
        noisy,
        {
            "optimizer": "adam",
            "lr": float(settings["lr"]),
            "batch_size": int(settings["batch_size"]),
            "weight_decay": float(settings["weight_decay"]),
            "epochs": int(settings["epochs"]),
            "warmup_epochs": 1,
            "lr_scaling": False,
            "augment": False,
            "seed": int(seed),
        },
        device=device,
        progress=progress,
        eval_every=int(settings["epochs"]),
    )
    seconds_train = time.perf_counter() - t0
    model.eval()
    x, y = noisy.normalize(noisy.train_x), noisy.train_y
    k = settings["measure_samples"]
    if k is not None and int(k) < len(y):  # a fixed seeded subset of the (noisy) training set
        keep = torch.randperm(len(y), generator=torch.Generator().manual_seed(int(seed)))[: int(k)]
        x, y = x[keep], y[keep]
    x, y = x.to(device), y.to(device)
    loss_fn = nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    ms = minimum_sharpness(model, loss_fn, (x, y))
    seconds_ms = time.perf_counter() - t0
    t0 = time.perf_counter()
    alphas = [float(a) for a in settings["alphas"]]
    renyi = renyi_sharpness(
        model,
        loss_fn,
        (x, y),
        alphas=alphas,
        blocks="all",
        num_probes=int(settings["num_probes"]),
        lanczos_steps=int(settings["lanczos_steps"]),
        seed=int(seed),
        spectrum="auto",
        progress=False,
    )
    seconds_renyi = time.perf_counter() - t0
    row = renyi[renyi["block"] == "all"].set_index("alpha")["sharpness"]
    record = {
        "config": config,
        "key": config_hash(config),
        "model": model_name,
        "ratio": float(ratio),
        "seed": int(seed),
        "params": int(sum(p.numel() for p in model.parameters())),
        "train_acc": float(result.train_acc),
        "test_acc": float(result.test_acc),
        "train_loss": float(result.train_loss),
        "test_loss": float(result.test_loss),
        "gap": float(result.train_acc - result.test_acc),
        "loss_gap": float(result.test_loss - result.train_loss),
        "converged": bool(result.converged),
        "min_sharpness": float(ms.value),
        "trace": float(ms.trace),
        "ms_converged": bool(ms.converged),
        "scales": [float(a) for a in ms.scales],
        **{f"renyi_{a:g}": float(row.loc[a]) for a in alphas},
        "seconds_train": seconds_train,
        "seconds_min_sharpness": seconds_ms,
        "seconds_renyi": seconds_renyi,
        "code_version": code_version(),
    }
    return record


def random_label_study(
    models: Sequence[str] = MODELS,
    ratios: Sequence[float] = tuple(round(0.1 * i, 1) for i in range(11)),
    seeds: Sequence[int] = (0, 1, 2),
    settings: dict[str, Any] | None = None,
    *,
    cache: str | Path | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> pd.DataFrame:
    """The randomized-label grid: every model × ratio × seed, one :func:`run_one` each.

    Resumable: each finished run is written (temp file + rename) to
    ``<cache>/<config-hash>.json`` and read back instead of rerun.

    Args:
        models: Subset of :data:`MODELS`.
        ratios: Shuffled-label fractions.
        seeds: Run seeds (at least 3 for the paper's figure).
        settings: Overrides of :data:`DEFAULTS`.
        cache: Folder of the run records (default
            ``<cache_dir()>/minimum-sharpness``); ``False`` keeps nothing.
        device: Device of every run.
        progress: tqdm bar over the runs.

    Returns:
        One row per run (the record of :func:`run_one` without ``config``
        and ``scales``), sorted by model, ratio and seed.
    """
    models, ratios, seeds = list(models), [float(r) for r in ratios], [int(s) for s in seeds]
    bad = [m for m in models if m not in MODELS]
    if bad or not models:
        raise ValueError(f"models must be a non-empty subset of {MODELS}, got {models}")
    if not ratios or any(not 0.0 <= r <= 1.0 for r in ratios):
        raise ValueError(f"ratios must be a non-empty list in [0, 1], got {ratios}")
    if not seeds or any(s < 0 for s in seeds):
        raise ValueError(f"seeds must be a non-empty list of non-negative ints, got {seeds}")
    settings = {**DEFAULTS, **(settings or {})}
    folder = None if cache is False else Path(cache or cache_dir() / "minimum-sharpness")
    bundle = None
    records = []
    grid = [(m, r, s) for s in seeds for m in models for r in ratios]  # whole seeds first
    for m, r, s in tqdm(grid, desc="random-label runs", disable=not progress):
        key = config_hash(_run_config(m, r, s, settings))
        path = None if folder is None else folder / f"{key}.json"
        if path is not None and path.is_file():
            records.append(read_json(path))
            continue
        bundle = _bundle(settings) if bundle is None else bundle
        rec = run_one(m, r, s, settings, bundle=bundle, device=device)
        if path is not None:
            write_json(path, rec)
        records.append(rec)
    df = pd.DataFrame([{k: v for k, v in rec.items() if k not in ("config",)} for rec in records])
    df = df.drop(columns=["scales"])
    first = [c for c in _COLUMNS if c in df.columns]
    df = df[first + sorted(c for c in df.columns if c not in first)]
    return df.sort_values(["model", "ratio", "seed"]).reset_index(drop=True)


def kendall_table(df: pd.DataFrame, gap: str = "gap") -> pd.DataFrame:
    """Kendall's :math:`\\tau` (τ-b) of every measure with ``gap``, per model and pooled.

    Args:
        df: :func:`random_label_study`'s table.
        gap: The gap column (``"gap"``: accuracy; ``"loss_gap"``).

    Returns:
        Rows ``(model, measure)`` with ``tau``, ``pvalue`` and ``n``; model
        ``"both"`` pools the two networks.
    """
    measures = [c for c in (*MEASURES, *sorted(c for c in df.columns if c.startswith("renyi_")))]
    missing = [c for c in (gap, "model", *measures) if c not in df.columns]
    if missing:
        raise KeyError(f"df: missing columns {missing}")
    rows = []
    groups = [(m, df[df["model"] == m]) for m in sorted(df["model"].unique())] + [("both", df)]
    for model, sub in groups:
        for measure in measures:
            res = kendall_tau(sub[measure].to_numpy(float), sub[gap].to_numpy(float))
            rows.append(
                {
                    "model": model,
                    "measure": measure,
                    "tau": res.tau,
                    "pvalue": res.pvalue,
                    "n": res.n,
                }
            )
    return pd.DataFrame(rows)


def write_results(df: pd.DataFrame, folder: str | Path, meta: dict[str, Any]) -> Path:
    """Write ``runs.csv`` and ``runs.meta.json`` (``meta`` + code version) atomically into ``folder``."""
    folder = Path(folder)
    path = atomic_write(folder / "runs.csv", lambda tmp: df.to_csv(tmp, index=False))
    write_json(
        folder / "runs.meta.json", {**meta, "code_version": code_version(), "rows": int(len(df))}
    )
    return path


def read_results(folder: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The table and meta written by :func:`write_results`."""
    folder = Path(folder)
    return pd.read_csv(folder / "runs.csv"), read_json(folder / "runs.meta.json")


def profile_settings(profile: str) -> dict[str, Any]:
    """The study's settings of ``_config.yml`` section ``minimum_sharpness`` in ``profile``."""
    cfg = load_profile("minimum_sharpness", profile)
    return {
        "models": cfg["models"],
        "ratios": cfg["ratios"],
        "seeds": cfg["seeds"],
        "settings": {k: cfg[k] for k in DEFAULTS if k in cfg},
        "results": cfg.get("results"),
    }


def _main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Randomized-label study of minimum sharpness (digits).")
    p.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "paper"])
    p.add_argument("--out", default=None, help="results folder (default: the profile's `results`)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--models", nargs="*", default=None, help="run only these models (no table is written)"
    )
    p.add_argument("--seeds", nargs="*", type=int, default=None, help="run only these seeds")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = profile_settings(args.profile)
    if args.models or args.seeds:  # one shard of the grid into the shared cache
        random_label_study(
            args.models or cfg["models"],
            cfg["ratios"],
            args.seeds or cfg["seeds"],
            cfg["settings"],
            device=args.device,
        )
        return 0
    df = random_label_study(
        cfg["models"], cfg["ratios"], cfg["seeds"], cfg["settings"], device=args.device
    )
    out = args.out or cfg["results"] or "data/results/minimum-sharpness"
    meta = {
        "command": f"python -m renyilib.experiments.random_labels --profile {args.profile}",
        "profile": args.profile,
        "models": cfg["models"],
        "ratios": cfg["ratios"],
        "seeds": cfg["seeds"],
        "settings": {**DEFAULTS, **cfg["settings"]},
        "threads": args.threads,
        "device": args.device,
    }
    print(write_results(df, out, meta))
    print(kendall_table(df).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
