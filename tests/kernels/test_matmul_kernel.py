"""kernels/cpu/matmul.py: a product shared out among the threads gives
NumPy's product, whichever way it is cut."""
import numpy
import pytest

from minicnn.kernels.cpu import matmul as cpu_matmul


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("a_shape, b_shape", [
    ((96, 64), (64, 40)),          # more rows than columns: blocks of rows
    ((5, 64), (64, 300)),          # a small batch, many outputs: blocks of columns
    ((4, 6, 64), (64, 50)),        # batch dims flattened into rows
    ((7, 33), (33, 7)),            # as many rows as threads, about
])
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_shared_out_products_match_numpy(monkeypatch, threads, a_shape, b_shape, dtype):
    monkeypatch.setattr(cpu_matmul, "thread_count", lambda: threads)
    monkeypatch.setattr(cpu_matmul, "PARALLEL_MACS", 0)
    calls = []
    real_run = cpu_matmul.run_in_parallel
    monkeypatch.setattr(cpu_matmul, "run_in_parallel", lambda work, groups: calls.append(len(groups))
                        or real_run(work, groups))
    rng = numpy.random.default_rng(0)
    a, b = rng.standard_normal(a_shape).astype(dtype), rng.standard_normal(b_shape).astype(dtype)
    for left, right in ((a, b), (a[..., ::-1], numpy.asfortranarray(b))):      # strided operands too
        mine = cpu_matmul.matmul(left, right)
        assert mine.shape == numpy.matmul(left, right).shape and mine.dtype == dtype
        tol = 1e-5 if dtype == numpy.float32 else 1e-13
        numpy.testing.assert_allclose(mine, numpy.matmul(left, right), rtol=tol, atol=tol)
    assert calls and min(calls) > 1                      # the work really was shared out


def test_small_or_batched_products_are_one_numpy_call(monkeypatch):
    monkeypatch.setattr(cpu_matmul, "thread_count", lambda: 2)
    monkeypatch.setattr(cpu_matmul, "run_in_parallel", lambda *args: pytest.fail("split a small product"))
    rng = numpy.random.default_rng(1)
    a, b = rng.standard_normal((4, 8)), rng.standard_normal((8, 3))
    numpy.testing.assert_array_equal(cpu_matmul.matmul(a, b), a @ b)
    batched = rng.standard_normal((2, 8, 3))
    numpy.testing.assert_array_equal(cpu_matmul.matmul(a, batched), a @ batched)
