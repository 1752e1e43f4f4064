"""What the exact Hessian trace costs: the diagonal identity, n HVPs, Hutchinson.

Ibayashi et al. (2021, Sec. 4 and their timing logs) compute
:math:`\\operatorname{Tr} H` exactly from the Gauss–Newton identity for the
diagonal (:func:`renyilib.diagonal.hessian_diagonal`) and compare it
with the naive exact route, :math:`n` Hessian-vector products
:math:`H e_i`. :func:`trace_cost` times three routes on one model and data, on
one clock:

``diagonal``
    :func:`~renyilib.diagonal.hessian_diagonal` (method ``"ggn"``), summed.
``hvp_loop``
    the diagonal entries :math:`e_i^\\top H e_i` from column chunks of
    :func:`renyilib.hessian.hessian_operator` (its default method, which
    switches to linearized gradients for this many products). With
    ``hvp_columns < n`` only that many columns are computed and the time is
    scaled by :math:`n /` ``hvp_columns`` (marked ``hvp_extrapolated``).
``hutchinson``
    Rademacher probes :math:`v^\\top H v`: a pilot of ``pilot_probes`` probes
    estimates the per-probe variance :math:`\\sigma^2`, and the number of probes
    whose standard error is ``rel_err`` of the exact trace,
    :math:`m = \\lceil \\sigma^2 / (\\text{rel\\_err} \\cdot \\operatorname{Tr} H)^2 \\rceil`,
    is priced at the pilot's time per probe (``hutchinson_probes`` is that
    :math:`m`). Reaching the error with probability ~68% (one standard error)
    is the estimator's best case.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from renyilib.batches import as_batches, batch_size
from renyilib.diagonal import hessian_diagonal
from renyilib.hessian import hessian_operator

__all__ = ["trace_cost"]


def trace_cost(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    data: Any,
    *,
    rel_err: float = 0.01,
    pilot_probes: int = 64,
    hvp_columns: int | None = None,
    chunk: int = 32,
    seed: int = 0,
    clock: Callable[[], float] = time.process_time,
) -> dict[str, Any]:
    """Time the exact diagonal trace, the loop of ``n`` HVPs and Hutchinson to ``rel_err``.

    Args:
        model: A network for which the Gauss–Newton identity holds (eval mode).
        loss_fn: ``torch.nn.CrossEntropyLoss()``.
        data: ``(x, y)`` or batches.
        rel_err: Target relative standard error of Hutchinson's estimate.
        pilot_probes: Probes of Hutchinson's pilot run.
        hvp_columns: Unit vectors of the HVP loop actually computed (``None``: all ``n``).
        chunk: Columns / probes per batched product.
        seed: Seed of the probes.
        clock: The clock (default process CPU time: stable on a shared machine
            with one torch thread).

    Returns:
        Dict with ``n``, ``trace`` (from the diagonal), ``seconds_diagonal``,
        ``seconds_hvp_loop``, ``hvp_columns``, ``hvp_extrapolated``,
        ``trace_hvp`` (``nan`` when extrapolated), ``hvp_max_abs_diff`` (largest
        difference of the computed diagonal entries), ``hutchinson_probes``,
        ``hutchinson_sigma``, ``seconds_hutchinson``, ``seconds_per_probe``,
        ``hutchinson_pilot_error`` and the ratios ``hvp_over_diagonal``,
        ``hutchinson_over_diagonal``.
    """
    if not 0 < rel_err < 1:
        raise ValueError(f"rel_err must be in (0, 1), got {rel_err!r}")
    if not isinstance(pilot_probes, int) or pilot_probes < 2:
        raise ValueError(f"pilot_probes must be an int >= 2, got {pilot_probes!r}")
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    t0 = clock()
    diag = hessian_diagonal(model, loss_fn, data, method="ggn")
    seconds_diagonal = clock() - t0
    flat_diag = torch.cat([d.reshape(-1) for d in diag.values()]).double()
    trace = float(flat_diag.sum())
    n = flat_diag.numel()
    columns = n if hvp_columns is None else int(hvp_columns)
    if not 1 <= columns <= n:
        raise ValueError(f"hvp_columns must be in [1, n={n}], got {hvp_columns!r}")

    # n HVPs: columns 0..columns-1 (the operator's set-up is part of the cost).
    t0 = clock()
    op = hessian_operator(model, loss_fn, data)
    op.plan(columns)
    entries = []
    for start in range(0, columns, chunk):
        stop = min(columns, start + chunk)
        idx = torch.arange(stop - start)
        basis = torch.zeros(n, stop - start, dtype=op.dtype, device=op.device)
        basis[start + idx, idx] = 1.0
        entries.append((op @ basis)[start + idx, idx].double().cpu())
    seconds_hvp = (clock() - t0) * (n / columns)
    hvp_diag = torch.cat(entries)
    hvp_diff = float((hvp_diag - flat_diag[:columns].cpu()).abs().max())

    # Hutchinson pilot on a fresh operator (same default method as the loop).
    gen = torch.Generator().manual_seed(seed)
    t0 = clock()
    op2 = hessian_operator(model, loss_fn, data)
    op2.plan(pilot_probes)
    values = []
    for start in range(0, pilot_probes, chunk):
        k = min(chunk, pilot_probes - start)
        V = (torch.randint(0, 2, (n, k), generator=gen) * 2 - 1).to(op2.dtype).to(op2.device)
        values.append((V * (op2 @ V)).sum(0).double().cpu())
    seconds_pilot = clock() - t0
    v = torch.cat(values)
    sigma = float(v.std(unbiased=True))
    probes = max(1, math.ceil((sigma / (rel_err * abs(trace))) ** 2))
    per_probe = seconds_pilot / pilot_probes
    seconds_hutch = probes * per_probe
    return {
        "n": n,
        "samples": int(sum(batch_size(x) for x, _ in as_batches(data))),
        "trace": trace,
        "seconds_diagonal": seconds_diagonal,
        "seconds_hvp_loop": seconds_hvp,
        "hvp_columns": columns,
        "hvp_extrapolated": columns < n,
        "trace_hvp": float(hvp_diag.sum()) if columns == n else float("nan"),
        "hvp_max_abs_diff": hvp_diff,
        "hutchinson_probes": probes,
        "hutchinson_sigma": sigma,
        "seconds_per_probe": per_probe,
        "seconds_hutchinson": seconds_hutch,
        "hutchinson_pilot_error": float(abs(v.mean() - trace) / abs(trace)),
        "rel_err": rel_err,
        "hvp_over_diagonal": seconds_hvp / seconds_diagonal,
        "hutchinson_over_diagonal": seconds_hutch / seconds_diagonal,
    }
