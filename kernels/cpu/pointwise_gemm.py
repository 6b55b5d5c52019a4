"""float32 1x1 convolution, y[n] = w @ x[n] + b, as a GEMM that reads the
image where it lies.

Notation: N batch, K input channels (the sum's length), O output
channels, L = H*W pixels; x (N, K, L), w (O, K), y (N, O, L). NO x PV
the register tile: NO output channels by PV vectors of 16 pixels.

Why
---
A 1x1 convolution of one image is the matrix product w (O, K) @ x (K, L),
and x is already laid out as the GEMM's right-hand side: each channel's
pixels contiguous. A BLAS (``numpy.matmul``) first copies both operands
into its own panels. With few output channels, or the image's product
cut into blocks of rows for the threads, that copy of x is made once per
block and costs as much as the products (1 x 256 x 56x56 -> 64 ran at 40
GFLOP/s a thread, against 100 for large products). Here nothing is
copied:

* a tile of NO = 8 output channels by PV = 3 vectors (48 pixels) keeps
  its 24 sums in registers through all K steps; each step loads 3 vectors
  of one channel's pixels and broadcasts 8 weights (one from each of the
  8 rows of w, read in place), for 24 fused multiply-adds;
* the 48 pixels' strip of x (K x 64 floats) stays in cache while the
  tiles of every output channel run over it (each task: one strip, a run
  of output channels), and w streams through;
* the sums start from the bias and are stored straight into y's rows.

A strip of fewer than 48 pixels (the end of a map) and a block of fewer
than 8 output channels run a tile on small zero-padded copies (``_tasks``):
their cost is a strip's copy, once a task, not a product's.

The input gradient of a 1x1 convolution is the same product with w
transposed, gx[n] = w^T @ gy[n]: the tile reads its weights through two
strides (``w_row`` between output channels, ``w_step`` between steps of
the sum), so w^T, a transposed view, is read in place too
(``product``; ``conv.batched_matmul`` calls it for both).

As for the other register tiles (``implicit_gemm.py``), the vectors are
LLVM's generic ones, so the kernel compiles and runs on any CPU; the
strategy takes it where ``implicit_gemm.register_tiles()`` is "avx512"
(24 accumulators need AVX-512's 32 registers). On AVX2 a tile of 4 or 6
output channels by one vector (8 or 12 of its 16 registers) took
1.15-1.6x OpenBLAS's time on 1x1 layers of 24-512 channels (NOTES.md),
so the GEMMs keep them there. The sums run in another order than a
BLAS's: the results agree to float32 rounding.
"""
import numba
import numpy
from numba import types
from numba.core import cgutils
from numba.core.extending import intrinsic

from .implicit_gemm import _F32, _constants, _fma, _intp_args
from .loops import JIT, _share
from .threads import parallel_parts
from .vnni import _F16, _pointer, _splat

#: Output channels (rows of w) of a tile: 8 divides the channel counts
#: of nearly every network.
NO = 8
#: 16-pixel vectors of a tile: NO * PV = 24 sums in registers.
PV = 3
#: Pixels of a tile: a strip of x.
STRIP = 16 * PV
#: Output channels of one task: tiles that run over one strip in turn.
TASK_ROWS = 12 * NO
#: Fewest multiply-adds worth sharing out among the threads.
PARALLEL_MACS = 1 << 22


def _tile_intrinsic(vectors):
    """The register tile of NO output channels by ``vectors`` vectors of
    16 pixels, as an LLVM IR intrinsic."""
    @intrinsic
    def tile(typingctx, x, x_offset, x_step, steps, w, w_offset, w_row, w_step, bias, b_offset, y, y_offset, y_row):
        """y[y_offset + i * y_row + p] = bias[b_offset + i] + the sum over
        k < steps of w[w_offset + i * w_row + k * w_step] * x[x_offset + k *
        x_step + p], for i < NO rows and p < 16 * vectors pixels. All arrays
        flat float32."""
        dtypes = [getattr(array, "dtype", None) for array in (x, w, bias, y)]
        if dtypes != [types.float32] * 4:
            return None     # the IR below reads exactly these element types
        sig = types.void(x, x_offset, x_step, steps, w, w_offset, w_row, w_step, bias, b_offset, y, y_offset, y_row)

        def codegen(context, builder, signature, args):
            kinds = signature.args
            (x, x_offset, x_step, steps, w, w_offset, w_row, w_step, bias, b_offset, y, y_offset,
             y_row) = _intp_args(context, builder, signature, args)
            const, fma = _constants(context), _fma(builder)

            def vector_at(pointer, offset):
                return builder.bitcast(builder.gep(pointer, [offset]), _F16.as_pointer())
            b0 = _pointer(context, builder, kinds[8], bias, b_offset, _F32)
            # sums in stack slots: LLVM promotes them to registers
            acc = [[cgutils.alloca_once_value(builder, _splat(builder, builder.load(builder.gep(b0, [const(i)])),
                                                              _F16))
                    for _ in range(vectors)] for i in range(NO)]
            x0 = _pointer(context, builder, kinds[0], x, x_offset, _F32)
            w0 = _pointer(context, builder, kinds[4], w, w_offset, _F32)
            w_rows = [builder.gep(w0, [builder.mul(w_row, const(i))]) for i in range(NO)]
            with cgutils.for_range(builder, steps) as step:
                xk = builder.gep(x0, [builder.mul(step.index, x_step)])
                pixels = [builder.load(vector_at(xk, const(16 * v)), align=4) for v in range(vectors)]
                wk = builder.mul(step.index, w_step)
                for i in range(NO):
                    weight = _splat(builder, builder.load(builder.gep(w_rows[i], [wk]), align=4), _F16)
                    for v in range(vectors):
                        builder.store(builder.call(fma, [weight, pixels[v], builder.load(acc[i][v])]), acc[i][v])
            y0 = _pointer(context, builder, kinds[10], y, y_offset, _F32)
            for i in range(NO):
                row = builder.gep(y0, [builder.mul(y_row, const(i))])
                for v in range(vectors):
                    builder.store(builder.load(acc[i][v]), vector_at(row, const(16 * v)), align=4)
            return context.get_dummy_value()
        return sig, codegen
    return tile


_tile1, _tile2, _tile3 = (_tile_intrinsic(vectors) for vectors in (1, 2, 3))


@numba.njit(inline="always")
def _tile(vectors, x, x_offset, x_step, steps, w, w_offset, w_row, w_step, bias, b_offset, y, y_offset, y_row):
    """The tile of ``vectors`` pixel vectors (``_tile_intrinsic``)."""
    if vectors == 3:
        _tile3(x, x_offset, x_step, steps, w, w_offset, w_row, w_step, bias, b_offset, y, y_offset, y_row)
    elif vectors == 2:
        _tile2(x, x_offset, x_step, steps, w, w_offset, w_row, w_step, bias, b_offset, y, y_offset, y_row)
    else:
        _tile1(x, x_offset, x_step, steps, w, w_offset, w_row, w_step, bias, b_offset, y, y_offset, y_row)


@numba.njit(**JIT)
def _tasks(x, w, w_row, w_step, bias, y, part, parts):
    """y (N, O, L) = W @ x (N, K, L) + bias, this part's share of the
    (image, strip, run of TASK_ROWS output channels) tasks. W[i, k] is
    read in place at w.flat[i * w_row + k * w_step]. A strip of fewer than
    STRIP pixels (the end of a map) runs on a zero-padded copy, the tile
    that covers it; a block of fewer than NO rows on zero-padded copies of
    its weights and bias; both land in ``out`` and are copied to y."""
    N, K, L = x.shape
    O = y.shape[1]
    strips, runs = -(-L // STRIP), -(-O // TASK_ROWS)
    flat_x, flat_w, flat_y = x.reshape(-1), w.reshape(-1), y.reshape(-1)
    strip = numpy.zeros((K, STRIP), numpy.float32)
    weights = numpy.empty((NO, K), numpy.float32)
    padded_bias = numpy.zeros(NO, numpy.float32)
    out = numpy.empty((NO, STRIP), numpy.float32)
    flat_strip, flat_weights, flat_out = strip.reshape(-1), weights.reshape(-1), out.reshape(-1)
    start, stop = _share(N * strips * runs, part, parts)
    for task in range(start, stop):
        n, rest = task // (strips * runs), task % (strips * runs)
        s, r = rest // runs, rest % runs
        p0, pixels = s * STRIP, min(STRIP, L - s * STRIP)
        whole = pixels == STRIP
        vectors = -(-pixels // 16)
        if not whole:
            for k in range(K):
                strip[k, :pixels] = x[n, k, p0:p0 + pixels]
                strip[k, pixels:] = 0
        xs, x_at, x_k = (flat_x, n * K * L + p0, L) if whole else (flat_strip, 0, STRIP)
        for o0 in range(r * TASK_ROWS, min(O, (r + 1) * TASK_ROWS), NO):
            rows = min(NO, O - o0)
            if rows == NO:
                ws, w_at, w_r, w_k, bs, b_at = flat_w, o0 * w_row, w_row, w_step, bias, o0
            else:
                for i in range(NO):
                    for k in range(K):
                        weights[i, k] = flat_w[(o0 + i) * w_row + k * w_step] if i < rows else 0
                    padded_bias[i] = bias[o0 + i] if i < rows else 0
                ws, w_at, w_r, w_k, bs, b_at = flat_weights, 0, K, 1, padded_bias, 0
            y_at = (n * O + o0) * L + p0
            if rows == NO and whole:                        # straight into y's rows
                _tile(vectors, xs, x_at, x_k, K, ws, w_at, w_r, w_k, bs, b_at, flat_y, y_at, L)
                continue
            _tile(vectors, xs, x_at, x_k, K, ws, w_at, w_r, w_k, bs, b_at, flat_out, 0, STRIP)
            for i in range(rows):
                flat_y[y_at + i * L:y_at + i * L + pixels] = out[i, :pixels]


def product(x, w, w_row, w_step, O, b):
    """y (N, O, L) float32 = W @ x[n] + b for float32 x (N, K, L)
    C-contiguous, W[i, k] = w[i * w_row + k * w_step] (w flat float32: w
    (O, K) is w_row = K, w_step = 1; its transpose's view, w_row = 1,
    w_step = O), b (O,) or None."""
    N, K, L = x.shape
    y = numpy.empty((N, O, L), numpy.float32)
    bias = numpy.zeros(O, numpy.float32) if b is None else numpy.ascontiguousarray(b, dtype=numpy.float32)
    parallel_parts(_tasks, N * O * K * L, x, w, w_row, w_step, bias, y, worth=PARALLEL_MACS)
    return y
