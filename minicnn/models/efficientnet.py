"""EfficientNet B0-B7 (Tan & Le, 2019, "EfficientNet: Rethinking Model
Scaling for Convolutional Neural Networks") and EfficientNetV2 S/M/L (Tan &
Le, 2021, "EfficientNetV2: Smaller Models and Faster Training"), laid out
as torchvision lays them out, so torchvision's state_dicts load unchanged.

The idea of V1: find a good small network (B0, by architecture search),
then scale depth, width and resolution together by fixed ratios; B1-B7 are
B0 with ``width_mult`` (channels) and ``depth_mult`` (blocks per stage)
growing step by step. Every block is an MBConv (MobileNetV2's inverted
residual): a 1x1 conv expands the channels, a cheap depthwise conv looks at
space, a squeeze-and-excitation gate reweights the channels, and a 1x1 conv
projects back down, with a skip connection when the shape allows:

    x -> [1x1 expand, BN, SiLU] -> [kxk depthwise, BN, SiLU] -> SE
      -> [1x1 project, BN] -> (+ x)

V2 replaces the first stages' expand + depthwise pair by one full kxk conv
(FusedMBConv, faster on accelerators at high resolution) and drops SE there.

Layout (``features``, a Sequential; N images of 3 channels):

    features.0        stem: 3x3 conv stride 2, BN, SiLU
    features.1 ... k  one Sequential of blocks per stage (stride 2 in its
                      first block when the stage downsamples)
    features.k+1      head: 1x1 conv to the last channels, BN, SiLU
    avgpool           global average -> (N, C, 1, 1)
    classifier        Dropout, Linear -> (N, num_classes)

Residual branches use stochastic depth: while training, a block's branch
is dropped for a whole sample with a probability that grows linearly with
the block's depth (up to ``stochastic_depth_prob``); in eval mode it is the
identity.
"""
import copy
import math
from functools import partial

from .. import functional as F
from .. import nn
from ._layers import (Conv2dNormActivation, StochasticDepth, _check_weights, _make_divisible,
                      init_mobile_weights)
from .registry import register_model

__all__ = [
    "EfficientNet", "MBConv", "FusedMBConv", "MBConvConfig", "FusedMBConvConfig",
    "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_b4",
    "efficientnet_b5", "efficientnet_b6", "efficientnet_b7",
    "efficientnet_v2_s", "efficientnet_v2_m", "efficientnet_v2_l",
]


class _BlockConfig:
    """One stage of the network: ``num_layers`` blocks of type ``block``
    with ``kernel``, ``expand_ratio`` (expanded channels / input channels),
    and ``stride`` in the first block. (Table 1 of the V1 paper, table 4 of
    the V2 paper.)"""

    def __init__(self, expand_ratio, kernel, stride, input_channels, out_channels, num_layers, block):
        self.expand_ratio = expand_ratio
        self.kernel = kernel
        self.stride = stride
        self.input_channels = input_channels
        self.out_channels = out_channels
        self.num_layers = num_layers
        self.block = block

    @staticmethod
    def adjust_channels(channels, width_mult, min_value=None):
        """``channels * width_mult`` rounded to a multiple of 8."""
        return _make_divisible(channels * width_mult, 8, min_value)

    def __repr__(self):
        return (f"{type(self).__name__}(expand_ratio={self.expand_ratio}, kernel={self.kernel}, "
                f"stride={self.stride}, input_channels={self.input_channels}, "
                f"out_channels={self.out_channels}, num_layers={self.num_layers})")


class MBConvConfig(_BlockConfig):
    """A stage of MBConv blocks, its channels scaled by ``width_mult`` and
    its number of blocks by ``depth_mult`` (rounded up)."""

    def __init__(self, expand_ratio, kernel, stride, input_channels, out_channels, num_layers,
                 width_mult=1.0, depth_mult=1.0, block=None):
        super().__init__(expand_ratio, kernel, stride,
                         self.adjust_channels(input_channels, width_mult),
                         self.adjust_channels(out_channels, width_mult),
                         self.adjust_depth(num_layers, depth_mult),
                         MBConv if block is None else block)

    @staticmethod
    def adjust_depth(num_layers, depth_mult):
        return int(math.ceil(num_layers * depth_mult))


class FusedMBConvConfig(_BlockConfig):
    """A stage of FusedMBConv blocks (V2; no width or depth scaling)."""

    def __init__(self, expand_ratio, kernel, stride, input_channels, out_channels, num_layers, block=None):
        super().__init__(expand_ratio, kernel, stride, input_channels, out_channels, num_layers,
                         FusedMBConv if block is None else block)


class MBConv(nn.Module):
    """Inverted residual with squeeze-and-excitation:
    (N, C_in, H, W) -> (N, C_out, H / stride, W / stride).

    ``block``: [expand 1x1 (left out when expand_ratio is 1)], depthwise
    kxk, SqueezeExcitation (squeezing to C_in / 4 channels), project 1x1
    (no activation: a ReLU-like function on the thin output would destroy
    information, MobileNetV2's "linear bottleneck").
    """

    def __init__(self, cnf, stochastic_depth_prob, norm_layer, se_layer=nn.SqueezeExcitation):
        super().__init__()
        if not 1 <= cnf.stride <= 2:
            raise ValueError(f"MBConv: stride must be 1 or 2, got {cnf.stride}")
        self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels

        layers = []
        expanded_channels = cnf.adjust_channels(cnf.input_channels, cnf.expand_ratio)
        if expanded_channels != cnf.input_channels:
            layers.append(Conv2dNormActivation(cnf.input_channels, expanded_channels, kernel_size=1,
                                               norm_layer=norm_layer, activation_layer=nn.SiLU))
        layers.append(Conv2dNormActivation(expanded_channels, expanded_channels, kernel_size=cnf.kernel,
                                           stride=cnf.stride, groups=expanded_channels,
                                           norm_layer=norm_layer, activation_layer=nn.SiLU))
        squeeze_channels = max(1, cnf.input_channels // 4)
        layers.append(se_layer(expanded_channels, squeeze_channels, activation=partial(nn.SiLU, inplace=True)))
        layers.append(Conv2dNormActivation(expanded_channels, cnf.out_channels, kernel_size=1,
                                           norm_layer=norm_layer, activation_layer=None))
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")
        self.out_channels = cnf.out_channels

    def forward(self, input):
        result = self.block(input)
        if self.use_res_connect:
            result = self.stochastic_depth(result) + input
        return result


class FusedMBConv(nn.Module):
    """EfficientNetV2's fused block: one full kxk conv does the expansion
    and the spatial filtering, then a 1x1 conv projects (or, with
    expand_ratio 1, the kxk conv alone maps C_in to C_out). No SE."""

    def __init__(self, cnf, stochastic_depth_prob, norm_layer):
        super().__init__()
        if not 1 <= cnf.stride <= 2:
            raise ValueError(f"FusedMBConv: stride must be 1 or 2, got {cnf.stride}")
        self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels

        expanded_channels = cnf.adjust_channels(cnf.input_channels, cnf.expand_ratio)
        if expanded_channels != cnf.input_channels:
            layers = [
                Conv2dNormActivation(cnf.input_channels, expanded_channels, kernel_size=cnf.kernel,
                                     stride=cnf.stride, norm_layer=norm_layer, activation_layer=nn.SiLU),
                Conv2dNormActivation(expanded_channels, cnf.out_channels, kernel_size=1,
                                     norm_layer=norm_layer, activation_layer=None),
            ]
        else:
            layers = [Conv2dNormActivation(cnf.input_channels, cnf.out_channels, kernel_size=cnf.kernel,
                                           stride=cnf.stride, norm_layer=norm_layer, activation_layer=nn.SiLU)]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")
        self.out_channels = cnf.out_channels

    def forward(self, input):
        result = self.block(input)
        if self.use_res_connect:
            result = self.stochastic_depth(result) + input
        return result


def _uniform_by_out_features(linear):
    """EfficientNet's classifier: U(-1/sqrt(out_features), 1/sqrt(out_features))."""
    init_range = 1.0 / math.sqrt(linear.out_features)
    nn.init.uniform_(linear.weight, -init_range, init_range)


class EfficientNet(nn.Module):
    """EfficientNet V1 or V2 from a list of stage configs
    (``inverted_residual_setting``): (N, 3, H, W) -> (N, num_classes).

    ``last_channel``: the head's width (default 4 x the last stage's);
    ``norm_layer``: default BatchNorm2d.
    """

    def __init__(self, inverted_residual_setting, dropout, stochastic_depth_prob=0.2, num_classes=1000,
                 norm_layer=None, last_channel=None):
        super().__init__()
        if not inverted_residual_setting:
            raise ValueError("EfficientNet: inverted_residual_setting must not be empty")
        if not all(isinstance(s, _BlockConfig) for s in inverted_residual_setting):
            raise TypeError("EfficientNet: inverted_residual_setting must be a list of MBConvConfig / "
                            "FusedMBConvConfig")
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d

        first_channels = inverted_residual_setting[0].input_channels
        layers = [Conv2dNormActivation(3, first_channels, kernel_size=3, stride=2,
                                       norm_layer=norm_layer, activation_layer=nn.SiLU)]

        total_blocks = sum(cnf.num_layers for cnf in inverted_residual_setting)
        block_id = 0
        for cnf in inverted_residual_setting:
            stage = []
            for _ in range(cnf.num_layers):
                block_cnf = copy.copy(cnf)
                if stage:
                    # Only a stage's first block changes the channels and the size.
                    block_cnf.input_channels = block_cnf.out_channels
                    block_cnf.stride = 1
                # Deeper blocks are dropped more often (linearly from 0).
                sd_prob = stochastic_depth_prob * float(block_id) / total_blocks
                stage.append(block_cnf.block(block_cnf, sd_prob, norm_layer))
                block_id += 1
            layers.append(nn.Sequential(*stage))

        last_in = inverted_residual_setting[-1].out_channels
        last_out = last_channel if last_channel is not None else 4 * last_in
        layers.append(Conv2dNormActivation(last_in, last_out, kernel_size=1,
                                           norm_layer=norm_layer, activation_layer=nn.SiLU))

        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(last_out, num_classes),
        )

        init_mobile_weights(self, init_linear=_uniform_by_out_features)

    def forward(self, x):
        x = self.features(x)
        x = self.avgpool(x)
        x = F.flatten(x, 1)
        return self.classifier(x)


def _efficientnet_conf(arch, width_mult=1.0, depth_mult=1.0):
    """(stage configs, last_channel) of ``arch``."""
    if arch.startswith("efficientnet_b"):
        bneck_conf = partial(MBConvConfig, width_mult=width_mult, depth_mult=depth_mult)
        setting = [
            # expand, kernel, stride, in, out, layers
            bneck_conf(1, 3, 1, 32, 16, 1),
            bneck_conf(6, 3, 2, 16, 24, 2),
            bneck_conf(6, 5, 2, 24, 40, 2),
            bneck_conf(6, 3, 2, 40, 80, 3),
            bneck_conf(6, 5, 1, 80, 112, 3),
            bneck_conf(6, 5, 2, 112, 192, 4),
            bneck_conf(6, 3, 1, 192, 320, 1),
        ]
        return setting, None
    if arch == "efficientnet_v2_s":
        setting = [
            FusedMBConvConfig(1, 3, 1, 24, 24, 2),
            FusedMBConvConfig(4, 3, 2, 24, 48, 4),
            FusedMBConvConfig(4, 3, 2, 48, 64, 4),
            MBConvConfig(4, 3, 2, 64, 128, 6),
            MBConvConfig(6, 3, 1, 128, 160, 9),
            MBConvConfig(6, 3, 2, 160, 256, 15),
        ]
    elif arch == "efficientnet_v2_m":
        setting = [
            FusedMBConvConfig(1, 3, 1, 24, 24, 3),
            FusedMBConvConfig(4, 3, 2, 24, 48, 5),
            FusedMBConvConfig(4, 3, 2, 48, 80, 5),
            MBConvConfig(4, 3, 2, 80, 160, 7),
            MBConvConfig(6, 3, 1, 160, 176, 14),
            MBConvConfig(6, 3, 2, 176, 304, 18),
            MBConvConfig(6, 3, 1, 304, 512, 5),
        ]
    elif arch == "efficientnet_v2_l":
        setting = [
            FusedMBConvConfig(1, 3, 1, 32, 32, 4),
            FusedMBConvConfig(4, 3, 2, 32, 64, 7),
            FusedMBConvConfig(4, 3, 2, 64, 96, 7),
            MBConvConfig(4, 3, 2, 96, 192, 10),
            MBConvConfig(6, 3, 1, 192, 224, 19),
            MBConvConfig(6, 3, 2, 224, 384, 25),
            MBConvConfig(6, 3, 1, 384, 640, 7),
        ]
    else:
        raise ValueError(f"unsupported EfficientNet variant {arch!r}")
    return setting, 1280


# name: (width_mult, depth_mult, dropout, eps and momentum of BatchNorm or None for the defaults).
# B5-B7 and V2 use the batch-norm settings of the TensorFlow originals.
_VARIANTS = {
    "efficientnet_b0": (1.0, 1.0, 0.2, None),
    "efficientnet_b1": (1.0, 1.1, 0.2, None),
    "efficientnet_b2": (1.1, 1.2, 0.3, None),
    "efficientnet_b3": (1.2, 1.4, 0.3, None),
    "efficientnet_b4": (1.4, 1.8, 0.4, None),
    "efficientnet_b5": (1.6, 2.2, 0.4, (0.001, 0.01)),
    "efficientnet_b6": (1.8, 2.6, 0.5, (0.001, 0.01)),
    "efficientnet_b7": (2.0, 3.1, 0.5, (0.001, 0.01)),
    "efficientnet_v2_s": (1.0, 1.0, 0.2, (1e-3, 0.1)),
    "efficientnet_v2_m": (1.0, 1.0, 0.3, (1e-3, 0.1)),
    "efficientnet_v2_l": (1.0, 1.0, 0.4, (1e-3, 0.1)),
}


def _efficientnet(arch, weights, kwargs):
    _check_weights(weights, arch)
    width_mult, depth_mult, dropout, bn_settings = _VARIANTS[arch]
    setting, last_channel = _efficientnet_conf(arch, width_mult, depth_mult)
    if bn_settings is not None:
        eps, momentum = bn_settings
        kwargs.setdefault("norm_layer", partial(nn.BatchNorm2d, eps=eps, momentum=momentum))
    dropout = kwargs.pop("dropout", dropout)
    return EfficientNet(setting, dropout, last_channel=last_channel, **kwargs)


@register_model
def efficientnet_b0(*, weights=None, progress=True, **kwargs):
    """EfficientNet-B0 (5.3M parameters, trained at 224x224). ``kwargs``:
    num_classes, dropout (0.2), stochastic_depth_prob (0.2), norm_layer."""
    return _efficientnet("efficientnet_b0", weights, kwargs)


@register_model
def efficientnet_b1(*, weights=None, progress=True, **kwargs):
    """EfficientNet-B1 (7.8M parameters, 240x240); kwargs as efficientnet_b0."""
    return _efficientnet("efficientnet_b1", weights, kwargs)


@register_model
def efficientnet_b2(*, weights=None, progress=True, **kwargs):
    """EfficientNet-B2 (9.1M parameters, 288x288); dropout 0.3."""
    return _efficientnet("efficientnet_b2", weights, kwargs)


@register_model
def efficientnet_b3(*, weights=None, progress=True, **kwargs):
    """EfficientNet-B3 (12.2M parameters, 300x300); dropout 0.3."""
    return _efficientnet("efficientnet_b3", weights, kwargs)


@register_model
def efficientnet_b4(*, weights=None, progress=True, **kwargs):
    """EfficientNet-B4 (19.3M parameters, 380x380); dropout 0.4."""
    return _efficientnet("efficientnet_b4", weights, kwargs)


@register_model
def efficientnet_b5(*, weights=None, progress=True, **kwargs):
    """EfficientNet-B5 (30.4M parameters, 456x456); dropout 0.4, BatchNorm
    eps 1e-3 and momentum 0.01."""
    return _efficientnet("efficientnet_b5", weights, kwargs)


@register_model
def efficientnet_b6(*, weights=None, progress=True, **kwargs):
    """EfficientNet-B6 (43.0M parameters, 528x528); dropout 0.5, BatchNorm
    eps 1e-3 and momentum 0.01."""
    return _efficientnet("efficientnet_b6", weights, kwargs)


@register_model
def efficientnet_b7(*, weights=None, progress=True, **kwargs):
    """EfficientNet-B7 (66.3M parameters, 600x600); dropout 0.5, BatchNorm
    eps 1e-3 and momentum 0.01."""
    return _efficientnet("efficientnet_b7", weights, kwargs)


@register_model
def efficientnet_v2_s(*, weights=None, progress=True, **kwargs):
    """EfficientNetV2-S (21.5M parameters, 384x384); BatchNorm eps 1e-3."""
    return _efficientnet("efficientnet_v2_s", weights, kwargs)


@register_model
def efficientnet_v2_m(*, weights=None, progress=True, **kwargs):
    """EfficientNetV2-M (54.1M parameters, 480x480); dropout 0.3, BatchNorm eps 1e-3."""
    return _efficientnet("efficientnet_v2_m", weights, kwargs)


@register_model
def efficientnet_v2_l(*, weights=None, progress=True, **kwargs):
    """EfficientNetV2-L (118.5M parameters, 480x480); dropout 0.4, BatchNorm eps 1e-3."""
    return _efficientnet("efficientnet_v2_l", weights, kwargs)
