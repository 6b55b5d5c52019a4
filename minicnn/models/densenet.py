"""DenseNet-BC: Huang et al., "Densely Connected Convolutional Networks",
2017, as built by torchvision (densenet121, 161, 169, 201).

The idea: inside a *dense block*, every layer gets the feature maps of all
the layers before it, concatenated along the channels, and adds
``growth_rate`` (k) new maps of its own. Features are reused instead of
relearned, gradients reach early layers directly, and each layer can be
thin (k = 32 channels). A block of L layers on C input channels outputs
C + L k channels, in order: the block's input, then layer 1's maps,
layer 2's, ...

"BC" = Bottleneck + Compression: each layer first squeezes its (wide)
input to ``bn_size * k`` channels with a 1x1 conv before the 3x3 conv,
and the *transitions* between blocks halve the channels (1x1 conv) and
the resolution (2x2 average pool). Layers are pre-activation:
BN -> ReLU -> conv.

==============  ===========  ==============  ======================
model           growth rate  initial maps    layers per block
==============  ===========  ==============  ======================
densenet121     32           64              6, 12, 24, 16
densenet161     48           96              6, 12, 36, 24
densenet169     32           64              6, 12, 32, 32
densenet201     32           64              6, 12, 48, 32
==============  ===========  ==============  ======================

Notation: N images of 3 x 224 x 224 (any size from 29 x 29 up works).
"""
import collections

from .. import functional as F
from .. import nn
from ..tensor import Tensor
from ._layers import _check_weights
from .registry import register_model

__all__ = ["DenseNet", "densenet121", "densenet161", "densenet169", "densenet201"]


class _DenseLayer(nn.Module):
    """One layer of a dense block: (N, C, H, W) (or a list of maps whose
    channels add up to C) -> (N, growth_rate, H, W) new maps.

    BN -> ReLU -> 1x1 conv to ``bn_size * growth_rate`` channels (the
    bottleneck), then BN -> ReLU -> 3x3 conv to ``growth_rate``, then
    dropout with ``drop_rate``. ``memory_efficient`` (torchvision
    recomputes the bottleneck in backward instead of storing it) is
    accepted and ignored: minicnn always stores it.
    """

    def __init__(self, num_input_features, growth_rate, bn_size, drop_rate, memory_efficient=False):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(num_input_features, bn_size * growth_rate, kernel_size=1, stride=1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, kernel_size=3, stride=1, padding=1,
                               bias=False)
        self.drop_rate = float(drop_rate)
        self.memory_efficient = memory_efficient

    def forward(self, input):
        prev_features = [input] if isinstance(input, Tensor) else list(input)
        concatenated = F.cat(prev_features, 1)
        bottleneck = self.conv1(self.relu1(self.norm1(concatenated)))
        new_features = self.conv2(self.relu2(self.norm2(bottleneck)))
        if self.drop_rate > 0:
            new_features = F.dropout(new_features, p=self.drop_rate, training=self.training)
        return new_features


class _DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers named ``denselayer1``, ``denselayer2``, ...:
    (N, C, H, W) -> (N, C + num_layers * growth_rate, H, W). Layer i sees
    the block's input and the maps of layers 1 .. i-1, concatenated in that
    order."""

    def __init__(self, num_layers, num_input_features, bn_size, growth_rate, drop_rate, memory_efficient=False):
        super().__init__()
        for i in range(num_layers):
            layer = _DenseLayer(num_input_features + i * growth_rate, growth_rate=growth_rate, bn_size=bn_size,
                                drop_rate=drop_rate, memory_efficient=memory_efficient)
            self.add_module(f"denselayer{i + 1}", layer)

    def forward(self, init_features):
        features = [init_features]
        for layer in self.values():
            features.append(layer(features))
        return F.cat(features, 1)


class _Transition(nn.Sequential):
    """Between dense blocks: BN -> ReLU -> 1x1 conv to
    ``num_output_features`` channels (compression) -> 2x2 average pool.
    (N, C, H, W) -> (N, num_output_features, H // 2, W // 2)."""

    def __init__(self, num_input_features, num_output_features):
        super().__init__()
        self.norm = nn.BatchNorm2d(num_input_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(num_input_features, num_output_features, kernel_size=1, stride=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNet(nn.Module):
    """DenseNet-BC: (N, 3, H, W) images -> (N, num_classes) logits.

    ``features`` is a Sequential: ``conv0`` (7x7, stride 2), ``norm0``,
    ``relu0``, ``pool0`` (3x3 max, stride 2), then ``denseblock1``,
    ``transition1``, ..., ``denseblock4`` and ``norm5``; ``classifier`` is
    the linear layer after ReLU and global average pooling.

    growth_rate: maps each dense layer adds (k); block_config: layers per
    block; num_init_features: maps of conv0; bn_size: the bottleneck is
    bn_size * k wide; drop_rate: dropout after each dense layer;
    memory_efficient: accepted for torchvision compatibility and ignored
    (it trades compute for memory there; the results are the same).
    """

    def __init__(self, growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64, bn_size=4,
                 drop_rate=0, num_classes=1000, memory_efficient=False):
        super().__init__()
        self.features = nn.Sequential(collections.OrderedDict([
            ("conv0", nn.Conv2d(3, num_init_features, kernel_size=7, stride=2, padding=3, bias=False)),
            ("norm0", nn.BatchNorm2d(num_init_features)),
            ("relu0", nn.ReLU(inplace=True)),
            ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
        ]))

        num_features = num_init_features
        for i, num_layers in enumerate(block_config):
            block = _DenseBlock(num_layers=num_layers, num_input_features=num_features, bn_size=bn_size,
                                growth_rate=growth_rate, drop_rate=drop_rate, memory_efficient=memory_efficient)
            self.features.add_module(f"denseblock{i + 1}", block)
            num_features += num_layers * growth_rate
            if i != len(block_config) - 1:
                self.features.add_module(f"transition{i + 1}", _Transition(num_features, num_features // 2))
                num_features //= 2
        # The layers are pre-activation, so the last block's output still
        # needs its batch norm (and the ReLU in forward).
        self.features.add_module("norm5", nn.BatchNorm2d(num_features))

        self.classifier = nn.Linear(num_features, num_classes)

        # torchvision's initialisation ("official init from torch repo").
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        features = self.features(x)                  # (N, C, H / 32, W / 32)
        out = F.relu(features)
        out = F.adaptive_avg_pool2d(out, (1, 1))     # (N, C, 1, 1)
        out = F.flatten(out, 1)                      # (N, C)
        return self.classifier(out)                  # (N, num_classes)


def _densenet(growth_rate, block_config, num_init_features, weights, builder, **kwargs):
    _check_weights(weights, builder)
    return DenseNet(growth_rate, block_config, num_init_features, **kwargs)


@register_model
def densenet121(*, weights=None, progress=True, **kwargs):
    """DenseNet-121 (k = 32, blocks of 6, 12, 24, 16 layers); ``kwargs`` go
    to ``DenseNet`` (``num_classes``, ``drop_rate``, ``bn_size``,
    ``memory_efficient``). ``weights`` must be None (minicnn downloads
    nothing); ``progress`` is accepted and unused."""
    return _densenet(32, (6, 12, 24, 16), 64, weights, "densenet121", **kwargs)


@register_model
def densenet161(*, weights=None, progress=True, **kwargs):
    """DenseNet-161 (k = 48, 96 initial maps, blocks of 6, 12, 36, 24);
    arguments as ``densenet121``."""
    return _densenet(48, (6, 12, 36, 24), 96, weights, "densenet161", **kwargs)


@register_model
def densenet169(*, weights=None, progress=True, **kwargs):
    """DenseNet-169 (k = 32, blocks of 6, 12, 32, 32); arguments as
    ``densenet121``."""
    return _densenet(32, (6, 12, 32, 32), 64, weights, "densenet169", **kwargs)


@register_model
def densenet201(*, weights=None, progress=True, **kwargs):
    """DenseNet-201 (k = 32, blocks of 6, 12, 48, 32); arguments as
    ``densenet121``."""
    return _densenet(32, (6, 12, 48, 32), 64, weights, "densenet201", **kwargs)
