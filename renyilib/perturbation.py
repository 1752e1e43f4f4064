"""Adaptive worst-case and average-case m-sharpness (projected gradient ascent).

Worst-case adaptive m-sharpness (Andriushchenko et al. 2023, Eq. 1; the
replication's definition in Sec. II.A) is

.. math::

    S^{\\rho}_{\\max}(w, c) = \\mathbb{E}_{B \\sim P^m}
        \\max_{\\lVert \\delta \\odot c^{-1} \\rVert_p \\le \\rho}
        L_B(w + \\delta) - L_B(w),

with :math:`B` a batch of :math:`m` training samples drawn without
replacement, :math:`c = |w|` (adaptive) or :math:`c = 1` (the plain
"non-adaptive" sharpness) and :math:`p \\in \\{2, \\infty\\}`. With
:math:`c = |w|` the value is invariant under every positive rescaling
:math:`w \\mapsto w \\odot r` that leaves the network's function unchanged
(ReLU rescaling between layers, a convolution's scale before BatchNorm), the
property the measure is built for (replication, Sec. II.A).

:func:`adaptive_sharpness` estimates it by projected gradient ascent (PGA)
written in the scaled coordinate :math:`\\gamma = \\delta / c`, in which the
feasible set is the plain ball :math:`\\lVert\\gamma\\rVert_p \\le \\rho`:

* :math:`p = \\infty` (signed steps, the box):
  :math:`\\gamma \\leftarrow \\operatorname{clip}(\\gamma + \\eta\\,
  \\operatorname{sign}(\\nabla_\\delta L_B), -\\rho, \\rho)`, i.e.
  :math:`\\delta \\leftarrow \\operatorname{clip}(\\delta + \\eta |w| \\odot
  \\operatorname{sign}\\nabla, -\\rho|w|, \\rho|w|)`;
* :math:`p = 2` (normalized steps, the ellipsoid
  :math:`\\lVert\\delta / c\\rVert_2 \\le \\rho`):
  :math:`\\gamma \\leftarrow \\Pi_{\\lVert\\gamma\\rVert_2 \\le \\rho}
  (\\gamma + \\eta\\, g_\\gamma / \\lVert g_\\gamma \\rVert_2)` with
  :math:`g_\\gamma = c \\odot \\nabla_\\delta L_B` (the gradient in
  :math:`\\gamma`).

Both updates commute with the rescaling (under :math:`w \\mapsto w \\odot r`,
:math:`\\nabla_\\delta \\mapsto \\nabla_\\delta / r` and :math:`c \\mapsto c
\\odot r`, so :math:`\\gamma` and :math:`g_\\gamma` are unchanged), hence the
*estimate*, not only the quantity, is invariant. A raw gradient step with the
training learning rate (the replication's choice) is not: its length in
:math:`\\gamma` scales like :math:`1/r^2`.

**Step size.** :math:`\\eta` is the step length in the scaled coordinate, in
units of the radius: the default ``step_size=None`` is :math:`\\eta = \\rho`.
Then the first step goes from the centre to the maximizer of the loss's
linearization over the ball (a vertex of the box for :math:`p=\\infty`, the
boundary point along :math:`g_\\gamma` for :math:`p=2`), which is the exact
answer for a linear loss and for a loss that is a convex function of one
linear form (tested); later steps of the same length can move any coordinate
across half the box to correct the linearization. A step of order
:math:`\\rho` is the usual choice in the sharpness literature
(Andriushchenko et al. 2023); the training learning rate has no relation to
the ball's size (for the replication's LeNet, lr = 0.05 against ρ = 10⁻⁴
relative).

The ascent runs from :math:`\\gamma = 0` and keeps the largest
:math:`L_B(w + \\delta) - L_B(w)` over its iterates; the ball stays centred
at the original :math:`w` throughout. With ``include_start=True`` (default)
the centre counts as an iterate, so every per-batch value is :math:`\\ge 0`
exactly, as the true maximum is (:math:`\\delta = 0` is feasible); with
``include_start=False`` only the ``steps`` ascent iterates count and a batch
on which every step lowered the loss (the replication's "PGA will
occasionally fail and produce a better model", possible when :math:`\\rho`
is large for the curvature) gives a negative value. Every iterate is
feasible, so each per-batch value is a lower bound of the batch's maximum.

The model is evaluated with :func:`torch.func.functional_call` in ``eval()``
mode (dropout off, BatchNorm running statistics): no parameter or buffer is
ever written, and the caller's train/eval flags are restored.

:func:`average_sharpness` is the average-case counterpart
:math:`\\mathbb{E}_B \\mathbb{E}_{\\delta} L_B(w + \\delta) - L_B(w)` with
:math:`\\delta = \\rho\\, c \\odot z`, :math:`z \\sim \\mathcal N(0, I)` or
:math:`z \\sim U[-1, 1]^D` (Andriushchenko et al. 2023, Eq. 2).

Data is a pair ``(x, y)`` of tensors (``x`` may be a tuple of tensors sharing
their first dimension) or an iterable of such batches, concatenated; the
model is called as ``model(x)`` (``model(*x)`` for a tuple).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call
from tqdm.auto import tqdm

from renyilib.lanczos import Estimate

__all__ = [
    "adaptive_sharpness",
    "adaptive_sharpness_samples",
    "average_sharpness",
    "average_sharpness_samples",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------- checks and data


def _check_positive(name: str, value: Any, integer: bool = False) -> None:
    if isinstance(value, bool):
        ok = False
    elif integer:
        ok = isinstance(value, int) and value > 0
    else:
        ok = isinstance(value, int | float) and math.isfinite(value) and value > 0
    if not ok:
        kind = "a positive int" if integer else "a positive finite number"
        raise ValueError(f"{name} must be {kind}, got {value!r}")


def _check_common(model: Any, loss_fn: Any, rho: Any, batch_size: Any, restarts: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError("loss_fn must be callable: loss_fn(outputs, targets) -> scalar mean loss")
    _check_positive("rho", rho)
    _check_positive("batch_size", batch_size, integer=True)
    _check_positive("restarts", restarts, integer=True)


def _concat(parts: list[Any]) -> Any:
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(parts)
    return tuple(torch.cat([p[i] for p in parts]) for i in range(len(parts[0])))


def _valid_input(x: Any) -> bool:
    if isinstance(x, torch.Tensor):
        return x.dim() > 0
    return (
        isinstance(x, tuple | list)
        and len(x) > 0
        and all(isinstance(t, torch.Tensor) and t.dim() > 0 for t in x)
        and len({t.shape[0] for t in x}) == 1
    )


def _num(x: Any) -> int:
    return int(x.shape[0]) if isinstance(x, torch.Tensor) else int(x[0].shape[0])


def _materialize(data: Any) -> tuple[Any, torch.Tensor]:
    """All samples of ``data`` as one ``(x, y)`` pair (``x`` a tensor or a tuple of tensors)."""
    if isinstance(data, tuple | list) and len(data) == 2 and isinstance(data[1], torch.Tensor):
        if _valid_input(data[0]) and _num(data[0]) == data[1].shape[0]:
            batches = [tuple(data)]
        else:
            batches = list(data)
    elif isinstance(data, torch.Tensor):
        raise TypeError(
            "data must be a pair (x, y) of tensors or an iterable of (x, y) batches, got a tensor"
        )
    else:
        try:
            batches = list(data)
        except TypeError as err:
            raise TypeError(
                "data must be a pair (x, y) of tensors or an iterable of (x, y) batches, "
                f"got {type(data).__name__}"
            ) from err
    xs, ys = [], []
    for b in batches:
        if not (isinstance(b, tuple | list) and len(b) >= 2):
            raise TypeError(
                f"data must yield (x, y) batches, got an element of type {type(b).__name__}"
            )
        x, y = b[0], b[1]
        if not (_valid_input(x) and isinstance(y, torch.Tensor) and _num(x) == y.shape[0]):
            raise TypeError(
                "data: each batch must be (x, y) with x a tensor (or a tuple of tensors) and y a "
                "tensor sharing the first dimension"
            )
        xs.append(tuple(x) if isinstance(x, tuple | list) else x)
        ys.append(y)
    if not ys or sum(y.shape[0] for y in ys) == 0:
        raise ValueError("data: expected at least one sample")
    return _concat(xs), torch.cat(ys)


def _index(x: Any, idx: torch.Tensor, device: torch.device) -> Any:
    if isinstance(x, torch.Tensor):
        return x[idx].to(device)
    return tuple(t[idx].to(device) for t in x)


def _select(model: nn.Module, params: Sequence[str] | None) -> list[str]:
    named = dict(model.named_parameters())
    if params is None:
        names = [k for k, p in named.items() if p.requires_grad]
    else:
        if isinstance(params, str):
            raise TypeError("params must be a sequence of parameter names, not a string")
        unknown = [k for k in params if k not in named]
        if unknown:
            raise KeyError(f"params: unknown parameter names {unknown}; valid: {list(named)}")
        names = list(params)
    if not names:
        raise ValueError("params: no parameters selected")
    return names


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for m, was in modes.items():
            m.train(was)


class _Objective:
    """``L_B(w + c ⊙ γ)`` and its gradient in γ, by ``functional_call`` (nothing is written)."""

    def __init__(self, model: nn.Module, loss_fn: LossFn, names: list[str], adaptive: bool) -> None:
        named = dict(model.named_parameters())
        self.model = model
        self.loss_fn = loss_fn
        self.names = names
        self.w = {k: named[k].detach() for k in names}
        self.c = {k: (v.abs() if adaptive else torch.ones_like(v)) for k, v in self.w.items()}
        self.device = next(iter(self.w.values())).device

    def zeros(self) -> dict[str, torch.Tensor]:
        return {k: torch.zeros_like(v) for k, v in self.w.items()}

    def _call(self, gamma: dict[str, torch.Tensor], x: Any, y: torch.Tensor) -> torch.Tensor:
        p = {k: self.w[k] + self.c[k] * gamma[k] for k in self.names}
        args = x if isinstance(x, tuple) else (x,)
        return self.loss_fn(functional_call(self.model, p, args), y)

    def loss(self, gamma: dict[str, torch.Tensor], x: Any, y: torch.Tensor) -> float:
        with torch.no_grad():
            return float(self._call(gamma, x, y))

    def loss_and_grad(
        self, gamma: dict[str, torch.Tensor], x: Any, y: torch.Tensor
    ) -> tuple[float, dict[str, torch.Tensor]]:
        """Loss and ∇_δ L_B at δ = c ⊙ γ (the gradient in δ, not in γ)."""
        with torch.enable_grad():
            delta = {k: (self.c[k] * gamma[k]).requires_grad_(True) for k in self.names}
            p = {k: self.w[k] + delta[k] for k in self.names}
            args = x if isinstance(x, tuple) else (x,)
            loss = self.loss_fn(functional_call(self.model, p, args), y)
            grads = torch.autograd.grad(loss, [delta[k] for k in self.names], allow_unused=True)
        out = {
            k: torch.zeros_like(self.w[k]) if g is None else g for k, g in zip(self.names, grads)
        }
        return float(loss.detach()), out


def _norm(t: dict[str, torch.Tensor]) -> float:
    return math.sqrt(sum(float(v.double().pow(2).sum()) for v in t.values()))


def _ascent_step(
    obj: _Objective,
    gamma: dict[str, torch.Tensor],
    grad: dict[str, torch.Tensor],
    p: float,
    rho: float,
    eta: float,
) -> dict[str, torch.Tensor] | None:
    """One geometry-respecting PGA step in γ; ``None`` when the gradient in γ vanishes."""
    if p == math.inf:
        s = {k: torch.sign(grad[k]) * (obj.c[k] != 0) for k in obj.names}
        if all(not bool(v.any()) for v in s.values()):
            return None
        return {k: (gamma[k] + eta * s[k]).clamp(-rho, rho) for k in obj.names}
    g = {k: obj.c[k] * grad[k] for k in obj.names}
    gn = _norm(g)
    if gn == 0.0:
        return None
    new = {k: gamma[k] + (eta / gn) * g[k] for k in obj.names}
    nn_ = _norm(new)
    if nn_ > rho:
        new = {k: v * (rho / nn_) for k, v in new.items()}
    return new


# --------------------------------------------------------------------------- worst case


def adaptive_sharpness_samples(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    rho: float,
    *,
    p: float = math.inf,
    batch_size: int = 64,
    steps: int = 5,
    restarts: int = 50,
    step_size: float | None = None,
    adaptive: bool = True,
    params: Sequence[str] | None = None,
    include_start: bool = True,
    seed: int = 0,
    progress: bool = False,
) -> np.ndarray:
    """Per-restart values of worst-case (adaptive) m-sharpness; see :func:`adaptive_sharpness`.

    Returns:
        float64 array of shape ``(restarts,)``: for restart ``r``, the largest
        :math:`L_{B_r}(w + \\delta_k) - L_{B_r}(w)` over the ascent's iterates.
    """
    _check_common(model, loss_fn, rho, batch_size, restarts)
    if p not in (2, math.inf) or isinstance(p, bool):
        raise ValueError(f"p must be 2 or float('inf'), got {p!r}")
    _check_positive("steps", steps, integer=True)
    if step_size is not None:
        _check_positive("step_size", step_size)
    eta = float(rho if step_size is None else step_size)
    rho = float(rho)
    x_all, y_all = _materialize(data)
    names = _select(model, params)
    n = y_all.shape[0]
    m = min(batch_size, n)
    gen = torch.Generator().manual_seed(int(seed))
    values = np.empty(restarts)
    with _eval_mode(model):
        obj = _Objective(model, loss_fn, names, adaptive)
        for r in tqdm(range(restarts), disable=not progress, desc="adaptive sharpness"):
            idx = torch.randperm(n, generator=gen)[:m]
            xb, yb = _index(x_all, idx, obj.device), y_all[idx].to(obj.device)
            gamma = obj.zeros()
            base, grad = obj.loss_and_grad(gamma, xb, yb)
            best = 0.0 if include_start else -math.inf
            for k in range(steps):
                new = _ascent_step(obj, gamma, grad, float(p), rho, eta)
                if new is None:  # zero gradient in γ: the ascent stays where it is
                    best = max(best, 0.0) if k == 0 else best
                    break
                gamma = new
                if k == steps - 1:
                    loss = obj.loss(gamma, xb, yb)
                else:
                    loss, grad = obj.loss_and_grad(gamma, xb, yb)
                best = max(best, loss - base)
            values[r] = best
    return values


def _estimate(values: np.ndarray) -> Estimate:
    se = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0
    return Estimate(float(values.mean()), se)


def adaptive_sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    rho: float,
    *,
    p: float = math.inf,
    batch_size: int = 64,
    steps: int = 5,
    restarts: int = 50,
    step_size: float | None = None,
    adaptive: bool = True,
    params: Sequence[str] | None = None,
    include_start: bool = True,
    seed: int = 0,
    progress: bool = False,
) -> Estimate:
    """Adaptive worst-case m-sharpness by projected gradient ascent (replication, Sec. II).

    .. math::

        S^{\\rho}_{\\max}(w, c) = \\mathbb{E}_{B}
            \\max_{\\lVert \\delta \\odot c^{-1} \\rVert_p \\le \\rho}
            L_B(w + \\delta) - L_B(w), \\qquad c = |w| \\text{ (or } 1\\text{)},

    estimated as the mean over ``restarts`` fresh batches of ``batch_size``
    training samples (drawn without replacement within a batch; all samples
    when there are fewer) of the largest increase over ``steps`` PGA
    iterates, with the geometry-respecting steps and the step size
    :math:`\\eta` described in the module docstring (default
    :math:`\\eta = \\rho`, in units of :math:`c`).

    Args:
        model: The network; evaluated in eval mode through
            ``torch.func.functional_call`` (its parameters and buffers are never
            written; its train/eval flags are restored).
        loss_fn: ``loss_fn(outputs, targets) -> scalar mean loss``.
        data: ``(x, y)`` or an iterable of ``(x, y)`` batches of training samples.
        rho: Radius ρ > 0 of the ball, relative to :math:`|w|` when ``adaptive``.
        p: 2 or ``float("inf")`` (the replication and Andriushchenko et al.: ∞).
        batch_size: m of m-sharpness (the replication: 64).
        steps: PGA steps per batch (the replication: 5).
        restarts: Batches, each with its own ascent (the replication: 50).
        step_size: η in units of ρ's scale (``None``: η = ρ).
        adaptive: ``True``: c = |w| (adaptive); ``False``: c = 1 (plain m-sharpness).
        params: Names of the perturbed parameters (``None``: all requiring a gradient).
        include_start: Count the centre (value 0) as an iterate, so that S ≥ 0.
        seed: Seed of the batches (a CPU ``torch.Generator``).
        progress: tqdm over restarts.

    Returns:
        :class:`~renyilib.lanczos.Estimate` ``(value, stderr)``: the mean over
        restarts and its standard error (sample standard deviation / √restarts;
        0 for one restart).

    Raises:
        ValueError: ρ, batch_size, steps, restarts or step_size not positive;
            p not in {2, ∞}; empty data.
        TypeError: model not a module, loss_fn not callable, malformed data.
        KeyError: unknown parameter names.
    """
    return _estimate(
        adaptive_sharpness_samples(
            model,
            loss_fn,
            data,
            rho,
            p=p,
            batch_size=batch_size,
            steps=steps,
            restarts=restarts,
            step_size=step_size,
            adaptive=adaptive,
            params=params,
            include_start=include_start,
            seed=seed,
            progress=progress,
        )
    )


# --------------------------------------------------------------------------- average case


def average_sharpness_samples(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    rho: float,
    *,
    noise: str = "gaussian",
    batch_size: int = 64,
    restarts: int = 50,
    draws: int = 1,
    adaptive: bool = True,
    params: Sequence[str] | None = None,
    seed: int = 0,
    progress: bool = False,
) -> np.ndarray:
    """Per-restart values of average-case (adaptive) m-sharpness; see :func:`average_sharpness`."""
    _check_common(model, loss_fn, rho, batch_size, restarts)
    _check_positive("draws", draws, integer=True)
    if noise not in ("gaussian", "uniform"):
        raise ValueError(f"noise must be 'gaussian' or 'uniform', got {noise!r}")
    x_all, y_all = _materialize(data)
    names = _select(model, params)
    n = y_all.shape[0]
    m = min(batch_size, n)
    gen = torch.Generator().manual_seed(int(seed))
    values = np.empty(restarts)
    with _eval_mode(model):
        obj = _Objective(model, loss_fn, names, adaptive)
        for r in tqdm(range(restarts), disable=not progress, desc="average sharpness"):
            idx = torch.randperm(n, generator=gen)[:m]
            xb, yb = _index(x_all, idx, obj.device), y_all[idx].to(obj.device)
            base = obj.loss(obj.zeros(), xb, yb)
            total = 0.0
            for _ in range(draws):
                z = {}
                for k, w in obj.w.items():
                    if noise == "gaussian":
                        e = torch.randn(w.shape, generator=gen, dtype=torch.float64)
                    else:
                        e = torch.rand(w.shape, generator=gen, dtype=torch.float64) * 2 - 1
                    z[k] = (float(rho) * e).to(w)
                total += obj.loss(z, xb, yb) - base
            values[r] = total / draws
    return values


def average_sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    rho: float,
    *,
    noise: str = "gaussian",
    batch_size: int = 64,
    restarts: int = 50,
    draws: int = 1,
    adaptive: bool = True,
    params: Sequence[str] | None = None,
    seed: int = 0,
    progress: bool = False,
) -> Estimate:
    """Average-case (adaptive) m-sharpness (Andriushchenko et al. 2023, Eq. 2).

    .. math::

        S^{\\rho}_{avg}(w, c) = \\mathbb{E}_{B}\\, \\mathbb{E}_{z}
            L_B(w + \\rho\\, c \\odot z) - L_B(w),

    with :math:`z \\sim \\mathcal N(0, I)` (``noise="gaussian"``) or
    :math:`z \\sim U[-1, 1]^D` (``"uniform"``: uniform on the box
    :math:`\\lVert\\delta / c\\rVert_\\infty \\le \\rho`) and c = |w| (or 1).
    Invariant under the same rescalings as :func:`adaptive_sharpness` (for a
    given seed, the noise :math:`z` is the same draw). Each restart draws a
    fresh batch and ``draws`` noise vectors; the value per restart is their
    mean.

    Args:
        model, loss_fn, data, batch_size, restarts, adaptive, params, seed,
            progress: As in :func:`adaptive_sharpness`.
        rho: Noise scale ρ > 0 (a standard deviation for Gaussian noise, a
            half-width for uniform noise), relative to :math:`|w|` when adaptive.
        noise: ``"gaussian"`` or ``"uniform"``.
        draws: Noise draws per batch.

    Returns:
        :class:`~renyilib.lanczos.Estimate` (mean over restarts, standard error).
    """
    return _estimate(
        average_sharpness_samples(
            model,
            loss_fn,
            data,
            rho,
            noise=noise,
            batch_size=batch_size,
            restarts=restarts,
            draws=draws,
            adaptive=adaptive,
            params=params,
            seed=seed,
            progress=progress,
        )
    )
