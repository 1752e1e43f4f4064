"""renyilib.batches: the one batching helper of the core."""

from __future__ import annotations

import pytest
import torch

from renyilib.batches import as_batches, batch_size, input_numel, to_device


def test_as_batches_pair_iterable_and_loader():
    x, y = torch.zeros(5, 2), torch.arange(5)
    assert len(as_batches((x, y))) == 1 and as_batches((x, y))[0][0] is x
    assert len(as_batches([(x, y), (x[:2], y[:2])])) == 2
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=2)
    got = as_batches(loader)
    assert [batch_size(b[0]) for b in got] == [2, 2, 1]
    assert as_batches([]) == []
    # extra entries per batch are dropped; a pair with mismatched lengths is iterated
    assert len(as_batches([(x, y, "meta")])[0]) == 2


def test_as_batches_errors():
    with pytest.raises(TypeError, match="got a tensor"):
        as_batches(torch.zeros(3))
    with pytest.raises(TypeError, match="data must"):
        as_batches(5)
    with pytest.raises(TypeError, match="batches"):
        as_batches([torch.zeros(3)])


def test_batch_size_numel_and_device():
    x = torch.zeros(4, 3)
    assert batch_size(x) == 4 and batch_size((x, torch.zeros(4))) == 4
    assert batch_size(torch.tensor(1.0)) == 1
    assert input_numel((x, [torch.zeros(2)], "s")) == 14
    with pytest.raises(TypeError, match="batch size"):
        batch_size("abc")
    moved = to_device((x, [x], 3), torch.device("cpu"))
    assert isinstance(moved, tuple) and isinstance(moved[1], list) and moved[2] == 3
