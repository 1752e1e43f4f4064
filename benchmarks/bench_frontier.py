"""Time-to-accuracy frontier of the per-layer + global Rényi profile: renyilib vs. PyHessian and curvlinops.

Question (issues 2 and 16): how much time does each route need so that the
relative error of H_α at α ∈ {0.5, 1.5, 2} is ≤ 2 % on every block of the
reference workload (benchmarks/workload.py, exact spectra from the dense
float64 Hessian)? Target: renyilib ≥ 3× less time than PyHessian.

Sweep, for every block (routes chosen with ``--routes``):

* PyHessian 0.1 (``pyhessian_route``): ``density(iter=m, n_v=l)`` for
  m ∈ ``--steps``; H_α from its nodes and weights with the n/l trace factor.
* curvlinops 3.0.1 (``curvlinops_route``): ``HessianLinearOperator`` of the
  block and ``lanczos_approximate_spectrum(H, ncv=m, num_repeats=l)`` with its
  documented defaults (κ = 3, 1024 grid points, margin 0.05) and the exact
  (λ_min, λ_max) as its ``boundaries``, free (its ``eigsh`` estimate cannot
  converge on a block with a null space; ``--curvlinops-boundaries eigsh``
  uses it); H_α by integrating its smoothed density on its grid ("curvlinops").
  The variant "curvlinops-ritz" scores the same Lanczos runs by their Ritz
  values and Gauss weights (no kernel, no boundaries; its time leaves out the
  ``eigsh`` boundaries and the density, which it does not need).
* renyilib: ``slq(op, l, m, deflate=d)`` for m ∈ ``--steps``, d ∈ ``--deflate``,
  with the Hessian-product method (``"graph"`` or ``"jvp"``) that is faster for
  this block in a quick in-process timing, and probes advanced ``--batch`` at a
  time; plus ``spectrum="exact"`` of ``renyi_sharpness`` (dense Hessian from n
  products, ``eigvalsh``) for blocks up to ``--exact-max-dim``.

Each (route, m, d) runs twice for real: with ``--batch`` probes and with
``--probes`` probes; the time for l probes in between is the straight line
through those two measurements (both routes' costs are linear in l). Errors for
l probes are the root mean square, over disjoint groups of l probes of the big
run (plus the small run as one more group), of the largest relative error over
the three α. The best configuration of each block and route (least time with
error ≤ ``--target``) is then run again with a fresh seed and timed for real
("confirm" rows); the confirmed times are the headline numbers.

Times are on the benchmark clock (process CPU time by default, one torch
thread; see ``workload.set_clock``). Writes ``benchmarks/results/frontier.csv``
and ``frontier.meta.json`` (machine, workload config, code version, sweep).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from curvlinops_route import density_run, entropy_from_grid
from pyhessian_route import BlockHessian, entropy_from_density
from workload import (
    CLOCK,
    FRONTIER_ALPHAS,
    ROOT,
    Workload,
    clock,
    compare,
    exact_entropy,
    load_workload,
    machine_info,
    set_clock,
)

from renyilib.experiments.io import atomic_write, write_json
from renyilib.hessian import hessian_operator
from renyilib.lanczos import SpectralQuadrature, slq
from renyilib.renyi import renyi_sharpness

RESULTS = ROOT / "benchmarks" / "results"

#: Every route of the sweep, in the order of the table and the summary.
ROUTES = ("renyilib", "pyhessian", "curvlinops", "curvlinops-ritz")
#: The routes scored from one curvlinops run (its density, and its Ritz pairs).
CURVLINOPS_ROUTES = ("curvlinops", "curvlinops-ritz")
#: Whether curvlinops gets the exact (λ_min, λ_max) as ``boundaries`` (``--curvlinops-boundaries``).
CURVLINOPS_BOUNDARIES = {"exact": True}


def _exact(w: Workload, block: str) -> np.ndarray:
    return np.array([exact_entropy(w.eigenvalues[block], a) for a in FRONTIER_ALPHAS])


def _rel_err(est: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return np.abs(np.asarray(est) - ref) / np.abs(ref)


def _group_error(entropies: list[np.ndarray], ref: np.ndarray) -> tuple[float, np.ndarray]:
    """RMS over groups of (max over α of the relative error), and the RMS per α."""
    errs = np.stack([_rel_err(e, ref) for e in entropies])  # (groups, alphas)
    return float(np.sqrt((errs.max(1) ** 2).mean())), np.sqrt((errs**2).mean(0))


def _subset(q: SpectralQuadrature, rows: np.ndarray) -> SpectralQuadrature:
    return SpectralQuadrature(
        nodes=q.nodes[rows],
        weights=q.weights[rows],
        dim=q.dim,
        num_probes=len(rows),
        lanczos_steps=q.lanczos_steps,
        exact_nodes=q.exact_nodes,
        exact_residuals=q.exact_residuals,
    )


def faster_method(w: Workload, block: str, batch: int) -> tuple[str, dict[str, float]]:
    """The faster of renyilib's ``"graph"`` / ``"jvp"`` products for (n, batch) inputs."""
    names = w.blocks[block]
    ops = {
        m: hessian_operator(w.model, w.loss_fn, (w.x, w.y), names, backend=m)
        for m in ("graph", "jvp")
    }
    n = ops["graph"].shape[0]
    V = torch.randn(n, batch, generator=torch.Generator().manual_seed(0))
    best = compare({m: (lambda op=op: op @ V) for m, op in ops.items()}, repeats=3, warmup=1)
    return min(best, key=best.get), best


def _renyilib_run(w, block, method, probes, steps, deflate, batch, seed):
    t0 = clock()
    op = hessian_operator(w.model, w.loss_fn, (w.x, w.y), w.blocks[block], backend=method)
    q = slq(op, probes, steps, seed, deflate=deflate, probe_batch=batch)
    ent = q.renyi_entropy(np.array(FRONTIER_ALPHAS)).value
    return clock() - t0, q, ent, op.num_matvecs


def _pyhessian_run(w, block, probes, steps, seed):
    t0 = clock()
    with BlockHessian(w.model, w.loss_fn, w.x, w.y, w.blocks[block]) as bh:
        nodes, weights = bh.density(probes, steps, seed)
    ent = entropy_from_density(nodes, weights, w.dims[block], FRONTIER_ALPHAS)
    return clock() - t0, nodes, weights, ent


def _curvlinops_run(w, block, probes, steps, seed):
    """One curvlinops run; per variant its time (benchmark clock), H_α, and the run itself.

    "curvlinops": operator + boundaries + Lanczos + density + the integral on
    the grid; "curvlinops-ritz": operator + Lanczos + the Ritz quadrature (what
    that variant needs). The boundaries are the exact (λ_min, λ_max), free, by
    default (``eigsh`` cannot converge on a block with a null space; see
    ``curvlinops_route``), else curvlinops' ``eigsh`` estimate.
    """
    ev = w.eigenvalues[block]
    bounds = (float(ev.min()), float(ev.max())) if CURVLINOPS_BOUNDARIES["exact"] else None
    r = density_run(
        w.model, w.loss_fn, w.x, w.y, w.blocks[block], steps, probes, seed, clock, boundaries=bounds
    )
    n = w.dims[block]
    t0 = clock()
    ent_d = entropy_from_grid(r.grid, r.density(), n, FRONTIER_ALPHAS)
    t1 = clock()
    ent_r = entropy_from_density(r.nodes, r.weights, n, FRONTIER_ALPHAS)
    t2 = clock()
    p = r.seconds
    times = {
        "curvlinops": p["operator"] + p["boundaries"] + p["lanczos"] + p["density"] + t1 - t0,
        "curvlinops-ritz": p["operator"] + p["lanczos"] + t2 - t1,
    }
    return times, {"curvlinops": ent_d, "curvlinops-ritz": ent_r}, r


def _curvlinops_group_entropy(route: str, r, rows: slice, n: int) -> np.ndarray:
    if route == "curvlinops":
        return entropy_from_grid(r.grid, r.density(rows), n, FRONTIER_ALPHAS)
    return entropy_from_density(r.nodes[rows], r.weights[rows], n, FRONTIER_ALPHAS)


def sweep_block(w: Workload, block: str, args, log=print) -> list[dict]:
    """All sweep rows of one block (see the module docstring)."""
    n = w.dims[block]
    ref = _exact(w, block)
    rows: list[dict] = []
    small, big = args.batch, args.probes
    ls = [int(x) for x in sorted({small, *[lp for lp in (2 * small, 4 * small) if lp < big], big})]
    method, per = faster_method(w, block, small)
    log(
        f"  {block} (n={n}): products {({k: f'{1e3 * v / small:.2f} ms' for k, v in per.items()})} -> {method}"
    )

    def add(route, m, d, t_small, t_big, e_small, e_big, groups, extra):
        for lp in ls:
            if lp == big:
                sel = [e_big]
            else:
                sel = [g for g, size in groups if size == lp] + ([e_small] if lp == small else [])
            err, per_alpha = _group_error(sel, ref)
            t = t_small + (t_big - t_small) * (lp - small) / (big - small)
            rows.append(
                {
                    "route": route,
                    "block": block,
                    "dim": n,
                    "steps": m,
                    "deflate": d,
                    "probes": lp,
                    "seconds": t,
                    "time_source": "measured" if lp in (small, big) else "interpolated",
                    "error": err,
                    **{f"error_{a:g}": e for a, e in zip(FRONTIER_ALPHAS, per_alpha)},
                    "groups": len(sel),
                    **extra,
                }
            )

    routes = set(args.routes)
    done: set[int] = set()
    for m in args.steps:
        m_eff = min(m, n)
        if m_eff in done:
            continue  # m capped at n: already swept
        done.add(m_eff)
        if "pyhessian" in routes:
            t_s, _, _, e_s = _pyhessian_run(w, block, small, m_eff, args.seed + 1)
            t_b, nodes, weights, e_b = _pyhessian_run(w, block, big, m_eff, args.seed)
            groups = []
            for lp in ls[:-1]:
                for g0 in range(0, big - lp + 1, lp):
                    sl = slice(g0, g0 + lp)
                    groups.append(
                        (entropy_from_density(nodes[sl], weights[sl], n, FRONTIER_ALPHAS), lp)
                    )
            add("pyhessian", m_eff, 0, t_s, t_b, e_s, e_b, groups, {})
            log(
                f"    pyhessian m={m_eff}: {t_b:.1f} s for {big} probes, max rel err {_rel_err(e_b, ref).max():.4f}"
            )
        cl_routes = [r for r in CURVLINOPS_ROUTES if r in routes]
        if cl_routes:
            ts, es, _ = _curvlinops_run(w, block, small, m_eff, args.seed + 1)
            tb, eb, run = _curvlinops_run(w, block, big, m_eff, args.seed)
            for route in cl_routes:
                groups = [
                    (_curvlinops_group_entropy(route, run, slice(g0, g0 + lp), n), lp)
                    for lp in ls[:-1]
                    for g0 in range(0, big - lp + 1, lp)
                ]
                add(route, m_eff, 0, ts[route], tb[route], es[route], eb[route], groups, {})
                log(
                    f"    {route} m={m_eff}: {tb[route]:.1f} s for {big} probes "
                    f"(boundaries {run.seconds['boundaries']:.1f} s), "
                    f"max rel err {_rel_err(eb[route], ref).max():.4f}"
                )
        if "renyilib" not in routes:
            continue
        # renyilib route.
        for d in args.deflate:
            if d >= n // 2:
                continue
            t_s, _, e_s, _ = _renyilib_run(w, block, method, small, m_eff, d, small, args.seed + 1)
            t_b, q, e_b, nmv = _renyilib_run(w, block, method, big, m_eff, d, small, args.seed)
            groups = []
            for lp in ls[:-1]:
                for g0 in range(0, big - lp + 1, lp):
                    sub = _subset(q, np.arange(g0, g0 + lp))
                    groups.append((sub.renyi_entropy(np.array(FRONTIER_ALPHAS)).value, lp))
            add("renyilib", m_eff, d, t_s, t_b, e_s, e_b, groups, {"hessian_method": method})
            log(
                f"    renyilib m={m_eff} d={d} ({method}): {t_b:.1f} s for {big} probes "
                f"({nmv} products), max rel err {_rel_err(e_b, ref).max():.4f}"
            )
    if "renyilib" in routes and n <= args.exact_max_dim:
        t0 = clock()
        df = renyi_sharpness(
            w.model, w.loss_fn, (w.x, w.y), FRONTIER_ALPHAS, blocks=[block], spectrum="exact",
            progress=False, backend=method,
        )  # fmt: skip
        t = clock() - t0
        err = _rel_err(df["entropy"].to_numpy(), ref)
        rows.append(
            {
                "route": "renyilib", "block": block, "dim": n, "steps": n, "deflate": 0, "probes": 0,
                "seconds": t, "time_source": "measured", "error": float(err.max()),
                **{f"error_{a:g}": e for a, e in zip(FRONTIER_ALPHAS, err)},
                "groups": 1, "hessian_method": method, "exact": True,
            }
        )  # fmt: skip
        log(f"    renyilib exact: {t:.1f} s, max rel err {err.max():.2e}")
    return rows


def _fix_groups(rows: list[dict]) -> list[dict]:
    for r in rows:
        r.setdefault("exact", False)
        r.setdefault(
            "hessian_method", "curvlinops" if r["route"] in CURVLINOPS_ROUTES else "pyhessian"
        )
    return rows


def best_configs(df: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per route and block, the least-time configuration with error ≤ ``target`` (NaN if none)."""
    out = []
    for _, g in df.groupby(["route", "block"], sort=False):
        ok = g[g["error"] <= target]
        if len(ok):
            out.append(ok.loc[ok["seconds"].idxmin()])
        else:
            best = g.loc[g["error"].idxmin()].copy()
            best["seconds"] = np.nan
            out.append(best)
    return pd.DataFrame(out).reset_index(drop=True)


def confirm(w: Workload, best: pd.DataFrame, args, log=print) -> list[dict]:
    """Re-run every best configuration with a fresh seed; real time and error."""
    rows = []
    for _, r in best.iterrows():
        if not np.isfinite(r["seconds"]):
            continue
        block, ref = r["block"], _exact(w, r["block"])
        seed = args.seed + 1000
        if r["route"] == "pyhessian":
            t, _, _, ent = _pyhessian_run(w, block, int(r["probes"]), int(r["steps"]), seed)
        elif r["route"] in CURVLINOPS_ROUTES:
            ts, es, _ = _curvlinops_run(w, block, int(r["probes"]), int(r["steps"]), seed)
            t, ent = ts[r["route"]], es[r["route"]]
        elif r["exact"]:
            t0 = clock()
            df = renyi_sharpness(
                w.model, w.loss_fn, (w.x, w.y), FRONTIER_ALPHAS, blocks=[block], spectrum="exact",
                progress=False, backend=r["hessian_method"],
            )  # fmt: skip
            t, ent = clock() - t0, df["entropy"].to_numpy()
        else:
            t, _, ent, _ = _renyilib_run(
                w, block, r["hessian_method"], int(r["probes"]), int(r["steps"]),
                int(r["deflate"]), args.batch, seed,
            )  # fmt: skip
        err = _rel_err(ent, ref)
        rows.append(
            {
                **{k: r[k] for k in ("route", "block", "dim", "steps", "deflate", "probes", "hessian_method", "exact")},
                "seconds": t, "time_source": "confirm", "error": float(err.max()),
                **{f"error_{a:g}": e for a, e in zip(FRONTIER_ALPHAS, err)}, "groups": 1,
            }
        )  # fmt: skip
        log(f"  confirm {r['route']:15s} {block:18s}: {t:6.2f} s, max rel err {err.max():.4f}")
    return rows


def _speedup(sweep: pd.DataFrame, out: dict, peer: str) -> dict:
    """``{"speedup", "speedup_kind"}``: confirmed time of ``peer`` / renyilib's (see :func:`summarize`)."""
    r, p, blocks = out["renyilib"], out[peer], out["blocks"]
    if r["all_blocks"] and p["all_blocks"]:
        return {
            "speedup": p["confirmed_seconds"] / r["confirmed_seconds"],
            "speedup_kind": "measured",
        }
    if r["all_blocks"]:
        # The peer never reached the target on some block: its time is at least
        # the largest configuration tried there.
        missing = sorted(set(blocks) - set(p["blocks_reached"]))
        lower = p["confirmed_seconds"] + sum(
            sweep[(sweep["route"] == peer) & (sweep["block"] == b)]["seconds"].max()
            for b in missing
        )
        return {
            "speedup": lower / r["confirmed_seconds"],
            "speedup_kind": f"lower bound ({peer} did not reach the target on "
            + ", ".join(missing)
            + ")",
        }
    return {
        "speedup": float("nan"),
        "speedup_kind": "renyilib did not reach the target on every block",
    }


def summarize(df: pd.DataFrame, target: float) -> dict:
    """Per route: confirmed time (sum over blocks); per peer: its time / renyilib's.

    ``summary[route]`` for every route in ``df``; ``summary["speedups"][peer]``
    = ``{"speedup", "speedup_kind"}`` for every route but renyilib; for a block
    the peer never reached, its time counts as the largest configuration it
    tried there (``speedup_kind`` says "lower bound"). ``summary["speedup"]``
    and ``["speedup_kind"]`` repeat PyHessian's (the original target, ≥ 3×).
    """
    conf = df[df["time_source"] == "confirm"]
    sweep = df[df["time_source"] != "confirm"]
    best = best_configs(sweep, target)
    blocks = list(dict.fromkeys(df["block"]))
    present = list(dict.fromkeys(df["route"]))
    routes = [r for r in ROUTES if r in present] + [r for r in present if r not in ROUTES]
    out: dict = {"target": target, "blocks": blocks, "routes": routes}
    for route in routes:
        b = best[best["route"] == route]
        reached = b[np.isfinite(b["seconds"])]
        c = conf[conf["route"] == route]
        out[route] = {
            "blocks_reached": sorted(reached["block"]),
            "sweep_seconds": float(reached["seconds"].sum()),
            "confirmed_seconds": float(c["seconds"].sum()),
            "confirmed_max_error": float(c["error"].max()) if len(c) else float("nan"),
            "max_swept_seconds": float(sweep[sweep["route"] == route]["seconds"].max()),
            "all_blocks": len(reached) == len(blocks),
        }
    if "renyilib" in out:
        out["speedups"] = {p: _speedup(sweep, out, p) for p in routes if p != "renyilib"}
        if "pyhessian" in out["speedups"]:
            out.update(out["speedups"]["pyhessian"])
    return out


def run(args) -> tuple[pd.DataFrame, dict]:
    w = load_workload()
    blocks = list(w.blocks) if not args.blocks else args.blocks
    rows: list[dict] = []
    for b in blocks:
        rows += sweep_block(w, b, args)
    sweep = pd.DataFrame(_fix_groups(rows))
    best = best_configs(sweep, args.target)
    print("== confirming the best configuration per block and route (fresh seed)", flush=True)
    conf = confirm(w, best, args)
    df = pd.concat([sweep, pd.DataFrame(_fix_groups(conf))], ignore_index=True)
    summary = summarize(df, args.target)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "frontier.csv", lambda tmp: df.to_csv(tmp, index=False, float_format="%.5g"))
    meta = {
        **machine_info(),
        "workload": w.config,
        "workload_key": w.key,
        "alphas": list(FRONTIER_ALPHAS),
        "sweep": {k: v for k, v in vars(args).items() if k != "out"},
        "peers": peer_versions(args.routes),
        "summary": summary,
        "date_utc": pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d %H:%M"),
    }
    write_json(out / "frontier.meta.json", meta)
    return df, summary


def peer_versions(routes) -> dict[str, str]:
    """Installed versions of the peers among ``routes`` (``importlib.metadata``)."""
    from importlib.metadata import PackageNotFoundError, version

    dists = {"pyhessian": "pyhessian", "curvlinops": "curvlinops-for-pytorch"}
    out = {}
    for route, dist in dists.items():
        if any(r.startswith(route) for r in routes):
            try:
                out[dist] = version(dist)
            except PackageNotFoundError:
                out[dist] = "not installed"
    return out


def report(summary: dict) -> str:
    """The summary as text: per route its confirmed time, per peer the ratio to renyilib."""
    lines = [
        f"time to ≤ {100 * summary['target']:.0f}% relative error of H_α, α ∈ {list(FRONTIER_ALPHAS)}, every block:"
    ]
    for route in summary["routes"]:
        s = summary[route]
        lines.append(
            f"  {route:15s}: {s['confirmed_seconds']:7.2f} s confirmed ({s['sweep_seconds']:.2f} s in the sweep), "
            f"blocks reached {len(s['blocks_reached'])}/{len(summary['blocks'])}, "
            f"largest confirmed error {s['confirmed_max_error']:.4f}"
        )
    for peer, sp in summary.get("speedups", {}).items():
        goal = "; target ≥ 3x" if peer == "pyhessian" else ""
        lines.append(
            f"  speed-up {peer} / renyilib: {sp['speedup']:.1f}x ({sp['speedup_kind']}){goal}"
        )
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, nargs="+", default=[15, 40, 80])
    p.add_argument("--deflate", type=int, nargs="+", default=[0, 10])
    p.add_argument("--probes", type=int, default=32, help="probes of the big run")
    p.add_argument(
        "--batch", type=int, default=8, help="probes of the small run and renyilib's probe_batch"
    )
    p.add_argument("--exact-max-dim", type=int, default=2500)
    p.add_argument("--target", type=float, default=0.02)
    p.add_argument("--blocks", nargs="*", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    p.add_argument(
        "--routes", nargs="+", choices=ROUTES, default=list(ROUTES), help="routes to sweep"
    )
    p.add_argument("--out", default=str(RESULTS), help="folder of frontier.csv / .meta.json")
    p.add_argument(
        "--curvlinops-boundaries",
        choices=["exact", "eigsh"],
        default="exact",
        help="curvlinops' spectral boundaries: the exact ones (free) or its eigsh estimate",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    set_clock(args.clock)
    CURVLINOPS_BOUNDARIES["exact"] = args.curvlinops_boundaries == "exact"
    print(f"== time-to-accuracy frontier ({CLOCK['name']} clock)", flush=True)
    _, summary = run(args)
    print(report(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
