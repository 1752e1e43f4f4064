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

from renyilib.plots import FIGURE_WIDTH, heatmap, subplots

__all__ = ["selection_bars", "tau_against_alpha", "tau_heatmap"]


def _check_columns(df: pd.DataFrame, columns: Sequence[str], arg: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{arg} must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{arg} lacks columns {missing}; it has {list(df.columns)}")


def tau_against_alpha(sweep: pd.DataFrame, order: Sequence[str]) -> plt.Figure:
    """Kendall τ with the gap against the Rényi order α, one line per block ("all" in black).

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
    for b in order:
        s = sweep[sweep["block"] == b]
        kw = {"color": "black", "lw": 1.6} if b == "all" else {"lw": 1.0}
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
