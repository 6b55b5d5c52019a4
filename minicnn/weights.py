"""Weight files: ``mc.load_weights(path)`` reads a torch ``.pth``/``.pt``
file (without torch), a safetensors file or a NumPy ``.npz`` file;
``mc.save_weights(state_dict_or_module, path)`` writes safetensors or npz.

Using torchvision's pretrained weights
--------------------------------------
minicnn's models have torchvision's parameter names, so torchvision's
checkpoints load as they are. torchvision downloads them into
``~/.cache/torch/hub/checkpoints/`` (``$TORCH_HOME/hub/checkpoints``); the
file name is in the weights' URL, e.g. ``ResNet50_Weights.IMAGENET1K_V2``
is ``resnet50-11ad3fa6.pth``. Download it once (with torchvision, or the
URL from its documentation), then, torch or not::

    import minicnn as mc
    model = mc.models.resnet50()
    model.load_state_dict(mc.load_weights("~/.cache/torch/hub/checkpoints/resnet50-11ad3fa6.pth"))
    model.eval()

and, to keep a copy that any tool reads without unpickling anything::

    mc.save_weights(model, "resnet50.safetensors")
    model.load_state_dict(mc.load_weights("resnet50.safetensors"))

Formats
-------
The format is read from the file's first bytes, not from its name:

* torch files, the zip layout (``torch.save`` since torch 1.6) and the
  legacy one (older files, among them several of torchvision's weights):
  see ``minicnn.torch_pickle``. Only the globals that rebuild tensors and
  ``collections.OrderedDict`` may be imported; a file that names anything
  else (``os.system``, a pickled model class, ...) is refused with
  ``UnsafeWeightsError`` before anything is imported or run.
* safetensors: a JSON header naming each tensor's dtype, shape and byte
  range, then the bytes. A checkpoint written by ``mc.save`` loads as
  ``mc.load`` would load it. Files written by ``mc.save`` and
  ``mc.save_weights`` hold a SHA-256 of every tensor, checked on load
  (``minicnn.serialization`` describes the record); files of other tools
  have none and load unchecked.
* npz: a zip of ``.npy`` files, read with ``allow_pickle=False``.

What ``load_weights`` returns: for a torch file, what ``torch.load`` would
(a state dict is an ``OrderedDict`` of name -> Tensor; a checkpoint such
as ``{"model": state_dict, "epoch": 3}`` keeps its nesting, so pass
``checkpoint["model"]`` to ``load_state_dict``), with every torch tensor as
a minicnn Tensor viewing its storage, as ``torch.load`` gives (tensors
that shared a storage share memory; one that repeats elements, as
``expand()`` makes, is a read-only view); for safetensors and npz files,
an ``OrderedDict`` of name -> Tensor, each with its own memory.

Dtypes: float16/32/64, int8/16/32/64, uint8/16/32/64 and bool load as
themselves; bfloat16 (no NumPy dtype) loads as float32, exactly. torch's
quantized tensors (quint8, qint8, qint32, per tensor or per channel: a
converted int8 model's state dict, torchvision's quantized weights) load as
``minicnn.ao.QTensor``, their parameters checked, so that minicnn's
converted model loads them (see ``minicnn.torch_pickle``). Complex, float8,
4-bit quantized tensors and float zero points are refused with a ValueError.

Memory: loading allocates about the file's size (the file's bytes, read
once), and never more than the file's size plus
``minicnn.torch_pickle.MAX_EXTRA_BYTES`` (what decompression or widening
bfloat16 adds); declared sizes are checked before anything is allocated.

Errors: a truncated, corrupted or crafted file, or one in no format
above, raises ValueError naming the path and the reason. Missing keys and wrong shapes are reported
by ``Module.load_state_dict``, which names the keys and both shapes.
"""
import collections
import io
import os
import struct
import zipfile
import zlib
from collections.abc import Mapping

import numpy
import safetensors.numpy

from . import serialization
from .backend import get_array_module
from .nn.module import Module
from .serialization import SAFETENSORS_DTYPES, _as_path, _write_atomically, aligned_view, read_file, read_safetensors
from .tensor import Tensor
from .torch_pickle import UnsafeWeightsError, LoadBudget, check_zip_member, load_legacy, load_zip

__all__ = ["load_weights", "save_weights", "UnsafeWeightsError"]

_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; an empty archive
_EXTENSIONS = (".safetensors", ".npz")


def load_weights(path):
    """The tensors in the weights file ``path`` (a torch ``.pth``/``.pt``
    file, a safetensors file or an ``.npz`` file, told apart by content),
    as minicnn Tensors: an ``OrderedDict`` of name -> Tensor for a state
    dict, or the checkpoint's own nesting (see the module docstring).
    ``~`` in ``path`` is expanded. Loading never runs code from the file,
    and allocates at most the file's size plus
    ``minicnn.torch_pickle.MAX_EXTRA_BYTES``. A file that cannot be read
    raises OSError (missing, unreadable) or ValueError naming the path."""
    path = os.path.expanduser(_as_path(path, "load_weights"))
    try:
        return _load_weights(path)
    except (OSError, ValueError):
        raise
    except Exception as e:  # noqa: BLE001 - whatever a crafted file provokes becomes one kind of error
        reason = str(e).splitlines()[0][:200] if str(e) else ""
        raise ValueError(f"load_weights: {path!r} cannot be read ({type(e).__name__}: {reason})") from None


def _load_weights(path):
    with open(path, "rb") as file:
        budget = LoadBudget(path, os.fstat(file.fileno()).st_size)
        head = file.read(512)
        if not head:
            raise ValueError(f"load_weights: {path!r} is empty")
        if head.startswith(_ZIP_MAGICS):
            return _load_zip(path, budget)
        if len(head) >= 9 and head[8:9] == b"{":
            return _load_safetensors(path, budget)
        if head.startswith(b"\x80"):  # the PROTO opcode that starts a binary pickle
            file.seek(0)
            return load_legacy(file, path, budget)
    if len(head) >= 262 and head[257:262] == b"ustar":
        raise ValueError(f"load_weights: {path!r} is a tar archive, torch's format before version 0.1.10, which "
                         f"minicnn does not read: load it with torch and torch.save it again")
    raise ValueError(f"load_weights: {path!r} is not a weights file minicnn can read (a torch .pth/.pt file, "
                     f"a safetensors file or an .npz file); it starts with {head[:16]!r}")


def save_weights(state_dict, path):
    """Write ``state_dict`` (a mapping of name -> tensor or array, or a
    Module, whose ``state_dict()`` is written) to ``path``, atomically:
    safetensors if ``path`` ends in ``.safetensors``, NumPy's npz if it
    ends in ``.npz``. Both hold arrays only and load without running
    code. For checkpoints with nesting, numbers or optimizer state, use
    ``mc.save``. A safetensors file also holds the SHA-256 of every
    tensor, which ``load_weights`` and ``mc.load`` check (see
    ``minicnn.serialization``); an npz file is a zip, whose CRC-32 per
    array NumPy's reader checks."""
    path = os.path.expanduser(_as_path(path, "save_weights"))
    extension = os.path.splitext(path)[1].lower()
    if extension not in _EXTENSIONS:
        raise ValueError(f"save_weights: cannot tell the format from the path {path!r}: "
                         f"it must end in .safetensors or .npz")
    if isinstance(state_dict, Module):
        state_dict = state_dict.state_dict()
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"save_weights: expected a state_dict (a mapping of name -> tensor) or a Module, "
                        f"got {type(state_dict).__name__}")
    arrays = collections.OrderedDict()
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise TypeError(f"save_weights: state_dict keys must be strings, got {key!r}")
        if key == "__metadata__" and extension == ".safetensors":
            raise ValueError(f"save_weights: {path!r}: a safetensors file cannot hold a tensor named "
                             f"'__metadata__' (the name of its header's own entry); rename the key, or save "
                             f"to .npz or with mc.save, which hold any name")
        arrays[key] = _as_numpy(value, key)
    if extension == ".safetensors":
        metadata = serialization.with_checksums(arrays, {serialization.WEIGHTS_MARK: "weights/1"})
        payload = safetensors.numpy.save(arrays, metadata=metadata)
    else:
        payload = _npz_bytes(arrays)
    _write_atomically(path, payload)


# -- saving ------------------------------------------------------------------
def _as_numpy(value, key):
    """``value`` (a Tensor, an array, or a torch tensor) as a C-contiguous,
    little-endian NumPy array with a numeric dtype."""
    if isinstance(value, Tensor):
        array = value.numpy_copy()
    elif isinstance(value, numpy.ndarray) or get_array_module(value) is not numpy:
        array = value if isinstance(value, numpy.ndarray) else value.get()
    elif isinstance(value, (Mapping, list, tuple, str)) or value is None:
        raise TypeError(f"save_weights: the value for {key!r} is a {type(value).__name__}; save_weights writes "
                        f"a flat state_dict (name -> tensor). Use mc.save for nested checkpoints")
    else:
        # A torch tensor (duck-typed: minicnn never imports torch).
        for step in ("detach", "cpu"):
            if callable(getattr(value, step, None)):
                value = getattr(value, step)()
        try:
            array = numpy.asarray(value.numpy() if callable(getattr(value, "numpy", None)) else value)
        except Exception as e:  # noqa: BLE001 - any failure means "not array-like"
            raise TypeError(f"save_weights: the value for {key!r} ({type(value).__name__}) cannot be read "
                            f"as an array: {e}") from None
    if array.dtype.kind not in "fiub":
        raise TypeError(f"save_weights: the value for {key!r} has dtype {array.dtype}; weight files hold "
                        f"float, int and bool arrays")
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    # (Not ascontiguousarray: it would turn a 0-d array into a 1-d one.)
    return array if array.flags.c_contiguous else array.copy(order="C")


def _npz_bytes(arrays):
    """What ``numpy.savez`` writes, built by hand so that any key works
    (``savez(**arrays)`` would trip over keys such as "file")."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays.items():
            with archive.open(name + ".npy", "w", force_zip64=True) as member:
                numpy.lib.format.write_array(member, array, allow_pickle=False)
    return buffer.getvalue()


# -- loading -----------------------------------------------------------------
# Errors the zip reader raises for a damaged archive.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, struct.error, NotImplementedError)


def _load_zip(path, budget):
    """A torch zip file or an npz file, told apart by their member names."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if all(name.endswith(".npy") for name in names):  # (an npz with no arrays is an empty zip)
                return _load_npz(archive, path, budget)
            return load_zip(archive, path, budget)
    except _ZIP_ERRORS as e:
        raise ValueError(f"load_weights: {path!r} is truncated or corrupted ({type(e).__name__}: {e})") from None


def _load_npz(archive, path, budget):
    """The arrays of an npz file. Each ``.npy`` header is read first, and
    its shape checked against the member's declared size and the budget,
    so that a forged shape is refused before NumPy allocates it."""
    weights = collections.OrderedDict()
    for info in archive.infolist():
        key = info.filename[:-len(".npy")]
        check_zip_member(info, path)
        try:
            with archive.open(info) as member:
                shape, dtype = _npy_header(member)
                if dtype.kind not in "fiub":
                    raise ValueError(f"dtype {dtype}, not a number type")
                nbytes = dtype.itemsize
                for n in shape:
                    nbytes *= n
                if nbytes > info.file_size:
                    raise ValueError(f"its header claims shape {shape} of {dtype} ({nbytes} bytes), but the record "
                                     f"holds {info.file_size} bytes")
                budget.take(nbytes, f"array {key!r}")
            with archive.open(info) as member:
                array = numpy.lib.format.read_array(member, allow_pickle=False)
        except _ZIP_ERRORS + (ValueError, OSError) as e:
            raise ValueError(f"load_weights: {path!r}: array {key!r} cannot be read ({e})") from None
        weights[key] = Tensor._wrap(array)
    return weights


def _npy_header(member):
    """``(shape, dtype)`` from the header of the ``.npy`` stream ``member``."""
    version = numpy.lib.format.read_magic(member)
    if version == (1, 0):
        shape, _, dtype = numpy.lib.format.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, _, dtype = numpy.lib.format.read_array_header_2_0(member)
    else:  # 3.0 exists only for structured dtypes with non-ASCII field names: never numbers
        raise ValueError(f"unsupported .npy format version {version}")
    return shape, dtype


def _load_safetensors(path, budget):
    """A safetensors file's tensors by name; a ``mc.save`` checkpoint as
    ``mc.load`` reads it. Parsed here rather than by the safetensors
    library, which has no NumPy type for bfloat16 (read here as float32).
    Each tensor is a view of the buffer holding the file (their byte
    ranges may not overlap, so no two share memory); a bfloat16 tensor is
    widened into a new float32 array."""
    metadata, entries, data = read_safetensors(read_file(path), path, "load_weights")
    if metadata.get("format") in (serialization.FORMAT, serialization.FORMAT_WITHOUT_CHECKSUMS):
        return serialization.load_parsed(metadata, entries, data, path)
    weights = collections.OrderedDict()
    for name, dtype, shape, begin, end in entries:
        raw = data[begin:end]
        if dtype == "BF16":
            budget.take(2 * raw.size, f"widening bfloat16 tensor {name!r} to float32")
            widened = numpy.empty(raw.size // 2, dtype=numpy.uint32)
            widened[...] = aligned_view(raw, SAFETENSORS_DTYPES[dtype], (raw.size // 2,))
            widened <<= 16  # bfloat16 is the high half of a float32
            array = widened.view(numpy.float32).reshape(shape)
        else:
            array = aligned_view(raw, serialization._NUMPY_DTYPES[dtype], shape)
        weights[name] = Tensor._wrap(array)
    return weights
