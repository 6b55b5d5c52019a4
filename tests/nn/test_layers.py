"""Every layer against torch.nn with copied weights: repr, state_dict keys,
output, and the gradients of the input and of every parameter (float64,
rtol 1e-10), plus float32 spot checks and the layers' argument checks."""
import numpy
import pytest
import torch

import minicnn as mc
from minicnn import nn
from layer_check import check_layer

# torch warns that it copies the input for asymmetric 'same' padding.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

# id: (factory of nn -> layer, input shapes, training mode)
LAYERS = {
    "linear": (lambda nn: nn.Linear(5, 4), [(3, 5)], True),
    "linear_no_bias_3d": (lambda nn: nn.Linear(5, 4, bias=False), [(2, 3, 5)], True),
    "conv": (lambda nn: nn.Conv2d(4, 6, 3), [(2, 4, 7, 6)], True),
    "conv_stride_pad": (lambda nn: nn.Conv2d(4, 6, 3, stride=2, padding=1), [(2, 4, 7, 7)], True),
    "conv_groups_dilation_same": (
        lambda nn: nn.Conv2d(4, 6, (3, 2), padding="same", dilation=2, groups=2, bias=False), [(2, 4, 7, 6)], True),
    "conv_valid_pair": (lambda nn: nn.Conv2d(3, 2, (2, 3), stride=(2, 1), padding="valid"), [(1, 3, 6, 7)], True),
    "conv_reflect": (lambda nn: nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), [(2, 3, 5, 6)], True),
    "conv_replicate": (lambda nn: nn.Conv2d(3, 4, 3, padding=(2, 1), padding_mode="replicate"), [(2, 3, 5, 6)], True),
    "conv_circular_strided": (
        lambda nn: nn.Conv2d(3, 4, 3, stride=2, padding=1, padding_mode="circular"), [(2, 3, 5, 6)], True),
    "conv_same_reflect_even": (
        lambda nn: nn.Conv2d(2, 3, 4, padding="same", padding_mode="reflect"), [(1, 2, 6, 6)], True),
    "conv_unbatched": (lambda nn: nn.Conv2d(2, 3, 3, padding=1), [(2, 5, 5)], True),
    "conv_transpose": (lambda nn: nn.ConvTranspose2d(4, 6, 3), [(2, 4, 4, 5)], True),
    "conv_transpose_stride_outpad": (
        lambda nn: nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1), [(2, 4, 4, 5)], True),
    "conv_transpose_groups_dilation": (
        lambda nn: nn.ConvTranspose2d(4, 6, (2, 3), stride=(1, 2), groups=2, dilation=2, bias=False),
        [(1, 4, 3, 4)], True),
    "batchnorm1d_2d": (lambda nn: nn.BatchNorm1d(4), [(6, 4)], True),
    "batchnorm1d_3d": (lambda nn: nn.BatchNorm1d(4, momentum=0.3), [(5, 4, 3)], True),
    "batchnorm2d": (lambda nn: nn.BatchNorm2d(3), [(4, 3, 5, 5)], True),
    "batchnorm2d_eval": (lambda nn: nn.BatchNorm2d(3), [(4, 3, 5, 5)], False),
    "batchnorm2d_momentum_none": (lambda nn: nn.BatchNorm2d(3, momentum=None), [(4, 3, 2, 3)], True),
    "batchnorm2d_no_affine": (lambda nn: nn.BatchNorm2d(3, affine=False, eps=1e-3), [(4, 3, 2, 3)], True),
    "batchnorm2d_no_bias": (lambda nn: nn.BatchNorm2d(3, bias=False), [(4, 3, 2, 3)], True),
    "batchnorm2d_untracked_eval": (
        lambda nn: nn.BatchNorm2d(3, track_running_stats=False), [(4, 3, 2, 3)], False),
    "layernorm": (lambda nn: nn.LayerNorm(5), [(3, 4, 5)], True),
    "layernorm_2d_shape": (lambda nn: nn.LayerNorm((4, 5), eps=1e-3), [(3, 4, 5)], True),
    "layernorm_no_affine": (lambda nn: nn.LayerNorm([5], elementwise_affine=False), [(3, 5)], True),
    "layernorm_no_bias": (lambda nn: nn.LayerNorm(5, bias=False), [(3, 5)], True),
    "groupnorm": (lambda nn: nn.GroupNorm(2, 4), [(2, 4, 3, 3)], True),
    "groupnorm_no_affine": (lambda nn: nn.GroupNorm(3, 6, affine=False), [(2, 6, 2, 2)], True),
    "local_response_norm": (lambda nn: nn.LocalResponseNorm(3), [(2, 5, 4, 4)], True),
    "local_response_norm_even": (lambda nn: nn.LocalResponseNorm(2, alpha=0.1, beta=0.5, k=2.0), [(2, 5, 3)], True),
    "maxpool": (lambda nn: nn.MaxPool2d(2), [(2, 3, 6, 6)], True),
    "maxpool_stride_pad_ceil": (lambda nn: nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), [(2, 3, 6, 7)], True),
    "maxpool_dilation": (lambda nn: nn.MaxPool2d((2, 3), dilation=2), [(1, 2, 7, 8)], True),
    "avgpool": (lambda nn: nn.AvgPool2d(2), [(2, 3, 6, 6)], True),
    "avgpool_exclude_pad": (
        lambda nn: nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False, ceil_mode=True), [(2, 3, 6, 7)], True),
    "avgpool_divisor": (lambda nn: nn.AvgPool2d((2, 3), divisor_override=4), [(1, 2, 6, 6)], True),
    "adaptive_avgpool": (lambda nn: nn.AdaptiveAvgPool2d((2, 3)), [(2, 3, 5, 7)], True),
    "adaptive_avgpool_global": (lambda nn: nn.AdaptiveAvgPool2d(1), [(2, 3, 5, 7)], True),
    "adaptive_avgpool_none": (lambda nn: nn.AdaptiveAvgPool2d((None, 2)), [(2, 3, 5, 7)], True),
    "adaptive_maxpool": (lambda nn: nn.AdaptiveMaxPool2d((3, 2)), [(2, 3, 7, 5)], True),
    "dropout_eval": (lambda nn: nn.Dropout(0.3), [(4, 5)], False),
    "dropout_p0": (lambda nn: nn.Dropout(0.0), [(4, 5)], True),
    "dropout2d_eval": (lambda nn: nn.Dropout2d(), [(2, 3, 4, 4)], False),
    "relu": (lambda nn: nn.ReLU(), [(3, 4)], True),
    "relu_inplace": (lambda nn: nn.ReLU(inplace=True), [(3, 4)], True),
    "relu6": (lambda nn: nn.ReLU6(), [(3, 4)], True),
    "leaky_relu": (lambda nn: nn.LeakyReLU(0.2), [(3, 4)], True),
    "leaky_relu_inplace": (lambda nn: nn.LeakyReLU(inplace=True), [(3, 4)], True),
    "elu": (lambda nn: nn.ELU(alpha=0.5), [(3, 4)], True),
    "sigmoid": (lambda nn: nn.Sigmoid(), [(3, 4)], True),
    "tanh": (lambda nn: nn.Tanh(), [(3, 4)], True),
    "hardsigmoid": (lambda nn: nn.Hardsigmoid(), [(3, 4)], True),
    "hardswish": (lambda nn: nn.Hardswish(), [(3, 4)], True),
    "silu": (lambda nn: nn.SiLU(), [(3, 4)], True),
    "gelu": (lambda nn: nn.GELU(), [(3, 4)], True),
    "gelu_tanh": (lambda nn: nn.GELU(approximate="tanh"), [(3, 4)], True),
    "softmax": (lambda nn: nn.Softmax(dim=1), [(3, 4)], True),
    "log_softmax": (lambda nn: nn.LogSoftmax(dim=-1), [(2, 3, 4)], True),
    "flatten": (lambda nn: nn.Flatten(), [(2, 3, 4)], True),
    "flatten_dims": (lambda nn: nn.Flatten(0, 1), [(2, 3, 4)], True),
    "unflatten": (lambda nn: nn.Unflatten(1, (2, 6)), [(3, 12)], True),
    "unflatten_inferred": (lambda nn: nn.Unflatten(-1, (-1, 3)), [(3, 2, 12)], True),
    "identity": (lambda nn: nn.Identity(3, key="ignored"), [(3, 4)], True),
    "upsample_nearest": (lambda nn: nn.Upsample(scale_factor=2), [(2, 3, 3, 4)], True),
    "upsample_bilinear_size": (lambda nn: nn.Upsample(size=(5, 7), mode="bilinear"), [(2, 3, 3, 4)], True),
    "upsample_bilinear_corners": (
        lambda nn: nn.Upsample(scale_factor=(2, 1.5), mode="bilinear", align_corners=True), [(1, 2, 3, 4)], True),
    "sequential": (lambda nn: nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
                                            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(12, 5), nn.LogSoftmax(1)),
                   [(4, 2, 4, 4)], True),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_matches_torch_float64(name):
    factory, shapes, train = LAYERS[name]
    # torch computes hardsigmoid's backward with the float32 constant 1/6.
    rtol = 1e-7 if name == "hardsigmoid" else None
    check_layer(factory, shapes, train=train, rtol=rtol)


@pytest.mark.parametrize("name", ["linear", "conv_stride_pad", "conv_transpose_stride_outpad", "batchnorm2d",
                                  "layernorm", "groupnorm", "maxpool", "avgpool", "sequential"])
def test_layer_matches_torch_float32(name):
    factory, shapes, train = LAYERS[name]
    check_layer(factory, shapes, dtype=numpy.float32, rtol=1e-4, atol=1e-5, train=train)


def test_conv_transpose_output_size():
    factory = lambda nn: nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1)  # noqa: E731
    for output_size in [(7, 9), (8, 10), [2, 2, 8, 9]]:
        check_layer(factory, [(2, 3, 4, 5)], forward_kwargs=dict(output_size=output_size))
    with pytest.raises(ValueError, match=r"requested an output size of \(9, 9\), but valid sizes range "
                                         r"from \(7, 9\) to \(8, 10\)"):
        nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1)(mc.randn(2, 3, 4, 5), output_size=(9, 9))


def test_maxpool_return_indices():
    x = numpy.random.default_rng(0).standard_normal((2, 3, 6, 6))
    out, idx = nn.MaxPool2d(2, return_indices=True)(mc.tensor(x))
    t_out, t_idx = torch.nn.MaxPool2d(2, return_indices=True)(torch.tensor(x))
    numpy.testing.assert_array_equal(out.numpy(), t_out.numpy())
    numpy.testing.assert_array_equal(idx.numpy(), t_idx.numpy())
    out, idx = nn.AdaptiveMaxPool2d(2, return_indices=True)(mc.tensor(x))
    t_out, t_idx = torch.nn.AdaptiveMaxPool2d(2, return_indices=True)(torch.tensor(x))
    numpy.testing.assert_array_equal(idx.numpy(), t_idx.numpy())


def test_batchnorm_running_statistics_over_several_steps():
    """Training steps, then eval: running_mean / running_var /
    num_batches_tracked follow torch for a momentum and for momentum=None
    (the cumulative average)."""
    rng = numpy.random.default_rng(3)
    for momentum in (0.1, None):
        mine = nn.BatchNorm2d(3, momentum=momentum).double()
        theirs = torch.nn.BatchNorm2d(3, momentum=momentum).double()
        for step in range(4):
            x = rng.standard_normal((5, 3, 2, 2)) * (step + 1) + step
            mine(mc.tensor(x))
            theirs(torch.tensor(x))
        assert mine.num_batches_tracked.dtype == numpy.int64 and int(mine.num_batches_tracked) == 4
        for key, value in theirs.state_dict().items():
            numpy.testing.assert_allclose(mine.state_dict()[key].numpy(), value.numpy(), rtol=1e-12)
        mine.eval()
        theirs.eval()
        x = rng.standard_normal((2, 3, 2, 2))
        numpy.testing.assert_allclose(mine(mc.tensor(x)).detach().numpy(), theirs(torch.tensor(x)).detach().numpy(),
                                      rtol=1e-10)


def test_batchnorm_eval_leaves_statistics_alone():
    bn = nn.BatchNorm1d(2).eval()
    bn(mc.randn(4, 2))
    assert int(bn.num_batches_tracked) == 0
    numpy.testing.assert_array_equal(bn.running_mean.numpy(), [0.0, 0.0])


# -- bad arguments ---------------------------------------------------------
@pytest.mark.parametrize("build, error, match", [
    (lambda: nn.Conv2d(3, 4, 3, groups=2), ValueError, r"in_channels=3 must be divisible by groups=2"),
    (lambda: nn.Conv2d(4, 3, 3, groups=2), ValueError, r"out_channels=3 must be divisible by groups=2"),
    (lambda: nn.Conv2d(0, 3, 3), ValueError, r"in_channels must be a positive int"),
    (lambda: nn.Conv2d(3, 4, 3, padding="full"), ValueError, r"padding must be .* got 'full'"),
    (lambda: nn.Conv2d(3, 4, 3, stride=2, padding="same"), ValueError, r"'same' is not supported for strided"),
    (lambda: nn.Conv2d(3, 4, 3, padding_mode="mirror"), ValueError, r"padding_mode must be one of"),
    (lambda: nn.Conv2d(3, 4, (3, 3, 3)), TypeError, r"kernel_size must be an int or a tuple of 2 ints"),
    (lambda: nn.Conv2d(3, 4, 0), ValueError, r"kernel_size must be >= 1"),
    (lambda: nn.Conv2d(3, 4, 3, padding=-1), ValueError, r"padding must be >= 0"),
    (lambda: nn.ConvTranspose2d(3, 4, 3, padding_mode="reflect"), ValueError, r'only "zeros" padding_mode'),
    (lambda: nn.ConvTranspose2d(3, 4, 3, padding="same"), ValueError, r"padding must be an int or a pair"),
    (lambda: nn.Linear(-1, 3), ValueError, r"in_features must be a non-negative int"),
    (lambda: nn.Linear(3, 0), ValueError, r"out_features must be a positive int"),
    (lambda: nn.BatchNorm2d(0), ValueError, r"num_features must be a positive int"),
    (lambda: nn.BatchNorm2d(3, momentum="fast"), TypeError, r"momentum must be a number or None"),
    (lambda: nn.GroupNorm(3, 4), ValueError, r"num_channels=4 must be divisible by num_groups=3"),
    (lambda: nn.LayerNorm((4, 0)), ValueError, r"normalized_shape must be positive ints"),
    (lambda: nn.Dropout(1.5), ValueError, r"p has to be between 0 and 1, got 1.5"),
    (lambda: nn.Dropout2d(-0.1), ValueError, r"p has to be between 0 and 1"),
    (lambda: nn.GELU("fast"), ValueError, r"approximate must be 'none' or 'tanh'"),
    (lambda: nn.Softmax(dim=1.0), TypeError, r"dim must be an int or None"),
    (lambda: nn.Unflatten(1, 6), TypeError, r"unflattened_size must be a tuple of ints"),
    (lambda: nn.LocalResponseNorm(0), ValueError, r"size must be a positive int"),
])
def test_bad_constructor_arguments(build, error, match):
    with pytest.raises(error, match=match):
        build()


@pytest.mark.parametrize("layer, shape, match", [
    (nn.BatchNorm2d(3), (2, 3, 4), r"expected 4D input, got 3D input of shape \(2, 3, 4\)"),
    (nn.BatchNorm1d(3), (2, 3, 4, 4), r"expected 2D or 3D input, got 4D input"),
    (nn.BatchNorm2d(3), (2, 4, 2, 2), r"expected 3 channels \(dim 1\), got input of shape \(2, 4, 2, 2\)"),
    (nn.GroupNorm(2, 4), (2, 6, 3), r"expected input of shape \(N, 4, \*\), got \(2, 6, 3\)"),
    (nn.Unflatten(1, (2, 5)), (3, 12), r"unflattened_size \(2, 5\) does not fit dim 1 of size 12"),
    (nn.Linear(4, 2), (3, 5), r"input of shape \(3, 5\) has 5 features but weight of shape \(2, 4\) expects 4"),
    (nn.Conv2d(3, 2, 3), (1, 4, 5, 5), r"has 4 channels, but weight of shape \(2, 3, 3, 3\)"),
    (nn.ConvTranspose2d(3, 2, 3), (4, 5), r"input must be 4-D \(N, C, H, W\) or 3-D"),
])
def test_bad_inputs(layer, shape, match):
    with pytest.raises(ValueError, match=match):
        layer(mc.randn(*shape))
