"""What the segmentation models share: the backbone + head + upsampling
skeleton of FCN and DeepLabV3 (torchvision's ``_SimpleSegmentationModel``)
and the check of their input.

A segmentation network predicts a class for every pixel. The backbone
(a classification network cut before its pooling) computes features at a
fraction of the input's resolution, 1/8 for these models, since the last
strides were traded for dilation; a head turns them into per-class
scores, (N, num_classes, H/8, W/8); bilinear interpolation brings the
scores back to the input's (H, W), so any input size works, odd ones too.
"""
from collections import OrderedDict

from ... import functional as F
from ... import nn

__all__ = ["SimpleSegmentationModel"]


def first_conv_channels(module):
    """in_channels of the first Conv2d of ``module`` (the input's channels)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    raise ValueError(f"{type(module).__name__} has no Conv2d")


def check_image_batch(model, x, in_channels):
    """A clear error for input that is not (N, in_channels, H, W)."""
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) != 4 or shape[1] != in_channels:
        raise ValueError(f"{type(model).__name__} expects input of shape (N, {in_channels}, H, W), got {shape}")


def upsample_to(scores, size):
    """(N, C, h, w) scores resized bilinearly to ``size`` = (H, W), pixel
    centres aligned as torchvision does (align_corners=False)."""
    return F.interpolate(scores, size=tuple(size), mode="bilinear", align_corners=False)


class SimpleSegmentationModel(nn.Module):
    """``backbone`` (returns {"out": features, "aux": features}),
    ``classifier`` (the head on "out") and the optional
    ``aux_classifier`` (a head on "aux", for an auxiliary training loss):
    (N, 3, H, W) -> OrderedDict {"out": (N, K, H, W), "aux": (N, K, H, W)}
    with K classes, both upsampled to the input's size."""

    def __init__(self, backbone, classifier, aux_classifier=None):
        super().__init__()
        self.backbone = backbone
        self.classifier = classifier
        self.aux_classifier = aux_classifier

    def forward(self, x):
        check_image_batch(self, x, first_conv_channels(self.backbone))
        input_shape = x.shape[-2:]
        features = self.backbone(x)
        result = OrderedDict()
        result["out"] = upsample_to(self.classifier(features["out"]), input_shape)
        if self.aux_classifier is not None:
            result["aux"] = upsample_to(self.aux_classifier(features["aux"]), input_shape)
        return result


def check_builder_arguments(builder, num_classes, weights_backbone, kwargs):
    """The number of classes (None: torchvision's 21, Pascal VOC's 20 and
    the background), after refusing backbone weights and unknown keywords."""
    from .._layers import _check_weights

    _check_weights(weights_backbone, builder + " (weights_backbone)")
    if kwargs:
        raise TypeError(f"{builder}: unexpected keyword arguments {sorted(kwargs)}")
    if num_classes is None:
        return 21
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"{builder}: num_classes must be a positive int, got {num_classes!r}")
    return num_classes
