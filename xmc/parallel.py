"""Thread-level parallelism shared by the solvers, the indexer and the beam search.

The work they hand out (the C dual CD of xmc._dcd, scipy's sparse products, numpy's sorts) releases the
GIL, so plain threads use all cores without copying the inputs into worker processes.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["check_n_jobs", "n_workers", "thread_map"]


def check_n_jobs(n_jobs) -> int:
    """``n_jobs`` validated: a non-zero integer, -1 (any negative) meaning one per CPU."""
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0:
        raise ValueError(f"n_jobs: expected a non-zero integer (-1 = all CPUs), got {n_jobs!r}")
    return int(n_jobs)


def n_workers(n_jobs: int, n_tasks: int) -> int:
    """Threads worth starting for ``n_tasks`` tasks: ``n_jobs`` (negative: one per CPU), at most
    one per task, at least 1."""
    return max(1, min((os.cpu_count() or 1) if n_jobs < 0 else n_jobs, n_tasks))


def thread_map(fn, items, n_jobs: int) -> list:
    """``[fn(x) for x in items]`` computed by up to ``n_jobs`` threads, in the items' order (inline
    when one thread is enough). An error cancels the items not yet started and is raised."""
    items = list(items)
    workers = n_workers(n_jobs, len(items))
    if workers == 1:
        return [fn(x) for x in items]
    pool = ThreadPoolExecutor(workers)
    try:
        return list(pool.map(fn, items))
    finally:
        pool.shutdown(cancel_futures=True)
