"""Minimum sharpness: the convex solve, its invariance and its scope (float64).

Tolerances: the solver's own optimum to 1e-10 relative (Newton stops at a
squared decrement of 1e-18, or 1e-12 when rounding stalls it, i.e. log F
within 5e-13 of its minimum); invariance to 1e-8 relative, which leaves
room for the diagonal's rounding (~1e-15) amplified by rescalings of up to 10x.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from test_diagonal import data, reference_diagonal, relu_cnn, relu_mlp
from torch import nn

from renyilib.rescaling import (
    MinimumSharpness,
    layer_parameters,
    minimize_rescaled_trace,
    minimum_sharpness,
    rescale_layers,
)

CE = nn.CrossEntropyLoss()


def objective(t: np.ndarray, s: np.ndarray, log_scales: np.ndarray) -> float:
    a = np.exp(log_scales)
    return float((t / a**2 + s / np.cumprod(a) ** 2).sum())


def test_closed_form_without_biases():
    rng = np.random.default_rng(0)
    for L in (2, 3, 5):
        t = rng.uniform(0.01, 10.0, L)
        value, scales, converged, iterations, solver = minimize_rescaled_trace(t)
        assert solver == "closed_form" and converged and iterations == 0
        assert value == pytest.approx(L * np.prod(t) ** (1 / L), rel=1e-12)
        assert np.prod(scales) == pytest.approx(1.0, rel=1e-12)
        # at the optimum every layer contributes the same t_l / alpha_l^2 (AM-GM equality)
        np.testing.assert_allclose(t / scales**2, value / L, rtol=1e-12)
        # and Newton on the same problem (zero biases written as tiny ones) agrees
        newton = minimize_rescaled_trace(t, np.full(L, 1e-300))
        assert newton[0] == pytest.approx(value, rel=1e-10)


@pytest.mark.parametrize("L", [2, 3, 4, 6])
def test_newton_with_biases_matches_brute_force(L):
    rng = np.random.default_rng(L)
    t, s = rng.uniform(0.01, 5.0, L), rng.uniform(0.0, 3.0, L)
    value, scales, converged, iterations, solver = minimize_rescaled_trace(t, s)
    assert solver == "newton" and converged and iterations < 50
    assert np.prod(scales) == pytest.approx(1.0, rel=1e-12)
    assert value == pytest.approx(objective(t, s, np.log(scales)), rel=1e-12)

    def f(v: np.ndarray) -> float:
        return objective(t, s, np.append(v, -v.sum()))

    best = min(
        minimize(
            f,
            rng.normal(0, 1, L - 1),
            method="Nelder-Mead",
            options={"xatol": 1e-12, "fatol": 1e-15, "maxiter": 40_000, "maxfev": 40_000},
        ).fun
        for _ in range(3)
    )
    assert value <= best * (1 + 1e-10)
    assert value == pytest.approx(best, rel=1e-8)
    # no random feasible rescaling does better
    for _ in range(200):
        v = rng.normal(0, 1, L - 1)
        assert f(v) >= value * (1 - 1e-12)


def test_rounding_floor_of_the_decrement_still_converges():
    # traces of a trained digits MLP (seed 0, no shuffled labels) on which the
    # squared decrement stalls at ~1e-20 from rounding (it used to hit max_iter)
    t = np.array([0.1494893645095492, 0.06078434508437636, 0.2367374581550986])
    s = np.array([0.00228609843270533, 0.0002689723332878202, 0.00018914812244474888])
    value, scales, converged, iterations, _ = minimize_rescaled_trace(t, s)
    assert converged and iterations < 20
    assert value == pytest.approx(objective(t, s, np.log(scales)), rel=1e-12)

    def f(v: np.ndarray) -> float:
        return objective(t, s, np.append(v, -v.sum()))

    best = minimize(f, np.zeros(2), method="Nelder-Mead", options={"xatol": 1e-13, "fatol": 1e-16})
    assert value <= best.fun * (1 + 1e-12)


def test_newton_converges_on_many_random_problems():
    rng = np.random.default_rng(1)
    for _ in range(500):
        L = int(rng.integers(2, 8))
        t = 10 ** rng.uniform(-4, 3, L)
        s = 10 ** rng.uniform(-6, 3, L) * (rng.uniform(size=L) < 0.8)
        value, scales, converged, iterations, _ = minimize_rescaled_trace(t, s)
        assert converged and iterations <= 60
        assert value == pytest.approx(objective(t, s, np.log(scales)), rel=1e-12)
        assert value <= objective(t, s, np.zeros(L)) * (1 + 1e-12)  # never above alpha = 1


def test_one_dimensional_grid():
    t, s = np.array([2.0, 0.5]), np.array([1.0, 0.3])
    value = minimize_rescaled_trace(t, s)[0]
    grid = np.linspace(-3, 3, 600_001)
    a = np.exp(grid)
    brute = (t[0] / a**2 + t[1] * a**2 + s[0] / a**2 + s[1]).min()
    assert value == pytest.approx(brute, rel=1e-10)
    # here the optimum is known in closed form: (t0 + s0) / a^2 + t1 a^2 + s1
    assert value == pytest.approx(2 * math.sqrt((t[0] + s[0]) * t[1]) + s[1], rel=1e-12)


def test_solver_bad_input():
    with pytest.raises(ValueError, match="weight_traces"):
        minimize_rescaled_trace([1.0, 0.0])
    with pytest.raises(ValueError, match="weight_traces"):
        minimize_rescaled_trace([])
    with pytest.raises(ValueError, match="bias_traces"):
        minimize_rescaled_trace([1.0, 2.0], [1.0, -1.0])
    with pytest.raises(ValueError, match="length"):
        minimize_rescaled_trace([1.0, 2.0], [1.0])
    assert minimize_rescaled_trace([3.0], [1.0])[0] == 4.0


def test_value_is_the_rescaled_trace_of_the_optimal_network():
    model = relu_cnn(seed=4)
    x, y = data((1, 8, 8), n=16)
    result = minimum_sharpness(model, CE, (x, y))
    assert isinstance(result, MinimumSharpness) and result.converged
    assert result.diagonal_method == "ggn" and result.solver == "newton"
    ref = reference_diagonal(model, CE, x, y)
    assert result.trace == pytest.approx(sum(float(v.sum()) for v in ref.values()), rel=1e-10)
    # rescaling the network by the optimal scales: its raw trace is the minimum sharpness
    best = rescale_layers(model, result.scales, result.layers)
    ref_best = reference_diagonal(best, CE, x, y)
    assert sum(float(v.sum()) for v in ref_best.values()) == pytest.approx(result.value, rel=1e-10)
    assert result.value <= result.trace
    d = result.as_dict()
    assert d["value"] == result.value and len(d["scales"]) == len(result.layers) == 3


@pytest.mark.parametrize("make, shape", [(relu_mlp, (4,)), (relu_cnn, (1, 8, 8))])
def test_invariant_under_layerwise_rescaling(make, shape):
    model = make(seed=5)
    x, y = data(shape, n=14)
    base = minimum_sharpness(model, CE, (x, y))
    layers = base.layers
    for scales in ([10.0, 0.2, 0.5], [0.1, 3.0, 1 / 0.3]):
        other = rescale_layers(model, scales, layers)
        with torch.no_grad():
            torch.testing.assert_close(other(x), model(x), rtol=1e-12, atol=1e-12)
        result = minimum_sharpness(other, CE, (x, y))
        assert result.value == pytest.approx(base.value, rel=1e-8)
        assert abs(result.trace - base.trace) > 1e-3 * base.trace  # the raw trace is not invariant


def test_neuronwise_rescaling_changes_it():
    model = relu_mlp(seed=6)
    x, y = data((4,), n=14)
    base = minimum_sharpness(model, CE, (x, y))
    other = copy.deepcopy(model)
    with torch.no_grad():  # neuron 0 of layer 1: row and bias times 5, next column / 5
        other[0].weight[0] *= 5.0
        other[0].bias[0] *= 5.0
        other[2].weight[:, 0] /= 5.0
        torch.testing.assert_close(other(x), model(x), rtol=1e-12, atol=1e-12)
    changed = minimum_sharpness(other, CE, (x, y))
    assert abs(changed.value - base.value) > 1e-3 * base.value


def test_scope_checks():
    x, y = data((1, 8, 8))
    with pytest.raises(ValueError, match="not layer weights"):
        minimum_sharpness(relu_cnn(batchnorm=True), CE, (x, y))
    torch.manual_seed(0)
    tanh = nn.Sequential(nn.Flatten(), nn.Linear(64, 5), nn.Tanh(), nn.Linear(5, 3)).double().eval()
    with pytest.raises(ValueError, match="rescaling"):
        minimum_sharpness(tanh, CE, (x, y))
    model = relu_cnn()
    with pytest.raises(ValueError, match="train mode"):
        minimum_sharpness(model.train(), CE, (x, y))
    model.eval()
    layers = layer_parameters(model, x[:1])
    assert layers == [("0.weight", "0.bias"), ("3.weight", "3.bias"), ("7.weight", "7.bias")]
    with pytest.raises(KeyError, match="nope"):
        minimum_sharpness(model, CE, (x, y), layers=[("nope", None)])
    with pytest.raises(ValueError, match="scales"):
        rescale_layers(model, [1.0, -1.0, 1.0], layers)


def test_layers_without_bias_use_the_closed_form():
    torch.manual_seed(1)
    model = (
        nn.Sequential(nn.Linear(4, 6, bias=False), nn.ReLU(), nn.Linear(6, 3, bias=False))
        .double()
        .eval()
    )
    x, y = data((4,))
    result = minimum_sharpness(model, CE, (x, y))
    assert result.solver == "closed_form"
    t = result.weight_traces
    assert result.value == pytest.approx(2 * math.sqrt(t[0] * t[1]), rel=1e-12)
