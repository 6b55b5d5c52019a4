"""Every unreadable weights file is one ValueError naming the path and the
reason (never zipfile's RuntimeError or NumPy's _ArrayMemoryError), and
``python -m minicnn classify`` given one exits 2 with a one-line message.
A state-dict key named ``__metadata__`` (the safetensors header's own
entry) is refused by save_weights for safetensors and kept by mc.save."""
import io
import struct
import subprocess
import sys
import zipfile

import numpy
import pytest

import minicnn as mc

torch = pytest.importorskip("torch")


# -- crafted files -------------------------------------------------------------
def set_encrypted(path, name):
    """Set the "encrypted" flag of record ``name`` in the zip ``path`` (in
    its local header and its central directory entry)."""
    payload = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    payload[info.header_offset + 6] |= 0x1
    entry = payload.find(b"PK\x01\x02")
    while entry >= 0:
        length = struct.unpack("<H", payload[entry + 28:entry + 30])[0]
        if payload[entry + 46:entry + 46 + length] == name.encode():
            payload[entry + 8] |= 0x1
        entry = payload.find(b"PK\x01\x02", entry + 4)
    path.write_bytes(bytes(payload))
    with zipfile.ZipFile(path) as archive:
        assert archive.getinfo(name).flag_bits & 0x1


def encrypted_pth(path):
    torch.save({"w": torch.ones(3)}, path)
    with zipfile.ZipFile(path) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith("/byteorder")]
    set_encrypted(path, name)


def encrypted_npz(path):
    mc.save_weights({"w": mc.ones(3)}, path)
    set_encrypted(path, "w.npy")


def npy_claiming(shape, data=b"\0" * 64):
    """A .npy record whose header claims ``shape`` (float64) over ``data``."""
    buffer = io.BytesIO()
    numpy.lib.format.write_array_header_1_0(
        buffer, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return buffer.getvalue() + data


def huge_npz(path):
    # 7.28 TiB claimed in a file of a few hundred bytes.
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("w.npy", npy_claiming((1000000, 1000000)))


def huge_compressed_npz(path):
    # The claimed size fits the declared (decompressed) size, which is far
    # over the file's own: refused by the cap before anything is inflated.
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("w.npy", "w", force_zip64=True) as member:
            member.write(npy_claiming((2 ** 27,), b""))
            for _ in range(2 ** 27 * 8 // (1 << 26)):
                member.write(bytes(1 << 26))


def unknown_compression_npz(path):
    mc.save_weights({"w": mc.ones(3)}, path)
    payload = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        at = payload.find(signature)
        payload[at + offset:at + offset + 2] = struct.pack("<H", 99)
    path.write_bytes(bytes(payload))


def pickle_npz(path):
    with zipfile.ZipFile(path, "w") as archive:
        buffer = io.BytesIO()
        numpy.save(buffer, numpy.array([{"a": 1}], dtype=object), allow_pickle=True)
        archive.writestr("w.npy", buffer.getvalue())


CRAFTED = {
    "encrypted.pth": (encrypted_pth, "encrypted"),
    "encrypted.npz": (encrypted_npz, "encrypted"),
    "huge.npz": (huge_npz, r"shape \(1000000, 1000000\)"),
    "unknown_compression.npz": (unknown_compression_npz, "compression"),
    "pickle.npz": (pickle_npz, "not a number type"),
}


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_a_crafted_file_is_one_value_error_naming_the_path(tmp_path, name, bounded):
    make, reason = CRAFTED[name]
    path = tmp_path / name
    make(path)
    with pytest.raises(ValueError, match=rf"{name}.*{reason}") as caught:
        mc.load_weights(path)
    assert type(caught.value) is ValueError and "\n" not in str(caught.value)
    report = bounded(path)  # and without allocating what it claims
    assert report["outcome"] == "ValueError" and name in report["error"]


@pytest.mark.slow
def test_a_huge_compressed_npz_is_refused_before_it_is_inflated(tmp_path, bounded):
    path = tmp_path / "inflating.npz"
    huge_compressed_npz(path)
    assert path.stat().st_size < 64 << 20
    report = bounded(path, max_extra_bytes=128 << 20)
    assert report["outcome"] == "ValueError" and "inflating.npz" in report["error"]
    assert "MAX_EXTRA_BYTES" in report["error"]


# -- the classify command ------------------------------------------------------
@pytest.mark.parametrize("name", ["encrypted.pth", "huge.npz"])
def test_classify_exits_2_with_one_line_for_an_unreadable_weights_file(tmp_path, name):
    from PIL import Image
    image = tmp_path / "cat.png"
    Image.fromarray(numpy.full((40, 50, 3), 120, dtype=numpy.uint8)).save(image)
    weights = tmp_path / name
    CRAFTED[name][0](weights)
    result = subprocess.run(
        [sys.executable, "-m", "minicnn", "classify", str(image), "--model", "resnet18", "--weights", str(weights)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and lines[0].startswith("python -m minicnn classify: error:")


# -- a key named __metadata__ --------------------------------------------------
def test_save_weights_refuses_a_key_named_metadata_for_safetensors(tmp_path):
    state = {"__metadata__": mc.ones(2), "w": mc.zeros(3)}
    with pytest.raises(ValueError, match=r"t\.safetensors.*'__metadata__'.*npz or with mc\.save"):
        mc.save_weights(state, tmp_path / "t.safetensors")
    assert list(tmp_path.iterdir()) == []
    mc.save_weights(state, tmp_path / "t.npz")  # npz holds any name
    loaded = mc.load_weights(tmp_path / "t.npz")
    assert list(loaded) == ["__metadata__", "w"]
    numpy.testing.assert_array_equal(loaded["__metadata__"].data, [1.0, 1.0])


def test_mc_save_keeps_a_key_named_metadata(tmp_path):
    state = {"__metadata__": mc.tensor([1.0, 2.0]), "w": mc.zeros(3), "nested": {"__metadata__": mc.ones(1)}}
    mc.save(state, tmp_path / "t.safetensors")
    for load in (mc.load, mc.load_weights):
        loaded = load(tmp_path / "t.safetensors")
        assert list(loaded) == ["__metadata__", "w", "nested"]
        numpy.testing.assert_array_equal(loaded["__metadata__"].data, [1.0, 2.0])
        numpy.testing.assert_array_equal(loaded["nested"]["__metadata__"].data, [1.0])
