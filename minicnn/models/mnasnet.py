"""MNASNet (Tan et al., 2019, "MnasNet: Platform-Aware Neural Architecture
Search for Mobile"), the B1 variant, as in torchvision.

An architecture search that rewards accuracy and penalises the latency
measured on a phone picked this network: MobileNetV2's inverted residuals
(1x1 expand, depthwise conv, linear 1x1 project, skip when the shapes
match), with 3x3 or 5x5 depthwise kernels and expansion 3 or 6 chosen
stage by stage. ``alpha`` scales the widths (depth multiplier).

Notation: N images, 3 x H x W; the stem and four stages halve H and W:
the last map is H/32 x W/32.
"""
from .. import functional as F
from .. import nn
from ._layers import _check_weights
from .registry import register_model

__all__ = ["MNASNet", "mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3"]

# The paper's batch-norm decay 0.9997 is TensorFlow's convention; torch's
# momentum weighs the new batch instead: 1 - decay.
_BN_MOMENTUM = 1 - 0.9997


class _InvertedResidual(nn.Module):
    """(N, in_ch, H, W) -> (N, out_ch, H / stride, W / stride).

    ``layers``: 1x1 conv to in_ch * expansion_factor, BN, ReLU; k x k
    depthwise conv (stride ``stride``), BN, ReLU; 1x1 conv to out_ch, BN
    (linear: no activation). The input is added when the shapes match.
    """

    def __init__(self, in_ch, out_ch, kernel_size, stride, expansion_factor, bn_momentum=0.1):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"_InvertedResidual: stride should be 1 or 2, got {stride}")
        if kernel_size not in (3, 5):
            raise ValueError(f"_InvertedResidual: kernel_size should be 3 or 5, got {kernel_size}")
        mid_ch = in_ch * expansion_factor
        self.apply_residual = in_ch == out_ch and stride == 1
        self.layers = nn.Sequential(
            # Pointwise
            nn.Conv2d(in_ch, mid_ch, 1, bias=False),
            nn.BatchNorm2d(mid_ch, momentum=bn_momentum),
            nn.ReLU(inplace=True),
            # Depthwise
            nn.Conv2d(mid_ch, mid_ch, kernel_size, padding=kernel_size // 2, stride=stride, groups=mid_ch,
                      bias=False),
            nn.BatchNorm2d(mid_ch, momentum=bn_momentum),
            nn.ReLU(inplace=True),
            # Linear pointwise
            nn.Conv2d(mid_ch, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch, momentum=bn_momentum),
        )

    def forward(self, input):
        if self.apply_residual:
            return self.layers(input) + input
        return self.layers(input)


def _stack(in_ch, out_ch, kernel_size, stride, exp_factor, repeats, bn_momentum):
    """A Sequential of ``repeats`` inverted residuals; only the first one
    changes the width and the resolution (so it has no skip)."""
    if repeats < 1:
        raise ValueError(f"_stack: repeats should be >= 1, got {repeats}")
    first = _InvertedResidual(in_ch, out_ch, kernel_size, stride, exp_factor, bn_momentum=bn_momentum)
    remaining = [_InvertedResidual(out_ch, out_ch, kernel_size, 1, exp_factor, bn_momentum=bn_momentum)
                 for _ in range(1, repeats)]
    return nn.Sequential(first, *remaining)


def _round_to_multiple_of(val, divisor, round_up_bias=0.9):
    """``val`` rounded to a multiple of ``divisor``, up rather than down
    unless that stays within 10%: (83, 8) -> 80, but (84, 8) -> 88."""
    if not 0.0 < round_up_bias < 1.0:
        raise ValueError(f"_round_to_multiple_of: round_up_bias should be in (0, 1), got {round_up_bias}")
    new_val = max(divisor, int(val + divisor / 2) // divisor * divisor)
    return new_val if new_val >= round_up_bias * val else new_val + divisor


def _get_depths(alpha):
    """The widths of the stem and the stages, scaled by ``alpha``."""
    depths = [32, 16, 24, 40, 80, 96, 192, 320]
    return [_round_to_multiple_of(depth * alpha, 8) for depth in depths]


class MNASNet(nn.Module):
    """``layers``: stem conv (stride 2), a depthwise separable conv, six
    stacks of inverted residuals and a 1x1 conv to 1280 channels:
    (N, 3, H, W) -> (N, 1280, H/32, W/32); then the spatial mean and
    ``classifier`` (Dropout, Linear) -> (N, num_classes).

    (torchvision also loads checkpoints of its version 1, whose stem did
    not scale with alpha; minicnn builds version 2 only.)
    """

    def __init__(self, alpha, num_classes=1000, dropout=0.2):
        super().__init__()
        if alpha <= 0.0:
            raise ValueError(f"MNASNet: alpha should be greater than 0.0, got {alpha}")
        self.alpha = alpha
        self.num_classes = num_classes
        depths = _get_depths(alpha)
        layers = [
            # First layer: regular conv.
            nn.Conv2d(3, depths[0], 3, padding=1, stride=2, bias=False),
            nn.BatchNorm2d(depths[0], momentum=_BN_MOMENTUM),
            nn.ReLU(inplace=True),
            # Depthwise separable, no skip.
            nn.Conv2d(depths[0], depths[0], 3, padding=1, stride=1, groups=depths[0], bias=False),
            nn.BatchNorm2d(depths[0], momentum=_BN_MOMENTUM),
            nn.ReLU(inplace=True),
            nn.Conv2d(depths[0], depths[1], 1, padding=0, stride=1, bias=False),
            nn.BatchNorm2d(depths[1], momentum=_BN_MOMENTUM),
            # MNASNet blocks: stacks of inverted residuals
            # (in, out, kernel, stride, expansion, repeats).
            _stack(depths[1], depths[2], 3, 2, 3, 3, _BN_MOMENTUM),
            _stack(depths[2], depths[3], 5, 2, 3, 3, _BN_MOMENTUM),
            _stack(depths[3], depths[4], 5, 2, 6, 3, _BN_MOMENTUM),
            _stack(depths[4], depths[5], 3, 1, 6, 2, _BN_MOMENTUM),
            _stack(depths[5], depths[6], 5, 2, 6, 4, _BN_MOMENTUM),
            _stack(depths[6], depths[7], 3, 1, 6, 1, _BN_MOMENTUM),
            # Final mapping to classifier input.
            nn.Conv2d(depths[7], 1280, 1, padding=0, stride=1, bias=False),
            nn.BatchNorm2d(1280, momentum=_BN_MOMENTUM),
            nn.ReLU(inplace=True),
        ]
        self.layers = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(1280, num_classes))

        # torchvision's initialisation: He normal (fan_out, ReLU gain) for
        # convs, He uniform (fan_out, gain 1) for the classifier.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_uniform_(m.weight, mode="fan_out", nonlinearity="sigmoid")
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.layers(x)
        x = F.mean(x, (2, 3))            # global average pooling: (N, 1280, h, w) -> (N, 1280)
        return self.classifier(x)


def _mnasnet(name, alpha, weights, **kwargs):
    _check_weights(weights, name)
    return MNASNet(alpha, **kwargs)


@register_model
def mnasnet0_5(*, weights=None, progress=True, **kwargs):
    """MNASNet with depth multiplier 0.5; ``kwargs`` go to :class:`MNASNet`
    (num_classes, dropout); ``progress`` is ignored."""
    return _mnasnet("mnasnet0_5", 0.5, weights, **kwargs)


@register_model
def mnasnet0_75(*, weights=None, progress=True, **kwargs):
    """MNASNet with depth multiplier 0.75."""
    return _mnasnet("mnasnet0_75", 0.75, weights, **kwargs)


@register_model
def mnasnet1_0(*, weights=None, progress=True, **kwargs):
    """MNASNet with depth multiplier 1.0."""
    return _mnasnet("mnasnet1_0", 1.0, weights, **kwargs)


@register_model
def mnasnet1_3(*, weights=None, progress=True, **kwargs):
    """MNASNet with depth multiplier 1.3."""
    return _mnasnet("mnasnet1_3", 1.3, weights, **kwargs)
