"""Tests of renyilib.experiments.splits: a stratified validation split held out of the training set."""

from __future__ import annotations

import pytest
import torch

from renyilib.experiments.data import load_data, stratified_indices
from renyilib.experiments.splits import VAL_SEED, ValidationBundle, hold_out


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", train_subset=300, test_subset=100, seed=0)


def test_hold_out_partitions_the_training_set(digits):
    v = hold_out(digits, 60)
    assert isinstance(v, ValidationBundle)
    assert (v.num_train, v.num_val, v.num_test) == (240, 60, 100)
    # The validation points are exactly the stratified draw, in ascending order ...
    idx = stratified_indices(digits.train_y, 60, seed=VAL_SEED)
    assert torch.equal(v.val_indices, idx)
    assert torch.equal(v.val_x, digits.train_x[idx]) and torch.equal(v.val_y, digits.train_y[idx])
    # ... and the training split is the complement, in its original order.
    keep = sorted(set(range(300)) - set(idx.tolist()))
    assert torch.equal(v.train_x, digits.train_x[keep])
    assert torch.equal(v.train_y, digits.train_y[keep])
    # Test split, statistics and augmentation are untouched.
    assert torch.equal(v.test_x, digits.test_x) and torch.equal(v.test_y, digits.test_y)
    assert torch.equal(v.mean, digits.mean) and torch.equal(v.std, digits.std)
    assert v.augmentation == digits.augmentation
    # Stratified: each class keeps its share up to rounding (one point per class at most).
    share = torch.bincount(digits.train_y, minlength=10) * 60 / 300
    assert (torch.bincount(v.val_y, minlength=10) - share).abs().max() <= 1
    assert "val=(60, 1, 8, 8)" in repr(v)


def test_val_batches_are_the_normalized_held_out_points(digits):
    v = hold_out(digits, 50)
    xs, ys = zip(*v.batches("val", 16))
    assert [len(y) for y in ys] == [16, 16, 16, 2]
    torch.testing.assert_close(torch.cat(xs), digits.normalize(v.val_x), rtol=0, atol=0)
    assert torch.equal(torch.cat(ys), v.val_y)
    assert v.num_batches("val", 16) == 4
    moved = v.to("cpu")
    assert isinstance(moved, ValidationBundle) and torch.equal(moved.val_x, v.val_x)
    with pytest.raises(ValueError, match="'train', 'val' or 'test'"):
        v.split("validation")


def test_hold_out_bad_input(digits):
    with pytest.raises(ValueError, match=r"size must be in \(0, 300\)"):
        hold_out(digits, 300)
    with pytest.raises(ValueError, match="size"):
        hold_out(digits, 0)
    with pytest.raises(TypeError, match="size must be an int"):
        hold_out(digits, 0.2)
    with pytest.raises(TypeError, match="DataBundle"):
        hold_out((digits.train_x, digits.train_y), 10)
    with pytest.raises(TypeError, match="already"):
        hold_out(hold_out(digits, 10), 10)
