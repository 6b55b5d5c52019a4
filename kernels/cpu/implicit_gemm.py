"""float32 convolution as an implicit GEMM on vector registers.

Notation as in ``conv.py``: N batch, C input channels, O output channels,
G groups (Cg = C / G inputs and Og = O / G outputs a group), KH, KW
kernel, OH, OW output size, T = KH*KW taps; NO x TILE_P the forward's
register tile (output channels x pixels), TILE_P = LANES * NPV; NO x NK
the weight gradient's (output channels x (tap, channel) pairs).

Why
---
The im2col path copies each input value KH*KW times into a column matrix
before a GEMM reads it. When the GEMM is small that copy is most of the
time: a grouped convolution of 16 channels a group is G products of 16
rows each, and the column matrix is read 16 times only. This kernel reads
the (padded) image itself, the way ``vnni.py`` does for int8: the
layout, the tap offsets and the register tile are the same, on float32
values and fused multiply-adds (``llvm.fma.v16f32``) instead of integer
dot products.

The layout
----------
* ``planes`` (G, S, Cg, L) float32, per image: the zero-padded image cut
  into S = SH*SW *phases* (phase (a, b) holds the padded pixels (a + i*SH,
  b + j*SW)), each a flat HQ x WQ plane (``vnni._planes``'s layout, one
  float per channel where that packs 4 bytes).

Output pixel (oh, ow) sits at q = oh*WQ + ow of an *output grid* as wide
as a plane, and tap (kh, kw) reads pixel q + (one offset per tap) of one
phase: 16 consecutive grid pixels are 16 consecutive floats, one vector
load, at every stride and dilation. The grid's columns ow >= OW (the
padding: 2 of 30 on a 28x28 3x3 layer, 2 of 9 on a 7x7 one) are computed
and dropped, the price of one offset per tap.

* weights ``wp`` (G, OB, T, Cg, NO) float32: for a block of NO output
  channels, tap by tap and channel by channel, the NO channels' weights
  side by side (zero past Og).

A tile of NO output channels by TILE_P grid pixels keeps its NO*NPV
accumulators (16 vectors on AVX-512) in registers through all T*Cg steps; each step
loads NPV pixel vectors and broadcasts NO weights for NO*NPV multiply-adds
(``_tile``), about 80% of the FMA units' peak on znver4 (one 16-lane FMA
a cycle). The sums run in another order than the GEMM's: the results
agree to float32 rounding, not bit for bit.

The weight gradient
-------------------
gw[o, c, t] is the sum over output pixels q of gy[o, q] times the input
pixel tap t of channel c reads: on the grid, planes[c, q + offset of t].
So ``conv2d_grad_weight`` lays out the planes of every image and gy on
the same grid (zero in the dropped columns), and a tile of NO output
channels by NK (tap, channel) pairs keeps NO*NK vectors of LANES partial
sums in registers while it runs over all the grid's pixels of all the
images (``_weight_tile``: NO + NK loads for NO*NK multiply-adds a step),
then adds each vector's lanes once. Each block of gw is summed by one
task, whatever the number of threads.

The vectors are LLVM's generic ones, so the kernel compiles and runs on
any CPU. AVX-512 has 32 vector registers of 16 floats: 16-float vectors,
4 x 4 of them forward (TILE_P 64) and 4 x 6 for the weight gradient.
AVX2 has 16 registers of 8: vectors of 8 floats (``WIDE``, ``LANES``),
4 x 3 of them either way (TILE_P 24): 12 sums, room left for the
loads. The strategy takes fewer layers here on AVX2, where the
tiles beat the other paths in fewer cases (``register_tiles``).
"""
import functools
import math

import numba
import numpy
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.extending import intrinsic

from .loops import JIT, _fill, _share, u64
from .threads import parallel_parts, run_in_parallel, split, thread_count
from .vnni import _F16, NO, _geometry, _pointer, _splat, copy_out, tile_loop

_F32 = ir.FloatType()


@functools.cache
def register_tiles():
    """Which register tiles this process runs at full speed: "avx512"
    (32 vector registers of 16 floats), "avx2" (16 of 8, with fused
    multiply-adds) or None (neither, or Numba not compiling for the host
    CPU, or not compiling at all). The tiles' shapes follow it (``WIDE``),
    and so does the strategy: on AVX2 only some of them beat the paths
    they replace (``conv_strategy``, ``conv.py``)."""
    import llvmlite.binding
    from numba.core import config
    if config.DISABLE_JIT or config.CPU_NAME not in (None, "host") or config.CPU_FEATURES is not None:
        return None
    features = llvmlite.binding.get_host_cpu_features()
    if features.get("avx512f"):
        return "avx512"
    return "avx2" if features.get("avx2") and features.get("fma") else None


#: Whether the host has AVX-512's 32 vector registers of 16 floats (else
#: AVX2's 16 of 8). On AVX2 every tile keeps at most 12 registers of sums,
#: room left for the loads and a broadcast (16 or 24 would be stored and
#: reloaded every step): this module's tiles in vectors of 8 floats, 4 x 3
#: of them; ``implicit_channels.py``'s and ``depthwise_lanes.py``'s in 6
#: of their 16-float vectors (two registers each).
WIDE = register_tiles() == "avx512"
#: Floats a vector of both tiles; the forward's tile is NO x NPV of them.
LANES, NPV = (16, 4) if WIDE else (8, 3)
TILE_P = LANES * NPV
_FV = ir.VectorType(_F32, LANES)


def _intp_args(context, builder, signature, args):
    """An intrinsic's arguments, the integers cast to intp."""
    return [context.cast(builder, value, kind, types.intp) if isinstance(kind, types.Integer) else value
            for value, kind in zip(args, signature.args)]


def _constants(context):
    """n -> the LLVM intp constant n."""
    intp = context.get_value_type(types.intp)
    return lambda n: ir.Constant(intp, n)


def _fma(builder, vector=_F16):
    """A call target for fused multiply-adds of float vectors (16 lanes
    unless ``vector`` says otherwise)."""
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector, vector, vector]),
                                          f"llvm.fma.v{vector.count}f32")


@intrinsic
def _tile(typingctx, planes, x_offset, tap_offsets, channels, plane_stride, wp, w_offset, bias, b_offset, out,
          out_offset, out_stride):
    """out[o, q] = bias[b_offset + o] + the sum over taps t and channels c
    of planes[x_offset + tap_offsets[t] + c * plane_stride + q] *
    wp[w_offset + (t * channels + c) * NO + o], for the NO x TILE_P tile:
    q < TILE_P pixels of the output grid, o < NO channels; row o is stored
    at ``out_offset + o * out_stride`` of ``out``. All arrays flat float32
    (``tap_offsets`` intp)."""
    dtypes = [getattr(array, "dtype", None) for array in (planes, tap_offsets, wp, bias, out)]
    if dtypes != [types.float32, types.intp, types.float32, types.float32, types.float32]:
        return None     # the IR below reads exactly these element types
    sig = types.void(planes, x_offset, tap_offsets, channels, plane_stride, wp, w_offset, bias, b_offset, out,
                     out_offset, out_stride)

    def codegen(context, builder, signature, args):
        kinds = signature.args
        (planes, x_offset, tap_offsets, channels, plane_stride, wp, w_offset, bias, b_offset, out, out_offset,
         out_stride) = _intp_args(context, builder, signature, args)
        const, fma = _constants(context), _fma(builder, _FV)
        # accumulators in stack slots: LLVM promotes them to registers
        bias_row = _pointer(context, builder, kinds[7], bias, b_offset, _F32)
        acc = []
        for i in range(NO):
            start = _splat(builder, builder.load(builder.gep(bias_row, [const(i)])), _FV)
            acc.append([cgutils.alloca_once_value(builder, start) for _ in range(NPV)])
        tile_loop(context, builder, kinds, (planes, x_offset, tap_offsets, channels, plane_stride, wp, w_offset), acc,
                  _F32, _FV, lambda sums, pixels, weights: builder.call(fma, [pixels, weights, sums]))
        out0 = _pointer(context, builder, kinds[9], out, out_offset, _F32)
        for i in range(NO):
            row = builder.gep(out0, [builder.mul(out_stride, const(i))])
            for j in range(NPV):
                dst = builder.bitcast(builder.gep(row, [const(LANES * j)]), _FV.as_pointer())
                builder.store(builder.load(acc[i][j]), dst, align=4)
        return context.get_dummy_value()
    return sig, codegen


#: (tap, channel) pairs of the weight gradient's register tile: NO x NK
#: accumulators (``_weight_tile``) of LANES partial sums each.
NK = 6 if WIDE else 3


@intrinsic
def _weight_tile(typingctx, planes, x_offset, x_step, k_offsets, k0, gy, gy_offset, gy_step, gy_stride, images,
                 vectors, out):
    """out[i * NK + j] = the sum over images n < ``images`` and q < LANES *
    ``vectors`` grid pixels of gy[gy_offset + n * gy_step + i * gy_stride
    + q] * planes[x_offset + n * x_step + k_offsets[k0 + j] + q], for i <
    NO output channels and j < NK (tap, channel) pairs: LANES lanes of
    partial sums each, added up at the end. All arrays flat float32
    (``k_offsets`` intp)."""
    dtypes = [getattr(array, "dtype", None) for array in (planes, k_offsets, gy, out)]
    if dtypes != [types.float32, types.intp, types.float32, types.float32]:
        return None     # the IR below reads exactly these element types
    sig = types.void(planes, x_offset, x_step, k_offsets, k0, gy, gy_offset, gy_step, gy_stride, images, vectors,
                     out)

    def codegen(context, builder, signature, args):
        kinds = signature.args
        (planes, x_offset, x_step, k_offsets, k0, gy, gy_offset, gy_step, gy_stride, images, vectors,
         out) = _intp_args(context, builder, signature, args)
        const, fma = _constants(context), _fma(builder, _FV)
        reduce_add = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_F32, [_F32, _FV]),
                                                    f"llvm.vector.reduce.fadd.v{LANES}f32")
        acc = [[cgutils.alloca_once_value(builder, ir.Constant(_FV, None)) for _ in range(NK)] for _ in range(NO)]
        offsets = _pointer(context, builder, kinds[3], k_offsets, k0, context.get_value_type(types.intp))
        with cgutils.for_range(builder, images) as image:
            x0 = _pointer(context, builder, kinds[0], planes, builder.add(x_offset, builder.mul(image.index, x_step)),
                          _F32)
            starts = [builder.gep(x0, [builder.load(builder.gep(offsets, [const(j)]))]) for j in range(NK)]
            gy0 = _pointer(context, builder, kinds[5], gy, builder.add(gy_offset, builder.mul(image.index, gy_step)),
                           _F32)
            rows = [builder.gep(gy0, [builder.mul(gy_stride, const(i))]) for i in range(NO)]
            with cgutils.for_range(builder, vectors) as vector:
                at = builder.mul(vector.index, const(LANES))
                pixels = [builder.load(builder.bitcast(builder.gep(start, [at]), _FV.as_pointer()), align=4)
                          for start in starts]
                for i in range(NO):
                    grad = builder.load(builder.bitcast(builder.gep(rows[i], [at]), _FV.as_pointer()), align=4)
                    for j in range(NK):
                        builder.store(builder.call(fma, [grad, pixels[j], builder.load(acc[i][j])]), acc[i][j])
        out0 = _pointer(context, builder, kinds[11], out, const(0), _F32)
        for i in range(NO):
            for j in range(NK):
                total = builder.call(reduce_add, [ir.Constant(_F32, 0.0), builder.load(acc[i][j])])
                builder.store(total, builder.gep(out0, [const(i * NK + j)]))
        return context.get_dummy_value()
    return sig, codegen


@numba.njit(**JIT)
def _planes(x, Cg, sh, sw, ph, pw, HQ, WQ, planes):
    """The ``planes`` layout (module docstring) of one image ``x`` (C, H,
    W) float32, into ``planes`` (G*S*Cg, L): row (g*S + a*sw + b)*Cg + c
    holds channel g*Cg + c at padded positions (a + i*sh, b + j*sw), flat
    at i*WQ + j, zero where that is padding or past the HQ*WQ pixels."""
    C, H, W = x.shape
    L = planes.shape[1]
    S = sh * sw
    # Each phase's bounds once (integer divisions cost tens of cycles, a
    # 7x7 map's row a few); then only the padding is zeroed, in the same
    # pass as the copy.
    for phase in range(S):
        a, b = phase // sw, phase % sw
        off = b - pw
        lo = min(WQ, max(0, (-off + sw - 1) // sw))        # first j with iw >= 0
        hi = max(lo, min(WQ, (W - 1 - off) // sw + 1))     # past the last j with iw < W
        i0 = min(HQ, max(0, (ph - a + sh - 1) // sh))      # first i with ih >= 0
        i1 = max(i0, min(HQ, (H - 1 + ph - a) // sh + 1))  # past the last i with ih < H
        for g in range(C // Cg):
            for c in range(Cg):
                dst, src = planes[(g * S + phase) * Cg + c], x[g * Cg + c]
                k = u64(0)                                  # dst[:k] is written
                for i in range(i0, i1):
                    base, row = u64(i * WQ), src[a + i * sh - ph]
                    _fill(dst, k, base + u64(lo) - k, 0)
                    if sw == 1:
                        for j in range(u64(lo), u64(hi)):
                            dst[base + j] = row[j + u64(off)]
                    else:
                        for j in range(u64(lo), u64(hi)):
                            dst[base + j] = row[j * u64(sw) + u64(off)]
                    k = base + u64(hi)
                _fill(dst, k, u64(L) - k, 0)


@numba.njit(**JIT)
def _tiles(planes, tap_offsets, wp, bias, WQ, OW, out, tile, start, stop):
    """out (O, OH*OW) = one image's convolution, its (pixel tile, group,
    channel block) tasks [start, stop) (``vnni._tiles``'s order: tasks
    that follow each other share a pixel tile, in cache). A tile lands in
    ``tile`` (NO*TILE_P, in L1), whose pixels on the output are copied
    out, or, where the grid is the output, straight in the output."""
    G, OB, T, Cg = wp.shape[:4]
    O, OHW = out.shape
    Og, OH = O // G, OHW // OW
    rows_per_group, L = planes.shape[0] // G, planes.shape[1]
    flat_planes, flat_w, flat_out = planes.reshape(-1), wp.reshape(-1), out.reshape(-1)
    for task in range(start, stop):
        t, r = task // (G * OB), task % (G * OB)
        g, b = r // OB, r % OB
        q0, q1 = t * TILE_P, min((t + 1) * TILE_P, OH * WQ)
        row0, count = g * Og + b * NO, min(NO, Og - b * NO)
        x_at, w_at = g * rows_per_group * L + t * TILE_P, (g * OB + b) * T * Cg * NO
        if WQ == OW and q1 - q0 == TILE_P and count == NO:
            _tile(flat_planes, x_at, tap_offsets, Cg, L, flat_w, w_at, bias, (g * OB + b) * NO, flat_out,
                  row0 * OHW + q0, OHW)
            continue
        _tile(flat_planes, x_at, tap_offsets, Cg, L, flat_w, w_at, bias, (g * OB + b) * NO, tile, 0, TILE_P)
        copy_out(tile, TILE_P, count, q0, q1, WQ, OW, out, row0)


@numba.njit(**JIT)
def _images(x, Cg, sh, sw, ph, pw, HQ, WQ, planes, tap_offsets, wp, bias, OW, out, start, stop):
    """out[n] for images start <= n < stop, each laid out in ``planes``
    (one image's) and then computed whole: one thread's images."""
    G, OB = wp.shape[:2]
    tasks = -(-(out.shape[2] // OW) * WQ // TILE_P) * G * OB
    tile = numpy.empty(NO * TILE_P, numpy.float32)
    for n in range(start, stop):
        _planes(x[n], Cg, sh, sw, ph, pw, HQ, WQ, planes)
        _tiles(planes, tap_offsets, wp, bias, WQ, OW, out[n], tile, 0, tasks)


@numba.njit(**JIT)
def _image_part(planes, tap_offsets, wp, bias, WQ, OW, out, part, parts):
    """``_tiles`` of one image, this part's share of its tasks."""
    G, OB = wp.shape[:2]
    tasks = -(-(out.shape[1] // OW) * WQ // TILE_P) * G * OB
    start, stop = _share(tasks, part, parts)
    _tiles(planes, tap_offsets, wp, bias, WQ, OW, out, numpy.empty(NO * TILE_P, numpy.float32), start, stop)


@numba.njit(**JIT)
def _weight_layout(x, gy, Cg, sh, sw, ph, pw, HQ, WQ, planes, grid, part, parts):
    """planes[n] (``_planes``) and grid[n] for this part's share of the
    images: grid (N, G, OB*NO, LQ) holds gy[n, g*Og + o] on the output
    grid, gy[n, g*Og + o, oh, ow] at oh*WQ + ow, zero elsewhere (the
    dropped columns, past the last row, the rows o >= Og)."""
    N, O, OH, OW = gy.shape
    G, rows, LQ = grid.shape[1], grid.shape[2], grid.shape[3]
    Og = O // G
    start, stop = _share(N, part, parts)
    for n in range(start, stop):
        _planes(x[n], Cg, sh, sw, ph, pw, HQ, WQ, planes[n])
        for g in range(G):
            for o in range(rows):
                row = grid[n, g, o]
                for k in range(u64(LQ)):
                    row[k] = 0
                if o < Og:
                    src = gy[n, g * Og + o]
                    for oh in range(OH):
                        base = u64(oh * WQ)
                        for ow in range(u64(OW)):
                            row[base + ow] = src[oh, ow]


@numba.njit(**JIT)
def _weight_tasks(planes, k_offsets, grid, gw, part, parts):
    """gw (G, OB*NO, KB*NK): this part's share of the (group, pair block,
    channel block) tasks, each summing ``_weight_tile`` over all the
    images: every sum is made by one task, in the same order, whatever
    the number of threads."""
    N, G, rows, LQ = grid.shape
    OB, KB = rows // NO, k_offsets.size // NK
    rows_per_group, L = planes.shape[1] // G, planes.shape[2]
    flat_planes, flat_grid = planes.reshape(-1), grid.reshape(-1)
    total = numpy.empty(NO * NK, numpy.float32)
    start, stop = _share(G * KB * OB, part, parts)
    for task in range(start, stop):
        g, r = task // (KB * OB), task % (KB * OB)
        kb, ob = r // OB, r % OB
        _weight_tile(flat_planes, g * rows_per_group * L, planes.shape[1] * L, k_offsets, kb * NK, flat_grid,
                     (g * rows + ob * NO) * LQ, G * rows * LQ, LQ, N, LQ // LANES, total)
        for i in range(NO):
            for j in range(NK):
                gw[g, ob * NO + i, kb * NK + j] = total[i * NK + j]


def pack(w, groups, block=NO):
    """float32 weights ``w`` (O, Cg, KH, KW) in the ``wp`` layout (G, OB,
    KH*KW, Cg, block) of blocks of ``block`` output channels (NO here,
    more in ``implicit_channels.py``), zero past each group's Og channels."""
    O, Cg, KH, KW = w.shape
    Og = O // groups
    OB = -(-Og // block)
    padded = numpy.zeros((groups, OB * block, KH * KW, Cg), numpy.float32)
    padded[:, :Og] = w.reshape(groups, Og, Cg, KH * KW).transpose(0, 1, 3, 2)
    return numpy.ascontiguousarray(padded.reshape(groups, OB, block, KH * KW, Cg).transpose(0, 1, 3, 4, 2))


#: Fewest multiply-adds of one image's convolution worth sharing among
#: threads when there are fewer images than threads (as ``vnni.py``).
PARALLEL_MACS = 1 << 22


def _layout_geometry(x, Cg, KH, KW, stride, padding, dilation, out_size, caller, tile=TILE_P):
    """(OH, OW, HQ, WQ, plane_shape, tap_offsets) of the layout (module
    docstring) for x (N, C, H, W), Cg channels a group and a KH x KW
    kernel: ``vnni._geometry``'s, with OH, OW the given ``out_size``, the
    leading rows and columns of the convolution's output (a transposed
    convolution's gradient drops the rest); ``padding`` ((top, bottom),
    (left, right)) with top == bottom and left == right; planes long
    enough for tiles of ``tile`` grid pixels."""
    N, C, H, W = x.shape
    (ph, _), (pw, _) = padding
    OH, OW, WQ, plane_shape, tap_offsets = _geometry(C, H, W, Cg, KH, KW, tuple(stride), (ph, pw), tuple(dilation),
                                                     tile)
    if out_size[0] > OH or out_size[1] > OW:
        raise ValueError(f"{caller}: output {tuple(out_size)} is past the convolution's output "
                         f"{(OH, OW)} for input {(H, W)}, kernel {(KH, KW)}, padding {(ph, pw)}")
    return out_size[0], out_size[1], -(-(H + 2 * ph) // stride[0]), WQ, plane_shape, tap_offsets


def _run(images, part, x, Cg, stride, padding, HQ, WQ, plane_rows, L, args, OW, rows, macs):
    """rows (N, O, OH*OW) of a convolution, by the kernels ``images`` (one
    thread's images, each laid out and computed whole) and ``part`` (a
    share of one laid-out image's tasks), which take ``args`` (tap
    offsets, weights, bias) after the planes: with at least as many
    images as threads, each thread lays out and computes its own images
    (one parallel region); with fewer, the threads share each image's
    tasks, when it has ``macs`` (multiply-adds) enough."""
    N, threads = x.shape[0], thread_count()
    (sh, sw), ((ph, _), (pw, _)) = stride, padding
    if N >= threads:
        def work(mine):                 # one thread's images, in its own planes
            planes = numpy.empty((plane_rows, L), numpy.float32)
            images(x, Cg, sh, sw, ph, pw, HQ, WQ, planes, *args, OW, rows, mine.start, mine.stop)
        run_in_parallel(work, [slice(run.start, run.stop) for run in split(range(N), threads)])
        return
    planes = numpy.empty((plane_rows, L), numpy.float32)
    for n in range(N):
        _planes(x[n], Cg, sh, sw, ph, pw, HQ, WQ, planes)
        parallel_parts(part, macs, planes, *args, WQ, OW, rows[n], worth=PARALLEL_MACS)


def conv2d(x, w, b, stride, padding, dilation, groups, out_size):
    """y (N, O, OH, OW) float32 = conv2d(x, w) + b for float32 x (N, C, H,
    W), w (O, Cg, KH, KW), b (O,) or None; ``padding`` ((top, bottom),
    (left, right)) with top == bottom and left == right (``vnni._geometry``'s
    symmetric padding), ``out_size`` at most the convolution's output.
    Tiles of ``_tile``'s NO channels, shared out among the threads by
    ``_run``."""
    x = numpy.ascontiguousarray(x, dtype=numpy.float32)
    N = x.shape[0]
    O, Cg, KH, KW = w.shape
    OH, OW, HQ, WQ, plane_shape, tap_offsets = _layout_geometry(x, Cg, KH, KW, stride, padding, dilation, out_size,
                                                                "implicit_gemm.conv2d")
    y = numpy.empty((N, O, OH, OW), numpy.float32)
    rows = y.reshape(N, O, OH * OW)
    geometry = (x, Cg, stride, padding, HQ, WQ, groups * plane_shape[0] * Cg, plane_shape[2])
    macs = O * Cg * KH * KW * OH * OW
    wp = pack(numpy.asarray(w, dtype=numpy.float32), groups)
    bias = numpy.zeros((groups, wp.shape[1] * NO), numpy.float32)
    if b is not None:
        bias[:, :O // groups] = numpy.asarray(b, dtype=numpy.float32).reshape(groups, O // groups)
    _run(_images, _image_part, *geometry, (tap_offsets, wp, bias.reshape(-1)), OW, rows, macs)
    return y


def conv2d_grad_weight(x, gy, kernel_size, stride, padding, dilation, groups):
    """gw (O, Cg, KH, KW) float32 of ``conv2d``: the sum over images and
    output pixels of gy times the input pixels each weight saw, for
    float32 x (N, C, H, W) and gy (N, O, OH, OW). The images are laid out
    (``_weight_layout``), then each task sums a NO x NK block of gw over
    them all (``_weight_tasks``): two parallel regions."""
    x = numpy.ascontiguousarray(x, dtype=numpy.float32)
    gy = numpy.ascontiguousarray(gy, dtype=numpy.float32)
    N, C = x.shape[:2]
    O, (KH, KW) = gy.shape[1], kernel_size
    Cg = C // groups
    (ph, _), (pw, _) = padding
    OH, _, HQ, WQ, plane_shape, tap_offsets = _layout_geometry(x, Cg, KH, KW, stride, padding, dilation,
                                                               gy.shape[2:], "implicit_gemm.conv2d_grad_weight")
    T, Og = KH * KW, O // groups
    K, OB = T * Cg, -(-Og // NO)
    KB = -(-K // NK)
    pairs = numpy.arange(KB * NK)
    # pair k = t*Cg + c reads channel c's plane at tap t's offset (pairs past K: any valid offset, dropped)
    k_offsets = numpy.where(pairs < K, tap_offsets[numpy.minimum(pairs // Cg, T - 1)] + pairs % Cg * plane_shape[2], 0)
    LQ = -(-OH * WQ // 16) * 16
    # A tile reads LQ pixels from each pair's offset: past the last image's planes, where the grid's
    # zeros multiply them. That tail is zeroed here, not left as whatever the heap held (a NaN there made
    # a NaN of the sum: a flaky test under load).
    shape = (N, groups * plane_shape[0] * Cg, plane_shape[2])
    size = math.prod(shape)
    flat = numpy.empty(size + int(k_offsets.max()) + LQ, numpy.float32)
    flat[size:] = 0
    planes = flat[:size].reshape(shape)
    grid = numpy.empty((N, groups, OB * NO, LQ), numpy.float32)
    parallel_parts(_weight_layout, planes.size + grid.size, x, gy, Cg, stride[0], stride[1], ph, pw, HQ, WQ, planes,
                   grid)
    gw = numpy.empty((groups, OB * NO, KB * NK), numpy.float32)
    macs = O * K * N * OH * WQ
    parallel_parts(_weight_tasks, macs, planes, k_offsets.astype(numpy.intp), grid, gw, worth=PARALLEL_MACS)
    gw = gw[:, :Og, :K].reshape(groups, Og, T, Cg).transpose(0, 1, 3, 2)
    return numpy.ascontiguousarray(gw).reshape(O, Cg, KH, KW)
