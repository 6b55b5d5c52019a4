"""RoIPool (Girshick, Fast R-CNN, 2015): the maximum of each of PH x PW
bins of each region of interest, on whole pixels.

Notation as in ``roi_align.py``: input (N, C, H, W), K regions (n, x1,
y1, x2, y2), output (K, C, PH, PW).

Unlike RoIAlign, the region is snapped to the pixel grid: its corners,
scaled by spatial_scale, are rounded (half away from zero, C's
``round``), and the region covers pixels x1..x2 inclusive, so it is
x2 - x1 + 1 wide (at least 1). Bin pw spans [floor(pw * bw),
ceil((pw + 1) * bw)) from there, bw = width / PW, clipped to the map;
bins overlap where bw is not an integer. A bin outside the map (empty)
outputs 0. Within a bin, the first maximum in row-major order wins, and
only values above -FLT_MAX count (torchvision's starting value, for
every dtype): a bin of NaNs (which never compare greater) or of -inf
outputs -FLT_MAX with no argmax and gets no gradient.

The gradient of each output goes to the pixel that held its maximum
(the flat index h * W + w saved by the forward, -1 for none).
"""
import numpy

from ..autograd import Function
from ..backend import get_array_module
from ..kernels import registry
from ..nn import Module
from ._rois import as_rois, check_input, output_pair

__all__ = ["roi_pool", "RoIPool"]

FLT_MAX = float(numpy.finfo(numpy.float32).max)


def _round(v):
    """C's round: half away from zero."""
    return int(numpy.sign(v) * numpy.floor(numpy.abs(v) + 0.5))


def bin_bounds(roi, spatial_scale, pooled, in_hw, dtype):
    """Batch index and per axis (y, then x) a list of the (start, stop)
    pixel ranges of the bins of one roi row."""
    t = numpy.dtype(dtype).type
    x1, y1, x2, y2 = (_round(t(v) * t(spatial_scale)) for v in roi[1:])
    bounds = []
    for lo, hi, p, length in ((y1, y2, pooled[0], in_hw[0]), (x1, x2, pooled[1], in_hw[1])):
        size = t(max(hi - lo + 1, 1)) / t(p)
        bounds.append([(min(max(int(numpy.floor(t(i) * size)) + lo, 0), length),
                        min(max(int(numpy.ceil(t(i + 1) * size)) + lo, 0), length)) for i in range(p)])
    return int(roi[0]), bounds


@registry.register("roi_pool_forward", "numpy")
def roi_pool_forward_reference(x, rois, pooled, spatial_scale):
    """x (N, C, H, W), rois (K, 5) -> (y (K, C, PH, PW), argmax int64 flat
    index h * W + w of each maximum, -1 where none)."""
    xp = get_array_module(x)
    K, C, W = rois.shape[0], x.shape[1], x.shape[3]
    y = xp.zeros((K, C) + tuple(pooled), dtype=x.dtype)
    arg = xp.full((K, C) + tuple(pooled), -1, dtype=xp.int64)
    for k, roi in enumerate(numpy.asarray(rois.get() if xp is not numpy else rois)):
        n, (rows, cols) = bin_bounds(roi, spatial_scale, pooled, x.shape[2:], x.dtype)
        for ph, (h0, h1) in enumerate(rows):
            for pw, (w0, w1) in enumerate(cols):
                if h1 <= h0 or w1 <= w0:
                    continue                     # empty bin: 0, no argmax
                window = x[n, :, h0:h1, w0:w1].reshape(C, -1)
                candidates = xp.where(window > -FLT_MAX, window, -xp.inf)   # NaN and -FLT_MAX never win
                j = xp.argmax(candidates, axis=1)                            # the first maximum
                best = candidates[xp.arange(C), j]
                found = best > -xp.inf
                y[k, :, ph, pw] = xp.where(found, best, -FLT_MAX)
                arg[k, :, ph, pw] = xp.where(found, (h0 + j // (w1 - w0)) * W + w0 + j % (w1 - w0), -1)
    return y, arg


@registry.register("roi_pool_backward", "numpy")
def roi_pool_backward_reference(gy, rois, arg, in_shape):
    """gy (K, C, PH, PW) -> gx of ``in_shape``: each output's gradient
    added at its argmax."""
    xp = get_array_module(gy)
    N, C, H, W = in_shape
    gx = xp.zeros((N, C, H * W), dtype=gy.dtype)
    n = xp.asarray(rois[:, 0]).astype(xp.int64)[:, None, None, None]
    c = xp.arange(C)[None, :, None, None]
    found = arg >= 0
    n, c = xp.broadcast_to(n, arg.shape)[found], xp.broadcast_to(c, arg.shape)[found]
    xp.add.at(gx, (n, c, arg[found]), gy[found])
    return gx.reshape(in_shape)


class RoIPoolFunction(Function):
    """input (N, C, H, W) -> (K, C, PH, PW); the rois are a constant."""

    def __init__(self, rois, pooled, spatial_scale):
        self.rois, self.pooled, self.spatial_scale = rois, pooled, float(spatial_scale)

    def forward(self, x):
        self.in_shape = x.shape
        y, self.arg = registry.lookup("roi_pool_forward", get_array_module(x))(x, self.rois, self.pooled,
                                                                                 self.spatial_scale)
        return y

    def backward(self, gy):
        g = gy.data
        return registry.lookup("roi_pool_backward", get_array_module(g))(g, self.rois, self.arg, self.in_shape)


def roi_pool(input, boxes, output_size, spatial_scale=1.0):
    """RoIPool (see the module docstring): ``input`` (N, C, H, W),
    ``boxes`` a Tensor (K, 5) or a list of N Tensors (L_i, 4) ->
    (K, C, PH, PW). Differentiable with respect to ``input`` only."""
    check_input(input, "roi_pool")
    pooled = output_pair(output_size, "roi_pool")
    rois = as_rois(boxes, input, "roi_pool")
    return RoIPoolFunction.apply(input, rois=rois, pooled=pooled, spatial_scale=spatial_scale)


class RoIPool(Module):
    """``roi_pool`` as a module (torchvision.ops.RoIPool)."""

    def __init__(self, output_size, spatial_scale):
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale

    def forward(self, input, rois):
        return roi_pool(input, rois, self.output_size, self.spatial_scale)

    def extra_repr(self):
        return f"output_size={self.output_size}, spatial_scale={self.spatial_scale}"
