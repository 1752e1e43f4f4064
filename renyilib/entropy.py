"""Rényi entropy of a spectral measure: the one implementation behind every entropy in renyilib.

For a symmetric matrix :math:`H` with eigenvalues :math:`\\lambda_i` and the
normalized spectrum :math:`p_i = g(\\lambda_i) / \\sum_j g(\\lambda_j)`, the Rényi
entropy of order :math:`\\alpha` (Eq. 6 of the paper) is

.. math::

    H_\\alpha(H) = \\frac{1}{1-\\alpha} \\log \\sum_i p_i^\\alpha
    = \\frac{1}{1-\\alpha} \\log \\frac{\\operatorname{Tr} g(H)^\\alpha}{(\\operatorname{Tr} g(H))^\\alpha},

with the limits :math:`H_1 = -\\sum_i p_i \\log p_i` (Shannon) and
:math:`H_\\infty = -\\log \\max_i p_i`; :math:`g = |\\cdot|` (``negative="abs"``) or
:math:`g = \\max(\\cdot, 0)` (``"positive"``, Remark F.7).

Both traces are integrals of one measure :math:`\\mu`: an exact spectrum is
:math:`\\sum_i \\delta_{\\lambda_i}` (unit weights, :func:`renyi_entropy`), an SLQ
estimate (Algorithm 1) is a quadrature with Gauss weights per probe
(:meth:`renyilib.lanczos.SpectralQuadrature.renyi_entropy`). Both go through
:func:`renyi_from_masses`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "check_orders",
    "renyi_entropy",
    "renyi_from_masses",
    "renyi_shift_sensitivity",
    "spectrum_magnitude",
]


def renyi_entropy(
    eigenvalues: np.ndarray | torch.Tensor | Sequence[float],
    alpha: float | Sequence[float] | np.ndarray,
    negative: str = "abs",
) -> float | np.ndarray:
    """Exact Rényi entropy :math:`H_\\alpha` of a spectrum (Eq. 6).

    The spectrum is the measure :math:`\\sum_i \\delta_{\\lambda_i}` (unit weights), and
    the value is that of :func:`renyi_from_masses`, the same computation as for an
    SLQ quadrature: :math:`H_\\alpha = \\frac{1}{1-\\alpha}\\log\\sum_i p_i^\\alpha` by a
    scaled power sum for :math:`|\\alpha - 1| \\ge 0.5` and as
    :math:`-\\operatorname{log1p}(\\sum_i p_i \\operatorname{expm1}((\\alpha-1)\\log p_i))/(\\alpha-1)`
    otherwise, which tends continuously to Shannon's
    :math:`-\\sum_i p_i \\log p_i` at :math:`\\alpha = 1` (used exactly there).
    :math:`\\alpha = \\infty` gives :math:`-\\log \\max_i p_i`. Zero eigenvalues
    contribute nothing (:math:`0^\\alpha = 0`, :math:`0 \\log 0 = 0`).

    Args:
        eigenvalues: 1-D array (numpy, torch or a sequence) of eigenvalues.
        alpha: Order :math:`\\alpha > 0` (``np.inf`` allowed), scalar or array.
        negative: ``"abs"`` (:math:`p \\propto |\\lambda|`) or ``"positive"``
            (:math:`p \\propto \\max(\\lambda, 0)`).

    Returns:
        A float for scalar ``alpha``, else a float64 array of the same length.

    Raises:
        ValueError: α ≤ 0 or NaN, empty or non-finite spectrum, all-zero
            spectrum (after ``negative``), unknown ``negative``.

    Example:
        >>> bool(np.isclose(renyi_entropy([1.0, 1.0, 1.0, 1.0], 2.0), np.log(4)))
        True
        >>> renyi_entropy([3.0, 0.0, 0.0], [0.5, 1.0, np.inf]).tolist()
        [0.0, 0.0, 0.0]
    """
    if isinstance(eigenvalues, torch.Tensor):
        lam = eigenvalues.detach().cpu().double().numpy()
    else:
        lam = np.asarray(eigenvalues, dtype=np.float64)
    if lam.ndim != 1:
        lam = lam.reshape(-1) if lam.ndim == 0 else lam
        if lam.ndim != 1:
            raise ValueError(f"eigenvalues: expected a 1-D array, got shape {lam.shape}")
    if lam.size == 0:
        raise ValueError("eigenvalues: expected a non-empty array")
    if not np.all(np.isfinite(lam)):
        raise ValueError("eigenvalues: expected finite values")
    alphas, scalar = check_orders(alpha)
    x = spectrum_magnitude(negative)(lam)
    if not x.sum() > 0:
        raise ValueError(
            f"eigenvalues: the spectrum is all zero (with negative={negative!r}); the entropy is undefined"
        )
    # An exact spectrum is a quadrature measure with unit weights and no probes.
    empty = np.zeros((0, 1))
    out, _ = renyi_from_masses(empty, empty, np.ones(len(x)), x, alphas)
    out = out + 0.0  # turn -0.0 into 0.0
    return float(out[0]) if scalar else out


def spectrum_magnitude(negative: str) -> Callable[[np.ndarray], np.ndarray]:
    """The map :math:`g` of negative eigenvalues: ``"abs"`` :math:`|\\lambda|`, ``"positive"`` :math:`\\max(\\lambda, 0)`.

    Raises:
        ValueError: any other ``negative``.
    """
    if negative == "abs":
        return np.abs
    if negative == "positive":
        return lambda x: np.maximum(x, 0.0)
    raise ValueError(f"negative must be 'abs' or 'positive', got {negative!r}")


def check_orders(alpha: Any) -> tuple[np.ndarray, bool]:
    """Rényi orders as a float64 array, and whether ``alpha`` was a scalar.

    Raises:
        ValueError: not numeric, empty, not 1-D, NaN or :math:`\\le 0` (``inf`` is allowed).
    """
    scalar = np.ndim(alpha) == 0
    try:
        alphas = np.atleast_1d(np.asarray(alpha, dtype=np.float64))
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"alpha: expected a positive number or array of them, got {alpha!r}"
        ) from err
    if alphas.ndim != 1 or alphas.size == 0:
        raise ValueError(
            f"alpha: expected a scalar or a non-empty 1-D array, got shape {alphas.shape}"
        )
    if np.any(np.isnan(alphas)) or np.any(alphas <= 0):
        raise ValueError(f"alpha: every order must be > 0 (inf allowed), got {alpha!r}")
    return alphas, scalar


def _pow(x: np.ndarray, a: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.where(x > 0, np.power(np.where(x > 0, x, 1.0), a), 0.0)


def _renyi_core(sums: dict[str, np.ndarray], alphas: np.ndarray) -> np.ndarray:
    """Entropies from (possibly leave-one-out) summed statistics.

    ``sums`` hold, for a reference scale ``r`` (so ``q = x / r``): ``S`` = ∫ q dμ,
    ``L`` = ∫ q log q dμ, ``D[a]`` = ∫ q expm1((a-1) log q) dμ (small |a-1|),
    ``P[a]`` = ∫ (q/qmax)^a dμ with log-scale ``log qmax`` (other a) and
    ``M`` = max q. Arrays may have a leading replicate axis.
    """
    S, L, M = sums["S"], sums["L"], sums["M"]
    out = np.empty((*np.shape(S), len(alphas)))
    logS = np.log(S)
    for i, a in enumerate(alphas):
        d = a - 1.0
        if np.isinf(a):
            out[..., i] = -np.log(M) + logS
        elif d == 0:
            out[..., i] = -L / S + logS
        elif abs(d) < 0.5:
            D = sums["D"][..., i]
            out[..., i] = -np.log1p(D / S) / d + logS
        else:
            logP = np.log(sums["P"][..., i]) + a * sums["logqmax"]
            # H = (log P - a log S) / (1 - a)
            out[..., i] = (logP - a * logS) / (1.0 - a)
    return out


def renyi_from_masses(
    w: np.ndarray, x: np.ndarray, we: np.ndarray, xe: np.ndarray, alphas: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rényi entropies (Eq. 6) of a quadrature measure, and jackknife standard errors over probes.

    The measure is :math:`\\mu = \\sum_i w^e_i \\delta_{x^e_i} + \\frac1l \\sum_k \\sum_j
    w_{kj} \\delta_{x_{kj}}` on magnitudes :math:`x = g(\\lambda) \\ge 0`; an exact
    spectrum is the case ``l = 0`` with unit weights. The entropy is
    :math:`\\frac{1}{1-\\alpha}\\log(\\int x^\\alpha d\\mu / (\\int x\\, d\\mu)^\\alpha)`, computed
    stably: with :math:`q = x / r` (:math:`r = \\int x\\, d\\mu`), a scaled power sum
    for :math:`|\\alpha - 1| \\ge 0.5`, :math:`-\\operatorname{log1p}(D/S)/(\\alpha - 1) + \\log S`
    with :math:`D = \\int q \\operatorname{expm1}((\\alpha-1)\\log q)\\, d\\mu` near 1,
    Shannon's :math:`-\\int q\\log q\\, d\\mu / S + \\log S` at 1 and
    :math:`-\\log \\max q + \\log S` at :math:`\\infty`. The jackknife leaves one
    probe out at a time; the exact masses stay in every replicate.

    ``w, x``: per-probe weights ((n-d) τ) and magnitudes, shape (nprobe, m);
    ``we, xe``: exact masses (1) and magnitudes, shape (d,).
    """
    nprobe = w.shape[0]
    w = np.where(x > 0, w, 0.0)
    we = np.where(xe > 0, we, 0.0)
    r = ((w * x).sum(1).mean() if nprobe else 0.0) + (we * xe).sum()
    if not r > 0:
        raise ValueError(
            "the spectrum has zero total mass: all (non-negative part of the) eigenvalues are zero"
        )
    q, qe = x / r, xe / r
    with np.errstate(divide="ignore", invalid="ignore"):
        lq = np.where(q > 0, np.log(np.where(q > 0, q, 1.0)), 0.0)
        lqe = np.where(qe > 0, np.log(np.where(qe > 0, qe, 1.0)), 0.0)
    qmax = max(q[w > 0].max(initial=0.0), qe[we > 0].max(initial=0.0))
    logqmax = math.log(qmax)

    def stats(
        ww: np.ndarray, qq: np.ndarray, ll: np.ndarray, axis: int | None
    ) -> dict[str, np.ndarray]:
        s = {
            "S": (ww * qq).sum(axis),
            "L": (ww * qq * ll).sum(axis),
            "D": np.stack(
                [
                    (ww * qq * np.expm1((a - 1.0) * ll)).sum(axis)
                    if np.isfinite(a) and abs(a - 1.0) < 0.5
                    else (ww * 0).sum(axis)
                    for a in alphas
                ],
                axis=-1,
            ),
            "P": np.stack(
                [
                    (ww * np.exp(a * (ll - logqmax)) * (qq > 0)).sum(axis)
                    if np.isfinite(a) and abs(a - 1.0) >= 0.5
                    else (ww * 0).sum(axis)
                    for a in alphas
                ],
                axis=-1,
            ),
        }
        return s

    per = stats(w, q, lq, 1) if nprobe else None  # per-probe sums, shape (nprobe,) / (nprobe, A)
    ex = stats(we, qe, lqe, None)
    # Per-probe max of q among positive-weight nodes.
    pmax = np.where(w > 0, q, 0.0).max(axis=1) if nprobe else np.zeros(0)
    emax = qe[we > 0].max(initial=0.0)

    def combine(mean_of: Callable[[np.ndarray], np.ndarray], maxq: float | np.ndarray) -> dict:
        out = {
            key: ex[key] + (mean_of(per[key]) if per is not None else 0.0)
            for key in ("S", "L", "D", "P")
        }
        out["M"] = np.maximum(maxq, emax)
        out["logqmax"] = logqmax
        return out

    full = combine(lambda a: a.mean(0), pmax.max(initial=0.0))
    vals = _renyi_core(full, alphas)
    if nprobe < 2:
        return vals, np.full(len(alphas), np.nan)
    # Jackknife: leave probe k out.
    loo = {}
    for key in ("S", "L", "D", "P"):
        tot = per[key].sum(0)
        loo[key] = ex[key] + (tot[None, ...] - per[key]) / (nprobe - 1)
    # leave-one-out max: max over the other probes
    order = np.argsort(pmax)
    top, second = pmax[order[-1]], pmax[order[-2]]
    lmax = np.where(np.arange(nprobe) == order[-1], second, top)
    loo["M"] = np.maximum(lmax, emax)
    loo["logqmax"] = logqmax
    reps = _renyi_core(loo, alphas)  # (nprobe, A)
    se = np.sqrt((nprobe - 1) / nprobe * ((reps - reps.mean(0)) ** 2).sum(0))
    return vals, se


def renyi_shift_sensitivity(
    masses: np.ndarray,
    nodes: np.ndarray,
    eps: float,
    alphas: np.ndarray,
    negative: str = "abs",
) -> np.ndarray:
    """Sum over nodes of the change of :math:`H_\\alpha` when that one node moves by :math:`\\pm\\varepsilon`.

    For the measure :math:`\\mu = \\sum_j \\mu_j \\delta_{\\theta_j}`, with
    :math:`x = g(\\theta)`, :math:`S = \\sum_j \\mu_j x_j` and
    :math:`P_\\alpha = \\sum_j \\mu_j x_j^\\alpha`, moving node :math:`j` to
    :math:`\\theta_j \\pm \\varepsilon` changes
    :math:`H_\\alpha = (\\log P_\\alpha - \\alpha \\log S)/(1-\\alpha)` by
    :math:`(\\operatorname{log1p}(\\mu_j\\Delta x^\\alpha_j/P_\\alpha) -
    \\alpha\\operatorname{log1p}(\\mu_j \\Delta x_j / S))/(1-\\alpha)` (analogously
    for :math:`\\alpha = 1, \\infty`). Returns
    :math:`\\sum_j \\max_\\pm |\\Delta_j H_\\alpha|` per order: a first-order bound of
    the entropy's error when every node is uncertain by :math:`\\varepsilon`.

    Args:
        masses: Positive masses :math:`\\mu_j`, shape ``(N,)``.
        nodes: Nodes :math:`\\theta_j`, shape ``(N,)``.
        eps: Uncertainty :math:`\\varepsilon \\ge 0` of every node.
        alphas: Orders (as from :func:`check_orders`).
        negative: ``"abs"`` or ``"positive"``.

    Returns:
        float64 array, one bound per order.
    """
    g = spectrum_magnitude(negative)
    mu = np.asarray(masses, dtype=np.float64)
    th = np.asarray(nodes, dtype=np.float64)
    out = np.zeros(len(alphas))
    if eps == 0.0 or not len(th):
        return out
    x = g(th)
    S = float(np.sum(mu * x))
    shifted = [g(th + eps), g(th - eps)]
    with np.errstate(divide="ignore", invalid="ignore"):
        for i, a in enumerate(alphas):
            worst = np.zeros(len(x))
            for xs in shifted:
                dS = np.log1p(mu * (xs - x) / S)
                if np.isinf(a):
                    M = x.max()
                    others = np.where(x == M, np.sort(x)[-2] if len(x) > 1 else 0.0, M)
                    Mp = np.maximum(others, xs)
                    d = -(np.log(Mp) - np.log(M)) + dS
                elif a == 1.0:
                    xl = np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0)), 0.0)
                    xsl = np.where(xs > 0, xs * np.log(np.where(xs > 0, xs, 1.0)), 0.0)
                    L = float(np.sum(mu * xl))
                    Sp = S + mu * (xs - x)
                    d = (np.log(Sp) - (L + mu * (xsl - xl)) / Sp) - (np.log(S) - L / S)
                else:
                    P = float(np.sum(mu * _pow(x, a)))
                    dP = np.log1p(mu * (_pow(xs, a) - _pow(x, a)) / P)
                    d = (dP - a * dS) / (1.0 - a)
                worst = np.maximum(worst, np.abs(d))
            out[i] = float(np.sum(worst))
    return out
