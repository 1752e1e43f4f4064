"""Measurement data as a list of ``(x, y)`` batches: the one batching helper of the core.

Every measure of :mod:`renyilib` takes ``data`` as a pair ``(x, y)`` of tensors
(one batch) or an iterable of such pairs (e.g. a ``torch.utils.data.DataLoader``).
The measured objective is the mean loss over all samples, batches weighted by
their size :math:`N_b`:

.. math::  L = \\frac{1}{N} \\sum_b N_b L_b, \\qquad N = \\sum_b N_b.

:func:`as_batches` materializes ``data`` once (so that every block, probe or
noise draw sees the same batches), :func:`batch_size` reads :math:`N_b` from
the inputs (a tensor, or a tuple of positional-argument tensors), and
:func:`to_device` moves nested inputs.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["as_batches", "batch_size", "input_numel", "to_device"]


def as_batches(data: Any) -> list[tuple[Any, Any]]:
    """Materialize ``data`` (a pair or an iterable of pairs) as a list of ``(x, y)`` batches.

    A pair of tensors whose first dimensions agree is one batch; anything else
    is iterated once and each element's first two entries are kept.

    Args:
        data: ``(x, y)`` or an iterable of ``(x, y, ...)`` batches.

    Returns:
        The batches, as a list of ``(x, y)`` tuples (possibly empty).

    Raises:
        TypeError: ``data`` is a single tensor, not iterable, or yields
            something other than pairs.

    Example:
        >>> x, y = torch.zeros(4, 2), torch.zeros(4)
        >>> len(as_batches((x, y))), len(as_batches([(x, y), (x, y)]))
        (1, 2)
    """
    if isinstance(data, tuple | list) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        x, y = data
        if isinstance(y, torch.Tensor) and x.shape[:1] == y.shape[:1]:
            return [(x, y)]
    if isinstance(data, torch.Tensor):
        raise TypeError(
            "data must be a pair (x, y) of tensors or an iterable of (x, y) batches, got a tensor"
        )
    try:
        batches = []
        for batch in data:
            if not isinstance(batch, tuple | list) or len(batch) < 2:
                raise TypeError(
                    f"data must yield (x, y) batches; got an element of type {type(batch).__name__}"
                )
            batches.append((batch[0], batch[1]))
    except TypeError as err:
        if "data must" in str(err):
            raise
        raise TypeError(
            "data must be a pair (x, y) of tensors or an iterable of (x, y) batches, "
            f"got {type(data).__name__}"
        ) from err
    return batches


def batch_size(x: Any) -> int:
    """Number of samples :math:`N_b` in inputs ``x``: the first dimension of (the first) tensor.

    Raises:
        TypeError: ``x`` holds no tensor.
    """
    if isinstance(x, torch.Tensor):
        return int(x.shape[0]) if x.dim() > 0 else 1
    if isinstance(x, tuple | list) and x:
        return batch_size(x[0])
    raise TypeError(f"cannot infer the batch size of inputs of type {type(x).__name__}")


def input_numel(x: Any) -> int:
    """Number of scalars in (nested) inputs ``x`` (0 for non-tensors)."""
    if isinstance(x, torch.Tensor):
        return x.numel()
    if isinstance(x, tuple | list):
        return sum(input_numel(e) for e in x)
    return 0


def to_device(x: Any, device: torch.device) -> Any:
    """``x`` (a tensor or nested tuple/list of them) moved to ``device``; other objects unchanged."""
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, tuple | list):
        return type(x)(to_device(e, device) for e in x)
    return x
