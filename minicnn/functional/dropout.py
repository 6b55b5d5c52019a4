"""Dropout: zero each element with probability p while training and scale
the survivors by 1 / (1 - p), so the expected value is unchanged and
evaluation needs no rescaling (inverted dropout)."""
from ..autograd import Function
from ..backend import get_array_module
from ..tensor import Tensor  # defined before tensor.py imports the ops
from .. import random


class Dropout(Function):
    """y = x * mask, mask in {0, 1/(1-p)}; backward multiplies by the mask."""

    def __init__(self, mask):
        self.mask = mask

    def forward(self, x):
        return x * self.mask

    def backward(self, gy):
        return gy * Tensor._wrap(self.mask)


def _check_p(p, name):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name}: p must be in [0, 1], got {p}")


def _dropout(input, p, training, mask_shape, name):
    _check_p(p, name)
    if not training or p == 0.0:
        return input
    if input.dtype.kind != "f" and p < 1.0:
        # The survivors would be scaled by 1 / (1 - p), which an integer
        # tensor cannot hold (torch raises too); p == 1 zeroes, which it can.
        raise TypeError(f"{name}: input must be a floating-point tensor for 0 < p < 1, got dtype {input.dtype}")
    xp = get_array_module(input.data)
    if p == 1.0:
        mask = xp.zeros(mask_shape, dtype=input.dtype)
    else:
        keep = random.uniform(mask_shape, input.dtype, xp) >= p
        mask = keep.astype(input.dtype) / input.dtype.type(1 - p)
    return Dropout.apply(input, mask=mask)


def dropout(input, p=0.5, training=True, inplace=False):
    """Zero elements with probability ``p`` (training only). ``inplace`` is
    accepted for torch compatibility; the result is always a new tensor."""
    return _dropout(input, p, training, input.shape, "dropout")


def dropout2d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels of (N, C, H, W) (or unbatched (C, H, W)) input
    with probability ``p``."""
    if input.ndim not in (3, 4):
        raise ValueError(f"dropout2d: expected 3-D or 4-D input, got shape {input.shape}")
    mask_shape = input.shape[:-2] + (1, 1)
    return _dropout(input, p, training, mask_shape, "dropout2d")
