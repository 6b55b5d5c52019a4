"""kernels/cpu/threads.py: how a kernel's pieces are shared out among
threads, and the pool that runs them."""
import threading

import numba
import numpy
import pytest

from minicnn.kernels import registry
from minicnn.kernels.cpu import conv as cpu_conv, threads, winograd
from minicnn.functional import conv, normalization, pooling  # noqa: F401  (registers the primitives)
from minicnn.functional.pooling import _windows


@pytest.mark.parametrize("n, parts", [(0, 2), (1, 3), (5, 2), (7, 3), (8, 8), (3, 10)])
def test_split_keeps_order_and_evens_out(n, parts):
    items = list(range(n))
    runs = threads.split(items, parts)
    assert [i for run in runs for i in run] == items
    assert len(runs) == max(1, min(parts, n))
    sizes = [len(run) for run in runs]
    assert max(sizes) - min(sizes) <= 1


def test_groups_run_on_separate_threads_in_order():
    barrier = threading.Barrier(3, timeout=10)   # fails unless all three groups run at once

    def work(group):
        barrier.wait()
        return group, threading.current_thread().name

    for _ in range(3):                           # the pool's threads come back for more work
        results = threads.run_in_parallel(work, [[0], [1], [2]])
        assert [group for group, _ in results] == [[0], [1], [2]]
        names = [name for _, name in results]
        assert names[0] == threading.current_thread().name   # the first group runs on the caller
        assert len(set(names)) == 3


def test_an_error_in_any_group_reaches_the_caller_after_all_groups_ran():
    finished = []

    def work(group):
        if group == 1:
            raise ValueError("group 1 failed")
        finished.append(group)
        return group

    with pytest.raises(ValueError, match="group 1 failed"):
        threads.run_in_parallel(work, [0, 1, 2])
    assert sorted(finished) == [0, 2]
    assert threads.run_in_parallel(lambda group: group * 2, [0, 1, 2]) == [0, 2, 4]   # the pool still works


def test_a_call_from_inside_a_group_runs_its_groups_one_after_another():
    def inner(group):
        return group, threading.current_thread().name

    def outer(group):
        return threads.run_in_parallel(inner, [group, group + 10])

    results = threads.run_in_parallel(outer, [0, 1])
    for start, inner_results in zip([0, 1], results):
        assert [group for group, _ in inner_results] == [start, start + 10]
        assert len({name for _, name in inner_results}) == 1      # no second pool, no deadlock


def test_blas_is_single_threaded_inside_the_groups():
    controller = threads._blas_controller()

    def blas_threads(group):
        return [lib.num_threads for lib in controller.select(user_api="blas").lib_controllers]

    before = blas_threads(None)
    for counts in threads.run_in_parallel(blas_threads, [0, 1]):
        assert all(count == 1 for count in counts)
    assert blas_threads(None) == before                     # and restored afterwards


def test_one_thread_where_blas_would_spin(monkeypatch):
    monkeypatch.setattr(numba, "get_num_threads", lambda: 2)
    monkeypatch.setattr(threads, "_cores", lambda: 4)
    monkeypatch.setattr(threads, "_blas_spins", lambda: True)
    assert threads.thread_count() == 1
    monkeypatch.setattr(threads, "_blas_spins", lambda: False)
    assert threads.thread_count() == 2


def test_spin_until_sees_a_flag_set_by_another_thread():
    from minicnn.kernels.cpu.spin import spin_until
    flags = numpy.zeros(2, numpy.int64)
    assert not spin_until(flags, 1, 1, 1000)
    setter = threading.Timer(0.01, lambda: flags.__setitem__(1, 5))
    setter.start()
    assert spin_until(flags, 1, 5, 10**9)          # returns once the flag is set, not after 10^9 polls
    setter.join()
    assert spin_until(flags, 1, 3, 0)


# -- kernels split into parts: the same numbers as in one part --------------
def _primitive_calls(rng):
    """(name, call) pairs: each call runs one Numba primitive and returns
    its outputs, on shapes big enough to make several tasks."""
    def data(*shape):
        return rng.standard_normal(shape)
    x = data(4, 6, 9, 9)
    win = _windows("pool", x.shape, (3, 3), (2, 2), (1, 1), (1, 1), False)
    gy, divisor = data(4, 6, *win.out_hw), numpy.full(win.out_hw, 9.0)
    w_dw, gy_dw = data(12, 1, 3, 3), data(4, 12, 9, 9)
    x1, gy1 = data(4, 8, 6, 6), data(4, 5, 3, 3)
    w1 = data(5, 8, 1, 1)
    p, g, buf = data(1000), data(1000), data(1000)
    gy_bins, gy_global, gy_bn = data(4, 6, 4, 3), data(4, 6, 1, 1), data(*x.shape)
    w_bn, b_bn, b_dw, b1 = data(6), data(6), data(12), data(5)
    fast = {name: registry.implementations(name)["numba"] for name in registry.primitives()}
    max_arg = fast["max_pool2d_forward"](x, win)[1]
    adaptive_idx = fast["adaptive_max_pool2d_forward"](x, (4, 3))[1]
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    stride1, pad1, none = (1, 1), ((1, 1), (1, 1)), ((0, 0), (0, 0))

    def sgd():
        p1, b1 = p.copy(), buf.copy()
        fast["sgd_update"](p1, g, b1, 0.1, 0.9, 0.0, 1e-2, True, False, False)
        return p1, b1

    w_wg, dU = data(7, 5, 3, 3), {m: data((m + 2) ** 2, 7, 5) for m in (2, 4)}

    def winograd_filters(m, adjoint):
        filter_transform, filter_adjoint = winograd.kernels(m, numpy.float64)[:2]
        if adjoint:
            gw = numpy.empty_like(w_wg)
            threads.parallel_parts(filter_adjoint, 1, dU[m], gw)
            return gw
        U = numpy.empty_like(dU[m])
        threads.parallel_parts(filter_transform, 1, w_wg, U)
        return U
    return [
        ("max_pool2d_forward", lambda: fast["max_pool2d_forward"](x, win)),
        ("max_pool2d_backward", lambda: fast["max_pool2d_backward"](gy, win, max_arg)),
        ("avg_pool2d_forward", lambda: fast["avg_pool2d_forward"](x, win, divisor)),
        ("avg_pool2d_backward", lambda: fast["avg_pool2d_backward"](gy, win, divisor)),
        ("adaptive_avg_pool2d_forward", lambda: fast["adaptive_avg_pool2d_forward"](x, (4, 3))),
        ("adaptive_avg_pool2d_backward", lambda: fast["adaptive_avg_pool2d_backward"](gy_bins, (9, 9))),
        ("global_avg_pool2d_forward", lambda: fast["adaptive_avg_pool2d_forward"](x, (1, 1))),
        ("global_avg_pool2d_backward", lambda: fast["adaptive_avg_pool2d_backward"](gy_global, (9, 9))),
        ("adaptive_max_pool2d_forward", lambda: fast["adaptive_max_pool2d_forward"](x, (4, 3))),
        ("adaptive_max_pool2d_backward", lambda: fast["adaptive_max_pool2d_backward"](gy_bins, adaptive_idx, x.shape)),
        ("batch_norm_forward", lambda: fast["batch_norm_forward"](x, w_bn, b_bn, 1e-5)),
        ("batch_norm_forward eval", lambda: fast["batch_norm_forward"](x, w_bn, b_bn, 1e-5, mean, var)),
        ("batch_norm_backward", lambda: fast["batch_norm_backward"](gy_bn, x, mean, 1 / numpy.sqrt(var + 1e-5), w_bn,
                                                                     True)),
        ("depthwise forward", lambda: fast["conv2d_forward"](x, w_dw, b_dw, stride1, pad1, stride1, 6, (9, 9))),
        ("depthwise grad_input", lambda: fast["conv2d_grad_input"](gy_dw, w_dw, stride1, pad1, stride1, 6, (9, 9))),
        ("depthwise grad_weight", lambda: fast["conv2d_grad_weight"](x, gy_dw, (3, 3), stride1, pad1, stride1, 6)),
        ("1x1 forward", lambda: fast["conv2d_forward"](x1, w1, b1, (2, 2), none, stride1, 1, (3, 3))),
        ("1x1 grad_input", lambda: fast["conv2d_grad_input"](gy1, w1, (2, 2), none, stride1, 1, (6, 6))),
        ("1x1 grad_weight", lambda: fast["conv2d_grad_weight"](x1, gy1, (1, 1), (2, 2), none, stride1, 1)),
        ("sgd_update", sgd),
        ("relu", lambda: fast["relu"](x)),
        ("masked_gradient", lambda: fast["masked_gradient"](gy_bn, x > 0)),
        ("winograd filter_transform F(2x2)", lambda: winograd_filters(2, False)),
        ("winograd filter_transform F(4x4)", lambda: winograd_filters(4, False)),
        ("winograd filter_transform_adjoint F(2x2)", lambda: winograd_filters(2, True)),
        ("winograd filter_transform_adjoint F(4x4)", lambda: winograd_filters(4, True)),
    ]


def _outputs(result):
    return [numpy.asarray(a) for a in (result if isinstance(result, tuple) else (result,))]


@pytest.mark.parametrize("parts", [2, 3, 5])
def test_kernels_give_the_same_numbers_in_any_number_of_parts(monkeypatch, parts):
    """Every parallel Numba primitive, split among ``parts`` threads, gives
    what it gives on one (bit for bit where the tasks are disjoint; the
    1x1 weight gradient sums the threads' partial sums)."""
    calls = _primitive_calls(numpy.random.default_rng(0))
    monkeypatch.setattr(threads, "PARALLEL_SIZE", 0)
    monkeypatch.setattr(threads, "thread_count", lambda: 1)
    monkeypatch.setattr(cpu_conv, "thread_count", lambda: 1)
    serial = {name: _outputs(call()) for name, call in calls}
    pieces = []
    real_run = threads.run_in_parallel

    def counting_run(work, groups, **kwargs):
        pieces.append(len(groups))
        return real_run(work, groups, **kwargs)
    for module in (threads, cpu_conv):
        monkeypatch.setattr(module, "thread_count", lambda: parts)
    monkeypatch.setattr(threads, "run_in_parallel", counting_run)
    monkeypatch.setattr(cpu_conv, "run_in_parallel", counting_run)
    for name, call in calls:
        pieces.clear()
        split_up = _outputs(call())
        assert max(pieces) > 1, name               # the work really was shared out
        for mine, expected in zip(split_up, serial[name]):
            if name == "1x1 grad_weight":
                numpy.testing.assert_allclose(mine, expected, rtol=1e-13, atol=1e-13)
            else:
                numpy.testing.assert_array_equal(mine, expected, err_msg=name)
