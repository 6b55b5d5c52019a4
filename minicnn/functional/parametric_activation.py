"""prelu: the leaky ReLU whose negative slope is learnt, one per channel
(or one shared by all).

Notation: x (N, C, *) with C channels (a 0-d or 1-D input has 1 channel,
as in torch); weight a (C,) or one-element slope a.

    y = x          where x > 0
        a_c x      elsewhere

    gx = gy where x > 0, a_c gy elsewhere
    ga_c = sum over the elements of channel c where x <= 0 of gy x
"""
from ..autograd import Function
from ..backend import get_array_module
from ..tensor import Tensor  # defined before tensor.py imports the ops
from .elementwise import where
from .shape import reshape, sum_to
from .utils import check_float


def _slope_shape(x_ndim, weight_size):
    """The shape that lines the slopes up with the channel dim 1 of x."""
    if weight_size == 1 or x_ndim < 2:
        return (1,) * x_ndim
    return (1, weight_size) + (1,) * (x_ndim - 2)


class PReLU(Function):
    """y = x where x > 0, else a x, a broadcast along the channel dim; its
    backward is written with Tensor ops, so it can be differentiated again."""

    def forward(self, x, weight):
        xp = get_array_module(x)
        self.save_for_backward(x, weight)
        a = weight.reshape(_slope_shape(x.ndim, weight.size))
        return xp.where(x > 0, x, a * x)

    def backward(self, gy):
        x, weight = self.saved_tensors
        positive = (x.data > 0)
        a = reshape(weight, _slope_shape(x.ndim, weight.numel()))
        gx = where(positive, gy, gy * a) if self.needs_input_grad[0] else None
        gw = None
        if self.needs_input_grad[1]:
            negative_part = where(positive, 0.0, gy * x)
            gw = reshape(sum_to(negative_part, a.shape), weight.shape)
        return gx, gw


def prelu(input, weight):
    """PReLU of ``input`` with the slopes ``weight``: a 0-d or 1-D tensor of
    1 element, or of C = input.shape[1] elements (one per channel)."""
    if not isinstance(input, Tensor) or not isinstance(weight, Tensor):
        raise TypeError("prelu: input and weight must be Tensors, got "
                        f"{type(input).__name__} and {type(weight).__name__}")
    check_float(input, "prelu")
    check_float(weight, "prelu", "weight")
    if weight.ndim > 1:
        raise ValueError(f"prelu: weight must be a 0-d or 1-D tensor, got shape {weight.shape}")
    channels = input.shape[1] if input.ndim >= 2 else 1
    if weight.numel() not in (1, channels):
        raise ValueError(
            f"prelu: weight has {weight.numel()} elements; input of shape {input.shape} needs 1 or its "
            f"channel count {channels}")
    if weight.dtype != input.dtype:
        raise TypeError(f"prelu: weight has dtype {weight.dtype} but input has dtype {input.dtype}")
    return PReLU.apply(input, weight)
