"""RegNetX and RegNetY (every size torchvision has) against torchvision:
eval-mode logits and feature maps at 32 x 32 (float64 and float32; the
big ones in one dtype), the per-stage widths the RegNet rule generates,
and the default initialisation. regnet_y_128gf (645M parameters) is too
big to run in CI: its structure (state_dict keys and shapes) is compared
with torchvision's model built on the meta device."""
from unittest import mock

import numpy
import pytest
import torch
import torchvision

import minicnn as mc
from minicnn.models.regnet import BlockParams, _CONFIGS
from zoo_check import (build_pair, build_pair_from_meta, check_eval, check_structure, check_train, check_weights_refused,
                       skip_init)

SMALL = ["regnet_y_400mf", "regnet_y_800mf", "regnet_y_1_6gf", "regnet_y_3_2gf",
         "regnet_x_400mf", "regnet_x_800mf", "regnet_x_1_6gf", "regnet_x_3_2gf"]
# 39M-145M parameters: one dtype each, alternating.
BIG = [("regnet_y_8gf", numpy.float64), ("regnet_y_16gf", numpy.float32), ("regnet_y_32gf", numpy.float32),
       ("regnet_x_8gf", numpy.float32), ("regnet_x_16gf", numpy.float64), ("regnet_x_32gf", numpy.float32)]
NAMES = list(_CONFIGS)

# The stem, a block with a projection shortcut (and SE in RegNetY), a
# block with an identity shortcut, the last stage.
LAYERS = ["stem", "trunk_output.block2.block2-0", "trunk_output.block3.block3-1", "trunk_output.block4"]


def _torchvision_on_meta(name):
    """torchvision's model on the meta device (no memory, no
    initialisation). RegNet's builder computes its widths with torch ops and
    reads them back with ``.tolist()``, which the meta device cannot do:
    that part runs on the CPU."""
    from_init_params = torchvision.models.regnet.BlockParams.from_init_params.__func__

    def on_cpu(cls, *args, **kwargs):
        with torch.device("cpu"):
            return from_init_params(cls, *args, **kwargs)

    with mock.patch.object(torchvision.models.regnet.BlockParams, "from_init_params", classmethod(on_cpu)):
        with torch.device("meta"):
            return torchvision.models.get_model(name, weights=None)


@pytest.mark.parametrize("name", SMALL)
def test_eval_parity(name):
    with skip_init():  # torchvision's weights replace minicnn's at once
        mc_model, tv_model = build_pair(name)
    check_eval(mc_model, tv_model, (1, 3, 32, 32), numpy.float32, layers=LAYERS)
    check_eval(mc_model, tv_model, (1, 3, 32, 32), numpy.float64, layers=LAYERS)


@pytest.mark.slow
@pytest.mark.parametrize("name, dtype", BIG)
def test_eval_parity_big(name, dtype):
    mc_model, tv_model = build_pair(name, dtype=dtype, shared=True)
    check_eval(mc_model, tv_model, (1, 3, 32, 32), dtype, layers=LAYERS)


@pytest.mark.slow
def test_eval_parity_of_regnet_y_128gf():
    """645M parameters (2.6 GB in float32): torchvision's is built on the
    meta device and filled with cheap random values, then both run in
    float32 on one small image."""
    mc_model, tv_model = build_pair_from_meta(mc.models.regnet_y_128gf, _torchvision_on_meta("regnet_y_128gf"))
    check_eval(mc_model, tv_model, (1, 3, 32, 32), numpy.float32, layers=LAYERS[-1:])


def test_structure_of_regnet_y_128gf():
    """Too big to run here (645M parameters, 2.6 GB in float32): the same
    state_dict keys and shapes as torchvision's."""
    with skip_init():
        mc_model = mc.models.regnet_y_128gf()
    check_structure(mc_model, _torchvision_on_meta("regnet_y_128gf"))


@pytest.mark.parametrize("name", NAMES)
def test_block_params(name):
    """The RegNet rule gives torchvision's stages: depths, widths, group
    widths (widths are rounded in float32, as torch computes them)."""
    depth, w_0, w_a, w_m, group_width, se_ratio = _CONFIGS[name]
    mine = BlockParams.from_init_params(depth, w_0, w_a, w_m, group_width, se_ratio=se_ratio)
    theirs = torchvision.models.regnet.BlockParams.from_init_params(depth, w_0, w_a, w_m, group_width,
                                                                    se_ratio=se_ratio)
    for field in ("depths", "widths", "group_widths", "bottleneck_multipliers", "strides", "se_ratio"):
        assert getattr(mine, field) == getattr(theirs, field), field


def test_options_parity():
    """num_classes and stem_width reach the model as in torchvision; a
    training step (batch statistics; 64 x 64 so that the last batch norms
    see 8 values per channel) matches too."""
    mc_model, tv_model = build_pair("regnet_x_400mf", num_classes=10, stem_width=16)
    check_eval(mc_model, tv_model, (1, 3, 32, 32), numpy.float64)
    mc_model, tv_model = build_pair("regnet_y_400mf")
    check_train(mc_model, tv_model, (2, 3, 64, 64))


def test_default_initialisation():
    """torchvision's scheme: N(0, 2 / fan_out) convs (fan_out = k^2 C_out),
    N(0, 0.01^2) fc, zero biases, identity batch norms."""
    mc.manual_seed(0)
    mc_model = mc.models.regnet_y_400mf()
    torch.manual_seed(0)
    tv_model = torchvision.models.regnet_y_400mf()
    tv_params = dict(tv_model.named_parameters())
    for key, p in mc_model.named_parameters():
        mine, theirs = p.detach().numpy(), tv_params[key].detach().numpy()
        if mine.ndim == 1 and ".se." not in key:   # (SE biases keep Conv2d's random default)
            numpy.testing.assert_array_equal(mine, theirs, err_msg=key)   # constants: 0 or 1
        elif mine.size >= 2000:
            assert abs(mine.std() / theirs.std() - 1) < 0.1, key
            assert abs(mine.mean()) < 0.1 * theirs.std(), key


def test_registry():
    names = mc.models.list_models()
    assert all(name in names for name in NAMES)
    model = mc.models.get_model("regnet_x_400mf", num_classes=7)
    assert isinstance(model, mc.models.RegNet) and model.fc.out_features == 7


@pytest.mark.parametrize("name", NAMES)
def test_weights_refused(name):
    check_weights_refused(getattr(mc.models, name))


def test_bad_arguments():
    with pytest.raises(ValueError, match="w_0"):
        BlockParams.from_init_params(depth=16, w_0=50, w_a=27.89, w_m=2.09, group_width=8)
