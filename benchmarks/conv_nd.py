"""The N-dimensional convolution cases: conv3d on a video clip and conv1d
on a long signal, minicnn against torch (conventions as in ``cases.py``).

* conv3d: a 3x3x3 layer of a 3-D ResNet's second stage (R3D-18 at 16
  frames of 112x112 has 64 channels on 8x28x28 after its first
  downsampling): (4, 64, 8, 28, 28) -> 64, padding 1.
* conv1d: a layer of an audio or time-series CNN, (32, 128, 1000) -> 128,
  kernel 3, padding 1.

FLOPs as for conv2d: 2 * N * O * (output positions) * C * (kernel taps)
forward, 3x that for fwd+bwd.
"""
import math

import torch.nn.functional as TF

import minicnn.nn.functional as F
from benchmarks.cases import Case, _data, _op_case

# (input shape, out channels, kernel size, padding)
CONV3D_LAYER = ((4, 64, 8, 28, 28), 64, 3, 1)
CONV1D_LAYER = ((32, 128, 1000), 128, 3, 1)


def _flops(layer):
    """Forward FLOPs of a stride-1 'same' convolution."""
    shape, o, k, _ = layer
    n, c, spatial = shape[0], shape[1], shape[2:]
    return 2 * n * o * math.prod(spatial) * c * k ** len(spatial)


def _case(layer, mine, theirs, backward, device):
    shape, o, k, p = layer
    c, rank = shape[1], len(shape) - 2
    x, w = _data(*shape), _data(o, c, *(k,) * rank) * (2 / (c * k ** rank)) ** 0.5
    return _op_case([x, w], lambda x, w: mine(x, w, padding=p), lambda x, w: theirs(x, w, padding=p), backward,
                    device)


def _name(layer):
    shape, o, k, p = layer
    rank = len(shape) - 2
    return f"{'x'.join(map(str, shape))} -> {o}, {'x'.join([str(k)] * rank)}/1 pad {p}"


def conv_nd_cases(device="cpu"):
    """conv3d and conv1d, forward and forward + backward."""
    cases = []
    for group, layer, mine, theirs in (("conv3d", CONV3D_LAYER, F.conv3d, TF.conv3d),
                                       ("conv1d", CONV1D_LAYER, F.conv1d, TF.conv1d)):
        for backward in (False, True):
            cases.append(Case(group, f"{_name(layer)} {'fwd+bwd' if backward else 'fwd'}",
                              lambda layer=layer, mine=mine, theirs=theirs, backward=backward:
                              _case(layer, mine, theirs, backward, device),
                              flops=_flops(layer) * (3 if backward else 1), quick=backward))
    return cases
