"""A validation split held out of a training set.

Two parts of the experiments need accuracy on data that is neither trained on
nor the test set:

* the ρ search of Table 1 (:mod:`renyilib.experiments.table1`, ``tune``): every
  candidate is scored on held-out training points, so the test set never
  chooses a hyperparameter;
* RSAM's Algorithm 2 on Tiny ImageNet (Table 6): the SGD phase ends once the
  *validation* top-1 accuracy passes a threshold. Reading the test accuracy
  there would let the test set steer training.

:func:`hold_out` splits the training set of a
:class:`~renyilib.experiments.data.DataBundle` into a smaller training split and
a stratified validation split of ``size`` points (:func:`~renyilib.experiments.data.stratified_indices`,
a fixed seed), and returns a :class:`ValidationBundle`: the same bundle with a
third split ``"val"`` that :meth:`~renyilib.experiments.data.DataBundle.batches`
serves like the others (normalized with the full training set's statistics,
never augmented unless asked). The test split is left untouched.
:func:`renyilib.experiments.train.train` evaluates ``"val"`` when it is in
``eval_splits`` and passes its accuracy to the optimizer's ``on_epoch_end``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from renyilib.experiments.data import DataBundle, stratified_indices

__all__ = ["VAL_SEED", "ValidationBundle", "hold_out"]

#: Seed of the stratified draw of the validation points (the one Table 1's ρ
#: search has always used): the same ``size`` gives the same points in every run.
VAL_SEED = 12345


@dataclass(repr=False)
class ValidationBundle(DataBundle):
    """A :class:`~renyilib.experiments.data.DataBundle` with a validation split ``"val"``.

    Attributes:
        val_x: Held-out training images, stored like ``train_x`` (raw ``uint8``
            or float in ``[0, 1]``), ``(V, C, H, W)``.
        val_y: Their labels ``(V,)`` int64.
        val_indices: Positions of the held-out points in the training split
            the bundle was made from (``(V,)`` int64, ascending).

    ``mean``/``std`` stay those of the bundle it was made from, so
    :meth:`normalize` is the same function for all three splits.
    """

    val_x: torch.Tensor | None = None
    val_y: torch.Tensor | None = None
    val_indices: torch.Tensor | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.val_x is None or self.val_y is None:
            raise TypeError("val_x and val_y are required (use hold_out(bundle, size))")
        if self.val_x.ndim != 4 or tuple(self.val_x.shape[1:]) != tuple(self.input_shape):
            raise ValueError(
                f"val_x must have shape (V, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(self.val_x.shape)}"
            )
        if self.val_y.shape != (self.val_x.shape[0],):
            raise ValueError(
                f"val_y must have shape ({self.val_x.shape[0]},), got {tuple(self.val_y.shape)}"
            )

    def __repr__(self) -> str:
        return (
            f"ValidationBundle(name={self.name!r}, train={tuple(self.train_x.shape)} "
            f"{self.train_x.dtype}, val={tuple(self.val_x.shape)}, "
            f"test={tuple(self.test_x.shape)}, num_classes={self.num_classes}, "
            f"augmentation={self.augmentation!r}, source={self.source!r})"
        )

    @property
    def num_val(self) -> int:
        """Number of validation images."""
        return int(self.val_x.shape[0])

    def split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw ``(x, y)`` of ``"train"``, ``"val"`` or ``"test"``."""
        if split == "val":
            return self.val_x, self.val_y
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        return super().split(split)

    def to(self, device: str | torch.device) -> ValidationBundle:
        """A copy with all three splits on ``device`` (see :meth:`DataBundle.to`)."""
        dev = torch.device(device)
        return replace(super().to(dev), val_x=self.val_x.to(dev), val_y=self.val_y.to(dev))


def hold_out(bundle: DataBundle, size: int, seed: int = VAL_SEED) -> ValidationBundle:
    """Hold ``size`` stratified training points of ``bundle`` out as a validation split.

    The validation points are
    :func:`~renyilib.experiments.data.stratified_indices` ``(train_y, size, seed)``
    (class proportions kept; the points for ``size`` contain those for
    ``size - 1``); the training split keeps the other points in their original
    order; the test split, statistics and augmentation are ``bundle``'s.

    Args:
        bundle: The dataset (its training split is split).
        size: Number of validation points, ``0 < size < bundle.num_train``.
        seed: Seed of the draw (default :data:`VAL_SEED`).

    Returns:
        A :class:`ValidationBundle` with ``num_train = bundle.num_train - size``
        and ``num_val = size``.

    Raises:
        TypeError: ``bundle`` is not a DataBundle, or ``size`` not an int.
        ValueError: ``size`` out of range.
    """
    if not isinstance(bundle, DataBundle):
        raise TypeError(f"bundle must be a DataBundle, got {type(bundle).__name__}")
    if isinstance(bundle, ValidationBundle):
        raise TypeError("bundle already has a validation split")
    if not isinstance(size, int) or isinstance(size, bool):
        raise TypeError(f"size must be an int, got {size!r}")
    n = bundle.num_train
    if not 0 < size < n:
        raise ValueError(f"size must be in (0, {n}) (the training set's size), got {size}")
    val = stratified_indices(bundle.train_y.cpu(), size, seed=seed)
    keep = torch.ones(n, dtype=torch.bool)
    keep[val] = False
    keep = keep.to(bundle.train_y.device)
    val = val.to(bundle.train_y.device)
    return ValidationBundle(
        name=bundle.name,
        train_x=bundle.train_x[keep],
        train_y=bundle.train_y[keep],
        test_x=bundle.test_x,
        test_y=bundle.test_y,
        num_classes=bundle.num_classes,
        input_shape=bundle.input_shape,
        mean=bundle.mean,
        std=bundle.std,
        augmentation=bundle.augmentation,
        classes=bundle.classes,
        source=bundle.source,
        val_x=bundle.train_x[val],
        val_y=bundle.train_y[val],
        val_indices=val.cpu(),
    )
