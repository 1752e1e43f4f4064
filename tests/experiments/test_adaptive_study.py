"""Tests of renyilib.experiments.adaptive_study on tiny synthetic zoos (FCNN: seconds)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from renyilib.experiments import adaptive_study as study
from renyilib.experiments.io import read_json


def _settings(**over):
    s = study.default_measure_settings(
        "abalone-fcnn",
        restarts=3,
        sweep_restarts=2,
        batch_size=16,
        num_probes=2,
        lanczos_steps=4,
        renyi_samples=24,
        alphas=[0.5, 2.0],
        rho_sweep=[0.05],
    )
    s["baseline_settings"] = {
        **s["baseline_settings"],
        "sam": {"rho": 0.05, "m": 16, "steps": 2, "num_batches": 2},
        "asam": {"rho": 0.5, "m": 16, "steps": 2, "num_batches": 2},
        "lambda_max": {"max_steps": 5, "tol": 1e-2},
    }
    s.update(over)
    return s


def test_zoo_configs() -> None:
    seed = study.zoo_configs("cora-gat", "seed", 3)
    assert [c["seed"] for c in seed] == [0, 1, 2]
    assert all(c["lr"] == 0.236 and c["batch_size"] == 64 and c["min_epochs"] == 10 for c in seed)
    hp = study.zoo_configs("abalone-fcnn", "hparam", 20)
    combos = {(c["lr"], c["batch_size"], c["weight_decay"]) for c in hp}
    assert len(combos) == 18  # the whole grid, then it cycles
    assert {c["batch_size"] for c in hp} == {32, 64, 128}
    with pytest.raises(ValueError, match="task"):
        study.zoo_configs("mnist-mlp")
    with pytest.raises(ValueError, match="zoo"):
        study.zoo_configs("abalone-fcnn", "random")


def test_train_run_stopping_rule_and_determinism() -> None:
    data = study.load_task_data("abalone-fcnn", synthetic=True)
    (cfg,) = study.zoo_configs("abalone-fcnn", "seed", 1, synthetic=True, max_epochs=6)
    m1, r1 = study.train_run(cfg, data)
    m2, r2 = study.train_run(cfg, data)
    assert r1["epoch_losses"] == r2["epoch_losses"]
    losses = r1["epoch_losses"]
    assert 1 <= len(losses) <= 6 and r1["epochs"] == len(losses)
    # stopped by the rule exactly when the relative change first fell below 5%
    rel = [abs(b - a) / a for a, b in itertools.pairwise(losses)]
    if len(losses) < 6:
        assert rel[-1] < 0.05 and all(r >= 0.05 for r in rel[:-1])
    assert r1["gap"] == pytest.approx(r1["test_loss"] - r1["train_loss"])
    assert not m1.training


def test_run_measure_table_export(tmp_path: Path) -> None:
    cfgs = study.zoo_configs("abalone-fcnn", "seed", 4, synthetic=True, max_epochs=2)
    s = _settings()
    study.run_and_measure(cfgs, tmp_path / "zoo", s, progress=False)
    dirs = sorted((tmp_path / "zoo" / "abalone-fcnn").iterdir())
    assert len(dirs) == 4 and all((d / "metrics.json").is_file() for d in dirs)
    # resumable: a second call trains nothing and reads the cached measurements
    before = {d: (d / "weights.pt").stat().st_mtime_ns for d in dirs}
    study.run_and_measure(cfgs, tmp_path / "zoo", s, progress=False)
    assert before == {d: (d / "weights.pt").stat().st_mtime_ns for d in dirs}
    table = study.zoo_table(tmp_path / "zoo", "abalone-fcnn", s)
    assert len(table) == 4
    for col in (
        "adaptive",
        "adaptive_rho=0.05",
        "nonadaptive",
        "average",
        "trace",
        "pga:published",
        "min_sharpness",
        "min_sharpness_trace",
    ):
        assert col in table and np.isfinite(table[col]).all(), col
    # minimum sharpness: exact diagonal (HVP columns, MSE), at most the raw trace
    assert (table["min_sharpness"] <= table["min_sharpness_trace"] * (1 + 1e-9)).all()
    assert (table["min_sharpness_refused"].fillna("") == "").all()
    assert (table["adaptive"] >= 0).all()
    assert (table["train_seconds"] > 0).all() and (table["measure_seconds"] > 0).all()
    assert any(c.startswith("renyi:") for c in table)
    # exported table + provenance
    path = study.export_results(
        tmp_path / "zoo", "abalone-fcnn", s, dest=tmp_path / "res", command="test"
    )
    meta = read_json(tmp_path / "res" / "abalone-fcnn.meta.json")
    assert (
        meta["runs"] == 4 and meta["measure_settings"]["rho"] == 0.025 and meta["command"] == "test"
    )
    tables = study.load_tables(tmp_path / "res")
    assert list(tables) == ["abalone-fcnn"] and len(tables["abalone-fcnn"]) == 4
    pd.testing.assert_frame_equal(tables["abalone-fcnn"], pd.read_csv(path))
    with pytest.raises(ValueError, match="no measured runs"):
        study.export_results(tmp_path / "zoo", "cora-gat", s, dest=tmp_path / "res")


def _fake_tables(n: int = 12, seed: int = 0) -> dict[str, pd.DataFrame]:
    # the adaptive column is a noisy decreasing function of test loss: tau must be negative
    rng = np.random.default_rng(seed)
    rows = []
    for zoo in ("seed", "hparam"):
        test = rng.random(n)
        row = {
            "run": [f"{zoo}{i}" for i in range(n)],
            "zoo": zoo,
            "test_loss": test,
            "gap": test - 0.1,
            "train_loss": np.full(n, 0.1),
            "epochs": np.full(n, 3),
            "train_seconds": np.ones(n),
            "adaptive": -test + 0.01 * rng.random(n),
            "adaptive_rho=0.05": test,
            "renyi:all:0.5": test + 0.1 * rng.random(n),
            "renyi:all:2": rng.random(n),
            "trace": rng.random(n),
            "pga:lr_steps": test,
            "pga:inverted_clamp": -test,
            "pga:published": -test,
        }
        rows.append(pd.DataFrame(row))
    return {"abalone-fcnn": pd.concat(rows, ignore_index=True)}


def test_analysis_functions() -> None:
    tables = _fake_tables()
    head = study.headline(tables)
    assert set(head["zoo"]) == {"seed", "hparam"}
    assert (head["tau"] < -0.9).all() and (head["replication_tau"] == -0.311).all()
    allm = study.all_measures(tables)
    row = allm[(allm["measure"] == "adaptive_rho=0.05") & (allm["target"] == "test_loss")]
    assert np.allclose(row["tau"], 1.0)
    sweep = study.rho_sweep(tables)
    assert set(sweep["rho_over_paper"]) == {1.0, 2.0}
    dev = study.deviations(tables)
    assert dev.set_index("measure").loc["pga:inverted_clamp", "tau"] == pytest.approx(-1.0)
    held = study.renyi_heldout(tables, n_splits=20)
    best = held[(held["zoo"] == "seed") & (held["block"] == "all")]
    assert best["alpha_mode"].iloc[0] == 0.5 and best["tau_heldout_median"].iloc[0] > 0.5
    text = study.verdict(head[head["zoo"] == "seed"])
    assert "negative" in text and "same sign" in text
    comp = study.comparison_verdict(head, held, allm)
    assert "abalone-fcnn (seed zoo" in comp and "Rényi block all" in comp
    assert len(study.zoo_summary(tables)) == 2
    # a zoo too small to split is left out of the held-out selection, not an error
    small = {"abalone-fcnn": tables["abalone-fcnn"].groupby("zoo").head(3)}
    assert study.renyi_heldout(small, n_splits=5).empty
    tiny = study.headline({"abalone-fcnn": small["abalone-fcnn"].head(2)})
    assert np.isnan(tiny["tau"]).all()
    assert "τ not computed (2 models" in study.verdict(tiny)
    assert "too few models" in study.comparison_verdict(tiny, held, allm)


def test_min_sharpness_per_model_family(tmp_path: Path) -> None:
    """LeNet-5 is measured BatchNorm-folded; the GAT is refused with a reason, not a number."""
    pytest.importorskip("torch_geometric")
    s = _settings(renyi=False, deviations=False, baselines=[])
    out = {}
    for task in ("fmnist-lenet5", "cora-gat"):
        (cfg,) = study.zoo_configs(task, "seed", 1, synthetic=True, max_epochs=1, min_epochs=1)
        (d,) = study.run_zoo([cfg], tmp_path, progress=False)
        out[task] = study.measure_min_sharpness(d, s)
        cached = study.measure_min_sharpness(d, s)
        assert str(sorted(cached.items())) == str(sorted(out[task].items()))  # NaN-safe
    lenet, gat = out["fmnist-lenet5"], out["cora-gat"]
    assert (
        lenet["min_sharpness_network"] == "BatchNorm folded"
        and lenet["min_sharpness_refused"] == ""
    )
    assert 0 < lenet["min_sharpness"] <= lenet["min_sharpness_trace"]
    assert np.isnan(gat["min_sharpness"]) and gat["min_sharpness_refused"]


def test_cli_adaptive_zoo(tmp_path: Path, capsys) -> None:
    """``renyilib zoo run / status / measure / export`` on an adaptive-sharpness task."""
    from renyilib.experiments.cli import main

    common = ["--task", "abalone-fcnn", "--size", "2", "--synthetic", "--out", str(tmp_path)]
    assert main(["zoo", "status", *common]) == 1  # nothing trained yet
    assert "missing 2" in capsys.readouterr().out
    assert main(["zoo", "run", *common, "--index", "1", "--no-progress"]) == 0
    assert main(["zoo", "status", *common]) == 1
    assert main(["zoo", "run", *common, "--jobs", "2", "--no-progress"]) == 0
    assert main(["zoo", "status", *common]) == 0
    assert "done 2" in capsys.readouterr().out
    dest = tmp_path / "res"
    assert main(["zoo", "measure", *common, "--shard", "0/2", "--no-progress"]) == 0
    assert main(["zoo", "export", *common, "--dest", str(dest)]) == 0
    table = pd.read_csv(dest / "abalone-fcnn.csv")
    assert len(table) == 2 and np.isfinite(table["min_sharpness"]).all()
    assert "renyilib zoo export" in read_json(dest / "abalone-fcnn.meta.json")["command"]
    assert main(["zoo", "run", "--task", "abalone-fcnn", "digits-cnn", "--out", str(tmp_path)]) == 2
    assert main(["zoo", "run", *common, "--index", "7"]) == 2


def test_zoo_sizes_sentence() -> None:
    summary = pd.DataFrame(
        {"task": ["abalone-fcnn", "fmnist-lenet5"], "zoo": ["seed", "hparam"], "models": [50, 17]}
    )
    text = study.zoo_sizes_sentence(summary)
    assert "1 zoo(s) have 50 models: abalone-fcnn seed (50)" in text
    assert "fmnist-lenet5 hparam (17)" in text.split(";")[1]
    assert study.zoo_sizes_sentence(summary.iloc[:0]) == "No zoo was measured."
