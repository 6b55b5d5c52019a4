"""mc.save / mc.load: round trips, atomic replacement, and refusal of
truncated, tampered or foreign files without running anything."""
import builtins
import json
import os
import pickle
import struct

import numpy
import pytest
import safetensors.numpy

import minicnn as mc
from minicnn import serialization


def state_dict(rng):
    """What a model's state_dict looks like: dotted names to Tensors."""
    return {
        "features.0.weight": mc.tensor(rng.standard_normal((6, 1, 5, 5)).astype(numpy.float32)),
        "features.0.bias": mc.tensor(rng.standard_normal(6).astype(numpy.float32)),
        "bn.running_var": mc.tensor(rng.random(6)),
        "bn.num_batches_tracked": mc.tensor(7),
        "classifier.weight": mc.tensor(rng.standard_normal((10, 84)).astype(numpy.float32)),
    }


def assert_equal_trees(a, b):
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_equal_trees(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_equal_trees(x, y)
    elif isinstance(a, mc.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape
        numpy.testing.assert_array_equal(a.data, b.data)
    elif isinstance(a, numpy.ndarray):
        assert a.dtype == b.dtype
        numpy.testing.assert_array_equal(a, b)
    else:
        assert a == b or (a != a and b != b)  # NaN == NaN here


def test_state_dict_round_trip(tmp_path, rng):
    sd = state_dict(rng)
    mc.save(sd, tmp_path / "model.safetensors")
    loaded = mc.load(tmp_path / "model.safetensors")
    assert_equal_trees(sd, loaded)
    assert loaded["bn.running_var"].dtype == mc.float64
    assert loaded["bn.num_batches_tracked"].dtype == mc.int64
    loaded["features.0.bias"].data[0] = 1.0  # loaded arrays are writable


def test_checkpoint_round_trip(tmp_path, rng):
    params = [mc.randn(3, 4, requires_grad=True), mc.randn(4, requires_grad=True)]
    opt = mc.optim.Adam(params, lr=0.01, amsgrad=True)
    for p in params:
        p.grad = mc.ones(*p.shape)
    opt.step()
    checkpoint = {
        "model": state_dict(rng),
        "optimizer": opt.state_dict(),
        "epoch": 3,
        "best_accuracy": 0.985,
        "history": [0.5, 0.25, float("nan")],
        "rng": mc.random.get_rng_state(),       # 128-bit ints survive
        "args": {"model": "lenet5", "lr": 1e-3, "resume": None, "flags": (True, False)},
        "mask": numpy.array([[True, False]]),
        "empty": mc.zeros(0, 3),
        "transposed": numpy.arange(6.0).reshape(2, 3).T,            # not C-contiguous
        "scalar": numpy.array(2.5),                                 # 0-d stays 0-d
    }
    path = tmp_path / "ckpt.safetensors"
    mc.save(checkpoint, str(path))
    loaded = mc.load(str(path))
    assert_equal_trees(checkpoint, loaded)
    assert list(loaded["optimizer"]["state"]) == [0, 1]          # int keys stay ints
    assert loaded["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    fresh = mc.optim.Adam([mc.randn(3, 4, requires_grad=True), mc.randn(4, requires_grad=True)])
    fresh.load_state_dict(loaded["optimizer"])
    assert fresh.param_groups[0]["amsgrad"] is True
    # The arrays sit under readable dotted names in a standard safetensors file.
    names = set(safetensors.numpy.load_file(str(path)))
    assert {"model.features.0.weight", "optimizer.state.0.exp_avg", "mask"} <= names


def test_colliding_dotted_names_stay_apart(tmp_path):
    obj = {"a.b": mc.ones(1), "a": {"b": mc.zeros(1)}}
    mc.save(obj, tmp_path / "x")
    assert_equal_trees(obj, mc.load(tmp_path / "x"))


def test_plain_safetensors_file_loads_as_a_dict_of_tensors(tmp_path):
    safetensors.numpy.save_file({"w": numpy.arange(6.0).reshape(2, 3)}, str(tmp_path / "plain.safetensors"))
    loaded = mc.load(tmp_path / "plain.safetensors")
    assert list(loaded) == ["w"] and isinstance(loaded["w"], mc.Tensor)
    numpy.testing.assert_array_equal(loaded["w"].data, numpy.arange(6.0).reshape(2, 3))


@pytest.mark.parametrize("obj, match", [
    ({"f": print}, r"builtin_function_or_method at obj\['f'\]"),
    ({"s": {1, 2}}, "set"),
    ({1.5: mc.ones(1)}, "keys must be str or int"),
    ({"x": numpy.array(["a"])}, "dtype <U1"),
])
def test_unsupported_objects_are_refused(tmp_path, obj, match):
    with pytest.raises(TypeError, match=match):
        mc.save(obj, tmp_path / "bad")
    assert not os.listdir(tmp_path)


def test_bad_path_type():
    with pytest.raises(TypeError, match="file path"):
        mc.save({}, 3)
    with pytest.raises(TypeError, match="file path"):
        mc.load(None)


# -- atomic saving -----------------------------------------------------------
def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path, rng, monkeypatch):
    path = tmp_path / "ckpt.safetensors"
    mc.save({"epoch": 1, "w": mc.ones(1000)}, path)
    before = path.read_bytes()

    def write_half_then_crash(file, payload):
        file.write(payload[: len(payload) // 2])
        raise KeyboardInterrupt("killed midway")

    monkeypatch.setattr(serialization, "_write_all", write_half_then_crash)
    with pytest.raises(KeyboardInterrupt):
        mc.save({"epoch": 2, "w": mc.zeros(1000)}, path)
    assert path.read_bytes() == before
    assert mc.load(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["ckpt.safetensors"]  # no temporary file left behind


def test_a_save_that_fails_before_the_rename_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.safetensors"
    mc.save({"epoch": 1}, path)

    def no_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(serialization.os, "replace", no_replace)
    with pytest.raises(OSError, match="disk full"):
        mc.save({"epoch": 2}, path)
    monkeypatch.undo()
    assert mc.load(path) == {"epoch": 1}
    assert os.listdir(tmp_path) == ["ckpt.safetensors"]


def test_save_replaces_an_existing_file(tmp_path):
    path = tmp_path / "ckpt"
    mc.save({"epoch": 1}, path)
    mc.save({"epoch": 2}, path)
    assert mc.load(path) == {"epoch": 2}


# -- damaged and hostile files -------------------------------------------------
@pytest.fixture
def saved(tmp_path, rng):
    path = tmp_path / "ckpt.safetensors"
    mc.save({"model": state_dict(rng), "epoch": 3}, path)
    return path


def header_of(payload):
    (n,) = struct.unpack("<Q", payload[:8])
    return n, json.loads(payload[8:8 + n])


def rewrite_header(path, change):
    """Apply ``change`` to the parsed header and write the file back with
    the new header (what a tamperer with a text editor would do), as a
    checkpoint from before checksums (format minicnn.checkpoint/1, no
    record), so that the checks behind the checksums are what is tested
    (tests/files/test_checksums.py tests the checksums)."""
    payload = path.read_bytes()
    n, header = header_of(payload)
    header["__metadata__"]["format"] = "minicnn.checkpoint/1"
    del header["__metadata__"]["minicnn.sha256"]
    change(header)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + payload[8 + n:])


@pytest.mark.parametrize("keep", [0, 5, 8, 40, -10])
def test_a_truncated_file_is_refused(saved, keep):
    payload = saved.read_bytes()
    saved.write_bytes(payload[:keep] if keep >= 0 else payload[:keep])
    with pytest.raises(ValueError, match="truncated|not a valid safetensors"):
        mc.load(saved)


def test_a_header_that_is_not_json_is_refused(saved):
    payload = bytearray(saved.read_bytes())
    payload[8] = ord("#")
    saved.write_bytes(bytes(payload))
    with pytest.raises(ValueError, match="corrupted header"):
        mc.load(saved)


def test_a_header_with_bad_offsets_is_refused(saved):
    def change(header):
        header["model.features.0.bias"]["data_offsets"][1] += 4
    rewrite_header(saved, change)
    with pytest.raises(ValueError, match="not a valid safetensors"):
        mc.load(saved)


@pytest.mark.parametrize("structure", [
    '{"tensor": "no.such.array"}',
    '{"dict": [["model", {"tensor": "model.features.0.weight"}]]}',     # leaves arrays unused
    '{"object": "os.system", "args": ["touch pwned"]}',
    '{"dict": [[["not", "a key"], 1]]}',
    "[" * 100000 + "]" * 100000,
    "not json",
])
def test_a_tampered_structure_is_refused(saved, structure):
    def change(header):
        header["__metadata__"]["structure"] = structure
    rewrite_header(saved, change)
    with pytest.raises(ValueError, match="load:"):
        mc.load(saved)


class Boom:
    """Pickling this runs os.system on load: what a .pt file can do."""

    def __reduce__(self):
        return (os.system, ("touch pwned_by_pickle",))


def test_nothing_is_executed_on_load(tmp_path, saved, monkeypatch):
    monkeypatch.chdir(tmp_path)
    calls = []

    def forbidden(*args, **kwargs):
        calls.append(args)
        raise AssertionError("load must not unpickle or evaluate anything")

    for module, name in [(pickle, "loads"), (pickle, "load"), (pickle, "Unpickler"),
                         (builtins, "eval"), (builtins, "exec"), (os, "system")]:
        monkeypatch.setattr(module, name, forbidden)
    assert mc.load(saved)["epoch"] == 3

    monkeypatch.undo()
    (tmp_path / "evil.pt").write_bytes(pickle.dumps(Boom()))
    with pytest.raises(ValueError):
        mc.load(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned_by_pickle").exists()
    assert calls == []


def test_a_dtype_numpy_lacks_is_a_clear_error(tmp_path):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    path = tmp_path / "bf16.safetensors"
    safetensors_torch.save_file({"w": torch.ones(2, dtype=torch.bfloat16)}, str(path))
    with pytest.raises(ValueError, match="dtype NumPy cannot represent.*load_weights"):
        mc.load(path)
