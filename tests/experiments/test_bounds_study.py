"""Tests of renyilib.experiments.bounds_study: the chapter's steps on a tiny profile, against exact facts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from renyilib.experiments import bounds_study as bs

TINY = {
    "hidden": [3],
    "epochs": 1,
    "grid": {"lr": [0.1], "weight_decay": [0.0, 1e-3]},
    "batch_size": 64,
    "hessian_samples": 24,
    "alpha": 1.5,
    "alphas": [0.5, 2.0],
    "delta": 0.05,
    "radius": 0.1,
    "rho": 0.1,
    "shift": 1e-3,
    "log_c": [-1.0, 0.0, 1.0],
    "invariance_samples": 16,
    "slq": {"num_probes": 2, "lanczos_steps": 4},
    "chain_spectra": 20,
    "perturb": {"rhos": [0.0, 0.3], "draws": 2},
    "seed": 0,
}


def test_chain_mlp_and_layer_sizes():
    m = bs.chain_mlp([5, 4], nn.GELU, batchnorm=True)
    assert [type(x).__name__ for x in m] == [
        "Flatten",
        "Linear",
        "BatchNorm1d",
        "GELU",
        "Linear",
        "GELU",
        "Linear",
    ]
    # weight + bias per module: 64*5+5, BN 5+5, 5*4+4, 4*10+10
    assert bs.layer_sizes(m) == [325, 10, 24, 50]
    assert sum(bs.layer_sizes(m)) == sum(p.numel() for p in m.parameters())
    with pytest.raises(ValueError, match="hidden"):
        bs.chain_mlp([])


def test_evaluate_matches_direct_computation():
    torch.manual_seed(0)
    m = bs.chain_mlp([3]).double().eval()
    x, y = torch.randn(7, 1, 8, 8, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 4, 5, 6])
    got = bs.evaluate(m, (x, y), (x, y))
    p = torch.softmax(m(x), 1)[torch.arange(7), y]
    assert got["train_bounded"] == pytest.approx(float((1 - p).mean()), rel=1e-12)
    assert got["test_ce"] == pytest.approx(float(-torch.log(p).mean()), rel=1e-12)
    assert got["train_err"] == float((m(x).argmax(1) != y).double().mean())


@pytest.fixture(scope="module")
def study():
    torch.set_num_threads(1)
    return bs.bounds_study(TINY)


def test_bounds_study_exact_facts(study):
    n = study.numbers
    assert n["n_models"] == 2 and len(study.zoo.table) == 2
    assert n["n_params"] == 64 * 3 + 3 + 3 * 10 + 10
    # Prop. 2.2 on weight blocks of a ReLU chain: function and normalized spectrum unchanged
    assert float(n["inv_relu_change"]) < 1e-12
    assert float(n["inv_trace_law"]) < 1e-10
    assert float(n["inv_weight_spread"]) < 1e-6
    # ... but not on the global block
    assert float(n["inv_global_spread"]) > 1e-3
    # Lemma F.2 is an identity, Thm. F.4 holds on every synthetic case, optimum attained
    assert float(n["f_lemma_err"]) < 1e-10
    assert n["f4_ok"] == "400/400" and float(n["f4_opt"]) < 1e-12
    # every bound is >= 0 and the Prop. C.1 floor is the network-independent constant
    best = study.bounds["best"]
    assert (best[list(bs.BOUND_KINDS)] >= 0).all().all()
    n_train = len(study.zoo.train[1])
    floor = 2 * np.sqrt(np.log(2 * n_train / 0.05) / (n_train - 1))
    assert n["c1_complexity_floor"] == f"{floor:.3f}"
    # step 40 of App. C holds on every spectrum, with slack at least (d-1) log d
    assert float(n["slack_min"]) >= -1e-9
    ct = study.chain["table"]
    assert ct["step_40"].astype(bool).all()
    pb = study.perturbation["table"]
    assert list(pb["S"]) == ["train", "test", "train", "test"]
    assert (pb["bound"] >= pb["E_A[err(S(A,ρ))]"]).all()


def test_mini_zoo_is_seeded(study):
    from renyilib.experiments.config import seed_everything

    seed_everything(TINY["seed"])
    again = bs.mini_zoo(TINY)
    assert again.table.equals(study.zoo.table)


def test_summary_verdicts_follow_the_numbers(study):
    v = bs.summary_verdicts(study.numbers)
    assert v["verdict_invariance"].startswith("Invariance (Prop. 2.2) holds")
    assert "it fails for weight+bias blocks, the global block" in v["verdict_invariance"]
    broken = dict(study.numbers, inv_weight_spread="1.0e-02")
    assert "does not hold" in bs.summary_verdicts(broken)["verdict_invariance"]
    looser = float(study.numbers["kl_renyi_med"]) > float(study.numbers["kl_exact_med"])
    assert ("so it is looser" in v["verdict_bounds"]) == looser
    tight = dict(study.numbers, f_fshare_med="0.01")
    assert "small enough" in bs.summary_verdicts(tight)["verdict_appendix_f"]
