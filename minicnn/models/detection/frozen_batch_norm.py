"""``FrozenBatchNorm2d``: batch norm with fixed statistics and affine
parameters, torchvision.ops.misc's module of that name.

Detection trains with one or two images per step, too few for batch
statistics to mean anything, so a backbone pretrained on ImageNet keeps
its running statistics and its scale and shift as constants:

    y = x * scale + shift,   scale = weight / sqrt(running_var + eps),
                             shift = bias - running_mean * scale

All four are buffers (state_dict keys ``weight``, ``bias``,
``running_mean``, ``running_var``, as BatchNorm2d's), none a parameter,
so an optimizer never sees them. A BatchNorm2d's state_dict has one key
more, ``num_batches_tracked``: drop it (or load with strict=False).
"""
from ... import nn
from ...backend import get_array_module
from ...creation import ones, zeros
from ...tensor import Tensor

__all__ = ["FrozenBatchNorm2d"]


class FrozenBatchNorm2d(nn.Module):
    """(N, C, H, W) -> (N, C, H, W), ``num_features`` = C, as the module
    docstring; ``eps`` 1e-5 as torchvision's."""

    def __init__(self, num_features, eps=1e-5):
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"FrozenBatchNorm2d: num_features must be a positive int, got {num_features!r}")
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", ones(num_features))
        self.register_buffer("bias", zeros(num_features))
        self.register_buffer("running_mean", zeros(num_features))
        self.register_buffer("running_var", ones(num_features))

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"FrozenBatchNorm2d: expected input (N, {self.num_features}, H, W), "
                             f"got {tuple(x.shape)}")
        xp = get_array_module(x.data)
        dtype = x.data.dtype
        w, b = self.weight.data.astype(dtype), self.bias.data.astype(dtype)
        rm, rv = self.running_mean.data.astype(dtype), self.running_var.data.astype(dtype)
        scale = w / xp.sqrt(rv + dtype.type(self.eps))
        shift = b - rm * scale
        return x * Tensor._wrap(scale.reshape(1, -1, 1, 1)) + Tensor._wrap(shift.reshape(1, -1, 1, 1))

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}"
