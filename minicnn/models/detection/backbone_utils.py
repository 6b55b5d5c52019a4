"""Backbones for detection (torchvision's
``torchvision.models.detection.backbone_utils``): a classification
network cut into feature maps, with or without a feature pyramid.

* ``BackboneWithFPN``: ``body`` (an IntermediateLayerGetter returning
  some stages) and ``fpn`` (mc.ops.FeaturePyramidNetwork), so the
  detector sees maps of ``out_channels`` each at several strides.
* ``resnet_fpn_backbone`` / ``_resnet_fpn_extractor``: a ResNet's
  layer1..layer4 (the ``returned_layers``) into an FPN; only the last
  ``trainable_layers`` stages keep gradients (counted from layer4, then
  layer3, ..., conv1 with bn1): early filters of a pretrained network are
  generic and training them with batches of two images only hurts.
* ``mobilenet_backbone`` / ``_mobilenet_extractor``: a MobileNetV2/V3's
  ``features``, cut at the blocks that start a stage.
* ``_validate_trainable_layers``: the detectors' rule for the number of
  trainable stages (all of them when nothing is pretrained).

The default norm layer of ``resnet_fpn_backbone`` and
``mobilenet_backbone`` is FrozenBatchNorm2d, as torchvision's.
"""
import warnings

from ... import nn
from ...ops import FeaturePyramidNetwork, LastLevelMaxPool
from .. import mobilenetv2, mobilenetv3, resnet
from .._layers import _check_weights
from .._utils import IntermediateLayerGetter
from .frozen_batch_norm import FrozenBatchNorm2d

__all__ = ["BackboneWithFPN", "resnet_fpn_backbone", "mobilenet_backbone"]


class BackboneWithFPN(nn.Module):
    """(N, 3, H, W) -> OrderedDict of FPN maps, ``out_channels`` each:
    the ``return_layers`` of ``backbone`` ({child: name}) of
    ``in_channels_list`` channels through a FeaturePyramidNetwork with
    ``extra_blocks`` (default LastLevelMaxPool)."""

    def __init__(self, backbone, return_layers, in_channels_list, out_channels, extra_blocks=None, norm_layer=None):
        super().__init__()
        if extra_blocks is None:
            extra_blocks = LastLevelMaxPool()
        self.body = IntermediateLayerGetter(backbone, return_layers=return_layers)
        self.fpn = FeaturePyramidNetwork(in_channels_list=in_channels_list, out_channels=out_channels,
                                         extra_blocks=extra_blocks, norm_layer=norm_layer)
        self.out_channels = out_channels

    def forward(self, x):
        return self.fpn(self.body(x))


def resnet_fpn_backbone(*, backbone_name, weights, norm_layer=FrozenBatchNorm2d, trainable_layers=3,
                        returned_layers=None, extra_blocks=None):
    """``resnet.<backbone_name>`` (e.g. "resnet50") built with
    ``norm_layer``, then _resnet_fpn_extractor. ``weights`` must be None."""
    _check_weights(weights, "resnet_fpn_backbone")
    if backbone_name not in resnet.__all__:
        raise ValueError(f"resnet_fpn_backbone: unknown backbone_name {backbone_name!r}; one of {resnet.__all__}")
    backbone = getattr(resnet, backbone_name)(norm_layer=norm_layer)
    return _resnet_fpn_extractor(backbone, trainable_layers, returned_layers, extra_blocks)


def _resnet_fpn_extractor(backbone, trainable_layers, returned_layers=None, extra_blocks=None, norm_layer=None):
    """A ResNet's stages ``returned_layers`` (default [1, 2, 3, 4]) into a
    256-channel FPN; parameters outside the last ``trainable_layers``
    stages (0..5) stop requiring gradients."""
    if trainable_layers < 0 or trainable_layers > 5:
        raise ValueError(f"Trainable layers should be in the range [0,5], got {trainable_layers}")
    layers_to_train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    if trainable_layers == 5:
        layers_to_train.append("bn1")
    for name, parameter in backbone.named_parameters():
        if not any(name.startswith(layer) for layer in layers_to_train):
            parameter.requires_grad_(False)
    if extra_blocks is None:
        extra_blocks = LastLevelMaxPool()
    if returned_layers is None:
        returned_layers = [1, 2, 3, 4]
    if min(returned_layers) <= 0 or max(returned_layers) >= 5:
        raise ValueError(f"Each returned layer should be in the range [1,4]. Got {returned_layers}")
    return_layers = {f"layer{k}": str(v) for v, k in enumerate(returned_layers)}
    # After _make_layer, inplanes is layer4's output width (2048 for ResNet-50).
    in_channels_stage2 = backbone.inplanes // 8
    in_channels_list = [in_channels_stage2 * 2 ** (i - 1) for i in returned_layers]
    return BackboneWithFPN(backbone, return_layers, in_channels_list, 256, extra_blocks=extra_blocks,
                           norm_layer=norm_layer)


def _validate_trainable_layers(is_trained, trainable_backbone_layers, max_value, default_value):
    """The number of trainable backbone stages: all (``max_value``) when
    nothing is pretrained (a given value is then ignored with a warning,
    as torchvision does), else the given one or ``default_value``."""
    if not is_trained:
        if trainable_backbone_layers is not None:
            warnings.warn("Changing trainable_backbone_layers has no effect if neither pretrained nor "
                          "pretrained_backbone have been set to True, falling back to "
                          f"trainable_backbone_layers={max_value} so that all layers are trainable")
        trainable_backbone_layers = max_value
    if trainable_backbone_layers is None:
        trainable_backbone_layers = default_value
    if trainable_backbone_layers < 0 or trainable_backbone_layers > max_value:
        raise ValueError(f"Trainable backbone layers should be in the range [0,{max_value}], got "
                         f"{trainable_backbone_layers} ")
    return trainable_backbone_layers


def mobilenet_backbone(*, backbone_name, weights, fpn, norm_layer=FrozenBatchNorm2d, trainable_layers=2,
                       returned_layers=None, extra_blocks=None):
    """"mobilenet_v2", "mobilenet_v3_large" or "mobilenet_v3_small" built
    with ``norm_layer``, then _mobilenet_extractor. ``weights`` must be None."""
    _check_weights(weights, "mobilenet_backbone")
    builders = {"mobilenet_v2": mobilenetv2.mobilenet_v2, "mobilenet_v3_large": mobilenetv3.mobilenet_v3_large,
                "mobilenet_v3_small": mobilenetv3.mobilenet_v3_small}
    if backbone_name not in builders:
        raise ValueError(f"mobilenet_backbone: unknown backbone_name {backbone_name!r}; one of {sorted(builders)}")
    backbone = builders[backbone_name](norm_layer=norm_layer)
    return _mobilenet_extractor(backbone, fpn, trainable_layers, returned_layers, extra_blocks)


def _mobilenet_stages(features):
    """Indices of the blocks that start a stage: 0, each block with
    ``_is_cn``, and the last one."""
    return [0] + [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)] + [len(features) - 1]


def _freeze_before(features, trainable_layers, stage_indices):
    num_stages = len(stage_indices)
    if trainable_layers < 0 or trainable_layers > num_stages:
        raise ValueError(f"Trainable layers should be in the range [0,{num_stages}], got {trainable_layers} ")
    freeze_before = len(features) if trainable_layers == 0 else stage_indices[num_stages - trainable_layers]
    for block in list(features)[:freeze_before]:
        for parameter in block.parameters():
            parameter.requires_grad_(False)


def _mobilenet_extractor(backbone, fpn, trainable_layers, returned_layers=None, extra_blocks=None, norm_layer=None):
    """With ``fpn``: the stages ``returned_layers`` (default the last two)
    into a 256-channel FPN; without: ``features`` then a 1x1 conv to 256
    channels (one map). The first stages beyond ``trainable_layers`` are
    frozen."""
    features = backbone.features
    stage_indices = _mobilenet_stages(features)
    num_stages = len(stage_indices)
    _freeze_before(features, trainable_layers, stage_indices)
    out_channels = 256
    if fpn:
        if extra_blocks is None:
            extra_blocks = LastLevelMaxPool()
        if returned_layers is None:
            returned_layers = [num_stages - 2, num_stages - 1]
        if min(returned_layers) < 0 or max(returned_layers) >= num_stages:
            raise ValueError(f"Each returned layer should be in the range [0,{num_stages - 1}], got "
                             f"{returned_layers} ")
        return_layers = {f"{stage_indices[k]}": str(v) for v, k in enumerate(returned_layers)}
        in_channels_list = [features[stage_indices[i]].out_channels for i in returned_layers]
        return BackboneWithFPN(features, return_layers, in_channels_list, out_channels, extra_blocks=extra_blocks,
                               norm_layer=norm_layer)
    m = nn.Sequential(features, nn.Conv2d(features[-1].out_channels, out_channels, 1))
    m.out_channels = out_channels
    return m
