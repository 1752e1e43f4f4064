"""What one model costs at the paper's setting: the committed ResNet-18 benchmark, for the book.

``benchmarks/bench_resnet.py`` measures, on CIFAR-shaped inputs, one gradient
and one Hessian-vector product per block of a ResNet-18 (width 0.125 on 256
images and full width on 16 images), the kept graph's memory, a whole
per-layer profile against its products, and the cost of the paper's setting
(Appendix G.4: 100 probes × 15 Lanczos steps for each of 22 blocks on 2,000
images) extrapolated from the measured per-product times,

.. math::

    T \\approx \\sum_{b} \\big(s_b + l\\,m\\,t_b\\big) \\cdot 2000 / N_\\text{images},

with :math:`t_b` the time of one product of block :math:`b` and :math:`s_b`
its set-up. This module reads those files (``benchmarks/results/resnet.csv``
and ``resnet.meta.json``) and shapes them for the estimator chapter; it
measures nothing itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from renyilib.experiments.io import read_results

__all__ = ["resnet_cost", "resnet_cost_table"]

_PARTS = {"per-block": "width 0.125", "full width": "full width"}


def resnet_cost_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per block: parameters, gradient and product seconds, their ratio, at both widths.

    Args:
        table: ``benchmarks/results/resnet.csv``.

    Returns:
        Columns ``block``, then per width (``w0.125`` on the benchmark's images,
        ``full`` on its images): ``dim``, ``gradient_s``, ``hvp_s``,
        ``hvp_per_gradient``, ``graph_mb``; in forward order.

    Raises:
        ValueError: A part or column is missing.
    """
    need = {"part", "block", "dim", "gradient_s", "hvp_s", "hvp_per_gradient", "graph_mb"}
    missing = need - set(table.columns)
    if missing:
        raise ValueError(f"table: missing columns {sorted(missing)} (a resnet.csv?)")
    out = None
    for part, tag in (("per-block", "w0.125"), ("full width", "full")):
        g = table[table["part"] == part]
        if g.empty:
            raise ValueError(f"table: no {part!r} rows")
        g = g[["block", "dim", "gradient_s", "hvp_s", "hvp_per_gradient", "graph_mb"]].copy()
        g = g.rename(columns={c: f"{c} ({tag})" for c in g.columns if c != "block"})
        out = g if out is None else out.merge(g, on="block", how="left")
    return out.reset_index(drop=True)


def resnet_cost(root: str | os.PathLike) -> dict[str, Any] | None:
    """The committed ResNet-18 cost benchmark, shaped for the book (``None`` if not committed).

    Args:
        root: The repository root.

    Returns:
        ``{"table": resnet_cost_table(...), "profile": the profile row,
        "scaling": product time per image, "meta": resnet.meta.json, "numbers":
        strings for the chapter}``; ``numbers`` holds the extrapolated
        CPU-hours of one model at the paper's setting at both widths, the GPU
        hours (or the sentence that none were measured), the median
        product/gradient ratio, the profile's overhead over its products, and
        the load and code version the benchmark ran under.
    """
    files = read_results(Path(root) / "benchmarks" / "results", "resnet")
    if files is None:
        return None
    raw, meta = files
    table = resnet_cost_table(raw)
    prof = raw[raw["part"] == "profile"]
    scaling = raw[raw["part"] == "scaling"][["width", "images", "hvp_s", "hvp_per_image_s"]]
    cost = meta["paper_cost"]
    ratio_small = raw.loc[raw["part"] == "per-block", "hvp_per_gradient"].median()
    ratio_full = raw.loc[raw["part"] == "full width", "hvp_per_gradient"].median()
    numbers = {
        "resnet_setting": cost["setting"],
        "resnet_cpu_hours_full": f"{cost['full_width_cpu_hours_with_overhead']:.0f}",
        "resnet_cpu_hours_small": f"{cost['width_0125_cpu_hours_with_overhead']:.1f}",
        "resnet_gpu": (
            f"{cost['gpu_hours']:.2f} GPU-hours"
            if cost.get("gpu_hours") is not None
            else "not measured: " + cost.get("gpu_note", "no GPU run")
        ),
        "resnet_ratio_small": f"{ratio_small:.2f}",
        "resnet_ratio_full": f"{ratio_full:.2f}",
        "resnet_params_full": f"{meta['parameters']['full']:,}",
        "resnet_params_small": f"{meta['parameters']['width']:,}",
        "resnet_images_small": f"{int(meta['args']['images'])}",
        "resnet_images_full": f"{int(meta['args']['full_images'])}",
        "resnet_load": f"{meta['load_average'][0]:.0f}",
    }
    if len(prof):
        numbers["resnet_profile_overhead"] = f"{100 * (float(prof['ratio'].iloc[0]) - 1):.1f} %"
    return {"table": table, "profile": prof, "scaling": scaling, "meta": meta, "numbers": numbers}
