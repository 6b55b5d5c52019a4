"""Utilities: conv arithmetic, data loading."""
from ..kernels.geometry import conv_output_size, conv_transpose_output_size, pair  # noqa: F401
from . import data  # noqa: F401
