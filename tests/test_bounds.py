"""Tests of renyilib.bounds: closed forms, monotonicity, assumptions, the Appendix C chain."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from renyilib import bounds as B


def _renyi(p, alpha):
    """Independent reference: H_α of a probability vector from the definition."""
    p = np.asarray(p, dtype=np.float64)
    p = p / p.sum()
    return math.log(np.sum(p**alpha)) / (1 - alpha)


# --------------------------------------------------------------------------- Theorem B.1


def test_hoeffding_closed_form():
    # C sqrt(log(1/δ)/(2n)) with log(1/δ) = 4, n = 200 -> sqrt(4/400) = 0.1, exactly.
    assert B.hoeffding_term(200, math.exp(-4)) == pytest.approx(0.1, rel=1e-14)
    assert B.hoeffding_term(200, math.exp(-4), loss_range=3.0) == pytest.approx(0.3, rel=1e-14)
    assert B.hoeffding_term(10, 1.0) == 0.0


def test_multiplicative_bound_value_and_monotonicity():
    b = B.multiplicative_perturbation_bound(0.2, 800, math.exp(-2))
    assert b.value == pytest.approx(0.2 + math.sqrt(2 / 1600), rel=1e-14)
    assert b.empirical == 0.2 and not b.vacuous
    ns = [10, 100, 1000, 10_000]
    vals = [B.multiplicative_perturbation_bound(0.1, n, 0.05).value for n in ns]
    assert all(a > b for a, b in itertools.pairwise(vals))  # decreasing in n
    deltas = [0.001, 0.01, 0.1, 0.5]
    vals = [B.multiplicative_perturbation_bound(0.1, 100, d).value for d in deltas]
    assert all(a > b for a, b in itertools.pairwise(vals))  # decreasing in δ (less confidence)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"perturbed_loss": 1.5, "n": 10, "delta": 0.1}, "perturbed_loss"),
        ({"perturbed_loss": 0.5, "n": 0, "delta": 0.1}, "n"),
        ({"perturbed_loss": 0.5, "n": 10, "delta": 0.0}, "delta"),
        ({"perturbed_loss": 0.5, "n": 10, "delta": 0.1, "loss_range": -1}, "loss_range"),
    ],
)
def test_multiplicative_bound_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        B.multiplicative_perturbation_bound(**kwargs)


def test_haar_orthogonal_is_orthogonal_seeded_and_haar():
    g = torch.Generator().manual_seed(0)
    a = B.haar_orthogonal(6, generator=g)
    assert torch.allclose(a @ a.T, torch.eye(6, dtype=torch.float64), atol=1e-13)
    a2 = B.haar_orthogonal(6, generator=torch.Generator().manual_seed(0))
    b2 = B.haar_orthogonal(6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a2, b2)
    # Haar on O(3): E[A_11^2] = 1/3, E[A_11] = 0, det = ±1 equally often.
    # 1000 draws: sd of A_11^2 is sqrt(1/5 - 1/9) < 0.3, so the mean's sd < 0.0095; 5 sd < 0.05.
    g = torch.Generator().manual_seed(1)
    draws = torch.stack([B.haar_orthogonal(3, generator=g) for _ in range(1000)])
    assert float((draws[:, 0, 0] ** 2).mean()) == pytest.approx(1 / 3, abs=0.05)
    assert abs(float(draws[:, 0, 0].mean())) < 0.05
    dets = torch.linalg.det(draws)
    assert 0.42 < float((dets > 0).double().mean()) < 0.58  # sd 0.016, 5 sd


def test_perturbed_loss_closed_form_linear_model():
    # f(x) = w·x, squared loss: E_A[(w·(x + ρAx) - y)^2] = (w·x - y)^2 + ρ²|w|²|x|²/d
    # because E_A[A] = 0 and E_A[A x xᵀ Aᵀ] = |x|² I / d for Haar A on O(d).
    torch.manual_seed(0)
    d, n = 4, 5
    lin = torch.nn.Linear(d, 1, bias=False).double()
    x = torch.randn(n, d, dtype=torch.float64)
    y = torch.randn(n, 1, dtype=torch.float64)
    mse = torch.nn.MSELoss()
    rho = 0.3
    mean0, se0 = B.perturbed_loss(lin, mse, (x, y), 0.0, num_draws=3, seed=0)
    with torch.no_grad():
        plain = float(mse(lin(x), y))
    assert mean0 == pytest.approx(plain, rel=1e-14) and se0 < 1e-15
    w = lin.weight.detach().ravel()
    exact = float(((x @ w - y.ravel()) ** 2).mean() + rho**2 * (w @ w) * (x**2).sum(1).mean() / d)
    mean, se = B.perturbed_loss(lin, mse, (x, y), rho, num_draws=300, seed=1)
    assert abs(mean - exact) < 5 * se  # Monte Carlo: within 5 standard errors
    again = B.perturbed_loss(lin, mse, [(x[:2], y[:2]), (x[2:], y[2:])], rho, num_draws=300, seed=1)
    assert again[0] == pytest.approx(mean, rel=1e-12)  # batching does not change the number


# --------------------------------------------------------------------------- Prop. C.1


def test_log_ball_volume_closed_forms():
    assert math.exp(B.log_ball_volume(1, 2.0)) == pytest.approx(4.0, rel=1e-13)
    assert math.exp(B.log_ball_volume(2, 3.0)) == pytest.approx(9 * math.pi, rel=1e-13)
    assert math.exp(B.log_ball_volume(3, 1.0)) == pytest.approx(4 * math.pi / 3, rel=1e-13)


def test_jia_su_lambda_closed_form_and_meaning():
    # n = 1: Λ = 1 · V² · h / (4πe).
    h, v = 2.5, 0.7
    assert math.exp(B.jia_su_log_lambda(math.log(h), 1, math.log(v))) == pytest.approx(
        v**2 * h / (4 * math.pi * math.e), rel=1e-13
    )
    # Meaning: for the ellipsoid {½xᵀHx <= c} of volume V, Λ/c -> 1 as n grows
    # (Λ/c = n vol(B_n)^{2/n} / (2πe) = 1 - O(log n / n)).
    for n, tol in [(1000, 0.02), (100_000, 0.0003)]:
        c = 0.37
        log_det = 0.3 * n  # any |H|
        log_v = B.log_ball_volume(n) + 0.5 * n * math.log(2 * c) - 0.5 * log_det
        ratio = math.exp(B.jia_su_log_lambda(log_det, n, log_v)) / c
        assert 1 - tol < ratio < 1


def test_renyi_lambda_dominates_exact_lambda():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(2, 60))
        lam = rng.gamma(0.3, size=n) + 1e-8
        for alpha in (0.5, 2.0):
            exact = B.jia_su_log_lambda(float(np.log(lam).sum()), n, 0.0)
            renyi = B.renyi_log_lambda(float(lam.sum()), _renyi(lam, alpha), n, 0.0)
            assert renyi >= exact - 1e-12


def test_renyi_factor_range_is_tiny_for_large_n():
    lo, hi = B.renyi_factor_range(2)
    assert lo == pytest.approx(2**-0.5) and hi == 1.0
    # the whole range of H_α moves Λ_α by < 0.1% for n = 10^4 parameters
    lo, _ = B.renyi_factor_range(10_000)
    assert 0.999 < lo < 1


def test_jia_su_bound_closed_form_and_monotonicity():
    b = B.jia_su_bound(0.1, 0.05, math.log(0.2), 101, 1.0)
    assert b.value == pytest.approx(
        0.1 + 2 * math.sqrt((0.1 + 0.4 + math.log(202)) / 100), rel=1e-14
    )
    vals = [B.jia_su_bound(0.1, 0.05, 0.0, n, 0.05).value for n in (10, 100, 1000)]
    assert vals[0] > vals[1] > vals[2]
    vals = [B.jia_su_bound(0.1, 0.05, 0.0, 100, d).value for d in (0.01, 0.1, 1.0)]
    assert vals[0] > vals[1] > vals[2]


def test_renyi_pac_bayes_bound_uses_renyi_lambda():
    lam = np.array([3.0, 1.0, 0.5, 0.1])
    ent = _renyi(lam, 2.0)
    b = B.renyi_pac_bayes_bound(
        0.1, 0.05, 500, 0.05, trace=float(lam.sum()), entropy=ent, dim=4, log_volume=-3.0
    )
    lam_r = 4 * math.exp(2 * -3.0 / 4) * lam.sum() * math.exp(-ent / 4) / (4 * math.pi * math.e)
    assert b.details["lambda"] == pytest.approx(lam_r, rel=1e-13)
    assert b.value == pytest.approx(
        0.1 + 2 * math.sqrt((0.1 + 2 * lam_r + math.log(1000 / 0.05)) / 499), rel=1e-13
    )
    with pytest.raises(ValueError, match="entropy"):
        B.renyi_pac_bayes_bound(0.1, 0.0, 500, 0.05, trace=1.0, entropy=2.0, dim=4, log_volume=0.0)


@pytest.mark.parametrize("bad", [-0.1, 1.2, float("nan")])
def test_pac_bayes_bounds_require_unit_interval_loss(bad):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        B.jia_su_bound(bad, 0.0, 0.0, 100, 0.1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        B.ellipsoid_bound(bad, 100, 0.1, [1.0, 2.0], rho=0.1)


# --------------------------------------------------------------------------- Thm. D.1


def test_ellipsoid_posterior_excess_closed_form_and_monte_carlo():
    # d = 1: uniform on [-ρ, ρ] in y: E[y²/2] = ρ²/6.
    assert B.ellipsoid_posterior_excess(1, 0.3) == pytest.approx(0.09 / 6, rel=1e-14)
    # d = 5: Monte Carlo in the ellipsoid of H (change of variables y = H^{1/2} x).
    rng = np.random.default_rng(0)
    d, rho = 5, 0.7
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    h = q @ np.diag([0.1, 0.5, 1.0, 2.0, 9.0]) @ q.T
    z = rng.normal(size=(200_000, d))
    y = (
        z
        / np.linalg.norm(z, axis=1, keepdims=True)
        * rho
        * rng.uniform(size=(200_000, 1)) ** (1 / d)
    )
    hinv_half = q @ np.diag(np.array([0.1, 0.5, 1.0, 2.0, 9.0]) ** -0.5) @ q.T
    x = y @ hinv_half
    vals = 0.5 * np.einsum("ij,jk,ik->i", x, h, x)
    se = vals.std() / math.sqrt(len(vals))
    assert abs(vals.mean() - B.ellipsoid_posterior_excess(d, rho)) < 5 * se


def test_ellipsoid_kl_closed_form():
    # d = 2: KL = log(πR² / (πρ²/sqrt(det H))).
    det = 6.0
    assert B.ellipsoid_kl(math.log(det), 2, 0.5, 4.0) == pytest.approx(
        math.log(16.0 / (0.25 / math.sqrt(det))), rel=1e-14
    )


def test_ellipsoid_bounds_exact_vs_renyi():
    lam = np.array([0.5, 1.0, 2.0, 4.0, 8.0])
    d, rho, n, delta = 5, 0.1, 1000, 0.05
    exact = B.ellipsoid_bound(0.02, n, delta, lam, rho)
    kl = 0.5 * np.log(lam / lam.min()).sum()  # R = ρ/sqrt(λ_min): d log(R/ρ) = -d/2 log λ_min
    assert exact.details["kl"] == pytest.approx(kl, rel=1e-13)
    assert exact.value == pytest.approx(
        0.02 + d * rho**2 / (2 * (d + 2)) + math.sqrt((kl + math.log(n / delta)) / (2 * (n - 1))),
        rel=1e-13,
    )
    for alpha in (0.5, 1.5, 3.0):
        ent = _renyi(lam, alpha)
        ren = B.renyi_ellipsoid_bound(
            0.02, n, delta, dim=d, trace=lam.sum(), entropy=ent, lambda_min=lam.min(), rho=rho
        )
        kl_r = 0.5 * (d * math.log(lam.sum() / lam.min()) - ent)
        assert ren.details["kl"] == pytest.approx(kl_r, rel=1e-13)
        assert ren.value >= exact.value
    # Uniform spectrum: KL_exact = 0, KL_Rényi = ½ (d - 1) log d exactly (H_α = log d).
    uni = np.full(d, 2.0)
    assert B.ellipsoid_bound(0.0, n, delta, uni, rho).details["kl"] == pytest.approx(0.0, abs=1e-14)
    ren = B.renyi_ellipsoid_bound(
        0.0, n, delta, dim=d, trace=uni.sum(), entropy=math.log(d), lambda_min=2.0, rho=rho
    )
    assert ren.details["kl"] == pytest.approx(0.5 * (d - 1) * math.log(d), rel=1e-13)


def test_ellipsoid_bound_monotone_in_n_and_delta_and_checks_prior():
    lam = [0.5, 1.0, 2.0]
    vals = [B.ellipsoid_bound(0.1, n, 0.05, lam, 0.1).value for n in (10, 100, 1000, 10_000)]
    assert all(a > b for a, b in itertools.pairwise(vals))
    vals = [B.ellipsoid_bound(0.1, 100, d, lam, 0.1).value for d in (0.001, 0.01, 0.1, 1.0)]
    assert all(a > b for a, b in itertools.pairwise(vals))
    with pytest.raises(ValueError, match="prior_radius"):
        B.ellipsoid_bound(0.1, 100, 0.05, lam, 0.1, prior_radius=0.1)
    with pytest.raises(ValueError, match="eigenvalues"):
        B.ellipsoid_bound(0.1, 100, 0.05, [1.0, -1.0], 0.1)
    # a larger prior costs d log(R/R_min) nats of KL
    b1 = B.ellipsoid_bound(0.1, 100, 0.05, lam, 0.1)
    b2 = B.ellipsoid_bound(0.1, 100, 0.05, lam, 0.1, prior_radius=2 * b1.details["prior_radius"])
    assert b2.details["kl"] - b1.details["kl"] == pytest.approx(3 * math.log(2), rel=1e-12)


# --------------------------------------------------------------------------- the chain

ALPHAS = (0.1, 0.5, 0.9, 1.1, 1.5, 2.0, 5.0)


def _random_spectra(count, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        n = int(rng.integers(1, 200))
        conc = 10 ** rng.uniform(-1.5, 1.5)
        out.append(np.clip(rng.dirichlet(np.full(n, conc)), 1e-300, None))
    return out


def test_chain_true_steps_hold_on_random_spectra():
    df = B.chain_table(_random_spectra(300), ALPHAS)
    assert bool(df["step_29"].all()) and bool(df["step_36"].all()) and bool(df["step_40"].all())
    low = df[df["alpha"] < 1]
    assert bool(low["step_34"].astype(bool).all()) and bool(low["step_37"].astype(bool).all())
    # the Rényi route via Shannon (step 31) is valid for α > 1, and false for every
    # non-uniform spectrum when α < 1 (H_α > H_1 strictly there) ...
    assert bool(df[df["alpha"] > 1]["step_31"].all())
    assert not bool(df[(df["alpha"] < 1) & (df["n"] >= 2)]["step_31"].any())
    # ... and the slack of the final inequality is at least (n - 1) log n (AM-GM + H_α <= log n)
    assert bool((df["slack_40"] >= (df["n"] - 1) * np.log(df["n"]) - 1e-8).all())


def test_chain_neg_renyi_matches_definition():
    p = np.array([0.5, 0.3, 0.2])
    out = B.appendix_c_chain(p, 2.0)
    assert out["neg_renyi"] == pytest.approx(-_renyi(p, 2.0), rel=1e-12)
    assert out["sum_log_p"] == pytest.approx(float(np.log(p).sum()), rel=1e-14)


def test_chain_step_31_fails_for_alpha_below_one():
    # Concrete counterexample: p = (0.9, 0.1), α = 0.5.
    # -H_1 = 0.9 log 0.9 + 0.1 log 0.1 = -0.3251 > -H_0.5 = -2 log(sqrt(.9) + sqrt(.1)) = -0.4700.
    p = np.array([0.9, 0.1])
    out = B.appendix_c_chain(p, 0.5)
    assert out["neg_shannon"] == pytest.approx(-0.325083, abs=1e-6)
    assert out["neg_renyi"] == pytest.approx(-0.470004, abs=1e-6)
    assert out["step_31"] is False
    assert out["step_40"] is True  # but the final claim still holds (by the α < 1 route)
    found = B.find_chain_counterexample("31", 0.5, dim=3, num_trials=200, seed=0)
    assert found is not None and B.appendix_c_chain(found, 0.5)["step_31"] is False
    # the searcher finds nothing for the true statements
    for step, alpha in [("40", 0.5), ("40", 2.0), ("31", 2.0), ("29", 0.3), ("37", 0.7)]:
        assert B.find_chain_counterexample(step, alpha, dim=4, num_trials=300, seed=1) is None


def test_chain_rejects_bad_input():
    with pytest.raises(ValueError, match="alpha"):
        B.appendix_c_chain([0.5, 0.5], 1.0)
    with pytest.raises(ValueError, match="p must"):
        B.appendix_c_chain([0.5, 0.0], 2.0)
    with pytest.raises(KeyError, match="step"):
        B.find_chain_counterexample("99", 2.0)


# --------------------------------------------------------------------------- real networks


def test_bounded_error_loss_values():
    out = torch.zeros(4, 5, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3])
    assert float(B.bounded_error_loss(out, y)) == pytest.approx(0.8, rel=1e-15)  # 1 - 1/K
    big = torch.full((2, 3), -50.0, dtype=torch.float64)
    big[0, 1] = big[1, 2] = 50.0
    assert float(B.bounded_error_loss(big, torch.tensor([1, 0]))) == pytest.approx(0.5, abs=1e-12)


def test_model_bounds_against_an_independent_dense_hessian():
    torch.manual_seed(0)
    net = (
        torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
        .double()
        .eval()
    )
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=g)
    with torch.no_grad():
        l0 = float(B.bounded_error_loss(net(x), y))
    df = B.model_bounds(net, (x, y), train_loss=l0, n=40, alpha=2.0, shift=1e-2)
    assert list(df["block"]) == ["0.weight", "2.weight"] and list(df["dim"]) == [12, 12]
    # reference: Hessian of the bounded loss w.r.t. 2.weight by torch.func.hessian
    params = {k: v.detach() for k, v in net.named_parameters()}

    def f(w):
        out = torch.func.functional_call(net, {**params, "2.weight": w.reshape(3, 4)}, (x,))
        return B.bounded_error_loss(out, y)

    h = torch.func.hessian(f)(params["2.weight"].reshape(-1)).numpy()
    ev = np.abs(np.linalg.eigvalsh(h))
    ev = ev + 1e-2 * ev.sum() / 12
    row = df.iloc[1]
    assert row["trace"] == pytest.approx(ev.sum(), rel=1e-10)
    assert row["lambda_min"] == pytest.approx(ev.min(), rel=1e-8)
    assert row["log_det"] == pytest.approx(np.log(ev).sum(), rel=1e-8)
    assert row["entropy"] == pytest.approx(_renyi(ev, 2.0), abs=1e-10)
    assert row["renyi_d1_kl"] == pytest.approx(
        0.5 * (12 * math.log(ev.sum() / ev.min()) - _renyi(ev, 2.0)), rel=1e-9
    )
    # the Rényi forms are never tighter than the exact-determinant forms
    assert bool((df["renyi_c1"] >= df["jia_su"] - 1e-12).all())
    assert bool((df["renyi_d1"] >= df["ellipsoid"] - 1e-12).all())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        B.model_bounds(net, (x, y), train_loss=1.5, n=40, alpha=2.0)
    with pytest.raises(KeyError, match="blocks"):
        B.model_bounds(net, (x, y), train_loss=l0, n=40, alpha=2.0, blocks=["nope"])
