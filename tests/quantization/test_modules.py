"""Each quantized module against torch's (fbgemm) on the same quantized
input and the same quantized weights: outputs equal element by element."""
import numpy
import pytest
import torch
import torch.ao.nn.intrinsic.quantized as tnniq
import torch.ao.nn.quantized as tnnq

import minicnn as mc
from minicnn.ao.nn import intrinsic as nni
from minicnn.ao.nn import quantized as nnq
from minicnn.ao.nn.quantized import functional as qF
from minicnn.kernels import registry

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(autouse=True)
def fbgemm():
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    yield
    torch.backends.quantized.engine = previous


def quantized_pair(x, scale, zero_point):
    return (mc.quantize_per_tensor(mc.tensor(x), scale, zero_point, mc.quint8),
            torch.quantize_per_tensor(torch.from_numpy(x), scale, zero_point, torch.quint8))


def weight_pair(rng, shape, per_channel):
    w = (rng.standard_normal(shape) * 0.3).astype(numpy.float32)
    if per_channel:
        scales = rng.uniform(0.002, 0.01, shape[0])
        zero_points = numpy.zeros(shape[0], numpy.int64)
        return (mc.quantize_per_channel(mc.tensor(w), scales, zero_points, 0, mc.qint8),
                torch.quantize_per_channel(torch.from_numpy(w), torch.from_numpy(scales),
                                           torch.from_numpy(zero_points), 0, torch.qint8))
    return (mc.quantize_per_tensor(mc.tensor(w), 0.006, 0, mc.qint8),
            torch.quantize_per_tensor(torch.from_numpy(w), 0.006, 0, torch.qint8))


def assert_same(ours, theirs):
    assert ours.q_scale() == theirs.q_scale() and ours.q_zero_point() == theirs.q_zero_point()
    numpy.testing.assert_array_equal(ours.int_repr().numpy(), theirs.int_repr().numpy())


CONVS = [
    dict(in_channels=4, out_channels=6, kernel_size=3, padding=1),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=(2, 1), padding=(0, 1), bias=False),
    dict(in_channels=4, out_channels=8, kernel_size=3, padding=2, dilation=2, groups=2),
    dict(in_channels=6, out_channels=6, kernel_size=3, stride=2, padding=1, groups=6),
    dict(in_channels=5, out_channels=3, kernel_size=1),
]


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("config", CONVS, ids=str)
def test_conv2d(rng, backend, config, per_channel, relu):
    ours_cls, theirs_cls = (nni.quantized.ConvReLU2d, tnniq.ConvReLU2d) if relu else (nnq.Conv2d, tnnq.Conv2d)
    ours, theirs = ours_cls(**config), theirs_cls(**config)
    shape = (config["out_channels"], config["in_channels"] // config.get("groups", 1)) + \
        tuple(numpy.broadcast_to(config["kernel_size"], 2))
    w, tw = weight_pair(rng, shape, per_channel)
    bias = (rng.standard_normal(config["out_channels"]) * 0.5).astype(numpy.float32)
    use_bias = config.get("bias", True)
    ours.set_weight_bias(w, bias if use_bias else None)
    theirs.set_weight_bias(tw, torch.from_numpy(bias) if use_bias else None)
    ours.scale = theirs.scale = 0.043
    ours.zero_point = theirs.zero_point = 61
    x, tx = quantized_pair(rng.standard_normal((2, config["in_channels"], 9, 8)).astype(numpy.float32), 0.05, 67)
    assert_same(ours(x), theirs(tx))


@pytest.mark.parametrize("relu", [False, True])
def test_linear(rng, backend, relu):
    ours, theirs = (nni.quantized.LinearReLU(20, 7), tnniq.LinearReLU(20, 7)) if relu else \
        (nnq.Linear(20, 7), tnnq.Linear(20, 7))
    w, tw = weight_pair(rng, (7, 20), per_channel=True)
    bias = rng.standard_normal(7).astype(numpy.float32)
    ours.set_weight_bias(w, bias)
    theirs.set_weight_bias(tw, torch.from_numpy(bias))
    ours.scale, ours.zero_point = theirs.scale, theirs.zero_point = 0.021, 100
    # Activations in 7 bits (6..122), as torch's fbgemm qconfig keeps them
    # (reduce_range): fbgemm's AVX2 kernels (CPUs without AVX-512 VNNI) add
    # pairs of uint8 x int8 products in int16, which saturates past 32767
    # (full-range uint8 times these weights reached 40259); minicnn's sums
    # are exact.
    x = numpy.clip(rng.standard_normal((3, 5, 20)), -3.5, 3.5).astype(numpy.float32)
    x, tx = quantized_pair(x, 0.06, 64)
    assert_same(ours(x), theirs(tx))


def test_kernel_matches_reference(rng):
    """The Numba kernel and the NumPy reference: the same int32 sums."""
    x = rng.integers(0, 256, (2, 6, 11, 9), dtype=numpy.uint8)
    w = rng.integers(-128, 128, (9, 2, 3, 2), dtype=numpy.int64).astype(numpy.int8)
    zero_points = rng.integers(-3, 4, 9).astype(numpy.int32)
    args = (x, 77, w, zero_points, (2, 1), (1, 2), (2, 1), 3)
    from minicnn.kernels.cpu.quantized import quantized_conv2d
    expected = qF.quantized_conv2d_reference(*args)
    numpy.testing.assert_array_equal(quantized_conv2d(*args), expected)
    brute = numpy.zeros_like(expected)
    xp = numpy.pad(x.astype(numpy.int64) - 77, ((0, 0), (0, 0), (1, 1), (2, 2)))
    for o in range(9):
        g = o // 3
        for i in range(expected.shape[2]):
            for j in range(expected.shape[3]):
                patch = xp[:, 2 * g:2 * g + 2, 2 * i:2 * i + 5:2, j:j + 2]
                brute[:, o, i, j] = (patch * (w[o].astype(numpy.int64) - zero_points[o])).sum(axis=(1, 2, 3))
    numpy.testing.assert_array_equal(expected, brute)
    assert registry.find("quantized_conv2d", numpy) is not None


def test_kernel_matches_reference_on_random_geometries(rng):
    from minicnn.kernels.cpu.quantized import quantized_conv2d
    for _ in range(12):
        groups, per_group_in, per_group_out = (int(v) for v in rng.integers(1, 4, 3))
        kh, kw, sh, sw, dh, dw = (int(v) for v in rng.integers(1, 4, 6))
        ph, pw = (int(v) for v in rng.integers(0, 3, 2))
        h, w = kh * dh + int(rng.integers(0, 6)), kw * dw + int(rng.integers(0, 6))
        x = rng.integers(0, 256, (2, groups * per_group_in, h, w), dtype=numpy.uint8)
        weight = rng.integers(-128, 128, (groups * per_group_out, per_group_in, kh, kw)).astype(numpy.int8)
        zero_points = rng.integers(-2, 3, groups * per_group_out).astype(numpy.int32)
        args = (x, int(rng.integers(0, 256)), weight, zero_points, (sh, sw), (ph, pw), (dh, dw), groups)
        numpy.testing.assert_array_equal(quantized_conv2d(*args), qF.quantized_conv2d_reference(*args))


def test_relu_and_pools(rng):
    x, tx = quantized_pair(rng.standard_normal((2, 3, 9, 7)).astype(numpy.float32), 0.02, 131)
    assert_same(nnq.ReLU()(x), torch.relu(tx))
    for kwargs in [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                   dict(kernel_size=3, stride=2, ceil_mode=True), dict(kernel_size=2, dilation=2, padding=1)]:
        ours = nnq.MaxPool2d.from_float(mc.nn.MaxPool2d(**kwargs))
        assert_same(ours(x), torch.nn.MaxPool2d(**kwargs)(tx))
    # torch's quantized convs return channels-last tensors, which pooling sees
    channels_last = tx.contiguous(memory_format=torch.channels_last)
    for size in [1, (2, 3), (4, 4), (None, 2)]:
        ours = nnq.AdaptiveAvgPool2d.from_float(mc.nn.AdaptiveAvgPool2d(size))
        assert_same(ours(x), torch.nn.functional.adaptive_avg_pool2d(channels_last, size))
    assert_same(nnq.Flatten.from_float(mc.nn.Flatten())(x), torch.flatten(tx, 1))


def test_float_input_still_runs_float_ops(rng):
    x = mc.tensor(rng.standard_normal((1, 2, 4, 4)).astype(numpy.float32))
    numpy.testing.assert_array_equal(nnq.ReLU()(x).numpy(), mc.relu(x).numpy())
    pool = nnq.MaxPool2d.from_float(mc.nn.MaxPool2d(2))
    numpy.testing.assert_array_equal(pool(x).numpy(), mc.nn.MaxPool2d(2)(x).numpy())


@pytest.mark.parametrize("op", ["add", "add_relu", "mul", "cat"])
def test_qfunctional(rng, op):
    a, ta = quantized_pair(rng.standard_normal((2, 4, 5, 5)).astype(numpy.float32), 0.031, 70)
    b, tb = quantized_pair(rng.standard_normal((2, 4, 5, 5)).astype(numpy.float32), 0.047, 55)
    ours, theirs = nnq.QFunctional(), tnnq.QFunctional()
    ours.scale = theirs.scale = 0.057
    ours.zero_point = theirs.zero_point = 93
    if op == "cat":
        assert_same(ours.cat([a, b], dim=1), theirs.cat([ta, tb], dim=1))
    else:
        assert_same(getattr(ours, op)(a, b), getattr(theirs, op)(ta, tb))


def test_quantize_dequantize_modules(rng):
    x = rng.standard_normal((2, 3)).astype(numpy.float32)
    q = nnq.Quantize(0.1, 10)(mc.tensor(x))
    assert_same(q, tnnq.Quantize(0.1, 10, torch.quint8)(torch.from_numpy(x)))
    numpy.testing.assert_array_equal(nnq.DeQuantize()(q).numpy(), q.dequantize().numpy())


def test_bad_input(rng):
    conv = nnq.Conv2d(3, 4, 3)
    with pytest.raises(TypeError, match="must be a quantized tensor"):
        conv(mc.tensor(numpy.zeros((1, 3, 5, 5), numpy.float32)))
    x, _ = quantized_pair(numpy.zeros((1, 2, 5, 5), numpy.float32), 0.1, 0)
    with pytest.raises(ValueError, match="input has 2 channels"):
        conv(x)
    with pytest.raises(TypeError, match="qint8 QTensor"):
        conv.set_weight_bias(mc.tensor(numpy.zeros((4, 3, 3, 3), numpy.float32)), None)
    with pytest.raises(ValueError, match="shapes must match"):
        nnq.QFunctional().add(x, x.flatten())
    with pytest.raises(TypeError, match="must be a quantized tensor"):
        nnq.DeQuantize()(mc.tensor([1.0]))
    with pytest.raises(RuntimeError, match="add / add_relu"):
        nnq.FloatFunctional()(x)
    with pytest.raises(ValueError, match="padding_mode"):
        nnq.Conv2d(3, 4, 3, padding_mode="reflect")
