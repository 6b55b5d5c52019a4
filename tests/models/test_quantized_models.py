"""mc.models.quantization against torchvision.models.quantization: the
same module tree and state_dict keys, and the same float function before
and after fuse_model() (torchvision's seeded random weights copied in,
batch norms given random running statistics so that folding them into the
convs is not a no-op)."""
import numpy
import pytest
import torch
import torchvision.models.quantization as tvq

import minicnn as mc
import minicnn.models.quantization as mcq
from qstate import from_torch
from zoo_check import relative_error

torch.set_num_threads(1)

# name, input size, builder kwargs: the smallest inputs each model takes
# (Inception v3 needs 75 x 75 in eval mode).
MODELS = [
    ("resnet18", 32, {}),
    ("resnet50", 32, {}),
    ("mobilenet_v2", 32, {}),
    ("mobilenet_v3_large", 32, {}),
    ("shufflenet_v2_x1_0", 64, {}),
    ("googlenet", 32, {"aux_logits": False}),
    ("inception_v3", 75, {"aux_logits": False}),
]


def build_pair(name, **kwargs):
    """torchvision's quantizable float model (seed 0, random batch norm
    statistics) and minicnn's with its state_dict, both in eval mode."""
    torch.manual_seed(0)
    tv_model = getattr(tvq, name)(**kwargs)
    generator = torch.Generator().manual_seed(1)
    for m in tv_model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
    mc_model = getattr(mcq, name)(**kwargs)
    assert list(mc_model.state_dict()) == list(tv_model.state_dict())
    mc_model.load_state_dict(tv_model.state_dict())
    return mc_model.eval(), tv_model.eval()


def _outputs(mc_model, tv_model, x):
    with torch.no_grad():
        expected = tv_model(torch.from_numpy(x)).numpy()
    with mc.no_grad():
        actual = mc_model(mc.tensor(x)).numpy()
    return actual, expected


@pytest.mark.slow
@pytest.mark.parametrize("name, size, kwargs", MODELS, ids=[m[0] for m in MODELS])
def test_float_and_fused_match_torchvision(name, size, kwargs):
    mc_model, tv_model = build_pair(name, **kwargs)
    tv_modules = [n for n, _ in tv_model.named_modules() if "activation_post_process" not in n]
    assert [n for n, _ in mc_model.named_modules() if "activation_post_process" not in n] == tv_modules
    x = numpy.random.default_rng(0).standard_normal((2, 3, size, size)).astype(numpy.float32)
    actual, expected = _outputs(mc_model, tv_model, x)
    assert relative_error(actual, expected) < 1e-4
    mc_model.fuse_model()
    tv_model.fuse_model()
    assert list(mc_model.state_dict()) == list(tv_model.state_dict())
    fused, fused_expected = _outputs(mc_model, tv_model, x)
    assert relative_error(fused, fused_expected) < 1e-4
    # Folding the batch norms changed the weights, not the function.
    assert relative_error(fused, actual) < 1e-4


@pytest.mark.slow
def test_resnext101_32x8d_structure():
    # Too big to run in CI: the module tree and the keys, before and after
    # fusion.
    with torch.device("meta"):     # torchvision's keys without its slow initialisation
        tv_model = tvq.resnext101_32x8d().eval()
    mc_model = mcq.resnext101_32x8d().eval()
    assert list(mc_model.state_dict()) == list(tv_model.state_dict())
    assert mc_model.layer3[22].conv2.groups == 32
    mc_model.fuse_model()
    tv_model.fuse_model()
    assert list(mc_model.state_dict()) == list(tv_model.state_dict())


def test_relu6_becomes_relu():
    model = mcq.mobilenet_v2()
    assert not any(type(m) is mc.nn.ReLU6 for m in model.modules())
    assert type(model.features[1].conv[0][2]) is mc.nn.ReLU


def test_bad_arguments():
    with pytest.raises(ValueError, match="model.eval"):
        mcq.resnet18().fuse_model()
    with pytest.raises(ValueError, match="calibration_data is required"):
        mcq.resnet18(quantize=True)
    with pytest.raises(ValueError, match="only used with quantize=True"):
        mcq.resnet18(calibration_data=[numpy.zeros((1, 3, 32, 32), numpy.float32)])
    with pytest.raises(ValueError, match="downloads nothing"):
        mcq.resnet18(weights="DEFAULT")
    with pytest.raises(TypeError, match="quantizable model"):
        mcq.quantize_model(mc.models.lenet5(), [numpy.zeros((1, 1, 32, 32), numpy.float32)])


# The models whose quantized forward is compared with torch's (resnet50
# and resnext101_32x8d are resnet18's blocks at a cost CI cannot pay).
QUANTIZED = [("resnet18", 32, {}), ("googlenet", 32, {"aux_logits": False}), ("mobilenet_v2", 32, {}),
             # 64 x 64: at 32 x 32 torch's own quantized ShuffleNetV2 fails (the
             # mean of its 1 x 1 map: "required rank 4 tensor to use channels_last")
             ("mobilenet_v3_large", 32, {}), ("shufflenet_v2_x1_0", 64, {}),
             # A quantized conv (Mixed_5c.branch1x1, 1x1 + ReLU) rounds one
             # element differently from torch's fbgemm: acc 25646, bias
             # -0.1024, (acc + bias / a) * m = 72.50001 in float32 (73) where
             # torch gets 72 (its bias / multiplier arithmetic lands on 72.5);
             # over 94 layers this reaches 91% of the outputs within one step.
             # The conv requantization is the kernel work of issue 27.
             pytest.param("inception_v3", 75, {"aux_logits": False},
                          marks=pytest.mark.xfail(strict=True, raises=AssertionError,
                                                 reason="conv requantization tie vs fbgemm"))]


@pytest.mark.slow
@pytest.mark.parametrize("name, size, kwargs", QUANTIZED)
def test_quantized_matches_torch(name, size, kwargs):
    # The same fused float model calibrated on the same batches in torch
    # (x86 engine) and minicnn: the same zero points and scales in every
    # quantized module (scales to float32 round-off: the observed ranges
    # are float32 conv outputs, whose last bits differ between the two
    # convolution kernels), and the same int8 outputs up to one step.
    torch.backends.quantized.engine = "x86"
    mc_model, tv_model = build_pair(name, **kwargs)
    rng = numpy.random.default_rng(0)
    batches = [rng.standard_normal((2, 3, size, size)).astype(numpy.float32) for _ in range(2)]
    tv_model.fuse_model()
    tv_model.qconfig = torch.ao.quantization.get_default_qconfig("x86")
    torch.ao.quantization.prepare(tv_model, inplace=True)
    with torch.no_grad():
        for batch in batches:
            tv_model(torch.from_numpy(batch))
    torch.ao.quantization.convert(tv_model, inplace=True)
    mcq.quantize_model(mc_model, [mc.tensor(batch) for batch in batches])
    assert list(mc_model.state_dict()) == list(tv_model.state_dict())     # converted: torch's keys too
    if name == "inception_v3":
        # 94 quantized layers deep, the float32 round-off of calibration
        # (minicnn's and torch's float convs differ in the last bits, so do
        # the observed ranges and scales) moves ties of the integer
        # arithmetic and the differences compound (80% of the outputs
        # within one step). Loading torch's converted state (the same
        # scales) compares the integer arithmetic itself.
        mc_model.load_state_dict({k: from_torch(v) for k, v in tv_model.state_dict().items()})
    tv_modules = dict(tv_model.named_modules())
    checked = 0
    for module_name, m in mc_model.named_modules():
        if hasattr(m, "scale") and hasattr(m, "zero_point") and module_name in tv_modules:
            theirs = tv_modules[module_name]
            assert float(m.scale) == pytest.approx(float(theirs.scale), rel=1e-5), module_name
            assert int(m.zero_point) == int(theirs.zero_point), module_name
            checked += 1
    assert checked >= 20
    x = rng.standard_normal((2, 3, size, size)).astype(numpy.float32)
    actual, expected = _outputs(mc_model, tv_model, x)
    # one step of the output: the scale of the last (classifier) linear
    step = [m for m in tv_model.modules() if isinstance(m, torch.ao.nn.quantized.Linear)][-1].scale
    # one integer step, plus what the scales' float32 round-off makes of
    # the dequantized values
    within_one_step = numpy.mean(numpy.abs(actual - expected) <= step + 1e-5 * numpy.abs(expected))
    print(f"{name}: {within_one_step:.6f} of the outputs within one step ({step:.3g}), outputs in "
          f"[{expected.min():.3g}, {expected.max():.3g}]")
    assert within_one_step >= 0.999
