"""Fully connected layers: Linear, LazyLinear, and Identity.

Linear maps x: (*, in_features) to y = x W^T + b: (*, out_features) with
W: (out_features, in_features) and b: (out_features,).
"""
import math

from .. import functional as F
from ..autograd import no_grad
from . import init
from ._utils import check_positive, is_int, new_parameter
from .module import Module
from .parameter import UninitializedParameter, is_lazy


class Identity(Module):
    """Returns its input unchanged; the arguments are ignored (so it can
    stand in for any layer)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Linear(Module):
    """y = x W^T + b for x: (*, in_features).

    Initialisation (torch's): W ~ kaiming_uniform_(a=sqrt(5)), that is
    U(-1/sqrt(in_features), 1/sqrt(in_features)), and b ~ the same uniform.
    """

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        super().__init__()
        if not is_int(in_features) or in_features < 0:
            raise ValueError(f"Linear: in_features must be a non-negative int, got {in_features!r}")
        check_positive(out_features, "out_features", "Linear")
        self.in_features = in_features
        self.out_features = out_features
        self.weight = new_parameter((out_features, in_features), device, dtype)
        if bias:
            self.bias = new_parameter((out_features,), device, dtype)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        """Draw fresh weights from the default distributions."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class LazyLinear(Linear):
    """A Linear whose ``in_features`` is read from its first input.

    Until then ``weight`` and ``bias`` are UninitializedParameters (an
    optimizer may already hold them: they are filled in place). The first
    call (or ``load_state_dict``) gives them their shapes; the first call
    then turns the module into a plain ``Linear``.
    """

    def __init__(self, out_features, bias=True, device=None, dtype=None):
        Module.__init__(self)
        check_positive(out_features, "out_features", "LazyLinear")
        self.in_features = 0
        self.out_features = out_features
        self.weight = UninitializedParameter(device=device, dtype=dtype)
        if bias:
            self.bias = UninitializedParameter(device=device, dtype=dtype)
        else:
            self.register_parameter("bias", None)

    def reset_parameters(self):
        if not is_lazy(self.weight):
            super().reset_parameters()

    def forward(self, input):
        if is_lazy(self.weight):
            if input.ndim == 0:
                raise ValueError("LazyLinear: input must have at least 1 dim, got a 0-d tensor")
            with no_grad():
                self.weight.materialize((self.out_features, input.shape[-1]))
                if self.bias is not None:
                    self.bias.materialize((self.out_features,))
                self.reset_parameters()
        self.in_features = self.weight.shape[1]
        self.__class__ = Linear
        return self.forward(input)
