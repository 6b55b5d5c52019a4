"""ResNet, ResNeXt and Wide ResNet against torchvision: eval-mode logits
and feature maps at 32 x 32 (layer4 is then 1 x 1); training-mode logits,
gradients and running statistics for resnet18 (at 48 x 48); the builder
options (dilation, groups, zero_init_residual, norm_layer); and the
paper's "v1" bottleneck (``stride_in_1x1=True``) against a torchvision
model with its strides moved the same way.

Models over ~60M parameters are checked in one dtype only (both dtypes
are covered across them) and marked slow."""
import numpy
import pytest
import torch
import torchvision

import minicnn as mc
from minicnn.models.resnet import BasicBlock, Bottleneck, ResNet
from zoo_check import build_pair, check_eval, check_train, check_weights_refused, relative_error

NAMES = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d",
         "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2"]
LAYERS = ["maxpool", "layer1", "layer2.0.downsample", "layer3", "layer4"]

# Both dtypes for the models up to ~45M parameters, one for the big ones
# (both dtypes are covered across them).
SMALL = ["resnet18", "resnet34", "resnet50", "resnet101", "resnext50_32x4d"]
BIG = {"resnet152": (numpy.float64,), "resnext101_32x8d": (numpy.float32,),
             "resnext101_64x4d": (numpy.float64,), "wide_resnet50_2": (numpy.float32,),
             "wide_resnet101_2": (numpy.float64,)}


def test_registered():
    models = mc.models.list_models()
    for name in NAMES:
        assert name in models
    model = mc.models.get_model("resnet18", num_classes=10)
    assert isinstance(model, mc.models.ResNet) and model.fc.out_features == 10


@pytest.mark.parametrize("name", NAMES)
def test_weights_refused(name):
    check_weights_refused(getattr(mc.models, name))


def test_fixed_arguments_are_checked():
    with pytest.raises(ValueError, match="groups is fixed to 32"):
        mc.models.resnext50_32x4d(groups=8)
    with pytest.raises(ValueError, match="only supports groups=1"):
        mc.models.resnet18(groups=2)
    with pytest.raises(ValueError, match="3-element"):
        mc.models.resnet50(replace_stride_with_dilation=[True])


def test_init_scheme():
    """torchvision's init: convs kaiming_normal_(fan_out, relu), batch norm
    weight 1 and bias 0; zero_init_residual zeroes each branch's last norm."""
    mc.manual_seed(0)
    model = mc.models.resnet18()
    w = model.layer3[1].conv2.weight.detach().numpy()      # (256, 256, 3, 3): fan_out = 256 * 9
    assert abs(w.std() / numpy.sqrt(2 / (256 * 9)) - 1) < 0.02 and abs(w.mean()) < 1e-3
    assert (model.bn1.weight.detach().numpy() == 1).all() and (model.bn1.bias.detach().numpy() == 0).all()
    assert (model.layer1[0].bn2.weight.detach().numpy() == 1).all()
    zeroed = mc.models.resnet18(zero_init_residual=True)
    assert (zeroed.layer1[0].bn2.weight.detach().numpy() == 0).all()
    assert (zeroed.layer1[0].bn1.weight.detach().numpy() == 1).all()
    zeroed = mc.models.resnet50(zero_init_residual=True)
    assert (zeroed.layer4[2].bn3.weight.detach().numpy() == 0).all()
    assert (zeroed.layer4[2].bn2.weight.detach().numpy() == 1).all()


@pytest.mark.parametrize("name", SMALL)
def test_eval_parity(name):
    mc_model, tv_model = build_pair(name)
    for dtype in (numpy.float64, numpy.float32):
        print(name, check_eval(mc_model, tv_model, (2, 3, 32, 32), dtype, layers=LAYERS))


@pytest.mark.slow
@pytest.mark.parametrize("name", BIG)
def test_eval_parity_big(name):
    mc_model, tv_model = build_pair(name, shared=True)
    for dtype in BIG[name]:
        print(name, check_eval(mc_model, tv_model, (1, 3, 32, 32), dtype, layers=LAYERS))


def test_train_parity_resnet18():
    """Batch norm on batch statistics: logits, every parameter gradient and
    the updated running statistics, float64. At 48 x 48 layer4's maps are
    2 x 2, so its batch norms see 8 values per channel (at 32 x 32 only 2,
    which normalize to +-1 and make a weak test)."""
    mc_model, tv_model = build_pair("resnet18")
    print(check_train(mc_model, tv_model, (2, 3, 48, 48)))


def _small_pair(block, seed=0, **kwargs):
    """A one-block-per-stage ResNet in both frameworks, torchvision's weights."""
    torch.manual_seed(seed)
    tv_block = {BasicBlock: torchvision.models.resnet.BasicBlock,
                Bottleneck: torchvision.models.resnet.Bottleneck}[block]
    tv_norm = kwargs.pop("tv_norm_layer", None)
    tv_model = torchvision.models.resnet.ResNet(tv_block, [1, 1, 1, 1], num_classes=10, norm_layer=tv_norm,
                                                **kwargs)
    mc_model = ResNet(block, [1, 1, 1, 1], num_classes=10, **kwargs, **_mc_norm(tv_norm))
    mc_model.load_state_dict(tv_model.state_dict())
    return mc_model, tv_model


def _mc_norm(tv_norm):
    if tv_norm is None:
        return {}
    return {"norm_layer": lambda channels: mc.nn.GroupNorm(8, channels)}


@pytest.mark.parametrize("kwargs", [
    {"replace_stride_with_dilation": [False, True, True]},
    {"groups": 4, "width_per_group": 16},
    {"zero_init_residual": True},
    {"tv_norm_layer": lambda channels: torch.nn.GroupNorm(8, channels)},
], ids=["dilation", "groups", "zero_init_residual", "groupnorm"])
def test_options_parity(kwargs):
    mc_model, tv_model = _small_pair(Bottleneck, **kwargs)
    print(check_eval(mc_model, tv_model, (2, 3, 32, 32), numpy.float64, layers=["layer2", "layer4"]))


def test_basic_block_rejects_dilation_and_stride_in_1x1():
    with pytest.raises(ValueError, match="dilation"):
        mc.models.resnet18(replace_stride_with_dilation=[False, False, True])
    with pytest.raises(ValueError, match="stride_in_1x1"):
        mc.models.resnet34(stride_in_1x1=True)


def _strides(model):
    """(conv1 stride, conv2 stride) of the first block of each stage."""
    return [(layer[0].conv1.stride, layer[0].conv2.stride)
            for layer in (model.layer1, model.layer2, model.layer3, model.layer4)]


def test_stride_in_1x1_moves_the_stride():
    """v1.5 (default) strides the 3x3 conv; v1 the first 1x1 conv. Same
    parameters, same output shapes."""
    v15 = mc.models.resnet50(num_classes=10)
    v1 = mc.models.resnet50(num_classes=10, stride_in_1x1=True)
    one, two = (1, 1), (2, 2)
    assert _strides(v15) == [(one, one), (one, two), (one, two), (one, two)]
    assert _strides(v1) == [(one, one), (two, one), (two, one), (two, one)]
    assert all(block.conv1.stride == one and block.conv2.stride == one
               for layer in (v1.layer2, v1.layer3) for block in list(layer)[1:])
    layout = [(key, value.shape) for key, value in v15.state_dict().items()]
    assert [(key, value.shape) for key, value in v1.state_dict().items()] == layout
    v1.eval()
    shapes = {}
    for stage in ("layer2", "layer3", "layer4"):
        v1.get_submodule(stage).register_forward_hook(
            lambda module, args, out, stage=stage: shapes.__setitem__(stage, out.shape))
    with mc.no_grad():
        assert v1(mc.randn(2, 3, 64, 64)).shape == (2, 10)
    # What v1.5 (torchvision's resnet50) gives for a 64 x 64 input too.
    assert shapes == {"layer2": (2, 512, 8, 8), "layer3": (2, 1024, 4, 4), "layer4": (2, 2048, 2, 2)}


def test_stride_in_1x1_parity():
    """The v1 bottleneck equals torchvision's with the strides of conv1 and
    conv2 swapped by hand, and differs from v1.5."""
    mc_model, tv_model = _small_pair(Bottleneck)
    mc_v1 = ResNet(Bottleneck, [1, 1, 1, 1], num_classes=10, stride_in_1x1=True)
    mc_v1.load_state_dict(tv_model.state_dict())
    for layer in (tv_model.layer2, tv_model.layer3, tv_model.layer4):
        layer[0].conv1.stride, layer[0].conv2.stride = (2, 2), (1, 1)
    print(check_eval(mc_v1, tv_model, (2, 3, 32, 32), numpy.float64, layers=["layer2", "layer4"]))
    x = mc.randn(2, 3, 32, 32, dtype=mc.float64)
    with mc.no_grad():
        assert relative_error(mc_v1.eval()(x).numpy(), mc_model.double().eval()(x).numpy()) > 1e-3
