"""mc.ops.roi_align and roi_pool against torchvision.ops: forward and the
input's gradient (random upstream gradient) for every sampling ratio
(adaptive included), aligned or not, scaled, boxes as a (K, 5) Tensor or
a list, regions partly or wholly off the map, degenerate and empty box
lists; float64 and float32, non-contiguous input, gradcheck; both CPU
backends, and the Numba kernels against the NumPy references."""
import numpy
import pytest
import torch
import torchvision

import minicnn as mc
from minicnn import ops
from minicnn.kernels import registry
from parity import check_parity, gradcheck_inputs

R = numpy.random.default_rng(2021)
X = R.standard_normal((2, 3, 11, 9))


def rois(k, seed=0, lo=-3.0, hi=12.0):
    """(K, 5) rows (n, x1, y1, x2, y2): corners anywhere from off the map
    to inside it, sides from a fifth of a pixel to most of the map."""
    rng = numpy.random.default_rng(seed)
    xy = rng.uniform(lo, hi, (k, 2))
    return numpy.concatenate([rng.integers(0, 2, (k, 1)), xy, xy + rng.uniform(0.2, 9, (k, 2))], 1)


ROIS = rois(7)
DEGENERATE = numpy.array([[0, 5.0, 5.0, 2.0, 3.0], [1, 3.0, 3.0, 3.0, 3.0], [0, -30, -30, -20, -20],
                          [1, 20, 20, 40, 40]])


def pair(name, *args, **kwargs):
    return (lambda x, b: getattr(ops, name)(x, b, *args, **kwargs),
            lambda x, b: getattr(torchvision.ops, name)(x, b, *args, **kwargs))


ALIGN_CASES = {f"ratio{s}_aligned{a}": pair("roi_align", (3, 2), 1.0, s, a)
               for s in (-1, 0, 1, 2, 3) for a in (False, True)}
ALIGN_CASES["scaled_square"] = pair("roi_align", 4, 0.6, 2, False)
ALIGN_CASES["scaled_adaptive_aligned"] = pair("roi_align", (2, 5), 0.45, -1, True)


@pytest.mark.parametrize("name", sorted(ALIGN_CASES))
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_roi_align_matches_torchvision(backend, name, dtype):
    check_parity(*ALIGN_CASES[name], [X, ROIS], dtype=dtype, constant_inputs=(1,))


@pytest.mark.parametrize("name", ["ratio-1_alignedFalse", "ratio2_alignedTrue"])
def test_roi_align_noncontiguous_and_degenerate_regions(backend, name):
    check_parity(*ALIGN_CASES[name], [X, ROIS], noncontiguous_inputs=True, constant_inputs=(1,))
    # x2 < x1, a point, regions wholly off the map: torchvision's numbers.
    check_parity(*ALIGN_CASES[name], [X, DEGENERATE], constant_inputs=(1,))


@pytest.mark.parametrize("name", ["ratio-1_alignedFalse", "ratio2_alignedTrue", "ratio0_alignedTrue"])
def test_roi_align_gradcheck(backend, name):
    x, b = gradcheck_inputs([X[:, :2, :6, :5], rois(3, 1, -1, 5)], requires_grad=[True, False])
    assert mc.gradcheck(lambda x: ALIGN_CASES[name][0](x, b), [x])


def test_boxes_as_a_list_equal_the_rows(backend):
    x = mc.tensor(X)
    listed = [mc.tensor(ROIS[ROIS[:, 0] == i, 1:]) for i in range(2)]
    rows = numpy.concatenate([ROIS[ROIS[:, 0] == i] for i in range(2)])
    for name in ("roi_align", "roi_pool"):
        by_list = getattr(ops, name)(x, listed, 3, 0.5)
        expected = getattr(torchvision.ops, name)(torch.from_numpy(X), [torch.from_numpy(b.numpy()) for b in listed],
                                                  3, 0.5)
        numpy.testing.assert_allclose(by_list.numpy(), expected.numpy(), rtol=1e-12, atol=1e-12)
        numpy.testing.assert_array_equal(by_list.numpy(), getattr(ops, name)(x, mc.tensor(rows), 3, 0.5).numpy())


@pytest.mark.parametrize("name", ["roi_align", "roi_pool"])
def test_no_boxes_give_an_empty_output_and_a_zero_gradient(backend, name):
    for boxes in (mc.zeros(0, 5, dtype=mc.float64), [mc.zeros(0, 4, dtype=mc.float64)] * 2):
        x = mc.tensor(X, requires_grad=True)
        y = getattr(ops, name)(x, boxes, (2, 3))
        assert y.shape == (0, 3, 2, 3)
        y.sum().backward()
        assert not x.grad.numpy().any()


POOL_X = R.permutation(2 * 3 * 11 * 9).reshape(2, 3, 11, 9) / 10.0     # distinct: one maximum per bin
POOL_CASES = {"square": pair("roi_pool", 3, 1.0), "rect_scaled": pair("roi_pool", (2, 4), 0.5),
              "fine_scaled": pair("roi_pool", (5, 3), 0.3)}


@pytest.mark.parametrize("name", sorted(POOL_CASES))
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_roi_pool_matches_torchvision(backend, name, dtype):
    check_parity(*POOL_CASES[name], [POOL_X, ROIS], dtype=dtype, constant_inputs=(1,))
    check_parity(*POOL_CASES[name], [POOL_X, DEGENERATE], dtype=dtype, constant_inputs=(1,))


def test_roi_pool_noncontiguous_gradcheck_and_nan():
    check_parity(*POOL_CASES["square"], [POOL_X, ROIS], noncontiguous_inputs=True, constant_inputs=(1,))
    x, b = gradcheck_inputs([POOL_X, ROIS], requires_grad=[True, False])
    assert mc.gradcheck(lambda x: ops.roi_pool(x, b, (2, 3), 0.7), [x])
    # NaN never wins a bin; an all-NaN bin holds -FLT_MAX, as in torchvision.
    x = POOL_X.copy()
    x[0, :, :4, :4] = numpy.nan
    x[1, 0, 5, 5] = numpy.nan
    check_parity(*POOL_CASES["square"], [x, ROIS], constant_inputs=(1,), grad=False)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_numba_kernels_equal_numpy_references(dtype):
    forward, backward = (registry.implementations(f"roi_align_{d}") for d in ("forward", "backward"))
    x = X.astype(dtype)
    b = rois(20, 5).astype(dtype)
    for ratio in (-1, 0, 2):
        for aligned in (False, True):
            for scale in (1.0, 0.7):
                args = (b, (3, 4), scale, ratio, aligned)
                y = forward["numba"](x, *args)
                numpy.testing.assert_allclose(y, forward["numpy"](x, *args), rtol=1e-5 if dtype == numpy.float32
                                              else 1e-12, atol=1e-6 if dtype == numpy.float32 else 1e-12)
                g = R.standard_normal(y.shape).astype(dtype)
                args = (b, x.shape, scale, ratio, aligned)
                numpy.testing.assert_allclose(backward["numba"](g, *args), backward["numpy"](g, *args),
                                              rtol=1e-5 if dtype == numpy.float32 else 1e-12,
                                              atol=1e-5 if dtype == numpy.float32 else 1e-12)


def test_bad_input_names_the_shapes():
    x = mc.tensor(X)
    with pytest.raises(ValueError, match=r"Tensor\[K, 5\].*got shape \(3, 4\)"):
        ops.roi_align(x, mc.zeros(3, 4, dtype=mc.float64), 2)
    with pytest.raises(ValueError, match=r"Tensor\[L, 4\], got boxes\[1\] of shape \(2, 5\)"):
        ops.roi_pool(x, [mc.zeros(1, 4), mc.zeros(2, 5)], 2)
    with pytest.raises(ValueError, match=r"batch index 2 is outside the input's batch of 2"):
        ops.roi_align(x, mc.tensor([[2.0, 0, 0, 1, 1]], dtype=mc.float64), 2)
    with pytest.raises(ValueError, match=r"input must be \(N, C, H, W\), got shape \(3, 11, 9\)"):
        ops.roi_align(mc.tensor(X[0]), mc.tensor(ROIS), 2)
    with pytest.raises(TypeError, match="boxes must have input's dtype float64, got float32"):
        ops.roi_align(x, mc.tensor(ROIS, dtype=mc.float32), 2)
    with pytest.raises(ValueError, match="output_size must be a positive int"):
        ops.roi_align(x, mc.tensor(ROIS), (0, 2))


def test_modules_match_functions():
    x, b = mc.tensor(X), mc.tensor(ROIS)
    m = ops.RoIAlign((2, 2), 0.5, 2, aligned=True)
    assert repr(m) == "RoIAlign(output_size=(2, 2), spatial_scale=0.5, sampling_ratio=2, aligned=True)"
    numpy.testing.assert_array_equal(m(x, b).numpy(), ops.roi_align(x, b, (2, 2), 0.5, 2, True).numpy())
    numpy.testing.assert_array_equal(ops.RoIPool(3, 0.5)(x, b).numpy(), ops.roi_pool(x, b, 3, 0.5).numpy())
