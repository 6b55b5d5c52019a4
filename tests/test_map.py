"""mc.metrics.mean_average_precision against pycocotools' COCOeval (the
reference) on the same boxes: COCO's twelve summary numbers, on random
detections and on adversarial cases (no detections, no ground truth,
tied scores, tied IoUs, duplicates, more than 100 detections, custom
IoU thresholds)."""
import contextlib
import io

import numpy
import pytest

import minicnn as mc

pycocotools = pytest.importorskip("pycocotools", reason="pycocotools (the reference) is not installed")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

KEYS = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_1", "mar_10", "mar_100",
        "mar_small", "mar_medium", "mar_large"]


def _coco(images, annotations, categories):
    c = COCO()
    c.dataset = {"images": images, "annotations": annotations, "categories": categories}
    with contextlib.redirect_stdout(io.StringIO()):
        c.createIndex()
    return c


def _xywh(b):
    return [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]


def coco_stats(detections, ground_truths, iou_thresholds=None):
    """COCOeval's stats for the same boxes: ground truth as a COCO
    dataset (area w * h, no crowds), detections through loadRes."""
    images = [{"id": i + 1} for i in range(len(ground_truths))]
    labels = sorted({int(l) for g in ground_truths for l in g["labels"]} | {int(l) for d in detections
                                                                          for l in d["labels"]})
    annotations = []
    for i, g in enumerate(ground_truths):
        for b, l in zip(g["boxes"], g["labels"]):
            x, y, w, h = _xywh(b)
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(l),
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    gt = _coco(images, annotations, [{"id": c} for c in labels])
    results = [{"image_id": i + 1, "category_id": int(l), "bbox": _xywh(b), "score": float(s)}
               for i, d in enumerate(detections) for b, s, l in zip(d["boxes"], d["scores"], d["labels"])]
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results) if results else _coco(images, [], [{"id": c} for c in labels])
        evaluation = COCOeval(gt, dt, "bbox")
        if iou_thresholds is not None:
            evaluation.params.iouThrs = numpy.asarray(iou_thresholds, dtype=float)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation.stats


def check(detections, ground_truths, iou_thresholds=None):
    mine = mc.metrics.mean_average_precision(detections, ground_truths, iou_thresholds=iou_thresholds)
    expected = coco_stats(detections, ground_truths, iou_thresholds)
    assert list(mine) == KEYS
    numpy.testing.assert_allclose([mine[k] for k in KEYS], expected, rtol=1e-12, atol=1e-12)
    return mine


def random_scene(rng, n_images=12, classes=3, tie_scores=False, extra=0):
    """Ground truth of all sizes (small, medium, large) and detections:
    jittered copies of most boxes (some twice), misses, false alarms."""
    detections, ground_truths = [], []
    for _ in range(n_images):
        g = rng.integers(0, 7)
        xy = rng.uniform(0, 300, (g, 2))
        boxes = numpy.concatenate([xy, xy + rng.choice([12.0, 50.0, 140.0], (g, 1)) * rng.uniform(0.6, 1.4, (g, 2))], 1)
        labels = rng.integers(1, classes + 1, g)
        ground_truths.append({"boxes": boxes, "labels": labels})
        found = rng.random(g) < 0.8
        copies = numpy.concatenate([boxes[found], boxes[found][rng.random(found.sum()) < 0.3]])
        copy_labels = numpy.concatenate([labels[found], labels[found][rng.random(found.sum()) < 0.3]])[:len(copies)]
        copies = copies[:len(copy_labels)] + rng.normal(0, 4, (len(copy_labels), 4))
        f = rng.integers(0, 4) + extra
        xy = rng.uniform(0, 300, (f, 2))
        false = numpy.concatenate([xy, xy + rng.uniform(5, 120, (f, 2))], 1)
        d_boxes = numpy.concatenate([copies, false])
        d_labels = numpy.concatenate([copy_labels, rng.integers(1, classes + 1, f)])
        scores = rng.random(len(d_boxes))
        if tie_scores:
            scores = numpy.round(scores * 3) / 3
        detections.append({"boxes": d_boxes, "scores": scores, "labels": d_labels})
    return detections, ground_truths


@pytest.mark.parametrize("seed", range(4))
def test_random_detections_match_pycocotools(seed):
    detections, ground_truths = random_scene(numpy.random.default_rng(seed))
    scores = check(detections, ground_truths)
    assert 0 < scores["map"] < scores["map_50"] <= 1


def test_tied_scores_match_pycocotools():
    check(*random_scene(numpy.random.default_rng(9), tie_scores=True))


def test_more_than_100_detections_per_image_are_cut_as_in_coco():
    check(*random_scene(numpy.random.default_rng(4), n_images=3, classes=1, extra=130))


def test_custom_iou_thresholds_match_pycocotools():
    detections, ground_truths = random_scene(numpy.random.default_rng(5))
    check(detections, ground_truths, iou_thresholds=[0.3, 0.5, 0.9])
    scores = check(detections, ground_truths, iou_thresholds=[0.6])
    assert scores["map_50"] == -1 and scores["map_75"] == -1


def test_no_detections_score_zero_and_no_ground_truth_scores_minus_one():
    _, ground_truths = random_scene(numpy.random.default_rng(6))
    none = [{"boxes": numpy.zeros((0, 4)), "scores": numpy.zeros(0), "labels": numpy.zeros(0, int)}
            for _ in ground_truths]
    assert check(none, ground_truths)["map"] == 0.0
    detections, _ = random_scene(numpy.random.default_rng(6))
    empty = [{"boxes": numpy.zeros((0, 4)), "labels": numpy.zeros(0, int)} for _ in detections]
    assert all(v == -1 for v in check(detections, empty).values())


def test_tied_ious_duplicates_and_exact_thresholds():
    # Detection 0 overlaps both ground-truth boxes equally (COCO gives it
    # the later one); detection 1 duplicates box 0 exactly with the same
    # score as detection 2; detection 3's IoU with box 1 is exactly 0.5.
    gt = {"boxes": numpy.array([[0, 0, 10, 10], [10, 0, 20, 10], [0, 40, 40, 80.0]]), "labels": numpy.array([1, 1, 1])}
    det = {"boxes": numpy.array([[5, 0, 15, 10], [0, 0, 10, 10], [0, 40, 40, 80], [10, 0, 20, 20.0]]),
           "scores": numpy.array([0.9, 0.5, 0.5, 0.4]), "labels": numpy.array([1, 1, 1, 1])}
    check([det, det], [gt, gt])


def test_tensors_are_accepted_and_bad_input_is_refused():
    detections, ground_truths = random_scene(numpy.random.default_rng(2), n_images=3)
    as_tensors = [{k: mc.tensor(v) for k, v in d.items()} for d in detections]
    assert (mc.metrics.mean_average_precision(as_tensors, ground_truths)
            == mc.metrics.mean_average_precision(detections, ground_truths))
    with pytest.raises(ValueError, match="same images, got 3 and 2"):
        mc.metrics.mean_average_precision(detections, ground_truths[:2])
    with pytest.raises(ValueError, match=r"detections\[0\] lacks \['scores'\]"):
        mc.metrics.mean_average_precision([{"boxes": [], "labels": []}] + detections[1:], ground_truths)
    with pytest.raises(ValueError, match=r"ground_truths\[1\]\['boxes'\] must be \(N, 4\), got \(2, 3\)"):
        mc.metrics.mean_average_precision(detections[:2], [ground_truths[0], {"boxes": numpy.zeros((2, 3)),
                                                                              "labels": [1, 2]}])
    with pytest.raises(ValueError, match="iou_thresholds"):
        mc.metrics.mean_average_precision(detections, ground_truths, iou_thresholds=[1.5])
