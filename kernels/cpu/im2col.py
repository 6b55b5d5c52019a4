"""im2col and col2im compiled with Numba, in the layout the GEMMs want.

Notation as in ``minicnn/functional/im2col.py``: N batch, C channels,
H, W input size, KH, KW kernel, OH, OW output size, strides sh, sw,
dilations dh, dw, padding ((top, bottom), (left, right)).

Layout
------
The NumPy reference returns ``cols`` as (N, C, KH, KW, OH, OW). These
kernels store the same numbers as (C, KH, KW, N, OH, OW): read as a
matrix, that is (C*KH*KW, N*OH*OW), the column matrix of the *whole batch*
with the images side by side. Then a convolution is one GEMM,
W (O, K) @ cols (K, N*L), instead of N small ones, and the weight gradient
gy (O, N*L) @ cols^T is one GEMM whose inner dimension runs over every
pixel of every image, which BLAS runs near its peak even when one image
has few pixels (7x7 in the last ResNet stage). The wrappers return the
standard (N, C, KH, KW, OH, OW) shape as a transposed *view* of that
buffer, so they agree with the reference entry by entry.

Parallelism
-----------
``prange`` runs over the (c, n) image planes. Each plane of ``cols`` is
written by one thread, and in col2im each plane of the image is summed by
one thread, so no two threads ever write the same element: col2im
accumulates without atomics or locks.

Padding is never materialized: rows and columns of a tap that fall
outside the image are written as zeros (im2col) or skipped (col2im).
"""
import numba
import numpy
from numba import prange

_JIT = dict(parallel=True, cache=True)


@numba.njit(inline="always")
def _valid_range(size, out_size, start, step):
    """The output indices o in [lo, hi) with 0 <= start + o * step < size."""
    lo = 0
    if start < 0:
        lo = (-start + step - 1) // step
    hi = out_size
    last = (size - 1 - start)
    if last < 0:
        hi = 0
    elif last // step + 1 < hi:
        hi = last // step + 1
    if hi < lo:
        hi = lo
    return lo, hi


@numba.njit(**_JIT)
def _im2col(x, cols, sh, sw, top, left, dh, dw):
    """x (N, C, H, W) -> cols (C, KH, KW, N, OH, OW), every entry written."""
    N, C, H, W = x.shape
    KH, KW, OH, OW = cols.shape[1], cols.shape[2], cols.shape[4], cols.shape[5]
    for task in prange(C * N):
        c = task // N
        n = task - c * N
        for kh in range(KH):
            h0 = kh * dh - top          # input row seen at oh = 0
            oh_lo, oh_hi = _valid_range(H, OH, h0, sh)
            for kw in range(KW):
                w0 = kw * dw - left
                ow_lo, ow_hi = _valid_range(W, OW, w0, sw)
                out = cols[c, kh, kw, n]
                for oh in range(OH):
                    row = out[oh]
                    if oh < oh_lo or oh >= oh_hi:
                        row[:] = 0
                        continue
                    src = x[n, c, h0 + oh * sh]
                    for ow in range(ow_lo):
                        row[ow] = 0
                    if sw == 1:
                        for ow in range(ow_lo, ow_hi):
                            row[ow] = src[w0 + ow]
                    else:
                        for ow in range(ow_lo, ow_hi):
                            row[ow] = src[w0 + ow * sw]
                    for ow in range(ow_hi, OW):
                        row[ow] = 0


@numba.njit(**_JIT)
def _col2im(cols, x, sh, sw, top, left, dh, dw):
    """cols (C, KH, KW, N, OH, OW) summed into x (N, C, H, W), zeroed first."""
    N, C, H, W = x.shape
    KH, KW, OH, OW = cols.shape[1], cols.shape[2], cols.shape[4], cols.shape[5]
    for task in prange(C * N):
        c = task // N
        n = task - c * N
        image = x[n, c]
        image[:, :] = 0
        for kh in range(KH):
            h0 = kh * dh - top
            oh_lo, oh_hi = _valid_range(H, OH, h0, sh)
            for kw in range(KW):
                w0 = kw * dw - left
                ow_lo, ow_hi = _valid_range(W, OW, w0, sw)
                plane = cols[c, kh, kw, n]
                for oh in range(oh_lo, oh_hi):
                    dst = image[h0 + oh * sh]
                    src = plane[oh]
                    if sw == 1:
                        for ow in range(ow_lo, ow_hi):
                            dst[w0 + ow] += src[ow]
                    else:
                        for ow in range(ow_lo, ow_hi):
                            dst[w0 + ow * sw] += src[ow]


def im2col_cnhw(x, kernel_size, stride, padding, dilation, out_size):
    """The columns of x (N, C, H, W) as a C-contiguous (C, KH, KW, N, OH, OW)
    array, i.e. the (C*KH*KW, N*OH*OW) column matrix of the whole batch."""
    x = numpy.ascontiguousarray(x)
    N, C = x.shape[:2]
    (KH, KW), (OH, OW) = kernel_size, out_size
    cols = numpy.empty((C, KH, KW, N, OH, OW), dtype=x.dtype)
    (sh, sw), (dh, dw), ((top, _), (left, _)) = stride, dilation, padding
    _im2col(x, cols, sh, sw, top, left, dh, dw)
    return cols


def col2im_cnhw(cols, in_size, stride, padding, dilation):
    """The adjoint of ``im2col_cnhw``: (C, KH, KW, N, OH, OW) -> (N, C, H, W)."""
    cols = numpy.ascontiguousarray(cols)
    C, N = cols.shape[0], cols.shape[3]
    x = numpy.empty((N, C) + tuple(in_size), dtype=cols.dtype)
    (sh, sw), (dh, dw), ((top, _), (left, _)) = stride, dilation, padding
    _col2im(cols, x, sh, sw, top, left, dh, dw)
    return x


def im2col(x, kernel_size, stride, padding, dilation, out_size=None):
    """Same contract and result as the NumPy reference ``im2col``:
    (N, C, KH, KW, OH, OW), here a transposed view of the
    (C, KH, KW, N, OH, OW) buffer that ``im2col_cnhw`` fills."""
    if out_size is None:
        (KH, KW), (sh, sw), (dh, dw) = kernel_size, stride, dilation
        (top, bottom), (left, right) = padding
        out_size = ((x.shape[2] + top + bottom - dh * (KH - 1) - 1) // sh + 1,
                    (x.shape[3] + left + right - dw * (KW - 1) - 1) // sw + 1)
    cols = im2col_cnhw(x, kernel_size, stride, padding, dilation, out_size)
    return cols.transpose(3, 0, 1, 2, 4, 5)


def col2im(cols, in_size, stride, padding, dilation):
    """Same contract and result as the NumPy reference ``col2im``: cols
    (N, C, KH, KW, OH, OW) -> x (N, C, H, W). A cols that ``im2col`` made
    is already in the kernel's layout and is not copied."""
    return col2im_cnhw(cols.transpose(1, 2, 3, 0, 4, 5), in_size, stride, padding, dilation)
