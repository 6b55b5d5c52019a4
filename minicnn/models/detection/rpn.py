"""The region proposal network of Faster R-CNN (Ren et al. 2015), as
torchvision's ``torchvision.models.detection.rpn``: module names,
arguments, state_dict keys and outputs.

The first stage of a two-stage detector proposes boxes that may hold an
object, whatever its class; the second stage (roi_heads) classifies and
refines them.

* ``RPNHead``: on every feature map, ``conv_depth`` 3x3 convs + ReLU,
  then a 1x1 conv to one objectness logit per anchor (A per cell) and one
  to 4 box codes per anchor (BoxCoder weights 1, 1, 1, 1).
* proposals: the codes decoded against the anchors; per level the
  ``pre_nms_top_n`` most object-like anchors; clipped to the image, boxes
  under 1e-3 pixels dropped, sigmoid scores under ``score_thresh``
  dropped; NMS at ``nms_thresh`` within each level; the best
  ``post_nms_top_n`` kept. The top-n values are dicts {"training",
  "testing"}: the mode picks one. Proposals carry no gradient.
* loss (training): each anchor is matched to the ground truth by IoU
  (>= ``fg_iou_thresh`` object, < ``bg_iou_thresh`` background, between
  ignored; each box keeps its best anchors). A random sample of at most
  ``batch_size_per_image`` anchors per image, at most
  ``positive_fraction`` of them objects (BalancedPositiveNegativeSampler)
  gives "loss_objectness" (binary cross entropy, mean over the sample)
  and "loss_rpn_box_reg" (smooth L1, beta 1/9, over the sampled objects,
  divided by the sample size).

Differences from torchvision: the sampler draws its permutations from
minicnn's generator (``mc.manual_seed``), so the same seed samples other
anchors than torchvision; the top-n ranking is a stable sort (ties in
anchor order), where torch.topk leaves the order of ties unspecified.
"""
from ... import functional as F
from ... import nn
from ...backend import get_array_module
from ...ops import batched_nms, box_iou, remove_small_boxes
from ...tensor import Tensor
from .._layers import Conv2dNormActivation
from . import _utils as det_utils

__all__ = ["RPNHead", "RegionProposalNetwork", "concat_box_prediction_layers"]


class RPNHead(nn.Module):
    """forward(list of L maps (N, in_channels, H_l, W_l)) -> (objectness,
    codes): lists of L maps (N, A, H_l, W_l) and (N, 4 A, H_l, W_l), with
    A = ``num_anchors`` per cell."""

    def __init__(self, in_channels, num_anchors, conv_depth=1):
        super().__init__()
        self.conv = nn.Sequential(*[Conv2dNormActivation(in_channels, in_channels, kernel_size=3, norm_layer=None)
                                    for _ in range(conv_depth)])
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, kernel_size=1, stride=1)
        self.bbox_pred = nn.Conv2d(in_channels, num_anchors * 4, kernel_size=1, stride=1)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.01)
                if layer.bias is not None:
                    nn.init.constant_(layer.bias, 0)

    def forward(self, x):
        logits, bbox_reg = [], []
        for feature in x:
            t = self.conv(feature)
            logits.append(self.cls_logits(t))
            bbox_reg.append(self.bbox_pred(t))
        return logits, bbox_reg


def _per_anchor(layer, columns):
    """(N, A columns, H, W) -> (N, H W A, columns): the anchors' order."""
    n, _, h, w = layer.shape
    return F.reshape(F.permute(F.reshape(layer, (n, -1, columns, h, w)), (0, 3, 4, 1, 2)), (n, -1, columns))


def concat_box_prediction_layers(box_cls, box_regression):
    """Per-level maps (N, A C, H, W) and (N, 4 A, H, W) -> (N sum_l H_l W_l
    A, C) and (N sum_l H_l W_l A, 4), image-major, then in the anchors'
    order (level, position, cell)."""
    classes, codes = [], []
    for cls_level, reg_level in zip(box_cls, box_regression):
        a = reg_level.shape[1] // 4
        classes.append(_per_anchor(cls_level, cls_level.shape[1] // a))
        codes.append(_per_anchor(reg_level, 4))
    box_cls = F.cat(classes, dim=1)
    return F.reshape(box_cls, (-1, box_cls.shape[-1])), F.reshape(F.cat(codes, dim=1), (-1, 4))


class RegionProposalNetwork(nn.Module):
    """forward(images: ImageList, features: dict of maps, targets=None) ->
    (boxes, losses): per image a (P_i, 4) Tensor of proposals, and the
    losses {"loss_objectness", "loss_rpn_box_reg"} in training ({} in
    eval), as the module docstring says."""

    def __init__(self, anchor_generator, head, fg_iou_thresh, bg_iou_thresh, batch_size_per_image,
                 positive_fraction, pre_nms_top_n, post_nms_top_n, nms_thresh, score_thresh=0.0):
        super().__init__()
        for name, value in (("pre_nms_top_n", pre_nms_top_n), ("post_nms_top_n", post_nms_top_n)):
            if not isinstance(value, dict) or set(value) != {"training", "testing"}:
                raise ValueError(f"RegionProposalNetwork: {name} must be a dict with the keys 'training' and "
                                 f"'testing', got {value!r}")
        self.anchor_generator = anchor_generator
        self.head = head
        self.box_coder = det_utils.BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        self.box_similarity = box_iou
        self.proposal_matcher = det_utils.Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.fg_bg_sampler = det_utils.BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self._pre_nms_top_n = pre_nms_top_n
        self._post_nms_top_n = post_nms_top_n
        self.nms_thresh = nms_thresh
        self.score_thresh = score_thresh
        self.min_size = 1e-3

    def pre_nms_top_n(self):
        return self._pre_nms_top_n["training" if self.training else "testing"]

    def post_nms_top_n(self):
        return self._post_nms_top_n["training" if self.training else "testing"]

    def assign_targets_to_anchors(self, anchors, targets):
        """Per image: labels (A,) 1.0 object / 0.0 background / -1.0 ignored,
        and the matched ground-truth box of every anchor (A, 4), as arrays."""
        labels, matched_gt_boxes = [], []
        for anchors_per_image, target in zip(anchors, targets):
            a = anchors_per_image.data
            xp = get_array_module(a)
            gt_boxes = target["boxes"].data
            if gt_boxes.shape[0] == 0:
                matched_gt_boxes.append(xp.zeros(a.shape, dtype=a.dtype))
                labels.append(xp.zeros(a.shape[0], dtype=a.dtype))
                continue
            matched = self.proposal_matcher(self.box_similarity(target["boxes"], anchors_per_image)).data
            matched_gt_boxes.append(gt_boxes[xp.maximum(matched, 0)].astype(a.dtype))
            label = (matched >= 0).astype(a.dtype)
            label[matched == self.proposal_matcher.BELOW_LOW_THRESHOLD] = 0.0
            label[matched == self.proposal_matcher.BETWEEN_THRESHOLDS] = -1.0
            labels.append(label)
        return labels, matched_gt_boxes

    def _get_top_n_idx(self, objectness, num_anchors_per_level):
        """(N, k) indices of the ``pre_nms_top_n`` best anchors of each level
        of each image, level by level, best first within a level."""
        xp = get_array_module(objectness)
        picks, offset = [], 0
        for n in num_anchors_per_level:
            level = objectness[:, offset:offset + n]
            k = min(self.pre_nms_top_n(), n)
            order = xp.stack([det_utils.top_candidates(row, k) for row in level]).reshape(level.shape[0], k)
            picks.append(order + offset)
            offset += n
        return xp.concatenate(picks, axis=1)

    def filter_proposals(self, proposals, objectness, image_shapes, num_anchors_per_level):
        """Proposals (N, A, 4) and objectness logits (N A, 1), arrays -> per
        image (boxes (P_i, 4), scores (P_i,)) Tensors, as the module
        docstring says."""
        xp = get_array_module(proposals)
        num_images = proposals.shape[0]
        objectness = objectness.reshape(num_images, -1)
        levels = xp.concatenate([xp.full(n, i, dtype=xp.int64) for i, n in enumerate(num_anchors_per_level)])
        top = self._get_top_n_idx(objectness, num_anchors_per_level)
        rows = xp.arange(num_images)[:, None]
        objectness, proposals, levels = objectness[rows, top], proposals[rows, top], levels[top]
        scores_all = 1.0 / (1.0 + xp.exp(-objectness))
        final_boxes, final_scores = [], []
        for boxes, scores, lvl, (height, width) in zip(proposals, scores_all, levels, image_shapes):
            boxes = boxes.copy()
            boxes[:, 0::2] = xp.clip(boxes[:, 0::2], 0, width)
            boxes[:, 1::2] = xp.clip(boxes[:, 1::2], 0, height)
            keep = remove_small_boxes(Tensor._wrap(boxes), self.min_size).data
            boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
            keep = xp.nonzero(scores >= self.score_thresh)[0]
            boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
            keep = batched_nms(Tensor._wrap(boxes), Tensor._wrap(scores), Tensor._wrap(lvl), self.nms_thresh).data
            keep = keep[:self.post_nms_top_n()]
            final_boxes.append(Tensor._wrap(boxes[keep]))
            final_scores.append(Tensor._wrap(scores[keep]))
        return final_boxes, final_scores

    def compute_loss(self, objectness, pred_bbox_deltas, labels, regression_targets):
        """(objectness_loss, box_loss) over the sampled anchors; ``labels``
        and ``regression_targets`` per image, arrays."""
        sampled_pos, sampled_neg = self.fg_bg_sampler(labels)
        xp = get_array_module(labels[0])
        pos = xp.nonzero(xp.concatenate([p.data for p in sampled_pos]))[0]
        neg = xp.nonzero(xp.concatenate([n.data for n in sampled_neg]))[0]
        sampled = xp.concatenate([pos, neg])
        labels = xp.concatenate(labels)
        regression_targets = xp.concatenate(regression_targets)
        box_loss = F.smooth_l1_loss(pred_bbox_deltas[pos], Tensor._wrap(regression_targets[pos]), beta=1 / 9,
                                    reduction="sum") / sampled.size
        objectness_loss = F.binary_cross_entropy_with_logits(F.flatten(objectness)[sampled],
                                                             Tensor._wrap(labels[sampled]))
        return objectness_loss, box_loss

    def forward(self, images, features, targets=None):
        features = list(features.values())
        objectness, pred_bbox_deltas = self.head(features)
        anchors = self.anchor_generator(images, features)
        num_images = len(anchors)
        num_anchors_per_level = [o.shape[1] * o.shape[2] * o.shape[3] for o in objectness]
        objectness, pred_bbox_deltas = concat_box_prediction_layers(objectness, pred_bbox_deltas)
        proposals = self.box_coder.decode(pred_bbox_deltas.detach(), anchors)
        proposals = proposals.data.reshape(num_images, -1, 4)
        boxes, _ = self.filter_proposals(proposals, objectness.data, images.image_sizes, num_anchors_per_level)
        losses = {}
        if self.training:
            if targets is None:
                raise ValueError("RegionProposalNetwork: targets should not be None in training mode")
            labels, matched_gt_boxes = self.assign_targets_to_anchors(anchors, targets)
            # An image without boxes has no objects to regress to (and the
            # codes of its zero boxes would be log(0)).
            regression_targets = [self.box_coder.encode_single(Tensor._wrap(g), a).data if t["boxes"].shape[0]
                                  else g for g, a, t in zip(matched_gt_boxes, anchors, targets)]
            loss_objectness, loss_rpn_box_reg = self.compute_loss(objectness, pred_bbox_deltas, labels,
                                                                  regression_targets)
            losses = {"loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_rpn_box_reg}
        return boxes, losses
