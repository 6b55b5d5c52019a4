"""mc.metrics against direct computations: the confusion matrix against
scikit-learn's, IoU and pixel accuracy against per-class boolean masks
counted by hand, ignore_index, accumulation over batches, bad input."""
import numpy
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

import minicnn as mc
from minicnn import metrics


def _random_masks(seed=0, shape=(3, 17, 19), num_classes=5, ignore=255):
    rng = numpy.random.default_rng(seed)
    target = rng.integers(0, num_classes, shape)
    # Predictions right about 60% of the time, so the scores are far from 0 and 1.
    pred = numpy.where(rng.random(shape) < 0.6, target, rng.integers(0, num_classes, shape))
    target[rng.random(shape) < 0.1] = ignore
    return pred, target


def test_confusion_matrix_is_sklearns():
    pred, target = _random_masks()
    keep = target != 255
    cm = metrics.confusion_matrix(mc.tensor(pred), mc.tensor(target), num_classes=5, ignore_index=255)
    expected = sk_confusion_matrix(target[keep], pred[keep], labels=range(5))
    numpy.testing.assert_array_equal(cm, expected)
    assert cm.sum() == keep.sum() < target.size


def test_scores_against_boolean_masks():
    pred, target = _random_masks(seed=1)
    valid = target != 255
    cm = metrics.confusion_matrix(pred, target, 5, ignore_index=255)
    ious = []
    for c in range(5):
        inter = ((pred == c) & (target == c) & valid).sum()
        union = (((pred == c) | (target == c)) & valid).sum()
        ious.append(inter / union)
    numpy.testing.assert_allclose(metrics.iou(cm), ious, rtol=1e-12)
    assert metrics.mean_iou(cm) == pytest.approx(numpy.mean(ious), rel=1e-12)
    assert metrics.pixel_accuracy(cm) == pytest.approx(((pred == target) & valid).sum() / valid.sum(), rel=1e-12)


def test_absent_class_is_left_out_of_the_mean():
    target = numpy.array([[0, 0, 1, 1]])
    pred = numpy.array([[0, 1, 1, 1]])
    cm = metrics.confusion_matrix(pred, target, num_classes=4)       # classes 2 and 3 never occur
    values = metrics.iou(cm)
    assert values[0] == 0.5 and values[1] == pytest.approx(2 / 3) and numpy.isnan(values[2:]).all()
    assert metrics.mean_iou(cm) == pytest.approx((0.5 + 2 / 3) / 2)
    assert metrics.pixel_accuracy(cm) == 0.75
    assert numpy.isnan(metrics.mean_iou(numpy.zeros((3, 3), dtype=int)))


def test_accumulates_over_batches():
    pred, target = _random_masks(seed=2, shape=(6, 9, 9))
    running = metrics.ConfusionMatrix(5, ignore_index=255)
    for i in range(0, 6, 4):                                     # batches of 4 and 2
        running.update(pred[i:i + 4], target[i:i + 4])
    numpy.testing.assert_array_equal(running.mat, metrics.confusion_matrix(pred, target, 5, 255))
    scores = running.compute()
    assert scores["mean_iou"] == metrics.mean_iou(running.mat) and "mean IoU" in repr(running)
    running.reset()
    assert running.mat.sum() == 0


def test_bad_input():
    pred, target = _random_masks(ignore=4)
    with pytest.raises(ValueError, match="target holds class 4, outside 0..3 for num_classes=4"):
        metrics.confusion_matrix(pred % 4, target, num_classes=4)
    metrics.confusion_matrix(pred % 4, target, num_classes=4, ignore_index=4)    # ignored: fine
    with pytest.raises(ValueError, match="pred holds class"):
        metrics.confusion_matrix(pred, target % 4, num_classes=4)
    with pytest.raises(ValueError, match="same shape"):
        metrics.confusion_matrix(pred[:, None], target, num_classes=5)
    with pytest.raises(TypeError, match="integer class indices"):
        metrics.confusion_matrix(pred.astype(float), target, num_classes=5)
    with pytest.raises(ValueError, match="num_classes"):
        metrics.confusion_matrix(pred, target, num_classes=0)
    with pytest.raises(ValueError, match="square"):
        metrics.iou(numpy.zeros((2, 3)))
