"""The CIFAR-10 chapter's computation: the correlation study on committed tables of a ResNet-18 zoo.

The zoo (``experiments: zoo: cpu: overrides: cifar10-resnet18``) takes about
an hour to train and another to measure on a two-core machine, so its chapter
never trains or measures: it reads the tables that ``renyilib zoo run`` and
``renyilib zoo measure --export`` wrote to ``data/results/<task>/`` and
analyses them with :mod:`renyilib.statistics`, like the correlation chapter
(Sec. 5 of the paper: Kendall τ of −H_α per layer and of the baselines with
the generalization gap; the held-out choice of α; spectral types and Fig. 1d;
the paper's Fig. 11 beside ours). :func:`cifar_study` runs it all and stops up
front, naming both commands, when a table is missing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from renyilib.experiments.correlation_study import BASELINE_LABELS, BASELINES
from renyilib.statistics import (
    alpha_sweep,
    best_alpha,
    correlation_table,
    in_paper_range,
    spectral_types,
    split_selection,
    type_match_table,
)

__all__ = [
    "CifarStudy",
    "FILES",
    "MIN_CONVERGED",
    "TIE",
    "alpha_table",
    "analysed_models",
    "baseline_comparison",
    "cifar_study",
    "commands",
    "fig11_beside",
    "held_out_choice",
    "load_tables",
    "scatter_panels",
    "spectra",
    "verdict_sentences",
    "zoo_description",
]

#: The exported tables the chapter needs (``quadratures.csv`` is optional: spectra).
FILES = (
    "zoo_table.csv",
    "curves.csv",
    "zoo_meta.json",
    "profiles.csv",
    "baselines.csv",
    "cost.csv",
    "measure_config.json",
)
#: Analyse the converged models only when at least this many converged (the correlation chapter's rule).
MIN_CONVERGED = 6
#: τ values closer than this are equal (floating-point noise).
TIE = 1e-9


def commands(task: str, zoo_profile: str, results: str) -> list[str]:
    """The two shell commands (from the repository root) that make the chapter's tables."""
    return [
        f"RENYI_DATA=../shared/data renyilib zoo run --task {task} --profile {zoo_profile} --jobs 2",
        f"RENYI_DATA=../shared/data renyilib zoo measure --task {task} --profile {zoo_profile} "
        f"--export {results}",
    ]


def load_tables(
    folder: str | os.PathLike, task: str, zoo_profile: str, results: str
) -> dict[str, Any]:
    """Read the exported tables of ``task``'s zoo from ``folder``.

    Returns:
        ``runs`` (zoo table), ``curves``, ``profiles``, ``baselines``, ``cost``
        (DataFrames), ``meta`` (``zoo_meta.json``), ``measure`` (``measure_config.json``)
        and ``quadratures`` (the SLQ nodes table, or ``None`` if not exported).

    Raises:
        MissingInputError: A table of :data:`FILES` is missing; the message
            names it and the commands that make it.
    """
    from renyilib.experiments.io import read_json
    from renyilib.experiments.prerequisites import require_files

    folder = require_files(
        folder,
        list(FILES),
        what=f"the exported tables of the {task} zoo",
        command=" && ".join(commands(task, zoo_profile, results)),
    )
    q = folder / "quadratures.csv"
    return {
        "runs": pd.read_csv(folder / "zoo_table.csv"),
        "curves": pd.read_csv(folder / "curves.csv"),
        "profiles": pd.read_csv(folder / "profiles.csv"),
        "baselines": pd.read_csv(folder / "baselines.csv"),
        "cost": pd.read_csv(folder / "cost.csv"),
        "meta": read_json(folder / "zoo_meta.json"),
        "measure": read_json(folder / "measure_config.json"),
        "quadratures": pd.read_csv(q) if q.is_file() else None,
    }


def _joined(values: Any) -> str:
    """The distinct values of a setting across the zoo's runs, as text."""
    return " / ".join(str(v) for v in dict.fromkeys(values))


def zoo_description(tables: dict[str, Any], task: str) -> dict[str, Any]:
    """What the tables hold: sizes, code versions, measurement settings, recorded times, the paper's scale.

    Returns:
        ``numbers`` (the values the chapter quotes), ``settings`` (a one-column
        table), ``blocks`` (the measured layers), ``order`` (layers, then
        ``"all"``), ``layer_names`` (every weight tensor of the architecture, in
        forward order) and ``n_params``.
    """
    from renyilib.experiments import zoo
    from renyilib.experiments.config import load_profile
    from renyilib.experiments.models import count_parameters
    from renyilib.experiments.summary import display_version
    from renyilib.hessian import layer_blocks

    runs, meta, mcfg = tables["runs"], tables["meta"], tables["measure"]
    trained = meta["trained_with_code_version"]
    trained = [trained] if isinstance(trained, str) else list(trained)
    renyi_set = mcfg["settings"]["renyi"]
    base_set = mcfg["settings"]["baselines"]
    configs = meta["configs"]
    net = zoo.build_run_model(configs[0])
    layer_names = [b for b in layer_blocks(net) if b != "all"]
    blocks = [b for b in pd.unique(tables["profiles"]["block"]) if b != "all"]
    paper_zoo = zoo.profile_settings(task, "paper")
    paper_renyi = load_profile("correlation", "paper")["renyi"]
    cost = tables["cost"]
    sec_cols = [c for c in cost.columns if c.endswith("_seconds")]
    n_conv = int(runs["converged"].astype(bool).sum())
    numbers = {
        "task": meta["task"],
        "trained_code": ", ".join(dict.fromkeys(display_version(v) for v in trained)),
        "measured_code": display_version(mcfg["code_version"]),
        "exported_code": display_version(meta.get("exported_with_code_version", "n/a")),
        "measure_profile": mcfg.get("profile", "n/a"),
        "n_runs": len(runs),
        "n_converged": n_conv,
        "n_measured": int(mcfg.get("runs_measured", tables["baselines"]["run"].nunique())),
        "n_missing": int(mcfg.get("runs_missing", 0)),
        "model": _joined(c["model"] for c in configs),
        "width": _joined(c["model_kwargs"]["width"] for c in configs),
        "n_params": f"{count_parameters(net):,}",
        "train_images": _joined(f"{c['data']['train_subset']:,}" for c in configs),
        "epochs": _joined(c["train"]["epochs"] for c in configs),
        "augment": _joined("with" if c["train"]["augment"] else "without" for c in configs),
        "num_probes": renyi_set["num_probes"],
        "lanczos_steps": renyi_set["lanczos_steps"],
        "renyi_subset": renyi_set["subset"],
        "renyi_method": renyi_set["method"],
        "n_layers_measured": len(blocks),
        "n_layers_total": len(layer_names),
        "baseline_subset": base_set.get("subset", "n/a"),
        "baseline_settings": "; ".join(
            f"{k}: " + ", ".join(f"{a}={v}" for a, v in s.items())
            for k, s in base_set.get("settings", {}).items()
        ),
        "train_minutes": float(runs["seconds"].sum() / 60),
        "measure_minutes": float(cost[sec_cols].sum().sum() / 60),
        "paper_epochs": paper_zoo["epochs"],
        "paper_width": paper_zoo.get("width", 1),
        "paper_augment": "with" if paper_zoo.get("augment") else "without",
        "paper_probes": paper_renyi["num_probes"],
        "paper_steps": paper_renyi["lanczos_steps"],
        "paper_subset": f"{paper_renyi['subset']:,}",
    }
    order = [*blocks, "all"]
    settings = pd.Series(
        {
            "task": meta["task"],
            "runs (zoo table)": len(runs),
            "runs measured": mcfg.get("runs_measured"),
            "trained with code": numbers["trained_code"],
            "measured with code": display_version(mcfg["code_version"]),
            "measurement profile": mcfg.get("profile"),
            "Rényi (SLQ)": ", ".join(f"{k}={v}" for k, v in renyi_set.items()),
            "baselines": ", ".join(base_set.get("which", [])),
            "layer blocks measured": ", ".join(order),
        },
        name="value",
    ).to_frame()
    return {
        "numbers": numbers,
        "settings": settings,
        "blocks": blocks,
        "order": order,
        "layer_names": layer_names,
    }


def zoo_summary(runs: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per optimizer and learning rate: final metrics, convergence, minutes; and the numbers quoted."""
    from renyilib.experiments.train import CONVERGED_TRAIN_LOSS
    from renyilib.experiments.zoo_study import run_summary

    summary = run_summary(runs, by=("optimizer", "lr"))
    n_runs, n_conv = len(runs), int(runs["converged"].astype(bool).sum())
    numbers = {
        "convergence_verdict": "every run met the criterion"
        if n_conv == n_runs and n_runs
        else f"{n_runs - n_conv} of {n_runs} runs missed the criterion",
        "worst_train_loss": float(runs["train_loss"].max()),
        "worst_train_acc": float(100 * runs["train_acc"].min()),
        "test_acc_min": float(100 * runs["test_acc"].min()),
        "test_acc_max": float(100 * runs["test_acc"].max()),
        "gap_min": float(runs["gap"].min()),
        "gap_max": float(runs["gap"].max()),
        "converged_loss": CONVERGED_TRAIN_LOSS,
    }
    return summary, numbers


def analysed_models(
    profiles: pd.DataFrame, baselines: pd.DataFrame, min_converged: int = MIN_CONVERGED
) -> dict[str, Any]:
    """The converged models when at least ``min_converged`` converged, else all; τ's null sd for them.

    Returns:
        ``profiles``, ``baselines`` (index reset), ``model_set``, ``n_used`` and
        ``tau_sd`` = √(2(2N+5) / (9N(N−1))), Kendall τ's standard deviation under
        no association (NaN for N < 2).
    """
    conv_runs = set(baselines.loc[baselines["converged"].astype(bool), "run"])
    if len(conv_runs) >= min_converged:
        prof = profiles[profiles["run"].isin(conv_runs)]
        base = baselines[baselines["run"].isin(conv_runs)].reset_index(drop=True)
        model_set = "converged models only"
    else:
        prof, base = profiles, baselines.reset_index(drop=True)
        model_set = f"all models (only {len(conv_runs)} converged)"
    n = int(base["run"].nunique())
    tau_sd = float(np.sqrt(2 * (2 * n + 5) / (9 * n * (n - 1)))) if n > 1 else np.nan
    return {
        "profiles": prof,
        "baselines": base,
        "model_set": model_set,
        "n_used": n,
        "tau_sd": tau_sd,
    }


def alpha_table(profiles: pd.DataFrame, order: Sequence[str]) -> dict[str, Any]:
    """τ against α, each block's best α (NaN-safe, in ``order``) and τ at α = 0.5 and 1.5.

    Returns:
        ``sweep``, ``best`` (indexed by block), ``table`` and ``best_in_range``
        (``"yes"`` when every best α lies in the paper's range).
    """
    sweep = alpha_sweep(profiles, by=["task", "block"])
    best = best_alpha(sweep, by=["task", "block"]).set_index("block").reindex(list(order))
    fixed = sweep[sweep["alpha"].isin([0.5, 1.5])].pivot_table(
        index="block", columns="alpha", values="tau", dropna=False
    )
    fixed = fixed.reindex(index=list(order), columns=[0.5, 1.5])
    fixed.columns = [f"τ at α={a:g}" for a in fixed.columns]
    table = (
        best[["alpha", "tau", "pvalue", "n"]]
        .rename(columns={"alpha": "best α", "tau": "τ at best α", "pvalue": "p-value"})
        .join(fixed)
    )
    ok = bool(in_paper_range(best["alpha"].dropna().to_numpy(float)).all())
    return {"sweep": sweep, "best": best, "table": table, "best_in_range": "yes" if ok else "no"}


def baseline_comparison(
    baselines: pd.DataFrame, best: pd.DataFrame, sweep: pd.DataFrame
) -> dict[str, Any]:
    """Each baseline's τ beside four summaries of Rényi sharpness.

    Returns:
        ``measures`` (baselines present), ``base_tau`` (their correlation
        table), ``bt`` (τ by measure key), ``fixed_all`` (τ of "all" by α),
        ``bars`` (label → τ: Rényi summaries, then the baselines) and
        ``summary`` (every block at its best α and every baseline: τ, p, n).
    """
    measures = [m for m in BASELINES if m in baselines.columns]
    base_tau = correlation_table(baselines, measures, by=["task"])
    bt = base_tau.set_index("measure")["tau"]
    fix_all = sweep[sweep["block"] == "all"].set_index("alpha")["tau"]
    renyi_tau = pd.Series(
        {
            "Rényi all layers (best α)": best.loc["all", "tau"],
            "Rényi layers (mean of best α)": best.drop(index="all")["tau"].mean(),
            "Rényi all layers α=0.5": fix_all.get(0.5, np.nan),
            "Rényi all layers α=1.5": fix_all.get(1.5, np.nan),
        }
    )
    bars = pd.concat([renyi_tau, bt.rename(index=BASELINE_LABELS)]).astype(float)
    summary = pd.concat(
        [
            best.reset_index().assign(
                measure=lambda d: "Rényi "
                + d["block"].astype(str)
                + " (best α="
                + d["alpha"].map("{:g}".format)
                + ")"
            )[["measure", "tau", "pvalue", "n"]],
            base_tau.assign(measure=base_tau["measure"].map(BASELINE_LABELS))[
                ["measure", "tau", "pvalue", "n"]
            ],
        ],
        ignore_index=True,
    )
    return {
        "measures": measures,
        "base_tau": base_tau,
        "bt": bt,
        "fixed_all": fix_all,
        "bars": bars,
        "summary": summary,
    }


def scatter_panels(
    profiles: pd.DataFrame,
    baselines: pd.DataFrame,
    best: pd.DataFrame,
    order: Sequence[str],
    measures: Sequence[str],
) -> list[tuple[str, np.ndarray, np.ndarray, None]]:
    """Panels of the Figs. 2 / 8–13 layout: blocks with a defined best α, then the baselines."""
    panels = []
    for b in order:
        a = best.loc[b, "alpha"]
        if not np.isfinite(a):
            continue
        s = (
            profiles[(profiles["block"] == b) & (profiles["alpha"] == a)]
            .set_index("run")
            .reindex(baselines["run"])
        )
        name = "all layers" if b == "all" else b
        panels.append(
            (f"{name}\n(α={a:g})", s["sharpness"].to_numpy(), baselines["gap"].to_numpy(), None)
        )
    for m in measures:
        panels.append(
            (BASELINE_LABELS[m], baselines[m].to_numpy(), baselines["gap"].to_numpy(), None)
        )
    return panels


def held_out_choice(
    profiles: pd.DataFrame, order: Sequence[str], n_splits: int, n_used: int
) -> pd.DataFrame:
    """τ at the α chosen on one half and on the other half, per block (NaN below 4 models).

    Returns:
        Index ``block`` (``order``); ``in_sample, held_out, held_out_sd,
        alpha_mode, alpha_distinct, inflation``.
    """
    if n_used >= 4:
        splits = split_selection(profiles, n_splits=n_splits, seed=0, by=["task", "block"])
    else:  # split_selection needs at least 4 models
        splits = pd.DataFrame(columns=["block", "alpha", "tau_select", "tau_heldout"])
    agg = (
        splits.groupby("block")
        .agg(
            in_sample=("tau_select", "mean"),
            held_out=("tau_heldout", "mean"),
            held_out_sd=("tau_heldout", "std"),
            alpha_mode=("alpha", lambda s: s.mode().iloc[0]),
            alpha_distinct=("alpha", "nunique"),
        )
        .reindex(list(order))
        .astype(float)
    )
    agg["inflation"] = agg["in_sample"] - agg["held_out"]
    return agg


def spectra(
    quadratures: pd.DataFrame | None,
    baselines: pd.DataFrame,
    blocks: Sequence[str],
    sweep: pd.DataFrame,
    task: str,
    paper: pd.Series,
) -> dict[str, Any] | None:
    """Spectral types of every measured (model, layer) and the Fig. 1d match, from the exported nodes.

    Args:
        quadratures: ``quadratures.csv`` (``None``: not exported).
        baselines: The analysed models.
        blocks: The measured layers.
        sweep: :func:`alpha_table`'s sweep.
        task: Task name.
        paper: The paper's Fig. 1d counts (``cases``, ``matches``).

    Returns:
        ``None`` without quadratures; else ``panels`` (the smallest, median and
        largest gap × the first, a middle and the last layer and "all", as
        :class:`~renyilib.experiments.spectrum_study.SpectrumPanel`), ``types``
        (per block the count of each type, the best α and its side) and
        ``numbers`` (``c_n_cases``, ``c_n_match``, ``c_match_rate``,
        ``c_majority_rate``, ``c_paper_rate``).
    """
    from renyilib.experiments.spectrum_study import SpectrumPanel
    from renyilib.experiments.zoo_measure import quadratures_from_table

    if quadratures is None:
        return None
    quads = quadratures_from_table(quadratures)
    quads = {k: q for k, q in quads.items() if k[0] in set(baselines["run"])}
    types = spectral_types(quads).assign(task=task)
    by_gap = baselines.sort_values("gap")["run"].tolist()
    picks = list(dict.fromkeys([by_gap[0], by_gap[len(by_gap) // 2], by_gap[-1]]))
    show = list(dict.fromkeys([blocks[0], blocks[len(blocks) // 2], blocks[-1], "all"]))
    gap_of = baselines.set_index("run")["gap"]
    typed = types.set_index(["run", "block"])
    panels = []
    for r in picks:
        for b in show:
            if (r, b) in quads:
                t = typed.loc[(r, b)]
                name = "all layers" if b == "all" else b
                panels.append(
                    SpectrumPanel(
                        r,
                        float(gap_of[r]),
                        name,
                        quads[(r, b)],
                        None,
                        t["type"],
                        int(t["clusters"]),
                    )
                )
    best_flat = best_alpha(sweep, by=["task", "block"])
    match = type_match_table(types[types["block"] != "all"], best_flat, by=["task", "block"])
    n_cases, n_match = len(match), int(match["match"].sum())
    majority = match["best_side"].value_counts().max() / n_cases if n_cases else np.nan
    numbers = {
        "c_n_cases": n_cases,
        "c_n_match": n_match,
        "c_match_rate": f"{n_match / n_cases:.2f}" if n_cases else "n/a",
        "c_majority_rate": f"{majority:.2f}" if n_cases else "n/a",
        "c_paper_rate": f"{paper['matches'] / paper['cases']:.2f}",
    }
    table = (
        types[types["block"] != "all"]
        .groupby("block", sort=False)["type"]
        .value_counts()
        .unstack(fill_value=0)
        .join(best_flat.set_index("block")[["alpha", "side"]].rename(columns={"alpha": "best α"}))
    )
    return {"panels": panels, "types": table, "numbers": numbers}


def fig11_beside(
    ref: pd.DataFrame, layer_names: Sequence[str], best: pd.DataFrame, bt: pd.Series
) -> pd.DataFrame:
    """The paper's Fig. 11 τ beside ours, the paper's "layer k" matched to our k-th layer.

    Args:
        ref: ``book/reference/paper_correlation_tau.csv``.
        layer_names: Our architecture's weight tensors in forward order.
        best: :func:`alpha_table`'s ``best``.
        bt: Our τ per baseline key.

    Returns:
        ``panel``, ``paper τ``, ``our block`` and ``ours (τ at best α)`` as text:
        ``"not measured"`` for a layer we did not measure, ``"—"`` where we have
        no counterpart (the paper's illegible baselines).
    """
    ours = {
        "all layers": float(best.loc["all", "tau"]),
        "parameter norm": float(bt.get("param_norm", np.nan)),
    }
    measured = set(best.index)
    rows = []
    for _, r in ref.iterrows():
        panel = r["panel"]
        block, value = "", "—"
        if panel.startswith("layer "):
            k = int(panel.split()[1])
            block = layer_names[k - 1] if 0 < k <= len(layer_names) else ""
            if block in measured:
                value = f"{float(best.loc[block, 'tau']):.3f}"
            elif block:
                value = "not measured"
        elif panel in ours and np.isfinite(ours[panel]):
            value = f"{ours[panel]:.3f}"
        rows.append(
            {
                "panel": panel,
                "paper τ": f"{r['tau']:.3f}",
                "our block": block,
                "ours (τ at best α)": value,
            }
        )
    return pd.DataFrame(rows)


def _f3(v: float) -> str:
    return f"{round(v, 3) + 0.0:.3f}" if np.isfinite(v) else "n/a"


def verdict_sentences(
    best: pd.DataFrame,
    bt: pd.Series,
    agg: pd.DataFrame,
    fix_all: pd.Series,
    tau_sd: float,
    n_used: int,
) -> tuple[list[str], dict[str, Any]]:
    """The chapter's plain statements, each computed from the numbers it states.

    Returns:
        ``(sentences, numbers)`` with ``tau_all_best``, ``alpha_all_best``,
        ``best_baseline``, ``tau_best_baseline`` and ``tau_diff``.
    """
    held = []
    tau_all = float(best.loc["all", "tau"])
    alpha_all = float(best.loc["all", "alpha"])
    has_base = bool(bt.notna().any())
    best_base = bt.idxmax() if has_base else None
    tau_bb = float(bt.max()) if has_base else np.nan
    diff = tau_all - tau_bb
    if np.isfinite(diff):
        held.append(
            f"Rényi sharpness of all layers at its best α (α = {alpha_all:g}, τ = {_f3(tau_all)}) "
            + (
                "ranks the models exactly as well as"
                if abs(diff) < TIE
                else "ranks the models better than"
                if diff > 0
                else "does not rank the models better than"
            )
            + f" the best baseline ({BASELINE_LABELS[best_base]}, τ = {_f3(tau_bb)}): a difference of "
            f"{diff:+.3f}, {abs(diff) / tau_sd:.1f} times τ's sampling sd of about {tau_sd:.2f} for "
            f"{n_used} models"
            + (
                ", so not distinguishable from sampling noise at this size."
                if abs(diff) < tau_sd
                else "."
            )
        )
    else:
        held.append(
            f"All-layer Rényi τ ({_f3(tau_all)}) and the best baseline τ ({_f3(tau_bb)}) could not "
            f"both be computed on these {n_used} models, so they are not compared."
        )
    if has_base:
        strongest = bt.abs().idxmax()
        held.append(
            f"The baseline with the largest |τ| is {BASELINE_LABELS[strongest]} "
            f"(τ = {_f3(float(bt[strongest]))})."
        )
    ho_all, ho_sd = float(agg.loc["all", "held_out"]), float(agg.loc["all", "held_out_sd"])
    if np.isfinite(ho_all) and np.isfinite(tau_bb):
        held.append(
            f"With α chosen on the other half of the models, all-layer τ is {_f3(ho_all)} ± "
            f"{_f3(ho_sd)} (in-sample {_f3(float(agg.loc['all', 'in_sample']))}): "
            + ("above" if ho_all > tau_bb + TIE else "not above")
            + " the best baseline's full-sample τ."
        )
    else:
        held.append(f"Held-out all-layer τ: {_f3(ho_all)} (not compared).")
    lay = best.drop(index="all")["tau"].dropna()
    lay_ho = agg.drop(index="all")["held_out"].dropna()
    if len(lay):
        held.append(
            f"Per layer, τ at the layer's best α ranges from {_f3(float(lay.min()))} to "
            f"{_f3(float(lay.max()))} ({int((lay > 0).sum())} of {len(lay)} layers positive)"
            + (
                f"; held out, from {_f3(float(lay_ho.min()))} to {_f3(float(lay_ho.max()))}, and "
                f"{int((lay_ho > tau_bb + TIE).sum())} of {len(lay_ho)} layers stay above the best "
                "baseline."
                if len(lay_ho) and np.isfinite(tau_bb)
                else "."
            )
        )
    held.append(
        f"At fixed α, where nothing is chosen: all-layer τ = {_f3(float(fix_all.get(0.5, np.nan)))} "
        f"at α = 0.5 and {_f3(float(fix_all.get(1.5, np.nan)))} at α = 1.5."
    )
    numbers = {
        "verdict": " ".join(held),
        "tau_all_best": tau_all,
        "alpha_all_best": alpha_all,
        "best_baseline": BASELINE_LABELS[best_base] if has_base else "n/a",
        "tau_best_baseline": tau_bb,
        "tau_diff": diff,
    }
    return held, numbers


@dataclass
class CifarStudy:
    """Everything the CIFAR-10 chapter shows (see the step functions for each field)."""

    folder: Path
    tables: dict[str, Any]
    description: dict[str, Any]
    summary: pd.DataFrame
    analysed: dict[str, Any]
    alpha: dict[str, Any]
    baselines: dict[str, Any]
    panels: list
    held_out: pd.DataFrame
    spectra: dict[str, Any] | None
    fig11: pd.DataFrame
    verdict: list[str]
    numbers: dict[str, Any] = field(default_factory=dict)
    confounds: pd.DataFrame = field(default_factory=pd.DataFrame)


def cifar_study(
    profile: str, *, results: str | os.PathLike | None = None, root: str | os.PathLike | None = None
) -> CifarStudy:
    """The whole CIFAR-10 chapter for one ``cifar`` profile, from the exported tables only.

    Args:
        profile: Profile of the ``cifar`` section (``task, zoo_profile, results, n_splits``).
        results: Folder of the tables (default: ``<root>/<results>`` of the profile).
        root: Project root (default: the folder of ``_config.yml``).

    Returns:
        A :class:`CifarStudy`.

    Raises:
        MissingInputError: A table is missing; the message gives both commands.
    """
    from renyilib.experiments.config import find_config, load_profile
    from renyilib.experiments.correlation_study import confound_table

    cfg = load_profile("cifar", profile)
    root = Path(root) if root is not None else find_config().parent
    folder = Path(results).expanduser() if results else root / cfg["results"]
    tables = load_tables(folder, cfg["task"], cfg["zoo_profile"], cfg["results"])
    desc = zoo_description(tables, cfg["task"])
    summary, conv_numbers = zoo_summary(tables["runs"])
    an = analysed_models(tables["profiles"], tables["baselines"])
    prof, base = an["profiles"], an["baselines"]
    order = desc["order"]
    alpha = alpha_table(prof, order)
    comp = baseline_comparison(base, alpha["best"], alpha["sweep"])
    agg = held_out_choice(prof, order, int(cfg["n_splits"]), an["n_used"])
    paper_1d = pd.read_csv(root / "book" / "reference" / "paper_fig1d.csv", comment="#").iloc[0]
    spec = spectra(
        tables["quadratures"],
        base,
        desc["blocks"],
        alpha["sweep"],
        tables["meta"]["task"],
        paper_1d,
    )
    ref = pd.read_csv(root / "book" / "reference" / "paper_correlation_tau.csv", comment="#")
    verdict, verdict_numbers = verdict_sentences(
        alpha["best"], comp["bt"], agg, comp["fixed_all"], an["tau_sd"], an["n_used"]
    )
    try:
        shown = folder.resolve().relative_to(root.resolve())
    except ValueError:
        shown = folder
    numbers: dict[str, Any] = {
        "results_dir": str(shown),
        **desc["numbers"],
        **conv_numbers,
        "min_converged": MIN_CONVERGED,
        "model_set": an["model_set"],
        "n_used": an["n_used"],
        "tau_sd": an["tau_sd"],
        "best_in_range": alpha["best_in_range"],
        "n_splits": int(cfg["n_splits"]),
        "insample_all": float(agg.loc["all", "in_sample"]),
        "heldout_all": float(agg.loc["all", "held_out"]),
        "heldout_all_sd": float(agg.loc["all", "held_out_sd"]),
        "inflation_mean": float(agg["inflation"].mean()),
        **(
            spec["numbers"]
            if spec is not None
            else {
                k: "n/a"
                for k in (
                    "c_n_cases",
                    "c_n_match",
                    "c_match_rate",
                    "c_majority_rate",
                    "c_paper_rate",
                )
            }
        ),
        **verdict_numbers,
    }
    return CifarStudy(
        folder=folder,
        tables=tables,
        description=desc,
        summary=summary,
        analysed=an,
        alpha=alpha,
        baselines=comp,
        panels=scatter_panels(prof, base, alpha["best"], order, comp["measures"]),
        held_out=agg,
        spectra=spec,
        fig11=fig11_beside(ref, desc["layer_names"], alpha["best"], comp["bt"]),
        verdict=verdict,
        numbers=numbers,
        confounds=confound_table(
            prof,
            base,
            float(alpha["best"].loc["all", "alpha"]),
            (float(agg.loc["all", "held_out"]), float(agg.loc["all", "held_out_sd"])),
        ),
    )
