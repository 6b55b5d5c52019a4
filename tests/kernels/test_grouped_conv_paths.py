"""Grouped convolutions (1 < groups < channels) on the CPU kernels' fast
paths, against the NumPy reference (im2col, then one matmul).

The forward of few channels a group sums the taps directly (the
"grouped" path); otherwise Winograd takes a grouped 3x3 stride-1
convolution as G products per transformed position, and stride 2 and
other kernels take the tiled im2col path. The geometries are drawn by
hypothesis: groups 2 to 32, odd and even maps, paddings 0 to 2, each
thread count, float32 and float64.
"""
import numpy
import pytest
from hypothesis import given, settings, strategies as st

from minicnn.functional import conv_strategy
from references import conv_reference
from strategies import conv_arrays, conv_geometries

pytest.importorskip("numba")
from minicnn.kernels.cpu import conv as numba_conv, threads as threads_module, winograd  # noqa: E402

DIRECTIONS = ("forward", "grad_input", "grad_weight")
# Relative to the size of the terms summed; F(4x4) rounds more in float32.
RTOL = {numpy.float32: 2e-5, numpy.float64: 1e-12}


@st.composite
def grouped_geometries(draw):
    """(N, C, O, groups, kernel, stride, padding, in_size, out_size) of a
    grouped conv2d, 1 < groups < C."""
    groups = draw(st.sampled_from([2, 3, 4, 8, 32]))
    C, O = groups * draw(st.integers(2, 3)), groups * draw(st.integers(1, 3))
    stride = draw(st.sampled_from([1, 2]))
    kernel = 3 if stride == 1 else draw(st.sampled_from([1, 3]))
    padding = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(2))
    in_size = tuple(max(1, kernel - lo - hi) + draw(st.integers(0, 6)) for lo, hi in padding)
    out_size = tuple((n + lo + hi - kernel) // stride + 1 for n, (lo, hi) in zip(in_size, padding))
    N = draw(st.integers(1, 3))
    return N, C, O, groups, (kernel, kernel), (stride, stride), padding, in_size, out_size




@settings(max_examples=40, deadline=None)
@given(st.data(), grouped_geometries(), st.sampled_from([numpy.float32, numpy.float64]),
       st.sampled_from([2, 4]), st.sampled_from([1, 3]), st.booleans(), st.sampled_from([64, 512 << 10]))
def test_grouped_paths_match_the_reference(data, geometry, dtype, m, threads, bias, group_tile_bytes):
    """64-byte group tiles cut the im2col path's few-row GEMMs into bands
    of a row or so; 512 KB keeps whole images."""
    N, C, O, G, kernel, stride, padding, in_size, out_size = geometry
    x, w, b, gy = conv_arrays(data, N, C, O, G, kernel, in_size, out_size, dtype, bias)
    args = (stride, padding, (1, 1), G)
    calls = {"forward": (x, w, b, *args, out_size), "grad_input": (gy, w, *args, in_size),
             "grad_weight": (x, gy, kernel, *args)}
    # A 1x1 kernel without padding takes the pointwise path whatever the groups.
    gemm_path = "pointwise" if kernel == (1, 1) and all(p == (0, 0) for p in padding) else "im2col"
    expected_path = "winograd" if kernel == (3, 3) and stride == (1, 1) else gemm_path
    with pytest.MonkeyPatch.context() as patch:
        # So few channels a group: the forward sums directly (a 3x3 one: a
        # 1x1 one has no column matrix to spare), and so do the gradients at
        # stride 1; the rest take im2col.
        direct = kernel == (3, 3)
        stride_1 = direct and stride == (1, 1)
        for size, direction, expected in ((out_size, "forward", direct), (in_size, "grad_input", stride_1),
                                          (out_size, "grad_weight", stride_1)):
            path, _ = conv_strategy.conv_path(numpy, N, C, G, kernel, stride, padding, (1, 1), out_size, size,
                                              direction, O)
            assert path == ("grouped" if expected else gemm_path), direction
        patch.setattr(conv_strategy, "DIRECT_MAX_GROUP_CHANNELS", 0)   # the GEMM paths too
        patch.setattr(conv_strategy, "DIRECT_MAX_GRAD_INPUT_GROUP_CHANNELS", 0)
        patch.setattr(conv_strategy, "DIRECT_MAX_GRAD_WEIGHT_GROUP_CHANNELS", 0)
        patch.setattr(conv_strategy, "WINOGRAD_MIN_TILES", 0)      # small maps take Winograd too
        patch.setattr(conv_strategy, "WINOGRAD_MIN_SIZE", 0)
        patch.setattr(conv_strategy, "WINOGRAD_MIN_GROUP_CHANNELS", 1)   # and few channels a group
        patch.setattr(conv_strategy, "WINOGRAD_4X4_MIN_SIZE", 0 if m == 4 else 10**9)
        patch.setattr(winograd, "thread_count", lambda: threads)
        patch.setattr(numba_conv, "thread_count", lambda: threads)
        patch.setattr(numba_conv, "GROUP_TILE_BYTES", group_tile_bytes)
        for size, direction in ((out_size, "forward"), (in_size, "grad_input"), (out_size, "grad_weight")):
            path, _ = conv_strategy.conv_path(numpy, N, C, G, kernel, stride, padding, (1, 1), out_size, size,
                                              direction, O)          # Winograd's output: gy's for gx, else y's
            assert path == expected_path
        for direction in DIRECTIONS:
            pixels = N * out_size[0] * out_size[1] if direction == "grad_weight" else 1
            terms = C // G * kernel[0] * kernel[1] * pixels
            expected = conv_reference(direction)(*calls[direction])
            mine = getattr(conv_strategy, f"conv2d_{direction}")(*calls[direction])
            assert mine.shape == expected.shape and mine.dtype == expected.dtype
            numpy.testing.assert_allclose(mine, expected, rtol=RTOL[dtype], atol=RTOL[dtype] * terms)


def direct_geometries():
    """(N, C, O, groups, kernel, stride, padding, dilation, in_size,
    out_size) of a grouped conv2d the direct forward takes: any kernel
    (3x3 pairs its outputs, odd Og leaves one alone), stride, dilation;
    Cg from 2 (1 is depthwise), no 1x1 (pointwise)."""
    return conv_geometries(st.sampled_from([2, 3, 4, 8]), (2, 4), (1, 3), [(3, 3), (3, 3), (5, 5), (1, 3), (2, 4)],
                           ((1, 2), (1, 3)), max_padding=2, extra=7, images=3)


@settings(max_examples=40, deadline=None)
@given(st.data(), direct_geometries(), st.sampled_from([numpy.float32, numpy.float64]), st.sampled_from([1, 3]),
       st.booleans())
def test_the_direct_grouped_kernels_match_the_reference(data, geometry, dtype, threads, bias):
    N, C, O, G, kernel, stride, padding, dilation, in_size, out_size = geometry
    x, w, b, gy = conv_arrays(data, N, C, O, G, kernel, in_size, out_size, dtype, bias)
    geometry = (stride, padding, dilation, G)
    calls = {"forward": (x, w, b, *geometry, out_size), "grad_input": (gy, w, *geometry, in_size),
             "grad_weight": (x, gy, kernel, *geometry)}
    assert conv_strategy.conv_path(numpy, N, C, G, kernel, stride, padding, dilation, out_size,
                                   out_size) == ("grouped", 0)
    # The gradients at stride 1: gx is gy through the same kernel, the
    # filters flipped (where the kernel's reach covers the padding); gw
    # sums each tap directly. (The paths they take otherwise are tested above.)
    reach_fits = all(p[0] <= d * (k - 1) for p, d, k in zip(padding, dilation, kernel))
    stride_1 = stride == (1, 1)
    for direction, size, direct in (("grad_input", in_size, stride_1 and reach_fits),
                                    ("grad_weight", out_size, stride_1 and C // G <= 8)):
        path, _ = conv_strategy.conv_path(numpy, N, C, G, kernel, stride, padding, dilation, out_size, size,
                                          direction, O)
        assert (path == "grouped") == direct, direction
    for direction, (array, *rest) in calls.items():
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(threads_module, "thread_count", lambda: threads)
            mine = getattr(conv_strategy, f"conv2d_{direction}")(array, *rest)
        expected = conv_reference(direction)(array, *rest)
        assert mine.shape == expected.shape and mine.dtype == expected.dtype
        terms = {"forward": C // G * kernel[0] * kernel[1], "grad_input": O // G * kernel[0] * kernel[1],
                 "grad_weight": N * out_size[0] * out_size[1]}[direction]
        numpy.testing.assert_allclose(mine, expected, rtol=RTOL[dtype], atol=RTOL[dtype] * terms)
    # The direct weight-gradient kernel itself at every stride and dilation
    # drawn (the strategy sends it stride 1 only).
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(threads_module, "thread_count", lambda: threads)
        gw = numba_conv.grouped_conv2d_grad_weight(*calls["grad_weight"])
    numpy.testing.assert_allclose(gw, conv_reference("grad_weight")(*calls["grad_weight"]), rtol=RTOL[dtype],
                                  atol=RTOL[dtype] * N * out_size[0] * out_size[1])


def test_the_direct_grouped_forward_pairs_outputs_to_the_same_numbers():
    """Two output channels a pass (``_axpy9x2``) give each one the sums it
    gets alone: the same bits as the group's outputs computed one by one
    (one output channel takes the single path)."""
    rng = numpy.random.default_rng(3)
    x = rng.standard_normal((2, 8, 11, 9)).astype(numpy.float32)
    w = rng.standard_normal((8, 4, 3, 3)).astype(numpy.float32)        # 2 groups of 4 outputs: pairs
    args = ((1, 2), ((1, 1), (0, 0)), (1, 1), 2)
    y = numba_conv.grouped_conv2d_forward(x, w, None, *args, (11, 4))
    for o in range(8):                                                  # output o alone, from its group's inputs
        g = o // 4
        alone = numba_conv.grouped_conv2d_forward(x[:, 4 * g:4 * g + 4], w[o:o + 1], None, *args[:3], 1, (11, 4))
        numpy.testing.assert_array_equal(y[:, o], alone[:, 0])


@pytest.mark.parametrize("m", [2, 4])
def test_grouped_winograd_forward_is_the_same_on_any_number_of_threads(m, monkeypatch):
    """Each thread takes whole images, and each output is one product's
    column: the same numbers whatever the thread count."""
    rng = numpy.random.default_rng(m)
    G, N, C, O, size = 4, 5, 8, 12, (9, 10)
    x = rng.standard_normal((N, C) + size).astype(numpy.float32)
    w = rng.standard_normal((O, C // G, 3, 3)).astype(numpy.float32)
    results = []
    for threads in (1, 2, 3):
        monkeypatch.setattr(winograd, "thread_count", lambda: threads)
        results.append(winograd.winograd_conv2d(x, w, None, ((1, 1), (1, 1)), size, m, G))
    for y in results[1:]:
        numpy.testing.assert_array_equal(y, results[0])
