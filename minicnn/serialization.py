"""``mc.save(obj, path)`` and ``mc.load(path)``: state dicts and checkpoints
in the open safetensors format, written atomically, loaded without running
any code.

What can be saved
-----------------
Tensors, NumPy arrays, ints, floats, bools, strings and None, nested in
dicts (str or int keys), lists and tuples: a model's ``state_dict()``, an
optimizer's, or a checkpoint such as
``{"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}``.
``load`` gives back the same structure: Tensors as Tensors (on the CPU,
detached), arrays as arrays, tuples as tuples, int keys as ints. The
state dict of a converted int8 model saves too: its quantized tensors
(``mc.ao.QTensor``) load back with the same integers, scales, zero points
and axis, its quantized dtypes (``mc.qint8``) as the same objects.

The file
--------
A safetensors file: an 8-byte little-endian header length, a JSON header
naming each array's dtype, shape and byte range, then the raw bytes. Each
array is stored under its dotted path (``model.conv1.weight``,
``optimizer.state.0.exp_avg``). The structure around the arrays goes in the
header's ``__metadata__`` as JSON, where every container is tagged::

    {"dict": [[key, value], ...]}   {"list": [...]}   {"tuple": [...]}
    {"tensor": "model.conv1.weight"}   {"ndarray": "..."}
    {"qtensor": {"int_repr": {"ndarray": "conv1.weight"}, "scale": 0.1 or {"ndarray": ...},
                 "zero_point": 0 or {"ndarray": ...}, "axis": null or 0}}
    {"qdtype": "qint8"}

and numbers, strings, booleans and null stand for themselves. Loading
parses JSON and views bytes as arrays, nothing else: unlike a pickle,
a checkpoint cannot run code, and a file that does not follow this layout
is refused with a ValueError. A plain safetensors file (written by other
tools) loads as a flat dict of Tensors.

Checksums
---------
``save`` (and ``mc.save_weights``) also write a checksum record, the
``__metadata__`` entry ``"minicnn.sha256"``: JSON text of the form ::

    {"metadata": "<sha256 of the other __metadata__ entries>",
     "tensors": {"model.conv1.weight":
                     {"dtype": "F32", "shape": [6, 1, 5, 5], "sha256": "<hex>"}, ...}}

where a tensor's ``sha256`` is the SHA-256 of its bytes as stored (any
tool can check it: ``hashlib.sha256(array.tobytes()).hexdigest()`` of the
little-endian array), and ``metadata`` is the SHA-256 of the other
entries as ``json.dumps(entries, sort_keys=True)``. Every load checks
them all before it builds an array, and refuses a mismatch with a
ValueError naming the file and the tensor: a flipped bit anywhere in the
data, in a dtype, shape or name in the header, or in the structure, is
caught. A file whose ``format`` says it came from this version of ``save``
(or that carries ``mc.save_weights``' mark, ``"minicnn.format"``) must
have the record: losing it is damage too. Files without a record, written
by other tools (safetensors' ``save_file``, torch) or by minicnn before
checksums (format ``minicnn.checkpoint/1``), load unchecked.

Saving writes to a temporary file in the same directory, flushes it to
disk (fsync) and renames it over ``path`` (``os.replace``, atomic on POSIX
and Windows): a save interrupted at any point leaves the previous file
intact.
"""
import contextlib
import hashlib
import json
import os
import re
import secrets
import signal
import struct
import sys
import threading

import numpy
import safetensors.numpy

from .backend import get_array_module
from .tensor import Tensor
from .torch_pickle import UnsupportedDtypeError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

#: The ``__metadata__`` entry that marks a minicnn checkpoint (version 2
#: added the checksum record).
FORMAT = "minicnn.checkpoint/2"
#: The same mark on checkpoints written before checksums: they load unchecked.
FORMAT_WITHOUT_CHECKSUMS = "minicnn.checkpoint/1"
#: The ``__metadata__`` entry holding the checksum record (module docstring).
CHECKSUMS = "minicnn.sha256"
#: The ``__metadata__`` entry that marks a file of ``mc.save_weights``.
WEIGHTS_MARK = "minicnn.format"

_ALLOWED_DTYPES = frozenset("fiub")


def save(obj, f):
    """Write ``obj`` (a state dict or a checkpoint dict, see the module
    docstring) to the file path ``f``, atomically."""
    path = _as_path(f, "save")
    arrays = {}
    structure = _encode(obj, [], arrays)
    metadata = with_checksums(arrays, {"format": FORMAT, "structure": json.dumps(structure)})
    _write_atomically(path, safetensors.numpy.save(arrays, metadata=metadata))


def load(f):
    """Read what ``save`` wrote to the file path ``f``. Raises ValueError
    for a truncated, corrupted or foreign file, or one whose checksums do
    not match (see the module docstring). Each array is a view of
    one buffer holding the file (no array shares bytes with another), so
    loading takes about the file's size in memory."""
    path = _as_path(f, "load")
    metadata, entries, data = read_safetensors(read_file(path), path, "load")
    return load_parsed(metadata, entries, data, path)


def load_parsed(metadata, entries, data, path):
    """What ``load`` returns, from what ``read_safetensors`` parsed."""
    arrays = {}
    for name, dtype, shape, begin, end in entries:
        if dtype not in _NUMPY_DTYPES:
            raise ValueError(f"load: {path!r}: tensor {name!r} holds a dtype NumPy cannot represent ({dtype}); "
                             f"mc.load_weights reads bfloat16 as float32")
        arrays[name] = aligned_view(data[begin:end], _NUMPY_DTYPES[dtype], shape)
    if metadata.get("format") not in (FORMAT, FORMAT_WITHOUT_CHECKSUMS):
        # A plain safetensors file: its tensors, by name.
        return {name: Tensor._wrap(a) for name, a in arrays.items()}
    try:
        structure = json.loads(metadata["structure"])
    except (KeyError, TypeError, ValueError, RecursionError):
        raise ValueError(f"load: {path!r} has a damaged structure record in its header") from None
    used = set()
    try:
        obj = _decode(structure, arrays, used)
    except RecursionError:
        raise ValueError(f"load: {path!r} has a structure nested too deeply") from None
    except ValueError as e:
        raise ValueError(f"load: {path!r}: {e}") from None
    unused = set(arrays) - used
    if unused:
        raise ValueError(f"load: {path!r} holds arrays its structure does not mention: {sorted(unused)[:5]}")
    return obj


# -- reading safetensors ----------------------------------------------------
#: The largest JSON header a file may have (the safetensors library's limit).
MAX_HEADER_BYTES = 100_000_000

#: safetensors dtype names -> how the bytes are stored (little-endian).
#: BF16 has no NumPy dtype: its 16 bits are read as uint16.
SAFETENSORS_DTYPES = {
    "F64": numpy.dtype("<f8"), "F32": numpy.dtype("<f4"), "F16": numpy.dtype("<f2"), "BF16": numpy.dtype("<u2"),
    "I64": numpy.dtype("<i8"), "I32": numpy.dtype("<i4"), "I16": numpy.dtype("<i2"), "I8": numpy.dtype("i1"),
    "U64": numpy.dtype("<u8"), "U32": numpy.dtype("<u4"), "U16": numpy.dtype("<u2"), "U8": numpy.dtype("u1"),
    "BOOL": numpy.dtype("u1"),
}
_NUMPY_DTYPES = {name: dtype for name, dtype in SAFETENSORS_DTYPES.items() if name != "BF16"}
_NUMPY_DTYPES["BOOL"] = numpy.dtype(numpy.bool_)


def read_file(path):
    """The bytes of the file ``path`` as one writable uint8 array (read
    straight into it: no second copy)."""
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        buffer = numpy.empty(size, dtype=numpy.uint8)
        if file.readinto(memoryview(buffer)) != size:
            raise ValueError(f"{path!r} changed size while it was read")
    return buffer


class _DuplicateKey(ValueError):
    pass


def _refuse_duplicates(pairs):
    """``object_pairs_hook`` for json.loads: a JSON object naming one key
    twice (which json.loads would resolve silently, keeping the last)."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def read_safetensors(buffer, path, caller):
    """Parse the safetensors file held in ``buffer`` (a uint8 array) and
    check it as the safetensors library does: a complete JSON header of at
    most MAX_HEADER_BYTES, no key named twice, every entry a known dtype,
    a shape and ``data_offsets`` whose byte ranges tile the data exactly
    (no overlap, no gap, sizes that match the shapes); then the checksum
    record, if the file has one (``verify_checksums``). Returns
    ``(metadata, entries, data)``: the ``__metadata__`` dict (``{}`` if
    none), ``(name, dtype, shape, begin, end)`` per tensor in header order,
    and the data bytes (a view of ``buffer``)."""
    if buffer.size < 8:
        raise ValueError(f"{caller}: {path!r} is truncated or empty ({buffer.size} bytes)")
    (size,) = struct.unpack("<Q", buffer[:8].tobytes())
    if size > buffer.size - 8:
        raise ValueError(f"{caller}: {path!r} is truncated or not a safetensors file: its header claims {size} "
                         f"bytes but only {buffer.size - 8} follow")
    if size > MAX_HEADER_BYTES:
        raise ValueError(f"{caller}: {path!r} is not a valid safetensors file (its header of {size} bytes is over "
                         f"the {MAX_HEADER_BYTES}-byte limit)")
    try:
        header = json.loads(buffer[8:8 + size].tobytes().decode("utf-8"), object_pairs_hook=_refuse_duplicates)
    except _DuplicateKey as e:
        raise ValueError(f"{caller}: {path!r} is not a valid safetensors file: its header names {str(e)[:80]} "
                         f"twice") from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ValueError(f"{caller}: {path!r} has a corrupted header (not JSON)") from None
    if not isinstance(header, dict):
        raise ValueError(f"{caller}: {path!r} has a corrupted header (not a JSON object)")
    metadata = header.pop("__metadata__", {})
    if not (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
        raise ValueError(f"{caller}: {path!r} has a corrupted header (__metadata__ is not a dict of strings)")
    data = buffer[8 + size:]
    entries = []
    for name, entry in header.items():
        entries.append(_header_entry(name, entry, f"{caller}: {path!r}: tensor {name!r}"))
    end = 0
    for name, dtype, shape, begin, stop in sorted(entries, key=lambda e: (e[3], e[4])):
        if begin != end:
            problem = "overlaps the one before it" if begin < end else f"leaves bytes [{end}, {begin}) unused"
            raise ValueError(f"{caller}: {path!r} is not a valid safetensors file: the byte range [{begin}, "
                             f"{stop}) of tensor {name!r} {problem}")
        end = stop
    if end != data.size:
        raise ValueError(f"{caller}: {path!r} is not a valid safetensors file (truncated or corrupted): its tensors "
                         f"take {end} bytes, the file holds {data.size} after the header")
    verify_checksums(metadata, entries, data, path, caller)
    return metadata, entries, data


def _header_entry(name, entry, where):
    """``(name, dtype, shape, begin, end)`` of one header entry, checked."""
    if not (isinstance(entry, dict) and set(entry) == {"dtype", "shape", "data_offsets"}
            and isinstance(entry["shape"], list)
            and isinstance(entry["data_offsets"], list) and len(entry["data_offsets"]) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                    for n in entry["shape"] + entry["data_offsets"])):
        raise ValueError(f"{where} has a malformed header entry {str(entry)[:120]}")
    dtype = entry["dtype"]
    if dtype not in SAFETENSORS_DTYPES:
        raise UnsupportedDtypeError(f"{where} has dtype {str(dtype)[:20]!r}, which minicnn cannot represent "
                                    f"(supported: {', '.join(SAFETENSORS_DTYPES)})")
    begin, end = entry["data_offsets"]
    count = 1
    for n in entry["shape"]:
        count *= n
    if end < begin or end - begin != count * SAFETENSORS_DTYPES[dtype].itemsize:
        raise ValueError(f"{where} claims bytes [{begin}, {end}) for shape {tuple(entry['shape'])} of {dtype}: "
                         f"not a valid safetensors file (truncated or corrupted)")
    return name, dtype, tuple(entry["shape"]), begin, end


# -- checksums ---------------------------------------------------------------
def with_checksums(arrays, metadata):
    """``metadata`` (a dict of strings) plus the checksum record of
    ``arrays`` (name -> little-endian C-contiguous array, as they will be
    written) and of ``metadata`` itself."""
    tensors = {name: {"dtype": _safetensors_dtype(array), "shape": list(array.shape),
                      "sha256": hashlib.sha256(_bytes_of(array)).hexdigest()}
               for name, array in arrays.items()}
    record = {"metadata": _metadata_digest(metadata), "tensors": tensors}
    return {**metadata, CHECKSUMS: json.dumps(record)}


def verify_checksums(metadata, entries, data, path, caller):
    """Check the parsed file against its checksum record, if it has one
    (see the module docstring); raises ValueError naming the file and what
    does not match. The record is required where the file's own marks say
    minicnn wrote it with one."""
    where = f"{caller}: {path!r}"
    if CHECKSUMS not in metadata:
        if metadata.get("format") == FORMAT or WEIGHTS_MARK in metadata:
            raise ValueError(f"{where} has lost its checksum record (the __metadata__ entry {CHECKSUMS!r} that "
                             f"minicnn always writes): its header was damaged or edited")
        return
    record = _parse_record(metadata[CHECKSUMS], where)
    others = {key: value for key, value in metadata.items() if key != CHECKSUMS}
    if _metadata_digest(others) != record["metadata"]:
        raise ValueError(f"{where}: the __metadata__ entries {sorted(others)} of its header do not match their "
                         f"checksum: the header was damaged or edited after the file was saved")
    expected = record["tensors"]
    for name, dtype, shape, begin, end in entries:
        if name not in expected:
            raise ValueError(f"{where}: tensor {name!r} is not in the file's checksum record: the header was "
                             f"damaged or edited after the file was saved")
        want = expected[name]
        if want["dtype"] != dtype or tuple(want["shape"]) != shape:
            raise ValueError(f"{where}: tensor {name!r} is {dtype} of shape {shape} in the header, but "
                             f"{want['dtype']} of shape {tuple(want['shape'])} in the checksum record: the header "
                             f"was damaged or edited after the file was saved")
        if hashlib.sha256(data[begin:end]).hexdigest() != want["sha256"]:
            raise ValueError(f"{where}: tensor {name!r} fails its checksum (SHA-256 of its bytes): the file was "
                             f"damaged or edited after it was saved")
    missing = set(expected) - {entry[0] for entry in entries}
    if missing:
        raise ValueError(f"{where}: the checksum record names tensors the file does not hold: "
                         f"{sorted(missing)[:5]}: the header was damaged or edited after the file was saved")


def _parse_record(text, where):
    """The checksum record's JSON text, parsed and checked for its layout."""
    try:
        record = json.loads(text)
        ok = (isinstance(record, dict) and set(record) == {"metadata", "tensors"}
              and isinstance(record["metadata"], str) and isinstance(record["tensors"], dict)
              and all(isinstance(t, dict) and set(t) == {"dtype", "shape", "sha256"} and isinstance(t["shape"], list)
                      for t in record["tensors"].values()))
    except (ValueError, RecursionError):
        ok = False
    if not ok:
        raise ValueError(f"{where} has a damaged checksum record (the __metadata__ entry {CHECKSUMS!r}): its header "
                         f"was damaged or edited")
    return record


def _metadata_digest(metadata):
    return hashlib.sha256(json.dumps(metadata, sort_keys=True).encode()).hexdigest()


def _bytes_of(array):
    """The bytes of a C-contiguous ``array`` as a flat uint8 view (hashlib
    reads any buffer; this also covers 0-d and bool arrays)."""
    return array.reshape(-1).view(numpy.uint8)


def _safetensors_dtype(array):
    """The safetensors name of ``array``'s dtype ("F32", "BOOL", ...)."""
    for name, dtype in _NUMPY_DTYPES.items():
        if array.dtype == dtype:
            return name
    raise TypeError(f"no safetensors dtype for {array.dtype}")


def aligned_view(raw, dtype, shape):
    """The bytes ``raw`` (a writable uint8 array) as an array of ``dtype``
    and ``shape``: a view when the bytes are aligned for ``dtype``, else
    an aligned copy (safetensors does not align its tensors). A bool array
    gets its bytes normalised to 0/1 in place."""
    if dtype == numpy.bool_:
        numpy.minimum(raw, 1, out=raw)  # a byte other than 0 or 1 reads as True, not as an invalid bool
    array = raw.view(dtype) if raw.size else numpy.empty(0, dtype)
    if not array.flags.aligned:
        array = array.copy()
    return array.reshape(shape)


# -- encoding ------------------------------------------------------------
def _encode(obj, path, arrays):
    """The JSON tree for ``obj``; arrays go into ``arrays`` by dotted name."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, numpy.integer)):
        return int(obj)
    if isinstance(obj, (float, numpy.floating)):
        return float(obj)
    if isinstance(obj, numpy.bool_):
        return bool(obj)
    if isinstance(obj, Tensor):
        return {"tensor": _store(obj.numpy_copy(), path, arrays)}
    quantized = _encode_quantized(obj, path, arrays)
    if quantized is not None:
        return quantized
    if isinstance(obj, numpy.ndarray) or get_array_module(obj) is not numpy:
        return {"ndarray": _store(obj, path, arrays)}
    if isinstance(obj, dict):
        items = []
        for key, value in obj.items():
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                raise TypeError(f"save: dict keys must be str or int, got {type(key).__name__} at {_where(path)}")
            items.append([key, _encode(value, path + [str(key)], arrays)])
        return {"dict": items}
    if isinstance(obj, (list, tuple)):
        tag = "list" if isinstance(obj, list) else "tuple"
        return {tag: [_encode(v, path + [str(i)], arrays) for i, v in enumerate(obj)]}
    hint = "; save its state_dict() instead" if hasattr(obj, "state_dict") else ""
    raise TypeError(
        f"save: cannot save a {type(obj).__name__} at {_where(path)}: a checkpoint holds Tensors, "
        f"arrays, numbers, strings, None, and dicts, lists and tuples of them{hint}")


def _encode_quantized(obj, path, arrays):
    """The JSON tree of a quantized tensor or dtype, None for anything else.
    (If mc.ao was never imported, ``obj`` cannot be either.)"""
    qtensor = sys.modules.get(__package__ + ".ao.qtensor")
    if qtensor is None:
        return None
    if isinstance(obj, qtensor.qdtype):
        return {"qdtype": obj.name}
    if not isinstance(obj, qtensor.QTensor):
        return None
    int_repr = {"ndarray": _store(numpy.asarray(obj.int_repr().numpy()), path, arrays)}
    if obj.qscheme() is qtensor.per_tensor_affine:
        return {"qtensor": {"int_repr": int_repr, "scale": float(obj.q_scale()),
                            "zero_point": int(obj.q_zero_point()), "axis": None}}
    return {"qtensor": {"int_repr": int_repr,
                        "scale": {"ndarray": _store(obj.q_per_channel_scales().numpy(), path + ["scale"], arrays)},
                        "zero_point": {"ndarray": _store(obj.q_per_channel_zero_points().numpy(),
                                                         path + ["zero_point"], arrays)},
                        "axis": int(obj.q_per_channel_axis())}}


def _store(array, path, arrays):
    """Add ``array`` under its dotted path (made unique) and return the name."""
    if get_array_module(array) is not numpy:
        array = array.get()
    if array.dtype.kind not in _ALLOWED_DTYPES:
        raise TypeError(f"save: cannot save an array of dtype {array.dtype} at {_where(path)}")
    base = ".".join(path) or "tensor"
    name, n = base, 1
    # "__metadata__" is the header's own entry: an array may not take it.
    while name in arrays or name == "__metadata__":
        name, n = f"{base}#{n}", n + 1
    if array.dtype.byteorder == ">":  # stored little-endian; converted here so that its checksum is of those bytes
        array = array.astype(array.dtype.newbyteorder("<"))
    # (Not ascontiguousarray: it would turn a 0-d array into a 1-d one.)
    arrays[name] = array if array.flags.c_contiguous else array.copy(order="C")
    return name


def _where(path):
    return "obj" + "".join(f"[{p!r}]" for p in path)


# -- decoding ------------------------------------------------------------
def _decode(node, arrays, used):
    """Rebuild the object from its JSON tree, refusing anything unexpected."""
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, dict) and len(node) == 1:
        (tag, value), = node.items()
        if tag in ("tensor", "ndarray"):
            if not isinstance(value, str) or value not in arrays:
                raise ValueError(f"the structure names an array {str(value)[:80]!r} that the file does not hold")
            if value in used:  # save never does this: two objects would share one array
                raise ValueError(f"the structure names array {value!r} twice")
            used.add(value)
            array = arrays[value]
            return Tensor._wrap(array) if tag == "tensor" else array
        if tag == "qtensor" and isinstance(value, dict):
            return _decode_qtensor(value, arrays, used)
        if tag == "qdtype" and isinstance(value, str):
            from .ao import qtensor
            for dtype in qtensor.QDTYPES:
                if dtype.name == value:
                    return dtype
            raise ValueError(f"the structure names an unknown quantized dtype {value[:20]!r}")
        if tag in ("list", "tuple") and isinstance(value, list):
            items = [_decode(v, arrays, used) for v in value]
            return items if tag == "list" else tuple(items)
        if tag == "dict" and isinstance(value, list):
            out = {}
            for item in value:
                if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], (str, int))
                        and not isinstance(item[0], bool)):
                    raise ValueError(f"malformed dict entry in the structure: {str(item)[:80]}")
                out[item[0]] = _decode(item[1], arrays, used)
            return out
    raise ValueError(f"malformed node in the structure: {str(node)[:80]}")


def _decode_qtensor(node, arrays, used):
    """A QTensor from its JSON tree, its integers and parameters checked
    as torch's ``_make_*_quantized_tensor`` checks them."""
    from .ao import qtensor
    if set(node) != {"int_repr", "scale", "zero_point", "axis"}:
        raise ValueError(f"malformed quantized tensor in the structure: {str(node)[:80]}")
    int_repr, scale, zero_point = (_decode(node[key], arrays, used) for key in ("int_repr", "scale", "zero_point"))
    try:
        if node["axis"] is None:
            return qtensor._make_per_tensor_quantized_tensor(int_repr, scale, zero_point)
        return qtensor._make_per_channel_quantized_tensor(int_repr, scale, zero_point, node["axis"])
    except TypeError as e:
        raise ValueError(f"a quantized tensor in the structure is malformed: {e}") from None


# -- writing ---------------------------------------------------------------
def _as_path(f, caller):
    if not isinstance(f, (str, os.PathLike)):
        raise TypeError(f"{caller}: f must be a file path (str or os.PathLike), got {type(f).__name__}")
    return os.fspath(f)


#: Bytes written at a time: a signal is handled between two writes.
_WRITE_CHUNK = 1 << 24


def _write_all(file, payload):
    """Write ``payload`` to the open ``file``, in chunks (a seam for the
    tests, which make it fail or stall midway)."""
    view = memoryview(payload)
    for start in range(0, len(view), _WRITE_CHUNK):
        file.write(view[start:start + _WRITE_CHUNK])


def _temp_name(path):
    """The temporary file a save to ``path`` writes first:
    ``.NAME.<12 hex digits>.tmp`` beside it."""
    return os.path.join(os.path.dirname(os.path.abspath(path)),
                        f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")


def _write_atomically(path, payload):
    """Replace ``path`` by a file holding ``payload``, so that at every
    moment ``path`` is either the old file or the complete new one.

    No temporary file is left behind: an exception (KeyboardInterrupt
    included) or a SIGTERM during the write removes it, and the temporary
    files of earlier saves to ``path`` that were killed outright (SIGKILL,
    a power cut) are removed first. A save in progress holds an exclusive
    lock (``flock``) on its temporary file, so only the files of dead
    saves are removed, never those of a save running in another process."""
    directory = os.path.dirname(os.path.abspath(path))
    _remove_stale_temp_files(path)
    tmp = None
    with _sigterm_removes(lambda: tmp):
        fd = None
        while fd is None:
            tmp = _temp_name(path)  # named before it exists, so that a SIGTERM from now on removes it
            fd = _create_locked(tmp)
        try:
            with os.fdopen(fd, "wb") as file:
                _write_all(file, payload)
                file.flush()
                os.fsync(file.fileno())
                if fcntl is not None:  # renamed before the lock goes with the close (Windows cannot)
                    os.replace(tmp, path)
            if fcntl is None:
                os.replace(tmp, path)
            tmp = None
        except BaseException:
            _unlink_quietly(tmp)
            raise
    _fsync_directory(directory)


def _create_locked(tmp):
    """Create the file ``tmp`` (O_EXCL: never someone else's) and lock it;
    returns its descriptor, or None if a cleaner removed it meanwhile."""
    # 0o666 lets the umask decide the permissions, as for any new file.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    if fcntl is None:
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # A cleaner may have taken the file for a dead save's between our
        # open and our lock, and removed it: then the caller starts again.
        if os.path.samestat(os.stat(tmp), os.fstat(fd)):
            return fd
    except (BlockingIOError, FileNotFoundError):
        pass
    os.close(fd)
    return None


def _remove_stale_temp_files(path):
    """Remove the temporary files that earlier saves to ``path`` left when
    they were killed: names of minicnn's own pattern for this exact
    ``path``, whose lock nobody holds (a killed process holds none)."""
    if fcntl is None:  # (Windows: no flock to tell a dead save from a running one)
        return
    directory = os.path.dirname(os.path.abspath(path))
    pattern = re.compile(re.escape(f".{os.path.basename(path)}.") + r"[0-9a-f]{12}\.tmp")
    try:
        names = [n for n in os.listdir(directory) if pattern.fullmatch(n)]
    except OSError:
        return
    for name in names:
        stale = os.path.join(directory, name)
        try:
            fd = os.open(stale, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(stale)
        except OSError:  # locked: a save in progress; or already gone
            pass
        finally:
            os.close(fd)


def _unlink_quietly(name):
    if name is not None:
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass


@contextlib.contextmanager
def _sigterm_removes(current_temp):
    """While the block runs, a SIGTERM first removes the temporary file
    ``current_temp()`` names, then does what it did before: call the
    previous Python handler, or, if it was the default, terminate the
    process by SIGTERM as it would have. Only in the main thread (the only
    one where Python runs signal handlers), and only if the previous
    handler was set from Python (it can then be restored exactly)."""
    previous = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    if previous is None or previous == signal.SIG_IGN:
        yield
        return

    def on_sigterm(signum, frame):
        if callable(previous):
            previous(signum, frame)  # if it raises (SystemExit, ...), the write's cleanup removes the file
            return
        _unlink_quietly(current_temp())
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _fsync_directory(directory):
    """Make the rename itself durable (POSIX; Windows cannot open a folder)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
