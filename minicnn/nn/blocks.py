"""Building blocks of modern CNNs from Geron's *Hands-On Machine Learning*
(chapter 14), as layers:

* SeparableConv2d: a depthwise conv (one filter per input channel: spatial
  patterns) then a 1x1 pointwise conv (mixing channels), Keras's
  ``SeparableConv2D`` (Xception). It has far fewer parameters than a full
  conv: C_in K K m + C_in m C_out instead of C_in K K C_out.
* DepthPool: max pooling along the channels instead of over space, so the
  net can learn invariance to whatever separates those channels (e.g.
  rotations of one pattern).
* SqueezeExcitation: the SE block of SENet: a per-channel gate in (0, 1)
  computed from the globally pooled feature map, with torchvision's
  signature and names (``fc1``, ``fc2``), so its state_dict matches
  ``torchvision.ops.SqueezeExcitation``.
"""
from .. import functional as F
from ._utils import check_positive
from .activation import ReLU, Sigmoid
from .conv import Conv2d
from .module import Module
from .pooling import AdaptiveAvgPool2d


class SeparableConv2d(Module):
    """Depthwise separable convolution: (N, C_in, H, W) -> (N, C_out, OH, OW).

    ``depthwise``: Conv2d(C_in, C_in * depth_multiplier, kernel_size,
    groups=C_in, no bias), where stride, padding, dilation and padding_mode
    apply; ``pointwise``: Conv2d(C_in * depth_multiplier, C_out, 1) with the
    block's only bias, as in Keras.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 depth_multiplier=1, bias=True, padding_mode="zeros", device=None, dtype=None):
        super().__init__()
        check_positive(depth_multiplier, "depth_multiplier", "SeparableConv2d")
        check_positive(in_channels, "in_channels", "SeparableConv2d")
        mid = in_channels * depth_multiplier
        self.depthwise = Conv2d(in_channels, mid, kernel_size, stride, padding, dilation, groups=in_channels,
                                bias=False, padding_mode=padding_mode, device=device, dtype=dtype)
        self.pointwise = Conv2d(mid, out_channels, 1, bias=bias, device=device, dtype=dtype)

    def forward(self, input):
        return self.pointwise(self.depthwise(input))


class DepthPool(Module):
    """Max over groups of ``kernel_size`` neighbouring channels:
    (N, C, H, W) -> (N, C // kernel_size, H, W) with the default stride
    (= kernel_size; Geron's ``pool_size``). C must be covered exactly."""

    def __init__(self, kernel_size=2, stride=None):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size

    def forward(self, input):
        return F.depth_max_pool2d(input, self.kernel_size, self.stride)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class SqueezeExcitation(Module):
    """Squeeze-and-excitation: y = x * gate, with

        gate = scale_activation(fc2(activation(fc1(avgpool(x)))))

    of shape (N, C, 1, 1): global average pooling (squeeze) to C numbers,
    a bottleneck of ``squeeze_channels`` (1x1 convs fc1 and fc2), and a
    sigmoid (excitation) that rescales each channel of x.
    ``activation`` and ``scale_activation`` are Module classes (or any
    callables returning a Module), as in torchvision.
    """

    def __init__(self, input_channels, squeeze_channels, activation=ReLU, scale_activation=Sigmoid):
        super().__init__()
        self.avgpool = AdaptiveAvgPool2d(1)
        self.fc1 = Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = Conv2d(squeeze_channels, input_channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def _scale(self, input):
        scale = self.avgpool(input)
        scale = self.fc1(scale)
        scale = self.activation(scale)
        scale = self.fc2(scale)
        return self.scale_activation(scale)

    def forward(self, input):
        return self._scale(input) * input
