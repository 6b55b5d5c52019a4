"""RevNets for CIFAR (Gomez et al., "The Reversible Residual Network:
Backpropagation Without Storing Activations", 2017, table 1).

Notation: N images of 3 x 32 x 32 (any H, W >= 4 works). A unit splits its
C channels into halves x1, x2 and computes y1 = x1 + f(x2),
y2 = x2 + g(y1) (``nn.ReversibleBlock``); f and g are pre-activation
residual functions on C / 2 channels: BN-ReLU-conv3x3, twice (basic), or
BN-ReLU-conv1x1 to C / 8, BN-ReLU-conv3x3, BN-ReLU-conv1x1 back to C / 2
(bottleneck).

The paper's CIFAR models (units per stage; stem and stage channels):

    RevNet-38   3-3-3  32-32-64-112   basic        0.46M parameters
    RevNet-110  9-9-9  32-32-64-128   basic        1.73M
    RevNet-164  9-9-9  32-32-64-128   bottleneck   1.75M (stages 4x wider)

Depth counts the convs and the classifier: 3 stages x n units x 2
functions x 2 (or 3) convs, + stem + linear layer. A stage whose first unit
changes the resolution or the channel count starts with a
``RevNetTransition``: the same unit, but with shortcuts that average-pool
by the stride and zero-pad the new channels, so it cannot be inverted and
stores its activations, as in the paper. The stage's other units form one
``nn.ReversibleSequence``, which stores only its output: training memory
grows with the number of stages, not with depth. The head is
BN-ReLU-global average pooling-linear.
"""
from .. import functional as F
from .. import nn
from .registry import register_model

__all__ = ["RevNet", "RevNetTransition", "revnet38", "revnet110", "revnet164"]


def residual_function(in_channels, out_channels, stride=1, bottleneck=False):
    """f or g of a RevNet unit: a pre-activation residual branch from
    ``in_channels`` to ``out_channels`` (halves of the unit's channels)."""
    layers = [nn.BatchNorm2d(in_channels), nn.ReLU()]
    if bottleneck:
        width = out_channels // 4
        layers += [nn.Conv2d(in_channels, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                   nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(width),
                   nn.ReLU(), nn.Conv2d(width, out_channels, 1, bias=False)]
    else:
        layers += [nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
                   nn.BatchNorm2d(out_channels), nn.ReLU(),
                   nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)]
    return nn.Sequential(*layers)


class RevNetTransition(nn.Module):
    """The first unit of a stage that changes shape: y1 = down(x1) + f(x2),
    y2 = down(x2) + g(y1), where ``down`` average-pools by ``stride`` and
    zero-pads the channels from in / 2 to out / 2 (half the new channels on
    each side). Not invertible: an ordinary module that stores its
    activations."""

    def __init__(self, in_channels, out_channels, stride, bottleneck=False):
        super().__init__()
        self.f = residual_function(in_channels // 2, out_channels // 2, stride, bottleneck)
        self.g = residual_function(out_channels // 2, out_channels // 2, 1, bottleneck)
        self.stride, self.pad = stride, (out_channels - in_channels) // 2

    def _down(self, x):
        if self.stride != 1:
            x = F.avg_pool2d(x, self.stride)
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return x

    def forward(self, x):
        x1, x2 = F.chunk(x, 2, dim=1)
        y1 = self._down(x1) + self.f(x2)
        y2 = self._down(x2) + self.g(y1)
        return F.cat((y1, y2), dim=1)


class RevNet(nn.Module):
    """A CIFAR RevNet (module docstring): ``units`` per stage, ``channels``
    = (stem, stage 1, stage 2, stage 3) channels, basic or ``bottleneck``
    residual functions."""

    def __init__(self, units=(3, 3, 3), channels=(32, 32, 64, 112), bottleneck=False, num_classes=10):
        super().__init__()
        units, channels = tuple(units), tuple(channels)
        if len(units) != 3 or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in units):
            raise ValueError(f"RevNet: units must be 3 ints >= 1 (units per stage), got {units}")
        if len(channels) != 4 or not all(isinstance(c, int) and c >= 2 and c % 2 == 0 for c in channels):
            raise ValueError(f"RevNet: channels must be 4 even ints (stem and 3 stages), got {channels}")
        if bottleneck and any(c % 8 for c in channels[1:]):
            raise ValueError(f"RevNet: bottleneck stages need channels divisible by 8, got {channels}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"RevNet: num_classes must be a positive int, got {num_classes!r}")
        self.conv1 = nn.Conv2d(3, channels[0], 3, padding=1, bias=False)
        stages, previous = [], channels[0]
        for k, (n, c) in enumerate(zip(units, channels[1:])):
            stride = 1 if k == 0 else 2
            stage = []
            if stride != 1 or c != previous:
                stage.append(RevNetTransition(previous, c, stride, bottleneck))
                n -= 1
            if n:
                stage.append(nn.ReversibleSequence([
                    nn.ReversibleBlock(residual_function(c // 2, c // 2, 1, bottleneck),
                                       residual_function(c // 2, c // 2, 1, bottleneck)) for _ in range(n)]))
            stages.append(nn.Sequential(*stage))
            previous = c
        self.stage1, self.stage2, self.stage3 = stages
        self.bn = nn.BatchNorm2d(previous)
        self.fc = nn.Linear(previous, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != 3 or min(x.shape[2:]) < 4:
            raise ValueError(f"RevNet expects input of shape (N, 3, H, W) with H, W >= 4, got {tuple(x.shape)}")
        x = self.stage3(self.stage2(self.stage1(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(F.relu(self.bn(x)), 1).flatten(1))


@register_model
def revnet38(num_classes=10):
    """RevNet-38: 3-3-3 basic units, channels 32-32-64-112."""
    return RevNet((3, 3, 3), (32, 32, 64, 112), num_classes=num_classes)


@register_model
def revnet110(num_classes=10):
    """RevNet-110: 9-9-9 basic units, channels 32-32-64-128."""
    return RevNet((9, 9, 9), (32, 32, 64, 128), num_classes=num_classes)


@register_model
def revnet164(num_classes=10):
    """RevNet-164: 9-9-9 bottleneck units, channels 32-128-256-512 (the
    paper's 32-32-64-128 are the bottleneck widths, expanded 4x)."""
    return RevNet((9, 9, 9), (32, 128, 256, 512), bottleneck=True, num_classes=num_classes)
