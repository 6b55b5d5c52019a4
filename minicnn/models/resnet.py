"""ResNet (He et al., "Deep Residual Learning for Image Recognition", 2015)
and its widened variants ResNeXt (Xie et al., 2016) and Wide ResNet
(Zagoruyko & Komodakis, 2016), as torchvision builds them.

The idea: instead of asking a stack of layers to learn a mapping H(x),
let it learn the residual F(x) = H(x) - x and add the input back,

    y = relu(F(x) + shortcut(x)),

where the shortcut is the identity, or a strided 1x1 conv + norm when the
block changes the resolution or the channel count. A block that has
nothing to add can push F towards zero, so depth no longer hurts
optimisation: 152 layers train as easily as 18.

Two kinds of block:

* ``BasicBlock`` (resnet18/34): two 3x3 convs, ``expansion = 1``.
* ``Bottleneck`` (resnet50 and deeper): 1x1 (reduce) -> 3x3 -> 1x1
  (expand to 4x the width), ``expansion = 4``. ResNeXt splits the 3x3
  into ``groups`` parallel paths; Wide ResNet doubles its width.

Notation: N images, 3 x H x W input. The stem (7x7 stride-2 conv, 3x3
stride-2 max pool) divides H and W by 4; ``layer2``..``layer4`` each
halve them again (unless ``replace_stride_with_dilation`` trades a stride
for dilation), so the last feature map is (N, 512 * expansion, H/32, W/32)
rounded up, which global average pooling turns into one vector per image.

Where the stride sits in a Bottleneck: torchvision (and this module, by
default) puts it in the 3x3 conv ("ResNet v1.5", slightly more accurate);
the paper put it in the first 1x1 conv ("v1"). ``stride_in_1x1=True``
builds the paper's version; the parameters and state_dict keys are the
same, only the computation differs.

The builders take torchvision's arguments: ``weights`` must be None
(minicnn downloads nothing), ``progress`` is accepted and ignored, and
every other keyword goes to ``ResNet``.
"""
from .. import functional as F
from .. import nn
from ._layers import _check_weights
from .registry import register_model

__all__ = [
    "ResNet",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
]


def conv3x3(in_planes, out_planes, stride=1, groups=1, dilation=1):
    """3x3 convolution without bias (a norm layer follows), padded so that
    stride 1 keeps H and W."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=dilation, groups=groups,
                     bias=False, dilation=dilation)


def conv1x1(in_planes, out_planes, stride=1):
    """1x1 convolution without bias: mixes channels only."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)) with two 3x3 convs:
    (N, inplanes, H, W) -> (N, planes, H / stride, W / stride).

    ``downsample`` is the shortcut when shapes change (None: the identity).
    """

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, dilation=1,
                 norm_layer=None, stride_in_1x1=False):
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64")
        if dilation > 1:
            raise ValueError("BasicBlock does not support dilation > 1")
        if stride_in_1x1:
            raise ValueError("BasicBlock has no 1x1 conv: stride_in_1x1 applies to Bottleneck blocks only")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 -> 1x1 expand, each followed by a norm layer, then
    the shortcut is added: (N, inplanes, H, W) -> (N, 4 planes, H / stride,
    W / stride).

    The inner width is ``planes * base_width / 64 * groups``: groups=32,
    base_width=4 is ResNeXt's "32x4d" (32 paths of 4 channels per 64 of
    ``planes``); base_width=128 doubles the width (Wide ResNet).
    ``stride_in_1x1=False`` strides the 3x3 conv (torchvision's "v1.5");
    True strides the first 1x1 conv, as in the paper ("v1").
    """

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, dilation=1,
                 norm_layer=None, stride_in_1x1=False):
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        width = int(planes * (base_width / 64.0)) * groups
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(inplanes, width, stride_1x1)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride_3x3, groups, dilation)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    """The ResNet body, torchvision's ``ResNet(block, layers, ...)``:
    (N, 3, H, W) -> (N, num_classes) logits.

    * ``block``: BasicBlock or Bottleneck; ``layers``: how many blocks in
      each of the four stages (e.g. [3, 4, 6, 3] for resnet50).
    * ``zero_init_residual``: start the last norm of every residual branch
      at weight 0, so each block begins as the identity (Goyal et al., 2017).
    * ``groups``, ``width_per_group``: ResNeXt / Wide ResNet widths.
    * ``replace_stride_with_dilation``: three bools, one for each of
      layer2..layer4: keep the resolution there and dilate the 3x3 convs
      instead (for dense prediction); Bottleneck only.
    * ``norm_layer``: a callable num_channels -> Module (default BatchNorm2d).
    * ``stride_in_1x1``: Bottleneck stride placement (see the module docstring).

    Initialisation (torchvision's): convs kaiming_normal_(fan_out, relu),
    norm weights 1 and biases 0, ``fc`` the Linear default.
    """

    def __init__(self, block, layers, num_classes=1000, zero_init_residual=False, groups=1, width_per_group=64,
                 replace_stride_with_dilation=None, norm_layer=None, stride_in_1x1=False):
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        self._norm_layer = norm_layer
        self._stride_in_1x1 = stride_in_1x1
        self.inplanes = 64
        self.dilation = 1
        if replace_stride_with_dilation is None:
            replace_stride_with_dilation = [False, False, False]
        if len(replace_stride_with_dilation) != 3:
            raise ValueError("replace_stride_with_dilation should be None or a 3-element tuple, "
                             f"got {replace_stride_with_dilation}")
        if len(layers) != 4:
            raise ValueError(f"ResNet: layers must list the number of blocks of 4 stages, got {layers}")
        self.groups = groups
        self.base_width = width_per_group

        # Stem: (N, 3, H, W) -> (N, 64, H/4, W/4).
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2, dilate=replace_stride_with_dilation[0])
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2, dilate=replace_stride_with_dilation[1])
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2, dilate=replace_stride_with_dilation[2])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck) and m.bn3.weight is not None:
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock) and m.bn2.weight is not None:
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        """One stage: ``blocks`` blocks of width ``planes``; the first one
        strides (or, with ``dilate``, raises the dilation instead) and gets
        a projection shortcut when the shape changes."""
        norm_layer = self._norm_layer
        downsample = None
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                norm_layer(planes * block.expansion),
            )
        # The first block keeps the dilation of the previous stage (it is
        # where the stride would have been); the rest use the new one.
        layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width,
                        previous_dilation, norm_layer, stride_in_1x1=self._stride_in_1x1)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, groups=self.groups, base_width=self.base_width,
                                dilation=self.dilation, norm_layer=norm_layer,
                                stride_in_1x1=self._stride_in_1x1))
        return nn.Sequential(*layers)

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"ResNet expects input of shape (N, 3, H, W), got {x.shape}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)                     # (N, C, 1, 1)
        x = F.flatten(x, 1)                     # (N, C)
        return self.fc(x)


def _fix_kwarg(kwargs, name, value, builder):
    """Set ``kwargs[name] = value`` for a builder that fixes that argument
    (resnext50_32x4d fixes groups=32); a different value is an error."""
    if kwargs.get(name, value) != value:
        raise ValueError(f"{builder}: {name} is fixed to {value} for this model, got {kwargs[name]}")
    kwargs[name] = value


def _resnet(builder, block, layers, weights, kwargs):
    _check_weights(weights, builder)
    return ResNet(block, layers, **kwargs)


@register_model
def resnet18(*, weights=None, progress=True, **kwargs):
    """ResNet-18: BasicBlocks [2, 2, 2, 2], 11.7M parameters.
    ``kwargs`` go to ``ResNet`` (num_classes, zero_init_residual, ...)."""
    return _resnet("resnet18", BasicBlock, [2, 2, 2, 2], weights, kwargs)


@register_model
def resnet34(*, weights=None, progress=True, **kwargs):
    """ResNet-34: BasicBlocks [3, 4, 6, 3], 21.8M parameters."""
    return _resnet("resnet34", BasicBlock, [3, 4, 6, 3], weights, kwargs)


@register_model
def resnet50(*, weights=None, progress=True, **kwargs):
    """ResNet-50: Bottlenecks [3, 4, 6, 3], 25.6M parameters. Pass
    ``stride_in_1x1=True`` for the paper's v1 block (stride in the first
    1x1 conv) instead of torchvision's v1.5 (stride in the 3x3 conv)."""
    return _resnet("resnet50", Bottleneck, [3, 4, 6, 3], weights, kwargs)


@register_model
def resnet101(*, weights=None, progress=True, **kwargs):
    """ResNet-101: Bottlenecks [3, 4, 23, 3], 44.5M parameters;
    ``stride_in_1x1`` as for resnet50."""
    return _resnet("resnet101", Bottleneck, [3, 4, 23, 3], weights, kwargs)


@register_model
def resnet152(*, weights=None, progress=True, **kwargs):
    """ResNet-152: Bottlenecks [3, 8, 36, 3], 60.2M parameters;
    ``stride_in_1x1`` as for resnet50."""
    return _resnet("resnet152", Bottleneck, [3, 8, 36, 3], weights, kwargs)


@register_model
def resnext50_32x4d(*, weights=None, progress=True, **kwargs):
    """ResNeXt-50 32x4d: resnet50 with 32 groups of width 4, 25.0M parameters."""
    _fix_kwarg(kwargs, "groups", 32, "resnext50_32x4d")
    _fix_kwarg(kwargs, "width_per_group", 4, "resnext50_32x4d")
    return _resnet("resnext50_32x4d", Bottleneck, [3, 4, 6, 3], weights, kwargs)


@register_model
def resnext101_32x8d(*, weights=None, progress=True, **kwargs):
    """ResNeXt-101 32x8d: resnet101 with 32 groups of width 8, 88.8M parameters."""
    _fix_kwarg(kwargs, "groups", 32, "resnext101_32x8d")
    _fix_kwarg(kwargs, "width_per_group", 8, "resnext101_32x8d")
    return _resnet("resnext101_32x8d", Bottleneck, [3, 4, 23, 3], weights, kwargs)


@register_model
def resnext101_64x4d(*, weights=None, progress=True, **kwargs):
    """ResNeXt-101 64x4d: resnet101 with 64 groups of width 4, 83.5M parameters."""
    _fix_kwarg(kwargs, "groups", 64, "resnext101_64x4d")
    _fix_kwarg(kwargs, "width_per_group", 4, "resnext101_64x4d")
    return _resnet("resnext101_64x4d", Bottleneck, [3, 4, 23, 3], weights, kwargs)


@register_model
def wide_resnet50_2(*, weights=None, progress=True, **kwargs):
    """Wide ResNet-50-2: resnet50 with bottlenecks twice as wide (the outer
    1x1 convs keep their widths), 68.9M parameters."""
    _fix_kwarg(kwargs, "width_per_group", 64 * 2, "wide_resnet50_2")
    return _resnet("wide_resnet50_2", Bottleneck, [3, 4, 6, 3], weights, kwargs)


@register_model
def wide_resnet101_2(*, weights=None, progress=True, **kwargs):
    """Wide ResNet-101-2: resnet101 with bottlenecks twice as wide, 126.9M parameters."""
    _fix_kwarg(kwargs, "width_per_group", 64 * 2, "wide_resnet101_2")
    return _resnet("wide_resnet101_2", Bottleneck, [3, 4, 23, 3], weights, kwargs)
