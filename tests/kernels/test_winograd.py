"""Winograd F(2x2, 3x3), F(4x4, 3x3) and F(2x2, 5x5) convolution
(kernels/cpu/winograd.py) against the NumPy references of conv2d's three
directions and against torch.

The conv strategy (minicnn/functional/conv_strategy.py) takes the Winograd
path, with the Numba backend, for 3x3 and 5x5, stride-1, undilated
convolutions with enough output tiles, F(4x4) from
``WINOGRAD_4X4_MIN_SIZE`` output rows and columns. Tests set those
thresholds so that small hypothesis-drawn layers go through the variant
under test: sizes that the tile divides and ones it does not (a tile past
the edge), asymmetric paddings (including none and r - 1, where the input
gradient's padding r - 1 - p reaches 0), several images per chunk or one.
"""
import fractions

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
#: (m, r) of every F(m x m, r x r) the kernels have.
VARIANTS = [(2, 3), (4, 3), (2, 5)]


def use_tile(patch, m):
    """Take F(m x m, r x r) for every eligible convolution, however small
    (a 5x5 one has only m = 2)."""
    patch.setattr(conv_strategy, "WINOGRAD_MIN_TILES", 0)
    patch.setattr(conv_strategy, "WINOGRAD_MIN_SIZE", 0)
    patch.setattr(conv_strategy, "WINOGRAD_4X4_MIN_SIZE", 0 if m == 4 else 10**9)
    patch.setattr(conv_strategy, "WINOGRAD_5X5_MIN_TILES", 0)
    patch.setattr(conv_strategy, "WINOGRAD_5X5_MIN_SIZE", 0)
    patch.setattr(conv_strategy, "WINOGRAD_5X5_MIN_CHANNELS", 0)
    patch.setattr(conv_strategy, "WINOGRAD_5X5_YIELDS", (0, 0))
    patch.setattr(conv_strategy, "WINOGRAD_GRAD_INPUT_YIELDS", (0, 0))


@pytest.fixture(params=VARIANTS, ids=lambda v: f"F({v[0]}x{v[0]},{v[1]}x{v[1]})")
def always_winograd(request, monkeypatch):
    use_tile(monkeypatch, request.param[0])
    return request.param[1]


def references():
    """The NumPy references of conv2d's forward, input and weight gradient."""
    return tuple(registry.implementations(f"im2col_gemm_{direction}")["numpy"]
                 for direction in ("forward", "grad_input", "grad_weight"))


@st.composite
def winograd_layers(draw, r):
    """(N, C, O, padding, in_size, out_size) of an r x r stride-1 conv2d."""
    # C >= 2: one input channel is taken by the depthwise kernel first.
    N, C, O = draw(st.integers(1, 3)), draw(st.integers(2, 5)), draw(st.integers(1, 5))
    padding = tuple((draw(st.integers(0, r - 1)), draw(st.integers(0, r - 1))) for _ in range(2))
    in_size = tuple(max(1, r - lo - hi) + draw(st.integers(0, 10)) for lo, hi in padding)
    out_size = tuple(size + lo + hi - (r - 1) for size, (lo, hi) in zip(in_size, padding))
    return N, C, O, padding, in_size, out_size


@pytest.mark.parametrize("variant", VARIANTS)
@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.data(), st.sampled_from([numpy.float32, numpy.float64]),
       st.booleans(), st.sampled_from([64, 4 << 20]), st.sampled_from([1, 2]))
def test_winograd_primitives_match_the_reference(variant, seed, data, dtype, bias, chunk_bytes, threads):
    (m, r) = variant
    check_primitives(m, r, seed, data.draw(winograd_layers(r), label="layer"), dtype, bias, chunk_bytes, threads)


@pytest.mark.parametrize("variant, layer", [
    ((2, 3), (3, 3, 4, ((1, 1), (1, 1)), (5, 7), (5, 7))),
    ((4, 3), (3, 3, 4, ((1, 1), (1, 1)), (5, 7), (5, 7))),
    ((2, 5), (3, 3, 4, ((2, 2), (2, 2)), (5, 7), (5, 7))),
    ((2, 5), (2, 3, 2, ((4, 0), (0, 4)), (4, 6), (4, 6))),
])
def test_winograd_with_odd_sizes_and_several_chunks_on_two_threads(variant, layer):
    check_primitives(*variant, 0, layer, numpy.float64, True, 64, 2)


def check_primitives(m, r, seed, layer, dtype, bias, chunk_bytes, threads):
    """The strategy's three directions through F(m x m, r x r) against the
    NumPy references."""
    N, C, O, padding, in_size, out_size = layer
    rng = numpy.random.default_rng(seed)
    x = rng.standard_normal((N, C) + in_size).astype(dtype)
    w = rng.standard_normal((O, C, r, r)).astype(dtype)
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
            (conv_strategy.conv2d_forward(x, w, b, *args, out_size), forward(x, w, b, *args, out_size), C * r * r),
            (conv_strategy.conv2d_grad_input(gy, w, *args, in_size), grad_input(gy, w, *args, in_size), O * r * r),
            (conv_strategy.conv2d_grad_weight(x, gy, (r, r), *args), grad_weight(x, gy, (r, r), *args),
             N * out_size[0] * out_size[1])]
        # (one output pixel and no padding is the dense path's, taken first)
        dense = out_size == (1, 1) and not any(lo or hi for lo, hi in padding)
        assert conv_strategy.conv_path(numpy, N, C, 1, (r, r), (1, 1), padding, (1, 1), out_size,
                                       out_size) == (("dense", 0) if dense else ("winograd", m))
    for mine, expected, terms in results:
        assert mine.shape == expected.shape and mine.dtype == expected.dtype
        numpy.testing.assert_allclose(mine, expected, rtol=RTOL[dtype], atol=RTOL[dtype] * terms)


def test_the_path_is_taken_only_where_it_applies():
    eligible = dict(kernel_size=(3, 3), stride=(1, 1), dilation=(1, 1), groups=1, xp=numpy)
    assert conv_strategy.winograd_tile(N=8, **eligible, out_size=(56, 56)) == 4
    assert conv_strategy.winograd_tile(N=8, **eligible, out_size=(14, 14)) == 2
    assert conv_strategy.winograd_tile(N=16, **eligible, out_size=(2, 2)) == 0     # 16 tiles: too few
    assert conv_strategy.winograd_tile(N=4, **eligible, out_size=(8, 8)) == 0      # 64 tiles: too few
    assert conv_strategy.winograd_tile(N=1, **eligible, out_size=(28, 28)) == 4    # 196 tiles, one image
    assert conv_strategy.winograd_tile(N=1, **eligible, out_size=(14, 14)) == 0    # 49 tiles
    assert conv_strategy.winograd_tile(N=32, **eligible, out_size=(7, 7)) == 0     # 512 tiles, but 7x7 maps
    assert conv_strategy.winograd_tile(N=32, **eligible, out_size=(8, 8)) == 2     # 512 tiles of 8x8 maps
    for change in [dict(kernel_size=(3, 2)), dict(stride=(2, 1)), dict(dilation=(2, 2))]:
        assert conv_strategy.winograd_tile(N=8, **{**eligible, **change}, out_size=(56, 56)) == 0
    assert conv_strategy.winograd_tile(N=8, **{**eligible, "groups": 2}, out_size=(56, 56)) == 4   # grouped too
    # 5x5: F(2x2) only, on outputs of WINOGRAD_5X5_MIN_SIZE and up, with
    # WINOGRAD_5X5_MIN_TILES tiles
    five = {**eligible, "kernel_size": (5, 5)}
    assert conv_strategy.winograd_tile(N=8, **five, out_size=(28, 28)) == 2
    assert conv_strategy.winograd_tile(N=32, **five, out_size=(7, 7)) == 0      # a small map
    assert conv_strategy.winograd_tile(N=1, **five, out_size=(14, 14)) == 0     # 49 tiles: too few
    assert conv_strategy.winograd_tile(N=8, **{**five, "stride": (2, 2)}, out_size=(28, 28)) == 0
    # ... and WINOGRAD_5X5_MIN_CHANNELS input channels a group (LeNet-5's C3 has 6)
    layer = dict(kernel_size=(5, 5), stride=(1, 1), padding=((2, 2), (2, 2)), dilation=(1, 1),
                 out_size=(28, 28), winograd_size=(28, 28))
    assert conv_strategy.conv_path(numpy, 8, 16, 1, **layer) == ("winograd", 2)
    assert conv_strategy.conv_path(numpy, 8, 6, 1, **layer) == ("im2col", 0)
    previous = registry.get_backend()
    try:
        registry.set_backend("numpy")                                            # a backend without Winograd
        assert conv_strategy.winograd_tile(N=8, **eligible, out_size=(56, 56)) == 0
        assert conv_strategy.winograd_tile(N=8, **five, out_size=(28, 28)) == 0
    finally:
        registry.set_backend(previous)


@pytest.mark.parametrize("m, r", VARIANTS)
def test_the_matrices_compute_the_correlation_exactly(m, r):
    """A^T [(G g) * (B^T d)] is the correlation of every a-long d with
    every r-long g, m outputs, in exact rational arithmetic (the matrices'
    entries are small fractions): each output a polynomial identity in d
    and g, checked on the products d_i g_k of unit vectors."""
    AT, G, BT = (numpy.vectorize(lambda v: fractions.Fraction(v).limit_denominator(1000), otypes=[object])(matrix)
                 for matrix in winograd.TRANSFORMS[m, r])
    a = m + r - 1
    assert AT.shape == (m, a) and G.shape == (a, r) and BT.shape == (a, a)
    for i in range(a):
        for k in range(r):
            d, g = numpy.zeros(a, object), numpy.zeros(r, object)
            d[i], g[k] = 1, 1
            y = AT.dot(G.dot(g) * BT.dot(d))
            expected = [1 if i - out == k else 0 for out in range(m)]      # y[out] = sum_k d[out + k] g[k]
            assert list(y) == expected, (i, k, y)


@pytest.mark.parametrize("m, r", VARIANTS)
def test_the_transforms_are_those_of_the_matrices(m, r):
    """Each kernel applies its matrices as the formulas say, checked on
    random data with NumPy's einsum: U = G g G^T, V = B^T d B on the
    tiles, y = A^T M A + b, dM = A g A^T, and the adjoints are adjoint."""
    AT, G, BT = winograd.TRANSFORMS[m, r]
    a, S = m + r - 1, winograd.spare_tiles(m, r)
    filter_transform, filter_adjoint, input_transform, output_transform, output_adjoint = \
        winograd.kernels(m, numpy.float64, r)
    rng = numpy.random.default_rng(m)
    g = rng.standard_normal((3, 2, r, r))
    U = numpy.empty((a * a, 3, 2))
    filter_transform(g, U, 0, 1)
    expected = numpy.einsum("ik,ockl,jl->ijoc", G, g, G).reshape(a * a, 3, 2)
    numpy.testing.assert_allclose(U, expected, rtol=1e-13, atol=1e-13)
    u = rng.standard_normal((a * a, 3, 2))
    gw = numpy.empty_like(g)
    filter_adjoint(u, gw, 0, 1)
    assert abs(numpy.sum(U * u) - numpy.sum(g * gw)) < 1e-12 * numpy.abs(U * u).sum()

    # One image, 2 x 2 tiles of a (2m - 1) x 2m output: the second row of
    # tiles reaches one row past the bottom edge. Padding 1 at the top and
    # left; beyond x's far edges, zeros.
    OH, OW = 2 * m - 1, 2 * m
    x = rng.standard_normal((1, 2, OH + r - 1, OW + r - 1))
    TH, TW = winograd.tile_grid((OH, OW), m)
    T = TH * (TW + S)                                     # S spare tiles a row
    V = numpy.empty((a * a, 2, T))
    input_transform(x, V, 0, 1, 1, TH, TW)
    padded = numpy.pad(x[0], ((0, 0), (1, a), (1, a)))
    for th in range(TH):
        for tw in range(TW):
            d = padded[:, m * th:m * th + a, m * tw:m * tw + a]
            tile = numpy.einsum("ir,crk,jk->ijc", BT, d, BT).reshape(a * a, 2)
            numpy.testing.assert_allclose(V[:, :, th * (TW + S) + tw], tile, rtol=1e-13, atol=1e-13)

    M = rng.standard_normal((a * a, 3, T))
    b = rng.standard_normal(3)
    y = numpy.empty((1, 3, OH, OW))
    output_transform(M, b, y, 0, TH, TW, 0)
    gy = rng.standard_normal(y.shape)
    dM = numpy.empty_like(M)
    output_adjoint(gy, dM, 0, TH, TW, 0)
    for th in range(TH):
        for tw in range(TW):
            mt = M[:, :, th * (TW + S) + tw].reshape(a, a, 3)
            full = numpy.einsum("ri,ijo,qj->orq", AT, mt, AT) + b[:, None, None]
            rows, cols = slice(m * th, min(m * th + m, OH)), slice(m * tw, min(m * tw + m, OW))
            numpy.testing.assert_allclose(y[0, :, rows, cols], full[:, :rows.stop - rows.start, :cols.stop - cols.start],
                                          rtol=1e-13, atol=1e-13)
    spare = [th * (TW + S) + tw for th in range(TH) for tw in range(TW, TW + S)]
    assert not dM[:, :, spare].any()                      # spare tiles get no gradient
    assert abs(numpy.sum(gy * (y - b[:, None, None])) - numpy.sum(M * dM)) < 1e-12 * numpy.abs(M * dM).sum()


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("shape, padding", [((2, 3, 8, 7), 1), ((1, 2, 6, 6), 0), ((2, 4, 5, 9), 2)])
def test_conv2d_through_winograd_matches_torch(always_winograd, dtype, shape, padding):
    r = always_winograd
    rng = numpy.random.default_rng(7)
    C = shape[1]
    padding += (r - 3) // 2                   # 5x5: the same output sizes, "same" where the 3x3 was
    arrays = [rng.standard_normal(shape), rng.standard_normal((5, C, r, r)), rng.standard_normal(5)]
    check_parity(lambda x, w, b: F.conv2d(x, w, b, padding=padding),
                 lambda x, w, b: torch.nn.functional.conv2d(x, w, b, padding=padding),
                 arrays, dtype=dtype, noncontiguous_inputs=True,
                 **(dict(rtol=1e-4, atol=1e-5) if dtype == numpy.float32 else {}))


def test_gradcheck_through_winograd(always_winograd):
    r = always_winograd
    previous = registry.get_backend()
    registry.set_backend("numba")
    try:
        rng = numpy.random.default_rng(8)
        x = mc.tensor(rng.standard_normal((2, 2, 5, 4)), requires_grad=True)
        w = mc.tensor(rng.standard_normal((3, 2, r, r)), requires_grad=True)
        same = ((r - 1) // 2,) * 2
        assert conv_strategy.conv_path(numpy, 2, 2, 1, (r, r), (1, 1), (same, same), (1, 1), (5, 4),
                                       (5, 4))[0] == "winograd"
        assert gradcheck(lambda x, w: F.conv2d(x, w, padding=(r - 1) // 2), (x, w))
    finally:
        registry.set_backend(previous)


def test_chunks_are_whole_images_or_bands_of_one():
    """Whole images while there are at least as many as threads and one
    fits the budget; otherwise bands of rows of tiles of one image, at
    least one per thread, each within the budget; every row of tiles of
    every image exactly once."""
    def covered(chunks, N, TH):
        return sorted((n0 + i, th0 + r) for n0, nb, th0, R in chunks for i in range(nb) for r in range(R)) == \
            [(n, th) for n in range(N) for th in range(TH)]

    assert winograd._chunks(8, 14, 100, 2, 10**9) == [(0, 4, 0, 14), (4, 4, 0, 14)]
    one = winograd._chunks(1, 14, 100, 2, 10**9)                   # inference: one image, two threads
    assert one == [(0, 1, 0, 7), (0, 1, 7, 7)]
    tight = winograd._chunks(3, 14, 100, 2, 450)                  # an image over the budget: 4 rows a band
    assert all(nb == 1 and R <= 4 for _, nb, _, R in tight)
    for chunks, N in [(one, 1), (tight, 3), (winograd._chunks(5, 9, 64, 4, 300), 5)]:
        assert covered(chunks, N, 14 if N < 5 else 9)


@pytest.mark.parametrize("m", [2, 4])
def test_one_image_on_two_threads_is_cut_into_bands_with_the_same_result(m, monkeypatch):
    """The same result up to float32 round-off, not to the bit: a band's
    product has fewer tile columns than the whole image's, and OpenBLAS's
    Haswell sgemm (a Zen 3 CPU) computes a product's last columns, when
    their count is not a multiple of 8, with other kernels, whose sums
    round differently (its AVX-512 kernels gave the same bits). A band
    started on the wrong row or tile would be off by the data's size."""
    rng = numpy.random.default_rng(m)
    x = rng.standard_normal((1, 16, 23, 21)).astype(numpy.float32)
    w = rng.standard_normal((8, 16, 3, 3)).astype(numpy.float32)
    results = []
    for threads in (1, 2):
        monkeypatch.setattr(winograd, "thread_count", lambda: threads)
        results.append(winograd.winograd_conv2d(x, w, None, ((1, 1), (1, 1)), (23, 21), m))
    assert len(winograd._chunks(1, -(-23 // m), 1, 2, 1 << 30)) == 2
    numpy.testing.assert_allclose(results[0], results[1], rtol=1e-4, atol=1e-4)
    reference = registry.implementations("im2col_gemm_forward")["numpy"](x, w, None, (1, 1), ((1, 1), (1, 1)),
                                                                        (1, 1), 1, (23, 21))
    numpy.testing.assert_allclose(results[1], reference, rtol=1e-4, atol=1e-4)
