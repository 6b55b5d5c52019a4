"""3x3 stride-1 convolution by Winograd's minimal filtering, F(2x2, 3x3).

Why
---
Direct convolution (im2col + GEMM) spends 9 multiply-adds per input
channel on every output pixel. Winograd (Lavin & Gray, "Fast Algorithms
for Convolutional Neural Networks", 2015) computes a 2x2 block of outputs
from a 4x4 block of input with 16 multiplications instead of 36, by
moving both into a transformed space where the convolution becomes an
elementwise product:

    y = A^T [ (G g G^T) * (B^T d B) ] A          (* elementwise)

for one input channel, a 4x4 input tile d, a 3x3 filter g and the 2x2
output tile y, with the constant matrices

    B^T = [1  0 -1  0]     G = [1    0    0  ]     A^T = [1  1  1  0]
          [0  1  1  0]         [1/2  1/2  1/2]           [0  1 -1 -1]
          [0 -1  1  0]         [1/2 -1/2  1/2]
          [0  1  0 -1]         [0    0    1  ]

Summed over input channels, each of the 16 positions xi of the 4x4
transformed tile is a matrix product over channels, so a layer is

    U[xi] = (G w G^T)[xi]        (O, C)   the filters, transformed once
    V[xi] = (B^T d B)[xi]        (C, T)   every input tile, T tiles
    M[xi] = U[xi] @ V[xi]        (O, T)   16 GEMMs: 2.25x fewer flops
    y     = A^T M A              per tile, back to (N, O, OH, OW)

Tiles are 4x4 windows of the (zero-padded) input taken every 2 pixels:
tile (n, th, tw) covers output rows 2*th, 2*th+1 and columns 2*tw,
2*tw+1, and T = N * ceil(OH/2) * ceil(OW/2). An odd OH or OW computes one
extra row or column that is dropped.

The transforms only add and subtract (and halve, for G), so the extra
rounding is small: float32 results differ from direct convolution by a
few units in the last place, float64 ones by ~1e-15 relative.

Backward
--------
All three transforms are linear, so the gradients go back through them:

* input gradient: conv2d's input gradient at stride 1 is itself a 3x3
  stride-1 convolution of gy, with the filters flipped and their in/out
  channels swapped, padded by 2 - padding (see ``kernels/cpu/conv.py``);
  it runs through the same forward.
* weight gradient: M = U * V gives dU[xi] = dM[xi] @ V[xi]^T, a GEMM over
  tiles, where dM = A gy_tile A^T is the adjoint of the output transform
  (``output_transform_adjoint``), and then gw = G^T dU G.

Layouts and threads
-------------------
V and M are stored (16, channels, T): each of the 16 GEMMs reads one
contiguous (channels, T) slab, so the products need no copies. The
images are cut into chunks whose V and M take a few MB, so that they are
still in cache when the GEMMs and the output transform read them, and
each thread takes whole chunks, transforms and GEMMs (see ``threads.py``).
"""
import numba
import numpy

from .threads import run_in_parallel, split, sum_in_place, thread_count

_JIT = dict(cache=True, nogil=True)   # nogil: chunks run on several threads (threads.py)

# Filter transform G (4, 3): U = G g G^T.
G = numpy.array([[1.0, 0.0, 0.0],
                 [0.5, 0.5, 0.5],
                 [0.5, -0.5, 0.5],
                 [0.0, 0.0, 1.0]])


def tile_grid(out_size):
    """(TH, TW): 2x2 output tiles per column and row of one image."""
    OH, OW = out_size
    return (OH + 1) // 2, (OW + 1) // 2


@numba.njit(**_JIT)
def filter_transform(w, U):
    """U (16, O, C) = G g G^T for every 3x3 filter g of w (O, C, 3, 3)."""
    O, C = w.shape[0], w.shape[1]
    t = numpy.empty((4, 3), U.dtype)
    for o in range(O):
        for c in range(C):
            for j in range(3):                         # G g: rows g0, (g0+g1+g2)/2, (g0-g1+g2)/2, g2
                g0, g1, g2 = w[o, c, 0, j], w[o, c, 1, j], w[o, c, 2, j]
                t[0, j] = g0
                t[1, j] = 0.5 * (g0 + g1 + g2)
                t[2, j] = 0.5 * (g0 - g1 + g2)
                t[3, j] = g2
            for i in range(4):                         # (G g) G^T: the same along rows
                t0, t1, t2 = t[i, 0], t[i, 1], t[i, 2]
                U[4 * i + 0, o, c] = t0
                U[4 * i + 1, o, c] = 0.5 * (t0 + t1 + t2)
                U[4 * i + 2, o, c] = 0.5 * (t0 - t1 + t2)
                U[4 * i + 3, o, c] = t2


@numba.njit(**_JIT)
def filter_transform_adjoint(dU, gw):
    """gw (O, C, 3, 3) = G^T dU G for dU (16, O, C): the adjoint of
    ``filter_transform``. G^T's rows are (1, 1/2, 1/2, 0), (0, 1/2, -1/2, 0)
    and (0, 1/2, 1/2, 1)."""
    O, C = gw.shape[0], gw.shape[1]
    t = numpy.empty((3, 4), gw.dtype)
    for o in range(O):
        for c in range(C):
            for j in range(4):                         # G^T dU
                u0, u1, u2, u3 = dU[j, o, c], dU[4 + j, o, c], dU[8 + j, o, c], dU[12 + j, o, c]
                t[0, j] = u0 + 0.5 * (u1 + u2)
                t[1, j] = 0.5 * (u1 - u2)
                t[2, j] = 0.5 * (u1 + u2) + u3
            for i in range(3):                         # (G^T dU) G
                u0, u1, u2, u3 = t[i, 0], t[i, 1], t[i, 2], t[i, 3]
                gw[o, c, i, 0] = u0 + 0.5 * (u1 + u2)
                gw[o, c, i, 1] = 0.5 * (u1 - u2)
                gw[o, c, i, 2] = 0.5 * (u1 + u2) + u3


@numba.njit(**_JIT)
def input_transform(x, V, n0, top, left, TH, TW):
    """V (16, C, NB*TH*TW) = B^T d B for every 4x4 tile d of images
    n0 ... n0+NB-1 of x (N, C, H, W), zero-padded by ``top`` rows and
    ``left`` columns (and as many as the tiles need at the far sides).

    Per row of tiles: copy the 4 input rows it spans, padded, once; apply
    B^T down the columns of all of them at once; then B along each tile's
    4 columns. Every loop runs along a row, so it vectorizes."""
    N, C, H, W = x.shape
    NB = V.shape[2] // (TH * TW)
    Wp = 2 * TW + 2                                    # padded width the tiles span
    rows = numpy.empty((4, Wp), x.dtype)
    for c in range(C):
        for i_img in range(NB):
            n = n0 + i_img
            for th in range(TH):
                h0 = 2 * th - top
                for r in range(4):
                    h = h0 + r
                    for j in range(Wp):
                        rows[r, j] = 0
                    if 0 <= h < H:
                        lo, hi = max(0, left) - left, min(W, Wp - left)
                        for j in range(lo, hi):
                            rows[r, j + left] = x[n, c, h, j]
                for j in range(Wp):                    # B^T d
                    a0, a1, a2, a3 = rows[0, j], rows[1, j], rows[2, j], rows[3, j]
                    rows[0, j] = a0 - a2
                    rows[1, j] = a1 + a2
                    rows[2, j] = a2 - a1
                    rows[3, j] = a1 - a3
                t0 = (i_img * TH + th) * TW
                for i in range(4):                     # (B^T d) B
                    for tw in range(TW):
                        b0, b1, b2, b3 = rows[i, 2 * tw], rows[i, 2 * tw + 1], rows[i, 2 * tw + 2], rows[i, 2 * tw + 3]
                        V[4 * i + 0, c, t0 + tw] = b0 - b2
                        V[4 * i + 1, c, t0 + tw] = b1 + b2
                        V[4 * i + 2, c, t0 + tw] = b2 - b1
                        V[4 * i + 3, c, t0 + tw] = b1 - b3


@numba.njit(**_JIT)
def output_transform(M, b, y, n0, TH, TW):
    """y[n0:n0+NB] (N, O, OH, OW) = A^T m A + b[o] for every tile m of
    M (16, O, NB*TH*TW); b is (O,) (zeros for no bias), added for free.
    A tile past an odd edge writes only its first row or column."""
    N, O, OH, OW = y.shape
    NB = M.shape[2] // (TH * TW)
    s = numpy.empty((8, TW), M.dtype)                  # A^T m: two rows of four columns per tile
    for o in range(O):
        bo = b[o]
        for i_img in range(NB):
            n = n0 + i_img
            for th in range(TH):
                t0 = (i_img * TH + th) * TW
                for j in range(4):
                    for tw in range(TW):
                        m0, m1, m2, m3 = M[j, o, t0 + tw], M[4 + j, o, t0 + tw], M[8 + j, o, t0 + tw], M[12 + j, o, t0 + tw]
                        s[j, tw] = m0 + m1 + m2
                        s[4 + j, tw] = m1 - m2 - m3
                for i in range(2):                     # (A^T m) A
                    oh = 2 * th + i
                    if oh >= OH:
                        break
                    row = y[n, o, oh]
                    for tw in range(OW // 2):
                        r0, r1, r2, r3 = s[4 * i, tw], s[4 * i + 1, tw], s[4 * i + 2, tw], s[4 * i + 3, tw]
                        row[2 * tw] = r0 + r1 + r2 + bo
                        row[2 * tw + 1] = r1 - r2 - r3 + bo
                    if OW % 2:
                        tw = TW - 1
                        row[2 * tw] = s[4 * i, tw] + s[4 * i + 1, tw] + s[4 * i + 2, tw] + bo


@numba.njit(**_JIT)
def output_transform_adjoint(gy, dM, n0, TH, TW):
    """dM (16, O, NB*TH*TW) = A g A^T for every 2x2 tile g of images
    n0 ... n0+NB-1 of gy (N, O, OH, OW), zero past an odd edge: the
    adjoint of ``output_transform``.

    A's rows are (1, 0), (1, 1), (1, -1), (0, -1): A g A^T applies
    (g0, g0 + g1, g0 - g1, -g1) to the tile's two rows, then to the two
    columns of each result."""
    N, O, OH, OW = gy.shape
    NB = dM.shape[2] // (TH * TW)
    g = numpy.zeros((4, 2 * TW), gy.dtype)             # rows: A applied to the two gy rows
    for o in range(O):
        for i_img in range(NB):
            n = n0 + i_img
            for th in range(TH):
                oh = 2 * th
                for j in range(OW):
                    g0 = gy[n, o, oh, j]
                    g1 = gy[n, o, oh + 1, j] if oh + 1 < OH else 0
                    g[0, j] = g0
                    g[1, j] = g0 + g1
                    g[2, j] = g0 - g1
                    g[3, j] = -g1
                t0 = (i_img * TH + th) * TW
                for i in range(4):
                    for tw in range(TW):
                        c0, c1 = g[i, 2 * tw], g[i, 2 * tw + 1]     # column 2*tw+1 stays 0 past an odd OW
                        dM[4 * i + 0, o, t0 + tw] = c0
                        dM[4 * i + 1, o, t0 + tw] = c0 + c1
                        dM[4 * i + 2, o, t0 + tw] = c0 - c1
                        dM[4 * i + 3, o, t0 + tw] = -c1


#: Target bytes of one chunk's V (16, C, T): a few MB, so that V and M are
#: still in cache when the GEMMs and the output transform read them.
CHUNK_BYTES = 4 << 20


def sixteen_planes(rows, cols, dtype):
    """An empty (16, rows, cols) array whose 16 planes lie one cache line
    more than their size apart.

    The transforms read or write all 16 planes at the same (row, col) at
    once. Planes exactly a power of two bytes apart (64 x 1024 floats is
    256 KB) put those 16 addresses in the same cache set, which holds
    fewer lines than that, so every access misses: measured 7x slower for
    the filter transform of a 512x512 layer."""
    plane = rows * cols
    buffer = numpy.empty((16, plane + 64 // numpy.dtype(dtype).itemsize), dtype)
    return buffer[:, :plane].reshape(16, rows, cols)


def _image_chunks(N, tile_bytes, parts):
    """(n0, NB) runs of whole images whose transformed tiles take about
    ``CHUNK_BYTES``, at least ``parts`` of them (one per thread) when
    there are that many images."""
    nb = max(1, min(CHUNK_BYTES // max(1, tile_bytes), -(-N // parts)))
    return [(n0, min(nb, N - n0)) for n0 in range(0, N, nb)]


def winograd_conv2d(x, w, b, padding, out_size):
    """y (N, O, OH, OW) = conv2d(x, w, stride 1, dilation 1) + b for a 3x3
    w (O, C, 3, 3); padding ((top, bottom), (left, right)); b (O,) or None."""
    x = numpy.ascontiguousarray(x)
    N, C = x.shape[:2]
    O = w.shape[0]
    (top, _), (left, _) = padding
    TH, TW = tile_grid(out_size)
    U = sixteen_planes(O, C, x.dtype)
    filter_transform(numpy.ascontiguousarray(w), U)
    bias = numpy.zeros(O, x.dtype) if b is None else numpy.ascontiguousarray(b, dtype=x.dtype)
    y = numpy.empty((N, O) + tuple(out_size), x.dtype)
    threads = thread_count()
    chunks = _image_chunks(N, 16 * max(C, O) * TH * TW * x.itemsize, threads)

    def work(group):                    # one thread's chunks; they write disjoint images of y
        V = sixteen_planes(C, group[0][1] * TH * TW, x.dtype)
        M = sixteen_planes(O, group[0][1] * TH * TW, x.dtype)
        for n0, nb in group:
            T = nb * TH * TW
            input_transform(x, V[:, :, :T], n0, top, left, TH, TW)
            numpy.matmul(U, V[:, :, :T], out=M[:, :, :T])                    # 16 GEMMs (O, C) @ (C, T)
            output_transform(M[:, :, :T], bias, y, n0, TH, TW)
    run_in_parallel(work, split(chunks, threads))
    return y


def winograd_conv2d_grad_weight(x, gy, padding):
    """gw (O, C, 3, 3) of ``winograd_conv2d`` for gy (N, O, OH, OW)."""
    x, gy = numpy.ascontiguousarray(x), numpy.ascontiguousarray(gy)
    N, C = x.shape[:2]
    O = gy.shape[1]
    (top, _), (left, _) = padding
    TH, TW = tile_grid(gy.shape[2:])
    threads = thread_count()
    chunks = _image_chunks(N, 16 * max(C, O) * TH * TW * x.itemsize, threads)

    def work(group):                    # one thread's share of dU, a sum over chunks
        V = sixteen_planes(C, group[0][1] * TH * TW, x.dtype)
        dM = sixteen_planes(O, group[0][1] * TH * TW, x.dtype)
        dU = sixteen_planes(O, C, x.dtype)
        for i, (n0, nb) in enumerate(group):
            T = nb * TH * TW
            input_transform(x, V[:, :, :T], n0, top, left, TH, TW)
            output_transform_adjoint(gy, dM[:, :, :T], n0, TH, TW)
            product = numpy.matmul(dM[:, :, :T], V[:, :, :T].transpose(0, 2, 1), out=dU if i == 0 else None)
            if i > 0:
                dU += product                                                 # (16, O, C)
        return dU
    dU = sum_in_place(run_in_parallel(work, split(chunks, threads)))
    gw = numpy.empty((O, C, 3, 3), x.dtype)
    filter_transform_adjoint(dU, gw)
    return gw
