"""LR-ASPP, the "Lite Reduced Atrous Spatial Pyramid Pooling" head of
Howard et al., 2019, "Searching for MobileNetV3", as torchvision builds
``lraspp_mobilenet_v3_large``.

A segmentation head cheap enough for a phone. It reads two feature maps
of a dilated MobileNetV3-Large: "high" (the last conv, 960 channels,
output stride 16) and "low" (the last stride-8 block, C2, 40 channels):

    x     = relu(bn(1x1 conv(high)))                    128 channels
    gate  = sigmoid(1x1 conv(global average pool(high)))  per channel, 0..1
    x     = upsample(x * gate) to low's size
    score = 1x1 conv(low) + 1x1 conv(x)                  K classes

The gate is ASPP's image-level branch turned into squeeze-and-excitation
(it rescales channels instead of adding a branch); the low-level 1x1
classifier puts back the detail lost at stride 16. The scores, at stride
8, are upsampled bilinearly to the input's size. There is no auxiliary
head.
"""
from collections import OrderedDict

from ... import nn
from .._utils import IntermediateLayerGetter
from ..mobilenetv3 import mobilenet_v3_large
from ..registry import register_model
from ._utils import check_builder_arguments, check_image_batch, first_conv_channels, upsample_to
from .deeplabv3 import mobilenet_stages

__all__ = ["LRASPP", "LRASPPHead", "lraspp_mobilenet_v3_large"]


class LRASPP(nn.Module):
    """``backbone`` (returns {"low": ..., "high": ...}) and an LRASPPHead:
    (N, 3, H, W) -> OrderedDict {"out": (N, num_classes, H, W)}."""

    def __init__(self, backbone, low_channels, high_channels, num_classes, inter_channels=128):
        super().__init__()
        self.backbone = backbone
        self.classifier = LRASPPHead(low_channels, high_channels, num_classes, inter_channels)

    def forward(self, input):
        check_image_batch(self, input, first_conv_channels(self.backbone))
        out = self.classifier(self.backbone(input))
        result = OrderedDict()
        result["out"] = upsample_to(out, input.shape[-2:])
        return result


class LRASPPHead(nn.Module):
    """{"low": (N, low_channels, h, w), "high": (N, high_channels, h', w')}
    -> (N, num_classes, h, w), as in the module docstring."""

    def __init__(self, low_channels, high_channels, num_classes, inter_channels):
        super().__init__()
        self.cbr = nn.Sequential(
            nn.Conv2d(high_channels, inter_channels, 1, bias=False),
            nn.BatchNorm2d(inter_channels),
            nn.ReLU(inplace=True),
        )
        self.scale = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(high_channels, inter_channels, 1, bias=False),
            nn.Sigmoid(),
        )
        self.low_classifier = nn.Conv2d(low_channels, num_classes, 1)
        self.high_classifier = nn.Conv2d(inter_channels, num_classes, 1)

    def forward(self, input):
        low, high = input["low"], input["high"]
        x = self.cbr(high) * self.scale(high)
        x = upsample_to(x, low.shape[-2:])
        return self.low_classifier(low) + self.high_classifier(x)


@register_model
def lraspp_mobilenet_v3_large(*, weights=None, progress=True, num_classes=None, weights_backbone=None, **kwargs):
    """LR-ASPP with a dilated MobileNetV3-Large backbone, 3.2M parameters,
    2.09 billion multiply-adds at 520 x 520. ``num_classes`` None means
    21; ``weights`` and ``weights_backbone`` must be None; ``aux_loss=True``
    is refused (the model has no auxiliary head: torchvision raises
    NotImplementedError, minicnn a ValueError)."""
    from .._layers import _check_weights

    if kwargs.pop("aux_loss", False):
        raise ValueError("lraspp_mobilenet_v3_large: this model has no auxiliary head, so aux_loss must be "
                         "False or None")
    _check_weights(weights, "lraspp_mobilenet_v3_large")
    num_classes = check_builder_arguments("lraspp_mobilenet_v3_large", num_classes, weights_backbone, kwargs)
    features = mobilenet_v3_large(dilated=True).features
    stages = mobilenet_stages(features)
    low_pos, high_pos = stages[-4], stages[-1]    # C2 (output stride 8) and C5 (output stride 16)
    backbone = IntermediateLayerGetter(features, return_layers={str(low_pos): "low", str(high_pos): "high"})
    return LRASPP(backbone, features[low_pos].out_channels, features[high_pos].out_channels, num_classes)
