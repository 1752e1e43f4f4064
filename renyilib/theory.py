"""The paper's structural claims, made checkable: invariance (Prop. 2.2) and Appendix F.

**Reparametrization invariance (Proposition 2.2, Appendix E, Eqs. 50-55).**
For a chain network ``f(x) = W_L σ(W_{L-1} ··· σ(W_1 x + b_1) ···) + b_L`` with
a positively homogeneous activation ``σ(cx) = cσ(x)`` (ReLU, leaky ReLU,
max-pooling), rescale ``W_l → c_l W_l`` with ``c_l > 0``, ``Π_l c_l = 1``.
The function is unchanged only if each bias is rescaled by the *cumulative*
product ``C_l = Π_{k<=l} c_k`` (the pre-activations of layer ``l`` scale by
``C_l``; ``C_L = 1`` restores the output): :func:`rescale_layers` does exactly
this. Along layer ``l``'s weight, the rescaled loss is
``L̃(V) = L(V / c_l)``, so the weight block's Hessian becomes
``H̃ = H / c_l²`` (Eq. 52): the trace and ``λ_max`` move by ``c_l^{-2}`` while
the normalized spectrum, hence ``H_α`` for every ``α`` (Eq. 55), is unchanged.

Where it is not exact (quantified by :func:`invariance_curve`):

- *biases*: the bias block scales by ``C_l^{-2}``, not ``c_l^{-2}``, so a
  block holding a layer's weight *and* bias transforms as ``D^{-1} H D^{-1}``
  with ``D = diag(c_l I, C_l I)``; its ``H_α`` is invariant only when
  ``C_l = c_l``, e.g. for the first layer. Global (all-parameter) ``H_α`` is
  not invariant either: the layer traces, hence the weights ``w_l`` of
  Lemma F.2, move.
- *BatchNorm*: with fixed (eval-mode) statistics a BatchNorm layer breaks the
  ``Π c_l = 1`` symmetry (it is affine, not homogeneous through its shift), so
  the function itself changes.
- *GELU* (the paper's ViT argument): ``GELU(cx)/c ≈ GELU(x)`` only for large
  ``|x|``; the function and the spectrum drift with ``c``.

**Global vs. layer-wise (Appendix F, Eqs. 57-60).** With ``p_i = λ_i / T``,
``T = Tr H``, the power sum ``R_α(H) = Σ_i p_i^α`` (Eq. 57) gives
``-H_α = log R_α / (α - 1)``. For a block-diagonal ``H`` (Lemma F.2, Eq. 58)
``R_α(H) = Σ_l w_l^α σ_α(H_ll)`` with ``w_l = Tr H_ll / T`` and ``σ_α`` the
power sum of the block's own normalized spectrum. Theorem F.4 (Eq. 59):
``R_α >= Σ_l w_l^α d_l^{1-α} >= d^{1-α}`` for ``α > 1`` (reversed for
``0 < α < 1``), with equality iff every block spectrum is uniform and
``w_l = d_l / d``. Proposition F.6 (Eq. 60): for PSD ``H`` and ``α > 1``,
``|R_α(H) - R_α(B)| <= α (Λ*/T)^{α-1} sqrt(d) ||E||_F / T`` with ``B`` the
block-diagonal part, ``E = H - B`` and ``Λ* = max(λ_max(H), λ_max(B))``.
:func:`lemma_f2`, :func:`theorem_f4`, :func:`prop_f6`, :func:`off_block_share`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "AFFINE_TYPES",
    "HOMOGENEOUS_TYPES",
    "affine_layers",
    "block_diagonal_part",
    "dense_hessian",
    "invariance_curve",
    "lemma_f2",
    "off_block_share",
    "power_sum",
    "prop_f6",
    "rescale_layers",
    "theorem_f4",
]

#: Layers rescaled by :func:`rescale_layers` (weights by ``c_l``, bias by ``C_l``).
AFFINE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: Modules that commute with a positive scale: ``m(c x) = c m(x)`` for ``c > 0``.
HOMOGENEOUS_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Dropout,
    nn.Sequential,
    nn.ModuleList,
)


def affine_layers(model: nn.Module) -> list[str]:
    """Names of the affine layers (Linear/Conv) of ``model`` in registration order.

    :func:`rescale_layers` assumes this is also the order in which they are
    applied and that the network is a chain (no skip connections), which holds
    for ``nn.Sequential`` MLPs and plain CNNs.
    """
    return [name for name, m in model.named_modules() if isinstance(m, AFFINE_TYPES)]


def _factor_list(model: nn.Module, factors: Sequence[float] | Mapping[str, float]) -> list[float]:
    names = affine_layers(model)
    if not names:
        raise ValueError("model has no Linear/Conv layers to rescale")
    if isinstance(factors, Mapping):
        unknown = sorted(set(factors) - set(names))
        if unknown:
            raise KeyError(f"factors names unknown layers {unknown}; affine layers are {names}")
        out = [float(factors.get(n, 1.0)) for n in names]
    else:
        out = [float(c) for c in factors]
        if len(out) != len(names):
            raise ValueError(
                f"factors must have one entry per affine layer ({len(names)}: {names}), got {len(out)}"
            )
    if any(not math.isfinite(c) or c <= 0 for c in out):
        raise ValueError(f"factors must all be finite and > 0, got {out}")
    return out


def rescale_layers(
    model: nn.Module,
    factors: Sequence[float] | Mapping[str, float],
    *,
    strict: bool = True,
    rtol: float = 1e-9,
) -> nn.Module:
    """A rescaled copy: ``W_l → c_l W_l`` and ``b_l → C_l b_l`` with ``C_l = Π_{k<=l} c_k``.

    With ``Π_l c_l = 1`` and a chain of affine layers and positively
    homogeneous modules, the copy computes the same function (Prop. 2.2):
    the pre-activation of layer ``l`` becomes ``C_l`` times the original, a
    positive factor that passes through ``σ`` and is undone by ``C_L = 1``.

    Args:
        model: A chain network (e.g. ``nn.Sequential``) of Linear/Conv layers and
            modules from :data:`HOMOGENEOUS_TYPES`.
        factors: ``c_l`` per affine layer, as a list in :func:`affine_layers`
            order or a ``{layer_name: c}`` dict (missing layers get 1).
        strict: If True, raise ``TypeError`` for any other module with
            parameters or a non-homogeneous activation (BatchNorm, GELU, Tanh,
            ...). ``strict=False`` rescales anyway, to measure how far the
            invariance fails (:func:`invariance_curve`).
        rtol: Allowed relative deviation of ``Π c_l`` from 1.

    Returns:
        A new model (deep copy); ``model`` is not modified.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    cs = _factor_list(model, factors)
    prod = math.prod(cs)
    if abs(prod - 1.0) > rtol:
        raise ValueError(f"factors must multiply to 1 (Π c_l = 1), got product {prod!r}")
    if strict:
        bad = [
            f"{name} ({type(m).__name__})"
            for name, m in model.named_modules()
            if name and not isinstance(m, AFFINE_TYPES + HOMOGENEOUS_TYPES)
        ]
        if bad:
            raise TypeError(
                "rescale_layers(strict=True) needs a chain of Linear/Conv layers and positively "
                f"homogeneous modules; found {bad}. Pass strict=False to rescale anyway."
            )
    new = copy.deepcopy(model)
    modules = dict(new.named_modules())
    cumulative = 1.0
    with torch.no_grad():
        for name, c in zip(affine_layers(new), cs):
            cumulative *= c
            layer = modules[name]
            layer.weight.mul_(c)
            if layer.bias is not None:
                layer.bias.mul_(cumulative)
    return new


# --------------------------------------------------------------------------- dense Hessians


def _batches(data: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if isinstance(data, tuple | list) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        return [(data[0], data[1])]
    out = list(data)
    if not out:
        raise ValueError("data must hold at least one (x, y) batch")
    return out


def dense_hessian(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    data: Any,
    params: Sequence[str] | None = None,
) -> tuple[torch.Tensor, list[str], list[int]]:
    """Dense Hessian of the mean loss over ``data`` w.r.t. the named parameters.

    Uses ``renyilib.hessian.hessian_operator(...).to_dense()`` (exact,
    matrix-free columns) — for the small models of the theory checks.

    Args:
        model: The network (its mode is used as is; use eval mode).
        loss_fn: ``loss_fn(outputs, targets)`` -> mean loss.
        data: ``(x, y)`` or an iterable of batches.
        params: Parameter names (default: all trainable, in model order).

    Returns:
        ``(H, names, sizes)``: the ``(P, P)`` Hessian in the model's dtype, the
        parameter names and their numbers of elements, in the order of ``H``.
    """
    named = dict(model.named_parameters())
    names = list(params) if params is not None else [n for n, p in named.items() if p.requires_grad]
    missing = [n for n in names if n not in named]
    if missing:
        raise KeyError(f"params names unknown parameters {missing}; known: {list(named)}")
    from renyilib.hessian import hessian_operator

    op = hessian_operator(model, loss_fn, data, params=names)
    h = op.to_dense()
    h = 0.5 * (h + h.T)
    return h, names, [named[n].numel() for n in names]


# --------------------------------------------------------------------------- invariance


def _entropies(eigenvalues: np.ndarray, alphas: Sequence[float]) -> dict[float, float]:
    from renyilib.renyi import renyi_entropy

    return {float(a): float(renyi_entropy(eigenvalues, float(a), negative="abs")) for a in alphas}


@torch.no_grad()
def _outputs(model: nn.Module, data: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    return torch.cat([model(x) for x, _ in data])


def invariance_curve(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    data: Any,
    layer: str,
    log_c: Iterable[float],
    alphas: Sequence[float],
    *,
    partner: str | None = None,
    blocks: Mapping[str, Sequence[str]] | None = None,
    progress: bool = False,
) -> Any:
    """Entropies, traces and ``λ_max`` of Hessian blocks along a rescaling path.

    For each ``c = exp(log_c)``, ``layer`` is scaled by ``c`` and ``partner``
    (default: the next affine layer) by ``1/c`` (so ``Π c_l = 1``), with
    :func:`rescale_layers` (``strict=False``), and the dense Hessian of the
    rescaled model is eigendecomposed block by block. For a ReLU chain the
    weight blocks' ``H_α`` must be flat in ``c`` and their trace and
    ``λ_max`` must scale as ``c^{-2}`` (layer) and ``c^{2}`` (partner); for
    BatchNorm/GELU models and bias-including blocks the curves show how far
    that fails.

    Args:
        model: Network (eval mode).
        loss_fn: Mean loss.
        data: ``(x, y)`` or batches.
        layer: Name of the affine layer scaled by ``c``.
        log_c: Grid of ``log c`` values.
        alphas: Rényi orders.
        partner: Affine layer scaled by ``1/c`` (default: the next one, else the previous).
        blocks: ``{block_name: [param names]}`` (default: ``<layer>.weight`` for
            ``layer`` and ``partner``, ``<layer>`` = weight+bias for both, and
            ``"all"``).
        progress: tqdm over the grid.

    Returns:
        ``pandas.DataFrame`` with columns ``log_c, c, block, alpha, entropy,
        trace, lambda_max, dim, output_change, loss`` (``output_change`` =
        ``max|f̃(x) - f(x)| / max|f(x)|`` over the data).
    """
    import pandas as pd
    from tqdm.auto import tqdm

    names = affine_layers(model)
    if layer not in names:
        raise KeyError(f"layer must be one of the affine layers {names}, got {layer!r}")
    if partner is None:
        i = names.index(layer)
        if len(names) < 2:
            raise ValueError("invariance_curve needs at least two affine layers")
        partner = names[i + 1] if i + 1 < len(names) else names[i - 1]
    if partner not in names or partner == layer:
        raise KeyError(f"partner must be an affine layer other than {layer!r}, got {partner!r}")
    params = dict(model.named_parameters())
    if blocks is None:
        blocks = {}
        for lay in (layer, partner):
            blocks[f"{lay}.weight"] = [f"{lay}.weight"]
            blocks[lay] = [n for n in (f"{lay}.weight", f"{lay}.bias") if n in params]
        blocks["all"] = [n for n, p in params.items() if p.requires_grad]
    for bname, plist in blocks.items():
        bad = [n for n in plist if n not in params]
        if bad or not plist:
            raise KeyError(f"blocks[{bname!r}] names unknown parameters {bad or plist}")
    batches = _batches(data)
    base_out = _outputs(model, batches)
    scale = float(base_out.abs().max()) or 1.0
    all_names = list(dict.fromkeys(n for plist in blocks.values() for n in plist))
    rows = []
    for lc in tqdm(list(log_c), disable=not progress, desc="rescaling"):
        c = math.exp(float(lc))
        new = rescale_layers(model, {layer: c, partner: 1.0 / c}, strict=False, rtol=1e-6)
        out = _outputs(new, batches)
        change = float((out - base_out).abs().max()) / scale
        with torch.no_grad():
            total = sum(float(loss_fn(new(x), y)) * x.shape[0] for x, y in batches)
            loss = total / sum(x.shape[0] for x, _ in batches)
        h, hnames, sizes = dense_hessian(new, loss_fn, batches, all_names)
        offsets = dict(zip(hnames, np.cumsum([0, *sizes[:-1]]).tolist()))
        hn = h.detach().to("cpu", torch.float64).numpy()
        for bname, plist in blocks.items():
            idx = np.concatenate(
                [np.arange(offsets[n], offsets[n] + params[n].numel()) for n in plist]
            )
            ev = np.linalg.eigvalsh(hn[np.ix_(idx, idx)])
            ent = _entropies(ev, alphas)
            for a in alphas:
                rows.append(
                    {
                        "log_c": float(lc),
                        "c": c,
                        "block": bname,
                        "alpha": float(a),
                        "entropy": ent[float(a)],
                        "trace": float(ev.sum()),
                        "lambda_max": float(ev.max()),
                        "dim": int(idx.size),
                        "output_change": change,
                        "loss": loss,
                    }
                )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- Appendix F


def _sym(h: np.ndarray | torch.Tensor, name: str = "H") -> np.ndarray:
    h = h.detach().cpu().numpy() if isinstance(h, torch.Tensor) else np.asarray(h)
    h = h.astype(np.float64)
    if h.ndim != 2 or h.shape[0] != h.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {h.shape}")
    if not np.all(np.isfinite(h)):
        raise ValueError(f"{name} must be finite")
    scale = max(np.abs(h).max(), 1e-300)
    if np.abs(h - h.T).max() > 1e-8 * scale:
        raise ValueError(f"{name} must be symmetric")
    return 0.5 * (h + h.T)


def _check_sizes(sizes: Sequence[int], dim: int) -> list[int]:
    out = [int(s) for s in sizes]
    if any(s < 1 for s in out) or sum(out) != dim:
        raise ValueError(
            f"block_sizes must be positive and sum to the matrix size {dim}, got {out}"
        )
    return out


def power_sum(eigenvalues: np.ndarray | Sequence[float], alpha: float) -> float:
    """``R_α = Σ_i (λ_i / T)^α`` with ``T = Σ λ_i`` (Eq. 57), for a PSD spectrum.

    Eigenvalues in ``[-1e-12 T, 0)`` (rounding of a PSD matrix) are set to 0;
    clearly negative ones raise ``ValueError`` (Appendix F assumes ``H ⪰ 0``;
    pass ``np.abs`` of an indefinite spectrum, Remark F.7).
    """
    lam = np.asarray(eigenvalues, dtype=np.float64).ravel()
    alpha = float(alpha)
    if not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    total = lam.sum()
    if lam.size == 0 or not np.isfinite(total) or total <= 0:
        raise ValueError(f"eigenvalues must be finite with a positive sum, got sum {total!r}")
    if lam.min() < -1e-12 * total:
        raise ValueError(
            f"eigenvalues must be >= 0 (PSD; use |λ| for an indefinite Hessian), got min {lam.min():.3g}"
        )
    p = np.clip(lam, 0.0, None) / total
    p = p[p > 0]
    return float(np.sum(p**alpha))


def block_diagonal_part(h: np.ndarray | torch.Tensor, block_sizes: Sequence[int]) -> np.ndarray:
    """``B = blk_diag(H_11, ..., H_LL)`` (the principal diagonal blocks of ``H``)."""
    h = _sym(h)
    sizes = _check_sizes(block_sizes, h.shape[0])
    b = np.zeros_like(h)
    start = 0
    for s in sizes:
        b[start : start + s, start : start + s] = h[start : start + s, start : start + s]
        start += s
    return b


def off_block_share(h: np.ndarray | torch.Tensor, block_sizes: Sequence[int]) -> dict[str, float]:
    """The off-block-diagonal share of a Hessian: ``||E||_F / Tr H`` (Prop. F.1/F.6).

    Args:
        h: Symmetric ``(d, d)`` Hessian with ``Tr H > 0``.
        block_sizes: Sizes of the diagonal blocks (the layers), in order.

    Returns:
        ``{"share": ||E||_F / Tr H, "frobenius_share": ||E||_F / ||H||_F,
        "sqrt_d_share": sqrt(d) ||E||_F / Tr H}`` — the last is the factor in
        Prop. F.6's bound and must be small for the bound to say anything.
    """
    h = _sym(h)
    e = h - block_diagonal_part(h, block_sizes)
    trace = float(np.trace(h))
    if trace <= 0:
        raise ValueError(
            f"H must have a positive trace (Appendix F normalizes by Tr H), got {trace:.3g}"
        )
    ef = float(np.linalg.norm(e))
    hf = float(np.linalg.norm(h))
    return {
        "share": ef / trace,
        "frobenius_share": ef / hf if hf > 0 else 0.0,
        "sqrt_d_share": math.sqrt(h.shape[0]) * ef / trace,
    }


def _block_spectra(h: np.ndarray, sizes: Sequence[int]) -> list[np.ndarray]:
    out, start = [], 0
    for size in sizes:
        out.append(np.linalg.eigvalsh(h[start : start + size, start : start + size]))
        start += size
    return out


def lemma_f2(
    h: np.ndarray | torch.Tensor, block_sizes: Sequence[int], alpha: float
) -> dict[str, Any]:
    """Both sides of Lemma F.2 (Eq. 58) for the block-diagonal part of ``h``.

    ``R_α(B) = Σ_i p_i(B)^α`` and ``Σ_l w_l^α σ_α(H_ll)`` with
    ``w_l = Tr H_ll / Tr H``. Exact equality when ``h`` is block diagonal and PSD.
    The spectrum of ``B`` is the union of the blocks' spectra, so ``B`` is never
    diagonalized as a whole.

    Returns:
        ``{"lhs", "rhs", "weights", "sigmas", "block_sizes"}``.
    """
    h = _sym(h)
    sizes = _check_sizes(block_sizes, h.shape[0])
    spectra = _block_spectra(h, sizes)
    lhs = power_sum(np.concatenate(spectra), alpha)
    total = float(np.trace(h))
    weights = [
        float(np.trace(h[a : a + s, a : a + s])) / total
        for a, s in zip(np.cumsum([0, *sizes[:-1]]), sizes)
    ]
    sigmas = [power_sum(ev, alpha) for ev in spectra]
    rhs = float(sum(w**alpha * sg for w, sg in zip(weights, sigmas)))
    return {"lhs": lhs, "rhs": rhs, "weights": weights, "sigmas": sigmas, "block_sizes": sizes}


def theorem_f4(
    h: np.ndarray | torch.Tensor, block_sizes: Sequence[int], alpha: float
) -> dict[str, Any]:
    """The chain of Theorem F.4 (Eq. 59) for the block-diagonal part of ``h``.

    ``R_α(B) >= Σ_l w_l^α d_l^{1-α} >= d^{1-α}`` for ``α > 1``; the reverse
    order for ``0 < α < 1`` (concave powers, Lemma F.3(2)). Equality iff
    every block's spectrum is uniform and ``w_l = d_l / d``.

    Returns:
        ``{"R": R_α(B), "middle": Σ w_l^α d_l^{1-α}, "floor": d^{1-α},
        "holds": bool}`` where ``holds`` checks the order for this ``α``
        (relative tolerance 1e-10).
    """
    f2 = lemma_f2(h, block_sizes, alpha)
    sizes = f2["block_sizes"]
    d = sum(sizes)
    middle = float(sum(w**alpha * dl ** (1 - alpha) for w, dl in zip(f2["weights"], sizes)))
    floor = float(d ** (1 - alpha))
    r = f2["lhs"]
    tol = 1e-10 * max(abs(r), abs(floor))
    if alpha > 1:
        holds = r >= middle - tol and middle >= floor - tol
    else:
        holds = r <= middle + tol and middle <= floor + tol
    return {"R": r, "middle": middle, "floor": floor, "holds": bool(holds)}


def prop_f6(
    h: np.ndarray | torch.Tensor,
    block_sizes: Sequence[int],
    alpha: float,
    eigenvalues: np.ndarray | None = None,
) -> dict[str, float]:
    """Both sides of Proposition F.6 (Eq. 60): ``|R_α(H) - R_α(B)|`` and its bound.

    ``bound = α (Λ*/T)^{α-1} sqrt(d) ||E||_F / T`` with
    ``Λ* = max(λ_max(H), λ_max(B))``. Stated for PSD ``H`` and ``α > 1``
    (Hoffman-Wielandt, then the mean value theorem for ``x^α`` on ``[0, Λ*]``).

    Args:
        h: Symmetric PSD matrix.
        block_sizes: Diagonal block sizes.
        alpha: Order ``α > 1``.
        eigenvalues: Eigenvalues of ``h`` if already known (saves one ``eigvalsh``).

    Returns:
        ``{"gap", "bound", "share"}`` with ``share = ||E||_F / T``.
    """
    alpha = float(alpha)
    if alpha <= 1:
        raise ValueError(f"alpha must be > 1 for Proposition F.6, got {alpha!r}")
    h = _sym(h)
    sizes = _check_sizes(block_sizes, h.shape[0])
    ev_h = (
        np.linalg.eigvalsh(h) if eigenvalues is None else np.asarray(eigenvalues, dtype=np.float64)
    )
    if ev_h.shape != (h.shape[0],):
        raise ValueError(f"eigenvalues must have shape ({h.shape[0]},), got {ev_h.shape}")
    ev_b = np.concatenate(_block_spectra(h, sizes))
    t = float(np.trace(h))
    gap = abs(power_sum(ev_h, alpha) - power_sum(ev_b, alpha))
    lam_star = max(ev_h.max(), ev_b.max())
    ef = float(np.linalg.norm(h - block_diagonal_part(h, sizes)))
    bound = alpha * (lam_star / t) ** (alpha - 1) * math.sqrt(h.shape[0]) * ef / t
    return {"gap": float(gap), "bound": float(bound), "share": ef / t}
