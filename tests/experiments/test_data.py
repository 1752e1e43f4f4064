"""Tests of renyilib.experiments.data: loaders, caches, statistics, augmentation, subsets, errors."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import renyilib.experiments.data as data_mod
from renyilib.experiments.data import (
    DataBundle,
    augment_batch,
    channel_stats,
    load_data,
    load_image_folder,
    prepare_tinyimagenet,
    read_idx,
    sharpness_subset,
    stratified_indices,
)

SHARED_CIFAR10 = Path("/work/shared/data/cifar10")


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    return load_data("digits")


# --------------------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------------------


#: CIFAR-10 class names in the standard order (written out: the reference for the loaders).
CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def test_digits_shapes_classes_and_split(digits):
    from sklearn.datasets import load_digits

    assert digits.name == "digits"
    assert digits.train_x.shape == (1437, 1, 8, 8) and digits.test_x.shape == (360, 1, 8, 8)
    assert digits.train_x.dtype == torch.float32 and digits.train_y.dtype == torch.int64
    assert digits.num_classes == 10 and digits.input_shape == (1, 8, 8)
    assert 0.0 <= digits.train_x.min() and digits.train_x.max() <= 1.0
    # Stratified: every class has 17.9% +- one image in the test split (1797 -> 360).
    full = torch.bincount(torch.as_tensor(load_digits().target))
    test = torch.bincount(digits.test_y, minlength=10)
    assert torch.all((test.double() - full.double() * 360 / 1797).abs() < 1.0)
    # Train and test partition the 1,797 images (compare as multisets of rows + labels).
    images = torch.from_numpy(load_digits().images.astype(np.float32) / 16.0).reshape(1797, -1)
    ours = torch.cat([digits.train_x, digits.test_x]).reshape(1797, -1)
    key = lambda t: sorted(map(tuple, t.tolist()))  # noqa: E731
    assert key(ours) == key(images)


def test_digits_split_is_deterministic_and_independent_of_seed(digits):
    again = load_data("digits", seed=5)
    assert torch.equal(again.test_x, digits.test_x) and torch.equal(again.train_y, digits.train_y)


def test_digits_subsets_are_stratified_and_seeded():
    a = load_data("digits", train_subset=200, test_subset=50, seed=1)
    b = load_data("digits", train_subset=200, test_subset=50, seed=1)
    c = load_data("digits", train_subset=200, test_subset=50, seed=2)
    assert a.train_x.shape[0] == 200 and a.test_x.shape[0] == 50
    assert torch.equal(a.train_x, b.train_x) and not torch.equal(a.train_x, c.train_x)
    assert torch.bincount(a.train_y, minlength=10).min() >= 19
    full = load_data("digits")
    assert torch.equal(a.mean, full.mean) and torch.equal(a.std, full.std)  # full-split stats


# --------------------------------------------------------------------------------------
# statistics and normalization
# --------------------------------------------------------------------------------------


def test_channel_stats_match_numpy_for_uint8_and_float():
    """Histogram statistics are exact; float32 output, so compare at 1e-6 (float32 eps ~ 1.2e-7)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(50, 3, 5, 7), dtype=np.uint8)
    mean, std = channel_stats(torch.from_numpy(x), chunk=7)
    ref = x.astype(np.float64) / 255.0
    np.testing.assert_allclose(mean.numpy(), ref.mean(axis=(0, 2, 3)), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(std.numpy(), ref.std(axis=(0, 2, 3)), rtol=1e-6, atol=1e-7)
    xf = torch.from_numpy(ref.astype(np.float32))
    mf, sf = channel_stats(xf, chunk=9)
    np.testing.assert_allclose(mf.numpy(), ref.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(sf.numpy(), ref.std(axis=(0, 2, 3)), rtol=1e-6)


def test_normalized_train_split_has_zero_mean_unit_std(digits):
    z = digits.normalize(digits.train_x).double()
    assert abs(z.mean().item()) < 1e-5 and abs(z.std(unbiased=False).item() - 1) < 1e-5


def test_normalize_uint8_by_hand():
    x = torch.tensor([[[[0, 255]], [[51, 102]]]], dtype=torch.uint8)  # (1, 2, 1, 2)
    b = _bundle(torch.zeros(4, 2, 1, 2, dtype=torch.uint8))
    b.mean, b.std = torch.tensor([0.5, 0.2]), torch.tensor([0.25, 0.1])
    expected = torch.tensor([[[[-2.0, 2.0]], [[0.0, 2.0]]]])
    assert torch.allclose(b.normalize(x), expected, atol=1e-6)
    assert torch.allclose(b.normalize(x[0]), expected[0], atol=1e-6)
    with pytest.raises(ValueError, match="x must have shape"):
        b.normalize(torch.zeros(1, 3, 1, 2))
    with pytest.raises(TypeError, match="uint8 or floating-point"):
        b.normalize(torch.zeros(1, 2, 1, 2, dtype=torch.int32))


def _bundle(x: torch.Tensor, augmentation: str = "crop-flip") -> DataBundle:
    y = torch.arange(x.shape[0]) % 2
    mean, std = channel_stats(x)
    return DataBundle(
        "fake", x, y, x[:2], y[:2], 2, tuple(x.shape[1:]), mean, std, augmentation=augmentation
    )


# --------------------------------------------------------------------------------------
# augmentation
# --------------------------------------------------------------------------------------


def _unique_images(b: int, c: int = 3, h: int = 6, w: int = 6) -> torch.Tensor:
    """Images with all-distinct positive values (so a crop window is identifiable)."""
    return (torch.arange(b * c * h * w, dtype=torch.float32) + 1).reshape(b, c, h, w)


def test_crop_flip_is_a_padded_window_possibly_mirrored():
    x = _unique_images(200)
    out = augment_batch(x, "crop-flip", 0, pad=2)
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    offsets, flips = set(), 0
    for k in range(x.shape[0]):
        hits = [
            (i, j, f)
            for i in range(5)
            for j in range(5)
            for f in (False, True)
            if torch.equal(
                out[k],
                padded[k, :, i : i + 6, j : j + 6].flip(2)
                if f
                else padded[k, :, i : i + 6, j : j + 6],
            )
        ]
        assert len(hits) == 1, k  # exactly one window/mirror explains the output
        offsets.add(hits[0][:2])
        flips += hits[0][2]
    assert len(offsets) == 25  # every offset in [0, 4]^2 is drawn over 200 images
    # Binomial(200, 1/2): mean 100, sd ~7.1; 60..140 is a 5.6-sigma band.
    assert 60 <= flips <= 140


def test_augmentation_is_seeded_and_keeps_uint8():
    x = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    for policy in ("crop-flip", "rotate-flip", "shift"):
        a = augment_batch(x, policy, torch.Generator().manual_seed(7))
        b = augment_batch(x, policy, 7)
        c = augment_batch(x, policy, 8)
        assert a.dtype == torch.uint8 and a.shape == x.shape
        assert torch.equal(a, b) and not torch.equal(a, c), policy
    assert augment_batch(x, "none", 0) is x


def test_shift_moves_by_at_most_one_pixel_without_flip():
    x = _unique_images(100, 1, 5, 5)
    out = augment_batch(x, "shift", 3)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    for k in range(100):
        assert any(
            torch.equal(out[k], padded[k, :, i : i + 5, j : j + 5])
            for i in range(3)
            for j in range(3)
        )


def test_rotation_matches_torchvision_rotate():
    """rotate-flip = torchvision's bilinear rotate by the drawn angle, then a coin-flip mirror.

    The angles are re-drawn from a clone of the generator. Same bilinear grid-sample
    arithmetic in float32, so agreement to 1e-5 (values in [0, 1]).
    """
    import torchvision.transforms.v2.functional as TF
    from torchvision.transforms import InterpolationMode

    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    out = augment_batch(x, "rotate-flip", torch.Generator().manual_seed(5), degrees=15.0)
    g = torch.Generator().manual_seed(5)
    angles = (torch.rand(6, generator=g) * 2 - 1) * 15.0
    flips = torch.rand(6, generator=g) < 0.5
    for k in range(6):
        ref = TF.rotate(x[k], angles[k].item(), interpolation=InterpolationMode.BILINEAR)
        ref = ref.flip(2) if flips[k] else ref
        assert (out[k] - ref).abs().max() < 1e-5, k


def test_augment_uses_the_bundle_policy_and_rejects_bad_input():
    x = torch.randint(0, 256, (8, 3, 6, 6), dtype=torch.uint8)
    b = _bundle(x)
    assert torch.equal(b.augment(x, 1), augment_batch(x, "crop-flip", 1))
    with pytest.raises(ValueError, match="policy must be one of"):
        augment_batch(x, "mixup", 0)
    with pytest.raises(ValueError, match=r"shape \(B, C, H, W\)"):
        augment_batch(x[0], "crop-flip", 0)
    with pytest.raises(TypeError, match="generator"):
        augment_batch(x, "crop-flip", 1.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_augmentation_on_gpu_equals_cpu_with_a_cpu_generator():
    x = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    for policy in ("crop-flip", "rotate-flip"):
        cpu = augment_batch(x, policy, 3)
        gpu = augment_batch(x.cuda(), policy, 3).cpu()
        assert (cpu.int() - gpu.int()).abs().max() <= 1  # rotation: rounding of bilinear sums


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batches_on_gpu_equal_cpu_batches():
    x = torch.randint(0, 256, (20, 3, 8, 8), dtype=torch.uint8)
    b = _bundle(x)
    cpu = list(b.batches("train", 8, shuffle=True, augment=True, generator=2))
    gpu = list(b.batches("train", 8, shuffle=True, augment=True, generator=2, device="cuda"))
    for (xc, yc), (xg, yg) in zip(cpu, gpu):
        assert xg.device.type == "cuda" and torch.equal(yc, yg.cpu())
        assert torch.allclose(xc, xg.cpu(), atol=1e-5)  # crop/flip are exact; float32 normalize


# --------------------------------------------------------------------------------------
# batches and subsets
# --------------------------------------------------------------------------------------


def test_batches_cover_the_split_once_and_are_seeded(digits):
    def epoch(seed):
        return list(digits.batches("train", 100, shuffle=True, generator=seed))

    a, b, c = epoch(0), epoch(0), epoch(1)
    assert len(a) == digits.num_batches("train", 100) == 15
    assert [x.shape[0] for x, _ in a] == [100] * 14 + [37]
    assert all(torch.equal(xa, xb) for (xa, _), (xb, _) in zip(a, b))
    assert not torch.equal(a[0][0], c[0][0])
    xs = torch.cat([x for x, _ in a])
    ys = torch.cat([y for _, y in a])
    assert xs.dtype == torch.float32 and ys.dtype == torch.int64
    # A permutation of the normalized split: sort both by their rows.
    ref = digits.normalize(digits.train_x).reshape(1437, -1)
    assert torch.equal(torch.sort(xs.reshape(1437, -1), 0).values, torch.sort(ref, 0).values)
    assert torch.equal(torch.bincount(ys), torch.bincount(digits.train_y))
    moved = list(digits.to("cpu").batches("train", 100, shuffle=True, generator=0))
    assert all(torch.equal(xa, xm) for (xa, _), (xm, _) in zip(a, moved))
    ordered = list(digits.batches("test", 360))
    assert torch.equal(ordered[0][0], digits.normalize(digits.test_x))
    assert len(list(digits.batches("train", 100, drop_last=True))) == 14
    with pytest.raises(ValueError, match="split must be"):
        next(digits.batches("val", 10))
    with pytest.raises(ValueError, match="batch_size"):
        next(digits.batches("train", 0))


def test_batches_augment_with_the_generator():
    x = torch.randint(0, 256, (20, 3, 8, 8), dtype=torch.uint8)
    b = _bundle(x)
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    aug, _ = next(iter(b.batches("train", 20, augment=True, generator=g1)))
    assert torch.equal(aug, b.normalize(augment_batch(x, "crop-flip", g2)))
    plain, _ = next(iter(b.batches("train", 20)))
    assert not torch.equal(aug, plain)


def test_sharpness_subset_is_fixed_stratified_and_unaugmented():
    x = torch.randint(0, 256, (60, 3, 4, 4), dtype=torch.uint8)
    b = _bundle(x)
    xa, ya = sharpness_subset(b, 20, seed=3)
    xb, yb = b.subset(20, seed=3)
    xc, _ = sharpness_subset(b, 20, seed=4)
    assert torch.equal(xa, xb) and torch.equal(ya, yb) and not torch.equal(xa, xc)
    assert torch.equal(torch.bincount(ya), torch.tensor([10, 10]))
    idx = stratified_indices(b.train_y, 20, 3)
    assert torch.equal(xa, b.normalize(x[idx])) and torch.equal(ya, b.train_y[idx])


def test_stratified_indices_properties():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    idx = stratified_indices(labels, 10, seed=0)
    assert torch.equal(idx, torch.sort(idx).values) and len(set(idx.tolist())) == 10
    assert torch.bincount(labels[idx]).tolist() == [5, 3, 2]
    bigger = stratified_indices(labels, 37, seed=0)
    assert set(idx.tolist()) <= set(bigger.tolist())  # nested for a fixed seed
    counts = torch.bincount(labels[bigger], minlength=3).double()
    assert torch.all((counts - torch.tensor([50.0, 30, 20]) * 0.37).abs() <= 1.0)
    assert torch.equal(stratified_indices(labels, 100, seed=1), torch.arange(100))
    with pytest.raises(ValueError, match=r"n must be an int in \[1, 100\]"):
        stratified_indices(labels, 101, seed=0)
    with pytest.raises(ValueError, match="seed"):
        stratified_indices(labels, 5, seed=-1)


# --------------------------------------------------------------------------------------
# IDX files and Fashion-MNIST
# --------------------------------------------------------------------------------------


def _write_idx(path: Path, arr: np.ndarray, code: int) -> None:
    big = arr.astype(arr.dtype.newbyteorder(">"))
    raw = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + big.tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)


def test_read_idx_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 4, 5), dtype=np.uint8)
    ints = np.array([1, -2, 70000], dtype=np.int32)
    floats = rng.standard_normal((2, 3)).astype(np.float32)
    _write_idx(tmp_path / "a.gz", images, 0x08)
    _write_idx(tmp_path / "b", ints, 0x0C)
    _write_idx(tmp_path / "c", floats, 0x0D)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), images)
    np.testing.assert_array_equal(read_idx(tmp_path / "b"), ints)
    np.testing.assert_array_equal(read_idx(tmp_path / "c"), floats)
    (tmp_path / "bad").write_bytes(b"\x01\x00\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 5) + b"\x00" * 3)
    with pytest.raises(ValueError, match="5 bytes"):
        read_idx(tmp_path / "short")


def _fake_fashion(folder: Path, n_train: int = 30, n_test: int = 10) -> tuple[np.ndarray, ...]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    arrays = (
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        (np.arange(n_train) % 10).astype(np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        (np.arange(n_test) % 10).astype(np.uint8),
    )
    codes = (0x08, 0x08, 0x08, 0x08)
    names = data_mod._FMNIST_FILES.values()
    for arr, code, name in zip(arrays, codes, names):
        _write_idx(folder / f"{name}.gz", arr, code)
    return arrays


def test_fashion_mnist_from_idx_files_under_root(tmp_path):
    tx, ty, vx, vy = _fake_fashion(tmp_path / "fashion-mnist")
    b = load_data("fashion-mnist", root=tmp_path)
    assert b.source == str(tmp_path / "fashion-mnist")
    assert b.train_x.dtype == torch.uint8 and b.train_x.shape == (30, 1, 28, 28)
    assert torch.equal(b.train_x[:, 0], torch.from_numpy(tx)) and torch.equal(
        b.test_y, torch.from_numpy(vy).long()
    )
    assert b.augmentation == "none" and b.num_classes == 10
    np.testing.assert_allclose(b.mean.item(), tx.mean() / 255, rtol=1e-6)


@pytest.mark.skipif(
    not data_mod.DEBIAN_FASHION_MNIST.is_dir(), reason="dataset-fashion-mnist not installed"
)
def test_fashion_mnist_from_debian_package(tmp_path):
    b = load_data("fashion-mnist", root=tmp_path)
    assert b.train_x.shape == (60000, 1, 28, 28) and b.test_x.shape == (10000, 1, 28, 28)
    assert torch.bincount(b.train_y).tolist() == [6000] * 10
    # The published Fashion-MNIST statistics: mean 0.2860, std 0.3530.
    assert abs(b.mean.item() - 0.2860) < 1e-4 and abs(b.std.item() - 0.3530) < 1e-4


# --------------------------------------------------------------------------------------
# image folders, cache, CIFAR layout, errors
# --------------------------------------------------------------------------------------


def _write_images(folder: Path, classes, per_class: int, size: int, ext: str, seed: int = 0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    written = {}
    for cls in classes:
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            path = folder / cls / f"{i:04d}{ext}"
            Image.fromarray(arr).save(path)
            written[path] = arr
    return written


def test_image_folder_decodes_exactly_and_caches(tmp_path, monkeypatch):
    written = _write_images(tmp_path / "tree", ["b", "a"], 3, 5, ".png")
    cache = tmp_path / "cache"
    x, y, classes = load_image_folder(
        tmp_path / "tree", name="t", split="train", cache=cache, progress=False
    )
    assert classes == ["a", "b"] and y.tolist() == [0, 0, 0, 1, 1, 1]
    assert x.dtype == torch.uint8 and x.shape == (6, 3, 5, 5)
    order = sorted(written)  # a/0000 ... b/0002
    for k, path in enumerate(order):
        assert torch.equal(x[k], torch.from_numpy(written[path]).permute(2, 0, 1))  # PNG: lossless
    files = list(cache.glob("t-train-*.pt"))
    assert len(files) == 1
    obj = torch.load(files[0], weights_only=True)
    assert torch.equal(obj["x"], x)

    def no_decode(_files, _mode="RGB"):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(data_mod, "_decode_files", no_decode)
    x2, y2, _ = load_image_folder(
        tmp_path / "tree", name="t", split="train", cache=cache, progress=False
    )
    assert torch.equal(x2, x) and torch.equal(y2, y)
    # A changed file list gives a new cache key, hence a fresh decode.
    _write_images(tmp_path / "tree", ["a"], 4, 5, ".png", seed=9)
    with pytest.raises(AssertionError, match="decoded although cached"):
        load_image_folder(tmp_path / "tree", name="t", split="train", cache=cache, progress=False)


def test_image_folder_converts_grayscale_to_rgb(tmp_path):
    from PIL import Image

    _write_images(tmp_path / "tree", ["a"], 1, 4, ".png")
    gray = np.arange(16, dtype=np.uint8).reshape(4, 4) * 10
    Image.fromarray(gray, mode="L").save(tmp_path / "tree" / "a" / "gray.png")
    x, _, _ = load_image_folder(tmp_path / "tree", cache=False, progress=False)
    assert x.shape == (2, 3, 4, 4)
    assert all(
        torch.equal(x[1, c], torch.from_numpy(gray)) for c in range(3)
    )  # a/gray.png sorts last
    xl, _, _ = load_image_folder(tmp_path / "tree", cache=False, progress=False, mode="L")
    assert xl.shape == (2, 1, 4, 4) and torch.equal(xl[1, 0], torch.from_numpy(gray))
    with pytest.raises(ValueError, match="mode must be"):
        load_image_folder(tmp_path / "tree", cache=False, mode="CMYK")


def test_image_folder_parallel_decode_equals_serial(tmp_path):
    _write_images(tmp_path / "tree", ["x", "y"], 300, 4, ".png")  # 600 files: 2 chunks of 512
    a = load_image_folder(tmp_path / "tree", cache=False, workers=2, progress=False)
    b = load_image_folder(tmp_path / "tree", cache=False, workers=1, progress=False)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[0].shape[0] == 600


def test_cifar10_from_jpeg_folder(tmp_path):
    classes = CIFAR10_CLASSES
    _write_images(tmp_path / "cifar10" / "train", classes, 2, 32, ".jpg")
    _write_images(tmp_path / "cifar10" / "test", classes, 1, 32, ".jpg", seed=1)
    b = load_data("cifar10", root=tmp_path, cache=tmp_path / "cache", progress=False)
    assert b.train_x.shape == (20, 3, 32, 32) and b.test_x.shape == (10, 3, 32, 32)
    assert b.classes == classes and b.augmentation == "crop-flip" and b.num_classes == 10
    mean, std = channel_stats(b.train_x)
    assert torch.equal(b.mean, mean) and torch.equal(b.std, std)
    sub = load_data(
        "cifar10", root=tmp_path, cache=tmp_path / "cache", train_subset=10, progress=False
    )
    assert torch.bincount(sub.train_y).tolist() == [1] * 10


def _pickle(path: Path, obj: dict) -> None:
    import pickle

    path.write_bytes(pickle.dumps(obj))


def test_cifar_from_torchvision_pickles(tmp_path):
    """torchvision's cifar-10-batches-py / cifar-100-python layouts (rows are CHW-flattened)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = []
    for i in range(1, 6):
        data = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
        batches.append(data)
        _pickle(folder / f"data_batch_{i}", {"data": data, "labels": [i - 1, i + 4]})
    _pickle(folder / "test_batch", {"data": batches[0], "labels": [3, 4]})
    names = CIFAR10_CLASSES
    _pickle(folder / "batches.meta", {"label_names": names})
    b = load_data("cifar10", root=tmp_path)
    assert b.train_x.shape == (10, 3, 32, 32) and b.classes == names
    assert torch.equal(b.train_x[2, 1, 0], torch.from_numpy(batches[1][0, 1024:1056]))
    assert b.train_y.tolist() == [0, 5, 1, 6, 2, 7, 3, 8, 4, 9]
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    _pickle(folder / "train", {"data": batches[0], "fine_labels": [7, 99]})
    _pickle(folder / "test", {"data": batches[1], "fine_labels": [0, 1]})
    _pickle(folder / "meta", {"fine_label_names": [f"c{i}" for i in range(100)]})
    c = load_data("cifar100", root=tmp_path, augmentation="none")
    assert c.num_classes == 100 and c.train_y.tolist() == [7, 99] and c.augmentation == "none"
    with pytest.raises(ValueError, match="augmentation must be one of"):
        load_data("cifar100", root=tmp_path, augmentation="cutout")


def test_missing_dataset_error_names_the_paths(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError) as err:
        load_data("cifar10", root=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "cifar10" / "train") in msg and "cifar-10-batches-py" in msg
    assert "download=True" in msg
    monkeypatch.setattr(data_mod, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist") as err:
        load_data("fashion-mnist", root=tmp_path)
    assert str(tmp_path / "fashion-mnist") in str(err.value) and "nowhere" in str(err.value)
    with pytest.raises(FileNotFoundError, match="tiny-imagenet-200.zip"):
        load_data("tinyimagenet", root=tmp_path)
    with pytest.raises(KeyError, match="unknown dataset name 'mnist'"):
        load_data("mnist")
    with pytest.raises(ValueError, match="n must be an int"):
        load_data("digits", train_subset=5000)


def test_env_var_is_the_default_root(tmp_path, monkeypatch):
    _fake_fashion(tmp_path / "fashion-mnist")
    monkeypatch.setenv("RENYI_DATA", str(tmp_path))
    assert load_data("Fashion_MNIST").source == str(tmp_path / "fashion-mnist")


# --------------------------------------------------------------------------------------
# Tiny ImageNet
# --------------------------------------------------------------------------------------


def _fake_tiny(src: Path, wnids, per_class_train: int, per_class_val: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    lines = []
    for w in wnids:
        folder = src / "train" / w / "images"
        folder.mkdir(parents=True)
        (src / "train" / w / f"{w}_boxes.txt").write_text("")
        for i in range(per_class_train):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                folder / f"{w}_{i}.JPEG"
            )
    (src / "val" / "images").mkdir(parents=True)
    k = 0
    for w in wnids:
        for _ in range(per_class_val):
            name = f"val_{k}.JPEG"
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                src / "val" / "images" / name
            )
            lines.append(f"{name}\t{w}\t0\t0\t8\t8")
            k += 1
    (src / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    (src / "test" / "images").mkdir(parents=True)


def test_prepare_tinyimagenet_rearranges_val_into_class_folders(tmp_path):
    src, dst = tmp_path / "tiny-imagenet-200", tmp_path / "root" / "tinyimagenet"
    _fake_tiny(src, ["n01", "n02", "n03"], 2, 3)
    prepare_tinyimagenet(src, dst, progress=False)
    assert sorted(p.name for p in (dst / "test").iterdir()) == ["n01", "n02", "n03"]
    assert sorted(p.name for p in (dst / "test" / "n02").iterdir()) == [
        "val_3.JPEG",
        "val_4.JPEG",
        "val_5.JPEG",
    ]
    assert sorted(p.name for p in (dst / "train" / "n03").iterdir()) == ["n03_0.JPEG", "n03_1.JPEG"]
    assert (dst / "test" / "n01" / "val_0.JPEG").read_bytes() == (
        src / "val" / "images" / "val_0.JPEG"
    ).read_bytes()
    prepare_tinyimagenet(src, dst, progress=False)  # idempotent
    assert len(list((dst / "test").rglob("*.JPEG"))) == 9
    bad = tmp_path / "bad"
    _fake_tiny(bad, ["n01"], 1, 1)
    (bad / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn99\t0\t0\t8\t8\n")
    with pytest.raises(ValueError, match="n99"):
        prepare_tinyimagenet(bad, tmp_path / "out", progress=False)
    with pytest.raises(FileNotFoundError, match="val_annotations.txt"):
        prepare_tinyimagenet(tmp_path / "nothing", tmp_path / "out", progress=False)


def test_tinyimagenet_loads_after_preparation(tmp_path):
    wnids = [f"n{i:08d}" for i in range(200)]
    src = tmp_path / "tiny-imagenet-200"
    _fake_tiny(src, wnids, 1, 1)
    prepare_tinyimagenet(src, tmp_path / "tinyimagenet", test_name="val", progress=False)
    b = load_data("tinyimagenet", root=tmp_path, cache=tmp_path / "cache", progress=False)
    assert (
        b.num_classes == 200
        and b.train_x.shape == (200, 3, 8, 8)
        and b.test_x.shape == (200, 3, 8, 8)
    )
    assert b.augmentation == "rotate-flip" and b.classes == wnids
    assert torch.equal(b.train_y, torch.arange(200))


# --------------------------------------------------------------------------------------
# the real CIFAR-10 copy of this machine
# --------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_CIFAR10.is_dir(), reason="no CIFAR-10 copy at /work/shared/data")
def test_shared_cifar10_loads():
    b = load_data("cifar10", root=SHARED_CIFAR10.parent, progress=False)
    assert b.train_x.shape == (50000, 3, 32, 32) and b.test_x.shape == (10000, 3, 32, 32)
    assert torch.bincount(b.train_y).tolist() == [5000] * 10
    assert b.classes[0] == "airplane" and b.classes[-1] == "truck"
    # Published CIFAR-10 train means (0.4914, 0.4822, 0.4465); the JPEG copy differs by
    # well under 0.01. (JPEG smoothing lowers the std below the usual 0.247/0.243/0.261.)
    assert torch.allclose(b.mean, torch.tensor([0.4914, 0.4822, 0.4465]), atol=0.01)
    x, y = sharpness_subset(b, 2000, seed=0)
    assert x.shape == (2000, 3, 32, 32) and torch.bincount(y).tolist() == [200] * 10
