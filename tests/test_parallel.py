import os
import threading

import pytest

from xmc.parallel import check_n_jobs, n_workers, thread_map


def test_thread_map_keeps_order_and_uses_threads():
    seen = set()

    def work(x):
        seen.add(threading.get_ident())
        return x * x

    assert thread_map(work, range(50), 1) == [x * x for x in range(50)]
    assert seen == {threading.get_ident()}  # one worker: inline, no pool
    seen.clear()
    assert thread_map(work, iter(range(50)), 3) == [x * x for x in range(50)]
    assert threading.get_ident() not in seen
    assert thread_map(work, [], 4) == []


def test_thread_map_raises_the_workers_error():
    def work(x):
        if x == 7:
            raise RuntimeError("item 7 failed")
        return x

    with pytest.raises(RuntimeError, match="item 7"):
        thread_map(work, range(20), 2)


def test_n_jobs_checks_and_worker_counts():
    assert check_n_jobs(2) == 2 and check_n_jobs(-1) == -1
    for bad in (0, True, 1.5, "2"):
        with pytest.raises(ValueError, match="n_jobs"):
            check_n_jobs(bad)
    assert n_workers(4, 2) == 2 and n_workers(2, 0) == 1 and n_workers(1, 10) == 1
    assert n_workers(-1, 10**6) == (os.cpu_count() or 1) and n_workers(-1, 1) == 1  # negative: one per CPU
