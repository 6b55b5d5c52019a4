"""How a convolution is computed: nine paths, one strategy for every backend.

Notation as in conv.py: N batch, C input channels, H, W input size,
O output channels, KH, KW kernel size, OH, OW output size, G groups,
Cg = C / G, Og = O / G, K = Cg * KH * KW taps per output value,
L = OH * OW output pixels per image. The same functions take any number
of spatial dims (3-D: D, H, W input, KD, KH, KW kernel, OD, OH, OW
output; 1-D: one dim), each geometry argument one value per dim:

    conv_forward(x, w, b, stride, padding, dilation, groups, out_size)      y  (N, O, OH, OW)
    conv_grad_input(gy, w, stride, padding, dilation, groups, in_size)      gx (N, C, H, W)
    conv_grad_weight(x, gy, kernel_size, stride, padding, dilation, groups) gw (O, Cg, KH, KW)

The convolution ops (conv.py) call the first and the third, the
transposed convolution (the input gradient) the second. A 1-D
convolution runs as a 2-D one of height 1, so it takes every 2-D path;
the depthwise and Winograd kernels are 2-D only, and a 3-D convolution
takes the dense, frames, pointwise or im2col path. A product with an
empty operand (N, C, O, H * W or OH * OW zero) needs no kernel: every
output is a sum of no terms, zero (plus the bias), and each direction
returns that before choosing a path, the same on every backend.
Otherwise each takes the first of these paths that applies
(``conv_path``):

depthwise (G == C)
    Each output channel reads one input channel, so a GEMM would multiply
    (Og, KH*KW) by (KH*KW, L) matrices: a few multiply-adds per entry of
    a column matrix that costs a copy of x per tap. The CPU and the GPU
    compute it directly (the CPU's float32 forward 16 channels a vector,
    ``kernels/cpu/depthwise_lanes.py``, where it has AVX-512 or AVX2); NumPy's
    version is the im2col path below.
implicit (float32, 2-D, symmetric padding, not 1x1; all three directions)
    With few taps a group, Kg = Cg*KH*KW, each column of im2col's matrix
    is used by few multiply-adds, so building it is most of the time. The
    CPU computes such a convolution from the padded image itself
    (``kernels/cpu/implicit_gemm.py``): the forward 16 output pixels a
    vector and 4 output channels a tile in registers, the weight
    gradient 4 output channels by 6 (tap, channel) pairs a tile summed
    over all pixels. It takes an ungrouped convolution of at most
    ``IMPLICIT_MAX_TAPS`` taps (the RGB stem, 16-channel layers; the
    weight gradient at stride 2 and up only) or a 1-D one of rows of
    ``IMPLICIT_MIN_ROW`` and up (forward and input gradient), and a grouped one of at
    most ``IMPLICIT_MAX_GROUP_CHANNELS`` channels a group at stride 1 (the
    weight gradient also at stride 2 and up, from
    ``IMPLICIT_MIN_STRIDED_GRAD_WEIGHT_CHANNELS`` channels a group) on maps
    of ``IMPLICIT_MIN_GROUPED_SIZE`` and up, in a batch of
    ``IMPLICIT_MIN_IMAGES`` or more (a lone image keeps the "grouped"
    path, whose threads share one image better). The input gradient at
    stride 1 is the forward kernel's convolution of gy with the flipped
    filters (as for "grouped" below), so there Cg is Og. Only the CPU backend has this path, and
    takes it only where the CPU has AVX-512 (32 vector registers: the
    tiles' accumulators stay in them); on an AVX2 CPU (16 registers, the
    tiles 12 vectors of 8 floats) fewer of them
    (``IMPLICIT_AVX2_GROUP_CHANNELS``).
grouped (1 < G < C, Cg <= DIRECT_MAX_GROUP_CHANNELS, 2-D, not 1x1; forward)
    With few channels a group, each group's GEMM is a thin (Og, Cg*KH*KW)
    product that reads its column matrix (or Winograd's transformed
    tiles) a few times only: the cost is building them. The CPU sums the
    taps directly instead, as for depthwise (``kernels/cpu/depthwise.py``).
    A 1x1 kernel has no column matrix to build: it stays pointwise. The
    input gradient of a stride-1 one with few output channels a group
    (``DIRECT_MAX_GRAD_INPUT_GROUP_CHANNELS``) is the same kernel's
    forward of gy with the flipped filters, and its weight gradient with
    few input channels a group (``DIRECT_MAX_GRAD_WEIGHT_GROUP_CHANNELS``)
    is summed directly too. Only the CPU backend has this path.
dense (one output pixel per image, no padding, G == 1)
    The kernel's one window of each image is a row of the column matrix:
    the convolution is a linear layer, one GEMM each way.
frames (3-D, in-plane 3x3 slices that Winograd would take)
    A 3-D convolution is a sum over its depth taps of 2-D convolutions of
    the clips' frames (``frames_forward``), each of which takes this
    strategy's 2-D paths, Winograd included. Only the CPU backend has
    Winograd, so only it takes this path.
winograd (3x3 or 5x5, stride 1, no dilation, many output tiles)
    Winograd's F(m x m, 3x3) multiplies 2.25x (m = 2) or 4x (m = 4) less
    than the GEMM, F(2x2, 5x5) 2.8x less, for the cost of transforming
    inputs, filters and outputs (``kernels/cpu/winograd.py``). The
    transforms are per channel, so a grouped convolution of at least 16
    channels a group takes it too, as G products per transformed
    position. Only the CPU backend has it; on the others this path is
    skipped.
pointwise (1x1 kernel, no padding)
    x itself, subsampled by the stride, is the column matrix: GEMMs only.
im2col (everything else)
    The column matrix, then one GEMM per image and group, as conv.py
    derives it: the NumPy reference below. The CPU backend does the same
    a tile of columns at a time (``kernels/cpu/conv.py``), so that each
    tile is still in cache when the GEMM reads it.

Then one more rule: where the path chosen is im2col, or (forward and
input gradient) grouped or implicit for a grouped convolution, or
Winograd for a 5x5 layer of few channels and a small output
(``WINOGRAD_5X5_YIELDS``), on AVX2 for an input gradient of few gy
channels and pixels (``WINOGRAD_GRAD_INPUT_YIELDS``), on AVX-512 for a
3x3 layer of few output channels or a small map of few channels
(``WINOGRAD_AVX512_YIELDS``), "channels" takes its place
if it applies
(``_channels``):

channels (float32, 2-D, symmetric padding, not 1x1; forward, gradients at stride 1, strided input gradient)
    The implicit GEMM the other way round: 16 output *channels* a vector
    and 24 accumulators a tile, 6 on AVX2 (``kernels/cpu/implicit_channels.py``:
    NV vectors of channels by P pixels, each step NV weight vectors times
    P input values broadcast), oneDNN's direct-convolution tile. With at
    least ``CHANNELS_MIN_GROUP_OUTPUTS`` output channels a group every
    lane does work, and the tile runs at the core's peak: no column
    matrix, the weights packed once a call. It takes an ungrouped
    convolution of at least ``CHANNELS_MIN_PIXELS`` output pixels in all
    (the forward from ``CHANNELS_MIN_FORWARD_PIXELS``)
    (strided and dilated 3x3, 1x7 / 7x1, small maps in a batch) and a
    grouped one in a batch; the input gradient at stride 1 is the same
    kernel's convolution of gy with the flipped filters (at a stride, on
    AVX-512, where each kernel side is at least twice the stride, that of
    gy upsampled, ``CHANNELS_STRIDED_GRAD_INPUT_MIN_TAPS``) (packed from w
    directly), and the weight gradient at stride 1 a tile of 16 output
    channels by 24 (channel, tap) pairs summed over all the pixels, gy
    laid out channels last. Winograd keeps the other 3x3 and 5x5 layers
    it takes (it does up to 4x fewer multiply-adds), the pointwise
    GEMMs the 1x1 ones, the "implicit" path the ungrouped layers of few
    taps. Only the CPU backend has this path, and takes it only where the
    CPU has AVX-512, or AVX2 for a grouped convolution or an ungrouped one
    of at most ``CHANNELS_AVX2_MAX_DENSE_OUTPUTS`` output channels (the
    input gradient's: C, or at most ``CHANNELS_AVX2_MAX_GRAD_INPUT_DEPTH``
    of gy's) and more than ``IMPLICIT_MAX_TAPS`` taps.

Primitives
----------
Every step that some backend computes its own way is a primitive of the
kernel registry (``kernels/registry.py``), looked up per call, so
``set_backend`` decides what runs:

    depthwise_conv2d_*   the depthwise path    (NumPy: im2col_gemm_*)
    grouped_conv2d_forward, grouped_conv2d_grad_weight   (Numba only)
    implicit_conv2d, implicit_conv2d_grad_weight   the implicit path (Numba
                         only; conv_register_tiles says which register tiles
                         run at full speed on this CPU: "avx512", "avx2", None)
    channels_conv2d, channels_conv2d_grad_input, channels_conv2d_grad_weight
                         the channels path (Numba only; at full speed where
                         implicit_conv2d is)
    winograd_conv2d, winograd_conv2d_grad_weight   (Numba only)
    batched_matmul, batched_matmul_sum            the pointwise GEMMs
    im2col_gemm_*        the im2col path, which calls im2col / col2im

where * is forward, grad_input and grad_weight, with the arguments of
the conv_* function of the same direction. The NumPy versions are the
functions here, written over ``xp`` so that CuPy arrays run them too; the
Numba versions live in ``kernels/cpu/``, the CUDA ones in
``kernels/cuda/`` (registered there). The rest, the dense GEMMs and the
reshapes and slices around the primitives, is plain ``xp`` code, the same
on every backend.
"""
import math

from minicnn.kernels import registry

from ..backend import get_array_module
from . import activation, im2col  # noqa: F401  (register clamp_into, and the im2col and col2im primitives)

#: Fewest 2x2 output tiles, N * ceil(OH/2) * ceil(OW/2), for which
#: Winograd beats im2col + GEMM: the filter transform (a*a * O * C values)
#: must be spread over enough tiles. Measured for the CPU kernels, the
#: only ones with Winograd: 16 x 128 x 8x8 (256 tiles) is im2col's,
#: 8 x 128 x 14x14 (392) Winograd's.
WINOGRAD_MIN_TILES = 320
#: ... or fewer, down to one image, where each image has this many: its
#: rows of tiles are long (little spent on the spare tile a row) and, at
#: batch 1, cut into bands for the threads. 1 x C x 28x28 (196 tiles),
#: 2 threads, forward: 128 -> 128 im2col 1.40 ms, F(4x4) 0.92; 128 -> 32
#: 0.54, 0.44; 256 -> 64 2.47, 2.27; 64 -> 64 even (0.82, 0.84).
WINOGRAD_MIN_IMAGE_TILES = 196
#: Smallest output (rows and columns) for Winograd F(2x2, 3x3) at all: a
#: 7x7 map takes 4x4 tiles and a spare one a row, 80 tiles' products for
#: 49 outputs, and the GEMMs are G = 16 smaller ones. 2 threads, Winograd
#: against im2col, fwd/gx/gw: 32 x 256 x 7x7 -> 256 16.2/14.6/22.7 ms
#: against 10.8/10.3/11.9; 32 x 128 x 7x7 -> 32 (DenseNet's growth
#: layer) 2.05/1.42/2.34 against 1.80/2.48/1.68; 14x14 maps are
#: Winograd's by 1.7-1.9x.
WINOGRAD_MIN_SIZE = 8
#: Smallest output (rows and columns) for F(4x4, 3x3) rather than F(2x2):
#: its 6x6 tiles overlap less but waste more on the edges of small maps
#: (16x16 is even, 28x28 and up F(4x4)'s by 15-20%).
WINOGRAD_4X4_MIN_SIZE = 17
#: Fewest input channels a group (Cg) for which a grouped convolution takes
#: Winograd: with fewer, each tile's products are too small to pay for its
#: transforms (C + O channels each). 8 x 128 x 56x56 groups 32 (Cg 4),
#: fwd/gx/gw: 1.48/1.15/2.07x im2col's time; 32 x 512 x 14x14 groups 32
#: (Cg 16): 0.6-0.9x.
WINOGRAD_MIN_GROUP_CHANNELS = 16
#: The "implicit" path's bounds. Same process, 2 threads, forward, its
#: time against the path it replaces (benchmarks/results/NOTES.md): taps
#: of an ungrouped conv, 4 x 3 x 224x224 -> 64 7x7/2 (147 taps, im2col)
#: 0.59, 8 x 16 x 55x55 -> 64 3x3 (144, Winograd) 0.80, 16 x 6 x 14x14 ->
#: 16 5x5 (150) 0.74, but 8 x 32 x 56x56 -> 64 3x3 (288) 1.22; channels
#: a group of a grouped one, 8 x 128 x 56x56 g32 (Cg 4) 0.84, 32 x 512 x
#: 14x14 g32 (16) 0.78, 8 x 256 x 28x28 g8 (32, Winograd) 0.71, but 8 x
#: 384 x 13x13 g2 (192) 1.12, at stride 2 1.04-1.09, a lone image (1 x
#: 256 x 28x28 g32) 1.08; and on small maps, where the grid's padding
#: columns and the last tile's spare pixels are much of the work (16
#: images, forward / input gradient): 16x16 0.97 / 1.04, 8x8 (Cg 8)
#: 1.20 / 1.22, 4x4 1.94 / 2.10, hence the smallest output side
#: ``IMPLICIT_MIN_GROUPED_SIZE`` (14x14: 0.78 / 0.64 at Cg 16).
IMPLICIT_MAX_TAPS = 160
IMPLICIT_MAX_GROUP_CHANNELS = 32
IMPLICIT_MIN_IMAGES = 2
IMPLICIT_MIN_GROUPED_SIZE = 14
#: On AVX2 (tiles of 4 x 3 vectors of 8 floats) the path takes grouped
#: layers of this many channels a group only (gy's for the input
#: gradient), and no ungrouped weight gradient. Forward, against the path
#: taken without it, same process, 2 threads: the RGB stem 0.83-0.94, 16
#: x 6 x 14x14 5x5 0.75, 3-channel 3x3 layers 0.21-0.52, 16-channel ones
#: 0.92-0.99; grouped Cg 8 0.85-0.86, 12 0.84, 16 0.88, but Cg 4 1.04,
#: Cg 32 1.13. Weight gradient: grouped at stride 2 against im2col, Cg 8
#: 0.60-0.87 (7 layers), Cg 16 0.66-1.07; Cg 16 at stride 1 (against
#: Winograd) 0.53-0.77, but Cg 8-16 against the direct
#: kernel 1.08-1.46 and the stem at batch 8 1.57.
IMPLICIT_AVX2_GROUP_CHANNELS = (8, 16)
#: ... and a stride-1 weight gradient of more channels a group than the
#: direct kernel takes, only in this many groups or more: Winograd's, one
#: product a group, does fewer groups faster (Cg 16: 32 x 512 x 14x14 g32
#: 0.53, but g4 1.11-1.27, g2 1.48).
IMPLICIT_AVX2_MIN_GRAD_WEIGHT_GROUPS = 8
#: Shortest output row (input row, for the input gradient) of a 1-D
#: convolution (a 2-D one of height 1) for the forward and the input
#: gradient to take the path whatever the taps: one grid row is the whole
#: output, so nothing is spent on padding columns. Forward / im2col's,
#: same process: 32 x 128 x 1000 -> 128, 3 taps 0.72, 32 x 64 x 1000 7
#: taps 0.73, stride 2 0.72, dilation 2 0.69, 8 x 256 x 2000 9 taps 0.89,
#: 4 x 32 x 16000 11 taps 0.51, 32 x 256 x 250 0.74; but 16 x 512 x 100
#: 1.26.
IMPLICIT_MIN_ROW = 200
#: Fewest channels a group for a grouped weight gradient at stride 2 and
#: up to take the path too (the forward and input gradient do not: 1.04-1.09
#: of the "grouped" path's time). Weight gradient / im2col's, same
#: process: Cg 16 0.84-0.90 (8 x 64 x 56x56 /2 g4, 8 x 32 x 56x56 /2 g2,
#: 16 x 64 x 56x56 /2 g4, 8 x 128 x 56x56 /2 g8, 8 x 512 x 28x28 /2 g32),
#: Cg 8 1.11-1.12 (8 x 256 x 56x56 /2 g32). On AVX-512; on AVX2 from 8
#: (``IMPLICIT_AVX2_GROUP_CHANNELS``: Cg 8 0.60-0.87 there).
IMPLICIT_MIN_STRIDED_GRAD_WEIGHT_CHANNELS = 16
#: F(2x2, 5x5)'s rules, measured on 5x5 "same" layers (fwd/gx/gw, 2
#: threads; benchmarks/results/NOTES.md): fewest 2x2 output tiles (1 x 256
#: x 14x14, 49 tiles: 1.6x im2col's time; 2 x 128 x 14x14, 98: 0.8-0.9x;
#: 1 x 64 x 28x28, 196: 0.4-1.0x), smallest output side (its a = 6 tiles
#: waste most on small maps: 32 x 64 x 7x7 took 1.04-1.08x, 8 x 64 x
#: 10x10 0.6-0.9x), and fewest input channels a group (LeNet-5's C3, 6
#: channels: gx 3x slower).
#: Most input channels a group (Cg) for which a grouped forward is summed
#: directly (the "grouped" path). 2 threads, same process, time against
#: the path it replaced: 8 x 128 x 56x56 groups 32 (Cg 4, im2col) 0.40;
#: 1 x 256 x 28x28 groups 32 (Cg 8) 0.40; 32 x 512 x 14x14 groups 32 (Cg
#: 16, Winograd) 0.75; 32 x 32 x 28x28 groups 2 (Cg 16, Winograd) 0.83;
#: but 8 x 384 x 13x13 groups 2 (Cg 192) 1.9.
DIRECT_MAX_GROUP_CHANNELS = 16
#: Most output channels a group (Og) for which a stride-1 input gradient
#: takes the same path (gy convolved with the flipped filters): 8 x 128 x
#: 56x56 groups 32 (Og 4) 0.39 of the im2col time, 1 x 256 x 28x28 groups
#: 32 (Og 8) 0.33, 4 x 64 x 56x56 groups 8 (Og 8) 0.48; with Og 16 it is
#: no faster (0.79-1.15).
DIRECT_MAX_GRAD_INPUT_GROUP_CHANNELS = 8
#: Most input channels a group (Cg) for which a stride-1 weight gradient
#: is summed directly too (each tap a dot product of gy with the input's
#: phases, ``depthwise.direct_grad_weight``): 8 x 128 x 56x56 g32 (Cg 4)
#: 0.73 of the im2col time, 1 x 256 x 28x28 g32 (Cg 8) 0.86, 4 x 64 x
#: 56x56 g8 0.63; with Cg 16 0.69-1.28 by shape, and at stride 2 (four
#: phases) 0.96-1.32.
DIRECT_MAX_GRAD_WEIGHT_GROUP_CHANNELS = 8
WINOGRAD_5X5_MIN_TILES = 128
WINOGRAD_5X5_MIN_SIZE = 10
WINOGRAD_5X5_MIN_CHANNELS = 8
#: ... and where a 5x5 layer has at most this many input channels a
#: group (Cg) and output values a group an image (Og * OH * OW), it takes
#: the "channels" path where that applies instead (``_channels``): with
#: few channels the products of the transformed tiles are small and the
#: transforms dominate. On AVX-512 (same process, calls 10 ms apart, fwd /
#: gx / gw): 32 x 16 x 14x14 -> 48 0.59 / 0.58 / 0.52, 8 x 24 x 14x14 -> 64
#: 0.84 / 0.86 / 0.76, 8 x 32 x 14x14 -> 64 0.93 / 0.73 / 0.64, 8 x 16 x
#: 28x28 -> 32 0.61 / 0.67 / 0.78, 1 x 16 x 28x28 -> 32 0.91 / 0.94 / 1.23;
#: past the bounds 16 x 16 x 28x28 -> 64 1.16 / 1.03 / 1.16, 8 x 40 x 28x28
#: -> 48 1.20 / 1.39 / 0.90, 4 x 16 x 56x56 -> 32 1.08 / 0.90 / 0.96. On
#: AVX2, each call 50 ms after
#: the last (as the sweep times them), against Winograd's time, fwd / gx /
#: gw: 32 x 16 x 14x14 -> 48 0.60-0.73 / 0.65-0.67 / 0.71, 8 x 24 x 14x14
#: -> 64 0.75-0.77 / 0.99-1.04 / 0.66, 8 x 32 x 14x14 -> 64 0.65-0.83 /
#: 0.80-0.98 / 0.76, 8 x 16 x 28x28 -> 32 0.87-0.94 / 0.83-0.96 / 0.84, 1 x
#: 16 x 28x28 -> 32 0.90-0.91 / 0.80-0.86 / 1.03 (two runs, one for gw);
#: past the bounds Winograd stays: 16 x 16 x 28x28 -> 64 1.08-1.21 /
#: 0.96-0.99 / 1.09, 8 x 40 x 28x28 -> 48 1.30 / 1.51, 4 x 16 x 56x56 -> 32
#: 1.11 / 0.85, 96-128 outputs at 28x28 gx 1.11-1.41.
WINOGRAD_5X5_YIELDS = (32, 32 * 28 * 28)
#: The "channels" path's bounds, measured against the path it replaces
#: (same process, 2 threads; benchmarks/results/NOTES.md). Fewest output
#: channels a group: a tile's vector holds 16 (fewer leave lanes empty:
#: 8 x 128 x 56x56 g32, Og 4, took 2.3x the "implicit" path's time).
#: Fewest output pixels in all (N * OH * OW; the input gradient's: N * H
#: * W) of an ungrouped convolution: with fewer, the weights are packed
#: for too few pixels and im2col's GEMM reads them as they are. Forward,
#: against im2col: 8 x 64 x 56x56 -> 128 3x3/2 0.80, 32 x 128 x 7x7 -> 32
#: 0.66, 8 x 128 x 17x17 1x7 0.84, 1 x 256 x 28x28 d2 0.88, 16 x 512 x
#: 7x7 (784 pixels) 1.00; with tiles sized to the pixels, from 196 pixels
#: (``CHANNELS_MIN_FORWARD_PIXELS``): 16 x 256 x 4x4 (256) 0.78, 16 x 128
#: x 8x8 -> 256 /2 (256) 0.85, 1 x 256 x 14x14 (196) 0.85-0.89, 1 x 1024 x
#: 14x14 d2 0.83-0.94, 2 x 512 x 14x14 (392) 0.93-0.98, 8 x 256 x 14x14
#: -> 512 /2 (392) 0.99-1.15, 1 x 192 x 17x17 7x1 (289) 0.96-1.20; 1 x 512
#: x 7x7 (49) 0.99-1.28. Input gradient: 0.49-0.96 from 784 pixels up;
#: 8 x 160 x 7x7 -> 320 (392) 1.06-1.22, 1 x 512 x 7x7 1.30-1.54; 16 x 256
#: x 4x4 1.46; the weight gradient likewise (16 x 256 x 4x4 1.14). A grouped one
#: takes it in a batch (``IMPLICIT_MIN_IMAGES``) whatever its pixels:
#: against "implicit", "grouped" and im2col, both directions, 0.69-0.93
#: (8 x 512 x 7x7 g32 0.70); a lone image 1.37 (1 x 512 x 28x28 g32 /2).
#: The weight gradient replaces im2col's only, at stride 1: 32 x 128 x
#: 7x7 -> 32 0.74, 8 x 512 x 7x7 g32 0.80, 1x7 / 7x1 0.86-0.96, dilation
#: 2 0.88-0.96, 16 x 512 x 7x7 1.05; at stride 2 1.01-1.29, against
#: "implicit" 0.94-1.18, Winograd 1.05-2.08.
CHANNELS_MIN_GROUP_OUTPUTS = 16
CHANNELS_MIN_PIXELS = 512
CHANNELS_MIN_FORWARD_PIXELS = 196
#: On an AVX2 CPU (tiles of 6 vectors, not 24) the path takes an
#: ungrouped convolution only with at most this many output channels (the
#: input gradient's: C), OpenBLAS's GEMM being the faster of the two on a
#: taller product, and more than ``IMPLICIT_MAX_TAPS`` taps (the RGB stem,
#: 147, took 1.32-1.37x im2col's time). Against im2col, same process, 2
#: threads: up to 64 outputs 0.65-0.99 (8 x 128 x 7x7 -> 32 0.78, 16 x
#: 256 x 7x7 -> 32 0.74, 8 x 64 x 56x56 -> 32 /2 0.72, 4 x 96 x 35x35 ->
#: 48 /2 0.76, 8 x 48 x 17x17 -> 64 1x7 input gradient 0.69); 128
#: outputs 0.88-1.18 (1 x 64 x 56x56 /2 1.09, 8 x 96 x 14x14 /2 1.18);
#: 192 and up 0.93-1.36. The weight gradient of those up to 64 outputs
#: (where im2col's, at stride 1), calls 50 ms apart: 7x7 maps 0.56-0.76
#: (32 x 128 x 7x7 -> 32 0.56, 32 x 512 x 7x7 -> 64 0.63, 8 x 48 x 7x7 ->
#: 64 0.76), 4x4 0.65, 4 x 128 x 14x14 0.62, dilation 2 0.79-1.01, 1x7 /
#: 7x1 0.67-1.05 (16 layers: 13 faster, 3 within 5%; an earlier
#: measurement had 1.04-1.27 on three of five). A grouped one gains:
#: 0.47-0.79 forward, 0.33-0.68 input gradient, 0.57-0.79 weight
#: gradient.
CHANNELS_AVX2_MAX_DENSE_OUTPUTS = 64
#: ... and the input gradient of one with at most this many output
#: channels (gy's: the flipped convolution's inputs), whatever its C:
#: im2col's product for it, (C*KH*KW, O) @ (O, pixels), is as large as
#: the column matrix it writes and only O deep. Against im2col, same
#: process, 2 threads, calls 50 ms apart: O 24-48 0.40-0.73 (32 x 128 x
#: 7x7 -> 32, DenseNet's growth layer, 0.46; 8 x 128 x 28x28 d2 0.42; 1x7
#: and 7x1 0.50-0.51), O 64 0.46-0.73, O 128 0.77-0.97; but O 256-512
#: 1.01-1.65 (one lone dilated image 0.73), O 192 0.78-0.99.
CHANNELS_AVX2_MAX_GRAD_INPUT_DEPTH = 128
#: Most channels a group of gy (Og) and input pixels in all (N * H * W)
#: for which a Winograd input gradient on AVX2 takes the "channels" path
#: instead where that applies: its products are Og deep. Same process,
#: calls 50 ms apart, against Winograd's time, 3x3 layers (DenseNet's
#: growth layer and its kin): Og 24-32 on 784-3136 pixels 0.68-0.95 (16
#: x 128 x 14x14 -> 32 0.88-0.91, 1 x 128 x 56x56 -> 32 0.79-0.81, 8 x 96
#: x 14x14 -> 32 0.76-0.83, 8 x 128 x 14x14 -> 24 0.68, 4 x 128 x 28x28 ->
#: 32 0.95); on 6272 pixels 0.85-1.10, on 12544 and up 1.02-1.24, and Og
#: 48 on 6272 1.07-1.15: those stay Winograd's.
WINOGRAD_GRAD_INPUT_YIELDS = (32, 56 * 56)
#: On AVX-512 (24 accumulators a tile) the "channels" path takes a 3x3
#: layer from Winograd (where it applies) with at most the first of these
#: output channels a group and an input (C * H * W) of at most the second,
#: or on a map small enough for F(2x2) with at most the third input or
#: output channels a group: Winograd's products are Og or Cg deep, its
#: transforms the same whatever their size. Same process, 2 threads, calls
#: 10-20 ms apart, against Winograd, fwd / gx / gw: Og 24-48 0.75-1.02 /
#: 0.81-1.01 / 0.59-0.94 (16 x 128 x 14x14 -> 32 0.75 / 0.86 / 0.65, 8 x
#: 128 x 28x28 -> 32 0.86 / 0.84 / 0.71, 8 x 48 x 28x28 -> 48 0.81 / 0.87 /
#: 0.76, 1 x 128 x 56x56 -> 32 1.02 / 1.01 / 0.90), but with an input past
#: the budget 2 x 256 x 56x56 -> 32 1.61 / 1.13 / 0.90 (each tap's pass
#: reads every channel's plane again); F(2x2), 64 channels: 16 x 64 x
#: 16x16 0.77 / 0.79 / 0.85 (ResNet-18's first stage at 64 px), 32 x 64 x
#: 16x16 0.56 / 0.52 / 0.59, 8 x 64 x 16x16 0.90 / 1.11 / 0.93, 8 x 64 x
#: 14x14 -> 256 0.99 / 0.95 / 1.11. Past them Winograd stays: 8 x 128 x
#: 28x28 -> 128 1.29-1.33, 8 x 256 x 14x14 1.25-1.34, 8 x 64 x 56x56 and 1 x
#: 64 x 56x56 -> 64 (F(4x4)) 1.0-1.1.
WINOGRAD_AVX512_YIELDS = (48, 1 << 18, 64)
#: Fewest taps a phase, per dim (kernel side / stride), for which the
#: "channels" path takes a strided input gradient on AVX-512 (gy upsampled,
#: each pixel of gx summing its phase's taps; ``implicit_channels.
#: conv2d_grad_input``) from im2col. Same process, 2 threads, calls 50 ms
#: apart, against im2col: 4x4/2 (2 taps a phase) 0.43-0.97 (8 x 64 x 56x56
#: -> 128 0.95, 1 x 64 x 112x112 -> 128 0.60, 8 x 128 x 28x28 -> 64 0.43,
#: groups 2 0.66); 3x3/2 (1 or 2) 0.79-1.83 (16 x 64 x 16x16 -> 128 0.79,
#: 8 x 256 x 14x14 -> 512 0.87, 8 x 64 x 56x56 -> 128 1.10, 16 x 256 x 4x4
#: -> 512 1.83; grouped, 16 channels a group, 1.08-1.14); 2x2/2 (1) 0.73
#: and 1.43.
CHANNELS_STRIDED_GRAD_INPUT_MIN_TAPS = 2


# -- which path ---------------------------------------------------------------
def winograd_tile(N, kernel_size, stride, dilation, groups, out_size, xp):
    """m of the F(m x m, r x r) to compute a convolution of N images with
    output (OH, OW) by, or 0 for none: Winograd applies to a 3x3 or 5x5,
    stride-1, undilated convolution (any groups: depthwise ones are
    taken first by their own kernel) with enough output tiles, on a
    backend that has it; a 5x5 one by F(2x2, 5x5), on an output of at
    least ``WINOGRAD_5X5_MIN_SIZE``, a 3x3 one on an output of at least
    ``WINOGRAD_MIN_SIZE``. The tile count does not depend on
    the groups: the filter transform (a*a * O * Cg values) and each
    tile's products (a*a * O * Cg multiply-adds) both shrink by G.
    ``conv_path`` also asks for enough channels a group."""
    kernel_size = tuple(kernel_size)
    if not (kernel_size in ((3, 3), (5, 5)) and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1)
            and registry.find("winograd_conv2d", xp)):
        return 0
    OH, OW = out_size
    tiles = N * -(-OH // 2) * -(-OW // 2)
    if kernel_size == (5, 5):
        return 2 if tiles >= WINOGRAD_5X5_MIN_TILES and min(out_size) >= WINOGRAD_5X5_MIN_SIZE else 0
    if (tiles < WINOGRAD_MIN_TILES and tiles < N * WINOGRAD_MIN_IMAGE_TILES) or min(out_size) < WINOGRAD_MIN_SIZE:
        return 0
    return 4 if min(out_size) >= WINOGRAD_4X4_MIN_SIZE else 2


def conv_path(xp, N, C, groups, kernel_size, stride, padding, dilation, out_size, winograd_size,
              direction="forward", out_channels=None, dtype=None):
    """(path, m): the first path of the module docstring that applies to
    this geometry in this ``direction`` ("forward", "grad_input" or
    "grad_weight"), one of "depthwise", "implicit", "grouped", "dense",
    "frames", "winograd", "pointwise", "im2col", or "channels" where that
    replaces one of the module docstring's, and for "winograd" the tile
    size m (else 0).

    ``winograd_size`` is the output of the convolution Winograd would
    compute: (OH, OW), or (H, W) for the input gradient, a convolution of
    gy (see ``conv2d_grad_input``). ``out_channels`` (O) is needed for the
    input gradient's "grouped", "implicit" and "channels" paths, ``dtype``
    (the arrays') for "implicit" and "channels", float32 only; without
    them none of these applies."""
    path, m = _first_path(xp, N, C, groups, kernel_size, stride, padding, dilation, out_size, winograd_size,
                          direction, out_channels, dtype)
    replaceable = (path == "im2col"
                   or (direction != "grad_weight" and (path == "grouped" or (path == "implicit" and groups > 1)))
                   or (path == "winograd"
                       and (_small_5x5(C // groups, kernel_size, (out_channels or 0) // groups, out_size)
                            or _thin_grad_input(xp, N, groups, direction, out_channels, winograd_size)
                            or _thin_3x3(xp, C, groups, kernel_size, out_channels, winograd_size, m))))
    if replaceable and _channels(xp, dtype, N, C, groups, kernel_size, stride, padding, dilation, out_size,
                                 winograd_size, direction, out_channels):
        return "channels", 0
    return path, m


def _small_5x5(Cg, kernel_size, Og, out_size):
    """Whether a 5x5 layer's F(2x2, 5x5) gives way to the "channels" path
    where that takes it (``WINOGRAD_5X5_YIELDS``)."""
    most_inputs, most_outputs = WINOGRAD_5X5_YIELDS
    return tuple(kernel_size) == (5, 5) and Cg <= most_inputs and Og * math.prod(out_size) <= most_outputs


def _thin_3x3(xp, C, groups, kernel_size, out_channels, size, m):
    """Whether a 3x3 Winograd layer gives way to the "channels" path where
    that takes it, on AVX-512 (``WINOGRAD_AVX512_YIELDS``): few output
    channels a group and an input that stays in cache, or F(2x2) with few
    input or output channels a group. ``size`` is Winograd's output, the
    input's size at stride 1."""
    most_outputs, most_input, most_small_map_channels = WINOGRAD_AVX512_YIELDS
    Cg, Og = C // groups, (out_channels or 0) // groups
    return (tuple(kernel_size) == (3, 3) and _register_tiles(xp) == "avx512"
            and ((Og <= most_outputs and C * math.prod(size) <= most_input)
                 or (m == 2 and min(Cg, Og) <= most_small_map_channels)))


def _thin_grad_input(xp, N, groups, direction, out_channels, in_size):
    """Whether a Winograd input gradient of N images of ``in_size`` whose
    gy has ``out_channels`` gives way to the "channels" path where that
    takes it (``WINOGRAD_GRAD_INPUT_YIELDS``): measured on AVX2 only."""
    most_channels, most_pixels = WINOGRAD_GRAD_INPUT_YIELDS
    return (direction == "grad_input" and (out_channels or 0) // groups <= most_channels
            and N * math.prod(in_size) <= most_pixels and _register_tiles(xp) == "avx2")


def _first_path(xp, N, C, groups, kernel_size, stride, padding, dilation, out_size, winograd_size, direction,
                out_channels, dtype):
    """``conv_path``'s choice among the module docstring's paths."""
    unpadded = all(lo == hi == 0 for lo, hi in padding)
    if groups == C and len(kernel_size) == 2:
        return "depthwise", 0
    if _implicit(xp, dtype, N, C, groups, kernel_size, stride, padding, dilation, out_size, winograd_size,
                 direction, out_channels):
        return "implicit", 0
    if _grouped_direct(xp, C, groups, kernel_size, stride, padding, dilation, direction, out_channels):
        return "grouped", 0
    if all(o == 1 for o in out_size) and unpadded and groups == 1:
        return "dense", 0
    Cg = C // groups
    wide_groups = groups == 1 or Cg >= WINOGRAD_MIN_GROUP_CHANNELS
    if (len(kernel_size) == 3 and tuple(kernel_size[1:]) == (3, 3) and wide_groups
            and winograd_tile(N * out_size[0], kernel_size[1:], stride[1:], dilation[1:], groups,
                              winograd_size[1:], xp)):
        return "frames", 0
    enough_channels = wide_groups and (tuple(kernel_size) != (5, 5) or Cg >= WINOGRAD_5X5_MIN_CHANNELS)
    m = winograd_tile(N, kernel_size, stride, dilation, groups, winograd_size, xp) if enough_channels else 0
    if m:
        return "winograd", m
    if all(k == 1 for k in kernel_size) and unpadded:
        return "pointwise", 0
    return "im2col", 0


def _implicit(xp, dtype, N, C, groups, kernel_size, stride, padding, dilation, out_size, in_size, direction,
              out_channels):
    """Whether the "implicit" path applies (module docstring): a float32
    2-D convolution, not 1x1, with symmetric padding (for the input
    gradient: the flipped convolution's, the kernel's reach less the
    padding, whose output is all of ``in_size``: a transposed
    convolution's output padding is not), more than one output pixel, few
    taps (ungrouped) or channels a group (grouped: stride 1, a batch, maps
    not too small), on a backend whose kernel runs at full speed here."""
    if (not _float32(xp, dtype) or len(kernel_size) != 2 or all(k == 1 for k in kernel_size)
            or all(o == 1 for o in out_size) or any(lo != hi for lo, hi in padding)):
        return False
    if direction == "grad_input":
        if not _flipped_fits(stride, padding, dilation, kernel_size, in_size, out_size, out_channels):
            return False
        channels, size = out_channels // groups, in_size       # gy's channels a group; gx's size
    else:
        channels, size = C // groups, out_size
    if groups == 1:
        fits = channels * math.prod(kernel_size) <= IMPLICIT_MAX_TAPS
        if direction == "grad_weight":     # at stride 1, im2col's or Winograd's weight gradient is as fast
            fits = fits and any(s != 1 for s in stride)
        else:                              # a long row (conv1d): no padding columns to speak of
            fits = fits or (size[0] == 1 and kernel_size[0] == 1 and size[1] >= IMPLICIT_MIN_ROW)
    else:                                  # strided: the weight gradient only
        fits = ((all(s == 1 for s in stride) or direction == "grad_weight") and N >= IMPLICIT_MIN_IMAGES
                and channels <= IMPLICIT_MAX_GROUP_CHANNELS and min(size) >= IMPLICIT_MIN_GROUPED_SIZE)
    if not fits:
        return False
    tiles = _register_tiles(xp)
    if tiles == "avx2":
        return _implicit_on_avx2(direction, groups, channels, stride)
    strided_grouped = groups > 1 and any(s != 1 for s in stride)
    return tiles == "avx512" and (not strided_grouped or channels >= IMPLICIT_MIN_STRIDED_GRAD_WEIGHT_CHANNELS)


def _implicit_on_avx2(direction, groups, channels, stride):
    """Which of the layers that the "implicit" path takes on AVX-512 it
    takes on AVX2 (``IMPLICIT_AVX2_GROUP_CHANNELS``): forward and input
    gradient ungrouped ones (few taps) and grouped ones of 8-16 channels a
    group; the weight gradient grouped ones of 8-16 channels a group,
    strided, or at stride 1 where neither the direct kernel nor Winograd
    does it faster (``IMPLICIT_AVX2_MIN_GRAD_WEIGHT_GROUPS``)."""
    least, most = IMPLICIT_AVX2_GROUP_CHANNELS
    if direction != "grad_weight":
        return groups == 1 or least <= channels <= most
    if groups == 1 or not least <= channels <= most:
        return False
    if any(s != 1 for s in stride):
        return True
    return channels > DIRECT_MAX_GRAD_WEIGHT_GROUP_CHANNELS and groups >= IMPLICIT_AVX2_MIN_GRAD_WEIGHT_GROUPS


def _flipped_fits(stride, padding, dilation, kernel_size, in_size, out_size, out_channels):
    """Whether an input gradient is the forward kernels' convolution of gy
    by the flipped filters: stride 1, padding at most the kernel's reach,
    and the flipped convolution's output all of ``in_size`` (a transposed
    convolution's output padding is not); ``out_channels`` known."""
    return out_channels is not None and all(s == 1 for s in stride) and all(
        lo <= r and hi <= r and n == o + r - lo - hi
        for r, (lo, hi), n, o in zip(_reach(kernel_size, dilation), padding, in_size, out_size))


def _channels(xp, dtype, N, C, groups, kernel_size, stride, padding, dilation, out_size, in_size, direction,
              out_channels):
    """Whether the "channels" path replaces the one chosen (module
    docstring): a float32 2-D convolution, not 1x1, with symmetric padding,
    its forward, its input gradient at stride 1 (``_flipped_fits``) or on
    AVX-512 at a stride the kernel covers twice (``_upsampled_fits``), or
    at stride 1 its weight gradient, of at least ``CHANNELS_MIN_GROUP_OUTPUTS`` output
    channels a group (the input gradient's: Cg), ungrouped with
    ``CHANNELS_MIN_PIXELS`` output pixels or more
    (``CHANNELS_MIN_FORWARD_PIXELS`` for the forward), grouped in a batch,
    on a backend whose kernel runs at full speed here (on AVX2, ungrouped:
    ``CHANNELS_AVX2_MAX_DENSE_OUTPUTS`` or for the input gradient
    ``CHANNELS_AVX2_MAX_GRAD_INPUT_DEPTH``)."""
    if (not _float32(xp, dtype) or len(kernel_size) != 2 or all(k == 1 for k in kernel_size)
            or any(lo != hi for lo, hi in padding)):
        return False
    if direction == "grad_weight" and any(s != 1 for s in stride):
        return False
    strided = any(s != 1 for s in stride)
    if direction == "grad_input":
        if not (_upsampled_fits(stride, padding, dilation, kernel_size, out_channels) if strided else
                _flipped_fits(stride, padding, dilation, kernel_size, in_size, out_size, out_channels)):
            return False
        outputs, size = C // groups, in_size
    else:
        outputs, size = (out_channels or 0) // groups, out_size
    if outputs < CHANNELS_MIN_GROUP_OUTPUTS:
        return False
    if direction == "grad_input" and strided and _register_tiles(xp) != "avx512":
        return False
    least_pixels = CHANNELS_MIN_FORWARD_PIXELS if direction == "forward" else CHANNELS_MIN_PIXELS
    if groups == 1 and N * math.prod(size) < least_pixels:
        return False
    if groups > 1 and N < IMPLICIT_MIN_IMAGES:
        return False
    if not registry.find("channels_conv2d", xp):
        return False
    tiles = _register_tiles(xp)
    if tiles != "avx2" or groups > 1:
        return tiles is not None
    inputs = (out_channels or 0) if direction == "grad_input" else C      # the flipped convolution reads gy
    taps = inputs * math.prod(kernel_size)
    few_inputs = direction == "grad_input" and inputs <= CHANNELS_AVX2_MAX_GRAD_INPUT_DEPTH
    return (outputs <= CHANNELS_AVX2_MAX_DENSE_OUTPUTS or few_inputs) and taps > IMPLICIT_MAX_TAPS


def _upsampled_fits(stride, padding, dilation, kernel_size, out_channels):
    """Whether a strided convolution's input gradient takes the "channels"
    path, as the convolution of gy upsampled (zeros between its pixels,
    which no tile reads) with the flipped filters: padding at most the
    kernel's reach, and each kernel side at least twice the stride
    (``CHANNELS_STRIDED_GRAD_INPUT_MIN_TAPS`` taps a phase); ``out_channels``
    known."""
    least = CHANNELS_STRIDED_GRAD_INPUT_MIN_TAPS
    return out_channels is not None and all(
        lo <= r and hi <= r and k >= least * s
        for r, (lo, hi), k, s in zip(_reach(kernel_size, dilation), padding, kernel_size, stride))


def _float32(xp, dtype):
    """Whether ``dtype`` (None: unknown) is float32, the implicit kernels' only one."""
    return dtype is not None and xp.dtype(dtype) == xp.float32


def _register_tiles(xp):
    """The register tiles the backend in force runs at full speed on this
    CPU: "avx512", "avx2" or None (none, or a backend without the implicit
    kernels). Asked last: the first answer imports the kernels."""
    if not registry.find("implicit_conv2d", xp):
        return None
    return registry.lookup("conv_register_tiles", xp)()


def _reach(kernel_size, dilation):
    """How far past its first input a kernel reads, per dim: d * (k - 1)."""
    return [d * (k - 1) for k, d in zip(kernel_size, dilation)]


def _grouped_direct(xp, C, groups, kernel_size, stride, padding, dilation, direction, out_channels):
    """Whether the "grouped" path applies: a 2-D grouped convolution (not
    1x1) of at most DIRECT_MAX_GROUP_CHANNELS input channels a group, on a
    backend with the direct kernels; its forward, or at stride 1 the
    input gradient (at most DIRECT_MAX_GRAD_INPUT_GROUP_CHANNELS output
    channels a group: gx is then the direct forward of gy,
    ``conv_grad_input``) and the weight gradient (at most
    DIRECT_MAX_GRAD_WEIGHT_GROUP_CHANNELS input channels a group)."""
    if not (1 < groups < C and len(kernel_size) == 2 and max(kernel_size) > 1
            and registry.find("grouped_conv2d_forward", xp)):
        return False
    if direction == "forward":
        return C // groups <= DIRECT_MAX_GROUP_CHANNELS
    if any(s != 1 for s in stride):
        return False
    if direction == "grad_weight":
        return C // groups <= DIRECT_MAX_GRAD_WEIGHT_GROUP_CHANNELS
    if out_channels is None:
        return False
    reach_fits = all(lo <= r and hi <= r for (lo, hi), r in zip(padding, _reach(kernel_size, dilation)))
    return reach_fits and out_channels // groups <= DIRECT_MAX_GRAD_INPUT_GROUP_CHANNELS


def _flipped(w, groups):
    """w (O, Cg, *kernel) flipped in every spatial dim, in and out channels
    swapped within each group: (C, Og, *kernel), the filters whose
    convolution of gy is gx at stride 1 (a view when groups == 1)."""
    O, Cg, kernel = w.shape[0], w.shape[1], w.shape[2:]
    flips = (slice(None),) * 3 + (slice(None, None, -1),) * len(kernel)
    grouped = w.reshape((groups, O // groups, Cg) + kernel)[flips]
    return grouped.swapaxes(1, 2).reshape((Cg * groups, O // groups) + kernel)


# -- 1-D as 2-D ------------------------------------------------------------------
def _lift(values, one):
    """A 1-D geometry argument as the 2-D one of height 1: ``one`` (the
    value of the new leading dim) in front of ``values``."""
    return (one,) + tuple(values)


# -- the three directions -----------------------------------------------------
def conv_forward(x, w, b, stride, padding, dilation, groups, out_size, clamp=None):
    """y (N, O, OH, OW) = conv(x, w) + b; b (O,) may be None. With ``clamp``
    = (lo, hi), y is then clamped to [lo, hi], NaN kept (a fused model's
    ReLU or ReLU6): the pointwise, depthwise and im2col paths do it in the
    pass that adds the bias, the others in one pass over y after."""
    xp = get_array_module(x)
    if x.ndim == 3:
        return conv_forward(x[:, :, None], w[:, :, None], b, _lift(stride, 1), _lift(padding, (0, 0)),
                            _lift(dilation, 1), groups, _lift(out_size, 1), clamp)[:, :, 0]
    x = xp.ascontiguousarray(x)
    kernel_size, out_size = tuple(w.shape[2:]), tuple(out_size)
    N, C, O = x.shape[0], x.shape[1], w.shape[0]
    ones = (1,) * len(out_size)
    if x.size == 0 or w.size == 0:   # no taps, or nothing to compute: y is the bias
        y = xp.zeros((N, O) + out_size, dtype=x.dtype)
        if b is not None:
            y += b.reshape((O,) + ones)
        return clamped(y, clamp)
    path, m = conv_path(xp, N, C, groups, kernel_size, stride, padding, dilation, out_size, out_size,
                        out_channels=O, dtype=x.dtype)
    args = (x, w, b, stride, padding, dilation, groups, out_size)
    if path == "depthwise":
        return registry.lookup("depthwise_conv2d_forward", xp)(*args, clamp)
    if path == "pointwise":
        Og, Cg = O // groups, C // groups
        xs = _subsample(x, stride, out_size).reshape(N, groups, Cg, -1)                # (N, G, Cg, L)
        bias = None if b is None else b.reshape(groups, Og, 1)
        y = registry.lookup("batched_matmul", xp)(w.reshape(groups, Og, Cg), xs, bias, clamp)  # (N, G, Og, L)
        return y.reshape((N, O) + out_size)
    if path == "im2col":
        return registry.lookup("im2col_gemm_forward", xp)(*args, clamp)
    if path == "frames":
        y = frames_forward(*args)
    elif path in ("implicit", "channels", "grouped"):
        name = {"implicit": "implicit_conv2d", "channels": "channels_conv2d", "grouped": "grouped_conv2d_forward"}
        y = registry.lookup(name[path], xp)(*args)
    elif path == "winograd":
        y = registry.lookup("winograd_conv2d", xp)(x, w, b, padding, out_size, m, groups)
    else:                           # "dense"
        y = xp.empty((N, O) + ones, dtype=x.dtype)
        xp.matmul(_window(x, kernel_size, dilation), w.reshape(O, -1).T, out=y.reshape(N, O))
        if b is not None:
            y += b.reshape((O,) + ones)
    return clamped(y, clamp)


def clamped(y, clamp):
    """y clamped in place to clamp = (lo, hi), NaN kept; y itself where
    ``clamp`` is None."""
    if clamp is not None:
        registry.lookup("clamp_into", get_array_module(y))(y, *clamp, y)
    return y


def conv_grad_input(gy, w, stride, padding, dilation, groups, in_size):
    """gx (N, C, H, W) for gy (N, O, OH, OW): the adjoint of conv_forward
    in x, which is also the transposed convolution of gy with w."""
    xp = get_array_module(gy)
    if gy.ndim == 3:
        return conv_grad_input(gy[:, :, None], w[:, :, None], _lift(stride, 1), _lift(padding, (0, 0)),
                               _lift(dilation, 1), groups, _lift(in_size, 1))[:, :, 0]
    gy = xp.ascontiguousarray(gy)
    N, O, out_size = gy.shape[0], gy.shape[1], tuple(gy.shape[2:])
    C, kernel_size, in_size = w.shape[1] * groups, tuple(w.shape[2:]), tuple(in_size)
    if gy.size == 0 or w.size == 0:
        return xp.zeros((N, C) + in_size, dtype=gy.dtype)
    path, m = conv_path(xp, N, C, groups, kernel_size, stride, padding, dilation, out_size, in_size, "grad_input",
                        O, gy.dtype)
    if path == "frames":
        return frames_grad_input(gy, w, stride, padding, dilation, groups, in_size)
    if path == "depthwise":
        return registry.lookup("depthwise_conv2d_grad_input", xp)(gy, w, stride, padding, dilation, groups, in_size)
    if path == "channels":
        return registry.lookup("channels_conv2d_grad_input", xp)(gy, w, stride, padding, dilation, groups, in_size)
    if path in ("grouped", "implicit"):
        # At stride 1, gx is the full correlation of gy with the flipped
        # filters (``_flipped``): a convolution with the same groups and
        # dilation, padded by the kernel's reach less the padding on each
        # side, whose output is (H, W).
        full = tuple((r - lo, r - hi) for r, (lo, hi) in zip(_reach(kernel_size, dilation), padding))
        forward = "grouped_conv2d_forward" if path == "grouped" else "implicit_conv2d"
        return registry.lookup(forward, xp)(gy, _flipped(w, groups), None, stride, full, dilation, groups, in_size)
    if path == "dense":
        gx = xp.zeros((N, C) + in_size, dtype=gy.dtype)
        window = gx[_grid(kernel_size, dilation)]
        window[...] = (gy.reshape(N, O) @ w.reshape(O, -1)).reshape(window.shape)
        return gx
    if path == "winograd":
        # At stride 1, gx is the full correlation of gy with the flipped
        # filters, in and out channels swapped within each group: an r x r
        # convolution with the same groups, padded by r - 1 - padding on
        # each side, whose output is (H, W).
        r = kernel_size[0]
        (top, bottom), (left, right) = padding
        return registry.lookup("winograd_conv2d", xp)(
            gy, _flipped(w, groups), None, ((r - 1 - top, r - 1 - bottom), (r - 1 - left, r - 1 - right)), in_size,
            m, groups)
    if path == "pointwise":
        Og = O // groups
        wgT = w.reshape(groups, Og, -1).transpose(0, 2, 1)                  # (G, Cg, Og), a view
        gxs = registry.lookup("batched_matmul", xp)(wgT, gy.reshape(N, groups, Og, -1))
        gxs = gxs.reshape((N, C) + out_size)
        if out_size == in_size:
            return gxs
        gx = xp.zeros((N, C) + in_size, dtype=gy.dtype)
        gx[_grid(out_size, stride)] = gxs
        return gx
    return registry.lookup("im2col_gemm_grad_input", xp)(gy, w, stride, padding, dilation, groups, in_size)


def conv_grad_weight(x, gy, kernel_size, stride, padding, dilation, groups):
    """gw (O, Cg, KH, KW) = the sum over images and output pixels of gy
    times the input pixels each weight saw: the adjoint of conv_forward
    in w."""
    xp = get_array_module(x)
    if x.ndim == 3:
        return conv_grad_weight(x[:, :, None], gy[:, :, None], _lift(kernel_size, 1), _lift(stride, 1),
                                _lift(padding, (0, 0)), _lift(dilation, 1), groups)[:, :, 0]
    x, gy = xp.ascontiguousarray(x), xp.ascontiguousarray(gy)
    N, C = x.shape[:2]
    O, out_size = gy.shape[1], tuple(gy.shape[2:])
    kernel_size = tuple(kernel_size)
    if x.size == 0 or gy.size == 0:
        return xp.zeros((O, C // groups) + kernel_size, dtype=x.dtype)
    path, m = conv_path(xp, N, C, groups, kernel_size, stride, padding, dilation, out_size, out_size,
                        "grad_weight", O, x.dtype)
    if path == "frames":
        return frames_grad_weight(x, gy, kernel_size, stride, padding, dilation, groups)
    if path == "depthwise":
        return registry.lookup("depthwise_conv2d_grad_weight", xp)(x, gy, kernel_size, stride, padding, dilation,
                                                                   groups)
    if path == "grouped":
        return registry.lookup("grouped_conv2d_grad_weight", xp)(x, gy, kernel_size, stride, padding, dilation,
                                                                 groups)
    if path == "implicit":
        return registry.lookup("implicit_conv2d_grad_weight", xp)(x, gy, kernel_size, stride, padding, dilation,
                                                                  groups)
    if path == "channels":
        return registry.lookup("channels_conv2d_grad_weight", xp)(x, gy, kernel_size, stride, padding, dilation,
                                                                  groups)
    if path == "dense":
        return (gy.reshape(N, O).T @ _window(x, kernel_size, dilation)).reshape((O, C) + kernel_size)
    if path == "winograd":
        return registry.lookup("winograd_conv2d_grad_weight", xp)(x, gy, padding, m, groups, kernel_size[0])
    if path == "pointwise":
        Og, Cg = O // groups, C // groups
        xs = _subsample(x, stride, out_size).reshape(N, groups, Cg, -1)
        gw = registry.lookup("batched_matmul_sum", xp)(gy.reshape(N, groups, Og, -1), xs.transpose(0, 1, 3, 2))
        return gw.reshape((O, Cg) + kernel_size)
    return registry.lookup("im2col_gemm_grad_weight", xp)(x, gy, kernel_size, stride, padding, dilation, groups)


#: The 2-D names of the three directions, as the tests and the kernels'
#: benchmarks call them.
conv2d_forward, conv2d_grad_input, conv2d_grad_weight = conv_forward, conv_grad_input, conv_grad_weight


# -- the frames path: a 3-D convolution as 2-D ones -----------------------------
def _frame_range(kd, D, OD, stride, front, dilation):
    """(d0, lo, hi): the output frames od in [lo, hi) whose depth tap kd
    reads an input frame (not the padding), input frame d0 + od * sd."""
    d0 = kd * dilation - front
    lo = max(0, -(d0 // stride))
    hi = min(OD, (D - 1 - d0) // stride + 1) if D - 1 - d0 >= 0 else 0
    return d0, lo, max(lo, hi)


def _frames(a, d0, lo, hi, stride):
    """Frames d0 + od * stride (od in [lo, hi)) of ``a`` (N, D, C, H, W),
    as one batch of images (N * (hi - lo), C, H, W)."""
    N, _, C, H, W = a.shape
    start = d0 + lo * stride
    return get_array_module(a).ascontiguousarray(
        a[:, start:start + (hi - lo - 1) * stride + 1:stride]).reshape(N * (hi - lo), C, H, W)


def _frame_major(a):
    """(N, C, D, H, W) -> (N, D, C, H, W), C-contiguous: a clip as frames."""
    return get_array_module(a).ascontiguousarray(a.transpose(0, 2, 1, 3, 4))


def frames_forward(x, w, b, stride, padding, dilation, groups, out_size):
    """y (N, O, OD, OH, OW): a 3-D convolution as the sum over depth taps
    kd of 2-D convolutions, frame by frame, with the kernel's slice kd:

        y[:, :, od] = sum_kd conv2d(x[:, :, od * sd - front + kd * dd], w[:, :, kd])

    all frames of all clips in one batch per tap. Every 2-D convolution
    then takes the 2-D strategy's path (Winograd for 3x3 slices, which is
    why ``conv_path`` sends those here: 4x fewer multiplies than the 3-D
    column matrix. 3x3x3 on 4 x 64 x 8x28x28, fwd+bwd: 1.27x torch's time
    through the 3-D columns, 0.75x this way)."""
    xp = get_array_module(x)
    N, D, O, (OD, OH, OW) = x.shape[0], x.shape[2], w.shape[0], out_size
    frames, y = _frame_major(x), xp.zeros((N, OD, O, OH, OW), dtype=x.dtype)
    for kd in range(w.shape[2]):
        d0, lo, hi = _frame_range(kd, D, OD, stride[0], padding[0][0], dilation[0])
        if hi > lo:
            part = conv_forward(_frames(frames, d0, lo, hi, stride[0]), w[:, :, kd], None, stride[1:], padding[1:],
                                dilation[1:], groups, out_size[1:])
            y[:, lo:hi] += part.reshape(N, hi - lo, O, OH, OW)
    if b is not None:
        y += b.reshape(O, 1, 1)
    return xp.ascontiguousarray(y.transpose(0, 2, 1, 3, 4))


def frames_grad_input(gy, w, stride, padding, dilation, groups, in_size):
    """gx (N, C, D, H, W): the adjoint of ``frames_forward`` in x, each
    tap's 2-D input gradient added into the frames it read."""
    xp = get_array_module(gy)
    N, OD, C, (D, H, W) = gy.shape[0], gy.shape[2], w.shape[1] * groups, in_size
    gy_frames, gx = _frame_major(gy), xp.zeros((N, D, C, H, W), dtype=gy.dtype)
    for kd in range(w.shape[2]):
        d0, lo, hi = _frame_range(kd, D, OD, stride[0], padding[0][0], dilation[0])
        if hi > lo:
            gy_part = _frames(gy_frames, lo, 0, hi - lo, 1)                 # output frames lo ... hi - 1
            part = conv_grad_input(gy_part, w[:, :, kd], stride[1:], padding[1:], dilation[1:], groups, in_size[1:])
            start = d0 + lo * stride[0]
            gx[:, start:start + (hi - lo - 1) * stride[0] + 1:stride[0]] += part.reshape(N, hi - lo, C, H, W)
    return xp.ascontiguousarray(gx.transpose(0, 2, 1, 3, 4))


def frames_grad_weight(x, gy, kernel_size, stride, padding, dilation, groups):
    """gw (O, Cg, KD, KH, KW): the adjoint of ``frames_forward`` in w, slice
    kd the 2-D weight gradient of the frames tap kd read."""
    xp = get_array_module(x)
    N, C, D, O, OD = x.shape[0], x.shape[1], x.shape[2], gy.shape[1], gy.shape[2]
    frames, gy_frames = _frame_major(x), _frame_major(gy)
    gw = xp.zeros((O, C // groups) + tuple(kernel_size), dtype=x.dtype)
    for kd in range(kernel_size[0]):
        d0, lo, hi = _frame_range(kd, D, OD, stride[0], padding[0][0], dilation[0])
        if hi > lo:
            gy_part = _frames(gy_frames, lo, 0, hi - lo, 1)                 # output frames lo ... hi - 1
            gw[:, :, kd] = conv_grad_weight(_frames(frames, d0, lo, hi, stride[0]), gy_part, kernel_size[1:],
                                            stride[1:], padding[1:], dilation[1:], groups)
    return gw


# -- the dense and pointwise paths' pieces ----------------------------------
def _grid(counts, steps):
    """The index, in an (N, C, H, W) array, of ``counts`` (rows, columns)
    pixels ``steps`` apart from the top left corner: the one window of a
    dense convolution (counts the kernel size, steps the dilation), or
    the pixels a 1x1 kernel reads (counts the output size, steps the
    stride)."""
    return (slice(None), slice(None)) + tuple(slice(0, (n - 1) * s + 1, s) for n, s in zip(counts, steps))


def _window(x, kernel_size, dilation):
    """(N, C*KH*KW): the one window of each image of x that a dense
    convolution reads, its pixels in w's (C, KH, KW) order."""
    return x[_grid(kernel_size, dilation)].reshape(x.shape[0], -1)


def _subsample(x, stride, out_size):
    """x (N, C, H, W) at the pixels a 1x1 kernel reads, C-contiguous:
    (N, C, OH, OW), the column matrices of a pointwise convolution."""
    return get_array_module(x).ascontiguousarray(x[_grid(out_size, stride)])


def batched_matmul(a, b, bias=None, clamp=None):
    """y[n] = a @ b[n] (+ bias) for every image n: a (G, P, Q) shared, b
    (N, G, Q, L), bias (G, P, 1) or None -> y (N, G, P, L); then clamped
    to clamp = (lo, hi) where given."""
    y = get_array_module(b).matmul(a, b)
    if bias is not None:
        y += bias
    return clamped(y, clamp)


def batched_matmul_sum(a, b):
    """sum_n a[n] @ b[n]: a (N, G, P, Q), b (N, G, Q, R) -> (G, P, R)."""
    return get_array_module(a).matmul(a, b).sum(axis=0)


# -- the im2col path, NumPy references ----------------------------------------
def _columns(x, kernel_size, stride, padding, dilation, groups, out_size):
    """The column matrices of x (N, C, H, W): (N, G, K, L)."""
    N, C = x.shape[:2]
    cols = registry.lookup("im2col", get_array_module(x))(x, tuple(kernel_size), stride, padding, dilation,
                                                          tuple(out_size))
    return cols.reshape(N, groups, -1, math.prod(out_size))


def im2col_gemm_forward(x, w, b, stride, padding, dilation, groups, out_size, clamp=None):
    """y (N, O, OH, OW) = conv2d(x, w) + b: im2col, then
    y[n, g] = w[g] @ cols[n, g] for all images and groups in one matmul;
    then clamped to clamp = (lo, hi) where given."""
    xp = get_array_module(x)
    N, O, G = x.shape[0], w.shape[0], groups
    cols = _columns(x, w.shape[2:], stride, padding, dilation, G, out_size)         # (N, G, K, L)
    y = xp.matmul(w.reshape(G, O // G, -1), cols)                                    # (N, G, Og, L)
    y = y.reshape((N, O) + tuple(out_size))
    if b is not None:
        y += b.reshape((1, O) + (1,) * len(out_size))
    return clamped(y, clamp)


def im2col_gemm_grad_input(gy, w, stride, padding, dilation, groups, in_size):
    """gx (N, C, H, W) for gy (N, O, OH, OW): gcols[n, g] = w[g]^T @ gy[n, g],
    then col2im."""
    xp = get_array_module(gy)
    N, O, G = gy.shape[0], gy.shape[1], groups
    C, kernel_size, out_size = w.shape[1] * G, tuple(w.shape[2:]), tuple(gy.shape[2:])
    wT = w.reshape(G, O // G, -1).transpose(0, 2, 1)                                 # (G, K, Og)
    cols = xp.matmul(wT, gy.reshape(N, G, O // G, -1))                               # (N, G, K, L)
    cols = cols.reshape((N, C) + kernel_size + out_size)                            # (N, C, KH, KW, OH, OW)
    return registry.lookup("col2im", xp)(cols, tuple(in_size), stride, padding, dilation)


def im2col_gemm_grad_weight(x, gy, kernel_size, stride, padding, dilation, groups):
    """gw (O, Cg, KH, KW) = sum_n gy[n, g] @ cols(x)[n, g]^T."""
    xp = get_array_module(x)
    N, C, O, G = x.shape[0], x.shape[1], gy.shape[1], groups
    cols = _columns(x, kernel_size, stride, padding, dilation, G, gy.shape[2:])     # (N, G, K, L)
    gy = gy.reshape(N, G, O // G, cols.shape[-1])                                   # (N, G, Og, L)
    gw = xp.matmul(gy, cols.transpose(0, 1, 3, 2)).sum(axis=0)                      # (G, Og, K)
    return gw.reshape((O, C // G) + tuple(kernel_size))


# -- registration -------------------------------------------------------------
# The NumPy and Numba versions; the CUDA ones register in kernels/cuda.
_CPU = "minicnn.kernels.cpu."
for _direction, _reference in (("forward", im2col_gemm_forward), ("grad_input", im2col_gemm_grad_input),
                               ("grad_weight", im2col_gemm_grad_weight)):
    for _path in ("im2col_gemm", "depthwise_conv2d"):
        registry.register(f"{_path}_{_direction}", "numpy", _reference)
        registry.register(f"{_path}_{_direction}", "numba", f"{_CPU}conv:{_path}_{_direction}")
for _name, _reference in (("batched_matmul", batched_matmul), ("batched_matmul_sum", batched_matmul_sum)):
    registry.register(_name, "numpy", _reference)
    registry.register(_name, "numba", f"{_CPU}conv:{_name}")
for _name in ("winograd_conv2d", "winograd_conv2d_grad_weight"):
    registry.register(_name, "numba", f"{_CPU}winograd:{_name}")
for _name in ("grouped_conv2d_forward", "grouped_conv2d_grad_weight"):
    registry.register(_name, "numba", f"{_CPU}conv:{_name}")
registry.register("implicit_conv2d", "numba", f"{_CPU}implicit_gemm:conv2d")
registry.register("implicit_conv2d_grad_weight", "numba", f"{_CPU}implicit_gemm:conv2d_grad_weight")
registry.register("conv_register_tiles", "numba", f"{_CPU}implicit_gemm:register_tiles")
registry.register("channels_conv2d", "numba", f"{_CPU}implicit_channels:conv2d")
registry.register("channels_conv2d_grad_input", "numba", f"{_CPU}implicit_channels:conv2d_grad_input")
registry.register("channels_conv2d_grad_weight", "numba", f"{_CPU}implicit_channels:conv2d_grad_weight")
