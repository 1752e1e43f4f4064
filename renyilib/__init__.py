"""renyilib: Rényi sharpness of loss-Hessian spectra, RSAM and the SAM family.

The flat public API is re-exported here; see ``__all__``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from renyilib.config import cache_dir, data_root, default_device, load_profile, seed_everything
from renyilib.io import code_version, config_hash

__all__ = [
    "__version__",
    "cache_dir",
    "code_version",
    "config_hash",
    "data_root",
    "default_device",
    "load_profile",
    "seed_everything",
]
