"""Tests of renyilib.experiments.rsam_study: Table 1 beside the paper, paired differences, closed forms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from renyilib.experiments import rsam_study as rs
from renyilib.experiments.table1 import METHOD_LABELS, load_paper_table

ROOT = Path(__file__).resolve().parents[2]


def test_accuracy_cell():
    assert rs.accuracy_cell(92.681, 0.254) == "92.68 ± 0.25"
    assert rs.accuracy_cell(float("nan"), 0.16) == "—"
    assert rs.accuracy_cell(75.0, float("nan")) == "75.00"


def test_table1_beside_paper_layout_and_cells():
    methods = ["sgd", "sam", "asam", "rsam", "rsam-fixed"]
    summary = pd.DataFrame(
        {
            "task": "digits-cnn",
            "method": methods,
            "label": [METHOD_LABELS[m] for m in methods],
            "mean": [90.0, 91.0, 92.0, 93.0, 94.0],
            "stderr": [0.1, 0.2, 0.3, 0.4, 0.5],
        }
    )
    paper = load_paper_table(ROOT / "book" / "reference" / "paper_table1.csv")
    t = rs.table1_beside_paper(summary, paper, methods)
    assert list(t.columns) == [METHOD_LABELS[m] for m in methods]
    assert t.index[0] == "ours: digits-cnn" and t.loc["ours: digits-cnn", "RSAM"] == "93.00 ± 0.40"
    assert t.loc["paper: CIFAR10 ResNet20", "SGD"] == "92.68 ± 0.25"
    assert t.loc["paper: CIFAR10 ResNet20", "ASAM"] == "—"  # the OCR lost this cell
    assert (t[METHOD_LABELS["rsam-fixed"]].iloc[1:] == "—").all()  # not in the paper
    n_paper = paper.groupby(["dataset", "model"]).ngroups
    assert len(t) == 1 + n_paper and not t.isna().any().any()


def test_paired_difference_and_eps_numbers():
    acc = pd.DataFrame({"a": [1.0, 2.0, 4.0], "b": [0.0, 1.0, 2.0]})
    d, se = rs.paired_difference(acc, "a", "b")
    assert d == pytest.approx(4 / 3) and se == pytest.approx(np.std([1, 1, 2], ddof=1) / np.sqrt(3))
    eps = pd.DataFrame(
        {
            "method": ["rsam"] * 3 + ["rsam-fixed"] * 2,
            "epoch": [1, 2, 3, 2, 3],
            "eps_mean": [0.0, 0.5, 2.0, 0.04, 0.06],
        }
    )
    n = rs.eps_numbers(eps)
    assert n["rsam_eps_first"] == "0.5" and n["rsam_eps_growth"] == "4.0"
    assert n["rsam_eps_verb"] == "grew" and n["fixed_eps_range"] == "0.04–0.06"


def test_quadratic_sgd_matches_the_closed_form():
    out = rs.quadratic_runs(alpha=2.0, rho=0.05, steps=30, lr=0.1, k=5)
    a = np.array([0.5, 1.0, 2.0, 4.0])
    t = np.arange(1, 31)[:, None]
    g = a * (1 - 0.1 * a) ** t  # gradient after t plain SGD steps from theta = 1
    r2 = (g**4).sum(1) / (g**2).sum(1) ** 2
    np.testing.assert_allclose(out["runs"]["SGD"][0], r2, rtol=1e-12)
    assert np.all(out["runs"]["SGD"][1] == 0)  # rho = 0: no perturbation
    assert out["numbers"]["quad_k"] == 6 and out["numbers"]["quad_sgd_k"] == f"{r2[5]:.3f}"
    assert np.all(out["runs"]["RSAM fixed radius"][1] > 0)


def test_sharpness_numbers_synthetic():
    sharp = pd.DataFrame(
        {
            "method": ["sgd", "sam", "rsam"] * 2,
            "seed": [0, 0, 0, 1, 1, 1],
            "alpha": 1.2,
            "sharpness": [-1.0, -1.5, -2.0, -1.2, -1.6, -2.4],
            "slq_stderr": 0.1,
        }
    )
    runs = pd.DataFrame(
        {"task": "t", "method": ["sgd", "sam", "rsam"], "train_loss": [0.1, 0.2, 0.3]}
    )
    n = rs.sharpness_numbers(sharp, runs, "t", 1.2, ["sgd", "sam", "rsam"])
    assert n["sharp_rsam_minus_sgd"] == "-1.100 ± 0.100"
    assert n["sharp_lower_than_sgd"] == "lower" and n["sharp_lower_than_sam"] == "lower"
    assert n["train_loss_by_method"] == "SGD 0.1, SAM 0.2, RSAM 0.3"


def test_cifar_extra_missing_and_committed(tmp_path):
    extra = {"width": 0.25, "tune": {"factors": [0.5, 1.0], "val_size": 400}}
    missing = rs.cifar_extra(tmp_path / "none.csv", extra)
    assert not missing["available"]
    assert (
        "python -m renyilib.experiments.table1 --profile cpu --extra --csv"
        in (missing["numbers"]["c10_summary"])
    )
    csv = ROOT / "data" / "results" / "rsam_cifar10_cpu.csv"
    if not csv.is_file():
        pytest.skip("no committed CIFAR-10 run")
    got = rs.cifar_extra(csv, extra)
    assert got["available"] and got["numbers"]["cifar_csv_exists"] == "is in"
    final = pd.read_csv(csv)
    final = final[final["stage"] == "final"]
    for m in set(final["method"]) - {"sgd"}:
        p = final.pivot(index="seed", columns="method", values="acc")
        assert got["numbers"][f"c10_{m}_minus_sgd"].startswith(f"{(p[m] - p['sgd']).mean():+.2f}")
    if got["tuning"] is not None:
        chosen = got["tuning"][got["tuning"]["chosen"]]
        assert chosen["method"].is_unique and "sgd" not in set(chosen["method"])
