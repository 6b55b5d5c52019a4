"""The float32 implicit-GEMM convolution (``kernels/cpu/implicit_gemm.py``)
and the strategy's "implicit" path, against the NumPy reference (im2col,
then one matmul, in float64).

The kernels (forward and weight gradient) are drawn on every geometry
they take (groups, kernels square and not, even and odd, strides,
dilations, symmetric padding, channel counts that leave part of a
4-channel block, a 6-pair block or a 64-pixel tile empty, batches below
and above the thread count); the strategy's rule on its bounds; the
input gradient through the flipped filters.
"""
import numpy
import pytest
from hypothesis import given, settings, strategies as st

from minicnn.functional import conv_strategy
from minicnn.kernels import registry
from paths import path as _path
from references import conv_reference
from strategies import conv_arrays, conv_geometries

pytest.importorskip("numba")
from minicnn.kernels.cpu import implicit_gemm, threads as threads_module  # noqa: E402

# float32 sums of `terms` products of standard normals: relative to their size.
RTOL = 2e-5


def _reference(direction, *args):
    """The NumPy reference of ``direction``, on float64 copies."""
    return conv_reference(direction)(*[a.astype(numpy.float64) if isinstance(a, numpy.ndarray) else a for a in args])


def geometries():
    """(N, C, O, groups, kernel, stride, padding, dilation, in_size,
    out_size): any grouping, kernel, stride and dilation, symmetric
    padding, output of one pixel or more."""
    return conv_geometries(st.sampled_from([1, 1, 2, 3, 4]), (1, 5), (1, 9),
                           [(3, 3), (3, 3), (5, 5), (1, 7), (7, 1), (2, 4), (1, 1)], ((1, 3), (1, 2)),
                           max_padding=3, extra=21, images=4)


@settings(max_examples=60, deadline=None)
@given(st.data(), geometries(), st.sampled_from([1, 2, 3]), st.booleans())
def test_the_kernels_match_the_reference(data, geometry, threads, bias):
    """The forward and the weight gradient."""
    N, C, O, G, kernel, stride, padding, dilation, in_size, out_size = geometry
    x, w, b, gy = conv_arrays(data, N, C, O, G, kernel, in_size, out_size, numpy.float32, bias)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(implicit_gemm, "thread_count", lambda: threads)
        patch.setattr(threads_module, "thread_count", lambda: threads)
        patch.setattr(implicit_gemm, "PARALLEL_MACS", 0)      # share even small convolutions' tasks
        y = implicit_gemm.conv2d(x, w, b, stride, padding, dilation, G, out_size)
        gw = implicit_gemm.conv2d_grad_weight(x, gy, kernel, stride, padding, dilation, G)
    expected = _reference("forward", x, w, b, stride, padding, dilation, G, out_size)
    assert y.shape == expected.shape and y.dtype == numpy.float32
    terms = C // G * kernel[0] * kernel[1]
    numpy.testing.assert_allclose(y, expected, rtol=RTOL, atol=RTOL * terms)
    expected = _reference("grad_weight", x, gy, kernel, stride, padding, dilation, G)
    assert gw.shape == expected.shape and gw.dtype == numpy.float32
    terms = N * out_size[0] * out_size[1]
    numpy.testing.assert_allclose(gw, expected, rtol=RTOL, atol=RTOL * terms)


@pytest.mark.parametrize("N", [1, 4])
def test_the_kernels_give_the_same_numbers_on_any_number_of_threads(N, monkeypatch):
    """Each tile is summed whole by one thread, whichever: with fewer
    images than threads the threads share an image's tiles, with more
    each takes whole images; each block of the weight gradient is summed
    over all the images by one task."""
    rng = numpy.random.default_rng(N)
    x = rng.standard_normal((N, 12, 23, 19)).astype(numpy.float32)
    w = rng.standard_normal((20, 6, 3, 3)).astype(numpy.float32)
    monkeypatch.setattr(implicit_gemm, "PARALLEL_MACS", 0)
    gy = rng.standard_normal((N, 20, 23, 19)).astype(numpy.float32)
    results = []
    for threads in (1, 2, 3):
        monkeypatch.setattr(implicit_gemm, "thread_count", lambda: threads)
        monkeypatch.setattr(threads_module, "thread_count", lambda: threads)
        geometry = ((1, 1), ((1, 1), (1, 1)), (1, 1), 2)
        results.append((implicit_gemm.conv2d(x, w, None, *geometry, (23, 19)),
                        implicit_gemm.conv2d_grad_weight(x, gy, (3, 3), *geometry)))
    for y, gw in results[1:]:
        numpy.testing.assert_array_equal(y, results[0][0])
        numpy.testing.assert_array_equal(gw, results[0][1])


@pytest.mark.usefixtures("fast_kernel")
def test_the_rule_takes_few_taps_or_few_channels_a_group():
    if not registry.find("implicit_conv2d", numpy):
        pytest.skip("the backend in force has no implicit path (MINICNN_BACKEND=numpy)")
    taps = conv_strategy.IMPLICIT_MAX_TAPS
    channels = conv_strategy.IMPLICIT_MAX_GROUP_CHANNELS
    assert _path(8, 3, 64, 1, (7, 7), (2, 2), ((3, 3), (3, 3))) == "implicit"          # an RGB stem, 147 taps
    assert _path(1, 3, 64, 1, (7, 7), (2, 2), ((3, 3), (3, 3))) == "implicit"          # a lone image too
    assert _path(8, taps // 9, 64, 1, (3, 3)) == "implicit"
    assert _path(8, taps // 9 + 1, 64, 1, (3, 3)) != "implicit"
    assert _path(8, 32 * channels, 256, 32, (3, 3)) == "implicit"                       # (16 outputs a group: "channels")
    assert _path(8, 32 * (channels + 1), 512, 32, (3, 3)) != "implicit"
    assert _path(1, 32 * 8, 256, 32, (3, 3)) == "grouped"                               # a lone image
    small = conv_strategy.IMPLICIT_MIN_GROUPED_SIZE - 1
    assert _path(8, 32 * 8, 256, 32, (3, 3), out_size=(small, 20)) == "grouped"          # a small map
    assert _path(8, 512, 32 * 16, 32, (3, 3), out_size=(small, 20), direction="grad_input") != "implicit"
    assert _path(8, 32 * 8, 256, 32, (3, 3), (2, 2)) == "grouped"                       # grouped, stride 2
    # the input gradient: gy's channels a group, at stride 1
    assert _path(8, 256, 32 * 16, 32, (3, 3), direction="grad_input") == "implicit"
    assert _path(8, 64, 16, 1, (3, 3), direction="grad_input") == "implicit"            # 16 x 9 taps of gy
    assert _path(8, 3, 64, 1, (3, 3), direction="grad_input") != "implicit"             # 64 x 9 taps of gy
    assert _path(8, 3, 16, 1, (3, 3), (2, 2), direction="grad_input") != "implicit"
    # the weight gradient: as the forward, but an ungrouped one at stride 2 and up only
    assert _path(8, 3, 64, 1, (7, 7), (2, 2), ((3, 3), (3, 3)), direction="grad_weight") == "implicit"
    assert _path(8, 16, 64, 1, (3, 3), direction="grad_weight") != "implicit"
    assert _path(8, 32 * 16, 512, 32, (3, 3), direction="grad_weight") == "implicit"
    strided = conv_strategy.IMPLICIT_MIN_STRIDED_GRAD_WEIGHT_CHANNELS
    assert _path(8, 32 * strided, 512, 32, (3, 3), (2, 2), direction="grad_weight") == "implicit"
    assert _path(8, 32 * (strided - 1), 512, 32, (3, 3), (2, 2), direction="grad_weight") != "implicit"
    assert _path(8, 32 * strided, 512, 32, (3, 3), (2, 2)) != "implicit"                 # the forward: not strided
    # what it never takes
    assert _path(8, 16, 64, 1, (3, 3), dtype=numpy.float64) != "implicit"
    assert _path(8, 16, 64, 1, (3, 3), dtype=None) != "implicit"
    assert _path(8, 16, 64, 1, (2, 2), padding=((0, 1), (0, 1))) != "implicit"         # asymmetric padding
    assert _path(8, 16, 64, 1, (1, 1), padding=((1, 1), (1, 1))) != "implicit"         # 1x1: GEMMs
    assert _path(8, 16, 64, 1, (3, 3), padding=((0, 0), (0, 0)), out_size=(1, 1)) == "dense"
    assert _path(8, 16, 16, 16, (3, 3)) == "depthwise"


def test_the_rule_keeps_off_a_cpu_where_the_kernel_is_slow(monkeypatch):
    monkeypatch.setitem(registry._implementations["conv_register_tiles"], "numba", lambda: None)
    assert _path(8, 3, 64, 1, (7, 7), (2, 2), ((3, 3), (3, 3))) != "implicit"


def test_on_avx2_the_rule_takes_fewer_grouped_layers(monkeypatch):
    """With AVX2's tiles the path takes, of what it takes on AVX-512, the
    ungrouped forward and input gradient and the grouped layers of
    ``IMPLICIT_AVX2_GROUP_CHANNELS`` channels a group, their weight
    gradient strided or where neither the direct kernel nor Winograd
    would be faster."""
    if not registry.find("implicit_conv2d", numpy):
        pytest.skip("the backend in force has no implicit path (MINICNN_BACKEND=numpy)")
    monkeypatch.setitem(registry._implementations["conv_register_tiles"], "numba", lambda: "avx2")
    least, most = conv_strategy.IMPLICIT_AVX2_GROUP_CHANNELS
    stem = ((7, 7), (2, 2), ((3, 3), (3, 3)))
    assert _path(8, 3, 64, 1, *stem) == "implicit"
    assert _path(8, 64, 16, 1, (3, 3), direction="grad_input") == "implicit"
    assert _path(8, 3, 64, 1, *stem, direction="grad_weight") != "implicit"
    for Cg in (least, most):
        assert _path(8, 32 * Cg, 32 * 8, 32, (3, 3)) == "implicit"
        assert _path(8, 32 * 8, 32 * Cg, 32, (3, 3), direction="grad_input") == "implicit"
        assert _path(8, 32 * Cg, 512, 32, (3, 3), (2, 2), direction="grad_weight") == "implicit"
    for Cg in (least - 1, most + 1):
        assert _path(8, 32 * Cg, 32 * 8, 32, (3, 3)) != "implicit"
        assert _path(8, 32 * 8, 32 * Cg, 32, (3, 3), direction="grad_input") != "implicit"
    direct = conv_strategy.DIRECT_MAX_GRAD_WEIGHT_GROUP_CHANNELS
    groups = conv_strategy.IMPLICIT_AVX2_MIN_GRAD_WEIGHT_GROUPS
    assert _path(8, groups * (direct + 1), groups * 8, groups, (3, 3), direction="grad_weight") == "implicit"
    assert _path(8, (groups - 1) * (direct + 1), (groups - 1) * 8, groups - 1, (3, 3),
                 direction="grad_weight") != "implicit"
    assert _path(8, 32 * least, 512, 32, (3, 3), direction="grad_weight") != "implicit"


@settings(max_examples=30, deadline=None)
@given(st.data(), geometries(), st.sampled_from([1, 3]), st.booleans())
def test_the_strategy_matches_the_reference(data, geometry, threads, bias):
    """Through ``conv_forward``, ``conv_grad_input`` and
    ``conv_grad_weight``: where the path is "implicit" (asserted where the
    rule's ungrouped bound says it must be), the results agree with the
    reference."""
    N, C, O, G, kernel, stride, padding, dilation, in_size, out_size = geometry
    x, w, b, gy = conv_arrays(data, N, C, O, G, kernel, in_size, out_size, numpy.float32, bias)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(registry._implementations["conv_register_tiles"], "numba", lambda: "avx512")
        patch.setattr(threads_module, "thread_count", lambda: threads)
        patch.setattr(implicit_gemm, "thread_count", lambda: threads)
        args = (stride, padding, dilation, G)
        for direction, size, channels in (("forward", out_size, C), ("grad_input", in_size, O),
                                          ("grad_weight", out_size, C)):
            path = conv_strategy.conv_path(numpy, N, C, G, kernel, stride, padding, dilation, out_size, size,
                                           direction, O, numpy.float32)[0]
            few_taps = G == 1 and channels * kernel[0] * kernel[1] <= conv_strategy.IMPLICIT_MAX_TAPS
            stride_1 = {"forward": True, "grad_input": stride == (1, 1), "grad_weight": stride != (1, 1)}[direction]
            reach_fits = direction != "grad_input" or all(p[0] <= d * (k - 1)
                                                          for p, d, k in zip(padding, dilation, kernel))
            must = (registry.find("implicit_conv2d", numpy) is not None and G < C and kernel != (1, 1)
                    and out_size != (1, 1) and few_taps and stride_1 and reach_fits)
            if must:
                assert path == "implicit", direction
            call = {"forward": (x, w, b, *args, out_size), "grad_input": (gy, w, *args, in_size),
                    "grad_weight": (x, gy, kernel, *args)}[direction]
            mine = getattr(conv_strategy, f"conv2d_{direction}")(*call)
            expected = _reference(direction, *call)
            terms = N * out_size[0] * out_size[1] if direction == "grad_weight" else channels // G * kernel[0] * kernel[1]
            assert mine.shape == expected.shape and mine.dtype == numpy.float32
            numpy.testing.assert_allclose(mine, expected, rtol=RTOL, atol=RTOL * terms)


@pytest.mark.usefixtures("fast_kernel")
@pytest.mark.parametrize("stride, dilation", [(1, 1), (2, 1), (1, 2)])
def test_long_rows_of_a_1d_convolution_take_the_path(stride, dilation):
    """A conv1d (a 2-D convolution of height 1) with rows of at least
    IMPLICIT_MIN_ROW outputs: forward and input gradient through the
    path, against the reference; shorter rows keep im2col."""
    if not registry.find("implicit_conv2d", numpy):
        pytest.skip("the backend in force has no implicit path (MINICNN_BACKEND=numpy)")
    rng = numpy.random.default_rng(stride + 2 * dilation)
    K, pad = 5, 2 * dilation
    W = conv_strategy.IMPLICIT_MIN_ROW * stride + 7
    x = rng.standard_normal((3, 40, W)).astype(numpy.float32)
    w = rng.standard_normal((24, 40, K)).astype(numpy.float32)
    b = rng.standard_normal(24).astype(numpy.float32)
    OW = (W + 2 * pad - dilation * (K - 1) - 1) // stride + 1
    gy = rng.standard_normal((3, 24, OW)).astype(numpy.float32)
    geometry = ((stride,), ((pad, pad),), (dilation,), 1)
    lifted = ((1, stride), ((0, 0), (pad, pad)), (1, dilation))
    assert _path(3, 40, 24, 1, (1, K), *lifted, out_size=(1, OW)) == "implicit"
    assert _path(3, 40, 24, 1, (1, K), *lifted, out_size=(1, conv_strategy.IMPLICIT_MIN_ROW - 1)) != "implicit"
    assert _path(3, 40, 24, 1, (1, K), *lifted, out_size=(2, OW)) != "implicit"          # a 2-D map
    if stride == 1:
        assert conv_strategy.conv_path(numpy, 3, 40, 1, (1, K), *lifted, (1, OW), (1, W), "grad_input", 24,
                                       numpy.float32)[0] == "implicit"
    y = conv_strategy.conv_forward(x, w, b, *geometry, (OW,))
    numpy.testing.assert_allclose(y, _reference("forward", x, w, b, *geometry, (OW,)), rtol=RTOL, atol=RTOL * 40 * K)
    gx = conv_strategy.conv_grad_input(gy, w, *geometry, (W,))
    numpy.testing.assert_allclose(gx, _reference("grad_input", gy, w, *geometry, (W,)), rtol=RTOL, atol=RTOL * 24 * K)


def test_the_weight_gradient_reads_only_memory_it_wrote(monkeypatch):
    # Every array numpy.empty makes here is the front of a buffer whose
    # tail, past the array's end, holds NaN: a kernel that read past an
    # array and multiplied what it found by zero (the tiles' spare pixels)
    # would return NaN. (Such a read made a test flaky under load.)
    real_empty = numpy.empty

    def empty_with_nan_after(shape, dtype=float, **kwargs):
        size = int(numpy.prod(shape))
        buffer = real_empty(size + 4096, dtype, **kwargs)
        if buffer.dtype.kind == "f":
            buffer[size:] = numpy.nan
        return buffer[:size].reshape(shape)
    rng = numpy.random.default_rng(3)
    x = rng.standard_normal((1, 10, 14, 9)).astype(numpy.float32)
    gy = rng.standard_normal((1, 53, 14, 2)).astype(numpy.float32)
    args = ((1, 7), (1, 2), ((0, 0), (0, 0)), (1, 1), 1)
    monkeypatch.setattr(implicit_gemm.numpy, "empty", empty_with_nan_after)
    gw = implicit_gemm.conv2d_grad_weight(x, gy, *args)
    monkeypatch.undo()
    expected = conv_reference("grad_weight")(x.astype(numpy.float64), gy.astype(numpy.float64), *args)
    assert numpy.isfinite(gw).all()
    numpy.testing.assert_allclose(gw, expected, rtol=2e-5, atol=2e-5 * 28)
