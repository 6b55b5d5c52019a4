"""Video ResNets (Tran et al., "A Closer Look at Spatiotemporal
Convolutions for Action Recognition", 2018) as torchvision builds them:
``r3d_18``, ``mc3_18`` and ``r2plus1d_18``, with torchvision's arguments,
module names and state_dict keys.

Notation: N clips of T frames, (N, 3, T, H, W) input. The three models
are ResNet-18 (torchvision's ``BasicBlock`` stages of 64, 128, 256, 512
channels, stride 2 from the second on) whose 3x3 convolutions are
replaced by a "conv maker" that says how a block looks at time:

* ``Conv3DSimple`` (R3D): a full 3x3x3 convolution, time and space at
  once; its stride halves T, H and W.
* ``Conv3DNoTemporal`` (MC3's stages 2-4, "mixed convolutions"): a 1x3x3
  convolution that sees one frame; its stride halves H and W only. Time
  is modelled by the first stage alone.
* ``Conv2Plus1D`` (R(2+1)D): a 1x3x3 spatial convolution to ``midplanes``
  channels, BatchNorm, ReLU, then a 3x1x1 temporal one. ``midplanes`` is
  chosen so that the pair has about the parameters of one 3x3x3 conv:
  Ni*Mi*9 + Mi*No*3 = Ni*No*27 gives Mi = 27 Ni No / (9 Ni + 3 No).

The stem (``BasicStem``, a 3x7x7 conv, or ``R2Plus1dStem``, a 1x7x7 then
a 3x1x1 conv) halves H and W; there is no max pool. The head averages over
(T, H, W) (``AdaptiveAvgPool3d(1)``) and a Linear maps the 512 features
to ``num_classes`` (400 Kinetics classes by default).

The builders take torchvision's arguments: ``weights`` must be None
(minicnn downloads nothing; load torchvision's file with
``mc.load_weights``), ``progress`` is accepted and ignored, and every
other keyword goes to ``VideoResNet``.
"""
from ... import nn
from .._layers import _check_weights
from ..registry import register_model

__all__ = ["VideoResNet", "r3d_18", "mc3_18", "r2plus1d_18"]


class Conv3DSimple(nn.Conv3d):
    """A 3x3x3 convolution without bias: (N, in_planes, T, H, W) ->
    (N, out_planes, T/stride, H/stride, W/stride). ``midplanes`` is
    ignored (the conv makers share one signature)."""

    def __init__(self, in_planes, out_planes, midplanes=None, stride=1, padding=1):
        super().__init__(in_channels=in_planes, out_channels=out_planes, kernel_size=(3, 3, 3),
                         stride=stride, padding=padding, bias=False)

    @staticmethod
    def get_downsample_stride(stride):
        """The stride of the 1x1x1 shortcut conv of a block that strides."""
        return stride, stride, stride


class Conv2Plus1D(nn.Sequential):
    """A 1x3x3 spatial conv to ``midplanes`` channels, BatchNorm3d, ReLU,
    then a 3x1x1 temporal conv to ``out_planes``: (N, in_planes, T, H, W)
    -> (N, out_planes, T/stride, H/stride, W/stride)."""

    def __init__(self, in_planes, out_planes, midplanes, stride=1, padding=1):
        super().__init__(
            nn.Conv3d(in_planes, midplanes, kernel_size=(1, 3, 3), stride=(1, stride, stride),
                      padding=(0, padding, padding), bias=False),
            nn.BatchNorm3d(midplanes),
            nn.ReLU(inplace=True),
            nn.Conv3d(midplanes, out_planes, kernel_size=(3, 1, 1), stride=(stride, 1, 1),
                      padding=(padding, 0, 0), bias=False),
        )

    @staticmethod
    def get_downsample_stride(stride):
        return stride, stride, stride


class Conv3DNoTemporal(nn.Conv3d):
    """A 1x3x3 convolution without bias, frame by frame: (N, in_planes,
    T, H, W) -> (N, out_planes, T, H/stride, W/stride)."""

    def __init__(self, in_planes, out_planes, midplanes=None, stride=1, padding=1):
        super().__init__(in_channels=in_planes, out_channels=out_planes, kernel_size=(1, 3, 3),
                         stride=(1, stride, stride), padding=(0, padding, padding), bias=False)

    @staticmethod
    def get_downsample_stride(stride):
        return 1, stride, stride


def check_clip(x, model):
    """A ValueError naming the shape unless x is a batch of RGB clips."""
    if x.ndim != 5 or x.shape[1] != 3:
        raise ValueError(f"{model} expects clips of shape (N, 3, T, H, W), got {x.shape}")


def _midplanes(inplanes, planes):
    """The width of Conv2Plus1D's middle, so that its two convs have about
    the parameters of one 3x3x3 conv (see the module docstring)."""
    return (inplanes * planes * 3 * 3 * 3) // (inplanes * 3 * 3 + 3 * planes)


class BasicBlock(nn.Module):
    """Two conv-maker convs, each followed by BatchNorm3d (ReLU after the
    first), plus the shortcut: y = relu(conv2(conv1(x)) + shortcut(x))."""

    expansion = 1

    def __init__(self, inplanes, planes, conv_builder, stride=1, downsample=None):
        midplanes = _midplanes(inplanes, planes)
        super().__init__()
        self.conv1 = nn.Sequential(conv_builder(inplanes, planes, midplanes, stride), nn.BatchNorm3d(planes),
                                   nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(conv_builder(planes, planes, midplanes), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        out = self.conv2(self.conv1(x))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class Bottleneck(nn.Module):
    """1x1x1 reduce -> conv maker -> 1x1x1 expand to 4x ``planes``, each
    with BatchNorm3d, plus the shortcut (no torchvision builder uses it)."""

    expansion = 4

    def __init__(self, inplanes, planes, conv_builder, stride=1, downsample=None):
        super().__init__()
        midplanes = _midplanes(inplanes, planes)
        self.conv1 = nn.Sequential(nn.Conv3d(inplanes, planes, kernel_size=1, bias=False), nn.BatchNorm3d(planes),
                                   nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(conv_builder(planes, planes, midplanes, stride), nn.BatchNorm3d(planes),
                                   nn.ReLU(inplace=True))
        self.conv3 = nn.Sequential(nn.Conv3d(planes, planes * self.expansion, kernel_size=1, bias=False),
                                   nn.BatchNorm3d(planes * self.expansion))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        out = self.conv3(self.conv2(self.conv1(x)))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class BasicStem(nn.Sequential):
    """A 3x7x7 conv (stride 1 in time, 2 in space), BatchNorm3d, ReLU:
    (N, 3, T, H, W) -> (N, 64, T, H/2, W/2)."""

    def __init__(self):
        super().__init__(
            nn.Conv3d(3, 64, kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
            nn.BatchNorm3d(64),
            nn.ReLU(inplace=True),
        )


class R2Plus1dStem(nn.Sequential):
    """The stem factored as R(2+1)D's blocks are: a 1x7x7 conv to 45
    channels and a 3x1x1 conv to 64, each with BatchNorm3d and ReLU."""

    def __init__(self):
        super().__init__(
            nn.Conv3d(3, 45, kernel_size=(1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(45),
            nn.ReLU(inplace=True),
            nn.Conv3d(45, 64, kernel_size=(3, 1, 1), stride=(1, 1, 1), padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(64),
            nn.ReLU(inplace=True),
        )


class VideoResNet(nn.Module):
    """torchvision's ``VideoResNet(block, conv_makers, layers, stem)``:
    (N, 3, T, H, W) clips -> (N, num_classes) logits.

    * ``block``: BasicBlock or Bottleneck; ``conv_makers``: one conv maker
      class per stage; ``layers``: blocks per stage; ``stem``: a class
      (BasicStem or R2Plus1dStem) called without arguments.
    * Initialisation (torchvision's): convs kaiming_normal_(fan_out,
      relu), BatchNorm weight 1 and bias 0, Linear N(0, 0.01) and bias 0.
    * ``zero_init_residual`` zeroes the weight of the last BatchNorm of
      every Bottleneck (torchvision asks for ``bn3``, which its Bottleneck
      lacks, and fails; BasicBlocks are left alone there and here).
    """

    def __init__(self, block, conv_makers, layers, stem, num_classes=400, zero_init_residual=False):
        super().__init__()
        self.inplanes = 64
        self.stem = stem()
        self.layer1 = self._make_layer(block, conv_makers[0], 64, layers[0], stride=1)
        self.layer2 = self._make_layer(block, conv_makers[1], 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, conv_makers[2], 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, conv_makers[3], 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.conv3[1].weight, 0)

    def _make_layer(self, block, conv_builder, planes, blocks, stride=1):
        """A stage of ``blocks`` blocks; the first may stride and change the
        width, with a strided 1x1x1 conv + BatchNorm3d on its shortcut."""
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv3d(self.inplanes, planes * block.expansion, kernel_size=1,
                          stride=conv_builder.get_downsample_stride(stride), bias=False),
                nn.BatchNorm3d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, conv_builder, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, conv_builder) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        check_clip(x, "VideoResNet")
        x = self.stem(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        return self.fc(x.flatten(1))


def _video_resnet(name, conv_makers, stem, weights, kwargs):
    _check_weights(weights, name)
    return VideoResNet(BasicBlock, conv_makers, [2, 2, 2, 2], stem, **kwargs)


@register_model
def r3d_18(*, weights=None, progress=True, **kwargs):
    """R3D-18: 3x3x3 convolutions throughout (33.4M parameters)."""
    return _video_resnet("r3d_18", [Conv3DSimple] * 4, BasicStem, weights, kwargs)


@register_model
def mc3_18(*, weights=None, progress=True, **kwargs):
    """MC3-18: 3x3x3 convolutions in the first stage, 1x3x3 after
    (11.7M parameters)."""
    return _video_resnet("mc3_18", [Conv3DSimple] + [Conv3DNoTemporal] * 3, BasicStem, weights, kwargs)


@register_model
def r2plus1d_18(*, weights=None, progress=True, **kwargs):
    """R(2+1)D-18: every 3x3x3 convolution factored into a 1x3x3 spatial
    and a 3x1x1 temporal one (31.5M parameters)."""
    return _video_resnet("r2plus1d_18", [Conv2Plus1D] * 4, R2Plus1dStem, weights, kwargs)
