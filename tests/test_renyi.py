"""Rényi entropy: closed forms, properties, the paper's normalization and renyi_sharpness."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import dense_hessian, split_batches, tiny_cnn
from test_lanczos import heavy_tailed, with_spectrum
from torch import nn

from renyilib.hessian import layer_blocks
from renyilib.lanczos import lanczos, probe_vectors, slq
from renyilib.renyi import PAPER_ALPHAS, renyi_entropy, renyi_sharpness

CE = nn.CrossEntropyLoss()
GRID = np.array([*PAPER_ALPHAS, 4.0, 10.0, 50.0, np.inf])


def test_paper_alphas_are_appendix_g4():
    assert len(PAPER_ALPHAS) == 37
    assert PAPER_ALPHAS[:4] == (0.0001, 0.01, 0.03, 0.06)
    assert {0.99, 0.999, 1.001, 1.01, 1.4, 1.5, 1.6, 1.8, 2.4, 3.0} <= set(PAPER_ALPHAS)
    assert 1.0 not in PAPER_ALPHAS and list(PAPER_ALPHAS) == sorted(PAPER_ALPHAS)


def test_uniform_spectrum_gives_log_n():
    for n in (1, 2, 7, 1000):
        np.testing.assert_allclose(renyi_entropy(np.full(n, 0.3), GRID), math.log(n), atol=1e-12)


def test_two_point_closed_form():
    p = 0.2
    lam = np.array([p, 1 - p]) * 5.0
    for a in (0.3, 0.9, 1.2, 2.0, 3.0):
        ref = math.log(p**a + (1 - p) ** a) / (1 - a)
        assert abs(renyi_entropy(lam, a) - ref) < 1e-12
    shannon = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    assert abs(renyi_entropy(lam, 1.0) - shannon) < 1e-14
    assert abs(renyi_entropy(lam, np.inf) + math.log(1 - p)) < 1e-14


def test_scale_invariance_monotonicity_and_bounds():
    lam = heavy_tailed(300, seed=1, negative=True)
    h = renyi_entropy(lam, GRID)
    for c in (1e-6, 3.0, 1e5):
        np.testing.assert_allclose(renyi_entropy(c * lam, GRID), h, rtol=1e-12, atol=1e-12)
    assert np.all(np.diff(h) <= 1e-12)  # non-increasing in alpha
    assert np.all((h >= 0) & (h <= math.log(len(lam)) + 1e-12))


def test_continuity_through_one():
    lam = heavy_tailed(300, seed=2)
    p = lam / lam.sum()
    h1 = renyi_entropy(lam, 1.0)
    np.testing.assert_allclose(h1, -(p * np.log(p)).sum(), rtol=1e-14)
    # dH/dα at 1 is -Var_p(log p)/2, so |H(1±δ) - H(1)| <= (Var/2)·δ·(1 + O(δ)).
    slope = 0.5 * ((p * np.log(p) ** 2).sum() - (p * np.log(p)).sum() ** 2)
    for d in (1e-3, 1e-6, 1e-9):
        for a in (1 - d, 1 + d):
            assert abs(renyi_entropy(lam, a) - h1) <= 1.01 * slope * d + 1e-13
    # The quadrature version is continuous through 1 the same way.
    q = slq(with_spectrum(lam, seed=2), 10, 20, seed=0)
    q1 = q.renyi_entropy(1.0).value
    for d in (1e-3, 1e-6, 1e-9):
        vals = q.renyi_entropy([1 - d, 1 + d]).value
        assert np.all(np.abs(vals - q1) <= 2 * slope * d + 1e-12), (d, vals - q1)
    assert abs(q.renyi_entropy(1.0).stderr - q.renyi_entropy(1 + 1e-9).stderr) < 1e-6


def test_negative_conventions_and_inputs():
    lam = np.array([-2.0, 0.0, 1.0, 3.0])
    np.testing.assert_allclose(
        renyi_entropy(lam, GRID), renyi_entropy(np.abs(lam), GRID), atol=1e-15
    )
    np.testing.assert_allclose(
        renyi_entropy(lam, GRID, negative="positive"), renyi_entropy([1.0, 3.0], GRID)
    )
    assert renyi_entropy(torch.tensor(lam), 2.0) == renyi_entropy(lam, 2.0)
    assert isinstance(renyi_entropy(lam, 2.0), float)
    assert renyi_entropy(lam, [2.0]).shape == (1,)


def test_errors():
    with pytest.raises(ValueError, match="alpha"):
        renyi_entropy([1.0, 2.0], 0.0)
    with pytest.raises(ValueError, match="alpha"):
        renyi_entropy([1.0, 2.0], [0.5, float("nan")])
    with pytest.raises(ValueError, match="alpha"):
        renyi_entropy([1.0, 2.0], -1.0)
    with pytest.raises(ValueError, match="non-empty"):
        renyi_entropy([], 2.0)
    with pytest.raises(ValueError, match="all zero"):
        renyi_entropy([0.0, 0.0], 2.0)
    with pytest.raises(ValueError, match="all zero"):
        renyi_entropy([-1.0, -2.0], 2.0, negative="positive")
    with pytest.raises(ValueError, match="negative"):
        renyi_entropy([1.0], 2.0, negative="shift")
    with pytest.raises(ValueError, match="finite"):
        renyi_entropy([1.0, np.inf], 2.0)


def test_paper_normalization_is_algorithm_1_as_printed():
    lam = heavy_tailed(80, seed=3, negative=True)
    A = with_spectrum(lam, seed=3)
    n, nprobe, m = 80, 7, 12
    alphas = np.array([0.5, 0.9, 1.5, 2.0, 3.0])
    q = slq(A, nprobe, m, seed=5)
    # Independent evaluation of Algorithm 1: A_k = e1ᵀ|T_k|^α e1, B_k = e1ᵀ|T_k| e1 with
    # |T|^α from a dense numpy eigh of each T_k, probes from the same seed.
    V = probe_vectors(n, nprobe, seed=5)
    Ts = [lanczos(A, m, V[:, k]).tridiagonal() for k in range(nprobe)]
    for a, got in zip(alphas, q.renyi_entropy(alphas, normalization="paper").value):
        Ak, Bk = [], []
        for T in Ts:
            th, U = np.linalg.eigh(T)
            Ak.append((U[0] ** 2) @ np.abs(th) ** a)
            Bk.append((U[0] ** 2) @ np.abs(th))
        ref = math.log(sum(Ak) / sum(Bk) ** a) / (1 - a)
        assert abs(got - ref) < 1e-10
    # ... which is the entropy shifted by log(l/n).
    shift = q.renyi_entropy(alphas, normalization="paper").value - q.renyi_entropy(alphas).value
    np.testing.assert_allclose(shift, math.log(nprobe / n), atol=1e-10)
    with pytest.raises(ValueError, match="deflat"):
        slq(A, 3, 5, seed=0, deflate=2).renyi_entropy(2.0, normalization="paper")


@pytest.fixture
def cnn_setup():
    model = tiny_cnn()
    g = torch.Generator().manual_seed(4)
    x, y = (
        torch.randn(12, 1, 6, 6, generator=g, dtype=torch.float64),
        torch.randint(0, 3, (12,), generator=g),
    )
    return model, x, y


def test_renyi_sharpness_exact_matches_eigvalsh(cnn_setup):
    model, x, y = cnn_setup
    alphas = [0.5, 1.0, 2.0]
    with pytest.warns(RuntimeWarning, match="unused.weight"):
        df = renyi_sharpness(
            model,
            CE,
            split_batches(x, y, 5),
            alphas,
            blocks="both",
            spectrum="exact",
            progress=False,
        )
    blocks = layer_blocks(model)
    assert list(df.block.unique()) == list(blocks)
    assert len(df) == len(blocks) * 3
    for name, params in blocks.items():
        if name == "unused.weight":
            continue
        lam = np.linalg.eigvalsh(dense_hessian(model, CE, x, y, params).numpy())
        rows = df[df.block == name]
        np.testing.assert_allclose(rows.entropy, renyi_entropy(lam, alphas), atol=1e-9)
        np.testing.assert_allclose(rows.sharpness, -rows.entropy)
        np.testing.assert_allclose(rows.trace, lam.sum(), atol=1e-9)
        assert (rows.dim == len(lam)).all() and (rows.method == "exact").all()
        np.testing.assert_allclose(
            rows.negative_mass, np.abs(lam[lam < 0]).sum() / np.abs(lam).sum(), atol=1e-9
        )
    # The unused layer has an all-zero Hessian: entropy undefined, reported as NaN.
    assert df[df.block == "unused.weight"].entropy.isna().all()


def test_renyi_sharpness_slq_close_to_exact_and_reproducible(cnn_setup):
    model, x, y = cnn_setup
    blocks = ["conv2.weight", "head.weight", "all"]
    alphas = [0.5, 1.0, 1.5, 2.0]
    exact = renyi_sharpness(
        model, CE, (x, y), alphas, blocks=blocks, spectrum="exact", progress=False
    )
    df, quads = renyi_sharpness(
        model,
        CE,
        (x, y),
        alphas,
        blocks=blocks,
        num_probes=12,
        lanczos_steps=100,
        seed=1,
        progress=False,
        return_quadratures=True,
    )
    cols = {
        "block",
        "alpha",
        "entropy",
        "sharpness",
        "stderr",
        "dim",
        "trace",
        "negative_mass",
        "num_matvecs",
        "seconds",
    }
    assert cols <= set(df.columns) and isinstance(df, pd.DataFrame)
    # lanczos_steps >= dim: every probe's quadrature is exact and the only error is the
    # probe average; tolerance 5 jackknife standard errors + 1e-9.
    err = np.abs(df.entropy.to_numpy() - exact.entropy.to_numpy())
    assert np.all(err <= 5 * df.stderr.to_numpy() + 1e-9), (err, df.stderr)
    assert set(quads) == set(blocks) and quads["all"].dim == exact[exact.block == "all"].dim.iloc[0]
    again = renyi_sharpness(
        model,
        CE,
        (x, y),
        alphas,
        blocks=blocks,
        num_probes=12,
        lanczos_steps=100,
        seed=1,
        progress=False,
    )
    np.testing.assert_array_equal(again.entropy, df.entropy)
    auto = renyi_sharpness(model, CE, (x, y), alphas, blocks="all", spectrum="auto", progress=False)
    assert (auto.spectrum == "exact").all() and (auto.method == "exact").all()
    # The old keyword names still work, with a DeprecationWarning.
    with pytest.warns(DeprecationWarning, match="spectrum"):
        old = renyi_sharpness(
            model, CE, (x, y), alphas, blocks="all", method="auto", progress=False
        )
    with pytest.warns(DeprecationWarning, match="backend"):
        old_b = renyi_sharpness(
            model, CE, (x, y), alphas, blocks="all", spectrum="auto", hessian_method="jvp",
            progress=False,
        )  # fmt: skip
    np.testing.assert_allclose(old.entropy, auto.entropy, rtol=0, atol=0)
    np.testing.assert_allclose(old_b.entropy, auto.entropy, rtol=1e-9, atol=1e-12)


def test_renyi_sharpness_errors(cnn_setup):
    model, x, y = cnn_setup
    with pytest.raises(KeyError, match="valid block names"):
        renyi_sharpness(model, CE, (x, y), blocks=["nope"], progress=False)
    with pytest.raises(ValueError, match="spectrum"):
        renyi_sharpness(model, CE, (x, y), spectrum="fast", progress=False)
    with pytest.raises(ValueError, match="backend"):
        renyi_sharpness(model, CE, (x, y), backend="fast", progress=False)
    with pytest.raises(ValueError, match="alpha"):
        renyi_sharpness(model, CE, (x, y), alphas=[0.0], progress=False)
    with pytest.raises(ValueError, match="train mode"):
        renyi_sharpness(model.train(), CE, (x, y), progress=False)


def test_renyi_sharpness_options_pass_through(cnn_setup):
    model, x, y = cnn_setup
    df, quads = renyi_sharpness(
        model,
        CE,
        (x, y),
        [0.5, 2.0],
        blocks="head.weight",
        num_probes=3,
        lanczos_steps=5,
        deflate=2,
        quadrature="radau",
        progress=False,
        return_quadratures=True,
    )
    q = quads["head.weight"]
    assert q.quadrature == "radau" and len(q.exact_nodes) == 2 and q.nodes.shape == (3, 6)
    assert np.all(np.isfinite(df.entropy)) and (df.method == "slq").all()
    assert df.num_matvecs.iloc[0] == q.num_matvecs


def test_renyi_sharpness_unconverged_deflation_names_the_block(cnn_setup):
    """A block whose deflated pairs do not converge is refused with its name and residuals,
    or, with deflate_unconverged='fold', measured with the residuals folded into stderr."""
    from renyilib.lanczos import DeflationError

    model, x, y = cnn_setup
    kw = dict(blocks="all", num_probes=3, lanczos_steps=5, deflate=3, progress=False)
    with pytest.raises(DeflationError, match=r"block 'all': .*did not converge.*residual"):
        renyi_sharpness(model, CE, (x, y), [0.5, 2.0], deflate_max_steps=4, **kw)
    folded, quads = renyi_sharpness(
        model,
        CE,
        (x, y),
        [0.5, 2.0],
        deflate_max_steps=4,
        deflate_unconverged="fold",
        return_quadratures=True,
        **kw,
    )
    plain = renyi_sharpness(
        model, CE, (x, y), [0.5, 2.0], deflate_max_steps=4, deflate_tol=1.0, **kw
    )
    assert quads["all"].residuals_folded and quads["all"].deflation_error > 0
    np.testing.assert_array_equal(folded.entropy, plain.entropy)  # same pairs, same probes
    assert np.all(folded.stderr > plain.stderr)
    with pytest.raises(ValueError, match="deflate_unconverged"):
        renyi_sharpness(model, CE, (x, y), deflate_unconverged="warn", progress=False)
