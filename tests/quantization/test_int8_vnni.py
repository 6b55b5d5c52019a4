"""The integer dot-product (AVX-512 VNNI) convolution kernel and the float32
GEMM path it replaces give the NumPy reference's int32 sums exactly, on
drawn geometries; the Numba requantization gives the NumPy reference's
uint8 exactly. The VNNI tests are skipped where the CPU lacks the
instruction (the kernels are then never compiled)."""
import numpy
import pytest
from hypothesis import given, settings, strategies as st

from minicnn.ao.nn.quantized import functional as qF
from minicnn.kernels.cpu import quantized as kq
from minicnn.kernels.cpu import vnni

needs_vnni = pytest.mark.skipif(not vnni.available(),
                                reason="this CPU has no AVX-512 VNNI (or Numba compiles for another CPU)")


@st.composite
def geometries(draw):
    """A conv geometry: dense or grouped, odd sizes, K on both sides of
    the GEMM threshold and rarely a multiple of 4, O rarely a multiple of
    the 4-channel block, every stride / padding / dilation pattern."""
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    return dict(groups=groups, cin=groups * draw(st.integers(1, 21)), cout=groups * draw(st.integers(1, 9)),
                kernel=(kh, kw), stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
                padding=(draw(st.integers(0, 2)), draw(st.integers(0, 2))), dilation=(dh, dw),
                size=(kh * dh + draw(st.integers(0, 9)), kw * dw + draw(st.integers(0, 70))),
                batch=draw(st.integers(1, 2)), x_zero_point=draw(st.sampled_from([0, 255, 128, 7])),
                seed=draw(st.integers(0, 2 ** 16)))


def _case(c, w_zero_point=0):
    rng = numpy.random.default_rng(c["seed"])
    x = rng.integers(0, 256, (c["batch"], c["cin"]) + c["size"], dtype=numpy.uint8)
    w = rng.integers(-128, 128, (c["cout"], c["cin"] // c["groups"]) + c["kernel"]).astype(numpy.int8)
    zero_points = numpy.full(c["cout"], w_zero_point, numpy.int32)
    return (x, c["x_zero_point"], w, zero_points, c["stride"], c["padding"], c["dilation"], c["groups"])


@needs_vnni
@settings(max_examples=60, deadline=None)
@given(geometries())
def test_vnni_path_equals_reference(c):
    args = _case(c)
    packed = kq.pack(args[2], args[3], c["groups"], use_vnni=True)
    K = args[2][0].size
    assert (packed.vnni is not None) == (K >= kq.GEMM_MIN_K)
    numpy.testing.assert_array_equal(kq.quantized_conv2d(*args, packed=packed),
                                     qF.quantized_conv2d_reference(*args))


@needs_vnni
@settings(max_examples=20, deadline=None)
@given(geometries(), st.booleans())
def test_vnni_tiles_shared_among_threads_equal_reference(c, requantized):
    """With every conv shared among 2 threads (the work threshold at 0),
    each thread's tiles, copied to the output by the task that made them,
    give the reference's result exactly."""
    from minicnn.kernels.cpu import threads
    args = _case(c)
    requant = None
    if requantized:
        rng = numpy.random.default_rng(c["seed"])
        requant = ((rng.standard_normal(c["cout"]) * 50).astype(numpy.float32),
                   (10.0 ** rng.uniform(-5, -2, c["cout"])).astype(numpy.float32), 61, 0)
    packed = kq.pack(args[2], args[3], c["groups"], use_vnni=True)
    before, threshold = threads.get_num_threads(), vnni.PARALLEL_MACS
    threads.set_num_threads(2)
    vnni.PARALLEL_MACS = 0
    try:
        got = kq.quantized_conv2d(*args, packed=packed, requant=requant)
    finally:
        threads.set_num_threads(before)
        vnni.PARALLEL_MACS = threshold
    numpy.testing.assert_array_equal(got, qF.quantized_conv2d_reference(*args, requant=requant))


@settings(max_examples=30, deadline=None)
@given(geometries(), st.sampled_from([0, 0, 5, -128]))
def test_float32_path_equals_reference(c, w_zero_point):
    args = _case(c, w_zero_point)
    packed = kq.pack(args[2], args[3], c["groups"], use_vnni=False)
    assert packed.vnni is None
    numpy.testing.assert_array_equal(kq.quantized_conv2d(*args, packed=packed),
                                     qF.quantized_conv2d_reference(*args))


def test_vnni_only_for_symmetric_weights():
    """Nonzero weight zero points (per-tensor affine) stay on the float32
    path: the VNNI kernel's zero-point term assumes symmetric weights."""
    w = numpy.ones((3, 8, 3, 3), numpy.int8)
    assert kq.pack(w, numpy.array([0, 1, 0], numpy.int32), 1, use_vnni=True).vnni is None
    assert kq.pack(w, numpy.zeros(3, numpy.int32), 1, use_vnni=False).vnni is None
    assert (kq.pack(w, numpy.zeros(3, numpy.int32), 1).vnni is not None) == vnni.available()


@needs_vnni
@pytest.mark.parametrize("x_value, x_zero_point, w_value", [(255, 0, -128), (255, 255, -128), (0, 255, 127)])
def test_vnni_extremes_at_the_longest_dot_product(x_value, x_zero_point, w_value):
    """K = MAX_K with every input and weight at an extreme: the running sum
    and the zero-point term reach +-255 * 128 * K, just inside int32."""
    K = vnni.MAX_K
    x = numpy.full((1, K, 1, 3), x_value, numpy.uint8)
    w = numpy.full((5, K, 1, 1), w_value, numpy.int8)
    zero_points = numpy.zeros(5, numpy.int32)
    args = (x, x_zero_point, w, zero_points, (1, 1), (0, 0), (1, 1), 1)
    got = kq.quantized_conv2d(*args, packed=kq.pack(w, zero_points, 1, use_vnni=True))
    numpy.testing.assert_array_equal(got, qF.quantized_conv2d_reference(*args))
    assert got[0, 0, 0, 0] == (x_value - x_zero_point) * w_value * K


@pytest.mark.parametrize("zero_point, low", [(61, 0), (61, 61), (0, 0), (255, 255)])
def test_requantize_kernel_equals_reference(rng, zero_point, low):
    """Exact ties (odd sums times 0.5) round half to even; large sums
    clamp at 255, negative ones at ``low``."""
    acc = rng.integers(-300000, 300000, (2, 7, 33), dtype=numpy.int64).astype(numpy.int32)
    offsets = (rng.standard_normal(7) * 100).astype(numpy.float32)
    multipliers = (10.0 ** rng.uniform(-5, -1, 7)).astype(numpy.float32)
    offsets[:2], multipliers[:2] = 0, 0.5
    acc[:, :2] = rng.integers(-600, 600, (2, 2, 33))
    got = kq.requantize(acc, offsets, multipliers, zero_point, low)
    numpy.testing.assert_array_equal(got, qF.requantize_reference(acc, offsets, multipliers, zero_point, low))
    # the tie channels by integer arithmetic: acc / 2 rounded half to even
    half, odd = acc[:, :2] >> 1, acc[:, :2] & 1
    expected = numpy.clip(half + (odd & (half & 1)) + zero_point, low, 255)
    numpy.testing.assert_array_equal(got[:, :2], expected)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 9), st.integers(3, 12), st.integers(3, 12), st.sampled_from([1, 2]), st.integers(0, 2),
       st.integers(0, 2), st.sampled_from([0, 255, 61]), st.sampled_from([0, 0, 3]), st.integers(0, 2 ** 16))
def test_depthwise3x3_equals_reference(channels, h, w, stride, ph, pw, x_zero_point, w_zero_point, seed):
    """The depthwise 3x3 kernel (MobileNet's), stride 1 and 2, odd sizes."""
    rng = numpy.random.default_rng(seed)
    x = rng.integers(0, 256, (2, channels, h, w), dtype=numpy.uint8)
    weight = rng.integers(-128, 128, (channels, 1, 3, 3)).astype(numpy.int8)
    zero_points = numpy.full(channels, w_zero_point, numpy.int32)
    args = (x, x_zero_point, weight, zero_points, (stride, stride), (ph, pw), (1, 1), channels)
    numpy.testing.assert_array_equal(kq.quantized_conv2d(*args), qF.quantized_conv2d_reference(*args))


@settings(max_examples=25, deadline=None)
@given(st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 9), st.integers(1, 9)), st.booleans(),
       st.floats(0.001, 1.0), st.integers(0, 255), st.floats(0.001, 1.0), st.integers(0, 255),
       st.floats(0.001, 1.0), st.integers(0, 255), st.integers(0, 2 ** 16))
def test_add_kernel_equals_reference(shape, relu, a_scale, a_zp, b_scale, b_zp, scale, zp, seed):
    """The one-pass quantized add (a residual's sum) against the NumPy
    reference, plain and with ReLU."""
    rng = numpy.random.default_rng(seed)
    a = rng.integers(0, 256, shape, dtype=numpy.uint8)
    b = rng.integers(0, 256, shape, dtype=numpy.uint8)
    args = (a, a_scale, a_zp, b, b_scale, b_zp, scale, zp, relu)
    numpy.testing.assert_array_equal(kq.add(*args), qF.add_reference(*args))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3), st.integers(0, 2),
       st.integers(0, 2), st.integers(1, 2), st.integers(1, 2), st.booleans(), st.integers(0, 2 ** 16))
def test_max_pool_kernel_equals_reference(kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode, seed):
    """The uint8 max pooling kernel against the NumPy reference: padding,
    dilation, and ceil_mode windows that run past the edge."""
    ph, pw = min(ph, kh // 2), min(pw, kw // 2)
    rng = numpy.random.default_rng(seed)
    x = rng.integers(0, 256, (2, 3, int(rng.integers(dh * (kh - 1) + 1, 12)), int(rng.integers(dw * (kw - 1) + 1, 12))),
                     dtype=numpy.uint8)
    out_size = tuple(qF._pool_size(n, k, s, p, d, ceil_mode)
                     for n, k, s, p, d in zip(x.shape[2:], (kh, kw), (sh, sw), (ph, pw), (dh, dw)))
    args = (x, (kh, kw), (sh, sw), (ph, pw), (dh, dw), out_size)
    numpy.testing.assert_array_equal(kq.max_pool2d(*args), qF.max_pool2d_reference(*args))


@pytest.mark.parametrize("scale, zero_point", [(0.1, 10), (0.02, 0), (3.0, 255), (1.0, 128)])
def test_quantize_kernel_equals_reference(rng, scale, zero_point):
    """The one-pass quantization of a model's float32 input (a converted
    QuantStub) against the NumPy reference: exact ties (x.5 steps), values
    far past both ends of the range, and infinities."""
    x = (rng.standard_normal((2, 3, 17, 19)) * 20).astype(numpy.float32)
    x.reshape(-1)[:40] = (numpy.arange(40, dtype=numpy.float32) - 20 + 0.5) * numpy.float32(scale)
    x.reshape(-1)[40:44] = [numpy.inf, -numpy.inf, 1e30, -1e30]
    numpy.testing.assert_array_equal(kq.quantize(x, scale, zero_point), qF.quantize_reference(x, scale, zero_point))


def test_small_kernels_shared_among_threads_equal_reference(rng, monkeypatch):
    """Add, max pooling, requantization and the depthwise conv with every
    call shared among 2 threads (the work threshold at 0): the parts give
    the reference's result exactly."""
    from minicnn.kernels.cpu import threads
    monkeypatch.setattr(kq, "PARALLEL_NS", 0)
    before = threads.get_num_threads()
    threads.set_num_threads(2)
    try:
        a, b = (rng.integers(0, 256, (2, 5, 9, 11), dtype=numpy.uint8) for _ in range(2))
        args = (a, 0.07, 3, b, 0.11, 200, 0.13, 17, True)
        numpy.testing.assert_array_equal(kq.add(*args), qF.add_reference(*args))
        x = (rng.standard_normal((2, 3, 9, 11)) * 20).astype(numpy.float32)
        numpy.testing.assert_array_equal(kq.quantize(x, 0.1, 10), qF.quantize_reference(x, 0.1, 10))
        pool = (a, (3, 3), (2, 2), (1, 1), (1, 1), (5, 6))
        numpy.testing.assert_array_equal(kq.max_pool2d(*pool), qF.max_pool2d_reference(*pool))
        acc = rng.integers(-5000, 5000, (2, 5, 99), dtype=numpy.int32)
        requant = ((rng.standard_normal(5) * 50).astype(numpy.float32), numpy.full(5, 0.01, numpy.float32), 61, 0)
        numpy.testing.assert_array_equal(kq.requantize(acc, *requant), qF.requantize_reference(acc, *requant))
        w = rng.integers(-128, 128, (5, 1, 3, 3)).astype(numpy.int8)
        for stride in (1, 2):
            conv = (a, 9, w, numpy.zeros(5, numpy.int32), (stride, stride), (1, 1), (1, 1), 5)
            numpy.testing.assert_array_equal(kq.quantized_conv2d(*conv, requant=requant),
                                             qF.quantized_conv2d_reference(*conv, requant=requant))
    finally:
        threads.set_num_threads(before)


@settings(max_examples=30, deadline=None)
@given(geometries(), st.sampled_from([None, False]), st.booleans())
def test_requantized_conv_equals_reference(c, use_vnni, relu):
    """The conv kernel's requantized result (the VNNI kernel requantizes
    straight off its sums; the other paths after them) against the
    reference's, on every path this CPU has."""
    args = _case(c)
    rng = numpy.random.default_rng(c["seed"])
    offsets = (rng.standard_normal(c["cout"]) * 50).astype(numpy.float32)
    multipliers = (10.0 ** rng.uniform(-5, -2, c["cout"])).astype(numpy.float32)
    requant = (offsets, multipliers, 61, 61 if relu else 0)
    packed = kq.pack(args[2], args[3], c["groups"], use_vnni=use_vnni)
    got = kq.quantized_conv2d(*args, packed=packed, requant=requant)
    assert got.dtype == numpy.uint8
    numpy.testing.assert_array_equal(got, qF.quantized_conv2d_reference(*args, requant=requant))


@pytest.mark.parametrize("use_vnni", [None, False])
def test_requantized_conv_rounds_ties_to_even(rng, use_vnni):
    """Small sums times 0.5: every odd sum is an exact tie, rounded half to
    even as NumPy's rint does (the VNNI kernel rounds in its registers)."""
    x = (rng.integers(0, 2, (1, 16, 9, 9)) + 100).astype(numpy.uint8)
    w = rng.integers(-1, 2, (6, 16, 3, 3)).astype(numpy.int8)
    zero_points = numpy.zeros(6, numpy.int32)
    args = (x, 100, w, zero_points, (1, 1), (1, 1), (1, 1), 1)
    requant = (numpy.zeros(6, numpy.float32), numpy.full(6, 0.5, numpy.float32), 128, 0)
    packed = kq.pack(w, zero_points, 1, use_vnni=use_vnni)
    got = kq.quantized_conv2d(*args, packed=packed, requant=requant)
    sums = qF.quantized_conv2d_reference(*args)
    assert (sums % 2 == 1).any()
    half, odd = sums >> 1, sums & 1
    numpy.testing.assert_array_equal(got, half + (odd & (half & 1)) + 128)
