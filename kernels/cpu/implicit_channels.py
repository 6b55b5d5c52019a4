"""float32 convolution as an implicit GEMM with the output channels in the
vector lanes.

Notation as in ``implicit_gemm.py``: N batch, C input channels, O output
channels, G groups (Cg = C / G inputs and Og = O / G outputs a group),
KH, KW kernel, OH, OW output size, T = KH*KW taps; NV x P the register
tile (vectors of 16 output channels x pixels), CB = 16 * NV the output
channels of one block.

Why a second orientation
------------------------
``implicit_gemm.py`` puts 16 output *pixels* in a vector and broadcasts
the weights: right for few channels on large maps. With many output
channels it is the other way round. A tile of NV vectors of 16 output
channels by P pixels (NV * P = 24 accumulators of AVX-512's 32 registers; 6 on
AVX2, ``ACCUMULATORS``) takes,
per (tap, input channel) step, NV weight vectors and P input values, each
broadcast to all lanes, for NV * P fused multiply-adds: the register tile
of oneDNN's direct convolution. The inputs are read from the same
``planes`` layout as ``implicit_gemm.py``'s (the zero-padded image, the
phases of a strided convolution laid out apart, one offset per tap),
and a tile's P pixels are any P output pixels: each has its offset in
the planes (``_pixel_offsets``), so a tile runs on across rows and from
one image into the next, and wastes only the spare pixels of the last
tile of a group of images, not a grid's padding columns: 49 pixels of a
7x7 map alone are 9 tiles of 6 (``vectors_a_block`` picks NV, and so P,
for the fewest spare channels and pixels).

On znver4 the tile alone runs at one 16-lane FMA a cycle, the core's
peak, at every NV of 1-4 (weights from L2). What the layer loses is in
getting data to it:

* weights ``wp`` (G, OB, T, Cg, CB): for a block of CB output channels,
  tap by tap and channel by channel, the CB channels' weights side by
  side (``implicit_gemm.pack``'s layout with blocks of CB), zero past
  Og; packed each call, 16 x 16 blocks of w transposed in registers
  (``_pack``, ``_transpose16``).
* the layout: a thread lays out a group of its images (up to
  ``GROUP_BYTES`` of planes) and computes them; a batch smaller than
  the threads is laid out once and its tasks shared.
* *chunks*: a task computes one block of CB output channels for
  ``CHUNK_PIXELS`` pixels, P at a time, into a small buffer (pixel by
  pixel: each vector is 16 channels of one pixel), then copies it to
  the output's rows, channel by channel. Consecutive tasks share a
  block's weights (cutting the input channels into blocks, with partial
  sums kept between them, gained nothing: see NOTES.md).
* the padding's taps: near the border a pixel's taps read the planes'
  zeros, on small maps much of the work (a 3x3 kernel on a 4x4 map:
  44 of the 144 (pixel, tap) pairs; on 2x2, 20 of 36). oneDNN's direct
  kernels skip them, and so does this one, for an ungrouped layer,
  where they are over a tenth of the pairs (``BORDER_CLASSES_BELOW``):
  ``border_classes`` groups the output rows by which kernel rows read
  the input there, and the columns likewise, ``_table`` orders the
  pixels class by class (image by image within a class), and each tile
  sums the taps that any of its pixels reads, one list of (plane
  offset, weight offset) pairs for a run of tiles that share it. A
  skipped tap only ever added zero products (finite weights), and the
  others keep their order: the same bits either way.

The input gradient at stride 1 is this forward of gy with the flipped
filters, packed from w directly (``_pack``'s ``flip``); at a stride, of
gy upsampled, each pixel of gx summing its phase's taps only
(``conv2d_grad_input``, ``border_classes``'s ``every``).

The weight gradient
-------------------
gw[o, c, t] is the sum over output pixels of gy[o] times the input that
tap t of channel c reads there. The same orientation: a tile of 16
output channels by WEIGHT_PAIRS (channel, tap) pairs keeps its sums in
registers over a run of pixels, each step one vector of gy (gy laid out
channels last: 16 channels of one pixel) and one input value broadcast
per pair, read through the pixel's offset in all the images' planes.
The pixels run a chunk at a time, each thread's tiles over the same
chunk in turn (it stays in cache), and each sum is made by one task in
pixel order, so the bits do not depend on the thread count.

The sums run in another order than the GEMM's: the results agree to
float32 rounding, not bit for bit. As for ``implicit_gemm.py``, the
vectors are LLVM's generic ones, so the kernels compile and run on any
CPU, and ``implicit_gemm.register_tiles()`` says which registers hold
the tiles: AVX-512's 32 hold 24 sums; AVX2's 16, two a 16-float
vector, hold 6 (``ACCUMULATORS``), and the strategy takes this path
there for fewer layers (``conv_strategy.CHANNELS_AVX2_MAX_DENSE_OUTPUTS``).
"""
import functools
import math

import numba
import numpy
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.extending import intrinsic

from .implicit_gemm import WIDE, _F32, _constants, _fma, _intp_args, _layout_geometry, _planes
from .loops import JIT, _share, u64
from .threads import parallel_parts, parts_for, run_in_parallel, split, thread_count
from .vnni import _F16, _I32, _pointer, _splat

#: Sums a register tile keeps (of AVX-512's 32 vector registers: 3-4 are
#: left for the weights and a broadcast; of AVX2's 16, two a vector: 12).
ACCUMULATORS = 24 if WIDE else 6
#: Pixels of a tile for NV vectors of output channels: NV * P = ACCUMULATORS.
PIXELS = {nv: ACCUMULATORS // nv for nv in (1, 2, 3, 4)}
#: The NV a block may have (``vectors_a_block``). On AVX2 one vector by 6
#: pixels: 2 x 3 and 3 x 2 took 1.0-1.4x its time (one layer of 16
#: channels a group 0.83; benchmarks/results/NOTES.md).
BLOCK_VECTORS = (2, 4, 3, 1) if WIDE else (1,)
#: Output pixels of one task's chunk (a multiple of every P).
CHUNK_PIXELS = 240


def _vectors(builder):
    """(pointer, offset) -> a pointer to the 16-float vector at element
    ``offset`` of ``pointer`` (float32)."""
    return lambda pointer, offset: builder.bitcast(builder.gep(pointer, [offset]), _F16.as_pointer())


def _offset_pointers(context, builder, x0, kind, offsets, at, count):
    """[x0 + offsets[at + i] for i < count], ``offsets`` an intp array of
    type ``kind``: where each of a tile's pixels (or (channel, tap) pairs)
    starts, through its offset table."""
    const = _constants(context)
    first = _pointer(context, builder, kind, offsets, at, context.get_value_type(types.intp))
    return [builder.gep(x0, [builder.load(builder.gep(first, [const(i)]))]) for i in range(count)]


def _taps(context, builder, kind, tap_offsets):
    """(a pointer to tap_offsets' first offset, how many there are) for an
    intp array ``tap_offsets`` of type ``kind``."""
    start = _pointer(context, builder, kind, tap_offsets, _constants(context)(0), context.get_value_type(types.intp))
    return start, cgutils.create_struct_proxy(kind)(context, builder, value=tap_offsets).nitems


def _tile_intrinsic(NV):
    """The register tile of NV vectors of output channels by PIXELS[NV]
    pixels, as an LLVM IR intrinsic (module docstring)."""
    P, CB = PIXELS[NV], 16 * NV

    @intrinsic
    def tile(typingctx, planes, x_offset, pixels, pixel_at, tap_offsets, tap_weights, tap_at, taps, channels,
             plane_stride, wp, w_offset, bias, b_offset, out, out_offset):
        """out[out_offset + p * CB + o] = bias[b_offset + o] + the sum over
        taps tap_at <= t < tap_at + taps and channels c of planes[x_offset +
        pixels[pixel_at + p] + tap_offsets[t] + c * plane_stride] *
        wp[w_offset + tap_weights[t] + c * CB + o], for p < P pixels and o <
        CB output channels: the taps are any of the kernel's, each with its
        offset in the planes and its weights' in wp. All arrays flat
        float32 (``pixels``, ``tap_offsets`` and ``tap_weights`` intp)."""
        dtypes = [getattr(array, "dtype", None) for array in (planes, pixels, tap_offsets, tap_weights, wp, bias, out)]
        if dtypes != [types.float32, types.intp, types.intp, types.intp, types.float32, types.float32, types.float32]:
            return None     # the IR below reads exactly these element types
        sig = types.void(planes, x_offset, pixels, pixel_at, tap_offsets, tap_weights, tap_at, taps, channels,
                         plane_stride, wp, w_offset, bias, b_offset, out, out_offset)

        def codegen(context, builder, signature, args):
            kinds = signature.args
            (planes, x_offset, pixels, pixel_at, tap_offsets, tap_weights, tap_at, taps, channels, plane_stride, wp,
             w_offset, bias, b_offset, out, out_offset) = _intp_args(context, builder, signature, args)
            const, fma = _constants(context), _fma(builder)
            vector_at = _vectors(builder)
            b0 = _pointer(context, builder, kinds[12], bias, b_offset, _F32)
            starts = [builder.load(vector_at(b0, const(16 * i)), align=4) for i in range(NV)]
            # accumulators in stack slots: LLVM promotes them to registers
            acc = [[cgutils.alloca_once_value(builder, starts[i]) for _ in range(P)] for i in range(NV)]
            x0 = _pointer(context, builder, kinds[0], planes, x_offset, _F32)
            x_pixels = _offset_pointers(context, builder, x0, kinds[2], pixels, pixel_at, P)
            intp = context.get_value_type(types.intp)
            tap_start = _pointer(context, builder, kinds[4], tap_offsets, tap_at, intp)
            weights_start = _pointer(context, builder, kinds[5], tap_weights, tap_at, intp)
            w0 = _pointer(context, builder, kinds[10], wp, w_offset, _F32)
            with cgutils.for_range(builder, taps) as tap:
                tap_offset = builder.load(builder.gep(tap_start, [tap.index]))
                wt = builder.gep(w0, [builder.load(builder.gep(weights_start, [tap.index]))])
                with cgutils.for_range(builder, channels) as channel:
                    offset = builder.add(tap_offset, builder.mul(channel.index, plane_stride))
                    wk = builder.gep(wt, [builder.mul(channel.index, const(CB))])
                    weights = [builder.load(vector_at(wk, const(16 * i)), align=4) for i in range(NV)]
                    for p in range(P):
                        value = _splat(builder, builder.load(builder.gep(x_pixels[p], [offset]), align=4), _F16)
                        for i in range(NV):
                            builder.store(builder.call(fma, [weights[i], value, builder.load(acc[i][p])]), acc[i][p])
            out0 = _pointer(context, builder, kinds[14], out, out_offset, _F32)
            for p in range(P):
                for i in range(NV):
                    builder.store(builder.load(acc[i][p]), vector_at(out0, const(p * CB + 16 * i)), align=4)
            return context.get_dummy_value()
        return sig, codegen
    return tile


_tile1, _tile2, _tile3, _tile4 = (_tile_intrinsic(NV) for NV in (1, 2, 3, 4))


@numba.njit(inline="always")
def _tile(NV, planes, x_offset, pixels, pixel_at, tap_offsets, tap_weights, tap_at, taps, channels, plane_stride, wp,
          w_offset, bias, b_offset, out, out_offset):
    """The tile of NV vectors (``_tile_intrinsic``): one branch per tile,
    on thousands of multiply-adds."""
    args = (planes, x_offset, pixels, pixel_at, tap_offsets, tap_weights, tap_at, taps, channels, plane_stride, wp,
            w_offset, bias, b_offset, out, out_offset)
    if NV == 1:
        _tile1(*args)
    elif NV == 2:
        _tile2(*args)
    elif NV == 3:
        _tile3(*args)
    else:
        _tile4(*args)


@numba.njit(**JIT)
def _chunks(planes, table, count, wp, bias, out, out_at, Og, OHW, buf, chunk, start, stop):
    """Tasks [start, stop) of the convolution of a group of images laid
    out in ``planes`` (B, G*S*Cg, L): a task is one block of CB output
    channels for ``chunk`` tiles of P pixels of the group's ``count``
    (``_table`` says which pixels each tile computes, over which taps,
    and where each lands in ``out``, the flat (N, O, OH*OW) output, from
    ``out_at`` on); consecutive tasks share a block's weights. A chunk's
    tiles land in ``buf`` (chunk * P * CB, pixel by pixel), which is then
    copied to the output, channel by channel."""
    pixels, positions, runs, tile_taps, tap_offsets, tap_weights = table
    G, OB, T, Cg, CB = wp.shape
    NV = CB // 16
    P = ACCUMULATORS // NV
    tiles = -(-count // P)
    chunks = -(-tiles // chunk)
    rows_per_group, L = planes.shape[1] // G, planes.shape[2]
    flat_planes, flat_w = planes.reshape(-1), wp.reshape(-1)
    for task in range(start, stop):
        block, k = task // chunks, task % chunks
        g, b = block // OB, block % OB
        j0, j1 = k * chunk, min((k + 1) * chunk, tiles)
        for j in range(j0, j1):
            t0, t1 = tile_taps[j, 0], tile_taps[j, 1]
            _tile(NV, flat_planes, g * rows_per_group * L, pixels, j * P, tap_offsets, tap_weights, t0, t1 - t0, Cg,
                  L, flat_w, block * T * Cg * CB, bias, block * CB, buf, (j - j0) * P * CB)
        row0, rows = out_at + (g * Og + b * CB) * OHW, min(CB, Og - b * CB)
        m0, m1 = j0 * P, min(j1 * P, count)
        m = m0
        while m < m1:            # a run of pixels that land side by side (a row or more), channel by channel
            end = min(runs[m], m1)
            for i in range(rows):
                at, src = u64(row0 + i * OHW + positions[m]), u64((m - m0) * CB + i)
                for r in range(u64(end - m)):
                    out[at + r] = buf[src + r * u64(CB)]
            m = end


@numba.njit(**JIT)
def _pixel_offsets(images, image_stride, OH, OW, WQ, pixels):
    """pixels[m] = the offset in a group's planes of the m-th output
    pixel of its first ``images`` images (image by image, row by row: on
    the grid, oh * WQ + ow), then 0 (a valid pixel, computed and dropped)
    for the rest."""
    m = 0
    for n in range(images):
        for oh in range(OH):
            for ow in range(OW):
                pixels[m] = n * image_stride + oh * WQ + ow
                m += 1
    pixels[m:] = 0


def border_classes(in_size, kernel_size, stride, padding, dilation, out_size, below=None, every=(1, 1)):
    """(row_class (OH,), col_class (OW,), row_taps (RC, KH), col_taps
    (CC, KW)): the output rows grouped by which kernel rows read the
    input there, not its padding (RC classes, ``row_taps`` True where
    they do), and the columns likewise; the pixels of row class r and
    column class c read the taps (kh, kw) with row_taps[r, kh] and
    col_taps[c, kw]. An input upsampled by ``every`` (zeros between its
    pixels, ``conv2d_grad_input`` at a stride) is read only on its
    pixels, each ``every``-th row and column. One class each (every tap)
    where the (pixel, tap) pairs that read the input are more than
    ``below`` of them all (default ``BORDER_CLASSES_BELOW``). Computed once
    per geometry (the arrays are read-only)."""
    below = BORDER_CLASSES_BELOW if below is None else below
    return _border_classes(tuple(in_size), tuple(kernel_size), tuple(stride), tuple(lo for lo, _ in padding),
                           tuple(dilation), tuple(out_size), below, tuple(every))


@functools.lru_cache(maxsize=256)
def _border_classes(in_size, kernel_size, stride, padding, dilation, out_size, below, every=(1, 1)):
    valid = [[tuple(0 <= o * s - lo + t * d < n and (o * s - lo + t * d) % e == 0 for t in range(k))
              for o in range(size)]
             for n, k, s, lo, d, size, e in zip(in_size, kernel_size, stride, padding, dilation, out_size, every)]
    reads = [sum(sum(taps) for taps in dim) for dim in valid]
    if reads[0] * reads[1] > below * math.prod(out_size) * math.prod(kernel_size):
        valid = [[(True,) * k] * size for k, size in zip(kernel_size, out_size)]
    classes = []
    for dim in valid:
        kinds = list(dict.fromkeys(dim))            # the distinct patterns, in order of first use
        classes += [numpy.array([kinds.index(taps) for taps in dim], numpy.intp), numpy.array(kinds, numpy.bool_)]
    for array in classes:
        array.flags.writeable = False
    row_class, row_taps, col_class, col_taps = classes
    return row_class, col_class, row_taps, col_taps


@numba.njit(**JIT)
def _new_table(pixels, T, P):
    """Room for ``_table`` of up to ``pixels`` pixels and T taps, tiles of P."""
    tiles = -(-pixels // P)
    return (numpy.empty(pixels + ACCUMULATORS, numpy.intp), numpy.empty(pixels, numpy.intp),
            numpy.empty(pixels, numpy.intp), numpy.empty((tiles, 2), numpy.intp), numpy.empty(tiles * T, numpy.intp),
            numpy.empty(tiles * T, numpy.intp))


@numba.njit(**JIT)
def _order(images, image_stride, image_outputs, OH, OW, WQ, row_class, col_class, RC, CC, pixels, positions, runs,
           of_class):
    """pixels[m], positions[m] and of_class[m] of a group's output pixels,
    class by class (row class, then column class), image by image, row by
    row: each pixel's offset in the planes, where it lands in the output,
    its class (not written where there is one class); runs[m], where the
    run of pixels that land side by side in the output from m on ends."""
    count = images * OH * OW
    if RC == 1 and CC == 1:
        for n in range(images):
            for oh in range(OH):
                at, to, m = n * image_stride + oh * WQ, n * image_outputs + oh * OW, (n * OH + oh) * OW
                for ow in range(OW):
                    pixels[m + ow], positions[m + ow] = at + ow, to + ow
            runs[n * OH * OW:(n + 1) * OH * OW] = (n + 1) * OH * OW
        return
    m = 0
    for rc in range(RC):
        for cc in range(CC):
            for n in range(images):
                for oh in range(OH):
                    if row_class[oh] == rc:
                        for ow in range(OW):
                            if col_class[ow] == cc:
                                pixels[m] = n * image_stride + oh * WQ + ow
                                positions[m], of_class[m] = n * image_outputs + oh * OW + ow, rc * CC + cc
                                m += 1
    runs[count - 1] = count
    for m in range(count - 2, -1, -1):
        runs[m] = runs[m + 1] if positions[m + 1] == positions[m] + 1 else m + 1


@numba.njit(**JIT)
def _table(images, image_stride, image_outputs, OH, OW, WQ, classes, tap_offsets, tap_weights, P, below, table):
    """Fill ``table`` (``_new_table``'s arrays) for a group of ``images``
    images, whose planes are ``image_stride`` apart and outputs
    ``image_outputs``, and return how many pixels it has: ``pixels``, each
    pixel's offset in the planes (then zeros, a valid pixel computed and
    dropped, for the last tile's spare ones), class by class of
    ``border_classes`` (``_order``); ``positions``, where each lands in
    the output, and ``runs``, where each one's run of pixels that land
    side by side there ends; ``tile_taps``, the (start, stop) of each
    tile's taps in the lists ``tap_offsets`` and ``tap_weights`` then
    hold: the taps any of its pixels reads (a tap that reads another
    one's padding there adds zeros to it), a list kept once for a run of
    tiles that share it. Where
    that leaves more than ``below`` of the tiles' taps (tiles of several
    classes take the union of theirs), every tile takes every tap, the
    pixels in plain order."""
    row_class, col_class, row_taps, col_taps = classes
    pixels, positions, runs, tile_taps = table[:4]
    (RC, KH), (CC, KW) = row_taps.shape, col_taps.shape
    T, count = KH * KW, images * OH * OW
    tiles = -(-count // P)
    pixels[count:] = 0
    of_class = numpy.empty(count if RC * CC > 1 else 0, numpy.intp)
    _order(images, image_stride, image_outputs, OH, OW, WQ, row_class, col_class, RC, CC, pixels, positions, runs,
           of_class)
    used, last = numpy.zeros(T, numpy.bool_), numpy.zeros(T, numpy.bool_)
    if RC * CC == 1:                    # one class: every tile its taps
        for t in range(T):
            used[t] = row_taps[0, t // KW] and col_taps[0, t % KW]
        tile_taps[:tiles, 0], tile_taps[:tiles, 1] = 0, _tap_list(used, tap_offsets, tap_weights, table, 0)
        return count
    end = summed = 0
    for j in range(tiles):
        used[:] = False
        seen = -1
        for m in range(j * P, min((j + 1) * P, count)):
            if of_class[m] != seen:                 # a tile's pixels are of one class or two, mostly
                seen = of_class[m]
                for kh in range(KH):
                    for kw in range(KW):
                        used[kh * KW + kw] |= row_taps[seen // CC, kh] and col_taps[seen % CC, kw]
        same = j > 0
        for t in range(T):
            same = same and used[t] == last[t]
        if same:
            tile_taps[j] = tile_taps[j - 1]
        else:
            tile_taps[j, 0] = end
            end = tile_taps[j, 1] = _tap_list(used, tap_offsets, tap_weights, table, end)
            last[:] = used
        summed += tile_taps[j, 1] - tile_taps[j, 0]
    if summed > below * tiles * T:      # too little saved: every tile every tap, the pixels in plain order
        plain = numpy.zeros(max(OH, OW), numpy.intp)
        _order(images, image_stride, image_outputs, OH, OW, WQ, plain, plain, 1, 1, pixels, positions, runs,
               of_class)
        used[:] = True
        tile_taps[:tiles, 0], tile_taps[:tiles, 1] = 0, _tap_list(used, tap_offsets, tap_weights, table, 0)
    return count


@numba.njit(**JIT)
def _tap_list(used, tap_offsets, tap_weights, table, end):
    """Append the ``used`` taps' plane and weight offsets to ``table``'s
    tap lists from ``end`` on; returns where the lists now end."""
    list_offsets, list_weights = table[4], table[5]
    for t in range(len(used)):
        if used[t]:
            list_offsets[end], list_weights[end] = tap_offsets[t], tap_weights[t]
            end += 1
    return end


@numba.njit(**JIT)
def _images(x, Cg, sh, sw, ph, pw, HQ, WQ, planes, classes, tap_offsets, tap_weights, below, wp, bias, OH, OW, out,
            start, stop):
    """out (N, O, OH*OW) for images start <= n < stop, laid out and
    computed B = len(planes) images at a time: one thread's images."""
    B, image_rows, L = planes.shape
    G, _, T, _, CB = wp.shape
    P = ACCUMULATORS // (CB // 16)
    O, OHW = out.shape[1], OH * OW
    table = _new_table(B * OHW, T, P)
    buf = numpy.empty(CHUNK_PIXELS * CB, numpy.float32)
    flat_out = out.reshape(-1)
    chunk = CHUNK_PIXELS // P
    laid_out, count = -1, 0
    for n0 in range(start, stop, B):
        images = min(B, stop - n0)
        if images != laid_out:
            count = _table(images, image_rows * L, O * OHW, OH, OW, WQ, classes, tap_offsets, tap_weights, P, below,
                           table)
            laid_out = images
        for n in range(images):
            _planes(x[n0 + n], Cg, sh, sw, ph, pw, HQ, WQ, planes[n])
        _chunks(planes, table, count, wp, bias, flat_out, n0 * O * OHW, O // G, OHW, buf, chunk, 0,
                _tasks(wp, count, chunk))


def even_chunk(count, P, blocks, parts):
    """Pixels a chunk (a multiple of P, at most CHUNK_PIXELS) for a batch
    of ``count`` output pixels whose ``blocks`` x chunks tasks ``parts``
    parts share out: chunks as even as the tiles allow, and a multiple of
    ``parts`` tasks where that takes at most parts - 1 more chunks (each
    part then as much work: with 6 tasks in 4 parts, one thread did 4 of
    them)."""
    tiles = -(-count // P)
    chunks = -(-tiles // (CHUNK_PIXELS // P))
    for more in range(chunks, min(chunks + parts, tiles + 1)):
        if blocks * more % parts == 0:
            chunks = more
            break
    return P * -(-tiles // chunks)


@numba.njit(**JIT)
def _batch_part(planes, table, count, wp, bias, out, Og, OHW, chunk, part, parts):
    """``_chunks`` of the whole batch, laid out in ``planes``, ``chunk``
    tiles a task: this part's share of its tasks."""
    CB = wp.shape[4]
    P = ACCUMULATORS // (CB // 16)
    start, stop = _share(_tasks(wp, count, chunk), part, parts)
    _chunks(planes, table, count, wp, bias, out, 0, Og, OHW, numpy.empty(chunk * P * CB, numpy.float32), chunk, start,
            stop)


@numba.njit(**JIT)
def _tasks(wp, count, chunk):
    """``_chunks``'s tasks for ``count`` pixels, ``chunk`` tiles a task:
    each block of wp's output channels (G * OB) by each chunk of tiles."""
    G, OB, CB = wp.shape[0], wp.shape[1], wp.shape[4]
    tiles = -(-count // (ACCUMULATORS // (CB // 16)))
    return G * OB * -(-tiles // chunk)


#: (channel, tap) pairs of the weight gradient's tile: 16 output channels
#: (one vector) by WEIGHT_PAIRS pairs, ACCUMULATORS sums. One vector only:
#: with two (by 12 pairs) LLVM kept too few registers free and the tile
#: ran at 45 GF/s on one core, against 105-110 with one.
WEIGHT_PAIRS = ACCUMULATORS


@intrinsic
def _weight_tile(typingctx, planes, pair_offsets, pair_at, pixels, m0, m1, gy, gy_offset, gy_stride, acc_out, acc_at):
    """acc_out[acc_at + 16 k + o] += the sum over pixels m0 <= m < m1 of
    gy[gy_offset + m * gy_stride + o] * planes[pair_offsets[pair_at + k] +
    pixels[m]], for k < WEIGHT_PAIRS pairs and o < 16 output channels: the
    weight gradient's register tile. All arrays flat float32
    (``pair_offsets`` and ``pixels`` intp)."""
    dtypes = [getattr(array, "dtype", None) for array in (planes, pair_offsets, pixels, gy, acc_out)]
    if dtypes != [types.float32, types.intp, types.intp, types.float32, types.float32]:
        return None     # the IR below reads exactly these element types
    sig = types.void(planes, pair_offsets, pair_at, pixels, m0, m1, gy, gy_offset, gy_stride, acc_out, acc_at)

    def codegen(context, builder, signature, args):
        kinds = signature.args
        (planes, pair_offsets, pair_at, pixels, m0, m1, gy, gy_offset, gy_stride, acc_out,
         acc_at) = _intp_args(context, builder, signature, args)
        const, fma = _constants(context), _fma(builder)
        intp = context.get_value_type(types.intp)
        vector_at = _vectors(builder)
        a0 = _pointer(context, builder, kinds[9], acc_out, acc_at, _F32)
        acc = [cgutils.alloca_once_value(builder, builder.load(vector_at(a0, const(16 * k)), align=4))
               for k in range(WEIGHT_PAIRS)]
        x0 = _pointer(context, builder, kinds[0], planes, const(0), _F32)
        x_pairs = _offset_pointers(context, builder, x0, kinds[1], pair_offsets, pair_at, WEIGHT_PAIRS)
        pixel_start = _pointer(context, builder, kinds[3], pixels, const(0), intp)
        g0 = _pointer(context, builder, kinds[6], gy, gy_offset, _F32)
        with cgutils.for_range_slice(builder, m0, m1, const(1)) as (m, _):
            offset = builder.load(builder.gep(pixel_start, [m]))
            grads = builder.load(vector_at(g0, builder.mul(m, gy_stride)), align=4)
            for k in range(WEIGHT_PAIRS):
                value = _splat(builder, builder.load(builder.gep(x_pairs[k], [offset]), align=4), _F16)
                builder.store(builder.call(fma, [grads, value, builder.load(acc[k])]), acc[k])
        for k in range(WEIGHT_PAIRS):
            builder.store(builder.load(acc[k]), vector_at(a0, const(16 * k)), align=4)
        return context.get_dummy_value()
    return sig, codegen


@numba.njit(**JIT)
def _weight_tasks(planes, pair_offsets, pixels, gy, acc, part, parts):
    """acc (G, OB, KB, KP, CB) += the weight gradient's sums, this part's
    share of the (group, output block, pair block) tasks, each over all
    the pixels a chunk (``CHUNK_PIXELS``) at a time, the chunks in order:
    every sum is made by one task in the same order, on any number of
    threads. ``gy`` (pixels, G, OB*CB) channels last; ``pair_offsets``
    (G, KB*KP) the offset in ``planes`` of each pair's input at pixel 0."""
    G, OB, KB, KP, CB = acc.shape
    count = gy.shape[0]
    flat_acc, flat_gy, flat_planes = acc.reshape(-1), gy.reshape(-1), planes.reshape(-1)
    flat_pairs = pair_offsets.reshape(-1)
    start, stop = _share(G * OB * KB, part, parts)
    row = G * OB * CB
    for m0 in range(0, count, CHUNK_PIXELS):
        m1 = min(count, m0 + CHUNK_PIXELS)
        for task in range(start, stop):
            g, r = task // (OB * KB), task % (OB * KB)
            b, kb = r // KB, r % KB
            _weight_tile(flat_planes, flat_pairs, g * KB * KP + kb * KP, pixels, m0, m1, flat_gy, (g * OB + b) * CB,
                         row, flat_acc, task * KP * CB)


@numba.njit(**JIT)
def _channels_last(gy, G, out, part, parts):
    """out (N*L, G, OB*CB) = gy (N, G*Og, L) with each pixel's channels side
    by side, zero past each group's Og: this part's share of the images."""
    N, O, L = gy.shape
    Og, width = O // G, out.shape[2]
    start, stop = _share(N, part, parts)
    for n in range(start, stop):
        for q in range(L):
            row = out[n * L + q]
            for g in range(G):
                for o in range(width):
                    row[g, o] = gy[n, g * Og + o, q] if o < Og else 0


@numba.njit(**JIT)
def _layouts(x, Cg, sh, sw, ph, pw, HQ, WQ, planes, part, parts):
    """planes[n] = ``_planes`` of image n, this part's share of the images."""
    start, stop = _share(x.shape[0], part, parts)
    for n in range(start, stop):
        _planes(x[n], Cg, sh, sw, ph, pw, HQ, WQ, planes[n])


def _transposed(builder, rows):
    """The 16 rows of a 16 x 16 matrix (16 vectors) transposed: four
    rounds of shuffles, round k swapping bit k of the row index with bit
    k of the lane index (pairs of rows that differ in that bit trade the
    lanes that differ in it)."""
    rows = list(rows)
    for k in range(4):
        bit = 1 << k
        low = ir.Constant(ir.VectorType(_I32, 16), [c if not c & bit else 16 + (c ^ bit) for c in range(16)])
        high = ir.Constant(ir.VectorType(_I32, 16), [c | bit if not c & bit else 16 + c for c in range(16)])
        for r in range(16):
            if not r & bit:
                a, b = rows[r], rows[r | bit]
                rows[r], rows[r | bit] = builder.shuffle_vector(a, b, low), builder.shuffle_vector(a, b, high)
    return rows


@intrinsic
def _transpose16(typingctx, src, src_offset, src_stride, dst, dst_offsets, dst_offset, rows):
    """dst[dst_offset + dst_offsets[j] + i] = src[src_offset + i *
    src_stride + j] for i < 16 and j < ``rows`` (at most 16): a 16 x 16
    block read as 16 rows of 16 floats, transposed in registers, its
    first ``rows`` rows stored where ``dst_offsets`` says (float32 ``src``,
    ``dst``; intp ``dst_offsets``)."""
    dtypes = [getattr(array, "dtype", None) for array in (src, dst, dst_offsets)]
    if dtypes != [types.float32, types.float32, types.intp]:
        return None     # the IR below reads exactly these element types
    sig = types.void(src, src_offset, src_stride, dst, dst_offsets, dst_offset, rows)

    def codegen(context, builder, signature, args):
        kinds = signature.args
        src, src_offset, src_stride, dst, dst_offsets, dst_offset, rows = _intp_args(context, builder, signature,
                                                                                      args)
        const = _constants(context)
        s0 = _pointer(context, builder, kinds[0], src, src_offset, _F32)
        loaded = [builder.load(builder.bitcast(builder.gep(s0, [builder.mul(src_stride, const(i))]),
                                               _F16.as_pointer()), align=4) for i in range(16)]
        d0 = _pointer(context, builder, kinds[3], dst, dst_offset, _F32)
        offsets = _pointer(context, builder, kinds[4], dst_offsets, const(0), context.get_value_type(types.intp))
        for j, row in enumerate(_transposed(builder, loaded)):
            with builder.if_then(builder.icmp_signed("<", const(j), rows)):
                at = builder.gep(d0, [builder.load(builder.gep(offsets, [const(j)]))])
                builder.store(row, builder.bitcast(at, _F16.as_pointer()), align=4)
        return context.get_dummy_value()
    return sig, codegen


@numba.njit(**JIT)
def _pack(w, G, flip, wp, part, parts):
    """wp (G, OB, T, Cg, CB): the weights of the convolution by w (O, Cg*T)
    in blocks of CB output channels (``implicit_gemm.pack(w, G, CB)``),
    or (``flip``) those of the convolution by its flipped filters
    (``conv_strategy._flipped``: input and output channels swapped within
    each group, taps reversed), this part's share of the (group, block)
    pairs. 16 x 16 blocks of w are transposed in registers (16 output
    channels by 16 (channel, tap) pairs; flipped, 16 input channels by 16
    taps of one output channel), the rest one weight at a time."""
    OB, T, Cg, CB = wp.shape[1:]                  # Cg: the packed convolution's input channels a group
    K = w.shape[1]
    Og = w.shape[0] // G if not flip else K // T  # its output channels a group
    flat_w, flat_wp = w.reshape(-1), wp.reshape(-1)
    offsets = numpy.empty(16, numpy.intp)
    start, stop = _share(G * OB, part, parts)
    for block in range(start, stop):
        g, b = block // OB, block % OB
        base = block * T * Cg * CB
        if not flip:
            # One vector's 16 rows of w at a time, read along the rows: 16
            # streams of reads. (Each 16-pair step across all the block's
            # rows, CB read streams, packed 512 x 512 x 3x3 in 1.6-3.2 ms
            # a thread, this order in 1.0-1.7.)
            for v in range(CB // 16):
                row0, count = g * Og + b * CB + 16 * v, min(16, Og - b * CB - 16 * v)
                for k0 in range(0, K, 16):        # 16 (channel, tap) pairs k = c*T + t of w's rows
                    width = min(16, K - k0)
                    for j in range(width):
                        offsets[j] = ((k0 + j) % T * Cg + (k0 + j) // T) * CB
                    if count == 16 and width == 16:
                        _transpose16(flat_w, row0 * K + k0, K, flat_wp, offsets, base + 16 * v, 16)
                        continue
                    for j in range(width):
                        at = base + offsets[j] + 16 * v
                        for i in range(16):
                            flat_wp[at + i] = flat_w[(row0 + i) * K + k0 + j] if i < count else 0
            continue
        for c in range(Cg):                       # the flipped convolution's input channel: w's output channel
            for t0 in range(0, T, 16):
                rows = min(16, T - t0)
                for j in range(rows):
                    offsets[j] = ((T - 1 - t0 - j) * Cg + c) * CB
                for v in range(CB // 16):
                    o0, count = b * CB + 16 * v, min(16, Og - b * CB - 16 * v)
                    src = (g * Cg + c) * K + o0 * T + t0     # w[g*Cg + c, o0, tap t0]
                    # 16 rows of 16 floats from src on, T apart: in bounds unless at the end of w
                    if count == 16 and src + 15 * T + 16 <= flat_w.size:
                        _transpose16(flat_w, src, T, flat_wp, offsets, base + 16 * v, rows)
                        continue
                    for j in range(rows):
                        for i in range(16):
                            flat_wp[base + offsets[j] + 16 * v + i] = flat_w[src + i * T + j] if i < count else 0


def vectors_a_block(Og, pixels):
    """NV, the 16-channel vectors of an output-channel block, for Og
    output channels a group and ``pixels`` output pixels a group of
    images: the fewest (channel, pixel) pairs computed, padding channels
    of the last block and spare pixels of the last tile included (a 7x7
    map, 49 pixels: tiles of 6, not 12), then 2 vectors (the largest P
    for which both the weights and the broadcasts are reused)."""
    vectors = -(-Og // 16)
    return min(BLOCK_VECTORS,
               key=lambda nv: (-(-vectors // nv) * nv * -(-pixels // PIXELS[nv]) * PIXELS[nv], nv != 2))


#: Most bytes of one group's planes: a group of images is laid out and
#: computed together, so that a tile's pixels may come from two images
#: and small maps (7x7: 49 pixels a map) leave few tiles part-empty.
GROUP_BYTES = 1 << 20
#: Fewest multiply-adds of a batch smaller than the threads worth sharing.
PARALLEL_MACS = 1 << 22
#: The share of an ungrouped layer's (pixel, tap) pairs that read the
#: input, not the padding, at or below which each tile skips the
#: padding's taps (``border_classes``; ``_table`` checks that its tiles
#: then sum at most this share of the taps): 3x3 kernels on maps of 8x8
#: (0.84) and smaller, 7x7 (0.82); not 14x14 (0.93), where 32 x 512 x
#: 14x14 groups 32 took 1.08x (forward) and 1.22x (input gradient) the
#: time with them skipped. Same process, alternating, against every tap,
#: forward / input gradient: 16 x 512 x 2x2 0.81-0.89 / 0.86-0.91, 16 x
#: 256 x 4x4 0.88-0.95 / 0.91-0.96, 8 x 512 x 7x7 0.87-0.91 / 0.88-0.92,
#: 16 x 128 x 8x8 0.91-0.98 / 0.93-1.0. Grouped layers take every tap: 8 x
#: 512 x 7x7 groups 32 (16 channels a group, tiles of 24 pixels) took
#: 1.14-1.19x the time.
BORDER_CLASSES_BELOW = 0.9


def _convolve(x, w, flip, b, O, KH, KW, stride, padding, dilation, out_size, groups, caller, every=(1, 1)):
    """y (N, O, OH, OW) of the convolution of float32 x (N, C, H, W) by w
    (``flip``: by its flipped filters, see ``_pack``) plus b (O,) or None:
    with at least as many images as threads, each thread lays out and
    computes its own images, in groups of up to ``GROUP_BYTES``; with
    fewer, the batch is laid out once and the threads share its tasks.
    The weights are packed for the block size that suits a group's
    pixels (``vectors_a_block``)."""
    N, Cg = x.shape[0], x.shape[1] // groups
    OH, OW, HQ, WQ, plane_shape, tap_offsets = _layout_geometry(x, Cg, KH, KW, stride, padding, dilation, out_size,
                                                                caller, 1)
    image_rows, L = groups * plane_shape[0] * Cg, plane_shape[2]
    threads = thread_count()
    B = max(1, min(-(-N // threads), GROUP_BYTES // (image_rows * L * 4))) if N >= threads else N
    CB = 16 * vectors_a_block(O // groups, B * OH * OW)
    wp = numpy.empty((groups, -(-(O // groups) // CB), KH * KW, Cg, CB), numpy.float32)
    parallel_parts(_pack, wp.size, numpy.ascontiguousarray(w, dtype=numpy.float32).reshape(w.shape[0], -1), groups,
                   flip, wp)
    bias = numpy.zeros((groups, wp.shape[1] * CB), numpy.float32)
    if b is not None:
        bias[:, :O // groups] = numpy.asarray(b, dtype=numpy.float32).reshape(groups, O // groups)
    bias = bias.reshape(-1)
    below = BORDER_CLASSES_BELOW if groups == 1 or tuple(every) != (1, 1) else 0.0
    classes = border_classes(x.shape[2:], (KH, KW), stride, padding, dilation, (OH, OW), below, every)
    tap_weights = numpy.arange(KH * KW, dtype=numpy.intp) * (Cg * CB)
    y = numpy.empty((N, O, OH, OW), numpy.float32)
    rows = y.reshape(N, O, OH * OW)
    (sh, sw), ((ph, _), (pw, _)) = stride, padding
    if N >= threads:
        def work(mine):                 # one thread's images, in its own planes
            planes = numpy.empty((B, image_rows, L), numpy.float32)
            _images(x, Cg, sh, sw, ph, pw, HQ, WQ, planes, classes, tap_offsets, tap_weights, below, wp, bias, OH, OW,
                    rows, mine.start, mine.stop)
        run_in_parallel(work, [slice(run.start, run.stop) for run in split(range(N), threads)])
        return y
    planes = numpy.empty((N, image_rows, L), numpy.float32)
    parallel_parts(_layouts, planes.size, x, Cg, sh, sw, ph, pw, HQ, WQ, planes)
    P = PIXELS[CB // 16]
    table = _new_table(N * OH * OW, KH * KW, P)
    count = _table(N, image_rows * L, O * OH * OW, OH, OW, WQ, classes, tap_offsets, tap_weights, P, below, table)
    macs = O * Cg * KH * KW * OH * OW * N
    chunk = even_chunk(count, P, groups * wp.shape[1], parts_for(macs, PARALLEL_MACS)) // P
    parallel_parts(_batch_part, macs, planes, table, count, wp, bias, y.reshape(-1), O // groups, OH * OW, chunk,
                   worth=PARALLEL_MACS)
    return y


def conv2d(x, w, b, stride, padding, dilation, groups, out_size):
    """y (N, O, OH, OW) float32 = conv2d(x, w) + b for float32 x (N, C, H,
    W), w (O, Cg, KH, KW), b (O,) or None; ``padding`` ((top, bottom),
    (left, right)) with top == bottom and left == right, ``out_size`` at
    most the convolution's output (``implicit_gemm.conv2d``'s arguments)."""
    x = numpy.ascontiguousarray(x, dtype=numpy.float32)
    O, _, KH, KW = w.shape
    return _convolve(x, w, False, b, O, KH, KW, stride, padding, dilation, out_size, groups,
                     "implicit_channels.conv2d")


def flipped_padding(kernel_size, dilation, padding):
    """The padding ((top, bottom), (left, right)) of the full correlation
    of gy with the flipped filters, which is a stride-1 convolution's
    input gradient: the kernel's reach less the padding, per side (negative
    where the padding is past the reach)."""
    return tuple((d * (k - 1) - lo, d * (k - 1) - hi) for k, d, (lo, hi) in zip(kernel_size, dilation, padding))


def conv2d_grad_input(gy, w, stride, padding, dilation, groups, in_size):
    """gx (N, C, H, W) float32 for gy (N, O, OH, OW) of a convolution by w
    (O, Cg, KH, KW): the full correlation of gy with the flipped filters
    (``conv_strategy._flipped``), padded by the kernel's reach less the
    padding, symmetric, whose output is ``in_size``. At a stride s, of gy
    upsampled: s - 1 zeros after each pixel but the last of a row or
    column (and in_size's rows past the convolution's reach, a
    transposed convolution's output padding), whose zeros no tile reads
    (``border_classes``'s ``every``): each pixel of gx sums the taps of
    its phase only, the "sub-pixel" form of the transposed convolution.
    The flipped filters are packed from w directly (``_pack``)."""
    gy = numpy.ascontiguousarray(gy, dtype=numpy.float32)
    O, Cg, KH, KW = w.shape
    full = flipped_padding((KH, KW), dilation, padding)
    if any(s != 1 for s in stride):
        reach = [d * (k - 1) for k, d in zip((KH, KW), dilation)]
        up = [n - r + lo + hi for n, r, (lo, hi) in zip(in_size, reach, padding)]
        if any(u < (o - 1) * s + 1 for u, o, s in zip(up, gy.shape[2:], stride)):
            raise ValueError(f"implicit_channels.conv2d_grad_input: input {tuple(in_size)} is smaller than stride "
                             f"{tuple(stride)} gives output {tuple(gy.shape[2:])} with kernel {(KH, KW)}")
        upsampled = numpy.zeros(gy.shape[:2] + tuple(up), numpy.float32)
        upsampled[:, :, :(gy.shape[2] - 1) * stride[0] + 1:stride[0], :(gy.shape[3] - 1) * stride[1] + 1:stride[1]] = gy
        return _convolve(upsampled, w, True, None, Cg * groups, KH, KW, (1, 1), full, dilation, in_size, groups,
                         "implicit_channels.conv2d_grad_input", every=stride)
    return _convolve(gy, w, True, None, Cg * groups, KH, KW, stride, full, dilation, in_size, groups,
                     "implicit_channels.conv2d_grad_input")


def conv2d_grad_weight(x, gy, kernel_size, stride, padding, dilation, groups):
    """gw (O, Cg, KH, KW) float32 of ``conv2d`` for float32 x (N, C, H, W)
    and gy (N, O, OH, OW): the sum over images and output pixels of gy
    times the input each weight saw. The images are laid out once
    (``_planes``, all of them, ``_layouts``), gy channels last; then a
    tile of 16 output channels by WEIGHT_PAIRS (channel, tap) pairs keeps
    its sums in registers over a chunk of pixels, each step one vector of
    gy and WEIGHT_PAIRS inputs broadcast (``_weight_tile``)."""
    x = numpy.ascontiguousarray(x, dtype=numpy.float32)
    gy = numpy.ascontiguousarray(gy, dtype=numpy.float32)
    N, C = x.shape[:2]
    O, (KH, KW), T = gy.shape[1], kernel_size, kernel_size[0] * kernel_size[1]
    Cg, Og = C // groups, O // groups
    OH, OW, HQ, WQ, plane_shape, tap_offsets = _layout_geometry(x, Cg, KH, KW, stride, padding, dilation,
                                                                gy.shape[2:], "implicit_channels.conv2d_grad_weight",
                                                                1)
    image_rows, L = groups * plane_shape[0] * Cg, plane_shape[2]
    CB, KP = 16, WEIGHT_PAIRS
    OB, KB = -(-Og // CB), -(-(Cg * T) // KP)
    planes = numpy.empty((N, image_rows, L), numpy.float32)
    (sh, sw), ((ph, _), (pw, _)) = stride, padding
    parallel_parts(_layouts, planes.size, x, Cg, sh, sw, ph, pw, HQ, WQ, planes)
    gy_last = numpy.empty((N * OH * OW, groups, OB * CB), numpy.float32)
    parallel_parts(_channels_last, gy_last.size, gy.reshape(N, O, OH * OW), groups, gy_last)
    pixels = numpy.empty(N * OH * OW, numpy.intp)          # the tile reads no pixel past its run
    _pixel_offsets(N, image_rows * L, OH, OW, WQ, pixels)
    # pair k = c*T + t of group g reads channel c's plane at tap t's offset (pairs past Cg*T: any, dropped)
    pairs = numpy.arange(KB * KP)
    within = numpy.where(pairs < Cg * T, (pairs // T) * L + tap_offsets[pairs % T], 0)
    pair_offsets = (numpy.arange(groups)[:, None] * (plane_shape[0] * Cg * L) + within[None, :]).astype(numpy.intp)
    acc = numpy.zeros((groups, OB, KB, KP, CB), numpy.float32)
    parallel_parts(_weight_tasks, O * Cg * T * N * OH * OW, planes, pair_offsets, pixels, gy_last, acc,
                   worth=PARALLEL_MACS)
    gw = acc.reshape(groups, OB, KB * KP, CB)[:, :, :Cg * T].transpose(0, 1, 3, 2).reshape(groups, OB * CB, Cg * T)
    return numpy.ascontiguousarray(gw[:, :Og]).reshape(O, Cg, KH, KW)
