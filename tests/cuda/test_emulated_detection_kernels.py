"""The CUDA kernels of mc.ops (``nms.cu``, ``roi_align.cu``), checked on
the CPU as ``test_emulated_kernels.py`` checks the others: the GPU
wrappers run on NumPy arrays with every launch emulated, against the
NumPy references. NMS must keep exactly the same indices (ties in score
included); RoIAlign agrees up to rounding."""
import os
import sys

import numpy
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from minicnn import ops  # noqa: E402,F401  (registers the NumPy references)
from minicnn.kernels.cuda import nms, roi_align  # noqa: E402
# The emulated launcher (an autouse fixture) and the references, as the other kernels' tests use them.
from test_emulated_kernels import emulated_gpu, reference  # noqa: E402,F401


def random_boxes(rng, n, dtype):
    xy = rng.uniform(0, 60, (n, 2))
    return numpy.concatenate([xy, xy + rng.uniform(1, 25, (n, 2))], 1).astype(dtype)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("n", [1, 63, 64, 65, 150])     # one word, exactly one, one bit more, several
def test_nms_kernels_keep_the_references_indices(dtype, n):
    rng = numpy.random.default_rng(n)
    b = random_boxes(rng, n, dtype)
    for s in (rng.permutation(n).astype(dtype), rng.integers(0, 3, n).astype(dtype)):   # distinct, tied
        for t in (0.0, 0.3, 0.8):
            numpy.testing.assert_array_equal(nms.nms(b, s, t), reference("nms")(b, s, t))


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("ratio,aligned,scale", [(-1, False, 1.0), (0, True, 0.5), (2, False, 0.7), (3, True, 1.0)])
def test_roi_align_kernels_match_the_references(dtype, ratio, aligned, scale):
    rng = numpy.random.default_rng(ratio + 10)
    x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    xy = rng.uniform(-3, 10, (6, 2))
    rois = numpy.concatenate([rng.integers(0, 2, (6, 1)), xy, xy + rng.uniform(0.2, 8, (6, 2))], 1).astype(dtype)
    rois[0, 1:] = [5, 5, 2, 3]                       # x2 < x1
    args = (rois, (3, 2), scale, ratio, aligned)
    tol = dict(rtol=2e-5, atol=2e-6) if dtype == numpy.float32 else dict(rtol=1e-12, atol=1e-12)
    y = roi_align.roi_align_forward(x, *args)
    numpy.testing.assert_allclose(y, reference("roi_align_forward")(x, *args), **tol)
    gy = rng.standard_normal(y.shape).astype(dtype)
    args = (rois, x.shape, scale, ratio, aligned)
    numpy.testing.assert_allclose(roi_align.roi_align_backward(gy, *args),
                                  reference("roi_align_backward")(gy, *args), **tol)
