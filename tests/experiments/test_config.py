"""Tests for renyilib.experiments.config: profiles, data root, seeding."""

from __future__ import annotations

import random

import pytest
import torch

from renyilib.experiments.config import (
    PROFILES,
    data_root,
    default_device,
    find_config,
    load_profile,
    seed_everything,
)


def test_every_experiment_defines_every_profile():
    import yaml

    experiments = yaml.safe_load(find_config().read_text())["experiments"]
    assert experiments, "no experiments in _config.yml"
    for name, profiles in experiments.items():
        assert set(PROFILES) <= set(profiles), f"{name} lacks a profile"
        for profile in PROFILES:
            cfg = load_profile(name, profile)
            assert cfg["profile"] == profile and cfg["experiment"] == name


def test_load_profile_errors_name_the_problem(tmp_path):
    cfg = tmp_path / "_config.yml"
    cfg.write_text("experiments:\n  e:\n    smoke: {a: 1}\n")
    assert load_profile("e", "smoke", cfg)["a"] == 1
    with pytest.raises(ValueError, match="profile must be one of"):
        load_profile("e", "huge", cfg)
    with pytest.raises(KeyError, match="experiment 'nope'"):
        load_profile("nope", "smoke", cfg)
    with pytest.raises(KeyError, match="no profile 'cpu'"):
        load_profile("e", "cpu", cfg)


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("RENYI_DATA", str(tmp_path))
    assert data_root() == tmp_path
    assert data_root("x") == data_root("x")
    assert str(data_root("x")) == "x"
    monkeypatch.delenv("RENYI_DATA")
    assert data_root() == find_config().parent / "data"


def test_seed_everything_is_reproducible():
    g1 = seed_everything(3)
    a = (random.random(), torch.rand(2), torch.rand(2, generator=g1))
    g2 = seed_everything(3)
    b = (random.random(), torch.rand(2), torch.rand(2, generator=g2))
    assert a[0] == b[0] and torch.equal(a[1], b[1]) and torch.equal(a[2], b[2])
    with pytest.raises(ValueError, match="seed"):
        seed_everything(-1)


def test_default_device_is_cpu_or_cuda():
    assert default_device().type in {"cpu", "cuda"}
    assert default_device("cpu") == torch.device("cpu")
