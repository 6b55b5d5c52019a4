"""Elementwise arithmetic: + - * / **, exp, log, sqrt, abs, clamp,
maximum/minimum, where; casts and comparisons.

Binary ops broadcast like NumPy (and torch). Backward sums each gradient
back to its input's shape with ``sum_to``: a value broadcast to many
positions received gradient from all of them.
"""
import numbers

from minicnn.kernels import registry

from ..autograd import Function, is_grad_enabled
from ..backend import get_array_module
from ..tensor import Tensor  # defined before tensor.py imports the ops
from .utils import as_tensor, broadcast_shapes
from .shape import sum_to


def _binary(fn_class, a, b, name):
    """Apply a broadcasting binary op after turning scalars into Tensors."""
    like = a if isinstance(a, Tensor) else b
    a, b = as_tensor(a, like.data), as_tensor(b, like.data)
    broadcast_shapes(a.shape, b.shape, f"{name}: input", "other")
    # torch promotes int with float to the float operand's dtype (NumPy
    # would widen int64 with float32 to float64).
    if a.dtype.kind != "f" and b.dtype.kind == "f":
        a = a.to(b.dtype)
    elif b.dtype.kind != "f" and a.dtype.kind == "f":
        b = b.to(a.dtype)
    return fn_class.apply(a, b)


class Add(Function):
    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a + b

    def backward(self, gy):
        return sum_to(gy, self.shapes[0]), sum_to(gy, self.shapes[1])


class Sub(Function):
    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a - b

    def backward(self, gy):
        return sum_to(gy, self.shapes[0]), sum_to(-gy, self.shapes[1])


#: Fewest elements of a map for ``_planes_scale`` to be worth a kernel call.
PLANES_MIN_SIZE = 1 << 14


def _planes_scale(a, b):
    """(map, scale) where one of a and b is a map (..., H, W), C-contiguous,
    and the other its scale plane by plane, of shape (..., 1, 1), the same
    float dtype (squeeze-and-excitation's x * s); else None."""
    for big, small in ((a, b), (b, a)):
        if (big.ndim >= 3 and small.shape == big.shape[:-2] + (1, 1) and big.dtype == small.dtype
                and big.dtype.kind == "f" and big.size >= PLANES_MIN_SIZE and big.flags.c_contiguous):
            return big, small
    return None


def planes_scaled_reference(x, s):
    """x (P, L) * s (P,) row by row (NumPy reference of "planes_scaled")."""
    return x * s[:, None]


def planes_dot_reference(a, b):
    """The sum over each row of a * b, (P, L) -> (P,) (NumPy reference of "planes_dot")."""
    return (a * b).sum(axis=1)


class Mul(Function):
    """a * b. A map times its scale plane by plane (``_planes_scale``) is
    one pass on the kernels' threads each way ("planes_scaled",
    "planes_dot"): squeeze-and-excitation's multiply."""

    def forward(self, a, b):
        self.save_for_backward(a, b)
        pair = _planes_scale(a, b)
        if pair is None:
            return a * b
        x, s = pair
        P = s.size
        return registry.lookup("planes_scaled", get_array_module(x))(x.reshape(P, -1), s.reshape(P)).reshape(x.shape)

    def backward(self, gy):
        a, b = self.saved_tensors
        pair = None if is_grad_enabled() else _planes_scale(a.data, b.data)
        if pair is not None and gy.shape == pair[0].shape:
            xp = get_array_module(gy.data)
            x, s = pair
            P = s.size
            g = xp.ascontiguousarray(gy.data).reshape(P, -1)
            map_first = x is a.data
            needs_map, needs_scale = self.needs_input_grad if map_first else self.needs_input_grad[::-1]
            g_map = (Tensor._wrap(registry.lookup("planes_scaled", xp)(g, s.reshape(P)).reshape(x.shape))
                     if needs_map else None)
            g_scale = (Tensor._wrap(registry.lookup("planes_dot", xp)(g, x.reshape(P, -1)).reshape(s.shape))
                       if needs_scale else None)
            return (g_map, g_scale) if map_first else (g_scale, g_map)
        ga = sum_to(gy * b, a.shape) if self.needs_input_grad[0] else None
        gb = sum_to(gy * a, b.shape) if self.needs_input_grad[1] else None
        return ga, gb


class Div(Function):
    def forward(self, a, b):
        self.save_for_backward(a, b)
        return a / b

    def backward(self, gy):
        a, b = self.saved_tensors
        ga = sum_to(gy / b, a.shape) if self.needs_input_grad[0] else None
        gb = sum_to(-gy * a / (b * b), b.shape) if self.needs_input_grad[1] else None
        return ga, gb


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


class PowScalar(Function):
    """x ** c for a Python number c."""

    def __init__(self, exponent):
        self.c = exponent

    def forward(self, x):
        self.save_for_backward(x)
        return x ** x.dtype.type(self.c) if x.dtype.kind == "f" else x ** self.c

    def backward(self, gy):
        (x,) = self.saved_tensors
        if self.c == 0:
            return gy * 0
        return gy * self.c * x ** (self.c - 1)


class Pow(Function):
    """a ** b for two tensors: d/da = b a^(b-1), d/db = a^b log a."""

    def forward(self, a, b):
        y = a ** b
        self.save_for_backward(a, b, y)
        return y

    def backward(self, gy):
        a, b, y = self.saved_tensors
        ga = sum_to(gy * b * a ** (b - 1), a.shape) if self.needs_input_grad[0] else None
        gb = None
        if self.needs_input_grad[1]:
            # a^b log a, taken as 0 where a == 0 (its limit for b > 0), as in
            # torch: log is evaluated at 1 there instead of at 0.
            xp = get_array_module(a.data)
            safe_a = _constant(xp.where(a.data == 0, xp.ones((), a.dtype), a.data))
            gb = sum_to(gy * y * log(safe_a), b.shape)
        return ga, gb


class Exp(Function):
    def forward(self, x):
        y = get_array_module(x).exp(x)
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        (y,) = self.saved_tensors
        return gy * y


class Log(Function):
    def forward(self, x):
        self.save_for_backward(x)
        return get_array_module(x).log(x)

    def backward(self, gy):
        (x,) = self.saved_tensors
        return gy / x


class Sqrt(Function):
    def forward(self, x):
        y = get_array_module(x).sqrt(x)
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        (y,) = self.saved_tensors
        return gy / (y * 2)


class Abs(Function):
    def forward(self, x):
        self.save_for_backward(x)
        return get_array_module(x).abs(x)

    def backward(self, gy):
        (x,) = self.saved_tensors
        return gy * _constant(get_array_module(x.data).sign(x.data))


class Clamp(Function):
    """Gradient passes where min <= x <= max (boundaries included, as in torch)."""

    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi

    def forward(self, x):
        xp = get_array_module(x)
        inside = xp.ones(x.shape, dtype=bool)
        if self.lo is not None:
            inside &= x >= self.lo
        if self.hi is not None:
            inside &= x <= self.hi
        self.inside = inside
        return xp.clip(x, self.lo, self.hi)

    def backward(self, gy):
        return gy * _constant(self.inside.astype(gy.dtype))


class ClampTensor(Function):
    """min(max(x, lo), hi) for Tensor bounds lo and hi that broadcast with x.

    The gradient goes to whichever of the three the output equals, with
    torch's choices where they are equal: x on one bound (lo < hi) shares
    it half and half with that bound; x == lo == hi gives it all to x; and
    where lo > hi the output is hi, which takes it all."""

    def forward(self, x, lo, hi):
        xp = get_array_module(x)
        self.shapes = x.shape, lo.shape, hi.shape
        dtype = x.dtype
        ordered = lo < hi
        tie_lo, tie_hi = ((x == lo) & ordered).astype(dtype), ((x == hi) & ordered).astype(dtype)
        inside = ((x > lo) & (x < hi)) | ((x == lo) & (x == hi))
        self.weights = (inside.astype(dtype) + (tie_lo + tie_hi) / 2,
                        ((x < lo) & ~(lo > hi)).astype(dtype) + tie_lo / 2,
                        ((x > hi) | (lo > hi)).astype(dtype) + tie_hi / 2)
        return xp.minimum(xp.maximum(x, lo), hi)

    def backward(self, gy):
        return tuple(sum_to(gy * _constant(w), shape) if needed else None
                     for w, shape, needed in zip(self.weights, self.shapes, self.needs_input_grad))


class Maximum(Function):
    """max(a, b); where a == b each input gets half the gradient (as in torch)."""

    pick = "greater"

    def forward(self, a, b):
        xp = get_array_module(a)
        self.shapes = a.shape, b.shape
        wins = getattr(xp, self.pick)(a, b)
        ties = a == b
        dtype = xp.result_type(a, b)
        self.weight_a = wins.astype(dtype) + ties.astype(dtype) * 0.5
        return xp.maximum(a, b) if self.pick == "greater" else xp.minimum(a, b)

    def backward(self, gy):
        wa = _constant(self.weight_a)
        ga = sum_to(gy * wa, self.shapes[0])
        gb = sum_to(gy * (1 - wa), self.shapes[1])
        return ga, gb


class Minimum(Maximum):
    pick = "less"


class Where(Function):
    """where(condition, a, b); condition is a constant bool array."""

    def __init__(self, condition):
        self.condition = condition

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return get_array_module(a).where(self.condition, a, b)

    def backward(self, gy):
        zero = gy * 0
        cond = _constant(self.condition)
        ga = sum_to(where(cond, gy, zero), self.shapes[0]) if self.needs_input_grad[0] else None
        gb = sum_to(where(cond, zero, gy), self.shapes[1]) if self.needs_input_grad[1] else None
        return ga, gb


class Cast(Function):
    def __init__(self, dtype):
        self.dtype = dtype

    def forward(self, x):
        self.in_dtype = x.dtype
        return x.astype(self.dtype)

    def backward(self, gy):
        return gy.to(self.in_dtype) if self.in_dtype.kind == "f" else None


class Clone(Function):
    def forward(self, x):
        return x.copy()

    def backward(self, gy):
        return gy


class ToDevice(Function):
    def __init__(self, device):
        self.device = device

    def forward(self, x):
        from ..device import device_of, move_array
        self.source = device_of(x)
        return move_array(x, self.device)

    def backward(self, gy):
        from ..device import to_device
        return to_device(gy, self.source)


def _constant(array):
    """Wrap an array that carries no gradient (a mask, a sign)."""
    return Tensor._wrap(array)


# -- the functional API -------------------------------------------------
def add(input, other, alpha=1):
    """input + alpha * other, broadcasting."""
    if alpha != 1:
        other = mul(other, alpha)
    return _binary(Add, input, other, "add")


def sub(input, other, alpha=1):
    """input - alpha * other, broadcasting."""
    if alpha != 1:
        other = mul(other, alpha)
    return _binary(Sub, input, other, "sub")


def mul(input, other):
    return _binary(Mul, input, other, "mul")


def div(input, other):
    """True division; integer inputs give the default float dtype, as in torch."""
    like = input if isinstance(input, Tensor) else other
    a, b = as_tensor(input, like.data), as_tensor(other, like.data)
    if a.dtype.kind != "f" and b.dtype.kind != "f":
        a = a.to("float32")
    return _binary(Div, a, b, "div")


def neg(input):
    return Neg.apply(input)


def pow(input, exponent):
    """input ** exponent; either may be a Python number."""
    if isinstance(input, Tensor) and isinstance(exponent, numbers.Number):
        return PowScalar.apply(input, exponent=exponent)
    return _binary(Pow, input, exponent, "pow")


def exp(input):
    return Exp.apply(input)


def log(input):
    return Log.apply(input)


def sqrt(input):
    return Sqrt.apply(input)


def abs(input):
    return Abs.apply(input)


def clamp(input, min=None, max=None):
    """Clip to [min, max]; either bound may be None (not both).

    A bound may be a Tensor that broadcasts with input: then the result is
    min(max(input, min), max), differentiable in all three, with torch's
    share of the gradient where they are equal (``ClampTensor``); where
    min > max it is max. Tensor bounds are converted to a floating input's
    dtype (torch would promote float32 input with an n-d float64 bound to
    float64). One bound a Tensor and the other a number is accepted (torch
    refuses the mix)."""
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    if not isinstance(min, Tensor) and not isinstance(max, Tensor):
        return Clamp.apply(input, lo=min, hi=max)
    bounds = []
    for name, bound in (("min", min), ("max", max)):
        if isinstance(bound, Tensor):
            broadcast_shapes(input.shape, bound.shape, "clamp: input", name)
            if input.dtype.kind == "f" and bound.dtype != input.dtype:
                bound = bound.to(input.dtype)
        bounds.append(bound)
    lo, hi = bounds
    if lo is None:                # one bound: the tie shares half, as maximum / minimum do
        return minimum(input, hi)
    if hi is None:
        return maximum(input, lo)
    like = lo if isinstance(lo, Tensor) else hi
    if input.dtype.kind != "f" and like.dtype.kind == "f":
        input = input.to(like.dtype)
    lo, hi = as_tensor(lo, input.data).to(input.dtype), as_tensor(hi, input.data).to(input.dtype)
    broadcast_shapes(broadcast_shapes(input.shape, lo.shape, "clamp: input", "min"), hi.shape,
                     "clamp: input and min", "max")
    return ClampTensor.apply(input, lo, hi)


clip = clamp


def maximum(input, other):
    return _binary(Maximum, input, other, "maximum")


def minimum(input, other):
    return _binary(Minimum, input, other, "minimum")


def where(condition, input, other):
    """Elements of ``input`` where ``condition``, else of ``other``."""
    cond = condition.data if isinstance(condition, Tensor) else condition
    like = input if isinstance(input, Tensor) else other
    if not isinstance(like, Tensor):
        raise TypeError("where: input or other must be a Tensor")
    a, b = as_tensor(input, like.data), as_tensor(other, like.data)
    xp = get_array_module(a.data, b.data)
    cond = xp.asarray(cond)
    if cond.dtype != bool:
        raise TypeError(f"where: condition must be a bool tensor, got dtype {cond.dtype}")
    shape = broadcast_shapes(a.shape, b.shape, "where: input", "other")
    broadcast_shapes(cond.shape, shape, "where: condition", "input/other")
    return Where.apply(a, b, condition=cond)


def cast(input, dtype):
    return Cast.apply(input, dtype=dtype)


def clone(input):
    return Clone.apply(input)


def compare(name, input, other):
    """A comparison or logical op by its NumPy name; a bool tensor, no grad."""
    b = as_tensor(other, input.data)
    xp = get_array_module(input.data, b.data)
    broadcast_shapes(input.shape, b.shape, f"{name}: input", "other")
    return Tensor._wrap(getattr(xp, name)(input.data, b.data))


def logical_not(input):
    return Tensor._wrap(get_array_module(input.data).logical_not(input.data))


def eq(input, other):
    return compare("equal", input, other)


def isfinite(input):
    return Tensor._wrap(get_array_module(input.data).isfinite(input.data))


for _name, _reference in (("planes_scaled", planes_scaled_reference), ("planes_dot", planes_dot_reference)):
    registry.register(_name, "numpy", _reference)
    registry.register(_name, "numba", f"minicnn.kernels.cpu.planes:{_name}")
