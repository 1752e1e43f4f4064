"""Tests of renyilib.experiments.spectrum_study: picking models, exact quadratures, the zoo check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from renyilib.experiments import spectrum_study as ss
from renyilib.experiments import zoo
from renyilib.experiments.config import load_profile
from renyilib.experiments.prerequisites import MissingInputError
from renyilib.renyi import renyi_entropy


def test_pick_by_gap_spreads_over_the_range():
    runs = pd.DataFrame({"run": list("abcde"), "gap": [0.5, 0.1, 0.3, 0.9, 0.7]})
    assert ss.pick_by_gap(runs, 3)["run"].tolist() == ["b", "a", "d"]  # gaps 0.1, 0.5, 0.9
    assert ss.pick_by_gap(runs, 9)["run"].tolist() == ["b", "c", "a", "e", "d"]
    with pytest.raises(ValueError, match="n must"):
        ss.pick_by_gap(runs, 0)
    with pytest.raises(ValueError, match="gap"):
        ss.pick_by_gap(runs.drop(columns="gap"), 2)


def test_exact_quadrature_is_the_spectrum():
    lam = np.array([0.0, 0.5, 1.0, 4.0])
    q = ss.exact_quadrature(lam)
    assert q.dim == 4 and q.num_probes == 0
    assert q.renyi_entropy(2.0).value == pytest.approx(renyi_entropy(lam, 2.0), rel=1e-12)
    assert q.trace().value == pytest.approx(lam.sum())


def test_type_summary_counts():
    types = pd.DataFrame(
        {
            "block": ["a", "a", "b"],
            "dim": [10, 10, 4],
            "negative_mass": [0.1, 0.3, 0.0],
            "type": ["uniform", "multi-cluster", "uniform"],
        }
    )
    s = ss.type_summary(types)
    assert s.loc["a", "negative_mass"] == pytest.approx(0.2)
    assert s.loc["a", "type"] in ("uniform: 1, multi-cluster: 1", "multi-cluster: 1, uniform: 1")


def test_nothing_trained_yet_names_the_command(tmp_path):
    with pytest.raises(
        MissingInputError, match=r"`renyilib zoo run --task digits-cnn --profile smoke`"
    ):
        ss.spectrum_study(None, "smoke", out=tmp_path)


def test_spectrum_panels_on_one_trained_run(tmp_path):
    torch.set_num_threads(1)
    configs = zoo.grid("digits-mlp", "smoke")[:1]
    assert zoo.run_zoo(configs, tmp_path, progress=False)["done"] == 1
    runs = zoo.table(tmp_path, "digits-mlp")
    renyi = {**load_profile("correlation", "smoke")["renyi"], "subset": 32}
    types, panels = ss.spectrum_panels(runs, renyi, exact_models=1, exact_max_dim=700)
    blocks = list(dict.fromkeys(types["block"]))
    assert "all" in blocks and len(panels) == len(types) == len(blocks)
    for p in panels:
        if p.exact is not None:  # blocks up to 700 parameters get their exact spectrum
            assert p.quadrature.dim <= 700 and len(p.exact.exact_nodes) == p.quadrature.dim
    assert any(p.exact is not None for p in panels)
    assert set(types["type"]) <= {"multi-cluster", "uniform", "undefined"}
    assert ((types["negative_mass"] >= 0) & (types["negative_mass"] <= 1)).all()


def test_negative_mass_sentence_follows_the_numbers() -> None:
    import pandas as pd

    from renyilib.experiments.spectrum_study import negative_mass_sentence

    psd = pd.DataFrame({"block": ["a", "b", "all"], "negative_mass": [0.0, 1e-9, 0.04]})
    text = negative_mass_sentence(psd)
    assert text.startswith("None of the 2 layer spectra has mass on negative eigenvalues")
    assert "1 of the 1 all-parameter spectra are indefinite" in text and "largest 0.040" in text
    ind = pd.DataFrame({"block": ["a", "a"], "negative_mass": [0.1, 0.3]})
    assert negative_mass_sentence(ind) == (
        "2 of the 2 layer spectra are indefinite (negative share of the |λ| mass: mean 0.200, "
        "largest 0.300)."
    )
