"""The float32 depthwise convolution with 16 channels a vector
(``kernels/cpu/depthwise_lanes.py``) against the NumPy reference (im2col,
then one matmul, in float64), and the CPU's depthwise primitives (the
forward, the input gradient at stride 1) taking it.

Drawn: channel counts that leave part of a 16-channel block empty, any
kernel, stride and dilation, padding up to the kernel's reach on each
side (asymmetric too), maps narrower and wider than 16 columns, bands of
one row to the whole map, batches below and above the thread count.
"""
import numpy
import pytest
from hypothesis import assume, given, settings, strategies as st

from minicnn.kernels import registry
from references import conv_reference

pytest.importorskip("numba")
from minicnn.kernels.cpu import conv as numba_conv, depthwise_lanes, implicit_gemm  # noqa: E402
from minicnn.kernels.cpu import threads as threads_module  # noqa: E402

RTOL = 2e-5


@st.composite
def geometries(draw):
    """(N, C, H, W, kernel, stride, padding, dilation, out_size)."""
    kernel = draw(st.sampled_from([(3, 3), (3, 3), (5, 5), (7, 7), (1, 7), (2, 4), (1, 1)]))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    reach = [d * (k - 1) for d, k in zip(dilation, kernel)]
    padding = tuple((draw(st.integers(0, r)), draw(st.integers(0, r))) for r in reach)
    H, W = draw(st.integers(1, 20)), draw(st.integers(1, 40))
    out_size = tuple((n + lo + hi - r - 1) // s + 1 for n, (lo, hi), r, s in zip((H, W), padding, reach, stride))
    assume(min(out_size) >= 1)
    return draw(st.integers(1, 4)), draw(st.integers(1, 40)), H, W, kernel, stride, padding, dilation, out_size


@settings(max_examples=80, deadline=None)
@given(geometries(), st.integers(0, 2**32 - 1), st.sampled_from([1, 2, 3]), st.sampled_from([0, 2048, 1 << 20]),
       st.booleans())
def test_the_kernel_matches_the_reference(geometry, seed, threads, band_bytes, bias):
    N, C, H, W, kernel, stride, padding, dilation, out_size = geometry
    rng = numpy.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(numpy.float32)
    w = rng.standard_normal((C, 1) + kernel).astype(numpy.float32)
    b = rng.standard_normal(C).astype(numpy.float32) if bias else None
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(threads_module, "thread_count", lambda: threads)
        patch.setattr(depthwise_lanes, "BAND_BYTES", band_bytes)      # 0: bands of one output row
        y = depthwise_lanes.depthwise_conv2d(x, w, b, stride, padding, dilation, out_size)
    expected = conv_reference("forward")(x.astype(numpy.float64), w.astype(numpy.float64),
                                         None if b is None else b.astype(numpy.float64), stride, padding, dilation,
                                         C, out_size)
    assert y.shape == expected.shape and y.dtype == numpy.float32
    numpy.testing.assert_allclose(y, expected, rtol=RTOL, atol=RTOL * kernel[0] * kernel[1])


@pytest.mark.parametrize("dtype, multiplier, tiles, taken", [(numpy.float32, 1, "avx512", True),
                                                              (numpy.float64, 1, "avx512", False),
                                                              (numpy.float32, 2, "avx512", False),
                                                              (numpy.float32, 1, "avx2", True),
                                                              (numpy.float32, 1, None, False)])
def test_the_cpu_primitive_takes_it_for_float32_one_output_a_channel(dtype, multiplier, tiles, taken, monkeypatch):
    """The Numba backend's depthwise forward runs this kernel for float32
    with one output channel a channel where the CPU runs it at full
    speed (AVX2 too, at stride 2), and the planar kernels otherwise; the
    same numbers either way."""
    rng = numpy.random.default_rng(multiplier)
    x = rng.standard_normal((2, 24, 11, 13)).astype(dtype)
    w = rng.standard_normal((24 * multiplier, 1, 3, 3)).astype(dtype)
    calls = []
    original = depthwise_lanes.depthwise_conv2d
    monkeypatch.setattr(depthwise_lanes, "depthwise_conv2d", lambda *a: calls.append(1) or original(*a))
    monkeypatch.setattr(implicit_gemm, "register_tiles", lambda: tiles)
    args = ((2, 2), ((1, 1), (1, 1)), (1, 1), 24, (6, 7))
    y = registry.implementations("depthwise_conv2d_forward")["numba"](x, w, None, *args)
    assert bool(calls) == taken
    expected = conv_reference("forward")(x.astype(numpy.float64), w.astype(numpy.float64), None, *args)
    numpy.testing.assert_allclose(y, expected, rtol=RTOL, atol=RTOL * 9)


@settings(max_examples=40, deadline=None)
@given(geometries(), st.integers(0, 2**32 - 1), st.sampled_from(["avx512", None]))
def test_the_input_gradient_at_stride_1_matches_the_reference(geometry, seed, tiles):
    """The CPU's depthwise input gradient: at stride 1 (padding up to the
    reach) the 16-channel forward of gy with the flipped taps where the
    CPU runs it at full speed, else the planar kernel; both equal the
    reference."""
    N, C, H, W, kernel, _, padding, dilation, _ = geometry
    reach = [d * (k - 1) for d, k in zip(dilation, kernel)]
    out_size = tuple(n + lo + hi - r for n, (lo, hi), r in zip((H, W), padding, reach))
    rng = numpy.random.default_rng(seed)
    gy = rng.standard_normal((N, C) + out_size).astype(numpy.float32)
    w = rng.standard_normal((C, 1) + kernel).astype(numpy.float32)
    args = ((1, 1), padding, dilation, C, (H, W))
    calls = []
    original = depthwise_lanes.depthwise_conv2d
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(depthwise_lanes, "depthwise_conv2d", lambda *a: calls.append(1) or original(*a))
        patch.setattr(implicit_gemm, "register_tiles", lambda: tiles)
        gx = registry.implementations("depthwise_conv2d_grad_input")["numba"](gy, w, *args)
    assert bool(calls) == (tiles is not None)
    expected = conv_reference("grad_input")(gy.astype(numpy.float64), w.astype(numpy.float64), *args)
    assert gx.shape == expected.shape and gx.dtype == numpy.float32
    numpy.testing.assert_allclose(gx, expected, rtol=RTOL, atol=RTOL * kernel[0] * kernel[1])


def test_on_avx2_short_kernels_on_long_rows_keep_the_planar_kernels(monkeypatch):
    """On AVX2 a depthwise layer of at most 9 taps at stride 1 keeps the
    planar kernels from ``LANES_AVX2_PLANAR_ROWS`` pixels a row (the
    forward's output rows, the input gradient's input rows); more taps, a
    stride, or shorter rows run 16 channels a vector, and AVX-512 runs
    them all so."""
    rows, f32 = numba_conv.LANES_AVX2_PLANAR_ROWS, numpy.float32
    monkeypatch.setattr(implicit_gemm, "register_tiles", lambda: "avx2")
    for direction in ("forward", "grad_input"):
        assert not numba_conv._lanes(f32, True, (3, 3), (1, 1), rows[direction], direction)
        assert not numba_conv._lanes(f32, True, (1, 9), (1, 1), rows[direction], direction)
        assert numba_conv._lanes(f32, True, (3, 3), (1, 1), rows[direction] - 1, direction)
        assert numba_conv._lanes(f32, True, (5, 5), (1, 1), 224, direction)
    assert numba_conv._lanes(f32, True, (3, 3), (2, 2), 224, "forward")
    assert not numba_conv._lanes(numpy.float64, True, (5, 5), (1, 1), 7, "forward")
    monkeypatch.setattr(implicit_gemm, "register_tiles", lambda: "avx512")
    assert numba_conv._lanes(f32, True, (3, 3), (1, 1), 224, "forward")
