"""The correlation chapter's computation: Rényi sharpness and baselines against the gap.

Sec. 5 of the paper (Figs. 2–3, 8–14, 1d): over a zoo of models of one task,
Kendall's τ (Eq. 8) between −H_α (per layer, all layers, every α of App. G.4)
or a baseline sharpness measure and the generalization gap. This module reads
or measures a zoo (:mod:`renyilib.experiments.zoo_measure`), and turns the
long tables into what the chapter shows; :func:`correlation_study` runs it all
and returns a :class:`CorrelationStudy` of DataFrames and the numbers the text
quotes. The statistics themselves are :mod:`renyilib.statistics`.

The chapter never trains: a zoo that is not trained yet raises
:class:`~renyilib.experiments.prerequisites.MissingInputError` naming
``renyilib zoo run --task <task> --profile <zoo profile>``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

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
    "BASELINES",
    "BASELINE_LABELS",
    "CorrelationStudy",
    "alpha_tables",
    "analysis_set",
    "baseline_taus",
    "correlation_study",
    "cost_summary",
    "grid_panels",
    "headline",
    "load_measurements",
    "paper_fig11_beside",
    "confound_table",
    "selection_inflation",
    "task_summary",
    "type_match_summary",
    "verdict_sentences",
]

#: The baselines of Figs. 2–3 in the order of the panels.
BASELINES = (
    "trace",
    "lambda_max",
    "fisher_rao",
    "pacbayes_flat",
    "pacbayes_orig",
    "param_norm",
    "sam",
    "asam",
    "min_sharpness",
)

#: Their names in figures and tables.
BASELINE_LABELS = {
    "trace": "trace",
    "lambda_max": "λ_max",
    "fisher_rao": "Fisher–Rao norm",
    "pacbayes_flat": "PAC-Bayes flat",
    "pacbayes_orig": "PAC-Bayes orig",
    "param_norm": "parameter norm",
    "sam": "SAM sharpness",
    "asam": "ASAM sharpness",
    "min_sharpness": "minimum sharpness",
}


def load_measurements(
    task: str,
    profile: str,
    *,
    out: str | os.PathLike,
    results: str | os.PathLike,
    committed: bool | None = None,
    export: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """The Rényi profiles and baselines of ``task``'s zoo, measured (cached) or committed.

    Args:
        task: Task name.
        profile: Profile of the ``correlation`` section (its ``zoo_profile``,
            ``renyi`` and ``baselines`` settings, per task via ``task_settings``).
        out: The zoo folder (``<out>/<task>/<run-hash>/``).
        results: The committed-results folder (``<results>/<task>/profiles.csv``, ...).
        committed: ``True``: read ``<results>/<task>/`` and never measure;
            ``False``: measure the zoo; ``None``: the committed tables when they
            exist, were measured in ``profile`` (``measure_config.json``) and no
            zoo folder of the task exists, else measure.
        export: After measuring, write the tables to ``<results>/<task>/``
            (:func:`~renyilib.experiments.zoo_measure.export_measurements`).
        progress: tqdm over runs while measuring.

    Returns:
        The dict of :func:`~renyilib.experiments.zoo_measure.measure_zoo`
        (``profiles``, ``baselines``, ``quadratures``, ``cost``, ``failed``, …)
        plus ``source``: ``"measured here"`` or ``"committed CSV"``.

    Raises:
        MissingInputError: The zoo is not (fully) trained, or the committed
            tables are missing; the message gives the command that makes them.
    """
    from renyilib.experiments.config import load_profile
    from renyilib.experiments.prerequisites import require_files, require_zoo
    from renyilib.experiments.zoo_measure import (
        export_measurements,
        measure_settings,
        measure_zoo,
    )

    cfg = load_profile("correlation", profile)
    folder = Path(results) / task
    if committed is None:
        committed = (
            (folder / "profiles.csv").is_file()
            and not (Path(out) / task).is_dir()
            and _recorded_profile(folder) == profile
        )
    if committed:
        require_files(
            folder,
            ["profiles.csv", "baselines.csv"],
            what=f"the committed measurements of the {task} zoo",
            command=f"renyilib zoo measure --task {task} --profile {cfg['zoo_profile']} "
            f"--export {folder}",
        )
        return {
            "profiles": pd.read_csv(folder / "profiles.csv"),
            "baselines": pd.read_csv(folder / "baselines.csv"),
            "quadratures": {},
            "cost": pd.DataFrame(),
            "source": "committed CSV",
        }
    configs = require_zoo(task, cfg["zoo_profile"], out)
    st = measure_settings(profile, task)
    res = measure_zoo(out, task, st["renyi"], st["baselines"], progress=progress, configs=configs)
    res["source"] = "measured here"
    if export:
        export_measurements(
            res,
            folder,
            meta={"profile": profile, **{k: st[k] for k in ("renyi", "baselines")}},
        )
    return res


def _recorded_profile(folder: Path) -> str | None:
    """The profile recorded in ``<folder>/measure_config.json`` (``None`` if absent)."""
    import json

    path = folder / "measure_config.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("profile")


def analysis_set(
    res: dict[str, Any], only_converged: bool = True, min_models: int = 6
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The models analysed: the converged ones when asked and at least ``min_models`` converged.

    Args:
        res: Output of :func:`load_measurements`.
        only_converged: Keep only runs whose ``converged`` flag is set.
        min_models: Below this many converged runs, keep all runs.

    Returns:
        ``(profiles, baselines, label)`` with ``label`` naming the set.
    """
    p, b = res["profiles"], res["baselines"]
    if not only_converged or "converged" not in b:
        return p, b, "all models"
    keep = set(b.loc[b["converged"].astype(bool), "run"])
    if len(keep) < min_models:
        return p, b, f"all models (only {len(keep)} converged)"
    return p[p["run"].isin(keep)], b[b["run"].isin(keep)], "converged models only"


def alpha_tables(profiles: pd.DataFrame) -> dict[str, Any]:
    """τ against α per block, the best α per block and τ at the paper's α = 0.5 and 1.5.

    Returns:
        ``sweep`` (:func:`~renyilib.statistics.alpha_sweep`), ``best``
        (:func:`~renyilib.statistics.best_alpha`), ``order`` (the layers, then
        ``"all"``) and ``table``: per block the best α, its τ, p-value and n,
        and τ at α = 0.5 and α = 1.5.
    """
    sweep = alpha_sweep(profiles, by=["task", "block"])
    best = best_alpha(sweep, by=["task", "block"])
    fixed = sweep[sweep["alpha"].isin([0.5, 1.5])].pivot_table(
        index="block", columns="alpha", values="tau"
    )
    fixed.columns = [f"τ at α={a}" for a in fixed.columns]
    table = (
        best.set_index("block")[["alpha", "tau", "pvalue", "n"]]
        .rename(columns={"alpha": "best α", "tau": "τ at best α"})
        .join(fixed)
    )
    layers = [b for b in profiles["block"].unique() if b != "all"]
    order = [*layers, "all"]
    return {"sweep": sweep, "best": best, "order": order, "table": table.reindex(order)}


def baseline_taus(baselines: pd.DataFrame) -> pd.DataFrame:
    """Kendall τ of each baseline present in ``baselines`` with the gap (one row per measure)."""
    return correlation_table(baselines, [m for m in BASELINES if m in baselines], by=["task"])


def grid_panels(
    profiles: pd.DataFrame, baselines: pd.DataFrame, best: pd.DataFrame, order: Sequence[str]
) -> list[tuple[str, np.ndarray, np.ndarray, None]]:
    """The panels of the Fig. 2 grid: each block at its best α, then every baseline.

    Returns:
        ``(title, values, gaps, None)`` per panel, the models in ``baselines``' order
        (the input of :func:`renyilib.plots.scatter_grid`).
    """
    panels = []
    by_block = best.set_index("block")
    for b in order:
        a = float(by_block.loc[b, "alpha"])
        s = (
            profiles[(profiles["block"] == b) & (profiles["alpha"] == a)]
            .set_index("run")
            .reindex(baselines["run"])
        )
        title = f"{'all layers' if b == 'all' else b}\n(α={a:g})"
        panels.append((title, s["sharpness"].to_numpy(), baselines["gap"].to_numpy(), None))
    for m in BASELINES:
        if m in baselines:
            panels.append(
                (BASELINE_LABELS[m], baselines[m].to_numpy(), baselines["gap"].to_numpy(), None)
            )
    return panels


def headline(profiles: pd.DataFrame, baselines: pd.DataFrame) -> pd.Series:
    """Models, all-layer τ at the best α, the mean of the layers' best τ, and each baseline's τ."""
    sw = alpha_sweep(profiles, by=["task", "block"])
    bs = best_alpha(sw, by=["task", "block"]).set_index("block")
    row: dict[str, Any] = {
        "models": int(baselines["run"].nunique()),
        "Rényi all layers (best α)": bs.loc["all", "tau"],
        "Rényi layers (mean of best α)": bs.drop(index="all")["tau"].mean(),
    }
    tt = baseline_taus(baselines).set_index("measure")["tau"]
    row.update({BASELINE_LABELS[k]: v for k, v in tt.items()})
    return pd.Series(row)


def selection_inflation(
    profiles: pd.DataFrame, order: Sequence[str], n_splits: int, seed: int = 0
) -> pd.DataFrame:
    """Per block: τ at the α chosen on one half (in-sample) and on the other half (held-out).

    Args:
        profiles: Rényi profiles (one row per run, block, α).
        order: Blocks in display order.
        n_splits: Random half/half splits (:func:`~renyilib.statistics.split_selection`).
        seed: Seed of the splits.

    Returns:
        Index ``block``; ``in_sample``, ``held_out``, ``held_out_sd``,
        ``alpha_mode``, ``alpha_distinct``, ``inflation`` = in-sample − held-out.
    """
    splits = split_selection(profiles, n_splits=n_splits, seed=seed, by=["task", "block"])
    agg = splits.groupby("block").agg(
        in_sample=("tau_select", "mean"),
        held_out=("tau_heldout", "mean"),
        held_out_sd=("tau_heldout", "std"),
        alpha_mode=("alpha", lambda s: s.mode().iloc[0]),
        alpha_distinct=("alpha", "nunique"),
    )
    agg["inflation"] = agg["in_sample"] - agg["held_out"]
    return agg.reindex(list(order))


def task_summary(
    all_res: dict[str, dict[str, Any]], only_converged: bool = True
) -> dict[str, pd.DataFrame]:
    """Fig. 14 (mean τ over layers against α) and Fig. 3 (signed τ per measure) over tasks.

    Args:
        all_res: Task → output of :func:`load_measurements`.
        only_converged: As in :func:`analysis_set`.

    Returns:
        ``fig14`` (task × α), ``fig3`` (task × measure), ``sources`` (task →
        where the numbers come from) and ``sides``: per task the best α below
        and above 1 of the layer-mean curve (within the paper's range) and τ at
        0.5 and 1.5.
    """
    mean_rows, fig3_rows, sources = [], [], {}
    for t, r in all_res.items():
        sources[t] = r["source"]
        r_prof, r_base, _ = analysis_set(r, only_converged)
        sw = alpha_sweep(r_prof, by=["task", "block"])
        lay = sw[sw["block"] != "all"]
        mean_rows.append(lay.groupby("alpha")["tau"].mean().rename(t))
        bst = best_alpha(sw, by=["task", "block"]).set_index("block")
        row = {
            "Rényi all layers (best α)": bst.loc["all", "tau"],
            "Rényi layers (mean of best α)": bst.drop(index="all")["tau"].mean(),
            "Rényi all layers α=0.5": sw[(sw.block == "all") & (sw.alpha == 0.5)]["tau"].mean(),
            "Rényi all layers α=1.5": sw[(sw.block == "all") & (sw.alpha == 1.5)]["tau"].mean(),
        }
        bt_t = baseline_taus(r_base).set_index("measure")["tau"]
        row.update({BASELINE_LABELS[k]: v for k, v in bt_t.items()})
        fig3_rows.append(pd.Series(row, name=t))
    fig14 = pd.DataFrame(mean_rows)
    sides = []
    for t, row in fig14.iterrows():
        ok = row[in_paper_range(row.index.to_numpy(float))]
        sides.append(
            {
                "task": t,
                "best α < 1": ok[ok.index < 1].idxmax(),
                "best α > 1": ok[ok.index > 1].idxmax(),
                "τ at 0.5": row.get(0.5, np.nan),
                "τ at 1.5": row.get(1.5, np.nan),
            }
        )
    return {
        "fig14": fig14,
        "fig3": pd.DataFrame(fig3_rows),
        "sources": pd.Series(sources, name="source").to_frame(),
        "sides": pd.DataFrame(sides).set_index("task"),
    }


def type_match_summary(
    quadratures: dict[tuple[str, str], Any],
    runs: Sequence[str],
    task: str,
    best: pd.DataFrame,
    sweep: pd.DataFrame,
    paper: pd.Series,
) -> dict[str, Any]:
    """Fig. 1d: does each (model, layer)'s spectral type predict the side of the layer's best α?

    Args:
        quadratures: ``(run, block)`` → quadrature (from :func:`load_measurements`).
        runs: The analysed runs.
        task: Task name.
        best, sweep: From :func:`alpha_tables`.
        paper: The paper's counts (``cases``, ``matches``; ``book/reference/paper_fig1d.csv``).

    Returns:
        ``n_cases``, ``n_match``, ``match_rate``, ``paper_match_rate``,
        ``majority_rate`` (always predicting the most frequent winning side),
        ``n_tied_layers``, ``side_margin_mean``, ``margin`` (per layer the best
        τ below and above 1) and ``table`` (cases per layer and side, the paper's
        row last).
    """
    types = spectral_types(quadratures)
    if len(types):
        types = types[(types["block"] != "all") & types["run"].isin(set(runs))].assign(task=task)
    else:
        types = pd.DataFrame(columns=["run", "block", "type", "task"])
    match = type_match_table(types, best, by=["task", "block"])
    n_cases, n_match = len(match), int(match["match"].sum())
    tied = best[(best["block"] != "all") & (best["side"] == "both")]["block"].tolist()
    majority = match["best_side"].value_counts().max() / max(n_cases, 1)
    ok = sweep[in_paper_range(sweep["alpha"].to_numpy()) & (sweep["block"] != "all")]
    margin = ok.assign(side=np.where(ok["alpha"] < 1, "τ best α<1", "τ best α>1")).pivot_table(
        index="block", columns="side", values="tau", aggfunc="max"
    )
    margin["difference"] = margin["τ best α<1"] - margin["τ best α>1"]
    tab = match.groupby(["block", "best_side"]).agg(
        cases=("match", "size"),
        matches=("match", "sum"),
        multi_cluster=("type", lambda s: int((s == "multi-cluster").sum())),
    )
    paper_row = {
        "block": "paper (Fig. 1d)",
        "best_side": "",
        "cases": paper["cases"],
        "matches": paper["matches"],
        "multi_cluster": np.nan,
    }
    return {
        "n_cases": n_cases,
        "n_match": n_match,
        "match_rate": n_match / max(n_cases, 1),
        "paper_match_rate": float(paper["matches"] / paper["cases"]),
        "majority_rate": float(majority),
        "n_tied_layers": len(tied),
        "side_margin_mean": float(margin["difference"].abs().mean()),
        "margin": margin,
        "table": pd.concat([tab.reset_index(), pd.DataFrame([paper_row])], ignore_index=True),
    }


def cost_summary(cost: pd.DataFrame) -> dict[str, Any]:
    """Mean seconds and products per model, and the Rényi / baseline totals (NaN without a cost table)."""
    if not len(cost):
        nan = float("nan")
        return {
            "table": pd.DataFrame(),
            "renyi_seconds": nan,
            "renyi_matvecs": nan,
            "baseline_seconds": nan,
        }
    cols = [
        c
        for c in cost.columns
        if c.endswith("_seconds") or c.endswith("_matvecs") or c.endswith("_gradients")
    ]
    return {
        "table": cost[cols].mean().rename("mean per model").to_frame(),
        "renyi_seconds": float(cost["renyi_seconds"].mean()),
        "renyi_matvecs": int(cost["renyi_matvecs"].mean()),
        "baseline_seconds": float(
            sum(
                cost[c].mean() for c in cols if c.endswith("_seconds") and not c.startswith("renyi")
            )
        ),
    }


def paper_fig11_beside(
    ref: pd.DataFrame, *, task: str, layer_taus: Sequence[float], baseline_tau: pd.Series
) -> pd.DataFrame:
    """The paper's Fig. 11 τ (CIFAR-100 ResNet-18) beside ours, row by row.

    The paper's layers are ResNet-18's 17th–21st and its other baselines are
    illegible by name, so layers and the other baselines are compared as ranges.

    Args:
        ref: ``book/reference/paper_correlation_tau.csv`` (``panel``, ``tau``).
        task: Our task (the column name).
        layer_taus: Our layers' τ at their best α.
        baseline_tau: Our τ per baseline (index: keys of :data:`BASELINE_LABELS`),
            with ``"all"`` holding the all-layer τ at its best α.

    Returns:
        Rows: the per-layer range, all layers, the parameter norm, the other
        baselines' range; columns ``paper (Fig. 11, cifar100-resnet18)`` and
        ``ours (<task>)``, as text.
    """
    ref = ref.set_index("panel")["tau"]
    paper_layers = ref[[p for p in ref.index if p.startswith("layer ")]]
    paper_other = ref[[p for p in ref.index if p.startswith("baseline ")]]
    ours_other = baseline_tau.drop(index=["all", "param_norm"], errors="ignore")

    def span(v: Any) -> str:
        v = np.asarray(v, dtype=float)
        v = v[np.isfinite(v)]
        return f"{v.min():.3f} to {v.max():.3f}" if len(v) else "—"

    def one(v: Any) -> str:
        return f"{float(v):.3f}" if np.isfinite(v) else "—"

    rows = {
        "each layer at its best α (range)": (
            span(paper_layers) + f" ({len(paper_layers)} of its 21 layers)",
            span(layer_taus) + f" ({len(layer_taus)} layers)",
        ),
        "all layers at the best α": (
            one(ref.get("all layers", np.nan)),
            one(baseline_tau.get("all", np.nan)),
        ),
        "parameter norm": (
            one(ref.get("parameter norm", np.nan)),
            one(baseline_tau.get("param_norm", np.nan)),
        ),
        "the other baselines (range)": (
            span(paper_other) + f" ({len(paper_other)} measures)",
            span(ours_other) + f" ({len(ours_other)} measures)",
        ),
    }
    return pd.DataFrame.from_dict(
        rows, orient="index", columns=["paper (Fig. 11, cifar100-resnet18)", f"ours ({task})"]
    )


def verdict_sentences(
    *,
    all_layers_tau: float,
    baseline_tau: pd.Series,
    layer_best: pd.DataFrame,
    inflation: pd.DataFrame,
    fixed_all: pd.Series,
    match: dict[str, Any],
    n_models: int,
) -> list[str]:
    """The chapter's plain statements, each computed from the numbers it states.

    Args:
        all_layers_tau: τ of "all" at its best α.
        baseline_tau: τ per baseline measure (index: measure keys).
        layer_best: Best-α rows of the layer blocks (``tau``).
        inflation: Output of :func:`selection_inflation`.
        fixed_all: τ of "all" by α.
        match: Output of :func:`type_match_summary`.
        n_models: Models analysed.

    Returns:
        One sentence per claim.
    """
    best_baseline = baseline_tau.idxmax()
    top = float(baseline_tau.max())
    beats = all_layers_tau > top
    tau_sd = float(np.sqrt(2 * (2 * n_models + 5) / (9 * n_models * (n_models - 1))))
    held = [
        f"Rényi sharpness of all layers at its best α (τ = {all_layers_tau:.3f}) "
        + ("ranks the models better than" if beats else "does not rank the models better than")
        + f" the best baseline ({BASELINE_LABELS[best_baseline]}, τ = {top:.3f}); the difference, "
        f"{all_layers_tau - top:+.3f}, is to be read against τ's sampling sd of about "
        f"{tau_sd:.2f} for {n_models} models."
    ]
    lay_ho = inflation.drop(index="all")["held_out"]
    held.append(
        f"Per layer, Rényi sharpness at the layer's best α has τ from "
        f"{float(layer_best['tau'].min()):.3f} to {float(layer_best['tau'].max()):.3f}; with α "
        f"chosen on the other half, {float(lay_ho.min()):.3f} to {float(lay_ho.max()):.3f}; "
        f"{int((lay_ho > top).sum())} of {len(lay_ho)} layers stay above "
        "the best baseline out of sample."
    )
    beats_ho = float(inflation.loc["all", "held_out"]) > top
    held.append(
        f"With α chosen on held-out halves, all-layer τ is "
        f"{float(inflation.loc['all', 'held_out']):.3f}: "
        + ("still above" if beats_ho else "not above")
        + " the best baseline."
    )
    pos = (layer_best["tau"] > 0).mean()
    held.append(
        f"{pos:.0%} of the layers have a positive τ at their best α "
        "(the paper: all layers, τ ≈ 0.6–0.9)."
    )
    held.append(
        f"Fixed α: all-layer τ = {float(fixed_all.get(0.5, np.nan)):.3f} at α = 0.5 and "
        f"{float(fixed_all.get(1.5, np.nan)):.3f} at α = 1.5."
    )
    n_match, n_cases = match["n_match"], match["n_cases"]
    held.append(
        f"Spectral type → side of best α: {n_match}/{n_cases} matches "
        f"({n_match / max(n_cases, 1):.0%}; majority-side baseline {match['majority_rate']:.0%}; "
        f"paper {match['paper_match_rate']:.0%})."
    )
    return held


#: The hyper-parameter axes of a zoo grid (App. G.3.1), for the granulated τ.
GRID_AXES = ("optimizer", "lr", "batch_size", "weight_decay")


def confound_table(
    profiles: pd.DataFrame,
    baselines: pd.DataFrame,
    best_alpha_all: float,
    heldout_all: tuple[float, float] | None = None,
    *,
    gap_draws: np.ndarray | None = None,
    num_resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """τ that a confound cannot fake: overall, granulated, within each optimizer, against test error.

    One row per measure — Rényi sharpness of all parameters at the fixed orders
    α = 0.5 and 1.5 (chosen before looking at the models), at the best α
    (in-sample: chosen on these same models), and every baseline — with

    * ``tau``: τ-b against the gap with a bootstrap 95% interval over models
      (``low``, ``high``; :func:`renyilib.statistics.bootstrap_tau`) and
      ``tau_a`` (the paper's Eq. 8 as printed; equal to τ-b without ties);
    * ``tau_test_error``: τ-b against the test error 1 − test accuracy;
    * ``granulated``: Ψ of Jiang et al. (2019) over the grid's axes
      (:func:`renyilib.statistics.granulated_tau`): a measure that only tells
      the optimizers apart gets no credit within the other axes' groups;
    * ``tau_<optimizer>``: τ-b within the models of each optimizer.

    * ``gap_noise_sd`` (with ``gap_draws``, ``(B, N)`` draws of the gap in the
      row order of ``baselines``, :func:`renyilib.experiments.gap_noise.gap_draws`):
      the standard deviation of τ over a paired bootstrap of the test points,
      i.e. how far the test set's finite size alone moves τ.

    ``heldout_all`` (mean, sd of the held-out τ of "all" over random half
    splits, :func:`selection_inflation`) is put beside the in-sample row.

    Returns:
        One row per measure (``measure``, ``selection``, the columns above, ``n``).
    """
    from renyilib.statistics import (
        bootstrap_tau,
        granulated_tau,
        kendall_tau,
        kendall_tau_a,
        tau_under_target_noise,
    )

    if gap_draws is not None and np.asarray(gap_draws).shape[1:] != (len(baselines),):
        raise ValueError(
            f"gap_draws must have shape (B, {len(baselines)}), got {np.asarray(gap_draws).shape}"
        )

    base = baselines.copy()
    base["test_error"] = 1.0 - base["test_acc"].astype(float)
    all_block = profiles[profiles["block"] == "all"]
    columns: list[tuple[str, str, str]] = []
    for a, selection in ((0.5, "fixed"), (1.5, "fixed"), (best_alpha_all, "in-sample best")):
        sub = all_block[np.isclose(all_block["alpha"].astype(float), a)]
        if sub.empty:
            continue
        col = f"renyi_all_{a:g}_{selection}"
        base[col] = base["run"].map(sub.set_index("run")["sharpness"])
        columns.append((col, f"Rényi all (α={a:g})", selection))
    columns += [(m, BASELINE_LABELS[m], "—") for m in BASELINES if m in base]
    axes = [a for a in GRID_AXES if a in base and base[a].nunique() > 1]
    optimizers = sorted(base["optimizer"].dropna().unique()) if "optimizer" in base else []
    rows = []
    for col, label, selection in columns:
        x = base[col].to_numpy(float)
        bt = bootstrap_tau(x, base["gap"].to_numpy(float), num_resamples=num_resamples, seed=seed)
        row: dict[str, Any] = {
            "measure": label,
            "selection": selection,
            "tau": bt["tau"],
            "low": bt["low"],
            "high": bt["high"],
            "tau_a": kendall_tau_a(x, base["gap"].to_numpy(float)),
            "gap_noise_sd": (
                tau_under_target_noise(x, np.asarray(gap_draws))["std"]
                if gap_draws is not None
                else float("nan")
            ),
            "tau_test_error": kendall_tau(x, base["test_error"].to_numpy(float)).tau,
            "granulated": (
                float(granulated_tau(base, col, axes).set_index("axis").loc["granulated", "psi"])
                if axes
                else float("nan")
            ),
        }
        for opt in optimizers:
            m = (base["optimizer"] == opt).to_numpy()
            row[f"tau_{opt}"] = kendall_tau(x[m], base["gap"].to_numpy(float)[m]).tau
        row["n"] = bt["n"]
        rows.append(row)
    out = pd.DataFrame(rows)
    if heldout_all is not None and len(out):
        out.insert(3, "held_out", np.nan)
        out.insert(4, "held_out_sd", np.nan)
        ins = out["selection"] == "in-sample best"
        out.loc[ins, "held_out"] = heldout_all[0]
        out.loc[ins, "held_out_sd"] = heldout_all[1]
    return out


def _gap_noise(folder: Path, base: pd.DataFrame, num_draws: int) -> tuple[np.ndarray | None, dict]:
    """Paired test-point bootstrap of the analysed models' gaps (``None`` without the trained zoo)."""
    from renyilib.experiments.gap_noise import zoo_gap_draws

    paths = [folder / r for r in base["run"]]
    if not all((p / "weights.pt").is_file() for p in paths):
        return None, {"gap_noise": "not measured (the trained zoo is not on this machine)"}
    draws, _ = zoo_gap_draws(paths, num_draws=num_draws, seed=0)
    sd = draws.std(axis=0, ddof=1)
    spread = float(base["gap"].max() - base["gap"].min())
    return draws, {
        "gap_noise": (
            f"the bootstrap standard error of one model's gap is {np.median(sd):.4f} (median over "
            f"models; {num_draws} paired resamples of the test points), against a spread of "
            f"{spread:.4f} between the models' gaps"
        ),
        "gap_se_median": float(np.median(sd)),
        "gap_spread": spread,
    }


@dataclass
class CorrelationStudy:
    """Everything the correlation chapter shows, for one task and profile.

    Attributes:
        task, profile: What was run.
        res: :func:`load_measurements` of the task.
        profiles, baselines: The analysed models' tables (:func:`analysis_set`).
        model_set: Which models those are.
        alpha: :func:`alpha_tables` of the analysed profiles.
        baseline_tau: :func:`baseline_taus` of the analysed baselines.
        summary: τ of every block at its best α and of every baseline.
        inflation: :func:`selection_inflation`.
        tasks: :func:`task_summary` over the profile's ``summary_tasks``.
        match: :func:`type_match_summary`.
        cost: :func:`cost_summary`.
        robustness: :func:`headline` on all models and on the analysed set.
        fig11: :func:`paper_fig11_beside`.
        verdict: :func:`verdict_sentences`.
        confounds: :func:`confound_table`.
        numbers: The scalars the chapter's text quotes, by name.
    """

    task: str
    profile: str
    res: dict[str, Any]
    profiles: pd.DataFrame
    baselines: pd.DataFrame
    model_set: str
    alpha: dict[str, Any]
    baseline_tau: pd.DataFrame
    summary: pd.DataFrame
    inflation: pd.DataFrame
    tasks: dict[str, pd.DataFrame]
    match: dict[str, Any]
    cost: dict[str, Any]
    robustness: pd.DataFrame
    fig11: pd.DataFrame
    verdict: list[str]
    numbers: dict[str, Any] = field(default_factory=dict)
    confounds: pd.DataFrame = field(default_factory=pd.DataFrame)


def correlation_study(
    task: str | None,
    profile: str,
    *,
    root: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    results: str | os.PathLike | None = None,
    reference: str | os.PathLike | None = None,
) -> CorrelationStudy:
    """The whole correlation chapter for ``task`` (default: the profile's task).

    Args:
        task: Task name, or ``None`` for the profile's ``task``.
        profile: Profile of the ``correlation`` section of ``_config.yml``.
        root: Project root (default: the folder of ``_config.yml``).
        out: Zoo folder (default: ``<root>/<out of the zoo profile>``).
        results: Committed results (default: ``<root>/data/results``).
        reference: The paper's numbers (default: ``<root>/book/reference``).

    Returns:
        A :class:`CorrelationStudy`. Outside the ``smoke`` profile, a zoo measured
        here is exported to ``<results>/<task>/`` so that the summary can be
        rebuilt where the zoo is absent.

    Raises:
        MissingInputError: A zoo is not trained (or its committed tables are
            absent); the message gives the command that makes it.
    """
    from renyilib.experiments.config import find_config, load_profile

    cfg = load_profile("correlation", profile)
    task = task or cfg["task"]
    root = Path(root) if root is not None else find_config().parent
    out = Path(out) if out is not None else root / load_profile("zoo", cfg["zoo_profile"])["out"]
    results = Path(results) if results is not None else root / "data" / "results"
    reference = Path(reference) if reference is not None else root / "book" / "reference"
    only = cfg.get("only_converged", True)

    res = load_measurements(
        task, profile, out=out, results=results, export=profile != "smoke", progress=False
    )
    base_all = res["baselines"]
    n_runs = int(base_all["run"].nunique())
    n_conv = int(base_all["converged"].astype(bool).sum()) if "converged" in base_all else n_runs
    prof, base, model_set = analysis_set(res, only)
    alpha = alpha_tables(prof)
    sweep, best, order = alpha["sweep"], alpha["best"], alpha["order"]
    base_tau = baseline_taus(base)
    bt = base_tau.set_index("measure")["tau"]
    all_best = best.set_index("block").loc["all"]
    layer_best = best[best["block"] != "all"]
    fix_all = sweep[sweep["block"] == "all"].set_index("alpha")["tau"]
    summary = pd.concat(
        [
            best.assign(
                measure=lambda d: "Rényi "
                + d["block"]
                + " (best α="
                + d["alpha"].map("{:g}".format)
                + ")"
            )[["measure", "tau", "pvalue", "n"]],
            base_tau.assign(measure=base_tau["measure"].map(BASELINE_LABELS))[
                ["measure", "tau", "pvalue", "n"]
            ],
        ]
    ).reset_index(drop=True)
    agg = selection_inflation(prof, order, int(cfg["n_splits"]), seed=0)

    tasks = list(dict.fromkeys([task, *cfg["summary_tasks"]]))
    extra = []
    if (
        "cifar10-resnet18" not in tasks
        and (results / "cifar10-resnet18" / "profiles.csv").is_file()
    ):
        extra.append("cifar10-resnet18")
    all_res = {task: res}
    for t in tasks + extra:
        if t not in all_res:
            all_res[t] = load_measurements(
                t, profile, out=out, results=results, committed=True if t in extra else None
            )
    summ = task_summary(all_res, only)

    paper_1d = pd.read_csv(reference / "paper_fig1d.csv", comment="#").iloc[0]
    match = type_match_summary(res["quadratures"], list(base["run"]), task, best, sweep, paper_1d)
    cost = cost_summary(res["cost"])
    robustness = pd.DataFrame(
        {"all models": headline(res["profiles"], base_all), model_set: headline(prof, base)}
    )
    fig11 = paper_fig11_beside(
        pd.read_csv(reference / "paper_correlation_tau.csv", comment="#"),
        task=task,
        layer_taus=layer_best["tau"].to_numpy(),
        baseline_tau=pd.concat([bt, pd.Series({"all": float(all_best["tau"])})]),
    )
    n_used = int(base["run"].nunique())
    verdict = verdict_sentences(
        all_layers_tau=float(all_best["tau"]),
        baseline_tau=bt,
        layer_best=layer_best,
        inflation=agg,
        fixed_all=fix_all,
        match=match,
        n_models=n_used,
    )
    draws, gap_noise = _gap_noise(out / task, base, int(cfg.get("gap_draws", 1000)))
    confounds = confound_table(
        prof,
        base,
        float(all_best["alpha"]),
        (float(agg.loc["all", "held_out"]), float(agg.loc["all", "held_out_sd"])),
        gap_draws=draws,
    )
    best_baseline = bt.idxmax()
    numbers = {
        "n_runs": n_runs,
        "n_converged": n_conv,
        "model_set": model_set,
        "n_used": n_used,
        "gap_min": float(base["gap"].min()),
        "gap_max": float(base["gap"].max()),
        "n_layers": len(order) - 1,
        "tau_all_best": float(all_best["tau"]),
        "alpha_all_best": float(all_best["alpha"]),
        "tau_layers_best_mean": float(layer_best["tau"].mean()),
        "tau_layers_best_min": float(layer_best["tau"].min()),
        "tau_layers_best_max": float(layer_best["tau"].max()),
        "tau_all_05": float(fix_all.get(0.5, np.nan)),
        "tau_all_15": float(fix_all.get(1.5, np.nan)),
        "best_baseline": BASELINE_LABELS[best_baseline],
        "tau_best_baseline": float(bt.max()),
        "tau_trace": float(bt.get("trace", np.nan)),
        "tau_sam": float(bt.get("sam", np.nan)),
        "tau_param_norm": float(bt.get("param_norm", np.nan)),
        "n_splits": int(cfg["n_splits"]),
        "inflation_mean": float(agg["inflation"].mean()),
        "heldout_all": float(agg.loc["all", "held_out"]),
        "heldout_all_sd": float(agg.loc["all", "held_out_sd"]),
        "insample_all": float(agg.loc["all", "in_sample"]),
        **{
            k: match[k]
            for k in (
                "n_tied_layers",
                "n_cases",
                "n_match",
                "match_rate",
                "paper_match_rate",
                "majority_rate",
                "side_margin_mean",
            )
        },
        **gap_noise,
        "renyi_seconds": cost["renyi_seconds"],
        "renyi_matvecs": cost["renyi_matvecs"],
        "baseline_seconds": cost["baseline_seconds"],
        "verdict": " ".join(verdict),
    }
    return CorrelationStudy(
        task=task,
        profile=profile,
        res=res,
        profiles=prof,
        baselines=base,
        model_set=model_set,
        alpha=alpha,
        baseline_tau=base_tau,
        summary=summary,
        inflation=agg,
        tasks=summ,
        match=match,
        cost=cost,
        robustness=robustness,
        fig11=fig11,
        verdict=verdict,
        numbers=numbers,
        confounds=confounds,
    )
