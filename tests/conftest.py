"""Shared tiny models and data for the tests (float64, seeded, CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

# The machine has 2 cores shared by several processes: one thread avoids
# oversubscription (measured 10x slower products with 2 threads under load).
torch.set_num_threads(1)


def tiny_mlp(seed: int = 0, d_in: int = 4, hidden: int = 5, d_out: int = 3) -> nn.Module:
    """A float64 MLP in eval mode: Linear-Tanh-Linear (41 parameters with the defaults)."""
    torch.manual_seed(seed)
    return (
        nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, d_out)).double().eval()
    )


class TinyCNN(nn.Module):
    """Conv-BN-ReLU-Conv-(unused Linear)-Linear on 1x6x6 inputs, 3 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)
        self.conv2 = nn.Conv2d(2, 2, 3)
        self.unused = nn.Linear(2, 2)  # registered but never called: zero Hessian rows
        self.head = nn.Linear(2 * 2 * 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv1(x)))
        h = torch.tanh(self.conv2(h))
        return self.head(h.flatten(1))


def tiny_cnn(seed: int = 0) -> nn.Module:
    """A float64 TinyCNN in eval mode with non-trivial BatchNorm running statistics."""
    torch.manual_seed(seed)
    net = TinyCNN().double()
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(16, 1, 6, 6, dtype=torch.float64) * 2 + 0.5)
        net.bn.weight.uniform_(0.5, 1.5)
        net.bn.bias.uniform_(-0.5, 0.5)
    return net.eval()


@pytest.fixture
def mlp_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(11, 4, generator=g, dtype=torch.float64), torch.randint(
        0, 3, (11,), generator=g
    )


@pytest.fixture
def cnn_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return torch.randn(10, 1, 6, 6, generator=g, dtype=torch.float64), torch.randint(
        0, 3, (10,), generator=g
    )


def split_batches(
    x: torch.Tensor, y: torch.Tensor, size: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of ``size`` with a short last batch."""
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


def dense_hessian(model: nn.Module, loss_fn, x, y, names: list[str]) -> torch.Tensor:
    """Reference: ``torch.func.hessian`` of the mean loss w.r.t. the flattened parameters ``names``."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    shapes = [params[k].shape for k in names]
    sizes = [params[k].numel() for k in names]

    def f(flat: torch.Tensor) -> torch.Tensor:
        block = {k: c.reshape(s) for k, c, s in zip(names, torch.split(flat, sizes), shapes)}
        out = torch.func.functional_call(model, {**params, **buffers, **block}, (x,))
        return loss_fn(out, y)

    flat = torch.cat([params[k].reshape(-1) for k in names])
    return torch.func.hessian(f)(flat)


#: A two-optimizer digits zoo small enough to train in seconds (1 epoch, 60 images).
TINY_ZOO = {
    "experiments": {
        "zoo": {
            "smoke": {
                "defaults": {
                    "epochs": 1,
                    "warmup_epochs": 0,
                    "base_batch_size": 32,
                    "train_subset": 60,
                    "test_subset": 30,
                    "grid": {
                        "sgd": {"lr": [0.01, 0.05], "batch_size": 32, "weight_decay": 0.0},
                        "adam": {"lr": [1e-3, 3e-3], "batch_size": 32, "weight_decay": 0.0},
                    },
                }
            }
        }
    }
}


@pytest.fixture
def tiny_zoo_config(tmp_path: Path) -> Path:
    """A ``_config.yml`` holding :data:`TINY_ZOO` (its ``smoke`` zoo profile)."""
    import yaml  # an experiments dependency: the core-only checks never ask for this fixture

    path = tmp_path / "_config.yml"
    path.write_text(yaml.safe_dump(TINY_ZOO, sort_keys=False))
    return path
