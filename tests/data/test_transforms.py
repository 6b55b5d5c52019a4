"""mc.transforms against torchvision.transforms.v2 and torch ops."""
import numpy
import pytest
import torch
import torch.nn.functional as TF
from torchvision.transforms import v2

import minicnn as mc
from minicnn import transforms as T


@pytest.fixture
def image(rng):
    return rng.random((3, 7, 10))


def test_normalize_matches_torchvision(image):
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    expected = v2.Normalize(mean, std)(torch.tensor(image)).numpy()
    out = T.Normalize(mean, std)(mc.tensor(image))
    assert isinstance(out, mc.Tensor) and out.dtype == mc.float64
    numpy.testing.assert_allclose(out.data, expected, rtol=1e-12)
    numpy.testing.assert_allclose(T.Normalize(mean, std)(image), expected, rtol=1e-12)  # arrays stay arrays
    batch = numpy.stack([image, image])
    numpy.testing.assert_allclose(T.Normalize(mean, std)(batch)[1], expected, rtol=1e-12)
    copy = image.copy()
    T.Normalize(mean, std, inplace=True)(copy)
    numpy.testing.assert_allclose(copy, expected, rtol=1e-12)


@pytest.mark.parametrize("padding", [2, (1, 3), (1, 2, 3, 4)])
@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "symmetric"])
def test_pad_matches_torchvision(image, padding, mode):
    kwargs = dict(fill=0.5) if mode == "constant" else {}
    expected = v2.Pad(padding, padding_mode=mode, **kwargs)(torch.tensor(image)).numpy()
    numpy.testing.assert_array_equal(T.Pad(padding, padding_mode=mode, **kwargs)(image), expected)


def test_flips_match_torch(image):
    numpy.testing.assert_array_equal(T.RandomHorizontalFlip(p=1.0)(image), torch.tensor(image).flip(-1).numpy())
    numpy.testing.assert_array_equal(T.RandomVerticalFlip(p=1.0)(image), torch.tensor(image).flip(-2).numpy())
    numpy.testing.assert_array_equal(T.RandomHorizontalFlip(p=0.0)(image), image)


def test_random_flip_flips_about_half_the_time(image):
    mc.manual_seed(0)
    flipped = sum(bool((T.RandomHorizontalFlip()(image) != image).any()) for _ in range(400))
    assert 160 < flipped < 240


def test_random_crop_is_a_window_of_the_padded_image(image):
    mc.manual_seed(0)
    padded = T.Pad(2)(image)
    corners = set()
    for _ in range(50):
        out = T.RandomCrop((7, 10), padding=2)(image)
        assert out.shape == (3, 7, 10)
        hits = [(i, j) for i in range(5) for j in range(5)
                if numpy.array_equal(padded[:, i:i + 7, j:j + 10], out)]
        assert hits
        corners.add(hits[0])
    assert len(corners) > 10                    # positions vary


def test_random_crop_pad_if_needed_and_errors(image):
    assert T.RandomCrop(12, pad_if_needed=True)(image).shape == (3, 12, 12)
    with pytest.raises(ValueError, match="larger than"):
        T.RandomCrop(12)(image)


def test_random_transforms_repeat_with_the_seed(image):
    pipeline = T.Compose([T.RandomCrop(6, padding=1), T.RandomHorizontalFlip()])
    mc.manual_seed(3)
    a = [pipeline(image) for _ in range(5)]
    mc.manual_seed(3)
    b = [pipeline(image) for _ in range(5)]
    for x, y in zip(a, b):
        numpy.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("size", [(14, 20), (32, 32), (5, 4), (3, 17), (7, 10)])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_resize_matches_interpolate(image, size, mode):
    kwargs = dict(align_corners=False, antialias=False) if mode == "bilinear" else {}
    expected = TF.interpolate(torch.tensor(image)[None], size=size, mode=mode, **kwargs)[0].numpy()
    out = T.Resize(size, interpolation=mode, antialias=False)(mc.tensor(image))
    assert out.shape == (3, *size)
    numpy.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-15)


def test_resize_float32_and_batches(image):
    batch = numpy.stack([image, 1 - image]).astype(numpy.float32)
    expected = TF.interpolate(torch.tensor(batch), size=(28, 28), mode="bilinear", align_corners=False).numpy()
    out = T.Resize((28, 28))(batch)
    assert out.dtype == numpy.float32
    numpy.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_resize_int_matches_torchvision_size_rule(image):
    tv = v2.Resize(4, antialias=False)(torch.tensor(image))
    out = T.Resize(4, antialias=False)(image)
    assert out.shape == tuple(tv.shape) == (3, 4, 5)
    numpy.testing.assert_allclose(out, tv.numpy(), rtol=1e-12)
    # The default antialiases when shrinking, as torchvision's does.
    numpy.testing.assert_allclose(T.Resize(4)(image), v2.Resize(4)(torch.tensor(image)).numpy(), rtol=1e-12)
    assert T.Resize([4])(image).shape == (3, 4, 5)


def test_resize_uint8_rounds_like_torchvision(rng):
    img = rng.integers(0, 256, (3, 9, 11), dtype=numpy.uint8)
    expected = v2.Resize((20, 15), antialias=False)(torch.tensor(img)).numpy()
    out = T.Resize((20, 15), antialias=False)(img)
    assert out.dtype == numpy.uint8
    assert numpy.abs(out.astype(int) - expected.astype(int)).max() <= 1


def test_to_tensor_matches_torchvision(rng):
    hwc = rng.integers(0, 256, (5, 6, 3), dtype=numpy.uint8)
    out = T.ToTensor()(hwc)
    expected = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])(hwc).numpy()
    assert out.shape == (3, 5, 6) and out.dtype == mc.float32
    numpy.testing.assert_allclose(out.data, expected, rtol=1e-6)
    assert T.ToTensor()(numpy.zeros((5, 6))).shape == (1, 5, 6)


def test_compose_applies_in_order_and_prints(image):
    pipeline = T.Compose([T.Pad(1), T.Resize((4, 4), antialias=False), T.Normalize([0.5], [0.5])])
    out = pipeline(mc.tensor(image))
    expected = v2.Compose([v2.Pad(1), v2.Resize((4, 4), antialias=False), v2.Normalize([0.5] * 3, [0.5] * 3)])(
        torch.tensor(image)).numpy()
    numpy.testing.assert_allclose(out.data, expected, rtol=1e-12)
    assert "Resize(size=(4, 4)" in repr(pipeline)


@pytest.mark.parametrize("make, error, match", [
    (lambda: T.Normalize([0.5], [0.0]), ValueError, "std must not contain zeros"),
    (lambda: T.Pad(-1), ValueError, "padding"),
    (lambda: T.Pad((1, 2, 3)), TypeError, "padding"),
    (lambda: T.Pad(1, padding_mode="wrap"), ValueError, "padding_mode"),
    (lambda: T.RandomCrop(0), ValueError, "size"),
    (lambda: T.Resize((2, 0)), ValueError, "size"),
    (lambda: T.Resize(4, interpolation="lanczos"), ValueError, "interpolation"),
    (lambda: T.RandomHorizontalFlip(p=1.5), ValueError, "probability"),
    (lambda: T.Compose([3]), TypeError, "callable"),
])
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_images(image):
    with pytest.raises(ValueError, match="2 values but the image has 3 channels"):
        T.Normalize([0.5, 0.5], [1, 1])(image)
    with pytest.raises(TypeError, match="floating point"):
        T.Normalize([0.5], [1])(numpy.zeros((1, 2, 2), numpy.uint8))
    with pytest.raises(TypeError, match="Tensor or an array"):
        T.Pad(1)([[1, 2]])
    with pytest.raises(ValueError, match="smaller than the image"):
        T.Pad(7, padding_mode="reflect")(image)
