"""Quantizable ResNet-18 / ResNet-50 / ResNeXt-101 32x8d, torchvision's
``torchvision.models.quantization.resnet`` layout.

The float blocks end in ``relu(out + identity)``; on quantized tensors an
addition needs its own output scale, so the blocks route it through a
``FloatFunctional`` (``add_relu``: the add and the ReLU in one quantized
op), and the Bottleneck gets a ReLU module per use so that each conv + bn
+ ReLU fuses into one ConvReLU2d.
"""
from ...ao.nn.quantized import FloatFunctional
from ...ao.quantization import DeQuantStub, QuantStub
from ... import nn
from ..resnet import BasicBlock, Bottleneck, ResNet, _fix_kwarg
from .utils import _QUANTIZE_DOC, _build, _fuse_modules

__all__ = ["QuantizableResNet", "QuantizableBasicBlock", "QuantizableBottleneck", "resnet18", "resnet50",
           "resnext101_32x8d"]


class QuantizableBasicBlock(BasicBlock):
    """BasicBlock with the residual add and final ReLU in ``add_relu``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_relu = FloatFunctional()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.add_relu.add_relu(out, identity)

    def fuse_model(self, is_qat=None):
        _fuse_modules(self, [["conv1", "bn1", "relu"], ["conv2", "bn2"]], is_qat)
        if self.downsample is not None:
            _fuse_modules(self.downsample, ["0", "1"], is_qat)


class QuantizableBottleneck(Bottleneck):
    """Bottleneck with ReLUs ``relu1`` / ``relu2`` and the residual add and
    final ReLU in ``skip_add_relu`` (``relu`` stays, unused, as in
    torchvision)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.skip_add_relu = FloatFunctional()
        self.relu1 = nn.ReLU()
        self.relu2 = nn.ReLU()

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.skip_add_relu.add_relu(out, identity)

    def fuse_model(self, is_qat=None):
        _fuse_modules(self, [["conv1", "bn1", "relu1"], ["conv2", "bn2", "relu2"], ["conv3", "bn3"]], is_qat)
        if self.downsample is not None:
            _fuse_modules(self.downsample, ["0", "1"], is_qat)


class QuantizableResNet(ResNet):
    """ResNet between a ``QuantStub`` (float input -> quint8) and a
    ``DeQuantStub`` (logits back to float)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.quant = QuantStub()
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x).flatten(1)        # (N, C); a method that quantized tensors have too
        return self.dequant(self.fc(x))

    def fuse_model(self, is_qat=None):
        """Fuse conv + bn (+ relu) in place, everywhere: the float model
        computes the same function afterwards (batch norm folded into the
        conv weights), now in the shape the quantized modules expect."""
        _fuse_modules(self, ["conv1", "bn1", "relu"], is_qat)
        for m in self.modules():
            if type(m) is QuantizableBottleneck or type(m) is QuantizableBasicBlock:
                m.fuse_model(is_qat)


def resnet18(*, weights=None, progress=True, quantize=False, **kwargs):
    return _build("resnet18", lambda **kw: QuantizableResNet(QuantizableBasicBlock, [2, 2, 2, 2], **kw),
                  weights, quantize, kwargs)


def resnet50(*, weights=None, progress=True, quantize=False, **kwargs):
    return _build("resnet50", lambda **kw: QuantizableResNet(QuantizableBottleneck, [3, 4, 6, 3], **kw),
                  weights, quantize, kwargs)


def resnext101_32x8d(*, weights=None, progress=True, quantize=False, **kwargs):
    _fix_kwarg(kwargs, "groups", 32, "resnext101_32x8d")
    _fix_kwarg(kwargs, "width_per_group", 8, "resnext101_32x8d")
    return _build("resnext101_32x8d", lambda **kw: QuantizableResNet(QuantizableBottleneck, [3, 4, 23, 3], **kw),
                  weights, quantize, kwargs)


resnet18.__doc__ = "Quantizable ResNet-18 (QuantizableBasicBlock, [2, 2, 2, 2])." + _QUANTIZE_DOC
resnet50.__doc__ = "Quantizable ResNet-50 (QuantizableBottleneck, [3, 4, 6, 3])." + _QUANTIZE_DOC
resnext101_32x8d.__doc__ = "Quantizable ResNeXt-101 32x8d (groups 32, width_per_group 8)." + _QUANTIZE_DOC
