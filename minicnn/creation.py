"""Making tensors: ``tensor``, ``from_numpy`` and the factories
(zeros, ones, full, empty, arange, rand, randn, ..._like)."""
import numbers

import numpy

from . import dtypes, random
from .device import Device, move_array
from .tensor import Tensor


def _finish(array, device, requires_grad):
    if device is not None and Device(device).type != "cpu":
        array = move_array(array, device)
    t = Tensor._wrap(array)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _size(size, name):
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    for s in size:
        if not isinstance(s, numbers.Integral) or s < 0:
            raise ValueError(f"{name}: sizes must be non-negative ints, got {tuple(size)}")
    return tuple(int(s) for s in size)


def _float_dtype(dtype):
    return dtypes.default_float if dtype is None else dtypes.as_dtype(dtype)


def tensor(data, dtype=None, requires_grad=False, device=None):
    """A new tensor holding a copy of ``data`` (nested lists, numbers, a
    NumPy array or a Tensor). The dtype is inferred as torch does unless
    given: Python floats -> float32, ints -> int64, a NumPy array keeps its
    dtype."""
    if isinstance(data, Tensor):
        data = data.numpy_copy()
    try:
        target = dtypes.infer_dtype(data) if dtype is None else dtypes.as_dtype(dtype)
        array = numpy.array(data, dtype=target)
    except ValueError as e:
        raise ValueError(f"tensor(): cannot build a tensor from this data: {e}") from None
    return _finish(array, device, requires_grad)


def as_tensor(data, dtype=None, device=None):
    """Like ``tensor`` but shares memory with a NumPy array when it can."""
    if isinstance(data, Tensor) and dtype is None:
        return data
    if isinstance(data, numpy.ndarray) and (dtype is None or dtypes.as_dtype(dtype) == data.dtype):
        return _finish(data, device, False)
    return tensor(data, dtype=dtype, device=device)


def from_numpy(array):
    """A tensor sharing memory with the NumPy ``array``.

    Unlike torch, which refuses them, byte-swapped (non-native) arrays are
    taken as they are, still shared: every op computes with them, on every
    backend (see ``minicnn.kernels.registry``)."""
    if not isinstance(array, numpy.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(array).__name__}")
    dtypes.as_dtype(array.dtype)
    return Tensor._wrap(array)


def zeros(*size, dtype=None, requires_grad=False, device=None):
    return _finish(numpy.zeros(_size(size, "zeros"), _float_dtype(dtype)), device, requires_grad)


def ones(*size, dtype=None, requires_grad=False, device=None):
    return _finish(numpy.ones(_size(size, "ones"), _float_dtype(dtype)), device, requires_grad)


def empty(*size, dtype=None, requires_grad=False, device=None):
    """Uninitialised memory, as in torch (use zeros when in doubt)."""
    return _finish(numpy.empty(_size(size, "empty"), _float_dtype(dtype)), device, requires_grad)


def full(size, fill_value, dtype=None, requires_grad=False, device=None):
    """A tensor of ``size`` filled with ``fill_value``; the dtype follows
    the value (float32 for a float, int64 for an int, bool for a bool)."""
    if dtype is None:
        dtype = dtypes.infer_dtype(fill_value)
    return _finish(numpy.full(_size((size,), "full"), fill_value, dtypes.as_dtype(dtype)), device, requires_grad)


def arange(start, end=None, step=1, dtype=None, requires_grad=False, device=None):
    """Values from ``start`` to ``end`` (exclusive) by ``step``; int64 if all
    are ints, else float32."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("arange: step must be nonzero")
    if dtype is None:
        dtype = dtypes.int64 if all(isinstance(v, numbers.Integral) for v in (start, end, step)) else dtypes.default_float
    return _finish(numpy.arange(start, end, step).astype(dtypes.as_dtype(dtype)), device, requires_grad)


def linspace(start, end, steps, dtype=None, requires_grad=False, device=None):
    return _finish(numpy.linspace(start, end, steps).astype(_float_dtype(dtype)), device, requires_grad)


def rand(*size, dtype=None, requires_grad=False, device=None, generator=None):
    """Uniform samples in [0, 1) from the global generator."""
    array = random.uniform(_size(size, "rand"), _float_dtype(dtype), generator=generator)
    return _finish(array, device, requires_grad)


def randn(*size, dtype=None, requires_grad=False, device=None, generator=None):
    """Standard normal samples from the global generator."""
    array = random.normal(_size(size, "randn"), _float_dtype(dtype), generator=generator)
    return _finish(array, device, requires_grad)


def randint(low, high=None, size=(), dtype=None, device=None, generator=None):
    """Integers in [low, high) (int64 unless ``dtype`` says otherwise)."""
    if high is None:
        low, high = 0, low
    dtype = numpy.dtype(dtypes.as_dtype(dtype or dtypes.int64))
    # Drawn in dtype itself where it is an integer type that holds the
    # range, so a narrow dtype never passes through an int64 array.
    fits = dtype.kind in "iu" and numpy.iinfo(dtype).min <= low and high - 1 <= numpy.iinfo(dtype).max
    array = (generator or random.default_generator()).integers(
        low, high, size=tuple(size), dtype=dtype if fits else numpy.int64)
    return _finish(array.astype(dtype, copy=False), device, False)


def randperm(n, dtype=None, device=None, generator=None):
    array = (generator or random.default_generator()).permutation(n)
    return _finish(array.astype(dtypes.as_dtype(dtype or dtypes.int64)), device, False)


def _like(fn, input, dtype, requires_grad, device):
    dtype = input.dtype if dtype is None else dtype
    device = input.device if device is None else device
    return fn(input.shape, dtype=dtype, requires_grad=requires_grad, device=device)


def zeros_like(input, dtype=None, requires_grad=False, device=None):
    return _like(zeros, input, dtype, requires_grad, device)


def ones_like(input, dtype=None, requires_grad=False, device=None):
    return _like(ones, input, dtype, requires_grad, device)


def empty_like(input, dtype=None, requires_grad=False, device=None):
    return _like(empty, input, dtype, requires_grad, device)


def rand_like(input, dtype=None, requires_grad=False, device=None):
    return _like(rand, input, dtype, requires_grad, device)


def randn_like(input, dtype=None, requires_grad=False, device=None):
    return _like(randn, input, dtype, requires_grad, device)


def full_like(input, fill_value, dtype=None, requires_grad=False, device=None):
    dtype = input.dtype if dtype is None else dtype
    return full(input.shape, fill_value, dtype=dtype, requires_grad=requires_grad,
                device=input.device if device is None else device)
