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

How: per image and group, the centered input patches are gathered once
into an int32 (OH*OW, K) table (im2col), then each output channel is one
int32 dot product per pixel, output channels in parallel.
"""
import numba
import numpy

from .loops import JIT


@numba.njit(parallel=True, **JIT)
def _conv(x, x_zero_point, w, w_zero_points, sh, sw, ph, pw, dh, dw, groups, out):
    N, C, H, W = x.shape
    O, CG, KH, KW = w.shape
    OH, OW = out.shape[2], out.shape[3]
    OG = O // groups
    K = CG * KH * KW
    P = OH * OW
    centered = numpy.empty((O, K), numpy.int32)
    for o in numba.prange(O):
        k = 0
        for c in range(CG):
            for kh in range(KH):
                for kw in range(KW):
                    centered[o, k] = numpy.int32(w[o, c, kh, kw]) - w_zero_points[o]
                    k += 1
    cols = numpy.zeros((P, K), numpy.int32)
    for n in range(N):
        for g in range(groups):
            for p in numba.prange(P):
                oh = p // OW
                ow = p - oh * OW
                k = 0
                for c in range(CG):
                    for kh in range(KH):
                        ih = oh * sh - ph + kh * dh
                        for kw in range(KW):
                            iw = ow * sw - pw + kw * dw
                            if 0 <= ih < H and 0 <= iw < W:
                                cols[p, k] = numpy.int32(x[n, g * CG + c, ih, iw]) - x_zero_point
                            else:
                                cols[p, k] = 0
                            k += 1
            for oc in numba.prange(OG):
                o = g * OG + oc
                for p in range(P):
                    acc = numpy.int32(0)
                    for k in range(K):
                        acc += cols[p, k] * centered[o, k]
                    out[n, o, p // OW, p % OW] = acc


def quantized_conv2d(x, x_zero_point, w, w_zero_points, stride, padding, dilation, groups):
    """int32 (N, O, OH, OW) sums of centered uint8 x int8 products (see
    the module docstring)."""
    N, _, H, W = x.shape
    O, _, KH, KW = w.shape
    OH = (H + 2 * padding[0] - dilation[0] * (KH - 1) - 1) // stride[0] + 1
    OW = (W + 2 * padding[1] - dilation[1] * (KW - 1) - 1) // stride[1] + 1
    out = numpy.empty((N, O, OH, OW), numpy.int32)
    _conv(numpy.ascontiguousarray(x), numpy.int32(x_zero_point), numpy.ascontiguousarray(w),
          numpy.ascontiguousarray(w_zero_points, dtype=numpy.int32), stride[0], stride[1], padding[0],
          padding[1], dilation[0], dilation[1], groups, out)
    return out
