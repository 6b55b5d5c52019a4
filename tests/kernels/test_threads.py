"""kernels/cpu/threads.py: how a kernel's pieces are shared out among
threads, and the pool that runs them."""
import os
import subprocess
import sys
import threading
import time

import numpy
import pytest

import minicnn as mc

from minicnn.kernels import registry
from minicnn.kernels.cpu import conv as cpu_conv, spin, threads, winograd
from minicnn.functional import conv_strategy, normalization, pooling  # noqa: F401  (registers the primitives)
from minicnn.functional.pooling import _windows

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


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


def test_set_num_threads_round_trips_and_makes_blas_single_threaded():
    previous = mc.get_num_threads()
    try:
        for n in (3, 1, 2):
            mc.set_num_threads(n)
            assert mc.get_num_threads() == n == threads.thread_count()
            assert all(lib.num_threads == 1 for lib in threads._numpy_blas())
        for bad in (0, -1, 1.5, True, "2"):
            with pytest.raises(ValueError, match="set_num_threads"):
                mc.set_num_threads(bad)
    finally:
        mc.set_num_threads(previous)


def test_the_first_question_applies_the_default_and_limits_blas():
    """In a fresh process: OMP_NUM_THREADS is the default, as in torch, and
    asking for it leaves BLAS single-threaded; nothing is set before."""
    code = ("import numpy, threadpoolctl, minicnn as mc; "
            "before = [i['num_threads'] for i in threadpoolctl.threadpool_info() if 'numpy' in i['filepath']]; "
            "n = mc.get_num_threads(); "
            "after = [i['num_threads'] for i in threadpoolctl.threadpool_info() if 'numpy' in i['filepath']]; "
            "print(n, max(before), max(after))")
    env = dict(os.environ, OMP_NUM_THREADS="3", OPENBLAS_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["3", "2", "1"]


@pytest.mark.parametrize("imports", ["import numpy; import minicnn", "import minicnn; import numpy"])
def test_import_order_changes_nothing(imports):
    """The thread count, BLAS's thread count after a parallel conv, and the
    environment are the same whichever of NumPy and minicnn comes first; the
    environment is unchanged after the conv (threadpoolctl, which minicnn
    imports then, sets KMP_DUPLICATE_LIB_OK on import)."""
    code = (f"import os; env = dict(os.environ); {imports}; import minicnn as mc, numpy; "
            "x = mc.randn(4, 8, 16, 16); w = mc.randn(8, 8, 3, 3); mc.nn.functional.conv2d(x, w, padding=1); "
            "assert dict(os.environ) == env, set(os.environ.items()) ^ set(env.items()); "
            "import threadpoolctl; "
            "blas = [i['num_threads'] for i in threadpoolctl.threadpool_info() if 'numpy' in i['filepath']]; "
            "print(mc.get_num_threads(), max(blas), os.environ.get('OPENBLAS_THREAD_TIMEOUT'))")
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    env.update(OMP_NUM_THREADS="2", MINICNN_BACKEND="auto")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "1", "None"]


def test_an_idle_process_that_ran_kernels_uses_no_cpu():
    """After parallel conv calls, the pool's threads sleep: over 2 s of the
    caller sleeping, the process uses (almost) no CPU time."""
    code = ("import time, minicnn as mc, minicnn.nn.functional as F\n"
            "mc.set_num_threads(2)\n"
            "x = mc.randn(8, 16, 32, 32, requires_grad=True); w = mc.randn(16, 16, 3, 3, requires_grad=True)\n"
            "for _ in range(5):\n"
            "    F.conv2d(x, w, padding=1).sum().backward()\n"
            "start = time.process_time(); time.sleep(2.0); print(time.process_time() - start)\n")
    env = dict(os.environ, MINICNN_BACKEND="auto")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) < 0.05


def test_an_interrupted_call_waits_for_its_groups_and_leaves_the_pool_usable():
    """A KeyboardInterrupt in the caller's group: the other groups that had
    started finish before it reaches the caller, those not started never
    run, and the next call is right."""
    started, finished = [], []
    release = threading.Event()

    def work(group):
        if group == 0:
            while not started:
                time.sleep(0.001)
            raise KeyboardInterrupt
        started.append(group)
        release.wait(0.05)                  # still running when the caller is interrupted
        finished.append(group)
        return group

    with pytest.raises(KeyboardInterrupt):
        threads.run_in_parallel(work, [0, 1])
    assert finished == started == [1]       # waited for, not abandoned
    assert threads.run_in_parallel(lambda group: group + 1, [0, 1, 2]) == [1, 2, 3]


def test_an_interrupted_parallel_parts_starts_no_new_part(monkeypatch):
    """The caller is interrupted in its first part: the other thread ends
    the part it may have begun, and no part after it is started."""
    monkeypatch.setattr(threads, "thread_count", lambda: 2)
    done = []

    def kernel(part, parts):
        if threading.current_thread() is threading.main_thread():
            raise KeyboardInterrupt
        time.sleep(0.05)
        done.append(part)

    with pytest.raises(KeyboardInterrupt):
        threads.parallel_parts(kernel, threads.PARALLEL_SIZE)
    assert set(done) <= {1}
    count = []
    threads.parallel_parts(lambda part, parts: count.append(part), threads.PARALLEL_SIZE)
    assert sorted(count) == list(range(threads.PARTS_PER_THREAD * 2))


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
    w_grouped = data(12, 2, 3, 3)                  # 3 groups of 2 -> 4 channels: pairs of outputs
    x1 = data(4, 8, 6, 6)
    w1 = data(5, 8, 1, 1)
    gy1_wide = data(4, 5, 6, 6)                                   # 36 pixels an image: image by image
    gy1_tall, w1_tall = data(4, 130, 3, 3), data(130, 8, 1, 1)    # 3x3 maps side by side, 130 rows: 3 blocks
    gy1_few, w1_many_in = data(4, 8, 3, 3), data(8, 130, 1, 1)    # gx of 130 channels: 3 blocks
    p, g, buf = data(1000), data(1000), data(1000)
    gy_bins, gy_global, gy_bn = data(4, 6, 4, 3), data(4, 6, 1, 1), data(*x.shape)
    w_bn, b_bn, b_dw, b1 = data(6), data(6), data(12), data(5)
    fast = {name: registry.implementations(name)["numba"] for name in registry.primitives()
            if "numba" in registry.implementations(name)}
    # Regions on both images of x, some overlapping, one larger than the map.
    rois = numpy.array([[0, 1, 1, 12, 9], [1, 0, 2, 6, 7], [0, 3, 3, 16, 16], [1, -2, 0, 20, 18],
                        [0, 2, 2, 4, 4], [1, 5, 1, 9, 15]], dtype=x.dtype)
    gy_roi = data(len(rois), 6, 3, 3)
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
        ("depthwise forward",
         lambda: fast["depthwise_conv2d_forward"](x, w_dw, b_dw, stride1, pad1, stride1, 6, (9, 9))),
        ("depthwise grad_input",
         lambda: fast["depthwise_conv2d_grad_input"](gy_dw, w_dw, stride1, pad1, stride1, 6, (9, 9))),
        ("depthwise grad_weight",
         lambda: fast["depthwise_conv2d_grad_weight"](x, gy_dw, (3, 3), stride1, pad1, stride1, 6)),
        ("grouped forward",
         lambda: fast["grouped_conv2d_forward"](x, w_grouped, b_dw, stride1, pad1, stride1, 3, (9, 9))),
        ("grouped grad_weight",
         lambda: fast["grouped_conv2d_grad_weight"](x, gy_dw, (3, 3), stride1, pad1, stride1, 3)),
        ("1x1 forward", lambda: conv_strategy.conv2d_forward(x1, w1, b1, stride1, none, stride1, 1, (6, 6))),
        ("1x1 grad_input", lambda: conv_strategy.conv2d_grad_input(gy1_wide, w1, stride1, none, stride1, 1, (6, 6))),
        ("1x1 grad_weight", lambda: conv_strategy.conv2d_grad_weight(x1, gy1_wide, (1, 1), stride1, none, stride1, 1)),
        ("1x1 side by side forward",
         lambda: conv_strategy.conv2d_forward(x1, w1_tall, None, (2, 2), none, stride1, 1, (3, 3))),
        ("1x1 side by side grad_input",
         lambda: conv_strategy.conv2d_grad_input(gy1_few, w1_many_in, (2, 2), none, stride1, 1, (6, 6))),
        ("1x1 side by side grad_weight",
         lambda: conv_strategy.conv2d_grad_weight(x1, gy1_tall, (1, 1), (2, 2), none, stride1, 1)),
        ("sgd_update", sgd),
        ("relu", lambda: fast["relu"](x)),
        ("masked_gradient", lambda: fast["masked_gradient"](gy_bn, x > 0)),
        ("roi_align_forward", lambda: fast["roi_align_forward"](x, rois, (3, 3), 0.5, 2, True)),
        ("roi_align_backward", lambda: fast["roi_align_backward"](gy_roi, rois, x.shape, 0.5, -1, False)),
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
    monkeypatch.setattr(cpu_conv, "SIDE_BY_SIDE_MIN_MACS", 0)     # small products side by side too
    monkeypatch.setattr(threads, "thread_count", lambda: 1)
    monkeypatch.setattr(cpu_conv, "thread_count", lambda: 1)
    serial = {name: _outputs(call()) for name, call in calls}
    pieces = []
    real_run = threads.run_in_parallel

    def counting_run(work, groups, *args):
        pieces.append(len(groups))
        return real_run(work, groups, *args)
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


@pytest.mark.parametrize("parts", [1, 2, 3])
def test_a_1x1_convolution_of_one_image_is_shared_out_in_blocks(monkeypatch, parts):
    # One image (inference, detection) used to be one GEMM on one thread.
    # Its blocks depend on the shapes alone, so every thread count gives
    # the same bits, equal to the GEMM of each block done by hand.
    monkeypatch.setattr(cpu_conv, "GEMM_BLOCK_ROWS", 8)
    monkeypatch.setattr(cpu_conv, "GEMM_BLOCK_COLUMNS", 32)
    monkeypatch.setattr(cpu_conv, "GEMM_ROW_SPLIT_MIN_COLUMNS", 32)
    monkeypatch.setattr(cpu_conv, "thread_count", lambda: parts)
    pieces = []
    real_run = cpu_conv.run_in_parallel

    def counting_run(work, groups, *args):
        pieces.append(len(groups))
        return real_run(work, groups, *args)
    monkeypatch.setattr(cpu_conv, "run_in_parallel", counting_run)
    rng = numpy.random.default_rng(0)
    a = rng.standard_normal((2, 20, 7)).astype(numpy.float32)            # G=2, P=20 (3 row blocks), Q=7
    b = rng.standard_normal((1, 2, 7, 70)).astype(numpy.float32)         # one image, L=70 (3 column blocks)
    bias = rng.standard_normal((2, 20, 1)).astype(numpy.float32)
    y = cpu_conv.batched_matmul(a, b, bias)
    assert pieces == [min(parts, 9)]
    expected = numpy.empty_like(y)
    for rows in (slice(0, 8), slice(8, 16), slice(16, 20)):
        for columns in (slice(0, 32), slice(32, 64), slice(64, 70)):
            expected[0, :, rows, columns] = a[:, rows] @ b[0, :, :, columns] + bias[:, rows]
    numpy.testing.assert_array_equal(y, expected)
    numpy.testing.assert_allclose(y[0], a @ b[0] + bias, rtol=1e-5, atol=1e-5)


def test_a_1x1_products_blocks_are_even():
    # The fewest blocks of at most 256 rows x 4096 pixels, of one size
    # (a multiple of 16) but the last: 384 rows are 192 + 192, not 256 + 128.
    def sizes(runs):
        return [run.stop - run.start for run in runs]
    assert sizes(cpu_conv._even_runs(384, 256)) == [192, 192]
    assert sizes(cpu_conv._even_runs(960, 256)) == [240] * 4
    assert sizes(cpu_conv._even_runs(100, 256)) == [100]
    assert sizes(cpu_conv._even_runs(12544, 4096)) == [3136] * 4
    assert sizes(cpu_conv._even_runs(20, 8)) == [8, 8, 4]             # never more than the most
    blocks = cpu_conv._blocks(576, 96, 12544, 2)
    assert sorted({(r.stop - r.start, c.stop - c.start) for r, c in blocks}) == [(192, 3136)] and len(blocks) == 12


@pytest.mark.parametrize("parts", [1, 2, 3])
def test_a_lone_images_1x1_product_is_cut_in_two_halves_of_its_rows(monkeypatch, parts):
    # A lone image's product that would be one block is shared by two
    # threads as two halves of its rows (multiples of 16), whatever the
    # thread count; a batch keeps whole images; a small product stays whole.
    monkeypatch.setattr(cpu_conv, "thread_count", lambda: parts)
    rng = numpy.random.default_rng(1)
    a = rng.standard_normal((1, 72, 64)).astype(numpy.float32)          # P = 72: rows 0-47 and 48-71
    b = rng.standard_normal((1, 1, 64, 2048)).astype(numpy.float32)     # 72 * 64 * 2048 multiply-adds
    assert 72 * 64 * 2048 >= cpu_conv.LONE_IMAGE_MIN_MACS and 64 >= cpu_conv.LONE_IMAGE_MIN_DEPTH
    assert cpu_conv._blocks(72, 64, 2048, 1) == [(slice(0, 48), slice(0, 2048)), (slice(48, 72), slice(0, 2048))]
    assert cpu_conv._blocks(72, 64, 2048, 2) == [(slice(0, 72), slice(0, 2048))]
    assert cpu_conv._blocks(72, 32, 2048, 1) == [(slice(0, 72), slice(0, 2048))]        # too shallow
    assert cpu_conv._blocks(72, 64, 256, 1) == [(slice(0, 72), slice(0, 256))]          # too small
    y = cpu_conv.batched_matmul(a, b)
    expected = numpy.concatenate([a[:, :48] @ b[0, :, :, :], a[:, 48:] @ b[0]], axis=1)
    numpy.testing.assert_array_equal(y[0], expected)


@pytest.mark.parametrize("parts", [1, 3])
def test_a_batch_of_small_maps_is_multiplied_side_by_side(monkeypatch, parts):
    # Images of few pixels (3x3 maps) are laid side by side: one product a
    # group, in blocks of rows; the weight gradient's sum over images is one
    # product too. The forward's bound on the product's size, then the
    # numbers against a plain einsum in float64.
    assert cpu_conv._side_by_side(16, 9, 320 * 1280 * 16 * 9)          # MobileNetV2's 320 -> 1280 on 3x3
    assert not cpu_conv._side_by_side(16, 4, 256 * 512 * 16 * 4)       # 8.4M multiply-adds: image by image
    assert not cpu_conv._side_by_side(1, 9, 1 << 30)                  # a lone image
    assert not cpu_conv._side_by_side(16, 36, 1 << 30)                # 6x6 maps
    monkeypatch.setattr(cpu_conv, "SIDE_BY_SIDE_MIN_MACS", 0)
    monkeypatch.setattr(cpu_conv, "thread_count", lambda: parts)
    rng = numpy.random.default_rng(2)
    a, b = rng.standard_normal((2, 70, 6)), rng.standard_normal((5, 2, 6, 9))     # G 2, P 70 (2 blocks), L 9
    bias = rng.standard_normal((2, 70, 1))
    numpy.testing.assert_allclose(cpu_conv.batched_matmul(a, b, bias), numpy.einsum("gpq,ngql->ngpl", a, b) + bias,
                                  rtol=1e-13, atol=1e-13)
    gy, x = rng.standard_normal((5, 2, 70, 9)), rng.standard_normal((5, 2, 9, 6))
    numpy.testing.assert_allclose(cpu_conv.batched_matmul_sum(gy, x), numpy.einsum("ngpl,nglq->gpq", gy, x),
                                  rtol=1e-13, atol=1e-13)


# -- the pool's spins and hand-shakes (spin.py) -----------------------------
NEVER = int(numpy.iinfo(numpy.int64).max)       # a gap in the clock no spin sees


def test_wait_for_change_rereads_the_counter_until_it_changes():
    """The spin sees a bump of the counter by another thread (an ordinary
    load could be hoisted out of the loop and never see one) and returns
    the new value; unbumped, it returns ``seen`` after its count of reads."""
    posted = numpy.zeros(1, numpy.int64)

    def bump():
        time.sleep(0.02)
        posted[0] = 7
    bumper = threading.Thread(target=bump)
    bumper.start()
    assert spin.wait_for_change(posted, 0, spin.spins_for(60.0), NEVER) == 7    # nogil: the bumper runs
    bumper.join()
    start = time.perf_counter()
    assert spin.wait_for_change(posted, 7, 1000, NEVER) == 7
    assert spin.wait_for_change(posted, 7, 0, NEVER) == 7
    assert time.perf_counter() - start < 1.0


def test_wait_for_returns_once_the_target_is_reached_or_the_reads_run_out():
    finished = numpy.array([3], numpy.int64)
    assert spin.wait_for(finished, 3, 0, NEVER) == 1
    assert spin.wait_for(finished, 4, 1000, NEVER) == 0

    def count():
        time.sleep(0.02)
        finished[0] = 4
    counter = threading.Thread(target=count)
    counter.start()
    assert spin.wait_for(finished, 4, spin.spins_for(60.0), NEVER) == 1
    counter.join()


@pytest.mark.skipif(spin.cycles_for(1.0) == NEVER, reason="no cycle counter on this CPU")
def test_a_spin_that_sees_a_gap_in_its_clock_says_so():
    """A gap of 0 cycles: the first look at the clock finds one."""
    counter = numpy.zeros(1, numpy.int64)
    assert spin.wait_for_change(counter, 0, 10 * spin.READS_PER_YIELD, 0) == spin.PREEMPTED
    assert spin.wait_for(counter, 1, 10 * spin.READS_PER_YIELD, 0) == spin.PREEMPTED


def test_the_hand_shake_loses_no_wake_up():
    """A worker counts its group and sees a sleeping caller; a caller about
    to sleep sees a count already reached."""
    finished, asleep, posted = (numpy.zeros(1, numpy.int64) for _ in range(3))
    assert spin.finish_and_wait(finished, asleep, posted, 0, 10, NEVER) == 0     # no call came
    assert finished[0] == 1
    assert spin.caller_sleeps(asleep, finished, 2) is False and asleep[0] == 1
    assert spin.finish_and_wait(finished, asleep, posted, 0, 10, NEVER) == spin.WAKE_CALLER
    assert finished[0] == 2
    assert spin.caller_sleeps(asleep, finished, 2) is True


def test_a_caller_that_sleeps_is_woken_by_the_last_group():
    """Groups longer than the caller's spin: it sleeps, is woken, and the
    next calls (short, back to back) are right."""
    def work(group):
        if group:
            time.sleep(10 * threads.WAIT_SECONDS)
        return group
    assert threads.run_in_parallel(work, [0, 1, 2]) == [0, 1, 2]
    assert threads._pool.caller_asleep[0] == 0
    for i in range(2000):
        assert threads.run_in_parallel(lambda group: group + i, [0, 1]) == [i, i + 1]


def _wait_for_sleeping_workers(pool):
    deadline = time.monotonic() + 5
    while pool.workers_asleep < pool.workers and time.monotonic() < deadline:
        time.sleep(0.01)
    return pool.workers_asleep == pool.workers


def test_workers_sleep_soon_after_the_last_call():
    threads.run_in_parallel(lambda group: group, [0, 1])
    assert _wait_for_sleeping_workers(threads._pool)
    assert threads.run_in_parallel(lambda group: group, [0, 1]) == [0, 1]      # and wake for the next


def test_a_larger_pool_replaces_the_old_one_whose_threads_end():
    threads.run_in_parallel(lambda group: group, [0, 1])
    old = threads._pool
    names = {f"minicnn-{i}" for i in range(1, old.workers + 1)}
    old_threads = [t for t in threading.enumerate() if t.name in names]
    groups = list(range(old.workers + 2))
    assert threads.run_in_parallel(lambda group: group, groups) == groups
    assert threads._pool is not old and threads._pool.workers == len(groups) - 1
    for thread in old_threads:
        thread.join(timeout=5)
        assert not thread.is_alive()


def test_spinning_stops_on_a_busy_machine(monkeypatch):
    """A gap in a spin's clock while the thread's count of switches stayed
    put is the VM's host: spin on. One switch to another thread is a
    passing daemon: spin on. A second soon after is a busy machine: no
    thread spins for BACK_OFF_SECONDS."""
    threads.run_in_parallel(lambda group: group, [0, 1])
    pool = threads._pool
    assert _wait_for_sleeping_workers(pool)                  # none of them asks for _switches below
    monkeypatch.setattr(pool, "last_lost_core", float("-inf"))
    monkeypatch.setattr(pool, "spin_again_at", 0.0)
    switches = iter(range(100))
    monkeypatch.setattr(threads, "_switches", lambda: next(switches))
    assert pool._lost_core(0) is False                       # _switches() says 0: unchanged
    assert pool._lost_core(0) is False                       # 1: a first switch
    assert pool.spin_again_at == 0.0
    assert pool._lost_core(0) is True                        # 2: a second, at once
    assert pool.spin_again_at > time.perf_counter() + threads.BACK_OFF_SECONDS / 2


def test_a_switch_already_counted_is_not_counted_again(monkeypatch):
    """A spin that keeps finding gaps after one switch to another thread
    (the VM's host pausing it, no other thread on its core) spins on: each
    gap is asked about the switches since the last one, not since the spin
    began."""
    threads.run_in_parallel(lambda group: group, [0, 1])
    pool = threads._pool
    assert _wait_for_sleeping_workers(pool)
    monkeypatch.setattr(pool, "last_lost_core", float("-inf"))
    monkeypatch.setattr(pool, "spin_again_at", 0.0)
    monkeypatch.setattr(threads, "_switches", lambda: 1)     # one switch, before the first gap
    results = iter([pool.spin.PREEMPTED, pool.spin.PREEMPTED, 7])
    assert pool._past_the_host(pool.spin.PREEMPTED, 0, lambda: next(results)) == 7
    assert pool.spin_again_at == 0.0


def test_signs_seen_while_loose_do_not_keep_the_workers_loose(monkeypatch):
    """Bound, a busy machine lets the workers loose for LOOSE_SECONDS.
    Loose, two of the pool's threads may share a core and take it from each
    other, which looks the same: it backs the spins off but does not put
    off binding the workers again."""
    threads.run_in_parallel(lambda group: group, [0, 1])
    pool = threads._pool
    assert _wait_for_sleeping_workers(pool)
    monkeypatch.setattr(pool, "last_lost_core", float("-inf"))
    monkeypatch.setattr(pool, "busy_at", float("-inf"))
    monkeypatch.setattr(pool, "spin_again_at", 0.0)
    switches = iter(range(100))
    monkeypatch.setattr(threads, "_switches", lambda: next(switches))
    loosened = []
    monkeypatch.setattr(pool.placement, "bound", True)
    monkeypatch.setattr(pool.placement, "loosen", lambda: (loosened.append(1), setattr(pool.placement, "bound", False)))
    assert [pool._lost_core(0) for _ in range(3)] == [False, False, True]   # 0: unchanged, 1, 2: busy
    assert loosened == [1] and pool.busy_at > float("-inf")
    first_sign = pool.busy_at
    time.sleep(0.002)
    assert pool._lost_core(0) is True                        # loose now: backs off ...
    assert pool.spin_again_at > first_sign + threads.BACK_OFF_SECONDS
    assert pool.busy_at == first_sign and loosened == [1]   # ... but binds again LOOSE_SECONDS after the first
