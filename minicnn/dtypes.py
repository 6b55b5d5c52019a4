"""The dtypes minicnn knows, as NumPy dtype objects.

A minicnn dtype *is* a ``numpy.dtype``: ``mc.float32 == numpy.float32`` is
True and ``tensor.dtype`` prints as ``float32``. (torch prints
``torch.float32``; the values mean the same.)

Inference follows torch: Python floats (and lists of them) become
``float32`` (the default float dtype), Python ints become ``int64``,
Python bools become ``bool``, and a NumPy array keeps its own dtype, so a
float64 array stays float64.
"""
import numpy

float16 = numpy.dtype("float16")
float32 = numpy.dtype("float32")
float64 = numpy.dtype("float64")
int32 = numpy.dtype("int32")
int64 = numpy.dtype("int64")
uint8 = numpy.dtype("uint8")
bool_ = numpy.dtype("bool")

default_float = float32

_BY_NAME = {
    "float16": float16, "half": float16,
    "float32": float32, "float": float32,
    "float64": float64, "double": float64,
    "int32": int32, "int": int32,
    "int64": int64, "long": int64,
    "uint8": uint8,
    "bool": bool_,
}


def as_dtype(dtype):
    """Turn a dtype-like (``mc.float32``, ``numpy.float32``, ``"float32"``)
    into a ``numpy.dtype``; raise TypeError for anything else."""
    if isinstance(dtype, str):
        if dtype not in _BY_NAME:
            raise TypeError(f"unknown dtype name {dtype!r}; expected one of {sorted(_BY_NAME)}")
        return _BY_NAME[dtype]
    try:
        resolved = numpy.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be a minicnn/NumPy dtype or its name, got {dtype!r}") from None
    if resolved.kind not in "fiub":
        raise TypeError(f"unsupported dtype {resolved}: minicnn handles float, int and bool tensors")
    return resolved


def is_floating(dtype):
    """True for float16/32/64."""
    return numpy.dtype(dtype).kind == "f"


def infer_dtype(data):
    """The dtype torch would give ``torch.tensor(data)``.

    NumPy arrays and NumPy scalars keep their dtype; Python data is
    float32 if any element is a float, else int64, else bool.
    """
    if hasattr(data, "dtype") and not isinstance(data, (list, tuple)):
        return numpy.dtype(data.dtype)
    kinds = numpy.asarray(data).dtype.kind
    if kinds == "f":
        return default_float
    if kinds in "iu":
        return int64
    if kinds == "b":
        return bool_
    raise TypeError(f"cannot make a tensor from data of type {type(data).__name__}")
