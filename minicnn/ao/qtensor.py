"""Quantized tensors: integers that stand for real numbers.

A quantized tensor stores small integers ``q`` and the affine map back to
real numbers::

    x ~ (q - zero_point) * scale

per tensor (one scale and zero point) or per channel (one pair per slice
along ``axis``, used for conv / linear weights). Quantizing rounds half to
even and clamps to the dtype's range::

    q = clamp(round(x * (1 / scale)) + zero_point, qmin, qmax)

Notation: ``quint8`` stores 0..255 (activations), ``qint8`` -128..127
(weights), ``qint32`` the full int32 range (biases of integer kernels).

The float arithmetic is torch's x86 arithmetic, found by experiment
against torch so results agree bit for bit: ``x`` is multiplied by the
float32 reciprocal ``1 / float32(scale)`` (fbgemm's ``Quantize``), not
divided by the scale; per-tensor dequantization is the float32 product
``float32(scale) * float32(q - zero_point)`` while per-channel
dequantization multiplies by the float64 scale and rounds once to float32.

A :class:`QTensor` is not an :class:`~minicnn.Tensor`: float ops refuse it
(it cannot be turned into an array), as torch's float ops refuse quantized
tensors. Call :meth:`QTensor.dequantize` to get floats back.
"""
import numbers

import numpy

from ..tensor import Tensor


class _Named:
    """One object per dtype / scheme: copies and pickles give the same
    object back (pickled by its module-level ``name``), so ``is``
    comparisons survive copy.deepcopy(model)."""

    def __repr__(self):
        return f"minicnn.{self.name}"

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        return self.name


class qdtype(_Named):
    """A quantized dtype: its name, storage dtype and integer range.

    ``kind`` is ``"q"`` (NumPy's kinds are "f", "i", "u", ...), so float ops
    that check ``dtype.kind`` refuse quantized tensors with a TypeError.
    """

    kind = "q"

    def __init__(self, name, storage, qmin, qmax):
        self.name = name
        self.storage = numpy.dtype(storage)
        self.qmin = qmin
        self.qmax = qmax
        self.bits = 8 * self.storage.itemsize


quint8 = qdtype("quint8", numpy.uint8, 0, 255)
qint8 = qdtype("qint8", numpy.int8, -128, 127)
qint32 = qdtype("qint32", numpy.int32, -2 ** 31, 2 ** 31 - 1)
QDTYPES = (quint8, qint8, qint32)


class qscheme(_Named):
    """How a quantized tensor maps its integers back to reals."""

    def __init__(self, name):
        self.name = name


per_tensor_affine = qscheme("per_tensor_affine")
per_channel_affine = qscheme("per_channel_affine")
per_tensor_symmetric = qscheme("per_tensor_symmetric")
per_channel_symmetric = qscheme("per_channel_symmetric")


def _check_dtype(dtype, fn):
    if not isinstance(dtype, qdtype):
        raise TypeError(f"{fn}: dtype must be one of minicnn.quint8, minicnn.qint8, minicnn.qint32, "
                        f"got {dtype!r}")


def _float_array(input, fn):
    data = input.data if isinstance(input, Tensor) else input
    if isinstance(data, QTensor):
        raise TypeError(f"{fn}: input is already quantized ({data.dtype!r})")
    data = numpy.asarray(data)
    if data.dtype != numpy.float32:
        raise TypeError(f"{fn}: input must be a float32 tensor (as torch's), got dtype {data.dtype}")
    return data


def _check_zero_points(zero_points, dtype, fn):
    bad = (zero_points < dtype.qmin) | (zero_points > dtype.qmax)
    if bad.any():
        raise ValueError(f"{fn}: zero_point must lie in [{dtype.qmin}, {dtype.qmax}] for {dtype!r}, "
                         f"got {zero_points[bad].tolist()}")


def _check_scales(scales, fn):
    if not (numpy.isfinite(scales) & (scales > 0)).all():
        raise ValueError(f"{fn}: scale must be positive and finite, got {scales.tolist()}")


def quantize_array(x, scale, zero_point, dtype):
    """The integers of ``x`` (float32) under ``scale`` / ``zero_point``
    (scalars or arrays broadcasting against ``x``), as ``dtype.storage``."""
    inverse = numpy.float32(1.0) / numpy.asarray(scale, dtype=numpy.float32)
    q = numpy.rint(x * inverse).astype(numpy.float64) + zero_point
    return numpy.clip(q, dtype.qmin, dtype.qmax).astype(dtype.storage)


def _channel_shape(ndim, axis, n):
    shape = [1] * ndim
    shape[axis] = n
    return shape


class QuantizedTensorError(AttributeError, TypeError):
    """A float-tensor attribute asked of a :class:`QTensor` (``.ndim``,
    ``.sum``, ...): what a float op does first when handed one. A
    TypeError (the wrong kind of tensor) that ``hasattr`` and ``getattr``
    with a default still treat as a missing attribute."""


class QTensor:
    """A quantized tensor (torch's ``is_quantized`` tensors).

    Built by :func:`quantize_per_tensor`, :func:`quantize_per_channel` or by
    quantized modules; holds the integer array and its quantization
    parameters.
    """

    is_quantized = True

    def __init__(self, int_repr, dtype, qscheme, scale, zero_point, axis=None):
        self._q = int_repr
        self.dtype = dtype
        self._qscheme = qscheme
        self._scale = scale
        self._zero_point = zero_point
        self._axis = axis

    @classmethod
    def _per_tensor(cls, int_repr, scale, zero_point, dtype):
        return cls(int_repr, dtype, per_tensor_affine, float(scale), int(zero_point))

    # -- shape --------------------------------------------------------
    @property
    def shape(self):
        return self._q.shape

    def size(self, dim=None):
        return self._q.shape if dim is None else self._q.shape[dim]

    def dim(self):
        return self._q.ndim

    def numel(self):
        return self._q.size

    def __len__(self):
        return len(self._q)

    def _same_qparams(self, int_repr):
        if self._qscheme is not per_tensor_affine:
            raise ValueError("reshaping a per-channel quantized tensor is not supported")
        return QTensor._per_tensor(int_repr, self._scale, self._zero_point, self.dtype)

    def reshape(self, *shape):
        """The same quantized values in a new shape (per-tensor only)."""
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return self._same_qparams(self._q.reshape(shape))

    view = reshape

    def flatten(self, start_dim=0, end_dim=-1):
        """Merge dims ``start_dim..end_dim`` into one, as ``torch.flatten``."""
        ndim = max(self._q.ndim, 1)
        start, end = start_dim % ndim, end_dim % ndim
        shape = self._q.shape[:start] + (-1,) + self._q.shape[end + 1:]
        return self.reshape(shape)

    def contiguous(self):
        return self

    def transpose(self, dim0, dim1):
        """The tensor with dims ``dim0`` and ``dim1`` swapped (a copy; minicnn
        has no strided views of quantized data)."""
        return self._same_qparams(numpy.ascontiguousarray(numpy.swapaxes(self._q, dim0, dim1)))

    def chunk(self, chunks, dim=0):
        """Split into ``chunks`` pieces along ``dim``, each of
        ``ceil(size / chunks)`` (the last may be smaller), as ``torch.chunk``."""
        size = self._q.shape[dim]
        step = -(-size // chunks)
        return tuple(self._same_qparams(self._q[(slice(None),) * (dim % self._q.ndim) + (slice(i, i + step),)])
                     for i in range(0, size, step))

    def mean(self, dim, keepdim=False):
        """The mean over ``dim`` (an int or a tuple) with the input's scale and
        zero point: dequantized, averaged in float32, quantized again, the
        arithmetic of torch's x86 kernel for channels-last tensors (what its
        quantized convs return). torch's kernel for NCHW-contiguous tensors
        averages the raw integers instead; the two can differ by one step at
        exact ties."""
        self._per_tensor_only("mean")
        axis = tuple(dim) if isinstance(dim, (tuple, list)) else dim
        values = self.dequantize().data.mean(axis=axis, keepdims=keepdim, dtype=numpy.float32)
        q = quantize_array(values, self._scale, self._zero_point, self.dtype)
        return QTensor._per_tensor(q, self._scale, self._zero_point, self.dtype)

    # -- quantization parameters -------------------------------------
    def qscheme(self):
        return self._qscheme

    def _per_tensor_only(self, what):
        if self._qscheme is not per_tensor_affine:
            raise ValueError(f"{what}: tensor is quantized per channel; use q_per_channel_{what[2:]}s")

    def q_scale(self):
        """The scale, a Python float (per-tensor quantization)."""
        self._per_tensor_only("q_scale")
        return self._scale

    def q_zero_point(self):
        """The zero point, a Python int (per-tensor quantization)."""
        self._per_tensor_only("q_zero_point")
        return self._zero_point

    def _per_channel_only(self, what):
        if self._qscheme is not per_channel_affine:
            raise ValueError(f"{what}: tensor is quantized per tensor; use q_scale / q_zero_point")

    def q_per_channel_scales(self):
        """The scales, a float64 tensor of shape (C,)."""
        self._per_channel_only("q_per_channel_scales")
        return Tensor._wrap(self._scale.copy())

    def q_per_channel_zero_points(self):
        """The zero points, an int64 tensor of shape (C,)."""
        self._per_channel_only("q_per_channel_zero_points")
        return Tensor._wrap(self._zero_point.copy())

    def q_per_channel_axis(self):
        self._per_channel_only("q_per_channel_axis")
        return self._axis

    def int_repr(self):
        """The stored integers as a plain tensor (uint8, int8 or int32)."""
        return Tensor._wrap(self._q.copy())

    def dequantize(self):
        """The real numbers the integers stand for, a float32 tensor."""
        centered = self._q.astype(numpy.int64)
        if self._qscheme is per_tensor_affine:
            centered = (centered - self._zero_point).astype(numpy.float32)
            return Tensor._wrap(numpy.float32(self._scale) * centered)
        shape = _channel_shape(self._q.ndim, self._axis, -1)
        centered = (centered - self._zero_point.reshape(shape)).astype(numpy.float32)
        return Tensor._wrap((centered * self._scale.reshape(shape)).astype(numpy.float32))

    def __array__(self, *args, **kwargs):
        raise TypeError("a quantized tensor cannot be used as a float array; call .dequantize() first")

    def __getattr__(self, name):
        # Only called for attributes a QTensor lacks: float ops reach for
        # the float tensor's (ndim, data, sum, ...) and get this message
        # instead of a bare AttributeError.
        if name.startswith("__"):
            raise AttributeError(name)
        raise QuantizedTensorError(
            f"a quantized tensor ({self.__dict__.get('dtype')!r}) has no attribute {name!r}: float ops do not take "
            f"quantized tensors; call .dequantize() first, or use the quantized module (mc.ao.nn.quantized)")

    def __repr__(self):
        if self._qscheme is per_tensor_affine:
            params = f"scale={self._scale}, zero_point={self._zero_point}"
        else:
            params = f"scales={self._scale.tolist()}, zero_points={self._zero_point.tolist()}, axis={self._axis}"
        return (f"QTensor({numpy.array2string(self.dequantize().data, precision=4)}, size={self.shape}, "
                f"dtype={self.dtype!r}, qscheme={self._qscheme!r}, {params})")


def _check_tensor_params(scale, zero_point, dtype, fn):
    """A per-tensor ``scale`` (a positive float) and ``zero_point`` (an int
    in ``dtype``'s range), or a clear error naming ``fn``."""
    if not isinstance(scale, numbers.Real) or isinstance(scale, bool):
        raise TypeError(f"{fn}: scale must be a float, got {type(scale).__name__}")
    if not isinstance(zero_point, numbers.Integral) or isinstance(zero_point, bool):
        raise TypeError(f"{fn}: zero_point must be an int, got {type(zero_point).__name__}")
    _check_scales(numpy.asarray([scale], dtype=numpy.float64), fn)
    _check_zero_points(numpy.asarray([zero_point]), dtype, fn)


def quantize_per_tensor(input, scale, zero_point, dtype):
    """Quantize a float32 tensor with one ``scale`` and ``zero_point``.

    Args:
        input: float32 tensor of any shape.
        scale: positive float.
        zero_point: int inside ``dtype``'s range.
        dtype: ``quint8``, ``qint8`` or ``qint32``.

    Returns a :class:`QTensor` of the same shape. Unlike torch, a scale
    that is not positive is refused (torch accepts it and divides by it).
    """
    fn = "quantize_per_tensor"
    _check_dtype(dtype, fn)
    x = _float_array(input, fn)
    _check_tensor_params(scale, zero_point, dtype, fn)
    return QTensor._per_tensor(quantize_array(x, scale, zero_point, dtype), scale, zero_point, dtype)


def quantize_per_channel(input, scales, zero_points, axis, dtype):
    """Quantize a float32 tensor with one scale and zero point per slice
    along ``axis``.

    Args:
        input: float32 tensor; ``input.shape[axis] == C``.
        scales: (C,) positive floats (a tensor or array).
        zero_points: (C,) ints inside ``dtype``'s range.
        axis: the channel dim.
        dtype: ``quint8``, ``qint8`` or ``qint32``.
    """
    fn = "quantize_per_channel"
    _check_dtype(dtype, fn)
    x = _float_array(input, fn)
    if not isinstance(axis, numbers.Integral) or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"{fn}: axis must be a dim of the input of shape {x.shape}, got {axis!r}")
    axis = axis % x.ndim
    scales = numpy.asarray(scales.data if isinstance(scales, Tensor) else scales, dtype=numpy.float64).ravel()
    zero_points = numpy.asarray(zero_points.data if isinstance(zero_points, Tensor) else zero_points)
    if zero_points.dtype.kind not in "iu":
        raise TypeError(f"{fn}: zero_points must be integers, got dtype {zero_points.dtype}")
    zero_points = zero_points.astype(numpy.int64).ravel()
    if scales.shape != (x.shape[axis],) or zero_points.shape != (x.shape[axis],):
        raise ValueError(f"{fn}: scales {scales.shape} and zero_points {zero_points.shape} must both have "
                         f"shape ({x.shape[axis]},), the size of axis {axis} of the input {x.shape}")
    _check_scales(scales, fn)
    _check_zero_points(zero_points, dtype, fn)
    shape = _channel_shape(x.ndim, axis, -1)
    q = quantize_array(x, scales.reshape(shape), zero_points.reshape(shape), dtype)
    return QTensor(q, dtype, per_channel_affine, scales, zero_points, axis)


def _storage_qdtype(input, fn):
    """(integer array, quantized dtype) of stored integers: uint8 is quint8,
    int8 qint8, int32 qint32, as torch's ``_make_*_quantized_tensor``."""
    data = numpy.asarray(input.data if isinstance(input, Tensor) else input)
    for dtype in QDTYPES:
        if data.dtype == dtype.storage:
            return data, dtype
    raise TypeError(f"{fn}: input must hold the integers of a quantized tensor (uint8 for quint8, int8 for qint8, "
                    f"int32 for qint32), got dtype {data.dtype}")


def _make_per_tensor_quantized_tensor(input, scale, zero_point):
    """A per-tensor :class:`QTensor` holding the integers ``input`` as they
    are (torch's function of the same name): ``input`` a uint8, int8 or
    int32 array or tensor (quint8, qint8, qint32), ``scale`` a positive
    float, ``zero_point`` an int in the dtype's range."""
    fn = "_make_per_tensor_quantized_tensor"
    q, dtype = _storage_qdtype(input, fn)
    _check_tensor_params(scale, zero_point, dtype, fn)
    return QTensor._per_tensor(q.copy(), scale, zero_point, dtype)


def _make_per_channel_quantized_tensor(input, scale, zero_point, axis):
    """A per-channel :class:`QTensor` holding the integers ``input`` as they
    are (torch's function of the same name): ``scale`` (C,) positive
    floats, ``zero_point`` (C,) ints in the dtype's range, C the size of
    dim ``axis`` of ``input``."""
    fn = "_make_per_channel_quantized_tensor"
    q, dtype = _storage_qdtype(input, fn)
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral) or not -q.ndim <= axis < q.ndim:
        raise ValueError(f"{fn}: axis must be a dim of the input of shape {q.shape}, got {axis!r}")
    axis = int(axis) % q.ndim
    scales = numpy.asarray(scale.data if isinstance(scale, Tensor) else scale)
    zero_points = numpy.asarray(zero_point.data if isinstance(zero_point, Tensor) else zero_point)
    if scales.dtype.kind != "f" or zero_points.dtype.kind not in "iu":
        raise TypeError(f"{fn}: scale must be floats and zero_point integers, got dtypes {scales.dtype} and "
                        f"{zero_points.dtype}")
    if scales.shape != (q.shape[axis],) or zero_points.shape != (q.shape[axis],):
        raise ValueError(f"{fn}: scale {scales.shape} and zero_point {zero_points.shape} must both have shape "
                         f"({q.shape[axis]},), the size of axis {axis} of the input {q.shape}")
    scales, zero_points = scales.astype(numpy.float64), zero_points.astype(numpy.int64)
    _check_scales(scales, fn)
    _check_zero_points(zero_points, dtype, fn)
    return QTensor(q.copy(), dtype, per_channel_affine, scales, zero_points, axis)
