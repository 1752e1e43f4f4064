"""The RSAM chapter's computation: Table 1 at our scale, ε over training, Hessian sharpness.

Sec. 6 of the paper (Algorithm 2, Eqs. 9–12, Table 1): RSAM against SGD, SAM,
ASAM and Eigen-SAM. The runs are :func:`renyilib.experiments.table1.run_table1`
(resumable, every method's ρ tuned by the same search); this module turns
them into the chapter's tables and numbers: accuracies beside the paper's
Table 1, seed-paired differences, the size of ε per epoch, the Rényi sharpness
of the trained weights (SLQ) against RSAM's gradient surrogate, RSAM on an
anisotropic quadratic, and the committed CIFAR-10 run.
:func:`rsam_study` runs them in the chapter's order.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from renyilib.optim import RSAM, renyi_gradient_regularizer
from renyilib.renyi import renyi_sharpness

__all__ = [
    "PAPER_METHOD_ORDER",
    "RsamStudy",
    "accuracy_cell",
    "cifar_extra",
    "epoch_curves",
    "eps_numbers",
    "hessian_sharpness",
    "paired_difference",
    "quadratic_runs",
    "rsam_study",
    "sharpness_numbers",
    "sharpness_summary",
    "table1_beside_paper",
    "table1_numbers",
]

#: The methods of the paper's Table 1, in its column order.
PAPER_METHOD_ORDER = ("SGD", "SAM", "ASAM", "Eigen-SAM", "RSAM")


def accuracy_cell(mean: float, stderr: float) -> str:
    """``"mean ± stderr"`` with two decimals; a missing value is ``"—"``."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    cell = f"{mean:.2f}"
    if stderr is not None and not (isinstance(stderr, float) and math.isnan(stderr)):
        cell += f" ± {stderr:.2f}"
    return cell


def table1_beside_paper(
    summary: pd.DataFrame, paper: pd.DataFrame, methods: Sequence[str]
) -> pd.DataFrame:
    """Our test accuracies (mean ± s.e. over seeds) beside every row of the paper's Table 1.

    Args:
        summary: :func:`renyilib.experiments.table1.summarize` of our runs
            (``task, method, label, mean, stderr``).
        paper: :func:`renyilib.experiments.table1.load_paper_table`.
        methods: Our methods, in row order.

    Returns:
        Table 1's layout: one column per method (its label); one row per task
        of ours (``"ours: <task>"``), then one per dataset/model of the paper
        (``"paper: <dataset> <model>"``). A method the paper does not have, or
        a cell its OCR lost, reads ``"—"``.
    """
    from renyilib.experiments.table1 import METHOD_LABELS

    labels = [METHOD_LABELS[m] for m in methods]
    out = pd.DataFrame(index=pd.Index(labels, name="method"))
    for task, s in summary.groupby("task", sort=False):
        cells = {r["label"]: accuracy_cell(r["mean"], r["stderr"]) for _, r in s.iterrows()}
        out[f"ours: {task}"] = [cells.get(lb, "—") for lb in labels]
    for (dataset, model), p in paper.groupby(["dataset", "model"], sort=False):
        cells = {r["method"]: accuracy_cell(r["mean"], r["stderr"]) for _, r in p.iterrows()}
        out[f"paper: {dataset} {model}"] = [cells.get(lb, "—") for lb in labels]
    return out.T.rename_axis(index="test accuracy (%)", columns="method")


def paired_difference(acc: pd.DataFrame, a: str, b: str) -> tuple[float, float]:
    """Mean and standard error of the seed-paired difference ``acc[a] - acc[b]`` (seeds × methods)."""
    d = acc[a] - acc[b]
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))


def table1_numbers(
    runs: pd.DataFrame,
    summary: pd.DataFrame,
    paper: pd.DataFrame,
    task: str,
    methods: Sequence[str],
) -> dict[str, Any]:
    """The numbers the chapter quotes about Table 1 on ``task``.

    Returns:
        ``acc_<method>``, ``best_method``, ``rsam_minus_sgd``, ``rsam_minus_sam``
        (seed-paired), the paper's CIFAR-10 / ResNet-20 differences, ``n_test``,
        ``one_image`` and the methods that differ from SGD by more than two
        paired standard errors (``n_sig``, ``sig_methods``).
    """
    from renyilib.experiments.table1 import METHOD_LABELS, read_json

    s = summary[summary.task == task].set_index("method")
    acc = runs[runs.task == task].pivot(index="seed", columns="method", values="acc")
    out: dict[str, Any] = {}
    for name in methods:
        out[f"acc_{name}"] = f"{s.loc[name, 'mean']:.2f} ± {s.loc[name, 'stderr']:.2f}"
    out["best_method"] = METHOD_LABELS[s["mean"].idxmax()]
    for other in ("sgd", "sam"):
        d, se = paired_difference(acc, "rsam", other)
        out[f"rsam_minus_{other}"] = f"{d:+.2f} ± {se:.2f}"
    row = paper[(paper.dataset == "CIFAR10") & (paper.model == "ResNet20")].set_index("method")[
        "mean"
    ]
    out["paper_rsam_minus_sgd"] = f"{row['RSAM'] - row['SGD']:+.2f}"
    out["paper_rsam_minus_sam"] = f"{row['RSAM'] - row['SAM']:+.2f}"
    n_test = read_json(Path(runs["path"].iloc[0]) / "metrics.json")["n_eval"]
    out["n_test"] = n_test
    out["one_image"] = f"{100 / n_test:.2f}"
    sig = []
    for m in methods:
        if m != "sgd":
            d, se = paired_difference(acc, m, "sgd")
            if abs(d) > 2 * se:
                sig.append(m)
    out["n_sig"] = f"{len(sig)} of {len(methods) - 1}"
    out["sig_methods"] = ", ".join(METHOD_LABELS[m] for m in sig) or "none"
    return out


def epoch_curves(runs: pd.DataFrame, task: str, key: str) -> pd.DataFrame:
    """Per-epoch values of one curve (``eval_acc``, ``train_loss``, ``eps_mean``, …) of every run.

    Returns:
        ``method, seed, epoch, <key>`` read from each run's ``metrics.json``.

    Raises:
        KeyError: A run's curves lack ``key``.
    """
    from renyilib.experiments.table1 import read_json

    rows = []
    for _, r in runs[runs.task == task].iterrows():
        m = read_json(Path(r["path"]) / "metrics.json")["curves"]
        rows += [
            {"method": r["method"], "seed": r["seed"], "epoch": e, key: v}
            for e, v in zip(m["epoch"], m[key])
        ]
    return pd.DataFrame(rows, columns=["method", "seed", "epoch", key])


def eps_numbers(eps: pd.DataFrame) -> dict[str, str]:
    """How Eq. 11's ‖ε‖₂ and the fixed-radius variant's moved (means per epoch, ``eps_mean > 0``)."""
    r = eps[(eps.method == "rsam") & (eps.eps_mean > 0)].eps_mean.to_numpy()
    f = eps[(eps.method == "rsam-fixed") & (eps.eps_mean > 0)].eps_mean.to_numpy()
    return {
        "rsam_eps_first": f"{r[0]:.3g}",
        "rsam_eps_last": f"{r[-1]:.3g}",
        "rsam_eps_growth": f"{r[-1] / r[0]:.1f}",
        "rsam_eps_verb": "grew" if r[-1] > r[0] else "did not grow",
        "fixed_eps_range": f"{f.min():.3g}–{f.max():.3g}",
    }


def hessian_sharpness(
    res: dict[str, Any], runs: pd.DataFrame, task: str, sharpness: dict[str, Any]
) -> pd.DataFrame:
    """−H_α of the loss Hessian of all parameters (SLQ) and RSAM's gradient surrogate, per trained model.

    On a fixed un-augmented subset of ``sharpness["n"]`` training images
    (seed 0): :func:`renyilib.renyi.renyi_sharpness` with the profile's probes
    and steps, and the surrogate log R_α / (α − 1) with
    R_α = Σ g^{2α} / (Σ g²)^α of the full-subset gradient (Eqs. 9–10).

    Args:
        res: :func:`renyilib.experiments.table1.run_table1`.
        runs: Its ``runs`` table.
        task: The task measured.
        sharpness: The profile's ``sharpness`` settings (``n, num_probes,
            lanczos_steps, alphas, methods``).

    Returns:
        ``method, seed, alpha, sharpness, slq_stderr, surrogate, trace``.
    """
    from renyilib.experiments import table1

    bundle = table1.run_data(next(c for c in res["configs"] if c["task"] == task))
    x, y = bundle.subset(sharpness["n"], seed=0)
    loss_fn = torch.nn.CrossEntropyLoss()
    rows = []
    for _, r in runs[(runs.task == task) & runs.method.isin(sharpness["methods"])].iterrows():
        model = table1.load_model(r["path"])
        df = renyi_sharpness(
            model,
            loss_fn,
            (x, y),
            alphas=sharpness["alphas"],
            blocks="all",
            num_probes=sharpness["num_probes"],
            lanczos_steps=sharpness["lanczos_steps"],
            seed=0,
            progress=False,
        )
        model.zero_grad()
        loss_fn(model(x), y).backward()
        grad = [p.grad for p in model.parameters()]
        for _, d in df.iterrows():
            a = d["alpha"]
            rows.append(
                {
                    "method": r["method"],
                    "seed": r["seed"],
                    "alpha": a,
                    "sharpness": d["sharpness"],
                    "slq_stderr": d["stderr"],
                    "surrogate": math.log(renyi_gradient_regularizer(grad, a)) / (a - 1),
                    "trace": d["trace"],
                }
            )
    return pd.DataFrame(rows)


def sharpness_summary(sharp: pd.DataFrame) -> pd.DataFrame:
    """Mean and seed standard error of −H_α, and the mean surrogate and trace, per method and α."""
    return (
        sharp.groupby(["method", "alpha"])
        .agg(
            sharpness=("sharpness", "mean"),
            sharpness_se=("sharpness", lambda v: v.std(ddof=1) / math.sqrt(len(v))),
            surrogate=("surrogate", "mean"),
            trace=("trace", "mean"),
        )
        .reset_index()
    )


def sharpness_numbers(
    sharp: pd.DataFrame, runs: pd.DataFrame, task: str, alpha: float, methods: Sequence[str]
) -> dict[str, Any]:
    """Seed-paired sharpness differences at RSAM's α, the noise levels and the final train losses."""
    from renyilib.experiments.table1 import METHOD_LABELS

    piv = sharp[sharp.alpha == alpha].pivot(index="seed", columns="method", values="sharpness")

    def pdiff(a: str, b: str) -> str:
        d = piv[a] - piv[b]
        return f"{d.mean():+.3f} ± {d.std(ddof=1) / math.sqrt(len(d)):.3f}"

    at = sharp[sharp.alpha == alpha]
    tl = runs[runs.task == task].groupby("method").train_loss.mean()
    return {
        "alpha_rsam": alpha,
        "slq_se": f"{at.slq_stderr.mean():.3f}",
        "seed_sd": f"{at.groupby('method').sharpness.std(ddof=1).mean():.3f}",
        "sharp_rsam_minus_sgd": pdiff("rsam", "sgd"),
        "sharp_rsam_minus_sam": pdiff("rsam", "sam"),
        "sharp_lower_than_sgd": "lower" if (piv["rsam"] - piv["sgd"]).mean() < 0 else "not lower",
        "sharp_lower_than_sam": "lower" if (piv["rsam"] - piv["sam"]).mean() < 0 else "not lower",
        "train_loss_by_method": ", ".join(f"{METHOD_LABELS[m]} {tl[m]:.2g}" for m in methods),
    }


def quadratic_runs(
    alpha: float = 2.0, rho: float = 0.05, steps: int = 60, lr: float = 0.1, k: int = 24
) -> dict[str, Any]:
    """SGD, RSAM (Eq. 11) and fixed-radius RSAM on L = ½ Σ a_j θ_j², a = (0.5, 1, 2, 4), θ₀ = 1.

    Args:
        alpha, rho: RSAM's order and radius.
        steps, lr: Steps and learning rate of the base SGD.
        k: The step whose R_α the text quotes (0-based).

    Returns:
        ``runs``: label → ``(R_α(g) per step, ‖ε‖₂ per step)``; ``numbers``.
    """
    a = torch.tensor([0.5, 1.0, 2.0, 4.0], dtype=torch.float64)

    def run(r: float, radius: str) -> tuple[np.ndarray, np.ndarray]:
        th = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
        opt = RSAM([th], torch.optim.SGD, rho=r, alpha=alpha, radius=radius, lr=lr)
        vals, eps = [], []

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = 0.5 * (a * th**2).sum()
            loss.backward()
            return loss

        for _ in range(steps):
            opt.step(closure)
            vals.append(renyi_gradient_regularizer(a * th.detach(), alpha))
            eps.append(opt.last_perturbation_norm)
        return np.array(vals), np.array(eps)

    quad = {
        "SGD": run(0.0, "paper"),
        "RSAM (Eq. 11)": run(rho, "paper"),
        "RSAM fixed radius": run(rho, "fixed"),
    }
    numbers: dict[str, Any] = {"quad_k": k + 1}
    for key, label in [("sgd", "SGD"), ("rsam", "RSAM (Eq. 11)"), ("fixed", "RSAM fixed radius")]:
        numbers[f"quad_{key}_k"] = f"{quad[label][0][k]:.3f}"
        numbers[f"quad_{key}_end"] = f"{quad[label][0][-1]:.3f}"
    e, ef = quad["RSAM (Eq. 11)"][1], quad["RSAM fixed radius"][1]
    numbers["quad_eps_range"] = f"{e.min():.3g} to {e.max():.3g}"
    numbers["quad_fixed_eps_range"] = f"{ef.min():.3g} to {ef.max():.3g}"
    return {"runs": quad, "numbers": numbers}


def cifar_extra(csv: str | os.PathLike, extra: dict[str, Any]) -> dict[str, Any]:
    """The committed CIFAR-10 run of the ``cpu`` profile's ``extra`` settings.

    Written by ``python -m renyilib.experiments.table1 --profile cpu --extra --csv <csv>``.

    Args:
        csv: The per-run CSV (final and tuning runs).
        extra: The profile's ``extra`` settings (for the description).

    Returns:
        ``available``; when available ``summary``, ``cells`` (our accuracies),
        ``tuning`` (validation accuracy against ρ / paper ρ, with ``chosen``),
        and ``numbers`` (set-up, chosen ρ, accuracies, paired differences,
        train accuracy range, ‖ε‖, ordering). Without the CSV every result
        number reads "not available in this build (run `<command>`)".
    """
    from renyilib.experiments import table1

    csv = Path(csv)
    tune_cfg = extra.get("tune") or {}
    numbers: dict[str, Any] = {
        "cifar_csv_exists": "is in" if csv.is_file() else "is not in",
        "cifar_setup": (
            f"ResNet-20 at width {extra.get('width')}, {extra.get('train_subset')} training and "
            f"{extra.get('test_subset')} test images, {extra.get('epochs')} epochs with the "
            f"training augmentation, seeds {extra.get('seeds')}"
        ),
        "cifar_tuning": (
            f"each method's ρ chosen among its paper value × {tune_cfg['factors']} by validation "
            f"accuracy on {tune_cfg['val_size']} training images held out (one seed; the same "
            "search for every method), then trained on the whole subset"
            if tune_cfg
            else "the paper's ρ, untuned"
        ),
    }
    if not csv.is_file():
        command = f"python -m renyilib.experiments.table1 --profile cpu --extra --csv {csv}"
        for k in ("c10_summary", "c10_order", "c10_eps", "c10_rhos", "c10_paired", "c10_train_acc"):
            numbers[k] = f"not available in this build (run `{command}`)"
        return {"available": False, "numbers": numbers}
    c_all = pd.read_csv(csv)
    stage = c_all["stage"] if "stage" in c_all else pd.Series("final", index=c_all.index)
    c10, t10 = c_all[stage == "final"], c_all[stage == "tune"]
    task = c10["task"].iloc[0]
    s10 = table1.summarize(c10)
    cells = s10.assign(cell=[accuracy_cell(m, s) for m, s in zip(s10["mean"], s10["stderr"])])
    cells = cells.pivot(index="task", columns="label", values="cell")
    tuning = None
    if len(t10):
        paper_rho = {
            m: table1.PAPER_HPARAMS[task][m]["kwargs"].get("rho") for m in t10.method.unique()
        }
        tuning = t10.assign(
            factor=[r / paper_rho[m] if m != "sgd" else np.nan for m, r in zip(t10.method, t10.rho)]
        )
        chosen = c10.groupby("method").rho.first()
        tuning["chosen"] = [
            m != "sgd" and bool(np.isclose(r, chosen[m])) for m, r in zip(tuning.method, tuning.rho)
        ]
        numbers["c10_rhos"] = ", ".join(
            f"{table1.METHOD_LABELS[m]} {chosen[m]:g} (×{chosen[m] / paper_rho[m]:g})"
            for m in chosen.index
            if m != "sgd"
        )
    else:
        numbers["c10_rhos"] = "the paper's values"
    p10 = c10.pivot(index="seed", columns="method", values="acc")
    others = [m for m in p10.columns if m != "sgd"]
    for m in others:
        d, se = paired_difference(p10, m, "sgd")
        numbers[f"c10_{m}_minus_sgd"] = f"{d:+.2f} ± {se:.2f}"
    numbers["c10_summary"] = "; ".join(
        f"{table1.METHOD_LABELS[m]} {r['mean']:.2f} ± {r['stderr']:.2f}"
        for m, r in s10.set_index("method").iterrows()
    )
    numbers["c10_paired"] = "; ".join(
        f"{table1.METHOD_LABELS[m]} − SGD {(p10[m] - p10['sgd']).mean():+.2f} ± "
        f"{(p10[m] - p10['sgd']).std(ddof=1) / math.sqrt(len(p10)):.2f}"
        for m in others
    )
    numbers["c10_train_acc"] = f"{c10.train_acc.min():.1f}–{c10.train_acc.max():.1f}"
    e10 = c10.groupby("method").eps_last.mean()
    numbers["c10_eps"] = ", ".join(f"{table1.METHOD_LABELS[m]} {e10[m]:.3g}" for m in s10.method)
    order = s10.sort_values("mean", ascending=False).method
    numbers["c10_order"] = " > ".join(table1.METHOD_LABELS[m] for m in order)
    return {"available": True, "summary": s10, "cells": cells, "tuning": tuning, "numbers": numbers}


@dataclass
class RsamStudy:
    """Everything the RSAM chapter shows (see the step functions for each field)."""

    task: str
    res: dict[str, Any]
    beside_paper: pd.DataFrame
    curves: dict[str, pd.DataFrame]
    sharpness: pd.DataFrame
    sharpness_summary: pd.DataFrame
    quadratic: dict[str, Any]
    cifar: dict[str, Any]
    numbers: dict[str, Any] = field(default_factory=dict)


def rsam_study(
    cfg: dict[str, Any],
    *,
    out: str | os.PathLike | None = None,
    root: str | os.PathLike | None = None,
    progress: bool = False,
) -> RsamStudy:
    """The whole RSAM chapter for one ``rsam`` profile (trains what is not trained yet).

    Args:
        cfg: ``load_profile("rsam", profile)``.
        out: Run folder (default: ``<root>/<cfg["out"]>``).
        root: Project root (default: the folder of ``_config.yml``).
        progress: tqdm over runs.

    Returns:
        An :class:`RsamStudy` for the profile's first task.
    """
    from renyilib.experiments import table1
    from renyilib.experiments.config import find_config, load_profile

    root = Path(root) if root is not None else find_config().parent
    out = Path(out) if out is not None else root / cfg["out"]
    res = table1.run_table1(cfg, out, progress=progress)
    runs, summary = res["runs"], res["summary"]
    paper = table1.load_paper_table(root / "book" / "reference" / "paper_table1.csv")
    task = cfg["tasks"][0]
    numbers: dict[str, Any] = {
        "tasks": ", ".join(cfg["tasks"]),
        "n_seeds": len(cfg["seeds"]),
        "epochs": cfg["epochs"],
        **table1_numbers(runs, summary, paper, task, cfg["methods"]),
    }
    curves = {k: epoch_curves(runs, task, k) for k in ("eval_acc", "train_loss", "eps_mean")}
    eps = curves["eps_mean"].groupby(["method", "epoch"])["eps_mean"].mean().reset_index()
    numbers.update(eps_numbers(eps))
    sh = cfg["sharpness"]
    sharp = hessian_sharpness(res, runs, task, sh)
    numbers.update(sharpness_numbers(sharp, runs, task, float(sh["alphas"][1]), sh["methods"]))
    quad = quadratic_runs()
    numbers.update(quad["numbers"])
    extra = load_profile("rsam", "cpu").get("extra", {})
    cifar = cifar_extra(root / "data" / "results" / "rsam_cifar10_cpu.csv", extra)
    numbers.update(cifar["numbers"])
    return RsamStudy(
        task=task,
        res=res,
        beside_paper=table1_beside_paper(summary, paper, cfg["methods"]),
        curves=curves,
        sharpness=sharp,
        sharpness_summary=sharpness_summary(sharp),
        quadratic=quad,
        cifar=cifar,
        numbers=numbers,
    )
