"""Tests of renyilib.plots: the shared figure style and figure types draw what they claim."""

from __future__ import annotations

import io
import itertools

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors
import matplotlib.image as mimage
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from renyilib.plots import (
    FIGURE_DPI,
    FIGURE_WIDTH,
    MEASURE_COLORS,
    OPTIMIZER_COLORS,
    color,
    density_plot,
    figure_size,
    heatmap,
    log_axis,
    scatter_grid,
    scatter_tau,
    set_style,
    subplots,
)
from renyilib.statistics import kendall_tau


@pytest.fixture(autouse=True)
def _style():
    with matplotlib.rc_context():
        set_style()
        yield
    plt.close("all")


def _png_width(fig) -> int:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    buf.seek(0)
    return mimage.imread(buf).shape[1]


def _label_boxes(ax, axis):
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = (ax.get_xticklabels if axis == "x" else ax.get_yticklabels)(which="both")
    lo, hi = (ax.get_xlim if axis == "x" else ax.get_ylim)()
    boxes = []
    for t in labels:
        pos = t.get_position()[0 if axis == "x" else 1]
        if t.get_text() and t.get_visible() and min(lo, hi) <= pos <= max(lo, hi):
            boxes.append((t.get_text(), t.get_window_extent(renderer)))
    return boxes


def test_scatter_tau_title_value_and_optimizer_colours():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    y = np.array([1.0, 3.0, 2.0, 4.0])
    fig, ax = plt.subplots()
    tau = scatter_tau(ax, x, y, "layer 1", hue=["sgd", "sgd", "adam", "adam"])
    assert tau == pytest.approx(kendall_tau(x, y).tau)
    assert ax.get_title() == "layer 1\nτ = 0.667"
    assert len(ax.collections) == 2  # one scatter per hue
    got = [mcolors.to_hex(c.get_facecolor()[0]) for c in ax.collections]
    assert got == [OPTIMIZER_COLORS["sgd"].lower(), OPTIMIZER_COLORS["adam"].lower()]


def test_color_one_per_name_and_errors():
    assert color("SGD") == OPTIMIZER_COLORS["sgd"]
    assert color("lambda_max") == MEASURE_COLORS["lambda_max"]
    assert len(set(OPTIMIZER_COLORS.values())) == len(OPTIMIZER_COLORS)
    with pytest.raises(KeyError, match="no colour"):
        color("lbfgs")
    with pytest.raises(TypeError, match="name"):
        color(3)


def test_figure_size_fits_the_column():
    for ncols, nrows in itertools.product([1, 2, 5, 8], [1, 3]):
        w, h = figure_size(ncols, nrows)
        assert w <= FIGURE_WIDTH + 1e-12 and 0 < h <= 9.0
    with pytest.raises(ValueError, match="ncols"):
        figure_size(0)
    with pytest.raises(ValueError, match="aspect"):
        figure_size(2, aspect=0)


def test_scatter_grid_layout_and_pixel_width():
    rng = np.random.default_rng(0)
    panels = [(f"p{i}", rng.normal(size=6), rng.normal(size=6), None) for i in range(12)]
    fig = scatter_grid(panels, ncols=5, hue=["sgd", "adam"] * 3)
    axes = fig.get_axes()
    assert len(axes) == 15 and sum(a.axison for a in axes) == 12
    # the saved figure fits a ~750 px text column (bbox "tight" may add a little)
    assert _png_width(fig) <= FIGURE_WIDTH * FIGURE_DPI + 30
    with pytest.raises(ValueError, match="panels"):
        scatter_grid([])
    with pytest.raises(ValueError, match="ncols"):
        scatter_grid(panels, ncols=0)


def test_no_offset_notation_for_values_differing_by_1e4():
    fig, ax = plt.subplots()
    y = 2.3071 + np.array([0.0, 0.5e-4, 1e-4])
    ax.plot([0, 1, 2], y)
    fig.canvas.draw()
    assert ax.yaxis.get_offset_text().get_text() == ""
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert len(set(labels)) == len(labels) >= 2
    assert all(lab.replace("−", "-").startswith("2.307") for lab in labels)


@pytest.mark.parametrize("lo,hi", [(0.3, 0.9), (2.0, 60.0), (1e-7, 10.0), (1e-12, 1e-2)])
def test_log_axis_labels_never_overlap(lo, hi):
    fig, axes = subplots(1, 4)  # narrow panels: the hard case
    for ax in axes.ravel():
        ax.plot([lo, hi], [lo, hi])
        ax.set(xlim=(lo, hi), ylim=(lo, hi))
        log_axis(ax, "y")
        log_axis(ax, "x")
        for axis in ("x", "y"):
            boxes = _label_boxes(ax, axis)
            assert len(boxes) >= 1, (axis, lo, hi)
            for (ta, a), (tb, b) in itertools.combinations(boxes, 2):
                assert not a.overlaps(b), (axis, ta, tb)
    with pytest.raises(ValueError, match="axis"):
        log_axis(axes[0, 0], "z")


def test_heatmap_labels_and_cells():
    fig, ax = plt.subplots()
    data = pd.DataFrame([[0.5, -0.2], [np.nan, 1.0]], index=["t1", "t2"], columns=["a", "b"])
    heatmap(ax, data)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["t1", "t2"]
    assert sorted(t.get_text() for t in ax.texts) == ["-0.20", "0.50", "1.00"]  # NaN blank
    assert ax.images[0].norm.vmin == -1 and ax.images[0].norm.vmax == 1
    with pytest.raises(TypeError, match="data"):
        heatmap(ax, data.to_numpy())


def test_density_plot_floor_and_errors():
    fig, ax = plt.subplots()
    grid = np.linspace(-1, 1, 50)
    dens = np.exp(-(grid**2))
    dens[0] = 0.0
    density_plot(ax, grid, dens, title="x", floor=1e-6)
    assert ax.get_yscale() == "log" and ax.get_title() == "x"
    drawn = ax.lines[0].get_ydata()
    assert drawn[0] == pytest.approx(1e-6) and drawn[25] == pytest.approx(dens[25])
    with pytest.raises(ValueError, match="shape"):
        density_plot(ax, grid, dens[:-1])
    with pytest.raises(ValueError, match="floor"):
        density_plot(ax, grid, dens, floor=0.0)
