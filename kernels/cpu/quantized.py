"""Integer convolution for quantized inference: exact int32 sums, computed
by integer dot-product instructions where the CPU has them (``vnni.py``),
else by float32 GEMMs where that is exact, else by a direct Numba kernel;
and the requantization of the sums to uint8.

Notation: N batch, C input channels, H, W input size, O output channels,
G groups (C / G = CG channels and O / G = OG outputs per group), KH, KW
kernel, OH, OW output size, P = OH*OW, K = CG*KH*KW the length of one dot
product.

Contract (that of the NumPy reference ``quantized_conv2d`` in
``minicnn/ao/nn/quantized/functional.py``): uint8 activations ``x``
(N, C, H, W) with zero point ``x_zero_point`` and int8 weights ``w``
(O, CG, KH, KW) with one zero point per output channel; the result is the
exact int32 sum::

    acc[n, o, oh, ow] = sum over (c, kh, kw) of
        (x[n, g*CG + c, oh*SH - PH + kh*DH, ow*SW - PW + kw*DW] - x_zero_point)
        * (w[o, c, kh, kw] - w_zero_points[o])

where input pixels in the padding count as ``x_zero_point`` (the real
number 0), so they add nothing.

Why float32 GEMMs are exact here
--------------------------------
Every term is an integer, |x - x_zero_point| <= 255, and float32 holds
every integer up to 2**24 exactly. Whatever order a BLAS adds the terms
of one dot product in (blocked, with or without fused multiply-adds),
each partial sum is an integer no larger than the sum of the terms'
magnitudes, at most 255 * sum_k |w[o, k] - w_zero_points[o]|. So where
that bound is <= 2**24 for every output channel, every step of the GEMM
is exact and its float32 result is the int32 sum. ``pack`` cuts K into
chunks where the bound holds (one chunk for most layers: trained weights
are far below their maximum on average) and the chunks' exact results are
added as integers. A GEMM runs at float32 BLAS speed, several times the
integer loops LLVM makes of a plain Numba kernel.

How
---
``pack`` (once per module, at convert time) also packs the weights for
``vnni.py`` where ``vnni.available()`` and the weights are symmetric
(every zero point 0) with GEMM_MIN_K <= K <= ``vnni.MAX_K``; such convs
run there, except a linear layer (a 1x1 conv of 1x1 images), whose one
pixel per image would fill 1 of a VNNI tile's 64 lanes: the float32 GEMM
over the batch is ~4x faster. For all of them it also centers the
weights and finds the chunks.
Per image, the centered input is laid out as a float32 (C*KH*KW, P)
im2col table (a 1x1 stride-1 conv uses the centered image
itself), then each group's (OG, K) weights times its (K, P) rows, split
over output channels among minicnn's threads (``threads.py``). Depthwise
and other convs with a short K (a GEMM of a few rows does not pay) run a
direct Numba kernel instead: one (image, output channel) per task, float32
sums (exact: K < 16 terms of at most 255 * 255), the valid output columns
of each tap computed once so the inner loop has no bounds test; a
depthwise 3x3 conv at stride 1 or 2 (MobileNet's) has its own kernel,
``_depthwise3x3``.

Requantization
--------------
``requantize`` is the element-wise end of fbgemm's requantization (the
formula in ``minicnn/ao/nn/quantized/functional.py``, whose NumPy
version is the reference): one pass from the int32 sums to uint8, the
same float32 operations in the same order (an add, a multiply, rounding
half to even, the zero point, the clamp), where NumPy makes a float32
temporary and five passes over it. ``quantized_conv2d(..., requant=...)``
returns the uint8 output itself: the VNNI and depthwise kernels
requantize as they compute, the other paths call ``requantize``. ``add``
(a residual's quantized sum) and ``max_pool2d`` are one-pass versions of
their NumPy references in ``functional.py``.
"""
import collections

import numba
import numpy

from . import vnni
from .loops import JIT, _share, u64
from .threads import PARALLEL_SIZE, parallel_parts, run_in_parallel, split, thread_count

#: float32 holds every integer of magnitude up to this exactly.
EXACT_FLOAT32 = 1 << 24
#: Largest |x - x_zero_point| of a uint8 input.
MAX_CENTERED_INPUT = 255
#: Shortest dot product that goes to a GEMM; shorter ones (depthwise 3x3
#: has K = 9) run the direct kernel.
GEMM_MIN_K = 16
#: Least estimated one-thread time (ns) of an element-wise, pooling or
#: depthwise kernel worth sharing among threads: a parallel call costs
#: ~25-35 us of hand-off (``threads.run_in_parallel``), more when another
#: process holds the other core; below this it runs on the calling thread.
#: The kernels' ``parallel_parts`` calls give their estimated time as the
#: size (per output element, measured on one znver4 core) and this as its
#: ``worth``.
PARALLEL_NS = 100_000

Packed = collections.namedtuple("Packed", "taps gemm_taps chunks groups vnni")
Packed.__doc__ = """Weights laid out for ``quantized_conv2d``: ``taps`` the
centered int32 (O, K) weights, ``gemm_taps`` the same as float32
(G, OG, K), ``chunks`` the (start, stop) runs of K whose float32 dot
products are exact, ``groups`` G, ``vnni`` ``vnni.pack``'s layout or None
(the conv then runs the float32 path)."""


def _exact_chunks(taps):
    """Consecutive (start, stop) runs covering range(K) such that
    MAX_CENTERED_INPUT * sum over the run of |taps[o, k]| <= EXACT_FLOAT32
    for every row o: each run's float32 dot products are exact."""
    K = taps.shape[1]
    cumulative = numpy.cumsum(numpy.abs(taps.astype(numpy.int64)), axis=1)
    chunks, start = [], 0
    while start < K:
        before = cumulative[:, start - 1:start] if start else 0
        # a single term is at most 255 * 255 < 2**24, so every run is non-empty
        fits = ((cumulative[:, start:] - before).max(axis=0) * MAX_CENTERED_INPUT <= EXACT_FLOAT32)
        stop = start + (int(numpy.argmin(fits)) if not fits.all() else K - start)
        chunks.append((start, stop))
        start = stop
    return tuple(chunks)


def pack(w, w_zero_points, groups, use_vnni=None):
    """The :data:`Packed` layout of int8 weights ``w`` (O, CG, KH, KW) with
    per-channel ``w_zero_points`` (O,), for ``groups`` groups.
    ``use_vnni``: None to pack for ``vnni.py`` where the CPU and the
    weights allow it, False never (the float32 path), True always (where
    the weights allow it; the caller checked ``vnni.available()``)."""
    O = w.shape[0]
    taps = w.reshape(O, -1).astype(numpy.int32) - numpy.asarray(w_zero_points, numpy.int32).reshape(-1, 1)
    gemm_taps = taps.astype(numpy.float32).reshape(groups, O // groups, -1)
    if use_vnni is None:
        use_vnni = vnni.available()
    symmetric = not numpy.any(numpy.asarray(w_zero_points))
    packed_vnni = None
    if use_vnni and symmetric and GEMM_MIN_K <= taps.shape[1] <= vnni.MAX_K:
        # a linear layer's (O, K) weight is a 1x1 conv's (O, K, 1, 1)
        packed_vnni = vnni.pack(w.reshape(w.shape + (1,) * (4 - w.ndim)), groups)
    return Packed(taps, gemm_taps, _exact_chunks(taps), groups, packed_vnni)


@numba.njit(**JIT)
def _im2col(x, x_zero_point, sh, sw, ph, pw, dh, dw, KH, KW, cols, part, parts):
    """cols[(c*KH + kh)*KW + kw, oh*OW + ow] = x[c, ih, iw] - x_zero_point
    (0 in the padding), float32; this part's share of the rows."""
    C, H, W = x.shape
    OH = (H + 2 * ph - dh * (KH - 1) - 1) // sh + 1
    OW = (W + 2 * pw - dw * (KW - 1) - 1) // sw + 1
    start, stop = _share(C * KH * KW, part, parts)
    zero = numpy.float32(x_zero_point)
    for r in range(start, stop):
        c = r // (KH * KW)
        kh = (r // KW) % KH
        kw = r % KW
        off = kw * dw - pw
        lo = min(OW, max(0, (-off + sw - 1) // sw))        # first ow with iw >= 0
        hi = max(lo, min(OW, (W - 1 - off) // sw + 1))     # past the last ow with iw < W
        row = cols[r]
        for oh in range(OH):
            ih = oh * sh - ph + kh * dh
            base = oh * OW
            if ih < 0 or ih >= H:
                row[base:base + OW] = 0
                continue
            src = x[c, ih]
            row[base:base + lo] = 0
            # unsigned indices (no negative-index wraparound test) and, at
            # stride 1, contiguous loads: the loop vectorizes
            if sw == 1:
                for ow in range(lo, hi):
                    row[u64(base + ow)] = numpy.float32(src[u64(ow + off)]) - zero
            else:
                for ow in range(lo, hi):
                    row[u64(base + ow)] = numpy.float32(src[u64(ow * sw + off)]) - zero
            row[base + hi:base + OW] = 0


@numba.njit(**JIT)
def _direct(xc, taps, sh, sw, ph, pw, dh, dw, groups, KH, KW, out, part, parts):
    """out[n, o] = the exact sums for this part's (n, o) tasks, from the
    centered float32 input ``xc`` and float32 ``taps``: with K < GEMM_MIN_K
    every partial sum is below 16 * 255 * 255 < 2**24, so float32 is exact
    and vectorizes better than integers (Numba widens int32 products to
    int64)."""
    N, C, H, W = xc.shape
    O = taps.shape[0]
    OH, OW = out.shape[2], out.shape[3]
    OG, CG = O // groups, C // groups
    acc = numpy.empty((OH, OW), numpy.float32)
    start, stop = _share(N * O, part, parts)
    for task in range(start, stop):
        n, o = task // O, task % O
        g = o // OG
        acc[:] = 0
        for c in range(CG):
            for kh in range(KH):
                for kw in range(KW):
                    tap = taps[o, (c * KH + kh) * KW + kw]
                    if tap == 0:
                        continue
                    off = kw * dw - pw
                    lo = min(OW, max(0, (-off + sw - 1) // sw))
                    hi = max(lo, min(OW, (W - 1 - off) // sw + 1))
                    for oh in range(OH):
                        ih = oh * sh - ph + kh * dh
                        if 0 <= ih < H:
                            # unsigned indices: no negative-index wraparound test, so the loop vectorizes
                            i, r = u64(g * CG + c), u64(ih)
                            if sw == 1:
                                for ow in range(lo, hi):
                                    acc[u64(oh), u64(ow)] += xc[u64(n), i, r, u64(ow + off)] * tap
                            else:
                                for ow in range(lo, hi):
                                    acc[u64(oh), u64(ow)] += xc[u64(n), i, r, u64(ow * sw + off)] * tap
        for oh in range(OH):
            for ow in range(OW):
                out[n, o, oh, ow] = numpy.int32(acc[oh, ow])


@numba.njit(inline="always")
def _requantized(acc, offset, multiplier, zero_point, low):
    """The uint8 of clamp(rint((acc + offset) * multiplier) + zero_point,
    low, 255), every step in float32 (``acc`` a float32 integer)."""
    y = numpy.rint((acc + offset) * multiplier) + zero_point
    return numpy.uint8(min(max(y, low), numpy.float32(255)))


@numba.njit(inline="always")
def _taps9(r0, r1, r2, j, t):
    """The 3x3 window sum at column j of rows r0, r1, r2, taps ``t``."""
    return (r0[j] * t[0] + r0[j + 1] * t[1] + r0[j + 2] * t[2] + r1[j] * t[3] + r1[j + 1] * t[4]
            + r1[j + 2] * t[5] + r2[j] * t[6] + r2[j + 1] * t[7] + r2[j + 2] * t[8])


@numba.njit(**JIT)
def _depthwise3x3(x, x_zero_point, taps, s, ph, pw, requant, offsets, multipliers, zero_point, low, out, part,
                  parts):
    """out[n, c] = the exact sums of a depthwise (one input and one output
    channel per group) 3x3 conv, dilation 1, stride ``s`` (1 or 2) both
    ways, for this part's (n, c) tasks; with ``requant``, their uint8
    requantization (``_requantized``, channel c's ``offsets`` and
    ``multipliers``) instead, in the same pass. Each channel is copied once,
    centered, into a float32 plane zero-padded on every side (the padding
    is x_zero_point, centered 0), so that every output pixel adds its 9
    products with no bounds test, in registers (``_direct`` instead adds
    one tap at a time over the whole output, a pass over memory per tap).

    At stride 1 the plane is read flat: output (oh, ow) is pixel q = oh*WP
    + ow of a grid as wide as the padded plane (WP = W + 2*pw), and its
    window starts at flat index q, so one loop over all OH*WP grid pixels
    vectorizes even where the rows are narrower than a vector (14 pixels
    on MobileNet's 14 x 14 layers); the grid's columns ow >= OW are
    dropped as the valid ones are copied out. At stride 2 a loop per
    output row, its loads interleaved."""
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    zero = numpy.float32(x_zero_point)
    HP, WP = H + 2 * ph, W + 2 * pw
    # 3 rows past the padding stay 0: the dropped grid pixels of the last
    # row read up to 2 rows and 2 pixels beyond the last window
    flat = numpy.zeros((HP + 3) * WP, numpy.float32)
    plane = flat[:HP * WP].reshape(HP, WP)
    grid = numpy.empty(OH * WP, out.dtype)
    start, stop = _share(N * C, part, parts)
    for task in range(start, stop):
        n, c = task // C, task % C
        for ih in range(H):
            src, dst = x[n, c, ih], plane[ih + ph]
            for iw in range(W):
                dst[u64(iw + pw)] = numpy.float32(src[iw]) - zero
        t = (taps[c, 0], taps[c, 1], taps[c, 2], taps[c, 3], taps[c, 4], taps[c, 5], taps[c, 6], taps[c, 7],
             taps[c, 8])
        offset, multiplier = offsets[c % offsets.size], multipliers[c % offsets.size]
        if s == 1:
            # the three window rows as flat views WP and 2*WP further on
            f0, f1, f2 = flat[:OH * WP], flat[WP:WP + OH * WP], flat[2 * WP:2 * WP + OH * WP]
            if requant:
                for q in range(OH * WP):
                    grid[q] = _requantized(_taps9(f0, f1, f2, u64(q), t), offset, multiplier, zero_point, low)
            else:
                for q in range(OH * WP):
                    grid[q] = numpy.int32(_taps9(f0, f1, f2, u64(q), t))
            for oh in range(OH):
                row, at = out[n, c, oh], oh * WP
                for ow in range(OW):
                    row[ow] = grid[u64(at + ow)]
            continue
        for oh in range(OH):
            r0, r1, r2 = plane[oh * s], plane[oh * s + 1], plane[oh * s + 2]
            row = out[n, c, oh]
            # stride 2 a constant in each loop: interleaved loads, and the loops vectorize
            if requant:
                for ow in range(OW):
                    row[ow] = _requantized(_taps9(r0, r1, r2, u64(2 * ow), t), offset, multiplier, zero_point, low)
            else:
                for ow in range(OW):
                    row[ow] = numpy.int32(_taps9(r0, r1, r2, u64(2 * ow), t))


def _products(packed, cols, out):
    """out (O, P) int32 = each group's centered weights times its rows of
    the float32 table ``cols`` (G*K, P), chunk by chunk (each exact),
    output channels shared among the threads."""
    G, OG, K = packed.gemm_taps.shape
    P = cols.shape[1]
    tasks = [(g, rows) for g in range(G) for rows in split(range(OG), max(1, thread_count() // G))]
    threads = thread_count() if G * OG * K * P >= PARALLEL_SIZE else 1

    def work(mine):
        for g, rows in mine:
            o0, o1 = g * OG + rows.start, g * OG + rows.stop
            taps = packed.gemm_taps[g, rows.start:rows.stop]
            for i, (k0, k1) in enumerate(packed.chunks):
                product = taps[:, k0:k1] @ cols[g * K + k0:g * K + k1]
                if i == 0:
                    out[o0:o1] = product
                else:
                    # int32 + float32 adds in float64: exact, then back to int32
                    numpy.add(out[o0:o1], product, out=out[o0:o1], casting="unsafe")
    run_in_parallel(work, [part for part in split(tasks, threads) if part])


def quantized_conv2d(x, x_zero_point, w, w_zero_points, stride, padding, dilation, groups, packed=None,
                     requant=None):
    """int32 (N, O, OH, OW) sums of centered uint8 x int8 products (see
    the module docstring); ``packed``: ``pack(w, w_zero_points, groups)``,
    made here if not given. ``requant``: None, or (offsets, multipliers,
    zero_point, low) to return the sums requantized to uint8 instead
    (``requantize``), in the same pass where the kernel allows."""
    out = _sums(x, x_zero_point, w, w_zero_points, stride, padding, dilation, groups, packed, requant)
    if requant is None or out.dtype == numpy.uint8:
        return out
    return requantize(out.reshape(out.shape[0], out.shape[1], -1), *requant).reshape(out.shape)


def _sums(x, x_zero_point, w, w_zero_points, stride, padding, dilation, groups, packed, requant):
    """``quantized_conv2d``'s int32 sums, or its uint8 result where the
    VNNI kernel requantizes them itself."""
    N, C, H, W = x.shape
    O, _, KH, KW = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    OH = (H + 2 * ph - dh * (KH - 1) - 1) // sh + 1
    OW = (W + 2 * pw - dw * (KW - 1) - 1) // sw + 1
    if packed is None:
        packed = pack(w, w_zero_points, groups)
    pointwise = KH == KW == 1 and (sh, sw, ph, pw) == (1, 1, 0, 0)
    linear = pointwise and H * W == 1 and groups == 1
    if packed.vnni is not None and not linear:
        # (a linear layer, one pixel per image, would fill 1 of a VNNI tile's
        # 64 pixel lanes: the float32 GEMM over the batch is ~4x faster)
        return vnni.conv2d(x, x_zero_point, packed.vnni, O // groups, KH, KW, stride, padding, dilation, requant)
    out = numpy.empty((N, O, OH, OW), numpy.int32)
    K = packed.taps.shape[1]
    if (KH, KW, dh, dw) == (3, 3, 1, 1) and sh == sw and sh in (1, 2) and groups == C == O:
        if requant is None:
            requant = (numpy.zeros(1, numpy.float32), numpy.ones(1, numpy.float32), 0, 0)
        else:
            out = numpy.empty((N, O, OH, OW), numpy.uint8)
        offsets, multipliers, zero_point, low = requant
        # strided loads at stride 2: ~4x the time per output
        parallel_parts(_depthwise3x3, out.size * (0.5 if sh == 1 else 2.2), x, numpy.int32(x_zero_point),
                       packed.gemm_taps.reshape(O, K), sh, ph, pw, out.dtype == numpy.uint8, offsets, multipliers,
                       numpy.float32(zero_point), numpy.float32(low), out, worth=PARALLEL_NS)
        return out
    if K < GEMM_MIN_K:
        centered = numpy.subtract(x, numpy.float32(x_zero_point), dtype=numpy.float32)
        parallel_parts(_direct, out.size * K, centered, packed.gemm_taps.reshape(O, K), sh, sw, ph, pw, dh, dw,
                       groups, KH, KW, out)
        return out
    if linear:
        # a linear layer: one GEMM for the whole batch
        rows = numpy.subtract(x.reshape(N, C).T, numpy.float32(x_zero_point), dtype=numpy.float32)
        acc = numpy.empty((O, N), numpy.int32)
        _products(packed, rows, acc)
        out[:, :, 0, 0] = acc.T
        return out
    cols = None if pointwise else numpy.empty((C * KH * KW, OH * OW), numpy.float32)
    for n in range(N):
        if pointwise:
            cols = numpy.subtract(x[n].reshape(C, H * W), numpy.float32(x_zero_point), dtype=numpy.float32)
        else:
            parallel_parts(_im2col, cols.size, x[n], numpy.int32(x_zero_point), sh, sw, ph, pw, dh, dw, KH, KW,
                           cols)
        _products(packed, cols, out[n].reshape(O, OH * OW))
    return out


@numba.njit(**JIT)
def _requantize(acc, offsets, multipliers, zero_point, low, out, part, parts):
    """out[n, o, p] = ``_requantized`` of float32(acc[n, o, p]) with channel
    o's offset and multiplier, for this part's (n, o) rows; all float32,
    each step rounded as NumPy rounds it (no fused multiply-add: Numba does
    not contract without fastmath)."""
    N, O, P = acc.shape
    start, stop = _share(N * O, part, parts)
    for task in range(start, stop):
        n, o = task // O, task % O
        offset, multiplier = offsets[o], multipliers[o]
        src, dst = acc[n, o], out[n, o]
        for p in range(P):
            dst[p] = _requantized(numpy.float32(src[p]), offset, multiplier, zero_point, low)


def requantize(acc, offsets, multipliers, zero_point, low):
    """uint8 (N, O, P) from int32 sums ``acc`` (N, O, P), float32
    per-channel ``offsets`` and ``multipliers`` (O,), ``zero_point`` and
    lower clamp ``low`` (see ``_requantize``)."""
    out = numpy.empty(acc.shape, numpy.uint8)
    parallel_parts(_requantize, acc.size * 0.15, numpy.ascontiguousarray(acc), offsets, multipliers,
                   numpy.float32(zero_point), numpy.float32(low), out, worth=PARALLEL_NS)
    return out


@numba.njit(**JIT)
def _quantize(x, inverse, zero_point, out, part, parts):
    """out = the quint8 integers of float32 ``x`` (flat): rint(x *
    ``inverse``) (float32, half to even) plus the zero point, clamped to
    [0, 255], this part's share; in float32, which is exact where it
    matters (an integer, clamped wherever float32 could round it), so the
    loop vectorizes."""
    start, stop = _share(out.size, part, parts)
    zp, low, high = numpy.float32(zero_point), numpy.float32(0), numpy.float32(255)
    for j in range(stop - start):
        i = u64(start + j)
        out[i] = numpy.uint8(min(max(numpy.rint(x[i] * inverse) + zp, low), high))


def quantize(x, scale, zero_point):
    """uint8 quint8 integers of float32 ``x`` with ``scale`` and
    ``zero_point`` (``qtensor.quantize_array``'s formula, the multiplier
    float32(1) / float32(scale)), in one pass."""
    out = numpy.empty(x.shape, numpy.uint8)
    inverse = numpy.float32(1.0) / numpy.float32(scale)
    parallel_parts(_quantize, x.size * 0.3, numpy.ascontiguousarray(x).reshape(-1), inverse,
                   numpy.int32(zero_point), out.reshape(-1), worth=PARALLEL_NS)
    return out


@numba.njit(**JIT)
def _add(a, a_scale, a_zero_point, b, b_scale, b_zero_point, inverse, zero_point, relu, out, part, parts):
    """out = quantized(dequantized(a) + dequantized(b)) over flat arrays,
    this part's share: each input dequantized as float32 scale * (q - zp),
    the float32 sum (clamped at 0 with ``relu``) times the float32
    ``inverse`` of the output scale, rounded half to even, plus the zero
    point, clamped to [0, 255]: the NumPy reference's steps. All in
    float32, which is exact here (q - zp and rint(...) + zp are integers,
    the latter clamped wherever float32 could round it: |rint(...)| past
    2**24), so the loop vectorizes."""
    start, stop = _share(out.size, part, parts)
    za, zb, zp = numpy.float32(a_zero_point), numpy.float32(b_zero_point), numpy.float32(zero_point)
    floor = numpy.float32(0) if relu else numpy.float32(-numpy.inf)
    low, high = numpy.float32(0), numpy.float32(255)
    for j in range(stop - start):
        i = u64(start + j)
        y = a_scale * (numpy.float32(a[i]) - za) + b_scale * (numpy.float32(b[i]) - zb)
        q = numpy.rint(max(y, floor) * inverse) + zp
        out[i] = numpy.uint8(min(max(q, low), high))


def add(a, a_scale, a_zero_point, b, b_scale, b_zero_point, scale, zero_point, relu):
    """The uint8 integers of quantized ``a + b`` (``relu(a + b)``), both
    uint8 arrays of one shape, as ``_add`` computes them."""
    out = numpy.empty(a.shape, numpy.uint8)
    inverse = numpy.float32(1.0) / numpy.float32(scale)
    parallel_parts(_add, a.size * 0.3, numpy.ascontiguousarray(a).reshape(-1), numpy.float32(a_scale),
                   numpy.int32(a_zero_point), numpy.ascontiguousarray(b).reshape(-1), numpy.float32(b_scale),
                   numpy.int32(b_zero_point), inverse, numpy.int32(zero_point), bool(relu), out.reshape(-1),
                   worth=PARALLEL_NS)
    return out


@numba.njit(**JIT)
def _max_pool(x, KH, KW, sh, sw, ph, pw, dh, dw, out, part, parts):
    """out[n, c] = the max of x[n, c] over each window, padding never
    winning (a window with no input element gives 255, the uint8 of the
    NumPy reference's -1), this part's (n, c) planes; one output row at a
    time: the maxima down the window's rows, then across its columns."""
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    best = numpy.empty(OW, numpy.int16)
    # each kernel column's valid output columns, the same on every row:
    # found once (the floor divisions cost more than a row's maxima)
    offs, los, his = numpy.empty(KW, numpy.int64), numpy.empty(KW, numpy.int64), numpy.empty(KW, numpy.int64)
    for j in range(KW):
        offs[j] = j * dw - pw
        los[j] = min(OW, max(0, (-offs[j] + sw - 1) // sw))
        his[j] = max(los[j], min(OW, (W - 1 - offs[j]) // sw + 1))
    rows = numpy.empty(W, numpy.int16)
    start, stop = _share(N * C, part, parts)
    for task in range(start, stop):
        n, c = task // C, task % C
        for oh in range(OH):
            # the maxima down the window's rows first (contiguous, vectorized),
            # then across its columns: KW strided reads per output, not KH*KW
            rows[:] = -1
            for i in range(KH):
                ih = oh * sh - ph + i * dh
                if ih < 0 or ih >= H:
                    continue
                src = x[n, c, ih]
                for iw in range(W):
                    rows[iw] = max(rows[iw], numpy.int16(src[iw]))
            best[:] = -1
            for j in range(KW):
                off = offs[j]
                for ow in range(los[j], his[j]):
                    best[u64(ow)] = max(best[u64(ow)], rows[u64(ow * sw + off)])
            row = out[n, c, oh]
            for ow in range(OW):
                row[ow] = numpy.uint8(best[ow] & 255)


def max_pool2d(x, kernel_size, stride, padding, dilation, out_size):
    """uint8 (N, C, OH, OW) max pooling of uint8 ``x`` (N, C, H, W); the
    pairs as in ``_max_pool``."""
    out = numpy.empty(x.shape[:2] + tuple(out_size), numpy.uint8)
    parallel_parts(_max_pool, out.size * kernel_size[1], x, *kernel_size, *stride, *padding, *dilation, out,
                   worth=PARALLEL_NS)
    return out
