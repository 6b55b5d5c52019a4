"""Weight initialisation, torch's ``nn.init``: every function fills a
tensor in place (outside the graph) and returns it.

Notation
--------
For a weight of shape (out, in, *kernel), the receptive field is
``prod(kernel)``, ``fan_in = in * receptive`` and ``fan_out = out *
receptive``. The schemes keep the variance of activations (fan_in) or of
gradients (fan_out) roughly constant from layer to layer:

* Xavier/Glorot: std = gain * sqrt(2 / (fan_in + fan_out)).
* Kaiming/He: std = gain / sqrt(fan), with gain = calculate_gain(nonlinearity, a).

A uniform distribution U(-b, b) has std b / sqrt(3), so the uniform
variants use the bound b = sqrt(3) * std.

Random values come from minicnn's global generator (``mc.manual_seed``), or
from ``generator`` (a ``numpy.random.Generator``) when one is given. They
are drawn in the tensor's precision: float64 for float64 tensors, float32
for float32 and float16 ones (``minicnn.random``), so filling a float32
tensor never builds a float64 array of its size.
"""
import math
import numbers

from .. import random
from ..backend import get_array_module

__all__ = [
    "calculate_gain", "uniform_", "normal_", "trunc_normal_", "constant_", "zeros_", "ones_",
    "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
]


def calculate_gain(nonlinearity, param=None):
    """The recommended gain for ``nonlinearity``: 1 for linear / conv /
    sigmoid, 5/3 for tanh, sqrt(2) for relu, sqrt(2 / (1 + slope^2)) for
    leaky_relu (slope ``param``, default 0.01), 3/4 for selu."""
    linear = ("linear", "conv1d", "conv2d", "conv3d",
              "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "sigmoid")
    if nonlinearity in linear:
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            negative_slope = 0.01
        elif isinstance(param, numbers.Real) and not isinstance(param, bool):
            negative_slope = param
        else:
            raise ValueError(f"calculate_gain: negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + negative_slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _calculate_fan_in_and_fan_out(tensor):
    """(fan_in, fan_out) of a weight of shape (out, in, *kernel)."""
    if tensor.ndim < 2:
        raise ValueError(
            f"fan in and fan out can not be computed for a tensor with fewer than 2 dimensions "
            f"(shape {tuple(tensor.shape)})")
    receptive_field = 1
    for n in tensor.shape[2:]:
        receptive_field *= n
    return tensor.shape[1] * receptive_field, tensor.shape[0] * receptive_field


def _calculate_correct_fan(tensor, mode):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _fill(tensor, values):
    """Write ``values`` (a NumPy array or a scalar) into ``tensor`` (where
    they were drawn into it already, nothing is left to do)."""
    if values is tensor.data:
        return tensor
    xp = get_array_module(tensor.data)
    tensor.data[...] = xp.asarray(values).astype(tensor.dtype, copy=False)
    return tensor


def _check_float(tensor, name):
    if tensor.dtype.kind != "f":
        raise TypeError(f"{name}: the tensor must be floating point, got dtype {tensor.dtype}")


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    """Fill with samples of U(a, b)."""
    _check_float(tensor, "uniform_")
    if a > b:
        raise ValueError(f"uniform_: a ({a}) must not exceed b ({b})")
    return _fill(tensor, random.uniform(tensor.shape, tensor.dtype, generator=generator, low=a, high=b,
                                        out=tensor.data))


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    """Fill with samples of N(mean, std^2)."""
    _check_float(tensor, "normal_")
    if std < 0:
        raise ValueError(f"normal_: std must be non-negative, got {std}")
    return _fill(tensor, random.normal(tensor.shape, tensor.dtype, generator=generator, mean=mean, std=std,
                                       out=tensor.data))


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=None):
    """Fill with samples of N(mean, std^2) restricted to [a, b]: samples
    outside are drawn again until all fall inside."""
    _check_float(tensor, "trunc_normal_")
    if not a < b:
        raise ValueError(f"trunc_normal_: a ({a}) must be less than b ({b})")
    if std <= 0:
        raise ValueError(f"trunc_normal_: std must be positive, got {std}")
    values = random.normal(tensor.shape, tensor.dtype, generator=generator, mean=mean, std=std)
    outside = (values < a) | (values > b)
    while outside.any():
        values[outside] = random.normal(int(outside.sum()), tensor.dtype, generator=generator, mean=mean, std=std)
        outside = (values < a) | (values > b)
    return _fill(tensor, values)


def constant_(tensor, val):
    """Fill with the value ``val``."""
    return _fill(tensor, val)


def zeros_(tensor):
    return _fill(tensor, 0)


def ones_(tensor):
    return _fill(tensor, 1)


def xavier_uniform_(tensor, gain=1.0, generator=None):
    """Glorot uniform: U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    bound = math.sqrt(3.0) * gain * math.sqrt(2.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor, gain=1.0, generator=None):
    """Glorot normal: N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)


def _kaiming_std(tensor, a, mode, nonlinearity):
    fan = _calculate_correct_fan(tensor, mode)
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He uniform: U(-b, b) with b = sqrt(3) * gain / sqrt(fan); ``a`` is the
    negative slope of the leaky_relu that follows. (Linear and Conv2d use
    a = sqrt(5), which gives b = 1 / sqrt(fan_in).) A tensor with no
    elements is left as it is, as in torch."""
    if tensor.data.size == 0:
        return tensor
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He normal: N(0, std^2) with std = gain / sqrt(fan)."""
    if tensor.data.size == 0:
        return tensor
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity), generator)
