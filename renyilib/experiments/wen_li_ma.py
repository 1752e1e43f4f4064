"""Flat but not general: the two-layer ReLU scenarios of Wen, Li & Ma (2023).

Wen, Li & Ma, "Sharpness minimization algorithms do not only minimize sharpness
to achieve better generalization" (arXiv 2307.11007), study two-layer ReLU
networks on a parity-like task, with sharpness the **trace** of the
training-loss Hessian, and find three scenarios: (I) flatness implies
generalization, (II) flattest models and SAM both fail to generalize, (III)
flattest models need not generalize but SAM still does. This module builds
their setting and measures, besides the trace, the *spread* of the spectrum
(Rényi entropy, Eq. 6 of the main paper), the main paper's sharpness.

**Data** (Appendix B): :math:`x \\sim \\mathrm{Unif}\\{-1,1\\}^d`,
:math:`y = x_1 x_2`; loss :math:`L(\\theta) = \\frac1n\\sum_i (f_\\theta(x_i) - y_i)^2`
(``torch.nn.MSELoss()``); 0-1 test error :math:`\\Pr[y f(x) \\le 0]` on fresh
points (a tie :math:`f = 0` counts as an error).

**Networks** (:class:`TwoLayerNet`, width :math:`w`, :math:`h = \\mathrm{relu}(W x)`):

============  =================================================================
no_bias       :math:`f(x) = a^\\top \\mathrm{relu}(W x)`
bias          :math:`f(x) = a^\\top \\mathrm{relu}(W x + b)`
batchnorm     :math:`f(x) = \\sum_j a_j \\gamma_j h_j(x) / s_j`,
              :math:`s_j = (\\frac1n \\sum_i h_j(x_i)^2 + \\epsilon)^{1/2}` over the
              whole training set (simplified BatchNorm, statistics differentiable
              in :math:`W`)
layernorm     :math:`f(x) = a^\\top h(x) / (\\lVert h(x) \\rVert^2 + \\epsilon)^{1/2}`
              (simplified LayerNorm)
============  =================================================================

The normalizations act on the post-activation hidden units (our reading of
"each hidden unit divided by its RMS over the training set"); :math:`\\epsilon`
(default 1e-12) only keeps a dead unit finite.

**Trace at interpolation.** With residuals :math:`r_i = f(x_i) - y_i`,

.. math::

    \\nabla^2 L = \\frac2n \\sum_i \\nabla f_i \\nabla f_i^\\top
    + \\frac2n \\sum_i r_i \\nabla^2 f_i ,

so at an interpolating solution :math:`H = G = \\frac2n J^\\top J` (the
Gauss-Newton matrix, :math:`J` the :math:`n \\times P` Jacobian of the outputs)
and :math:`\\operatorname{Tr} H = \\frac2n \\sum_i \\lVert\\nabla_\\theta f(x_i)\\rVert^2`.
For the no-bias and bias nets :math:`\\operatorname{diag}\\nabla^2 f_i = 0`
almost everywhere (ReLU is piecewise linear and :math:`f` is bilinear in
:math:`(a, W)`), so that trace identity holds at every point. The nonzero
eigenvalues of :math:`G` restricted to a block :math:`B` are those of the
:math:`n \\times n` kernel :math:`\\frac2n J_B J_B^\\top`, which gives the exact
Gauss-Newton spectrum of a width-500 net from a 100 x 100 ``eigvalsh``
(:func:`gauss_newton_spectrum`); :func:`exact_hessian_spectrum` is the dense
full Hessian for small nets.

**The lower bound and the two flattest interpolators of the bias net.** For an
interpolating bias net and any input with :math:`|y| = 1`, with
:math:`z_j = w_j^\\top x + b_j` and :math:`\\lVert x \\rVert^2 = d`,

.. math::

    \\lVert \\nabla_\\theta f(x) \\rVert^2
    = \\sum_{j: z_j > 0} \\big(z_j^2 + (d+1) a_j^2\\big)
    \\ge 2\\sqrt{d+1} \\sum_j |a_j| \\mathrm{relu}(z_j) \\ge 2\\sqrt{d+1}\\,|f(x)|,

so :math:`\\operatorname{Tr} H \\ge 4\\sqrt{d+1}`, with equality iff every active
unit has :math:`z_j = \\sqrt{d+1}|a_j|` and all active units push the same sign.
Both constructions attain it (:math:`r = (d+1)^{1/4}`):

- :func:`generalizing_interpolator`: four units
  :math:`w = r(s_1, s_2, 0, \\dots, 0)`, :math:`b = -r`, :math:`a = s_1 s_2 / r`,
  :math:`(s_1, s_2) \\in \\{\\pm1\\}^2`; on every input exactly the unit with
  :math:`(s_1, s_2) = (x_1, x_2)` is active (:math:`z = r`, the others have
  :math:`z \\in \\{-r, -3r\\}`), so :math:`f(x) = x_1 x_2` on the whole cube
  (test error 0).
- :func:`memorizing_interpolator`: one unit per distinct training point,
  :math:`w_i = r x_i`, :math:`b_i = -r(d-1)`, :math:`a_i = y_i / r`; unit
  :math:`i` is active only at :math:`x_i` (:math:`x_i^\\top x \\le d-2`
  elsewhere), so :math:`f = 0` off the training set (test error 1 up to
  test points that hit the training set).

At the memorizing solution the gradients of different training points have
disjoint supports, so :math:`G` has :math:`n` equal nonzero eigenvalues
:math:`4\\sqrt{d+1}/n`: the flattest possible *spread* (:math:`H_\\alpha = \\log n`
for every α), while the generalizing one concentrates its spectrum on the four
quadrant directions.

**Trainers** (:func:`train_run`): ``gd`` (full-batch gradient descent with
weight decay), ``sam1`` (1-SAM: SAM with batch size 1, examples in a seeded
random order, :math:`\\theta \\leftarrow \\theta - \\eta(\\nabla L_i(\\theta + \\rho
g_i/\\lVert g_i \\rVert) + \\lambda\\theta)`, :math:`g_i = \\nabla L_i(\\theta)`)
and ``sam1_vec`` (the vectorized per-example variant: one step
:math:`\\theta \\leftarrow \\theta - \\eta(\\frac1n\\sum_i \\nabla L_i(\\theta + \\rho
g_i/\\lVert g_i \\rVert) + \\lambda\\theta)`, all perturbations at the same
:math:`\\theta`). One ``sam1_vec`` step at rate :math:`\\eta` is, to first order
in :math:`\\eta`, one ``sam1`` epoch at rate :math:`\\eta / n`
(:func:`compare_sam_variants` measures how closely it tracks).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from tqdm.auto import tqdm

from renyilib.hessian import hessian_operator
from renyilib.renyi import renyi_entropy

__all__ = [
    "ARCHITECTURES",
    "METHODS",
    "PROFILE_ALPHAS",
    "TRACKED_ALPHAS",
    "ParityData",
    "TwoLayerNet",
    "parity_data",
    "build_net",
    "trace_lower_bound",
    "generalizing_interpolator",
    "memorizing_interpolator",
    "output_jacobian",
    "gauss_newton_spectrum",
    "exact_hessian_spectrum",
    "clean_spectrum",
    "spectrum_summary",
    "hutchinson_trace",
    "test_error",
    "train_loss",
    "measure",
    "train_run",
    "compare_sam_variants",
    "construction_study",
    "scenario_study",
    "scenario_table",
    "measure_comparison",
    "CONSTRUCTION_COLUMNS",
    "construction_numbers",
    "committed_difference",
    "sam_variant_numbers",
    "FINAL_HESSIAN_COLUMNS",
    "comparison_numbers",
    "scenario_numbers",
    "scenario_lines",
    "scenario_summary",
    "load_results",
    "write_table",
    "read_table",
]

ARCHITECTURES: tuple[str, ...] = ("no_bias", "bias", "batchnorm", "layernorm")
METHODS: tuple[str, ...] = ("gd", "sam1", "sam1_vec")
#: The α grid of the constructions' full Rényi profile (0.1, 0.2, ..., 3.0).
PROFILE_ALPHAS: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(1, 31))
#: The orders tracked along training.
TRACKED_ALPHAS: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0)
#: Eigenvalues with |λ| at most this times max |λ| are float64 round-off of exact
#: zeros (the Hessian of P parameters has rank at most n); they are set to 0.
ZERO_RTOL = 1e-10


def _check_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return int(value)


def _check_float(name: str, value: Any, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < minimum:
        raise ValueError(f"{name}: expected a finite number >= {minimum}, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class ParityData:
    """Training and test sets of the task :math:`y = x_1 x_2` on :math:`\\{-1,1\\}^d`.

    Attributes:
        x_train: ``(n, d)`` inputs in {-1, 1}.
        y_train: ``(n,)`` labels :math:`x_1 x_2`.
        x_test: ``(n_test, d)`` fresh inputs drawn independently.
        y_test: ``(n_test,)`` labels.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def d(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n(self) -> int:
        return int(self.x_train.shape[0])


def parity_data(
    d: int = 30, n: int = 100, n_test: int = 5000, seed: int = 0, dtype: torch.dtype = torch.float64
) -> ParityData:
    """Draw the data of Appendix B: :math:`x \\sim \\mathrm{Unif}\\{-1,1\\}^d`, :math:`y = x_1 x_2`.

    Args:
        d: Input dimension (at least 2).
        n: Number of training points.
        n_test: Number of fresh test points.
        seed: Seed of the draw (training points first, then test points).
        dtype: Floating dtype of the tensors.

    Returns:
        A :class:`ParityData`.
    """
    d = _check_int("d", d, 2)
    n = _check_int("n", n)
    n_test = _check_int("n_test", n_test)
    gen = torch.Generator().manual_seed(_check_int("seed", seed, 0))
    x = torch.randint(0, 2, (n + n_test, d), generator=gen).to(dtype) * 2 - 1
    y = x[:, 0] * x[:, 1]
    return ParityData(x[:n], y[:n], x[n:], y[n:])


# ----------------------------------------------------------------------- networks


class TwoLayerNet(nn.Module):
    """Width-``width`` two-layer ReLU network of one of :data:`ARCHITECTURES`.

    Parameters: ``first.weight`` (:math:`W`, ``(width, d)``), ``first.bias``
    (:math:`b`, bias net only), ``gamma`` (:math:`\\gamma`, batchnorm only) and
    ``second.weight`` (:math:`a^\\top`, ``(1, width)``). The batchnorm net keeps
    the training inputs as the buffer ``norm_inputs`` (its statistics).
    ``forward(x)`` maps ``(B, d)`` to ``(B,)``; formulas in the module docstring.

    Args:
        d: Input dimension.
        width: Number of hidden units.
        architecture: One of :data:`ARCHITECTURES`.
        norm_inputs: ``(n, d)`` training inputs (required for ``"batchnorm"``).
        eps: :math:`\\epsilon` of the normalizations.
        dtype: Parameter dtype.
    """

    def __init__(
        self,
        d: int,
        width: int,
        architecture: str = "bias",
        norm_inputs: torch.Tensor | None = None,
        eps: float = 1e-12,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture: expected one of {ARCHITECTURES}, got {architecture!r}")
        d = _check_int("d", d)
        width = _check_int("width", width)
        self.architecture = architecture
        self.eps = _check_float("eps", eps)
        self.first = nn.Linear(d, width, bias=architecture == "bias", dtype=dtype)
        self.second = nn.Linear(width, 1, bias=False, dtype=dtype)
        if architecture == "batchnorm":
            if norm_inputs is None:
                raise ValueError("norm_inputs: the batchnorm net needs the (n, d) training inputs")
            if norm_inputs.ndim != 2 or norm_inputs.shape[1] != d:
                raise ValueError(
                    f"norm_inputs: expected shape (n, {d}), got {tuple(norm_inputs.shape)}"
                )
            self.gamma = nn.Parameter(torch.ones(width, dtype=dtype))
            self.register_buffer("norm_inputs", norm_inputs.to(dtype).clone())

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The (normalized) hidden layer, ``(B, width)``."""
        h = torch.relu(self.first(x))
        if self.architecture == "batchnorm":
            stats = torch.relu(self.first(self.norm_inputs))
            s = torch.sqrt(stats.pow(2).mean(0) + self.eps)
            h = self.gamma * h / s
        elif self.architecture == "layernorm":
            h = h / torch.sqrt(h.pow(2).sum(-1, keepdim=True) + self.eps)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.hidden(x)).squeeze(-1)


def build_net(
    architecture: str,
    d: int,
    width: int,
    train_inputs: torch.Tensor | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> TwoLayerNet:
    """A :class:`TwoLayerNet` with PyTorch's default ``nn.Linear`` initialization, seeded.

    Args:
        architecture: One of :data:`ARCHITECTURES`.
        d: Input dimension.
        width: Hidden units.
        train_inputs: Training inputs (the batchnorm statistics).
        seed: Initialization seed.
        dtype: Parameter dtype.
    """
    _check_int("seed", seed, 0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TwoLayerNet(d, width, architecture, norm_inputs=train_inputs, dtype=dtype)


def trace_lower_bound(d: int) -> float:
    """The lower bound :math:`4\\sqrt{d+1}` on :math:`\\operatorname{Tr} H` of an interpolating bias net."""
    return 4.0 * math.sqrt(_check_int("d", d) + 1)


def generalizing_interpolator(
    d: int, width: int = 4, dtype: torch.dtype = torch.float64
) -> TwoLayerNet:
    """The generalizing flattest bias net: four quadrant units (module docstring).

    Units :math:`w = r(s_1, s_2, 0, \\dots)`, :math:`b = -r`, :math:`a = s_1 s_2 / r`
    with :math:`r = (d+1)^{1/4}`; it computes :math:`x_1 x_2` on the whole cube
    and attains :math:`\\operatorname{Tr} H = 4\\sqrt{d+1}` on any training set.

    Args:
        d: Input dimension (at least 2).
        width: Total units (at least 4); units beyond the four are zero.
        dtype: Parameter dtype.
    """
    d = _check_int("d", d, 2)
    width = _check_int("width", width, 4)
    net = TwoLayerNet(d, width, "bias", dtype=dtype)
    r = (d + 1) ** 0.25
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        for j, (s1, s2) in enumerate([(1, 1), (1, -1), (-1, 1), (-1, -1)]):
            net.first.weight[j, 0] = r * s1
            net.first.weight[j, 1] = r * s2
            net.first.bias[j] = -r
            net.second.weight[0, j] = s1 * s2 / r
    return net


def memorizing_interpolator(
    x_train: torch.Tensor, y_train: torch.Tensor, width: int | None = None
) -> TwoLayerNet:
    """The memorizing flattest bias net: one unit per distinct training point.

    Unit :math:`i`: :math:`w_i = r x_i`, :math:`b_i = -r(d-1)`,
    :math:`a_i = y_i / r`, :math:`r = (d+1)^{1/4}`; it is active only at
    :math:`x_i`, so :math:`f(x_i) = y_i` and :math:`f = 0` elsewhere on the cube.

    Args:
        x_train: ``(n, d)`` inputs in {-1, 1} (duplicates share a unit).
        y_train: ``(n,)`` labels in {-1, 1}, equal on duplicated inputs.
        width: Total units (default: the number of distinct points); extra units are zero.

    Raises:
        ValueError: inputs not in {-1, 1}, labels not ±1 or inconsistent on duplicates,
            width too small.
    """
    if x_train.ndim != 2 or y_train.shape != (x_train.shape[0],):
        raise ValueError(
            f"x_train, y_train: expected shapes (n, d) and (n,), got {tuple(x_train.shape)}, {tuple(y_train.shape)}"
        )
    if not bool(((x_train == 1) | (x_train == -1)).all()):
        raise ValueError("x_train: expected entries in {-1, 1}")
    if not bool(((y_train == 1) | (y_train == -1)).all()):
        raise ValueError("y_train: expected labels in {-1, 1}")
    uniq, inverse = torch.unique(x_train, dim=0, return_inverse=True)
    labels = torch.zeros(len(uniq), dtype=y_train.dtype).index_put_((inverse,), y_train)
    if not torch.equal(labels[inverse], y_train):
        raise ValueError("y_train: duplicated inputs carry different labels")
    m, d = uniq.shape
    width = m if width is None else _check_int("width", width, m)
    net = TwoLayerNet(d, width, "bias", dtype=x_train.dtype)
    r = (d + 1) ** 0.25
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.first.weight[:m] = r * uniq
        net.first.bias[:m] = -r * (d - 1)
        net.second.weight[0, :m] = labels / r
    return net


# ------------------------------------------------------------------- measurements


def _block_names(model: nn.Module, block: str) -> list[str]:
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if block == "all":
        return names
    if block == "first":
        return [n for n in names if n.startswith("first.")]
    if block in names:
        return [block]
    raise KeyError(f"block: expected 'all', 'first' or a parameter name of {names}, got {block!r}")


def output_jacobian(model: nn.Module, x: torch.Tensor, block: str = "all") -> torch.Tensor:
    """Jacobian :math:`J_{iB} = \\partial f(x_i) / \\partial \\theta_B`, shape ``(n, P_B)``.

    Args:
        model: A :class:`TwoLayerNet` (any module mapping ``(B, d)`` to ``(B,)``).
        x: ``(n, d)`` inputs.
        block: ``"all"``, ``"first"`` (the first layer: ``first.weight`` and
            ``first.bias`` if present) or one parameter name.
    """
    names = _block_names(model, block)
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def f_one(sub: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        return functional_call(model, ({**params, **sub}, buffers), (xi.unsqueeze(0),))[0]

    sub = {n: params[n] for n in names}
    jac = vmap(grad(f_one), in_dims=(None, 0))(sub, x)
    return torch.cat([jac[n].reshape(x.shape[0], -1) for n in names], dim=1)


def gauss_newton_spectrum(model: nn.Module, x: torch.Tensor, block: str = "all") -> np.ndarray:
    """Exact nonzero-capable spectrum of the Gauss-Newton block :math:`G_B = \\frac2n J_B^\\top J_B`.

    Returns the ``min(n, P_B)`` eigenvalues of the kernel :math:`\\frac2n J_B J_B^\\top`
    (ascending, float64); the remaining eigenvalues of :math:`G_B` are exactly 0.
    :math:`G_B` is the loss Hessian block at an interpolating solution.
    """
    jac = output_jacobian(model, x, block).double()
    n = x.shape[0]
    gram = (2.0 / n) * (jac @ jac.T) if jac.shape[1] >= n else (2.0 / n) * (jac.T @ jac)
    return np.linalg.eigvalsh(gram.cpu().numpy())


def exact_hessian_spectrum(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, block: str = "all"
) -> np.ndarray:
    """Eigenvalues of the dense mean-MSE loss Hessian block (``hessian_operator(...).to_dense()``)."""
    op = hessian_operator(
        model.eval(), nn.MSELoss(), (x, y), params=_block_names(model, block), backend="graph"
    )
    return np.linalg.eigvalsh(op.to_dense().double().cpu().numpy())


def clean_spectrum(eigenvalues: np.ndarray, rtol: float = ZERO_RTOL) -> np.ndarray:
    """Set eigenvalues with :math:`|\\lambda| \\le` ``rtol`` :math:`\\max|\\lambda|` to 0.

    An exact zero contributes nothing to :math:`\\operatorname{Tr} H^\\alpha`; its
    float64 round-off (about 1e-16 times the largest eigenvalue) would, raised to
    a small α, swamp the entropy of a rank-n Hessian with P >> n parameters.
    """
    lam = np.asarray(eigenvalues, dtype=np.float64).copy()
    top = np.abs(lam).max() if lam.size else 0.0
    lam[np.abs(lam) <= rtol * top] = 0.0
    return lam


def spectrum_summary(
    eigenvalues: np.ndarray, alphas: Sequence[float] = TRACKED_ALPHAS, prefix: str = ""
) -> dict[str, float]:
    """Trace, :math:`\\lambda_{\\max}`, rank, negative mass and Rényi entropies of a spectrum.

    The Rényi entropy :math:`H_\\alpha` (Eq. 6, :func:`renyilib.renyi.renyi_entropy`,
    ``negative="abs"``) is taken of :func:`clean_spectrum` (numerical zeros
    dropped); Rényi sharpness is :math:`-H_\\alpha`. Keys: ``trace``,
    ``lambda_max``, ``rank``, ``negative_mass`` (share of :math:`\\sum|\\lambda|`
    on negative eigenvalues) and ``renyi_<α>`` (the entropy), each with
    ``prefix`` prepended.
    """
    lam = clean_spectrum(eigenvalues)
    ent = renyi_entropy(lam, list(alphas), negative="abs")
    absum = np.abs(lam).sum()
    out = {
        "trace": float(lam.sum()),
        "lambda_max": float(lam.max()),
        "rank": int((lam != 0).sum()),
        "negative_mass": float(np.abs(lam[lam < 0]).sum() / absum) if absum > 0 else 0.0,
    }
    out.update({f"renyi_{a:g}": float(e) for a, e in zip(alphas, np.atleast_1d(ent))})
    return {prefix + k: v for k, v in out.items()}


def hutchinson_trace(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_probes: int = 200, seed: int = 0
) -> tuple[float, float]:
    """Hutchinson estimate of :math:`\\operatorname{Tr} \\nabla^2 L`: mean of :math:`v^\\top H v`, Rademacher v.

    Returns:
        ``(estimate, standard error)``.
    """
    num_probes = _check_int("num_probes", num_probes, 2)
    op = hessian_operator(model.eval(), nn.MSELoss(), (x, y), backend="graph")
    gen = torch.Generator().manual_seed(_check_int("seed", seed, 0))
    v = (torch.randint(0, 2, (op.shape[0], num_probes), generator=gen) * 2 - 1).to(op.dtype)
    quad = (v * (op @ v)).sum(0).cpu().numpy()
    return float(quad.mean()), float(quad.std(ddof=1) / math.sqrt(num_probes))


@torch.no_grad()
def test_error(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """0-1 error :math:`\\Pr[y f(x) \\le 0]` (ties count as errors)."""
    return float((y * model(x) <= 0).double().mean())


@torch.no_grad()
def train_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean squared error :math:`\\frac1n\\sum_i (f(x_i) - y_i)^2`."""
    return float((model(x) - y).pow(2).mean())


def measure(
    model: nn.Module,
    data: ParityData,
    alphas: Sequence[float] = TRACKED_ALPHAS,
    exact: bool = False,
) -> dict[str, float]:
    """Losses, test error and the spectra of one model.

    Keys: ``train_loss``, ``test_error``, ``test_mse``, ``param_norm``; the
    exact Gauss-Newton spectra (:func:`gauss_newton_spectrum`) of the first
    layer and of all parameters summarized by :func:`spectrum_summary` with
    prefixes ``first_`` and ``all_`` (``all_trace`` is
    :math:`\\frac2n\\sum_i\\lVert\\nabla f_i\\rVert^2`); with ``exact=True`` also
    the dense full-Hessian spectra (prefixes ``hess_first_`` and ``hess_all_``).
    """
    model.eval()
    x, y = data.x_train, data.y_train
    out = {
        "train_loss": train_loss(model, x, y),
        "test_error": test_error(model, data.x_test, data.y_test),
        "test_mse": train_loss(model, data.x_test, data.y_test),
        "param_norm": float(torch.sqrt(sum(p.detach().pow(2).sum() for p in model.parameters()))),
    }
    for block in ("first", "all"):
        out.update(spectrum_summary(gauss_newton_spectrum(model, x, block), alphas, f"{block}_"))
    if exact:
        for block in ("first", "all"):
            eig = exact_hessian_spectrum(model, x, y, block)
            out.update(spectrum_summary(eig, alphas, f"hess_{block}_"))
    return out


# ----------------------------------------------------------------------- training


def _per_example_loss(model: nn.Module):
    buffers = dict(model.named_buffers())

    def loss(params: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, (params, buffers), (xi.unsqueeze(0),))[0]
        return (out - yi) ** 2

    return loss


def _normalized(g: dict[str, torch.Tensor], batched: bool) -> dict[str, torch.Tensor]:
    """g / ||g|| over all parameters (per example when ``batched``); 0 where g = 0."""
    if batched:
        sq = sum(v.reshape(v.shape[0], -1).pow(2).sum(1) for v in g.values())
        norm = torch.sqrt(sq)
        scale = torch.where(norm > 0, 1.0 / norm.clamp_min(1e-300), torch.zeros_like(norm))
        return {k: v * scale.view(-1, *([1] * (v.ndim - 1))) for k, v in g.items()}
    norm = torch.sqrt(sum(v.pow(2).sum() for v in g.values()))
    scale = 1.0 / norm if norm > 0 else torch.zeros_like(norm)
    return {k: v * scale for k, v in g.items()}


def _sam1_epoch(
    model: nn.Module,
    params: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    order: torch.Tensor,
    lr: float,
    rho: float,
    weight_decay: float,
) -> dict[str, torch.Tensor]:
    """One sequential 1-SAM epoch (plain autograd on leaf tensors, updated in place)."""
    names = list(params)
    leaves = [params[k].clone().requires_grad_(True) for k in names]
    buffers = dict(model.named_buffers())
    live = dict(zip(names, leaves))
    for i in order.tolist():
        xi, yi = x[i : i + 1], y[i]
        g = torch.autograd.grad(
            (functional_call(model, (live, buffers), (xi,))[0] - yi) ** 2, leaves
        )
        norm = torch.sqrt(sum(v.pow(2).sum() for v in g))
        scale = float(rho / norm) if norm > 0 else 0.0
        with torch.no_grad():
            for p, v in zip(leaves, g):
                p.add_(v, alpha=scale)
        g2 = torch.autograd.grad(
            (functional_call(model, (live, buffers), (xi,))[0] - yi) ** 2, leaves
        )
        with torch.no_grad():
            for p, v, v2 in zip(leaves, g, g2):
                p.sub_(v, alpha=scale)
                p.mul_(1.0 - lr * weight_decay).sub_(v2, alpha=lr)
    return {k: p.detach() for k, p in zip(names, leaves)}


def train_run(
    model: TwoLayerNet,
    data: ParityData,
    method: str,
    *,
    lr: float,
    epochs: int,
    weight_decay: float = 0.0,
    rho: float = 0.05,
    eval_every: int = 100,
    seed: int = 0,
    alphas: Sequence[float] = TRACKED_ALPHAS,
    progress: bool = False,
) -> pd.DataFrame:
    """Train ``model`` in place and track :func:`measure` along the way.

    Methods (module docstring): ``"gd"`` full-batch GD on the mean loss,
    :math:`\\theta \\leftarrow \\theta - \\eta(\\nabla L + \\lambda\\theta)`;
    ``"sam1"`` sequential 1-SAM (one epoch = n steps in a seeded random order);
    ``"sam1_vec"`` the vectorized per-example 1-SAM (one epoch = one step).

    Args:
        model: The network (trained in place).
        data: The :class:`ParityData`.
        method: One of :data:`METHODS`.
        lr: Step size :math:`\\eta`.
        epochs: Epochs (``gd``, ``sam1_vec``: steps; ``sam1``: passes over the data).
        weight_decay: :math:`\\lambda`.
        rho: SAM radius :math:`\\rho` (ignored by ``gd``).
        eval_every: Measure every this many epochs (and at epochs 0 and ``epochs``).
        seed: Seed of the example order of ``sam1``.
        alphas: Rényi orders tracked.
        progress: tqdm bar over epochs.

    Returns:
        One row per measurement: ``epoch``, ``wall_s`` and the keys of :func:`measure`.
        A diverged run (non-finite loss) stops with a last row flagged ``diverged``.
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    lr = _check_float("lr", lr)
    epochs = _check_int("epochs", epochs, 0)
    weight_decay = _check_float("weight_decay", weight_decay)
    rho = _check_float("rho", rho)
    eval_every = _check_int("eval_every", eval_every)
    gen = torch.Generator().manual_seed(_check_int("seed", seed, 0))
    x, y = data.x_train, data.y_train
    n = x.shape[0]
    loss_i = _per_example_loss(model)
    grad_i = grad(loss_i)
    batch_grad = vmap(grad_i, in_dims=(None, 0, 0))
    pert_grad = vmap(grad_i, in_dims=(0, 0, 0))
    params = {k: p.detach().clone() for k, p in model.named_parameters()}

    buffers = dict(model.named_buffers())

    def mean_loss(p: dict[str, torch.Tensor]) -> torch.Tensor:
        return (functional_call(model, (p, buffers), (x,)) - y).pow(2).mean()

    full_grad = grad(mean_loss)

    def load(p: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for k, v in model.named_parameters():
                v.copy_(p[k])

    rows = []
    start = time.perf_counter()

    def record(epoch: int, diverged: bool = False) -> None:
        load(params)
        row = {"epoch": epoch, "wall_s": time.perf_counter() - start, "diverged": diverged}
        if not diverged:
            row.update(measure(model, data, alphas))
        rows.append(row)

    record(0)
    for epoch in tqdm(
        range(1, epochs + 1), disable=not progress, desc=f"{model.architecture}/{method}"
    ):
        if method == "gd":
            g = full_grad(params)
            params = {k: v - lr * (g[k] + weight_decay * v) for k, v in params.items()}
        elif method == "sam1_vec":
            g = batch_grad(params, x, y)
            e = _normalized(g, batched=True)
            pert = {k: params[k].unsqueeze(0) + rho * e[k] for k in params}
            g2 = {k: v.mean(0) for k, v in pert_grad(pert, x, y).items()}
            params = {k: v - lr * (g2[k] + weight_decay * v) for k, v in params.items()}
        else:
            params = _sam1_epoch(
                model, params, x, y, torch.randperm(n, generator=gen), lr, rho, weight_decay
            )
        if not all(bool(torch.isfinite(v).all()) for v in params.values()):
            record(epoch, diverged=True)
            break
        if epoch % eval_every == 0 or epoch == epochs:
            record(epoch)
    load(params)
    return pd.DataFrame(rows)


def compare_sam_variants(
    data: ParityData,
    architecture: str = "bias",
    width: int = 50,
    lr: float = 0.002,
    rho: float = 0.05,
    epochs: int = 100,
    eval_every: int = 10,
    seed: int = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """Sequential 1-SAM at rate ``lr`` vs the vectorized variant at rate ``n * lr``, same init.

    One vectorized step at :math:`n\\eta` matches one sequential epoch at
    :math:`\\eta` to first order in :math:`\\eta`. Returns both tracked curves
    (column ``method``) plus ``param_distance``: at each measured epoch the
    distance :math:`\\lVert\\theta_{seq} - \\theta_{vec}\\rVert` relative to
    :math:`\\lVert\\theta_{seq} - \\theta_0\\rVert` (only in the ``sam1`` rows).
    """
    n = data.n
    init = build_net(architecture, data.d, width, data.x_train, seed=seed)
    theta0 = torch.cat([p.detach().reshape(-1) for p in init.parameters()])
    curves, thetas = {}, {}
    for method, rate in (("sam1", lr), ("sam1_vec", lr * n)):
        snaps = []
        model = build_net(architecture, data.d, width, data.x_train, seed=seed)
        for stop in range(eval_every, epochs + 1, eval_every):
            part = train_run(
                model,
                data,
                method,
                lr=rate,
                epochs=eval_every,
                rho=rho,
                eval_every=eval_every,
                seed=seed + stop,
                progress=False,
            )
            snaps.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
            part = part.iloc[1:].assign(epoch=stop, lr=rate)
            curves.setdefault(method, []).append(part)
        thetas[method] = snaps
        if progress:
            print(f"{method}: done")
    seq = pd.concat(curves["sam1"], ignore_index=True).assign(method="sam1")
    vec = pd.concat(curves["sam1_vec"], ignore_index=True).assign(method="sam1_vec")
    seq["param_distance"] = [
        float((a - b).norm() / (a - theta0).norm())
        for a, b in zip(thetas["sam1"], thetas["sam1_vec"])
    ]
    return pd.concat([seq, vec], ignore_index=True).assign(architecture=architecture, width=width)


# ------------------------------------------------------------------------ studies


def construction_study(
    d: int = 30,
    n: int = 100,
    n_test: int = 5000,
    seed: int = 0,
    alphas: Sequence[float] = PROFILE_ALPHAS,
    hutchinson_probes: int = 200,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Measure the two flattest interpolators of the bias net exactly.

    Returns:
        ``(table, spectra)``: one row per construction (``construction``, ``d``,
        ``n``, ``width``, ``params``, ``trace`` (dense Hessian), ``trace_gn``
        (:math:`\\frac2n\\sum\\lVert\\nabla f_i\\rVert^2`), ``trace_hutchinson`` and
        its ``_se``, ``trace_bound`` :math:`4\\sqrt{d+1}`, ``train_loss``,
        ``test_error``, ``test_mse``, ``lambda_max``, ``rank``, ``renyi_<α>``
        (:math:`H_\\alpha` of the full Hessian, every α of ``alphas``) and
        ``first_renyi_<α>`` (first layer)); and the spectra (``construction``,
        ``block``, ``eigenvalue``: the nonzero eigenvalues of the dense Hessian).
    """
    data = parity_data(d, n, n_test, seed)
    nets = {
        "generalizing": generalizing_interpolator(d),
        "memorizing": memorizing_interpolator(data.x_train, data.y_train),
    }
    rows, spectra = [], []
    for name, net in nets.items():
        net.eval()
        x, y = data.x_train, data.y_train
        row: dict[str, Any] = {
            "construction": name,
            "d": d,
            "n": n,
            "width": net.first.out_features,
            "params": sum(p.numel() for p in net.parameters()),
            "trace_bound": trace_lower_bound(d),
            "train_loss": train_loss(net, x, y),
            "test_error": test_error(net, data.x_test, data.y_test),
            "test_mse": train_loss(net, data.x_test, data.y_test),
        }
        jac = output_jacobian(net, x)
        row["trace_gn"] = float(2.0 / n * jac.pow(2).sum())
        row["trace_hutchinson"], row["trace_hutchinson_se"] = hutchinson_trace(
            net, x, y, hutchinson_probes, seed
        )
        for block, prefix in (("all", ""), ("first", "first_")):
            eig = clean_spectrum(exact_hessian_spectrum(net, x, y, block))
            summary = spectrum_summary(eig, alphas, prefix)
            row.update(summary)
            spectra.append(
                pd.DataFrame({"construction": name, "block": block, "eigenvalue": eig[eig != 0]})
            )
        rows.append(row)
    return pd.DataFrame(rows), pd.concat(spectra, ignore_index=True)


def scenario_study(
    config: dict[str, Any],
    progress: bool = False,
    done: dict[tuple[str, str], pd.DataFrame] | None = None,
    on_run_done: Any = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train every architecture with every method of ``config`` and track the spectra.

    ``config`` keys: ``d``, ``n``, ``n_test``, ``data_seed``, ``init_seed``,
    ``width``, ``architectures``, ``methods`` (a mapping method -> settings with
    ``lr``, ``epochs``, ``eval_every`` and optional ``weight_decay``, ``rho``
    and per-architecture ``lr_overrides`` / ``rho_overrides``), and ``exact_final`` (dense
    full-Hessian spectra at the end when the net has at most this many
    parameters; 0 disables).

    Args:
        config: The settings (e.g. a ``_config.yml`` profile).
        progress: tqdm bars.
        done: Already finished runs ``{(architecture, method): curves}`` (resume).
        on_run_done: Called as ``on_run_done(architecture, method, curves)`` after each new run.

    Returns:
        ``(curves, final)``: all tracked rows (columns ``architecture``,
        ``method``, ``epoch``, ...), and one row per run with the last
        measurement plus, where computed, the full-Hessian spectra
        (``hess_*``).
    """
    data = parity_data(config["d"], config["n"], config["n_test"], config["data_seed"])
    done = dict(done or {})
    curves = []
    for arch in config["architectures"]:
        for method, settings in config["methods"].items():
            if (arch, method) in done:
                curves.append(done[(arch, method)])
                continue
            model = build_net(arch, data.d, config["width"], data.x_train, seed=config["init_seed"])
            rho = settings.get("rho_overrides", {}).get(arch, settings.get("rho", 0.05))
            lr = settings.get("lr_overrides", {}).get(arch, settings["lr"])
            run = train_run(
                model,
                data,
                method,
                lr=lr,
                epochs=settings["epochs"],
                weight_decay=settings.get("weight_decay", 0.0),
                rho=rho,
                eval_every=settings["eval_every"],
                seed=config["init_seed"],
                progress=progress,
            )
            run = run.assign(
                architecture=arch,
                method=method,
                lr=lr,
                rho=rho if method != "gd" else np.nan,
                width=config["width"],
            )
            params = sum(p.numel() for p in model.parameters())
            if config.get("exact_final", 0) >= params and not bool(run["diverged"].iloc[-1]):
                extra = measure(model, data, exact=True)
                for k, v in extra.items():
                    if k.startswith("hess_"):
                        run.loc[run.index[-1], k] = v
            curves.append(run)
            if on_run_done is not None:
                on_run_done(arch, method, run)
    all_curves = pd.concat(curves, ignore_index=True)
    final = (
        all_curves.groupby(["architecture", "method"], sort=False).tail(1).reset_index(drop=True)
    )
    return all_curves, final


#: The paper's claims per architecture (our reading of the abstract and Sec. 3-5):
#: (scenario, flattest interpolators generalize?, SAM generalizes?).
PAPER_CLAIMS: dict[str, tuple[str, bool | None, bool | None]] = {
    "no_bias": ("I", True, True),
    "batchnorm": ("II", False, False),
    "bias": ("III", False, True),
    "layernorm": ("-", None, None),
}


def scenario_table(
    final: pd.DataFrame, good: float = 0.1, bad: float = 0.3, max_train_loss: float = 0.01
) -> pd.DataFrame:
    """Paper's claim vs our result for the SAM-generalizes statement of every architecture.

    A final test error below ``good`` reads as "generalizes", above ``bad`` as
    "does not"; in between, or when the SAM run has not fitted the training set
    (final train loss above ``max_train_loss``: "not fitted"), the verdict is
    "unclear". Also lists the final
    trace and Shannon entropy :math:`H_1` (Gauss-Newton, all parameters) of SAM
    and GD, and ``renyi_orders_like_error``: whether the run with the larger
    :math:`H_1` (the lower Rényi sharpness) has the lower test error.
    """
    rows = []
    sam = final[final["method"].isin(["sam1", "sam1_vec"])]
    for _, r in sam.iterrows():
        scen, _, claim = PAPER_CLAIMS.get(r["architecture"], ("-", None, None))
        gd = final[(final["architecture"] == r["architecture"]) & (final["method"] == "gd")]
        err = float(r["test_error"])
        ours = "generalizes" if err < good else ("does not" if err > bad else "in between")
        if float(r["train_loss"]) > max_train_loss:
            ours = "not fitted"
        if claim is None:
            verdict = "no claim"
        elif ours in ("in between", "not fitted"):
            verdict = "unclear"
        else:
            verdict = "agrees" if (ours == "generalizes") == claim else "disagrees"
        rows.append(
            {
                "architecture": r["architecture"],
                "scenario": scen,
                "paper: SAM generalizes": {True: "yes", False: "no", None: "-"}[claim],
                "SAM train loss": float(r["train_loss"]),
                "SAM test error": err,
                "GD test error": float(gd["test_error"].iloc[0]) if len(gd) else np.nan,
                "SAM trace": float(r["all_trace"]),
                "GD trace": float(gd["all_trace"].iloc[0]) if len(gd) else np.nan,
                "SAM H_1": float(r["all_renyi_1"]),
                "GD H_1": float(gd["all_renyi_1"].iloc[0]) if len(gd) else np.nan,
                "ours": ours,
                "verdict": verdict,
            }
        )
        row = rows[-1]
        row["renyi_orders_like_error"] = (
            bool((row["SAM H_1"] > row["GD H_1"]) == (row["SAM test error"] < row["GD test error"]))
            if len(gd)
            else None
        )
    return pd.DataFrame(rows)


def measure_comparison(
    table: pd.DataFrame, alphas: Sequence[float] = (0.5, 1.0, 1.5, 2.0)
) -> pd.DataFrame:
    """Which flattest interpolator each sharpness measure calls flatter.

    For the trace, :math:`\\lambda_{\\max}` and Rényi sharpness :math:`-H_\\alpha`
    (all parameters and the first layer) of ``table`` (:func:`construction_study`):
    the two values, the relative gap, and which construction is flatter (smaller
    value; "tie" within 1e-9 relative). A measure *separates the generalizing
    from the memorizing model in favour of generalization* when it calls the
    generalizing one flatter.
    """
    t = table.set_index("construction")
    rows = []
    measures = [("trace", "trace", 1.0), ("lambda_max", "lambda_max", 1.0)]
    for prefix, label in (("", "all"), ("first_", "first layer")):
        measures += [(f"-H_{a:g} ({label})", f"{prefix}renyi_{a:g}", -1.0) for a in alphas]
    for name, col, sign in measures:
        g, m = sign * float(t.loc["generalizing", col]), sign * float(t.loc["memorizing", col])
        gap = (g - m) / max(abs(g), abs(m), 1e-300)
        flatter = "tie" if abs(gap) < 1e-9 else ("generalizing" if g < m else "memorizing")
        rows.append(
            {
                "measure": name,
                "generalizing": g,
                "memorizing": m,
                "relative_gap": gap,
                "flatter": flatter,
            }
        )
    return pd.DataFrame(rows)


#: The columns of the constructions table the chapter shows.
CONSTRUCTION_COLUMNS: tuple[str, ...] = (
    "construction",
    "d",
    "n",
    "params",
    "trace",
    "trace_gn",
    "trace_hutchinson",
    "trace_hutchinson_se",
    "trace_bound",
    "train_loss",
    "test_error",
    "lambda_max",
    "rank",
    "renyi_0.5",
    "renyi_1",
    "renyi_1.5",
    "renyi_2",
)


def construction_numbers(table: pd.DataFrame) -> dict[str, float | int]:
    """The numbers the chapter quotes from :func:`construction_study`'s table.

    Per construction (``gen`` / ``mem``): trace, test error, λ_max, rank and
    H_α (all parameters, ``H<α>``; first layer, ``fH<α>``) at α ∈ {0.5, 1, 2};
    then ``cons_d``, ``cons_n``, the bound 4√(d+1) (``bound``), the largest
    relative deviation of either trace from it (``bound_relerr``) and log n.
    """
    t = table.set_index("construction")
    out: dict[str, float | int] = {}
    for name, key in (("gen", "generalizing"), ("mem", "memorizing")):
        row = t.loc[key]
        out[f"{name}_trace"] = float(row["trace"])
        out[f"{name}_err"] = float(row["test_error"])
        out[f"{name}_lmax"] = float(row["lambda_max"])
        out[f"{name}_rank"] = int(row["rank"])
        for a in ("0.5", "1", "2"):
            out[f"{name}_H{a}"] = float(row[f"renyi_{a}"])
            out[f"{name}_fH{a}"] = float(row[f"first_renyi_{a}"])
    n = int(t["n"].iloc[0])
    out.update(
        cons_d=int(t["d"].iloc[0]),
        cons_n=n,
        bound=float(t.loc["generalizing", "trace_bound"]),
        bound_relerr=float((t["trace"] / t["trace_bound"] - 1).abs().max()),
        log_n=float(np.log(n)),
    )
    return out


def committed_difference(table: pd.DataFrame, committed: pd.DataFrame | None) -> float | None:
    """Largest absolute difference of the measured columns to a committed constructions table.

    ``None`` if there is no committed table or it was made at another ``(d, n)``.
    Compares the trace, Rényi, λ_max and test-error columns present in both.
    """
    if committed is None:
        return None
    if (committed["d"].iloc[0], committed["n"].iloc[0]) != (table["d"].iloc[0], table["n"].iloc[0]):
        return None
    ref = committed.set_index("construction")
    cols = [
        k
        for k in table.columns
        if k.startswith(("trace", "renyi_", "first_renyi_", "lambda_max", "test_error"))
        and k in ref
    ]
    mine = table.set_index("construction")[cols].to_numpy(float)
    return float(np.nanmax(np.abs(mine - ref.loc[table["construction"], cols].to_numpy(float))))


def sam_variant_numbers(comparison: pd.DataFrame) -> dict[str, float]:
    """The end of a :func:`compare_sam_variants` run: the parameter distance, both traces, the lr.

    Returns:
        ``dist`` (‖θ_seq − θ_vec‖ / ‖θ_seq − θ_0‖ at the last evaluation),
        ``trace_seq`` / ``trace_vec`` (Tr G of sequential / vectorized 1-SAM at
        their last evaluation) and ``lr`` (of sequential 1-SAM).
    """
    seq = comparison[comparison["method"] == "sam1"]
    last = comparison.groupby("method").tail(1).set_index("method")
    return {
        "dist": float(seq["param_distance"].iloc[-1]),
        "trace_seq": float(last.loc["sam1", "all_trace"]),
        "trace_vec": float(last.loc["sam1_vec", "all_trace"]),
        "lr": float(seq["lr"].iloc[0]),
    }


#: The end-of-training columns comparing the Gauss–Newton matrix with the dense Hessian.
FINAL_HESSIAN_COLUMNS: tuple[str, ...] = (
    "architecture",
    "method",
    "train_loss",
    "all_trace",
    "hess_all_trace",
    "all_renyi_1",
    "hess_all_renyi_1",
    "hess_all_negative_mass",
    "first_renyi_1",
    "hess_first_renyi_1",
)


def comparison_numbers(comparison: pd.DataFrame) -> dict[str, Any]:
    """Counts of :func:`measure_comparison`: measures, how many separate, how many favour generalization."""
    flatter = comparison["flatter"]
    return {
        "n_measures": int(len(comparison)),
        "n_separate": int((flatter != "tie").sum()),
        "n_favour_gen": int((flatter == "generalizing").sum()),
        "favour_mem": ", ".join(comparison.loc[flatter == "memorizing", "measure"]) or "none",
    }


def scenario_numbers(table: pd.DataFrame) -> dict[str, int]:
    """Counts of a :func:`scenario_table`: verdicts that agree, claims, Rényi orderings, architectures."""
    return {
        "n_agree": int((table["verdict"] == "agrees").sum()),
        "n_claims": int((table["verdict"] != "no claim").sum()),
        "n_renyi_right": int(table["renyi_orders_like_error"].sum()),
        "n_arch": int(len(table)),
        "n_flat": int((table["SAM trace"] < table["GD trace"]).sum()),
        "n_better": int((table["SAM test error"] < table["GD test error"]).sum()),
    }


def scenario_lines(table: pd.DataFrame, source: str) -> str:
    """One Markdown bullet per architecture of a :func:`scenario_table`: the paper's claim, ours, the verdict."""
    lines = []
    for _, r in table.iterrows():
        lines.append(
            f"* **{r['architecture']}** (scenario {r['scenario']}): paper — SAM generalizes: "
            f"{r['paper: SAM generalizes']}; ours ({source}) — 1-SAM test error "
            f"{r['SAM test error']:.3f} vs GD {r['GD test error']:.3f}, Tr G {r['SAM trace']:.1f} "
            f"vs {r['GD trace']:.1f}, H_1 {r['SAM H_1']:.3f} vs {r['GD H_1']:.3f}: **{r['verdict']}**."
        )
    return "\n".join(lines)


def scenario_summary(table: pd.DataFrame, source: str) -> str:
    """The chapter's closing statement on the trained models, from a :func:`scenario_table`."""
    n = scenario_numbers(table)
    return (
        f"Trained models ({source}): 1-SAM ends with the smaller $\\operatorname{{Tr}}G$ in "
        f"{n['n_flat']} of {n['n_arch']} architectures and with the lower test error in "
        f"{n['n_better']} of {n['n_arch']}; the paper's SAM statement is reproduced for "
        f"{n['n_agree']} of {n['n_claims']} architectures with a claim (the others are unclear "
        "at our training length). The method with the more uniform Gauss-Newton spectrum "
        f"(larger $H_1$) has the lower test error in {n['n_renyi_right']} of {n['n_arch']} "
        "architectures."
    )


def load_results(folder: str | Path, tag: str = "long") -> dict[str, pd.DataFrame]:
    """The committed tables of ``folder``: constructions, spectra, curves/final/compare of ``tag`` (if present)."""
    folder = Path(folder)
    files = {
        "constructions": "constructions.csv",
        "spectra": "constructions_spectra.csv",
        "curves": f"curves_{tag}.csv",
        "final": f"final_{tag}.csv",
        "compare": f"sam_variants_{tag}.csv",
    }
    return {k: read_table(folder / f) for k, f in files.items() if (folder / f).is_file()}


# --------------------------------------------------------------------------- files


def write_table(df: pd.DataFrame, path: str | Path, meta: dict[str, Any]) -> Path:
    """Write ``df`` as CSV atomically with ``<path>.meta.json`` (``meta`` + code version)."""
    from renyilib.experiments.io import atomic_write, code_version, write_json

    path = Path(path)
    atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))
    write_json(
        path.with_suffix(".meta.json"), {**meta, "code_version": code_version(), "rows": len(df)}
    )
    return path


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV written by :func:`write_table`."""
    return pd.read_csv(path)


def _run_settings(cfg: dict[str, Any], method: str) -> dict[str, Any]:
    """The settings one run of ``method`` depends on (a finished run is reused only if they match)."""
    keys = ("d", "n", "n_test", "data_seed", "init_seed", "width", "exact_final")
    return {**{k: cfg.get(k) for k in keys}, "method": cfg.get("methods", {}).get(method)}


def _main(argv: Sequence[str] | None = None) -> None:
    from renyilib.experiments.config import load_profile
    from renyilib.experiments.io import read_json

    parser = argparse.ArgumentParser(description="Wen, Li & Ma (2023) scenarios and constructions.")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--out", default="data/results/wen-li-ma")
    parser.add_argument(
        "--what", choices=["constructions", "scenarios", "compare", "all"], default="all"
    )
    parser.add_argument(
        "--tag", default=None, help="file-name tag of the scenario tables (default: profile)"
    )
    parser.add_argument(
        "--long", action="store_true", help="merge the profile's `long` settings (the long run)"
    )
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cfg = load_profile("wen_li_ma", args.profile)
    if args.long:
        cfg = {**cfg, **cfg["long"]}
    cfg.pop("long", None)
    out = Path(args.out)
    tag = args.tag or ("long" if args.long else args.profile)
    command = "python -m renyilib.experiments.wen_li_ma " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    if args.what in ("constructions", "all"):
        c = cfg["constructions"]
        table, spectra = construction_study(c["d"], c["n"], c["n_test"], c["seed"])
        meta = {"command": command, "config": c, "profile": args.profile}
        write_table(table, out / "constructions.csv", meta)
        write_table(spectra, out / "constructions_spectra.csv", meta)
    if args.what in ("compare", "all"):
        c = cfg["compare"]
        data = parity_data(cfg["d"], cfg["n"], cfg["n_test"], cfg["data_seed"])
        comp = compare_sam_variants(
            data,
            c["architecture"],
            c["width"],
            c["lr"],
            c["rho"],
            c["epochs"],
            c["eval_every"],
            cfg["init_seed"],
            args.progress,
        )
        write_table(
            comp, out / f"sam_variants_{tag}.csv", {"command": command, "config": {**cfg, **c}}
        )
    if args.what in ("scenarios", "all"):
        run_dir = out / f"runs_{tag}"
        done = {}
        for f in sorted(run_dir.glob("*.csv")) if run_dir.exists() else []:
            run = read_table(f)
            key = (run["architecture"].iloc[0], run["method"].iloc[0])
            saved = read_json(f.with_suffix(".meta.json"))["config"]
            if key[1] in cfg["methods"] and _run_settings(saved, key[1]) == _run_settings(
                cfg, key[1]
            ):
                done[key] = run

        def save(arch: str, method: str, run: pd.DataFrame) -> None:
            write_table(run, run_dir / f"{arch}_{method}.csv", {"command": command, "config": cfg})

        curves, final = scenario_study(cfg, args.progress, done, save)
        meta = {"command": command, "config": cfg}
        write_table(curves, out / f"curves_{tag}.csv", meta)
        write_table(final, out / f"final_{tag}.csv", meta)


if __name__ == "__main__":
    _main()
