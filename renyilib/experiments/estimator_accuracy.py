"""The estimator accuracy targets of issue 16: H_α error against Lanczos steps, per SLQ variant.

``benchmarks/bench_accuracy.py`` measures, for every block of the reference
workload and for synthetic heavy-tailed spectra, the signed relative error
:math:`(\\hat H_\\alpha - H_\\alpha) / |H_\\alpha|` of a set of SLQ variants
(Gauss, Gauss-Radau, deflation, Lanczos on :math:`H^2`, the Gauss/Radau
average) at ``l = 100`` probes and ``m`` from 15 to 60, over several probe
seeds. This module reads that table and judges it against the targets:

* :math:`\\le 2\\%` at :math:`\\alpha = 0.5`,
* :math:`\\le 1\\%` at every :math:`\\alpha \\ge 1.5`,

on every source (block or spectrum) and at **every** swept ``m``. The error of
one (source, variant, m, α) is the root mean square over probe seeds,
:math:`\\sqrt{\\frac1S\\sum_s e_s^2}` (the typical error of one run; its bias
and spread are kept too), and a variant's error in a class is the worst over
sources, ``m`` and the α of the class.

:func:`accuracy_results` loads the committed files, :func:`error_table`
aggregates seeds, :func:`target_check` gives the pass/fail table,
:func:`accuracy_verdict` the sentence the chapter prints and
:func:`accuracy_figure` the frontier.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from renyilib.experiments.io import read_results
from renyilib.plots import log_axis, subplots

__all__ = [
    "ALPHA_CLASSES",
    "accuracy_figure",
    "accuracy_results",
    "accuracy_verdict",
    "error_table",
    "passing_variants",
    "target_check",
]

#: The target classes: name -> (predicate on α, relative-error target).
ALPHA_CLASSES: dict[str, tuple[Any, float]] = {
    "α = 0.5": (lambda a: np.isclose(a, 0.5), 0.02),
    "α ≥ 1.5": (lambda a: a >= 1.5 - 1e-12, 0.01),
}

_REQUIRED = ("group", "source", "variant", "steps", "seed", "alpha", "rel_error", "products")


def _check_table(table: pd.DataFrame, columns: Sequence[str] = _REQUIRED) -> None:
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table: expected a pandas DataFrame, got {type(table).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"table: missing columns {missing} (has {list(table.columns)})")


def accuracy_results(root: str | os.PathLike) -> dict[str, Any] | None:
    """The committed accuracy benchmark (``benchmarks/results/accuracy.{csv,meta.json}``).

    Written by ``benchmarks/bench_accuracy.py``.

    Args:
        root: Project root holding ``benchmarks/results/``.

    Returns:
        ``None`` when either file is missing, else ``{"table": DataFrame, "meta": dict}``.
    """
    files = read_results(Path(root) / "benchmarks" / "results", "accuracy")
    return None if files is None else dict(zip(("table", "meta"), files))


def error_table(table: pd.DataFrame) -> pd.DataFrame:
    """Aggregate the probe seeds of every (group, source, variant, m, α).

    Args:
        table: Rows of ``bench_accuracy.py`` (``group, source, variant, steps,
            seed, alpha, rel_error, products``).

    Returns:
        One row per (group, source, variant, steps, alpha) with ``rms``
        (:math:`\\sqrt{\\text{mean}_s e_s^2}`), ``max_abs`` (largest
        :math:`|e_s|`), ``bias`` (mean :math:`e_s`), ``spread`` (standard
        deviation over seeds, ``ddof=1``; NaN for one seed), ``seeds``,
        ``products`` (mean over seeds) and, when the table has ``stderr`` and
        ``exact``, ``stderr`` (the mean jackknife standard error of one run,
        relative to :math:`|H_\alpha|`: the probe noise). A seed whose estimate is NaN makes
        every statistic NaN (a failed run never passes).
    """
    _check_table(table)
    keys = ["group", "source", "variant", "steps", "alpha"]
    g = table.groupby(keys, sort=False)

    def nan_if_any(series: pd.Series, fn) -> float:
        v = series.to_numpy(dtype=float)
        return float("nan") if np.isnan(v).any() else float(fn(v))

    out = g["rel_error"].agg(
        rms=lambda s: nan_if_any(s, lambda v: np.sqrt(np.mean(v**2))),
        max_abs=lambda s: nan_if_any(s, lambda v: np.abs(v).max()),
        bias=lambda s: nan_if_any(s, np.mean),
        spread=lambda s: nan_if_any(s, lambda v: np.std(v, ddof=1) if len(v) > 1 else np.nan),
        seeds="size",
    )
    out["products"] = g["products"].mean()
    if "stderr" in table.columns and "exact" in table.columns:
        out["stderr"] = g["stderr"].mean() / g["exact"].first().abs()
    return out.reset_index()


def target_check(table: pd.DataFrame, stat: str = "rms") -> pd.DataFrame:
    """Worst error per (variant, group, α-class) over sources and m, against the targets.

    Args:
        table: Rows of ``bench_accuracy.py`` (see :func:`error_table`).
        stat: The per-(source, m, α) error: ``"rms"`` over seeds (default) or
            ``"max_abs"`` (the worst seed).

    Returns:
        One row per (variant, group, alpha_class): ``target``, ``worst`` (the
        largest error; NaN if any run failed), where it occurred
        (``worst_source``, ``worst_steps``, ``worst_alpha``), ``error_m_min``
        and ``error_m_max`` (the worst error over sources and the class's α at
        the smallest and at the largest m, showing whether more steps help),
        ``products_min`` / ``products_max`` (the cost range over m, mean over
        sources), ``stderr_at_worst`` (the relative jackknife standard error
        of one run there: the probe noise alone), ``passed`` (``worst <= target``; False for NaN), ``sources``,
        and ``steps`` (the m values, as a string).
    """
    if stat not in ("rms", "max_abs"):
        raise ValueError(f"stat must be 'rms' or 'max_abs', got {stat!r}")
    err = error_table(table)
    rows = []
    for (variant, group), g in err.groupby(["variant", "group"], sort=False):
        for cls, (pred, target) in ALPHA_CLASSES.items():
            c = g[pred(g["alpha"].to_numpy(dtype=float))]
            if c.empty:
                continue
            vals = c[stat].to_numpy(dtype=float)
            failed = bool(np.isnan(vals).any())
            i = int(np.nanargmax(vals)) if not np.isnan(vals).all() else 0
            w = c.iloc[i]
            m_lo, m_hi = c["steps"].min(), c["steps"].max()
            by_m = c.groupby("steps")[stat].max()
            cost = c.groupby("steps")["products"].mean()
            worst = float("nan") if failed else float(vals[i])
            rows.append(
                {
                    "variant": variant,
                    "group": group,
                    "alpha_class": cls,
                    "target": target,
                    "worst": worst,
                    "worst_source": w["source"],
                    "worst_steps": int(w["steps"]),
                    "worst_alpha": float(w["alpha"]),
                    "error_m_min": float(by_m[m_lo]),
                    "error_m_max": float(by_m[m_hi]),
                    "products_min": float(cost.min()),
                    "products_max": float(cost.max()),
                    "stderr_at_worst": float(w["stderr"]) if "stderr" in c else float("nan"),
                    "passed": bool(worst <= target),
                    "sources": int(c["source"].nunique()),
                    "steps": ",".join(str(int(s)) for s in sorted(c["steps"].unique())),
                }
            )
    return pd.DataFrame(rows)


def _passing(check: pd.DataFrame) -> list[str]:
    """Variants that pass every (group, α-class) row they have, and have all of them."""
    need = check.groupby("variant").size().max() if len(check) else 0
    ok = check.groupby("variant", sort=False).agg(n=("passed", "size"), all_ok=("passed", "all"))
    return [v for v, r in ok.iterrows() if r["all_ok"] and r["n"] == need]


def passing_variants(table: pd.DataFrame, sources: Sequence[str], stat: str = "rms") -> list[str]:
    """Variants that meet both targets at every m on the given sources only.

    Args:
        table: Rows of ``bench_accuracy.py``.
        sources: The sources (blocks or spectra) to judge on, e.g. the layer blocks.
        stat: As in :func:`target_check`.

    Returns:
        The passing variants, in table order (possibly empty).

    Raises:
        ValueError: A source is not in the table.
    """
    unknown = sorted(set(sources) - set(table["source"]))
    if unknown:
        raise ValueError(f"sources: not in the table: {unknown}")
    return _passing(target_check(table[table["source"].isin(list(sources))], stat))


def _pct(x: float) -> str:
    return "failed" if not np.isfinite(x) else f"{100 * x:.2f} %"


def accuracy_verdict(check: pd.DataFrame, default: str = "gauss") -> str:
    """The sentence the chapter prints, generated from :func:`target_check`.

    Says which variants, if any, meet both targets at every swept m on every
    source of every group, with their worst errors and cost; otherwise, for
    the default and for the variant closest to the targets (smallest largest
    ratio of worst error to target), where and by how much each fails.

    Args:
        check: :func:`target_check` output.
        default: The default variant's name.

    Returns:
        One paragraph of plain text.
    """
    _check_table(check, ("variant", "group", "alpha_class", "target", "worst", "passed"))
    if check.empty:
        raise ValueError("check: empty (no variant was measured)")
    steps = sorted({int(s) for t in check["steps"] for s in str(t).split(",")})
    m_text = f"m = {steps[0]}…{steps[-1]}" if len(steps) > 1 else f"m = {steps[0]}"
    groups = list(dict.fromkeys(check["group"]))
    n_src = {g: int(check[check["group"] == g]["sources"].max()) for g in groups}
    where = " and ".join(f"{n_src[g]} {g} sources" for g in groups)
    targets = ", ".join(
        f"{100 * t:g} % at {c}" for c, t in dict(zip(check["alpha_class"], check["target"])).items()
    )
    ratio = (check["worst"] / check["target"]).fillna(np.inf)
    score = ratio.groupby(check["variant"]).max()

    def describe(variant: str) -> str:
        c = check[check["variant"] == variant]
        parts = []
        for _, r in c.iterrows():
            s = f"{_pct(r['worst'])} at {r['alpha_class']} on the {r['group']} ({r['worst_source']}, m = {r['worst_steps']}"
            se = r.get("stderr_at_worst", np.nan)
            s += f", probe noise {_pct(se)})" if np.isfinite(se) else ")"
            if not r["passed"]:
                s += (
                    f", over by {_pct(r['worst'] - r['target'])}" if np.isfinite(r["worst"]) else ""
                )
            parts.append(s)
        return "; ".join(parts)

    passing = _passing(check)
    head = f"Targets {targets}, at every {m_text}, on {where}."
    if passing:
        best = sorted(passing, key=lambda v: score[v])
        text = [
            head,
            f"{len(passing)} variant(s) meet both at every m: "
            + ", ".join(f"{v} (worst/target {score[v]:.2f})" for v in best)
            + ".",
        ]
        for v in best[:2]:
            c = check[check["variant"] == v]
            text.append(
                f"{v}: {describe(v)}; cost {c['products_min'].min():,.0f}–{c['products_max'].max():,.0f} products."
            )
    else:
        best = score.idxmin()
        text = [head, "No variant meets both at every m."]
        text.append(f"The closest is {best} (worst/target {score[best]:.2f}): {describe(best)}.")
    if default in score.index and default not in passing:
        c = check[check["variant"] == default]
        # "Grows": more than 10 % (relative) and 0.1 point above the smallest m's error.
        grows = c[c["error_m_max"] > np.maximum(1.1 * c["error_m_min"], c["error_m_min"] + 1e-3)]
        text.append(f"The default ({default}) fails: {describe(default)}.")
        if len(grows):
            text.append(
                "Its error grows with m in "
                + "; ".join(
                    f"{r['alpha_class']} on the {r['group']} ({_pct(r['error_m_min'])} at the smallest m, "
                    f"{_pct(r['error_m_max'])} at the largest)"
                    for _, r in grows.iterrows()
                )
                + "."
            )
    elif default in passing:
        text.append(f"The default ({default}) is among them.")
    return " ".join(text)


def accuracy_figure(
    table: pd.DataFrame, variants: Sequence[str] | None = None, stat: str = "rms"
) -> plt.Figure:
    """Error (%) against Lanczos steps m, per source group and α-class, one line per variant.

    Rows: the α-classes (:data:`ALPHA_CLASSES`; the worst α of the class);
    columns: the source groups (worst over the group's sources). Log y; the
    targets dotted.

    Args:
        table: Rows of ``bench_accuracy.py`` (see :func:`error_table`).
        variants: Variants to draw (default: all, in table order).
        stat: ``"rms"`` or ``"max_abs"`` (see :func:`target_check`).

    Returns:
        The figure.
    """
    if stat not in ("rms", "max_abs"):
        raise ValueError(f"stat must be 'rms' or 'max_abs', got {stat!r}")
    err = error_table(table)
    names = list(dict.fromkeys(err["variant"])) if variants is None else list(variants)
    unknown = [v for v in names if v not in set(err["variant"])]
    if unknown:
        raise ValueError(f"variants: not in the table: {unknown}")
    groups = list(dict.fromkeys(err["group"]))
    classes = list(ALPHA_CLASSES)
    fig, axes = subplots(len(classes), len(groups), aspect=0.75, sharex=True)
    cmap = plt.get_cmap("tab20")
    for j, group in enumerate(groups):
        for i, cls in enumerate(classes):
            ax = axes[i, j]
            pred, target = ALPHA_CLASSES[cls]
            g = err[(err["group"] == group) & pred(err["alpha"].to_numpy(dtype=float))]
            for k, v in enumerate(names):
                s = g[g["variant"] == v].groupby("steps")[stat].max()
                if s.empty:
                    continue
                ls = "--" if v.startswith("H2") else "-"
                lw = 2.2 if k == 0 else 1.0
                ax.plot(s.index, 100 * np.maximum(s.to_numpy(), 1e-5), ls, marker="o", ms=2.5,
                        lw=lw, color=cmap(k % 20), label=v)  # fmt: skip
            ax.axhline(100 * target, color="0.3", ls=":", lw=1.2)
            log_axis(ax, "y")
            ax.set_title(f"{group}, {cls}", fontsize=9)
            if i == len(classes) - 1:
                ax.set_xlabel("Lanczos steps m")
        axes[0, j].set_xticks(sorted(err["steps"].unique()))
    for i in range(len(classes)):
        axes[i, 0].set_ylabel(f"worst {stat} rel. error (%)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=7, ncols=1)
    return fig
