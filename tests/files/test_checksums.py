"""Per-tensor checksums: what ``mc.save`` and ``mc.save_weights`` record,
and a checkpoint with one byte flipped anywhere (length prefix, JSON
header, checksum record, structure, each tensor's data, padding) refused
with an error naming the file, by ``mc.load`` and ``mc.load_weights``."""
import hashlib
import json
import struct

import numpy
import pytest
import safetensors.numpy

import minicnn as mc
from minicnn import serialization
from minicnn.optim import SGD
from minicnn.optim.lr_scheduler import OneCycleLR

RECORD = "minicnn.sha256"


def training_checkpoint(path, note=""):
    """A checkpoint laid out as ``python -m minicnn train`` writes it
    (model, SGD with Nesterov momentum, OneCycleLR, rng state, epoch,
    settings, history), for a small network after one step; ``note``
    (a string in the settings) changes the header's length."""
    mc.random.manual_seed(0)
    net = mc.nn.Sequential(mc.nn.Conv2d(1, 2, 3), mc.nn.BatchNorm2d(2), mc.nn.ReLU(), mc.nn.Flatten(),
                           mc.nn.Linear(8, 3))
    optimizer = SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    scheduler = OneCycleLR(optimizer, max_lr=0.1, epochs=2, steps_per_epoch=3)
    net(mc.randn(2, 1, 4, 4)).sum().backward()
    optimizer.step()
    scheduler.step()
    mc.save(dict(model=net.state_dict(), optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                 rng=mc.random.get_rng_state(), epoch=1,
                 settings=dict(model="tiny", dataset="digits", epochs=2, batch_size=2, lr=0.1, seed=0, note=note),
                 history=[dict(loss=1.5, train_accuracy=0.25, test_accuracy=0.5)]), path)
    return path


def parse(payload):
    (n,) = struct.unpack("<Q", payload[:8])
    return n, json.loads(payload[8:8 + n])


def regions(payload):
    """Byte ranges ``name -> (begin, end)`` of every part of a safetensors
    file written by ``mc.save``, found independently of minicnn's reader."""
    n, header = parse(payload)
    text = payload[8:8 + n]
    body = text.rstrip(b" ")
    out = {"length prefix": (0, 8), "padding": (8 + len(body), 8 + n)}
    spans = []
    for key in (RECORD, "structure"):
        value = json.dumps(header["__metadata__"][key]).encode()  # the JSON string, quotes and escapes included
        assert text.count(value) == 1
        begin = 8 + text.index(value)
        spans.append((begin, begin + len(value), key))
    cursor = 8
    for begin, end, key in sorted(spans):
        out[f"header text before the {key} value"] = (cursor, begin)
        out[f"metadata value {key}"] = (begin, end)
        cursor = end
    out["header text after the metadata"] = (cursor, 8 + len(body))
    for name, entry in header.items():
        if name != "__metadata__":
            begin, end = entry["data_offsets"]
            if end > begin:
                out[f"data of {name}"] = (8 + n + begin, 8 + n + end)
    covered = sorted(out.values())
    assert covered[0][0] == 0 and covered[-1][1] == len(payload)
    assert all(a[1] == b[0] for a, b in zip(covered, covered[1:])), "the regions must tile the file"
    return out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "run.safetensors"
    for length in range(8):  # the JSON header is padded with spaces to a multiple of 8 bytes: make sure it is
        payload = training_checkpoint(path, note="x" * length).read_bytes()
        begin, end = regions(payload)["padding"]
        if end > begin:
            return path, payload
    raise AssertionError("no note length gave a padded header")


def test_the_record_holds_the_sha256_of_each_tensors_bytes_and_of_the_metadata(checkpoint):
    path, payload = checkpoint
    n, header = parse(payload)
    metadata = header.pop("__metadata__")
    record = json.loads(metadata.pop(RECORD))
    assert metadata["format"] == "minicnn.checkpoint/2"
    assert record["metadata"] == hashlib.sha256(json.dumps(metadata, sort_keys=True).encode()).hexdigest()
    arrays = safetensors.numpy.load_file(str(path))
    assert sorted(record["tensors"]) == sorted(header) == sorted(arrays)
    for name, array in arrays.items():
        begin, end = header[name]["data_offsets"]
        assert record["tensors"][name] == {"dtype": header[name]["dtype"], "shape": list(array.shape),
                                           "sha256": hashlib.sha256(payload[8 + n + begin:8 + n + end]).hexdigest()}
        assert record["tensors"][name]["sha256"] == hashlib.sha256(array.astype(array.dtype.newbyteorder("<"))
                                                                   .tobytes()).hexdigest()


def test_a_checkpoint_round_trips_unchanged(checkpoint, tmp_path):
    path, payload = checkpoint
    loaded = mc.load(path)
    assert loaded["epoch"] == 1 and loaded["settings"]["model"] == "tiny"
    mc.save(loaded, tmp_path / "again.safetensors")
    assert_same(mc.load(tmp_path / "again.safetensors"), loaded)
    # (The header's key order may differ: the safetensors library writes __metadata__ from a hash map.)
    records = [json.loads(parse(p)[1]["__metadata__"][RECORD]) for p in (payload, (tmp_path / "again.safetensors")
                                                                          .read_bytes())]
    assert records[0] == records[1]


def flipped_loads(payload, path, positions, mask, monkeypatch):
    """For each position, the ValueError message (or None if it loaded)
    of ``mc.load`` on ``payload`` with that byte XORed by ``mask``. The
    bytes come through minicnn's own file reader, patched to return them,
    so that thousands of flips cost no file writes."""
    messages = {}
    for position in positions:
        damaged = numpy.frombuffer(payload, dtype=numpy.uint8).copy()
        damaged[position] ^= mask
        monkeypatch.setattr(serialization, "read_file", lambda _, damaged=damaged: damaged)
        try:
            mc.load(path)
            messages[position] = None
        except ValueError as e:
            messages[position] = str(e)
    monkeypatch.undo()
    return messages


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_every_single_byte_flip_is_refused(checkpoint, mask, monkeypatch):
    path, payload = checkpoint
    parts = regions(payload)
    for region, (begin, end) in parts.items():
        messages = flipped_loads(payload, path, range(begin, end), mask, monkeypatch)
        loaded = [p for p, m in messages.items() if m is None]
        assert not loaded, f"{region}: flipping byte {loaded[0]} by {mask:#x} went undetected"
        for position, message in messages.items():
            assert message.startswith(f"load: {str(path)!r}"), (region, position, message)
            if region.startswith("data of "):
                name = region[len("data of "):]
                assert f"tensor {name!r} fails its checksum" in message, (position, message)


@pytest.mark.parametrize("whitespace", [b"\t", b"\n", b"\r"])
def test_padding_turned_into_other_json_whitespace_changes_no_value(checkpoint, tmp_path, whitespace):
    # The padding is spaces after the JSON header: any other JSON whitespace
    # there parses to the same header, so no value can change; the load
    # gives exactly what the intact file gives.
    path, payload = checkpoint
    begin, end = regions(payload)["padding"]
    damaged = payload[:end - 1] + whitespace + payload[end:]
    (tmp_path / "ws.safetensors").write_bytes(damaged)
    assert_same(mc.load(tmp_path / "ws.safetensors"), mc.load(path))


def assert_same(a, b):
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, mc.Tensor):
        assert a.dtype == b.dtype and a.data.tobytes() == b.data.tobytes()
    else:
        assert a == b


@pytest.mark.parametrize("loader", [mc.load, mc.load_weights])
def test_each_region_flipped_in_a_real_file_is_refused_by_both_loaders(checkpoint, tmp_path, loader):
    path, payload = checkpoint
    target = tmp_path / "damaged.safetensors"
    for region, (begin, end) in regions(payload).items():
        for position in {begin, (begin + end) // 2, end - 1}:
            damaged = bytearray(payload)
            damaged[position] ^= 0x01
            target.write_bytes(bytes(damaged))
            with pytest.raises(ValueError, match="damaged.safetensors") as info:
                loader(target)
            assert "Traceback" not in str(info.value), region


def rewrite(payload, change):
    n, header = parse(payload)
    change(header)
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + payload[8 + n:]


def test_a_header_edit_that_keeps_every_size_is_refused(tmp_path):
    # Reinterpreting a tensor's bytes (F32 read as I32) or reshaping an
    # empty tensor keeps every byte range valid: the record catches both.
    path = tmp_path / "w.safetensors"
    mc.save({"w": mc.ones(2, 3), "empty": mc.zeros(0, 3)}, path)
    edits = {
        "dtype": lambda h: h["w"].update(dtype="I32"),
        "shape": lambda h: h["w"].update(shape=[3, 2]),
        "empty shape": lambda h: h["empty"].update(shape=[0, 4]),
        "name": lambda h: h.update(v=h.pop("w")),
        "record lost": lambda h: h["__metadata__"].pop(RECORD),
        "record not json": lambda h: h["__metadata__"].update({RECORD: "{"}),
        "format edited": lambda h: h["__metadata__"].update(format="minicnn.checkpoint/1"),
    }
    messages = {
        "dtype": "tensor 'w' is I32 of shape \\(2, 3\\) in the header, but F32 of shape \\(2, 3\\) in the checksum",
        "shape": "tensor 'w' is F32 of shape \\(3, 2\\) in the header",
        "empty shape": "tensor 'empty' is F32 of shape \\(0, 4\\)",
        "name": "tensor 'v' is not in the file's checksum record",
        "record lost": "has lost its checksum record",
        "record not json": "damaged checksum record",
        "format edited": "__metadata__ entries \\['format', 'structure'\\] of its header do not match",
    }
    payload = path.read_bytes()
    for what, change in edits.items():
        (tmp_path / "edited").write_bytes(rewrite(payload, change))
        for loader in (mc.load, mc.load_weights):
            with pytest.raises(ValueError, match=messages[what]):
                loader(tmp_path / "edited")


def test_save_weights_files_are_checked_and_guarded_both_ways(tmp_path):
    path = tmp_path / "w.safetensors"
    mc.save_weights({"w": mc.arange(4.0), "mask": mc.tensor([True, False])}, path)
    payload = path.read_bytes()
    assert parse(payload)[1]["__metadata__"]["minicnn.format"] == "weights/1"
    n = parse(payload)[0]
    for position in range(8 + n, len(payload)):  # every data byte (bool 1 -> 3 would still read True)
        damaged = bytearray(payload)
        damaged[position] ^= 0x02
        path.write_bytes(bytes(damaged))
        with pytest.raises(ValueError, match="fails its checksum"):
            mc.load_weights(path)
    # Either mark lost alone still leaves the other to refuse the file.
    path.write_bytes(rewrite(payload, lambda h: h["__metadata__"].pop(RECORD)))
    with pytest.raises(ValueError, match="lost its checksum record"):
        mc.load_weights(path)
    path.write_bytes(rewrite(payload, lambda h: h["__metadata__"].update({"minicnn.formaT": "weights/1"})))
    with pytest.raises(ValueError, match="do not match their checksum"):
        mc.load(path)


def test_files_without_checksums_still_load(tmp_path, rng):
    arrays = {"a": rng.standard_normal((3, 4)).astype(numpy.float32), "b": numpy.arange(5, dtype=numpy.int64)}
    safetensors.numpy.save_file(arrays, str(tmp_path / "plain.safetensors"), metadata={"format": "pt"})
    for loader in (mc.load, mc.load_weights):
        loaded = loader(tmp_path / "plain.safetensors")
        assert sorted(loaded) == ["a", "b"]
        for key in arrays:
            numpy.testing.assert_array_equal(loaded[key].data, arrays[key])
    # A checkpoint written before checksums (format minicnn.checkpoint/1) loads as before.
    mc.save({"model": {"w": mc.ones(2)}, "epoch": 4}, tmp_path / "old.safetensors")

    def as_before_checksums(header):
        header["__metadata__"]["format"] = "minicnn.checkpoint/1"
        del header["__metadata__"][RECORD]
    (tmp_path / "old.safetensors").write_bytes(rewrite((tmp_path / "old.safetensors").read_bytes(),
                                                       as_before_checksums))
    for loader in (mc.load, mc.load_weights):
        loaded = loader(tmp_path / "old.safetensors")
        assert loaded["epoch"] == 4 and loaded["model"]["w"].tolist() == [1.0, 1.0]


def test_npz_weights_rely_on_the_zips_crc(tmp_path):
    # save_weights' npz has no checksum record of its own: the zip's CRC-32
    # of each member covers its bytes, and the reader checks it.
    path = tmp_path / "w.npz"
    values = numpy.arange(16, dtype=numpy.float32)
    mc.save_weights({"w": mc.tensor(values)}, path)
    payload = path.read_bytes()
    start = payload.index(values.tobytes())
    for position in range(start, start + values.nbytes):
        damaged = bytearray(payload)
        damaged[position] ^= 0x01
        path.write_bytes(bytes(damaged))
        with pytest.raises(ValueError, match="w.npz.*array 'w'.*CRC"):
            mc.load_weights(path)
