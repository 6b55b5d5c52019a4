"""Batch norm compiled with Numba: forward and backward, each one kernel.

Notation as in ``minicnn/functional/normalization.py``: x (N, C, *), viewed
here as (N, C, L) with L the product of the trailing dims; n = N * L
values per channel; μ, var the per-channel mean and biased variance;
σ = sqrt(var + eps); w, b the per-channel weight and bias.

Each wrapper has the contract of the NumPy reference it replaces. Each
channel is one task, and the threads take runs of channels
(``threads.parallel_parts``): the reductions are then plain running sums,
with no partial results to combine, and each channel's data is read while
it is still in the cache.

Forward (training)
------------------
One pass accumulates Σ d and Σ d² with d = x - K, where K is the
channel's first value; then μ = K + Σd / n and var = Σd² / n - (Σd / n)².
Shifting by K keeps the subtraction from cancelling catastrophically when
|μ| is large against σ (the textbook Σx² - nμ² loses every digit there),
and the sums run in float64 even for float32 data. A second pass writes
y = x a + c with a = w / σ and c = b - μ a (torch folds the affine the
same way).

Backward
--------
One pass accumulates gb = Σ gy and Σ gy (x - μ), so gw = Σ gy x̂ =
Σ gy (x - μ) / σ; a second writes, in training,

    gx = (w / σ) (gy - gb / n - x̂ gw / n)

and in eval (μ and σ are constants) gx = (w / σ) gy.
"""
import math

import numba
import numpy

from .loops import JIT as _JIT, _clamp_value, _share
from .threads import parallel_parts

# Sums may be reassociated: LLVM then vectorizes them into several partial
# sums instead of one chain of dependent adds (NaN and inf keep their IEEE
# meaning; only the rounding of a sum changes).
_SUM_JIT = dict(_JIT, fastmath={"reassoc"})


@numba.njit(**_SUM_JIT)
def _forward_train(x, w, b, eps, y, mean, var, part, parts):
    """Batch statistics of x (N, C, L) into mean, var (C,); y normalized.
    This call's share of the channels: part ``part`` of ``parts``."""
    N, C, L = x.shape
    n = N * L
    for c in range(*_share(C, part, parts)):
        shift = numpy.float64(x[0, c, 0])
        s1, s2 = 0.0, 0.0
        for i in range(N):
            row = x[i, c]
            for l in range(L):
                d = row[l] - shift
                s1 += d
                s2 += d * d
        m = s1 / n
        v = max(s2 / n - m * m, 0.0)
        mu = shift + m
        mean[c], var[c] = mu, v
        a = w[c] / math.sqrt(v + eps)
        offset = b[c] - mu * a
        for i in range(N):
            src, dst = x[i, c], y[i, c]
            for l in range(L):
                dst[l] = src[l] * a + offset


@numba.njit(inline="always")
def _affine_run(x, a, offset, lo, hi, y, part, parts, clamp):
    """y = x a + offset per channel, x and y (N, C, L), a and offset (C,);
    with ``clamp`` (a constant where inlined: the branch compiles away),
    min(max(., lo), hi), NaN kept."""
    N, C, L = x.shape
    for c in range(*_share(C, part, parts)):
        ac, oc = a[c], offset[c]
        for i in range(N):
            src, dst = x[i, c], y[i, c]
            for l in range(L):
                v = src[l] * ac + oc
                dst[l] = _clamp_value(v, lo, hi) if clamp else v


@numba.njit(**_JIT)
def _affine(x, a, offset, y, part, parts):
    """The eval forward: y = x a + offset per channel. Its own kernel: the
    clamp's compares cost this pass 20-30% (8 x 256 x 28x28: 0.34 ms
    against 0.26, one thread)."""
    _affine_run(x, a, offset, a[0], a[0], y, part, parts, False)     # lo, hi unused: any value of a's type


@numba.njit(**_JIT)
def _affine_clamp(x, a, offset, lo, hi, y, part, parts):
    """The eval forward and the ReLU or ReLU6 after it (``affine_clamp``)."""
    _affine_run(x, a, offset, lo, hi, y, part, parts, True)


@numba.njit(**_SUM_JIT)
def _backward(gy, x, mean, inv_std, w, training, gx, gw, gb, part, parts):
    """gx (N, C, L), gw and gb (C,) from gy and the saved x, μ, 1/σ."""
    N, C, L = x.shape
    n = N * L
    for c in range(*_share(C, part, parts)):
        mu, inv = mean[c], inv_std[c]
        sg, sgd = 0.0, 0.0
        for i in range(N):
            g_row, x_row = gy[i, c], x[i, c]
            for l in range(L):
                g = g_row[l]
                sg += g
                sgd += g * (x_row[l] - mu)
        gb[c] = sg
        gw[c] = sgd * inv
        scale = w[c] * inv
        # gx = scale (gy - gb/n) - (x - μ) scale gw / (n σ): two per-channel constants.
        k_mean = sg / n if training else 0.0
        k_x = scale * sgd * inv * inv / n if training else 0.0
        for i in range(N):
            g_row, x_row, dst = gy[i, c], x[i, c], gx[i, c]
            for l in range(L):
                dst[l] = scale * (g_row[l] - k_mean) - (x_row[l] - mu) * k_x


def _channels(a, dtype):
    """(N, C, *) as a contiguous (N, C, L) array of ``dtype``."""
    return numpy.ascontiguousarray(a, dtype=dtype).reshape(a.shape[0], a.shape[1], -1)


def _vector(v, c, fill, dtype):
    """A per-channel vector, or ``fill`` for each channel when v is None."""
    if v is None:
        return numpy.full(c, fill, dtype=dtype)
    return numpy.ascontiguousarray(v, dtype=dtype)


def batch_norm_forward(x, weight, bias, eps, mean=None, var=None):
    """y = w (x - μ) / sqrt(var + eps) + b per channel of x (N, C, *).

    Without ``mean`` and ``var`` (training) the batch's own statistics are
    computed; the result is (y, mean, var) either way, var biased.
    """
    dtype = numpy.result_type(x, *(t for t in (weight, bias) if t is not None))
    c = x.shape[1]
    x3 = _channels(x, dtype)
    w, b = _vector(weight, c, 1, dtype), _vector(bias, c, 0, dtype)
    y = numpy.empty_like(x3)
    if mean is None:
        mean, var = numpy.empty(c, dtype=dtype), numpy.empty(c, dtype=dtype)
        parallel_parts(_forward_train, x3.size, x3, w, b, float(eps), y, mean, var)
    else:
        a = w / numpy.sqrt(var + eps)
        a, offset = a.astype(dtype), (b - mean * a).astype(dtype)
        parallel_parts(_affine, x3.size, x3, a, offset, y)
    return y.reshape(x.shape), mean, var


def affine_clamp(x, a, offset, lo, hi):
    """min(max(x a + offset, lo), hi) per channel of x (N, C, *), a and
    offset (C,): an eval batch norm and the ReLU (lo 0, hi inf) or ReLU6
    after it in one pass (``mc.fuse``), in x's dtype."""
    x3 = _channels(x, x.dtype)
    y = numpy.empty_like(x3)
    a, offset = _vector(a, x.shape[1], 1, x.dtype), _vector(offset, x.shape[1], 0, x.dtype)
    parallel_parts(_affine_clamp, x3.size, x3, a, offset, x.dtype.type(lo), x.dtype.type(hi), y)
    return y.reshape(x.shape)


def batch_norm_backward(gy, x, mean, inv_std, weight, training):
    """(gx, gw, gb) of batch norm for the upstream gradient gy (N, C, *),
    given the saved input x and the μ and 1/σ its forward used."""
    dtype = gy.dtype
    c = x.shape[1]
    x3, gy3 = _channels(x, dtype), _channels(gy, dtype)
    gx = numpy.empty_like(x3)
    gw, gb = numpy.empty(c, dtype=dtype), numpy.empty(c, dtype=dtype)
    mean, inv_std = numpy.ascontiguousarray(mean, dtype=dtype), numpy.ascontiguousarray(inv_std, dtype=dtype)
    parallel_parts(_backward, x3.size, gy3, x3, mean, inv_std, _vector(weight, c, 1, dtype), bool(training),
                   gx, gw, gb)
    return gx.reshape(x.shape), gw, gb
