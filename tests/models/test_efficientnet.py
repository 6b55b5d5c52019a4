"""EfficientNet B0-B7 and V2 S/M/L against torchvision: eval-mode logits
and feature maps at 32 x 32 (float64 and float32; the biggest in one
dtype), training mode for efficientnet_b0 (logits, every parameter
gradient and the running statistics in float64), the default
initialisation, and StochasticDepth."""
import numpy
import pytest
import torch
import torchvision

import minicnn as mc
from minicnn.models._layers import StochasticDepth, stochastic_depth
from minicnn.models.efficientnet import FusedMBConv, MBConv
from zoo_check import (build_pair, check_eval, check_structure, check_train, check_weights_refused,
                       skip_init)

SMALL = ["efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_b4",
         "efficientnet_b5", "efficientnet_v2_s"]
# 30M-120M parameters: a few seconds each per dtype, so one dtype.
BIG = ["efficientnet_b6", "efficientnet_b7", "efficientnet_v2_m", "efficientnet_v2_l"]
NAMES = SMALL + BIG


def _layers(tv_model):
    """The stem, an early and a late stage (a block with a skip
    connection inside), and the head conv."""
    last = len(tv_model.features) - 1
    return ["features.0", "features.2", "features.4.1", f"features.{last - 1}", f"features.{last}"]


@pytest.mark.parametrize("name", SMALL)
def test_eval_parity(name):
    with skip_init():  # torchvision's weights replace minicnn's at once
        mc_model, tv_model = build_pair(name)
    check_eval(mc_model, tv_model, (1, 3, 32, 32), numpy.float32, layers=_layers(tv_model))
    check_eval(mc_model, tv_model, (1, 3, 32, 32), numpy.float64, layers=_layers(tv_model))


@pytest.mark.slow
@pytest.mark.parametrize("name, dtype", [
    ("efficientnet_b6", numpy.float64), ("efficientnet_b7", numpy.float32),
    ("efficientnet_v2_m", numpy.float64), ("efficientnet_v2_l", numpy.float32),
])
def test_eval_parity_big(name, dtype):
    with skip_init():
        mc_model, tv_model = build_pair(name)
    check_eval(mc_model, tv_model, (1, 3, 32, 32), dtype, layers=_layers(tv_model))


def test_options_parity():
    """num_classes, dropout and stochastic_depth_prob reach the model as in
    torchvision (eval: dropout and stochastic depth are identities)."""
    mc_model, tv_model = build_pair("efficientnet_b0", num_classes=10, dropout=0.5, stochastic_depth_prob=0.3)
    assert mc_model.classifier[0].p == 0.5
    mine = [m.stochastic_depth.p for m in mc_model.modules() if isinstance(m, (MBConv, FusedMBConv))]
    theirs = [m.stochastic_depth.p for m in tv_model.modules() if hasattr(m, "stochastic_depth")]
    assert mine == theirs and mine[-1] > 0.25
    check_eval(mc_model, tv_model, (1, 3, 32, 32), numpy.float64)


def test_train_parity():
    """Training mode at 64 x 64, batch 2 (at 32 x 32 the last batch norms
    would see 2 values per channel: normalising two numbers is so
    ill-conditioned that round-off decides the 8th digit). Dropout and
    stochastic depth off."""
    mc_model, tv_model = build_pair("efficientnet_b0", dropout=0.0, stochastic_depth_prob=0.0)
    check_train(mc_model, tv_model, (2, 3, 64, 64))


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_v2_s"])
def test_default_initialisation(name):
    """torchvision's scheme: He normal (fan_out) convs, U(-1/sqrt(out),
    1/sqrt(out)) Linear, zero biases, identity batch norms. Per tensor, the
    standard deviations agree within sampling error."""
    mc.manual_seed(0)
    mc_model = mc.models.get_model(name)
    torch.manual_seed(0)
    tv_model = torchvision.models.get_model(name, weights=None)
    tv_params = dict(tv_model.named_parameters())
    for key, p in mc_model.named_parameters():
        mine, theirs = p.detach().numpy(), tv_params[key].detach().numpy()
        if mine.ndim == 1:
            numpy.testing.assert_array_equal(mine, theirs, err_msg=key)   # constants: 0 or 1
        elif mine.size >= 2000:
            assert abs(mine.std() / theirs.std() - 1) < 0.1, key
            assert abs(mine.mean()) < 0.1 * theirs.std(), key


def test_structure_and_skip_connections():
    """Every variant has torchvision's state_dict layout, batch-norm
    settings and skip connections (built without running anything)."""
    for name in NAMES:
        with skip_init():
            mc_model = mc.models.get_model(name)
        with torch.device("meta"):
            tv_model = torchvision.models.get_model(name, weights=None)
        check_structure(mc_model, tv_model)
        mine = [(m.eps, m.momentum) for m in mc_model.modules() if isinstance(m, mc.nn.BatchNorm2d)]
        assert mine == [(m.eps, m.momentum) for m in tv_model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        mine = [m.use_res_connect for m in mc_model.modules() if isinstance(m, (MBConv, FusedMBConv))]
        assert mine == [m.use_res_connect for m in tv_model.modules() if hasattr(m, "use_res_connect")], name


def test_registry():
    names = mc.models.list_models()
    assert all(name in names for name in NAMES)
    model = mc.models.get_model("efficientnet_b0", num_classes=7, dropout=0.1)
    assert isinstance(model, mc.models.EfficientNet)
    assert model.classifier[1].out_features == 7 and model.classifier[0].p == 0.1


@pytest.mark.parametrize("name", NAMES)
def test_weights_refused(name):
    check_weights_refused(getattr(mc.models, name))


def test_bad_arguments():
    with pytest.raises(ValueError, match="empty"):
        mc.models.EfficientNet([], dropout=0.2)
    with pytest.raises(TypeError, match="MBConvConfig"):
        mc.models.EfficientNet([[1, 3, 1, 32, 16, 1]], dropout=0.2)
    with pytest.raises(ValueError, match="stride"):
        MBConv(mc.models.MBConvConfig(6, 3, 3, 16, 24, 1), 0.0, mc.nn.BatchNorm2d)


def test_stochastic_depth():
    """Identity in eval mode and for p = 0; in training, each row (sample)
    is either zeroed or scaled by 1 / (1 - p), and the gradient follows."""
    x = mc.randn(400, 3, 2, 2, requires_grad=True)
    xs = x.detach().numpy()
    layer = StochasticDepth(0.25, "row")
    layer.eval()
    assert layer(x) is x
    layer.train()
    assert StochasticDepth(0.0, "row")(x) is x
    mc.manual_seed(0)
    y = layer(x)
    ratio = (y.detach().numpy() / xs).reshape(400, -1)
    assert numpy.allclose(ratio, ratio[:, :1])                          # whole rows
    kept = numpy.isclose(ratio[:, 0], 1 / 0.75)
    assert numpy.all(kept | (ratio[:, 0] == 0)) and 0.65 < kept.mean() < 0.85
    y.sum().backward()
    assert numpy.allclose(x.grad.numpy().reshape(400, -1)[:, 0], ratio[:, 0])
    batch = stochastic_depth(x, 0.5, "batch").detach().numpy() / xs
    assert numpy.all(batch == 0) or numpy.allclose(batch, 2.0)       # one draw for all
    assert not stochastic_depth(x, 1.0, "row").detach().numpy().any()
    with pytest.raises(ValueError, match="between 0 and 1"):
        stochastic_depth(x, 1.5, "row")
    with pytest.raises(ValueError, match="mode"):
        stochastic_depth(x, 0.5, "col")
    assert repr(layer) == "StochasticDepth(p=0.25, mode=row)"
