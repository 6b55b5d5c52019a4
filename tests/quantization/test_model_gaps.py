"""What torchvision's quantizable models need beyond conv / linear / add /
cat, each against torch's eager-mode quantization (fbgemm engine): an unused
FloatFunctional, quantized hard swish / hard sigmoid, the shape ops and
mean of ShuffleNetV2, quantized average pooling, and state dicts of
converted models with torch's keys."""
import warnings

import numpy
import pytest
import torch
import torch.ao.nn.quantized as tnnq
import torch.ao.quantization as tq

import minicnn as mc
from minicnn.ao import quantization as mq
from minicnn.ao.nn import quantized as mnnq
from qstate import fbgemm_engine, from_torch  # noqa: F401 (fbgemm_engine: autouse fixture)


def torch_qtensor(x, scale, zero_point):
    return torch.quantize_per_tensor(torch.from_numpy(x), scale, zero_point, torch.quint8)


def mc_qtensor(x, scale, zero_point):
    return mq.quantize_per_tensor(mc.tensor(x), scale, zero_point, mq.quint8)


def assert_same_qtensor(ours, theirs):
    assert ours.q_scale() == pytest.approx(theirs.q_scale(), rel=1e-7)
    assert ours.q_zero_point() == theirs.q_zero_point()
    numpy.testing.assert_array_equal(ours.int_repr().numpy(), theirs.int_repr().numpy())


# -- 1. a FloatFunctional that calibration never called -----------------

def make_unused_skip(nn, FloatFunctional, QuantStub, DeQuantStub):
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.quant, self.dequant = QuantStub(), DeQuantStub()
            self.conv = nn.Conv2d(3, 4, 3)
            self.used = FloatFunctional()
            self.skip_add = FloatFunctional()      # never called, as in MobileNetV2's blocks without a residual

        def forward(self, x):
            x = self.quant(x)
            return self.dequant(self.used.add(self.conv(x), self.conv(x)))
    return Block()


def test_unused_float_functional_converts_as_torch():
    torch.manual_seed(0)
    theirs = make_unused_skip(torch.nn, tnnq.FloatFunctional, tq.QuantStub, tq.DeQuantStub).eval()
    ours = make_unused_skip(mc.nn, mnnq.FloatFunctional, mq.QuantStub, mq.DeQuantStub).eval()
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    x = numpy.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(numpy.float32)
    for model, prepare, convert, qconfig, wrap in (
            (theirs, tq.prepare, tq.convert, tq.get_default_qconfig("fbgemm"), torch.from_numpy),
            (ours, mq.prepare, mq.convert, mq.get_default_qconfig("fbgemm"), mc.tensor)):
        model.qconfig = qconfig
        prepare(model, inplace=True)
        model(wrap(x))
        with pytest.warns(UserWarning, match="calculate_qparams"):
            convert(model, inplace=True)
    assert theirs.skip_add.scale == 1.0 and theirs.skip_add.zero_point == 0
    assert (ours.skip_add.scale, ours.skip_add.zero_point) == (1.0, 0)
    assert isinstance(ours.skip_add, mnnq.QFunctional)
    assert ours.used.scale == pytest.approx(float(theirs.used.scale), rel=1e-6)
    assert ours.used.zero_point == int(theirs.used.zero_point)


# -- 2. hard swish and hard sigmoid ---------------------------------------

# Input and output scales that make exact ties (x.5 before rounding)
# common: powers of two and short decimals.
TIE_SCALES = [2.0 ** -k for k in range(2, 9)] + [0.1, 0.05, 0.03, 3 / 256, 0.3]


@pytest.mark.parametrize("seed", range(4))
def test_hardswish_bit_exact(seed):
    # Every uint8 value under many (scale, zero point) pairs; 256 elements
    # (a multiple of 128) run torch's vector loop throughout.
    rng = numpy.random.default_rng(seed)
    q = numpy.arange(256, dtype=numpy.uint8)
    for _ in range(40):
        scale, zero_point = float(rng.choice(TIE_SCALES)), int(rng.integers(0, 256))
        out_scale, out_zero_point = float(rng.choice(TIE_SCALES + [1 / 96])), int(rng.integers(0, 256))
        theirs = tnnq.functional.hardswish(torch._make_per_tensor_quantized_tensor(torch.from_numpy(q), scale,
                                                                                   zero_point),
                                           out_scale, out_zero_point)
        ours = mnnq.functional.hardswish(mq.QTensor._per_tensor(q, scale, zero_point, mq.quint8), out_scale,
                                         out_zero_point)
        assert_same_qtensor(ours, theirs)


@pytest.mark.parametrize("seed", range(2))
def test_hardsigmoid_bit_exact(seed):
    rng = numpy.random.default_rng(seed)
    q = numpy.arange(256, dtype=numpy.uint8)
    for _ in range(40):
        scale, zero_point = float(rng.choice(TIE_SCALES)), int(rng.integers(0, 256))
        theirs = torch.nn.functional.hardsigmoid(torch._make_per_tensor_quantized_tensor(torch.from_numpy(q), scale,
                                                                                         zero_point))
        ours = mc.ao.nn.quantized.Hardsigmoid()(mq.QTensor._per_tensor(q, scale, zero_point, mq.quint8))
        assert_same_qtensor(ours, theirs)
        assert ours.q_scale() == 1 / 256 and ours.q_zero_point() == 0


def make_hardswish_net(nn, QuantStub, DeQuantStub):
    return nn.Sequential(QuantStub(), nn.Conv2d(3, 8, 3), nn.Hardswish(), nn.Conv2d(8, 4, 1), nn.Hardsigmoid(),
                         DeQuantStub())


def test_hardswish_converts_as_torch():
    # nn.Hardswish is observed and becomes a quantized Hardswish with its
    # observer's output parameters; Hardsigmoid runs on quantized tensors.
    torch.manual_seed(0)
    theirs = make_hardswish_net(torch.nn, tq.QuantStub, tq.DeQuantStub).eval()
    ours = make_hardswish_net(mc.nn, mq.QuantStub, mq.DeQuantStub).eval()
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    x = numpy.random.default_rng(0).standard_normal((2, 3, 9, 9)).astype(numpy.float32) * 2
    theirs.qconfig, ours.qconfig = tq.get_default_qconfig("fbgemm"), mq.get_default_qconfig("fbgemm")
    tq.prepare(theirs, inplace=True)
    mq.prepare(ours, inplace=True)
    theirs(torch.from_numpy(x))
    ours(mc.tensor(x))
    tq.convert(theirs, inplace=True)
    mq.convert(ours, inplace=True)
    assert isinstance(theirs[2], tnnq.Hardswish) and isinstance(ours[2], mnnq.Hardswish)
    assert ours[2].scale == pytest.approx(float(theirs[2].scale), rel=1e-6)
    assert ours[2].zero_point == int(theirs[2].zero_point)
    with torch.no_grad():
        expected = theirs[:5](torch.from_numpy(x))
    assert_same_qtensor(ours[:5](mc.tensor(x)), expected)


def test_mul_broadcasts_as_torch():
    # the squeeze-and-excitation product: a (N, C, 1, 1) gate times the map
    rng = numpy.random.default_rng(0)
    for _ in range(10):
        gate = rng.uniform(0, 1, (2, 5, 1, 1)).astype(numpy.float32)
        x = rng.standard_normal((2, 5, 6, 7)).astype(numpy.float32)
        x_scale, x_zero_point = float(rng.choice(TIE_SCALES)), int(rng.integers(0, 256))
        out_scale, out_zero_point = float(rng.choice(TIE_SCALES)), int(rng.integers(0, 256))
        theirs, ours = tnnq.QFunctional(), mnnq.QFunctional()
        theirs.scale, theirs.zero_point = out_scale, out_zero_point
        ours.scale, ours.zero_point = out_scale, out_zero_point
        expected = theirs.mul(torch_qtensor(gate, 1 / 256, 0), torch_qtensor(x, x_scale, x_zero_point))
        assert_same_qtensor(ours.mul(mc_qtensor(gate, 1 / 256, 0), mc_qtensor(x, x_scale, x_zero_point)), expected)


# -- 3. shape ops, mean and average pooling ---------------------------------

def random_pair(rng, shape, channels_last=True):
    scale, zero_point = float(rng.choice(TIE_SCALES)), int(rng.integers(0, 256))
    q = rng.integers(0, 256, shape).astype(numpy.uint8)
    theirs = torch._make_per_tensor_quantized_tensor(torch.from_numpy(q), scale, zero_point)
    if channels_last:      # what torch's quantized convs and cats return
        theirs = theirs.contiguous(memory_format=torch.channels_last)
    return mq.QTensor._per_tensor(q, scale, zero_point, mq.quint8), theirs


def test_shape_ops_as_torch():
    rng = numpy.random.default_rng(0)
    ours, theirs = random_pair(rng, (2, 6, 3, 5), channels_last=False)
    for a, b in zip(ours.chunk(2, 1), theirs.chunk(2, 1)):
        assert_same_qtensor(a, b)
    for a, b in zip(ours.chunk(4, 1), theirs.chunk(4, 1)):     # uneven: sizes 2, 2, 2
        assert_same_qtensor(a, b)
    assert_same_qtensor(ours.reshape(2, 2, 3, 3, 5).transpose(1, 2).contiguous().view(2, 6, 3, 5),
                        theirs.reshape(2, 2, 3, 3, 5).transpose(1, 2).contiguous().view(2, 6, 3, 5))
    assert_same_qtensor(ours.flatten(1), theirs.flatten(1))
    assert_same_qtensor(ours.transpose(0, 3), theirs.transpose(0, 3).contiguous())


@pytest.mark.parametrize("shape", [(2, 6, 2, 2), (2, 5, 3, 7)])
def test_mean_as_torch(shape):
    # 2 x 2 windows make exact ties common
    rng = numpy.random.default_rng(1)
    for _ in range(20):
        ours, theirs = random_pair(rng, shape)
        for dims in [(2, 3), [-1, -2], 3]:
            for keepdim in (False, True):
                assert_same_qtensor(ours.mean(dims, keepdim), theirs.mean(dims, keepdim=keepdim))


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3, stride=1, padding=1), dict(kernel_size=3, stride=1, padding=1, count_include_pad=False),
    dict(kernel_size=5, stride=3), dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), divisor_override=4)])
def test_avg_pool2d_as_torch(kwargs):
    rng = numpy.random.default_rng(2)
    for _ in range(10):
        ours, theirs = random_pair(rng, (2, 4, 8, 7))
        assert_same_qtensor(mnnq.functional.avg_pool2d(ours, **kwargs),
                            torch.nn.functional.avg_pool2d(theirs, **kwargs))


def test_avg_pool2d_bad_input():
    ours, _ = random_pair(numpy.random.default_rng(3), (1, 2, 4, 4))
    with pytest.raises(TypeError, match="quantized tensor"):
        mnnq.functional.avg_pool2d(mc.tensor(numpy.zeros((1, 2, 4, 4), numpy.float32)), 2)
    with pytest.raises(ValueError, match="at most half"):
        mnnq.functional.avg_pool2d(ours, 3, padding=2)
    with pytest.raises(ValueError, match="4-d"):
        mnnq.functional.avg_pool2d(ours.flatten(), 2)


# -- 4. state dicts of converted models -------------------------------------

def converted_resnet18_pair(x):
    import torchvision.models.quantization as tvq
    import minicnn.models.quantization as mcq
    torch.manual_seed(0)
    theirs = tvq.resnet18().eval()
    ours = mcq.resnet18().eval()
    ours.load_state_dict(theirs.state_dict())
    theirs.fuse_model()
    theirs.qconfig = tq.get_default_qconfig("fbgemm")
    tq.prepare(theirs, inplace=True)
    with torch.no_grad():
        theirs(torch.from_numpy(x))
    tq.convert(theirs, inplace=True)
    mcq.quantize_model(ours, [mc.tensor(x[::-1].copy())])       # other calibration: other scales
    return ours, theirs


@pytest.mark.slow
def test_converted_state_dict_matches_torch():
    x = numpy.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(numpy.float32)
    ours, theirs = converted_resnet18_pair(x)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    state = ours.state_dict()
    assert isinstance(state["conv1.weight"], mq.QTensor) and isinstance(state["fc._packed_params._packed_params"][0],
                                                                        mq.QTensor)
    # torch's converted values loaded into minicnn's converted model: torch's outputs
    ours.load_state_dict({k: from_torch(v) for k, v in theirs.state_dict().items()})
    assert ours.layer1[0].conv1.scale == float(theirs.layer1[0].conv1.scale)
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    with mc.no_grad():
        actual = ours(mc.tensor(x)).numpy()
    numpy.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-7)
    # round trip in memory, and a bad value leaves the model unchanged
    reloaded = mcq_resnet18_converted_like(ours)
    reloaded.load_state_dict(ours.state_dict())
    with mc.no_grad():
        numpy.testing.assert_array_equal(reloaded(mc.tensor(x)).numpy(), actual)
    bad = dict(ours.state_dict())
    bad["fc.scale"] = mc.tensor(numpy.array(0.5, numpy.float32))
    bad["conv1.weight"] = mc.tensor(numpy.zeros((64, 3, 7, 7), numpy.float32))
    with pytest.raises(Exception, match="conv1.weight: weight must be a qint8 QTensor"):
        reloaded.load_state_dict(bad)
    assert reloaded.fc.scale == ours.fc.scale


def mcq_resnet18_converted_like(model):
    import copy
    fresh = copy.deepcopy(model)
    for m in fresh.modules():
        if hasattr(m, "scale") and hasattr(m, "zero_point"):
            m.scale, m.zero_point = 1.0, 0
        if hasattr(m, "set_weight_bias"):
            weight = m.weight()
            zeros = mq.quantize_per_tensor(mc.tensor(numpy.zeros(weight.shape, numpy.float32)), 1.0, 0, mq.qint8)
            m.set_weight_bias(zeros, None if m.bias() is None else numpy.zeros(weight.shape[0], numpy.float32))
    return fresh


@pytest.mark.parametrize("channels", [3, 8, 13, 35, 64])
def test_channel_cat_as_torch(channels):
    # torch's cats take channels-last tensors (its quantized convs return
    # them): vectors of 8 channels and a scalar tail round differently
    rng = numpy.random.default_rng(channels)
    for _ in range(20):
        pairs = [random_pair(rng, (2, channels + i, 3, 3)) for i in range(2)]
        out_scale, out_zero_point = float(rng.choice(TIE_SCALES)), int(rng.integers(0, 256))
        theirs, ours = tnnq.QFunctional(), mnnq.QFunctional()
        theirs.scale, theirs.zero_point = out_scale, out_zero_point
        ours.scale, ours.zero_point = out_scale, out_zero_point
        assert_same_qtensor(ours.cat([p[0] for p in pairs], 1), theirs.cat([p[1] for p in pairs], 1))
