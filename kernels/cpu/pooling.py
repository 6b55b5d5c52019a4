"""Pooling compiled with Numba: max, average and adaptive pools, forward
and backward.

Notation as in ``minicnn/functional/pooling.py``: N batch, C channels,
H, W input size, KH, KW kernel, SH, SW strides, PH, PW padding, DH, DW
dilation, OH, OW output size. ``win`` is that module's window geometry:
any object with the pairs ``in_hw``, ``kernel``, ``stride``, ``padding``,
``dilation`` and ``out_hw``.

Each wrapper has the contract of the NumPy reference it replaces and gives
the same numbers (the same maxima and offsets; sums up to rounding, as
these accumulate in float64).

How the loops differ from the reference
---------------------------------------
The reference loops over the KH*KW kernel offsets and moves whole-array
slices of a padded copy of the input. Here one thread takes one (n, c)
image plane and walks its windows directly, so

* no padded copy is made: a window position outside the input is skipped,
  which is what -inf padding (max) or zero padding (avg) amounts to;
* a window's maximum or sum stays in a register instead of a full
  (N, C, OH, OW) array per offset;
* in backward each plane of the input gradient is written by one thread
  only, so overlapping windows add up without atomics or locks.

Max pooling saves, like the reference, the kernel offset k = kh*KW + kw of
each maximum (uint8 or int32); adaptive max pooling saves the int64 flat
index row*W + col. A NaN always wins a max and the first of equal maxima
is kept (torch's rules), exactly as in the reference.
"""
import numba
import numpy
from numba import prange

_JIT = dict(parallel=True, cache=True)
# Sums may be reassociated: LLVM then vectorizes them into several partial
# sums instead of one chain of dependent adds (NaN and inf keep their IEEE
# meaning; only the rounding of a sum changes).
_SUM_JIT = dict(_JIT, fastmath={"reassoc"})


# -- max pooling ---------------------------------------------------------
@numba.njit(**_JIT)
def _max_forward(x, y, arg, kh_, kw_, sh, sw, ph, pw, dh, dw):
    """x (N, C, H, W) -> y (N, C, OH, OW) and arg, the offset of each max."""
    N, C, H, W = x.shape
    OH, OW = y.shape[2], y.shape[3]
    for task in prange(N * C):
        n, c = task // C, task % C
        plane = x[n, c]
        for oh in range(OH):
            h0 = oh * sh - ph
            for ow in range(OW):
                w0 = ow * sw - pw
                # -inf and offset 0 is what an all-padding window holds.
                best, k_best = -numpy.inf, 0
                for i in range(kh_):
                    h = h0 + i * dh
                    if h < 0 or h >= H:
                        continue
                    for j in range(kw_):
                        w = w0 + j * dw
                        if w < 0 or w >= W:
                            continue
                        v = plane[h, w]
                        if v > best or v != v:  # strict >: first max wins; NaN always wins
                            best, k_best = v, i * kw_ + j
                y[n, c, oh, ow] = best
                arg[n, c, oh, ow] = k_best


@numba.njit(**_JIT)
def _max_backward(gy, arg, gx, kw_, sh, sw, ph, pw, dh, dw):
    """gy (N, C, OH, OW) added into gx (N, C, H, W) at each saved maximum."""
    N, C, H, W = gx.shape
    OH, OW = gy.shape[2], gy.shape[3]
    for task in prange(N * C):
        n, c = task // C, task % C
        plane = gx[n, c]
        plane[:, :] = 0
        for oh in range(OH):
            for ow in range(OW):
                k = arg[n, c, oh, ow]
                h = oh * sh - ph + (k // kw_) * dh
                w = ow * sw - pw + (k % kw_) * dw
                if 0 <= h < H and 0 <= w < W:  # a max on the padding has no input
                    plane[h, w] += gy[n, c, oh, ow]


def max_pool2d_forward(x, win):
    """x (N, C, H, W) -> (y (N, C, OH, OW), arg): arg holds the kernel
    offset kh*KW + kw of each maximum, as ``win.offset_dtype()``."""
    x = numpy.ascontiguousarray(x)
    shape = x.shape[:2] + tuple(win.out_hw)
    y = numpy.empty(shape, dtype=x.dtype)
    arg = numpy.empty(shape, dtype=win.offset_dtype())
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = win.kernel, win.stride, win.padding, win.dilation
    _max_forward(x, y, arg, kh, kw, sh, sw, ph, pw, dh, dw)
    return y, arg


def max_pool2d_backward(gy, win, arg):
    """gy (N, C, OH, OW) -> gx (N, C, H, W): each output's gradient goes to
    the input position that held its maximum."""
    gy = numpy.ascontiguousarray(gy)
    gx = numpy.empty(gy.shape[:2] + tuple(win.in_hw), dtype=gy.dtype)
    (_, kw), (sh, sw), (ph, pw), (dh, dw) = win.kernel, win.stride, win.padding, win.dilation
    _max_backward(gy, numpy.ascontiguousarray(arg), gx, kw, sh, sw, ph, pw, dh, dw)
    return gx


# -- average pooling -----------------------------------------------------
@numba.njit(**_SUM_JIT)
def _avg_forward(x, divisor, y, kh_, kw_, sh, sw, ph, pw):
    """y = the sum of each window's input positions / divisor (OH, OW)."""
    N, C, H, W = x.shape
    OH, OW = y.shape[2], y.shape[3]
    for task in prange(N * C):
        n, c = task // C, task % C
        plane = x[n, c]
        for oh in range(OH):
            h_lo, h_hi = max(oh * sh - ph, 0), min(oh * sh - ph + kh_, H)
            for ow in range(OW):
                w_lo, w_hi = max(ow * sw - pw, 0), min(ow * sw - pw + kw_, W)
                total = 0.0
                for h in range(h_lo, h_hi):
                    for w in range(w_lo, w_hi):
                        total += plane[h, w]
                y[n, c, oh, ow] = total / divisor[oh, ow]


@numba.njit(**_JIT)
def _avg_backward(gy, divisor, gx, kh_, kw_, sh, sw, ph, pw):
    """gx = each output's gradient / divisor, added over its window."""
    N, C, H, W = gx.shape
    OH, OW = gy.shape[2], gy.shape[3]
    for task in prange(N * C):
        n, c = task // C, task % C
        plane = gx[n, c]
        plane[:, :] = 0
        for oh in range(OH):
            h_lo, h_hi = max(oh * sh - ph, 0), min(oh * sh - ph + kh_, H)
            for ow in range(OW):
                w_lo, w_hi = max(ow * sw - pw, 0), min(ow * sw - pw + kw_, W)
                g = gy[n, c, oh, ow] / divisor[oh, ow]
                for h in range(h_lo, h_hi):
                    for w in range(w_lo, w_hi):
                        plane[h, w] += g


def _divisor_grid(divisor, out_hw, dtype):
    """The divisor as a contiguous (OH, OW) array (it may come as a scalar,
    from ``divisor_override``)."""
    return numpy.ascontiguousarray(numpy.broadcast_to(numpy.asarray(divisor, dtype=dtype), tuple(out_hw)))


def avg_pool2d_forward(x, win, divisor):
    """x (N, C, H, W) -> y (N, C, OH, OW): window sums / divisor (OH, OW or
    a scalar). Average pools have no dilation."""
    x = numpy.ascontiguousarray(x)
    y = numpy.empty(x.shape[:2] + tuple(win.out_hw), dtype=x.dtype)
    (kh, kw), (sh, sw), (ph, pw) = win.kernel, win.stride, win.padding
    _avg_forward(x, _divisor_grid(divisor, win.out_hw, x.dtype), y, kh, kw, sh, sw, ph, pw)
    return y


def avg_pool2d_backward(gy, win, divisor):
    """gy (N, C, OH, OW) -> gx (N, C, H, W), the adjoint of the forward."""
    gy = numpy.ascontiguousarray(gy)
    gx = numpy.empty(gy.shape[:2] + tuple(win.in_hw), dtype=gy.dtype)
    (kh, kw), (sh, sw), (ph, pw) = win.kernel, win.stride, win.padding
    _avg_backward(gy, _divisor_grid(divisor, win.out_hw, gy.dtype), gx, kh, kw, sh, sw, ph, pw)
    return gx


# -- adaptive pooling ----------------------------------------------------
@numba.njit(inline="always")
def _bin(j, size, out):
    """torch's adaptive bin j of an axis: [floor(j*size/out), ceil((j+1)*size/out))."""
    return (j * size) // out, ((j + 1) * size + out - 1) // out


@numba.njit(**_SUM_JIT)
def _adaptive_avg_forward(x, y):
    N, C, H, W = x.shape
    OH, OW = y.shape[2], y.shape[3]
    for task in prange(N * C):
        n, c = task // C, task % C
        plane = x[n, c]
        for oh in range(OH):
            h_lo, h_hi = _bin(oh, H, OH)
            for ow in range(OW):
                w_lo, w_hi = _bin(ow, W, OW)
                total = 0.0
                for h in range(h_lo, h_hi):
                    for w in range(w_lo, w_hi):
                        total += plane[h, w]
                y[n, c, oh, ow] = total / ((h_hi - h_lo) * (w_hi - w_lo))


@numba.njit(**_JIT)
def _adaptive_avg_backward(gy, gx):
    N, C, H, W = gx.shape
    OH, OW = gy.shape[2], gy.shape[3]
    for task in prange(N * C):
        n, c = task // C, task % C
        plane = gx[n, c]
        plane[:, :] = 0
        for oh in range(OH):
            h_lo, h_hi = _bin(oh, H, OH)
            for ow in range(OW):
                w_lo, w_hi = _bin(ow, W, OW)
                g = gy[n, c, oh, ow] / ((h_hi - h_lo) * (w_hi - w_lo))
                for h in range(h_lo, h_hi):
                    for w in range(w_lo, w_hi):
                        plane[h, w] += g  # bins may overlap: a position may get several


@numba.njit(**_JIT)
def _adaptive_max_forward(x, y, idx):
    N, C, H, W = x.shape
    OH, OW = y.shape[2], y.shape[3]
    for task in prange(N * C):
        n, c = task // C, task % C
        plane = x[n, c]
        for oh in range(OH):
            h_lo, h_hi = _bin(oh, H, OH)
            for ow in range(OW):
                w_lo, w_hi = _bin(ow, W, OW)
                best, i_best = -numpy.inf, h_lo * W + w_lo
                for h in range(h_lo, h_hi):
                    for w in range(w_lo, w_hi):
                        v = plane[h, w]
                        if v > best or v != v:
                            best, i_best = v, h * W + w
                y[n, c, oh, ow] = best
                idx[n, c, oh, ow] = i_best


@numba.njit(**_JIT)
def _flat_scatter(gy, idx, gx):
    """gx (N, C, H*W) = gy (N, C, OH, OW) added at the flat plane indices idx."""
    N, C = gx.shape[0], gx.shape[1]
    OH, OW = gy.shape[2], gy.shape[3]
    for task in prange(N * C):
        n, c = task // C, task % C
        plane = gx[n, c]
        plane[:] = 0
        for oh in range(OH):
            for ow in range(OW):
                plane[idx[n, c, oh, ow]] += gy[n, c, oh, ow]


@numba.njit(**_SUM_JIT)
def _global_avg_forward(x, y):
    """x (P, L) -> y (P,): the mean of each row. The special case of one
    bin (global average pooling, the head of most CNNs): a flat loop over
    the whole plane vectorizes, where the bin loops, 7 long in a 7x7
    plane, would mostly pay loop overhead."""
    P, L = x.shape
    for p in prange(P):
        total = 0.0
        for l in range(L):
            total += x[p, l]
        y[p] = total / L


@numba.njit(**_JIT)
def _global_avg_backward(gy, gx):
    """gy (P,) -> gx (P, L): each row's gradient spread evenly over it."""
    P, L = gx.shape
    for p in prange(P):
        g = gy[p] / L
        for l in range(L):
            gx[p, l] = g


def adaptive_avg_pool2d_forward(x, out_hw):
    """x (N, C, H, W) -> the mean of each of the (OH, OW) bins."""
    x = numpy.ascontiguousarray(x)
    n, c, h, w = x.shape
    y = numpy.empty((n, c) + tuple(out_hw), dtype=x.dtype)
    if tuple(out_hw) == (1, 1):
        _global_avg_forward(x.reshape(n * c, h * w), y.reshape(n * c))
    else:
        _adaptive_avg_forward(x, y)
    return y


def adaptive_avg_pool2d_backward(gy, in_hw):
    """gy (N, C, OH, OW) -> gx (N, C, H, W): each bin's gradient spread
    evenly over the bin."""
    gy = numpy.ascontiguousarray(gy)
    (n, c, oh, ow), (h, w) = gy.shape, in_hw
    gx = numpy.empty((n, c, h, w), dtype=gy.dtype)
    if (oh, ow) == (1, 1):
        _global_avg_backward(gy.reshape(n * c), gx.reshape(n * c, h * w))
    else:
        _adaptive_avg_backward(gy, gx)
    return gx


def adaptive_max_pool2d_forward(x, out_hw):
    """x (N, C, H, W) -> (y, idx): the max of each bin and its int64 flat
    index row*W + col in the input plane."""
    x = numpy.ascontiguousarray(x)
    shape = x.shape[:2] + tuple(out_hw)
    y, idx = numpy.empty(shape, dtype=x.dtype), numpy.empty(shape, dtype=numpy.int64)
    _adaptive_max_forward(x, y, idx)
    return y, idx


def adaptive_max_pool2d_backward(gy, idx, in_shape):
    """gy (N, C, OH, OW) -> gx of shape ``in_shape`` (N, C, H, W), each
    gradient added at its flat index (overlapping bins may repeat one)."""
    gy = numpy.ascontiguousarray(gy)
    n, c, h, w = in_shape
    gx = numpy.empty((n, c, h * w), dtype=gy.dtype)
    _flat_scatter(gy, numpy.ascontiguousarray(idx), gx)
    return gx.reshape(in_shape)
