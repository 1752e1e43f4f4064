"""Run every benchmark (``make bench``): Hessian-vector products, the whole profile, the frontier, optimizer steps.

Each benchmark prints ratios against a baseline measured in the same process
(one plain gradient; the profile's own products; the PyHessian route) and
writes its table to ``benchmarks/results/``. The reference workload's trained
weights and exact spectra are computed once and cached under
``data/cache/bench/``. See ``benchmarks/README.md``.

Options are passed to every benchmark: ``--threads`` (torch threads, default 1)
and ``--clock`` (``cpu``: process CPU time, the default; ``wall``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_frontier
import bench_hvp
import bench_profile
from workload import load_workload, set_clock

try:  # the optimizer-step benchmark (another module's; optional)
    import bench_optim
except ImportError:  # pragma: no cover
    bench_optim = None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    p.add_argument(
        "--only",
        nargs="*",
        choices=["hvp", "profile", "frontier", "optim"],
        default=["hvp", "profile", "frontier", "optim"],
    )
    args = p.parse_args(argv)
    common = ["--threads", str(args.threads), "--clock", args.clock]
    set_clock(args.clock)
    start = time.perf_counter()
    load_workload()  # train + exact spectra once (cached)
    benches = {
        "hvp": lambda: bench_hvp.main(common),
        "profile": lambda: bench_profile.main(common),
        "frontier": lambda: bench_frontier.main(common),
    }
    if bench_optim is not None:
        benches["optim"] = lambda: bench_optim.main(["--threads", str(args.threads)])
    for name in args.only:
        if name not in benches:
            print(f"   ({name}: not available, skipped)")
            continue
        t0 = time.perf_counter()
        benches[name]()
        print(f"   ({name}: {time.perf_counter() - t0:.0f} s wall)\n", flush=True)
    print(
        f"all benchmarks: {time.perf_counter() - start:.0f} s wall; results in benchmarks/results/"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
