"""float32 depthwise convolution with 16 channels a vector.

Notation as in ``depthwise.py``: N batch, C channels (one output channel
each), KH, KW kernel, T = KH*KW taps, H, W input size, OH, OW output size,
strides sh, sw, dilations dh, dw, ``top``, ``left`` the padding; P the
pixels of a register tile.

Why
---
``depthwise.py`` sums a plane's taps one plane at a time, and
``implicit_gemm.py``'s depthwise tile puts 16 output pixels of one
channel in a vector: every tap then loads 16 inputs at an offset that is
rarely a multiple of 16 floats, so most loads straddle two cache lines,
and a stride of 2 needs the planes cut into phases first. Here a vector
holds one pixel's 16 channels (as XNNPACK's and oneDNN's depthwise
kernels do): every tap of every pixel is one aligned 64-byte load,
multiplied by the tap's 16 weights, at any stride and dilation.

The layout: a task takes 16 channels of one image (a *channel block*)
and runs down the output a *band* of rows at a time:

* ``xb`` (rows, Wp, 16): the band's padded input rows, 16 channels a
  pixel, zero in the padding; filled from x by 16 x 16 blocks transposed
  in registers (``implicit_channels._transpose16``).
* a tile of P output pixels of the band (rows run on: a band's pixels
  are numbered row by row) keeps P vectors of sums in registers through
  all T taps; each tap one vector of weights and P loads
  (``_tile``). The pixels' offsets in ``xb`` come from a table, so the
  tile's pixels may cross a row and the last tile's spare ones read
  pixel 0.
* ``yb`` (band pixels, 16): the band's sums, pixel by pixel; transposed
  back to y's rows 16 x 16 at a time (the band's pixels are consecutive
  in each channel's plane).

A channel block past C (C not a multiple of 16) reads zeros and its
spare lanes are dropped. The sums run tap by tap from the bias, as
``depthwise.py``'s: the results agree with it to float32 rounding.
"""
import math

import numba
import numpy
from numba import types
from numba.core import cgutils
from numba.core.extending import intrinsic

from .implicit_channels import _offset_pointers, _taps, _transpose16, _vectors
from .implicit_gemm import WIDE, _F32, _constants, _fma, _intp_args
from .loops import JIT, _clamp_value, _share
from .threads import parallel_parts
from .vnni import _pointer

#: Pixels of a register tile: P vectors of sums, one of weights (on AVX2,
#: ``implicit_gemm.WIDE`` false, each vector is two of its 16 registers).
P = 12 if WIDE else 6
#: Most bytes of a band's input rows (``xb``): with its sums, in L2.
BAND_BYTES = 256 << 10


@intrinsic
def _tile(typingctx, xb, pixels, pixel_at, tap_offsets, wb, w_offset, bias, b_offset, out, out_offset):
    """out[out_offset + 16 p + l] = bias[b_offset + l] + the sum over taps
    t of xb[pixels[pixel_at + p] + tap_offsets[t] + l] * wb[w_offset + 16
    t + l], for p < P pixels and l < 16 channels. All arrays flat float32
    (``pixels``, ``tap_offsets`` intp)."""
    dtypes = [getattr(array, "dtype", None) for array in (xb, pixels, tap_offsets, wb, bias, out)]
    if dtypes != [types.float32, types.intp, types.intp, types.float32, types.float32, types.float32]:
        return None     # the IR below reads exactly these element types
    sig = types.void(xb, pixels, pixel_at, tap_offsets, wb, w_offset, bias, b_offset, out, out_offset)

    def codegen(context, builder, signature, args):
        kinds = signature.args
        xb, pixels, pixel_at, tap_offsets, wb, w_offset, bias, b_offset, out, out_offset = _intp_args(
            context, builder, signature, args)
        const, fma = _constants(context), _fma(builder)
        vector_at = _vectors(builder)
        b0 = _pointer(context, builder, kinds[6], bias, b_offset, _F32)
        start = builder.load(vector_at(b0, const(0)), align=4)
        acc = [cgutils.alloca_once_value(builder, start) for _ in range(P)]
        x0 = _pointer(context, builder, kinds[0], xb, const(0), _F32)
        x_pixels = _offset_pointers(context, builder, x0, kinds[1], pixels, pixel_at, P)
        tap_start, taps = _taps(context, builder, kinds[3], tap_offsets)
        w0 = _pointer(context, builder, kinds[4], wb, w_offset, _F32)
        with cgutils.for_range(builder, taps) as tap:
            offset = builder.load(builder.gep(tap_start, [tap.index]))
            weights = builder.load(vector_at(w0, builder.mul(tap.index, const(16))), align=4)
            for p in range(P):
                inputs = builder.load(vector_at(x_pixels[p], offset), align=4)
                builder.store(builder.call(fma, [weights, inputs, builder.load(acc[p])]), acc[p])
        out0 = _pointer(context, builder, kinds[8], out, out_offset, _F32)
        for p in range(P):
            builder.store(builder.load(acc[p]), vector_at(out0, const(16 * p)), align=4)
        return context.get_dummy_value()
    return sig, codegen


@numba.njit(**JIT)
def _fill_band(x, n, c0, ih0, rows, top, left, Wp, xb, offsets):
    """xb (rows, Wp, 16) = channels c0 ... c0+15 of image n of x at padded
    rows ih0 ... ih0+rows-1 (input row ih0 - top on), zero where that is
    padding or a channel past C."""
    N, C, H, W = x.shape
    flat_x, flat_xb = x.reshape(-1), xb.reshape(-1)
    flat_xb[:rows * Wp * 16] = 0
    lanes = min(16, C - c0)
    width = min(W, Wp - left)                      # the input columns the band's taps read
    for r in range(rows):
        ih = ih0 + r - top
        if ih < 0 or ih >= H:
            continue
        base = r * Wp * 16 + left * 16             # xb's pixel of input column 0
        src = ((n * C + c0) * H + ih) * W          # channel c0's row ih
        iw = 0
        # 16 channels x 16 columns at a time; a last run of fewer columns
        # reads 16 (past the row: in x unless at its end) and keeps its own
        while lanes == 16 and iw < width and src + iw + 15 * H * W + 16 <= flat_x.size:
            _transpose16(flat_x, src + iw, H * W, flat_xb, offsets, base + iw * 16, min(16, width - iw))
            iw += 16
        for j in range(iw, width):
            for lane in range(lanes):
                flat_xb[base + j * 16 + lane] = flat_x[src + lane * H * W + j]


@numba.njit(**JIT)
def _store_band(yb, count, y, n, c0, m0, offsets):
    """Channels c0 ... of image n of y (flat planes of OH*OW), pixels m0
    ... m0+count-1 = yb's first ``count`` pixels (16 channels each)."""
    N, C, L = y.shape
    flat_y, flat_yb = y.reshape(-1), yb.reshape(-1)
    lanes = min(16, C - c0)
    dst = (n * C + c0) * L + m0
    m = 0
    if lanes == 16:
        while m + 16 <= count:
            _transpose16(flat_yb, m * 16, 16, flat_y, offsets, dst + m, 16)
            m += 16
    for k in range(m, count):   # (a transposed run of fewer pixels would store 16 per channel, past the band)
        for lane in range(lanes):
            flat_y[dst + lane * L + k] = flat_yb[k * 16 + lane]


@numba.njit(**JIT)
def _tasks(x, wb, bias, y, OH, OW, sh, sw, top, left, dh, dw, KH, KW, R, lo, hi, part, parts):
    """y (N, C, OH*OW): this part's share of the (image, channel block)
    tasks, each a band of R output rows at a time; where [lo, hi] bounds
    anything, each band's sums clamped to it before they are stored."""
    N, C, H, W = x.shape
    CB = wb.shape[0]
    Wp = (OW - 1) * sw + (KW - 1) * dw + 1
    rows = (R - 1) * sh + (KH - 1) * dh + 1
    xb = numpy.empty(rows * Wp * 16, numpy.float32)
    yb = numpy.empty((R * OW + P) * 16, numpy.float32)
    tap_offsets = numpy.empty(KH * KW, numpy.intp)
    for kh in range(KH):
        for kw in range(KW):
            tap_offsets[kh * KW + kw] = (kh * dh * Wp + kw * dw) * 16
    pixels = numpy.zeros(R * OW + P, numpy.intp)   # the band's pixels' offsets in xb; the spare ones 0
    for m in range(R * OW):
        pixels[m] = ((m // OW) * sh * Wp + (m % OW) * sw) * 16
    x_offsets = numpy.arange(16) * 16              # _transpose16's rows: 16 pixels of xb
    y_offsets = numpy.arange(16) * OH * OW         # 16 channels' planes of y
    clamp = lo > -math.inf or hi < math.inf
    flat_wb = wb.reshape(-1)
    for task in range(*_share(N * CB, part, parts)):
        n, cb = task // CB, task % CB
        for oh0 in range(0, OH, R):
            band = min(R, OH - oh0)
            count = band * OW
            _fill_band(x, n, cb * 16, oh0 * sh, (band - 1) * sh + (KH - 1) * dh + 1, top, left, Wp, xb, x_offsets)
            for m in range(0, count, P):
                _tile(xb, pixels, m, tap_offsets, flat_wb, cb * KH * KW * 16, bias, cb * 16, yb, m * 16)
            if clamp:
                for i in range(count * 16):
                    yb[i] = _clamp_value(yb[i], lo, hi)
            _store_band(yb, count, y, n, cb * 16, oh0 * OW, y_offsets)


def depthwise_conv2d(x, w, b, stride, padding, dilation, out_size, lo=-math.inf, hi=math.inf):
    """y (N, C, OH, OW) float32 = the depthwise convolution of float32 x
    (N, C, H, W) by w (C, 1, KH, KW) (one output channel a channel) plus
    b (C,) or None, clamped to [lo, hi] (NaN kept); ``padding`` ((top,
    bottom), (left, right)), ``out_size`` (OH, OW)."""
    x = numpy.ascontiguousarray(x, dtype=numpy.float32)
    N, C = x.shape[:2]
    KH, KW = w.shape[2:]
    OH, OW = out_size
    (sh, sw), ((top, _), (left, _)), (dh, dw) = stride, padding, dilation
    CB = -(-C // 16)
    wb = numpy.zeros((CB * 16, KH * KW), numpy.float32)
    wb[:C] = numpy.asarray(w, dtype=numpy.float32).reshape(C, KH * KW)
    wb = numpy.ascontiguousarray(wb.reshape(CB, 16, KH * KW).transpose(0, 2, 1))     # (CB, T, 16)
    bias = numpy.zeros(CB * 16, numpy.float32)
    if b is not None:
        bias[:C] = b
    Wp = (OW - 1) * sw + (KW - 1) * dw + 1
    row_bytes = Wp * 16 * 4
    R = max(1, min(OH, (BAND_BYTES // row_bytes - (KH - 1) * dh - 1) // sh + 1))
    y = numpy.empty((N, C, OH, OW), numpy.float32)
    parallel_parts(_tasks, x.size + y.size, x, wb, bias, y.reshape(N, C, OH * OW), OH, OW, sh, sw, top, left, dh, dw,
                   KH, KW, R, numpy.float32(lo), numpy.float32(hi))
    return y
