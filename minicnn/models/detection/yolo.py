"""The book's one-stage detector, YOLO style, small enough to train on a
CPU: ``yolo_small``.

YOLO (Redmon et al., 2016) reads detection as one regression over a grid.
A small conv net turns the image into an S_h x S_w grid of cells, one
cell per ``stride`` x ``stride`` patch; the cell that holds an object's
*centre* is responsible for it and predicts, from one feature vector:

* an objectness logit (is there an object centred here?);
* a box: the centre's offset inside the cell (two logits, squashed to
  (0, 1) by a sigmoid: the centre cannot leave its cell) and the width
  and height as log-ratios to a fixed ``prior`` size (as YOLOv2's
  anchors: ``w = prior * exp(t_w)``, always positive);
* class scores for the K - 1 object classes (label 0 is the background,
  as in torchvision, and never predicted).

Notation: (N, C, H, W) images; S_h = H / stride, S_w = W / stride cells;
K = ``num_classes`` (background included); A = 5 + (K - 1) channels per
cell, in the order [objectness, t_x, t_y, t_w, t_h, class logits...].

Target encoding (``encode_targets``), for a box (x1, y1, x2, y2) with
centre (c_x, c_y) and size (w, h), in the cell (i, j) = (floor(c_y / s),
floor(c_x / s)):

    t_x = c_x / s - j,   t_y = c_y / s - i,   t_w = log(w / prior),   t_h = log(h / prior)

and ``decode_boxes`` inverts it exactly. If two boxes centre in one cell
(rare in digit scenes, whose digits never overlap), the larger one is
the cell's target and the smaller is not learnt.

Loss (training mode, ``model(images, targets)``), each term summed over
the batch and divided by the number of objects P (as RetinaNet and FCOS
normalise):

* ``loss_objectness``: binary cross entropy of every cell's objectness
  (1 where an object is centred, 0 elsewhere);
* ``loss_box``: squared error of (sigmoid(t_x), sigmoid(t_y), t_w, t_h)
  against the targets, at the P responsible cells only;
* ``loss_classifier``: cross entropy of the class logits, at those cells.

Detection (eval mode, ``model(images)``): the score of class k at a cell
is sigmoid(objectness) x softmax(class logits)_k (YOLO's class-specific
confidence); every (cell, class) scoring above ``score_thresh`` gives a
box, clipped to the image; ``batched_nms`` at ``nms_thresh`` removes
overlapping boxes of one class and the ``detections_per_img`` best
remain. The output is torchvision's: one dict per image with ``boxes``
(D, 4) xyxy in pixels, ``scores`` (D,) and ``labels`` (D,) int64.

Differences from torchvision's detectors: the input is one (N, C, H, W)
batch of same-sized images (no list of images, no resizing transform,
no normalisation: the digit scenes are already in [0, 1]); H and W must
be multiples of ``stride``.
"""
import math

import numpy

from ... import functional as F
from ... import nn
from ...autograd import no_grad
from ...ops import batched_nms, clip_boxes_to_image
from ...tensor import Tensor
from ..registry import register_model

__all__ = ["YOLOSmall", "yolo_small", "encode_targets", "decode_boxes"]

#: The ignore_index of the class targets: cells with no object.
NO_OBJECT = -100


def encode_targets(targets, grid_size, stride, prior):
    """The grid targets of ``targets`` (one dict per image, ``boxes``
    (G, 4) xyxy in pixels and ``labels`` (G,) in 1..K-1) on a grid of
    ``grid_size`` = (S_h, S_w) cells of ``stride`` pixels (module
    docstring). Returns NumPy arrays: ``objectness`` (N, S_h, S_w) float32
    (1 at a responsible cell), ``boxes`` (N, 4, S_h, S_w) float32
    (t_x, t_y, t_w, t_h; 0 elsewhere) and ``labels`` (N, S_h, S_w) int64
    (label - 1, the class logit's index; NO_OBJECT elsewhere)."""
    sh, sw = grid_size
    n = len(targets)
    objectness = numpy.zeros((n, sh, sw), numpy.float32)
    boxes = numpy.zeros((n, 4, sh, sw), numpy.float32)
    labels = numpy.full((n, sh, sw), NO_OBJECT, numpy.int64)
    for b, target in enumerate(targets):
        xyxy = numpy.asarray(target["boxes"], numpy.float64).reshape(-1, 4)
        w, h = xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]
        cx, cy = xyxy[:, 0] + w / 2, xyxy[:, 1] + h / 2
        # A centre on the image's far edge belongs to the last cell.
        j = numpy.clip(numpy.floor(cx / stride).astype(numpy.int64), 0, sw - 1)
        i = numpy.clip(numpy.floor(cy / stride).astype(numpy.int64), 0, sh - 1)
        for k in numpy.argsort(w * h, kind="stable"):      # larger boxes written last: they win a shared cell
            objectness[b, i[k], j[k]] = 1.0
            boxes[b, :, i[k], j[k]] = (cx[k] / stride - j[k], cy[k] / stride - i[k],
                                       math.log(w[k] / prior), math.log(h[k] / prior))
            labels[b, i[k], j[k]] = int(target["labels"][k]) - 1
    return {"objectness": objectness, "boxes": boxes, "labels": labels}


def decode_boxes(params, stride, prior):
    """The boxes (N, S_h, S_w, 4) xyxy in pixels that the cell parameters
    ``params`` (N, 4, S_h, S_w): (t_x, t_y, t_w, t_h), offsets already in
    cell units) stand for: the inverse of ``encode_targets``. A NumPy array
    in, a NumPy array out."""
    _, _, sh, sw = params.shape
    rows, cols = numpy.meshgrid(numpy.arange(sh), numpy.arange(sw), indexing="ij")
    cx, cy = (cols + params[:, 0]) * stride, (rows + params[:, 1]) * stride
    w, h = prior * numpy.exp(params[:, 2]), prior * numpy.exp(params[:, 3])
    return numpy.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def _conv(in_channels, out_channels, stride=1):
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def _check_targets(targets, n, num_classes):
    """A clear error for targets that are not one {boxes, labels} dict per
    image, labels in 1..num_classes-1 (0 is the background)."""
    if not isinstance(targets, (list, tuple)) or len(targets) != n:
        raise ValueError(f"YOLOSmall: in training mode, targets must be a list of {n} dicts (one per image) with "
                         f"'boxes' and 'labels', got {type(targets).__name__}"
                         + (f" of length {len(targets)}" if isinstance(targets, (list, tuple)) else ""))
    for k, target in enumerate(targets):
        missing = [key for key in ("boxes", "labels") if not isinstance(target, dict) or key not in target]
        if missing:
            raise ValueError(f"YOLOSmall: targets[{k}] lacks {missing}; each target needs 'boxes' (G, 4) xyxy and "
                             f"'labels' (G,)")
        boxes = numpy.asarray(_numpy(target["boxes"]))
        labels = numpy.asarray(_numpy(target["labels"]))
        if boxes.ndim != 2 or boxes.shape[1] != 4 or labels.shape != (boxes.shape[0],):
            raise ValueError(f"YOLOSmall: targets[{k}] has boxes of shape {boxes.shape} and labels of shape "
                             f"{labels.shape}; expected (G, 4) and (G,)")
        if boxes.size and not ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all():
            raise ValueError(f"YOLOSmall: targets[{k}] holds a box with x2 <= x1 or y2 <= y1: boxes are "
                             f"(x1, y1, x2, y2) with positive width and height")
        if labels.size and (labels.min() < 1 or labels.max() >= num_classes):
            raise ValueError(f"YOLOSmall: targets[{k}]['labels'] must lie in [1, {num_classes}) (0 is the "
                             f"background), got values in [{labels.min()}, {labels.max()}]")


def _numpy(value):
    return value.numpy() if isinstance(value, Tensor) else value


class YOLOSmall(nn.Module):
    """The book's YOLO-style grid detector (module docstring): four conv
    stages halving H and W three times (stride 8 by default), two convs at
    the grid's resolution for context, and a 1x1 head of A = 4 + K
    channels per cell. 0.44M parameters with the default widths.

    ``num_classes`` K counts the background (11 for the digit scenes);
    ``in_channels`` 1 or 3; ``widths`` the four stages' channels;
    ``prior`` the box size (pixels) that t_w = t_h = 0 stands for;
    ``score_thresh``, ``nms_thresh``, ``detections_per_img`` as
    torchvision's detectors name them."""

    def __init__(self, num_classes=11, in_channels=1, widths=(16, 32, 64, 128), prior=16.0, score_thresh=0.05,
                 nms_thresh=0.5, detections_per_img=100):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"YOLOSmall: num_classes counts the background and must be at least 2, got {num_classes}")
        self.num_classes, self.in_channels, self.prior = num_classes, in_channels, float(prior)
        self.score_thresh, self.nms_thresh, self.detections_per_img = score_thresh, nms_thresh, detections_per_img
        self.stride = 2 ** (len(widths) - 1)
        layers, channels = [_conv(in_channels, widths[0])], widths[0]
        for width in widths[1:]:
            layers += [_conv(channels, width, stride=2), _conv(width, width)]
            channels = width
        layers.append(_conv(channels, channels))
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(channels, 5 + num_classes - 1, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)
        # Objects are rare among cells: start every cell at objectness 0.01
        # (RetinaNet's prior), so that the empty cells do not swamp the first steps.
        with no_grad():
            self.head.bias.data[0] = -math.log((1 - 0.01) / 0.01)

    def forward(self, images, targets=None):
        """Training mode: the loss dict for ``targets`` (one dict per image,
        ``boxes`` (G, 4) xyxy pixels, ``labels`` (G,) in 1..K-1). Eval
        mode: the detections, one dict per image (module docstring)."""
        shape = tuple(getattr(images, "shape", ()))
        if len(shape) != 4 or shape[1] != self.in_channels:
            raise ValueError(f"YOLOSmall expects images of shape (N, {self.in_channels}, H, W), got {shape}")
        if shape[2] % self.stride or shape[3] % self.stride:
            raise ValueError(f"YOLOSmall: H and W must be multiples of the stride {self.stride}, got {shape[2:]}")
        if self.training and targets is None:
            raise ValueError("YOLOSmall: targets should not be None in training mode (a loss needs them); call "
                             "model.eval() to detect")
        if targets is not None:
            _check_targets(targets, shape[0], self.num_classes)
        output = self.head(self.features(images))
        if self.training:
            return self.loss(output, targets)
        return self.postprocess(output, shape[2:])

    def loss(self, output, targets):
        """The loss dict (module docstring) of the head's ``output``
        (N, A, S_h, S_w) against ``targets``."""
        grid = encode_targets([{k: _numpy(v) for k, v in t.items()} for t in targets], output.shape[2:],
                              self.stride, self.prior)
        positives = Tensor._wrap(grid["objectness"].astype(output.dtype))
        count = max(1.0, float(grid["objectness"].sum()))
        loss_objectness = F.binary_cross_entropy_with_logits(output[:, 0], positives, reduction="sum")
        where = positives.unsqueeze(1)
        predicted = F.cat([F.sigmoid(output[:, 1:3]), output[:, 3:5]], dim=1)
        loss_box = F.mse_loss(predicted * where, Tensor._wrap(grid["boxes"].astype(output.dtype)), reduction="sum")
        loss_classifier = F.cross_entropy(output[:, 5:], Tensor._wrap(grid["labels"]), ignore_index=NO_OBJECT,
                                          reduction="sum")
        return {"loss_objectness": loss_objectness / count, "loss_box": loss_box / count,
                "loss_classifier": loss_classifier / count}

    def postprocess(self, output, image_size):
        """The detections (one dict per image) of the head's ``output``
        (N, A, S_h, S_w) for images of ``image_size`` (H, W)."""
        raw = output.detach().numpy().astype(numpy.float64)
        params = numpy.concatenate([1 / (1 + numpy.exp(-raw[:, 1:3])), raw[:, 3:5]], axis=1)
        boxes = decode_boxes(params, self.stride, self.prior)                     # (N, S_h, S_w, 4)
        objectness = 1 / (1 + numpy.exp(-raw[:, 0]))
        logits = raw[:, 5:] - raw[:, 5:].max(axis=1, keepdims=True)
        classes = numpy.exp(logits) / numpy.exp(logits).sum(axis=1, keepdims=True)
        scores = (objectness[:, None] * classes).transpose(0, 2, 3, 1)          # (N, S_h, S_w, K - 1)
        dtype = output.dtype
        detections = []
        for b in range(raw.shape[0]):
            cells, labels = numpy.nonzero(scores[b].reshape(-1, scores.shape[-1]) > self.score_thresh)
            kept_boxes = Tensor._wrap(boxes[b].reshape(-1, 4)[cells].astype(dtype))
            kept_scores = Tensor._wrap(scores[b].reshape(-1, scores.shape[-1])[cells, labels].astype(dtype))
            kept_labels = Tensor._wrap(labels.astype(numpy.int64) + 1)
            kept_boxes = clip_boxes_to_image(kept_boxes, tuple(image_size))
            keep = batched_nms(kept_boxes, kept_scores, kept_labels, self.nms_thresh).numpy()
            keep = keep[:self.detections_per_img]
            detections.append({"boxes": Tensor._wrap(kept_boxes.numpy()[keep]),
                               "scores": Tensor._wrap(kept_scores.numpy()[keep]),
                               "labels": Tensor._wrap(kept_labels.numpy()[keep])})
        return detections


@register_model
def yolo_small(*, weights=None, progress=True, **kwargs):
    """The book's YOLO-style grid detector (module docstring), for the
    digit scenes by default (``num_classes=11``, one grey channel).
    ``kwargs`` go to YOLOSmall."""
    from .._layers import _check_weights

    _check_weights(weights, "yolo_small")
    return YOLOSmall(**kwargs)
