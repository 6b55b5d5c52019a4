"""Preprocessing for pretrained ImageNet models against torchvision:
antialiased and bicubic resize, CenterCrop, the ImageClassification
preset, read_image, and the per-model presets and class names."""
import numpy
import pytest
import torch
import torch.nn.functional as TF
import torchvision
import torchvision.transforms.functional as TVF
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms._presets import ImageClassification as TorchvisionPreset

import minicnn as mc
from minicnn import transforms as T

# (in_h, in_w) -> (out_h, out_w): shrinking by integer and fractional
# factors (the filter then spans several pixels), enlarging, one axis
# shrunk while the other grows, and sizes down to 1.
SIZES = [((13, 17), (5, 7)), ((40, 30), (7, 11)), ((6, 5), (14, 9)), ((9, 20), (16, 6)), ((8, 9), (1, 2)),
         ((3, 4), (3, 9)), ((37, 23), (37, 5))]


@pytest.fixture(scope="module")
def photo():
    """scikit-learn's flower photo, (3, 427, 640) uint8."""
    return (mc.datasets.sample_images().numpy()[1] * 255).round().astype(numpy.uint8)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("dtype, tol", [(numpy.float64, 1e-13), (numpy.float32, 2e-6)])
def test_resize_matches_torch_interpolate(rng, mode, antialias, dtype, tol):
    for (in_h, in_w), size in SIZES:
        x = rng.random((2, 3, in_h, in_w)).astype(dtype)
        expected = TF.interpolate(torch.from_numpy(x), size=size, mode=mode, align_corners=False,
                                  antialias=antialias).numpy()
        out = T.resize(x, size, mode, antialias)
        assert out.dtype == dtype and out.shape == expected.shape
        numpy.testing.assert_allclose(out, expected, rtol=0, atol=tol, err_msg=f"{(in_h, in_w)} -> {size}")


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_resize_transform_matches_torchvision_on_a_photo(photo, mode):
    image = photo.astype(numpy.float32) / 255
    expected = TVF.resize(torch.from_numpy(image), [232], InterpolationMode(mode), antialias=True).numpy()
    out = T.Resize(232, mode, antialias=True)(mc.tensor(image))
    assert out.shape == (3, 232, 347)
    numpy.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=2e-6)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_uint8_resize_rounds_like_torchvision_and_near_pil(photo, mode):
    """uint8 images are resized in float32 and rounded, as torchvision's
    tensor path does: a pixel whose value lands within float32 error of
    a .5 may round the other way, nothing else differs. PIL computes in
    fixed point, rounding after each pass: close, not equal."""
    out = T.Resize(256, mode, antialias=True)(photo)
    expected = TVF.resize(torch.from_numpy(photo), [256], InterpolationMode(mode), antialias=True).numpy()
    assert out.dtype == numpy.uint8 and out.shape == expected.shape == (3, 256, 383)
    diff = numpy.abs(out.astype(int) - expected.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-4
    pil = TVF.resize(Image.fromarray(photo.transpose(1, 2, 0)), [256], InterpolationMode(mode))
    diff = numpy.abs(out.astype(int) - numpy.asarray(pil).transpose(2, 0, 1).astype(int))
    assert diff.mean() < 0.25 and diff.max() <= (1 if mode == "bilinear" else 6)


def test_antialias_averages_what_plain_resize_skips():
    # Stripes one pixel wide, shrunk 3x: plain bilinear lands on single
    # pixels and sees stripes of 0 and 1; antialiased, each output pixel
    # averages the pixels it covers and comes out grey.
    stripes = numpy.tile(numpy.array([0.0, 1.0]), 15)[None, None, :].repeat(4, axis=1)  # (1, 4, 30)
    plain = T.resize(stripes, (4, 10), antialias=False)
    smooth = T.resize(stripes, (4, 10), antialias=True)
    assert set(numpy.unique(plain)) == {0.0, 1.0}
    assert numpy.abs(smooth[..., 1:-1] - 0.5).max() < 0.15


@pytest.mark.parametrize("size", [4, (3, 5), (7, 10), (9, 10), (7, 13), (12, 15), (2, 14), [6]])
@pytest.mark.parametrize("shape", [(3, 7, 10), (2, 1, 8, 11)])
def test_center_crop_matches_torchvision(rng, size, shape):
    image = rng.integers(0, 256, shape, dtype=numpy.uint8)
    expected = TVF.center_crop(torch.from_numpy(image), size).numpy()
    out = T.CenterCrop(size)(image)
    assert out.dtype == numpy.uint8
    numpy.testing.assert_array_equal(out, expected)
    tensor_out = T.CenterCrop(size)(mc.tensor(image.astype(numpy.float32)))
    assert isinstance(tensor_out, mc.Tensor)
    numpy.testing.assert_array_equal(tensor_out.numpy(), expected.astype(numpy.float32))


def test_center_crop_rounds_odd_margins_like_torchvision():
    # Margins of 1, 3 and 5 rows: torchvision (Python's round) puts 0, 2
    # and 2 rows above, not 0, 1, 2.
    for rows, top in ((3, 0), (5, 2), (7, 2)):
        image = numpy.arange(rows)[:, None] * numpy.ones((1, 4))
        assert T.center_crop(image[None], (2, 4))[0, 0, 0] == top


@pytest.mark.parametrize("crop, resize, mode", [(224, 256, "bilinear"), (240, 255, "bilinear"),
                                                (300, 320, "bicubic"), (299, 342, "bilinear"), (480, 480, "bicubic")])
def test_image_classification_matches_torchvision_preset(photo, crop, resize, mode):
    theirs = TorchvisionPreset(crop_size=crop, resize_size=resize, interpolation=InterpolationMode(mode))
    mine = T.ImageClassification(crop_size=crop, resize_size=resize, interpolation=mode)
    # float input: the same arithmetic up to float32 rounding
    image = photo.astype(numpy.float64) / 255
    out = mine(mc.tensor(image))
    assert isinstance(out, mc.Tensor) and out.dtype == mc.float32 and out.shape == (3, crop, crop)
    numpy.testing.assert_allclose(out.numpy(), theirs(torch.from_numpy(image)).numpy(), rtol=0, atol=1e-6)
    # uint8 input (what read_image gives): equal but for the odd pixel
    # rounded the other way after the resize, 1/255/std = 0.0175 apart
    out = mine(photo)
    assert isinstance(out, numpy.ndarray) and out.dtype == numpy.float32
    diff = numpy.abs(out - theirs(torch.from_numpy(photo)).numpy())
    assert diff.max() < 0.0176 and (diff > 1e-6).mean() < 1e-4


def test_image_classification_takes_batches_and_describes_itself(photo):
    batch = numpy.stack([photo, photo[:, ::-1]])
    preset = T.ImageClassification(crop_size=224)
    out = preset(batch)
    assert out.shape == (2, 3, 224, 224)
    numpy.testing.assert_array_equal(out[0], preset(photo))
    assert (preset.crop_size, preset.resize_size, preset.interpolation, preset.antialias) == \
        ((224, 224), 256, "bilinear", True)
    assert "crop_size=(224, 224), resize_size=256" in repr(preset)


def test_presets_are_torchvisions_for_every_model_of_the_zoo():
    checked = 0
    for name in mc.models.list_models():
        try:
            enum = torchvision.models.get_model_weights(name)
        except ValueError:  # no torchvision weights (lenet5, the book's models, ...)
            with pytest.raises(ValueError, match="no pretrained ImageNet weights"):
                mc.models.imagenet_transforms(name)
            continue
        for weights in enum:
            if len(weights.meta.get("categories") or ()) != 1000:
                continue  # vgg16's IMAGENET1K_FEATURES: a feature extractor, no classifier
            theirs = weights.transforms()
            file = weights.url.rsplit("/", 1)[1]
            for key in ([weights.name, file, "/downloads/" + file] +
                        ([None, "DEFAULT"] if weights is enum.DEFAULT else [])):
                mine = mc.models.imagenet_transforms(name, key)
                assert mine.crop_size == (theirs.crop_size[0],) * 2 and mine.resize_size == theirs.resize_size[0]
                assert mine.interpolation == theirs.interpolation.value and mine.antialias == theirs.antialias
                assert mine.mean == theirs.mean and mine.std == theirs.std
            checked += 1
    assert checked >= 90
    with pytest.raises(ValueError, match="unknown weights 'IMAGENET1K_V3' for resnet50; torchvision's are: "
                                         r"IMAGENET1K_V2 \(resnet50-11ad3fa6.pth\), IMAGENET1K_V1"):
        mc.models.imagenet_transforms("resnet50", "IMAGENET1K_V3")


def test_categories_are_torchvisions():
    from torchvision.models._meta import _IMAGENET_CATEGORIES
    categories = mc.models.imagenet_categories()
    assert categories == list(_IMAGENET_CATEGORIES) and len(categories) == 1000
    categories.append("mine")  # a copy: the shipped list cannot be changed by accident
    assert len(mc.models.imagenet_categories()) == 1000


@pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")
def test_read_image_matches_torchvision(tmp_path, photo):
    hwc = photo.transpose(1, 2, 0)
    path = str(tmp_path / "photo.png")
    Image.fromarray(hwc).save(path)
    image = T.read_image(path)
    assert isinstance(image, mc.Tensor) and image.dtype == mc.uint8 and image.shape == (3, 427, 640)
    numpy.testing.assert_array_equal(image.numpy(), torchvision.io.read_image(path).numpy())
    numpy.testing.assert_array_equal(image.numpy(), photo)
    # grayscale and RGBA files become RGB; mode="L" and None keep one channel / what the file has
    Image.fromarray(hwc[..., 0]).save(tmp_path / "gray.png")
    gray = T.read_image(tmp_path / "gray.png")
    assert gray.shape == (3, 427, 640) and (gray.numpy() == photo[0]).all()
    assert T.read_image(tmp_path / "gray.png", mode="L").shape == (1, 427, 640)
    Image.fromarray(numpy.dstack([hwc, hwc[..., :1]])).save(tmp_path / "rgba.png")
    numpy.testing.assert_array_equal(T.read_image(tmp_path / "rgba.png").numpy(), photo)
    assert T.read_image(tmp_path / "rgba.png", mode=None).shape == (4, 427, 640)


def test_read_image_applies_exif_orientation_on_request(tmp_path, photo):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "phone.jpg"
    Image.fromarray(photo.transpose(1, 2, 0)).save(path, exif=exif)
    assert T.read_image(path).shape == (3, 427, 640)
    assert T.read_image(path, apply_exif_orientation=True).shape == (3, 640, 427)


@pytest.mark.parametrize("call, error, match", [
    (lambda img: T.ImageClassification(crop_size=224)(img[:1]), ValueError,
     r"expected an image of shape \(3, H, W\) or a batch \(N, 3, H, W\), got shape \(1, 9, 12\)"),
    (lambda img: T.ImageClassification(crop_size=224)(img.astype(numpy.int16)), TypeError, "dtype int16"),
    (lambda img: T.ImageClassification(crop_size=224, resize_size=(256, 300)), ValueError, "resize_size"),
    (lambda img: T.ImageClassification(crop_size=0), ValueError, "size"),
    (lambda img: T.ImageClassification(crop_size=4, interpolation="lanczos"), ValueError, "interpolation"),
    (lambda img: T.CenterCrop((2, 3, 4)), ValueError, "size"),
    (lambda img: T.read_image("x.png", mode="CMYK"), ValueError, "mode"),
    (lambda img: mc.models.imagenet_transforms("lenet5"), ValueError, "known models: alexnet"),
])
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call(numpy.zeros((3, 9, 12), dtype=numpy.uint8))
