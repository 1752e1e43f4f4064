"""Tests of renyilib.plots: the shared figure styles draw what they claim."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from renyilib.statistics import kendall_tau
from renyilib.plots import density_plot, heatmap, scatter_grid, scatter_tau


def test_scatter_tau_title_and_value():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    y = np.array([1.0, 3.0, 2.0, 4.0])
    fig, ax = plt.subplots()
    tau = scatter_tau(ax, x, y, "layer 1", hue=["a", "a", "b", "b"])
    assert tau == pytest.approx(kendall_tau(x, y).tau)
    assert ax.get_title() == "layer 1\nτ = 0.667"
    assert len(ax.collections) == 2  # one scatter per hue
    plt.close(fig)


def test_scatter_grid_layout_and_heatmap_and_density():
    rng = np.random.default_rng(0)
    panels = [(f"p{i}", rng.normal(size=6), rng.normal(size=6), None) for i in range(7)]
    fig = scatter_grid(panels, ncols=3)
    axes = fig.get_axes()
    assert len(axes) == 9 and sum(a.axison for a in axes) == 7
    plt.close(fig)
    with pytest.raises(ValueError, match="panels"):
        scatter_grid([])
    fig, ax = plt.subplots()
    heatmap(ax, pd.DataFrame([[0.5, -0.2], [np.nan, 1.0]], index=["t1", "t2"], columns=["a", "b"]))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    plt.close(fig)
    fig, ax = plt.subplots()
    grid = np.linspace(-1, 1, 50)
    density_plot(ax, grid, np.exp(-(grid**2)), title="x")
    assert ax.get_yscale() == "log" and ax.get_title() == "x"
    plt.close(fig)
