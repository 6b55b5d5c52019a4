"""MobileNetV3 (Howard et al., 2019, "Searching for MobileNetV3"), large
and small, as in torchvision.

The blocks are MobileNetV2's inverted residuals (1x1 expand, depthwise
conv, linear 1x1 project), found by architecture search and improved in
three ways:

* squeeze-and-excitation in some blocks: a per-channel gate computed from
  the globally pooled expanded tensor, squashed by a hard sigmoid;
* the hard swish activation x * relu6(x + 3) / 6, a cheap swish, in the
  deeper half of the network (ReLU in the shallow half, where the maps are
  large and the cost of swish would matter most);
* a lighter head: the last conv works on the pooled 1x1 map, as a Linear.

Notation: N images, 3 x H x W; the feature map is H/32 x W/32 (H/16 with
``dilated=True``, which trades the last stride for dilated convolutions).
"""
from functools import partial

from .. import functional as F
from .. import nn
from ._layers import Conv2dNormActivation, _check_weights, _make_divisible, init_mobile_weights
from .registry import register_model

__all__ = ["MobileNetV3", "mobilenet_v3_large", "mobilenet_v3_small"]


class InvertedResidualConfig:
    """One row of tables 1 and 2 of the paper: a block's channels (scaled
    by ``width_mult`` and rounded to a multiple of 8), depthwise kernel size,
    whether it has an SE gate, its activation ("RE" ReLU or "HS" hard
    swish), stride and dilation."""

    def __init__(self, input_channels, kernel, expanded_channels, out_channels, use_se, activation, stride,
                 dilation, width_mult):
        self.input_channels = self.adjust_channels(input_channels, width_mult)
        self.kernel = kernel
        self.expanded_channels = self.adjust_channels(expanded_channels, width_mult)
        self.out_channels = self.adjust_channels(out_channels, width_mult)
        self.use_se = use_se
        self.use_hs = activation == "HS"
        self.stride = stride
        self.dilation = dilation

    @staticmethod
    def adjust_channels(channels, width_mult):
        return _make_divisible(channels * width_mult, 8)


class InvertedResidual(nn.Module):
    """(N, C_in, H, W) -> (N, C_out, H / stride, W / stride).

    ``block``: [1x1 expand, BN, act] (left out when nothing is expanded),
    depthwise k x k conv, BN, act, [SE gate], 1x1 project, BN (no
    activation). The input is added back when stride is 1 and C_in == C_out.
    """

    def __init__(self, cnf, norm_layer, se_layer=partial(nn.SqueezeExcitation, scale_activation=nn.Hardsigmoid)):
        super().__init__()
        if not 1 <= cnf.stride <= 2:
            raise ValueError(f"InvertedResidual: illegal stride value {cnf.stride}")
        self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels
        activation_layer = nn.Hardswish if cnf.use_hs else nn.ReLU

        layers = []
        if cnf.expanded_channels != cnf.input_channels:
            layers.append(Conv2dNormActivation(cnf.input_channels, cnf.expanded_channels, kernel_size=1,
                                               norm_layer=norm_layer, activation_layer=activation_layer))
        # A dilated block keeps the resolution: dilation replaces the stride.
        stride = 1 if cnf.dilation > 1 else cnf.stride
        layers.append(Conv2dNormActivation(cnf.expanded_channels, cnf.expanded_channels, kernel_size=cnf.kernel,
                                           stride=stride, dilation=cnf.dilation, groups=cnf.expanded_channels,
                                           norm_layer=norm_layer, activation_layer=activation_layer))
        if cnf.use_se:
            squeeze_channels = _make_divisible(cnf.expanded_channels // 4, 8)
            layers.append(se_layer(cnf.expanded_channels, squeeze_channels))
        layers.append(Conv2dNormActivation(cnf.expanded_channels, cnf.out_channels, kernel_size=1,
                                           norm_layer=norm_layer, activation_layer=None))
        self.block = nn.Sequential(*layers)
        self.out_channels = cnf.out_channels
        # Whether the block starts a new stage (C1..C4; it downsamples, or
        # would without dilation): segmentation heads read the stages' ends.
        self._is_cn = cnf.stride > 1

    def forward(self, input):
        result = self.block(input)
        if self.use_res_connect:
            result = result + input
        return result


class MobileNetV3(nn.Module):
    """``features``: stem conv (stride 2, hard swish), the blocks of
    ``inverted_residual_setting`` (a list of InvertedResidualConfig), a 1x1
    conv to 6x the last block's channels: (N, 3, H, W) -> (N, C, H/32, W/32);
    ``avgpool`` to (N, C, 1, 1); ``classifier``: Linear to
    ``last_channel``, hard swish, Dropout, Linear -> (N, num_classes).

    Batch norms use eps 0.001 and momentum 0.01 (TensorFlow's defaults,
    which the reference weights were trained with).
    """

    def __init__(self, inverted_residual_setting, last_channel, num_classes=1000, block=None, norm_layer=None,
                 dropout=0.2):
        super().__init__()
        if not inverted_residual_setting:
            raise ValueError("MobileNetV3: the inverted_residual_setting should not be empty")
        if not all(isinstance(s, InvertedResidualConfig) for s in inverted_residual_setting):
            raise TypeError("MobileNetV3: the inverted_residual_setting should be a list of InvertedResidualConfig")
        if block is None:
            block = InvertedResidual
        if norm_layer is None:
            norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)

        firstconv_output_channels = inverted_residual_setting[0].input_channels
        layers = [Conv2dNormActivation(3, firstconv_output_channels, kernel_size=3, stride=2,
                                       norm_layer=norm_layer, activation_layer=nn.Hardswish)]
        for cnf in inverted_residual_setting:
            layers.append(block(cnf, norm_layer))
        lastconv_input_channels = inverted_residual_setting[-1].out_channels
        lastconv_output_channels = 6 * lastconv_input_channels
        layers.append(Conv2dNormActivation(lastconv_input_channels, lastconv_output_channels, kernel_size=1,
                                           norm_layer=norm_layer, activation_layer=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(lastconv_output_channels, last_channel),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(last_channel, num_classes),
        )

        init_mobile_weights(self)

    def forward(self, x):
        x = self.features(x)
        x = self.avgpool(x)
        x = F.flatten(x, 1)
        return self.classifier(x)


def _mobilenet_v3_conf(arch, width_mult=1.0, reduced_tail=False, dilated=False):
    """The block list and ``last_channel`` of ``arch``. ``reduced_tail``
    halves the channels of the last stage (for detection backbones);
    ``dilated`` replaces its stride by dilation 2."""
    reduce_divider = 2 if reduced_tail else 1
    dilation = 2 if dilated else 1
    bneck_conf = partial(InvertedResidualConfig, width_mult=width_mult)
    adjust_channels = partial(InvertedResidualConfig.adjust_channels, width_mult=width_mult)

    if arch == "mobilenet_v3_large":
        c4, c4_expanded = 160 // reduce_divider, 960 // reduce_divider
        inverted_residual_setting = [
            # in, kernel, expanded, out, SE, activation, stride, dilation
            bneck_conf(16, 3, 16, 16, False, "RE", 1, 1),
            bneck_conf(16, 3, 64, 24, False, "RE", 2, 1),  # C1
            bneck_conf(24, 3, 72, 24, False, "RE", 1, 1),
            bneck_conf(24, 5, 72, 40, True, "RE", 2, 1),  # C2
            bneck_conf(40, 5, 120, 40, True, "RE", 1, 1),
            bneck_conf(40, 5, 120, 40, True, "RE", 1, 1),
            bneck_conf(40, 3, 240, 80, False, "HS", 2, 1),  # C3
            bneck_conf(80, 3, 200, 80, False, "HS", 1, 1),
            bneck_conf(80, 3, 184, 80, False, "HS", 1, 1),
            bneck_conf(80, 3, 184, 80, False, "HS", 1, 1),
            bneck_conf(80, 3, 480, 112, True, "HS", 1, 1),
            bneck_conf(112, 3, 672, 112, True, "HS", 1, 1),
            bneck_conf(112, 5, 672, c4, True, "HS", 2, dilation),  # C4
            bneck_conf(c4, 5, c4_expanded, c4, True, "HS", 1, dilation),
            bneck_conf(c4, 5, c4_expanded, c4, True, "HS", 1, dilation),
        ]
        last_channel = adjust_channels(1280 // reduce_divider)  # C5
    elif arch == "mobilenet_v3_small":
        c4, c4_expanded = 96 // reduce_divider, 576 // reduce_divider
        inverted_residual_setting = [
            bneck_conf(16, 3, 16, 16, True, "RE", 2, 1),  # C1
            bneck_conf(16, 3, 72, 24, False, "RE", 2, 1),  # C2
            bneck_conf(24, 3, 88, 24, False, "RE", 1, 1),
            bneck_conf(24, 5, 96, 40, True, "HS", 2, 1),  # C3
            bneck_conf(40, 5, 240, 40, True, "HS", 1, 1),
            bneck_conf(40, 5, 240, 40, True, "HS", 1, 1),
            bneck_conf(40, 5, 120, 48, True, "HS", 1, 1),
            bneck_conf(48, 5, 144, 48, True, "HS", 1, 1),
            bneck_conf(48, 5, 288, c4, True, "HS", 2, dilation),  # C4
            bneck_conf(c4, 5, c4_expanded, c4, True, "HS", 1, dilation),
            bneck_conf(c4, 5, c4_expanded, c4, True, "HS", 1, dilation),
        ]
        last_channel = adjust_channels(1024 // reduce_divider)  # C5
    else:
        raise ValueError(f"_mobilenet_v3_conf: unsupported model type {arch!r}")
    return inverted_residual_setting, last_channel


def _mobilenet_v3(arch, weights, width_mult=1.0, reduced_tail=False, dilated=False, **kwargs):
    _check_weights(weights, arch)
    inverted_residual_setting, last_channel = _mobilenet_v3_conf(arch, width_mult, reduced_tail, dilated)
    return MobileNetV3(inverted_residual_setting, last_channel, **kwargs)


@register_model
def mobilenet_v3_large(*, weights=None, progress=True, **kwargs):
    """MobileNetV3-Large. ``kwargs``: ``width_mult``, ``reduced_tail``,
    ``dilated`` (the block list), and num_classes, dropout, norm_layer, ...
    (for :class:`MobileNetV3`). ``progress`` is ignored."""
    return _mobilenet_v3("mobilenet_v3_large", weights, **kwargs)


@register_model
def mobilenet_v3_small(*, weights=None, progress=True, **kwargs):
    """MobileNetV3-Small; the arguments are those of mobilenet_v3_large."""
    return _mobilenet_v3("mobilenet_v3_small", weights, **kwargs)
