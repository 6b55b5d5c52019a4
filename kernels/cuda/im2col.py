"""im2col and col2im on the GPU (``im2col.cu``), with the contracts of the
NumPy references in ``minicnn/functional/im2col.py``, for 1, 2 or 3
spatial dims.

Notation as there: N batch, C channels, D, H, W input size, KD, KH, KW
kernel, OD, OH, OW output size; one stride, dilation and (before, after)
padding per dim. The kernels take three spatial dims; a geometry of
fewer is passed with leading dims of size 1 (no padding, stride and
dilation 1), which changes no index. Padding is never materialized:
im2col writes zeros for taps on it, col2im skips them.
"""
from ..geometry import conv_output_shape

from .loader import array_module, i32, i64, launch

RANK = 3


def _three_dims(values, one):
    """A geometry argument of up to three dims, as three: ``one`` in front."""
    values = tuple(values)
    if len(values) > RANK:
        raise ValueError(f"im2col on the GPU takes at most {RANK} spatial dims, got {len(values)}: {values}")
    return (one,) * (RANK - len(values)) + values


def _geometry(in_size, kernel_size, out_size, stride, padding, dilation):
    """The kernels' size and geometry arguments, as C ints."""
    befores = tuple(lo for lo, _ in _three_dims(padding, (0, 0)))
    values = (_three_dims(in_size, 1) + _three_dims(kernel_size, 1) + _three_dims(out_size, 1) +
              _three_dims(stride, 1) + befores + _three_dims(dilation, 1))
    return tuple(i32(v) for v in values)


def im2col(x, kernel_size, stride, padding, dilation, out_size=None):
    """Patches of ``x`` (N, C, *in_size) as a C-contiguous (N, C, *kernel_size, *out_size)."""
    xp = array_module(x)
    x = xp.ascontiguousarray(x)
    N, C, in_size = x.shape[0], x.shape[1], x.shape[2:]
    if out_size is None:
        out_size = conv_output_shape(in_size, kernel_size, stride, padding, dilation)
    cols = xp.empty((N, C) + tuple(kernel_size) + tuple(out_size), dtype=x.dtype)
    launch("im2col.cu", "im2col", x.dtype, cols.size, x, cols, i64(cols.size),
           *_geometry(in_size, kernel_size, out_size, stride, padding, dilation))
    return cols


def col2im(cols, in_size, stride, padding, dilation):
    """The adjoint of ``im2col``: cols (N, C, *kernel_size, *out_size) -> x
    (N, C, *in_size), one thread per pixel of x gathering the entries
    copied from it."""
    xp = array_module(cols)
    cols = xp.ascontiguousarray(cols)
    rank = len(in_size)
    N, C = cols.shape[:2]
    kernel_size, out_size = cols.shape[2:2 + rank], cols.shape[2 + rank:]
    x = xp.empty((N, C) + tuple(in_size), dtype=cols.dtype)
    launch("im2col.cu", "col2im", cols.dtype, x.size, cols, x, i64(x.size),
           *_geometry(in_size, kernel_size, out_size, stride, padding, dilation))
    return x
