"""mc.summary on the zoo against published figures: torchvision's table of
models (parameters, and its "GFLOPS" column, which holds billions of
multiply-adds of the conv and matrix-product layers in eval mode at
batch 1 and each model's crop size) and the ResNet paper's multiply-adds
(He et al., 2015, table 1). Each figure is also checked exactly against
an independent count: torchvision's model built on the meta device (no
memory, no compute), its parameters' numel() and torch's FlopCounterMode
(which counts 2 FLOPs per multiply-add).

The models are built with ``no_init`` (zero weights: the counts do not
depend on them) and summarised without the training pass."""
import functools

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

import minicnn as mc
from minicnn.nn.skip_init import no_init

# (model, builder kwargs, crop size, parameters in millions, GFLOPS), as
# printed in torchvision's table (the issue quotes the same figures).
# torchvision's googlenet weights drop the auxiliary classifiers
# (aux_logits=False); inception_v3's keep them, and so do its 27.2M.
TORCHVISION_TABLE = [
    pytest.param("mobilenet_v3_small", {}, 224, "2.5", "0.06", id="mobilenet_v3_small"),
    pytest.param("efficientnet_b0", {}, 224, "5.3", "0.39", id="efficientnet_b0"),
    pytest.param("googlenet", {"aux_logits": False}, 224, "6.6", "1.5", id="googlenet"),
    pytest.param("densenet121", {}, 224, "8.0", "2.83", id="densenet121"),
    pytest.param("resnet34", {}, 224, "21.8", "3.66", id="resnet34"),
    pytest.param("inception_v3", {}, 299, "27.2", "5.71", id="inception_v3"),
    pytest.param("convnext_tiny", {}, 224, "28.6", "4.46", id="convnext_tiny"),
    pytest.param("densenet161", {}, 224, "28.7", "7.73", id="densenet161"),
    pytest.param("resnet152", {}, 224, "60.2", "11.51", id="resnet152"),
    pytest.param("alexnet", {}, 224, "61.1", "0.71", id="alexnet"),
    pytest.param("vgg11_bn", {}, 224, "132.9", "7.61", id="vgg11_bn"),
    pytest.param("resnet18", {}, 224, "11.7", "1.81", id="resnet18"),
    pytest.param("resnet50", {}, 224, "25.6", "4.09", id="resnet50"),
    pytest.param("resnet101", {}, 224, "44.5", "7.8", id="resnet101"),
    # Over a second each (single-threaded):
    pytest.param("efficientnet_v2_s", {}, 384, "21.5", "8.37", id="efficientnet_v2_s", marks=pytest.mark.slow),
    pytest.param("efficientnet_b7", {}, 600, "66.3", "37.75", id="efficientnet_b7", marks=pytest.mark.slow),
    pytest.param("resnext101_32x8d", {}, 224, "88.8", "16.41", id="resnext101_32x8d", marks=pytest.mark.slow),
    pytest.param("efficientnet_v2_l", {}, 480, "118.5", "56.08", id="efficientnet_v2_l", marks=pytest.mark.slow),
    pytest.param("convnext_large", {}, 224, "197.8", "34.36", id="convnext_large", marks=pytest.mark.slow),
]


@functools.lru_cache(maxsize=None)
def _summary(name, size, kwargs=()):
    with no_init():
        model = mc.models.get_model(name, **dict(kwargs))
    return model, mc.summary(model, (3, size, size), training_memory=False)


def _torchvision_counts(name, size, kwargs):
    """(parameters, multiply-adds) of torchvision's model, built on the meta device."""
    if name in ("googlenet", "inception_v3"):
        kwargs = dict(kwargs, init_weights=False)       # skips a slow init (and its warning)
    with torch.device("meta"):
        model = torchvision.models.get_model(name, **kwargs).eval()
        x = torch.empty(1, 3, size, size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops() // 2


def _rounded_as(value, printed):
    """``value`` rounded to as many decimals as ``printed`` shows."""
    decimals = len(printed.partition(".")[2])
    return f"{value:.{decimals}f}"


@pytest.mark.parametrize("name, kwargs, size, params, gflops", TORCHVISION_TABLE)
def test_torchvision_table(name, kwargs, size, params, gflops):
    model, s = _summary(name, size, tuple(kwargs.items()))
    assert _rounded_as(s.total_params / 1e6, params) == params
    assert _rounded_as(s.total_mult_adds / 1e9, gflops) == gflops
    # Exactly, against the module tree and against torchvision's model.
    assert s.total_params == sum(p.data.size for p in model.parameters())
    assert (s.total_params, s.total_mult_adds) == _torchvision_counts(name, size, kwargs)


# The ResNet paper's table 1, "FLOPs" (multiply-adds) at 224 x 224, for its
# own ("v1") blocks: the stride of a downsampling bottleneck in the first
# 1x1 conv. The paper rounds loosely: our counts are 1.81, 3.66, 3.86, 7.57
# and 11.28 billion, and it prints 1.8, 3.6, 3.8, 7.6, 11.3 (3.66 and 3.86
# cut down, 7.57 and 11.28 rounded up). No counting convention gives all
# five when rounded (leaving out the fc layer or the projection shortcuts
# moves ResNet-34 by 0.0005 and 0.02 billion), so each is checked to 0.1
# billion, as the issue asks.
RESNET_PAPER = [("resnet18", {}, 1.8), ("resnet34", {}, 3.6), ("resnet50", {"stride_in_1x1": True}, 3.8),
                ("resnet101", {"stride_in_1x1": True}, 7.6), ("resnet152", {"stride_in_1x1": True}, 11.3)]


@pytest.mark.parametrize("name, kwargs, billions", RESNET_PAPER, ids=[case[0] for case in RESNET_PAPER])
def test_resnet_paper(name, kwargs, billions):
    _, s = _summary(name, 224, tuple(kwargs.items()))
    assert abs(s.total_mult_adds / 1e9 - billions) < 0.1


@pytest.mark.parametrize("name", ["resnet50", "resnet101", "resnet152"])
def test_where_the_stride_sits(name):
    """v1.5 (torchvision) against v1 (the paper): the same parameters, and
    the three downsampling blocks' first 1x1 conv runs on 4x the pixels:
    in layer2 it maps 256 -> 128 channels over 56 x 56 instead of 28 x 28,
    and each later stage doubles both channel counts and quarters the
    pixels, so every stage adds 256 * 128 * 56 * 56 * 3/4 multiply-adds."""
    _, v15 = _summary(name, 224)
    _, v1 = _summary(name, 224, (("stride_in_1x1", True),))
    assert v15.total_params == v1.total_params
    assert v15.total_mult_adds - v1.total_mult_adds == 3 * 256 * 128 * 56 * 56 * 3 // 4
    rows15 = {layer.name: layer for layer in v15.layers}
    rows1 = {layer.name: layer for layer in v1.layers}
    for stage in ("layer2", "layer3", "layer4"):
        assert rows15[f"{stage}.0.conv1"].mult_adds == 4 * rows1[f"{stage}.0.conv1"].mult_adds
        assert rows15[f"{stage}.0.conv2"].mult_adds == rows1[f"{stage}.0.conv2"].mult_adds
