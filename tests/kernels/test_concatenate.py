"""The threaded concatenation (``kernels/cpu/concatenate.py``): the same
array as ``numpy.concatenate``, element for element, on every axis, with
as many leading rows as the threads or fewer (each input's block then
split among them), on 1 to 3 threads; what it leaves to NumPy (mixed
dtypes, non-contiguous inputs) too; and ``mc.cat`` through it."""
import numpy
import pytest
from hypothesis import given, settings, strategies as st

import minicnn as mc
from minicnn.kernels import registry

pytest.importorskip("numba")
from minicnn.kernels.cpu import concatenate as threaded, threads as threads_module  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.lists(st.integers(0, 5), min_size=1, max_size=4), st.integers(1, 4),
       st.integers(1, 6), st.integers(0, 2), st.sampled_from([1, 2, 3]),
       st.sampled_from([numpy.float32, numpy.float64, numpy.int64]), st.integers(0, 2**31 - 1))
def test_it_is_numpys_concatenation(N, sizes, H, W, axis, threads, dtype, seed):
    rng = numpy.random.default_rng(seed)
    shapes = []
    for size in sizes:                                  # the inputs differ along ``axis`` only
        shape = [N, 3, H * W]
        shape[axis] = size
        shapes.append(shape)
    arrays = [(rng.standard_normal(shape) * 100).astype(dtype) for shape in shapes]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(threaded, "thread_count", lambda: threads)
        patch.setattr(threaded, "MIN_SIZE", 0)
        got = threaded.concatenate(arrays, axis)
    expected = numpy.concatenate(arrays, axis=axis)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    numpy.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("threads", [2, 3])
def test_what_it_leaves_to_numpy_is_numpys_too(threads, monkeypatch):
    monkeypatch.setattr(threaded, "thread_count", lambda: threads)
    monkeypatch.setattr(threaded, "MIN_SIZE", 0)
    rng = numpy.random.default_rng(0)
    mixed = [rng.standard_normal((2, 3, 4)).astype(numpy.float32), rng.standard_normal((2, 5, 4))]
    strided = [rng.standard_normal((2, 4, 6))[:, :, ::2], rng.standard_normal((2, 1, 3))]
    for arrays in (mixed, strided):
        got = threaded.concatenate(arrays, 1)
        expected = numpy.concatenate(arrays, axis=1)
        assert got.dtype == expected.dtype
        numpy.testing.assert_array_equal(got, expected)


def test_cat_runs_through_it_forward_and_backward(monkeypatch):
    """mc.cat runs through the threaded copies (with the Numba backend in
    force), gives NumPy's result, and its gradient splits the upstream
    gradient back (torch.cat's)."""
    calls = []
    # the backend in force: Numba's version, unless MINICNN_BACKEND=numpy
    numba_in_force = registry.find("concatenate", numpy) is not registry.implementations("concatenate")["numpy"]
    monkeypatch.setitem(registry._implementations["concatenate"], "numba",
                        lambda arrays, axis: calls.append(axis) or threaded.concatenate(arrays, axis))
    monkeypatch.setattr(threads_module, "thread_count", lambda: 2)
    monkeypatch.setattr(threaded, "thread_count", lambda: 2)
    rng = numpy.random.default_rng(1)
    xs = [rng.standard_normal((2, c, 9, 9)).astype(numpy.float32) for c in (3, 5)]
    monkeypatch.setattr(threaded, "MIN_SIZE", 0)
    a, b = (mc.tensor(x, requires_grad=True) for x in xs)
    y = mc.cat([a, b], dim=1)
    numpy.testing.assert_array_equal(y.detach().numpy(), numpy.concatenate(xs, axis=1))
    gy = rng.standard_normal(y.shape).astype(numpy.float32)
    y.backward(mc.tensor(gy))
    numpy.testing.assert_array_equal(a.grad.numpy(), gy[:, :3])
    numpy.testing.assert_array_equal(b.grad.numpy(), gy[:, 3:])
    assert calls == ([1] if numba_in_force else [])
