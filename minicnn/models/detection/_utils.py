"""The pieces detectors share (torchvision's
``torchvision.models.detection._utils``, imported there as ``det_utils``):
box coders, anchor-to-ground-truth matchers, the sampler of training
examples, the box regression losses, and the checks of a detector's input.

Box coding. A detector does not predict box corners directly: it predicts
a small correction of an anchor (a reference box). ``BoxCoder`` uses the
R-CNN parametrisation: for an anchor of centre (x_a, y_a) and size
(w_a, h_a) and a box of centre (x, y) and size (w, h),

    dx = wx (x - x_a) / w_a      dw = ww log(w / w_a)
    dy = wy (y - y_a) / h_a      dh = wh log(h / h_a)

with weights (wx, wy, ww, wh) that scale the codes to about unit
variance. Decoding inverts it; dw and dh are clamped at ``bbox_xform_clip``
(log(1000 / 16)) first, so exp() cannot overflow on a wild prediction.
``BoxLinearCoder`` (FCOS) codes a box by the distances from the anchor's
centre to its four sides, divided by the anchor's size.

Matching. ``Matcher`` takes the IoU table of M ground-truth boxes against
N anchors, (M, N), and gives each anchor the index of its best box, or
-1 (best IoU below ``low_threshold``: background) or -2 (between the two
thresholds: ignored by the loss). With ``allow_low_quality_matches`` an
anchor that is the best one for some box keeps that box even below the
threshold, so no box goes unmatched. ``SSDMatcher`` (one threshold) also
forces each box's best anchor onto that box.

The integer work (matching, sampling) runs on arrays, without gradients;
coding and the losses are written with Tensor ops, since decoding a
predicted regression (GIoU loss, FCOS) must carry its gradient.
"""
import math
from collections import OrderedDict

from ... import functional as F
from ...backend import get_array_module
from ...ops import batched_nms, generalized_box_iou_loss
from ...tensor import Tensor
from .anchor_utils import AnchorGenerator
from .transform import GeneralizedRCNNTransform

__all__ = ["BoxCoder", "BoxLinearCoder", "Matcher", "SSDMatcher", "BalancedPositiveNegativeSampler",
           "retrieve_out_channels", "check_images", "check_targets", "check_boxes_not_degenerate", "transform_inputs",
           "features_list", "top_candidates", "nms_detections", "check_backbone", "check_anchor_generator",
           "imagenet_transform", "match_anchors"]

#: ImageNet's per-channel mean and standard deviation: every detector's
#: default ``image_mean`` and ``image_std``, as in torchvision.
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def _as_tensor(x):
    return x if isinstance(x, Tensor) else Tensor._wrap(x)


class BoxCoder:
    """R-CNN box coding with ``weights`` (wx, wy, ww, wh), as the module
    docstring says."""

    def __init__(self, weights, bbox_xform_clip=math.log(1000.0 / 16)):
        if len(weights) != 4:
            raise ValueError(f"BoxCoder: weights must be 4 numbers (wx, wy, ww, wh), got {weights!r}")
        self.weights = tuple(weights)
        self.bbox_xform_clip = bbox_xform_clip

    def encode(self, reference_boxes, proposals):
        """Per image: the codes of ``reference_boxes`` [(K_i, 4)] relative
        to ``proposals`` [(K_i, 4)] -> a tuple of (K_i, 4)."""
        counts = [len(b) for b in reference_boxes]
        targets = self.encode_single(F.cat(list(reference_boxes), dim=0), F.cat(list(proposals), dim=0))
        return tuple(F.split(targets, counts, 0)) if counts else ()

    def encode_single(self, reference_boxes, proposals):
        """Codes (K, 4) of the boxes ``reference_boxes`` (K, 4) relative to
        the anchors ``proposals`` (K, 4), both xyxy."""
        reference_boxes, proposals = _as_tensor(reference_boxes), _as_tensor(proposals)
        wx, wy, ww, wh = self.weights
        ex_widths = proposals[:, 2:3] - proposals[:, 0:1]
        ex_heights = proposals[:, 3:4] - proposals[:, 1:2]
        ex_ctr_x = proposals[:, 0:1] + 0.5 * ex_widths
        ex_ctr_y = proposals[:, 1:2] + 0.5 * ex_heights
        gt_widths = reference_boxes[:, 2:3] - reference_boxes[:, 0:1]
        gt_heights = reference_boxes[:, 3:4] - reference_boxes[:, 1:2]
        gt_ctr_x = reference_boxes[:, 0:1] + 0.5 * gt_widths
        gt_ctr_y = reference_boxes[:, 1:2] + 0.5 * gt_heights
        dx = wx * (gt_ctr_x - ex_ctr_x) / ex_widths
        dy = wy * (gt_ctr_y - ex_ctr_y) / ex_heights
        dw = ww * F.log(gt_widths / ex_widths)
        dh = wh * F.log(gt_heights / ex_heights)
        return F.cat([dx, dy, dw, dh], dim=1)

    def decode(self, rel_codes, boxes):
        """Boxes (K, C, 4) from codes ``rel_codes`` (K, 4 C) and the list
        of per-image anchors ``boxes`` [(K_i, 4)], sum K_i = K."""
        if not isinstance(boxes, (list, tuple)):
            raise TypeError(f"BoxCoder.decode: boxes must be a list or tuple of (K_i, 4) tensors, got "
                            f"{type(boxes).__name__}")
        total = sum(b.shape[0] for b in boxes)
        if total > 0:
            rel_codes = F.reshape(rel_codes, (total, -1))
        pred = self.decode_single(rel_codes, F.cat(list(boxes), dim=0))
        return F.reshape(pred, (total, -1, 4)) if total > 0 else pred

    def decode_single(self, rel_codes, boxes):
        """Boxes (K, 4 C), xyxy, from codes ``rel_codes`` (K, 4 C) relative
        to the anchors ``boxes`` (K, 4)."""
        boxes = _as_tensor(boxes)
        if boxes.dtype != rel_codes.dtype:
            boxes = boxes.to(rel_codes.dtype)
        widths = boxes[:, 2] - boxes[:, 0]
        heights = boxes[:, 3] - boxes[:, 1]
        ctr_x = boxes[:, 0] + 0.5 * widths
        ctr_y = boxes[:, 1] + 0.5 * heights
        wx, wy, ww, wh = self.weights
        dx = rel_codes[:, 0::4] / wx
        dy = rel_codes[:, 1::4] / wy
        dw = F.clamp(rel_codes[:, 2::4] / ww, max=self.bbox_xform_clip)
        dh = F.clamp(rel_codes[:, 3::4] / wh, max=self.bbox_xform_clip)
        pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
        pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
        half_w = 0.5 * (F.exp(dw) * widths[:, None])
        half_h = 0.5 * (F.exp(dh) * heights[:, None])
        pred = F.stack([pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h], dim=2)
        return F.flatten(pred, 1)


class BoxLinearCoder:
    """FCOS's coding: (left, top, right, bottom) distances from the
    anchor's centre to the box's sides, divided by the anchor's width and
    height when ``normalize_by_size``."""

    def __init__(self, normalize_by_size=True):
        self.normalize_by_size = normalize_by_size

    def _sizes(self, boxes):
        w = boxes[..., 2] - boxes[..., 0]
        h = boxes[..., 3] - boxes[..., 1]
        return F.stack([w, h, w, h], dim=-1)

    def encode(self, reference_boxes, proposals):
        """Codes (..., 4) of the boxes ``proposals`` (..., 4) relative to
        the anchors ``reference_boxes`` (..., 4) (torchvision's argument
        names: here the reference is the anchor)."""
        reference_boxes, proposals = _as_tensor(reference_boxes), _as_tensor(proposals)
        ctr_x = 0.5 * (reference_boxes[..., 0] + reference_boxes[..., 2])
        ctr_y = 0.5 * (reference_boxes[..., 1] + reference_boxes[..., 3])
        targets = F.stack([ctr_x - proposals[..., 0], ctr_y - proposals[..., 1],
                           proposals[..., 2] - ctr_x, proposals[..., 3] - ctr_y], dim=-1)
        if self.normalize_by_size:
            targets = targets / self._sizes(reference_boxes)
        return targets

    def decode(self, rel_codes, boxes):
        """Boxes (..., 4), xyxy, from codes ``rel_codes`` (..., 4) and the
        anchors ``boxes`` (..., 4)."""
        boxes = _as_tensor(boxes)
        if boxes.dtype != rel_codes.dtype:
            boxes = boxes.to(rel_codes.dtype)
        ctr_x = 0.5 * (boxes[..., 0] + boxes[..., 2])
        ctr_y = 0.5 * (boxes[..., 1] + boxes[..., 3])
        if self.normalize_by_size:
            rel_codes = rel_codes * self._sizes(boxes)
        return F.stack([ctr_x - rel_codes[..., 0], ctr_y - rel_codes[..., 1],
                        ctr_x + rel_codes[..., 2], ctr_y + rel_codes[..., 3]], dim=-1)


class Matcher:
    """The best ground-truth box of each anchor, from an IoU table
    (M boxes, N anchors), as the module docstring says: int64 (N,) with
    indices in [0, M), BELOW_LOW_THRESHOLD (-1) or BETWEEN_THRESHOLDS (-2)."""

    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(self, high_threshold, low_threshold, allow_low_quality_matches=False):
        if low_threshold > high_threshold:
            raise ValueError(f"Matcher: low_threshold ({low_threshold}) should be <= high_threshold "
                             f"({high_threshold})")
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, match_quality_matrix):
        q = match_quality_matrix.data if isinstance(match_quality_matrix, Tensor) else match_quality_matrix
        if q.size == 0:
            if q.shape[0] == 0:
                raise ValueError("No ground-truth boxes available for one of the images during training")
            raise ValueError("No proposal boxes available for one of the images during training")
        return Tensor._wrap(self._match(q))

    def _match(self, q):
        xp = get_array_module(q)
        matches = xp.argmax(q, axis=0).astype(xp.int64)
        matched_vals = q.max(axis=0)
        all_matches = matches.copy()
        matches[matched_vals < self.low_threshold] = self.BELOW_LOW_THRESHOLD
        matches[(matched_vals >= self.low_threshold) & (matched_vals < self.high_threshold)] = \
            self.BETWEEN_THRESHOLDS
        if self.allow_low_quality_matches:
            # Every anchor tied for some box's best IoU gets its own best box back.
            best_per_gt = q.max(axis=1)
            anchors = xp.nonzero(q == best_per_gt[:, None])[1]
            matches[anchors] = all_matches[anchors]
        return matches


class SSDMatcher(Matcher):
    """Matcher with one ``threshold``; then each ground-truth box claims its
    best anchor (the last box wins an anchor two boxes both claim)."""

    def __init__(self, threshold):
        super().__init__(threshold, threshold, allow_low_quality_matches=False)

    def _match(self, q):
        xp = get_array_module(q)
        matches = super()._match(q)
        matches[xp.argmax(q, axis=1)] = xp.arange(q.shape[0], dtype=xp.int64)
        return matches


class BalancedPositiveNegativeSampler:
    """Per image, a random sample of at most ``batch_size_per_image``
    anchors, at most ``positive_fraction`` of them positive (matched index
    >= 1 in the caller's labels), the rest negative (== 0). Returns two
    lists of uint8 masks (pos, neg), one per image. The permutations come
    from minicnn's generator (``mc.manual_seed``), not torch's: the same
    seed picks different anchors than torchvision."""

    def __init__(self, batch_size_per_image, positive_fraction):
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction

    def __call__(self, matched_idxs):
        from ...creation import randperm

        pos_idx, neg_idx = [], []
        for matched in matched_idxs:
            m = matched.data if isinstance(matched, Tensor) else matched
            xp = get_array_module(m)
            positive = xp.nonzero(m >= 1)[0]
            negative = xp.nonzero(m == 0)[0]
            num_pos = min(positive.size, int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(negative.size, self.batch_size_per_image - num_pos)
            pos_pick = positive[randperm(positive.size).data[:num_pos]]
            neg_pick = negative[randperm(negative.size).data[:num_neg]]
            pos_mask = xp.zeros(m.shape, dtype=xp.uint8)
            neg_mask = xp.zeros(m.shape, dtype=xp.uint8)
            pos_mask[pos_pick] = 1
            neg_mask[neg_pick] = 1
            pos_idx.append(Tensor._wrap(pos_mask))
            neg_idx.append(Tensor._wrap(neg_mask))
        return pos_idx, neg_idx


def _box_loss(type, box_coder, anchors_per_image, matched_gt_boxes_per_image, bbox_regression_per_image, cnf=None):
    """Summed regression loss of the predicted codes against the matched
    boxes: "l1" or "smooth_l1" on the codes, "giou" on the decoded boxes."""
    if type in ("l1", "smooth_l1"):
        target = box_coder.encode_single(matched_gt_boxes_per_image, anchors_per_image)
        if type == "l1":
            return F.l1_loss(bbox_regression_per_image, target, reduction="sum")
        beta = cnf["beta"] if cnf is not None and "beta" in cnf else 1.0
        return F.smooth_l1_loss(bbox_regression_per_image, target, reduction="sum", beta=beta)
    if type == "giou":
        boxes = box_coder.decode_single(bbox_regression_per_image, anchors_per_image)
        eps = cnf["eps"] if cnf is not None and "eps" in cnf else 1e-7
        return generalized_box_iou_loss(boxes, _as_tensor(matched_gt_boxes_per_image), reduction="sum", eps=eps)
    raise ValueError(f"Unsupported loss: {type!r} (minicnn has 'l1', 'smooth_l1' and 'giou'; torchvision also "
                     f"'ciou' and 'diou')")


def retrieve_out_channels(model, size):
    """The channels of each feature map ``model`` returns for a zero image
    of ``size`` = (width, height), found by running it once in eval mode."""
    from ... import no_grad, zeros

    was_training = model.training
    model.eval()
    with no_grad():
        dtype = next(iter(model.parameters())).dtype
        features = model(zeros(1, 3, size[1], size[0], dtype=dtype))
    if was_training:
        model.train()
    if isinstance(features, Tensor):
        features = OrderedDict([("0", features)])
    return [x.shape[1] for x in features.values()]


def check_images(images, model):
    """A clear error unless ``images`` is a list of floating (C, H, W) Tensors."""
    if not isinstance(images, (list, tuple)):
        raise TypeError(f"{model}: images must be a list of (3, H, W) tensors, got {type(images).__name__}")
    if len(images) == 0:
        raise ValueError(f"{model}: images is an empty list")
    for i, img in enumerate(images):
        if not isinstance(img, Tensor):
            raise TypeError(f"{model}: images[{i}] must be a Tensor, got {type(img).__name__}")
        if img.ndim != 3:
            raise ValueError(f"images is expected to be a list of 3d tensors of shape [C, H, W], got "
                             f"{tuple(img.shape)} at images[{i}]")


def check_targets(targets, num_images, model):
    """In training: one dict per image with "boxes" (K, 4) and "labels" (K,) Tensors."""
    if targets is None:
        raise ValueError(f"{model}: targets should not be None when in training mode")
    if not isinstance(targets, (list, tuple)) or len(targets) != num_images:
        raise ValueError(f"{model}: targets must be a list of {num_images} dicts (one per image), got "
                         f"{type(targets).__name__} of length {len(targets) if hasattr(targets, '__len__') else '?'}")
    for i, target in enumerate(targets):
        if not isinstance(target, dict):
            raise TypeError(f"{model}: targets[{i}] must be a dict, got {type(target).__name__}")
        for key in ("boxes", "labels"):
            if key not in target:
                raise ValueError(f"{model}: targets[{i}] is missing the key {key!r} (it has {sorted(target)})")
            if not isinstance(target[key], Tensor):
                raise TypeError(f"Expected target {key} to be of type Tensor, got {type(target[key]).__name__} "
                                f"in targets[{i}]")
        boxes, labels = target["boxes"], target["labels"]
        if boxes.ndim != 2 or boxes.shape[-1] != 4:
            raise ValueError(f"Expected target boxes to be a tensor of shape [N, 4], got {tuple(boxes.shape)} "
                             f"in targets[{i}]")
        if labels.shape != (boxes.shape[0],):
            raise ValueError(f"{model}: targets[{i}]['labels'] must have shape ({boxes.shape[0]},) for "
                             f"{boxes.shape[0]} boxes, got {tuple(labels.shape)}")
        if labels.dtype.kind not in "iu":
            raise TypeError(f"{model}: targets[{i}]['labels'] must be an integer tensor, got {labels.dtype}")


def check_labels(targets, num_classes, model):
    """Every target label is a class index in [0, num_classes), the
    columns of the classifier (class 0 is the background). Stricter than
    torchvision, whose losses index with the labels: a negative label
    wraps around to the last classes (or, in FCOS, counts as background)
    and one too large is an IndexError."""
    for i, target in enumerate(targets):
        labels = target["labels"].data
        if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise ValueError(f"{model}: targets[{i}]['labels'] must lie in [0, {num_classes}) for a classifier of "
                             f"{num_classes} classes, got values in [{int(labels.min())}, {int(labels.max())}]")


def check_boxes_not_degenerate(targets):
    """torchvision's check after resizing: every box has x2 > x1 and y2 > y1."""
    for index, target in enumerate(targets):
        b = target["boxes"].data
        xp = get_array_module(b)
        bad = (b[:, 2:] <= b[:, :2]).any(axis=1)
        if bad.any():
            box = b[int(xp.nonzero(bad)[0][0])].tolist()
            raise ValueError(f"All bounding boxes should have positive height and width. Found invalid box {box} "
                             f"for target at index {index}.")


def transform_inputs(model, images, targets):
    """The start of every detector's forward: check the images (a list of
    (C, H, W) Tensors, or one (N, C, H, W) Tensor), and, in
    training, the targets; remember the original sizes, run
    ``model.transform`` and check the resized boxes. Returns (ImageList,
    targets, original_image_sizes)."""
    name = type(model).__name__
    if isinstance(images, Tensor) and images.ndim == 4:
        # A batch tensor counts as its list of images (a minicnn extension:
        # mc.summary feeds models one tensor).
        images = [images[i] for i in range(images.shape[0])]
    check_images(images, name)
    if model.training:
        check_targets(targets, len(images), name)
    original_image_sizes = [tuple(img.shape[-2:]) for img in images]
    image_list, targets = model.transform(images, targets if model.training else None)
    if targets is not None:
        check_boxes_not_degenerate(targets)
    return image_list, targets, original_image_sizes


def features_list(backbone, tensors):
    """The backbone's feature maps as a list (a single map counts as one)."""
    features = backbone(tensors)
    if isinstance(features, Tensor):
        return [features]
    return list(features.values())


def top_candidates(scores, k):
    """Indices of the ``k`` largest of ``scores`` (1-D array), largest
    first, ties in index order: the first k of a stable descending sort."""
    xp = get_array_module(scores)
    n = scores.shape[0]
    if not 0 < k < n or bool(xp.isnan(scores).any()):
        return xp.argsort(-scores, kind="stable")[:k]
    # Sorting all n scores costs n log n; RetinaNet's first level holds
    # millions (anchors x classes) for k = 1000. A partition finds the k-th
    # largest value in linear time; the scores above it and the first of
    # the ones equal to it (index order, as the stable sort takes them)
    # are then exactly that sort's first k, and only they are sorted.
    kth = xp.partition(scores, n - k)[n - k]
    above = xp.nonzero(scores > kth)[0]
    tied = xp.nonzero(scores == kth)[0][:k - above.shape[0]]
    chosen = xp.sort(xp.concatenate([above, tied]))
    return chosen[xp.argsort(-scores[chosen], kind="stable")]


def nms_detections(boxes, scores, labels, nms_thresh, detections_per_img):
    """{"boxes", "scores", "labels"} of the candidates that survive per-class
    NMS, best first, at most ``detections_per_img``."""
    keep = batched_nms(Tensor._wrap(boxes), Tensor._wrap(scores), Tensor._wrap(labels), nms_thresh).data
    keep = keep[:detections_per_img]
    return {"boxes": Tensor._wrap(boxes[keep]), "scores": Tensor._wrap(scores[keep]),
            "labels": Tensor._wrap(labels[keep])}


def check_backbone(backbone):
    """ValueError unless ``backbone`` says its ``out_channels`` (torchvision's check and message)."""
    if not hasattr(backbone, "out_channels"):
        raise ValueError("backbone should contain an attribute out_channels specifying the number of output "
                         "channels (assumed to be the same for all the levels)")


def check_anchor_generator(anchor_generator, name="anchor_generator"):
    """TypeError unless the argument ``name`` is an AnchorGenerator or None."""
    if not isinstance(anchor_generator, (AnchorGenerator, type(None))):
        raise TypeError(f"{name} should be of type AnchorGenerator or None instead of {type(anchor_generator)}")


def imagenet_transform(min_size, max_size, image_mean=None, image_std=None, **kwargs):
    """The detector's GeneralizedRCNNTransform; ``image_mean`` and
    ``image_std`` default to ImageNet's, as every torchvision detector's."""
    return GeneralizedRCNNTransform(min_size, max_size, IMAGENET_MEAN if image_mean is None else image_mean,
                                    IMAGENET_STD if image_std is None else image_std, **kwargs)


def match_anchors(anchors, targets, match):
    """Per image, the (A,) int64 Tensor of the ground-truth box matched to
    each of its anchors, or -1 (background): ``match(anchors_per_image,
    boxes)`` (Tensors (A, 4) and (G, 4)) gives it, except for an image
    without boxes, whose anchors are all background."""
    matched_idxs = []
    for anchors_per_image, target in zip(anchors, targets):
        if target["boxes"].shape[0] == 0:
            xp = get_array_module(anchors_per_image.data)
            matched_idxs.append(Tensor._wrap(xp.full(anchors_per_image.shape[0], -1, dtype=xp.int64)))
        else:
            matched_idxs.append(match(anchors_per_image, target["boxes"]))
    return matched_idxs
