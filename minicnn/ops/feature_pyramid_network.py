"""The feature pyramid network (Lin et al. 2017): torchvision.ops'
FeaturePyramidNetwork, LastLevelMaxPool and LastLevelP6P7, with its
module names and state_dict keys.

A backbone gives maps C_1 .. C_L of growing depth and shrinking size.
The FPN gives each level the same number of channels and the semantics
of the deepest one: a 1x1 conv ("inner block") brings C_i to
``out_channels``; going down from the top, the running map is upsampled
(nearest) to level i's size and added to it; a 3x3 conv ("layer
block") smooths each sum into the output P_i::

    inner_L = inner_L(C_L)
    inner_i = inner_i(C_i) + upsample(inner_{i+1})
    P_i     = layer_i(inner_i)

An extra block may add coarser levels: ``LastLevelMaxPool`` a "pool" map
subsampled from the last output (Faster R-CNN), ``LastLevelP6P7`` the
maps "p6" and "p7" from stride-2 3x3 convs (RetinaNet).
"""
from collections import OrderedDict

from .. import functional as F
from .. import nn
from ..models._layers import Conv2dNormActivation

__all__ = ["FeaturePyramidNetwork", "ExtraFPNBlock", "LastLevelMaxPool", "LastLevelP6P7"]


class ExtraFPNBlock(nn.Module):
    """The base class of extra FPN levels: forward(results, x, names)
    takes the FPN outputs, the backbone maps and the names, and returns
    the extended (results, names)."""

    def forward(self, results, x, names):
        raise NotImplementedError(f"{type(self).__name__} must define forward(results, x, names)")


class FeaturePyramidNetwork(nn.Module):
    """FPN over maps of ``in_channels_list`` channels (finest first) to
    ``out_channels`` each. forward(x): an ordered dict name -> map ->
    an ordered dict of the outputs under the same names (plus the extra
    block's), finest first. ``norm_layer`` (default none) goes after
    every conv."""

    def __init__(self, in_channels_list, out_channels, extra_blocks=None, norm_layer=None):
        super().__init__()
        self.inner_blocks = nn.ModuleList()
        self.layer_blocks = nn.ModuleList()
        for in_channels in in_channels_list:
            if in_channels == 0:
                raise ValueError("FeaturePyramidNetwork: in_channels=0 is not supported")
            self.inner_blocks.append(Conv2dNormActivation(in_channels, out_channels, kernel_size=1, padding=0,
                                                          norm_layer=norm_layer, activation_layer=None))
            self.layer_blocks.append(Conv2dNormActivation(out_channels, out_channels, kernel_size=3,
                                                          norm_layer=norm_layer, activation_layer=None))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
        if extra_blocks is not None and not isinstance(extra_blocks, ExtraFPNBlock):
            raise TypeError(f"FeaturePyramidNetwork: extra_blocks must be an ExtraFPNBlock, got "
                            f"{type(extra_blocks).__name__}")
        self.extra_blocks = extra_blocks

    def forward(self, x):
        names = list(x.keys())
        maps = list(x.values())
        if len(maps) != len(self.inner_blocks):
            raise ValueError(f"FeaturePyramidNetwork: built for {len(self.inner_blocks)} maps, got {len(maps)} "
                             f"({names})")
        last_inner = self.inner_blocks[-1](maps[-1])
        results = [self.layer_blocks[-1](last_inner)]
        for i in range(len(maps) - 2, -1, -1):
            lateral = self.inner_blocks[i](maps[i])
            last_inner = lateral + F.interpolate(last_inner, size=tuple(lateral.shape[-2:]), mode="nearest")
            results.insert(0, self.layer_blocks[i](last_inner))
        if self.extra_blocks is not None:
            results, names = self.extra_blocks(results, maps, names)
        return OrderedDict(zip(names, results))


class LastLevelMaxPool(ExtraFPNBlock):
    """Adds "pool": the last output subsampled by 2 (max_pool2d with a
    1x1 kernel, stride 2)."""

    def forward(self, x, y, names):
        names.append("pool")
        x.append(F.max_pool2d(x[-1], kernel_size=1, stride=2, padding=0))
        return x, names


class LastLevelP6P7(ExtraFPNBlock):
    """Adds "p6" = conv(P5 or C5) and "p7" = conv(relu(p6)), each a 3x3
    conv of stride 2: P5 when it has ``in_channels`` (in == out), else C5."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.p6 = nn.Conv2d(in_channels, out_channels, 3, 2, 1)
        self.p7 = nn.Conv2d(out_channels, out_channels, 3, 2, 1)
        for module in (self.p6, self.p7):
            nn.init.kaiming_uniform_(module.weight, a=1)
            nn.init.constant_(module.bias, 0)
        self.use_P5 = in_channels == out_channels

    def forward(self, p, c, names):
        p6 = self.p6(p[-1] if self.use_P5 else c[-1])
        p7 = self.p7(F.relu(p6))
        p.extend([p6, p7])
        names.extend(["p6", "p7"])
        return p, names
