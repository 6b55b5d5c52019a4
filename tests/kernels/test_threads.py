"""kernels/cpu/threads.py: how a convolution's pieces are shared out."""
import threading

import numba
import pytest

from kernels.cpu import threads


@pytest.mark.parametrize("n, parts", [(0, 2), (1, 3), (5, 2), (7, 3), (8, 8), (3, 10)])
def test_split_keeps_order_and_evens_out(n, parts):
    items = list(range(n))
    runs = threads.split(items, parts)
    assert [i for run in runs for i in run] == items
    assert len(runs) == max(1, min(parts, n))
    sizes = [len(run) for run in runs]
    assert max(sizes) - min(sizes) <= 1


def test_groups_run_on_separate_threads_in_order():
    if threads._blas_controller() is None:
        pytest.skip("threadpoolctl is not installed: groups run one after another")
    barrier = threading.Barrier(3, timeout=10)   # fails unless all three groups run at once

    def work(group):
        barrier.wait()
        return group, threading.current_thread().name

    results = threads.run_in_parallel(work, [[0], [1], [2]])
    assert [group for group, _ in results] == [[0], [1], [2]]
    assert len({name for _, name in results}) == 3


def test_one_thread_where_blas_would_spin(monkeypatch):
    monkeypatch.setattr(numba, "get_num_threads", lambda: 2)
    monkeypatch.setattr(threads, "_cores", lambda: 4)
    monkeypatch.setattr(threads, "_blas_spins", lambda: True)
    assert threads.thread_count() == 1
    monkeypatch.setattr(threads, "_blas_spins", lambda: False)
    assert threads.thread_count() == 2
