"""Non-maximum suppression: ``nms`` and ``batched_nms`` (torchvision.ops' names).

A detector proposes many overlapping boxes for one object; NMS keeps the
best of each cluster. Greedily, in decreasing order of score: keep the
next box that is still in play, and take out of play every later box
whose IoU with it is greater than ``iou_threshold`` (see ``boxes.py`` for
IoU). The result is the kept indices, best score first.

The order is torchvision's exactly, ties included: its CPU kernel sorts
the scores with a *stable* descending sort, so of equal scores the box
with the lower index comes first, is kept first, and suppresses the
other; a NaN score sorts before every number (torch's sort puts NaN
highest). IoUs are computed in the boxes' dtype, as there, so a float32
IoU that lands on the threshold rounds the same way.

``batched_nms`` runs NMS within each category only. torchvision does it
two ways and so does this module, picking as it does: for small inputs
(at most 4000 coordinates) the *coordinate trick* shifts each category's
boxes by category * (max coordinate + 1) so that boxes of different
categories never overlap, then runs one NMS; above that, one NMS per
category, the kept indices merged by a stable descending sort of their
scores. The two can differ where a shifted float32 coordinate rounds, so
matching torchvision means matching its choice.

The greedy loop is the registry's ``nms`` primitive: a NumPy reference
here, a Numba kernel in ``kernels/cpu/nms.py`` and a CUDA one in
``kernels/cuda/nms.cu``.
"""
import numpy

from ..backend import get_array_module
from ..kernels import registry
from ..tensor import Tensor

__all__ = ["nms", "batched_nms"]


def descending_order(scores):
    """Indices sorting ``scores`` (N,) in decreasing order, stable (equal
    scores keep their index order) and NaN first, as torch sorts them."""
    xp = get_array_module(scores)
    n = scores.shape[0]
    # An ascending stable sort of the reversed scores, reversed again:
    # descending, equal scores by increasing index, NaN (sorted last) first.
    return (n - 1 - xp.argsort(scores[::-1], kind="stable"))[::-1]


@registry.register("nms", "numpy")
def nms_reference(boxes, scores, iou_threshold):
    """boxes (N, 4) xyxy, scores (N,) -> int64 indices of the kept boxes,
    best score first (see the module docstring)."""
    xp = get_array_module(boxes)
    order = descending_order(scores)
    x1, y1, x2, y2 = (boxes[order, i] for i in range(4))
    areas = (x2 - x1) * (y2 - y1)
    in_play = xp.ones(order.shape[0], dtype=bool)
    keep = []
    for i in range(order.shape[0]):
        if not in_play[i]:
            continue
        keep.append(order[i])
        w = xp.maximum(xp.minimum(x2[i], x2[i + 1:]) - xp.maximum(x1[i], x1[i + 1:]), 0)
        h = xp.maximum(xp.minimum(y2[i], y2[i + 1:]) - xp.maximum(y1[i], y1[i + 1:]), 0)
        inter = w * h
        # Two zero-area boxes give 0 / 0 = NaN, which suppresses nothing
        # (torchvision's rule); NumPy's warning about it is expected.
        with numpy.errstate(invalid="ignore", divide="ignore"):
            iou = inter / (areas[i] + areas[i + 1:] - inter)
        in_play[i + 1:] &= ~(iou > iou_threshold)
    return xp.asarray(keep, dtype=xp.int64)


registry.register("nms", "numba", "minicnn.kernels.cpu.nms:nms")


def _check(boxes, scores, op):
    for name, value in (("boxes", boxes), ("scores", scores)):
        if not isinstance(value, Tensor):
            raise TypeError(f"{op}: {name} must be a Tensor, got {type(value).__name__}")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{op}: boxes must have shape (N, 4), got {tuple(boxes.shape)}")
    if scores.ndim != 1 or scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"{op}: scores must have shape (N,) for boxes (N, 4), got scores {tuple(scores.shape)} "
                         f"and boxes {tuple(boxes.shape)}")
    if boxes.dtype.kind != "f" or scores.dtype != boxes.dtype:
        raise TypeError(f"{op}: boxes and scores must be floating point of one dtype, got {boxes.dtype} and "
                        f"{scores.dtype}")


def _nms(boxes, scores, iou_threshold):
    xp = get_array_module(boxes)
    if boxes.shape[0] == 0:
        return xp.empty(0, dtype=xp.int64)
    return registry.lookup("nms", xp)(boxes, scores, float(iou_threshold))


def nms(boxes, scores, iou_threshold):
    """Indices (int64 Tensor (K,)) of the ``boxes`` (N, 4), xyxy, that
    survive NMS at ``iou_threshold``, in decreasing order of ``scores`` (N,)."""
    _check(boxes, scores, "nms")
    return Tensor._wrap(_nms(boxes.data, scores.data, iou_threshold))


def batched_nms(boxes, scores, idxs, iou_threshold):
    """NMS within each category: ``idxs`` (N,) holds each box's category;
    boxes of different categories never suppress each other. Returns the
    kept indices (int64 Tensor (K,)) in decreasing order of score."""
    _check(boxes, scores, "batched_nms")
    if not isinstance(idxs, Tensor):
        raise TypeError(f"batched_nms: idxs must be a Tensor, got {type(idxs).__name__}")
    if idxs.shape != scores.shape:
        raise ValueError(f"batched_nms: idxs must have shape (N,) for boxes (N, 4), got idxs {tuple(idxs.shape)} "
                         f"and boxes {tuple(boxes.shape)}")
    b, s, c = boxes.data, scores.data, idxs.data
    xp = get_array_module(b)
    if b.size == 0:
        return Tensor._wrap(xp.empty(0, dtype=xp.int64))
    if b.size > 4000:
        keep = xp.zeros(s.shape[0], dtype=bool)
        for category in xp.unique(c):
            members = xp.nonzero(c == category)[0]
            keep[members[_nms(b[members], s[members], iou_threshold)]] = True
        kept = xp.nonzero(keep)[0]
        return Tensor._wrap(kept[descending_order(s[kept])].astype(xp.int64))
    offsets = c.astype(b.dtype) * (b.max() + b.dtype.type(1))
    return Tensor._wrap(_nms(b + offsets[:, None], s, iou_threshold))
