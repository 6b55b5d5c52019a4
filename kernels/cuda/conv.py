"""conv2d's three primitives on the GPU: im2col + cuBLAS GEMM, and
depthwise convolution computed directly (``depthwise.cu``).

Notation as in ``minicnn/functional/conv.py``: N batch, C input channels,
O output channels, G groups, Cg = C / G, Og = O / G, K = Cg * KH * KW,
L = OH * OW.

    conv2d_forward(x, w, b, ...)     y  (N, O, OH, OW)  = w * x + b
    conv2d_grad_input(gy, w, ...)    gx (N, C, H, W)    (= conv_transpose2d)
    conv2d_grad_weight(x, gy, ...)   gw (O, Cg, KH, KW)

The same arithmetic as the NumPy references, with the CUDA im2col /
col2im kernels building and folding the column matrices and
``xp.matmul`` (cuBLAS, batched over images and groups) doing the GEMMs.
Depthwise convolution (G == C) skips the column matrix, which would cost a
copy of the input per tap for a handful of multiply-adds per entry.
"""
from .im2col import col2im, im2col
from .loader import array_module, i32, i64, launch, partial_count


def _is_depthwise(C, groups):
    """One input channel per group (any number of outputs per channel)."""
    return groups == C


def _is_identity(kernel_size, stride, padding, in_size, out_size):
    """A 1x1 kernel, stride 1, no padding: x itself is the column matrix."""
    return (tuple(kernel_size) == (1, 1) and tuple(stride) == (1, 1) and padding == ((0, 0), (0, 0))
            and tuple(in_size) == tuple(out_size))


def _geometry(stride, padding, dilation):
    """The kernels' geometry arguments: sh, sw, top, left, dh, dw."""
    (sh, sw), ((top, _), (left, _)), (dh, dw) = stride, padding, dilation
    return tuple(i32(v) for v in (sh, sw, top, left, dh, dw))


def _columns(x, kernel_size, stride, padding, dilation, groups, out_size):
    """The column matrices of x (N, C, H, W): (N, G, K, L)."""
    N, C = x.shape[:2]
    (KH, KW), (OH, OW) = kernel_size, out_size
    if _is_identity(kernel_size, stride, padding, x.shape[2:], out_size):
        cols = array_module(x).ascontiguousarray(x)
    else:
        cols = im2col(x, kernel_size, stride, padding, dilation, out_size)
    return cols.reshape(N, groups, C // groups * KH * KW, OH * OW)


def conv2d_forward(x, w, b, stride, padding, dilation, groups, out_size):
    """y (N, O, OH, OW) = conv2d(x, w) + b; b may be None."""
    xp = array_module(x)
    x = xp.ascontiguousarray(x)
    N, C, H, W = x.shape
    O, KH, KW = w.shape[0], w.shape[2], w.shape[3]
    OH, OW = out_size
    if _is_depthwise(C, groups):
        y = xp.empty((N, O, OH, OW), dtype=x.dtype)
        bias = xp.zeros(O, dtype=x.dtype) if b is None else xp.ascontiguousarray(b)
        launch("depthwise.cu", "depthwise_forward", x.dtype, y.size, x, xp.ascontiguousarray(w), bias, y,
               i64(y.size), i32(C), i32(H), i32(W), i32(O), i32(KH), i32(KW), i32(OH), i32(OW),
               *_geometry(stride, padding, dilation))
        return y
    cols = _columns(x, (KH, KW), stride, padding, dilation, groups, out_size)        # (N, G, K, L)
    y = xp.matmul(w.reshape(groups, O // groups, -1), cols).reshape(N, O, OH, OW)    # (N, G, Og, L)
    if b is not None:
        y += b.reshape(1, O, 1, 1)
    return y


def conv2d_grad_input(gy, w, stride, padding, dilation, groups, in_size):
    """gx (N, C, H, W) for gy (N, O, OH, OW): gcols[n, g] = w[g]^T @ gy[n, g],
    then col2im; depthwise: a gather over the taps."""
    xp = array_module(gy)
    gy = xp.ascontiguousarray(gy)
    N, O, OH, OW = gy.shape
    G, KH, KW = groups, w.shape[2], w.shape[3]
    C, (H, W) = w.shape[1] * G, in_size
    if _is_depthwise(C, G):
        gx = xp.empty((N, C, H, W), dtype=gy.dtype)
        launch("depthwise.cu", "depthwise_grad_input", gy.dtype, gx.size, gy, xp.ascontiguousarray(w), gx,
               i64(gx.size), i32(C), i32(H), i32(W), i32(O), i32(KH), i32(KW), i32(OH), i32(OW),
               *_geometry(stride, padding, dilation))
        return gx
    wT = w.reshape(G, O // G, -1).transpose(0, 2, 1)                                 # (G, K, Og)
    cols = xp.matmul(wT, gy.reshape(N, G, O // G, OH * OW))                          # (N, G, K, L)
    if _is_identity((KH, KW), stride, padding, in_size, (OH, OW)):
        return cols.reshape(N, C, H, W)
    return col2im(cols.reshape(N, C, KH, KW, OH, OW), in_size, stride, padding, dilation)


def conv2d_grad_weight(x, gy, kernel_size, stride, padding, dilation, groups):
    """gw (O, Cg, KH, KW) = sum_n gy[n, g] @ cols(x)[n, g]^T; depthwise: each
    weight's N*OH*OW products summed in partial sums, then along them."""
    xp = array_module(x)
    x, gy = xp.ascontiguousarray(x), xp.ascontiguousarray(gy)
    N, C, H, W = x.shape
    O, OH, OW = gy.shape[1], gy.shape[2], gy.shape[3]
    G, (KH, KW) = groups, kernel_size
    if _is_depthwise(C, G):
        P = partial_count(N * OH * OW, O * KH * KW)
        part = xp.empty((O * KH * KW, P), dtype=x.dtype)
        launch("depthwise.cu", "depthwise_grad_weight_partial", x.dtype, part.size, x, gy, part, i32(P),
               i32(N), i32(C), i32(H), i32(W), i32(O), i32(KH), i32(KW), i32(OH), i32(OW),
               *_geometry(stride, padding, dilation))
        return part.sum(axis=1).reshape(O, 1, KH, KW)
    cols = _columns(x, kernel_size, stride, padding, dilation, G, (OH, OW))           # (N, G, K, L)
    gy = gy.reshape(N, G, O // G, OH * OW)                                            # (N, G, Og, L)
    gw = xp.matmul(gy, cols.transpose(0, 1, 3, 2)).sum(axis=0)                        # (G, Og, K)
    return gw.reshape(O, C // G, KH, KW)
