"""``mc.load_weights`` reading torch's quantized tensors (``minicnn.torch_pickle``).

* torch's own files: a converted int8 ResNet-18's state dict saved by
  ``torch.save`` (zip and legacy layouts) loads into minicnn's converted
  model, whose int8 outputs then equal torch's bit for bit; small quantized
  tensors of every dtype and scheme load with torch's integers, scales,
  zero points and axis.
* Crafted files: written with Python's pickler exactly as torch writes a
  quantized tensor (``_rebuild_qtensor`` and a quantized storage), then
  given a view past the storage, a bad scale or zero point, a scheme
  outside the allowlist, mismatched per-channel parameters, ...: each is a
  clear error naming the file, and nothing from the file runs.
"""
import collections
import io
import os
import pickle
import zipfile

import numpy
import pytest

import minicnn as mc
from minicnn.torch_pickle import UnsafeWeightsError, UnsupportedDtypeError

torch = pytest.importorskip("torch")
tq = pytest.importorskip("torch.ao.quantization")
tvq = pytest.importorskip("torchvision.models.quantization")

from qstate import fbgemm_engine  # noqa: E402, F401 (autouse: torch's fbgemm engine)


def assert_same_qtensor(ours, theirs, key=""):
    """minicnn QTensor ``ours`` holds torch quantized tensor ``theirs``."""
    assert isinstance(ours, mc.ao.QTensor), key
    assert ours.dtype is getattr(mc.ao, str(theirs.dtype).split(".")[1]), key
    numpy.testing.assert_array_equal(ours.int_repr().numpy(), theirs.int_repr().numpy(), err_msg=key)
    if theirs.qscheme() == torch.per_channel_affine:
        assert ours.qscheme() is mc.ao.per_channel_affine, key
        assert ours.q_per_channel_axis() == theirs.q_per_channel_axis(), key
        numpy.testing.assert_array_equal(ours.q_per_channel_scales().numpy(),
                                         theirs.q_per_channel_scales().numpy(), err_msg=key)
        numpy.testing.assert_array_equal(ours.q_per_channel_zero_points().numpy(),
                                         theirs.q_per_channel_zero_points().numpy(), err_msg=key)
    else:
        assert ours.qscheme() is mc.ao.per_tensor_affine, key
        assert (ours.q_scale(), ours.q_zero_point()) == (theirs.q_scale(), theirs.q_zero_point()), key


# -- torch's own files -------------------------------------------------------
@pytest.mark.slow
def test_torch_converted_resnet18_loads_and_matches_torch_bit_for_bit(tmp_path):
    # The user story: torch converts a quantizable torchvision ResNet-18
    # (fbgemm) and saves its state dict; minicnn's converted model loads
    # the file and computes torch's int8 outputs.
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = numpy.random.default_rng(0)
    tv_model = tvq.resnet18().eval()
    tv_model.fuse_model()
    tv_model.qconfig = tq.get_default_qconfig("fbgemm")
    tq.prepare(tv_model, inplace=True)
    with torch.no_grad():
        tv_model(torch.from_numpy(rng.standard_normal((2, 3, 32, 32)).astype(numpy.float32)))
    tq.convert(tv_model, inplace=True)
    state = tv_model.state_dict()
    torch.save(state, tmp_path / "zip.pth")
    torch.save(state, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)

    # minicnn's converted model, calibrated on other data: every value
    # that matters comes from the file.
    calibration = [rng.standard_normal((1, 3, 32, 32)).astype(numpy.float32)]
    mc_model = mc.models.quantization.resnet18(quantize=True, calibration_data=calibration).eval()
    for name in ("zip.pth", "legacy.pth"):
        loaded = mc.load_weights(tmp_path / name)
        assert list(loaded) == list(state), name
        assert loaded["fc._packed_params.dtype"] is mc.qint8
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and value.is_quantized:
                assert_same_qtensor(loaded[key], value, key)
        weight, bias = loaded["fc._packed_params._packed_params"]
        assert_same_qtensor(weight, state["fc._packed_params._packed_params"][0])
        numpy.testing.assert_array_equal(bias.numpy(), state["fc._packed_params._packed_params"][1].detach())
        assert mc_model.load_state_dict(loaded) is not None

        x = rng.standard_normal((2, 3, 32, 32)).astype(numpy.float32)
        with torch.no_grad():
            expected = tv_model(torch.from_numpy(x)).numpy()
        with mc.no_grad():
            actual = mc_model(mc.tensor(x)).numpy()
        if torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
            numpy.testing.assert_array_equal(actual, expected, err_msg=name)
        else:
            # torch's quantized add on AVX2 kernels rounds a few sums to the
            # other neighbour (here first at layer3.0's add_relu, whose two
            # inputs were still equal to minicnn's, in 1 element of 2048, by
            # one step); its AVX-512 kernels round as minicnn does (bit for
            # bit above). From there the differences spread: ~20% of the
            # logits one or two steps off.
            step = float(tv_model.fc.scale)
            assert numpy.abs(actual - expected).max() <= 3 * step * (1 + 1e-6), name
            assert numpy.mean(actual == expected) > 0.7, name


def small_qtensors():
    """Quantized tensors of each dtype and scheme, one of them a strided
    view and two sharing a storage."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, 3, generator=g)
    per_channel = torch.quantize_per_channel(x, torch.rand(6, generator=g, dtype=torch.float64) + 0.01,
                                             torch.randint(-5, 5, (6,), generator=g), 1, torch.qint8)
    activations = torch.quantize_per_tensor(x.relu(), 0.03, 7, torch.quint8)
    return collections.OrderedDict([
        ("quint8", activations),
        ("qint8", torch.quantize_per_tensor(x, 0.02, -3, torch.qint8)),
        ("qint32", torch.quantize_per_tensor(x * 1e3, 1e-4, 12345, torch.qint32)),
        ("per_channel", per_channel),
        ("per_channel_axis0", torch.quantize_per_channel(
            x, torch.full((4,), 0.05, dtype=torch.float64), torch.zeros(4, dtype=torch.long), 0, torch.qint8)),
        ("transposed", activations.transpose(0, 2)),
        ("dtype", torch.quint8),
    ])


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_quantized_tensors_of_every_dtype_and_scheme(tmp_path, zip_format):
    path = tmp_path / "q.pth"
    state = small_qtensors()
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    loaded = mc.load_weights(path)
    assert list(loaded) == list(state)
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            assert_same_qtensor(loaded[key], value, key)
            numpy.testing.assert_array_equal(loaded[key].dequantize().numpy(), value.dequantize().numpy())
    assert loaded["dtype"] is mc.quint8
    assert loaded["transposed"].shape == (3, 6, 4)


# -- crafted files -------------------------------------------------------------
class Call:
    """What the crafting pickler writes as ``func(*args)`` (a GLOBAL for
    ``func``, then REDUCE), then BUILD with ``state`` if it is given."""

    def __init__(self, func, *args, state=None):
        self.reduce = (func, args) if state is None else (func, args, state)


class StorageRef:
    """A storage as torch's persistent id names it."""

    def __init__(self, storage_class, key, numel):
        self.pid = ("storage", storage_class, key, "cpu", numel)


class _CraftingPickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, StorageRef) else None

    def reducer_override(self, obj):
        return obj.reduce if isinstance(obj, Call) else NotImplemented


def torch_zip(path, obj, storages):
    """Write ``obj`` (with Calls and StorageRefs) and the bytes of
    ``storages`` (key -> bytes) as torch's zip layout, protocol 2."""
    buffer = io.BytesIO()
    _CraftingPickler(buffer, protocol=2).dump(obj)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")
        for key, data in storages.items():
            archive.writestr(f"archive/data/{key}", data)
    return path


INTEGERS = numpy.arange(-6, 6, dtype=numpy.int8)  # 12 qint8 values, stored as "0"
SCALES = numpy.array([0.5, 0.25, 0.125], numpy.float64)  # stored as "1"
ZERO_POINTS = numpy.array([0, 1, -2], numpy.int64)  # stored as "2"


def plain(storage_class, key, numel, size):
    return Call(torch._utils._rebuild_tensor_v2, StorageRef(storage_class, key, numel), 0, size, (1,), False,
                collections.OrderedDict())


def qtensor(qparams, size=(3, 4), stride=(4, 1), offset=0, storage=None, state=None):
    """A crafted ``_rebuild_qtensor`` of INTEGERS (qint8) with ``qparams``."""
    storage = storage or StorageRef(torch.QInt8Storage, "0", INTEGERS.size)
    return Call(torch._utils._rebuild_qtensor, storage, offset, size, stride, qparams, False,
                collections.OrderedDict(), state=state)


def per_channel(scales=None, zero_points=None, axis=0):
    scales = plain(torch.DoubleStorage, "1", 3, (3,)) if scales is None else scales
    zero_points = plain(torch.LongStorage, "2", 3, (3,)) if zero_points is None else zero_points
    return (torch.per_channel_affine, scales, zero_points, axis)


def crafted(tmp_path, tensor):
    """A state dict ``{"w": tensor}`` with INTEGERS, SCALES, ZERO_POINTS as
    storages "0", "1", "2"."""
    return torch_zip(tmp_path / "crafted.pth", collections.OrderedDict([("w", tensor)]),
                     {"0": INTEGERS.tobytes(), "1": SCALES.tobytes(), "2": ZERO_POINTS.tobytes()})


@pytest.mark.parametrize("qparams", [(torch.per_tensor_affine, 0.5, 3), per_channel(),
                                     per_channel(SCALES.tolist(), ZERO_POINTS.tolist())],
                         ids=["per_tensor", "per_channel", "per_channel_lists"])
def test_crafted_files_load_as_torch_loads_them(tmp_path, qparams):
    # The crafting pickler writes what torch writes: torch's loader (its
    # safe weights_only mode) reads the same tensor from the same file.
    path = crafted(tmp_path, qtensor(qparams))
    assert_same_qtensor(mc.load_weights(path)["w"], torch.load(path, weights_only=True)["w"])


@pytest.mark.parametrize("size, stride, offset", [((3, 5), (4, 1), 0), ((3, 4), (4, 1), 1), ((13,), (1,), 0),
                                                  ((2, 2), (100, 1), 0)])
def test_a_view_past_its_storage_is_refused(tmp_path, size, stride, offset):
    path = crafted(tmp_path, qtensor((torch.per_tensor_affine, 0.5, 3), size, stride, offset))
    with pytest.raises(ValueError, match=r"crafted\.pth.*reads element \d+ of storage '0', which holds 12"):
        mc.load_weights(path)


@pytest.mark.parametrize("scale", [0.0, -0.5, float("nan"), float("inf")])
def test_a_scale_that_is_not_positive_and_finite_is_refused(tmp_path, scale):
    path = crafted(tmp_path, qtensor((torch.per_tensor_affine, scale, 3)))
    with pytest.raises(ValueError, match=r"crafted\.pth.*quantized tensor 'w': scale must be positive and finite"):
        mc.load_weights(path)
    path = crafted(tmp_path, qtensor(per_channel([0.5, scale, 0.1], [0, 0, 0])))
    with pytest.raises(ValueError, match=r"crafted\.pth.*quantized tensor 'w': scale must be positive and finite"):
        mc.load_weights(path)


@pytest.mark.parametrize("zero_point", [128, -129, 2 ** 70])
def test_a_zero_point_out_of_range_is_refused(tmp_path, zero_point):
    path = crafted(tmp_path, qtensor((torch.per_tensor_affine, 0.5, zero_point)))
    with pytest.raises(ValueError, match=r"'w': zero_point must lie in \[-128, 127\] for qint8"):
        mc.load_weights(path)
    if zero_point < 2 ** 63:
        path = crafted(tmp_path, qtensor(per_channel([0.5, 0.5, 0.5], [0, zero_point, 0])))
        with pytest.raises(ValueError, match=r"'w': zero_point must lie in \[-128, 127\] for qint8, got \[" +
                           str(zero_point)):
            mc.load_weights(path)


def test_quint8_zero_points_are_checked_against_quint8(tmp_path):
    storage = StorageRef(torch.QUInt8Storage, "0", INTEGERS.size)
    path = crafted(tmp_path, qtensor((torch.per_tensor_affine, 0.5, -1), storage=storage))
    with pytest.raises(ValueError, match=r"zero_point must lie in \[0, 255\] for quint8, got \[-1\]"):
        mc.load_weights(path)


@pytest.mark.parametrize("qparams, message", [
    (per_channel(axis=2), r"has axis 2, not one of its dims"),
    (per_channel(axis=True), r"has axis True, not one of its dims"),
    (per_channel(axis=1), r"needs 4 scales \(the size of axis 1\), got size \(3,\)"),
    (per_channel([0.5, 0.5], [0, 0, 0]), r"needs 3 scales \(the size of axis 0\), got 2 values"),
    (per_channel(zero_points=[0, 0]), r"needs 3 zero_points"),
    (per_channel(zero_points=[0.0, 0.0, 0.0]), r"zero_points must be ints"),
    (per_channel(zero_points=plain(torch.DoubleStorage, "1", 3, (3,))),
     r"zero_points must be a tensor of integers, got float64"),
    (per_channel(scales="0.5"), r"scales must be a tensor or a list"),
    ((torch.per_tensor_affine, 0.5), r"per_tensor_affine expects \(qscheme, scale, zero_point\)"),
    ((torch.per_tensor_affine, "0.5", 0), r"scale must be a float"),
    ((torch.per_tensor_affine, 0.5, 1.0), r"zero_point must be an int"),
    ((0.5, 3), r"expects \(qscheme, \.\.\.\) quantizer parameters"),
])
def test_malformed_quantizer_parameters_are_refused(tmp_path, qparams, message):
    with pytest.raises(ValueError, match=r"crafted\.pth.*" + message):
        mc.load_weights(crafted(tmp_path, qtensor(qparams)))


def test_quantized_storages_and_rebuild_functions_only_go_together(tmp_path):
    path = crafted(tmp_path, plain(torch.QInt8Storage, "0", 12, (12,)))
    with pytest.raises(ValueError, match=r"a storage of qint8 holds a quantized tensor, which only _rebuild_qtensor"):
        mc.load_weights(path)
    path = crafted(tmp_path, qtensor((torch.per_tensor_affine, 0.5, 0), storage=StorageRef(torch.ByteStorage, "0", 12)))
    with pytest.raises(ValueError, match=r"_rebuild_qtensor expects a storage of quint8, qint8 or qint32, "
                                         r"got 'uint8'"):
        mc.load_weights(path)
    path = crafted(tmp_path, Call(torch._utils._rebuild_tensor_v3, StorageRef(torch.UntypedStorage, "0", 12), 0,
                                  (12,), (1,), False, collections.OrderedDict(), torch.qint8))
    with pytest.raises(ValueError, match=r"_rebuild_tensor_v3 expects a torch dtype, got torch\.qint8"):
        mc.load_weights(path)
    path = crafted(tmp_path, Call(torch._utils._rebuild_parameter, qtensor((torch.per_tensor_affine, 0.5, 0)), False,
                                  collections.OrderedDict()))
    with pytest.raises(ValueError, match=r"_rebuild_parameter expects a tensor, got _PendingQTensor"):
        mc.load_weights(path)


def test_schemes_and_storages_minicnn_lacks_are_refused(tmp_path):
    # Not in the allowlist: refused before anything is imported.
    path = crafted(tmp_path, qtensor((torch.per_tensor_symmetric, 0.5, 0)))
    with pytest.raises(UnsafeWeightsError, match=r"crafted\.pth.*refused to import torch\.per_tensor_symmetric"):
        mc.load_weights(path)
    # Known to torch, but not representable in minicnn: said so.
    path = crafted(tmp_path, qtensor((torch.per_channel_affine_float_qparams, [0.5] * 3, [0.0] * 3, 0)))
    with pytest.raises(UnsupportedDtypeError, match=r"crafted\.pth.*per_channel_affine_float_qparams"):
        mc.load_weights(path)
    path = crafted(tmp_path, qtensor((torch.per_tensor_affine, 0.5, 0),
                                     storage=StorageRef(torch.QUInt4x2Storage, "0", 12)))
    with pytest.raises(UnsupportedDtypeError, match=r"torch\.QUInt4x2Storage, which minicnn cannot represent"):
        mc.load_weights(path)


def test_code_in_quantizer_parameters_never_runs(tmp_path):
    marker = tmp_path / "ran"
    path = crafted(tmp_path, qtensor((torch.per_tensor_affine, Call(os.system, f"touch {marker}"), 0)))
    with pytest.raises(UnsafeWeightsError, match=r"refused to import posix\.system"):
        mc.load_weights(path)
    assert not marker.exists()


def test_build_on_a_quantized_tensor_is_refused(tmp_path):
    path = crafted(tmp_path, qtensor((torch.per_tensor_affine, 0.5, 0), state={"_scale": 0.0}))
    with pytest.raises(UnsafeWeightsError, match=r"tries to modify a quantized tensor"):
        mc.load_weights(path)
    path = crafted(tmp_path, Call(torch._utils._rebuild_qtensor, StorageRef(torch.QInt8Storage, "0", 12), 0, (12,),
                                  (1,), (Call(getattr, "s", "upper"), 0.5, 0), False,
                                  collections.OrderedDict()))
    with pytest.raises(UnsafeWeightsError, match=r"import __builtin__\.getattr \(Python 3: builtins\.getattr\)"):
        mc.load_weights(path)


def test_a_stride_0_quantized_tensor_cannot_allocate_past_the_budget(tmp_path, bounded):
    # A few hundred bytes asking for a 1 GiB quantized tensor from one
    # byte: its contiguous copy is charged to the load budget first.
    path = crafted(tmp_path, qtensor((torch.per_tensor_affine, 0.5, 0), size=(1 << 30,), stride=(0,)))
    report = bounded(path, max_extra_bytes=64 << 20)
    assert report["outcome"] == "ValueError", report
    assert "contiguous copy of a quantized tensor needs 1073741824 bytes" in report["error"]
    assert "MAX_EXTRA_BYTES" in report["error"]
