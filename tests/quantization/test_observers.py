"""Observers against torch's on the same batches: the recorded statistics
and the chosen scale / zero point agree exactly."""
import numpy
import pytest
import torch
import torch.ao.quantization as tq

import minicnn as mc
from minicnn.ao import quantization as mq

# torch warns that reduce_range is deprecated and about uncalibrated observers.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def batches(rng, shift, spread, n=3, shape=(2, 4, 5, 5)):
    return [(rng.standard_normal(shape) * spread * (1 + i) + shift).astype(numpy.float32) for i in range(n)]


def run_both(ours, theirs, data):
    for x in data:
        assert ours(mc.tensor(x)).numpy() is not None
        theirs(torch.from_numpy(x))
    (s, z), (ts, tz) = ours.calculate_qparams(), theirs.calculate_qparams()
    numpy.testing.assert_array_equal(s.numpy(), ts.numpy())
    numpy.testing.assert_array_equal(z.numpy(), tz.numpy())
    assert s.numpy().dtype == numpy.float32 and z.numpy().dtype == numpy.int64


PER_TENSOR = [
    dict(),
    dict(reduce_range=True),
    dict(dtype=("qint8",), qscheme=("per_tensor_symmetric",)),
    dict(qscheme=("per_tensor_symmetric",)),
    dict(quant_min=0, quant_max=127),
    dict(qscheme=("per_tensor_symmetric",), quant_min=0, quant_max=127),
    dict(dtype=("qint8",), reduce_range=True),
]


def both_kwargs(kwargs):
    ours, theirs = {}, {}
    for key, value in kwargs.items():
        if isinstance(value, tuple):
            ours[key], theirs[key] = getattr(mc.ao.quantization, value[0]), getattr(torch, value[0])
        else:
            ours[key] = theirs[key] = value
    return ours, theirs


@pytest.mark.parametrize("kwargs", PER_TENSOR)
@pytest.mark.parametrize("name", ["MinMaxObserver", "MovingAverageMinMaxObserver"])
def test_min_max_observers(rng, name, kwargs):
    ours, theirs = both_kwargs(kwargs)
    for shift, spread in [(0.3, 1.0), (-2.0, 0.5), (1.0, 0.1)]:
        run_both(getattr(mq, name)(**ours), getattr(tq, name)(**theirs), batches(rng, shift, spread))


@pytest.mark.parametrize("kwargs", [dict(), dict(dtype=("qint8",), qscheme=("per_channel_symmetric",)),
                                    dict(ch_axis=1, reduce_range=True)])
def test_per_channel_min_max_observer(rng, kwargs):
    ours, theirs = both_kwargs(kwargs)
    run_both(mq.PerChannelMinMaxObserver(**ours), tq.PerChannelMinMaxObserver(**theirs), batches(rng, 0.2, 1.0))


@pytest.mark.parametrize("kwargs", [dict(reduce_range=True), dict(), dict(qscheme=("per_tensor_symmetric",)),
                                    dict(quant_min=0, quant_max=127, bins=256)])
def test_histogram_observer(rng, kwargs):
    """Batches that widen the range each time, so the old histogram is
    spread over new bins (the upsampling path), and one of ReLU outputs."""
    ours, theirs = both_kwargs(kwargs)
    for data in (batches(rng, 0.5, 1.0), [numpy.maximum(b, 0) for b in batches(rng, 0.0, 2.0)]):
        o, t = mq.HistogramObserver(**ours), tq.HistogramObserver(**theirs)
        run_both(o, t, data)
        numpy.testing.assert_array_equal(o.histogram.numpy(), t.histogram.numpy())


def test_histogram_observer_constant_first_batch():
    o, t = mq.HistogramObserver(bins=64), tq.HistogramObserver(bins=64)
    run_both(o, t, [numpy.zeros((3, 3), numpy.float32), numpy.linspace(-1, 2, 9, dtype=numpy.float32)])


def test_uncalibrated_observer_returns_defaults():
    with pytest.warns(UserWarning, match="must run observer"):
        scale, zero_point = mq.MinMaxObserver().calculate_qparams()
    assert scale.numpy().tolist() == [1.0] and zero_point.numpy().tolist() == [0]


def test_default_qconfigs_match_torch():
    for backend in ["x86", "fbgemm", "qnnpack", "onednn"]:
        ours, theirs = mq.get_default_qconfig(backend), tq.get_default_qconfig(backend)
        for field in ("activation", "weight"):
            o, t = getattr(ours, field)(), getattr(theirs, field)()
            assert type(o).__name__ == type(t).__name__
            assert (o.quant_min, o.quant_max, o.reduce_range) == (t.quant_min, t.quant_max, t.reduce_range)
            assert o.dtype.name == str(t.dtype).split(".")[1] and o.qscheme.name == str(t.qscheme).split(".")[1]
            assert o.eps == float(t.eps) and o.has_customized_qrange == t.has_customized_qrange
            for setting in ("bins", "ch_axis"):
                assert getattr(o, setting, None) == getattr(t, setting, None), (backend, field, setting)
    o, t = mq.default_qconfig.activation(), tq.default_qconfig.activation()
    assert (o.quant_min, o.quant_max) == (t.quant_min, t.quant_max) == (0, 127)


def test_bad_input():
    with pytest.raises(ValueError, match="qscheme"):
        mq.HistogramObserver(qscheme=mq.per_channel_affine)
    with pytest.raises(TypeError, match="dtype"):
        mq.MinMaxObserver(dtype=mc.uint8)
    with pytest.raises(ValueError, match="quant_min"):
        mq.MinMaxObserver(quant_min=1, quant_max=127)
    with pytest.raises(TypeError, match="floating-point"):
        mq.MinMaxObserver()(mc.tensor([1, 2]))
    q = mq.quantize_per_tensor(mc.tensor([1.0, 2.0]), 0.1, 0, mq.quint8)
    for observer in (mq.MinMaxObserver(), mq.HistogramObserver(), mq.PerChannelMinMaxObserver()):
        with pytest.raises(TypeError, match=f"{type(observer).__name__}: observes float tensors, got a quantized"):
            observer(q)
    with pytest.raises(TypeError, match="instance"):
        mq.QConfig(activation=mq.MinMaxObserver(), weight=mq.default_weight_observer)
    with pytest.raises(ValueError, match="backend"):
        mq.get_default_qconfig("arm")
