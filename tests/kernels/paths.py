"""The conv strategy's path for a 2-D geometry, as the rule tests ask."""
import numpy

from minicnn.functional import conv_strategy


def path(N, C, O, G, kernel, stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), out_size=(28, 28),
         direction="forward", dtype=numpy.float32):
    """``conv_path``'s name for N images of C channels -> O in G groups;
    the input gradient's convolution is taken to output out_size * stride."""
    size = out_size if direction == "forward" else (out_size[0] * stride[0], out_size[1] * stride[1])
    return conv_strategy.conv_path(numpy, N, C, G, kernel, stride, padding, dilation, out_size, size, direction,
                                   O, dtype)[0]
