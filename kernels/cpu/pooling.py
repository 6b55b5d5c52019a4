"""Pooling compiled with Numba: max, average and adaptive pools, forward
and backward.

Notation as in ``minicnn/functional/pooling.py``: N batch, C channels,
H, W input size, KH, KW kernel, SH, SW strides, PH, PW padding, DH, DW
dilation, OH, OW output size. ``win`` is that module's window geometry:
any object with the pairs ``in_hw``, ``kernel``, ``stride``, ``padding``,
``dilation`` and ``out_hw``.

Each wrapper has the contract of the NumPy reference it replaces and gives
the same numbers: the same maxima and offsets, and for average pooling
the same sums, added in the same order in the same dtype.

How the loops differ from the reference
---------------------------------------
The reference loops over the KH*KW kernel offsets and moves whole-array
slices of a padded copy of the input. The window pools here do the same
per task (a channel of a few images), on the *phases* of the padded
planes that ``depthwise.py`` builds (read its notes): cut by the strides
into sh*sw phases, the padded planes are read by every kernel offset at
stride 1, so each offset is one contiguous, vectorized loop over the
task's planes in wide rows, whatever the stride, dilation or plane size.

* Average pooling *is* a depthwise convolution with all-ones taps: the
  window sums come from ``depthwise_forward`` (the adjoint from
  ``depthwise_grad_input``), divided by the window counts.
* Max pooling fills the phases with -inf where the reference pads with
  -inf, and keeps a running maximum and its offset for each wide entry.
* Max backward adds each output's gradient at its maximum: a scatter,
  each plane written by one thread only, with the offset's (row, column)
  from a table (no division per output).

Max pooling saves, like the reference, the kernel offset k = kh*KW + kw of
each maximum (uint8 or int32); adaptive max pooling saves the int64 flat
index row*W + col. A NaN always wins a max and the first of equal maxima
is kept (torch's rules), exactly as in the reference.

Adaptive pools take one (n, c) plane per task and walk its bins, whose
bounds come from tables computed once per call. Their sums and the global
average accumulate in float64.

Arrays are C-contiguous (the wrappers see to it) and indexed through flat
views, with offsets computed once per row (see ``loops.py`` on the
unsigned indices of the inner loops).
"""
import numba
import numpy

from .depthwise import _images_per_task, _phase_shape, _split, _tap, depthwise_forward, depthwise_grad_input
from .loops import JIT as _JIT, _copy, _fill, _share, _valid_range, u64
from .threads import parallel_parts

# Sums may be reassociated: LLVM then vectorizes them into several partial
# sums instead of one chain of dependent adds (NaN and inf keep their IEEE
# meaning; only the rounding of a sum changes).
_SUM_JIT = dict(_JIT, fastmath={"reassoc"})


# -- max pooling ---------------------------------------------------------
@numba.njit(inline="always")
def _beats(v, best):
    """Whether v takes a max's place from ``best``: strictly greater (the
    first of equal maxima stays), or NaN (a NaN always wins), torch's
    rule. | not or: no branch, so the loops that call it vectorize."""
    return (v > best) | (v != v)


@numba.njit(cache=True)
def _max_update(best, k_best, src, s0, n, k):
    """For j < n: where src[s0 + j] beats best[j] (``_beats``), take it
    and offset k. Written as selects, not branches, so that it
    vectorizes; k_best is int32, as wide as a float32 pool's floats: with
    uint8 offsets (the saved ``arg``'s dtype) the selects did not
    vectorize, and ResNet's 3x3/2 pool of 1 x 64 x 112x112 took 3.3-3.6
    ms, 4x as long (torch's: 3.5-4.4 ms)."""
    s0 = u64(s0)
    for j in range(u64(n)):
        v, b = src[s0 + j], best[j]
        take = _beats(v, b)
        best[j] = v if take else b
        k_best[j] = k if take else k_best[j]


@numba.njit(cache=True)
def _max_only(best, src, s0, n):
    """``_max_update`` without the offsets, for a forward that no backward
    will follow: 0.90-0.96 of the time with them."""
    s0 = u64(s0)
    for j in range(u64(n)):
        v, b = src[s0 + j], best[j]
        best[j] = v if _beats(v, b) else b


@numba.njit(**_JIT)
def _max_forward(x, y, arg, KH, KW, sh, sw, ph, pw, dh, dw, part, parts):
    """x (N, C, H, W) -> y (N, C, OH, OW) and arg, the offset of each max
    (an empty arg: none wanted).

    A task takes B images of channel c, cuts them into phases (-inf
    outside the input) and runs the KH*KW offsets in order, each one
    ``_max_update`` over the planes in wide rows (see depthwise.py)."""
    N, C, H, W = x.shape
    OH, OW = y.shape[2], y.shape[3]
    S = sh * sw
    Hq, Wq = _phase_shape(OH, OW, KH, KW, sh, sw, dh, dw)
    spare = (Hq - OH) * Wq + Wq - OW          # how far the garbage entries read past the end
    B = _images_per_task(N, C, S * Hq * Wq)
    blocks = (N + B - 1) // B
    offsets = arg.size != 0
    xf, yf, af = x.reshape(-1), y.reshape(-1), arg.reshape(-1)
    for task in range(*_share(C * blocks, part, parts)):  # y, arg[n0:n0+nb, c]: this task's only
        c = task // blocks
        n0 = (task - c * blocks) * B
        nb = min(B, N - n0)
        P = nb * Hq * Wq                      # one phase of all nb images, stacked
        phases = numpy.full(S * P + spare, -numpy.inf, x.dtype)
        best = numpy.full(P, -numpy.inf, x.dtype)   # -inf and offset 0: what an all-padding window holds
        k_best = numpy.zeros(P if offsets else 0, numpy.int32)
        for i in range(nb):
            _split(xf, ((n0 + i) * C + c) * H * W, H, W, ph, pw, sh, sw, phases, i * Hq * Wq, P, Hq, Wq)
        for kh in range(KH):
            for kw in range(KW):
                p, r, q = _tap(kh, kw, sh, sw, dh, dw)
                if offsets:
                    _max_update(best, k_best, phases, p * P + r * Wq + q, P, numpy.int32(kh * KW + kw))
                else:
                    _max_only(best, phases, p * P + r * Wq + q, P)
        for i in range(nb):                   # keep the OH x OW real entries
            for oh in range(OH):
                out = (((n0 + i) * C + c) * OH + oh) * OW
                _copy(yf, out, 1, best, (i * Hq + oh) * Wq, 1, OW)
                if offsets:
                    _copy(af, out, 1, k_best, (i * Hq + oh) * Wq, 1, OW)


@numba.njit(cache=True)
def _scatter_inside(gxf, corner, sw, dk, af, gyf, out, n):
    """For j < n: gxf[corner + j*sw + dk[af[out + j]]] += gyf[out + j]:
    n outputs of a row whose windows lie inside the input, the first
    one's top-left corner at flat index ``corner``."""
    corner, sw, out = u64(corner), u64(sw), u64(out)
    for j in range(u64(n)):
        gxf[corner + j * sw + u64(dk[af[out + j]])] += gyf[out + j]


@numba.njit(cache=True)
def _scatter_checked(gxf, plane, H, W, h0, w0, sw, dk_h, dk_w, af, gyf, out, n):
    """The same with a check per output: a window on the padding may keep
    its max there (all -inf: offset 0), and that gradient has no input
    to go to."""
    for j in range(n):
        k = af[out + j]
        h, w = h0 + dk_h[k], w0 + j * sw + dk_w[k]
        if 0 <= h < H and 0 <= w < W:
            gxf[plane + h * W + w] += gyf[out + j]


@numba.njit(**_JIT)
def _max_backward(gy, arg, gx, KH, KW, sh, sw, ph, pw, dh, dw, part, parts):
    """gy (N, C, OH, OW) added into gx (N, C, H, W) at each saved maximum.
    The windows of rows oh_lo ... oh_hi-1 and columns ow_lo ... ow_hi-1
    lie inside the input; only the others need checking."""
    N, C, H, W = gx.shape
    OH, OW = gy.shape[2], gy.shape[3]
    # Row, column and flat offset of kernel offset k = kh*KW + kw in its
    # window: tables, so that no output pays for k // KW and k % KW.
    dk_h, dk_w = numpy.empty(KH * KW, numpy.int64), numpy.empty(KH * KW, numpy.int64)
    dk = numpy.empty(KH * KW, numpy.int64)
    for k in range(KH * KW):
        dk_h[k], dk_w[k] = (k // KW) * dh, (k % KW) * dw
        dk[k] = dk_h[k] * W + dk_w[k]
    oh_lo, oh_hi = _valid_range(H - (KH - 1) * dh, OH, -ph, sh)
    ow_lo, ow_hi = _valid_range(W - (KW - 1) * dw, OW, -pw, sw)
    ow_lo, ow_hi = min(ow_lo, OW), min(ow_hi, OW)
    gyf, af, gxf = gy.reshape(-1), arg.reshape(-1), gx.reshape(-1)
    for task in range(*_share(N * C, part, parts)):  # the plane (n, c) of gx: this task's only
        plane = task * H * W
        _fill(gxf, plane, H * W, 0)
        for oh in range(OH):
            out, h0 = (task * OH + oh) * OW, oh * sh - ph
            lo, hi = (ow_lo, ow_hi) if oh_lo <= oh < oh_hi else (0, 0)
            _scatter_checked(gxf, plane, H, W, h0, -pw, sw, dk_h, dk_w, af, gyf, out, lo)
            _scatter_inside(gxf, plane + h0 * W + lo * sw - pw, sw, dk, af, gyf, out + lo, hi - lo)
            _scatter_checked(gxf, plane, H, W, h0, hi * sw - pw, sw, dk_h, dk_w, af, gyf, out + hi, OW - hi)


def max_pool2d_forward(x, win, offsets=True):
    """x (N, C, H, W) -> (y (N, C, OH, OW), arg): arg holds the kernel
    offset kh*KW + kw of each maximum, as ``win.offset_dtype()``; None
    where ``offsets`` is False (no backward to come)."""
    x = numpy.ascontiguousarray(x)
    shape = x.shape[:2] + tuple(win.out_hw)
    y = numpy.empty(shape, dtype=x.dtype)
    arg = numpy.empty(shape if offsets else (0,) * len(shape), dtype=win.offset_dtype())
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = win.kernel, win.stride, win.padding, win.dilation
    parallel_parts(_max_forward, x.size + y.size, x, y, arg, kh, kw, sh, sw, ph, pw, dh, dw)
    return y, arg if offsets else None


def max_pool2d_backward(gy, win, arg):
    """gy (N, C, OH, OW) -> gx (N, C, H, W): each output's gradient goes to
    the input position that held its maximum."""
    gy = numpy.ascontiguousarray(gy)
    gx = numpy.empty(gy.shape[:2] + tuple(win.in_hw), dtype=gy.dtype)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = win.kernel, win.stride, win.padding, win.dilation
    parallel_parts(_max_backward, gy.size + gx.size, gy, numpy.ascontiguousarray(arg), gx,
                   kh, kw, sh, sw, ph, pw, dh, dw)
    return gx


# -- average pooling -----------------------------------------------------
def _divisor_grid(divisor, out_hw, dtype):
    """The divisor as an (OH, OW) array of ``dtype`` (it may come as a
    scalar, from ``divisor_override``)."""
    return numpy.broadcast_to(numpy.asarray(divisor, dtype=dtype), tuple(out_hw))


def _tiles_input(win):
    """Whether the windows tile the input: stride == kernel, no padding,
    every window inside (LeNet-5's 2x2 pools). Each input pixel is then
    in at most one window."""
    (KH, KW), (OH, OW), (H, W) = win.kernel, win.out_hw, win.in_hw
    return (tuple(win.stride) == (KH, KW) and tuple(win.padding) == (0, 0)
            and OH * KH <= H and OW * KW <= W)


@numba.njit(**_JIT)
def _avg_blocks_backward(gy, d, gx, KH, KW, part, parts):
    """gx (N, C, H, W): gy / d spread over each block of the forward, 0 on
    the rows and columns no block covers."""
    N, C, H, W = gx.shape
    OH, OW = gy.shape[2], gy.shape[3]
    gyf, gxf, df = gy.reshape(-1), gx.reshape(-1), d.reshape(-1)
    g = numpy.empty(OW, gy.dtype)
    start, stop = _share(N * C, part, parts)
    for plane in range(start, stop):
        _fill(gxf, plane * H * W, H * W, 0)
        for oh in range(OH):
            row, out = (plane * H + oh * KH) * W, (plane * OH + oh) * OW
            for ow in range(u64(OW)):
                g[ow] = gyf[u64(out) + ow] / df[u64(oh * OW) + ow]
            for i in range(KH):
                for j in range(KW):
                    _copy(gxf, row + i * W + j, KW, g, 0, 1, OW)


def avg_pool2d_forward(x, win, divisor):
    """x (N, C, H, W) -> y (N, C, OH, OW): window sums / divisor (OH, OW or
    a scalar). The sums are a depthwise convolution with all-ones taps
    (1 * v is exact, so they are the reference's sums). Average pools
    have no dilation."""
    x = numpy.ascontiguousarray(x)
    c = x.shape[1]
    y = numpy.empty(x.shape[:2] + tuple(win.out_hw), dtype=x.dtype)
    (kh, kw), (sh, sw), (ph, pw) = win.kernel, win.stride, win.padding
    ones = numpy.ones((c, kh, kw), dtype=x.dtype)
    depthwise_forward(x, ones, numpy.zeros(c, x.dtype), y, sh, sw, ph, pw, 1, 1)
    y /= _divisor_grid(divisor, win.out_hw, x.dtype)
    return y


def avg_pool2d_backward(gy, win, divisor):
    """gy (N, C, OH, OW) -> gx (N, C, H, W), the adjoint of the forward:
    gy / divisor spread over each window. Windows that tile the input are
    filled block by block (each input pixel gets one value or 0; 2x2 pools
    on 8x128 maps of 56x56: 2.3 -> 1.8 ms), others through the depthwise
    convolution's input gradient. The forward has no such case: by
    blocks, its sums were no faster than the depthwise kernel's."""
    gy = numpy.ascontiguousarray(gy)
    d = numpy.ascontiguousarray(_divisor_grid(divisor, win.out_hw, gy.dtype))
    gx = numpy.empty(gy.shape[:2] + tuple(win.in_hw), dtype=gy.dtype)
    (kh, kw), (sh, sw), (ph, pw) = win.kernel, win.stride, win.padding
    if _tiles_input(win):
        parallel_parts(_avg_blocks_backward, gx.size, gy, d, gx, kh, kw)
        return gx
    g = numpy.ascontiguousarray(gy / d, dtype=gy.dtype)
    depthwise_grad_input(g, numpy.ones((g.shape[1], kh, kw), dtype=g.dtype), gx, sh, sw, ph, pw, 1, 1)
    return gx


# -- adaptive pooling ----------------------------------------------------
@numba.njit(cache=True)
def _bins(size, out):
    """torch's adaptive bins of an axis, as tables: bin j is
    [lo[j], hi[j]) = [floor(j*size/out), ceil((j+1)*size/out))."""
    lo, hi = numpy.empty(out, numpy.int64), numpy.empty(out, numpy.int64)
    for j in range(out):
        lo[j], hi[j] = (j * size) // out, ((j + 1) * size + out - 1) // out
    return lo, hi


@numba.njit(**_SUM_JIT)
def _adaptive_avg_forward(x, y, part, parts):
    """y (N, C, OH, OW) = the mean of each bin of x (N, C, H, W)."""
    N, C, H, W = x.shape
    OH, OW = y.shape[2], y.shape[3]
    (h_lo, h_hi), (w_lo, w_hi) = _bins(H, OH), _bins(W, OW)
    xf, yf = x.reshape(-1), y.reshape(-1)
    for task in range(*_share(N * C, part, parts)):  # the plane (n, c) of y: this task's only
        plane, out = task * H * W, task * OH * OW
        for oh in range(OH):
            for ow in range(OW):
                total = 0.0
                for h in range(h_lo[oh], h_hi[oh]):
                    row = plane + h * W
                    for w in range(w_lo[ow], w_hi[ow]):
                        total += xf[row + w]
                yf[out] = total / ((h_hi[oh] - h_lo[oh]) * (w_hi[ow] - w_lo[ow]))
                out += 1


@numba.njit(**_JIT)
def _adaptive_avg_backward(gy, gx, part, parts):
    """gx (N, C, H, W): each bin's gradient of gy (N, C, OH, OW) spread
    evenly over the bin."""
    N, C, H, W = gx.shape
    OH, OW = gy.shape[2], gy.shape[3]
    (h_lo, h_hi), (w_lo, w_hi) = _bins(H, OH), _bins(W, OW)
    gyf, gxf = gy.reshape(-1), gx.reshape(-1)
    for task in range(*_share(N * C, part, parts)):  # the plane (n, c) of gx: this task's only
        plane, out = task * H * W, task * OH * OW
        _fill(gxf, plane, H * W, 0)
        for oh in range(OH):
            for ow in range(OW):
                g = gyf[out] / ((h_hi[oh] - h_lo[oh]) * (w_hi[ow] - w_lo[ow]))
                out += 1
                for h in range(h_lo[oh], h_hi[oh]):
                    row = plane + h * W
                    for w in range(w_lo[ow], w_hi[ow]):
                        gxf[row + w] += g     # bins may overlap: a position may get several


@numba.njit(**_JIT)
def _adaptive_max_forward(x, y, idx, part, parts):
    """y (N, C, OH, OW) = the max of each bin of x (N, C, H, W); idx its
    flat index h*W + w in the plane."""
    N, C, H, W = x.shape
    OH, OW = y.shape[2], y.shape[3]
    (h_lo, h_hi), (w_lo, w_hi) = _bins(H, OH), _bins(W, OW)
    xf, yf, idxf = x.reshape(-1), y.reshape(-1), idx.reshape(-1)
    for task in range(*_share(N * C, part, parts)):  # the plane (n, c) of y and idx: this task's only
        plane, out = task * H * W, task * OH * OW
        for oh in range(OH):
            for ow in range(OW):
                best, i_best = -numpy.inf, h_lo[oh] * W + w_lo[ow]
                for h in range(h_lo[oh], h_hi[oh]):
                    for w in range(w_lo[ow], w_hi[ow]):
                        v = xf[plane + h * W + w]
                        if _beats(v, best):
                            best, i_best = v, h * W + w
                yf[out], idxf[out] = best, i_best
                out += 1


@numba.njit(**_JIT)
def _flat_scatter(gy, idx, gx, part, parts):
    """gx (N, C, H*W) = gy (N, C, OH, OW) added at the flat plane indices idx."""
    N, C, L = gx.shape
    OH, OW = gy.shape[2], gy.shape[3]
    gyf, idxf, gxf = gy.reshape(-1), idx.reshape(-1), gx.reshape(-1)
    for task in range(*_share(N * C, part, parts)):  # the plane (n, c) of gx: this task's only
        plane, out = task * L, task * OH * OW
        _fill(gxf, plane, L, 0)
        for j in range(OH * OW):
            gxf[plane + idxf[out + j]] += gyf[out + j]


@numba.njit(**_SUM_JIT)
def _global_avg_forward(x, y, part, parts):
    """x (P, L) -> y (P,): the mean of each row. The special case of one
    bin (global average pooling, the head of most CNNs): a flat loop over
    the whole plane vectorizes, where the bin loops, 7 long in a 7x7
    plane, would mostly pay loop overhead."""
    P, L = x.shape
    xf = x.reshape(-1)
    for p in range(*_share(P, part, parts)):  # y[p]: this task's only
        start = u64(p * L)
        total = 0.0
        for l in range(u64(L)):
            total += xf[start + l]
        y[p] = total / L


@numba.njit(**_JIT)
def _global_avg_backward(gy, gx, part, parts):
    """gy (P,) -> gx (P, L): each row's gradient spread evenly over it."""
    P, L = gx.shape
    gxf = gx.reshape(-1)
    for p in range(*_share(P, part, parts)):  # row p of gx: this task's only
        _fill(gxf, p * L, L, gy[p] / L)


def adaptive_avg_pool2d_forward(x, out_hw):
    """x (N, C, H, W) -> the mean of each of the (OH, OW) bins."""
    x = numpy.ascontiguousarray(x)
    n, c, h, w = x.shape
    y = numpy.empty((n, c) + tuple(out_hw), dtype=x.dtype)
    if tuple(out_hw) == (1, 1):
        parallel_parts(_global_avg_forward, x.size, x.reshape(n * c, h * w), y.reshape(n * c))
    else:
        parallel_parts(_adaptive_avg_forward, x.size, x, y)
    return y


def adaptive_avg_pool2d_backward(gy, in_hw):
    """gy (N, C, OH, OW) -> gx (N, C, H, W): each bin's gradient spread
    evenly over the bin."""
    gy = numpy.ascontiguousarray(gy)
    (n, c, oh, ow), (h, w) = gy.shape, in_hw
    gx = numpy.empty((n, c, h, w), dtype=gy.dtype)
    if (oh, ow) == (1, 1):
        parallel_parts(_global_avg_backward, gx.size, gy.reshape(n * c), gx.reshape(n * c, h * w))
    else:
        parallel_parts(_adaptive_avg_backward, gx.size, gy, gx)
    return gx


def adaptive_max_pool2d_forward(x, out_hw):
    """x (N, C, H, W) -> (y, idx): the max of each bin and its int64 flat
    index row*W + col in the input plane."""
    x = numpy.ascontiguousarray(x)
    shape = x.shape[:2] + tuple(out_hw)
    y, idx = numpy.empty(shape, dtype=x.dtype), numpy.empty(shape, dtype=numpy.int64)
    parallel_parts(_adaptive_max_forward, x.size, x, y, idx)
    return y, idx


def adaptive_max_pool2d_backward(gy, idx, in_shape):
    """gy (N, C, OH, OW) -> gx of shape ``in_shape`` (N, C, H, W), each
    gradient added at its flat index (overlapping bins may repeat one)."""
    gy = numpy.ascontiguousarray(gy)
    n, c, h, w = in_shape
    gx = numpy.empty((n, c, h * w), dtype=gy.dtype)
    parallel_parts(_flat_scatter, gx.size, gy, numpy.ascontiguousarray(idx), gx)
    return gx.reshape(in_shape)
