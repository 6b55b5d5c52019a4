"""mc.save / mc.load of quantized tensors and of a converted int8 model's
state dict (the loaded model gives the same int8 outputs), torch's
``_make_per_{tensor,channel}_quantized_tensor`` that rebuild them from
their integers, and crafted files with bad quantization parameters."""
import json

import numpy
import pytest
import safetensors.numpy
import torch

import minicnn as mc
import minicnn.models.quantization as mcq
from minicnn import serialization
from minicnn.ao import quantization as mq

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def assert_same_qtensor(ours, theirs):
    """Same dtype object, scheme, integers and parameters, bit for bit."""
    assert ours.dtype is theirs.dtype and ours.qscheme() is theirs.qscheme() and ours.shape == theirs.shape
    numpy.testing.assert_array_equal(ours.int_repr().numpy(), theirs.int_repr().numpy())
    assert ours.int_repr().numpy().dtype == theirs.int_repr().numpy().dtype
    if theirs.qscheme() is mq.per_tensor_affine:
        assert (ours.q_scale(), ours.q_zero_point()) == (theirs.q_scale(), theirs.q_zero_point())
        assert type(ours.q_scale()) is float and type(ours.q_zero_point()) is int
    else:
        numpy.testing.assert_array_equal(ours.q_per_channel_scales().numpy(), theirs.q_per_channel_scales().numpy())
        numpy.testing.assert_array_equal(ours.q_per_channel_zero_points().numpy(),
                                         theirs.q_per_channel_zero_points().numpy())
        assert ours.q_per_channel_axis() == theirs.q_per_channel_axis()


def test_quantized_tensors_round_trip(tmp_path, rng):
    x = mc.tensor(rng.standard_normal((4, 3, 2)).astype(numpy.float32))
    scales = rng.uniform(0.01, 0.1, 3)        # float64 scales that float32 would round
    tensors = {
        "activation": mc.quantize_per_tensor(x, 0.1 / 3, 131, mc.quint8),
        "weight": mc.quantize_per_channel(x, scales, [0, -3, 5], 1, mc.qint8),
        "bias": mc.quantize_per_tensor(x, 1e-4, 0, mc.qint32),
        "scalar": mc.quantize_per_tensor(mc.tensor(numpy.float32(0.5)), 0.25, 7, mc.quint8),
    }
    path = tmp_path / "q.safetensors"
    mc.save({"tensors": tensors, "dtypes": [mc.quint8, mc.qint8, mc.qint32], "float": mc.ones(2)}, path)
    loaded = mc.load(path)
    for name, q in tensors.items():
        assert_same_qtensor(loaded["tensors"][name], q)
    assert loaded["dtypes"][0] is mc.quint8 and loaded["dtypes"][1] is mc.qint8 and loaded["dtypes"][2] is mc.qint32
    numpy.testing.assert_array_equal(loaded["float"].numpy(), numpy.ones(2, numpy.float32))


def test_converted_model_round_trips_with_identical_int8_outputs(tmp_path, rng):
    calibration = [rng.standard_normal((2, 3, 32, 32)).astype(numpy.float32)]     # arrays, not Tensors
    mc.manual_seed(0)
    model = mcq.shufflenet_v2_x1_0(quantize=True, calibration_data=calibration)
    path = tmp_path / "int8.safetensors"
    mc.save({"model": model.state_dict(), "epoch": 3}, path)
    loaded = mc.load(path)
    assert loaded["epoch"] == 3
    state = loaded["model"]
    assert list(state) == list(model.state_dict())
    for key, value in model.state_dict().items():
        for ours, theirs in zip(*(v if isinstance(v, tuple) else (v,) for v in (state[key], value))):
            if isinstance(theirs, mq.QTensor):
                assert_same_qtensor(ours, theirs)
    # a model of other weights converted from other calibration data, then loaded
    other = mcq.shufflenet_v2_x1_0(quantize=True, calibration_data=[calibration[0][:, :, ::-1].copy() * 3])
    x = mc.tensor(rng.standard_normal((2, 3, 32, 32)).astype(numpy.float32))
    with mc.no_grad():
        expected, before = model(x).numpy(), other(x).numpy()
        assert len(numpy.unique(expected)) > 50 and not numpy.array_equal(before, expected)
        other.load_state_dict(state)
        numpy.testing.assert_array_equal(other(x).numpy(), expected)


def test_make_quantized_tensor_as_torch(rng):
    for storage, scale, zero_point in ((numpy.uint8, 0.02, 100), (numpy.int8, 0.5, -3), (numpy.int32, 1e-3, 0)):
        info = numpy.iinfo(storage)
        q = rng.integers(max(info.min, -1000), min(info.max, 1000), (3, 4), endpoint=True).astype(storage)
        ours = mc._make_per_tensor_quantized_tensor(mc.tensor(q), scale, zero_point)
        theirs = torch._make_per_tensor_quantized_tensor(torch.from_numpy(q), scale, zero_point)
        assert ours.dtype.name == str(theirs.dtype).split(".")[1]
        numpy.testing.assert_array_equal(ours.int_repr().numpy(), theirs.int_repr().numpy())
        numpy.testing.assert_array_equal(ours.dequantize().numpy(), theirs.dequantize().numpy())
    q = rng.integers(-128, 128, (5, 3, 2)).astype(numpy.int8)
    scales, zero_points = rng.uniform(0.01, 0.1, 3), numpy.array([0, 4, -7])
    ours = mc._make_per_channel_quantized_tensor(q, scales, zero_points, 1)
    theirs = torch._make_per_channel_quantized_tensor(torch.from_numpy(q), torch.from_numpy(scales),
                                                      torch.from_numpy(zero_points), 1)
    numpy.testing.assert_array_equal(ours.int_repr().numpy(), theirs.int_repr().numpy())
    numpy.testing.assert_array_equal(ours.q_per_channel_scales().numpy(), theirs.q_per_channel_scales().numpy())
    numpy.testing.assert_array_equal(ours.dequantize().numpy(), theirs.dequantize().numpy())
    before = ours.int_repr().numpy().copy()
    q += 1
    numpy.testing.assert_array_equal(ours.int_repr().numpy(), before)     # ours holds a copy


@pytest.mark.parametrize("args, error, match", [
    ((numpy.zeros(3, numpy.float32), 0.1, 0), TypeError, "uint8 for quint8"),
    ((numpy.zeros(3, numpy.uint8), 0.0, 0), ValueError, "scale must be positive"),
    ((numpy.zeros(3, numpy.uint8), -0.5, 0), ValueError, "scale must be positive"),
    ((numpy.zeros(3, numpy.uint8), 0.1, 256), ValueError, r"zero_point must lie in \[0, 255\]"),
    ((numpy.zeros(3, numpy.int8), 0.1, -129), ValueError, r"zero_point must lie in \[-128, 127\]"),
    ((numpy.zeros(3, numpy.uint8), 0.1, 1.5), TypeError, "zero_point must be an int"),
])
def test_make_per_tensor_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        mc._make_per_tensor_quantized_tensor(*args)


@pytest.mark.parametrize("scales, zero_points, axis, error, match", [
    ([0.1, 0.0], [0, 0], 0, ValueError, "scale must be positive"),
    ([0.1, 0.1], [0, 300], 0, ValueError, r"zero_point must lie in \[-128, 127\]"),
    ([0.1, 0.1, 0.1], [0, 0, 0], 0, ValueError, r"must both have shape \(2,\)"),
    ([0.1, 0.1], [0, 0], 2, ValueError, "axis must be a dim"),
    ([1, 1], [0, 0], 0, TypeError, "scale must be floats"),
])
def test_make_per_channel_bad_input(scales, zero_points, axis, error, match):
    with pytest.raises(error, match=match):
        mc._make_per_channel_quantized_tensor(numpy.zeros((2, 3), numpy.int8), numpy.array(scales),
                                              numpy.array(zero_points), axis)


def write_structure(path, structure, arrays):
    """A checkpoint file as mc.save writes one, with this structure (valid
    checksums: only the quantization parameters are wrong)."""
    metadata = serialization.with_checksums(arrays, {"format": serialization.FORMAT,
                                                     "structure": json.dumps(structure)})
    path.write_bytes(safetensors.numpy.save(arrays, metadata=metadata))


@pytest.mark.parametrize("node, match", [
    ({"scale": -0.1, "zero_point": 0, "axis": None}, "scale must be positive"),
    ({"scale": 0.1, "zero_point": 200, "axis": None}, r"zero_point must lie in \[-128, 127\]"),
    ({"scale": "0.1", "zero_point": 0, "axis": None}, "scale must be a float"),
    ({"scale": 0.1, "zero_point": 0, "axis": 3}, "axis must be a dim"),
    ({"scale": 0.1, "zero_point": 0}, "malformed quantized tensor"),
])
def test_load_refuses_bad_quantization_parameters(tmp_path, node, match):
    path = tmp_path / "bad.safetensors"
    write_structure(path, {"dict": [["w", {"qtensor": {"int_repr": {"ndarray": "w"}, **node}}]]},
                    {"w": numpy.zeros((2, 2), numpy.int8)})
    with pytest.raises(ValueError, match=match) as info:
        mc.load(path)
    assert str(path) in str(info.value)


def test_load_refuses_unknown_qdtype_and_float_integers(tmp_path):
    path = tmp_path / "bad.safetensors"
    write_structure(path, {"dict": [["d", {"qdtype": "qint4"}]]}, {})
    with pytest.raises(ValueError, match="unknown quantized dtype 'qint4'"):
        mc.load(path)
    write_structure(path, {"qtensor": {"int_repr": {"ndarray": "w"}, "scale": 0.1, "zero_point": 0, "axis": None}},
                    {"w": numpy.zeros(2, numpy.float32)})
    with pytest.raises(ValueError, match="uint8 for quint8"):
        mc.load(path)
