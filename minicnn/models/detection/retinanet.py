"""RetinaNet (Lin et al. 2017, "Focal Loss for Dense Object Detection")
as torchvision builds ``retinanet_resnet50_fpn`` and ``_v2``: the module
names, arguments, state_dict keys and outputs of
``torchvision.models.detection.retinanet``.

* backbone: ResNet-50, layer2..layer4 into a 256-channel FPN with P6
  and P7 (strides 8 to 128);
* anchors: 9 per cell (sizes 32 2^(l + k/3), aspect ratios 1:2, 1:1,
  2:1), matched to the ground truth by IoU (>= 0.5 foreground, < 0.4
  background, between ignored; each box keeps its best anchors);
* head, shared by all levels: 4 3x3 convs + ReLU (v2: with GroupNorm(32)
  and no conv bias), then per-anchor class logits (bias initialised so
  every score starts at ``prior_probability`` 0.01) and box codes;
* loss: sigmoid focal loss over the non-ignored anchors, and L1 on the
  codes of the foreground ones (v2: GIoU of the decoded boxes), each
  divided by the image's number of foreground anchors, averaged over
  images;
* inference: per level, the sigmoid scores above ``score_thresh``, at
  most ``topk_candidates`` of them, decoded and clipped; per-class NMS
  at ``nms_thresh``; the best ``detections_per_img``.

Differences from torchvision: ``weights`` and ``weights_backbone`` must
be None (so the backbone uses BatchNorm2d, all stages trainable, as
torchvision does without pretrained weights); bad input raises
ValueError / TypeError where torchvision asserts; the regression losses
are "l1", "smooth_l1" and "giou" (not "ciou" / "diou").
"""
import math
from functools import partial

from ... import functional as F
from ... import nn
from ...backend import get_array_module
from ...ops import LastLevelP6P7, box_iou, clip_boxes_to_image, sigmoid_focal_loss
from ...tensor import Tensor
from .._layers import Conv2dNormActivation
from ..registry import register_model
from ..resnet import resnet50
from . import _utils as det_utils
from .anchor_utils import AnchorGenerator
from .backbone_utils import _resnet_fpn_extractor, _validate_trainable_layers
from .ssd import check_num_classes

__all__ = ["RetinaNet", "RetinaNetHead", "RetinaNetClassificationHead", "RetinaNetRegressionHead",
           "retinanet_resnet50_fpn", "retinanet_resnet50_fpn_v2"]


def _default_anchorgen():
    anchor_sizes = tuple((x, int(x * 2 ** (1.0 / 3)), int(x * 2 ** (2.0 / 3))) for x in [32, 64, 128, 256, 512])
    return AnchorGenerator(anchor_sizes, ((0.5, 1.0, 2.0),) * len(anchor_sizes))


def _per_anchor(x, columns):
    """(N, A columns, H, W) -> (N, H W A, columns)."""
    n, _, h, w = x.shape
    return F.reshape(F.permute(F.reshape(x, (n, -1, columns, h, w)), (0, 3, 4, 1, 2)), (n, -1, columns))


def _tower(in_channels, norm_layer):
    conv = nn.Sequential(*[Conv2dNormActivation(in_channels, in_channels, norm_layer=norm_layer) for _ in range(4)])
    for layer in conv.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.normal_(layer.weight, std=0.01)
            if layer.bias is not None:
                nn.init.constant_(layer.bias, 0)
    return conv


class RetinaNetClassificationHead(nn.Module):
    """Maps -> (N, A_total, num_classes) logits."""

    def __init__(self, in_channels, num_anchors, num_classes, prior_probability=0.01, norm_layer=None):
        super().__init__()
        self.conv = _tower(in_channels, norm_layer)
        self.cls_logits = nn.Conv2d(in_channels, num_anchors * num_classes, kernel_size=3, stride=1, padding=1)
        nn.init.normal_(self.cls_logits.weight, std=0.01)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_probability) / prior_probability))
        self.num_classes = num_classes
        self.num_anchors = num_anchors

    def compute_loss(self, targets, head_outputs, matched_idxs):
        cls_logits = head_outputs["cls_logits"]
        det_utils.check_labels(targets, cls_logits.shape[-1], "RetinaNet")
        losses = []
        for i, (target, matched) in enumerate(zip(targets, matched_idxs)):
            matched = matched.data
            xp = get_array_module(matched)
            foreground = matched >= 0
            gt_classes = xp.zeros(cls_logits.shape[1:], dtype=cls_logits.dtype)
            gt_classes[foreground, target["labels"].data[matched[foreground]]] = 1.0
            valid = matched != det_utils.Matcher.BETWEEN_THRESHOLDS
            loss = sigmoid_focal_loss(cls_logits[i][valid], Tensor._wrap(gt_classes[valid]), reduction="sum")
            losses.append(loss / max(1, int(foreground.sum())))
        return sum(losses[1:], losses[0]) / len(targets)

    def forward(self, x):
        return F.cat([_per_anchor(self.cls_logits(self.conv(f)), self.num_classes) for f in x], dim=1)


class RetinaNetRegressionHead(nn.Module):
    """Maps -> (N, A_total, 4) box codes (BoxCoder weights 1, 1, 1, 1)."""

    def __init__(self, in_channels, num_anchors, norm_layer=None):
        super().__init__()
        self.conv = _tower(in_channels, norm_layer)
        self.bbox_reg = nn.Conv2d(in_channels, num_anchors * 4, kernel_size=3, stride=1, padding=1)
        nn.init.normal_(self.bbox_reg.weight, std=0.01)
        nn.init.zeros_(self.bbox_reg.bias)
        self.box_coder = det_utils.BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        self._loss_type = "l1"

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs):
        bbox_regression = head_outputs["bbox_regression"]
        losses = []
        for i, (target, anchors_per_image, matched) in enumerate(zip(targets, anchors, matched_idxs)):
            matched = matched.data
            xp = get_array_module(matched)
            foreground = xp.nonzero(matched >= 0)[0]
            loss = det_utils._box_loss(self._loss_type, self.box_coder, anchors_per_image.data[foreground],
                                       target["boxes"].data[matched[foreground]], bbox_regression[i][foreground])
            losses.append(loss / max(1, foreground.size))
        return sum(losses[1:], losses[0]) / max(1, len(targets))

    def forward(self, x):
        return F.cat([_per_anchor(self.bbox_reg(self.conv(f)), 4) for f in x], dim=1)


class RetinaNetHead(nn.Module):
    """The classification and regression heads."""

    def __init__(self, in_channels, num_anchors, num_classes, norm_layer=None):
        super().__init__()
        self.classification_head = RetinaNetClassificationHead(in_channels, num_anchors, num_classes,
                                                               norm_layer=norm_layer)
        self.regression_head = RetinaNetRegressionHead(in_channels, num_anchors, norm_layer=norm_layer)

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs):
        return {
            "classification": self.classification_head.compute_loss(targets, head_outputs, matched_idxs),
            "bbox_regression": self.regression_head.compute_loss(targets, head_outputs, anchors, matched_idxs),
        }

    def forward(self, x):
        return {"cls_logits": self.classification_head(x), "bbox_regression": self.regression_head(x)}


def postprocess_levels(model, scores, codes, anchors, image_shapes, decode):
    """The shared inference of RetinaNet and FCOS: per image and level,
    ``scores`` (list per level of (N, A_l, C) arrays) above
    model.score_thresh, the top model.topk_candidates, boxes from
    ``decode(codes_of_those, anchors_of_those)``, clipped; then per-class
    NMS and the best model.detections_per_img."""
    xp = get_array_module(scores[0])
    detections = []
    for index, image_shape in enumerate(image_shapes):
        image_boxes, image_scores, image_labels = [], [], []
        for scores_l, codes_l, anchors_l in zip(scores, codes, anchors[index]):
            num_classes = scores_l.shape[-1]
            flat = scores_l[index].reshape(-1)
            candidates = xp.nonzero(flat > model.score_thresh)[0]
            candidates = candidates[det_utils.top_candidates(flat[candidates], model.topk_candidates)]
            anchor_idxs = candidates // num_classes
            boxes = decode(Tensor._wrap(codes_l[index][anchor_idxs]), Tensor._wrap(anchors_l[anchor_idxs]))
            image_boxes.append(clip_boxes_to_image(boxes, image_shape).data)
            image_scores.append(flat[candidates])
            image_labels.append(candidates % num_classes)
        detections.append(det_utils.nms_detections(xp.concatenate(image_boxes), xp.concatenate(image_scores),
                                          xp.concatenate(image_labels).astype(xp.int64), model.nms_thresh,
                                          model.detections_per_img))
    return detections


def split_levels(array, features):
    """(N, A_total, ...) -> one array per level (A_l = H_l W_l x anchors per cell)."""
    hw = [f.shape[2] * f.shape[3] for f in features]
    per_cell = array.shape[1] // sum(hw)
    bounds = [0]
    for n in hw:
        bounds.append(bounds[-1] + n * per_cell)
    return [array[:, a:b] for a, b in zip(bounds[:-1], bounds[1:])]


class RetinaNet(nn.Module):
    """The RetinaNet detector around ``backbone`` (with ``out_channels``),
    as the module docstring says; images resized by ``min_size`` /
    ``max_size``; ``num_classes`` counts the background (unused class 0)."""

    def __init__(self, backbone, num_classes, min_size=800, max_size=1333, image_mean=None, image_std=None,
                 anchor_generator=None, head=None, proposal_matcher=None, score_thresh=0.05, nms_thresh=0.5,
                 detections_per_img=300, fg_iou_thresh=0.5, bg_iou_thresh=0.4, topk_candidates=1000, **kwargs):
        super().__init__()
        det_utils.check_backbone(backbone)
        det_utils.check_anchor_generator(anchor_generator)
        self.backbone = backbone
        if anchor_generator is None:
            anchor_generator = _default_anchorgen()
        self.anchor_generator = anchor_generator
        if head is None:
            head = RetinaNetHead(backbone.out_channels, anchor_generator.num_anchors_per_location()[0], num_classes)
        self.head = head
        if proposal_matcher is None:
            proposal_matcher = det_utils.Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.proposal_matcher = proposal_matcher
        self.box_coder = det_utils.BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        self.transform = det_utils.imagenet_transform(min_size, max_size, image_mean, image_std, **kwargs)
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.topk_candidates = topk_candidates

    def compute_loss(self, targets, head_outputs, anchors):
        matched_idxs = det_utils.match_anchors(
            anchors, targets, lambda anchors_per_image, boxes: self.proposal_matcher(box_iou(boxes, anchors_per_image)))
        return self.head.compute_loss(targets, head_outputs, anchors, matched_idxs)

    def forward(self, images, targets=None):
        """Losses {"classification", "bbox_regression"} (training) or
        detections (eval)."""
        image_list, targets, original_image_sizes = det_utils.transform_inputs(self, images, targets)
        features = det_utils.features_list(self.backbone, image_list.tensors)
        head_outputs = self.head(features)
        anchors = self.anchor_generator(image_list, features)
        if self.training:
            return self.compute_loss(targets, head_outputs, anchors)
        scores = split_levels(F.sigmoid(head_outputs["cls_logits"].detach()).data, features)
        codes = split_levels(head_outputs["bbox_regression"].data, features)
        level_anchors = [[a[0] for a in split_levels(anchor.data[None], features)] for anchor in anchors]
        detections = postprocess_levels(self, scores, codes, level_anchors, image_list.image_sizes,
                                        self.box_coder.decode_single)
        return self.transform.postprocess(detections, image_list.image_sizes, original_image_sizes)


def _retinanet_arguments(builder, weights, weights_backbone, num_classes, trainable_backbone_layers):
    from .._layers import _check_weights

    _check_weights(weights, builder)
    _check_weights(weights_backbone, builder + " (weights_backbone)")
    return (check_num_classes(builder, num_classes),
            _validate_trainable_layers(False, trainable_backbone_layers, 5, 3))


@register_model
def retinanet_resnet50_fpn(*, weights=None, progress=True, num_classes=None, weights_backbone=None,
                           trainable_backbone_layers=None, **kwargs):
    """RetinaNet, ResNet-50-FPN backbone, 34.0M parameters (91 classes).
    ``kwargs`` go to RetinaNet (min_size, max_size, score_thresh,
    nms_thresh, detections_per_img, fg_iou_thresh, bg_iou_thresh,
    topk_candidates, ...)."""
    num_classes, trainable = _retinanet_arguments("retinanet_resnet50_fpn", weights, weights_backbone, num_classes,
                                                  trainable_backbone_layers)
    backbone = _resnet_fpn_extractor(resnet50(norm_layer=nn.BatchNorm2d), trainable, returned_layers=[2, 3, 4],
                                     extra_blocks=LastLevelP6P7(256, 256))
    return RetinaNet(backbone, num_classes, **kwargs)


@register_model
def retinanet_resnet50_fpn_v2(*, weights=None, progress=True, num_classes=None, weights_backbone=None,
                              trainable_backbone_layers=None, **kwargs):
    """RetinaNet v2 (Li et al. 2022 recipe): P6 from C5, GroupNorm in the
    head, GIoU box loss; 38.2M parameters (91 classes)."""
    num_classes, trainable = _retinanet_arguments("retinanet_resnet50_fpn_v2", weights, weights_backbone,
                                                  num_classes, trainable_backbone_layers)
    backbone = _resnet_fpn_extractor(resnet50(), trainable, returned_layers=[2, 3, 4],
                                     extra_blocks=LastLevelP6P7(2048, 256))
    anchor_generator = _default_anchorgen()
    head = RetinaNetHead(backbone.out_channels, anchor_generator.num_anchors_per_location()[0], num_classes,
                         norm_layer=partial(nn.GroupNorm, 32))
    head.regression_head._loss_type = "giou"
    return RetinaNet(backbone, num_classes, anchor_generator=anchor_generator, head=head, **kwargs)
