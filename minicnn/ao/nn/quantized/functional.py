"""Quantized ops: integer arithmetic on :class:`~minicnn.ao.QTensor`.

Every op takes per-tensor quint8 activations and returns a new quantized
tensor. The float steps are torch's x86 (fbgemm) arithmetic, found by
experiment against torch, so outputs agree element by element.

Convolution and linear (fbgemm's requantization)
------------------------------------------------
With ``acc`` the exact int32 sum of (x - x_zp) * (w - w_zp) (the
``quantized_conv2d`` kernel) and, per output channel o, all in float32::

    a = x_scale * w_scale[o]              (float32 product)
    m = a / out_scale                     (the requantization multiplier)
    y = (float32(acc) + bias[o] / a) * m
    out = clamp(round_half_even(y) + out_zp, 0 (or out_zp with ReLU), 255)

The bias stays float (fbgemm divides it by ``a``; it is never quantized to
int32), and a fused ReLU is the clamp at ``out_zp``, the integer of 0.

Element-wise ops and pooling
----------------------------
* add: dequantize both (float32 ``scale * (q - zp)``), add in float32,
  quantize with the output parameters (times ``1 / scale``); add_relu
  clamps at the output zero point. cat requantizes each input the same way.
* mul: the float32 product of the dequantized values, requantized.
* max pooling and ReLU act on the integers (order is kept by the affine
  map); the output keeps the input's scale and zero point.
* adaptive average pooling sums the centered integers of each window and
  rounds ``float32(sum) * float32(1 / count)`` half to even, then adds the
  zero point: torch's channels-last kernel, the one its models run (torch's
  quantized convs return channels-last tensors). torch's NCHW kernel
  (a pool fed straight from a QuantStub) rounds the mean of the raw
  integers instead; the two differ by one step at exact ties (x.5) when
  the zero point is odd. minicnn has no memory formats and always uses the
  first.
"""
import math
import numbers

import numpy

from ....kernels import registry
from ...qtensor import QTensor, quint8, quantize_array

_F32 = numpy.float32


def quantized_conv2d_reference(x, x_zero_point, w, w_zero_points, stride, padding, dilation, groups, packed=None,
                               requant=None):
    """The NumPy reference of the ``quantized_conv2d`` kernel (contract in
    ``kernels/cpu/quantized.py``): centered integers, padded with 0, as
    windows; products summed by a float64 matmul, exact because every
    partial sum is an integer below 2**53. ``packed`` (the Numba kernel's
    weight layout) is ignored: the reference works from ``w``. With
    ``requant`` (offsets, multipliers, zero_point, low) the sums come back
    requantized (``requantize_reference``)."""
    N, C, H, W = x.shape
    O, CG, KH, KW = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    centered = numpy.pad(x.astype(numpy.float64) - x_zero_point, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    OH = (H + 2 * ph - dh * (KH - 1) - 1) // sh + 1
    OW = (W + 2 * pw - dw * (KW - 1) - 1) // sw + 1
    taps = [centered[:, :, kh * dh:kh * dh + sh * (OH - 1) + 1:sh, kw * dw:kw * dw + sw * (OW - 1) + 1:sw]
            for kh in range(KH) for kw in range(KW)]
    cols = numpy.stack(taps, axis=2).reshape(N, groups, CG * KH * KW, OH * OW)
    weights = (w.astype(numpy.float64) - w_zero_points.reshape(-1, 1, 1, 1)).reshape(groups, O // groups, -1)
    acc = numpy.einsum("gok,ngkp->ngop", weights, cols, optimize=True).reshape(N, O, OH * OW).astype(numpy.int32)
    if requant is not None:
        acc = requantize_reference(acc, *requant)
    return acc.reshape(N, O, OH, OW)


registry.register("quantized_conv2d", "numpy", quantized_conv2d_reference)
registry.register("quantized_conv2d", "numba", "minicnn.kernels.cpu.quantized:quantized_conv2d")
registry.register("quantized_conv2d_pack", "numba", "minicnn.kernels.cpu.quantized:pack")


def pack_weight(weight, groups=1):
    """A qint8 weight laid out once for the backend's ``quantized_conv2d``
    kernel (modules keep it as ``_packed``), or None where the kernel in
    force packs nothing (the NumPy reference)."""
    packer = registry.find("quantized_conv2d_pack", numpy)
    if packer is None:
        return None
    _, w_zero_points = _weight_params(weight, weight.shape[0])
    return packer(weight._q, w_zero_points, groups)


def _check_quantized(input, fn, name="input"):
    if not isinstance(input, QTensor):
        raise TypeError(f"{fn}: {name} must be a quantized tensor (quantize it first, e.g. with a QuantStub), "
                        f"got {type(input).__name__}")
    if input.dtype is not quint8 or input.qscheme().name != "per_tensor_affine":
        raise TypeError(f"{fn}: {name} must be quint8 quantized per tensor, got {input.dtype!r} "
                        f"{input.qscheme()!r}")


def _check_qparams(scale, zero_point, fn):
    if not isinstance(scale, numbers.Real) or not scale > 0 or not numpy.isfinite(scale):
        raise ValueError(f"{fn}: output scale must be positive and finite, got {scale!r}")
    if not isinstance(zero_point, numbers.Integral) or not 0 <= zero_point <= 255:
        raise ValueError(f"{fn}: output zero_point must be an int in [0, 255], got {zero_point!r}")


def _weight_params(weight, out_channels):
    """Per-output-channel (scales float64, zero points int32) of a weight."""
    if weight.qscheme().name == "per_tensor_affine":
        return (numpy.full(out_channels, weight.q_scale()),
                numpy.full(out_channels, weight.q_zero_point(), numpy.int32))
    return weight._scale, weight._zero_point.astype(numpy.int32)


def requantize_reference(acc, offsets, multipliers, zero_point, low):
    """The NumPy reference of the ``quantized_requantize`` kernel: uint8
    (N, O, P) = clamp(rint((float32(acc) + offsets[o]) * multipliers[o]) +
    zero_point, low, 255), every step in float32, in place on one buffer."""
    y = acc.astype(_F32)
    y += offsets.reshape(-1, 1)
    y *= multipliers.reshape(-1, 1)
    numpy.rint(y, out=y)
    y += _F32(zero_point)
    numpy.clip(y, _F32(low), _F32(255), out=y)
    return y.astype(numpy.uint8)


registry.register("quantized_requantize", "numpy", requantize_reference)
registry.register("quantized_requantize", "numba", "minicnn.kernels.cpu.quantized:requantize")


def _requant(x_scale, w_scales, bias, scale, zero_point, relu):
    """fbgemm's per-channel float32 constants (see the module docstring):
    (offsets bias / a, multipliers a / scale, zero_point, the lower clamp),
    the ``requant`` argument of the kernels. Without a bias the offset is
    0, and float32(acc) + 0 is float32(acc)."""
    a = _F32(x_scale) * w_scales.astype(_F32)
    offsets = numpy.zeros_like(a) if bias is None else bias.astype(_F32) / a
    return offsets, a / _F32(scale), zero_point, zero_point if relu else 0


def requantize(acc, x_scale, w_scales, bias, scale, zero_point, relu, channel_axis=1):
    """fbgemm's requantization of int32 sums (see the module docstring):
    the per-channel float32 constants here, the element-wise pass in the
    backend's ``quantized_requantize`` kernel."""
    requant = _requant(x_scale, w_scales, bias, scale, zero_point, relu)
    shape = acc.shape
    rows = math.prod(shape[:channel_axis])
    acc3 = numpy.ascontiguousarray(acc).reshape(rows, shape[channel_axis], -1)
    kernel = registry.lookup("quantized_requantize", numpy)
    return kernel(acc3, *requant).reshape(shape)


def conv2d(input, weight, bias, stride, padding, dilation, groups, scale, zero_point, relu=False, packed=None):
    """Quantized 2-d convolution (fused ReLU if ``relu``).

    Args:
        input: quint8 QTensor (N, C, H, W).
        weight: qint8 QTensor (O, C / groups, KH, KW), per tensor or per
            channel along dim 0.
        bias: float32 array (O,) or None.
        stride, padding, dilation: pairs of ints. groups: int.
        scale, zero_point: the output's quantization parameters.
        packed: ``pack_weight(weight, groups)``, made once by a module
            (faster); None packs here when the kernel needs it.

    Returns a quint8 QTensor (N, O, OH, OW).
    """
    fn = "quantized conv2d"
    _check_quantized(input, fn)
    _check_qparams(scale, zero_point, fn)
    if input.dim() != 4:
        raise ValueError(f"{fn}: input must be 4-d (N, C, H, W), got shape {tuple(input.shape)}")
    O, CG = weight.shape[:2]
    if input.shape[1] != CG * groups:
        raise ValueError(f"{fn}: input has {input.shape[1]} channels, the weight {tuple(weight.shape)} with "
                         f"groups={groups} expects {CG * groups}")
    w_scales, w_zero_points = _weight_params(weight, O)
    kernel = registry.lookup("quantized_conv2d", numpy)
    # the kernel requantizes: the VNNI one straight off its sums, with no int32 output
    q = kernel(input._q, input.q_zero_point(), weight._q, w_zero_points, stride, padding, dilation, groups,
               packed=packed, requant=_requant(input.q_scale(), w_scales, bias, scale, zero_point, relu))
    return QTensor._per_tensor(q, scale, zero_point, quint8)


def linear(input, weight, bias, scale, zero_point, relu=False, packed=None):
    """Quantized ``input @ weight.T + bias`` (fused ReLU if ``relu``).

    input: quint8 QTensor (*, in_features); weight: qint8 QTensor
    (out_features, in_features); bias: float32 array or None; packed:
    ``pack_weight(weight)`` or None.
    """
    fn = "quantized linear"
    _check_quantized(input, fn)
    _check_qparams(scale, zero_point, fn)
    O, K = weight.shape
    if input.shape[-1] != K:
        raise ValueError(f"{fn}: input {tuple(input.shape)} must end in in_features={K}")
    lead = input.shape[:-1]
    w_scales, w_zero_points = _weight_params(weight, O)
    kernel = registry.lookup("quantized_conv2d", numpy)
    x = input._q.reshape(-1, K, 1, 1)
    acc = kernel(x, input.q_zero_point(), weight._q.reshape(O, K, 1, 1), w_zero_points, (1, 1), (0, 0), (1, 1), 1,
                 packed=packed)
    q = requantize(acc[:, :, 0, 0], input.q_scale(), w_scales, bias, scale, zero_point, relu)
    return QTensor._per_tensor(q.reshape(lead + (O,)), scale, zero_point, quint8)


def _dequantized_array(x, scale, zero_point):
    return _F32(scale) * (x.astype(numpy.int64) - zero_point).astype(_F32)


def _dequantized(q):
    return _dequantized_array(q._q, q.q_scale(), q.q_zero_point())


def _requantized(values, scale, zero_point):
    return QTensor._per_tensor(quantize_array(values, scale, zero_point, quint8), scale, zero_point, quint8)


def _binary(a, b, fn, scale, zero_point):
    _check_quantized(a, fn, "a")
    _check_quantized(b, fn, "b")
    _check_qparams(scale, zero_point, fn)
    try:
        numpy.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{fn}: shapes must match or broadcast, got {tuple(a.shape)} and {tuple(b.shape)}") \
            from None


def quantize_reference(x, scale, zero_point):
    """The NumPy reference of the ``quantized_quantize`` kernel: the
    quint8 integers (uint8) of float32 ``x`` under ``scale`` and
    ``zero_point`` (``quantize_array``)."""
    return quantize_array(x, scale, zero_point, quint8)


registry.register("quantized_quantize", "numpy", quantize_reference)
registry.register("quantized_quantize", "numba", "minicnn.kernels.cpu.quantized:quantize")


def quantize(input, scale, zero_point):
    """quint8 ``quantize_per_tensor(input, scale, zero_point, quint8)``
    of a float32 Tensor whose data is a NumPy array (a converted
    QuantStub's work; parameters already checked), the integers by the
    backend's one-pass kernel."""
    q = registry.lookup("quantized_quantize", numpy)(input.data, scale, zero_point)
    return QTensor._per_tensor(q, scale, zero_point, quint8)


def add_reference(a, a_scale, a_zero_point, b, b_scale, b_zero_point, scale, zero_point, relu):
    """The NumPy reference of the ``quantized_add`` kernel: the uint8
    integers of quantized ``a + b`` (``relu(a + b)``), from the integers
    and parameters of the inputs (shapes broadcast)."""
    total = _dequantized_array(a, a_scale, a_zero_point) + _dequantized_array(b, b_scale, b_zero_point)
    if relu:
        total = numpy.maximum(total, _F32(0))
    return quantize_array(total, scale, zero_point, quint8)


registry.register("quantized_add", "numpy", add_reference)
registry.register("quantized_add", "numba", "minicnn.kernels.cpu.quantized:add")


def add(a, b, scale, zero_point, relu=False):
    """Quantized ``a + b`` (``relu(a + b)`` if ``relu``) with the output
    parameters ``scale``, ``zero_point``: each input dequantized, added in
    float32, quantized (``add_reference``; the backend's one-pass kernel
    where the shapes are equal)."""
    _binary(a, b, "quantized add", scale, zero_point)
    kernel = registry.lookup("quantized_add", numpy) if a.shape == b.shape else add_reference
    q = kernel(a._q, a.q_scale(), a.q_zero_point(), b._q, b.q_scale(), b.q_zero_point(), scale, zero_point, relu)
    return QTensor._per_tensor(q, scale, zero_point, quint8)


def mul(a, b, scale, zero_point):
    """Quantized element-wise ``a * b`` (shapes broadcast, as torch's:
    the squeeze-and-excitation gate (N, C, 1, 1) times (N, C, H, W))."""
    _binary(a, b, "quantized mul", scale, zero_point)
    return _requantized(_dequantized(a) * _dequantized(b), scale, zero_point)


def _channels_last_requantized(t, scale):
    """``t``'s values over the output ``scale`` (before rounding), as
    torch's channels-last cat computes them: for each pixel its channels
    run in vectors of 8 (an FMA dequantization, times ``float32(1.0 /
    scale)``) and the last ``C % 8`` channels in a scalar loop (``scale *
    (q - zero_point)`` times ``float32(1) / float32(scale)``)."""
    vector = t.shape[1] // 8 * 8
    head = QTensor._per_tensor(t._q[:, :vector], t.q_scale(), t.q_zero_point(), quint8)
    tail = QTensor._per_tensor(t._q[:, vector:], t.q_scale(), t.q_zero_point(), quint8)
    return numpy.concatenate([_dequantized_fma(head) * _F32(1.0 / scale),
                              _dequantized(tail) * (_F32(1) / _F32(scale))], axis=1)


def cat(tensors, dim, scale, zero_point):
    """Quantized concatenation along ``dim``, every input requantized to
    the output parameters. Along the channels of 4-d tensors the
    arithmetic is torch's channels-last kernel (see
    ``_channels_last_requantized``; its quantized convs return
    channels-last tensors); torch's NCHW kernel, which minicnn uses for
    every other case, dequantizes as ``scale * (q - zero_point)``
    throughout, and the two can differ by one step at exact ties."""
    fn = "quantized cat"
    if not tensors:
        raise ValueError(f"{fn}: needs at least one tensor")
    for i, t in enumerate(tensors):
        _check_quantized(t, fn, f"tensors[{i}]")
    _check_qparams(scale, zero_point, fn)
    try:
        if all(t.dim() == 4 for t in tensors) and dim % 4 == 1:
            values = numpy.concatenate([_channels_last_requantized(t, scale) for t in tensors], axis=1)
            q = numpy.clip(numpy.rint(values) + zero_point, 0, 255).astype(numpy.uint8)
            return QTensor._per_tensor(q, scale, zero_point, quint8)
        values = numpy.concatenate([_dequantized(t) for t in tensors], axis=dim)
    except ValueError as error:
        raise ValueError(f"{fn}: shapes {[tuple(t.shape) for t in tensors]} do not concatenate along dim {dim}") \
            from error
    return _requantized(values, scale, zero_point)


def relu(input):
    """ReLU on the integers: ``max(q, zero_point)``, same parameters."""
    _check_quantized(input, "quantized relu")
    q = numpy.maximum(input._q, numpy.uint8(input.q_zero_point()))
    return QTensor._per_tensor(q, input.q_scale(), input.q_zero_point(), quint8)


def _pair(value, name, fn):
    pair = (value, value) if isinstance(value, numbers.Integral) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, numbers.Integral) for v in pair):
        raise ValueError(f"{fn}: {name} must be an int or a pair of ints, got {value!r}")
    return pair


def _pool_size(i, k, s, p, d, ceil_mode):
    """torch's pooled size: rounded up with ceil_mode, but the last window
    must start inside the input or its left padding."""
    span = i + 2 * p - d * (k - 1) - 1
    o = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (o - 1) * s >= i + p:
        o -= 1
    return o


def _pool_args(input, kernel_size, stride, padding, fn):
    """Check that ``input`` is a 4-d quantized tensor; return the
    (kernel_size, stride, padding) pairs, stride defaulting (None or []) to
    kernel_size as in torch."""
    _check_quantized(input, fn)
    if input.dim() != 4:
        raise ValueError(f"{fn}: input must be 4-d (N, C, H, W), got shape {tuple(input.shape)}")
    kernel = _pair(kernel_size, "kernel_size", fn)
    step = _pair(stride if stride is not None and stride != [] else kernel_size, "stride", fn)
    return kernel, step, _pair(padding, "padding", fn)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Max pooling on the integers of a (N, C, H, W) quint8 tensor;
    padding never wins (torch pads with -inf)."""
    fn = "quantized max_pool2d"
    (kh, kw), (sh, sw), (ph, pw) = _pool_args(input, kernel_size, stride, padding, fn)
    dh, dw = _pair(dilation, "dilation", fn)
    H, W = input.shape[2:]
    OH = _pool_size(H, kh, sh, ph, dh, ceil_mode)
    OW = _pool_size(W, kw, sw, pw, dw, ceil_mode)
    if OH < 1 or OW < 1:
        raise ValueError(f"{fn}: input {tuple(input.shape)} is too small for kernel {(kh, kw)}")
    q = registry.lookup("quantized_max_pool2d", numpy)(input._q, (kh, kw), (sh, sw), (ph, pw), (dh, dw), (OH, OW))
    return QTensor._per_tensor(q, input.q_scale(), input.q_zero_point(), quint8)


def max_pool2d_reference(x, kernel_size, stride, padding, dilation, out_size):
    """The NumPy reference of the ``quantized_max_pool2d`` kernel: uint8
    (N, C, OH, OW) maxima of uint8 ``x`` over its windows (pairs for
    kernel_size, stride, padding, dilation; ``out_size`` (OH, OW))."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (OH, OW) = kernel_size, stride, padding, dilation, out_size
    H, W = x.shape[2:]
    # pad with -1, below every uint8; ceil_mode windows may run past the right edge
    extra_h = max(0, (OH - 1) * sh + dh * (kh - 1) + 1 - H - 2 * ph)
    extra_w = max(0, (OW - 1) * sw + dw * (kw - 1) + 1 - W - 2 * pw)
    padded = numpy.pad(x.astype(numpy.int16), ((0, 0), (0, 0), (ph, ph + extra_h), (pw, pw + extra_w)),
                       constant_values=-1)
    out = numpy.full(x.shape[:2] + (OH, OW), -1, numpy.int16)
    for i in range(kh):
        for j in range(kw):
            window = padded[:, :, i * dh:i * dh + sh * (OH - 1) + 1:sh, j * dw:j * dw + sw * (OW - 1) + 1:sw]
            numpy.maximum(out, window, out=out)
    return out.astype(numpy.uint8)


registry.register("quantized_max_pool2d", "numpy", max_pool2d_reference)
registry.register("quantized_max_pool2d", "numba", "minicnn.kernels.cpu.quantized:max_pool2d")


def adaptive_avg_pool2d(input, output_size):
    """Adaptive average pooling of a (N, C, H, W) or (C, H, W) quint8
    tensor: window ``i`` spans ``floor(i*H/OH)`` to ``ceil((i+1)*H/OH)``,
    its centered mean rounded half to even (see the module docstring);
    same parameters as the input."""
    fn = "quantized adaptive_avg_pool2d"
    _check_quantized(input, fn)
    if input.dim() not in (3, 4):
        raise ValueError(f"{fn}: input must be 3-d or 4-d, got shape {tuple(input.shape)}")
    H, W = input.shape[-2:]
    size = (output_size, output_size) if isinstance(output_size, numbers.Integral) else tuple(output_size)
    OH, OW = (H if size[0] is None else size[0]), (W if size[1] is None else size[1])
    zero_point = input.q_zero_point()
    q = input._q.astype(numpy.int64) - zero_point
    out = numpy.empty(input.shape[:-2] + (OH, OW), numpy.uint8)
    for i in range(OH):
        h0, h1 = (i * H) // OH, -(-((i + 1) * H) // OH)
        for j in range(OW):
            w0, w1 = (j * W) // OW, -(-((j + 1) * W) // OW)
            total = q[..., h0:h1, w0:w1].sum(axis=(-2, -1))
            mean = total.astype(_F32) * (_F32(1) / _F32((h1 - h0) * (w1 - w0)))
            out[..., i, j] = numpy.clip(numpy.rint(mean) + zero_point, 0, 255)
    return QTensor._per_tensor(out, input.q_scale(), input.q_zero_point(), quint8)


def flatten(input, start_dim=0, end_dim=-1):
    """``input`` with dims ``start_dim..end_dim`` merged (quantized or float)."""
    if isinstance(input, QTensor):
        return input.flatten(start_dim, end_dim)
    from ....functional import flatten as float_flatten
    return float_flatten(input, start_dim, end_dim)


def _dequantized_fma(q):
    """Dequantization as torch's vectorized kernels do it: one fused
    multiply-add ``scale * q + (-zero_point * scale)`` rounded once to
    float32 (the float64 sum is exact, so rounding it once is the FMA)."""
    scale = _F32(q.q_scale())
    premul = _F32(-q.q_zero_point()) * scale
    return (numpy.float64(scale) * q._q.astype(numpy.float64) + numpy.float64(premul)).astype(_F32)


def _requantized_double_inverse(values, scale, zero_point):
    """Quantize with the multiplier ``float32(1.0 / scale)`` (the reciprocal
    taken in float64, as torch's activation kernels pass it)."""
    q = numpy.rint(values * _F32(1.0 / scale)) + zero_point
    return QTensor._per_tensor(numpy.clip(q, 0, 255).astype(numpy.uint8), scale, zero_point, quint8)


def hardswish(input, scale, zero_point):
    """Quantized hard swish ``x * relu6(x + 3) / 6`` with the output
    ``scale`` and ``zero_point``.

    torch's x86 kernel, found by experiment: ``x`` dequantized by one FMA,
    ``(x * clamp(x + 3, 0, 6)) / 6`` in float32, quantized with
    ``float32(1.0 / scale)``. torch runs a scalar loop, not the vector one,
    on the last ``numel % 128`` elements (in its memory order) of each
    chunk; it dequantizes as ``scale * (q - zero_point)`` and can differ by
    one step at exact ties. minicnn uses the vector arithmetic everywhere.
    """
    fn = "quantized hardswish"
    _check_quantized(input, fn)
    _check_qparams(scale, zero_point, fn)
    x = _dequantized_fma(input)
    y = x * numpy.clip(x + _F32(3), _F32(0), _F32(6)) / _F32(6)
    return _requantized_double_inverse(y, scale, zero_point)


def hardsigmoid(input):
    """Quantized hard sigmoid ``relu6(x + 3) / 6``. As torch, the output
    has the fixed parameters scale 1/256, zero point 0 (its range is
    [0, 1] whatever the input); the arithmetic is hardswish's."""
    _check_quantized(input, "quantized hardsigmoid")
    x = _dequantized_fma(input)
    y = numpy.clip(x + _F32(3), _F32(0), _F32(6)) / _F32(6)
    return _requantized_double_inverse(y, 1.0 / 256, 0)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Average pooling of a (N, C, H, W) quint8 tensor; same parameters as
    the input.

    Each window sums the centered integers ``q - zero_point`` of the input
    elements it covers (padding adds 0), and ``float32(sum) * float32(1 /
    d)`` is rounded half to even and shifted by the zero point: torch's x86
    kernel for channels-last tensors (its quantized convs and cats return
    those). ``d`` is ``divisor_override`` if given, else the window's size
    inside the padded input (``count_include_pad``) or the number of input
    elements it covers. torch's NCHW kernel sums the raw integers (padding
    as the zero point) and can differ by one step at exact ties.
    """
    fn = "quantized avg_pool2d"
    (kh, kw), (sh, sw), (ph, pw) = _pool_args(input, kernel_size, stride, padding, fn)
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(f"{fn}: padding {(ph, pw)} must be at most half of kernel_size {(kh, kw)}")
    H, W = input.shape[2:]
    OH = _pool_size(H, kh, sh, ph, 1, ceil_mode)
    OW = _pool_size(W, kw, sw, pw, 1, ceil_mode)
    if OH < 1 or OW < 1:
        raise ValueError(f"{fn}: input {tuple(input.shape)} is too small for kernel {(kh, kw)}")
    zero_point = input.q_zero_point()
    centered = input._q.astype(numpy.int64) - zero_point
    out = numpy.empty(input.shape[:2] + (OH, OW), numpy.uint8)
    for i in range(OH):
        h0 = i * sh - ph
        h1 = min(h0 + kh, H + ph)
        for j in range(OW):
            w0 = j * sw - pw
            w1 = min(w0 + kw, W + pw)
            inside = (slice(max(h0, 0), min(h1, H)), slice(max(w0, 0), min(w1, W)))
            total = centered[:, :, inside[0], inside[1]].sum(axis=(-2, -1))
            if divisor_override is not None:
                divisor = divisor_override
            elif count_include_pad:
                divisor = (h1 - h0) * (w1 - w0)
            else:
                divisor = (inside[0].stop - inside[0].start) * (inside[1].stop - inside[1].start)
            mean = total.astype(_F32) * (_F32(1) / _F32(divisor))
            out[:, :, i, j] = numpy.clip(numpy.rint(mean) + zero_point, 0, 255)
    return QTensor._per_tensor(out, input.q_scale(), zero_point, quint8)
