"""The training loop of the model zoo (Appendix G.3.1) and of Table 1 (G.3.2).

One function, :func:`train`, trains a model on a :class:`renyilib.experiments.data.DataBundle`
with a :class:`TrainConfig` and returns a :class:`TrainResult`; the zoo
(:mod:`renyilib.experiments.zoo`) and the Table 1 runner
(:mod:`renyilib.experiments.table1`) both call it.

* optimizers: SGD with momentum 0.9, Adam, and the sharpness-aware family of
  :mod:`renyilib.optim` (SAM, ASAM, EigenSAM, RSAM). Every step is
  ``loss = optimizer.step(closure)`` where ``closure()`` zeroes the gradients,
  runs the forward and backward pass on the current mini-batch and returns the
  loss; plain torch optimizers call it once, the SAM family calls it again at
  the perturbed weights. An optimizer with an ``on_epoch_end(epoch, val_acc=)``
  method is told after every epoch the accuracy on the **validation** split
  (``"val"`` of a :class:`renyilib.experiments.splits.ValidationBundle`, when
  it is among ``eval_splits``), or ``nan`` when there is none or the epoch was
  not evaluated. It is never told the test accuracy: RSAM's Algorithm 2
  switches from SGD to RSAM after ``sgd_epochs`` epochs or once the validation
  accuracy passes ``switch_accuracy`` (Table 6), and an optimizer with such a
  threshold is refused when no validation split is evaluated.
* learning rate: the linear scaling rule of Goyal et al. (2017) that G.3.1
  follows, :math:`\\eta = \\eta_0 \\cdot B / B_0` (:func:`scaled_lr`), then a
  linear warm-up over the first ``warmup_epochs`` and a cosine decay to zero,
  updated every step (:func:`lr_at`). Table 1 uses no scaling and no warm-up.
* metrics: after every evaluated epoch, the loss and accuracy on the
  **un-augmented** training set and on each split of ``eval_splits``, all in
  eval mode; with ``perturbation_curves`` also the mean and maximum
  :math:`\\|\\epsilon\\|_2` of the epoch's steps (the optimizer's
  ``last_perturbation_norm``) and whether the perturbed method was active. The
  final record holds the generalization gap
  :math:`\\mathcal{L}_{test} - \\mathcal{L}_{train}` (the paper's definition,
  Sec. 5) and the convergence flag (:func:`is_converged`).
* a non-finite loss stops the run; it is recorded as ``diverged`` rather than
  raised, so that one bad grid point does not stop a zoo.

On CPU the same config and seed give bit-identical weights and metrics.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from renyilib.experiments.config import default_device

__all__ = [
    "CONVERGED_TRAIN_ACC",
    "CONVERGED_TRAIN_LOSS",
    "OPTIMIZERS",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "is_converged",
    "lr_at",
    "scaled_lr",
    "train",
]

OPTIMIZERS = ("sgd", "adam", "sam", "asam", "eigensam", "rsam")

#: Convergence criterion (the end state the correlation study assumes: the
#: models interpolate the training set). A run has converged when, on the
#: un-augmented training set in eval mode, accuracy >= 99 % **and** the mean
#: cross-entropy <= 0.05. Jiang et al. (2019) stop at cross-entropy 0.01; we
#: use a fixed epoch budget as the paper does (G.3.1) and check the end state
#: with a slightly looser loss bound that still means "near zero": a model at
#: 99 % accuracy with loss 0.05 assigns on average probability >= 0.95 to the
#: right class.
CONVERGED_TRAIN_ACC = 0.99
CONVERGED_TRAIN_LOSS = 0.05


@dataclass
class TrainConfig:
    """Everything that determines a training run (JSON-serializable, hashed by the zoo).

    Attributes:
        optimizer: One of :data:`OPTIMIZERS`: ``"sgd"`` (momentum
            :attr:`momentum`), ``"adam"``, or the SAM family of
            :mod:`renyilib.optim` (``"sam"``, ``"asam"``, ``"eigensam"``, ``"rsam"``).
        lr: Base learning rate :math:`\\eta_0` (at :attr:`base_batch_size` when
            :attr:`lr_scaling` is on).
        batch_size: Mini-batch size :math:`B`.
        weight_decay: L2 weight decay :math:`\\lambda` (the optimizer's coupled
            ``weight_decay``, as in Algorithm 2's :math:`\\nabla L + \\lambda w`).
        epochs: Fixed epoch budget (the paper's stopping criterion, G.3.1).
        warmup_epochs: Linear warm-up length in epochs (may be fractional);
            cosine decay to zero afterwards.
        lr_scaling: Apply the linear scaling rule :math:`\\eta = \\eta_0 B / B_0`.
        base_batch_size: :math:`B_0` of the linear scaling rule.
        momentum: Momentum of SGD (and of the SAM family's base SGD).
        augment: Use the dataset's training augmentation.
        seed: Seed of shuffling, augmentation and any dropout.
        optimizer_kwargs: Extra arguments of the SAM family (``rho``, ``alpha``,
            ``eta``, ``sgd_epochs``, ...), passed to
            :func:`renyilib.optim.build_optimizer`.
    """

    optimizer: str = "sgd"
    lr: float = 0.1
    batch_size: int = 128
    weight_decay: float = 5e-4
    epochs: int = 200
    warmup_epochs: float = 10
    lr_scaling: bool = True
    base_batch_size: int = 128
    momentum: float = 0.9
    augment: bool = True
    seed: int = 0
    optimizer_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        for name in ("lr", "batch_size", "epochs", "base_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for name in ("batch_size", "epochs", "base_batch_size", "seed"):
            if not isinstance(getattr(self, name), int):
                raise TypeError(f"{name} must be an int, got {getattr(self, name)!r}")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ValueError(
                f"warmup_epochs must be in [0, epochs={self.epochs}], got {self.warmup_epochs!r}"
            )
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed!r}")
        if not isinstance(self.optimizer_kwargs, dict):
            raise TypeError(f"optimizer_kwargs must be a dict, got {self.optimizer_kwargs!r}")

    @property
    def peak_lr(self) -> float:
        """The learning rate after warm-up: :func:`scaled_lr` if :attr:`lr_scaling`, else ``lr``."""
        if self.lr_scaling:
            return scaled_lr(self.lr, self.batch_size, self.base_batch_size)
        return float(self.lr)

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict (what the zoo hashes)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise a ``KeyError`` naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise KeyError(f"unknown TrainConfig keys {unknown}; known: {sorted(names)}")
        return cls(**d)


@dataclass
class TrainResult:
    """The final record of a run.

    Attributes:
        config: The :class:`TrainConfig` as a dict.
        train_loss, train_acc: Mean cross-entropy and accuracy on the
            un-augmented training set, eval mode, after the last epoch.
        test_loss, test_acc: The same on the test set (``nan`` when ``"test"``
            was not among ``eval_splits``).
        gap: Generalization gap ``test_loss - train_loss`` (Sec. 5).
        converged: :func:`is_converged` of the final train metrics.
        diverged: A non-finite training loss stopped the run.
        epochs_run: Epochs completed.
        steps: Optimizer steps taken.
        seconds: Wall time of training (not deterministic; not hashed).
        curves: Per evaluated epoch, lists ``epoch, lr, batch_loss, train_loss,
            train_acc`` and ``<split>_loss, <split>_acc`` for each evaluated
            split (``batch_loss`` is the mean mini-batch loss on augmented
            data, as seen by the optimizer); with ``perturbation_curves`` also
            ``eps_mean, eps_max`` (mean and maximum
            :math:`\\|\\epsilon\\|_2` over the epoch's steps, 0 for
            unperturbed steps) and ``perturbed`` (the perturbed method was
            active at the start of the epoch).
        criterion: The convergence thresholds used.
        val_loss, val_acc: Final metrics on the validation split (``nan``
            without one).
        optimizer_stats: ``num_clean_steps`` and ``switched_at_epoch`` of the
            SAM family's optimizers (empty for plain SGD/Adam).
    """

    config: dict[str, Any]
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    gap: float
    converged: bool
    diverged: bool
    epochs_run: int
    steps: int
    seconds: float
    curves: dict[str, list[float]]
    criterion: dict[str, float]
    val_loss: float = math.nan
    val_acc: float = math.nan
    optimizer_stats: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The record as a plain dict (what the zoo writes to ``metrics.json``)."""
        return dataclasses.asdict(self)


def scaled_lr(lr: float, batch_size: int, base_batch_size: int) -> float:
    """Linear scaling rule (Goyal et al., 2017; G.3.1): :math:`\\eta = \\eta_0 \\cdot B / B_0`.

    >>> scaled_lr(0.1, 1280, 128)
    1.0
    """
    if batch_size <= 0 or base_batch_size <= 0:
        raise ValueError(
            f"batch_size and base_batch_size must be positive, got {batch_size}, {base_batch_size}"
        )
    return float(lr) * batch_size / base_batch_size


def lr_at(step: int, total_steps: int, warmup_steps: int, peak_lr: float) -> float:
    """Learning rate at optimizer step ``step`` (0-based): linear warm-up, then cosine decay.

    .. math::
        \\eta_t = \\eta \\, \\frac{t + 1}{W} \\quad (t < W), \\qquad
        \\eta_t = \\frac{\\eta}{2} \\Big(1 + \\cos\\frac{\\pi (t - W)}{T - W}\\Big)
        \\quad (W \\le t < T),

    with :math:`W` = ``warmup_steps`` and :math:`T` = ``total_steps``: the first
    step uses :math:`\\eta/W`, step :math:`W` uses the peak :math:`\\eta`, and the
    rate decays towards zero at :math:`T` (never reached: the last step
    :math:`T-1` still has a small positive rate).

    >>> lr_at(0, 100, 10, 1.0), lr_at(9, 100, 10, 1.0), lr_at(10, 100, 10, 1.0)
    (0.1, 1.0, 1.0)
    >>> round(lr_at(55, 100, 10, 1.0), 12)
    0.5
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(
            f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}"
        )
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    if total_steps == warmup_steps:
        return peak_lr
    progress = min(step - warmup_steps, total_steps - warmup_steps) / (total_steps - warmup_steps)
    return 0.5 * peak_lr * (1.0 + math.cos(math.pi * progress))


def is_converged(
    train_loss: float,
    train_acc: float,
    *,
    min_acc: float = CONVERGED_TRAIN_ACC,
    max_loss: float = CONVERGED_TRAIN_LOSS,
) -> bool:
    """Whether a run reached the interpolation regime the correlation study assumes.

    True iff ``train_acc >= min_acc`` and ``train_loss <= max_loss`` (both finite),
    measured on the un-augmented training set in eval mode. Defaults:
    :data:`CONVERGED_TRAIN_ACC`, :data:`CONVERGED_TRAIN_LOSS`.
    """
    if not (math.isfinite(train_loss) and math.isfinite(train_acc)):
        return False
    return bool(train_acc >= min_acc and train_loss <= max_loss)


def _make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer of ``config`` at the peak learning rate, via :func:`renyilib.optim.build_optimizer`.

    ``"sgd"``: :class:`torch.optim.SGD` with ``momentum`` and coupled weight
    decay; ``"adam"``: :class:`torch.optim.Adam` with coupled (L2) weight decay;
    the SAM family wraps the same SGD (``optimizer_kwargs`` give ``rho``,
    ``alpha``, ``sgd_epochs``, ...).
    """
    from renyilib.optim import build_optimizer

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    base_config = {"lr": config.peak_lr, "weight_decay": config.weight_decay}
    if config.optimizer != "adam":
        base_config["momentum"] = config.momentum
    return build_optimizer(
        config.optimizer, model, params, {**base_config, **config.optimizer_kwargs}
    )


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    groups = list(optimizer.param_groups)
    base = getattr(optimizer, "base_optimizer", None)
    if base is not None and base.param_groups is not optimizer.param_groups:
        groups += list(base.param_groups)
    for group in groups:
        group["lr"] = lr


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: nn.Module | None = None,
) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` over ``batches`` (in eval mode; mode restored).

    The loss is the sample-weighted mean of ``loss_fn`` (default cross-entropy,
    ``reduction="sum"`` so that batches of unequal size weigh by their size);
    accuracy is the fraction of argmax predictions equal to the targets.
    """
    loss_fn = loss_fn or nn.CrossEntropyLoss(reduction="sum")
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    try:
        for x, y in batches:
            out = model(x)
            loss = loss_fn(out, y)
            if getattr(loss_fn, "reduction", "sum") == "mean":
                loss = loss * y.shape[0]
            total_loss += float(loss)
            correct += int((out.argmax(dim=1) == y).sum())
            count += int(y.shape[0])
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("batches is empty")
    return total_loss / count, correct / count


def _check_eval_splits(eval_splits: Sequence[str], data: Any) -> tuple[str, ...]:
    if isinstance(eval_splits, str) or not isinstance(eval_splits, Sequence):
        raise TypeError(f"eval_splits must be a sequence of split names, got {eval_splits!r}")
    splits = tuple(eval_splits)
    bad = [s for s in splits if s not in ("val", "test")]
    if bad or len(set(splits)) != len(splits):
        raise ValueError(
            f"eval_splits must be distinct names among 'val', 'test', got {eval_splits!r}"
        )
    if "val" in splits and getattr(data, "val_y", None) is None:
        raise ValueError(
            "eval_splits has 'val' but data has no validation split; hold one out of the "
            "training set with renyilib.experiments.splits.hold_out(data, size)"
        )
    return splits


def train(
    model: nn.Module,
    data: Any,
    config: TrainConfig | dict[str, Any],
    *,
    device: str | torch.device | None = None,
    progress: bool = True,
    eval_batch_size: int = 1024,
    eval_every: int = 1,
    min_acc: float = CONVERGED_TRAIN_ACC,
    max_loss: float = CONVERGED_TRAIN_LOSS,
    eval_splits: Sequence[str] = ("test",),
    perturbation_curves: bool = False,
    desc: str | None = None,
) -> TrainResult:
    """Train ``model`` on ``data`` with ``config``; the model is trained in place.

    Each step samples a mini-batch (shuffled with a generator seeded by
    ``config.seed``; augmented when ``config.augment``), sets the learning rate
    of every parameter group to :func:`lr_at` of the step (with the peak rate
    of the linear scaling rule, G.3.1) and calls ``optimizer.step(closure)``.
    Cross-entropy is the loss. After every epoch an optimizer with
    ``on_epoch_end`` gets ``on_epoch_end(epoch, val_acc=a)`` with ``a`` the
    accuracy on ``data``'s ``"val"`` split when ``"val"`` is in
    ``eval_splits`` and the epoch was evaluated, else ``nan`` (never the test
    accuracy).

    Args:
        model: The network (already initialized; the zoo seeds its init).
        data: A :class:`renyilib.experiments.data.DataBundle` (``batches(split, batch_size,
            shuffle=, augment=, generator=, device=)``, ``train_y``), or a
            :class:`renyilib.experiments.splits.ValidationBundle` for a ``"val"`` split.
        config: A :class:`TrainConfig` or its dict.
        device: Device; default :func:`renyilib.experiments.config.default_device`.
        progress: Show a tqdm bar over epochs.
        eval_batch_size: Batch size of the evaluation passes (no effect on results).
        eval_every: Evaluate every this many epochs (the last epoch is always
            evaluated); a validation-accuracy switch can only happen on
            evaluated epochs.
        min_acc, max_loss: Convergence thresholds (:func:`is_converged`).
        eval_splits: Splits evaluated besides the (un-augmented) training set,
            among ``"test"`` and ``"val"``; each adds ``<split>_loss`` and
            ``<split>_acc`` curves.
        perturbation_curves: Record ``eps_mean``, ``eps_max`` and ``perturbed``
            per evaluated epoch (from the optimizer's ``last_perturbation_norm``
            and ``perturbation_active``; 0 and False for optimizers without them).
        desc: Label of the progress bar (default ``"train <optimizer>"``).

    Returns:
        The :class:`TrainResult`. A non-finite mini-batch loss stops training
        and returns a record with ``diverged=True`` and ``converged=False``
        (metrics evaluated on the weights at that point, possibly NaN).

    Raises:
        ValueError: Bad ``eval_every`` or ``eval_splits``; ``"val"`` requested
            without a validation split in ``data``; or an optimizer whose
            switch reads the validation accuracy (``switch_accuracy`` set)
            while ``"val"`` is not evaluated.
        TypeError: ``config`` of the wrong type.
    """
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig or dict, got {type(config).__name__}")
    if not isinstance(eval_every, int) or eval_every < 1:
        raise ValueError(f"eval_every must be a positive int, got {eval_every!r}")
    splits = _check_eval_splits(eval_splits, data)
    device = default_device(device)
    model.to(device)
    torch.manual_seed(config.seed)  # dropout and anything else drawing from the global RNG
    generator = torch.Generator().manual_seed(config.seed)

    if device.type == "cuda" and hasattr(data, "to"):
        data = data.to(device)  # keep the (uint8) dataset on the GPU: no per-batch copies
    n_train = int(len(data.train_y))
    steps_per_epoch = math.ceil(n_train / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = min(round(config.warmup_epochs * steps_per_epoch), total_steps)
    peak = config.peak_lr
    optimizer = _make_optimizer(model, config)
    if getattr(optimizer, "switch_accuracy", None) is not None and "val" not in splits:
        raise ValueError(
            f"the optimizer switches on validation accuracy (switch_accuracy="
            f"{optimizer.switch_accuracy}) but eval_splits={splits!r} has no 'val': hold a "
            "validation split out of the training set (renyilib.experiments.splits.hold_out) "
            "and pass eval_splits=(..., 'val'); the test accuracy is never used"
        )
    loss_fn = nn.CrossEntropyLoss()
    on_epoch_end = getattr(optimizer, "on_epoch_end", None)

    def eval_split(split: str) -> tuple[float, float]:
        return evaluate(
            model,
            data.batches(split, eval_batch_size, shuffle=False, augment=False, device=device),
        )

    keys = ["epoch", "lr", "batch_loss", "train_loss", "train_acc"]
    keys += [f"{split}_{m}" for split in splits for m in ("loss", "acc")]
    if perturbation_curves:
        keys += ["eps_mean", "eps_max", "perturbed"]
    curves: dict[str, list[float]] = {k: [] for k in keys}
    step, diverged, epochs_run = 0, False, 0
    start = time.perf_counter()
    bar = tqdm(range(config.epochs), desc=desc or f"train {config.optimizer}", disable=not progress)
    for epoch in bar:
        model.train()
        batch_loss_sum, batch_count, eps = 0.0, 0, []
        perturbed = bool(getattr(optimizer, "perturbation_active", False))
        for x, y in data.batches(
            "train",
            config.batch_size,
            shuffle=True,
            augment=config.augment,
            generator=generator,
            device=device,
        ):
            _set_lr(optimizer, lr_at(step, total_steps, warmup_steps, peak))

            def closure(x: torch.Tensor = x, y: torch.Tensor = y) -> torch.Tensor:
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), y)
                loss.backward()
                return loss

            loss = optimizer.step(closure)
            step += 1
            value = float(loss.detach()) if torch.is_tensor(loss) else float(loss)
            if not math.isfinite(value):
                diverged = True
                break
            if perturbation_curves:
                eps.append(float(getattr(optimizer, "last_perturbation_norm", 0.0)))
            batch_loss_sum += value * y.shape[0]
            batch_count += int(y.shape[0])
        if diverged:
            break
        epochs_run = epoch + 1
        val_acc = math.nan  # no validation split, or not evaluated this epoch
        if epochs_run == config.epochs or epochs_run % eval_every == 0:
            row = {
                "epoch": epochs_run,
                "lr": lr_at(step - 1, total_steps, warmup_steps, peak),
                "batch_loss": batch_loss_sum / max(batch_count, 1),
            }
            row["train_loss"], row["train_acc"] = eval_split("train")
            for split in splits:
                row[f"{split}_loss"], row[f"{split}_acc"] = eval_split(split)
            if perturbation_curves:
                row["eps_mean"] = float(np.mean(eps)) if eps else 0.0
                row["eps_max"] = max(eps, default=0.0)
                row["perturbed"] = perturbed
            for k in keys:
                curves[k].append(row[k])
            val_acc = row.get("val_acc", math.nan)
            shown = {s: f"{row[f'{s}_acc']:.3f}" for s in splits}
            bar.set_postfix(train_loss=f"{row['train_loss']:.3g}", **shown)
        if on_epoch_end is not None:
            on_epoch_end(epoch, val_acc=val_acc)
    bar.close()
    final: dict[str, tuple[float, float]] = {}
    for split in ("train", *splits):
        if diverged or not curves["epoch"] or curves["epoch"][-1] != epochs_run:
            final[split] = eval_split(split)
        else:
            final[split] = (curves[f"{split}_loss"][-1], curves[f"{split}_acc"][-1])
    train_loss, train_acc = final["train"]
    test_loss, test_acc = final.get("test", (math.nan, math.nan))
    val_loss, val_acc = final.get("val", (math.nan, math.nan))
    converged = (not diverged) and is_converged(
        train_loss, train_acc, min_acc=min_acc, max_loss=max_loss
    )
    stats = {
        k: getattr(optimizer, k)
        for k in ("num_clean_steps", "switched_at_epoch")
        if hasattr(optimizer, k)
    }
    return TrainResult(
        config=config.to_dict(),
        train_loss=train_loss,
        train_acc=train_acc,
        test_loss=test_loss,
        test_acc=test_acc,
        gap=test_loss - train_loss,
        converged=converged,
        diverged=diverged,
        epochs_run=epochs_run,
        steps=step,
        seconds=time.perf_counter() - start,
        curves=curves,
        criterion={"min_train_acc": min_acc, "max_train_loss": max_loss},
        val_loss=val_loss,
        val_acc=val_acc,
        optimizer_stats=stats,
    )
