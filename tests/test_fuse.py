"""mc.fuse: the fused model computes what the unfused one computes in eval
(float32, to rounding) on every model of the zoo, with random batch-norm
statistics so that folding changes the weights; the folding itself
against torch's ``fuse_conv_bn_eval``; the unfused model is untouched;
train mode is refused and gradients still reach the input.

Zoo models are built without their initialisation (``no_init``) and
filled with a cheap pseudo-random pattern (a random block tiled over each
array: the same values in both models, far cheaper than drawing hundreds
of millions of numbers); those over ~25M parameters are marked slow.
Detection models are compared on their backbone's feature maps (their
post-processing keeps boxes by score thresholds, where rounding decides),
s3d and SSD300 on their ``features`` (their heads need full-size inputs),
the two largest models on their first stage (``FIRST_STAGE``).
"""
import numpy
import pytest
import torch

import minicnn as mc
from minicnn.fuse import FusedBasicBlock, FusedBottleneck, FusedConv, FusedDenseLayer, FusedNorm, FusedResidual
from minicnn.nn.skip_init import no_init

#: The models of over ~25M parameters (and the 3-D video nets): marked slow.
SLOW_PARAMETERS = {
    "alexnet", "alexnet_original", "convnext_base", "convnext_large", "convnext_small", "convnext_tiny",
    "deeplabv3_resnet101", "deeplabv3_resnet50", "densenet161", "efficientnet_b5", "efficientnet_b6",
    "efficientnet_b7", "efficientnet_v2_l", "efficientnet_v2_m", "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2", "fcn_resnet101", "fcn_resnet50", "fcos_resnet50_fpn", "inception_v3",
    "keypointrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2", "r2plus1d_18", "r3d_18",
    "regnet_x_16gf", "regnet_x_32gf", "regnet_x_8gf", "regnet_y_128gf", "regnet_y_16gf", "regnet_y_32gf",
    "regnet_y_8gf", "resnet101", "resnet152", "resnext101_32x8d", "resnext101_64x4d", "resnext50_32x4d",
    "retinanet_resnet50_fpn", "retinanet_resnet50_fpn_v2", "s3d", "se_resnet50", "ssd300_vgg16", "vgg11",
    "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn", "wide_resnet101_2",
    "wide_resnet50_2", "xception", "resnet50", "mc3_18",
}
#: One input per model, (N, C, ...): small, but large enough for each model's downsampling.
INPUTS = {"lenet5": (1, 1, 32, 32), "yolo_small": (1, 1, 64, 64), "inception_v3": (1, 3, 96, 96),
          "xception": (1, 3, 96, 96), "alexnet_original": (1, 3, 96, 96),
          **{name: (1, 3, 4, 32, 32) for name in ("r3d_18", "mc3_18", "r2plus1d_18")}, "s3d": (1, 3, 8, 64, 64)}
DETECTION = ("rcnn", "retinanet", "fcos", "ssd")
#: Models whose head needs a full-size input (s3d pools over 2x7x7, SSD300's extra layers
#: want 300x300): compared on their ``features`` at a small input.
FEATURES_ONLY = {"s3d", "ssd300_vgg16"}
#: The two largest (645M and 198M parameters, 2.6 GB and 0.8 GB of float32): their stem and
#: first stage, which hold every kind of block they have (filling and copying the whole
#: model took over a minute).
FIRST_STAGE = {"regnet_y_128gf": lambda m: mc.nn.Sequential(m.stem, m.trunk_output.block1),
               "convnext_large": lambda m: m.features[:2]}


def fill(model, seed=0):
    """Every parameter and buffer of ``model`` a random block tiled over
    the array (weights scaled by 1/sqrt(fan-in)); batch norms get random
    running means, positive running variances and affine parameters. The
    arrays are written in place a tile at a time: no temporary of a
    VGG's 100M-value weight (fresh memory costs seconds on some hosts)."""
    rng = numpy.random.default_rng(seed)
    block = rng.random(4093).astype(numpy.float32) - 0.5     # a prime length: no alignment with channels
    for module in model.modules():
        for name, tensor in list(module._parameters.items()) + list(module._buffers.items()):
            if tensor is None or tensor.data.dtype.kind != "f":
                continue
            a = tensor.data
            values = numpy.roll(block, -int(rng.integers(len(block))))
            if name == "running_var":
                values = 0.5 + 2 * (values + 0.5)                   # in [0.5, 2.5)
            elif name == "weight" and a.ndim == 1:
                values = 1 + values                                 # norm scales in [0.5, 1.5)
            elif a.ndim > 1:
                values = values * numpy.sqrt(12.0 / (a.size // a.shape[0]))
            else:
                values = values * 0.2
            tile = numpy.resize(values.astype(a.dtype), min(a.size, 256 * len(block)))
            flat = a.reshape(-1)
            assert numpy.shares_memory(flat, a), name              # a view: parameters are contiguous
            for start in range(0, a.size, tile.size):
                piece = flat[start:start + tile.size]
                piece[...] = tile[:piece.size]
    return model


def arrays(output):
    """The arrays of a model's output (a Tensor, or dicts / lists / tuples of them), in a fixed order."""
    if isinstance(output, mc.Tensor):
        return [output.data]
    if isinstance(output, dict):
        return [a for key in sorted(output) for a in arrays(output[key])]
    if isinstance(output, (list, tuple)):
        return [a for item in output for a in arrays(item)]
    return []


def relative_error(actual, expected):
    actual, expected = numpy.asarray(actual, numpy.float64), numpy.asarray(expected, numpy.float64)
    assert actual.shape == expected.shape
    return numpy.abs(actual - expected).max(initial=0.0) / max(numpy.abs(expected).max(initial=0.0), 1e-30)


def build(name):
    with no_init():
        return fill(mc.models.get_model(name)).eval()


def compared_part(name):
    """The part of zoo model ``name`` compared, filled and in eval."""
    with no_init():
        model = mc.models.get_model(name)
    if any(word in name for word in DETECTION):
        model = model.backbone
    if name in FEATURES_ONLY:
        model = model.features
    if name in FIRST_STAGE:
        model = FIRST_STAGE[name](model)
    return fill(model).eval()


def zoo_params():
    return [pytest.param(name, marks=pytest.mark.slow) if name in SLOW_PARAMETERS else name
            for name in mc.models.list_models()]


@pytest.mark.parametrize("name", zoo_params())
def test_fused_zoo_model_matches_unfused(name):
    model = compared_part(name)
    fused = mc.fuse(model)
    x = mc.tensor(numpy.random.default_rng(1).standard_normal(INPUTS.get(name, (1, 3, 64, 64)))
                  .astype(numpy.float32))
    with mc.no_grad():
        expected, actual = arrays(model(x)), arrays(fused(x))
    assert expected and len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert relative_error(a, e) < 1e-5, name
    assert not any(isinstance(m, FusedConv) for m in model.modules())    # the unfused model is untouched


@pytest.mark.parametrize("name, blocks", [("resnet18", FusedBasicBlock), ("resnet50", FusedBottleneck),
                                          ("mobilenet_v2", FusedResidual), ("efficientnet_b0", FusedResidual)])
def test_batch_norms_are_all_folded_and_residual_adds_fused(name, blocks):
    model = build(name)
    before = {key: value.data.copy() for key, value in model.state_dict().items()}
    fused = mc.fuse(model)
    assert not any(isinstance(m, mc.nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, blocks) for m in fused.modules())
    assert all(m.folded_norm == "BatchNorm2d" for m in fused.modules() if isinstance(m, FusedConv))
    # The unfused model keeps its layers and weights, for training and for learners to read.
    assert sum(isinstance(m, mc.nn.BatchNorm2d) for m in model.modules()) > 10
    after = model.state_dict()
    assert before.keys() == after.keys() and all(numpy.array_equal(before[k], after[k].data) for k in before)


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_folding_matches_torch_fuse_conv_bn_eval(dtype):
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    conv, bn = mc.nn.Conv2d(4, 6, 3, padding=1, groups=2, dtype=dtype), mc.nn.BatchNorm2d(6, eps=1e-3, dtype=dtype)
    fill(mc.nn.Sequential(conv, bn))
    torch_dtype = torch.float64 if dtype == numpy.float64 else torch.float32
    torch_conv = torch.nn.Conv2d(4, 6, 3, padding=1, groups=2, dtype=torch_dtype)
    torch_bn = torch.nn.BatchNorm2d(6, eps=1e-3, dtype=torch_dtype)
    torch_conv.load_state_dict({k: torch.tensor(v.data) for k, v in conv.state_dict().items()})
    torch_bn.load_state_dict({k: torch.tensor(v.data) for k, v in bn.state_dict().items()})
    expected = fuse_conv_bn_eval(torch_conv.eval(), torch_bn.eval())
    fused = FusedConv(conv, bn, mc.nn.ReLU()).eval()
    tight = 1e-12 if dtype == numpy.float64 else 1e-6
    assert relative_error(fused.conv.weight.data, expected.weight.detach().numpy()) < tight
    assert relative_error(fused.conv.bias.data, expected.bias.detach().numpy()) < tight
    x = numpy.random.default_rng(2).standard_normal((2, 4, 5, 5)).astype(dtype)
    with torch.no_grad():
        want = torch.relu(expected(torch.tensor(x))).numpy()
    with mc.no_grad():
        assert relative_error(fused(mc.tensor(x)).data, want) < tight


def test_residual_goes_in_before_the_activation():
    conv = mc.nn.Conv2d(3, 3, 1, bias=False)
    conv.weight.data[...] = numpy.eye(3, dtype=numpy.float32).reshape(3, 3, 1, 1)
    fused = FusedConv(conv, None, mc.nn.ReLU6()).eval()
    x = mc.tensor(numpy.full((1, 3, 2, 2), 4.0, numpy.float32))
    r = mc.tensor(numpy.full((1, 3, 2, 2), -3.0, numpy.float32))
    with mc.no_grad():
        assert numpy.all(fused(x, residual=r).data == 1.0)          # relu6(4 - 3), not relu6(4) - 3
        assert numpy.all(fused(x, residual=mc.tensor(numpy.full((1, 3, 2, 2), 5.0, numpy.float32))).data == 6.0)
        with pytest.raises(ValueError, match=r"residual of shape \(1, 3, 1, 1\)"):
            fused(x, residual=mc.tensor(numpy.zeros((1, 3, 1, 1), numpy.float32)))


def test_fused_model_refuses_train_mode_and_passes_gradients_to_the_input():
    model = build("resnet18")
    fused = mc.fuse(model)
    assert not fused.training
    x = mc.tensor(numpy.random.default_rng(3).standard_normal((1, 3, 32, 32)).astype(numpy.float32),
                  requires_grad=True)
    model(x).sum().backward()
    expected = x.grad.data.copy()
    x.grad = None
    fused(x).sum().backward()                 # grad enabled: the out-of-place path records the graph
    assert relative_error(x.grad.data, expected) < 1e-4
    assert not any(m.conv.weight.requires_grad for m in fused.modules() if isinstance(m, FusedConv))
    fused.train()
    with pytest.raises(RuntimeError, match="inference only"):
        fused(x)


def test_what_cannot_be_folded_is_left_alone_and_bad_arguments_are_refused():
    norm = mc.nn.BatchNorm2d(4, track_running_stats=False)      # batch statistics even in eval: not foldable
    model = mc.nn.Sequential(mc.nn.Conv2d(3, 4, 3), norm, mc.nn.ReLU(), mc.nn.Conv2d(4, 4, 1), mc.nn.GELU())
    fused = mc.fuse(model)
    assert [type(m).__name__ for m in fused] == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "GELU"]
    x = mc.tensor(numpy.random.default_rng(4).standard_normal((2, 3, 6, 6)).astype(numpy.float32))
    with mc.no_grad():
        assert relative_error(fused(x).data, model.eval()(x).data) == 0
    with pytest.raises(TypeError, match="must be an nn.Module"):
        mc.fuse(lambda x: x)
    with pytest.raises(ValueError, match="cannot fold"):
        FusedConv(mc.nn.Conv2d(3, 4, 3), mc.nn.BatchNorm2d(5))
    with pytest.raises(TypeError, match="activation must be one of"):
        FusedConv(mc.nn.Conv2d(3, 4, 3), None, mc.nn.GELU())
    with pytest.raises(TypeError, match="conv must be"):
        FusedConv(mc.nn.Linear(3, 4))


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18"])
def test_blocks_with_group_norms_keep_their_own_forward(name):
    with no_init():
        model = fill(mc.models.get_model(name, norm_layer=lambda c: mc.nn.GroupNorm(4, c))).eval()
    fused = mc.fuse(model)
    assert not any(isinstance(m, (FusedResidual, FusedBasicBlock)) for m in fused.modules())
    x = mc.tensor(numpy.random.default_rng(5).standard_normal((1, 3, 32, 32)).astype(numpy.float32))
    with mc.no_grad():
        assert relative_error(fused(x).data, model(x).data) < 1e-5


def test_dense_layers_fold_their_second_norm_and_run_the_first_in_one_pass():
    """Each dense layer's bottleneck conv takes norm2 and relu2; norm1 (a
    batch norm before a conv, a ReLU between: not foldable) runs with relu1
    as one FusedNorm, as do the 3 transitions' norm and ReLU; of
    DenseNet-121's 121 batch norms only the last (its ReLU is a function
    call in DenseNet's forward) is left as it was."""
    model = build("densenet121")
    fused = mc.fuse(model)
    layers = [m for m in fused.modules() if isinstance(m, FusedDenseLayer)]
    assert len(layers) == 58
    assert all(layer.conv1.folded_norm == "BatchNorm2d" and isinstance(layer.norm1, FusedNorm)
               and isinstance(layer.relu1, mc.nn.Identity) for layer in layers)
    fused_norms = [m for m in fused.modules() if isinstance(m, FusedNorm)]
    assert len(fused_norms) == 58 + 3
    kept = [m for m in fused.modules() if isinstance(m, mc.nn.BatchNorm2d)]
    assert len(kept) == len(fused_norms) + 1 and sum(isinstance(m, mc.nn.BatchNorm2d) for m in model.modules()) == 121
    x = mc.tensor(numpy.random.default_rng(2).standard_normal((2, 3, 64, 64)).astype(numpy.float32))
    with mc.no_grad():
        assert relative_error(fused(x).data, model(x).data) < 1e-5


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("activation", [mc.nn.ReLU, mc.nn.ReLU6])
def test_a_norm_and_its_clamp_run_as_one_pass_and_match_torch(dtype, activation):
    norm = mc.nn.BatchNorm2d(5, eps=1e-3, dtype=dtype)
    fill(mc.nn.Sequential(norm))
    torch_norm = torch.nn.BatchNorm2d(5, eps=1e-3, dtype=torch.float64 if dtype == numpy.float64 else torch.float32)
    torch_norm.load_state_dict({k: torch.tensor(v.data) for k, v in norm.state_dict().items()})
    torch_activation = {mc.nn.ReLU: torch.relu, mc.nn.ReLU6: torch.nn.functional.relu6}[activation]
    x = (numpy.random.default_rng(6).standard_normal((2, 5, 4, 3)) * 8)[..., ::-1].astype(dtype)   # not contiguous
    x[0, 1, 2, 0] = numpy.nan
    fused = FusedNorm(norm, activation()).eval()
    with torch.no_grad():
        want = torch_activation(torch_norm.eval()(torch.tensor(x.copy()))).numpy()
    with mc.no_grad():
        got = fused(mc.tensor(x)).data
    assert numpy.isnan(got[0, 1, 2, 0]) and numpy.isnan(want[0, 1, 2, 0])
    finite = ~numpy.isnan(want)
    assert relative_error(got[finite], want[finite]) < (1e-12 if dtype == numpy.float64 else 1e-6)


def test_a_fused_norm_in_a_sequential_and_its_gradient_path():
    """Linear -> BatchNorm1d -> ReLU6 in a Sequential: the norm and its
    clamp become one FusedNorm (the Linear is no conv to fold into); with an
    input that requires grad, the same values through the modules, and the
    gradient reaches the input."""
    model = fill(mc.nn.Sequential(mc.nn.Linear(4, 6, dtype=numpy.float64), mc.nn.BatchNorm1d(6, dtype=numpy.float64),
                                  mc.nn.ReLU6())).eval()
    fused = mc.fuse(model)
    assert [type(m).__name__ for m in fused] == ["Linear", "FusedNorm", "Identity"]
    x = mc.tensor(numpy.random.default_rng(7).standard_normal((3, 4)).astype(numpy.float64) * 3, requires_grad=True)
    with mc.no_grad():
        assert relative_error(fused(x).data, model(x).data) < 1e-12
    model(x).sum().backward()
    expected, x.grad = x.grad.data.copy(), None
    fused(x).sum().backward()
    assert relative_error(x.grad.data, expected) < 1e-12
    with pytest.raises(ValueError, match="needs a batch norm with running statistics and a ReLU"):
        FusedNorm(mc.nn.BatchNorm2d(3), mc.nn.GELU())
    with pytest.raises(ValueError, match="needs a batch norm"):
        FusedNorm(mc.nn.BatchNorm2d(3, track_running_stats=False), mc.nn.ReLU())
    fused.train()
    with pytest.raises(RuntimeError, match="inference only"):
        fused(x)


def test_a_fused_conv_calls_its_kernel_directly_and_its_module_where_it_must(monkeypatch):
    """Under no_grad a FusedConv computes through the strategy's
    conv_forward, skipping the module call and F.conv2d's checks; the same
    numbers as through the module. It calls the module where that matters:
    hooks on the conv, a padding mode but zeros, an
    input the conv refuses (its own error), an unbatched input. (A
    transposed conv is never fused.)"""
    import minicnn.functional.conv as functional_conv
    calls = []
    real = functional_conv.convolution

    def spy(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)
    monkeypatch.setattr(functional_conv, "convolution", spy)
    rng = numpy.random.default_rng(6)
    x = mc.tensor(rng.standard_normal((2, 4, 7, 6)).astype(numpy.float32))
    for conv in (mc.nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=1), mc.nn.Conv2d(4, 8, 3, padding="same", groups=2),
                 mc.nn.Conv2d(4, 4, (1, 3), padding=(0, 2), dilation=2, groups=4)):
        fused = FusedConv(conv, None, mc.nn.ReLU()).eval()
        with mc.no_grad():
            calls.clear()
            mine = fused(x).data
            assert calls == []                                         # straight to the kernel
            expected = numpy.maximum(conv(x).data, 0)
        numpy.testing.assert_array_equal(mine, expected)
        assert fused._geometries                                       # the geometry, once per input size
    hooked = FusedConv(mc.nn.Conv2d(4, 6, 3), None, None).eval()
    seen = []
    hooked.conv.register_forward_hook(lambda module, args, output: seen.append(output.shape))
    reflect = FusedConv(mc.nn.Conv2d(4, 6, 3, padding=1, padding_mode="reflect"), None, None).eval()
    with mc.no_grad():
        for module in (hooked, reflect):
            calls.clear()
            module(x)
            assert calls, type(module.conv).__name__                   # through the module
        assert seen == [(2, 6, 5, 4)]
        calls.clear()
        hooked(mc.tensor(rng.standard_normal((4, 7, 6)).astype(numpy.float32)))   # unbatched
        assert calls
        with pytest.raises(ValueError, match="has 3 channels, but weight of shape"):
            hooked(mc.tensor(numpy.zeros((1, 3, 7, 6), numpy.float32)))
        with pytest.raises(ValueError, match="larger than the padded input"):
            hooked(mc.tensor(numpy.zeros((1, 4, 2, 2), numpy.float32)))


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("activation, gate", [("SiLU", "Sigmoid"), ("ReLU", "Hardsigmoid")])
def test_squeeze_excitation_runs_on_the_arrays_and_matches_torch(monkeypatch, dtype, activation, gate):
    """A FusedSqueezeExcitation against torchvision's SqueezeExcitation with
    the same weights (EfficientNet's SiLU / sigmoid, MobileNetV3's ReLU /
    hard sigmoid), on a non-contiguous batch: no conv module is called;
    with a hook on fc1, or an input that requires grad, the block runs as
    itself (and the gradient reaches the input)."""
    import torchvision
    import minicnn.functional.conv as functional_conv
    from minicnn.fuse import FusedSqueezeExcitation
    calls = []
    real = functional_conv.convolution
    monkeypatch.setattr(functional_conv, "convolution", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    block = fill(mc.nn.SqueezeExcitation(12, 5, activation=getattr(mc.nn, activation),
                                         scale_activation=getattr(mc.nn, gate)), seed=3).to(dtype).eval()
    theirs = torchvision.ops.SqueezeExcitation(12, 5, activation=getattr(torch.nn, activation),
                                                scale_activation=getattr(torch.nn, gate)).to(torch.float64).eval()
    theirs.load_state_dict({k: torch.tensor(v.data.astype(numpy.float64)) for k, v in block.state_dict().items()})
    x = (numpy.random.default_rng(8).standard_normal((2, 12, 9, 7)) * 4)[..., ::-1].astype(dtype)   # not contiguous
    fused = FusedSqueezeExcitation(block).eval()
    with torch.no_grad():
        want = theirs(torch.tensor(x.astype(numpy.float64))).numpy()
    with mc.no_grad():
        got = fused(mc.tensor(x)).data
    assert got.dtype == dtype and calls == []
    assert relative_error(got, want) < (1e-12 if dtype == numpy.float64 else 1e-6)
    seen = []
    fused.block.fc1.register_forward_hook(lambda module, args, output: seen.append(output.shape))
    with mc.no_grad():
        assert relative_error(fused(mc.tensor(x)).data, want) < (1e-12 if dtype == numpy.float64 else 1e-6)
    assert seen == [(2, 5, 1, 1)] and len(calls) == 2
    xt = mc.tensor(x, requires_grad=True)
    fused(xt).sum().backward()
    tx = torch.tensor(x.astype(numpy.float64), requires_grad=True)
    theirs(tx).sum().backward()
    # torch's hard sigmoid backward multiplies by the float32 constant 1/6, even in float64
    tight = 1e-7 if gate == "Hardsigmoid" else 1e-12
    assert relative_error(xt.grad.data, tx.grad.numpy()) < (tight if dtype == numpy.float64 else 1e-5)


def test_squeeze_excitation_is_fused_in_efficientnet_and_subclasses_are_left_alone():
    from minicnn.fuse import FusedSqueezeExcitation

    class Gate(mc.nn.SqueezeExcitation):
        def forward(self, input):
            return input * 2

    model = fill(mc.models.efficientnet_b0()).eval()
    fused = mc.fuse(model)
    gates = [m for m in fused.modules() if isinstance(m, FusedSqueezeExcitation)]
    kept = [m for m in fused.modules() if type(m) is mc.nn.SqueezeExcitation]
    assert len(gates) == 16 and len(kept) == 16 and all(any(m is g.block for g in gates) for m in kept)
    subclass = mc.fuse(mc.nn.Sequential(Gate(4, 2)))
    assert type(subclass[0]) is Gate
    with pytest.raises(TypeError, match="must be an nn.SqueezeExcitation, got Gate"):
        FusedSqueezeExcitation(Gate(4, 2))
    fused.train()
    with pytest.raises(RuntimeError, match="inference only"):
        gates[0](mc.tensor(numpy.zeros((1, 32, 4, 4), numpy.float32)))
