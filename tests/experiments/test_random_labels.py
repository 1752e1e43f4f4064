"""The randomized-label study: label shuffling, the networks, one run, resuming, Kendall's tau."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

import renyilib.experiments.random_labels as rl
from renyilib.rescaling import layer_parameters, rescale_layers

TINY = {
    "epochs": 1,
    "width": 0.25,
    "train_subset": 60,
    "test_subset": 30,
    "num_probes": 2,
    "lanczos_steps": 4,
    "alphas": [1.0, 2.0],
}


def test_shuffle_labels():
    y = torch.arange(1000) % 10
    assert torch.equal(rl.shuffle_labels(y, 0.0, 0), y)
    for ratio in (0.3, 1.0):
        z = rl.shuffle_labels(y, ratio, seed=1)
        assert torch.equal(torch.bincount(z), torch.bincount(y))  # a permutation of the labels
        changed = float((z != y).float().mean())
        # about ratio * 9/10 of the labels change (a shuffled label stays with prob. 1/10)
        assert abs(changed - 0.9 * ratio) < 0.05
        assert torch.equal(z, rl.shuffle_labels(y, ratio, seed=1))
        assert not torch.equal(z, rl.shuffle_labels(y, ratio, seed=2))
    with pytest.raises(ValueError, match="ratio"):
        rl.shuffle_labels(y, 1.5, 0)
    with pytest.raises(TypeError, match="labels"):
        rl.shuffle_labels(y.reshape(10, 100), 0.5, 0)


@pytest.mark.parametrize("name, params", [("lenet", 20218), ("mlp", 26122)])
def test_networks_are_rescaling_invariant(name, params):
    model = rl.build_study_model(name, seed=0).double().eval()
    assert sum(p.numel() for p in model.parameters()) == params
    x = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    layers = layer_parameters(model, x[:1])
    other = rescale_layers(model, np.exp(np.linspace(-1, 1, len(layers))), layers)
    with torch.no_grad():
        torch.testing.assert_close(other(x), model(x), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="model"):
        rl.build_study_model("resnet", 0)


def test_run_one_record():
    rec = rl.run_one("lenet", 0.5, 0, TINY)
    assert rec["model"] == "lenet" and rec["ratio"] == 0.5
    assert rec["gap"] == pytest.approx(rec["train_acc"] - rec["test_acc"])
    assert rec["loss_gap"] == pytest.approx(rec["test_loss"] - rec["train_loss"])
    assert 0 < rec["min_sharpness"] <= rec["trace"]
    assert rec["ms_converged"]
    assert np.prod(rec["scales"]) == pytest.approx(1.0)
    for a in ("1", "2"):
        assert np.isfinite(rec[f"renyi_{a}"]) and rec[f"renyi_{a}"] <= 0  # -H_alpha <= 0
    assert rec["key"] == rl.config_hash(rec["config"])


def test_study_resumes_from_its_records(tmp_path, monkeypatch):
    df = rl.random_label_study(["mlp"], [0.0, 1.0], [0], TINY, cache=tmp_path, progress=False)
    assert list(df["ratio"]) == [0.0, 1.0] and len(list(tmp_path.glob("*.json"))) == 2

    def fail(*args, **kwargs):
        raise AssertionError("a finished run was recomputed")

    monkeypatch.setattr(rl, "run_one", fail)
    again = rl.random_label_study(["mlp"], [1.0, 0.0], [0], TINY, cache=tmp_path, progress=False)
    pd.testing.assert_frame_equal(df, again)
    with pytest.raises(ValueError, match="models"):
        rl.random_label_study(["vgg"], [0.0], [0], TINY, cache=False)
    with pytest.raises(ValueError, match="ratios"):
        rl.random_label_study(["mlp"], [2.0], [0], TINY, cache=False)


def test_write_and_read_results(tmp_path):
    df = pd.DataFrame({"model": ["mlp"], "ratio": [0.5], "gap": [0.1]})
    rl.write_results(df, tmp_path, {"profile": "smoke"})
    back, meta = rl.read_results(tmp_path)
    pd.testing.assert_frame_equal(back, df)
    assert meta["profile"] == "smoke" and meta["rows"] == 1 and "code_version" in meta


def test_kendall_table_matches_scipy():
    rng = np.random.default_rng(0)
    n = 12
    df = pd.DataFrame(
        {
            "model": ["lenet"] * n + ["mlp"] * n,
            "gap": rng.uniform(0, 1, 2 * n),
            "min_sharpness": rng.uniform(0, 1, 2 * n),
            "trace": rng.uniform(0, 1, 2 * n),
            "renyi_1": rng.uniform(-5, 0, 2 * n),
        }
    )
    table = rl.kendall_table(df).set_index(["model", "measure"])
    assert set(table.index.get_level_values(0)) == {"lenet", "mlp", "both"}
    for model, sub in [("lenet", df[:n]), ("mlp", df[n:]), ("both", df)]:
        for measure in ("min_sharpness", "trace", "renyi_1"):
            ref = stats.kendalltau(sub[measure], sub["gap"]).statistic
            assert table.loc[(model, measure), "tau"] == pytest.approx(ref, abs=1e-12)
            assert table.loc[(model, measure), "n"] == len(sub)
    with pytest.raises(KeyError, match="gap"):
        rl.kendall_table(df.drop(columns="gap"))
