"""RoIAlign compiled with Numba, forward and backward, with the contracts
of the NumPy references in ``minicnn/ops/roi_align.py`` (read its
docstring for the sampling rule).

The kernels walk the sample points as torchvision's CPU kernel does: for
each region, the sample rows y(ph, iy) and columns x(pw, ix) are set up
once (their two pixels and two weights, ``_axis``), then each bin adds
hy*hx*X[yl, xl] + hy*lx*X[yl, xh] + ly*hx*X[yh, xl] + ly*lx*X[yh, xh]
over its samples and divides by their count, in the input's dtype and
in that order, so float32 results round as torchvision's do.

Channels innermost (forward): every channel of a region reads the same
pixels with the same weights, so the forward reads a channel-last copy
of the map (N, H, W, C), where a pixel's C values are contiguous, and
does each sample's four products for all channels in one loop that the
compiler turns into vector instructions. Each element still sums the
same terms in the same order, so the numbers are those of a loop over
channels outside. A region's bins are gathered as (PH PW, C) and
written out transposed to (C, PH, PW) once. ``multiscale_roi_align_forward``
reads each region from its own pyramid level into one output, for
MultiScaleRoIAlign: no per-level pieces to join and reorder.

Threads: the forward gives each thread whole regions (each writes only
its own outputs). The backward scatters every region's gradient into
the input's gradient, where regions overlap; it gives each thread whole
channels instead, so no two threads ever add into the same plane.

Arithmetic stays in the dtype: every float constant (1/2, the integers
a sample index or a pixel index stands for) comes from a table ``ints``
of the dtype, since Numba, like NumPy, would widen an int mixed with a
float32 to float64.
"""
import math

import numba
import numpy

from .loops import JIT as _JIT, _share
from .threads import parallel_parts


@numba.njit(inline="always")
def _axis(start, bin_size, grid, pooled, length, ints, low, high, w_low, w_high):
    """The ``pooled * grid`` samples of one axis: for sample s of bin p,
    low[s], high[s] are its two pixels and w_low[s], w_high[s] their
    weights (both 0 for a sample more than a pixel outside)."""
    one = ints[1]
    half = one / ints[2]
    for p in range(pooled):
        for i in range(grid):
            s = p * grid + i
            c = start + ints[p] * bin_size + (ints[i] + half) * bin_size / ints[grid]
            if c < -1.0 or c > length:
                low[s], high[s], w_low[s], w_high[s] = 0, 0, 0, 0
                continue
            if c <= 0:
                c = ints[0]
            lo = int(c)
            if lo >= length - 1:
                lo = length - 1
                hi = lo
                c = ints[lo]
            else:
                hi = lo + 1
            frac = c - ints[lo]
            low[s], high[s], w_low[s], w_high[s] = lo, hi, one - frac, frac


@numba.njit(inline="always")
def _geometry(rois, k, spatial_scale, aligned, sampling_ratio, PH, PW, ints):
    """(n, y0, bh, gh, x0, bw, gw) of region k, as torchvision computes
    them (``spatial_scale`` a scalar of the dtype)."""
    scale = spatial_scale
    offset = ints[1] / ints[2] if aligned else ints[0]
    y0 = rois[k, 2] * scale - offset
    x0 = rois[k, 1] * scale - offset
    h = rois[k, 4] * scale - offset - y0
    w = rois[k, 3] * scale - offset - x0
    if not aligned:
        h = max(h, ints[1])
        w = max(w, ints[1])
    bh, bw = h / ints[PH], w / ints[PW]
    gh = sampling_ratio if sampling_ratio > 0 else max(int(math.ceil(h / ints[PH])), 0)
    gw = sampling_ratio if sampling_ratio > 0 else max(int(math.ceil(w / ints[PW])), 0)
    return int(rois[k, 0]), y0, bh, gh, x0, bw, gw


@numba.njit(inline="always")
def _samples(rois, k, spatial_scale, aligned, sampling_ratio, PH, PW, H, W, ints):
    """Region k's batch index, grid (gh, gw), sample count, and its
    sample rows and columns as ``_axis`` sets them up."""
    n, y0, bh, gh, x0, bw, gw = _geometry(rois, k, spatial_scale, aligned, sampling_ratio, PH, PW, ints)
    yl, yh = numpy.empty(PH * gh, numpy.int64), numpy.empty(PH * gh, numpy.int64)
    wyl, wyh = numpy.empty(PH * gh, ints.dtype), numpy.empty(PH * gh, ints.dtype)
    xl, xh = numpy.empty(PW * gw, numpy.int64), numpy.empty(PW * gw, numpy.int64)
    wxl, wxh = numpy.empty(PW * gw, ints.dtype), numpy.empty(PW * gw, ints.dtype)
    _axis(y0, bh, gh, PH, H, ints, yl, yh, wyl, wyh)
    _axis(x0, bw, gw, PW, W, ints, xl, xh, wxl, wxh)
    count = ints[gh] * ints[gw] if gh * gw > 0 else ints[1]
    return n, gh, gw, count, yl, yh, wyl, wyh, xl, xh, wxl, wxh


@numba.njit(**_JIT)
def _forward(x, rois, members, y, spatial_scale, sampling_ratio, aligned, ints, part, parts):
    """Regions rois[members[j]] read from the channel-last map x
    (N, H, W, C) into y[members[j]] (C, PH, PW)."""
    N, H, W, C = x.shape
    PH, PW = y.shape[2], y.shape[3]
    bins = numpy.empty((PH * PW, C), dtype=y.dtype)
    for j in range(*_share(members.shape[0], part, parts)):
        k = members[j]
        n, gh, gw, count, yl, yh, wyl, wyh, xl, xh, wxl, wxh = _samples(
            rois, k, spatial_scale, aligned, sampling_ratio, PH, PW, H, W, ints)
        for ph in range(PH):
            for pw in range(PW):
                total = bins[ph * PW + pw]
                total[:] = ints[0]
                for iy in range(ph * gh, (ph + 1) * gh):
                    for ix in range(pw * gw, (pw + 1) * gw):
                        w1, w2 = wyl[iy] * wxl[ix], wyl[iy] * wxh[ix]
                        w3, w4 = wyh[iy] * wxl[ix], wyh[iy] * wxh[ix]
                        v1, v2 = x[n, yl[iy], xl[ix]], x[n, yl[iy], xh[ix]]
                        v3, v4 = x[n, yh[iy], xl[ix]], x[n, yh[iy], xh[ix]]
                        for c in range(C):
                            total[c] += w1 * v1[c] + w2 * v2[c] + w3 * v3[c] + w4 * v4[c]
        for c in range(C):
            for ph in range(PH):
                for pw in range(PW):
                    y[k, c, ph, pw] = bins[ph * PW + pw, c] / count


@numba.njit(**_JIT)
def _backward(gy, rois, gx, spatial_scale, sampling_ratio, aligned, ints, part, parts):
    N, C, H, W = gx.shape
    PH, PW = gy.shape[2], gy.shape[3]
    c0, c1 = _share(C, part, parts)
    for k in range(rois.shape[0]):
        n, gh, gw, count, yl, yh, wyl, wyh, xl, xh, wxl, wxh = _samples(
            rois, k, spatial_scale, aligned, sampling_ratio, PH, PW, H, W, ints)
        for c in range(c0, c1):
            plane = gx[n, c]
            for ph in range(PH):
                for pw in range(PW):
                    g = gy[k, c, ph, pw]
                    for iy in range(ph * gh, (ph + 1) * gh):
                        for ix in range(pw * gw, (pw + 1) * gw):
                            plane[yl[iy], xl[ix]] += g * (wyl[iy] * wxl[ix]) / count
                            plane[yl[iy], xh[ix]] += g * (wyl[iy] * wxh[ix]) / count
                            plane[yh[iy], xl[ix]] += g * (wyh[iy] * wxl[ix]) / count
                            plane[yh[iy], xh[ix]] += g * (wyh[iy] * wxh[ix]) / count


def _ints(dtype, *sizes):
    """0, 1, 2, ... up to past every size a kernel indexes it with, in ``dtype``."""
    return numpy.arange(max(sizes) + 3, dtype=dtype)


def _max_grid(rois, spatial_scale, sampling_ratio, H, W):
    """An upper bound on any sample or bin index: regions may be larger
    than the map, so their adaptive grids too."""
    if sampling_ratio > 0 or rois.shape[0] == 0:
        return sampling_ratio
    extent = numpy.abs(rois[:, 1:]).max() * abs(spatial_scale) * 2 + 2
    return int(min(extent, 1 << 30))


def roi_align_forward(x, rois, pooled, spatial_scale, sampling_ratio, aligned):
    """x (N, C, H, W), rois (K, 5) -> (K, C, PH, PW)."""
    levels = numpy.zeros(rois.shape[0], dtype=numpy.int64)
    return multiscale_roi_align_forward(rois, levels, pooled, (spatial_scale,), sampling_ratio, aligned, x)


def multiscale_roi_align_forward(rois, levels, pooled, scales, sampling_ratio, aligned, *maps):
    """rois (K, 5), levels (K,) ints, maps[l] (N, C, H_l, W_l) read at
    scales[l] -> (K, C, PH, PW): region k from maps[levels[k]]."""
    dtype = maps[0].dtype
    rois = numpy.ascontiguousarray(rois, dtype=dtype)
    PH, PW = pooled
    y = numpy.empty((rois.shape[0], maps[0].shape[1], PH, PW), dtype=dtype)
    for level, (x, scale) in enumerate(zip(maps, scales)):
        members = numpy.flatnonzero(levels == level)
        if members.size == 0:
            continue
        channel_last = numpy.ascontiguousarray(x.transpose(0, 2, 3, 1))
        ints = _ints(dtype, PH, PW, *x.shape[2:], _max_grid(rois[members], scale, sampling_ratio, *x.shape[2:]))
        parallel_parts(_forward, x.size + members.size * y[0].size, channel_last, rois, members, y,
                       dtype.type(scale), int(sampling_ratio), bool(aligned), ints)
    return y


def roi_align_backward(gy, rois, in_shape, spatial_scale, sampling_ratio, aligned):
    """gy (K, C, PH, PW) -> gx of ``in_shape`` (N, C, H, W)."""
    gy, rois = numpy.ascontiguousarray(gy), numpy.ascontiguousarray(rois, dtype=gy.dtype)
    gx = numpy.zeros(tuple(in_shape), dtype=gy.dtype)
    ints = _ints(gy.dtype, *gy.shape[2:], *in_shape[2:],
                 _max_grid(rois, spatial_scale, sampling_ratio, *in_shape[2:]))
    parallel_parts(_backward, gx.size + gy.size, gy, rois, gx, gy.dtype.type(spatial_scale), int(sampling_ratio),
                   bool(aligned), ints)
    return gx
