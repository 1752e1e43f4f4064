"""Tests of renyilib.experiments.gap_noise (paired bootstrap of the gap over test points)."""

from __future__ import annotations

import numpy as np
import pytest

from renyilib.experiments.gap_noise import gap_draws


def test_gap_draws_paired_and_unbiased() -> None:
    rng = np.random.default_rng(0)
    m = 400
    base = rng.exponential(0.3, size=m)
    # model 1 = model 0 + 0.1 on every test point: paired draws keep the difference exactly
    losses = np.stack([base, base + 0.1, rng.exponential(0.3, size=m)])
    train = np.array([0.01, 0.02, 0.03])
    d = gap_draws(losses, train, num_draws=2000, seed=1)
    assert d.shape == (2000, 3)
    np.testing.assert_allclose(d[:, 1] - d[:, 0], 0.1 - 0.01, atol=1e-12)
    # mean and standard error of a bootstrap mean: the sample mean and std / sqrt(m)
    assert d[:, 0].mean() == pytest.approx(base.mean() - 0.01, abs=3 * base.std() / np.sqrt(m) / 10)
    assert d[:, 0].std() == pytest.approx(base.std() / np.sqrt(m), rel=0.1)
    np.testing.assert_array_equal(d, gap_draws(losses, train, num_draws=2000, seed=1))


def test_gap_draws_constant_losses_and_errors() -> None:
    losses = np.tile(np.array([[0.5], [0.2]]), (1, 30))
    d = gap_draws(losses, [0.1, 0.1], num_draws=5)
    np.testing.assert_allclose(d, np.tile([0.4, 0.1], (5, 1)))
    with pytest.raises(ValueError, match="losses must have shape"):
        gap_draws(losses, [0.1], num_draws=5)
    with pytest.raises(ValueError, match="num_draws"):
        gap_draws(losses, [0.1, 0.1], num_draws=1)


def test_zoo_gap_draws_on_trained_runs(tmp_path, tiny_zoo_config) -> None:
    """Per-sample test losses of real runs average to their recorded test loss; paths must share a test set."""
    from renyilib.experiments import zoo
    from renyilib.experiments.gap_noise import per_sample_test_losses, zoo_gap_draws
    from renyilib.experiments.io import read_json

    configs = zoo.grid("digits-mlp", "smoke", config_path=tiny_zoo_config)[:2]
    zoo.run_zoo(configs, tmp_path / "zoo", progress=False)
    runs = [zoo.run_dir(tmp_path / "zoo", c) for c in configs]
    for r in runs:
        losses = per_sample_test_losses(r)
        assert losses.shape == (30,)
        assert losses.mean() == pytest.approx(read_json(r / "metrics.json")["test_loss"], rel=1e-5)
    draws, gaps = zoo_gap_draws(runs, num_draws=50)
    assert draws.shape == (50, 2) and np.all(np.isfinite(draws))
    assert np.abs(draws.mean(0) - gaps).max() < 4 * draws.std(0).max()
    other = dict(configs[0], data={**configs[0]["data"], "test_subset": 20})
    zoo.run_zoo([other], tmp_path / "zoo", progress=False)
    with pytest.raises(ValueError, match="different test sets"):
        zoo_gap_draws([*runs, zoo.run_dir(tmp_path / "zoo", other)], num_draws=5)
