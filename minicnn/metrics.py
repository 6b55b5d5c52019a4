"""Segmentation metrics from a confusion matrix: ``mc.metrics``.

    cm = mc.metrics.confusion_matrix(pred, target, num_classes=11, ignore_index=255)
    mc.metrics.mean_iou(cm), mc.metrics.pixel_accuracy(cm)

Every per-pixel score of a segmentation is a function of one matrix:
``cm[i, j]`` = the number of pixels of true class i predicted as class j
(rows: truth, columns: prediction; scikit-learn's and torchmetrics'
convention). Summed over batches it gives the scores of the whole set,
not an average of per-batch scores (which would weigh small batches as
much as big ones). From it:

* pixel accuracy = trace(cm) / sum(cm), the fraction of pixels right
  (torchvision's reference scripts print it as "global correct");
* IoU of class c (the Jaccard index) = TP / (TP + FP + FN)
  = cm[c, c] / (row c sum + column c sum - cm[c, c]): the overlap of the
  predicted and the true region of c over their union;
* mean IoU = the mean of the IoUs over the classes (torchmetrics'
  ``JaccardIndex(average="macro")``, the "mIoU" of the segmentation
  tables). A class that is neither in the truth nor in the prediction
  has no union (0 / 0): it is left out of the mean rather than counted
  as 0 or 1 (torchvision's reference script would return nan).

``ignore_index``: pixels whose *target* is that value (Pascal VOC marks
object borders 255) are left out of the matrix entirely, as
``cross_entropy(..., ignore_index=...)`` leaves them out of the loss.

Notation: ``pred`` and ``target`` of the same shape, e.g. (N, H, W),
holding class indices 0..K-1 (K = ``num_classes``); take
``logits.argmax(1)`` of (N, K, H, W) scores to get ``pred``.
"""
import numpy

from .tensor import Tensor

__all__ = ["confusion_matrix", "iou", "mean_iou", "pixel_accuracy", "ConfusionMatrix"]


def _as_index_array(value, name):
    """``value`` (a Tensor, an array, nested lists) as a NumPy integer array."""
    array = value.numpy() if isinstance(value, Tensor) else numpy.asarray(value)
    if array.dtype.kind not in "iub":
        raise TypeError(f"confusion_matrix: {name} must hold integer class indices, got dtype {array.dtype}")
    return array.astype(numpy.int64, copy=False)


def confusion_matrix(pred, target, num_classes, ignore_index=None):
    """(K, K) int64 NumPy array: ``cm[i, j]`` counts the pixels of true
    class i predicted as j, over every pixel whose target is not
    ``ignore_index``. ``pred`` and ``target``: class indices of the same
    shape. A value outside 0..K-1 (other than an ignored target) is a
    ValueError: it is a mask made for another number of classes, and
    silently dropping it would inflate the scores."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"confusion_matrix: num_classes must be a positive int, got {num_classes!r}")
    pred = _as_index_array(pred, "pred")
    target = _as_index_array(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"confusion_matrix: pred and target must have the same shape, got {pred.shape} and "
                         f"{target.shape} (take logits.argmax(1) of (N, K, H, W) scores)")
    if ignore_index is not None:
        keep = target != ignore_index
        pred, target = pred[keep], target[keep]
    for name, values in (("target", target), ("pred", pred)):
        bad = values[(values < 0) | (values >= num_classes)]
        if bad.size:
            raise ValueError(f"confusion_matrix: {name} holds class {int(bad[0])}, outside 0..{num_classes - 1} "
                             f"for num_classes={num_classes}" + (" (and it is not ignore_index)"
                                                                 if name == "target" and ignore_index is not None
                                                                 else ""))
    # Pixel (t, p) lands in cell t * K + p of the flattened matrix.
    counts = numpy.bincount(target.ravel() * num_classes + pred.ravel(), minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _check_matrix(cm):
    cm = numpy.asarray(cm.numpy() if isinstance(cm, Tensor) else cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"expected a square (K, K) confusion matrix, got shape {cm.shape}")
    return cm


def iou(cm):
    """(K,) float64: the IoU of each class, nan for a class absent from
    both truth and prediction."""
    cm = _check_matrix(cm).astype(numpy.float64)
    tp = numpy.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    with numpy.errstate(invalid="ignore", divide="ignore"):
        return numpy.where(union > 0, tp / union, numpy.nan)


def mean_iou(cm):
    """The mean of ``iou(cm)`` over the classes that occur (truth or
    prediction); nan for an empty matrix."""
    values = iou(cm)
    present = values[~numpy.isnan(values)]
    return float(present.mean()) if present.size else float("nan")


def pixel_accuracy(cm):
    """trace(cm) / sum(cm): the fraction of counted pixels predicted
    right; nan for an empty matrix."""
    cm = _check_matrix(cm)
    total = cm.sum()
    return float(numpy.trace(cm) / total) if total else float("nan")


class ConfusionMatrix:
    """A confusion matrix summed over batches, as torchvision's reference
    scripts keep one: ``update(pred, target)`` per batch, then
    ``compute()`` -> {"pixel_accuracy", "mean_iou", "iou" (per class)}."""

    def __init__(self, num_classes, ignore_index=None):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.mat = numpy.zeros((num_classes, num_classes), dtype=numpy.int64)

    def update(self, pred, target):
        self.mat += confusion_matrix(pred, target, self.num_classes, self.ignore_index)

    def reset(self):
        self.mat[...] = 0

    def compute(self):
        return {"pixel_accuracy": pixel_accuracy(self.mat), "mean_iou": mean_iou(self.mat), "iou": iou(self.mat)}

    def __repr__(self):
        scores = self.compute()
        return (f"ConfusionMatrix({self.num_classes} classes, {int(self.mat.sum())} pixels: pixel accuracy "
                f"{scores['pixel_accuracy']:.4f}, mean IoU {scores['mean_iou']:.4f})")


# Detection: COCO's mAP, in its own module.
from .detection_metrics import mean_average_precision  # noqa: E402

__all__.append("mean_average_precision")
