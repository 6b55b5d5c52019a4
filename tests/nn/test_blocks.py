"""SeparableConv2d, DepthPool and SqueezeExcitation against torch
references built from torch layers (and torchvision's SE block)."""
import types

import numpy
import pytest
import torch
import torchvision

import minicnn as mc
from minicnn import nn
from layer_check import check_layer


class TorchSeparableConv2d(torch.nn.Module):
    """The reference: the two torch convs SeparableConv2d stands for."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 depth_multiplier=1, bias=True, padding_mode="zeros"):
        super().__init__()
        mid = in_channels * depth_multiplier
        self.depthwise = torch.nn.Conv2d(in_channels, mid, kernel_size, stride, padding, dilation,
                                         groups=in_channels, bias=False, padding_mode=padding_mode)
        self.pointwise = torch.nn.Conv2d(mid, out_channels, 1, bias=bias)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class TorchDepthPool(torch.nn.Module):
    """Max over groups of k consecutive channels (non-overlapping)."""

    def __init__(self, kernel_size=2):
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x):
        n, c, h, w = x.shape
        return x.reshape(n, c // self.kernel_size, self.kernel_size, h, w).amax(2)


TORCH_BLOCKS = types.SimpleNamespace(
    SeparableConv2d=TorchSeparableConv2d, DepthPool=TorchDepthPool,
    SqueezeExcitation=torchvision.ops.SqueezeExcitation, ReLU=torch.nn.ReLU, SiLU=torch.nn.SiLU,
    Hardsigmoid=torch.nn.Hardsigmoid)


def reference(nn_module):
    """torch.nn -> the namespace of torch references; mc.nn -> itself."""
    return TORCH_BLOCKS if nn_module is torch.nn else nn_module


@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(stride=2, padding=1, depth_multiplier=2, bias=False),
    dict(padding="same", dilation=2, padding_mode="reflect"),
])
def test_separable_conv2d_matches_two_torch_convs(kwargs):
    check_layer(lambda nn: reference(nn).SeparableConv2d(3, 5, 3, **kwargs), [(2, 3, 7, 6)], compare_repr=False)


def test_separable_conv2d_structure():
    layer = nn.SeparableConv2d(4, 8, 3, depth_multiplier=2)
    assert list(layer.state_dict()) == ["depthwise.weight", "pointwise.weight", "pointwise.bias"]
    assert layer.depthwise.weight.shape == (8, 1, 3, 3)
    assert layer.pointwise.weight.shape == (8, 8, 1, 1)
    assert sum(p.numel() for p in layer.parameters()) == 4 * 2 * 9 + 8 * 8 + 8


@pytest.mark.parametrize("kernel_size, shape", [(2, (2, 6, 3, 4)), (3, (1, 6, 2, 2)), (1, (2, 3, 2, 2))])
def test_depth_pool_matches_grouped_channel_max(kernel_size, shape):
    check_layer(lambda nn: reference(nn).DepthPool(kernel_size), [shape], compare_repr=False)


def test_depth_pool_repr_and_errors():
    assert repr(nn.DepthPool(3)) == "DepthPool(kernel_size=3, stride=3)"
    with pytest.raises(ValueError, match=r"channels of input shape \(1, 5, 2, 2\) are not covered"):
        nn.DepthPool(2)(mc.randn(1, 5, 2, 2))


@pytest.mark.parametrize("factory, tolerance", [
    (lambda nn: reference(nn).SqueezeExcitation(6, 2), {}),
    # torch computes hardsigmoid's backward with the float32 constant 1/6.
    (lambda nn: reference(nn).SqueezeExcitation(4, 3, activation=reference(nn).SiLU,
                                                scale_activation=reference(nn).Hardsigmoid),
     dict(rtol=1e-7, atol=1e-8)),
])
def test_squeeze_excitation_matches_torchvision(factory, tolerance):
    # Same repr, state_dict keys (avgpool, fc1, fc2, ...) and numbers as torchvision's block.
    mine, theirs = check_layer(factory, [(2, factory(nn).fc1.in_channels, 5, 4)], **tolerance)
    assert [name for name, _ in mine.named_modules()] == [name for name, _ in theirs.named_modules()]


def test_squeeze_excitation_loads_a_torchvision_state_dict_in_float32():
    theirs = torchvision.ops.SqueezeExcitation(8, 2)
    mine = nn.SqueezeExcitation(8, 2)
    mine.load_state_dict(theirs.state_dict())
    x = numpy.random.default_rng(0).standard_normal((2, 8, 3, 3)).astype(numpy.float32)
    numpy.testing.assert_allclose(mine(mc.tensor(x)).detach().numpy(),
                                  theirs(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-6)
