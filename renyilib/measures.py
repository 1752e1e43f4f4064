"""Baseline sharpness and complexity measures the paper compares Rényi sharpness with.

Section 5.1 (and the panels of Figs. 2, 8–13) compares Rényi sharpness with:

* :func:`hessian_trace` — Tr ∇²L (Hutchinson's estimator, Eq. 7, or from an
  existing stochastic Lanczos quadrature), and :func:`lambda_max` — the largest
  eigenvalue of ∇²L (Lanczos, with its residual);
* :func:`fisher_rao_norm` — the Fisher–Rao norm of Liang et al. (2019) in the
  form used by Jiang et al. (2019, "Fantastic generalization measures", App. C):
  μ_fr = (d + 1)² / m · Σ_i ⟨w, ∇_w ℓ(f_w(x_i), y_i)⟩²;
* :func:`pacbayes` — "pacbayes flat" μ = 1/σ'² and "pacbayes orig"
  μ = ‖w − w0‖² / (4σ'²) + log(m / σ') + 10 of Jiang et al. (2019), with σ' the
  largest noise *standard deviation* such that Gaussian weight noise
  u ~ N(0, σ'² I) lowers the training accuracy by 0.1 (bisection, Monte Carlo);
* :func:`param_norm` — the L2 norm of the parameters;
* :func:`sam_sharpness` — worst-case m-sharpness in an L2 ball of radius ρ
  (Foret et al. 2021; Andriushchenko et al. 2023):
  S = E_B [ max_{‖δ‖₂ ≤ ρ} L_B(w + δ) − L_B(w) ] over batches B of m points,
  by projected gradient ascent;
* :func:`asam_sharpness` — its adaptive version (Kwon et al. 2021;
  Andriushchenko et al. 2023): the ball ‖δ / c‖₂ ≤ ρ with c = |w| + η.

Every function evaluates the model in ``eval()`` mode (BatchNorm running
statistics, no dropout; the caller's mode is restored), never changes the
model's parameters, takes a ``seed`` where it is random, and returns a dict with
its value(s) *and* its settings, so that a cached result records how it was
measured. :func:`compute_measures` runs several of them.

Data is a pair ``(x, y)`` or an iterable of such batches (the un-augmented
sharpness subset, App. G.4); losses are ``loss_fn(outputs, targets) -> mean``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, jvp, vmap
from tqdm.auto import tqdm

from renyilib.batches import as_batches, batch_size, to_device
from renyilib.hessian import hessian_operator, layer_blocks
from renyilib.modes import eval_mode

__all__ = [
    "MEASURES",
    "asam_sharpness",
    "compute_measures",
    "fisher_rao_norm",
    "hessian_trace",
    "lambda_max",
    "noise_accuracy_drop",
    "pacbayes",
    "param_norm",
    "sam_sharpness",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: Names accepted by :func:`compute_measures`.
MEASURES = (
    "trace",
    "lambda_max",
    "fisher_rao",
    "pacbayes",
    "param_norm",
    "sam",
    "asam",
    "min_sharpness",
)


# --------------------------------------------------------------------------- helpers


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _batches(data: Any) -> list[tuple[Any, Any]]:
    batches = as_batches(data)
    if not batches or sum(batch_size(x) for x, _ in batches) == 0:
        raise ValueError("data: expected at least one sample")
    return batches


def _named_params(model: nn.Module, params: Sequence[str] | None) -> list[tuple[str, nn.Parameter]]:
    named = dict(model.named_parameters())
    if params is None:
        out = [(k, p) for k, p in named.items() if p.requires_grad]
    else:
        unknown = [k for k in params if k not in named]
        if unknown:
            raise KeyError(f"params: unknown parameter names {unknown}; valid: {list(named)}")
        out = [(k, named[k]) for k in params]
    if not out:
        raise ValueError("params: no parameters selected")
    return out


def _mean_loss(model: nn.Module, loss_fn: LossFn, batches: list[tuple[Any, Any]]) -> float:
    dev = _device(model)
    total, count = 0.0, 0
    with torch.no_grad():
        for x, y in batches:
            n = batch_size(x)
            args = to_device(x, dev) if isinstance(x, tuple) else (to_device(x, dev),)
            total += float(loss_fn(model(*args), to_device(y, dev))) * n
            count += n
    return total / count


def _accuracy(model: nn.Module, batches: list[tuple[Any, Any]]) -> float:
    dev = _device(model)
    correct, count = 0, 0
    with torch.no_grad():
        for x, y in batches:
            args = to_device(x, dev) if isinstance(x, tuple) else (to_device(x, dev),)
            out = model(*args)
            correct += int((out.argmax(dim=1) == to_device(y, dev)).sum())
            count += batch_size(x)
    return correct / count


def _check_positive(name: str, value: float, integer: bool = False) -> None:
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if not ok or isinstance(value, bool) or not value > 0 or not math.isfinite(value):
        kind = "a positive int" if integer else "a positive finite number"
        raise ValueError(f"{name} must be {kind}, got {value!r}")


# --------------------------------------------------------------------------- Hessian-based


def hessian_trace(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    params: str | Sequence[str] | None = None,
    *,
    num_probes: int = 100,
    seed: int = 0,
    quadrature: Any = None,
    chunk: int = 10,
) -> dict[str, Any]:
    """Trace of the loss Hessian, Tr ∇²L, by Hutchinson's estimator (Eq. 7 with f(x) = x).

    Tr H = E[vᵀ H v] for Rademacher probes v; the estimate is the mean of vᵀHv
    over ``num_probes`` probes and its standard error is their standard
    deviation / √num_probes. When a ``SpectralQuadrature`` of the same block
    exists (the Rényi profile already ran SLQ), pass it as ``quadrature``: its
    ``trace()`` (n/l · Σ_k Σ_j τ_kj θ_kj = n/l · Σ_k v_kᵀ H v_k) is returned and
    no Hessian-vector product is spent.

    Args:
        model, loss_fn, data: The model (evaluated in eval mode), the mean loss
            and the data (pair or batches).
        params: Block as in :func:`renyilib.hessian.hessian_operator` (``None``: all).
        num_probes: Number of Rademacher probes.
        seed: Seed of the probes.
        quadrature: Optional ``SpectralQuadrature`` to read the trace from.
        chunk: Probes per batched product.

    Returns:
        Dict with ``trace``, ``trace_stderr``, ``num_matvecs``, ``dim`` and the settings.
    """
    if quadrature is not None:
        tr = quadrature.trace()
        value, se = (tr if isinstance(tr, tuple) else (tr, float("nan")))[:2]
        return {
            "trace": float(value),
            "trace_stderr": float(se),
            "num_matvecs": 0,
            "dim": int(getattr(quadrature, "dim", -1)),
            "settings": {"source": "slq"},
        }
    _check_positive("num_probes", num_probes, integer=True)
    with eval_mode(model):
        op = hessian_operator(model, loss_fn, data, params)
        n = op.shape[0]
        gen = torch.Generator().manual_seed(seed)
        vals = []
        done = 0
        while done < num_probes:
            k = min(chunk, num_probes - done)
            V = (
                (torch.randint(0, 2, (n, k), generator=gen, device="cpu") * 2 - 1)
                .to(op.dtype)
                .to(op.device)
            )
            vals.append((V * (op @ V)).sum(0).detach().double().cpu())
            done += k
    v = torch.cat(vals)
    se = float(v.std(unbiased=True) / math.sqrt(v.numel())) if v.numel() > 1 else float("nan")
    return {
        "trace": float(v.mean()),
        "trace_stderr": se,
        "num_matvecs": int(op.num_matvecs),
        "dim": int(n),
        "settings": {
            "source": "hutchinson",
            "num_probes": num_probes,
            "seed": seed,
            "probe": "rademacher",
        },
    }


def lambda_max(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    params: str | Sequence[str] | None = None,
    *,
    seed: int = 0,
    **lanczos_kwargs: Any,
) -> dict[str, Any]:
    """Largest algebraic eigenvalue λ_max of the loss Hessian, by Lanczos.

    Calls :func:`renyilib.lanczos.top_eigenpair` on the Hessian operator and
    reports the residual ‖H v − λ v‖ of the returned unit eigenvector, which
    bounds the distance of λ to the spectrum (for symmetric H, some eigenvalue
    lies within the residual of λ).

    Args:
        model, loss_fn, data, params: As in :func:`hessian_trace`.
        seed: Seed of the Lanczos start vector.
        **lanczos_kwargs: Passed to ``top_eigenpair`` (e.g. ``max_steps``, ``tol``).

    Returns:
        Dict with ``lambda_max``, ``residual``, ``num_matvecs``, ``dim`` and the settings.
    """
    from renyilib.lanczos import top_eigenpair

    with eval_mode(model):
        op = hessian_operator(model, loss_fn, data, params)
        value, _vector, residual = top_eigenpair(op, seed=seed, **lanczos_kwargs)
    return {
        "lambda_max": float(value),
        "residual": float(residual),
        "num_matvecs": int(op.num_matvecs),
        "dim": int(op.shape[0]),
        "settings": {"seed": seed, **lanczos_kwargs},
    }


# --------------------------------------------------------------------------- norms


def param_norm(model: nn.Module, params: Sequence[str] | None = None) -> dict[str, Any]:
    """L2 norm of the parameters, ‖w‖₂ = (Σ_j w_j²)^{1/2} (Jiang et al. 2019's "l2").

    Args:
        model: The network.
        params: Parameter names (``None``: every parameter requiring a gradient).

    Returns:
        Dict with ``param_norm`` (‖w‖₂), ``param_norm_sq`` (‖w‖₂²) and ``num_params``.
    """
    sel = _named_params(model, params)
    sq = sum(float(p.detach().double().pow(2).sum()) for _, p in sel)
    return {
        "param_norm": math.sqrt(sq),
        "param_norm_sq": sq,
        "num_params": int(sum(p.numel() for _, p in sel)),
        "settings": {"params": "all" if params is None else list(params)},
    }


def fisher_rao_norm(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    *,
    depth: int | None = None,
    params: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Fisher–Rao norm of Liang et al. (2019) as used by Jiang et al. (2019).

    .. math::

        \\mu_{fr}(w) = \\frac{(d+1)^2}{m} \\sum_{i=1}^m \\langle w, \\nabla_w \\ell(f_w(x_i), y_i) \\rangle^2,

    with d the depth (number of Conv/Linear layers) and m the number of samples.
    For a bias-free ReLU network with d weight layers, f is positively
    d-homogeneous in w, so Euler's identity gives ⟨w, ∇_w ℓ⟩ = d·⟨∂ℓ/∂f, f⟩
    (Liang et al.'s closed form); Jiang et al. evaluate the inner product
    directly, for any network. Each ⟨w, ∇_w ℓ_i⟩ is the directional derivative of
    the per-sample loss ℓ_i along w itself, computed exactly for all samples
    at once with one forward-mode product (``torch.func.jvp``).

    Args:
        model, loss_fn, data: As in :func:`hessian_trace`; ``loss_fn`` must
            work on a batch of one sample (per-sample losses are taken with
            ``vmap``).
        depth: d; default the number of Conv/Linear layers
            (:func:`renyilib.hessian.layer_blocks`).
        params: Parameters forming w (``None``: all requiring a gradient).

    Returns:
        Dict with ``fisher_rao`` (μ_fr), ``mean_sq_directional`` (the mean of
        ⟨w, ∇ℓ_i⟩²), ``depth`` and ``num_samples``.
    """
    if depth is None:
        depth = len(layer_blocks(model)) - 1
    _check_positive("depth", depth, integer=True)
    sel = _named_params(model, params)
    names = [k for k, _ in sel]
    primals = {k: p.detach() for k, p in sel}
    consts = {k: v.detach() for k, v in model.named_parameters() if k not in set(names)}
    consts.update(dict(model.named_buffers()))
    dev = _device(model)
    batches = _batches(data)
    total, count = 0.0, 0
    with eval_mode(model):
        for x, y in batches:
            x, y = to_device(x, dev), to_device(y, dev)
            args = x if isinstance(x, tuple) else (x,)

            def per_sample(p: dict[str, torch.Tensor], args=args, y=y) -> torch.Tensor:
                out = functional_call(model, {**consts, **p}, args)
                return vmap(lambda o, t: loss_fn(o.unsqueeze(0), t.unsqueeze(0)))(out, y)

            _, directional = jvp(per_sample, (primals,), (primals,))
            total += float(directional.detach().double().pow(2).sum())
            count += batch_size(x)
    mean_sq = total / count
    return {
        "fisher_rao": (depth + 1) ** 2 * mean_sq,
        "mean_sq_directional": mean_sq,
        "depth": depth,
        "num_samples": count,
        "settings": {"depth": depth, "params": "all" if params is None else list(params)},
    }


# --------------------------------------------------------------------------- PAC-Bayes


def _noise_draw(seed: int, k: int, j: int, p: torch.Tensor) -> torch.Tensor:
    """Standard-normal draw ``k`` for parameter ``j`` (the same at every σ: common random numbers)."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + 7919 * k + j)
    return torch.randn(p.shape, generator=g, dtype=torch.float64, device="cpu").to(
        device=p.device, dtype=p.dtype
    )


def noise_accuracy_drop(
    model: nn.Module,
    data: Any,
    sigma: float,
    *,
    mc_samples: int = 10,
    seed: int = 0,
    params: Sequence[str] | None = None,
) -> dict[str, float]:
    r"""Accuracy drop under isotropic Gaussian weight noise, the function :func:`pacbayes` inverts.

    .. math::

        \Delta(\sigma) = \Bigl|\operatorname{acc}(w) - \frac1K \sum_{k=1}^{K}
        \operatorname{acc}(w + \sigma z_k)\Bigr|, \qquad z_k \sim \mathcal N(0, I),

    with ``K = mc_samples`` draws :math:`z_k` fixed by ``seed`` (the same
    :math:`z_k` at every σ, so that :math:`\Delta` is a deterministic function
    of σ). The model runs in eval mode and its parameters are restored.

    Args:
        model: A classifier (the prediction is the argmax of the outputs).
        data: A pair ``(x, y)`` or an iterable of batches.
        sigma: Noise standard deviation σ ≥ 0.
        mc_samples: Number of draws ``K``.
        seed: Seed of the draws.
        params: Parameters receiving noise (``None``: all requiring a gradient).

    Returns:
        Dict with ``drop`` (Δ(σ)), ``accuracy`` (unperturbed) and
        ``perturbed_accuracy`` (the mean over the draws).
    """
    if not (isinstance(sigma, int | float) and not isinstance(sigma, bool)) or not sigma >= 0:
        raise ValueError(f"sigma must be a non-negative number, got {sigma!r}")
    _check_positive("mc_samples", mc_samples, integer=True)
    batches = _batches(data)
    sel = _named_params(model, params)
    with eval_mode(model):
        acc0 = _accuracy(model, batches)
        mean_acc = _perturbed_accuracy(model, batches, sel, float(sigma), mc_samples, seed)
    return {"drop": abs(acc0 - mean_acc), "accuracy": acc0, "perturbed_accuracy": mean_acc}


def _perturbed_accuracy(
    model: nn.Module,
    batches: list[tuple[Any, Any]],
    sel: list[tuple[str, nn.Parameter]],
    sigma: float,
    mc_samples: int,
    seed: int,
) -> float:
    originals = [p.detach().clone() for _, p in sel]
    accs = []
    try:
        for k in range(mc_samples):
            with torch.no_grad():
                for j, ((_, p), w) in enumerate(zip(sel, originals)):
                    p.copy_(w + sigma * _noise_draw(seed, k, j, p))
            accs.append(_accuracy(model, batches))
    finally:
        with torch.no_grad():
            for (_, p), w in zip(sel, originals):
                p.copy_(w)
    return sum(accs) / len(accs)


def pacbayes(
    model: nn.Module,
    data: Any,
    *,
    num_train: int | None = None,
    target_drop: float = 0.1,
    rel_precision: float = 0.02,
    search_depth: int = 15,
    mc_samples: int = 10,
    sigma_max: float = 2.0,
    seed: int = 0,
    w0: dict[str, torch.Tensor] | None = None,
    params: Sequence[str] | None = None,
    progress: bool = False,
    tolerance: float | None = None,
) -> dict[str, Any]:
    r"""PAC-Bayes flatness and bound of Jiang et al. (2019): "pacbayes flat" and "pacbayes orig".

    σ' is the noise standard deviation at which isotropic Gaussian weight
    noise u ~ N(0, σ'² I) lowers the accuracy on ``data`` by ``target_drop``
    (Jiang et al.: 0.1): the crossing of Δ(σ) = target of
    :func:`noise_accuracy_drop` (``mc_samples`` draws, reused at every σ).

    **Search, in log σ, to a stated relative precision.** A bracket
    :math:`[\sigma_{lo}, \sigma_{hi}]` with :math:`\Delta(\sigma_{lo}) <`
    target :math:`\le \Delta(\sigma_{hi})` is found from ``sigma_max`` by
    halving (while the drop is too large, down to :math:`2^{-60}`
    ``sigma_max``) or doubling (while it is too small, up to :math:`2^{30}`
    ``sigma_max``), then bisected at the geometric midpoint
    :math:`\sqrt{\sigma_{lo}\sigma_{hi}}` until
    :math:`\sigma_{hi}/\sigma_{lo} \le 1 +` ``rel_precision``. The result is
    :math:`\sigma' = \sqrt{\sigma_{lo}\sigma_{hi}}`: for a drop that is
    non-decreasing in σ it lies within a factor
    :math:`\sqrt{1 + \text{rel\_precision}}` (about 1% for the default 2%) of
    the crossing, at any scale of σ'. From a factor-2 bracket the 2% precision
    takes 6 bisection steps. If the bracket is not resolved within
    ``search_depth`` bisection steps, or no bracket exists, ``converged`` is
    False and σ', μ_flat and μ_orig are NaN. Then

    .. math::

        \mu_{flat} = 1/\sigma'^2, \qquad
        \mu_{orig} = \frac{\lVert w - w_0 \rVert_2^2}{4\sigma'^2} + \log\frac{m}{\sigma'} + 10,

    with m the training-set size and w0 = 0 ("orig", the origin; pass the
    initial weights as ``w0`` for Jiang et al.'s "init" variant). Note σ' is a
    standard deviation: noise drawn with *variance* σ (a slip found in some
    public implementations) gives a different σ'.

    Args:
        model: A classifier (argmax of the outputs is the prediction).
        data: The (un-augmented) points whose accuracy is measured.
        num_train: m in the bound (default: the number of points in ``data``).
        target_drop: Accuracy drop sought.
        rel_precision: Relative width :math:`\sigma_{hi}/\sigma_{lo} - 1` at
            which the search stops (> 0).
        search_depth: Maximum bisection steps after the bracket is found.
        mc_samples: Noise draws per σ.
        sigma_max: Starting point of the bracket search.
        seed: Seed of the noise.
        w0: Reference weights for the bound (state-dict-like, by parameter name).
        params: Parameters receiving noise and entering ‖w − w0‖ (``None``: all
            requiring a gradient; Jiang et al. perturb all parameters).
        progress: tqdm over the bisection.
        tolerance: Deprecated and ignored (the old stopping rule
            :math:`|\Delta - \text{target}| <` tolerance did not bound the error of σ').

    Returns:
        Dict with ``sigma`` (σ', NaN unless converged), ``sigma_lo``,
        ``sigma_hi`` (the final bracket), ``pacbayes_flat``, ``pacbayes_orig``,
        ``accuracy`` (unperturbed), ``perturbed_accuracy`` and ``drop`` at
        ``sigma_hi``, ``converged``, the search trace ``evaluations`` (σ, drop)
        and the settings.
    """
    if tolerance is not None:
        warnings.warn(
            "pacbayes(tolerance=...) is deprecated and ignored: the search now resolves sigma' "
            "to rel_precision (relative width of the bracket)",
            DeprecationWarning,
            stacklevel=2,
        )
    for name, v in [
        ("target_drop", target_drop),
        ("rel_precision", rel_precision),
        ("sigma_max", sigma_max),
    ]:
        _check_positive(name, v)
    _check_positive("search_depth", search_depth, integer=True)
    _check_positive("mc_samples", mc_samples, integer=True)
    batches = _batches(data)
    m = num_train if num_train is not None else sum(batch_size(x) for x, _ in batches)
    _check_positive("num_train", m, integer=True)
    sel = _named_params(model, params)
    originals = [p.detach().clone() for _, p in sel]

    evaluations: list[tuple[float, float]] = []
    at: dict[float, tuple[float, float]] = {}
    with eval_mode(model):
        acc0 = _accuracy(model, batches)

        def drop_at(sigma: float) -> float:
            mean_acc = _perturbed_accuracy(model, batches, sel, sigma, mc_samples, seed)
            d = abs(acc0 - mean_acc)
            evaluations.append((sigma, d))
            at[sigma] = (d, mean_acc)
            return d

        lo, hi = math.nan, float(sigma_max)
        if drop_at(hi) >= target_drop:
            for _ in range(60):  # shrink while the drop is too large
                cand = hi / 2
                if drop_at(cand) < target_drop:
                    lo = cand
                    break
                hi = cand
        else:
            for _ in range(30):  # expand while the drop is too small
                lo, hi = hi, 2 * hi
                if drop_at(hi) >= target_drop:
                    break
            else:
                lo, hi = hi, math.nan
        bracketed = math.isfinite(lo) and math.isfinite(hi)
        steps = tqdm(range(search_depth), disable=not progress, desc="pacbayes σ")
        for _ in steps:
            if not bracketed or hi / lo <= 1 + rel_precision:
                break
            mid = math.sqrt(lo * hi)
            if drop_at(mid) >= target_drop:
                hi = mid
            else:
                lo = mid
    converged = bracketed and hi / lo <= 1 + rel_precision
    sigma = math.sqrt(lo * hi) if converged else math.nan
    drop, acc_sigma = at.get(hi, (math.nan, math.nan))
    if w0 is None:
        dist_sq = sum(float(w.double().pow(2).sum()) for w in originals)
    else:
        missing = [k for k, _ in sel if k not in w0]
        if missing:
            raise KeyError(f"w0 lacks parameters {missing}")
        dist_sq = sum(
            float((w.double() - w0[k].to(w.device).double()).pow(2).sum())
            for (k, _), w in zip(sel, originals)
        )
    return {
        "sigma": sigma,
        "sigma_lo": lo,
        "sigma_hi": hi,
        "pacbayes_flat": 1.0 / sigma**2,
        "pacbayes_orig": dist_sq / (4 * sigma**2) + math.log(m / sigma) + 10.0,
        "accuracy": acc0,
        "perturbed_accuracy": acc_sigma,
        "drop": drop,
        "converged": converged,
        "evaluations": evaluations,
        "settings": {
            "target_drop": target_drop,
            "rel_precision": rel_precision,
            "search": "log-sigma bracket (halve/double from sigma_max), geometric bisection",
            "search_depth": search_depth,
            "mc_samples": mc_samples,
            "sigma_max": sigma_max,
            "seed": seed,
            "num_train": m,
            "w0": "origin" if w0 is None else "given",
            "noise": "N(0, sigma^2 I), sigma a standard deviation",
        },
    }


# --------------------------------------------------------------------------- SAM / ASAM


def _stack(batches: list[tuple[Any, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*batches)
    if not all(isinstance(x, torch.Tensor) for x in xs):
        raise TypeError("sam_sharpness: inputs must be tensors")
    return torch.cat(xs), torch.cat(ys)


def sam_sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    *,
    rho: float = 0.05,
    m: int = 128,
    steps: int = 20,
    num_batches: int | None = None,
    adaptive: bool = False,
    eta: float = 0.01,
    params: Sequence[str] | None = None,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Worst-case m-sharpness in an L2 ball (SAM), or its adaptive version (ASAM).

    .. math::

        S_\\rho = \\frac{1}{B} \\sum_{b=1}^{B} \\max_{\\lVert \\delta / c \\rVert_2 \\le \\rho}
                  L_b(w + \\delta) - L_b(w),

    over B batches of ``m`` points (a seeded partition of ``data``; a last
    partial batch is dropped unless there is only one), with c = 1 (SAM, Foret
    et al. 2021) or c = |w| + η elementwise (ASAM's T_w, Kwon et al. 2021; the
    "adaptive sharpness" of Andriushchenko et al. 2023). The maximum is
    approached by projected normalized gradient ascent in γ = δ / c:
    γ ← Π_{‖γ‖ ≤ ρ}(γ + s_k ∇_γ / ‖∇_γ‖), ∇_γ = c ⊙ ∇_δ L_b, with a cosine step
    s_k = ρ (1 + cos(π k / steps)) / 2, from a seeded random start of norm
    10⁻³ ρ; the value per batch is the largest L_b(w + δ) − L_b(w) seen over
    the ascent (each evaluated point is feasible, so it is a lower bound of
    the true maximum that is exact for a linear loss and tight for a convex
    quadratic). The model runs in eval mode (BatchNorm running statistics) and
    its parameters are restored.

    Args:
        model, loss_fn, data: As in :func:`hessian_trace`; ``data`` should be
            un-augmented training points.
        rho: Radius ρ (the paper trains SAM with 0.05 on CIFAR-10, ASAM 0.5).
        m: Points per batch (m-sharpness; Andriushchenko et al. use 128).
        steps: Gradient-ascent steps per batch.
        num_batches: Use at most this many batches (``None``: all).
        adaptive: ASAM's elementwise scaling c = |w| + η.
        eta: η of the adaptive scaling (the paper's ASAM: 0.01).
        params: Parameters perturbed (``None``: all requiring a gradient).
        seed: Seed of the partition and of the random start.
        progress: tqdm over batches.

    Returns:
        Dict with ``sharpness`` (S_ρ), ``per_batch`` values, ``num_gradients``
        and the settings.
    """
    _check_positive("rho", rho)
    _check_positive("m", m, integer=True)
    _check_positive("steps", steps, integer=True)
    if num_batches is not None:
        _check_positive("num_batches", num_batches, integer=True)
    if adaptive and not (isinstance(eta, int | float) and eta >= 0):
        raise ValueError(f"eta must be a non-negative number, got {eta!r}")
    x_all, y_all = _stack(_batches(data))
    n = x_all.shape[0]
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen, device="cpu")
    nb = max(1, n // m)
    if num_batches is not None:
        nb = min(nb, num_batches)
    sel = _named_params(model, params)
    originals = [p.detach().clone() for _, p in sel]
    scales = [(w.abs() + eta) if adaptive else torch.ones_like(w) for w in originals]
    dev = originals[0].device
    per_batch: list[float] = []
    grads_used = 0

    def set_delta(gamma: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for (_, p), w, c, g in zip(sel, originals, scales, gamma):
                p.copy_(w + c * g)

    def loss_and_grad(xb: torch.Tensor, yb: torch.Tensor) -> tuple[float, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = loss_fn(model(xb), yb)
            gs = torch.autograd.grad(loss, [p for _, p in sel], allow_unused=True)
        gs = [torch.zeros_like(p) if g is None else g for g, (_, p) in zip(gs, sel)]
        return float(loss.detach()), gs

    try:
        with eval_mode(model):
            for b in tqdm(range(nb), disable=not progress, desc="sam" if not adaptive else "asam"):
                idx = perm[b * m : (b + 1) * m] if n >= m else perm
                xb, yb = to_device(x_all[idx], dev), to_device(y_all[idx], dev)
                set_delta([torch.zeros_like(w) for w in originals])
                with torch.no_grad():
                    base = float(loss_fn(model(xb), yb))
                gamma = [
                    torch.randn(w.shape, generator=gen, dtype=torch.float64, device="cpu").to(w)
                    for w in originals
                ]
                norm = math.sqrt(sum(float(g.double().pow(2).sum()) for g in gamma))
                gamma = [g * (1e-3 * rho / norm) for g in gamma]
                best = -math.inf
                for k in range(steps + 1):
                    set_delta(gamma)
                    if k == steps:
                        with torch.no_grad():
                            best = max(best, float(loss_fn(model(xb), yb)) - base)
                        break
                    loss, gs = loss_and_grad(xb, yb)
                    grads_used += 1
                    best = max(best, loss - base)
                    gg = [g * c for g, c in zip(gs, scales)]
                    gnorm = math.sqrt(sum(float(g.double().pow(2).sum()) for g in gg))
                    if gnorm == 0.0:
                        break
                    step = rho * (1 + math.cos(math.pi * k / steps)) / 2
                    gamma = [g + step * d / gnorm for g, d in zip(gamma, gg)]
                    gam_norm = math.sqrt(sum(float(g.double().pow(2).sum()) for g in gamma))
                    if gam_norm > rho:
                        gamma = [g * (rho / gam_norm) for g in gamma]
                per_batch.append(best)
    finally:
        with torch.no_grad():
            for (_, p), w in zip(sel, originals):
                p.copy_(w)
        model.zero_grad(set_to_none=True)
    return {
        "sharpness": sum(per_batch) / len(per_batch),
        "per_batch": per_batch,
        "num_gradients": grads_used,
        "settings": {
            "rho": rho,
            "m": m if n >= m else n,
            "steps": steps,
            "num_batches": len(per_batch),
            "adaptive": adaptive,
            "eta": eta if adaptive else None,
            "seed": seed,
            "ball": "||delta/(|w|+eta)||_2 <= rho" if adaptive else "||delta||_2 <= rho",
        },
    }


def asam_sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    *,
    rho: float = 0.5,
    eta: float = 0.01,
    **kwargs: Any,
) -> dict[str, Any]:
    """Adaptive (ASAM) worst-case m-sharpness: :func:`sam_sharpness` with ``adaptive=True``.

    The ball is ‖δ / (|w| + η)‖₂ ≤ ρ (Kwon et al. 2021, Eq. 7's T_w = |w| + η),
    defaults ρ = 0.5 and η = 0.01 (the paper's ASAM settings for CIFAR-10, Table 4).
    """
    return sam_sharpness(model, loss_fn, data, rho=rho, eta=eta, adaptive=True, **kwargs)


# --------------------------------------------------------------------------- all at once


def compute_measures(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    which: Sequence[str] = MEASURES,
    *,
    seed: int = 0,
    settings: dict[str, dict[str, Any]] | None = None,
    quadrature: Any = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run several baseline measures on one model.

    Args:
        model, loss_fn, data: As in each measure.
        which: Names from :data:`MEASURES`.
        seed: Seed given to every random measure.
        settings: Per-measure keyword overrides, e.g. ``{"sam": {"rho": 0.1}}``.
        quadrature: A ``SpectralQuadrature`` of the whole model ("all" block),
            reused for the trace.
        progress: tqdm over the measures.

    Returns:
        Dict ``{name: value}`` of the headline numbers (``trace``, ``lambda_max``,
        ``fisher_rao``, ``pacbayes_flat``, ``pacbayes_orig``, ``pacbayes_sigma``
        (NaN unless the σ' search converged), ``pacbayes_converged``,
        ``param_norm``, ``sam``, ``asam``, ``min_sharpness`` (NaN for a network
        outside its scope — BatchNorm, residual connections, smooth activations —
        with the reason in ``details``)), plus ``details`` (each measure's full
        dict with its settings) and ``seconds`` per measure.
    """
    unknown = [w for w in which if w not in MEASURES]
    if unknown:
        raise ValueError(f"which: unknown measures {unknown}; known: {list(MEASURES)}")
    settings = dict(settings or {})
    bad = [k for k in settings if k not in MEASURES]
    if bad:
        raise ValueError(f"settings: unknown measures {bad}; known: {list(MEASURES)}")
    out: dict[str, Any] = {"details": {}, "seconds": {}}
    for name in tqdm(list(which), disable=not progress, desc="measures"):
        kw = settings.get(name, {})
        start = time.perf_counter()
        if name == "trace":
            r = hessian_trace(model, loss_fn, data, seed=seed, quadrature=quadrature, **kw)
            out["trace"] = r["trace"]
        elif name == "lambda_max":
            r = lambda_max(model, loss_fn, data, seed=seed, **kw)
            out["lambda_max"] = r["lambda_max"]
        elif name == "fisher_rao":
            r = fisher_rao_norm(model, loss_fn, data, **kw)
            out["fisher_rao"] = r["fisher_rao"]
        elif name == "pacbayes":
            r = pacbayes(model, data, seed=seed, **kw)
            out["pacbayes_flat"] = r["pacbayes_flat"]
            out["pacbayes_orig"] = r["pacbayes_orig"]
            out["pacbayes_sigma"] = r["sigma"]
            out["pacbayes_converged"] = r["converged"]
        elif name == "param_norm":
            r = param_norm(model, **kw)
            out["param_norm"] = r["param_norm"]
        elif name == "sam":
            r = sam_sharpness(model, loss_fn, data, seed=seed, **kw)
            out["sam"] = r["sharpness"]
        elif name == "min_sharpness":
            from renyilib.rescaling import minimum_sharpness

            try:
                res = minimum_sharpness(model, loss_fn, data, seed=seed, **kw)
                r = res.as_dict()
                out["min_sharpness"] = res.value if res.converged else float("nan")
            except ValueError as err:  # not a rescalable feed-forward ReLU network
                r = {"min_sharpness": float("nan"), "refused": str(err)}
                out["min_sharpness"] = float("nan")
        else:
            r = asam_sharpness(model, loss_fn, data, seed=seed, **kw)
            out["asam"] = r["sharpness"]
        out["details"][name] = r
        out["seconds"][name] = time.perf_counter() - start
    return out
