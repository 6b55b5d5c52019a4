"""Pooling layers over 1, 2 or 3 spatial dims: MaxPool1d/2d/3d,
AvgPool1d/2d/3d, AdaptiveAvgPool1d/2d/3d, AdaptiveMaxPool1d/2d/3d. Each
stores its arguments as given (torch's reprs show ``kernel_size=2``, not
``(2, 2)``) and calls the op of the same name in ``minicnn.functional``,
which checks them. One class per family holds the code; the rank only
picks the op."""
from .. import functional as F
from .module import Module


class _MaxPoolNd(Module):
    """Max over windows of ``kernel_size``; ``stride`` defaults to
    ``kernel_size``. With ``return_indices=True`` the call returns
    (output, indices)."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode

    def forward(self, input):
        return self._pool(input, self.kernel_size, self.stride, self.padding, self.dilation,
                          ceil_mode=self.ceil_mode, return_indices=self.return_indices)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class MaxPool1d(_MaxPoolNd):
    """Max over windows of K along L of (N, C, L) input."""

    _pool = staticmethod(F.max_pool1d)


class MaxPool2d(_MaxPoolNd):
    """Max over (KH, KW) windows of (N, C, H, W) input."""

    _pool = staticmethod(F.max_pool2d)


class MaxPool3d(_MaxPoolNd):
    """Max over (KT, KH, KW) windows of (N, C, T, H, W) input."""

    _pool = staticmethod(F.max_pool3d)


class _AvgPoolNd(Module):
    """Mean over windows of ``kernel_size``; ``stride`` defaults to
    ``kernel_size``."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override

    def forward(self, input):
        return self._pool(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                          self.count_include_pad, self.divisor_override)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool1d(_AvgPoolNd):
    """Mean over windows of K along L of (N, C, L) input. As torch's, it
    has no ``divisor_override``, and its repr shows one-element tuples."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad)
        self.kernel_size, self.stride, self.padding = (
            _single(self.kernel_size), _single(self.stride), _single(self.padding))

    def forward(self, input):
        return F.avg_pool1d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad)


def _single(value):
    """An int as a one-element tuple (torch's AvgPool1d stores them so)."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


class AvgPool2d(_AvgPoolNd):
    """Mean over (KH, KW) windows of (N, C, H, W) input."""

    _pool = staticmethod(F.avg_pool2d)


class AvgPool3d(_AvgPoolNd):
    """Mean over (KT, KH, KW) windows of (N, C, T, H, W) input."""

    _pool = staticmethod(F.avg_pool3d)


class _AdaptiveAvgPoolNd(Module):
    """Average over a grid of ``output_size`` bins, whatever the input
    size; an output_size of 1 is global average pooling."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, input):
        return self._pool(input, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    """Average over O bins along L of (N, C, L) input."""

    _pool = staticmethod(F.adaptive_avg_pool1d)


class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    """Average over (OH, OW) bins of (N, C, H, W) input;
    ``AdaptiveAvgPool2d(1)`` is global average pooling."""

    _pool = staticmethod(F.adaptive_avg_pool2d)


class AdaptiveAvgPool3d(_AdaptiveAvgPoolNd):
    """Average over (OT, OH, OW) bins of (N, C, T, H, W) input."""

    _pool = staticmethod(F.adaptive_avg_pool3d)


class _AdaptiveMaxPoolNd(Module):
    """Max over a grid of ``output_size`` bins."""

    def __init__(self, output_size, return_indices=False):
        super().__init__()
        self.output_size = output_size
        self.return_indices = return_indices

    def forward(self, input):
        return self._pool(input, self.output_size, self.return_indices)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class AdaptiveMaxPool1d(_AdaptiveMaxPoolNd):
    """Max over O bins along L of (N, C, L) input."""

    _pool = staticmethod(F.adaptive_max_pool1d)


class AdaptiveMaxPool2d(_AdaptiveMaxPoolNd):
    """Max over (OH, OW) bins of (N, C, H, W) input."""

    _pool = staticmethod(F.adaptive_max_pool2d)


class AdaptiveMaxPool3d(_AdaptiveMaxPoolNd):
    """Max over (OT, OH, OW) bins of (N, C, T, H, W) input."""

    _pool = staticmethod(F.adaptive_max_pool3d)
