"""mc.ao.nn.quantized: quantized modules (torch.ao.nn.quantized)."""
from .modules import (  # noqa: F401
    Quantize, DeQuantize, Conv2d, Linear, ReLU, Hardswish, Hardsigmoid, MaxPool2d, AdaptiveAvgPool2d, Flatten, FloatFunctional,
    QFunctional)
from . import functional  # noqa: F401
