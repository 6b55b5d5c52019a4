"""im2col and col2im compiled with Numba, for a tile of the batch at a time.

Notation as in ``minicnn/functional/im2col.py``: N batch, C channels,
H, W input size, KH, KW kernel, OH, OW output size, strides sh, sw,
dilations dh, dw, padding ((top, bottom), (left, right)).

Layout and tiles
----------------
The NumPy reference returns ``cols`` as (N, C, KH, KW, OH, OW). These
kernels fill a *tile* of it, the images n0 ... n0+NB-1 and the output rows
r0 ... r0+R-1, stored as (C, KH, KW, NB, R, OW). Read as a matrix that is
(C*KH*KW, NB*R*OW): the column matrix of the tile, so that the GEMM
W (O, K) @ cols (K, T) needs no transposing copy, and a tile of a few MB
is still in cache when the GEMM reads it (``kernels/cpu/conv.py`` picks
the tiles). With NB = N and R = OH the tile is the whole batch, which is
what ``im2col`` / ``col2im`` below (the registered primitives) use.

Threads
-------
These kernels are compiled *serial*, on purpose: conv2d calls them between
GEMMs, tile after tile. A ``parallel=True`` kernel there would bring up a
second thread pool that fights OpenBLAS's (both spin-wait for a moment
after each call; on 2 cores, im2col + GEMM per tile took 5x as long as
the two apart). Instead conv2d gives each thread whole tiles,
kernel and GEMM, with BLAS single-threaded (``threads.py``); the kernels
release the GIL (``nogil=True``) so that the threads run at once.

col2im is a *gather*: for each input row h of each (n, c) plane it sums
every column entry that was copied from that row, so the loop writes each
element of x from one place only and could be split across threads as is.
On small maps (a few pixels per block) it adds the entries of one plane's
blocks into that plane instead, tap after tap: still one writer per plane.

Padding is never materialized: taps that fall outside the image are
written as zeros (im2col) or skipped (col2im).

Any number of spatial dims
--------------------------
``im2col_tile`` and ``col2im_tile`` are the rank-2 kernels, tuned for
images (small blocks through a tap table, shifted planes). Every other
rank runs ``im2col_rows_tile`` / ``col2im_rows_tile``: an input of shape
(D, H, W) is a stack of rows of W pixels, and every tap of the leading
dims (kd, kh) under every leading output position (od, oh) reads one
such row, or falls on the padding. ``row_table`` lists the row offsets
once per call (a (KD*KH, OD*OH) table), and the kernels then copy (or
add back) strided rows along W exactly as the 2-D row loop does. A
1-D signal is the case of no leading dims: one row per image.

The kernels index flat views of their (contiguous) arrays with offsets
computed once per row, instead of slicing a view per row: a layer with
16-pixel rows has hundreds of thousands of rows per call, and making a
slice object for each cost 3-8x the copy itself (64 channels of 16x16,
batch 16: 5.6 ms sliced, 2.0 ms flat).
"""

import numba
import numpy

from ..geometry import conv_output_shape

from .loops import JIT as _JIT, _add, _copy, _fill, _valid_range, u64



#: Blocks (R*OW entries) that ``im2col_tile`` fills entry by entry
#: through a table of tap offsets rather than row by row: up to
#: SMALL_BLOCK entries, or SMALL_SHIFTED_BLOCK where the block is a
#: shifted copy of the plane (stride 1, "same" width: one long copy,
#: which the table beats only on tiny planes). Larger blocks amortize
#: the row loops' set-up: unpadded 12x12 outputs (144 entries) gained
#: with the table (0.17 -> 0.15 ms), 16x16 lost (0.18 -> 0.29). The
#: measurements are in ``benchmarks/results/NOTES.md``.
SMALL_BLOCK = 144
SMALL_SHIFTED_BLOCK = 16
#: Tiles whose blocks have at most this many entries are added back by
#: ``col2im_tile`` entry by entry through the table, larger ones by the
#: row loops: 64 channels of 20x20 (400 entries) gained with the table
#: (1.12 -> 0.86 ms), of 24x24 lost (1.40 -> 1.76).
SMALL_PLANE_BLOCK = 400


@numba.njit(**_JIT)
def _tap_table(H, W, KH, KW, r0, R, OW, sh, sw, top, left, dh, dw):
    """(KH*KW, R*OW): for each tap and each output pixel of a block, the
    offset in its input plane of the pixel it reads, or -1 in the padding.
    Small blocks (a 3x3 conv on a 4x4 map has 16 entries) are copied
    through this table: the bounds are checked once per tap, not once per
    entry of every image and channel (256 channels of 4x4, 8 images:
    0.54 -> 0.22 ms)."""
    table = numpy.empty((KH * KW, R * OW), numpy.int64)
    for kh in range(KH):
        for kw in range(KW):
            for oh in range(R):
                h = kh * dh - top + (r0 + oh) * sh
                for ow in range(OW):
                    w = kw * dw - left + ow * sw
                    inside = 0 <= h < H and 0 <= w < W
                    table[kh * KW + kw, oh * OW + ow] = h * W + w if inside else -1
    return table


@numba.njit(inline="always")
def _gather_taps(src_flat, out, o, plane, offsets, n):
    """out[o + t] = the input pixel of entry t (``offsets``, a row of
    ``_tap_table``), 0 in the padding."""
    for t in range(u64(n)):
        j = offsets[t]
        out[u64(o) + t] = src_flat[u64(plane + j)] if j >= 0 else 0


@numba.njit(inline="always")
def _scatter_taps(src_flat, s, out, plane, offsets, n):
    """The adjoint of ``_gather_taps``: add entry t into its input pixel."""
    for t in range(u64(n)):
        j = offsets[t]
        if j >= 0:
            out[u64(plane + j)] += src_flat[u64(s) + t]


@numba.njit(inline="always")
def _copy_rows(src_flat, out, o, plane, h0, w0, oh_lo, oh_hi, ow_lo, ow_hi, R, OW, W, sh, sw):
    """Rows 0 ... R-1 of one (c, kh, kw, image) block of cols, row by row:
    the taps of output row oh are input row h0 + oh*sh, columns
    w0 + ow*sw, zero where they fall in the padding."""
    _fill(out, o, oh_lo * OW, 0)
    for oh in range(oh_lo, oh_hi):
        row = o + oh * OW
        _fill(out, row, ow_lo, 0)
        _copy(out, row + ow_lo, 1, src_flat, plane + (h0 + oh * sh) * W + w0 + ow_lo * sw, sw, ow_hi - ow_lo)
        _fill(out, row + ow_hi, OW - ow_hi, 0)
    _fill(out, o + oh_hi * OW, (R - oh_hi) * OW, 0)


@numba.njit(inline="always")
def _copy_shifted_plane(src_flat, out, o, plane, h0, w0, oh_lo, oh_hi, ow_lo, ow_hi, R, OW, H, W):
    """The same block when stride is 1 and OW == W ("same" padding): the
    block is then the input plane shifted by h0 rows and w0 columns, one
    long copy, after which the columns that wrapped around a row edge are
    zeroed. One loop instead of R short ones."""
    t_lo, t_hi = oh_lo * OW, oh_hi * OW
    shift = plane + h0 * W + w0
    _fill(out, o, t_lo, 0)
    # The first and last taps may fall outside the plane; they are edge
    # columns, zeroed below.
    t_lo, t_hi = max(t_lo, plane - shift), min(t_hi, plane + H * W - shift)
    _copy(out, o + t_lo, 1, src_flat, shift + t_lo, 1, max(0, t_hi - t_lo))
    for oh in range(oh_lo, oh_hi):
        row = o + oh * OW
        _fill(out, row, ow_lo, 0)
        _fill(out, row + ow_hi, OW - ow_hi, 0)
    _fill(out, o + oh_hi * OW, (R - oh_hi) * OW, 0)


@numba.njit(**_JIT)
def im2col_tile(x, cols, n0, r0, sh, sw, top, left, dh, dw):
    """Fill cols (C, KH, KW, NB, R, OW) with the patches of x (N, C, H, W)
    under output rows r0 ... r0+R-1 of images n0 ... n0+NB-1. Both arrays
    must be C-contiguous."""
    N, C, H, W = x.shape
    _, KH, KW, NB, R, OW = cols.shape
    src_flat, out = x.reshape(-1), cols.reshape(-1)
    shifted_plane = sh == 1 and sw == 1 and OW == W
    small_blocks = R * OW <= (SMALL_SHIFTED_BLOCK if shifted_plane else SMALL_BLOCK)
    # (An empty table for large blocks, which are copied row by row.)
    taps = _tap_table(H, W, KH, KW, r0, R if small_blocks else 0, OW, sh, sw, top, left, dh, dw)
    o = 0                                     # cols is written in order, a block of R*OW at a time
    for c in range(C):
        for kh in range(KH):
            h0 = kh * dh - top + r0 * sh      # input row of tile row 0
            oh_lo, oh_hi = _valid_range(H, R, h0, sh)
            for kw in range(KW):
                w0 = kw * dw - left           # input column of ow = 0
                ow_lo, ow_hi = _valid_range(W, OW, w0, sw)
                for i in range(NB):
                    plane = ((n0 + i) * C + c) * H * W
                    if small_blocks:
                        _gather_taps(src_flat, out, o, plane, taps[kh * KW + kw], R * OW)
                    elif shifted_plane:
                        _copy_shifted_plane(src_flat, out, o, plane, h0, w0, oh_lo, oh_hi, ow_lo, ow_hi,
                                            R, OW, H, W)
                    else:
                        _copy_rows(src_flat, out, o, plane, h0, w0, oh_lo, oh_hi, ow_lo, ow_hi,
                                   R, OW, W, sh, sw)
                    o += R * OW


@numba.njit(**_JIT)
def col2im_tile(cols, x, n0, r0, sh, sw, top, left, dh, dw):
    """Add cols (C, KH, KW, NB, R, OW), a tile as ``im2col_tile`` lays it
    out, into the pixels of x (N, C, H, W) it was copied from. Both arrays
    must be C-contiguous."""
    N, C, H, W = x.shape
    _, KH, KW, NB, R, OW = cols.shape
    src_flat, out = cols.reshape(-1), x.reshape(-1)
    if R * OW <= SMALL_PLANE_BLOCK:
        taps = _tap_table(H, W, KH, KW, r0, R, OW, sh, sw, top, left, dh, dw)
        s = 0                                 # cols is read in order, a block of R*OW at a time
        for c in range(C):
            for k in range(KH * KW):
                for i in range(NB):
                    _scatter_taps(src_flat, s, out, ((n0 + i) * C + c) * H * W, taps[k], R * OW)
                    s += R * OW
        return
    # The input rows this tile touches: from the top tap of its first row
    # to the bottom tap of its last one.
    h_first = max(0, r0 * sh - top)
    h_last = min(H - 1, (r0 + R - 1) * sh - top + (KH - 1) * dh)
    for c in range(C):
        for i in range(NB):
            for h in range(h_first, h_last + 1):
                dst = (((n0 + i) * C + c) * H + h) * W
                for kh in range(KH):
                    # The tile row whose tap kh lands on input row h, if any.
                    t = h + top - kh * dh - r0 * sh
                    if t < 0 or t % sh != 0 or t // sh >= R:
                        continue
                    oh = t // sh
                    for kw in range(KW):
                        w0 = kw * dw - left
                        ow_lo, ow_hi = _valid_range(W, OW, w0, sw)
                        src = ((((c * KH + kh) * KW + kw) * NB + i) * R + oh) * OW
                        _add(out, dst + w0 + ow_lo * sw, sw, src_flat, src + ow_lo, ow_hi - ow_lo)


def row_table(in_size, kernel_size, stride, padding, dilation, out_size):
    """(T, ROWS) int64: for each tap of the leading dims (all but the last;
    T = KD*KH in 3-D) and each leading output position (ROWS = OD*OH), the
    offset in an input plane of the row of W pixels it reads, or -1 where
    it falls on the padding. A 1-D geometry has one entry, 0."""
    offsets = numpy.zeros((1, 1), numpy.int64)
    inside = numpy.ones((1, 1), bool)
    row_stride = in_size[-1]
    for n, k, s, d, (lo, _), o in reversed(list(zip(in_size, kernel_size, stride, dilation, padding, out_size))[:-1]):
        position = numpy.arange(k)[:, None] * d + numpy.arange(o)[None, :] * s - lo      # (k, o)
        # The new dim goes in front of the taps and of the positions.
        offsets = (position * row_stride)[:, None, :, None] + offsets[None, :, None, :]
        inside = ((position >= 0) & (position < n))[:, None, :, None] & inside[None, :, None, :]
        offsets = offsets.reshape(k * offsets.shape[1], o * offsets.shape[3])
        inside = inside.reshape(offsets.shape)
        row_stride *= n
    return numpy.where(inside, offsets, -1)


@numba.njit(**_JIT)
def rows_tile(x, cols, rows, n0, r0, W, sw, left, dw, adjoint):
    """im2col (``adjoint`` False): fill cols (C, T, KW, NB, R, OW) with the
    patches of x (N, C, P), its spatial dims flattened (P pixels, rows of
    W), under the leading output positions r0 ... r0+R-1 of images n0 ...
    n0+NB-1; ``rows`` is the geometry's ``row_table``. col2im (``adjoint``
    True): add such a tile of cols back into the pixels of x it was copied
    from; images n0 ... n0+NB-1 must then be this call's alone. Both walk
    the same (entry, pixel) pairs, so they are one loop. Both arrays must
    be C-contiguous."""
    N, C, P = x.shape
    _, T, KW, NB, R, OW = cols.shape
    x_flat, cols_flat = x.reshape(-1), cols.reshape(-1)
    o = 0                                     # cols is walked in order, a row of OW at a time
    for c in range(C):
        for t in range(T):
            for kw in range(KW):
                w0 = kw * dw - left           # input column of ow = 0
                ow_lo, ow_hi = _valid_range(W, OW, w0, sw)
                for i in range(NB):
                    plane = ((n0 + i) * C + c) * P
                    for r in range(R):
                        row = rows[t, r0 + r]
                        if row < 0 or ow_lo >= ow_hi:     # the whole row falls on the padding
                            if not adjoint:
                                _fill(cols_flat, o, OW, 0)
                        elif adjoint:
                            _add(x_flat, plane + row + w0 + ow_lo * sw, sw, cols_flat, o + ow_lo, ow_hi - ow_lo)
                        else:
                            _fill(cols_flat, o, ow_lo, 0)
                            _copy(cols_flat, o + ow_lo, 1, x_flat, plane + row + w0 + ow_lo * sw, sw, ow_hi - ow_lo)
                            _fill(cols_flat, o + ow_hi, OW - ow_hi, 0)
                        o += OW


def im2col(x, kernel_size, stride, padding, dilation, out_size=None):
    """Same contract and result as the NumPy reference ``im2col``:
    (N, C, *kernel_size, *out_size), here a transposed view of one
    (C, *kernel_size, N, *out_size) buffer, the column matrix of the
    whole batch."""
    x = numpy.ascontiguousarray(x)
    N, C, rank = x.shape[0], x.shape[1], x.ndim - 2
    in_size, kernel_size = x.shape[2:], tuple(kernel_size)
    if out_size is None:
        out_size = conv_output_shape(in_size, kernel_size, stride, padding, dilation)
    out_size = tuple(out_size)
    cols = numpy.empty((C,) + kernel_size + (N,) + out_size, dtype=x.dtype)
    if rank == 2:
        (sh, sw), (dh, dw), ((top, _), (left, _)) = stride, dilation, padding
        im2col_tile(x, cols, 0, 0, sh, sw, top, left, dh, dw)
    else:
        rows = row_table(in_size, kernel_size, stride, padding, dilation, out_size)
        tile = cols.reshape(C, rows.shape[0], kernel_size[-1], N, rows.shape[1], out_size[-1])
        rows_tile(x.reshape(N, C, -1), tile, rows, 0, 0, in_size[-1], stride[-1], padding[-1][0], dilation[-1],
                  False)
    batch = 1 + rank
    return cols.transpose((batch, 0) + tuple(range(1, batch)) + tuple(range(batch + 1, cols.ndim)))


def col2im(cols, in_size, stride, padding, dilation):
    """Same contract and result as the NumPy reference ``col2im``: cols
    (N, C, *kernel_size, *out_size) -> x (N, C, *in_size). A cols that
    ``im2col`` made is already in the kernel's layout and is not copied."""
    rank = len(in_size)
    kernel_size, out_size = cols.shape[2:2 + rank], cols.shape[2 + rank:]
    cols = numpy.ascontiguousarray(cols.transpose((1,) + tuple(range(2, 2 + rank)) + (0,) +
                                                  tuple(range(2 + rank, cols.ndim))))
    C, N = cols.shape[0], cols.shape[1 + rank]
    x = numpy.zeros((N, C) + tuple(in_size), dtype=cols.dtype)
    if rank == 2:
        (sh, sw), (dh, dw), ((top, _), (left, _)) = stride, dilation, padding
        col2im_tile(cols, x, 0, 0, sh, sw, top, left, dh, dw)
    else:
        rows = row_table(tuple(in_size), kernel_size, stride, padding, dilation, out_size)
        tile = cols.reshape(C, rows.shape[0], kernel_size[-1], N, rows.shape[1], out_size[-1])
        rows_tile(x.reshape(N, C, -1), tile, rows, 0, 0, in_size[-1], stride[-1], padding[-1][0], dilation[-1],
                  True)
    return x
