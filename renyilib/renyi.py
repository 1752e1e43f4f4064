"""Rényi entropy of Hessian spectra and Rényi sharpness of a model.

For a symmetric block Hessian :math:`H` with eigenvalues :math:`\\lambda_i` and
the normalized spectrum :math:`p_i = g(\\lambda_i) / \\sum_j g(\\lambda_j)`, the
Rényi entropy of order :math:`\\alpha` (Eq. 6 of the paper) is

.. math::

    H_\\alpha(H) = \\frac{1}{1-\\alpha} \\log \\sum_i p_i^\\alpha
    = \\frac{1}{1-\\alpha} \\log \\frac{\\operatorname{Tr} g(H)^\\alpha}{(\\operatorname{Tr} g(H))^\\alpha},

with the limits :math:`H_1 = -\\sum_i p_i \\log p_i` (Shannon) and
:math:`H_\\infty = -\\log \\max_i p_i`. It lies in :math:`[0, \\log n]` (``log n``
for a flat spectrum) and is non-increasing in :math:`\\alpha`. **Rényi
sharpness** is :math:`-H_\\alpha`: a spectrum concentrated on a few directions
is sharp.

The paper assumes a PSD Hessian; trained networks have small negative
eigenvalues, so :math:`g` is chosen by ``negative``: ``"abs"`` (default,
:math:`g = |\\lambda|`, the spectrum of :math:`|H|`) or ``"positive"``
(:math:`g = \\max(\\lambda, 0)`, the positive part; Remark F.7).

:func:`renyi_entropy` (from :mod:`renyilib.entropy`, re-exported here) is the
exact value for an eigenvalue array; :func:`renyi_sharpness` estimates the
entropy for every layer block of a model by SLQ (:func:`renyilib.lanczos.slq`)
or, for small blocks, exactly. Both use the one implementation in
:mod:`renyilib.entropy` (an exact spectrum is a measure with unit weights).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from renyilib.entropy import check_orders, renyi_entropy, spectrum_magnitude
from renyilib.hessian import hessian_operator, layer_blocks
from renyilib.lanczos import DeflationError, Estimate, SpectralQuadrature, slq

__all__ = ["PAPER_ALPHAS", "renyi_entropy", "renyi_sharpness"]

#: The Rényi orders of Appendix G.4 (the OCR's "14,15" read as 1.4, 1.5, ...).
PAPER_ALPHAS: tuple[float, ...] = (
    0.0001,
    0.01,
    0.03,
    0.06,
    *(round(0.1 * i, 1) for i in range(1, 10)),
    0.99,
    0.999,
    1.001,
    1.01,
    *(round(1.0 + 0.1 * i, 1) for i in range(1, 21)),
)


def _select_blocks(model: nn.Module, blocks: Any, example_input: Any) -> dict[str, list[str]]:
    all_blocks = layer_blocks(model, example_input)
    if isinstance(blocks, str):
        if blocks == "layers":
            return {k: v for k, v in all_blocks.items() if k != "all"}
        if blocks == "all":
            return {"all": all_blocks["all"]}
        if blocks == "both":
            return all_blocks
        if blocks in all_blocks:
            return {blocks: all_blocks[blocks]}
        raise KeyError(
            f"blocks: expected 'layers', 'all', 'both', a block name or a list of them; got {blocks!r}; "
            f"valid block names: {list(all_blocks)}"
        )
    names = list(blocks)
    if not names:
        raise ValueError("blocks: expected a non-empty list of block names")
    param_names = {n for n, _ in model.named_parameters()}
    out = {}
    for name in names:
        if name in all_blocks:
            out[name] = all_blocks[name]
        elif name in param_names:
            out[name] = [name]
        else:
            raise KeyError(f"blocks: unknown block {name!r}; valid block names: {list(all_blocks)}")
    return out


def _exact_quadrature(op: Any) -> tuple[SpectralQuadrature, np.ndarray]:
    H = op.to_dense().detach().cpu().double().numpy()
    lam = np.linalg.eigvalsh(H)
    q = SpectralQuadrature(
        nodes=np.zeros((0, 1)),
        weights=np.zeros((0, 1)),
        dim=len(lam),
        num_probes=0,
        lanczos_steps=0,
        num_matvecs=op.num_matvecs,
        exact_nodes=lam,
        exact_residuals=np.zeros(len(lam)),
        probe="exact",
    )
    return q, lam


def renyi_sharpness(
    model: nn.Module,
    loss_fn: Any,
    data: Any,
    alphas: float | Sequence[float] | np.ndarray = PAPER_ALPHAS,
    blocks: str | Sequence[str] = "layers",
    num_probes: int = 100,
    lanczos_steps: int = 15,
    seed: int = 0,
    negative: str = "abs",
    deflate: int = 0,
    spectrum: str = "slq",
    progress: bool = True,
    *,
    deflate_tol: float = 1e-4,
    deflate_max_steps: int | None = None,
    deflate_unconverged: str = "raise",
    exact_max_dim: int = 4096,
    probe_batch: int | None = None,
    quadrature: str = "gauss",
    backend: str = "auto",
    allow_train_mode: bool = False,
    example_input: Any = None,
    return_quadratures: bool = False,
    method: str | None = None,
    hessian_method: str | None = None,
) -> pd.DataFrame | tuple[pd.DataFrame, dict[str, SpectralQuadrature]]:
    """Rényi entropy / sharpness of the loss Hessian, per parameter block and order α.

    For each block (Sec. 5: "layer-wise and global Rényi sharpness") one SLQ run
    (Algorithm 1, ``num_probes`` = l = 100 and ``lanczos_steps`` = m = 15 as in
    Appendix G.4) gives a :class:`~renyilib.lanczos.SpectralQuadrature` that
    serves every α. Unlike the printed Algorithm 1, traces carry the factor
    :math:`n/l` so that the value is the entropy itself (the printed value is
    the entropy plus :math:`\\log(l/n)`); ``normalization="paper"`` of
    :meth:`SpectralQuadrature.renyi_entropy` gives the printed value.

    The two error sources of SLQ are the Gauss quadrature's bias from a
    (near-)null space at α < 1 (``quadrature="radau"`` reduces it) and the probe
    variance of a few outliers at α > 1 (``deflate`` removes it); measured
    accuracies against dense ``eigvalsh`` are in ``benchmarks/README.md``.

    Args:
        model: Network in eval mode.
        loss_fn: ``loss_fn(outputs, targets) -> scalar mean loss``.
        data: ``(x, y)`` or an iterable of batches (see :func:`renyilib.hessian.hessian_operator`).
        alphas: Rényi orders (default :data:`PAPER_ALPHAS`).
        blocks: ``"layers"`` (every Conv/Linear weight), ``"all"`` (all
            parameters), ``"both"``, or a list of block / parameter names.
        num_probes: SLQ probes ``l``.
        lanczos_steps: Lanczos steps ``m``.
        seed: Probe seed (each block uses ``seed``; blocks are independent operators).
        negative: ``"abs"`` or ``"positive"`` (treatment of negative eigenvalues).
        deflate: Top-|λ| eigenpairs per block treated exactly (see :func:`slq`).
        deflate_tol, deflate_max_steps: Convergence of the deflated pairs (see :func:`slq`).
        deflate_unconverged: ``"raise"`` (default: a block whose deflated pairs do not
            converge raises :class:`~renyilib.lanczos.DeflationError` naming the block and
            the residuals) or ``"fold"`` (the residuals are folded into ``stderr``).
        spectrum: How the spectrum is obtained: ``"slq"``; ``"exact"`` (dense
            Hessian, ``eigvalsh``; small blocks only); ``"auto"`` (exact when the
            block dimension is at most
            ``exact_max_dim`` and the dense Hessian costs no more products than
            SLQ, i.e. ``n <= num_probes * lanczos_steps``; else SLQ). Exact
            values have ``stderr`` 0.
        progress: tqdm bar over blocks.
        exact_max_dim: Largest block dimension ``spectrum="auto"`` computes exactly
            (a dense float64 ``n x n`` matrix: 128 MiB at 4096).
        probe_batch: Probes advanced together in SLQ (default: memory-based, see :func:`slq`).
        quadrature: ``"gauss"`` (Algorithm 1) or ``"radau"`` (node prescribed at 0;
            smaller bias for α < 1 on rank-deficient blocks, see :func:`slq`).
        backend: The Hessian-product backend of
            :func:`~renyilib.hessian.hessian_operator` (``"auto"``, ``"graph"``,
            ``"jvp"``; see :mod:`renyilib.hessian`).
        allow_train_mode: Passed to :func:`~renyilib.hessian.hessian_operator`.
        example_input: Optional input for forward-order layer blocks.
        return_quadratures: Also return ``dict[block, SpectralQuadrature]``
            (for densities; for ``exact`` blocks the eigenvalues are the
            quadrature's ``exact_nodes``).
        method: Deprecated name of ``spectrum`` (``DeprecationWarning``).
        hessian_method: Deprecated name of ``backend`` (``DeprecationWarning``).

    Returns:
        DataFrame with one row per (block, α) and the columns ``block``,
        ``alpha``, ``entropy`` (:math:`H_\\alpha`), ``sharpness``
        (:math:`-H_\\alpha`), ``stderr`` (jackknife over probes; 0 for exact),
        ``dim``, ``trace`` (:math:`\\operatorname{Tr} H`), ``trace_stderr``,
        ``negative_mass``, ``spectrum`` (``"slq"`` or ``"exact"``; also as the
        column ``method``, kept for compatibility), ``num_matvecs`` and
        ``seconds`` (per block).
    """
    if method is not None:
        warnings.warn(
            "renyi_sharpness(method=...) is deprecated; use spectrum=... ('slq', 'exact', 'auto')",
            DeprecationWarning,
            stacklevel=2,
        )
        spectrum = method
    if hessian_method is not None:
        warnings.warn(
            "renyi_sharpness(hessian_method=...) is deprecated; use backend=...",
            DeprecationWarning,
            stacklevel=2,
        )
        backend = hessian_method
    alpha_arr, _ = check_orders(alphas)
    if spectrum not in ("slq", "exact", "auto"):
        raise ValueError(f"spectrum must be 'slq', 'exact' or 'auto', got {spectrum!r}")
    spectrum_magnitude(negative)
    if deflate_unconverged not in ("raise", "fold"):
        raise ValueError(
            f"deflate_unconverged must be 'raise' or 'fold', got {deflate_unconverged!r}"
        )
    selected = _select_blocks(model, blocks, example_input)
    batches = _materialize(data)
    rows = []
    quads: dict[str, SpectralQuadrature] = {}
    items = list(selected.items())
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(items, desc="Rényi sharpness blocks")
    for name, params in items:
        t0 = time.perf_counter()
        op = hessian_operator(
            model,
            loss_fn,
            batches,
            params,
            allow_train_mode=allow_train_mode,
            backend=backend,
        )
        n = op.shape[0]
        use_exact = spectrum == "exact" or (
            spectrum == "auto" and n <= min(exact_max_dim, num_probes * lanczos_steps)
        )
        if use_exact:
            q, _ = _exact_quadrature(op)
            used = "exact"
        else:
            try:
                q = slq(
                    op,
                    num_probes,
                    lanczos_steps,
                    seed,
                    deflate=deflate,
                    deflate_tol=deflate_tol,
                    deflate_max_steps=deflate_max_steps,
                    deflate_unconverged=deflate_unconverged,
                    probe_batch=probe_batch,
                    quadrature=quadrature,
                )
            except DeflationError as err:
                raise DeflationError(f"block {name!r}: {err}", err.residuals) from err
            used = "slq"
        if q.trace(spectrum_magnitude(negative)).value > 0:
            ent = q.renyi_entropy(alpha_arr, negative=negative)
        else:  # e.g. a layer the loss does not use: the normalized spectrum is undefined
            warnings.warn(
                f"block {name!r}: the Hessian spectrum is zero (negative={negative!r}); "
                "its entropy is reported as NaN",
                RuntimeWarning,
                stacklevel=2,
            )
            nan = np.full(len(alpha_arr), np.nan)
            ent = Estimate(nan, nan)
        tr = q.trace()
        seconds = time.perf_counter() - t0
        stderr = np.where(np.isnan(ent.value), np.nan, 0.0) if used == "exact" else ent.stderr
        for a, h, se in zip(alpha_arr, ent.value, stderr):
            rows.append(
                {
                    "block": name,
                    "alpha": float(a),
                    "entropy": float(h),
                    "sharpness": -float(h),
                    "stderr": float(se),
                    "dim": n,
                    "trace": tr.value,
                    "trace_stderr": 0.0 if used == "exact" else tr.stderr,
                    "negative_mass": q.negative_mass,
                    "spectrum": used,
                    "method": used,
                    "num_matvecs": op.num_matvecs,
                    "seconds": seconds,
                }
            )
        quads[name] = q
    df = pd.DataFrame(rows)
    return (df, quads) if return_quadratures else df


def _materialize(data: Any) -> Any:
    """Iterate ``data`` once so that every block sees the same batches."""
    if isinstance(data, tuple | list) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        return data
    if isinstance(data, torch.Tensor):
        raise TypeError("data must be a pair (x, y) of tensors or an iterable of (x, y) batches")
    return [tuple(b) for b in data]
