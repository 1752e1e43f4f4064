"""Tests of renyilib.experiments.replication_data: parsers on synthetic text, real files when present."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from renyilib.experiments.config import data_root
from renyilib.experiments.replication_data import (
    load_abalone,
    load_cora,
    load_fashion_mnist,
    load_replication_data,
    parse_abalone,
    synthetic_data,
)

ROWS = [
    "M,0.455,0.365,0.095,0.514,0.2245,0.101,0.15,15",
    "F,0.53,0.42,0.135,0.677,0.2565,0.1415,0.21,9",
    "I,0.33,0.255,0.08,0.205,0.0895,0.0395,0.055,7",
    "M,0.44,0.365,0.125,0.516,0.2155,0.114,0.155,10",
    "I,0.425,0.3,0.095,0.3515,0.141,0.0775,0.12,8",
]


def test_parse_abalone() -> None:
    sex, num, rings = parse_abalone("\n".join(ROWS) + "\n\n")
    np.testing.assert_array_equal(sex[:3], np.eye(3))
    assert num.shape == (5, 7) and num[0, 0] == 0.455 and num[2, 6] == 0.055
    np.testing.assert_array_equal(rings, [15, 9, 7, 10, 8])
    with pytest.raises(ValueError, match="line 1: expected 9"):
        parse_abalone("M,1,2")
    with pytest.raises(ValueError, match="line 2: sex"):
        parse_abalone(ROWS[0] + "\nX" + ROWS[1][1:])
    with pytest.raises(ValueError, match="non-numeric"):
        parse_abalone("M,a,1,1,1,1,1,1,1")


def test_load_abalone_from_a_synthetic_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    lines = []
    for i in range(50):
        vals = ",".join(f"{v:.4f}" for v in rng.random(7))
        lines.append(f"{'MFI'[i % 3]},{vals},{int(rng.integers(1, 29))}")
    (tmp_path / "abalone").mkdir()
    (tmp_path / "abalone" / "abalone.data").write_text("\n".join(lines))
    d = load_abalone(tmp_path, download=False)
    assert d.train[0].shape == (40, 10) and d.test[0].shape == (10, 10)
    assert d.train[1].shape == (40, 1) and d.kind == "regression"
    # z-scored with training statistics: mean 0 and std 1 on the training split only
    np.testing.assert_allclose(d.train[0][:, 3:].mean(0).numpy(), 0, atol=1e-6)
    np.testing.assert_allclose(d.train[0][:, 3:].std(0).numpy(), 1, atol=1e-5)
    assert float(d.train[1].mean()) == pytest.approx(0, abs=1e-6)
    assert set(torch.unique(d.train[0][:, :3]).tolist()) <= {0.0, 1.0}
    assert torch.all(d.train[0][:, :3].sum(1) == 1)
    # the statistics are the training rows' (not all rows'): test means are not 0
    assert abs(float(d.test[0][:, 3:].mean())) > 1e-4
    # the same split seed gives the same split
    d2 = load_abalone(tmp_path, download=False)
    assert torch.equal(d.test[0], d2.test[0])
    with pytest.raises(FileNotFoundError, match="abalone.data"):
        load_abalone(tmp_path / "missing", download=False)
    with pytest.raises(ValueError, match="test_fraction"):
        load_abalone(tmp_path, test_fraction=1.5)


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_load_fashion_mnist_from_synthetic_idx(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import renyilib.experiments.replication_data as rd

    monkeypatch.setattr(rd, "DEBIAN_FASHION_MNIST", tmp_path / "none")
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    rng = np.random.default_rng(0)
    xtr, xte = rng.integers(0, 256, (20, 28, 28)), rng.integers(0, 256, (8, 28, 28))
    _write_idx(folder / "train-images-idx3-ubyte.gz", xtr)
    _write_idx(folder / "train-labels-idx1-ubyte.gz", np.arange(20) % 10)
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", xte)
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.arange(8) % 10)
    d = load_fashion_mnist(tmp_path, download=False)
    assert d.train[0].shape == (20, 1, 28, 28) and d.test[0].shape == (8, 1, 28, 28)
    mean, std = (xtr / 255).mean(), (xtr / 255).std(ddof=1)  # torch.std: Bessel-corrected
    np.testing.assert_allclose(
        d.test[0][:, 0].numpy(), ((xte / 255 - mean) / std), rtol=1e-5, atol=1e-5
    )
    assert d.train[1].tolist() == list(np.arange(20) % 10)
    with pytest.raises(FileNotFoundError, match="Fashion-MNIST"):
        load_fashion_mnist(tmp_path / "empty", download=False)


def test_synthetic_data_shapes() -> None:
    a = synthetic_data("abalone")
    assert a.train[0].shape == (96, 10) and a.num_features == 10
    f = synthetic_data("fashion-mnist")
    assert f.train[0].shape == (96, 1, 28, 28) and f.num_classes == 10
    c = synthetic_data("cora")
    assert c.graph is not None and c.train[0].dtype == torch.int64
    ei = c.graph["edge_index"]
    # undirected: every edge has its reverse
    fwd = set(map(tuple, ei.T.tolist()))
    assert all((j, i) in fwd for i, j in fwd)
    with pytest.raises(ValueError, match="name"):
        load_replication_data("mnist")


# --------------------------------------------------------------------------- real files (when present)


def _real_root() -> Path:
    return data_root()


@pytest.mark.skipif(
    not (_real_root() / "abalone" / "abalone.data").is_file(), reason="no abalone.data"
)
def test_real_abalone() -> None:
    d = load_abalone(download=False)
    assert d.info["rows"] == 4177
    assert len(d.train[1]) == 3342 and len(d.test[1]) == 835
    assert d.info["rings_mean"] == pytest.approx(9.93, abs=0.1)


@pytest.mark.skipif(
    not (_real_root() / "cora" / "raw" / "ind.cora.x").is_file(), reason="no Cora files"
)
def test_real_cora() -> None:
    pytest.importorskip("torch_geometric")
    d = load_cora(download=False)
    assert d.graph["features"].shape == (2708, 1433)
    assert d.graph["edge_index"].shape == (2, 10556)
    assert len(d.train[0]) == 140 and len(d.test[0]) == 1000 and d.info["val"] == 500
    assert d.num_classes == 7
    # the public split's train nodes are 20 per class
    assert torch.bincount(d.train[1]).tolist() == [20] * 7
    n = load_cora(download=False, normalize_features=True)
    s = n.graph["features"].sum(1)
    assert torch.allclose(s[s > 0], torch.ones_like(s[s > 0]))


@pytest.mark.slow  # decodes all 70,000 images (about 30 s on a busy 2-core machine)
@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz").is_file(),
    reason="no Fashion-MNIST IDX files",
)
def test_real_fashion_mnist() -> None:
    d = load_fashion_mnist(download=False, test_subset=100)
    assert d.info["train"] == 60000
    assert d.info["mean"] == pytest.approx(0.2860, abs=1e-4)
    assert d.info["std"] == pytest.approx(0.3530, abs=1e-4)
    assert d.test[0].shape == (100, 1, 28, 28)
