"""mc.ao: quantized int8 inference (torch's ``torch.ao``), loaded on
first use so that ``import minicnn`` stays fast.

``mc.ao.quantization`` holds the workflow (observers, qconfig, fusion,
prepare, convert), ``mc.ao.nn`` the fused float modules
(``mc.ao.nn.intrinsic``) and the quantized modules
(``mc.ao.nn.quantized``, ``mc.ao.nn.intrinsic.quantized``).
"""
from . import nn, quantization  # noqa: F401
from .qtensor import (  # noqa: F401
    QTensor, quantize_per_tensor, quantize_per_channel, quint8, qint8, qint32,
    per_tensor_affine, per_channel_affine, per_tensor_symmetric, per_channel_symmetric,
    _make_per_tensor_quantized_tensor, _make_per_channel_quantized_tensor)
