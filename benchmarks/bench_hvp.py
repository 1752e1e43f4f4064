"""Cost of one Hessian-vector product, as a ratio to one plain gradient of the same loss.

On the reference workload (benchmarks/workload.py), for every block, the best
wall time (minimum over interleaved rounds, see ``workload.compare``) of:

``gradient``            forward + ``autograd.grad(L, θ_B)``: the baseline (ratio 1).
``jvp-grad (k=1)``      forward-over-reverse ``torch.func.jvp(torch.func.grad(L))``, one vector.
``jvp-grad vmap (k)``   the same vmapped over ``k`` probes; time per product = time / k.
``linearize vmap (k)``  ``torch.func.linearize`` of the gradient (traced once), vmapped over
                        ``k`` probes, written out here (independent of renyilib).
``double-bwd reuse``    ``autograd.grad(g, θ_B, v, retain_graph=True)`` through one kept
                        ``create_graph`` gradient (the graph's one-off cost is reported as
                        ``graph setup``).
``double-bwd recompute``forward + gradient with graph + backward, per product.
``renyilib op @ v``     ``renyilib.hessian.hessian_operator(..., backend="graph") @ v``.
``renyilib op @ V``     the same with ``V`` of shape (n, k); time per column.
``renyilib jvp op @ V`` ``hessian_operator(..., backend="jvp") @ V``; time per column.
``renyilib linearize op @ v`` / ``@ V``  ``hessian_operator(..., backend="linearize")``
                        for one vector and for ``V`` (n, k); time per column. The
                        one-off cost of linearizing (gradient + trace + constant
                        folding, per batch) is reported as ``linearize setup (one-off)``.
``renyilib default op @ v`` / ``@ V``  ``hessian_operator(...)`` with its default
                        ``backend="auto"`` (the reused graph, columns in a loop).
``pyhessian hvp``       PyHessian 0.1's ``hessian_vector_product`` on its kept graph.
``* Lanczos step``      one step of SLQ (product + full reorthogonalization + bookkeeping)
                        for PyHessian's ``density`` and renyilib's ``slq`` (15 steps, 1 probe).

Run: ``python benchmarks/bench_hvp.py`` (or ``make bench``). Writes
``benchmarks/results/hvp.csv`` and ``hvp.meta.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pyhessian_route import BlockHessian
from workload import (
    CLOCK,
    ROOT,
    Workload,
    compare,
    load_workload,
    machine_info,
    set_clock,
)

from renyilib.experiments.io import atomic_write, write_json
from renyilib.hessian import hessian_operator
from renyilib.lanczos import slq

RESULTS = ROOT / "benchmarks" / "results"


def bench_block(w: Workload, block: str, k: int = 10, repeats: int = 15) -> list[dict]:
    """Best seconds per product of every method for one block (see the module docstring)."""
    from torch.func import functional_call, grad, jvp, linearize, vmap

    model, loss_fn, x, y = w.model, w.loss_fn, w.x, w.y
    names = w.blocks[block]
    named = dict(model.named_parameters())
    params = [named[n] for n in names]
    n = sum(p.numel() for p in params)
    gen = torch.Generator().manual_seed(0)
    V = torch.randn(n, k, generator=gen)
    v = V[:, 0].contiguous()
    vs = [t.reshape(p.shape) for t, p in zip(v.split([p.numel() for p in params]), params)]

    def gradient():
        return torch.autograd.grad(loss_fn(model(x), y), params)

    consts = {nm: p.detach() for nm, p in named.items() if nm not in names}
    theta0 = torch.cat([p.detach().reshape(-1) for p in params])
    shapes, sizes = [p.shape for p in params], [p.numel() for p in params]

    def flat_loss(theta):
        block_params = {nm: t.reshape(s) for nm, t, s in zip(names, theta.split(sizes), shapes)}
        return loss_fn(functional_call(model, {**consts, **block_params}, (x,)), y)

    g_fn = grad(flat_loss)

    def fwd_rev(u):
        return jvp(g_fn, (theta0,), (u,))[1]

    # torch.func.linearize: the primal gradient is traced once, each call only
    # propagates tangents (not in renyilib; measured here as a candidate).
    prim = tuple(p.detach() for p in params)

    def loss_tuple(*ps):
        return loss_fn(functional_call(model, {**consts, **dict(zip(names, ps))}, (x,)), y)

    grad_tuple = grad(loss_tuple, argnums=tuple(range(len(names))))
    _, lin = linearize(grad_tuple, *prim)
    tangents = tuple(
        t.reshape(k, *p.shape) for t, p in zip(V.T.contiguous().split(sizes, dim=1), params)
    )

    def setup():
        return torch.autograd.grad(loss_fn(model(x), y), params, create_graph=True)

    g = setup()

    def recompute():
        gg = torch.autograd.grad(loss_fn(model(x), y), params, create_graph=True)
        return torch.autograd.grad(gg, params, vs)

    op = hessian_operator(model, loss_fn, (x, y), params=names, backend="graph")
    op_jvp = hessian_operator(model, loss_fn, (x, y), params=names, backend="jvp")
    op_lin = hessian_operator(model, loss_fn, (x, y), params=names, backend="linearize")
    op_lin_slq = hessian_operator(model, loss_fn, (x, y), params=names, backend="linearize")
    # The default ("auto"): the reused graph, columns in a loop, for every product.
    op_auto = hessian_operator(model, loss_fn, (x, y), params=names)
    steps = 15
    with BlockHessian(model, loss_fn, x, y, names) as bh:
        # name -> (callable, products per call)
        fns = {
            "gradient": (gradient, 1),
            "jvp-grad (k=1)": (lambda: fwd_rev(v), 1),
            f"jvp-grad vmap (k={k})": (lambda: vmap(fwd_rev, in_dims=1)(V), k),
            f"linearize vmap (k={k})": (lambda: vmap(lin)(*tangents), k),
            "linearize setup (one-off)": (lambda: linearize(grad_tuple, *prim), 1),
            "graph setup (one-off)": (setup, 1),
            "double-bwd reuse": (lambda: torch.autograd.grad(g, params, vs, retain_graph=True), 1),
            "double-bwd recompute": (recompute, 1),
            "renyilib op @ v": (lambda: op @ v, 1),
            f"renyilib op @ V (k={k})": (lambda: op @ V, k),
            f"renyilib jvp op @ V (k={k})": (lambda: op_jvp @ V, k),
            "renyilib linearize op @ v": (lambda: op_lin @ v, 1),
            f"renyilib linearize op @ V (k={k})": (lambda: op_lin @ V, k),
            "renyilib default op @ v": (lambda: op_auto @ v, 1),
            f"renyilib default op @ V (k={k})": (lambda: op_auto @ V, k),
            "pyhessian hvp": (lambda: bh.hvp(vs), 1),
            f"renyilib slq Lanczos step (m={steps})": (lambda: slq(op, 1, steps, seed=0), steps),
            f"renyilib linearize slq Lanczos step (m={steps})": (
                lambda: slq(op_lin_slq, 1, steps, seed=0),
                steps,
            ),
            f"pyhessian Lanczos step (m={steps})": (lambda: bh.density(1, steps, 0), steps),
        }
        best = compare({name: fn for name, (fn, _) in fns.items()}, repeats, warmup=1)
    rows = {name: best[name] / per for name, (_, per) in fns.items()}

    base = rows["gradient"]
    return [
        {
            "block": block,
            "dim": n,
            "method": m,
            "ms_per_product": 1e3 * t,
            "ratio_to_gradient": t / base,
        }
        for m, t in rows.items()
    ]


def run(
    w: Workload | None = None, blocks: list[str] | None = None, repeats: int = 10
) -> pd.DataFrame:
    """Benchmark every block (default: all blocks of the workload); save and return the table."""
    w = load_workload() if w is None else w
    blocks = list(w.blocks) if blocks is None else blocks
    rows = []
    for b in blocks:
        rows += bench_block(w, b, repeats=repeats)
    df = pd.DataFrame(rows)
    atomic_write(RESULTS / "hvp.csv", lambda tmp: df.to_csv(tmp, index=False, float_format="%.4g"))
    write_json(
        RESULTS / "hvp.meta.json", {**machine_info(), "workload": w.config, "workload_key": w.key}
    )
    return df


def report(df: pd.DataFrame) -> str:
    """A printable table: ms per product and the ratio to one gradient, methods × blocks."""
    ms = df.pivot(index="method", columns="block", values="ms_per_product")
    ratio = df.pivot(index="method", columns="block", values="ratio_to_gradient")
    order = list(dict.fromkeys(df["method"]))
    cols = list(dict.fromkeys(df["block"]))
    table = (
        ms.loc[order, cols].map(lambda t: f"{t:7.2f}")
        + " ms ("
        + ratio.loc[order, cols].map(lambda r: f"{r:5.2f}x")
        + ")"
    )
    return table.to_string()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    set_clock(args.clock)
    df = run(repeats=args.repeats)
    print(
        f"\n== Hessian-vector product cost (best ms per product on the {CLOCK['name']} clock, ratio to one gradient)"
    )
    print(report(df))
    return 0


if __name__ == "__main__":
    sys.exit(main())
