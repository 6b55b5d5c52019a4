"""Depthwise convolution computed directly, without im2col.

Notation
--------
N batch, C input channels, M output channels per input channel (the
depthwise multiplier), O = C * M output channels, KH, KW kernel, H, W
input size, OH, OW output size; strides sh, sw, dilations dh, dw, and
``top``, ``left`` the zero padding before the first row and column.

    x: (N, C, H, W)   w: (O, 1, KH, KW)   y, gy: (N, O, OH, OW)

    y[n, o, oh, ow] = sum_{kh, kw} w[o, 0, kh, kw] * xpad[n, o // M, oh*sh + kh*dh, ow*sw + kw*dw]

Each output channel sees one input channel, so a GEMM would multiply
(M, KH*KW) by (KH*KW, L) matrices: a handful of multiply-adds per entry
of a column matrix that costs a full copy of the input per tap. Summing
the KH*KW shifted rows of x straight into y costs the multiply-adds alone.

Each kernel runs ``prange`` over planes that belong to one task: output
planes (n, o) in forward, input planes (n, c) in the input gradient,
output channels o in the weight gradient. No two tasks write the same
element. Inner loops run along a row (ow), contiguous when sw == 1, as
``for j in range(n)`` over slices so that they vectorize (see im2col.py).
"""
import numba
import numpy
from numba import prange

from .im2col import _valid_range

_JIT = dict(parallel=True, cache=True)


@numba.njit(**_JIT)
def depthwise_forward(x, w, b, y, sh, sw, top, left, dh, dw):
    """y (N, O, OH, OW) = depthwise conv of x (N, C, H, W) with w (O, KH, KW),
    plus b (O,) (pass an array of zeros for no bias)."""
    N, C, H, W = x.shape
    O, KH, KW = w.shape
    OH, OW = y.shape[2], y.shape[3]
    M = O // C
    for task in prange(N * O):
        n = task // O
        o = task - n * O
        image = x[n, o // M]
        out = y[n, o]
        out[:, :] = b[o]
        for kh in range(KH):
            h0 = kh * dh - top
            oh_lo, oh_hi = _valid_range(H, OH, h0, sh)
            for kw in range(KW):
                w0 = kw * dw - left
                ow_lo, ow_hi = _valid_range(W, OW, w0, sw)
                tap = w[o, kh, kw]
                for oh in range(oh_lo, oh_hi):
                    src = image[h0 + oh * sh]
                    dst = out[oh, ow_lo:ow_hi]
                    if sw == 1:
                        src = src[w0 + ow_lo:w0 + ow_hi]
                        for j in range(ow_hi - ow_lo):
                            dst[j] += tap * src[j]
                    else:
                        for j in range(ow_hi - ow_lo):
                            dst[j] += tap * src[w0 + (ow_lo + j) * sw]


@numba.njit(**_JIT)
def depthwise_grad_input(gy, w, gx, sh, sw, top, left, dh, dw):
    """gx (N, C, H, W): the adjoint of ``depthwise_forward`` applied to
    gy (N, O, OH, OW); gx is overwritten."""
    N, C, H, W = gx.shape
    O, KH, KW = w.shape
    OH, OW = gy.shape[2], gy.shape[3]
    M = O // C
    for task in prange(N * C):
        n = task // C
        c = task - n * C
        image = gx[n, c]
        image[:, :] = 0
        for o in range(c * M, (c + 1) * M):
            plane = gy[n, o]
            for kh in range(KH):
                h0 = kh * dh - top
                oh_lo, oh_hi = _valid_range(H, OH, h0, sh)
                for kw in range(KW):
                    w0 = kw * dw - left
                    ow_lo, ow_hi = _valid_range(W, OW, w0, sw)
                    tap = w[o, kh, kw]
                    for oh in range(oh_lo, oh_hi):
                        src = plane[oh, ow_lo:ow_hi]
                        dst = image[h0 + oh * sh]
                        if sw == 1:
                            dst = dst[w0 + ow_lo:w0 + ow_hi]
                            for j in range(ow_hi - ow_lo):
                                dst[j] += tap * src[j]
                        else:
                            for j in range(ow_hi - ow_lo):
                                dst[w0 + (ow_lo + j) * sw] += tap * src[j]


@numba.njit(**_JIT)
def depthwise_grad_weight(x, gy, gw, sh, sw, top, left, dh, dw):
    """gw (O, KH, KW) = sum over n, oh, ow of gy[n, o, oh, ow] times the
    input pixel tap (kh, kw) saw; gw is overwritten."""
    N, C, H, W = x.shape
    O, KH, KW = gw.shape
    OH, OW = gy.shape[2], gy.shape[3]
    M = O // C
    for o in prange(O):
        for kh in range(KH):
            h0 = kh * dh - top
            oh_lo, oh_hi = _valid_range(H, OH, h0, sh)
            for kw in range(KW):
                w0 = kw * dw - left
                ow_lo, ow_hi = _valid_range(W, OW, w0, sw)
                # Per-column partial sums: independent adds that vectorize,
                # where one scalar accumulator would chain every add.
                acc = numpy.zeros(ow_hi - ow_lo, gw.dtype)
                for n in range(N):
                    image = x[n, o // M]
                    plane = gy[n, o]
                    for oh in range(oh_lo, oh_hi):
                        src = image[h0 + oh * sh]
                        g = plane[oh, ow_lo:ow_hi]
                        if sw == 1:
                            src = src[w0 + ow_lo:w0 + ow_hi]
                            for j in range(ow_hi - ow_lo):
                                acc[j] += g[j] * src[j]
                        else:
                            for j in range(ow_hi - ow_lo):
                                acc[j] += g[j] * src[w0 + (ow_lo + j) * sw]
                gw[o, kh, kw] = acc.sum()
