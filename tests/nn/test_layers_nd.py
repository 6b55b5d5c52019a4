"""The 1-D and 3-D layers against torch's (repr, state_dict, output and
gradients through tests/nn/layer_check.py): pools, BatchNorm3d, Upsample
on clips; and their errors."""
import numpy
import pytest
import torch

import minicnn as mc
from minicnn import nn
from layer_check import check_layer

LAYERS = {
    "maxpool1d": (lambda nn: nn.MaxPool1d(3, 2, 1), [(2, 3, 9)], True),
    "maxpool1d_ceil_dilated": (lambda nn: nn.MaxPool1d(2, dilation=2, ceil_mode=True), [(2, 7)], True),
    "maxpool3d": (lambda nn: nn.MaxPool3d(3, 2, 1), [(2, 2, 4, 5, 5)], True),
    "maxpool3d_s3d": (lambda nn: nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)), [(1, 2, 3, 6, 6)], True),
    "avgpool1d": (lambda nn: nn.AvgPool1d(3, 2, 1, count_include_pad=False), [(2, 3, 8)], True),
    "avgpool3d": (lambda nn: nn.AvgPool3d((2, 3, 3), (1, 2, 2), (1, 1, 0), ceil_mode=True), [(1, 2, 3, 7, 6)], True),
    "avgpool3d_divisor": (lambda nn: nn.AvgPool3d(2, divisor_override=5), [(3, 4, 4, 4)], True),
    "adaptive_avgpool1d": (lambda nn: nn.AdaptiveAvgPool1d(3), [(2, 3, 7)], True),
    "adaptive_avgpool3d": (lambda nn: nn.AdaptiveAvgPool3d((1, None, 2)), [(2, 3, 4, 3, 5)], True),
    "adaptive_avgpool3d_global": (lambda nn: nn.AdaptiveAvgPool3d(1), [(2, 3, 2, 3, 3)], True),
    "adaptive_maxpool1d": (lambda nn: nn.AdaptiveMaxPool1d(4), [(2, 3, 9)], True),
    "adaptive_maxpool3d": (lambda nn: nn.AdaptiveMaxPool3d((2, 3, 2)), [(1, 2, 5, 4, 3)], True),
    "batchnorm3d": (lambda nn: nn.BatchNorm3d(3, momentum=0.2), [(2, 3, 2, 3, 4)], True),
    "batchnorm3d_eval": (lambda nn: nn.BatchNorm3d(3), [(2, 3, 2, 3, 4)], False),
    "batchnorm3d_no_stats": (lambda nn: nn.BatchNorm3d(3, affine=False, track_running_stats=False),
                             [(2, 3, 2, 2, 2)], False),
    "upsample_nearest_3d": (lambda nn: nn.Upsample(scale_factor=(1, 2, 1.5)), [(1, 2, 2, 3, 4)], True),
    "upsample_trilinear": (lambda nn: nn.Upsample(size=(3, 5, 4), mode="trilinear"), [(1, 2, 2, 3, 3)], True),
    "upsample_trilinear_corners": (lambda nn: nn.Upsample(scale_factor=2, mode="trilinear", align_corners=True),
                                   [(1, 1, 2, 3, 2)], True),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_matches_torch_float64(name):
    factory, shapes, train = LAYERS[name]
    check_layer(factory, shapes, train=train)


@pytest.mark.parametrize("name", ["maxpool3d", "avgpool1d", "adaptive_avgpool3d", "batchnorm3d", "upsample_trilinear"])
def test_layer_matches_torch_float32(name):
    factory, shapes, train = LAYERS[name]
    check_layer(factory, shapes, dtype=numpy.float32, rtol=1e-4, atol=1e-5, train=train)


@pytest.mark.parametrize("mine,theirs", [
    (nn.MaxPool3d(2, return_indices=True), torch.nn.MaxPool3d(2, return_indices=True)),
    (nn.MaxPool1d(3, 1, 1, return_indices=True), torch.nn.MaxPool1d(3, 1, 1, return_indices=True)),
    (nn.AdaptiveMaxPool3d((3, 2, 1), return_indices=True), torch.nn.AdaptiveMaxPool3d((3, 2, 1), return_indices=True)),
    (nn.AdaptiveMaxPool1d(2, return_indices=True), torch.nn.AdaptiveMaxPool1d(2, return_indices=True)),
], ids=repr)
def test_pool_modules_return_torchs_indices(mine, theirs):
    rank = 1 if "1d" in type(mine).__name__ else 3
    x = numpy.random.default_rng(0).standard_normal((2, 3) + (6,) * rank)
    out, idx = mine(mc.tensor(x))
    t_out, t_idx = theirs(torch.tensor(x))
    numpy.testing.assert_array_equal(out.numpy(), t_out.numpy())
    numpy.testing.assert_array_equal(idx.numpy(), t_idx.numpy())
    assert idx.dtype == numpy.int64


def test_modules_keep_their_arguments_as_given():
    pool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
    assert (pool.kernel_size, pool.stride, pool.padding, pool.dilation) == ((1, 3, 3), (1, 2, 2), (0, 1, 1), 1)
    assert nn.AvgPool3d(2).stride == 2 and nn.AvgPool3d(2, divisor_override=3).divisor_override == 3
    assert (nn.AvgPool1d(3).kernel_size, nn.AvgPool1d(3).stride) == ((3,), (3,))  # torch's _single
    bn = nn.BatchNorm3d(5)
    assert bn.weight.shape == bn.running_var.shape == (5,) and int(bn.num_batches_tracked.item()) == 0
    assert isinstance(bn, nn.BatchNorm2d.__mro__[1])  # the one _BatchNorm


@pytest.mark.parametrize("layer,shape,match", [
    (nn.BatchNorm3d(3), (2, 3, 4, 4), r"BatchNorm3d: expected 5D input, got 4D input of shape \(2, 3, 4, 4\)"),
    (nn.BatchNorm3d(3), (2, 4, 1, 2, 2), r"expected 3 channels .*\(2, 4, 1, 2, 2\)"),
    (nn.MaxPool3d(2), (2, 2), r"max_pool3d: expected 4-D \(C, T, H, W\) or 5-D"),
    (nn.MaxPool3d(3), (1, 1, 2, 4, 4), r"\(1, 1, 2, 4, 4\) is too small for kernel_size \(3, 3, 3\)"),
    (nn.AvgPool1d(5, padding=1), (1, 1, 2), r"avg_pool1d: input of shape \(1, 1, 2\) is too small"),
    (nn.AdaptiveAvgPool3d(2), (2, 3, 3), r"adaptive_avg_pool3d: expected 4-D .*\(2, 3, 3\)"),
    (nn.AdaptiveMaxPool1d(0), (1, 2, 3), r"output_size must be >= 1"),
])
def test_layers_reject_bad_input_naming_the_shape(layer, shape, match):
    with pytest.raises(ValueError, match=match):
        layer(mc.zeros(*shape))
