"""Tests of renyilib.experiments.parallel.map_processes."""

from __future__ import annotations

import math
from concurrent.futures.process import BrokenProcessPool

import pytest
import torch

from renyilib.experiments.parallel import map_processes


@pytest.mark.parametrize("jobs", [1, 2])
def test_results_in_order_and_exceptions_returned(jobs):
    seen = []
    out = map_processes(
        math.sqrt,
        [4.0, -1.0, 9.0],
        jobs=jobs,
        progress=False,
        on_result=lambda i, r: seen.append(i),
    )
    assert out[0] == 2.0 and out[2] == 3.0
    assert isinstance(out[1], ValueError) and "math domain error" in str(out[1])
    assert sorted(seen) == [0, 1, 2]


def test_threads_restored_and_kwargs_passed():
    before = torch.get_num_threads()
    out = map_processes(int, ["11", "7"], jobs=1, threads=1, kwargs={"base": 8}, progress=False)
    assert out == [9, 7] and torch.get_num_threads() == before


@pytest.mark.parametrize("jobs", [0, -1, 1.5, True])
def test_bad_jobs(jobs):
    with pytest.raises(ValueError, match="jobs must be a positive int"):
        map_processes(abs, [1], jobs=jobs)


def test_broken_process_pool_is_a_returned_exception():
    import os

    # a worker that dies (here: exits) fails its jobs without taking the caller down
    out = map_processes(os._exit, [3, 3], jobs=2, progress=False)
    assert all(isinstance(r, BrokenProcessPool) for r in out)
