"""unfold and fold: the image <-> patch-matrix rearrangement behind conv2d.

Notation
--------
N batch, C channels, H, W image size, KH, KW kernel size, OH, OW the grid
of kernel positions (the output size a conv2d with this geometry would
have), L = OH * OW the number of positions (torch calls them "blocks");
stride (sh, sw), dilation (dh, dw), padding (ph, pw) on each side.

    x: (N, C, H, W)   <->   cols: (N, C * KH * KW, L)

    OH = floor((H + 2 ph - dh (KH - 1) - 1) / sh) + 1       (OW alike)

What unfold computes (im2col)
-----------------------------
Slide a KH x KW window (its taps dh, dw apart) over the zero-padded image,
stopping every sh rows and sw columns. At each of the L positions, copy
the C * KH * KW pixels under the window into one column:

    cols[n, (c, kh, kw), (oh, ow)] = xpad[n, c, oh * sh + kh * dh, ow * sw + kw * dw]

with the row index (c, kh, kw) flattened c-major, then kh, then kw, and
the column index (oh, ow) row-major. Every pixel appears in as many
columns as there are windows covering it, so cols is about KH*KW/(sh*sw)
times the size of x.

This is why it matters: a convolution with weight w (O, C, KH, KW) is then
one matrix product, ``w.reshape(O, -1) @ cols[n]`` (O, L), reshaped to
(O, OH, OW). conv2d does exactly that (see conv.py); ``unfold`` hands the
matrix to you, so you can write your own conv, a local attention, or look
at the patches a layer sees.

What fold computes (col2im)
---------------------------
fold is the adjoint (the transpose) of unfold: each entry of cols is
added back into the pixel it was copied from, so a pixel covered by
several windows receives the sum of their entries, and entries that fall
on the padding are dropped. ``fold(unfold(x))`` is therefore not x but x
times the number of windows covering each pixel (exactly x only when the
windows do not overlap, stride >= kernel). For any x and c of matching
shapes, <unfold(x), c> = <x, fold(c)>.

Backward
--------
Both are linear, and each is the other's adjoint, so each one's backward
is the other op: the gradient of unfold is fold(gy), that of fold is
unfold(gy). Both are written as Functions on Tensors, so the gradient is
itself differentiable (double backward works).

The work is done by the ``im2col`` / ``col2im`` primitives of the kernel
registry, the same ones conv2d uses (NumPy reference in im2col.py, Numba
and CUDA versions in kernels/); this module only reshapes between their
(N, C, KH, KW, OH, OW) layout and torch's (N, C * KH * KW, L).
"""
from ..autograd import Function
from ..backend import get_array_module
from ..kernels import registry
from ..kernels.geometry import conv_output_size, pair
from . import im2col as _primitives  # noqa: F401  (registers the im2col and col2im primitives)
from .shape import squeeze, unsqueeze
from .utils import check_float


class _Geometry:
    """The sizes shared by an unfold and the fold that is its adjoint."""

    def __init__(self, channels, image_size, kernel_size, dilation, padding, stride):
        self.channels = channels
        self.image_size = image_size           # (H, W)
        self.kernel_size = kernel_size         # (KH, KW)
        self.dilation = dilation
        self.padding = ((padding[0], padding[0]), (padding[1], padding[1]))
        self.stride = stride
        self.grid = tuple(conv_output_size(n, k, s, p, d) for n, k, s, p, d in
                          zip(image_size, kernel_size, stride, padding, dilation))  # (OH, OW)


class Unfold(Function):
    """cols = im2col(x): (N, C, H, W) -> (N, C * KH * KW, L)."""

    def __init__(self, geometry):
        self.geometry = geometry

    def forward(self, x):
        g = self.geometry
        im2col = registry.lookup("im2col", get_array_module(x))
        cols = im2col(x, g.kernel_size, g.stride, g.padding, g.dilation, g.grid)  # (N, C, KH, KW, OH, OW)
        N, C = x.shape[:2]
        return cols.reshape(N, C * g.kernel_size[0] * g.kernel_size[1], g.grid[0] * g.grid[1])

    def backward(self, gy):
        return Fold.apply(gy, geometry=self.geometry)


class Fold(Function):
    """x = col2im(cols): (N, C * KH * KW, L) -> (N, C, H, W), overlaps summed."""

    def __init__(self, geometry):
        self.geometry = geometry

    def forward(self, cols):
        g = self.geometry
        col2im = registry.lookup("col2im", get_array_module(cols))
        blocks = cols.reshape((cols.shape[0], g.channels) + g.kernel_size + g.grid)
        return col2im(blocks, g.image_size, g.stride, g.padding, g.dilation)

    def backward(self, gy):
        return Unfold.apply(gy, geometry=self.geometry)


def _arguments(kernel_size, dilation, padding, stride):
    return (pair(kernel_size, "kernel_size", min_value=1), pair(dilation, "dilation", min_value=1),
            pair(padding, "padding", min_value=0), pair(stride, "stride", min_value=1))


def _describe(kernel_size, dilation, padding, stride):
    return f"kernel_size={kernel_size}, dilation={dilation}, padding={padding}, stride={stride}"


def unfold(input, kernel_size, dilation=1, padding=0, stride=1):
    """The sliding patches of ``input`` as columns (im2col), as torch's
    ``F.unfold``: (N, C, H, W) -> (N, C * KH * KW, L), or (C, H, W) ->
    (C * KH * KW, L), where L is the number of kernel positions.

    Column l holds the C * KH * KW pixels under the window at position l
    (positions row by row), ordered channel first, then kernel row, then
    kernel column; ``padding`` adds zeros on each side first. Each argument
    is an int or an (H, W) pair. See the module docstring for the formula
    and how conv2d is one matrix product with this. Only 4-D images are
    supported (torch too).
    """
    kernel_size, dilation, padding, stride = _arguments(kernel_size, dilation, padding, stride)
    check_float(input, "unfold")
    if input.ndim not in (3, 4) or 0 in input.shape[-3:]:
        raise ValueError(
            f"unfold: input must be 4-D (N, C, H, W) or 3-D (C, H, W) with non-empty C, H and W, "
            f"got shape {input.shape}")
    x = unsqueeze(input, 0) if input.ndim == 3 else input
    geometry = _Geometry(x.shape[1], tuple(x.shape[2:]), kernel_size, dilation, padding, stride)
    if min(geometry.grid) < 1:
        raise ValueError(
            f"unfold: input of shape {input.shape} with {_describe(kernel_size, dilation, padding, stride)} "
            f"gives a grid of {geometry.grid} kernel positions; the (dilated) kernel must fit in the padded input")
    cols = Unfold.apply(x, geometry=geometry)
    return squeeze(cols, 0) if input.ndim == 3 else cols


def fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """Sum columns of patches back into an image (col2im), as torch's
    ``F.fold``: (N, C * KH * KW, L) -> (N, C, H, W), or (C * KH * KW, L) ->
    (C, H, W), with (H, W) = ``output_size``.

    The adjoint of ``unfold`` with the same arguments: every entry is added
    into the pixel unfold would have copied it from, so overlapping
    windows add up and entries on the padding are dropped. L must equal
    the number of kernel positions that fit in ``output_size`` (OH * OW);
    ``output_size`` is an int or an (H, W) pair, like the other arguments.
    """
    output_size = pair(output_size, "output_size", min_value=1)
    kernel_size, dilation, padding, stride = _arguments(kernel_size, dilation, padding, stride)
    check_float(input, "fold")
    if input.ndim not in (2, 3) or 0 in input.shape[-2:]:
        raise ValueError(
            f"fold: input must be 3-D (N, C * KH * KW, L) or 2-D (C * KH * KW, L) with non-empty dims, "
            f"got shape {input.shape}")
    cols = unsqueeze(input, 0) if input.ndim == 2 else input
    taps = kernel_size[0] * kernel_size[1]
    if cols.shape[1] % taps:
        raise ValueError(
            f"fold: input of shape {input.shape} has {cols.shape[1]} rows, which is not a multiple of "
            f"KH * KW = {taps} for kernel_size={kernel_size}")
    geometry = _Geometry(cols.shape[1] // taps, output_size, kernel_size, dilation, padding, stride)
    OH, OW = geometry.grid
    if min(OH, OW) < 1 or cols.shape[2] != OH * OW:
        raise ValueError(
            f"fold: output_size={output_size} with {_describe(kernel_size, dilation, padding, stride)} "
            f"has {max(OH, 0)} x {max(OW, 0)} = {max(OH, 0) * max(OW, 0)} kernel positions, but input of "
            f"shape {input.shape} has L={cols.shape[2]} columns")
    image = Fold.apply(cols, geometry=geometry)
    return squeeze(image, 0) if input.ndim == 2 else image
