"""VGG 11/13/16/19, with and without batch norm, against torchvision:
eval-mode logits and feature maps at the smallest input (32 x 32, where
the features end at 1 x 1 and the adaptive pool repeats that pixel 7 x 7
times), batch 1. Every VGG has over 130M parameters, mostly in the first
classifier layer, so each is checked in one dtype and marked slow:
float64 for the smallest (vgg11), float32 for the others."""
import numpy
import pytest

import minicnn as mc
from minicnn.models.vgg import VGG, make_layers
from zoo_check import build_pair, check_eval, check_weights_refused

NAMES = ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]
DTYPES = {name: numpy.float64 if name == "vgg11" else numpy.float32 for name in NAMES}


def test_registered():
    for name in NAMES:
        assert name in mc.models.list_models()


@pytest.mark.parametrize("name", NAMES)
def test_weights_refused(name):
    check_weights_refused(getattr(mc.models, name))


def test_make_layers():
    """Config "A" (vgg11): 8 convs and 5 pools; with batch norm a
    BatchNorm2d sits between each conv and its ReLU."""
    plain = make_layers([64, "M", 128], batch_norm=False)
    assert [type(m).__name__ for m in plain] == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU"]
    with_bn = make_layers([64, "M"], batch_norm=True)
    assert [type(m).__name__ for m in with_bn] == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"]
    assert with_bn[0].kernel_size == (3, 3) and with_bn[0].padding == (1, 1)


def test_input_too_small():
    # The check comes before any layer runs, so no model (over 60M
    # parameters) needs building to see it.
    with pytest.raises(ValueError, match="H, W >= 32"):
        VGG.forward(None, mc.zeros(1, 3, 31, 32))


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_eval_parity(name):
    mc_model, tv_model = build_pair(name, dtype=DTYPES[name], shared=True)
    # The output of the second conv stage (index 4 without batch norm, 6 with).
    layers = ["features.4" if "bn" not in name else "features.6", "features", "avgpool", "classifier.1"]
    print(name, check_eval(mc_model, tv_model, (1, 3, 32, 32), DTYPES[name], layers=layers))
