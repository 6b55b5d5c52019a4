"""The detection losses of torchvision.ops: ``sigmoid_focal_loss``
(RetinaNet) and ``generalized_box_iou_loss``.

Focal loss (Lin et al. 2017): binary cross-entropy down-weighted where
the prediction is already right, so the many easy background anchors do
not swamp the few objects. With p = sigmoid(x) and p_t = p for a target
1, 1 - p for a target 0::

    FL = alpha_t (1 - p_t)^gamma * BCE(x, t)

alpha_t = alpha for targets 1 and 1 - alpha for 0 (alpha = -1: no
weighting). Targets may be soft (between 0 and 1): the formulas then
interpolate, as torchvision's do.

GIoU loss: 1 - GIoU of corresponding boxes (see ``boxes.py``), with eps
added to the union and to the enclosing area, as torchvision adds it.
"""
from .. import functional as F
from ..tensor import Tensor

__all__ = ["sigmoid_focal_loss", "generalized_box_iou_loss"]


def _reduce(loss, reduction, op, empty_mean=None):
    """``loss`` reduced; the mean of no elements is ``empty_mean`` times
    the (empty) sum if given, else nan (0 / 0)."""
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean() if loss.numel() > 0 or empty_mean is None else empty_mean * loss.sum()
    if reduction == "sum":
        return loss.sum()
    raise ValueError(f"{op}: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


def sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2, reduction="none"):
    """Focal loss of logits ``inputs`` against ``targets`` (same shape, 0
    or 1 or soft); ``reduction`` 'none' (elementwise), 'mean' or 'sum'.
    Unlike torchvision, 'mean' of no elements is 0 (not nan)... no: as torchvision, nan."""
    for name, value in (("inputs", inputs), ("targets", targets)):
        if not isinstance(value, Tensor):
            raise TypeError(f"sigmoid_focal_loss: {name} must be a Tensor, got {type(value).__name__}")
    if inputs.shape != targets.shape:
        raise ValueError(f"sigmoid_focal_loss: inputs and targets must have the same shape, got "
                         f"{tuple(inputs.shape)} and {tuple(targets.shape)}")
    if not (0 <= alpha <= 1) and alpha != -1:
        raise ValueError(f"sigmoid_focal_loss: alpha must be in [0, 1] or -1 (no weighting), got {alpha}")
    p = F.sigmoid(inputs)
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return _reduce(loss, reduction, "sigmoid_focal_loss")


def generalized_box_iou_loss(boxes1, boxes2, reduction="none", eps=1e-7):
    """1 - GIoU of each pair of corresponding xyxy boxes: ``boxes1`` and
    ``boxes2`` (..., 4) -> (...) for reduction 'none'; 'mean' of no boxes
    is 0, as in torchvision."""
    for name, value in (("boxes1", boxes1), ("boxes2", boxes2)):
        if not isinstance(value, Tensor):
            raise TypeError(f"generalized_box_iou_loss: {name} must be a Tensor, got {type(value).__name__}")
        if value.ndim < 1 or value.shape[-1] != 4:
            raise ValueError(f"generalized_box_iou_loss: {name} must have shape (..., 4), got {tuple(value.shape)}")
    if boxes1.shape != boxes2.shape:
        raise ValueError(f"generalized_box_iou_loss: boxes1 and boxes2 must have the same shape, got "
                         f"{tuple(boxes1.shape)} and {tuple(boxes2.shape)}")
    if boxes1.dtype.kind != "f":
        boxes1, boxes2 = boxes1.float(), boxes2.float()
    x1, y1, x2, y2 = (boxes1[..., i] for i in range(4))
    x1g, y1g, x2g, y2g = (boxes2[..., i] for i in range(4))
    # The intersection is 0 where the boxes do not overlap along an axis.
    iw, ih = F.minimum(x2, x2g) - F.maximum(x1, x1g), F.minimum(y2, y2g) - F.maximum(y1, y1g)
    overlap = (iw > 0) & (ih > 0)
    inter = F.where(overlap, iw * ih, 0.0 * iw)
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    iou = inter / (union + eps)
    enclosing = (F.maximum(x2, x2g) - F.minimum(x1, x1g)) * (F.maximum(y2, y2g) - F.minimum(y1, y1g))
    loss = 1 - (iou - (enclosing - union) / (enclosing + eps))
    return _reduce(loss, reduction, "generalized_box_iou_loss", empty_mean=0.0)
