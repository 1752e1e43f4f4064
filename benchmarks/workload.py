"""The reference workload shared by every benchmark.

A small CNN (``renyilib.experiments.models`` "digits-cnn" at width 0.5: 2,154 parameters)
trained briefly (300 Adam steps, fixed seed) on 512 scikit-learn digits, so that its loss-Hessian spectrum looks like a trained
network's (a few large outliers, a bulk, many near-zero and some negative
eigenvalues). The exact eigenvalues of every parameter block (each layer's
weight tensor and "all") are computed once from the dense float64 Hessian with
``numpy.linalg.eigvalsh`` and cached under ``data/cache/bench/<config-hash>/``
(atomic writes, keyed by the workload config and the block definitions).

The dense Hessian is built independently of renyilib (column chunks of the
forward-over-reverse product ``torch.func.jvp(grad(L))`` over unit vectors), so
the benchmarks' reference does not depend on the code under test; it is checked
against a double-backward product on a random vector before it is cached.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from renyilib.experiments import models  # noqa: E402
from renyilib.experiments.config import cache_dir, seed_everything  # noqa: E402
from renyilib.experiments.data import load_data  # noqa: E402
from renyilib.experiments.io import (  # noqa: E402
    atomic_write,
    code_version,
    config_hash,
    write_json,
)
from renyilib.hessian import layer_blocks  # noqa: E402

#: The workload configuration; its hash keys the cache of trained weights and spectra.
CONFIG: dict = {
    "dataset": "digits",
    "num_samples": 512,
    "model": "digits-cnn",
    "width": 0.5,
    "train_steps": 300,
    "batch_size": 128,
    "lr": 0.01,
    "seed": 0,
    "version": 3,
}

#: The α at which the time-to-accuracy frontier is judged (issue 2).
FRONTIER_ALPHAS = (0.5, 1.5, 2.0)


def build_model(cfg: dict) -> nn.Module:
    """``renyilib.experiments.models.build_model("digits-cnn", width=cfg["width"])``, seeded, in eval mode."""
    torch.manual_seed(cfg["seed"])
    model = models.build_model(
        cfg["model"], num_classes=10, in_channels=1, image_size=8, width=cfg["width"]
    )
    return model.eval()


def load_samples(cfg: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``num_samples`` training digits (stratified, seeded), normalized, shape (N, 1, 8, 8)."""
    bundle = load_data(cfg["dataset"], progress=False)
    return bundle.subset(cfg["num_samples"], seed=cfg["seed"])


@dataclass
class Workload:
    """A trained model, its data, loss, blocks and the exact per-block spectra."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    loss_fn: nn.Module
    blocks: dict[str, list[str]]
    eigenvalues: dict[str, np.ndarray]
    config: dict
    key: str
    train_accuracy: float
    info: dict = field(default_factory=dict)

    @property
    def dims(self) -> dict[str, int]:
        """Dimension of every block."""
        return {b: len(ev) for b, ev in self.eigenvalues.items()}


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: dict) -> None:
    gen = seed_everything(cfg["seed"])
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(cfg["train_steps"]):
        idx = torch.randint(0, len(y), (cfg["batch_size"],), generator=gen)
        opt.zero_grad()
        loss_fn(model(x[idx]), y[idx]).backward()
        opt.step()
    model.eval()


def dense_hessian(
    model: nn.Module, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 128
) -> torch.Tensor:
    """Dense float64 Hessian of the mean loss w.r.t. all parameters (columns in chunks).

    ``H[:, j] = d/dt ∇L(θ + t e_j)`` by forward-over-reverse (``torch.func.jvp`` of
    ``torch.func.grad``), vmapped over ``chunk`` unit vectors at a time.
    """
    from torch.func import functional_call, grad, jvp, vmap

    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()]).double()
    model64 = model.double()
    x64 = x.double()
    n = flat0.numel()

    def unflatten(flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {nm: t.reshape(s) for nm, t, s in zip(names, flat.split(sizes), shapes)}

    def loss(flat: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(model64, unflatten(flat), (x64,)), y)

    g = grad(loss)

    def column(e: torch.Tensor) -> torch.Tensor:
        return jvp(g, (flat0,), (e,))[1]

    cols = []
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        eye = torch.zeros(stop - start, n, dtype=torch.float64)
        eye[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
        cols.append(vmap(column)(eye))
    model.float()
    hess = torch.cat(cols).T.contiguous()
    return 0.5 * (hess + hess.T)


def _check_dense(model: nn.Module, loss_fn, x, y, hess: torch.Tensor) -> float:
    """Relative error of ``H v`` against a float64 double-backward product (random ``v``)."""
    model64 = model.double()
    params = list(model64.parameters())
    g = torch.autograd.grad(loss_fn(model64(x.double()), y), params, create_graph=True)
    v = torch.randn(hess.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    vs = list(v.split([p.numel() for p in params]))
    vs = [t.reshape(p.shape) for t, p in zip(vs, params)]
    hv = torch.cat([t.reshape(-1) for t in torch.autograd.grad(g, params, vs)])
    model.float()
    return float((hess @ v - hv).norm() / hv.norm())


def load_workload(cfg: dict | None = None, verbose: bool = True) -> Workload:
    """Train (or load) the reference model and its exact per-block spectra (cached)."""
    cfg = dict(CONFIG if cfg is None else cfg)
    model = build_model(cfg)
    x, y = load_samples(cfg)
    blocks = layer_blocks(model)
    key = config_hash({**cfg, "blocks": blocks, "arch": repr(model)})
    base = cache_dir()
    folder = (base if base.is_absolute() else ROOT / base) / "bench" / key
    weights, spectra = folder / "weights.pt", folder / "spectra.npz"
    loss_fn = nn.CrossEntropyLoss()
    info: dict = {}
    if weights.is_file() and spectra.is_file():
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        model.eval()
        with np.load(spectra) as z:
            eig = {b: z[f"b{i}"] for i, b in enumerate(blocks)}
        info = {"cached": str(folder)}
    else:
        t0 = time.perf_counter()
        _train(model, x, y, cfg)
        t_train = time.perf_counter() - t0
        t0 = time.perf_counter()
        hess = dense_hessian(model, loss_fn, x, y)
        check = _check_dense(model, loss_fn, x, y, hess)
        if not check < 1e-10:
            raise RuntimeError(
                f"dense Hessian disagrees with double backward: rel. err {check:.2e}"
            )
        offsets, start = {}, 0
        for name, p in model.named_parameters():
            offsets[name] = (start, start + p.numel())
            start += p.numel()
        eig = {}
        for b, names in blocks.items():
            idx = torch.cat([torch.arange(*offsets[n]) for n in names])
            eig[b] = np.linalg.eigvalsh(hess[idx][:, idx].numpy())
        t_eig = time.perf_counter() - t0
        atomic_write(weights, lambda tmp: torch.save(model.state_dict(), tmp))
        arrays = {f"b{i}": eig[b] for i, b in enumerate(blocks)}

        def _save(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

        atomic_write(spectra, _save)
        info = {"train_s": t_train, "dense_hessian_s": t_eig, "hv_check": check}
        write_json(
            folder / "config.json",
            {**cfg, "blocks": blocks, "code_version": code_version(), **info},
        )
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    if verbose:
        dims = {b: len(e) for b, e in eig.items()}
        print(f"workload {key}: train acc {acc:.3f}, blocks {dims}", flush=True)
    return Workload(model, x, y, loss_fn, blocks, eig, cfg, key, acc, info)


def exact_entropy(eigenvalues: np.ndarray, alpha: float) -> float:
    """Exact H_α of |λ| (Eq. 6): 1/(1-α) log(Σ|λ|^α / (Σ|λ|)^α); α = 1 is the Shannon limit."""
    lam = np.abs(np.asarray(eigenvalues, dtype=np.float64))
    p = lam / lam.sum()
    p = p[p > 0]
    if alpha == 1:
        return float(-(p * np.log(p)).sum())
    return float(np.log((p**alpha).sum()) / (1 - alpha))


def machine_info() -> dict:
    """The machine, threads and versions a measurement was taken with."""
    import platform

    return {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "clock": CLOCK["name"],
        "torch": torch.__version__,
        "python": platform.python_version(),
        "code_version": code_version(),
    }


#: The clock of :func:`compare`: ``"cpu"`` (process CPU time) or ``"wall"``; see :func:`set_clock`.
CLOCK = {"name": "cpu", "fn": time.process_time}


def set_clock(name: str) -> None:
    """Choose the benchmark clock: ``"cpu"`` (``time.process_time``) or ``"wall"`` (``perf_counter``).

    With one torch thread the process's CPU time equals the wall time on an idle
    machine, and on a shared machine it leaves out the time other processes
    hold the core, so ``"cpu"`` (the default) gives stable ratios there.
    """
    if name not in ("cpu", "wall"):
        raise ValueError(f"clock must be 'cpu' or 'wall', got {name!r}")
    CLOCK["name"] = name
    CLOCK["fn"] = time.process_time if name == "cpu" else time.perf_counter


def clock() -> float:
    """The current reading of the benchmark clock (seconds)."""
    return CLOCK["fn"]()


def timeit(fn, repeats: int = 20, warmup: int = 2) -> float:
    """Best (minimum) time of ``fn()`` in seconds over ``repeats`` calls, after ``warmup`` calls."""
    return compare({"f": fn}, repeats, warmup)["f"]


def compare(fns: dict, repeats: int = 20, warmup: int = 2) -> dict[str, float]:
    """Best time (minimum over rounds, on :func:`clock`) of each callable.

    Every round calls every function once (interleaved), so a burst of load
    from other processes hits all of them alike; the minimum because other
    processes only ever add time.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = clock()
            fn()
            best[name] = min(best[name], clock() - t0)
    return best


if __name__ == "__main__":
    torch.set_num_threads(1)
    w = load_workload()
    for b, ev in w.eigenvalues.items():
        neg = float(np.abs(ev[ev < 0]).sum() / np.abs(ev).sum())
        hs = ", ".join(f"H_{a}={exact_entropy(ev, a):.3f}" for a in FRONTIER_ALPHAS)
        print(
            f"{b:>14s} n={len(ev):5d} max={ev.max():.3e} neg_mass={neg:.3f} {hs} log n={np.log(len(ev)):.3f}"
        )
