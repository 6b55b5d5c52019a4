"""The book-only models of minicnn/models/book.py (Géron, ch. 14): registry
entries, exact parameter counts (derived by hand from each layer table),
output and feature-map shapes at small inputs, float64 gradient checks of
the building blocks, a short training run of every full model, and
function parity with torchvision where torchvision has the same network
(ResNet-34; ResNet-50 with SE blocks added by hooks).

Full models are too big for element-wise gradient checks; the blocks are
checked instead, each parameter along a few random directions.
"""
import numpy
import pytest
import torch
import torchvision

import minicnn as mc
import minicnn.nn.functional as F
from minicnn import nn
from minicnn.models import book
from parity import randomize_batch_norms
from minicnn.models.book import (ResidualUnit, SEBottleneck, SEResidualUnit, XceptionBlock,
                                 XceptionMiddleBlock)

BOOK_MODELS = ["alexnet_original", "resnet34_book", "se_resnet34_book", "se_resnet50", "xception"]


def n_parameters(model):
    return sum(p.numel() for p in model.parameters())


def n_running_statistics(model):
    """BatchNorm's running means and variances (Keras counts them as
    "non-trainable parameters")."""
    return sum(b.numel() for name, b in model.named_buffers() if name.rsplit(".", 1)[-1].startswith("running_"))


def conv(c_in, c_out, k, bias=True):
    return c_in * c_out * k * k + (c_out if bias else 0)


def dense(n_in, n_out):
    return n_in * n_out + n_out


def bn(c):
    return 2 * c


def se(c, reduction=16):
    """SE block: C -> C / r -> C, each a 1x1 conv (a dense layer) with bias."""
    return dense(c, c // reduction) + dense(c // reduction, c)


def separable(c_in, c_out):
    """Keras SeparableConv2D(3x3, use_bias=False): depthwise + pointwise."""
    return c_in * 9 + c_in * c_out


# -- registry ------------------------------------------------------------------

def test_registered():
    names = mc.models.list_models()
    for name in BOOK_MODELS:
        assert name in names
        assert callable(getattr(mc.models, name))
    with pytest.raises(ValueError, match="num_classes"):
        mc.models.get_model("xception", num_classes=0)


# -- parameter counts ----------------------------------------------------------

def test_alexnet_original_parameter_count():
    expected = (conv(3, 96, 11) + conv(96, 256, 5) + conv(256, 384, 3) + conv(384, 384, 3) + conv(384, 256, 3)
                + dense(256 * 6 * 6, 4096) + dense(4096, 4096) + dense(4096, 1000))
    assert expected == 62_378_344
    model = mc.models.get_model("alexnet_original")
    assert n_parameters(model) == expected
    assert n_running_statistics(model) == 0


def resnet34_count(unit_extra=lambda filters: 0):
    """ResNet-34 by hand: stem, 16 basic units (+ ``unit_extra`` each), dense."""
    total = conv(3, 64, 7, bias=False) + bn(64)
    prev = 64
    for filters in book.RESNET34_FILTERS:
        total += conv(prev, filters, 3, bias=False) + bn(filters) + conv(filters, filters, 3, bias=False) + bn(filters)
        if filters != prev:
            total += conv(prev, filters, 1, bias=False) + bn(filters)
        total += unit_extra(filters)
        prev = filters
    return total + dense(512, 1000)


def test_resnet34_book_parameter_count_is_torchvisions():
    expected = sum(p.numel() for p in torchvision.models.resnet34().parameters())
    assert expected == resnet34_count() == 21_797_672
    assert n_parameters(mc.models.resnet34_book()) == expected


def test_se_resnet34_book_parameter_count():
    expected = resnet34_count(unit_extra=se)
    assert expected == 21_797_672 + 161_196 == 21_958_868
    assert n_parameters(mc.models.se_resnet34_book()) == expected


def test_se_resnet50_parameter_count():
    resnet50 = sum(p.numel() for p in torchvision.models.resnet50().parameters())
    se_blocks = sum(n * se(4 * planes) for n, planes in zip((3, 4, 6, 3), (64, 128, 256, 512)))
    assert resnet50 == 25_557_032 and se_blocks == 2_530_992
    assert n_parameters(mc.models.se_resnet50()) == resnet50 + se_blocks == 28_088_024


def test_xception_parameter_count_is_keras():
    """keras.applications.Xception(): 22,910,480 parameters, of which
    54,528 are BN running statistics (non-trainable)."""
    def block(c_in, c_mid, c_out):      # entry / exit block: two separable convs + 1x1 shortcut
        return (separable(c_in, c_mid) + bn(c_mid) + separable(c_mid, c_out) + bn(c_out)
                + conv(c_in, c_out, 1, bias=False) + bn(c_out))

    trainable = (conv(3, 32, 3, bias=False) + bn(32) + conv(32, 64, 3, bias=False) + bn(64)
                 + block(64, 128, 128) + block(128, 256, 256) + block(256, 728, 728)
                 + 8 * 3 * (separable(728, 728) + bn(728))
                 + block(728, 728, 1024)
                 + separable(1024, 1536) + bn(1536) + separable(1536, 2048) + bn(2048)
                 + dense(2048, 1000))
    bn_channels = (32 + 64 + 3 * 128 + 3 * 256 + 3 * 728 + 8 * 3 * 728 + 728 + 2 * 1024 + 1536 + 2048)
    assert trainable == 22_855_952 and 2 * bn_channels == 54_528
    model = mc.models.xception()
    assert n_parameters(model) == trainable
    assert n_parameters(model) + n_running_statistics(model) == 22_910_480


# -- shapes --------------------------------------------------------------------

def feature_shapes(model, x, names):
    """Run ``model`` on x (eval mode, no grad); return the output shape and
    the output shapes of the submodules ``names``."""
    shapes = {}
    handles = [model.get_submodule(name).register_forward_hook(
        lambda module, args, output, name=name: shapes.__setitem__(name, output.shape)) for name in names]
    model.eval()
    with mc.no_grad():
        out = model(x)
    for h in handles:
        h.remove()
    return out.shape, [shapes[name] for name in names]


def test_alexnet_original_follows_the_table_at_227():
    """C1 55x55, S2 27x27, C3 27x27, S4 13x13, C5-C7 13x13, S8 6x6."""
    model = mc.models.alexnet_original()
    layers = {"features.0": (96, 55), "features.3": (96, 27), "features.4": (256, 27), "features.7": (256, 13),
              "features.8": (384, 13), "features.10": (384, 13), "features.12": (256, 13),
              "features.14": (256, 6), "avgpool": (256, 6)}
    out, shapes = feature_shapes(model, mc.randn(1, 3, 227, 227), list(layers))
    assert out == (1, 1000)
    assert shapes == [(1, c, s, s) for c, s in layers.values()]


def test_alexnet_original_smallest_input():
    model = mc.models.alexnet_original(num_classes=7)
    out, (s8,) = feature_shapes(model, mc.randn(1, 3, 67, 67), ["features.14"])
    assert out == (1, 7) and s8 == (1, 256, 1, 1)
    with pytest.raises(ValueError, match="at least 67x67"):
        model(mc.randn(1, 3, 66, 80))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model(mc.randn(1, 1, 67, 67))


@pytest.mark.parametrize("name", ["resnet34_book", "se_resnet34_book", "se_resnet50"])
def test_resnet_stages_halve_the_size(name):
    """32x32: stem 8x8 after the max pool, then 8, 4, 2, 1."""
    model = mc.models.get_model(name, num_classes=5)
    if name == "se_resnet50":
        stages = {"maxpool": 64, "layer1": 256, "layer2": 512, "layer3": 1024, "layer4": 2048}
    else:
        first = {64: 0, 128: 3, 256: 7, 512: 13}       # index of each stage's first unit
        stages = {"stem": 64, **{f"units.{first[c] + n - 1}": c for c, n in zip(first, (3, 4, 6, 3))}}
    out, shapes = feature_shapes(model, mc.randn(1, 3, 32, 32), list(stages))
    assert out == (1, 5)
    assert shapes == [(1, c, s, s) for c, s in zip(stages.values(), (8, 8, 4, 2, 1))]


def test_xception_flows_at_71():
    """Keras's smallest input, 71x71: stem 35 then 33, blocks 17, 9, 5,
    middle 5, exit 3."""
    model = mc.models.xception(num_classes=4)
    layers = {"entry_flow.5": (64, 33), "entry_flow.6": (128, 17), "entry_flow.7": (256, 9),
              "entry_flow.8": (728, 5), "middle_flow": (728, 5), "exit_flow.0": (1024, 3), "exit_flow": (2048, 3)}
    out, shapes = feature_shapes(model, mc.randn(1, 3, 71, 71), list(layers))
    assert out == (1, 4)
    assert shapes == [(1, c, s, s) for c, s in layers.values()]
    out, _ = feature_shapes(model, mc.randn(1, 3, 7, 7), [])
    assert out == (1, 4)
    with pytest.raises(ValueError, match="at least 7x7"):
        model(mc.randn(1, 3, 6, 6))


# -- local response normalization -----------------------------------------------

def test_lrn_constants_are_the_papers():
    """b_i = a_i / (k + alpha * sum_{j = max(0, i-2)}^{min(C-1, i+2)} a_j^2)^beta
    with k = 2, alpha = 1e-4, beta = 0.75 (Krizhevsky et al., 2012), and
    the same as torch's LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2)."""
    rng = numpy.random.default_rng(0)
    a = 30 * rng.standard_normal((2, 7, 3, 3))       # large enough for the sum to matter next to k
    expected = numpy.empty_like(a)
    for i in range(7):
        window = (a[:, max(0, i - 2):min(6, i + 2) + 1] ** 2).sum(axis=1)
        expected[:, i] = a[:, i] / (2 + 1e-4 * window) ** 0.75
    lrn = nn.LocalResponseNorm(book.LRN_SIZE, alpha=book.LRN_ALPHA, beta=book.LRN_BETA, k=book.LRN_K)
    numpy.testing.assert_allclose(lrn(mc.tensor(a)).numpy(), expected, rtol=1e-12)
    theirs = torch.nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)(torch.from_numpy(a)).numpy()
    numpy.testing.assert_allclose(lrn(mc.tensor(a)).numpy(), theirs, rtol=1e-12)
    assert 0.2 < numpy.abs(expected / a).min() < 0.9    # the normalization does act on this input


# -- gradient checks of the building blocks ----------------------------------------

def check_block(block, input_shape, scale=1.0, seed=0):
    """float64 gradcheck of ``block`` (training mode: batch-norm on batch
    statistics) with respect to its input and every parameter, each
    probed along 3 random directions: a random direction covers every
    element of the tensor at once, and element-wise checks of the
    underlying ops live in tests/ops. (Each probe is two forward passes,
    and a block's forward is a dozen small kernel calls.)"""
    block.double().train()
    rng = numpy.random.default_rng(seed)
    x = mc.tensor(scale * rng.standard_normal(input_shape), requires_grad=True)
    params = list(block.parameters())
    assert mc.gradcheck(lambda x, *params: block(x), (x, *params), max_elements=0, n_directions=3)


@pytest.mark.parametrize("in_channels, filters, strides", [(4, 4, 1), (3, 5, 2)])
def test_residual_unit_gradcheck(in_channels, filters, strides):
    mc.manual_seed(0)
    unit = ResidualUnit(in_channels, filters, strides)
    assert len(unit.skip_layers) == (0 if strides == 1 else 2)
    check_block(unit, (2, in_channels, 5, 5))


def test_se_residual_unit_gradcheck():
    mc.manual_seed(0)
    unit = SEResidualUnit(3, 8, strides=2, reduction=4)
    assert unit.se.fc1.out_channels == 2
    check_block(unit, (2, 3, 5, 5))


def test_se_bottleneck_gradcheck():
    mc.manual_seed(0)
    unit = SEBottleneck(6, 2, stride=2, reduction=4)     # 6 -> 8 channels, SE squeezes to 2
    check_block(unit, (2, 6, 5, 5))


@pytest.mark.parametrize("relu_first", [False, True])
def test_xception_block_gradcheck(relu_first):
    mc.manual_seed(0)
    check_block(XceptionBlock(3, 4, 5, relu_first=relu_first), (2, 3, 5, 5))


def test_xception_middle_block_gradcheck():
    mc.manual_seed(0)
    check_block(XceptionMiddleBlock(4), (2, 4, 3, 3))


def test_alexnet_stem_gradcheck():
    """C1 (11x11, stride 4), ReLU, LRN with the paper's constants, S2
    (overlapping 3x3 max pool, stride 2), at 8 filters instead of 96. The
    input is scaled so the LRN's squared sum is comparable to k."""
    mc.manual_seed(0)
    stem = nn.Sequential(
        nn.Conv2d(3, 8, kernel_size=11, stride=4),
        nn.ReLU(),
        nn.LocalResponseNorm(book.LRN_SIZE, alpha=book.LRN_ALPHA, beta=book.LRN_BETA, k=book.LRN_K),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )
    check_block(stem, (1, 3, 23, 23), scale=30.0)


def test_se_blocks_need_channels():
    with pytest.raises(ValueError, match="SE bottleneck"):
        SEResidualUnit(8, 8, reduction=16)
    with pytest.raises(ValueError, match="SE bottleneck"):
        SEBottleneck(8, 2, reduction=16)


# -- a short training run of every full model --------------------------------------

# (name, image size, mode in which the loss is measured). BatchNorm models are
# measured in training mode (batch statistics: the running averages lag
# behind after three steps); AlexNet in eval mode (no dropout noise).
# Four images, not two: at 32x32 SE-ResNet-50's last stage is 1x1, and
# batch norm over two values there is so ill-conditioned that float64 runs
# on the two backends, equal to 1e-11 before the first step, differ by 2%
# after it (and a float32 run's loss can blow up); with four they agree to
# 1e-9 after three steps.
TRAINING_RUNS = [("alexnet_original", 67, "eval"), ("resnet34_book", 32, "train"),
                 ("se_resnet34_book", 32, "train"), ("se_resnet50", 32, "train"), ("xception", 32, "train")]


@pytest.mark.slow
@pytest.mark.parametrize("name, size, mode", TRAINING_RUNS)
def test_training_lowers_the_loss(name, size, mode):
    """Three SGD steps on one random batch of four images lower its loss."""
    mc.manual_seed(0)
    model = mc.models.get_model(name, num_classes=10)
    optimizer = mc.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = mc.tensor(numpy.random.default_rng(0).standard_normal((4, 3, size, size)).astype(numpy.float32))
    y = mc.tensor(numpy.array([3, 7, 1, 5]))

    def loss_now():
        model.train(mode == "train")
        with mc.no_grad():
            return F.cross_entropy(model(x), y).item()

    before = loss_now()
    model.train()
    for _ in range(3):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
    after = loss_now()
    assert numpy.isfinite(before) and after < before, f"{name}: loss {before:.4f} -> {after:.4f}"


# -- parity with torchvision ----------------------------------------------------

def compare_eval(mine, theirs, input_shape):
    """float64 eval-mode logits, as max |difference| / max |torch|."""
    mine.double().eval()
    theirs.double().eval()
    x = numpy.random.default_rng(0).standard_normal(input_shape)
    with mc.no_grad():
        ours = mine(mc.tensor(x)).numpy()
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    assert ours.shape == expected.shape
    assert numpy.abs(ours - expected).max() <= 1e-9 * numpy.abs(expected).max()


def add_se_blocks(model, block_type, last_bn):
    """Give every ``block_type`` of a torchvision ResNet a torchvision
    SqueezeExcitation (reduction 16) applied to the output of its last
    batch norm by a forward hook: after the main path, before the addition."""
    for m in model.modules():
        if isinstance(m, block_type):
            bn = getattr(m, last_bn)
            m.se = torchvision.ops.SqueezeExcitation(bn.num_features, bn.num_features // 16)
            bn.register_forward_hook(lambda module, args, output, se=m.se: se(output))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet34_book", "se_resnet34_book"])
def test_resnet34_book_computes_torchvisions_resnet34(name):
    """The book's stack holds torchvision's layers in the same order (stem,
    then per unit conv1, bn1, conv2, bn2, downsample, [se]; fc), so
    torchvision's state_dict loads entry by entry and the logits agree."""
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    theirs = torchvision.models.resnet34(num_classes=10)
    if name == "se_resnet34_book":
        add_se_blocks(theirs, torchvision.models.resnet.BasicBlock, "bn2")
    randomize_batch_norms(theirs, generator)
    mine = mc.models.get_model(name, num_classes=10)
    my_keys, their_state = list(mine.state_dict()), theirs.state_dict()
    assert len(my_keys) == len(their_state)
    mine.load_state_dict(dict(zip(my_keys, their_state.values())))
    compare_eval(mine, theirs, (1, 3, 32, 32))


@pytest.mark.slow
def test_se_resnet50_computes_torchvisions_resnet50_with_se_blocks():
    """torchvision's resnet50 with SE blocks on each bottleneck's bn3
    output is SE-ResNet-50: the same state_dict keys and logits."""
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    theirs = torchvision.models.resnet50(num_classes=10)
    add_se_blocks(theirs, torchvision.models.resnet.Bottleneck, "bn3")
    randomize_batch_norms(theirs, generator)
    mine = mc.models.se_resnet50(num_classes=10)
    assert sorted(mine.state_dict()) == sorted(theirs.state_dict())
    mine.load_state_dict(theirs.state_dict())
    compare_eval(mine, theirs, (1, 3, 32, 32))
