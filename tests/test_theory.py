"""Tests of renyilib.theory: exact invariance (float64 dense Hessians) and Appendix F."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from renyilib import theory as T
from renyilib.lanczos import slq


def _renyi(lam, alpha):
    """Independent reference: H_α of |λ| normalized, from the definition."""
    p = np.abs(np.asarray(lam, dtype=np.float64))
    p = p[p > 0] / p.sum()
    return math.log(np.sum(p**alpha)) / (1 - alpha)


def _mlp(act: type[nn.Module] = nn.ReLU, seed: int = 0, bn: bool = False) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(4, 5)]
    if bn:
        layers.append(nn.BatchNorm1d(5))
    layers += [act(), nn.Linear(5, 4), act(), nn.Linear(4, 3)]
    net = nn.Sequential(*layers).double()
    if bn:
        with torch.no_grad():
            net[1].running_mean.uniform_(-0.5, 0.5)
            net[1].running_var.uniform_(0.5, 2.0)
    return net.eval()


def _data(seed: int = 1, n: int = 32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g, dtype=torch.float64), torch.randint(
        0, 3, (n,), generator=g
    )


def _reference_hessian(model: nn.Module, names: list[str], x, y) -> torch.Tensor:
    """Dense Hessian by torch.func.hessian (independent of renyilib.hessian)."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    shapes = [params[n].shape for n in names]
    sizes = [params[n].numel() for n in names]
    flat = torch.cat([params[n].reshape(-1) for n in names])
    loss_fn = nn.CrossEntropyLoss()

    def f(v):
        parts = dict(zip(names, (p.reshape(s) for p, s in zip(torch.split(v, sizes), shapes))))
        return loss_fn(functional_call(model, {**params, **parts}, (x,)), y)

    return torch.func.hessian(f)(flat)


FACTORS = [2.0, 0.25, 2.0]  # Π = 1; cumulative C = (2, 0.5, 1)


def test_rescale_layers_preserves_function_and_scales_biases_cumulatively():
    net = _mlp()
    x, _ = _data()
    new = T.rescale_layers(net, FACTORS)
    assert torch.allclose(new(x), net(x), rtol=0, atol=1e-13)
    cum = np.cumprod(FACTORS)
    for i, (name, c, cc) in enumerate(zip(T.affine_layers(net), FACTORS, cum)):
        old_l, new_l = dict(net.named_modules())[name], dict(new.named_modules())[name]
        assert torch.allclose(new_l.weight, c * old_l.weight, rtol=1e-15, atol=0), i
        assert torch.allclose(new_l.bias, cc * old_l.bias, rtol=1e-15, atol=0), i
    # the original is untouched, and scaling only the weights changes the function
    assert torch.allclose(T.rescale_layers(new, [1 / c for c in FACTORS])(x), net(x), atol=1e-13)
    wrong = T.rescale_layers(net, FACTORS)
    with torch.no_grad():
        for name, cc, c in zip(T.affine_layers(net), cum, FACTORS):
            dict(wrong.named_modules())[name].bias.mul_(c / cc)  # bias scaled by c_l instead of C_l
    assert (wrong(x) - net(x)).abs().max() > 1e-3


@pytest.mark.parametrize(
    "factors, exc, match",
    [
        ([2.0, 2.0, 2.0], ValueError, "multiply to 1"),
        ([1.0, 1.0], ValueError, "one entry per affine layer"),
        ([-1.0, -1.0, 1.0], ValueError, "> 0"),
        ({"9": 1.0}, KeyError, "unknown layers"),
    ],
)
def test_rescale_layers_rejects_bad_factors(factors, exc, match):
    with pytest.raises(exc, match=match):
        T.rescale_layers(_mlp(), factors)


def test_rescale_layers_strict_refuses_non_homogeneous_modules():
    with pytest.raises(TypeError, match="GELU"):
        T.rescale_layers(_mlp(nn.GELU), FACTORS)
    with pytest.raises(TypeError, match="BatchNorm1d"):
        T.rescale_layers(_mlp(bn=True), FACTORS)
    T.rescale_layers(_mlp(nn.GELU), FACTORS, strict=False)  # allowed for deviation studies


def test_weight_block_hessians_scale_exactly_and_entropy_is_invariant():
    net = _mlp()
    x, y = _data()
    new = T.rescale_layers(net, FACTORS)
    alphas = (0.3, 0.5, 1.5, 2.0, 4.0)
    for name, c in zip(T.affine_layers(net), FACTORS):
        h = _reference_hessian(net, [f"{name}.weight"], x, y)
        h_new = _reference_hessian(new, [f"{name}.weight"], x, y)
        # Eq. 52: H̃ = H / c_l² (float64; relative to |H|, rounding ~1e-15)
        assert torch.allclose(h_new, h / c**2, rtol=0, atol=1e-12 * float(h.abs().max()) / c**2)
        ev, ev_new = np.linalg.eigvalsh(h.numpy()), np.linalg.eigvalsh(h_new.numpy())
        assert ev_new.sum() == pytest.approx(ev.sum() / c**2, rel=1e-10)
        assert ev_new.max() == pytest.approx(ev.max() / c**2, rel=1e-10)
        for a in alphas:
            assert _renyi(ev_new, a) == pytest.approx(_renyi(ev, a), abs=1e-9)


def test_bias_blocks_and_global_entropy_are_not_invariant():
    net = _mlp()
    x, y = _data()
    new = T.rescale_layers(net, FACTORS)
    name = T.affine_layers(net)[1]  # c = 0.25 but C = 0.5: weight and bias scale differently
    names = [f"{name}.weight", f"{name}.bias"]
    h = _reference_hessian(net, names, x, y)
    h_new = _reference_hessian(new, names, x, y)
    d = torch.cat([torch.full((20,), 0.25), torch.full((4,), 0.5)]).double()
    assert torch.allclose(
        h_new, h / d[:, None] / d[None, :], atol=1e-12 * float(h.abs().max()) * 16
    )
    e, e_new = np.linalg.eigvalsh(h.numpy()), np.linalg.eigvalsh(h_new.numpy())
    assert abs(_renyi(e_new, 2.0) - _renyi(e, 2.0)) > 1e-3
    all_names = [n for n, _ in net.named_parameters()]
    g, g_new = (
        np.linalg.eigvalsh(_reference_hessian(m, all_names, x, y).numpy()) for m in (net, new)
    )
    assert abs(_renyi(g_new, 2.0) - _renyi(g, 2.0)) > 1e-3


def test_dense_hessian_matches_reference():
    net = _mlp()
    x, y = _data()
    h, names, sizes = T.dense_hessian(net, nn.CrossEntropyLoss(), (x, y), ["2.weight", "2.bias"])
    assert names == ["2.weight", "2.bias"] and sizes == [20, 4]
    ref = _reference_hessian(net, names, x, y)
    assert torch.allclose(h, ref, atol=1e-12 * float(ref.abs().max()))


def test_slq_entropy_is_invariant_too():
    # Lanczos is scale-equivariant: on H/c² with the same probes the Ritz values
    # scale by 1/c² and the Gauss weights are unchanged, so SLQ's H_α is equal
    # up to rounding (1e-9 absolute in float64).
    net = _mlp()
    x, y = _data()
    from renyilib.hessian import hessian_operator

    new = T.rescale_layers(net, FACTORS)
    loss = nn.CrossEntropyLoss()
    for name in T.affine_layers(net)[:2]:
        q = slq(hessian_operator(net, loss, (x, y), f"{name}.weight"), 4, 8, seed=3)
        q_new = slq(hessian_operator(new, loss, (x, y), f"{name}.weight"), 4, 8, seed=3)
        for a in (0.5, 2.0):
            assert q_new.renyi_entropy(a).value == pytest.approx(q.renyi_entropy(a).value, abs=1e-9)
        c = FACTORS[T.affine_layers(net).index(name)]
        assert q_new.trace().value == pytest.approx(q.trace().value / c**2, rel=1e-9)


def test_invariance_curve_relu_flat_gelu_and_batchnorm_not():
    x, y = _data(n=24)
    loss = nn.CrossEntropyLoss()
    grid = [-1.0, 0.0, 1.0]
    df = T.invariance_curve(_mlp(), loss, (x, y), "2", grid, [0.5, 2.0])
    # Tolerance: these blocks are rank deficient (CE Hessian, 24 samples); their
    # zero eigenvalues come out as rounding noise ~1e-16 |λ_max|, which adds
    # ~d · (1e-16)^α to Σ p^α: ~1e-8 for α = 0.5, nothing visible for α = 2.
    for block in ("2.weight", "4.weight"):
        sub = df[df["block"] == block]
        assert sub[sub["alpha"] == 2.0]["entropy"].agg(np.ptp) < 1e-12
        assert sub[sub["alpha"] == 0.5]["entropy"].agg(np.ptp) < 1e-6
    w = df[(df["block"] == "2.weight") & (df["alpha"] == 0.5)]
    assert np.allclose(w["trace"] * w["c"] ** 2, w["trace"].iloc[1], rtol=1e-9)
    p = df[(df["block"] == "4.weight") & (df["alpha"] == 0.5)]
    assert np.allclose(p["lambda_max"] / p["c"] ** 2, p["lambda_max"].iloc[1], rtol=1e-9)
    assert df["output_change"].max() < 1e-12
    assert df[df["block"] == "all"].groupby("alpha")["entropy"].agg(np.ptp).min() > 1e-3
    # GELU between layers "2" and "4"; BatchNorm (eval mode) right after layer "0"
    for model, layer in ((_mlp(nn.GELU), "2"), (_mlp(bn=True), "0")):
        dg = T.invariance_curve(model, loss, (x, y), layer, grid, [2.0])
        assert dg["output_change"].max() > 1e-3
        sub = dg[dg["block"].str.endswith(".weight")]
        assert sub.groupby("block")["entropy"].agg(np.ptp).max() > 1e-4


# --------------------------------------------------------------------------- Appendix F


def _random_psd(d: int, rng: np.random.Generator, rank: int | None = None) -> np.ndarray:
    a = rng.normal(size=(d, rank or d)) * rng.gamma(0.5, size=rank or d)
    return a @ a.T


def _block_diag(blocks: list[np.ndarray]) -> np.ndarray:
    d = sum(b.shape[0] for b in blocks)
    out = np.zeros((d, d))
    i = 0
    for b in blocks:
        out[i : i + len(b), i : i + len(b)] = b
        i += len(b)
    return out


def test_lemma_f2_exact_for_block_diagonal():
    rng = np.random.default_rng(0)
    for _ in range(20):
        sizes = [int(s) for s in rng.integers(1, 7, size=int(rng.integers(1, 5)))]
        h = _block_diag([_random_psd(s, rng) * rng.uniform(0.1, 10) for s in sizes])
        ev = np.linalg.eigvalsh(h)
        for a in (0.3, 0.5, 1.5, 2.0, 3.0):
            out = T.lemma_f2(h, sizes, a)
            assert out["lhs"] == pytest.approx(out["rhs"], rel=1e-10)
            assert out["lhs"] == pytest.approx(
                np.sum((np.clip(ev, 0, None) / ev.sum()) ** a), rel=1e-10
            )
            assert sum(out["weights"]) == pytest.approx(1.0, rel=1e-12)


def test_theorem_f4_order_and_optimum():
    rng = np.random.default_rng(1)
    sizes = [2, 3, 5]
    for _ in range(20):
        h = _block_diag([_random_psd(s, rng) for s in sizes])
        for a in (0.5, 1.5, 3.0):
            assert T.theorem_f4(h, sizes, a)["holds"]
    # optimum: uniform blocks with trace per dimension balanced (w_l = d_l / d) -> R = d^{1-α}
    opt = np.eye(10) * 0.7
    for a in (0.5, 1.5, 3.0):
        out = T.theorem_f4(opt, sizes, a)
        assert out["R"] == pytest.approx(10 ** (1 - a), rel=1e-12)
        assert out["middle"] == pytest.approx(10 ** (1 - a), rel=1e-12)
    # unbalanced traces (uniform inside blocks) lose the optimum: α>1 R grows, α<1 R shrinks
    unbalanced = _block_diag([np.eye(2) * 3.0, np.eye(3), np.eye(5)])
    assert T.theorem_f4(unbalanced, sizes, 2.0)["R"] > 10 ** (1 - 2.0) * (1 + 1e-3)
    assert T.theorem_f4(unbalanced, sizes, 0.5)["R"] < 10 ** (1 - 0.5) * (1 - 1e-3)


def test_prop_f6_bound_holds_on_random_couplings():
    rng = np.random.default_rng(2)
    sizes = [3, 4, 5]
    for k in range(100):
        full = _random_psd(12, rng)
        b = T.block_diagonal_part(full, sizes)
        t = 10 ** rng.uniform(-3, 0)  # coupling strength
        h = (1 - t) * b + t * full  # PSD (B is PSD); off-block part E = t (full - B)
        for a in (1.2, 2.0, 4.0):
            out = T.prop_f6(h, sizes, a)
            assert out["gap"] <= out["bound"] * (1 + 1e-10), (k, a)
    again = T.prop_f6(h, sizes, 2.0, eigenvalues=np.linalg.eigvalsh(h))
    assert again == pytest.approx(T.prop_f6(h, sizes, 2.0), rel=1e-12)


def test_off_block_share_closed_forms():
    rng = np.random.default_rng(3)
    blk = _block_diag([_random_psd(3, rng), _random_psd(2, rng)])
    out = T.off_block_share(blk, [3, 2])
    assert out["share"] == 0.0 and out["frobenius_share"] == 0.0
    h = np.array([[2.0, 1.0], [1.0, 2.0]])
    out = T.off_block_share(h, [1, 1])
    assert out["share"] == pytest.approx(math.sqrt(2) / 4, rel=1e-15)
    assert out["frobenius_share"] == pytest.approx(math.sqrt(2) / math.sqrt(10), rel=1e-15)
    with pytest.raises(ValueError, match="block_sizes"):
        T.off_block_share(h, [1, 2])
    with pytest.raises(ValueError, match="positive trace"):
        T.off_block_share(-h, [1, 1])


def test_power_sum_requires_psd():
    assert T.power_sum([1.0, 1.0, 2.0], 2.0) == pytest.approx(0.375, rel=1e-15)
    with pytest.raises(ValueError, match=">= 0"):
        T.power_sum([1.0, -0.5], 2.0)
    with pytest.raises(ValueError, match="alpha"):
        T.prop_f6(np.eye(2), [1, 1], 0.5)


@pytest.mark.parametrize("alpha", [1.5, 2.0, 3.0])
def test_prop_f6_matches_its_closed_form_on_small_matrices(alpha):
    """Eq. 60 by hand. H = [[2, 1], [1, 2]], blocks (1, 1): d = 2, T = 4, spec H = {1, 3},
    B = diag(2, 2), ||E||_F = sqrt 2, Lambda* = 3, so bound = alpha (3/4)^(alpha-1) sqrt 2 sqrt 2 / 4
    and gap = |(1/4)^a + (3/4)^a - 2 (1/2)^a|. H3 = [[2, 0, 1], [0, 1, 0], [1, 0, 2]], blocks
    (2, 1): d = 3, T = 5, spec H3 = {1, 1, 3}, spec B = {2, 1, 2}, ||E||_F = sqrt 2, Lambda* = 3.
    A bound missing sqrt(d) (or using d, or Lambda_max(B)) fails these equalities."""
    a = alpha
    h2 = np.array([[2.0, 1.0], [1.0, 2.0]])
    out = T.prop_f6(h2, [1, 1], a)
    assert out["bound"] == pytest.approx(a * 0.75 ** (a - 1) * math.sqrt(2) * math.sqrt(2) / 4)
    assert out["gap"] == pytest.approx(abs(0.25**a + 0.75**a - 2 * 0.5**a))
    assert out["share"] == pytest.approx(math.sqrt(2) / 4)
    h3 = np.array([[2.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 2.0]])
    out = T.prop_f6(h3, [2, 1], a)
    assert out["bound"] == pytest.approx(a * 0.6 ** (a - 1) * math.sqrt(3) * math.sqrt(2) / 5)
    assert out["gap"] == pytest.approx(abs((2 + 3**a) / 5**a - (2 * 2**a + 1) / 5**a))
    assert out["gap"] <= out["bound"]
    # Block-diagonal H: E = 0, both sides vanish.
    zero = T.prop_f6(np.diag([1.0, 2.0, 3.0]), [1, 2], a)
    assert zero["gap"] == pytest.approx(0.0, abs=1e-15) and zero["bound"] == 0.0
