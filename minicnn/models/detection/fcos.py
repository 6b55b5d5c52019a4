"""FCOS (Tian et al. 2019, "FCOS: Fully Convolutional One-Stage Object
Detection") as torchvision builds ``fcos_resnet50_fpn``: the module
names, arguments, state_dict keys and outputs of
``torchvision.models.detection.fcos``.

Anchor-free: every cell of every FPN level (P3..P7, strides 8..128) is
one "anchor point" (a square anchor of the stride's size, only its
centre and size are used) that predicts class scores, the distances
(left, top, right, bottom) from its centre to the box's sides (ReLU,
in units of the stride, BoxLinearCoder) and a "centerness" logit.

* matching (training): a point belongs to a ground-truth box when its
  centre is inside the box, within ``center_sampling_radius`` x stride
  of the box's centre, and the longest of its four distances fits the
  level's range (stride x 4 .. stride x 8; the first level has no lower
  bound, the last no upper bound); among several boxes, the smallest
  one wins;
* loss: sigmoid focal loss of the classes, GIoU loss of the decoded
  boxes and binary cross entropy of the centerness, sqrt((min(l, r) /
  max(l, r)) (min(t, b) / max(t, b))), on the foreground points, each
  divided by the number of foreground points of the batch;
* inference: score sqrt(sigmoid(class) sigmoid(centerness)), then as
  RetinaNet: per level the top ``topk_candidates`` above
  ``score_thresh``, per-class NMS at ``nms_thresh``, the best
  ``detections_per_img``.

Head: 4 3x3 convs with GroupNorm(32) and ReLU per branch, shared by the
levels. Differences from torchvision: ``weights`` and
``weights_backbone`` must be None; bad input raises ValueError /
TypeError where torchvision asserts.
"""
import math
from functools import partial

import numpy

from ... import functional as F
from ... import nn
from ...backend import get_array_module
from ...ops import LastLevelP6P7, generalized_box_iou_loss, sigmoid_focal_loss
from ...tensor import Tensor
from ..registry import register_model
from ..resnet import resnet50
from . import _utils as det_utils
from .anchor_utils import AnchorGenerator
from .backbone_utils import _resnet_fpn_extractor, _validate_trainable_layers
from .retinanet import _per_anchor, postprocess_levels, split_levels
from .ssd import check_num_classes

__all__ = ["FCOS", "FCOSHead", "FCOSClassificationHead", "FCOSRegressionHead", "fcos_resnet50_fpn"]


def _tower(in_channels, num_convs, norm_layer):
    if norm_layer is None:
        norm_layer = partial(nn.GroupNorm, 32)
    layers = []
    for _ in range(num_convs):
        layers += [nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=1, padding=1), norm_layer(in_channels),
                   nn.ReLU()]
    conv = nn.Sequential(*layers)
    for layer in conv.children():
        if isinstance(layer, nn.Conv2d):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.constant_(layer.bias, 0)
    return conv


class FCOSClassificationHead(nn.Module):
    """Maps -> (N, A_total, num_classes) logits."""

    def __init__(self, in_channels, num_anchors, num_classes, num_convs=4, prior_probability=0.01, norm_layer=None):
        super().__init__()
        self.num_classes = num_classes
        self.num_anchors = num_anchors
        self.conv = _tower(in_channels, num_convs, norm_layer)
        self.cls_logits = nn.Conv2d(in_channels, num_anchors * num_classes, kernel_size=3, stride=1, padding=1)
        nn.init.normal_(self.cls_logits.weight, std=0.01)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_probability) / prior_probability))

    def forward(self, x):
        return F.cat([_per_anchor(self.cls_logits(self.conv(f)), self.num_classes) for f in x], dim=1)


class FCOSRegressionHead(nn.Module):
    """Maps -> ((N, A_total, 4) side distances (ReLU), (N, A_total, 1) centerness logits)."""

    def __init__(self, in_channels, num_anchors, num_convs=4, norm_layer=None):
        super().__init__()
        self.conv = _tower(in_channels, num_convs, norm_layer)
        self.bbox_reg = nn.Conv2d(in_channels, num_anchors * 4, kernel_size=3, stride=1, padding=1)
        self.bbox_ctrness = nn.Conv2d(in_channels, num_anchors * 1, kernel_size=3, stride=1, padding=1)
        for layer in (self.bbox_reg, self.bbox_ctrness):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, x):
        regression, ctrness = [], []
        for features in x:
            feature = self.conv(features)
            regression.append(_per_anchor(F.relu(self.bbox_reg(feature)), 4))
            ctrness.append(_per_anchor(self.bbox_ctrness(feature), 1))
        return F.cat(regression, dim=1), F.cat(ctrness, dim=1)


class FCOSHead(nn.Module):
    """The classification and regression heads, and the loss."""

    def __init__(self, in_channels, num_anchors, num_classes, num_convs=4):
        super().__init__()
        self.box_coder = det_utils.BoxLinearCoder(normalize_by_size=True)
        self.classification_head = FCOSClassificationHead(in_channels, num_anchors, num_classes, num_convs)
        self.regression_head = FCOSRegressionHead(in_channels, num_anchors, num_convs)

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs):
        cls_logits = head_outputs["cls_logits"]               # (N, A, C)
        bbox_regression = head_outputs["bbox_regression"]     # (N, A, 4)
        bbox_ctrness = head_outputs["bbox_ctrness"]           # (N, A, 1)
        det_utils.check_labels(targets, cls_logits.shape[-1], "FCOS")
        xp = get_array_module(cls_logits.data)
        gt_classes, gt_boxes = [], []
        for target, matched in zip(targets, matched_idxs):
            matched = matched.data
            labels, boxes = target["labels"].data, target["boxes"].data
            if len(labels) == 0:
                classes = xp.zeros(len(matched), dtype=labels.dtype)
                boxes_t = xp.zeros((len(matched), 4), dtype=boxes.dtype)
            else:
                classes = labels[matched.clip(min=0)]
                boxes_t = boxes[matched.clip(min=0)]
            classes[matched < 0] = -1
            gt_classes.append(classes)
            gt_boxes.append(boxes_t)
        gt_boxes, gt_classes = xp.stack(gt_boxes), xp.stack(gt_classes)
        anchors = xp.stack([a.data for a in anchors])
        foreground = gt_classes >= 0
        num_foreground = int(foreground.sum())

        cls_targets = xp.zeros(cls_logits.shape, dtype=cls_logits.dtype)
        cls_targets[foreground, gt_classes[foreground]] = 1.0
        loss_cls = sigmoid_focal_loss(cls_logits, Tensor._wrap(cls_targets), reduction="sum")

        pred_boxes = self.box_coder.decode(bbox_regression, Tensor._wrap(anchors))
        loss_bbox_reg = generalized_box_iou_loss(pred_boxes[foreground], Tensor._wrap(gt_boxes[foreground]),
                                                 reduction="sum")

        reg_targets = self.box_coder.encode(anchors, gt_boxes).data
        if len(reg_targets) == 0:
            ctrness_targets = xp.zeros(reg_targets.shape[:-1], dtype=reg_targets.dtype)
        else:
            left_right, top_bottom = reg_targets[:, :, [0, 2]], reg_targets[:, :, [1, 3]]
            # Background points give nan here (as in torchvision); only foreground ones are used.
            with numpy.errstate(invalid="ignore", divide="ignore"):
                ctrness_targets = xp.sqrt((left_right.min(axis=-1) / left_right.max(axis=-1))
                                          * (top_bottom.min(axis=-1) / top_bottom.max(axis=-1)))
        pred_ctrness = F.squeeze(bbox_ctrness, 2)
        loss_ctrness = F.binary_cross_entropy_with_logits(pred_ctrness[foreground],
                                                          Tensor._wrap(ctrness_targets[foreground]), reduction="sum")
        n = max(1, num_foreground)
        return {"classification": loss_cls / n, "bbox_regression": loss_bbox_reg / n, "bbox_ctrness": loss_ctrness / n}

    def forward(self, x):
        cls_logits = self.classification_head(x)
        bbox_regression, bbox_ctrness = self.regression_head(x)
        return {"cls_logits": cls_logits, "bbox_regression": bbox_regression, "bbox_ctrness": bbox_ctrness}


class FCOS(nn.Module):
    """The FCOS detector around ``backbone`` (with ``out_channels``), as
    the module docstring says; ``anchor_generator`` must give one anchor
    per location."""

    def __init__(self, backbone, num_classes, min_size=800, max_size=1333, image_mean=None, image_std=None,
                 anchor_generator=None, head=None, center_sampling_radius=1.5, score_thresh=0.2, nms_thresh=0.6,
                 detections_per_img=100, topk_candidates=1000, **kwargs):
        super().__init__()
        det_utils.check_backbone(backbone)
        self.backbone = backbone
        det_utils.check_anchor_generator(anchor_generator)
        if anchor_generator is None:
            anchor_sizes = ((8,), (16,), (32,), (64,), (128,))   # the strides of P3..P7
            anchor_generator = AnchorGenerator(anchor_sizes, ((1.0,),) * len(anchor_sizes))
        self.anchor_generator = anchor_generator
        if self.anchor_generator.num_anchors_per_location()[0] != 1:
            raise ValueError(f"anchor_generator.num_anchors_per_location()[0] should be 1 instead of "
                             f"{anchor_generator.num_anchors_per_location()[0]}")
        if head is None:
            head = FCOSHead(backbone.out_channels, anchor_generator.num_anchors_per_location()[0], num_classes)
        self.head = head
        self.box_coder = det_utils.BoxLinearCoder(normalize_by_size=True)
        self.transform = det_utils.imagenet_transform(min_size, max_size, image_mean, image_std, **kwargs)
        self.center_sampling_radius = center_sampling_radius
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.topk_candidates = topk_candidates

    def compute_loss(self, targets, head_outputs, anchors, num_anchors_per_level):
        matched_idxs = det_utils.match_anchors(anchors, targets, lambda anchors_per_image, boxes: Tensor._wrap(
            self._match(anchors_per_image.data, boxes.data, num_anchors_per_level)))
        return self.head.compute_loss(targets, head_outputs, anchors, matched_idxs)

    def _match(self, anchors, gt_boxes, num_anchors_per_level):
        """(A,) index of each anchor point's box, or -1 (module docstring)."""
        xp = get_array_module(anchors)
        gt_centers = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
        anchor_centers = (anchors[:, :2] + anchors[:, 2:]) / 2
        anchor_sizes = anchors[:, 2] - anchors[:, 0]
        match = (xp.abs(anchor_centers[:, None, :] - gt_centers[None, :, :]).max(axis=2)
                 < self.center_sampling_radius * anchor_sizes[:, None])
        x, y = anchor_centers[:, 0:1], anchor_centers[:, 1:2]
        x0, y0, x1, y1 = (gt_boxes[None, :, i] for i in range(4))
        dist = xp.stack([x - x0, y - y0, x1 - x, y1 - y], axis=2)     # (A, M, 4)
        match &= dist.min(axis=2) > 0
        lower = anchor_sizes * 4
        lower[:num_anchors_per_level[0]] = 0
        upper = anchor_sizes * 8
        upper[-num_anchors_per_level[-1]:] = float("inf")
        longest = dist.max(axis=2)
        match &= (longest > lower[:, None]) & (longest < upper[:, None])
        # Among the boxes a point falls into, the smallest wins.
        areas = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])
        score = match.astype(xp.float32) * (1e8 - areas[None, :])
        matched = xp.argmax(score, axis=1).astype(xp.int64)
        matched[score.max(axis=1) < 1e-5] = -1
        return matched

    def forward(self, images, targets=None):
        """Losses {"classification", "bbox_regression", "bbox_ctrness"}
        (training) or detections (eval)."""
        image_list, targets, original_image_sizes = det_utils.transform_inputs(self, images, targets)
        features = det_utils.features_list(self.backbone, image_list.tensors)
        head_outputs = self.head(features)
        anchors = self.anchor_generator(image_list, features)
        num_anchors_per_level = [f.shape[2] * f.shape[3] for f in features]
        if self.training:
            return self.compute_loss(targets, head_outputs, anchors, num_anchors_per_level)
        xp = get_array_module(head_outputs["cls_logits"].data)
        probs = F.sigmoid(head_outputs["cls_logits"].detach()).data
        ctrness = F.sigmoid(head_outputs["bbox_ctrness"].detach()).data
        scores = split_levels(xp.sqrt(probs * ctrness), features)
        codes = split_levels(head_outputs["bbox_regression"].data, features)
        level_anchors = [[a[0] for a in split_levels(anchor.data[None], features)] for anchor in anchors]
        detections = postprocess_levels(self, scores, codes, level_anchors, image_list.image_sizes,
                                        self.box_coder.decode)
        return self.transform.postprocess(detections, image_list.image_sizes, original_image_sizes)


@register_model
def fcos_resnet50_fpn(*, weights=None, progress=True, num_classes=None, weights_backbone=None,
                      trainable_backbone_layers=None, **kwargs):
    """FCOS, ResNet-50-FPN backbone (P3..P7, P6 from P5), 32.3M parameters
    in torchvision's table (frozen backbone batch norms; 32.32M + 53,120
    without pretrained weights). ``kwargs`` go to FCOS."""
    from .._layers import _check_weights

    _check_weights(weights, "fcos_resnet50_fpn")
    _check_weights(weights_backbone, "fcos_resnet50_fpn (weights_backbone)")
    num_classes = check_num_classes("fcos_resnet50_fpn", num_classes)
    trainable = _validate_trainable_layers(False, trainable_backbone_layers, 5, 3)
    backbone = _resnet_fpn_extractor(resnet50(norm_layer=nn.BatchNorm2d), trainable, returned_layers=[2, 3, 4],
                                     extra_blocks=LastLevelP6P7(256, 256))
    return FCOS(backbone, num_classes, **kwargs)
