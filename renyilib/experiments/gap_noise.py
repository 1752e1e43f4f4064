"""The generalization gap's own noise: a paired bootstrap over test points.

A zoo's gap :math:`g_j = \\hat L_\\text{test}(\\theta_j) - \\hat L_\\text{train}(\\theta_j)`
is measured on a finite test set (360 images for digits), so it is itself an
estimate. Resampling the test points with replacement — the *same* indices for
every model, since all models are evaluated on the same test set — gives draws

.. math::

    g_j^{(b)} = \\frac{1}{M} \\sum_{i=1}^{M} \\ell(\\theta_j; x_{I_{b,i}}, y_{I_{b,i}})
    - \\hat L_\\text{train}(\\theta_j), \\qquad I_{b,i} \\sim \\text{U}\\{1..M\\},

and Kendall τ between a measure and each draw
(:func:`renyilib.statistics.tau_under_target_noise`) shows how much of a τ the
test set's finiteness alone can move. The training loss is the full training
set's and is held fixed (its sampling noise is not what a user could reduce by
a larger test set). Where the spread of τ over the draws is comparable to τ,
the test set is too small to rank the models by that measure.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["gap_draws", "per_sample_test_losses", "zoo_gap_draws"]


def per_sample_test_losses(path: str | os.PathLike, *, batch: int = 1024) -> np.ndarray:
    """Per-sample cross-entropy of a finished zoo run on its whole test set (cached).

    Args:
        path: A finished run folder ``<zoo>/<task>/<hash>``.
        batch: Evaluation batch size.

    Returns:
        ``(M,)`` float64 losses in test-set order, the model in eval mode
        (cached in the run's ``measures/`` as measurement ``"test_losses"``).
    """
    from renyilib.experiments import zoo

    def compute() -> dict[str, Any]:
        model, config, _ = zoo.load_run(path, device="cpu")
        data = zoo.run_data(config)
        losses = []
        with torch.no_grad():  # the bundle's own (normalized, un-augmented) test batches
            for x, y in data.batches("test", batch, shuffle=False, augment=False, device="cpu"):
                losses.append(nn.functional.cross_entropy(model(x), y, reduction="none"))
        return {"losses": torch.cat(losses).double().tolist()}

    res = zoo.measure(path, "test_losses", {"split": "test", "loss": "cross_entropy"}, compute)
    return np.asarray(res["losses"], dtype=float)


def gap_draws(
    losses: Sequence[np.ndarray] | np.ndarray,
    train_loss: Sequence[float] | np.ndarray,
    *,
    num_draws: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """Bootstrap draws of every model's gap, with the same resampled test points for all models.

    Args:
        losses: ``(N, M)`` per-sample test losses of N models on the same M test points.
        train_loss: ``(N,)`` training losses (held fixed).
        num_draws: Bootstrap draws B.
        seed: Seed of the resampling.

    Returns:
        ``(B, N)`` gaps.

    Raises:
        ValueError: Shapes that do not match, or ``num_draws < 2``.
    """
    L = np.asarray(losses, dtype=float)
    tr = np.asarray(train_loss, dtype=float)
    if L.ndim != 2 or L.shape[0] != tr.size:
        raise ValueError(
            f"losses must have shape (N, M) with N = len(train_loss) = {tr.size}, got {L.shape}"
        )
    if not isinstance(num_draws, int) or num_draws < 2:
        raise ValueError(f"num_draws must be an int >= 2, got {num_draws!r}")
    rng = np.random.default_rng(seed)
    m = L.shape[1]
    out = np.empty((num_draws, tr.size))
    for b in range(num_draws):
        idx = rng.integers(0, m, size=m)
        out[b] = L[:, idx].mean(axis=1) - tr
    return out


def zoo_gap_draws(
    paths: Sequence[str | os.PathLike], **kwargs: Any
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`gap_draws` of finished zoo runs (per-sample test losses cached per run).

    Returns:
        ``(draws, gaps)``: the ``(B, N)`` draws and the measured gaps
        (``metrics.json``'s ``test_loss − train_loss``), in the order of ``paths``.

    Raises:
        ValueError: The runs were not evaluated on the same test set.
    """
    from renyilib.experiments.io import read_json

    losses, train, gaps, test_sets = [], [], [], set()
    for p in paths:
        cfg = read_json(Path(p) / "config.json")["config"]
        test_sets.add(repr((cfg["dataset"], sorted(cfg["data"].items()))))
        met = read_json(Path(p) / "metrics.json")
        losses.append(per_sample_test_losses(p))
        train.append(float(met["train_loss"]))
        gaps.append(float(met["test_loss"]) - float(met["train_loss"]))
    if len(test_sets) > 1:
        raise ValueError(
            f"paths: the runs were evaluated on {len(test_sets)} different test sets "
            f"({sorted(test_sets)}); a paired bootstrap needs one"
        )
    return gap_draws(np.stack(losses), np.asarray(train), **kwargs), np.asarray(gaps)
