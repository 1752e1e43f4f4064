"""Validation of the spectral-type rule of Sec. 4.1 (Fig. 1d) on the digits-cnn zoo.

:func:`renyilib.statistics.spectral_type` labels a layer spectrum
"multi-cluster" (Sec. 4.1 predicts a best Rényi order :math:`\\alpha < 1`) or
"uniform" (:math:`\\alpha > 1`) from the trace-weighted density of
:math:`x = \\log_{10}(|\\lambda| / \\max|\\lambda|)`,

.. math::

    \\mu = \\sum_i w_i |\\lambda_i|\\, \\delta(x - x_i) \\Big/ \\sum_i w_i |\\lambda_i|,

smoothed by a Gaussian kernel of ``bandwidth`` decades; clusters are its
maxima, merged unless the minimum between two is at most ``valley`` × the
lower one, and a cluster counts when its share of :math:`\\mu` is at least
``min_share``. The correlation chapter feeds it the zoo's SLQ quadratures
(10 probes × 15 Ritz nodes per block). This module checks the rule

* against exact spectra (dense ``eigvalsh`` of every layer block, weights
  :math:`1/n`; cached by :func:`renyilib.experiments.alpha_floor.zoo_exact_spectra`):
  :func:`exact_vs_slq`;
* against its own settings: :func:`rule_sensitivity` gives, per setting, the
  share of multi-cluster labels and the Fig. 1d match rate (does the type of
  each (model, layer) predict the side of the layer's best α?) on exact and
  SLQ spectra;
* against labels drawn by eye from the densities (``book/reference/
  spectral_type_hand_labels.csv``, :func:`spectrum_panels` draws what the
  labeller looked at): :func:`hand_label_agreement`;

and :func:`validation_verdict` states the result from the numbers.

``python -m renyilib.experiments.spectral_type_validation`` runs it on the
zoo (cached spectra only: nothing dense is computed) and writes
``data/results/digits-cnn/spectral_type_validation.csv`` (the sensitivity
table), ``.labels.csv`` (per run and block: exact, SLQ and hand labels at the
default settings), ``.png`` and ``.meta.json``.
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from renyilib.experiments.io import (
    atomic_write,
    code_version,
    config_hash,
    read_results,
    write_json,
)
from renyilib.statistics import check_columns, spectral_type, type_match_table

__all__ = [
    "DEFAULT_RULE",
    "GRID",
    "cached_exact_spectra",
    "credible_settings",
    "exact_vs_slq",
    "hand_label_agreement",
    "label_spectra",
    "load_results",
    "main",
    "match_rate",
    "read_hand_labels",
    "rule_sensitivity",
    "rule_settings",
    "sensitivity_figure",
    "spectrum_panels",
    "validation_verdict",
]

#: The rule's defaults (those of :func:`renyilib.statistics.spectral_type`).
DEFAULT_RULE: dict[str, float] = {
    "bandwidth": 0.25,
    "min_share": 0.05,
    "valley": 0.5,
    "floor_decades": 6.0,
}
#: The settings grid of :func:`rule_sensitivity` (each axis contains the default).
GRID: dict[str, tuple[float, ...]] = {
    "bandwidth": (0.1, 0.25, 0.5),
    "min_share": (0.02, 0.05, 0.1),
    "valley": (0.3, 0.5, 0.7),
    "floor_decades": (4.0, 6.0, 8.0),
}
LABELS = ("multi-cluster", "uniform")
SOURCES = ("exact", "slq", "slq on exact's cases")
_DEFAULT_CACHE = Path("data/cache/alpha_floor")


# --------------------------------------------------------------------------- labels


def label_spectra(spectra: Mapping[tuple[str, str], Any], **rule: Any) -> pd.DataFrame:
    """:func:`~renyilib.statistics.spectral_type` of every ``(run, block)`` spectrum.

    Args:
        spectra: ``(run, block)`` → an array of exact eigenvalues (weights
            :math:`1/n` each) or a ``SpectralQuadrature`` (Ritz nodes and Gauss weights).
        **rule: Settings of the rule (``bandwidth``, ``min_share``, ``valley``,
            ``floor_decades``, ``grid_points``).

    Returns:
        One row per spectrum: ``run, block, type`` ("multi-cluster", "uniform",
        or "undefined" for an all-zero spectrum), ``clusters`` (how many count),
        ``first_share`` and ``second_share`` (the two largest cluster shares,
        counted or not; 0 when absent).
    """
    rows = []
    for (run, block), s in spectra.items():
        if isinstance(s, np.ndarray):
            lam = np.asarray(s, dtype=float).ravel()
            args: tuple[Any, ...] = (lam, np.full(lam.size, 1.0 / max(lam.size, 1)))
        else:
            args = (s,)
        try:
            r = spectral_type(*args, **rule)
        except ValueError as e:
            if "non-zero eigenvalue" not in str(e):
                raise
            rows.append({"run": run, "block": block, "type": "undefined", "clusters": 0,
                         "first_share": np.nan, "second_share": np.nan})  # fmt: skip
            continue
        shares = [*sorted((c["share"] for c in r["clusters"]), reverse=True), 0.0, 0.0]
        counted = sum(c["share"] >= r["settings"]["min_share"] for c in r["clusters"])
        rows.append({"run": run, "block": block, "type": r["type"], "clusters": int(counted),
                     "first_share": shares[0], "second_share": shares[1]})  # fmt: skip
    cols = ["run", "block", "type", "clusters", "first_share", "second_share"]
    return pd.DataFrame(rows, columns=cols)


def _kappa(a: pd.Series, b: pd.Series) -> float:
    """Cohen's κ of two label columns (NaN when chance agreement is 1: one label only)."""
    if not len(a):
        return float("nan")
    po = float((a.to_numpy() == b.to_numpy()).mean())
    cats = sorted(set(a) | set(b))
    pe = sum(float((a == c).mean()) * float((b == c).mean()) for c in cats)
    return float("nan") if pe >= 1.0 else (po - pe) / (1.0 - pe)


def exact_vs_slq(
    exact: Mapping[tuple[str, str], Any],
    slq: Mapping[tuple[str, str], Any],
    *,
    runs: Sequence[str] | None = None,
    **rule: Any,
) -> dict[str, Any]:
    """The rule's label on each exact spectrum against its label on the SLQ quadrature of the same block.

    Args:
        exact: ``(run, block)`` → exact eigenvalues.
        slq: ``(run, block)`` → SLQ quadrature (or eigenvalues).
        runs: Keep only these runs (default: all).
        **rule: Settings of the rule.

    Returns:
        ``table`` (``run, block, exact, slq, agree``, the ``(run, block)`` in both),
        ``agreement`` (share of agreeing labels), ``kappa`` (Cohen's κ; NaN when
        both label everything alike), ``n``, and ``by_block`` (per block: ``n``,
        ``agreement``, ``exact_multi``, ``slq_multi``: shares of multi-cluster labels).
    """
    keep = None if runs is None else set(runs)
    keys = [k for k in exact if k in slq and (keep is None or k[0] in keep)]
    le = label_spectra({k: exact[k] for k in keys}, **rule)
    ls = label_spectra({k: slq[k] for k in keys}, **rule)
    t = le[["run", "block", "type"]].rename(columns={"type": "exact"})
    t["slq"] = ls["type"].to_numpy()
    t["agree"] = t["exact"] == t["slq"]
    by = t.groupby("block").agg(
        n=("agree", "size"),
        agreement=("agree", "mean"),
        exact_multi=("exact", lambda s: float((s == "multi-cluster").mean())),
        slq_multi=("slq", lambda s: float((s == "multi-cluster").mean())),
    )
    return {
        "table": t,
        "agreement": float(t["agree"].mean()) if len(t) else float("nan"),
        "kappa": _kappa(t["exact"], t["slq"]),
        "n": len(t),
        "by_block": by.reset_index(),
    }


def match_rate(
    labels: pd.DataFrame, best: pd.DataFrame, task: str, runs: Sequence[str] | None = None
) -> dict[str, Any]:
    """The Fig. 1d statistic of a label table: the share of (model, layer) cases whose type predicts the best α's side.

    As :func:`renyilib.experiments.correlation_study.type_match_summary`: the
    predicted side is that of the (run, block)'s type ("multi-cluster" → α < 1),
    the empirical side that of the block's best α over the task's models
    (:func:`~renyilib.statistics.best_alpha`); layers whose best α is tied
    across 1 and undefined types are left out.

    Args:
        labels: From :func:`label_spectra` (``run, block, type``).
        best: :func:`~renyilib.statistics.best_alpha` by ``task, block``.
        task: The task (to join ``best``).
        runs: The analysed runs (default: every run of ``labels``).

    Returns:
        ``n_spectra`` (labelled, defined), ``multi_share`` (their share of
        multi-cluster labels), ``n_cases``, ``n_match``, ``match_rate`` (NaN
        without cases) and ``best_sides`` (the distinct sides of the best α).
    """
    check_columns(labels, ["run", "block", "type"], "labels")
    lab = labels[labels["block"] != "all"]
    if runs is not None:
        lab = lab[lab["run"].isin(set(runs))]
    lab = lab[lab["type"].isin(LABELS)].assign(task=task)
    m = type_match_table(lab, best, by=["task", "block"])
    n = len(m)
    return {
        "n_spectra": len(lab),
        "multi_share": float((lab["type"] == "multi-cluster").mean()) if len(lab) else np.nan,
        "n_cases": n,
        "n_match": int(m["match"].sum()),
        "match_rate": float(m["match"].mean()) if n else float("nan"),
        "best_sides": sorted(set(m["best_side"])),
    }


# --------------------------------------------------------------------------- sensitivity


def rule_settings(
    mode: str = "product",
    grid: Mapping[str, Sequence[float]] = GRID,
    default: Mapping[str, float] = DEFAULT_RULE,
) -> list[dict[str, float]]:
    """The settings of the rule to try.

    Args:
        mode: ``"product"`` (every combination of ``grid``) or
            ``"one-at-a-time"`` (the default, then each value of one axis with
            the others at their default).
        grid: Axis → values.
        default: The default of every axis of ``grid``.

    Returns:
        A list of settings dicts (the default first; no duplicates).

    Raises:
        ValueError: Unknown ``mode`` or an axis of ``grid`` without a default.
    """
    missing = sorted(set(grid) - set(default))
    if missing:
        raise ValueError(f"default: no default for grid axes {missing}")
    base = {k: float(default[k]) for k in grid}
    if mode == "product":
        combos = [dict(zip(grid, v, strict=True)) for v in itertools.product(*grid.values())]
    elif mode == "one-at-a-time":
        combos = [{**base, k: float(v)} for k in grid for v in grid[k]]
    else:
        raise ValueError(f"mode must be 'product' or 'one-at-a-time', got {mode!r}")
    out = [base]
    for c in combos:
        c = {k: float(v) for k, v in c.items()}
        if c not in out:
            out.append(c)
    return out


def _varied(setting: Mapping[str, float], default: Mapping[str, float]) -> str:
    diff = [k for k in setting if float(setting[k]) != float(default.get(k, np.nan))]
    return "default" if not diff else diff[0] if len(diff) == 1 else "several"


def rule_sensitivity(
    exact: Mapping[tuple[str, str], Any],
    slq: Mapping[tuple[str, str], Any],
    best: pd.DataFrame,
    task: str,
    runs: Sequence[str] | None = None,
    *,
    settings: Sequence[Mapping[str, float]] | None = None,
    hand: pd.DataFrame | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Share of multi-cluster labels and the Fig. 1d match rate over the rule's settings.

    Args:
        exact: ``(run, block)`` → exact eigenvalues.
        slq: ``(run, block)`` → SLQ quadrature.
        best: :func:`~renyilib.statistics.best_alpha` by ``task, block``.
        task: The task.
        runs: The analysed runs (default: all).
        settings: Rule settings (default: :func:`rule_settings` ``("product")``).
        hand: Hand labels (``run, block, label``) to score every setting against.
        progress: tqdm over settings.

    Returns:
        One row per setting and source (``"exact"``, ``"slq"``, ``"slq on
        exact's cases"``: the SLQ labels of the (run, block) that have an exact
        spectrum): the settings, ``varied`` (the one axis that differs from
        :data:`DEFAULT_RULE`, ``"default"`` or ``"several"``), the output of
        :func:`match_rate`, ``agreement`` (exact vs SLQ labels on the common
        (run, block), the same on the rows of one setting) and, with ``hand``,
        ``hand_agreement`` and ``hand_n`` (over the hand-labelled (run, block)
        the source has).
    """
    from tqdm.auto import tqdm

    settings = rule_settings("product") if settings is None else list(settings)
    keep = set(runs) if runs is not None else None
    ex = {k: v for k, v in exact.items() if keep is None or k[0] in keep}
    sq = {k: v for k, v in slq.items() if keep is None or k[0] in keep}
    hand_ex = hand_sq = None
    if hand is not None:
        check_columns(hand, ["run", "block", "label"], "hand")
        hk = list(zip(hand["run"], hand["block"], strict=True))
        hand_ex = {k: exact[k] for k in hk if k in exact}
        hand_sq = {k: slq[k] for k in hk if k in slq}
    rows = []
    for st in tqdm(settings, desc="rule settings", disable=not progress):
        le = label_spectra(ex, **st)
        ls = label_spectra(sq, **st)
        common = le[["run", "block", "type"]].merge(
            ls[["run", "block", "type"]], on=["run", "block"], suffixes=("_e", "_s")
        )
        agree = float((common["type_e"] == common["type_s"]).mean()) if len(common) else np.nan
        ekeys = set(zip(le["run"], le["block"], strict=True))
        ls_common = ls[[k in ekeys for k in zip(ls["run"], ls["block"], strict=True)]]
        handed: dict[str, tuple[float, int]] = {}
        if hand is not None:
            for src, sp in (("exact", hand_ex), ("slq", hand_sq)):
                a = hand_label_agreement(hand, label_spectra(sp, **st), src)
                handed[src] = (a["rate"], a["n"])
            handed["slq on exact's cases"] = handed["slq"]
        for src, lab in zip(SOURCES, (le, ls, ls_common), strict=True):
            r = match_rate(lab, best, task)
            row = {**st, "varied": _varied(st, DEFAULT_RULE), "source": src}
            row.update({k: v for k, v in r.items() if k != "best_sides"})
            row["best_sides"] = ",".join(r["best_sides"])
            row["agreement"] = agree
            if hand is not None:
                row["hand_agreement"], row["hand_n"] = handed[src]
            rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- hand labels


def read_hand_labels(path: str | os.PathLike) -> pd.DataFrame:
    """The hand labels (``run, block, label, reason, labeller``; ``#`` lines are comments).

    Raises:
        ValueError: A label other than "multi-cluster" / "uniform", or a
            duplicated ``(run, block)``.
    """
    df = pd.read_csv(path, comment="#", dtype={"run": str})
    check_columns(df, ["run", "block", "label", "reason", "labeller"], "path")
    bad = sorted(set(df["label"]) - set(LABELS))
    if bad:
        raise ValueError(f"path: labels must be one of {list(LABELS)}, got {bad}")
    if df.duplicated(["run", "block"]).any():
        raise ValueError("path: a (run, block) is labelled twice")
    return df


def hand_label_agreement(
    hand: pd.DataFrame, labels: pd.DataFrame, name: str = "rule"
) -> dict[str, Any]:
    """The rule's labels against hand labels, on the (run, block) both have.

    Args:
        hand: ``run, block, label``.
        labels: :func:`label_spectra` output (``run, block, type``).
        name: Name of the rule's column in the table.

    Returns:
        ``table`` (``run, block, hand, <name>, agree``), ``rate`` (share of
        agreements; NaN without common cases), ``n``, ``missing`` (hand-labelled
        (run, block) the labels lack), ``confusion`` (hand × rule counts) and
        ``disagreements`` (the rows that differ).
    """
    check_columns(hand, ["run", "block", "label"], "hand")
    check_columns(labels, ["run", "block", "type"], "labels")
    t = hand[["run", "block", "label"]].rename(columns={"label": "hand"})
    t = t.merge(labels[["run", "block", "type"]].rename(columns={"type": name}),
                on=["run", "block"], how="left")  # fmt: skip
    missing = t[t[name].isna()][["run", "block"]].reset_index(drop=True)
    t = t.dropna(subset=[name]).reset_index(drop=True)
    t["agree"] = t["hand"] == t[name]
    conf = pd.crosstab(t["hand"], t[name]) if len(t) else pd.DataFrame()
    return {
        "table": t,
        "rate": float(t["agree"].mean()) if len(t) else float("nan"),
        "n": len(t),
        "missing": missing,
        "confusion": conf,
        "disagreements": t[~t["agree"]].reset_index(drop=True),
    }


# --------------------------------------------------------------------------- verdict


def _pct(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.0f}%"


def credible_settings(
    sensitivity: pd.DataFrame, min_hand: float = 0.9, min_agreement: float = 0.9
) -> pd.DataFrame:
    """The settings at which the rule passes both checks.

    A setting is credible when, on exact spectra, the rule agrees with at least
    ``min_hand`` of the hand labels (skipped without a ``hand_agreement``
    column), and its exact and SLQ labels of the same blocks agree on at least
    ``min_agreement`` of them.

    Args:
        sensitivity: :func:`rule_sensitivity`.
        min_hand, min_agreement: The thresholds, in [0, 1].

    Returns:
        The rows of ``sensitivity`` (every source) of the credible settings.

    Raises:
        ValueError: A threshold outside [0, 1].
    """
    for name, v in (("min_hand", min_hand), ("min_agreement", min_agreement)):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {v}")
    check_columns(sensitivity, ["source", "agreement", *GRID], "sensitivity")
    keys = list(GRID)
    ex = sensitivity[sensitivity["source"] == "exact"]
    ok = ex["agreement"] >= min_agreement
    if "hand_agreement" in ex:
        ok &= ex["hand_agreement"] >= min_hand
    good = ex.loc[ok, keys]
    return sensitivity.merge(good, on=keys, how="inner")


def validation_verdict(
    agreement: Mapping[str, Any],
    sensitivity: pd.DataFrame,
    hand_exact: Mapping[str, Any] | None = None,
    hand_slq: Mapping[str, Any] | None = None,
    paper_rate: float = 1451 / 1630,
    margin: float = 0.1,
    min_hand: float = 0.9,
    min_agreement: float = 0.9,
) -> str:
    """Plain sentences, computed from the numbers, on the rule and the Fig. 1d rate.

    Args:
        agreement: :func:`exact_vs_slq` at the default settings.
        sensitivity: :func:`rule_sensitivity`.
        hand_exact, hand_slq: :func:`hand_label_agreement` of the rule (default
            settings) on exact spectra and on SLQ.
        paper_rate: The paper's Fig. 1d match rate (1451 / 1630).
        margin: A setting reproduces the paper when its match rate is within
            ``margin`` (absolute) of ``paper_rate``.
        min_hand, min_agreement: What makes a setting credible (:func:`credible_settings`).

    Returns:
        The verdict (a few sentences). "The paper's rate is not reproduced" is
        called supported when no credible setting brings the match rate (exact
        or SLQ) within ``margin`` of ``paper_rate``.
    """
    check_columns(sensitivity, ["source", "varied", "match_rate", "multi_share"], "sensitivity")
    s = sensitivity
    keys = [k for k in GRID if k in s]
    d = s[s["varied"] == "default"].set_index("source")
    out = [
        f"At the default settings the rule labels {_pct(d.loc['exact', 'multi_share'])} of "
        f"{int(d.loc['exact', 'n_spectra'])} exact layer spectra and "
        f"{_pct(d.loc['slq', 'multi_share'])} of {int(d.loc['slq', 'n_spectra'])} SLQ ones "
        f"multi-cluster; exact and SLQ labels of the same block agree on "
        f"{_pct(agreement['agreement'])} of {agreement['n']}"
        + (
            f" (Cohen's κ {agreement['kappa']:.2f})."
            if np.isfinite(agreement["kappa"])
            else " (κ undefined: both sides use one label only, so this agreement does not "
            "test the rule's resolution)."
        )
    ]
    if hand_exact is not None:
        ht = hand_exact["table"]
        base = float(ht["hand"].value_counts(normalize=True).max()) if len(ht) else np.nan
        n_multi = int((ht["hand"] == "multi-cluster").sum())
        h = (
            f"Against {hand_exact['n']} hand labels ({n_multi} multi-cluster; always answering "
            f"the commoner label would agree on {_pct(base)}) the rule agrees on "
            f"{_pct(hand_exact['rate'])} on exact spectra"
        )
        if hand_slq is not None and hand_slq["n"]:
            h += f" and on {_pct(hand_slq['rate'])} of the {hand_slq['n']} with an SLQ quadrature"
        dis = hand_exact["disagreements"]
        if len(dis):
            col = next(c for c in dis.columns if c not in ("run", "block", "hand", "agree"))
            h += "; on exact spectra it differs on " + ", ".join(
                f"{r['run']}/{r['block']} (hand {r['hand']}, rule {r[col]})"
                for _, r in dis.iterrows()
            )
        out.append(h + ".")

    def span(df: pd.DataFrame, src: str) -> tuple[float, float, pd.Series | None]:
        r = df[df["source"] == src]["match_rate"].dropna()
        if not len(r):
            return np.nan, np.nan, None
        return float(r.min()), float(r.max()), df.loc[r.idxmax()]

    def at(row: pd.Series) -> str:
        return ", ".join(f"{k}={row[k]:g}" for k in keys)

    n_set = s[keys].drop_duplicates().shape[0]
    parts, top = [], None
    for src in ("exact", "slq"):
        lo, hi, row = span(s, src)
        if row is None:
            continue
        parts.append(
            f"{_pct(lo)}–{_pct(hi)} on {src} spectra (default {_pct(d.loc[src, 'match_rate'])})"
        )
        if top is None or hi > top["match_rate"]:
            top = row
    out.append(
        f"Over {n_set} settings of the rule the Fig. 1d match rate spans " + " and ".join(parts)
        + f"; the paper reports {_pct(paper_rate)}."
    )  # fmt: skip
    cred = credible_settings(s, min_hand, min_agreement)
    n_cred = cred[keys].drop_duplicates().shape[0]
    crit = f"exact–SLQ agreement ≥ {_pct(min_agreement)}"
    if "hand_agreement" in s:
        crit = f"hand-label agreement ≥ {_pct(min_hand)} on exact spectra and " + crit
    cparts, ctop = [], None
    for src in ("exact", "slq"):
        lo, hi, row = span(cred, src)
        if row is None:
            continue
        cparts.append(f"{_pct(lo)}–{_pct(hi)} ({src})")
        if ctop is None or hi > ctop["match_rate"]:
            ctop = row
    sent = f"{n_cred} of the {n_set} settings pass both checks ({crit})"
    sent += "; over them the rate spans " + " and ".join(cparts) if cparts else ""
    if top is not None:
        ex_top = s[(s["source"] == "exact") & np.all([s[k] == top[k] for k in keys], axis=0)]
        hand_note = ""
        if "hand_agreement" in s and len(ex_top):
            hand_note = (
                f", hand-label agreement {_pct(float(ex_top['hand_agreement'].iloc[0]))} (exact)"
            )
            if top["source"] != "exact":
                hand_note += f" and {_pct(float(top['hand_agreement']))} ({top['source']})"
        sent += (
            f". The highest rate, {_pct(top['match_rate'])} ({top['source']}, at {at(top)}), "
            f"comes with exact–SLQ agreement {_pct(top['agreement'])}{hand_note}"
        )
    out.append(sent + ".")
    sides = {x for v in s["best_sides"].dropna() for x in str(v).split(",") if x}
    if len(sides) == 1:
        side = sides.pop()
        out.append(
            f"Every layer's best α lies on the side {side}, so the match rate is the share of "
            f"{'multi-cluster' if side == '<1' else 'uniform'} labels, and predicting {side} "
            "for every layer would match 100%: the rate measures the rule, not the choice of α."
        )
    claim = f"'the paper's {_pct(paper_rate)} is not reproduced'"
    if ctop is None:
        out.append(f"No setting passes both checks, so {claim} cannot be judged from this rule.")
    elif ctop["match_rate"] < paper_rate - margin:
        tail = (
            f"; only settings that fail the checks reach {_pct(top['match_rate'])}"
            if top is not None and top["match_rate"] >= paper_rate - margin
            else ""
        )
        out.append(
            f"So {claim} is supported: no credible setting brings the rate within "
            f"{100 * margin:.0f} points of it (the highest, {_pct(ctop['match_rate'])}, "
            f"{ctop['source']} at {at(ctop)}){tail}."
        )
    else:
        out.append(
            f"So {claim} is not supported: at {at(ctop)} the rule passes both checks and the "
            f"rate reaches {_pct(ctop['match_rate'])} ({ctop['source']})."
        )
    return " ".join(out)


# --------------------------------------------------------------------------- figures


def load_results(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The committed validation of ``folder`` (``spectral_type_validation.{csv,labels.csv,meta.json}``), or ``None``."""
    files = read_results(folder, "spectral_type_validation", (".csv", ".labels.csv", ".meta.json"))
    return None if files is None else dict(zip(("sensitivity", "labels", "meta"), files))


def sensitivity_figure(sensitivity: pd.DataFrame, paper_rate: float = 1451 / 1630) -> Any:
    """The Fig. 1d match rate and the rule's checks against each setting, exact vs SLQ.

    One column per axis of :data:`GRID`. Top: the match rate; bottom: the
    rule's agreement with the hand labels (exact and SLQ; when
    ``sensitivity`` has ``hand_agreement``) and the exact–SLQ agreement
    (black). Lines: the one-at-a-time slice (the other settings at their
    default); bands: the range over every combination of the other settings
    in ``sensitivity``. The grey line is the paper's rate.

    Returns:
        A matplotlib figure.
    """
    import matplotlib.pyplot as plt

    check_columns(sensitivity, ["source", "match_rate", "agreement", *GRID], "sensitivity")
    has_hand = "hand_agreement" in sensitivity
    fig, axes = plt.subplots(
        2, len(GRID), figsize=(3.6 * len(GRID), 6.2), sharey=True, squeeze=False
    )
    colors = {"exact": "C0", "slq": "C1"}

    def draw(ax: Any, d: pd.DataFrame, axis: str, col: str, c: str, label: str, style: str) -> None:
        others = [k for k in GRID if k != axis]
        sl = d[np.all([np.isclose(d[k], DEFAULT_RULE[k]) for k in others], axis=0)]
        sl = sl.sort_values(axis)
        band = d.groupby(axis)[col].agg(["min", "max"]).reindex(GRID[axis])
        ax.fill_between(band.index, band["min"], band["max"], color=c, alpha=0.13, lw=0)
        ax.plot(sl[axis], sl[col], style, color=c, label=label)

    for j, axis in enumerate(GRID):
        top, bot = axes[0, j], axes[1, j]
        for src, c in colors.items():
            d = sensitivity[sensitivity["source"] == src]
            draw(top, d, axis, "match_rate", c, f"{src}: match rate", "o-")
            if has_hand:
                draw(bot, d, axis, "hand_agreement", c, f"{src}: agreement with hand labels", "o-")
        ex = sensitivity[sensitivity["source"] == "exact"]
        draw(bot, ex, axis, "agreement", "k", "exact vs SLQ labels", "s--")
        top.axhline(paper_rate, color="0.5", lw=1, label="paper (Fig. 1d)")
        for ax in (top, bot):
            ax.axvline(DEFAULT_RULE[axis], color="0.8", lw=0.8, zorder=0)
            ax.set_ylim(-0.03, 1.03)
        bot.set_xlabel(axis)
    axes[0, 0].set_ylabel("Fig. 1d match rate")
    axes[1, 0].set_ylabel("agreement")
    axes[0, 0].legend(fontsize=7, loc="center left")
    axes[1, 0].legend(fontsize=7, loc="lower left")
    fig.suptitle("Spectral-type rule over its settings (line: one at a time; band: the other "
                 "settings varied too)", fontsize=10)  # fmt: skip
    fig.tight_layout()
    return fig


def spectrum_panels(
    spectra: Mapping[tuple[str, str], np.ndarray],
    keys: Sequence[tuple[str, str]],
    gaps: Mapping[str, float] | None = None,
    decades: float = 8.0,
) -> Any:
    """What the hand labels were drawn from: per spectrum, three views in a row.

    Left: the trace-weighted histogram of :math:`\\log_{10}(|\\lambda|/\\max|\\lambda|)`
    (bins of 0.1 decade, weight :math:`|\\lambda_i|/\\sum_j|\\lambda_j|`: the
    measure the rule smooths); middle: :math:`|\\lambda|/\\max|\\lambda|` sorted,
    against rank (log-log); right: the eigenvalue count density of
    :math:`\\lambda/\\max|\\lambda|` (linear x, log y: PyHessian's view, as in Fig. 1).

    Args:
        spectra: ``(run, block)`` → exact eigenvalues.
        keys: The spectra to draw, in order.
        gaps: Run → generalization gap (shown in the titles).
        decades: Range of the left and middle panels.

    Returns:
        A matplotlib figure.

    Raises:
        KeyError: A key without a spectrum.
    """
    import matplotlib.pyplot as plt

    missing = [k for k in keys if k not in spectra]
    if missing:
        raise KeyError(f"keys: no spectrum for {missing}")
    fig, ax = plt.subplots(len(keys), 3, figsize=(15, 3.2 * len(keys)), squeeze=False)
    for i, (run, block) in enumerate(keys):
        lam = np.asarray(spectra[(run, block)], dtype=float)
        a = np.abs(lam)
        x = np.log10(np.maximum(a / a.max(), 1e-300))
        g = f" gap={gaps[run]:.3f}" if gaps is not None and run in gaps else ""
        bins = np.linspace(-decades - 0.05, 0.05, int(round(decades * 10)) + 2)
        ax[i, 0].hist(x, bins=bins, weights=a / a.sum(), color="C0")
        ax[i, 0].set_xlim(-decades, 0.1)
        ax[i, 0].set_title(f"{run} {block}{g}: trace-weighted log10|λ|/max", fontsize=9)
        s = np.sort(a)[::-1]
        ax[i, 1].loglog(np.arange(1, s.size + 1), s / s[0], ".", ms=2)
        ax[i, 1].set_ylim(10.0**-decades, 1.5)
        ax[i, 1].grid(True, which="major", alpha=0.3)
        ax[i, 1].set_title("sorted |λ|/max against rank", fontsize=9)
        ax[i, 2].hist(lam / a.max(), bins=200, log=True, color="C2")
        ax[i, 2].set_title("count density of λ/max (linear x, log y)", fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- inputs


def cached_exact_spectra(
    out: str | os.PathLike,
    task: str = "digits-cnn",
    cache: str | os.PathLike = _DEFAULT_CACHE,
    blocks: Sequence[str] = (
        "features.0.weight",
        "features.2.weight",
        "features.4.weight",
        "fc.weight",
    ),
    dtype: str = "float64",
) -> dict[tuple[str, str], np.ndarray]:
    """The exact block spectra of the zoo that are already cached; never computes one.

    Which (run, block) are cached is read from the cache keys of
    :func:`renyilib.experiments.alpha_floor.zoo_exact_spectra` (the
    :func:`~renyilib.experiments.io.config_hash` of task, run, block, dtype, the
    correlation profile's subset and seed, backend ``"linearize"``); those are
    then loaded through ``zoo_exact_spectra`` itself.

    Args:
        out: The zoo folder.
        task: Zoo task.
        cache: The spectra cache of ``zoo_exact_spectra``.
        blocks: Blocks to load.
        dtype: Precision of the spectra.

    Returns:
        ``(run, block)`` → ascending float64 eigenvalues.
    """
    from renyilib.experiments import zoo
    from renyilib.experiments.alpha_floor import zoo_exact_spectra
    from renyilib.experiments.zoo_measure import measure_settings

    rc = measure_settings("cpu", task)["renyi"]
    n_sub, seed_sub = int(rc["subset"]), int(rc["subset_seed"])
    runs = zoo.table(out, task)
    spectra: dict[tuple[str, str], np.ndarray] = {}
    for b in blocks:
        have = [
            r
            for r in runs["run"]
            if (
                Path(cache)
                / config_hash({"task": task, "run": r, "block": b, "dtype": dtype,
                               "subset": n_sub, "subset_seed": seed_sub, "backend": "linearize"})
                / "eigenvalues.npz"
            ).is_file()
        ]  # fmt: skip
        if not have:
            continue
        s = zoo_exact_spectra(out, task, (dtype,), have, cache, blocks=[b], progress=False)
        spectra.update({(r, bb): v for (r, bb, _), v in s.eigenvalues.items()})
    return spectra


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m renyilib.experiments.spectral_type_validation``: run the validation and export it."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="data/zoo", help="zoo folder")
    p.add_argument("--task", default="digits-cnn")
    p.add_argument("--profile", default="cpu", help="correlation profile (SLQ settings)")
    p.add_argument("--results", default="data/results", help="committed results folder")
    p.add_argument("--cache", default=str(_DEFAULT_CACHE), help="exact spectra cache")
    p.add_argument("--hand", default="book/reference/spectral_type_hand_labels.csv")
    p.add_argument("--reference", default="book/reference/paper_fig1d.csv",
                   help="the paper's Fig. 1d counts")  # fmt: skip
    p.add_argument("--grid", default="product", choices=["product", "one-at-a-time"])
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    from renyilib.experiments.correlation_study import (
        alpha_tables,
        analysis_set,
        load_measurements,
        type_match_summary,
    )

    res = load_measurements(args.task, args.profile, out=args.out, results=args.results)
    prof, base, model_set = analysis_set(res)
    runs = list(base["run"])
    alpha = alpha_tables(prof)
    best = alpha["best"]
    slq = {k: q for k, q in res["quadratures"].items() if k[1] != "all"}
    exact = cached_exact_spectra(args.out, args.task, args.cache)
    hand = read_hand_labels(args.hand) if Path(args.hand).is_file() else None
    paper = pd.read_csv(args.reference, comment="#").iloc[0]
    paper_rate = float(paper["matches"] / paper["cases"])

    agreement = exact_vs_slq(exact, slq, runs=runs)
    settings = rule_settings(args.grid)
    sens = rule_sensitivity(exact, slq, best, args.task, runs, settings=settings, hand=hand,
                            progress=True)  # fmt: skip
    # the chapter's own number, to check that this module reproduces it
    chapter = type_match_summary(res["quadratures"], runs, args.task, best, alpha["sweep"], paper)
    d_slq = sens[(sens["varied"] == "default") & (sens["source"] == "slq")].iloc[0]
    if (int(d_slq["n_cases"]), int(d_slq["n_match"])) != (chapter["n_cases"], chapter["n_match"]):
        raise RuntimeError(
            f"default SLQ match {d_slq['n_match']}/{d_slq['n_cases']} differs from the chapter's "
            f"type_match_summary {chapter['n_match']}/{chapter['n_cases']}"
        )
    le_all = label_spectra(exact)
    ls_all = label_spectra(slq)
    hx = hs = None
    labels = le_all[["run", "block", "type", "clusters", "first_share", "second_share"]].rename(
        columns={"type": "exact", "clusters": "exact_clusters", "first_share": "exact_first_share",
                 "second_share": "exact_second_share"}
    ).merge(
        ls_all[["run", "block", "type", "clusters", "second_share"]].rename(
            columns={"type": "slq", "clusters": "slq_clusters", "second_share": "slq_second_share"}
        ),
        on=["run", "block"], how="outer",
    )  # fmt: skip
    labels["analysed"] = labels["run"].isin(set(runs))
    if hand is not None:
        hx = hand_label_agreement(hand, le_all, "rule")
        hs = hand_label_agreement(hand, ls_all, "rule")
        labels = labels.merge(hand[["run", "block", "label"]].rename(columns={"label": "hand"}),
                              on=["run", "block"], how="left")  # fmt: skip
    labels = labels.sort_values(["block", "run"]).reset_index(drop=True)
    verdict = validation_verdict(agreement, sens, hx, hs, paper_rate)

    dest = Path(args.results) / args.task
    text = sens.to_csv(index=False, float_format="%.6g")
    atomic_write(dest / "spectral_type_validation.csv", lambda tmp: tmp.write_text(text))
    ltext = labels.to_csv(index=False, float_format="%.6g")
    atomic_write(dest / "spectral_type_validation.labels.csv", lambda tmp: tmp.write_text(ltext))
    fig = sensitivity_figure(sens, paper_rate)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write(dest / "spectral_type_validation.png", lambda tmp: tmp.write_bytes(buf.getvalue()))

    def span(src: str) -> list[float]:
        r = sens[sens["source"] == src]["match_rate"]
        return [float(r.min()), float(r.max())]

    meta = {
        "command": " ".join(
            [
                Path(sys.executable).name,
                "-m",
                "renyilib.experiments.spectral_type_validation",
                *(argv if argv is not None else sys.argv[1:]),
            ]
        ),  # fmt: skip
        "code_version": code_version(),
        "settings": {
            "task": args.task,
            "profile": args.profile,
            "model_set": model_set,
            "analysed_runs": len(runs),
            "grid": {k: list(v) for k, v in GRID.items()},
            "grid_mode": args.grid,
            "n_settings": len(settings),
            "default_rule": DEFAULT_RULE,
            "grid_points": 601,
            "exact": "dense eigvalsh float64 of each layer block (alpha_floor cache), weights 1/n",
            "exact_spectra": {
                b: int(n) for b, n in pd.Series([k[1] for k in exact]).value_counts().items()
            },
            "slq": "the correlation chapter's SLQ quadratures (load_measurements), all probes pooled",
            "hand_labels": args.hand if hand is not None else None,
            "best_alpha": best[["block", "alpha", "side"]].to_dict("records"),
        },  # fmt: skip
        "columns": {
            "spectral_type_validation.csv": "rule_sensitivity: one row per setting and source; "
            "multi_share over n_spectra labelled (analysed runs), match_rate = n_match / n_cases "
            "(Fig. 1d), agreement = exact vs SLQ labels on common (run, block), hand_agreement "
            "over hand_n hand labels (all runs)",
            "spectral_type_validation.labels.csv": "default-setting labels per run and block: "
            "exact, SLQ, hand; counted clusters and the two largest cluster shares",
        },
        "headline": {
            "exact_vs_slq_agreement": agreement["agreement"],
            "exact_vs_slq_kappa": agreement["kappa"] if np.isfinite(agreement["kappa"]) else None,
            "exact_vs_slq_n": agreement["n"],
            "hand_agreement_exact": None if hx is None else hx["rate"],
            "hand_n_exact": None if hx is None else hx["n"],
            "hand_agreement_slq": None if hs is None else hs["rate"],
            "hand_n_slq": None if hs is None else hs["n"],
            "match_rate_default": {
                s: float(
                    sens[(sens["varied"] == "default") & (sens["source"] == s)]["match_rate"].iloc[
                        0
                    ]
                )
                for s in SOURCES
            },  # fmt: skip
            "match_rate_range": {s: span(s) for s in SOURCES},
            "chapter_type_match_summary": {
                k: chapter[k] for k in ("n_cases", "n_match", "match_rate", "majority_rate")
            },
            "paper_match_rate": paper_rate,
        },  # fmt: skip
        "verdict": verdict,
        "seconds": time.perf_counter() - t0,
    }
    write_json(dest / "spectral_type_validation.meta.json", meta)
    print(verdict)
    return 0


if __name__ == "__main__":
    sys.exit(main())
