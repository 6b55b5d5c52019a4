"""ConvNeXt tiny/small/base/large against torchvision: eval-mode logits and
feature maps at 32 x 32 (the smallest input: five halvings leave 1 x 1),
training mode for convnext_tiny (logits and every parameter gradient in
float64), LayerNorm2d, and the default initialisation. convnext_large
(198M parameters) is too big to run in CI: its structure (state_dict keys
and shapes) is compared with torchvision's model built on the meta
device."""
import numpy
import pytest
import torch
import torchvision

import minicnn as mc
from minicnn.models._layers import LayerNorm2d, Permute
from minicnn.models.convnext import CNBlock
from parity import check_parity
from zoo_check import (build_pair, build_pair_from_meta, check_eval, check_structure, check_train, check_weights_refused,
                       skip_init)

NAMES = ["convnext_tiny", "convnext_small", "convnext_base", "convnext_large"]

# The stem, a block (and inside it the channels-last MLP), a downsampling
# layer, a late block, the last stage.
LAYERS = ["features.0", "features.1.0", "features.1.0.block.5", "features.2", "features.5.2", "features.7"]


def test_eval_parity_tiny():
    with skip_init():  # torchvision's weights replace minicnn's at once
        mc_model, tv_model = build_pair("convnext_tiny")
    check_eval(mc_model, tv_model, (1, 3, 32, 32), numpy.float32, layers=LAYERS)
    check_eval(mc_model, tv_model, (1, 3, 32, 32), numpy.float64, layers=LAYERS)


@pytest.mark.slow
@pytest.mark.parametrize("name, dtype", [("convnext_small", numpy.float64), ("convnext_base", numpy.float32)])
def test_eval_parity_big(name, dtype):
    with skip_init():
        mc_model, tv_model = build_pair(name)
    check_eval(mc_model, tv_model, (1, 3, 32, 32), dtype, layers=LAYERS)


@pytest.mark.slow
def test_eval_parity_of_convnext_large():
    """198M parameters: torchvision's is built on the meta device and
    filled with cheap random values, then both run in float32."""
    with torch.device("meta"):
        tv_on_meta = torchvision.models.convnext_large(weights=None)
    mc_model, tv_model = build_pair_from_meta(mc.models.convnext_large, tv_on_meta)
    check_eval(mc_model, tv_model, (1, 3, 32, 32), numpy.float32, layers=LAYERS[-1:])


def test_structure_of_convnext_large():
    """Too big to run here (198M parameters): the same state_dict keys and
    shapes as torchvision's."""
    with skip_init():
        mc_model = mc.models.convnext_large()
    with torch.device("meta"):
        tv_model = torchvision.models.convnext_large(weights=None)
    check_structure(mc_model, tv_model)


def test_train_parity():
    """Training mode, stochastic depth off (ConvNeXt has no batch norm and
    no dropout: training changes nothing else)."""
    mc_model, tv_model = build_pair("convnext_tiny", stochastic_depth_prob=0.0)
    check_train(mc_model, tv_model, (2, 3, 32, 32))


def test_options_parity():
    """num_classes, layer_scale and stochastic_depth_prob reach the model as
    in torchvision."""
    mc_model, tv_model = build_pair("convnext_tiny", num_classes=10, layer_scale=0.5, stochastic_depth_prob=0.3)
    mine = [m.stochastic_depth.p for m in mc_model.modules() if isinstance(m, CNBlock)]
    theirs = [m.stochastic_depth.p for m in tv_model.modules() if hasattr(m, "stochastic_depth")]
    assert mine == theirs and mine[-1] == 0.3
    assert numpy.all(mc_model.features[1][0].layer_scale.detach().numpy() == 0.5)
    check_eval(mc_model, tv_model, (1, 3, 32, 32), numpy.float64)


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_layer_norm_2d(dtype, rng):
    """Forward and gradients (input, weight, bias) as torchvision's LayerNorm2d."""
    x, w, b = rng.standard_normal((2, 5, 3, 4)), rng.standard_normal(5), rng.standard_normal(5)

    def mine(x, w, b):
        layer = LayerNorm2d(5, eps=1e-6)
        layer.weight, layer.bias = mc.nn.Parameter(w), mc.nn.Parameter(b)
        return layer(x)

    def theirs(x, w, b):
        layer = torchvision.models.convnext.LayerNorm2d(5, eps=1e-6).to(x.dtype)
        layer.weight, layer.bias = torch.nn.Parameter(w), torch.nn.Parameter(b)
        return layer(x)

    check_parity(mine, theirs, [x, w, b], dtype=dtype)


def test_permute():
    x = mc.randn(2, 3, 4, 5)
    assert Permute([0, 2, 3, 1])(x).shape == (2, 4, 5, 3)


def test_default_initialisation():
    """torchvision's scheme: truncated N(0, 0.02^2) convs and Linears, zero
    biases, identity LayerNorms, layer_scale 1e-6."""
    mc.manual_seed(0)
    mc_model = mc.models.convnext_tiny()
    torch.manual_seed(0)
    tv_model = torchvision.models.convnext_tiny()
    tv_params = dict(tv_model.named_parameters())
    for key, p in mc_model.named_parameters():
        mine, theirs = p.detach().numpy(), tv_params[key].detach().numpy()
        if mine.ndim == 1 or key.endswith("layer_scale"):
            numpy.testing.assert_array_equal(mine, theirs, err_msg=key)   # constants
        elif mine.size >= 2000:
            assert abs(mine.std() / theirs.std() - 1) < 0.1, key
            assert abs(mine.mean()) < 0.1 * theirs.std(), key
            assert numpy.abs(mine).max() <= 2.0, key                      # truncated at +-2


def test_registry():
    names = mc.models.list_models()
    assert all(name in names for name in NAMES)
    model = mc.models.get_model("convnext_tiny", num_classes=7)
    assert isinstance(model, mc.models.ConvNeXt) and model.classifier[2].out_features == 7


@pytest.mark.parametrize("name", NAMES)
def test_weights_refused(name):
    check_weights_refused(getattr(mc.models, name))


def test_bad_arguments():
    with pytest.raises(ValueError, match="empty"):
        mc.models.ConvNeXt([])
    with pytest.raises(TypeError, match="CNBlockConfig"):
        mc.models.ConvNeXt([[96, 192, 3]])
