"""RegNetX and RegNetY (Radosavovic et al., 2020, "Designing Network Design
Spaces"), laid out as torchvision lays them out, so torchvision's
state_dicts load unchanged.

The idea: instead of designing one network, find a simple rule that
generates good ones. The rule found is that good widths grow linearly with
depth, then get quantized: block j gets the width u_j = w_0 + w_a j,
snapped to w_0 w_m^k (k an integer, rounded in log space) and to a
multiple of 8; consecutive blocks with the same width form a stage. Four
numbers (depth, w_0, w_a, w_m) plus the group width describe a whole
network. RegNetY adds a squeeze-and-excitation gate to every block.

Every block is a ResNet bottleneck with a grouped 3x3 conv
(ResNeXt-style); X and Y differ only in the SE gate:

    x -> [1x1, BN, ReLU] -> [3x3 grouped (stride), BN, ReLU] -> (SE)
      -> [1x1, BN] -> + shortcut(x) -> ReLU

Layout: ``stem`` (3x3 conv stride 2, BN, ReLU: (N, 3, H, W) ->
(N, 32, H/2, W/2)), ``trunk_output`` (stages ``block1`` ... ``block4``,
each halving the size; blocks named ``block1-0``, ``block1-1``, ...),
``avgpool``, ``fc``.
"""
import math
from collections import OrderedDict
from functools import partial

import numpy

from .. import functional as F
from .. import nn
from ._layers import Conv2dNormActivation, _check_weights, _make_divisible
from .registry import register_model

__all__ = [
    "RegNet", "BlockParams",
    "regnet_y_400mf", "regnet_y_800mf", "regnet_y_1_6gf", "regnet_y_3_2gf", "regnet_y_8gf", "regnet_y_16gf",
    "regnet_y_32gf", "regnet_y_128gf",
    "regnet_x_400mf", "regnet_x_800mf", "regnet_x_1_6gf", "regnet_x_3_2gf", "regnet_x_8gf", "regnet_x_16gf",
    "regnet_x_32gf",
]


class SimpleStemIN(Conv2dNormActivation):
    """The ImageNet stem: 3x3 conv with stride 2, norm, activation."""

    def __init__(self, width_in, width_out, norm_layer, activation_layer):
        super().__init__(width_in, width_out, kernel_size=3, stride=2, norm_layer=norm_layer,
                         activation_layer=activation_layer)


class BottleneckTransform(nn.Sequential):
    """The residual branch: ``a`` 1x1 to the bottleneck width w_b =
    width_out * bottleneck_multiplier, ``b`` 3x3 grouped conv (groups of
    ``group_width`` channels) carrying the stride, ``se`` (RegNetY only),
    ``c`` 1x1 to width_out with no activation (it comes after the sum)."""

    def __init__(self, width_in, width_out, stride, norm_layer, activation_layer, group_width,
                 bottleneck_multiplier, se_ratio):
        layers = OrderedDict()
        w_b = int(round(width_out * bottleneck_multiplier))
        groups = w_b // group_width
        layers["a"] = Conv2dNormActivation(width_in, w_b, kernel_size=1, stride=1, norm_layer=norm_layer,
                                           activation_layer=activation_layer)
        layers["b"] = Conv2dNormActivation(w_b, w_b, kernel_size=3, stride=stride, groups=groups,
                                           norm_layer=norm_layer, activation_layer=activation_layer)
        if se_ratio:
            # The SE bottleneck is sized from the block's input width, not from w_b.
            width_se_out = int(round(se_ratio * width_in))
            layers["se"] = nn.SqueezeExcitation(input_channels=w_b, squeeze_channels=width_se_out,
                                                activation=activation_layer)
        layers["c"] = Conv2dNormActivation(w_b, width_out, kernel_size=1, stride=1, norm_layer=norm_layer,
                                           activation_layer=None)
        super().__init__(layers)


class ResBottleneckBlock(nn.Module):
    """activation(shortcut(x) + f(x)): (N, width_in, H, W) ->
    (N, width_out, H / stride, W / stride). The shortcut ``proj`` (1x1
    conv and norm) exists only when the shape changes; otherwise it is x."""

    def __init__(self, width_in, width_out, stride, norm_layer, activation_layer, group_width=1,
                 bottleneck_multiplier=1.0, se_ratio=None):
        super().__init__()
        self.proj = None
        if width_in != width_out or stride != 1:
            self.proj = Conv2dNormActivation(width_in, width_out, kernel_size=1, stride=stride,
                                             norm_layer=norm_layer, activation_layer=None)
        self.f = BottleneckTransform(width_in, width_out, stride, norm_layer, activation_layer, group_width,
                                     bottleneck_multiplier, se_ratio)
        self.activation = activation_layer(inplace=True)

    def forward(self, x):
        if self.proj is not None:
            x = self.proj(x) + self.f(x)
        else:
            x = x + self.f(x)
        return self.activation(x)


class AnyStage(nn.Sequential):
    """A stage: ``depth`` blocks of the same output width, the first one
    carrying the stride; named ``block{stage_index}-{i}``."""

    def __init__(self, width_in, width_out, stride, depth, block_constructor, norm_layer, activation_layer,
                 group_width, bottleneck_multiplier, se_ratio=None, stage_index=0):
        super().__init__()
        for i in range(depth):
            block = block_constructor(width_in if i == 0 else width_out, width_out, stride if i == 0 else 1,
                                      norm_layer, activation_layer, group_width, bottleneck_multiplier,
                                      se_ratio)
            self.add_module(f"block{stage_index}-{i}", block)


class BlockParams:
    """Per-stage settings: ``depths``, ``widths``, ``group_widths``,
    ``bottleneck_multipliers``, ``strides`` (lists, one entry per stage),
    and the SE ratio (None for RegNetX)."""

    def __init__(self, depths, widths, group_widths, bottleneck_multipliers, strides, se_ratio=None):
        self.depths = depths
        self.widths = widths
        self.group_widths = group_widths
        self.bottleneck_multipliers = bottleneck_multipliers
        self.strides = strides
        self.se_ratio = se_ratio

    @classmethod
    def from_init_params(cls, depth, w_0, w_a, w_m, group_width, bottleneck_multiplier=1.0, se_ratio=None,
                         **kwargs):
        """The stages generated by the RegNet rule (other ``kwargs`` are
        ignored, as in torchvision, whose builders pass theirs to both).

        Block j's continuous width is u_j = w_0 + w_a j. Its width exponent
        k_j = round(log(u_j / w_0) / log(w_m)) gives the block width
        w_0 w_m^k_j, rounded to a multiple of 8. A new stage starts where
        the width changes; every stage halves the size (stride 2).
        """
        quant, stride = 8, 2
        if w_a < 0 or w_0 <= 0 or w_m <= 1 or w_0 % 8 != 0:
            raise ValueError(f"BlockParams: invalid RegNet settings w_0={w_0}, w_a={w_a}, w_m={w_m} "
                             "(need w_a >= 0, w_0 > 0 a multiple of 8, w_m > 1)")
        # torch computes these in float32 (its default dtype); so do we, so
        # that every width rounds exactly as in torchvision.
        f32 = numpy.float32
        widths_cont = numpy.arange(depth).astype(f32) * f32(w_a) + f32(w_0)
        block_capacity = numpy.round(numpy.log(widths_cont / f32(w_0)) / f32(math.log(w_m)))
        block_widths = (numpy.round(f32(w_0) * numpy.power(f32(w_m), block_capacity) / f32(quant))
                        * quant).astype(int).tolist()

        # Stage boundaries: where the width changes.
        stage_widths, stage_depths = [], []
        for w in block_widths:
            if stage_widths and stage_widths[-1] == w:
                stage_depths[-1] += 1
            else:
                stage_widths.append(w)
                stage_depths.append(1)
        num_stages = len(stage_widths)
        bottleneck_multipliers = [bottleneck_multiplier] * num_stages
        stage_widths, group_widths = cls._adjust_widths_groups_compatibilty(
            stage_widths, bottleneck_multipliers, [group_width] * num_stages)
        return cls(depths=stage_depths, widths=stage_widths, group_widths=group_widths,
                   bottleneck_multipliers=bottleneck_multipliers, strides=[stride] * num_stages,
                   se_ratio=se_ratio)

    def _get_expanded_params(self):
        return zip(self.widths, self.strides, self.depths, self.group_widths, self.bottleneck_multipliers)

    @staticmethod
    def _adjust_widths_groups_compatibilty(stage_widths, bottleneck_ratios, group_widths):
        """Make each bottleneck width a multiple of its group width (and a
        group no wider than the bottleneck): (stage widths, group widths)."""
        widths = [int(w * b) for w, b in zip(stage_widths, bottleneck_ratios)]
        group_widths_min = [min(g, w_bot) for g, w_bot in zip(group_widths, widths)]
        ws_bot = [_make_divisible(w_bot, g) for w_bot, g in zip(widths, group_widths_min)]
        stage_widths = [int(w_bot / b) for w_bot, b in zip(ws_bot, bottleneck_ratios)]
        return stage_widths, group_widths_min


class RegNet(nn.Module):
    """A RegNet from ``block_params``: (N, 3, H, W) -> (N, num_classes).
    ``stem_type``, ``block_type``, ``norm_layer`` (BatchNorm2d) and
    ``activation`` (ReLU) are Module classes or factories."""

    def __init__(self, block_params, num_classes=1000, stem_width=32, stem_type=None, block_type=None,
                 norm_layer=None, activation=None):
        super().__init__()
        stem_type = SimpleStemIN if stem_type is None else stem_type
        norm_layer = nn.BatchNorm2d if norm_layer is None else norm_layer
        block_type = ResBottleneckBlock if block_type is None else block_type
        activation = nn.ReLU if activation is None else activation

        self.stem = stem_type(3, stem_width, norm_layer, activation)
        current_width = stem_width
        stages = []
        for i, (width_out, stride, depth, group_width, bottleneck_multiplier) in enumerate(
                block_params._get_expanded_params()):
            stages.append((f"block{i + 1}", AnyStage(
                current_width, width_out, stride, depth, block_type, norm_layer, activation, group_width,
                bottleneck_multiplier, block_params.se_ratio, stage_index=i + 1)))
            current_width = width_out
        self.trunk_output = nn.Sequential(OrderedDict(stages))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(in_features=current_width, out_features=num_classes)

        # ResNet-style initialisation: He normal with fan_out (= k^2 C_out,
        # whatever the groups), BN as the identity, a small normal fc.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, mean=0.0, std=math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, mean=0.0, std=0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.stem(x)
        x = self.trunk_output(x)
        x = self.avgpool(x)
        x = F.flatten(x, 1)
        return self.fc(x)


# name: (depth, w_0, w_a, w_m, group_width, se_ratio), the RegNet rule's
# parameters of each model (the paper's appendix; SE for RegNetY only).
_CONFIGS = {
    "regnet_y_400mf": (16, 48, 27.89, 2.09, 8, 0.25),
    "regnet_y_800mf": (14, 56, 38.84, 2.4, 16, 0.25),
    "regnet_y_1_6gf": (27, 48, 20.71, 2.65, 24, 0.25),
    "regnet_y_3_2gf": (21, 80, 42.63, 2.66, 24, 0.25),
    "regnet_y_8gf": (17, 192, 76.82, 2.19, 56, 0.25),
    "regnet_y_16gf": (18, 200, 106.23, 2.48, 112, 0.25),
    "regnet_y_32gf": (20, 232, 115.89, 2.53, 232, 0.25),
    "regnet_y_128gf": (27, 456, 160.83, 2.52, 264, 0.25),
    "regnet_x_400mf": (22, 24, 24.48, 2.54, 16, None),
    "regnet_x_800mf": (16, 56, 35.73, 2.28, 16, None),
    "regnet_x_1_6gf": (18, 80, 34.01, 2.25, 24, None),
    "regnet_x_3_2gf": (25, 88, 26.31, 2.25, 48, None),
    "regnet_x_8gf": (23, 80, 49.56, 2.88, 120, None),
    "regnet_x_16gf": (22, 216, 55.59, 2.1, 128, None),
    "regnet_x_32gf": (23, 320, 69.86, 2.0, 168, None),
}


def _regnet(arch, weights, kwargs):
    _check_weights(weights, arch)
    depth, w_0, w_a, w_m, group_width, se_ratio = _CONFIGS[arch]
    params = BlockParams.from_init_params(depth=depth, w_0=w_0, w_a=w_a, w_m=w_m, group_width=group_width,
                                          se_ratio=se_ratio)
    norm_layer = kwargs.pop("norm_layer", partial(nn.BatchNorm2d, eps=1e-05, momentum=0.1))
    return RegNet(params, norm_layer=norm_layer, **kwargs)


@register_model
def regnet_y_400mf(*, weights=None, progress=True, **kwargs):
    """RegNetY-400MF (4.3M parameters). ``kwargs`` go to RegNet:
    num_classes, stem_width, stem_type, block_type, norm_layer, activation."""
    return _regnet("regnet_y_400mf", weights, kwargs)


@register_model
def regnet_y_800mf(*, weights=None, progress=True, **kwargs):
    """RegNetY-800MF (6.4M parameters); kwargs as regnet_y_400mf."""
    return _regnet("regnet_y_800mf", weights, kwargs)


@register_model
def regnet_y_1_6gf(*, weights=None, progress=True, **kwargs):
    """RegNetY-1.6GF (11.2M parameters)."""
    return _regnet("regnet_y_1_6gf", weights, kwargs)


@register_model
def regnet_y_3_2gf(*, weights=None, progress=True, **kwargs):
    """RegNetY-3.2GF (19.4M parameters)."""
    return _regnet("regnet_y_3_2gf", weights, kwargs)


@register_model
def regnet_y_8gf(*, weights=None, progress=True, **kwargs):
    """RegNetY-8GF (39.4M parameters)."""
    return _regnet("regnet_y_8gf", weights, kwargs)


@register_model
def regnet_y_16gf(*, weights=None, progress=True, **kwargs):
    """RegNetY-16GF (83.6M parameters)."""
    return _regnet("regnet_y_16gf", weights, kwargs)


@register_model
def regnet_y_32gf(*, weights=None, progress=True, **kwargs):
    """RegNetY-32GF (145.0M parameters)."""
    return _regnet("regnet_y_32gf", weights, kwargs)


@register_model
def regnet_y_128gf(*, weights=None, progress=True, **kwargs):
    """RegNetY-128GF (644.8M parameters)."""
    return _regnet("regnet_y_128gf", weights, kwargs)


@register_model
def regnet_x_400mf(*, weights=None, progress=True, **kwargs):
    """RegNetX-400MF (5.5M parameters); kwargs as regnet_y_400mf."""
    return _regnet("regnet_x_400mf", weights, kwargs)


@register_model
def regnet_x_800mf(*, weights=None, progress=True, **kwargs):
    """RegNetX-800MF (7.3M parameters)."""
    return _regnet("regnet_x_800mf", weights, kwargs)


@register_model
def regnet_x_1_6gf(*, weights=None, progress=True, **kwargs):
    """RegNetX-1.6GF (9.2M parameters)."""
    return _regnet("regnet_x_1_6gf", weights, kwargs)


@register_model
def regnet_x_3_2gf(*, weights=None, progress=True, **kwargs):
    """RegNetX-3.2GF (15.3M parameters)."""
    return _regnet("regnet_x_3_2gf", weights, kwargs)


@register_model
def regnet_x_8gf(*, weights=None, progress=True, **kwargs):
    """RegNetX-8GF (39.6M parameters)."""
    return _regnet("regnet_x_8gf", weights, kwargs)


@register_model
def regnet_x_16gf(*, weights=None, progress=True, **kwargs):
    """RegNetX-16GF (54.3M parameters)."""
    return _regnet("regnet_x_16gf", weights, kwargs)


@register_model
def regnet_x_32gf(*, weights=None, progress=True, **kwargs):
    """RegNetX-32GF (107.8M parameters)."""
    return _regnet("regnet_x_32gf", weights, kwargs)
