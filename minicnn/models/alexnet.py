"""AlexNet (Krizhevsky, Sutskever & Hinton, "ImageNet Classification with
Deep Convolutional Neural Networks", 2012), in torchvision's version.

The network that started the deep-learning era of computer vision: five
convolutions (a large 11x11 stride-4 one first, to shrink the image
fast), three max pools and three fully connected layers with dropout,
all with ReLU, which trained several times faster than tanh units.

torchvision follows the "one weird trick" variant (Krizhevsky, 2014): 64,
192, 384, 256, 256 channels on one GPU, no local response normalization,
and an adaptive average pool to 6x6 so inputs of any size from 63x63 up
give the classifier its 256 * 6 * 6 features.

Notation: N images, 3 x H x W input with H, W >= 63.
"""
from .. import functional as F
from .. import nn
from ._layers import _check_weights
from .registry import register_model

__all__ = ["AlexNet", "alexnet"]


class AlexNet(nn.Module):
    """``features``: (N, 3, H, W) -> (N, 256, h, w) (6x6 for 224x224
    input, 1x1 for 63x63); ``avgpool``: -> (N, 256, 6, 6); ``classifier``: -> (N, num_classes).

    ``dropout`` is the drop probability of the two dropout layers.
    Initialisation: the layers' own defaults (as in torchvision).
    """

    def __init__(self, num_classes=1000, dropout=0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != 3 or min(x.shape[2:]) < 63:
            raise ValueError(f"AlexNet expects input of shape (N, 3, H, W) with H, W >= 63, got {x.shape}")
        x = self.avgpool(self.features(x))
        return self.classifier(F.flatten(x, 1))


@register_model
def alexnet(*, weights=None, progress=True, **kwargs):
    """AlexNet, 61.1M parameters; ``kwargs`` (num_classes, dropout) go to
    ``AlexNet``. ``progress`` is accepted for torchvision compatibility."""
    _check_weights(weights, "alexnet")
    return AlexNet(**kwargs)
