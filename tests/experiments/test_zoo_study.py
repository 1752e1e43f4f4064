"""Tests of renyilib.experiments.zoo_study: the task and grid tables and the convergence verdict."""

from __future__ import annotations

import pandas as pd
import pytest

from renyilib.experiments import zoo
from renyilib.experiments import zoo_study as zs
from renyilib.experiments.models import build_model, count_parameters


def test_task_table_counts_parameters_at_the_profile_width():
    t = zs.task_table("cpu", ["digits-cnn"])
    assert set(zoo.TASKS) == set(t.index)
    task = zoo.TASKS["cifar10-resnet18"]
    width = zoo.profile_settings(task.name, "cpu")["width"]
    model = build_model(
        task.model,
        task.num_classes,
        in_channels=task.in_channels,
        width=width,
        image_size=task.image_size,
    )
    assert t.loc["cifar10-resnet18", "parameters (cpu)"] == count_parameters(model)
    assert t.loc["digits-cnn", "trained here"] and not t.loc["digits-mlp", "trained here"]


def test_grid_rows_match_the_grids():
    row = zs.grid_row("digits-cnn", "smoke")
    assert row["runs"] == len(zoo.grid("digits-cnn", "smoke"))
    s = zoo.profile_settings("digits-cnn", "smoke")
    assert row["sgd lr"] == str(s["grid"]["sgd"]["lr"]) and row["epochs"] == s["epochs"]
    table = zs.grid_table([("digits-cnn", "smoke"), ("cifar10-resnet18", "paper")])
    assert table.columns.tolist() == [("smoke", "digits-cnn"), ("paper", "cifar10-resnet18")]
    assert table.loc["runs", ("paper", "cifar10-resnet18")] == len(
        zoo.grid("cifar10-resnet18", "paper")
    )


def test_convergence_table_and_summary():
    runs = pd.DataFrame(
        {
            "task": ["a", "a", "b"],
            "run": ["r1", "r2", "r3"],
            "optimizer": ["sgd", "adam", "sgd"],
            "lr": [0.1, 0.01, 0.1],
            "converged": [True, False, True],
            "diverged": [False, False, False],
            "train_acc": [1.0, 0.9, 1.0],
            "train_loss": [0.01, 0.2, 0.02],
            "test_acc": [0.9, 0.8, 0.95],
            "gap": [0.3, 0.1, 0.2],
            "seconds": [60.0, 120.0, 30.0],
        }
    )
    conv, verdict = zs.convergence_table(runs)
    assert verdict == "1 of 3 runs missed the criterion"
    assert conv.loc["a", "worst_train_loss"] == pytest.approx(0.2)
    assert zs.convergence_table(runs.assign(converged=True))[1] == "every run met the criterion"
    summary = zs.run_summary(runs)
    assert summary.loc[("a", "adam", 0.01), "minutes"] == pytest.approx(2.0)
