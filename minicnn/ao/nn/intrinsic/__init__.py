"""mc.ao.nn.intrinsic: fused float modules (torch.ao.nn.intrinsic)."""
from .modules import ConvReLU2d, LinearReLU  # noqa: F401
