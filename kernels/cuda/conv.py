"""Depthwise convolution on the GPU (``depthwise.cu``): the CUDA versions
of the conv strategy's ``depthwise_conv2d_*`` primitives
(``minicnn/functional/conv_strategy.py``), with their arguments and
results. The strategy's other paths need no kernels of their own here:
their GEMMs are ``xp.matmul`` (cuBLAS), their column matrices the CUDA
im2col and col2im (``im2col.py``).

Notation as in ``depthwise.cu``: N batch, C input channels, O = C * M
output channels, KH, KW kernel, H, W input size, OH, OW output size.
"""
from .loader import array_module, i32, i64, launch, partial_count


def _geometry(stride, padding, dilation):
    """The kernels' geometry arguments: sh, sw, top, left, dh, dw."""
    (sh, sw), ((top, _), (left, _)), (dh, dw) = stride, padding, dilation
    return tuple(i32(v) for v in (sh, sw, top, left, dh, dw))


def _sizes(C, H, W, O, KH, KW, OH, OW):
    """The kernels' size arguments, as C ints."""
    return tuple(i32(v) for v in (C, H, W, O, KH, KW, OH, OW))


def depthwise_conv2d_forward(x, w, b, stride, padding, dilation, groups, out_size, clamp=None):
    """y (N, O, OH, OW) = depthwise conv2d(x, w) + b, one thread per output;
    then clamped to clamp = (lo, hi) where given (a clip over y, as the
    strategy's other paths do on the GPU)."""
    xp = array_module(x)
    x = xp.ascontiguousarray(x)
    N, C, H, W = x.shape
    O, KH, KW = w.shape[0], w.shape[2], w.shape[3]
    y = xp.empty((N, O) + tuple(out_size), dtype=x.dtype)
    bias = xp.zeros(O, dtype=x.dtype) if b is None else xp.ascontiguousarray(b)
    launch("depthwise.cu", "depthwise_forward", x.dtype, y.size, x, xp.ascontiguousarray(w), bias, y,
           i64(y.size), *_sizes(C, H, W, O, KH, KW, *out_size), *_geometry(stride, padding, dilation))
    if clamp is not None:
        xp.clip(y, *clamp, out=y)
    return y


def depthwise_conv2d_grad_input(gy, w, stride, padding, dilation, groups, in_size):
    """gx (N, C, H, W) for gy (N, O, OH, OW): a gather over the taps, one
    thread per input pixel."""
    xp = array_module(gy)
    gy = xp.ascontiguousarray(gy)
    N, O, OH, OW = gy.shape
    C, KH, KW, (H, W) = w.shape[1] * groups, w.shape[2], w.shape[3], in_size
    gx = xp.empty((N, C, H, W), dtype=gy.dtype)
    launch("depthwise.cu", "depthwise_grad_input", gy.dtype, gx.size, gy, xp.ascontiguousarray(w), gx,
           i64(gx.size), *_sizes(C, H, W, O, KH, KW, OH, OW), *_geometry(stride, padding, dilation))
    return gx


def depthwise_conv2d_grad_weight(x, gy, kernel_size, stride, padding, dilation, groups):
    """gw (O, 1, KH, KW): each weight's N*OH*OW products summed in partial
    sums, then along them."""
    xp = array_module(x)
    x, gy = xp.ascontiguousarray(x), xp.ascontiguousarray(gy)
    N, C, H, W = x.shape
    O, OH, OW = gy.shape[1:]
    KH, KW = kernel_size
    P = partial_count(N * OH * OW, O * KH * KW)
    part = xp.empty((O * KH * KW, P), dtype=x.dtype)
    launch("depthwise.cu", "depthwise_grad_weight_partial", x.dtype, part.size, x, gy, part, i32(P), i32(N),
           *_sizes(C, H, W, O, KH, KW, OH, OW), *_geometry(stride, padding, dilation))
    return part.sum(axis=1).reshape(O, 1, KH, KW)
