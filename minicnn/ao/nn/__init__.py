"""mc.ao.nn: fused float modules (``intrinsic``) and quantized modules
(``quantized``, ``intrinsic.quantized``)."""
from . import intrinsic, quantized  # noqa: F401
from .intrinsic import quantized as _intrinsic_quantized  # noqa: F401
