"""mc.load_weights / mc.save_weights: torch files read without torch (and
without running anything they ask for), safetensors and npz files, and
clear errors for damaged or foreign files."""
import builtins
import collections
import io
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import textwrap
import zipfile

import numpy
import pytest
import safetensors.numpy
from hypothesis import given, settings, strategies as st

import minicnn as mc
from minicnn import serialization, torch_pickle

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

MAGIC = torch_pickle.MAGIC_NUMBER


# -- helpers -------------------------------------------------------------
def assert_same_values(loaded, expected, writable=True):
    """A loaded Tensor equals a torch tensor: same dtype (bfloat16 as
    float32), shape and values; its memory is writable (unless the view
    repeats elements: ``writable=False``)."""
    if expected.dtype == torch.bfloat16:
        expected = expected.float()
    want = expected.numpy()
    assert isinstance(loaded, mc.Tensor)
    assert loaded.dtype == want.dtype and loaded.shape == want.shape
    numpy.testing.assert_array_equal(loaded.data, want)
    assert loaded.data.flags.writeable == writable


def torchvision_resnet18():
    """A resnet18 whose BatchNorm statistics and affine parameters are not
    the trivial 0/1 of a fresh model, so that loading them matters."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.num_batches_tracked.fill_(7)
    return model.eval()


class Reduce:
    """Pickles as ``func(*args)``: what a malicious file does."""

    def __init__(self, func, *args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


class Storage:
    """Pickles as the persistent id ``pid`` (see ``TorchLikePickler``)."""

    def __init__(self, *pid):
        self.pid = pid


class TorchLikePickler(pickle.Pickler):
    """Writes storages as persistent ids, as torch.save does."""

    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, Storage) else None


def dumps(obj, protocol=2):
    buffer = io.BytesIO()
    TorchLikePickler(buffer, protocol=protocol).dump(obj)
    return buffer.getvalue()


def torch_zip(path, data_pkl, records=None, byteorder=b"little"):
    """A file laid out as torch.save's zip format, with our own pickle."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/byteorder", byteorder)
        for key, data in (records or {}).items():
            z.writestr(f"archive/data/{key}", data)
        z.writestr("archive/version", b"3\n")
    return path


def torch_legacy(path, obj, storages, little_endian=True):
    """A file laid out as torch's legacy format: magic, version, sys_info,
    the object, the storage keys, then each storage's count and bytes.
    ``storages``: key -> (numel, bytes)."""
    order = "<" if little_endian else ">"
    parts = [dumps(MAGIC), dumps(1001), dumps({"protocol_version": 1001, "little_endian": little_endian}),
             dumps(obj), dumps(list(storages))]
    for numel, data in storages.values():
        parts += [struct.pack(order + "q", numel), data]
    path.write_bytes(b"".join(parts))
    return path


def rebuild(storage, offset, size, stride):
    return Reduce(torch._utils._rebuild_tensor_v2, storage, offset, size, stride, False, collections.OrderedDict())


# -- (1) a torchvision model, saved by torch, run without torch -------------
def test_torchvision_resnet18_loads_without_torch_and_gives_the_same_logits(tmp_path):
    model = torchvision_resnet18()
    torch.save(model.state_dict(), tmp_path / "resnet18.pth")
    x = numpy.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(numpy.float32)
    numpy.save(tmp_path / "x.npy", x)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()

    # A fresh interpreter in which `import torch` fails: the loader must not need it.
    code = textwrap.dedent("""
        import sys
        sys.modules["torch"] = None
        import numpy
        import minicnn as mc
        state_dict = mc.load_weights(sys.argv[1] + "/resnet18.pth")
        model = mc.models.resnet18(num_classes=10)
        model.load_state_dict(state_dict)
        model.eval()
        with mc.no_grad():
            logits = model(mc.tensor(numpy.load(sys.argv[1] + "/x.npy")))
        numpy.save(sys.argv[1] + "/logits.npy", logits.numpy())
        loaded = [m for m, v in sys.modules.items() if v is not None and m.split(".")[0] == "torch"]
        assert not loaded, loaded
        print(type(state_dict).__name__, state_dict._metadata[""])
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])))
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, env=env,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(mc.__file__))))
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[0] == "OrderedDict"  # what torch.load gives, _metadata included
    logits = numpy.load(tmp_path / "logits.npy")
    scale = numpy.abs(expected).max()
    numpy.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * scale)


def test_a_state_dict_loads_value_for_value(tmp_path):
    state_dict = torchvision_resnet18().state_dict()
    torch.save(state_dict, tmp_path / "r.pth")
    loaded = mc.load_weights(tmp_path / "r.pth")
    assert isinstance(loaded, collections.OrderedDict) and list(loaded) == list(state_dict)
    for key, value in state_dict.items():
        assert_same_values(loaded[key], value)
    assert loaded["bn1.num_batches_tracked"].dtype == mc.int64 and loaded["bn1.num_batches_tracked"].item() == 7


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_checkpoints_keep_their_nesting(tmp_path, zip_format):
    weight = torch.randn(3, 4)
    param = torch.nn.Parameter(torch.randn(2))
    checkpoint = {"model": collections.OrderedDict(w=weight), "epoch": 3, "history": [0.5, (weight, "x")],
                  "param": param, "size": torch.Size([2, 3]), "twice": [weight, weight], "dtype": torch.float16}
    torch.save(checkpoint, tmp_path / "c.pt", _use_new_zipfile_serialization=zip_format)
    loaded = mc.load_weights(tmp_path / "c.pt")
    assert loaded["epoch"] == 3 and loaded["history"][0] == 0.5 and loaded["history"][1][1] == "x"
    assert_same_values(loaded["model"]["w"], weight)
    assert_same_values(loaded["history"][1][0], weight)
    assert_same_values(loaded["param"], param.detach())
    assert loaded["size"] == (2, 3) and loaded["dtype"] == mc.float16
    assert loaded["twice"][0] is loaded["twice"][1]  # one tensor pickled twice stays one Tensor


# -- (2) files that try to run code ------------------------------------------
def marker_command(marker):
    return f"touch {marker}"


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "the file's code ran"


PAYLOADS = {
    "posix.system": lambda m: Reduce(os.system, marker_command(m)),
    "exec": lambda m: Reduce(builtins.exec, f"open({str(m)!r}, 'w').close()"),
    "eval": lambda m: Reduce(builtins.eval, f"open({str(m)!r}, 'w').close()"),
    "subprocess.Popen": lambda m: Reduce(subprocess.Popen, ["touch", str(m)]),
}


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_torch_save_of_a_malicious_object_is_refused_before_it_runs(tmp_path, marker, name):
    # A real torch file: a genuine tensor first, the payload after it.
    torch.save({"weight": torch.ones(2), "evil": PAYLOADS[name](marker)}, tmp_path / "evil.pth")
    with pytest.raises(mc.UnsafeWeightsError, match=name) as info:
        mc.load_weights(tmp_path / "evil.pth")
    assert "evil.pth" in str(info.value) and "Nothing from the file was run" in str(info.value)


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("name", list(PAYLOADS))
def test_malicious_pickles_are_refused_in_every_layout(tmp_path, marker, name, protocol):
    payload = PAYLOADS[name](marker)
    data_pkl = pickle.dumps({"w": payload}, protocol=protocol)
    files = [torch_zip(tmp_path / "evil_zip.pt", data_pkl)]
    if protocol >= 2:  # a raw pickle file, and the legacy layout, start with the PROTO opcode
        (tmp_path / "evil_raw.pkl").write_bytes(data_pkl)
        files.append(tmp_path / "evil_raw.pkl")
        files.append(torch_legacy(tmp_path / "evil_legacy.pt", {"w": payload}, {}))
    for path in files:
        with pytest.raises(mc.UnsafeWeightsError, match=name):
            mc.load_weights(path)


def test_hand_written_os_system_pickle_is_refused(tmp_path, marker):
    data_pkl = b"cos\nsystem\n(S'" + marker_command(marker).encode() + b"'\ntR."
    with pytest.raises(mc.UnsafeWeightsError, match=r"os\.system"):
        mc.load_weights(torch_zip(tmp_path / "evil.pt", data_pkl))


def test_the_module_a_file_names_is_never_imported(tmp_path, monkeypatch):
    (tmp_path / "runs_on_import.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    data_pkl = b"\x80\x02cruns_on_import\nanything\n)R."
    with pytest.raises(mc.UnsafeWeightsError, match=r"runs_on_import\.anything"):
        mc.load_weights(torch_zip(tmp_path / "w.pt", data_pkl))
    assert "runs_on_import" not in sys.modules and not (tmp_path / "imported").exists()


@settings(max_examples=60, deadline=None)
@given(module=st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,15}", fullmatch=True),
       name=st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True))
def test_any_global_outside_the_allowlist_is_refused(module, name):
    if (module, name) in torch_pickle.ALLOWED_GLOBALS:
        return
    data_pkl = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b")R."
    with tempfile.TemporaryDirectory() as tmp:
        path = torch_zip(os.path.join(tmp, "w.pt"), data_pkl)
        with pytest.raises(ValueError, match=f"{module}.{name}".replace(".", r"\.")):
            mc.load_weights(path)


def test_the_allowlist_holds_only_inert_tokens_containers_and_our_rebuilders():
    for (module, name), obj in torch_pickle.ALLOWED_GLOBALS.items():
        assert module in ("collections", "torch", "torch.cuda", "torch._utils", "torch.storage"), module
        if isinstance(obj, torch_pickle._DtypeToken):
            assert not callable(obj)
        else:
            assert obj is collections.OrderedDict or obj.__module__ == "minicnn.torch_pickle", (module, name)


def test_a_whole_pickled_model_is_refused_with_a_hint(tmp_path):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "model.pt")
    with pytest.raises(mc.UnsafeWeightsError, match=r"torch\.nn\.modules\.linear\.Linear.*state_dict\(\)"):
        mc.load_weights(tmp_path / "model.pt")


def test_a_pickle_cannot_modify_a_tensor_or_read_past_its_storage(tmp_path):
    data = numpy.arange(4, dtype=numpy.float32).tobytes()
    storage = Storage("storage", torch.FloatStorage, "0", "cpu", 4)
    # BUILD on a rebuilt tensor (e.g. to change its size after the checks).
    tampered = Reduce(torch._utils._rebuild_tensor_v2, storage, 0, (4,), (1,), False, collections.OrderedDict(),
                      state={"size": (10 ** 9,)})
    with pytest.raises(ValueError, match="modify a tensor"):
        mc.load_weights(torch_zip(tmp_path / "a.pt", dumps({"w": tampered}), {"0": data}))
    # Views that reach past the storage's end: as_strided would read foreign memory.
    for offset, size, stride in [(1, (4,), (1,)), (0, (2, 3), (2, 1)), (0, (5,), (1,)), (4, (1,), (1,))]:
        path = torch_zip(tmp_path / "b.pt", dumps({"w": rebuild(storage, offset, size, stride)}), {"0": data})
        with pytest.raises(ValueError, match="reads element"):
            mc.load_weights(path)
    # A storage record shorter than the pickle says.
    path = torch_zip(tmp_path / "c.pt", dumps({"w": rebuild(storage, 0, (4,), (1,))}), {"0": data[:8]})
    with pytest.raises(ValueError, match="holds 8 bytes, 16 expected"):
        mc.load_weights(path)


# -- (3) strided and shared storages, every dtype ---------------------------
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16,
          torch.int8, torch.uint8, torch.bool, torch.uint16, torch.uint32, torch.uint64]


def make_base(n, dtype):
    values = torch.arange(n, dtype=torch.int64) * 37 % 101 - 50
    if dtype == torch.bool:
        return values > 0
    if dtype in (torch.uint8, torch.uint16, torch.uint32, torch.uint64):
        return (values + 50).to(dtype)
    if dtype.is_floating_point:
        return values.to(torch.float64).div(7).to(dtype)
    return values.to(dtype)


@st.composite
def views(draw):
    """A random in-bounds (size, stride, offset) over a storage of n elements."""
    ndim = draw(st.integers(0, 3))
    size = tuple(draw(st.lists(st.integers(0, 4), min_size=ndim, max_size=ndim)))
    stride = tuple(draw(st.lists(st.integers(0, 5), min_size=ndim, max_size=ndim)))
    offset = draw(st.integers(0, 6))
    span = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1 if all(size) else offset + 1
    n = span + draw(st.integers(0, 3))
    return size, stride, offset, n


@settings(max_examples=60, deadline=None)
@given(view=views(), dtype=st.sampled_from(DTYPES), zip_format=st.booleans())
def test_strided_views_of_a_shared_storage_round_trip(view, dtype, zip_format):
    size, stride, offset, n = view
    base = make_base(n, dtype)
    tensor = torch.as_strided(base, size, stride, offset)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "w.pt")
        # Two tensors on one storage: torch writes the storage once.
        torch.save({"view": tensor, "base": base}, path, _use_new_zipfile_serialization=zip_format)
        loaded = mc.load_weights(path)
    assert_same_values(loaded["base"], base)
    # A view that reaches an element twice is read-only (as broadcast_to); a
    # contiguous one is writable. Both view the storage, as in torch.
    reached = torch.as_strided(torch.arange(n), size, stride, offset).flatten().tolist()
    if len(set(reached)) < len(reached):
        assert not loaded["view"].data.flags.writeable
    elif tensor.is_contiguous():
        assert loaded["view"].data.flags.writeable
    assert_same_values(loaded["view"], tensor.contiguous(), writable=loaded["view"].data.flags.writeable)
    assert numpy.shares_memory(loaded["view"].data, loaded["base"].data) == (tensor.numel() > 0)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_dtype_loads_as_itself(tmp_path, dtype):
    tensor = make_base(24, dtype).reshape(2, 3, 4).permute(2, 0, 1)
    torch.save({"t": tensor}, tmp_path / "t.pt")
    assert_same_values(mc.load_weights(tmp_path / "t.pt")["t"], tensor.contiguous())


def test_bfloat16_loads_as_float32_exactly(tmp_path):
    tensor = torch.tensor([1.0, -2.5, 3.140625, 1e30, -1e-30, float("inf")], dtype=torch.bfloat16)
    torch.save({"t": tensor}, tmp_path / "t.pt")
    loaded = mc.load_weights(tmp_path / "t.pt")["t"]
    assert loaded.dtype == mc.float32
    numpy.testing.assert_array_equal(loaded.data, tensor.float().numpy())


@pytest.mark.parametrize("dtype", [torch.complex64, torch.float8_e4m3fn], ids=str)
def test_unsupported_dtypes_are_named(tmp_path, dtype):
    torch.save({"t": torch.zeros(2).to(dtype)}, tmp_path / "t.pt")
    with pytest.raises(ValueError, match="minicnn cannot represent"):
        mc.load_weights(tmp_path / "t.pt")


def test_big_endian_files_are_byte_swapped(tmp_path):
    values = numpy.array([1.5, -2.0, 3.25], dtype=numpy.float32)
    storage = Storage("storage", torch.FloatStorage, "0", "cpu", 3)
    obj = {"w": rebuild(storage, 0, (3,), (1,))}
    path = torch_zip(tmp_path / "be.pt", dumps(obj), {"0": values.astype(">f4").tobytes()}, byteorder=b"big")
    loaded = mc.load_weights(path)["w"]
    assert loaded.dtype == mc.float32 and loaded.data.dtype.isnative
    numpy.testing.assert_array_equal(loaded.data, values)
    path = torch_legacy(tmp_path / "be_legacy.pt", obj, {"0": (3, values.astype(">f4").tobytes())},
                        little_endian=False)
    numpy.testing.assert_array_equal(mc.load_weights(path)["w"].data, values)


def test_legacy_storage_views_and_v1_rebuild(tmp_path):
    # torch < 0.4 pickled storage views ("storage", type, root, location, numel, (view, offset, size))
    # and tensors as _rebuild_tensor(storage, offset, size, stride).
    values = numpy.arange(10, dtype=numpy.float64)
    view = Storage("storage", torch.DoubleStorage, "root", "cuda:0", 10, ("v", 4, 5))
    obj = collections.OrderedDict(a=Reduce(torch._utils._rebuild_tensor, view, 1, (2, 2), (1, 2)))
    path = torch_legacy(tmp_path / "old.pt", obj, {"root": (10, values.tobytes())})
    numpy.testing.assert_array_equal(mc.load_weights(path)["a"].data, values[4:9][1:].reshape(2, 2, order="F"))


# -- (4) damaged and foreign files, and state dicts that do not fit ----------
def small_files(tmp_path):
    """One small file per format."""
    state_dict = collections.OrderedDict(w=torch.randn(3, 2), n=torch.tensor(5))
    torch.save(state_dict, tmp_path / "zip.pt")
    torch.save(state_dict, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    mc.save_weights(state_dict, tmp_path / "w.safetensors")
    mc.save_weights(state_dict, tmp_path / "w.npz")
    return [tmp_path / name for name in ("zip.pt", "legacy.pt", "w.safetensors", "w.npz")]


def test_every_truncation_is_a_clear_error(tmp_path):
    for path in small_files(tmp_path):
        payload = path.read_bytes()
        mc.load_weights(path)  # whole: fine
        cut = tmp_path / ("cut_" + path.name)
        for length in range(len(payload)):
            cut.write_bytes(payload[:length])
            with pytest.raises(ValueError, match="cut_"):
                mc.load_weights(cut)


def test_a_forged_storage_size_is_refused_before_anything_is_allocated(tmp_path):
    huge = 2 ** 60
    storage = Storage("storage", torch.FloatStorage, "0", "cpu", huge)
    path = torch_legacy(tmp_path / "forged.pt", {"w": rebuild(storage, 0, (4,), (1,))}, {"0": (huge, b"1234")})
    with pytest.raises(ValueError, match=f"forged.pt.*truncated.*needs {4 * huge} bytes"):
        mc.load_weights(path)
    path = torch_zip(tmp_path / "forged.zip", dumps({"w": rebuild(storage, 0, (4,), (1,))}), {"0": b"1234"})
    with pytest.raises(ValueError, match="forged.zip.*holds 4 bytes"):
        mc.load_weights(path)
    # A view of 10^12 elements over a 1-element storage (stride 0) stays a
    # read-only view of its 4 bytes, as in torch: nothing is expanded.
    storage = Storage("storage", torch.FloatStorage, "0", "cpu", 1)
    path = torch_zip(tmp_path / "wide.pt", dumps({"w": rebuild(storage, 0, (10 ** 6, 10 ** 6), (0, 0))}),
                     {"0": struct.pack("<f", 2.5)})
    wide = mc.load_weights(path)["w"].data
    assert wide.shape == (10 ** 6, 10 ** 6) and wide.strides == (0, 0) and not wide.flags.writeable
    assert wide[123456, 654321] == 2.5


def test_a_corrupted_storage_is_caught_by_the_zip_checksum(tmp_path):
    path = small_files(tmp_path)[0]
    payload = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("zip/data/0")
    name_length, extra_length = struct.unpack("<HH", payload[info.header_offset + 26:info.header_offset + 30])
    payload[info.header_offset + 30 + name_length + extra_length + 1] ^= 0xFF  # a byte of the storage
    path.write_bytes(bytes(payload))
    with pytest.raises(ValueError, match="zip.pt.*CRC"):
        mc.load_weights(path)


@pytest.mark.parametrize("content", [b"", b"hello, world\n" * 10, numpy.arange(3).tobytes(),
                                     b"\x93NUMPY\x01\x00", b"{\"not\": \"weights\"}"])
def test_foreign_files_are_refused(tmp_path, content):
    (tmp_path / "foreign.bin").write_bytes(content)
    with pytest.raises(ValueError, match="foreign.bin"):
        mc.load_weights(tmp_path / "foreign.bin")


def test_other_pickles_and_zips_are_refused(tmp_path):
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(ValueError, match="not one written by torch.save"):
        mc.load_weights(tmp_path / "list.pkl")
    with zipfile.ZipFile(tmp_path / "docs.zip", "w") as z:
        z.writestr("readme.txt", "hi")
    with pytest.raises(ValueError, match="docs.zip.*not one written by torch.save"):
        mc.load_weights(tmp_path / "docs.zip")
    numpy.savez(tmp_path / "objects.npz", a=numpy.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="objects.npz.*'a'"):
        mc.load_weights(tmp_path / "objects.npz")


def test_state_dicts_that_do_not_fit_name_the_keys_and_shapes(tmp_path):
    torch.save(torchvision_resnet18().state_dict(), tmp_path / "r.pth")
    model = mc.models.resnet18(num_classes=10)
    state_dict = mc.load_weights(tmp_path / "r.pth")
    del state_dict["layer1.0.bn1.running_var"]
    state_dict["fc.weight"] = mc.zeros(1000, 512)
    state_dict["head.weight"] = mc.zeros(3)
    with pytest.raises(ValueError) as info:
        model.load_state_dict(state_dict)
    message = str(info.value)
    assert '"layer1.0.bn1.running_var"' in message and "Missing key" in message
    assert '"head.weight"' in message and "Unexpected key" in message
    assert "fc.weight" in message and "(1000, 512)" in message and "(10, 512)" in message
    with pytest.raises(ValueError, match=r"resnet18: minicnn downloads nothing.*mc\.load_weights"):
        mc.models.resnet18(weights="IMAGENET1K_V1")


# -- (5) saving ----------------------------------------------------------------
def sample_state_dict(rng):
    return collections.OrderedDict([
        ("conv.weight", mc.tensor(rng.standard_normal((4, 3, 3, 3)).astype(numpy.float32))),
        ("bn.running_var", mc.tensor(rng.random(4))),                              # float64
        ("bn.num_batches_tracked", mc.tensor(7)),                                  # 0-d int64
        ("half", numpy.arange(6, dtype=numpy.float16).reshape(2, 3).T),            # not contiguous
        ("mask", numpy.array([True, False])),
        ("bytes", numpy.arange(5, dtype=numpy.uint8)),
        ("empty", numpy.zeros((0, 3), dtype=numpy.float32)),
        ("file", numpy.ones(2, dtype=numpy.int32)),      # names numpy.savez would trip over
        ("allow_pickle", numpy.ones(1, dtype=numpy.int8)),
    ])


@pytest.mark.parametrize("extension", [".safetensors", ".npz"])
def test_save_weights_round_trip(tmp_path, rng, extension):
    state_dict = sample_state_dict(rng)
    path = tmp_path / ("w" + extension)
    mc.save_weights(state_dict, path)
    loaded = mc.load_weights(path)
    assert isinstance(loaded, collections.OrderedDict)
    assert sorted(loaded) == sorted(state_dict)
    for key, value in state_dict.items():
        want = value.numpy() if isinstance(value, mc.Tensor) else value
        assert loaded[key].dtype == want.dtype and loaded[key].shape == want.shape, key
        numpy.testing.assert_array_equal(loaded[key].data, want)
    # Other tools read the files without pickles.
    if extension == ".npz":
        with numpy.load(path, allow_pickle=False) as npz:
            numpy.testing.assert_array_equal(npz["half"], state_dict["half"])
    else:
        numpy.testing.assert_array_equal(safetensors.numpy.load_file(str(path))["half"], state_dict["half"])


@pytest.mark.parametrize("extension", [".safetensors", ".npz"])
def test_save_weights_takes_a_module_or_torch_tensors(tmp_path, extension):
    model = mc.models.lenet5()
    mc.save_weights(model, tmp_path / ("m" + extension))
    fresh = mc.models.lenet5()
    fresh.load_state_dict(mc.load_weights(tmp_path / ("m" + extension)))
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        numpy.testing.assert_array_equal(a.data, b.data, err_msg=name)
    torch_state_dict = torchvision_resnet18().state_dict()
    mc.save_weights(torch_state_dict, tmp_path / ("r" + extension))
    loaded = mc.load_weights(tmp_path / ("r" + extension))
    for key, value in torch_state_dict.items():
        assert_same_values(loaded[key], value)


@pytest.mark.parametrize("extension", [".safetensors", ".npz"])
def test_an_empty_state_dict_round_trips(tmp_path, extension):
    mc.save_weights({}, tmp_path / ("e" + extension))
    assert mc.load_weights(tmp_path / ("e" + extension)) == collections.OrderedDict()


def test_save_weights_errors_name_the_path_and_key(tmp_path):
    with pytest.raises(ValueError, match=r"w\.pth.*\.safetensors or \.npz"):
        mc.save_weights({"w": mc.zeros(2)}, tmp_path / "w.pth")
    with pytest.raises(TypeError, match="'nested'.*mc.save"):
        mc.save_weights({"nested": {"w": mc.zeros(2)}}, tmp_path / "w.npz")
    with pytest.raises(TypeError, match="'s'.*dtype"):
        mc.save_weights({"s": numpy.array(["a"])}, tmp_path / "w.npz")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("extension", [".safetensors", ".npz"])
def test_a_failed_save_leaves_the_previous_file_intact(tmp_path, monkeypatch, extension):
    path = tmp_path / ("w" + extension)
    mc.save_weights({"w": mc.ones(3)}, path)
    before = path.read_bytes()

    def write_half_then_crash(file, payload):
        file.write(payload[:len(payload) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(serialization, "_write_all", write_half_then_crash)
    with pytest.raises(OSError, match="disk full"):
        mc.save_weights({"w": mc.zeros(1000)}, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == [path.name]


# -- (6) safetensors files from other tools ----------------------------------
def test_safetensors_files_from_the_safetensors_library(tmp_path, rng):
    arrays = {"a": rng.standard_normal((3, 4)).astype(numpy.float32), "b": numpy.arange(5, dtype=numpy.int64),
              "c": numpy.array(True), "d": numpy.arange(4, dtype=numpy.uint16)}
    safetensors.numpy.save_file(arrays, str(tmp_path / "np.safetensors"))
    loaded = mc.load_weights(tmp_path / "np.safetensors")
    assert sorted(loaded) == sorted(arrays)
    for key, value in arrays.items():
        assert loaded[key].dtype == value.dtype
        numpy.testing.assert_array_equal(loaded[key].data, value)

    from safetensors.torch import save_file
    tensors = {"bf": torch.randn(4, 2).to(torch.bfloat16), "h": torch.randn(3).half()}
    save_file(tensors, str(tmp_path / "torch.safetensors"))
    loaded = mc.load_weights(tmp_path / "torch.safetensors")
    assert_same_values(loaded["bf"], tensors["bf"])
    assert_same_values(loaded["h"], tensors["h"])


def test_a_minicnn_checkpoint_loads_as_mc_load_reads_it(tmp_path):
    checkpoint = {"model": {"w": mc.ones(2)}, "epoch": 3}
    mc.save(checkpoint, tmp_path / "ckpt.safetensors")
    loaded = mc.load_weights(tmp_path / "ckpt.safetensors")
    assert loaded["epoch"] == 3 and loaded["model"]["w"].tolist() == [1.0, 1.0]
