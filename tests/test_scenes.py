"""mc.datasets.digit_scenes: deterministic from its arguments, split by
source scan (no held-out scan in a training scene), and every scene's
mask, boxes and labels telling the same story as its pixels."""
import numpy
import pytest
from sklearn.datasets import load_digits

import minicnn as mc
from minicnn.scenes import INK_THRESHOLD


@pytest.fixture(scope="module")
def scenes():
    return (mc.datasets.digit_scenes(train=True, num_scenes=300),
            mc.datasets.digit_scenes(train=False, num_scenes=300))


def test_deterministic():
    a = mc.datasets.digit_scenes(num_scenes=20, seed=3)
    b = mc.datasets.digit_scenes(num_scenes=20, seed=3)
    c = mc.datasets.digit_scenes(num_scenes=20, seed=4)
    numpy.testing.assert_array_equal(a.images, b.images)
    numpy.testing.assert_array_equal(a.masks, b.masks)
    for x, y in zip(a.boxes + a.labels, b.boxes + b.labels):
        numpy.testing.assert_array_equal(x, y)
    assert not numpy.array_equal(a.masks, c.masks)


def test_split_by_source_scan(scenes):
    train, test = scenes
    train_sources = set(numpy.concatenate(train.sources).tolist())
    test_sources = set(numpy.concatenate(test.sources).tolist())
    assert train_sources and test_sources and not train_sources & test_sources
    # The held-out scans are mc.datasets.digits' held-out images, whatever the scenes' seed.
    held_out = mc.datasets.digits(train=False).data.numpy()[:, 0]
    scans = load_digits().images / 16.0
    other_seed = mc.datasets.digit_scenes(train=False, num_scenes=50, seed=7)
    for k in set(numpy.concatenate(other_seed.sources).tolist()) | test_sources:
        assert numpy.abs(held_out - scans[k]).reshape(len(held_out), -1).max(1).min() < 1e-6


def test_sample_format(scenes):
    train, _ = scenes
    image, target = train[0]
    assert image.shape == (1, 64, 64) and image.dtype == numpy.float32
    assert target["mask"].shape == (64, 64) and target["mask"].dtype == numpy.int64
    k = len(target["labels"])
    assert 1 <= k <= 4 and target["boxes"].shape == (k, 4) and target["labels"].dtype == numpy.int64
    assert train.classes[0] == "background" and train.classes[1:] == [str(d) for d in range(10)]
    rgb = mc.datasets.digit_scenes(num_scenes=2, channels=3, size=48, max_digits=2)
    assert rgb.images.shape == (2, 3, 48, 48)
    numpy.testing.assert_array_equal(rgb.images[:, 0], rgb.images[:, 2])


def test_masks_agree_with_boxes_and_pixels(scenes):
    train, test = scenes
    counts = numpy.zeros(11, dtype=int)
    for data in (train, test):
        for image, mask, boxes, labels in zip(data.images, data.masks, data.boxes, data.labels):
            assert 0.0 <= image.min() and image.max() <= 1.0
            covered = numpy.zeros(mask.shape, dtype=bool)
            for (x1, y1, x2, y2), label in zip(boxes.astype(int), labels):
                assert 1 <= label <= 10 and 0 <= x1 < x2 <= 64 and 0 <= y1 < y2 <= 64
                inside = mask[y1:y2, x1:x2]
                # The box is tight around its digit's ink: every border row and column has some.
                ink = inside == label
                assert ink[0].any() and ink[-1].any() and ink[:, 0].any() and ink[:, -1].any()
                assert numpy.isin(inside, [0, label]).all()          # no other digit inside
                covered[y1:y2, x1:x2] = True
                counts[label] += 1
            assert (mask[~covered] == 0).all()                      # no ink outside the boxes
            # Ink is bright: above the threshold times the weakest contrast.
            assert (image[0][mask > 0] >= 0.6 * INK_THRESHOLD - 1e-6).all()
    assert (counts[1:] > 0).all()                                   # every digit appears


def test_bad_arguments():
    with pytest.raises(ValueError, match="size must be an int >= 16"):
        mc.datasets.digit_scenes(size=8)
    with pytest.raises(ValueError, match="max_digits"):
        mc.datasets.digit_scenes(max_digits=0)
    with pytest.raises(ValueError, match="num_scenes"):
        mc.datasets.digit_scenes(num_scenes=0)
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        mc.datasets.digit_scenes(channels=2)
