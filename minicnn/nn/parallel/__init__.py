"""Parallel wrappers of a model, torch's ``nn.parallel``."""
from .distributed import DistributedDataParallel  # noqa: F401
