"""Small helpers shared by the ops: turning operands into Tensors,
checking dims, and broadcasting shapes."""
import numbers

import numpy

from .. import dtypes
from ..backend import get_array_module
from ..kernels import geometry
from ..tensor import Tensor  # defined before tensor.py imports the ops


def as_tensor(value, like):
    """``value`` as a Tensor on the device of ``like``.

    A Python scalar takes ``like``'s dtype when ``like`` is floating (as in
    torch, ``x * 2.0`` keeps float32); an int tensor with a float scalar
    gives the default float dtype.
    """
    if isinstance(value, Tensor):
        return value
    xp = get_array_module(like)
    if isinstance(value, (bool, numbers.Number)) and not hasattr(value, "dtype"):
        if like.dtype.kind == "f":
            dtype = like.dtype
        elif isinstance(value, bool):
            dtype = dtypes.bool_ if like.dtype.kind == "b" else like.dtype
        elif isinstance(value, numbers.Integral):
            dtype = like.dtype if like.dtype.kind in "iu" else dtypes.int64
        else:
            dtype = dtypes.default_float
        return Tensor._wrap(xp.asarray(value, dtype=dtype))
    if isinstance(value, (numpy.ndarray, numpy.generic)) or isinstance(value, xp.ndarray):
        return Tensor._wrap(xp.asarray(value))
    if isinstance(value, (list, tuple)):
        return Tensor._wrap(xp.asarray(value, dtype=dtypes.infer_dtype(value)))
    raise TypeError(f"expected a Tensor, array or number, got {type(value).__name__}")


def normalize_dim(dim, ndim, name="dim"):
    """A dim in ``[0, ndim)``; negative dims count from the end."""
    if not isinstance(dim, numbers.Integral) or isinstance(dim, bool):
        raise TypeError(f"{name} must be an int, got {type(dim).__name__}")
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise ValueError(f"{name}={dim} is out of range for a tensor with {ndim} dims (expected {-n}..{n - 1})")
    return dim % n


def normalize_dims(dim, ndim, name="dim"):
    """``dim`` (None, an int or a sequence) as a sorted tuple of dims."""
    if dim is None:
        return tuple(range(ndim))
    if isinstance(dim, numbers.Integral):
        return (normalize_dim(dim, ndim, name),)
    dims = tuple(normalize_dim(d, ndim, name) for d in dim)
    if len(set(dims)) != len(dims):
        raise ValueError(f"{name}={tuple(dim)} repeats a dimension")
    return tuple(sorted(dims))


def broadcast_shapes(a, b, name_a="input", name_b="other"):
    """The broadcast shape of two shapes, or a ValueError naming both."""
    if tuple(a) == tuple(b):                 # the common case, without NumPy's machinery
        return tuple(a)
    try:
        return numpy.broadcast_shapes(tuple(a), tuple(b))
    except ValueError:
        raise ValueError(
            f"shapes cannot be broadcast together: {name_a} has shape {tuple(a)}, "
            f"{name_b} has shape {tuple(b)}") from None


def check_float(x, op, name="input"):
    """TypeError unless ``x`` is a floating tensor."""
    if x.dtype.kind != "f":
        raise TypeError(f"{op}: {name} must be a floating-point tensor, got dtype {x.dtype}")


def pair(value, name, min_value=None):
    """``value`` (an int, one int in a tuple or list, or two ints) as an
    (H, W) pair: ``kernels.geometry.pair`` plus the one-element sequence
    that torch's conv and pooling functions accept for both dims."""
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = (value[0], value[0])
    return geometry.pair(value, name, min_value)
