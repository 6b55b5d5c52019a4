"""Reading files written by ``torch.save`` without torch, and without
running any code the file asks for.

Why this needs care
-------------------
``torch.save`` writes a *pickle*: a small program for a stack machine that
rebuilds the object. Its ``GLOBAL`` instructions import any callable by
name and its ``REDUCE`` instructions call it, so ``pickle.load`` on a file
from the internet runs whatever the file asks for (``os.system``, ...).
Here every import goes through ``_RestrictedUnpickler.find_class``, which
knows a short allowlist (``ALLOWED_GLOBALS``) and maps each allowed name to
minicnn's own implementation; any other name raises ``UnsafeWeightsError``
*before* the object is imported, so nothing the file names ever runs.
torch itself is never imported.

What a tensor looks like in the pickle
--------------------------------------
A state dict pickles as ``collections.OrderedDict`` filled with tensors,
each one ``torch._utils._rebuild_tensor_v2(storage, storage_offset, size,
stride, requires_grad, backward_hooks[, metadata])``. The storage is not in
the pickle: it is a *persistent id*, ``("storage", torch.FloatStorage,
key, location, numel)``, that names raw bytes stored elsewhere in the file.
The tensor is the strided view ``storage[offset + sum(i_k * stride_k)]``.
Dtypes without a legacy storage class (``torch.uint16``, ...) pickle as
``_rebuild_tensor_v3(untyped_storage, ..., dtype)`` instead, with the
storage counted in bytes.

The two file layouts
--------------------
* zip (torch >= 1.6, the default): ``<archive>/data.pkl`` is the pickle,
  ``<archive>/data/<key>`` holds each storage's raw bytes, and
  ``<archive>/byteorder`` says ``little`` or ``big``.
* legacy (``_use_new_zipfile_serialization=False`` and files written before
  2020, such as several of torchvision's pretrained weights): five pickles
  and raw data in one stream: a magic number, a protocol version (1001), a
  ``sys_info`` dict (``little_endian``, ...), the object itself, the list
  of storage keys; then, for each key in that order, an 8-byte element
  count followed by the storage's raw bytes.

What a file may change
----------------------
Besides calling, a pickle can *modify* an object: ``BUILD`` sets state on
the object below it on the stack (through its ``__setstate__``, its
``__dict__`` or ``setattr``). Aimed at an allowed global, say
``_rebuild_tensor_v2`` with state ``{'__defaults__': ()}``, it would rewrite
minicnn's own function for every later load in the process. So the
unpickler is Python's pure-Python one with its own ``BUILD``
(``_RestrictedUnpickler.load_build``): state may go only into the
``__dict__`` of an ``OrderedDict`` the file itself created (how torch
pickles a state dict's ``_metadata``); anything else is refused.

In both, the pickle refers to storages before their bytes are read (legacy)
or read lazily (zip), so rebuilding a tensor first makes a ``_PendingTensor``
(storage, offset, size, stride, dtype); once every storage is in memory,
``_finish`` replaces each one by a Tensor that is a *view* of its storage,
after checking that the view stays inside it.

Quantized tensors
-----------------
A converted int8 model's state dict (``torch.ao.quantization.convert``,
torchvision's quantized weights) holds quantized tensors, each
``torch._utils._rebuild_qtensor(storage, storage_offset, size, stride,
quantizer_params, requires_grad, backward_hooks)`` on a storage of a
quantized type: ``torch.QUInt8Storage`` (quint8), ``torch.QInt8Storage``
(qint8) or ``torch.QInt32Storage`` (qint32), in both layouts. The
quantizer parameters are ``(torch.per_tensor_affine, scale, zero_point)``
or ``(torch.per_channel_affine, scales, zero_points, axis)``, ``scales``
a float64 and ``zero_points`` an int64 tensor of ``size[axis]`` elements
(or lists, in older files). Such a tensor loads as a ``minicnn.ao.QTensor``
whose integers view the storage as other tensors do; its parameters are
checked first (scales positive and finite, zero points inside the dtype's
range, axis a dim of the tensor, one scale and zero point per channel),
and a bad one is a ValueError naming the file and the key. The names
``torch.quint8``, ``torch.qint8``, ``torch.qint32`` (a quantized
Linear's ``_packed_params.dtype``) load as ``minicnn.quint8``, ... and
``torch.per_tensor_affine`` / ``torch.per_channel_affine`` as minicnn's
schemes. ``torch.per_channel_affine_float_qparams`` (float zero points,
torch's quantized embeddings) is recognised and refused with
``UnsupportedDtypeError``, as are 4- and 2-bit quantized storages; other
schemes are not in the allowlist. A quantized storage can only be read
through ``_rebuild_qtensor``, and ``_rebuild_qtensor`` only reads a
quantized storage.

Bounded memory
--------------
A file of a few hundred bytes may ask for tensors of gigabytes: a stride-0
view (what ``expand()`` makes) repeats one element, and many tensors may
view one storage. So, as ``torch.load`` does, each storage is read once
into one writable native array, and every tensor is a view of it: tensors
that shared a storage in torch share memory here too (writing one changes
the other, as in torch), and a view that repeats elements is read-only
(as NumPy's ``broadcast_to``), never expanded into a copy. What the loader
allocates is then the storages' bytes, which the file holds, and only
decompression (a zip record's declared size) or widening (bfloat16 to
float32) can go beyond the file's own size: a ``LoadBudget`` checks each
of those sizes *before* allocating and refuses, with a ValueError naming
the path, a file that would make the loader allocate more than its own
size plus ``MAX_EXTRA_BYTES``.
"""
import _compat_pickle
import collections
import io
import os
import pickle
import reprlib
import struct
import sys

import numpy
from numpy.lib.stride_tricks import as_strided

from .tensor import Tensor


class UnsafeWeightsError(ValueError):
    """A weights file asked to import something outside the allowlist
    (code to run, a whole pickled model, ...). Raised before it is
    imported, so nothing in the file ran."""


# -- the names a pickle may import -------------------------------------------
class _DtypeToken:
    """What ``torch.FloatStorage`` or ``torch.float32`` turns into: its name
    and the element type it stands for (a key of ``ELEMENT_TYPES``; ``None``
    for an untyped byte storage). Not callable, and BUILD refuses it
    (``_RestrictedUnpickler.load_build``), so the pickle can pass it around
    and do nothing else with it."""

    __slots__ = ("name", "element")

    def __init__(self, name, element):
        self.name = name
        self.element = element

    def __repr__(self):
        return self.name


#: The element types a storage may hold, by torch's dtype name, with how
#: the bytes are stored (little-endian; a big-endian file swaps them).
#: bfloat16 has no NumPy dtype: its 16 bits are read as uint16 and widened
#: to float32, exactly (bfloat16 is float32 with the low 16 bits cut off).
ELEMENT_TYPES = {
    "float64": numpy.dtype("<f8"), "float32": numpy.dtype("<f4"), "float16": numpy.dtype("<f2"),
    "bfloat16": numpy.dtype("<u2"), "int64": numpy.dtype("<i8"), "int32": numpy.dtype("<i4"),
    "int16": numpy.dtype("<i2"), "int8": numpy.dtype("i1"), "uint8": numpy.dtype("u1"),
    "uint16": numpy.dtype("<u2"), "uint32": numpy.dtype("<u4"), "uint64": numpy.dtype("<u8"),
    "bool": numpy.dtype("u1"),
}

# Legacy storage classes (``torch.FloatStorage``) and dtype objects
# (``torch.float32``, with torch's aliases), by name.
_STORAGE_CLASSES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16",
    "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
}
_DTYPE_ALIASES = {"double": "float64", "float": "float32", "half": "float16", "long": "int64", "int": "int32",
                  "short": "int16"}
# torch names minicnn recognises but cannot represent: a clearer error than
# "not in the allowlist".
_UNSUPPORTED_DTYPE_PREFIXES = ("Complex", "QInt", "QUInt", "complex", "cfloat", "cdouble", "chalf",
                               "float8", "float4", "qint", "quint", "bits")


#: The quantized element types, with the integer type each one stores.
QUANTIZED_TYPES = {"quint8": "uint8", "qint8": "int8", "qint32": "int32"}
_QUANTIZED_STORAGE_CLASSES = {"QUInt8Storage": "quint8", "QInt8Storage": "qint8", "QInt32Storage": "qint32"}


class UnsupportedDtypeError(ValueError):
    """The file holds tensors of a dtype minicnn cannot represent."""


class _QschemeToken:
    """What ``torch.per_tensor_affine`` (a quantization scheme) turns into:
    its name, inert like ``_DtypeToken``."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"torch.{self.name}"


_QSCHEMES = ("per_tensor_affine", "per_channel_affine", "per_channel_affine_float_qparams")


def _rebuild_tensor(storage, storage_offset, size, stride):
    """``torch._utils._rebuild_tensor`` (files from torch < 0.4)."""
    return _PendingTensor(storage, storage_offset, size, stride, _storage_element(storage))


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
    """``torch._utils._rebuild_tensor_v2``. ``requires_grad``, the hooks
    (an empty OrderedDict in a saved state dict) and the metadata (flags
    such as "is conjugated") do not change the values and are dropped."""
    return _PendingTensor(storage, storage_offset, size, stride, _storage_element(storage))


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype,
                       metadata=None):
    """``torch._utils._rebuild_tensor_v3``: an untyped (byte) storage viewed
    as ``dtype``; offset and strides count elements of ``dtype``."""
    if not isinstance(dtype, _DtypeToken) or dtype.element not in ELEMENT_TYPES:
        raise pickle.UnpicklingError(f"_rebuild_tensor_v3 expects a torch dtype, got {_brief(dtype)}")
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError(f"_rebuild_tensor_v3 expects a storage, got {type(storage).__name__}")
    return _PendingTensor(storage, storage_offset, size, stride, dtype.element)


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
    """``torch._utils._rebuild_parameter[_with_state]``: a Parameter is its
    tensor here (``load_state_dict`` copies values, not Parameters)."""
    if not isinstance(data, _PendingTensor):
        raise pickle.UnpicklingError(f"_rebuild_parameter expects a tensor, got {type(data).__name__}")
    return data


def _size(dims):
    """``torch.Size``: a tuple of ints."""
    return tuple(_check_ints(dims, "torch.Size"))


def _storage_element(storage):
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError(f"a tensor's storage must be a storage record, got {type(storage).__name__}")
    if storage.element is None:
        raise pickle.UnpicklingError("an untyped storage needs _rebuild_tensor_v3, which names the dtype")
    if storage.element in QUANTIZED_TYPES:
        raise pickle.UnpicklingError(f"a storage of {storage.element} holds a quantized tensor, which only "
                                     f"_rebuild_qtensor rebuilds")
    return storage.element


def _rebuild_qtensor(storage, storage_offset, size, stride, quantizer_params, requires_grad, backward_hooks):
    """``torch._utils._rebuild_qtensor``: the integers in a quantized
    storage, with ``quantizer_params`` ``(per_tensor_affine, scale,
    zero_point)`` or ``(per_channel_affine, scales, zero_points, axis)``.
    Their types and lengths are checked here, their values once the
    storages are in (``_PendingQTensor.materialize``)."""
    if not isinstance(storage, _Storage) or storage.element not in QUANTIZED_TYPES:
        raise pickle.UnpicklingError(f"_rebuild_qtensor expects a storage of quint8, qint8 or qint32, got "
                                     f"{_brief(getattr(storage, 'element', storage))}")
    integers = _PendingTensor(storage, storage_offset, size, stride, QUANTIZED_TYPES[storage.element])
    if not (isinstance(quantizer_params, tuple) and quantizer_params
            and isinstance(quantizer_params[0], _QschemeToken)):
        raise pickle.UnpicklingError(f"_rebuild_qtensor expects (qscheme, ...) quantizer parameters, got "
                                     f"{_brief(quantizer_params)}")
    scheme = quantizer_params[0].name
    if scheme == "per_channel_affine_float_qparams":
        raise UnsupportedDtypeError(
            "the file holds a tensor quantized with torch.per_channel_affine_float_qparams (float zero points, "
            "torch's quantized embeddings), which minicnn cannot represent (supported: per_tensor_affine, "
            "per_channel_affine)")
    if scheme == "per_tensor_affine":
        if len(quantizer_params) != 3:
            raise pickle.UnpicklingError(f"per_tensor_affine expects (qscheme, scale, zero_point), got "
                                         f"{_brief(quantizer_params)}")
        _, scale, zero_point = quantizer_params
        if isinstance(scale, bool) or not isinstance(scale, (float, int)):
            raise pickle.UnpicklingError(f"a quantized tensor's scale must be a float, got {_brief(scale)}")
        if isinstance(zero_point, bool) or not isinstance(zero_point, int):
            raise pickle.UnpicklingError(f"a quantized tensor's zero_point must be an int, got {_brief(zero_point)}")
        return _PendingQTensor(integers, storage.element, scheme, float(scale), zero_point, None)
    if len(quantizer_params) != 4:
        raise pickle.UnpicklingError(f"per_channel_affine expects (qscheme, scales, zero_points, axis), got "
                                     f"{_brief(quantizer_params)}")
    _, scales, zero_points, axis = quantizer_params
    if isinstance(axis, bool) or not isinstance(axis, int) or not 0 <= axis < len(integers.size):
        raise pickle.UnpicklingError(f"a per-channel quantized tensor of size {integers.size} has axis "
                                     f"{_brief(axis)}, not one of its dims")
    channels = integers.size[axis]
    for what, value, kind in (("scales", scales, float), ("zero_points", zero_points, int)):
        if isinstance(value, list):
            if not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
                raise pickle.UnpicklingError(f"a quantized tensor's {what} must be {kind.__name__}s, got "
                                             f"{_brief(value)}")
            length = len(value)
        elif isinstance(value, _PendingTensor):
            length = value.size[0] if len(value.size) == 1 else None
        else:
            raise pickle.UnpicklingError(f"a quantized tensor's {what} must be a tensor or a list, got "
                                         f"{_brief(value)}")
        if length != channels:
            shape = f"{len(value)} values" if isinstance(value, list) else f"size {value.size}"
            raise pickle.UnpicklingError(f"a per-channel quantized tensor of size {integers.size} needs "
                                         f"{channels} {what} (the size of axis {axis}), got {shape}")
    return _PendingQTensor(integers, storage.element, scheme, scales, zero_points, axis)


def _build_allowlist():
    """``(module, name) -> object`` for every global a weights file may
    name. Each entry is inert data (a dtype token), a container constructor,
    or one of the rebuild functions above, which only check and record
    their arguments."""
    allowed = {
        # Builds an ordered dict from (key, value) pairs: the state dict itself.
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch", "Size"): _size,
        ("torch._utils", "_rebuild_qtensor"): _rebuild_qtensor,
        ("torch.storage", "UntypedStorage"): _DtypeToken("torch.storage.UntypedStorage", None),
        ("torch", "UntypedStorage"): _DtypeToken("torch.UntypedStorage", None),
    }
    for name, element in _STORAGE_CLASSES.items():
        # torch.cuda.FloatStorage: files saved from the GPU by torch < 1.0.
        for module in ("torch", "torch.cuda"):
            allowed[module, name] = _DtypeToken(f"{module}.{name}", element)
    for name in list(ELEMENT_TYPES) + list(_DTYPE_ALIASES):
        allowed["torch", name] = _DtypeToken(f"torch.{name}", _DTYPE_ALIASES.get(name, name))
    for name, element in _QUANTIZED_STORAGE_CLASSES.items():
        allowed["torch", name] = _DtypeToken(f"torch.{name}", element)
    for name in QUANTIZED_TYPES:
        allowed["torch", name] = _DtypeToken(f"torch.{name}", name)
    for name in _QSCHEMES:
        allowed["torch", name] = _QschemeToken(name)
    return allowed


#: The globals a weights file may import, and what each one becomes.
ALLOWED_GLOBALS = _build_allowlist()


def _find_allowed(module, name):
    """The object standing for global ``module.name``, or UnsafeWeightsError."""
    if (module, name) in ALLOWED_GLOBALS:
        return ALLOWED_GLOBALS[module, name]
    if module in ("torch", "torch.cuda") and name.startswith(_UNSUPPORTED_DTYPE_PREFIXES):
        raise UnsupportedDtypeError(
            f"the file holds tensors of type {module}.{name}, which minicnn cannot represent "
            f"(supported: float16/32/64, bfloat16 (read as float32), int8/16/32/64, uint8/16/32/64, bool, "
            f"quint8, qint8, qint32)")
    hint = ""
    if module.startswith(("torch", "__torch__", "__main__")):
        hint = (" The file seems to pickle whole objects (such as a model), not just tensors: if you trust it, "
                "load it with torch and save model.state_dict() instead.")
    raise UnsafeWeightsError(
        f"refused to import {module}.{name}{_python3_name(module, name)}: the file asks for it, and a weights "
        f"file may only name tensor-rebuilding functions, storage types, dtypes, quantization schemes and "
        f"collections.OrderedDict. "
        f"Nothing from the file was run.{hint}")


def _python3_name(module, name):
    """" (Python 3: subprocess.Popen)" for a Python 2 name such as
    ``commands.Popen``, which protocol-2 pickles (torch's) write; else ""."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[module, name]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    else:
        return ""
    return f" (Python 3: {module}.{name})"


# -- storages and tensors ------------------------------------------------
class _Storage:
    """One storage record: ``numel`` elements of type ``element`` (a key of
    ELEMENT_TYPES; ``None``: bytes), whose bytes arrive later (``raw``), or
    a slice of another storage (``base``, ``start``: legacy storage views)."""

    __slots__ = ("key", "element", "numel", "raw", "base", "start", "_native", "_native_element")

    def __init__(self, key, element, numel, base=None, start=0):
        self.key = key
        self.element = element
        self.numel = numel
        self.raw = None
        self.base = base
        self.start = start
        self._native = None
        self._native_element = None

    @property
    def itemsize(self):
        if self.element is None:
            return 1
        return ELEMENT_TYPES[QUANTIZED_TYPES.get(self.element, self.element)].itemsize

    def data(self):
        """The storage's bytes (a 1-D uint8 array)."""
        if self.base is not None:
            begin = self.start * self.itemsize
            return self.base.data()[begin:begin + self.numel * self.itemsize]
        if self.raw is None:
            raise ValueError(f"storage {self.key!r} has no data in the file")
        return self.raw

    def native(self, element, byteorder, budget):
        """The storage's elements as a 1-D native array of the dtype
        ``element`` loads as (``_result_dtype``), converted once, in place
        where the size allows: every tensor on this storage views it."""
        if self.base is not None:
            root = self.base.native(element, byteorder, budget)
            return root[self.start:self.start + self.numel]
        if self._native is None:
            self._native = _native_storage(self.data(), element, byteorder, budget, self.key)
            self._native_element = element
        elif self._native_element != element:  # torch.save refuses this too
            raise ValueError(f"storage {self.key!r} is viewed both as {self._native_element} and as {element}")
        return self._native

    __hash__ = None  # not a dict key either


#: The most bytes loading one weights file may allocate beyond the file's
#: own size (decompressed zip records, bfloat16 widened to float32, ...).
#: Raise it (``minicnn.torch_pickle.MAX_EXTRA_BYTES = ...``) to load a
#: trusted file that needs more.
MAX_EXTRA_BYTES = 2 ** 32


class LoadBudget:
    """What loading the file ``path`` (of ``file_size`` bytes) may allocate:
    ``take(nbytes, what)`` before each large allocation refuses, with a
    ValueError naming the path, one that would bring the total over the
    file's size plus ``MAX_EXTRA_BYTES``."""

    def __init__(self, path, file_size, caller="load_weights"):
        self.path = path
        self.file_size = file_size
        self.caller = caller
        self.used = 0

    def take(self, nbytes, what):
        limit = self.file_size + MAX_EXTRA_BYTES
        if self.used + nbytes > limit:
            raise ValueError(
                f"{self.caller}: {self.path!r}: {what} needs {nbytes} bytes, which would make the loader allocate "
                f"{self.used + nbytes} bytes for a file of {self.file_size}: over the limit of the file's size "
                f"plus MAX_EXTRA_BYTES ({MAX_EXTRA_BYTES}, minicnn.torch_pickle.MAX_EXTRA_BYTES); the file is "
                f"corrupted or crafted, or, if you trust it, raise that limit")
        self.used += nbytes


class _PendingTensor:
    """A tensor the pickle asked for: a view of ``storage`` to copy once the
    storage's bytes are in (see ``materialize``)."""

    __slots__ = ("storage", "offset", "size", "stride", "element")

    def __init__(self, storage, offset, size, stride, element):
        self.storage = storage
        self.offset = _check_int(offset, "storage_offset")
        self.size = _check_ints(size, "size")
        self.stride = _check_ints(stride, "stride")
        self.element = element
        if len(self.size) != len(self.stride):
            raise pickle.UnpicklingError(f"a tensor has size {self.size} but stride {self.stride}")

    __hash__ = None

    def materialize(self, byteorder, budget):
        """The tensor as a NumPy view of its storage's native array (see
        ``_Storage.native``); read-only if it repeats elements."""
        count = 1
        for n in self.size:
            count *= n
        if count == 0:
            return numpy.zeros(self.size, dtype=_result_dtype(self.element))
        itemsize = ELEMENT_TYPES[self.element].itemsize
        available = self.storage.data().size // itemsize
        # The last element the view reads must lie inside the storage:
        # as_strided itself would happily read past the end of the buffer.
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if last >= available:
            raise ValueError(
                f"a tensor of size {self.size}, stride {self.stride} and offset {self.offset} reads element "
                f"{last} of storage {self.storage.key!r}, which holds {available}")
        flat = self.storage.native(self.element, byteorder, budget)[:available]
        return as_strided(flat[self.offset:], shape=self.size,
                          strides=tuple(s * flat.itemsize for s in self.stride),
                          writeable=not _repeats_elements(self.size, self.stride))


class _PendingQTensor:
    """A quantized tensor the pickle asked for (``_rebuild_qtensor``): its
    integers (a _PendingTensor), its dtype (a key of QUANTIZED_TYPES), its
    scheme and parameters (per tensor: a float and an int; per channel:
    scales and zero points, each a _PendingTensor or a list, and axis)."""

    __slots__ = ("integers", "dtype", "scheme", "scale", "zero_point", "axis")

    def __init__(self, integers, dtype, scheme, scale, zero_point, axis):
        self.integers = integers
        self.dtype = dtype
        self.scheme = scheme
        self.scale = scale
        self.zero_point = zero_point
        self.axis = axis

    __hash__ = None

    def materialize(self, byteorder, budget):
        """The ``minicnn.ao.QTensor``, its integers a view of the storage
        (a copy, charged to ``budget``, if the view is not contiguous),
        after checking its parameters; a bad one is a ValueError."""
        qtensor = _qtensor_module()
        dtype = getattr(qtensor, self.dtype)
        q = self.integers.materialize(byteorder, budget)
        if not q.flags.c_contiguous:
            budget.take(q.nbytes, "a contiguous copy of a quantized tensor")
            q = numpy.ascontiguousarray(q)
        if self.scheme == "per_tensor_affine":
            # (an object array: the file's int may not fit in int64)
            _check_qparams(numpy.array([self.scale]), numpy.array([self.zero_point], dtype=object), dtype)
            return qtensor.QTensor(q, dtype, qtensor.per_tensor_affine, self.scale, self.zero_point)
        scales = _qparam_array(self.scale, numpy.float64, "f", "scales", byteorder, budget)
        zero_points = _qparam_array(self.zero_point, numpy.int64, "iu", "zero_points", byteorder, budget)
        _check_qparams(scales, zero_points, dtype)
        return qtensor.QTensor(q, dtype, qtensor.per_channel_affine, scales, zero_points, self.axis)


def _qparam_array(value, dtype, kinds, what, byteorder, budget):
    """Per-channel ``scales`` or ``zero_points`` (a list, or a
    _PendingTensor whose dtype kind is in ``kinds``) as a new 1-D array of
    ``dtype``; a list of ints too large for int64 is a ValueError."""
    if isinstance(value, list):
        budget.take(8 * len(value), f"per-channel {what}")
        try:
            return numpy.array(value, dtype=dtype)
        except OverflowError:
            raise ValueError(f"{what} {_brief(value)} do not fit in {numpy.dtype(dtype)}") from None
    array = value.materialize(byteorder, budget)
    if array.dtype.kind not in kinds:
        raise ValueError(f"{what} must be a tensor of {'floats' if kinds == 'f' else 'integers'}, got {array.dtype}")
    budget.take(8 * array.size, f"per-channel {what}")
    return array.astype(dtype)


def _check_qparams(scales, zero_points, dtype):
    """Refuse ``scales`` (a float64 array) that are not positive and
    finite, and ``zero_points`` (an int array) outside ``dtype``'s range;
    the message shows the first few bad values."""
    bad = ~(numpy.isfinite(scales) & (scales > 0))
    if bad.any():
        raise ValueError(f"scale must be positive and finite, got {_brief(scales[bad][:8].tolist())}")
    bad = (zero_points < dtype.qmin) | (zero_points > dtype.qmax)
    if bad.any():
        raise ValueError(f"zero_point must lie in [{dtype.qmin}, {dtype.qmax}] for {dtype.name}, got "
                         f"{_brief([int(v) for v in zero_points[bad][:8]])}")


def _repeats_elements(size, stride):
    """Whether a view of ``size`` and ``stride`` may reach one element
    through two indices (a stride 0, or interleaved strides). Sufficient,
    not necessary: sorted by stride, each stride must step over the whole
    extent of the smaller ones."""
    extent = 0
    for n, s in sorted(((n, s) for n, s in zip(size, stride) if n > 1), key=lambda p: p[1]):
        if s <= extent:
            return True
        extent += (n - 1) * s
    return False


_NATIVE_ORDER = "<" if sys.byteorder == "little" else ">"


def _native_storage(raw, element, byteorder, budget, key):
    """The bytes ``raw`` (a writable 1-D uint8 array the loader owns) as a
    1-D array of ``_result_dtype(element)``: byte-swapped and bools
    normalised in place, bfloat16 widened into a new float32 array."""
    stored = ELEMENT_TYPES[element]
    raw = raw[:raw.size - raw.size % stored.itemsize]
    if element == "bool":
        numpy.minimum(raw, 1, out=raw)  # a byte other than 0 or 1 reads as True, not as an invalid bool
        return raw.view(numpy.bool_)
    if stored.itemsize > 1 and byteorder != _NATIVE_ORDER:
        raw.view(stored.newbyteorder(byteorder)).byteswap(inplace=True)
    if element == "bfloat16":
        budget.take(2 * raw.size, f"widening bfloat16 storage {key!r} to float32")
        out = numpy.empty(raw.size // 2, dtype=numpy.uint32)
        out[...] = raw.view(numpy.uint16)
        out <<= 16  # bfloat16 is the high half of a float32
        return out.view(numpy.float32)
    return raw.view(_result_dtype(element))


def _result_dtype(element):
    """The native NumPy dtype a tensor of ``element`` loads as."""
    if element == "bfloat16":
        return numpy.dtype(numpy.float32)
    if element == "bool":
        return numpy.dtype(numpy.bool_)
    stored = ELEMENT_TYPES[element]
    return numpy.dtype(f"{stored.kind}{stored.itemsize}")  # native order, the canonical dtype object


_BRIEF = reprlib.Repr()
_BRIEF.maxlevel = 3
_BRIEF.maxstring = _BRIEF.maxother = 60


def _brief(value):
    """A short repr of ``value``, a value from the file, for a message: a
    plain repr of a structure that shares itself (``t = (t, t)``, 64 deep,
    a few hundred bytes in a pickle) would take forever."""
    return _BRIEF.repr(value)


def _check_int(value, what):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise pickle.UnpicklingError(f"a tensor's {what} must be a non-negative int, got {_brief(value)}")
    return value


def _check_ints(values, what):
    if not isinstance(values, (tuple, list)):
        raise pickle.UnpicklingError(f"a tensor's {what} must be a tuple of ints, got {type(values).__name__}")
    return tuple(_check_int(v, what) for v in values)


# -- the unpickler ---------------------------------------------------------
class _RestrictedUnpickler(pickle._Unpickler):
    """An Unpickler that imports only ``ALLOWED_GLOBALS``, resolves storage
    persistent ids through ``storage_for(key, dtype, numel, view)`` (or
    refuses them, if ``storage_for`` is None), and lets ``BUILD`` set state
    only on the OrderedDicts the file created (see ``load_build``).

    It is Python's pure-Python Unpickler (``pickle._Unpickler``), because
    the C one's BUILD cannot be replaced; a weights file's pickle holds
    only the tensors' descriptions, not their bytes, so it is small."""

    def __init__(self, file, storage_for=None):
        # encoding: how Python 2 byte strings (old files) become str, as torch.load.
        super().__init__(file, encoding="utf-8")
        self._storage_for = storage_for

    def find_class(self, module, name):
        return _find_allowed(module, name)

    def load_build(self):
        """``BUILD``: pop ``state`` and apply it to the object below it.

        Python's version calls the object's ``__setstate__`` or writes its
        ``__dict__`` and slots (``setattr``), whatever the object is, which
        would let a file rewrite an allowed global (a function of this
        module) for the rest of the process. Here the object must be an
        ``OrderedDict`` (the only allowed class with instances, so the
        file made it) and the state a dict of str keys, written into its
        ``__dict__`` (torch stores a state dict's ``_metadata`` so): no
        ``__setstate__``, no ``setattr``, no slot state."""
        state = self.stack.pop()
        inst = self.stack[-1]
        if type(inst) is not collections.OrderedDict:
            what = {_PendingTensor: "a tensor", _PendingQTensor: "a quantized tensor", _Storage: "a storage"}.get(
                type(inst), f"{_brief(inst)} (a {type(inst).__name__})")
            raise UnsafeWeightsError(
                f"the pickle tries to modify {what} (BUILD sets its state); a weights file may only set "
                f"attributes of the OrderedDicts it creates. Nothing was changed")
        if not (isinstance(state, dict) and all(type(k) is str for k in state)):
            raise UnsafeWeightsError(
                f"the pickle tries to modify an OrderedDict with the state {_brief(state)}; a weights file may "
                f"only set its attributes from a dict of names. Nothing was changed")
        inst.__dict__.update(state)

    # Putting a key into a dict or set hashes it, and hashing a tuple walks
    # it without a memo: ``t = (t, t)`` 64 deep as a key would never
    # finish. So every key and set element is checked first (_check_key).
    # After a MARK, Python's Unpickler keeps the items pushed since in
    # ``self.stack`` (the outer stacks wait in ``self.metastack``).
    def load_setitem(self):
        _check_key(self.stack[-2])
        super().load_setitem()

    def load_setitems(self):
        for key in self.stack[::2]:
            _check_key(key)
        super().load_setitems()

    def load_dict(self):
        for key in self.stack[::2]:
            _check_key(key)
        super().load_dict()

    def load_additems(self):
        for key in self.stack:
            _check_key(key)
        super().load_additems()

    def load_frozenset(self):
        for key in self.stack:
            _check_key(key)
        super().load_frozenset()

    def load_reduce(self):
        func, args = self.stack[-2], self.stack[-1]
        if func is collections.OrderedDict and args and isinstance(args[0], (list, tuple)):
            for pair in args[0]:
                if isinstance(pair, (list, tuple)) and pair:
                    _check_key(pair[0])
        super().load_reduce()

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.SETITEM[0]] = load_setitem
    dispatch[pickle.SETITEMS[0]] = load_setitems
    dispatch[pickle.DICT[0]] = load_dict
    dispatch[pickle.ADDITEMS[0]] = load_additems
    dispatch[pickle.FROZENSET[0]] = load_frozenset
    dispatch[pickle.REDUCE[0]] = load_reduce

    def persistent_load(self, pid):
        if self._storage_for is None:
            raise pickle.UnpicklingError(f"unexpected persistent id {_brief(pid)}")
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {_brief(pid)} (only storages are)")
        _, token, key, _location, numel = pid[:5]
        view = pid[5] if len(pid) == 6 else None
        if not isinstance(token, _DtypeToken):
            raise pickle.UnpicklingError(f"a storage's type must be a torch storage class, got {_brief(token)}")
        if not isinstance(key, str):
            raise pickle.UnpicklingError(f"a storage key must be a string, got {_brief(key)}")
        return self._storage_for(key, token.element, _check_int(numel, "storage size"), view)


#: The most tuples (counted along every path, as hashing walks them) a
#: dict key or set element may hold.
_MAX_KEY_NODES = 10_000


def _check_key(key):
    """Refuse a dict key or set element that would take long to hash: a
    tuple with more than ``_MAX_KEY_NODES`` tuples along its paths. The
    count stops at the limit, so checking is fast whatever the key."""
    pending, count = [key], 0
    while pending:
        item = pending.pop()
        if isinstance(item, tuple):
            count += 1
            if count > _MAX_KEY_NODES:
                raise UnsafeWeightsError(
                    f"the pickle uses as a dict key or set element a tuple that shares its parts over and over "
                    f"(more than {_MAX_KEY_NODES} tuples along its paths), which would take practically forever "
                    f"to hash; a weights file's keys are names")
            pending.extend(item)


def _finish(obj, byteorder, budget):
    """``obj`` with every _PendingTensor replaced by a Tensor and every
    torch dtype (``torch.float32``) by the NumPy dtype it loads as: dicts
    and lists are updated in place (an OrderedDict keeps its
    ``_metadata``), tuples rebuilt. Each object is visited once (memo by
    id): a tensor reached twice becomes one Tensor, a tuple reached twice
    one tuple. A quantized tensor becomes a ``minicnn.ao.QTensor``, a
    quantized dtype or scheme minicnn's own object; a quantized tensor
    with bad parameters is a ValueError naming its key (``where``)."""
    done = {}

    def visit(x, where):
        if isinstance(x, _DtypeToken):
            if x.element in QUANTIZED_TYPES:
                return getattr(_qtensor_module(), x.element)
            return x if x.element is None else _result_dtype(x.element)
        if isinstance(x, _QschemeToken):
            if x.name == "per_channel_affine_float_qparams":
                raise UnsupportedDtypeError("the file names torch.per_channel_affine_float_qparams, a "
                                            "quantization scheme minicnn does not have")
            return getattr(_qtensor_module(), x.name)
        if isinstance(x, _PendingQTensor):
            if id(x) not in done:
                try:
                    done[id(x)] = (x, x.materialize(byteorder, budget))
                except ValueError as e:
                    raise ValueError(f"the quantized tensor {where}: {e}") from None
            return done[id(x)][1]
        if isinstance(x, _PendingTensor):
            if id(x) not in done:
                done[id(x)] = (x, Tensor._wrap(x.materialize(byteorder, budget)))
            return done[id(x)][1]
        if isinstance(x, (dict, list)):
            if id(x) in done:  # shared or cyclic containers
                return x
            done[id(x)] = (x, x)
            for k in (list(x) if isinstance(x, dict) else range(len(x))):
                x[k] = visit(x[k], f"{where}[{_brief(k)}]" if where else _brief(k))
            for k, v in getattr(x, "__dict__", {}).items():
                x.__dict__[k] = visit(v, f"{where}.{k}" if where else k)
            return x
        if isinstance(x, tuple):
            # Memoised too: a tuple that holds one tuple twice, 64 deep,
            # is a few hundred bytes of pickle but 2**64 paths to walk.
            if id(x) in done:
                if done[id(x)][1] is None:
                    raise ValueError("the pickle holds a tuple that contains itself (through a list or dict), "
                                     "which a weights file never does")
                return done[id(x)][1]
            done[id(x)] = (x, None)
            done[id(x)] = (x, tuple(visit(v, f"{where}[{i}]") for i, v in enumerate(x)))
            return done[id(x)][1]
        return x

    return visit(obj, "")


def _qtensor_module():
    from .ao import qtensor  # here: only files holding quantized names load mc.ao
    return qtensor


def _unpickle(file, storage_for, path):
    """Run the restricted unpickler on ``file``; any failure other than a
    refusal becomes a ValueError naming ``path``."""
    try:
        return _RestrictedUnpickler(file, storage_for).load()
    except (UnsafeWeightsError, UnsupportedDtypeError) as e:
        raise type(e)(f"load_weights: {path!r}: {e}") from None
    except Exception as e:  # noqa: BLE001 - a malformed pickle can fail in any way
        raise ValueError(f"load_weights: {path!r} is truncated or corrupted: its pickle cannot be read "
                         f"({type(e).__name__}: {e})") from None


def _finish_or_raise(obj, byteorder, path, budget):
    try:
        return _finish(obj, byteorder, budget)
    except (ValueError, MemoryError, RecursionError) as e:
        raise ValueError(f"load_weights: {path!r}: {type(e).__name__}: {e}") from None


# -- the zip layout ----------------------------------------------------------
def load_zip(zf, path, budget):
    """The object a torch zip file holds (``zf`` an open ``zipfile.ZipFile``;
    ``budget`` a LoadBudget for the file)."""
    names = zf.namelist()
    pickles = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
    if any(n == "constants.pkl" or n.endswith("/constants.pkl") for n in names):
        raise ValueError(f"load_weights: {path!r} is a TorchScript archive (torch.jit.save), which holds code; "
                         f"load it with torch.jit.load and save its state_dict() with torch.save")
    if len(pickles) != 1:
        raise ValueError(f"load_weights: {path!r} is a zip file but not one written by torch.save "
                         f"(expected one <archive>/data.pkl, found {len(pickles)})")
    prefix = pickles[0][:-len("data.pkl")]
    byteorder = _zip_byteorder(zf, prefix, names, path)
    storages = {}

    def storage_for(key, element, numel, view):
        if view is not None:
            raise pickle.UnpicklingError("storage views do not exist in the zip format")
        if key not in storages:
            record = f"{prefix}data/{key}"
            if record not in names:
                raise pickle.UnpicklingError(f"the pickle names storage {key!r}, but {record} is missing")
            storage = storages[key] = _Storage(key, element, numel)
            nbytes = numel * storage.itemsize
            # The record's declared size is checked before anything is
            # decompressed, and only the bytes the pickle asks for are read.
            declared = zf.getinfo(record).file_size
            if declared < nbytes:
                raise pickle.UnpicklingError(f"storage {key!r} holds {declared} bytes, {nbytes} expected")
            storage.raw = read_zip_record(zf, record, nbytes, budget, path)
        return storages[key]

    data_pkl = read_zip_record(zf, pickles[0], zf.getinfo(pickles[0]).file_size, budget, path)
    obj = _unpickle(io.BytesIO(data_pkl), storage_for, path)
    return _finish_or_raise(obj, byteorder, path, budget)


#: Bytes read from a zip record at a time (what ``zf.read`` would hold twice).
_ZIP_CHUNK = 1 << 24


def read_zip_record(zf, name, nbytes, budget, path):
    """The first ``nbytes`` bytes of the zip record ``name`` as a writable
    uint8 array, charged to ``budget`` before it is allocated; an encrypted
    record or one shorter than it declares is a ValueError naming ``path``."""
    check_zip_member(zf.getinfo(name), path)
    budget.take(nbytes, f"zip record {name!r}")
    out = numpy.empty(nbytes, dtype=numpy.uint8)
    done = 0
    with zf.open(name) as member:
        while done < nbytes:
            chunk = member.read(min(_ZIP_CHUNK, nbytes - done))
            if not chunk:
                raise ValueError(f"load_weights: {path!r} is truncated or corrupted: zip record {name!r} ends "
                                 f"after {done} of {nbytes} bytes")
            out[done:done + len(chunk)] = numpy.frombuffer(chunk, dtype=numpy.uint8)
            done += len(chunk)
    return out


def check_zip_member(info, path):
    """Refuse a zip member that zipfile could only read with a password."""
    if info.flag_bits & 0x1:
        raise ValueError(f"load_weights: {path!r}: zip record {info.filename!r} is encrypted; weight files "
                         f"are not, so the file is corrupted or not a weights file")


def _zip_byteorder(zf, prefix, names, path):
    record = f"{prefix}byteorder"
    if record not in names:
        return "<"  # files from before torch 1.10 lack it; they are little-endian in practice
    check_zip_member(zf.getinfo(record), path)
    with zf.open(record) as member:
        order = member.read(16).strip()
    if order not in (b"little", b"big"):
        raise ValueError(f"load_weights: {path!r} names an unknown byte order {order[:20]!r}")
    return "<" if order == b"little" else ">"


# -- the legacy layout -------------------------------------------------------
MAGIC_NUMBER = 0x1950a86a20f9469cfc6c
PROTOCOL_VERSION = 1001


def load_legacy(file, path, budget):
    """The object a legacy (non-zip) torch file holds, read from the open
    binary ``file`` (a real file: its size bounds what may be read);
    ``budget`` a LoadBudget for the file."""
    magic = _unpickle(file, None, path)
    if magic != MAGIC_NUMBER:
        raise ValueError(f"load_weights: {path!r} is a pickle file but not one written by torch.save "
                         f"(no torch magic number); minicnn only reads tensor files")
    version = _unpickle(file, None, path)
    if version != PROTOCOL_VERSION:
        raise ValueError(f"load_weights: {path!r} has torch legacy protocol version {_brief(version)}; "
                         f"only {PROTOCOL_VERSION} is supported")
    sys_info = _unpickle(file, None, path)
    little = sys_info.get("little_endian", True) if isinstance(sys_info, dict) else True
    byteorder = "<" if little else ">"
    storages = {}

    def storage_for(key, element, numel, view):
        if key not in storages:
            storages[key] = _Storage(key, element, numel)
        root = storages[key]
        if view is None:
            return root
        # Storage views (torch < 0.4): elements [offset, offset + size) of the root.
        if not (isinstance(view, tuple) and len(view) == 3 and isinstance(view[0], str)):
            raise pickle.UnpicklingError(f"malformed storage view {_brief(view)}")
        view_key, offset, size = view[0], _check_int(view[1], "view offset"), _check_int(view[2], "view size")
        if offset + size > numel:
            raise pickle.UnpicklingError(f"storage view {view_key!r} ends past its storage {key!r}")
        if view_key not in storages:
            storages[view_key] = _Storage(view_key, element, size, base=root, start=offset)
        return storages[view_key]

    obj = _unpickle(file, storage_for, path)
    keys = _unpickle(file, None, path)
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        raise ValueError(f"load_weights: {path!r} has a malformed storage key list")
    for key in keys:
        storage = storages.get(key)
        if storage is None or storage.base is not None:
            raise ValueError(f"load_weights: {path!r} stores data for storage {key!r}, which no tensor uses")
        header = file.read(8)
        if len(header) < 8:
            raise ValueError(f"load_weights: {path!r} is truncated: the data of storage {key!r} is missing")
        (count,) = struct.unpack(byteorder + "q", header)
        if count != storage.numel:
            raise ValueError(f"load_weights: {path!r} is corrupted: storage {key!r} should hold "
                             f"{storage.numel} elements, its record says {count}")
        nbytes = count * storage.itemsize
        remaining = os.fstat(file.fileno()).st_size - file.tell()
        if nbytes > remaining:  # checked before reading: a forged count must not make read() allocate it
            raise ValueError(f"load_weights: {path!r} is truncated: storage {key!r} needs {nbytes} bytes, "
                             f"{remaining} remain")
        budget.take(nbytes, f"storage {key!r}")
        storage.raw = numpy.empty(nbytes, dtype=numpy.uint8)
        if file.readinto(memoryview(storage.raw)) != nbytes:
            raise ValueError(f"load_weights: {path!r} is truncated: storage {key!r} is cut short")
    return _finish_or_raise(obj, byteorder, path, budget)
