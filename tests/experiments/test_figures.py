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
