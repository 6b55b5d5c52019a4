"""MNASNet (0.5, 0.75, 1.0, 1.3) against torchvision: eval-mode logits and
feature maps at 32 x 32 (the last map is then 1 x 1) in float64 and
float32, training mode (logits, every parameter gradient, running
statistics) for mnasnet0_5, and the width rounding."""
import numpy
import pytest
import torch
import torchvision
from torchvision.models import mnasnet as tv_mnasnet

import minicnn as mc
from minicnn.models import mnasnet
from zoo_check import build_pair, check_eval, check_init_distributions, check_train, check_weights_refused

NAMES = ["mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3"]
# The stem, the depthwise separable conv, stacks with and without skips,
# a single block with a skip, the last conv.
LAYERS = ["layers.2", "layers.7", "layers.8", "layers.9.1", "layers.11", "layers.13", "layers.16"]


@pytest.mark.parametrize("name", NAMES)
def test_eval_parity(name):
    mc_model, tv_model = build_pair(name)
    check_eval(mc_model, tv_model, (2, 3, 32, 32), numpy.float32, layers=LAYERS)
    check_eval(mc_model, tv_model, (2, 3, 32, 32), numpy.float64, layers=LAYERS)


def test_train_parity():
    """64 x 64, batch 2 (the last batch norms see 8 values per channel), dropout 0."""
    mc_model, tv_model = build_pair("mnasnet0_5", dropout=0.0)
    check_train(mc_model, tv_model, (2, 3, 64, 64))


def test_depths():
    """The asymmetric rounding: up, unless within 10% of the value below."""
    assert mnasnet._round_to_multiple_of(83, 8) == 80
    assert mnasnet._round_to_multiple_of(84, 8) == 88
    for alpha in (0.1, 0.5, 0.75, 1.0, 1.3, 2.0, 3.7):
        assert mnasnet._get_depths(alpha) == tv_mnasnet._get_depths(alpha)
    with pytest.raises(ValueError, match="round_up_bias"):
        mnasnet._round_to_multiple_of(83, 8, round_up_bias=1.0)


def test_default_initialisation():
    """torchvision's: He normal (fan_out, ReLU) convs, He uniform (fan_out,
    sigmoid) classifier, zero biases, identity batch norms."""
    mc.manual_seed(0)
    torch.manual_seed(0)
    check_init_distributions(mc.models.mnasnet1_0(), torchvision.models.mnasnet1_0())


def test_registry():
    names = mc.models.list_models()
    for name in NAMES:
        assert name in names
    model = mc.models.get_model("mnasnet0_75", num_classes=10, dropout=0.5)
    assert isinstance(model, mc.models.MNASNet)
    assert model.alpha == 0.75 and model.classifier[1].out_features == 10 and model.classifier[0].p == 0.5
    assert model.layers[1].momentum == pytest.approx(3e-4)


@pytest.mark.parametrize("name", NAMES)
def test_weights_refused(name):
    check_weights_refused(getattr(mc.models, name))


def test_bad_arguments():
    with pytest.raises(ValueError, match="alpha"):
        mc.models.MNASNet(0.0)
    with pytest.raises(ValueError, match="stride"):
        mnasnet._InvertedResidual(16, 16, 3, 3, 6)
    with pytest.raises(ValueError, match="kernel_size"):
        mnasnet._InvertedResidual(16, 16, 7, 1, 6)
    with pytest.raises(ValueError, match="repeats"):
        mnasnet._stack(16, 24, 3, 2, 3, 0, 0.1)
