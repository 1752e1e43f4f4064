r"""SAM, ASAM, Eigen-SAM and RSAM as ``torch.optim.Optimizer`` wrappers (Sec. 6, Algorithm 2).

Every optimizer here is a *two-pass* method. At the weights :math:`w` with the
mini-batch gradient :math:`g = \nabla L_B(w)` it computes a perturbation
:math:`\epsilon(w, g)`, evaluates the gradient at :math:`w + \epsilon`, restores
:math:`w` and lets a *base optimizer* (any ``torch.optim.Optimizer`` class, e.g.
``torch.optim.SGD``) step with :math:`\nabla L_B(w + \epsilon)`:

.. math::  w \leftarrow \mathrm{base}(w, \nabla L_B(w + \epsilon)).

They differ only in :math:`\epsilon`:

* :class:`SAM` (Foret et al., 2021): :math:`\epsilon = \rho\, g / \|g\|_2`.
* :class:`ASAM` (Kwon et al., 2021): :math:`\epsilon = \rho\, T^2 g / \|T g\|_2`
  with :math:`T = |w| + \eta` element-wise on weights and :math:`T = 1` on biases.
* :class:`EigenSAM` (Luo et al., 2024): the SAM direction tilted towards the top
  Hessian eigenvector :math:`v` (power iteration every ``freq`` steps):
  :math:`d = \hat g + a\,\mathrm{sign}(g^\top v)\,(v - (\hat g^\top v)\hat g)`,
  :math:`\hat g = g/\|g\|_2`, :math:`\epsilon = \rho\, d / \|d\|_2`.
* :class:`RSAM` (the paper, Eq. 11): with the sign-preserving power
  :math:`g^{2\alpha-1} := \mathrm{sign}(g)|g|^{2\alpha-1}`,

  .. math:: \epsilon = -\rho\,\mathrm{sign}(1-\alpha)\,
            \frac{\mathrm{sign}(g)|g|^{2\alpha-1}}{(\sum_j g_j^2)^{\alpha}}
            \qquad (\text{Eq. 11, } \texttt{radius="paper"}),

  so that :math:`L(w+\epsilon) \approx L(w) - \rho\,\mathrm{sign}(1-\alpha)\,
  \sum_j g_j^{2\alpha} / (\sum_j g_j^2)^\alpha` (Eq. 12): the gradient-magnitude
  surrogate of Rényi sharpness (Eqs. 9-10) is penalized on both sides of
  :math:`\alpha = 1`. For :math:`\alpha > 1` this is an ascent step along
  :math:`g` as in SAM; Algorithm 2 prints :math:`\epsilon` without the leading
  minus; Eqs. 11-12 and the stated regularizer fix the sign used here.
  :math:`\alpha = 1` is refused (``ValueError``): there
  :math:`\sum_j g_j^2/(\sum_j g_j^2) = 1` is constant, so the regularizer is void and
  :math:`\mathrm{sign}(1-\alpha) = 0` would silently leave the base optimizer. The size of this :math:`\epsilon` is
  not fixed: :math:`\|\epsilon\|_2 \approx \rho / \|g\|_2` near :math:`\alpha = 1`,
  so it *grows* as the gradient shrinks. The option ``radius="fixed"`` uses

  .. math:: \epsilon = -\rho\,\mathrm{sign}(1-\alpha)\,
            \frac{\mathrm{sign}(g)|g|^{2\alpha-1}}{\|g\|_{2\alpha}^{2\alpha-1}},

  the maximizer of :math:`g^\top \epsilon` over the ball
  :math:`\|\epsilon\|_p \le \rho` with :math:`p = 2\alpha/(2\alpha-1)`, the dual
  exponent of :math:`q = 2\alpha`. Its :math:`\ell_p` norm is exactly
  :math:`\rho` (not its :math:`\ell_{2\alpha}` norm); as :math:`\alpha \to 1^+` it
  tends to SAM's perturbation.

Usage, as in the common SAM implementation::

    opt = RSAM(model.parameters(), torch.optim.SGD, rho=0.65, alpha=1.2,
               model=model, sgd_epochs=5, lr=0.1, momentum=0.9, weight_decay=5e-4)

    def closure():                     # zero_grad + forward + backward, returns the loss
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        return loss

    loss = opt.step(closure)           # loss at the unperturbed weights
    ...
    opt.on_epoch_end(epoch, val_acc=acc)   # the SGD -> RSAM switch of Algorithm 2

or with the explicit two passes ``loss_fn(model(x), y).backward();
opt.first_step(zero_grad=True); loss_fn(model(x), y).backward();
opt.second_step(zero_grad=True)``.

**Weight decay.** Algorithm 2 updates :math:`w \leftarrow w - \beta(\nabla
L_B(w+\epsilon) + \lambda w)`: the decay acts on the *unperturbed* weights.
That is exactly what the base optimizer's own ``weight_decay`` does here,
because :meth:`second_step` restores :math:`w` before the base step (for SGD
the decay term enters the momentum buffer, as in PyTorch's SGD and the SAM
repositories). The perturbation never includes the decay term.

**BatchNorm.** When ``model`` is given, :meth:`step` runs every extra pass (the
perturbed pass, Eigen-SAM's power iteration) inside :func:`frozen_bn_stats`, so
BatchNorm running statistics are updated once per step, by the unperturbed
pass only. Without ``model`` they are updated by both passes, as in the
reference SAM code.

**Degenerate gradients.** If the gradient norm that normalizes
:math:`\epsilon` is zero or not finite, the step is *clean*: no perturbation,
the second pass is evaluated at :math:`w` itself and the base optimizer steps
with it (``num_clean_steps`` counts these).

**Switch (Algorithm 2).** ``sgd_epochs`` epochs of the plain base optimizer
(one pass, no perturbation) precede the perturbed method; with
``switch_accuracy`` the switch also happens as soon as the validation top-1
accuracy reported to :meth:`~_TwoPassOptimizer.on_epoch_end` exceeds it (the
TinyImageNet rule, Table 6). The training loop calls ``on_epoch_end`` after
every epoch; the state is part of ``state_dict``.

:func:`build_optimizer` builds any of ``"sgd"``, ``"adam"``, ``"sam"``,
``"asam"``, ``"eigensam"``, ``"rsam"`` from a config dict.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

__all__ = [
    "ASAM",
    "OPTIMIZERS",
    "RSAM",
    "SAM",
    "EigenSAM",
    "build_optimizer",
    "frozen_bn_stats",
    "renyi_gradient_regularizer",
]


@contextmanager
def frozen_bn_stats(model: nn.Module | None) -> Iterator[None]:
    """Run a block without changing any BatchNorm running statistics of ``model``.

    Snapshots ``running_mean``, ``running_var`` and ``num_batches_tracked`` of
    every ``_BatchNorm`` module (BatchNorm1d/2d/3d, SyncBatchNorm, lazy variants)
    and restores them bitwise on exit, whatever the module's ``momentum`` (also
    ``None``, the cumulative average). Forward passes inside still normalize
    with the batch statistics in train mode. ``model=None`` is a no-op.

    Args:
        model: The network, or ``None``.
    """
    if model is None:
        yield
        return
    saved: list[tuple[torch.Tensor, torch.Tensor]] = []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                buf = getattr(module, name, None)
                if isinstance(buf, torch.Tensor):
                    saved.append((buf, buf.detach().clone()))
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, copy in saved:
                buf.copy_(copy)


def renyi_gradient_regularizer(grad: torch.Tensor | Iterable[torch.Tensor], alpha: float) -> float:
    r"""The gradient-magnitude surrogate of Rényi sharpness penalized by RSAM (Eqs. 10-12).

    .. math:: R_\alpha(g) = \frac{\sum_j g_j^{2\alpha}}{(\sum_j g_j^2)^\alpha}
              = \sum_j p_j^\alpha,\quad p_j = g_j^2 / \|g\|_2^2,

    so that :math:`-H_\alpha(\mathrm{diag}(g^2)) = \log R_\alpha / (\alpha - 1)`:
    RSAM lowers :math:`R_\alpha` for :math:`\alpha > 1` and raises it for
    :math:`\alpha < 1` (Eq. 12), which in both cases lowers the surrogate sharpness.

    Args:
        grad: A gradient tensor or an iterable of them (concatenated).
        alpha: Rényi order, ``> 0``.

    Returns:
        :math:`R_\alpha(g)` as a float (``nan`` for a zero gradient).
    """
    _check_alpha(alpha)
    if isinstance(grad, torch.Tensor):
        grad = [grad]
    g = torch.cat([t.detach().reshape(-1).to(torch.float64) for t in grad])
    p = g.square() / g.square().sum()
    return float(torch.where(p > 0, p.pow(alpha), torch.zeros_like(p)).sum())


def _check_alpha(alpha: float) -> None:
    if not isinstance(alpha, int | float) or not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha (Rényi order) must be a finite number > 0, got {alpha!r}")


def _check_nonneg(name: str, value: Any) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _global_norm(tensors: list[torch.Tensor], p: float = 2.0) -> torch.Tensor:
    """The ``p``-norm of the concatenation of ``tensors`` (on the first tensor's device)."""
    device = tensors[0].device
    return torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(t, ord=p).to(device) for t in tensors]), ord=p
    )


class _TwoPassOptimizer(torch.optim.Optimizer):
    """Shared machinery of SAM-type optimizers (see the module docstring).

    Subclasses implement :meth:`_perturbation`, returning one tensor per
    parameter with a gradient (or ``None`` for a clean step).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        base_optimizer: type[torch.optim.Optimizer],
        *,
        rho: float,
        model: nn.Module | None = None,
        sgd_epochs: int | None = 0,
        switch_accuracy: float | None = None,
        **kwargs: Any,
    ) -> None:
        if not (
            isinstance(base_optimizer, type) and issubclass(base_optimizer, torch.optim.Optimizer)
        ):
            raise TypeError(
                "base_optimizer must be a torch.optim.Optimizer subclass (the class, e.g. "
                f"torch.optim.SGD, not an instance), got {base_optimizer!r}"
            )
        _check_nonneg("rho", rho)
        if model is not None and not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module or None, got {type(model).__name__}")
        if sgd_epochs is not None and (
            not isinstance(sgd_epochs, int) or isinstance(sgd_epochs, bool) or sgd_epochs < 0
        ):
            raise ValueError(f"sgd_epochs must be an int >= 0 or None, got {sgd_epochs!r}")
        if switch_accuracy is not None and (
            not isinstance(switch_accuracy, int | float) or not 0 <= switch_accuracy <= 1
        ):
            raise ValueError(
                "switch_accuracy must be a validation top-1 accuracy as a fraction in [0, 1] "
                f"or None, got {switch_accuracy!r}"
            )
        if sgd_epochs is None and switch_accuracy is None:
            raise ValueError(
                "sgd_epochs=None (no epoch limit on the SGD phase) needs switch_accuracy; "
                "use sgd_epochs=0 for no SGD phase"
            )
        super().__init__(params, {"rho": rho, **kwargs})
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)
        self.model = model
        self.sgd_epochs = sgd_epochs
        self.switch_accuracy = switch_accuracy
        self.epochs_done = 0
        self.switched_at_epoch: int | None = 0 if sgd_epochs == 0 else None
        self.num_steps = 0
        self.num_clean_steps = 0
        #: Euclidean norm of the last perturbation (0.0 for a clean or SGD-phase step).
        self.last_perturbation_norm = 0.0
        self._backup: dict[torch.Tensor, torch.Tensor] = {}
        self._names: dict[torch.Tensor, str] = (
            {p: n for n, p in model.named_parameters()} if model is not None else {}
        )

    # ------------------------------------------------------------------ switch
    @property
    def perturbation_active(self) -> bool:
        """Whether the perturbed method runs (False during the SGD phase of Algorithm 2)."""
        return self.switched_at_epoch is not None

    def on_epoch_end(self, epoch: int | None = None, val_acc: float | None = None) -> bool:
        """Tell the optimizer an epoch ended; switch from SGD to the perturbed method when due.

        Args:
            epoch: 0-based index of the epoch that just ended (the optimizer then
                counts ``epoch + 1`` epochs done, which stays right after a resume);
                ``None`` counts one more epoch.
            val_acc: Validation top-1 accuracy as a fraction in [0, 1]; needed
                while in the SGD phase when ``switch_accuracy`` is set (``nan``:
                not evaluated this epoch, no accuracy-based switch).

        Returns:
            True if the switch happened at this call.
        """
        if epoch is not None and (not isinstance(epoch, int) or epoch < 0):
            raise ValueError(f"epoch must be a 0-based int >= 0 or None, got {epoch!r}")
        self.epochs_done = epoch + 1 if epoch is not None else self.epochs_done + 1
        if self.perturbation_active:
            return False
        due = self.sgd_epochs is not None and self.epochs_done >= self.sgd_epochs
        if self.switch_accuracy is not None:
            if val_acc is None:
                raise ValueError(
                    "val_acc is required by on_epoch_end while switch_accuracy is set "
                    f"(switch_accuracy={self.switch_accuracy})"
                )
            if math.isnan(float(val_acc)):
                # not evaluated this epoch: no accuracy-based switch. With no epoch
                # budget either, a caller that never evaluates would stay SGD forever.
                if self.sgd_epochs is None and not getattr(self, "_warned_no_val", False):
                    warnings.warn(
                        f"RSAM.on_epoch_end got val_acc=nan at epoch {self.epochs_done} with "
                        f"switch_accuracy={self.switch_accuracy} and sgd_epochs=None: the "
                        "switch needs a validation accuracy; evaluate a validation split",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    self._warned_no_val = True
            elif not 0 <= float(val_acc) <= 1:
                raise ValueError(f"val_acc must be a fraction in [0, 1], got {val_acc!r}")
            due = due or float(val_acc) > self.switch_accuracy
        if due:
            self.switched_at_epoch = self.epochs_done
        return due

    # ------------------------------------------------------------- two passes
    def _params_with_grad(self) -> list[tuple[dict[str, Any], torch.Tensor]]:
        return [(g, p) for g in self.param_groups for p in g["params"] if p.grad is not None]

    def _perturbation(
        self, items: list[tuple[dict[str, Any], torch.Tensor]]
    ) -> list[torch.Tensor] | None:
        """Per-parameter perturbation from the current gradients; ``None`` means a clean step.

        Overridden by every method; the base class never perturbs.
        """
        return None

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Move the weights to :math:`w + \\epsilon` computed from the current gradients.

        During the SGD phase, or when the gradient is zero/non-finite, no
        perturbation is applied (a clean step).

        Args:
            zero_grad: Zero the gradients afterwards.
        """
        self._backup.clear()
        items = self._params_with_grad()
        eps = self._perturbation(items) if (items and self.perturbation_active) else None
        if eps is None:
            self.last_perturbation_norm = 0.0
            if items and self.perturbation_active:
                self.num_clean_steps += 1
        else:
            self.last_perturbation_norm = float(_global_norm(eps))
            for (_, p), e in zip(items, eps):
                self._backup[p] = p.detach().clone()
                p.add_(e)
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Restore :math:`w` (bitwise) and step the base optimizer with the current gradients.

        Args:
            zero_grad: Zero the gradients afterwards.
        """
        for p, w in self._backup.items():
            p.copy_(w)
        self._backup.clear()
        self.base_optimizer.step()
        self.num_steps += 1
        if zero_grad:
            self.zero_grad()

    def _before_first_pass(self, closure: Callable[[], torch.Tensor]) -> None:
        """Hook for extra passes before the gradient at ``w`` (Eigen-SAM's power iteration)."""

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:  # type: ignore[override]
        """One full step: gradient at ``w``, perturbation, gradient at ``w + eps``, base step.

        Args:
            closure: Zeroes the gradients, runs forward and backward on the
                mini-batch and returns the loss. Required.

        Returns:
            The loss returned by the first closure call (at the unperturbed weights).
        """
        if closure is None:
            raise ValueError(
                f"{type(self).__name__}.step needs a closure (zero_grad + forward + backward, "
                "returning the loss); or call first_step/second_step yourself"
            )
        closure = torch.enable_grad()(closure)
        if not self.perturbation_active:
            loss = closure()
            self.last_perturbation_norm = 0.0
            self.base_optimizer.step()
            self.num_steps += 1
            return loss
        self._before_first_pass(closure)
        loss = closure()
        self.first_step(zero_grad=True)
        with frozen_bn_stats(self.model):
            closure()
        self.second_step()
        return loss

    # ------------------------------------------------------------ state dict
    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """The base optimizer's state dict (incl. momentum buffers and all group
        hyperparameters such as ``lr`` and ``rho``) plus the wrapper's own state
        (epoch counter, switch, step counters, Eigen-SAM's eigenvector)."""
        return {
            "base": self.base_optimizer.state_dict(),
            "wrapper": {
                "epochs_done": self.epochs_done,
                "switched_at_epoch": self.switched_at_epoch,
                "num_steps": self.num_steps,
                "num_clean_steps": self.num_clean_steps,
                **self._extra_state(),
            },
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        """Load a dict written by :meth:`state_dict` (param_groups stay shared with the base)."""
        if not isinstance(state_dict, dict) or set(state_dict) != {"base", "wrapper"}:
            raise ValueError(
                f"state_dict must be a dict with keys 'base' and 'wrapper' as written by "
                f"{type(self).__name__}.state_dict(), got keys "
                f"{sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict)}"
            )
        self.base_optimizer.load_state_dict(state_dict["base"])
        self.param_groups = self.base_optimizer.param_groups
        w = state_dict["wrapper"]
        self.epochs_done = int(w["epochs_done"])
        self.switched_at_epoch = w["switched_at_epoch"]
        self.num_steps = int(w["num_steps"])
        self.num_clean_steps = int(w["num_clean_steps"])
        self._load_extra_state(w)


class SAM(_TwoPassOptimizer):
    r"""Sharpness-Aware Minimization (Foret et al., 2021): :math:`\epsilon = \rho\, g/\|g\|_2`.

    Args:
        params: Parameters or parameter groups (each group may set its own ``rho``).
        base_optimizer: Optimizer class stepping with the perturbed gradient.
        rho: Radius :math:`\rho \ge 0` of the :math:`\ell_2` ball.
        model: The network, to keep BatchNorm statistics out of the second pass.
        sgd_epochs: Epochs of plain base-optimizer steps before the perturbation starts.
        switch_accuracy: Optional validation accuracy (fraction) that ends the SGD phase early.
        **kwargs: Base-optimizer arguments (``lr``, ``momentum``, ``weight_decay``, ...).
    """

    def __init__(self, params, base_optimizer, *, rho: float = 0.05, **kwargs: Any) -> None:
        super().__init__(params, base_optimizer, rho=rho, **kwargs)

    def _perturbation(self, items):
        norm = _global_norm([p.grad for _, p in items])
        if not torch.isfinite(norm) or norm == 0:
            return None
        return [p.grad * (group["rho"] / norm) for group, p in items]


class ASAM(_TwoPassOptimizer):
    r"""Adaptive SAM (Kwon et al., 2021): :math:`\epsilon = \rho\, T^2 g / \|T g\|_2`.

    :math:`T = |w| + \eta` element-wise for weights; :math:`T = 1` for
    parameters whose name ends in ``bias`` (as in Kwon et al.'s code, which
    scales every parameter named ``weight``, BatchNorm scales included). Names
    come from ``model``; without ``model`` every parameter is treated as a weight.

    Args:
        params: Parameters or parameter groups.
        base_optimizer: Optimizer class stepping with the perturbed gradient.
        rho: Radius in the adaptive norm (the paper uses 0.5 / 1.0, Tables 4-6).
        eta: :math:`\eta \ge 0` (0.01 in Tables 4-6).
        **kwargs: As for :class:`SAM`.
    """

    def __init__(
        self, params, base_optimizer, *, rho: float = 0.5, eta: float = 0.01, **kwargs: Any
    ) -> None:
        _check_nonneg("eta", eta)
        super().__init__(params, base_optimizer, rho=rho, **kwargs)
        self.eta = float(eta)

    def _scale(self, p: torch.Tensor) -> torch.Tensor | None:
        if self._names.get(p, "").endswith("bias"):
            return None
        return p.detach().abs() + self.eta

    def _perturbation(self, items):
        scales = [self._scale(p) for _, p in items]
        tg = [p.grad if t is None else p.grad * t for (_, p), t in zip(items, scales)]
        norm = _global_norm(tg)
        if not torch.isfinite(norm) or norm == 0:
            return None
        return [
            (g if t is None else g * t) * (group["rho"] / norm)
            for (group, _), g, t in zip(items, tg, scales)
        ]


class RSAM(_TwoPassOptimizer):
    r"""Rényi Sharpness-Aware Minimization (Eq. 11, Algorithm 2).

    ``radius="paper"`` (default): :math:`\epsilon = s\rho\,\mathrm{sign}(g)|g|^{2\alpha-1}
    / \|g\|_2^{2\alpha}`; ``radius="fixed"``: :math:`\epsilon = s\rho\,\mathrm{sign}(g)
    |g|^{2\alpha-1} / \|g\|_{2\alpha}^{2\alpha-1}` with :math:`\|\epsilon\|_p = \rho`,
    :math:`p = 2\alpha/(2\alpha-1)`. Here :math:`s = -\mathrm{sign}(1-\alpha)`;
    :math:`\alpha = 1` is refused (:math:`s = 0` there: no perturbation at all).
    Norms and sums run over all parameters together (one global regularizer, Sec. 6.1).
    Both are computed from :math:`u = g/\|g\|_2` (:math:`\epsilon = s\rho\,\mathrm{sign}(u)
    |u|^{2\alpha-1}/\|g\|_2` resp. :math:`s\rho\,\mathrm{sign}(u)|u|^{2\alpha-1}/
    \|u\|_{2\alpha}^{2\alpha-1}`) so that no power of a tiny or huge gradient overflows;
    entries with :math:`g_j = 0` get :math:`\epsilon_j = 0` (also for :math:`2\alpha-1<0`).

    Args:
        params: Parameters or parameter groups.
        base_optimizer: Optimizer class stepping with the perturbed gradient.
        rho: :math:`\rho \ge 0` (Tables 4-6: 0.65-1.25).
        alpha: Rényi order :math:`\alpha > 0`, :math:`\alpha \ne 1` (Tables 4-6: 1.1, 1.2);
            ``>= 0.5`` for ``"fixed"``.
        radius: ``"paper"`` (Eq. 11) or ``"fixed"`` (the :math:`\ell_p`-ball maximizer).
        sgd_epochs: Plain-SGD epochs before RSAM (Algorithm 2's :math:`e_1`; 5 or 20 in the paper).
        switch_accuracy: Switch as soon as validation top-1 exceeds this fraction (0.30 on TinyImageNet).
        **kwargs: As for :class:`SAM`.
    """

    def __init__(
        self,
        params,
        base_optimizer,
        *,
        rho: float = 0.65,
        alpha: float = 1.2,
        radius: str = "paper",
        **kwargs: Any,
    ) -> None:
        _check_alpha(alpha)
        if alpha == 1:
            raise ValueError(
                "alpha (Rényi order) must differ from 1 for RSAM: sign(1 - alpha) = 0 makes the "
                "perturbation (Eq. 11) vanish and RSAM the base optimizer; use SAM, or alpha "
                "such as 1.1 or 0.9"
            )
        if radius not in ("paper", "fixed"):
            raise ValueError(f"radius must be 'paper' (Eq. 11) or 'fixed', got {radius!r}")
        if radius == "fixed" and alpha < 0.5:
            raise ValueError(
                f"radius='fixed' needs alpha >= 0.5 (p = 2α/(2α-1) must be a norm), got alpha={alpha}"
            )
        super().__init__(params, base_optimizer, rho=rho, **kwargs)
        self.alpha = float(alpha)
        self.radius = radius

    @property
    def sign(self) -> float:
        """:math:`s = -\\mathrm{sign}(1-\\alpha)` (:math:`\\alpha \\ne 1`)."""
        return 1.0 if self.alpha > 1 else -1.0

    @property
    def dual_exponent(self) -> float:
        """:math:`p = 2\\alpha/(2\\alpha-1)`: ``radius="fixed"`` gives :math:`\\|\\epsilon\\|_p = \\rho`."""
        return math.inf if self.alpha == 0.5 else 2 * self.alpha / (2 * self.alpha - 1)

    def _perturbation(self, items):
        grads = [p.grad for _, p in items]
        norm2 = _global_norm(grads)
        if not torch.isfinite(norm2) or norm2 == 0:
            return None
        k = 2 * self.alpha - 1
        powered = []
        for g in grads:
            u = g / norm2
            a = u.abs()
            pw = torch.where(a > 0, a.pow(k), torch.zeros_like(a)) if k < 0 else a.pow(k)
            powered.append(torch.sign(u) * pw)
        if self.radius == "paper":
            denom = norm2
        else:
            denom = _global_norm([g / norm2 for g in grads], p=2 * self.alpha).pow(k)
        if not torch.isfinite(denom) or denom == 0:
            return None
        eps = [v * (self.sign * group["rho"] / denom) for (group, _), v in zip(items, powered)]
        if not all(torch.isfinite(e).all() for e in eps):
            return None
        return eps


class EigenSAM(_TwoPassOptimizer):
    r"""Eigen-SAM (Luo et al., 2024): SAM tilted towards the top Hessian eigenvector.

    Every ``freq`` perturbed steps, ``power_iters`` power iterations (warm-started
    from the previous vector) estimate the top eigenvector :math:`v` of the
    mini-batch Hessian. The perturbation is (as in the authors' code)

    .. math:: d = \hat g + a\,\mathrm{sign}(g^\top v)\,(v - (\hat g^\top v)\,\hat g),\quad
              \hat g = g/\|g\|_2,\quad \epsilon = \rho\, d/\|d\|_2,

    i.e. the component of :math:`v` orthogonal to the gradient, oriented along
    the gradient's side, is added with weight :math:`a` (``eigvec_weight``; 0.2 in Tables 4-5).
    Before the first estimate :math:`d = \hat g` (SAM).

    Hessian-vector products use only the closure (the same contract as every
    optimizer here): a central difference of gradients,
    :math:`Hv \approx (\nabla L(w + hv) - \nabla L(w - hv)) / (2h)`, which is
    exact for quadratics and has :math:`O(h^2)` error otherwise; by default
    :math:`h = \varepsilon_{\mathrm{mach}}^{1/3}\max(1, \mathrm{rms}(w))`. Each
    power iteration costs two extra forward-backward passes, run inside
    :func:`frozen_bn_stats`. Power iteration converges to the eigenvector of
    largest :math:`|\lambda|`, like the authors' code. ``last_eigenvalue`` holds
    the Rayleigh quotient :math:`v^\top H v` of the last iteration.

    Args:
        params: Parameters or parameter groups.
        base_optimizer: Optimizer class stepping with the perturbed gradient.
        rho: SAM radius (0.05 CIFAR-10, 0.1 CIFAR-100).
        eigvec_weight: Weight :math:`a \ge 0` of the eigenvector component (0.2).
        freq: Re-estimate :math:`v` every ``freq`` perturbed steps (100 in the authors' code).
        power_iters: Power iterations per estimate (5 in the authors' code).
        fd_step: Finite-difference step :math:`h` (``None``: automatic).
        seed: Seed of the random start vector.
        **kwargs: As for :class:`SAM`.
    """

    def __init__(
        self,
        params,
        base_optimizer,
        *,
        rho: float = 0.05,
        eigvec_weight: float = 0.2,
        freq: int = 100,
        power_iters: int = 5,
        fd_step: float | None = None,
        seed: int = 0,
        alpha: float | None = None,
        **kwargs: Any,
    ) -> None:
        if alpha is not None:
            warnings.warn(
                "EigenSAM(alpha=...) is deprecated: the eigenvector weight is eigvec_weight "
                "(alpha is the Rényi order elsewhere in renyilib)",
                DeprecationWarning,
                stacklevel=2,
            )
            eigvec_weight = alpha
        _check_nonneg("eigvec_weight", eigvec_weight)
        for name, val in (("freq", freq), ("power_iters", power_iters)):
            if not isinstance(val, int) or isinstance(val, bool) or val < 1:
                raise ValueError(f"{name} must be an int >= 1, got {val!r}")
        if fd_step is not None and not (isinstance(fd_step, int | float) and fd_step > 0):
            raise ValueError(f"fd_step must be a positive number or None, got {fd_step!r}")
        super().__init__(params, base_optimizer, rho=rho, **kwargs)
        self.eigvec_weight = float(eigvec_weight)
        self.freq = freq
        self.power_iters = power_iters
        self.fd_step = fd_step
        self.seed = seed
        self.last_eigenvalue = math.nan
        self._eigvec: list[torch.Tensor] | None = None
        self._perturbed_steps = 0

    @property
    def alpha(self) -> float:
        """Deprecated alias of :attr:`eigvec_weight`."""
        warnings.warn(
            "EigenSAM.alpha is deprecated; use .eigvec_weight", DeprecationWarning, stacklevel=2
        )
        return self.eigvec_weight

    def _all_params(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups for p in g["params"] if p.requires_grad]

    def eigenvector(self) -> torch.Tensor | None:
        """The current eigenvector estimate, flattened in parameter order (``None`` before the first)."""
        if self._eigvec is None:
            return None
        return torch.cat([v.reshape(-1) for v in self._eigvec])

    @torch.no_grad()
    def _grads_at(self, closure, params, base, shift, h) -> list[torch.Tensor]:
        for p, w, v in zip(params, base, shift):
            p.copy_(w).add_(v, alpha=h)
        with torch.enable_grad():
            closure()
        return [
            p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in params
        ]

    @torch.no_grad()
    def power_iteration(
        self, closure: Callable[[], torch.Tensor], iters: int | None = None
    ) -> float:
        """Run power iterations on the mini-batch Hessian of ``closure``'s loss.

        Args:
            closure: The training closure (zero_grad + forward + backward).
            iters: Number of iterations (default ``power_iters``).

        Returns:
            The Rayleigh quotient :math:`v^\\top H v` of the last iteration.
        """
        params = self._all_params()
        if self._eigvec is None:
            gen = torch.Generator().manual_seed(self.seed)
            vec = [
                torch.randn(p.shape, generator=gen, dtype=p.dtype, device="cpu").to(p.device)
                for p in params
            ]
            norm = _global_norm(vec)
            self._eigvec = [v / norm for v in vec]
        base = [p.detach().clone() for p in params]
        h = self.fd_step
        if h is None:
            rms = float(_global_norm(base)) / math.sqrt(sum(p.numel() for p in params))
            h = torch.finfo(params[0].dtype).eps ** (1 / 3) * max(1.0, rms)
        lam = math.nan
        try:
            with frozen_bn_stats(self.model):
                for _ in range(iters or self.power_iters):
                    gp = self._grads_at(closure, params, base, self._eigvec, h)
                    gm = self._grads_at(closure, params, base, self._eigvec, -h)
                    hv = [(a - b) / (2 * h) for a, b in zip(gp, gm)]
                    lam = float(sum((v * x).sum() for v, x in zip(self._eigvec, hv)))
                    norm = _global_norm(hv)
                    if not torch.isfinite(norm) or norm == 0:
                        break
                    self._eigvec = [x / norm for x in hv]
        finally:
            for p, w in zip(params, base):
                p.copy_(w)
        self.last_eigenvalue = lam
        return lam

    def _before_first_pass(self, closure):
        if self._perturbed_steps % self.freq == 0:
            self.power_iteration(closure)
        self._perturbed_steps += 1

    def _perturbation(self, items):
        grads = [p.grad for _, p in items]
        norm = _global_norm(grads)
        if not torch.isfinite(norm) or norm == 0:
            return None
        ghat = [g / norm for g in grads]
        d = ghat
        if self._eigvec is not None and self.eigvec_weight > 0:
            vmap = dict(zip(self._all_params(), self._eigvec))
            v = [vmap[p] for _, p in items]
            gv = sum((a * b).sum() for a, b in zip(grads, v))
            ghv = sum((a * b).sum() for a, b in zip(ghat, v))
            s = torch.sign(gv)
            d = [a + self.eigvec_weight * s * (b - ghv * a) for a, b in zip(ghat, v)]
        dn = _global_norm(d)
        if not torch.isfinite(dn) or dn == 0:
            return None
        return [x * (group["rho"] / dn) for (group, _), x in zip(items, d)]

    def _extra_state(self):
        return {
            "eigvec": None if self._eigvec is None else [v.detach().clone() for v in self._eigvec],
            "perturbed_steps": self._perturbed_steps,
            "last_eigenvalue": self.last_eigenvalue,
        }

    def _load_extra_state(self, state):
        ev = state.get("eigvec")
        params = self._all_params()
        self._eigvec = (
            None
            if ev is None
            else [v.to(device=p.device, dtype=p.dtype) for v, p in zip(ev, params)]
        )
        self._perturbed_steps = int(state.get("perturbed_steps", 0))
        self.last_eigenvalue = float(state.get("last_eigenvalue", math.nan))


#: The names :func:`build_optimizer` accepts and the classes they build (``None``: plain torch).
OPTIMIZERS: dict[str, type[_TwoPassOptimizer] | None] = {
    "sgd": None,
    "adam": None,
    "sam": SAM,
    "asam": ASAM,
    "eigensam": EigenSAM,
    "rsam": RSAM,
}

_BASES = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}


def build_optimizer(
    name: str,
    model: nn.Module,
    params: Iterable[torch.Tensor] | None = None,
    config: dict[str, Any] | None = None,
    *,
    lr: float | None = None,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    **kwargs: Any,
) -> torch.optim.Optimizer:
    """Build any optimizer of Table 1 from a config dict.

    ``"sgd"`` is ``torch.optim.SGD(lr, momentum, weight_decay)``; ``"adam"`` is
    ``torch.optim.Adam(lr, weight_decay)`` (``momentum`` is not used; pass
    ``betas`` instead). The SAM family wraps a base optimizer (``base="sgd"``
    by default, or ``"adam"``) over ``model.parameters()`` and gets ``model``
    (BatchNorm statistics, ASAM's bias rule). The training loop should call
    ``opt.step(closure)`` with a closure doing zero_grad + forward + backward
    and returning the loss, and ``opt.on_epoch_end(epoch, val_acc=...)`` after
    every epoch if the optimizer has it.

    Both ``build_optimizer(name, model, lr=0.1, rho=0.05)`` and the
    config-dict form ``build_optimizer(name, model, params, {"lr": 0.1, "rho": 0.05})``
    work (keys of ``config`` fill the keyword arguments).

    Args:
        name: ``"sgd"``, ``"adam"``, ``"sam"``, ``"asam"``, ``"eigensam"`` (or ``"eigen-sam"``), ``"rsam"``.
        model: The network (BatchNorm modules and parameter names come from it).
        params: The parameters to optimize (default: ``model``'s parameters with ``requires_grad``).
        config: Optional dict of the keyword arguments below (``lr``, ``momentum``,
            ``weight_decay`` and method hyperparameters); a key given both here
            and as a keyword raises ``TypeError``.
        lr: Learning rate (required, here or in ``config``).
        momentum: SGD momentum (base optimizer ``"sgd"``).
        weight_decay: :math:`\\lambda` of Algorithm 2, applied at the unperturbed weights.
        **kwargs: Method hyperparameters (``rho``, ``alpha`` (RSAM's Rényi order),
            ``eigvec_weight`` (Eigen-SAM), ``eta``, ``radius``,
            ``sgd_epochs``, ``switch_accuracy``, ``freq``, ``power_iters``, ``seed``, ``base``)
            and extra base-optimizer arguments (``nesterov``, ``betas``, ...).

    Returns:
        The optimizer.

    Raises:
        ValueError: Unknown ``name`` or ``base``.
        TypeError: SAM-family keywords given for ``"sgd"``/``"adam"``, or unknown keywords.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    key = str(name).lower().replace("-", "").replace("_", "")
    if key not in OPTIMIZERS:
        raise ValueError(f"name must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    if config is not None:
        if not isinstance(config, dict):
            raise TypeError(f"config must be a dict or None, got {type(config).__name__}")
        both = sorted(set(config) & (set(kwargs) | ({"lr"} if lr is not None else set())))
        if both:
            raise TypeError(f"keys given both in config and as keywords: {both}")
        config = dict(config)
        lr = config.pop("lr", lr)
        momentum = config.pop("momentum", momentum)
        weight_decay = config.pop("weight_decay", weight_decay)
        kwargs = {**config, **kwargs}
    if lr is None:
        raise TypeError("lr (learning rate) is required, as a keyword or in config")
    params = [p for p in model.parameters() if p.requires_grad] if params is None else list(params)
    if not params:
        raise ValueError("params is empty: nothing to optimize")
    cls = OPTIMIZERS[key]
    if cls is None:
        family = {"rho", "alpha", "eta", "radius", "sgd_epochs", "switch_accuracy", "freq"}
        family |= {"eigvec_weight"}
        family |= {"power_iters", "fd_step", "seed", "base", "model"}
        bad = sorted(set(kwargs) & family)
        if bad:
            raise TypeError(
                f"{name!r} is a plain optimizer; SAM-family keywords not allowed: {bad}"
            )
        if key == "sgd":
            return torch.optim.SGD(
                params, lr=lr, momentum=momentum, weight_decay=weight_decay, **kwargs
            )
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **kwargs)
    base = kwargs.pop("base", "sgd")
    if base not in _BASES:
        raise ValueError(f"base must be one of {sorted(_BASES)}, got {base!r}")
    if base == "sgd":
        kwargs["momentum"] = momentum
    return cls(params, _BASES[base], model=model, lr=lr, weight_decay=weight_decay, **kwargs)
