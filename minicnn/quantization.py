"""``mc.quantization``: the old name of :mod:`minicnn.ao.quantization`,
kept as torch keeps ``torch.quantization``."""
from .ao.quantization import *  # noqa: F401,F403
from .ao.quantization import __all__  # noqa: F401
