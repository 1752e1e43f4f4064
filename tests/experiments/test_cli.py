"""Tests of the ``renyilib`` command (renyilib.experiments.cli.main) on a tiny zoo in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from renyilib.experiments import zoo
from renyilib.experiments.cli import main


@pytest.fixture
def env(tmp_path: Path, tiny_zoo_config: Path) -> list[str]:
    cfg = tiny_zoo_config
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

    # --profile keeps only the runs of that profile's grid (other grids share the folder)
    assert main(["zoo", "table", *env, "--profile", "smoke", "--csv", str(csv)]) == 0
    assert len(pd.read_csv(csv)) == 4
    assert main(["zoo", "table", *env, "--profile", "cpu"]) == 2  # not in this test's config
    assert "has no profile 'cpu'" in capsys.readouterr().err
    assert main(["zoo", "table", "--out", env[3], "--profile", "smoke"]) == 2
    assert "--profile needs exactly one --task" in capsys.readouterr().err


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


def test_measure_shards_and_export(env, tmp_path, capsys):
    # the measurement settings come from the config's correlation profile, per task
    cfg_path = Path(env[-1])
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["experiments"]["correlation"] = {
        "smoke": {
            "zoo_profile": "smoke",
            "renyi": {"num_probes": 2, "lanczos_steps": 4, "alphas": [0.5, 2.0], "subset": 40},
            "baselines": {"which": ["param_norm"], "subset": 40},
            "task_settings": {
                "digits-mlp": {
                    "renyi": {
                        "num_probes": 2,
                        "lanczos_steps": 4,
                        "alphas": [0.5, 2.0],
                        "subset": 40,
                        "blocks": ["net.5.weight", "all"],
                    }
                }
            },
        }
    }
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert main(["zoo", "run", *env, "--profile", "smoke", "--no-progress"]) == 0
    capsys.readouterr()
    dest = tmp_path / "results"
    # two shards measure disjoint halves of the grid ...
    for shard in ("0/2", "1/2"):
        assert (
            main(["zoo", "measure", *env, "--profile", "smoke", "--shard", shard, "--no-progress"])
            == 0
        )
        assert "measured 2 of 2 runs" in capsys.readouterr().out
    files = sorted(Path(env[3]).glob("digits-mlp/*/measures/*.json"))
    assert len(files) == 4 * 2  # renyi + baselines per run
    mtimes = [f.stat().st_mtime_ns for f in files]
    # ... and the export reads them back from the cache, without recomputing
    assert (
        main(["zoo", "measure", *env, "--profile", "smoke", "--export", str(dest), "--no-progress"])
        == 0
    )
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    prof = pd.read_csv(dest / "profiles.csv")
    assert set(prof["block"]) == {"net.5.weight", "all"}  # the task's block list
    assert len(prof) == 4 * 2 * 2 and "path" not in prof.columns
    assert len(pd.read_csv(dest / "baselines.csv")) == 4
    table = pd.read_csv(dest / "zoo_table.csv")
    curves = pd.read_csv(dest / "curves.csv")
    assert len(table) == 4 and "path" not in table.columns
    assert set(curves["run"]) == set(table["run"]) and (curves["epoch"] == 1).all()
    meta = yaml.safe_load((dest / "measure_config.json").read_text())
    assert meta["settings"]["renyi"]["blocks"] == ["net.5.weight", "all"]
    assert meta["runs_missing"] == 0 and meta["command"][:3] == ["renyilib", "zoo", "measure"]
    # --export with --shard is refused; a bad shard is an argparse error
    assert (
        main(["zoo", "measure", *env, "--profile", "smoke", "--shard", "0/2", "--export", "x"]) == 2
    )
    for bad in ("2/2", "a/b", "1"):
        with pytest.raises(SystemExit):
            main(["zoo", "measure", *env, "--profile", "smoke", "--shard", bad])


def test_export_needs_finished_runs(env, tmp_path):
    with pytest.raises(ValueError, match="no finished run"):
        main(["zoo", "export", *env, "--profile", "smoke", "--dest", str(tmp_path / "r")])
    assert main(["zoo", "run", *env, "--profile", "smoke", "--index", "1", "--no-progress"]) == 0
    assert main(["zoo", "export", *env, "--profile", "smoke", "--dest", str(tmp_path / "r")]) == 0
    meta = yaml.safe_load((tmp_path / "r" / "zoo_meta.json").read_text())
    assert (
        meta["runs"] == 1 and meta["grid_size"] == 4 and len(meta["trained_with_code_version"]) == 1
    )
