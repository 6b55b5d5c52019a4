"""Neural-network building blocks; ``mc.nn.functional`` holds the ops."""
from . import functional  # noqa: F401
