"""Tests of renyilib.experiments.paper_cost (the committed ResNet-18 cost benchmark)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from renyilib.experiments.paper_cost import resnet_cost, resnet_cost_table

ROOT = Path(__file__).resolve().parents[2]


def test_resnet_cost_reads_the_committed_benchmark() -> None:
    res = resnet_cost(ROOT)
    assert res is not None
    raw = pd.read_csv(ROOT / "benchmarks" / "results" / "resnet.csv")
    t = res["table"]
    # one row per block of the width-0.125 run, both widths side by side, forward order kept
    small = raw[raw["part"] == "per-block"]
    assert list(t["block"]) == list(small["block"])
    assert t["dim (w0.125)"].tolist() == small["dim"].tolist()
    assert (t["hvp_per_gradient (full)"] > 0).all()
    cost = res["meta"]["paper_cost"]
    assert (
        res["numbers"]["resnet_cpu_hours_full"]
        == f"{cost['full_width_cpu_hours_with_overhead']:.0f}"
    )
    ratio = (t["hvp_s (w0.125)"] / t["gradient_s (w0.125)"]).median()
    assert float(res["numbers"]["resnet_ratio_small"]) == pytest.approx(ratio, abs=0.006)


def test_resnet_cost_missing_files_and_bad_table(tmp_path: Path) -> None:
    assert resnet_cost(tmp_path) is None
    with pytest.raises(ValueError, match="missing columns"):
        resnet_cost_table(pd.DataFrame({"part": ["per-block"]}))
    with pytest.raises(ValueError, match="no 'full width' rows"):
        resnet_cost_table(
            pd.DataFrame(
                {
                    "part": ["per-block"],
                    "block": ["a"],
                    "dim": [1],
                    "gradient_s": [1.0],
                    "hvp_s": [2.0],
                    "hvp_per_gradient": [2.0],
                    "graph_mb": [1.0],
                }
            )
        )
