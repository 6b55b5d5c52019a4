"""LeNet-5 (LeCun et al., 1998), as laid out in Géron, *Hands-On Machine
Learning*, ch. 14, table 14-1.

Notation: N images, 1 channel, 32x32 pixels.

=====  ===============  ====  ===========  ======  ==========
Layer  Type             Maps  Output size  Kernel  Activation
=====  ===============  ====  ===========  ======  ==========
In     input              1   32x32
C1     convolution        6   28x28        5x5     tanh
S2     average pooling    6   14x14        2x2
C3     convolution       16   10x10        5x5     tanh
S4     average pooling   16   5x5          2x2
C5     convolution      120   1x1          5x5     tanh
F6     fully connected        84                   tanh
Out    fully connected        10
=====  ===============  ====  ===========  ======  ==========

Differences from the 1998 network, as in most modern versions: the
pooling layers average without the original's trainable scale, bias and
squashing; C3 sees all six S2 maps (the original wired each C3 map to a
subset); and the output layer gives logits for a softmax cross-entropy
instead of the original's radial-basis-function units.
"""
from .. import nn
from .registry import register_model


class LeNet5(nn.Module):
    """``features``: C1 to C5, (N, 1, 32, 32) -> (N, 120, 1, 1);
    ``classifier``: F6 and Out, -> (N, num_classes) logits."""

    def __init__(self, num_classes=10):
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
            raise ValueError(f"LeNet5: num_classes must be a positive int, got {num_classes!r}")
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5),      # C1: 32x32 -> 28x28
            nn.Tanh(),
            nn.AvgPool2d(kernel_size=2),         # S2: -> 14x14
            nn.Conv2d(6, 16, kernel_size=5),     # C3: -> 10x10
            nn.Tanh(),
            nn.AvgPool2d(kernel_size=2),         # S4: -> 5x5
            nn.Conv2d(16, 120, kernel_size=5),   # C5: -> 1x1
            nn.Tanh(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),                        # (N, 120, 1, 1) -> (N, 120)
            nn.Linear(120, 84),                  # F6
            nn.Tanh(),
            nn.Linear(84, num_classes),          # Out
        )

    def forward(self, x):
        if x.ndim != 4 or x.shape[1:] != (1, 32, 32):
            raise ValueError(f"LeNet5 expects input of shape (N, 1, 32, 32), got {x.shape}")
        return self.classifier(self.features(x))


@register_model
def lenet5(num_classes=10):
    """A freshly initialised LeNet-5 for 1x32x32 images."""
    return LeNet5(num_classes=num_classes)
