"""The α → 0 end of the Rényi grid on exact spectra: float32 vs float64 and an eigenvalue floor.

For a normalized spectrum :math:`p_i = |\\lambda_i| / \\sum_j |\\lambda_j|` over the
:math:`n` non-zero eigenvalues, expanding :math:`p_i^\\alpha = e^{\\alpha\\log p_i}`
at small :math:`\\alpha` gives

.. math::

    H_\\alpha = \\frac{1}{1-\\alpha}\\log\\sum_i p_i^\\alpha
    = \\log n + \\alpha\\,\\Big(\\overline{\\log|\\lambda|} - \\log\\overline{|\\lambda|}\\Big)
      + O(\\alpha^2),

with the means over the :math:`n` eigenvalues: :math:`H_\\alpha - \\log n` is, to first
order, a log-determinant. On a rank-deficient Hessian most of the :math:`n` are
eigenvalues at the numerical floor (float round-off of a dense ``eigvalsh``),
so both :math:`n` and :math:`\\overline{\\log|\\lambda|}` are set by round-off,
not by the network. This module measures how far that goes on the trained
digits-cnn zoo:

* :func:`zoo_exact_spectra` computes (and caches) the exact eigenvalues of every
  layer block of every zoo model, with the model and data in float64 or float32;
* :func:`floored_entropy` is :math:`H_\\alpha` after dropping (or clamping)
  eigenvalues below ``floor · max|λ|``;
* :func:`floor_sensitivity` is the long table of :math:`H_\\alpha` per model,
  block, α, dtype and floor, relative to float64 without a floor;
* :func:`stable_orders` finds, per block, the orders whose value and whose
  Kendall τ against the generalization gap do not move with those choices;
* :func:`alpha_floor_figure` and :func:`alpha_floor_verdict` draw and state it.

``python -m renyilib.experiments.alpha_floor --out data/zoo --dest data/results/digits-cnn``
runs it and writes ``alpha_floor.csv.gz`` (+ ``.meta.json``) and ``alpha_floor.tau.csv``.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from renyilib.entropy import renyi_entropy, spectrum_magnitude
from renyilib.experiments.io import (
    atomic_write,
    code_version,
    config_hash,
    read_json,
    read_results,
    write_json,
)
from renyilib.hessian import hessian_operator, layer_blocks
from renyilib.statistics import best_alpha, bootstrap_tau, kendall_tau

__all__ = [
    "ALPHAS",
    "DTYPES",
    "FLOORS",
    "MODES",
    "ExactSpectra",
    "alpha_floor_figure",
    "alpha_floor_verdict",
    "best_alpha_stability",
    "block_spectrum",
    "floor_sensitivity",
    "exact_vs_slq_sentence",
    "exact_vs_slq_tau",
    "floored_entropy",
    "load_results",
    "main",
    "small_alpha_summary",
    "stability_table",
    "stable_orders",
    "stable_range_table",
    "tau_table",
    "zoo_exact_spectra",
]

#: The α grid of the study (α = 1 is Shannon's limit, computed exactly by
#: :func:`renyilib.entropy.renyi_entropy`).
ALPHAS: tuple[float, ...] = (1e-4, 1e-3, 0.01, 0.03, 0.06, 0.1, 0.2, 0.3, 0.5, 1.0, 1.5, 2.0)
#: Eigenvalue floors relative to :math:`\\max|\\lambda|` (0: only exact zeros are dropped).
FLOORS: tuple[float, ...] = (0.0, 1e-12, 1e-9, 1e-7, 1e-5, 1e-3)
#: The precisions of the dense Hessian (model and data cast to it).
DTYPES: tuple[str, ...] = ("float64", "float32")
#: How a floor treats the eigenvalues below it (see :func:`floored_entropy`).
MODES: tuple[str, ...] = ("drop", "clamp")

_TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32}
_DEFAULT_CACHE = Path("data/cache/alpha_floor")


# --------------------------------------------------------------------------- spectra


def block_spectrum(
    model: torch.nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    params: Sequence[str],
    dtype: str = "float64",
    *,
    loss_fn: Any = None,
    backend: str = "linearize",
    chunk: int = 256,
) -> tuple[np.ndarray, dict[str, float]]:
    """Exact eigenvalues of the loss Hessian of one parameter block, in a given precision.

    The model (a copy) and the inputs are cast to ``dtype``; the dense Hessian
    :math:`H = \\nabla^2_{\\theta_B} \\frac1N\\sum_i \\ell_i` is built from ``n``
    Hessian-vector products (:meth:`renyilib.hessian.HessianOperator.to_dense`,
    symmetrized) in that precision, and its eigenvalues are those of
    ``numpy.linalg.eigvalsh`` of the matrix cast to float64 — the exact path of
    :func:`renyilib.renyi.renyi_sharpness` (``spectrum="exact"``). For
    ``"float32"`` the round-off is thus that of float32 Hessian entries
    (relative :math:`\\sim 10^{-7}`), for ``"float64"`` that of float64 ones
    (:math:`\\sim 10^{-16}`).

    Args:
        model: The network (eval mode); not modified.
        data: ``(x, y)``; ``x`` is cast to ``dtype``.
        params: Parameter names of the block.
        dtype: ``"float64"`` or ``"float32"``.
        loss_fn: Mean loss (default cross-entropy).
        backend: :func:`renyilib.hessian.hessian_operator` backend.
        chunk: Columns per product batch of ``to_dense``.

    Returns:
        ``(eigenvalues ascending (float64), {"seconds_hessian", "seconds_eigh"})``.

    Raises:
        ValueError: Unknown ``dtype``.
    """
    if dtype not in _TORCH_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_TORCH_DTYPES)}, got {dtype!r}")
    td = _TORCH_DTYPES[dtype]
    net = copy.deepcopy(model).to(td).eval()
    x, y = data
    loss_fn = torch.nn.CrossEntropyLoss() if loss_fn is None else loss_fn
    t0 = time.perf_counter()
    op = hessian_operator(net, loss_fn, (x.to(td), y), list(params), backend=backend)
    H = op.to_dense(chunk=chunk).detach().cpu().double().numpy()
    t1 = time.perf_counter()
    lam = np.linalg.eigvalsh(H)
    t2 = time.perf_counter()
    return lam, {"seconds_hessian": t1 - t0, "seconds_eigh": t2 - t1}


@dataclass
class ExactSpectra:
    """Exact eigenvalues of zoo models' layer blocks.

    Attributes:
        eigenvalues: ``{(run, block, dtype): ascending float64 eigenvalues}``.
        runs: One row per run: ``run, gap, train_loss, test_loss, converged``.
        seconds: ``{(run, block, dtype): seconds to compute}`` (as cached).
        settings: Task, subset, subset seed, backend.
    """

    eigenvalues: dict[tuple[str, str, str], np.ndarray] = field(default_factory=dict)
    runs: pd.DataFrame = field(default_factory=pd.DataFrame)
    seconds: dict[tuple[str, str, str], float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def merge(self, other: ExactSpectra) -> ExactSpectra:
        """The union of two collections (``other`` wins on a shared key)."""
        runs = pd.concat([self.runs, other.runs]).drop_duplicates("run", keep="last")
        return ExactSpectra(
            {**self.eigenvalues, **other.eigenvalues},
            runs.sort_values("run").reset_index(drop=True),
            {**self.seconds, **other.seconds},
            {**self.settings, **other.settings},
        )


def _save_npz(path: Path, **arrays: Any) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez does not append ".npz"
            np.savez(f, **arrays)

    atomic_write(path, write)


def _default_subset(task: str) -> tuple[int, int]:
    from renyilib.experiments.zoo_measure import measure_settings

    rc = measure_settings("cpu", task)["renyi"]
    return int(rc["subset"]), int(rc["subset_seed"])


def zoo_exact_spectra(
    out: str | os.PathLike,
    task: str = "digits-cnn",
    dtypes: Sequence[str] = ("float64",),
    models: Sequence[str] | None = None,
    cache: str | os.PathLike = _DEFAULT_CACHE,
    *,
    blocks: Sequence[str] | None = None,
    subset: int | None = None,
    subset_seed: int | None = None,
    backend: str = "linearize",
    progress: bool = True,
    force: bool = False,
) -> ExactSpectra:
    """Exact eigenvalues of every layer block of the zoo's models, cached.

    Each spectrum is cached as ``<cache>/<key>/eigenvalues.npz`` (written
    atomically), ``key`` the :func:`~renyilib.experiments.io.config_hash` of the
    run hash, block, dtype, subset size and seed, backend and task; a rerun
    reads it back. The data is the fixed training subset of the correlation
    study (:func:`renyilib.experiments.data.sharpness_subset`; by default the
    size and seed of the task's ``cpu`` correlation profile, 256 and 0 for
    digits-cnn).

    Args:
        out: The zoo folder (``<out>/<task>/<run>``).
        task: Zoo task.
        dtypes: Precisions (``"float64"``, ``"float32"``; see :func:`block_spectrum`).
        models: Run hashes (default: every finished run of the task).
        cache: Cache folder.
        blocks: Block names (default: every layer block of :func:`renyilib.hessian.layer_blocks`, not ``"all"``).
        subset, subset_seed: The data subset (default: the correlation profile's).
        backend: Hessian-product backend.
        progress: tqdm bar over models.
        force: Recompute cached spectra.

    Returns:
        :class:`ExactSpectra`.

    Raises:
        ValueError: Unknown dtype, no finished run, unknown block or model.
    """
    from tqdm.auto import tqdm

    from renyilib.experiments import zoo
    from renyilib.experiments.data import sharpness_subset

    for d in dtypes:
        if d not in _TORCH_DTYPES:
            raise ValueError(f"dtypes: each must be one of {sorted(_TORCH_DTYPES)}, got {d!r}")
    n_sub, seed_sub = _default_subset(task)
    n_sub = n_sub if subset is None else int(subset)
    seed_sub = seed_sub if subset_seed is None else int(subset_seed)
    runs = zoo.table(out, task)
    if runs.empty:
        raise ValueError(f"out: no finished run of task {task!r} under {out}")
    if models is not None:
        unknown = sorted(set(models) - set(runs["run"]))
        if unknown:
            raise ValueError(f"models: unknown runs {unknown} of task {task!r}")
        runs = runs[runs["run"].isin(list(models))]
    runs = runs.sort_values("run").reset_index(drop=True)
    cache = Path(cache)
    res = ExactSpectra(
        runs=runs[["run", "gap", "train_loss", "test_loss", "converged"]].copy(),
        settings={"task": task, "subset": n_sub, "subset_seed": seed_sub, "backend": backend},
    )
    bar = tqdm(list(runs.itertuples()), desc="exact spectra", disable=not progress)
    for row in bar:
        state: dict[str, Any] = {}
        names = None
        for dtype in dtypes:
            if names is None:
                # block names depend only on the architecture: read once from the config
                model = zoo.build_run_model(read_json(Path(row.path) / "config.json")["config"])
                all_blocks = {k: v for k, v in layer_blocks(model).items() if k != "all"}
                names = list(all_blocks) if blocks is None else list(blocks)
                for b in names:
                    if b not in all_blocks:
                        raise ValueError(f"blocks: unknown block {b!r}; valid: {list(all_blocks)}")
            for b in names:
                key = config_hash(
                    {"task": task, "run": row.run, "block": b, "dtype": dtype,
                     "subset": n_sub, "subset_seed": seed_sub, "backend": backend}
                )  # fmt: skip
                path = cache / key / "eigenvalues.npz"
                if path.is_file() and not force:
                    with np.load(path) as z:
                        lam = z["eigenvalues"]
                        secs = float(z["seconds_hessian"] + z["seconds_eigh"])
                else:
                    if "model" not in state:
                        state["model"], config, _ = zoo.load_run(row.path, device="cpu")
                        bundle = zoo.run_data(config)
                        state["data"] = sharpness_subset(
                            bundle, min(n_sub, len(bundle.train_y)), seed_sub, device="cpu"
                        )
                    bar.set_postfix_str(f"{b} {dtype}")
                    lam, t = block_spectrum(
                        state["model"], state["data"], all_blocks[b], dtype, backend=backend
                    )
                    secs = t["seconds_hessian"] + t["seconds_eigh"]
                    meta = {"task": task, "run": row.run, "block": b, "dtype": dtype,
                            "subset": n_sub, "subset_seed": seed_sub, "backend": backend,
                            "code_version": code_version()}  # fmt: skip
                    _save_npz(
                        path,
                        eigenvalues=lam,
                        seconds_hessian=t["seconds_hessian"],
                        seconds_eigh=t["seconds_eigh"],
                        meta=np.array(json.dumps(meta)),
                    )
                res.eigenvalues[(row.run, b, dtype)] = np.asarray(lam, dtype=np.float64)
                res.seconds[(row.run, b, dtype)] = secs
    return res


# --------------------------------------------------------------------------- entropy


def floored_entropy(
    eigs: np.ndarray | Sequence[float],
    alphas: float | Sequence[float] | np.ndarray,
    floor: float,
    mode: str = "drop",
    negative: str = "abs",
) -> pd.DataFrame:
    """Rényi entropy :math:`H_\\alpha` of a spectrum with an eigenvalue floor relative to :math:`\\max|\\lambda|`.

    With :math:`x_i = g(\\lambda_i)` (:math:`|\\lambda_i|` for ``negative="abs"``)
    and the threshold :math:`t = \\text{floor}\\cdot\\max_i x_i`:

    * ``"drop"`` (default): eigenvalues with :math:`x_i < t` are removed, and so
      are exact zeros; :math:`n` is the number kept, so the dropped eigenvalues
      **leave the count**, and :math:`H_\\alpha \\to \\log n` as
      :math:`\\alpha \\to 0`. With ``floor=0`` only exact zeros are dropped (which
      contribute nothing to :math:`H_\\alpha` anyway, :math:`0^\\alpha = 0`).
    * ``"clamp"``: the variant that **keeps** :math:`n` = the block dimension:
      :math:`x_i \\to \\max(x_i, t)`, every eigenvalue below the floor is raised
      to it (exact zeros too, for ``floor > 0``).

    ``"drop"`` is the default because it is the entropy of the part of the
    spectrum that is resolved at the chosen relative precision: once the floor
    is above the round-off level its value no longer depends on round-off, and
    its small-α limit :math:`\\log n` is the log of the numerical rank at that
    precision. ``"clamp"`` keeps the normalization :math:`\\log n` fixed but puts
    mass :math:`t` on every unresolved direction, so at small α it adds
    :math:`\\approx \\alpha\\,\\tfrac{n_0}{n}\\log\\text{floor}` (:math:`n_0` the
    clamped count) to :math:`H_\\alpha - \\log n`: its value is set by the floor
    itself, and it is given for comparison.

    The entropy is :func:`renyilib.entropy.renyi_entropy` of the kept (or
    clamped) magnitudes (α = 1 is Shannon's :math:`-\\sum p\\log p`).

    Args:
        eigs: Eigenvalues (1-D).
        alphas: Orders α > 0.
        floor: Relative floor, :math:`0 \\le \\text{floor} < 1`.
        mode: ``"drop"`` or ``"clamp"``.
        negative: ``"abs"`` or ``"positive"`` (:math:`g = \\max(\\lambda, 0)`).

    Returns:
        DataFrame with one row per α: ``alpha``, ``entropy`` (:math:`H_\\alpha`),
        ``n_used`` (the :math:`n` of the normalization), ``n_below``
        (eigenvalues with :math:`x_i < t` or zero: dropped or clamped),
        ``entropy_minus_log_n`` (:math:`H_\\alpha - \\log n_\\text{used}`).

    Raises:
        ValueError: Bad ``floor``, ``mode``, ``negative``, or an empty /
            non-finite / all-zero spectrum.

    Example:
        >>> floored_entropy([4.0, 1.0, 1e-9], [1e-4], 1e-6)["n_used"].tolist()
        [2]
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not (np.isscalar(floor) and np.isfinite(floor) and 0.0 <= float(floor) < 1.0):
        raise ValueError(f"floor must be a number in [0, 1), got {floor!r}")
    lam = np.asarray(eigs, dtype=np.float64).reshape(-1)
    if lam.size == 0 or not np.all(np.isfinite(lam)):
        raise ValueError("eigs: expected a non-empty array of finite eigenvalues")
    x = spectrum_magnitude(negative)(lam)
    top = x.max()
    if not top > 0:
        raise ValueError(f"eigs: the spectrum is all zero (negative={negative!r})")
    t = float(floor) * top
    below = (x < t) | (x == 0)
    if mode == "drop":
        xs = x[~below]
        n_used = int(xs.size)
    else:
        xs = np.maximum(x, t) if floor > 0 else x
        n_used = int(x.size)
    h = np.atleast_1d(renyi_entropy(xs, alphas, negative="abs"))
    a = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    return pd.DataFrame(
        {
            "alpha": a,
            "entropy": h,
            "n_used": n_used,
            "n_below": int(below.sum()),
            "entropy_minus_log_n": h - np.log(n_used),
        }
    )


def floor_sensitivity(
    spectra: ExactSpectra,
    alphas: Sequence[float] = ALPHAS,
    floors: Sequence[float] = FLOORS,
    dtypes: Sequence[str] | None = None,
    modes: Sequence[str] = MODES,
    negative: str = "abs",
) -> pd.DataFrame:
    """Long table of :math:`H_\\alpha` per model, block, α, dtype, floor and mode, against the reference.

    The reference of a (model, block, α) is float64 with ``floor=0`` (only
    exact zeros dropped, for which both modes agree). ``rel_change`` is the
    relative change of the sharpness :math:`-H_\\alpha`:
    :math:`((-H_\\alpha) - (-H^{\\text{ref}}_\\alpha)) / |H^{\\text{ref}}_\\alpha|`.

    Args:
        spectra: From :func:`zoo_exact_spectra` (must hold float64 of every model/block used).
        alphas, floors, modes: The grid (see :func:`floored_entropy`).
        dtypes: Dtypes to include (default: all present).
        negative: ``"abs"`` or ``"positive"``.

    Returns:
        Columns ``run, block, dim, dtype, floor, mode, alpha, n_used, n_below,
        entropy, entropy_minus_log_n, sharpness, ref_entropy, rel_change, gap,
        converged``.

    Raises:
        ValueError: A spectrum without its float64 reference, or an unknown dtype.
    """
    present = sorted({d for _, _, d in spectra.eigenvalues})
    dtypes = present if dtypes is None else list(dtypes)
    for d in dtypes:
        if d not in present:
            raise ValueError(f"dtypes: {d!r} is not in the spectra (present: {present})")
    info = spectra.runs.set_index("run")
    rows = []
    for (run, block, dtype), lam in sorted(spectra.eigenvalues.items()):
        if dtype not in dtypes:
            continue
        ref_lam = spectra.eigenvalues.get((run, block, "float64"))
        if ref_lam is None:
            raise ValueError(f"spectra: {run}/{block} has {dtype} but no float64 reference")
        ref = floored_entropy(ref_lam, alphas, 0.0, "drop", negative)["entropy"].to_numpy()
        for mode in modes:
            for fl in floors:
                df = floored_entropy(lam, alphas, fl, mode, negative)
                df.insert(0, "mode", mode)
                df.insert(0, "floor", float(fl))
                df.insert(0, "dtype", dtype)
                df.insert(0, "dim", lam.size)
                df.insert(0, "block", block)
                df.insert(0, "run", run)
                df["sharpness"] = -df["entropy"]
                df["ref_entropy"] = ref
                df["rel_change"] = (df["sharpness"] + ref) / np.abs(ref)
                rows.append(df)
    if not rows:
        raise ValueError("spectra: no spectrum of the requested dtypes")
    out = pd.concat(rows, ignore_index=True)
    out["gap"] = out["run"].map(info["gap"])
    out["converged"] = out["run"].map(info["converged"]).astype(bool)
    return out


# --------------------------------------------------------------------------- stability


def tau_table(
    table: pd.DataFrame,
    only_converged: bool = True,
    num_resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Kendall τ of the sharpness :math:`-H_\\alpha` against the gap, per block, α, dtype, floor and mode.

    Each τ is compared with the reference's (float64, floor 0, ``"drop"``) on
    **the same models** (float32 may cover fewer): ``tau_ref`` and its
    bootstrap standard error ``tau_ref_se`` (:func:`renyilib.statistics.bootstrap_tau`
    over models) are computed on the models of that row.

    Args:
        table: From :func:`floor_sensitivity`.
        only_converged: Use converged runs only (as the correlation study does).
        num_resamples, seed: Of the bootstrap.

    Returns:
        Columns ``block, alpha, dtype, floor, mode, n, tau, tau_ref, tau_ref_se, tau_shift``
        (``tau - tau_ref``).
    """
    t = table[table["converged"]] if only_converged else table
    ref = t[(t["dtype"] == "float64") & (t["floor"] == 0.0) & (t["mode"] == "drop")]
    ref = ref.set_index(["block", "alpha", "run"])["sharpness"]
    se_cache: dict[tuple, tuple[float, float]] = {}
    rows = []
    for (block, alpha, dtype, fl, mode), g in t.groupby(
        ["block", "alpha", "dtype", "floor", "mode"], sort=True
    ):
        g = g.sort_values("run")
        runs = tuple(g["run"])
        r = ref.loc[[(block, alpha, run) for run in runs]].to_numpy()
        key = (block, alpha, runs)
        if key not in se_cache:
            b = bootstrap_tau(r, g["gap"].to_numpy(), num_resamples=num_resamples, seed=seed)
            se_cache[key] = (b["tau"], b["stderr"])
        tau_ref, se = se_cache[key]
        tau = kendall_tau(g["sharpness"].to_numpy(), g["gap"].to_numpy()).tau
        rows.append(
            {"block": block, "alpha": alpha, "dtype": dtype, "floor": fl, "mode": mode,
             "n": len(runs), "tau": tau, "tau_ref": tau_ref, "tau_ref_se": se,
             "tau_shift": tau - tau_ref}
        )  # fmt: skip
    return pd.DataFrame(rows)


def stability_table(
    table: pd.DataFrame,
    taus: pd.DataFrame | None = None,
    tol: float = 0.01,
    dtypes: Sequence[str] | None = None,
    floors: Sequence[float] | None = None,
    modes: Sequence[str] = ("drop",),
) -> pd.DataFrame:
    """Per block and α: how far the value and τ move over the chosen dtypes, floors and modes.

    Args:
        table: From :func:`floor_sensitivity`.
        taus: From :func:`tau_table` of the same table (computed if ``None``).
        tol: Tolerance on the relative change of :math:`-H_\\alpha` (0.01 = 1%).
        dtypes, floors, modes: The choices the value must be stable to
            (default: every dtype and floor in ``table``; ``"drop"`` only).

    Returns:
        Columns ``block, alpha, max_rel_change`` (max over models and choices of
        ``|rel_change|``), ``shift_to_spread`` (max over choices of the median
        over models of :math:`|H_\\alpha - H^{\\text{ref}}_\\alpha|`, divided by the
        standard deviation of :math:`H^{\\text{ref}}_\\alpha` over the models: a
        move of order 1 reorders the zoo however small it is relative to
        :math:`H_\\alpha`; NaN without ``ref_entropy``), ``worst`` (the choice
        reaching ``max_rel_change``), ``max_tau_shift``
        (max ``|tau_shift|``), ``tau_ref``, ``tau_ref_se`` (on all models),
        ``value_stable`` (``max_rel_change <= tol``), ``tau_stable`` (every
        ``|tau_shift| < tau_ref_se`` of its model set), ``stable`` (both).
    """

    def pick(df: pd.DataFrame) -> pd.DataFrame:
        keep = df["mode"].isin(list(modes))
        if dtypes is not None:
            keep &= df["dtype"].isin(list(dtypes))
        if floors is not None:
            keep &= df["floor"].isin([float(f) for f in floors])
        return df[keep]

    if taus is None:
        taus = tau_table(table)
    t = pick(table)
    tt = pick(taus)
    if t.empty:
        raise ValueError("no row of table matches the chosen dtypes, floors and modes")
    rows = []
    for (block, alpha), g in t.groupby(["block", "alpha"], sort=True):
        i = g["rel_change"].abs().idxmax()
        worst = g.loc[i]
        gt = tt[(tt["block"] == block) & (tt["alpha"] == alpha)]
        full = gt[(gt["dtype"] == "float64") & (gt["floor"] == 0.0)]
        shift = gt["tau_shift"].abs()
        # the move of H_α against its spread over models: at α → 0 a 0.01% move can reorder the zoo
        spread = g.drop_duplicates("run")["ref_entropy"].std() if "ref_entropy" in g else np.nan
        moves = (
            g.assign(d=(g["sharpness"] + g["ref_entropy"]).abs())
            .groupby(["dtype", "floor", "mode"])["d"]
            .median()
            if "ref_entropy" in g
            else pd.Series([np.nan])
        )
        rows.append(
            {
                "block": block,
                "alpha": alpha,
                "max_rel_change": float(abs(worst["rel_change"])),
                "shift_to_spread": float(moves.max() / spread) if spread > 0 else float("nan"),
                "worst": f"{worst['dtype']}, floor {worst['floor']:g}, {worst['mode']}",
                "max_tau_shift": float(shift.max()) if len(gt) else float("nan"),
                "tau_ref": float(full["tau_ref"].iloc[0]) if len(full) else float("nan"),
                "tau_ref_se": float(full["tau_ref_se"].iloc[0]) if len(full) else float("nan"),
                "tau_stable": bool(len(gt)) and bool((shift < gt["tau_ref_se"]).all()),
            }
        )
    out = pd.DataFrame(rows)
    out["value_stable"] = out["max_rel_change"] <= tol
    out["stable"] = out["value_stable"] & out["tau_stable"]
    return out


def stable_orders(
    table: pd.DataFrame,
    tol: float = 0.01,
    taus: pd.DataFrame | None = None,
    **choices: Any,
) -> pd.DataFrame:
    """Per block, the α whose :math:`H_\\alpha` and τ are stable to the precision and floor choices.

    An order is stable when, over every model and every choice (dtypes,
    floors, modes as for :func:`stability_table`), :math:`-H_\\alpha` moves by at
    most ``tol`` relative to float64 without a floor, **and** the zoo's Kendall
    τ against the gap moves by less than its bootstrap standard error.

    Args:
        table: From :func:`floor_sensitivity`.
        tol: Relative tolerance on the value.
        taus: From :func:`tau_table` (computed if ``None``).
        **choices: ``dtypes``, ``floors``, ``modes`` of :func:`stability_table`.

    Returns:
        One row per block: ``block``, ``stable_alphas`` (comma-separated),
        ``alpha_min``, ``alpha_max`` (of the contiguous stable run that ends at
        the largest stable α; NaN if none), ``value_only_alphas`` (stable in
        value, not in τ), ``unstable_alphas``.
    """
    st = stability_table(table, taus, tol, **choices)
    rows = []
    for block, g in st.groupby("block", sort=True):
        g = g.sort_values("alpha")
        a = g["alpha"].to_numpy()
        ok = g["stable"].to_numpy()
        lo = hi = float("nan")
        if ok.any():
            j = int(np.flatnonzero(ok)[-1])
            i = j
            while i > 0 and ok[i - 1]:
                i -= 1
            lo, hi = float(a[i]), float(a[j])
        vo = g["value_stable"].to_numpy() & ~ok
        rows.append(
            {
                "block": block,
                "stable_alphas": ",".join(f"{x:g}" for x in a[ok]),
                "alpha_min": lo,
                "alpha_max": hi,
                "value_only_alphas": ",".join(f"{x:g}" for x in a[vo]),
                "unstable_alphas": ",".join(f"{x:g}" for x in a[~g["value_stable"].to_numpy()]),
            }
        )
    return pd.DataFrame(rows)


def small_alpha_summary(
    table: pd.DataFrame, taus: pd.DataFrame, alpha: float = 1e-4, mode: str = "drop"
) -> pd.DataFrame:
    """How :math:`H_\\alpha` and τ at one (small) order move with each dtype and floor.

    Args:
        table: From :func:`floor_sensitivity`.
        taus: From :func:`tau_table`.
        alpha: The order (must be in the table).
        mode: ``"drop"`` or ``"clamp"``.

    Returns:
        One row per block, dtype and floor: ``models``, ``median_n_used``,
        ``median_entropy``, ``median_abs_rel_change``, ``max_abs_rel_change``
        (of :math:`-H_\\alpha`, over models), ``n_tau`` (converged models of τ),
        ``tau``, ``tau_ref``, ``tau_ref_se``, ``tau_shift``.

    Raises:
        ValueError: ``alpha`` not in the table.
    """
    t = table[(np.isclose(table["alpha"], alpha)) & (table["mode"] == mode)]
    if t.empty:
        raise ValueError(f"alpha: {alpha!r} is not an order of the table")
    g = t.groupby(["block", "dtype", "floor"])
    out = pd.DataFrame(
        {
            "models": g["run"].nunique(),
            "median_n_used": g["n_used"].median(),
            "median_entropy": g["entropy"].median(),
            "median_abs_rel_change": g["rel_change"].apply(lambda x: x.abs().median()),
            "max_abs_rel_change": g["rel_change"].apply(lambda x: x.abs().max()),
        }
    ).reset_index()
    tt = taus[np.isclose(taus["alpha"], alpha) & (taus["mode"] == mode)]
    tt = tt[["block", "dtype", "floor", "n", "tau", "tau_ref", "tau_ref_se", "tau_shift"]]
    return out.merge(tt.rename(columns={"n": "n_tau"}), on=["block", "dtype", "floor"], how="left")


# --------------------------------------------------------------------------- figure, verdict


def alpha_floor_figure(
    table: pd.DataFrame,
    values: str | Sequence[str] = ("entropy", "tau"),
    taus: pd.DataFrame | None = None,
    mode: str = "drop",
    blocks: Sequence[str] | None = None,
) -> Any:
    """Per block (columns) and value (rows), the median over models of :math:`H_\\alpha` (or τ) against α.

    α is on a log axis; one line per (dtype, floor), float64 solid, float32 dashed.

    Args:
        table: From :func:`floor_sensitivity`.
        values: One or more of ``"entropy"`` (:math:`H_\\alpha`),
            ``"entropy_minus_log_n"``, ``"rel_change"`` (medians over models) and
            ``"tau"`` (Kendall τ against the gap).
        taus: From :func:`tau_table` (for ``"tau"``; computed if ``None``).
        mode: ``"drop"`` or ``"clamp"``.
        blocks: Blocks to draw (default: all).

    Returns:
        The matplotlib figure.

    Raises:
        ValueError: Unknown value.
    """
    import matplotlib.pyplot as plt

    values = [values] if isinstance(values, str) else list(values)
    labels = {"entropy": "median H_α", "entropy_minus_log_n": "median H_α − log n",
              "rel_change": "median rel. change of −H_α", "tau": "Kendall τ (−H_α vs gap)"}  # fmt: skip
    for v in values:
        if v not in labels:
            raise ValueError(f"values: each must be one of {sorted(labels)}, got {v!r}")
    if "tau" in values and taus is None:
        taus = tau_table(table)
    names = sorted(table["block"].unique()) if blocks is None else list(blocks)
    fig, axes = plt.subplots(
        len(values), len(names), figsize=(3.6 * len(names), 3.0 * len(values)), squeeze=False
    )
    floors = sorted(table["floor"].unique())
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(floors)))
    for row, v in zip(axes, values):
        src = taus if v == "tau" else table
        src = src[src["mode"] == mode]
        for ax, b in zip(row, names):
            g = src[src["block"] == b]
            for dtype, ls in (("float64", "-"), ("float32", "--")):
                for c, fl in zip(colors, floors):
                    h = g[(g["dtype"] == dtype) & (g["floor"] == fl)]
                    if h.empty:
                        continue
                    m = h.groupby("alpha")[v].median()
                    ax.plot(m.index, m.to_numpy(), ls, color=c, lw=1.2,
                            label=f"{dtype}, floor {fl:g}")  # fmt: skip
            ax.set_xscale("log")
            ax.set_title(b, fontsize=9)
            ax.set_xlabel("α")
        row[0].set_ylabel(labels[v])
    axes[0][-1].legend(fontsize=6, loc="best")
    fig.tight_layout()
    return fig


def alpha_floor_verdict(
    table: pd.DataFrame,
    taus: pd.DataFrame | None = None,
    tol: float = 0.01,
    chapter_profiles: pd.DataFrame | None = None,
) -> str:
    """The conclusion, generated from the numbers: the stable α range per block and the fate of α = 1e-4.

    Args:
        table: From :func:`floor_sensitivity`.
        taus: From :func:`tau_table` (computed if ``None``).
        tol: Relative tolerance on the value.
        chapter_profiles: The correlation chapter's ``profiles.csv`` (SLQ;
            columns ``block, alpha, sharpness, gap, converged``), to state its best α
            per block; ``None`` skips that part.

    Returns:
        A paragraph of plain text.
    """
    taus = tau_table(table) if taus is None else taus
    so = stable_orders(table, tol, taus)
    st = stability_table(table, taus, tol)
    parts = []
    for r in so.itertuples():
        s = st[st["block"] == r.block].set_index("alpha")
        small = s.loc[min(s.index)]
        rng = (
            f"α ∈ [{r.alpha_min:g}, {r.alpha_max:g}]"
            if np.isfinite(r.alpha_min)
            else "no order of the grid"
        )
        parts.append(
            f"{r.block}: {rng} is stable (value within {tol:.0%}, τ within its bootstrap SE); "
            f"at α = {min(s.index):g} −H_α moves by up to {small['max_rel_change']:.1%} "
            f"({small['worst']}) and τ by up to {small['max_tau_shift']:.2f} "
            f"(SE {small['tau_ref_se']:.2f})"
        )
    text = "Stable orders per block over dtypes and floors — " + "; ".join(parts) + "."
    a0 = float(table["alpha"].min())
    sm = small_alpha_summary(table, taus, a0)
    f32 = sm[(sm["dtype"] == "float32") & (sm["floor"] == 0.0)]
    if len(f32):
        s32 = stability_table(table, taus, tol, floors=[0.0])
        s32 = s32[np.isclose(s32["alpha"], a0)].set_index("block")["shift_to_spread"]
        text += (
            f" float32 alone (floor 0) moves −H_α at α = {a0:g} by (median / max over models) "
            + "; ".join(
                f"{r.block} {r.median_abs_rel_change:.2%} / {r.max_abs_rel_change:.2%}, "
                f"{s32.get(r.block, np.nan):.2f}× the spread over models "
                f"({r.models} models; τ {r.tau_ref:.2f} → {r.tau:.2f} on {r.n_tau})"
                for r in f32.itertuples()
            )
            + "."
        )
    floors = sorted(f for f in table["floor"].unique() if f > 0)
    by_floor = {
        fmax: stable_orders(table, tol, taus, floors=[0.0, *[f for f in floors if f <= fmax]])
        for fmax in floors
    }
    text += (
        " Smallest α of the stable range when the floors go up to "
        + "/".join(f"{f:g}" for f in floors)
        + " (float32 included): "
        + "; ".join(
            f"{b} "
            + "/".join(
                f"{v:g}" if np.isfinite(v) else "none"
                for v in (by_floor[f].set_index("block").loc[b, "alpha_min"] for f in floors)
            )
            for b in so["block"]
        )
        + "."
    )
    ref = taus[(taus["dtype"] == "float64") & (taus["floor"] == 0.0) & (taus["mode"] == "drop")]
    ba = best_alpha(ref.assign(task="x"), by=("task", "block"))
    ba_txt = ", ".join(f"{r.block} {r.alpha:g} (τ {r.tau:.2f})" for r in ba.itertuples())
    text += f" Best α on exact float64 spectra (paper range, floor 0): {ba_txt}."
    survive = []
    for b in sorted(ref["block"].unique()):
        picks = []
        for fl in sorted(taus["floor"].unique()):
            g = taus[(taus["block"] == b) & (taus["dtype"] == "float64") & (taus["floor"] == fl)
                     & (taus["mode"] == "drop")]  # fmt: skip
            bb = best_alpha(g.assign(task="x"), by=("task", "block"))
            picks.append(f"{bb['alpha'].iloc[0]:g}" if len(bb) else "–")
        survive.append(f"{b} [{', '.join(picks)}]")
    text += (
        " Best α per floor ("
        + ", ".join(f"{f:g}" for f in sorted(taus["floor"].unique()))
        + "): "
        + "; ".join(survive)
        + "."
    )
    if chapter_profiles is not None:
        cp = chapter_profiles
        if "converged" in cp:
            cp = cp[cp["converged"].astype(bool)]
        sw = []
        for (b, a), g in cp.groupby(["block", "alpha"]):
            sw.append({"task": "x", "block": b, "alpha": a,
                       "tau": kendall_tau(g["sharpness"].to_numpy(), g["gap"].to_numpy()).tau})  # fmt: skip
        cb = best_alpha(pd.DataFrame(sw), by=("task", "block"))
        cb = cb[cb["block"].isin(set(so["block"]))]
        verdicts = []
        for r in cb.itertuples():
            # the largest floor up to which the chapter's α stays stable (value and τ / τ only)
            both = [f for f in floors if f"{r.alpha:g}" in by_floor[f].set_index("block").loc[
                r.block, "stable_alphas"].split(",")]  # fmt: skip
            tau_ok = []
            for f in floors:
                sf = stability_table(table, taus, tol, floors=[0.0, *[x for x in floors if x <= f]])
                hit = sf[(sf["block"] == r.block) & np.isclose(sf["alpha"], r.alpha)]
                if len(hit) and bool(hit["tau_stable"].iloc[0]):
                    tau_ok.append(f)
            ok_both = _prefix_max(floors, both)
            ok_tau = _prefix_max(floors, tau_ok)
            verdicts.append(
                f"{r.block} {r.alpha:g} (value and τ stable for floors up to "
                f"{'none' if ok_both is None else f'{ok_both:g}'}, τ alone up to "
                f"{'none' if ok_tau is None else f'{ok_tau:g}'}, float32 included)"
            )
        picks = cb[cb["alpha"] <= 1e-4]
        text += (
            f" The correlation chapter's SLQ best α: {', '.join(verdicts)}; "
            f"{len(picks)} of {len(cb)} layers pick α = 0.0001"
        )
        if len(picks):
            fates = []
            for r in picks.itertuples():
                srow = so[so["block"] == r.block].iloc[0]
                stable = "0.0001" in srow["stable_alphas"].split(",")
                fates.append(
                    f"on {r.block} it is {'within' if stable else 'outside'} the range stable to "
                    "every floor and dtype of the grid"
                )
            text += " (" + "; ".join(fates) + ")."
        else:
            text += "."
    return text


def stable_range_table(
    table: pd.DataFrame, taus: pd.DataFrame | None = None, tol: float = 0.01
) -> pd.DataFrame:
    """Per block, the smallest stable α when the eigenvalue floors go up to each value.

    Column ``floor ≤ f`` holds the smallest α of the block's stable range
    (:func:`stable_orders` over float32/float64 and the floors ``0 … f``), NaN when
    no order of the grid is stable; a floor that cuts into resolved eigenvalues
    (not round-off) narrows the range.

    Args:
        table: From :func:`floor_sensitivity`.
        taus: From :func:`tau_table` (computed if ``None``).
        tol: Relative tolerance on the value.

    Returns:
        One row per block.
    """
    taus = tau_table(table) if taus is None else taus
    floors = sorted(f for f in table["floor"].unique() if f > 0)
    out = None
    for fmax in floors:
        st = stable_orders(table, tol, taus, floors=[0.0, *[f for f in floors if f <= fmax]])
        col = st.set_index("block")["alpha_min"].rename(f"floor ≤ {fmax:g}")
        out = col.to_frame() if out is None else out.join(col)
    return out.reset_index()


def exact_vs_slq_tau(taus: pd.DataFrame, slq_sweep: pd.DataFrame) -> pd.DataFrame:
    """τ(α) per layer from the exact float64 spectra beside the same τ from the chapter's SLQ profile.

    Args:
        taus: From :func:`tau_table` (its float64, floor-0, ``"drop"`` rows are the
            exact reference, with the bootstrap SE over models).
        slq_sweep: The correlation chapter's τ sweep (``block, alpha, tau``; SLQ).

    Returns:
        One row per layer and α of both grids: ``tau_exact``, ``tau_exact_se``,
        ``tau_slq``, ``difference`` (SLQ − exact) and ``n`` (models of the exact τ).
    """
    check = [c for c in ("block", "alpha", "tau") if c not in slq_sweep]
    if check:
        raise KeyError(f"slq_sweep: missing columns {check}")
    ref = taus[(taus["dtype"] == "float64") & (taus["floor"] == 0.0) & (taus["mode"] == "drop")]
    ref = ref[["block", "alpha", "tau_ref", "tau_ref_se", "n"]].rename(
        columns={"tau_ref": "tau_exact", "tau_ref_se": "tau_exact_se"}
    )
    slq = slq_sweep[["block", "alpha", "tau"]].rename(columns={"tau": "tau_slq"}).copy()
    # the grids are float: match α to 1e-9 relative
    slq["alpha_key"] = slq["alpha"].map(lambda a: round(float(a), 9))
    ref = ref.assign(alpha_key=ref["alpha"].map(lambda a: round(float(a), 9)))
    out = ref.merge(slq.drop(columns="alpha"), on=["block", "alpha_key"], how="inner")
    out["difference"] = out["tau_slq"] - out["tau_exact"]
    cols = ["block", "alpha", "tau_exact", "tau_exact_se", "tau_slq", "difference", "n"]
    return out[cols].sort_values(["block", "alpha"]).reset_index(drop=True)


def exact_vs_slq_sentence(comparison: pd.DataFrame) -> str:
    """What :func:`exact_vs_slq_tau` shows, from its numbers: how far SLQ moves τ, and where.

    Counts the (layer, α) cells whose SLQ τ differs from the exact τ by more
    than the exact τ's bootstrap standard error, gives the largest difference
    overall and at α ≥ 0.5, and compares each layer's best α (largest τ) under
    both.
    """
    if comparison.empty:
        return "No α is on both grids."
    d = comparison["difference"].abs()
    big = int((d > comparison["tau_exact_se"]).sum())
    worst = comparison.loc[d.idxmax()]
    hi = comparison[comparison["alpha"] >= 0.5]
    text = (
        f"SLQ (the chapter's settings) moves τ by more than its bootstrap standard error in "
        f"{big} of {len(comparison)} (layer, α) cells; the largest difference is "
        f"{worst['difference']:+.2f} ({worst['block']}, α = {worst['alpha']:g}, exact τ "
        f"{worst['tau_exact']:.2f} ± {worst['tau_exact_se']:.2f})"
    )
    if len(hi):
        w = hi.loc[hi["difference"].abs().idxmax()]
        text += f", and {w['difference']:+.2f} at α ≥ 0.5 ({w['block']}, α = {w['alpha']:g})"
    best = []
    for block, g in comparison.groupby("block", sort=False):
        a_ex = g.loc[g["tau_exact"].idxmax(), "alpha"]
        a_slq = g.loc[g["tau_slq"].idxmax(), "alpha"]
        best.append(f"{block} {a_ex:g} (exact) vs {a_slq:g} (SLQ)")
    return text + ". Best α on the common grid: " + "; ".join(best) + "."


def best_alpha_stability(ranges: pd.DataFrame, best: pd.DataFrame, cap: float = 1e-7) -> str:
    """Whether each layer's chosen best α lies in its stable range, as a sentence.

    Args:
        ranges: :func:`stable_range_table`.
        best: ``block, alpha`` (e.g. the correlation chapter's best α per layer).
        cap: The floor cap whose column is used (round-off floors only by default).

    Returns:
        One clause per layer of both tables and a count of the layers whose best
        α is inside its stable range.
    """
    col = f"floor ≤ {cap:g}"
    if col not in ranges:
        raise KeyError(f"ranges: no column {col!r}; columns: {list(ranges.columns)}")
    start = ranges.set_index("block")[col]
    parts, inside = [], 0
    for row in best.itertuples():
        if row.block not in start.index:
            continue
        a0 = start[row.block]
        if not np.isfinite(a0):
            parts.append(f"{row.block}: best α {row.alpha:g}, no stable order")
        elif row.alpha >= a0:
            inside += 1
            parts.append(f"{row.block}: best α {row.alpha:g}, inside its stable range (α ≥ {a0:g})")
        else:
            parts.append(f"{row.block}: best α {row.alpha:g}, below its stable range (α ≥ {a0:g})")
    return (
        f"{inside} of {len(parts)} layers have their best α inside the range that is stable to "
        f"round-off (floors up to {cap:g}): " + "; ".join(parts) + "."
    )


def load_results(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The committed study (``alpha_floor.csv.gz``, ``.tau.csv``, ``.meta.json``) of ``folder``, or ``None``."""
    files = read_results(folder, "alpha_floor", (".csv.gz", ".tau.csv", ".meta.json"))
    return None if files is None else dict(zip(("table", "taus", "meta"), files))


def _prefix_max(grid: Sequence[float], ok: Sequence[float]) -> float | None:
    """The largest ``f`` of ``grid`` such that every grid value up to ``f`` is in ``ok`` (None if the first is not)."""
    best = None
    for f in grid:
        if f not in ok:
            break
        best = f
    return best


# --------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m renyilib.experiments.alpha_floor``: compute, tabulate and export the study."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="data/zoo", help="zoo folder")
    p.add_argument("--task", default="digits-cnn")
    p.add_argument("--dest", default="data/results/digits-cnn", help="results folder")
    p.add_argument("--cache", default=str(_DEFAULT_CACHE))
    p.add_argument("--full-models", type=int, default=16,
                   help="runs (spread over the gap, converged) whose every block is done in float64 (0: all)")  # fmt: skip
    p.add_argument("--small-blocks", default="features.0.weight,features.2.weight,fc.weight",
                   help="blocks done in float64 for every other run (comma-separated)")  # fmt: skip
    p.add_argument("--float32-models", type=int, default=6,
                   help="runs (spread over the gap) done in float32 too (every block)")  # fmt: skip
    p.add_argument("--float32-pool", type=int, default=16,
                   help="the float32 runs are picked among this many runs spread over the gap")  # fmt: skip
    p.add_argument("--models", default=None, help="comma-separated run hashes (default: all)")
    p.add_argument("--tol", type=float, default=0.01)
    p.add_argument("--resamples", type=int, default=1000)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    from renyilib.experiments import zoo
    from renyilib.experiments.spectrum_study import pick_by_gap

    runs = zoo.table(args.out, args.task)
    if args.models is not None:
        runs = runs[runs["run"].isin(args.models.split(","))]
    conv = runs[runs["converged"]]
    full = (
        list(runs["run"])
        if args.full_models == 0
        else pick_by_gap(conv, args.full_models)["run"].tolist()
    )
    pool = pick_by_gap(conv, args.float32_pool)
    picked = pick_by_gap(pool, args.float32_models)["run"].tolist()
    rest = [r for r in runs["run"] if r not in full]
    small = [b for b in args.small_blocks.split(",") if b]
    # cheapest-to-lose last: every block of the full runs, their float32 twins, the rest's small blocks
    spectra = zoo_exact_spectra(args.out, args.task, ("float64",), full, args.cache)
    spectra = spectra.merge(  # float32 needs its float64 twin: every block of the picked runs
        zoo_exact_spectra(args.out, args.task, ("float64", "float32"), picked, args.cache)
    )
    if rest and small:
        spectra = spectra.merge(
            zoo_exact_spectra(args.out, args.task, ("float64",), rest, args.cache, blocks=small)
        )
    table = floor_sensitivity(spectra)
    taus = tau_table(table, num_resamples=args.resamples)
    so = stable_orders(table, args.tol, taus)
    st = stability_table(table, taus, args.tol)
    chapter = Path(args.dest) / "profiles.csv"
    profiles = pd.read_csv(chapter) if chapter.is_file() else None
    verdict = alpha_floor_verdict(table, taus, args.tol, profiles)
    dest = Path(args.dest)
    # derived columns left out of the file: sharpness = -entropy,
    # entropy_minus_log_n = entropy - log(n_used), ref_entropy (the float64 floor-0 row)
    slim = table.drop(columns=["sharpness", "entropy_minus_log_n", "ref_entropy"])
    # gzip (fixed mtime: the same table gives the same bytes); the text table is ~3 MB
    atomic_write(
        dest / "alpha_floor.csv.gz",
        lambda tmp: slim.to_csv(
            tmp, index=False, float_format="%.10g", compression={"method": "gzip", "mtime": 0}
        ),
    )
    ttext = taus.to_csv(index=False, float_format="%.10g")
    atomic_write(dest / "alpha_floor.tau.csv", lambda tmp: tmp.write_text(ttext))
    fig = alpha_floor_figure(table, taus=taus)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write(dest / "alpha_floor.png", lambda tmp: tmp.write_bytes(buf.getvalue()))
    cost = pd.DataFrame(
        [
            {"run": r, "block": b, "dtype": d, "seconds": s}
            for (r, b, d), s in spectra.seconds.items()
        ]
    )
    meta = {
        "command": " ".join(
            [
                Path(sys.executable).name,
                "-m",
                "renyilib.experiments.alpha_floor",
                *(argv if argv is not None else sys.argv[1:]),
            ]
        ),  # fmt: skip
        "code_version": code_version(),
        "settings": {
            **spectra.settings,
            "alphas": list(ALPHAS),
            "floors": list(FLOORS),
            "modes": list(MODES),
            "negative": "abs",
            "tol": args.tol,
            "tau": "Kendall tau-b of -H_alpha vs gap, converged runs",
            "bootstrap_resamples": args.resamples,
            "full_models": full,
            "float32_models": picked,
            "small_blocks": small,
            "small_block_models": rest,
            "eigh": "numpy.linalg.eigvalsh of the dense Hessian cast to float64",
        },  # fmt: skip
        "columns": {
            "alpha_floor.csv.gz": "one row per run, block, dtype, floor, mode, alpha "
            "(floored_entropy); sharpness = -entropy, H - log n = entropy - log(n_used); "
            "rel_change = (-H - (-H_ref)) / |H_ref|, reference float64, floor 0",
            "alpha_floor.tau.csv": "tau_table: Kendall tau-b of -H vs gap (converged runs), "
            "tau_ref and its bootstrap SE on the same runs",
        },
        "models": int(runs.shape[0]),
        "converged": int(runs["converged"].sum()),
        "spectra": {
            f"{b}/{d}": int(n) for (b, d), n in cost.groupby(["block", "dtype"]).size().items()
        },
        "spectrum_seconds": {
            "total": float(cost["seconds"].sum()),
            "per_block_dtype_median": {
                f"{b}/{d}": float(g["seconds"].median())
                for (b, d), g in cost.groupby(["block", "dtype"])
            },
        },
        "seconds": time.perf_counter() - t0,
        "stable_orders": so.to_dict(orient="records"),
        "small_alpha": small_alpha_summary(table, taus, min(ALPHAS)).to_dict(orient="records"),
        "stability": st.to_dict(orient="records"),
        "verdict": verdict,
        "zoo_runs": zoo.table(args.out, args.task)["run"].tolist(),
    }
    write_json(dest / "alpha_floor.meta.json", meta)
    print(so.to_string(index=False))
    print(verdict)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
