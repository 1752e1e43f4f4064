"""Tests for renyilib.experiments.table1: the Table-1 runner (configs, tuning rule, resumability, summaries)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from renyilib import optim
from renyilib.experiments import table1
from renyilib.experiments.config import load_profile, seed_everything
from renyilib.experiments.io import read_json
from renyilib.experiments.train import evaluate, lr_at


def test_paper_hyperparameters_match_tables_4_to_6():
    hp = table1.PAPER_HPARAMS
    assert hp["cifar10-resnet20"]["rsam"]["kwargs"] == {"rho": 0.65, "alpha": 1.2, "sgd_epochs": 5}
    assert hp["cifar100-wrn28-10"]["rsam"]["kwargs"]["rho"] == 1.0
    assert hp["cifar10-resnet56"]["asam"]["kwargs"] == {"rho": 0.5, "eta": 0.01}
    assert hp["cifar100-resnet20"]["sam"]["kwargs"] == {"rho": 0.1}
    assert hp["cifar10-wrn28-10"]["eigensam"]["kwargs"]["alpha"] == 0.2
    tiny = hp["tinyimagenet-resnet50"]["rsam"]
    assert tiny["lr"] == 0.2 and tiny["weight_decay"] == 1e-4 and tiny["epochs"] == 100
    assert tiny["kwargs"]["switch_accuracy"] == 0.30 and tiny["kwargs"]["sgd_epochs"] is None
    for rows in hp.values():
        assert set(rows) == set(table1.METHODS)


def test_make_config_scales_sgd_epochs_and_overrides_rho():
    c = table1.make_config("cifar10-resnet20", "rsam", 3, epochs=40, rho=0.2)
    kw = c["train"]["optimizer_kwargs"]
    assert kw["sgd_epochs"] == 1 and kw["rho"] == 0.2 and c["train"]["epochs"] == 40
    assert (
        table1.make_config("cifar10-resnet20", "rsam", 3)["train"]["optimizer_kwargs"]["sgd_epochs"]
        == 5
    )
    assert (
        table1.make_config("cifar10-resnet20", "sgd", 0, rho=0.3)["train"]["optimizer_kwargs"] == {}
    )
    fixed = table1.make_config("digits-mlp", "rsam-fixed", 0)["train"]["optimizer_kwargs"]
    assert fixed["radius"] == "fixed" and fixed["rho"] == 0.05
    with pytest.raises(KeyError, match="task"):
        table1.make_config("mnist-lenet", "sgd", 0)
    with pytest.raises(ValueError, match="method"):
        table1.make_config("digits-mlp", "adamw", 0)


def test_tuning_grid_is_the_same_for_every_method():
    prof = {
        "tasks": ["digits-mlp"],
        "methods": list(table1.METHODS),
        "seeds": [0],
        "epochs": 1,
        "tune": {"factors": [0.5, 1.0, 2.0], "val_size": 100, "seed": 0},
    }
    configs = table1.tune_configs(prof, "digits-mlp")
    per_method: dict[str, list[float]] = {}
    for c in configs:
        assert c["data"]["val_size"] == 100
        per_method.setdefault(c["train"]["method"], []).append(
            c["train"]["optimizer_kwargs"].get("rho")
        )
    assert per_method.pop("sgd") == [None]
    for method, rhos in per_method.items():
        base = table1.PAPER_HPARAMS["digits-mlp"][method]["kwargs"]["rho"]
        assert rhos == pytest.approx([0.5 * base, base, 2 * base])


def test_run_is_resumable_and_tuned_rho_picks_best_validation(tmp_path):
    prof = {
        "tasks": ["digits-mlp"],
        "methods": ["sgd", "rsam"],
        "seeds": [0, 1],
        "epochs": 1,
        "tune": {"factors": [0.5, 1.0], "val_size": 200, "seed": 0},
    }
    res = table1.run_table1(prof, tmp_path, progress=False)
    runs = res["runs"]
    assert len(runs) == 4 and set(runs.method) == {"sgd", "rsam"}
    tune = res["tune_runs"]
    assert (tune.eval_split == "val").all() and (runs.eval_split == "test").all()
    best = tune[tune.method == "rsam"].sort_values(["acc", "rho"], ascending=[False, True]).iloc[0]
    assert res["rhos"]["digits-mlp"]["rsam"] == best["rho"]
    assert (runs[runs.method == "rsam"].rho == best["rho"]).all()
    m = read_json(runs.path.iloc[0] + "/metrics.json")
    assert m["n_eval"] == 360 and len(m["curves"]["eps_mean"]) == 1
    # Tuning held out 200 of the 1437 training digits.
    assert read_json(tune.path.iloc[0] + "/metrics.json")["n_train"] == 1437 - 200
    # Second call: nothing retrains (metrics files untouched).
    stamps = {p: (tmp_path / p).stat().st_mtime_ns for p in runs.path}
    for c in res["configs"]:
        assert table1.run(c, tmp_path) == "skipped"
    assert stamps == {p: (tmp_path / p).stat().st_mtime_ns for p in runs.path}
    model = table1.load_model(runs.path.iloc[0])
    assert not model.training


def test_summarize_mean_and_standard_error():
    runs = pd.DataFrame(
        {
            "task": ["t"] * 4,
            "method": ["sgd", "sgd", "sgd", "sam"],
            "acc": [90.0, 92.0, 94.0, 91.0],
        }
    )
    s = table1.summarize(runs).set_index("method")
    assert s.loc["sgd", "mean"] == 92.0
    assert s.loc["sgd", "stderr"] == pytest.approx(2.0 / math.sqrt(3), rel=1e-12)
    assert np.isnan(s.loc["sam", "stderr"]) and s.loc["sam", "n"] == 1
    with pytest.raises(ValueError, match="empty"):
        table1.summarize(pd.DataFrame())


def test_load_paper_table_handles_commas_in_notes():
    paper = table1.load_paper_table()
    assert list(paper.columns) == ["dataset", "model", "method", "mean", "stderr", "note"]
    row = paper[
        (paper.dataset == "CIFAR100") & (paper.model == "ResNet20") & (paper.method == "RSAM")
    ]
    assert row["mean"].item() == 70.91 and np.isnan(row["stderr"].item())
    assert "70,9102" in row["note"].item()
    assert paper[(paper.dataset == "CIFAR10") & (paper.method == "SGD")]["mean"].tolist() == [
        92.68,
        94.24,
        96.36,
    ]


def test_parallel_runs_equal_serial_runs(tmp_path):
    # two worker processes give the same numbers as one process (seeded, CPU)
    prof = {"tasks": ["digits-mlp"], "methods": ["sgd", "sam"], "seeds": [0], "epochs": 1}
    serial = table1.run_table1(prof, tmp_path / "a", progress=False)["runs"]
    parallel = table1.run_table1(prof, tmp_path / "b", progress=False, jobs=2, threads=1)["runs"]
    cols = ["method", "seed", "acc", "loss", "train_loss", "eps_last"]
    pd.testing.assert_frame_equal(serial[cols], parallel[cols])


def test_a_failing_run_is_reported_after_the_others(tmp_path, monkeypatch):
    prof = {"tasks": ["digits-mlp"], "methods": ["sgd", "sam"], "seeds": [0], "epochs": 1}
    real = table1.train_run

    def flaky(config, **kwargs):
        if config["train"]["method"] == "sgd":
            raise FloatingPointError("loss is nan")
        return real(config, **kwargs)

    monkeypatch.setattr(table1, "train_run", flaky)
    with pytest.raises(RuntimeError, match=r"1 of 2 runs .* \(sgd, seed 0\).*loss is nan"):
        table1.run_table1(prof, tmp_path, progress=False)
    # the other run finished and is kept
    assert len(table1.runs_table(tmp_path, table1.final_configs(prof, "digits-mlp"))) == 1


# ----------------------------------------------------------------------------- one training loop


def _reference_train_run(config):
    """Table 1's own training loop as it was before it became a call of train.train.

    Kept verbatim (minus the progress bar) as the oracle of the regression test
    below: the merged loop must reproduce it bit for bit on CPU.
    """
    t = config["train"]
    bundle = table1.run_data(config)
    split = "val" if config["data"].get("val_size") else "test"
    seed_everything(t["seed"])
    model = table1.build_run_model(config)
    kwargs = dict(t["optimizer_kwargs"])
    if t["method"] == "eigensam":
        kwargs.setdefault("seed", t["seed"])
    with warnings.catch_warnings():  # Eigen-SAM's `alpha`, since renamed eigvec_weight
        warnings.simplefilter("ignore", DeprecationWarning)
        opt = optim.build_optimizer(
            "rsam" if t["method"] == "rsam-fixed" else t["method"],
            model,
            lr=t["lr"],
            momentum=t["momentum"],
            weight_decay=t["weight_decay"],
            **kwargs,
        )
    gen = torch.Generator().manual_seed(t["seed"])
    total = bundle.num_batches("train", t["batch_size"]) * t["epochs"]
    loss_fn = torch.nn.CrossEntropyLoss()
    keys = ("epoch", "lr", "batch_loss", "train_loss", "train_acc", "eval_loss", "eval_acc")
    keys += ("eps_mean", "eps_max", "perturbed")
    curves = {k: [] for k in keys}
    step = 0
    for epoch in range(t["epochs"]):
        model.train()
        loss_sum, count, eps = 0.0, 0, []
        perturbed = bool(getattr(opt, "perturbation_active", False))
        for x, y in bundle.batches(
            "train", t["batch_size"], shuffle=True, augment=t["augment"], generator=gen
        ):
            lr = lr_at(step, total, 0, t["lr"])
            for group in opt.param_groups:
                group["lr"] = lr

            def closure(x=x, y=y):
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), y)
                loss.backward()
                return loss

            loss = float(opt.step(closure).detach())
            step += 1
            eps.append(float(getattr(opt, "last_perturbation_norm", 0.0)))
            loss_sum += loss * y.shape[0]
            count += y.shape[0]
        train_loss, train_acc = evaluate(model, bundle.batches("train", 1024))
        eval_loss, eval_acc = evaluate(model, bundle.batches(split, 1024))
        row = (
            epoch + 1, lr, loss_sum / count, train_loss, train_acc, eval_loss, eval_acc,
            float(np.mean(eps)), max(eps), perturbed,
        )  # fmt: skip
        for k, v in zip(keys, row):
            curves[k].append(v)
        if hasattr(opt, "on_epoch_end"):
            opt.on_epoch_end(epoch)  # no method here switches on accuracy
    record = {
        "train_loss": train_loss,
        "train_acc": train_acc,
        "eval_loss": eval_loss,
        "eval_acc": eval_acc,
        "eval_split": split,
        "diverged": False,
        "epochs_run": len(curves["epoch"]),
        "steps": step,
        "num_clean_steps": int(getattr(opt, "num_clean_steps", 0)),
        "switched_at_epoch": getattr(opt, "switched_at_epoch", None),
        "n_train": bundle.num_train,
        "n_eval": bundle.num_val if split == "val" else bundle.num_test,
        "curves": curves,
    }
    return model, record


@pytest.mark.parametrize(
    ("method", "val_size"),
    [("sgd", None), ("rsam", None), ("eigensam", None), ("asam", 100), ("rsam-fixed", 100)],
)
def test_train_run_reproduces_the_former_table1_loop_bit_for_bit(method, val_size):
    """train_run is now a call of train.train: same numbers, curves and weights as before (CPU)."""
    config = table1.make_config(
        "digits-mlp", method, 3, epochs=2, train_subset=300, test_subset=100, val_size=val_size,
        method_overrides={"freq": 2} if method == "eigensam" else None,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # no deprecated optimizer keywords
        model, record = table1.train_run(config)
    ref_model, ref = _reference_train_run(config)
    record.pop("seconds")
    assert record == ref
    if method.startswith("rsam"):  # the SGD phase (sgd_epochs = 1 at 2 epochs), then RSAM
        assert record["curves"]["perturbed"] == [False, True] and record["switched_at_epoch"] == 1
    for (k, a), (_, b) in zip(model.state_dict().items(), ref_model.state_dict().items()):
        assert torch.equal(a, b), k


# ----------------------------------------------------------------------------- validation split


@pytest.fixture
def received(monkeypatch):
    """What the optimizer's on_epoch_end is told, per run: plain SGD that records it."""
    calls: list[list[float]] = []

    class RecordingSGD(torch.optim.SGD):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            calls.append([])

        def on_epoch_end(self, epoch, val_acc=None):
            calls[-1].append(val_acc)

    def build(name, model, params=None, config=None, **kwargs):
        c = {**(config or {}), **kwargs}
        return RecordingSGD(
            list(model.parameters()), lr=c["lr"], momentum=c["momentum"], weight_decay=0.0
        )

    monkeypatch.setattr(optim, "build_optimizer", build)
    return calls


def test_the_optimizer_never_sees_the_test_accuracy(received):
    """#18.2: final runs tell on_epoch_end nan, or the accuracy of a held-out training split."""
    common = dict(epochs=2, train_subset=300, test_subset=100)
    # A final run without a validation split: nan (before: the test accuracy).
    _, final = table1.train_run(table1.make_config("digits-mlp", "sgd", 0, **common))
    assert final["eval_split"] == "test" and len(received[-1]) == 2
    assert all(math.isnan(a) for a in received[-1]), received[-1]
    # A final run with a holdout: the held-out points' accuracy; the run still reports the test set.
    config = table1.make_config("digits-mlp", "sgd", 0, holdout=60, **common)
    assert config["data"] == {
        "train_subset": 300, "test_subset": 100, "val_size": 60, "eval_split": "test"
    }  # fmt: skip
    model, rec = table1.train_run(config)
    assert received[-1] == rec["curves"]["val_acc"]
    assert rec["eval_split"] == "test" and rec["curves"]["eval_acc"] != rec["curves"]["val_acc"]
    assert (rec["n_train"], rec["n_val"], rec["n_eval"]) == (240, 60, 100)
    bundle = table1.run_data(config)
    assert evaluate(model, bundle.batches("val", 1000))[1] == rec["val_acc"] == received[-1][-1]
    assert evaluate(model, bundle.batches("test", 1000))[1] == rec["eval_acc"]
    # A tuning run: its validation split is what it reports and what the optimizer sees.
    _, tune = table1.train_run(table1.make_config("digits-mlp", "sgd", 0, val_size=60, **common))
    assert tune["eval_split"] == "val" and received[-1] == tune["curves"]["eval_acc"]
    assert "val_acc" not in tune["curves"] and tune["n_eval"] == 60


def test_accuracy_switch_needs_a_validation_split():
    task = "tinyimagenet-resnet50"
    with pytest.raises(ValueError, match="switch_accuracy=0.3.*holdout"):
        table1.make_config(task, "rsam", 0)
    c = table1.make_config(task, "rsam", 0, holdout=10000)
    assert c["data"]["val_size"] == 10000 and c["data"]["eval_split"] == "test"
    assert table1.eval_split(c) == "test"
    assert table1.eval_split(table1.make_config(task, "rsam", 0, val_size=500)) == "val"
    # Other runs keep the config (and hash) they had: no eval_split key.
    assert "eval_split" not in table1.make_config(task, "sgd", 0)["data"]
    with pytest.raises(ValueError, match="not both"):
        table1.make_config(task, "rsam", 0, holdout=100, val_size=100)
    with pytest.raises(ValueError, match="holdout must be a positive int"):
        table1.make_config(task, "sgd", 0, holdout=0)
    # The profile's holdout reaches every method's final run, never a tuning run.
    prof = {
        "tasks": [task], "methods": ["sgd", "rsam"], "seeds": [0], "epochs": 2,
        "task_overrides": {task: {"holdout": 5000}},
        "tune": {"factors": [1.0], "val_size": 400, "seed": 0},
    }  # fmt: skip
    assert {c["data"]["val_size"] for c in table1.final_configs(prof, task)} == {5000}
    assert {c["data"]["val_size"] for c in table1.tune_configs(prof, task)} == {400}
    # The repository's paper profile has a validation split for Tiny ImageNet.
    paper = load_profile("rsam", "paper")
    for c in table1.final_configs(paper, task):
        assert c["data"]["val_size"] > 0 and table1.eval_split(c) == "test"


# ----------------------------------------------------------------------------- killed runs


def test_kill_during_the_weights_save_leaves_an_unfinished_run(tmp_path, monkeypatch):
    """#18.7a: metrics.json (the 'finished' mark) is written after weights.pt."""
    config = table1.make_config("digits-mlp", "sgd", 0, epochs=1, train_subset=200, test_subset=100)
    path = table1.run_dir(tmp_path, config)
    real_save = torch.save

    def killed(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"half a state dict")
        raise KeyboardInterrupt  # as if the process were killed inside the save

    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        table1.run(config, tmp_path)
    assert not (path / "metrics.json").exists() and not (path / "weights.pt").exists()
    assert not list(path.glob(".*.tmp"))
    assert table1.runs_table(tmp_path, [config]).empty
    monkeypatch.setattr(torch, "save", real_save)
    assert table1.run(config, tmp_path) == "done"  # the rerun trains it again
    assert (path / "weights.pt").is_file() and len(table1.runs_table(tmp_path, [config])) == 1
