"""What a weights or checkpoint file can make the loader allocate.

Each case is a small crafted file that used to make ``load_weights`` or
``mc.load`` allocate gigabytes; each is loaded in a subprocess limited in
address space (see conftest.py), whose resident memory must grow by less
than twice the file's size plus 100 MB.
"""
import json
import struct
import zipfile

import numpy
import pytest

import minicnn as mc

torch = pytest.importorskip("torch")

MB = 1 << 20
GIB = 1 << 30


def recompress(path, replace=None, level=1):
    """Rewrite the zip ``path`` with every record deflated; ``replace``:
    record name -> an iterable of byte chunks to store instead."""
    replace = replace or {}
    with zipfile.ZipFile(path) as old:
        records = [(info.filename, old.read(info)) for info in old.infolist()]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as new:
        for name, data in records:
            with new.open(name, "w", force_zip64=True) as member:
                for chunk in replace.get(name, [data]):
                    member.write(chunk)


def storage_record(path):
    """The name of the one storage record in the torch zip ``path``."""
    with zipfile.ZipFile(path) as archive:
        (name,) = [n for n in archive.namelist() if "/data/" in n]
    return name


def safetensors_file(path, header, data):
    text = json.dumps(header).encode() if isinstance(header, dict) else header
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


# -- .pth: stride 0 and shared storages stay views ---------------------------
@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_stride_0_tensors_stay_views_of_their_few_bytes(tmp_path, bounded, zip_format):
    # Three 1 GiB tensors (six of 4 GiB in the legacy file) from one float each.
    count, numel = (3, GIB // 4) if zip_format else (6, GIB)
    tensors = {f"t{i}": torch.full((1,), float(i + 1)).expand(numel) for i in range(count)}
    path = tmp_path / "wide.pth"
    torch.save(tensors, path, _use_new_zipfile_serialization=zip_format)
    assert path.stat().st_size < 4096
    report = bounded(path)
    assert report["outcome"] == "loaded", report
    for i in range(count):
        t = report["tensors"][f"t{i}"]
        assert t["shape"] == [numel] and t["strides"] == [0] and not t["writeable"]
        assert t["first"] == t["last"] == float(i + 1)


def test_many_tensors_on_one_compressed_storage_share_it(tmp_path, bounded):
    # 256 views of one 8 MiB storage, deflated into a file of a few KB: the
    # storage is inflated once and every tensor views it.
    base = torch.arange(2 * MB, dtype=torch.float32)
    path = tmp_path / "shared.pth"
    torch.save({f"t{i}": base[i:] for i in range(256)}, path)
    recompress(path, level=9)
    assert path.stat().st_size < 8 * MB // 2
    report = bounded(path)
    assert report["outcome"] == "loaded", report
    assert report["growth"] < 8 * MB * 3 + 50 * MB  # the storage once (and Python's imports' slack), not 256 times
    for i in (0, 100, 255):
        t = report["tensors"][f"t{i}"]
        assert t["shape"] == [2 * MB - i] and t["first"] == float(i) and t["last"] == float(2 * MB - 1)


def test_tensors_on_a_shared_storage_share_memory_as_in_torch(tmp_path):
    base = torch.arange(12, dtype=torch.float64)
    path = tmp_path / "shared.pth"
    torch.save({"base": base, "row": base.view(3, 4)[1], "col": base.view(3, 4)[:, 2]}, path)
    loaded = mc.load_weights(path)
    loaded["base"].data[6] = -1.0  # as torch.load's tensors, they view one storage
    assert loaded["row"].data[2] == -1.0 and loaded["col"].data[1] == -1.0
    reloaded = torch.load(path)
    reloaded["base"][6] = -1.0
    numpy.testing.assert_array_equal(loaded["col"].data, reloaded["col"].numpy())


def test_a_record_that_inflates_past_what_the_pickle_asks_for_is_not_inflated(tmp_path, bounded):
    path = tmp_path / "bomb.pth"
    torch.save({"w": torch.tensor([1.0, 2.0, 3.0, 4.0])}, path)
    record = storage_record(path)
    # The record declares 512 MiB (16 real bytes, then zeros); the pickle asks for 16.
    chunks = [numpy.float32([1, 2, 3, 4]).tobytes()] + [bytes(16 * MB)] * 32
    recompress(path, {record: chunks})
    assert path.stat().st_size < 4 * MB
    with zipfile.ZipFile(path) as archive:
        assert archive.getinfo(record).file_size > 512 * MB
    report = bounded(path)
    assert report["outcome"] == "loaded", report
    assert report["tensors"]["w"]["shape"] == [4] and report["tensors"]["w"]["last"] == 4.0


def test_decompression_past_the_cap_is_refused_before_it_is_allocated(tmp_path, bounded):
    # A 256 MiB storage of zeros deflates to a few hundred KB: with the cap
    # at 64 MiB beyond the file's size, it is refused before it is inflated.
    path = tmp_path / "inflating.pth"
    torch.save({"w": torch.zeros(64 * MB)}, path)
    recompress(path)
    report = bounded(path, max_extra_bytes=64 * MB)
    assert report["outcome"] == "ValueError"
    assert "inflating.pth" in report["error"] and "MAX_EXTRA_BYTES" in report["error"]
    assert report["growth"] < 64 * MB


def test_widening_bfloat16_past_the_cap_is_refused(tmp_path, bounded):
    path = tmp_path / "bf16.pth"
    torch.save({"w": torch.ones(16 * MB, dtype=torch.bfloat16)}, path)  # 32 MiB, 64 MiB as float32
    report = bounded(path, max_extra_bytes=16 * MB)
    assert report["outcome"] == "ValueError" and "bf16.pth" in report["error"] and "bfloat16" in report["error"]
    assert bounded(path)["tensors"]["w"] == {"shape": [16 * MB], "strides": [4], "writeable": True,
                                             "dtype": "float32", "first": 1.0, "last": 1.0}


# -- safetensors and mc.save files: byte ranges tile the data ----------------
@pytest.mark.parametrize("loader", ["load_weights", "load"])
def test_overlapping_data_offsets_are_refused(tmp_path, bounded, loader):
    # 400 entries all claiming the same 4 MiB: 1.6 GB if each were copied.
    header = {f"t{i}": {"dtype": "F32", "shape": [MB], "data_offsets": [0, 4 * MB]} for i in range(400)}
    path = safetensors_file(tmp_path / "overlap.safetensors", header, bytes(4 * MB))
    report = bounded(path, loader)
    assert report["outcome"] == "ValueError", report
    assert "overlap.safetensors" in report["error"] and "overlaps" in report["error"]


@pytest.mark.parametrize("loader", ["load_weights", "load"])
def test_a_gap_in_the_data_is_refused(tmp_path, loader):
    header = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}
    path = safetensors_file(tmp_path / "gap.safetensors", header, bytes(16))
    with pytest.raises(ValueError, match=r"gap.safetensors.*bytes \[0, 8\) unused"):
        getattr(mc, loader)(path)


@pytest.mark.parametrize("loader", ["load_weights", "load"])
def test_a_key_named_twice_in_the_header_is_refused(tmp_path, loader):
    text = (b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
            b'"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}')
    path = safetensors_file(tmp_path / "twice.safetensors", text, bytes(8))
    with pytest.raises(ValueError, match="twice.safetensors.*names a twice"):
        getattr(mc, loader)(path)


def test_a_checkpoint_naming_one_array_twice_is_refused(tmp_path):
    # A crafted structure that would make two loaded tensors share one array.
    mc.save({"a": mc.tensor([1.0, 2.0]), "b": mc.tensor([3.0, 4.0])}, tmp_path / "ckpt.safetensors")
    payload = (tmp_path / "ckpt.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", payload[:8])
    header = json.loads(payload[8:8 + n])
    structure = json.loads(header["__metadata__"]["structure"])
    structure["dict"][1][1] = structure["dict"][0][1]  # "b" names "a"'s array
    header["__metadata__"]["structure"] = json.dumps(structure)
    # Written as a checkpoint from before checksums, whose record would otherwise refuse the edit first.
    header["__metadata__"]["format"] = "minicnn.checkpoint/1"
    del header["__metadata__"]["minicnn.sha256"]
    header["b"]["data_offsets"] = header["a"]["data_offsets"]
    del header["b"]
    a_end = header["a"]["data_offsets"][1]
    path = safetensors_file(tmp_path / "alias.safetensors", header, payload[8 + n:8 + n + a_end])
    for load in (mc.load, mc.load_weights):
        with pytest.raises(ValueError, match="alias.safetensors.*names array 'a' twice"):
            load(path)


@pytest.mark.parametrize("loader", ["load_weights", "load"])
def test_loaded_safetensors_tensors_are_independent(tmp_path, loader):
    state = {"a": mc.tensor([1.0, 2.0]), "b": mc.tensor([3.0, 4.0]), "c": mc.tensor([5, 6], dtype=mc.uint8)}
    path = tmp_path / "w.safetensors"
    mc.save_weights(state, path) if loader == "load_weights" else mc.save(state, path)
    loaded = getattr(mc, loader)(path)
    loaded["a"].data[...] = 0.0
    numpy.testing.assert_array_equal(loaded["b"].data, [3.0, 4.0])
    numpy.testing.assert_array_equal(loaded["c"].data, [5, 6])


# -- ordinary files: loaded in about their own size ---------------------------
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["zip.pth", "legacy.pth", "weights.safetensors", "weights.npz",
                                  "checkpoint.safetensors", "bf16.safetensors"])
def test_an_ordinary_file_loads_in_about_its_own_size(tmp_path, bounded, kind):
    rng = numpy.random.default_rng(0)
    state = {f"layer{i}.weight": rng.standard_normal((1024, 1024)).astype(numpy.float32) for i in range(12)}
    path = tmp_path / kind
    if kind.endswith(".pth"):
        torch.save({k: torch.from_numpy(v) for k, v in state.items()}, path,
                   _use_new_zipfile_serialization=kind == "zip.pth")
    elif kind == "checkpoint.safetensors":
        mc.save({"model": state, "epoch": 3}, path)
    elif kind == "bf16.safetensors":
        from safetensors.torch import save_file
        save_file({k: torch.from_numpy(v).to(torch.bfloat16) for k, v in state.items()}, str(path))
    else:
        mc.save_weights(state, path)
    for loader in ("load", "load_weights") if kind == "checkpoint.safetensors" else ("load_weights",):
        report = bounded(path, loader)
        assert report["outcome"] == "loaded", report
