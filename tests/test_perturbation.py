"""Tests of renyilib.perturbation against closed forms and brute force (float64)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from renyilib.lanczos import Estimate
from renyilib.perturbation import (
    adaptive_sharpness,
    adaptive_sharpness_samples,
    average_sharpness,
    average_sharpness_samples,
)

INF = float("inf")


def _linear(d: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(d, 1).double().eval()


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((out.squeeze(-1) - y) ** 2).mean()


# --------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("p", [INF, 2])
@pytest.mark.parametrize("adaptive", [True, False])
def test_rank_one_quadratic_closed_form(p: float, adaptive: bool) -> None:
    # One sample: L(w + δ) = (r + zᵀδ)² with z = [x, 1] and r the residual, a convex
    # function of one linear form. Its maximum over ‖δ/c‖_p ≤ ρ is (|r| + ρ‖c ⊙ z‖_q)²,
    # q the dual norm (1 for p = ∞, 2 for p = 2), reached by the first step (η = ρ).
    model = _linear(4)
    x = torch.tensor([[0.7, -1.3, 0.2, 2.0]], dtype=torch.float64)
    y = torch.tensor([0.4], dtype=torch.float64)
    rho = 0.1
    w = torch.cat([model.weight.detach().flatten(), model.bias.detach()])
    z = torch.cat([x.flatten(), torch.ones(1, dtype=torch.float64)])
    r = float(model(x).detach().squeeze() - y[0])
    c = w.abs() if adaptive else torch.ones_like(w)
    dual = float((c * z).abs().sum()) if p == INF else float((c * z).norm())
    exact = (abs(r) + rho * dual) ** 2 - r**2
    est = adaptive_sharpness(model, _mse, (x, y), rho, p=p, restarts=3, adaptive=adaptive)
    assert isinstance(est, Estimate)
    assert est.value == pytest.approx(exact, rel=1e-12)
    assert est.stderr == pytest.approx(0.0, abs=1e-15)


def _brute_force_box(model: nn.Module, loss_fn, x, y, rho: float) -> float:
    """max over all vertices of the box |δ| ≤ ρ|w| of L(w + δ) − L(w)."""
    names = [k for k, _ in model.named_parameters()]
    w = {k: v.detach() for k, v in model.named_parameters()}
    sizes = [w[k].numel() for k in names]
    flat = torch.cat([w[k].flatten() for k in names])
    best = -math.inf
    with torch.no_grad():
        base = float(loss_fn(model(x), y))
        for signs in itertools.product((-1.0, 1.0), repeat=flat.numel()):
            v = flat + rho * flat.abs() * torch.tensor(signs, dtype=flat.dtype)
            parts = torch.split(v, sizes)
            params = {k: t.view_as(w[k]) for k, t in zip(names, parts)}
            best = max(best, float(loss_fn(functional_call(model, params, (x,)), y)))
    return best - base


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_convex_problem_reaches_brute_force_vertex_maximum(seed: int) -> None:
    # Logistic regression (cross-entropy of a linear map) is convex in the parameters,
    # so its maximum over the box is at one of its 2^D vertices (D = 2*3 + 2 = 8: 256).
    # The sign ascent from the centre steps to a vertex and then between vertices; by
    # convexity each step to sign(∇) cannot lower the loss, and on these problems it
    # ends at the global maximum: equal to brute force up to rounding.
    torch.manual_seed(seed)
    model = nn.Linear(3, 2).double().eval()
    x = torch.randn(6, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (6,))
    loss_fn = nn.CrossEntropyLoss()
    rho = 0.5
    exact = _brute_force_box(model, loss_fn, x, y, rho)
    vals = adaptive_sharpness_samples(
        model, loss_fn, (x, y), rho, batch_size=6, restarts=2, steps=5, step_size=2 * rho
    )
    assert vals == pytest.approx([exact, exact], rel=1e-10)


def test_never_exceeds_the_brute_force_maximum() -> None:
    # Every iterate is feasible: the estimate is a lower bound of the true maximum,
    # whatever the step size (here smaller steps that stop short of a vertex).
    torch.manual_seed(3)
    model = nn.Linear(3, 2).double().eval()
    x = torch.randn(6, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (6,))
    loss_fn = nn.CrossEntropyLoss()
    exact = _brute_force_box(model, loss_fn, x, y, 0.5)
    for eta in (0.05, 0.2, 0.5, 1.0):
        v = adaptive_sharpness_samples(
            model, loss_fn, (x, y), 0.5, batch_size=6, restarts=1, step_size=eta
        )
        assert v[0] <= exact + 1e-12
    # η = 0.05 for 5 steps cannot leave a box of half-width 0.25 · ρ: strictly below.
    v = adaptive_sharpness_samples(
        model, loss_fn, (x, y), 0.5, batch_size=6, restarts=1, step_size=0.05
    )
    assert v[0] < exact


def test_linear_loss_exact_for_p2_ellipsoid() -> None:
    # A loss linear in the parameters, L = mean(f(x)) for a linear f: max over the
    # ellipsoid ‖δ/|w|‖₂ ≤ ρ is ρ ‖|w| ⊙ ∇L‖₂.
    model = _linear(5, seed=1)
    x = torch.randn(10, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(10, dtype=torch.float64)

    def lin(out: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
        return out.mean()

    grad = torch.cat([x.mean(0), torch.ones(1, dtype=torch.float64)])
    w = torch.cat([model.weight.detach().flatten(), model.bias.detach()])
    exact = 0.3 * float((w.abs() * grad).norm())
    est = adaptive_sharpness(model, lin, (x, y), 0.3, p=2, batch_size=10, restarts=2)
    assert est.value == pytest.approx(exact, rel=1e-12)


# --------------------------------------------------------------------------- invariance


class ReLUNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, 6)
        self.fc2 = nn.Linear(6, 4)
        self.fc3 = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def _rescale_relu(net: ReLUNet, seed: int) -> ReLUNet:
    """Function-preserving rescaling: hidden unit j of fc1 times r_j, fc2's column j over r_j."""
    g = torch.Generator().manual_seed(seed)
    out = ReLUNet().double()
    out.load_state_dict(net.state_dict())
    r1 = torch.exp(torch.randn(6, generator=g, dtype=torch.float64))
    r2 = torch.exp(torch.randn(4, generator=g, dtype=torch.float64))
    with torch.no_grad():
        out.fc1.weight.mul_(r1[:, None])
        out.fc1.bias.mul_(r1)
        out.fc2.weight.div_(r1[None, :]).mul_(r2[:, None])
        out.fc2.bias.mul_(r2)
        out.fc3.weight.div_(r2[None, :])
    return out.eval()


@pytest.mark.parametrize("p", [INF, 2])
def test_invariant_under_relu_rescaling(p: float) -> None:
    torch.manual_seed(0)
    net = ReLUNet().double().eval()
    x = torch.randn(40, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (40,))
    loss_fn = nn.CrossEntropyLoss()
    scaled = _rescale_relu(net, seed=1)
    assert torch.allclose(net(x), scaled(x), rtol=1e-12, atol=1e-12)
    a = adaptive_sharpness_samples(
        net, loss_fn, (x, y), 0.05, p=p, batch_size=16, restarts=4, seed=3
    )
    b = adaptive_sharpness_samples(
        scaled, loss_fn, (x, y), 0.05, p=p, batch_size=16, restarts=4, seed=3
    )
    assert np.all(a > 0)
    np.testing.assert_allclose(b, a, rtol=1e-6)
    # The non-adaptive (c = 1) value is not invariant: it changes by far more than rounding.
    na = adaptive_sharpness_samples(
        net, loss_fn, (x, y), 0.05, p=p, batch_size=16, restarts=4, seed=3, adaptive=False
    )
    nb = adaptive_sharpness_samples(
        scaled, loss_fn, (x, y), 0.05, p=p, batch_size=16, restarts=4, seed=3, adaptive=False
    )
    assert np.max(np.abs(na - nb) / np.abs(na)) > 1e-2
    # Average-case sharpness: the same noise draw z maps to the same function.
    for noise in ("gaussian", "uniform"):
        ga = average_sharpness_samples(
            net, loss_fn, (x, y), 0.05, noise=noise, restarts=4, draws=2, seed=5
        )
        gb = average_sharpness_samples(
            scaled, loss_fn, (x, y), 0.05, noise=noise, restarts=4, draws=2, seed=5
        )
        np.testing.assert_allclose(gb, ga, rtol=1e-6)


class ConvBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.bn = nn.BatchNorm2d(3)
        self.head = nn.Linear(3 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bn(self.conv(x))).flatten(1))


def test_invariant_under_conv_batchnorm_rescaling() -> None:
    # Eval-mode BatchNorm is y = γ (x − μ) / √(σ² + ε) + β with running μ, σ². Scaling the
    # convolution (weight and bias) by r_k per channel is function-preserving once the
    # buffers follow: μ → r μ and σ² → r²(σ² + ε) − ε (so that √(σ² + ε) → r √(σ² + ε)).
    torch.manual_seed(0)
    net = ConvBN().double()
    with torch.no_grad():
        net.bn.running_mean.copy_(torch.randn(3, dtype=torch.float64))
        net.bn.running_var.copy_(torch.rand(3, dtype=torch.float64) + 0.5)
        net.bn.weight.copy_(torch.rand(3, dtype=torch.float64) + 0.5)
        net.bn.bias.copy_(torch.randn(3, dtype=torch.float64))
    net.eval()
    scaled = ConvBN().double()
    scaled.load_state_dict(net.state_dict())
    r = torch.tensor([3.0, 0.2, 7.5], dtype=torch.float64)
    eps = scaled.bn.eps
    with torch.no_grad():
        scaled.conv.weight.mul_(r[:, None, None, None])
        scaled.conv.bias.mul_(r)
        scaled.bn.running_mean.mul_(r)
        scaled.bn.running_var.copy_(r**2 * (scaled.bn.running_var + eps) - eps)
    scaled.eval()
    x = torch.randn(30, 1, 6, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (30,))
    assert torch.allclose(net(x), scaled(x), rtol=1e-11, atol=1e-11)
    loss_fn = nn.CrossEntropyLoss()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    for p in (INF, 2):
        a = adaptive_sharpness_samples(
            net, loss_fn, (x, y), 0.02, p=p, batch_size=8, restarts=5, seed=1
        )
        b = adaptive_sharpness_samples(
            scaled, loss_fn, (x, y), 0.02, p=p, batch_size=8, restarts=5, seed=1
        )
        assert np.all(a > 0)
        np.testing.assert_allclose(b, a, rtol=1e-6)
    # Nothing was written: parameters and BatchNorm buffers are as before.
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k


# --------------------------------------------------------------------------- semantics


class DropoutNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.bn = nn.BatchNorm1d(8)
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(torch.relu(self.bn(self.fc1(x)))))


def test_eval_mode_deterministic_and_mode_restored() -> None:
    torch.manual_seed(0)
    net = DropoutNet().double().train()
    x = torch.randn(50, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (50,))
    buffers = {k: v.clone() for k, v in net.named_buffers()}
    a = adaptive_sharpness(
        net, nn.CrossEntropyLoss(), (x, y), 0.05, restarts=3, batch_size=10, seed=2
    )
    b = adaptive_sharpness(
        net, nn.CrossEntropyLoss(), (x, y), 0.05, restarts=3, batch_size=10, seed=2
    )
    assert a == b  # dropout off: the same seed gives the same numbers
    assert net.training and net.drop.training  # the caller's mode is back
    for k, v in net.named_buffers():
        assert torch.equal(v, buffers[k]), k  # BatchNorm statistics untouched


def test_nonnegative_and_include_start() -> None:
    torch.manual_seed(1)
    net = ReLUNet().double().eval()
    x = torch.randn(64, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (64,))
    loss_fn = nn.CrossEntropyLoss()
    # A huge radius makes single sign steps overshoot; with the centre counted, S ≥ 0.
    with_start = adaptive_sharpness_samples(
        net, loss_fn, (x, y), 3.0, restarts=10, batch_size=8, steps=1
    )
    without = adaptive_sharpness_samples(
        net, loss_fn, (x, y), 3.0, restarts=10, batch_size=8, steps=1, include_start=False
    )
    assert np.all(with_start >= 0)
    np.testing.assert_allclose(with_start, np.maximum(without, 0.0))
    # Larger balls contain smaller ones; at η = ρ the first step scales with ρ, and at
    # small ρ the loss is locally linear: S grows roughly linearly, and stays positive.
    small = adaptive_sharpness(
        net, loss_fn, (x, y), 1e-4, restarts=5, batch_size=8, include_start=False
    )
    tiny = adaptive_sharpness(
        net, loss_fn, (x, y), 1e-5, restarts=5, batch_size=8, include_start=False
    )
    assert small.value > 0 and tiny.value > 0
    assert small.value / tiny.value == pytest.approx(10.0, rel=0.01)


def test_seeded_batches_and_stderr() -> None:
    torch.manual_seed(2)
    net = ReLUNet().double().eval()
    x = torch.randn(100, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (100,))
    loss_fn = nn.CrossEntropyLoss()
    v = adaptive_sharpness_samples(net, loss_fn, (x, y), 0.05, restarts=6, batch_size=10, seed=0)
    est = adaptive_sharpness(net, loss_fn, (x, y), 0.05, restarts=6, batch_size=10, seed=0)
    assert est.value == pytest.approx(v.mean(), rel=1e-14)
    assert est.stderr == pytest.approx(v.std(ddof=1) / math.sqrt(6), rel=1e-12)
    other = adaptive_sharpness_samples(
        net, loss_fn, (x, y), 0.05, restarts=6, batch_size=10, seed=1
    )
    assert not np.allclose(v, other)
    # an iterable of batches is the same data as their concatenation
    batches = [(x[:50], y[:50]), (x[50:], y[50:])]
    np.testing.assert_array_equal(
        adaptive_sharpness_samples(net, loss_fn, batches, 0.05, restarts=6, batch_size=10, seed=0),
        v,
    )


def test_tuple_inputs_and_params_subset() -> None:
    class TwoInput(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(2, 2)
            self.b = nn.Linear(2, 2)

        def forward(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return self.a(u) + self.b(v)

    torch.manual_seed(0)
    net = TwoInput().double().eval()
    u, v = torch.randn(20, 2, dtype=torch.float64), torch.randn(20, 2, dtype=torch.float64)
    y = torch.randint(0, 2, (20,))
    loss_fn = nn.CrossEntropyLoss()
    full = adaptive_sharpness(net, loss_fn, ((u, v), y), 0.1, restarts=2, batch_size=20)
    only_a = adaptive_sharpness(
        net, loss_fn, ((u, v), y), 0.1, restarts=2, batch_size=20, params=["a.weight", "a.bias"]
    )
    assert 0 < only_a.value < full.value


def test_average_sharpness_small_noise_is_second_order() -> None:
    # For Gaussian noise, E L(w + σ z) − L(w) = σ²/2 Σ_i c_i² H_ii + O(σ⁴): halving σ
    # divides the average by about 4 (first-order terms cancel in expectation; with many
    # draws the residual first-order noise is small against the second-order mean).
    torch.manual_seed(0)
    net = ReLUNet().double().eval()
    x = torch.randn(64, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (64,))
    loss_fn = nn.CrossEntropyLoss()
    big = average_sharpness(
        net, loss_fn, (x, y), 0.2, restarts=1, draws=4000, batch_size=64, seed=0
    )
    half = average_sharpness(
        net, loss_fn, (x, y), 0.1, restarts=1, draws=4000, batch_size=64, seed=0
    )
    assert big.value > 0 and half.value > 0
    assert big.value / half.value == pytest.approx(4.0, rel=0.15)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rho": 0.0}, "rho"),
        ({"rho": -1.0}, "rho"),
        ({"rho": float("nan")}, "rho"),
        ({"p": 1}, "p must be 2 or"),
        ({"p": 3.0}, "p must be 2 or"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": -4}, "batch_size"),
        ({"steps": 0}, "steps"),
        ({"restarts": 0}, "restarts"),
        ({"step_size": 0.0}, "step_size"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    net = _linear(2)
    x, y = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    args = {"rho": 0.1, **kwargs}
    rho = args.pop("rho")
    with pytest.raises(ValueError, match=match):
        adaptive_sharpness(net, _mse, (x, y), rho, **args)


def test_bad_types_and_data() -> None:
    net = _linear(2)
    x, y = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    with pytest.raises(TypeError, match="model"):
        adaptive_sharpness("net", _mse, (x, y), 0.1)
    with pytest.raises(TypeError, match="loss_fn"):
        adaptive_sharpness(net, 3, (x, y), 0.1)
    with pytest.raises(TypeError, match="data"):
        adaptive_sharpness(net, _mse, x, 0.1)
    with pytest.raises(ValueError, match="data"):
        adaptive_sharpness(net, _mse, [], 0.1)
    with pytest.raises(KeyError, match="params"):
        adaptive_sharpness(net, _mse, (x, y), 0.1, params=["nope"])
    with pytest.raises(ValueError, match="noise"):
        average_sharpness(net, _mse, (x, y), 0.1, noise="laplace")
    with pytest.raises(ValueError, match="rho"):
        average_sharpness(net, _mse, (x, y), 0.0)
