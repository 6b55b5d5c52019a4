"""Observers: modules that watch float tensors go by and choose the
``scale`` and ``zero_point`` that will quantize them.

An observer's ``forward`` records statistics and returns its input
unchanged; ``calculate_qparams()`` turns them into quantization
parameters with torch's formulas. With ``[qmin, qmax]`` the integer range
and ``min_neg = min(min_val, 0)``, ``max_pos = max(max_val, 0)`` (zero must
be exactly representable: zero padding and ReLU produce it)::

    affine:     scale = max(eps, (max_pos - min_neg) / (qmax - qmin))
                zero_point = clamp(qmin - round(min_neg / scale), qmin, qmax)
    symmetric:  scale = max(eps, max(-min_neg, max_pos) / ((qmax - qmin) / 2))
                zero_point = 0 (qint8), 128 (quint8)

All of it is float32 arithmetic, as torch's, so the parameters agree bit
for bit. ``reduce_range`` drops one bit (quint8 0..127, qint8 -64..63):
fbgemm's int8 multiply adds pairs of uint8 x int8 products into int16,
which can overflow with full 8-bit activations.
"""
import functools
import math
import warnings

import numpy

from ...nn.module import Module
from ...tensor import Tensor
from ..qtensor import (qint8, qint32, quint8, qdtype, per_tensor_affine, per_tensor_symmetric,
                       per_channel_affine, per_channel_symmetric)

_EPS = float(numpy.finfo(numpy.float32).eps)
_F32 = numpy.float32


class _PartialWrapper:
    """``Observer.with_args(...)``: a factory that builds the observer with
    these arguments each time it is called (one observer per module)."""

    def __init__(self, factory):
        self.factory = factory

    def __call__(self, *args, **kwargs):
        return self.factory(*args, **kwargs)

    def with_args(self, **kwargs):
        return _PartialWrapper(functools.partial(self.factory, **kwargs))

    def __repr__(self):
        return f"with_args({self.factory!r})"


def calculate_qmin_qmax(quant_min, quant_max, has_customized_qrange, dtype, reduce_range):
    """The integer range an observer targets (torch's rules)."""
    if has_customized_qrange:
        return (quant_min // 2, quant_max // 2) if reduce_range else (quant_min, quant_max)
    if dtype is qint8:
        return (-64, 63) if reduce_range else (-128, 127)
    if dtype is quint8:
        return (0, 127) if reduce_range else (0, 255)
    return qint32.qmin, qint32.qmax


class ObserverBase(Module):
    """What every observer shares: ``dtype``, ``qscheme``, the integer range
    and ``calculate_qparams``."""

    _schemes = (per_tensor_affine, per_tensor_symmetric)

    def __init__(self, dtype=quint8, qscheme=per_tensor_affine, reduce_range=False, quant_min=None,
                 quant_max=None, eps=_EPS):
        super().__init__()
        name = type(self).__name__
        if not isinstance(dtype, qdtype):
            raise TypeError(f"{name}: dtype must be minicnn.quint8, qint8 or qint32, got {dtype!r}")
        if qscheme not in self._schemes:
            raise ValueError(f"{name}: qscheme must be one of {self._schemes}, got {qscheme!r}")
        self.dtype = dtype
        self.qscheme = qscheme
        self.reduce_range = reduce_range
        self.eps = eps
        self.has_customized_qrange = quant_min is not None and quant_max is not None
        if self.has_customized_qrange:
            if not quant_min <= 0 <= quant_max or quant_min >= quant_max:
                raise ValueError(f"{name}: need quant_min <= 0 <= quant_max and quant_min < quant_max, "
                                 f"got quant_min={quant_min}, quant_max={quant_max}")
            if quant_max - quant_min + 1 > 2 ** dtype.bits:
                raise ValueError(f"{name}: range [{quant_min}, {quant_max}] does not fit {dtype!r}")
        self.quant_min, self.quant_max = calculate_qmin_qmax(
            quant_min, quant_max, self.has_customized_qrange, dtype, reduce_range)

    @classmethod
    def with_args(cls, **kwargs):
        """A factory building this observer with these arguments."""
        return _PartialWrapper(functools.partial(cls, **kwargs))

    def _calculate_qparams(self, min_val, max_val):
        """(scale float32 (C,), zero_point int64 (C,)) from float32 min/max
        arrays (0-dim for per-tensor observers)."""
        min_val = numpy.atleast_1d(numpy.asarray(min_val, dtype=_F32))
        max_val = numpy.atleast_1d(numpy.asarray(max_val, dtype=_F32))
        if min_val.size == 0 or (min_val.size == 1 and min_val[0] == numpy.inf and max_val[0] == -numpy.inf):
            warnings.warn("must run observer before calling calculate_qparams; returning default values")
            return Tensor._wrap(numpy.ones(1, _F32)), Tensor._wrap(numpy.zeros(1, numpy.int64))
        if (min_val > max_val).any():
            raise ValueError(f"{type(self).__name__}: min {min_val} should be <= max {max_val}")
        qmin, qmax = self.quant_min, self.quant_max
        min_neg = numpy.minimum(min_val, _F32(0))
        max_pos = numpy.maximum(max_val, _F32(0))
        if self.qscheme in (per_tensor_symmetric, per_channel_symmetric):
            scale = numpy.maximum(-min_neg, max_pos) / _F32((qmax - qmin) / 2)
            scale = numpy.maximum(scale, _F32(self.eps))
            if self.dtype is quint8:
                middle = (qmin + qmax) // 2 if self.has_customized_qrange else 128
                zero_point = numpy.full(scale.shape, middle, numpy.int64)
            else:
                zero_point = numpy.zeros(scale.shape, numpy.int64)
        else:
            scale = (max_pos - min_neg) / _F32(qmax - qmin)
            scale = numpy.maximum(scale, _F32(self.eps))
            zero_point = qmin - numpy.rint(min_neg / scale).astype(numpy.int64)
            zero_point = numpy.clip(zero_point, qmin, qmax)
        return Tensor._wrap(scale.astype(_F32)), Tensor._wrap(zero_point.astype(numpy.int64))

    def extra_repr(self):
        return f"min_val={self.min_val.data}, max_val={self.max_val.data}"


def _float32_data(x, name):
    if getattr(x, "is_quantized", False):
        raise TypeError(f"{name}: observes float tensors, got a quantized tensor ({x.dtype!r}); observers go "
                        f"before convert, on the float model")
    data = x.data if isinstance(x, Tensor) else numpy.asarray(x)
    if data.dtype.kind != "f":
        raise TypeError(f"{name}: observes floating-point tensors, got dtype {data.dtype}")
    return data.astype(_F32, copy=False)


class MinMaxObserver(ObserverBase):
    """Records the running minimum and maximum of every tensor seen.

    Args (torch's): dtype, qscheme, reduce_range, quant_min, quant_max, eps.
    """

    def __init__(self, dtype=quint8, qscheme=per_tensor_affine, reduce_range=False, quant_min=None,
                 quant_max=None, eps=_EPS):
        super().__init__(dtype, qscheme, reduce_range, quant_min, quant_max, eps)
        self.register_buffer("min_val", Tensor._wrap(numpy.array(numpy.inf, _F32)))
        self.register_buffer("max_val", Tensor._wrap(numpy.array(-numpy.inf, _F32)))

    def forward(self, x_orig):
        x = _float32_data(x_orig, type(self).__name__)
        if x.size == 0:
            return x_orig
        self.min_val.data = numpy.minimum(x.min(), self.min_val.data).astype(_F32)
        self.max_val.data = numpy.maximum(x.max(), self.max_val.data).astype(_F32)
        return x_orig

    def calculate_qparams(self):
        """(scale, zero_point): float32 and int64 tensors of shape (1,)."""
        return self._calculate_qparams(self.min_val.data, self.max_val.data)


class MovingAverageMinMaxObserver(MinMaxObserver):
    """Records an exponential moving average of each tensor's min and max::

        min_val <- min_val + averaging_constant * (min(x) - min_val)
    """

    def __init__(self, averaging_constant=0.01, dtype=quint8, qscheme=per_tensor_affine, reduce_range=False,
                 quant_min=None, quant_max=None, eps=_EPS):
        super().__init__(dtype, qscheme, reduce_range, quant_min, quant_max, eps)
        self.averaging_constant = averaging_constant

    def forward(self, x_orig):
        x = _float32_data(x_orig, type(self).__name__)
        if x.size == 0:
            return x_orig
        low, high = x.min(), x.max()
        if self.min_val.data == numpy.inf and self.max_val.data == -numpy.inf:
            self.min_val.data, self.max_val.data = numpy.asarray(low), numpy.asarray(high)
        else:
            c = _F32(self.averaging_constant)
            self.min_val.data = numpy.asarray(self.min_val.data + c * (low - self.min_val.data), _F32)
            self.max_val.data = numpy.asarray(self.max_val.data + c * (high - self.max_val.data), _F32)
        return x_orig


class PerChannelMinMaxObserver(ObserverBase):
    """Records the running min and max of each slice along ``ch_axis``
    (weights: one scale per output channel)."""

    _schemes = (per_channel_affine, per_channel_symmetric)

    def __init__(self, ch_axis=0, dtype=quint8, qscheme=per_channel_affine, reduce_range=False, quant_min=None,
                 quant_max=None, eps=_EPS):
        super().__init__(dtype, qscheme, reduce_range, quant_min, quant_max, eps)
        self.ch_axis = ch_axis
        self.register_buffer("min_val", Tensor._wrap(numpy.zeros(0, _F32)))
        self.register_buffer("max_val", Tensor._wrap(numpy.zeros(0, _F32)))

    def forward(self, x_orig):
        x = _float32_data(x_orig, type(self).__name__)
        if x.size == 0:
            return x_orig
        rows = numpy.moveaxis(x, self.ch_axis, 0).reshape(x.shape[self.ch_axis], -1)
        low, high = rows.min(axis=1), rows.max(axis=1)
        if self.min_val.data.size:
            if self.min_val.data.shape != low.shape:
                raise ValueError(f"PerChannelMinMaxObserver: saw {self.min_val.data.shape[0]} channels, "
                                 f"now {low.shape[0]} (input {x.shape}, ch_axis={self.ch_axis})")
            low, high = numpy.minimum(low, self.min_val.data), numpy.maximum(high, self.max_val.data)
        self.min_val.data, self.max_val.data = low, high
        return x_orig

    def calculate_qparams(self):
        """(scales, zero_points): float32 and int64 tensors of shape (C,)."""
        return self._calculate_qparams(self.min_val.data, self.max_val.data)


class HistogramObserver(ObserverBase):
    """Keeps a histogram of all values seen (``bins`` bins over the running
    range) and picks the range that minimizes the L2 quantization error.

    When a new tensor widens the range, the old histogram is spread over the
    new bins: each old bin is cut into ``upsample_rate`` (16) equal parts
    whose mass goes to the new bin holding their middle. ``calculate_qparams``
    then narrows ``[min, max]`` one bin at a time from the side with less
    mass (the search of caffe2's ``NonlinearQuantizationParamsSearch``),
    while the L2 error of quantizing the histogram into ``2 ** bits`` bins
    keeps falling, and computes scale and zero point from the narrowed range
    as :class:`MinMaxObserver` does. Every step repeats torch's float32
    arithmetic, so the chosen parameters are torch's.
    """

    def __init__(self, bins=2048, dtype=quint8, qscheme=per_tensor_affine, reduce_range=False, quant_min=None,
                 quant_max=None, eps=_EPS):
        super().__init__(dtype, qscheme, reduce_range, quant_min, quant_max, eps)
        self.bins = bins
        self.register_buffer("histogram", Tensor._wrap(numpy.zeros(bins, _F32)))
        self.register_buffer("min_val", Tensor._wrap(numpy.array(numpy.inf, _F32)))
        self.register_buffer("max_val", Tensor._wrap(numpy.array(-numpy.inf, _F32)))
        self.dst_nbins = 2 ** dtype.bits
        self.upsample_rate = 16

    def _histc(self, x, low, high):
        """torch.histc in float32: bin = int((x - low) * bins / (high - low))."""
        low, high = _F32(low), _F32(high)
        if low == high:
            low, high = low - _F32(1), high + _F32(1)
        pos = ((x - low) * _F32(self.bins) / (high - low)).astype(numpy.int64)
        pos[pos == self.bins] = self.bins - 1
        return numpy.bincount(pos, minlength=self.bins).astype(_F32)

    def _upscale_histogram(self, histogram, orig_min, orig_max, update_min, update_max):
        n = self.bins * self.upsample_rate
        histogram = numpy.repeat(histogram, self.upsample_rate) / _F32(self.upsample_rate)
        bin_size = (orig_max - orig_min) / _F32(n)
        mid_points = _linspace(orig_min, orig_max, n + 1)[:-1] + _F32(0.5) * bin_size
        boundaries = _linspace(update_min, update_max, self.bins + 1)
        buckets = numpy.searchsorted(boundaries, mid_points, side="right") - 1
        buckets = numpy.clip(buckets, 0, self.bins - 1)
        # torch.bincount adds float32 weights one at a time, in order.
        update = numpy.zeros(self.bins, _F32)
        numpy.add.at(update, buckets, histogram)
        return update

    def _combine_histograms(self, orig_hist, orig_min, orig_max, update_hist, update_min, update_max):
        if update_min == orig_min and update_max == orig_max:
            return orig_hist + update_hist
        if orig_min == orig_max:
            return self._histc(numpy.array([orig_min], _F32), update_min, update_max) * orig_hist.sum() + update_hist
        return update_hist + self._upscale_histogram(orig_hist, orig_min, orig_max, update_min, update_max)

    def forward(self, x_orig):
        x = _float32_data(x_orig, type(self).__name__).ravel()
        if x.size == 0:
            return x_orig
        if numpy.isinf(x).any():
            warnings.warn("inf detected in input tensor, ignoring it")
            x = x[~numpy.isinf(x)]
            if x.size == 0:
                return x_orig
        low, high = x.min(), x.max()
        cur_min, cur_max = self.min_val.data[()], self.max_val.data[()]
        if cur_min == numpy.inf or cur_max == -numpy.inf:
            self.histogram.data = self._histc(x, low, high)
            self.min_val.data, self.max_val.data = numpy.array(low, _F32), numpy.array(high, _F32)
            return x_orig
        new_min, new_max = min(cur_min, low), max(cur_max, high)
        update = self._histc(x, new_min, new_max)
        self.histogram.data = self._combine_histograms(self.histogram.data, cur_min, cur_max, update,
                                                       new_min, new_max)
        self.min_val.data, self.max_val.data = numpy.array(new_min, _F32), numpy.array(new_max, _F32)
        return x_orig

    def _get_norm(self, delta_begin, delta_end, density):
        """density * integral of x^2 from delta_begin to delta_end."""
        norm = (delta_end * delta_end * delta_end - delta_begin * delta_begin * delta_begin) / _F32(3)
        return density * norm

    def _compute_quantization_error(self, next_start_bin, next_end_bin):
        # Python floats (float64) here, float32 arrays below, as in torch.
        bin_width = (float(self.max_val.data) - float(self.min_val.data)) / self.bins
        dst_bin_width = bin_width * (next_end_bin - next_start_bin + 1) / self.dst_nbins
        if dst_bin_width == 0.0:
            return 0.0
        width32, dst32 = _F32(bin_width), _F32(dst_bin_width)
        src_begin = numpy.arange(self.bins, dtype=numpy.int64) - next_start_bin
        src_begin = src_begin.astype(_F32) * width32
        src_end = src_begin + width32
        dst_of_begin = numpy.clip(numpy.floor_divide(src_begin, dst32), _F32(0), _F32(self.dst_nbins - 1))
        dst_of_begin_center = (dst_of_begin + _F32(0.5)) * dst32
        dst_of_end = numpy.clip(numpy.floor_divide(src_end, dst32), _F32(0), _F32(self.dst_nbins - 1))
        density = self.histogram.data / width32
        half = _F32(dst_bin_width / 2)
        norm = numpy.zeros(self.bins, _F32)
        norm += self._get_norm(src_begin - dst_of_begin_center, numpy.full(self.bins, half, _F32), density)
        norm += (dst_of_end - dst_of_begin - _F32(1)) * self._get_norm(_F32(-dst_bin_width / 2), half, density)
        dst_of_end_center = dst_of_end * dst32 + half
        norm += self._get_norm(_F32(-dst_bin_width / 2), src_end - dst_of_end_center, density)
        return float(norm.sum(dtype=_F32))

    def _non_linear_param_search(self):
        """The narrowed (min, max), float32."""
        bin_width = (self.max_val.data - self.min_val.data) / _F32(self.bins)
        total = float(self.histogram.data.sum(dtype=_F32))
        csum = numpy.cumsum(self.histogram.data, dtype=_F32).tolist()
        stepsize = 1e-5
        alpha, beta = 0.0, 1.0
        start_bin, end_bin = 0, self.bins - 1
        norm_min = math.inf
        while alpha < beta:
            next_alpha, next_beta = alpha + stepsize, beta - stepsize
            # torch compares a float32 element with the Python float rounded to float32.
            low_mass, high_mass = float(_F32(next_alpha * total)), float(_F32(next_beta * total))
            left, right = start_bin, end_bin
            while left < end_bin and csum[left] < low_mass:
                left += 1
            while right > start_bin and csum[right] > high_mass:
                right -= 1
            next_start, next_end = start_bin, end_bin
            if left - start_bin > end_bin - right:
                next_start, alpha = left, next_alpha
            else:
                next_end, beta = right, next_beta
            if next_start == start_bin and next_end == end_bin:
                continue
            norm = self._compute_quantization_error(next_start, next_end)
            if norm > norm_min:
                break
            norm_min = norm
            start_bin, end_bin = next_start, next_end
        new_min = self.min_val.data + bin_width * _F32(start_bin)
        new_max = self.min_val.data + bin_width * _F32(end_bin + 1)
        return new_min, new_max

    def calculate_qparams(self):
        """(scale, zero_point) of the L2-best range, tensors of shape (1,)."""
        if self.min_val.data == numpy.inf and self.max_val.data == -numpy.inf:
            warnings.warn("must run observer before calling calculate_qparams; returning default values")
            return Tensor._wrap(numpy.ones(1, _F32)), Tensor._wrap(numpy.zeros(1, numpy.int64))
        return self._calculate_qparams(*self._non_linear_param_search())


def _linspace(start, end, steps):
    """torch.linspace in float32: the first half counts up from start, the
    second half down from end, so both ends are exact."""
    start, end = _F32(start), _F32(end)
    step = (end - start) / _F32(steps - 1)
    idx = numpy.arange(steps, dtype=_F32)
    halfway = steps // 2
    out = numpy.empty(steps, _F32)
    out[:halfway] = start + step * idx[:halfway]
    out[halfway:] = end - step * (_F32(steps - 1) - idx[halfway:])
    return out


class PlaceholderObserver(Module):
    """Observes nothing; carries a dtype (used for float pass-through)."""

    def __init__(self, dtype=numpy.float32):
        super().__init__()
        self.dtype = dtype

    def forward(self, x):
        return x

    @classmethod
    def with_args(cls, **kwargs):
        return _PartialWrapper(functools.partial(cls, **kwargs))


default_observer = MinMaxObserver.with_args(quant_min=0, quant_max=127)
default_weight_observer = MinMaxObserver.with_args(dtype=qint8, qscheme=per_tensor_symmetric)
default_histogram_observer = HistogramObserver.with_args(quant_min=0, quant_max=127)
default_per_channel_weight_observer = PerChannelMinMaxObserver.with_args(dtype=qint8,
                                                                         qscheme=per_channel_symmetric)
