"""``benchmarks/curvlinops_route.py`` and the summary of ``benchmarks/bench_frontier.py`` on tiny inputs.

The curvlinops route's tests are skipped when ``curvlinops-for-pytorch`` is not
installed (it is a benchmark-only dependency, ``make bench``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]


def _import(name: str):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def _tiny():
    """A 3→4→3 tanh MLP on 16 points (31 parameters), its loss and its dense float64 Hessian blocks."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3))
    x, y = torch.randn(16, 3), torch.randint(0, 3, (16,))
    loss_fn = nn.CrossEntropyLoss()
    names = [n for n, _ in model.named_parameters()]
    params = [p.detach().double() for p in model.parameters()]
    sizes = [p.numel() for p in params]

    def loss(flat):
        ps = [t.reshape(p.shape) for t, p in zip(flat.split(sizes), params)]
        h = torch.tanh(x.double() @ ps[0].T + ps[1])
        return loss_fn(h @ ps[2].T + ps[3], y)

    hess = torch.autograd.functional.hessian(loss, torch.cat([p.reshape(-1) for p in params]))
    return model, loss_fn, x, y, names, hess.numpy()


def _exact_entropy(lam, alpha):
    p = np.abs(lam) / np.abs(lam).sum()
    return np.log((p**alpha).sum()) / (1 - alpha)


def test_entropy_from_grid_matches_the_closed_form_of_a_uniform_density():
    route = _import("curvlinops_route")
    a, b, n = 0.5, 2.0, 100
    grid = np.linspace(-1.0, 3.0, 400_001)
    density = np.where((grid >= a) & (grid <= b), 1.0 / (b - a), 0.0)

    def t(p):  # n ∫_a^b λ^p / (b − a) dλ
        return n * (b ** (p + 1) - a ** (p + 1)) / ((p + 1) * (b - a))

    for alpha in (0.5, 1.5, 2.0):
        want = (np.log(t(alpha)) - alpha * np.log(t(1))) / (1 - alpha)
        got = route.entropy_from_grid(grid, density, n, [alpha])[0]
        assert got == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="increasing"):
        route.entropy_from_grid(grid[::-1], density, n, [2.0])
    with pytest.raises(ValueError, match="shape"):
        route.entropy_from_grid(grid, density[:-1], n, [2.0])


def test_curvlinops_route_on_a_tiny_model():
    pytest.importorskip("curvlinops")
    from curvlinops import lanczos_approximate_spectrum

    route = _import("curvlinops_route")
    pyh = _import("pyhessian_route")
    model, loss_fn, x, y, names, hess = _tiny()
    block = ["2.weight", "2.bias"]  # the output layer: 15 parameters
    idx = np.arange(16, 31)
    lam = np.linalg.eigvalsh(hess[np.ix_(idx, idx)])

    op = route.hessian_operator(model, loss_fn, x, y, block)
    assert op.shape == (15, 15)
    v = torch.randn(15, generator=torch.Generator().manual_seed(1))
    np.testing.assert_allclose(
        (op @ v).double().numpy(), hess[np.ix_(idx, idx)] @ v.double().numpy(), rtol=1e-4, atol=1e-6
    )

    r = route.density_run(model, loss_fn, x, y, block, ncv=15, num_repeats=6, seed=3)
    assert r.densities.shape == (6, 1024) and r.nodes.shape == r.weights.shape == (6, 15)
    np.testing.assert_allclose(r.weights.sum(1), 1.0, rtol=1e-5)
    # eigsh's boundaries to its tolerance (1e-2), the density integrates to ~1 on its grid
    assert r.boundaries[0] == pytest.approx(lam.min(), rel=2e-2, abs=1e-4)
    assert r.boundaries[1] == pytest.approx(lam.max(), rel=2e-2)
    assert np.trapezoid(r.density(), r.grid) == pytest.approx(1.0, abs=0.05)
    assert set(r.seconds) == {"operator", "boundaries", "lanczos", "density"}

    # the mean of the kept repeats is curvlinops' own lanczos_approximate_spectrum
    torch.manual_seed(3)
    grid, density = lanczos_approximate_spectrum(op, 15, num_repeats=6, boundaries=r.boundaries)
    np.testing.assert_allclose(grid.double().numpy(), r.grid, rtol=1e-6)
    np.testing.assert_allclose(
        density.double().numpy(), r.density(), rtol=1e-4, atol=1e-5 * density.abs().max().item()
    )

    # with ncv = n every Ritz value is an eigenvalue (to float32 rounding) and the
    # Ritz variant's H_α is a Hutchinson estimate of the exact one (loose: 6 probes)
    ref = np.array([_exact_entropy(lam, a) for a in (0.5, 2.0)])
    ritz = pyh.entropy_from_density(r.nodes, r.weights, 15, (0.5, 2.0))
    dens = route.entropy_from_grid(r.grid, r.density(), 15, (0.5, 2.0))
    assert np.all(np.isfinite(dens))
    np.testing.assert_allclose(ritz, ref, rtol=0.3)
    heavy = r.weights > 1e-3
    gap = np.abs(r.nodes[heavy][:, None] - lam[None, :]).min(1)
    assert gap.max() < 1e-3 * np.abs(lam).max()

    with pytest.raises(ValueError, match="ncv"):
        route.density_run(model, loss_fn, x, y, block, ncv=16, num_repeats=1, seed=0)
    with pytest.raises(ValueError, match="num_repeats"):
        route.density_run(model, loss_fn, x, y, block, ncv=4, num_repeats=0, seed=0)
    with pytest.raises(ValueError, match="not parameters"):
        route.hessian_operator(model, loss_fn, x, y, ["nope"])


def _route_rows(route, block, seconds, errors, source="measured"):
    return [
        {"route": route, "block": block, "seconds": s, "error": e, "time_source": source}
        for s, e in zip(seconds, errors)
    ]


def test_summarize_gives_a_ratio_per_peer():
    bench = _import("bench_frontier")
    rows = (
        _route_rows("renyilib", "a", [1.0, 2.0], [0.03, 0.01])
        + _route_rows("renyilib", "b", [1.0], [0.01])
        + _route_rows("pyhessian", "a", [3.0], [0.01])
        + _route_rows("pyhessian", "b", [4.0], [0.015])
        + _route_rows("curvlinops", "a", [5.0, 9.0], [0.05, 0.04])
        + _route_rows("curvlinops", "b", [6.0], [0.01])
        + _route_rows("renyilib", "a", [2.5], [0.012], "confirm")
        + _route_rows("renyilib", "b", [1.5], [0.012], "confirm")
        + _route_rows("pyhessian", "a", [3.0], [0.012], "confirm")
        + _route_rows("pyhessian", "b", [5.0], [0.012], "confirm")
        + _route_rows("curvlinops", "b", [7.0], [0.015], "confirm")
    )
    s = bench.summarize(pd.DataFrame(rows), 0.02)
    assert s["routes"] == ["renyilib", "pyhessian", "curvlinops"]
    assert s["renyilib"]["confirmed_seconds"] == pytest.approx(4.0)
    assert s["speedups"]["pyhessian"] == {"speedup": pytest.approx(2.0), "speedup_kind": "measured"}
    assert s["speedup"] == pytest.approx(2.0) and s["speedup_kind"] == "measured"
    # curvlinops never reached 2 % on a: its time there counts as the largest tried (9 s)
    cl = s["speedups"]["curvlinops"]
    assert cl["speedup"] == pytest.approx((7.0 + 9.0) / 4.0)
    assert cl["speedup_kind"] == "lower bound (curvlinops did not reach the target on a)"
    assert s["curvlinops"]["blocks_reached"] == ["b"] and not s["curvlinops"]["all_blocks"]
    text = bench.report(s)
    assert "speed-up curvlinops / renyilib: 4.0x" in text
    assert "speed-up pyhessian / renyilib: 2.0x (measured); target ≥ 3x" in text


def test_bench_frontier_routes_option():
    bench = _import("bench_frontier")
    args = bench.parser().parse_args([])
    assert args.routes == list(bench.ROUTES)
    assert bench.parser().parse_args(["--routes", "curvlinops"]).routes == ["curvlinops"]
    with pytest.raises(SystemExit):
        bench.parser().parse_args(["--routes", "nope"])
