"""Depthwise (and narrow grouped) convolution computed directly, without im2col.

Notation
--------
N batch, C input channels, M output channels per input channel (the
depthwise multiplier), O = C * M output channels, KH, KW kernel, H, W
input size, OH, OW output size; strides sh, sw, dilations dh, dw, and
``top``, ``left`` the zero padding before the first row and column.

    x: (N, C, H, W)   w: (O, KH, KW)   y, gy: (N, O, OH, OW)

    y[n, o, oh, ow] = sum_{kh, kw} w[o, kh, kw] * xpad[n, o // M, oh*sh + kh*dh, ow*sw + kw*dw]

Each output channel sees one input channel, so a GEMM would multiply
(M, KH*KW) by (KH*KW, L) matrices: a handful of multiply-adds per entry
of a column matrix that costs a full copy of the input per tap. Summing
the KH*KW shifted copies of x straight into y costs the multiply-adds alone.

Phases and wide rows
--------------------
A tap is one multiply-add over a whole plane, and it should be one long
loop: a loop over one output row is too short to pay for itself (7 to 56
pixels in a CNN; the vectorized loop body takes 32 at a time and what is
left over runs one by one). Two rearrangements of the input make every
tap a single contiguous loop:

* Phases (space-to-depth). With stride s, tap kw reads input columns
  ow*s + kw*dw = (ow + kw*dw // s)*s + kw*dw % s: column ow + kw*dw // s
  of the *phase* b = kw*dw % s, the columns b, b+s, b+2s, ... of the
  padded input. Cut into its sh*sw phases (``_split``), the padded plane
  is read by every tap at stride 1, shifted by (kh*dh // sh, kw*dw // sw)
  (``_tap``). With stride 1 there is one phase, the zero-padded plane.
* Wide rows. A phase has Hq = OH + (KH-1)*dh // sh rows of
  Wq = OW + (KW-1)*dw // sw columns: the output plus the reach of the
  taps. Lay the output out the same way (``acc``, Hq rows of Wq) and tap
  (kh, kw) is acc[q] += w * phase[q + shift] for every q: one loop. The
  extra rows and columns of acc read past the end of a phase row (or
  plane); their values are garbage, dropped when acc is copied into y.

Each pass over a plane takes several taps at once, so that acc (or gw's
sums) is loaded and stored once per pass rather than once per tap: three
taps (``_axpy3``, ``_dot3``), or a 3x3 kernel's nine (``_axpy9``,
``_dot9``), which took the 32x32x56x56 forward from 2.2 to 1.5 ms on 2
threads.

Narrow groups
-------------
The forward serves any grouped convolution the same way (``direct_forward``):
a task splits the Cg input channels of its group into phases, and each of
the group's Og output channels sums Cg passes of its taps, 3x3 outputs two
at a time (``_axpy9x2``: each input loaded once for both). With few
channels a group the GEMM paths pay for a column matrix (or Winograd's
transforms) that each output row reads only Og times; summing the taps
directly costs the multiply-adds alone. The weight gradient
(``direct_grad_weight``) likewise takes one dot product per tap and input
channel of the group. The conv strategy sends groups of few channels here
(``DIRECT_MAX_*`` in ``conv_strategy.py``); the input gradient of such a
layer at stride 1 is this forward of gy with flipped filters.

A task stacks the planes of several images (``_images_per_task``) so that
the loop runs over all of them at once: a 7x7 plane alone is 81 entries.
Against loops over output rows, a 3x3 layer on 8x960x7x7 went from 3.3
to 1.2 ms (one thread, float32).

The input gradient is the same computation backwards: each phase of gx
gathers, from gy in wide rows with a zero border (``gpad``), the taps
that read it, and ``_merge`` (the adjoint of ``_split``) puts the phases
back into the plane. The weight gradient is one dot product per tap
between the phases and gy in wide rows, zeros in the dropped entries.
Those zeros multiply real inputs (for gx: real weights); with finite data
they add nothing, but an inf or NaN can reach a few more entries of gw
(gx) than in the reference, which skips those products.

Threads, indices
----------------
Each kernel runs over tasks (c, block of images), or (group, block) in
the forward and weight gradient, the threads taking runs of them
(``threads.parallel_parts``): a task splits its planes once, computes
the output channels that read them, and allocates its buffers once. No two tasks write the same element: the
planes of y and gx belong to one task, and the weight gradient is summed
per task into sums[block, o, :] and reduced over the blocks afterwards.

All arrays are C-contiguous (the wrappers in ``conv.py`` see to it) and
indexed through flat views with offsets computed once per row or plane.
The innermost loops (``_fill``, ``_copy``, ``_axpy``, ``_dot``, in
``loops.py``) index with *unsigned* integers: a signed index costs a
compare and select per access (read that module's notes).
"""
import math

import numba
import numpy

from .loops import (JIT as _JIT, _axpy, _axpy3, _axpy9, _axpy9x2, _clamp_value, _copy, _dot, _dot3, _dot9, _fill,
                    _share, _valid_range, u64)
from .threads import parallel_parts


#: Entries of the stacked planes of one task. 4096 keep acc and the
#: phases (16 KB each in float32) in L1: 1.3x faster than 8192 on 56x56
#: planes, no slower on smaller ones.
TASK_ENTRIES = 4096
#: Tasks to leave at least, where there are that many planes, for the
#: threads to share (a fixed number, so that results do not depend on the
#: thread count).
MIN_TASKS = 32


# -- phases and tasks --------------------------------------------------------
@numba.njit(cache=True)
def _phase_shape(OH, OW, KH, KW, sh, sw, dh, dw):
    """(Hq, Wq): the rows and columns of a phase, the output's plus the
    reach of the taps in phase rows (columns)."""
    return OH + (KH - 1) * dh // sh, OW + (KW - 1) * dw // sw


@numba.njit(cache=True)
def _tap(kh, kw, sh, sw, dh, dw):
    """Where tap (kh, kw) reads: (phase, row, column), the phase
    (kh*dh % sh, kw*dw % sw) at row kh*dh // sh and column kw*dw // sw."""
    return (kh * dh % sh) * sw + kw * dw % sw, kh * dh // sh, kw * dw // sw


@numba.njit(cache=True)
def _tap_offsets(KH, KW, sh, sw, dh, dw, P, Wq):
    """Where each tap t = kh*KW + kw reads, as offsets into phases of P
    entries each, rows Wq long: (KH*KW,)."""
    offsets = numpy.empty(KH * KW, numpy.int64)
    for t in range(KH * KW):
        p, r, q = _tap(t // KW, t % KW, sh, sw, dh, dw)
        offsets[t] = p * P + r * Wq + q
    return offsets


@numba.njit(cache=True)
def _images_per_task(N, C, plane):
    """B: a task takes B images of one channel, as many as fit in
    TASK_ENTRIES (``plane`` entries each), but few enough to make at least
    MIN_TASKS tasks where N*C allows."""
    return max(1, min(N, TASK_ENTRIES // plane, N * C // MIN_TASKS))


@numba.njit(cache=True)
def _split(xf, base, H, W, top, left, sh, sw, phases, p0, pstride, Hq, Wq):
    """Cut the plane xf[base : base + H*W] (H, W), padded by ``top`` and
    ``left``, into its phases: for a < sh, b < sw, i < Hq, j < Wq

        phases[p0 + (a*sw + b)*pstride + i*Wq + j] = xpad[i*sh + a, j*sw + b]

    Only the input pixels are written: the padding is what the caller
    filled the phases with (0 for a convolution, -inf for a max pool)."""
    for a in range(sh):
        i_lo, i_hi = _valid_range(H, Hq, a - top, sh)
        for b in range(sw):
            j_lo, j_hi = _valid_range(W, Wq, b - left, sw)
            for i in range(i_lo, i_hi):
                _copy(phases, p0 + (a * sw + b) * pstride + i * Wq + j_lo, 1,
                      xf, base + (i * sh + a - top) * W + j_lo * sw + b - left, sw, j_hi - j_lo)


@numba.njit(inline="always")
def _group_tap_offsets(Cg, CP, KH, KW, sh, sw, dh, dw, P, Wq):
    """Where each tap of each of a group's Cg input channels reads, (Cg,
    KH*KW): ``_tap_offsets`` for channel c's phases, which start at c * CP
    of one buffer. The offsets are into the whole buffer so that the loops
    get it whole: a slice of it is an array of any layout to Numba, and
    its loops do not vectorize."""
    offsets = numpy.empty((Cg, KH * KW), numpy.int64)
    for c in range(Cg):
        offsets[c] = _tap_offsets(KH, KW, sh, sw, dh, dw, P, Wq) + c * CP
    return offsets


@numba.njit(inline="always")
def _split_group(xf, n0, nb, C, g, Cg, H, W, top, left, sh, sw, phases, CP, P, Hq, Wq):
    """``_split`` the planes of images n0 ... n0+nb-1, input channels of
    group g (Cg of them, of C), into one buffer: channel c's phases at c *
    CP, image i's at i * Hq * Wq within them."""
    for c in range(Cg):
        for i in range(nb):
            _split(xf, ((n0 + i) * C + g * Cg + c) * H * W, H, W, top, left, sh, sw, phases,
                   c * CP + i * Hq * Wq, P, Hq, Wq)


@numba.njit(cache=True)
def _merge(phases, p0, pstride, Hq, R, Wq, top, left, sh, sw, gxf, base, H, W):
    """The adjoint of ``_split``: the plane gxf[base : base + H*W] (H, W)
    = for each pixel the phase entry that holds it,

        gxpad[i*sh + a, j*sw + b] = phases[p0 + (a*sw + b)*pstride + i*R + j]

    (i < Hq, j < Wq, rows R long); 0 for pixels no phase holds."""
    w_end = max(0, Wq * sw - left)            # the columns past the last phase column
    for h in range(H):
        row = base + h * W
        i, a = divmod(h + top, sh)
        if i >= Hq:
            _fill(gxf, row, W, 0)
            continue
        for b in range(sw):
            j_lo, j_hi = _valid_range(W, Wq, b - left, sw)
            src = p0 + (a * sw + b) * pstride + i * R
            _copy(gxf, row + j_lo * sw + b - left, sw, phases, src + j_lo, 1, j_hi - j_lo)
        if w_end < W:
            _fill(gxf, row + w_end, W - w_end, 0)


# -- the kernels -------------------------------------------------------------
def depthwise_forward(x, w, b, y, sh, sw, top, left, dh, dw, lo=-math.inf, hi=math.inf):
    """y (N, O, OH, OW) = depthwise conv of x (N, C, H, W) with w (O, KH, KW),
    plus b (O,) (pass an array of zeros for no bias), clamped to [lo, hi]
    as it is stored. All C-contiguous."""
    direct_forward(x, w.reshape((w.shape[0], 1) + w.shape[1:]), b, y, sh, sw, top, left, dh, dw, lo, hi)


def direct_forward(x, w, b, y, sh, sw, top, left, dh, dw, lo=-math.inf, hi=math.inf):
    """y (N, O, OH, OW) = grouped conv of x (N, C, H, W) with w (O, Cg, KH,
    KW), G = C / Cg groups, plus b (O,): each output channel sums its
    group's Cg input channels' taps (module docstring, "Narrow groups");
    clamped to [lo, hi] (NaN kept) as it is stored. All C-contiguous."""
    parallel_parts(_forward, x.size + y.size, x, w, b, y, sh, sw, top, left, dh, dw, y.dtype.type(lo),
                   y.dtype.type(hi))


def depthwise_grad_input(gy, w, gx, sh, sw, top, left, dh, dw):
    """gx (N, C, H, W): the adjoint of ``depthwise_forward`` applied to
    gy (N, O, OH, OW); gx is overwritten. All C-contiguous."""
    parallel_parts(_grad_input, gy.size + gx.size, gy, w, gx, sh, sw, top, left, dh, dw)


def depthwise_grad_weight(x, gy, gw, sh, sw, top, left, dh, dw):
    """gw (O, KH, KW) = sum over n, oh, ow of gy[n, o, oh, ow] times the
    input pixel tap (kh, kw) saw; gw is overwritten. All C-contiguous."""
    direct_grad_weight(x, gy, gw.reshape((gw.shape[0], 1) + gw.shape[1:]), sh, sw, top, left, dh, dw)


def direct_grad_weight(x, gy, gw, sh, sw, top, left, dh, dw):
    """gw (O, Cg, KH, KW) of ``direct_forward``: for each output channel and
    each of its group's Cg input channels, the sum over n, oh, ow of gy
    times the input pixel each tap saw; gw is overwritten.

    Each task's sums go to sums[block, o, (c, tap)] (``_grad_weight_sums``);
    the blocks' sums are then added in order, in float64, so the result
    does not depend on the number of threads."""
    N, C = x.shape[:2]
    O, Cg, KH, KW = gw.shape
    Hq, Wq = _phase_shape(gy.shape[2], gy.shape[3], KH, KW, sh, sw, dh, dw)
    blocks = -(-N // _images_per_task(N, C // Cg, sh * sw * Hq * Wq))
    sums = numpy.empty((blocks, O, Cg * KH * KW))
    parallel_parts(_grad_weight_sums, x.size + gy.size, x, gy, sums, KH, KW, sh, sw, top, left, dh, dw)
    gw.reshape(O, Cg * KH * KW)[...] = sums.sum(axis=0)


@numba.njit(**_JIT)
def _forward(x, w, b, y, sh, sw, top, left, dh, dw, lo, hi, part, parts):
    """``direct_forward``, tasks of part ``part`` of ``parts``: w is
    (O, Cg, KH, KW), G = C / Cg groups of Og = O / G output channels
    (depthwise: Cg = 1, Og = M)."""
    N, C, H, W = x.shape
    O, Cg, KH, KW = w.shape
    G = C // Cg
    Og, S, T = O // G, sh * sw, KH * KW
    OH, OW = y.shape[2], y.shape[3]
    Hq, Wq = _phase_shape(OH, OW, KH, KW, sh, sw, dh, dw)
    spare = (Hq - OH) * Wq + Wq - OW          # how far the garbage entries read past the end
    B = _images_per_task(N, G, S * Hq * Wq)
    blocks = (N + B - 1) // B
    xf, wf, yf = x.reshape(-1), w.reshape(-1), y.reshape(-1)
    # The buffers serve all of this part's tasks: _split writes the same
    # entries of the phases each time, so their padding, zeroed once,
    # stays zero (a task of one 56x56 plane is ~3 us of work, and
    # allocating and zeroing per task cost a third of it). Only a task
    # with fewer images (the last block) lays them out anew.
    phases = numpy.empty(0, x.dtype)
    PB = B * Hq * Wq
    acc = numpy.empty((2 if T == 9 and Og > 1 else 1) * PB, y.dtype)   # one or two output channels in wide rows
    laid_out = -1                             # the nb the phases are laid out for
    for task in range(*_share(G * blocks, part, parts)):  # y[n0:n0+nb, g*Og:g*Og+Og]: this task's only
        g = task // blocks
        n0 = (task - g * blocks) * B
        nb = min(B, N - n0)
        P = nb * Hq * Wq                      # one phase of all nb images, stacked
        CP = S * P + spare                    # all phases of one input channel
        if nb != laid_out:
            phases = numpy.zeros(Cg * CP, x.dtype)
            offsets = _group_tap_offsets(Cg, CP, KH, KW, sh, sw, dh, dw, P, Wq)
            laid_out = nb
        _split_group(xf, n0, nb, C, g, Cg, H, W, top, left, sh, sw, phases, CP, P, Hq, Wq)
        # A 3x3 kernel's outputs two at a time: each pass reads the nine
        # taps' inputs once for both (``_axpy9x2``); the rest one at a time.
        paired = Og // 2 if T == 9 else 0
        for o in range(g * Og, g * Og + 2 * paired, 2):
            _fill(acc, 0, P, b[o])
            _fill(acc, PB, P, b[o + 1])
            for c in range(Cg):
                _axpy9x2(acc, 0, PB, wf, (o * Cg + c) * T, Cg * T, phases, offsets[c], P)
            _store(yf, acc, 0, n0, nb, O, o, OH, OW, Hq, Wq, lo, hi)
            _store(yf, acc, PB, n0, nb, O, o + 1, OH, OW, Hq, Wq, lo, hi)
        for o in range(g * Og + 2 * paired, (g + 1) * Og):
            _fill(acc, 0, P, b[o])
            for c in range(Cg):
                wo, at = (o * Cg + c) * T, offsets[c]
                t = 0
                while t + 9 <= T:             # nine taps a pass (a 3x3 kernel's all): acc read and written once
                    _axpy9(acc, 0, wf, wo + t, phases, at[t:], P)
                    t += 9
                while t + 3 <= T:             # then three taps a pass
                    _axpy3(acc, 0, wf[wo + t], at[t], wf[wo + t + 1], at[t + 1], wf[wo + t + 2], at[t + 2], phases, P)
                    t += 3
                for t in range(t, T):
                    _axpy(acc, 0, wf[wo + t], phases, at[t], P)
            _store(yf, acc, 0, n0, nb, O, o, OH, OW, Hq, Wq, lo, hi)


@numba.njit(inline="always")
def _store(yf, acc, a0, n0, nb, O, o, OH, OW, Hq, Wq, lo, hi):
    """Output channel o of images n0 ... n0+nb-1 of yf (N, O, OH, OW) =
    the OH x OW real entries of its wide rows, acc[a0:] (nb planes of Hq
    rows of Wq), clamped to [lo, hi]."""
    for i in range(nb):
        for oh in range(OH):
            dst, src = u64((((n0 + i) * O + o) * OH + oh) * OW), u64(a0 + (i * Hq + oh) * Wq)
            for j in range(u64(OW)):
                yf[dst + j] = _clamp_value(acc[src + j], lo, hi)


@numba.njit(**_JIT)
def _grad_input(gy, w, gx, sh, sw, top, left, dh, dw, part, parts):
    """``depthwise_grad_input``, tasks of part ``part`` of ``parts``.

    Tap (kh, kw) of phase p, row r, column q (``_tap``) sends gy[oh, ow]
    to phase entry (oh + r, ow + q): phase p gathers

        gphase[p, i, j] += w[o, kh, kw] * gy[i - r, j - q]

    from gy with PT = Hq - OH zero rows above it and PL = Wq - OW zero
    columns before it (``gpad``). Rows are R = Wq + PL long here, so that
    a real entry j < Wq never reads across a row."""
    N, C, H, W = gx.shape
    O, KH, KW = w.shape
    OH, OW = gy.shape[2], gy.shape[3]
    M, S = O // C, sh * sw
    Hq, Wq = _phase_shape(OH, OW, KH, KW, sh, sw, dh, dw)
    PT, PL = Hq - OH, Wq - OW
    R = Wq + PL
    B = _images_per_task(N, C, S * Hq * R)
    blocks = (N + B - 1) // B
    gyf, wf, gxf = gy.reshape(-1), w.reshape(-1), gx.reshape(-1)
    offsets = numpy.empty(9, numpy.int64)
    gpad = numpy.empty(0, gy.dtype)
    gphase = numpy.empty(0, gx.dtype)
    laid_out = -1                             # buffers reused across tasks, as in _forward
    for task in range(*_share(C * blocks, part, parts)):  # gx[n0:n0+nb, c]: this task's only
        c = task // blocks
        n0 = (task - c * blocks) * B
        nb = min(B, N - n0)
        G = nb * Hq * R                       # one phase of all nb images, stacked
        if nb != laid_out:
            # Image i's gy at rows i*Hq + PT + oh, columns PL + ow; zeros
            # elsewhere (never written), and PT rows + PL more for the
            # garbage entries to read.
            gpad = numpy.zeros(G + PT * R + PL, gy.dtype)
            gphase = numpy.empty(S * G, gx.dtype)
            laid_out = nb
        _fill(gphase, 0, S * G, 0)            # the taps add into it
        for o in range(c * M, (c + 1) * M):
            for i in range(nb):
                for oh in range(OH):
                    _copy(gpad, (i * Hq + PT + oh) * R + PL, 1, gyf, (((n0 + i) * O + o) * OH + oh) * OW, 1, OW)
            wo = o * KH * KW
            t = 0
            if KH * KW == 9 and S == 1:       # a 3x3 kernel, one phase: all nine taps in one pass
                for k in range(9):
                    _, r, q = _tap(k // KW, k % KW, sh, sw, dh, dw)
                    offsets[k] = (PT - r) * R + PL - q
                _axpy9(gphase, 0, wf, wo, gpad, offsets, G)
                t = 9
            while t < KH * KW:
                p0, r0, q0 = _tap(t // KW, t % KW, sh, sw, dh, dw)
                if t + 3 <= KH * KW:          # three taps of one phase: one pass over it
                    p1, r1, q1 = _tap((t + 1) // KW, (t + 1) % KW, sh, sw, dh, dw)
                    p2, r2, q2 = _tap((t + 2) // KW, (t + 2) % KW, sh, sw, dh, dw)
                    if p0 == p1 == p2:
                        _axpy3(gphase, p0 * G, wf[wo + t], (PT - r0) * R + PL - q0, wf[wo + t + 1],
                               (PT - r1) * R + PL - q1, wf[wo + t + 2], (PT - r2) * R + PL - q2, gpad, G)
                        t += 3
                        continue
                _axpy(gphase, p0 * G, wf[wo + t], gpad, (PT - r0) * R + PL - q0, G)
                t += 1
        for i in range(nb):
            _merge(gphase, i * Hq * R, G, Hq, R, Wq, top, left, sh, sw, gxf, ((n0 + i) * C + c) * H * W, H, W)


@numba.njit(**_JIT)
def _grad_weight_sums(x, gy, sums, KH, KW, sh, sw, top, left, dh, dw, part, parts):
    """sums[block, o, c * KH*KW + tap]: tap (kh, kw)'s part of gw[o, c]
    from one block of images, for the tasks (group, block) of part
    ``part`` of ``parts``; Cg = sums.shape[2] / (KH*KW) input channels a
    group (depthwise: 1). A task sums each tap over its images, a dot
    product of the phases with gy in wide rows (zeros in the dropped
    entries), in the arrays' dtype (``loops._dot``); sums holds them in
    float64."""
    N, C, H, W = x.shape
    O, OH, OW = gy.shape[1], gy.shape[2], gy.shape[3]
    T = KH * KW
    Cg = sums.shape[2] // T
    G = C // Cg
    Og, S = O // G, sh * sw
    Hq, Wq = _phase_shape(OH, OW, KH, KW, sh, sw, dh, dw)
    spare = (Hq - OH) * Wq + Wq - OW
    B = _images_per_task(N, G, S * Hq * Wq)
    blocks = (N + B - 1) // B
    xf, gyf = x.reshape(-1), gy.reshape(-1)
    zero = numpy.zeros(1, gy.dtype)[0]       # the dot products' accumulator type
    phases = numpy.empty(0, x.dtype)
    wide = numpy.empty(0, gy.dtype)
    laid_out = -1                             # buffers reused across tasks, as in _forward
    for task in range(*_share(G * blocks, part, parts)):  # sums[block, g*Og:g*Og+Og]: this task's only
        g = task // blocks
        block = task - g * blocks
        n0 = block * B
        nb = min(B, N - n0)
        P = nb * Hq * Wq
        CP = S * P + spare                    # all phases of one input channel
        if nb != laid_out:
            phases = numpy.zeros(Cg * CP, x.dtype)
            wide = numpy.zeros(P, gy.dtype)   # gy in wide rows; the dropped entries stay 0
            offsets = _group_tap_offsets(Cg, CP, KH, KW, sh, sw, dh, dw, P, Wq)
            laid_out = nb
        _split_group(xf, n0, nb, C, g, Cg, H, W, top, left, sh, sw, phases, CP, P, Hq, Wq)
        for o in range(g * Og, (g + 1) * Og):
            for i in range(nb):
                for oh in range(OH):
                    _copy(wide, (i * Hq + oh) * Wq, 1, gyf, (((n0 + i) * O + o) * OH + oh) * OW, 1, OW)
            for c in range(Cg):
                at, first = offsets[c], c * T
                t = 0
                while t + 9 <= T:             # nine taps a pass over wide (a 3x3 kernel's all)
                    _dot9(wide, 0, phases, at[t:], P, sums[block, o], first + t, zero)
                    t += 9
                while t + 3 <= T:             # then three taps a pass
                    sums[block, o, first + t], sums[block, o, first + t + 1], sums[block, o, first + t + 2] = _dot3(
                        wide, 0, phases, at[t], at[t + 1], at[t + 2], P, zero)
                    t += 3
                for t in range(t, T):
                    sums[block, o, first + t] = _dot(wide, 0, phases, at[t], P, zero)


# -- small planes, channels last (forward) -------------------------------------
#: Output pixels (N * OH * OW, the planes of all images) up to which the
#: forward runs channels last (``depthwise_forward_channels_last``) when
#: each channel has one output channel (M == 1): one 7x7 plane is too
#: short for the wide-row loops above, and its per-plane work (phases,
#: passes, copy) costs more than its taps. 2 threads, batch 1: 1152 x 7x7
#: 5x5 0.45 -> 0.21 ms, 1152 x 7x7 3x3 0.19 -> 0.12, 288 x 14x14 5x5 /2
#: 0.13 -> 0.06; at 196 pixels the planes are faster again (672 x 14x14
#: 5x5 0.37 against 0.51; 8 x 960 x 7x7 0.66 against 0.83).
CHANNELS_LAST_MAX_PIXELS = 64
#: ... or, in a batch, up to which each image's output plane (OH * OW) is
#: small enough for the same (its planes' fixed costs, times N * C of
#: them, were most of the time). 2 threads, batch 8-16, channels last /
#: planes: 3x3 outputs 0.24 (1152 channels, 5x5), 0.61 (960, 3x3), 0.86
#: (672, 5x5 /2); 6x6 0.94 (672, 5x5), 0.79 (576, 3x3), 0.99 (384, 3x3);
#: 7x7 0.93 (960, 3x3), 0.78 (960, 5x5); but 12x12 1.59-2.07.
CHANNELS_LAST_MAX_IMAGE_PIXELS = 49


def depthwise_forward_channels_last(x, w, b, y, sh, sw, top, left, dh, dw):
    """``depthwise_forward`` for M == 1 computed channels last: x is
    transposed to (N, H, W, C) and the taps of every output pixel are
    summed as vectors over the channels, then the result is transposed
    back into y (N, C, OH, OW). Same sums, in tap order, plus b first."""
    xt = numpy.ascontiguousarray(x.transpose(0, 2, 3, 1))
    wt = numpy.ascontiguousarray(w.reshape(w.shape[0], -1).T)          # (KH*KW, C)
    N, C, OH, OW = y.shape
    yt = numpy.empty((N, OH, OW, C), y.dtype)
    parallel_parts(_forward_channels_last, x.size + y.size, xt, wt, b, yt, w.shape[1], w.shape[2],
                   sh, sw, top, left, dh, dw)
    y[...] = yt.transpose(0, 3, 1, 2)


@numba.njit(**_JIT)
def _forward_channels_last(xt, wt, b, yt, KH, KW, sh, sw, top, left, dh, dw, part, parts):
    """yt (N, OH, OW, C) from xt (N, H, W, C) and wt (KH*KW, C): the output
    rows (n, oh) of part ``part`` of ``parts``, each pixel a vector of C
    sums."""
    N, H, W, C = xt.shape
    OH, OW = yt.shape[1], yt.shape[2]
    r0, r1 = _share(N * OH, part, parts)
    for row in range(r0, r1):
        n, oh = row // OH, row % OH
        for ow in range(OW):
            acc = yt[n, oh, ow]
            for c in range(C):
                acc[c] = b[c]
            for kh in range(KH):
                ih = oh * sh - top + kh * dh
                if ih < 0 or ih >= H:
                    continue
                for kw in range(KW):
                    iw = ow * sw - left + kw * dw
                    if iw < 0 or iw >= W:
                        continue
                    tap, pixel = wt[kh * KW + kw], xt[n, ih, iw]
                    for c in range(C):
                        acc[c] += tap[c] * pixel[c]
