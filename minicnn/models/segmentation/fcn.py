"""FCN (Long, Shelhamer & Darrell, 2015, "Fully Convolutional Networks for
Semantic Segmentation") with a dilated ResNet backbone, as torchvision
builds ``fcn_resnet50`` / ``fcn_resnet101``.

The paper's insight: a classification network's fully connected layers
are convolutions whose kernels cover the whole input, so written as
convolutions the network accepts any size and outputs a map of scores
instead of one vector. torchvision's version keeps ResNet's layer1..4,
replaces the strides of layer3 and layer4 by dilation 2 and 4 (output
stride 8 instead of 32: finer maps, same receptive fields, same
weights), and puts a small head on layer4:

    FCNHead: 3x3 conv to C/4 channels, BN, ReLU, dropout 0.1, 1x1 conv to K.

With ``aux_loss=True`` a second FCNHead on layer3 (1024 channels) gives
auxiliary scores, used only for an extra loss term while training.

Notation: (N, 3, H, W) input; layer4 gives (N, 2048, ceil(H/8), ceil(W/8))
(rounded up at every stride); scores (N, K, H, W) after upsampling.
"""
from ... import nn
from .._utils import IntermediateLayerGetter
from ..registry import register_model
from ..resnet import resnet50, resnet101
from ._utils import SimpleSegmentationModel, check_builder_arguments

__all__ = ["FCN", "FCNHead", "fcn_resnet50", "fcn_resnet101"]


class FCN(SimpleSegmentationModel):
    """A fully convolutional network: ``backbone`` features, ``classifier``
    (an FCNHead) and an optional ``aux_classifier``, upsampled to the
    input; see SimpleSegmentationModel for the shapes."""


class FCNHead(nn.Sequential):
    """(N, in_channels, h, w) -> (N, channels, h, w): 3x3 conv to
    in_channels // 4, BN, ReLU, Dropout(0.1), 1x1 conv (with bias)."""

    def __init__(self, in_channels, channels):
        inter_channels = in_channels // 4
        super().__init__(
            nn.Conv2d(in_channels, inter_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(inter_channels),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Conv2d(inter_channels, channels, 1),
        )


def resnet_segmentation_model(builder, model_class, head, resnet_builder, weights, num_classes, aux_loss,
                              weights_backbone, kwargs):
    """``model_class`` on ``resnet_builder``'s ResNet with layer3 and
    layer4 dilated (output stride 8): ``head(2048, num_classes)`` on
    layer4, and with ``aux_loss`` an FCNHead on layer3 (1024 channels)."""
    from .._layers import _check_weights

    _check_weights(weights, builder)
    num_classes = check_builder_arguments(builder, num_classes, weights_backbone, kwargs)
    return_layers = {"layer4": "out"}
    if aux_loss:
        return_layers["layer3"] = "aux"
    backbone = IntermediateLayerGetter(resnet_builder(replace_stride_with_dilation=[False, True, True]),
                                       return_layers=return_layers)
    aux_classifier = FCNHead(1024, num_classes) if aux_loss else None
    return model_class(backbone, head(2048, num_classes), aux_classifier)


@register_model
def fcn_resnet50(*, weights=None, progress=True, num_classes=None, aux_loss=None, weights_backbone=None,
                 **kwargs):
    """FCN with a dilated ResNet-50 backbone, 35.3M parameters (32.96M
    without the auxiliary head), 152.7 billion multiply-adds at 520 x 520.

    ``num_classes``: None means 21 (torchvision's default, Pascal VOC's
    classes and the background); ``aux_loss``: add the auxiliary head.
    ``weights`` and ``weights_backbone`` must be None (minicnn downloads
    nothing; torchvision's default backbone weights are ImageNet's, here
    the backbone starts random); ``progress`` is ignored. Unlike
    torchvision, other keywords are an error rather than ignored."""
    return resnet_segmentation_model("fcn_resnet50", FCN, FCNHead, resnet50, weights, num_classes, aux_loss,
                                     weights_backbone, kwargs)


@register_model
def fcn_resnet101(*, weights=None, progress=True, num_classes=None, aux_loss=None, weights_backbone=None,
                  **kwargs):
    """FCN with a dilated ResNet-101 backbone, 54.3M parameters, 232.7
    billion multiply-adds at 520 x 520; arguments as for fcn_resnet50."""
    return resnet_segmentation_model("fcn_resnet101", FCN, FCNHead, resnet101, weights, num_classes, aux_loss,
                                     weights_backbone, kwargs)
