"""Run independent jobs (training runs) in worker processes, one torch thread pool each.

Used by :func:`renyilib.experiments.zoo.run_zoo` and :func:`renyilib.experiments.table1.run_table1`.
Workers are *spawned* (not forked: a forked process inherits torch's thread
pools and, on a GPU machine, a CUDA context), each runs one job at a time, and
a job that raises does not stop the others: its exception is returned in its
place. A worker killed by the operating system (e.g. out of memory) shows up as
:class:`concurrent.futures.process.BrokenProcessPool` for the jobs it took down.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import torch
from tqdm.auto import tqdm

__all__ = ["map_processes"]


def _init_worker(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def map_processes(
    fn: Callable[..., Any],
    items: Sequence[Any],
    *,
    jobs: int = 1,
    threads: int | None = 1,
    kwargs: dict[str, Any] | None = None,
    progress: bool = True,
    desc: str = "jobs",
    on_result: Callable[[int, Any], None] | None = None,
) -> list[Any]:
    """``[fn(item, **kwargs) for item in items]`` over ``jobs`` processes; exceptions are returned.

    Args:
        fn: A module-level (picklable) function.
        items: Its first arguments (picklable).
        jobs: Worker processes; ``1`` runs in this process, in order.
        threads: ``torch.set_num_threads`` in each worker (with ``jobs=1``: in
            this process during the call); ``None`` leaves it as is.
        kwargs: Keyword arguments passed to every call.
        progress: A tqdm bar over the items.
        desc: The bar's label.
        on_result: Called as ``on_result(index, result_or_exception)`` as each
            job finishes (e.g. to update counts on the bar).

    Returns:
        One entry per item, in the order of ``items``: ``fn``'s return value,
        or the exception it raised.

    Raises:
        ValueError: If ``jobs`` is not a positive int.

    Example:
        >>> map_processes(abs, [-1, 2], jobs=1, progress=False)
        [1, 2]
    """
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"jobs must be a positive int, got {jobs!r}")
    kwargs = kwargs or {}
    results: list[Any] = [None] * len(items)
    bar = tqdm(total=len(items), desc=desc, disable=not progress)

    def done(i: int, result: Any) -> None:
        results[i] = result
        if on_result is not None:
            on_result(i, result)
        bar.update()

    try:
        if jobs == 1 or len(items) <= 1:
            old = torch.get_num_threads()
            if threads:
                torch.set_num_threads(threads)
            try:
                for i, item in enumerate(items):
                    try:
                        result = fn(item, **kwargs)
                    except Exception as exc:  # returned to the caller
                        result = exc
                    done(i, result)
            finally:
                torch.set_num_threads(old)
        else:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(
                max_workers=jobs, mp_context=ctx, initializer=_init_worker, initargs=(threads,)
            ) as pool:
                futures = {pool.submit(fn, item, **kwargs): i for i, item in enumerate(items)}
                for future in as_completed(futures):
                    try:
                        result = future.result()
                    except Exception as exc:  # incl. BrokenProcessPool
                        result = exc
                    done(futures[future], result)
    finally:
        bar.close()
    return results
