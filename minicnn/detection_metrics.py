"""Mean average precision of detections, as COCO's evaluation computes it
(pycocotools' ``COCOeval`` for boxes): ``mc.metrics.mean_average_precision``.

    scores = mc.metrics.mean_average_precision(detections, ground_truths)
    scores["map"], scores["map_50"]      # COCO mAP@[.5:.95], mAP@.5 (the "VOC-style" figure)

``detections``: one dict per image, torchvision's detector output:
``boxes`` (D, 4) xyxy, ``scores`` (D,), ``labels`` (D,). ``ground_truths``:
one dict per image with ``boxes`` (G, 4) and ``labels`` (G,). Tensors or
arrays. No crowd annotations (every ground-truth box counts).

How COCO scores a class
-----------------------
Per image, the detections of the class, best score first (at most
``max_dets`` = 100), are matched greedily to its ground-truth boxes: a
detection takes the unmatched box it overlaps most with IoU >= t (of
equal IoUs, the later box). Over all images, the detections sorted by
score give a precision / recall curve; the precision is made monotone
(each point the best precision at any higher recall) and read at the 101
recalls 0, 0.01, ..., 1 (a recall the curve never reaches reads 0). AP is
the mean of those 101 values; mAP the mean over the classes that have
ground truth and over the IoU thresholds t = 0.5, 0.55, ..., 0.95. mAP@.5
is the same at t = 0.5 only: PASCAL VOC's measure, with COCO's 101-point
interpolation (VOC 2007 read 11 points, VOC 2010+ the whole curve).

Area ranges: a ground-truth box outside the range is *ignored* (matching
it neither helps nor hurts), and so is an unmatched detection outside it;
small is area < 32^2, medium 32^2..96^2, large > 96^2. Recall (``mar_*``)
is the recall reached with at most 1, 10 or 100 detections per image and
class, averaged the same way. A score no class can have (no ground truth
in that area range) is -1, as in COCOeval's summary.

Boxes are compared as COCO compares them: converted to (x, y, w, h),
areas w * h, in float64, so that these numbers are pycocotools' to the
last bit on the same boxes.
"""
import numpy

from .tensor import Tensor

__all__ = ["mean_average_precision"]

COCO_IOU_THRESHOLDS = numpy.linspace(0.5, 0.95, 10)
RECALL_POINTS = numpy.linspace(0.0, 1.0, 101)
AREA_RANGES = {"all": (0.0, 1e5 ** 2), "small": (0.0, 32.0 ** 2), "medium": (32.0 ** 2, 96.0 ** 2),
               "large": (96.0 ** 2, 1e5 ** 2)}
MAX_DETS = (1, 10, 100)


def _array(value, dtype=numpy.float64):
    array = value.detach().numpy_copy() if isinstance(value, Tensor) else numpy.asarray(value)
    return array.astype(dtype, copy=False)


def _image(entry, i, kind, keys):
    if not isinstance(entry, dict):
        raise TypeError(f"mean_average_precision: {kind}[{i}] must be a dict with keys {keys}, got "
                        f"{type(entry).__name__}")
    missing = [k for k in keys if k not in entry]
    if missing:
        raise ValueError(f"mean_average_precision: {kind}[{i}] lacks {missing} (it has {sorted(entry)})")
    boxes = _array(entry["boxes"])
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)                   # an empty list or (0,) array: no boxes
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"mean_average_precision: {kind}[{i}]['boxes'] must be (N, 4), got {boxes.shape}")
    out = {"boxes": boxes, "labels": _array(entry["labels"], numpy.int64).reshape(-1)}
    if "scores" in keys:
        out["scores"] = _array(entry["scores"]).reshape(-1)
    for k, v in out.items():
        if v.shape[0] != boxes.shape[0]:
            raise ValueError(f"mean_average_precision: {kind}[{i}] has {boxes.shape[0]} boxes but {k} of shape "
                             f"{v.shape}")
    # COCO's representation: (x, y, w, h), area w * h.
    x, y = boxes[:, 0], boxes[:, 1]
    w, h = boxes[:, 2] - x, boxes[:, 3] - y
    out["xywh"], out["area"] = numpy.stack([x, y, w, h], 1), w * h
    return out


def _iou(dt, gt):
    """(D, G) IoU of (x, y, w, h) boxes, computed as COCO's bbIou does."""
    if not len(dt) or not len(gt):
        return numpy.zeros((len(dt), len(gt)))
    d, g = dt[:, None, :], gt[None, :, :]
    w = numpy.minimum(d[..., 0] + d[..., 2], g[..., 0] + g[..., 2]) - numpy.maximum(d[..., 0], g[..., 0])
    h = numpy.minimum(d[..., 1] + d[..., 3], g[..., 1] + g[..., 3]) - numpy.maximum(d[..., 1], g[..., 1])
    inter = numpy.where((w > 0) & (h > 0), w * h, 0.0)
    union = d[..., 2] * d[..., 3] + g[..., 2] * g[..., 3] - inter
    with numpy.errstate(invalid="ignore", divide="ignore"):
        return numpy.where(inter > 0, inter / union, 0.0)


def _match(ious, gt_ignored, thresholds):
    """COCO's greedy matching of detections (rows, best score first) to
    ground truth (columns, ignored ones last): (T, D) index of the matched
    box or -1."""
    matched = numpy.full((len(thresholds), ious.shape[0]), -1)
    for t, threshold in enumerate(thresholds):
        taken = numpy.zeros(ious.shape[1], dtype=bool)
        for d in range(ious.shape[0]):
            floor = min(threshold, 1 - 1e-10)
            # A box that is not ignored wins over an ignored one; among
            # equals, the highest IoU, the last of equal IoUs.
            for group in (~gt_ignored, gt_ignored):
                candidates = numpy.nonzero(group & ~taken & (ious[d] >= floor))[0]
                if candidates.size:
                    best = candidates[ious[d, candidates] == ious[d, candidates].max()][-1]
                    matched[t, d] = best
                    taken[best] = True
                    break
    return matched


def _evaluate_image(dt, gt, area_range, thresholds):
    """One image and class: (scores, matched (T, D), detection ignored
    (T, D), ground truth ignored (G,)), or None for no boxes at all."""
    if not len(dt["scores"]) and not len(gt["area"]):
        return None
    lo, hi = area_range
    gt_ignored = (gt["area"] < lo) | (gt["area"] > hi)
    gt_order = numpy.argsort(gt_ignored, kind="stable")
    gt_ignored = gt_ignored[gt_order]
    ious = dt["ious"][:, gt_order]
    matched = _match(ious, gt_ignored, thresholds)
    dt_ignored = (matched >= 0) & numpy.append(gt_ignored, False)[matched]   # matched to an ignored box
    outside = (dt["area"] < lo) | (dt["area"] > hi)
    dt_ignored |= (matched < 0) & outside[None, :]
    return dt["scores"], matched >= 0, dt_ignored, gt_ignored


def _precision_recall(evaluations, max_det, n_thresholds):
    """(precision (T, R), recall (T,)) of one class over all images, -1
    where the class has no ground truth that counts."""
    evaluations = [e for e in evaluations if e is not None]
    precision, recall = -numpy.ones((n_thresholds, len(RECALL_POINTS))), -numpy.ones(n_thresholds)
    if not evaluations:
        return precision, recall
    scores = numpy.concatenate([e[0][:max_det] for e in evaluations])
    order = numpy.argsort(-scores, kind="mergesort")
    matched = numpy.concatenate([e[1][:, :max_det] for e in evaluations], axis=1)[:, order]
    ignored = numpy.concatenate([e[2][:, :max_det] for e in evaluations], axis=1)[:, order]
    positives = sum(int(numpy.count_nonzero(~e[3])) for e in evaluations)
    if positives == 0:
        return precision, recall
    tp = numpy.cumsum(matched & ~ignored, axis=1).astype(float)
    fp = numpy.cumsum(~matched & ~ignored, axis=1).astype(float)
    for t in range(n_thresholds):
        n = tp.shape[1]
        rc = tp[t] / positives
        pr = tp[t] / (fp[t] + tp[t] + numpy.spacing(1))
        recall[t] = rc[-1] if n else 0.0
        pr = numpy.maximum.accumulate(pr[::-1])[::-1] if n else pr    # monotone: best precision to the right
        at = numpy.searchsorted(rc, RECALL_POINTS, side="left")
        q = numpy.zeros(len(RECALL_POINTS))
        reached = at < n                   # recall points past the curve's end read 0
        q[reached] = pr[at[reached]]
        precision[t] = q
    return precision, recall


def _mean(values):
    kept = values[values > -1]
    return float(numpy.mean(kept)) if kept.size else -1.0


def mean_average_precision(detections, ground_truths, iou_thresholds=None):
    """COCO's box evaluation of ``detections`` against ``ground_truths``
    (see the module docstring): a dict of COCOeval's twelve summary
    numbers, ``map`` (AP at IoU 0.5:0.95, 100 detections), ``map_50``,
    ``map_75``, ``map_small``, ``map_medium``, ``map_large``, ``mar_1``,
    ``mar_10``, ``mar_100``, ``mar_small``, ``mar_medium``, ``mar_large``.
    ``iou_thresholds`` replaces COCO's ten (``map`` then averages over
    them; ``map_50`` / ``map_75`` are -1 unless 0.5 / 0.75 are among them)."""
    if len(detections) != len(ground_truths):
        raise ValueError(f"mean_average_precision: detections and ground_truths must list the same images, got "
                         f"{len(detections)} and {len(ground_truths)}")
    thresholds = COCO_IOU_THRESHOLDS if iou_thresholds is None else numpy.asarray(iou_thresholds, dtype=float)
    if thresholds.ndim != 1 or not thresholds.size or ((thresholds < 0) | (thresholds > 1)).any():
        raise ValueError(f"mean_average_precision: iou_thresholds must be a non-empty list of values in [0, 1], "
                         f"got {iou_thresholds!r}")
    dts = [_image(d, i, "detections", ("boxes", "scores", "labels")) for i, d in enumerate(detections)]
    gts = [_image(g, i, "ground_truths", ("boxes", "labels")) for i, g in enumerate(ground_truths)]
    classes = numpy.unique(numpy.concatenate([g["labels"] for g in gts])) if gts else numpy.zeros(0, int)

    # precision[t, r, class, area, max_dets], recall[t, class, area, max_dets]
    precision = -numpy.ones((len(thresholds), len(RECALL_POINTS), len(classes), len(AREA_RANGES), len(MAX_DETS)))
    recall = -numpy.ones((len(thresholds), len(classes), len(AREA_RANGES), len(MAX_DETS)))
    for k, c in enumerate(classes):
        pairs = []
        for dt, gt in zip(dts, gts):
            d = dt["labels"] == c
            order = numpy.argsort(-dt["scores"][d], kind="mergesort")[:MAX_DETS[-1]]
            det = {key: dt[key][d][order] for key in ("scores", "xywh", "area")}
            truth = {key: gt[key][gt["labels"] == c] for key in ("xywh", "area")}
            det["ious"] = _iou(det["xywh"], truth["xywh"])
            pairs.append((det, truth))
        for a, area_range in enumerate(AREA_RANGES.values()):
            evaluations = [_evaluate_image(det, truth, area_range, thresholds) for det, truth in pairs]
            for m, max_det in enumerate(MAX_DETS):
                precision[:, :, k, a, m], recall[:, k, a, m] = _precision_recall(evaluations, max_det,
                                                                                 len(thresholds))

    def at(threshold, values):
        hit = numpy.nonzero(numpy.isclose(thresholds, threshold, rtol=0, atol=1e-12))[0]
        return values[hit] if hit.size else -numpy.ones(1)

    area = {name: a for a, name in enumerate(AREA_RANGES)}
    last = len(MAX_DETS) - 1
    return {
        "map": _mean(precision[:, :, :, area["all"], last]),
        "map_50": _mean(at(0.5, precision[:, :, :, area["all"], last])),
        "map_75": _mean(at(0.75, precision[:, :, :, area["all"], last])),
        "map_small": _mean(precision[:, :, :, area["small"], last]),
        "map_medium": _mean(precision[:, :, :, area["medium"], last]),
        "map_large": _mean(precision[:, :, :, area["large"], last]),
        "mar_1": _mean(recall[:, :, area["all"], 0]),
        "mar_10": _mean(recall[:, :, area["all"], 1]),
        "mar_100": _mean(recall[:, :, area["all"], last]),
        "mar_small": _mean(recall[:, :, area["small"], last]),
        "mar_medium": _mean(recall[:, :, area["medium"], last]),
        "mar_large": _mean(recall[:, :, area["large"], last]),
    }
