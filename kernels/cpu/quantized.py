"""Integer convolution for quantized inference, compiled with Numba.

Notation: N batch, C input channels, H, W input size, O output channels,
G groups (C / G = CG channels and O / G = OG outputs per group), KH, KW
kernel, OH, OW output size, K = CG*KH*KW the length of one dot product.

Contract (that of the NumPy reference ``quantized_conv2d`` in
``minicnn/ao/nn/quantized/functional.py``): uint8 activations ``x``
(N, C, H, W) with zero point ``x_zero_point`` and int8 weights ``w``
(O, CG, KH, KW) with one zero point per output channel; the result is the
exact int32 sum::

    acc[n, o, oh, ow] = sum over (c, kh, kw) of
        (x[n, g*CG + c, oh*SH - PH + kh*DH, ow*SW - PW + kw*DW] - x_zero_point)
        * (w[o, c, kh, kw] - w_zero_points[o])

where input pixels in the padding count as ``x_zero_point`` (the real
number 0), so they add nothing. Integer sums have no rounding, so this
kernel and the reference agree exactly, whatever the order.

How: the input is centered once (int16, x - x_zero_point). Dense convs
(groups == 1) gather the centered patches of each image into an int16
(OH*OW, K) table (im2col, padding as 0) and take, for each output channel
in parallel, one int32 dot product of length K per pixel. Grouped and
depthwise convs, whose dot products are short, run directly: one task per
(image, output channel) keeps an int32 (OH, OW) plane of sums and adds each
weight tap times the input rows it touches, skipping the padding.
"""
import numba
import numpy

from .loops import JIT, _valid_range


@numba.njit(parallel=True, **JIT)
def _conv_grouped(xc, w, w_zero_points, sh, sw, ph, pw, dh, dw, groups, out):
    N, C, H, W = xc.shape
    O, CG, KH, KW = w.shape
    OH, OW = out.shape[2], out.shape[3]
    OG = O // groups
    for task in numba.prange(N * O):
        n = task // O
        o = task - n * O
        c0 = (o // OG) * CG
        acc = numpy.zeros((OH, OW), numpy.int32)
        for c in range(CG):
            for kh in range(KH):
                oh_lo, oh_hi = _valid_range(H, OH, kh * dh - ph, sh)
                for kw in range(KW):
                    tap = numpy.int32(w[o, c, kh, kw]) - w_zero_points[o]
                    if tap == 0:
                        continue
                    ow_lo, ow_hi = _valid_range(W, OW, kw * dw - pw, sw)
                    for oh in range(oh_lo, oh_hi):
                        row = xc[n, c0 + c, oh * sh + kh * dh - ph]
                        for ow in range(ow_lo, ow_hi):
                            acc[oh, ow] += row[ow * sw + kw * dw - pw] * tap
        out[n, o] = acc


@numba.njit(parallel=True, **JIT)
def _conv_dense(xc, w, w_zero_points, sh, sw, ph, pw, dh, dw, out):
    N, C, H, W = xc.shape
    O, _, KH, KW = w.shape
    OH, OW = out.shape[2], out.shape[3]
    K = C * KH * KW
    P = OH * OW
    taps = numpy.empty((O, K), numpy.int32)
    for o in range(O):
        k = 0
        for c in range(C):
            for kh in range(KH):
                for kw in range(KW):
                    taps[o, k] = numpy.int32(w[o, c, kh, kw]) - w_zero_points[o]
                    k += 1
    cols = numpy.empty((P, K), numpy.int32)
    for n in range(N):
        for p in numba.prange(P):
            oh = p // OW
            ow = p - oh * OW
            k = 0
            for c in range(C):
                for kh in range(KH):
                    ih = oh * sh - ph + kh * dh
                    for kw in range(KW):
                        iw = ow * sw - pw + kw * dw
                        inside = 0 <= ih < H and 0 <= iw < W
                        cols[p, k] = xc[n, c, ih, iw] if inside else 0
                        k += 1
        for o in numba.prange(O):
            for p in range(P):
                acc = numpy.int32(0)
                for k in range(K):
                    acc += cols[p, k] * taps[o, k]
                out[n, o, p // OW, p - (p // OW) * OW] = acc


def quantized_conv2d(x, x_zero_point, w, w_zero_points, stride, padding, dilation, groups):
    """int32 (N, O, OH, OW) sums of centered uint8 x int8 products (see
    the module docstring)."""
    N, _, H, W = x.shape
    O, _, KH, KW = w.shape
    OH = (H + 2 * padding[0] - dilation[0] * (KH - 1) - 1) // stride[0] + 1
    OW = (W + 2 * padding[1] - dilation[1] * (KW - 1) - 1) // stride[1] + 1
    out = numpy.empty((N, O, OH, OW), numpy.int32)
    centered = numpy.subtract(x, numpy.int16(x_zero_point), dtype=numpy.int16)
    w = numpy.ascontiguousarray(w)
    w_zero_points = numpy.ascontiguousarray(w_zero_points, dtype=numpy.int32)
    geometry = (stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1])
    if groups == 1:
        _conv_dense(centered, w, w_zero_points, *geometry, out)
    else:
        _conv_grouped(centered, w, w_zero_points, *geometry, groups, out)
    return out
