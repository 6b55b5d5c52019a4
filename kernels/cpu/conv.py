"""The CPU's convolution primitives: the Numba backend's versions of what
the conv strategy (``minicnn/functional/conv_strategy.py``) asks for.

Notation as there: N batch, C input channels, O output channels, G
groups, Cg = C / G, Og = O / G, Kg = Cg * KH * KW, L = OH * OW output
pixels per image. Each function has the arguments and the result of the
NumPy version in the strategy's module:

depthwise_conv2d_forward, _grad_input, _grad_weight
    the direct kernels of ``depthwise.py`` (no column matrix at all); a
    forward of a few small planes (``CHANNELS_LAST_MAX_PIXELS``), or of
    small planes in a batch (``CHANNELS_LAST_MAX_IMAGE_PIXELS``), runs
    channels last. A float32 forward of one output channel a channel,
    and its input gradient at stride 1 (the forward of gy with the
    flipped taps), run 16 channels a vector instead
    (``depthwise_lanes.py``) where the CPU has AVX-512
    (``implicit_gemm.register_tiles``), or AVX2 and the layer is not one
    that the planar kernels do faster there (``_lanes``).
grouped_conv2d_forward, grouped_conv2d_grad_weight
    the forward and weight gradient of a grouped convolution of few
    channels a group, by the same direct kernels.
batched_matmul, batched_matmul_sum
    a 1x1 convolution's GEMMs. An ungrouped float32 forward (or input
    gradient) of at least ``POINTWISE_MIN_PIXELS`` pixels an image runs on
    a register tile that reads x and w in place (``pointwise_gemm.py``)
    where the CPU has AVX-512 (not on AVX2: 1.15-1.6x OpenBLAS's time
    there); otherwise the forward's is
    cut into blocks of at most ``GEMM_BLOCK_ROWS`` output rows by
    ``GEMM_BLOCK_COLUMNS`` pixels of one image, the weight gradient's one
    per image, shared out among the threads, as BLAS itself is
    single-threaded (``threads.py``).
im2col_gemm_forward, _grad_input, _grad_weight
    im2col + GEMM, tiled to stay in cache. The output pixels are cut into
    *tiles* (a band of rows of one image, or several whole images when an
    image is small), so that each tile's column matrix (Kg, T) is about
    ``TILE_BYTES``, few enough MB to still sit in cache when BLAS reads
    it (less for groups of few output channels, ``_tile_budget``). Per
    tile: im2col_tile fills the buffer (Numba, serial: each thread runs
    its own tiles, see im2col.py), then one GEMM per group
    writes straight into the rows of y (``matmul(..., out=)``, no
    transposing copy), or for grad_input the GEMM fills the buffer and
    col2im_tile gathers it into gx. The full (Kg, N*L) matrix, KH*KW times
    the size of x, is never built: writing it to memory and reading it
    back costs more than the GEMM on small layers. Except with few output
    pixels (``FORWARD_BY_CHANNELS_PIXELS``, ``GRAD_WEIGHT_BY_CHANNELS_PIXELS``),
    where it is small and the GEMMs are bound by reading the weights: the
    threads then share out the output channels, each reading its share.

Any number of spatial dims: the im2col path cuts the output into rows of
its last dim (OW pixels; the rows are the OD*OH leading positions in
3-D), and ``_Columns`` fills a tile with the rank-2 kernels for images or
the row kernels for every other rank (``im2col.py``), so the tiling and
the GEMMs above are written once.

Winograd's primitives are ``winograd.py``'s own functions.
"""
import math

import numba
import numpy

from . import depthwise_lanes, implicit_channels, implicit_gemm, pointwise_gemm
from .activation import clamp_into
from .depthwise import (CHANNELS_LAST_MAX_IMAGE_PIXELS, CHANNELS_LAST_MAX_PIXELS, depthwise_forward,
                        depthwise_forward_channels_last, depthwise_grad_input, depthwise_grad_weight, direct_forward,
                        direct_grad_weight)
from .im2col import col2im_tile, im2col_tile, row_table, rows_tile
from .loops import JIT, _clamp_value
from .threads import matmul_into, run_in_parallel, split, sum_in_place, thread_count


def _geometry(stride, padding, dilation):
    """The kernels' geometry arguments: sh, sw, top, left, dh, dw."""
    (sh, sw), ((top, _), (left, _)), (dh, dw) = stride, padding, dilation
    return sh, sw, top, left, dh, dw


# -- depthwise ------------------------------------------------------------------
#: On AVX2 a depthwise layer of at most 9 taps at stride 1 keeps the planar
#: kernels, whose loops run along the rows, where the rows are this long
#: (the forward's output rows, the input gradient's input rows): there
#: 16 channels a vector took longer (2 threads, against the planar
#: kernels, benchmarks/results/NOTES.md; forward 3x3: 112 wide 1.21-1.52,
#: 56 1.03-1.29, 28 0.83-1.30, 14 0.63-0.73, 7 0.48-0.76; input gradient
#: 3x3: 112 1.08-1.44, 56 0.85-1.03, 28 0.66-0.93). Where a pixel has
#: more taps (5x5, 7x7), or at stride 2, the lanes win at every size
#: measured (0.42-1.10, most 0.5-0.85).
LANES_AVX2_PLANAR_ROWS = {"forward": 28, "grad_input": 112}


def _lanes(dtype, per_channel, kernel_size, stride, row, direction):
    """Whether a depthwise ``direction`` of float32 (``dtype``), one output
    channel a channel (``per_channel``), runs 16 channels a vector
    (``depthwise_lanes.py``): where the CPU runs the register tiles, on
    AVX2 unless ``LANES_AVX2_PLANAR_ROWS`` says otherwise (``row``: the
    rows' length it bounds)."""
    if dtype != numpy.float32 or not per_channel:
        return False
    tiles = implicit_gemm.register_tiles()
    if tiles == "avx2":
        short_taps = math.prod(kernel_size) <= 9 and tuple(stride) == (1, 1)
        return not (short_taps and row >= LANES_AVX2_PLANAR_ROWS[direction])
    return tiles is not None


def depthwise_conv2d_forward(x, w, b, stride, padding, dilation, groups, out_size, clamp=None):
    """y (N, O, OH, OW) = depthwise conv2d(x, w) + b (G == C); b may be None;
    then clamped to clamp = (lo, hi) where given (as each block of sums is
    stored; after, channels last). float32 with one output channel a
    channel runs 16 channels a vector (``depthwise_lanes.py``) where the CPU
    allows (``_lanes``)."""
    x = numpy.ascontiguousarray(x)
    lo, hi = _bounds(clamp, x.dtype)
    if _lanes(x.dtype, w.shape[0] == x.shape[1], w.shape[2:], stride, out_size[-1], "forward"):
        return depthwise_lanes.depthwise_conv2d(x, w, b, stride, padding, dilation, out_size, lo, hi)
    N, O, (KH, KW) = x.shape[0], w.shape[0], w.shape[2:]
    y = numpy.empty((N, O) + tuple(out_size), dtype=x.dtype)
    bias = numpy.zeros(O, x.dtype) if b is None else numpy.ascontiguousarray(b)
    w = numpy.ascontiguousarray(w.reshape(O, KH, KW))
    pixels = math.prod(out_size)
    if O == x.shape[1] and (N * pixels <= CHANNELS_LAST_MAX_PIXELS or pixels <= CHANNELS_LAST_MAX_IMAGE_PIXELS):
        depthwise_forward_channels_last(x, w, bias, y, *_geometry(stride, padding, dilation))
        if clamp is not None:
            clamp_into(y, lo, hi, y)
    else:
        depthwise_forward(x, w, bias, y, *_geometry(stride, padding, dilation), lo, hi)
    return y


# -- the bias and a clamp after a GEMM --------------------------------------------
def _bounds(clamp, dtype):
    """(lo, hi) of ``clamp`` in ``dtype``; (-inf, inf) for None."""
    lo, hi = (-math.inf, math.inf) if clamp is None else clamp
    return dtype.type(lo), dtype.type(hi)


@numba.njit(**JIT)
def _add_and_clamp(out, bias, lo, hi):
    """out[g, p, l] = min(max(out[g, p, l] + bias[g, p, 0], lo), hi), NaN
    kept: for out (G, P, L), any strides."""
    G, P, L = out.shape
    for g in range(G):
        for p in range(P):
            row, shift = out[g, p], bias[g, p, 0]
            for l in range(L):
                row[l] = _clamp_value(row[l] + shift, lo, hi)


def _finish(out, bias, clamp):
    """out (G, P, L), a block of y a GEMM has just written (still in cache):
    ``+= bias`` (G, P, 1) where given, then clamped to clamp = (lo, hi)
    where given, in the same pass."""
    if clamp is None:
        if bias is not None:
            out += bias
        return
    if bias is None:
        bias = numpy.zeros(out.shape[:2] + (1,), out.dtype)
    _add_and_clamp(out, numpy.ascontiguousarray(bias, dtype=out.dtype), *_bounds(clamp, out.dtype))


def grouped_conv2d_forward(x, w, b, stride, padding, dilation, groups, out_size):
    """y (N, O, OH, OW) = grouped conv2d(x, w) + b, summed directly
    (``depthwise.direct_forward``); b may be None."""
    x = numpy.ascontiguousarray(x)
    y = numpy.empty((x.shape[0], w.shape[0]) + tuple(out_size), dtype=x.dtype)
    bias = numpy.zeros(w.shape[0], x.dtype) if b is None else numpy.ascontiguousarray(b, dtype=x.dtype)
    direct_forward(x, numpy.ascontiguousarray(w, dtype=x.dtype), bias, y, *_geometry(stride, padding, dilation))
    return y


def grouped_conv2d_grad_weight(x, gy, kernel_size, stride, padding, dilation, groups):
    """gw (O, Cg, KH, KW) of ``grouped_conv2d_forward``, summed directly
    (``depthwise.direct_grad_weight``)."""
    x, gy = numpy.ascontiguousarray(x), numpy.ascontiguousarray(gy)
    gw = numpy.empty((gy.shape[1], x.shape[1] // groups) + tuple(kernel_size), dtype=x.dtype)
    direct_grad_weight(x, gy, gw, *_geometry(stride, padding, dilation))
    return gw


def depthwise_conv2d_grad_input(gy, w, stride, padding, dilation, groups, in_size):
    """gx (N, C, H, W) for gy (N, O, OH, OW), the adjoint of the forward in x.
    At stride 1, float32 with one output channel a channel, padding at
    most the kernel's reach before: the 16-channel forward
    (``depthwise_lanes.py``) of gy with the flipped taps, padded by the
    reach less the padding, where the CPU allows (``_lanes``)."""
    gy = numpy.ascontiguousarray(gy)
    full = implicit_channels.flipped_padding(w.shape[2:], dilation, padding)
    if (tuple(stride) == (1, 1) and all(top >= 0 for top, _ in full)
            and _lanes(gy.dtype, w.shape[0] == gy.shape[1] == groups, w.shape[2:], stride, in_size[-1], "grad_input")):
        return depthwise_lanes.depthwise_conv2d(gy, w[:, :, ::-1, ::-1], None, (1, 1), full, dilation, in_size)
    N, O, (KH, KW) = gy.shape[0], w.shape[0], w.shape[2:]
    gx = numpy.empty((N, w.shape[1] * groups) + tuple(in_size), dtype=gy.dtype)
    depthwise_grad_input(gy, numpy.ascontiguousarray(w.reshape(O, KH, KW)), gx, *_geometry(stride, padding, dilation))
    return gx


def depthwise_conv2d_grad_weight(x, gy, kernel_size, stride, padding, dilation, groups):
    """gw (O, 1, KH, KW), the adjoint of the forward in w."""
    x, gy = numpy.ascontiguousarray(x), numpy.ascontiguousarray(gy)
    O, (KH, KW) = gy.shape[1], kernel_size
    gw = numpy.empty((O, KH, KW), dtype=x.dtype)
    depthwise_grad_weight(x, gy, gw, *_geometry(stride, padding, dilation))
    return gw.reshape(O, 1, KH, KW)


# -- 1x1 convolutions' GEMMs ----------------------------------------------------
def _slices(count, parts):
    """range(count) cut into at most ``parts`` consecutive slices."""
    return [slice(run.start, run.stop) for run in split(range(count), parts)]


def _by_images(gemms, N):
    """[gemms(images) for each thread's slice of the N images]."""
    return run_in_parallel(gemms, _slices(N, thread_count()))


#: Largest block of one image's 1x1-convolution product that one GEMM call
#: makes (output rows x pixels); a product is cut into the fewest blocks of
#: one size that fit (``_even_runs``). With one image per thread or fewer
#: (inference, detection), whole images would leave threads idle. The
#: blocks depend on the shapes alone, never on the thread count or the
#: batch, so the float32 sums are the same on any number of threads and
#: for an image alone or in a batch.
GEMM_BLOCK_ROWS = 256
GEMM_BLOCK_COLUMNS = 4096
#: Fewest pixels for which an image's rows are cut into blocks: a product
#: of a few pixels is too little work for a call per block.
GEMM_ROW_SPLIT_MIN_COLUMNS = 32
#: A lone image's product that the bounds above leave whole (ResNet-50's
#: 1x1 layers at 224 px: 256 x 196, 64 x 3136, ...) is cut into two halves
#: of its rows (a multiple of ``LONE_IMAGE_ROW_MULTIPLE``), so that two
#: threads share it, when it has at least ``LONE_IMAGE_MIN_MACS``
#: multiply-adds and ``LONE_IMAGE_MIN_DEPTH`` input channels: smaller or
#: shallower ones (MobileNet's 144 -> 32 on 28x28, 24 -> 144 on 56x56) are
#: done faster by one thread than shared. This cut depends on the batch
#: (one image) but not on the thread count: a lone image gives the same
#: numbers on any number of threads, but may differ in the last bit from
#: the same image in a batch (torch's oneDNN makes no such promise
#: either). Blocks of fewer rows for every batch cost batch 16 5-17%
#: (benchmarks/results/NOTES.md).
LONE_IMAGE_ROW_MULTIPLE = 16
LONE_IMAGE_MIN_MACS = 1 << 23
LONE_IMAGE_MIN_DEPTH = 64


def _runs(count, size):
    """range(count) as consecutive slices of at most ``size``."""
    return [slice(start, min(start + size, count)) for start in range(0, count, size)]


def _even_runs(count, most, multiple=16):
    """range(count) as the fewest consecutive slices of at most ``most``
    (a multiple of ``multiple``), all of one size (a multiple of
    ``multiple``) but the last: 384 rows as 192 + 192, not 256 + 128, so
    that the blocks' work is shared out evenly."""
    pieces = -(-count // most)
    return _runs(count, min(most, -(-count // (pieces * multiple)) * multiple))


def _blocks(P, Q, L, N):
    """The (rows, columns) blocks of each of N images' (P, Q) @ (Q, L) products."""
    if L < GEMM_ROW_SPLIT_MIN_COLUMNS:
        rows = [slice(0, P)]
    elif (N == 1 and P <= GEMM_BLOCK_ROWS and L <= GEMM_BLOCK_COLUMNS and P >= 2 * LONE_IMAGE_ROW_MULTIPLE
          and P * Q * L >= LONE_IMAGE_MIN_MACS and Q >= LONE_IMAGE_MIN_DEPTH):
        rows = _runs(P, -(-P // (2 * LONE_IMAGE_ROW_MULTIPLE)) * LONE_IMAGE_ROW_MULTIPLE)
    else:
        rows = _even_runs(P, GEMM_BLOCK_ROWS)
    return [(r, c) for r in rows for c in _even_runs(L, GEMM_BLOCK_COLUMNS)]


#: Most pixels an image may have for a batch's 1x1 products to be computed
#: side by side: the images' pixels laid next to each other (one copy of
#: b), one GEMM of N*L columns a group, its rows cut into blocks of
#: ``SIDE_BY_SIDE_BLOCK_ROWS`` for the threads. Image by image, a 3x3 map's
#: product (9 columns) made OpenBLAS pack the whole weight matrix for 9
#: columns, once per image: MobileNetV2's 16 x 320 x 3x3 -> 1280 took 2.8
#: ms against torch's 0.8. The blocks follow from the shapes alone (the
#: same bits on any number of threads); a lone image keeps the blocks above.
#: The forward's and input gradient's products need ``SIDE_BY_SIDE_MIN_MACS``
#: multiply-adds in all: smaller ones (16 x 256 x 2x2 -> 512, 8.4M) took
#: 1.5-1.7x longer side by side, their copies and calls costing more than
#: the packing saved; the weight gradient's sum over images gains at every
#: size measured (0.35-0.8).
SIDE_BY_SIDE_MAX_PIXELS = 32
SIDE_BY_SIDE_MIN_MACS = 1 << 24
SIDE_BY_SIDE_BLOCK_ROWS = 64


def _side_by_side(N, L, macs=None):
    """Whether N images of L pixels each are computed side by side (a
    product of ``macs`` multiply-adds, where that bound applies)."""
    return N > 1 and L < SIDE_BY_SIDE_MAX_PIXELS and (macs is None or macs >= SIDE_BY_SIDE_MIN_MACS)


def _row_block_gemms(a, b, out, bias=None, clamp=None):
    """out[g] = a[g] @ b[g] (+ bias[g]) for a (G, P, Q), b (G, Q, R), out
    (G, P, R), in blocks of ``SIDE_BY_SIDE_BLOCK_ROWS`` rows shared out
    among the threads; clamped where ``clamp`` says (``_finish``)."""
    def work(blocks):                   # one thread's blocks of rows
        for rows in blocks:
            part = out[:, rows]
            numpy.matmul(a[:, rows], b, out=part)
            _finish(part, None if bias is None else bias[:, rows], clamp)
    blocks = _runs(a.shape[1], SIDE_BY_SIDE_BLOCK_ROWS)
    run_in_parallel(work, [mine for mine in split(blocks, thread_count()) if mine])
    return out


#: Fewest pixels an image (L) for an ungrouped float32 1x1 product to run
#: on ``pointwise_gemm``'s tile: a map's last strip of fewer than 48
#: pixels costs a whole pass over the weights, and small maps of a batch
#: go side by side. Forward / input gradient time against the blocked
#: GEMMs below, same process, 2 threads (benchmarks/results/NOTES.md):
#: 1 x 256 x 56x56 -> 64 0.45 / 0.79, 1 x 128 x 28x28 -> 512 0.54 /
#: 0.56, 8 x 256 x 28x28 -> 128 0.87 / 0.98, 16 x 24 x 56x56 -> 144 0.88
#: / 0.82, 8 x 256 x 12x12 -> 512 (144) 0.86 / 0.46; but 8 x 256 x 10x10
#: (100) 1.78 / 0.60, 16 x 512 x 7x7 1.08 / 1.14, 16 x 320 x 3x3 2.9 /
#: 1.8.
POINTWISE_MIN_PIXELS = 128


def _pointwise_tile(a, b):
    """Whether ``batched_matmul(a, b)`` runs on ``pointwise_gemm``'s tile."""
    return (a.shape[0] == 1 and a.dtype == b.dtype == numpy.float32 and b.shape[3] >= POINTWISE_MIN_PIXELS
            and implicit_gemm.register_tiles() == "avx512")


def _pointwise_product(a, b, bias):
    """``batched_matmul`` of one group by ``pointwise_gemm``: a[0] (P, Q)
    read in place through its strides where it is C- or F-ordered (the
    input gradient's w^T is a transposed view)."""
    w, (N, _, Q, L), P = a[0], b.shape, a.shape[1]
    if w.flags.c_contiguous:
        flat, w_row, w_step = w.reshape(-1), Q, 1
    elif w.flags.f_contiguous:
        flat, w_row, w_step = w.T.reshape(-1), 1, P
    else:
        flat, w_row, w_step = numpy.ascontiguousarray(w).reshape(-1), Q, 1
    b = numpy.ascontiguousarray(b).reshape(N, Q, L)
    y = pointwise_gemm.product(b, flat, w_row, w_step, P, None if bias is None else bias.reshape(P))
    return y.reshape(N, 1, P, L)


def batched_matmul(a, b, bias=None, clamp=None):
    """y[n] = a @ b[n] (+ bias) for every image n: a (G, P, Q) shared, b
    (N, G, Q, L), bias (G, P, 1) or None -> y (N, G, P, L); then clamped
    to clamp = (lo, hi) where given, block by block as the bias is added."""
    N, P, L = b.shape[0], a.shape[1], b.shape[3]
    if _pointwise_tile(a, b):
        y = _pointwise_product(a, b, bias)
        if clamp is not None:
            clamp_into(y, *clamp, y)
        return y
    if _side_by_side(N, L, a.size * N * L):
        G, Q = a.shape[0], a.shape[2]
        columns = numpy.ascontiguousarray(b.transpose(1, 2, 0, 3)).reshape(G, Q, N * L)
        out = _row_block_gemms(a, columns, numpy.empty((G, P, N * L), b.dtype), bias, clamp)
        return numpy.ascontiguousarray(out.reshape(G, P, N, L).transpose(2, 0, 1, 3))
    y = numpy.empty(b.shape[:2] + (P, L), dtype=b.dtype)
    blocks = _blocks(P, a.shape[2], L, N)
    if len(blocks) == 1:
        def gemms(images):              # one thread's whole images, one call
            numpy.matmul(a, b[images], out=y[images])
            for n in range(images.start, images.stop):
                _finish(y[n], bias, clamp)
        _by_images(gemms, N)
        return y

    def block_gemms(mine):              # one thread's blocks
        for n, rows, columns in mine:
            out = y[n, :, rows, columns]
            numpy.matmul(a[:, rows], b[n, :, :, columns], out=out)
            _finish(out, None if bias is None else bias[:, rows], clamp)
    tasks = [(n, rows, columns) for n in range(N) for rows, columns in blocks]
    run_in_parallel(block_gemms, [mine for mine in split(tasks, thread_count()) if mine])
    return y


def batched_matmul_sum(a, b):
    """sum_n a[n] @ b[n]: a (N, G, P, Q), b (N, G, Q, R) -> (G, P, R), each
    thread summing its own images, then the threads' sums added up; with
    few pixels (Q) an image, one product of the images side by side
    (``SIDE_BY_SIDE_MAX_PIXELS``), whose sum over N*Q is the same sum."""
    N, G, P, Q = a.shape
    if _side_by_side(N, Q):
        a_all = numpy.ascontiguousarray(a.transpose(1, 2, 0, 3)).reshape(G, P, N * Q)
        b_all = numpy.ascontiguousarray(b.transpose(1, 0, 2, 3)).reshape(G, N * Q, b.shape[3])
        return _row_block_gemms(a_all, b_all, numpy.empty((G, P, b.shape[3]), a.dtype))
    return sum_in_place(_by_images(lambda images: numpy.matmul(a[images], b[images]).sum(axis=0), N))


# -- im2col + GEMM, a tile at a time ------------------------------------------
class _Columns:
    """The column tiles of one geometry of any rank: ``fill`` writes a
    tile's columns (C, taps, NB, R, OW) into a flat buffer, ``add`` adds
    such a tile back into gx. R counts rows of the output's last dim
    (``rows`` of them per image, OW pixels each)."""

    def __init__(self, in_size, kernel_size, stride, padding, dilation, out_size):
        self.kernel_size = tuple(kernel_size)
        self.rows, self.OW = math.prod(out_size[:-1]), out_size[-1]
        self.rank2 = len(in_size) == 2
        if self.rank2:
            self.geometry = _geometry(stride, padding, dilation)
        else:
            self.table = row_table(tuple(in_size), self.kernel_size, stride, padding, dilation, tuple(out_size))
            self.last = (in_size[-1], stride[-1], padding[-1][0], dilation[-1])   # W, sw, left, dw

    def _tile(self, images, buf, n0, nb, r0, R, adjoint):
        """im2col of a tile into buf, or (``adjoint``) col2im of buf into images."""
        C = images.shape[1]
        if self.rank2:
            cols = buf.reshape((C,) + self.kernel_size + (nb, R, self.OW))
            if adjoint:
                col2im_tile(cols, images, n0, r0, *self.geometry)
            else:
                im2col_tile(images, cols, n0, r0, *self.geometry)
        else:
            cols = buf.reshape(C, self.table.shape[0], self.kernel_size[-1], nb, R, self.OW)
            rows_tile(images.reshape(images.shape[0], C, -1), cols, self.table, n0, r0, *self.last, adjoint)

    def fill(self, x, buf, n0, nb, r0, R):
        """buf (flat, C*taps*nb*R*OW long) = the tile's columns, returned as (C*taps, nb*R*OW)."""
        self._tile(x, buf, n0, nb, r0, R, False)
        return buf.reshape(x.shape[1] * math.prod(self.kernel_size), -1)

    def add(self, buf, gx, n0, nb, r0, R):
        """Add the tile in buf (as ``fill`` lays it out) into gx."""
        self._tile(gx, buf, n0, nb, r0, R, True)

    def whole(self, x):
        """The column matrix of all of x's images, (C*taps, N*rows*OW): for
        the few-pixel products, where it is small."""
        size = x.shape[1] * math.prod(self.kernel_size) * x.shape[0] * self.rows * self.OW
        return self.fill(x, numpy.empty(size, x.dtype), 0, x.shape[0], 0, self.rows)


#: Target size of one tile's column matrix, in bytes: few enough MB to stay
#: in cache, enough for long GEMMs (8 MB was the best of 1-8 MB, all faster
#: than the whole-batch matrix).
TILE_BYTES = 8 << 20
#: A grouped convolution's GEMMs of at most ``FEW_ROWS`` output rows (Og)
#: use each column a few times only, so they run at the speed the columns
#: are read: its tile is cut so that one group's columns, about
#: ``GROUP_TILE_BYTES``, are still in the core's L2 cache when BLAS reads
#: them. 8 x 64 x 56x56 -> 64, 3x3/2 groups 4, fwd/gx/gw: 0.62/0.90/0.70
#: of the time with 8 MB tiles.
FEW_ROWS = 32
GROUP_TILE_BYTES = 512 << 10


def few_rows_a_group(G, Og):
    """Whether a convolution of G groups of Og output channels has the
    few-row products of ``FEW_ROWS`` (winograd.py's chunks follow the same
    rule)."""
    return G > 1 and Og <= FEW_ROWS


def _tile_budget(G, Og):
    """Bytes of one tile's column matrix (all groups) for G groups of Og
    output channels."""
    return min(TILE_BYTES, G * GROUP_TILE_BYTES) if few_rows_a_group(G, Og) else TILE_BYTES


def _tiles(N, OH, row_bytes, budget, parts=1):
    """(n0, NB, r0, R) tiles covering N images of OH output rows, each
    ``row_bytes`` of columns: whole images when one fits in ``budget``,
    else bands of rows of one image; at least ``parts`` tiles (one per
    thread) where there are that many images or rows."""
    image_bytes = row_bytes * OH
    if image_bytes <= budget and N >= parts:
        nb = min(budget // image_bytes, -(-N // parts))
        return [(n0, min(nb, N - n0), 0, OH) for n0 in range(0, N, nb)]
    R = max(1, min(budget // row_bytes, -(-N * OH // parts)))
    return [(n, 1, r0, min(R, OH - r0)) for n in range(N) for r0 in range(0, OH, R)]


def _buffer(tiles, K, OW, dtype):
    """Room for the largest tile's column matrix (K, NB*R*OW)."""
    return numpy.empty(max(nb * R for _, nb, _, R in tiles) * K * OW, dtype=dtype)


def _by_image(tiles):
    """Tiles grouped so that no image is split between two groups: col2im
    adds a band's border rows into its neighbours' rows."""
    groups = {}
    for tile in tiles:
        groups.setdefault(tile[0], []).append(tile)
    return list(groups.values())


def _gy_band(gy, n0, nb, r0, R, G, Og, OW):
    """Tile (G, Og, nb*R*OW) of gy (N, O, OH*OW): a view for a band of one
    image, a copy with the images side by side for several."""
    if nb == 1:
        return gy[n0].reshape(G, Og, -1)[:, :, r0 * OW:(r0 + R) * OW]
    L = gy.shape[2]
    return gy[n0:n0 + nb].reshape(nb, G, Og, L).transpose(1, 2, 0, 3).reshape(G, Og, nb * L)


#: Output pixels per thread (N*OH*OW / threads) up to which the forward of
#: an ungrouped convolution is shared out by output channel rather than by
#: tile (``_forward_by_channels``), and its input gradient by input channel
#: (``_grad_input_by_channels``): with few pixels the GEMM is bound by
#: reading the weights, and cutting the pixels makes every thread read all
#: of them.
FORWARD_BY_CHANNELS_PIXELS = 128


def _few_pixels(threads, G, pixels, per_thread):
    """Whether an ungrouped product of ``pixels`` output pixels in all is
    shared out by channel: at most ``per_thread`` pixels a thread, on
    several threads."""
    return threads > 1 and G == 1 and pixels <= per_thread * threads


def _forward_by_channels(x, w, b, columns, out_size, threads, clamp):
    """y (N, O, *out_size) of an ungrouped convolution with few output
    pixels: the column matrix of all N images is built once (small, for so
    few pixels), then each thread computes the rows of y of its share of
    the output channels, reading only its share of the weights."""
    N, O = x.shape[0], w.shape[0]
    cols = columns.whole(x)                                      # (K, N*L)
    rows = numpy.empty((O, cols.shape[1]), x.dtype)              # (O, N*L)
    wk = w.reshape(O, cols.shape[0])

    def work(channels):                 # one thread's output channels: rows of y
        numpy.matmul(wk[channels], cols, out=rows[channels])
        _finish(rows[None, channels], None if b is None else b[None, channels, None], clamp)
    run_in_parallel(work, _slices(O, threads))
    return numpy.ascontiguousarray(rows.reshape((O, N) + tuple(out_size)).swapaxes(0, 1))


def im2col_gemm_forward(x, w, b, stride, padding, dilation, groups, out_size, clamp=None):
    """y (N, O, OH, OW) = conv(x, w) + b; b may be None; then clamped to
    clamp = (lo, hi) where given, tile by tile as the bias is added."""
    x = numpy.ascontiguousarray(x)
    N, C = x.shape[:2]
    O, G, out_size = w.shape[0], groups, tuple(out_size)
    columns = _Columns(x.shape[2:], w.shape[2:], stride, padding, dilation, out_size)
    OH, OW = columns.rows, columns.OW
    threads = thread_count()
    if _few_pixels(threads, G, N * OH * OW, FORWARD_BY_CHANNELS_PIXELS):
        return _forward_by_channels(x, w, b, columns, out_size, threads, clamp)
    y = numpy.empty((N, O) + out_size, dtype=x.dtype)
    Og, L = O // G, OH * OW
    wg = w.reshape(G, Og, -1)
    yg = y.reshape(N, G, Og, L)
    K = C * math.prod(w.shape[2:])
    tiles = _tiles(N, OH, K * OW * x.itemsize, _tile_budget(G, Og), threads)
    bg = None if b is None else b.reshape(G, Og, 1)

    def work(group):                    # one thread's tiles; they write disjoint parts of y
        buf = _buffer(group, K, OW, x.dtype)
        for n0, nb, r0, R in group:
            cols = columns.fill(x, buf[:K * nb * R * OW], n0, nb, r0, R)
            cols = cols.reshape(G, K // G, nb * R * OW)
            if nb == 1:
                out = yg[n0, :, :, r0 * OW:(r0 + R) * OW]              # (G, Og, R*OW), a view of y
                numpy.matmul(wg, cols, out=out)
                _finish(out, bg, clamp)
            else:
                out = numpy.matmul(wg, cols)                             # images side by side: (G, Og, nb*L)
                _finish(out, bg, clamp)
                yg[n0:n0 + nb] = out.reshape(G, Og, nb, L).transpose(2, 0, 1, 3)
    run_in_parallel(work, split(tiles, threads))
    return y


def _grad_input_by_channels(gy, w, columns, in_size, threads):
    """gx (N, C, *in_size) of an ungrouped convolution with few output
    pixels, for gy (N, O, L): each thread computes the column rows of its
    share of the input channels, (its C*KH*KW rows of w^T) @ gy, from its
    share of the weights, and gathers them into those channels of gx."""
    N, O, L = gy.shape
    C, taps = w.shape[1], math.prod(columns.kernel_size)
    wT = w.reshape(O, C * taps).T                                   # (K, O), a view
    gy_all = numpy.ascontiguousarray(gy.transpose(1, 0, 2)).reshape(O, N * L)
    gx = numpy.empty((N, C) + tuple(in_size), dtype=gy.dtype)

    def work(channels):                 # one thread's input channels of gx
        cols = numpy.matmul(wT[channels.start * taps:channels.stop * taps], gy_all)
        part = numpy.zeros((N, channels.stop - channels.start) + tuple(in_size), dtype=gy.dtype)
        columns.add(cols.reshape(-1), part, 0, N, 0, columns.rows)
        gx[:, channels] = part
    run_in_parallel(work, _slices(C, threads))
    return gx


def im2col_gemm_grad_input(gy, w, stride, padding, dilation, groups, in_size):
    """gx (N, C, H, W) for gy (N, O, OH, OW): the adjoint of the forward
    in x, which is also conv_transpose2d(gy, w)."""
    gy = numpy.ascontiguousarray(gy)
    N, O, G = gy.shape[0], gy.shape[1], groups
    C = w.shape[1] * G
    columns = _Columns(tuple(in_size), w.shape[2:], stride, padding, dilation, gy.shape[2:])
    OH, OW = columns.rows, columns.OW
    Og, L = O // G, OH * OW
    threads = thread_count()
    if _few_pixels(threads, G, N * L, FORWARD_BY_CHANNELS_PIXELS):
        return _grad_input_by_channels(gy.reshape(N, O, L), w, columns, in_size, threads)
    wgT = w.reshape(G, Og, -1).transpose(0, 2, 1)                        # (G, Kg, Og), a view
    gx = numpy.zeros((N, C) + tuple(in_size), dtype=gy.dtype)
    K = C * math.prod(w.shape[2:])
    tiles = _tiles(N, OH, K * OW * gy.itemsize, _tile_budget(G, Og), threads)
    gy = gy.reshape(N, O, L)

    def work(images):                   # one thread's images, each image's bands together
        group = [tile for image in images for tile in image]
        buf = _buffer(group, K, OW, gy.dtype)
        for n0, nb, r0, R in group:
            cols = buf[:K * nb * R * OW]
            numpy.matmul(wgT, _gy_band(gy, n0, nb, r0, R, G, Og, OW), out=cols.reshape(G, K // G, nb * R * OW))
            columns.add(cols, gx, n0, nb, r0, R)
    run_in_parallel(work, split(_by_image(tiles), threads))
    return gx


#: Output pixels per thread (N*OH*OW / threads) up to which the weight
#: gradient is split among the threads by output channel rather than by
#: tile: with so few pixels, adding up the threads' partial gw (as large
#: as the weights) costs more than the products. 16 x 512 x 2x2 (32 a
#: thread): 3.3 -> 2.3 ms.
GRAD_WEIGHT_BY_CHANNELS_PIXELS = 64


def _grad_weight_by_channels(x, gy, columns, threads):
    """gw (O, C, KH, KW) of an ungrouped convolution with few output
    pixels, for gy (N, O, OH*OW): each thread builds the whole column
    matrix (small, for so few pixels) and computes the rows of gw of its
    share of the output channels, so there are no partial sums to add."""
    N, C = x.shape[:2]
    O, L = gy.shape[1], gy.shape[2]
    K = C * math.prod(columns.kernel_size)
    gw = numpy.empty((O, K), x.dtype)

    def work(channels):                 # one thread's output channels: rows of gw
        cols = columns.whole(x)
        gy_rows = gy[:, channels].transpose(1, 0, 2).reshape(-1, N * L)   # (O share, N*L)
        numpy.matmul(gy_rows, cols.T, out=gw[channels])
    run_in_parallel(work, _slices(O, threads))
    return gw.reshape((O, C) + columns.kernel_size)


def _weight_product_transposed(K, T):
    """Whether a tile's weight-gradient product, gy (Og, T) @ cols^T (T,
    K), is better computed as its transpose, cols (K, T) @ gy^T (T, Og),
    transposed once at the end: OpenBLAS runs it that way 1.1-1.8x faster
    once the tile's pixels T are at least half its rows K, and far slower
    when they are few (LeNet-5's C3, K 150, T 3200: 0.42 -> 0.24 ms)."""
    return 2 * T >= K


def im2col_gemm_grad_weight(x, gy, kernel_size, stride, padding, dilation, groups):
    """gw (O, Cg, KH, KW) = sum over images and pixels of gy times the
    columns of x: the adjoint of the forward in w."""
    x = numpy.ascontiguousarray(x)
    gy = numpy.ascontiguousarray(gy)
    N, C = x.shape[:2]
    O, G, kernel_size = gy.shape[1], groups, tuple(kernel_size)
    columns = _Columns(x.shape[2:], kernel_size, stride, padding, dilation, gy.shape[2:])
    OH, OW = columns.rows, columns.OW
    Og, Cg, L = O // G, C // G, OH * OW
    gy = gy.reshape(N, O, L)
    K = C * math.prod(kernel_size)
    threads = thread_count()
    if _few_pixels(threads, G, N * L, GRAD_WEIGHT_BY_CHANNELS_PIXELS):
        return _grad_weight_by_channels(x, gy, columns, threads)
    tiles = _tiles(N, OH, K * OW * x.itemsize, _tile_budget(G, Og), threads)
    transposed = _weight_product_transposed(K // G, max(nb * R for _, nb, _, R in tiles) * OW)

    def work(group):                    # one thread's share of the sum over tiles
        gw = numpy.empty((G, K // G, Og) if transposed else (G, Og, K // G), dtype=x.dtype)
        buf = _buffer(group, K, OW, x.dtype)
        for i, (n0, nb, r0, R) in enumerate(group):
            cols = columns.fill(x, buf[:K * nb * R * OW], n0, nb, r0, R)
            cols = cols.reshape(G, K // G, nb * R * OW)
            gy_tile = _gy_band(gy, n0, nb, r0, R, G, Og, OW)
            if transposed:
                matmul_into(gw, cols, gy_tile.transpose(0, 2, 1), add=i > 0)
            else:
                matmul_into(gw, gy_tile, cols.transpose(0, 2, 1), add=i > 0)
        return gw
    gw = sum_in_place(run_in_parallel(work, split(tiles, threads)))
    return numpy.ascontiguousarray(gw.transpose(0, 2, 1) if transposed else gw).reshape((O, Cg) + kernel_size)
