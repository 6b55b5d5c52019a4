"""Activations in fewer passes over memory: sigmoid, SiLU, ReLU and hardswish.

NumPy's stable sigmoid is four passes over the array (abs, exp, divide,
select) and SiLU one more, each writing a temporary as large as the
input: EfficientNet-B0's SiLUs took two thirds of its inference time.

Here NumPy computes e = exp(-|x|) (its exp is vectorized; Numba's, without
Intel's SVML, is a scalar call per element, 1.7x slower overall), and one
Numba pass finishes each element in registers:

    sigmoid(x) = 1 / (1 + e) for x >= 0, e / (1 + e) below

which is stable: exp is only taken of -|x|, which never overflows (as in
the reference, ``minicnn/functional/activation.py``). The array is cut
into one run per thread (``threads.py``): NumPy's exp and the nogil
kernels both release the GIL. SiLU of 8x96x112x112 float32 on 2 cores:
22 ms in NumPy, 15 ms this way.

float32, the dtype of every network here, does better still: ``exp.py``
has an exp of t <= 0 that inlines and vectorizes, so sigmoid and SiLU are
one pass each (``_sigmoid32``, ``_silu32``), with no temporary and no
NumPy call per block; float64 keeps NumPy's exp.
"""
import numba
import numpy

from .exp import EXP_JIT, exp_nonpositive
from .loops import JIT, _clamp_value, _share, u64
from .threads import PARALLEL_SIZE, parallel_parts, run_in_parallel, split, thread_count

#: Elements per block of e (256 KB of float32: in L2 when it is read back).
#: Smaller blocks pay more Python per element: the SiLU above took 24 ms
#: with blocks of 2^13.
BLOCK = 1 << 16


@numba.njit(**JIT)
def _sigmoid_finish(x, e, y):
    one = x.dtype.type(1)                     # in x's dtype: a literal 1 would make it float64
    for i in range(x.size):
        r = one / (one + e[i])
        y[i] = r if x[i] >= 0 else e[i] * r


# In place, a kernel that writes its input must get it as one argument, not
# as two that are the same array: LLVM cannot tell two arguments apart, and
# where their memory overlaps it runs the loop's scalar version (a clamp of
# 9.6M floats in place: 11.5 ms as (x, x), 1.4 as (x)). Hence the
# ``_in_place`` twins below, each the same inlined loop.
@numba.njit(inline="always")
def _silu_run(x, e, y):
    one = x.dtype.type(1)
    for i in range(x.size):
        r = one / (one + e[i])
        y[i] = x[i] * (r if x[i] >= 0 else e[i] * r)


@numba.njit(**JIT)
def _silu_finish(x, e, y):
    _silu_run(x, e, y)


@numba.njit(**JIT)
def _silu_finish_in_place(x, e):
    _silu_run(x, e, x)


def _c_contiguous(a):
    """``a`` in C order, copied only if it is not: ascontiguousarray, except
    that a 0-d array (or a NumPy scalar) comes back 0-d where
    ascontiguousarray would make it 1-d."""
    return numpy.asarray(a, order="C")


def _elementwise(finish, x, out=None, finish_in_place=None):
    if out is not None and not (x.flags.c_contiguous and out.flags.c_contiguous):
        out[...] = _elementwise(finish, x)
        return out
    x = _c_contiguous(x)
    y = numpy.empty_like(x) if out is None else out
    flat_x, flat_y = x.reshape(-1), y.reshape(-1)
    in_place = y is x and finish_in_place is not None

    def work(runs):
        # e goes through a small buffer, block by block, that stays in cache.
        buffer = numpy.empty(min(BLOCK, x.size), x.dtype)
        for start, stop in runs:
            for lo in range(start, stop, BLOCK):
                hi = min(lo + BLOCK, stop)
                e = buffer[:hi - lo]
                numpy.abs(flat_x[lo:hi], out=e)
                numpy.negative(e, out=e)
                numpy.exp(e, out=e)
                if in_place:
                    finish_in_place(flat_x[lo:hi], e)
                else:
                    finish(flat_x[lo:hi], e, flat_y[lo:hi])

    parts = thread_count() if x.size >= PARALLEL_SIZE else 1
    bounds = numpy.linspace(0, x.size, parts + 1).astype(int)
    run_in_parallel(work, split(list(zip(bounds[:-1], bounds[1:])), parts))
    return y


@numba.njit(inline="always")
def _sigmoid32_value(v):
    e = exp_nonpositive(-abs(v))
    r = numpy.float32(1) / (numpy.float32(1) + e)
    return r if v >= 0 else e * r


@numba.njit(**EXP_JIT)
def _sigmoid32(x, y, part, parts):
    start, stop = _share(x.size, part, parts)
    for i in range(u64(start), u64(stop)):
        y[i] = _sigmoid32_value(x[i])


@numba.njit(inline="always")
def _silu32_run(x, y, part, parts):
    start, stop = _share(x.size, part, parts)
    for i in range(u64(start), u64(stop)):
        y[i] = x[i] * _sigmoid32_value(x[i])


@numba.njit(**EXP_JIT)
def _silu32(x, y, part, parts):
    _silu32_run(x, y, part, parts)


@numba.njit(**EXP_JIT)
def _silu32_in_place(x, part, parts):
    _silu32_run(x, x, part, parts)


@numba.njit(**EXP_JIT)
def _silu32_backward(gy, x, gx, part, parts):
    start, stop = _share(x.size, part, parts)
    one = numpy.float32(1)
    for i in range(u64(start), u64(stop)):
        s = _sigmoid32_value(x[i])
        gx[i] = gy[i] * s * (one + x[i] * (one - s))


def silu_backward(gy, x):
    """gx = gy * s * (1 + x * (1 - s)), s = sigmoid(x): SiLU's input
    gradient in one pass (float32; others through NumPy), where the
    Tensor ops take six single-threaded ones."""
    if not (gy.dtype == x.dtype == numpy.float32):
        s = _elementwise(_sigmoid_finish, x)
        return (gy * s * (1 + x * (1 - s))).astype(gy.dtype)
    gy, x = _c_contiguous(gy), _c_contiguous(x)
    gx = numpy.empty_like(gy)
    parallel_parts(_silu32_backward, 3 * x.size, gy.reshape(-1), x.reshape(-1), gx.reshape(-1))
    return gx


def _float32_pass(kernel, kernel_in_place, x, out):
    """One parallel pass of a float32 kernel over x into out (a new array
    if None; x itself for in place)."""
    if out is not None and not (x.flags.c_contiguous and out.flags.c_contiguous):
        out[...] = _float32_pass(kernel, kernel_in_place, x, None)
        return out
    x = _c_contiguous(x)
    y = numpy.empty_like(x) if out is None else out
    if y is x:
        parallel_parts(kernel_in_place, 2 * x.size, x.reshape(-1))
    else:
        parallel_parts(kernel, 2 * x.size, x.reshape(-1), y.reshape(-1))
    return y


def sigmoid(x):
    """1 / (1 + exp(-x)), elementwise, x's shape and dtype."""
    if x.dtype == numpy.float32:
        return _float32_pass(_sigmoid32, None, x, None)
    return _elementwise(_sigmoid_finish, x)


def silu(x, out=None):
    """x * sigmoid(x), elementwise, x's shape and dtype; into ``out`` if
    given, which may be x itself (SiLU in place)."""
    if x.dtype == numpy.float32 and (out is None or out.dtype == numpy.float32):
        return _float32_pass(_silu32, _silu32_in_place, x, out)
    return _elementwise(_silu_finish, x, out, _silu_finish_in_place)


# -- ReLU and clamps: one pass forward, one backward ------------------------
# NumPy needs two passes for ReLU's forward (maximum, then the mask x > 0
# that backward needs) and, through Tensor ops, three for its backward
# (cast the mask, multiply, and the op's bookkeeping). These are one pass
# each, shared out among the threads (``threads.parallel_parts``). Where
# nothing will run backward, ReLU is a clamp to [0, inf) with no mask, as
# ReLU6 and hardtanh are clamps.
@numba.njit(inline="always")
def _relu_run(x, y, mask, part, parts):
    start, stop = _share(x.size, part, parts)
    zero = x.dtype.type(0)
    for i in range(u64(start), u64(stop)):      # unsigned: see loops.py
        v = x[i]
        mask[i] = v > 0
        y[i] = v if (v > 0) | (v != v) else zero    # | not or: no branch, so the loop vectorizes


@numba.njit(**JIT)
def _relu(x, y, mask, part, parts):
    _relu_run(x, y, mask, part, parts)


@numba.njit(**JIT)
def _relu_in_place(x, mask, part, parts):
    _relu_run(x, x, mask, part, parts)


@numba.njit(inline="always")
def _clamp_run(x, lo, hi, y, part, parts):
    start, stop = _share(x.size, part, parts)
    for i in range(u64(start), u64(stop)):
        y[i] = _clamp_value(x[i], lo, hi)


@numba.njit(**JIT)
def _clamp(x, lo, hi, y, part, parts):
    _clamp_run(x, lo, hi, y, part, parts)


@numba.njit(**JIT)
def _clamp_in_place(x, lo, hi, part, parts):
    _clamp_run(x, lo, hi, x, part, parts)


@numba.njit(**JIT)
def _add_clamp_in_place(y, r, lo, hi, part, parts):
    start, stop = _share(y.size, part, parts)
    for i in range(u64(start), u64(stop)):
        y[i] = _clamp_value(y[i] + r[i], lo, hi)


@numba.njit(inline="always")
def _clamp_with_mask_run(x, lo, hi, y, mask, part, parts):
    start, stop = _share(x.size, part, parts)
    for i in range(u64(start), u64(stop)):
        v = x[i]
        mask[i] = (v > lo) & (v < hi)
        y[i] = _clamp_value(v, lo, hi)


@numba.njit(**JIT)
def _clamp_with_mask(x, lo, hi, y, mask, part, parts):
    _clamp_with_mask_run(x, lo, hi, y, mask, part, parts)


@numba.njit(**JIT)
def _clamp_with_mask_in_place(x, lo, hi, mask, part, parts):
    _clamp_with_mask_run(x, lo, hi, x, mask, part, parts)


@numba.njit(**JIT)
def _masked(gy, mask, gx, part, parts):
    start, stop = _share(gy.size, part, parts)
    for i in range(u64(start), u64(stop)):
        gx[i] = gy[i] if mask[i] else 0


def _output(x, out):
    """Where a pass over x writes its result: ``out`` (x itself, for an op
    in place: each element is read before it is written) when it is
    C-contiguous like x, else a new array (copied into ``out`` after)."""
    return out if out is not None and out.flags.c_contiguous and out.shape == x.shape else numpy.empty_like(x)


def _returned(y, out):
    """``out`` holding y (copied in where y is not out), or y without ``out``."""
    if out is None or out is y:
        return y
    out[...] = y
    return out


def relu(x, out=None):
    """(max(x, 0), x > 0): the output (into ``out`` if given: x itself for
    ReLU in place) and the mask that backward needs."""
    x = _c_contiguous(x)
    y, mask = _output(x, out), numpy.empty(x.shape, bool)
    if y is x:      # one array handed once: the in-place twin (module comment above)
        parallel_parts(_relu_in_place, 2 * x.size, x.reshape(-1), mask.reshape(-1))
    else:
        parallel_parts(_relu, 2 * x.size, x.reshape(-1), y.reshape(-1), mask.reshape(-1))
    return _returned(y, out), mask


def add_clamp_into(y, r, lo, hi):
    """y = min(max(y + r, lo), hi) in place, NaN kept: a residual block's
    shortcut added to its last conv's output, and the ReLU after (lo
    -inf, hi inf: the add alone). One parallel pass where NumPy's add is
    one single-threaded pass and the clamp another. Returns y."""
    if not (y.flags.c_contiguous and r.flags.c_contiguous and r.shape == y.shape and r.dtype == y.dtype):
        numpy.add(y, r, out=y)
        return numpy.clip(y, lo, hi, out=y)
    parallel_parts(_add_clamp_in_place, 3 * y.size, y.reshape(-1), r.reshape(-1), y.dtype.type(lo), y.dtype.type(hi))
    return y


def clamp_into(x, lo, hi, out):
    """out = min(max(x, lo), hi), NaN kept: ReLU (lo 0, hi inf) without
    its mask, where nothing will run backward, and ReLU6 / hardtanh.
    ``out`` may be x itself (in place). Returns out. One parallel pass,
    where NumPy's clip is single-threaded: MobileNetV2's ReLU6s in place
    took 18 ms of its inference, torch's 5."""
    if not (x.flags.c_contiguous and out.flags.c_contiguous):
        return numpy.clip(x, lo, hi, out=out)
    lo, hi = x.dtype.type(lo), x.dtype.type(hi)
    if out is x:
        parallel_parts(_clamp_in_place, 2 * x.size, x.reshape(-1), lo, hi)
    else:
        parallel_parts(_clamp, 2 * x.size, x.reshape(-1), lo, hi, out.reshape(-1))
    return out


def clamp_with_mask(x, lo, hi, out=None):
    """(min(max(x, lo), hi), lo < x < hi): hardtanh's (ReLU6's) output
    (into ``out`` if given: x itself in place) and the mask its backward
    needs, in one parallel pass where NumPy takes four single-threaded
    ones (clip, two comparisons, and)."""
    x = _c_contiguous(x)
    y, mask = _output(x, out), numpy.empty(x.shape, bool)
    lo, hi = x.dtype.type(lo), x.dtype.type(hi)
    if y is x:      # one array handed once: the in-place twin (module comment above)
        parallel_parts(_clamp_with_mask_in_place, 2 * x.size, x.reshape(-1), lo, hi, mask.reshape(-1))
    else:
        parallel_parts(_clamp_with_mask, 2 * x.size, x.reshape(-1), lo, hi, y.reshape(-1), mask.reshape(-1))
    return _returned(y, out), mask


def masked_gradient(gy, mask):
    """gy where mask is true, 0 elsewhere (NaN included, as torch's
    threshold_backward): the gradient of a function whose slope is 1 on
    the mask and 0 off it."""
    gy = _c_contiguous(gy)
    mask = _c_contiguous(mask)
    gx = numpy.empty_like(gy)
    parallel_parts(_masked, 2 * gy.size, gy.reshape(-1), mask.reshape(-1), gx.reshape(-1))
    return gx


# -- Hardswish: one parallel pass where NumPy's is five -----------------------
# x * clip(x + 3, 0, 6) / 6 in NumPy is an add, a clip, a multiply and a
# divide, each writing a temporary, then a cast: MobileNetV3's hardswishes
# took 3 ms of a 320 Faster R-CNN's backbone, torch's 0.65. The same
# operations in the same order, in x's dtype, so the same numbers.
@numba.njit(**JIT)
def _hardswish(x, y, part, parts):
    start, stop = _share(x.size, part, parts)
    zero, three, six = x.dtype.type(0), x.dtype.type(3), x.dtype.type(6)
    for i in range(u64(start), u64(stop)):
        y[i] = x[i] * _clamp_value(x[i] + three, zero, six) / six


def hardswish(x):
    """x * min(max(x + 3, 0), 6) / 6, elementwise, x's shape and dtype."""
    x = _c_contiguous(x)
    y = numpy.empty_like(x)
    parallel_parts(_hardswish, 2 * x.size, x.reshape(-1), y.reshape(-1))
    return y
