"""im2col and col2im on the GPU (``im2col.cu``), with the contracts of the
NumPy references in ``minicnn/functional/im2col.py``.

Notation as there: N batch, C channels, H, W input size, KH, KW kernel,
OH, OW output size; stride (sh, sw), dilation (dh, dw), padding
((top, bottom), (left, right)). Padding is never materialized: im2col
writes zeros for taps on it, col2im skips them.
"""
from ..geometry import conv_output_size

from .loader import array_module, i32, i64, launch


def im2col(x, kernel_size, stride, padding, dilation, out_size=None):
    """Patches of ``x`` (N, C, H, W) as a C-contiguous (N, C, KH, KW, OH, OW)."""
    xp = array_module(x)
    x = xp.ascontiguousarray(x)
    N, C, H, W = x.shape
    (KH, KW), (sh, sw), (dh, dw) = kernel_size, stride, dilation
    (top, bottom), (left, right) = padding
    if out_size is None:
        out_size = (conv_output_size(H + top + bottom, KH, sh, 0, dh),
                    conv_output_size(W + left + right, KW, sw, 0, dw))
    OH, OW = out_size
    cols = xp.empty((N, C, KH, KW, OH, OW), dtype=x.dtype)
    launch("im2col.cu", "im2col", x.dtype, cols.size, x, cols, i64(cols.size), i32(H), i32(W),
           i32(KH), i32(KW), i32(OH), i32(OW), i32(sh), i32(sw), i32(top), i32(left), i32(dh), i32(dw))
    return cols


def col2im(cols, in_size, stride, padding, dilation):
    """The adjoint of ``im2col``: cols (N, C, KH, KW, OH, OW) -> x (N, C, H, W),
    one thread per pixel of x gathering the entries copied from it."""
    xp = array_module(cols)
    cols = xp.ascontiguousarray(cols)
    N, C, KH, KW, OH, OW = cols.shape
    H, W = in_size
    (sh, sw), (dh, dw), ((top, _), (left, _)) = stride, dilation, padding
    x = xp.empty((N, C, H, W), dtype=cols.dtype)
    launch("im2col.cu", "col2im", cols.dtype, x.size, cols, x, i64(x.size), i32(H), i32(W),
           i32(KH), i32(KW), i32(OH), i32(OW), i32(sh), i32(sw), i32(top), i32(left), i32(dh), i32(dw))
    return x
