"""Batch norm on the GPU (``batchnorm.cu``), forward and backward, with the
contracts of the NumPy references in ``minicnn/functional/normalization.py``.

Notation as there: x (N, C, *) viewed as (N, C, L), n = N * L values per
channel. Each direction is three launches: partial sums per (channel,
slice of the channel), their totals per channel (with the per-channel
constants that follow from them), and one elementwise pass. The partial
sums are a (C, P) float64 array from CuPy's memory pool.
"""
from .loader import array_module, f64, i32, i64, launch, partial_count


def _channels(xp, a):
    """(N, C, *) as a contiguous (N, C, L) array."""
    return xp.ascontiguousarray(a).reshape(a.shape[0], a.shape[1], -1)


def _vector(xp, v, c, fill, dtype):
    """A per-channel vector of ``dtype``, or ``fill`` for each channel when v is None."""
    if v is None:
        return xp.full(c, fill, dtype=dtype)
    return xp.ascontiguousarray(v, dtype=dtype)


def batch_norm_forward(x, weight, bias, eps, mean=None, var=None):
    """y = w (x - mean) / sqrt(var + eps) + b per channel of x (N, C, *).

    Without ``mean`` and ``var`` (training) the batch's own statistics are
    computed; the result is (y, mean, var) either way, var biased.
    """
    xp = array_module(x)
    dtype = x.dtype
    x3 = _channels(xp, x)
    N, C, L = x3.shape
    w, b = _vector(xp, weight, C, 1, dtype), _vector(xp, bias, C, 0, dtype)
    y = xp.empty_like(x3)
    if mean is None:
        n = N * L
        P = partial_count(n, C)
        part1, part2 = xp.empty((C, P), dtype=xp.float64), xp.empty((C, P), dtype=xp.float64)
        launch("batchnorm.cu", "batch_norm_partial_stats", dtype, C * P, x3, part1, part2,
               i32(C), i64(L), i64(n), i32(P))
        mean, var, a, o = (xp.empty(C, dtype=dtype) for _ in range(4))
        launch("batchnorm.cu", "batch_norm_finish_stats", dtype, C, x3, part1, part2, w, b, mean, var, a, o,
               i32(C), i64(L), i64(n), i32(P), f64(eps))
    else:
        a = w / xp.sqrt(var + eps)
        a, o = xp.ascontiguousarray(a, dtype=dtype), xp.ascontiguousarray(b - mean * a, dtype=dtype)
    launch("batchnorm.cu", "batch_norm_affine", dtype, y.size, x3, a, o, y, i64(y.size), i32(C), i64(L))
    return y.reshape(x.shape), mean, var


def batch_norm_backward(gy, x, mean, inv_std, weight, training):
    """(gx, gw, gb) of batch norm for the upstream gradient gy (N, C, *),
    given the saved input x and the mean and 1/sigma its forward used."""
    xp = array_module(gy)
    dtype = gy.dtype
    gy3, x3 = _channels(xp, gy), _channels(xp, xp.asarray(x, dtype=dtype))
    N, C, L = x3.shape
    n = N * L
    w = _vector(xp, weight, C, 1, dtype)
    mean, inv_std = xp.ascontiguousarray(mean, dtype=dtype), xp.ascontiguousarray(inv_std, dtype=dtype)
    P = partial_count(n, C)
    part1, part2 = xp.empty((C, P), dtype=xp.float64), xp.empty((C, P), dtype=xp.float64)
    launch("batchnorm.cu", "batch_norm_partial_grads", dtype, C * P, gy3, x3, mean, part1, part2,
           i32(C), i64(L), i64(n), i32(P))
    gw, gb, scale, k_mean, k_x = (xp.empty(C, dtype=dtype) for _ in range(5))
    launch("batchnorm.cu", "batch_norm_finish_grads", dtype, C, part1, part2, inv_std, w, gw, gb,
           scale, k_mean, k_x, i32(C), i64(n), i32(P), i32(bool(training)))
    gx = xp.empty_like(x3)
    launch("batchnorm.cu", "batch_norm_grad_input", dtype, gx.size, gy3, x3, mean, scale, k_mean, k_x, gx,
           i64(gx.size), i32(C), i64(L))
    return gx.reshape(x.shape), gw, gb
