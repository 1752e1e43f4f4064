"""Tests of renyilib.experiments.correlation_study on synthetic tables and the committed CIFAR-10 ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from renyilib.experiments import correlation_study as cs
from renyilib.experiments.prerequisites import MissingInputError
from renyilib.statistics import kendall_tau

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "data" / "results"
REFERENCE = ROOT / "book" / "reference"


def synthetic(n=8, seed=0):
    """Profiles where layer b1 ranks the gap exactly at α = 0.5 and reversed at α = 2."""
    rng = np.random.default_rng(seed)
    gap = rng.permutation(n).astype(float) / n
    runs = [f"r{i}" for i in range(n)]
    rows = []
    for block, sign in (("b1", 1.0), ("all", -1.0)):
        for alpha in (0.5, 2.0):
            s = sign * (gap if alpha == 0.5 else -gap)
            for r, g, v in zip(runs, gap, s):
                rows.append(dict(task="t", run=r, block=block, alpha=alpha, sharpness=v, gap=g))
    prof = pd.DataFrame(rows)
    base = pd.DataFrame(
        {
            "task": "t",
            "run": runs,
            "gap": gap,
            "optimizer": ["sgd", "adam"] * (n // 2),
            "converged": [True] * (n - 1) + [False],
            "trace": gap,  # τ = 1
            "param_norm": -gap,  # τ = -1
        }
    )
    return prof, base


def test_analysis_set_keeps_converged_only_above_the_minimum():
    prof, base = synthetic()
    p, b, label = cs.analysis_set({"profiles": prof, "baselines": base}, True)
    assert label == "converged models only" and len(b) == 7 and set(p["run"]) == set(b["run"])
    p, b, label = cs.analysis_set({"profiles": prof, "baselines": base}, True, min_models=8)
    assert label == "all models (only 7 converged)" and len(b) == 8
    assert cs.analysis_set({"profiles": prof, "baselines": base}, False)[2] == "all models"


def test_alpha_tables_best_alpha_and_taus():
    prof, _ = synthetic()
    t = cs.alpha_tables(prof)
    assert t["order"] == ["b1", "all"]
    tab = t["table"]
    assert tab.loc["b1", "best α"] == 0.5 and tab.loc["b1", "τ at best α"] == pytest.approx(1.0)
    assert tab.loc["all", "best α"] == 2.0 and tab.loc["all", "τ at α=0.5"] == pytest.approx(-1.0)


def test_grid_panels_headline_and_baselines():
    prof, base = synthetic()
    t = cs.alpha_tables(prof)
    panels = cs.grid_panels(prof, base, t["best"], t["order"])
    assert [p[0] for p in panels] == ["b1\n(α=0.5)", "all layers\n(α=2)", "trace", "parameter norm"]
    title, x, gap, _ = panels[0]
    assert kendall_tau(x, gap).tau == pytest.approx(1.0)
    bt = cs.baseline_taus(base).set_index("measure")["tau"]
    assert bt["trace"] == pytest.approx(1.0) and bt["param_norm"] == pytest.approx(-1.0)
    h = cs.headline(prof, base)
    assert h["models"] == 8 and h["Rényi all layers (best α)"] == pytest.approx(1.0)
    assert h["parameter norm"] == pytest.approx(-1.0)


def test_verdict_sentences_follow_the_numbers():
    inflation = pd.DataFrame({"held_out": [0.2, 0.9]}, index=["b1", "all"])
    match = {"n_match": 3, "n_cases": 4, "majority_rate": 0.5, "paper_match_rate": 1451 / 1630}
    kw = dict(
        layer_best=pd.DataFrame({"tau": [0.5, -0.1]}),
        inflation=inflation,
        fixed_all=pd.Series({0.5: 0.3, 1.5: 0.4}),
        match=match,
        n_models=10,
    )
    low = cs.verdict_sentences(all_layers_tau=0.4, baseline_tau=pd.Series({"trace": 0.6}), **kw)
    assert "does not rank the models better than the best baseline (trace, τ = 0.600)" in low[0]
    assert "-0.200" in low[0] and "still above" in low[2]
    high = cs.verdict_sentences(all_layers_tau=0.8, baseline_tau=pd.Series({"sam": 0.95}), **kw)
    assert "ranks the models better" not in high[0] and "not above" in high[2]
    assert "50% of the layers" in low[3] and "3/4 matches (75%" in low[5] and "paper 89%" in low[5]


def test_paper_fig11_beside_has_no_gaps():
    ref = pd.read_csv(REFERENCE / "paper_correlation_tau.csv", comment="#")
    out = cs.paper_fig11_beside(
        ref,
        task="t",
        layer_taus=[0.1, 0.4],
        baseline_tau=pd.Series({"all": 0.3, "param_norm": -0.2, "trace": 0.5, "sam": np.nan}),
    )
    assert out.loc["all layers at the best α"].tolist() == ["0.784", "0.300"]
    assert out.loc["parameter norm"].tolist() == ["-0.508", "-0.200"]
    assert out.loc["each layer at its best α (range)", "ours (t)"] == "0.100 to 0.400 (2 layers)"
    assert out.loc["the other baselines (range)", "ours (t)"] == "0.500 to 0.500 (2 measures)"
    assert not out.isna().any().any()


def test_cost_summary_without_and_with_costs():
    empty = cs.cost_summary(pd.DataFrame())
    assert np.isnan(empty["renyi_seconds"]) and empty["table"].empty
    cost = pd.DataFrame(
        {"renyi_seconds": [1.0, 3.0], "renyi_matvecs": [10, 20], "sam_seconds": [0.5, 0.5]}
    )
    got = cs.cost_summary(cost)
    assert got["renyi_seconds"] == 2.0 and got["renyi_matvecs"] == 15
    assert got["baseline_seconds"] == pytest.approx(0.5)


def test_nothing_trained_yet_names_the_command(tmp_path):
    with pytest.raises(
        MissingInputError, match=r"`renyilib zoo run --task digits-cnn --profile smoke`"
    ):
        cs.correlation_study(None, "smoke", out=tmp_path / "zoo", results=tmp_path / "results")
    # committed tables of another profile are not taken for this one (the README's paper command)
    if (RESULTS / "cifar10-resnet18" / "profiles.csv").is_file():
        with pytest.raises(MissingInputError, match=r"--task cifar10-resnet18 --profile paper`"):
            cs.load_measurements("cifar10-resnet18", "paper", out=tmp_path, results=RESULTS)
    with pytest.raises(MissingInputError, match=r"renyilib zoo measure --task t --profile smoke"):
        cs.load_measurements("t", "smoke", out=tmp_path, results=tmp_path, committed=True)


@pytest.mark.skipif(
    not (RESULTS / "cifar10-resnet18" / "profiles.csv").is_file(), reason="no committed results"
)
def test_committed_cifar_tables_through_the_study_functions(tmp_path):
    res = cs.load_measurements("cifar10-resnet18", "cpu", out=tmp_path, results=RESULTS)
    assert res["source"] == "committed CSV"
    prof, base, _ = cs.analysis_set(res)
    t = cs.alpha_tables(prof)
    # the best α of "all" is the argmax of τ over the paper's α range
    s = t["sweep"][(t["sweep"]["block"] == "all") & t["sweep"]["alpha"].between(0, 3)]
    s = s[~s["alpha"].between(0.9, 1.2, inclusive="neither")]
    assert t["table"].loc["all", "τ at best α"] == pytest.approx(s["tau"].max())
    summ = cs.task_summary({"cifar10-resnet18": res})
    assert summ["fig14"].index.tolist() == ["cifar10-resnet18"]
    assert summ["fig3"].loc["cifar10-resnet18", "Rényi all layers (best α)"] == pytest.approx(
        s["tau"].max()
    )
    agg = cs.selection_inflation(prof, t["order"], n_splits=5)
    assert list(agg.index) == t["order"] and (agg["held_out"].abs() <= 1).all()


def test_confound_table_exposes_a_measure_that_only_separates_optimizers():
    import itertools

    import numpy as np
    import pandas as pd

    from renyilib.experiments.correlation_study import confound_table

    rows, prof = [], []
    for i, (opt, lr, bs, wd) in enumerate(
        itertools.product(["sgd", "adam"], [0.01, 0.1], [32, 96], [1e-5, 5e-4])
    ):
        gap = (1.0 if opt == "sgd" else 0.0) + lr + 0.001 * bs
        run = f"r{i}"
        rows.append({"run": run, "optimizer": opt, "lr": lr, "batch_size": bs,
                     "weight_decay": wd, "gap": gap, "test_acc": 0.9 - 0.1 * gap,
                     "param_norm": 1.0 if opt == "sgd" else 0.0,  # separates optimizers only
                     "sam": lr})  # fmt: skip
        for a in (0.5, 1.5, 2.0):
            prof.append({"run": run, "block": "all", "alpha": a, "sharpness": gap + 0.01 * a})
    base, prof = pd.DataFrame(rows), pd.DataFrame(prof)
    t = confound_table(prof, base, 2.0, (0.4, 0.1), num_resamples=200).set_index("measure")
    assert list(t["selection"][:3]) == ["fixed", "fixed", "in-sample best"]
    pn = t.loc["parameter norm"]
    assert pn["tau"] > 0.5  # looks good overall ...
    assert pn["granulated"] == pytest.approx(0.25)  # ... but only the optimizer axis credits it
    assert np.isnan(pn["tau_sgd"]) and np.isnan(pn["tau_adam"])  # constant within optimizers
    ren = t.loc["Rényi all (α=0.5)"]
    assert ren["tau"] == pytest.approx(1.0) and ren["tau_sgd"] == pytest.approx(1.0)
    assert ren["tau_test_error"] == pytest.approx(1.0)  # test error rises with the gap here
    assert ren["low"] <= ren["tau"] <= ren["high"]
    assert np.isnan(ren["gap_noise_sd"])  # no draws given
    # gap draws: identical to the gap -> no noise; shuffled gaps -> τ moves
    same = np.tile(base["gap"].to_numpy(), (20, 1))
    t0 = confound_table(prof, base, 2.0, gap_draws=same, num_resamples=50).set_index("measure")
    assert t0.loc["Rényi all (α=0.5)", "gap_noise_sd"] == pytest.approx(0.0)
    rng = np.random.default_rng(0)
    noisy = base["gap"].to_numpy() + rng.normal(0, 0.5, size=(50, len(base)))
    t1 = confound_table(prof, base, 2.0, gap_draws=noisy, num_resamples=50).set_index("measure")
    assert t1.loc["Rényi all (α=0.5)", "gap_noise_sd"] > 0.05
    with pytest.raises(ValueError, match="gap_draws must have shape"):
        confound_table(prof, base, 2.0, gap_draws=noisy[:, :3])
    assert t.loc["Rényi all (α=2)", "held_out"] == 0.4 and np.isnan(ren["held_out"])
