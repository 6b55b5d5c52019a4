"""mc.utils.receptive_field: LeNet-5 worked out by hand with the
recurrence, VGG-16 and AlexNet against their published receptive fields,
ResNet-18's main path by hand (its narrower downsample branches must not
win), branches that meet in a sum, a plain flatten in forward, and the
refusals."""
import pytest

import minicnn as mc
from minicnn import nn
from minicnn.nn.skip_init import no_init


def _by_name(rows):
    return {r["name"]: r for r in rows}


def _step(state, k, s=1, p=0, d=1):
    """One conv/pool layer of the recurrence, written out for the tests:
    j_out = j s, r_out = r + d (k - 1) j, start_out = start + (d (k - 1) / 2 - p) j."""
    r, j, start = state
    return r + d * (k - 1) * j, j * s, start + (d * (k - 1) / 2 - p) * j


def test_lenet5_by_hand():
    rows = mc.utils.receptive_field(mc.models.lenet5(), (1, 32, 32))
    state = (1, 1, 0.0)                  # the input: one pixel, centred on pixel 0
    c1 = state = _step(state, 5)         # (5, 1, 2.0)
    s2 = state = _step(state, 2, 2)      # (6, 2, 2.5)
    c3 = state = _step(state, 5)         # (14, 2, 6.5)
    s4 = state = _step(state, 2, 2)      # (16, 4, 7.5)
    c5 = state = _step(state, 5)         # (32, 4, 15.5): C5 sees the whole 32x32 image, centred
    expected = [("features.0", "Conv2d", (6, 28, 28), c1), ("features.1", "Tanh", (6, 28, 28), c1),
                ("features.2", "AvgPool2d", (6, 14, 14), s2), ("features.3", "Conv2d", (16, 10, 10), c3),
                ("features.4", "Tanh", (16, 10, 10), c3), ("features.5", "AvgPool2d", (16, 5, 5), s4),
                ("features.6", "Conv2d", (120, 1, 1), c5), ("features.7", "Tanh", (120, 1, 1), c5),
                ("classifier.0", "Flatten", (120,), c5), ("classifier.1", "Linear", (84,), c5),
                ("classifier.2", "Tanh", (84,), c5), ("classifier.3", "Linear", (10,), c5)]
    assert [(r["name"], r["kind"], r["output_size"], (r["receptive_field"], r["jump"], r["start"]))
            for r in rows] == [(n, k, size, tuple((v, v) for v in s)) for n, k, size, s in expected]
    assert c5 == (32, 4, 15.5)
    assert rows[-1]["receptive_field"] == (32, 32)


def test_vgg16_published():
    """Araujo, Norris and Sim, "Computing receptive fields of convolutional
    neural networks" (Distill, 2019), table 1: VGG-16's conv5_3 sees 196
    pixels, pool5 212. (The field does not depend on the image size, so a
    small image keeps the test fast; nor on the weights: 138M of them are
    not drawn.)"""
    with no_init():
        model = mc.models.vgg16()
    rows = _by_name(mc.utils.receptive_field(model, (3, 32, 32)))
    assert rows["features.28"]["kind"] == "Conv2d"      # conv5_3
    assert rows["features.28"]["receptive_field"] == (196, 196)
    assert rows["features.28"]["jump"] == (16, 16)
    assert rows["features.30"]["kind"] == "MaxPool2d"   # pool5
    assert rows["features.30"]["receptive_field"] == (212, 212)
    assert rows["features.30"]["jump"] == (32, 32)
    assert rows["features.30"]["output_size"] == (512, 1, 1)


def test_alexnet_published():
    """AlexNet (torchvision's layout): conv5 163, pool5 195 (Araujo et al.,
    table 1)."""
    rows = _by_name(mc.utils.receptive_field(mc.models.alexnet(), (3, 67, 67)))
    assert rows["features.10"]["kind"] == "Conv2d"
    assert rows["features.10"]["receptive_field"] == (163, 163)
    assert rows["features.12"]["kind"] == "MaxPool2d"
    assert rows["features.12"]["receptive_field"] == (195, 195)


def test_resnet18_main_path_by_hand():
    """The residual sum takes the widest branch: the 3x3 main path, not the
    1x1 downsample shortcut (which the table still lists on its own)."""
    rows = _by_name(mc.utils.receptive_field(mc.models.resnet18(), (3, 64, 64)))
    state = _step((1, 1, 0.0), 7, 2, 3)               # conv1
    state = _step(state, 3, 2, 1)                     # maxpool
    for stage in range(4):
        shortcut = _step(state, 1, 2) if stage else None
        for conv in range(4):                         # two blocks of two 3x3 convs
            state = _step(state, 3, 2 if stage and conv == 0 else 1, 1)
        if shortcut:
            name = f"layer{stage + 1}.0.downsample.0"
            assert rows[name]["receptive_field"][0] == shortcut[0] < state[0]
    assert state[:2] == (435, 32)
    assert rows["layer4.1.conv2"]["receptive_field"] == (435, 435)
    assert rows["layer4.1.relu"]["receptive_field"] == (435, 435)


class _TwoBranches(nn.Module):
    """relu(conv3(x) + conv5(x)), then a dilated conv, a plain flatten and a Linear."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 2, 3, padding=1)
        self.b = nn.Conv2d(1, 2, 5, padding=2)
        self.relu = nn.ReLU()
        self.dilated = nn.Conv2d(2, 2, 3, stride=2, dilation=2)
        self.fc = nn.Linear(2 * 3 * 3, 4)

    def forward(self, x):
        y = self.dilated(self.relu(self.a(x) + self.b(x)))
        return self.fc(mc.flatten(y, 1))


def test_branches_take_the_widest_and_flatten_sees_everything():
    rows = _by_name(mc.utils.receptive_field(_TwoBranches(), (1, 10, 10)))
    assert rows["a"]["receptive_field"] == (3, 3) and rows["b"]["receptive_field"] == (5, 5)
    assert rows["relu"]["receptive_field"] == (5, 5)
    r, j, start = _step((5, 1, 0.0), 3, 2, 0, 2)      # (9, 2, 2.0); output 3x3
    assert (rows["dilated"]["receptive_field"], rows["dilated"]["jump"], rows["dilated"]["start"]) == (
        (r, r), (j, j), (start, start))
    assert rows["dilated"]["output_size"] == (2, 3, 3)
    # fc gets the flattened 3x3 map: a window over all of it.
    r, j, start = _step((r, j, start), 3, 3)          # (13, 6, 4.0)
    assert rows["fc"]["receptive_field"] == (13, 13) and rows["fc"]["start"] == (4, 4)


def test_rectangular_kernels_and_same_padding():
    model = nn.Sequential(nn.Conv2d(1, 1, (3, 5), padding="same"), nn.MaxPool2d((2, 3), stride=(2, 1)))
    rows = mc.utils.receptive_field(model, (1, 8, 9))
    assert rows[0]["receptive_field"] == (3, 5) and rows[0]["start"] == (0, 0)
    assert rows[1]["receptive_field"] == (4, 7) and rows[1]["jump"] == (2, 1)
    assert rows[1]["start"] == (0.5, 1) and rows[1]["output_size"] == (1, 4, 7)


def test_table_prints_and_model_state_is_restored():
    model = mc.models.lenet5()
    model.train()
    rows = mc.utils.receptive_field(model, (1, 32, 32))
    assert model.training and all(m.training for m in model.modules())
    assert all(not m._forward_hooks for m in model.modules())
    text = str(rows)
    assert text.splitlines()[0].split() == ["Layer", "Kind", "Output", "size", "RF", "Jump", "Start"]
    assert text.splitlines()[8].split() == ["features.6", "Conv2d", "120x1x1", "32", "4", "15.5"]
    assert text == mc.utils.format_receptive_field(rows)


def test_refusals():
    with pytest.raises(ValueError, match="ConvTranspose2d upsamples"):
        mc.utils.receptive_field(nn.Sequential(nn.ConvTranspose2d(1, 1, 2, stride=2)), (1, 4, 4))
    with pytest.raises(ValueError, match=r"input_size must be \(C, H, W\).*\(32, 32\)"):
        mc.utils.receptive_field(mc.models.lenet5(), (32, 32))

