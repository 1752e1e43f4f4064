"""The paper's generalization bounds (Section 3, Appendices B-D) as functions.

Every bound of the paper is evaluated here from explicit inputs, with the
paper's assumptions checked where they can be, and with the constants the
paper leaves free made explicit arguments.

**Theorem B.1 / Proposition 3.1 (multiplicative data perturbation, Eqs. 13-23).**
For a loss with values in an interval of length ``C``, Hoeffding's inequality
gives, with probability at least ``1 - delta``,

    L(D, θ) <= E_A[L(S(A, ρ), θ)] + C · sqrt(log(1/δ) / (2n)),        (Eqs. 22-23)

where ``S(A, ρ) = {(x + ρ A x, y)}`` and ``A`` is Haar-distributed on ``O(d)``.
The paper additionally assumes ``L(D, θ) <= L(D, θ + δ)`` (a perturbation does
not lower the population loss). Note the bound is a single-hypothesis
(Hoeffding) bound: it holds for a ``θ`` chosen independently of ``S`` (e.g.
``S`` a held-out set), not for weights trained on ``S`` — the paper's proof
takes no union over hypotheses. :func:`multiplicative_perturbation_bound`,
:func:`perturbed_loss`, :func:`haar_orthogonal`.

**Proposition C.1 / Theorem 3.2 (after Jia & Su 2020, Eqs. 24-41).** With a
uniform prior on a neighbourhood ``M(θ*)`` of volume ``V`` and the posterior
``q(θ) ∝ exp(-|L(S, θ) - L0|)``, Theorem C.2 (Eq. 25) reads

    E_Q[L(D, θ)] <= E_Q[L(S, θ)] + 2 sqrt((2 L0 + 2Λ + log(2N/δ)) / (N - 1)),
    Λ = n V^{2/n} |H|^{1/n} / (4πe).

(OCR reading: the garbled prefactor of Λ is read as ``1/(4πe)``; it is what
one gets for the largest quadratic loss deviation ``½ xᵀHx`` on an ellipsoid of
volume ``V`` in ``n`` dimensions with Stirling's ``vol(B_n)^{2/n} ≈ 2πe/n``.)
The paper then bounds ``log|H| = n log Tr H + Σ log p_i <= n log Tr H - H_α(H)``
(Eqs. 26-40), so ``|H|^{1/n} <= Tr(H) exp(-H_α(H)/n)`` and Eq. 24 uses
``Λ_α = n V^{2/n} Tr(H) exp(-H_α(H)/n) / (4πe)``. Free constants: ``V`` (the
book uses the volume of a Euclidean ball of radius ``r``, see
``log_ball_volume``) and ``δ``. Because ``H_α ∈ [0, log n]``, the Rényi entropy
moves ``Λ_α`` only by the factor ``exp(-H_α/n) ∈ [n^{-1/n}, 1]`` — see
:func:`renyi_factor_range`. :func:`jia_su_bound`, :func:`renyi_pac_bayes_bound`.

**Theorem D.1 / Theorem 3.3 (uniform posterior on an ellipsoid, Eqs. 46-49).**
With posterior uniform on ``E_H(ρ) = {θ : (θ-θ*)ᵀH(θ-θ*) <= ρ²}`` (``d``
parameters) and prior uniform on a Euclidean ball of radius ``R`` containing
it (so ``R >= ρ / sqrt(λ_min)``), McAllester's bound (Eq. 47)

    E_Q[L_D] <= E_Q[L_S] + sqrt((KL(Q||P) + log(n/δ)) / (2(n - 1)))

with ``E_Q[L_S] = L0 + d ρ² / (2(d+2)) + O(ε)`` (step 1) and
``KL = d log(R/ρ) + ½ log det H`` (step 2: the ball volumes' common factor
cancels) gives the bound. The paper's Eq. 46 replaces ``½ log det H`` by
``½ (d log Tr H - H_α(H))`` and absorbs everything but ``-½ H_α`` into a free
constant ``C``; here nothing is absorbed: :func:`ellipsoid_bound` computes the
bound with the exact ``log det H`` and :func:`renyi_ellipsoid_bound` with the
Rényi upper bound. Free constants: ``ρ``, ``R`` (default: the smallest
admissible ``ρ/sqrt(λ_min)``), the Taylor remainder ``ε`` (default 0) and ``δ``.
Note that with the smallest ``R`` the KL does not depend on ``ρ`` at all.

**The inequality chain of Appendix C (Eqs. 26-40).** ``Σ_i log p_i <= -H_α(p)``
for a probability vector ``p`` of length ``n`` and every ``α > 0``. Checked
step by step by :func:`appendix_c_chain`; :func:`find_chain_counterexample`
searches for a violation of a named step. Findings (tested in
``tests/test_bounds.py``): every step the paper uses is true; step (31)
``-H_1 <= -H_α`` holds for ``α > 1`` and fails for every non-uniform ``p``
when ``0 < α < 1`` (there ``H_α > H_1``; e.g. ``p = (0.9, 0.1)``, ``α = 0.5``),
but the paper uses it only for ``α > 1`` and proves the ``α < 1`` case by a
separate, correct route (Eqs. 33-38); and the final inequality is extremely loose: AM-GM already gives
``Σ log p_i <= -n log n`` while ``-H_α >= -log n``, so the slack is at least
``(n - 1) log n``.

Losses in the PAC-Bayes bounds must lie in ``[0, 1]`` (the paper's
assumption); the functions raise ``ValueError`` otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = [
    "CHAIN_STEPS",
    "BoundValue",
    "appendix_c_chain",
    "bounded_error_loss",
    "chain_table",
    "ellipsoid_bound",
    "ellipsoid_kl",
    "ellipsoid_posterior_excess",
    "find_chain_counterexample",
    "haar_orthogonal",
    "hoeffding_term",
    "jia_su_bound",
    "jia_su_log_lambda",
    "log_ball_volume",
    "log_det_renyi_upper_bound",
    "mcallester_term",
    "model_bounds",
    "multiplicative_perturbation_bound",
    "perturbed_loss",
    "renyi_ellipsoid_bound",
    "renyi_factor_range",
    "renyi_log_lambda",
    "renyi_pac_bayes_bound",
]


# --------------------------------------------------------------------------- checks


def _check_unit(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0.0 or value > 1.0:
        raise ValueError(
            f"{name} must be a loss value in [0, 1] (the bounds assume a loss bounded in "
            f"[0, 1]; rescale the loss or use the 0-1 error), got {value!r}"
        )
    return value


def _check_delta(delta: float, name: str = "delta") -> float:
    delta = float(delta)
    if not 0.0 < delta <= 1.0:
        raise ValueError(f"{name} (the confidence parameter) must lie in (0, 1], got {delta!r}")
    return delta


def _check_n(n: int, minimum: int = 1, name: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < minimum:
        raise ValueError(f"{name} (sample size) must be an int >= {minimum}, got {n!r}")
    return int(n)


def _check_dim(dim: int) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 1:
        raise ValueError(
            f"dim (the number of parameters of the block) must be an int >= 1, got {dim!r}"
        )
    return int(dim)


def _check_positive(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def _check_entropy(entropy: float, dim: int) -> float:
    entropy = float(entropy)
    # H_α of a normalized PSD spectrum lies in [0, log d]; allow rounding.
    if not math.isfinite(entropy) or entropy < -1e-9 or entropy > math.log(dim) + 1e-9:
        raise ValueError(
            f"entropy (H_α of a PSD block of dimension {dim}) must lie in [0, log {dim}] = "
            f"[0, {math.log(dim):.6g}], got {entropy!r}"
        )
    return entropy


@dataclass(frozen=True)
class BoundValue:
    """A generalization bound and its parts: ``value = empirical + complexity``.

    Attributes:
        value: The bound on the population loss.
        empirical: The empirical (posterior or perturbed) loss term.
        complexity: The square-root (or Hoeffding) term.
        details: Intermediate quantities (KL, Λ, ...), for tables.
    """

    value: float
    empirical: float
    complexity: float
    details: dict[str, float] = field(default_factory=dict)

    @property
    def vacuous(self) -> bool:
        """True when the bound is at least 1, the largest value of a [0, 1] loss."""
        return self.value >= 1.0


# --------------------------------------------------------------------------- Theorem B.1


def hoeffding_term(n: int, delta: float, loss_range: float = 1.0) -> float:
    """Hoeffding deviation ``C · sqrt(log(1/δ) / (2n))`` (Eqs. 20-22).

    Args:
        n: Number of samples.
        delta: Confidence parameter in (0, 1]; the statement holds w.p. ``1 - δ``.
        loss_range: ``C = b - a``, the length of the interval holding the loss.

    Returns:
        The deviation term.

    >>> round(hoeffding_term(200, math.exp(-4)), 6)
    0.1
    """
    n = _check_n(n)
    delta = _check_delta(delta)
    loss_range = _check_positive("loss_range", loss_range)
    return loss_range * math.sqrt(math.log(1.0 / delta) / (2.0 * n))


def multiplicative_perturbation_bound(
    perturbed_loss: float, n: int, delta: float, loss_range: float = 1.0
) -> BoundValue:
    """Theorem B.1 / Proposition 3.1: ``L(D,θ) <= E_A[L(S(A,ρ),θ)] + C sqrt(log(1/δ)/(2n))``.

    Assumptions (paper): the loss takes values in an interval of length ``C``;
    ``L(D, θ) <= L(D, θ + δ)``; ``θ`` does not depend on ``S`` (the Hoeffding
    step is for one fixed hypothesis).

    Args:
        perturbed_loss: ``E_A[L(S(A, ρ), θ)]`` (see :func:`perturbed_loss`); must
            lie in ``[0, loss_range]``.
        n: Size of ``S``.
        delta: Confidence parameter in (0, 1].
        loss_range: ``C``; the loss must lie in ``[0, C]``.

    Returns:
        The bound (``details``: ``loss_range``, ``delta``, ``n``).
    """
    loss_range = _check_positive("loss_range", loss_range)
    value = float(perturbed_loss)
    if not math.isfinite(value) or value < 0.0 or value > loss_range:
        raise ValueError(
            f"perturbed_loss must lie in [0, loss_range] = [0, {loss_range}], got {perturbed_loss!r}"
        )
    term = hoeffding_term(n, delta, loss_range)
    return BoundValue(value + term, value, term, {"loss_range": loss_range, "delta": delta, "n": n})


def haar_orthogonal(
    d: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A ``d × d`` orthogonal matrix drawn from the Haar measure on ``O(d)``.

    QR of a standard Gaussian matrix ``G = QR`` with the signs of ``diag(R)``
    moved into ``Q`` (Mezzadri 2007), which makes ``Q`` exactly Haar.

    Args:
        d: Dimension.
        generator: CPU ``torch.Generator`` for reproducibility.
        dtype: Floating dtype of the result.
        device: Device of the result (the draw itself is on CPU, so the same
            seed gives the same matrix on every device).
    """
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise ValueError(f"d must be an int >= 1, got {d!r}")
    g = torch.randn(d, d, generator=generator, dtype=torch.float64, device="cpu")
    q, r = torch.linalg.qr(g)
    signs = torch.sign(torch.diagonal(r))
    signs[signs == 0] = 1.0
    return (q * signs).to(device=device, dtype=dtype)


def _batches(data: Any) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    if isinstance(data, tuple | list) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        return [(data[0], data[1])]
    return data


@torch.no_grad()
def perturbed_loss(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    data: Any,
    rho: float,
    num_draws: int = 16,
    seed: int = 0,
    progress: bool = False,
) -> tuple[float, float]:
    """Monte Carlo estimate of ``E_A[L(S(A, ρ), θ)]`` with ``S(A, ρ) = {(x + ρAx, y)}``.

    Each draw samples one Haar orthogonal ``A`` on the flattened input
    dimension and evaluates the mean loss over all of ``data`` with inputs
    ``x + ρ A x``.

    Args:
        model: The network (evaluated as is; put it in eval mode first).
        loss_fn: ``loss_fn(outputs, targets)`` -> mean loss; for the bound it
            must take values in ``[0, C]`` (e.g. the 0-1 error).
        data: ``(x, y)`` or an iterable of such batches.
        rho: Perturbation size ``ρ >= 0``.
        num_draws: Number of Haar draws.
        seed: Seed of the draws.
        progress: Show a tqdm bar over the draws.

    Returns:
        ``(mean, stderr)`` over the draws (stderr is 0 for one draw).
    """
    from tqdm.auto import tqdm

    if not math.isfinite(float(rho)) or rho < 0:
        raise ValueError(f"rho must be a finite number >= 0, got {rho!r}")
    if isinstance(num_draws, bool) or not isinstance(num_draws, int) or num_draws < 1:
        raise ValueError(f"num_draws must be an int >= 1, got {num_draws!r}")
    batches = list(_batches(data))
    if not batches:
        raise ValueError("data must hold at least one (x, y) batch")
    param = next(iter(model.parameters()), None)
    dtype = param.dtype if param is not None else batches[0][0].dtype
    device = param.device if param is not None else batches[0][0].device
    dim = int(np.prod(batches[0][0].shape[1:]))
    gen = torch.Generator().manual_seed(int(seed))
    values = []
    for _ in tqdm(range(num_draws), disable=not progress, desc="Haar draws"):
        a = haar_orthogonal(dim, generator=gen, dtype=dtype, device=device)
        total, count = 0.0, 0
        for x, y in batches:
            x = x.to(device=device, dtype=dtype)
            flat = x.reshape(x.shape[0], -1)
            xp = (flat + rho * flat @ a.T).reshape(x.shape)
            loss = loss_fn(model(xp), y.to(device))
            total += float(loss) * x.shape[0]
            count += x.shape[0]
        values.append(total / count)
    arr = np.asarray(values)
    stderr = float(arr.std(ddof=1) / math.sqrt(len(arr))) if len(arr) > 1 else 0.0
    return float(arr.mean()), stderr


# --------------------------------------------------------------------------- Prop. C.1


def log_ball_volume(dim: int, radius: float = 1.0) -> float:
    """``log vol(B_dim(radius)) = (d/2) log π - log Γ(d/2 + 1) + d log r``.

    >>> round(math.exp(log_ball_volume(2, 1.0)), 12) == round(math.pi, 12)
    True
    """
    dim = _check_dim(dim)
    radius = _check_positive("radius", radius)
    return 0.5 * dim * math.log(math.pi) - math.lgamma(0.5 * dim + 1.0) + dim * math.log(radius)


def log_det_renyi_upper_bound(trace: float, entropy: float, dim: int) -> float:
    """The paper's upper bound ``log|H| <= d log Tr H - H_α(H)`` (Eqs. 28 and 40).

    Args:
        trace: ``Tr H > 0``.
        entropy: ``H_α(H)`` of the normalized spectrum, in ``[0, log d]``.
        dim: ``d``, the block dimension.
    """
    dim = _check_dim(dim)
    trace = _check_positive("trace", trace)
    entropy = _check_entropy(entropy, dim)
    return dim * math.log(trace) - entropy


def jia_su_log_lambda(log_det: float, dim: int, log_volume: float) -> float:
    """``log Λ`` with ``Λ = n V^{2/n} |H|^{1/n} / (4πe)`` (Theorem C.2, Eq. 25).

    Args:
        log_det: ``log|H|`` (use :func:`log_det_renyi_upper_bound` for the
            Rényi form of Eq. 24/41).
        dim: ``n``, the number of parameters of the block.
        log_volume: ``log V`` of the neighbourhood ``M(θ*)`` (a free constant).
    """
    dim = _check_dim(dim)
    if not math.isfinite(float(log_volume)):
        raise ValueError(f"log_volume must be finite, got {log_volume!r}")
    if math.isnan(float(log_det)) or log_det == math.inf:
        raise ValueError(f"log_det must be a number < inf, got {log_det!r}")
    return (
        math.log(dim)
        + 2.0 * float(log_volume) / dim
        + float(log_det) / dim
        - math.log(4.0 * math.pi * math.e)
    )


def renyi_log_lambda(trace: float, entropy: float, dim: int, log_volume: float) -> float:
    """``log Λ_α`` with ``Λ_α = n V^{2/n} Tr(H) exp(-H_α(H)/n) / (4πe)`` (Eqs. 24, 41)."""
    return jia_su_log_lambda(log_det_renyi_upper_bound(trace, entropy, dim), dim, log_volume)


def renyi_factor_range(dim: int) -> tuple[float, float]:
    """Range of ``exp(-H_α/n)``, the only place ``H_α`` enters ``Λ_α``: ``[n^{-1/n}, 1]``.

    ``H_α ∈ [0, log n]``, so over every possible spectrum the Rényi entropy
    changes ``Λ_α`` by at most the factor ``n^{1/n}`` (``→ 1`` as ``n`` grows).

    >>> lo, hi = renyi_factor_range(1000)
    >>> round(lo, 4), hi
    (0.9931, 1.0)
    """
    dim = _check_dim(dim)
    return dim ** (-1.0 / dim), 1.0


def jia_su_bound(
    posterior_loss: float, min_loss: float, log_lambda: float, n: int, delta: float
) -> BoundValue:
    """Theorem C.2 (Jia & Su 2020) as printed in Eq. 25.

    ``E_Q[L(D,θ)] <= E_Q[L(S,θ)] + 2 sqrt((2 L0 + 2Λ + log(2N/δ)) / (N - 1))``.

    Assumptions (paper): loss in ``[0, 1]``; ``θ*`` an isolated local minimum,
    unique in a neighbourhood ``M(θ*)`` of small volume ``V``; uniform prior on
    ``M(θ*)``; posterior ``q ∝ exp(-|L(S,θ) - L0|)``.

    Args:
        posterior_loss: ``E_Q[L(S, θ)]`` in [0, 1].
        min_loss: ``L0 = L(S, θ*)`` in [0, 1].
        log_lambda: ``log Λ`` (:func:`jia_su_log_lambda` or :func:`renyi_log_lambda`).
        n: ``N``, the training-set size (>= 2).
        delta: Confidence parameter in (0, 1].
    """
    posterior_loss = _check_unit("posterior_loss", posterior_loss)
    min_loss = _check_unit("min_loss", min_loss)
    n = _check_n(n, 2)
    delta = _check_delta(delta)
    lam = math.exp(float(log_lambda)) if log_lambda < 700 else math.inf
    term = 2.0 * math.sqrt((2.0 * min_loss + 2.0 * lam + math.log(2.0 * n / delta)) / (n - 1))
    return BoundValue(
        posterior_loss + term,
        posterior_loss,
        term,
        {"lambda": lam, "log_lambda": float(log_lambda)},
    )


def renyi_pac_bayes_bound(
    posterior_loss: float,
    min_loss: float,
    n: int,
    delta: float,
    *,
    trace: float,
    entropy: float,
    dim: int,
    log_volume: float,
) -> BoundValue:
    """Proposition C.1 / Theorem 3.2 (Eq. 24): Eq. 25 with ``Λ_α`` in place of ``Λ``.

    ``Λ_α = n V^{2/n} Tr(H) exp(-H_α(H)/n) / (4πe) >= Λ`` because
    ``log|H| <= n log Tr H - H_α`` (Eq. 40), so this bound is never tighter than
    Eq. 25 with the exact determinant.

    Args:
        posterior_loss: ``E_Q[L(S, θ)]`` in [0, 1].
        min_loss: ``L0`` in [0, 1].
        n: Training-set size ``N``.
        delta: Confidence parameter.
        trace: ``Tr H`` of the (PSD) block Hessian.
        entropy: ``H_α(H)``.
        dim: Block dimension ``n`` of the paper (number of parameters).
        log_volume: ``log V`` (free constant; the book uses a ball of radius ``r``).
    """
    log_lam = renyi_log_lambda(trace, entropy, dim, log_volume)
    out = jia_su_bound(posterior_loss, min_loss, log_lam, n, delta)
    return BoundValue(
        out.value,
        out.empirical,
        out.complexity,
        {**out.details, "trace": trace, "entropy": entropy},
    )


# --------------------------------------------------------------------------- Thm. D.1


def mcallester_term(kl: float, n: int, delta: float) -> float:
    """McAllester's (2003) complexity term ``sqrt((KL + log(n/δ)) / (2(n - 1)))`` (Eq. 47).

    >>> round(mcallester_term(8 - math.log(101), 101, 1.0), 12)
    0.2
    """
    n = _check_n(n, 2)
    delta = _check_delta(delta)
    if math.isnan(float(kl)) or kl < -1e-9:
        raise ValueError(f"kl (a KL divergence) must be >= 0, got {kl!r}")
    return math.sqrt((max(float(kl), 0.0) + math.log(n / delta)) / (2.0 * (n - 1)))


def ellipsoid_posterior_excess(dim: int, rho: float) -> float:
    """``E_{θ~Unif(E_H(ρ))}[½ (θ-θ*)ᵀH(θ-θ*)] = d ρ² / (2(d + 2))`` (Thm. D.1, step 1).

    With ``y = H^{1/2}(θ-θ*)`` uniform on the ``d``-ball of radius ``ρ``,
    ``E|y|² = ∫_0^ρ r² d r^{d-1} / ρ^d dr = d ρ² / (d + 2)``.
    """
    dim = _check_dim(dim)
    rho = _check_positive("rho", rho)
    return dim * rho**2 / (2.0 * (dim + 2))


def ellipsoid_kl(log_det: float, dim: int, rho: float, prior_radius: float) -> float:
    """``KL(Unif(E_H(ρ)) || Unif(B_R)) = d log(R/ρ) + ½ log det H`` (Thm. D.1, step 2).

    ``vol(E_H(ρ)) = vol(B_d(1)) ρ^d det(H)^{-1/2}`` and ``vol(B_R) = vol(B_d(1)) R^d``.
    """
    dim = _check_dim(dim)
    rho = _check_positive("rho", rho)
    prior_radius = _check_positive("prior_radius", prior_radius)
    if not math.isfinite(float(log_det)):
        raise ValueError(f"log_det must be finite (H positive definite), got {log_det!r}")
    return dim * math.log(prior_radius / rho) + 0.5 * float(log_det)


def _prior_radius(rho: float, lambda_min: float, prior_radius: float | None) -> float:
    lambda_min = _check_positive("lambda_min", lambda_min)
    smallest = rho / math.sqrt(lambda_min)
    if prior_radius is None:
        return smallest
    prior_radius = _check_positive("prior_radius", prior_radius)
    if prior_radius < smallest * (1 - 1e-12):
        raise ValueError(
            f"prior_radius must be >= rho / sqrt(lambda_min) = {smallest:.6g} so that the prior "
            f"ball contains the posterior ellipsoid, got {prior_radius!r}"
        )
    return prior_radius


def _ellipsoid_bound(
    train_loss: float,
    n: int,
    delta: float,
    dim: int,
    rho: float,
    log_det: float,
    radius: float,
    remainder: float,
    extra: dict[str, float],
) -> BoundValue:
    train_loss = _check_unit("train_loss", train_loss)
    if not math.isfinite(float(remainder)) or remainder < 0:
        raise ValueError(f"remainder (the Taylor bound ε) must be >= 0, got {remainder!r}")
    excess = ellipsoid_posterior_excess(dim, rho)
    kl = ellipsoid_kl(log_det, dim, rho, radius)
    term = mcallester_term(kl, n, delta)
    empirical = train_loss + excess + float(remainder)
    details = {"kl": kl, "posterior_excess": excess, "prior_radius": radius, **extra}
    return BoundValue(empirical + term, empirical, term, details)


def ellipsoid_bound(
    train_loss: float,
    n: int,
    delta: float,
    eigenvalues: np.ndarray | Sequence[float],
    rho: float,
    prior_radius: float | None = None,
    remainder: float = 0.0,
) -> BoundValue:
    """Theorem D.1, step 3, with the exact ``log det H`` (before the Rényi step).

    ``L(D,θ*) <= L(S,θ*) + dρ²/(2(d+2)) + ε + sqrt((d log(R/ρ) + ½ log det H + log(n/δ)) / (2(n-1)))``.

    Assumptions (paper): loss in [0, 1]; ``H`` positive definite (the
    quadratic model holds on ``E_H(ρ)`` up to ``ε``); ``L(D, θ*) <= E_Q[L(D, θ)]``.

    Args:
        train_loss: ``L(S, θ*)`` in [0, 1].
        n: Training-set size (>= 2).
        delta: Confidence parameter.
        eigenvalues: Eigenvalues of the block Hessian (all > 0; use a PSD proxy
            such as ``|H| + γI`` for an indefinite Hessian, Remark F.7).
        rho: Posterior radius ``ρ > 0`` (free constant).
        prior_radius: ``R``; default the smallest admissible ``ρ / sqrt(λ_min)``.
        remainder: Taylor remainder ``ε >= 0`` (free constant; default 0).
    """
    lam = np.asarray(eigenvalues, dtype=np.float64).ravel()
    if lam.size == 0 or not np.all(np.isfinite(lam)) or np.any(lam <= 0):
        raise ValueError(
            "eigenvalues must be finite and > 0 (a positive definite Hessian or PSD proxy), "
            f"got min {lam.min() if lam.size else 'n/a'}"
        )
    rho = _check_positive("rho", rho)
    radius = _prior_radius(rho, float(lam.min()), prior_radius)
    log_det = float(np.sum(np.log(lam)))
    return _ellipsoid_bound(
        train_loss, n, delta, int(lam.size), rho, log_det, radius, remainder, {"log_det": log_det}
    )


def renyi_ellipsoid_bound(
    train_loss: float,
    n: int,
    delta: float,
    *,
    dim: int,
    trace: float,
    entropy: float,
    lambda_min: float,
    rho: float,
    prior_radius: float | None = None,
    remainder: float = 0.0,
) -> BoundValue:
    """Theorem D.1 / Theorem 3.3 (Eq. 46) with every constant kept.

    ``½ log det H`` of :func:`ellipsoid_bound` is replaced by the paper's upper
    bound ``½ (d log Tr H - H_α(H))`` (Eqs. 28, 40), so

    ``L(D,θ*) <= L(S,θ*) + dρ²/(2(d+2)) + ε + sqrt((C - ½ H_α(H) + log(n/δ)) / (2(n-1)))``

    with ``C = d log(R/ρ) + ½ d log Tr H`` — the "constant" of Eq. 46, which
    depends on the trace and on ``R >= ρ/sqrt(λ_min)``. Never tighter than
    :func:`ellipsoid_bound`.

    Args:
        train_loss: ``L(S, θ*)`` in [0, 1].
        n: Training-set size.
        delta: Confidence parameter.
        dim: ``d``, parameters in the block.
        trace: ``Tr H > 0``.
        entropy: ``H_α(H)`` in ``[0, log d]``.
        lambda_min: Smallest eigenvalue (> 0) of ``H``; fixes the smallest prior radius.
        rho: Posterior radius (free constant).
        prior_radius: ``R``; default ``ρ / sqrt(λ_min)``.
        remainder: Taylor remainder ``ε``.
    """
    rho = _check_positive("rho", rho)
    radius = _prior_radius(rho, lambda_min, prior_radius)
    log_det = log_det_renyi_upper_bound(trace, entropy, dim)
    constant = dim * math.log(radius / rho) + 0.5 * dim * math.log(trace)
    return _ellipsoid_bound(
        train_loss,
        n,
        delta,
        dim,
        rho,
        log_det,
        radius,
        remainder,
        {"log_det_upper": log_det, "constant_C": constant, "entropy": float(entropy)},
    )


# --------------------------------------------------------------------------- the chain


def _renyi(p: np.ndarray, alpha: float) -> float:
    from renyilib.renyi import renyi_entropy

    return float(renyi_entropy(p, alpha))


#: The steps of the chain of Appendix C and what each claims, for ``p`` a
#: probability vector of length ``n`` (all ``p_i > 0``).
CHAIN_STEPS: dict[str, str] = {
    "29": "Σ log p_i <= Σ p_i log p_i (claimed for α > 1; true for every p)",
    "31": "-H_1(p) <= -H_α(p) (monotonicity of H_α in α; used for α > 1)",
    "34": "Σ p_i^α <= n^{1-α} (Jensen; used for 0 < α < 1)",
    "36": "Π p_i <= n^{-n} (AM-GM)",
    "37": "(Π p_i) (Σ p_i^α)^{1/(1-α)} <= n^{1-n} <= 1 (used for 0 < α < 1)",
    "40": "Σ log p_i <= -H_α(p) (the claim, for every α > 0, α != 1)",
}


def _as_probability(p: np.ndarray | Sequence[float]) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64).ravel()
    if p.size == 0 or not np.all(np.isfinite(p)) or np.any(p <= 0):
        raise ValueError(
            "p must be a non-empty vector of finite values > 0 (a normalized spectrum)"
        )
    return p / p.sum()


def appendix_c_chain(
    p: np.ndarray | Sequence[float], alpha: float, tol: float = 1e-10
) -> dict[str, Any]:
    """Every quantity and step of the inequality chain of Appendix C (Eqs. 26-40).

    Args:
        p: Positive eigenvalues (normalized here to ``p_i = λ_i / Σ λ_j``).
        alpha: Rényi order ``α > 0``, ``α != 1``.
        tol: Absolute slack allowed in each comparison (rounding).

    Returns:
        Dict with ``n``, ``alpha``, ``sum_log_p`` (``Σ log p_i``), ``neg_shannon``
        (``Σ p log p = -H_1``), ``neg_renyi`` (``-H_α``), ``power_sum``
        (``Σ p^α``), ``log_prod_bound`` (``-n log n``), ``slack_40``
        (``-H_α - Σ log p_i >= 0``), and ``step_<k>`` booleans (True = the step's
        inequality holds) for every key of :data:`CHAIN_STEPS`. Steps 34 and 37
        are evaluated only for ``α < 1`` (``None`` otherwise), as in the paper.
    """
    alpha = float(alpha)
    if not math.isfinite(alpha) or alpha <= 0 or alpha == 1:
        raise ValueError(f"alpha must be > 0 and != 1, got {alpha!r}")
    q = _as_probability(p)
    n = q.size
    sum_log = float(np.sum(np.log(q)))
    neg_shannon = float(np.sum(q * np.log(q)))
    neg_renyi = -_renyi(q, alpha)
    power_sum = float(np.sum(q**alpha))
    out: dict[str, Any] = {
        "n": n,
        "alpha": alpha,
        "sum_log_p": sum_log,
        "neg_shannon": neg_shannon,
        "neg_renyi": neg_renyi,
        "power_sum": power_sum,
        "log_prod_bound": -n * math.log(n),
        "slack_40": neg_renyi - sum_log,
    }
    out["step_29"] = sum_log <= neg_shannon + tol
    out["step_31"] = neg_shannon <= neg_renyi + tol
    out["step_36"] = sum_log <= -n * math.log(n) + tol
    if alpha < 1:
        out["step_34"] = power_sum <= n ** (1 - alpha) * (1 + tol)
        out["step_37"] = sum_log + math.log(power_sum) / (1 - alpha) <= (1 - n) * math.log(n) + tol
    else:
        out["step_34"] = None
        out["step_37"] = None
    out["step_40"] = sum_log <= neg_renyi + tol
    return out


def find_chain_counterexample(
    step: str,
    alpha: float,
    dim: int = 2,
    num_trials: int = 1000,
    seed: int = 0,
) -> np.ndarray | None:
    """Search random spectra for a violation of one step of the chain.

    Draws ``num_trials`` probability vectors of length ``dim`` from Dirichlet
    distributions with concentrations spread over ``[0.05, 20]`` and returns the
    first that violates ``step`` (a key of :data:`CHAIN_STEPS`).

    Args:
        step: Which step, e.g. ``"31"``.
        alpha: Rényi order.
        dim: Length of the spectrum.
        num_trials: Number of random spectra.
        seed: Seed of the search.

    Returns:
        A violating probability vector, or ``None`` if none was found (which is
        evidence, not proof, that the step holds).
    """
    if step not in CHAIN_STEPS:
        raise KeyError(f"step must be one of {sorted(CHAIN_STEPS)}, got {step!r}")
    dim = _check_dim(dim)
    rng = np.random.default_rng(seed)
    for _ in range(num_trials):
        conc = 10 ** rng.uniform(math.log10(0.05), math.log10(20))
        p = rng.dirichlet(np.full(dim, conc))
        p = np.clip(p, 1e-300, None)
        verdict = appendix_c_chain(p, alpha)[f"step_{step}"]
        if verdict is False:
            return p / p.sum()
    return None


def chain_table(
    spectra: Iterable[np.ndarray | Sequence[float]],
    alphas: Sequence[float],
    names: Sequence[str] | None = None,
) -> Any:
    """The chain of Appendix C on many spectra and orders, as a DataFrame.

    Args:
        spectra: Positive spectra (eigenvalues; normalized here).
        alphas: Orders to check.
        names: Optional label per spectrum.

    Returns:
        ``pandas.DataFrame`` with one row per (spectrum, α): the columns of
        :func:`appendix_c_chain` plus ``name``.
    """
    import pandas as pd

    rows = []
    spectra = list(spectra)
    labels = list(names) if names is not None else [str(i) for i in range(len(spectra))]
    if len(labels) != len(spectra):
        raise ValueError(
            f"names must have one entry per spectrum ({len(spectra)}), got {len(labels)}"
        )
    for label, spec in zip(labels, spectra):
        for alpha in alphas:
            rows.append({"name": label, **appendix_c_chain(spec, alpha)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- real networks


def bounded_error_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean ``1 - softmax(outputs)[y]``: a smooth loss with values in ``[0, 1]``.

    The PAC-Bayes bounds assume a loss in ``[0, 1]`` (Prop. C.1, Thm. D.1) and
    Thm. D.1 a twice differentiable one; cross-entropy is unbounded and the
    0-1 error has a zero Hessian, so the book evaluates the bounds with this
    loss (its Hessian, its train and test values).
    """
    prob = torch.softmax(outputs, dim=-1).gather(-1, targets.reshape(-1, 1)).squeeze(-1)
    return (1.0 - prob).mean()


def model_bounds(
    model: torch.nn.Module,
    data: Any,
    *,
    train_loss: float,
    n: int,
    alpha: float,
    delta: float = 0.05,
    radius: float = 0.1,
    rho: float = 0.1,
    shift: float = 1e-3,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = bounded_error_loss,
    blocks: Sequence[str] | None = None,
    progress: bool = False,
) -> Any:
    """Every bound of Section 3 for the layer blocks of a trained network.

    For each block (default: the layer weights of
    :func:`renyilib.hessian.layer_blocks`), the dense Hessian of ``loss_fn``
    over ``data`` is eigendecomposed and replaced by the PSD proxy
    ``P = |H| + γ I`` with ``γ = shift · Tr|H| / d`` (Remark F.7; the theorems
    need ``H ≻ 0``). From its spectrum:

    - ``jia_su``: Eq. 25 with the exact ``log det P``;
    - ``renyi_c1``: Prop. C.1 (Eq. 24) with ``Tr P`` and ``H_α(P)``;
    - ``ellipsoid``: Thm. D.1 step 3 with the exact ``log det P``;
    - ``renyi_d1``: Thm. D.1 (Eq. 46) with ``Tr P``, ``H_α(P)``, ``λ_min(P)``.

    Both C-bounds use ``V = vol(B_d(radius))`` and the posterior loss
    ``E_Q[L(S,θ)] <= L0 + Λ`` (``Λ`` is the largest loss increase on
    ``M(θ*)`` under the quadratic model); both D-bounds use the posterior
    radius ``rho``, the smallest prior radius ``ρ/sqrt(λ_min)`` and ``ε = 0``.

    Args:
        model: Trained network in eval mode (float64 recommended).
        data: ``(x, y)`` or batches for the Hessian (may be a subset of ``S``).
        train_loss: ``L(S, θ*)`` of ``loss_fn`` on the whole training set, in [0, 1].
        n: Training-set size ``N``.
        alpha: Rényi order.
        delta: Confidence parameter.
        radius: Radius ``r`` of the neighbourhood ``M(θ*)`` (free constant).
        rho: Posterior radius of Thm. D.1 (free constant).
        shift: Relative shift of the PSD proxy (free constant).
        loss_fn: The bounded loss (default :func:`bounded_error_loss`).
        blocks: Block names of ``layer_blocks`` (default: every layer, not ``"all"``).
        progress: tqdm over blocks.

    Returns:
        ``pandas.DataFrame``, one row per block: ``block, dim, trace, entropy,
        lambda_min, log_det, log_det_renyi`` and, for each bound, its value and
        complexity term (``<bound>``, ``<bound>_complexity``), plus the KLs.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from renyilib.hessian import hessian_operator, layer_blocks
    from renyilib.renyi import renyi_entropy

    train_loss = _check_unit("train_loss", train_loss)
    shift = _check_positive("shift", shift)
    all_blocks = layer_blocks(model)
    names = [b for b in all_blocks if b != "all"] if blocks is None else list(blocks)
    unknown = [b for b in names if b not in all_blocks]
    if unknown:
        raise KeyError(f"blocks names unknown blocks {unknown}; known: {list(all_blocks)}")
    rows = []
    for name in tqdm(names, disable=not progress, desc="blocks"):
        h = hessian_operator(model, loss_fn, data, name).to_dense()
        ev = np.abs(np.linalg.eigvalsh(h.detach().cpu().double().numpy()))
        d = int(ev.size)
        ev = ev + shift * ev.sum() / d
        trace, lam_min = float(ev.sum()), float(ev.min())
        entropy = min(float(renyi_entropy(ev, alpha)), math.log(d))
        log_det = float(np.log(ev).sum())
        log_v = log_ball_volume(d, radius)
        log_lam = jia_su_log_lambda(log_det, d, log_v)
        log_lam_r = renyi_log_lambda(trace, entropy, d, log_v)
        post = min(1.0, train_loss + math.exp(min(log_lam, 700)))
        post_r = min(1.0, train_loss + math.exp(min(log_lam_r, 700)))
        js = jia_su_bound(post, train_loss, log_lam, n, delta)
        c1 = jia_su_bound(post_r, train_loss, log_lam_r, n, delta)
        ell = ellipsoid_bound(train_loss, n, delta, ev, rho)
        d1 = renyi_ellipsoid_bound(
            train_loss, n, delta, dim=d, trace=trace, entropy=entropy, lambda_min=lam_min, rho=rho
        )
        rows.append(
            {
                "block": name,
                "dim": d,
                "alpha": float(alpha),
                "trace": trace,
                "entropy": entropy,
                "lambda_min": lam_min,
                "log_det": log_det,
                "log_det_renyi": log_det_renyi_upper_bound(trace, entropy, d),
                "lambda": math.exp(min(log_lam, 700)),
                "lambda_renyi": math.exp(min(log_lam_r, 700)),
                "jia_su": js.value,
                "jia_su_complexity": js.complexity,
                "renyi_c1": c1.value,
                "renyi_c1_complexity": c1.complexity,
                "ellipsoid": ell.value,
                "ellipsoid_complexity": ell.complexity,
                "ellipsoid_kl": ell.details["kl"],
                "renyi_d1": d1.value,
                "renyi_d1_complexity": d1.complexity,
                "renyi_d1_kl": d1.details["kl"],
            }
        )
    return pd.DataFrame(rows)
