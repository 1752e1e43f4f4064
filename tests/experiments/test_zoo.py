"""Tests of renyilib.experiments.zoo: grids, hash keying, resumability, failures, the measurement cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from renyilib.experiments import zoo
from renyilib.experiments.config import find_config
from renyilib.experiments.io import config_hash, read_json
from renyilib.experiments.train import evaluate

TINY = {
    "experiments": {
        "zoo": {
            "smoke": {
                "run_tasks": ["digits-mlp"],
                "defaults": {
                    "epochs": 2,
                    "warmup_epochs": 1,
                    "base_batch_size": 32,
                    "seeds": [0],
                    "width": 0.5,
                    "train_subset": 100,
                    "test_subset": 50,
                    "grid": {
                        "sgd": {"lr": [0.01, 0.05], "batch_size": [32], "weight_decay": [0.0]},
                        "adam": {"lr": 1e-3, "batch_size": [32, 64], "weight_decay": 1e-4},
                    },
                },
                "overrides": {
                    "digits-cnn": {"epochs": 1, "grid": {"sgd": {"lr": [0.1], "batch_size": 50}}}
                },
            },
            "cpu": {"defaults": {"epochs": 1, "colour": "red", "grid": {"sgd": {"lr": 0.1}}}},
            "paper": {"defaults": {"epochs": 1}},
        }
    }
}


@pytest.fixture
def cfg_path(tmp_path: Path) -> Path:
    path = tmp_path / "_config.yml"
    path.write_text(yaml.safe_dump(TINY, sort_keys=False))
    return path


@pytest.fixture
def configs(cfg_path):
    return zoo.grid("digits-mlp", "smoke", config_path=cfg_path)


# ----------------------------------------------------------------------------- grids


def test_grid_order_and_contents(configs, cfg_path):
    axes = [(c["train"]["optimizer"], c["train"]["lr"], c["train"]["batch_size"]) for c in configs]
    assert axes == [("sgd", 0.01, 32), ("sgd", 0.05, 32), ("adam", 1e-3, 32), ("adam", 1e-3, 64)]
    c = configs[0]
    assert c["task"] == "digits-mlp" and c["dataset"] == "digits" and c["model"] == "mlp"
    assert c["model_kwargs"] == {
        "num_classes": 10,
        "in_channels": 1,
        "image_size": 8,
        "width": 0.5,
        "options": {},
    }
    assert c["data"] == {"train_subset": 100, "test_subset": 50, "seed": 0}
    assert c["train"]["epochs"] == 2 and c["train"]["base_batch_size"] == 32
    # per-task overrides: the task's grid replaces the default grid
    cnn = zoo.grid("digits-cnn", "smoke", config_path=cfg_path)
    assert [(c["train"]["lr"], c["train"]["batch_size"], c["train"]["epochs"]) for c in cnn] == [
        (0.1, 50, 1)
    ]
    assert cnn[0]["data"]["train_subset"] == 100  # other defaults kept


def test_grid_bad_input(cfg_path):
    with pytest.raises(KeyError, match="task 'mnist-vgg' unknown"):
        zoo.grid("mnist-vgg", "smoke", config_path=cfg_path)
    with pytest.raises(KeyError, match="colour"):
        zoo.grid("digits-mlp", "cpu", config_path=cfg_path)
    with pytest.raises(KeyError, match="no grid"):
        zoo.grid("digits-mlp", "paper", config_path=cfg_path)
    with pytest.raises(ValueError, match="profile"):
        zoo.grid("digits-mlp", "gpu", config_path=cfg_path)


def test_repository_profiles_are_valid():
    """Every task expands in every profile of the project's own _config.yml."""
    path = find_config()
    for profile in ("smoke", "cpu", "paper"):
        for task in zoo.TASKS:
            configs = zoo.grid(task, profile, config_path=path)
            assert configs, (task, profile)
            hashes = {config_hash(c) for c in configs}
            assert len(hashes) == len(configs)  # no duplicate runs
    paper = zoo.grid("cifar10-resnet18", "paper", config_path=path)
    assert len(paper) == 2 * 3 * 3 * 5  # G.3.1: 2 optimizers x 3 lr x 3 batch sizes x 5 wd
    assert {c["train"]["epochs"] for c in paper} == {200}
    assert len(zoo.grid("tinyimagenet-resnet18", "paper", config_path=path)) == 2 * 3 * 3 * 6


def test_hash_keying(configs, tmp_path):
    c = configs[0]
    path = zoo.run_dir(tmp_path, c)
    assert path == tmp_path / "digits-mlp" / config_hash(c)
    reordered = json.loads(json.dumps(c, sort_keys=True))
    assert zoo.run_dir(tmp_path, reordered) == path  # key order does not matter
    changed = json.loads(json.dumps(c))
    changed["train"]["weight_decay"] = 1e-5
    assert zoo.run_dir(tmp_path, changed) != path
    assert len({zoo.run_dir(tmp_path, c) for c in configs}) == len(configs)


# ----------------------------------------------------------------------------- running


@pytest.fixture
def count_train(monkeypatch):
    calls = []
    real = zoo.train

    def counting(model, data, config, **kwargs):
        calls.append(config["lr"] if isinstance(config, dict) else config.lr)
        return real(model, data, config, **kwargs)

    monkeypatch.setattr(zoo, "train", counting)
    return calls


def test_run_writes_everything_and_skips_finished(configs, tmp_path, count_train):
    counts = zoo.run_zoo(configs, tmp_path, progress=False)
    assert counts == {"done": 4, "skipped": 0, "failed": 0}
    assert len(count_train) == 4
    for c in configs:
        path = zoo.run_dir(tmp_path, c)
        assert zoo.run_status(path) == "done"
        saved = read_json(path / "config.json")
        assert saved["config"] == c and saved["hash"] == path.name and saved["code_version"]
        m = read_json(path / "metrics.json")
        assert m["gap"] == pytest.approx(m["test_loss"] - m["train_loss"], abs=1e-12)
        assert m["n_train"] == 100 and m["n_test"] == 50
        assert len(m["curves"]["train_loss"]) == 2
        state = torch.load(path / "weights.pt", weights_only=True)
        assert all(isinstance(v, torch.Tensor) for v in state.values())
        assert not list(path.glob(".*.tmp"))
    counts = zoo.run_zoo(configs, tmp_path, progress=False)
    assert counts == {"done": 0, "skipped": 4, "failed": 0}
    assert len(count_train) == 4  # nothing retrained


def test_killed_run_leaves_nothing_and_reruns(configs, tmp_path, monkeypatch, count_train):
    c = configs[0]
    path = zoo.run_dir(tmp_path, c)
    real = zoo._write_json

    def killed(file, obj):
        if Path(file).name == "metrics.json":
            raise KeyboardInterrupt  # as if the process were killed before the final write
        return real(file, obj)

    monkeypatch.setattr(zoo, "_write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        zoo.run_config(c, tmp_path)
    assert zoo.run_status(path) == "missing"
    assert not (path / "metrics.json").exists() and not list(path.glob(".*.tmp"))
    monkeypatch.setattr(zoo, "_write_json", real)
    # A stale temp file of a harder kill (e.g. SIGKILL inside the write) is cleaned up.
    (path / ".metrics.json.abc.tmp").write_text("{half")
    assert zoo.run_config(c, tmp_path) == "done"
    assert not list(path.glob(".*.tmp"))
    assert len(count_train) == 2 and zoo.run_config(c, tmp_path) == "skipped"


def test_failure_is_recorded_and_others_continue(configs, tmp_path, monkeypatch):
    real = zoo.train

    def flaky(model, data, config, **kwargs):
        if config["lr"] == 0.05:
            raise RuntimeError("boom at lr 0.05")
        return real(model, data, config, **kwargs)

    monkeypatch.setattr(zoo, "train", flaky)
    counts = zoo.run_zoo(configs, tmp_path, progress=False)
    assert counts == {"done": 3, "skipped": 0, "failed": 1}
    bad = zoo.run_dir(tmp_path, configs[1])
    err = read_json(bad / "error.json")
    assert err["error"] == "RuntimeError: boom at lr 0.05"
    assert "Traceback" in err["traceback"] and "flaky" in err["traceback"]
    st = zoo.status(tmp_path, configs)
    assert list(st.status) == ["done", "failed", "done", "done"]
    failed = zoo.table(tmp_path, include_unfinished=True)
    assert set(failed.status) == {"done", "failed"}
    assert failed.loc[failed.status == "failed", "error"].item().startswith("RuntimeError")
    # The next invocation retries the failed run and clears its error.
    monkeypatch.setattr(zoo, "train", real)
    assert zoo.run_zoo(configs, tmp_path, progress=False) == {"done": 1, "skipped": 3, "failed": 0}
    assert not (bad / "error.json").exists()


def test_diverged_run_is_finished_not_failed(configs, tmp_path):
    c = json.loads(json.dumps(configs[0]))
    c["train"]["lr"] = 1e6
    assert zoo.run_config(c, tmp_path) == "done"
    m = read_json(zoo.run_dir(tmp_path, c) / "metrics.json")
    assert m["diverged"] and not m["converged"]


@pytest.mark.slow  # spawning two workers that import torch: ~10 s idle, ~1 min on a loaded machine
def test_two_workers_match_one_process(configs, tmp_path):
    counts = zoo.run_zoo(configs[:2], tmp_path / "a", jobs=2, progress=False)
    assert counts == {"done": 2, "skipped": 0, "failed": 0}
    zoo.run_zoo(configs[:2], tmp_path / "b", jobs=1, progress=False)
    for c in configs[:2]:
        wa = torch.load(zoo.run_dir(tmp_path / "a", c) / "weights.pt", weights_only=True)
        wb = torch.load(zoo.run_dir(tmp_path / "b", c) / "weights.pt", weights_only=True)
        assert all(torch.equal(wa[k], wb[k]) for k in wa)


# ----------------------------------------------------------------------------- results


def test_load_run_and_table(configs, tmp_path):
    zoo.run_zoo(configs[:2], tmp_path, progress=False)
    path = zoo.run_dir(tmp_path, configs[1])
    model, config, metrics = zoo.load_run(path, device="cpu")
    assert config == configs[1] and not model.training
    data = zoo.run_data(config)
    loss, acc = evaluate(model, data.batches("test", 1000))
    assert loss == pytest.approx(metrics["test_loss"], rel=1e-6)
    assert acc == metrics["test_acc"]
    df = zoo.table(tmp_path)
    assert len(df) == 2 and set(df.run) == {zoo.run_dir(tmp_path, c).name for c in configs[:2]}
    row = df.set_index("run").loc[path.name]
    assert row.lr == 0.05 and row.optimizer == "sgd" and row.peak_lr == 0.05
    assert row.gap == pytest.approx(metrics["gap"])
    # `augment` switches on the dataset's default policy, which for digits is none
    assert row.augment == config["train"]["augment"] and row.augmentation == "none"
    assert zoo.table(tmp_path, "digits-cnn").empty
    only = zoo.table(tmp_path, configs=configs[1:])
    assert list(only.run) == [path.name]
    assert zoo.table(tmp_path / "nowhere").empty
    with pytest.raises(FileNotFoundError, match="not a finished run"):
        zoo.load_run(tmp_path / "digits-mlp" / "0123456789ab")


def test_measure_cache_hit_and_miss(configs, tmp_path):
    zoo.run_zoo(configs[:1], tmp_path, progress=False)
    path = zoo.run_dir(tmp_path, configs[0])
    calls = []

    def compute():
        calls.append(1)
        return {"value": torch.tensor(len(calls) * 1.5), "per_alpha": {"0.5": 1, "2.0": 2}}

    r1 = zoo.measure(path, "renyi", {"alpha": [0.5, 2.0], "probes": 4}, compute)
    r2 = zoo.measure(path, "renyi", {"probes": 4, "alpha": [0.5, 2.0]}, compute)  # hit
    assert calls == [1] and r1 == r2 == {"value": 1.5, "per_alpha": {"0.5": 1, "2.0": 2}}
    r3 = zoo.measure(path, "renyi", {"alpha": [0.5, 2.0], "probes": 8}, compute)  # miss
    assert len(calls) == 2 and r3["value"] == 3.0
    zoo.measure(path, "trace", {"probes": 4}, compute)  # another name: a miss
    assert len(calls) == 3
    r4 = zoo.measure(path, "renyi", {"alpha": [0.5, 2.0], "probes": 4}, compute, force=True)
    assert len(calls) == 4 and r4["value"] == 6.0
    files = sorted((path / "measures").glob("*.json"))
    assert len(files) == 3
    rec = read_json(
        path / "measures" / f"{config_hash({'name': 'trace', 'config': {'probes': 4}})}.json"
    )
    assert rec["name"] == "trace" and rec["config"] == {"probes": 4} and rec["code_version"]
    # Measures as table columns (two 'renyi' configs -> hashed prefixes) and as a long table.
    df = zoo.table(tmp_path, measures=True)
    assert df["trace.value"].item() == 4.5
    assert sum(c.startswith("renyi[") and c.endswith("].value") for c in df.columns) == 2
    long = zoo.measure_records(tmp_path, name="renyi")
    assert len(long) == 2 and set(long["config.probes"]) == {4, 8}
    assert "result.per_alpha.2.0" in long.columns and "gap" in long.columns
    with pytest.raises(FileNotFoundError, match="not a finished run"):
        zoo.measure(tmp_path / "x", "renyi", {}, compute)
    with pytest.raises(ValueError, match="name"):
        zoo.measure(path, "", {}, compute)
    with pytest.raises(TypeError, match="compute must return a dict"):
        zoo.measure(path, "bad", {}, lambda: 3.0)


def test_kill_during_the_weights_save_leaves_an_unfinished_run(configs, tmp_path, monkeypatch):
    """#18.7a: metrics.json (the 'finished' mark) is written after weights.pt."""
    c = configs[0]
    path = zoo.run_dir(tmp_path, c)
    real_save = torch.save

    def save_then(exc):
        def save(obj, f, *args, **kwargs):
            Path(f).write_bytes(b"half a state dict")
            raise exc

        return save

    # A kill inside the save (the process ends there): nothing marks the run finished.
    monkeypatch.setattr(torch, "save", save_then(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        zoo.run_config(c, tmp_path)
    assert zoo.run_status(path) == "missing"
    assert not (path / "metrics.json").exists() and not (path / "weights.pt").exists()
    assert not list(path.glob(".*.tmp"))
    assert list(zoo.status(tmp_path, [c]).status) == ["missing"]
    # A failing save (disk full): recorded as failed, still not finished.
    monkeypatch.setattr(torch, "save", save_then(OSError(28, "No space left on device")))
    assert zoo.run_config(c, tmp_path) == "failed"
    assert list(zoo.status(tmp_path, [c]).status) == ["failed"]
    assert not (path / "metrics.json").exists() and zoo.table(tmp_path).empty
    monkeypatch.setattr(torch, "save", real_save)
    assert zoo.run_config(c, tmp_path) == "done"  # the next invocation trains it again
    assert list(zoo.status(tmp_path, [c]).status) == ["done"]
    zoo.load_run(path)  # weights and metrics both there
