"""The book's fully convolutional network, FCN-8s style, small enough to
train on a CPU: ``fcn8s_small``.

Long, Shelhamer & Darrell's FCN-8s (2015) turns a VGG classifier into a
segmenter in three moves, all kept here at a fraction of the width:

1. Convolutionalise: five conv stages, each halving H and W with a 2x2
   max pool (pool3 is at 1/8 of the input, pool4 at 1/16, pool5 at 1/32),
   and a conv "classifier" on pool5 that scores every class at every
   position (``score_fr``), instead of Linear layers on one vector.
2. Upsample with *learned* transposed convolutions, initialised to
   bilinear interpolation (a transposed conv with stride s scatters each
   input value through a k x k kernel; the tent kernel below makes that
   exactly bilinear upsampling, and training may improve on it).
3. Skip connections: coarse scores know *what*, early layers know
   *where*. Upsample the pool5 scores 2x and add scores read off pool4
   by a 1x1 conv; upsample that 2x and add pool3's scores; upsample the
   sum 8x to the input. (The 1x1 skip scorers start at zero, as in the
   paper, so training starts from the coarse prediction.)

Notation: (N, C, H, W) input, C = ``in_channels`` (1 for gray, 3 for
RGB); K = ``num_classes``; p3, p4, p5 = the maps after the third,
fourth and fifth pool: (H/8, H/16, H/32, each rounded down).

    pool5 --classifier--> (N, K, p5) --upscore2 x2--> (N, K, p4)
                                              + score_pool4(pool4)
                          --upscore_pool4 x2--> (N, K, p3)
                                              + score_pool3(pool3)
                          --upscore8 x8--> (N, K, H, W)

The paper crops the upsampled maps to align them; here each transposed
conv is padded so it centres its output and is asked for the exact size
of the map it meets (``output_size``), so any H, W >= 32 works, odd ones
included.
"""
import numpy

from ... import nn
from ...autograd import no_grad
from ..registry import register_model
from ._utils import check_image_batch

__all__ = ["FCN8sSmall", "fcn8s_small", "bilinear_kernel"]


def bilinear_kernel(channels, kernel_size):
    """(channels, channels, k, k) weights of a transposed conv that
    upsamples each channel on its own by bilinear interpolation (the
    tent 1 - |i - centre| / factor, outer product with itself)."""
    factor = (kernel_size + 1) // 2
    centre = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    tent = 1 - numpy.abs(numpy.arange(kernel_size) - centre) / factor
    weight = numpy.zeros((channels, channels, kernel_size, kernel_size))
    weight[numpy.arange(channels), numpy.arange(channels)] = numpy.outer(tent, tent)
    return weight


def _stage(in_channels, out_channels):
    """Two 3x3 conv -> BN -> ReLU, then a 2x2 max pool: (N, in, h, w) ->
    (N, out, h/2, w/2), rounded down."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(),
        nn.MaxPool2d(2),
    )


class FCN8sSmall(nn.Module):
    """FCN-8s (module docstring) with stage widths ``widths`` (five
    ints): (N, in_channels, H, W) -> (N, num_classes, H, W) scores
    (logits; a plain Tensor, not torchvision's {"out": ...} dict).
    H and W must be at least 32 (five halvings)."""

    min_size = 32

    def __init__(self, num_classes=11, in_channels=3, widths=(16, 32, 64, 128, 128), classifier_width=128):
        super().__init__()
        if len(widths) != 5:
            raise ValueError(f"FCN8sSmall: widths must give the channels of 5 stages, got {widths}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        channels = (in_channels,) + tuple(widths)
        self.stages = nn.ModuleList([_stage(channels[i], channels[i + 1]) for i in range(5)])
        self.classifier = nn.Sequential(
            nn.Conv2d(widths[4], classifier_width, 3, padding=1, bias=False), nn.BatchNorm2d(classifier_width),
            nn.ReLU(), nn.Dropout2d(0.1),
            nn.Conv2d(classifier_width, num_classes, 1),
        )
        self.score_pool4 = nn.Conv2d(widths[3], num_classes, 1)
        self.score_pool3 = nn.Conv2d(widths[2], num_classes, 1)
        # Kernel 2s with padding s/2 centres a stride-s upsampling: the
        # output is s times the input, plus at most s - 1 extra rows asked
        # for through output_size.
        self.upscore2 = nn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, padding=1, bias=False)
        self.upscore_pool4 = nn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, padding=1, bias=False)
        self.upscore8 = nn.ConvTranspose2d(num_classes, num_classes, 16, stride=8, padding=4, bias=False)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for scorer in (self.score_pool4, self.score_pool3):
            nn.init.zeros_(scorer.weight)
            nn.init.zeros_(scorer.bias)
        with no_grad():
            for up in (self.upscore2, self.upscore_pool4, self.upscore8):
                up.weight.copy_(bilinear_kernel(num_classes, up.kernel_size[0]).astype(up.weight.dtype))

    def forward(self, x):
        check_image_batch(self, x, self.in_channels)
        H, W = x.shape[-2:]
        if min(H, W) < self.min_size:
            raise ValueError(f"FCN8sSmall: input of shape {tuple(x.shape)} is too small; H and W must be at least "
                             f"{self.min_size} (five 2x2 poolings)")
        pools = []
        for stage in self.stages:
            x = stage(x)
            pools.append(x)
        pool3, pool4, pool5 = pools[2], pools[3], pools[4]
        score = self.upscore2(self.classifier(pool5), output_size=pool4.shape[-2:])
        score = score + self.score_pool4(pool4)
        score = self.upscore_pool4(score, output_size=pool3.shape[-2:])
        score = score + self.score_pool3(pool3)
        return self.upscore8(score, output_size=(H, W))


@register_model
def fcn8s_small(*, weights=None, progress=True, **kwargs):
    """The book's FCN-8s (module docstring), 0.8M parameters with the
    default widths. ``kwargs`` go to FCN8sSmall: num_classes (default 11:
    the background and the ten digits of ``mc.datasets.digit_scenes``),
    in_channels (3 or 1), widths, classifier_width."""
    from .._layers import _check_weights

    _check_weights(weights, "fcn8s_small")
    return FCN8sSmall(**kwargs)
