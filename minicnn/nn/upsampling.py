"""Upsample: resize the spatial dims by a scale factor or to a size (a
layer around ``F.interpolate``)."""
from .. import functional as F
from .module import Module


class Upsample(Module):
    """Resize (N, C, H, W) input to ``size`` or by ``scale_factor`` with
    ``mode`` 'nearest' or 'bilinear' ('linear' for (N, C, L), 'trilinear'
    for (N, C, D, H, W)); ``F.interpolate`` checks the arguments."""

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None,
                 recompute_scale_factor=None):
        super().__init__()
        self.size = size
        if isinstance(scale_factor, tuple):
            self.scale_factor = tuple(float(f) for f in scale_factor)
        else:
            self.scale_factor = float(scale_factor) if scale_factor else None
        self.mode = mode
        self.align_corners = align_corners
        self.recompute_scale_factor = recompute_scale_factor

    def forward(self, input):
        return F.interpolate(input, self.size, self.scale_factor, self.mode, self.align_corners,
                             recompute_scale_factor=self.recompute_scale_factor)

    def extra_repr(self):
        if self.scale_factor is not None:
            info = f"scale_factor={self.scale_factor!r}"
        else:
            info = f"size={self.size!r}"
        return info + f", mode={self.mode!r}"
