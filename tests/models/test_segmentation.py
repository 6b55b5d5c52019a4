"""The segmentation models against torchvision: the same state_dict keys,
eval-mode outputs ("out" and "aux", upsampled to an odd input size) from
the same weights in float64 and float32, training-mode outputs, losses,
every parameter gradient and the running statistics for fcn_resnet50 and
deeplabv3_mobilenet_v3_large (both with the auxiliary head), mc.summary
against torchvision's table at 520 x 520, the IntermediateLayerGetter,
the book's fcn8s_small against a torch twin, and bad input."""
import functools

import numpy
import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

import minicnn as mc
from minicnn.models._utils import IntermediateLayerGetter
from minicnn.models.segmentation import bilinear_kernel
from minicnn.nn.skip_init import no_init
from parity import check_parity
from zoo_check import assert_relative, build_pair, check_weights_refused

ODD = (1, 3, 65, 67)


def _pair(name, **kwargs):
    return build_pair(name, weights_backbone=None, **kwargs)


def _check_eval(name, dtype, rtol, shape=ODD, **kwargs):
    """Eval mode: every output equals torchvision's within ``rtol`` (norm-wise relative)."""
    mc_model, tv_model = _pair(name, **kwargs)
    if dtype == numpy.float64:
        mc_model, tv_model = mc_model.double(), tv_model.double()
    mc_model.eval()
    tv_model.eval()
    x = numpy.random.default_rng(0).standard_normal(shape).astype(dtype)
    with mc.no_grad():
        mine = mc_model(mc.from_numpy(x.copy()))
    with torch.no_grad():
        theirs = tv_model(torch.from_numpy(x))
    assert list(mine) == list(theirs)
    for key in theirs:
        assert mine[key].shape == tuple(theirs[key].shape) == (shape[0], 21) + shape[2:]
        assert mine[key].dtype == dtype
        assert_relative(mine[key].numpy(), theirs[key].numpy(), rtol, f"{name} {key}")


EVAL_CASES = [
    pytest.param("fcn_resnet50", {"aux_loss": True}, id="fcn_resnet50", marks=pytest.mark.slow),
    pytest.param("deeplabv3_resnet50", {"aux_loss": True}, id="deeplabv3_resnet50", marks=pytest.mark.slow),
    pytest.param("deeplabv3_mobilenet_v3_large", {"aux_loss": True}, id="deeplabv3_mobilenet_v3_large"),
    pytest.param("lraspp_mobilenet_v3_large", {}, id="lraspp_mobilenet_v3_large"),
    pytest.param("fcn_resnet101", {"shape": (1, 3, 33, 35)}, id="fcn_resnet101", marks=pytest.mark.slow),
    pytest.param("deeplabv3_resnet101", {"shape": (1, 3, 33, 35)}, id="deeplabv3_resnet101",
                 marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name, kwargs", EVAL_CASES)
def test_eval_parity_float64(name, kwargs):
    _check_eval(name, numpy.float64, 1e-10, **kwargs)


def test_eval_parity_float32():
    _check_eval("lraspp_mobilenet_v3_large", numpy.float32, 1e-4, shape=(2, 3, 47, 33))


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_atrous_conv_wider_than_the_map(dtype):
    """ASPP's rate-36 branch on a 5 x 5 map: every tap but the centre one
    falls in the padding. The CPU im2col once zero-filled past the end of
    such a tap's block (a crash, or silently wrong columns)."""
    rng = numpy.random.default_rng(0)
    x, w = rng.standard_normal((2, 24, 5, 5)), rng.standard_normal((8, 24, 3, 3))
    for rate in (3, 36):
        check_parity(lambda x, w: mc.nn.functional.conv2d(x, w, padding=rate, dilation=rate),
                     lambda x, w: torch.nn.functional.conv2d(x, w, padding=rate, dilation=rate), [x, w],
                     dtype=dtype, rtol=1e-10 if dtype == numpy.float64 else 1e-4)


def test_tiny_input():
    """torchvision's min_size is 1 x 1: every stride pads, so the maps stay 1 x 1."""
    _check_eval("deeplabv3_mobilenet_v3_large", numpy.float64, 1e-10, shape=(1, 3, 1, 1))


class _ExactHardsigmoid(torch.nn.Module):
    """torch's hardsigmoid with an exact float64 gradient (tests/models/test_mobilenet.py says why)."""

    def forward(self, x):
        return torch.nn.functional.relu6(x + 3) / 6


@pytest.mark.parametrize("name, shape", [pytest.param("fcn_resnet50", (2, 3, 33, 35), marks=pytest.mark.slow),
                                         ("deeplabv3_mobilenet_v3_large", (2, 3, 49, 51))])
def test_train_parity(name, shape):
    """Training mode, float64, dropout off: both outputs, the loss the
    reference recipe trains with (cross entropy of "out" + 0.5 x that of
    "aux", pixels marked 255 ignored), every gradient, the running stats."""
    mc_model, tv_model = _pair(name, aux_loss=True)
    mc_model, tv_model = mc_model.double().train(), tv_model.double().train()
    for model in (mc_model, tv_model):
        for module in model.modules():
            if type(module).__name__ == "Dropout":
                module.p = 0.0
    for module in tv_model.modules():
        if isinstance(module, torchvision.ops.SqueezeExcitation):
            module.scale_activation = _ExactHardsigmoid()
    rng = numpy.random.default_rng(1)
    x = rng.standard_normal(shape)
    target = rng.integers(0, 21, (shape[0],) + shape[2:])
    target[rng.random(target.shape) < 0.1] = 255

    mine = mc_model(mc.from_numpy(x.copy()))
    theirs = tv_model(torch.from_numpy(x))
    mc_target, tv_target = mc.from_numpy(target.copy()), torch.from_numpy(target)
    mc_loss = (mc.nn.functional.cross_entropy(mine["out"], mc_target, ignore_index=255)
               + 0.5 * mc.nn.functional.cross_entropy(mine["aux"], mc_target, ignore_index=255))
    tv_loss = (torch.nn.functional.cross_entropy(theirs["out"], tv_target, ignore_index=255)
               + 0.5 * torch.nn.functional.cross_entropy(theirs["aux"], tv_target, ignore_index=255))
    for key in ("out", "aux"):
        assert_relative(mine[key].numpy_copy(), theirs[key].detach().numpy(), 1e-9, f"train {key}")
    assert_relative(mc_loss.item(), tv_loss.item(), 1e-12, "loss")

    mc_loss.backward()
    tv_loss.backward()
    tv_params = dict(tv_model.named_parameters())
    floor = 1e-6 * max(float(p.grad.abs().max()) for p in tv_params.values())
    for key, p in mc_model.named_parameters():
        assert p.grad is not None, f"no gradient for {key}"
        assert_relative(p.grad.numpy(), tv_params[key].grad.numpy(), 1e-9, f"gradient of {key}", floor=floor)
    tv_buffers = dict(tv_model.named_buffers())
    floor = 1e-6 * max(float(b.abs().max()) for b in tv_buffers.values())
    for key, b in mc_model.named_buffers():
        assert_relative(b.numpy(), tv_buffers[key].numpy(), 1e-9, f"buffer {key}", floor=floor)


# torchvision's table of segmentation weights (which carry the auxiliary
# heads, except LR-ASPP's): parameters in millions and "GFLOPS", which are
# billions of multiply-adds in eval mode at 520 x 520, batch 1.
TORCHVISION_TABLE = [
    pytest.param("fcn_resnet50", "35.3", "152.7", id="fcn_resnet50", marks=pytest.mark.slow),
    pytest.param("fcn_resnet101", "54.3", "232.7", id="fcn_resnet101", marks=pytest.mark.slow),
    pytest.param("deeplabv3_resnet50", "42.0", "178.7", id="deeplabv3_resnet50", marks=pytest.mark.slow),
    pytest.param("deeplabv3_resnet101", "61.0", "258.7", id="deeplabv3_resnet101", marks=pytest.mark.slow),
    pytest.param("deeplabv3_mobilenet_v3_large", "11.0", "10.45", id="deeplabv3_mobilenet_v3_large"),
    pytest.param("lraspp_mobilenet_v3_large", "3.2", "2.09", id="lraspp_mobilenet_v3_large"),
]


def _kwargs(name):
    return {} if name.startswith("lraspp") else {"aux_loss": True}


@functools.lru_cache(maxsize=None)
def _torchvision_counts(name):
    with torch.device("meta"):
        model = torchvision.models.get_model(name, weights_backbone=None, **_kwargs(name)).eval()
        x = torch.empty(1, 3, 520, 520)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops() // 2


@pytest.mark.parametrize("name, params, gflops", TORCHVISION_TABLE)
def test_torchvision_table(name, params, gflops):
    with no_init():
        model = mc.models.get_model(name, **_kwargs(name))
    s = mc.summary(model, (3, 520, 520), training_memory=False)
    decimals = len(gflops.partition(".")[2])
    assert f"{s.total_params / 1e6:.1f}" == params
    assert f"{s.total_mult_adds / 1e9:.{decimals}f}" == gflops
    assert s.output_shape == ([(1, 21, 520, 520)] * 2 if _kwargs(name) else (1, 21, 520, 520))
    assert (s.total_params, s.total_mult_adds) == _torchvision_counts(name)


def test_registry_and_namespace():
    names = mc.models.list_models()
    for name in ("fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101",
                 "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large", "fcn8s_small"):
        assert name in names and getattr(mc.models.segmentation, name) is not None
    with no_init():
        model = mc.models.get_model("deeplabv3_resnet50", num_classes=5)
    assert isinstance(model, mc.models.segmentation.DeepLabV3) and model.aux_classifier is None
    assert model.classifier[4].out_channels == 5
    assert isinstance(model.backbone, IntermediateLayerGetter) and "fc" not in model.backbone


def test_intermediate_layer_getter_is_torchvisions():
    torch.manual_seed(0)
    tv_resnet = torchvision.models.resnet18()
    mc_resnet = mc.models.resnet18()
    mc_resnet.load_state_dict(tv_resnet.state_dict())
    layers = {"layer1": "feat1", "layer3": "feat2"}
    theirs = torchvision.models._utils.IntermediateLayerGetter(tv_resnet, layers).eval()
    mine = IntermediateLayerGetter(mc_resnet, layers).eval()
    assert list(mine.state_dict()) == list(theirs.state_dict())              # layer4, avgpool, fc dropped
    x = numpy.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(numpy.float32)
    with mc.no_grad():
        a = mine(mc.from_numpy(x))
    with torch.no_grad():
        b = theirs(torch.from_numpy(x))
    assert list(a) == list(b) == ["feat1", "feat2"]
    for key in b:
        assert_relative(a[key].numpy(), b[key].numpy(), 1e-4, key)
    with pytest.raises(ValueError, match=r"return_layers \['layer9'\] are not children"):
        IntermediateLayerGetter(mc_resnet, {"layer9": "out"})


def test_bad_input():
    model = mc.models.segmentation.lraspp_mobilenet_v3_large(num_classes=3).eval()
    with pytest.raises(ValueError, match=r"LRASPP expects input of shape \(N, 3, H, W\), got \(1, 1, 32, 32\)"):
        model(mc.zeros(1, 1, 32, 32))
    with no_init():
        fcn = mc.models.segmentation.fcn_resnet50()
    with pytest.raises(ValueError, match=r"FCN expects input of shape \(N, 3, H, W\), got \(3, 32, 32\)"):
        fcn(mc.zeros(3, 32, 32))
    check_weights_refused(mc.models.segmentation.fcn_resnet50)
    with pytest.raises(ValueError, match="weights_backbone"):
        mc.models.segmentation.deeplabv3_mobilenet_v3_large(weights_backbone="IMAGENET1K_V1")
    with pytest.raises(ValueError, match="no auxiliary head"):
        mc.models.segmentation.lraspp_mobilenet_v3_large(aux_loss=True)
    with pytest.raises(TypeError, match="unexpected keyword arguments"):
        mc.models.segmentation.lraspp_mobilenet_v3_large(dropout=0.1)
    with pytest.raises(ValueError, match="num_classes"):
        mc.models.segmentation.lraspp_mobilenet_v3_large(num_classes=0)


# -- the book's FCN-8s ---------------------------------------------------------
class _TorchFCN8s(torch.nn.Module):
    """fcn8s_small written in torch, for parity (the same attribute names)."""

    def __init__(self, num_classes, in_channels, widths, classifier_width):
        super().__init__()
        nn = torch.nn

        def stage(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(),
                                 nn.Conv2d(o, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(),
                                 nn.MaxPool2d(2))
        channels = (in_channels,) + tuple(widths)
        self.stages = nn.ModuleList([stage(channels[i], channels[i + 1]) for i in range(5)])
        self.classifier = nn.Sequential(nn.Conv2d(widths[4], classifier_width, 3, padding=1, bias=False),
                                        nn.BatchNorm2d(classifier_width), nn.ReLU(), nn.Dropout2d(0.0),
                                        nn.Conv2d(classifier_width, num_classes, 1))
        self.score_pool4 = nn.Conv2d(widths[3], num_classes, 1)
        self.score_pool3 = nn.Conv2d(widths[2], num_classes, 1)
        self.upscore2 = nn.ConvTranspose2d(num_classes, num_classes, 4, 2, 1, bias=False)
        self.upscore_pool4 = nn.ConvTranspose2d(num_classes, num_classes, 4, 2, 1, bias=False)
        self.upscore8 = nn.ConvTranspose2d(num_classes, num_classes, 16, 8, 4, bias=False)

    def forward(self, x):
        pools = []
        h = x
        for stage in self.stages:
            h = stage(h)
            pools.append(h)
        score = self.upscore2(self.classifier(h), output_size=pools[3].shape[-2:]) + self.score_pool4(pools[3])
        score = self.upscore_pool4(score, output_size=pools[2].shape[-2:]) + self.score_pool3(pools[2])
        return self.upscore8(score, output_size=x.shape[-2:])


def test_fcn8s_small_parity():
    """Training mode, float64, at an odd size: the output and every
    gradient equal those of the same network written in torch."""
    kwargs = dict(num_classes=4, in_channels=1, widths=(4, 6, 8, 8, 8), classifier_width=8)
    mine = mc.models.fcn8s_small(**kwargs).double()
    mine.classifier[3].p = 0.0
    theirs = _TorchFCN8s(**kwargs).double()
    rng = numpy.random.default_rng(0)
    # Random values everywhere (the skip scorers start at zero, which would hide their gradients' paths).
    state = {k: torch.from_numpy(rng.standard_normal(tuple(v.shape)) * 0.5) if v.dtype.kind == "f" and
             "running" not in k else torch.from_numpy(v.numpy().copy()) for k, v in mine.state_dict().items()}
    theirs.load_state_dict(state)
    mine.load_state_dict(theirs.state_dict())
    x = rng.standard_normal((2, 1, 37, 45))
    a = mine(mc.from_numpy(x.copy()))
    b = theirs(torch.from_numpy(x))
    assert a.shape == (2, 4, 37, 45)
    assert_relative(a.numpy_copy(), b.detach().numpy(), 1e-10, "fcn8s_small output")
    upstream = rng.standard_normal(a.shape)
    a.backward(mc.from_numpy(upstream.copy()))
    b.backward(torch.from_numpy(upstream))
    tv_params = dict(theirs.named_parameters())
    for key, p in mine.named_parameters():
        assert_relative(p.grad.numpy(), tv_params[key].grad.numpy(), 1e-10, f"gradient of {key}")


def test_fcn8s_small_starts_as_bilinear_upsampling():
    """The transposed convs start as bilinear interpolation: away from the
    border, a 2x (and an 8x) upsampling of a map equals interpolate's
    bilinear resize (align_corners=False)."""
    rng = numpy.random.default_rng(0)
    x = mc.from_numpy(rng.standard_normal((1, 3, 6, 7)))
    for k, s in ((4, 2), (16, 8)):
        w = mc.from_numpy(bilinear_kernel(3, k))
        up = mc.nn.functional.conv_transpose2d(x, w, stride=s, padding=s // 2)
        ref = mc.nn.functional.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
        assert up.shape == ref.shape
        inner = (slice(None), slice(None), slice(s, -s), slice(s, -s))
        numpy.testing.assert_allclose(up.numpy()[inner], ref.numpy()[inner], atol=1e-12)


def test_fcn8s_small_sizes_and_errors():
    model = mc.models.fcn8s_small(in_channels=1).eval()
    assert sum(p.numel() for p in model.parameters()) == 775249
    with mc.no_grad():
        for size in ((32, 32), (64, 64), (33, 71)):
            assert model(mc.zeros(1, 1, *size)).shape == (1, 11, *size)
    with pytest.raises(ValueError, match="at least 32"):
        model(mc.zeros(1, 1, 31, 64))
    with pytest.raises(ValueError, match=r"expects input of shape \(N, 1, H, W\)"):
        model(mc.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="widths"):
        mc.models.fcn8s_small(widths=(8, 8))
