"""The CIFAR ResNets: ResNet-20 to ResNet-110 (He et al., "Deep Residual
Learning for Image Recognition", 2015, section 4.2) and the pre-activation
bottleneck ResNet-164 (He et al., "Identity Mappings in Deep Residual
Networks", 2016), the baselines of the RevNet paper (``revnet.py``).

Notation: N images of 3 x 32 x 32 (any H, W >= 4 works).

* Basic (depth 6n + 2): a 3x3 conv of 16 filters, then three stages of n
  units of two 3x3 convs (conv-BN-ReLU-conv-BN, add, ReLU) at 16, 32, 64
  channels, the last two starting with stride 2; global average pooling
  and a linear layer. Shortcuts are the paper's option A, without
  parameters: the identity, subsampled by 2 and zero-padded with the new
  channels where a stage begins.
* Bottleneck (depth 9n + 2): pre-activation units (BN-ReLU-conv1x1,
  BN-ReLU-conv3x3, BN-ReLU-conv1x1) of widths 16, 32, 64 expanding to
  4x that, a strided 1x1 conv shortcut where the shape changes (fed by the
  unit's pre-activation, as in the paper's code), and BN-ReLU before the
  pooling.

All residual units form one ``nn.Sequential``, ``blocks``, between the stem
and the head; ``checkpoint_segments=k`` runs it through
``mc.utils.checkpoint.checkpoint_sequential(blocks, k, x)`` while training
(with gradients on), so the units' activations are recomputed in backward
instead of stored. About sqrt(number of units) segments use the least
memory (``checkpoint_segments="sqrt"``).
"""
import math

from .. import functional as F
from .. import nn
from ..autograd import is_grad_enabled
from ..utils.checkpoint import checkpoint_sequential
from .registry import register_model

__all__ = ["CifarResNet", "resnet20", "resnet32", "resnet38", "resnet44", "resnet56", "resnet110", "resnet164"]


class BasicUnit(nn.Module):
    """relu(bn(conv(relu(bn(conv(x))))) + shortcut(x)), option A shortcut."""

    def __init__(self, in_channels, channels, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.stride, self.pad = stride, channels - in_channels

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x
        if self.stride != 1:
            shortcut = shortcut[:, :, ::self.stride, ::self.stride]
        if self.pad:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(out + shortcut)


class PreActBottleneck(nn.Module):
    """x + conv1x1(relu(bn(conv3x3(relu(bn(conv1x1(relu(bn(x))))))))), with a
    strided 1x1 conv on relu(bn(x)) as the shortcut where the shape changes."""

    expansion = 4

    def __init__(self, in_channels, width, stride):
        super().__init__()
        out_channels = width * self.expansion
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x):
        pre = F.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + (x if self.shortcut is None else self.shortcut(pre))


class CifarResNet(nn.Module):
    """A CIFAR ResNet of ``depth`` layers (module docstring): 6n + 2 with
    basic units, 9n + 2 with ``bottleneck=True``."""

    def __init__(self, depth, num_classes=10, bottleneck=False, checkpoint_segments=0):
        super().__init__()
        per_unit = 9 if bottleneck else 6
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < per_unit + 2 or \
                (depth - 2) % per_unit:
            raise ValueError(f"CifarResNet: depth must be {per_unit}n + 2 for n >= 1 with "
                             f"bottleneck={bottleneck}, got {depth!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"CifarResNet: num_classes must be a positive int, got {num_classes!r}")
        n = (depth - 2) // per_unit
        self.depth, self.bottleneck = depth, bottleneck
        self.checkpoint_segments = checkpoint_segments
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = None if bottleneck else nn.BatchNorm2d(16)
        units, channels = [], 16
        for stage, width in enumerate((16, 32, 64)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                if bottleneck:
                    units.append(PreActBottleneck(channels, width, stride))
                    channels = width * PreActBottleneck.expansion
                else:
                    units.append(BasicUnit(channels, width, stride))
                    channels = width
        self.blocks = nn.Sequential(*units)
        self.bn_final = nn.BatchNorm2d(channels) if bottleneck else None
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @property
    def checkpoint_segments(self):
        return self._checkpoint_segments

    @checkpoint_segments.setter
    def checkpoint_segments(self, k):
        """0: no checkpointing; k >= 1: checkpoint_sequential in k segments;
        "sqrt": ceil(sqrt(number of units)), so no segment holds more than
        sqrt(units) units."""
        units = 3 * (self.depth - 2) // (9 if self.bottleneck else 6)
        if k == "sqrt":
            k = math.ceil(math.sqrt(units))
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= units:
            raise ValueError(f"CifarResNet: checkpoint_segments must be 0, 'sqrt' or an int up to the "
                             f"number of units ({units}), got {k!r}")
        object.__setattr__(self, "_checkpoint_segments", k)

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != 3 or min(x.shape[2:]) < 4:
            raise ValueError(f"CifarResNet expects input of shape (N, 3, H, W) with H, W >= 4, "
                             f"got {tuple(x.shape)}")
        x = self.conv1(x)
        if self.bn1 is not None:
            x = F.relu(self.bn1(x))
        if self.checkpoint_segments and self.training and is_grad_enabled():
            x = checkpoint_sequential(self.blocks, self.checkpoint_segments, x)
        else:
            x = self.blocks(x)
        if self.bn_final is not None:
            x = F.relu(self.bn_final(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def _builder(depth, bottleneck=False):
    def build(num_classes=10, **kwargs):
        return CifarResNet(depth, num_classes=num_classes, bottleneck=bottleneck, **kwargs)
    build.__name__ = f"resnet{depth}"
    build.__qualname__ = build.__name__
    paper = "pre-activation bottleneck, He et al. 2016" if bottleneck else "He et al. 2015"
    build.__doc__ = f"ResNet-{depth} for CIFAR ({paper}); keywords go to ``CifarResNet`` (``checkpoint_segments``)."
    return register_model(build)


resnet20 = _builder(20)
resnet32 = _builder(32)
resnet38 = _builder(38)
resnet44 = _builder(44)
resnet56 = _builder(56)
resnet110 = _builder(110)
resnet164 = _builder(164, bottleneck=True)
