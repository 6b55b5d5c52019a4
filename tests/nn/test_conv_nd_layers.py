"""Conv1d, Conv3d, ConvTranspose1d and ConvTranspose3d against torch's
layers: repr, state_dict, outputs and gradients from torch's weights,
every padding mode, torch's initialisation, output_size and bad arguments."""
import math

import numpy
import pytest
import torch

import minicnn as mc
from layer_check import check_layer

# torch warns that it copies the input for asymmetric 'same' padding.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


def t(*shape):
    return mc.tensor(numpy.ones(shape, numpy.float32))


LAYERS = {
    "conv1d": (lambda nn: nn.Conv1d(4, 6, 3, stride=2, padding=1, groups=2), [(2, 4, 9)]),
    "conv1d_same_dilated": (lambda nn: nn.Conv1d(3, 2, 4, padding="same", dilation=2, bias=False), [(2, 3, 9)]),
    "conv1d_reflect": (lambda nn: nn.Conv1d(3, 4, 3, padding=2, padding_mode="reflect"), [(2, 3, 6)]),
    "conv1d_circular": (lambda nn: nn.Conv1d(3, 4, 3, padding=1, padding_mode="circular"), [(1, 3, 5)]),
    "conv3d": (lambda nn: nn.Conv3d(3, 4, 3, padding=1), [(2, 3, 3, 4, 4)]),
    "conv3d_mixed": (lambda nn: nn.Conv3d(4, 2, (1, 3, 2), stride=(1, 2, 1), dilation=(2, 1, 1), groups=2),
                     [(1, 4, 3, 5, 4)]),
    "conv3d_replicate": (lambda nn: nn.Conv3d(2, 3, (3, 1, 3), padding=(1, 0, 2), padding_mode="replicate"),
                         [(1, 2, 3, 3, 4)]),
    "conv3d_reflect_same": (lambda nn: nn.Conv3d(2, 3, 2, padding="same", padding_mode="reflect"),
                            [(1, 2, 3, 4, 3)]),
    "conv3d_circular": (lambda nn: nn.Conv3d(2, 2, 3, stride=2, padding=1, padding_mode="circular"),
                        [(1, 2, 4, 3, 5)]),
    "conv3d_unbatched": (lambda nn: nn.Conv3d(2, 3, 2), [(2, 3, 4, 3)]),
    "conv_transpose1d": (lambda nn: nn.ConvTranspose1d(4, 2, 3, stride=2, padding=1, output_padding=1, groups=2),
                         [(2, 4, 5)]),
    "conv_transpose3d": (lambda nn: nn.ConvTranspose3d(2, 3, (2, 3, 3), stride=(1, 2, 2), padding=1, bias=False),
                         [(1, 2, 3, 3, 4)]),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layers_match_torch(name):
    """Same repr and state_dict keys; same output and gradients from torch's weights."""
    factory, shapes = LAYERS[name]
    check_layer(factory, shapes)


@pytest.mark.parametrize("layer, weight_shape", [
    (lambda nn: nn.Conv1d(6, 4, 5, groups=2), (4, 3, 5)),
    (lambda nn: nn.Conv3d(3, 8, (3, 1, 2)), (8, 3, 3, 1, 2)),
    (lambda nn: nn.ConvTranspose1d(6, 4, 3, groups=2), (6, 2, 3)),
    (lambda nn: nn.ConvTranspose3d(3, 8, 2), (3, 8, 2, 2, 2)),
])
def test_init_is_torchs(layer, weight_shape):
    """Weight and bias uniform in +-1/sqrt(fan_in), fan_in = weight.shape[1] * kernel taps, as torch."""
    mc.manual_seed(0)
    mine = layer(mc.nn)
    assert mine.weight.shape == layer(torch.nn).weight.shape == weight_shape
    bound = 1 / math.sqrt(math.prod(weight_shape[1:]))
    for p in (mine.weight, mine.bias):
        values = p.data
        assert values.dtype == numpy.float32 and numpy.abs(values).max() <= bound
        assert numpy.abs(values).max() > 0.5 * bound       # spread over the range, not squeezed near 0


def test_conv_transpose3d_output_size():
    mine, theirs = mc.nn.ConvTranspose3d(2, 2, 3, stride=2, padding=1), torch.nn.ConvTranspose3d(2, 2, 3, stride=2,
                                                                                                   padding=1)
    mine.load_state_dict(theirs.state_dict())
    x = numpy.random.default_rng(0).standard_normal((1, 2, 2, 3, 3)).astype(numpy.float32)
    y = mine(mc.tensor(x), output_size=(4, 6, 5))
    numpy.testing.assert_allclose(y.data, theirs(torch.tensor(x), output_size=(4, 6, 5)).detach().numpy(),
                                  rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="valid sizes range from \\(3, 5, 5\\) to \\(4, 6, 6\\)"):
        mine(mc.tensor(x), output_size=(3, 7, 5))


@pytest.mark.parametrize("make, error, match", [
    (lambda: mc.nn.Conv3d(3, 4, 3, groups=2), ValueError, "in_channels=3 must be divisible by groups=2"),
    (lambda: mc.nn.Conv3d(3, 4, (3, 3)), TypeError, "kernel_size must be an int or a tuple of 3 ints"),
    (lambda: mc.nn.Conv1d(3, 4, 3, stride=2, padding="same"), ValueError, "'same' is not supported for strided"),
    (lambda: mc.nn.ConvTranspose3d(3, 4, 3, padding_mode="reflect"), ValueError, 'only "zeros" padding_mode'),
    (lambda: mc.nn.ConvTranspose1d(3, 4, 3, padding="same"), ValueError, "padding must be an int or a 1-tuple"),
])
def test_bad_layer_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_layer_refuses_wrong_rank_input():
    with pytest.raises(ValueError, match="ConvTranspose3d: input must be 5-D .* got shape \\(1, 2, 3\\)"):
        mc.nn.ConvTranspose3d(2, 2, 3)(t(1, 2, 3))
    with pytest.raises(ValueError, match="conv3d: input must be 5-D"):
        mc.nn.Conv3d(2, 2, 3)(t(2, 3, 3))


@pytest.mark.parametrize("factory, input_shape", [
    (lambda nn: nn.Conv3d(3, 8, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False), (3, 4, 16, 16)),
    (lambda nn: nn.Conv3d(4, 6, (3, 1, 1), groups=2), (4, 5, 3, 3)),
    (lambda nn: nn.Conv1d(4, 6, 5, stride=2, dilation=2), (4, 20)),
    (lambda nn: nn.ConvTranspose3d(4, 2, 3, stride=2, groups=2), (4, 2, 3, 2)),
    (lambda nn: nn.ConvTranspose1d(3, 5, 4, stride=3), (3, 7)),
])
def test_summary_counts_torchs_multiply_adds(factory, input_shape):
    """mc.summary's multiply-adds are half the FLOPs torch's FlopCounterMode counts."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        factory(torch.nn)(torch.zeros((1,) + input_shape))
    assert mc.summary(factory(mc.nn), input_shape).total_mult_adds * 2 == counter.get_total_flops()
