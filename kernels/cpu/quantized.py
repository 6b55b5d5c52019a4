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

How: the input is centered once (int16, x - x_zero_point). For each image
the centered patches are gathered into an int16 (C*KH*KW, OH*OW) table
(im2col: each row one (channel, tap) pair, copied row by row, padding as
0), rows in parallel. The rows of group g are the block
[g*K, (g+1)*K), so every group reads its own rows. Then each task takes up
to 4 output channels of one group and keeps their int32 (4, OH*OW) sums:
for each of its K rows it adds tap * row along the whole row, a long
contiguous loop Numba vectorizes, tasks in parallel. Depthwise convs are
the case K = KH*KW, one channel per task.
"""
import numba
import numpy

from .loops import JIT


@numba.njit(parallel=True, **JIT)
def _conv(xc, taps, sh, sw, ph, pw, dh, dw, groups, KH, KW, cols, out):
    N, C, H, W = xc.shape
    O, K = taps.shape
    OH, OW = out.shape[2], out.shape[3]
    P = OH * OW
    OG = O // groups
    blocks = (OG + 3) // 4
    for n in range(N):
        for r in numba.prange(C * KH * KW):
            c = r // (KH * KW)
            kh = (r // KW) % KH
            kw = r % KW
            for oh in range(OH):
                ih = oh * sh - ph + kh * dh
                base = oh * OW
                if ih < 0 or ih >= H:
                    for ow in range(OW):
                        cols[r, base + ow] = 0
                else:
                    for ow in range(OW):
                        iw = ow * sw - pw + kw * dw
                        cols[r, base + ow] = xc[n, c, ih, iw] if 0 <= iw < W else 0
        for task in numba.prange(groups * blocks):
            g = task // blocks
            o0 = g * OG + (task - g * blocks) * 4
            count = min(4, (g + 1) * OG - o0)
            acc = numpy.zeros((4, P), numpy.int32)
            for k in range(K):
                row = cols[g * K + k]
                for j in range(count):
                    tap = taps[o0 + j, k]
                    if tap != 0:
                        sums = acc[j]
                        for p in range(P):
                            sums[p] += row[p] * tap
            for j in range(count):
                for p in range(P):
                    out[n, o0 + j, p // OW, p % OW] = acc[j, p]


def quantized_conv2d(x, x_zero_point, w, w_zero_points, stride, padding, dilation, groups):
    """int32 (N, O, OH, OW) sums of centered uint8 x int8 products (see
    the module docstring)."""
    N, C, H, W = x.shape
    O, _, KH, KW = w.shape
    OH = (H + 2 * padding[0] - dilation[0] * (KH - 1) - 1) // stride[0] + 1
    OW = (W + 2 * padding[1] - dilation[1] * (KW - 1) - 1) // stride[1] + 1
    out = numpy.empty((N, O, OH, OW), numpy.int32)
    centered = numpy.subtract(x, numpy.int16(x_zero_point), dtype=numpy.int16)
    taps = w.reshape(O, -1).astype(numpy.int32) - numpy.asarray(w_zero_points, numpy.int32).reshape(-1, 1)
    cols = numpy.empty((C * KH * KW, OH * OW), numpy.int16)
    _conv(centered, taps, stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1], groups, KH, KW,
          cols, out)
    return out
