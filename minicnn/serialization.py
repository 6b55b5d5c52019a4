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
detached), arrays as arrays, tuples as tuples, int keys as ints.

The file
--------
A safetensors file: an 8-byte little-endian header length, a JSON header
naming each array's dtype, shape and byte range, then the raw bytes. Each
array is stored under its dotted path (``model.conv1.weight``,
``optimizer.state.0.exp_avg``). The structure around the arrays goes in the
header's ``__metadata__`` as JSON, where every container is tagged::

    {"dict": [[key, value], ...]}   {"list": [...]}   {"tuple": [...]}
    {"tensor": "model.conv1.weight"}   {"ndarray": "..."}

and numbers, strings, booleans and null stand for themselves. Loading
parses JSON and copies bytes into arrays, nothing else: unlike a pickle,
a checkpoint cannot run code, and a file that does not follow this layout
is refused with a ValueError. A plain safetensors file (written by other
tools) loads as a flat dict of Tensors.

Saving writes to a temporary file in the same directory, flushes it to
disk (fsync) and renames it over ``path`` (``os.replace``, atomic on POSIX
and Windows): a save interrupted at any point leaves the previous file
intact.
"""
import json
import os
import secrets
import struct

import numpy
import safetensors
import safetensors.numpy

from .backend import get_array_module
from .tensor import Tensor

#: The ``__metadata__`` entry that marks a minicnn checkpoint.
FORMAT = "minicnn.checkpoint/1"

_ALLOWED_DTYPES = frozenset("fiub")


def save(obj, f):
    """Write ``obj`` (a state dict or a checkpoint dict, see the module
    docstring) to the file path ``f``, atomically."""
    path = _as_path(f, "save")
    arrays = {}
    structure = _encode(obj, [], arrays)
    metadata = {"format": FORMAT, "structure": json.dumps(structure)}
    _write_atomically(path, safetensors.numpy.save(arrays, metadata=metadata))


def load(f):
    """Read what ``save`` wrote to the file path ``f``. Raises ValueError
    for a truncated, corrupted or foreign file."""
    path = _as_path(f, "load")
    with open(path, "rb") as file:
        payload = file.read()
    metadata = _read_metadata(payload, path)
    try:
        arrays = safetensors.numpy.load(payload)
    except safetensors.SafetensorError as e:
        raise ValueError(f"load: {path!r} is not a valid safetensors file ({e})") from None
    except KeyError as e:  # a dtype NumPy has no type for (BF16, F8_*)
        raise ValueError(f"load: {path!r} holds a dtype NumPy cannot represent ({e}); "
                         f"mc.load_weights reads bfloat16 as float32") from None
    if metadata.get("format") != FORMAT:
        # A plain safetensors file: its tensors, by name.
        return {name: Tensor._wrap(_writable(a)) for name, a in arrays.items()}
    try:
        structure = json.loads(metadata["structure"])
    except (KeyError, TypeError, ValueError, RecursionError):
        raise ValueError(f"load: {path!r} has a damaged structure record in its header") from None
    used = set()
    try:
        obj = _decode(structure, arrays, used)
    except RecursionError:
        raise ValueError(f"load: {path!r} has a structure nested too deeply") from None
    unused = set(arrays) - used
    if unused:
        raise ValueError(f"load: {path!r} holds arrays its structure does not mention: {sorted(unused)[:5]}")
    return obj


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


def _store(array, path, arrays):
    """Add ``array`` under its dotted path (made unique) and return the name."""
    if get_array_module(array) is not numpy:
        array = array.get()
    if array.dtype.kind not in _ALLOWED_DTYPES:
        raise TypeError(f"save: cannot save an array of dtype {array.dtype} at {_where(path)}")
    base = ".".join(path) or "tensor"
    name, n = base, 1
    while name in arrays:
        name, n = f"{base}#{n}", n + 1
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
                raise ValueError(f"load: the structure names an array {value!r} that the file does not hold")
            used.add(value)
            array = _writable(arrays[value])
            return Tensor._wrap(array) if tag == "tensor" else array
        if tag in ("list", "tuple") and isinstance(value, list):
            items = [_decode(v, arrays, used) for v in value]
            return items if tag == "list" else tuple(items)
        if tag == "dict" and isinstance(value, list):
            out = {}
            for item in value:
                if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], (str, int))
                        and not isinstance(item[0], bool)):
                    raise ValueError(f"load: malformed dict entry in the structure: {str(item)[:80]}")
                out[item[0]] = _decode(item[1], arrays, used)
            return out
    raise ValueError(f"load: malformed node in the structure: {str(node)[:80]}")


def _writable(array):
    return array if array.flags.writeable else array.copy()


def _read_metadata(payload, path):
    """The header's ``__metadata__`` (a dict of strings), after checking
    that the header is complete and is JSON."""
    if len(payload) < 8:
        raise ValueError(f"load: {path!r} is truncated or empty ({len(payload)} bytes)")
    (header_size,) = struct.unpack("<Q", payload[:8])
    if header_size > len(payload) - 8:
        raise ValueError(
            f"load: {path!r} is truncated or not a safetensors file: its header claims {header_size} bytes "
            f"but only {len(payload) - 8} follow")
    try:
        header = json.loads(payload[8:8 + header_size].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ValueError(f"load: {path!r} has a corrupted header (not JSON)") from None
    metadata = header.get("__metadata__", {}) if isinstance(header, dict) else None
    if not isinstance(metadata, dict):
        raise ValueError(f"load: {path!r} has a corrupted header")
    return metadata


# -- writing ---------------------------------------------------------------
def _as_path(f, caller):
    if not isinstance(f, (str, os.PathLike)):
        raise TypeError(f"{caller}: f must be a file path (str or os.PathLike), got {type(f).__name__}")
    return os.fspath(f)


def _write_all(file, payload):
    """Write ``payload`` to the open ``file`` (a seam for the tests, which
    make it fail midway)."""
    file.write(payload)


def _write_atomically(path, payload):
    """Replace ``path`` by a file holding ``payload``, so that at every
    moment ``path`` is either the old file or the complete new one."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    # O_EXCL: never clobber someone else's file; 0o666 lets the umask decide
    # the permissions, as for any new file.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            _write_all(file, payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def _fsync_directory(directory):
    """Make the rename itself durable (POSIX; Windows cannot open a folder)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
