"""Tests of renyilib.experiments.estimator_study: exact spectra, SLQ errors and the printed-Algorithm-1 shift."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from renyilib.experiments import estimator_study as es
from renyilib.hessian import hessian_operator
from renyilib.renyi import PAPER_ALPHAS, renyi_entropy

ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "width": 0.25,
    "epochs": 1,
    "samples": 32,
    "probes": 4,
    "steps": 6,
    "sweep_blocks": ["fc.weight"],
    "sweep_probes": [2, 4],
    "sweep_steps": [3, 6],
    "live_block": "fc.weight",
    "live_configs": [[4, 6, 0]],
    "seed": 0,
}


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    return es.train_model(TINY)


@pytest.fixture(scope="module")
def exact(trained):
    return es.exact_spectra(trained)[0]


def test_exact_spectra_match_each_block_built_on_its_own(trained, exact):
    assert list(exact) == list(trained.blocks) and list(exact)[-1] == "all"
    assert len(exact["all"]) == trained.num_params
    x, y = trained.data
    model64 = trained.model.double()
    try:
        h = hessian_operator(model64, nn.CrossEntropyLoss(), (x.double(), y), "fc.weight")
        direct = np.linalg.eigvalsh(h.to_dense().numpy())
    finally:
        trained.model.float()
    np.testing.assert_allclose(exact["fc.weight"], direct, atol=1e-12 * np.abs(direct).max())


def test_layer_blocks_are_psd_and_summary(exact):
    summary = es.spectrum_summary(exact)
    # a ReLU network is piecewise linear in one weight tensor: its own block is Gauss-Newton (PSD)
    assert (summary.drop(index="all")["negative mass"] < 1e-8).all()
    assert summary.loc["all", "dim"] == len(exact["all"])
    assert summary.loc["fc.weight", "H_2"] == pytest.approx(renyi_entropy(exact["fc.weight"], 2.0))
    assert (summary["H_0.5"] <= summary["log n"] + 1e-12).all()


def test_renyi_errors_zero_for_exact_estimates(exact):
    rows = [
        {"block": b, "alpha": a, "entropy": renyi_entropy(lam, a), "stderr": 1.0}
        for b, lam in exact.items()
        for a in PAPER_ALPHAS
    ]
    err = es.renyi_errors(exact, pd.DataFrame(rows))
    assert len(err) == len(exact) * len(PAPER_ALPHAS)
    assert err["rel_error"].max() < 1e-12 and err["error_in_se"].max() < 1e-12


def test_slq_shift_sweep_and_live(trained, exact):
    df, quads, _ = es.slq_profile(trained, TINY)
    shift = es.paper_shift(quads)
    # Algorithm 1 as printed is H_alpha + log(l/n), exactly, for the same quadrature
    np.testing.assert_allclose(shift["difference"], shift["log(l/n)"], atol=1e-10)
    sweep = es.probe_step_sweep(trained, exact, ["fc.weight"], [2, 4], [3, 6], seed=0)
    assert len(sweep) == 2 * 2 * 5 and (sweep["rms_rel_error"] >= 0).all()
    nums = es.sweep_numbers(sweep, ["fc.weight"], [2, 4], [3, 6])
    assert nums["sweep_m15"] == 6 and nums["sweep_lmax"] == 4 and nums["sweep_lmin"] == 2
    live = es.live_measurement(trained, exact, "fc.weight", [[4, 6, 0]], seed=0)
    assert live["exact"].tolist() == [False, True]
    # the exact route differs from the float64 reference only by float32 rounding of the
    # model's own Hessian (relative ~1e-5..1e-4)
    assert live.iloc[-1]["max err (%)"] < 0.05


def test_gaussian_density_integrates_to_one():
    lam = np.array([-1.0, 0.0, 0.5, 3.0])
    grid = np.linspace(-3, 5, 4001)
    d = es.gaussian_density(lam, grid, 0.1)
    assert np.trapezoid(d, grid) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="sigma"):
        es.gaussian_density(lam, grid, 0.0)


def test_frontier_results_missing_and_committed(tmp_path):
    assert es.frontier_results(tmp_path) is None
    got = es.frontier_results(ROOT)
    if got is None:
        pytest.skip("benchmarks/results/frontier.csv not committed")
    assert got["numbers"]["bench_verdict"] in ("met", "not met")
    assert {"route", "block", "seconds", "error"} <= set(got["table"].columns)
    assert set(es.FRONTIER_KEYS) <= set(got["numbers"])


def _write_frontier(root: Path, table: pd.DataFrame, summary: dict) -> None:
    import json

    out = root / "benchmarks" / "results"
    out.mkdir(parents=True)
    table.to_csv(out / "frontier.csv", index=False)
    meta = {
        "date_utc": "2026-01-01 00:00",
        "machine": "x86_64",
        "cpu_count": 2,
        "torch_threads": 1,
        "torch": "2.x",
        "code_version": "0.1.0+gabc",
        "summary": summary,
    }
    (out / "frontier.meta.json").write_text(json.dumps(meta))


def _route_summary(reached, confirmed):
    return {
        "blocks_reached": reached,
        "confirmed_seconds": confirmed,
        "sweep_seconds": confirmed,
        "confirmed_max_error": 0.01,
        "max_swept_seconds": 9.0,
        "all_blocks": len(reached) == 2,
    }


def test_frontier_results_three_routes(tmp_path):
    rows = [
        (route, b, sec, err, src)
        for route, b, sec, err, src in [
            ("renyilib", "a", 1.0, 0.01, "measured"),
            ("renyilib", "b", 2.0, 0.015, "measured"),
            ("renyilib", "a", 1.1, 0.01, "confirm"),
            ("renyilib", "b", 1.9, 0.012, "confirm"),
            ("pyhessian", "a", 5.0, 0.03, "measured"),
            ("pyhessian", "b", 6.0, 0.025, "measured"),
            ("curvlinops", "a", 4.0, 0.015, "measured"),
            ("curvlinops", "b", 8.0, 0.05, "measured"),
            ("curvlinops", "a", 4.2, 0.016, "confirm"),
        ]
    ]
    table = pd.DataFrame(rows, columns=["route", "block", "seconds", "error", "time_source"])
    summary = {
        "target": 0.02,
        "blocks": ["a", "b"],
        "routes": ["renyilib", "pyhessian", "curvlinops"],
        "renyilib": _route_summary(["a", "b"], 3.0),
        "pyhessian": _route_summary([], 0.0),
        "curvlinops": _route_summary(["a"], 4.2),
        "speedups": {
            "pyhessian": {"speedup": 11 / 3, "speedup_kind": "lower bound (pyhessian ...)"},
            "curvlinops": {"speedup": 12.2 / 3, "speedup_kind": "lower bound (curvlinops ...)"},
        },
        "speedup": 11 / 3,
        "speedup_kind": "lower bound (pyhessian ...)",
    }
    _write_frontier(tmp_path, table, summary)
    got = es.frontier_results(tmp_path)
    num = got["numbers"]
    assert set(es.FRONTIER_KEYS) <= set(num)
    assert num["bench_speedup"] == "3.7×" and num["bench_verdict"] == "met"
    assert num["bench_curvlinops_speedup"] == "4.1×"
    assert num["bench_curvlinops_speedup_kind"].startswith("lower bound (curvlinops")
    assert num["bench_renyilib_s"] == "on 2 of 2 blocks in 3.0 s (confirmed)"
    # curvlinops reached a only; its best sweep error on b is 5.0 %
    assert num["bench_curvlinops_s"] == (
        "on 1 of 2 blocks in 4.2 s (confirmed); its smallest error in the sweep elsewhere was "
        "5.0 % (b)"
    )
    assert num["bench_pyhessian_s"].startswith("on 0 of 2 blocks; its smallest error")
    assert "2.5 % (b)" in num["bench_pyhessian_s"]
    # the Ritz variant was not in this run
    assert num["bench_curvlinops_ritz_s"].startswith("not measured")
    assert num["bench_curvlinops_ritz_speedup"].startswith("not measured")


def test_frontier_results_reads_a_pyhessian_only_summary(tmp_path):
    table = pd.DataFrame(
        [("renyilib", "a", 1.0, 0.01, "confirm"), ("pyhessian", "a", 2.5, 0.01, "confirm")],
        columns=["route", "block", "seconds", "error", "time_source"],
    )
    summary = {
        "target": 0.02,
        "blocks": ["a"],
        "renyilib": _route_summary(["a"], 1.0),
        "pyhessian": _route_summary(["a"], 2.5),
        "speedup": 2.5,
        "speedup_kind": "measured",
    }
    _write_frontier(tmp_path, table, summary)
    num = es.frontier_results(tmp_path)["numbers"]
    assert num["bench_speedup"] == "2.5×" and num["bench_verdict"] == "not met"
    assert num["bench_curvlinops_s"].startswith("not measured")
