"""ShuffleNetV2 (x0.5, x1.0, x1.5, x2.0) against torchvision: eval-mode
logits and feature maps at 32 x 32 (the last map is then 1 x 1) in float64
and float32, training mode (logits, every parameter gradient, running
statistics) for shufflenet_v2_x0_5, and channel_shuffle on its own."""
import numpy
import pytest
import torch
import torchvision
from torchvision.models.shufflenetv2 import channel_shuffle as tv_channel_shuffle

import minicnn as mc
from minicnn.models.shufflenetv2 import InvertedResidual, channel_shuffle
from parity import check_parity
from zoo_check import build_pair, check_eval, check_init_distributions, check_train, check_weights_refused

NAMES = ["shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0"]
# The stem, a downsampling unit (two branches), a channel-split unit, a
# branch on its own, the last stage and conv5.
LAYERS = ["conv1", "maxpool", "stage2.0", "stage2.1", "stage3.0.branch1", "stage4", "conv5"]


@pytest.mark.parametrize("name", NAMES)
def test_eval_parity(name):
    mc_model, tv_model = build_pair(name)
    check_eval(mc_model, tv_model, (2, 3, 32, 32), numpy.float32, layers=LAYERS)
    check_eval(mc_model, tv_model, (2, 3, 32, 32), numpy.float64, layers=LAYERS)


def test_train_parity():
    """64 x 64, batch 2: conv5's batch norm still sees 8 values per channel."""
    mc_model, tv_model = build_pair("shufflenet_v2_x0_5")
    check_train(mc_model, tv_model, (2, 3, 64, 64))


def test_channel_shuffle():
    """Two groups of three channels interleave: [a0 a1 a2 b0 b1 b2] ->
    [a0 b0 a1 b1 a2 b2]; the values and gradients match torchvision's."""
    x = numpy.arange(6, dtype=numpy.float64).reshape(1, 6, 1, 1)
    out = channel_shuffle(mc.from_numpy(x), 2)
    assert out.numpy().ravel().tolist() == [0, 3, 1, 4, 2, 5]
    x = numpy.random.default_rng(0).standard_normal((2, 12, 3, 4))
    for groups in (2, 3, 4):
        check_parity(lambda t: channel_shuffle(t, groups), lambda t: tv_channel_shuffle(t, groups), [x])
        check_parity(lambda t: channel_shuffle(t, groups), lambda t: tv_channel_shuffle(t, groups), [x],
                     noncontiguous_inputs=True)


def test_default_initialisation():
    """torchvision sets no initialisation of its own: both use the layers'
    defaults (uniform for convs and fc, identity batch norms)."""
    mc.manual_seed(0)
    torch.manual_seed(0)
    check_init_distributions(mc.models.shufflenet_v2_x1_0(), torchvision.models.shufflenet_v2_x1_0())


def test_registry():
    names = mc.models.list_models()
    for name in NAMES:
        assert name in names
    model = mc.models.get_model("shufflenet_v2_x0_5", num_classes=10)
    assert isinstance(model, mc.models.ShuffleNetV2)
    assert model.fc.out_features == 10 and model._stage_out_channels == [24, 48, 96, 192, 1024]
    assert [len(s) for s in (model.stage2, model.stage3, model.stage4)] == [4, 8, 4]
    assert len(model.stage2[1].branch1) == 0          # a channel-split unit has no first branch


@pytest.mark.parametrize("name", NAMES)
def test_weights_refused(name):
    check_weights_refused(getattr(mc.models, name))


def test_bad_arguments():
    with pytest.raises(ValueError, match="stages_repeats"):
        mc.models.ShuffleNetV2([4, 8], [24, 48, 96, 192, 1024])
    with pytest.raises(ValueError, match="stages_out_channels"):
        mc.models.ShuffleNetV2([4, 8, 4], [24, 48, 96, 192])
    with pytest.raises(ValueError, match="stride"):
        InvertedResidual(24, 24, 4)
    with pytest.raises(ValueError, match="inp"):
        InvertedResidual(24, 48, 1)
