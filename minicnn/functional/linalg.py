"""Matrix products: matmul (batched, broadcast) and linear.

For Y = A B:  dL/dA = dL/dY B^T  and  dL/dB = A^T dL/dY, each summed over
the batch dims that were broadcast.
"""
from ..autograd import Function
from ..backend import get_array_module
from ..tensor import Tensor  # defined before tensor.py imports the ops
from .utils import as_tensor, broadcast_shapes
from .shape import sum_to, unsqueeze, squeeze, transpose


class MatMul(Function):
    """A @ B for A: (..., n, k) and B: (..., k, m) with broadcast batch dims."""

    def forward(self, a, b):
        self.save_for_backward(a, b)
        return get_array_module(a).matmul(a, b)

    def backward(self, gy):
        a, b = self.saved_tensors
        ga = sum_to(matmul(gy, transpose(b, -1, -2)), a.shape) if self.needs_input_grad[0] else None
        gb = sum_to(matmul(transpose(a, -1, -2), gy), b.shape) if self.needs_input_grad[1] else None
        return ga, gb


def matmul(input, other):
    """torch.matmul: 1-D operands are treated as a row (left) or a column
    (right) vector and that dim is dropped from the result; leading dims
    broadcast."""
    like = input if isinstance(input, Tensor) else other
    input, other = as_tensor(input, like.data), as_tensor(other, like.data)
    if input.ndim == 0 or other.ndim == 0:
        raise ValueError(f"matmul: both arguments need at least 1 dim, got shapes {input.shape} and {other.shape}")
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


def linear(input, weight, bias=None):
    """y = x W^T + b, with x: (*, in_features), W: (out_features, in_features),
    b: (out_features,)."""
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out_features, in_features), got shape {weight.shape}")
    if input.ndim == 0 or input.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: input of shape {input.shape} has {input.shape[-1] if input.ndim else 0} features "
            f"but weight of shape {weight.shape} expects {weight.shape[1]}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias must have shape ({weight.shape[0]},), got {bias.shape}")
    y = matmul(input, transpose(weight, 0, 1))
    return y if bias is None else y + bias
