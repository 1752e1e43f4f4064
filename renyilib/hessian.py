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

Backends (``backend=``) for the products:

``"graph"``
    Double backward through a *reused* graph: per batch, the gradient
    :math:`g_b = \\nabla L_b` is computed once with ``create_graph=True`` and
    kept; every product is then one backward pass
    ``autograd.grad(g_b, θ_B, v, retain_graph=True)`` (PyHessian's product).
    The kept graphs cost memory (about a training step's activations per
    batch), so only the first ``cache_samples`` samples' graphs are kept;
    batches beyond that budget are recomputed (forward + backward + double
    backward) at every product. The columns of an ``(n, k)`` input are
    computed in a loop unless ``batched=True`` (vmapped, ``is_grads_batched``).
``"linearize"``
    The gradient map :math:`\\theta_B \\mapsto \\nabla L_b(\\theta_B)` is
    linearized once per batch: its forward-mode derivative is traced into an
    aten graph, functionalized (no mutations or views left) and its
    tangent-free parts (activations, the backward pass's primal values) are
    folded into constants (:func:`_linearized_map`), so a product only pushes
    tangents; the columns of an ``(n, k)`` input are ``torch.func.vmap``-ed, 32
    at a time. Functionalizing before folding makes the folded graph exact by
    construction, also for in-place ops on views, slice assignments and
    scatter ops (``torch.func.linearize`` folds without it and corrupts its
    later calls when an in-place op acts on a folded tensor). The one-off
    tracing costs tens to hundreds of gradients, and the map keeps several
    forward passes' activations; it pays for many products of one block (SLQ
    with many probes). Batches beyond ``cache_samples`` use the ``"jvp"``
    product. Eval mode only.
``"jvp"``
    Forward-over-reverse, ``torch.func.jvp`` of ``torch.func.grad``, vmapped
    over the columns of an ``(n, k)`` input. Needs no cached graph (constant
    memory); eval mode only.
``"auto"`` (default)
    ``"graph"`` with a column loop, for every product: the only path that was
    never slower than the peer (PyHessian) on the benchmarked architectures.
    Nothing switches backends during a run; choose ``"linearize"`` or
    ``"jvp"`` (or ``batched=True``) where ``benchmarks/README.md`` shows it
    pays for your architecture.

All backends give the same numbers up to rounding (tested against
``torch.func.hessian`` in float64 to 1e-10). Measured costs per product, per
architecture and backend: ``benchmarks/README.md`` (``benchmarks/bench_backends.py``).
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

from renyilib.batches import as_batches, batch_size, to_device
from renyilib.modes import eval_mode

__all__ = ["BACKENDS", "HessianOperator", "hessian_operator", "layer_blocks"]

#: The Hessian-product backends of :func:`hessian_operator` (``backend=``).
BACKENDS: tuple[str, ...] = ("auto", "graph", "jvp", "linearize")

_LAYER_TYPES = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)

#: Layer classes of other libraries, by ``module.qualname`` (matched over the class's
#: MRO without importing them): torch_geometric's ``Linear`` is what ``GATConv``,
#: ``GCNConv`` and the other message-passing layers hold as their linear maps.
_FOREIGN_LAYER_TYPES = frozenset({"torch_geometric.nn.dense.linear.Linear"})


def _is_layer(module: nn.Module) -> bool:
    if isinstance(module, _LAYER_TYPES):
        return True
    return any(
        f"{c.__module__}.{c.__qualname__}" in _FOREIGN_LAYER_TYPES for c in type(module).__mro__
    )


#: Columns per vmapped product (memory grows with it like a batch of that many products).
_BATCHED_CHUNK = 32

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def layer_blocks(model: nn.Module, example_input: Any = None) -> dict[str, list[str]]:
    """The paper's "layers": the weight tensor of every Conv / Linear layer, then ``"all"``.

    Layers are ``torch.nn`` Linear / Conv / ConvTranspose modules and the
    ``torch_geometric.nn.dense.linear.Linear`` maps inside message-passing
    layers (e.g. ``GATConv.lin``; recognized by class name, torch_geometric is
    not imported). Attention vectors and other parameters belong to ``"all"``.

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
        if _is_layer(module) and id(module) not in seen:
            weight = getattr(module, "weight", None)
            if isinstance(weight, nn.Parameter) and id(weight) in param_ids:
                seen.add(id(module))
                layers.append((module, param_ids[id(weight)]))
    if example_input is not None:
        order: list[int] = []
        handles = [
            m.register_forward_hook(lambda mod, _i, _o: order.append(id(mod))) for m, _ in layers
        ]
        try:
            args = example_input if isinstance(example_input, tuple) else (example_input,)
            with eval_mode(model), torch.no_grad():
                model(*args)
        finally:
            for h in handles:
                h.remove()
        first: dict[int, int] = {}
        for i, mid in enumerate(order):
            first.setdefault(mid, i)
        registration = {id(m): i for i, (m, _) in enumerate(layers)}
        layers.sort(key=lambda ml: first.get(id(ml[0]), len(order) + registration[id(ml[0])]))
    blocks = {name: [name] for _, name in layers}
    blocks["all"] = [name for name, p in model.named_parameters() if p.requires_grad]
    return blocks


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
        backend: the backend in use: ``"graph"``, ``"linearize"`` or ``"jvp"``
            (``"auto"`` is ``"graph"``); ``method`` is a deprecated alias.
        cached_samples: samples whose graph / linearized map is kept.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        batches: list[tuple[Any, Any]],
        param_names: list[str],
        *,
        backend: str,
        cache_samples: int | None,
        allow_train_mode: bool,
        batched: bool | None = None,
    ) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.param_names = list(param_names)
        method = "graph" if backend == "auto" else backend
        self.backend = method
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
        self._sizes = [batch_size(x) for x, _ in batches]
        self.num_samples = sum(self._sizes)
        if self.num_samples == 0:
            raise ValueError("data: expected at least one sample, got empty batches")
        self.num_matvecs = 0
        if batched is None:
            # Vmapped columns only where measured faster for every architecture benchmarked:
            # the linearized map (its reason to exist). For the graph, a loop of single
            # backward passes (PyHessian's product) was as fast or faster on the held-out
            # CNN and the ResNet-18 layer (benchmarks/README.md).
            batched = method == "linearize"
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

    @property
    def method(self) -> str:
        """Deprecated alias of :attr:`backend`."""
        warnings.warn(
            "HessianOperator.method is deprecated; use .backend", DeprecationWarning, stacklevel=2
        )
        return self.backend

    # ------------------------------------------------------------------ internals
    def _loss(self, b: int, params: dict[str, torch.Tensor]) -> torch.Tensor:
        x, y = self._batches[b]
        x, y = to_device(x, self.device), to_device(y, self.device)
        return self._loss_with(x, y, self._consts, params)

    def _loss_with(
        self, x: Any, y: Any, consts: dict[str, torch.Tensor], params: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        args = x if isinstance(x, tuple) else (x,)
        out = functional_call(self.model, {**consts, **params}, args)
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

        The gradient map :math:`\\theta_B \\mapsto \\nabla L_b(\\theta_B)` is traced
        by :func:`_linearized_map` with the batch, the other parameters and the
        buffers as explicit constant inputs (so that functionalization sees
        every tensor a mutation can touch). ``None`` instead of the map if
        the traced graph still mutates a tensor after functionalization (a
        tensor created from a closure constant inside ``forward``); the batch
        then uses the ``"jvp"`` product and a ``RuntimeWarning`` says so.
        """
        x, y = self._batches[b]
        x, y = to_device(x, self.device), to_device(y, self.device)
        xs = list(x) if isinstance(x, tuple) else [x]
        cnames = list(self._consts)
        consts = [*xs, y, *(self._consts[k] for k in cnames)]
        nb, nx = len(self.param_names), len(xs)

        def grad_and_loss(*args: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
            block, rest = args[:nb], args[nb:]
            xb = tuple(rest[:nx]) if isinstance(x, tuple) else rest[0]
            cd = dict(zip(cnames, rest[nx + 1 :]))

            def loss_of(*ps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                loss = self._loss_with(xb, rest[nx], cd, dict(zip(self.param_names, ps)))
                return loss, loss

            argnums = tuple(range(nb))
            grads, loss = torch.func.grad(loss_of, argnums=argnums, has_aux=True)(*block)
            return grads, loss

        (grads, loss), lin = _linearized_map(grad_and_loss, self._block_values, consts)
        self._check_finite(loss, b)
        flat = torch.cat([g.detach().reshape(-1) for g in grads])
        if lin is None:
            warnings.warn(
                f"backend='linearize': the traced gradient of batch {b} still mutates a tensor "
                "after functionalization (created from a constant inside forward); using the "
                "'jvp' product for this batch",
                RuntimeWarning,
                stacklevel=3,
            )
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
    def plan(self, products: int) -> None:
        """Announce that about ``products`` more products follow (kept for compatibility).

        The operator no longer switches backends during a run, so this only
        validates its argument. :func:`~renyilib.lanczos.slq` still calls it.

        Args:
            products: Expected number of further Hessian-vector products (≥ 0).
        """
        if isinstance(products, bool) or not isinstance(products, int) or products < 0:
            raise ValueError(f"products: expected a non-negative int, got {products!r}")

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``H V`` for ``V`` of shape ``(n, k)``."""
        V, _ = self._check_vector(V)
        out = torch.zeros_like(V)
        if V.shape[1] == 0:
            return out
        for b in range(len(self._batches)):
            weight = self._sizes[b] / self.num_samples
            if self.backend == "linearize":
                hv = self._hvp_batch_linearize(b, V)
            elif self.backend == "graph":
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
        cols = []
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            eye = torch.zeros(n, stop - start, dtype=self.dtype, device=self.device)
            eye[
                torch.arange(start, stop, device=self.device),
                torch.arange(stop - start, device=self.device),
            ] = 1
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
            f"HessianOperator(n={self.shape[0]}, params={len(self.param_names)}, backend={self.backend!r}, "
            f"samples={self.num_samples}, dtype={self.dtype}, device={self.device})"
        )


def _flatten(obj: Any) -> tuple[list[torch.Tensor], Callable[[list[torch.Tensor]], Any]]:
    """Leaves of nested tuples/lists of tensors, and the function that rebuilds the nesting."""
    if isinstance(obj, torch.Tensor):
        return [obj], lambda leaves: leaves[0]
    if isinstance(obj, tuple | list):
        parts = [_flatten(o) for o in obj]
        sizes = [len(leaves) for leaves, _ in parts]

        def rebuild(leaves: list[torch.Tensor]) -> Any:
            out, start = [], 0
            for (_, rb), size in zip(parts, sizes):
                out.append(rb(leaves[start : start + size]))
                start += size
            return type(obj)(out)

        return [leaf for leaves, _ in parts for leaf in leaves], rebuild
    raise TypeError(
        f"linearize: outputs must be tensors or tuples of them, got {type(obj).__name__}"
    )


def _linearized_map(
    func: Callable[..., Any], primals: Sequence[torch.Tensor], consts: Sequence[Any]
) -> tuple[Any, Callable[..., Any] | None]:
    """The linearization of ``func`` at ``primals``, traced, functionalized, then constant-folded.

    ``func(*primals, *consts)``; returns ``(func(*primals, *consts), jvp_fn)``
    with ``jvp_fn(*tangents) = J_primals func · tangents``. Three steps:

    1. ``make_fx`` traces the forward-mode derivative of ``func`` (dual
       tensors on the primals) into an aten graph whose inputs are the
       tangents and ``consts``.
    2. ``torch.func.functionalize`` re-traces that graph without mutations
       or views (``remove="mutations_and_views"``): an in-place op, also on a
       view (``z[:, :3].mul_(2)``, a slice assignment into a buffer), becomes
       an out-of-place op plus the scatter that writes it back into its base,
       so every later use of the base sees the mutation.
    3. The ``consts`` inputs become graph constants and
       ``torch.fx.experimental.const_fold`` folds every tangent-free
       subexpression; a call only pushes tangents.

    Folding a mutation-free graph cannot change its value, so the result is
    correct by construction. If a mutating node survives step 2 (a tensor
    created inside ``func`` from a closure constant that is not among
    ``consts``), nothing is folded and ``jvp_fn`` is ``None``.
    (``torch.func.linearize`` of torch 2.14 folds without functionalizing, so
    in-place ops on folded constants corrupt its later calls.)
    """
    from torch.autograd import forward_ad as fwad
    from torch.fx.experimental import const_fold
    from torch.fx.experimental.proxy_tensor import make_fx

    primals, consts = tuple(primals), tuple(consts)
    output = func(*primals, *consts)
    _, rebuild = _flatten(output)
    k = len(primals)

    def trace(*args: Any) -> list[torch.Tensor]:
        tangents, rest = args[:k], args[k:]
        with fwad.dual_level():
            out = func(*(fwad.make_dual(p, t) for p, t in zip(primals, tangents)), *rest)
            flat, _ = _flatten(out)
            tangents_out = [fwad.unpack_dual(o).tangent for o in flat]
            return [torch.zeros_like(o) if t is None else t for o, t in zip(flat, tangents_out)]

    tangents = [p.new_empty(()).expand_as(p) for p in primals]
    traced = make_fx(trace)(*tangents, *consts)
    graph = make_fx(torch.func.functionalize(traced, remove="mutations_and_views"))(
        *tangents, *consts
    )
    if any(n.op == "call_function" and n.is_impure() for n in graph.graph.nodes):
        return output, None
    placeholders = [n for n in graph.graph.nodes if n.op == "placeholder"]
    for i, (node, value) in enumerate(zip(placeholders[k:], consts)):
        name = f"renyilib_const_{i}"
        if isinstance(value, torch.Tensor):
            graph.register_buffer(name, value)
        else:
            setattr(graph, name, value)
        with graph.graph.inserting_before(node):
            node.replace_all_uses_with(graph.graph.get_attr(name))
        graph.graph.erase_node(node)
    graph.recompile()
    with warnings.catch_warnings():
        # torch.fx's constant folding warns about its own get_attr nodes (harmless).
        warnings.filterwarnings("ignore", message=".*get_attr Node with no underlying")
        folded = const_fold.split_const_subgraphs(graph)

    def jvp_fn(*tangents: torch.Tensor) -> Any:
        if len(tangents) != k:
            raise ValueError(f"expected {k} tangents, got {len(tangents)}")
        return rebuild(list(folded(*tangents)))

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
    backend: str = "auto",
    cache_samples: int | None = 20_000,
    batched: bool | None = None,
    method: str | None = None,
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
        backend: ``"auto"`` (default: ``"graph"`` with a column loop), ``"graph"``
            (reused double-backward graph), ``"linearize"`` (functionalized,
            constant-folded linearized gradient, vmapped over columns) or
            ``"jvp"`` (forward-over-reverse); see the module docstring.
        cache_samples: Keep the double-backward graphs (or linearized
            gradients) of batches up to this many samples in total (``None``:
            all); later batches are recomputed at each product (``"linearize"``
            uses the ``"jvp"`` product for them). Memory is about one training
            step's activations per cached batch (for ``"linearize"``, about
            five forward passes' layer outputs on the reference CNN).
        batched: Compute the columns of an ``(n, k)`` product vmapped (``True``)
            or in a loop (``False``); ``None``: vmapped for ``"linearize"``, a
            loop for ``"graph"``. Falls back to the loop if vmap fails for an
            operation. (``"jvp"`` always vmaps.)
        method: Deprecated name of ``backend`` (``DeprecationWarning``).

    Returns:
        A :class:`HessianOperator`.

    Raises:
        ValueError: model in train mode, empty data, non-finite loss, bad backend.
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
    if method is not None:
        warnings.warn(
            "hessian_operator(method=...) is deprecated; use backend=... (the Hessian-product "
            "backend; renyi_sharpness's spectrum= picks SLQ or the exact spectrum)",
            DeprecationWarning,
            stacklevel=2,
        )
        backend = method
    method = backend
    if method not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {method!r}")
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
            f"backend={method!r} needs a model in eval mode (train-mode BatchNorm updates "
            "buffers in place, which torch.func transforms forbid); use backend='graph'"
        )
    names = _resolve_params(model, params)
    batches = as_batches(data)
    if not batches:
        raise ValueError("data: expected at least one (x, y) batch, got an empty iterable")
    return HessianOperator(
        model,
        loss_fn,
        batches,
        names,
        backend=method,
        cache_samples=cache_samples,
        allow_train_mode=allow_train_mode,
        batched=batched,
    )
