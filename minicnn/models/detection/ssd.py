"""SSD (Liu et al. 2016, "SSD: Single Shot MultiBox Detector") as
torchvision builds ``ssd300_vgg16``: the module names, arguments, state_dict
keys and outputs of ``torchvision.models.detection.ssd``.

One network pass predicts, at each of several feature maps, a class
score vector and a box correction for every default box (anchor) of
every cell. Coarse maps see large objects, fine maps small ones.

* backbone: VGG-16 up to conv4_3 (output stride 8; its L2-normalised
  map, rescaled by a learnt per-channel weight initialised to 20, is the
  first output), then conv5 with the dilated fc6 and fc7 convs, then
  four extra blocks that halve the map each time: 6 maps for 300 x 300
  input (38, 19, 10, 5, 3, 1 cells).
* head: per map, a 3x3 conv to (classes x boxes) logits and one to
  (4 x boxes) box codes (BoxCoder weights 10, 10, 5, 5).
* training: each default box is matched to the ground truth (SSDMatcher,
  IoU 0.5); the loss is smooth L1 on the matched boxes' codes plus the
  cross entropy of the positives and of the hardest negatives, three
  negatives per positive (``positive_fraction`` 0.25), both divided by
  the number of positives. The mining is deterministic: negatives ranked
  by their loss, descending, ties in anchor order (a stable sort).
* inference: softmax scores; per class, those above ``score_thresh``,
  at most ``topk_candidates`` of them; per-class NMS at ``nms_thresh``;
  the best ``detections_per_img``.

Input: a list of (3, H, W) float images in [0, 1], each resized to
``size`` (300 x 300 here). Output: in training a dict of losses
{"bbox_regression", "classification"} (targets required: per image a
dict with "boxes" (K, 4) xyxy in pixels and int64 "labels" (K,)); in
eval a list of dicts {"boxes", "scores", "labels"}, boxes in the pixels
of the original image. Detections are computed without gradients.

Differences from torchvision: ``weights`` and ``weights_backbone`` must
be None (minicnn downloads nothing; torchvision's default backbone
weights are ImageNet's); bad input raises ValueError / TypeError where
torchvision asserts.
"""
import warnings
from collections import OrderedDict

from ... import functional as F
from ... import nn
from ...backend import get_array_module
from ...creation import ones
from ...ops import box_iou, clip_boxes_to_image
from ...tensor import Tensor
from ..registry import register_model
from ..vgg import vgg16
from . import _utils as det_utils
from .anchor_utils import DefaultBoxGenerator
from .backbone_utils import _validate_trainable_layers

__all__ = ["SSD", "SSDHead", "SSDScoringHead", "SSDClassificationHead", "SSDRegressionHead",
           "SSDFeatureExtractorVGG", "ssd300_vgg16"]


def _xavier_init(conv):
    for layer in conv.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.constant_(layer.bias, 0.0)


class SSDScoringHead(nn.Module):
    """One module per feature map (``module_list``) whose (N, A C, H, W)
    output becomes (N, H W A, C), C = ``num_columns``; the maps' results
    are concatenated along dim 1, in the anchors' order."""

    def __init__(self, module_list, num_columns):
        super().__init__()
        self.module_list = module_list
        self.num_columns = num_columns

    def forward(self, x):
        if len(x) != len(self.module_list):
            raise ValueError(f"{type(self).__name__}: {len(x)} feature maps for {len(self.module_list)} "
                             f"prediction layers")
        results = []
        for module, features in zip(self.module_list, x):
            r = module(features)
            n, _, h, w = r.shape
            r = F.permute(F.reshape(r, (n, -1, self.num_columns, h, w)), (0, 3, 4, 1, 2))
            results.append(F.reshape(r, (n, -1, self.num_columns)))
        return F.cat(results, dim=1)


class SSDClassificationHead(SSDScoringHead):
    """3x3 convs to ``num_classes`` x anchors logits per map."""

    def __init__(self, in_channels, num_anchors, num_classes):
        cls_logits = nn.ModuleList()
        for channels, anchors in zip(in_channels, num_anchors):
            cls_logits.append(nn.Conv2d(channels, num_classes * anchors, kernel_size=3, padding=1))
        _xavier_init(cls_logits)
        super().__init__(cls_logits, num_classes)


class SSDRegressionHead(SSDScoringHead):
    """3x3 convs to 4 x anchors box codes per map."""

    def __init__(self, in_channels, num_anchors):
        bbox_reg = nn.ModuleList()
        for channels, anchors in zip(in_channels, num_anchors):
            bbox_reg.append(nn.Conv2d(channels, 4 * anchors, kernel_size=3, padding=1))
        _xavier_init(bbox_reg)
        super().__init__(bbox_reg, 4)


class SSDHead(nn.Module):
    """list of maps -> {"bbox_regression": (N, A, 4), "cls_logits": (N, A, num_classes)}."""

    def __init__(self, in_channels, num_anchors, num_classes):
        super().__init__()
        self.classification_head = SSDClassificationHead(in_channels, num_anchors, num_classes)
        self.regression_head = SSDRegressionHead(in_channels, num_anchors)

    def forward(self, x):
        return {"bbox_regression": self.regression_head(x), "cls_logits": self.classification_head(x)}


class SSD(nn.Module):
    """The SSD detector around ``backbone`` (returns an OrderedDict of
    maps, or one map), ``anchor_generator`` (a DefaultBoxGenerator),
    images resized to ``size`` = (width, height), ``num_classes``
    (background included), as the module docstring says; ``head`` None
    builds an SSDHead for the backbone's maps."""

    def __init__(self, backbone, anchor_generator, size, num_classes, image_mean=None, image_std=None, head=None,
                 score_thresh=0.01, nms_thresh=0.45, detections_per_img=200, iou_thresh=0.5, topk_candidates=400,
                 positive_fraction=0.25, **kwargs):
        super().__init__()
        if not 0.0 < positive_fraction <= 1.0:
            raise ValueError(f"SSD: positive_fraction must be in (0, 1], got {positive_fraction}")
        self.backbone = backbone
        self.anchor_generator = anchor_generator
        self.box_coder = det_utils.BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
        if head is None:
            if hasattr(backbone, "out_channels"):
                out_channels = backbone.out_channels
            else:
                out_channels = det_utils.retrieve_out_channels(backbone, size)
            if len(out_channels) != len(anchor_generator.aspect_ratios):
                raise ValueError(f"The length of the output channels from the backbone ({len(out_channels)}) do not "
                                 f"match the length of the anchor generator aspect ratios "
                                 f"({len(anchor_generator.aspect_ratios)})")
            head = SSDHead(out_channels, anchor_generator.num_anchors_per_location(), num_classes)
        self.head = head
        self.proposal_matcher = det_utils.SSDMatcher(iou_thresh)
        self.transform = det_utils.imagenet_transform(min(size), max(size), image_mean, image_std, size_divisible=1,
                                                      fixed_size=size, **kwargs)
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.topk_candidates = topk_candidates
        self.neg_to_pos_ratio = (1.0 - positive_fraction) / positive_fraction

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs):
        """{"bbox_regression", "classification"}, as the module docstring says."""
        bbox_regression = head_outputs["bbox_regression"]
        cls_logits = head_outputs["cls_logits"]
        det_utils.check_labels(targets, cls_logits.shape[-1], "SSD")
        xp = get_array_module(cls_logits.data)
        num_foreground = 0
        bbox_loss = []
        cls_targets = xp.zeros(cls_logits.shape[:2], dtype=xp.int64)
        for i, (target, anchors_per_image, matched) in enumerate(zip(targets, anchors, matched_idxs)):
            matched = matched.data
            foreground = xp.nonzero(matched >= 0)[0]
            matched_gt = matched[foreground]
            num_foreground += foreground.size
            gt_boxes = target["boxes"].data[matched_gt]
            target_regression = self.box_coder.encode_single(gt_boxes, anchors_per_image.data[foreground])
            bbox_loss.append(F.smooth_l1_loss(bbox_regression[i][foreground], target_regression, reduction="sum"))
            cls_targets[i, foreground] = target["labels"].data[matched_gt]
        num_classes = cls_logits.shape[-1]
        cls_loss = F.reshape(F.cross_entropy(F.reshape(cls_logits, (-1, num_classes)),
                                             Tensor._wrap(cls_targets.reshape(-1)), reduction="none"),
                             cls_targets.shape)
        # Hard negative mining: rank the negatives by their loss (positives
        # last), keep the neg_to_pos_ratio x (number of positives) first.
        foreground_mask = cls_targets > 0
        num_negative = self.neg_to_pos_ratio * foreground_mask.sum(axis=1, keepdims=True)
        negative_loss = cls_loss.data.copy()
        negative_loss[foreground_mask] = -xp.inf
        order = xp.argsort(-negative_loss, axis=1, kind="stable")
        rank = xp.argsort(order, axis=1, kind="stable")
        background_mask = rank < num_negative
        n = max(1, num_foreground)
        return {
            "bbox_regression": F.stack(bbox_loss).sum() / n,
            "classification": (cls_loss[foreground_mask].sum() + cls_loss[background_mask].sum()) / n,
        }

    def forward(self, images, targets=None):
        """Losses (training, with ``targets``) or detections (eval), as the
        module docstring says."""
        image_list, targets, original_image_sizes = det_utils.transform_inputs(self, images, targets)
        features = det_utils.features_list(self.backbone, image_list.tensors)
        head_outputs = self.head(features)
        anchors = self.anchor_generator(image_list, features)
        if self.training:
            matched_idxs = det_utils.match_anchors(anchors, targets, lambda anchors_per_image, boxes: (
                self.proposal_matcher(box_iou(boxes, anchors_per_image))))
            return self.compute_loss(targets, head_outputs, anchors, matched_idxs)
        detections = self.postprocess_detections(head_outputs, anchors, image_list.image_sizes)
        return self.transform.postprocess(detections, image_list.image_sizes, original_image_sizes)

    def postprocess_detections(self, head_outputs, image_anchors, image_shapes):
        """Per image {"boxes", "scores", "labels"} in the resized image's pixels."""
        bbox_regression = head_outputs["bbox_regression"].data
        pred_scores = F.softmax(head_outputs["cls_logits"].detach(), dim=-1).data
        xp = get_array_module(pred_scores)
        num_classes = pred_scores.shape[-1]
        detections = []
        for codes, scores, anchors, image_shape in zip(bbox_regression, pred_scores, image_anchors, image_shapes):
            boxes = clip_boxes_to_image(self.box_coder.decode_single(Tensor._wrap(codes), anchors), image_shape).data
            image_boxes, image_scores, image_labels = [], [], []
            for label in range(1, num_classes):
                score = scores[:, label]
                keep = xp.nonzero(score > self.score_thresh)[0]
                keep = keep[det_utils.top_candidates(score[keep], self.topk_candidates)]
                image_boxes.append(boxes[keep])
                image_scores.append(score[keep])
                image_labels.append(xp.full(keep.shape, label, dtype=xp.int64))
            detections.append(det_utils.nms_detections(xp.concatenate(image_boxes), xp.concatenate(image_scores),
                                              xp.concatenate(image_labels), self.nms_thresh, self.detections_per_img))
        return detections


def _l2_normalize(x, eps=1e-12):
    """x / max(||x||_2 over channels, eps): torch.nn.functional.normalize(x)."""
    norm = F.sqrt(F.sum(x * x, dim=1, keepdim=True))
    return x / F.clamp(norm, min=eps)


class SSDFeatureExtractorVGG(nn.Module):
    """VGG ``backbone`` (its ``features`` Sequential) cut and extended into
    SSD's maps: conv4_3 (L2-normalised, times ``scale_weight``), fc7, and
    the extra blocks (one more, conv12_2, with ``highres``, for SSD512):
    (N, 3, H, W) -> OrderedDict "0".."5" (or "6")."""

    def __init__(self, backbone, highres):
        super().__init__()
        pools = [i for i, layer in enumerate(backbone) if isinstance(layer, nn.MaxPool2d)]
        if len(pools) != 5:
            raise ValueError(f"SSDFeatureExtractorVGG: expected VGG features with 5 max pools, got {len(pools)}")
        _, _, maxpool3_pos, maxpool4_pos, _ = pools
        # Ceil mode keeps 75 -> 38 at 300 x 300 (conv4_3's map of the paper).
        backbone[maxpool3_pos].ceil_mode = True
        self.scale_weight = nn.Parameter(ones(512) * 20)
        self.features = nn.Sequential(*list(backbone)[:maxpool4_pos])
        extra = nn.ModuleList([
            nn.Sequential(nn.Conv2d(1024, 256, kernel_size=1), nn.ReLU(inplace=True),
                          nn.Conv2d(256, 512, kernel_size=3, padding=1, stride=2), nn.ReLU(inplace=True)),
            nn.Sequential(nn.Conv2d(512, 128, kernel_size=1), nn.ReLU(inplace=True),
                          nn.Conv2d(128, 256, kernel_size=3, padding=1, stride=2), nn.ReLU(inplace=True)),
            nn.Sequential(nn.Conv2d(256, 128, kernel_size=1), nn.ReLU(inplace=True),
                          nn.Conv2d(128, 256, kernel_size=3), nn.ReLU(inplace=True)),
            nn.Sequential(nn.Conv2d(256, 128, kernel_size=1), nn.ReLU(inplace=True),
                          nn.Conv2d(128, 256, kernel_size=3), nn.ReLU(inplace=True)),
        ])
        if highres:
            extra.append(nn.Sequential(nn.Conv2d(256, 128, kernel_size=1), nn.ReLU(inplace=True),
                                       nn.Conv2d(128, 256, kernel_size=4), nn.ReLU(inplace=True)))
        _xavier_init(extra)
        fc = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=False),   # pool5, stride 1
            nn.Conv2d(512, 1024, kernel_size=3, padding=6, dilation=6),           # fc6, dilated
            nn.ReLU(inplace=True),
            nn.Conv2d(1024, 1024, kernel_size=1),                                 # fc7
            nn.ReLU(inplace=True),
        )
        _xavier_init(fc)
        extra.insert(0, nn.Sequential(*list(backbone)[maxpool4_pos:-1], fc))   # conv5_x, without VGG's pool5
        self.extra = extra

    def forward(self, x):
        x = self.features(x)
        output = [F.reshape(self.scale_weight, (1, -1, 1, 1)) * _l2_normalize(x)]
        for block in self.extra:
            x = block(x)
            output.append(x)
        return OrderedDict((str(i), v) for i, v in enumerate(output))


def _vgg_extractor(backbone, highres, trainable_layers):
    features = backbone.features
    stage_indices = [0] + [i for i, b in enumerate(features) if isinstance(b, nn.MaxPool2d)][:-1]
    freeze_stages(features, stage_indices, trainable_layers)
    return SSDFeatureExtractorVGG(features, highres)


def freeze_stages(features, stage_indices, trainable_layers):
    """Stop the gradients of ``features``' blocks (a Sequential) before its
    last ``trainable_layers`` stages, which start at ``stage_indices``; all
    of them for 0."""
    num_stages = len(stage_indices)
    if not 0 <= trainable_layers <= num_stages:
        raise ValueError(f"trainable_layers should be in the range [0, {num_stages}], instead got {trainable_layers}")
    freeze_before = len(features) if trainable_layers == 0 else stage_indices[num_stages - trainable_layers]
    for block in list(features)[:freeze_before]:
        for parameter in block.parameters():
            parameter.requires_grad_(False)


def ssd_builder_arguments(builder, weights, weights_backbone, num_classes, kwargs):
    """What an SSD builder does first: refuse ``weights`` and
    ``weights_backbone`` (none are shipped), drop a ``size`` from
    ``kwargs`` with torchvision's warning (the size is fixed), and return
    ``num_classes`` (``check_num_classes``)."""
    from .._layers import _check_weights

    _check_weights(weights, builder)
    _check_weights(weights_backbone, f"{builder} (weights_backbone)")
    if "size" in kwargs:
        warnings.warn("The size of the model is already fixed; ignoring the parameter.")
        kwargs.pop("size")
    return check_num_classes(builder, num_classes)


def check_num_classes(builder, num_classes):
    """torchvision's default (91: COCO's category ids and the background)
    or a positive int."""
    if num_classes is None:
        return 91
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"{builder}: num_classes must be a positive int, got {num_classes!r}")
    return num_classes


@register_model
def ssd300_vgg16(*, weights=None, progress=True, num_classes=None, weights_backbone=None,
                 trainable_backbone_layers=None, **kwargs):
    """SSD300 with a VGG-16 backbone, 35.6M parameters (91 classes).
    ``kwargs`` go to SSD (score_thresh, nms_thresh, detections_per_img,
    iou_thresh, topk_candidates, positive_fraction, image_mean, image_std);
    ``size`` is ignored with a warning (fixed at 300 x 300)."""
    num_classes = ssd_builder_arguments("ssd300_vgg16", weights, weights_backbone, num_classes, kwargs)
    trainable_backbone_layers = _validate_trainable_layers(False, trainable_backbone_layers, 5, 4)
    backbone = _vgg_extractor(vgg16(), False, trainable_backbone_layers)
    anchor_generator = DefaultBoxGenerator([[2], [2, 3], [2, 3], [2, 3], [2], [2]],
                                           scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
                                           steps=[8, 16, 32, 64, 100, 300])
    # The backbone's weights were trained on 0..255 images minus the mean.
    defaults = {"image_mean": [0.48235, 0.45882, 0.40784], "image_std": [1.0 / 255.0, 1.0 / 255.0, 1.0 / 255.0]}
    return SSD(backbone, anchor_generator, (300, 300), num_classes, **{**defaults, **kwargs})
