"""Convolution (cross-correlation, as in torch) over 1, 2 or 3 spatial
dims: im2col, then one GEMM.

conv1d, conv2d and conv3d are one op, ``ConvNd``, whose geometry has one
entry per spatial dim; everything below is written for 2-D and holds for
any rank with (H, W) replaced by (L,) or (D, H, W) and KH * KW by the
product of the kernel's sizes.

Notation
--------
N batch, C input channels, H, W input size, O output channels,
KH, KW kernel size, OH, OW output size, G groups;
Cg = C / G and Og = O / G channels per group, K = Cg * KH * KW taps per
output value, L = OH * OW output pixels.

    x: (N, C, H, W)   w: (O, Cg, KH, KW)   b: (O,)   y, gy: (N, O, OH, OW)

Forward
-------
``im2col`` lays the patches of x out as ``cols`` (N, C, KH, KW, OH, OW)
(see im2col.py). Split into groups, that is, per image and group, a
(K, L) matrix whose column l is the patch under output pixel l, and

    y[n, g] = w[g] @ cols[n, g]      (Og, K) @ (K, L) -> (Og, L)

one batched matrix product (``xp.matmul``, i.e. BLAS or cuBLAS) over all
images and groups. Group g only sees input channels g*Cg ... (g+1)*Cg - 1
and only produces output channels g*Og ... (g+1)*Og - 1; depthwise
convolution is G = C (Cg = 1), with Og output channels per input channel.
A 1x1 kernel without padding needs no im2col: x itself, subsampled by
the stride and reshaped to (N, G, Cg, L), is the column matrix.

Backward
--------
With the same matrices, for y = w cols + b:

    gw[g]   = sum_n gy[n, g] @ cols[n, g]^T      (a GEMM with the columns)
    gcols   = w[g]^T @ gy[n, g], then gx = col2im(gcols)
    gb      = gy summed over N, OH, OW

gx is exactly conv_transpose2d(gy, w) (GEMM then col2im), so backward calls
that op (``ConvTransposeNd``), and gw is the op ``ConvNdGradWeight``. Both are Functions with
their own backward, which makes the gradient itself differentiable
(double backward) at no extra cost.

Kernels
-------
How the three products are computed is the conv strategy's business
(``conv_strategy.py``): ``conv_forward``, ``conv_grad_input`` and
``conv_grad_weight`` pick, per call, depthwise, dense (one output
pixel), Winograd, pointwise (1x1) or the im2col + GEMM written above, and
run it with the kernel registry's primitives, so NumPy, Numba and CuPy
arrays share one strategy and differ only in their kernels.

Memory
------
Forward saves only x and w, the op's own inputs (alive anyway for the
layer before and the parameter), and backward recomputes the columns
from x to form gw; this is also what torch keeps. Keeping ``cols`` instead
would skip one im2col in backward but hold KH*KW/(sh*sw) times the size
of x per layer from forward until backward, for every conv in the
network. The cost of the choice is one extra im2col (a strided copy, much
cheaper than the GEMM) per backward.
"""
import collections
import numbers

from ..autograd import Function
from ..kernels.geometry import conv_output_shape, ntuple, tuple_name
from .conv_strategy import conv_forward, conv_grad_weight
from .reduction import sum as reduce_sum
from .shape import squeeze, unsqueeze
from .utils import check_float


class ConvGeometry(collections.namedtuple(
        "ConvGeometry", "kernel_size stride padding dilation groups in_size out_size")):
    """Everything about one convolution but its data, one entry per
    spatial dim (2-D: (KH, KW), (sh, sw), ((top, bottom), (left, right)),
    (dh, dw), G, the input size (H, W) and the output size (OH, OW)). A
    transposed convolution is the adjoint of the convolution its geometry
    describes, so both ops share it."""


def _channel_dims(ndim):
    """The dims of an (N, C, ...) array that a bias gradient sums over."""
    return (0,) + tuple(range(2, ndim))


class ConvNd(Function):
    """y = conv(x, w) + b for one ConvGeometry, of any number of spatial dims."""

    def __init__(self, geometry):
        self.geometry = geometry

    @property
    def name(self):
        return f"Conv{len(self.geometry.kernel_size)}d"

    def forward(self, x, w, b=None):
        self.save_for_backward(x, w)
        g = self.geometry
        return conv_forward(x, w, b, g.stride, g.padding, g.dilation, g.groups, g.out_size)

    def backward(self, gy):
        from .conv_transpose import ConvTransposeNd  # the two ops are each other's backward
        x, w = self.saved_tensors
        gx = gw = gb = None
        if self.needs_input_grad[0]:
            gx = ConvTransposeNd.apply(gy, w, geometry=self.geometry)
        if self.needs_input_grad[1]:
            gw = ConvNdGradWeight.apply(x, gy, geometry=self.geometry)
        if len(self.needs_input_grad) == 2:  # called without a bias
            return gx, gw
        if self.needs_input_grad[2]:
            gb = reduce_sum(gy, _channel_dims(gy.ndim))
        return gx, gw, gb


class ConvNdGradWeight(Function):
    """gw = sum_n gy[n, g] @ cols(x)[n, g]^T, the weight gradient of a convolution.

    It is bilinear in (x, gy): <gw, v> = <gy, conv(x, v)>
    = <conv_transpose(gy, v), x>, which gives its own backward.
    """

    def __init__(self, geometry):
        self.geometry = geometry

    @property
    def name(self):
        return f"Conv{len(self.geometry.kernel_size)}dGradWeight"

    def forward(self, x, gy):
        self.save_for_backward(x, gy)
        g = self.geometry
        return conv_grad_weight(x, gy, g.kernel_size, g.stride, g.padding, g.dilation, g.groups)

    def backward(self, ggw):
        from .conv_transpose import ConvTransposeNd
        x, gy = self.saved_tensors
        gx = ggy = None
        if self.needs_input_grad[0]:
            gx = ConvTransposeNd.apply(gy, ggw, geometry=self.geometry)
        if self.needs_input_grad[1]:
            ggy = ConvNd.apply(x, ggw, geometry=self.geometry)
        return gx, ggy


#: The 2-D names the ops had before they took any rank.
Conv2d, Conv2dGradWeight = ConvNd, ConvNdGradWeight

#: The batched and unbatched input layouts of each rank, for messages.
LAYOUTS = {1: ("3-D (N, C, L)", "2-D (C, L)"), 2: ("4-D (N, C, H, W)", "3-D (C, H, W)"),
           3: ("5-D (N, C, D, H, W)", "4-D (C, D, H, W)")}


def unbatched_hint(input, rank):
    """For a message about the channels of an unbatched input: how it was
    read (a batch of images given to conv3d is read as one clip)."""
    if input.ndim != rank + 1:
        return ""
    batched, unbatched = LAYOUTS[rank]
    return f" (a {unbatched.replace(' ', ' input is one unbatched ', 1)} sample; a batch is {batched})"


# -- argument checks shared with conv_transpose ---------------------------
def check_operands(op, input, weight, bias, rank=2):
    """Dtypes and ranks of input, weight and bias."""
    check_float(input, op, "input")
    check_float(weight, op, "weight")
    if bias is not None:
        check_float(bias, op, "bias")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.dtype != input.dtype:
            raise TypeError(f"{op}: input has dtype {input.dtype} but {name} has dtype {t.dtype}")
    batched, unbatched = LAYOUTS[rank]
    if input.ndim not in (rank + 1, rank + 2):
        raise ValueError(f"{op}: input must be {batched} or {unbatched}, got shape {input.shape}")
    if weight.ndim != rank + 2 or 0 in weight.shape[2:]:
        raise ValueError(f"{op}: weight must be {rank + 2}-D with a non-empty kernel, got shape {weight.shape}")
    if weight.shape[0] == 0:  # torch's refusal too: no output (conv) or input (conv_transpose) channels
        raise ValueError(f"{op}: weight must have at least 1 row in dimension 0, got shape {weight.shape}")


def check_groups(op, groups, input, in_channels):
    """groups is a positive int that divides the input channels."""
    if not isinstance(groups, numbers.Integral) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    if in_channels % groups:
        raise ValueError(
            f"{op}: in_channels={in_channels} (input shape {input.shape}) is not divisible by groups={groups}")


def check_bias(op, bias, out_channels):
    if bias is not None and bias.shape != (out_channels,):
        raise ValueError(f"{op}: bias must have shape ({out_channels},) for {out_channels} output channels, "
                         f"got {bias.shape}")


def spatial(value, rank, name, min_value=None):
    """``value`` as one int per spatial dim: an int, ``rank`` ints, or one
    int in a sequence, which torch's convolutions also repeat."""
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = (value[0],) * rank
    return ntuple(value, rank, name, min_value)


def _padding(op, padding, kernel_size, stride, dilation):
    """((before, after) per dim) from an int, a tuple, 'valid' or 'same'."""
    rank = len(kernel_size)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * rank
        if padding != "same":
            raise ValueError(f"{op}: padding must be an int, {tuple_name(rank)}, 'valid' or 'same', "
                             f"got {padding!r}")
        if any(s != 1 for s in stride):
            raise ValueError(f"{op}: padding='same' is not supported for strided convolutions (stride={stride})")
        # Pad d (k - 1) in total so that the output is as large as the
        # input; an odd total puts the extra pixel after (bottom / right),
        # as torch does.
        totals = [d * (k - 1) for k, d in zip(kernel_size, dilation)]
        return tuple((t // 2, t - t // 2) for t in totals)
    return tuple((p, p) for p in spatial(padding, rank, "padding", min_value=0))


def convolution(op, rank, input, weight, bias, stride, padding, dilation, groups):
    """conv1d, conv2d or conv3d (``rank`` spatial dims, ``op`` its name in
    messages): the checks, the geometry, and the op."""
    check_operands(op, input, weight, bias, rank)
    stride = spatial(stride, rank, "stride", min_value=1)
    dilation = spatial(dilation, rank, "dilation", min_value=1)
    x = unsqueeze(input, 0) if input.ndim == rank + 1 else input
    C, O, kernel_size = x.shape[1], weight.shape[0], tuple(weight.shape[2:])
    check_groups(op, groups, input, C)
    if O % groups:
        raise ValueError(
            f"{op}: out_channels={O} (weight shape {weight.shape}) is not divisible by groups={groups}")
    if weight.shape[1] * groups != C:
        raise ValueError(
            f"{op}: input of shape {input.shape} has {C} channels, but weight of shape {weight.shape} "
            f"with groups={groups} expects {weight.shape[1] * groups}{unbatched_hint(input, rank)}")
    check_bias(op, bias, O)
    padding = _padding(op, padding, kernel_size, stride, dilation)
    in_size = tuple(x.shape[2:])
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(in_size, padding))
    spans = tuple(d * (k - 1) + 1 for k, d in zip(kernel_size, dilation))
    if any(s > p for s, p in zip(spans, padded)):
        raise ValueError(
            f"{op}: the kernel {kernel_size} with dilation {dilation} spans {spans}, larger than the "
            f"padded input {padded} (input shape {input.shape}, padding {padding}): the output size would be below 1")
    out_size = conv_output_shape(in_size, kernel_size, stride, padding, dilation)
    geometry = ConvGeometry(kernel_size, stride, padding, dilation, int(groups), in_size, out_size)
    y = ConvNd.apply(x, weight, geometry=geometry) if bias is None else \
        ConvNd.apply(x, weight, bias, geometry=geometry)
    return squeeze(y, 0) if input.ndim == rank + 1 else y


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D convolution of ``input`` (N, C, L) or (C, L) with ``weight``
    (O, C / groups, K) and optional ``bias`` (O,); torch's arguments.

    ``stride``, ``dilation``: int or 1-tuple, >= 1. ``padding``: int or
    1-tuple of zero-padding on each side, ``'valid'`` or ``'same'``.
    Computed as conv2d of a height-1 image (see conv_strategy.py); empty
    inputs and dtypes as in conv2d."""
    return convolution("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution of ``input`` (N, C, H, W) or (C, H, W) with ``weight``
    (O, C / groups, KH, KW) and optional ``bias`` (O,); torch's arguments.

    ``stride``, ``dilation``: int or (H, W) pair, >= 1. ``padding``: int or
    pair of zero-padding on each side, ``'valid'`` (none) or ``'same'``
    (output as large as the input; stride 1 only). ``groups`` splits the
    channels into independent convolutions; groups == C is depthwise.

    Empty inputs compute, as in torch: a batch of 0 gives (0, O, OH, OW)
    and zero gradients for weight and bias. Unlike torch, an input of 0
    channels (weight (O, 0, KH, KW)) gives (N, O, OH, OW), each value a
    sum of no taps plus the bias, where torch returns (N, 0, OH, OW); a
    weight of 0 output channels is refused, as in torch. float16 and
    byte-swapped arrays compute on every backend (kernels/registry.py).
    """
    return convolution("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """3-D convolution of ``input`` (N, C, D, H, W) or (C, D, H, W) (a
    clip: D frames of H x W) with ``weight`` (O, C / groups, KD, KH, KW)
    and optional ``bias`` (O,); torch's arguments.

    ``stride``, ``dilation``: int or (D, H, W) triple, >= 1. ``padding``:
    int or triple of zero-padding on each side, ``'valid'`` or ``'same'``
    (stride 1 only). ``groups`` splits the channels into independent
    convolutions. Empty inputs and dtypes as in conv2d."""
    return convolution("conv3d", 3, input, weight, bias, stride, padding, dilation, groups)
