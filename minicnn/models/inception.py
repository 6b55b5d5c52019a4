"""Inception v3: Szegedy et al., "Rethinking the Inception Architecture for
Computer Vision", 2015, as built by torchvision.

Inception v3 keeps GoogLeNet's idea (parallel branches of different
receptive fields, concatenated along the channels) and makes it cheaper:

* a 5x5 convolution becomes two stacked 3x3 ones (same receptive field,
  fewer weights): ``InceptionA``, at 35 x 35;
* an n x n convolution becomes a 1 x n followed by an n x 1 one
  ("factorization into asymmetric convolutions"): ``InceptionC`` with
  n = 7, at 17 x 17;
* at 8 x 8, the last 1x3 / 3x1 pairs run side by side instead of stacked
  ("expanded filter bank"), for wider, higher-dimensional features:
  ``InceptionE``;
* the grid shrinks inside a module, with a stride-2 conv branch next to a
  stride-2 pool branch (``InceptionB``, ``InceptionD``), instead of a pool
  that would lose information or a conv that would be expensive.

Every convolution has batch normalization (``BasicConv2d``). An auxiliary
classifier (``AuxLogits``, on the 17 x 17 map) helps training; in training
mode with ``aux_logits=True`` the model returns an
``InceptionOutputs(logits, aux_logits)``. It needs a 17 x 17 map there,
i.e. roughly 299 x 299 input; in eval mode (no auxiliary head) inputs down
to 75 x 75 work.

Notation: N images of 3 x 299 x 299 (the shapes in the comments).
"""
import collections

from .. import functional as F
from .. import nn
from ._layers import _check_weights
from .googlenet import BasicConv2d, _transform_input
from .registry import register_model

__all__ = ["Inception3", "InceptionOutputs", "inception_v3"]

InceptionOutputs = collections.namedtuple("InceptionOutputs", ["logits", "aux_logits"])
InceptionOutputs.__doc__ = """What Inception3 returns in training mode with ``aux_logits=True``:
the main logits and the auxiliary classifier's, each (N, num_classes)."""


class InceptionA(nn.Module):
    """35 x 35 module: 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg pool -> 1x1.
    (N, in_channels, H, W) -> (N, 224 + pool_features, H, W)."""

    def __init__(self, in_channels, pool_features):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)

        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)

        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)

        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x):
        branch1x1 = self.branch1x1(x)
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return F.cat([branch1x1, branch5x5, branch3x3dbl, branch_pool], 1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17: stride-2 3x3 | 1x1 -> 3x3 -> stride-2 3x3 |
    stride-2 max pool. (N, C, H, W) -> (N, 480 + C, (H - 3) // 2 + 1, ...)."""

    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)

        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x):
        branch3x3 = self.branch3x3(x)
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = F.max_pool2d(x, kernel_size=3, stride=2)
        return F.cat([branch3x3, branch3x3dbl, branch_pool], 1)


class InceptionC(nn.Module):
    """17 x 17 module with 7x7 convolutions factorized into 1x7 and 7x1:
    1x1 | 1x1 -> 1x7 -> 7x1 | 1x1 -> 7x1 -> 1x7 -> 7x1 -> 1x7 |
    avg pool -> 1x1. (N, in_channels, H, W) -> (N, 768, H, W);
    ``channels_7x7`` is the width inside the factorized branches."""

    def __init__(self, in_channels, channels_7x7):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)

        c7 = channels_7x7
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))

        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))

        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x):
        branch1x1 = self.branch1x1(x)

        branch7x7 = self.branch7x7_1(x)
        branch7x7 = self.branch7x7_2(branch7x7)
        branch7x7 = self.branch7x7_3(branch7x7)

        branch7x7dbl = self.branch7x7dbl_1(x)
        branch7x7dbl = self.branch7x7dbl_2(branch7x7dbl)
        branch7x7dbl = self.branch7x7dbl_3(branch7x7dbl)
        branch7x7dbl = self.branch7x7dbl_4(branch7x7dbl)
        branch7x7dbl = self.branch7x7dbl_5(branch7x7dbl)

        branch_pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return F.cat([branch1x1, branch7x7, branch7x7dbl, branch_pool], 1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8: 1x1 -> stride-2 3x3 | 1x1 -> 1x7 -> 7x1 ->
    stride-2 3x3 | stride-2 max pool. (N, C, H, W) -> (N, 512 + C, ...)."""

    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)

        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x):
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))

        branch7x7x3 = self.branch7x7x3_1(x)
        branch7x7x3 = self.branch7x7x3_2(branch7x7x3)
        branch7x7x3 = self.branch7x7x3_3(branch7x7x3)
        branch7x7x3 = self.branch7x7x3_4(branch7x7x3)

        branch_pool = F.max_pool2d(x, kernel_size=3, stride=2)
        return F.cat([branch3x3, branch7x7x3, branch_pool], 1)


class InceptionE(nn.Module):
    """8 x 8 module with an expanded filter bank: the 1x3 and 3x1 convs of
    a branch see the same input and are concatenated, not stacked.
    1x1 | 1x1 -> (1x3, 3x1) | 1x1 -> 3x3 -> (1x3, 3x1) | avg pool -> 1x1.
    (N, in_channels, H, W) -> (N, 2048, H, W)."""

    def __init__(self, in_channels):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)

        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))

        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))

        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x):
        branch1x1 = self.branch1x1(x)

        branch3x3 = self.branch3x3_1(x)
        branch3x3 = F.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)

        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = F.cat([self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], 1)

        branch_pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return F.cat([branch1x1, branch3x3, branch3x3dbl, branch_pool], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier on the 17 x 17 map: (N, in_channels, 17, 17) ->
    (N, num_classes). 5x5 average pool (stride 3) to 5 x 5, a 1x1 conv to
    128 channels, a 5x5 conv to 768 (1 x 1 left), then a linear layer.
    ``fc.stddev`` is the std of its initial weights (see Inception3)."""

    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.conv0 = BasicConv2d(in_channels, 128, kernel_size=1)
        self.conv1 = BasicConv2d(128, 768, kernel_size=5)
        self.fc = nn.Linear(768, num_classes)
        self.fc.stddev = 0.001

    def forward(self, x):
        x = F.avg_pool2d(x, kernel_size=5, stride=3)   # (N, 768, 5, 5)
        x = self.conv1(self.conv0(x))                  # (N, 768, 1, 1)
        x = F.adaptive_avg_pool2d(x, (1, 1))
        x = F.flatten(x, 1)                            # (N, 768)
        return self.fc(x)


class Inception3(nn.Module):
    """Inception v3: (N, 3, H, W) images -> (N, num_classes) logits (in
    training mode with ``aux_logits``: an ``InceptionOutputs``).

    ``aux_logits``: build the auxiliary classifier ``AuxLogits``.
    ``transform_input``: rescale ImageNet-normalized input as the original
    weights expect. ``init_weights``: draw conv and linear weights from a
    normal distribution truncated to [-2, 2] with std 0.1 (or the layer's
    ``stddev``), as torchvision does (None means True). ``dropout`` is
    applied before ``fc``.
    """

    def __init__(self, num_classes=1000, aux_logits=True, transform_input=False, init_weights=None,
                 dropout=0.5):
        super().__init__()
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        # Stem: plain convolutions and pools, 299 -> 35.
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)   # 149 x 149
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)            # 147
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2)               # 73
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)           # 71
        self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2)               # 35
        self.Mixed_5b = InceptionA(192, pool_features=32)                  # 35 x 35, 256 channels
        self.Mixed_5c = InceptionA(256, pool_features=64)                  # 288
        self.Mixed_5d = InceptionA(288, pool_features=64)                  # 288
        self.Mixed_6a = InceptionB(288)                                     # 17 x 17, 768
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.AuxLogits = InceptionAux(768, num_classes) if aux_logits else None
        self.Mixed_7a = InceptionD(768)                                     # 8 x 8, 1280
        self.Mixed_7b = InceptionE(1280)                                    # 2048
        self.Mixed_7c = InceptionE(2048)                                    # 2048
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(2048, num_classes)

        if init_weights is None or init_weights:
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    # Only AuxLogits.fc has a stddev. (torchvision also tags
                    # AuxLogits.conv1 with 0.01, but on the BasicConv2d, which
                    # this loop skips, so its Conv2d gets 0.1 as here.)
                    std = float(getattr(m, "stddev", 0.1))
                    nn.init.trunc_normal_(m.weight, mean=0.0, std=std, a=-2, b=2)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)

    def forward(self, x):
        if self.transform_input:
            x = _transform_input(x)
        x = self.Conv2d_1a_3x3(x)                 # (N, 32, 149, 149)
        x = self.Conv2d_2a_3x3(x)                 # (N, 32, 147, 147)
        x = self.Conv2d_2b_3x3(x)                 # (N, 64, 147, 147)
        x = self.maxpool1(x)                      # (N, 64, 73, 73)
        x = self.Conv2d_3b_1x1(x)                 # (N, 80, 73, 73)
        x = self.Conv2d_4a_3x3(x)                 # (N, 192, 71, 71)
        x = self.maxpool2(x)                      # (N, 192, 35, 35)
        x = self.Mixed_5b(x)                      # (N, 256, 35, 35)
        x = self.Mixed_5c(x)                      # (N, 288, 35, 35)
        x = self.Mixed_5d(x)                      # (N, 288, 35, 35)
        x = self.Mixed_6a(x)                      # (N, 768, 17, 17)
        x = self.Mixed_6b(x)
        x = self.Mixed_6c(x)
        x = self.Mixed_6d(x)
        x = self.Mixed_6e(x)                      # (N, 768, 17, 17)
        use_aux = self.training and self.aux_logits
        aux = self.AuxLogits(x) if use_aux else None
        x = self.Mixed_7a(x)                      # (N, 1280, 8, 8)
        x = self.Mixed_7b(x)                      # (N, 2048, 8, 8)
        x = self.Mixed_7c(x)                      # (N, 2048, 8, 8)
        x = self.avgpool(x)                       # (N, 2048, 1, 1)
        x = self.dropout(x)
        x = F.flatten(x, 1)                       # (N, 2048)
        x = self.fc(x)                            # (N, num_classes)
        if use_aux:
            return InceptionOutputs(x, aux)
        return x


@register_model
def inception_v3(*, weights=None, progress=True, **kwargs):
    """A freshly initialised Inception v3; ``kwargs`` go to ``Inception3``
    (``num_classes``, ``aux_logits``, ``transform_input``, ``init_weights``,
    ``dropout``). ``weights`` must be None (minicnn downloads nothing: load
    torchvision's state_dict instead); ``progress`` is accepted for
    torchvision compatibility and unused."""
    _check_weights(weights, "inception_v3")
    return Inception3(**kwargs)
