"""Quantizable MobileNetV3-Large, torchvision's
``torchvision.models.quantization.mobilenetv3`` layout: the residual add
goes through ``skip_add`` and the squeeze-and-excitation product through
``skip_mul`` (quantized ops with their own output scales); conv + bn (+
ReLU) fuse, hard swish stays a separate (quantized) module."""
from ...ao.nn.quantized import FloatFunctional
from ...ao.quantization import DeQuantStub, QuantStub
from ... import nn
from .._layers import Conv2dNormActivation
from ..mobilenetv3 import InvertedResidual, MobileNetV3, _mobilenet_v3_conf
from .utils import _QUANTIZE_DOC, _build, _fuse_modules

__all__ = ["QuantizableMobileNetV3", "QuantizableInvertedResidual", "QuantizableSqueezeExcitation",
           "mobilenet_v3_large"]


class QuantizableSqueezeExcitation(nn.SqueezeExcitation):
    """SqueezeExcitation with a hard sigmoid gate and the product
    ``gate * input`` in ``skip_mul``."""

    def __init__(self, *args, **kwargs):
        kwargs["scale_activation"] = nn.Hardsigmoid
        super().__init__(*args, **kwargs)
        self.skip_mul = FloatFunctional()

    def forward(self, input):
        return self.skip_mul.mul(self._scale(input), input)

    def fuse_model(self, is_qat=None):
        _fuse_modules(self, ["fc1", "activation"], is_qat)


class QuantizableInvertedResidual(InvertedResidual):
    """InvertedResidual with QuantizableSqueezeExcitation gates and the
    residual add in ``skip_add``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, se_layer=QuantizableSqueezeExcitation, **kwargs)
        self.skip_add = FloatFunctional()

    def forward(self, x):
        if self.use_res_connect:
            return self.skip_add.add(x, self.block(x))
        return self.block(x)


class QuantizableMobileNetV3(MobileNetV3):
    """MobileNetV3 between a ``QuantStub`` and a ``DeQuantStub``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.quant = QuantStub()
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.avgpool(self.features(self.quant(x))).flatten(1)   # quantized tensors have flatten too
        return self.dequant(self.classifier(x))

    def fuse_model(self, is_qat=None):
        """Fuse conv + bn (+ ReLU; hard swish stays apart) in every unit and
        fc1 + ReLU in every gate, in place."""
        for m in self.modules():
            if type(m) is Conv2dNormActivation:
                modules_to_fuse = ["0", "1"]
                if len(m) == 3 and type(m[2]) is nn.ReLU:
                    modules_to_fuse.append("2")
                _fuse_modules(m, modules_to_fuse, is_qat)
            elif type(m) is QuantizableSqueezeExcitation:
                m.fuse_model(is_qat)


def _quantizable_mobilenet_v3(width_mult=1.0, reduced_tail=False, dilated=False, **kwargs):
    inverted_residual_setting, last_channel = _mobilenet_v3_conf("mobilenet_v3_large", width_mult, reduced_tail,
                                                                 dilated)
    return QuantizableMobileNetV3(inverted_residual_setting, last_channel, block=QuantizableInvertedResidual,
                                  **kwargs)


def mobilenet_v3_large(*, weights=None, progress=True, quantize=False, **kwargs):
    return _build("mobilenet_v3_large", _quantizable_mobilenet_v3, weights, quantize, kwargs)


mobilenet_v3_large.__doc__ = ("Quantizable MobileNetV3-Large. torchvision's quantize=True prepares the model for "
                              "quantization-aware training (qnnpack) and loads QAT weights; minicnn quantizes "
                              "after training (post-training static, x86 by default)." + _QUANTIZE_DOC)
