"""The exact diagonal of the loss Hessian, and when it is cheap.

Minimum sharpness (Ibayashi, Hamaguchi & Imaizumi 2021, arXiv 2106.12612,
Sec. 4) needs the sums of the Hessian diagonal over each layer's weights and
biases. For the mean cross-entropy

.. math::

    L(\\theta) = \\frac{1}{N}\\sum_{x}\\Big[\\operatorname{lse} f_\\theta(x) - \\sum_k q_k(x)\\, f_{\\theta,k}(x)\\Big],
    \\qquad \\sum_k q_k = 1,

the Hessian splits into a Gauss–Newton part and a part with the network's
second derivatives,

.. math::

    \\nabla^2 L = \\frac{1}{N}\\sum_x J_x^\\top (\\operatorname{diag} p - p p^\\top) J_x
    + \\frac{1}{N}\\sum_x \\sum_k (p_k - q_k)\\, \\nabla^2_\\theta f_k(x),

with :math:`J_x = \\partial f(x)/\\partial\\theta` and :math:`p = \\operatorname{softmax} f(x)`.
If the network is piecewise linear in **each scalar parameter** (Linear / Conv
layers, ReLU and leaky ReLU, max- and average-pooling, BatchNorm in eval
mode, reshapes; every parameter used once), then
:math:`\\partial^2 f_k / \\partial\\theta_i^2 = 0` and the diagonal is exactly the
Gauss–Newton diagonal (the paper's "exact and efficient" computation):

.. math::

    H_{ii} = \\frac{1}{N}\\sum_x \\Big[\\sum_k p_k(x) \\Big(\\frac{\\partial f_k(x)}{\\partial\\theta_i}\\Big)^2
    - \\Big(\\frac{\\partial \\operatorname{lse} f(x)}{\\partial\\theta_i}\\Big)^2\\Big],
    \\qquad \\frac{\\partial \\operatorname{lse} f}{\\partial\\theta_i} = \\sum_k p_k \\frac{\\partial f_k}{\\partial\\theta_i}.

It needs no labels and no loop over the :math:`n` parameters: the per-sample
Jacobian (``torch.func.vmap`` of ``torch.func.jacrev``: one forward pass and
:math:`K` backward passes per sample, vmapped; the lse gradient follows from
it, so the paper's :math:`K + 1`-th pass is not needed) gives every
:math:`H_{ii}` at once. Memory: ``chunk · K · n`` Jacobian entries at a time.

For anything else — tanh, sigmoid, ELU, GELU, softplus, LayerNorm, attention,
a parameter used twice, a product of two parameter-dependent tensors, a loss
other than (unweighted, mean) cross-entropy — the identity is wrong, and
:func:`hessian_diagonal` computes the diagonal exactly from Hessian-vector
products instead: column chunks :math:`H e_i` of
:func:`renyilib.hessian.hessian_operator`, **n products** in all (each about
1-2 gradients of the block; :math:`O(n)` times the cost of the identity).
``method="ggn"`` refuses instead of falling back; the GGN diagonal is never
returned where it is not the Hessian's.

Which case holds is decided structurally by :func:`ggn_identity_violation`
from the autograd graph of one forward pass (see there), not by the module
types alone: a ``torch.tanh`` inside ``forward`` is found too.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jacrev, vmap
from tqdm.auto import tqdm

from renyilib.batches import as_batches
from renyilib.hessian import hessian_operator

__all__ = ["ggn_identity_violation", "hessian_diagonal"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: Autograd nodes (name without the ``Backward<k>`` suffix) that are piecewise
#: linear in their input and sum over their inputs (any overlap of the inputs'
#: parameter dependence is fine).
_PIECEWISE_LINEAR = frozenset(
    {
        "Relu",
        "LeakyRelu",
        "Hardtanh",
        "Threshold",
        "MaxPool1DWithIndices",
        "MaxPool2DWithIndices",
        "MaxPool3DWithIndices",
        "AvgPool2D",
        "AvgPool3D",
        "AdaptiveAvgPool2D",
        "AdaptiveAvgPool3D",
        "AdaptiveMaxPool2D",
        "AdaptiveMaxPool3D",
        "View",
        "UnsafeView",
        "ReshapeAlias",
        "T",
        "Transpose",
        "Permute",
        "Expand",
        "Squeeze",
        "Unsqueeze",
        "Clone",
        "Slice",
        "Select",
        "Index",
        "ConstantPadNd",
        "Neg",
        "Mean",
        "Sum",
        "Alias",
        "ToCopy",
        "Abs",
        "Max",
        "Amax",
        "Min",
        "Amin",
        "Split",
        "SplitWithSizes",
        "Unbind",
        "AsStrided",
        "Cat",
        "Stack",
        "Add",
        "Sub",
    }
)
#: Multilinear nodes: name -> input positions that multiply each other (the
#: others are added). Piecewise linear in each scalar parameter when those
#: inputs depend on disjoint sets of parameters. BatchNorm only in eval mode
#: (checked separately: every module must be in eval mode).
_MULTILINEAR = {
    "Mul": (0, 1),
    "Mm": (0, 1),
    "Bmm": (0, 1),
    "Mv": (0, 1),
    "Addmm": (1, 2),
    "Addmv": (1, 2),
    "Baddbmm": (1, 2),
    "Convolution": (0, 1),
    "NativeBatchNorm": (0, 1),
    "CudnnBatchNorm": (0, 1),
    "MiopenBatchNorm": (0, 1),
}
#: Normalization nodes that are affine only with running statistics (``training=False``).
_BATCH_NORMS = frozenset({"NativeBatchNorm", "CudnnBatchNorm", "MiopenBatchNorm"})
#: Nodes linear in input 0 and constant in the others (e.g. division by a tensor
#: that must not depend on the parameters).
_LINEAR_IN_FIRST = frozenset({"Div"})

#: Jacobian entries held at once by the identity (chunk · K · n); 2**24 float64 = 128 MiB.
_JACOBIAN_BUDGET = 2**24


def _node_kind(node: Any) -> str:
    name = type(node).__name__
    base = name.split("Backward")[0] if "Backward" in name else name
    return base


def _batches(data: Any) -> list[tuple[Any, Any]]:
    batches = as_batches(data)
    if not batches:
        raise ValueError("data: expected at least one (x, y) batch, got an empty iterable")
    return batches


def _block_names(model: nn.Module, params: str | Sequence[str] | None) -> list[str]:
    named = dict(model.named_parameters())
    if params is None:
        names = [n for n, p in named.items() if p.requires_grad]
    elif isinstance(params, str):
        names = [params]
    else:
        names = list(params)
    if not names:
        raise ValueError("params: expected at least one parameter name")
    unknown = [n for n in names if n not in named]
    if unknown:
        raise KeyError(f"params: unknown parameter names {unknown}; valid names: {list(named)}")
    if len(set(names)) != len(names):
        raise ValueError(f"params: duplicate parameter names in {names}")
    return names


def _cross_entropy_violation(loss_fn: Any, batches: list[tuple[Any, Any]]) -> str | None:
    """Why ``loss_fn`` is not the unweighted mean cross-entropy over class labels, or None."""
    if loss_fn is F.cross_entropy:
        ignore_index = -100
    elif isinstance(loss_fn, nn.CrossEntropyLoss):
        if loss_fn.reduction != "mean":
            return f"loss_fn: CrossEntropyLoss(reduction={loss_fn.reduction!r}) is not the mean"
        if loss_fn.weight is not None:
            return "loss_fn: class-weighted CrossEntropyLoss (samples are not weighted 1/N)"
        ignore_index = loss_fn.ignore_index
    else:
        return (
            f"loss_fn: {type(loss_fn).__name__} is not torch.nn.CrossEntropyLoss "
            "(the identity uses the softmax cross-entropy's Hessian in the logits)"
        )
    for _, y in batches:
        if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.ndim != 1:
            return "data: targets are not 1-D integer class labels"
        if bool((y == ignore_index).any()):
            return f"data: targets contain ignore_index={ignore_index}"
    return None


def ggn_identity_violation(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    params: str | Sequence[str] | None = None,
) -> str | None:
    """Why diag(H) may differ from the Gauss–Newton diagonal, or ``None`` if it is equal.

    The identity :math:`H_{ii} = G_{ii}` needs (i) the unweighted mean
    cross-entropy over integer labels (``torch.nn.CrossEntropyLoss``, label
    smoothing allowed, or ``torch.nn.functional.cross_entropy``), (ii) every
    module in eval mode, and (iii) logits :math:`f` piecewise linear in each
    scalar parameter of the block. (iii) is checked on the autograd graph of
    one forward pass on the first sample(s) of ``data``, by induction over its
    nodes: every node must be piecewise linear in its inputs (ReLU, pooling,
    reshapes, sums, ... : ``_PIECEWISE_LINEAR``), or multilinear
    (``Mul``, ``Mm``, ``Addmm``, ``Convolution``, eval-mode BatchNorm, ...)
    with factors that depend on **disjoint** sets of block parameters, or a
    division by a tensor independent of the block. Any other node that depends
    on the block (``TanhBackward0``, ``GeluBackward0``, ``NativeLayerNorm``,
    softmax in attention, ...) violates it, and so does a weight used twice
    (``W·relu(W·x)`` multiplies two factors that both depend on ``W``).

    Args:
        model: The network.
        loss_fn: The loss.
        data: ``(x, y)`` or an iterable of batches (the first batch's first
            two samples are run; all batches' labels are checked).
        params: Block: ``None`` (all parameters requiring a gradient), a
            parameter name or a list of names. Parameters outside it are constants.

    Returns:
        ``None`` when the identity holds, else a sentence naming the reason.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    batches = _batches(data)
    names = _block_names(model, params)
    reason = _cross_entropy_violation(loss_fn, batches)
    if reason is not None:
        return reason
    training = [n or "<root>" for n, m in model.named_modules() if m.training]
    if training:
        return f"model: modules {training[:3]} are in train mode"
    x = batches[0][0]
    if not isinstance(x, torch.Tensor):
        return "data: inputs are not a tensor"
    with torch.enable_grad():
        leaves = {n: p.detach().clone().requires_grad_(True) for n, p in model.named_parameters()}
        leaves = {n: (v if n in names else v.detach()) for n, v in leaves.items()}
        out = functional_call(model, leaves, (x[:2],))
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        return f"model: output is not a (batch, classes) tensor of logits ({type(out).__name__})"
    if out.grad_fn is None:
        return None  # the logits do not depend on the block: H = 0 on it, G = 0 too
    leaf_name = {id(v): n for n, v in leaves.items() if n in names}
    deps: dict[Any, frozenset[str]] = {}
    # Iterative post-order over the graph: a node's dependence is the union of its inputs'.
    stack: list[tuple[Any, bool]] = [(out.grad_fn, False)]
    while stack:
        node, expanded = stack.pop()
        if node in deps:
            continue
        inputs = [nf[0] for nf in node.next_functions]
        if not expanded:
            stack.append((node, True))
            stack.extend((c, False) for c in inputs if c is not None and c not in deps)
            continue
        if _node_kind(node) == "AccumulateGrad":
            name = leaf_name.get(id(node.variable))
            deps[node] = frozenset({name}) if name is not None else frozenset()
            continue
        in_deps = [deps[c] if c is not None else frozenset() for c in inputs]
        union = frozenset().union(*in_deps)
        deps[node] = union
        if not union:
            continue
        kind = _node_kind(node)
        if kind in _PIECEWISE_LINEAR:
            continue
        if kind in _BATCH_NORMS and getattr(node, "_saved_training", True):
            return (
                f"model: {type(node).__name__} normalizes with batch statistics "
                "(track_running_stats=False or a functional batch_norm in training mode), "
                "which is not affine in the parameters and couples the samples"
            )
        if kind in _MULTILINEAR:
            factors = [in_deps[i] for i in _MULTILINEAR[kind] if i < len(in_deps)]
            for i in range(len(factors)):
                for j in range(i + 1, len(factors)):
                    shared = factors[i] & factors[j]
                    if shared:
                        return (
                            f"model: {type(node).__name__} multiplies two factors that both "
                            f"depend on {sorted(shared)} (a parameter used twice, or a product "
                            "of activations), so f is not linear in each scalar parameter"
                        )
            continue
        if kind in _LINEAR_IN_FIRST and not frozenset().union(*in_deps[1:]):
            continue
        return (
            f"model: {type(node).__name__} is not piecewise linear (it depends on "
            f"{sorted(union)[:3]}), so the second derivatives of f do not vanish"
        )
    return None


def _ggn_diagonal(
    model: nn.Module,
    batches: list[tuple[Any, Any]],
    names: list[str],
    chunk: int | None,
    progress: bool,
) -> dict[str, torch.Tensor]:
    named = dict(model.named_parameters())
    block = {n: named[n].detach() for n in names}
    consts = {n: p.detach() for n, p in named.items() if n not in block}
    consts.update(dict(model.named_buffers()))
    device = next(iter(block.values())).device

    def logits(
        theta: dict[str, torch.Tensor], x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = functional_call(model, {**consts, **theta}, (x.unsqueeze(0),)).squeeze(0)
        return out, out

    per_sample = vmap(jacrev(logits, has_aux=True), in_dims=(None, 0))
    n_params = sum(p.numel() for p in block.values())
    total = 0
    diag = {n: torch.zeros_like(p) for n, p in block.items()}
    work = []
    for x, _ in batches:
        x = x.to(device)
        size = int(x.shape[0])
        total += size
        work.append((x, size))
    num_classes = None
    bar = tqdm(total=total, desc="hessian diagonal (GGN identity)", disable=not progress)
    for x, size in work:
        start = 0
        while start < size:
            if chunk is None:
                k = num_classes or 10
                step = max(1, _JACOBIAN_BUDGET // max(1, k * n_params))
            else:
                step = chunk
            xb = x[start : start + step]
            jac, out = per_sample(block, xb)
            num_classes = int(out.shape[1])
            p = torch.softmax(out, dim=1)  # (B, K)
            for n in names:
                j = jac[n].reshape(xb.shape[0], num_classes, -1)  # (B, K, n_p)
                first = torch.einsum("bk,bkn->n", p, j * j)
                lse = torch.einsum("bk,bkn->bn", p, j)
                diag[n] += (first - (lse * lse).sum(0)).reshape(diag[n].shape)
            start += xb.shape[0]
            bar.update(xb.shape[0])
    bar.close()
    return {n: d / total for n, d in diag.items()}


def _hvp_diagonal(
    model: nn.Module,
    loss_fn: LossFn,
    batches: list[tuple[Any, Any]],
    names: list[str],
    chunk: int | None,
    progress: bool,
) -> dict[str, torch.Tensor]:
    op = hessian_operator(model, loss_fn, batches, names)
    n = op.shape[0]
    op.plan(n)
    step = chunk or 32
    flat = torch.empty(n, dtype=op.dtype, device=op.device)
    for start in tqdm(
        range(0, n, step), desc="hessian diagonal (HVP columns)", disable=not progress
    ):
        stop = min(n, start + step)
        cols = torch.arange(stop - start, device=op.device)
        basis = torch.zeros(n, stop - start, dtype=op.dtype, device=op.device)
        basis[start + cols, cols] = 1.0
        flat[start:stop] = (op @ basis)[start + cols, cols]
    named = dict(model.named_parameters())
    out, offset = {}, 0
    for name in names:
        p = named[name]
        out[name] = flat[offset : offset + p.numel()].reshape(p.shape).to(p.dtype)
        offset += p.numel()
    return out


def hessian_diagonal(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    params: str | Sequence[str] | None = None,
    *,
    method: str = "auto",
    chunk: int | None = None,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Exact diagonal of the Hessian of the mean loss, per parameter tensor.

    :math:`H_{ii} = \\partial^2 L / \\partial\\theta_i^2` for
    :math:`L = \\frac1N\\sum_x \\ell(f_\\theta(x), y)` (batches weighted by
    their size). With ``method="auto"`` it uses the Gauss–Newton identity of
    the module docstring (Ibayashi et al. 2021, Sec. 4: per-sample Jacobians,
    about :math:`K` backward passes per sample, no loop over parameters) when
    :func:`ggn_identity_violation` finds none, and otherwise the exact but
    :math:`n`-fold more expensive columns of Hessian-vector products, with a
    ``RuntimeWarning`` giving the reason and the cost.

    Args:
        model: The network, in eval mode.
        loss_fn: ``loss_fn(outputs, targets) -> scalar mean loss``.
        data: ``(x, y)`` or an iterable of ``(x, y)`` batches.
        params: ``None`` (all parameters requiring a gradient), a parameter
            name or a list of names; the others are constants.
        method: ``"auto"``, ``"ggn"`` (the identity; raises ``ValueError`` if
            it does not hold) or ``"hvp"`` (``n`` Hessian-vector products).
        chunk: Samples per vmapped Jacobian (``"ggn"``; default: at most
            2**24 Jacobian entries) or unit vectors per product (``"hvp"``; default 32).
        progress: Show a tqdm bar.

    Returns:
        ``dict[param_name, tensor]`` shaped like each parameter (detached,
        the parameter's dtype and device), in the order of ``params``.

    Raises:
        ValueError: unknown ``method``, ``method="ggn"`` where the identity
            does not hold, model in train mode, empty data.
        TypeError: a ``model`` that is not a module, malformed ``data``.
        KeyError: unknown parameter names.

    Example:
        >>> torch.manual_seed(0) and None
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double().eval()
        >>> x, y = torch.randn(6, 3, dtype=torch.float64), torch.randint(0, 2, (6,))
        >>> d = hessian_diagonal(net, nn.CrossEntropyLoss(), (x, y))
        >>> [tuple(v.shape) for v in d.values()]
        [(4, 3), (4,), (2, 4), (2,)]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError("loss_fn must be callable: loss_fn(outputs, targets) -> scalar mean loss")
    if method not in ("auto", "ggn", "hvp"):
        raise ValueError(f"method must be 'auto', 'ggn' or 'hvp', got {method!r}")
    if chunk is not None and (not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"chunk must be None or a positive int, got {chunk!r}")
    training = [n or "<root>" for n, m in model.named_modules() if m.training]
    if training:
        raise ValueError(
            f"model is in train mode (e.g. modules {training[:3]}); call model.eval() first"
        )
    batches = _batches(data)
    names = _block_names(model, params)
    if method == "hvp":
        return _hvp_diagonal(model, loss_fn, batches, names, chunk, progress)
    reason = ggn_identity_violation(model, loss_fn, batches, names)
    if reason is None:
        return _ggn_diagonal(model, batches, names, chunk, progress)
    if method == "ggn":
        raise ValueError(f"method='ggn': the Gauss-Newton identity does not hold here: {reason}")
    n = sum(dict(model.named_parameters())[name].numel() for name in names)
    warnings.warn(
        f"hessian_diagonal: {reason}; using {n} exact Hessian-vector products instead "
        "of the Gauss-Newton identity",
        RuntimeWarning,
        stacklevel=2,
    )
    return _hvp_diagonal(model, loss_fn, batches, names, chunk, progress)
