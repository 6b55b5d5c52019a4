"""Quantizable Inception v3, torchvision's
``torchvision.models.quantization.inception`` layout: each BasicConv2d
gets a ReLU module (conv + bn + ReLU fuse), each Inception block its
concatenations in FloatFunctional modules (``myop``; ``myop1`` to
``myop3`` in InceptionE).

minicnn's Inception3 takes no block classes (torchvision's
``inception_blocks``), so the float model is built and its blocks are
turned into their quantizable subclasses in place, as for GoogLeNet.
"""
from ...ao.nn.quantized import FloatFunctional
from ..googlenet import BasicConv2d
from ..inception import Inception3, InceptionA, InceptionB, InceptionC, InceptionD, InceptionE, InceptionOutputs
from .googlenet import QuantizableBasicConv2d, _QuantizableBlock, _QuantizableNet
from .utils import _QUANTIZE_DOC, _avg_pool2d, _build, _max_pool2d

__all__ = ["QuantizableInception3", "QuantizableInceptionA", "QuantizableInceptionB", "QuantizableInceptionC",
           "QuantizableInceptionD", "QuantizableInceptionE", "inception_v3"]


class _InceptionBlock(_QuantizableBlock):
    """A quantizable Inception v3 block: its concatenation goes through
    ``myop``."""

    def _add_quantization_modules(self):
        self.myop = FloatFunctional()


class QuantizableInceptionA(_InceptionBlock, InceptionA):
    """InceptionA with its concatenation in ``myop``."""

    def forward(self, x):
        branch1x1 = self.branch1x1(x)
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = self.branch_pool(_avg_pool2d(x, 3, 1, 1))
        return self.myop.cat([branch1x1, branch5x5, branch3x3dbl, branch_pool], 1)


class QuantizableInceptionB(_InceptionBlock, InceptionB):
    """InceptionB with its concatenation in ``myop``."""

    def forward(self, x):
        branch3x3 = self.branch3x3(x)
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = _max_pool2d(x, kernel_size=3, stride=2)
        return self.myop.cat([branch3x3, branch3x3dbl, branch_pool], 1)


class QuantizableInceptionC(_InceptionBlock, InceptionC):
    """InceptionC with its concatenation in ``myop``."""

    def forward(self, x):
        branch1x1 = self.branch1x1(x)
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = x
        for conv in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                     self.branch7x7dbl_5):
            branch7x7dbl = conv(branch7x7dbl)
        branch_pool = self.branch_pool(_avg_pool2d(x, 3, 1, 1))
        return self.myop.cat([branch1x1, branch7x7, branch7x7dbl, branch_pool], 1)


class QuantizableInceptionD(_InceptionBlock, InceptionD):
    """InceptionD with its concatenation in ``myop``."""

    def forward(self, x):
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        branch7x7x3 = x
        for conv in (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            branch7x7x3 = conv(branch7x7x3)
        branch_pool = _max_pool2d(x, kernel_size=3, stride=2)
        return self.myop.cat([branch3x3, branch7x7x3, branch_pool], 1)


class QuantizableInceptionE(_InceptionBlock, InceptionE):
    """InceptionE with its three concatenations in ``myop1`` (the 3x3
    pair), ``myop2`` (the double 3x3 pair) and ``myop3`` (the branches)."""

    def _add_quantization_modules(self):
        self.myop1 = FloatFunctional()
        self.myop2 = FloatFunctional()
        self.myop3 = FloatFunctional()

    def forward(self, x):
        branch1x1 = self.branch1x1(x)
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = self.myop1.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = self.myop2.cat([self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], 1)
        branch_pool = self.branch_pool(_avg_pool2d(x, 3, 1, 1))
        return self.myop3.cat([branch1x1, branch3x3, branch3x3dbl, branch_pool], 1)


class QuantizableInception3(_QuantizableNet, Inception3):
    """Inception3 of quantizable blocks; the input transform (if any) runs
    in float, then a ``QuantStub``; the logits leave through a
    ``DeQuantStub``."""

    _quantizable = {BasicConv2d: QuantizableBasicConv2d, InceptionA: QuantizableInceptionA,
                    InceptionB: QuantizableInceptionB, InceptionC: QuantizableInceptionC,
                    InceptionD: QuantizableInceptionD, InceptionE: QuantizableInceptionE}

    def forward(self, x):
        x = self._quantize_input(x)
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                     "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
                     "Mixed_6c", "Mixed_6d", "Mixed_6e"):
            x = getattr(self, name)(x)
        use_aux = self.training and self.aux_logits
        aux = self.AuxLogits(x) if use_aux else None
        for name in ("Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool", "dropout"):
            x = getattr(self, name)(x)
        x = self.dequant(self.fc(x.flatten(1)))
        if use_aux:
            return InceptionOutputs(x, aux)
        return x


def inception_v3(*, weights=None, progress=True, quantize=False, **kwargs):
    return _build("inception_v3", QuantizableInception3, weights, quantize, kwargs)


inception_v3.__doc__ = ("Quantizable Inception v3 (eval-mode input from 75 x 75)." + _QUANTIZE_DOC)
