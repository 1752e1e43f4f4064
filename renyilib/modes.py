"""Evaluation semantics of a measurement: the one eval-mode guard of the core.

Sharpness is a property of the trained network as it predicts: BatchNorm uses
its running statistics and dropout is off. :func:`eval_mode` puts every module
of a model in ``eval()`` for the duration of a block and restores each
module's own ``training`` flag afterwards (also on an exception), so a caller's
mixed modes survive a measurement.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

__all__ = ["eval_mode"]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run a block with ``model`` in eval mode; restore every module's mode afterwards.

    Args:
        model: The network.

    Yields:
        ``model`` (in eval mode).

    Raises:
        TypeError: ``model`` is not a ``torch.nn.Module``.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Dropout()).train()
        >>> net[0].eval() and None
        >>> with eval_mode(net):
        ...     net[1].training
        False
        >>> net.training, net[0].training, net[1].training
        (True, False, True)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, was in modes:
            m.train(was)
