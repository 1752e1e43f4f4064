"""Per-column cost of the Hessian-product backends on three architectures (issue 18.5/18.6).

For each workload and block, the best process-CPU time per column of an
``(n, k)`` product (``k`` columns, best of ``--repeats`` interleaved rounds
after one warm-up, one torch thread) of ``renyilib.hessian.hessian_operator``
with each backend, in units of one plain gradient of the same block:

``graph loop``      a reused double-backward graph, one backward per column
                    (PyHessian's ``hessian_vector_product``, the peer's method).
``graph vmap``      the same graph, columns vmapped (``is_grads_batched``).
``jvp vmap``        forward-over-reverse ``jvp(grad)``, columns vmapped.
``linearize vmap``  a traced and constant-folded linearized gradient map
                    (only while the backend still exists), columns vmapped;
                    its one-off set-up is reported in gradients.
``default``         ``hessian_operator(...)`` with its defaults.
``pyhessian hvp``   PyHessian 0.1's ``hessian_vector_product`` (if installed, ``make bench``).

Workloads: ``digits`` (the reference digits CNN of ``workload.py``, 2,154
parameters, 512 digits), ``heldout`` (two padded 3×3 convolutions, adaptive
average pooling, two linear layers: 3,738 parameters, 512 digits; the
architecture of issue 18.6) and ``resnet`` (the CIFAR ResNet-18 of
``renyilib.experiments.models`` at width 0.125, 256 random CIFAR-shaped
inputs, one middle convolution). Untrained weights (timing does not depend on
training). Writes ``benchmarks/results/backends.csv`` and ``.meta.json``.

With ``--profile``, also the whole profile at equal (l, m) = (20, 15):
``renyi_sharpness(..., blocks="both")`` with the defaults against PyHessian's
``density`` per block (``pyhessian_route.pyhessian_profile``), best of
``--rounds`` (``backends_profile.csv``).

Run: ``python benchmarks/bench_backends.py [--only digits heldout resnet] [--profile]``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import pandas as pd
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import CONFIG, ROOT, build_model, clock, load_samples, machine_info

from renyilib.experiments.io import atomic_write, code_version, write_json
from renyilib.hessian import BACKENDS, hessian_operator

RESULTS = ROOT / "benchmarks" / "results"


def heldout_cnn() -> nn.Module:
    """Two padded 3×3 convolutions, adaptive average pooling, two linear layers (3,738 parameters)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(3),
        nn.Flatten(),
        nn.Linear(144, 16),
        nn.ReLU(),
        nn.Linear(16, 10),
    ).eval()


def workloads(only: list[str]) -> dict[str, tuple[nn.Module, torch.Tensor, torch.Tensor, list]]:
    out = {}
    if "digits" in only or "heldout" in only:
        x, y = load_samples(CONFIG)
    if "digits" in only:
        out["digits"] = (build_model(CONFIG), x, y, ["features.4.weight", "all"])
    if "heldout" in only:
        out["heldout"] = (heldout_cnn(), x, y, ["all"])
    if "resnet" in only:
        from renyilib.experiments.models import build_model as build

        torch.manual_seed(0)
        model = build("resnet18", num_classes=10, width=0.125).eval()
        g = torch.Generator().manual_seed(0)
        xr = torch.randn(256, 3, 32, 32, generator=g)
        yr = torch.randint(0, 10, (256,), generator=g)
        names = [n for n, _ in model.named_parameters() if n.endswith("conv1.weight")]
        out["resnet"] = (model, xr, yr, [names[len(names) // 2]])
    return out


def per_column(op, V: torch.Tensor) -> float:
    t0 = clock()
    op @ V
    return (clock() - t0) / V.shape[1]


def bench(name, model, x, y, block, k, repeats) -> list[dict]:
    loss_fn = nn.CrossEntropyLoss()
    params = [p for n, p in model.named_parameters() if block in ("all", n)]
    if block != "all":
        params = [dict(model.named_parameters())[block]]

    def gradient() -> float:
        t0 = clock()
        torch.autograd.grad(loss_fn(model(x), y), params)
        return clock() - t0

    variants = {
        "graph loop": {"backend": "graph", "batched": False},
        "graph vmap": {"backend": "graph", "batched": True},
        "jvp vmap": {"backend": "jvp"},
    }
    if "linearize" in BACKENDS:
        variants["linearize vmap"] = {"backend": "linearize", "batched": True}
    variants["default"] = {}
    ops, setup = {}, {}
    for label, kw in variants.items():
        t0 = clock()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            op = hessian_operator(model, loss_fn, (x, y), block, **kw)
            if label == "default":
                op.plan(10_000)
        setup[label] = clock() - t0
        ops[label] = op
    n = next(iter(ops.values())).shape[0]
    V = torch.randn(n, k, generator=torch.Generator().manual_seed(1))
    best = {label: float("inf") for label in ops}
    best["gradient"] = float("inf")
    for op in ops.values():  # warm-up
        op @ V[:, :2]
    for _ in range(repeats):
        best["gradient"] = min(best["gradient"], gradient())
        for label, op in ops.items():
            best[label] = min(best[label], per_column(op, V))
    g = best["gradient"]
    peer = _pyhessian_per_column(model, loss_fn, x, y, block, V, repeats)
    if peer is not None:
        best["pyhessian hvp"], setup["pyhessian hvp"] = peer, 0.0
        ops["pyhessian hvp"] = None
    rows = []
    for label in ops:
        rows.append(
            {
                "workload": name,
                "block": block,
                "dim": n,
                "samples": int(x.shape[0]),
                "method": label,
                "backend_used": "pyhessian" if ops[label] is None else ops[label].backend,
                "seconds_per_column": best[label],
                "ratio_to_gradient": best[label] / g,
                "setup_gradients": setup[label] / g,
                "gradient_seconds": g,
            }
        )
        print(
            f"{name:8s} {block:28s} n={n:6d} {label:15s} {best[label] * 1e3:9.2f} ms/col "
            f"({best[label] / g:5.2f} grad)  setup {setup[label] / g:7.1f} grad",
            flush=True,
        )
    return rows


def _pyhessian_per_column(model, loss_fn, x, y, block, V, repeats) -> float | None:
    """PyHessian 0.1's ``hessian_vector_product`` per column (None if PyHessian is missing)."""
    import importlib.util

    if importlib.util.find_spec("pyhessian") is None:
        return None
    from pyhessian_route import BlockHessian

    names = [n for n, _ in model.named_parameters()] if block == "all" else [block]
    shapes = [dict(model.named_parameters())[n].shape for n in names]
    cols = [
        [c.reshape(s) for c, s in zip(V[:, j].split([s.numel() for s in shapes]), shapes)]
        for j in range(V.shape[1])
    ]
    best = float("inf")
    with BlockHessian(model, loss_fn, x, y, names) as bh:
        bh.hvp(cols[0])
        for _ in range(repeats):
            t0 = clock()
            for vs in cols:
                bh.hvp(vs)
            best = min(best, (clock() - t0) / len(cols))
    return best


def profile_vs_pyhessian(name, model, x, y, probes, steps, rounds) -> list[dict]:
    """End to end at equal (l, m): ``renyi_sharpness(blocks="both")`` against PyHessian's density."""
    import importlib.util

    from pyhessian_route import pyhessian_profile

    from renyilib.hessian import layer_blocks
    from renyilib.renyi import renyi_sharpness

    loss_fn = nn.CrossEntropyLoss()
    routes = {
        "renyilib default": lambda: renyi_sharpness(
            model, loss_fn, (x, y), [0.5, 1.5, 2.0], "both", probes, steps, progress=False
        ),
    }
    if importlib.util.find_spec("pyhessian") is not None:
        routes["pyhessian density"] = lambda: pyhessian_profile(
            model, loss_fn, x, y, layer_blocks(model), [0.5, 1.5, 2.0], probes, steps
        )
    best = {r: float("inf") for r in routes}
    for _ in range(rounds):
        for r, fn in routes.items():
            t0 = clock()
            fn()
            best[r] = min(best[r], clock() - t0)
    rows = []
    for r, t in best.items():
        rows.append({"workload": name, "route": r, "probes": probes, "steps": steps, "seconds": t})
        print(f"{name:8s} l={probes} m={steps} {r:18s} {t:7.2f} s", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", default=["digits", "heldout", "resnet"])
    p.add_argument(
        "--profile", action="store_true", help="also time the whole profile against PyHessian"
    )
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name, (model, x, y, blocks) in workloads(args.only).items():
        for block in blocks:
            rows.extend(bench(name, model, x, y, block, args.k, args.repeats))
    df = pd.DataFrame(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.profile:
        prof = []
        for name, (model, x, y, _) in workloads(args.only).items():
            if name != "resnet":  # every block of a ResNet-18 at 256 images: too long here
                prof.extend(profile_vs_pyhessian(name, model, x, y, 20, 15, args.rounds))
        pdf = pd.DataFrame(prof)
        atomic_write(RESULTS / "backends_profile.csv", lambda tmp: pdf.to_csv(tmp, index=False))
    atomic_write(RESULTS / "backends.csv", lambda tmp: df.to_csv(tmp, index=False))
    write_json(
        RESULTS / "backends.meta.json",
        {
            "command": " ".join(sys.argv),
            "k": args.k,
            "repeats": args.repeats,
            "machine": machine_info(),
            "code_version": code_version(),
        },
    )


if __name__ == "__main__":
    main()
