"""Box geometry: areas, overlaps and format changes (``mc.ops``, torchvision.ops' names).

Notation: a box is four numbers; in the default ``"xyxy"`` format its
corners (x1, y1, x2, y2), with x1 <= x2 and y1 <= y2 for a proper box.
``boxes1`` (..., N, 4) and ``boxes2`` (..., M, 4) give (..., N, M)
tables of pairwise scores.

For two boxes A and B:

* area(A) = (x2 - x1)(y2 - y1);
* the intersection is the box of the larger top-left corner and the
  smaller bottom-right one, its sides clamped at 0 when A and B do not
  overlap: inter = max(0, min(x2) - max(x1)) * max(0, min(y2) - max(y1));
* IoU = inter / union, union = area(A) + area(B) - inter (Jaccard index);
* GIoU = IoU - (area(C) - union) / area(C), C the smallest box enclosing
  both (Rezatofighi et al. 2019): unlike IoU it still says how far apart
  two boxes that do not touch are, so a loss 1 - GIoU has a gradient.

Everything is written with differentiable ops, so the scores have
gradients with respect to the coordinates (torchvision's do too).
As in torchvision, a box with x2 < x1 is not refused: its area comes out
negative and its IoU is whatever the formula gives.
"""
from .. import functional as F
from ..backend import get_array_module
from ..tensor import Tensor

__all__ = ["box_area", "box_iou", "generalized_box_iou", "box_convert", "clip_boxes_to_image",
           "remove_small_boxes"]

FORMATS = ("xyxy", "xywh", "cxcywh")


def _check_boxes(boxes, op, name="boxes"):
    if not isinstance(boxes, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(boxes).__name__}")
    if boxes.ndim < 1 or boxes.shape[-1] != 4:
        raise ValueError(f"{op}: {name} must have shape (..., 4), got {tuple(boxes.shape)}")


def _check_format(fmt, op, name="fmt"):
    if fmt not in FORMATS:
        raise ValueError(f"{op}: {name} must be one of {FORMATS}, got {fmt!r} (rotated formats are not supported)")


def _upcast(boxes):
    """float16 as float32 and small ints as int32 before products can overflow (torchvision's rule)."""
    kind, size = boxes.dtype.kind, boxes.dtype.itemsize
    if kind == "f" and size < 4:
        return boxes.float()
    if kind in "iub" and size < 4:
        return boxes.int()
    return boxes


def box_area(boxes, fmt="xyxy"):
    """Areas of ``boxes`` (..., 4) in format ``fmt``: a (...) Tensor."""
    _check_boxes(boxes, "box_area")
    _check_format(fmt, "box_area")
    boxes = _upcast(boxes)
    if fmt == "xyxy":
        return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    return boxes[..., 2] * boxes[..., 3]


def _corners(boxes, fmt):
    """(top-left, bottom-right) of ``boxes``, each (..., 2)."""
    if fmt == "xyxy":
        return boxes[..., :2], boxes[..., 2:]
    if fmt == "xywh":
        return boxes[..., :2], boxes[..., :2] + boxes[..., 2:]
    return boxes[..., :2] - boxes[..., 2:] / 2, boxes[..., :2] + boxes[..., 2:] / 2


def _inter_union(boxes1, boxes2, fmt, op):
    """The (..., N, M) intersections and unions of every pair."""
    _check_boxes(boxes1, op, "boxes1")
    _check_boxes(boxes2, op, "boxes2")
    _check_format(fmt, op)
    if boxes1.ndim != boxes2.ndim or boxes1.shape[:-2] != boxes2.shape[:-2]:
        raise ValueError(f"{op}: boxes1 (..., N, 4) and boxes2 (..., M, 4) must have the same leading dims, "
                         f"got {tuple(boxes1.shape)} and {tuple(boxes2.shape)}")
    area1, area2 = box_area(boxes1, fmt), box_area(boxes2, fmt)
    (lt1, rb1), (lt2, rb2) = _corners(boxes1, fmt), _corners(boxes2, fmt)
    lt = F.maximum(F.unsqueeze(lt1, -2), F.unsqueeze(lt2, -3))      # (..., N, M, 2)
    rb = F.minimum(F.unsqueeze(rb1, -2), F.unsqueeze(rb2, -3))
    wh = F.clamp(_upcast(rb - lt), min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = F.unsqueeze(area1, -1) + F.unsqueeze(area2, -2) - inter
    return inter, union


def box_iou(boxes1, boxes2, fmt="xyxy"):
    """IoU of every pair: boxes1 (..., N, 4), boxes2 (..., M, 4) -> (..., N, M)."""
    inter, union = _inter_union(boxes1, boxes2, fmt, "box_iou")
    return inter / union


def generalized_box_iou(boxes1, boxes2):
    """GIoU of every pair of xyxy boxes: (..., N, 4), (..., M, 4) -> (..., N, M)."""
    inter, union = _inter_union(boxes1, boxes2, "xyxy", "generalized_box_iou")
    iou = inter / union
    lt = F.minimum(F.unsqueeze(boxes1[..., :2], -2), F.unsqueeze(boxes2[..., :2], -3))
    rb = F.maximum(F.unsqueeze(boxes1[..., 2:], -2), F.unsqueeze(boxes2[..., 2:], -3))
    wh = F.clamp(_upcast(rb - lt), min=0)
    enclosing = wh[..., 0] * wh[..., 1]
    return iou - (enclosing - union) / enclosing


def _to_xyxy(boxes, fmt):
    if fmt == "xyxy":
        return boxes
    if fmt == "xywh":
        x, y, w, h = (boxes[..., i] for i in range(4))
        return F.stack([x, y, x + w, y + h], dim=-1)
    cx, cy, w, h = (boxes[..., i] for i in range(4))
    return F.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def _from_xyxy(boxes, fmt):
    x1, y1, x2, y2 = (boxes[..., i] for i in range(4))
    if fmt == "xywh":
        return F.stack([x1, y1, x2 - x1, y2 - y1], dim=-1)
    return F.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def box_convert(boxes, in_fmt, out_fmt):
    """``boxes`` (..., 4) from ``in_fmt`` to ``out_fmt``, each one of
    ``"xyxy"`` (corners), ``"xywh"`` (top-left corner, width, height) or
    ``"cxcywh"`` (centre, width, height); a copy when they are equal.
    torchvision's rotated formats (xywhr, cxcywhr, xyxyxyxy) are not supported."""
    _check_boxes(boxes, "box_convert")
    _check_format(in_fmt, "box_convert", "in_fmt")
    _check_format(out_fmt, "box_convert", "out_fmt")
    if in_fmt == out_fmt:
        return boxes.clone()
    xyxy = _to_xyxy(boxes, in_fmt)
    return xyxy if out_fmt == "xyxy" else _from_xyxy(xyxy, out_fmt)


def clip_boxes_to_image(boxes, size):
    """``boxes`` (..., 4), xyxy, with x clamped to [0, width] and y to
    [0, height]; ``size`` = (height, width)."""
    _check_boxes(boxes, "clip_boxes_to_image")
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise ValueError(f"clip_boxes_to_image: size must be (height, width), got {size!r}")
    height, width = size
    xs = F.clamp(boxes[..., 0::2], min=0, max=width)
    ys = F.clamp(boxes[..., 1::2], min=0, max=height)
    return F.reshape(F.stack([xs, ys], dim=-1), boxes.shape)


def remove_small_boxes(boxes, min_size):
    """int64 indices (K,) of the xyxy ``boxes`` (N, 4) whose width and
    height are both at least ``min_size``."""
    _check_boxes(boxes, "remove_small_boxes")
    b = boxes.data
    xp = get_array_module(b)
    keep = ((b[..., 2] - b[..., 0]) >= min_size) & ((b[..., 3] - b[..., 1]) >= min_size)
    return Tensor._wrap(xp.nonzero(keep)[0].astype(xp.int64))
