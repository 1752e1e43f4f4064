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
