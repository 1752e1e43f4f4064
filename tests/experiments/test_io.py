"""Tests for renyilib.experiments.io: atomic writes, hashing, state dicts."""

from __future__ import annotations

import pytest
import torch

from renyilib.experiments.io import (
    atomic_write,
    code_version,
    config_hash,
    load_state_dict,
    read_json,
    save_state_dict,
    write_json,
)


def test_write_json_roundtrip_converts_numpy_and_torch(tmp_path):
    import numpy as np

    obj = {"a": np.float64(1.5), "b": torch.tensor([1, 2]), "c": np.arange(3), "d": float("nan")}
    write_json(tmp_path / "x" / "r.json", obj)
    back = read_json(tmp_path / "x" / "r.json")
    assert back["a"] == 1.5 and back["b"] == [1, 2] and back["c"] == [0, 1, 2]
    assert back["d"] != back["d"]  # NaN survives


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old")

    def boom(tmp):
        tmp.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        atomic_write(target, boom)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_config_hash_is_order_independent_and_sensitive():
    a = config_hash({"lr": 0.1, "bs": 128})
    assert a == config_hash({"bs": 128, "lr": 0.1})
    assert a != config_hash({"bs": 128, "lr": 0.03})
    assert len(a) == 12


def test_state_dict_roundtrip_weights_only(tmp_path):
    model = torch.nn.Linear(3, 2)
    save_state_dict(tmp_path / "w.pt", model.state_dict())
    sd = load_state_dict(tmp_path / "w.pt")
    for k, v in model.state_dict().items():
        assert torch.equal(sd[k], v)


def test_code_version_names_the_package_version():
    from renyilib import __version__

    assert code_version().startswith(__version__)


def test_atomic_write_uses_the_usual_permissions(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        path = write_json(tmp_path / "p.json", {"a": 1})
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_read_results_all_parts_or_none(tmp_path):
    import pandas as pd

    from renyilib.experiments.io import read_results, write_json

    assert read_results(tmp_path, "x") is None
    pd.DataFrame({"a": [1, 2]}).to_csv(tmp_path / "x.csv", index=False)
    assert read_results(tmp_path, "x") is None  # the meta is missing
    write_json(tmp_path / "x.meta.json", {"k": 1})
    table, meta = read_results(tmp_path, "x")
    assert table["a"].tolist() == [1, 2] and meta == {"k": 1}
    (tmp_path / "x.txt").write_text("?")
    with pytest.raises(ValueError, match="cannot read x.txt"):
        read_results(tmp_path, "x", (".csv", ".txt"))
