"""Zoo submission through submitit: local and debug executors end to end, Slurm up to ``sbatch``.

A tiny digits zoo (the ``smoke`` profile of a test ``_config.yml``: two SGD
runs of one epoch on 64 digits) is trained through submitit's local executor
(a real worker process) and measured through its debug executor; resubmitting
submits nothing. The Slurm path runs against fake ``srun`` / ``sbatch``
commands: the job array's script and pickled elements are checked, and one
element is executed the way a Slurm node would (``DelayedSubmission.result``).
"""

from __future__ import annotations

import os
import stat
import sys
import textwrap
from pathlib import Path

import pytest

submitit = pytest.importorskip("submitit")

from renyilib.experiments import cli, submit, zoo  # noqa: E402

CONFIG = """
experiments:
  zoo:
    smoke:
      defaults:
        epochs: 1
        warmup_epochs: 0
        lr_scaling: false
        base_batch_size: 32
        augment: false
        seeds: [0]
        width: 0.5
        train_subset: 64
        test_subset: 32
        data_seed: 0
        eval_every: 1
        grid:
          sgd: {lr: [0.03, 0.1], batch_size: [32], weight_decay: [1.0e-5]}
  correlation:
    smoke:
      zoo_profile: smoke
      renyi: {num_probes: 2, lanczos_steps: 3, method: slq, alphas: [0.5, 2.0],
              subset: 32, subset_seed: 0, seed: 0}
      baselines: {which: [param_norm], subset: 32, subset_seed: 0, seed: 0}
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "_config.yml"
    path.write_text(CONFIG)
    return path


def _statuses(out: Path, config: Path) -> list[str]:
    configs = zoo.grid("digits-cnn", "smoke", config_path=config)
    return [zoo.run_status(zoo.run_dir(out, c)) for c in configs]


def test_local_executor_trains_the_zoo_and_resubmitting_submits_nothing(tmp_path, config):
    out = tmp_path / "zoo"
    sub = submit.submit_run(
        ["digits-cnn"], "smoke", out, executor="local", config=config, timeout_min=10
    )
    # array_parallelism defaults to one local worker running both runs in turn
    assert len(sub.jobs) == 1 and len(sub.commands) == 2 and sub.skipped == 0
    assert [a[-2:] for a in sub.argvs[0]] == [["--index", "0"], ["--index", "1"]]
    results = sub.wait()
    log = "".join(p.read_text() for p in sub.folder.glob("*_log.*"))
    assert results == [[0, 0]], log[-3000:]
    assert _statuses(out, config) == ["done", "done"]
    assert (sub.folder / f"{sub.job_ids[0]}_0_result.pkl").is_file()
    weights = sorted(out.glob("digits-cnn/*/weights.pt"))
    mtimes = [p.stat().st_mtime_ns for p in weights]
    again = submit.submit_run(["digits-cnn"], "smoke", out, executor="local", config=config)
    assert again.jobs == [] and again.commands == [] and again.skipped == 2
    assert [p.stat().st_mtime_ns for p in weights] == mtimes  # nothing retrained

    # measuring: 3 shards of 2 runs -> shard 2 holds no run and is not submitted
    m = submit.submit_measure(["digits-cnn"], "smoke", out, 3, executor="debug", config=config)
    assert [a[-1] for g in m.argvs for a in g] == ["0/3", "1/3"] and m.skipped == 1
    assert m.wait() == [[0, 0]]
    files = sorted(out.glob("digits-cnn/*/measures/*.json"))
    assert len(files) == 4  # Rényi profile + baselines for each run
    stamp = [f.stat().st_mtime_ns for f in files]
    assert submit.submit_measure(
        ["digits-cnn"], "smoke", out, 3, executor="debug", config=config
    ).wait() == [[0, 0]]
    assert [f.stat().st_mtime_ns for f in files] == stamp  # read from the cache


def test_cli_executor_debug_runs_one_index_then_the_rest(tmp_path, config, capsys):
    out = tmp_path / "zoo"
    base = ["zoo", "run", "--task", "digits-cnn", "--profile", "smoke", "--out", str(out)]
    base += ["--config", str(config), "--no-progress", "--executor", "debug"]
    assert cli.main([*base, "--index", "1"]) == 0
    assert _statuses(out, config) == ["missing", "done"]
    assert cli.main(base) == 0
    text = capsys.readouterr().out
    assert "debug: 1 runs in 1 job(s), 1 already done" in text
    assert "--index 0" in text and "1 of 1 job(s) finished, 0 failed" in text
    assert _statuses(out, config) == ["done", "done"]
    assert cli.main(base) == 0
    assert "debug: 0 runs in 0 job(s), 2 already done" in capsys.readouterr().out


def test_cli_rejects_contradicting_options(tmp_path, config, capsys):
    base = ["zoo", "measure", "--task", "digits-cnn", "--profile", "smoke"]
    base += ["--out", str(tmp_path), "--config", str(config)]
    assert cli.main([*base, "--executor", "debug", "--shard", "0/2"]) == 2
    assert cli.main([*base, "--executor", "debug", "--export", str(tmp_path / "x")]) == 2
    assert cli.main([*base, "--shards", "3"]) == 2
    assert cli.main([*base, "--executor", "debug", "--slurm-arg", "account"]) == 2
    run = ["zoo", "run", "--task", "digits-cnn", "--profile", "smoke", "--out", str(tmp_path)]
    run += ["--config", str(config), "--executor", "debug"]
    assert cli.main([*run, "--jobs", "2"]) == 2
    assert cli.main([*run, "--index", "7"]) == 2
    err = capsys.readouterr().err
    assert "--shards N" in err and "KEY=VALUE" in err and "--array-parallelism" in err
    assert "indices" in err


def test_a_failing_element_fails_its_job_after_running_the_others(tmp_path, config, capsys):
    out = tmp_path / "zoo"
    common = ["--task", "digits-cnn", "--profile", "smoke", "--out", str(out)]
    common += ["--config", str(config), "--no-progress"]
    bad = ["zoo", "run", *common, "--index", "9"]
    good = ["zoo", "run", *common, "--index", "0"]
    with pytest.raises(RuntimeError, match="--index 9 \\(exit 2\\)"):
        submit.zoo_job(bad, good)
    assert _statuses(out, config) == ["done", "missing"]  # the good one still ran


def test_bad_arguments_raise(tmp_path, config):
    with pytest.raises(ValueError, match="executor"):
        submit.make_executor("pbs", tmp_path)
    with pytest.raises(ValueError, match="gpus_per_node"):
        submit.make_executor("debug", tmp_path, gpus_per_node=-1)
    with pytest.raises(ValueError, match="timeout_min"):
        submit.make_executor("debug", tmp_path, timeout_min=0)
    with pytest.raises(ValueError, match="mem_gb"):
        submit.make_executor("debug", tmp_path, mem_gb="8G")
    with pytest.raises(ValueError, match="shards"):
        submit.measure_argvs(["digits-cnn"], "smoke", tmp_path, 0, config=config)
    with pytest.raises(ValueError, match="tasks"):
        submit.pending_indices("digits-cnn", "smoke", tmp_path, config=config)
    with pytest.raises(KeyError, match="nope"):
        submit.pending_indices(["nope"], "smoke", tmp_path, config=config)
    with pytest.raises(ValueError, match="indices"):
        submit.submit_run(
            ["digits-cnn"], "smoke", tmp_path, executor="debug", indices=[2], config=config
        )


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """``srun`` and ``sbatch`` on PATH: sbatch keeps the script and answers with job 4242."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = tmp_path / "sbatch"
    scripts.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text(
        textwrap.dedent(
            f"""\
            #!/bin/sh
            cp "$1" {scripts}/
            echo "Submitted batch job 4242"
            """
        )
    )
    for f in bin_dir.iterdir():
        f.chmod(f.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return scripts


@pytest.mark.skipif(sys.platform == "win32", reason="shell scripts")
def test_slurm_job_array_one_element_per_run(tmp_path, config, fake_slurm):
    out = tmp_path / "zoo"
    sub = submit.submit_run(
        ["digits-cnn"],
        "smoke",
        out,
        executor="slurm",
        config=config,
        partition="gpu",
        gpus_per_node=1,
        cpus_per_task=4,
        mem_gb=16,
        timeout_min=90,
        array_parallelism=8,
        setup=["source .venv/bin/activate"],
        slurm_args={"account": "proj"},
        device="cuda",
    )
    assert sub.job_ids == ["4242_0", "4242_1"]
    assert [len(g) for g in sub.argvs] == [1, 1]
    (script,) = fake_slurm.iterdir()
    text = script.read_text()
    for line in (
        "#SBATCH --array=0-1%2",
        "#SBATCH --partition=gpu",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=16GB",
        "#SBATCH --time=90",
        "#SBATCH --account=proj",
        "#SBATCH --job-name=zoo-run-smoke",
        "source .venv/bin/activate",
    ):
        assert line in text, line
    # What the node runs for element 1: the pickled call, here in this process on the CPU.
    from submitit.core.utils import DelayedSubmission

    pickles = sorted(sub.folder.glob("4242_*_submitted.pkl"))
    assert [p.name for p in pickles] == ["4242_0_submitted.pkl", "4242_1_submitted.pkl"]
    delayed = DelayedSubmission.load(pickles[1])
    (group,) = delayed.args
    assert group == [sub.argvs[1][0]] and group[0][-2:] == ["--index", "1"]
    assert group[0][group[0].index("--device") + 1] == "cuda"
    i = group[0].index("--device")
    cpu_group = [group[0][:i] + group[0][i + 2 :]]
    assert delayed.function(cpu_group) == [0]
    assert _statuses(out, config) == ["missing", "done"]


def test_slurm_without_srun_is_an_error_not_a_traceback(tmp_path, config, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun here
    argv = ["zoo", "run", "--task", "digits-cnn", "--profile", "smoke", "--out", str(tmp_path)]
    argv += ["--config", str(config), "--executor", "slurm", "--partition", "gpu"]
    assert cli.main(argv) == 2
    assert "srun" in capsys.readouterr().err
    assert not (tmp_path / "submitit").exists() or not any((tmp_path / "submitit").iterdir())


def test_nothing_to_submit_creates_no_executor_folder(tmp_path, config):
    # no finished run: no measurement shard has work, and nothing is written
    sub = submit.submit_measure(
        ["digits-cnn"], "smoke", tmp_path / "zoo", 4, executor="slurm", config=config
    )
    assert sub.jobs == [] and sub.skipped == 4 and not (tmp_path / "zoo").exists()
