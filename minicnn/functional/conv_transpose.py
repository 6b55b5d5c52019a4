"""Transposed convolution over 1, 2 or 3 spatial dims: one GEMM, then col2im.

conv_transpose1d, conv_transpose2d and conv_transpose3d are one op,
``ConvTransposeNd``; the derivation below is written for 2-D and holds
for any rank, as in conv.py.

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
gy over N, OH, OW. All run im2col on the grid (H, W) that the shared
``ConvGeometry`` names, not the largest grid that fits: with
output_padding >= stride (allowed when the dilation is larger) a conv2d on
(OH, OW) would fit more rows than x has. gw is ``ConvNdGradWeight(gy, x)``.

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
from .conv import (ConvGeometry, ConvNd, ConvNdGradWeight, check_bias, check_groups, check_operands, spatial,
                   unbatched_hint)
from .conv_strategy import conv_grad_input
from .reduction import sum as reduce_sum
from .shape import squeeze, unsqueeze


class ConvTransposeNd(Function):
    """y = conv_transpose(x, w) + b: the adjoint of the convolution
    described by ``geometry`` (whose input is y and whose output is x)."""

    def __init__(self, geometry):
        self.geometry = geometry

    @property
    def name(self):
        return f"ConvTranspose{len(self.geometry.kernel_size)}d"

    def forward(self, x, w, b=None):
        self.save_for_backward(x, w)
        g = self.geometry
        # The input gradient of the convolution that g describes: GEMM, then col2im.
        y = conv_grad_input(x, w, g.stride, g.padding, g.dilation, g.groups, g.in_size)
        if b is not None:
            y += b.reshape((-1,) + (1,) * len(g.in_size))
        return y

    def backward(self, gy):
        x, w = self.saved_tensors
        gx = gw = gb = None
        if self.needs_input_grad[0]:
            gx = ConvNd.apply(gy, w, geometry=self.geometry)
        if self.needs_input_grad[1]:
            gw = ConvNdGradWeight.apply(gy, x, geometry=self.geometry)
        if len(self.needs_input_grad) == 2:  # called without a bias
            return gx, gw
        if self.needs_input_grad[2]:
            gb = reduce_sum(gy, (0,) + tuple(range(2, gy.ndim)))
        return gx, gw, gb


#: The 2-D name the op had before it took any rank.
ConvTranspose2d = ConvTransposeNd


def transposed_convolution(op, rank, input, weight, bias, stride, padding, output_padding, groups, dilation):
    """conv_transpose1d, 2d or 3d (``rank`` spatial dims, ``op`` its name
    in messages): the checks, the geometry, and the op."""
    check_operands(op, input, weight, bias, rank)
    stride = spatial(stride, rank, "stride", min_value=1)
    dilation = spatial(dilation, rank, "dilation", min_value=1)
    padding = spatial(padding, rank, "padding", min_value=0)
    output_padding = spatial(output_padding, rank, "output_padding", min_value=0)
    for op_, s, d in zip(output_padding, stride, dilation):
        if op_ >= s and op_ >= d:
            raise ValueError(
                f"{op}: output_padding {output_padding} must be smaller than either "
                f"stride {stride} or dilation {dilation} in each dim")
    x = unsqueeze(input, 0) if input.ndim == rank + 1 else input
    C, kernel_size = x.shape[1], tuple(weight.shape[2:])
    if weight.shape[0] != C:
        raise ValueError(
            f"{op}: input of shape {input.shape} has {C} channels, but weight of shape "
            f"{weight.shape} expects {weight.shape[0]} (weight is (in_channels, out_channels / groups, *kernel_size))"
            f"{unbatched_hint(input, rank)}")
    check_groups(op, groups, input, C)
    O = weight.shape[1] * int(groups)
    check_bias(op, bias, O)
    out_size = tuple(x.shape[2:])
    in_size = tuple(conv_transpose_output_size(n, k, s, p, d, o) for n, k, s, p, d, o in
                    zip(out_size, kernel_size, stride, padding, dilation, output_padding))
    if min(in_size) < 1:
        raise ValueError(
            f"{op}: the output size {in_size} is below 1 for input shape {input.shape}, "
            f"weight shape {weight.shape}, stride {stride}, padding {padding}, dilation {dilation}, "
            f"output_padding {output_padding}")
    geometry = ConvGeometry(kernel_size, stride, tuple((p, p) for p in padding), dilation, int(groups), in_size,
                            out_size)
    y = ConvTransposeNd.apply(x, weight, geometry=geometry) if bias is None else \
        ConvTransposeNd.apply(x, weight, bias, geometry=geometry)
    return squeeze(y, 0) if input.ndim == rank + 1 else y


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed convolution of ``input`` (N, C, L) or (C, L) with
    ``weight`` (C, O / groups, K) and optional ``bias`` (O,); torch's
    arguments and argument order, each geometry argument an int or a
    1-tuple. See conv_transpose2d."""
    return transposed_convolution("conv_transpose1d", 1, input, weight, bias, stride, padding, output_padding,
                                  groups, dilation)


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
    return transposed_convolution("conv_transpose2d", 2, input, weight, bias, stride, padding, output_padding,
                                  groups, dilation)


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed convolution of ``input`` (N, C, D, H, W) or (C, D, H, W)
    with ``weight`` (C, O / groups, KD, KH, KW) and optional ``bias``
    (O,); torch's arguments and argument order, each geometry argument an
    int or a (D, H, W) triple. See conv_transpose2d."""
    return transposed_convolution("conv_transpose3d", 3, input, weight, bias, stride, padding, output_padding,
                                  groups, dilation)
