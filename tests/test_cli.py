"""Tests of the ``renyilib`` command (renyilib.cli.main) on a tiny zoo in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from renyilib import zoo
from renyilib.cli import main

TINY = {
    "experiments": {
        "zoo": {
            "smoke": {
                "defaults": {
                    "epochs": 1,
                    "warmup_epochs": 0,
                    "base_batch_size": 32,
                    "train_subset": 60,
                    "test_subset": 30,
                    "grid": {
                        "sgd": {"lr": [0.01, 0.05], "batch_size": 32, "weight_decay": 0.0},
                        "adam": {"lr": [1e-3, 3e-3], "batch_size": 32, "weight_decay": 0.0},
                    },
                }
            }
        }
    }
}


@pytest.fixture
def env(tmp_path: Path) -> list[str]:
    cfg = tmp_path / "_config.yml"
    cfg.write_text(yaml.safe_dump(TINY, sort_keys=False))
    return ["--task", "digits-mlp", "--out", str(tmp_path / "zoo"), "--config", str(cfg)]


def _statuses(env: list[str]) -> list[str]:
    configs = zoo.grid("digits-mlp", "smoke", config_path=env[-1])
    return list(zoo.status(env[3], configs).status)


def test_list_run_index_status_table(env, tmp_path, capsys):
    assert main(["zoo", "list", *env, "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert out.count("missing") == 4 and "adam" in out and "sgd" in out

    # --index runs exactly the I-th config of the listing (a job-array element)
    assert main(["zoo", "run", *env, "--profile", "smoke", "--index", "2", "--no-progress"]) == 0
    assert _statuses(env) == ["missing", "missing", "done", "missing"]
    assert "1 trained, 0 already done, 0 failed" in capsys.readouterr().out

    assert main(["zoo", "status", *env, "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "digits-mlp" in out and "done" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("digits-mlp"))
    assert line.split()[1:] == ["1", "3", "0"]  # done, missing, failed

    assert main(["zoo", "run", *env, "--profile", "smoke", "--no-progress"]) == 0
    assert "3 trained, 1 already done, 0 failed" in capsys.readouterr().out
    assert _statuses(env) == ["done"] * 4

    assert main(["zoo", "table", "--out", env[3]]) == 0
    printed = capsys.readouterr().out
    assert printed.count("digits-mlp") == 4 and "gap" in printed

    csv = tmp_path / "zoo.csv"
    assert main(["zoo", "table", "--out", env[3], "--task", "digits-mlp", "--csv", str(csv)]) == 0
    df = pd.read_csv(csv)
    assert len(df) == 4 and {"lr", "batch_size", "gap", "converged"} <= set(df.columns)
    assert sorted(df.lr) == [0.001, 0.003, 0.01, 0.05]


def test_failed_run_gives_nonzero_exit(env, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("no GPU today")

    monkeypatch.setattr(zoo, "train", broken)
    assert main(["zoo", "run", *env, "--profile", "smoke", "--index", "0", "--no-progress"]) == 1
    assert "0 trained, 0 already done, 1 failed" in capsys.readouterr().out
    assert main(["zoo", "status", *env, "--profile", "smoke"]) == 1
    assert "RuntimeError: no GPU today" in capsys.readouterr().out


def test_bad_arguments(env, capsys):
    assert main(["zoo", "run", *env, "--profile", "smoke", "--index", "4"]) == 2
    assert "--index must be in [0, 3]" in capsys.readouterr().err
    bad = ["--task", "mnist-vgg", *env[2:]]
    assert main(["zoo", "list", *bad, "--profile", "smoke"]) == 2
    assert "unknown" in capsys.readouterr().err
    assert main(["zoo", "run", *env, "--profile", "smoke", "--jobs", "0"]) == 2
    with pytest.raises(SystemExit):
        main(["zoo", "run", *env, "--profile", "gpu"])
    assert main(["zoo", "table", "--out", str(Path(env[3]) / "none")]) == 0
    assert "no finished runs" in capsys.readouterr().out
