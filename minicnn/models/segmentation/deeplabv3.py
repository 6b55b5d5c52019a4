"""DeepLabV3 (Chen et al., 2017, "Rethinking Atrous Convolution for
Semantic Image Segmentation"), as torchvision builds
``deeplabv3_resnet50`` / ``deeplabv3_resnet101`` /
``deeplabv3_mobilenet_v3_large``.

Atrous (dilated) convolution spaces a kernel's taps ``rate`` pixels
apart: a 3x3 kernel at rate r sees a (2r+1) x (2r+1) window with the same
nine weights. DeepLabV3's head, atrous spatial pyramid pooling (ASPP),
looks at the same feature map through several such windows at once and
concatenates what they see, so objects of very different sizes get a
branch that fits them:

    ASPP(x) = project(cat[1x1 conv(x),
                          3x3 conv at rate 12 (x), at rate 24 (x), at rate 36 (x),
                          upsample(1x1 conv(global average pool(x)))])

each branch conv -> BN -> ReLU with 256 channels; the image-level branch
(global pooling) adds context a window cannot reach, broadcast back to
the map's size by bilinear upsampling of its 1x1 map. ``project``: 1x1
conv 1280 -> 256, BN, ReLU, Dropout(0.5). DeepLabHead follows ASPP with a
3x3 conv, BN, ReLU and a 1x1 conv to the K classes.

Backbones: ResNet with layer3 and layer4 dilated (output stride 8, the
auxiliary FCNHead on layer3), or MobileNetV3-Large with its last stage
dilated (output stride 16, "out" the last 960-channel conv, "aux" the
output of the last stride-8 block, C2, 40 channels).
"""
from ... import functional as F
from ... import nn
from .._utils import IntermediateLayerGetter
from ..mobilenetv3 import mobilenet_v3_large
from ..registry import register_model
from ..resnet import resnet50, resnet101
from ._utils import SimpleSegmentationModel, check_builder_arguments, upsample_to
from .fcn import FCNHead, resnet_segmentation_model

__all__ = ["DeepLabV3", "DeepLabHead", "ASPP", "ASPPConv", "ASPPPooling",
           "deeplabv3_resnet50", "deeplabv3_resnet101", "deeplabv3_mobilenet_v3_large"]


class DeepLabV3(SimpleSegmentationModel):
    """``backbone`` features, ``classifier`` (a DeepLabHead) and an
    optional ``aux_classifier`` (an FCNHead), upsampled to the input; see
    SimpleSegmentationModel for the shapes."""


class DeepLabHead(nn.Sequential):
    """(N, in_channels, h, w) -> (N, num_classes, h, w): ASPP, 3x3 conv,
    BN, ReLU, 1x1 conv (with bias)."""

    def __init__(self, in_channels, num_classes, atrous_rates=(12, 24, 36)):
        super().__init__(
            ASPP(in_channels, atrous_rates),
            nn.Conv2d(256, 256, 3, padding=1, bias=False),
            nn.BatchNorm2d(256),
            nn.ReLU(),
            nn.Conv2d(256, num_classes, 1),
        )


class ASPPConv(nn.Sequential):
    """A 3x3 conv at rate ``dilation`` (padded to keep h, w), BN, ReLU."""

    def __init__(self, in_channels, out_channels, dilation):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )


class ASPPPooling(nn.Sequential):
    """The image-level branch: global average pool, 1x1 conv, BN, ReLU,
    then the (N, out_channels, 1, 1) result upsampled to the input's
    (h, w) (bilinear from one pixel: a broadcast)."""

    def __init__(self, in_channels, out_channels):
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )

    def forward(self, x):
        size = x.shape[-2:]
        for module in self:
            x = module(x)
        return upsample_to(x, size)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (module docstring): (N, in_channels,
    h, w) -> (N, out_channels, h, w), one branch per rate of
    ``atrous_rates`` plus the 1x1 and the image-level branches."""

    def __init__(self, in_channels, atrous_rates, out_channels=256):
        super().__init__()
        branches = [nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                  nn.BatchNorm2d(out_channels), nn.ReLU())]
        for rate in tuple(atrous_rates):
            branches.append(ASPPConv(in_channels, out_channels, rate))
        branches.append(ASPPPooling(in_channels, out_channels))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(
            nn.Conv2d(len(self.convs) * out_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            nn.Dropout(0.5),
        )

    def forward(self, x):
        return self.project(F.cat([branch(x) for branch in self.convs], dim=1))


def mobilenet_stages(features):
    """Indices into MobileNetV3's ``features`` of the stem, of every block
    that downsamples (or would, before dilation: C1..C4) and of the last
    conv (C5), torchvision's ``stage_indices``."""
    return [0] + [i for i, block in enumerate(features) if getattr(block, "_is_cn", False)] + [len(features) - 1]


@register_model
def deeplabv3_resnet50(*, weights=None, progress=True, num_classes=None, aux_loss=None, weights_backbone=None,
                       **kwargs):
    """DeepLabV3 with a dilated ResNet-50 backbone, 42.0M parameters,
    178.7 billion multiply-adds at 520 x 520. Arguments as for
    ``fcn_resnet50`` (num_classes None means 21; weights and
    weights_backbone must be None)."""
    return resnet_segmentation_model("deeplabv3_resnet50", DeepLabV3, DeepLabHead, resnet50, weights, num_classes,
                                     aux_loss, weights_backbone, kwargs)


@register_model
def deeplabv3_resnet101(*, weights=None, progress=True, num_classes=None, aux_loss=None, weights_backbone=None,
                        **kwargs):
    """DeepLabV3 with a dilated ResNet-101 backbone, 61.0M parameters,
    258.7 billion multiply-adds at 520 x 520; arguments as for fcn_resnet50."""
    return resnet_segmentation_model("deeplabv3_resnet101", DeepLabV3, DeepLabHead, resnet101, weights,
                                     num_classes, aux_loss, weights_backbone, kwargs)


@register_model
def deeplabv3_mobilenet_v3_large(*, weights=None, progress=True, num_classes=None, aux_loss=None,
                                 weights_backbone=None, **kwargs):
    """DeepLabV3 with a dilated MobileNetV3-Large backbone, 11.0M
    parameters, 10.45 billion multiply-adds at 520 x 520; arguments as
    for fcn_resnet50."""
    from .._layers import _check_weights

    _check_weights(weights, "deeplabv3_mobilenet_v3_large")
    num_classes = check_builder_arguments("deeplabv3_mobilenet_v3_large", num_classes, weights_backbone, kwargs)
    features = mobilenet_v3_large(dilated=True).features
    stages = mobilenet_stages(features)
    out_pos, aux_pos = stages[-1], stages[-4]     # C5 (output stride 16) and C2 (output stride 8)
    return_layers = {str(out_pos): "out"}
    if aux_loss:
        return_layers[str(aux_pos)] = "aux"
    backbone = IntermediateLayerGetter(features, return_layers=return_layers)
    aux_classifier = FCNHead(features[aux_pos].out_channels, num_classes) if aux_loss else None
    return DeepLabV3(backbone, DeepLabHead(features[out_pos].out_channels, num_classes), aux_classifier)
