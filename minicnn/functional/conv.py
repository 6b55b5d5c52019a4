"""2-D convolution (cross-correlation, as in torch): im2col, then one GEMM.

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
that op, and gw is the op ``Conv2dGradWeight``. Both are Functions with
their own backward, which makes the gradient itself differentiable
(double backward) at no extra cost.

Kernels
-------
How the three products are computed is the conv strategy's business
(``conv_strategy.py``): ``conv2d_forward``, ``conv2d_grad_input`` and
``conv2d_grad_weight`` pick, per call, depthwise, dense (one output
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
from ..kernels.geometry import conv_output_size
from .conv_strategy import conv2d_forward, conv2d_grad_weight
from .reduction import sum as reduce_sum
from .shape import squeeze, unsqueeze
from .utils import check_float, pair


class ConvGeometry(collections.namedtuple(
        "ConvGeometry", "kernel_size stride padding dilation groups in_size out_size")):
    """Everything about one conv2d but its data: (KH, KW), (sh, sw),
    ((top, bottom), (left, right)), (dh, dw), G, the input size (H, W) and
    the output size (OH, OW). conv_transpose2d is the adjoint of the conv2d
    its geometry describes, so both ops share it."""


class Conv2d(Function):
    """y = conv2d(x, w) + b for one ConvGeometry."""

    def __init__(self, geometry):
        self.geometry = geometry

    def forward(self, x, w, b=None):
        self.save_for_backward(x, w)
        g = self.geometry
        return conv2d_forward(x, w, b, g.stride, g.padding, g.dilation, g.groups, g.out_size)

    def backward(self, gy):
        from .conv_transpose import ConvTranspose2d  # the two ops are each other's backward
        x, w = self.saved_tensors
        gx = gw = gb = None
        if self.needs_input_grad[0]:
            gx = ConvTranspose2d.apply(gy, w, geometry=self.geometry)
        if self.needs_input_grad[1]:
            gw = Conv2dGradWeight.apply(x, gy, geometry=self.geometry)
        if len(self.needs_input_grad) == 2:  # called without a bias
            return gx, gw
        if self.needs_input_grad[2]:
            gb = reduce_sum(gy, (0, 2, 3))
        return gx, gw, gb


class Conv2dGradWeight(Function):
    """gw = sum_n gy[n, g] @ cols(x)[n, g]^T, the weight gradient of conv2d.

    It is bilinear in (x, gy): <gw, v> = <gy, conv2d(x, v)>
    = <conv_transpose2d(gy, v), x>, which gives its own backward.
    """

    def __init__(self, geometry):
        self.geometry = geometry

    def forward(self, x, gy):
        self.save_for_backward(x, gy)
        g = self.geometry
        return conv2d_grad_weight(x, gy, g.kernel_size, g.stride, g.padding, g.dilation, g.groups)

    def backward(self, ggw):
        from .conv_transpose import ConvTranspose2d
        x, gy = self.saved_tensors
        gx = ggy = None
        if self.needs_input_grad[0]:
            gx = ConvTranspose2d.apply(gy, ggw, geometry=self.geometry)
        if self.needs_input_grad[1]:
            ggy = Conv2d.apply(x, ggw, geometry=self.geometry)
        return gx, ggy


# -- argument checks shared with conv_transpose2d -------------------------
def check_operands(op, input, weight, bias):
    """Dtypes and ranks of input, weight and bias."""
    check_float(input, op, "input")
    check_float(weight, op, "weight")
    if bias is not None:
        check_float(bias, op, "bias")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.dtype != input.dtype:
            raise TypeError(f"{op}: input has dtype {input.dtype} but {name} has dtype {t.dtype}")
    if input.ndim not in (3, 4):
        raise ValueError(f"{op}: input must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape {input.shape}")
    if weight.ndim != 4 or 0 in weight.shape[2:]:
        raise ValueError(f"{op}: weight must be 4-D with a non-empty kernel, got shape {weight.shape}")
    if weight.shape[0] == 0:  # torch's refusal too: no output (conv2d) or input (conv_transpose2d) channels
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


def _padding(padding, kernel_size, stride, dilation):
    """((top, bottom), (left, right)) from an int, a pair, 'valid' or 'same'."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0), (0, 0))
        if padding != "same":
            raise ValueError(f"conv2d: padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
        if stride != (1, 1):
            raise ValueError(f"conv2d: padding='same' is not supported for strided convolutions (stride={stride})")
        # Pad d (k - 1) in total so that OH = H; an odd total puts the extra
        # pixel at the bottom / right, as torch does.
        totals = [d * (k - 1) for k, d in zip(kernel_size, dilation)]
        return tuple((t // 2, t - t // 2) for t in totals)
    ph, pw = pair(padding, "padding", min_value=0)
    return ((ph, ph), (pw, pw))


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
    check_operands("conv2d", input, weight, bias)
    stride = pair(stride, "stride", min_value=1)
    dilation = pair(dilation, "dilation", min_value=1)
    x = unsqueeze(input, 0) if input.ndim == 3 else input
    C, O, kernel_size = x.shape[1], weight.shape[0], tuple(weight.shape[2:])
    check_groups("conv2d", groups, input, C)
    if O % groups:
        raise ValueError(
            f"conv2d: out_channels={O} (weight shape {weight.shape}) is not divisible by groups={groups}")
    if weight.shape[1] * groups != C:
        raise ValueError(
            f"conv2d: input of shape {input.shape} has {C} channels, but weight of shape {weight.shape} "
            f"with groups={groups} expects {weight.shape[1] * groups}")
    check_bias("conv2d", bias, O)
    padding = _padding(padding, kernel_size, stride, dilation)
    in_size = tuple(x.shape[2:])
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(in_size, padding))
    spans = tuple(d * (k - 1) + 1 for k, d in zip(kernel_size, dilation))
    if any(s > p for s, p in zip(spans, padded)):
        raise ValueError(
            f"conv2d: the kernel {kernel_size} with dilation {dilation} spans {spans}, larger than the "
            f"padded input {padded} (input shape {input.shape}, padding {padding}): the output size would be below 1")
    # Asymmetric ('same') padding enters as the padded size with p = 0.
    out_size = tuple(conv_output_size(n, k, s, 0, d) for n, k, s, d in zip(padded, kernel_size, stride, dilation))
    geometry = ConvGeometry(kernel_size, stride, padding, dilation, int(groups), in_size, out_size)
    y = Conv2d.apply(x, weight, geometry=geometry) if bias is None else \
        Conv2d.apply(x, weight, bias, geometry=geometry)
    return squeeze(y, 0) if input.ndim == 3 else y
