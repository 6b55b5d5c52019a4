"""Unfold and Fold: layers around ``F.unfold`` (im2col: an image to its
columns of sliding patches) and ``F.fold`` (col2im: columns summed back
into an image). See minicnn/functional/fold.py for the shapes and the
arithmetic."""
from .. import functional as F
from .module import Module


class Unfold(Module):
    """(N, C, H, W) -> (N, C * KH * KW, L): the patches under each of the L
    positions of a KH x KW window, one column per position."""

    def __init__(self, kernel_size, dilation=1, padding=0, stride=1):
        super().__init__()
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.padding = padding
        self.stride = stride

    def forward(self, input):
        return F.unfold(input, self.kernel_size, self.dilation, self.padding, self.stride)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, dilation={self.dilation}, padding={self.padding}, stride={self.stride}"


class Fold(Module):
    """(N, C * KH * KW, L) -> (N, C, *output_size): each column added back
    into the window it came from, overlaps summed (the adjoint of Unfold)."""

    def __init__(self, output_size, kernel_size, dilation=1, padding=0, stride=1):
        super().__init__()
        self.output_size = output_size
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.padding = padding
        self.stride = stride

    def forward(self, input):
        return F.fold(input, self.output_size, self.kernel_size, self.dilation, self.padding, self.stride)

    def extra_repr(self):
        return (f"output_size={self.output_size}, kernel_size={self.kernel_size}, dilation={self.dilation}, "
                f"padding={self.padding}, stride={self.stride}")
