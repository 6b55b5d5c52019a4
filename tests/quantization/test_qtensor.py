"""Quantized tensors against torch's: the stored integers, the
parameters and the dequantized floats agree bit for bit."""
import numpy
import pytest
import torch

import minicnn as mc

# torch warns that its quantized tensor creation functions are deprecated.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

DTYPES = [(mc.quint8, torch.quint8), (mc.qint8, torch.qint8), (mc.qint32, torch.qint32)]


@pytest.mark.parametrize("dtypes", DTYPES, ids=lambda d: d[0].name)
def test_quantize_per_tensor_matches_torch(rng, dtypes):
    ours, theirs = dtypes
    x = (rng.standard_normal((3, 5, 7)) * 4).astype(numpy.float32)
    for scale in rng.uniform(1e-3, 0.2, 25):
        zero_point = int(rng.integers(max(ours.qmin, -100), min(ours.qmax, 100)))
        q = mc.quantize_per_tensor(mc.tensor(x), float(scale), zero_point, ours)
        t = torch.quantize_per_tensor(torch.from_numpy(x), float(scale), zero_point, theirs)
        numpy.testing.assert_array_equal(q.int_repr().numpy(), t.int_repr().numpy())
        numpy.testing.assert_array_equal(q.dequantize().numpy(), t.dequantize().numpy())
        assert (q.q_scale(), q.q_zero_point()) == (t.q_scale(), t.q_zero_point())
        assert q.qscheme() is mc.per_tensor_affine and q.dtype is ours


def test_round_half_to_even_and_clamp():
    x = mc.tensor([0.5, 1.5, 2.5, -0.5, -1.5, 1000.0, -1000.0])
    torch_x = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, 1000.0, -1000.0])
    for ours, theirs in DTYPES[:2]:
        q = mc.quantize_per_tensor(x, 1.0, 0, ours).int_repr().numpy()
        numpy.testing.assert_array_equal(q, torch.quantize_per_tensor(torch_x, 1.0, 0, theirs).int_repr().numpy())
    assert mc.quantize_per_tensor(x, 1.0, 0, mc.qint8).int_repr().numpy().tolist() == [0, 2, 2, 0, -2, 127, -128]


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_quantize_per_channel_matches_torch(rng, axis):
    x = (rng.standard_normal((4, 6, 5)) * 2).astype(numpy.float32)
    n = x.shape[axis]
    for _ in range(10):
        scales = rng.uniform(1e-3, 0.1, n)
        zero_points = rng.integers(-20, 20, n)
        q = mc.quantize_per_channel(mc.tensor(x), mc.tensor(scales), mc.tensor(zero_points), axis, mc.qint8)
        t = torch.quantize_per_channel(torch.from_numpy(x), torch.from_numpy(scales), torch.from_numpy(zero_points),
                                       axis % 3, torch.qint8)
        numpy.testing.assert_array_equal(q.int_repr().numpy(), t.int_repr().numpy())
        numpy.testing.assert_array_equal(q.dequantize().numpy(), t.dequantize().numpy())
        numpy.testing.assert_array_equal(q.q_per_channel_scales().numpy(), t.q_per_channel_scales().numpy())
        numpy.testing.assert_array_equal(q.q_per_channel_zero_points().numpy(),
                                         t.q_per_channel_zero_points().numpy())
        assert q.q_per_channel_axis() == t.q_per_channel_axis()
        assert q.qscheme() is mc.per_channel_affine


def test_round_trip_error_is_at_most_half_a_step(rng):
    x = rng.uniform(-3, 3, 1000).astype(numpy.float32)
    q = mc.quantize_per_tensor(mc.tensor(x), 0.05, 128, mc.quint8)
    assert numpy.abs(q.dequantize().numpy() - x).max() <= 0.025 + 1e-6
    again = mc.quantize_per_tensor(q.dequantize(), 0.05, 128, mc.quint8)
    numpy.testing.assert_array_equal(again.int_repr().numpy(), q.int_repr().numpy())


def test_reshape_and_flatten_keep_parameters(rng):
    q = mc.quantize_per_tensor(mc.tensor(rng.standard_normal((2, 3, 4)).astype(numpy.float32)), 0.1, 5, mc.quint8)
    flat = q.flatten(1)
    assert flat.shape == (2, 12) and flat.q_scale() == 0.1 and flat.q_zero_point() == 5
    numpy.testing.assert_array_equal(flat.int_repr().numpy(), q.int_repr().numpy().reshape(2, 12))


def test_bad_input():
    x = mc.tensor([1.0, 2.0])
    with pytest.raises(ValueError, match="scale must be positive"):
        mc.quantize_per_tensor(x, 0.0, 0, mc.quint8)
    with pytest.raises(ValueError, match="scale must be positive"):
        mc.quantize_per_tensor(x, -0.1, 0, mc.quint8)
    with pytest.raises(ValueError, match="zero_point must lie in"):
        mc.quantize_per_tensor(x, 0.1, 300, mc.quint8)
    with pytest.raises(TypeError, match="dtype must be one of"):
        mc.quantize_per_tensor(x, 0.1, 0, mc.uint8)
    with pytest.raises(TypeError, match="float32"):
        mc.quantize_per_tensor(mc.tensor([1, 2]), 0.1, 0, mc.quint8)
    with pytest.raises(ValueError, match=r"must both have shape \(2,\)"):
        mc.quantize_per_channel(mc.tensor([[1.0], [2.0]]), [0.1], [0], 0, mc.qint8)
    q = mc.quantize_per_tensor(x, 0.1, 0, mc.quint8)
    with pytest.raises(ValueError, match="quantized per tensor"):
        q.q_per_channel_scales()
    with pytest.raises(TypeError, match="quint8"):
        mc.relu(q)
    with pytest.raises(TypeError, match="dequantize"):
        numpy.asarray(q)
    with pytest.raises(TypeError, match="already quantized"):
        mc.quantize_per_tensor(q, 0.1, 0, mc.quint8)


@pytest.mark.parametrize("op", [
    lambda q: mc.nn.functional.max_pool2d(q, 2), lambda q: mc.nn.BatchNorm2d(3).eval()(q), lambda q: mc.cat([q, q]),
    lambda q: mc.softmax(q, 1), lambda q: q.sum(), lambda q: mc.flatten(q), lambda q: mc.nn.Conv2d(3, 2, 1)(q),
    lambda q: mc.nn.Linear(4, 2)(q), lambda q: mc.relu(q), lambda q: mc.tensor([1.0]) + q,
], ids=["max_pool2d", "batch_norm", "cat", "softmax", "sum", "flatten", "conv2d", "linear", "relu", "add"])
def test_float_ops_refuse_quantized_tensors(rng, op):
    # A TypeError that says what the input is, not an AttributeError from
    # deep inside the op.
    q = mc.quantize_per_tensor(mc.tensor(rng.standard_normal((1, 3, 4, 4)).astype(numpy.float32)), 0.1, 128,
                               mc.quint8)
    with pytest.raises(TypeError, match="quint8|QTensor") as info:
        op(q)
    assert not isinstance(info.value, AttributeError) or "dequantize" in str(info.value)
    assert not hasattr(q, "ndim") and getattr(q, "data", None) is None      # still a missing attribute
