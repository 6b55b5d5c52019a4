"""mc.transforms.VideoClassification against torchvision's preset of the
same name, on the same clips: float frames, uint8 frames (equal but for
the odd pixel whose uint8 rounding differs by one level), one clip and a
batch, both kinds of resize_size; layout, dtype, kinds and bad input."""
import numpy
import pytest
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms._presets import VideoClassification as TorchVideoClassification

import minicnn as mc

MODES = {"bilinear": InterpolationMode.BILINEAR, "nearest": InterpolationMode.NEAREST}


def clip(shape, dtype, seed=0):
    """Smooth frames (a random walk along W), so resizing does more than
    shuffle noise; uint8 in [0, 255] or float in [0, 1]."""
    rng = numpy.random.default_rng(seed)
    frames = numpy.cumsum(rng.uniform(-0.1, 0.1, shape), axis=-1) + rng.uniform(0.3, 0.7, shape[:-1] + (1,))
    frames = numpy.clip(frames, 0, 1)
    if dtype == numpy.uint8:
        return (frames * 255).round().astype(numpy.uint8)
    return frames.astype(dtype)


CASES = [
    ((5, 3, 40, 57), dict(crop_size=(28, 28), resize_size=(32, 43)), "bilinear"),
    ((2, 4, 3, 37, 29), dict(crop_size=(24, 20), resize_size=(30,)), "bilinear"),
    ((3, 3, 20, 30), dict(crop_size=16, resize_size=(40, 50)), "nearest"),
    ((4, 3, 64, 48), dict(crop_size=(30, 30), resize_size=(32, 32), mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.25)),
     "bilinear"),
]


@pytest.mark.parametrize("shape,kwargs,mode", CASES, ids=str)
def test_matches_torchvision_on_float_frames(shape, kwargs, mode):
    frames = clip(shape, numpy.float32)
    theirs = TorchVideoClassification(**dict(kwargs, crop_size=_pair(kwargs["crop_size"])),
                                      interpolation=MODES[mode])(torch.from_numpy(frames)).numpy()
    mine = mc.transforms.VideoClassification(**kwargs, interpolation=mode)(mc.tensor(frames))
    assert isinstance(mine, mc.Tensor) and mine.dtype == numpy.float32 and mine.shape == theirs.shape
    numpy.testing.assert_allclose(mine.numpy(), theirs, rtol=0, atol=2e-6)


@pytest.mark.parametrize("shape,kwargs,mode", CASES, ids=str)
def test_matches_torchvision_on_uint8_frames(shape, kwargs, mode):
    frames = clip(shape, numpy.uint8)
    theirs = TorchVideoClassification(**dict(kwargs, crop_size=_pair(kwargs["crop_size"])),
                                      interpolation=MODES[mode])(torch.from_numpy(frames)).numpy()
    mine = mc.transforms.VideoClassification(**kwargs, interpolation=mode)(frames)
    assert isinstance(mine, numpy.ndarray) and mine.dtype == numpy.float32 and mine.shape == theirs.shape
    diff = numpy.abs(mine - theirs)
    one_level = 1 / 255 / min(kwargs.get("std", mc.transforms.KINETICS_STD))
    assert diff.max() <= one_level * 1.001 and (diff > 1e-5).mean() < 2e-3


def _pair(size):
    return (size, size) if isinstance(size, int) else size


def test_layout_is_channels_then_time():
    """Frame t of channel c of the input is out[c, t]: with no resize or
    crop to do, the output is the normalised input with T and C swapped."""
    frames = clip((6, 3, 8, 8), numpy.float64)
    preset = mc.transforms.VideoClassification(crop_size=8, resize_size=(8, 8), mean=(0.1, 0.2, 0.3),
                                               std=(0.5, 0.25, 2.0))
    out = preset(frames)
    assert out.shape == (3, 6, 8, 8) and out.flags.c_contiguous
    expected = (frames.astype(numpy.float32) - numpy.float32([0.1, 0.2, 0.3])[:, None, None]) / \
        numpy.float32([0.5, 0.25, 2.0])[:, None, None]
    numpy.testing.assert_allclose(out, expected.transpose(1, 0, 2, 3), rtol=1e-6)
    assert out.shape == preset(frames[None])[0].shape


def test_arguments_are_kept_and_shown():
    preset = mc.transforms.VideoClassification(crop_size=(112, 112), resize_size=(128, 171))
    assert preset.crop_size == (112, 112) and preset.resize_size == (128, 171)
    assert preset.mean == list(mc.transforms.KINETICS_MEAN) and preset.interpolation == "bilinear"
    assert "VideoClassification(crop_size=(112, 112), resize_size=(128, 171)" in repr(preset)


@pytest.mark.parametrize("frames,error,match", [
    (numpy.zeros((3, 8, 8), numpy.uint8), ValueError, r"\(T, 3, H, W\) or a batch .*got shape \(3, 8, 8\)"),
    (numpy.zeros((2, 4, 8, 8), numpy.uint8), ValueError, r"got shape \(2, 4, 8, 8\)"),
    (numpy.zeros((2, 3, 8, 8), numpy.int32), TypeError, r"uint8 .* or float .*int32"),
    ([[0.0]], TypeError, r"expected a Tensor or an array"),
])
def test_bad_input(frames, error, match):
    with pytest.raises(error, match=match):
        mc.transforms.VideoClassification(crop_size=4, resize_size=(6, 6))(frames)


def test_bad_arguments():
    with pytest.raises(ValueError, match="interpolation"):
        mc.transforms.VideoClassification(crop_size=4, resize_size=6, interpolation="area")
    with pytest.raises(ValueError, match="size"):
        mc.transforms.VideoClassification(crop_size=(4, 0), resize_size=6)
