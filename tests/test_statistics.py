"""Tests of renyilib.statistics against hand-computed and planted answers."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from renyilib.statistics import (
    alpha_sweep,
    best_alpha,
    correlation_table,
    in_paper_range,
    kendall_tau,
    spectral_type,
    split_selection,
    type_match_table,
)

GRID = [0.0001, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 1.0, 1.1, 1.2, 1.5, 2.0, 2.5, 3.0]


def _tau_eq8(x, y):
    """Eq. 8 of the paper written out: 2/(N(N-1)) Σ_{i<j} sign(x_i-x_j) sign(y_i-y_j)."""
    n = len(x)
    s = sum(
        np.sign(x[i] - x[j]) * np.sign(y[i] - y[j]) for i, j in itertools.combinations(range(n), 2)
    )
    return 2.0 * s / (n * (n - 1))


def test_kendall_tau_hand_case():
    # one discordant pair (2, 3) out of 6: tau = (5 - 1) / 6 = 2/3
    res = kendall_tau([1, 2, 3, 4], [1, 3, 2, 4])
    assert res.tau == pytest.approx(2 / 3, abs=1e-12)
    assert res.n == 4
    # exact two-sided p-value by enumerating all 24 orderings of y
    taus = np.array([_tau_eq8([1, 2, 3, 4], list(p)) for p in itertools.permutations([1, 2, 3, 4])])
    p_exact = np.mean(np.abs(taus) >= 2 / 3 - 1e-12)
    assert res.pvalue == pytest.approx(p_exact, abs=1e-12)


def test_kendall_tau_equals_eq8_without_ties_and_sign():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=12), rng.normal(size=12)
    assert kendall_tau(x, y).tau == pytest.approx(_tau_eq8(x, y), abs=1e-12)
    assert kendall_tau(x, -x).tau == pytest.approx(-1.0)
    assert kendall_tau(x, np.exp(x)).tau == pytest.approx(1.0)  # rank statistic: monotone map


def test_kendall_tau_nan_and_errors():
    res = kendall_tau([1, 2, np.nan, 4, 5], [1, 2, 3, 4, 5])
    assert res.n == 4 and res.tau == pytest.approx(1.0)
    assert np.isnan(kendall_tau([1, 1, 1], [1, 2, 3]).tau)
    assert np.isnan(kendall_tau([1, 2], [1, 2]).tau)
    with pytest.raises(ValueError, match="same length"):
        kendall_tau([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="1-D"):
        kendall_tau(np.ones((2, 2)), np.ones((2, 2)))


def test_correlation_table_groups_and_measures():
    df = pd.DataFrame(
        {
            "task": ["a"] * 4 + ["b"] * 4,
            "block": ["all"] * 8,
            "gap": [1, 2, 3, 4, 1, 2, 3, 4],
            "m1": [1, 3, 2, 4, 4, 3, 2, 1],
            "m2": [1, 2, 3, 4, 1, 2, 3, 4],
        }
    )
    out = correlation_table(df, ["m1", "m2"])
    got = {(r.task, r.measure): r.tau for r in out.itertuples()}
    assert got[("a", "m1")] == pytest.approx(2 / 3)
    assert got[("b", "m1")] == pytest.approx(-1.0)
    assert got[("a", "m2")] == pytest.approx(1.0) and got[("b", "m2")] == pytest.approx(1.0)
    with pytest.raises(KeyError, match="lacks columns"):
        correlation_table(df, ["nope"])
    with pytest.raises(ValueError, match="at least one"):
        correlation_table(df, [])


def _planted_profiles(n_runs=20, best=0.5, seed=0, blocks=("layer1", "layer2")):
    """Profiles where sharpness equals the gap (τ = 1) at α = best and is noise elsewhere."""
    rng = np.random.default_rng(seed)
    gap = rng.normal(size=n_runs)
    rows = []
    for b in blocks:
        for a in GRID:
            noise = rng.normal(size=n_runs)
            val = gap if a == best else noise
            for r in range(n_runs):
                rows.append(
                    {
                        "task": "t",
                        "block": b,
                        "alpha": a,
                        "run": f"r{r}",
                        "gap": gap[r],
                        "sharpness": val[r],
                    }
                )
    return pd.DataFrame(rows)


def test_alpha_selection_finds_planted_alpha():
    prof = _planted_profiles(best=0.5)
    sweep = alpha_sweep(prof)
    assert len(sweep) == 2 * len(GRID)
    best = best_alpha(sweep)
    assert list(best["alpha"]) == [0.5, 0.5]
    assert np.allclose(best["tau"], 1.0)
    assert list(best["side"]) == ["<1", "<1"]


def test_best_alpha_respects_paper_range():
    prof = _planted_profiles(best=1.0)  # α = 1 is outside (0, 0.9] ∪ [1.2, 3]
    best_r = best_alpha(alpha_sweep(prof), restrict=True)
    assert all(best_r["alpha"] != 1.0)
    best_u = best_alpha(alpha_sweep(prof), restrict=False)
    assert list(best_u["alpha"]) == [1.0, 1.0]
    assert list(in_paper_range([0.0001, 0.9, 0.99, 1.0, 1.1, 1.2, 3.0, 3.1])) == [
        True,
        True,
        False,
        False,
        False,
        True,
        True,
        False,
    ]
    with pytest.raises(ValueError, match="criterion"):
        best_alpha(alpha_sweep(prof), criterion="max")


def test_split_selection_reproducible_and_recovers_planted_alpha():
    prof = _planted_profiles(best=1.5, n_runs=16)
    a = split_selection(prof, n_splits=5, seed=3)
    b = split_selection(prof, n_splits=5, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 5 * 2
    # the planted α is perfect on every half, so it is chosen and holds out of sample
    assert (a["alpha"] == 1.5).all()
    assert np.allclose(a["tau_heldout"], 1.0) and np.allclose(a["tau_select"], 1.0)
    assert set(a["n_select"]) == {8} and set(a["n_heldout"]) == {8}


def test_split_selection_measures_inflation_on_noise():
    # no α carries signal: the in-sample maximum over the grid is inflated, held-out τ is ~0
    prof = _planted_profiles(best=-1.0, n_runs=20, seed=1)
    out = split_selection(prof, n_splits=30, seed=0)
    assert out["tau_select"].mean() > 0.25
    # held-out τ of 10 models has sd ≈ 0.25 per split; the mean of 60 values has sd ≈ 0.04
    assert abs(out["tau_heldout"].mean()) < 0.15
    c = split_selection(prof, n_splits=30, seed=1)
    assert not c["alpha"].equals(out["alpha"])
    with pytest.raises(ValueError, match="n_splits"):
        split_selection(prof, n_splits=0)
    with pytest.raises(ValueError, match="at least 4 runs"):
        split_selection(prof[prof["run"].isin(["r0", "r1", "r2"])], n_splits=1)


def _multi_cluster(rng, n=2000):
    zeros = 1e-5 * rng.random(1800)  # Part 1
    mid = 0.02 * np.exp(0.1 * rng.normal(size=180))  # Part 2: 15% of the trace
    top = np.exp(0.1 * rng.normal(size=20))  # Part 3
    return np.concatenate([zeros, mid, top])


def _uniform(rng):
    zeros = 1e-5 * rng.random(1950)
    top = rng.uniform(0.5, 1.0, size=50)
    return np.concatenate([zeros, top])


def test_spectral_type_on_synthetic_spectra():
    rng = np.random.default_rng(0)
    mc = _multi_cluster(rng)
    un = _uniform(rng)
    w_mc, w_un = np.full(mc.size, 1 / mc.size), np.full(un.size, 1 / un.size)
    r_mc = spectral_type(mc, w_mc)
    r_un = spectral_type(un, w_un)
    assert r_mc["type"] == "multi-cluster" and r_mc["predicted_side"] == "<1"
    assert r_un["type"] == "uniform" and r_un["predicted_side"] == ">1"
    # the counted clusters sit where they were planted (decades below the top)
    centers = sorted(c["center"] for c in r_mc["clusters"] if c["share"] >= 0.05)
    assert centers[0] == pytest.approx(np.log10(0.02), abs=0.15)
    assert centers[1] == pytest.approx(0.0, abs=0.15)
    shares = sorted(c["share"] for c in r_mc["clusters"] if c["share"] >= 0.05)
    assert shares[0] == pytest.approx(3.6 / 23.6, abs=0.03)
    # scale invariance and |H| (sign of eigenvalues ignored)
    assert spectral_type(1e3 * mc, w_mc)["type"] == "multi-cluster"
    assert spectral_type(-un, w_un)["type"] == "uniform"


class _Quad:
    def __init__(self, nodes, weights):
        self.nodes, self.weights = nodes, weights


def test_spectral_type_accepts_quadrature_objects_and_errors():
    rng = np.random.default_rng(1)
    mc = _multi_cluster(rng)
    q = _Quad(mc.reshape(4, -1), np.full((4, mc.size // 4), 1 / mc.size))
    assert spectral_type(q)["type"] == "multi-cluster"
    with pytest.raises(TypeError, match="nodes"):
        spectral_type(object())
    with pytest.raises(ValueError, match="non-zero"):
        spectral_type(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="valley"):
        spectral_type(mc, np.ones(mc.size), valley=1.5)


def test_type_match_table_counts():
    types = pd.DataFrame(
        {
            "task": ["t"] * 4,
            "run": ["r0", "r1", "r0", "r1"],
            "block": ["l1", "l1", "l2", "l2"],
            "type": ["multi-cluster", "uniform", "uniform", "uniform"],
        }
    )
    best = pd.DataFrame(
        {"task": ["t", "t"], "block": ["l1", "l2"], "alpha": [0.5, 1.5], "side": ["<1", ">1"]}
    )
    out = type_match_table(types, best)
    assert list(out["match"]) == [True, False, True, True]
    assert list(out["predicted_side"]) == ["<1", ">1", ">1", ">1"]


def test_pair_sign_tau_b_equals_scipy_with_ties():
    from renyilib.statistics import _pair_signs, _tau_b_subsets

    rng = np.random.default_rng(5)
    V = rng.integers(0, 4, size=(3, 15)).astype(float)  # many ties
    g = rng.integers(0, 5, size=15).astype(float)
    mask = rng.random(15) < 0.6
    got = _tau_b_subsets(_pair_signs(V), _pair_signs(g), mask)
    for a in range(3):
        assert got[a] == pytest.approx(kendall_tau(V[a, mask], g[mask]).tau, abs=1e-12)


def _dense_with_spectrum(eigs, seed=0):
    gen = torch.Generator().manual_seed(seed)
    n = len(eigs)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return Q @ torch.diag(torch.as_tensor(eigs, dtype=torch.float64)) @ Q.T


def test_spectral_type_from_slq_quadratures():
    # the rule must also work on what it gets in practice: 15-step Lanczos quadratures
    from renyilib.lanczos import slq

    rng = np.random.default_rng(3)
    mc = np.concatenate(
        [
            1e-5 * rng.random(500),
            0.02 * np.exp(0.1 * rng.normal(size=80)),
            np.exp(0.1 * rng.normal(size=20)),
        ]
    )
    un = np.concatenate([1e-5 * rng.random(560), rng.uniform(0.5, 1.0, size=40)])
    for eigs, label in [(mc, "multi-cluster"), (un, "uniform")]:
        q = slq(_dense_with_spectrum(eigs), num_probes=30, lanczos_steps=15, seed=0)
        assert spectral_type(q)["type"] == label
    # a deflated quadrature (top eigenvalues exact) gives the same label
    q = slq(_dense_with_spectrum(mc), num_probes=30, lanczos_steps=15, seed=0, deflate=5)
    assert len(q.exact_nodes) == 5
    assert spectral_type(q)["type"] == "multi-cluster"


def test_best_alpha_side_both_on_ties_and_match_excludes_them():
    # every α ranks the models identically: the best τ is reached on both sides of 1
    gap = np.arange(8.0)
    rows = [
        {
            "task": "t",
            "block": "l1",
            "alpha": a,
            "run": f"r{r}",
            "gap": gap[r],
            "sharpness": gap[r] * (1 + a),
        }
        for a in GRID
        for r in range(8)
    ]
    best = best_alpha(alpha_sweep(pd.DataFrame(rows)))
    assert list(best["side"]) == ["both"] and best["alpha"].iloc[0] == 0.0001
    types = pd.DataFrame({"task": ["t"], "run": ["r0"], "block": ["l1"], "type": ["uniform"]})
    assert len(type_match_table(types, best)) == 0


def test_kendall_tau_a_is_eq8_and_differs_from_tau_b_under_ties():
    from renyilib.statistics import kendall_tau_a

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=9), rng.normal(size=9)
    assert kendall_tau_a(x, y) == pytest.approx(_tau_eq8(x, y), abs=1e-15)
    assert kendall_tau_a(x, y) == pytest.approx(kendall_tau(x, y).tau, abs=1e-12)  # no ties
    xt = np.array([1.0, 1.0, 2.0, 3.0, 3.0, 4.0])
    yt = np.array([1.0, 2.0, 2.0, 3.0, 5.0, 4.0])
    assert kendall_tau_a(xt, yt) == pytest.approx(_tau_eq8(xt, yt), abs=1e-15)
    assert abs(kendall_tau_a(xt, yt)) < abs(kendall_tau(xt, yt).tau)


def test_bootstrap_tau_interval_covers_and_shrinks_with_n():
    from renyilib.statistics import bootstrap_tau

    rng = np.random.default_rng(0)
    small = rng.normal(size=12)
    big = rng.normal(size=200)
    r_small = bootstrap_tau(small, small + rng.normal(size=12), num_resamples=400, seed=1)
    r_big = bootstrap_tau(big, big + rng.normal(size=200), num_resamples=400, seed=1)
    for r in (r_small, r_big):
        assert r["low"] <= r["tau"] <= r["high"] and r["resamples"] == 400
    assert r_big["stderr"] < r_small["stderr"]
    # same seed, same numbers
    assert bootstrap_tau(small, small, num_resamples=50, seed=4) == bootstrap_tau(
        small, small, num_resamples=50, seed=4
    )
    with pytest.raises(ValueError, match="num_resamples"):
        bootstrap_tau(small, small, num_resamples=1)
    with pytest.raises(ValueError, match="level"):
        bootstrap_tau(small, small, level=1.5)


def test_tau_under_target_noise():
    from renyilib.statistics import tau_under_target_noise

    x = np.arange(10.0)
    exact = np.tile(x, (5, 1))
    r = tau_under_target_noise(x, exact)
    assert r["mean"] == pytest.approx(1.0) and r["std"] == pytest.approx(0.0)
    noisy = x + np.random.default_rng(0).normal(scale=5.0, size=(50, 10))
    assert tau_under_target_noise(x, noisy)["std"] > 0.05
    with pytest.raises(ValueError, match="target_draws"):
        tau_under_target_noise(x, np.zeros((3, 4)))


def test_granulated_tau_gives_no_credit_to_a_measure_that_only_separates_optimizers():
    from renyilib.statistics import granulated_tau

    rows = []
    for opt, shift in (("sgd", 1.0), ("adam", 0.0)):
        for lr in (0.01, 0.1, 1.0):
            for wd in (0.0, 1e-4):
                gap = shift + 0.1 * lr + 0.01 * wd  # gap grows with lr within an optimizer
                rows.append({"optimizer": opt, "lr": lr, "wd": wd, "gap": gap,
                             "opt_flag": shift,  # separates the optimizers only
                             "lr_measure": lr})  # fmt: skip
    df = pd.DataFrame(rows)
    overall = kendall_tau(df["opt_flag"], df["gap"]).tau
    assert overall > 0.5
    g = granulated_tau(df, "opt_flag", ["optimizer", "lr", "wd"]).set_index("axis")
    # within groups that vary lr or wd, opt_flag is constant: every pair is tied, tau-a = 0
    assert g.loc["lr", "psi"] == 0.0 and g.loc["wd", "psi"] == 0.0
    assert g.loc["optimizer", "psi"] == pytest.approx(1.0)
    assert g.loc["granulated", "psi"] == pytest.approx(1.0 / 3.0)
    h = granulated_tau(df, "lr_measure", ["optimizer", "lr", "wd"]).set_index("axis")
    # groups varying lr: 4 groups (opt x wd) of 3 models, tau = 1 in each
    assert h.loc["lr", "psi"] == pytest.approx(1.0) and h.loc["lr", "groups"] == 4
    assert h.loc["optimizer", "psi"] == 0.0  # lr_measure constant within those groups
    assert h.loc["granulated", "psi"] == pytest.approx(1.0 / 3.0)
    with pytest.raises(ValueError, match="axes"):
        granulated_tau(df, "lr_measure", [])
    with pytest.raises(KeyError, match="nope"):
        granulated_tau(df, "nope", ["lr"])
