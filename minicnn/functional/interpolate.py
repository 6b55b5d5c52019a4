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
  centres line up; torch rounds this multiply-add once, as a fused
  multiply-add, and so does minicnn in float32); it mixes
  ``i0 = floor(src)`` and ``i1 = i0 + 1`` (both at most I - 1) with
  weights ``1 - λ`` and ``λ = src - i0``.

O == I copies the axis in every mode, and 'nearest' with O == 2I reads
o // 2, both without float arithmetic, as torch does.

Arguments as torch takes them: ``size`` an int or a tuple of ints (True or
2.0 is a TypeError), ``scale_factor`` positive numbers whose output size
fits in int64 (inf is a ValueError, where torch raises its overflow
RuntimeError). Differences from torch: modes 'bicubic' and 'area' and
``antialias`` are not implemented; in float64 torch's fused multiply-add
is not reproduced (the results differ by about one rounding, 1e-16).

How it is computed
------------------
Resizing acts on each axis separately, and along one axis every output
reads at most two inputs (one for 'nearest'): the "taps" of the axis, an
index array and a weight array per tap, O long, computed once. A pass
along an axis is a gather and a multiply-add,

    y[..., o, ...] = w0[o] x[..., i0[o], ...] + w1[o] x[..., i1[o], ...],

so bilinear is two such passes (W first, then H: the order of torch's
nested sum), with memory and time proportional to the data, never an
O x I matrix. NaN and
inf spread exactly as in torch: to the outputs whose taps read them (a tap
of weight 0 too: 0 * nan is nan there as well).

Backward is the adjoint pass, a scatter-add with the same taps:
``gx[..., i, ...] = sum over o with i0[o] == i of w0[o] gy[..., o, ...]``
plus the same for i1. Tap indices never decrease with o, so the outputs
that add into one input are a contiguous run, and the sum is one
``add.reduceat`` per tap (NumPy and CuPy both have it). The two passes are
each other's adjoint, so backward is differentiable again. Backward keeps
only the taps, not x.
"""
import math
import numbers

import numpy

from ..autograd import Function
from ..backend import get_array_module
from .elementwise import clone
from .utils import check_float


def _along(axis, ndim):
    """The shape that broadcasts an (O,) weight array along ``axis``."""
    return (-1,) + (1,) * (ndim - 1 - axis)


def _gather(x, axis, taps):
    """One pass along ``axis``: sum over taps of w * x[..., index, ...]
    (no weight: a plain gather)."""
    xp = get_array_module(x)
    y = None
    for index, weight in taps:
        term = xp.take(x, index, axis=axis)
        if weight is not None:
            term *= weight.reshape(_along(axis, x.ndim))
        if y is None:
            y = term
        else:  # in place: an output-sized temporary less
            y += term
    return y


def _scatter(g, axis, taps, size):
    """The adjoint of ``_gather``: an axis of ``size`` inputs, each the sum
    of the (weighted) gradients of the outputs that read it."""
    xp = get_array_module(g)
    shape = list(g.shape)
    shape[axis] = size
    gx = xp.zeros(shape, dtype=g.dtype)
    head = (slice(None),) * axis
    for index, weight in taps:
        if weight is not None:
            g_w = g * weight.reshape(_along(axis, g.ndim))
        else:
            g_w = g
        # index is nondecreasing: each input's outputs form one run
        # starting where the index changes.
        first = xp.concatenate([xp.ones(1, dtype=bool), index[1:] != index[:-1]])
        starts = xp.flatnonzero(first)
        gx[head + (index[starts],)] += xp.add.reduceat(g_w, starts, axis=axis)
    return gx


class Resample(Function):
    """Resize the trailing axes: one gather pass per axis (last axis first),
    ``taps`` one list of (index, weight) pairs per resized axis, None for
    an axis that keeps its size. Backward is ``ResampleAdjoint``."""

    def __init__(self, taps, in_sizes):
        self.taps, self.in_sizes = taps, in_sizes

    def forward(self, x):
        first = x.ndim - len(self.taps)
        for k in reversed(range(len(self.taps))):
            if self.taps[k] is not None:
                x = _gather(x, first + k, self.taps[k])
        return x

    def backward(self, gy):
        return ResampleAdjoint.apply(gy, taps=self.taps, in_sizes=self.in_sizes)


class ResampleAdjoint(Function):
    """The transpose of ``Resample``: scatter-add each resized axis back to
    its input size. Its backward is ``Resample`` (double backward)."""

    def __init__(self, taps, in_sizes):
        self.taps, self.in_sizes = taps, in_sizes

    def forward(self, g):
        first = g.ndim - len(self.taps)
        for k, (taps, size) in enumerate(zip(self.taps, self.in_sizes)):
            if taps is not None:
                g = _scatter(g, first + k, taps, size)
        return g

    def backward(self, ggx):
        return Resample.apply(ggx, taps=self.taps, in_sizes=self.in_sizes)


def _nearest_index(i, o, scale_factor):
    """The input index each of the o outputs copies (float32 arithmetic)."""
    if o == 2 * i:
        return numpy.arange(o) // 2
    f32 = numpy.float32
    step = f32(1.0 / scale_factor) if scale_factor else f32(i) / f32(o)
    src = numpy.floor(numpy.arange(o, dtype=f32) * step).astype(numpy.int64)
    return numpy.minimum(src, i - 1)


def _linear_taps(i, o, scale_factor, align_corners, dtype):
    """The two taps (i0, 1 - λ) and (i1, λ) of linear interpolation along
    one axis, in torch's arithmetic (the data's precision)."""
    t = numpy.dtype(dtype).type
    if align_corners:
        step = t(i - 1) / t(o - 1) if o > 1 else t(0)
        src = step * numpy.arange(o).astype(dtype)
    else:
        step = t(1.0 / scale_factor) if scale_factor else t(i) / t(o)
        # torch's CPU kernel is compiled to one fused multiply-add here (a
        # single rounding); in float32 the float64 product and sum are
        # exact, so rounding them once reproduces it bit for bit.
        exact = numpy.arange(o, dtype=numpy.float64)
        exact += 0.5  # in place: the taps stay a few arrays of O entries
        exact *= numpy.float64(step)
        exact -= 0.5
        src = numpy.maximum(exact.astype(dtype), t(0))
    i0 = numpy.minimum(numpy.floor(src).astype(numpy.int64), i - 1)
    i1 = i0 + (i0 < i - 1)  # the last input's second tap is itself
    lam = numpy.clip(src - i0.astype(dtype), t(0), t(1))
    return [(i0, t(1) - lam), (i1, lam)]


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
        sizes = (size,) * k if isinstance(size, numbers.Integral) else size
        if not isinstance(sizes, (tuple, list)) or not all(
                isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in sizes):
            # torch's TypeError too: True or 2.0 is no size
            raise TypeError(f"{op}: size must be an int or a tuple of {k} ints, got {size!r}")
        if len(sizes) != k:
            raise ValueError(f"{op}: size must be an int or {k} ints for input of shape {input.shape}, got {size!r}")
        scales = (None,) * k
    else:
        scales = (scale_factor,) * k if isinstance(scale_factor, numbers.Real) else tuple(scale_factor)
        if len(scales) != k or not all(isinstance(s, numbers.Real) and s > 0 for s in scales):
            raise ValueError(f"{op}: scale_factor must be a positive number or {k} of them for input of "
                             f"shape {input.shape}, got {scale_factor!r}")
        sizes = tuple(i * float(s) for i, s in zip(spatial, scales))
        if not all(s < 2.0 ** 63 for s in sizes):  # inf, or past int64 (torch's overflow error)
            raise ValueError(f"{op}: scale_factor {scale_factor!r} gives an output size "
                             f"{tuple(sizes)} too large for input of shape {input.shape}")
        sizes = tuple(int(math.floor(s)) for s in sizes)
        if recompute_scale_factor:
            scales = (None,) * k
    if min(sizes) < 1:
        raise ValueError(f"{op}: output size {tuple(sizes)} for input of shape {input.shape} must be >= 1")
    return tuple(int(s) for s in sizes), tuple(None if s is None else float(s) for s in scales)


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None):
    """Resize the spatial dims of (N, C, L), (N, C, H, W) or (N, C, D, H, W)
    input to ``size`` or by ``scale_factor`` (modes: see ``_MODES``); see
    the module docstring for where each output reads from."""
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
    taps = []
    for i, o, sc in zip(spatial, sizes, scales):
        if o == i:
            taps.append(None)  # an axis that keeps its size is copied, in every mode (torch's rule)
        elif mode == "nearest":
            taps.append([(xp.asarray(_nearest_index(i, o, sc)), None)])
        else:
            dtype = input.dtype if input.dtype == numpy.float64 else numpy.float32
            taps.append([(xp.asarray(index), xp.asarray(weight.astype(input.dtype)))
                         for index, weight in _linear_taps(i, o, sc, bool(align_corners), dtype)])
    if all(t is None for t in taps):
        return clone(input)  # a new tensor, as torch's
    return Resample.apply(input, taps=taps, in_sizes=spatial)


__all__ = ["interpolate"]
