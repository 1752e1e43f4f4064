"""Exact Hessian trace from the diagonal identity vs n HVPs vs Hutchinson, as ratios in one run.

Minimum sharpness (Ibayashi et al. 2021) rests on computing Tr H exactly and
cheaply from the Gauss–Newton identity for the diagonal
(``renyilib.diagonal``). This benchmark times, on one clock and in one
process (``renyilib.experiments.trace_cost.trace_cost``):

* the exact diagonal (per-sample Jacobians, ``method="ggn"``), summed;
* the naive exact route, ``n`` Hessian-vector products ``H e_i`` (renyilib's
  default operator; for large ``n`` only ``--hvp-columns`` columns are computed
  and the time is scaled by ``n / columns``);
* Hutchinson's estimator with the number of Rademacher probes whose standard
  error is 1% of the trace (per-probe variance from a 64-probe pilot, priced
  at the pilot's time per probe);

on three models: the paper's "SmallMLP" (784-20-20-10, 16,330 parameters) and
"SmallCNN" (conv5×5/20 - max-pool - conv5×5/20 - max-pool - linear, 13,750
parameters) at initialization, as in the authors' timing runs, on 1,000
scikit-learn digits upsampled to 28×28 (no MNIST on this machine); and the
trained reference digits CNN of ``workload.py`` (2,154 parameters, 512 digits).
Writes ``benchmarks/results/diagonal.csv`` and ``diagonal.meta.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import CLOCK, ROOT, clock, load_workload, machine_info, set_clock

from renyilib.experiments.data import load_data
from renyilib.experiments.io import atomic_write, write_json
from renyilib.experiments.trace_cost import trace_cost

RESULTS = ROOT / "benchmarks" / "results"


def small_mlp() -> nn.Module:
    """The authors' SmallMLP: 784-20-20-10 with ReLU (16,330 parameters)."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 20),
        nn.ReLU(),
        nn.Linear(20, 20),
        nn.ReLU(),
        nn.Linear(20, 10),
    )


def small_cnn() -> nn.Module:
    """The authors' SmallCNN on 1×28×28 (13,750 parameters)."""
    return nn.Sequential(
        nn.Conv2d(1, 20, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(20, 20, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(320, 10),
    )


def digits28(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` stratified training digits, normalized, bilinearly upsampled from 8×8 to 28×28."""
    x, y = load_data("digits", progress=False).subset(n, seed=seed)
    x = torch.nn.functional.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
    return x, y


def run(samples: int, hvp_columns: int, rel_err: float) -> pd.DataFrame:
    """Time the three routes on the three models; save and return the table."""
    ce = nn.CrossEntropyLoss()
    x, y = digits28(samples)
    w = load_workload(verbose=False)
    cases = []
    for name, make in (("SmallMLP", small_mlp), ("SmallCNN", small_cnn)):
        torch.manual_seed(0)
        cases.append((name, make().eval(), (x, y), hvp_columns))
    cases.append(("digits-cnn (trained)", w.model.eval(), (w.x, w.y), None))
    rows = []
    for name, model, data, columns in cases:
        res = trace_cost(model, ce, data, rel_err=rel_err, hvp_columns=columns, clock=clock)
        rows.append({"model": name, **res})
        print(
            f"{name:>22s}: n={res['n']:6d}, N={res['samples']:5d}, Tr H={res['trace']:.4g}; "
            f"diagonal {res['seconds_diagonal']:.3f} s, "
            f"n HVPs {res['seconds_hvp_loop']:.1f} s"
            f"{' (extrapolated)' if res['hvp_extrapolated'] else ''} = "
            f"{res['hvp_over_diagonal']:.0f}x, "
            f"Hutchinson {res['hutchinson_probes']} probes {res['seconds_hutchinson']:.1f} s = "
            f"{res['hutchinson_over_diagonal']:.0f}x",
            flush=True,
        )
    df = pd.DataFrame(rows)
    atomic_write(
        RESULTS / "diagonal.csv", lambda tmp: df.to_csv(tmp, index=False, float_format="%.5g")
    )
    write_json(
        RESULTS / "diagonal.meta.json",
        {
            **machine_info(),
            "samples": samples,
            "hvp_columns": hvp_columns,
            "rel_err": rel_err,
            "workload": w.config,
            "workload_key": w.key,
        },
    )
    return df


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    parser.add_argument("--samples", type=int, default=1000, help="upsampled digits (paper: 1000)")
    parser.add_argument("--hvp-columns", type=int, default=512, help="HVP columns actually run")
    parser.add_argument("--rel-err", type=float, default=0.01)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    set_clock(args.clock)
    print(f"\n== exact Tr H: diagonal identity vs n HVPs vs Hutchinson ({CLOCK['name']} clock)")
    run(args.samples, args.hvp_columns, args.rel_err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
