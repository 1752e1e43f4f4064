"""The book's figures that draw the experiments' own tables (in the style of :mod:`renyilib.plots`).

Each function takes the DataFrames a study function returns and gives back a
:class:`matplotlib.figure.Figure` at most :data:`renyilib.plots.FIGURE_WIDTH`
wide, coloured by :func:`renyilib.plots.color` (one colour per optimizer and
per measure across the book).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from renyilib.plots import FIGURE_WIDTH, color, heatmap, log_axis, subplots

__all__ = [
    "appendix_f_figure",
    "bounds_figure",
    "constructions_figure",
    "sam_variants_figure",
    "scenario_curves_figure",
    "curves_and_gaps",
    "density_comparison",
    "entropy_against_alpha",
    "frontier_figure",
    "gap_histograms",
    "invariance_figure",
    "perturbation_norms",
    "quadratic_figure",
    "selection_bars",
    "sharpness_bars",
    "spectrum_grid",
    "sweep_figure",
    "tau_against_alpha",
    "tau_bars",
    "tau_heatmap",
    "training_curves",
    "tuning_figure",
    "zoo_curves",
]


def _check_columns(df: pd.DataFrame, columns: Sequence[str], arg: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{arg} must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{arg} lacks columns {missing}; it has {list(df.columns)}")


def tau_against_alpha(sweep: pd.DataFrame, order: Sequence[str]) -> plt.Figure:
    """Kendall τ with the gap against the Rényi order α, one line per block ("all" in black).

    Layers are coloured by depth (viridis, input to output).

    The band 0.9 < α < 1.2 that App. G.4 excludes from the choice of α is shaded.

    Args:
        sweep: ``block``, ``alpha``, ``tau`` (:func:`renyilib.statistics.alpha_sweep`).
        order: Blocks to draw, in legend order.

    Returns:
        The figure.

    Raises:
        TypeError, ValueError: ``sweep`` is not a DataFrame with those columns.
    """
    _check_columns(sweep, ["block", "alpha", "tau"], "sweep")
    fig, axes = subplots(1, 1, figsize=(FIGURE_WIDTH, 2.8))
    ax = axes[0, 0]
    layers = [b for b in order if b != "all"]
    depth = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, max(len(layers), 1)))
    for b in order:
        s = sweep[sweep["block"] == b]
        kw = (
            {"color": "black", "lw": 1.6}
            if b == "all"
            else {"color": depth[layers.index(b)], "lw": 1.0}
        )
        ax.plot(s["alpha"], s["tau"], marker=".", label=b, **kw)
    ax.axvspan(0.9, 1.2, color="0.9", label="excluded (G.4)")
    ax.axhline(0, color="0.5", lw=0.5)
    ax.set_xlabel("Rényi order α")
    ax.set_ylabel("Kendall τ with the gap")
    ax.legend(ncol=2 if len(order) < 12 else 3, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


def selection_bars(inflation: pd.DataFrame) -> plt.Figure:
    """τ at the α chosen on the same models (in-sample) beside τ at α chosen on the other half.

    Args:
        inflation: Index ``block``; ``in_sample``, ``held_out``, ``held_out_sd``
            (:func:`renyilib.experiments.correlation_study.selection_inflation`).

    Returns:
        The figure.

    Raises:
        TypeError, ValueError: ``inflation`` is not a DataFrame with those columns.
    """
    _check_columns(inflation, ["in_sample", "held_out", "held_out_sd"], "inflation")
    fig, axes = subplots(1, 1, figsize=(FIGURE_WIDTH, 2.8))
    ax = axes[0, 0]
    x = np.arange(len(inflation))
    ax.bar(
        x - 0.2,
        inflation["in_sample"],
        0.4,
        color="#999999",
        label="in-sample (α chosen on these models)",
    )
    ax.bar(
        x + 0.2,
        inflation["held_out"],
        0.4,
        yerr=inflation["held_out_sd"],
        color="#0072B2",
        label="held-out (α chosen on the other half)",
        capsize=2,
    )
    ax.set_xticks(x, [str(b) for b in inflation.index], rotation=30, ha="right")
    ax.set_ylabel("Kendall τ")
    ax.axhline(0, color="0.5", lw=0.5)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=2)
    return fig


def tau_heatmap(
    table: pd.DataFrame, *, cbar_label: str = "Kendall τ", annot: bool = True, rotate: bool = False
) -> plt.Figure:
    """A signed-τ heatmap (tasks × measures, Fig. 3; tasks × α, Fig. 14) in the column width.

    Args:
        table: Rows (tasks) × columns (measures or α) of τ.
        cbar_label: Colour-bar label.
        annot: Write the values in the cells.
        rotate: Slant the column labels (long measure names).

    Returns:
        The figure.

    Raises:
        TypeError: ``table`` is not a DataFrame.
    """
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a pandas DataFrame, got {type(table).__name__}")
    fig, axes = subplots(
        1, 1, figsize=(FIGURE_WIDTH, 0.9 + 0.35 * len(table) + (1.0 if rotate else 0))
    )
    ax = axes[0, 0]
    heatmap(ax, table, signed=True, cbar_label=cbar_label, annot=annot)
    if rotate:
        plt.setp(ax.get_xticklabels(), rotation=35, ha="right")
    return fig


def invariance_figure(inv: dict, alphas: Sequence[float]) -> plt.Figure:
    """Prop. 2.2 along log c (three panels; the bounds chapter's first figure).

    (a) H_α of the two rescaled weight blocks (solid; crosses: SLQ), of the
    second layer's weight+bias block and of all parameters (dashed) against
    log c; (b) their trace and λ_max against ∝ c^−2; (c) |H_α(c) − H_α(1)| of the
    first layer for ReLU, GELU and ReLU + BatchNorm.

    Args:
        inv: :func:`renyilib.experiments.bounds_study.invariance`.
        alphas: The profile's α (the first is used in panel b).

    Returns:
        The figure.

    Raises:
        KeyError: ``inv`` lacks ``curves``, ``slq``, ``layers``, ``w0`` or ``w1``.
    """
    relu, slq_df, layers = inv["curves"]["ReLU"], inv["slq"], inv["layers"]
    w0, w1, bias_block = inv["w0"], inv["w1"], layers["ReLU"][1]
    fig = plt.figure(figsize=(FIGURE_WIDTH, 6.8), layout="constrained")
    grid = fig.add_gridspec(2, 2)
    ax_a, ax_b, ax_c = (
        fig.add_subplot(grid[0, 0]),
        fig.add_subplot(grid[0, 1]),
        fig.add_subplot(grid[1, :]),
    )
    for (block, a), df in relu.groupby(["block", "alpha"]):
        if block == "all" or block in (w0, w1, bias_block):
            style = "-" if block in (w0, w1) else "--"
            ax_a.plot(
                df["log_c"], df["entropy"], style, marker="o", ms=3, label=f"{block}, α={a:g}"
            )
    for _, df in slq_df.groupby(["block", "alpha"]):
        ax_a.plot(df["log_c"], df["entropy"], "x", color="k", ms=5)
    ax_a.set(
        xlabel="log c", ylabel="H_α (exact; × = SLQ)", title="(a) H_α along the rescaling (ReLU)"
    )
    ax_a.legend(fontsize=6, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    for block, marker in ((w0, "o"), (w1, "s")):
        df = relu[(relu["block"] == block) & (relu["alpha"] == alphas[0])]
        ax_b.plot(df["log_c"], df["trace"], marker=marker, label=f"Tr H, {block}")
        ax_b.plot(df["log_c"], df["lambda_max"], marker=marker, ls=":", label=f"λ_max, {block}")
    ref = relu[(relu["block"] == w0) & (relu["alpha"] == alphas[0])]
    mid = ref["trace"].iloc[len(ref) // 2]
    ax_b.plot(ref["log_c"], mid * np.exp(-2 * ref["log_c"]), "k--", lw=0.8, label="∝ c⁻²")
    log_axis(ax_b, "y")
    ax_b.set(xlabel="log c", title="(b) trace and λ_max ∝ c^∓2 (ReLU)")
    ax_b.legend(fontsize=6, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    for label in ("ReLU", "GELU", "ReLU + BatchNorm"):
        df = inv["curves"][label]
        sub = df[df["block"] == f"{layers[label][0]}.weight"]
        for a, d in sub.groupby("alpha"):
            base = d[d["log_c"] == 0.0]["entropy"].iloc[0]
            dev = np.abs(d["entropy"] - base) + 1e-16
            ax_c.plot(d["log_c"], dev, marker="o", ms=3, label=f"{label}, α={a:g}")
    log_axis(ax_c, "y")
    ax_c.set(
        xlabel="log c", ylabel="|H_α(c) − H_α(1)|, first layer", title="(c) where invariance breaks"
    )
    ax_c.legend(fontsize=6, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    return fig


def appendix_f_figure(table: pd.DataFrame, alpha: float | None) -> plt.Figure:
    """App. F: off-block-diagonal share per model (a) and Prop. F.6's gap against its bound (b).

    Args:
        table: :func:`renyilib.experiments.bounds_study.appendix_f`'s ``table``.
        alpha: The α > 1 of panel (b) (``None``: panel b is left empty).

    Returns:
        The figure.

    Raises:
        TypeError, ValueError: ``table`` is not a DataFrame with the needed columns.
    """
    _check_columns(table, ["model", "share", "frobenius_share"], "table")
    fig, axes = subplots(1, 2, figsize=(FIGURE_WIDTH, 3.2))
    ax = axes[0, 0]
    x = np.arange(len(table))
    ax.bar(x - 0.2, table["share"], 0.4, label="‖E‖_F / Tr H")
    ax.bar(x + 0.2, table["frobenius_share"], 0.4, label="‖E‖_F / ‖H‖_F")
    ax.set_xticks(x, table["model"], rotation=30, ha="right", fontsize=6)
    ax.set(title="(a) off-block-diagonal share")
    ax.legend()
    ax = axes[0, 1]
    if alpha is not None:
        gap, bound = table[f"f6_gap_{alpha:g}"], table[f"f6_bound_{alpha:g}"]
        ax.scatter(gap, bound, s=14)
        lim = [min(gap.min(), 1e-6), max(bound.max(), 1)]
        ax.plot(lim, lim, "k--", lw=0.8, label="bound = gap")
        ax.axhline(1.0, color="#D55E00", lw=0.8, label="R_α ≤ 1")
        log_axis(ax, "x")
        log_axis(ax, "y")
        ax.set(
            xlabel=f"|R_α(|H|) − R_α(B)|, α={alpha:g}",
            ylabel="Prop. F.6 bound",
            title="(b) Prop. F.6: gap vs bound",
        )
        ax.legend()
    else:
        ax.axis("off")
    return fig


def bounds_figure(best: pd.DataFrame) -> plt.Figure:
    """Per model, the smallest Sec. 3 bound over its layers against the measured test loss.

    Args:
        best: ``model``, ``test_bounded`` and the columns of
            :data:`renyilib.experiments.bounds_study.BOUND_KINDS`.

    Returns:
        The figure.

    Raises:
        TypeError, ValueError: ``best`` is not a DataFrame with those columns.
    """
    kinds = ["jia_su", "renyi_c1", "ellipsoid", "renyi_d1"]
    _check_columns(best, ["test_bounded", *kinds], "best")
    fig, axes = subplots(1, 1, figsize=(FIGURE_WIDTH * 0.7, 3.6))
    ax = axes[0, 0]
    markers = dict(jia_su="o", renyi_c1="s", ellipsoid="^", renyi_d1="v")
    for k in kinds:
        ax.scatter(best["test_bounded"], best[k], marker=markers[k], color=color(k), label=k, s=16)
    hi = max(1.05, float(best[kinds].max().max()) * 1.05)
    ax.plot([0, hi], [0, hi], "k--", lw=0.8, label="bound = test loss")
    ax.axhline(1.0, color="#999999", lw=0.8, label="vacuous (loss ≤ 1)")
    ax.set(xlabel="measured test loss (1 − p_y)", ylabel="bound (best layer)", ylim=(0, hi))
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


def _panel_grid(n: int, ncols: int = 3, aspect: float = 0.75) -> tuple[plt.Figure, list[plt.Axes]]:
    """``n`` panels in rows of ``ncols`` within the column width; unused panels are hidden."""
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = subplots(nrows, ncols, aspect=aspect)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat[:n]


def density_comparison(exact: dict, quadratures: dict, *, points: int = 400) -> plt.Figure:
    """Exact spectral density (each eigenvalue smoothed by a Gaussian) beside SLQ's, per block.

    The kernel width is 1 % of the block's exact spectral range, on a grid 5 %
    wider than the range on each side.

    Args:
        exact: Block → exact eigenvalues.
        quadratures: Block → :class:`renyilib.lanczos.SpectralQuadrature`.
        points: Grid points.

    Returns:
        The figure.

    Raises:
        KeyError: A block of ``exact`` has no quadrature.
    """
    from renyilib.experiments.estimator_study import gaussian_density

    fig, axes = _panel_grid(len(exact))
    for ax, (b, lam) in zip(axes, exact.items()):
        span = lam.max() - lam.min()
        grid = np.linspace(lam.min() - 0.05 * span, lam.max() + 0.05 * span, points)
        sigma = 0.01 * span
        ax.plot(
            grid,
            gaussian_density(lam, grid, sigma),
            color=color("exact"),
            lw=1.4,
            label="exact (eigvalsh)",
        )
        ax.plot(
            grid,
            np.maximum(quadratures[b].density(grid, sigma), 1e-8),
            color=color("slq"),
            lw=1.1,
            ls="--",
            label="SLQ",
        )
        ax.set_ylim(1e-5, None)
        log_axis(ax, "y")
        ax.set_title(f"{b} (n={len(lam)})")
        ax.set_xlabel("eigenvalue")
    axes[0].set_ylabel("density")
    axes[0].legend()
    return fig


def entropy_against_alpha(errors: pd.DataFrame) -> plt.Figure:
    """Exact H_α (line) and SLQ's with ±2 jackknife standard errors, per block.

    Args:
        errors: ``block, alpha, exact, entropy, stderr``
            (:func:`renyilib.experiments.estimator_study.renyi_errors`).

    Returns:
        The figure.
    """
    _check_columns(errors, ["block", "alpha", "exact", "entropy", "stderr"], "errors")
    blocks = list(dict.fromkeys(errors["block"]))
    fig, axes = _panel_grid(len(blocks))
    for ax, b in zip(axes, blocks):
        d = errors[errors["block"] == b]
        ax.plot(d["alpha"], d["exact"], color=color("exact"), lw=1.4, label="exact")
        ax.errorbar(
            d["alpha"],
            d["entropy"],
            yerr=2 * d["stderr"],
            fmt="o",
            ms=2.5,
            color=color("slq"),
            elinewidth=0.8,
            label="SLQ ±2 s.e.",
        )
        ax.set_title(b)
        ax.set_xlabel("α")
    axes[0].set_ylabel("H_α")
    axes[0].legend()
    return fig


def sweep_figure(sweep: pd.DataFrame, alphas: Sequence[float] = (0.5, 1.5, 2.0)) -> plt.Figure:
    """RMS relative error of H_α against Lanczos steps m, one line per number of probes l.

    Rows: the swept blocks; columns: ``alphas``; the dotted line is 2 %.

    Args:
        sweep: ``block, steps, probes, alpha, rms_rel_error``
            (:func:`renyilib.experiments.estimator_study.probe_step_sweep`).
        alphas: Orders to show.

    Returns:
        The figure.
    """
    _check_columns(sweep, ["block", "steps", "probes", "alpha", "rms_rel_error"], "sweep")
    blocks = list(dict.fromkeys(sweep["block"]))
    fig, axes = subplots(len(blocks), len(alphas), aspect=0.7)
    for i, b in enumerate(blocks):
        for j, a in enumerate(alphas):
            ax = axes[i, j]
            for lp in sorted(sweep["probes"].unique()):
                s = sweep[(sweep["block"] == b) & (sweep["probes"] == lp) & (sweep["alpha"] == a)]
                ax.plot(s["steps"], 100 * s["rms_rel_error"], "o-", ms=3, label=f"l={lp}")
            ax.axhline(2, color="0.5", ls=":", lw=1)
            log_axis(ax, "x")
            log_axis(ax, "y")
            ax.set_title(f"{b}, α={a:g}")
            ax.set_xlabel("Lanczos steps m")
        axes[i, 0].set_ylabel("rms rel. error (%)")
    axes[0, 0].legend()
    return fig


#: Colours of the frontier's routes: renyilib and PyHessian in their book colours
#: (:func:`renyilib.plots.color`), curvlinops (density) and its Ritz variant in two of
#: their own (Tol's indigo and cyan, not used by any measure or optimizer).
FRONTIER_ROUTE_COLORS: dict[str, str] = {
    "renyilib": color("renyi"),
    "pyhessian": color("pyhessian"),
    "curvlinops": "#332288",
    "curvlinops-ritz": "#88CCEE",
}


def frontier_figure(table: pd.DataFrame, clock: str = "cpu") -> plt.Figure:
    """Time to accuracy per block: each configuration's error against its seconds, per route.

    Every route in the table is drawn, in the order of
    :data:`FRONTIER_ROUTE_COLORS` and in its colour there (any other route
    after them, in the next unused colour of the current colour cycle).
    Dots: configurations of the sweep; line: the best error reached so far;
    stars: the confirmation runs; dotted: 2 %.

    Args:
        table: ``benchmarks/results/frontier.csv`` (``route, block, seconds,
            error, time_source``).
        clock: What the seconds measure (for the label).

    Returns:
        The figure.
    """
    _check_columns(table, ["route", "block", "seconds", "error", "time_source"], "table")
    blocks = list(dict.fromkeys(table["block"]))
    present = list(dict.fromkeys(table["route"]))
    routes = [r for r in FRONTIER_ROUTE_COLORS if r in present]
    routes += [r for r in present if r not in FRONTIER_ROUTE_COLORS]
    spare = iter(c for c in plt.rcParams["axes.prop_cycle"].by_key()["color"]
                 if c not in FRONTIER_ROUTE_COLORS.values())  # fmt: skip
    colours = {r: FRONTIER_ROUTE_COLORS.get(r) or next(spare, "0.3") for r in routes}
    fig, axes = _panel_grid(len(blocks))
    for ax, b in zip(axes, blocks):
        for route in routes:
            c = colours[route]
            g = table[
                (table["block"] == b)
                & (table["route"] == route)
                & (table["time_source"] != "confirm")
            ]
            g = g.sort_values("seconds")
            ax.plot(
                g["seconds"],
                100 * np.maximum(g["error"], 1e-4),
                "o",
                ms=3,
                alpha=0.5,
                color=c,
                label=route,
            )
            env = np.minimum.accumulate(g["error"].to_numpy())
            ax.step(g["seconds"], 100 * np.maximum(env, 1e-4), where="post", color=c, lw=1.2)
            conf = table[
                (table["block"] == b)
                & (table["route"] == route)
                & (table["time_source"] == "confirm")
            ]
            ax.plot(
                conf["seconds"], 100 * np.maximum(conf["error"], 1e-4), "*", ms=9, color=c, mec="k"
            )
        ax.axhline(2, color="0.5", ls=":", lw=1)
        log_axis(ax, "x")
        log_axis(ax, "y")
        ax.set_title(b)
        ax.set_xlabel(f"seconds ({clock} time)")
    axes[0].set_ylabel("max rel. error over α (%)")
    axes[0].legend()
    return fig


def _method_label(method: str) -> str:
    from renyilib.experiments.table1 import METHOD_LABELS

    return METHOD_LABELS.get(method, method)


def training_curves(curves: dict[str, pd.DataFrame], methods: Sequence[str]) -> plt.Figure:
    """Mean over seeds of the test accuracy (a) and the training loss (b) per epoch, per method.

    Args:
        curves: ``"eval_acc"`` and ``"train_loss"`` →
            :func:`renyilib.experiments.rsam_study.epoch_curves`.
        methods: Methods to draw (each in its book colour).

    Returns:
        The figure.
    """
    fig, axes = subplots(1, 2, figsize=(FIGURE_WIDTH, 2.9))
    for ax, key, ylabel, tag in [
        (axes[0, 0], "eval_acc", "test accuracy", "(a)"),
        (axes[0, 1], "train_loss", "train loss", "(b)"),
    ]:
        _check_columns(curves[key], ["method", "epoch", key], f"curves[{key!r}]")
        c = curves[key].groupby(["method", "epoch"])[key].mean().reset_index()
        for method in methods:
            sub = c[c.method == method]
            ax.plot(sub.epoch, sub[key], label=_method_label(method), color=color(method))
        ax.set(xlabel="epoch", ylabel=ylabel, title=f"{tag} {ylabel}")
    log_axis(axes[0, 1], "y")
    fig.legend(
        *axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncol=len(methods)
    )
    return fig


def perturbation_norms(eps: pd.DataFrame, methods: Sequence[str]) -> plt.Figure:
    """Mean ‖ε‖₂ per epoch (``eps_mean > 0``), per method, on a log axis.

    Args:
        eps: ``method, epoch, eps_mean`` (means over seeds).
        methods: Methods to draw.

    Returns:
        The figure.
    """
    _check_columns(eps, ["method", "epoch", "eps_mean"], "eps")
    fig, axes = subplots(1, 1, figsize=(FIGURE_WIDTH * 0.7, 2.9))
    ax = axes[0, 0]
    for method in methods:
        sub = eps[(eps.method == method) & (eps.eps_mean > 0)]
        if len(sub):
            ax.plot(
                sub.epoch,
                sub.eps_mean,
                marker=".",
                label=_method_label(method),
                color=color(method),
            )
    log_axis(ax, "y")
    ax.set(xlabel="epoch", ylabel="mean ‖ε‖₂ in the epoch")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


def sharpness_bars(summary: pd.DataFrame, methods: Sequence[str]) -> plt.Figure:
    """Rényi sharpness −H_α of the trained weights (mean ± seed s.e.) per α, one bar per method.

    Args:
        summary: ``method, alpha, sharpness, sharpness_se``
            (:func:`renyilib.experiments.rsam_study.sharpness_summary`).
        methods: Methods, in bar order.

    Returns:
        The figure.
    """
    _check_columns(summary, ["method", "alpha", "sharpness", "sharpness_se"], "summary")
    alphas = sorted(summary["alpha"].unique())
    fig, axes = subplots(1, 1, figsize=(FIGURE_WIDTH * 0.7, 2.9))
    ax = axes[0, 0]
    width = 0.8 / len(methods)
    for i, method in enumerate(methods):
        sub = summary[summary.method == method].set_index("alpha").reindex(alphas)
        ax.bar(
            np.arange(len(alphas)) + i * width,
            sub.sharpness,
            width,
            yerr=sub.sharpness_se,
            label=_method_label(method),
            color=color(method),
        )
    ax.set_xticks(np.arange(len(alphas)) + 0.4 - width / 2, [f"α = {a:g}" for a in alphas])
    ax.set_ylabel("Rényi sharpness −H_α (SLQ)")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


def quadratic_figure(runs: dict) -> plt.Figure:
    """RSAM on the anisotropic quadratic: R_α(g) per step (a) and ‖ε‖₂ per step (b).

    Args:
        runs: label → ``(R_α per step, ‖ε‖₂ per step)``
            (:func:`renyilib.experiments.rsam_study.quadratic_runs`).

    Returns:
        The figure.
    """
    colours = {
        "SGD": color("sgd"),
        "RSAM (Eq. 11)": color("rsam"),
        "RSAM fixed radius": color("rsam-fixed"),
    }
    fig, axes = subplots(1, 2, figsize=(FIGURE_WIDTH, 2.8))
    for label, (vals, eps) in runs.items():
        c = colours.get(label)
        axes[0, 0].plot(vals, label=label, color=c)
        if label != "SGD":
            axes[0, 1].plot(eps, label=label, color=c)
    axes[0, 0].set(ylabel="R₂(g) = Σ p_j²", xlabel="step", title="(a) surrogate sharpness")
    log_axis(axes[0, 1], "y")
    axes[0, 1].set(ylabel="‖ε‖₂", xlabel="step", title="(b) perturbation size")
    axes[0, 0].legend()
    return fig


def tuning_figure(tuning: pd.DataFrame) -> plt.Figure:
    """Validation accuracy against ρ / (paper ρ) per method (circled: chosen), SGD dashed.

    Args:
        tuning: ``method, factor, acc, chosen`` (the ``tuning`` of
            :func:`renyilib.experiments.rsam_study.cifar_extra`).

    Returns:
        The figure.
    """
    _check_columns(tuning, ["method", "factor", "acc", "chosen"], "tuning")
    fig, axes = subplots(1, 1, figsize=(FIGURE_WIDTH * 0.6, 2.8))
    ax = axes[0, 0]
    for m, g in tuning[tuning.method != "sgd"].groupby("method", sort=False):
        g = g.sort_values("factor")
        ax.plot(g.factor, g.acc, marker="o", color=color(m), label=_method_label(m))
        pick = g[g["chosen"]]
        ax.scatter(pick.factor, pick.acc, s=110, facecolors="none", edgecolors=color(m))
    sgd_val = tuning[tuning.method == "sgd"].acc
    if len(sgd_val):
        ax.axhline(float(sgd_val.iloc[0]), color=color("sgd"), ls="--", label="SGD")
    log_axis(ax, "x")
    ax.set(xlabel="ρ / paper ρ", ylabel="validation accuracy (%)")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


def spectrum_grid(panels: Sequence, sigma_frac: float = 0.01) -> plt.Figure:
    """Spectral densities of (model, block) panels: rows are models, columns blocks.

    SLQ density in the book's SLQ colour, the exact spectrum (where present)
    in the exact colour, both smoothed by a Gaussian of width ``sigma_frac``
    of the panel's node range, on a log density axis; each title gives the
    block, its spectral type and counted clusters, each row the model's gap.

    Args:
        panels: :class:`renyilib.experiments.spectrum_study.SpectrumPanel` objects.
        sigma_frac: Kernel width as a fraction of the range (> 0).

    Returns:
        The figure.

    Raises:
        ValueError: ``panels`` is empty or ``sigma_frac <= 0``.
    """
    from renyilib.plots import density_plot

    if not panels:
        raise ValueError("panels must not be empty")
    if not sigma_frac > 0:
        raise ValueError(f"sigma_frac must be > 0, got {sigma_frac!r}")
    blocks = list(dict.fromkeys(p.block for p in panels))
    runs = list(dict.fromkeys(p.run for p in panels))
    fig, axes = subplots(len(runs), len(blocks), aspect=0.8)
    for p in panels:
        i, j = runs.index(p.run), blocks.index(p.block)
        ax = axes[i, j]
        q = p.quadrature
        nodes = np.concatenate([q.exact_nodes, q.nodes.ravel()]) if q.num_probes else q.exact_nodes
        lo, hi = float(nodes.min()), float(nodes.max())
        span = max(hi - lo, 1e-12)
        grid = np.linspace(lo - 0.05 * span, hi + 0.05 * span, 600)
        sigma = sigma_frac * span
        density_plot(ax, grid, q.density(grid, sigma), label="SLQ", color=color("slq"))
        if p.exact is not None:
            density_plot(
                ax,
                grid,
                p.exact.density(grid, sigma),
                label="exact",
                color=color("exact"),
                linestyle="--",
            )
            ax.legend(fontsize=6)
        ax.set_title(f"{p.block}\n{p.type} ({p.clusters})", fontsize=7)
        ax.tick_params(axis="x", labelrotation=30 if len(blocks) > 3 else 0)
        ax.set_xlabel("eigenvalue" if i == len(runs) - 1 else "")
        ax.set_ylabel(f"gap {p.gap:.3f}" if j == 0 else "")
    return fig


def zoo_curves(curves: pd.DataFrame, tasks: Sequence[str], converged_loss: float) -> plt.Figure:
    """Train loss (log, with the convergence bound) and test loss per evaluated epoch, one line per run.

    Rows: tasks; colour: optimizer.

    Args:
        curves: ``task, run, optimizer, epoch, train_loss, test_loss``
            (:func:`renyilib.experiments.zoo.curves`).
        tasks: Tasks, one row each.
        converged_loss: The convergence criterion's train-loss bound (dashed).

    Returns:
        The figure.
    """
    _check_columns(
        curves, ["task", "run", "optimizer", "epoch", "train_loss", "test_loss"], "curves"
    )
    fig, axes = subplots(len(tasks), 2, aspect=0.6)
    for i, t in enumerate(tasks):
        for (_, opt), c in curves[curves.task == t].groupby(["run", "optimizer"], sort=False):
            c = c.sort_values("epoch")
            axes[i, 0].plot(c["epoch"], c["train_loss"], color=color(opt), alpha=0.5, lw=0.8)
            axes[i, 1].plot(c["epoch"], c["test_loss"], color=color(opt), alpha=0.5, lw=0.8)
        axes[i, 0].axhline(converged_loss, color="k", ls="--", lw=0.8)
        log_axis(axes[i, 0], "y")
        axes[i, 0].set(title=f"{t}: train loss", xlabel="epoch")
        axes[i, 1].set(title=f"{t}: test loss", xlabel="epoch")
    handles = [plt.Line2D([], [], color=color(o), label=o) for o in pd.unique(curves["optimizer"])]
    handles.append(plt.Line2D([], [], color="k", ls="--", lw=0.8, label="convergence bound"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles))
    return fig


def gap_histograms(runs: pd.DataFrame, tasks: Sequence[str], bins: int = 15) -> plt.Figure:
    """Histogram of the generalization gap per task, one colour per optimizer.

    Args:
        runs: ``task, optimizer, gap`` (the zoo table).
        tasks: Tasks, one panel each.
        bins: Bins over each task's gap range.

    Returns:
        The figure.
    """
    _check_columns(runs, ["task", "optimizer", "gap"], "runs")
    fig, axes = subplots(1, len(tasks), aspect=0.65)
    for ax, t in zip(axes[0], tasks):
        r = runs[runs.task == t]
        edges = np.linspace(r.gap.min(), r.gap.max(), bins + 1) if len(r) > 1 else 5
        for opt in pd.unique(r.optimizer):
            ax.hist(r[r.optimizer == opt].gap, bins=edges, color=color(opt), alpha=0.6, label=opt)
        ax.set(title=t, xlabel="gap (test loss − train loss)", ylabel="runs")
    axes[0, 0].legend()
    return fig


def tau_bars(bars: pd.Series, tau_sd: float | None = None) -> plt.Figure:
    """Horizontal bars of Kendall τ with the gap: Rényi summaries (the Rényi colour) and baselines.

    Args:
        bars: Label → τ (labels starting with "Rényi" get the Rényi colour;
            a NaN bar is drawn at 0 and marked "n/a").
        tau_sd: τ's standard deviation under no association (a grey band of ±1 sd).

    Returns:
        The figure.

    Raises:
        TypeError: ``bars`` is not a Series.
    """
    if not isinstance(bars, pd.Series):
        raise TypeError(f"bars must be a pandas Series, got {type(bars).__name__}")
    fig, axes = subplots(1, 1, figsize=(FIGURE_WIDTH * 0.8, 0.28 * len(bars) + 1.0))
    ax = axes[0, 0]
    y = np.arange(len(bars))[::-1]
    colours = [color("renyi") if k.startswith("Rényi") else "#999999" for k in bars.index]
    ax.barh(y, bars.fillna(0).to_numpy(), color=colours)
    for yy, v in zip(y, bars.to_numpy()):
        if not np.isfinite(v):
            ax.text(0, yy, " n/a", va="center", fontsize=7)
    if tau_sd is not None and np.isfinite(tau_sd):
        ax.axvspan(-tau_sd, tau_sd, color="0.9", zorder=0, label="±1 sd of τ, no association")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15))
    ax.axvline(0, color="0.4", lw=0.6)
    ax.set_yticks(y, bars.index)
    ax.set_xlim(-1, 1)
    ax.set_xlabel("Kendall τ with the gap")
    return fig


def curves_and_gaps(curves: pd.DataFrame, runs: pd.DataFrame, converged_loss: float) -> plt.Figure:
    """One zoo's train loss (log, with the convergence bound), test loss and gap histogram.

    Args:
        curves: ``run, optimizer, epoch, train_loss, test_loss``.
        runs: ``optimizer, gap`` per run.
        converged_loss: The convergence criterion's train-loss bound.

    Returns:
        The figure (three panels, colour: optimizer).
    """
    _check_columns(curves, ["run", "optimizer", "epoch", "train_loss", "test_loss"], "curves")
    _check_columns(runs, ["optimizer", "gap"], "runs")
    fig, axes = subplots(1, 3, aspect=0.8)
    a, b, c = axes[0]
    for (_, opt), g in curves.groupby(["run", "optimizer"], sort=False):
        g = g.sort_values("epoch")
        a.plot(g["epoch"], g["train_loss"], color=color(opt), alpha=0.6, lw=0.8)
        b.plot(g["epoch"], g["test_loss"], color=color(opt), alpha=0.6, lw=0.8)
    a.axhline(converged_loss, color="k", ls="--", lw=0.8, label="convergence bound")
    log_axis(a, "y")
    a.set(title="(a) train loss", xlabel="epoch")
    b.set(title="(b) test loss", xlabel="epoch")
    edges = np.linspace(runs["gap"].min(), runs["gap"].max(), 12) if len(runs) > 1 else 5
    for opt in pd.unique(runs["optimizer"]):
        b.plot([], [], color=color(opt), label=opt)
        c.hist(runs.loc[runs["optimizer"] == opt, "gap"], bins=edges, color=color(opt), alpha=0.6)
    c.set(title="(c) generalization gap", xlabel="test loss − train loss", ylabel="runs")
    a.legend()
    b.legend()
    return fig


# --------------------------------------------------------------------------- Wen, Li & Ma (2023)

_WLM_STYLES = {
    "gd": ("C0", "GD + wd"),
    "sam1": ("C3", "1-SAM"),
    "sam1_vec": ("C2", "vectorized 1-SAM"),
}
_WLM_SCENARIOS = {
    "no_bias": "Scenario I (no bias) — cf. Fig. 1",
    "batchnorm": "Scenario II (simplified BN) — cf. Fig. 2",
    "bias": "Scenario III (bias) — cf. Fig. 4",
    "layernorm": "simplified LayerNorm — cf. Fig. 6",
}


def constructions_figure(
    table: pd.DataFrame, spectra: pd.DataFrame, comparison: pd.DataFrame, alphas: Sequence[float]
) -> plt.Figure:
    """The two flattest interpolators: their Hessian spectra, H_α profiles and sharpness measures.

    Args:
        table: :func:`renyilib.experiments.wen_li_ma.construction_study`'s table.
        spectra: Its eigenvalues (``construction, block, eigenvalue``).
        comparison: :func:`~renyilib.experiments.wen_li_ma.measure_comparison` of ``table``.
        alphas: The orders of the profile (``renyi_<α>`` / ``first_renyi_<α>`` columns).

    Returns:
        Three panels: sorted nonzero eigenvalues (all parameters and first layer),
        H_α against α (log n dotted), and bars of the measures (smaller = flatter).
    """
    _check_columns(spectra, ["construction", "block", "eigenvalue"], "spectra")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    t = table.set_index("construction")
    a = np.asarray(alphas, dtype=float)
    for name, c in (("generalizing", "C0"), ("memorizing", "C3")):
        for block, ls in (("all", "-"), ("first", "--")):
            sel = (spectra["construction"] == name) & (spectra["block"] == block)
            ev = np.sort(spectra.loc[sel, "eigenvalue"].to_numpy())[::-1]
            axes[0].semilogy(np.arange(1, len(ev) + 1), ev, ls, color=c, label=f"{name} ({block})")
        row = t.loc[name]
        axes[1].plot(a, [row[f"renyi_{x:g}"] for x in a], "-o", ms=3, color=c, label=f"{name}, all")
        axes[1].plot(
            a, [row[f"first_renyi_{x:g}"] for x in a], "--", color=c, label=f"{name}, first layer"
        )
    axes[0].set(xlabel="eigenvalue index", ylabel="eigenvalue", title="nonzero Hessian eigenvalues")
    axes[1].axhline(np.log(int(t["n"].iloc[0])), color="gray", lw=0.8, ls=":")
    axes[1].set(xlabel=r"$\alpha$", ylabel=r"$H_\alpha$", title=r"Rényi entropy (log n dotted)")
    shown = [
        "trace",
        "lambda_max",
        "-H_0.5 (all)",
        "-H_1 (all)",
        "-H_2 (all)",
        "-H_1 (first layer)",
    ]
    bars = comparison[comparison["measure"].isin(shown)]
    x = np.arange(len(bars))
    axes[2].bar(x - 0.2, bars["generalizing"], 0.4, color="C0", label="generalizing")
    axes[2].bar(x + 0.2, bars["memorizing"], 0.4, color="C3", label="memorizing")
    axes[2].set_xticks(x, bars["measure"], rotation=30, ha="right")
    axes[2].set_yscale("symlog", linthresh=1)
    axes[2].set(title="sharpness measures (smaller = flatter)")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def scenario_curves_figure(curves: pd.DataFrame, label: str, trace_bound: float) -> plt.Figure:
    """Training curves of the Wen–Li–Ma scenarios: test error, train loss, Tr G and H_1, per architecture.

    Args:
        curves: :func:`renyilib.experiments.wen_li_ma.scenario_study`'s curves
            (``architecture, method, epoch, diverged, test_error, train_loss,
            all_trace, all_renyi_1, first_renyi_1, width``).
        label: Where the curves come from (title).
        trace_bound: The bound 4√(d+1), drawn on the trace panel of the bias scenario.

    Returns:
        One row of four panels per architecture.
    """
    _check_columns(
        curves,
        ["architecture", "method", "epoch", "diverged", "test_error", "train_loss", "all_trace"],
        "curves",
    )
    archs = list(dict.fromkeys(curves["architecture"]))
    fig, axes = plt.subplots(len(archs), 4, figsize=(15, 2.8 * len(archs)), squeeze=False)
    for i, arch in enumerate(archs):
        for method, run in curves[curves["architecture"] == arch].groupby("method", sort=False):
            c, name = _WLM_STYLES.get(method, (None, method))
            run = run[~run["diverged"].astype(bool)]
            axes[i, 0].plot(run.epoch, run.test_error, color=c, label=name)
            axes[i, 1].semilogy(run.epoch, run.train_loss, color=c, label=name)
            axes[i, 2].semilogy(run.epoch, run.all_trace, color=c, label=name)
            axes[i, 3].plot(run.epoch, run.all_renyi_1, color=c, label=f"{name}, all")
            axes[i, 3].plot(
                run.epoch, run.first_renyi_1, "--", color=c, label=f"{name}, first layer"
            )
        if arch == "bias":
            axes[i, 2].axhline(trace_bound, color="gray", ls=":", label=r"$4\sqrt{d+1}$")
        title = _WLM_SCENARIOS.get(arch, arch)
        axes[i, 0].set(ylabel=title.split(" — ")[0] + "\ntest error", ylim=(0, 0.6))
        axes[i, 1].set(ylabel="train loss")
        axes[i, 2].set(ylabel=r"Tr $G$")
        axes[i, 3].set(ylabel=r"$H_1$")
        axes[i, 0].set_title(title, fontsize=9, loc="left")
        for ax in axes[i]:
            ax.legend(fontsize=6)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    fig.suptitle(f"{label}: width {int(curves['width'].iloc[0])}", y=1.0)
    fig.tight_layout()
    return fig


def sam_variants_figure(comparisons: dict[str, pd.DataFrame]) -> plt.Figure:
    """Sequential against vectorized 1-SAM: test error, Tr G and the parameter distance.

    Args:
        comparisons: ``{label: compare_sam_variants table}`` (``method, epoch,
            test_error, all_trace, param_distance``), one row of panels each.

    Returns:
        The figure.
    """
    fig, axes = plt.subplots(len(comparisons), 3, figsize=(13, 3 * len(comparisons)), squeeze=False)
    for i, (label, comp) in enumerate(comparisons.items()):
        _check_columns(
            comp, ["method", "epoch", "test_error", "all_trace", "param_distance"], label
        )
        for method, run in comp.groupby("method", sort=False):
            axes[i, 0].plot(run.epoch, run.test_error, label=method)
            axes[i, 1].plot(run.epoch, run.all_trace, label=method)
        seq = comp[comp["method"] == "sam1"]
        axes[i, 2].plot(seq.epoch, seq.param_distance, color="k")
        axes[i, 0].set(ylabel=f"{label}\ntest error")
        axes[i, 1].set(ylabel="Tr G")
        axes[i, 2].set(ylabel=r"$\|\theta_{seq}-\theta_{vec}\| / \|\theta_{seq}-\theta_0\|$")
        axes[i, 0].legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("epoch (vectorized: step)")
    fig.tight_layout()
    return fig
