"""Winograd F(2x2, 3x3) and F(4x4, 3x3) convolution (kernels/cpu/winograd.py)
against the NumPy references of conv2d's three directions and against torch.

The conv strategy (minicnn/functional/conv_strategy.py) takes the Winograd
path, with the Numba backend, for 3x3, stride-1, undilated, ungrouped
convolutions with at least ``WINOGRAD_MIN_TILES`` output tiles, F(4x4)
from ``WINOGRAD_4X4_MIN_SIZE`` output rows and columns. Tests set those thresholds so that small hypothesis-drawn layers
go through the tile size under test: sizes that the tile divides and
ones it does not (a tile past the edge), asymmetric paddings (including
none and 2, where the input gradient's padding 2 - p reaches 0), several
images per chunk or one.
"""
import numpy
import pytest
import torch
from hypothesis import example, given, settings, strategies as st

import minicnn as mc
import minicnn.nn.functional as F
from minicnn.kernels import registry
from minicnn import gradcheck
from parity import check_parity

from minicnn.functional import conv_strategy

pytest.importorskip("numba")
from minicnn.kernels.cpu import winograd  # noqa: E402

# The transforms add and subtract a few extra terms (with halves, and for
# F(4x4) sixths and factors up to 8), so the rounding differs from the
# direct sum's by a few units of the terms' size.
RTOL = {numpy.float32: 5e-5, numpy.float64: 1e-12}
TILES = [2, 4]


def use_tile(patch, m):
    """Take F(m x m, 3x3) for every eligible convolution, however small."""
    patch.setattr(conv_strategy, "WINOGRAD_MIN_TILES", 0)
    patch.setattr(conv_strategy, "WINOGRAD_4X4_MIN_SIZE", 0 if m == 4 else 10**9)


@pytest.fixture(params=TILES)
def always_winograd(request, monkeypatch):
    use_tile(monkeypatch, request.param)


def references():
    """The NumPy references of conv2d's forward, input and weight gradient."""
    return tuple(registry.implementations(f"im2col_gemm_{direction}")["numpy"]
                 for direction in ("forward", "grad_input", "grad_weight"))


@st.composite
def winograd_layers(draw):
    """(N, C, O, padding, in_size, out_size) of a 3x3 stride-1 conv2d."""
    # C >= 2: one input channel is taken by the depthwise kernel first.
    N, C, O = draw(st.integers(1, 3)), draw(st.integers(2, 5)), draw(st.integers(1, 5))
    padding = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(2))
    in_size = tuple(max(1, 3 - lo - hi) + draw(st.integers(0, 10)) for lo, hi in padding)
    out_size = tuple(size + lo + hi - 2 for size, (lo, hi) in zip(in_size, padding))
    return N, C, O, padding, in_size, out_size


@pytest.mark.parametrize("m", TILES)
@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), winograd_layers(), st.sampled_from([numpy.float32, numpy.float64]),
       st.booleans(), st.sampled_from([64, 4 << 20]), st.sampled_from([1, 2]))
@example(seed=0, layer=(3, 3, 4, ((1, 1), (1, 1)), (5, 7), (5, 7)), dtype=numpy.float64, bias=True,
         chunk_bytes=64, threads=2).via("odd sizes, several chunks on two threads")
def test_winograd_primitives_match_the_reference(m, seed, layer, dtype, bias, chunk_bytes, threads):
    N, C, O, padding, in_size, out_size = layer
    rng = numpy.random.default_rng(seed)
    x = rng.standard_normal((N, C) + in_size).astype(dtype)
    w = rng.standard_normal((O, C, 3, 3)).astype(dtype)
    b = rng.standard_normal(O).astype(dtype) if bias else None
    gy = rng.standard_normal((N, O) + out_size).astype(dtype)
    forward, grad_input, grad_weight = references()
    args = ((1, 1), padding, (1, 1), 1)
    with pytest.MonkeyPatch.context() as patch:
        use_tile(patch, m)
        # A tiny chunk budget makes every image its own chunk (and gw a sum
        # over chunks); a large one takes them all at once.
        patch.setattr(winograd, "CHUNK_BYTES", chunk_bytes)
        # Two threads take a share of the chunks each (of gw's sum, too).
        patch.setattr(winograd, "thread_count", lambda: threads)
        results = [
            (conv_strategy.conv2d_forward(x, w, b, *args, out_size), forward(x, w, b, *args, out_size), C * 9),
            (conv_strategy.conv2d_grad_input(gy, w, *args, in_size), grad_input(gy, w, *args, in_size), O * 9),
            (conv_strategy.conv2d_grad_weight(x, gy, (3, 3), *args), grad_weight(x, gy, (3, 3), *args),
             N * out_size[0] * out_size[1])]
    for mine, expected, terms in results:
        assert mine.shape == expected.shape and mine.dtype == expected.dtype
        numpy.testing.assert_allclose(mine, expected, rtol=RTOL[dtype], atol=RTOL[dtype] * terms)


def test_the_path_is_taken_only_where_it_applies():
    eligible = dict(kernel_size=(3, 3), stride=(1, 1), dilation=(1, 1), groups=1, xp=numpy)
    assert conv_strategy.winograd_tile(N=8, **eligible, out_size=(56, 56)) == 4
    assert conv_strategy.winograd_tile(N=8, **eligible, out_size=(14, 14)) == 2
    assert conv_strategy.winograd_tile(N=16, **eligible, out_size=(2, 2)) == 0     # 16 tiles: too few
    for change in [dict(kernel_size=(3, 2)), dict(stride=(2, 1)), dict(dilation=(2, 2))]:
        assert conv_strategy.winograd_tile(N=8, **{**eligible, **change}, out_size=(56, 56)) == 0
    assert conv_strategy.winograd_tile(N=8, **{**eligible, "groups": 2}, out_size=(56, 56)) == 4   # grouped too
    previous = registry.get_backend()
    try:
        registry.set_backend("numpy")                                            # a backend without Winograd
        assert conv_strategy.winograd_tile(N=8, **eligible, out_size=(56, 56)) == 0
    finally:
        registry.set_backend(previous)


@pytest.mark.parametrize("m", TILES)
def test_the_transforms_are_those_of_the_matrices(m):
    """Each kernel applies its matrices as the formulas say, checked on
    random data with NumPy's einsum: U = G g G^T, V = B^T d B on the
    tiles, y = A^T M A + b, dM = A g A^T, and the adjoints are adjoint."""
    AT, G, BT = winograd.TRANSFORMS[m]
    a = m + 2
    filter_transform, filter_adjoint, input_transform, output_transform, output_adjoint = \
        winograd.kernels(m, numpy.float64)
    rng = numpy.random.default_rng(m)
    g = rng.standard_normal((3, 2, 3, 3))
    U = numpy.empty((a * a, 3, 2))
    filter_transform(g, U, 0, 1)
    expected = numpy.einsum("ik,ockl,jl->ijoc", G, g, G).reshape(a * a, 3, 2)
    numpy.testing.assert_allclose(U, expected, rtol=1e-13, atol=1e-13)
    u = rng.standard_normal((a * a, 3, 2))
    gw = numpy.empty_like(g)
    filter_adjoint(u, gw, 0, 1)
    assert abs(numpy.sum(U * u) - numpy.sum(g * gw)) < 1e-12 * numpy.abs(U * u).sum()

    # One image, 2 x 2 tiles of a (2m - 1) x 2m output: the second row of
    # tiles reaches one row past the bottom edge.
    OH, OW = 2 * m - 1, 2 * m
    x = rng.standard_normal((1, 2, OH + 2, OW + 2))
    TH, TW = winograd.tile_grid((OH, OW), m)
    T = winograd.tiles_per_image((OH, OW), m)
    V = numpy.empty((a * a, 2, T))
    input_transform(x, V, 0, 1, 1, TH, TW)
    padded = numpy.pad(x[0], ((0, 0), (1, m * TH + 2 - OH - 1), (1, m * TW + 2 - OW - 1)))
    for th in range(TH):
        for tw in range(TW):
            d = padded[:, m * th:m * th + a, m * tw:m * tw + a]
            tile = numpy.einsum("ir,crk,jk->ijc", BT, d, BT).reshape(a * a, 2)
            numpy.testing.assert_allclose(V[:, :, th * (TW + 1) + tw], tile, rtol=1e-13, atol=1e-13)

    M = rng.standard_normal((a * a, 3, T))
    b = rng.standard_normal(3)
    y = numpy.empty((1, 3, OH, OW))
    output_transform(M, b, y, 0, TH, TW)
    gy = rng.standard_normal(y.shape)
    dM = numpy.empty_like(M)
    output_adjoint(gy, dM, 0, TH, TW)
    for th in range(TH):
        for tw in range(TW):
            mt = M[:, :, th * (TW + 1) + tw].reshape(a, a, 3)
            full = numpy.einsum("ri,ijo,qj->orq", AT, mt, AT) + b[:, None, None]
            rows, cols = slice(m * th, min(m * th + m, OH)), slice(m * tw, min(m * tw + m, OW))
            numpy.testing.assert_allclose(y[0, :, rows, cols], full[:, :rows.stop - rows.start, :cols.stop - cols.start],
                                          rtol=1e-13, atol=1e-13)
    spare = [th * (TW + 1) + TW for th in range(TH)]
    assert not dM[:, :, spare].any()                      # spare tiles get no gradient
    assert abs(numpy.sum(gy * (y - b[:, None, None])) - numpy.sum(M * dM)) < 1e-12 * numpy.abs(M * dM).sum()


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("shape, padding", [((2, 3, 8, 7), 1), ((1, 2, 6, 6), 0), ((2, 4, 5, 9), 2)])
def test_conv2d_through_winograd_matches_torch(always_winograd, dtype, shape, padding):
    rng = numpy.random.default_rng(7)
    C = shape[1]
    arrays = [rng.standard_normal(shape), rng.standard_normal((5, C, 3, 3)), rng.standard_normal(5)]
    check_parity(lambda x, w, b: F.conv2d(x, w, b, padding=padding),
                 lambda x, w, b: torch.nn.functional.conv2d(x, w, b, padding=padding),
                 arrays, dtype=dtype, noncontiguous_inputs=True,
                 **(dict(rtol=1e-4, atol=1e-5) if dtype == numpy.float32 else {}))


def test_gradcheck_through_winograd(always_winograd):
    previous = registry.get_backend()
    registry.set_backend("numba")
    try:
        rng = numpy.random.default_rng(8)
        x = mc.tensor(rng.standard_normal((2, 2, 5, 4)), requires_grad=True)
        w = mc.tensor(rng.standard_normal((3, 2, 3, 3)), requires_grad=True)
        assert gradcheck(lambda x, w: F.conv2d(x, w, padding=1), (x, w))
    finally:
        registry.set_backend(previous)
