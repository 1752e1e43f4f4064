"""Overhead of the whole Rényi profile over its Hessian-vector products.

The profile is what a user asks for: ``renyi_sharpness`` on every layer block
and "all", every α of ``PAPER_ALPHAS`` (37 orders), then the trace and a
200-point density of each block from the same quadratures. Its cost should
be essentially that of its products:

    ratio = T_profile / Σ_blocks (products_b × t_b + setup_b)  ≤ 1.1   (issue 2)

with ``T_profile`` the best of 2 runs (after an untimed warm-up), ``products_b``
the operator's own count (``num_matvecs``, including the one-off graph or
deflation work) and ``t_b`` the best time of one product of
block b, measured in the same process with the same method and probe batch
(``op @ V`` with V of shape (n, probe_batch), divided by probe_batch). The
remainder is Lanczos reorthogonalization, the tridiagonal eigenproblems, the
Rényi/trace/density evaluation and Python overhead. For
``backend="linearize"`` the denominator adds each block's one-off
linearization (tracing, functionalization, constant folding, timed once): the
ratio is the overhead beyond the Hessian work. The default ``backend="auto"``
is the reused graph (no set-up beyond the graph itself).

Run: ``python benchmarks/bench_profile.py``; writes ``benchmarks/results/profile.csv``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import CLOCK, ROOT, Workload, clock, compare, load_workload, machine_info, set_clock

from renyilib.experiments.io import atomic_write, write_json
from renyilib.hessian import hessian_operator
from renyilib.renyi import PAPER_ALPHAS, renyi_sharpness

RESULTS = ROOT / "benchmarks" / "results"


def profile_once(
    w: Workload, probes: int, steps: int, method: str, batch: int, seed: int = 0, rounds: int = 2
) -> dict:
    """Time one full profile and its products; return the totals and per-block rows."""
    # Untimed warm-up with the same method on the smallest block, with enough products
    # (10 x 10) for "linearize" to trace: one-off per-process costs (the first make_fx
    # trace initializes torch.fx, about 2 s) are not the profile's; the product times
    # below are warm too.
    smallest = min(
        w.blocks,
        key=lambda b: sum(dict(w.model.named_parameters())[p].numel() for p in w.blocks[b]),
    )
    renyi_sharpness(
        w.model, w.loss_fn, (w.x, w.y), [1.0], blocks=[smallest], num_probes=10,
        lanczos_steps=10, seed=seed, progress=False, backend=method, probe_batch=10,
    )  # fmt: skip
    total = float("inf")
    for _ in range(rounds):  # best of `rounds`, like the product times (best of 5)
        t0 = clock()
        df, quads = renyi_sharpness(
            w.model, w.loss_fn, (w.x, w.y), PAPER_ALPHAS, blocks="both", num_probes=probes,
            lanczos_steps=steps, seed=seed, progress=False, backend=method,
            probe_batch=batch, return_quadratures=True,
        )  # fmt: skip
        for q in quads.values():
            q.trace()
            lo, hi = float(np.min(q.nodes)), float(np.max(q.nodes))
            q.density(np.linspace(lo, hi, 200), sigma=max(hi - lo, 1e-12) / 100)
        total = min(total, clock() - t0)
    per_block = df.groupby("block", sort=False).first()
    rows = []
    for b, r in per_block.iterrows():
        t0 = clock()
        op = hessian_operator(w.model, w.loss_fn, (w.x, w.y), w.blocks[b], backend=method)
        setup = clock() - t0 if method == "linearize" else 0.0
        V = torch.randn(op.shape[0], batch, generator=torch.Generator().manual_seed(1))
        t_prod = compare({"p": lambda op=op, V=V: op @ V}, repeats=5, warmup=1)["p"] / batch
        rows.append(
            {
                "method": method,
                "block": b,
                "dim": int(r["dim"]),
                "products": int(r["num_matvecs"]),
                "ms_per_product": 1e3 * t_prod,
                "products_seconds": int(r["num_matvecs"]) * t_prod,
                "setup_seconds": setup,
                "block_seconds": float(r["seconds"]),
            }
        )
    rows_df = pd.DataFrame(rows)
    return {
        "method": method,
        "profile_seconds": total,
        "products": int(rows_df["products"].sum()),
        "products_seconds": float(rows_df["products_seconds"].sum()),
        "setup_seconds": float(rows_df["setup_seconds"].sum()),
        "ratio": total / float(rows_df["products_seconds"].sum() + rows_df["setup_seconds"].sum()),
        "rows": rows_df,
    }


def run(
    probes: int = 20,
    steps: int = 15,
    batch: int = 10,
    methods=("auto", "graph", "jvp", "linearize"),
) -> pd.DataFrame:
    w = load_workload()
    results = [profile_once(w, probes, steps, m, batch) for m in methods]
    rows = pd.concat([r["rows"] for r in results], ignore_index=True)
    summary = pd.DataFrame([{k: v for k, v in r.items() if k != "rows"} for r in results])
    atomic_write(
        RESULTS / "profile.csv", lambda tmp: rows.to_csv(tmp, index=False, float_format="%.5g")
    )
    write_json(
        RESULTS / "profile.meta.json",
        {
            **machine_info(),
            "workload": w.config,
            "probes": probes,
            "steps": steps,
            "probe_batch": batch,
            "alphas": len(PAPER_ALPHAS),
            "summary": summary.to_dict(orient="records"),
        },
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--probes", type=int, default=20)
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--batch", type=int, default=10, help="probe_batch of slq")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    set_clock(args.clock)
    summary = run(args.probes, args.steps, args.batch)
    print(
        f"\n== whole profile ({len(PAPER_ALPHAS)} α, every layer + all, trace, density; "
        f"l={args.probes}, m={args.steps}, probe_batch={args.batch}; {CLOCK['name']} clock)"
    )
    for _, r in summary.iterrows():
        print(
            f"  backend={r['method']:9s}: {r['profile_seconds']:6.2f} s for {r['products']} products "
            f"({r['products_seconds']:.2f} s of products + {r['setup_seconds']:.2f} s of one-off "
            f"linearization): ratio {r['ratio']:.2f} (target ≤ 1.1)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
