"""mc.ao.nn.intrinsic.quantized: quantized fused modules
(torch.ao.nn.intrinsic.quantized): one integer kernel, the ReLU folded into
the requantization clamp."""
from ...quantized.modules import Conv2d, Linear


class ConvReLU2d(Conv2d):
    """Quantized Conv2d + ReLU, built from ``mc.ao.nn.intrinsic.ConvReLU2d``."""

    _relu = True


class LinearReLU(Linear):
    """Quantized Linear + ReLU, built from ``mc.ao.nn.intrinsic.LinearReLU``."""

    _relu = True
