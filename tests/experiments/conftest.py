"""Shared fixtures of the experiments tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

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
    path = tmp_path / "_config.yml"
    path.write_text(yaml.safe_dump(TINY_ZOO, sort_keys=False))
    return path
