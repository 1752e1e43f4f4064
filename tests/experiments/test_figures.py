"""Tests of renyilib.experiments.figures: each figure draws its table, within the column width."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from renyilib.experiments.figures import selection_bars, tau_against_alpha, tau_heatmap
from renyilib.plots import FIGURE_WIDTH


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_tau_against_alpha_one_line_per_block():
    sweep = pd.DataFrame(
        {"block": ["a", "a", "all", "all"], "alpha": [0.5, 2.0] * 2, "tau": [0.1, 0.2, 0.3, -0.4]}
    )
    fig = tau_against_alpha(sweep, ["a", "all"])
    ax = fig.axes[0]
    assert [ln.get_label() for ln in ax.lines[:2]] == ["a", "all"]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [0.3, -0.4])
    assert ax.lines[1].get_color() == "black"
    assert fig.get_figwidth() <= FIGURE_WIDTH
    with pytest.raises(ValueError, match="lacks columns"):
        tau_against_alpha(sweep.drop(columns="tau"), ["a"])


def test_selection_bars_and_heatmap():
    agg = pd.DataFrame(
        {"in_sample": [0.5, 0.7], "held_out": [0.3, 0.6], "held_out_sd": [0.1, 0.1]},
        index=["a", "all"],
    )
    fig = selection_bars(agg)
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == pytest.approx([0.5, 0.7, 0.3, 0.6])
    with pytest.raises(TypeError, match="inflation"):
        selection_bars(agg.to_numpy())
    fig = tau_heatmap(pd.DataFrame([[0.1, -0.2]], index=["t"], columns=["x", "y"]), rotate=True)
    assert fig.get_figwidth() <= FIGURE_WIDTH and len(fig.axes) == 2  # the map and its colour bar
    with pytest.raises(TypeError, match="table"):
        tau_heatmap([[0.1]])


def test_bounds_and_appendix_f_figures():
    from renyilib.experiments.figures import appendix_f_figure, bounds_figure
    from renyilib.plots import color

    best = pd.DataFrame(
        {
            "test_bounded": [0.2, 0.3],
            "jia_su": [0.5, 0.6],
            "renyi_c1": [0.5, 0.7],
            "ellipsoid": [0.9, 1.1],
            "renyi_d1": [1.2, 1.3],
        }
    )
    fig = bounds_figure(best)
    ax = fig.axes[0]
    assert len(ax.collections) == 4
    np.testing.assert_allclose(ax.collections[3].get_offsets()[:, 1], [1.2, 1.3])
    assert (
        matplotlib.colors.to_hex(ax.collections[1].get_facecolor()[0]) == color("renyi_c1").lower()
    )
    with pytest.raises(ValueError, match="lacks columns"):
        bounds_figure(best.drop(columns="jia_su"))
    table = pd.DataFrame(
        {
            "model": ["a", "b"],
            "share": [0.1, 0.2],
            "frobenius_share": [0.3, 0.4],
            "f6_gap_2": [1e-3, 1e-2],
            "f6_bound_2": [0.5, 2.0],
        }
    )
    fig = appendix_f_figure(table, 2.0)
    assert [p.get_height() for p in fig.axes[0].patches] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert fig.axes[1].get_xscale() == "log"
    fig = appendix_f_figure(table, None)
    assert not fig.axes[1].axison


def test_estimator_figures():
    from renyilib.experiments.figures import (
        FRONTIER_ROUTE_COLORS,
        density_comparison,
        entropy_against_alpha,
        frontier_figure,
        sweep_figure,
    )
    from renyilib.lanczos import SpectralQuadrature
    from renyilib.plots import color

    exact = {f"b{i}": np.linspace(0.0, 1.0 + i, 5 + i) for i in range(4)}
    quads = {
        b: SpectralQuadrature(np.zeros((0, 1)), np.zeros((0, 1)), len(v), 0, 0, exact_nodes=v)
        for b, v in exact.items()
    }
    fig = density_comparison(exact, quads)
    assert sum(a.axison for a in fig.axes) == 4 and len(fig.axes) == 6  # 2 x 3, two hidden
    assert fig.get_figwidth() <= FIGURE_WIDTH
    # an exact-node quadrature has the exact density: the two curves coincide
    ax = fig.axes[0]
    np.testing.assert_allclose(
        np.maximum(ax.lines[0].get_ydata(), 1e-8), ax.lines[1].get_ydata(), rtol=1e-10
    )
    errors = pd.DataFrame(
        {
            "block": ["a"] * 2,
            "alpha": [0.5, 2.0],
            "exact": [1.0, 0.8],
            "entropy": [1.1, 0.8],
            "stderr": [0.1, 0.0],
        }
    )
    fig = entropy_against_alpha(errors)
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), [1.0, 0.8])
    sweep = pd.DataFrame(
        [
            {"block": "a", "steps": m, "probes": lp, "alpha": a, "rms_rel_error": 0.1 / m}
            for m in (5, 10)
            for lp in (2, 4)
            for a in (0.5, 1.5, 2.0)
        ]
    )
    fig = sweep_figure(sweep)
    assert len(fig.axes) == 3 and len(fig.axes[0].lines) == 3  # two l-lines and the 2 % line
    table = pd.DataFrame(
        {
            "route": ["pyhessian", "renyilib", "renyilib", "curvlinops", "curvlinops"],
            "block": ["a"] * 5,
            "seconds": [1.0, 0.5, 0.6, 2.0, 2.2],
            "error": [0.05, 0.01, 0.012, 0.015, 0.018],
            "time_source": ["sweep", "sweep", "confirm", "sweep", "confirm"],
        }
    )
    fig = frontier_figure(table)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    # three routes, each: dots (labelled), best-so-far step, confirmation stars; then 2 %
    assert len(ax.lines) == 3 * 3 + 1
    dots = {ln.get_label(): ln for ln in ax.lines if not ln.get_label().startswith("_")}
    assert list(dots) == ["renyilib", "pyhessian", "curvlinops"]
    for route, ln in dots.items():
        assert ln.get_color() == FRONTIER_ROUTE_COLORS[route]
    assert FRONTIER_ROUTE_COLORS["renyilib"] == color("renyi")
    assert FRONTIER_ROUTE_COLORS["pyhessian"] == color("pyhessian")
    assert len(set(FRONTIER_ROUTE_COLORS.values())) == len(FRONTIER_ROUTE_COLORS)
    np.testing.assert_allclose(dots["curvlinops"].get_xdata(), [2.0])
    np.testing.assert_allclose(dots["curvlinops"].get_ydata(), [1.5])
    # a route without a colour of its own still gets a distinct one
    extra = pd.concat([table, table.iloc[[0]].assign(route="other")], ignore_index=True)
    labels = [ln for ln in frontier_figure(extra).axes[0].lines if ln.get_label() == "other"]
    assert labels and labels[0].get_color() not in FRONTIER_ROUTE_COLORS.values()
    with pytest.raises(ValueError, match="lacks columns"):
        frontier_figure(table.drop(columns="route"))


def test_rsam_figures_use_the_optimizer_colours():
    from renyilib.experiments.figures import (
        perturbation_norms,
        quadratic_figure,
        sharpness_bars,
        training_curves,
        tuning_figure,
    )
    from renyilib.plots import color

    methods = ["sgd", "rsam"]
    rows = [
        {
            "method": m,
            "seed": s,
            "epoch": e,
            "eval_acc": 0.5 + 0.1 * e,
            "train_loss": 1.0 / e,
            "eps_mean": 0.1 * e,
        }
        for m in methods
        for s in (0, 1)
        for e in (1, 2, 3)
    ]
    df = pd.DataFrame(rows)
    fig = training_curves({"eval_acc": df, "train_loss": df}, methods)
    lines = fig.axes[0].lines
    assert [matplotlib.colors.to_hex(ln.get_color()) for ln in lines] == [
        color(m).lower() for m in methods
    ]
    assert fig.axes[1].get_yscale() == "log"
    fig = perturbation_norms(df[["method", "epoch", "eps_mean"]], methods)
    assert len(fig.axes[0].lines) == 2
    summary = pd.DataFrame(
        {
            "method": ["sgd", "sgd", "rsam", "rsam"],
            "alpha": [0.5, 2.0] * 2,
            "sharpness": [-1, -2, -3, -4],
            "sharpness_se": 0.1,
        }
    )
    fig = sharpness_bars(summary, methods)
    assert [p.get_height() for p in fig.axes[0].patches] == [-1, -2, -3, -4]
    fig = quadratic_figure(
        {"SGD": (np.ones(3), np.zeros(3)), "RSAM (Eq. 11)": (np.ones(3), np.ones(3))}
    )
    assert len(fig.axes[0].lines) == 2 and len(fig.axes[1].lines) == 1
    tuning = pd.DataFrame(
        {
            "method": ["sgd", "sam", "sam"],
            "factor": [np.nan, 0.5, 1.0],
            "acc": [50.0, 51.0, 52.0],
            "chosen": [False, False, True],
        }
    )
    fig = tuning_figure(tuning)
    assert fig.axes[0].get_xscale() == "log"
    np.testing.assert_allclose(fig.axes[0].collections[0].get_offsets(), [[1.0, 52.0]])


def test_spectrum_grid_rows_models_columns_blocks():
    from renyilib.experiments.figures import spectrum_grid
    from renyilib.experiments.spectrum_study import SpectrumPanel, exact_quadrature

    q = exact_quadrature(np.array([0.0, 0.1, 1.0]))
    panels = [
        SpectrumPanel(run, gap, block, q, q if run == "r1" else None, "uniform", 1)
        for run, gap in (("r1", 0.1), ("r2", 0.2))
        for block in ("a", "b", "all")
    ]
    fig = spectrum_grid(panels)
    assert len(fig.axes) == 6 and fig.get_figwidth() <= FIGURE_WIDTH
    assert len(fig.axes[0].lines) == 2 and len(fig.axes[3].lines) == 1  # exact only in row 1
    assert fig.axes[3].get_ylabel() == "gap 0.200"
    with pytest.raises(ValueError, match="panels"):
        spectrum_grid([])


def test_zoo_figures():
    from renyilib.experiments.figures import gap_histograms, zoo_curves
    from renyilib.plots import color

    curves = pd.DataFrame(
        {
            "task": "t",
            "run": ["r1", "r1", "r2", "r2"],
            "optimizer": ["sgd", "sgd", "adam", "adam"],
            "epoch": [1, 2, 1, 2],
            "train_loss": [1.0, 0.1, 2.0, 0.5],
            "test_loss": [1.1, 0.9, 2.1, 1.0],
        }
    )
    fig = zoo_curves(curves, ["t"], 0.05)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and len(ax.lines) == 3  # two runs and the bound
    assert matplotlib.colors.to_hex(ax.lines[1].get_color()) == color("adam").lower()
    runs = pd.DataFrame({"task": "t", "optimizer": ["sgd", "adam", "sgd"], "gap": [0.1, 0.2, 0.3]})
    fig = gap_histograms(runs, ["t"])
    assert sum(p.get_height() for p in fig.axes[0].patches) == 3


def test_tau_bars_and_curves_and_gaps():
    from renyilib.experiments.figures import curves_and_gaps, tau_bars
    from renyilib.plots import color

    bars = pd.Series({"Rényi all layers (best α)": 0.4, "trace": -0.2, "SAM sharpness": np.nan})
    fig = tau_bars(bars, tau_sd=0.1)
    patches = fig.axes[0].patches
    assert [p.get_width() for p in patches[:3]] == pytest.approx([0.4, -0.2, 0.0])
    assert matplotlib.colors.to_hex(patches[0].get_facecolor()) == color("renyi").lower()
    assert any(t.get_text() == " n/a" for t in fig.axes[0].texts)
    with pytest.raises(TypeError, match="bars"):
        tau_bars([0.1])
    curves = pd.DataFrame(
        {
            "run": ["a", "a"],
            "optimizer": "sgd",
            "epoch": [1, 2],
            "train_loss": [1.0, 0.01],
            "test_loss": [1.2, 0.9],
        }
    )
    runs = pd.DataFrame({"optimizer": ["sgd", "adam"], "gap": [0.5, 0.8]})
    fig = curves_and_gaps(curves, runs, 0.05)
    assert len(fig.axes) == 3 and fig.axes[0].get_yscale() == "log"
    assert sum(p.get_height() for p in fig.axes[2].patches) == 2
