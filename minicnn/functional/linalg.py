"""Matrix products: matmul (batched, broadcast) and linear.

For Y = A B:  dL/dA = dL/dY B^T  and  dL/dB = A^T dL/dY, each summed over
the batch dims that were broadcast.

The products run through the kernel registry's ``"matmul"`` primitive:
``xp.matmul`` here, and on the CPU a version that shares a large product
out among minicnn's threads (``kernels/cpu/matmul.py``).
"""
import math

from minicnn.kernels import registry

from ..autograd import Function, is_grad_enabled
from ..backend import get_array_module
from ..tensor import Tensor  # defined before tensor.py imports the ops
from .utils import as_tensor, broadcast_shapes, check_float
from .reduction import sum as sum_
from .shape import reshape, sum_to, unsqueeze, squeeze, transpose


def matmul_reference(a, b):
    """a @ b on arrays (NumPy reference of the "matmul" primitive)."""
    return get_array_module(a).matmul(a, b)


registry.register("matmul", "numpy", matmul_reference)
registry.register("matmul", "numba", "minicnn.kernels.cpu.matmul:matmul")


def _matmul(a, b):
    """a @ b on arrays, through the registry."""
    return registry.lookup("matmul", get_array_module(a))(a, b)


class MatMul(Function):
    """A @ B for A: (..., n, k) and B: (..., k, m) with broadcast batch dims."""

    def forward(self, a, b):
        self.save_for_backward(a, b)
        return _matmul(a, b)

    def backward(self, gy):
        a, b = self.saved_tensors
        ga = sum_to(matmul(gy, transpose(b, -1, -2)), a.shape) if self.needs_input_grad[0] else None
        gb = sum_to(matmul(transpose(a, -1, -2), gy), b.shape) if self.needs_input_grad[1] else None
        return ga, gb


def _check_same_dtype(op, a, a_name, b, b_name):
    """TypeError unless ``a`` and ``b`` have one dtype: torch's products do
    not promote (float32 with float64 is a RuntimeError there), and a
    silent float64 result would double the memory and time of all that
    follows."""
    if a.dtype != b.dtype:
        raise TypeError(f"{op}: {a_name} has dtype {a.dtype} but {b_name} has dtype {b.dtype}; "
                        f"they must be the same (convert one with .to())")


def matmul(input, other):
    """torch.matmul: 1-D operands are treated as a row (left) or a column
    (right) vector and that dim is dropped from the result; leading dims
    broadcast."""
    like = input if isinstance(input, Tensor) else other
    input, other = as_tensor(input, like.data), as_tensor(other, like.data)
    if input.ndim == 0 or other.ndim == 0:
        raise ValueError(f"matmul: both arguments need at least 1 dim, got shapes {input.shape} and {other.shape}")
    _check_same_dtype("matmul", input, "input", other, "other")
    a = unsqueeze(input, 0) if input.ndim == 1 else input
    b = unsqueeze(other, -1) if other.ndim == 1 else other
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(
            f"matmul: shapes {input.shape} and {other.shape} cannot be multiplied "
            f"({a.shape[-1]} != {b.shape[-2]})")
    broadcast_shapes(a.shape[:-2], b.shape[:-2], "matmul: batch dims of input", "other")
    y = MatMul.apply(a, b)
    if other.ndim == 1:
        y = squeeze(y, -1)
    if input.ndim == 1:
        y = squeeze(y, -2 if other.ndim > 1 else -1)
    return y


class Linear(Function):
    """y = x W^T + b for x (*, in), W (out, in), b (out,) or absent, as one
    op: the composite (transpose, matmul, add) is three ops each way, and
    on a small net such as LeNet-5 the per-op cost is most of the time.

        gx = gy W        gW = gy^T x        gb = gy summed

    with gy and x flattened to (rows, features) for gW and gb. Building a
    graph of the gradient (create_graph=True) takes the same formulas in
    Tensor ops, which can be differentiated again."""

    def forward(self, x, w, b=None):
        self.save_for_backward(x, w)
        y = _matmul(x, w.T)
        if b is not None:
            y += b
        return y

    def backward(self, gy):
        x, w = self.saved_tensors
        needs_x, needs_w = self.needs_input_grad[:2]
        has_bias = len(self.needs_input_grad) == 3
        rows = math.prod(x.shape[:-1])        # not -1: with 0 features, -1 is ambiguous
        if is_grad_enabled():
            gy_rows, x_rows = reshape(gy, (rows, w.shape[0])), reshape(x, (rows, w.shape[1]))
            gx = matmul(gy, w) if needs_x else None
            gw = matmul(transpose(gy_rows, 0, 1), x_rows) if needs_w else None
            gb = sum_(gy_rows, 0) if has_bias else None
        else:
            gy, x, w = gy.data, x.data, w.data
            gy_rows, x_rows = gy.reshape(rows, w.shape[0]), x.reshape(rows, w.shape[1])
            gx = _matmul(gy, w) if needs_x else None
            gw = _matmul(gy_rows.T, x_rows) if needs_w else None
            gb = gy_rows.sum(axis=0) if has_bias else None
        return (gx, gw, gb) if has_bias else (gx, gw)


def linear(input, weight, bias=None):
    """y = x W^T + b, with x: (*, in_features), W: (out_features, in_features),
    b: (out_features,). All three must have one floating dtype (torch's
    rule too: no promotion). With in_features = 0, y is b (or 0) broadcast."""
    check_float(input, "linear")
    weight = as_tensor(weight, input.data)
    bias = None if bias is None else as_tensor(bias, input.data)
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out_features, in_features), got shape {weight.shape}")
    if input.ndim == 0 or input.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: input of shape {input.shape} has {input.shape[-1] if input.ndim else 0} features "
            f"but weight of shape {weight.shape} expects {weight.shape[1]}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias must have shape ({weight.shape[0]},), got {bias.shape}")
    _check_same_dtype("linear", input, "input", weight, "weight")
    if bias is None:
        return Linear.apply(input, weight)
    _check_same_dtype("linear", input, "input", bias, "bias")
    return Linear.apply(input, weight, bias)
