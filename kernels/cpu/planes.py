"""A map scaled plane by plane, and its gradient: the CPU's versions of
``planes_scaled`` and ``planes_dot`` (``minicnn/functional/elementwise.py``).

Squeeze-and-excitation (EfficientNet, MobileNetV3, RegNetY) multiplies an
(N, C, H, W) map by an (N, C, 1, 1) scale: every plane of H*W values by
one number. NumPy broadcasts it on one thread, and the backward's
gradient of the scale is a full product written out (gy * x) and then
summed over each plane. Here both are one parallel pass over the planes:
``scaled`` writes x[p] * s[p], ``dot`` sums gy[p] . x[p] without the
product array. EfficientNet-B0's step (16 x 3 x 96x96) spent 24 ms a step
in NumPy's broadcast multiplies.
"""
import numba
import numpy

from .loops import JIT, _share, u64
from .threads import parallel_parts


@numba.njit(**JIT)
def _scaled(x, s, y, part, parts):
    P, L = x.shape
    start, stop = _share(P, part, parts)
    for p in range(start, stop):
        row, out, v = x[p], y[p], s[p]
        for i in range(u64(L)):
            out[i] = row[i] * v


@numba.njit(**JIT)
def _dot(a, b, sums, part, parts):
    P, L = a.shape
    start, stop = _share(P, part, parts)
    for p in range(start, stop):
        ra, rb = a[p], b[p]
        total = 0.0                     # float64: a plane's H*W products summed without float32 drift
        for i in range(u64(L)):
            total += ra[i] * rb[i]
        sums[p] = total


def planes_scaled(x, s):
    """y (P, L) = x[p, :] * s[p] for x (P, L) and s (P,), one dtype."""
    x, s = numpy.ascontiguousarray(x), numpy.ascontiguousarray(s, dtype=x.dtype)
    y = numpy.empty_like(x)
    parallel_parts(_scaled, 2 * x.size, x, s, y)
    return y


def planes_dot(a, b):
    """sums (P,) = the sum over each row of a * b, for a, b (P, L) of one
    dtype, in that dtype (summed in float64)."""
    a, b = numpy.ascontiguousarray(a), numpy.ascontiguousarray(b)
    sums = numpy.empty(a.shape[0])
    parallel_parts(_dot, 2 * a.size, a, b, sums)
    return sums.astype(a.dtype)
