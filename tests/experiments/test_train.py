"""Tests of renyilib.experiments.train: schedule, linear scaling rule, determinism, convergence, divergence."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from renyilib import optim
from renyilib.experiments.data import load_data
from renyilib.experiments.models import build_model
from renyilib.experiments.splits import hold_out
from renyilib.experiments.train import (
    CONVERGED_TRAIN_ACC,
    CONVERGED_TRAIN_LOSS,
    TrainConfig,
    evaluate,
    is_converged,
    lr_at,
    scaled_lr,
    train,
)


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", train_subset=200, test_subset=100, seed=0)


def _mlp(seed: int = 0, dtype=torch.float32):
    torch.manual_seed(seed)
    return build_model("mlp", 10, in_channels=1, image_size=8).to(dtype)


# ----------------------------------------------------------------------------- schedule


def test_lr_at_known_steps():
    # W = 10 warm-up steps, T = 110 total, peak 0.4: exact closed-form values.
    peak, W, T = 0.4, 10, 110
    assert lr_at(0, T, W, peak) == pytest.approx(0.04, abs=1e-15)
    assert lr_at(4, T, W, peak) == pytest.approx(0.2, abs=1e-15)
    assert lr_at(9, T, W, peak) == pytest.approx(0.4, abs=1e-15)  # end of warm-up = peak
    assert lr_at(10, T, W, peak) == pytest.approx(0.4, abs=1e-15)  # cosine starts at the peak
    assert lr_at(60, T, W, peak) == pytest.approx(0.2, abs=1e-15)  # half-way: cos(pi/2) = 0
    assert lr_at(35, T, W, peak) == pytest.approx(0.2 * (1 + math.cos(math.pi / 4)), abs=1e-15)
    last = lr_at(T - 1, T, W, peak)
    assert last == pytest.approx(0.2 * (1 + math.cos(math.pi * 99 / 100)), abs=1e-15)
    assert 0 < last < 1e-3  # decays towards (not to) zero
    # No warm-up: the first step is the peak; all warm-up: linear ramp to the peak.
    assert lr_at(0, 50, 0, 1.0) == 1.0
    assert [lr_at(s, 4, 4, 1.0) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]


def test_lr_at_is_monotone_up_then_down():
    lrs = [lr_at(s, 200, 20, 1.0) for s in range(200)]
    assert all(a < b for a, b in itertools.pairwise(lrs[:20]))
    assert all(a >= b for a, b in itertools.pairwise(lrs[19:]))


def test_lr_at_bad_input():
    with pytest.raises(ValueError, match="total_steps"):
        lr_at(0, 0, 0, 1.0)
    with pytest.raises(ValueError, match="warmup_steps"):
        lr_at(0, 10, 11, 1.0)
    with pytest.raises(ValueError, match="step"):
        lr_at(-1, 10, 1, 1.0)


def test_linear_scaling_rule():
    assert scaled_lr(0.1, 1280, 128) == pytest.approx(1.0, rel=1e-15)
    assert scaled_lr(0.03, 384, 128) == pytest.approx(0.09, rel=1e-15)
    assert TrainConfig(lr=0.1, batch_size=384, base_batch_size=128).peak_lr == pytest.approx(0.3)
    assert TrainConfig(lr=0.1, batch_size=384, lr_scaling=False).peak_lr == 0.1
    with pytest.raises(ValueError, match="batch_size"):
        scaled_lr(0.1, 0, 128)


def test_first_step_uses_scaled_lr_exactly(digits):
    """One full-batch SGD step (no momentum history, no decay, no warm-up): w1 = w0 - eta B/B0 g.

    float64 model; the reference gradient is computed independently with one
    forward pass over the whole (normalized) train set. The training loop
    shuffles, so the batch sum is taken in another order: tolerance 1e-12 is
    far above float64 rounding (~1e-16 x 200 terms) and far below a wrong lr
    (a factor B/B0 = 200/50 = 4 here).
    """
    n = len(digits.train_y)
    model = _mlp(0, torch.float64)
    w0 = [p.detach().clone() for p in model.parameters()]
    x = digits.normalize(digits.train_x).double()
    loss = F.cross_entropy(model(x), digits.train_y)
    grads = torch.autograd.grad(loss, list(model.parameters()))

    class Bundle64:  # the bundle's batches, cast to float64
        train_y = digits.train_y

        def batches(self, *args, **kwargs):
            for xb, yb in digits.batches(*args, **kwargs):
                yield xb.double(), yb

    cfg = TrainConfig(
        optimizer="sgd",
        lr=0.01,
        batch_size=n,
        base_batch_size=50,
        weight_decay=0.0,
        epochs=1,
        warmup_epochs=0,
        momentum=0.0,
    )
    train(model, Bundle64(), cfg, device="cpu", progress=False)
    eta = 0.01 * n / 50
    for p, p0, g in zip(model.parameters(), w0, grads):
        torch.testing.assert_close(p.detach(), p0 - eta * g, rtol=0, atol=1e-12)


def test_curves_record_the_schedule(digits):
    cfg = TrainConfig(lr=0.05, batch_size=64, base_batch_size=32, epochs=4, warmup_epochs=1)
    r = train(_mlp(), digits, cfg, device="cpu", progress=False)
    steps_per_epoch = math.ceil(200 / 64)
    total = 4 * steps_per_epoch
    expect = [lr_at(e * steps_per_epoch - 1, total, steps_per_epoch, 0.1) for e in range(1, 5)]
    assert r.curves["lr"] == pytest.approx(expect, rel=1e-15)
    assert r.curves["epoch"] == [1, 2, 3, 4]
    assert r.steps == total


# ----------------------------------------------------------------------------- determinism


def test_same_seed_same_weights_and_metrics(digits):
    cfg = TrainConfig(optimizer="sgd", lr=0.05, batch_size=32, epochs=3, warmup_epochs=1, seed=3)
    m1, m2, m3 = _mlp(0), _mlp(0), _mlp(0)
    r1 = train(m1, digits, cfg, device="cpu", progress=False)
    r2 = train(m2, digits, cfg, device="cpu", progress=False)
    for p, q in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(p, q)
    d1, d2 = r1.to_dict(), r2.to_dict()
    d1.pop("seconds"), d2.pop("seconds")
    assert d1 == d2
    # A different shuffling seed gives different weights.
    cfg3 = TrainConfig(**{**cfg.to_dict(), "seed": 4})
    train(m3, digits, cfg3, device="cpu", progress=False)
    assert not all(torch.equal(p, q) for p, q in zip(m1.parameters(), m3.parameters()))


# ----------------------------------------------------------------------------- metrics


def test_final_metrics_are_unaugmented_eval_metrics(digits):
    model = _mlp(1)
    cfg = TrainConfig(optimizer="adam", lr=1e-3, batch_size=32, epochs=2, warmup_epochs=0)
    r = train(model, digits, cfg, device="cpu", progress=False)
    with torch.no_grad():
        out_tr = model(digits.normalize(digits.train_x))
        out_te = model(digits.normalize(digits.test_x))
    # float32 sums over 200/100 samples in other batch groupings: 1e-6 relative.
    assert r.train_loss == pytest.approx(F.cross_entropy(out_tr, digits.train_y).item(), rel=1e-5)
    assert r.test_loss == pytest.approx(F.cross_entropy(out_te, digits.test_y).item(), rel=1e-5)
    assert r.train_acc == (out_tr.argmax(1) == digits.train_y).sum().item() / 200
    assert r.test_acc == (out_te.argmax(1) == digits.test_y).sum().item() / 100
    assert r.gap == pytest.approx(r.test_loss - r.train_loss, abs=1e-12)
    assert r.curves["train_loss"][-1] == r.train_loss


def test_evaluate_weights_batches_by_size(digits):
    model = _mlp(2).eval()
    x = digits.normalize(digits.train_x)
    y = digits.train_y
    batches = [(x[:7], y[:7]), (x[7:], y[7:])]  # very unequal sizes
    loss, acc = evaluate(model, batches)
    with torch.no_grad():
        ref = F.cross_entropy(model(x), y).item()
    assert loss == pytest.approx(ref, rel=1e-5)
    assert model.training is False
    with pytest.raises(ValueError, match="empty"):
        evaluate(model, [])


# ----------------------------------------------------------------------------- convergence


def test_is_converged_thresholds():
    assert is_converged(0.01, 1.0)
    assert is_converged(CONVERGED_TRAIN_LOSS, CONVERGED_TRAIN_ACC)
    assert not is_converged(0.06, 1.0)
    assert not is_converged(0.01, 0.98)
    assert not is_converged(float("nan"), 1.0)
    assert is_converged(0.2, 0.95, min_acc=0.9, max_loss=0.3)


def test_convergence_flag_on_real_runs(digits):
    good = TrainConfig(
        optimizer="adam", lr=3e-3, batch_size=32, base_batch_size=32, epochs=40, warmup_epochs=2
    )
    r = train(_mlp(0), digits, good, device="cpu", progress=False, eval_every=10)
    assert r.converged and r.train_acc >= 0.99 and r.train_loss <= 0.05
    assert r.curves["epoch"] == [10, 20, 30, 40]
    bad = TrainConfig(optimizer="sgd", lr=1e-4, batch_size=32, epochs=1, warmup_epochs=0)
    r = train(_mlp(0), digits, bad, device="cpu", progress=False)
    assert not r.converged and not r.diverged and r.train_acc < 0.5
    assert r.criterion == {"min_train_acc": 0.99, "max_train_loss": 0.05}


def test_divergence_is_recorded_not_raised(digits):
    cfg = TrainConfig(optimizer="sgd", lr=1e6, batch_size=32, epochs=3, warmup_epochs=0)
    r = train(_mlp(0), digits, cfg, device="cpu", progress=False)
    assert r.diverged and not r.converged
    assert r.epochs_run == 0 and r.steps < 7  # stopped inside the first epoch


# ----------------------------------------------------------------------------- SAM family


def test_sam_family_and_epoch_end_hook(digits, monkeypatch):
    made = []
    real = optim.build_optimizer

    def spy(*args, **kwargs):
        opt = real(*args, **kwargs)
        made.append(opt)
        return opt

    monkeypatch.setattr(optim, "build_optimizer", spy)
    cfg = TrainConfig(
        optimizer="rsam",
        lr=0.05,
        batch_size=50,
        epochs=3,
        warmup_epochs=0,
        optimizer_kwargs={"rho": 0.05, "alpha": 1.2, "sgd_epochs": 2},
    )
    r = train(_mlp(0), digits, cfg, device="cpu", progress=False)
    (opt,) = made
    assert opt.epochs_done == 3 and opt.switched_at_epoch == 2  # Algorithm 2's switch
    assert not r.diverged and math.isfinite(r.train_loss)
    # The learning rate set by the loop reaches the base optimizer that steps.
    assert opt.base_optimizer.param_groups[0]["lr"] == pytest.approx(r.curves["lr"][-1])


# ----------------------------------------------------------------------------- config


def test_train_config_validation_and_roundtrip():
    cfg = TrainConfig(optimizer="sam", optimizer_kwargs={"rho": 0.1})
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=-0.1)
    with pytest.raises(ValueError, match="warmup_epochs"):
        TrainConfig(epochs=5, warmup_epochs=6)
    with pytest.raises(TypeError, match="batch_size"):
        TrainConfig(batch_size=32.5)
    with pytest.raises(KeyError, match="nesterov"):
        TrainConfig.from_dict({"nesterov": True})
    with pytest.raises(ValueError, match="eval_every"):
        train(_mlp(0), None, TrainConfig(), eval_every=0)


# ----------------------------------------------------------------------------- validation split


class RecordingSGD(torch.optim.SGD):
    """Plain SGD that records every ``on_epoch_end`` call of the training loop."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.received: list[tuple[int, float]] = []

    def on_epoch_end(self, epoch, val_acc=None):
        self.received.append((epoch, val_acc))


@pytest.fixture
def recording(monkeypatch):
    made = []

    def build(name, model, params=None, config=None, **kwargs):
        config = {**(config or {}), **kwargs}
        opt = RecordingSGD(
            list(model.parameters()) if params is None else params,
            lr=config["lr"],
            momentum=config.get("momentum", 0.0),
            weight_decay=config.get("weight_decay", 0.0),
        )
        made.append(opt)
        return opt

    monkeypatch.setattr(optim, "build_optimizer", build)
    return made


def test_on_epoch_end_never_sees_the_test_accuracy(digits, recording):
    """Without a validation split the optimizer is told nan, not the test accuracy (#18.2)."""
    cfg = TrainConfig(lr=0.05, batch_size=32, epochs=3, warmup_epochs=0)
    r = train(_mlp(0), digits, cfg, device="cpu", progress=False)
    (opt,) = recording
    assert [e for e, _ in opt.received] == [0, 1, 2]
    assert all(math.isnan(a) for _, a in opt.received), opt.received
    assert r.curves["test_acc"] and math.isnan(r.val_acc) and math.isnan(r.val_loss)


def test_on_epoch_end_gets_the_validation_accuracy(digits, recording):
    v = hold_out(digits, 50)
    cfg = TrainConfig(lr=0.05, batch_size=32, epochs=3, warmup_epochs=0)
    model = _mlp(0)
    r = train(
        model, v, cfg, device="cpu", progress=False, eval_every=2, eval_splits=("val", "test")
    )
    (opt,) = recording
    # epochs 2 and 3 are evaluated (every 2nd and the last); epoch 1 is not: nan.
    assert r.curves["epoch"] == [2, 3]
    assert math.isnan(opt.received[0][1])
    assert [a for _, a in opt.received[1:]] == r.curves["val_acc"]
    # ... and it is the accuracy on the held-out training points, not on the test set.
    with torch.no_grad():
        pred_val = model(v.normalize(v.val_x)).argmax(1)
        pred_test = model(v.normalize(v.test_x)).argmax(1)
    assert r.val_acc == (pred_val == v.val_y).sum().item() / 50 == opt.received[-1][1]
    assert r.test_acc == (pred_test == v.test_y).sum().item() / 100
    assert r.steps == 3 * math.ceil(150 / 32)  # trained on the 150 points left


def test_rsam_accuracy_switch_reads_the_validation_split(digits):
    kwargs = {"rho": 0.05, "alpha": 1.2, "sgd_epochs": None, "switch_accuracy": 0.0}
    cfg = TrainConfig(
        optimizer="rsam", lr=0.05, batch_size=50, epochs=3, warmup_epochs=0, optimizer_kwargs=kwargs
    )
    with pytest.raises(ValueError, match="switch_accuracy=0.0.*no 'val'"):
        train(_mlp(0), digits, cfg, device="cpu", progress=False)
    r = train(
        _mlp(0),
        hold_out(digits, 50),
        cfg,
        device="cpu",
        progress=False,
        eval_splits=("val",),
        perturbation_curves=True,
    )
    # Validation accuracy > 0 after the first (SGD) epoch: the switch happens there.
    assert r.curves["val_acc"][0] > 0
    assert r.optimizer_stats == {"num_clean_steps": 0, "switched_at_epoch": 1}
    assert r.curves["perturbed"] == [False, True, True]
    assert r.curves["eps_mean"][0] == 0.0 and min(r.curves["eps_mean"][1:]) > 0
    # eval_splits=("val",): the test set is never evaluated.
    assert "test_acc" not in r.curves and math.isnan(r.test_acc) and math.isnan(r.gap)


def test_perturbation_curves(digits):
    """SAM's perturbation has norm exactly rho (eps = rho g / ||g||); SGD's is 0."""
    sam = TrainConfig(
        optimizer="sam", lr=0.05, batch_size=50, epochs=2, warmup_epochs=0,
        optimizer_kwargs={"rho": 0.05},
    )  # fmt: skip
    r = train(_mlp(0), digits, sam, device="cpu", progress=False, perturbation_curves=True)
    assert list(r.curves) == [
        "epoch", "lr", "batch_loss", "train_loss", "train_acc", "test_loss", "test_acc",
        "eps_mean", "eps_max", "perturbed",
    ]  # fmt: skip
    # float32 norm of a float32 vector of norm 0.05: relative error ~1e-7.
    assert r.curves["eps_mean"] == pytest.approx([0.05, 0.05], rel=1e-5)
    assert r.curves["eps_max"] == pytest.approx([0.05, 0.05], rel=1e-5)
    assert r.curves["perturbed"] == [True, True]
    assert r.optimizer_stats == {"num_clean_steps": 0, "switched_at_epoch": 0}
    sgd = TrainConfig(lr=0.05, batch_size=50, epochs=2, warmup_epochs=0)
    r = train(_mlp(0), digits, sgd, device="cpu", progress=False, perturbation_curves=True)
    assert r.curves["eps_mean"] == r.curves["eps_max"] == [0.0, 0.0]
    assert r.curves["perturbed"] == [False, False] and r.optimizer_stats == {}
    r = train(_mlp(0), digits, sgd, device="cpu", progress=False)
    assert "eps_mean" not in r.curves


def test_eval_splits_bad_input(digits):
    cfg = TrainConfig(lr=0.05, batch_size=50, epochs=1, warmup_epochs=0)
    with pytest.raises(ValueError, match="hold_out"):
        train(_mlp(0), digits, cfg, progress=False, eval_splits=("val",))
    with pytest.raises(ValueError, match="eval_splits"):
        train(_mlp(0), digits, cfg, progress=False, eval_splits=("train",))
    with pytest.raises(ValueError, match="eval_splits"):
        train(_mlp(0), digits, cfg, progress=False, eval_splits=("test", "test"))
    with pytest.raises(TypeError, match="eval_splits"):
        train(_mlp(0), digits, cfg, progress=False, eval_splits="test")
