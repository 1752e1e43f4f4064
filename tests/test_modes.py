"""renyilib.modes.eval_mode: the one eval-mode guard of the core."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from renyilib.modes import eval_mode


def test_eval_mode_restores_mixed_modes_also_on_error():
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Dropout(0.5)).train()
    net[0].eval()
    before = [m.training for m in net.modules()]
    with eval_mode(net) as m:
        assert m is net and not any(mod.training for mod in net.modules())
        x = torch.randn(4, 2)
        torch.testing.assert_close(net(x), net(x))  # dropout off, running stats
    assert [m.training for m in net.modules()] == before
    with pytest.raises(RuntimeError, match="boom"), eval_mode(net):
        raise RuntimeError("boom")
    assert [m.training for m in net.modules()] == before
    with pytest.raises(TypeError, match="torch.nn.Module"):
        with eval_mode("net"):
            pass
