"""The 1x1 convolution's register-tile GEMM (``kernels/cpu/pointwise_gemm.py``)
against float64 products, and the rule by which ``conv.batched_matmul``
hands it an ungrouped float32 product.

Drawn: output channels that leave a tile's 8 rows part-empty, maps whose
last strip is part of 48 pixels (or all of the map is), sums of 1 to 70
steps, the weights read in place as w (C-ordered) and as w^T (a
transposed view, the input gradient's), with and without a bias, on 1 to
3 threads with every product shared out.
"""
import numpy
import pytest
from hypothesis import given, settings, strategies as st

from minicnn.functional import conv_strategy
from references import conv_reference

pytest.importorskip("numba")
from minicnn.kernels.cpu import conv as numba_conv, pointwise_gemm, threads as threads_module  # noqa: E402

# float32 sums of K products of standard normals, relative to sqrt(K).
RTOL = 2e-6


def _threads(patch, threads):
    """Run on ``threads`` threads, every product shared out."""
    patch.setattr(threads_module, "thread_count", lambda: threads)
    patch.setattr(pointwise_gemm, "PARALLEL_MACS", 0)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3), st.integers(1, 70), st.integers(1, 30), st.integers(1, 200), st.booleans(), st.booleans(),
       st.sampled_from([1, 2, 3]), st.integers(0, 2**31 - 1))
def test_the_product_matches_float64(N, K, O, L, transposed, bias, threads, seed):
    """y[n] = W @ x[n] + b for every image, W read in place as w (O, K) or
    as the transposed view of a (K, O) array."""
    rng = numpy.random.default_rng(seed)
    x = rng.standard_normal((N, K, L)).astype(numpy.float32)
    W = rng.standard_normal((O, K)).astype(numpy.float32)
    b = rng.standard_normal(O).astype(numpy.float32) if bias else None
    if transposed:
        stored = numpy.ascontiguousarray(W.T)                  # (K, O): W is its transposed view
        flat, w_row, w_step = stored.reshape(-1), 1, O
    else:
        flat, w_row, w_step = W.reshape(-1), K, 1
    with pytest.MonkeyPatch.context() as patch:
        _threads(patch, threads)
        y = pointwise_gemm.product(x, flat, w_row, w_step, O, b)
    expected = numpy.einsum("ok,nkl->nol", W.astype(numpy.float64), x.astype(numpy.float64))
    if bias:
        expected += b[:, None]
    assert y.shape == (N, O, L) and y.dtype == numpy.float32
    numpy.testing.assert_allclose(y, expected, rtol=RTOL, atol=RTOL * 4 * numpy.sqrt(K))


def test_the_rule_takes_ungrouped_float32_products_of_large_maps(monkeypatch):
    """batched_matmul hands a product to the tile for one group, float32, at
    least POINTWISE_MIN_PIXELS pixels an image, on a CPU where the tile
    runs at full speed (AVX-512: on AVX2 OpenBLAS's are faster); else the
    blocked GEMMs."""
    monkeypatch.setattr(numba_conv.implicit_gemm, "register_tiles", lambda: "avx512")
    least = numba_conv.POINTWISE_MIN_PIXELS

    def takes(G, L, dtype=numpy.float32):
        return numba_conv._pointwise_tile(numpy.zeros((G, 8, 4), dtype), numpy.zeros((2, G, 4, L), dtype))
    assert takes(1, least) and takes(1, 3136)
    assert not takes(1, least - 1)
    assert not takes(2, least)
    assert not takes(1, least, numpy.float64)
    for tiles in ("avx2", None):
        monkeypatch.setattr(numba_conv.implicit_gemm, "register_tiles", lambda: tiles)
        assert not takes(1, least)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("threads", [1, 2])
def test_the_strategy_on_the_tile_matches_the_reference(stride, threads, monkeypatch):
    """A 1x1 convolution's forward and input gradient through the strategy,
    on maps the tile takes (forward: its output; input gradient: gy's), at
    stride 1 and 2, against the NumPy reference in float64."""
    monkeypatch.setattr(numba_conv.implicit_gemm, "register_tiles", lambda: "avx512")
    _threads(monkeypatch, threads)
    rng = numpy.random.default_rng(stride * 10 + threads)
    N, C, O, size = 2, 37, 21, 27 * stride                         # 27x27 outputs: 729 pixels, a part strip
    out = (27, 27)
    assert out[0] * out[1] >= numba_conv.POINTWISE_MIN_PIXELS
    x = rng.standard_normal((N, C, size, size)).astype(numpy.float32)
    w = rng.standard_normal((O, C, 1, 1)).astype(numpy.float32)
    b = rng.standard_normal(O).astype(numpy.float32)
    gy = rng.standard_normal((N, O) + out).astype(numpy.float32)
    geometry = ((stride, stride), ((0, 0), (0, 0)), (1, 1), 1)
    calls = []
    product = pointwise_gemm.product
    monkeypatch.setattr(pointwise_gemm, "product", lambda *args: calls.append(1) or product(*args))
    y = conv_strategy.conv_forward(x, w, b, *geometry, out)
    gx = conv_strategy.conv_grad_input(gy, w, *geometry, (size, size))
    assert len(calls) == 2
    x64, w64, b64, gy64 = (a.astype(numpy.float64) for a in (x, w, b, gy))
    numpy.testing.assert_allclose(y, conv_reference("forward")(x64, w64, b64, *geometry, out), rtol=1e-5,
                                  atol=1e-5 * numpy.sqrt(C))
    numpy.testing.assert_allclose(gx, conv_reference("grad_input")(gy64, w64, *geometry, (size, size)), rtol=1e-5,
                                  atol=1e-5 * numpy.sqrt(O))
