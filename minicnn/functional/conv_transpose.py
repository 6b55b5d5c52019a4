"""2-D transposed convolution: one GEMM, then col2im.

Notation
--------
N batch, C input channels, H, W input size, O output channels,
KH, KW kernel size, OH, OW output size, G groups;
Cg = C / G and Og = O / G channels per group, K = Og * KH * KW,
L = H * W input pixels.

    x: (N, C, H, W)   w: (C, Og, KH, KW)   b: (O,)   y, gy: (N, O, OH, OW)

    OH = (H - 1) sh - 2 ph + dh (KH - 1) + output_padding_h + 1

What it computes
----------------
conv_transpose2d is the adjoint (the transpose) of conv2d: for the conv2d
with the same weight, stride, padding and dilation that maps an
(OH, OW) image to an (H, W) one,

    <conv_transpose2d(x, w), z> = <x, conv2d(z, w)>   for every z.

(It is conv2d's backward with respect to its input, which is why it
"upsamples".) Each input pixel scatters its C values, weighted by the
kernel, into a KH x KW window of the output; overlapping windows add up.

Forward
-------
Run conv2d's two steps backwards: the adjoint of "cols -> w @ cols" is
"x -> w^T @ x", and the adjoint of im2col is col2im:

    cols[n, g] = w[g]^T @ x[n, g]      (K, Cg) @ (Cg, L) -> (K, L)
    y          = col2im(cols)          (N, O, KH, KW, H, W) -> (N, O, OH, OW)

For a 1x1 kernel with stride 1 and no padding, cols already is y.

Backward
--------
The adjoint of an adjoint is the op itself, so gx = conv2d(gy, w), which
runs im2col on gy. gw is the same GEMM of columns as conv2d's weight
gradient with the roles swapped (``Conv2dGradWeight(gy, x)``), and gb sums
gy over N, OH, OW. Both run im2col on the grid (H, W) that the shared
``ConvGeometry`` names, not the largest grid that fits: with
output_padding >= stride (allowed when the dilation is larger) a conv2d on
(OH, OW) would fit more rows than x has.

Memory
------
Forward saves x and w, its own inputs, and nothing else. The columns of
the forward pass, (N, O, KH, KW, H, W), are KH*KW*O/C times the size of x
and are freed as soon as col2im has summed them; backward recomputes
im2col(gy) for gx and again for gw (each op builds its own), which is
the price of not holding them between forward and backward.
"""
from ..autograd import Function
from ..kernels.geometry import conv_transpose_output_size
from .conv import Conv2d, Conv2dGradWeight, ConvGeometry, check_bias, check_groups, check_operands
from .conv_strategy import conv2d_grad_input
from .utils import pair
from .reduction import sum as reduce_sum
from .shape import squeeze, unsqueeze


class ConvTranspose2d(Function):
    """y = conv_transpose2d(x, w) + b: the adjoint of the conv2d described
    by ``geometry`` (whose input is y and whose output is x)."""

    def __init__(self, geometry):
        self.geometry = geometry

    def forward(self, x, w, b=None):
        self.save_for_backward(x, w)
        g = self.geometry
        # The input gradient of the conv2d that g describes: GEMM, then col2im.
        y = conv2d_grad_input(x, w, g.stride, g.padding, g.dilation, g.groups, g.in_size)
        if b is not None:
            y += b.reshape(1, -1, 1, 1)
        return y

    def backward(self, gy):
        x, w = self.saved_tensors
        gx = gw = gb = None
        if self.needs_input_grad[0]:
            gx = Conv2d.apply(gy, w, geometry=self.geometry)
        if self.needs_input_grad[1]:
            gw = Conv2dGradWeight.apply(gy, x, geometry=self.geometry)
        if len(self.needs_input_grad) == 2:  # called without a bias
            return gx, gw
        if self.needs_input_grad[2]:
            gb = reduce_sum(gy, (0, 2, 3))
        return gx, gw, gb


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed convolution of ``input`` (N, C, H, W) or (C, H, W) with
    ``weight`` (C, O / groups, KH, KW) and optional ``bias`` (O,); torch's
    arguments and argument order.

    ``padding`` (int or pair, >= 0) removes that many pixels from each
    side of the output (it is the padding of the conv2d this op is the
    adjoint of). ``output_padding`` adds pixels at the bottom / right to
    choose among the output sizes that conv2d would map to H; each must be
    smaller than the stride or the dilation of its dim.

    Empty inputs compute, as in torch: a batch of 0 gives (0, O, OH, OW)
    and zero gradients for weight and bias; 0 output channels (weight
    (C, 0, KH, KW)) give (N, 0, OH, OW), where torch's CPU build fails in
    its oneDNN kernel; 0 input channels (weight (0, ...)) are refused, as
    in torch. float16 and byte-swapped arrays compute on every backend
    (kernels/registry.py).
    """
    check_operands("conv_transpose2d", input, weight, bias)
    stride = pair(stride, "stride", min_value=1)
    dilation = pair(dilation, "dilation", min_value=1)
    ph, pw = pair(padding, "padding", min_value=0)
    output_padding = pair(output_padding, "output_padding", min_value=0)
    for op, s, d in zip(output_padding, stride, dilation):
        if op >= s and op >= d:
            raise ValueError(
                f"conv_transpose2d: output_padding {output_padding} must be smaller than either "
                f"stride {stride} or dilation {dilation} in each dim")
    x = unsqueeze(input, 0) if input.ndim == 3 else input
    C, kernel_size = x.shape[1], tuple(weight.shape[2:])
    if weight.shape[0] != C:
        raise ValueError(
            f"conv_transpose2d: input of shape {input.shape} has {C} channels, but weight of shape "
            f"{weight.shape} expects {weight.shape[0]} (weight is (in_channels, out_channels / groups, KH, KW))")
    check_groups("conv_transpose2d", groups, input, C)
    O = weight.shape[1] * int(groups)
    check_bias("conv_transpose2d", bias, O)
    out_size = tuple(x.shape[2:])
    in_size = tuple(conv_transpose_output_size(n, k, s, p, d, o) for n, k, s, p, d, o in
                    zip(out_size, kernel_size, stride, (ph, pw), dilation, output_padding))
    if min(in_size) < 1:
        raise ValueError(
            f"conv_transpose2d: the output size {in_size} is below 1 for input shape {input.shape}, "
            f"weight shape {weight.shape}, stride {stride}, padding {(ph, pw)}, dilation {dilation}, "
            f"output_padding {output_padding}")
    geometry = ConvGeometry(kernel_size, stride, ((ph, ph), (pw, pw)), dilation, int(groups), in_size, out_size)
    y = ConvTranspose2d.apply(x, weight, geometry=geometry) if bias is None else \
        ConvTranspose2d.apply(x, weight, bias, geometry=geometry)
    return squeeze(y, 0) if input.ndim == 3 else y
