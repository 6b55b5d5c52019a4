"""Which array module (NumPy or CuPy) an array belongs to.

Op code never assumes NumPy: it asks ``get_array_module(x)`` for the module
of its inputs and calls ``xp.exp``, ``xp.matmul`` and so on. The same op
then runs on the GPU when its inputs are CuPy arrays.
"""
import numpy

try:  # CuPy is an optional extra; import it only if it is installed.
    import cupy as _cupy
except Exception:  # noqa: BLE001 - any failure means "no GPU backend"
    _cupy = None


def get_array_module(*arrays):
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy``.

    Arguments may be arrays, Tensors (their ``.data`` is looked at) or
    anything else (ignored), so callers can pass their inputs as they are.
    """
    if _cupy is not None:
        for a in arrays:
            if not isinstance(a, numpy.ndarray):
                a = getattr(a, "data", a)  # a Tensor holds its array in .data
            if isinstance(a, _cupy.ndarray):
                return _cupy
    return numpy


def cupy_module():
    """The cupy module, or None when CuPy is not installed."""
    return _cupy
