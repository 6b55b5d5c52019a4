"""Small loops shared by the CPU kernels: runs over flat arrays.

The kernels index flat views of their C-contiguous arrays, with offsets
computed once per row or plane, and do their innermost work through these
loops. They index with *unsigned* integers: Numba wraps negative indices
(a[-1] is the last element), and for a signed index that is a compare and
select per access, which LLVM can only vectorize into gathers (2x slower
on rows of 16 to 112 elements, measured; a ``range()`` index, known to be
>= 0, has no such cost).

The loops that run once per row (``_fill``, ``_copy``, ``_add``) are
inlined into their callers (``inline="always"``): as calls, their set-up
cost more than the work on short rows (im2col of LeNet-5's C3, rows of
10: 0.54 ms with calls, 0.18 ms inlined). An inlined helper is compiled
into each caller's cached code; ``cache.py`` stamps every kernel's cache
with the whole package, so an edit here recompiles its callers too. It is
installed here, before the first kernel is decorated: every kernel module
imports this one first.
"""
import numba

from . import cache

cache.install()

u64 = numba.uint64

#: Compile options of the kernels: cached on disk, the GIL released (the
#: threads of ``threads.py`` run kernels at once), and NumPy's error model:
#: a float division by zero gives inf or nan, as in the NumPy references.
#: Python's model checks every division to raise ZeroDivisionError, and
#: that branch keeps LLVM from vectorizing the loop: SiLU's last pass took
#: 117 us per 64K floats with it, 14 without.
JIT = dict(cache=True, nogil=True, error_model="numpy")


@numba.njit(inline="always")
def _valid_range(size, out_size, start, step):
    """The indices o in [lo, hi) of 0 <= o < out_size with
    0 <= start + o * step < size."""
    lo = 0
    if start < 0:
        # At most out_size: a tap dilated past the whole map has no valid
        # index at all, and lo also says how much to zero-fill.
        lo = min(out_size, (-start + step - 1) // step)
    last = size - 1 - start
    hi = 0 if last < 0 else min(out_size, last // step + 1)
    return lo, max(lo, hi)


@numba.njit(inline="always")
def _share(count, part, parts):
    """(start, stop): part ``part`` of ``parts`` of range(count), the
    parts consecutive and as even as possible (``threads.parallel_parts``
    hands the parts out to the threads)."""
    return count * part // parts, count * (part + 1) // parts


@numba.njit(inline="always")
def _fill(a, start, n, value):
    """a[start : start+n] = value."""
    start = u64(start)
    for j in range(u64(n)):
        a[start + j] = value


@numba.njit(inline="always")
def _clamp_value(v, lo, hi):
    """min(max(v, lo), hi), NaN kept as in torch: both compares are false
    for NaN, so it passes through. Two selects, which LLVM turns into
    vector max and min; with the NaN test spelled out (v != v first) the
    loop compiled to compares and blends, 2.5x slower."""
    low = lo if v < lo else v
    return hi if low > hi else low


@numba.njit(inline="always")
def _copy(dst, d0, dstep, src, s0, sstep, n):
    """dst[d0 + j*dstep] = src[s0 + j*sstep] for j < n."""
    d0, dstep, s0, sstep = u64(d0), u64(dstep), u64(s0), u64(sstep)
    for j in range(u64(n)):
        dst[d0 + j * dstep] = src[s0 + j * sstep]


@numba.njit(inline="always")
def _add(dst, d0, dstep, src, s0, n):
    """dst[d0 + j*dstep] += src[s0 + j] for j < n."""
    d0, dstep, s0 = u64(d0), u64(dstep), u64(s0)
    for j in range(u64(n)):
        dst[d0 + j * dstep] += src[s0 + j]


@numba.njit(cache=True)
def _axpy(dst, d0, alpha, src, s0, n):
    """dst[d0 + j] += alpha * src[s0 + j] for j < n."""
    d0, s0 = u64(d0), u64(s0)
    for j in range(u64(n)):
        dst[d0 + j] += alpha * src[s0 + j]


@numba.njit(cache=True)
def _axpy3(dst, d0, a0, s0, a1, s1, a2, s2, src, n):
    """dst[d0 + j] += a0 * src[s0 + j], then a1 * src[s1 + j], then
    a2 * src[s2 + j], for j < n: three ``_axpy`` in one pass, which loads
    and stores dst once instead of three times; the sums are the same,
    added in the same order."""
    d0, s0, s1, s2 = u64(d0), u64(s0), u64(s1), u64(s2)
    for j in range(u64(n)):
        v = dst[d0 + j] + a0 * src[s0 + j]
        v = v + a1 * src[s1 + j]
        dst[d0 + j] = v + a2 * src[s2 + j]


@numba.njit(cache=True)
def _axpy9(dst, d0, alpha, a0, src, s, n):
    """dst[d0 + j] += alpha[a0 + k] * src[s[k] + j] for k = 0 ... 8 in
    turn, for j < n: a 3x3 kernel's nine taps in one pass (``s`` holds
    their nine offsets), the same sums as three ``_axpy3`` in the same
    order, with dst loaded and stored once instead of three times."""
    d0 = u64(d0)
    w0, w1, w2, w3, w4, w5, w6, w7, w8 = (alpha[a0], alpha[a0 + 1], alpha[a0 + 2], alpha[a0 + 3], alpha[a0 + 4],
                                          alpha[a0 + 5], alpha[a0 + 6], alpha[a0 + 7], alpha[a0 + 8])
    s0, s1, s2, s3, s4, s5, s6, s7, s8 = (u64(s[0]), u64(s[1]), u64(s[2]), u64(s[3]), u64(s[4]), u64(s[5]),
                                          u64(s[6]), u64(s[7]), u64(s[8]))
    for j in range(u64(n)):
        v = dst[d0 + j] + w0 * src[s0 + j]
        v = v + w1 * src[s1 + j]
        v = v + w2 * src[s2 + j]
        v = v + w3 * src[s3 + j]
        v = v + w4 * src[s4 + j]
        v = v + w5 * src[s5 + j]
        v = v + w6 * src[s6 + j]
        v = v + w7 * src[s7 + j]
        dst[d0 + j] = v + w8 * src[s8 + j]



@numba.njit(cache=True)
def _axpy9x2(dst, d0, stride, alpha, a0, astride, src, s, n):
    """``_axpy9`` for two outputs at once: dst[d0 + j] and dst[d0 + stride
    + j] each += their nine taps, alpha[a0 + k] and alpha[a0 + astride +
    k], times src[s[k] + j], for j < n. Each input is loaded once for both
    (9 loads for 18 multiply-adds, against 9 for 9), and each output's sum
    is ``_axpy9``'s, in the same order: the same numbers."""
    d0 = u64(d0)
    d1 = d0 + u64(stride)
    b0 = a0 + astride
    w0, w1, w2, w3, w4, w5, w6, w7, w8 = (alpha[a0], alpha[a0 + 1], alpha[a0 + 2], alpha[a0 + 3], alpha[a0 + 4],
                                          alpha[a0 + 5], alpha[a0 + 6], alpha[a0 + 7], alpha[a0 + 8])
    v0, v1, v2, v3, v4, v5, v6, v7, v8 = (alpha[b0], alpha[b0 + 1], alpha[b0 + 2], alpha[b0 + 3], alpha[b0 + 4],
                                          alpha[b0 + 5], alpha[b0 + 6], alpha[b0 + 7], alpha[b0 + 8])
    s0, s1, s2, s3, s4, s5, s6, s7, s8 = (u64(s[0]), u64(s[1]), u64(s[2]), u64(s[3]), u64(s[4]), u64(s[5]),
                                          u64(s[6]), u64(s[7]), u64(s[8]))
    for j in range(u64(n)):
        x0, x1, x2, x3, x4 = src[s0 + j], src[s1 + j], src[s2 + j], src[s3 + j], src[s4 + j]
        x5, x6, x7, x8 = src[s5 + j], src[s6 + j], src[s7 + j], src[s8 + j]
        first = dst[d0 + j] + w0 * x0 + w1 * x1 + w2 * x2 + w3 * x3 + w4 * x4 + w5 * x5 + w6 * x6 + w7 * x7 + w8 * x8
        second = dst[d1 + j] + v0 * x0 + v1 * x1 + v2 * x2 + v3 * x3 + v4 * x4 + v5 * x5 + v6 * x6 + v7 * x7 + v8 * x8
        dst[d0 + j] = first
        dst[d1 + j] = second

# Reassociation lets LLVM keep several partial sums (a vector of them)
# instead of one chain of dependent adds; only the rounding changes (by
# ~1e-7 relative in float32). The sums run in the arrays' dtype (``zero``,
# 0 of that dtype, sets it), as torch's do: float32 products summed in
# float64 convert every element and halve the vector width (a 3x3
# depthwise weight gradient's nine dots over 3364 entries: 3.7 us in
# float64, 1.7 in float32).
@numba.njit(cache=True, fastmath={"reassoc"})
def _dot(a, a0, b, b0, n, zero):
    """sum_j a[a0 + j] * b[b0 + j] for j < n."""
    a0, b0 = u64(a0), u64(b0)
    total = zero
    for j in range(u64(n)):
        total += a[a0 + j] * b[b0 + j]
    return total


@numba.njit(cache=True, fastmath={"reassoc"})
def _dot3(a, a0, b, b0, b1, b2, n, zero):
    """The three sums of ``_dot(a, a0, b, bk, n, zero)`` for k = 0, 1, 2,
    in one pass over a."""
    a0, b0, b1, b2 = u64(a0), u64(b0), u64(b1), u64(b2)
    t0 = t1 = t2 = zero
    for j in range(u64(n)):
        v = a[a0 + j]
        t0 += v * b[b0 + j]
        t1 += v * b[b1 + j]
        t2 += v * b[b2 + j]
    return t0, t1, t2


@numba.njit(cache=True, fastmath={"reassoc"})
def _dot9(a, a0, b, s, n, out, o0, zero):
    """out[o0 + k] = ``_dot(a, a0, b, s[k], n, zero)`` for k = 0 ... 8,
    in one pass over a: a 3x3 kernel's nine taps."""
    a0 = u64(a0)
    s0, s1, s2, s3, s4, s5, s6, s7, s8 = (u64(s[0]), u64(s[1]), u64(s[2]), u64(s[3]), u64(s[4]), u64(s[5]),
                                          u64(s[6]), u64(s[7]), u64(s[8]))
    t0 = t1 = t2 = t3 = t4 = t5 = t6 = t7 = t8 = zero
    for j in range(u64(n)):
        v = a[a0 + j]
        t0 += v * b[s0 + j]
        t1 += v * b[s1 + j]
        t2 += v * b[s2 + j]
        t3 += v * b[s3 + j]
        t4 += v * b[s4 + j]
        t5 += v * b[s5 + j]
        t6 += v * b[s6 + j]
        t7 += v * b[s7 + j]
        t8 += v * b[s8 + j]
    out[o0], out[o0 + 1], out[o0 + 2], out[o0 + 3], out[o0 + 4] = t0, t1, t2, t3, t4
    out[o0 + 5], out[o0 + 6], out[o0 + 7], out[o0 + 8] = t5, t6, t7, t8
