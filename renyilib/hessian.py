"""Hessian(-vector) operators of the mean loss for parameter blocks.

The measured object of the paper is the Hessian of the training loss,

.. math::

    L(\\theta) = \\frac{1}{N} \\sum_{i=1}^{N} \\ell(f_\\theta(x_i), y_i),
    \\qquad H = \\nabla^2_{\\theta_B} L(\\theta),

restricted to a parameter *block* :math:`\\theta_B` (one layer's weight tensor,
or all parameters; Sec. 4.2 and Sec. 5 of the paper use both "layer-wise and
global Rényi sharpness"). Parameters outside the block are constants.

:func:`hessian_operator` returns a :class:`HessianOperator`, a symmetric linear
operator that never forms :math:`H` (``op @ v`` computes :math:`Hv` by automatic
differentiation), with ``to_dense()`` for small blocks and ``to_scipy()`` for
``scipy.sparse.linalg``.

Evaluation semantics are explicit: the model must be in ``eval()`` mode
(BatchNorm uses its running statistics, dropout is off) unless
``allow_train_mode=True``. The model's parameters and buffers are never
modified.

Three ways to compute Hessian-vector products (``method=``), and ``"auto"``:

``"graph"``
    Double backward through a *reused* graph: per batch, the gradient
    :math:`g_b = \\nabla L_b` is computed once with ``create_graph=True`` and
    kept; every product is then one backward pass
    ``autograd.grad(g_b, θ_B, v, retain_graph=True)``. The kept graphs cost
    memory (about a training step's activations per batch), so only the first
    ``cache_samples`` samples' graphs are kept; batches beyond that budget are
    recomputed (forward + backward + double backward) at every product.
``"linearize"``
    ``torch.func.linearize`` of the gradient map
    :math:`\\theta_B \\mapsto \\nabla L_b(\\theta_B)`, once per batch: the
    forward-mode derivative of the gradient is traced into an FX graph whose
    tangent-free parts (activations, the backward pass's primal values) are
    folded into constants, so a product only pushes tangents through that
    graph; the columns of an ``(n, k)`` input are ``torch.func.vmap``-ed, 32 at
    a time. The linearized maps are kept within the same ``cache_samples``
    budget (on the reference workload they hold about 5 forward passes' layer
    outputs for "all", 9.5 MB for 512 digits); batches beyond it use the
    ``"jvp"`` product, because linearizing again would cost 60-100 gradients per
    product. Eval mode only. The tracing is renyilib's own
    (``_linearized_map``): ``torch.func.linearize`` of torch 2.14 writes into
    its folded constants when an in-place op (``x += pos_embedding`` in
    vit-pytorch's ViT) acts on one, so its products drift from the second
    call on (33-60% relative error on a ViT); ours makes such ops
    out-of-place before folding. Each linearized map is still checked against
    the ``"jvp"`` product on a seeded probe, twice; a batch failing the check
    is computed with ``"jvp"`` (``"auto"`` keeps its graph) and a
    ``RuntimeWarning`` says so.
``"jvp"``
    Forward-over-reverse, ``torch.func.jvp`` of ``torch.func.grad``, vmapped
    over the columns of an ``(n, k)`` input. Needs no cached graph (constant
    memory); model must be in eval mode.
``"auto"`` (default)
    ``"graph"`` first (cheap to build: about one gradient per batch), switched
    to ``"linearize"`` at the first multi-column product that brings the
    operator's count of products to 100 (SLQ with many probes, dense Hessians,
    Hutchinson traces), or before its first product when the caller announces
    that many (:meth:`HessianOperator.plan`; ``slq`` and ``to_dense`` do);
    single-vector products (power iteration, one Lanczos
    run) never switch. Linearizing costs 60-100 gradients once and saves
    0.3-1.1 gradients per column of an ``(n, k)`` product, so it pays after
    70-140 columns. It stays on ``"graph"`` where that gain was not measured
    or does not hold: a model in train mode (``allow_train_mode=True``),
    columns that are not vmapped (large blocks or inputs, see ``batched``:
    a single linearized product is not faster than the graph's), and devices
    other than the CPU (a linearized map keeps several forward passes'
    activations, a graph about one: on a GPU memory is the scarcer resource,
    and nothing here measured the speed there).

Measured with ``benchmarks/bench_hvp.py`` (reference workload: digits CNN
with 2,154 parameters, 512 digits, float32; one thread, process CPU time,
best of 10 interleaved rounds; 2026-11-23, the other core busy with a report
build, so about ±10%), time per product in units of one plain gradient of
the same block, for the blocks features.0 / features.2 / features.4 / fc /
all (36, 288, 1,152, 640, 2,154 parameters):

==========================================  =====  =====  =====  =====  =====
method                                      f.0    f.2    f.4    fc     all
==========================================  =====  =====  =====  =====  =====
``"graph"``, ``op @ v``                     1.32   1.75   1.11   0.24   1.92
``"graph"``, ``op @ V`` (k = 10)            1.26   1.62   0.94   0.08   1.88
``"linearize"``, ``op @ v``                 1.14   1.06   0.74   0.32   1.80
``"linearize"``, ``op @ V`` (k = 10)        0.84   0.64   0.30   0.09   1.10
``"jvp"``, ``op @ V`` (k = 10)              1.10   0.91   0.57   0.31   1.31
default ``"auto"``, switched, k = 10        0.83   0.69   0.28   0.08   1.12
linearize set-up with guard (one-off)       88     102    96     79     59
PyHessian ``hessian_vector_product``        1.35   1.83   1.09   0.18   1.94
==========================================  =====  =====  =====  =====  =====

(set-up: ``benchmarks/bench_profile.py``, idle machine.) In a run on a busy
machine the graph product on "all" was 2.27× and the switched default's
1.26×. A single-vector product is not reliably faster with ``"linearize"``
than with the graph on "all" (1.75-2.48× over five runs); the vmapped
(n, k) one is, by 30-45%.

All methods give the same numbers up to rounding (tested against
``torch.func.hessian`` in float64 to 1e-10).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

__all__ = ["HessianOperator", "hessian_operator", "layer_blocks"]

_LAYER_TYPES = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)

#: Up to this block size, ``(n, k)`` products use one vmapped backward
#: (``is_grads_batched``): per-call overhead dominates small blocks (measured
#: 1.6 vs 5.8 ms per column on a 95-parameter CNN), while for larger blocks a
#: loop of single backward passes was as fast or faster (70-78 vs 88-108 ms per
#: column on a 9.8k-parameter CNN, 512 digits, one CPU thread).
_BATCHED_MAX_DIM = 4096
#: ... and only when a batch's inputs hold at most this many scalars: on larger
#: inputs the vmapped double backward of convolutions is compute-bound and
#: slower than a loop (measured: 2.2 vs 1.2-1.4 s per column for the first
#: conv of a width-1/8 CIFAR ResNet-18 on 256 images of 3×32×32; 0.57 vs
#: 0.58 s for a middle conv). A fixed rule, not a timing, so that the same
#: seed gives bit-identical products on a CPU.
_BATCHED_MAX_INPUT = 2**18
#: Columns per vmapped backward (memory grows with it like a batch of that many products).
_BATCHED_CHUNK = 32
#: ``method="auto"`` switches from "graph" to "linearize" at the first multi-column
#: product that brings the operator's products past this count. Linearizing costs
#: 60-100 gradients once and then saves 0.3-1.1 gradients per column of an (n, k)
#: product: break-even at 70-140 columns on the reference workload (bench_hvp.py).
_AUTO_SWITCH_PRODUCTS = 100
#: Largest relative difference between a linearized and a forward-over-reverse
#: product on the guard's probe (both round differently: about sqrt(eps) leaves
#: room for ill-conditioned sums while a wrong trace is off by O(1)).
_LINEARIZE_RTOL = {
    torch.float64: 1e-7,
    torch.float32: 1e-3,
    torch.float16: 3e-2,
    torch.bfloat16: 3e-2,
}

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def layer_blocks(model: nn.Module, example_input: Any = None) -> dict[str, list[str]]:
    """The paper's "layers": the weight tensor of every Conv / Linear layer, then ``"all"``.

    Each layer block is named by its parameter name (e.g. ``"features.0.weight"``)
    and holds that one weight tensor. Biases, normalization and other parameters
    belong to ``"all"`` only. ``"all"`` holds every parameter that requires a
    gradient, in ``model.named_parameters()`` order.

    Order: module registration order, or, if ``example_input`` is given, the
    order in which the layers run in a forward pass of the model on it
    (recorded with forward hooks under ``torch.no_grad()`` in eval mode; the
    model's mode is restored afterwards). Layers never run by that pass come
    last in registration order. A module used twice appears once.

    Args:
        model: The network.
        example_input: Optional input batch (tensor, or a tuple of positional
            arguments) for the forward-order pass.

    Returns:
        Ordered ``dict[block_name, list[param_name]]``: layer blocks first, then ``"all"``.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
        >>> list(layer_blocks(net))
        ['0.weight', '2.weight', 'all']
        >>> layer_blocks(net)["all"]
        ['0.weight', '0.bias', '2.weight', '2.bias']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    param_ids = {id(p): name for name, p in model.named_parameters() if p.requires_grad}
    layers: list[tuple[nn.Module, str]] = []
    seen: set[int] = set()
    for _mod_name, module in model.named_modules():
        if isinstance(module, _LAYER_TYPES) and id(module) not in seen:
            weight = getattr(module, "weight", None)
            if isinstance(weight, nn.Parameter) and id(weight) in param_ids:
                seen.add(id(module))
                layers.append((module, param_ids[id(weight)]))
    if example_input is not None:
        order: list[int] = []
        handles = [
            m.register_forward_hook(lambda mod, _i, _o: order.append(id(mod))) for m, _ in layers
        ]
        was_training = {id(m): m.training for m in model.modules()}
        try:
            model.eval()
            args = example_input if isinstance(example_input, tuple) else (example_input,)
            with torch.no_grad():
                model(*args)
        finally:
            for h in handles:
                h.remove()
            for m in model.modules():
                m.train(was_training[id(m)])
        first: dict[int, int] = {}
        for i, mid in enumerate(order):
            first.setdefault(mid, i)
        registration = {id(m): i for i, (m, _) in enumerate(layers)}
        layers.sort(key=lambda ml: first.get(id(ml[0]), len(order) + registration[id(ml[0])]))
    blocks = {name: [name] for _, name in layers}
    blocks["all"] = [name for name, p in model.named_parameters() if p.requires_grad]
    return blocks


def _as_batches(data: Any) -> list[tuple[Any, Any]]:
    """Materialize ``data`` (a pair or an iterable of pairs) as a list of (x, y) batches."""
    if isinstance(data, tuple | list) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        x, y = data
        if isinstance(y, torch.Tensor) and x.shape[:1] == y.shape[:1]:
            return [(x, y)]
    if isinstance(data, torch.Tensor):
        raise TypeError(
            "data must be a pair (x, y) of tensors or an iterable of (x, y) batches, got a tensor"
        )
    try:
        batches = []
        for batch in data:
            if not isinstance(batch, tuple | list) or len(batch) < 2:
                raise TypeError(
                    f"data must yield (x, y) batches; got an element of type {type(batch).__name__}"
                )
            batches.append((batch[0], batch[1]))
    except TypeError as err:
        if "data must" in str(err):
            raise
        raise TypeError(
            f"data must be a pair (x, y) of tensors or an iterable of (x, y) batches, got {type(data).__name__}"
        ) from err
    return batches


def _batch_size(x: Any) -> int:
    if isinstance(x, torch.Tensor):
        return int(x.shape[0]) if x.dim() > 0 else 1
    if isinstance(x, tuple | list) and x:
        return _batch_size(x[0])
    raise TypeError(f"cannot infer the batch size of inputs of type {type(x).__name__}")


def _numel(x: Any) -> int:
    if isinstance(x, torch.Tensor):
        return x.numel()
    if isinstance(x, tuple | list):
        return sum(_numel(e) for e in x)
    return 0


def _to(x: Any, device: torch.device) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, tuple | list):
        return type(x)(_to(e, device) for e in x)
    return x


class HessianOperator:
    """Symmetric linear operator ``v ↦ H v`` of the mean-loss Hessian of one parameter block.

    Build it with :func:`hessian_operator`. Supports ``op @ v`` for tensors of
    shape ``(n,)`` or ``(n, k)`` (cast to the block's dtype and device; the result
    has that dtype), ``to_dense()``, ``to_scipy()`` and ``gradient()``.

    Attributes:
        shape: ``(n, n)`` with ``n`` the number of scalars in the block.
        dtype: dtype of the block's parameters (the products' dtype).
        device: device of the block's parameters.
        param_names: names of the block's parameters, in flattening order.
        num_samples: number of samples ``N`` in the data.
        num_matvecs: number of Hessian-vector products computed so far (a column
            of an ``(n, k)`` product counts as one).
        method: the method in use: ``"graph"``, ``"linearize"`` or ``"jvp"``
            (``method="auto"`` starts as ``"graph"`` and may switch to
            ``"linearize"``, see the module docstring).
        cached_samples: samples whose graph / linearized map is kept.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        batches: list[tuple[Any, Any]],
        param_names: list[str],
        *,
        method: str,
        cache_samples: int | None,
        allow_train_mode: bool,
        batched: bool | None = None,
    ) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.param_names = list(param_names)
        # "auto": start with the graph (cheap to build) and switch to "linearize"
        # once the products' number makes its one-off cost pay (see matmat).
        self._auto = method == "auto"
        method = "graph" if self._auto else method
        self.method = method
        named = dict(model.named_parameters())
        block = [named[name] for name in self.param_names]
        self.device = block[0].device
        self.dtype = block[0].dtype
        for name, p in zip(self.param_names, block):
            if p.dtype != self.dtype or p.device != self.device:
                raise ValueError(
                    f"params: all block parameters must share dtype and device; {name!r} is "
                    f"{p.dtype} on {p.device}, expected {self.dtype} on {self.device}"
                )
        self._shapes = [p.shape for p in block]
        self._numels = [p.numel() for p in block]
        n = sum(self._numels)
        self.shape = (n, n)
        self._block_values = [p.detach() for p in block]
        consts: dict[str, torch.Tensor] = {
            k: v.detach() for k, v in model.named_parameters() if k not in set(self.param_names)
        }
        # Buffers: copies in train mode (BatchNorm would update running stats in place).
        for k, b in model.named_buffers():
            consts[k] = b.detach().clone() if allow_train_mode else b
        self._consts = consts
        self._batches = batches
        self._sizes = [_batch_size(x) for x, _ in batches]
        self.num_samples = sum(self._sizes)
        if self.num_samples == 0:
            raise ValueError("data: expected at least one sample, got empty batches")
        self.num_matvecs = 0
        if batched is None:
            inputs = max(_numel(x) for x, _ in batches)
            batched = n <= _BATCHED_MAX_DIM and inputs <= _BATCHED_MAX_INPUT
        self._batched_ok = bool(batched)
        budget = math.inf if cache_samples is None else cache_samples
        # Per batch: (leaves, flat gradient with graph) if cached, else None.
        self._graphs: list[tuple[list[torch.Tensor], torch.Tensor] | None] = []
        # Per batch (method "linearize"): the linearized gradient map if cached, else None.
        self._lins: list[Callable[..., Any] | None] = []
        grad = torch.zeros(n, dtype=self.dtype, device=self.device)
        cached = 0
        for b in range(len(batches)):
            weight = self._sizes[b] / self.num_samples
            fits = cached + self._sizes[b] <= budget
            if method == "linearize" and fits:
                g, lin = self._linearize(b)
                self._graphs.append(None)
                self._lins.append(lin)
                cached += self._sizes[b] if lin is not None else 0
                grad += weight * g
            elif method == "graph" and fits:
                leaves, g = self._batch_gradient(b, create_graph=True)
                self._graphs.append((leaves, g))
                self._lins.append(None)
                cached += self._sizes[b]
                grad += weight * g.detach()
            else:
                self._lins.append(None)
                self._graphs.append(None)
                _, g = self._batch_gradient(b, create_graph=False)
                grad += weight * g
        self._grad = grad
        self.cached_samples = cached

    # ------------------------------------------------------------------ internals
    def _loss(self, b: int, params: dict[str, torch.Tensor]) -> torch.Tensor:
        x, y = self._batches[b]
        x, y = _to(x, self.device), _to(y, self.device)
        args = x if isinstance(x, tuple) else (x,)
        out = functional_call(self.model, {**self._consts, **params}, args)
        loss = self.loss_fn(out, y)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError("loss_fn: expected a scalar (mean) loss tensor")
        return loss.reshape(())

    def _check_finite(self, loss: torch.Tensor, b: int) -> None:
        if not bool(torch.isfinite(loss.detach())):
            raise ValueError(f"loss_fn: non-finite loss {loss.item()} on batch {b}")

    def _batch_gradient(
        self, b: int, create_graph: bool
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        with torch.enable_grad():
            leaves = [v.clone().requires_grad_(True) for v in self._block_values]
            loss = self._loss(b, dict(zip(self.param_names, leaves)))
            self._check_finite(loss, b)
            if loss.requires_grad:
                grads = torch.autograd.grad(
                    loss, leaves, create_graph=create_graph, allow_unused=True
                )
            else:  # the loss does not depend on the block (e.g. an unused layer)
                grads = (None,) * len(leaves)
            flat = torch.cat(
                [
                    (g if g is not None else torch.zeros_like(leaf)).reshape(-1)
                    for g, leaf in zip(grads, leaves)
                ]
            )
            if create_graph and not flat.requires_grad:
                # Loss is linear (or constant) in the block: zero Hessian; keep a graph anyway.
                flat = flat + 0 * sum(leaf.sum() for leaf in leaves)
        return leaves, (flat if create_graph else flat.detach())

    def _unflatten(self, v: torch.Tensor) -> list[torch.Tensor]:
        return [c.reshape(s) for c, s in zip(torch.split(v, self._numels), self._shapes)]

    def _hvp_graph(
        self, leaves: list[torch.Tensor], g: torch.Tensor, v: torch.Tensor
    ) -> torch.Tensor:
        """``H_b v`` for v of shape (n,) by one backward pass through the kept graph."""
        with torch.enable_grad():
            hv = torch.autograd.grad(g, leaves, v, retain_graph=True, allow_unused=True)
        return torch.cat(
            [
                (h if h is not None else torch.zeros_like(leaf)).reshape(-1)
                for h, leaf in zip(hv, leaves)
            ]
        )

    def _hvp_batch_graph(self, b: int, V: torch.Tensor) -> torch.Tensor:
        graph = self._graphs[b]
        if graph is None:
            graph = self._batch_gradient(b, create_graph=True)
        leaves, g = graph
        if V.shape[1] > 1 and self._batched_ok:
            # Vmapped backward over the columns (is_grads_batched), in chunks of
            # _BATCHED_CHUNK columns to bound memory; falls back to a loop for
            # models with operations vmap does not support.
            try:
                return torch.cat(
                    [
                        self._hvp_vmapped(leaves, g, V[:, i : i + _BATCHED_CHUNK])
                        for i in range(0, V.shape[1], _BATCHED_CHUNK)
                    ],
                    dim=1,
                )
            except RuntimeError:
                self._batched_ok = False
        cols = [self._hvp_graph(leaves, g, V[:, j]) for j in range(V.shape[1])]
        return torch.stack(cols, dim=1)

    @staticmethod
    def _hvp_vmapped(leaves: list[torch.Tensor], g: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        k = V.shape[1]
        with torch.enable_grad():
            hv = torch.autograd.grad(
                g, leaves, V.T, retain_graph=True, allow_unused=True, is_grads_batched=True
            )
        parts = [
            (h if h is not None else V.new_zeros(k, *leaf.shape)).reshape(k, -1)
            for h, leaf in zip(hv, leaves)
        ]
        return torch.cat(parts, dim=1).T

    def _hvp_batch_jvp(self, b: int, V: torch.Tensor) -> torch.Tensor:
        def flat_grad(theta: torch.Tensor) -> torch.Tensor:
            params = dict(zip(self.param_names, self._unflatten(theta)))
            return torch.func.grad(lambda p: self._loss(b, p))(params)

        theta0 = torch.cat([v.reshape(-1) for v in self._block_values])

        def grad_flat(theta: torch.Tensor) -> torch.Tensor:
            gd = flat_grad(theta)
            return torch.cat([gd[name].reshape(-1) for name in self.param_names])

        def hvp(v: torch.Tensor) -> torch.Tensor:
            return torch.func.jvp(grad_flat, (theta0,), (v,))[1]

        if V.shape[1] == 1:
            return hvp(V[:, 0]).unsqueeze(1)
        return torch.func.vmap(hvp, in_dims=1, out_dims=1)(V)

    def _linearize(self, b: int) -> tuple[torch.Tensor, Callable[..., Any] | None]:
        """Flat gradient of batch ``b`` and its linearization ``(t_1, ..., t_P) ↦ H_b t``.

        ``torch.func.linearize`` evaluates the gradient map
        :math:`\\theta_B \\mapsto \\nabla L_b(\\theta_B)` once with forward-mode
        tangents, traces it into an FX graph and folds every tangent-free
        subexpression (forward activations, the backward pass's primal values)
        into constants. A call then only propagates tangents through the kept
        graph. The block is passed as a tuple of tensors, one per parameter
        (with one flat vector, ``vmap`` over the traced reshapes fails).
        """

        def grad_and_loss(*block: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
            def loss_of(*ps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                loss = self._loss(b, dict(zip(self.param_names, ps)))
                return loss, loss

            argnums = tuple(range(len(block)))
            grads, loss = torch.func.grad(loss_of, argnums=argnums, has_aux=True)(*block)
            return grads, loss

        (grads, loss), lin = _linearized_map(grad_and_loss, self._block_values)
        self._check_finite(loss, b)
        flat = torch.cat([g.detach().reshape(-1) for g in grads])
        # Guard: the traced map must agree with forward-over-reverse on one seeded
        # probe, on two successive calls (about 4 gradients in all). The one known
        # cause of disagreement (torch.func.linearize mutating a folded constant,
        # see _linearize) is removed structurally; the guard stays for causes
        # not known yet. A failing batch uses "jvp" (or keeps its graph under "auto").
        u = torch.randn(self.shape[0], 1, generator=torch.Generator().manual_seed(b))
        u = u.to(device=self.device, dtype=self.dtype)
        ref = self._hvp_batch_jvp(b, u)[:, 0]
        err = 0.0
        for _ in range(2):
            hv, _ = lin(*self._unflatten(u[:, 0]))
            got = torch.cat([h.reshape(-1) for h in hv])
            tiny = torch.finfo(self.dtype).tiny
            err = max(err, float((got - ref).norm() / ref.norm().clamp_min(tiny)))
        if err > _LINEARIZE_RTOL.get(self.dtype, 1e-3) and float(ref.norm()) > 0:
            warnings.warn(
                f"method='linearize': the linearized map disagrees with the forward-over-"
                f"reverse product on batch {b} (relative error {err:.1e}); using the 'jvp' "
                "product for this batch",
                RuntimeWarning,
                stacklevel=3,
            )
            return flat, None
        return flat, lin

    def _hvp_batch_linearize(self, b: int, V: torch.Tensor) -> torch.Tensor:
        lin = self._lins[b]
        if lin is None and self._graphs[b] is not None:  # "auto" kept the graph (guard)
            return self._hvp_batch_graph(b, V)
        if lin is None:
            # Beyond the cache budget (or the guard failed). Linearizing costs 60-100 gradients (tracing
            # and constant folding), so a batch that is not kept uses the
            # forward-over-reverse product (2-4 gradients) instead.
            return self._hvp_batch_jvp(b, V)

        def hvp(*tangents: torch.Tensor) -> torch.Tensor:
            hv, _ = lin(*tangents)
            return torch.cat(
                [h.reshape(*h.shape[: h.dim() - len(s)], -1) for h, s in zip(hv, self._shapes)],
                dim=-1,
            )

        if V.shape[1] > 1 and self._batched_ok:
            # Vmapped over the columns, _BATCHED_CHUNK at a time to bound memory
            # (a chunk costs about that many tangent passes' activations); falls
            # back to a loop if vmap fails for an operation.
            try:
                parts = []
                for i in range(0, V.shape[1], _BATCHED_CHUNK):
                    C = V[:, i : i + _BATCHED_CHUNK].T
                    tangents = tuple(
                        t.reshape(C.shape[0], *s)
                        for t, s in zip(torch.split(C, self._numels, dim=1), self._shapes)
                    )
                    parts.append(torch.func.vmap(hvp)(*tangents).reshape(C.shape[0], -1))
                return torch.cat(parts, dim=0).T
            except RuntimeError:
                self._batched_ok = False
        cols = [hvp(*self._unflatten(V[:, j].contiguous())).reshape(-1) for j in range(V.shape[1])]
        return torch.stack(cols, dim=1)

    def _check_vector(self, v: Any) -> tuple[torch.Tensor, bool]:
        if isinstance(v, np.ndarray):
            v = torch.from_numpy(v)
        if not isinstance(v, torch.Tensor):
            raise TypeError(
                f"v: expected a torch.Tensor of shape ({self.shape[0]},) or ({self.shape[0]}, k), got {type(v).__name__}"
            )
        if v.dim() not in (1, 2) or v.shape[0] != self.shape[0]:
            raise ValueError(
                f"v: expected shape ({self.shape[0]},) or ({self.shape[0]}, k), got {tuple(v.shape)}"
            )
        if not (v.is_floating_point()):
            raise TypeError(f"v: expected a floating-point tensor, got {v.dtype}")
        vector = v.dim() == 1
        V = v.reshape(self.shape[0], -1).to(device=self.device, dtype=self.dtype)
        return V, vector

    # ------------------------------------------------------------------ public API
    def _switch_to_linearize(self) -> None:
        """Replace every kept double-backward graph by a linearized gradient (``method="auto"``)."""
        for b in range(len(self._batches)):
            if self._graphs[b] is not None:
                lin = self._linearize(b)[1]
                if lin is None:  # the guard failed: keep this batch's graph
                    continue
                self._graphs[b] = None
                self._lins[b] = lin
        self.method = "linearize"
        self._auto = False

    def _switch_pays(self, products: int) -> bool:
        """``method="auto"``: whether linearized maps pay for ``products`` multi-column products."""
        return (
            self._auto
            and products >= _AUTO_SWITCH_PRODUCTS
            and self._batched_ok
            and self.device.type == "cpu"
        )

    def plan(self, products: int) -> None:
        """Announce that about ``products`` more products follow, in multi-column batches.

        With ``method="auto"``, an operator that would switch to linearized
        maps during that work switches now, instead of after its first 100
        double-backward products. :func:`~renyilib.lanczos.slq` calls this with
        ``num_probes × lanczos_steps`` when it advances several probes together.
        Other methods ignore it.

        Args:
            products: Expected number of further Hessian-vector products (≥ 0).
        """
        if isinstance(products, bool) or not isinstance(products, int) or products < 0:
            raise ValueError(f"products: expected a non-negative int, got {products!r}")
        if self._switch_pays(self.num_matvecs + products):
            self._switch_to_linearize()

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``H V`` for ``V`` of shape ``(n, k)``."""
        V, _ = self._check_vector(V)
        out = torch.zeros_like(V)
        if V.shape[1] == 0:
            return out
        if V.shape[1] > 1 and self._switch_pays(self.num_matvecs + V.shape[1]):
            self._switch_to_linearize()
        for b in range(len(self._batches)):
            weight = self._sizes[b] / self.num_samples
            if self.method == "linearize":
                hv = self._hvp_batch_linearize(b, V)
            elif self.method == "graph":
                hv = self._hvp_batch_graph(b, V)
            else:
                hv = self._hvp_batch_jvp(b, V)
            out += weight * hv
        self.num_matvecs += V.shape[1]
        return out

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for ``v`` of shape ``(n,)``."""
        return self @ v

    def __matmul__(self, v: torch.Tensor) -> torch.Tensor:
        V, vector = self._check_vector(v)
        out = self.matmat(V)
        return out[:, 0] if vector else out

    def gradient(self) -> torch.Tensor:
        """Flat gradient :math:`\\nabla_{\\theta_B} L` of the mean loss w.r.t. the block, shape ``(n,)``."""
        return self._grad.clone()

    def to_dense(self, chunk: int = 64) -> torch.Tensor:
        """The dense ``(n, n)`` Hessian, built from ``n`` products in chunks of ``chunk`` columns.

        Symmetrized as ``(H + Hᵀ)/2`` to remove rounding asymmetry.
        """
        n = self.shape[0]
        if min(chunk, n) > 1:
            self.plan(n)
        cols = []
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            eye = torch.zeros(n, stop - start, dtype=self.dtype, device=self.device)
            eye[torch.arange(start, stop), torch.arange(stop - start)] = 1
            cols.append(self.matmat(eye))
        H = torch.cat(cols, dim=1)
        return (H + H.T) / 2

    def to_scipy(self):
        """A ``scipy.sparse.linalg.LinearOperator`` (float64 numpy in and out) wrapping this operator."""
        from scipy.sparse.linalg import LinearOperator

        def mv(x: np.ndarray) -> np.ndarray:
            t = torch.as_tensor(np.ascontiguousarray(x), device=self.device).to(self.dtype)
            return (self @ t).detach().cpu().double().numpy().reshape(x.shape)

        return LinearOperator(
            self.shape, matvec=mv, matmat=mv, rmatvec=mv, rmatmat=mv, dtype=np.float64
        )

    def __repr__(self) -> str:
        return (
            f"HessianOperator(n={self.shape[0]}, params={len(self.param_names)}, method={self.method!r}, "
            f"samples={self.num_samples}, dtype={self.dtype}, device={self.device})"
        )


def _linearized_map(
    func: Callable[..., Any], primals: Sequence[torch.Tensor]
) -> tuple[Any, Callable[..., Any]]:
    """``torch.func.linearize(func, *primals)``, without its in-place-mutation bug.

    Like ``torch.func.linearize``: the forward-mode derivative of ``func`` at
    ``primals`` is traced (``make_fx``) into an FX graph, and every
    tangent-free subexpression is folded into a constant
    (``torch.fx.experimental.const_fold``), so that a call only propagates
    tangents. Returns ``(func(*primals), jvp_fn)`` with
    ``jvp_fn(*tangents) = J_func(primals) @ tangents``.

    The difference: torch's version leaves an in-place op (``x.add_(c)``,
    ``x.div_(s)``) in the per-call graph when its first argument is folded, so
    every call mutates that constant again. With torch 2.14 this made the
    linearized gradient of vit-pytorch's ``SimpleViT`` (``x += pos_embedding``
    after a LayerNorm) right on the first call and wrong from the second on
    (relative error 0.33, 0.49, 0.60 on calls 2-4 for a width-1/8 ViT).
    Here every in-place aten op whose first argument does not depend on the
    tangents is replaced by its out-of-place overload before folding. ``make_fx``
    points later uses of a mutated tensor at the in-place node, so the result is
    unchanged, while no folded constant is ever written to.
    """
    from torch._guards import TracingContext, tracing
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.autograd import forward_ad as fwad
    from torch.fx.experimental import const_fold
    from torch.fx.experimental.proxy_tensor import make_fx

    primals = tuple(primals)
    output = func(*primals)
    out_spec = torch.utils._pytree.tree_flatten(output)[1]

    def trace(*tangents: torch.Tensor) -> list[torch.Tensor]:
        with fwad.dual_level():
            out = func(*(fwad.make_dual(p, t) for p, t in zip(primals, tangents)))
            flat, _ = torch.utils._pytree.tree_flatten(out)
            tangents_out = [fwad.unpack_dual(o).tangent for o in flat]
            return [torch.zeros_like(o) if t is None else t for o, t in zip(flat, tangents_out)]

    # make_fx records each node's metadata through a fake tensor; without an ambient
    # fake mode it builds a new FakeTensorMode per node (each capturing a Python stack
    # trace): one shared mode cut the set-up of the reference CNN's five blocks from
    # 2.15 to 1.49 s. Only metadata goes through it; the values are real.
    with tracing(TracingContext(FakeTensorMode(allow_fallback_kernels=True))):
        graph = make_fx(trace)(*(p.new_empty(()).expand_as(p) for p in primals))
    depends: dict[Any, bool] = {}
    for node in graph.graph.nodes:
        depends[node] = node.op == "placeholder" or any(
            depends.get(a, False) for a in node.all_input_nodes
        )
        target = node.target
        if node.op == "call_function" and isinstance(target, torch._ops.OpOverload):
            name = target.overloadpacket.__name__
            if name.endswith("_") and not name.endswith("__") and not depends[node.args[0]]:
                packet = getattr(torch.ops.aten, name[:-1], None)
                pure = getattr(packet, target._overloadname, None) if packet else None
                if pure is None:
                    raise RuntimeError(f"linearize: no out-of-place overload for {target}")
                node.target = pure
    graph.recompile()
    with warnings.catch_warnings():
        # torch.fx's constant folding warns about its own get_attr nodes (harmless).
        warnings.filterwarnings("ignore", message=".*get_attr Node with no underlying")
        folded = const_fold.split_const_subgraphs(graph)

    def jvp_fn(*tangents: torch.Tensor) -> Any:
        if len(tangents) != len(primals):
            raise ValueError(f"expected {len(primals)} tangents, got {len(tangents)}")
        return torch.utils._pytree.tree_unflatten(list(folded(*tangents)), out_spec)

    return output, jvp_fn


def _resolve_params(model: nn.Module, params: str | Sequence[str] | None) -> list[str]:
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    all_names = [name for name, _ in model.named_parameters()]
    if params is None:
        if not trainable:
            raise ValueError("params: the model has no parameters that require a gradient")
        return trainable
    if isinstance(params, str):
        blocks = layer_blocks(model)
        if params in blocks:
            return list(blocks[params])
        if params in all_names:
            return [params]
        raise KeyError(
            f"params: unknown block or parameter name {params!r}; valid blocks: {list(blocks)}; "
            f"valid parameter names: {all_names}"
        )
    names = list(params)
    if not names:
        raise ValueError("params: expected a non-empty list of parameter names")
    unknown = [n for n in names if not isinstance(n, str) or n not in all_names]
    if unknown:
        raise KeyError(f"params: unknown parameter names {unknown}; valid names: {all_names}")
    if len(set(names)) != len(names):
        raise ValueError(f"params: duplicate parameter names in {names}")
    return names


def hessian_operator(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    params: str | Sequence[str] | None = None,
    *,
    allow_train_mode: bool = False,
    method: str = "auto",
    cache_samples: int | None = 20_000,
    batched: bool | None = None,
) -> HessianOperator:
    """Hessian operator of the mean loss over ``data`` w.r.t. a parameter block.

    .. math::

        H = \\nabla^2_{\\theta_B} \\frac{1}{N}\\sum_b N_b\\, L_b(\\theta),

    with :math:`L_b` the mean loss of batch :math:`b` of size :math:`N_b` and
    :math:`N = \\sum_b N_b` (batches weighted by their size, so a short last
    batch is handled exactly). This is the matrix whose normalized spectrum
    defines the Rényi entropy of Eq. (6).

    Args:
        model: The network, in ``eval()`` mode (BatchNorm running statistics,
            no dropout).
        loss_fn: ``loss_fn(outputs, targets) -> scalar mean loss``.
        data: A pair ``(x, y)`` of tensors or an iterable of ``(x, y)`` batches
            (e.g. a ``DataLoader``); it is iterated once and the batches are kept.
        params: ``None`` (all parameters requiring a gradient), a block name of
            :func:`layer_blocks` (``"all"`` or a layer's weight name), a
            parameter name, or a list of parameter names.
        allow_train_mode: Accept a model in train mode (BatchNorm then uses batch
            statistics on copies of its buffers; dropout masks are those of the
            graph-building pass for cached batches, fresh per product otherwise,
            which makes the operator random).
        method: ``"auto"`` (default: ``"graph"``, switched to ``"linearize"``
            once a multi-column product brings the count of products to 100,
            on the CPU, for vmapped columns, in eval mode), ``"graph"``
            (reused double-backward graph), ``"linearize"``
            (``torch.func.linearize`` of the gradient, vmapped over columns) or
            ``"jvp"`` (forward-over-reverse); see the module docstring.
        cache_samples: Keep the double-backward graphs (or linearized
            gradients) of batches up to this many samples in total (``None``:
            all); later batches are recomputed at each product (``"linearize"``
            uses the ``"jvp"`` product for them). Memory is about one training
            step's activations per cached batch (for ``"linearize"``, about
            five forward passes' layer outputs on the reference CNN).
        batched: For ``method="graph"`` / ``"linearize"``, compute the columns
            of an ``(n, k)`` product vmapped (``True``) or in a loop (``False``);
            ``None`` picks vmapped for blocks of at most 4096 parameters
            whose batches hold at most 2**18 input scalars (e.g. 512 digits;
            not 256 CIFAR images), and falls back to the loop if vmap fails
            for an operation.

    Returns:
        A :class:`HessianOperator`.

    Raises:
        ValueError: model in train mode, empty data, non-finite loss, bad method.
        KeyError: unknown block or parameter name (the message lists the valid ones).

    Example:
        >>> torch.manual_seed(0) and None
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2)).double().eval()
        >>> x, y = torch.randn(8, 3, dtype=torch.float64), torch.randint(0, 2, (8,))
        >>> op = hessian_operator(net, torch.nn.CrossEntropyLoss(), (x, y))
        >>> op.shape
        (8, 8)
        >>> H = op.to_dense()
        >>> bool(torch.allclose(H, H.T)) and op.num_matvecs == 8
        True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError("loss_fn must be callable: loss_fn(outputs, targets) -> scalar mean loss")
    if method not in ("auto", "graph", "jvp", "linearize"):
        raise ValueError(f"method must be 'auto', 'graph', 'jvp' or 'linearize', got {method!r}")
    if cache_samples is not None and (not isinstance(cache_samples, int) or cache_samples < 0):
        raise ValueError(f"cache_samples must be None or a non-negative int, got {cache_samples!r}")
    training = [name or "<root>" for name, m in model.named_modules() if m.training]
    if training and not allow_train_mode:
        raise ValueError(
            "model is in train mode (e.g. modules "
            f"{training[:3]}); call model.eval() so that BatchNorm uses running statistics and "
            "dropout is off, or pass allow_train_mode=True"
        )
    if method == "auto" and training:
        method = "graph"
    if training and method in ("jvp", "linearize"):
        raise ValueError(
            f"method={method!r} needs a model in eval mode (train-mode BatchNorm updates "
            "buffers in place, which torch.func transforms forbid); use method='graph'"
        )
    names = _resolve_params(model, params)
    batches = _as_batches(data)
    if not batches:
        raise ValueError("data: expected at least one (x, y) batch, got an empty iterable")
    return HessianOperator(
        model,
        loss_fn,
        batches,
        names,
        method=method,
        cache_samples=cache_samples,
        allow_train_mode=allow_train_mode,
        batched=batched,
    )
