"""Fused float modules: the pairs that ``fuse_modules`` merges and that
``convert`` turns into one quantized module (one integer kernel, one
requantization, so no quantization step between conv and ReLU)."""
from ....nn import Conv2d, Linear, ReLU, Sequential


class _FusedModule(Sequential):
    """A Sequential of modules that run as one when quantized."""

    _parts = ()

    def __init__(self, *modules):
        for module, kind in zip(modules, self._parts):
            if type(module) is not kind:
                raise TypeError(f"{type(self).__name__}: expected {', '.join(k.__name__ for k in self._parts)}, "
                                f"got {', '.join(type(m).__name__ for m in modules)}")
        super().__init__(*modules)


class ConvReLU2d(_FusedModule):
    """Conv2d followed by ReLU (torch.ao.nn.intrinsic.ConvReLU2d)."""

    _parts = (Conv2d, ReLU)


class LinearReLU(_FusedModule):
    """Linear followed by ReLU (torch.ao.nn.intrinsic.LinearReLU)."""

    _parts = (Linear, ReLU)
