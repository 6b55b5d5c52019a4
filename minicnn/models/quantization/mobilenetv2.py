"""Quantizable MobileNetV2, torchvision's
``torchvision.models.quantization.mobilenetv2`` layout: the residual add
goes through ``skip_add`` (a quantized add has its own output scale), and
ReLU6 becomes ReLU so that conv + bn + ReLU fuse."""
from ...ao.nn.quantized import FloatFunctional
from ...ao.quantization import DeQuantStub, QuantStub
from ... import nn
from .._layers import Conv2dNormActivation
from ..mobilenetv2 import InvertedResidual, MobileNetV2
from .utils import _QUANTIZE_DOC, _adaptive_avg_pool2d, _build, _fuse_modules

__all__ = ["QuantizableMobileNetV2", "QuantizableInvertedResidual", "mobilenet_v2"]


class QuantizableInvertedResidual(InvertedResidual):
    """InvertedResidual with the residual add in ``skip_add``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.skip_add = FloatFunctional()

    def forward(self, x):
        if self.use_res_connect:
            return self.skip_add.add(x, self.conv(x))
        return self.conv(x)

    def fuse_model(self, is_qat=None):
        """Fuse the projection conv with its batch norm (the
        Conv2dNormActivation units are fused by the model)."""
        for idx in range(len(self.conv)):
            if type(self.conv[idx]) is nn.Conv2d:
                _fuse_modules(self.conv, [str(idx), str(idx + 1)], is_qat)


class QuantizableMobileNetV2(MobileNetV2):
    """MobileNetV2 between a ``QuantStub`` and a ``DeQuantStub``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.quant = QuantStub()
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.features(self.quant(x))
        x = _adaptive_avg_pool2d(x, (1, 1)).flatten(1)   # (N, C); quantized tensors have flatten too
        return self.dequant(self.classifier(x))

    def fuse_model(self, is_qat=None):
        """Fuse every conv + bn + ReLU in place (the function is unchanged)."""
        for m in self.modules():
            if type(m) is Conv2dNormActivation:
                _fuse_modules(m, ["0", "1", "2"], is_qat)
            if type(m) is QuantizableInvertedResidual:
                m.fuse_model(is_qat)


def mobilenet_v2(*, weights=None, progress=True, quantize=False, **kwargs):
    return _build("mobilenet_v2", lambda **kw: QuantizableMobileNetV2(block=QuantizableInvertedResidual, **kw),
                  weights, quantize, kwargs)


mobilenet_v2.__doc__ = "Quantizable MobileNetV2 (ReLU6 replaced by ReLU, as torchvision's)." + _QUANTIZE_DOC
