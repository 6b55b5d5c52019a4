"""Stride-1 convolution by Winograd's minimal filtering, F(m x m, r x r):
3x3 filters (r = 3) and 5x5 ones (r = 5).

Why
---
Direct convolution (im2col + GEMM) spends r*r multiply-adds per input
channel on every output pixel. Winograd (Lavin & Gray, "Fast Algorithms
for Convolutional Neural Networks", 2015) computes an m x m block of
outputs from an a x a block of input (a = m + r - 1) with a*a
multiplications instead of r*r*m*m, by moving both into a transformed
space where the convolution becomes an elementwise product:

    y = A^T [ (G g G^T) * (B^T d B) ] A          (* elementwise)

for one input channel, an a x a input tile d, an r x r filter g and the
m x m output tile y. Three sizes are used (``TRANSFORMS`` holds their
matrices, from the points 0, 1, -1, infinity and, for a = 6, 2, -2):

    F(2x2, 3x3): 16 products for 4 outputs, 2.25x fewer than direct;
    F(4x4, 3x3): 36 products for 16 outputs, 4x fewer. Its larger
                 constants round more: float32 results differ from direct
                 convolution by ~1e-6 of their size, against ~2e-7;
    F(2x2, 5x5): 36 products for 4 outputs, 2.8x fewer, with the same
                 points, B^T and rounding as F(4x4, 3x3).

The matrices follow from the points (Cook-Toom): A^T evaluates a
polynomial of m coefficients at them, G one of r, and B^T is the inverse
transpose of the evaluation matrix of a = m + r - 1 coefficients, its
rows scaled to integers (the scale moved into G's rows);
tests/kernels/test_winograd.py checks each set against the correlation
it computes.

Summed over input channels, each of the a*a positions xi of the
transformed tile is a matrix product over channels, so a layer is

    U[xi] = (G w G^T)[xi]        (O, C)   the filters, transformed once
    V[xi] = (B^T d B)[xi]        (C, T)   every input tile, T tiles
    M[xi] = U[xi] @ V[xi]        (O, T)   a*a GEMMs
    y     = A^T M A              per tile, back to (N, O, OH, OW)

Tiles are a x a windows of the (zero-padded) input taken every m pixels:
tile (n, th, tw) covers output rows m*th ... m*th+m-1 and the same
columns. An output size that m does not divide computes a few extra rows
or columns that are dropped.

Backward
--------
All three transforms are linear, so the gradients go back through them:

* input gradient: conv2d's input gradient at stride 1 is itself an r x r
  stride-1 convolution of gy, with the filters flipped and their in/out
  channels swapped, padded by r - 1 - padding (see
  ``minicnn/functional/conv_strategy.py``); it runs through the same
  forward.
* weight gradient: M = U * V gives dU[xi] = dM[xi] @ V[xi]^T, a GEMM over
  tiles, where dM = A gy_tile A^T is the adjoint of the output transform,
  and then gw = G^T dU G.

How the transforms run fast
---------------------------
The matrices are compile-time constants of the kernels (``kernels(m,
dtype)`` compiles one set per tile size and dtype), so the small loops
over their entries unroll and the terms with a zero coefficient drop out.
What is left is a loop over tiles, and for it to vectorize every tile's
inputs must sit at a fixed offset from its index in contiguous rows:

* the input rows are first split into their m *phases* (columns m*u + p
  for p < m), so that column m*tw + k of tile tw is element tw + k // m
  of phase k % m;
* each image's tiles are numbered th * (TW + S) + tw: S = (a - 1) // m
  spare tiles per row of tiles (one for r = 3, two for F(2x2, 5x5)),
  whose results are dropped, keep the next tile row's inputs at a fixed
  offset too (the GEMMs do S/(TW+S) more work);
* loop indices are unsigned (see ``loops.py``): a signed computed index
  makes LLVM emit gathers and scatters instead of plain vector loads.

F(4x4)'s input transform of one 64-channel 56x56 image, one core: 1.05 ms
with loops along each row of tiles (14 long), 0.3 ms this way.

Layouts and threads
-------------------
V and M are stored (a*a, channels, T): each GEMM reads one contiguous
(channels, T) slab, so the products need no copies. The images are cut
into chunks whose V and M take a few MB, so that they are still in cache
when the GEMMs and the output transform read them, and each thread takes
whole chunks, transforms and GEMMs (see ``threads.py``). A chunk is
several whole images, or, for fewer images than threads or an image too
large for the budget, a band of rows of tiles of one image.
"""
import functools

import numba
import numpy

from .conv import few_rows_a_group
from .loops import JIT, _share, _valid_range, u64
from .threads import matmul_into, parallel_parts, run_in_parallel, split, sum_in_place, thread_count

#: B^T of the six points 0, 1, -1, 2, -2 and infinity: the input transform
#: of both F(4x4, 3x3) and F(2x2, 5x5), whose tiles are 6 x 6.
_BT_SIX_POINTS = numpy.array([[4, 0, -5, 0, 1, 0],
                              [0, -4, -4, 1, 1, 0],
                              [0, 4, -4, -1, 1, 0],
                              [0, -2, -1, 2, 1, 0],
                              [0, 2, -1, -2, 1, 0],
                              [0, 4, 0, -5, 0, 1]], float)

#: (A^T, G, B^T) of F(m x m, r x r) for (m, r) = (2, 3), (4, 3) and (2, 5):
#: shapes (m, a), (a, r), (a, a).
TRANSFORMS = {
    (2, 3): (numpy.array([[1, 1, 1, 0],
                          [0, 1, -1, -1]], float),
             numpy.array([[1, 0, 0],
                          [1 / 2, 1 / 2, 1 / 2],
                          [1 / 2, -1 / 2, 1 / 2],
                          [0, 0, 1]]),
             numpy.array([[1, 0, -1, 0],
                          [0, 1, 1, 0],
                          [0, -1, 1, 0],
                          [0, 1, 0, -1]], float)),
    (4, 3): (numpy.array([[1, 1, 1, 1, 1, 0],
                          [0, 1, -1, 2, -2, 0],
                          [0, 1, 1, 4, 4, 0],
                          [0, 1, -1, 8, -8, 1]], float),
             numpy.array([[1 / 4, 0, 0],
                          [-1 / 6, -1 / 6, -1 / 6],
                          [-1 / 6, 1 / 6, -1 / 6],
                          [1 / 24, 1 / 12, 1 / 6],
                          [1 / 24, -1 / 12, 1 / 6],
                          [0, 0, 1]]),
             _BT_SIX_POINTS),
    (2, 5): (numpy.array([[1, 1, 1, 1, 1, 0],
                          [0, 1, -1, 2, -2, 1]], float),
             numpy.array([[1 / 4, 0, 0, 0, 0],
                          [-1 / 6, -1 / 6, -1 / 6, -1 / 6, -1 / 6],
                          [-1 / 6, 1 / 6, -1 / 6, 1 / 6, -1 / 6],
                          [1 / 24, 1 / 12, 1 / 6, 1 / 3, 2 / 3],
                          [1 / 24, -1 / 12, 1 / 6, -1 / 3, 2 / 3],
                          [0, 0, 0, 0, 1]]),
             _BT_SIX_POINTS),
}


def spare_tiles(m, r=3):
    """S = (a - 1) // m: how many tiles past its own an a x a tile reaches
    into in the phase layout (``input_transform``), so the spare tiles
    of each row."""
    return (m + r - 2) // m


def tile_grid(out_size, m):
    """(TH, TW): m x m output tiles per column and row of one image."""
    OH, OW = out_size
    return -(-OH // m), -(-OW // m)


@numba.njit(inline="always")
def _phases(row, D, d0, start, m, count):
    """D[p, d0 + u] = row[start + m*u + p] for u < count and p < m, 0
    where that is outside the row: the row split into its m phases."""
    for p in range(m):
        lo, hi = _valid_range(row.shape[0], count, start + p, m)
        for u in range(lo):
            D[p, d0 + u] = 0
        dst, src = u64(d0 + lo), u64(start + p + m * lo)
        for u in range(u64(hi - lo)):
            D[p, dst + u] = row[src + u64(m) * u]
        for u in range(hi, count):
            D[p, d0 + u] = 0


@functools.lru_cache(maxsize=None)
def kernels(m, dtype, r=3):
    """The five transform kernels of F(m x m, r x r) for arrays of ``dtype``:
    (filter_transform, filter_transform_adjoint, input_transform,
    output_transform, output_transform_adjoint)."""
    AT, G, BT = (matrix.astype(dtype) for matrix in TRANSFORMS[m, r])
    a, S = m + r - 1, spare_tiles(m, r)
    zero = numpy.dtype(dtype).type(0)
    jit = numba.njit(**JIT)

    # The filter transforms read or write U's planes one at a time: planes
    # a power of two bytes apart (512 x 512 floats is 1 MB) map the same
    # (o, c) of every plane to one cache set, so touching all planes at once
    # misses on every access (the F(4x4) transform of a 512x512 layer took
    # 12.8 ms that way, 2.9 ms plane by plane).
    @jit
    def filter_transform(w, U, part, parts):
        """U (a*a, O, C) = G g G^T for every r x r filter g of w (O, C, r, r),
        any strides (the input gradient passes a flipped, transposed view);
        per output filter, vectorized over the input channels. Does part
        ``part`` of ``parts`` of the filters."""
        O, C = w.shape[0], w.shape[1]
        g = numpy.empty((r, r, C), U.dtype)            # g[k, l, c] = w[o, c, k, l]
        Gg = numpy.empty((a, r, C), U.dtype)           # G g
        o0, o1 = _share(O, part, parts)
        for o in range(o0, o1):
            for c in range(C):
                for k in range(r):
                    for l in range(r):
                        g[k, l, c] = w[o, c, k, l]
            for l in range(r):
                for c in range(C):
                    for i in range(a):
                        s = zero
                        for k in range(r):
                            if G[i, k] != 0:
                                s += G[i, k] * g[k, l, c]
                        Gg[i, l, c] = s
            for i in range(a):                         # (G g) G^T, one plane of U at a time (see below)
                for j in range(a):
                    plane = U[a * i + j, o]
                    for c in range(C):
                        s = zero
                        for l in range(r):
                            s += G[j, l] * Gg[i, l, c]
                        plane[c] = s

    @jit
    def filter_transform_adjoint(dU, gw, part, parts):
        """gw (O, C, r, r) = G^T du G for every du of dU (a*a, O, C): the
        adjoint of ``filter_transform``. Does part ``part`` of ``parts``
        of the filters."""
        O, C = gw.shape[0], gw.shape[1]
        duG = numpy.empty((a, r, C), gw.dtype)         # du G
        GduG = numpy.empty((r, r, C), gw.dtype)        # G^T du G
        o0, o1 = _share(O, part, parts)
        for o in range(o0, o1):
            duG[:] = 0
            for i in range(a):                         # du G, one plane of dU at a time (see below)
                for j in range(a):
                    plane = dU[a * i + j, o]
                    for l in range(r):
                        gjl = G[j, l]
                        if gjl != 0:
                            for c in range(C):
                                duG[i, l, c] += gjl * plane[c]
            for l in range(r):
                for c in range(C):
                    for k in range(r):
                        s = zero
                        for i in range(a):
                            if G[i, k] != 0:
                                s += G[i, k] * duG[i, l, c]
                        GduG[k, l, c] = s
            for c in range(C):
                for k in range(r):
                    for l in range(r):
                        gw[o, c, k, l] = GduG[k, l, c]

    @jit
    def input_transform(x, V, n0, top, left, TH, TW):
        """V (a*a, C, NB*T) = B^T d B for every tile d of images n0 ...
        n0+NB-1 of x (N, C, H, W), zero-padded by ``top`` rows and ``left``
        columns (and as many as the tiles need at the far sides); T =
        TH * (TW + S) tiles per image, the last S of each row spares.

        Per channel of an image: split the padded rows into phases (D),
        apply B along the rows (Q), then B^T down the columns into V, each
        step one loop over all the tiles."""
        N, C, H, W = x.shape
        TS = TW + S                                    # tiles per row, the spares included
        T = TH * TS
        NB = V.shape[2] // T
        F = (TH + S) * TS                              # a phase: TH + S rows of TS columns
        # D[ph, p, hh*TS + u] = xpad[m*hh + ph, m*u + p], S elements spare
        # for the last tile's k // m = S read.
        D = numpy.zeros((m, m, F + S), x.dtype)
        Q = numpy.empty((a, m, F), x.dtype)            # Q[j, ph, f] = sum_k BT[j, k] D[ph, k % m, f + k // m]
        for c in range(C):
            for i_img in range(NB):
                n = n0 + i_img
                for hp in range(m * (TH + S)):         # padded rows
                    h = hp - top
                    ph, d0 = hp % m, (hp // m) * TS
                    if 0 <= h < H:
                        _phases(x[n, c, h], D[ph], d0, -left, m, TS)
                    else:
                        for p in range(m):
                            for u in range(TS):
                                D[ph, p, d0 + u] = 0
                for ph in range(m):                    # d B: column m*tw + k is D[., k % m, tw + k // m]
                    for f in range(u64(F)):
                        for j in range(a):
                            s = zero
                            for k in range(a):
                                if BT[j, k] != 0:
                                    s += BT[j, k] * D[ph, k % m, f + u64(k // m)]
                            Q[j, ph, f] = s
                t0 = i_img * T
                for j in range(a):                     # B^T (d B): row m*th + r is Q[., r % m, th + r // m]
                    for t in range(u64(T)):
                        for i in range(a):
                            s = zero
                            for r in range(a):
                                if BT[i, r] != 0:
                                    s += BT[i, r] * Q[j, r % m, t + u64((r // m) * TS)]
                            V[a * i + j, c, u64(t0) + t] = s

    @jit
    def output_transform(M, b, y, n0, TH, TW, row0):
        """y[n0:n0+NB] (N, O, OH, OW) = A^T m A + b[o] for every tile m of
        M (a*a, O, NB*T), whose TH rows of tiles start at output row
        ``row0``; b is (O,) (zeros for no bias), added for free. Spare
        tiles, and rows or columns past the edge, are dropped."""
        N, O, OH, OW = y.shape
        TS = TW + S
        T = TH * TS
        NB = M.shape[2] // T
        AtM = numpy.empty((m, a, T), M.dtype)          # A^T m
        Y = numpy.empty((m, m, T), M.dtype)            # A^T m A + b
        for o in range(O):
            bo = b[o]
            for i_img in range(NB):
                n = n0 + i_img
                t0 = i_img * T
                for j in range(a):
                    for t in range(u64(T)):
                        for r in range(m):
                            s = zero
                            for i in range(a):
                                if AT[r, i] != 0:
                                    s += AT[r, i] * M[a * i + j, o, u64(t0) + t]
                            AtM[r, j, t] = s
                for r in range(m):
                    for t in range(T):
                        for q in range(m):
                            s = bo
                            for j in range(a):
                                if AT[q, j] != 0:
                                    s += AT[q, j] * AtM[r, j, t]
                            Y[r, q, t] = s
                for r in range(m):                     # into y: column m*tw + q is Y[r, q, tile]
                    for th in range(TH):
                        oh = row0 + m * th + r
                        if oh < OH:
                            yrow, y0 = y[n, o, oh], u64(th * TS)
                            for tw in range(u64(OW // m)):          # whole tiles
                                for q in range(m):
                                    yrow[u64(m) * tw + u64(q)] = Y[r, q, y0 + tw]
                            for q in range(OW % m):                 # a tile past the edge
                                yrow[m * (OW // m) + q] = Y[r, q, th * TS + OW // m]

    @jit
    def output_transform_adjoint(gy, dM, n0, TH, TW, row0):
        """dM (a*a, O, NB*T) = A g A^T for every m x m tile g of images
        n0 ... n0+NB-1 of gy (N, O, OH, OW), TH rows of tiles from output
        row ``row0``, zero past the edges and in the spare tiles: the
        adjoint of ``output_transform``."""
        N, O, OH, OW = gy.shape
        TS = TW + S
        T = TH * TS
        NB = dM.shape[2] // T
        g = numpy.zeros((m, m, T), gy.dtype)           # g[r, q, tile] = gy[m*th + r, m*tw + q]
        gAt = numpy.empty((m, a, T), gy.dtype)         # g A^T
        for o in range(O):
            for i_img in range(NB):
                n = n0 + i_img
                for r in range(m):
                    for th in range(TH):
                        oh = row0 + m * th + r
                        if oh < OH:
                            # The whole tiles' columns in one interleaved loop:
                            # 1.05-1.4x faster here than _phases, a loop per phase.
                            gyrow, g0 = gy[n, o, oh], u64(th * TS)
                            for tw in range(u64(OW // m)):          # whole tiles
                                for q in range(m):
                                    g[r, q, g0 + tw] = gyrow[u64(m) * tw + u64(q)]
                            for q in range(m):                      # the edge and the spare
                                for tw in range(OW // m, TS):
                                    col = m * tw + q
                                    g[r, q, th * TS + tw] = gyrow[col] if col < OW else 0
                        else:
                            for q in range(m):
                                for u in range(TS):
                                    g[r, q, th * TS + u] = 0
                for r in range(m):
                    for t in range(T):
                        for j in range(a):
                            s = zero
                            for q in range(m):
                                if AT[q, j] != 0:
                                    s += AT[q, j] * g[r, q, t]
                            gAt[r, j, t] = s
                t0 = i_img * T
                for j in range(a):
                    for t in range(u64(T)):
                        for i in range(a):
                            s = zero
                            for r in range(m):
                                if AT[r, i] != 0:
                                    s += AT[r, i] * gAt[r, j, t]
                            dM[a * i + j, o, u64(t0) + t] = s

    return filter_transform, filter_transform_adjoint, input_transform, output_transform, output_transform_adjoint


#: Target bytes of one chunk's V (a*a, C, T): a few MB, so that V and M
#: are still in cache when the GEMMs and the output transform read them.
CHUNK_BYTES = 4 << 20
#: The chunk of a grouped convolution of at most ``conv.FEW_ROWS`` output
#: channels a group (conv.py's rule for its tiles): its products of so few
#: rows run at the speed V is read, so V is kept smaller, nearer the cores.
#: 32 x 32 x 28x28 -> 32 groups 2, fwd/gx/gw: 0.72/0.74/0.79 of the time
#: with 4 MB chunks; 8 x 384 x 13x13 groups 2 (192 rows) would take 1.05-1.19x.
FEW_ROWS_CHUNK_BYTES = 1 << 20


def _chunk_budget(G, Og):
    """Bytes of one chunk's V for G groups of Og output channels."""
    return min(CHUNK_BYTES, FEW_ROWS_CHUNK_BYTES) if few_rows_a_group(G, Og) else CHUNK_BYTES


def _planes(buffer, count, rows, cols):
    """The first count * rows * cols elements of ``buffer`` as a
    C-contiguous (count, rows, cols) array. The kernels are compiled for
    contiguous arrays: on a strided view (a slice of a larger V) Numba
    compiles them for any layout, and their loops no longer vectorize
    (measured 3-4x slower)."""
    return buffer[:count * rows * cols].reshape(count, rows, cols)


def _chunks(N, TH, row_bytes, parts, budget):
    """(n0, NB, th0, R) chunks of the tiles: NB whole images (th0 = 0, R =
    TH rows of tiles) whose transformed tiles take about ``budget`` bytes,
    at least ``parts`` of them (one per thread) when there are that many
    images; else bands of R rows of tiles of one image, from row th0,
    within the budget and at least ``parts`` of them where there are that
    many rows. ``row_bytes``: the transformed tiles of one row of tiles.
    With fewer images than threads (inference), whole images would leave
    threads idle: a lone image took as long on two threads as on one.
    The input transform computes a band as an image of R rows of tiles,
    offset by its first row (``input_transform``'s ``top``)."""
    image_bytes = row_bytes * TH
    if N >= parts and image_bytes <= budget:
        nb = max(1, min(budget // max(1, image_bytes), -(-N // parts)))
        return [(n0, min(nb, N - n0), 0, TH) for n0 in range(0, N, nb)]
    R = max(1, min(budget // max(1, row_bytes), -(-N * TH // parts)))
    return [(n, 1, th0, min(R, TH - th0)) for n in range(N) for th0 in range(0, TH, R)]


def winograd_conv2d(x, w, b, padding, out_size, m, groups=1):
    """y (N, O, OH, OW) = conv2d(x, w, stride 1, dilation 1, groups) + b
    for an r x r w (O, C / groups, r, r), by F(m x m, r x r); padding
    ((top, bottom), (left, right)); b (O,) or None.

    The transforms are per channel, so groups change only the products:
    with U (a*a, G, Og, Cg) and V (a*a, G, Cg, T), each position's GEMM
    becomes G of them, one per group, in the same matmul call."""
    x = numpy.ascontiguousarray(x)
    N, C = x.shape[:2]
    O, G, r = w.shape[0], groups, w.shape[-1]
    a = m + r - 1
    (top, _), (left, _) = padding
    filter_transform, _, input_transform, output_transform, _ = kernels(m, x.dtype, r)
    TH, TW = tile_grid(out_size, m)
    TS = TW + spare_tiles(m, r)                    # tiles a row
    U = numpy.empty((a * a, O, C // G), x.dtype)
    parallel_parts(filter_transform, U.size, w.astype(x.dtype, copy=False), U)
    bias = numpy.zeros(O, x.dtype) if b is None else numpy.ascontiguousarray(b, dtype=x.dtype)
    y = numpy.empty((N, O) + tuple(out_size), x.dtype)
    Ug = U.reshape(a * a, G, O // G, C // G)
    threads = thread_count()
    chunks = _chunks(N, TH, a * a * max(C, O) * TS * x.itemsize, threads, _chunk_budget(G, O // G))

    def work(group):                    # one thread's chunks; they write disjoint parts of y
        size = a * a * max(nb * R for _, nb, _, R in group) * TS
        V_buffer, M_buffer = numpy.empty(size * C, x.dtype), numpy.empty(size * O, x.dtype)
        for n0, nb, th0, R in group:
            V, M = _planes(V_buffer, a * a, C, nb * R * TS), _planes(M_buffer, a * a, O, nb * R * TS)
            input_transform(x, V, n0, top - m * th0, left, R, TW)
            # per position and group, (Og, Cg) @ (Cg, tiles)
            numpy.matmul(Ug, V.reshape(a * a, G, C // G, -1), out=M.reshape(a * a, G, O // G, -1))
            output_transform(M, bias, y, n0, R, TW, m * th0)
    run_in_parallel(work, split(chunks, threads))
    return y


def winograd_conv2d_grad_weight(x, gy, padding, m, groups=1, r=3):
    """gw (O, C / groups, r, r) of ``winograd_conv2d`` for gy (N, O, OH, OW):
    per group, dU[xi] = dM[xi] @ V[xi]^T."""
    x, gy = numpy.ascontiguousarray(x), numpy.ascontiguousarray(gy)
    N, C = x.shape[:2]
    O, G, a = gy.shape[1], groups, m + r - 1
    Og, Cg = O // G, C // G
    (top, _), (left, _) = padding
    _, filter_transform_adjoint, input_transform, _, output_transform_adjoint = kernels(m, x.dtype, r)
    TH, TW = tile_grid(gy.shape[2:], m)
    TS = TW + spare_tiles(m, r)
    threads = thread_count()
    chunks = _chunks(N, TH, a * a * max(C, O) * TS * x.itemsize, threads, _chunk_budget(G, Og))

    def work(group):                    # one thread's share of dU, a sum over chunks
        size = a * a * max(nb * R for _, nb, _, R in group) * TS
        V_buffer, dM_buffer = numpy.empty(size * C, x.dtype), numpy.empty(size * O, x.dtype)
        dU = numpy.empty((a * a, O, Cg), x.dtype)
        for i, (n0, nb, th0, R) in enumerate(group):
            V, dM = _planes(V_buffer, a * a, C, nb * R * TS), _planes(dM_buffer, a * a, O, nb * R * TS)
            input_transform(x, V, n0, top - m * th0, left, R, TW)
            output_transform_adjoint(gy, dM, n0, R, TW, m * th0)
            matmul_into(dU.reshape(a * a, G, Og, Cg), dM.reshape(a * a, G, Og, -1),
                        V.reshape(a * a, G, Cg, -1).transpose(0, 1, 3, 2), add=i > 0)   # (a*a, G, Og, Cg)
        return dU
    dU = sum_in_place(run_in_parallel(work, split(chunks, threads)))
    gw = numpy.empty((O, Cg, r, r), x.dtype)
    parallel_parts(filter_transform_adjoint, dU.size, dU, gw)
    return gw
