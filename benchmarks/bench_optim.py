"""Time per optimizer step of SGD, SAM, ASAM, Eigen-SAM and RSAM, as ratios to SGD and SAM.

Two small models on a fixed batch of 128 (float32, CPU unless CUDA is there):
the digits CNN with BatchNorm (8x8 inputs, ~7k parameters) and a ResNet-20 at
width 0.5 on 32x32 inputs (~70k parameters). Each timed call is one
``optimizer.step(closure)`` (closure = zero_grad + forward + backward), so SGD
costs one pass and the SAM family two. Times are the best over interleaved
rounds (``workload.compare``: every round calls every optimizer once, so load
from other processes hits all alike). Eigen-SAM's power iteration (5
iterations, 2 passes each) runs every ``freq`` = 100 steps; it is timed apart
and reported amortized.

Run: ``python benchmarks/bench_optim.py [--repeats 15]``. Writes
``benchmarks/results/optim.csv`` and ``optim.meta.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import ROOT, compare, machine_info

from renyilib.experiments.config import default_device
from renyilib.experiments.io import atomic_write, write_json
from renyilib.experiments.models import build_model
from renyilib.optim import build_optimizer

RESULTS = ROOT / "benchmarks" / "results"
FREQ = 100

METHODS = {
    "SGD": ("sgd", {}),
    "SAM": ("sam", {"rho": 0.05}),
    "ASAM": ("asam", {"rho": 0.5, "eta": 0.01}),
    "Eigen-SAM (no update)": ("eigensam", {"rho": 0.05, "alpha": 0.2, "freq": 10**9}),
    "Eigen-SAM (update step)": ("eigensam", {"rho": 0.05, "alpha": 0.2, "freq": 1}),
    "RSAM": ("rsam", {"rho": 0.65, "alpha": 1.2}),
    "RSAM fixed radius": ("rsam", {"rho": 0.05, "alpha": 1.2, "radius": "fixed"}),
}


def setups(device: torch.device) -> dict[str, tuple[nn.Module, torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    out = {}
    torch.manual_seed(0)
    cnn = build_model("digits-cnn", 10, in_channels=1, image_size=8, batchnorm=True)
    out["digits-cnn+BN"] = (
        cnn,
        torch.randn(128, 1, 8, 8, generator=gen),
        torch.randint(0, 10, (128,), generator=gen),
    )
    torch.manual_seed(0)
    res = build_model("resnet20", 10, in_channels=3, image_size=32, width=0.5)
    out["resnet20 (width 0.5)"] = (
        res,
        torch.randn(128, 3, 32, 32, generator=gen),
        torch.randint(0, 10, (128,), generator=gen),
    )
    return {k: (m.to(device), x.to(device), y.to(device)) for k, (m, x, y) in out.items()}


def bench(model: nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int) -> dict[str, float]:
    loss_fn = nn.CrossEntropyLoss()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    fns = {}
    for label, (name, kw) in METHODS.items():
        opt = build_optimizer(name, model, lr=1e-3, momentum=0.9, weight_decay=5e-4, **kw)

        def step(opt: torch.optim.Optimizer = opt) -> None:
            def closure() -> torch.Tensor:
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), y)
                loss.backward()
                return loss

            opt.step(closure)
            if x.is_cuda:
                torch.cuda.synchronize()

        fns[label] = step
    best = compare(fns, repeats=repeats, warmup=2)
    model.load_state_dict(init)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = default_device()
    rows = []
    for setup, (model, x, y) in setups(device).items():
        best = bench(model, x, y, args.repeats)
        t_plain = best.pop("Eigen-SAM (no update)")
        t_update = best.pop("Eigen-SAM (update step)")
        best["Eigen-SAM (amortized, freq=100)"] = t_plain + (t_update - t_plain) / FREQ
        best["Eigen-SAM update step"] = t_update
        for label, sec in best.items():
            rows.append(
                {
                    "setup": setup,
                    "method": label,
                    "ms_per_step": 1e3 * sec,
                    "vs_SGD": sec / best["SGD"],
                    "vs_SAM": sec / best["SAM"],
                }
            )
    df = pd.DataFrame(rows)
    with pd.option_context("display.float_format", "{:.2f}".format):
        print(df.to_string(index=False))
    text = df.to_csv(index=False, float_format="%.4g")
    atomic_write(RESULTS / "optim.csv", lambda tmp: tmp.write_text(text))
    write_json(
        RESULTS / "optim.meta.json",
        {**machine_info(), "device": str(device), "repeats": args.repeats, "freq": FREQ},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
