"""Quantized modules (torch.ao.nn.quantized): what ``convert`` swaps in.

Each is built from its observed float module by ``from_float``: the
weight is quantized with a fresh weight observer of the module's qconfig
(per channel for x86 / fbgemm), and the output ``scale`` / ``zero_point``
come from the ``activation_post_process`` observer that calibration
filled. Inputs and outputs are quint8 :class:`~minicnn.ao.QTensor`.

ReLU, Hardsigmoid, MaxPool2d, AdaptiveAvgPool2d and Flatten are subclasses of the float
modules that also accept quantized tensors. torch leaves these modules in
place because its float ops accept quantized tensors; minicnn's float ops
refuse them, so ``convert`` swaps these in instead (float input still runs
the float op).
"""
import copy
import numbers

import numpy

from .... import nn as float_nn
from ....nn.module import Module
from ....tensor import Tensor
from ...qtensor import QTensor, qint8, quantize_per_channel, quantize_per_tensor, quint8
from . import functional as qF


def _observer(mod, fn):
    observer = getattr(mod, "activation_post_process", None)
    if observer is None or not hasattr(observer, "calculate_qparams"):
        raise ValueError(f"{fn}: {type(mod).__name__} has no activation observer; call "
                         f"mc.ao.quantization.prepare(model) (with a qconfig set) and calibrate before convert")
    return observer


def output_qparams(mod, fn):
    """(scale, zero_point) from ``mod``'s calibrated output observer."""
    observer = _observer(mod, fn)
    if observer.min_val.data.size == 0 or numpy.all(numpy.isinf(observer.min_val.data)):
        raise ValueError(f"{fn}: the observer of {type(mod).__name__} has seen no data; run calibration "
                         f"batches through the prepared model before convert")
    scale, zero_point = observer.calculate_qparams()
    return float(scale.data[0]), int(zero_point.data[0])


def quantize_weight(weight, qconfig, fn):
    """The weight quantized as ``qconfig.weight`` observes it."""
    if qconfig is None:
        raise ValueError(f"{fn}: module has no qconfig")
    observer = qconfig.weight()
    observer(weight)
    scales, zero_points = observer.calculate_qparams()
    data = weight.data
    if observer.qscheme.name.startswith("per_channel"):
        return quantize_per_channel(data, scales.data.astype(numpy.float64), zero_points.data, observer.ch_axis,
                                    observer.dtype)
    return quantize_per_tensor(data, float(scales.data[0]), int(zero_points.data[0]), observer.dtype)


class StateEntry:
    """A state_dict entry of a quantized module that is not a parameter or
    buffer (a quantized weight, the Python float ``scale``): what
    ``state_dict(keep_vars=True)`` holds, so that ``load_state_dict``
    checks a value with ``convert_state`` (raises TypeError / ValueError
    before anything is stored) and stores it with ``store_state``."""

    def __init__(self, value, convert, store):
        self.value, self.convert_state, self.store_state = value, convert, store


def _as_scalar(value, kind, name):
    data = numpy.asarray(value.numpy() if hasattr(value, "numpy") else value)
    if data.size != 1 or data.dtype.kind not in kind:
        raise TypeError(f"{name} must be a single {'float' if kind == 'f' else 'int'}, got {value!r}")
    return data.reshape(-1)[0].item()


def _check_qweight(value, shape):
    if not isinstance(value, QTensor) or value.dtype is not qint8:
        raise TypeError(f"weight must be a qint8 QTensor, got {type(value).__name__}")
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"weight of shape {tuple(value.shape)} does not fit the module's {tuple(shape)}")
    return value


def _check_bias(value, n):
    if value is None:
        return None
    bias = numpy.asarray(value.numpy() if hasattr(value, "numpy") else value, numpy.float32)
    if bias.shape != (n,):
        raise ValueError(f"bias of shape {bias.shape} does not fit the module's ({n},)")
    return bias


class _QuantizedState:
    """Mixin: ``state_dict`` also holds the entries of ``_state()``, a list
    of (name, value, convert, store), torch's keys for the module."""

    def _qparams_state(self):
        def store_scale(v):
            self.scale = v

        def store_zero_point(v):
            self.zero_point = v
        return [("scale", Tensor._wrap(numpy.array(self.scale, numpy.float32)),
                 lambda v: _as_scalar(v, "f", "scale"), store_scale),
                ("zero_point", Tensor._wrap(numpy.array(self.zero_point, numpy.int64)),
                 lambda v: _as_scalar(v, "iu", "zero_point"), store_zero_point)]

    _state = _qparams_state

    def state_dict(self, destination=None, prefix="", keep_vars=False):
        destination = super().state_dict(destination, prefix, keep_vars)
        for name, value, convert, store in self._state():
            destination[prefix + name] = StateEntry(value, convert, store) if keep_vars else value
        return destination


class Quantize(_QuantizedState, Module):
    """Float32 in, quint8 out with a fixed scale and zero point (a
    converted QuantStub). The scale is kept in float32, as torch keeps it
    (a float32 buffer), so ``Quantize(0.1, 0)`` quantizes with
    ``float32(0.1)``."""

    def __init__(self, scale, zero_point, dtype=quint8):
        super().__init__()
        self.scale, self.zero_point, self.dtype = float(numpy.float32(scale)), int(zero_point), dtype

    def forward(self, x):
        if (self.dtype is quint8 and isinstance(x, Tensor) and isinstance(x.data, numpy.ndarray)
                and x.data.dtype == numpy.float32):
            # the common case (a model's input) by a one-pass kernel
            return qF.quantize(x, self.scale, self.zero_point)
        return quantize_per_tensor(x, self.scale, self.zero_point, self.dtype)

    @classmethod
    def from_float(cls, mod):
        scale, zero_point = output_qparams(mod, "Quantize.from_float")
        return cls(scale, zero_point, mod.activation_post_process.dtype)

    def extra_repr(self):
        return f"scale={self.scale}, zero_point={self.zero_point}, dtype={self.dtype!r}"


class DeQuantize(Module):
    """Quantized in, float32 out (a converted DeQuantStub)."""

    def forward(self, x):
        if not isinstance(x, QTensor):
            raise TypeError(f"DeQuantize: input must be a quantized tensor, got {type(x).__name__}")
        return x.dequantize()

    @classmethod
    def from_float(cls, mod):
        return cls()


def _weighted_from_float(cls, mod, float_type, make):
    """``cls.from_float`` for a layer with a weight and bias: ``mod`` is a
    ``float_type`` (or, for a fused ``cls._relu`` class, a fused module whose
    first child is), with an observer for the output qparams;
    ``make(float_layer, fn)`` builds the empty quantized layer, which gets
    the float layer's weight quantized by ``mod.qconfig``, its float bias and
    the observed scale / zero point."""
    fn = f"{cls.__name__}.from_float"
    scale, zero_point = output_qparams(mod, fn)
    layer = mod[0] if cls._relu else mod
    if type(layer) is not float_type:
        raise TypeError(f"{fn}: expected a {float_type.__name__}, got {type(layer).__name__}")
    qlayer = make(layer, fn)
    qlayer.set_weight_bias(quantize_weight(layer.weight, getattr(mod, "qconfig", None), fn),
                           None if layer.bias is None else layer.bias.data)
    qlayer.scale, qlayer.zero_point = scale, zero_point
    return qlayer


class Conv2d(_QuantizedState, Module):
    """Quantized 2-d convolution: quint8 (N, C, H, W) in, quint8 out.

    Args as ``nn.Conv2d`` (``padding_mode`` must be ``"zeros"``); attributes
    ``scale`` and ``zero_point`` (the output's); ``weight()`` the qint8
    weight, ``bias()`` the float32 bias. The arithmetic is fbgemm's (see
    ``functional.py``).
    """

    _FLOAT_MODULE = float_nn.Conv2d
    _relu = False

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros"):
        super().__init__()
        name = type(self).__name__
        if padding_mode != "zeros":
            raise ValueError(f"{name}: only padding_mode='zeros' is supported, got {padding_mode!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels={in_channels} and out_channels={out_channels} must be "
                             f"divisible by groups={groups}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = qF._pair(kernel_size, "kernel_size", name)
        self.stride = qF._pair(stride, "stride", name)
        if isinstance(padding, str):
            raise ValueError(f"{name}: padding must be ints, got {padding!r}")
        self.padding = qF._pair(padding, "padding", name)
        self.dilation = qF._pair(dilation, "dilation", name)
        self.padding_mode = padding_mode
        shape = (out_channels, in_channels // groups) + self.kernel_size
        self.scale, self.zero_point = 1.0, 0
        self.set_weight_bias(quantize_per_tensor(numpy.zeros(shape, numpy.float32), 1.0, 0, qint8),
                             numpy.zeros(out_channels, numpy.float32) if bias else None)

    def set_weight_bias(self, w, b):
        """Set the qint8 weight (QTensor) and the float bias (or None)."""
        if not isinstance(w, QTensor) or w.dtype is not qint8:
            raise TypeError(f"{type(self).__name__}: weight must be a qint8 QTensor, got {w!r}")
        self._weight = w
        # laid out for the kernel once here (at convert), not at every call
        self._packed = qF.pack_weight(w, getattr(self, "groups", 1))
        self._bias = None if b is None else numpy.asarray(b.data if isinstance(b, Tensor) else b, numpy.float32)

    def weight(self):
        return self._weight

    def _weight_bias_state(self):
        shape, n = self._weight.shape, self._weight.shape[0]
        return [("weight", self._weight, lambda v: _check_qweight(v, shape),
                 lambda v: self.set_weight_bias(v, self._bias)),
                ("bias", self.bias(), lambda v: _check_bias(v, n), lambda v: self.set_weight_bias(self._weight, v))]

    def _state(self):
        return self._weight_bias_state() + self._qparams_state()

    def bias(self):
        return None if self._bias is None else Tensor._wrap(self._bias)

    def forward(self, input):
        return qF.conv2d(input, self._weight, self._bias, self.stride, self.padding, self.dilation, self.groups,
                         self.scale, self.zero_point, relu=self._relu, packed=self._packed)

    @classmethod
    def from_float(cls, mod):
        def make(conv, fn):
            if isinstance(conv.padding, str):
                raise ValueError(f"{fn}: padding={conv.padding!r} is not supported; use ints")
            return cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                       conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode)
        return _weighted_from_float(cls, mod, float_nn.Conv2d, make)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
                f"scale={self.scale}, zero_point={self.zero_point}")


class Linear(_QuantizedState, Module):
    """Quantized linear layer: quint8 (*, in_features) in, quint8 out;
    ``weight()`` qint8, ``bias()`` float32, output ``scale`` / ``zero_point``."""

    _relu = False

    def __init__(self, in_features, out_features, bias_=True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.scale, self.zero_point = 1.0, 0
        self.set_weight_bias(
            quantize_per_tensor(numpy.zeros((out_features, in_features), numpy.float32), 1.0, 0, qint8),
            numpy.zeros(out_features, numpy.float32) if bias_ else None)

    set_weight_bias = Conv2d.set_weight_bias
    weight = Conv2d.weight
    bias = Conv2d.bias

    def _state(self):
        # torch's keys: the weight and bias packed together in _packed_params
        shape, n = self._weight.shape, self._weight.shape[0]

        def convert_packed(value):
            weight, bias = value
            return _check_qweight(weight, shape), _check_bias(bias, n)

        def check_dtype(value):
            if not str(value).endswith("qint8"):
                raise TypeError(f"_packed_params.dtype must be qint8, got {value!r}")
            return value
        return self._qparams_state() + [
            ("_packed_params.dtype", qint8, check_dtype, lambda v: None),
            ("_packed_params._packed_params", (self._weight, self.bias()), convert_packed,
             lambda v: self.set_weight_bias(*v))]

    def forward(self, input):
        return qF.linear(input, self._weight, self._bias, self.scale, self.zero_point, relu=self._relu,
                         packed=self._packed)

    @classmethod
    def from_float(cls, mod):
        return _weighted_from_float(
            cls, mod, float_nn.Linear,
            lambda linear, fn: cls(linear.in_features, linear.out_features, linear.bias is not None))

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, scale={self.scale}, "
                f"zero_point={self.zero_point}")


def _retyped(cls, mod):
    """A copy of float module ``mod`` whose class is ``cls`` (a subclass)."""
    new = copy.deepcopy(mod)
    new.__class__ = cls
    return new


class ReLU(float_nn.ReLU):
    """ReLU that also takes quantized tensors (``max(q, zero_point)``)."""

    def forward(self, input):
        return qF.relu(input) if isinstance(input, QTensor) else super().forward(input)

    from_float = classmethod(_retyped)


class MaxPool2d(float_nn.MaxPool2d):
    """MaxPool2d that also takes quantized tensors."""

    def forward(self, input):
        if not isinstance(input, QTensor):
            return super().forward(input)
        if self.return_indices:
            raise ValueError("quantized MaxPool2d: return_indices is not supported")
        return qF.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)

    from_float = classmethod(_retyped)


class AdaptiveAvgPool2d(float_nn.AdaptiveAvgPool2d):
    """AdaptiveAvgPool2d that also takes quantized tensors."""

    def forward(self, input):
        if isinstance(input, QTensor):
            return qF.adaptive_avg_pool2d(input, self.output_size)
        return super().forward(input)

    from_float = classmethod(_retyped)


class Flatten(float_nn.Flatten):
    """Flatten that also takes quantized tensors."""

    def forward(self, input):
        return qF.flatten(input, self.start_dim, self.end_dim)

    from_float = classmethod(_retyped)


class Hardswish(_QuantizedState, float_nn.Hardswish):
    """Quantized hard swish (torch.ao.nn.quantized.Hardswish): quint8 in,
    quint8 out with its own output ``scale`` / ``zero_point`` (the range of
    x * relu6(x + 3) / 6 is not the input's)."""

    def __init__(self, scale, zero_point):
        super().__init__()
        self.scale, self.zero_point = float(scale), int(zero_point)

    def forward(self, input):
        return qF.hardswish(input, self.scale, self.zero_point)

    @classmethod
    def from_float(cls, mod):
        return cls(*output_qparams(mod, "Hardswish.from_float"))

    def extra_repr(self):
        return f"scale={self.scale}, zero_point={self.zero_point}"


class Hardsigmoid(float_nn.Hardsigmoid):
    """Hardsigmoid that also takes quantized tensors (output scale 1/256,
    zero point 0, as torch's quantized hardsigmoid)."""

    def forward(self, input):
        return qF.hardsigmoid(input) if isinstance(input, QTensor) else super().forward(input)

    from_float = classmethod(_retyped)


class FloatFunctional(Module):
    """Float add / cat / mul whose outputs an observer watches (torch's
    ``FloatFunctional``): use one instance per call site, as its observer
    learns that site's range; ``convert`` turns it into :class:`QFunctional`."""

    def __init__(self):
        super().__init__()
        self.activation_post_process = float_nn.Identity()

    def forward(self, x):
        raise RuntimeError("FloatFunctional is not meant to be called; use its add / add_relu / mul / cat")

    def add(self, x, y):
        from ....functional import add
        return self.activation_post_process(add(x, y))

    def add_relu(self, x, y):
        from ....functional import add, relu
        return self.activation_post_process(relu(add(x, y)))

    def mul(self, x, y):
        from ....functional import mul
        return self.activation_post_process(mul(x, y))

    def cat(self, x, dim=0):
        from ....functional import cat
        return self.activation_post_process(cat(x, dim))


class QFunctional(_QuantizedState, Module):
    """Quantized add / add_relu / mul / cat with the output ``scale`` and
    ``zero_point`` that calibration chose for the FloatFunctional it
    replaces."""

    def __init__(self):
        super().__init__()
        self.scale, self.zero_point = 1.0, 0
        self.activation_post_process = float_nn.Identity()

    def forward(self, x):
        raise RuntimeError("QFunctional is not meant to be called; use its add / add_relu / mul / cat")

    def add(self, x, y):
        return qF.add(x, y, self.scale, self.zero_point)

    def add_relu(self, x, y):
        return qF.add(x, y, self.scale, self.zero_point, relu=True)

    def mul(self, x, y):
        return qF.mul(x, y, self.scale, self.zero_point)

    def cat(self, x, dim=0):
        if not isinstance(dim, numbers.Integral):
            raise TypeError(f"QFunctional.cat: dim must be an int, got {dim!r}")
        return qF.cat(list(x), dim, self.scale, self.zero_point)

    @classmethod
    def from_float(cls, mod):
        """A QFunctional with the output parameters ``mod``'s observer
        chose. An observer that saw no data gives torch's defaults (scale
        1.0, zero point 0, with a warning), as torch does: torchvision's
        blocks keep a FloatFunctional they never call (MobileNetV2's
        ``skip_add`` in blocks without a residual)."""
        new = cls()
        scale, zero_point = _observer(mod, "QFunctional.from_float").calculate_qparams()
        new.scale, new.zero_point = float(scale.data[0]), int(zero_point.data[0])
        return new

    def extra_repr(self):
        return f"scale={self.scale}, zero_point={self.zero_point}"
