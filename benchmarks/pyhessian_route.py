"""What a user would do with PyHessian 0.1 (Yao et al. 2020) for a per-layer Rényi profile.

PyHessian's PyPI release 0.1 still calls ``torch.eig`` (removed in torch 2) in
``hessian.density``. :func:`install_torch_eig_shim` puts back a ``torch.eig``
built on ``torch.linalg.eigh`` (PyHessian only applies it to its symmetric
Lanczos tridiagonal ``T``, so the eigenvalues are real and ``eigh`` is exact
there); it returns ``(eigenvalues as an (m, 2) [real, imag=0] tensor,
eigenvectors as columns)`` like the old API. (torch 2.14 still has a
``torch.eig`` attribute, a stub that raises; the shim replaces it.) This shim is benchmark-only.

PyHessian has no block API: one ``pyhessian.hessian`` object per block, built
with only that block's parameters requiring a gradient (its
``get_params_grad`` takes every parameter with ``requires_grad``). It builds
one double-backward graph of the whole batch and reuses it for every product
(``retain_graph=True``).

Its ``density(iter=m, n_v=l)`` runs ``l`` Lanczos runs of ``m`` steps from
unit-norm Rademacher probes with full reorthogonalization (its ``orthnormal``
against every previous vector) and returns, per probe, the Ritz values and the
Gauss weights ``U[0, j]^2`` (summing to one per probe). So
``v^T f(H) v ≈ Σ_j w_j f(θ_j)`` for a unit ``v``, and

    Tr f(H) ≈ (n / l) Σ_k Σ_j w_kj f(θ_kj),

which is how :func:`entropy_from_density` turns PyHessian's output into H_α
(Eq. 6, with |λ| for negative nodes, the same convention as renyilib's
default ``negative="abs"``). This is the *correct* normalization, so the
comparison measures PyHessian's quadrature, not Algorithm 1's log(l/n) shift.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn


def install_torch_eig_shim() -> None:
    """Give torch 2 a ``torch.eig(A, eigenvectors=True)`` for symmetric ``A`` (via ``torch.linalg.eigh``)."""
    if getattr(torch.eig, "_renyilib_shim", False):
        return

    def eig(a: torch.Tensor, eigenvectors: bool = False):
        vals, vecs = torch.linalg.eigh(a)
        pairs = torch.stack([vals, torch.zeros_like(vals)], dim=1)
        return pairs, (vecs if eigenvectors else torch.empty(0, dtype=a.dtype))

    eig._renyilib_shim = True  # type: ignore[attr-defined]
    torch.eig = eig  # torch 2 keeps a stub that raises; replace it


def _pyhessian():
    install_torch_eig_shim()
    try:
        import pyhessian
    except ImportError as err:  # pragma: no cover - benchmark-only dependency
        raise ImportError(
            "the PyHessian comparison needs `pip install pyhessian==0.1` (make bench installs it)"
        ) from err
    return pyhessian


class BlockHessian:
    """A ``pyhessian.hessian`` for one block: only the block's parameters require a gradient.

    Use as a context manager; the model's ``requires_grad`` flags and ``.grad``
    are restored / cleared on exit.
    """

    def __init__(
        self, model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, names: list[str]
    ):
        self.model, self.loss_fn, self.x, self.y, self.names = model, loss_fn, x, y, list(names)
        self.hessian = None

    def __enter__(self):
        pyhessian = _pyhessian()
        self._flags = {n: p.requires_grad for n, p in self.model.named_parameters()}
        for n, p in self.model.named_parameters():
            p.requires_grad_(n in self.names)
        self.model.zero_grad(set_to_none=True)
        self.hessian = pyhessian.hessian(
            self.model, self.loss_fn, data=(self.x, self.y), cuda=False
        )
        return self

    def hvp(self, v: list[torch.Tensor]) -> list[torch.Tensor]:
        """One product through PyHessian's reused graph (its ``hessian_vector_product``)."""
        from pyhessian.utils import hessian_vector_product

        return hessian_vector_product(self.hessian.gradsH, self.hessian.params, v)

    def density(
        self, num_probes: int, lanczos_steps: int, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """PyHessian's SLQ: (nodes, weights), each (num_probes, lanczos_steps), float64."""
        torch.manual_seed(seed)  # its probes use torch's global generator
        nodes, weights = self.hessian.density(iter=lanczos_steps, n_v=num_probes)
        return np.asarray(nodes, dtype=np.float64), np.asarray(weights, dtype=np.float64)

    def __exit__(self, *exc):
        self.model.zero_grad(set_to_none=True)
        for n, p in self.model.named_parameters():
            p.requires_grad_(self._flags[n])
        self.hessian = None
        return False


def entropy_from_density(nodes: np.ndarray, weights: np.ndarray, dim: int, alphas) -> np.ndarray:
    """H_α (Eq. 6, of |λ|) from PyHessian's per-probe nodes and unit-sum weights.

    ``Tr|H|^a ≈ (dim / l) Σ_kj w_kj |θ_kj|^a``; ``H_α = (log Tr|H|^α − α log Tr|H|) / (1 − α)``,
    with the Shannon limit ``log Tr|H| − Tr(|H| log|H|) / Tr|H|`` at α = 1.
    """
    lam = np.abs(nodes.ravel())
    w = weights.ravel() * dim / nodes.shape[0]
    keep = (lam > 0) & (w > 0)
    lam, w = lam[keep], w[keep]
    t1 = float((w * lam).sum())
    out = []
    for a in np.atleast_1d(alphas):
        if a == 1:
            out.append(np.log(t1) - float((w * lam * np.log(lam)).sum()) / t1)
        else:
            ta = float((w * lam**a).sum())
            out.append((np.log(ta) - a * np.log(t1)) / (1 - a))
    return np.asarray(out)


def pyhessian_profile(
    model: nn.Module,
    loss_fn,
    x: torch.Tensor,
    y: torch.Tensor,
    blocks: dict[str, list[str]],
    alphas,
    num_probes: int,
    lanczos_steps: int,
    seed: int = 0,
) -> dict[str, dict]:
    """The PyHessian route for every block: H_α at ``alphas`` and the wall time per block."""
    out = {}
    for b, names in blocks.items():
        t0 = time.perf_counter()
        with BlockHessian(model, loss_fn, x, y, names) as bh:
            nodes, weights = bh.density(num_probes, lanczos_steps, seed)
            dim = sum(p.numel() for p in bh.hessian.params)
        ent = entropy_from_density(nodes, weights, dim, alphas)
        out[b] = {
            "entropy": ent,
            "seconds": time.perf_counter() - t0,
            "products": num_probes * lanczos_steps,
        }
    return out
