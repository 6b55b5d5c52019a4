"""Eager-mode post-training static quantization, torch's workflow::

    model.eval()
    model.qconfig = mc.ao.quantization.get_default_qconfig("x86")
    fused = mc.ao.quantization.fuse_modules(model, [["conv", "bn", "relu"]])
    prepared = mc.ao.quantization.prepare(fused)     # observers attached
    for x in calibration_batches:
        prepared(x)                                  # observers record ranges
    quantized = mc.ao.quantization.convert(prepared) # int8 modules swapped in
"""
from ..qtensor import (  # noqa: F401
    QTensor, quantize_per_tensor, quantize_per_channel, quint8, qint8, qint32,
    per_tensor_affine, per_channel_affine, per_tensor_symmetric, per_channel_symmetric)
from .observer import (  # noqa: F401
    ObserverBase, MinMaxObserver, MovingAverageMinMaxObserver, PerChannelMinMaxObserver, HistogramObserver,
    PlaceholderObserver, calculate_qmin_qmax, default_observer, default_weight_observer,
    default_histogram_observer, default_per_channel_weight_observer)
from .qconfig import QConfig, default_qconfig, default_per_channel_qconfig, get_default_qconfig  # noqa: F401
from .fuse_modules import fuse_modules, fuse_known_modules, fuse_conv_bn_eval, fuse_linear_bn_eval  # noqa: F401
from .stubs import QuantStub, DeQuantStub  # noqa: F401
from .quantize import (  # noqa: F401
    prepare, convert, propagate_qconfig_, swap_module, DEFAULT_STATIC_QUANT_MODULE_MAPPINGS)

__all__ = [_name for _name in dir() if not _name.startswith("_")]
