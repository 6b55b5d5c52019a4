"""Quantizable GoogLeNet, torchvision's
``torchvision.models.quantization.googlenet`` layout: each BasicConv2d
gets a ReLU module (so conv + bn + ReLU fuse), each Inception block its
concatenation in ``cat``, the auxiliary heads a ReLU module.

minicnn's GoogLeNet takes no block classes (torchvision's ``blocks``
argument), so the float model is built first and its blocks are then
turned into their quantizable subclasses in place (``_make_quantizable``):
the same parameters, with the extra modules added.
"""
from ...ao.nn.quantized import FloatFunctional
from ...ao.quantization import DeQuantStub, QuantStub
from ... import nn
from ..googlenet import BasicConv2d, GoogLeNet, GoogLeNetOutputs, Inception, InceptionAux, _transform_input
from .utils import _QUANTIZE_DOC, _adaptive_avg_pool2d, _build, _fuse_modules

__all__ = ["QuantizableGoogLeNet", "QuantizableBasicConv2d", "QuantizableInception", "QuantizableInceptionAux",
           "googlenet"]


def _make_quantizable(model, classes):
    """Turn every submodule whose exact type is a key of ``classes`` into
    the quantizable subclass it maps to, keeping its parameters, and let
    the subclass add its modules (``_add_quantization_modules``)."""
    for m in list(model.modules()):
        cls = classes.get(type(m))
        if cls is not None:
            m.__class__ = cls
            m._add_quantization_modules()


class QuantizableBasicConv2d(BasicConv2d):
    """conv, bn, ``relu`` (a module, so that the three fuse)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._add_quantization_modules()

    def _add_quantization_modules(self):
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))

    def fuse_model(self, is_qat=None):
        _fuse_modules(self, ["conv", "bn", "relu"], is_qat)


class _QuantizableBlock:
    """Mixin for a block built from BasicConv2d: build the float block,
    make its BasicConv2d quantizable and add the block's own modules
    (``_add_quantization_modules``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _make_quantizable(self, {BasicConv2d: QuantizableBasicConv2d})
        self._add_quantization_modules()


class QuantizableInception(_QuantizableBlock, Inception):
    """Inception block with its concatenation in ``cat``."""

    def _add_quantization_modules(self):
        self.cat = FloatFunctional()

    def forward(self, x):
        return self.cat.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class QuantizableInceptionAux(_QuantizableBlock, InceptionAux):
    """Auxiliary classifier with its ReLU as the module ``relu``."""

    def _add_quantization_modules(self):
        self.relu = nn.ReLU()

    def forward(self, x):
        x = _adaptive_avg_pool2d(x, (4, 4))    # (N, C, 4, 4)
        x = self.conv(x)                       # (N, 128, 4, 4)
        x = x.flatten(1)                       # (N, 2048); quantized tensors have flatten too
        x = self.dropout(self.relu(self.fc1(x)))
        return self.fc2(x)


class _QuantizableNet:
    """Mixin for GoogLeNet and Inception v3: build the float model, turn
    its blocks into the quantizable subclasses of ``_quantizable`` (float
    class -> quantizable class) and add the ``quant`` / ``dequant``
    stubs."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _make_quantizable(self, self._quantizable)
        self.quant = QuantStub()
        self.dequant = DeQuantStub()

    def _quantize_input(self, x):
        """The float input transform (if any), then ``quant``."""
        if self.transform_input:
            x = _transform_input(x)
        return self.quant(x)

    def fuse_model(self, is_qat=None):
        """Fuse conv + bn + ReLU in every BasicConv2d, in place."""
        for m in self.modules():
            if type(m) is QuantizableBasicConv2d:
                m.fuse_model(is_qat)


class QuantizableGoogLeNet(_QuantizableNet, GoogLeNet):
    """GoogLeNet of quantizable blocks; the input transform (if any) runs
    in float, then a ``QuantStub``; the logits leave through a
    ``DeQuantStub``."""

    _quantizable = {BasicConv2d: QuantizableBasicConv2d, Inception: QuantizableInception,
                    InceptionAux: QuantizableInceptionAux}

    def forward(self, x):
        x = self._quantize_input(x)
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        use_aux = self.training and self.aux_logits
        aux1 = self.aux1(x) if use_aux else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if use_aux else None
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        x = self.avgpool(x).flatten(1)          # quantized tensors have flatten too
        x = self.dequant(self.fc(self.dropout(x)))
        if use_aux:
            return GoogLeNetOutputs(x, aux2, aux1)
        return x


def googlenet(*, weights=None, progress=True, quantize=False, **kwargs):
    return _build("googlenet", QuantizableGoogLeNet, weights, quantize, kwargs)


googlenet.__doc__ = ("Quantizable GoogLeNet (``aux_logits`` defaults to True as in GoogLeNet; the auxiliary "
                     "heads only run in training mode)." + _QUANTIZE_DOC)
