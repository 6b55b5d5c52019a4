"""Dropout layers: active in training mode, the identity in eval mode."""
import numbers

from .. import functional as F
from .module import Module


class _DropoutNd(Module):
    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not isinstance(p, numbers.Real) or isinstance(p, bool) or not 0.0 <= p <= 1.0:
            raise ValueError(f"{type(self).__name__}: dropout probability p has to be between 0 and 1, got {p!r}")
        self.p = p
        self.inplace = inplace

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class Dropout(_DropoutNd):
    """Zero each element with probability ``p`` and scale the rest by
    1 / (1 - p) while training."""

    def forward(self, input):
        return F.dropout(input, self.p, self.training)


class Dropout2d(_DropoutNd):
    """Zero whole channels of (N, C, H, W) input with probability ``p``
    while training (neighbouring pixels are correlated, so dropping single
    pixels would regularise little)."""

    def forward(self, input):
        return F.dropout2d(input, self.p, self.training)
