"""renyilib: Rényi sharpness of loss-Hessian spectra, RSAM and the SAM family.

The flat public API is re-exported here (see ``__all__``); every name also
lives in the module named for its concept:

========================  ====================================================
``renyilib.hessian``      Hessian(-vector) operators of parameter blocks
``renyilib.lanczos``      Lanczos, stochastic Lanczos quadrature (SLQ)
``renyilib.renyi``        Rényi entropy (exact and SLQ), ``renyi_sharpness``
``renyilib.measures``     baseline sharpness measures
``renyilib.correlation``  Kendall τ, α sweeps and selection, spectral types
``renyilib.bounds``       the paper's generalization bounds
``renyilib.theory``       invariance and global-vs-layer-wise checks
``renyilib.optim``        SAM, ASAM, EigenSAM, RSAM
``renyilib.data``         datasets; ``renyilib.models`` architectures
``renyilib.train``        the training loop; ``renyilib.zoo`` the model zoo
``renyilib.table1``       the Table 1 runner (methods × tasks × seeds)
``renyilib.plots``        the figure styles of the book
========================  ====================================================
"""

from __future__ import annotations

__version__ = "0.1.0"

from renyilib.config import (
    cache_dir,
    data_root,
    default_device,
    load_profile,
    seed_everything,
)
from renyilib.correlation import (
    alpha_sweep,
    best_alpha,
    correlation_table,
    kendall_tau,
    spectral_type,
    split_selection,
)
from renyilib.data import DataBundle, load_data, sharpness_subset
from renyilib.hessian import HessianOperator, hessian_operator, layer_blocks
from renyilib.io import code_version, config_hash
from renyilib.lanczos import SpectralQuadrature, slq, top_eigenpair, top_eigenpairs
from renyilib.measures import (
    asam_sharpness,
    compute_measures,
    fisher_rao_norm,
    hessian_trace,
    lambda_max,
    pacbayes,
    param_norm,
    sam_sharpness,
)
from renyilib.models import build_model, count_parameters
from renyilib.optim import ASAM, RSAM, SAM, EigenSAM, build_optimizer
from renyilib.renyi import PAPER_ALPHAS, renyi_entropy, renyi_sharpness
from renyilib.train import TrainConfig, TrainResult

__all__ = [
    "ASAM",
    "PAPER_ALPHAS",
    "RSAM",
    "SAM",
    "DataBundle",
    "EigenSAM",
    "HessianOperator",
    "SpectralQuadrature",
    "TrainConfig",
    "TrainResult",
    "__version__",
    "alpha_sweep",
    "asam_sharpness",
    "best_alpha",
    "build_model",
    "build_optimizer",
    "cache_dir",
    "code_version",
    "compute_measures",
    "config_hash",
    "correlation_table",
    "count_parameters",
    "data_root",
    "default_device",
    "fisher_rao_norm",
    "hessian_operator",
    "hessian_trace",
    "kendall_tau",
    "lambda_max",
    "layer_blocks",
    "load_data",
    "load_profile",
    "pacbayes",
    "param_norm",
    "renyi_entropy",
    "renyi_sharpness",
    "sam_sharpness",
    "seed_everything",
    "sharpness_subset",
    "slq",
    "spectral_type",
    "split_selection",
    "top_eigenpair",
    "top_eigenpairs",
]
