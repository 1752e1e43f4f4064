"""The spectrum chapter's computation: per-layer Hessian spectra of trained zoo models and their type.

Sec. 4.1 of the paper sorts layer spectra into "multi-cluster" (predicting a
best Rényi order α < 1) and "uniform" (α > 1) (Fig. 1 a–c, Figs. 4–7). This
module picks a few models of a trained zoo spread over the range of
generalization gaps, reads (or computes) their SLQ quadratures from the
measurement cache shared with the correlation chapter, labels every layer
with :func:`renyilib.statistics.spectral_type`, and, for blocks small enough,
adds the exact spectrum of the dense Hessian. :func:`spectrum_study` runs it
and stops up front, naming ``renyilib zoo run ...``, when the zoo is not trained.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from renyilib.hessian import hessian_operator
from renyilib.lanczos import SpectralQuadrature
from renyilib.statistics import spectral_type

__all__ = [
    "SpectrumPanel",
    "SpectrumStudy",
    "exact_quadrature",
    "negative_mass_sentence",
    "pick_by_gap",
    "spectrum_panels",
    "spectrum_study",
    "type_summary",
]


def pick_by_gap(runs: pd.DataFrame, n: int) -> pd.DataFrame:
    """``n`` runs spread evenly over the range of generalization gaps (smallest and largest included).

    Args:
        runs: Zoo table with a ``gap`` column.
        n: How many (at most ``len(runs)``); positive.

    Returns:
        The chosen rows, sorted by gap.

    Raises:
        ValueError: ``n < 1``, or ``runs`` is empty or lacks ``gap``.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if "gap" not in runs or not len(runs):
        raise ValueError("runs must be a non-empty zoo table with a 'gap' column")
    runs = runs.sort_values("gap").reset_index(drop=True)
    pick = np.unique(np.round(np.linspace(0, len(runs) - 1, min(n, len(runs)))).astype(int))
    return runs.iloc[pick]


def exact_quadrature(eigenvalues: np.ndarray) -> SpectralQuadrature:
    """An exact spectrum as a quadrature with unit weights on its eigenvalues (no probes)."""
    lam = np.asarray(eigenvalues, dtype=float)
    return SpectralQuadrature(np.zeros((0, 1)), np.zeros((0, 1)), len(lam), 0, 0, exact_nodes=lam)


@dataclass
class SpectrumPanel:
    """One (model, block) of the density figure."""

    run: str
    gap: float
    block: str
    quadrature: SpectralQuadrature
    exact: SpectralQuadrature | None
    type: str
    clusters: int


def spectrum_panels(
    chosen: pd.DataFrame, renyi: dict[str, Any], exact_models: int, exact_max_dim: int
) -> tuple[pd.DataFrame, list[SpectrumPanel]]:
    """SLQ quadratures (cached measurement), spectral types and exact spectra of the chosen runs.

    Args:
        chosen: Zoo-table rows with ``run, gap, path``.
        renyi: The correlation profile's SLQ settings (shared cache).
        exact_models: For the first this many models, blocks of dimension at
            most ``exact_max_dim`` also get the exact spectrum (dense Hessian,
            ``eigvalsh``).
        exact_max_dim: See ``exact_models``.

    Returns:
        ``(types, panels)``: one row per (run, block) with ``run, gap, block,
        dim, type, clusters, negative_mass``, and a :class:`SpectrumPanel` each.
    """
    from renyilib.experiments import zoo
    from renyilib.experiments.data import sharpness_subset
    from renyilib.experiments.zoo_measure import measure_run, quadrature_from_record

    rows, panels = [], []
    for k, (_, r) in enumerate(chosen.iterrows()):
        res = measure_run(r["path"], renyi=renyi)
        blocks = res["renyi"]["blocks"]
        model, config, _ = zoo.load_run(r["path"])
        data = sharpness_subset(zoo.run_data(config), renyi["subset"], renyi["subset_seed"])
        small = (
            [b for b, rec in blocks.items() if rec["dim"] <= exact_max_dim]
            if k < exact_models
            else []
        )
        exact = {}
        for b in small:
            h = hessian_operator(
                model, torch.nn.CrossEntropyLoss(), data, params=None if b == "all" else b
            ).to_dense()
            exact[b] = exact_quadrature(np.linalg.eigvalsh(h.double().cpu().numpy()))
        for b, rec in blocks.items():
            q = quadrature_from_record(rec)
            t = spectral_type(q)
            counted = sum(c["share"] >= t["settings"]["min_share"] for c in t["clusters"])
            rows.append(
                {
                    "run": r["run"],
                    "gap": r["gap"],
                    "block": b,
                    "dim": rec["dim"],
                    "type": t["type"],
                    "clusters": counted,
                    "negative_mass": q.negative_mass,
                }
            )
            panels.append(SpectrumPanel(r["run"], r["gap"], b, q, exact.get(b), t["type"], counted))
    return pd.DataFrame(rows), panels


def type_summary(types: pd.DataFrame) -> pd.DataFrame:
    """Per block: mean dimension and negative |λ| mass, and the count of each spectral type."""
    return (
        types.groupby("block")[["dim", "negative_mass"]]
        .mean()
        .join(
            types.groupby("block")["type"].agg(
                lambda s: ", ".join(f"{k}: {v}" for k, v in s.value_counts().items())
            )
        )
    )


def negative_mass_sentence(types: pd.DataFrame, tol: float = 1e-6) -> str:
    """Whether the shown spectra are indefinite, per kind of block, from their negative |λ| mass.

    Args:
        types: :func:`spectrum_panels`' table (``block``, ``negative_mass``).
        tol: Mass at or below this counts as none (quadrature round-off).

    Returns:
        A sentence for the layer blocks and one for "all", with the numbers.
    """
    parts = []
    for label, sub in (
        ("layer", types[types["block"] != "all"]),
        ("all-parameter", types[types["block"] == "all"]),
    ):
        if sub.empty:
            continue
        neg = sub["negative_mass"].astype(float)
        k = int((neg > tol).sum())
        if k == 0:
            parts.append(
                f"none of the {len(sub)} {label} spectra has mass on negative eigenvalues "
                "(positive semi-definite)"
            )
        else:
            parts.append(
                f"{k} of the {len(sub)} {label} spectra are indefinite (negative share of the "
                f"|λ| mass: mean {neg.mean():.3f}, largest {neg.max():.3f})"
            )
    if not parts:
        return "No spectra."
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


@dataclass
class SpectrumStudy:
    """Everything the spectrum chapter shows."""

    task: str
    chosen: pd.DataFrame
    types: pd.DataFrame
    panels: list[SpectrumPanel]
    summary: pd.DataFrame
    numbers: dict[str, Any] = field(default_factory=dict)


def spectrum_study(
    task: str | None,
    profile: str,
    *,
    root: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
) -> SpectrumStudy:
    """The spectrum chapter for ``task`` (default: the profile's task) in a ``spectrum`` profile.

    Args:
        task: Task name, or ``None``.
        profile: Profile of the ``spectrum`` section (its ``zoo_profile``,
            ``models``, ``exact_models``, ``exact_max_dim``); the SLQ settings
            are the ``correlation`` section's of the same profile.
        root: Project root (default: the folder of ``_config.yml``).
        out: Zoo folder (default: ``<root>/<out of the zoo profile>``).

    Returns:
        A :class:`SpectrumStudy`.

    Raises:
        MissingInputError: The zoo is not (fully) trained; the message gives
            ``renyilib zoo run --task <task> --profile <zoo profile>``.
    """
    from renyilib.experiments import zoo
    from renyilib.experiments.config import find_config, load_profile
    from renyilib.experiments.prerequisites import require_zoo

    cfg = load_profile("spectrum", profile)
    renyi = load_profile("correlation", profile)["renyi"]
    task = task or cfg["task"]
    root = Path(root) if root is not None else find_config().parent
    out = Path(out) if out is not None else root / load_profile("zoo", cfg["zoo_profile"])["out"]
    configs = require_zoo(task, cfg["zoo_profile"], out)
    runs = zoo.table(out, task)
    runs = runs[runs["run"].isin({zoo.run_dir(out, c).name for c in configs})]
    chosen = pick_by_gap(runs, cfg["models"])
    types, panels = spectrum_panels(chosen, renyi, cfg["exact_models"], cfg["exact_max_dim"])
    counts = types[types["block"] != "all"]["type"].value_counts()
    numbers = {
        "task": task,
        "n_models": len(chosen),
        "n_multi": int(counts.get("multi-cluster", 0)),
        "n_uniform": int(counts.get("uniform", 0)),
        "mean_negative_mass": float(types["negative_mass"].mean()),
        "negative_sentence": negative_mass_sentence(types),
    }
    return SpectrumStudy(task, chosen, types, panels, type_summary(types), numbers)
