"""MobileNetV2 and MobileNetV3 (large, small) against torchvision:
eval-mode logits and feature maps at 32 x 32 (the last map is then 1 x 1)
in float64 and float32, the builders' options (width_mult, round_nearest,
reduced_tail, dilated), and training mode (batch statistics, dropout 0):
logits, every parameter gradient and the running statistics in float64,
for mobilenet_v2 (the issue's case) and mobilenet_v3_small (hard swish
and the hard-sigmoid SE gate)."""
import numpy
import pytest
import torch
import torchvision

import minicnn as mc
from minicnn.models.mobilenetv2 import InvertedResidual as V2Block
from minicnn.models.mobilenetv3 import InvertedResidual as V3Block
from zoo_check import build_pair, check_eval, check_init_distributions, check_train, check_weights_refused

# Named layers whose outputs are compared: the stem, blocks with and
# without a skip connection, SE gates, the last conv.
LAYERS = {
    "mobilenet_v2": ["features.0", "features.1", "features.3", "features.14", "features.18"],
    "mobilenet_v3_large": ["features.0", "features.4", "features.5", "features.5.block.2", "features.16", "avgpool"],
    "mobilenet_v3_small": ["features.0", "features.1", "features.1.block.1", "features.5", "features.12"],
}
NAMES = list(LAYERS)


@pytest.mark.parametrize("name", NAMES)
def test_eval_parity(name):
    mc_model, tv_model = build_pair(name)
    check_eval(mc_model, tv_model, (2, 3, 32, 32), numpy.float32, layers=LAYERS[name])
    check_eval(mc_model, tv_model, (2, 3, 32, 32), numpy.float64, layers=LAYERS[name])


@pytest.mark.parametrize("name, kwargs", [
    ("mobilenet_v2", dict(width_mult=0.5, round_nearest=4, num_classes=10)),
    ("mobilenet_v2", dict(width_mult=1.4, inverted_residual_setting=[[1, 16, 1, 1], [6, 24, 2, 2], [4, 40, 2, 2]])),
    ("mobilenet_v3_small", dict(reduced_tail=True, dilated=True, width_mult=0.75, num_classes=7)),
])
def test_options_parity(name, kwargs):
    """The builders' keyword arguments change the architecture as in torchvision."""
    mc_model, tv_model = build_pair(name, **kwargs)
    check_eval(mc_model, tv_model, (1, 3, 32, 32), numpy.float64)


class _ExactHardsigmoid(torch.nn.Module):
    """torch's hardsigmoid with an exact gradient. torch's own backward
    uses the float32 constant 1/6 even in float64 (0.16666667163..., off
    by 3e-8 relative), minicnn's the float64 one; the forward is the same."""

    def forward(self, x):
        return torch.nn.functional.relu6(x + 3) / 6


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small"])
def test_train_parity(name):
    """Training mode at 64 x 64, batch 2, so the last batch norms still see
    8 values per channel."""
    mc_model, tv_model = build_pair(name, dropout=0.0)
    for module in tv_model.modules():
        if isinstance(module, torchvision.ops.SqueezeExcitation):
            module.scale_activation = _ExactHardsigmoid()
    check_train(mc_model, tv_model, (2, 3, 64, 64))


def test_hardsigmoid_gradient_of_torch():
    """Why _ExactHardsigmoid exists: if torch ever computes the float64
    gradient exactly, this fails and the workaround can go."""
    x = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    torch.nn.functional.hardsigmoid(x).backward()
    assert x.grad.item() == numpy.float64(numpy.float32(1 / 6)) != 1 / 6


@pytest.mark.parametrize("name", NAMES)
def test_default_initialisation(name):
    """The same distributions as torchvision's: He normal (fan_out) convs,
    N(0, 0.01^2) Linears, zero biases, identity batch norms."""
    mc.manual_seed(0)
    torch.manual_seed(0)
    check_init_distributions(mc.models.get_model(name), torchvision.models.get_model(name, weights=None))


def test_registry():
    names = mc.models.list_models()
    for name in NAMES:
        assert name in names
    model = mc.models.get_model("mobilenet_v2", num_classes=10, width_mult=0.5)
    assert isinstance(model, mc.models.MobileNetV2)
    assert model.classifier[1].out_features == 10 and model.last_channel == 1280
    model = mc.models.get_model("mobilenet_v3_large", num_classes=5, dropout=0.5)
    assert isinstance(model, mc.models.MobileNetV3)
    assert model.classifier[3].out_features == 5 and model.classifier[2].p == 0.5


@pytest.mark.parametrize("builder", [mc.models.mobilenet_v2, mc.models.mobilenet_v3_large,
                                     mc.models.mobilenet_v3_small])
def test_weights_refused(builder):
    check_weights_refused(builder)
    builder(weights=None, progress=False)


@pytest.mark.parametrize("name, block", [("mobilenet_v2", V2Block), ("mobilenet_v3_small", V3Block)])
def test_skip_connections(name, block):
    """Skip connections in exactly the blocks where torchvision has them
    (stride 1, same width in and out)."""
    mine = [m.use_res_connect for m in mc.models.get_model(name).features if isinstance(m, block)]
    theirs = [m.use_res_connect for m in torchvision.models.get_model(name).features
              if hasattr(m, "use_res_connect")]
    assert mine == theirs and any(mine) and not all(mine)


def test_bad_arguments():
    with pytest.raises(ValueError, match="inverted_residual_setting"):
        mc.models.mobilenet_v2(inverted_residual_setting=[[1, 16, 1]])
    with pytest.raises(ValueError, match="stride"):
        V2Block(16, 16, 3, expand_ratio=6)
    with pytest.raises(ValueError, match="empty"):
        mc.models.MobileNetV3([], 1280)
    with pytest.raises(TypeError, match="InvertedResidualConfig"):
        mc.models.MobileNetV3([[16, 3, 16, 16, False, "RE", 1, 1]], 1280)


def test_runs_on_1x1_input():
    """torchvision's min_size is 1 x 1: every stride-2 conv pads, so the
    map stays 1 x 1 (and batch norm works on one value per channel in eval)."""
    mc_model, tv_model = build_pair("mobilenet_v3_small")
    check_eval(mc_model, tv_model, (1, 3, 1, 1), numpy.float64)
