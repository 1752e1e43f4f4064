"""renyilib.entropy: one Rényi-entropy implementation for exact spectra and quadratures."""

from __future__ import annotations

import math

import numpy as np
import pytest

from renyilib.entropy import (
    check_orders,
    renyi_entropy,
    renyi_from_masses,
    renyi_shift_sensitivity,
    spectrum_magnitude,
)
from renyilib.lanczos import SpectralQuadrature

ALPHAS = np.array([0.3, 0.9, 1.0, 1.2, 2.0, 5.0, np.inf])


def _brute(lam: np.ndarray, a: float) -> float:
    p = np.abs(lam) / np.abs(lam).sum()
    p = p[p > 0]
    if a == 1:
        return float(-(p * np.log(p)).sum())
    if np.isinf(a):
        return float(-np.log(p.max()))
    return float(np.log((p**a).sum()) / (1 - a))


def test_exact_spectrum_is_a_unit_weight_measure():
    lam = np.random.default_rng(0).normal(size=30)
    want = np.array([_brute(lam, a) for a in ALPHAS])
    np.testing.assert_allclose(renyi_entropy(lam, ALPHAS), want, rtol=1e-12, atol=1e-14)
    # The same spectrum as a quadrature: l identical probes, each with the n eigenvalues as
    # nodes and weights 1/n, so (n/l) sum_k sum_j tau f(theta) = sum_i f(lambda_i).
    n, probes = len(lam), 3
    q = SpectralQuadrature(
        nodes=np.tile(lam, (probes, 1)), weights=np.full((probes, n), 1 / n), dim=n, num_probes=probes,
        lanczos_steps=n,
    )  # fmt: skip
    est = q.renyi_entropy(ALPHAS)
    np.testing.assert_allclose(est.value, want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(est.stderr, 0.0, atol=1e-12)  # identical probes
    vals, se = renyi_from_masses(
        np.zeros((0, 1)), np.zeros((0, 1)), np.ones(n), np.abs(lam), ALPHAS
    )
    np.testing.assert_allclose(vals, want, rtol=1e-12, atol=1e-14)
    assert np.all(np.isnan(se))  # no probes: no jackknife


def test_orders_and_magnitudes():
    assert check_orders(2.0)[1] and not check_orders([1.0, 2.0])[1]
    for bad in (0.0, -1.0, [np.nan], [], [[1.0]], "x"):
        with pytest.raises(ValueError, match="alpha"):
            check_orders(bad)
    np.testing.assert_array_equal(spectrum_magnitude("abs")(np.array([-2.0, 1.0])), [2.0, 1.0])
    np.testing.assert_array_equal(spectrum_magnitude("positive")(np.array([-2.0, 1.0])), [0, 1])
    with pytest.raises(ValueError, match="negative"):
        spectrum_magnitude("shift")


def test_shift_sensitivity_is_the_sum_of_single_node_changes():
    rng = np.random.default_rng(1)
    lam, mu = rng.uniform(0.1, 3.0, 12), rng.uniform(0.5, 2.0, 12)
    eps = 0.05

    def ent(nodes: np.ndarray) -> np.ndarray:
        return renyi_from_masses(np.zeros((0, 1)), np.zeros((0, 1)), mu, np.abs(nodes), ALPHAS)[0]

    base = ent(lam)
    want = np.zeros(len(ALPHAS))
    for j in range(len(lam)):
        worst = np.zeros(len(ALPHAS))
        for s in (-1, 1):
            moved = lam.copy()
            moved[j] += s * eps
            worst = np.maximum(worst, np.abs(ent(moved) - base))
        want += worst
    got = renyi_shift_sensitivity(mu, lam, eps, ALPHAS)
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-15)
    assert np.all(renyi_shift_sensitivity(mu, lam, 0.0, ALPHAS) == 0)
    assert math.isfinite(got.sum())
