"""The CNN architectures of Géron, *Hands-On Machine Learning* (2nd/3rd
ed.), chapter 14, that torchvision lacks, written the way the book builds
them:

* ``alexnet_original``: AlexNet as published (Krizhevsky et al., 2012; the
  book's table 14-2): 96 and 256 filters in C1 and C3, each followed by
  local response normalization.
* ``resnet34_book``: ResNet-34 (He et al., 2015) as the book's stack of
  ``ResidualUnit`` layers.
* ``se_resnet34_book``: the same stack of ``SEResidualUnit`` layers.
* ``se_resnet50``: SE-ResNet-50 (Hu et al., 2018), ResNet-50's bottleneck
  units with an SE block.
* ``xception``: Xception (Chollet, 2017), depthwise separable convolutions
  with residual shortcuts, laid out layer for layer as
  ``keras.applications.Xception``.

Notation: N images of 3 x H x W pixels; every model returns (N,
num_classes) logits (the softmax of the book's output layers is left to the
loss, ``F.cross_entropy``).

Keras's ``padding="same"`` is written as explicit symmetric padding
(``padding=1`` for a 3x3 kernel), as torchvision does. For stride 1 the
two agree; for stride 2 on an even-sized input Keras pads one pixel on the
bottom/right only, so the sampling grid shifts by a pixel but the output
sizes are the same. Parameter counts are unaffected.
"""
from .. import nn
from .registry import register_model

__all__ = [
    "AlexNetOriginal", "alexnet_original",
    "ResidualUnit", "SEResidualUnit", "ResNetBook", "resnet34_book", "se_resnet34_book",
    "SEBottleneck", "SEResNet", "se_resnet50",
    "XceptionBlock", "XceptionMiddleBlock", "Xception", "xception",
]


def _check_num_classes(name, num_classes):
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
        raise ValueError(f"{name}: num_classes must be a positive int, got {num_classes!r}")


def _check_images(name, x, min_size=1):
    """Every model here takes (N, 3, H, W) with H, W >= ``min_size``."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{name} expects input of shape (N, 3, H, W), got {tuple(x.shape)}")
    if min(x.shape[2:]) < min_size:
        raise ValueError(f"{name} needs images of at least {min_size}x{min_size} pixels, "
                         f"got {x.shape[2]}x{x.shape[3]}")


def _init_resnet(model):
    """ResNet's initialisation (He et al., 2015, as in torchvision): He
    normal weights for the convs (fan_out, since the signal that must not
    vanish in backward flows through the output channels); BatchNorm starts
    as the identity (weight 1, bias 0, its default)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


# ---------------------------------------------------------------------------
# AlexNet, as published
# ---------------------------------------------------------------------------

# Local response normalization (Krizhevsky et al., 2012, section 3.3):
#     b[i] = a[i] / (k + alpha_paper * sum_{j=i-r}^{i+r} a[j]^2) ^ beta
# over the channels j in [0, C), with r = 2 (a window of n = 2r + 1 = 5
# channels), alpha_paper = 1e-4, beta = 0.75, k = 2. torch's (and
# minicnn's) LocalResponseNorm divides its alpha by the window size
# (b = a / (k + alpha / n * sum) ^ beta), so the paper's alpha becomes
# alpha = n * alpha_paper = 5e-4. (Géron quotes alpha = 0.00002 and k = 1,
# the settings of Caffe's reference AlexNet, whose alpha = 1e-4 is also
# divided by n = 5.)
LRN_SIZE = 5
LRN_ALPHA = LRN_SIZE * 1e-4
LRN_BETA = 0.75
LRN_K = 2.0


class AlexNetOriginal(nn.Module):
    """AlexNet as in Géron's table 14-2 (single stream: the paper split C1
    to C7 across two GPUs; one GPU holds them all today, and every filter
    sees every input channel).

    =====  ===============  ====  ===========  ======  ======  =======  ==========
    Layer  Type             Maps  Output size  Kernel  Stride  Padding  Activation
    =====  ===============  ====  ===========  ======  ======  =======  ==========
    In     input              3   227x227
    C1     convolution       96   55x55        11x11     4     valid    ReLU + LRN
    S2     max pooling       96   27x27        3x3       2     valid
    C3     convolution      256   27x27        5x5       1     same     ReLU + LRN
    S4     max pooling      256   13x13        3x3       2     valid
    C5     convolution      384   13x13        3x3       1     same     ReLU
    C6     convolution      384   13x13        3x3       1     same     ReLU
    C7     convolution      256   13x13        3x3       1     same     ReLU
    S8     max pooling      256   6x6          3x3       2     valid
    F9     fully connected        4096                                  ReLU + dropout
    F10    fully connected        4096                                  ReLU + dropout
    Out    fully connected        1000                                  (softmax)
    =====  ===============  ====  ===========  ======  ======  =======  ==========

    The pooling windows overlap (3x3, stride 2), as in the paper. Dropout
    (rate ``dropout``) acts on the outputs of F9 and F10, as the book says.

    One addition: an adaptive average pool to 6x6 before F9, as in
    torchvision's AlexNet. At 227x227 S8 is already 6x6 and the pool is the
    identity; it lets smaller images through. The smallest is 67x67:
    C1 gives floor((67 - 11) / 4) + 1 = 15, S2 7, C3 7, S4 3, C5-C7 3, S8 1.

    Parameters: weights + biases per layer,
    C1 96*3*11*11 + 96 = 34,944;  C3 256*96*5*5 + 256 = 614,656;
    C5 384*256*9 + 384 = 885,120;  C6 384*384*9 + 384 = 1,327,488;
    C7 256*384*9 + 256 = 884,992;  F9 9216*4096 + 4096 = 37,752,832;
    F10 4096*4096 + 4096 = 16,781,312;  Out 4096*1000 + 1000 = 4,097,000;
    62,378,344 in all (the paper's two-stream net has fewer, 60.97M,
    because its grouped convs see half the channels).

    The weights start from minicnn's default initialisation, not the
    paper's N(0, 0.01) with biases of 1, which trains slowly without the
    paper's learning-rate schedule.
    """

    min_size = 67

    def __init__(self, num_classes=1000, dropout=0.5):
        super().__init__()
        _check_num_classes("AlexNetOriginal", num_classes)
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, kernel_size=11, stride=4),               # C1: 227 -> 55
            nn.ReLU(),
            nn.LocalResponseNorm(LRN_SIZE, alpha=LRN_ALPHA, beta=LRN_BETA, k=LRN_K),
            nn.MaxPool2d(kernel_size=3, stride=2),                    # S2: -> 27
            nn.Conv2d(96, 256, kernel_size=5, padding=2),             # C3: 27 ("same")
            nn.ReLU(),
            nn.LocalResponseNorm(LRN_SIZE, alpha=LRN_ALPHA, beta=LRN_BETA, k=LRN_K),
            nn.MaxPool2d(kernel_size=3, stride=2),                    # S4: -> 13
            nn.Conv2d(256, 384, kernel_size=3, padding=1),            # C5
            nn.ReLU(),
            nn.Conv2d(384, 384, kernel_size=3, padding=1),            # C6
            nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),            # C7
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),                    # S8: -> 6
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Linear(256 * 6 * 6, 4096),                             # F9
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),                                    # F10
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(4096, num_classes),                             # Out (logits)
        )

    def forward(self, x):
        _check_images("AlexNetOriginal", x, self.min_size)
        x = self.avgpool(self.features(x))
        return self.classifier(x.flatten(1))


@register_model
def alexnet_original(num_classes=1000, dropout=0.5):
    """AlexNet as published (96/256 filters, LRN), for 3x227x227 images
    (67x67 and up are accepted). 62,378,344 parameters at 1000 classes."""
    return AlexNetOriginal(num_classes=num_classes, dropout=dropout)


# ---------------------------------------------------------------------------
# ResNet-34 as the book's ResidualUnit stack, and its SE variant
# ---------------------------------------------------------------------------

class ResidualUnit(nn.Module):
    """The book's residual unit: (N, in_channels, H, W) ->
    (N, filters, H / strides, W / strides),

        y = ReLU(main_layers(x) + skip_layers(x))

    ``main_layers``: 3x3 conv (stride ``strides``), BN, ReLU, 3x3 conv, BN.
    ``skip_layers``: empty (the identity) when the shapes already match;
    otherwise a 1x1 conv (stride ``strides``) and BN that project x to the
    main path's shape. The convs have no bias: the BN after each adds one.

    Keras infers ``in_channels`` when the layer is first called; a minicnn
    conv needs it up front, so it is the first argument here.
    """

    def __init__(self, in_channels, filters, strides=1):
        super().__init__()
        self.main_layers = nn.Sequential(
            nn.Conv2d(in_channels, filters, 3, stride=strides, padding=1, bias=False),
            nn.BatchNorm2d(filters),
            nn.ReLU(),
            nn.Conv2d(filters, filters, 3, padding=1, bias=False),
            nn.BatchNorm2d(filters),
        )
        if strides > 1 or in_channels != filters:
            self.skip_layers = nn.Sequential(
                nn.Conv2d(in_channels, filters, 1, stride=strides, bias=False),
                nn.BatchNorm2d(filters),
            )
        else:
            self.skip_layers = nn.Sequential()
        self.activation = nn.ReLU()

    def forward(self, inputs):
        return self.activation(self.main_layers(inputs) + self.skip_layers(inputs))


class SEResidualUnit(ResidualUnit):
    """A ResidualUnit whose main path ends with an SE block (Hu et al.,
    2018; Géron, "SENet"): the block rescales each of the ``filters``
    channels by a gate in (0, 1) computed from the whole feature map,
    before the skip connection is added,

        y = ReLU(se(main_layers(x)) + skip_layers(x))

    ``se`` squeezes to ``filters // reduction`` numbers (reduction 16 in
    the paper): 2 * filters * (filters // reduction) weights and
    filters + filters // reduction biases.
    """

    def __init__(self, in_channels, filters, strides=1, reduction=16):
        super().__init__(in_channels, filters, strides)
        squeeze = filters // reduction
        if squeeze < 1:
            raise ValueError(f"SEResidualUnit: filters={filters} // reduction={reduction} leaves no "
                             "channels in the SE bottleneck")
        self.se = nn.SqueezeExcitation(filters, squeeze)

    def forward(self, inputs):
        return self.activation(self.se(self.main_layers(inputs)) + self.skip_layers(inputs))


RESNET34_FILTERS = (64,) * 3 + (128,) * 4 + (256,) * 6 + (512,) * 3


class ResNetBook(nn.Module):
    """The book's ResNet: (N, 3, H, W) -> (N, num_classes).

    ======  =================================  ==============
    Part    Layers                             Output (224)
    ======  =================================  ==============
    stem    7x7 conv, stride 2, BN, ReLU;      64 x 112x112
            3x3 max pool, stride 2             64 x 56x56
    units   one ``unit`` per entry of          512 x 7x7
            ``unit_filters``; a unit whose
            filter count differs from the
            previous one has stride 2
    head    global average pool, dense         num_classes
    ======  =================================  ==============

    The stem has ``unit_filters[0]`` filters (64 for ResNet-34, whose units
    are 3x64, 4x128, 6x256, 3x512). ``unit`` is called as
    ``unit(in_channels, filters, strides)``: ResidualUnit, SEResidualUnit,
    or any block with that signature.
    """

    def __init__(self, unit_filters=RESNET34_FILTERS, num_classes=1000, unit=ResidualUnit):
        super().__init__()
        _check_num_classes("ResNetBook", num_classes)
        unit_filters = tuple(unit_filters)
        if not unit_filters:
            raise ValueError("ResNetBook: unit_filters must list at least one unit")
        self.stem = nn.Sequential(
            nn.Conv2d(3, unit_filters[0], 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(unit_filters[0]),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        units = []
        prev_filters = unit_filters[0]
        for filters in unit_filters:
            strides = 1 if filters == prev_filters else 2
            units.append(unit(prev_filters, filters, strides))
            prev_filters = filters
        self.units = nn.Sequential(*units)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(prev_filters, num_classes),
        )
        _init_resnet(self)

    def forward(self, x):
        _check_images("ResNetBook", x)
        return self.head(self.units(self.stem(x)))


@register_model
def resnet34_book(num_classes=1000):
    """ResNet-34 as Géron's ResidualUnit stack. The same layers as
    torchvision's resnet34 in the same order, hence the same 21,797,672
    parameters at 1000 classes:

    stem 64*3*7*7 + BN 2*64 = 9,536;
    a unit of f filters, stride 1: 2 * (f*f*9 + 2f);
    the first unit of a stage (f from f/2, stride 2): f/2*f*9 + f*f*9 + 4f
    + the skip's f/2*f + 2f;
    3 x 64: 222,720;  4 x 128: 1,116,416;  6 x 256: 6,822,400;
    3 x 512: 13,114,368;  dense 512*1000 + 1000 = 513,000.
    """
    return ResNetBook(RESNET34_FILTERS, num_classes=num_classes, unit=ResidualUnit)


@register_model
def se_resnet34_book(num_classes=1000):
    """ResNet-34 of SEResidualUnits (reduction 16): resnet34_book's
    21,797,672 parameters plus 161,196 in the SE blocks (3 x 580 + 4 x 2,184
    + 6 x 8,464 + 3 x 33,312) = 21,958,868 at 1000 classes."""
    return ResNetBook(RESNET34_FILTERS, num_classes=num_classes, unit=SEResidualUnit)


# ---------------------------------------------------------------------------
# SE-ResNet-50
# ---------------------------------------------------------------------------

class SEBottleneck(nn.Module):
    """ResNet-50's bottleneck unit with an SE block: (N, in_channels, H, W)
    -> (N, 4 planes, H / stride, W / stride),

        y = ReLU(se(bn3(conv3(ReLU(bn2(conv2(ReLU(bn1(conv1(x))))))))) + downsample(x))

    conv1 1x1 to ``planes`` (cheap: it shrinks the channels), conv2 3x3 with
    the stride, conv3 1x1 up to 4 planes; ``se`` squeezes the 4 planes
    channels to 4 planes // reduction. ``downsample`` (1x1 conv + BN) is
    None when x already has the output's shape.

    The stride sits on the 3x3 conv (ResNet "v1.5", torchvision's and
    timm's choice, a little more accurate than the Caffe models of the SE
    paper, which stride the first 1x1 conv). Attribute names are
    torchvision's Bottleneck's plus ``se``, the layout of timm's seresnet50.
    """

    expansion = 4

    def __init__(self, in_channels, planes, stride=1, reduction=16):
        super().__init__()
        out_channels = planes * self.expansion
        squeeze = out_channels // reduction
        if squeeze < 1:
            raise ValueError(f"SEBottleneck: {out_channels} channels // reduction={reduction} leaves no "
                             "channels in the SE bottleneck")
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.se = nn.SqueezeExcitation(out_channels, squeeze)
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.downsample = None

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.se(self.bn3(self.conv3(out)))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class SEResNet(nn.Module):
    """SE-ResNet of bottleneck units: (N, 3, H, W) -> (N, num_classes).

    Stem as ResNet's (7x7/2 conv with ``width`` filters, BN, ReLU, 3x3/2
    max pool), then four stages ``layer1`` .. ``layer4`` of ``layers[i]``
    SEBottlenecks with width, 2 width, 4 width, 8 width planes (stride 2
    from layer2 on), global average pooling and ``fc``. ResNet-50:
    layers (3, 4, 6, 3), width 64: the features end with 2048 channels at
    H/32 x W/32.
    """

    def __init__(self, layers=(3, 4, 6, 3), num_classes=1000, width=64, reduction=16):
        super().__init__()
        _check_num_classes("SEResNet", num_classes)
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"SEResNet: layers must be four positive unit counts, got {layers!r}")
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_channels = width
        for i, blocks in enumerate(layers):
            planes = width * 2 ** i
            units = []
            for j in range(blocks):
                stride = 2 if i > 0 and j == 0 else 1
                units.append(SEBottleneck(in_channels, planes, stride, reduction))
                in_channels = planes * SEBottleneck.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*units))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)
        _init_resnet(self)

    def forward(self, x):
        _check_images("SEResNet", x)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


@register_model
def se_resnet50(num_classes=1000):
    """SE-ResNet-50 (Hu et al., 2018), reduction 16: ResNet-50's 25,557,032
    parameters plus the SE blocks' 2,530,992 (3 x 8,464 + 4 x 33,312 +
    6 x 132,160 + 3 x 526,464) = 28,088,024 at 1000 classes (the paper's
    28.1M)."""
    return SEResNet((3, 4, 6, 3), num_classes=num_classes)


# ---------------------------------------------------------------------------
# Xception
# ---------------------------------------------------------------------------

def _separable_bn(in_channels, out_channels):
    """Keras's SeparableConv2D(out_channels, 3, padding="same",
    use_bias=False) + BatchNormalization: 9 in_channels + in_channels *
    out_channels weights and BN's 2 out_channels (+ 2 out_channels running
    statistics, which Keras counts as non-trainable parameters)."""
    return [nn.SeparableConv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels)]


class XceptionBlock(nn.Module):
    """An entry- or exit-flow block of Xception: (N, in_channels, H, W) ->
    (N, out_channels, ceil(H / 2), ceil(W / 2)),

        main_layers: [ReLU], SepConv(mid), BN, ReLU, SepConv(out), BN,
                     3x3 max pool, stride 2
        skip_layers: 1x1 conv (stride 2, no bias), BN
        y = main_layers(x) + skip_layers(x)

    The first block (block2 in Keras) starts without the ReLU: the stem
    before it already ends with one (``relu_first=False``). The skip path
    sees x before that ReLU.
    """

    def __init__(self, in_channels, mid_channels, out_channels, relu_first=True):
        super().__init__()
        layers = [nn.ReLU()] if relu_first else []
        layers += _separable_bn(in_channels, mid_channels) + [nn.ReLU()]
        layers += _separable_bn(mid_channels, out_channels)
        layers.append(nn.MaxPool2d(3, stride=2, padding=1))
        self.main_layers = nn.Sequential(*layers)
        self.skip_layers = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x):
        return self.main_layers(x) + self.skip_layers(x)


class XceptionMiddleBlock(nn.Module):
    """A middle-flow block: three times (ReLU, SepConv, BN) at a constant
    ``channels`` (728) and size, plus the input (an identity shortcut)."""

    def __init__(self, channels=728):
        super().__init__()
        layers = []
        for _ in range(3):
            layers += [nn.ReLU()] + _separable_bn(channels, channels)
        self.main_layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.main_layers(x) + x


class Xception(nn.Module):
    """Xception (Chollet, 2017; Géron, "Xception"), layer for layer as
    ``keras.applications.Xception``: (N, 3, H, W) -> (N, num_classes).

    ==========  ============================================  ===============
    Flow        Layers                                        Output (299)
    ==========  ============================================  ===============
    entry       3x3 conv 32, stride 2, BN, ReLU               32 x 149x149
                3x3 conv 64, BN, ReLU                         64 x 147x147
                XceptionBlock 64 -> 128 (no leading ReLU)     128 x 74x74
                XceptionBlock 128 -> 256                      256 x 37x37
                XceptionBlock 256 -> 728                      728 x 19x19
    middle      8 x XceptionMiddleBlock(728)                  728 x 19x19
    exit        XceptionBlock 728 -> 728 -> 1024              1024 x 10x10
                SepConv 1536, BN, ReLU                        1536 x 10x10
                SepConv 2048, BN, ReLU                        2048 x 10x10
    head        global average pool, dense                    num_classes
    ==========  ============================================  ===============

    The two stem convs are unpadded ("valid"); the smallest image is 7x7
    (3x3 after the first conv, 1x1 after the second). Every conv is
    bias-free, since a BN follows it; only the dense layer has a bias.

    Parameters, as Keras counts them (its BN running mean and variance are
    "non-trainable parameters"; here they are buffers):
    22,855,952 trainable + 54,528 running statistics = 22,910,480.
    """

    min_size = 7

    def __init__(self, num_classes=1000):
        super().__init__()
        _check_num_classes("Xception", num_classes)
        self.entry_flow = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            XceptionBlock(64, 128, 128, relu_first=False),
            XceptionBlock(128, 256, 256),
            XceptionBlock(256, 728, 728),
        )
        self.middle_flow = nn.Sequential(*[XceptionMiddleBlock(728) for _ in range(8)])
        self.exit_flow = nn.Sequential(
            XceptionBlock(728, 728, 1024),
            *_separable_bn(1024, 1536),
            nn.ReLU(),
            *_separable_bn(1536, 2048),
            nn.ReLU(),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x):
        _check_images("Xception", x, self.min_size)
        x = self.exit_flow(self.middle_flow(self.entry_flow(x)))
        return self.fc(self.avgpool(x).flatten(1))


@register_model
def xception(num_classes=1000):
    """Xception for 3x299x299 images (7x7 and up are accepted):
    22,855,952 parameters at 1000 classes (Keras: 22,910,480 with the BN
    running statistics)."""
    return Xception(num_classes=num_classes)
