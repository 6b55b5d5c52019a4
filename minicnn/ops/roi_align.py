"""RoIAlign (He et al., Mask R-CNN, 2017): a fixed-size feature map for
each region of interest, read from a bigger map by bilinear sampling.

Notation: input (N, C, H, W); K regions, rows (n, x1, y1, x2, y2) in
image coordinates; spatial_scale s maps them onto the map; output
(K, C, PH, PW).

Each region, scaled by s (and shifted by -1/2 when ``aligned``, so that
pixel centres sit at integer coordinates), is cut into PH x PW bins of
size bh x bw. Each bin averages gh x gw sample points, evenly spaced::

    y(ph, iy) = y1 + ph * bh + (iy + 1/2) * bh / gh,   iy = 0 .. gh-1

(the same along x), each read by bilinear interpolation. The grid is
``sampling_ratio`` points per side, or, for ``sampling_ratio <= 0``,
adaptive: gh = ceil(region height / PH). Not ``aligned`` (the legacy
behaviour, torchvision's default) a region is at least 1 x 1. A sample
more than one pixel outside the map reads 0; one within a pixel of the
border reads the border.

Separable weights
-----------------
The bilinear weight of pixel (h, w) for sample (y, x) is a product
a(y, h) b(x, w): along each axis the sample sits between two pixels and
gives them 1 - l and l. So a bin's average is

    out[k, c, ph, pw] = sum_h sum_w Ay[ph, h] X[n, c, h, w] Ax[pw, w]
    Ay[ph, h] = (1/gh) sum_iy a(y(ph, iy), h)        (Ax alike)

that is, out[k, c] = Ay X[n, c] Ax^T: two small matrix products per
region. The NumPy reference computes exactly this (over the rows and
columns the region touches); its adjoint, the gradient, is
gX[n, c] += Ay^T gY[k, c] Ax. The Numba and CUDA kernels walk the
samples instead (torchvision's order of operations), as the same weights.

Regions have no gradient (as in torchvision: the output is not a
differentiable function of box edges at bin boundaries anyway).
"""
import math

import numpy

from ..autograd import Function
from ..backend import get_array_module
from ..kernels import registry
from ..nn import Module
from ._rois import as_rois, check_input, output_pair

__all__ = ["roi_align", "RoIAlign"]


def region_geometry(roi, spatial_scale, pooled, sampling_ratio, aligned, dtype):
    """(batch index, [(start, bin size, grid, count of bins)] for y and x)
    of one roi row, in ``dtype`` arithmetic as torchvision's kernel."""
    t = numpy.dtype(dtype).type
    offset = t(0.5) if aligned else t(0)
    n = int(roi[0])
    axes = []
    for lo, hi, p in ((roi[2], roi[4], pooled[0]), (roi[1], roi[3], pooled[1])):
        start = t(lo) * t(spatial_scale) - offset
        size = t(hi) * t(spatial_scale) - offset - start
        if not aligned:
            size = max(size, t(1))
        bin_size = size / t(p)
        grid = sampling_ratio if sampling_ratio > 0 else int(math.ceil(size / t(p)))
        axes.append((start, bin_size, max(grid, 0), p))
    return n, axes


def axis_weights(start, bin_size, grid, pooled, length, dtype):
    """The (pooled, length) matrix A of one axis: A[p, i] is the mean over
    the bin's ``grid`` samples of their bilinear weight on pixel i."""
    t = numpy.dtype(dtype).type
    a = numpy.zeros((pooled, length), dtype=dtype)
    if grid == 0:
        return a
    p = numpy.repeat(numpy.arange(pooled), grid)
    i = numpy.tile(numpy.arange(grid), pooled)
    c = start + p.astype(dtype) * bin_size + (i.astype(dtype) + t(0.5)) * bin_size / t(grid)
    valid = ~((c < -1.0) | (c > length))
    c = numpy.maximum(c, t(0))
    low = c.astype(numpy.int64)
    edge = low >= length - 1
    low = numpy.where(edge, length - 1, low)
    high = numpy.where(edge, length - 1, low + 1)
    c = numpy.where(edge, low.astype(dtype), c)
    frac = c - low.astype(dtype)
    numpy.add.at(a, (p[valid], low[valid]), (t(1) - frac[valid]))
    numpy.add.at(a, (p[valid], high[valid]), frac[valid])
    return a


def _weights(roi, in_hw, pooled, spatial_scale, sampling_ratio, aligned, dtype):
    n, ((y0, bh, gh, ph), (x0, bw, gw, pw)) = region_geometry(roi, spatial_scale, pooled, sampling_ratio,
                                                              aligned, dtype)
    count = max(gh * gw, 1)
    return n, axis_weights(y0, bh, gh, ph, in_hw[0], dtype), axis_weights(x0, bw, gw, pw, in_hw[1], dtype), count


@registry.register("roi_align_forward", "numpy")
def roi_align_forward_reference(x, rois, pooled, spatial_scale, sampling_ratio, aligned):
    """x (N, C, H, W), rois (K, 5) -> (K, C, PH, PW): out[k, c] = Ay X Ax^T / count."""
    xp = get_array_module(x)
    y = xp.zeros((rois.shape[0], x.shape[1]) + tuple(pooled), dtype=x.dtype)
    for k, roi in enumerate(numpy.asarray(rois.get() if xp is not numpy else rois)):
        n, ay, ax, count = _weights(roi, x.shape[2:], pooled, spatial_scale, sampling_ratio, aligned, x.dtype)
        rows, cols = numpy.nonzero(ay.any(0))[0], numpy.nonzero(ax.any(0))[0]
        if rows.size and cols.size:             # only the rows and columns the region touches
            r, c = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
            y[k] = xp.asarray(ay[:, r]) @ x[n, :, r, c] @ xp.asarray(ax[:, c].T) / x.dtype.type(count)
    return y


@registry.register("roi_align_backward", "numpy")
def roi_align_backward_reference(gy, rois, in_shape, spatial_scale, sampling_ratio, aligned):
    """gy (K, C, PH, PW) -> gx of ``in_shape`` (N, C, H, W): the adjoint,
    gX[n, c] += Ay^T gY[k, c] Ax / count."""
    xp = get_array_module(gy)
    gx = xp.zeros(tuple(in_shape), dtype=gy.dtype)
    pooled = gy.shape[2:]
    for k, roi in enumerate(numpy.asarray(rois.get() if xp is not numpy else rois)):
        n, ay, ax, count = _weights(roi, in_shape[2:], pooled, spatial_scale, sampling_ratio, aligned, gy.dtype)
        rows, cols = numpy.nonzero(ay.any(0))[0], numpy.nonzero(ax.any(0))[0]
        if rows.size and cols.size:
            r, c = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
            gx[n, :, r, c] += xp.asarray(ay[:, r].T) @ gy[k] @ xp.asarray(ax[:, c]) / gy.dtype.type(count)
    return gx


registry.register("roi_align_forward", "numba", "minicnn.kernels.cpu.roi_align:roi_align_forward")
registry.register("roi_align_backward", "numba", "minicnn.kernels.cpu.roi_align:roi_align_backward")


class RoIAlignFunction(Function):
    """input (N, C, H, W) -> (K, C, PH, PW); the rois are a constant."""

    def __init__(self, rois, pooled, spatial_scale, sampling_ratio, aligned):
        self.rois, self.pooled = rois, pooled
        self.options = (float(spatial_scale), int(sampling_ratio), bool(aligned))

    def forward(self, x):
        self.in_shape = x.shape
        xp = get_array_module(x)
        return registry.lookup("roi_align_forward", xp)(xp.ascontiguousarray(x), self.rois, self.pooled,
                                                          *self.options)

    def backward(self, gy):
        g = gy.data
        xp = get_array_module(g)
        return registry.lookup("roi_align_backward", xp)(xp.ascontiguousarray(g), self.rois, self.in_shape,
                                                           *self.options)


def roi_align(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """RoIAlign (see the module docstring): ``input`` (N, C, H, W),
    ``boxes`` a Tensor (K, 5) of (batch index, x1, y1, x2, y2) or a list
    of N Tensors (L_i, 4) -> (K, C, PH, PW), ``output_size`` = PH or
    (PH, PW). Differentiable with respect to ``input`` only."""
    check_input(input, "roi_align")
    pooled = output_pair(output_size, "roi_align")
    rois = as_rois(boxes, input, "roi_align")
    return RoIAlignFunction.apply(input, rois=rois, pooled=pooled, spatial_scale=spatial_scale,
                                  sampling_ratio=sampling_ratio, aligned=aligned)


class RoIAlign(Module):
    """``roi_align`` as a module (torchvision.ops.RoIAlign)."""

    def __init__(self, output_size, spatial_scale, sampling_ratio, aligned=False):
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, input, rois):
        return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)

    def extra_repr(self):
        return (f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}")
