"""Activations: relu, relu6, hardtanh, leaky_relu, elu, sigmoid, tanh,
hardsigmoid, hardswish, silu, gelu, softmax, log_softmax.

Each saves what its derivative needs at the lowest cost: a mask for the
piecewise-linear ones, the output for sigmoid/tanh/softmax (whose
derivatives are functions of the output), the input for the rest.

``inplace=True`` is torch's flag: the result overwrites the input, which
is returned. Where a graph is recorded this is an in-place op as torch
records it (``functional/inplace.py``): the input moves to the
activation's node, a node that saved the input's old values raises on
backward, and a leaf that requires grad is refused. The result is computed
out of place and copied in there (the backward keeps its mask or output,
so no memory is saved); without a graph, ReLU writes no mask and runs as
one parallel clamp into the input (ResNet-18 inference, batch 8 at
224x224: 8-10 ms of ~160, the same in place or not).
"""
import math

from minicnn.kernels import registry

from ..autograd import Function, bump_version, is_grad_enabled
from ..backend import get_array_module
from ..tensor import Tensor  # defined before tensor.py imports the ops
from .inplace import apply_inplace
from .utils import check_float, normalize_dim


def _constant(array):
    return Tensor._wrap(array)


def relu_reference(x, out=None):
    """(max(x, 0), x > 0) on an array: ReLU's output (into ``out`` if
    given, which may be x) and the mask its backward needs (NumPy
    reference of "relu"). maximum keeps NaN, as torch's relu does."""
    mask = x > 0                        # before out (x itself, in place) is written
    return get_array_module(x).maximum(x, x.dtype.type(0), out=out), mask


def clamp_into_reference(x, lo, hi, out):
    """out = clip(x, lo, hi), NaN kept; out may be x (NumPy reference of
    "clamp_into": ReLU without its mask, ReLU6, hardtanh)."""
    return get_array_module(x).clip(x, lo, hi, out=out)


def add_clamp_into_reference(y, r, lo, hi):
    """y = clip(y + r, lo, hi) in place, NaN kept (NumPy reference of
    "add_clamp_into": a residual add and the ReLU after it; lo -inf and
    hi inf for the add alone). Returns y."""
    xp = get_array_module(y)
    xp.add(y, r, out=y)
    return xp.clip(y, lo, hi, out=y)


def clamp_with_mask_reference(x, lo, hi, out=None):
    """(clip(x, lo, hi), lo < x < hi) on an array: hardtanh's output (into
    ``out`` if given, which may be x) and the mask its backward needs, 1
    strictly inside (NumPy reference of "clamp_with_mask")."""
    mask = (x > lo) & (x < hi)          # before out (x itself, in place) is written
    return get_array_module(x).clip(x, lo, hi, out=out), mask


def masked_gradient_reference(gy, mask):
    """gy where ``mask``, 0 elsewhere (NumPy reference of "masked_gradient")."""
    return get_array_module(gy).where(mask, gy, gy.dtype.type(0))


class PiecewiseLinear(Function):
    """y = slope(x) * x + offset(x) with a slope that is constant on pieces;
    backward multiplies by the slope, saved as one array: a bool mask (one
    byte per element) where the slope is 0 or 1.

    With a mask, backward is the "masked_gradient" primitive: gy where the
    slope is 1, else 0 (a NaN in gy does not reach the flat pieces, as in
    torch). Building a graph of the gradient (create_graph=True) takes the
    Tensor product instead, which can be differentiated again."""

    def forward(self, x):
        y, slope = self.compute(get_array_module(x), x)
        self.slope = slope
        return y

    def backward(self, gy):
        if self.slope.dtype == bool and not is_grad_enabled():
            return registry.lookup("masked_gradient", get_array_module(gy.data))(gy.data, self.slope)
        return gy * _constant(self.slope)


class ReLU(PiecewiseLinear):
    """max(x, 0); ``in_place``: the output written over x (ReLU in place
    while a graph is recorded: the mask is all backward needs)."""

    def __init__(self, in_place=False):
        self.in_place = in_place

    def compute(self, xp, x):
        if not self.recording:               # no backward: no mask
            return _clamp_into(xp, x, 0, math.inf, x if self.in_place else xp.empty_like(x)), None
        return registry.lookup("relu", xp)(x, out=x if self.in_place else None)


def _clamp_into(xp, x, lo, hi, out):
    return registry.lookup("clamp_into", xp)(x, lo, hi, out)


class Hardtanh(PiecewiseLinear):
    """clip(x, lo, hi); slope 1 strictly inside (lo, hi), as torch;
    ``in_place`` as ReLU's."""

    def __init__(self, lo, hi, in_place=False):
        self.lo, self.hi, self.in_place = lo, hi, in_place

    def compute(self, xp, x):
        if not self.recording:
            return _clamp_into(xp, x, self.lo, self.hi, x if self.in_place else xp.empty_like(x)), None
        return registry.lookup("clamp_with_mask", xp)(x, self.lo, self.hi, out=x if self.in_place else None)


class LeakyReLU(PiecewiseLinear):
    def __init__(self, negative_slope):
        self.negative_slope = negative_slope

    def compute(self, xp, x):
        slope = xp.where(x > 0, x.dtype.type(1), x.dtype.type(self.negative_slope))
        return x * slope, slope


class ELU(Function):
    """x for x > 0, alpha (e^x - 1) otherwise; the slope there is y + alpha,
    written with the saved output y so that it is differentiable again
    (its own slope, y + alpha, is not 0 as a piecewise-linear one's is)."""

    def __init__(self, alpha):
        self.alpha = alpha

    def forward(self, x):
        xp = get_array_module(x)
        y = xp.where(x > 0, x, self.alpha * xp.expm1(xp.minimum(x, 0))).astype(x.dtype)
        self.positive = (x > 0).astype(x.dtype)
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        (y,) = self.saved_tensors
        positive = _constant(self.positive)
        return gy * (positive + (1 - positive) * (y + self.alpha))


def sigmoid_reference(x):
    """1 / (1 + exp(-x)) on an array. exp of a negative number never
    overflows: split by sign. (NumPy reference of the "sigmoid" primitive.)"""
    xp = get_array_module(x)
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)


def hardswish_reference(x):
    """x * relu6(x + 3) / 6 on an array (NumPy reference of "hardswish")."""
    xp = get_array_module(x)
    return (x * xp.clip(x + 3, 0, 6) / 6).astype(x.dtype)


def silu_reference(x, out=None):
    """x * sigmoid(x) on an array, into ``out`` if given (which may be x)
    (NumPy reference of "silu")."""
    y = x * sigmoid_reference(x)
    if out is None:
        return y
    out[...] = y
    return out


def silu_backward_reference(gy, x):
    """gy * s * (1 + x * (1 - s)), s = sigmoid(x): SiLU's input gradient
    on arrays (NumPy reference of "silu_backward")."""
    s = sigmoid_reference(x)
    return (gy * s * (1 + x * (1 - s))).astype(gy.dtype)


# One fused pass each on the CPU (kernels/cpu/activation.py).
for _name, _reference in (("sigmoid", sigmoid_reference), ("silu", silu_reference), ("relu", relu_reference),
                          ("silu_backward", silu_backward_reference),
                          ("clamp_into", clamp_into_reference), ("clamp_with_mask", clamp_with_mask_reference),
                          ("add_clamp_into", add_clamp_into_reference),
                          ("masked_gradient", masked_gradient_reference),
                          ("hardswish", hardswish_reference)):
    registry.register(_name, "numpy", _reference)
    registry.register(_name, "numba", f"minicnn.kernels.cpu.activation:{_name}")


def _sigmoid(xp, x):
    return registry.lookup("sigmoid", xp)(x)


class Sigmoid(Function):
    def forward(self, x):
        y = _sigmoid(get_array_module(x), x)
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        (y,) = self.saved_tensors
        return gy * y * (1 - y)


class Tanh(Function):
    def forward(self, x):
        y = get_array_module(x).tanh(x)
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        (y,) = self.saved_tensors
        return TanhGrad.apply(y, gy)


class TanhGrad(Function):
    """gx = gy * (1 - y^2), tanh's gradient from its output y: one op and
    one buffer where ``gy * (1 - y * y)`` in Tensor ops is three of each.
    Its own backward keeps double backward working."""

    def forward(self, y, gy):
        self.save_for_backward(y, gy)
        xp = get_array_module(y)
        gx = xp.multiply(y, y, out=xp.empty_like(y))   # an array even for 0-d y (y * y is a scalar)
        xp.subtract(1, gx, out=gx)
        gx *= gy
        return gx

    def backward(self, ggx):
        y, gy = self.saved_tensors
        return ggx * gy * (-2 * y), ggx * (1 - y * y)


class Hardsigmoid(PiecewiseLinear):
    """relu6(x + 3) / 6; slope 1/6 strictly inside (-3, 3)."""

    def compute(self, xp, x):
        inside = (x > -3) & (x < 3)
        return xp.clip(x / 6 + x.dtype.type(0.5), 0, 1).astype(x.dtype), inside.astype(x.dtype) / 6


class Hardswish(Function):
    """x * relu6(x + 3) / 6; slope 0 for x <= -3, (2x + 3) / 6 on the open
    interval (-3, 3) and 1 for x >= 3, the one-sided choices torch makes at
    the two kinks."""

    def forward(self, x):
        xp = get_array_module(x)
        y = registry.lookup("hardswish", xp)(x)
        if self.recording:          # inference needs no slope: it was a third of LR-ASPP's time
            self.slope = xp.where(x <= -3, 0, xp.where(x < 3, (2 * x + 3) / 6, 1)).astype(x.dtype)
        return y

    def backward(self, gy):
        return gy * _constant(self.slope)


class SiLU(Function):
    """x * sigmoid(x); derivative s (1 + x (1 - s))."""

    def forward(self, x):
        self.save_for_backward(x)
        return registry.lookup("silu", get_array_module(x))(x)

    def backward(self, gy):
        (x,) = self.saved_tensors
        if not is_grad_enabled():       # one fused pass ("silu_backward"); a graph of it takes the Tensor ops
            return Tensor._wrap(registry.lookup("silu_backward", get_array_module(gy.data))(gy.data, x.data))
        s = sigmoid(x)
        return gy * s * (1 + x * (1 - s))


class GELU(Function):
    """x Phi(x) ('none') or its tanh approximation ('tanh')."""

    def __init__(self, approximate):
        self.approximate = approximate

    def forward(self, x):
        self.save_for_backward(x)
        xp = get_array_module(x)
        if self.approximate == "tanh":
            inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)
            return (0.5 * x * (1 + xp.tanh(inner))).astype(x.dtype)
        return (0.5 * x * (1 + _erf(xp, x / math.sqrt(2)))).astype(x.dtype)

    def backward(self, gy):
        (x,) = self.saved_tensors
        xp = get_array_module(x.data)
        a = x.data
        if self.approximate == "tanh":
            k = math.sqrt(2 / math.pi)
            t = xp.tanh(k * (a + 0.044715 * a ** 3))
            d = 0.5 * (1 + t) + 0.5 * a * (1 - t * t) * k * (1 + 3 * 0.044715 * a * a)
        else:
            cdf = 0.5 * (1 + _erf(xp, a / math.sqrt(2)))
            pdf = xp.exp(-0.5 * a * a) / math.sqrt(2 * math.pi)
            d = cdf + a * pdf
        return gy * _constant(d.astype(a.dtype))


def erf_reference(x):
    """The error function, elementwise, on a float array: ``math.erf`` per
    element (NumPy has no erf). NumPy reference of the "erf" primitive; the
    CPU version compiles the same ``math.erf`` into a ufunc
    (``kernels/cpu/special.py``), the GPU's is CuPy's."""
    import numpy
    return numpy.vectorize(math.erf, otypes=[x.dtype])(x) if x.size else x.copy()


registry.register("erf", "numpy", erf_reference)
registry.register("erf", "numba", "minicnn.kernels.cpu.special:erf")


def _erf(xp, x):
    return registry.lookup("erf", xp)(x)


class Softmax(Function):
    def __init__(self, dim):
        self.dim = dim

    def forward(self, x):
        xp = get_array_module(x)
        if x.size == 0:                     # max has no identity: nothing to normalize
            y = xp.empty_like(x)
            self.save_for_backward(y)
            return y
        e = xp.exp(x - x.max(axis=self.dim, keepdims=True))
        y = e / e.sum(axis=self.dim, keepdims=True)
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        (y,) = self.saved_tensors
        gyy = gy * y
        return gyy - y * gyy.sum(self.dim, keepdim=True)


class LogSoftmax(Function):
    """x - logsumexp(x), with the max subtracted first so large logits do
    not overflow."""

    def __init__(self, dim):
        self.dim = dim

    def forward(self, x):
        xp = get_array_module(x)
        if x.size == 0:                     # max has no identity: nothing to normalize
            y = xp.empty_like(x)
            self.save_for_backward(y)
            return y
        shifted = x - x.max(axis=self.dim, keepdims=True)
        y = shifted - xp.log(xp.exp(shifted).sum(axis=self.dim, keepdims=True))
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        (y,) = self.saved_tensors
        return gy - y.exp() * gy.sum(self.dim, keepdim=True)


# -- the functional API -------------------------------------------------
def _apply(fn_class, input, name, inplace=False, into=None, needs_original=False, writes_input=False, **kwargs):
    """fn_class applied to ``input``. With ``inplace`` the result
    overwrites input's array and input is returned: recorded as an
    in-place op where a graph is (``needs_original``: the backward reads
    the input, which then gets a copy of the old values; ``writes_input``:
    fn_class computes its output over its input when given
    ``in_place=True``, so nothing is copied), else written directly:
    ``into(xp, x)`` computes it in place where given, else the result is
    computed and copied in."""
    check_float(input, name)
    if not inplace:
        return fn_class.apply(input, **kwargs)
    if is_grad_enabled() and input.requires_grad:
        if writes_input:
            kwargs["in_place"] = True
        return apply_inplace(input, name + "_", lambda x: fn_class.apply(x, **kwargs),
                             needs_original=needs_original)
    x = input.data
    if into is not None:
        into(get_array_module(x), x)
    else:
        x[...] = fn_class.apply(input, **kwargs).data
    bump_version(x)
    return input


def relu(input, inplace=False):
    """max(x, 0)."""
    return _apply(ReLU, input, "relu", inplace, into=lambda xp, x: _clamp_into(xp, x, 0, math.inf, x),
                  writes_input=True)


def relu6(input, inplace=False):
    """min(max(x, 0), 6)."""
    return hardtanh(input, 0.0, 6.0, inplace)


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    """clip(x, min_val, max_val)."""
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val ({min_val}) must not exceed max_val ({max_val})")
    return _apply(Hardtanh, input, "hardtanh", inplace, into=lambda xp, x: _clamp_into(xp, x, min_val, max_val, x),
                  writes_input=True, lo=min_val, hi=max_val)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    """x for x > 0, negative_slope * x otherwise."""
    return _apply(LeakyReLU, input, "leaky_relu", inplace, negative_slope=negative_slope)


def elu(input, alpha=1.0, inplace=False):
    """x for x > 0, alpha (e^x - 1) otherwise."""
    return _apply(ELU, input, "elu", inplace, alpha=alpha)


def sigmoid(input):
    """1 / (1 + e^-x), computed without overflow for large |x|."""
    return _apply(Sigmoid, input, "sigmoid")


def tanh(input):
    return _apply(Tanh, input, "tanh")


def hardsigmoid(input, inplace=False):
    """relu6(x + 3) / 6."""
    return _apply(Hardsigmoid, input, "hardsigmoid", inplace)


def hardswish(input, inplace=False):
    """x * relu6(x + 3) / 6 (MobileNetV3)."""
    return _apply(Hardswish, input, "hardswish", inplace)


def silu(input, inplace=False):
    """x * sigmoid(x) (a.k.a. swish; EfficientNet)."""
    return _apply(SiLU, input, "silu", inplace, into=lambda xp, x: registry.lookup("silu", xp)(x, out=x),
                  needs_original=True)


def gelu(input, approximate="none"):
    """x * Phi(x), Phi the standard normal CDF; ``approximate='tanh'`` uses
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _apply(GELU, input, "gelu", approximate=approximate)


def _softmax_dim(input, dim, name):
    if dim is None:
        raise ValueError(f"{name}: pass dim explicitly (torch's implicit choice is deprecated)")
    return normalize_dim(dim, input.ndim)


def softmax(input, dim=None, dtype=None):
    """exp(x) / sum(exp(x)) along ``dim``, stable for large inputs."""
    if dtype is not None:
        input = input.to(dtype)
    return _apply(Softmax, input, "softmax", dim=_softmax_dim(input, dim, "softmax"))


def log_softmax(input, dim=None, dtype=None):
    """log(softmax(x)) along ``dim``, computed as x - logsumexp(x)."""
    if dtype is not None:
        input = input.to(dtype)
    return _apply(LogSoftmax, input, "log_softmax", dim=_softmax_dim(input, dim, "log_softmax"))
