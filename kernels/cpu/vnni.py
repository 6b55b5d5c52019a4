"""Integer convolution on integer dot-product instructions (AVX-512 VNNI).

Notation as in ``quantized.py``: N batch, C input channels, G groups
(CG = C / G inputs and OG = O / G outputs per group), KH, KW kernel,
OH, OW output size, P = OH*OW pixels, K = CG*KH*KW the length of one dot
product; KQ = ceil(K / 4) quads of K.

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

The layout
----------
``vpdpbusd`` pairs the 4 bytes of lane j of one operand with the 4 bytes
of lane j of the other. Here the lanes are 16 pixels, and the 4 bytes of
a lane are 4 consecutive k of one pixel's dot product:

* activations ``xq`` (G, PT, KQ, TILE_P) uint32: ``xq[g, t, q, i]`` holds
  the bytes x_k, k = 4q .. 4q+3, of pixel p = t*TILE_P + i (an im2col,
  transposed into quads and cut into tiles of TILE_P pixels, so that one
  tile's whole dot product is one contiguous run of memory);
* weights ``wp`` (G, OB, KQ, NO, 4) int8, packed once per module: for a
  block of NO output channels, quad q of each channel's weights side by
  side. One 4-byte quad is broadcast to all 16 lanes.

A tile of NO outputs by TILE_P = 16*NPV pixels keeps its NO*NPV
accumulators (16 of the 32 zmm registers) in registers for the whole
K loop; each step loads NPV activation vectors and NO weight quads and
issues NO*NPV ``vpdpbusd``. Padding: K is padded to 4*KQ with zero
weights, the channels to OB*NO with zero weights (their sums are not
stored), and the pixels to whole tiles (their sums are not stored).

The zero-point algebra
----------------------
The weights are symmetric (zero point 0, torch's x86 / fbgemm qconfig),
so with x_zp the input's zero point::

    sum_k (x_k - x_zp) * w_k = sum_k x_k * w_k - x_zp * sum_k w_k

The instruction computes the first sum on the raw uint8 ``x_k`` (it
wants one operand unsigned: the activations); the second is a constant
per output channel, ``init[o] = -x_zp * sum_k w[o, k]``, which each
accumulator starts from. A pixel in the padding is stored as x_zp, the
integer of 0, so its (x_zp - x_zp) * w adds nothing, as in the reference.
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
import numba
import numpy
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.extending import intrinsic

from .loops import JIT, _share, u64

#: Output channels (NO) and 16-pixel vectors (NPV) of one register tile.
NO, NPV = 4, 4
TILE_P = 16 * NPV
#: Longest dot product whose int32 sums cannot overflow (see the docstring).
MAX_K = 1 << 15

_I8, _I32 = ir.IntType(8), ir.IntType(32)
_V16 = ir.VectorType(_I32, 16)


def available():
    """Whether this process can run the VNNI kernels: AVX-512 VNNI on the
    host CPU, and Numba compiling for the host CPU."""
    import llvmlite.binding
    from numba.core import config
    if config.CPU_NAME not in (None, "host") or config.CPU_FEATURES is not None:
        return False
    features = llvmlite.binding.get_host_cpu_features()
    return bool(features.get("avx512f")) and bool(features.get("avx512vnni"))


def _pointer(context, builder, array_type, array, offset, element):
    """A pointer to ``element`` (an LLVM type) at element ``offset`` of
    ``array``'s data."""
    data = cgutils.create_struct_proxy(array_type)(context, builder, value=array).data
    return builder.bitcast(builder.gep(data, [offset]), element.as_pointer())


def _splat(builder, scalar):
    """A 16-lane vector of the int32 ``scalar``."""
    vector = builder.insert_element(ir.Constant(_V16, ir.Undefined), scalar, ir.Constant(_I32, 0))
    return builder.shuffle_vector(vector, ir.Constant(_V16, ir.Undefined), ir.Constant(_V16, None))


@intrinsic
def _tile(typingctx, xq, x_offset, wp, w_offset, quads, out, out_offset, out_stride, pixels_left, outputs_left,
          init, init_offset):
    """out[o, p] = init[o] + sum_k x_k(p) * w_k(o) for the NO x TILE_P tile
    whose activations start at element ``x_offset`` of ``xq`` (uint32) and
    weights at byte ``w_offset`` of ``wp`` (int8), over ``quads`` quads of
    K; row o of the tile is stored at ``out_offset + o * out_stride`` of
    ``out`` (int32), only its first ``pixels_left`` pixels and only rows
    below ``outputs_left``; ``init`` (int32) starts at ``init_offset``."""
    dtypes = [getattr(array, "dtype", None) for array in (xq, wp, out, init)]
    if dtypes != [types.uint32, types.int8, types.int32, types.int32]:
        return None     # the IR below reads exactly these element types
    sig = types.void(xq, x_offset, wp, w_offset, quads, out, out_offset, out_stride, pixels_left, outputs_left,
                     init, init_offset)

    def codegen(context, builder, signature, args):
        kinds = signature.args
        (xq, x_offset, wp, w_offset, quads, out, out_offset, out_stride, pixels_left, outputs_left, init,
         init_offset) = [context.cast(builder, value, kind, types.intp) if isinstance(kind, types.Integer) else value
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
        x0 = _pointer(context, builder, kinds[0], xq, x_offset, _I8)
        w0 = _pointer(context, builder, kinds[2], wp, w_offset, _I8)
        with cgutils.for_range(builder, quads) as loop:
            xk = builder.gep(x0, [builder.mul(loop.index, const(TILE_P * 4))])
            wk = builder.bitcast(builder.gep(w0, [builder.mul(loop.index, const(NO * 4))]), _I32.as_pointer())
            pixels = [builder.load(builder.bitcast(builder.gep(xk, [const(64 * j)]), _V16.as_pointer()), align=1)
                      for j in range(NPV)]
            for i in range(NO):
                weights = _splat(builder, builder.load(builder.gep(wk, [const(i)]), align=1))
                for j in range(NPV):
                    builder.store(builder.call(dot, [builder.load(acc[i][j]), pixels[j], weights]), acc[i][j])
        out0 = _pointer(context, builder, kinds[5], out, out_offset, _I32)
        for i in range(NO):
            with builder.if_then(builder.icmp_signed(">", outputs_left, const(i))):
                row = builder.gep(out0, [builder.mul(out_stride, const(i))])
                for j in range(NPV):
                    sums = builder.load(acc[i][j])
                    left = builder.sub(pixels_left, const(16 * j))
                    dst = builder.gep(row, [const(16 * j)])
                    with builder.if_else(builder.icmp_signed(">=", left, const(16))) as (whole, part):
                        with whole:
                            builder.store(sums, builder.bitcast(dst, _V16.as_pointer()), align=4)
                        with part:
                            for lane in range(16):
                                with builder.if_then(builder.icmp_signed(">", left, const(lane))):
                                    builder.store(builder.extract_element(sums, ir.Constant(_I32, lane)),
                                                  builder.gep(dst, [const(lane)]))
        return context.get_dummy_value()
    return sig, codegen


@numba.njit(**JIT)
def _quads(x, x_zero_point, CG, sh, sw, ph, pw, dh, dw, KH, KW, OH, OW, xq, part, parts):
    """The ``xq`` layout (see the module docstring) of one image ``x``
    (C, H, W) uint8, pixels in the padding x_zero_point, k >= K zero; this
    part's share of the (group, quad) tasks. Each quad's 4 rows are laid
    out as plain im2col rows first (contiguous loads at stride 1, so the
    loops vectorize), then merged into one uint32 per pixel."""
    H, W = x.shape[1], x.shape[2]
    G, PT, KQ = xq.shape[0], xq.shape[1], xq.shape[2]
    K = CG * KH * KW
    zero = numpy.uint8(x_zero_point)
    rows = numpy.empty((4, PT * TILE_P), numpy.uint8)
    start, stop = _share(G * KQ, part, parts)
    for task in range(start, stop):
        g, q = task // KQ, task % KQ
        for b in range(4):
            row = rows[b]
            k = q * 4 + b
            if k >= K:
                row[:] = 0
                continue
            c = g * CG + k // (KH * KW)
            kh = (k // KW) % KH
            kw = k % KW
            off = kw * dw - pw
            lo = min(OW, max(0, (-off + sw - 1) // sw))        # first ow with iw >= 0
            hi = max(lo, min(OW, (W - 1 - off) // sw + 1))     # past the last ow with iw < W
            row[OH * OW:] = zero
            for oh in range(OH):
                ih = oh * sh - ph + kh * dh
                base = oh * OW
                if ih < 0 or ih >= H:
                    row[base:base + OW] = zero
                    continue
                src = x[c, ih]
                row[base:base + lo] = zero
                if sw == 1:
                    for ow in range(lo, hi):
                        row[u64(base + ow)] = src[u64(ow + off)]
                else:
                    for ow in range(lo, hi):
                        row[u64(base + ow)] = src[u64(ow * sw + off)]
                row[base + hi:base + OW] = zero
        for t in range(PT):
            dst = xq[g, t, q]
            for i in range(TILE_P):
                p = u64(t * TILE_P + i)
                # little-endian: byte b of the uint32 is k = 4q + b
                dst[u64(i)] = (numpy.uint32(rows[0, p]) | (numpy.uint32(rows[1, p]) << numpy.uint32(8))
                               | (numpy.uint32(rows[2, p]) << numpy.uint32(16))
                               | (numpy.uint32(rows[3, p]) << numpy.uint32(24)))


@numba.njit(**JIT)
def _tiles(xq, wp, init, out, OG, P, part, parts):
    """out (G*OG, P) int32 = the sums of one image, this part's share of
    the (pixel tile, group, channel block) tasks; consecutive tasks share a
    pixel tile, so its activations stay in the cache."""
    G, PT, KQ = xq.shape[0], xq.shape[1], xq.shape[2]
    OB = wp.shape[1]
    start, stop = _share(PT * G * OB, part, parts)
    for task in range(start, stop):
        t, r = task // (G * OB), task % (G * OB)
        g, b = r // OB, r % OB
        _tile(xq, (g * PT + t) * KQ * TILE_P, wp, (g * OB + b) * KQ * NO * 4, KQ,
              out, (g * OG + b * NO) * P + t * TILE_P, P, P - t * TILE_P, OG - b * NO, init, (g * OB + b) * NO)


def pack(w, groups):
    """(wp, weight sums): int8 weights ``w`` (O, CG, KH, KW) with zero
    point 0 in the ``wp`` layout (G, OB, KQ, NO, 4), and the int32 sums
    sum_k w[o, k] (G*OB*NO,) for the zero-point term (0 for padding
    channels)."""
    O = w.shape[0]
    OG, K = O // groups, w[0].size
    KQ, OB = -(-K // 4), -(-OG // NO)
    padded = numpy.zeros((groups, OB * NO, KQ * 4), numpy.int8)
    padded[:, :OG, :K] = w.reshape(groups, OG, K)
    sums = padded.sum(axis=2, dtype=numpy.int32).reshape(-1)
    wp = numpy.ascontiguousarray(padded.reshape(groups, OB, NO, KQ, 4).transpose(0, 1, 3, 2, 4))
    return wp, sums


def conv2d(x, x_zero_point, packed, OG, KH, KW, stride, padding, dilation):
    """int32 (N, G*OG, OH, OW) exact sums of (x - x_zero_point) * w for
    uint8 ``x`` (N, C, H, W) and ``packed`` = ``pack(w, G)``."""
    from .threads import parallel_parts
    wp, sums = packed
    N, C, H, W = x.shape
    G, KQ = wp.shape[0], wp.shape[2]
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    OH = (H + 2 * ph - dh * (KH - 1) - 1) // sh + 1
    OW = (W + 2 * pw - dw * (KW - 1) - 1) // sw + 1
    P = OH * OW
    init = numpy.int32(-x_zero_point) * sums
    xq = numpy.empty((G, -(-P // TILE_P), KQ, TILE_P), numpy.uint32)
    out = numpy.empty((N, G * OG, OH, OW), numpy.int32)
    for n in range(N):
        parallel_parts(_quads, xq.size * 4, x[n], x_zero_point, C // G, sh, sw, ph, pw, dh, dw, KH, KW, OH, OW, xq)
        parallel_parts(_tiles, G * OG * KQ * 4 * P, xq, wp, init, out[n].reshape(G * OG, P), OG, P)
    return out
