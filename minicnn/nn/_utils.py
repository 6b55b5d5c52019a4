"""Small helpers shared by the layers: argument tuples and new parameters."""
import numbers

import numpy

from .. import dtypes
from ..device import Device, move_array
from .parameter import Parameter


def is_int(value):
    """True for an int (bools excluded)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def ntuple(value, name, length=2):
    """``value`` (an int or a sequence of ``length`` ints) as a tuple of
    ints; TypeError naming ``name`` otherwise."""
    if is_int(value):
        return (int(value),) * length
    try:
        values = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be an int or a tuple of {length} ints, got {value!r}") from None
    if len(values) != length or not all(is_int(v) for v in values):
        raise TypeError(f"{name} must be an int or a tuple of {length} ints, got {value!r}")
    return tuple(int(v) for v in values)


def check_positive(value, name, layer):
    """ValueError unless ``value`` is an int >= 1."""
    if not is_int(value) or value < 1:
        raise ValueError(f"{layer}: {name} must be a positive int, got {value!r}")


def new_array(shape, device=None, dtype=None, fill=0.0):
    """A filled array of ``shape`` on ``device`` with ``dtype`` (default:
    float32 on the CPU), as layers use to create parameters and buffers."""
    dtype = dtypes.default_float if dtype is None else dtypes.as_dtype(dtype)
    # Zeros from calloc: the pages are not touched until written (a model
    # whose weights are about to be loaded costs no time for its zeros).
    array = numpy.zeros(tuple(shape), dtype=dtype) if fill == 0 else numpy.full(tuple(shape), fill, dtype=dtype)
    return array if device is None else move_array(array, Device(device))


def new_parameter(shape, device=None, dtype=None):
    """A floating Parameter of ``shape`` (zeros until reset_parameters
    initialises it)."""
    dtype = dtypes.default_float if dtype is None else dtypes.as_dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"parameters must have a floating dtype, got {dtype}")
    return Parameter(new_array(shape, device, dtype))
