"""mc.ops.nms and batched_nms against torchvision: the same kept indices
in the same order, ties in score included, on both CPU backends; the
Numba kernel against the NumPy reference; empty input and bad input."""
import numpy
import pytest
import torch
import torchvision

import minicnn as mc
from minicnn import ops
from minicnn.kernels import registry


def random_boxes(rng, n, dtype, spread=100.0):
    xy = rng.uniform(0, spread, (n, 2))
    return numpy.concatenate([xy, xy + rng.uniform(1, 30, (n, 2))], 1).astype(dtype)


def tv_nms(b, s, t):
    return torchvision.ops.nms(torch.from_numpy(b), torch.from_numpy(s), t).numpy()


def tv_batched(b, s, c, t):
    return torchvision.ops.batched_nms(torch.from_numpy(b), torch.from_numpy(s), torch.from_numpy(c), t).numpy()


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.7])
def test_nms_keeps_torchvisions_indices_in_its_order(backend, dtype, ties, threshold):
    rng = numpy.random.default_rng(7)
    b = random_boxes(rng, 400, dtype)
    # Ties: five score levels for 400 boxes; torchvision's stable sort
    # puts the lower index first, and that box is kept first.
    s = (rng.integers(0, 5, 400) if ties else rng.permutation(400)).astype(dtype)
    keep = ops.nms(mc.tensor(b), mc.tensor(s), threshold)
    assert keep.dtype == mc.int64
    numpy.testing.assert_array_equal(keep.numpy(), tv_nms(b, s, threshold))


def test_nms_with_all_scores_equal_keeps_the_lower_index(backend):
    b = numpy.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], dtype=numpy.float64)
    s = numpy.ones(4)
    keep = ops.nms(mc.tensor(b), mc.tensor(s), 0.5).numpy()
    numpy.testing.assert_array_equal(keep, [0, 3])
    numpy.testing.assert_array_equal(keep, tv_nms(b, s, 0.5))


def test_nms_threshold_is_strict_and_nan_scores_sort_first(backend):
    # IoU of the two boxes is exactly 0.5: suppressed only above 0.5.
    b = numpy.array([[0, 0, 2, 1], [1, 0, 3, 1], [0, 0, 1, 1]], dtype=numpy.float64)
    for t in (0.5, 0.49):
        s = numpy.array([0.9, 0.8, 0.1])
        numpy.testing.assert_array_equal(ops.nms(mc.tensor(b), mc.tensor(s), t).numpy(), tv_nms(b, s, t))
    s = numpy.array([0.2, numpy.nan, 0.9])
    numpy.testing.assert_array_equal(ops.nms(mc.tensor(b), mc.tensor(s), 0.1).numpy(), tv_nms(b, s, 0.1))


@pytest.mark.parametrize("n", [50, 600])   # 600 boxes: above 4000 coordinates, one NMS per category
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_batched_nms_matches_torchvision(backend, n, dtype):
    rng = numpy.random.default_rng(n)
    b = random_boxes(rng, n, dtype, spread=60.0)
    s = rng.permutation(n).astype(dtype)
    c = rng.integers(0, 4, n)
    keep = ops.batched_nms(mc.tensor(b), mc.tensor(s), mc.tensor(c), 0.4).numpy()
    numpy.testing.assert_array_equal(keep, tv_batched(b, s, c, 0.4))


@pytest.mark.parametrize("n", [50, 600])
def test_batched_nms_with_tied_scores(backend, n):
    """Small inputs (the coordinate trick: one NMS) match torchvision index
    for index. Large ones merge per-category results with a sort of the
    scores that in torchvision is unstable (std::sort or a SIMD sort,
    platform-dependent) above 16 entries; here it is stable: the same set,
    the same scores in the same order, equal scores by increasing index."""
    rng = numpy.random.default_rng(3)
    b = random_boxes(rng, n, numpy.float64, spread=60.0)
    s = rng.integers(0, 4, n).astype(numpy.float64)
    c = rng.integers(0, 3, n)
    keep = ops.batched_nms(mc.tensor(b), mc.tensor(s), mc.tensor(c), 0.4).numpy()
    expected = tv_batched(b, s, c, 0.4)
    if 4 * n <= 4000:
        numpy.testing.assert_array_equal(keep, expected)
    else:
        assert sorted(keep) == sorted(expected)
        numpy.testing.assert_array_equal(s[keep], s[expected])
        for level in numpy.unique(s):
            same = keep[s[keep] == level]
            assert (numpy.diff(same) > 0).all()


def test_numba_kernel_equals_numpy_reference():
    impl = registry.implementations("nms")
    rng = numpy.random.default_rng(11)
    for dtype in (numpy.float32, numpy.float64):
        for n in (1, 2, 30, 500):
            b = random_boxes(rng, n, dtype)
            s = rng.integers(0, 10, n).astype(dtype)
            for t in (0.0, 0.5, 1.0):
                numpy.testing.assert_array_equal(impl["numba"](b, s, t), impl["numpy"](b, s, t))


def test_empty_input_gives_empty_indices(backend):
    e = mc.zeros(0, 4)
    for keep in (ops.nms(e, mc.zeros(0), 0.5), ops.batched_nms(e, mc.zeros(0), mc.zeros(0, dtype=mc.int64), 0.5)):
        assert keep.shape == (0,) and keep.dtype == mc.int64


def test_degenerate_boxes_behave_as_in_torchvision(backend):
    b = numpy.array([[5, 5, 2, 9], [0, 0, 4, 4], [4, 4, 0, 0], [1, 1, 1, 1]], dtype=numpy.float32)
    s = numpy.array([0.9, 0.8, 0.7, 0.6], dtype=numpy.float32)
    for t in (0.0, 0.5):
        numpy.testing.assert_array_equal(ops.nms(mc.tensor(b), mc.tensor(s), t).numpy(), tv_nms(b, s, t))


def test_zero_area_duplicates_keep_both_without_a_warning(backend):
    """Two zero-area boxes meet at IoU 0 / 0 = NaN, which suppresses
    nothing in torchvision; pytest.ini turns a RuntimeWarning from minicnn
    into an error, so a warning about the division fails this test."""
    b = numpy.array([[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 2, 2], [3, 3, 3, 8]], dtype=numpy.float64)
    s = numpy.array([0.9, 0.8, 0.7, 0.6])
    for t in (0.0, 0.5):
        numpy.testing.assert_array_equal(ops.nms(mc.tensor(b), mc.tensor(s), t).numpy(), tv_nms(b, s, t))


def test_bad_input_names_the_shapes():
    with pytest.raises(ValueError, match=r"boxes must have shape \(N, 4\), got \(3, 5\)"):
        ops.nms(mc.zeros(3, 5), mc.zeros(3), 0.5)
    with pytest.raises(ValueError, match=r"got scores \(4,\) and boxes \(3, 4\)"):
        ops.nms(mc.zeros(3, 4), mc.zeros(4), 0.5)
    with pytest.raises(ValueError, match=r"got idxs \(2,\) and boxes \(3, 4\)"):
        ops.batched_nms(mc.zeros(3, 4), mc.zeros(3), mc.zeros(2, dtype=mc.int64), 0.5)
    with pytest.raises(TypeError, match="one dtype"):
        ops.nms(mc.zeros(3, 4), mc.zeros(3, dtype=mc.float64), 0.5)


def test_noncontiguous_boxes_and_scores(backend):
    rng = numpy.random.default_rng(8)
    b = random_boxes(rng, 200, numpy.float64)
    s = rng.random(200)
    wide_b, wide_s = numpy.zeros((200, 8)), numpy.zeros(400)
    wide_b[:, ::2], wide_s[::2] = b, s
    keep = ops.nms(mc.tensor(wide_b)[:, ::2], mc.tensor(wide_s)[::2], 0.3)
    numpy.testing.assert_array_equal(keep.numpy(), tv_nms(b, s, 0.3))
