"""Resizing: interpolate with mode 'nearest' (3-D, 4-D or 5-D input),
'linear' (3-D) or 'bilinear' (4-D), as upsampling heads use it.

Notation
--------
N batch, C channels, H, W input height and width (L for 1-D signals);
OH, OW (OL) output size. Along one resized axis, I is the input size and O
the output size.

Index rules (torch's, exactly)
------------------------------
Each axis is resized on its own. Output size: ``size``, or
``floor(I * scale_factor)``. The step between outputs, in input pixels:

* ``(I - 1) / (O - 1)`` with ``align_corners=True`` (0 when O == 1): the
  corner pixels' centres line up;
* else ``1 / scale_factor`` when ``scale_factor`` was given (and not
  ``recompute_scale_factor``), else ``I / O``.

torch does this arithmetic in float32 for 'nearest' and in the input's
precision for the linear modes, and so does minicnn, so that indices that
fall on a rounding edge agree.

* nearest: output o copies input ``min(floor(o * step), I - 1)``.
* linear: output o sits at the real input position ``src = o * step``
  (align_corners) or ``(o + 0.5) * step - 0.5`` clamped at 0 (pixel
  centres line up); it mixes ``i0 = floor(src)`` and ``i1 = i0 + 1``
  (both at most I - 1) with weights ``1 - λ`` and ``λ = src - i0``.

O == I copies the axis in both modes, as torch does.

How it is computed
------------------
'nearest' is an index gather along each axis (``x[:, :, rows][..., cols]``):
its backward, from getitem, adds each output's gradient to the input it
copied. Linear resizing along an axis is a linear map: an (O, I) matrix A
with 1 - λ and λ in each row. So bilinear is ``y = A_h x A_w^T``, two
matmuls, and backward is ``gx = A_h^T gy A_w``. The matrices are small
(O x I, versus N*C*O*I for the data); backward keeps only them, not x.
"""
import math
import numbers

import numpy

from ..autograd import Function
from ..backend import get_array_module
from .utils import check_float


class Resample(Function):
    """y = A_h x A_w^T (A_h None for 1-D signals: y = x A_w^T)."""

    def __init__(self, a_h, a_w):
        self.a_h, self.a_w = a_h, a_w

    def forward(self, x):
        xp = get_array_module(x)
        y = xp.matmul(x, self.a_w.T)
        return y if self.a_h is None else xp.matmul(self.a_h, y)

    def backward(self, gy):
        from ..tensor import Tensor
        from .linalg import matmul
        # Written with Tensor ops, so it is itself differentiable.
        gx = matmul(gy, Tensor._wrap(self.a_w))
        return gx if self.a_h is None else matmul(Tensor._wrap(self.a_h.T), gx)


def _nearest_index(i, o, scale_factor):
    """The input index each of the o outputs copies (float32 arithmetic)."""
    if o == i:
        return numpy.arange(o)
    if o == 2 * i:
        return numpy.arange(o) // 2
    f32 = numpy.float32
    step = f32(1.0 / scale_factor) if scale_factor else f32(i) / f32(o)
    src = numpy.floor(numpy.arange(o, dtype=f32) * step).astype(numpy.int64)
    return numpy.minimum(src, i - 1)


def _linear_matrix(i, o, scale_factor, align_corners, dtype):
    """The (o, i) matrix of linear interpolation along one axis."""
    a = numpy.zeros((o, i), dtype=dtype)
    rows = numpy.arange(o)
    if o == i:
        a[rows, rows] = 1
        return a
    t = numpy.dtype(dtype).type  # do the arithmetic in the data's precision
    if align_corners:
        step = t(i - 1) / t(o - 1) if o > 1 else t(0)
        src = step * rows.astype(dtype)
    else:
        step = t(1.0 / scale_factor) if scale_factor else t(i) / t(o)
        src = numpy.maximum(step * (rows.astype(dtype) + t(0.5)) - t(0.5), t(0))
    i0 = numpy.minimum(numpy.floor(src).astype(numpy.int64), i - 1)
    i1 = numpy.minimum(i0 + 1, i - 1)
    lam = numpy.clip(src - i0, 0, 1).astype(dtype)
    a[rows, i0] = 1 - lam
    a[rows, i1] += lam  # i1 == i0 at the last input: the weights add up
    return a


_MODES = {"nearest": (3, 4, 5), "linear": (3,), "bilinear": (4,)}


def _output_sizes(op, input, size, scale_factor, recompute_scale_factor):
    """Output sizes of the resized axes, and the scale factors the index
    rules use (None where the step is I / O)."""
    spatial = input.shape[2:]
    k = len(spatial)
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{op}: give exactly one of size and scale_factor, got size={size!r}, "
                         f"scale_factor={scale_factor!r}")
    if size is not None:
        sizes = (size,) * k if isinstance(size, numbers.Integral) else tuple(size)
        if len(sizes) != k or not all(isinstance(s, numbers.Integral) for s in sizes):
            raise ValueError(f"{op}: size must be an int or {k} ints for input of shape {input.shape}, got {size!r}")
        scales = (None,) * k
    else:
        scales = (scale_factor,) * k if isinstance(scale_factor, numbers.Real) else tuple(scale_factor)
        if len(scales) != k or not all(isinstance(s, numbers.Real) and s > 0 for s in scales):
            raise ValueError(f"{op}: scale_factor must be a positive number or {k} of them for input of "
                             f"shape {input.shape}, got {scale_factor!r}")
        sizes = tuple(int(math.floor(i * float(s))) for i, s in zip(spatial, scales))
        if recompute_scale_factor:
            scales = (None,) * k
    if min(sizes) < 1:
        raise ValueError(f"{op}: output size {tuple(sizes)} for input of shape {input.shape} must be >= 1")
    return tuple(int(s) for s in sizes), tuple(None if s is None else float(s) for s in scales)


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None):
    """Resize the spatial dims of (N, C, L), (N, C, H, W) (or, for
    'nearest', (N, C, D, H, W)) input to ``size`` or by ``scale_factor``;
    see the module docstring for where each output reads from."""
    op = "interpolate"
    check_float(input, op)
    if mode not in _MODES:
        raise ValueError(f"{op}: mode must be one of {sorted(_MODES)}, got {mode!r}")
    if input.ndim not in _MODES[mode]:
        raise ValueError(f"{op}: mode {mode!r} expects input with {' or '.join(map(str, _MODES[mode]))} dims, "
                         f"got shape {input.shape}")
    if mode == "nearest" and align_corners is not None:
        raise ValueError(f"{op}: align_corners can only be set with mode 'linear' or 'bilinear'")
    if 0 in input.shape[1:]:
        raise ValueError(f"{op}: input of shape {input.shape} has an empty channel or spatial dim")
    sizes, scales = _output_sizes(op, input, size, scale_factor, recompute_scale_factor)
    spatial = input.shape[2:]
    xp = get_array_module(input.data)

    if mode == "nearest":
        y = input
        for axis, (i, o, s) in enumerate(zip(spatial, sizes, scales)):
            if o != i:
                index = xp.asarray(_nearest_index(i, o, s))
                y = y[(slice(None),) * (2 + axis) + (index,)]
        return y

    dtype = input.dtype if input.dtype == numpy.float64 else numpy.float32
    mats = [xp.asarray(_linear_matrix(i, o, s, bool(align_corners), dtype).astype(input.dtype))
            for i, o, s in zip(spatial, sizes, scales)]
    return Resample.apply(input, a_h=mats[0] if len(mats) == 2 else None, a_w=mats[-1])


__all__ = ["interpolate"]
