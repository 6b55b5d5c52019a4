"""The fast paths of the Numba quantized conv kernel (float32 GEMMs over
exact chunks, the pointwise and linear layouts, the direct kernel for
short dot products) give the NumPy reference's int32 sums exactly, and
quantized modules give torch's quantized conv's integers."""
import numpy
import pytest
import torch
from hypothesis import given, settings, strategies as st

import minicnn as mc
from minicnn.ao.nn import quantized as nnq
from minicnn.ao.nn.intrinsic import quantized as nniq
from minicnn.ao.nn.quantized import functional as qF
from minicnn.kernels.cpu import quantized as kq


@st.composite
def geometries(draw):
    """A conv geometry, dense, grouped or depthwise, with dot products on
    both sides of the GEMM threshold, and extreme or random zero points."""
    depthwise = draw(st.booleans())
    groups = draw(st.integers(1, 8)) if depthwise else draw(st.sampled_from([1, 1, 2, 3]))
    per_in = 1 if depthwise else draw(st.integers(1, 24))
    per_out = draw(st.integers(1, 2)) if depthwise else draw(st.integers(1, 6))
    kh, kw, sh, sw, dh, dw = (draw(st.integers(1, 3)) for _ in range(6))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    h = kh * dh + draw(st.integers(0, 6))
    w = kw * dw + draw(st.integers(0, 6))
    x_zero_point = draw(st.sampled_from([0, 255, 128, 7]))
    w_zero_point = draw(st.sampled_from([0, 127, -128, 5]))
    return dict(groups=groups, cin=groups * per_in, cout=groups * per_out, kernel=(kh, kw), stride=(sh, sw),
                padding=(ph, pw), dilation=(dh, dw), size=(h, w), x_zero_point=x_zero_point,
                w_zero_point=w_zero_point, seed=draw(st.integers(0, 2 ** 16)))


def _arrays(c):
    rng = numpy.random.default_rng(c["seed"])
    x = rng.integers(0, 256, (2, c["cin"]) + c["size"], dtype=numpy.uint8)
    w = rng.integers(-128, 128, (c["cout"], c["cin"] // c["groups"]) + c["kernel"]).astype(numpy.int8)
    zero_points = numpy.full(c["cout"], c["w_zero_point"], numpy.int32)
    zero_points[::2] = rng.integers(-128, 128, len(zero_points[::2]))
    return x, w, zero_points


@settings(max_examples=40, deadline=None)
@given(c=geometries())
def test_kernel_equals_reference_on_drawn_geometries(c):
    x, w, zero_points = _arrays(c)
    args = (x, c["x_zero_point"], w, zero_points, c["stride"], c["padding"], c["dilation"], c["groups"])
    expected = qF.quantized_conv2d_reference(*args)
    numpy.testing.assert_array_equal(kq.quantized_conv2d(*args), expected)
    packed = kq.pack(w, zero_points, c["groups"])
    numpy.testing.assert_array_equal(kq.quantized_conv2d(*args, packed=packed), expected)


def test_chunks_keep_every_float32_partial_sum_exact():
    """Worst-case weights (|w - zero point| = 255 everywhere) and inputs
    (|x - zero point| = 255): K splits into chunks of at most 258 terms,
    and the sums (far above 2**24) are still exact."""
    w = numpy.full((4, 512, 3, 3), -128, numpy.int8)
    zero_points = numpy.full(4, 127, numpy.int32)
    packed = kq.pack(w, zero_points, 1)
    lengths = [stop - start for start, stop in packed.chunks]
    assert sum(lengths) == 512 * 9 and max(lengths) == kq.EXACT_FLOAT32 // (255 * 255)
    x = numpy.full((1, 512, 5, 5), 255, numpy.uint8)
    args = (x, 0, w, zero_points, (1, 1), (1, 1), (1, 1), 1)
    got = kq.quantized_conv2d(*args, packed=packed)
    numpy.testing.assert_array_equal(got, qF.quantized_conv2d_reference(*args))
    assert got.min() == -255 * 255 * 512 * 9


def test_typical_weights_take_one_chunk():
    rng = numpy.random.default_rng(0)
    w = numpy.clip(numpy.rint(rng.standard_normal((64, 64, 3, 3)) * 30), -128, 127).astype(numpy.int8)
    assert len(kq.pack(w, numpy.zeros(64, numpy.int32), 1).chunks) == 1


@pytest.mark.parametrize("shape, kernel, stride, padding", [
    ((1, 40, 9, 9), 1, 1, 0),      # pointwise: the centered image is the table
    ((3, 70, 1, 1), 1, 1, 0),      # a linear layer: one GEMM for the batch
    ((1, 33, 6, 7), 3, 2, 1),      # im2col + GEMM, stride 2
    ((2, 16, 8, 8), 3, 1, 1),      # K = 144, two images
])
def test_gemm_paths_equal_reference(rng, shape, kernel, stride, padding):
    x = rng.integers(0, 256, shape, dtype=numpy.uint8)
    w = rng.integers(-128, 128, (24, shape[1], kernel, kernel)).astype(numpy.int8)
    zero_points = rng.integers(-128, 128, 24).astype(numpy.int32)
    for x_zero_point in (0, 255, 93):
        args = (x, x_zero_point, w, zero_points, (stride, stride), (padding, padding), (1, 1), 1)
        numpy.testing.assert_array_equal(kq.quantized_conv2d(*args), qF.quantized_conv2d_reference(*args))


@pytest.mark.parametrize("groups, cin, cout, relu", [(1, 32, 16, False), (4, 64, 32, True), (32, 32, 32, False)])
def test_modules_equal_torch_quantized_conv(backend, rng, groups, cin, cout, relu):
    """A converted-style module (weights packed at set_weight_bias) gives
    torch fbgemm's integers on every backend, dense, grouped, depthwise."""
    torch.backends.quantized.engine = "fbgemm"
    w = (rng.standard_normal((cout, cin // groups, 3, 3)) * 0.1).astype(numpy.float32)
    scales = numpy.abs(w).reshape(cout, -1).max(axis=1).astype(numpy.float64) / 127.5
    zero_points = numpy.zeros(cout, numpy.int64)
    bias = (rng.standard_normal(cout) * 0.1).astype(numpy.float32)
    x = rng.standard_normal((1, cin, 10, 10)).astype(numpy.float32)
    ours = (nniq.ConvReLU2d if relu else nnq.Conv2d)(cin, cout, 3, padding=1, groups=groups)
    ours.set_weight_bias(mc.quantize_per_channel(mc.tensor(w), scales, zero_points, 0, mc.qint8), bias)
    theirs = (torch.ao.nn.intrinsic.quantized.ConvReLU2d if relu else torch.ao.nn.quantized.Conv2d)(cin, cout, 3, padding=1, groups=groups)
    theirs.set_weight_bias(torch.quantize_per_channel(torch.from_numpy(w), torch.from_numpy(scales),
                                                      torch.from_numpy(zero_points), 0, torch.qint8),
                           torch.from_numpy(bias))
    ours.scale, ours.zero_point = theirs.scale, theirs.zero_point = 0.07, 61
    got = ours(mc.quantize_per_tensor(mc.tensor(x), 0.05, 70, mc.quint8))
    expected = theirs(torch.quantize_per_tensor(torch.from_numpy(x), 0.05, 70, torch.quint8))
    assert got.q_scale() == expected.q_scale() and got.q_zero_point() == expected.q_zero_point()
    numpy.testing.assert_array_equal(got.int_repr().numpy(), expected.int_repr().numpy())
