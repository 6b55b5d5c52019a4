"""ShuffleNetV2 (Ma et al., 2018, "ShuffleNet V2: Practical Guidelines for
Efficient CNN Architecture Design"), as in torchvision.

The paper measures speed instead of counting FLOPs and derives guidelines:
equal input and output widths, few groups, few branches, few elementwise
ops. Its unit follows them: *channel split* sends half the channels
through untouched and the other half through 1x1 conv, 3x3 depthwise conv,
1x1 conv (all of the same width); the halves are concatenated (no
addition), then a *channel shuffle* interleaves them, so information
crosses between the halves in the next unit. A downsampling unit sends
the whole input through two strided branches instead, doubling the width.

Notation: N images, 3 x H x W; the stem conv and max pool reduce H and W
by 4, each of the three stages by 2: the last map is H/32 x W/32.
"""
from .. import functional as F
from .. import nn
from ._layers import _check_weights
from .registry import register_model

__all__ = ["ShuffleNetV2", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0"]


def channel_shuffle(x, groups):
    """Interleave the channels of ``groups`` groups: (N, C, H, W) viewed as
    (N, groups, C / groups, H, W), the two group dims swapped, and viewed
    back. With 2 groups, channels [a0 a1 a2 b0 b1 b2] become [a0 b0 a1 b1 a2 b2]."""
    batchsize, num_channels, height, width = x.shape
    channels_per_group = num_channels // groups
    # methods, not F.*: quantized tensors have them too (the quantizable model)
    x = x.reshape(batchsize, groups, channels_per_group, height, width)
    x = x.transpose(1, 2)
    return x.reshape(batchsize, num_channels, height, width)


class InvertedResidual(nn.Module):
    """The ShuffleNetV2 unit: (N, inp, H, W) -> (N, oup, H / stride, W / stride).

    stride 1 (inp == oup): split the channels in two halves x1, x2; output
    shuffle(cat(x1, branch2(x2))).
    stride > 1: output shuffle(cat(branch1(x), branch2(x))), each branch
    giving oup / 2 channels.
    ``branch1``: 3x3 depthwise conv (strided), BN, 1x1 conv, BN, ReLU (an
    empty Sequential when stride is 1); ``branch2``: 1x1 conv, BN, ReLU, 3x3
    depthwise conv, BN, 1x1 conv, BN, ReLU.
    """

    def __init__(self, inp, oup, stride):
        super().__init__()
        if not 1 <= stride <= 3:
            raise ValueError(f"InvertedResidual: illegal stride value {stride}")
        self.stride = stride
        branch_features = oup // 2
        if stride == 1 and inp != branch_features << 1:
            raise ValueError(f"InvertedResidual: invalid combination of stride {stride}, inp {inp} and oup {oup}: "
                             f"with stride 1, inp must equal oup // 2 * 2")

        if stride > 1:
            self.branch1 = nn.Sequential(
                self.depthwise_conv(inp, inp, kernel_size=3, stride=stride, padding=1),
                nn.BatchNorm2d(inp),
                nn.Conv2d(inp, branch_features, kernel_size=1, stride=1, padding=0, bias=False),
                nn.BatchNorm2d(branch_features),
                nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(inp if stride > 1 else branch_features, branch_features, kernel_size=1, stride=1, padding=0,
                      bias=False),
            nn.BatchNorm2d(branch_features),
            nn.ReLU(inplace=True),
            self.depthwise_conv(branch_features, branch_features, kernel_size=3, stride=stride, padding=1),
            nn.BatchNorm2d(branch_features),
            nn.Conv2d(branch_features, branch_features, kernel_size=1, stride=1, padding=0, bias=False),
            nn.BatchNorm2d(branch_features),
            nn.ReLU(inplace=True),
        )

    @staticmethod
    def depthwise_conv(i, o, kernel_size, stride=1, padding=0, bias=False):
        """A conv with one group per input channel."""
        return nn.Conv2d(i, o, kernel_size, stride, padding, bias=bias, groups=i)

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = F.chunk(x, 2, dim=1)
            out = F.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = F.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """``conv1`` (3x3 stride 2, BN, ReLU) and ``maxpool`` (3x3 stride 2),
    ``stage2`` to ``stage4`` (a downsampling unit, then ``stages_repeats[i]
    - 1`` plain units), ``conv5`` (1x1, BN, ReLU), the spatial mean and
    ``fc``: (N, 3, H, W) -> (N, num_classes).

    ``stages_out_channels`` gives the widths of conv1, the three stages
    and conv5; ``inverted_residual`` the unit class.

    Initialisation: the layers' own defaults (torchvision sets none).
    """

    def __init__(self, stages_repeats, stages_out_channels, num_classes=1000, inverted_residual=InvertedResidual):
        super().__init__()
        if len(stages_repeats) != 3:
            raise ValueError(f"ShuffleNetV2: expected stages_repeats as a list of 3 positive ints, "
                             f"got {stages_repeats}")
        if len(stages_out_channels) != 5:
            raise ValueError(f"ShuffleNetV2: expected stages_out_channels as a list of 5 positive ints, "
                             f"got {stages_out_channels}")
        self._stage_out_channels = stages_out_channels

        input_channels = 3
        output_channels = stages_out_channels[0]
        self.conv1 = nn.Sequential(
            nn.Conv2d(input_channels, output_channels, 3, 2, 1, bias=False),
            nn.BatchNorm2d(output_channels),
            nn.ReLU(inplace=True),
        )
        input_channels = output_channels
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        for name, repeats, output_channels in zip(("stage2", "stage3", "stage4"), stages_repeats,
                                                  stages_out_channels[1:]):
            units = [inverted_residual(input_channels, output_channels, 2)]
            units += [inverted_residual(output_channels, output_channels, 1) for _ in range(repeats - 1)]
            setattr(self, name, nn.Sequential(*units))
            input_channels = output_channels

        output_channels = stages_out_channels[-1]
        self.conv5 = nn.Sequential(
            nn.Conv2d(input_channels, output_channels, 1, 1, 0, bias=False),
            nn.BatchNorm2d(output_channels),
            nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(output_channels, num_classes)

    def forward(self, x):
        x = self.conv1(x)
        x = self.maxpool(x)
        x = self.stage2(x)
        x = self.stage3(x)
        x = self.stage4(x)
        x = self.conv5(x)
        x = x.mean((2, 3))               # global average pooling: (N, C, h, w) -> (N, C)
        return self.fc(x)


def _shufflenetv2(name, weights, stages_repeats, stages_out_channels, **kwargs):
    _check_weights(weights, name)
    return ShuffleNetV2(stages_repeats, stages_out_channels, **kwargs)


@register_model
def shufflenet_v2_x0_5(*, weights=None, progress=True, **kwargs):
    """ShuffleNetV2 with 0.5x output channels; ``kwargs`` go to
    :class:`ShuffleNetV2` (num_classes, ...); ``progress`` is ignored."""
    return _shufflenetv2("shufflenet_v2_x0_5", weights, [4, 8, 4], [24, 48, 96, 192, 1024], **kwargs)


@register_model
def shufflenet_v2_x1_0(*, weights=None, progress=True, **kwargs):
    """ShuffleNetV2 with 1.0x output channels."""
    return _shufflenetv2("shufflenet_v2_x1_0", weights, [4, 8, 4], [24, 116, 232, 464, 1024], **kwargs)


@register_model
def shufflenet_v2_x1_5(*, weights=None, progress=True, **kwargs):
    """ShuffleNetV2 with 1.5x output channels."""
    return _shufflenetv2("shufflenet_v2_x1_5", weights, [4, 8, 4], [24, 176, 352, 704, 1024], **kwargs)


@register_model
def shufflenet_v2_x2_0(*, weights=None, progress=True, **kwargs):
    """ShuffleNetV2 with 2.0x output channels (and a wider conv5)."""
    return _shufflenetv2("shufflenet_v2_x2_0", weights, [4, 8, 4], [24, 244, 488, 976, 2048], **kwargs)
