"""Experiment profiles, the data root, devices and seeding.

The profiles of every experiment (``smoke``, ``cpu``, ``paper``) live in the
top-level ``_config.yml`` of the repository, under ``experiments:``. Notebooks
take ``profile`` as a papermill parameter and read the rest with
:func:`load_profile`.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

__all__ = [
    "PROFILES",
    "find_config",
    "load_profile",
    "data_root",
    "cache_dir",
    "default_device",
    "seed_everything",
]

PROFILES = ("smoke", "cpu", "paper")


def find_config(start: str | os.PathLike | None = None) -> Path:
    """Find the project's top-level ``_config.yml`` (the one with ``experiments:``).

    Looks in ``$RENYI_CONFIG`` if set, else in ``start`` (default: the current
    folder) and its parents, then next to the installed package's checkout.
    """
    env = os.environ.get("RENYI_CONFIG")
    if env:
        return Path(env)
    starts = [Path(start or Path.cwd()).resolve(), Path(__file__).resolve().parents[2]]
    for base in starts:
        for folder in [base, *base.parents]:
            candidate = folder / "_config.yml"
            if candidate.is_file() and "experiments" in (
                yaml.safe_load(candidate.read_text()) or {}
            ):
                return candidate
    raise FileNotFoundError(
        "no _config.yml with an 'experiments:' section found from "
        f"{starts[0]} upwards; set RENYI_CONFIG to the project's _config.yml"
    )


def load_profile(
    experiment: str, profile: str, path: str | os.PathLike | None = None
) -> dict[str, Any]:
    """Settings of one experiment in one profile.

    Args:
        experiment: Experiment name (a key under ``experiments:``, e.g. ``"estimator"``).
        profile: One of ``"smoke"``, ``"cpu"``, ``"paper"``.
        path: Explicit ``_config.yml``; found with :func:`find_config` if omitted.

    Returns:
        The profile's settings, with ``profile`` and ``experiment`` added.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    cfg = yaml.safe_load(Path(path or find_config()).read_text())["experiments"]
    if experiment not in cfg:
        raise KeyError(f"experiment {experiment!r} not in _config.yml; known: {sorted(cfg)}")
    if profile not in cfg[experiment]:
        raise KeyError(f"experiment {experiment!r} has no profile {profile!r}")
    return {**cfg[experiment][profile], "profile": profile, "experiment": experiment}


def _default_data_dir() -> Path:
    """``data/`` of the project checkout (found via its ``_config.yml``), else ``./data``.

    Anchoring to the checkout makes notebooks executed in ``book/generated/`` and
    commands run from any sub-folder share one data folder and one cache.
    """
    try:
        return find_config().parent / "data"
    except FileNotFoundError:
        return Path("data")


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else ``$RENYI_DATA``, else the project's ``data/``."""
    return Path(root or os.environ.get("RENYI_DATA") or _default_data_dir())


def cache_dir(path: str | os.PathLike | None = None) -> Path:
    """Where decoded-dataset caches go: ``path``, else ``$RENYI_CACHE``, else the project's ``data/cache``.

    Kept apart from the data root, which may be read-only or shared.
    """
    return Path(path or os.environ.get("RENYI_CACHE") or _default_data_dir() / "cache")


def default_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU ``torch.Generator`` seeded with ``seed``."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (legacy global state, for third-party code)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
