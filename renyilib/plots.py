"""Spectral densities and the book's one figure style (matplotlib only).

The style, shared by every chapter:

* :data:`FIGURE_WIDTH` — every figure is at most this wide (inches at
  :data:`FIGURE_DPI`: about 720 px, the width of the book's text column), so
  fonts are never scaled down; :func:`figure_size` and :func:`subplots` derive
  a figure's size from its panel grid within that width.
* :func:`set_style` — fonts, a colour-blind-safe cycle (Okabe & Ito), no offset
  or multiplier on linear axes (a value that differs from another by 1e-4 shows
  as such, not hidden behind "+2.3071").
* :func:`color` — one colour per optimizer (:data:`OPTIMIZER_COLORS`) and per
  measure (:data:`MEASURE_COLORS`) across the whole book.
* :func:`log_axis` — a logarithmic axis whose tick labels never overlap.

The figure types:

* :func:`scatter_tau` — one panel of the Figs. 2 / 8–13 grids: a measure
  against the generalization gap, Kendall τ (Eq. 8) in the title.
* :func:`scatter_grid` — many such panels in a grid.
* :func:`heatmap` — a labelled matrix (Fig. 3's signed-τ summary, Fig. 14's
  mean τ against α), diverging colours centred at 0 for signed values.
* :func:`density_plot` — a spectral density on a log-density axis (Fig. 1 a–c,
  Figs. 4–7).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import ticker

__all__ = [
    "FIGURE_DPI",
    "FIGURE_WIDTH",
    "MEASURE_COLORS",
    "OPTIMIZER_COLORS",
    "color",
    "density_plot",
    "figure_size",
    "heatmap",
    "log_axis",
    "scatter_grid",
    "scatter_tau",
    "set_style",
    "subplots",
]

#: Widest figure, in inches (at :data:`FIGURE_DPI` about 720 px: the book's column).
FIGURE_WIDTH = 7.2
#: Resolution of figures in the book (pixels per inch).
FIGURE_DPI = 100

# Okabe & Ito (2008), a palette that stays distinct for colour-blind readers.
_OKABE_ITO = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # green
    "#D55E00",  # vermillion
    "#CC79A7",  # purple
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",  # black
)

#: One colour per optimizer, on every page.
OPTIMIZER_COLORS: dict[str, str] = {
    "sgd": "#0072B2",
    "adam": "#E69F00",
    "sam": "#009E73",
    "asam": "#CC79A7",
    "eigensam": "#56B4E9",
    "rsam": "#D55E00",
    "rsam-fixed": "#8C564B",
}

#: One colour per measure (and per reference curve), on every page.
MEASURE_COLORS: dict[str, str] = {
    "renyi": "#D55E00",
    "exact": "#000000",
    "slq": "#0072B2",
    "pyhessian": "#999999",
    "trace": "#E69F00",
    "lambda_max": "#009E73",
    "fisher_rao": "#56B4E9",
    "pacbayes_flat": "#CC79A7",
    "pacbayes_orig": "#882255",
    "param_norm": "#8C564B",
    "sam": "#117733",
    "asam": "#AA4499",
    "jia_su": "#0072B2",
    "renyi_c1": "#D55E00",
    "ellipsoid": "#009E73",
    "renyi_d1": "#CC79A7",
}


def color(name: str) -> str:
    """The book's colour of an optimizer or a measure (case-insensitive).

    Args:
        name: A key of :data:`OPTIMIZER_COLORS` or :data:`MEASURE_COLORS`.

    Returns:
        A hex colour.

    Raises:
        TypeError: ``name`` is not a string.
        KeyError: ``name`` has no colour; the message lists the known names.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    key = name.lower()
    if key in OPTIMIZER_COLORS:
        return OPTIMIZER_COLORS[key]
    if key in MEASURE_COLORS:
        return MEASURE_COLORS[key]
    raise KeyError(
        f"name {name!r} has no colour; known: {sorted({**OPTIMIZER_COLORS, **MEASURE_COLORS})}"
    )


def set_style() -> None:
    """The book's matplotlib style: sizes, fonts, colours, no offset notation.

    Sets ``matplotlib.rcParams``: figure resolution :data:`FIGURE_DPI`, a
    default size of :data:`FIGURE_WIDTH` × 3 in, 8-pt text (9-pt titles),
    constrained layout, the Okabe–Ito colour cycle, and linear-axis tick
    labels written in full (``axes.formatter.useoffset = False``).
    """
    plt.rcParams.update(
        {
            "figure.dpi": FIGURE_DPI,
            "savefig.dpi": FIGURE_DPI,
            "figure.figsize": (FIGURE_WIDTH, 3.0),
            "figure.constrained_layout.use": True,
            "savefig.bbox": "tight",
            "font.size": 8,
            "axes.titlesize": 9,
            "axes.labelsize": 8,
            "xtick.labelsize": 7,
            "ytick.labelsize": 7,
            "legend.fontsize": 7,
            "legend.frameon": False,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": False,
            "axes.prop_cycle": plt.cycler(color=list(_OKABE_ITO[:-1])),  # black is for references
            "axes.formatter.useoffset": False,
            "axes.formatter.limits": (-4, 5),
            "lines.linewidth": 1.2,
            "lines.markersize": 3.5,
            "image.cmap": "viridis",
        }
    )


def figure_size(
    ncols: int = 1, nrows: int = 1, *, aspect: float = 0.8, max_height: float = 9.0
) -> tuple[float, float]:
    """Size (inches) of a figure of ``nrows × ncols`` panels within the column width.

    Each panel is ``FIGURE_WIDTH / ncols`` wide (at most 3.6 in) and ``aspect``
    times as high; the height is capped at ``max_height``.

    Args:
        ncols, nrows: Panel grid (positive ints).
        aspect: Panel height / panel width (positive).
        max_height: Largest figure height in inches.

    Returns:
        ``(width, height)``.

    Raises:
        ValueError: A non-positive ``ncols``, ``nrows``, ``aspect`` or ``max_height``.
    """
    for name, v in (("ncols", ncols), ("nrows", nrows)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if not aspect > 0 or not max_height > 0:
        raise ValueError(f"aspect and max_height must be > 0, got {aspect!r}, {max_height!r}")
    panel = min(FIGURE_WIDTH / ncols, 3.6)
    return panel * ncols, min(panel * aspect * nrows + 0.3, max_height)


def subplots(
    nrows: int = 1, ncols: int = 1, *, aspect: float = 0.8, squeeze: bool = False, **kwargs: Any
) -> tuple[plt.Figure, np.ndarray]:
    """:func:`matplotlib.pyplot.subplots` sized by :func:`figure_size` (constrained layout).

    Returns:
        ``(figure, axes)``; ``axes`` is a 2-D array unless ``squeeze=True``.
    """
    kwargs.setdefault("figsize", figure_size(ncols, nrows, aspect=aspect))
    kwargs.setdefault("layout", "constrained")
    return plt.subplots(nrows, ncols, squeeze=squeeze, **kwargs)


def log_axis(ax: plt.Axes, axis: str = "y") -> None:
    """Make ``axis`` logarithmic with tick labels that cannot overlap.

    Over at least two decades only powers of ten are labelled (as many as the
    axis length leaves room for, at most seven); over less, the ticks are 1, 2, 5 × 10^k written in plain numbers.
    Minor ticks are never labelled. Call it after the data are drawn.

    Args:
        ax: Axes.
        axis: ``"x"`` or ``"y"``.

    Raises:
        ValueError: ``axis`` is neither.
    """
    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
    getattr(ax, f"set_{axis}scale")("log")
    lo, hi = getattr(ax, f"get_{axis}lim")()
    target = ax.xaxis if axis == "x" else ax.yaxis
    decades = math.log10(hi / lo) if lo > 0 and hi > lo else 0.0
    # room for the labels: about 45 px per label along x, 18 px along y
    fig = ax.figure
    pos = ax.get_position()
    length = pos.width * fig.get_figwidth() if axis == "x" else pos.height * fig.get_figheight()
    numticks = int(max(2, min(7, length * fig.dpi // (45 if axis == "x" else 18))))
    if decades >= 2:
        target.set_major_locator(ticker.LogLocator(base=10, numticks=numticks))
        target.set_major_formatter(ticker.LogFormatterSciNotation(base=10))
    else:
        target.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=12))
        target.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_locator(ticker.LogLocator(base=10, subs=np.arange(2, 10) * 1.0, numticks=12))
    target.set_minor_formatter(ticker.NullFormatter())


def scatter_tau(
    ax: plt.Axes,
    x: Sequence[float] | np.ndarray,
    gap: Sequence[float] | np.ndarray,
    title: str,
    *,
    tau: float | None = None,
    hue: Sequence[Any] | None = None,
    xlabel: str | None = None,
    ylabel: str = "generalization gap",
    logx: bool = False,
) -> float:
    """Scatter a measure against the gap with Kendall τ in the title.

    Args:
        ax: Axes to draw on.
        x: Measure values (one per model).
        gap: Generalization gaps.
        title: Panel name (the layer or measure).
        tau: τ to print (computed with :func:`renyilib.statistics.kendall_tau` if omitted).
        hue: Optional per-model category (e.g. optimizer) for colours; an
            optimizer name gets its :data:`OPTIMIZER_COLORS` colour.
        xlabel: x-axis label (default: none).
        ylabel: y-axis label.
        logx: Logarithmic x-axis (only when all x > 0).

    Returns:
        The τ shown.
    """
    from renyilib.statistics import kendall_tau

    x = np.asarray(x, dtype=float)
    gap = np.asarray(gap, dtype=float)
    if tau is None:
        tau = kendall_tau(x, gap).tau
    if hue is None:
        ax.scatter(x, gap, s=12, alpha=0.8, color=_OKABE_ITO[0], edgecolor="none")
    else:
        hue = np.asarray(hue)
        for k, h in enumerate(pd.unique(hue)):
            sel = hue == h
            c = OPTIMIZER_COLORS.get(str(h).lower(), _OKABE_ITO[k % len(_OKABE_ITO)])
            ax.scatter(x[sel], gap[sel], s=12, alpha=0.8, color=c, edgecolor="none", label=str(h))
    if logx and np.all(x[np.isfinite(x)] > 0):
        log_axis(ax, "x")
    else:
        ax.xaxis.set_major_locator(ticker.MaxNLocator(nbins=2, min_n_ticks=2))
    ax.set_title(f"{title}\nτ = {tau:.3f}" if np.isfinite(tau) else f"{title}\nτ = n/a")
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    return float(tau)


def scatter_grid(
    panels: Sequence[tuple[str, np.ndarray, np.ndarray, float | None]],
    *,
    ncols: int = 5,
    aspect: float = 0.85,
    hue: Sequence[Any] | None = None,
) -> plt.Figure:
    """A grid of :func:`scatter_tau` panels (the layout of Figs. 2, 8–13) in the column width.

    Args:
        panels: ``(title, x, gap, tau)`` per panel (``tau=None``: computed).
        ncols: Panels per row (at most; fewer when there are fewer panels).
        aspect: Panel height / width.
        hue: Per-model categories shared by all panels (legend under the figure).

    Returns:
        The figure.

    Raises:
        ValueError: ``panels`` is empty or ``ncols`` is not a positive int.
    """
    if not panels:
        raise ValueError("panels must not be empty")
    if not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive int, got {ncols!r}")
    ncols = min(ncols, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = subplots(nrows, ncols, aspect=aspect)
    for k, ax in enumerate(axes.ravel()):
        if k >= len(panels):
            ax.axis("off")
            continue
        title, x, gap, tau = panels[k]
        scatter_tau(ax, x, gap, title, tau=tau, hue=hue, ylabel="gap" if k % ncols == 0 else "")
        ax.title.set_fontsize(7)
        ax.tick_params(axis="x", labelrotation=25)
    if hue is not None:
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=len(labels))
    return fig


def heatmap(
    ax: plt.Axes,
    data: pd.DataFrame,
    *,
    signed: bool = True,
    fmt: str = ".2f",
    cbar_label: str = "Kendall τ",
    annot: bool = True,
) -> None:
    """A labelled heatmap of a matrix (rows × columns of ``data``).

    Args:
        ax: Axes.
        data: Values; index and columns become the tick labels. NaN cells are blank.
        signed: Diverging palette centred at 0 on [−1, 1] (signed τ, Fig. 3);
            otherwise a sequential palette.
        fmt: Annotation format.
        cbar_label: Colour-bar label.
        annot: Write the values in the cells.

    Raises:
        TypeError: ``data`` is not a DataFrame.
    """
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    values = data.to_numpy(dtype=float)
    kw: dict[str, Any] = (
        {"cmap": "RdBu_r", "vmin": -1, "vmax": 1} if signed else {"cmap": "viridis"}
    )
    im = ax.imshow(np.ma.masked_invalid(values), aspect="auto", interpolation="nearest", **kw)
    ax.set_xticks(np.arange(values.shape[1]), [str(c) for c in data.columns])
    ax.set_yticks(np.arange(values.shape[0]), [str(i) for i in data.index])
    ax.tick_params(length=0)
    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_visible(False)
    if annot:
        norm = im.norm
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                dark = abs(norm(v) - 0.5) > 0.3 if signed else norm(v) < 0.5
                ax.text(
                    j,
                    i,
                    format(v, fmt),
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if dark else "black",
                )
    ax.figure.colorbar(im, ax=ax, label=cbar_label, shrink=0.9)


def density_plot(
    ax: plt.Axes,
    grid: np.ndarray,
    density: np.ndarray,
    *,
    label: str | None = None,
    title: str | None = None,
    floor: float = 1e-8,
    color: str | None = None,
    linestyle: str = "-",
) -> None:
    """A spectral density on a log-density axis (the PyHessian-style plots of Figs. 1, 4–7).

    Args:
        ax: Axes.
        grid: Eigenvalue grid.
        density: Density on the grid (integrating to one), same shape as ``grid``.
        label: Legend label.
        title: Panel title (e.g. the layer and its spectral type).
        floor: Densities below this are drawn at the floor (log axis); > 0.
        color: Line colour.
        linestyle: Line style.

    Raises:
        ValueError: ``grid`` and ``density`` differ in shape, or ``floor <= 0``.
    """
    g = np.asarray(grid, dtype=float)
    d = np.asarray(density, dtype=float)
    if g.shape != d.shape:
        raise ValueError(f"grid and density must have the same shape, got {g.shape} and {d.shape}")
    if not floor > 0:
        raise ValueError(f"floor must be > 0, got {floor!r}")
    ax.plot(g, np.maximum(d, floor), label=label, color=color, lw=1.0, ls=linestyle)
    ax.set_ylim(bottom=floor)
    log_axis(ax, "y")
    ax.xaxis.set_major_locator(ticker.MaxNLocator(nbins=3, min_n_ticks=2))
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    if title:
        ax.set_title(title)
