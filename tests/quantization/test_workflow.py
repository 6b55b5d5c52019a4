"""Acceptance: the same float model, fused, calibrated on the same batches
and converted by torch (fbgemm) and by minicnn, gives identical
quantization parameters everywhere and the same quantized activations."""
import numpy
import pytest
import torch
import torch.ao.nn.quantized as tnnq
import torch.ao.quantization as tq

import minicnn as mc
from minicnn.ao import quantization as mq
from pairs import copy_weights, randomize_batchnorm

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

FUSE = [["conv1", "bn1", "relu1"], ["conv2", "bn2"], ["conv3", "relu3"], ["dw", "bn_dw"], ["fc1", "relu4"]]
QUANTIZED = ["quant", "conv1", "conv2", "skip", "pool", "conv3", "dw", "cat", "avg", "fc1", "fc2"]


def make_net(nn, FloatFunctional, QuantStub, DeQuantStub):
    class Net(nn.Module):
        """conv-bn-relu, a residual add_relu, max pool, grouped and depthwise
        convs, a cat, adaptive average pooling, linear-relu, linear."""

        def __init__(self):
            super().__init__()
            self.quant = QuantStub()
            self.conv1, self.bn1, self.relu1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU()
            self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
            self.skip = FloatFunctional()
            self.pool = nn.MaxPool2d(3, stride=2, padding=1)
            self.conv3, self.relu3 = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2), nn.ReLU()
            self.dw, self.bn_dw = nn.Conv2d(16, 16, 3, padding=2, dilation=2, groups=16), nn.BatchNorm2d(16)
            self.cat = FloatFunctional()
            self.avg = nn.AdaptiveAvgPool2d((2, 3))
            self.flatten = nn.Flatten()
            self.fc1, self.relu4 = nn.Linear(192, 24), nn.ReLU()
            self.fc2 = nn.Linear(24, 10)
            self.dequant = DeQuantStub()

        def forward(self, x):
            x = self.quant(x)
            y = self.relu1(self.bn1(self.conv1(x)))
            x = self.skip.add_relu(y, self.bn2(self.conv2(y)))
            x = self.relu3(self.conv3(self.pool(x)))
            x = self.cat.cat([x, self.bn_dw(self.dw(x))], dim=1)
            x = self.relu4(self.fc1(self.flatten(self.avg(x))))
            return self.dequant(self.fc2(x))

    return Net()


def quantize_both(rng, qconfig_name="fbgemm"):
    torch.manual_seed(0)
    theirs = make_net(torch.nn, tnnq.FloatFunctional, tq.QuantStub, tq.DeQuantStub)
    randomize_batchnorm(theirs, rng)
    ours = copy_weights(theirs, make_net(mc.nn, mc.ao.nn.quantized.FloatFunctional, mq.QuantStub, mq.DeQuantStub))
    theirs.eval(), ours.eval()
    theirs.qconfig = tq.get_default_qconfig(qconfig_name) if qconfig_name else tq.default_qconfig
    ours.qconfig = mq.get_default_qconfig(qconfig_name) if qconfig_name else mq.default_qconfig
    theirs = tq.prepare(tq.fuse_modules(theirs, FUSE))
    ours = mq.prepare(mq.fuse_modules(ours, FUSE))
    for _ in range(3):
        x = (rng.standard_normal((2, 3, 16, 16)) * 1.5).astype(numpy.float32)
        with torch.no_grad():
            theirs(torch.from_numpy(x))
        ours(mc.tensor(x))
    return tq.convert(theirs), mq.convert(ours)


def record(model, names, hook_kind):
    outputs = {}
    for name in names:
        module = model.get_submodule(name)
        if name in ("skip", "cat"):
            continue
        module.register_forward_hook(lambda m, i, o, name=name: outputs.__setitem__(name, o))
    return outputs


def qparams(module):
    if hasattr(module, "scale"):
        return float(module.scale), int(module.zero_point)
    return None


@pytest.mark.parametrize("qconfig_name", ["fbgemm", None])
def test_quantized_model_matches_torch(rng, qconfig_name):
    torch.backends.quantized.engine = "fbgemm"
    theirs, ours = quantize_both(rng, qconfig_name)
    # The observers agree bit for bit on identical data (test_observers.py);
    # here they watch each framework's own float32 conv outputs, whose sums
    # may differ in the last bit, so a range (and a scale) may move by an ulp.
    for name in ["conv1", "conv2", "skip", "conv3", "dw", "cat", "fc1", "fc2"]:
        (scale, zero_point), (their_scale, their_zero_point) = (qparams(ours.get_submodule(name)),
                                                                 qparams(theirs.get_submodule(name)))
        assert zero_point == their_zero_point, name
        assert scale == pytest.approx(their_scale, rel=1e-6, abs=0), name
    assert qparams(ours.quant) == qparams(theirs.quant)
    conv = ours.conv1.weight()
    numpy.testing.assert_array_equal(conv.int_repr().numpy(), theirs.conv1.weight().int_repr().numpy())
    if qconfig_name:
        numpy.testing.assert_array_equal(conv.q_per_channel_scales().numpy(),
                                         theirs.conv1.weight().q_per_channel_scales().numpy())

    seen_theirs, seen_ours = record(theirs, QUANTIZED, "torch"), record(ours, QUANTIZED, "mc")
    x = (rng.standard_normal((4, 3, 16, 16)) * 1.5).astype(numpy.float32)
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    got = ours(mc.tensor(x)).numpy()
    exact = total = 0
    for name, t in seen_theirs.items():
        a, b = seen_ours[name].int_repr().numpy().astype(int), t.int_repr().numpy().astype(int)
        assert numpy.abs(a - b).max() <= 1, name
        exact += (a == b).sum()
        total += a.size
    # The one-step differences come from inputs that already differ upstream;
    # with identical inputs every op is exact (test_modules.py).
    print(f"quantized activations equal to torch's: {exact}/{total}")
    assert exact / total >= 0.999, f"{exact}/{total} equal"
    step = theirs.fc2.scale
    assert numpy.abs(got - expected).max() <= step * 1.0001
    # equal up to the scale's last bit where the integers are equal
    close = numpy.abs(got - expected) <= 1e-6 * numpy.abs(expected) + 1e-12
    assert close.mean() >= 0.999


def test_convert_without_prepare_or_calibration(rng):
    _, ours = (None, make_net(mc.nn, mc.ao.nn.quantized.FloatFunctional, mq.QuantStub, mq.DeQuantStub).eval())
    with pytest.raises(ValueError, match="no observers"):
        mq.convert(ours)
    with pytest.raises(ValueError, match="no module has a qconfig"):
        mq.prepare(ours)
    ours.qconfig = mq.get_default_qconfig("x86")
    with pytest.raises(ValueError, match="seen no data"):
        mq.convert(mq.prepare(ours))


def test_quantized_model_refuses_float_into_quantized_module(rng):
    _, ours = quantize_both(rng)
    with pytest.raises(TypeError, match="must be a quantized tensor"):
        ours.conv1(mc.tensor(numpy.zeros((1, 3, 8, 8), numpy.float32)))
    with pytest.raises(TypeError, match="float32"):
        ours(mc.tensor(numpy.zeros((1, 3, 8, 8))))


def test_names_where_torch_users_look():
    import minicnn.quantization
    assert minicnn.quantization.prepare is mq.prepare and mc.quantization.convert is mq.convert
    assert mc.quantize_per_tensor is mq.quantize_per_tensor and mc.quint8 is mq.quint8


def test_submodule_without_qconfig_stays_float(rng):
    """qconfig None on a submodule keeps it float (no observer, no swap)."""
    model = mc.nn.Sequential(mq.QuantStub(), mc.nn.Conv2d(2, 3, 1), mq.DeQuantStub(), mc.nn.Conv2d(3, 2, 1)).eval()
    model.qconfig = mq.default_qconfig
    model[3].qconfig = None
    prepared = mq.prepare(model)
    assert not hasattr(prepared[3], "activation_post_process")
    prepared(mc.tensor(rng.standard_normal((1, 2, 4, 4)).astype(numpy.float32)))
    converted = mq.convert(prepared)
    assert type(converted[1]) is mc.ao.nn.quantized.Conv2d and type(converted[3]) is mc.nn.Conv2d
    assert not hasattr(converted[3], "qconfig")
    out = converted(mc.tensor(rng.standard_normal((1, 2, 4, 4)).astype(numpy.float32)))
    assert isinstance(out, mc.Tensor) and out.shape == (1, 2, 4, 4)
