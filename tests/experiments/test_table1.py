"""Tests for renyilib.experiments.table1: the Table-1 runner (configs, tuning rule, resumability, summaries)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from renyilib.experiments import table1
from renyilib.experiments.io import read_json


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
