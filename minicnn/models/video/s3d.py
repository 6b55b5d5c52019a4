"""S3D (Xie et al., "Rethinking Spatiotemporal Feature Learning:
Speed-Accuracy Trade-offs in Video Classification", 2018) as torchvision
builds it: ``s3d`` with torchvision's arguments, module names and
state_dict keys.

Notation: N clips of T frames, (N, 3, T, H, W) input. S3D is Inception-v1
(GoogLeNet) inflated to video with *separable* 3-D convolutions: every
kxkxk convolution becomes a 1xkxk spatial one followed by a kx1x1 temporal
one (``TemporalSeparableConv``), each with BatchNorm3d and ReLU. The
inception blocks (``SepInceptionBlock3D``) have GoogLeNet's four
branches: a 1x1x1 conv; 1x1x1 then a separable 3x3x3; the same with
other widths; a 3x3x3 max pool then 1x1x1; concatenated along channels.

The features divide T by 8 and H, W by 32; the head is a (2, 7, 7) average
pool with stride 1, dropout and a 1x1x1 conv to ``num_classes`` (a
classifier at every remaining position), averaged over (T, H, W). So the
clip must give at least (2, 7, 7) features: 224 x 224 frames and
T >= 13 (torchvision's weights meta says 14, its evaluation 16 frames).

BatchNorm3d here has eps 1e-3 and momentum 1e-3 (torchvision's default
``norm_layer``). The builder takes torchvision's arguments: ``weights``
must be None (minicnn downloads nothing), ``progress`` is ignored, and
every other keyword goes to ``S3D``.
"""
import functools

from ... import functional as F
from ... import nn
from .._layers import Conv2dNormActivation, _check_weights
from ..registry import register_model
from .resnet import check_clip

__all__ = ["S3D", "s3d"]


class Conv3dNormActivation(Conv2dNormActivation):
    """Conv3d, then ``norm_layer`` (default BatchNorm3d), then
    ``activation_layer`` (default ReLU): torchvision.ops.misc's unit, the
    Conv2dNormActivation of clips (children "0", "1", "2")."""

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=None, groups=1,
                 norm_layer=nn.BatchNorm3d, activation_layer=nn.ReLU, dilation=1, inplace=True, bias=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, groups, norm_layer,
                         activation_layer, dilation, inplace, bias, conv_layer=nn.Conv3d)


class TemporalSeparableConv(nn.Sequential):
    """A kxkxk convolution factored: 1xkxk over space, then kx1x1 over
    time, each with ``norm_layer`` and ReLU: (N, in_planes, T, H, W) ->
    (N, out_planes, T/stride, H/stride, W/stride)."""

    def __init__(self, in_planes, out_planes, kernel_size, stride, padding, norm_layer):
        super().__init__(
            Conv3dNormActivation(in_planes, out_planes, kernel_size=(1, kernel_size, kernel_size),
                                 stride=(1, stride, stride), padding=(0, padding, padding), bias=False,
                                 norm_layer=norm_layer),
            Conv3dNormActivation(out_planes, out_planes, kernel_size=(kernel_size, 1, 1),
                                 stride=(stride, 1, 1), padding=(padding, 0, 0), bias=False,
                                 norm_layer=norm_layer),
        )


class SepInceptionBlock3D(nn.Module):
    """GoogLeNet's inception block with separable 3-D convolutions:
    (N, in_planes, T, H, W) -> (N, b0_out + b1_out + b2_out + b3_out,
    T, H, W)."""

    def __init__(self, in_planes, b0_out, b1_mid, b1_out, b2_mid, b2_out, b3_out, norm_layer):
        super().__init__()
        self.branch0 = Conv3dNormActivation(in_planes, b0_out, kernel_size=1, stride=1, norm_layer=norm_layer)
        self.branch1 = nn.Sequential(
            Conv3dNormActivation(in_planes, b1_mid, kernel_size=1, stride=1, norm_layer=norm_layer),
            TemporalSeparableConv(b1_mid, b1_out, kernel_size=3, stride=1, padding=1, norm_layer=norm_layer),
        )
        self.branch2 = nn.Sequential(
            Conv3dNormActivation(in_planes, b2_mid, kernel_size=1, stride=1, norm_layer=norm_layer),
            TemporalSeparableConv(b2_mid, b2_out, kernel_size=3, stride=1, padding=1, norm_layer=norm_layer),
        )
        self.branch3 = nn.Sequential(
            nn.MaxPool3d(kernel_size=(3, 3, 3), stride=1, padding=1),
            Conv3dNormActivation(in_planes, b3_out, kernel_size=1, stride=1, norm_layer=norm_layer),
        )

    def forward(self, x):
        return F.cat((self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)), 1)


class S3D(nn.Module):
    """torchvision's ``S3D(num_classes=400, dropout=0.2, norm_layer=None)``:
    (N, 3, T, H, W) clips -> (N, num_classes) logits. ``norm_layer``
    None is BatchNorm3d with eps 1e-3 and momentum 1e-3. (torchvision
    leaves the weights at the layers' own initialisation, and so does
    this.)"""

    def __init__(self, num_classes=400, dropout=0.2, norm_layer=None):
        super().__init__()
        if norm_layer is None:
            norm_layer = functools.partial(nn.BatchNorm3d, eps=0.001, momentum=0.001)
        self.features = nn.Sequential(
            TemporalSeparableConv(3, 64, 7, 2, 3, norm_layer),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            Conv3dNormActivation(64, 64, kernel_size=1, stride=1, norm_layer=norm_layer),
            TemporalSeparableConv(64, 192, 3, 1, 1, norm_layer),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            SepInceptionBlock3D(192, 64, 96, 128, 16, 32, 32, norm_layer),
            SepInceptionBlock3D(256, 128, 128, 192, 32, 96, 64, norm_layer),
            nn.MaxPool3d(kernel_size=(3, 3, 3), stride=(2, 2, 2), padding=(1, 1, 1)),
            SepInceptionBlock3D(480, 192, 96, 208, 16, 48, 64, norm_layer),
            SepInceptionBlock3D(512, 160, 112, 224, 24, 64, 64, norm_layer),
            SepInceptionBlock3D(512, 128, 128, 256, 24, 64, 64, norm_layer),
            SepInceptionBlock3D(512, 112, 144, 288, 32, 64, 64, norm_layer),
            SepInceptionBlock3D(528, 256, 160, 320, 32, 128, 128, norm_layer),
            nn.MaxPool3d(kernel_size=(2, 2, 2), stride=(2, 2, 2), padding=(0, 0, 0)),
            SepInceptionBlock3D(832, 256, 160, 320, 32, 128, 128, norm_layer),
            SepInceptionBlock3D(832, 384, 192, 384, 48, 128, 128, norm_layer),
        )
        self.avgpool = nn.AvgPool3d(kernel_size=(2, 7, 7), stride=1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Conv3d(1024, num_classes, kernel_size=1, stride=1, bias=True),
        )

    def forward(self, x):
        check_clip(x, "S3D")
        x = self.features(x)
        x = self.avgpool(x)
        x = self.classifier(x)
        return x.mean(dim=(2, 3, 4))


@register_model
def s3d(*, weights=None, progress=True, **kwargs):
    """S3D (8.3M parameters), for clips of 224 x 224 frames."""
    _check_weights(weights, "s3d")
    return S3D(**kwargs)
