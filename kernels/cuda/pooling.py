"""Pooling on the GPU (``pooling.cu``): max, average and adaptive pools,
forward and backward, with the contracts of the NumPy references in
``minicnn/functional/pooling.py``.

Notation as there. ``win`` is that module's window geometry: any object
with the pairs ``in_hw``, ``kernel``, ``stride``, ``padding``, ``dilation``
and ``out_hw``, and ``offset_dtype()``. Max pooling saves, like the
reference, the kernel offset kh*KW + kw of each maximum (uint8 for windows
of up to 256 positions, else int32); adaptive max pooling the int64 flat
index h*W + w.
"""
from .loader import array_module, i32, i64, launch

_OFFSET_SUFFIX = {"uint8": "u8", "int32": "i32"}


def _window_args(win):
    """H, W, OH, OW, KH, KW, sh, sw, ph, pw as kernel arguments."""
    return tuple(i32(v) for v in (*win.in_hw, *win.out_hw, *win.kernel, *win.stride, *win.padding))


def max_pool2d_forward(x, win, offsets=True):
    """x (N, C, H, W) -> (y (N, C, OH, OW), arg): arg holds the kernel
    offset of each maximum, as ``win.offset_dtype()`` (None where
    ``offsets`` is False; the kernel writes them anyway)."""
    xp = array_module(x)
    x = xp.ascontiguousarray(x)
    shape = x.shape[:2] + tuple(win.out_hw)
    offset_dtype = win.offset_dtype()
    y, arg = xp.empty(shape, dtype=x.dtype), xp.empty(shape, dtype=offset_dtype)
    launch("pooling.cu", "max_pool2d_forward_" + _OFFSET_SUFFIX[offset_dtype], x.dtype, y.size,
           x, y, arg, i64(y.size), *_window_args(win), *(i32(d) for d in win.dilation))
    return y, arg if offsets else None


def max_pool2d_backward(gy, win, arg):
    """gy (N, C, OH, OW) -> gx (N, C, H, W): each output's gradient at the
    input position that held its maximum."""
    xp = array_module(gy)
    gy, arg = xp.ascontiguousarray(gy), xp.ascontiguousarray(arg)
    gx = xp.empty(gy.shape[:2] + tuple(win.in_hw), dtype=gy.dtype)
    launch("pooling.cu", "max_pool2d_backward_" + _OFFSET_SUFFIX[str(arg.dtype)], gy.dtype, gx.size,
           gy, arg, gx, i64(gx.size), *_window_args(win), *(i32(d) for d in win.dilation))
    return gx


def _divisor_grid(xp, divisor, out_hw, dtype):
    """The divisor as a contiguous (OH, OW) array (it may come as a scalar,
    from ``divisor_override``)."""
    return xp.ascontiguousarray(xp.broadcast_to(xp.asarray(divisor, dtype=dtype), tuple(out_hw)))


def avg_pool2d_forward(x, win, divisor):
    """x (N, C, H, W) -> y (N, C, OH, OW): window sums / divisor (OH, OW or
    a scalar). Average pools have no dilation."""
    xp = array_module(x)
    x = xp.ascontiguousarray(x)
    y = xp.empty(x.shape[:2] + tuple(win.out_hw), dtype=x.dtype)
    launch("pooling.cu", "avg_pool2d_forward", x.dtype, y.size, x, _divisor_grid(xp, divisor, win.out_hw, x.dtype),
           y, i64(y.size), *_window_args(win))
    return y


def avg_pool2d_backward(gy, win, divisor):
    """gy (N, C, OH, OW) -> gx (N, C, H, W), the adjoint of the forward."""
    xp = array_module(gy)
    gy = xp.ascontiguousarray(gy)
    gx = xp.empty(gy.shape[:2] + tuple(win.in_hw), dtype=gy.dtype)
    launch("pooling.cu", "avg_pool2d_backward", gy.dtype, gx.size, gy,
           _divisor_grid(xp, divisor, win.out_hw, gy.dtype), gx, i64(gx.size), *_window_args(win))
    return gx


def adaptive_avg_pool2d_forward(x, out_hw):
    """x (N, C, H, W) -> the mean of each of the (OH, OW) bins."""
    xp = array_module(x)
    x = xp.ascontiguousarray(x)
    y = xp.empty(x.shape[:2] + tuple(out_hw), dtype=x.dtype)
    launch("pooling.cu", "adaptive_avg_pool2d_forward", x.dtype, y.size, x, y, i64(y.size),
           *(i32(v) for v in (*x.shape[2:], *out_hw)))
    return y


def adaptive_avg_pool2d_backward(gy, in_hw):
    """gy (N, C, OH, OW) -> gx (N, C, H, W): each bin's gradient spread
    evenly over the bin."""
    xp = array_module(gy)
    gy = xp.ascontiguousarray(gy)
    gx = xp.empty(gy.shape[:2] + tuple(in_hw), dtype=gy.dtype)
    launch("pooling.cu", "adaptive_avg_pool2d_backward", gy.dtype, gx.size, gy, gx, i64(gx.size),
           *(i32(v) for v in (*in_hw, *gy.shape[2:])))
    return gx


def adaptive_max_pool2d_forward(x, out_hw):
    """x (N, C, H, W) -> (y, idx): the max of each bin and its int64 flat
    index h*W + w in the input plane."""
    xp = array_module(x)
    x = xp.ascontiguousarray(x)
    shape = x.shape[:2] + tuple(out_hw)
    y, idx = xp.empty(shape, dtype=x.dtype), xp.empty(shape, dtype=xp.int64)
    launch("pooling.cu", "adaptive_max_pool2d_forward", x.dtype, y.size, x, y, idx, i64(y.size),
           *(i32(v) for v in (*x.shape[2:], *out_hw)))
    return y, idx


def adaptive_max_pool2d_backward(gy, idx, in_shape):
    """gy (N, C, OH, OW) -> gx of shape ``in_shape`` (N, C, H, W): each
    input pixel gathers the gradients of the bins whose maximum it held."""
    xp = array_module(gy)
    gy, idx = xp.ascontiguousarray(gy), xp.ascontiguousarray(idx, dtype=xp.int64)
    gx = xp.empty(tuple(in_shape), dtype=gy.dtype)
    launch("pooling.cu", "adaptive_max_pool2d_backward", gy.dtype, gx.size, gy, idx, gx, i64(gx.size),
           *(i32(v) for v in (*in_shape[2:], *gy.shape[2:])))
    return gx
