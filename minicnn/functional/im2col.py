"""im2col and col2im: turn a convolution into a matrix product.

Notation
--------
N batch, C channels; for any number of spatial dims (1 for conv1d, 2 for
conv2d, 3 for conv3d), in 2-D: H, W input height and width, KH, KW kernel
size, OH, OW output height and width; sh, sw strides, dh, dw dilations;
``padding = ((top, bottom), (left, right))``, one (before, after) pair
per dim. 1-D drops H, 3-D adds a depth D in front (KD, OD, sd, dd).

im2col copies, for every output pixel (oh, ow) and kernel tap (kh, kw), the
input pixel that tap sees:

    cols[n, c, kh, kw, oh, ow] = xpad[n, c, oh * sh + kh * dh, ow * sw + kw * dw]

where ``xpad`` is x with zeros around it (in 3-D, one more index on each
side: cols[n, c, kd, kh, kw, od, oh, ow], od * sd + kd * dd). Read as a
matrix with rows (c, kh, kw) and columns (oh, ow), the columns of one
image are the patches the kernel slides over, and a convolution is W
(O x C*KH*KW) times this matrix.

col2im is the adjoint (the transpose) of im2col: each entry of ``cols``
adds back into the input pixel it was copied from, so a pixel seen by
several overlapping patches receives the sum of their entries. For any
x and c of matching shapes, <im2col(x), c> = <x, col2im(c)>; that is what
makes col2im the backward of im2col and the forward of conv_transpose2d.

Both loop over the kernel taps (KH * KW in 2-D, KD * KH * KW in 3-D) and
move one strided slice of the whole batch per tap, so the Python loop is
short and each step is one array operation (NumPy or CuPy alike). The
same code serves every number of spatial dims: a tap is a tuple of
kernel indices, and its slice one ``slice`` per dim.

These are the readable references of the registry's ``im2col`` and
``col2im`` primitives, which the im2col path of the conv strategy
(``conv_strategy.py``) calls; ``kernels/cpu/im2col.py`` computes the same
arrays with Numba, a tile of the batch at a time, and
``kernels/cuda/im2col.py`` on the GPU. To call them yourself, use
``F.unfold`` and ``F.fold`` (fold.py): the same primitives with torch's
names, arguments and (N, C * KH * KW, L) shapes, and with gradients.
"""
import itertools

from minicnn.kernels import registry

from ..backend import get_array_module
from ..kernels.geometry import conv_output_shape


def _tap_slices(tap, stride, dilation, out_size):
    """The slice of every spatial dim of the padded input that kernel tap
    ``tap`` (one index per dim) reads for the whole output grid."""
    return tuple(slice(k * d, k * d + s * (o - 1) + 1, s) for k, s, d, o in zip(tap, stride, dilation, out_size))


def im2col(x, kernel_size, stride, padding, dilation, out_size=None):
    """Patches of ``x`` (N, C, *in_size) as an array (N, C, *kernel_size,
    *out_size): (N, C, KH, KW, OH, OW) in 2-D.

    ``kernel_size``, ``stride`` and ``dilation`` have one int per spatial
    dim; ``padding`` one (before, after) pair per dim. ``out_size``
    defaults to the largest grid that fits; a smaller one may be given
    (conv_transpose's adjoint needs that when output_padding >= stride).
    """
    xp = get_array_module(x)
    N, C = x.shape[:2]
    if out_size is None:
        out_size = conv_output_shape(x.shape[2:], kernel_size, stride, padding, dilation)
    if any(lo or hi for lo, hi in padding):
        x = xp.pad(x, ((0, 0), (0, 0)) + tuple(padding))
    cols = xp.empty((N, C) + tuple(kernel_size) + tuple(out_size), dtype=x.dtype)
    for tap in itertools.product(*map(range, kernel_size)):
        cols[(slice(None), slice(None)) + tap] = x[(Ellipsis,) + _tap_slices(tap, stride, dilation, out_size)]
    return cols


def col2im(cols, in_size, stride, padding, dilation):
    """The adjoint of ``im2col``: (N, C, *kernel_size, *out_size) -> (N, C,
    *in_size), (N, C, KH, KW, OH, OW) -> (N, C, H, W) in 2-D.

    ``in_size`` is the size of the unpadded input; the other arguments
    are those given to im2col. Entries that fall on the padding are
    dropped (their gradient has nowhere to go).
    """
    xp = get_array_module(cols)
    rank = len(in_size)
    N, C = cols.shape[:2]
    kernel_size, out_size = cols.shape[2:2 + rank], cols.shape[2 + rank:]
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(in_size, padding))
    x = xp.zeros((N, C) + padded, dtype=cols.dtype)
    for tap in itertools.product(*map(range, kernel_size)):
        # Within one tap the strided positions are distinct, so += on the
        # slice adds every entry exactly once; overlaps between taps add
        # up across loop steps.
        x[(Ellipsis,) + _tap_slices(tap, stride, dilation, out_size)] += cols[(slice(None), slice(None)) + tap]
    return x[(Ellipsis,) + tuple(slice(lo, lo + n) for n, (lo, _) in zip(in_size, padding))]


registry.register("im2col", "numpy", im2col)
registry.register("im2col", "numba", "minicnn.kernels.cpu.im2col:im2col")
registry.register("col2im", "numpy", col2im)
registry.register("col2im", "numba", "minicnn.kernels.cpu.im2col:col2im")
