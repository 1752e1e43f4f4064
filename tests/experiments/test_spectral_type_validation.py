"""Tests of renyilib.experiments.spectral_type_validation on constructed spectra."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

from renyilib.experiments import spectral_type_validation as stv
from renyilib.lanczos import slq

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[2]


def two_clusters(seed: int = 0) -> np.ndarray:
    """10 eigenvalues near 1, 100 near 0.02 (17% of the trace), 890 near-zeros."""
    rng = np.random.default_rng(seed)
    top = 10.0 ** rng.uniform(-0.05, 0.0, 10)
    mid = 10.0 ** rng.uniform(-1.75, -1.65, 100)
    bulk = 1e-9 * rng.standard_normal(890)
    return np.sort(np.concatenate([top, mid, bulk]))


def one_group(seed: int = 0) -> np.ndarray:
    """10 eigenvalues within 0.3 decade of the top and 990 near-zeros."""
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([10.0 ** rng.uniform(-0.3, 0.0, 10), 1e-9 * rng.random(990)]))


def uniform_weights(lam: np.ndarray) -> np.ndarray:
    return np.full(lam.size, 1.0 / lam.size)


BEST = pd.DataFrame({"task": "t", "block": ["a", "b"], "alpha": [0.5, 1.5], "side": ["<1", ">1"]})


def spectra_fixture() -> dict[tuple[str, str], np.ndarray]:
    # block a (best α < 1): runs r0, r1 multi-cluster, r2 uniform; block b (α > 1): all uniform
    return {
        ("r0", "a"): two_clusters(0),
        ("r1", "a"): two_clusters(1),
        ("r2", "a"): one_group(2),
        ("r0", "b"): one_group(3),
        ("r1", "b"): one_group(4),
        ("r2", "b"): one_group(5),
    }


def test_two_separated_clusters_are_multi_cluster_one_group_uniform():
    lab = stv.label_spectra({("r", "two"): two_clusters(), ("r", "one"): one_group()})
    t = lab.set_index("block")
    assert t.loc["two", "type"] == "multi-cluster" and t.loc["two", "clusters"] == 2
    assert t.loc["one", "type"] == "uniform" and t.loc["one", "clusters"] == 1
    # the second cluster's share is its trace share: 100·0.02 / (Σ top + 100·0.02)
    lam = two_clusters()
    mid = lam[(lam > 1e-3) & (lam < 0.1)].sum() / lam[lam > 1e-3].sum()
    assert t.loc["two", "second_share"] == pytest.approx(mid, abs=0.01)
    # scale invariance: cH gets the same label
    lab5 = stv.label_spectra({("r", "two"): 5.0 * two_clusters()})
    assert lab5["type"].iloc[0] == "multi-cluster"


def test_exact_array_and_slq_of_the_same_matrix_get_the_same_label():
    lam = two_clusters()
    q = slq(torch.diag(torch.tensor(lam)), 20, 40, seed=0)
    lab = stv.label_spectra({("r", "exact"): lam, ("r", "slq"): q})
    assert list(lab["type"]) == ["multi-cluster", "multi-cluster"]
    agree = stv.exact_vs_slq({("r", "b"): lam}, {("r", "b"): q})
    assert agree["agreement"] == 1.0 and agree["n"] == 1


def test_all_zero_spectrum_is_undefined():
    lab = stv.label_spectra({("r", "z"): np.zeros(5)})
    assert lab["type"].iloc[0] == "undefined"


def test_exact_vs_slq_agreement_and_kappa():
    ex = spectra_fixture()
    # "SLQ" side: the same spectra except one multi-cluster block swapped for a uniform one
    sq = dict(ex)
    sq[("r0", "a")] = one_group(9)
    sq[("extra", "a")] = one_group(10)  # no exact twin: left out
    a = stv.exact_vs_slq(ex, sq)
    assert a["n"] == 6
    assert a["agreement"] == pytest.approx(5 / 6)
    # κ = (po − pe)/(1 − pe): exact 2 multi / 4 uniform, SLQ 1 / 5
    pe = (2 / 6) * (1 / 6) + (4 / 6) * (5 / 6)
    assert a["kappa"] == pytest.approx((5 / 6 - pe) / (1 - pe))
    by = a["by_block"].set_index("block")
    assert by.loc["a", "agreement"] == pytest.approx(2 / 3) and by.loc["b", "agreement"] == 1.0
    assert by.loc["a", "exact_multi"] == pytest.approx(2 / 3)
    # runs filter
    assert stv.exact_vs_slq(ex, sq, runs=["r1"])["n"] == 2
    # one label on both sides: κ undefined
    same = {k: one_group(i) for i, k in enumerate(ex)}
    assert np.isnan(stv.exact_vs_slq(same, same)["kappa"])


def test_match_rate_counts_as_fig1d():
    lab = stv.label_spectra(spectra_fixture())
    m = stv.match_rate(lab, BEST, "t")
    # block a (<1): r0, r1 multi → 2 matches, r2 uniform → miss; block b (>1): 3 uniform → 3 matches
    assert (m["n_cases"], m["n_match"]) == (6, 5)
    assert m["match_rate"] == pytest.approx(5 / 6)
    assert m["multi_share"] == pytest.approx(2 / 6)
    assert m["best_sides"] == ["<1", ">1"]
    assert stv.match_rate(lab, BEST, "t", runs=["r2"])["n_match"] == 1
    # a tied layer has no side to match
    tied = BEST.assign(side=["both", ">1"])
    assert stv.match_rate(lab, tied, "t")["n_cases"] == 3


def test_rule_settings_grid():
    prod = stv.rule_settings("product")
    assert len(prod) == 81 and prod[0] == stv.DEFAULT_RULE
    assert len({tuple(sorted(s.items())) for s in prod}) == 81
    oat = stv.rule_settings("one-at-a-time")
    assert len(oat) == 9 and oat[0] == stv.DEFAULT_RULE
    assert all(sum(s[k] != stv.DEFAULT_RULE[k] for k in s) <= 1 for s in oat)
    with pytest.raises(ValueError, match="mode"):
        stv.rule_settings("all")
    with pytest.raises(ValueError, match="default"):
        stv.rule_settings(grid={"nope": (1.0,)})


def test_rule_sensitivity_shape_and_content():
    ex = spectra_fixture()
    sq = dict(ex)
    sq[("r3", "a")] = one_group(11)  # an SLQ-only case
    hand = pd.DataFrame(
        {"run": ["r0", "r2", "r3"], "block": ["a", "a", "a"],
         "label": ["multi-cluster", "uniform", "uniform"]}
    )  # fmt: skip
    settings = stv.rule_settings("one-at-a-time")
    s = stv.rule_sensitivity(ex, sq, BEST, "t", settings=settings, hand=hand)
    assert len(s) == len(settings) * 3
    assert set(s["source"]) == set(stv.SOURCES)
    for col in ("match_rate", "multi_share", "n_cases", "agreement", "hand_agreement", "hand_n",
                "varied", *stv.GRID):  # fmt: skip
        assert col in s
    d = s[s["varied"] == "default"].set_index("source")
    assert d.loc["exact", "match_rate"] == pytest.approx(5 / 6)
    assert d.loc["exact", "n_cases"] == 6 and d.loc["slq", "n_cases"] == 7
    assert d.loc["slq on exact's cases", "n_cases"] == 6
    assert d.loc["exact", "agreement"] == 1.0
    assert d.loc["exact", "hand_n"] == 2 and d.loc["slq", "hand_n"] == 3
    assert d.loc["exact", "hand_agreement"] == 1.0
    assert set(s["varied"]) == {"default", *stv.GRID}
    # runs filter
    s1 = stv.rule_sensitivity(ex, sq, BEST, "t", ["r0"], settings=settings[:1])
    assert s1["n_cases"].tolist() == [2, 2, 2]


def test_hand_label_agreement_logic():
    hand = pd.DataFrame(
        {"run": ["r0", "r1", "r2", "rx"], "block": ["a", "a", "a", "a"],
         "label": ["multi-cluster", "uniform", "uniform", "uniform"]}
    )  # fmt: skip
    lab = stv.label_spectra(spectra_fixture())
    h = stv.hand_label_agreement(hand, lab)
    assert h["n"] == 3 and h["rate"] == pytest.approx(2 / 3)
    assert h["missing"].to_dict("records") == [{"run": "rx", "block": "a"}]
    assert h["disagreements"][["run", "hand", "rule"]].to_dict("records") == [
        {"run": "r1", "hand": "uniform", "rule": "multi-cluster"}
    ]
    assert h["confusion"].loc["uniform", "multi-cluster"] == 1


def test_read_hand_labels(tmp_path):
    p = tmp_path / "h.csv"
    p.write_text("# comment\nrun,block,label,reason,labeller\nr0,a,uniform,one hump,me\n")
    assert stv.read_hand_labels(p)["label"].tolist() == ["uniform"]
    p.write_text("run,block,label,reason,labeller\nr0,a,flat,x,me\n")
    with pytest.raises(ValueError, match="labels must be"):
        stv.read_hand_labels(p)
    p.write_text("run,block,label,reason,labeller\nr0,a,uniform,x,me\nr0,a,uniform,y,me\n")
    with pytest.raises(ValueError, match="twice"):
        stv.read_hand_labels(p)


def test_committed_hand_labels_are_valid():
    path = ROOT / "book" / "reference" / "spectral_type_hand_labels.csv"
    if not path.is_file():
        pytest.skip("no committed hand labels")
    h = stv.read_hand_labels(path)
    assert len(h) >= 12 and h["block"].nunique() >= 4
    assert h["reason"].str.len().min() > 10


def test_credible_settings_and_verdict_numbers():
    ex = spectra_fixture()
    sq = dict(ex)
    hand = pd.DataFrame(
        {"run": ["r0", "r2"], "block": ["a", "a"], "label": ["multi-cluster", "uniform"]}
    )
    settings = stv.rule_settings("one-at-a-time")
    s = stv.rule_sensitivity(ex, sq, BEST, "t", settings=settings, hand=hand)
    cred = stv.credible_settings(s)
    assert len(cred) % 3 == 0 and len(cred) >= 3
    assert (cred[cred["source"] == "exact"]["hand_agreement"] >= 0.9).all()
    with pytest.raises(ValueError, match="min_hand"):
        stv.credible_settings(s, min_hand=2.0)
    agree = stv.exact_vs_slq(ex, sq)
    lab = stv.label_spectra(ex)
    hx = stv.hand_label_agreement(hand, lab)
    v = stv.validation_verdict(agree, s, hx, None, paper_rate=0.89)
    e = s[s["source"] == "exact"]["match_rate"]
    assert f"{100 * e.min():.0f}%–{100 * e.max():.0f}% on exact spectra" in v
    assert "agree on 100% of 6" in v
    assert "Against 2 hand labels (1 multi-cluster" in v
    assert "paper reports 89%" in v
    # rates around 83% with 89% ± 10 points: not supported
    assert "is not supported" in v
    v2 = stv.validation_verdict(agree, s, hx, None, paper_rate=0.99, margin=0.1)
    assert "is supported" in v2
    # a single best side: the verdict says the rate is the share of one label
    one_side = stv.rule_sensitivity(ex, sq, BEST.assign(side="<1"), "t", settings=settings[:1])
    v3 = stv.validation_verdict(agree, one_side, paper_rate=0.89)
    assert "Every layer's best α lies on the side <1" in v3


def test_figures_draw():
    ex = spectra_fixture()
    s = stv.rule_sensitivity(ex, ex, BEST, "t", settings=stv.rule_settings("product"),
                             hand=pd.DataFrame({"run": ["r0"], "block": ["a"],
                                                "label": ["multi-cluster"]}))  # fmt: skip
    fig = stv.sensitivity_figure(s)
    assert len(fig.axes) == 2 * len(stv.GRID)
    fig2 = stv.spectrum_panels(ex, [("r0", "a"), ("r2", "b")], gaps={"r0": 0.1})
    assert len(fig2.axes) == 6
    with pytest.raises(KeyError, match="no spectrum"):
        stv.spectrum_panels(ex, [("nope", "a")])


def test_load_results_reads_the_three_files(tmp_path):
    import json

    import pandas as pd

    from renyilib.experiments import spectral_type_validation as v

    assert v.load_results(tmp_path) is None
    pd.DataFrame({"source": ["exact"], "match_rate": [0.5]}).to_csv(
        tmp_path / "spectral_type_validation.csv", index=False
    )
    pd.DataFrame({"run": ["a"], "hand": ["uniform"]}).to_csv(
        tmp_path / "spectral_type_validation.labels.csv", index=False
    )
    (tmp_path / "spectral_type_validation.meta.json").write_text(json.dumps({"verdict": "v"}))
    r = v.load_results(tmp_path)
    assert r["sensitivity"]["match_rate"].tolist() == [0.5]
    assert r["labels"]["hand"].tolist() == ["uniform"] and r["meta"]["verdict"] == "v"
