"""Datasets of the paper (Appendix G.1) as in-memory tensors, with tensor augmentation.

:func:`load_data` returns a :class:`DataBundle`: the whole train and test split
as tensors (images ``uint8`` ``(N, C, H, W)``; the 8×8 digits as ``float32`` in
``[0, 1]``), integer labels, and the per-channel mean/std of the train split.
Batches are normalized, and augmented, on the fly, on whatever device the
caller asks for::

    data = load_data("digits")                         # embedded, no download
    for x, y in data.batches("train", 128, shuffle=True, augment=True, generator=g):
        ...
    x, y = sharpness_subset(data, 1000, seed=0)        # fixed, un-augmented (Sec. 5.1)

Datasets (:data:`DATASETS`):

* ``digits``: scikit-learn ``load_digits`` (1,797 images 8×8, 10 classes),
  embedded. Fixed stratified split: 360 test / 1,437 train images, drawn with
  seed :data:`DIGITS_SPLIT_SEED` (independent of ``seed``).
* ``fashion-mnist``: 60,000 / 10,000 28×28 grayscale images from the gzip IDX
  files, found in ``<root>/fashion-mnist/``, ``<root>/FashionMNIST/raw/``
  (torchvision) or Debian's ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist``).
* ``cifar10``: 50,000 / 10,000 32×32 RGB images: an ImageFolder tree
  ``<root>/cifar10/{train,test}/<class>/`` or torchvision's
  ``<root>/cifar-10-batches-py``.
* ``cifar100``: as cifar10 with 100 fine classes (``<root>/cifar100/`` or
  ``<root>/cifar-100-python``).
* ``tinyimagenet``: 100,000 / 10,000 64×64 RGB images, 200 classes: an
  ImageFolder tree ``<root>/tinyimagenet/{train,test|val}/<wnid>/`` made from
  the official archive by :func:`prepare_tinyimagenet` (the official labelled
  validation set is our test set).

The data root is ``root``, else ``$RENYI_DATA``, else ``data/``
(:func:`renyilib.experiments.config.data_root`). Nothing is downloaded unless
``download=True``. Image folders are decoded once and cached as ``uint8``
tensors under :func:`renyilib.experiments.config.cache_dir` (keyed by dataset, split,
source folder and a hash of the file list): CIFAR-10 decodes in about a minute on
2 busy cores and then loads from the cache in about 3 s.

Normalization (G.1 "normalize channel-wise"): ``(x/255 − mean_c) / std_c`` with
the per-channel mean and (population) standard deviation of the full train
split, computed exactly from pixel histograms.

Augmentation (G.1, G.3.2), on batch tensors, seeded by a ``torch.Generator``:

* ``"crop-flip"`` (CIFAR-10/100): zero-pad 4 pixels, random 32×32 crop, random
  horizontal flip with probability 1/2 (torchvision's
  ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip()``).
* ``"rotate-flip"`` (TinyImageNet, G.1: "normalization, random rotation, and
  random flipping"): rotation by an angle uniform in ±15° (the paper gives no
  angle; 15° is our choice), bilinear, zero fill, then a random horizontal flip.
* ``"none"`` (digits, Fashion-MNIST): the paper trains neither; flips would
  change digit identity.
* ``"shift"``: random translation by up to 1 pixel (zero-pad 1, random crop), no
  flip; an option for the grayscale sets.

Subsets (``train_subset``/``test_subset`` of :func:`load_data`, and
:func:`stratified_indices`) are stratified: the classes keep their proportions
(up to rounding), the members of each class are chosen by a seeded permutation,
and for a fixed seed a smaller subset is contained in a larger one.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import pickle
import shutil
import struct
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from renyilib.experiments.config import cache_dir, data_root
from renyilib.experiments.io import atomic_write

__all__ = [
    "DATASETS",
    "DIGITS_SPLIT_SEED",
    "DIGITS_TEST_SIZE",
    "AUGMENTATIONS",
    "DataBundle",
    "load_data",
    "sharpness_subset",
    "stratified_indices",
    "augment_batch",
    "channel_stats",
    "read_idx",
    "load_image_folder",
    "prepare_tinyimagenet",
]

DIGITS_SPLIT_SEED = 0
"""Seed of the fixed digits train/test split (independent of ``load_data(seed=...)``)."""
DIGITS_TEST_SIZE = 360
"""Test images of the digits split (20% of 1,797, stratified)."""

AUGMENTATIONS = ("none", "crop-flip", "rotate-flip", "shift")
"""Augmentation policies understood by :func:`augment_batch`."""

ROTATION_DEGREES = 15.0
"""Largest rotation (degrees) of the ``rotate-flip`` policy (our choice; G.1 gives none)."""

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` package puts the gzip IDX files."""

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset of :data:`DATASETS`."""

    num_classes: int
    input_shape: tuple[int, int, int]
    augmentation: str
    how_to_get: str


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(10, (1, 8, 8), "none", "embedded in scikit-learn"),
    "fashion-mnist": DatasetInfo(
        10,
        (1, 28, 28),
        "none",
        "`apt-get install dataset-fashion-mnist` (Debian), or put the four gzip IDX files "
        "(train-images-idx3-ubyte.gz, ...) in <root>/fashion-mnist/, or pass download=True "
        "(torchvision download into <root>/FashionMNIST/raw/)",
    ),
    "cifar10": DatasetInfo(
        10,
        (3, 32, 32),
        "crop-flip",
        "an ImageFolder tree <root>/cifar10/{train,test}/<class>/*.png|jpg, or pass "
        "download=True (torchvision download of cifar-10-python.tar.gz into <root>)",
    ),
    "cifar100": DatasetInfo(
        100,
        (3, 32, 32),
        "crop-flip",
        "an ImageFolder tree <root>/cifar100/{train,test}/<class>/*.png|jpg, or pass "
        "download=True (torchvision download of cifar-100-python.tar.gz into <root>)",
    ),
    "tinyimagenet": DatasetInfo(
        200,
        (3, 64, 64),
        "rotate-flip",
        "download http://cs231n.stanford.edu/tiny-imagenet-200.zip, unzip it and run "
        "renyilib.experiments.data.prepare_tinyimagenet('tiny-imagenet-200', '<root>/tinyimagenet'), "
        "or pass download=True",
    ),
}
"""Known datasets: classes, input shape ``(C, H, W)``, default augmentation, how to get them."""

_ALIASES = {
    "digits": "digits",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "tinyimagenet": "tinyimagenet",
    "tinyimagenet200": "tinyimagenet",
}


def _canonical(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a dataset name (str), got {type(name).__name__}")
    key = name.lower().replace("-", "").replace("_", "")
    if key not in _ALIASES:
        raise KeyError(f"unknown dataset name {name!r}; known: {sorted(DATASETS)}")
    return _ALIASES[key]


# --------------------------------------------------------------------------------------
# Statistics, subsets, augmentation
# --------------------------------------------------------------------------------------


def _scale(x: torch.Tensor) -> torch.Tensor:
    """Pixels as float32 in ``[0, 1]``: ``uint8`` divided by 255, floats unchanged."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    if not torch.is_floating_point(x):
        raise TypeError(f"x must be a uint8 or floating-point image tensor, got dtype {x.dtype}")
    return x.float()


def channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and population standard deviation of images ``x`` ``(N, C, H, W)``.

    ``uint8`` images are measured on the ``[0, 1]`` scale (value / 255) exactly,
    from 256-bin histograms; float images in float64, ``chunk`` images at a time.

    Returns:
        ``(mean, std)``, float32 tensors of shape ``(C,)``.
    """
    if x.ndim != 4:
        raise ValueError(f"x must have shape (N, C, H, W), got {tuple(x.shape)}")
    n, c = x.shape[:2]
    if n == 0:
        raise ValueError("x must hold at least one image")
    if x.dtype == torch.uint8:
        counts = torch.zeros(c, 256, dtype=torch.float64)
        for s in range(0, n, chunk):
            block = x[s : s + chunk]
            for ch in range(c):
                counts[ch] += torch.bincount(block[:, ch].reshape(-1), minlength=256).double()
        values = torch.arange(256, dtype=torch.float64) / 255.0
        total = counts.sum(1)
        mean = (counts * values).sum(1) / total
        var = (counts * (values[None, :] - mean[:, None]) ** 2).sum(1) / total
    else:
        s1 = torch.zeros(c, dtype=torch.float64)
        for s in range(0, n, chunk):
            s1 += x[s : s + chunk].double().sum((0, 2, 3))
        total = n * x.shape[2] * x.shape[3]
        mean = s1 / total
        s2 = torch.zeros(c, dtype=torch.float64)
        for s in range(0, n, chunk):
            s2 += ((x[s : s + chunk].double() - mean[None, :, None, None]) ** 2).sum((0, 2, 3))
        var = s2 / total
    return mean.float(), var.sqrt().float()


def stratified_indices(labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Indices of a seeded, stratified subset of size ``n`` (sorted ascending).

    Each class is shuffled with a permutation drawn from ``seed``; item ``r`` of a
    class of size ``m`` gets the key ``(r + 1/2) / m`` and the ``n`` smallest keys
    are taken (ties broken by the seeded order). Class ``c`` thus contributes
    ``≈ n · m_c / N`` items, and the subset of size ``n`` is contained in the one
    of size ``n + 1`` for the same seed.

    Args:
        labels: Integer labels ``(N,)``.
        n: Subset size, ``1 <= n <= N``.
        seed: Non-negative int.
    """
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.dtype.is_floating_point:
        raise ValueError(f"labels must be a 1-D integer tensor, got shape {tuple(labels.shape)}")
    total = labels.numel()
    if not isinstance(n, int) or not 1 <= n <= total:
        raise ValueError(f"n must be an int in [1, {total}], got {n!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(total, generator=g)
    lab = labels[perm].long()
    order = torch.argsort(lab, stable=True)
    sorted_lab = lab[order]
    counts = torch.bincount(sorted_lab)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty(total, dtype=torch.float64)
    rank[order] = (torch.arange(total) - starts[sorted_lab]).double()
    key = (rank + 0.5) / counts[lab].double()
    chosen = perm[torch.argsort(key, stable=True)[:n]]
    return torch.sort(chosen).values


def _as_generator(generator: torch.Generator | int | None) -> torch.Generator | None:
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, int) and generator >= 0:
        return torch.Generator().manual_seed(generator)
    raise TypeError(
        f"generator must be a torch.Generator, a non-negative int seed or None, got {generator!r}"
    )


def _rand(shape: Sequence[int], generator: torch.Generator | None, device) -> torch.Tensor:
    """Uniform [0, 1) numbers drawn on the generator's device, then moved to ``device``."""
    gdev = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(*shape, generator=generator, device=gdev).to(device)


def _randint(high: int, n: int, generator: torch.Generator | None, device) -> torch.Tensor:
    gdev = generator.device if generator is not None else torch.device("cpu")
    return torch.randint(0, high, (n,), generator=generator, device=gdev).to(device)


def _crop(x: torch.Tensor, pad: int, generator: torch.Generator | None) -> torch.Tensor:
    """Zero-pad by ``pad`` and take a random ``H × W`` crop per image."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    pw = w + 2 * pad
    i = _randint(2 * pad + 1, b, generator, x.device)
    j = _randint(2 * pad + 1, b, generator, x.device)
    rows = i[:, None, None] + torch.arange(h, device=x.device)[None, :, None]
    cols = j[:, None, None] + torch.arange(w, device=x.device)[None, None, :]
    flat = (rows * pw + cols).reshape(b, 1, h * w).expand(b, c, h * w)
    return torch.gather(padded.reshape(b, c, -1), 2, flat).reshape(b, c, h, w)


def _flip(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    mask = _rand((x.shape[0],), generator, x.device) < 0.5
    return torch.where(mask[:, None, None, None], x.flip(3), x)


def _rotate(x: torch.Tensor, degrees: float, generator: torch.Generator | None) -> torch.Tensor:
    """Rotate each image about its centre by an angle uniform in ``[-degrees, degrees]``."""
    b = x.shape[0]
    angle = (_rand((b,), generator, x.device) * 2 - 1) * math.radians(degrees)
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    xf = x.float()
    grid = F.affine_grid(theta.to(xf.dtype), list(xf.shape), align_corners=False)
    out = F.grid_sample(xf, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if x.dtype == torch.uint8:
        return out.round_().clamp_(0, 255).to(torch.uint8)
    return out.to(x.dtype)


def augment_batch(
    x: torch.Tensor,
    policy: str,
    generator: torch.Generator | int | None = None,
    *,
    pad: int = 4,
    degrees: float = ROTATION_DEGREES,
) -> torch.Tensor:
    """Training augmentation of a batch of raw images (before normalization).

    Args:
        x: Images ``(B, C, H, W)``, ``uint8`` or float, on any device.
        policy: One of :data:`AUGMENTATIONS` (see the module docstring).
        generator: ``torch.Generator`` (or int seed) for the random draws; the
            numbers are drawn on the generator's device and moved to ``x``'s, so a
            CPU generator gives the same augmentation on CPU and GPU. ``None``
            uses torch's global generator.
        pad: Zero padding of ``crop-flip`` (4 in the paper).
        degrees: Largest rotation of ``rotate-flip``.

    Returns:
        Augmented images, same shape, dtype and device as ``x``.
    """
    if policy not in AUGMENTATIONS:
        raise ValueError(f"policy must be one of {AUGMENTATIONS}, got {policy!r}")
    if x.ndim != 4:
        raise ValueError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}")
    g = _as_generator(generator)
    if policy == "none" or x.shape[0] == 0:
        return x
    if policy == "crop-flip":
        return _flip(_crop(x, pad, g), g)
    if policy == "shift":
        return _crop(x, 1, g)
    return _flip(_rotate(x, degrees, g), g)


# --------------------------------------------------------------------------------------
# DataBundle
# --------------------------------------------------------------------------------------


@dataclass
class DataBundle:
    """A dataset held in memory as tensors.

    Attributes:
        name: Canonical dataset name (a key of :data:`DATASETS`).
        train_x: Train images ``(N, C, H, W)``: ``uint8``, or ``float32`` in ``[0, 1]``.
        train_y: Train labels ``(N,)`` int64.
        test_x: Test images, as ``train_x``.
        test_y: Test labels ``(M,)`` int64.
        num_classes: Number of classes.
        input_shape: ``(C, H, W)``.
        mean: Per-channel mean of the full train split on the ``[0, 1]`` scale, ``(C,)``.
        std: Per-channel standard deviation, ``(C,)``.
        augmentation: Default training augmentation policy (:data:`AUGMENTATIONS`).
        classes: Class names in label order.
        source: Where the data came from (path or ``"sklearn"``).
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    input_shape: tuple[int, int, int]
    mean: torch.Tensor
    std: torch.Tensor
    augmentation: str = "none"
    classes: list[str] = field(default_factory=list)
    source: str = ""

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.input_shape):
                raise ValueError(
                    f"{split}_x must have shape (N, {', '.join(map(str, self.input_shape))}), "
                    f"got {tuple(x.shape)}"
                )
            if y.shape != (x.shape[0],):
                raise ValueError(f"{split}_y must have shape ({x.shape[0]},), got {tuple(y.shape)}")
        if self.augmentation not in AUGMENTATIONS:
            raise ValueError(
                f"augmentation must be one of {AUGMENTATIONS}, got {self.augmentation!r}"
            )

    def __repr__(self) -> str:
        return (
            f"DataBundle(name={self.name!r}, train={tuple(self.train_x.shape)} "
            f"{self.train_x.dtype}, test={tuple(self.test_x.shape)}, "
            f"num_classes={self.num_classes}, augmentation={self.augmentation!r}, "
            f"source={self.source!r})"
        )

    @property
    def num_train(self) -> int:
        """Number of train images."""
        return int(self.train_x.shape[0])

    @property
    def num_test(self) -> int:
        """Number of test images."""
        return int(self.test_x.shape[0])

    def split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw ``(x, y)`` of ``"train"`` or ``"test"``."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        return getattr(self, f"{split}_x"), getattr(self, f"{split}_y")

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Channel-wise normalization ``(x/255 − mean) / std`` (floats: ``(x − mean) / std``).

        Args:
            x: Images ``(B, C, H, W)`` or one image ``(C, H, W)``, ``uint8`` or float
                in ``[0, 1]``, on any device.

        Returns:
            float32 tensor on ``x``'s device.
        """
        if x.ndim not in (3, 4) or x.shape[-3] != self.input_shape[0]:
            raise ValueError(
                f"x must have shape (B, {self.input_shape[0]}, H, W) or "
                f"({self.input_shape[0]}, H, W), got {tuple(x.shape)}"
            )
        mean = self.mean.to(x.device)[:, None, None]
        std = self.std.to(x.device)[:, None, None]
        return (_scale(x) - mean) / std

    def augment(
        self, x: torch.Tensor, generator: torch.Generator | int | None = None
    ) -> torch.Tensor:
        """The dataset's training augmentation (:attr:`augmentation`) of raw images ``x``.

        See :func:`augment_batch`; normalize afterwards with :meth:`normalize`.
        """
        return augment_batch(x, self.augmentation, generator)

    def to(self, device: str | torch.device) -> DataBundle:
        """A copy with the images and labels on ``device`` (e.g. to keep a dataset on the GPU).

        :meth:`batches` then gathers and augments there; ``mean``/``std`` stay on the CPU.
        """
        dev = torch.device(device)
        return replace(
            self,
            train_x=self.train_x.to(dev),
            train_y=self.train_y.to(dev),
            test_x=self.test_x.to(dev),
            test_y=self.test_y.to(dev),
        )

    def num_batches(self, split: str, batch_size: int, drop_last: bool = False) -> int:
        """Number of batches :meth:`batches` yields."""
        n = self.split(split)[0].shape[0]
        return n // batch_size if drop_last else -(-n // batch_size)

    def batches(
        self,
        split: str,
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: bool = False,
        generator: torch.Generator | int | None = None,
        device: str | torch.device | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Iterate over normalized ``(x, y)`` batches of one split on ``device``.

        The raw batch is gathered where the bundle's tensors live (see :meth:`to`),
        moved to ``device``, then augmented and normalized there (cheap ``uint8``
        transfers; the augmentation runs on the GPU when ``device`` is one). The
        shuffling order and augmentation draws come from ``generator`` alone, so a
        seed gives the same batches on every device.

        Args:
            split: ``"train"`` or ``"test"``.
            batch_size: Batch size (the last batch may be smaller unless ``drop_last``).
            shuffle: Visit the samples in a random order drawn from ``generator``.
            augment: Apply the training augmentation :attr:`augmentation`.
            generator: ``torch.Generator`` or int seed for the order and the
                augmentation; ``None`` uses torch's global generator (seeded by
                ``torch.manual_seed``). Pass one generator for the whole run so that
                epochs differ.
            device: Target device (default CPU).
            drop_last: Drop the last incomplete batch.

        Yields:
            ``(x, y)``: float32 ``(B, C, H, W)`` and int64 ``(B,)`` on ``device``.
        """
        x_all, y_all = self.split(split)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        g = _as_generator(generator)
        dev = torch.device(device) if device is not None else torch.device("cpu")
        n = x_all.shape[0]
        if shuffle:
            gdev = g.device if g is not None else torch.device("cpu")
            order = torch.randperm(n, generator=g, device=gdev).cpu()
        else:
            order = torch.arange(n)
        order = order.to(x_all.device)
        stop = n - n % batch_size if drop_last else n
        for s in range(0, stop, batch_size):
            idx = order[s : s + batch_size]
            xb = x_all[idx].to(dev, non_blocking=True)
            yb = y_all[idx.to(y_all.device)].to(dev, non_blocking=True)
            if augment:
                xb = augment_batch(xb, self.augmentation, g)
            yield self.normalize(xb), yb

    def subset(
        self, n: int, seed: int = 0, device: str | torch.device | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A fixed, stratified, seeded subset of ``n`` TRAIN points, normalized, un-augmented.

        The points on which sharpness is measured (Sec. 5.1: "always evaluate
        sharpness on the same training points taken without any data
        augmentations"; Appendix G.4: 2,000 for CIFAR, 1,000 for ViT and
        TinyImageNet). Same ``n`` and ``seed`` give the same points.

        Returns:
            ``(x, y)``: float32 normalized images and int64 labels on ``device``.
        """
        idx = stratified_indices(self.train_y, n, seed)
        dev = torch.device(device) if device is not None else torch.device("cpu")
        return self.normalize(self.train_x[idx].to(dev)), self.train_y[idx].to(dev)


def sharpness_subset(
    bundle: DataBundle, n: int, seed: int = 0, device: str | torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed un-augmented, normalized train subset for sharpness measures (see :meth:`DataBundle.subset`)."""
    return bundle.subset(n, seed, device)


# --------------------------------------------------------------------------------------
# Readers: IDX, ImageFolder (cached), torchvision CIFAR pickles
# --------------------------------------------------------------------------------------

_IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST / Fashion-MNIST format), gzip-compressed or not.

    Layout: two zero bytes, a type byte (0x08 uint8, 0x09 int8, 0x0B int16,
    0x0C int32, 0x0D float32, 0x0E float64), a byte with the number of
    dimensions ``d``, ``d`` big-endian uint32 sizes, then the data (big-endian,
    C order).

    Returns:
        The array, in native byte order.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4]!r})")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_TYPES:
        raise ValueError(f"{path}: unknown IDX data type byte 0x{code:02x}")
    dtype = _IDX_TYPES[code]
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: IDX header says shape {shape} ({expected} bytes), "
            f"file holds {len(raw) - header} bytes of data"
        )
    return (
        np.frombuffer(raw, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def _decode_files(files: Sequence[str], mode: str = "RGB") -> np.ndarray:
    """Decode image files to a ``(n, H, W, C)`` uint8 array in PIL ``mode`` ("RGB" or "L")."""
    from PIL import Image

    out = []
    for f in files:
        with Image.open(f) as im:
            arr = np.asarray(im.convert(mode))
        out.append(arr[:, :, None] if arr.ndim == 2 else arr)
    shapes = {a.shape for a in out}
    if len(shapes) > 1:
        raise ValueError(f"images of different sizes in one folder: {sorted(shapes)[:4]}")
    return np.stack(out) if out else np.zeros((0, 1, 1, 3 if mode == "RGB" else 1), np.uint8)


def _walk_images(folder: str) -> list[tuple[str, int]]:
    """``(path, size)`` of the image files under ``folder``, recursively, sorted by path."""
    out: list[tuple[str, int]] = []
    stack = [folder]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir():
                    stack.append(entry.path)
                elif entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS):
                    out.append((entry.path, entry.stat().st_size))
    return sorted(out)


def _scan_folder(folder: Path) -> tuple[list[str], list[tuple[str, int]], list[int]]:
    """Classes (sorted sub-folders), ``(path, size)`` of every image, and labels."""
    classes = sorted(d.name for d in os.scandir(folder) if d.is_dir())
    if not classes:
        raise FileNotFoundError(f"no class folders in {folder} (expected {folder}/<class>/<image>)")
    files: list[tuple[str, int]] = []
    labels: list[int] = []
    for k, cls in enumerate(classes):
        found = _walk_images(str(folder / cls))
        files += found
        labels += [k] * len(found)
    if not files:
        raise FileNotFoundError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {folder}")
    return classes, files, labels


def load_image_folder(
    folder: str | os.PathLike,
    *,
    name: str = "images",
    split: str = "",
    cache: str | os.PathLike | None | bool = None,
    workers: int = 2,
    progress: bool = True,
    mode: str = "RGB",
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Decode an ImageFolder tree ``folder/<class>/**/<image>`` into tensors, with a cache.

    Classes are the sorted sub-folder names (label = index), files are sorted
    within a class (found recursively, so TinyImageNet's ``<wnid>/images/`` works).
    The decoded tensors are saved under ``cache`` (default
    :func:`renyilib.experiments.config.cache_dir`; ``False`` disables caching) in a
    ``.pt`` file loadable with ``weights_only=True``, named after ``name``,
    ``split`` and a hash of the resolved folder path and the file list (relative
    paths and sizes), so a changed folder is decoded again.

    Args:
        folder: The split's root folder.
        name: Dataset name (cache file name).
        split: Split name (cache file name).
        cache: Cache folder, ``None`` for the default, ``False`` for none.
        workers: Decoding processes for the first decode (1 = in-process).
        progress: tqdm progress bar while decoding.
        mode: ``"RGB"`` (every image converted to 3 channels; Tiny ImageNet has a few
            grayscale JPEGs) or ``"L"`` (grayscale, 1 channel).

    Returns:
        ``(x, y, classes)``: ``uint8`` ``(N, C, H, W)``, int64 ``(N,)``, class names.
    """
    folder = Path(folder)
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', got {mode!r}")
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    classes, files, labels = _scan_folder(folder)
    h = hashlib.sha256()
    h.update(f"{name}\0{split}\0{mode}\0{folder.resolve()}\0".encode())
    prefix = len(str(folder)) + 1
    for path, size in files:
        h.update(f"{path[prefix:]}\0{size}\0".encode())
    key = h.hexdigest()[:16]
    cache_file = None
    if cache is not False:
        cache_file = cache_dir(cache or None) / f"{name}-{split or 'all'}-{key}.pt"
        if cache_file.is_file():
            obj = torch.load(cache_file, map_location="cpu", weights_only=True)
            return obj["x"], obj["y"], list(obj["classes"])
    paths = [path for path, _ in files]
    chunk = 512
    chunks = [paths[s : s + chunk] for s in range(0, len(paths), chunk)]
    bar = tqdm(total=len(paths), desc=f"decoding {name} {split}".strip(), disable=not progress)
    arrays = []
    if workers > 1 and len(chunks) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for arr, part in zip(pool.map(partial(_decode_files, mode=mode), chunks), chunks):
                arrays.append(arr)
                bar.update(len(part))
    else:
        for part in chunks:
            arrays.append(_decode_files(part, mode))
            bar.update(len(part))
    bar.close()
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"images of different sizes under {folder}: {sorted(shapes)[:4]}")
    x = torch.from_numpy(np.concatenate(arrays)).permute(0, 3, 1, 2).contiguous()
    y = torch.tensor(labels, dtype=torch.int64)
    if cache_file is not None:
        obj = {"x": x, "y": y, "classes": classes, "folder": str(folder.resolve())}
        atomic_write(cache_file, lambda tmp: torch.save(obj, tmp))
    return x, y, classes


def _read_cifar_pickles(
    folder: Path, files: Sequence[str], label_key: str
) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for f in files:
        with open(folder / f, "rb") as fh:
            entry = pickle.load(fh, encoding="latin1")
        xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.extend(entry[label_key])
    return torch.from_numpy(np.concatenate(xs)), torch.tensor(ys, dtype=torch.int64)


def _load_cifar_pickles(name: str, folder: Path) -> tuple[tuple, tuple, list[str]]:
    """torchvision's ``cifar-10-batches-py`` / ``cifar-100-python`` folders."""
    if name == "cifar10":
        train = _read_cifar_pickles(folder, [f"data_batch_{i}" for i in range(1, 6)], "labels")
        test = _read_cifar_pickles(folder, ["test_batch"], "labels")
        meta, key = "batches.meta", "label_names"
    else:
        train = _read_cifar_pickles(folder, ["train"], "fine_labels")
        test = _read_cifar_pickles(folder, ["test"], "fine_labels")
        meta, key = "meta", "fine_label_names"
    with open(folder / meta, "rb") as fh:
        classes = list(pickle.load(fh, encoding="latin1")[key])
    return train, test, classes


# --------------------------------------------------------------------------------------
# Per-dataset loaders
# --------------------------------------------------------------------------------------


def _load_digits() -> tuple[tuple, tuple, list[str], str]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]
    y = torch.from_numpy(d.target.astype(np.int64))
    test = stratified_indices(y, DIGITS_TEST_SIZE, DIGITS_SPLIT_SEED)
    mask = torch.ones(len(y), dtype=torch.bool)
    mask[test] = False
    train = torch.nonzero(mask).squeeze(1)
    return (x[train], y[train]), (x[test], y[test]), [str(i) for i in range(10)], "sklearn"


_FMNIST_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
_FMNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip


def _find_idx(folder: Path, stem: str) -> Path | None:
    for suffix in ("", ".gz"):
        p = folder / f"{stem}{suffix}"
        if p.is_file():
            return p
    return None


def _load_fashion_mnist(root: Path, download: bool) -> tuple[tuple, tuple, list[str], str]:
    places = [root / "fashion-mnist", root / "FashionMNIST" / "raw", DEBIAN_FASHION_MNIST]
    if download:
        from torchvision.datasets import FashionMNIST

        FashionMNIST(str(root), train=True, download=True)
        FashionMNIST(str(root), train=False, download=True)
    for place in places:
        found = {k: _find_idx(place, v) for k, v in _FMNIST_FILES.items()}
        if all(found.values()):
            arr = {k: torch.from_numpy(read_idx(p)) for k, p in found.items()}
            train = (arr["train_x"][:, None].contiguous(), arr["train_y"].long())
            test = (arr["test_x"][:, None].contiguous(), arr["test_y"].long())
            return train, test, list(_FMNIST_CLASSES), str(place)
    _missing("fashion-mnist", places)
    raise AssertionError("unreachable")


def _image_folder_splits(base: Path, test_names: Sequence[str]) -> tuple[Path, Path] | None:
    if not (base / "train").is_dir():
        return None
    for t in test_names:
        if (base / t).is_dir():
            return base / "train", base / t
    return None


def _load_folder_dataset(
    name: str, root: Path, download: bool, cache, workers: int, progress: bool
) -> tuple[tuple, tuple, list[str], str]:
    folder_names = {
        "cifar10": ["cifar10", "cifar-10", "CIFAR10"],
        "cifar100": ["cifar100", "cifar-100", "CIFAR100"],
        "tinyimagenet": ["tinyimagenet", "tiny-imagenet", "tiny-imagenet-200"],
    }[name]
    test_names = ["test", "val"] if name == "tinyimagenet" else ["test"]
    pickle_dir = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}.get(name)
    looked: list[Path] = []
    if download:
        _download(name, root)
    for fname in folder_names:
        base = root / fname
        looked.append(base / "train")
        splits = _image_folder_splits(base, test_names)
        if splits is not None:
            kw = {"name": name, "cache": cache, "workers": workers, "progress": progress}
            trx, try_, classes = load_image_folder(splits[0], split="train", **kw)
            tex, tey, test_classes = load_image_folder(splits[1], split=splits[1].name, **kw)
            if test_classes != classes:
                raise ValueError(
                    f"{splits[0]} and {splits[1]} have different class folders "
                    f"({len(classes)} vs {len(test_classes)})"
                )
            return (trx, try_), (tex, tey), classes, str(base)
    if pickle_dir is not None:
        for place in (root / pickle_dir, *(root / f / pickle_dir for f in folder_names)):
            looked.append(place)
            if place.is_dir():
                train, test, classes = _load_cifar_pickles(name, place)
                return train, test, classes, str(place)
    _missing(name, looked)
    raise AssertionError("unreachable")


def _download(name: str, root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    if name == "cifar10":
        from torchvision.datasets import CIFAR10

        CIFAR10(str(root), train=True, download=True)
    elif name == "cifar100":
        from torchvision.datasets import CIFAR100

        CIFAR100(str(root), train=True, download=True)
    elif name == "tinyimagenet":
        if (root / "tinyimagenet" / "train").is_dir():
            return
        from torchvision.datasets.utils import download_and_extract_archive

        download_and_extract_archive(
            "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
            download_root=str(root),
            md5="90528d7ca1a48142e341f4ef8d21d0de",
        )
        prepare_tinyimagenet(root / "tiny-imagenet-200", root / "tinyimagenet")


def _missing(name: str, looked: Sequence[Path]) -> None:
    raise FileNotFoundError(
        f"dataset {name!r} not found; looked in: {', '.join(str(p) for p in looked)}. "
        f"To get it: {DATASETS[name].how_to_get}. The data root is the `root` argument, "
        "else $RENYI_DATA, else ./data."
    )


def load_data(
    name: str = "digits",
    root: str | os.PathLike | None = None,
    *,
    train_subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
    download: bool = False,
    cache: str | os.PathLike | None | bool = None,
    workers: int = 2,
    progress: bool = True,
    augmentation: str | None = None,
) -> DataBundle:
    """Load a dataset of :data:`DATASETS` into a :class:`DataBundle`.

    Args:
        name: ``"digits"`` (default), ``"fashion-mnist"``, ``"cifar10"``, ``"cifar100"``
            or ``"tinyimagenet"`` (case, ``-`` and ``_`` ignored).
        root: Data root; else ``$RENYI_DATA``, else ``data/``.
        train_subset: Keep a stratified seeded subset of this many train images
            (e.g. the "CIFAR-10 subset" of the cpu profiles); ``None`` keeps all.
            The normalization statistics are those of the full train split.
        test_subset: Same for the test split.
        seed: Seed of the subsets (the digits train/test split itself is fixed).
        download: Allow torchvision / the official URL to download a missing
            dataset into ``root``.
        cache: Decoded-image cache folder (default :func:`renyilib.experiments.config.cache_dir`),
            ``False`` to disable.
        workers: Processes for the first decode of an image folder.
        progress: tqdm progress while decoding.
        augmentation: Training augmentation policy (:data:`AUGMENTATIONS`) instead of
            the dataset's default (e.g. ``"crop-flip"`` for TinyImageNet in the SAM
            experiments of G.3.2, which reuse the CIFAR recipe).

    Returns:
        The :class:`DataBundle`.

    Raises:
        KeyError: Unknown ``name``.
        FileNotFoundError: The dataset is not under ``root``; the message lists the
            places searched and how to get the data.
        ValueError: A subset size outside ``[1, N]``.
    """
    key = _canonical(name)
    info = DATASETS[key]
    if augmentation is not None and augmentation not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {augmentation!r}")
    base = data_root(root)
    if key == "digits":
        train, test, classes, source = _load_digits()
    elif key == "fashion-mnist":
        train, test, classes, source = _load_fashion_mnist(base, download)
    else:
        train, test, classes, source = _load_folder_dataset(
            key, base, download, cache, workers, progress
        )
    mean, std = channel_stats(train[0])
    if len(classes) != info.num_classes:
        raise ValueError(
            f"dataset {key!r} at {source} has {len(classes)} classes, expected {info.num_classes}"
        )
    if train_subset is not None:
        idx = stratified_indices(train[1], train_subset, seed)
        train = (train[0][idx], train[1][idx])
    if test_subset is not None:
        idx = stratified_indices(test[1], test_subset, seed)
        test = (test[0][idx], test[1][idx])
    return DataBundle(
        name=key,
        train_x=train[0],
        train_y=train[1],
        test_x=test[0],
        test_y=test[1],
        num_classes=info.num_classes,
        input_shape=tuple(train[0].shape[1:]),
        mean=mean,
        std=std,
        augmentation=augmentation or info.augmentation,
        classes=list(classes),
        source=source,
    )


# --------------------------------------------------------------------------------------
# Tiny ImageNet preparation
# --------------------------------------------------------------------------------------


def _place(src: Path, dst: Path, link: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        return
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


def prepare_tinyimagenet(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    test_name: str = "test",
    link: bool = True,
    progress: bool = True,
) -> Path:
    """Rearrange the official Tiny ImageNet folder into an ImageFolder tree.

    The official ``tiny-imagenet-200`` archive has ``train/<wnid>/images/*.JPEG``,
    an unlabelled ``test/`` and a labelled ``val/images/*.JPEG`` with the labels in
    ``val/val_annotations.txt`` (tab-separated: file, wnid, box). This writes

    * ``dst/train/<wnid>/<file>`` for the 100,000 train images, and
    * ``dst/<test_name>/<wnid>/<file>`` for the 10,000 labelled validation
      images, which serve as the test split (the official test labels are not public),

    hard-linking the files when possible (else copying). Re-running skips files
    already in place.

    Args:
        src: The unpacked ``tiny-imagenet-200`` folder.
        dst: Target folder (e.g. ``<root>/tinyimagenet``).
        test_name: ``"test"`` or ``"val"``: the folder name of the labelled split.
        link: Hard-link instead of copying when the filesystem allows it.
        progress: tqdm progress.

    Returns:
        ``dst``.
    """
    src, dst = Path(src), Path(dst)
    if test_name not in ("test", "val"):
        raise ValueError(f"test_name must be 'test' or 'val', got {test_name!r}")
    ann = src / "val" / "val_annotations.txt"
    if not (src / "train").is_dir() or not ann.is_file():
        raise FileNotFoundError(
            f"{src} is not an unpacked tiny-imagenet-200 folder: expected {src / 'train'} "
            f"and {ann}"
        )
    wnids = sorted(d.name for d in (src / "train").iterdir() if d.is_dir())
    known = set(wnids)
    jobs: list[tuple[Path, Path]] = []
    for wnid in wnids:
        for f in sorted((src / "train" / wnid).rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
                jobs.append((f, dst / "train" / wnid / f.name))
    for line_no, line in enumerate(ann.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2:
            raise ValueError(f"{ann}:{line_no}: expected '<file>\\t<wnid>\\t...', got {line!r}")
        fname, wnid = parts[0], parts[1]
        if wnid not in known:
            raise ValueError(
                f"{ann}:{line_no}: wnid {wnid!r} has no train folder in {src / 'train'}"
            )
        image = src / "val" / "images" / fname
        if not image.is_file():
            raise FileNotFoundError(f"{ann}:{line_no}: {image} does not exist")
        jobs.append((image, dst / test_name / wnid / fname))
    for s, d in tqdm(jobs, desc="tinyimagenet", disable=not progress):
        _place(s, d, link)
    return dst
