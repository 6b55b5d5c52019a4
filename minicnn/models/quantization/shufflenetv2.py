"""Quantizable ShuffleNetV2 1.0x, torchvision's
``torchvision.models.quantization.shufflenetv2`` layout: the concatenation
of the two branches goes through ``cat`` (a quantized cat requantizes both
halves to one output scale)."""
from ...ao.nn.quantized import FloatFunctional
from ...ao.quantization import DeQuantStub, QuantStub
from ..shufflenetv2 import InvertedResidual, ShuffleNetV2, channel_shuffle
from .utils import _QUANTIZE_DOC, _build, _fuse_modules

__all__ = ["QuantizableShuffleNetV2", "QuantizableInvertedResidual", "shufflenet_v2_x1_0"]


class QuantizableInvertedResidual(InvertedResidual):
    """The ShuffleNetV2 unit with its concatenation in ``cat``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cat = FloatFunctional()

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = self.cat.cat([x1, self.branch2(x2)], dim=1)
        else:
            out = self.cat.cat([self.branch1(x), self.branch2(x)], dim=1)
        return channel_shuffle(out, 2)


class QuantizableShuffleNetV2(ShuffleNetV2):
    """ShuffleNetV2 of QuantizableInvertedResidual units between a
    ``QuantStub`` and a ``DeQuantStub``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, inverted_residual=QuantizableInvertedResidual, **kwargs)
        self.quant = QuantStub()
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(super().forward(self.quant(x)))

    def fuse_model(self, is_qat=None):
        """Fuse conv + bn (+ ReLU) in conv1, conv5 and every unit, in place."""
        for name in ("conv1", "conv5"):
            _fuse_modules(getattr(self, name), [["0", "1", "2"]], is_qat)
        for m in self.modules():
            if type(m) is QuantizableInvertedResidual:
                if len(m.branch1) > 0:
                    _fuse_modules(m.branch1, [["0", "1"], ["2", "3", "4"]], is_qat)
                _fuse_modules(m.branch2, [["0", "1", "2"], ["3", "4"], ["5", "6", "7"]], is_qat)


def shufflenet_v2_x1_0(*, weights=None, progress=True, quantize=False, **kwargs):
    return _build("shufflenet_v2_x1_0",
                  lambda **kw: QuantizableShuffleNetV2([4, 8, 4], [24, 116, 232, 464, 1024], **kw),
                  weights, quantize, kwargs)


shufflenet_v2_x1_0.__doc__ = "Quantizable ShuffleNetV2 with 1.0x output channels." + _QUANTIZE_DOC
