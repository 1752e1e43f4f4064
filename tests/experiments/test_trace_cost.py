"""The trace-cost comparison: its three routes agree on the trace (float64); no timing is checked."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from renyilib.experiments.trace_cost import trace_cost

CE = nn.CrossEntropyLoss()


def relu_cnn(seed: int) -> nn.Module:
    """Conv-ReLU-maxpool-Conv-ReLU-Linear with biases on 1x8x8 inputs, float64."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64, 3),
    )
    return net.double().eval()


def data(n: int, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g, dtype=torch.float64)
    return x, torch.randint(0, 3, (n,), generator=g)


def test_routes_agree_and_probe_count_follows_the_pilot_variance():
    model = relu_cnn(seed=7)
    x, y = data(16)
    res = trace_cost(model, CE, (x, y), rel_err=0.05, pilot_probes=8, chunk=16)
    assert res["n"] == sum(p.numel() for p in model.parameters()) and res["samples"] == 16
    assert not res["hvp_extrapolated"]
    assert res["trace_hvp"] == pytest.approx(res["trace"], rel=1e-10)
    assert res["hvp_max_abs_diff"] <= 1e-12 * res["trace"]
    expected = max(1, math.ceil((res["hutchinson_sigma"] / (0.05 * res["trace"])) ** 2))
    assert res["hutchinson_probes"] == expected
    assert res["seconds_hutchinson"] == pytest.approx(expected * res["seconds_per_probe"])


def test_extrapolated_loop_and_bad_input():
    model = relu_cnn(seed=8)
    x, y = data(8)
    res = trace_cost(model, CE, (x, y), pilot_probes=4, hvp_columns=10, chunk=5)
    assert res["hvp_extrapolated"] and math.isnan(res["trace_hvp"])
    assert res["hvp_max_abs_diff"] <= 1e-12 * res["trace"]
    with pytest.raises(ValueError, match="hvp_columns"):
        trace_cost(model, CE, (x, y), hvp_columns=10**6)
    with pytest.raises(ValueError, match="rel_err"):
        trace_cost(model, CE, (x, y), rel_err=0)
    with pytest.raises(ValueError, match="pilot_probes"):
        trace_cost(model, CE, (x, y), pilot_probes=1)
