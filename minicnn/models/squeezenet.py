"""SqueezeNet (Iandola et al., "SqueezeNet: AlexNet-level accuracy with 50x
fewer parameters and <0.5MB model size", 2016), as torchvision builds it.

The idea: get AlexNet's accuracy from far fewer parameters by

* using mostly 1x1 filters (9x fewer parameters than 3x3),
* "squeezing" the channels with 1x1 convs before the 3x3 ones see them,
* pooling late, so most layers work on large activation maps,

packaged as the ``Fire`` module: a 1x1 squeeze conv, then 1x1 and 3x3
expand convs side by side whose outputs are concatenated. There are no
fully connected layers: a final 1x1 conv gives one map per class, and
global average pooling turns each into a logit.

Version 1.1 (from the SqueezeNet repository) has the same accuracy with
2.4x less computation: a 3x3 first conv with 64 filters instead of 7x7
with 96, and the pools moved earlier.

Notation: N images, 3 x H x W input; the smallest input is 21x21 for
version 1.0 and 17x17 for 1.1.

The builders take torchvision's arguments: ``weights`` must be None
(minicnn downloads nothing), ``progress`` is accepted and ignored, and
every other keyword goes to ``SqueezeNet``.
"""
from .. import functional as F
from .. import nn
from ._layers import _check_weights
from .registry import register_model

__all__ = ["SqueezeNet", "squeezenet1_0", "squeezenet1_1"]


class Fire(nn.Module):
    """squeeze (1x1 conv to ``squeeze_planes``, ReLU), then in parallel
    expand1x1 and expand3x3 (each conv + ReLU), concatenated:
    (N, inplanes, H, W) -> (N, expand1x1_planes + expand3x3_planes, H, W)."""

    def __init__(self, inplanes, squeeze_planes, expand1x1_planes, expand3x3_planes):
        super().__init__()
        self.inplanes = inplanes
        self.squeeze = nn.Conv2d(inplanes, squeeze_planes, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze_planes, expand1x1_planes, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze_planes, expand3x3_planes, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.squeeze_activation(self.squeeze(x))
        return F.cat([self.expand1x1_activation(self.expand1x1(x)),
                      self.expand3x3_activation(self.expand3x3(x))], 1)


class SqueezeNet(nn.Module):
    """``features`` (a conv, pools and eight Fire modules):
    (N, 3, H, W) -> (N, 512, h, w); ``classifier`` (dropout, 1x1 conv to
    num_classes maps, ReLU, global average pool) -> (N, num_classes, 1, 1),
    flattened to (N, num_classes) logits.

    ``version`` is "1_0" or "1_1"; ``dropout`` the drop probability before
    the final conv. Initialisation (torchvision's): convs kaiming_uniform_
    (the final one N(0, 0.01^2)), all biases zero.
    """

    def __init__(self, version="1_0", num_classes=1000, dropout=0.5):
        super().__init__()
        self.num_classes = num_classes
        if version == "1_0":
            self.features = nn.Sequential(
                nn.Conv2d(3, 96, kernel_size=7, stride=2),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
                Fire(96, 16, 64, 64),
                Fire(128, 16, 64, 64),
                Fire(128, 32, 128, 128),
                nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
                Fire(256, 32, 128, 128),
                Fire(256, 48, 192, 192),
                Fire(384, 48, 192, 192),
                Fire(384, 64, 256, 256),
                nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
                Fire(512, 64, 256, 256),
            )
        elif version == "1_1":
            self.features = nn.Sequential(
                nn.Conv2d(3, 64, kernel_size=3, stride=2),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
                Fire(64, 16, 64, 64),
                Fire(128, 16, 64, 64),
                nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
                Fire(128, 32, 128, 128),
                Fire(256, 32, 128, 128),
                nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
                Fire(256, 48, 192, 192),
                Fire(384, 48, 192, 192),
                Fire(384, 64, 256, 256),
                Fire(512, 64, 256, 256),
            )
        else:
            raise ValueError(f"Unsupported SqueezeNet version {version}: 1_0 or 1_1 expected")

        final_conv = nn.Conv2d(512, self.num_classes, kernel_size=1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), final_conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1))
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # The final conv gives the logits directly: start it small.
                if m is final_conv:
                    nn.init.normal_(m.weight, mean=0.0, std=0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"SqueezeNet expects input of shape (N, 3, H, W), got {x.shape}")
        x = self.classifier(self.features(x))
        return F.flatten(x, 1)


@register_model
def squeezenet1_0(*, weights=None, progress=True, **kwargs):
    """SqueezeNet 1.0, 1.2M parameters; ``kwargs`` (num_classes, dropout)
    go to ``SqueezeNet``."""
    _check_weights(weights, "squeezenet1_0")
    return SqueezeNet("1_0", **kwargs)


@register_model
def squeezenet1_1(*, weights=None, progress=True, **kwargs):
    """SqueezeNet 1.1, 1.2M parameters and 2.4x less computation than 1.0."""
    _check_weights(weights, "squeezenet1_1")
    return SqueezeNet("1_1", **kwargs)
