"""Statistics of a sharpness study: Kendall τ, α selection, spectral types.

The correlation study of the paper (Sec. 5, App. H) ranks the models of one
task (same architecture and data, different optimizer / learning rate / batch
size / weight decay) by a sharpness measure and by their generalization gap
(test loss − train loss) and reports Kendall's rank correlation (Eq. 8)

    τ(x, y) = 2 / (N (N − 1)) · Σ_{i<j} sign(x_i − x_j) · sign(y_i − y_j),

computed here with :func:`scipy.stats.kendalltau` (τ-b, which equals Eq. 8 when
there are no ties) together with its two-sided p-value.

Three things are built on it:

* :func:`correlation_table` — τ between each measure and the gap, within a
  task, per layer and for all layers (Figs. 2, 3, 8–13).
* The α sweep: :func:`alpha_sweep` gives τ for every Rényi order of the grid
  (all orders come from the same per-run quadratures), :func:`best_alpha` the
  order with the highest τ per layer (what the paper reports, Sec. 5.2 and
  G.4), and :func:`split_selection` the honest version — α chosen on a random
  half of the models and τ reported on the other half, over seeded splits —
  which measures how much choosing α on the same models inflates τ.
* Spectral types (Sec. 4.1): :func:`spectral_type` labels a layer's spectrum
  "multi-cluster" (predicts α < 1) or "uniform" (predicts α > 1) by a
  deterministic rule on its quadrature, and :func:`type_match_table` compares
  the prediction with the empirically best α (the paper's Fig. 1d: 1451 matches
  in 1630 cases).

Data layout. Functions take *long* pandas DataFrames: one row per model (run)
and grouping key (task, block, α), with one column per measure and a column
with the target (default ``"gap"``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "PAPER_ALPHA_RANGES",
    "KendallResult",
    "alpha_sweep",
    "best_alpha",
    "bootstrap_tau",
    "check_columns",
    "correlation_table",
    "granulated_tau",
    "in_paper_range",
    "kendall_tau",
    "kendall_tau_a",
    "predicted_side",
    "spectral_type",
    "spectral_types",
    "split_selection",
    "tau_under_target_noise",
    "type_match_table",
]

#: The α ranges used when selecting the best order (App. G.4: "we restrict α to
#: (0, 0.9) and (1.2, 3.0]" because negative Ritz values make α near 1
#: unstable). The OCR leaves the bracket at 0.9 and 1.2 uncertain; both grid
#: points are listed in G.4's grid, so this reading includes them.
PAPER_ALPHA_RANGES: tuple[tuple[float, float], ...] = ((0.0, 0.9), (1.2, 3.0))


@dataclass(frozen=True)
class KendallResult:
    """Kendall's τ-b, its two-sided p-value and the number of pairs used."""

    tau: float
    pvalue: float
    n: int


def kendall_tau(
    measure: Sequence[float] | np.ndarray, gap: Sequence[float] | np.ndarray
) -> KendallResult:
    """Kendall rank correlation (Eq. 8) between a measure and the generalization gap.

    Args:
        measure: Sharpness values of N models.
        gap: Generalization gaps of the same N models, same order.

    Returns:
        :class:`KendallResult` with ``tau`` (scipy's τ-b: Eq. 8 when no ties),
        the two-sided ``pvalue`` and ``n``, the number of models used. Models
        with a non-finite value in either input are left out; with fewer than
        3 models left, or a constant input, ``tau`` and ``pvalue`` are NaN.

    Raises:
        ValueError: If the inputs are not 1-D or differ in length.
    """
    x = np.asarray(measure, dtype=float)
    y = np.asarray(gap, dtype=float)
    if x.ndim != 1 or y.ndim != 1:
        raise ValueError(f"measure and gap must be 1-D, got shapes {x.shape} and {y.shape}")
    if x.shape != y.shape:
        raise ValueError(f"measure and gap must have the same length, got {x.size} and {y.size}")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = int(x.size)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return KendallResult(float("nan"), float("nan"), n)
    res = stats.kendalltau(x, y)
    return KendallResult(float(res.statistic), float(res.pvalue), n)


def kendall_tau_a(
    measure: Sequence[float] | np.ndarray, gap: Sequence[float] | np.ndarray
) -> float:
    """The paper's Eq. 8 as printed (τ-a): :math:`\\frac{2}{N(N-1)}\\sum_{i<j}\\operatorname{sign}(x_i-x_j)\\operatorname{sign}(y_i-y_j)`.

    Equal to :func:`kendall_tau`'s τ-b when neither input has ties; with ties
    τ-a is smaller in magnitude (tied pairs count as zero in the numerator but
    not in the denominator). Non-finite pairs are left out; NaN below 2 models.
    """
    x = np.asarray(measure, dtype=float)
    y = np.asarray(gap, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"measure and gap must be 1-D of equal length, got {x.shape}, {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = x.size
    if n < 2:
        return float("nan")
    i, j = np.triu_indices(n, k=1)
    return float(np.sum(np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])) / (n * (n - 1) / 2))


def bootstrap_tau(
    measure: Sequence[float] | np.ndarray,
    gap: Sequence[float] | np.ndarray,
    num_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Kendall τ-b with its uncertainty from a bootstrap over models.

    Models (pairs ``(measure_i, gap_i)``) are resampled with replacement
    ``num_resamples`` times; τ-b of each resample gives the standard error and
    the percentile interval at ``level``. Resamples with a constant input (τ
    undefined) are dropped and counted.

    Returns:
        ``{"tau", "stderr", "low", "high", "n", "resamples"}`` where ``tau`` is
        the τ-b of the original sample and ``resamples`` the number of usable
        resamples.

    Raises:
        ValueError: ``num_resamples`` < 2 or ``level`` outside (0, 1).
    """
    if not isinstance(num_resamples, int) or num_resamples < 2:
        raise ValueError(f"num_resamples must be an int >= 2, got {num_resamples!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    x = np.asarray(measure, dtype=float)
    y = np.asarray(gap, dtype=float)
    base = kendall_tau(x, y)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    rng = np.random.default_rng(seed)
    taus = []
    for _ in range(num_resamples):
        idx = rng.integers(0, x.size, x.size)
        t = kendall_tau(x[idx], y[idx]).tau if x.size >= 3 else float("nan")
        if np.isfinite(t):
            taus.append(t)
    taus_arr = np.asarray(taus)
    if taus_arr.size < 2:
        return {"tau": base.tau, "stderr": float("nan"), "low": float("nan"),
                "high": float("nan"), "n": base.n, "resamples": int(taus_arr.size)}  # fmt: skip
    q = (1.0 - level) / 2.0
    return {
        "tau": base.tau,
        "stderr": float(taus_arr.std(ddof=1)),
        "low": float(np.quantile(taus_arr, q)),
        "high": float(np.quantile(taus_arr, 1.0 - q)),
        "n": base.n,
        "resamples": int(taus_arr.size),
    }


def tau_under_target_noise(
    measure: Sequence[float] | np.ndarray, target_draws: np.ndarray
) -> dict[str, float]:
    """How much τ moves when the target itself is noisy.

    A generalization gap measured on a finite test set is an estimate; given
    ``target_draws`` of shape ``(B, N)`` (B plausible gap vectors of the N
    models, e.g. from a bootstrap over test points), τ-b between ``measure``
    and each draw gives the spread of τ that the target's own noise causes.

    Returns:
        ``{"mean", "std", "low", "high"}`` of τ over the draws (2.5% / 97.5%
        quantiles), NaN when fewer than two draws give a defined τ.
    """
    draws = np.asarray(target_draws, dtype=float)
    x = np.asarray(measure, dtype=float)
    if draws.ndim != 2 or draws.shape[1] != x.size:
        raise ValueError(
            f"target_draws must have shape (B, {x.size}) for {x.size} models, got {draws.shape}"
        )
    taus = np.array([kendall_tau(x, d).tau for d in draws])
    taus = taus[np.isfinite(taus)]
    if taus.size < 2:
        return dict.fromkeys(("mean", "std", "low", "high"), float("nan"))
    return {
        "mean": float(taus.mean()),
        "std": float(taus.std(ddof=1)),
        "low": float(np.quantile(taus, 0.025)),
        "high": float(np.quantile(taus, 0.975)),
    }


def granulated_tau(
    df: pd.DataFrame, measure: str, axes: Sequence[str], target: str = "gap"
) -> pd.DataFrame:
    """Granulated Kendall τ of Jiang et al. (2019, "Fantastic generalization measures", Eq. 4).

    For each hyper-parameter axis :math:`i`, models are grouped by the values
    of all *other* axes; within each group (models that differ only in axis
    :math:`i`) Kendall's τ as Jiang et al. define it (τ-a, :func:`kendall_tau_a`:
    tied pairs count zero) is computed, and :math:`\\psi_i` is its mean over
    the groups. The
    granulated coefficient is :math:`\\Psi = \\frac{1}{|axes|}\\sum_i \\psi_i`. A quantity that only
    separates two values of one axis (e.g. SGD from Adam) can reach a large
    overall τ but gets no credit within the groups of the other axes.

    Args:
        df: One row per model with the ``axes``, ``measure`` and ``target`` columns.
        measure: The sharpness column.
        axes: Hyper-parameter columns (e.g. ``["optimizer", "lr", "batch_size", "weight_decay"]``).
        target: The generalization column.

    Returns:
        One row per axis (``axis, psi, groups``: mean τ and the number of
        groups in which the axis varies; ψ is NaN when there is none) and a
        last row ``axis="granulated"`` with Ψ (mean of the defined ψ_i) and
        the total number of groups.

    Raises:
        KeyError: A named column is missing.
        ValueError: ``axes`` is empty.
    """
    axes = list(axes)
    if not axes:
        raise ValueError("axes must name at least one hyper-parameter column")
    check_columns(df, [*axes, measure, target])
    rows = []
    for axis in axes:
        others = [a for a in axes if a != axis]
        groups = df.groupby(others, sort=False, dropna=False) if others else [((), df)]
        taus = []
        for _, sub in groups:
            if sub[axis].nunique() < 2:
                continue
            t = kendall_tau_a(sub[measure].to_numpy(float), sub[target].to_numpy(float))
            if np.isfinite(t):
                taus.append(t)
        rows.append({"axis": axis, "psi": float(np.mean(taus)) if taus else float("nan"),
                     "groups": len(taus)})  # fmt: skip
    psis = [r["psi"] for r in rows if np.isfinite(r["psi"])]
    rows.append({"axis": "granulated", "psi": float(np.mean(psis)) if psis else float("nan"),
                 "groups": sum(r["groups"] for r in rows)})  # fmt: skip
    return pd.DataFrame(rows, columns=["axis", "psi", "groups"])


def check_columns(df: pd.DataFrame, columns: Iterable[str], arg: str = "df") -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(f"{arg} lacks columns {missing}; it has {list(df.columns)}")


def correlation_table(
    df: pd.DataFrame,
    measures: Sequence[str],
    target: str = "gap",
    by: Sequence[str] = ("task", "block"),
) -> pd.DataFrame:
    """Kendall τ between each measure column and ``target`` within each group.

    Args:
        df: One row per model (and per group key), e.g. one row per (run, block)
            for per-layer Rényi sharpness, or one row per run for the baselines.
        measures: Columns to correlate with ``target``.
        target: The generalization-gap column.
        by: Grouping columns (``[]`` for one group); τ is computed across the
            rows of each group, i.e. across models.

    Returns:
        DataFrame with the ``by`` columns, ``measure``, ``tau``, ``pvalue`` and
        ``n`` (models used), one row per group × measure.

    Raises:
        KeyError: A named column is missing.
        ValueError: ``measures`` is empty.
    """
    by = list(by)
    measures = list(measures)
    if not measures:
        raise ValueError("measures must name at least one column")
    check_columns(df, [*by, *measures, target])
    rows: list[dict[str, Any]] = []
    groups = df.groupby(by, sort=False) if by else [((), df)]
    for key, sub in groups:
        key = key if isinstance(key, tuple) else (key,)
        for m in measures:
            res = kendall_tau(sub[m].to_numpy(float), sub[target].to_numpy(float))
            rows.append(
                {
                    **dict(zip(by, key)),
                    "measure": m,
                    "tau": res.tau,
                    "pvalue": res.pvalue,
                    "n": res.n,
                }
            )
    return pd.DataFrame(rows, columns=[*by, "measure", "tau", "pvalue", "n"])


def in_paper_range(alpha: float | np.ndarray) -> np.ndarray:
    """Whether α lies in the ranges the paper selects from (:data:`PAPER_ALPHA_RANGES`)."""
    a = np.asarray(alpha, dtype=float)
    ok = np.zeros(a.shape, dtype=bool)
    for lo, hi in PAPER_ALPHA_RANGES:
        ok |= (a > lo) & (a <= hi) if lo == 0.0 else (a >= lo) & (a <= hi)
    return ok


def alpha_sweep(
    profiles: pd.DataFrame,
    value: str = "sharpness",
    target: str = "gap",
    by: Sequence[str] = ("task", "block"),
    alpha: str = "alpha",
) -> pd.DataFrame:
    """Kendall τ of Rényi sharpness against the gap for every α of the grid.

    Args:
        profiles: Long table of per-run Rényi profiles: one row per (run, block,
            α) with the ``value`` (default ``sharpness`` = −H_α) and ``target``
            columns, plus the ``by`` columns.
        value: Column correlated with the gap.
        target: Generalization-gap column.
        by: Grouping columns besides ``alpha``.
        alpha: Name of the α column.

    Returns:
        DataFrame with ``by``, ``alpha``, ``tau``, ``pvalue``, ``n``.
    """
    out = correlation_table(profiles, [value], target=target, by=[*by, alpha])
    return out.drop(columns="measure")


def best_alpha(
    sweep: pd.DataFrame,
    by: Sequence[str] = ("task", "block"),
    restrict: bool = True,
    criterion: str = "signed",
) -> pd.DataFrame:
    """The α with the highest τ in each group (the paper's per-layer reporting).

    Args:
        sweep: Output of :func:`alpha_sweep`.
        by: Grouping columns.
        restrict: Choose only among α in :data:`PAPER_ALPHA_RANGES` (App. G.4).
        criterion: ``"signed"`` (highest τ: a sharper model should generalize
            worse, the paper's reading) or ``"abs"`` (largest |τ|).

    Returns:
        One row per group: ``by``, ``alpha`` (the best order; ties: the
        smallest), ``tau``, ``pvalue``, ``n``, and ``side``: ``"<1"`` or
        ``">1"``, or ``"both"`` when the best score is reached (within 1e-12)
        by orders on both sides of 1 — common with few models, where τ takes
        few values and many α give the same ranking. Groups whose τ is NaN for
        every α are left out.

    Raises:
        ValueError: Unknown ``criterion``.
    """
    if criterion not in ("signed", "abs"):
        raise ValueError(f"criterion must be 'signed' or 'abs', got {criterion!r}")
    by = list(by)
    check_columns(sweep, [*by, "alpha", "tau"], "sweep")
    s = sweep[in_paper_range(sweep["alpha"].to_numpy())] if restrict else sweep
    s = s[np.isfinite(s["tau"].to_numpy(float))].copy()
    s["_score"] = s["tau"].abs() if criterion == "abs" else s["tau"]
    # Ties: the smallest α wins (stable sort on α, then idxmax takes the first).
    s = s.sort_values([*by, "alpha"], kind="stable")
    idx = s.groupby(by, sort=False)["_score"].idxmax() if by else [s["_score"].idxmax()]
    best = s.loc[list(idx)].reset_index(drop=True)
    top = (
        s.merge(best[[*by, "_score"]].rename(columns={"_score": "_top"}), on=by)
        if by
        else s.assign(_top=best["_score"].iloc[0])
    )
    at_top = top[top["_score"] >= top["_top"] - 1e-12]
    if by:
        below = (
            at_top.assign(_lt=at_top["alpha"] < 1.0)
            .groupby(by)["_lt"]
            .agg(["any", "all"])
            .reset_index()
        )
        best = best.merge(below, on=by, how="left")
    else:
        lt = at_top["alpha"] < 1.0
        best["any"], best["all"] = bool(lt.any()), bool(lt.all())
    best["side"] = np.where(best["all"], "<1", np.where(best["any"], "both", ">1"))
    return best.drop(columns=["_score", "any", "all"])


def _pair_signs(v: np.ndarray) -> np.ndarray:
    """sign(v_i − v_j) for the last axis: shape ``(..., n, n)``."""
    return np.sign(v[..., :, None] - v[..., None, :])


def _tau_b_subsets(sv: np.ndarray, sg: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Kendall τ-b of each row of ``sv`` against ``sg`` restricted to the runs in ``mask``.

    Args:
        sv: Pair signs of the measure, ``(A, n, n)`` (one row per α).
        sg: Pair signs of the gap, ``(n, n)``.
        mask: Boolean ``(n,)`` selecting the runs.

    Returns:
        ``(A,)`` τ-b values: Σ s_v s_g / √(Σ|s_v| Σ|s_g|) over the selected pairs
        (the same statistic as :func:`scipy.stats.kendalltau`); NaN for a
        constant input.
    """
    idx = np.flatnonzero(mask)
    v = sv[:, idx][:, :, idx]
    g = sg[idx][:, idx]
    num = (v * g).sum(axis=(1, 2))
    den = np.sqrt(np.abs(v).sum(axis=(1, 2)) * np.abs(g).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def split_selection(
    profiles: pd.DataFrame,
    n_splits: int = 100,
    seed: int = 0,
    value: str = "sharpness",
    target: str = "gap",
    by: Sequence[str] = ("task", "block"),
    run: str = "run",
    restrict: bool = True,
    criterion: str = "signed",
) -> pd.DataFrame:
    """Honest α selection: choose α on a random half of the models, report τ on the other half.

    For each split r = 1..R the runs of each task are shuffled with a seeded
    generator and cut in two halves A (selection, ⌊N/2⌋ runs) and B
    (evaluation, the rest). In every group (e.g. layer) α*_r = argmax_α τ_A(α)
    (ties: the smallest α); the split reports τ_A(α*_r) (in-sample, what
    reporting the best α amounts to) and τ_B(α*_r) (out of sample). Their
    difference is the selection inflation. τ is Kendall's τ-b (as
    :func:`kendall_tau`), computed from pair-sign matrices so that many splits
    are cheap.

    Args:
        profiles: Long table as for :func:`alpha_sweep`, with a ``run`` column.
        n_splits: Number of random splits R.
        seed: Seed of the split generator (same seed → same splits).
        value, target, by: As in :func:`alpha_sweep`.
        run: Column identifying the model.
        restrict, criterion: As in :func:`best_alpha`.

    Returns:
        One row per split × group: ``split``, ``by``, ``alpha`` (chosen on A),
        ``tau_select`` (τ on A at that α), ``tau_heldout`` (τ on B at that α),
        ``n_select``, ``n_heldout``. Groups where every τ_A is NaN are left out.

    Raises:
        ValueError: ``n_splits`` < 1, a bad ``criterion``, or a task with fewer than 4 runs.
    """
    if not isinstance(n_splits, int) or n_splits < 1:
        raise ValueError(f"n_splits must be a positive int, got {n_splits!r}")
    if criterion not in ("signed", "abs"):
        raise ValueError(f"criterion must be 'signed' or 'abs', got {criterion!r}")
    by = list(by)
    check_columns(profiles, [*by, "alpha", run, value, target], "profiles")
    task_cols = [c for c in by if c == "task"]
    group_cols = [c for c in by if c != "task"]
    rng = np.random.default_rng(seed)
    # per task: the runs, and per group the (α × run) matrix of pair signs
    tasks = []
    for tkey, sub in profiles.groupby(task_cols, sort=True) if task_cols else [((), profiles)]:
        runs = np.array(sorted(sub[run].unique()), dtype=object)
        if runs.size < 4:
            raise ValueError(f"split_selection needs at least 4 runs per task, got {runs.size}")
        groups = []
        for gkey, g in sub.groupby(group_cols, sort=False) if group_cols else [((), sub)]:
            if restrict:
                g = g[in_paper_range(g["alpha"].to_numpy())]
            mat = g.pivot_table(index="alpha", columns=run, values=value, aggfunc="first").reindex(
                columns=runs
            )
            gap = g.groupby(run)[target].first().reindex(runs).to_numpy(float)
            vals = mat.to_numpy(float)
            keep = np.isfinite(gap) & np.all(np.isfinite(vals), axis=0)
            sv = _pair_signs(vals)
            sv[:, ~keep, :] = 0
            sv[:, :, ~keep] = 0
            sg = _pair_signs(gap)
            sg[~keep, :] = 0
            sg[:, ~keep] = 0
            tk = tkey if isinstance(tkey, tuple) else (tkey,)
            gk = gkey if isinstance(gkey, tuple) else (gkey,)
            key = {**dict(zip(task_cols, tk)), **dict(zip(group_cols, gk))}
            groups.append((key, mat.index.to_numpy(float), sv, sg, keep))
        tasks.append((runs, groups))
    rows: list[dict[str, Any]] = []
    for r in range(n_splits):
        for runs, groups in tasks:
            perm = rng.permutation(runs.size)
            sel = np.zeros(runs.size, dtype=bool)
            sel[perm[: runs.size // 2]] = True
            for key, alphas, sv, sg, keep in groups:
                tau_a = _tau_b_subsets(sv, sg, sel)
                score = np.abs(tau_a) if criterion == "abs" else tau_a
                if not np.isfinite(score).any():
                    continue
                i = int(np.nanargmax(score))  # alphas are sorted: ties -> smallest α
                tau_b = _tau_b_subsets(sv[i : i + 1], sg, ~sel)[0]
                rows.append(
                    {
                        "split": r,
                        **key,
                        "alpha": float(alphas[i]),
                        "tau_select": float(tau_a[i]),
                        "tau_heldout": float(tau_b),
                        "n_select": int((sel & keep).sum()),
                        "n_heldout": int((~sel & keep).sum()),
                    }
                )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- spectral types


def _nodes_weights(quadrature: Any, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    if weights is None:
        if not (hasattr(quadrature, "nodes") and hasattr(quadrature, "weights")):
            raise TypeError(
                "quadrature must have .nodes and .weights (a SpectralQuadrature), "
                "or pass eigenvalues/nodes with weights="
            )
        nodes = np.asarray(quadrature.nodes, dtype=float)
        weights = np.asarray(quadrature.weights, dtype=float)
        exact = np.asarray(getattr(quadrature, "exact_nodes", np.zeros(0)), dtype=float).ravel()
        if exact.size:
            # spectral measure of a deflated quadrature: exact eigenvalues with mass one,
            # the stochastic part with mass (n - d) τ / l (see SpectralQuadrature)
            dim = int(getattr(quadrature, "dim", exact.size + weights.shape[-1]))
            probes = max(weights.shape[0] if weights.ndim == 2 else 1, 1)
            nodes = np.concatenate([exact, nodes.ravel()])
            weights = np.concatenate(
                [np.ones(exact.size), (dim - exact.size) * weights.ravel() / probes]
            )
    else:
        nodes = quadrature
    nodes = np.asarray(nodes, dtype=float).ravel()
    weights = np.asarray(weights, dtype=float).ravel()
    if nodes.shape != weights.shape:
        raise ValueError(f"nodes and weights must match, got {nodes.shape} and {weights.shape}")
    if nodes.size == 0 or not np.all(np.isfinite(nodes)) or not np.all(np.isfinite(weights)):
        raise ValueError("nodes and weights must be non-empty and finite")
    return nodes, weights


def spectral_type(
    quadrature: Any,
    weights: np.ndarray | None = None,
    *,
    floor_decades: float = 6.0,
    bandwidth: float = 0.25,
    min_share: float = 0.05,
    valley: float = 0.5,
    grid_points: int = 601,
) -> dict[str, Any]:
    """Label a spectrum "multi-cluster" or "uniform" (Sec. 4.1) by a deterministic rule.

    Sec. 4.1 calls a zero-dominant spectrum *multi-cluster* when, besides the
    near-zero bulk (Part 1) and the dominant eigenvalues (Part 3), there are
    non-negligible intermediate eigenvalues (Part 2) separated from Part 3 by
    more than the clusters' own spread; it predicts α ∈ (0, 1) for it. A
    *uniform* spectrum has only the near-zeros and one group of large
    eigenvalues; it predicts α > 1.

    The rule reads "non-negligible" as a share of the normalized spectrum
    p_i = |λ_i| / Σ_j |λ_j| that the Rényi entropy (Eq. 6) is computed on:

    1. From the quadrature (Ritz nodes θ and Gauss weights τ of every probe) form
       the trace-weighted measure μ = Σ τ |θ| δ(x − log10(|θ| / max|θ|)), on
       x ∈ [−floor_decades, 0] (nodes further below are dropped: they carry no
       trace), normalized to 1.
    2. Smooth it with a Gaussian kernel of ``bandwidth`` decades on a grid.
    3. Clusters are the local maxima of the smoothed density; two neighbouring
       maxima are merged when the minimum between them is above ``valley`` ×
       the lower of the two maxima (not separated). A cluster's share is the
       mass of μ between its bounding minima.
    4. Clusters with share ≥ ``min_share`` count; ≥ 2 such clusters →
       "multi-cluster", else "uniform".

    The rule is scale invariant (H and cH get the same label) and ignores the
    sign of eigenvalues (|H|, the convention of ``negative="abs"``).

    Args:
        quadrature: A ``SpectralQuadrature`` (``.nodes``, ``.weights``), or an
            array of eigenvalues / nodes when ``weights`` is given.
        weights: Weights of the nodes (e.g. ``1/n`` for exact eigenvalues).
        floor_decades: Decades below max|λ| that are considered.
        bandwidth: Kernel width in decades.
        min_share: Minimum trace share of a counted cluster.
        valley: Separation threshold (see step 3), in (0, 1).
        grid_points: Grid size of the smoothed density.

    Returns:
        Dict with ``type`` ("multi-cluster" or "uniform"), ``predicted_side``
        ("<1" or ">1"), ``clusters`` (list of dicts with ``center`` in decades
        below max|λ| and ``share``) and the rule's settings.

    Raises:
        ValueError: Bad settings, or a spectrum whose eigenvalues are all zero.
    """
    if not 0.0 < valley < 1.0:
        raise ValueError(f"valley must be in (0, 1), got {valley}")
    if bandwidth <= 0 or floor_decades <= 0 or not 0 < min_share < 1 or grid_points < 10:
        raise ValueError(
            "bandwidth and floor_decades must be > 0, min_share in (0, 1), grid_points >= 10; "
            f"got {bandwidth}, {floor_decades}, {min_share}, {grid_points}"
        )
    nodes, w = _nodes_weights(quadrature, weights)
    mag = np.abs(nodes)
    top = mag.max()
    if top <= 0:
        raise ValueError("spectral_type needs a spectrum with a non-zero eigenvalue")
    mass = np.abs(w) * mag
    x = np.log10(np.maximum(mag / top, 10.0 ** (-floor_decades - 10)))
    keep = (x >= -floor_decades) & (mass > 0)
    x, mass = x[keep], mass[keep] / mass[keep].sum()
    grid = np.linspace(-floor_decades - 3 * bandwidth, 3 * bandwidth, grid_points)
    dens = (mass[None, :] * np.exp(-0.5 * ((grid[:, None] - x[None, :]) / bandwidth) ** 2)).sum(1)
    dens /= dens.sum()
    # local maxima and minima of the smoothed density (plateaus: first point)
    d = np.diff(dens)
    peaks = [i for i in range(1, grid_points - 1) if d[i - 1] > 0 and d[i] <= 0]
    if not peaks:
        peaks = [int(np.argmax(dens))]
    # merge neighbouring peaks that are not separated by a deep enough valley
    clusters: list[list[int]] = [[peaks[0]]]
    for p in peaks[1:]:
        prev = clusters[-1]
        between = dens[prev[-1] : p + 1].min()
        if between > valley * min(max(dens[q] for q in prev), dens[p]):
            prev.append(p)
        else:
            clusters.append([p])
    # cluster boundaries: the density minimum between consecutive clusters
    bounds = [0]
    for a, b in itertools.pairwise(clusters):
        seg = dens[a[-1] : b[0] + 1]
        bounds.append(a[-1] + int(np.argmin(seg)))
    bounds.append(grid_points)
    info = []
    for k, c in enumerate(clusters):
        share = float(dens[bounds[k] : bounds[k + 1]].sum())
        center = float(grid[max(c, key=lambda q: dens[q])])
        info.append({"center": center, "share": share})
    counted = [c for c in info if c["share"] >= min_share]
    label = "multi-cluster" if len(counted) >= 2 else "uniform"
    return {
        "type": label,
        "predicted_side": predicted_side(label),
        "clusters": info,
        "settings": {
            "floor_decades": floor_decades,
            "bandwidth": bandwidth,
            "min_share": min_share,
            "valley": valley,
            "grid_points": grid_points,
        },
    }


def predicted_side(label: str) -> str:
    """The α side Sec. 4.1 predicts: "multi-cluster" → "<1", "uniform" → ">1"."""
    sides = {"multi-cluster": "<1", "uniform": ">1"}
    if label not in sides:
        raise ValueError(f"label must be one of {sorted(sides)}, got {label!r}")
    return sides[label]


def type_match_table(
    types: pd.DataFrame,
    best: pd.DataFrame,
    by: Sequence[str] = ("task", "block"),
) -> pd.DataFrame:
    """Compare each (model, layer)'s predicted α side with the layer's empirically best α.

    The paper counts one case per model and layer (Fig. 1d: 1451 matches in
    1630 cases over 60 models): the spectral type of that model's layer gives
    the predicted side, the layer's best α across the task's models (from
    :func:`best_alpha`) the empirical side.

    Args:
        types: One row per (run, ``by``) with a ``type`` column
            ("multi-cluster" / "uniform").
        best: Output of :func:`best_alpha`.
        by: Columns joining the two.

    Returns:
        ``types`` joined with ``best_alpha`` and ``best_side``, plus
        ``predicted_side`` and a boolean ``match``. Rows whose type is neither
        label (e.g. ``"undefined"``), and layers whose best α is tied across
        both sides of 1 (``best_side == "both"``: no side to match), are left out.
    """
    by = list(by)
    check_columns(types, [*by, "type"], "types")
    check_columns(best, [*by, "alpha", "side"], "best")
    b = best[[*by, "alpha", "side"]].rename(columns={"alpha": "best_alpha", "side": "best_side"})
    types = types[types["type"].isin(["multi-cluster", "uniform"])]
    out = types.merge(b, on=by, how="inner")
    out["predicted_side"] = [predicted_side(t) for t in out["type"]]
    out["match"] = out["predicted_side"] == out["best_side"]
    return out[out["best_side"] != "both"].reset_index(drop=True)


def spectral_types(quadratures: dict[tuple[str, str], Any], **rule: Any) -> pd.DataFrame:
    """:func:`spectral_type` of every ``(run, block)`` quadrature.

    Returns:
        Columns ``run, block, type, predicted_side, clusters`` (counted
        clusters); an all-zero spectrum gets type ``"undefined"``.
    """
    rows = []
    for (run, block), q in quadratures.items():
        try:
            r = spectral_type(q, **rule)
        except ValueError:  # an all-zero spectrum has no type
            rows.append(
                {
                    "run": run,
                    "block": block,
                    "type": "undefined",
                    "predicted_side": None,
                    "clusters": 0,
                }
            )
            continue
        n_counted = sum(c["share"] >= r["settings"]["min_share"] for c in r["clusters"])
        rows.append(
            {
                "run": run,
                "block": block,
                "type": r["type"],
                "predicted_side": r["predicted_side"],
                "clusters": n_counted,
            }
        )
    return pd.DataFrame(rows, columns=["run", "block", "type", "predicted_side", "clusters"])
