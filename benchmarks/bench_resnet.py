"""A realistic workload: ResNet-18 on CIFAR-shaped inputs, per block, and the cost of the paper's setting.

``renyilib.experiments.models`` ResNet-18 (CIFAR stem, 21 Conv/Linear weights
in forward order plus "all"), PyTorch's default initialization (seed 0), eval
mode, float32, on random 3×32×32 inputs with random labels (the cost of a
product does not depend on the weights' values or the labels). Four parts:

``per-block`` (width 0.125: 176,402 parameters; 256 images, one batch)
    Per block, the best time over interleaved rounds (``workload.compare``)
    of one plain gradient of the mean loss w.r.t. the block (the baseline)
    and one ``hessian_operator(..., backend="graph") @ v`` (the kept
    double-backward graph, what the default uses for these inputs, see
    :mod:`renyilib.hessian`), the
    operator's one-off set-up (one double-backward graph), and the bytes the
    kept graph saves (``torch.autograd.graph.saved_tensors_hooks`` over the
    ``create_graph`` gradient with only the block requiring a gradient, as in
    the operator; distinct storages).
``full width`` (11,173,962 parameters; ``--full-images`` images, default 16)
    The same per-block gradient / product / set-up at the paper's width.
``scaling``
    The product of "all" at width 0.125 for 32 … 256 images and at full width
    for 8 and 16 images: the time per image, to check the linear extrapolation
    in the number of images.
``profile`` (width 0.125, 256 images)
    ``renyi_sharpness(blocks="both")`` with ``--probes`` × ``--steps``
    (default 2 × 5): its time against its products' (Σ set-up + products ×
    one product's best time).

Then the cost of the paper's setting (Appendix G.4: 100 probes × 15 Lanczos
steps for each of the 22 blocks, 2,000 images) from the measured per-product
times, linear in the number of images: Σ_blocks (set-up + 1,500 products) ×
2,000 / images, once from the products alone and once times the profile's
measured overhead ratio; for the full width on this CPU and, when
``benchmarks/results/gpu/gpu_check.meta.json`` exists (``benchmarks/gpu_check.py``
run on a GPU), for that GPU.

Run: ``python benchmarks/bench_resnet.py`` (about 10 min of CPU time with one
thread). Writes ``benchmarks/results/resnet.csv`` (one row per part × block ×
quantity) and ``resnet.meta.json``. Timings are process CPU time with one
torch thread by default (``--clock wall``), taken in one run: compare them as
ratios within a run.
"""

from __future__ import annotations

import argparse
import inspect
import json
import resource
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import ROOT, clock, compare, machine_info, set_clock

from renyilib.experiments.io import atomic_write, write_json
from renyilib.experiments.models import build_model
from renyilib.hessian import hessian_operator, layer_blocks
from renyilib.renyi import renyi_sharpness

RESULTS = ROOT / "benchmarks" / "results"
#: The kept double-backward graph (``backend=``; ``method=`` before the rename).
GRAPH = {
    "backend" if "backend" in inspect.signature(hessian_operator).parameters else "method": "graph"
}
GPU_META = RESULTS / "gpu" / "gpu_check.meta.json"
#: The paper's setting (Appendix G.4).
PAPER = {"num_probes": 100, "lanczos_steps": 15, "images": 2000}


def setup(width: float, images: int, seed: int = 0):
    """ResNet-18 at ``width`` in eval mode, ``images`` random CIFAR-shaped inputs, its blocks."""
    torch.manual_seed(seed)
    model = build_model("resnet18", 10, in_channels=3, width=width, image_size=32).eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(images, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (images,), generator=gen)
    return model, (x, y), layer_blocks(model, example_input=x[:2])


def graph_bytes(model: nn.Module, loss_fn, data, names: list[str]) -> int:
    """Bytes of the distinct storages saved by the double-backward graph of the block's gradient."""
    from torch.func import functional_call

    # As in the operator: the block's parameters are leaves, everything else is constant.
    leaves = {n: p.detach().requires_grad_(True) for n, p in model.named_parameters() if n in names}
    consts = {n: p.detach() for n, p in model.named_parameters() if n not in names}
    consts.update(dict(model.named_buffers()))
    kept: list[torch.Tensor] = []  # alive until counted: no storage address is reused

    def pack(t: torch.Tensor) -> torch.Tensor:
        kept.append(t)
        return t

    x, y = data
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = functional_call(model, {**consts, **leaves}, (x,))
        g = torch.autograd.grad(loss_fn(out, y), list(leaves.values()), create_graph=True)
    storages = {}
    for t in kept:
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
    kept.clear()
    del g
    return int(sum(storages.values()))


def peak_rss_mb() -> float:
    """The process's peak resident memory so far (MiB; a high-water mark)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


def per_block(model, data, blocks, repeats: int, memory: bool) -> list[dict]:
    """Gradient, one product and the set-up of every block (best times), and the graph's bytes."""
    loss_fn = nn.CrossEntropyLoss()
    named = dict(model.named_parameters())
    x, y = data
    gen = torch.Generator().manual_seed(1)
    rows = []
    for b, names in blocks.items():
        params = [named[n] for n in names]
        t0 = clock()
        op = hessian_operator(model, loss_fn, data, names, **GRAPH)
        t_setup = clock() - t0
        v = torch.randn(op.shape[0], generator=gen)

        def gradient(params=params):
            return torch.autograd.grad(loss_fn(model(x), y), params)

        best = compare({"gradient": gradient, "hvp": lambda op=op, v=v: op @ v}, repeats, 1)
        row = {
            "block": b,
            "dim": op.shape[0],
            "gradient_s": best["gradient"],
            "hvp_s": best["hvp"],
            "setup_s": t_setup,
            "hvp_per_gradient": best["hvp"] / best["gradient"],
        }
        del op
        if memory:
            row["graph_mb"] = graph_bytes(model, loss_fn, data, names) / 2**20
        row["peak_rss_mb"] = peak_rss_mb()
        rows.append(row)
        print(
            f"  {b:>24s} n={row['dim']:>9,d} grad {row['gradient_s']:.3f} s  "
            f"hvp {row['hvp_s']:.3f} s ({row['hvp_per_gradient']:.2f}x)"
            + (f"  graph {row['graph_mb']:.0f} MiB" if memory else ""),
            flush=True,
        )
    return rows


def scaling(width: float, counts: list[int], repeats: int) -> list[dict]:
    """One product of "all" for each number of images (best time), and per image."""
    loss_fn = nn.CrossEntropyLoss()
    model, (x, y), _ = setup(width, max(counts))
    rows = []
    for n_img in counts:
        data = (x[:n_img], y[:n_img])
        op = hessian_operator(model, loss_fn, data, "all", **GRAPH)
        v = torch.randn(op.shape[0], generator=torch.Generator().manual_seed(2))
        t = compare({"hvp": lambda op=op, v=v: op @ v}, repeats, 1)["hvp"]
        rows.append({"width": width, "images": n_img, "hvp_s": t, "hvp_per_image_s": t / n_img})
        print(
            f"  width {width:g}, {n_img:4d} images: hvp {t:.3f} s ({t / n_img * 1e3:.2f} ms/image)"
        )
        del op
    return rows


def profile(model, data, blocks, block_rows, probes: int, steps: int) -> dict:
    """``renyi_sharpness(blocks="both")`` against Σ (set-up + products × one product's time)."""
    t0 = clock()
    df = renyi_sharpness(
        model,
        nn.CrossEntropyLoss(),
        data,
        alphas=(0.5, 1.0, 2.0),
        blocks="both",
        num_probes=probes,
        lanczos_steps=steps,
        seed=0,
        progress=False,
    )
    seconds = clock() - t0
    per = df.groupby("block", sort=False).first()
    times = {r["block"]: r for r in block_rows}
    predicted = sum(
        times[b]["setup_s"] + int(per.loc[b, "num_matvecs"]) * times[b]["hvp_s"] for b in per.index
    )
    return {
        "probes": probes,
        "steps": steps,
        "blocks": len(per),
        "products": int(per["num_matvecs"].sum()),
        "profile_s": seconds,
        "products_s": predicted,
        "ratio": seconds / predicted,
    }


def paper_cost(block_rows: list[dict], images: int) -> float:
    """Seconds of the paper's setting: Σ_blocks (set-up + 1,500 products) × 2,000 / images."""
    products = PAPER["num_probes"] * PAPER["lanczos_steps"]
    scale = PAPER["images"] / images
    return sum(scale * (r["setup_s"] + products * r["hvp_s"]) for r in block_rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    p.add_argument("--width", type=float, default=0.125)
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--full-images", type=int, default=16, help="images at full width")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--probes", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--skip-full", action="store_true", help="no full-width parts")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    set_clock(args.clock)
    start = time.perf_counter()
    rows: list[dict] = []

    print(f"per-block: width {args.width:g}, {args.images} images", flush=True)
    model, data, blocks = setup(args.width, args.images)
    n_params = sum(p.numel() for p in model.parameters())
    small = per_block(model, data, blocks, args.repeats, memory=True)
    rows += [{"part": "per-block", "width": args.width, "images": args.images, **r} for r in small]
    print(f"profile: l={args.probes}, m={args.steps}", flush=True)
    prof = profile(model, data, blocks, small, args.probes, args.steps)
    print(
        f"  {prof['profile_s']:.1f} s vs products {prof['products_s']:.1f} s ({prof['ratio']:.2f})"
    )
    rows.append({"part": "profile", "width": args.width, "images": args.images, **prof})
    del model, data

    print("scaling", flush=True)
    counts = [c for c in (32, 64, 128, 256) if c <= args.images]
    rows += [{"part": "scaling", **r} for r in scaling(args.width, counts, args.repeats)]
    full, n_full = [], None
    if not args.skip_full:
        rows += [
            {"part": "scaling", **r}
            for r in scaling(1.0, sorted({max(1, args.full_images // 2), args.full_images}), 1)
        ]
        print(f"full width: {args.full_images} images", flush=True)
        model, data, blocks_full = setup(1.0, args.full_images)
        n_full = sum(p.numel() for p in model.parameters())
        full = per_block(model, data, blocks_full, 1, memory=True)
        rows += [
            {"part": "full width", "width": 1.0, "images": args.full_images, **r} for r in full
        ]
        del model, data

    cost = {
        "setting": "100 probes × 15 Lanczos steps × 22 blocks, 2,000 images, float32",
        "width_0125_cpu_hours": paper_cost(small, args.images) / 3600,
        "width_0125_cpu_hours_with_overhead": paper_cost(small, args.images) * prof["ratio"] / 3600,
    }
    if full:
        cost["full_width_cpu_hours"] = paper_cost(full, args.full_images) / 3600
        cost["full_width_cpu_hours_with_overhead"] = cost["full_width_cpu_hours"] * prof["ratio"]
    if GPU_META.is_file():
        gpu = json.loads(GPU_META.read_text())
        cost["gpu"] = gpu.get("gpu", gpu.get("device"))
        cost["gpu_hours"] = gpu["paper_setting"].get("paper_setting_hours")
        cost["gpu_hours_with_overhead"] = gpu["paper_setting"].get(
            "paper_setting_hours_with_overhead"
        )
        cost["gpu_check"] = str(GPU_META.relative_to(ROOT))
    else:
        cost["gpu_hours"] = None
        cost["gpu_note"] = "no GPU measurement yet (benchmarks/gpu_check.py has not run on a GPU)"
    for key, value in cost.items():
        print(f"  {key}: {value:.2f}" if isinstance(value, float) else f"  {key}: {value}")

    out = Path(args.out)
    df = pd.DataFrame(rows)
    for col in ("dim", "images", "probes", "steps", "blocks", "products"):
        df[col] = df[col].astype("Int64")  # counts stay exact next to the %.5g floats
    atomic_write(out / "resnet.csv", lambda tmp: df.to_csv(tmp, index=False, float_format="%.5g"))
    write_json(
        out / "resnet.meta.json",
        {
            **machine_info(),
            "command": ["python", "benchmarks/bench_resnet.py", *(argv or sys.argv[1:])],
            "args": vars(args),
            "parameters": {"width": n_params, "full": n_full},
            "paper_cost": cost,
            "wall_s": time.perf_counter() - start,
            "load_average": list(__import__("os").getloadavg()),
        },
    )
    print(f"results: {out / 'resnet.csv'} ({time.perf_counter() - start:.0f} s wall)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
