"""Minimum sharpness: the Hessian trace minimized over the layer-wise rescalings.

A feed-forward ReLU network :math:`f(x) = W_L\\,\\sigma(\\cdots\\sigma(W_1 x + b_1)\\cdots) + b_L`
computes the same function after the layer-wise rescaling

.. math::

    W_l \\to \\alpha_l W_l, \\qquad b_l \\to \\Big(\\prod_{j \\le l} \\alpha_j\\Big) b_l,
    \\qquad \\alpha_l > 0, \\quad \\prod_{l=1}^{L} \\alpha_l = 1,

because :math:`\\sigma(c\\,z) = c\\,\\sigma(z)` for :math:`c > 0`; the Hessian
trace does not stay the same: the second derivative in the rescaled weight is
:math:`1/\\alpha_l^2` times the old one. **Minimum sharpness** (Ibayashi,
Hamaguchi & Imaizumi 2021, arXiv 2106.12612, Def. 1 and Sec. 4) is the trace's
minimum over this equivalence class,

.. math::

    \\operatorname{MinS}(\\theta) = \\min_{\\alpha > 0,\\ \\prod_l \\alpha_l = 1}
    \\sum_{l=1}^{L} \\frac{t_l}{\\alpha_l^2} + \\frac{s_l}{\\big(\\prod_{j\\le l}\\alpha_j\\big)^2},
    \\qquad t_l = \\operatorname{Tr} \\nabla^2_{W_l} L, \\quad s_l = \\operatorname{Tr} \\nabla^2_{b_l} L,

so it is invariant under those rescalings by construction. The sums
:math:`t_l, s_l` come from the exact Hessian diagonal
(:func:`renyilib.diagonal.hessian_diagonal`; the Gauss–Newton
identity for cross-entropy on piecewise-linear networks makes them
non-negative).

**Solving it.** With :math:`u_l = \\log\\alpha_l` the objective is a sum of
exponentials of linear functions of :math:`u` with non-negative
coefficients: convex. Without biases the AM–GM inequality gives the closed form

.. math::

    \\operatorname{MinS} = L\\,\\Big(\\prod_{l} t_l\\Big)^{1/L}, \\qquad
    \\alpha_l^2 = t_l \\Big/ \\Big(\\prod_j t_j\\Big)^{1/L};

with biases, :func:`minimize_rescaled_trace` runs Newton's method with
backtracking on :math:`\\log` of the objective (a log-sum-exp of affine
functions of the :math:`L-1` free log-scales; strictly convex when every
:math:`t_l > 0`) until the squared Newton decrement is below ``1e-18``, or
no step changes the objective in floating point while it is below ``1e-12``:
the value to better than ``1e-12`` relative (the paper's code runs 10,000
SGD steps).

**Scope of the invariance.** Only the layer-wise rescaling above is divided
out. A *neuron-wise* rescaling (row :math:`i` of :math:`W_l` and
:math:`b_{l,i}` times :math:`c`, column :math:`i` of :math:`W_{l+1}` divided by
:math:`c`) also preserves the function of a ReLU network and does change
minimum sharpness. Networks with normalization layers, skip connections or
non-homogeneous activations have no such equivalence class here:
:func:`minimum_sharpness` checks numerically that a random layer-wise
rescaling preserves the outputs and raises ``ValueError`` otherwise.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from renyilib.diagonal import ggn_identity_violation, hessian_diagonal
from renyilib.hessian import layer_blocks

__all__ = [
    "MinimumSharpness",
    "layer_parameters",
    "minimize_rescaled_trace",
    "minimum_sharpness",
    "rescale_layers",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: Newton stops when the squared Newton decrement of log F falls below this
#: (then log F is within half of it of its minimum). Rounding in the gradient
#: of log F keeps the decrement at 1e-21..1e-20 on some problems, so not lower.
_NEWTON_DECREMENT = 1e-18
#: ... or when no step changes log F in floating point while the decrement is
#: below this (log F within 5e-13 of its minimum: the value to ~5e-13 relative).
_NEWTON_STALL = 1e-12


@dataclass(frozen=True)
class MinimumSharpness:
    """Result of :func:`minimum_sharpness`.

    Attributes:
        value: :math:`\\operatorname{MinS}`, the minimized rescaled trace.
        trace: The raw Hessian trace over the layers' weights and biases,
            :math:`\\sum_l t_l + s_l` (the objective at :math:`\\alpha = 1`).
        scales: Optimal :math:`\\alpha_l` (product 1), one per layer.
        layers: ``(weight_name, bias_name or None)`` per layer, in forward order.
        weight_traces: :math:`t_l`.
        bias_traces: :math:`s_l` (0 for a layer without bias).
        converged: Whether the solver met its tolerance (always for the closed form).
        iterations: Newton iterations (0 for the closed form).
        solver: ``"closed_form"`` (no biases), ``"newton"`` or ``"single_layer"``.
        diagonal_method: How the diagonal was computed (``"ggn"`` or ``"hvp"``).
    """

    value: float
    trace: float
    scales: np.ndarray
    layers: list[tuple[str, str | None]]
    weight_traces: np.ndarray
    bias_traces: np.ndarray
    converged: bool
    iterations: int
    solver: str
    diagonal_method: str = "ggn"
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (arrays as lists)."""
        d = asdict(self)
        for key in ("scales", "weight_traces", "bias_traces"):
            d[key] = [float(v) for v in d[key]]
        d["layers"] = [list(pair) for pair in self.layers]
        return d


def _as_array(values: Any, name: str, length: int | None = None) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(
            f"{name} must be a non-empty 1-D sequence of floats, got shape {arr.shape}"
        )
    if length is not None and arr.size != length:
        raise ValueError(f"{name} must have length {length} (one per layer), got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr}")
    return arr


def minimize_rescaled_trace(
    weight_traces: Sequence[float] | np.ndarray,
    bias_traces: Sequence[float] | np.ndarray | None = None,
    *,
    max_iter: int = 200,
) -> tuple[float, np.ndarray, bool, int, str]:
    """Minimize :math:`\\sum_l t_l/\\alpha_l^2 + s_l/(\\prod_{j\\le l}\\alpha_j)^2` over :math:`\\prod_l\\alpha_l = 1`.

    The minimization of minimum sharpness (module docstring). With
    :math:`v_l = \\log\\alpha_l` for :math:`l < L` and
    :math:`\\log\\alpha_L = -\\sum_{l<L} v_l`, the objective is
    :math:`F(v) = \\sum_m c_m e^{a_m^\\top v}` with :math:`c_m \\ge 0`; Newton's
    method with backtracking runs on :math:`\\log F` (log-sum-exp, convex),
    started at the bias-free closed-form optimum. Without biases (all
    :math:`s_l = 0`) the closed form :math:`L (\\prod_l t_l)^{1/L}` is returned.

    Args:
        weight_traces: :math:`t_l > 0`, one per layer, in forward order.
        bias_traces: :math:`s_l \\ge 0` (``None``: no biases).
        max_iter: Newton iteration limit.

    Returns:
        ``(value, scales, converged, iterations, solver)`` with ``scales`` the
        optimal :math:`\\alpha` (product 1) and ``solver`` one of
        ``"closed_form"``, ``"newton"``, ``"single_layer"``.

    Raises:
        ValueError: a non-positive weight trace (the infimum is then not
            attained: scaling that layer up sends its term to 0), a negative
            bias trace, mismatched lengths.
    """
    t = _as_array(weight_traces, "weight_traces")
    s = np.zeros_like(t) if bias_traces is None else _as_array(bias_traces, "bias_traces", t.size)
    if np.any(t <= 0):
        raise ValueError(
            f"weight_traces must all be > 0 (layer {int(np.argmin(t))} has {t.min():.3e}; "
            "a layer with zero curvature, e.g. dead ReLUs, has no minimizing rescaling)"
        )
    if np.any(s < 0):
        raise ValueError(f"bias_traces must be >= 0, got {s}")
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive int, got {max_iter!r}")
    L = t.size
    if L == 1:
        return float(t[0] + s[0]), np.ones(1), True, 0, "single_layer"
    log_t = np.log(t)
    log_g = log_t.mean()
    u0 = 0.5 * (log_t - log_g)  # closed-form log-scales (sum 0)
    if not np.any(s > 0):
        return float(L * math.exp(log_g)), np.exp(u0), True, 0, "closed_form"
    # Terms: weight l < L: a = -2 e_l; weight L: a = 2·1; bias l: a = -2 Σ_{j<=min(l,L-1)} e_j.
    rows, coefs = [], []
    eye = np.eye(L - 1)
    for k in range(L):
        rows.append(-2.0 * eye[k] if k < L - 1 else 2.0 * np.ones(L - 1))
        coefs.append(t[k])
        if s[k] > 0:
            rows.append(-2.0 * eye[: k + 1].sum(0) if k < L - 1 else np.zeros(L - 1))
            coefs.append(s[k])
    A = np.array(rows)
    log_c = np.log(np.array(coefs))
    scale = log_c.max()
    log_c = log_c - scale  # conditioning only

    def phi(v: np.ndarray) -> tuple[float, np.ndarray]:
        z = log_c + A @ v
        zmax = z.max()
        w = np.exp(z - zmax)
        total = w.sum()
        return float(zmax + math.log(total)), w / total

    v = u0[:-1].copy()
    value, w = phi(v)
    converged, it = False, 0
    while it < max_iter:
        it += 1
        g = A.T @ w
        H = A.T @ ((w[:, None]) * A) - np.outer(g, g)
        try:
            step = -np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            step = -g
        decrement = float(-(g @ step))
        if decrement <= _NEWTON_DECREMENT:
            converged = True
            break
        lr = 1.0
        while True:
            new_value, new_w = phi(v + lr * step)
            if new_value <= value + 0.25 * lr * float(g @ step) or lr < 1e-12:
                break
            lr *= 0.5
        if new_value >= value - 4 * np.finfo(float).eps * max(1.0, abs(value)):
            # no step changes log F in floating point: converged if the decrement says so
            converged = decrement <= _NEWTON_STALL
            if new_value < value:
                v, value, w = v + lr * step, new_value, new_w
            break
        v, value, w = v + lr * step, new_value, new_w
    u = np.append(v, -v.sum())
    return float(math.exp(value + scale)), np.exp(u), converged, it, "newton"


def layer_parameters(model: nn.Module, example_input: Any = None) -> list[tuple[str, str | None]]:
    """The rescalable layers: ``(weight_name, bias_name or None)`` per Conv / Linear layer.

    In forward order when ``example_input`` is given (see
    :func:`renyilib.hessian.layer_blocks`), else in registration order.
    """
    blocks = layer_blocks(model, example_input)
    named = dict(model.named_parameters())
    layers = []
    for weight in blocks:
        if weight == "all":
            continue
        prefix = weight.rsplit(".", 1)[0] if "." in weight else ""
        bias = f"{prefix}.bias" if prefix else "bias"
        layers.append((weight, bias if bias in named and named[bias].requires_grad else None))
    return layers


def rescale_layers(
    model: nn.Module,
    scales: Sequence[float] | np.ndarray,
    layers: Sequence[tuple[str, str | None]] | None = None,
) -> nn.Module:
    """A copy of ``model`` with :math:`W_l \\to \\alpha_l W_l`, :math:`b_l \\to (\\prod_{j\\le l}\\alpha_j) b_l`.

    For a ReLU network and :math:`\\prod_l \\alpha_l = 1` the copy computes the
    same function.

    Args:
        model: The network (not modified).
        scales: :math:`\\alpha_l > 0`, one per layer.
        layers: As returned by :func:`layer_parameters` (default: registration order).

    Returns:
        The rescaled deep copy.
    """
    layers = layer_parameters(model) if layers is None else list(layers)
    a = _as_array(scales, "scales", len(layers))
    if np.any(a <= 0):
        raise ValueError(f"scales must all be > 0, got {a}")
    out = copy.deepcopy(model)
    named = dict(out.named_parameters())
    cumulative = 1.0
    with torch.no_grad():
        for (weight, bias), alpha in zip(layers, a):
            cumulative *= float(alpha)
            named[weight].mul_(float(alpha))
            if bias is not None:
                named[bias].mul_(cumulative)
    return out


def _first_inputs(data: Any) -> torch.Tensor:
    if isinstance(data, tuple | list) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        return data[0]
    for batch in data:
        return batch[0]
    raise ValueError("data: expected at least one (x, y) batch")


def _check_invariance(
    model: nn.Module, layers: list[tuple[str, str | None]], x: torch.Tensor, seed: int
) -> float:
    """Relative change of the outputs under a random layer-wise rescaling (product 1)."""
    gen = np.random.default_rng(seed)
    u = gen.normal(0.0, 0.5, len(layers))
    scales = np.exp(u - u.mean())
    other = rescale_layers(model, scales, layers)
    with torch.no_grad():
        a, b = model(x), other(x)
    return float((a - b).norm() / a.norm().clamp_min(torch.finfo(a.dtype).tiny))


def minimum_sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    *,
    layers: Sequence[tuple[str, str | None]] | None = None,
    diagonal: dict[str, torch.Tensor] | None = None,
    method: str = "auto",
    check_invariance: bool = True,
    seed: int = 0,
    progress: bool = False,
) -> MinimumSharpness:
    """Minimum sharpness of a feed-forward ReLU network (Ibayashi et al. 2021, Def. 1, Sec. 4).

    :math:`\\operatorname{MinS} = \\min_{\\prod\\alpha_l = 1} \\sum_l t_l/\\alpha_l^2
    + s_l/(\\prod_{j\\le l}\\alpha_j)^2` with :math:`t_l, s_l` the sums of the exact
    Hessian diagonal over layer :math:`l`'s weight and bias (module docstring).

    Args:
        model: The network in eval mode: Conv / Linear layers with positively
            homogeneous activations and pooling between them (no
            normalization, no skip connections); every trainable parameter
            must be one of the layers' weights and biases.
        loss_fn: ``loss_fn(outputs, targets) -> scalar mean loss`` (cross-entropy
            for the cheap exact diagonal).
        data: ``(x, y)`` or an iterable of batches.
        layers: ``(weight_name, bias_name or None)`` per layer in forward order
            (default: :func:`layer_parameters` in the forward order on the
            first batch).
        diagonal: A precomputed :func:`~renyilib.diagonal.hessian_diagonal`
            (skips computing it).
        method: Passed to :func:`~renyilib.diagonal.hessian_diagonal`.
        check_invariance: Check on the first batch that a random layer-wise
            rescaling (``seed``) preserves the outputs (to 1e-4 relative in
            float32, 1e-10 in float64); raise ``ValueError`` if not.
        seed: Seed of that check's random scales.
        progress: tqdm bar of the diagonal.

    Returns:
        A :class:`MinimumSharpness`.

    Raises:
        ValueError: model in train mode, parameters outside the layers, a
            model that layer-wise rescaling changes, a non-positive weight trace.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    training = [n or "<root>" for n, m in model.named_modules() if m.training]
    if training:
        raise ValueError(
            f"model is in train mode (e.g. modules {training[:3]}); call model.eval() first"
        )
    x = _first_inputs(data)
    if layers is None:
        layers = layer_parameters(model, x[:1])
    layers = [(str(w), None if b is None else str(b)) for w, b in layers]
    if not layers:
        raise ValueError("model: no Conv / Linear layers to rescale")
    named = dict(model.named_parameters())
    covered = {n for pair in layers for n in pair if n is not None}
    unknown = sorted(covered - set(named))
    if unknown:
        raise KeyError(f"layers: unknown parameter names {unknown}; valid names: {list(named)}")
    outside = [n for n, p in named.items() if p.requires_grad and n not in covered]
    if outside:
        raise ValueError(
            f"model: parameters {outside[:4]} are not layer weights or biases; layer-wise "
            "rescaling does not act on them (normalization layers?)"
        )
    if check_invariance:
        err = _check_invariance(model, layers, x[:64], seed)
        dtype = next(iter(named.values())).dtype
        tol = 1e-10 if dtype == torch.float64 else 1e-4
        if not err <= tol:
            raise ValueError(
                f"model: a layer-wise rescaling with product 1 changed the outputs by {err:.2e} "
                f"(relative, tolerance {tol:g}); minimum sharpness needs a network that it "
                "leaves invariant (ReLU / leaky ReLU, pooling; no normalization or skip connections)"
            )
    names = sorted(covered, key=list(named).index)
    diagonal_method = "given"
    if diagonal is None:
        reason = ggn_identity_violation(model, loss_fn, data, names) if method != "hvp" else "hvp"
        diagonal_method = "ggn" if reason is None else "hvp"
        diagonal = hessian_diagonal(model, loss_fn, data, names, method=method, progress=progress)
    missing = [n for n in names if n not in diagonal]
    if missing:
        raise KeyError(f"diagonal: missing entries for {missing}")
    t = np.array([float(diagonal[w].double().sum()) for w, _ in layers])
    s = np.array([0.0 if b is None else float(diagonal[b].double().sum()) for _, b in layers])
    value, scales, converged, iterations, solver = minimize_rescaled_trace(t, s)
    return MinimumSharpness(
        value=value,
        trace=float(t.sum() + s.sum()),
        scales=scales,
        layers=layers,
        weight_traces=t,
        bias_traces=s,
        converged=converged,
        iterations=iterations,
        solver=solver,
        diagonal_method=diagonal_method,
    )
