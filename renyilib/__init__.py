"""renyilib: Rényi sharpness of loss-Hessian spectra, RSAM and the SAM family.

The core library measures any model and knows nothing of zoos, profiles or
files. Its flat public API is re-exported here (see ``__all__``); every name
also lives in the module named for its concept:

* ``renyilib.hessian`` — Hessian(-vector) operators of parameter blocks
* ``renyilib.diagonal`` — the exact Hessian diagonal
* ``renyilib.lanczos`` — Lanczos, stochastic Lanczos quadrature (SLQ)
* ``renyilib.entropy`` — Rényi entropy of a spectral measure (exact spectra and quadratures)
* ``renyilib.renyi`` — ``renyi_sharpness`` of a model's blocks
* ``renyilib.measures`` — baseline sharpness measures (trace, λ_max, Fisher–Rao, PAC-Bayes, SAM, ASAM)
* ``renyilib.perturbation`` — adaptive worst-case and average-case sharpness
* ``renyilib.rescaling`` — the scale-invariant minimum Hessian trace
* ``renyilib.statistics`` — Kendall τ (τ-a, τ-b, granulated, bootstrap), α selection, spectral types
* ``renyilib.optim`` — SAM, ASAM, EigenSAM, RSAM
* ``renyilib.bounds``, ``renyilib.theory`` — the paper's bounds and invariance checks
* ``renyilib.plots`` — spectral densities and the book's figure style
* ``renyilib.batches``, ``renyilib.modes`` — batching of ``(x, y)`` data, the eval-mode guard

The paper's experiments (datasets, models, training, zoos, Table 1, the
report and the ``renyilib`` command) live in :mod:`renyilib.experiments`,
which uses the core; the core never imports it.
"""

from __future__ import annotations

__version__ = "0.1.0"

from renyilib.batches import as_batches
from renyilib.diagonal import hessian_diagonal
from renyilib.hessian import HessianOperator, hessian_operator, layer_blocks
from renyilib.lanczos import (
    DeflationError,
    SpectralQuadrature,
    slq,
    top_eigenpair,
    top_eigenpairs,
)
from renyilib.measures import (
    asam_sharpness,
    compute_measures,
    fisher_rao_norm,
    hessian_trace,
    lambda_max,
    noise_accuracy_drop,
    pacbayes,
    param_norm,
    sam_sharpness,
)
from renyilib.modes import eval_mode
from renyilib.optim import ASAM, RSAM, SAM, EigenSAM, build_optimizer
from renyilib.perturbation import adaptive_sharpness, average_sharpness
from renyilib.renyi import PAPER_ALPHAS, renyi_entropy, renyi_sharpness
from renyilib.rescaling import MinimumSharpness, minimum_sharpness
from renyilib.statistics import (
    alpha_sweep,
    best_alpha,
    bootstrap_tau,
    correlation_table,
    granulated_tau,
    kendall_tau,
    kendall_tau_a,
    spectral_type,
    split_selection,
)

#: Names that lived at the top level before the experiments layer moved to
#: :mod:`renyilib.experiments`; they still resolve (lazily, with a
#: DeprecationWarning) for one release.
_MOVED = {
    "cache_dir": "renyilib.experiments.config",
    "data_root": "renyilib.experiments.config",
    "default_device": "renyilib.experiments.config",
    "load_profile": "renyilib.experiments.config",
    "seed_everything": "renyilib.experiments.config",
    "DataBundle": "renyilib.experiments.data",
    "load_data": "renyilib.experiments.data",
    "sharpness_subset": "renyilib.experiments.data",
    "code_version": "renyilib.experiments.io",
    "config_hash": "renyilib.experiments.io",
    "build_model": "renyilib.experiments.models",
    "count_parameters": "renyilib.experiments.models",
    "TrainConfig": "renyilib.experiments.train",
    "TrainResult": "renyilib.experiments.train",
}


def __getattr__(name: str):
    """Resolve a name that moved to :mod:`renyilib.experiments` (PEP 562), with a warning."""
    if name in _MOVED:
        import importlib
        import warnings

        module = _MOVED[name]
        warnings.warn(
            f"renyilib.{name} moved to {module}.{name}; the top-level name will be removed "
            "in renyilib 0.3",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'renyilib' has no attribute {name!r}")


__all__ = [
    "ASAM",
    "PAPER_ALPHAS",
    "RSAM",
    "SAM",
    "DeflationError",
    "EigenSAM",
    "HessianOperator",
    "MinimumSharpness",
    "SpectralQuadrature",
    "__version__",
    "adaptive_sharpness",
    "alpha_sweep",
    "as_batches",
    "asam_sharpness",
    "average_sharpness",
    "best_alpha",
    "bootstrap_tau",
    "build_optimizer",
    "compute_measures",
    "correlation_table",
    "eval_mode",
    "fisher_rao_norm",
    "granulated_tau",
    "hessian_diagonal",
    "hessian_operator",
    "hessian_trace",
    "kendall_tau",
    "kendall_tau_a",
    "lambda_max",
    "layer_blocks",
    "minimum_sharpness",
    "noise_accuracy_drop",
    "pacbayes",
    "param_norm",
    "renyi_entropy",
    "renyi_sharpness",
    "sam_sharpness",
    "slq",
    "spectral_type",
    "split_selection",
    "top_eigenpair",
    "top_eigenpairs",
]
