"""Tests of renyilib.experiments.cifar_study on the committed CIFAR-10 tables and synthetic ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from renyilib.experiments import cifar_study as cs
from renyilib.experiments.prerequisites import MissingInputError

ROOT = Path(__file__).resolve().parents[2]
TABLES = ROOT / "data" / "results" / "cifar10-resnet18"


def test_missing_tables_name_both_commands(tmp_path):
    with pytest.raises(MissingInputError) as err:
        cs.load_tables(tmp_path, "cifar10-resnet18", "cpu", "data/results/cifar10-resnet18")
    msg = str(err.value)
    assert "zoo_table.csv" in msg
    assert "renyilib zoo run --task cifar10-resnet18 --profile cpu --jobs 2" in msg
    assert (
        "renyilib zoo measure --task cifar10-resnet18 --profile cpu --export data/results/cifar10-resnet18"
        in msg
    )
    with pytest.raises(MissingInputError, match="renyilib zoo run"):
        cs.cifar_study("smoke", results=tmp_path)


def test_analysed_models_rule_and_tau_sd():
    base = pd.DataFrame(
        {"run": list("abcdefg"), "converged": [True] * 6 + [False], "gap": range(7)}
    )
    prof = pd.DataFrame({"run": list("abcdefg")})
    an = cs.analysed_models(prof, base)
    assert an["model_set"] == "converged models only" and an["n_used"] == 6
    assert an["tau_sd"] == pytest.approx(np.sqrt(2 * 17 / (9 * 6 * 5)))
    an = cs.analysed_models(prof, base, min_converged=7)
    assert an["model_set"] == "all models (only 6 converged)" and an["n_used"] == 7
    agg = cs.held_out_choice(prof.assign(task="t"), ["all"], n_splits=3, n_used=3)
    assert agg.loc["all"].isna().all()  # fewer than 4 models: nothing to split


@pytest.mark.skipif(not (TABLES / "profiles.csv").is_file(), reason="no committed CIFAR-10 tables")
def test_cifar_study_on_the_committed_tables():
    st = cs.cifar_study("smoke")
    n = st.numbers
    runs = pd.read_csv(TABLES / "zoo_table.csv")
    assert n["n_runs"] == len(runs) and n["n_layers_total"] == 21  # ResNet-18's weight tensors
    assert n["tau_diff"] == pytest.approx(n["tau_all_best"] - n["tau_best_baseline"])
    # the verdict's first sentence follows the sign of the difference
    assert ("does not rank" in st.verdict[0]) == (n["tau_diff"] < -cs.TIE)
    best = st.alpha["best"]
    assert best.loc["all", "tau"] == pytest.approx(n["tau_all_best"])
    assert set(st.alpha["table"].index) == set(st.description["order"])
    assert not st.fig11.isna().any().any()
    measured = set(st.description["blocks"])
    for _, r in st.fig11.iterrows():
        if r["our block"]:
            assert (r["ours (τ at best α)"] == "not measured") == (r["our block"] not in measured)
    assert len(st.panels) == len(st.description["order"]) + len(st.baselines["measures"])
    if st.spectra is not None:
        assert 0 <= n["c_n_match"] <= n["c_n_cases"]
