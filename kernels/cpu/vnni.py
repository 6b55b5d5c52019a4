"""Integer convolution on integer dot-product instructions (AVX-512 VNNI).

Notation as in ``quantized.py``: N batch, C input channels, G groups
(CG = C / G inputs and OG = O / G outputs per group), DH, DW dilation,
KH, KW kernel, SH, SW stride, PH, PW padding, OH, OW output size,
K = CG*KH*KW the length of one dot product; CQ = ceil(CG / 4) quads of
channels; NO x TILE_P the register tile (output channels x pixels).

Why integer dot products
------------------------
A quantized convolution is a GEMM of uint8 activations by int8 weights
with int32 sums. ``quantized.py`` does it with float32 GEMMs (exact, but
every product costs a float multiply-add on 32-bit lanes). AVX-512 VNNI's
``vpdpbusd`` works on the bytes themselves: each of its 16 int32 lanes
takes 4 unsigned bytes of one operand and 4 signed bytes of the other,
multiplies them pairwise and adds the 4 products to the lane's int32
accumulator: 64 multiply-adds per instruction where a float32 FMA does 16.
On znver4 a 64x56x56 3x3 layer's sums take 0.5-0.7 ms on one core this
way (about 200 G multiply-adds per second), against ~3 ms for the float32
GEMM path. Numba cannot emit the instruction from a plain loop (its
typing widens ``int32 * int32`` to int64, and LLVM then vectorizes with
64-bit multiplies), so ``_tile`` writes the LLVM IR itself, an
``@intrinsic`` that calls ``llvm.x86.avx512.vpdpbusd.512``.

The layout: an implicit GEMM
----------------------------
``vpdpbusd`` pairs the 4 bytes of lane j of one operand with the 4 bytes
of lane j of the other. Here the lanes are 16 output pixels, and the 4
bytes of a lane are 4 consecutive input channels at the pixel one tap
reads; the weights' matching 4 bytes (the 4 channels of one tap of one
output channel) are broadcast to all 16 lanes. So no im2col table is
built: each tap reads the image itself, laid out once per image as

* ``planes`` (G, SH*SW, CQ, L) uint32: the zero-point-padded image, cut
  into SH*SW *phases* (phase (a, b) holds the padded pixels
  (a + i*SH, b + j*SW)), each a flat HQ x WQ plane (HQ = ceil((H + 2PH) /
  SH), WQ likewise), one uint32 per pixel holding 4 channels' bytes.

Output pixel (oh, ow) sits at q = oh*WQ + ow of an *output grid* as wide
as a plane; tap (kh, kw) reads padded pixel (oh*SH + kh*DH, ow*SW +
kw*DW), which is pixel q + (kh*DH // SH)*WQ + kw*DW // SW of phase
((kh*DH) % SH, (kw*DW) % SW). One offset per tap, the same for every
pixel: 16 consecutive grid pixels read 16 consecutive uint32, one vector
load, at every stride and dilation. The grid's columns ow >= OW (WQ - OW
of them, 2 of 58 in a 56x56 3x3 layer) are computed and dropped.

* weights ``wp`` (G, OB, KH*KW, CQ, NO, 4) int8, packed once per module:
  for a block of NO output channels, tap by tap and quad by quad, the NO
  channels' 4 bytes side by side (zero for the padding channels past CG
  and past OG).

A tile of NO output channels by TILE_P = 16*NPV grid pixels keeps its
NO*NPV accumulators (16 of the 32 zmm registers) in registers through
all KH*KW*CQ steps; each step loads NPV activation vectors and NO weight
quads and issues NO*NPV ``vpdpbusd``. Each tile is stored to a small
buffer whose valid columns the same task then copies to the output (or,
where the grid is the output, as in a 1x1 conv, straight to the output):
int32 sums, or, when the caller passes the requantization constants, the
uint8 outputs, requantized in the registers at the end of each tile (as
fbgemm does), so that a quantized model's int32 sums never reach memory.

Threads: a conv is one parallel region at most (``parallel_parts`` over
the tiles; the layout, a few us, runs on the calling thread), and only
past PARALLEL_MACS multiply-adds: a hand-off to another thread costs
~25-35 us, more than a small layer's whole work.

The zero-point algebra
----------------------
The weights are symmetric (zero point 0, torch's x86 / fbgemm qconfig),
so with x_zp the input's zero point::

    sum_k (x_k - x_zp) * w_k = sum_k x_k * w_k - x_zp * sum_k w_k

The instruction computes the first sum on the raw uint8 ``x_k`` (it
wants one operand unsigned: the activations); the second is a constant
per output channel, ``init[o] = -x_zp * sum_k w[o, k]``, which each
accumulator starts from. A pixel in the padding is stored as x_zp, the
integer of 0, so its (x_zp - x_zp) * w adds nothing, as in the reference;
a padding channel has weight 0.
Weights with nonzero zero points (per-tensor affine) stay on the float32
path of ``quantized.py``.

Why the sums are exact
----------------------
Each product u8 * s8 lies in [-32640, 32385] and is formed exactly
(``vpdpbusd`` widens to 16 bits, then adds the four products to the
32-bit lane without saturation). The running sum is at most
255 * 128 * K plus |init| <= 255 * 128 * K in magnitude, below 2**31
while K <= MAX_K = 32768; longer dot products use the float32 path.

Only where the CPU has the instruction
--------------------------------------
``available()`` checks the host's features (llvmlite's
``get_host_cpu_features``) and that Numba compiles for the host CPU
(``NUMBA_CPU_NAME`` unset): the kernels are compiled on their first call
only, so on any other CPU they are never compiled, and ``quantized.py``
keeps its float32 GEMMs.
"""
import functools
import math
import threading

import numba
import numpy
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.extending import intrinsic

from .loops import JIT, _share, u64
from .threads import parallel_parts

#: Output channels (NO) and 16-pixel vectors (NPV) of one register tile.
NO, NPV = 4, 4
TILE_P = 16 * NPV
#: Longest dot product whose int32 sums cannot overflow (see the docstring).
MAX_K = 1 << 15

_I8, _I32, _F32 = ir.IntType(8), ir.IntType(32), ir.FloatType()
_V16, _F16, _B16 = ir.VectorType(_I32, 16), ir.VectorType(_F32, 16), ir.VectorType(_I8, 16)


@functools.cache
def available():
    """Whether this process can run the VNNI kernels: AVX-512 VNNI on the
    host CPU, and Numba compiling for the host CPU (and compiling at all:
    under NUMBA_DISABLE_JIT the intrinsic cannot run as Python)."""
    import llvmlite.binding
    from numba.core import config
    if config.DISABLE_JIT or config.CPU_NAME not in (None, "host") or config.CPU_FEATURES is not None:
        return False
    features = llvmlite.binding.get_host_cpu_features()
    return bool(features.get("avx512f")) and bool(features.get("avx512vnni"))


def _pointer(context, builder, array_type, array, offset, element):
    """A pointer to ``element`` (an LLVM type) at element ``offset`` of
    ``array``'s data."""
    data = cgutils.create_struct_proxy(array_type)(context, builder, value=array).data
    return builder.bitcast(builder.gep(data, [offset]), element.as_pointer())


def _splat(builder, scalar, kind=_V16):
    """A vector (of type ``kind``, 16 lanes unless said) of ``scalar``."""
    vector = builder.insert_element(ir.Constant(kind, ir.Undefined), scalar, ir.Constant(_I32, 0))
    lane_0 = ir.Constant(ir.VectorType(_I32, kind.count), None)        # every lane takes lane 0
    return builder.shuffle_vector(vector, ir.Constant(kind, ir.Undefined), lane_0)


def _requantized(builder, sums, offset, multiplier, zero_point, low):
    """The uint8 vector of ``quantized._requantized`` on int32 ``sums``,
    the same float32 steps in the same order: (float32(sums) + offset) *
    multiplier, rounded half to even, + zero_point, clamped to [low, 255]
    (the other arguments float32 vectors)."""
    rint = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_F16, [_F16]), "llvm.rint.v16f32")
    y = builder.fmul(builder.fadd(builder.sitofp(sums, _F16), offset), multiplier)
    y = builder.fadd(builder.call(rint, [y]), zero_point)
    y = builder.select(builder.fcmp_ordered("<", y, low), low, y)
    high = _splat(builder, ir.Constant(_F32, 255.0), _F16)
    y = builder.select(builder.fcmp_ordered(">", y, high), high, y)
    return builder.fptoui(y, _B16)


def tile_loop(context, builder, kinds, args, acc, element, vector, step):
    """The register tile's loop (module docstring), as LLVM IR: for each
    tap t and channel (or quad) c, npv = len(acc[0]) ``vector``s of pixels
    (NPV here, ``implicit_gemm.NPV`` there) loaded from
    planes[x_offset + tap_offsets[t] + c * plane_stride + lanes * j] and NO
    weights wp[w_offset + (t * channels + c) * NO + i] splat, then
    acc[i][j] = step(acc[i][j], pixels[j], weights[i]). ``args`` are the
    intrinsic's (planes, x_offset, tap_offsets, channels, plane_stride, wp,
    w_offset), cast to intp, at positions 0-6 of ``kinds``; ``element``
    is the arrays' LLVM element type. ``implicit_gemm.py`` runs the same
    loop on float32 multiply-adds."""
    planes, x_offset, tap_offsets, channels, plane_stride, wp, w_offset = args
    intp = context.get_value_type(types.intp)
    npv = len(acc[0])

    def const(n):
        return ir.Constant(intp, n)
    x0 = _pointer(context, builder, kinds[0], planes, x_offset, element)
    tap_start = _pointer(context, builder, kinds[2], tap_offsets, const(0), intp)
    w0 = _pointer(context, builder, kinds[5], wp, w_offset, element)
    taps = cgutils.create_struct_proxy(kinds[2])(context, builder, value=tap_offsets).nitems
    with cgutils.for_range(builder, taps) as tap:
        xt = builder.gep(x0, [builder.load(builder.gep(tap_start, [tap.index]))])
        wt = builder.gep(w0, [builder.mul(builder.mul(tap.index, channels), const(NO))])
        with cgutils.for_range(builder, channels) as channel:
            xk = builder.gep(xt, [builder.mul(channel.index, plane_stride)])
            wk = builder.gep(wt, [builder.mul(channel.index, const(NO))])
            pixels = [builder.load(builder.bitcast(builder.gep(xk, [const(vector.count * j)]), vector.as_pointer()),
                                   align=4)
                      for j in range(npv)]
            for i in range(NO):
                weights = _splat(builder, builder.load(builder.gep(wk, [const(i)]), align=4), vector)
                for j in range(npv):
                    builder.store(step(builder.load(acc[i][j]), pixels[j], weights), acc[i][j])


@intrinsic
def _tile(typingctx, planes, x_offset, tap_offsets, quads, plane_stride, wp, w_offset, out, out_offset, out_stride,
          init, init_offset, offsets, multipliers, zero_point, low):
    """out[o, q] = init[o] + the sum over taps t and quads c of the 4-byte
    dot products planes[x_offset + tap_offsets[t] + c * plane_stride + q]
    . wp[w_offset + ((t * quads + c) * NO + o) * 4 ...], for the NO x TILE_P
    tile: q < TILE_P pixels of the output grid, o < NO channels; row o is
    stored at ``out_offset + o * out_stride`` of ``out``. An int32 ``out``
    gets the sums; a uint8 ``out`` their requantization (``_requantized``,
    channel o's ``offsets`` and ``multipliers`` read at ``init_offset``,
    float32 ``zero_point`` and ``low``), made in the registers."""
    dtypes = [getattr(array, "dtype", None) for array in (planes, tap_offsets, wp, init, offsets, multipliers)]
    if (dtypes != [types.uint32, types.intp, types.int8, types.int32, types.float32, types.float32]
            or getattr(out, "dtype", None) not in (types.int32, types.uint8)):
        return None     # the IR below reads exactly these element types
    requantize = out.dtype == types.uint8
    sig = types.void(planes, x_offset, tap_offsets, quads, plane_stride, wp, w_offset, out, out_offset, out_stride,
                     init, init_offset, offsets, multipliers, zero_point, low)

    def codegen(context, builder, signature, args):
        kinds = signature.args
        (planes, x_offset, tap_offsets, quads, plane_stride, wp, w_offset, out, out_offset, out_stride, init,
         init_offset, offsets, multipliers, zero_point, low) = [
            context.cast(builder, value, kind, types.intp) if isinstance(kind, types.Integer) else value
            for value, kind in zip(args, kinds)]
        intp = context.get_value_type(types.intp)

        def const(n):
            return ir.Constant(intp, n)
        dot = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V16, [_V16, _V16, _V16]),
                                             "llvm.x86.avx512.vpdpbusd.512")
        # accumulators in stack slots: LLVM promotes them to registers
        init_row = _pointer(context, builder, kinds[10], init, init_offset, _I32)
        acc = []
        for i in range(NO):
            start = _splat(builder, builder.load(builder.gep(init_row, [const(i)])))
            acc.append([cgutils.alloca_once_value(builder, start) for _ in range(NPV)])
        tile_loop(context, builder, kinds, (planes, x_offset, tap_offsets, quads, plane_stride, wp, w_offset), acc,
                  _I32, _V16, lambda sums, pixels, weights: builder.call(dot, [sums, pixels, weights]))
        out0 = _pointer(context, builder, kinds[7], out, out_offset, _I8 if requantize else _I32)
        if requantize:
            offset_row = _pointer(context, builder, kinds[12], offsets, init_offset, _F32)
            multiplier_row = _pointer(context, builder, kinds[13], multipliers, init_offset, _F32)
            zero_point, low = _splat(builder, zero_point, _F16), _splat(builder, low, _F16)
        for i in range(NO):
            row = builder.gep(out0, [builder.mul(out_stride, const(i))])
            if requantize:
                offset = _splat(builder, builder.load(builder.gep(offset_row, [const(i)])), _F16)
                multiplier = _splat(builder, builder.load(builder.gep(multiplier_row, [const(i)])), _F16)
            for j in range(NPV):
                dst = builder.gep(row, [const(16 * j)])
                if requantize:
                    values = _requantized(builder, builder.load(acc[i][j]), offset, multiplier, zero_point, low)
                    builder.store(values, builder.bitcast(dst, _B16.as_pointer()), align=1)
                else:
                    builder.store(builder.load(acc[i][j]), builder.bitcast(dst, _V16.as_pointer()), align=4)
        return context.get_dummy_value()
    return sig, codegen


@numba.njit(**JIT)
def _planes(x, x_zero_point, CG, sh, sw, ph, pw, planes, part, parts):
    """The ``planes`` layout (see the module docstring) of one image ``x``
    (C, H, W) uint8: planes[g, a*sw + b, c, i*WQ + j] holds the bytes of
    channels g*CG + 4c + (0..3) at padded position (a + i*sh, b + j*sw),
    x_zero_point where that is padding, past the group's channels or past
    the plane's HQ*WQ pixels; this part's share of the (group, phase,
    quad) tasks."""
    C, H, W = x.shape
    G, S, CQ, L = planes.shape
    HQ, WQ = -(-(H + 2 * ph) // sh), -(-(W + 2 * pw) // sw)
    z = numpy.uint32(x_zero_point)
    zeros = z | (z << numpy.uint32(8)) | (z << numpy.uint32(16)) | (z << numpy.uint32(24))
    start, stop = _share(G * S * CQ, part, parts)
    for task in range(start, stop):
        g, r = task // (S * CQ), task % (S * CQ)
        phase, c = r // CQ, r % CQ
        a, b = phase // sw, phase % sw
        dst = planes[g, phase, c]
        dst[HQ * WQ:] = zeros
        c0 = g * CG + 4 * c
        count = min(4, CG - 4 * c)
        off = b - pw
        lo = min(WQ, max(0, (-off + sw - 1) // sw))        # first j with iw >= 0
        hi = max(lo, min(WQ, (W - 1 - off) // sw + 1))     # past the last j with iw < W
        for i in range(HQ):
            ih = a + i * sh - ph
            base = i * WQ
            if ih < 0 or ih >= H:
                dst[base:base + WQ] = zeros
                continue
            dst[base:base + lo] = zeros
            dst[base + hi:base + WQ] = zeros
            if count == 4:
                r0, r1, r2, r3 = x[c0, ih], x[c0 + 1, ih], x[c0 + 2, ih], x[c0 + 3, ih]
                # little-endian: byte t of the uint32 is channel 4c + t
                for j in range(lo, hi):
                    k = u64(j * sw + off)
                    dst[u64(base + j)] = (numpy.uint32(r0[k]) | (numpy.uint32(r1[k]) << numpy.uint32(8))
                                          | (numpy.uint32(r2[k]) << numpy.uint32(16))
                                          | (numpy.uint32(r3[k]) << numpy.uint32(24)))
            else:
                for j in range(lo, hi):
                    k = u64(j * sw + off)
                    value = numpy.uint32(0)
                    for t in range(4):
                        byte = numpy.uint32(x[c0 + t, ih, k]) if t < count else z
                        value |= byte << numpy.uint32(8 * t)
                    dst[u64(base + j)] = value


@numba.njit(inline="always")
def copy_out(tile, width, count, q0, q1, WQ, OW, out, row0):
    """out[row0 + i, the output pixels of grid pixels q0 <= q < q1] =
    tile[i * width + q - q0] for i < count: a tile's pixels on the
    output (grid columns ow < OW). ``implicit_gemm.py`` copies its tiles
    out the same way."""
    q = q0
    while q < q1:
        oh = q // WQ
        ow = q - oh * WQ
        end = min(q1, oh * WQ + OW)         # past this grid row's last output pixel in the tile
        src, at = q - q0, oh * OW + ow
        for i in range(count):
            # unsigned indices: no wraparound test, the copy vectorizes
            for k in range(u64(end - q)):
                out[u64(row0 + i), u64(at) + k] = tile[u64(i * width + src) + k]
        q = (oh + 1) * WQ


@numba.njit(**JIT)
def _tiles(planes, tap_offsets, wp, init, offsets, multipliers, zero_point, low, WQ, OW, out, part, parts):
    """out (G*OG, OH*OW) = the sums of one image (int32 ``out``) or their
    requantization (uint8 ``out``; see ``_tile``), this part's share of the
    (pixel tile, group, channel block) tasks; consecutive tasks share a
    pixel tile, so its activations stay in the cache. A tile lands in a
    small buffer (NO x TILE_P, in L1), whose pixels on the output (grid
    columns ow < OW) are copied out at once, or, where the grid is the
    output, straight in the output: the output is written once, by the
    task (and thread) that computed it."""
    G, S, CQ, L = planes.shape
    OB, T = wp.shape[1], wp.shape[2]
    O, OHW = out.shape
    OG = O // G
    OH = OHW // OW
    PT = -(-OH * WQ // TILE_P)
    tile = numpy.empty(NO * TILE_P, out.dtype)
    start, stop = _share(PT * G * OB, part, parts)
    for task in range(start, stop):
        t, r = task // (G * OB), task % (G * OB)
        g, b = r // OB, r % OB
        q0, q1 = t * TILE_P, min((t + 1) * TILE_P, OH * WQ)
        row0, count = g * OG + b * NO, min(NO, OG - b * NO)
        x_at, w_at, c_at = g * S * CQ * L + t * TILE_P, (g * OB + b) * T * CQ * NO * 4, (g * OB + b) * NO
        if WQ == OW and q1 - q0 == TILE_P and count == NO:
            # the grid is the output (no dropped columns: a 1x1 conv, say) and
            # the tile lies inside it: straight into the output rows
            _tile(planes, x_at, tap_offsets, CQ, L, wp, w_at, out, row0 * OHW + q0, OHW, init, c_at, offsets,
                  multipliers, zero_point, low)
            continue
        _tile(planes, x_at, tap_offsets, CQ, L, wp, w_at, tile, 0, TILE_P, init, c_at, offsets, multipliers,
              zero_point, low)
        copy_out(tile, TILE_P, count, q0, q1, WQ, OW, out, row0)


def pack(w, groups):
    """(wp, weight sums): int8 weights ``w`` (O, CG, KH, KW) with zero
    point 0 in the ``wp`` layout (G, OB, KH*KW, CQ, NO, 4), zero for the
    padding channels, and the int32 sums sum_k w[o, k] (G*OB*NO,) for the
    zero-point term."""
    O, CG, KH, KW = w.shape
    OG = O // groups
    CQ, OB = -(-CG // 4), -(-OG // NO)
    padded = numpy.zeros((groups, OB * NO, KH * KW, CQ * 4), numpy.int8)
    padded[:, :OG, :, :CG] = w.reshape(groups, OG, CG, KH * KW).transpose(0, 1, 3, 2)
    sums = padded.sum(axis=(2, 3), dtype=numpy.int32).reshape(-1)
    wp = padded.reshape(groups, OB, NO, KH * KW, CQ, 4).transpose(0, 1, 3, 4, 2, 5)
    return numpy.ascontiguousarray(wp), sums


_buffers = threading.local()


def _scratch(name, shape, dtype):
    """An uninitialized array of ``shape`` on this thread's scratch buffer
    ``name``, kept between calls and grown as needed: a fresh array of a
    few MB costs a page fault per 4 KB page every time the allocator has
    handed the memory back to the system, which took longer than the
    stem's whole dot products. The buffers live as long as the thread
    (at most the largest layer's size each)."""
    size = math.prod(shape) * numpy.dtype(dtype).itemsize
    buffer = getattr(_buffers, name, None)
    if buffer is None or buffer.size < size:
        buffer = numpy.empty(size, numpy.uint8)
        setattr(_buffers, name, buffer)
    return buffer[:size].view(dtype).reshape(shape)


#: Fewest multiply-adds of one image's conv worth sharing among threads:
#: waking a second thread and waiting for it costs ~20-50 us (more when
#: another process holds the other core), ~5-10 M multiply-adds of
#: ``vpdpbusd`` work; below this the conv runs on the calling thread.
PARALLEL_MACS = 1 << 24


@functools.lru_cache(maxsize=1024)
def _geometry(C, H, W, CQ, KH, KW, stride, padding, dilation, tile=TILE_P):
    """(OH, OW, WQ, planes shape (S, CQ, L) without G, tap offsets) of a
    conv's layout (module docstring), the same for every call of a layer
    and so computed once; the planes are long enough for tiles of
    ``tile`` grid pixels."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    OH = (H + 2 * ph - dh * (KH - 1) - 1) // sh + 1
    OW = (W + 2 * pw - dw * (KW - 1) - 1) // sw + 1
    HQ, WQ = -(-(H + 2 * ph) // sh), -(-(W + 2 * pw) // sw)
    GP = -(-OH * WQ // tile) * tile
    # a tile reads up to the last tap's offset past its last grid pixel
    L = max(HQ * WQ, GP + (KH - 1) * dh // sh * WQ + (KW - 1) * dw // sw)
    tap_offsets = numpy.array([((kh * dh % sh) * sw + kw * dw % sw) * CQ * L + kh * dh // sh * WQ + kw * dw // sw
                               for kh in range(KH) for kw in range(KW)], numpy.intp)
    tap_offsets.flags.writeable = False
    return OH, OW, WQ, (sh * sw, CQ, L), tap_offsets


def conv2d(x, x_zero_point, packed, OG, KH, KW, stride, padding, dilation, requant=None):
    """int32 (N, G*OG, OH, OW) exact sums of (x - x_zero_point) * w for
    uint8 ``x`` (N, C, H, W) and ``packed`` = ``pack(w, G)``; with
    ``requant`` (offsets, multipliers, zero_point, low), their uint8
    requantization (``quantized.requantize``'s formula), made in the
    registers of each tile: no int32 sums are stored at all.

    Per image, one parallel region at most: the layout (``_planes``, a few
    us even for the largest layer) runs on the calling thread, then the
    tiles, each copied to the output by the task that made it, are shared
    among the threads only past PARALLEL_MACS multiply-adds."""
    wp, sums = packed
    N, C, H, W = x.shape
    G, OB, T, CQ = wp.shape[:4]
    OH, OW, WQ, plane_shape, tap_offsets = _geometry(C, H, W, CQ, KH, KW, tuple(stride), tuple(padding),
                                                     tuple(dilation))
    init = numpy.int32(-x_zero_point) * sums
    planes = _scratch("planes", (G,) + plane_shape, numpy.uint32)
    zero_point = low = numpy.float32(0)
    if requant is None:
        offsets = multipliers = numpy.zeros(G * OB * NO, numpy.float32)
    elif OG == OB * NO:
        # the grid rows are the output channels: the constants as they are
        offsets = requant[0].astype(numpy.float32, copy=False)
        multipliers = requant[1].astype(numpy.float32, copy=False)
    else:
        constants = numpy.zeros((2, G, OB * NO), numpy.float32)     # per grid row; 0 for the padding channels
        constants[0, :, :OG] = requant[0].reshape(G, OG)
        constants[1, :, :OG] = requant[1].reshape(G, OG)
        offsets, multipliers = constants[0].reshape(-1), constants[1].reshape(-1)
    if requant is not None:
        zero_point, low = numpy.float32(requant[2]), numpy.float32(requant[3])
    out = numpy.empty((N, G * OG, OH, OW), numpy.int32 if requant is None else numpy.uint8)
    macs = G * OB * NO * T * CQ * 4 * OH * OW
    rows = out.reshape(N, G * OG, OH * OW)
    for n in range(N):
        _planes(x[n], x_zero_point, C // G, stride[0], stride[1], padding[0], padding[1], planes, 0, 1)
        parallel_parts(_tiles, macs, planes, tap_offsets, wp, init, offsets, multipliers, zero_point, low, WQ, OW,
                       rows[n], worth=PARALLEL_MACS)
    return out
