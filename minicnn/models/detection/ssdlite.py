"""SSDlite (Sandler et al. 2018, "MobileNetV2", section 6.2; Howard et
al. 2019, "Searching for MobileNetV3") as torchvision builds
``ssdlite320_mobilenet_v3_large``: the module names, arguments and
state_dict keys of ``torchvision.models.detection.ssdlite``.

SSD (see ssd.py: the same matching, losses and post-processing) made
cheap: every 3x3 conv of the heads and of the extra blocks is depthwise
separable (a depthwise 3x3 with batch norm and ReLU6, then a 1x1), and
the backbone is MobileNetV3-Large with a halved tail ("reduced_tail",
when no pretrained backbone is used, as here). Six maps: C4 (output
stride 16, taken from inside the C4 block, after its expansion), the end
of the backbone (stride 32), and four extra blocks (1x1 conv, 3x3
depthwise stride 2, 1x1 conv) down to 1 x 1 at 320 x 320 input.
Default boxes: 6 per cell (aspect ratios 2 and 3), scales 0.2 to 0.95.
Batch norms use eps 0.001 and momentum 0.03; weights normal(0, 0.03).

Differences from torchvision: ``weights`` and ``weights_backbone`` must
be None (torchvision's default backbone weights are ImageNet's, with the
full tail); ``kwargs`` go to SSD only (torchvision also hands them to
the MobileNetV3 builder, which ignores what it does not know).
"""
from collections import OrderedDict
from functools import partial

from ... import nn
from ..mobilenetv3 import mobilenet_v3_large
from ..registry import register_model
from .._layers import Conv2dNormActivation
from . import _utils as det_utils
from .anchor_utils import DefaultBoxGenerator
from .backbone_utils import _mobilenet_stages, _validate_trainable_layers
from .ssd import SSD, SSDScoringHead, freeze_stages, ssd_builder_arguments

__all__ = ["SSDLiteHead", "SSDLiteClassificationHead", "SSDLiteRegressionHead", "SSDLiteFeatureExtractorMobileNet",
           "ssdlite320_mobilenet_v3_large"]


def _prediction_block(in_channels, out_channels, kernel_size, norm_layer):
    return nn.Sequential(
        Conv2dNormActivation(in_channels, in_channels, kernel_size=kernel_size, groups=in_channels,
                             norm_layer=norm_layer, activation_layer=nn.ReLU6),
        nn.Conv2d(in_channels, out_channels, 1),
    )


def _extra_block(in_channels, out_channels, norm_layer):
    mid = out_channels // 2
    return nn.Sequential(
        Conv2dNormActivation(in_channels, mid, kernel_size=1, norm_layer=norm_layer, activation_layer=nn.ReLU6),
        Conv2dNormActivation(mid, mid, kernel_size=3, stride=2, groups=mid, norm_layer=norm_layer,
                             activation_layer=nn.ReLU6),
        Conv2dNormActivation(mid, out_channels, kernel_size=1, norm_layer=norm_layer, activation_layer=nn.ReLU6),
    )


def _normal_init(conv):
    for layer in conv.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.normal_(layer.weight, mean=0.0, std=0.03)
            if layer.bias is not None:
                nn.init.constant_(layer.bias, 0.0)


class SSDLiteClassificationHead(SSDScoringHead):
    """Separable 3x3 prediction blocks to ``num_classes`` x anchors logits per map."""

    def __init__(self, in_channels, num_anchors, num_classes, norm_layer):
        cls_logits = nn.ModuleList()
        for channels, anchors in zip(in_channels, num_anchors):
            cls_logits.append(_prediction_block(channels, num_classes * anchors, 3, norm_layer))
        _normal_init(cls_logits)
        super().__init__(cls_logits, num_classes)


class SSDLiteRegressionHead(SSDScoringHead):
    """Separable 3x3 prediction blocks to 4 x anchors box codes per map."""

    def __init__(self, in_channels, num_anchors, norm_layer):
        bbox_reg = nn.ModuleList()
        for channels, anchors in zip(in_channels, num_anchors):
            bbox_reg.append(_prediction_block(channels, 4 * anchors, 3, norm_layer))
        _normal_init(bbox_reg)
        super().__init__(bbox_reg, 4)


class SSDLiteHead(nn.Module):
    """list of maps -> {"bbox_regression": (N, A, 4), "cls_logits": (N, A, num_classes)}."""

    def __init__(self, in_channels, num_anchors, num_classes, norm_layer):
        super().__init__()
        self.classification_head = SSDLiteClassificationHead(in_channels, num_anchors, num_classes, norm_layer)
        self.regression_head = SSDLiteRegressionHead(in_channels, num_anchors, norm_layer)

    def forward(self, x):
        return {"bbox_regression": self.regression_head(x), "cls_logits": self.classification_head(x)}


class SSDLiteFeatureExtractorMobileNet(nn.Module):
    """A MobileNet's ``features`` (``backbone``) split inside the block at
    ``c4_pos`` (after its expansion conv) plus four extra blocks:
    (N, 3, H, W) -> OrderedDict "0".."5"."""

    def __init__(self, backbone, c4_pos, norm_layer, width_mult=1.0, min_depth=16):
        super().__init__()
        if backbone[c4_pos].use_res_connect:
            raise ValueError("backbone[c4_pos].use_res_connect should be False")
        blocks = list(backbone)
        # torch's slice of a Sequential keeps the children's names ("1", "2", ...).
        c4_rest = OrderedDict(list(backbone[c4_pos].block.named_children())[1:])
        self.features = nn.Sequential(
            nn.Sequential(*blocks[:c4_pos], backbone[c4_pos].block[0]),         # up to C4's expansion
            nn.Sequential(nn.Sequential(c4_rest), *blocks[c4_pos + 1:]),        # the rest
        )

        def depth(d):
            return max(min_depth, int(d * width_mult))

        extra = nn.ModuleList([
            _extra_block(backbone[-1].out_channels, depth(512), norm_layer),
            _extra_block(depth(512), depth(256), norm_layer),
            _extra_block(depth(256), depth(256), norm_layer),
            _extra_block(depth(256), depth(128), norm_layer),
        ])
        _normal_init(extra)
        self.extra = extra

    def forward(self, x):
        output = []
        for block in list(self.features) + list(self.extra):
            x = block(x)
            output.append(x)
        return OrderedDict((str(i), v) for i, v in enumerate(output))


def _mobilenet_extractor(backbone, trainable_layers, norm_layer):
    features = backbone.features
    stage_indices = _mobilenet_stages(features)
    freeze_stages(features, stage_indices, trainable_layers)
    return SSDLiteFeatureExtractorMobileNet(features, stage_indices[-2], norm_layer)


@register_model
def ssdlite320_mobilenet_v3_large(*, weights=None, progress=True, num_classes=None, weights_backbone=None,
                                  trainable_backbone_layers=None, norm_layer=None, **kwargs):
    """SSDlite at 320 x 320 with a MobileNetV3-Large backbone, 3.4M
    parameters (91 classes). ``kwargs`` go to SSD (score_thresh 0.001,
    nms_thresh 0.55, detections_per_img 300, topk_candidates 300 by
    default; image_mean / image_std 0.5 map [0, 1] to [-1, 1])."""
    num_classes = ssd_builder_arguments("ssdlite320_mobilenet_v3_large", weights, weights_backbone, num_classes,
                                        kwargs)
    trainable_backbone_layers = _validate_trainable_layers(False, trainable_backbone_layers, 6, 6)
    if norm_layer is None:
        norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
    backbone = mobilenet_v3_large(norm_layer=norm_layer, reduced_tail=True)
    _normal_init(backbone)
    backbone = _mobilenet_extractor(backbone, trainable_backbone_layers, norm_layer)
    size = (320, 320)
    anchor_generator = DefaultBoxGenerator([[2, 3] for _ in range(6)], min_ratio=0.2, max_ratio=0.95)
    out_channels = det_utils.retrieve_out_channels(backbone, size)
    num_anchors = anchor_generator.num_anchors_per_location()
    if len(out_channels) != len(anchor_generator.aspect_ratios):
        raise ValueError(f"The length of the output channels from the backbone {len(out_channels)} do not match the "
                         f"length of the anchor generator aspect ratios {len(anchor_generator.aspect_ratios)}")
    defaults = {"score_thresh": 0.001, "nms_thresh": 0.55, "detections_per_img": 300, "topk_candidates": 300,
                "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
    return SSD(backbone, anchor_generator, size, num_classes,
               head=SSDLiteHead(out_channels, num_anchors, num_classes, norm_layer), **{**defaults, **kwargs})
