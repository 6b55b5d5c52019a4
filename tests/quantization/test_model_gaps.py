"""What torchvision's quantizable models need beyond conv / linear / add /
cat, each against torch's eager-mode quantization (x86 engine): an unused
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

torch.backends.quantized.engine = "x86"


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
            (theirs, tq.prepare, tq.convert, tq.get_default_qconfig("x86"), torch.from_numpy),
            (ours, mq.prepare, mq.convert, mq.get_default_qconfig("x86"), mc.tensor)):
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
