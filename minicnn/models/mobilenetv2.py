"""MobileNetV2 (Sandler et al., 2018, "MobileNetV2: Inverted Residuals and
Linear Bottlenecks"), as in torchvision.

The building block is the *inverted residual*: a 1x1 conv expands a thin
tensor t times, a cheap 3x3 depthwise conv filters each channel, and a
1x1 conv projects back to a thin tensor, with no activation after it (the
*linear bottleneck*: a ReLU in few dimensions would destroy information).
The skip connection joins the thin ends, the reverse of ResNet's
bottleneck, which joins the wide ones.

Notation: N images, 3 x H x W; the stem halves H and W, and four of the
seven stages halve them again: the feature map is H/32 x W/32.
"""
from .. import functional as F
from .. import nn
from ._layers import Conv2dNormActivation, _check_weights, _make_divisible, init_mobile_weights
from .registry import register_model

__all__ = ["MobileNetV2", "mobilenet_v2"]


class InvertedResidual(nn.Module):
    """(N, inp, H, W) -> (N, oup, H / stride, W / stride).

    ``conv``: [1x1 expand to inp * expand_ratio, BN, ReLU6] (left out when
    expand_ratio is 1), 3x3 depthwise (stride ``stride``), BN, ReLU6,
    1x1 project to ``oup``, BN. The input is added back when the shapes
    allow (stride 1 and inp == oup).
    """

    def __init__(self, inp, oup, stride, expand_ratio, norm_layer=None):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual: stride should be 1 or 2, got {stride}")
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        self.stride = stride
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup

        layers = []
        if expand_ratio != 1:
            layers.append(Conv2dNormActivation(inp, hidden_dim, kernel_size=1, norm_layer=norm_layer,
                                               activation_layer=nn.ReLU6))
        layers += [
            Conv2dNormActivation(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim, norm_layer=norm_layer,
                                 activation_layer=nn.ReLU6),
            nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),   # linear bottleneck: no activation
            norm_layer(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x):
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """``features``: stem conv (stride 2), the inverted residual stages, a
    1x1 conv to ``last_channel`` (1280 at width 1): (N, 3, H, W) ->
    (N, last_channel, H/32, W/32); then global average pooling and
    ``classifier`` (Dropout, Linear) -> (N, num_classes) logits.

    ``inverted_residual_setting`` lists the stages as [t, c, n, s]:
    expansion factor, output channels, repeats, stride of the first repeat.
    ``width_mult`` scales every channel count, rounded to a multiple of
    ``round_nearest``.
    """

    def __init__(self, num_classes=1000, width_mult=1.0, inverted_residual_setting=None, round_nearest=8,
                 block=None, norm_layer=None, dropout=0.2):
        super().__init__()
        if block is None:
            block = InvertedResidual
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        input_channel = 32
        last_channel = 1280
        if inverted_residual_setting is None:
            inverted_residual_setting = [
                # t, c, n, s
                [1, 16, 1, 1],
                [6, 24, 2, 2],
                [6, 32, 3, 2],
                [6, 64, 4, 2],
                [6, 96, 3, 1],
                [6, 160, 3, 2],
                [6, 320, 1, 1],
            ]
        if len(inverted_residual_setting) == 0 or len(inverted_residual_setting[0]) != 4:
            raise ValueError("MobileNetV2: inverted_residual_setting should be a non-empty list of "
                             f"[t, c, n, s] lists, got {inverted_residual_setting}")

        input_channel = _make_divisible(input_channel * width_mult, round_nearest)
        # The last layer never shrinks below 1280 channels: thin models need it most.
        self.last_channel = _make_divisible(last_channel * max(1.0, width_mult), round_nearest)
        features = [Conv2dNormActivation(3, input_channel, stride=2, norm_layer=norm_layer,
                                         activation_layer=nn.ReLU6)]
        for t, c, n, s in inverted_residual_setting:
            output_channel = _make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                stride = s if i == 0 else 1
                features.append(block(input_channel, output_channel, stride, expand_ratio=t, norm_layer=norm_layer))
                input_channel = output_channel
        features.append(Conv2dNormActivation(input_channel, self.last_channel, kernel_size=1,
                                             norm_layer=norm_layer, activation_layer=nn.ReLU6))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(self.last_channel, num_classes),
        )

        init_mobile_weights(self)

    def forward(self, x):
        x = self.features(x)
        x = F.adaptive_avg_pool2d(x, (1, 1))
        x = F.flatten(x, 1)              # (N, C, 1, 1) -> (N, C), also for N = 1
        return self.classifier(x)


@register_model
def mobilenet_v2(*, weights=None, progress=True, **kwargs):
    """MobileNetV2; ``kwargs`` go to :class:`MobileNetV2` (num_classes,
    width_mult, round_nearest, dropout, ...). ``progress`` is accepted for
    torchvision compatibility and ignored."""
    _check_weights(weights, "mobilenet_v2")
    return MobileNetV2(**kwargs)
