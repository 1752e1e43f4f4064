"""Lanczos with full reorthogonalization and stochastic Lanczos quadrature (SLQ).

SLQ (Algorithm 1 of the paper; Ubaru, Chen & Saad 2017) estimates spectral
sums :math:`\\operatorname{Tr} f(H) = \\sum_i f(\\lambda_i)` of a symmetric
:math:`n\\times n` operator from matrix-vector products only. For a random unit
probe :math:`v` (Hutchinson, Eq. 7: :math:`\\mathbb E[n\\, v^\\top f(H) v] =
\\operatorname{Tr} f(H)`), :math:`m` Lanczos steps give a tridiagonal
:math:`T = U \\operatorname{diag}(\\theta) U^\\top` and the Gauss quadrature

.. math::

    v^\\top f(H) v \\approx e_1^\\top f(T) e_1 = \\sum_{j=1}^{m} \\tau_j f(\\theta_j),
    \\qquad \\tau_j = U_{1j}^2,

exact for polynomials of degree :math:`\\le 2m-1`. Averaging over
:math:`l` probes,

.. math::

    \\operatorname{Tr} f(H) \\approx \\frac{n}{l} \\sum_{k=1}^{l} \\sum_{j} \\tau^{(k)}_j f(\\theta^{(k)}_j).

:func:`slq` returns the nodes :math:`\\theta` and weights :math:`\\tau` as a
:class:`SpectralQuadrature`, from which :meth:`SpectralQuadrature.trace`,
:meth:`SpectralQuadrature.renyi_entropy` (Eq. 6) and
:meth:`SpectralQuadrature.density` are all computed, so one SLQ run serves every
:math:`f` and every Rényi order :math:`\\alpha`.

Operators: a dense symmetric ``torch.Tensor`` or ``numpy`` array, a
``scipy.sparse.linalg.LinearOperator`` (or sparse matrix), or any object with a
``shape`` and ``@`` on torch tensors (e.g. :class:`renyilib.hessian.HessianOperator`).
The Lanczos vectors stay in the operator's dtype and device (float32 on a GPU
for a float32 model); every scalar (the :math:`\\alpha_j, \\beta_j` of
:math:`T`, inner products and norms) is accumulated in float64, and :math:`T`
is diagonalized in float64 with ``scipy.linalg.eigh_tridiagonal``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import scipy.linalg
import torch

from renyilib.entropy import (
    check_orders,
    renyi_from_masses,
    renyi_shift_sensitivity,
    spectrum_magnitude,
)

__all__ = [
    "DeflationError",
    "Estimate",
    "EigenPair",
    "EigenPairs",
    "LanczosResult",
    "SpectralQuadrature",
    "lanczos",
    "probe_vectors",
    "slq",
    "top_eigenpair",
    "top_eigenpairs",
]


# --------------------------------------------------------------------------- operators
class _Op:
    """Uniform view of an operator: ``n``, ``dtype``, ``device`` and a counted ``matmat``."""

    def __init__(self, op: Any, name: str = "op") -> None:
        self.num_matvecs = 0
        if isinstance(op, np.ndarray):
            op = torch.from_numpy(np.asarray(op, dtype=np.float64))
        if isinstance(op, torch.Tensor):
            if op.dim() != 2 or op.shape[0] != op.shape[1]:
                raise ValueError(f"{name}: expected a square matrix, got shape {tuple(op.shape)}")
            if not op.is_floating_point():
                op = op.double()
            asym = float(torch.linalg.matrix_norm((op - op.T).double(), ord="fro"))
            tol = (
                100
                * torch.finfo(op.dtype).eps
                * float(torch.linalg.matrix_norm(op.double(), ord="fro"))
            )
            if not asym <= tol:
                raise ValueError(
                    f"{name}: expected a symmetric matrix, got ||A - A^T||_F = {asym:.3g}"
                )
            A = op
            self.n, self.dtype, self.device = A.shape[0], A.dtype, A.device
            self._mm: Callable[[torch.Tensor], torch.Tensor] = lambda V: A @ V
            return
        shape = getattr(op, "shape", None)
        if shape is None or len(shape) != 2:
            raise TypeError(
                f"{name}: expected a square torch.Tensor, numpy array, scipy LinearOperator or an "
                f"object with .shape and @ (e.g. HessianOperator), got {type(op).__name__}"
            )
        if shape[0] != shape[1]:
            raise ValueError(f"{name}: expected a square operator, got shape {tuple(shape)}")
        self.n = int(shape[0])
        if _is_scipy(op):
            import scipy.sparse.linalg as spla

            lin = spla.aslinearoperator(op)
            self.dtype, self.device = torch.float64, torch.device("cpu")

            def mm(V: torch.Tensor) -> torch.Tensor:
                out = lin.matmat(V.detach().cpu().double().numpy())
                return torch.from_numpy(np.asarray(out, dtype=np.float64).reshape(V.shape))

            self._mm = mm
            return
        self.dtype = getattr(op, "dtype", torch.float64)
        if not isinstance(self.dtype, torch.dtype):
            self.dtype = torch.float64
        self.device = torch.device(getattr(op, "device", "cpu"))
        self._mm = lambda V: op @ V

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        self.num_matvecs += V.shape[1]
        out = self._mm(V.to(self.dtype))
        return out.reshape(V.shape).to(self.dtype)


def _is_scipy(op: Any) -> bool:
    mod = type(op).__module__ or ""
    return mod.startswith("scipy.")


# --------------------------------------------------------------------------- Lanczos
@dataclass
class LanczosResult:
    """Output of :func:`lanczos` for one starting vector.

    Attributes:
        alpha: Diagonal of :math:`T`, float64, shape ``(m,)``.
        beta: Off-diagonal of :math:`T`, float64, shape ``(m-1,)``.
        basis: Lanczos vectors as rows, shape ``(m, n)``, in the operator's
            dtype/device (only if ``return_basis=True``).
        breakdown: True if the run stopped early because
            :math:`\\beta_j \\le` ``breakdown_tol`` :math:`\\cdot \\max_i \\|H q_i\\|`
            (an invariant subspace was found; ``m`` is then smaller than asked).
        num_matvecs: Operator products used.
        beta_next: The residual norm :math:`\\beta_m = \\|w_m\\|` after the last step
            (:math:`H Q_m = Q_m T_m + \\beta_m q_{m+1} e_m^\\top`); 0 after a breakdown.
    """

    alpha: np.ndarray
    beta: np.ndarray
    basis: torch.Tensor | None = None
    breakdown: bool = False
    num_matvecs: int = 0
    beta_next: float = 0.0

    @property
    def num_steps(self) -> int:
        return len(self.alpha)

    def tridiagonal(self) -> np.ndarray:
        """Dense float64 :math:`T`."""
        return np.diag(self.alpha) + np.diag(self.beta, 1) + np.diag(self.beta, -1)

    def ritz(self) -> tuple[np.ndarray, np.ndarray]:
        """Eigen-decomposition of :math:`T`: Ritz values (ascending) and eigenvectors of :math:`T`."""
        return _eigh_tridiagonal(self.alpha, self.beta)


def _eigh_tridiagonal(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(alpha) == 1:
        return alpha.copy(), np.ones((1, 1))
    try:
        return scipy.linalg.eigh_tridiagonal(alpha, beta)
    except (np.linalg.LinAlgError, ValueError):  # pragma: no cover - LAPACK fallback
        T = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
        return np.linalg.eigh(T)


def _radau_zero(res: LanczosResult) -> tuple[np.ndarray, np.ndarray] | None:
    """Gauss-Radau nodes and weights with a node prescribed at 0 (Golub & Meurant 2009, §6.2).

    Extends :math:`T_m` by one row/column,
    :math:`\\tilde T = \\begin{pmatrix} T_m & \\beta_m e_m \\\\ \\beta_m e_m^\\top & \\tilde\\alpha \\end{pmatrix}`
    with :math:`\\tilde\\alpha = \\beta_m^2\\, e_m^\\top T_m^{-1} e_m`, so that 0 is an
    eigenvalue of :math:`\\tilde T`; the ``m + 1`` nodes are exact for polynomials of
    degree :math:`\\le 2m`. Returns ``None`` (use Gauss) after a breakdown (Gauss is then
    exact), if :math:`T_m` is numerically singular, or if a node leaves the Gauss nodes'
    range by more than its width (a sign of an ill-conditioned extension).
    """
    if res.breakdown or res.beta_next == 0.0:
        return None
    theta, U = res.ritz()
    width = max(theta[-1] - theta[0], abs(theta).max(), np.finfo(float).tiny)
    # e_mᵀ T⁻¹ e_m from the eigen-decomposition; refuse near-singular T.
    if np.min(np.abs(theta)) <= 1e-12 * width:
        return None
    tail = np.sum(U[-1] ** 2 / theta)
    m = len(theta)
    T = np.zeros((m + 1, m + 1))
    T[:m, :m] = res.tridiagonal()
    T[m - 1, m] = T[m, m - 1] = res.beta_next
    T[m, m] = res.beta_next**2 * tail
    nodes, V = np.linalg.eigh(T)
    lo, hi = min(theta[0], 0.0) - width, max(theta[-1], 0.0) + width
    if not np.all(np.isfinite(nodes)) or nodes[0] < lo or nodes[-1] > hi:
        return None
    weights = V[0] ** 2
    # The prescribed node is exactly 0 in exact arithmetic; snap the rounding.
    nodes[np.argmin(np.abs(nodes))] = 0.0
    return nodes, weights


def _default_tol(dtype: torch.dtype) -> float:
    return math.sqrt(torch.finfo(dtype).eps)


def _lanczos_block(
    op: _Op,
    num_steps: int,
    V0: torch.Tensor,
    breakdown_tol: float | None,
    return_basis: bool,
    deflate: torch.Tensor | None = None,
) -> list[LanczosResult]:
    """``k`` independent Lanczos runs (one per column of ``V0``), advanced together.

    All active columns share one ``op.matmat`` call per step (a batched product
    is cheaper than ``k`` single ones for Hessian operators). Each column stops
    at its own breakdown (its later vectors are zero and it takes no further
    products). If ``deflate`` (orthonormal rows, shape ``(d, n)``) is given, the
    runs use :math:`P H P` with :math:`P = I - D^\\top D`.
    """
    n, k = V0.shape
    m = min(num_steps, n if deflate is None else n - deflate.shape[0])
    tol = _default_tol(op.dtype) if breakdown_tol is None else breakdown_tol
    dt, dev = op.dtype, op.device

    def project(W: torch.Tensor) -> torch.Tensor:  # rows are vectors
        if deflate is None:
            return W
        return W - (W @ deflate.T) @ deflate

    Q = torch.zeros(k, m, n, dtype=dt, device=dev)  # Q[c, j] = j-th Lanczos vector of run c
    alphas = np.zeros((m, k))
    betas = np.zeros((m, k))
    steps = np.zeros(k, dtype=int)
    broke = np.zeros(k, dtype=bool)
    scale = np.zeros(k)
    q = project(V0.T.to(device=dev, dtype=dt))
    norms = torch.linalg.vector_norm(q.double(), dim=1).cpu().numpy()
    if np.any(norms == 0) or not np.all(np.isfinite(norms)):
        raise ValueError("v0: starting vectors must be finite and non-zero (after deflation)")
    Q[:, 0] = q / torch.as_tensor(norms, dtype=dt, device=dev)[:, None]
    active = np.ones(k, dtype=bool)
    for j in range(m):
        qj = Q[:, j]
        if active.all():
            w = project(op.matmat(project(qj).T).T)
        else:
            idx = torch.as_tensor(np.nonzero(active)[0], device=dev)
            w = torch.zeros_like(qj)
            w[idx] = project(op.matmat(project(qj[idx]).T).T)
        wn = torch.linalg.vector_norm(w.double(), dim=1).cpu().numpy()
        if not np.all(np.isfinite(wn)):
            raise ValueError("op: produced non-finite values in a matrix-vector product")
        scale = np.maximum(scale, wn)
        a = (w.double() * qj.double()).sum(1)
        alphas[j, active] = a.cpu().numpy()[active]
        w = w - qj * a.to(dt)[:, None]
        if j > 0:
            w = w - Q[:, j - 1] * torch.as_tensor(betas[j - 1], dtype=dt, device=dev)[:, None]
        # Full reorthogonalization against all previous Lanczos vectors, twice
        # ("twice is enough", Giraud et al. 2005), and against the deflated space.
        Qj = Q[:, : j + 1]  # (k, j+1, n)
        for _ in range(2):
            c = torch.bmm(Qj, w.unsqueeze(2))  # (k, j+1, 1)
            w = project(w - torch.bmm(Qj.transpose(1, 2), c).squeeze(2))
        steps[active] = j + 1
        b = torch.linalg.vector_norm(w.double(), dim=1).cpu().numpy()
        stop = active & (b <= tol * np.maximum(scale, np.finfo(float).tiny))
        broke |= stop
        active &= ~stop
        betas[j, active] = b[active]  # for j = m - 1: the residual norm β_m
        if j == m - 1 or not active.any():
            break
        inv = np.where(active, 1.0 / np.where(active, b, 1.0), 0.0)
        Q[:, j + 1] = w * torch.as_tensor(inv, dtype=dt, device=dev)[:, None]
    results = []
    for c in range(k):
        s_ = int(steps[c])
        results.append(
            LanczosResult(
                alpha=alphas[:s_, c].copy(),
                beta=betas[: s_ - 1, c].copy(),
                basis=Q[c, :s_].clone() if return_basis else None,
                breakdown=bool(broke[c]),
                num_matvecs=s_,
                beta_next=float(betas[s_ - 1, c]),
            )
        )
    return results


def lanczos(
    op: Any,
    num_steps: int,
    v0: torch.Tensor | np.ndarray,
    *,
    breakdown_tol: float | None = None,
    return_basis: bool = False,
) -> LanczosResult:
    """Lanczos tridiagonalization with full reorthogonalization.

    Builds an orthonormal basis :math:`Q_m = [q_1, \\dots, q_m]` of the Krylov
    space :math:`\\mathcal K_m(H, v_0)` and :math:`T_m = Q_m^\\top H Q_m`
    tridiagonal (the loop of Algorithm 1):
    :math:`w = H q_j - \\alpha_j q_j - \\beta_{j-1} q_{j-1}`,
    :math:`\\alpha_j = q_j^\\top H q_j`, :math:`\\beta_j = \\|w\\|`,
    :math:`q_{j+1} = w / \\beta_j`. Each :math:`w` is reorthogonalized twice
    against all previous :math:`q_i` (classical Gram-Schmidt twice), which keeps
    :math:`Q_m` orthonormal to working precision and prevents the spurious
    ("ghost") Ritz values of plain Lanczos.

    Breakdown: if :math:`\\beta_j \\le` ``breakdown_tol`` times the largest
    :math:`\\|H q_i\\|` seen (an estimate of :math:`\\|H\\|`), the Krylov space is
    invariant; the run stops and returns the smaller :math:`T_j` (whose Ritz
    values are then exact eigenvalues). Default tolerance:
    :math:`\\sqrt{\\varepsilon}` of the operator's dtype.

    Args:
        op: A dense symmetric matrix (torch/numpy), a scipy ``LinearOperator``,
            an object with ``shape`` and ``@`` (e.g. ``HessianOperator``), or a
            callable ``matvec(v) -> H v`` on torch tensors of shape ``(n,)``.
        num_steps: Number of steps ``m`` (at most ``n``).
        v0: Starting vector, shape ``(n,)`` (normalized internally).
        breakdown_tol: Relative breakdown tolerance (see above).
        return_basis: Also return the Lanczos vectors (rows of ``basis``).

    Returns:
        A :class:`LanczosResult` with float64 ``alpha`` and ``beta``.

    Example:
        >>> A = np.diag([1.0, 2.0, 3.0, 4.0])
        >>> res = lanczos(A, 4, np.ones(4))
        >>> np.round(res.ritz()[0], 10).tolist()
        [1.0, 2.0, 3.0, 4.0]
    """
    v = torch.as_tensor(v0) if isinstance(v0, np.ndarray) else v0
    if not isinstance(v, torch.Tensor) or v.dim() != 1:
        raise ValueError(
            f"v0: expected a vector of shape (n,), got {getattr(v0, 'shape', type(v0))}"
        )
    if callable(op) and not hasattr(op, "shape") and not isinstance(op, torch.Tensor):
        fn = op
        n = v.shape[0]

        class _Fn:
            shape = (n, n)
            dtype = v.dtype if v.is_floating_point() else torch.float64
            device = v.device

            def __matmul__(self, V: torch.Tensor) -> torch.Tensor:
                return torch.stack([fn(V[:, i]) for i in range(V.shape[1])], dim=1)

        wrapped = _Op(_Fn())
    else:
        wrapped = _Op(op)
    if v.shape[0] != wrapped.n:
        raise ValueError(f"v0: expected length {wrapped.n}, got {v.shape[0]}")
    _check_pos_int(num_steps, "num_steps")
    return _lanczos_block(wrapped, num_steps, v.reshape(-1, 1), breakdown_tol, return_basis)[0]


def _check_pos_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")


# --------------------------------------------------------------------------- SLQ result
class DeflationError(ValueError):
    """Deflated eigenpairs did not converge (:func:`slq` with ``deflate_unconverged="raise"``).

    Attributes:
        residuals: Residual norms :math:`\\|Hv_i - \\lambda_i v_i\\|` of the pairs.
    """

    def __init__(self, message: str, residuals: np.ndarray) -> None:
        super().__init__(message)
        self.residuals = np.asarray(residuals, dtype=np.float64)


class Estimate(NamedTuple):
    """A stochastic estimate and its standard error across probes."""

    value: float | np.ndarray
    stderr: float | np.ndarray


@dataclass
class SpectralQuadrature:
    """Nodes and weights of stochastic Lanczos quadrature (plus exactly known eigenvalues).

    The estimated spectral measure of :math:`H` is

    .. math::

        \\mu = \\sum_{i=1}^{d} \\delta_{\\lambda_i}
        + \\frac{n - d}{l} \\sum_{k=1}^{l} \\sum_j \\tau^{(k)}_j \\delta_{\\theta^{(k)}_j},

    with ``exact_nodes`` :math:`\\lambda_1..\\lambda_d` (deflated eigenvalues,
    :math:`d = 0` without deflation) and, for each probe :math:`k`, the Ritz
    values :math:`\\theta^{(k)}` and Gauss weights :math:`\\tau^{(k)}` (summing
    to one per probe), so that :math:`\\int f\\, d\\mu \\approx \\operatorname{Tr} f(H)`
    and :math:`\\mu(\\mathbb R) = n`.

    Attributes:
        nodes: Ritz values, float64, shape ``(num_probes, m)``; rows from runs
            that broke down early are padded with weight-0 entries.
        weights: Gauss weights :math:`\\tau`, same shape.
        dim: Dimension ``n`` of the operator.
        num_probes: Number of probes ``l``.
        lanczos_steps: Requested Lanczos steps ``m``.
        num_matvecs: Operator products used in total (including deflation).
        exact_nodes: Deflated eigenvalues (float64, shape ``(d,)``), each with weight one.
        exact_residuals: Residual norms :math:`\\|Hv-\\lambda v\\|` of the deflated pairs.
        probe: ``"rademacher"`` or ``"gaussian"`` (``"exact"`` for a dense eigendecomposition).
        seed: The seed used for the probes.
        quadrature: ``"gauss"`` or ``"radau"`` (see :func:`slq`).
        residuals_folded: The deflated pairs did not converge and their
            residuals are folded into every ``stderr`` (:func:`slq` with
            ``deflate_unconverged="fold"``).
    """

    nodes: np.ndarray
    weights: np.ndarray
    dim: int
    num_probes: int
    lanczos_steps: int
    num_matvecs: int = 0
    exact_nodes: np.ndarray = field(default_factory=lambda: np.zeros(0))
    exact_residuals: np.ndarray = field(default_factory=lambda: np.zeros(0))
    probe: str = "rademacher"
    seed: int | None = None
    quadrature: str = "gauss"
    residuals_folded: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable dict (lists of floats); inverse of :meth:`from_dict`."""
        return {
            "nodes": self.nodes.tolist(),
            "weights": self.weights.tolist(),
            "dim": int(self.dim),
            "num_probes": int(self.num_probes),
            "lanczos_steps": int(self.lanczos_steps),
            "num_matvecs": int(self.num_matvecs),
            "exact_nodes": self.exact_nodes.tolist(),
            "exact_residuals": self.exact_residuals.tolist(),
            "probe": self.probe,
            "seed": self.seed,
            "quadrature": self.quadrature,
            "residuals_folded": bool(self.residuals_folded),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpectralQuadrature:
        """Rebuild from :meth:`to_dict` output (e.g. read back with ``renyilib.experiments.io.read_json``)."""
        m = max(1, len(d["nodes"][0]) if d["nodes"] else 1)
        return cls(
            nodes=np.asarray(d["nodes"], dtype=np.float64).reshape(-1, m),
            weights=np.asarray(d["weights"], dtype=np.float64).reshape(-1, m),
            dim=int(d["dim"]),
            num_probes=int(d["num_probes"]),
            lanczos_steps=int(d["lanczos_steps"]),
            num_matvecs=int(d.get("num_matvecs", 0)),
            exact_nodes=np.asarray(d.get("exact_nodes", []), dtype=np.float64),
            exact_residuals=np.asarray(d.get("exact_residuals", []), dtype=np.float64),
            probe=d.get("probe", "rademacher"),
            seed=d.get("seed"),
            quadrature=d.get("quadrature", "gauss"),
            residuals_folded=bool(d.get("residuals_folded", False)),
        )

    @property
    def complement_dim(self) -> int:
        """Dimension :math:`n - d` covered by the stochastic part."""
        return self.dim - len(self.exact_nodes)

    # -- traces -------------------------------------------------------------
    def _per_probe(self, f: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Per-probe estimates :math:`\\sum_i f(\\lambda_i) + (n-d) \\sum_j \\tau_j f(\\theta_j)`."""
        exact = float(np.sum(f(self.exact_nodes))) if len(self.exact_nodes) else 0.0
        if self.num_probes == 0:  # fully exact spectrum (no stochastic part)
            return np.array([exact])
        vals = np.where(self.weights > 0, f(self.nodes), 0.0)
        stoch = self.complement_dim * (self.weights * vals).sum(axis=1)
        return exact + stoch

    def trace(self, f: Callable[[np.ndarray], np.ndarray] | None = None) -> Estimate:
        """Estimate :math:`\\operatorname{Tr} f(H)` and its standard error across probes.

        ``value`` is the mean of the per-probe estimates
        :math:`t_k = \\sum_i f(\\lambda_i) + (n-d)\\sum_j \\tau^{(k)}_j f(\\theta^{(k)}_j)`
        and ``stderr`` their sample standard deviation over :math:`\\sqrt l`
        (``nan`` for one probe), plus, with ``residuals_folded``, the
        first-order bound :math:`\\sum_j \\mu_j \\max_\\pm |f(\\theta_j \\pm \\varepsilon) -
        f(\\theta_j)|` over all nodes of the measure (:attr:`deflation_error`); for
        ``f=None`` nothing is added: :math:`\\operatorname{Tr} H = \\sum_i \\lambda_i +
        \\operatorname{Tr} PHP` holds exactly for Ritz pairs. ``f`` maps a float64 array elementwise
        (default: identity, i.e. :math:`\\operatorname{Tr} H`).

        Example:
            >>> q = slq(np.diag([1.0, 2.0, 3.0]), num_probes=5, lanczos_steps=3, seed=0)
            >>> round(q.trace(lambda x: x**2).value, 8)  # Rademacher probes: exact for diagonal H
            14.0
        """
        identity = f is None
        f = (lambda x: x) if f is None else f
        t = self._per_probe(f)
        bound = 0.0 if identity else self._trace_fold(f)
        if self.num_probes == 0:
            return Estimate(float(t[0]), bound)
        se = float(t.std(ddof=1) / math.sqrt(len(t))) if len(t) > 1 else math.nan
        return Estimate(float(t.mean()), se + bound)

    @property
    def deflation_error(self) -> float:
        """Weyl bound :math:`\\varepsilon = (\\sum_i r_i^2)^{1/2}` of unconverged deflation (0 if none).

        With the Ritz vectors :math:`V` of the deflated pairs and the residuals
        :math:`R = HV - V\\Lambda` (:math:`V^\\top R = 0`), :math:`H` is
        :math:`\\operatorname{diag}(\\Lambda, PHP)` plus an off-diagonal block of
        spectral norm :math:`\\|R\\|_2 \\le \\|R\\|_F = \\varepsilon`, so (Weyl) every
        eigenvalue of the deflated decomposition, exact nodes and complement alike,
        is within :math:`\\varepsilon` of an eigenvalue of :math:`H`.
        """
        if not self.residuals_folded or not len(self.exact_residuals):
            return 0.0
        return float(np.sqrt(np.sum(np.square(self.exact_residuals))))

    def _measure(self) -> tuple[np.ndarray, np.ndarray]:
        """The estimated spectral measure as (masses, nodes), probes averaged, zero masses dropped."""
        masses = np.concatenate(
            [
                np.ones(len(self.exact_nodes)),
                self.complement_dim * self.weights.ravel() / max(self.num_probes, 1),
            ]
        )
        nodes = np.concatenate([self.exact_nodes, self.nodes.ravel()])
        keep = masses > 0
        return masses[keep], nodes[keep]

    def _trace_fold(self, f: Callable[[np.ndarray], np.ndarray]) -> float:
        """:math:`\\sum_j \\mu_j \\max_\\pm |f(\\theta_j \\pm \\varepsilon) - f(\\theta_j)|` (see :meth:`trace`)."""
        eps = self.deflation_error
        if eps == 0.0:
            return 0.0
        mu, th = self._measure()
        base = f(th)
        worst = np.maximum(np.abs(f(th + eps) - base), np.abs(f(th - eps) - base))
        return float(np.sum(mu * worst))

    def _renyi_fold(self, alphas: np.ndarray, negative: str) -> np.ndarray:
        """:func:`~renyilib.entropy.renyi_shift_sensitivity` of the measure at :attr:`deflation_error`."""
        eps = self.deflation_error
        if eps == 0.0:
            return np.zeros(len(alphas))
        mu, th = self._measure()
        return renyi_shift_sensitivity(mu, th, eps, alphas, negative)

    @property
    def negative_mass(self) -> float:
        """Fraction of the :math:`|\\theta|`-weighted mass on negative nodes.

        :math:`\\int_{\\lambda<0} |\\lambda|\\, d\\mu / \\int |\\lambda|\\, d\\mu`, i.e.
        :math:`\\sum_{\\lambda_i<0} |\\lambda_i| / \\sum_i |\\lambda_i|` estimated by quadrature
        (0 for a PSD matrix; the share of the entropy's normalizer
        :math:`\\operatorname{Tr}|H|` that comes from negative curvature).
        """
        neg = self._per_probe(lambda x: np.where(x < 0, -x, 0.0)).mean()
        tot = self._per_probe(np.abs).mean()
        return float(neg / tot) if tot > 0 else 0.0

    # -- Rényi entropy ------------------------------------------------------
    def _masses(self, negative: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per-probe masses and values: (w (l, m), x (l, m), w_exact (d,), x_exact (d,))."""
        g = spectrum_magnitude(negative)
        x = g(self.nodes)
        w = self.complement_dim * self.weights
        return w, x, np.ones(len(self.exact_nodes)), g(self.exact_nodes)

    def renyi_entropy(
        self,
        alpha: float | Sequence[float] | np.ndarray,
        negative: str = "abs",
        normalization: str = "trace",
    ) -> Estimate:
        """Rényi entropy of the normalized spectrum (Eq. 6) for one or many orders α.

        With :math:`g(\\lambda) = |\\lambda|` (``negative="abs"``, the spectrum of
        :math:`|H|`) or :math:`g(\\lambda) = \\max(\\lambda, 0)`
        (``negative="positive"``, the positive part :math:`H_+`; Remark F.7)
        and :math:`p_i = g(\\lambda_i) / \\sum_j g(\\lambda_j)`:

        .. math::

            H_\\alpha = \\frac{1}{1-\\alpha} \\log \\frac{\\operatorname{Tr} g(H)^\\alpha}
            {(\\operatorname{Tr} g(H))^\\alpha} = \\frac{1}{1-\\alpha}\\log\\sum_i p_i^\\alpha,

        :math:`H_1 = -\\sum_i p_i \\log p_i` (Shannon) and
        :math:`H_\\infty = -\\log \\max_i p_i`. Both traces come from the same
        quadrature measure :math:`\\mu`. Near :math:`\\alpha = 1` the value is
        computed as :math:`-\\operatorname{log1p}(D/S)/(\\alpha-1) + \\log S` with
        :math:`D = \\int q\\, \\operatorname{expm1}((\\alpha-1)\\log q)\\, d\\mu`,
        :math:`q = g/\\operatorname{Tr} g(H)`, :math:`S = \\int q\\, d\\mu` (= 1), which
        is continuous through :math:`\\alpha = 1` without cancellation. For
        :math:`\\alpha = \\infty`, :math:`\\max p_i` uses the largest Ritz value.

        ``stderr`` is the jackknife standard error over probes (leave one probe
        out, recompute; :math:`\\sqrt{(l-1)/l \\sum_k (H^{(-k)} - \\bar H)^2}`); the
        exact (deflated) nodes are kept in every replicate. With
        ``residuals_folded`` the first-order bound of unconverged deflation is
        added: every node may be off by :attr:`deflation_error` :math:`\\varepsilon`
        (Weyl), and the change of :math:`H_\\alpha` when node :math:`j` moves by
        :math:`\\pm\\varepsilon` (the worse sign) is summed over the nodes.

        ``normalization="paper"`` returns Algorithm 1 exactly as printed,
        :math:`\\frac{1}{1-\\alpha}\\log(\\sum_k A_k / (\\sum_k B_k)^\\alpha)` with
        :math:`A_k = e_1^\\top g(T_k)^\\alpha e_1`, :math:`B_k = e_1^\\top g(T_k) e_1`,
        which equals the entropy plus the constant :math:`\\log(l/n)` (no
        deflation allowed).

        Args:
            alpha: Order(s) :math:`\\alpha > 0` (``np.inf`` allowed); scalar or array.
            negative: ``"abs"`` or ``"positive"`` (see above).
            normalization: ``"trace"`` (the entropy) or ``"paper"``.

        Returns:
            :class:`Estimate` with float values for scalar ``alpha``, arrays otherwise.
        """
        alphas, scalar = check_orders(alpha)
        if normalization not in ("trace", "paper"):
            raise ValueError(f"normalization must be 'trace' or 'paper', got {normalization!r}")
        w, x, we, xe = self._masses(negative)
        if normalization == "paper":
            if len(self.exact_nodes):
                raise ValueError(
                    "normalization='paper' is undefined with deflation (deflate=0 expected)"
                )
            # Sum (not mean) over probes of τ-weighted masses: ∫ x^α dν = Σ_k A_k.
            w = self.num_probes * self.weights
        vals, se = renyi_from_masses(w, x, we, xe, alphas)
        se = se + self._renyi_fold(alphas, negative)
        return _pack(vals, se, scalar)

    # -- density ------------------------------------------------------------
    def density(self, grid: np.ndarray | Sequence[float], sigma: float) -> np.ndarray:
        """Gaussian-smoothed spectral density :math:`\\frac1n \\int \\mathcal N(x; \\lambda, \\sigma^2)\\, d\\mu(\\lambda)`.

        Without deflation this is
        :math:`\\frac1l \\sum_k \\sum_j \\tau^{(k)}_j \\mathcal N(x; \\theta^{(k)}_j, \\sigma^2)`;
        it integrates to one over the real line.

        Args:
            grid: Points ``x`` (1-D).
            sigma: Kernel width :math:`\\sigma > 0`.

        Returns:
            float64 array of the density at ``grid``.
        """
        grid = np.asarray(grid, dtype=np.float64)
        if grid.ndim != 1:
            raise ValueError(f"grid: expected a 1-D array, got shape {grid.shape}")
        if not (
            isinstance(sigma, int | float | np.floating) and sigma > 0 and math.isfinite(sigma)
        ):
            raise ValueError(f"sigma: expected a positive finite float, got {sigma!r}")
        nodes = np.concatenate([self.exact_nodes, self.nodes.ravel()])
        mass = (
            np.concatenate(
                [
                    np.ones(len(self.exact_nodes)),
                    self.complement_dim * self.weights.ravel() / max(self.num_probes, 1),
                ]
            )
            / self.dim
        )
        keep = mass > 0
        nodes, mass = nodes[keep], mass[keep]
        z = (grid[:, None] - nodes[None, :]) / sigma
        return (np.exp(-0.5 * z**2) @ mass) / (sigma * math.sqrt(2 * math.pi))


def _pack(vals: np.ndarray, se: np.ndarray, scalar: bool) -> Estimate:
    if scalar:
        return Estimate(float(vals[0]), float(se[0]))
    return Estimate(vals, se)


# --------------------------------------------------------------------------- eigenpairs
class EigenPair(NamedTuple):
    """An approximate eigenpair with its residual norm :math:`\\|Hv - \\lambda v\\|`."""

    value: float
    vector: torch.Tensor
    residual: float


class EigenPairs(NamedTuple):
    """Approximate eigenpairs (values descending by the selection rule) with residual norms."""

    values: np.ndarray
    vectors: torch.Tensor  # (n, k)
    residuals: np.ndarray
    num_matvecs: int


def probe_vectors(
    n: int,
    k: int,
    seed: int | None = None,
    kind: str = "rademacher",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The probes of :func:`slq`: ``k`` unit columns of length ``n``, float64 on the CPU.

    Rademacher (:math:`\\pm 1` entries) or Gaussian entries from a CPU
    ``torch.Generator`` seeded with ``seed`` (or ``generator``), each column
    divided by its norm. Drawn on the CPU so that the same seed gives the same
    probes on every device.
    """
    gen = generator if generator is not None else torch.Generator()
    if generator is None:
        if seed is None:
            gen.seed()
        else:
            gen.manual_seed(int(seed))
    if kind == "rademacher":
        v = (
            torch.randint(0, 2, (n, k), generator=gen, dtype=torch.int8, device="cpu").to(
                torch.float64
            )
            * 2
            - 1
        )
    elif kind == "gaussian":
        v = torch.randn(n, k, generator=gen, dtype=torch.float64, device="cpu")
    else:
        raise ValueError(f"probe must be 'rademacher' or 'gaussian', got {kind!r}")
    return v / torch.linalg.vector_norm(v, dim=0)


def top_eigenpairs(
    op: Any,
    k: int = 1,
    *,
    which: str = "LA",
    num_steps: int | None = None,
    max_steps: int | None = None,
    tol: float = 1e-6,
    seed: int | None = 0,
) -> EigenPairs:
    """Top-``k`` eigenpairs by Lanczos with full reorthogonalization.

    Runs Lanczos from a seeded Rademacher vector, checking after every step
    the Ritz residual estimates :math:`\\beta_j |u_{j,i}|` (exact under full
    reorthogonalization: :math:`\\|H Q u_i - \\theta_i Q u_i\\| = \\beta_j |e_j^\\top u_i|`)
    of the wanted Ritz pairs, until all are below ``tol`` times the largest
    :math:`|\\theta|` or ``max_steps`` steps are done (a warning is issued
    then). The returned residuals are recomputed as :math:`\\|Hv - \\lambda v\\|`
    (``k`` extra products).

    Args:
        op: Symmetric operator (as in :func:`slq`).
        k: Number of pairs.
        which: ``"LA"`` (largest algebraic, e.g. :math:`\\lambda_{\\max}`) or
            ``"LM"`` (largest magnitude).
        num_steps: Minimum number of Lanczos steps before checking (default ``k + 10``).
        max_steps: Maximum steps (default ``min(n, max(4k + 60, 100))``).
        tol: Relative residual tolerance.
        seed: Seed of the starting vector.

    Returns:
        :class:`EigenPairs` (values sorted by the selection rule, vectors as columns).
    """
    pairs, converged = _top_eigenpairs(
        _Op(op), k, which=which, num_steps=num_steps, max_steps=max_steps, tol=tol, seed=seed
    )
    if not converged:
        warnings.warn(
            f"top_eigenpairs: not converged to tol={tol} after {pairs.num_matvecs - k} Lanczos "
            "steps; residuals are returned (raise max_steps)",
            RuntimeWarning,
            stacklevel=2,
        )
    return pairs


def _top_eigenpairs(
    A: _Op,
    k: int,
    *,
    which: str,
    num_steps: int | None,
    max_steps: int | None,
    tol: float,
    seed: int | None,
) -> tuple[EigenPairs, bool]:
    """:func:`top_eigenpairs` on a wrapped operator; also returns whether it converged."""
    n = A.n
    _check_pos_int(k, "k")
    if k > n:
        raise ValueError(f"k: expected at most n = {n}, got {k}")
    if which not in ("LA", "LM"):
        raise ValueError(f"which must be 'LA' or 'LM', got {which!r}")
    if not (tol > 0):
        raise ValueError(f"tol: expected a positive float, got {tol!r}")
    max_steps = min(n, max(4 * k + 60, 100)) if max_steps is None else min(n, max_steps)
    num_steps = min(max_steps, k + 10) if num_steps is None else min(max_steps, num_steps)
    _check_pos_int(max_steps, "max_steps")
    _check_pos_int(num_steps, "num_steps")
    start_count = A.num_matvecs
    v0 = probe_vectors(n, 1, seed, "rademacher", None)
    dt, dev = A.dtype, A.device
    # Lanczos vectors as rows; storage grows by doubling (most runs stop early).
    Q = torch.zeros(min(max_steps, max(2 * num_steps, 32)), n, dtype=dt, device=dev)
    Q[0] = v0[:, 0].to(device=dev, dtype=dt)
    alphas: list[float] = []
    betas: list[float] = []
    scale = 0.0
    tolb = _default_tol(dt)

    def select(theta: np.ndarray) -> np.ndarray:
        key = theta if which == "LA" else np.abs(theta)
        return np.argsort(-key, kind="stable")[: min(k, len(theta))]

    converged = False
    for j in range(max_steps):
        w = A.matmat(Q[j].reshape(-1, 1))[:, 0]
        scale = max(scale, float(torch.linalg.vector_norm(w.double())))
        a = float(torch.dot(w.double(), Q[j].double()))
        alphas.append(a)
        w = w - a * Q[j]
        if j > 0:
            w = w - betas[-1] * Q[j - 1]
        for _ in range(2):
            w = w - Q[: j + 1].T @ (Q[: j + 1] @ w)
        b = float(torch.linalg.vector_norm(w.double()))
        invariant = b <= tolb * max(scale, np.finfo(float).tiny)
        if j + 1 >= min(num_steps, n) or invariant or j + 1 == max_steps:
            theta, U = _eigh_tridiagonal(np.array(alphas), np.array(betas))
            sel = select(theta)
            est = b * np.abs(U[-1, sel])
            ref = max(np.abs(theta).max(), np.finfo(float).tiny)
            if len(sel) >= k and (invariant or np.all(est <= tol * ref)):
                converged = True
                break
        if invariant or j + 1 == max_steps:
            break
        betas.append(b)
        if j + 1 == Q.shape[0]:
            Q = torch.cat([Q, torch.zeros_like(Q[: min(Q.shape[0], max_steps - Q.shape[0])])])
        Q[j + 1] = w / b
    m = len(alphas)
    theta, U = _eigh_tridiagonal(np.array(alphas), np.array(betas[: m - 1]))
    sel = select(theta)
    Uk = torch.as_tensor(U[:, sel], dtype=dt, device=dev)
    V = Q[:m].T @ Uk  # (n, k)
    V = V / torch.linalg.vector_norm(V, dim=0)
    HV = A.matmat(V)
    vals = theta[sel]
    res = (
        torch.linalg.vector_norm(
            (HV - V * torch.as_tensor(vals, dtype=dt, device=dev)).double(), dim=0
        )
        .cpu()
        .numpy()
    )
    return EigenPairs(vals.copy(), V, res, A.num_matvecs - start_count), converged


def top_eigenpair(
    op: Any,
    num_steps: int | None = None,
    tol: float = 1e-6,
    seed: int | None = 0,
    *,
    max_steps: int | None = None,
) -> EigenPair:
    """Largest algebraic eigenvalue :math:`\\lambda_{\\max}`, its eigenvector and residual.

    Lanczos with full reorthogonalization and a convergence check on the
    Ritz residual (see :func:`top_eigenpairs`). Used for :math:`\\lambda_{\\max}`
    sharpness and by EigenSAM.

    Example:
        >>> A = np.diag([-5.0, 1.0, 2.0, 3.0])
        >>> val, vec, res = top_eigenpair(A)
        >>> round(val, 8), res < 1e-8
        (3.0, True)
    """
    pairs = top_eigenpairs(
        op, 1, which="LA", num_steps=num_steps, max_steps=max_steps, tol=tol, seed=seed
    )
    return EigenPair(float(pairs.values[0]), pairs.vectors[:, 0], float(pairs.residuals[0]))


# --------------------------------------------------------------------------- SLQ
def slq(
    op: Any,
    num_probes: int,
    lanczos_steps: int,
    seed: int | None = None,
    *,
    probe: str = "rademacher",
    quadrature: str = "gauss",
    deflate: int = 0,
    deflate_tol: float = 1e-4,
    deflate_max_steps: int | None = None,
    deflate_unconverged: str = "raise",
    probe_batch: int | None = None,
    breakdown_tol: float | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> SpectralQuadrature:
    """Stochastic Lanczos quadrature of a symmetric operator (Algorithm 1).

    For each of ``num_probes`` probes :math:`v_k` (Rademacher :math:`\\pm1` or
    Gaussian entries, normalized to unit length, drawn from a seeded CPU
    ``torch.Generator`` so that the numbers do not depend on the device),
    ``lanczos_steps`` Lanczos steps with full reorthogonalization give
    :math:`T_k`; its eigen-decomposition gives the Gauss nodes
    :math:`\\theta^{(k)}_j` and weights :math:`\\tau^{(k)}_j = (U_{1j})^2`.
    With ``lanczos_steps >= n`` the nodes are the exact eigenvalues (those
    the probe sees) and each probe's quadrature is exact.

    Deflation (``deflate=d > 0``): the top-``d`` eigenpairs by :math:`|\\lambda|`
    are computed by Lanczos (:func:`top_eigenpairs`, ``which="LM"``, tolerance
    ``deflate_tol``), enter the quadrature exactly (``exact_nodes``, weight one
    each), and SLQ runs on :math:`PHP` restricted to the complement
    (:math:`P = I - VV^\\top`, probes :math:`Pz/\\|Pz\\|`, dimension :math:`n - d`).
    This removes the probe variance of a few large outliers (the dominant
    error of :math:`H_\\alpha` for :math:`\\alpha > 1`).

    Unconverged deflation (a Ritz pair whose residual estimate exceeds
    ``deflate_tol`` times the largest :math:`|\\theta|` after
    ``deflate_max_steps`` steps) is never taken as exact silently:
    ``deflate_unconverged="raise"`` (default) raises :class:`DeflationError`
    with the residuals; ``"fold"`` keeps the pairs and folds their residuals
    :math:`r_i = \\|Hv_i - \\lambda_i v_i\\|` into the error of every estimate
    (``residuals_folded``): by Weyl's inequality every node of the deflated
    decomposition is within :math:`\\varepsilon = (\\sum_i r_i^2)^{1/2}` of an
    eigenvalue of :math:`H` (:attr:`SpectralQuadrature.deflation_error`), and
    :meth:`SpectralQuadrature.trace` / :meth:`SpectralQuadrature.renyi_entropy`
    add the first-order effect of that uncertainty to ``stderr``.

    Args:
        op: Dense symmetric torch tensor / numpy array, scipy ``LinearOperator``,
            or an object with ``shape`` and ``@`` on torch tensors (``HessianOperator``).
        num_probes: Number of probes ``l``.
        lanczos_steps: Lanczos steps ``m`` per probe (capped at the dimension).
        seed: Seed of the probe generator (``None``: fresh entropy).
        probe: ``"rademacher"`` or ``"gaussian"``.
        quadrature: ``"gauss"`` (Algorithm 1: the ``m`` Ritz values of
            :math:`T_m`) or ``"radau"`` (Gauss-Radau with a node prescribed at 0:
            ``m + 1`` nodes from the same ``m`` products, exact for degree
            :math:`\\le 2m`). Radau puts the mass of the (near-)null space of a
            rank-deficient Hessian exactly at 0 instead of on a small positive
            Ritz value, which removes most of the quadrature bias of
            :math:`\\operatorname{Tr}|H|^\\alpha` for :math:`\\alpha < 1`. Probes for
            which the extension is ill-conditioned fall back to Gauss. On strongly
            indefinite blocks the prescribed node sits inside the spectrum and
            Radau can be worse (measurements: ``benchmarks/README.md``). Default: Gauss.
        deflate: Number ``d`` of top-|λ| eigenpairs to treat exactly.
        deflate_tol: Relative residual tolerance of the deflated pairs.
        deflate_max_steps: Lanczos steps allowed for the deflated pairs
            (default: ``min(n, max(4d + 60, 100))``, see :func:`top_eigenpairs`).
        deflate_unconverged: ``"raise"`` or ``"fold"`` (see above).
        probe_batch: Probes advanced together (one ``(n, b)`` product per step).
            Default: as many as fit in ``2**28`` bytes of Lanczos vectors
            (``m·n·b`` entries; all probes for small ``n``), at least one.
        breakdown_tol: Relative breakdown tolerance of :func:`lanczos`.
        generator: A CPU ``torch.Generator`` to draw the probes from instead of ``seed``.
        progress: Show a tqdm bar over probe batches.

    Returns:
        A :class:`SpectralQuadrature`.

    Example:
        >>> lam = np.array([1.0, 2.0, 3.0, 4.0])
        >>> q = slq(np.diag(lam), num_probes=4, lanczos_steps=4, seed=0)
        >>> np.allclose(np.sort(q.nodes[0]), lam), round(q.trace().value, 10)
        (True, 10.0)
    """
    A = _Op(op)
    n = A.n
    _check_pos_int(num_probes, "num_probes")
    _check_pos_int(lanczos_steps, "lanczos_steps")
    if probe_batch is None:
        itemsize = torch.empty(0, dtype=A.dtype).element_size()
        probe_batch = max(1, min(num_probes, 2**28 // max(1, lanczos_steps * n * itemsize)))
    _check_pos_int(probe_batch, "probe_batch")
    if probe not in ("rademacher", "gaussian"):
        raise ValueError(f"probe must be 'rademacher' or 'gaussian', got {probe!r}")
    if quadrature not in ("gauss", "radau"):
        raise ValueError(f"quadrature must be 'gauss' or 'radau', got {quadrature!r}")
    if (
        isinstance(deflate, bool)
        or not isinstance(deflate, int | np.integer)
        or not 0 <= deflate < n
    ):
        raise ValueError(f"deflate: expected an int in [0, n) = [0, {n}), got {deflate!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError("generator: expected a torch.Generator")
    if deflate_unconverged not in ("raise", "fold"):
        raise ValueError(
            f"deflate_unconverged must be 'raise' or 'fold', got {deflate_unconverged!r}"
        )
    Z = probe_vectors(n, num_probes, seed, probe, generator)  # float64 CPU, unit columns
    exact = np.zeros(0)
    exact_res = np.zeros(0)
    D = None
    folded = False
    if deflate:
        pairs, converged = _top_eigenpairs(
            A,
            deflate,
            which="LM",
            num_steps=None,
            max_steps=deflate_max_steps,
            tol=deflate_tol,
            seed=None if seed is None else seed + 1,
        )
        exact, exact_res = pairs.values, pairs.residuals
        if not converged:
            scale = max(float(np.abs(exact).max()), np.finfo(float).tiny)
            if deflate_unconverged == "raise":
                raise DeflationError(
                    f"deflate: the top-{deflate} eigenpairs did not converge to "
                    f"deflate_tol={deflate_tol} (relative residuals up to "
                    f"{float(exact_res.max()) / scale:.2e}, residual norms "
                    f"{np.array2string(exact_res, precision=3)}); raise deflate_max_steps, "
                    "lower deflate, or pass deflate_unconverged='fold' to fold the residuals "
                    "into the error",
                    residuals=exact_res,
                )
            folded = True
        # Orthonormalize (Ritz vectors are orthonormal up to rounding).
        Dq, _ = torch.linalg.qr(pairs.vectors)
        D = Dq.T.contiguous()
    m = min(lanczos_steps, n - len(exact))
    width = m + 1 if quadrature == "radau" else m
    nodes = np.zeros((num_probes, width))
    weights = np.zeros((num_probes, width))
    chunks = range(0, num_probes, probe_batch)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="SLQ probes", total=math.ceil(num_probes / probe_batch))
    for start in chunks:
        stop = min(num_probes, start + probe_batch)
        V0 = Z[:, start:stop].to(device=A.device, dtype=A.dtype)
        runs = _lanczos_block(A, m, V0, breakdown_tol, False, deflate=D)
        for i, run in enumerate(runs):
            radau = _radau_zero(run) if quadrature == "radau" else None
            if radau is None:
                theta, U = run.ritz()
                tau = U[0] ** 2
            else:
                theta, tau = radau
            s = len(theta)
            nodes[start + i, :s] = theta
            weights[start + i, :s] = tau
    used = int((weights > 0).any(axis=0).nonzero()[0].max(initial=0)) + 1
    nodes, weights = nodes[:, :used], weights[:, :used]  # drop all-padding columns
    return SpectralQuadrature(
        nodes=nodes,
        weights=weights,
        dim=n,
        num_probes=num_probes,
        lanczos_steps=lanczos_steps,
        num_matvecs=A.num_matvecs,
        exact_nodes=np.asarray(exact, dtype=np.float64),
        exact_residuals=np.asarray(exact_res, dtype=np.float64),
        probe=probe,
        seed=seed,
        quadrature=quadrature,
        residuals_folded=folded,
    )
