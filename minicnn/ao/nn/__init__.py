"""mc.ao.nn: fused float modules (``intrinsic``) and quantized modules
(``quantized``, ``intrinsic.quantized``)."""
from . import intrinsic  # noqa: F401
