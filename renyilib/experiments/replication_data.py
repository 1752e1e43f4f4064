"""Data of the adaptive-sharpness replication: Abalone, Fashion-MNIST and Cora.

Three loaders, each returning a :class:`ReplicationData` whose ``train`` and
``test`` are ``(x, y)`` pairs that every measure of :mod:`renyilib` accepts:

* :func:`load_abalone` — UCI Abalone (4,177 rows; Nash et al. 1995):
  sex one-hot (M, F, I; left 0/1), the seven numeric measurements and the ring
  count z-scored with *training* statistics, a seeded 80/20 split. Read from
  ``<data root>/abalone/abalone.data`` (or ``<data root>/abalone.data``);
  elsewhere the UCI file is downloaded into the data root.
* :func:`load_fashion_mnist` — Fashion-MNIST from its original IDX files (on
  Debian the package ``dataset-fashion-mnist``), pixels in [0, 1]
  standardized with the training set's mean and standard deviation (0.2860,
  0.3530: the replication's ``Normalize``).
* :func:`load_cora` — the Cora citation graph with the Planetoid public split
  (140 train, 500 validation, 1,000 test nodes), read with
  ``torch_geometric.io.read_planetoid_data`` from ``<data root>/cora/raw`` (or
  ``Cora/raw``) without writing there; elsewhere
  ``torch_geometric.datasets.Planetoid`` downloads it into the cache folder.
  A node-classification sample is a node *index*: ``train = (train_idx,
  y[train_idx])``, and the graph (``features``, ``edge_index``) travels in
  :attr:`ReplicationData.graph` for :class:`~renyilib.experiments.replication_models.NodeClassifier`.

:func:`load_replication_data` dispatches by name (:data:`REPLICATION_DATASETS`).
"""

from __future__ import annotations

import os
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from renyilib.experiments.config import cache_dir, data_root
from renyilib.experiments.data import DEBIAN_FASHION_MNIST, read_idx
from renyilib.experiments.io import atomic_write

__all__ = [
    "ABALONE_URL",
    "REPLICATION_DATASETS",
    "ReplicationData",
    "load_abalone",
    "load_cora",
    "load_fashion_mnist",
    "load_replication_data",
    "parse_abalone",
    "synthetic_data",
]

ABALONE_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/abalone/abalone.data"
"""The UCI repository's copy of ``abalone.data``."""

#: Names accepted by :func:`load_replication_data`.
REPLICATION_DATASETS = ("abalone", "fashion-mnist", "cora")

_SEXES = ("M", "F", "I")
_FMNIST = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


@dataclass
class ReplicationData:
    """One task's data.

    Attributes:
        name: ``"abalone"``, ``"fashion-mnist"``, ``"cora"`` or ``"synthetic-*"``.
        train: ``(x, y)`` training samples (for Cora: node indices and labels).
        test: ``(x, y)`` test samples.
        kind: ``"regression"`` (targets float, shape ``(n, 1)``) or ``"classification"``.
        num_classes: Classes (1 for regression).
        graph: For node classification, ``{"features": (N, F), "edge_index": (2, E)}``.
        info: Provenance (source path, normalization statistics, split sizes).
    """

    name: str
    train: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    kind: str
    num_classes: int
    graph: dict[str, torch.Tensor] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_features(self) -> int:
        """Input features per sample (node features for a graph)."""
        if self.graph is not None:
            return int(self.graph["features"].shape[1])
        return int(np.prod(self.train[0].shape[1:]))


# --------------------------------------------------------------------------- Abalone


def parse_abalone(text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse the rows of ``abalone.data`` (no header; Sex, 7 measurements, Rings).

    Returns:
        ``(sex, numeric, rings)``: sex one-hot ``(n, 3)`` in the order M, F, I;
        the measurements ``(n, 7)`` and the ring counts ``(n,)``, float64.

    Raises:
        ValueError: a row without 9 fields, an unknown sex or a non-numeric field
            (the message gives the line number).
    """
    sex, num, rings = [], [], []
    for i, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        parts = line.split(",")
        if len(parts) != 9:
            raise ValueError(
                f"abalone.data line {i}: expected 9 comma-separated fields, got {len(parts)}"
            )
        if parts[0] not in _SEXES:
            raise ValueError(
                f"abalone.data line {i}: sex must be one of {_SEXES}, got {parts[0]!r}"
            )
        try:
            values = [float(v) for v in parts[1:]]
        except ValueError as err:
            raise ValueError(f"abalone.data line {i}: non-numeric field ({err})") from err
        sex.append([float(parts[0] == s) for s in _SEXES])
        num.append(values[:7])
        rings.append(values[7])
    if not rings:
        raise ValueError("abalone.data: no rows")
    return np.asarray(sex), np.asarray(num), np.asarray(rings)


def _abalone_file(root: Path, download: bool) -> Path:
    for p in (root / "abalone" / "abalone.data", root / "abalone.data"):
        if p.is_file():
            return p
    if not download:
        raise FileNotFoundError(
            f"abalone.data not found under {root} (looked in abalone/abalone.data and abalone.data); "
            "pass download=True or set RENYI_DATA"
        )
    dst = root / "abalone" / "abalone.data"
    with urllib.request.urlopen(ABALONE_URL, timeout=60) as r:
        payload = r.read()
    atomic_write(dst, lambda tmp: tmp.write_bytes(payload))
    return dst


def load_abalone(
    root: str | os.PathLike | None = None,
    *,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    download: bool = True,
    dtype: torch.dtype = torch.float32,
) -> ReplicationData:
    """UCI Abalone as a regression task (replication, Sec. III.A).

    Features: sex one-hot (3 columns, 0/1) and the seven measurements z-scored,
    :math:`(x - \\mu_{tr}) / \\sigma_{tr}`; target: the ring count z-scored the
    same way, shape ``(n, 1)`` (so an MSE of 1 is the variance of the rings).
    The split is a seeded permutation: the first ``round(n · (1 − test_fraction))``
    rows train (3,342 of 4,177 at 0.2).

    Args:
        root: Data root (default: ``$RENYI_DATA`` or the project's ``data/``).
        test_fraction: Fraction of rows in the test set, in (0, 1).
        split_seed: Seed of the split (fixed across a zoo).
        download: Download the UCI file when it is missing.
        dtype: Floating dtype of the tensors.
    """
    if not (isinstance(test_fraction, float | int) and 0 < test_fraction < 1):
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    path = _abalone_file(data_root(root), download)
    sex, num, rings = parse_abalone(path.read_text())
    n = len(rings)
    perm = np.random.default_rng(split_seed).permutation(n)
    n_train = int(round(n * (1 - test_fraction)))
    tr, te = perm[:n_train], perm[n_train:]
    mu, sd = num[tr].mean(0), num[tr].std(0, ddof=1)
    rmu, rsd = rings[tr].mean(), rings[tr].std(ddof=1)
    x = np.concatenate([sex, (num - mu) / sd], axis=1)
    y = ((rings - rmu) / rsd)[:, None]

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(dtype)

    return ReplicationData(
        name="abalone",
        train=(t(x[tr]), t(y[tr])),
        test=(t(x[te]), t(y[te])),
        kind="regression",
        num_classes=1,
        info={
            "source": str(path),
            "rows": n,
            "train": len(tr),
            "test": len(te),
            "split_seed": split_seed,
            "feature_mean": mu.tolist(),
            "feature_std": sd.tolist(),
            "rings_mean": float(rmu),
            "rings_std": float(rsd),
        },
    )


# --------------------------------------------------------------------------- Fashion-MNIST


def _find(folder: Path, stem: str) -> Path | None:
    for suffix in ("", ".gz"):
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def load_fashion_mnist(
    root: str | os.PathLike | None = None,
    *,
    download: bool = True,
    train_subset: int | None = None,
    test_subset: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> ReplicationData:
    """Fashion-MNIST (Xiao et al. 2017) from the original IDX files (replication, Sec. III.B).

    Looks in ``<root>/fashion-mnist``, ``<root>/FashionMNIST/raw`` and Debian's
    ``/usr/share/datasets/fashion-mnist``; with ``download`` and none found,
    torchvision downloads the files into ``<root>``. Pixels are scaled to
    [0, 1] and standardized with the training mean and standard deviation
    (over all 60,000 images, whatever the subset).

    Args:
        root: Data root.
        download: Download when no copy is found.
        train_subset, test_subset: Keep only the first this many images
            (``None``: all; the study uses all).
        dtype: Floating dtype of the images.
    """
    base = data_root(root)
    places = [base / "fashion-mnist", base / "FashionMNIST" / "raw", DEBIAN_FASHION_MNIST]
    found = None
    for place in places:
        files = {k: _find(place, v) for k, v in _FMNIST.items()}
        if all(files.values()):
            found = (place, files)
            break
    if found is None and download:
        from torchvision.datasets import FashionMNIST

        FashionMNIST(str(base), train=True, download=True)
        FashionMNIST(str(base), train=False, download=True)
        files = {k: _find(base / "FashionMNIST" / "raw", v) for k, v in _FMNIST.items()}
        if all(files.values()):
            found = (base / "FashionMNIST" / "raw", files)
    if found is None:
        raise FileNotFoundError(
            f"Fashion-MNIST IDX files not found in {[str(p) for p in places]}; install the Debian "
            "package dataset-fashion-mnist, set RENYI_DATA, or pass download=True"
        )
    place, files = found
    arr = {k: read_idx(p) for k, p in files.items()}
    xtr = torch.from_numpy(arr["train_x"].astype(np.float64) / 255.0)
    mean, std = float(xtr.mean()), float(xtr.std())
    xte = torch.from_numpy(arr["test_x"].astype(np.float64) / 255.0)
    ytr = torch.from_numpy(arr["train_y"].astype(np.int64))
    yte = torch.from_numpy(arr["test_y"].astype(np.int64))
    if train_subset is not None:
        xtr, ytr = xtr[:train_subset], ytr[:train_subset]
    if test_subset is not None:
        xte, yte = xte[:test_subset], yte[:test_subset]
    xtr = ((xtr - mean) / std)[:, None].to(dtype)
    xte = ((xte - mean) / std)[:, None].to(dtype)
    return ReplicationData(
        name="fashion-mnist",
        train=(xtr, ytr),
        test=(xte, yte),
        kind="classification",
        num_classes=10,
        info={"source": str(place), "mean": mean, "std": std, "train": len(ytr), "test": len(yte)},
    )


# --------------------------------------------------------------------------- Cora


def _planetoid_raw(root: Path) -> Path | None:
    for p in (root / "cora" / "raw", root / "Cora" / "raw", root / "planetoid" / "Cora" / "raw"):
        if (p / "ind.cora.x").is_file():
            return p
    return None


def load_cora(
    root: str | os.PathLike | None = None,
    *,
    normalize_features: bool = False,
    download: bool = True,
    dtype: torch.dtype = torch.float32,
) -> ReplicationData:
    """Cora with the Planetoid public split (replication, Sec. III.C).

    2,708 nodes with 1,433 binary bag-of-words features, 7 classes, 10,556
    directed edges (5,278 undirected citations plus their reverses), train /
    validation / test masks of 140 / 500 / 1,000 nodes (Yang et al. 2016).

    Args:
        root: Data root with ``cora/raw/ind.cora.*`` (the Planetoid files).
        normalize_features: Divide each node's features by their sum
            (torch_geometric's ``NormalizeFeatures``, which the replication's
            code applies although its report says "we do not transform the data").
        download: Without local files, download through ``Planetoid`` into
            the cache folder.
        dtype: Floating dtype of the node features.
    """
    from torch_geometric.io import read_planetoid_data

    base = data_root(root)
    raw = _planetoid_raw(base)
    if raw is not None:
        data = read_planetoid_data(str(raw), "cora")
        source = str(raw)
    elif download:
        from torch_geometric.datasets import Planetoid

        ds = Planetoid(str(cache_dir() / "planetoid"), name="Cora")
        data = ds[0]
        source = str(cache_dir() / "planetoid" / "Cora")
    else:
        raise FileNotFoundError(
            f"Cora Planetoid files (ind.cora.*) not found under {base}/cora/raw"
        )
    feats = data.x.to(torch.float64)
    if normalize_features:
        s = feats.sum(1, keepdim=True)
        feats = feats / s.clamp(min=1.0)
    tr = data.train_mask.nonzero().flatten()
    te = data.test_mask.nonzero().flatten()
    y = data.y.long()
    return ReplicationData(
        name="cora",
        train=(tr, y[tr]),
        test=(te, y[te]),
        kind="classification",
        num_classes=int(y.max()) + 1,
        graph={"features": feats.to(dtype), "edge_index": data.edge_index.long()},
        info={
            "source": source,
            "nodes": int(feats.shape[0]),
            "edges": int(data.edge_index.shape[1]),
            "train": len(tr),
            "val": int(data.val_mask.sum()),
            "test": len(te),
            "normalize_features": normalize_features,
        },
    )


# --------------------------------------------------------------------------- synthetic (smoke / tests)


def synthetic_data(
    name: str, *, n_train: int = 96, n_test: int = 64, seed: int = 0
) -> ReplicationData:
    """Tiny synthetic stand-ins of the three tasks (no file, no download), for tests and smoke runs.

    ``"abalone"``: 10 features (3 one-hot + 7 Gaussian), a noisy nonlinear
    regression target; ``"fashion-mnist"``: 1×28×28 images whose class sets the
    mean brightness of one of 10 stripes; ``"cora"``: a random graph of
    ``n_train + n_test + 20`` nodes with class-correlated sparse binary
    features and edges mostly within a class.
    """
    g = torch.Generator().manual_seed(seed)
    n = n_train + n_test
    if name == "abalone":
        sex = torch.nn.functional.one_hot(torch.randint(0, 3, (n,), generator=g), 3).float()
        num = torch.randn(n, 7, generator=g)
        y = (
            num[:, :3].sum(1, keepdim=True).tanh()
            + 0.3 * sex[:, :1]
            + 0.1 * torch.randn(n, 1, generator=g)
        )
        x = torch.cat([sex, num], 1)
        return ReplicationData(
            "synthetic-abalone",
            (x[:n_train], y[:n_train]),
            (x[n_train:], y[n_train:]),
            "regression",
            1,
        )
    if name == "fashion-mnist":
        y = torch.randint(0, 10, (n,), generator=g)
        x = 0.5 * torch.randn(n, 1, 28, 28, generator=g)
        for i in range(n):
            k = int(y[i])
            x[i, 0, 2 * k + 4 : 2 * k + 6, :] += 2.0
        return ReplicationData(
            "synthetic-fashion-mnist",
            (x[:n_train], y[:n_train]),
            (x[n_train:], y[n_train:]),
            "classification",
            10,
        )
    if name == "cora":
        classes, feats_dim = 3, 30
        nodes = n + 20
        y = torch.randint(0, classes, (nodes,), generator=g)
        proto = (torch.rand(classes, feats_dim, generator=g) < 0.3).float()
        noise = (torch.rand(nodes, feats_dim, generator=g) < 0.05).float()
        feats = ((proto[y] + noise) > 0).float() * (torch.rand(nodes, feats_dim, generator=g) < 0.7)
        src = torch.randint(0, nodes, (6 * nodes,), generator=g)
        dst = torch.randint(0, nodes, (6 * nodes,), generator=g)
        keep = (y[src] == y[dst]) | (torch.rand(6 * nodes, generator=g) < 0.2)
        src, dst = src[keep & (src != dst)], dst[keep & (src != dst)]
        edge_index = torch.unique(
            torch.stack([torch.cat([src, dst]), torch.cat([dst, src])]), dim=1
        )
        idx = torch.randperm(nodes, generator=g)
        tr, te = idx[:n_train], idx[n_train:n]
        return ReplicationData(
            "synthetic-cora",
            (tr, y[tr]),
            (te, y[te]),
            "classification",
            classes,
            graph={"features": feats, "edge_index": edge_index},
        )
    raise ValueError(f"name must be one of {REPLICATION_DATASETS}, got {name!r}")


def load_replication_data(
    name: str, root: str | os.PathLike | None = None, *, synthetic: bool = False, **kwargs: Any
) -> ReplicationData:
    """Load one of :data:`REPLICATION_DATASETS` (or its :func:`synthetic_data` stand-in)."""
    if name not in REPLICATION_DATASETS:
        raise ValueError(f"name must be one of {REPLICATION_DATASETS}, got {name!r}")
    if synthetic:
        return synthetic_data(name, **kwargs)
    loader = {"abalone": load_abalone, "fashion-mnist": load_fashion_mnist, "cora": load_cora}[name]
    return loader(root, **kwargs)
