"""GoogLeNet (Inception v1): Szegedy et al., "Going Deeper with
Convolutions", 2014, as built by torchvision.

The idea is the *Inception module*: instead of choosing one kernel size per
layer, run a 1x1, a 3x3, a 5x5 convolution and a 3x3 max pool side by side
and concatenate their feature maps along the channels, so the next layer
sees patterns at several scales. 1x1 convolutions first shrink the channels
("reductions") so that the wide kernels stay cheap. Nine such modules are
stacked, with max pools between stages, and the net ends with global
average pooling and one fully connected layer instead of big dense layers.

Two *auxiliary classifiers* (``aux1`` after inception4a, ``aux2`` after
inception4d) add gradient to the middle of the net while training; they
are used only in training mode, and the model then returns a
``GoogLeNetOutputs(logits, aux_logits2, aux_logits1)``.

Differences from the paper, all torchvision's (so its weights load):
every convolution is followed by batch normalization (``BasicConv2d``),
and the "5x5" branch uses a 3x3 kernel (torchvision issue 906, kept for
weight compatibility).

Notation: N images, 3 x 224 x 224 in the paper (any size from 15 x 15 up
works: the pools use ``ceil_mode`` and the head is adaptive).
"""
import collections

from .. import functional as F
from .. import nn
from ._layers import _check_weights
from .registry import register_model

__all__ = ["GoogLeNet", "GoogLeNetOutputs", "googlenet"]

GoogLeNetOutputs = collections.namedtuple("GoogLeNetOutputs", ["logits", "aux_logits2", "aux_logits1"])
GoogLeNetOutputs.__doc__ = """What GoogLeNet returns in training mode with ``aux_logits=True``:
the main logits and those of the two auxiliary classifiers, each (N, num_classes)."""


class BasicConv2d(nn.Module):
    """Conv2d (no bias: the batch norm's shift replaces it), BatchNorm2d
    (eps 0.001, as the original TensorFlow model) and ReLU.
    Keyword arguments go to the Conv2d."""

    def __init__(self, in_channels, out_channels, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    """Four parallel branches on (N, in_channels, H, W), concatenated to
    (N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W) in this order:

    * branch1: 1x1 conv to ``ch1x1``;
    * branch2: 1x1 reduction to ``ch3x3red``, then 3x3 conv to ``ch3x3``;
    * branch3: 1x1 reduction to ``ch5x5red``, then a (torchvision: 3x3)
      conv to ``ch5x5``;
    * branch4: 3x3 max pool (stride 1), then 1x1 projection to ``pool_proj``.
    """

    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, ch3x3red, kernel_size=1),
            BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            BasicConv2d(in_channels, ch5x5red, kernel_size=1),
            # The paper's 5x5; torchvision's weights were trained with 3x3.
            BasicConv2d(ch5x5red, ch5x5, kernel_size=3, padding=1),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(in_channels, pool_proj, kernel_size=1),
        )

    def forward(self, x):
        branches = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return F.cat(branches, 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier: (N, in_channels, H, W) -> (N, num_classes).
    Average pooling to 4x4, a 1x1 conv to 128 channels, then two fully
    connected layers (2048 -> 1024 -> num_classes) with dropout between."""

    def __init__(self, in_channels, num_classes, dropout=0.7):
        super().__init__()
        self.conv = BasicConv2d(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(x, (4, 4))   # (N, C, 4, 4) whatever H and W
        x = self.conv(x)                       # (N, 128, 4, 4)
        x = F.flatten(x, 1)                    # (N, 2048)
        x = F.relu(self.fc1(x))                # (N, 1024)
        x = self.dropout(x)
        return self.fc2(x)                     # (N, num_classes)


def _transform_input(x):
    """Map an image normalized with ImageNet's mean and std (torchvision's
    usual preprocessing) to the [-1, 1] scaling that the original
    (TensorFlow-trained) weights expect: per channel c,
    x_c * std_c / 0.5 + (mean_c - 0.5) / 0.5."""
    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)
    channels = [F.unsqueeze(x[:, c], 1) * (std[c] / 0.5) + (mean[c] - 0.5) / 0.5 for c in range(3)]
    return F.cat(channels, 1)


class GoogLeNet(nn.Module):
    """GoogLeNet: (N, 3, H, W) images -> (N, num_classes) logits (in
    training mode with ``aux_logits``: a ``GoogLeNetOutputs``).

    ``aux_logits``: build the two auxiliary classifiers ``aux1``, ``aux2``.
    ``transform_input``: rescale ImageNet-normalized input as the original
    weights expect (see ``_transform_input``).
    ``init_weights``: draw conv and linear weights from a normal
    distribution truncated to [-2, 2] with std 0.01, as torchvision does
    (None means True; torchvision warns that this default may change).
    ``dropout`` is used before ``fc``, ``dropout_aux`` in the auxiliary
    classifiers.
    """

    def __init__(self, num_classes=1000, aux_logits=True, transform_input=False, init_weights=None,
                 dropout=0.2, dropout_aux=0.7):
        super().__init__()
        self.aux_logits = aux_logits
        self.transform_input = transform_input

        # Stem: 224 -> 112 -> 56 -> 28 (sizes for a 224 x 224 input).
        self.conv1 = BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        # Arguments: in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj.
        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)        # 28 x 28, 256 channels
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)      # 480
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)         # -> 14 x 14

        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)       # 512
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)      # 512
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)      # 512
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)      # 528
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)    # 832
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)         # -> 7 x 7

        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)    # 832
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)    # 1024

        if aux_logits:
            self.aux1 = InceptionAux(512, num_classes, dropout=dropout_aux)
            self.aux2 = InceptionAux(528, num_classes, dropout=dropout_aux)
        else:
            self.aux1 = None
            self.aux2 = None

        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1024, num_classes)

        if init_weights is None or init_weights:
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)

    def forward(self, x):
        if self.transform_input:
            x = _transform_input(x)
        x = self.maxpool1(self.conv1(x))                     # (N, 64, 56, 56)
        x = self.maxpool2(self.conv3(self.conv2(x)))         # (N, 192, 28, 28)
        x = self.maxpool3(self.inception3b(self.inception3a(x)))  # (N, 480, 14, 14)

        x = self.inception4a(x)                              # (N, 512, 14, 14)
        use_aux = self.training and self.aux_logits
        aux1 = self.aux1(x) if use_aux else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))  # (N, 528, 14, 14)
        aux2 = self.aux2(x) if use_aux else None
        x = self.maxpool4(self.inception4e(x))               # (N, 832, 7, 7)

        x = self.inception5b(self.inception5a(x))            # (N, 1024, 7, 7)
        x = F.flatten(self.avgpool(x), 1)                    # (N, 1024)
        x = self.fc(self.dropout(x))                         # (N, num_classes)
        if use_aux:
            return GoogLeNetOutputs(x, aux2, aux1)
        return x


@register_model
def googlenet(*, weights=None, progress=True, **kwargs):
    """A freshly initialised GoogLeNet; ``kwargs`` go to ``GoogLeNet``
    (``num_classes``, ``aux_logits``, ``transform_input``, ``init_weights``,
    ``dropout``, ``dropout_aux``). ``weights`` must be None (minicnn
    downloads nothing: load torchvision's state_dict instead);
    ``progress`` is accepted for torchvision compatibility and unused."""
    _check_weights(weights, "googlenet")
    return GoogLeNet(**kwargs)
