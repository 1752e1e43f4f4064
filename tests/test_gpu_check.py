"""``benchmarks/gpu_check.py`` in its ``--quick`` CPU mode, so that the GPU script never rots.

The script must run from a plain checkout with torch, numpy, scipy and pandas
only: the subprocess makes every other package the project uses unimportable
(``sys.modules[name] = None``) before running it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
#: Packages of the project's environment that the GPU machine may lack.
BLOCKED = [
    "yaml",
    "tqdm",
    "matplotlib",
    "torchvision",
    "sklearn",
    "vit_pytorch",
    "submitit",
    "papermill",
    "IPython",
]


def run_script(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    code = (
        "import sys, runpy\n"
        f"for name in {BLOCKED!r}:\n"
        "    sys.modules[name] = None\n"
        f"sys.argv = [{str(SCRIPT)!r}, *{args!r}]\n"
        f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    proc = run_script(["--out", str(out), "--quick", "--device", "cpu", "--threads", "1"], out)
    return proc, out


def test_quick_mode_runs_without_extra_packages_and_passes(quick):
    proc, out = quick
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    df = pd.read_csv(out / "gpu_check.csv")
    meta = json.loads((out / "gpu_check.meta.json").read_text())
    assert meta["passed"] is True and meta["failures"] == []
    assert meta["skipped_sections"] == []
    assert set(df.section) == {"accuracy", "resnet", "batching", "profile"}
    checks = df[df.passed.notna()]
    assert len(checks) == meta["checks"] > 0
    assert checks.passed.astype(bool).all()
    # Both dtypes were checked, products against the dense Hessian and profiles against CPU float64.
    acc = df[df.section == "accuracy"]
    for name in ("hvp_vs_dense", "entropy_vs_cpu64", "trace_vs_cpu64", "result_dtype_device"):
        assert set(acc[acc.name == name].variant) == {"float64", "float32"}, name
    hv64 = acc[(acc.name == "hvp_vs_dense") & (acc.variant == "float64")]
    assert len(hv64) == 4 and (hv64.value < 1e-10).all()  # three layers + "all"
    # The ResNet-18: 21 Conv/Linear weights in forward order, then "all".
    res = df[(df.section == "resnet") & (df.name == "hvp_s")]
    assert len(res) == 22 and res.block.iloc[-1] == "all" and res.block.iloc[0] == "stem.0.weight"
    assert (res.value > 0).all()
    assert meta["resnet"]["blocks"] == 22 and meta["resnet"]["width"] == 0.0625
    k = df[(df.section == "batching") & (df.name == "time_per_column_s")].k
    assert sorted(set(k)) == [1, 2, 4]
    paper = meta["paper_setting"]
    assert paper["num_probes"] == 100 and paper["lanczos_steps"] == 15
    assert paper["paper_setting_hours"] > 0 and paper["images_measured"] == 16
    assert meta["device"] == "cpu" and meta["torch"]


def test_no_cuda_without_quick_refuses(tmp_path):
    if __import__("torch").cuda.is_available():
        pytest.skip("a CUDA device is present")
    proc = run_script(["--out", str(tmp_path)], tmp_path)
    assert proc.returncode == 2 and "--quick" in proc.stderr
    assert not (tmp_path / "gpu_check.csv").exists()


def test_spent_budget_skips_every_section_and_fails(tmp_path):
    proc = run_script(
        ["--out", str(tmp_path), "--quick", "--device", "cpu", "--budget-s", "0"], tmp_path
    )
    assert proc.returncode == 1
    meta = json.loads((tmp_path / "gpu_check.meta.json").read_text())
    assert meta["passed"] is False and meta["checks"] == 0
    assert meta["skipped_sections"] == ["accuracy", "resnet_setup"]


def test_recorder_fails_values_above_tolerance_and_nan():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    rec = gpu_check.Recorder()
    assert rec.check("s", "ok", 1e-12, 1e-10, block="b")
    assert not rec.check("s", "bad", 2e-10, 1e-10, block="b")
    assert not rec.check("s", "nan", float("nan"), 1e-10)
    assert len(rec.failures) == 2 and "bad (block=b)" in rec.failures[0]
    assert [r["passed"] for r in rec.rows] == [True, False, False]


def test_a_failing_section_is_recorded_and_the_files_are_still_written(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))

    def broken(*args, **kwargs):
        raise RuntimeError("no such kernel")

    monkeypatch.setattr(gpu_check, "run_accuracy", broken)
    monkeypatch.setattr(gpu_check, "resnet_setup", broken)
    assert gpu_check.main(["--out", str(tmp_path), "--quick", "--device", "cpu"]) == 1
    meta = json.loads((tmp_path / "gpu_check.meta.json").read_text())
    assert meta["passed"] is False
    assert meta["failures"] == [
        "accuracy: RuntimeError: no such kernel",
        "resnet_setup: RuntimeError: no such kernel",
    ]
    df = pd.read_csv(tmp_path / "gpu_check.csv")
    assert list(df.name) == ["error", "error"] and list(df.section) == ["accuracy", "resnet_setup"]
