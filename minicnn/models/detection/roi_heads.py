"""The second stage of the R-CNN detectors, as torchvision's
``torchvision.models.detection.roi_heads``: module names, arguments,
state_dict keys and outputs.

``RoIHeads`` takes the RPN's proposals and the feature maps and, per
proposal, pools a fixed-size feature (MultiScaleRoIAlign), then runs
up to three branches:

* box (always): ``box_head`` (TwoMLPHead, or FastRCNNConvFCHead for the
  v2 models) and ``FastRCNNPredictor``: class logits (C) and per-class
  box codes (4 C, BoxCoder weights ``bbox_reg_weights``, default 10, 10,
  5, 5). Training: the ground-truth boxes are added to the proposals,
  each proposal matched by IoU (>= ``fg_iou_thresh`` to its box's class,
  < ``bg_iou_thresh`` background), and a random sample of at most
  ``batch_size_per_image`` (``positive_fraction`` of them objects) gives
  ``fastrcnn_loss``: cross entropy, and smooth L1 (beta 1/9) of the true
  class's codes of the objects divided by the sample size. Eval
  (``postprocess_detections``): softmax scores; every (proposal, class
  >= 1) pair is a candidate box, clipped; those scoring over
  ``score_thresh``, over 1e-2 pixels wide and high, survive per-class NMS
  at ``nms_thresh``; the best ``detections_per_img``.
* mask (Mask R-CNN): 14x14 features of the objects (training) or the
  detections (eval) through ``MaskRCNNHeads`` (3x3 convs) and
  ``MaskRCNNPredictor`` (a 2x2 stride-2 transposed conv, ReLU, 1x1 conv to
  C mask logits of 28x28). ``maskrcnn_loss``: the binary cross entropy of
  the true class's logits against the ground-truth mask cut out along the
  proposal and resized by roi_align. Eval: the sigmoid of the detected
  class's mask, pasted into the image by ``paste_masks_in_image``.
* keypoint (Keypoint R-CNN): 14x14 features through ``KeypointRCNNHeads``
  (eight 3x3 convs of 512) and ``KeypointRCNNPredictor`` (a 4x4 stride-2
  transposed conv, then x2 bilinear upsampling: K heatmaps of 56x56).
  ``keypointrcnn_loss``: cross entropy over the 56 x 56 cells of each
  visible keypoint inside its proposal. Eval (``heatmaps_to_keypoints``):
  each heatmap resized (bicubic) to the box's size in pixels; its argmax
  cell's centre is the keypoint, its value the keypoint's score.

Matching and sampling are integer work on arrays; proposals carry no
gradient (as in torchvision). Differences from torchvision: the sampler
draws its permutations from minicnn's generator (``mc.manual_seed``);
bad input raises ValueError / TypeError where torchvision asserts; the
predicted keypoints and their scores are float32, as torchvision's.
"""
from collections import OrderedDict

import numpy

from ... import functional as F
from ... import nn
from ...backend import get_array_module
from ...ops import batched_nms, box_iou, remove_small_boxes, roi_align
from ...tensor import Tensor
from .._layers import Conv2dNormActivation
from . import _utils as det_utils

__all__ = ["RoIHeads", "TwoMLPHead", "FastRCNNConvFCHead", "FastRCNNPredictor", "MaskRCNNHeads",
           "MaskRCNNPredictor", "KeypointRCNNHeads", "KeypointRCNNPredictor", "fastrcnn_loss", "maskrcnn_loss",
           "maskrcnn_inference", "keypointrcnn_loss", "keypointrcnn_inference", "heatmaps_to_keypoints",
           "paste_masks_in_image"]


class TwoMLPHead(nn.Module):
    """(R, C, 7, 7) pooled features -> (R, ``representation_size``): two
    fully connected layers with ReLU."""

    def __init__(self, in_channels, representation_size):
        super().__init__()
        self.fc6 = nn.Linear(in_channels, representation_size)
        self.fc7 = nn.Linear(representation_size, representation_size)

    def forward(self, x):
        x = F.flatten(x, 1)
        return F.relu(self.fc7(F.relu(self.fc6(x))))


class FastRCNNConvFCHead(nn.Sequential):
    """The v2 box head: ``input_size`` = (C, H, W); a 3x3 conv-norm-ReLU
    per entry of ``conv_layers``, a flatten, a Linear + ReLU per entry of
    ``fc_layers``."""

    def __init__(self, input_size, conv_layers, fc_layers, norm_layer=None):
        in_channels, in_height, in_width = input_size
        blocks, previous = [], in_channels
        for channels in conv_layers:
            blocks.append(Conv2dNormActivation(previous, channels, norm_layer=norm_layer))
            previous = channels
        blocks.append(nn.Flatten())
        previous = previous * in_height * in_width
        for features in fc_layers:
            blocks.append(nn.Linear(previous, features))
            blocks.append(nn.ReLU(inplace=True))
            previous = features
        super().__init__(*blocks)
        _kaiming_convs(self)


def _kaiming_convs(module):
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


class FastRCNNPredictor(nn.Module):
    """(R, in_channels) (or (R, in_channels, 1, 1)) -> (class logits
    (R, num_classes), box codes (R, 4 num_classes))."""

    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.cls_score = nn.Linear(in_channels, num_classes)
        self.bbox_pred = nn.Linear(in_channels, num_classes * 4)

    def forward(self, x):
        if x.ndim == 4 and tuple(x.shape[2:]) != (1, 1):
            raise ValueError(f"FastRCNNPredictor: x has the wrong shape, expecting the last two dimensions to be "
                             f"[1,1] instead of {list(x.shape[2:])}")
        x = F.flatten(x, 1)
        return self.cls_score(x), self.bbox_pred(x)


class MaskRCNNHeads(nn.Sequential):
    """A 3x3 conv-(norm)-ReLU of ``dilation`` per entry of ``layers``."""

    def __init__(self, in_channels, layers, dilation, norm_layer=None):
        blocks, previous = [], in_channels
        for channels in layers:
            blocks.append(Conv2dNormActivation(previous, channels, kernel_size=3, stride=1, padding=dilation,
                                               dilation=dilation, norm_layer=norm_layer))
            previous = channels
        super().__init__(*blocks)
        _kaiming_convs(self)


class MaskRCNNPredictor(nn.Sequential):
    """(R, in_channels, 14, 14) -> (R, num_classes, 28, 28) mask logits."""

    def __init__(self, in_channels, dim_reduced, num_classes):
        super().__init__(OrderedDict([
            ("conv5_mask", nn.ConvTranspose2d(in_channels, dim_reduced, 2, 2, 0)),
            ("relu", nn.ReLU(inplace=True)),
            ("mask_fcn_logits", nn.Conv2d(dim_reduced, num_classes, 1, 1, 0)),
        ]))
        for name, param in self.named_parameters():
            if "weight" in name:
                nn.init.kaiming_normal_(param, mode="fan_out", nonlinearity="relu")


class KeypointRCNNHeads(nn.Sequential):
    """A 3x3 conv + ReLU per entry of ``layers``."""

    def __init__(self, in_channels, layers):
        blocks, previous = [], in_channels
        for channels in layers:
            blocks.append(nn.Conv2d(previous, channels, 3, stride=1, padding=1))
            blocks.append(nn.ReLU(inplace=True))
            previous = channels
        super().__init__(*blocks)
        for m in self.children():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(m.bias, 0)


class KeypointRCNNPredictor(nn.Module):
    """(R, in_channels, 14, 14) -> (R, num_keypoints, 56, 56) heatmap logits."""

    def __init__(self, in_channels, num_keypoints):
        super().__init__()
        deconv_kernel = 4
        self.kps_score_lowres = nn.ConvTranspose2d(in_channels, num_keypoints, deconv_kernel, stride=2,
                                                   padding=deconv_kernel // 2 - 1)
        nn.init.kaiming_normal_(self.kps_score_lowres.weight, mode="fan_out", nonlinearity="relu")
        nn.init.constant_(self.kps_score_lowres.bias, 0)
        self.up_scale = 2
        self.out_channels = num_keypoints

    def forward(self, x):
        x = self.kps_score_lowres(x)
        return F.interpolate(x, scale_factor=float(self.up_scale), mode="bilinear", align_corners=False,
                             recompute_scale_factor=False)


def fastrcnn_loss(class_logits, box_regression, labels, regression_targets):
    """(classification_loss, box_loss) of the sampled proposals: logits
    (R, C), codes (R, 4 C); ``labels`` [(R_i,)] and ``regression_targets``
    [(R_i, 4)] per image, arrays."""
    xp = get_array_module(labels[0])
    labels = xp.concatenate(labels)
    regression_targets = xp.concatenate(regression_targets)
    classification_loss = F.cross_entropy(class_logits, Tensor._wrap(labels))
    pos = xp.nonzero(labels > 0)[0]
    n = class_logits.shape[0]
    box_regression = F.reshape(box_regression, (n, box_regression.shape[-1] // 4, 4))
    box_loss = F.smooth_l1_loss(box_regression[pos, labels[pos]], Tensor._wrap(regression_targets[pos]),
                                beta=1 / 9, reduction="sum")
    return classification_loss, box_loss / labels.size


def maskrcnn_inference(x, labels):
    """Per image the sigmoid of the detected class's mask, (D_i, 1, M, M),
    from mask logits ``x`` (D, C, M, M) and the detections' labels."""
    xp = get_array_module(x.data)
    prob = 1.0 / (1.0 + xp.exp(-x.data))
    counts = [len(label) for label in labels]
    labels = xp.concatenate([label.data for label in labels])
    prob = prob[xp.arange(x.shape[0]), labels][:, None]
    return [Tensor._wrap(p) for p in xp.split(prob, numpy.cumsum(counts)[:-1])]


def project_masks_on_boxes(gt_masks, boxes, matched_idxs, M):
    """The ground-truth masks (G, H, W) of the matched boxes cut out along
    ``boxes`` (P, 4) and resized to M x M by roi_align: (P, M, M)."""
    xp = get_array_module(boxes)
    rois = xp.concatenate([matched_idxs.astype(boxes.dtype)[:, None], boxes], axis=1)
    masks = Tensor._wrap(gt_masks.data[:, None].astype(boxes.dtype))
    return roi_align(masks, Tensor._wrap(rois), (M, M), 1.0).data[:, 0]


def maskrcnn_loss(mask_logits, proposals, gt_masks, gt_labels, mask_matched_idxs):
    """Binary cross entropy (mean) of the true class's mask logits
    (P, C, M, M) against the projected ground-truth masks; ``proposals``
    and ``mask_matched_idxs`` per image, arrays."""
    size = mask_logits.shape[-1]
    xp = get_array_module(proposals[0])
    labels = xp.concatenate([gt.data[idxs] for gt, idxs in zip(gt_labels, mask_matched_idxs)])
    targets = [project_masks_on_boxes(m, p, i, size) for m, p, i in zip(gt_masks, proposals, mask_matched_idxs)]
    targets = xp.concatenate(targets)
    if targets.size == 0:
        return mask_logits.sum() * 0
    return F.binary_cross_entropy_with_logits(mask_logits[xp.arange(labels.shape[0]), labels],
                                              Tensor._wrap(targets))


def keypoints_to_heatmap(keypoints, rois, heatmap_size):
    """The cell (y S + x) of each keypoint (R, K, 3) in the S x S grid of
    its roi (R, 4), and whether it is visible and inside: two (R, K) int64."""
    xp = get_array_module(rois)
    offset_x, offset_y = rois[:, 0][:, None], rois[:, 1][:, None]
    scale_x = (heatmap_size / (rois[:, 2] - rois[:, 0]))[:, None]
    scale_y = (heatmap_size / (rois[:, 3] - rois[:, 1]))[:, None]
    x, y = keypoints[..., 0], keypoints[..., 1]
    # A keypoint on the roi's right or bottom edge belongs to the last cell.
    x_boundary = x == rois[:, 2][:, None]
    y_boundary = y == rois[:, 3][:, None]
    x = xp.floor((x - offset_x) * scale_x).astype(xp.int64)
    y = xp.floor((y - offset_y) * scale_y).astype(xp.int64)
    x[x_boundary] = heatmap_size - 1
    y[y_boundary] = heatmap_size - 1
    valid = ((x >= 0) & (y >= 0) & (x < heatmap_size) & (y < heatmap_size) & (keypoints[..., 2] > 0))
    valid = valid.astype(xp.int64)
    return (y * heatmap_size + x) * valid, valid


def keypointrcnn_loss(keypoint_logits, proposals, gt_keypoints, keypoint_matched_idxs):
    """Cross entropy over the S x S cells of the heatmap logits (P, K, S, S)
    of each valid keypoint; ``proposals`` and ``keypoint_matched_idxs``
    per image, arrays."""
    n, k, h, w = keypoint_logits.shape
    if h != w:
        raise ValueError(f"keypoint_logits height and width (last two elements of shape) should be equal. "
                         f"Instead got H = {h} and W = {w}")
    xp = get_array_module(proposals[0])
    heatmaps, valid = [], []
    for rois, gt, idxs in zip(proposals, gt_keypoints, keypoint_matched_idxs):
        heat, val = keypoints_to_heatmap(gt.data[idxs], rois, h)
        heatmaps.append(heat.reshape(-1))
        valid.append(val.reshape(-1))
    targets = xp.concatenate(heatmaps)
    valid = xp.nonzero(xp.concatenate(valid))[0]
    if targets.size == 0 or valid.size == 0:
        return keypoint_logits.sum() * 0
    logits = F.reshape(keypoint_logits, (n * k, h * w))
    return F.cross_entropy(logits[valid], Tensor._wrap(targets[valid]))


def _cubic_weights(in_size, out_size, xp):
    """torch's bicubic resampling (A = -0.75, align_corners=False) along
    one axis: (out_size, 4) source indices (clamped to the edge) and
    weights."""
    scale = in_size / out_size
    real = scale * (xp.arange(out_size, dtype=xp.float64) + 0.5) - 0.5
    index = xp.minimum(xp.floor(real).astype(xp.int64), in_size - 1)
    t = xp.clip(real - index, 0.0, 1.0)
    a = -0.75

    def near(x):     # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):      # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    weights = xp.stack([far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)], axis=1)
    indices = xp.clip(index[:, None] - 1 + xp.arange(4)[None, :], 0, in_size - 1)
    return indices, weights


def _resize_bicubic(maps, out_h, out_w):
    """(K, H, W) -> (K, out_h, out_w), torch's bicubic interpolation with
    its order of operations (along x first, then y, terms summed in order)."""
    xp = get_array_module(maps)
    ix, wx = _cubic_weights(maps.shape[2], out_w, xp)
    iy, wy = _cubic_weights(maps.shape[1], out_h, xp)
    rows = maps[:, :, ix[:, 0]] * wx[:, 0]
    for j in range(1, 4):
        rows = rows + maps[:, :, ix[:, j]] * wx[:, j]
    out = rows[:, iy[:, 0], :] * wy[:, 0][:, None]
    for j in range(1, 4):
        out = out + rows[:, iy[:, j], :] * wy[:, j][:, None]
    return out


def heatmaps_to_keypoints(maps, rois):
    """Keypoints (R, K, 3) (x, y, 1) and scores (R, K), float32, from the
    heatmaps ``maps`` (R, K, S, S) (array) of the boxes ``rois`` (R, 4):
    each heatmap is resized to the box's size rounded up, and its argmax
    cell's centre is scaled back to the box."""
    xp = get_array_module(maps)
    widths = xp.maximum(rois[:, 2] - rois[:, 0], 1)
    heights = xp.maximum(rois[:, 3] - rois[:, 1], 1)
    widths_ceil, heights_ceil = xp.ceil(widths), xp.ceil(heights)
    num_keypoints = maps.shape[1]
    xy_preds = xp.zeros((len(rois), 3, num_keypoints), dtype=xp.float32)
    end_scores = xp.zeros((len(rois), num_keypoints), dtype=xp.float32)
    for i in range(len(rois)):
        roi_w, roi_h = int(widths_ceil[i]), int(heights_ceil[i])
        roi_map = _resize_bicubic(maps[i], roi_h, roi_w)
        pos = roi_map.reshape(num_keypoints, -1).argmax(axis=1)
        x_int = pos % roi_w
        y_int = (pos - x_int) // roi_w
        # torchvision computes the positions in float32 (float32 tensors
        # times 0-dim float64 ones stay float32).
        f32 = numpy.float32
        x = (x_int.astype(xp.float32) + f32(0.5)) * f32(widths[i] / roi_w)
        y = (y_int.astype(xp.float32) + f32(0.5)) * f32(heights[i] / roi_h)
        xy_preds[i, 0] = x + f32(rois[i, 0])
        xy_preds[i, 1] = y + f32(rois[i, 1])
        xy_preds[i, 2] = 1
        end_scores[i] = roi_map[xp.arange(num_keypoints), y_int, x_int]
    return xy_preds.transpose(0, 2, 1), end_scores


def keypointrcnn_inference(x, boxes):
    """Per image (keypoints (D_i, K, 3), scores (D_i, K)) from the heatmap
    logits ``x`` (D, K, S, S) and the detected boxes."""
    xp = get_array_module(x.data)
    counts = [len(b) for b in boxes]
    probs, scores = [], []
    for maps, b in zip(xp.split(x.data, numpy.cumsum(counts)[:-1]), boxes):
        kp, sc = heatmaps_to_keypoints(maps, b.data)
        probs.append(Tensor._wrap(kp))
        scores.append(Tensor._wrap(sc))
    return probs, scores


def expand_boxes(boxes, scale):
    """xyxy ``boxes`` (R, 4) scaled by ``scale`` about their centres."""
    xp = get_array_module(boxes)
    w_half = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
    h_half = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    x_c = (boxes[:, 2] + boxes[:, 0]) * 0.5
    y_c = (boxes[:, 3] + boxes[:, 1]) * 0.5
    return xp.stack([x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half], axis=1)


def paste_mask_in_image(mask, box, im_h, im_w):
    """One M x M ``mask`` resized (bilinear) to its integer ``box`` (4,)
    and pasted into a zero (im_h, im_w) image, cut at the image's edges."""
    xp = get_array_module(mask)
    w = max(int(box[2] - box[0] + 1), 1)
    h = max(int(box[3] - box[1] + 1), 1)
    mask = F.interpolate(Tensor._wrap(mask[None, None]), size=(h, w), mode="bilinear", align_corners=False).data[0, 0]
    im_mask = xp.zeros((im_h, im_w), dtype=mask.dtype)
    x_0, x_1 = max(int(box[0]), 0), min(int(box[2]) + 1, im_w)
    y_0, y_1 = max(int(box[1]), 0), min(int(box[3]) + 1, im_h)
    im_mask[y_0:y_1, x_0:x_1] = mask[(y_0 - int(box[1])):(y_1 - int(box[1])), (x_0 - int(box[0])):(x_1 - int(box[0]))]
    return im_mask


def paste_masks_in_image(masks, boxes, img_shape, padding=1):
    """Masks (R, 1, M, M) of the boxes (R, 4) pasted into images of
    ``img_shape`` (h, w): (R, 1, h, w). Each mask is padded by ``padding``
    cells and its box grown by the same ratio, so the mask's edge values
    fade out instead of being cut; boxes are truncated to integers."""
    m = masks.data if isinstance(masks, Tensor) else masks
    b = boxes.data if isinstance(boxes, Tensor) else boxes
    xp = get_array_module(m)
    size = m.shape[-1]
    scale = float(size + 2 * padding) / size
    m = xp.pad(m, [(0, 0), (0, 0), (padding, padding), (padding, padding)])
    b = expand_boxes(b, scale).astype(xp.int64)
    im_h, im_w = img_shape
    pasted = [paste_mask_in_image(mask[0], box, im_h, im_w) for mask, box in zip(m, b)]
    if pasted:
        return Tensor._wrap(xp.stack(pasted)[:, None])
    return Tensor._wrap(xp.zeros((0, 1, im_h, im_w), dtype=m.dtype))


class RoIHeads(nn.Module):
    """forward(features, proposals, image_shapes, targets=None) ->
    (detections, losses), as the module docstring says; the mask and
    keypoint branches run when their three modules are set."""

    def __init__(self, box_roi_pool, box_head, box_predictor, fg_iou_thresh, bg_iou_thresh, batch_size_per_image,
                 positive_fraction, bbox_reg_weights, score_thresh, nms_thresh, detections_per_img,
                 mask_roi_pool=None, mask_head=None, mask_predictor=None, keypoint_roi_pool=None, keypoint_head=None,
                 keypoint_predictor=None):
        super().__init__()
        self.box_similarity = box_iou
        self.proposal_matcher = det_utils.Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=False)
        self.fg_bg_sampler = det_utils.BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        if bbox_reg_weights is None:
            bbox_reg_weights = (10.0, 10.0, 5.0, 5.0)
        self.box_coder = det_utils.BoxCoder(bbox_reg_weights)
        self.box_roi_pool = box_roi_pool
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.mask_roi_pool = mask_roi_pool
        self.mask_head = mask_head
        self.mask_predictor = mask_predictor
        self.keypoint_roi_pool = keypoint_roi_pool
        self.keypoint_head = keypoint_head
        self.keypoint_predictor = keypoint_predictor

    def has_mask(self):
        return self.mask_roi_pool is not None and self.mask_head is not None and self.mask_predictor is not None

    def has_keypoint(self):
        return (self.keypoint_roi_pool is not None and self.keypoint_head is not None
                and self.keypoint_predictor is not None)

    def check_targets(self, targets):
        if targets is None:
            raise ValueError("targets should not be None")
        keys = ["boxes", "labels"] + (["masks"] if self.has_mask() else []) + \
            (["keypoints"] if self.has_keypoint() else [])
        for i, t in enumerate(targets):
            for key in keys:
                if key not in t:
                    raise ValueError(f"Every element of targets should have a {key} key (targets[{i}] has "
                                     f"{sorted(t)})")
            if t["boxes"].dtype.kind != "f":
                raise TypeError(f"target boxes must of float type, instead got {t['boxes'].dtype}")
            if t["labels"].dtype != numpy.int64:
                raise TypeError(f"target labels must of int64 type, instead got {t['labels'].dtype}")
            if "keypoints" in keys and (t["keypoints"].ndim != 3 or t["keypoints"].shape[0] != t["boxes"].shape[0]
                                        or t["keypoints"].shape[2] != 3):
                raise ValueError(f"targets[{i}]['keypoints'] must have shape ({t['boxes'].shape[0]}, K, 3), got "
                                 f"{tuple(t['keypoints'].shape)}")
            if "masks" in keys and (t["masks"].ndim != 3 or t["masks"].shape[0] != t["boxes"].shape[0]):
                raise ValueError(f"targets[{i}]['masks'] must have shape ({t['boxes'].shape[0]}, H, W), got "
                                 f"{tuple(t['masks'].shape)}")

    def assign_targets_to_proposals(self, proposals, gt_boxes, gt_labels):
        """Per image: the matched box index (clamped to >= 0) and the label
        of every proposal (0 background, -1 ignored), int64 arrays."""
        matched_idxs, labels = [], []
        for props, boxes, gt_label in zip(proposals, gt_boxes, gt_labels):
            xp = get_array_module(props)
            if boxes.shape[0] == 0:
                matched_idxs.append(xp.zeros(props.shape[0], dtype=xp.int64))
                labels.append(xp.zeros(props.shape[0], dtype=xp.int64))
                continue
            matched = self.proposal_matcher(self.box_similarity(Tensor._wrap(boxes), Tensor._wrap(props))).data
            clamped = xp.maximum(matched, 0)
            label = gt_label[clamped].astype(xp.int64)
            label[matched == self.proposal_matcher.BELOW_LOW_THRESHOLD] = 0
            label[matched == self.proposal_matcher.BETWEEN_THRESHOLDS] = -1
            matched_idxs.append(clamped)
            labels.append(label)
        return matched_idxs, labels

    def subsample(self, labels):
        """Per image, the indices of the sampled proposals, in order."""
        pos, neg = self.fg_bg_sampler(labels)
        xp = get_array_module(labels[0])
        return [xp.nonzero(p.data | n.data)[0] for p, n in zip(pos, neg)]

    def add_gt_proposals(self, proposals, gt_boxes):
        xp = get_array_module(proposals[0])
        return [xp.concatenate([p, g]) for p, g in zip(proposals, gt_boxes)]

    def select_training_samples(self, proposals, targets):
        """(proposals, matched_idxs, labels, regression_targets) of the
        sampled proposals of each image, arrays."""
        self.check_targets(targets)
        dtype = proposals[0].dtype
        xp = get_array_module(proposals[0])
        gt_boxes = [t["boxes"].data.astype(dtype) for t in targets]
        gt_labels = [t["labels"].data for t in targets]
        proposals = self.add_gt_proposals(proposals, gt_boxes)
        matched_idxs, labels = self.assign_targets_to_proposals(proposals, gt_boxes, gt_labels)
        sampled = self.subsample(labels)
        regression_targets = []
        for i, inds in enumerate(sampled):
            proposals[i], labels[i], matched_idxs[i] = proposals[i][inds], labels[i][inds], matched_idxs[i][inds]
            boxes = gt_boxes[i] if gt_boxes[i].shape[0] else xp.zeros((1, 4), dtype=dtype)
            if gt_boxes[i].shape[0]:
                regression_targets.append(self.box_coder.encode_single(boxes[matched_idxs[i]], proposals[i]).data)
            else:
                # No object to regress to (the zero box's codes would be log(0)).
                regression_targets.append(xp.zeros(proposals[i].shape, dtype=dtype))
        return proposals, matched_idxs, labels, regression_targets

    def postprocess_detections(self, class_logits, box_regression, proposals, image_shapes):
        """Per image boxes (D_i, 4), scores (D_i,), labels (D_i,), arrays,
        as the module docstring says."""
        num_classes = class_logits.shape[-1]
        counts = [p.shape[0] for p in proposals]
        pred_boxes = self.box_coder.decode(box_regression.detach(), [Tensor._wrap(p) for p in proposals]).data
        pred_scores = F.softmax(class_logits.detach(), -1).data
        xp = get_array_module(pred_scores)
        splits = numpy.cumsum(counts)[:-1]
        all_boxes, all_scores, all_labels = [], [], []
        for boxes, scores, (height, width) in zip(xp.split(pred_boxes, splits), xp.split(pred_scores, splits),
                                                  image_shapes):
            boxes = boxes.copy()
            boxes[..., 0::2] = xp.clip(boxes[..., 0::2], 0, width)
            boxes[..., 1::2] = xp.clip(boxes[..., 1::2], 0, height)
            labels = xp.broadcast_to(xp.arange(num_classes, dtype=xp.int64), scores.shape)
            # Class 0 is the background: not a detection.
            boxes = boxes[:, 1:].reshape(-1, 4)
            scores = scores[:, 1:].reshape(-1)
            labels = labels[:, 1:].reshape(-1)
            inds = xp.nonzero(scores > self.score_thresh)[0]
            boxes, scores, labels = boxes[inds], scores[inds], labels[inds]
            keep = remove_small_boxes(Tensor._wrap(boxes), min_size=1e-2).data
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = batched_nms(Tensor._wrap(boxes), Tensor._wrap(scores), Tensor._wrap(labels), self.nms_thresh).data
            keep = keep[:self.detections_per_img]
            all_boxes.append(boxes[keep])
            all_scores.append(scores[keep])
            all_labels.append(labels[keep])
        return all_boxes, all_scores, all_labels

    def _positives(self, proposals, labels, matched_idxs):
        """The proposals labelled as objects, and their matched box indices."""
        xp = get_array_module(proposals[0])
        pos = [xp.nonzero(label > 0)[0] for label in labels]
        return [p[i] for p, i in zip(proposals, pos)], [m[i] for m, i in zip(matched_idxs, pos)]

    def forward(self, features, proposals, image_shapes, targets=None):
        proposals = [p.data if isinstance(p, Tensor) else p for p in proposals]
        if self.training:
            proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_roi_pool(features, [Tensor._wrap(p) for p in proposals], image_shapes)
        box_features = self.box_head(box_features)
        class_logits, box_regression = self.box_predictor(box_features)
        result, losses = [], {}
        if self.training:
            det_utils.check_labels(targets, class_logits.shape[-1], "RoIHeads")
            loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
            losses = {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}
        else:
            boxes, scores, labels_out = self.postprocess_detections(class_logits, box_regression, proposals,
                                                                    image_shapes)
            result = [{"boxes": Tensor._wrap(b), "labels": Tensor._wrap(l), "scores": Tensor._wrap(s)}
                      for b, s, l in zip(boxes, scores, labels_out)]
        if self.has_mask():
            if self.training:
                mask_proposals, pos_matched_idxs = self._positives(proposals, labels, matched_idxs)
            else:
                mask_proposals = [r["boxes"].data for r in result]
            mask_features = self.mask_roi_pool(features, [Tensor._wrap(p) for p in mask_proposals], image_shapes)
            mask_logits = self.mask_predictor(self.mask_head(mask_features))
            if self.training:
                losses["loss_mask"] = maskrcnn_loss(mask_logits, mask_proposals, [t["masks"] for t in targets],
                                                    [t["labels"] for t in targets], pos_matched_idxs)
            else:
                for prob, r in zip(maskrcnn_inference(mask_logits.detach(), [r["labels"] for r in result]), result):
                    r["masks"] = prob
        if self.has_keypoint():
            if self.training:
                keypoint_proposals, pos_matched_idxs = self._positives(proposals, labels, matched_idxs)
            else:
                keypoint_proposals = [r["boxes"].data for r in result]
            keypoint_features = self.keypoint_roi_pool(features, [Tensor._wrap(p) for p in keypoint_proposals],
                                                       image_shapes)
            keypoint_logits = self.keypoint_predictor(self.keypoint_head(keypoint_features))
            if self.training:
                losses["loss_keypoint"] = keypointrcnn_loss(keypoint_logits, keypoint_proposals,
                                                            [t["keypoints"] for t in targets], pos_matched_idxs)
            else:
                kps, kp_scores = keypointrcnn_inference(keypoint_logits.detach(),
                                                        [Tensor._wrap(p) for p in keypoint_proposals])
                for kp, score, r in zip(kps, kp_scores, result):
                    r["keypoints"] = kp
                    r["keypoints_scores"] = score
        return result, losses
