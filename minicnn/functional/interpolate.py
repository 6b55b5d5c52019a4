"""Resizing: interpolate with mode 'nearest' (3-D, 4-D or 5-D input),
'linear' (3-D), 'bilinear' (4-D) or 'trilinear' (5-D), as upsampling
heads use it.

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

O == I copies the axis in every mode, and 'nearest' with O == 2I reads
o // 2, both without float arithmetic, as torch does.

How it is computed
------------------
Resizing acts on each axis separately, and along one axis it is a linear
map: an (O, I) matrix A whose row o holds 1 - λ and λ (linear) or a single
1 (nearest). So bilinear is ``y = A_h x A_w^T``, two matmuls, and backward
is ``gx = A_h^T gy A_w``, the same two matmuls transposed. Forward for
'nearest' is the equivalent index gather (``take`` along each axis). The
matrices are small (O x I, against N*C*O*I for the data); backward keeps
only them, not x.
"""
import math
import numbers

import numpy

from ..autograd import Function
from ..backend import get_array_module
from .utils import check_float


class Resample(Function):
    """Resize the trailing axes, one at a time: along each, y = A x with its
    (O, I) matrix A, and gx = A^T gy. For 'nearest' each row of A holds a
    single 1 and forward is the equivalent gather ``x[..., index, ...]``:
    faster, and an inf input stays inf instead of 0 * inf = nan spreading
    to its neighbours."""

    def __init__(self, mats, indices=None):
        self.mats, self.indices = mats, indices  # one per resized axis, last axes

    def forward(self, x):
        xp = get_array_module(x)
        axes = range(x.ndim - len(self.mats), x.ndim)
        for axis, a, index in zip(axes, self.mats, self.indices or [None] * len(self.mats)):
            if index is not None:
                x = xp.take(x, index, axis=axis)
            else:  # move the axis last, multiply by A^T, move it back
                x = xp.swapaxes(xp.matmul(xp.swapaxes(x, axis, -1), a.T), axis, -1)
        return x

    def backward(self, gy):
        from ..tensor import Tensor
        from .linalg import matmul
        from .shape import transpose
        # Written with Tensor ops, so it is itself differentiable.
        g = gy
        for axis, a in zip(range(gy.ndim - len(self.mats), gy.ndim), self.mats):
            g = transpose(matmul(transpose(g, axis, -1), Tensor._wrap(a)), axis, -1)
        return g


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


_MODES = {"nearest": (3, 4, 5), "linear": (3,), "bilinear": (4,), "trilinear": (5,)}


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
        raise ValueError(f"{op}: align_corners can only be set with mode 'linear', 'bilinear' or 'trilinear'")
    if 0 in input.shape[1:]:
        raise ValueError(f"{op}: input of shape {input.shape} has an empty channel or spatial dim")
    sizes, scales = _output_sizes(op, input, size, scale_factor, recompute_scale_factor)
    spatial = input.shape[2:]
    xp = get_array_module(input.data)
    axes = list(zip(spatial, sizes, scales))  # (I, O, scale_factor or None) per resized axis
    if mode == "nearest":
        indices = [xp.asarray(_nearest_index(i, o, sc)) for i, o, sc in axes]
        mats = [(index[:, None] == xp.arange(i)).astype(input.dtype) for index, (i, _, _) in zip(indices, axes)]
        return Resample.apply(input, mats=mats, indices=indices)
    dtype = input.dtype if input.dtype == numpy.float64 else numpy.float32
    mats = [xp.asarray(_linear_matrix(i, o, sc, bool(align_corners), dtype).astype(input.dtype))
            for i, o, sc in axes]
    return Resample.apply(input, mats=mats)


__all__ = ["interpolate"]
