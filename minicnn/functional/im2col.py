"""im2col and col2im: turn a convolution into a matrix product.

Notation
--------
N batch, C channels, H, W input height and width, KH, KW kernel size,
OH, OW output height and width; sh, sw strides, dh, dw dilations;
``padding = ((top, bottom), (left, right))``.

im2col copies, for every output pixel (oh, ow) and kernel tap (kh, kw), the
input pixel that tap sees:

    cols[n, c, kh, kw, oh, ow] = xpad[n, c, oh * sh + kh * dh, ow * sw + kw * dw]

where ``xpad`` is x with zeros around it. Read as a matrix with rows
(c, kh, kw) and columns (oh, ow), the columns of one image are the patches
the kernel slides over, and a convolution is W (O x C*KH*KW) times this
matrix.

col2im is the adjoint (the transpose) of im2col: each entry of ``cols``
adds back into the input pixel it was copied from, so a pixel seen by
several overlapping patches receives the sum of their entries. For any
x and c of matching shapes, <im2col(x), c> = <x, col2im(c)>; that is what
makes col2im the backward of im2col and the forward of conv_transpose2d.

Both loop over the KH * KW kernel taps and move one strided slice of the
whole batch per tap, so the Python loop is short and each step is one
array operation (NumPy or CuPy alike).

These are the readable references of the registry's ``im2col`` and
``col2im`` primitives, which the im2col path of the conv strategy
(``conv_strategy.py``) calls; ``kernels/cpu/im2col.py`` computes the same
arrays with Numba, a tile of the batch at a time, and
``kernels/cuda/im2col.py`` on the GPU. To call them yourself, use
``F.unfold`` and ``F.fold`` (fold.py): the same primitives with torch's
names, arguments and (N, C * KH * KW, L) shapes, and with gradients.
"""
from minicnn.kernels import registry

from ..backend import get_array_module
from ..kernels.geometry import conv_output_size


def im2col(x, kernel_size, stride, padding, dilation, out_size=None):
    """Patches of ``x`` (N, C, H, W) as an array (N, C, KH, KW, OH, OW).

    ``kernel_size``, ``stride`` and ``dilation`` are (H, W) pairs;
    ``padding`` is ((top, bottom), (left, right)). ``out_size`` (OH, OW)
    defaults to the largest grid that fits; a smaller one may be given
    (conv_transpose2d's adjoint needs that when output_padding >= stride).
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    KH, KW = kernel_size
    (sh, sw), (dh, dw) = stride, dilation
    (top, bottom), (left, right) = padding
    if out_size is None:
        out_size = (conv_output_size(H + top + bottom, KH, sh, 0, dh),
                    conv_output_size(W + left + right, KW, sw, 0, dw))
    OH, OW = out_size
    if top or bottom or left or right:
        x = xp.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    cols = xp.empty((N, C, KH, KW, OH, OW), dtype=x.dtype)
    for kh in range(KH):
        h0 = kh * dh  # first padded row this tap sees
        for kw in range(KW):
            w0 = kw * dw
            cols[:, :, kh, kw] = x[:, :, h0:h0 + sh * (OH - 1) + 1:sh, w0:w0 + sw * (OW - 1) + 1:sw]
    return cols


def col2im(cols, in_size, stride, padding, dilation):
    """The adjoint of ``im2col``: (N, C, KH, KW, OH, OW) -> (N, C, H, W).

    ``in_size`` is (H, W), the size of the unpadded image; the other
    arguments are those given to im2col. Entries that fall on the padding
    are dropped (their gradient has nowhere to go).
    """
    xp = get_array_module(cols)
    N, C, KH, KW, OH, OW = cols.shape
    H, W = in_size
    (sh, sw), (dh, dw) = stride, dilation
    (top, bottom), (left, right) = padding
    x = xp.zeros((N, C, H + top + bottom, W + left + right), dtype=cols.dtype)
    for kh in range(KH):
        h0 = kh * dh
        for kw in range(KW):
            w0 = kw * dw
            # Within one tap the strided positions are distinct, so += on the
            # slice adds every entry exactly once; overlaps between taps add
            # up across loop steps.
            x[:, :, h0:h0 + sh * (OH - 1) + 1:sh, w0:w0 + sw * (OW - 1) + 1:sw] += cols[:, :, kh, kw]
    return x[:, :, top:top + H, left:left + W]


registry.register("im2col", "numpy", im2col)
registry.register("im2col", "numba", "minicnn.kernels.cpu.im2col:im2col")
registry.register("col2im", "numpy", col2im)
registry.register("col2im", "numba", "minicnn.kernels.cpu.im2col:col2im")
