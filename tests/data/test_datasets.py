"""mc.datasets: the digits split and the sample photos."""
import numpy
import pytest
from sklearn.datasets import load_digits

import minicnn as mc
from minicnn.utils.data import DataLoader


def test_digits_split_is_stratified_disjoint_and_complete():
    train, test = mc.datasets.digits(), mc.datasets.digits(train=False)
    assert len(train) + len(test) == 1797 and len(test) == 360
    assert train.data.shape == (1437, 1, 8, 8) and train.data.dtype == mc.float32
    assert float(train.data.data.min()) == 0.0 and float(train.data.data.max()) == 1.0
    # Every original image lands in exactly one part.
    original = load_digits().images.reshape(1797, -1) / 16
    rows = numpy.concatenate([train.data.data, test.data.data]).reshape(1797, -1)
    assert len({r.tobytes() for r in rows}) == len({r.tobytes() for r in original.astype(numpy.float32)})
    # Stratified: each digit is about 20% test.
    counts = numpy.bincount(test.targets.data, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37
    assert train.classes == [str(d) for d in range(10)]


def test_digits_split_depends_only_on_the_seed():
    a, b = mc.datasets.digits(False, seed=0), mc.datasets.digits(False, seed=0)
    numpy.testing.assert_array_equal(a.data.data, b.data.data)
    c = mc.datasets.digits(False, seed=1)
    assert not numpy.array_equal(a.targets.data, c.targets.data)


def test_digits_resized_and_padded_for_lenet():
    test = mc.datasets.digits(False, resize=28, pad=2)
    small = mc.datasets.digits(False)
    assert test.data.shape == (360, 1, 32, 32)
    border = numpy.ones((32, 32), bool)
    border[2:30, 2:30] = False
    assert not test.data.data[:, 0][:, border].any()
    # The resize is mc.transforms.Resize: checked against torch there.
    numpy.testing.assert_allclose(test.data.data[:, :, 2:30, 2:30],
                                  mc.transforms.Resize(28, antialias=False)(small.data.data), rtol=1e-6)


def test_digits_samples_and_transforms_through_a_loader():
    data = mc.datasets.digits(transform=mc.transforms.Normalize([0.5], [0.5]), target_transform=lambda y: 9 - y)
    image, label = data[0]
    assert isinstance(image, mc.Tensor) and image.shape == (1, 8, 8) and isinstance(label, int)
    assert label == 9 - int(data.targets.data[0])
    images, labels = next(iter(DataLoader(data, batch_size=16)))
    assert images.shape == (16, 1, 8, 8) and labels.dtype == mc.int64
    assert float(images.data.min()) == -1.0


def test_digits_bad_arguments():
    with pytest.raises(ValueError, match="pad"):
        mc.datasets.digits(pad=-1)
    with pytest.raises(ValueError, match="resize"):
        mc.datasets.digits(resize=(0, 3))


def test_sample_images():
    photos = mc.datasets.sample_images()
    assert photos.shape == (2, 3, 427, 640) and photos.dtype == mc.float32
    assert 0.0 <= float(photos.data.min()) and float(photos.data.max()) <= 1.0
    assert float(photos.data.std()) > 0.1
