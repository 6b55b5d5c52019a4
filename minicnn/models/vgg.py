"""VGG (Simonyan & Zisserman, "Very Deep Convolutional Networks for
Large-Scale Image Recognition", 2014), as torchvision builds it.

The idea: use only 3x3 convolutions (stride 1, padding 1) and 2x2 max
pools, and get depth from repetition. Two stacked 3x3 convs see a 5x5
window, three see 7x7, with fewer parameters and more nonlinearities
than one large kernel. Five stages of convs, each ending in a pool that
halves H and W, double the channels from 64 up to 512; three fully
connected layers (4096, 4096, num_classes) with dropout classify.

The paper's configurations, by letter (numbers are conv output channels,
"M" a max pool):

====  ========  ======================================================
Cfg   Model     Layers
====  ========  ======================================================
A     vgg11     64 M 128 M 256x2 M 512x2 M 512x2 M
B     vgg13     64x2 M 128x2 M 256x2 M 512x2 M 512x2 M
D     vgg16     64x2 M 128x2 M 256x3 M 512x3 M 512x3 M
E     vgg19     64x2 M 128x2 M 256x4 M 512x4 M 512x4 M
====  ========  ======================================================

The ``_bn`` variants put a BatchNorm2d between each conv and its ReLU
(not in the paper; it trains much more easily). An adaptive average pool
to 7x7 after the convs lets any input from 32x32 up reach the classifier
with its 512 * 7 * 7 features (a 1x1 map is simply repeated 7x7 times).

Notation: N images, 3 x H x W input with H, W >= 32.

The builders take torchvision's arguments: ``weights`` must be None
(minicnn downloads nothing), ``progress`` is accepted and ignored, and
every other keyword goes to ``VGG``.
"""
from .. import functional as F
from .. import nn
from ._layers import _check_weights
from .registry import register_model

__all__ = [
    "VGG",
    "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
]

cfgs = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def make_layers(cfg, batch_norm=False):
    """The conv part of a VGG as one Sequential, from a list like
    ``cfgs["A"]``: an int is a 3x3 conv to that many channels followed by
    (BatchNorm2d and) ReLU, "M" a 2x2 stride-2 max pool.
    (N, 3, H, W) -> (N, 512, H/32, W/32)."""
    layers = []
    in_channels = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(in_channels, v, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        in_channels = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """``features`` (from ``make_layers``) -> ``avgpool`` to (N, 512, 7, 7)
    -> flatten -> ``classifier``: (N, 3, H, W) -> (N, num_classes) logits.

    ``dropout`` is the drop probability of the classifier's two dropout
    layers. With ``init_weights`` (torchvision's scheme): convs
    kaiming_normal_(fan_out, relu) with zero bias, BatchNorm weight 1 and
    bias 0, Linear weights N(0, 0.01^2) with zero bias.
    """

    def __init__(self, features, num_classes=1000, init_weights=True, dropout=0.5):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        if init_weights:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.constant_(m.bias, 0)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0, 0.01)
                    nn.init.constant_(m.bias, 0)

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != 3 or min(x.shape[2:]) < 32:
            raise ValueError(f"VGG expects input of shape (N, 3, H, W) with H, W >= 32, got {x.shape}")
        x = self.avgpool(self.features(x))
        return self.classifier(F.flatten(x, 1))


def _vgg(builder, cfg, batch_norm, weights, kwargs):
    _check_weights(weights, builder)
    return VGG(make_layers(cfgs[cfg], batch_norm=batch_norm), **kwargs)


@register_model
def vgg11(*, weights=None, progress=True, **kwargs):
    """VGG-11 (configuration A), 132.9M parameters; ``kwargs``
    (num_classes, init_weights, dropout) go to ``VGG``."""
    return _vgg("vgg11", "A", False, weights, kwargs)


@register_model
def vgg11_bn(*, weights=None, progress=True, **kwargs):
    """VGG-11 with batch normalization, 132.9M parameters."""
    return _vgg("vgg11_bn", "A", True, weights, kwargs)


@register_model
def vgg13(*, weights=None, progress=True, **kwargs):
    """VGG-13 (configuration B), 133.0M parameters."""
    return _vgg("vgg13", "B", False, weights, kwargs)


@register_model
def vgg13_bn(*, weights=None, progress=True, **kwargs):
    """VGG-13 with batch normalization, 133.1M parameters."""
    return _vgg("vgg13_bn", "B", True, weights, kwargs)


@register_model
def vgg16(*, weights=None, progress=True, **kwargs):
    """VGG-16 (configuration D), 138.4M parameters."""
    return _vgg("vgg16", "D", False, weights, kwargs)


@register_model
def vgg16_bn(*, weights=None, progress=True, **kwargs):
    """VGG-16 with batch normalization, 138.4M parameters."""
    return _vgg("vgg16_bn", "D", True, weights, kwargs)


@register_model
def vgg19(*, weights=None, progress=True, **kwargs):
    """VGG-19 (configuration E), 143.7M parameters."""
    return _vgg("vgg19", "E", False, weights, kwargs)


@register_model
def vgg19_bn(*, weights=None, progress=True, **kwargs):
    """VGG-19 with batch normalization, 143.7M parameters."""
    return _vgg("vgg19_bn", "E", True, weights, kwargs)
