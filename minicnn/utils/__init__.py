"""Utilities: conv arithmetic, receptive fields, data loading, gradient checkpointing."""
from ..kernels.geometry import conv_output_size, conv_transpose_output_size, pair  # noqa: F401
from . import checkpoint, data  # noqa: F401
from .receptive_field import receptive_field, format_receptive_field, ReceptiveFieldTable  # noqa: F401
