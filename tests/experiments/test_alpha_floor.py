"""Tests of renyilib.experiments.alpha_floor: floored entropies, the precision path, stability, the cache."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from renyilib.experiments import alpha_floor as af
from renyilib.experiments import zoo


def closed_form(x: np.ndarray, a: float) -> float:
    """H_α of magnitudes x by the definition (1/(1-α)) log Σ p^α, Shannon at α = 1."""
    p = np.asarray(x, dtype=float) / np.sum(x)
    p = p[p > 0]
    if a == 1.0:
        return float(-np.sum(p * np.log(p)))
    return float(np.log(np.sum(p**a)) / (1.0 - a))


def test_floored_entropy_drop_matches_closed_form():
    lam = np.array([4.0, -2.0, 2.0, 1e-9, 0.0, -1e-10])
    alphas = [1e-4, 0.5, 1.0, 2.0]
    # floor 1e-6 · 4: the two tiny ones and the zero leave; p = (1/2, 1/4, 1/4)
    df = af.floored_entropy(lam, alphas, 1e-6)
    assert df["n_used"].tolist() == [3] * 4 and df["n_below"].tolist() == [3] * 4
    expect = [closed_form([4, 2, 2], a) for a in alphas]
    np.testing.assert_allclose(df["entropy"], expect, rtol=1e-12)
    assert df["entropy"].iloc[2] == pytest.approx(1.5 * np.log(2), rel=1e-12)
    assert df["entropy"].iloc[3] == pytest.approx(-np.log(0.375), rel=1e-12)
    np.testing.assert_allclose(df["entropy_minus_log_n"], df["entropy"] - np.log(3), rtol=1e-12)
    # floor 0: only the exact zero leaves, the round-off-sized ones count
    d0 = af.floored_entropy(lam, alphas, 0.0)
    assert d0["n_used"].iloc[0] == 5
    x = [4, 2, 2, 1e-9, 1e-10]
    np.testing.assert_allclose(d0["entropy"], [closed_form(x, a) for a in alphas], rtol=1e-10)
    # at α = 1e-4 the tiny eigenvalues pull H_α to ~log 5, not log 3
    assert d0["entropy"].iloc[0] == pytest.approx(np.log(5), abs=0.01)


def test_floored_entropy_small_alpha_is_a_log_determinant():
    rng = np.random.default_rng(0)
    x = np.exp(rng.normal(size=50))
    a = 1e-4
    df = af.floored_entropy(x, [a], 0.0)
    slope = np.mean(np.log(x)) - np.log(np.mean(x))
    assert df["entropy_minus_log_n"].iloc[0] == pytest.approx(a * slope, rel=1e-3)


def test_floored_entropy_clamp_keeps_n():
    lam = np.array([4.0, 2.0, 2.0, 1e-9, 0.0, -1e-10])
    alphas = [1e-4, 0.5, 1.0, 2.0]
    df = af.floored_entropy(lam, alphas, 1e-3, mode="clamp")
    assert df["n_used"].tolist() == [6] * 4 and df["n_below"].iloc[0] == 3
    x = [4, 2, 2, 4e-3, 4e-3, 4e-3]
    np.testing.assert_allclose(df["entropy"], [closed_form(x, a) for a in alphas], rtol=1e-12)
    np.testing.assert_allclose(df["entropy_minus_log_n"], df["entropy"] - np.log(6))
    # floor 0 clamps nothing: same H as dropping the zero, but n stays 6
    c0 = af.floored_entropy(lam, alphas, 0.0, mode="clamp")
    d0 = af.floored_entropy(lam, alphas, 0.0, mode="drop")
    np.testing.assert_allclose(c0["entropy"], d0["entropy"], rtol=1e-12)
    assert c0["n_used"].iloc[0] == 6 and d0["n_used"].iloc[0] == 5


def test_floored_entropy_errors():
    with pytest.raises(ValueError, match="mode"):
        af.floored_entropy([1.0, 2.0], [1.0], 0.0, mode="keep")
    with pytest.raises(ValueError, match="floor"):
        af.floored_entropy([1.0, 2.0], [1.0], 1.5)
    with pytest.raises(ValueError, match="floor"):
        af.floored_entropy([1.0, 2.0], [1.0], -1e-3)
    with pytest.raises(ValueError, match="all zero"):
        af.floored_entropy([0.0, 0.0], [1.0], 0.0)
    with pytest.raises(ValueError, match="alpha"):
        af.floored_entropy([1.0, 2.0], [0.0], 0.0)


def test_block_spectrum_float64_and_float32_against_torch_func_hessian():
    import copy

    torch.manual_seed(0)
    net32 = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 4)).eval()  # float32 model
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20, 3, generator=g)
    y = torch.randint(0, 4, (20,), generator=g)
    loss = nn.CrossEntropyLoss()
    # reference: torch.func.hessian of the float64 copy w.r.t. "2.weight"
    ref_net = copy.deepcopy(net32).double()
    params = {k: v.detach() for k, v in ref_net.named_parameters()}
    shape = params["2.weight"].shape

    def f(w: torch.Tensor) -> torch.Tensor:
        out = torch.func.functional_call(
            ref_net, {**params, "2.weight": w.reshape(shape)}, (x.double(),)
        )
        return loss(out, y)

    H = torch.func.hessian(f)(params["2.weight"].reshape(-1))
    ref = np.linalg.eigvalsh(H.numpy())
    for backend in ("graph", "linearize"):
        l64, t = af.block_spectrum(net32, (x, y), ["2.weight"], "float64", backend=backend)
        np.testing.assert_allclose(l64, ref, atol=1e-13 * np.abs(ref).max())
        assert set(t) == {"seconds_hessian", "seconds_eigh"}
        l32, _ = af.block_spectrum(net32, (x, y), ["2.weight"], "float32", backend=backend)
        err = np.abs(l32 - ref).max() / np.abs(ref).max()
        assert 1e-12 < err < 1e-5  # float32 round-off: visible, and of float32 size
    assert next(net32.parameters()).dtype == torch.float32  # the model is not modified
    with pytest.raises(ValueError, match="dtype"):
        af.block_spectrum(net32, (x, y), ["2.weight"], "float16")


def _table() -> pd.DataFrame:
    """Constructed floor_sensitivity-like table: 10 runs, block "a", three orders."""
    rng = np.random.default_rng(0)
    gap = np.arange(10.0)
    ref = gap + rng.normal(scale=3.0, size=10)  # τ well inside (-1, 1)
    rows = []
    for alpha, choice, rel in [
        (1e-4, -ref, 0.05),  # value and τ move: unstable
        (0.1, -ref, 0.005),  # value within 1%, τ reversed: value-only
        (1.0, ref * 1.0001, 0.0001),  # monotone change: τ identical, value within 1%
        (2.0, ref * 1.0001, 0.0001),
    ]:
        for i in range(10):
            base = {"run": f"r{i}", "block": "a", "alpha": alpha, "gap": gap[i], "converged": True}
            rows.append({**base, "dtype": "float64", "floor": 0.0, "mode": "drop",
                         "sharpness": ref[i], "rel_change": 0.0})  # fmt: skip
            rows.append({**base, "dtype": "float64", "floor": 1e-5, "mode": "drop",
                         "sharpness": choice[i], "rel_change": rel})  # fmt: skip
    return pd.DataFrame(rows)


def test_stable_orders_on_a_constructed_table():
    t = _table()
    taus = af.tau_table(t, num_resamples=200)
    st = af.stability_table(t, taus, tol=0.01).set_index("alpha")
    assert st.loc[1e-4, "max_rel_change"] == pytest.approx(0.05)
    assert not st.loc[1e-4, "value_stable"] and not st.loc[1e-4, "tau_stable"]
    assert st.loc[0.1, "value_stable"] and not st.loc[0.1, "tau_stable"]
    assert st.loc[1.0, "stable"] and st.loc[1.0, "max_tau_shift"] == 0.0
    assert st.loc[1e-4, "worst"] == "float64, floor 1e-05, drop"
    so = af.stable_orders(t, tol=0.01, taus=taus).iloc[0]
    assert so["stable_alphas"] == "1,2" and (so["alpha_min"], so["alpha_max"]) == (1.0, 2.0)
    assert so["value_only_alphas"] == "0.1" and so["unstable_alphas"] == "0.0001"
    # a looser tolerance makes α = 1e-4 value-stable (τ still not)
    so2 = af.stable_orders(t, tol=0.1, taus=taus).iloc[0]
    assert so2["value_only_alphas"] == "0.0001,0.1"
    # choosing only the reference leaves nothing to move
    so3 = af.stable_orders(t, tol=0.01, taus=taus, floors=[0.0]).iloc[0]
    assert so3["stable_alphas"] == "0.0001,0.1,1,2"
    with pytest.raises(ValueError, match="no row"):
        af.stability_table(t, taus, dtypes=["float32"])


def test_floor_sensitivity_reference_and_tau_on_spectra():
    rng = np.random.default_rng(1)
    sp = af.ExactSpectra(runs=pd.DataFrame({"run": ["a", "b", "c", "d"], "gap": [0.1, 0.2, 0.3, 0.4],
                                            "train_loss": 0.0, "test_loss": 0.0, "converged": True}))  # fmt: skip
    for r in "abcd":
        lam = np.concatenate([np.exp(rng.normal(size=20)), rng.normal(scale=1e-15, size=30)])
        sp.eigenvalues[(r, "blk", "float64")] = lam
        sp.eigenvalues[(r, "blk", "float32")] = lam + rng.normal(scale=1e-7, size=lam.size)
    t = af.floor_sensitivity(sp, alphas=[1e-4, 1.0, 2.0], floors=[0.0, 1e-9])
    assert len(t) == 4 * 2 * 2 * 2 * 3
    ref = t[(t["dtype"] == "float64") & (t["floor"] == 0.0) & (t["mode"] == "drop")]
    assert (ref["rel_change"] == 0).all()
    # floor 1e-9 drops the 30 round-off eigenvalues: α = 1e-4 moves by ~log(50/20)/log 50
    f = t[
        (t["dtype"] == "float64")
        & (t["floor"] == 1e-9)
        & (t["mode"] == "drop")
        & (t["alpha"] == 1e-4)
    ]
    assert (f["n_used"] == 20).all()
    assert f["rel_change"].abs().min() > 0.2
    big = t[(t["alpha"] == 2.0) & (t["mode"] == "drop")]
    assert big["rel_change"].abs().max() < 1e-6  # α = 2 does not see the floor
    taus = af.tau_table(t, num_resamples=50)
    assert set(taus["n"]) == {4}
    st = af.stability_table(t, taus).set_index("alpha")
    assert st.loc[1e-4, "shift_to_spread"] > st.loc[2.0, "shift_to_spread"] >= 0
    sm = af.small_alpha_summary(t, taus, 1e-4)
    assert len(sm) == 2 * 2  # dtypes x floors, one block
    row = sm[(sm["dtype"] == "float64") & (sm["floor"] == 1e-9)].iloc[0]
    assert row["median_n_used"] == 20 and row["models"] == 4 and row["n_tau"] == 4
    assert row["max_abs_rel_change"] == pytest.approx(f["rel_change"].abs().max())
    with pytest.raises(ValueError, match="alpha"):
        af.small_alpha_summary(t, taus, 0.7)
    import matplotlib

    matplotlib.use("Agg")
    fig = af.alpha_floor_figure(t, taus=taus)
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="values"):
        af.alpha_floor_figure(t, "nope")
    text = af.alpha_floor_verdict(t, taus)
    assert "blk" in text and "float32 alone" in text
    ref = t[(t["dtype"] == "float64") & (t["floor"] == 0.0) & (t["mode"] == "drop")]
    chapter = ref[["run", "block", "alpha", "sharpness", "gap", "converged"]]
    text = af.alpha_floor_verdict(t, taus, chapter_profiles=chapter)
    assert "The correlation chapter's SLQ best α: blk" in text and "layers pick α = 0.0001" in text
    # the chapter's compact table: α = 2 is stable for every floor cap, α = 1e-4 is not
    rng_tab = af.stable_range_table(t, taus).set_index("block")
    assert list(rng_tab.columns) == ["floor ≤ 1e-09"]
    assert rng_tab.loc["blk", "floor ≤ 1e-09"] > 1e-4
    with pytest.raises(ValueError, match="dtypes"):
        af.floor_sensitivity(sp, dtypes=["float16"])
    sp.eigenvalues[("e", "blk", "float32")] = np.ones(3)
    with pytest.raises(ValueError, match="no float64 reference"):
        af.floor_sensitivity(sp)


def test_zoo_exact_spectra_cache_round_trip(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    configs = zoo.grid("digits-cnn", "smoke")[:1]
    assert zoo.run_zoo(configs, tmp_path / "zoo", progress=False)["done"] == 1
    cache = tmp_path / "cache"
    kw = dict(blocks=["features.0.weight"], subset=32, subset_seed=0, progress=False)
    first = af.zoo_exact_spectra(
        tmp_path / "zoo", "digits-cnn", ("float64", "float32"), cache=cache, **kw
    )
    files = sorted(cache.glob("*/eigenvalues.npz"))
    assert len(files) == 2 and len(first.eigenvalues) == 2
    (run, block, _), lam = next(iter(first.eigenvalues.items()))
    assert block == "features.0.weight" and lam.shape == (72,)
    with np.load(files[0]) as z:
        meta = json.loads(str(z["meta"]))
        assert meta["subset"] == 32 and meta["block"] == "features.0.weight"

    def boom(*args, **kwargs):
        raise AssertionError("recomputed a cached spectrum")

    monkeypatch.setattr(af, "block_spectrum", boom)
    again = af.zoo_exact_spectra(
        tmp_path / "zoo", "digits-cnn", ("float64", "float32"), cache=cache, **kw
    )
    for k, v in first.eigenvalues.items():
        np.testing.assert_array_equal(again.eigenvalues[k], v)
    # another subset is another key
    with pytest.raises(AssertionError, match="recomputed"):
        af.zoo_exact_spectra(tmp_path / "zoo", "digits-cnn", ("float64",), cache=cache,
                             **{**kw, "subset": 16})  # fmt: skip
    with pytest.raises(ValueError, match="blocks"):
        af.zoo_exact_spectra(
            tmp_path / "zoo", "digits-cnn", cache=cache, blocks=["nope"], progress=False
        )
    with pytest.raises(ValueError, match="models"):
        af.zoo_exact_spectra(
            tmp_path / "zoo", "digits-cnn", models=["nope"], cache=cache, progress=False
        )
    with pytest.raises(ValueError, match="dtypes"):
        af.zoo_exact_spectra(tmp_path / "zoo", "digits-cnn", ("half",), cache=cache, progress=False)


def test_load_results_round_trip(tmp_path):
    assert af.load_results(tmp_path) is None
    t = pd.DataFrame({"run": ["a"], "alpha": [1.0]})
    t.to_csv(tmp_path / "alpha_floor.csv.gz", index=False)
    t.to_csv(tmp_path / "alpha_floor.tau.csv", index=False)
    (tmp_path / "alpha_floor.meta.json").write_text(json.dumps({"verdict": "v"}))
    r = af.load_results(tmp_path)
    pd.testing.assert_frame_equal(r["table"], t)
    assert r["meta"] == {"verdict": "v"}


def test_exact_vs_slq_tau_and_sentence():
    taus = pd.DataFrame(
        {
            "block": ["a", "a", "a", "b"],
            "alpha": [0.1, 0.5, 2.0, 0.5],
            "dtype": ["float64", "float64", "float64", "float32"],
            "floor": [0.0, 0.0, 0.0, 0.0],
            "mode": ["drop"] * 4,
            "n": [10] * 4,
            "tau": [0.2, 0.5, 0.3, 0.9],
            "tau_ref": [0.2, 0.5, 0.3, 0.9],
            "tau_ref_se": [0.05, 0.05, 0.05, 0.05],
            "tau_shift": [0.0] * 4,
        }
    )
    sweep = pd.DataFrame(
        {"block": ["a", "a", "a"], "alpha": [0.1, 0.5, 3.0], "tau": [0.6, 0.52, 0.1]}
    )
    cmp = af.exact_vs_slq_tau(taus, sweep)
    assert cmp[["alpha", "tau_exact", "tau_slq"]].values.tolist() == [
        [0.1, 0.2, 0.6],
        [0.5, 0.5, 0.52],
    ]
    assert cmp["difference"].tolist() == pytest.approx([0.4, 0.02])
    text = af.exact_vs_slq_sentence(cmp)
    assert "in 1 of 2 (layer, α) cells" in text and "+0.40 (a, α = 0.1" in text
    assert "+0.02 at α ≥ 0.5" in text and "a 0.5 (exact) vs 0.1 (SLQ)" in text
    assert af.exact_vs_slq_sentence(cmp.iloc[:0]) == "No α is on both grids."
    with pytest.raises(KeyError, match="slq_sweep"):
        af.exact_vs_slq_tau(taus, sweep.drop(columns="tau"))


def test_best_alpha_stability_sentence():
    ranges = pd.DataFrame({"block": ["a", "b", "c"], "floor ≤ 1e-07": [0.5, 0.1, np.nan]})
    best = pd.DataFrame({"block": ["a", "b", "c", "all"], "alpha": [0.03, 0.2, 1.5, 2.0]})
    text = af.best_alpha_stability(ranges, best)
    assert text.startswith("1 of 3 layers have their best α inside")
    assert "a: best α 0.03, below its stable range (α ≥ 0.5)" in text
    assert "b: best α 0.2, inside its stable range (α ≥ 0.1)" in text
    assert "c: best α 1.5, no stable order" in text
    with pytest.raises(KeyError, match="no column"):
        af.best_alpha_stability(ranges, best, cap=1e-3)
