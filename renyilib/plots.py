"""Figure styles shared by the book's notebooks.

* :func:`scatter_tau` — one panel of the Figs. 2 / 8–13 grids: a measure
  against the generalization gap, Kendall τ in the title.
* :func:`scatter_grid` — many such panels in a grid.
* :func:`heatmap` — a labelled matrix (Fig. 3's signed-τ summary, Fig. 14's
  mean τ against α), diverging colours centred at 0 for signed values.
* :func:`density_plot` — a spectral density on a log-density axis (Fig. 1 a–c,
  Figs. 4–7).
* :func:`set_style` — the common matplotlib/seaborn style.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = ["density_plot", "heatmap", "scatter_grid", "scatter_tau", "set_style"]


def set_style() -> None:
    """Seaborn "ticks" style with small fonts suited to many-panel figures."""
    import seaborn as sns

    sns.set_theme(style="ticks", context="paper", font_scale=0.9)
    plt.rcParams.update({"figure.dpi": 110, "savefig.bbox": "tight", "axes.titlesize": 9})


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
        hue: Optional per-model category (e.g. optimizer) for colours.
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
        ax.scatter(x, gap, s=14, alpha=0.8, color="tab:blue", edgecolor="none")
    else:
        hue = np.asarray(hue)
        for k, h in enumerate(pd.unique(hue)):
            sel = hue == h
            ax.scatter(
                x[sel], gap[sel], s=14, alpha=0.8, color=f"C{k}", edgecolor="none", label=str(h)
            )
    if logx and np.all(x[np.isfinite(x)] > 0):
        ax.set_xscale("log")
    ax.set_title(f"{title}\nτ = {tau:.3f}" if np.isfinite(tau) else f"{title}\nτ = n/a")
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.tick_params(labelsize=7)
    return float(tau)


def scatter_grid(
    panels: Sequence[tuple[str, np.ndarray, np.ndarray, float | None]],
    *,
    ncols: int = 6,
    panel_size: tuple[float, float] = (2.2, 2.0),
    hue: Sequence[Any] | None = None,
) -> plt.Figure:
    """A grid of :func:`scatter_tau` panels (the layout of Figs. 2, 8–13).

    Args:
        panels: ``(title, x, gap, tau)`` per panel (``tau=None``: computed).
        ncols: Panels per row.
        panel_size: Inches per panel.
        hue: Per-model categories shared by all panels (legend on the first).

    Returns:
        The figure.
    """
    if not panels:
        raise ValueError("panels must not be empty")
    ncols = min(ncols, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(panel_size[0] * ncols, panel_size[1] * nrows), squeeze=False
    )
    for k, ax in enumerate(axes.ravel()):
        if k >= len(panels):
            ax.axis("off")
            continue
        title, x, gap, tau = panels[k]
        scatter_tau(ax, x, gap, title, tau=tau, hue=hue, ylabel="gap" if k % ncols == 0 else "")
    if hue is not None:
        axes[0, 0].legend(fontsize=6, frameon=False)
    fig.tight_layout()
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
    """
    import seaborn as sns

    kw: dict[str, Any] = (
        {"cmap": "RdBu_r", "vmin": -1, "vmax": 1, "center": 0} if signed else {"cmap": "viridis"}
    )
    sns.heatmap(
        data.astype(float),
        ax=ax,
        annot=annot,
        fmt=fmt,
        annot_kws={"fontsize": 6},
        cbar_kws={"label": cbar_label},
        **kw,
    )
    ax.tick_params(labelsize=7)


def density_plot(
    ax: plt.Axes,
    grid: np.ndarray,
    density: np.ndarray,
    *,
    label: str | None = None,
    title: str | None = None,
    floor: float = 1e-8,
    color: str | None = None,
) -> None:
    """A spectral density on a log-density axis (the PyHessian-style plots of Figs. 1, 4–7).

    Args:
        ax: Axes.
        grid: Eigenvalue grid.
        density: Density on the grid (integrating to one).
        label: Legend label.
        title: Panel title (e.g. the layer and its spectral type).
        floor: Densities below this are drawn at the floor (log axis).
        color: Line colour.
    """
    d = np.maximum(np.asarray(density, dtype=float), floor)
    ax.semilogy(grid, d, label=label, color=color, lw=1.0)
    ax.set_ylim(bottom=floor)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density (log)")
    if title:
        ax.set_title(title)
    ax.tick_params(labelsize=7)
