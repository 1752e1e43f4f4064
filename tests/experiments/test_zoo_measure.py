"""Tests of renyilib.experiments.zoo_measure: measuring a tiny zoo, caching, exports."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from renyilib.statistics import alpha_sweep, correlation_table


def _tiny_zoo(out):
    """Six 2-epoch digits MLP runs (width 0.25) trained through the zoo runner."""
    from renyilib.experiments import zoo
    from renyilib.experiments.train import TrainConfig

    configs = []
    for lr in (0.01, 0.1):
        for wd in (0.0, 1e-4, 1e-3):
            tc = TrainConfig(
                optimizer="sgd",
                lr=lr,
                batch_size=32,
                weight_decay=wd,
                epochs=2,
                warmup_epochs=0,
                augment=False,
            )
            configs.append(
                {
                    "task": "digits-mlp",
                    "dataset": "digits",
                    "model": "mlp",
                    "model_kwargs": {
                        "num_classes": 10,
                        "in_channels": 1,
                        "image_size": 8,
                        "width": 0.25,
                        "options": {},
                    },
                    "data": {"train_subset": 200, "test_subset": 100, "seed": 0},
                    "train": tc.to_dict(),
                }
            )
    counts = zoo.run_zoo(configs, out, progress=False)
    assert counts["failed"] == 0
    return configs


def test_measure_zoo_end_to_end_and_cached(tmp_path):
    from renyilib.experiments.zoo_measure import measure_zoo
    from renyilib.statistics import spectral_types

    _tiny_zoo(tmp_path)
    renyi = {"num_probes": 3, "lanczos_steps": 5, "alphas": [0.5, 1.5, 2.0], "subset": 60}
    base = {
        "which": ["param_norm", "fisher_rao", "sam"],
        "settings": {"sam": {"m": 30, "steps": 2}},
        "subset": 60,
    }
    res = measure_zoo(tmp_path, "digits-mlp", renyi, base, progress=False)
    prof, bl = res["profiles"], res["baselines"]
    # 6 runs × (3 layers + all) × 3 α
    assert len(prof) == 6 * 4 * 3 and set(prof["block"]) == {
        "net.1.weight",
        "net.3.weight",
        "net.5.weight",
        "all",
    }
    assert len(bl) == 6 and {"param_norm", "fisher_rao", "sam", "trace", "gap"} <= set(bl.columns)
    assert (res["cost"]["renyi_matvecs"] > 0).all()
    # cached: a second call reads the same numbers back without recomputing
    files = sorted(tmp_path.glob("digits-mlp/*/measures/*.json"))
    mtimes = [f.stat().st_mtime_ns for f in files]
    again = measure_zoo(tmp_path, "digits-mlp", renyi, base, progress=False)
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    pd.testing.assert_frame_equal(again["profiles"], prof)
    # the analysis runs on the tables
    sweep = alpha_sweep(prof, by=["task", "block"])
    assert len(sweep) == 4 * 3
    tab = correlation_table(bl, ["param_norm", "fisher_rao", "sam", "trace"], by=["task"])
    assert tab["n"].eq(6).all()
    types = spectral_types(res["quadratures"])
    assert len(types) == 6 * 4 and set(types["type"]) <= {"multi-cluster", "uniform"}


def test_measure_settings_task_override_and_export_errors(tmp_path):
    from renyilib.experiments.zoo_measure import export_measurements, measure_settings

    prof = {
        "zoo_profile": "cpu",
        "renyi": {"num_probes": 10},
        "baselines": {"which": ["param_norm"]},
        "task_settings": {"cifar10-resnet18": {"renyi": {"num_probes": 5, "blocks": ["all"]}}},
    }
    s = measure_settings(prof, "cifar10-resnet18")
    assert s["renyi"] == {"num_probes": 5, "blocks": ["all"]} and s["zoo_profile"] == "cpu"
    assert "task_settings" not in s and s["task"] == "cifar10-resnet18"
    assert measure_settings(prof, "digits-cnn")["renyi"] == {"num_probes": 10}
    # the repository's cpu profile measures the CIFAR zoo on a block list
    cifar = measure_settings("cpu", "cifar10-resnet18")
    assert cifar["renyi"]["blocks"][-1] == "all"
    empty = {"profiles": pd.DataFrame(), "baselines": pd.DataFrame(), "cost": pd.DataFrame()}
    with pytest.raises(ValueError, match="res: no measured run"):
        export_measurements(empty, tmp_path)


def test_renyi_block_list_changes_cache_key_only_when_given():
    from renyilib.experiments.zoo_measure import _renyi_config

    assert "blocks" not in _renyi_config({"num_probes": 3})
    assert "blocks" not in _renyi_config({"num_probes": 3, "blocks": "both"})
    assert _renyi_config({"blocks": ["fc.weight", "all"]})["blocks"] == ["fc.weight", "all"]


def _dense_with_spectrum(eigs, seed=0):
    gen = torch.Generator().manual_seed(seed)
    n = len(eigs)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return Q @ torch.diag(torch.as_tensor(eigs, dtype=torch.float64)) @ Q.T


def test_quadratures_table_round_trip_through_csv(tmp_path):
    from renyilib.experiments.zoo_measure import quadratures_from_table, quadratures_table
    from renyilib.lanczos import slq
    from renyilib.statistics import spectral_types

    A = _dense_with_spectrum(np.r_[np.linspace(0.1, 1.0, 30), 5.0, 9.0])
    quads = {
        ("r1", "all"): slq(A, num_probes=3, lanczos_steps=6, seed=0),
        ("r1", "fc"): slq(A, num_probes=2, lanczos_steps=40, seed=1),  # breaks down: padded
        ("r2", "all"): slq(A, num_probes=2, lanczos_steps=5, seed=2, deflate=2),
    }
    table = quadratures_table(quads)
    table.to_csv(tmp_path / "q.csv", index=False)
    back = quadratures_from_table(pd.read_csv(tmp_path / "q.csv"))
    assert list(back) == list(quads)
    for key, q in quads.items():
        b = back[key]
        np.testing.assert_array_equal(b.nodes, q.nodes)
        np.testing.assert_array_equal(b.weights, q.weights)
        np.testing.assert_array_equal(b.exact_nodes, q.exact_nodes)
        assert (b.dim, b.num_probes, b.lanczos_steps) == (q.dim, q.num_probes, q.lanczos_steps)
        for a in (0.5, 1.0, 2.0):
            assert b.renyi_entropy(a).value == q.renyi_entropy(a).value
    assert len(spectral_types(back)) == 3
    with pytest.raises(ValueError, match="not a multiple of num_probes"):
        quadratures_from_table(table.drop(index=0))
    with pytest.raises(KeyError, match="table lacks columns"):
        quadratures_from_table(table.drop(columns=["node"]))
