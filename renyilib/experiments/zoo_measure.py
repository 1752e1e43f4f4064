"""Measuring a model zoo: Rényi profiles and baselines per run, cached and exported.

For every finished run of a zoo (:mod:`renyilib.experiments.zoo`) this module
computes the Rényi-sharpness quadratures of each block and the baseline
measures, caches them next to the run (``measures/<measure-hash>.json``, keyed
by the measurement settings and recording the code version), gathers them into
the long DataFrames that :mod:`renyilib.statistics` correlates with the
generalization gap, and exports them to ``data/results/<task>/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from renyilib.statistics import check_columns

__all__ = [
    "export_measurements",
    "measure_run",
    "measure_settings",
    "measure_zoo",
    "quadrature_from_record",
    "quadratures_from_table",
    "quadratures_table",
]
# --------------------------------------------------------------------------- measuring a zoo

#: Run-table columns copied next to every measurement (for colouring and filtering).
_RUN_COLUMNS = (
    "task",
    "run",
    "optimizer",
    "lr",
    "batch_size",
    "weight_decay",
    "train_acc",
    "test_acc",
    "converged",
)


def _renyi_config(settings: dict[str, Any]) -> dict[str, Any]:
    from renyilib.renyi import PAPER_ALPHAS

    alphas = settings.get("alphas", "paper")
    return {
        "alphas": list(PAPER_ALPHAS) if alphas == "paper" else [float(a) for a in alphas],
        "num_probes": int(settings.get("num_probes", 100)),
        "lanczos_steps": int(settings.get("lanczos_steps", 15)),
        "method": settings.get("method", "slq"),
        "negative": settings.get("negative", "abs"),
        "deflate": int(settings.get("deflate", 0)),
        "subset": int(settings.get("subset", 2000)),
        "subset_seed": int(settings.get("subset_seed", 0)),
        "seed": int(settings.get("seed", 0)),
        # a block list only when given: the default ("both") keeps older cache keys valid
        **(
            {"blocks": list(settings["blocks"])} if settings.get("blocks", "both") != "both" else {}
        ),
    }


#: Baselines cached under their own key (added after the others: asking for one
#: does not re-measure the rest of a zoo's baselines).
SEPARATE_BASELINES = ("min_sharpness",)


def _separate_configs(settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from renyilib.measures import MEASURES

    which = settings.get("which", MEASURES)
    return {
        name: {
            "subset": int(settings.get("subset", 2000)),
            "subset_seed": int(settings.get("subset_seed", 0)),
            "seed": int(settings.get("seed", 0)),
            "settings": dict((settings.get("settings") or {}).get(name, {})),
        }
        for name in SEPARATE_BASELINES
        if name in which
    }


def _baseline_config(settings: dict[str, Any]) -> dict[str, Any]:
    from renyilib.measures import MEASURES

    which = [
        w for w in settings.get("which", MEASURES) if w != "trace" and w not in SEPARATE_BASELINES
    ]
    return {
        "which": which,
        "settings": {k: dict(v) for k, v in (settings.get("settings") or {}).items()},
        "subset": int(settings.get("subset", 2000)),
        "subset_seed": int(settings.get("subset_seed", 0)),
        "seed": int(settings.get("seed", 0)),
    }


def quadrature_from_record(rec: dict[str, Any]) -> Any:
    """Rebuild a :class:`~renyilib.lanczos.SpectralQuadrature` from a cached block record of :func:`measure_run`."""
    from renyilib.lanczos import SpectralQuadrature

    nodes = (
        np.asarray(rec["nodes"], dtype=float).reshape(rec["num_probes"], -1)
        if rec["num_probes"]
        else np.zeros((0, 1))
    )
    weights = np.asarray(rec["weights"], dtype=float).reshape(nodes.shape)
    return SpectralQuadrature(
        nodes=nodes,
        weights=weights,
        dim=int(rec["dim"]),
        num_probes=int(rec["num_probes"]),
        lanczos_steps=int(rec["lanczos_steps"]),
        num_matvecs=int(rec["num_matvecs"]),
        exact_nodes=np.asarray(rec.get("exact_nodes", []), dtype=float),
        exact_residuals=np.zeros(len(rec.get("exact_nodes", []))),
        probe=rec.get("probe", "rademacher"),
        seed=rec.get("seed"),
    )


def measure_run(
    path: Any,
    renyi: dict[str, Any] | None = None,
    baselines: dict[str, Any] | None = None,
    *,
    data_root: Any = None,
    device: Any = None,
    force: bool = False,
) -> dict[str, Any]:
    """Measure one zoo run (cached): its Rényi profile per layer and the baselines.

    Both measurements go through :func:`renyilib.experiments.zoo.measure`, keyed by their
    settings (SLQ probes and steps, α grid, subset size and seed, …), so a
    rerun reads them back and a new setting measures anew without retraining.
    One SLQ run per block serves every α, the trace and the density: the
    quadrature's nodes and weights are stored with the profile.

    Args:
        path: A finished run folder ``<zoo>/<task>/<hash>``.
        renyi: Settings of the Rényi profile (``num_probes``, ``lanczos_steps``,
            ``method`` ("slq" / "exact" / "auto"), ``alphas`` ("paper" or a
            list), ``negative``, ``deflate``, ``subset``, ``subset_seed``,
            ``seed``, and ``blocks``: "both" (every layer block and "all", the
            default) or a list of block names, for models whose every layer
            would cost too much); ``None`` skips it.
        baselines: Settings of the baselines (``which``: names of
            :data:`renyilib.measures.MEASURES` — the trace always comes from
            the "all" block's quadrature —, per-measure ``settings``,
            ``subset``, ``subset_seed``, ``seed``); ``None`` skips them.
        data_root, device: Where the data is and where to compute.
        force: Recompute even when cached.

    Returns:
        ``{"renyi": result or None, "baselines": result or None}`` as cached.
    """
    import torch

    from renyilib.experiments import zoo
    from renyilib.experiments.data import sharpness_subset

    out: dict[str, Any] = {"renyi": None, "baselines": None}
    if renyi is None and baselines is None:
        return out
    state: dict[str, Any] = {}

    def loaded() -> tuple[Any, dict[str, Any]]:
        if "model" not in state:
            model, config, _ = zoo.load_run(path, device=device)
            state["model"], state["config"] = model, config
        return state["model"], state["config"]

    def subset(n: int, seed: int) -> tuple[Any, Any]:
        model, config = loaded()
        dev = next(model.parameters()).device
        bundle = zoo.run_data(config, data_root)
        # at most the whole (possibly subsampled) training set of the run
        return sharpness_subset(bundle, min(n, len(bundle.train_y)), seed, device=dev)

    loss_fn = torch.nn.CrossEntropyLoss()
    if renyi is not None:
        rc = _renyi_config(renyi)

        def compute_renyi() -> dict[str, Any]:
            from renyilib.renyi import renyi_sharpness

            model, _ = loaded()
            data = subset(rc["subset"], rc["subset_seed"])
            df, quads = renyi_sharpness(
                model,
                loss_fn,
                data,
                alphas=rc["alphas"],
                blocks=rc.get("blocks", "both"),
                num_probes=rc["num_probes"],
                lanczos_steps=rc["lanczos_steps"],
                seed=rc["seed"],
                negative=rc["negative"],
                deflate=rc["deflate"],
                spectrum=rc["method"],
                progress=False,
                return_quadratures=True,
            )
            blocks = {}
            for name, q in quads.items():
                blocks[name] = {
                    "nodes": np.asarray(q.nodes).ravel(),
                    "weights": np.asarray(q.weights).ravel(),
                    "exact_nodes": np.asarray(q.exact_nodes),
                    "dim": q.dim,
                    "num_probes": q.num_probes,
                    "lanczos_steps": q.lanczos_steps,
                    "num_matvecs": q.num_matvecs,
                    "probe": q.probe,
                    "seed": q.seed,
                }
            return {"profile": df.to_dict(orient="list"), "blocks": blocks}

        out["renyi"] = zoo.measure(path, "renyi", rc, compute_renyi, force=force)
    if baselines is not None:
        bc = _baseline_config(baselines)

        def compute_baselines() -> dict[str, Any]:
            from renyilib.measures import compute_measures

            model, _ = loaded()
            data = subset(bc["subset"], bc["subset_seed"])
            settings = {k: v for k, v in bc["settings"].items() if k in bc["which"]}
            if "pacbayes" in bc["which"]:
                # m of the bound: the training-set size of the run
                _, config = loaded()
                n_train = len(zoo.run_data(config, data_root).train_y)
                settings["pacbayes"] = {"num_train": n_train, **settings.get("pacbayes", {})}
            r = compute_measures(
                model, loss_fn, data, which=bc["which"], seed=bc["seed"], settings=settings
            )
            details = r.pop("details")
            matvecs = {k: int(v.get("num_matvecs", 0)) for k, v in details.items()}
            grads = {k: int(v.get("num_gradients", 0)) for k, v in details.items()}
            sigma = details.get("pacbayes", {}).get("sigma")
            return {**r, "num_matvecs": matvecs, "num_gradients": grads, "pacbayes_sigma": sigma}

        out["baselines"] = dict(zoo.measure(path, "baselines", bc, compute_baselines, force=force))
        for name, sc in _separate_configs(baselines).items():

            def compute_one(name: str = name, sc: dict[str, Any] = sc) -> dict[str, Any]:
                from renyilib.measures import compute_measures

                model, _ = loaded()
                data = subset(sc["subset"], sc["subset_seed"])
                r = compute_measures(
                    model, loss_fn, data, which=[name], seed=sc["seed"],
                    settings={name: sc["settings"]} if sc["settings"] else None,
                )  # fmt: skip
                return {name: r[name], "seconds": r["seconds"], "details": r["details"][name]}

            rec = zoo.measure(path, name, sc, compute_one, force=force)
            out["baselines"][name] = rec[name]
            out["baselines"]["seconds"] = {**out["baselines"].get("seconds", {}), **rec["seconds"]}
    return out


def measure_zoo(
    out: Any,
    task: str,
    renyi: dict[str, Any] | None = None,
    baselines: dict[str, Any] | None = None,
    *,
    data_root: Any = None,
    device: Any = None,
    progress: bool = True,
    only_converged: bool = False,
    configs: Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Measure every finished run of a task's zoo (cached) and return long tables.

    Args:
        out: The zoo folder (``<out>/<task>/<hash>/``).
        task: Task name.
        renyi, baselines: Settings as in :func:`measure_run`.
        data_root, device: As in :func:`measure_run`.
        progress: tqdm over runs.
        only_converged: Skip runs whose training did not converge.
        configs: Only the runs of these run configs (e.g. ``zoo.grid(task,
            profile)``: a zoo folder may hold the runs of several profiles).

    Returns:
        Dict of

        * ``runs``: the zoo table of the measured runs (:func:`renyilib.experiments.zoo.table`);
        * ``profiles``: one row per (run, block, α) with ``entropy``,
          ``sharpness``, ``stderr``, ``dim``, ``trace``, ``negative_mass``,
          ``num_matvecs``, ``seconds`` and the run columns (``gap``, ``optimizer``, …);
        * ``baselines``: one row per run with every baseline (``trace`` from the
          "all" block's quadrature) and the run columns;
        * ``quadratures``: ``{(run, block): SpectralQuadrature}``;
        * ``cost``: one row per run: seconds and Hessian-vector products of the
          Rényi profile (all blocks) and of each baseline;
        * ``failed``: runs whose measurement raised a ``ValueError`` (e.g. a
          block Hessian that is exactly zero, where the entropy is undefined),
          with the error; they are left out of the other tables.
    """
    from tqdm.auto import tqdm

    from renyilib.experiments import zoo

    runs = zoo.table(out, task)
    if configs is not None and len(runs):
        from renyilib.experiments.io import config_hash

        runs = runs[runs["run"].isin({config_hash(c) for c in configs})]
    if only_converged and len(runs):
        runs = runs[runs["converged"].astype(bool)]
    runs = runs.reset_index(drop=True)
    prof_rows, base_rows, cost_rows = [], [], []
    quads: dict[tuple[str, str], Any] = {}
    failed = []
    for _, row in tqdm(list(runs.iterrows()), desc=f"measure {task}", disable=not progress):
        try:
            res = measure_run(row["path"], renyi, baselines, data_root=data_root, device=device)
        except ValueError as err:  # e.g. a dead network whose block Hessian is exactly zero
            failed.append({"run": row["run"], "gap": row["gap"], "error": str(err)})
            continue
        info = {c: row[c] for c in _RUN_COLUMNS if c in row}
        info["gap"] = row["gap"]
        cost: dict[str, Any] = dict(info)
        if res["renyi"] is not None:
            p = pd.DataFrame(res["renyi"]["profile"])
            for c, v in info.items():
                p[c] = v
            prof_rows.append(p)
            for block, rec in res["renyi"]["blocks"].items():
                quads[(row["run"], block)] = quadrature_from_record(rec)
            per_block = p.drop_duplicates("block")
            cost["renyi_seconds"] = float(per_block["seconds"].sum())
            cost["renyi_matvecs"] = int(per_block["num_matvecs"].sum())
        if res["baselines"] is not None:
            b = res["baselines"]
            vals = {
                k: b[k]
                for k in (
                    "lambda_max",
                    "fisher_rao",
                    "pacbayes_flat",
                    "pacbayes_orig",
                    "pacbayes_sigma",
                    "pacbayes_converged",
                    "param_norm",
                    "sam",
                    "asam",
                    "min_sharpness",
                )
                if k in b
            }
            if res["renyi"] is not None:
                p_all = pd.DataFrame(res["renyi"]["profile"])
                p_all = p_all[p_all["block"] == "all"]
                if len(p_all):
                    vals["trace"] = float(p_all["trace"].iloc[0])
            base_rows.append({**info, **vals})
            for k, sec in b.get("seconds", {}).items():
                cost[f"{k}_seconds"] = sec
                cost[f"{k}_matvecs"] = b.get("num_matvecs", {}).get(k, 0)
                cost[f"{k}_gradients"] = b.get("num_gradients", {}).get(k, 0)
        cost_rows.append(cost)
    return {
        "runs": runs,
        "profiles": pd.concat(prof_rows, ignore_index=True) if prof_rows else pd.DataFrame(),
        "baselines": pd.DataFrame(base_rows),
        "quadratures": quads,
        "cost": pd.DataFrame(cost_rows),
        "failed": pd.DataFrame(failed, columns=["run", "gap", "error"]),
    }


def quadratures_table(quadratures: dict[tuple[str, str], Any]) -> pd.DataFrame:
    """The SLQ quadratures of :func:`measure_zoo` as one long table (for CSV export).

    Args:
        quadratures: ``{(run, block): SpectralQuadrature}``.

    Returns:
        One row per node: ``run, block, dim, num_probes, lanczos_steps,
        num_matvecs, probe`` (the probe's index; ``-1`` for an exactly known
        (deflated) eigenvalue, weight one), ``node`` and ``weight`` (padding
        entries of probes that broke down early included, with weight 0), so
        that :func:`quadratures_from_table` rebuilds every quadrature exactly.
    """
    frames = []
    for (run, block), q in quadratures.items():
        nodes = np.asarray(q.nodes, dtype=float)
        probe = np.repeat(np.arange(nodes.shape[0]), nodes.shape[1] if nodes.ndim == 2 else 0)
        exact = np.asarray(q.exact_nodes, dtype=float)
        frames.append(
            pd.DataFrame(
                {
                    "run": run,
                    "block": block,
                    "dim": int(q.dim),
                    "num_probes": int(q.num_probes),
                    "lanczos_steps": int(q.lanczos_steps),
                    "num_matvecs": int(q.num_matvecs),
                    "probe": np.concatenate([probe, -np.ones(len(exact), dtype=int)]),
                    "node": np.concatenate([nodes.ravel(), exact]),
                    "weight": np.concatenate(
                        [np.asarray(q.weights, dtype=float).ravel(), np.ones(len(exact))]
                    ),
                }
            )
        )
    columns = ["run", "block", "dim", "num_probes", "lanczos_steps", "num_matvecs"]
    return (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=[*columns, "probe", "node", "weight"])
    )


def quadratures_from_table(table: pd.DataFrame) -> dict[tuple[str, str], Any]:
    """Rebuild ``{(run, block): SpectralQuadrature}`` from :func:`quadratures_table` (e.g. a CSV).

    Args:
        table: The long table, as written (row order within a quadrature kept).

    Returns:
        The quadratures, in the table's order of first appearance.

    Raises:
        KeyError: If columns are missing.
        ValueError: If a quadrature's nodes do not fill ``num_probes`` equal rows.
    """
    from renyilib.lanczos import SpectralQuadrature

    check_columns(
        table,
        ["run", "block", "dim", "num_probes", "lanczos_steps", "probe", "node", "weight"],
        "table",
    )
    out: dict[tuple[str, str], Any] = {}
    for (run, block), g in table.groupby(["run", "block"], sort=False):
        first = g.iloc[0]
        probes = int(first["num_probes"])
        sl = g[g["probe"] >= 0]
        ex = g[g["probe"] < 0]
        if probes and len(sl) % probes:
            raise ValueError(
                f"table: quadrature ({run!r}, {block!r}) has {len(sl)} nodes, "
                f"not a multiple of num_probes={probes}"
            )
        shape = (probes, len(sl) // probes) if probes else (0, 1)
        out[(str(run), str(block))] = SpectralQuadrature(
            nodes=sl["node"].to_numpy(float).reshape(shape),
            weights=sl["weight"].to_numpy(float).reshape(shape),
            dim=int(first["dim"]),
            num_probes=probes,
            lanczos_steps=int(first["lanczos_steps"]),
            num_matvecs=int(first.get("num_matvecs", 0)),
            exact_nodes=ex["node"].to_numpy(float),
            exact_residuals=np.zeros(len(ex)),
        )
    return out


def measure_settings(
    profile: str | dict[str, Any], task: str, config_path: Any = None
) -> dict[str, Any]:
    """The measurement settings of ``task`` in a ``correlation`` profile of ``_config.yml``.

    A profile's ``renyi`` / ``baselines`` apply to every task unless its
    ``task_settings: {<task>: {...}}`` overrides them (e.g. fewer probes and a
    block list for a CIFAR ResNet measured on a CPU).

    Args:
        profile: A profile name of ``experiments: correlation:`` or its settings dict.
        task: Task name.
        config_path: Explicit ``_config.yml`` (default: found upwards).

    Returns:
        ``{"zoo_profile", "renyi", "baselines", "only_converged", ...}`` for ``task``.
    """
    from renyilib.experiments.config import load_profile

    cfg = (
        load_profile("correlation", profile, config_path)
        if isinstance(profile, str)
        else dict(profile)
    )
    over = (cfg.get("task_settings") or {}).get(task, {})
    out = {k: v for k, v in cfg.items() if k != "task_settings"}
    out.update(over)
    out["task"] = task
    return out


def export_measurements(
    res: dict[str, Any], dest: Any, *, meta: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write the tables of :func:`measure_zoo` as CSVs the book can render without the zoo.

    Writes, each atomically, into ``dest``: ``profiles.csv`` (one row per run,
    block and α), ``baselines.csv`` (one row per run), ``cost.csv`` (seconds
    and products per run), ``quadratures.csv`` (every SLQ node and weight,
    :func:`quadratures_table`: densities and spectral types can be redrawn
    from it) and ``measure_config.json`` (``meta`` and the
    exporting code version). Column names are those of :func:`measure_zoo`;
    the machine-specific ``path`` column is dropped.

    Args:
        res: The result of :func:`measure_zoo`.
        dest: Destination folder (created).
        meta: Provenance: the settings, the profile, the command, ...

    Returns:
        The written paths by table name.

    Raises:
        ValueError: If ``res`` holds no measured run.
    """
    from pathlib import Path

    from renyilib.experiments.io import atomic_write, code_version, write_json

    if res["baselines"].empty and res["profiles"].empty:
        raise ValueError("res: no measured run to export")
    dest = Path(dest)
    paths: dict[str, Any] = {}
    tables = {name: res[name] for name in ("profiles", "baselines", "cost")}
    if res.get("quadratures"):
        tables["quadratures"] = quadratures_table(res["quadratures"])
    for name, df in tables.items():
        if df.empty:
            continue
        text = df.drop(columns=["path"], errors="ignore").to_csv(index=False)
        paths[name] = dest / f"{name}.csv"
        atomic_write(paths[name], lambda tmp, text=text: tmp.write_text(text))
    paths["measure_config"] = dest / "measure_config.json"
    write_json(paths["measure_config"], {**(meta or {}), "code_version": code_version()})
    return paths
