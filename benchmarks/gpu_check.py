"""The GPU path, checked: accuracy against the CPU in float64, and ResNet-18 timings at the paper's scale.

Run from a plain checkout on a machine with a CUDA device (torch >= 2.11 and
numpy / scipy / pandas; nothing else, no network)::

    PYTHONPATH=. python benchmarks/gpu_check.py --out benchmarks/results/gpu
    PYTHONPATH=. python benchmarks/gpu_check.py --out /tmp/gc --quick --device cpu   # CI, seconds

Sections (each row of ``gpu_check.csv`` says which, with its value, unit and,
for checks, the tolerance and whether it passed):

``accuracy``
    A small CNN with BatchNorm (592 parameters, 64 random 3×8×8 inputs, a
    few seeded float64 Adam steps first). Reference: the dense float64
    Hessian on the CPU from ``torch.func.hessian`` of the flat parameter
    vector (independent of renyilib) and ``numpy.linalg.eigvalsh`` of each
    block. On the device, for float64, float32 (TF32 off) and, on CUDA,
    float32 with torch's default TF32 convolutions: ``hessian_operator(...) @ V``
    (4 seeded columns) against ``H_b V``, and the SLQ Rényi profile
    (``renyi_sharpness``, 8 probes × 10 steps, the same seed) against the
    same profile computed on the CPU in float64. Results must keep the
    model's dtype and device. Tolerances (relative, :data:`TOLERANCES`):
    float64 1e-10 (products) / 1e-8 (entropies): only rounding differs;
    float32 1e-4 / 1e-4: rounding of 2**-24 per operation through a few
    layers and the Lanczos recurrence (measured on a CPU: 8e-7 / 2e-7, so
    the margin leaves room for other convolution algorithms and reduction
    orders); TF32 3e-2 / 3e-2: 10-bit mantissas in the convolutions.
    SLQ's own error against the exact entropies is reported, not checked.
``resnet``
    ``renyilib.experiments.models`` ResNet-18 (CIFAR stem) at full width
    (11,173,962 parameters) on 2,000 random 3×32×32 inputs in batches of
    250, float32, eval mode. Per block (the 21 Conv/Linear weights in forward
    order and "all"): one plain gradient of the mean loss, the operator's
    set-up (one double-backward graph per batch) and one ``op @ v``, best of
    ``--repeats``, with the peak device memory of the block.
``profile``
    ``renyi_sharpness(blocks="both")`` on the same ResNet-18 and data with
    ``--profile-probes`` × ``--profile-steps`` (default 2 × 5): its time
    against the sum of its products' times from ``resnet``, and the cost of
    the paper's setting (100 probes × 15 steps per block, 22 blocks, 2,000
    images) extrapolated from the measured per-product times (linear in the
    number of images), alone and times that measured overhead.
``batching``
    ``op @ V`` with ``batched=True`` (vmapped double backward) for
    k = 1, 2, 4, …, 32 columns on the stem convolution, a middle convolution
    and "all": time per column against one single product (a device out of
    memory is recorded and ends that block's sweep). Runs last, best of
    ``--batch-repeats`` (default 1).

``gpu_check.meta.json`` records the device, torch / CUDA / cuDNN versions,
TF32 flags, arguments, elapsed time per section, the failed checks and the
extrapolated cost. The exit code is 0 when every check passed, 1 when one
failed or the accuracy section did not run, 2 for a missing CUDA device.

The script stays inside ``--budget-s`` seconds (default 420): a section that
would start after the budget is spent is skipped and listed in the meta
file, the per-block loops stop and the profile is left out when it would
not end in time (rows ``stopped_by_budget``). A section that raises is
recorded as a failure and the others still run. ``--quick`` shrinks everything (ResNet width 1/16, 16 inputs, 1
repeat) so that it runs on a CPU in seconds.

renyilib is imported without its package ``__init__`` (which loads the
experiments layer and its dependencies): only ``renyilib.hessian``,
``renyilib.lanczos``, ``renyilib.renyi``, ``renyilib.experiments.models`` and
``renyilib.experiments.io`` are loaded, which need torch, numpy, scipy and
pandas only.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import importlib
import inspect
import json
import math
import operator
import os
import platform
import re
import sys
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent

#: Relative tolerances of the accuracy section: {variant: (products, entropies)}.
TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-10, 1e-8),
    "float32": (1e-4, 1e-4),
    "float32-tf32": (3e-2, 3e-2),
}
#: Rényi orders of the accuracy section.
ALPHAS = (0.5, 1.0, 1.5, 2.0, 3.0)
#: The paper's setting (Appendix G.4): probes, Lanczos steps, images.
PAPER = {"num_probes": 100, "lanczos_steps": 15, "images": 2000}


def load_core() -> dict[str, types.ModuleType]:
    """Import the core modules of renyilib (and the ResNet of the experiments layer) without ``__init__``.

    Registers bare ``renyilib`` and ``renyilib.experiments`` packages (their
    folders as ``__path__``) unless ``renyilib`` is imported already, so that
    importing a submodule does not run the package ``__init__`` and its
    imports of the experiments layer (yaml, tqdm, torchvision, ...).
    """
    if "renyilib" not in sys.modules:
        text = (ROOT / "renyilib" / "__init__.py").read_text()
        version = re.search(r'^__version__ = "([^"]+)"', text, re.M)
        for name, folder in (
            ("renyilib", ROOT / "renyilib"),
            ("renyilib.experiments", ROOT / "renyilib" / "experiments"),
        ):
            mod = types.ModuleType(name)
            mod.__path__ = [str(folder)]
            mod.__package__ = name
            sys.modules[name] = mod
        sys.modules["renyilib"].__version__ = version.group(1) if version else "unknown"
        sys.modules["renyilib"].experiments = sys.modules["renyilib.experiments"]
    names = ("hessian", "lanczos", "renyi", "experiments.models", "experiments.io")
    return {n.split(".")[-1]: importlib.import_module(f"renyilib.{n}") for n in names}


# --------------------------------------------------------------------------- helpers


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Best wall time of ``fn()`` in seconds over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best


def reset_peak(device: torch.device) -> None:
    """Start a new peak-memory window (CUDA; on the CPU only the process's high-water mark exists)."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_mb(device: torch.device) -> float:
    """Peak device memory since :func:`reset_peak` (CUDA) or the process's peak RSS (CPU), in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:  # the process's high-water mark: it never goes down between sections
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss / (2**20 if sys.platform == "darwin" else 2**10)
    except ImportError:  # pragma: no cover - Windows
        return float("nan")


def is_oom(err: BaseException) -> bool:
    """Whether ``err`` is a device out-of-memory error."""
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(err, oom)) or "out of memory" in str(err).lower()


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """Set the TF32 flags of CUDA matmuls and cuDNN convolutions, restoring them afterwards."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def exact_entropy(eigenvalues: np.ndarray, alpha: float) -> float:
    """H_α of |λ| (Eq. 6): 1/(1-α) log Σ p^α with p = |λ| / Σ|λ|; α = 1 is the Shannon limit."""
    lam = np.abs(np.asarray(eigenvalues, dtype=np.float64))
    p = lam / lam.sum()
    p = p[p > 0]
    if alpha == 1:
        return float(-(p * np.log(p)).sum())
    return float(np.log((p**alpha).sum()) / (1 - alpha))


def rel(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """``‖a - b‖ / ‖b‖`` in float64 on the CPU."""
    a = torch.as_tensor(a).detach().to("cpu", torch.float64)
    b = torch.as_tensor(b).detach().to("cpu", torch.float64)
    return float((a - b).norm() / b.norm().clamp_min(torch.finfo(torch.float64).tiny))


class Recorder:
    """Rows of the CSV and the failed checks."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.failures: list[str] = []

    def add(self, section: str, name: str, value: float, unit: str, **kw: Any) -> None:
        """A measurement row (``kw``: block, dim, device, dtype, variant, k, note)."""
        self.rows.append({"section": section, "name": name, "value": value, "unit": unit, **kw})

    def check(self, section: str, name: str, value: float, tol: float, **kw: Any) -> bool:
        """A check row: ``value <= tol`` (NaN fails)."""
        ok = bool(value <= tol)
        self.add(section, name, value, "relative", tolerance=tol, passed=ok, **kw)
        if not ok:
            where = ", ".join(f"{k}={v}" for k, v in kw.items())
            self.failures.append(f"{section}/{name} ({where}): {value:.3g} > {tol:.1g}")
        return ok


# --------------------------------------------------------------------------- accuracy


def small_model() -> nn.Module:
    """The accuracy section's CNN: conv-BN-ReLU, strided conv-ReLU, pool, linear (592 parameters)."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, stride=2, padding=1),
        nn.Tanh(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(24, 10),
    )


def accuracy_setup(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The small model in float64 on the CPU, after 30 seeded Adam steps, with its 64 inputs."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = small_model().double()
    x = torch.randn(64, 3, 8, 8, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 10, (64,), generator=gen)
    bn = model[1]
    bn.running_mean.copy_(0.1 * torch.randn(4, generator=gen, dtype=torch.float64))
    bn.running_var.copy_(0.5 + torch.rand(4, generator=gen, dtype=torch.float64))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model.eval()  # BatchNorm on its running statistics throughout: the measured function
    for _ in range(30):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model, x, y


def dense_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``torch.func.hessian`` of the mean cross-entropy w.r.t. the flat parameter vector (float64, CPU)."""
    from torch.func import functional_call, hessian

    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()])
    buffers = dict(model.named_buffers())

    def loss(theta: torch.Tensor) -> torch.Tensor:
        params = {n: t.reshape(s) for n, t, s in zip(names, theta.split(sizes), shapes)}
        return nn.functional.cross_entropy(functional_call(model, {**params, **buffers}, (x,)), y)

    H = hessian(loss)(flat)
    return (H + H.T) / 2


def block_indices(model: nn.Module, blocks: dict[str, list[str]]) -> dict[str, torch.Tensor]:
    """Indices of every block's entries in the flat parameter vector."""
    offsets, start = {}, 0
    for name, p in model.named_parameters():
        offsets[name] = (start, start + p.numel())
        start += p.numel()
    return {b: torch.cat([torch.arange(*offsets[n]) for n in names]) for b, names in blocks.items()}


def run_accuracy(
    core: dict, device: torch.device, rec: Recorder, probes: int = 8, steps: int = 10
) -> None:
    """The accuracy section (see the module docstring)."""
    hessian, renyi = core["hessian"], core["renyi"]
    loss_fn = nn.CrossEntropyLoss()
    model, x, y = accuracy_setup()
    blocks = hessian.layer_blocks(model)
    H = dense_hessian(model, x, y)
    idx = block_indices(model, blocks)
    gen = torch.Generator().manual_seed(1)
    ref_products, exact = {}, {}
    for b, ix in idx.items():
        Hb = H[ix][:, ix]
        V = torch.randn(len(ix), 4, generator=gen, dtype=torch.float64)
        ref_products[b] = (V, Hb @ V)
        lam = np.linalg.eigvalsh(Hb.numpy())
        exact[b] = {a: exact_entropy(lam, a) for a in ALPHAS}
    cpu_ref = renyi.renyi_sharpness(
        model,
        loss_fn,
        (x, y),
        alphas=ALPHAS,
        blocks="both",
        num_probes=probes,
        lanczos_steps=steps,
        seed=0,
        progress=False,
    ).set_index(["block", "alpha"])
    for (b, a), row in cpu_ref.iterrows():
        rec.add(
            "accuracy",
            "slq_vs_exact",
            abs(row.entropy - exact[b][a]) / abs(exact[b][a]),
            "relative",
            block=b,
            dim=int(row.dim),
            device="cpu",
            dtype="float64",
            variant="cpu-float64",
            alpha=a,
            note=f"SLQ l={probes} m={steps} against eigvalsh (informative)",
        )
    variants = [("float64", torch.float64, False), ("float32", torch.float32, False)]
    if device.type == "cuda":
        variants.append(("float32-tf32", torch.float32, True))
    for variant, dtype, allow_tf32 in variants:
        tol_hv, tol_h = TOLERANCES[variant]
        with tf32(allow_tf32) if device.type == "cuda" else contextlib.nullcontext():
            m = copy.deepcopy(model).to(device=device, dtype=dtype)
            xd, yd = x.to(device=device, dtype=dtype), y.to(device)
            kw = {
                "device": str(device),
                "dtype": str(dtype).replace("torch.", ""),
                "variant": variant,
            }
            for b in blocks:
                V, HV = ref_products[b]
                op = hessian.hessian_operator(m, loss_fn, (xd, yd), blocks[b])
                out = op @ V
                keeps = out.dtype == dtype and out.device.type == device.type
                rec.check(
                    "accuracy", "hvp_vs_dense", rel(out, HV), tol_hv, block=b, dim=len(V), **kw
                )
                rec.check(
                    "accuracy", "result_dtype_device", 0.0 if keeps else 1.0, 0.0, block=b, **kw
                )
            prof = renyi.renyi_sharpness(
                m,
                loss_fn,
                (xd, yd),
                alphas=ALPHAS,
                blocks="both",
                num_probes=probes,
                lanczos_steps=steps,
                seed=0,
                progress=False,
            ).set_index(["block", "alpha"])
        for (b, a), row in prof.iterrows():
            ref = cpu_ref.loc[(b, a)]
            err = abs(row.entropy - ref.entropy) / abs(ref.entropy)
            rec.check("accuracy", "entropy_vs_cpu64", err, tol_h, block=b, alpha=a, **kw)
            rec.add(
                "accuracy",
                "slq_vs_exact",
                abs(row.entropy - exact[b][a]) / abs(exact[b][a]),
                "relative",
                block=b,
                alpha=a,
                note="informative",
                **kw,
            )
        for b in blocks:
            t_dev, t_ref = prof.loc[(b, 1.0)].trace, cpu_ref.loc[(b, 1.0)].trace
            rec.check(
                "accuracy", "trace_vs_cpu64", abs(t_dev - t_ref) / abs(t_ref), tol_h, block=b, **kw
            )


# --------------------------------------------------------------------------- ResNet-18


def resnet_setup(
    core: dict, device: torch.device, width: float, images: int, batch: int, seed: int = 0
) -> tuple[nn.Module, list[tuple[torch.Tensor, torch.Tensor]], dict[str, list[str]]]:
    """ResNet-18 (CIFAR stem) in eval mode on ``device`` (float32), random inputs in batches, its blocks."""
    torch.manual_seed(seed)
    model = core["models"].build_model("resnet18", 10, in_channels=3, width=width, image_size=32)
    model = model.to(device).eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(images, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (images,), generator=gen)
    batches = [
        (x[i : i + batch].to(device), y[i : i + batch].to(device)) for i in range(0, images, batch)
    ]
    blocks = core["hessian"].layer_blocks(model, example_input=batches[0][0][:2])
    return model, batches, blocks


def graph_backend(hessian: types.ModuleType) -> dict[str, str]:
    """``{"backend": "graph"}`` (``{"method": "graph"}`` for checkouts before the rename)."""
    params = inspect.signature(hessian.hessian_operator).parameters
    return {"backend" if "backend" in params else "method": "graph"}


def gradient_fn(model: nn.Module, loss_fn, batches, names: list[str]) -> Callable[[], list]:
    """One plain gradient of the mean loss over ``batches`` w.r.t. the parameters ``names``."""
    named = dict(model.named_parameters())
    params = [named[n] for n in names]
    total = sum(len(yb) for _, yb in batches)

    def grad() -> list[torch.Tensor]:
        out = [torch.zeros_like(p) for p in params]
        for xb, yb in batches:
            g = torch.autograd.grad(loss_fn(model(xb), yb) * (len(yb) / total), params)
            for o, gi in zip(out, g):
                o += gi
        return out

    return grad


def over(deadline: float, rec: Recorder, section: str, **kw: Any) -> bool:
    """Whether the time budget is spent (``time.perf_counter() > deadline``); records where it stopped."""
    if time.perf_counter() <= deadline:
        return False
    rec.add(section, "stopped_by_budget", float("nan"), "", **kw)
    return True


def run_resnet(
    core, device, rec, model, batches, blocks, repeats, deadline=math.inf
) -> dict[str, dict[str, float]]:
    """Per block: gradient, operator set-up and one product (best of ``repeats``), peak memory."""
    hessian = core["hessian"]
    loss_fn = nn.CrossEntropyLoss()
    times: dict[str, dict[str, float]] = {}
    gen = torch.Generator().manual_seed(2)
    for b, names in blocks.items():
        kw = {"block": b, "device": str(device), "dtype": "float32"}
        if over(deadline, rec, "resnet", **kw):
            break
        try:
            reset_peak(device)
            t_grad = best_time(gradient_fn(model, loss_fn, batches, names), device, repeats)
            t0 = time.perf_counter()
            op = hessian.hessian_operator(model, loss_fn, batches, names, **graph_backend(hessian))
            synchronize(device)
            t_setup = time.perf_counter() - t0
            v = torch.randn(op.shape[0], generator=gen).to(device)
            t_hvp = best_time(functools.partial(operator.matmul, op, v), device, repeats)
            mem = peak_mb(device)
            del op
        except RuntimeError as err:
            if not is_oom(err):
                raise
            rec.add("resnet", "oom", float("nan"), "", note=str(err).splitlines()[0], **kw)
            continue
        n = sum(dict(model.named_parameters())[p].numel() for p in names)
        times[b] = {"gradient": t_grad, "setup": t_setup, "hvp": t_hvp, "dim": n}
        for name, value in (("gradient", t_grad), ("setup", t_setup), ("hvp", t_hvp)):
            rec.add("resnet", f"{name}_s", value, "s", dim=n, **kw)
        rec.add("resnet", "hvp_per_gradient", t_hvp / t_grad, "ratio", dim=n, **kw)
        rec.add("resnet", "peak_memory", mem, "MiB", dim=n, **kw)
    return times


def run_batching(
    core, device, rec, model, batches, blocks, repeats, kmax: int, deadline=math.inf
) -> None:
    """``op @ V`` vmapped over k columns (``batched=True``): time per column vs one product."""
    hessian = core["hessian"]
    loss_fn = nn.CrossEntropyLoss()
    names = list(blocks)
    chosen = [names[0], names[(len(names) - 1) // 2], "all"]
    gen = torch.Generator().manual_seed(3)
    for b in dict.fromkeys(chosen):
        kw = {"block": b, "device": str(device), "dtype": "float32"}
        op = hessian.hessian_operator(
            model, loss_fn, batches, blocks[b], batched=True, **graph_backend(hessian)
        )
        n = op.shape[0]
        single = None
        k = 1
        while k <= kmax:
            if over(deadline, rec, "batching", k=k, **kw):
                break
            try:
                reset_peak(device)
                V = torch.randn(n, k, generator=gen).to(device)
                t = best_time(functools.partial(operator.matmul, op, V), device, repeats)
            except RuntimeError as err:
                if not is_oom(err):
                    raise
                rec.add("batching", "oom", float("nan"), "", k=k, dim=n, **kw)
                break
            single = t if k == 1 else single
            rec.add("batching", "time_per_column_s", t / k, "s", k=k, dim=n, **kw)
            rec.add("batching", "per_column_vs_single", t / k / single, "ratio", k=k, dim=n, **kw)
            rec.add("batching", "peak_memory", peak_mb(device), "MiB", k=k, dim=n, **kw)
            k *= 2
        del op


def run_profile(
    core, device, rec, model, batches, blocks, times, probes, steps, deadline=math.inf
) -> dict[str, Any]:
    """``renyi_sharpness(blocks="both")`` with a small budget; extrapolation to the paper's setting.

    Skipped (recorded) when its products alone would not end before ``deadline``.
    """
    renyi = core["renyi"]
    kw = {"device": str(device), "dtype": "float32"}
    expected = sum(t["setup"] + probes * steps * t["hvp"] for t in times.values())
    if len(times) < len(blocks) or time.perf_counter() + expected > deadline:
        rec.add("profile", "stopped_by_budget", expected, "s", note="expected products", **kw)
        return {}
    reset_peak(device)
    t0 = time.perf_counter()
    df = renyi.renyi_sharpness(
        model,
        nn.CrossEntropyLoss(),
        batches,
        alphas=ALPHAS,
        blocks="both",
        num_probes=probes,
        lanczos_steps=steps,
        seed=0,
        progress=False,
    )
    synchronize(device)
    seconds = time.perf_counter() - t0
    per_block = df.groupby("block", sort=False).first()
    predicted = sum(
        times[b]["setup"] + int(per_block.loc[b, "num_matvecs"]) * times[b]["hvp"]
        for b in per_block.index
        if b in times
    )
    note = f"l={probes} m={steps}, {len(per_block)} blocks"
    rec.add("profile", "profile_s", seconds, "s", note=note, **kw)
    rec.add("profile", "products_s", predicted, "s", note="Σ (set-up + products × hvp)", **kw)
    rec.add("profile", "profile_vs_products", seconds / predicted, "ratio", **kw)
    rec.add("profile", "peak_memory", peak_mb(device), "MiB", **kw)
    return {
        "profile_s": seconds,
        "products_s": predicted,
        "profile_vs_products": seconds / predicted,
    }


def paper_cost(rec: Recorder, device, times, images: int, overhead: float | None) -> dict[str, Any]:
    """Hours of the paper's setting from the measured per-block times, linear in the images.

    Σ_blocks (set-up + 100 · 15 products) × 2,000 / ``images``; times ``overhead``
    (the profile's time over its products' time) when the profile ran.
    """
    scale = PAPER["images"] / images
    products = PAPER["num_probes"] * PAPER["lanczos_steps"]
    hours = sum(scale * (t["setup"] + products * t["hvp"]) for t in times.values()) / 3600
    rec.add(
        "profile",
        "paper_setting_hours",
        hours,
        "h",
        device=str(device),
        dtype="float32",
        note=f"{products} products × {len(times)} blocks, {PAPER['images']} images, "
        f"measured per-product times (× {scale:g} for the images)",
    )
    return {
        "paper_setting_hours": hours,
        "paper_setting_hours_with_overhead": None if overhead is None else hours * overhead,
        "blocks_measured": len(times),
        "images_measured": images,
        "image_scale": scale,
    }


# --------------------------------------------------------------------------- main


def device_info(device: torch.device) -> dict[str, Any]:
    """Versions, the device and its TF32 flags."""
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu=props.name,
            gpu_memory_gib=props.total_memory / 2**30,
            capability=f"{props.major}.{props.minor}",
        )
    return info


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder for gpu_check.csv and gpu_check.meta.json")
    p.add_argument("--quick", action="store_true", help="tiny sizes: seconds on a CPU (CI)")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--budget-s", type=float, default=420.0, help="skip sections after this")
    p.add_argument("--width", type=float, default=None, help="ResNet-18 width (default 1)")
    p.add_argument("--images", type=int, default=None, help="CIFAR-shaped inputs (default 2000)")
    p.add_argument("--batch", type=int, default=None, help="inputs per batch (default 250)")
    p.add_argument("--repeats", type=int, default=None, help="timing repeats (default 3)")
    p.add_argument("--kmax", type=int, default=None, help="largest probe batch (default 32)")
    p.add_argument("--batch-repeats", type=int, default=1, help="timing repeats of the batching")
    p.add_argument("--profile-probes", type=int, default=2)
    p.add_argument("--profile-steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)
    quick = args.quick
    for name, full, small in (
        ("width", 1.0, 0.0625),
        ("images", 2000, 16),
        ("batch", 250, 8),
        ("repeats", 3, 1),
        ("kmax", 32, 4),
    ):
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    if quick:
        args.profile_probes, args.profile_steps = (
            min(args.profile_probes, 2),
            min(args.profile_steps, 2),
        )
    names = (
        "images",
        "batch",
        "repeats",
        "batch_repeats",
        "kmax",
        "profile_probes",
        "profile_steps",
    )
    for name in names:
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not args.width > 0:
        p.error(f"--width must be > 0, got {args.width}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the check; write ``gpu_check.csv`` and ``gpu_check.meta.json`` under ``--out``."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device is None:
        if not torch.cuda.is_available() and not args.quick:
            print(
                "error: no CUDA device; use --quick for the CPU check, or --device cpu to run "
                "the full check on the CPU (hours)",
                file=sys.stderr,
            )
            return 2
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    core = load_core()
    io = core["io"]
    out = Path(args.out)
    start = time.perf_counter()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    rec = Recorder()
    elapsed: dict[str, float] = {}
    skipped: list[str] = []
    extrapolation: dict[str, Any] = {}

    deadline = start + args.budget_s

    def section(name: str, fn: Callable[[], Any]) -> Any:
        if time.perf_counter() > deadline:
            skipped.append(name)
            print(f"[{name}] skipped: the budget of {args.budget_s:.0f} s is spent", flush=True)
            return None
        t0 = time.perf_counter()
        print(f"[{name}] ...", flush=True)
        try:
            result = fn()
        except Exception as err:  # recorded; the other sections still run and the files are written
            rec.failures.append(f"{name}: {type(err).__name__}: {err}")
            rec.add(name, "error", float("nan"), "", note=f"{type(err).__name__}: {err}"[:500])
            print(f"[{name}] FAILED: {type(err).__name__}: {err}", flush=True)
            result = None
        elapsed[name] = time.perf_counter() - t0
        print(f"[{name}] {elapsed[name]:.1f} s", flush=True)
        return result

    section("accuracy", lambda: run_accuracy(core, device, rec))
    setup = section(
        "resnet_setup",
        lambda: resnet_setup(core, device, args.width, args.images, args.batch),
    )
    if setup is not None:
        model, batches, blocks = setup
        n_params = sum(p.numel() for p in model.parameters())
        times = section(
            "resnet",
            lambda: run_resnet(core, device, rec, model, batches, blocks, args.repeats, deadline),
        )
        if times:
            prof = (
                section(
                    "profile",
                    lambda: run_profile(
                        core,
                        device,
                        rec,
                        model,
                        batches,
                        blocks,
                        times,
                        args.profile_probes,
                        args.profile_steps,
                        deadline,
                    ),
                )
                or {}
            )
            images = sum(len(yb) for _, yb in batches)
            extrapolation = {
                **prof,
                **paper_cost(rec, device, times, images, prof.get("profile_vs_products")),
            }
        section(
            "batching",
            lambda: run_batching(
                core, device, rec, model, batches, blocks, args.batch_repeats, args.kmax, deadline
            ),
        )
    else:
        n_params, blocks = None, {}
    total = time.perf_counter() - start
    df = pd.DataFrame(rec.rows)
    meta = {
        "script": "benchmarks/gpu_check.py",
        "command": [sys.executable, *sys.argv] if argv is None else ["gpu_check.py", *argv],
        "args": vars(args),
        "started": started,
        "seconds": total,
        "section_seconds": elapsed,
        "skipped_sections": skipped,
        "passed": not rec.failures and "accuracy" in elapsed,
        "failures": rec.failures,
        "checks": int(df["passed"].notna().sum()) if "passed" in df else 0,
        "tolerances": {k: {"hvp": v[0], "entropy": v[1]} for k, v in TOLERANCES.items()},
        "resnet": {
            "width": args.width,
            "images": args.images,
            "batch": args.batch,
            "parameters": n_params,
            "blocks": len(blocks),
        },
        "paper_setting": {**PAPER, **extrapolation},
        "code_version": io.code_version(),
        **device_info(device),
    }
    out.mkdir(parents=True, exist_ok=True)
    csv = df.to_csv(index=False)
    io.atomic_write(out / "gpu_check.csv", lambda tmp: tmp.write_text(csv))
    io.atomic_write(
        out / "gpu_check.meta.json",
        lambda tmp: tmp.write_text(json.dumps(meta, indent=2, default=str)),
    )
    print(f"{len(df)} rows, {meta['checks']} checks, {len(rec.failures)} failed; {total:.0f} s")
    for failure in rec.failures:
        print(f"FAILED {failure}")
    if extrapolation:
        if args.quick:
            print("(--quick: a width-1/16 ResNet-18 on 16 inputs, not the paper's model)")
        print(
            f"paper's setting ({PAPER['num_probes']} probes × {PAPER['lanczos_steps']} steps × "
            f"{len(blocks)} blocks, {PAPER['images']} images) on {device}: "
            f"{extrapolation['paper_setting_hours']:.2f} h from the products alone"
            + (
                f", {extrapolation['paper_setting_hours_with_overhead']:.2f} h with the measured "
                "profile overhead"
                if extrapolation["paper_setting_hours_with_overhead"] is not None
                else ""
            )
        )
    print(f"results: {out / 'gpu_check.csv'}, {out / 'gpu_check.meta.json'}")
    return 0 if meta["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
