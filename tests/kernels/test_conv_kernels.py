"""The conv strategy (minicnn/functional/conv_strategy.py) and its Numba
primitives against the NumPy reference, and conv2d / conv_transpose2d
against torch with each CPU backend selected.

Every Numba primitive (im2col, col2im, im2col_gemm_*, depthwise_conv2d_*,
batched_matmul*) must return what its NumPy version returns, and the
strategy what the reference (the im2col path, all NumPy) returns, on
hypothesis-drawn geometries: strides, asymmetric paddings, dilations,
groups and depthwise multipliers, float32 and float64, and tile budgets
small enough that the tiled GEMM path cuts images into bands of rows or
packs several images into one tile. Each of the strategy's paths is also
checked by name, with each backend, and the NumPy backend is checked to
call no Numba primitive at all.
"""
import numpy
import pytest
import torch
from hypothesis import assume, given, settings, strategies as st

import minicnn as mc
import minicnn.nn.functional as F
from minicnn.functional import conv_strategy
from minicnn.functional.conv import Conv2d, ConvGeometry
from minicnn.kernels import registry
from parity import check_parity
from references import conv_reference, selected
from strategies import conv_arrays

pytest.importorskip("numba")
from minicnn.kernels.cpu import conv as numba_conv  # noqa: E402

DIRECTIONS = ("forward", "grad_input", "grad_weight")
# Tolerances relative to the size of the terms summed: the two versions add
# the same products in different orders.
RTOL = {numpy.float32: 2e-5, numpy.float64: 1e-12}


def assert_same(mine, reference, dtype, scale=1.0):
    assert mine.shape == reference.shape and mine.dtype == reference.dtype
    numpy.testing.assert_allclose(mine, reference, rtol=RTOL[dtype], atol=RTOL[dtype] * scale)


@st.composite
def conv_geometries(draw):
    """(N, C, O, groups, kernel, stride, padding, dilation, in_size, out_size)
    of a valid conv2d; groups == C is depthwise, with O = multiplier * C."""
    kind = draw(st.sampled_from(["dense", "grouped", "depthwise", "pointwise", "one window"]))
    N = draw(st.integers(1, 3))
    if kind == "depthwise":
        C = draw(st.integers(1, 4))
        groups, O = C, C * draw(st.integers(1, 3))
    elif kind == "grouped":
        groups = draw(st.integers(2, 3))
        C, O = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    else:
        groups, C, O = 1, draw(st.integers(1, 4)), draw(st.integers(1, 5))
    if kind == "pointwise":
        kernel, dilation, padding = (1, 1), (1, 1), ((0, 0), (0, 0))
    else:
        kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        padding = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(2))
    if kind == "one window":             # one output pixel: a linear layer
        padding = ((0, 0), (0, 0))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    in_size, out_size = [], []
    for k, s, d, (lo, hi) in zip(kernel, stride, dilation, padding):
        span = d * (k - 1) + 1
        extra = draw(st.integers(0, s - 1)) if kind == "one window" else draw(st.integers(0, 5))
        size = max(1, span - lo - hi) + extra
        in_size.append(size)
        out_size.append((size + lo + hi - span) // s + 1)
    return N, C, O, groups, kernel, stride, padding, dilation, tuple(in_size), tuple(out_size)


def both(primitive):
    """(numba version, NumPy version) of a registered primitive."""
    impls = registry.implementations(primitive)
    return impls["numba"], impls["numpy"]


def strategy(direction):
    """conv2d's ``direction`` as the ops compute it, with the backend in force."""
    return getattr(conv_strategy, f"conv2d_{direction}")


# -- Numba kernels == NumPy references ------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.data(), conv_geometries(), st.sampled_from([numpy.float32, numpy.float64]))
def test_im2col_and_col2im_match_the_reference(data, geometry, dtype):
    N, C, _, _, kernel, stride, padding, dilation, in_size, out_size = geometry
    rng = numpy.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((N, C) + in_size).astype(dtype)
    fast, numpy_version = both("im2col")
    assert_same(fast(x, kernel, stride, padding, dilation), numpy_version(x, kernel, stride, padding, dilation),
                dtype)
    cols = rng.standard_normal((N, C) + kernel + out_size).astype(dtype)
    fast, numpy_version = both("col2im")
    assert_same(fast(cols, in_size, stride, padding, dilation),
                numpy_version(cols, in_size, stride, padding, dilation), dtype, scale=10)


MAP_SIZES = [(2, 2), (4, 4), (4, 17), (8, 8), (9, 7), (16, 16), (21, 18), (24, 23)]


@pytest.mark.parametrize("size", MAP_SIZES)
@pytest.mark.parametrize("stride, padding, dilation", [
    (1, ((1, 1), (1, 1)), 1), (2, ((1, 0), (2, 1)), 1), (1, ((2, 2), (2, 1)), 2), (3, ((1, 1), (1, 1)), 1)])
def test_im2col_and_col2im_match_the_reference_on_small_and_large_maps(size, stride, padding, dilation):
    """Small blocks go through a table of tap offsets (im2col up to
    SMALL_BLOCK or SMALL_SHIFTED_BLOCK entries, col2im up to
    SMALL_PLANE_BLOCK), larger ones through row loops: these sizes reach
    both, which the hypothesis geometries above (maps of at most ~10x10)
    seldom do for the rows."""
    rng = numpy.random.default_rng(sum(size))
    x = rng.standard_normal((3, 2) + size)
    (KH, KW), s, d = (3, 3), (stride, stride), (dilation, dilation)
    out = tuple((n + lo + hi - d[0] * 2 - 1) // stride + 1 for n, (lo, hi) in zip(size, padding))
    fast, numpy_version = both("im2col")
    assert_same(fast(x, (KH, KW), s, padding, d), numpy_version(x, (KH, KW), s, padding, d), numpy.float64)
    cols = rng.standard_normal((3, 2, KH, KW) + out)
    fast, numpy_version = both("col2im")
    assert_same(fast(cols, size, s, padding, d), numpy_version(cols, size, s, padding, d), numpy.float64, scale=10)


def test_those_maps_reach_both_paths_of_each_kernel():
    from minicnn.kernels.cpu import im2col as kernels
    blocks = [h * w for h, w in MAP_SIZES]          # at stride 1, padding 1 the output is the input's size
    for limit in (kernels.SMALL_BLOCK, kernels.SMALL_SHIFTED_BLOCK, kernels.SMALL_PLANE_BLOCK):
        assert min(blocks) <= limit < max(blocks)


@settings(max_examples=60, deadline=None)
@given(st.data(), conv_geometries(), st.sampled_from([numpy.float32, numpy.float64]),
       st.sampled_from([64, 1024, 1 << 30]), st.booleans(), st.sampled_from([1, 3]))
def test_conv_primitives_match_the_reference(data, geometry, dtype, tile_bytes, bias, threads):
    """The tiled im2col + GEMM on every geometry (the strategy would send
    some elsewhere), and the strategy itself with the Numba backend."""
    N, C, O, G, kernel, stride, padding, dilation, in_size, out_size = geometry
    x, w, b, gy = conv_arrays(data, N, C, O, G, kernel, in_size, out_size, dtype, bias)
    scale = C // G * kernel[0] * kernel[1]  # terms per output value
    args = (stride, padding, dilation, G)
    calls = {"forward": (x, w, b, *args, out_size), "grad_input": (gy, w, *args, in_size),
             "grad_weight": (x, gy, kernel, *args)}
    # Small budgets force bands of a few rows; a huge one packs whole images.
    # Three threads split the tiles (by image for the input gradient).
    with pytest.MonkeyPatch.context() as patch, selected("numba"):
        patch.setattr(numba_conv, "TILE_BYTES", tile_bytes)
        patch.setattr(numba_conv, "thread_count", lambda: threads)
        for direction in DIRECTIONS:
            expected = conv_reference(direction)(*calls[direction])
            terms = scale * N * 10 if direction == "grad_weight" else scale
            fast, _ = both(f"im2col_gemm_{direction}")
            assert_same(fast(*calls[direction]), expected, dtype, terms)
            assert_same(strategy(direction)(*calls[direction]), expected, dtype, terms)


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("shape, stride, padding, dilation", [
    ((4, 5, 2, 2), 1, ((1, 1), (1, 1)), 1), ((3, 4, 4, 5), 2, ((1, 0), (1, 2)), 1), ((2, 3, 6, 6), 1, ((2, 2), (2, 2)), 2)])
def test_weight_gradient_split_by_output_channel_matches_the_reference(threads, shape, stride, padding, dilation):
    """Few output pixels per thread: the threads share out the output
    channels (7 of them: uneven shares) instead of the pixels."""
    rng = numpy.random.default_rng(threads)
    x = rng.standard_normal(shape)
    k, s, d = (3, 3), (stride, stride), (dilation, dilation)
    out = tuple((n + lo + hi - dilation * 2 - 1) // stride + 1 for n, (lo, hi) in zip(shape[2:], padding))
    gy = rng.standard_normal((shape[0], 7) + out)
    assert shape[0] * out[0] * out[1] <= numba_conv.GRAD_WEIGHT_BY_CHANNELS_PIXELS * threads  # by channel
    calls = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(numba_conv, "thread_count", lambda: threads)
        original = numba_conv._grad_weight_by_channels
        patch.setattr(numba_conv, "_grad_weight_by_channels", lambda *a: calls.append(1) or original(*a))
        fast, _ = both("im2col_gemm_grad_weight")
        assert_same(fast(x, gy, k, s, padding, d, 1), conv_reference("grad_weight")(x, gy, k, s, padding, d, 1),
                    numpy.float64, 100)
    assert calls


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("groups", [1, 2])
def test_weight_gradient_either_way_round_matches_the_reference(transposed, groups):
    """gy @ cols^T, or its transpose cols @ gy^T transposed at the end
    (``_weight_product_transposed`` picks by shape): both give gw."""
    rng = numpy.random.default_rng(groups)
    x, gy = rng.standard_normal((3, 4, 7, 6)), rng.standard_normal((3, 6, 4, 2))
    args = ((3, 3), (1, 2), ((0, 1), (1, 0)), (1, 1), groups)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(numba_conv, "_weight_product_transposed", lambda K, T: transposed)
        patch.setattr(numba_conv, "TILE_BYTES", 1024)            # several tiles: the products are added up
        fast, _ = both("im2col_gemm_grad_weight")
        assert_same(fast(x, gy, *args), conv_reference("grad_weight")(x, gy, *args), numpy.float64, 100)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("stride, multiplier", [(1, 1), (2, 2)])
def test_depthwise_tasks_of_several_images_match_the_reference(threads, stride, multiplier):
    """Enough planes (5 x 16) for a depthwise task to take 2 images: the
    last block has 1, so each part's reused buffers are laid out anew
    for it, and the parts run on threads."""
    rng = numpy.random.default_rng(stride)
    C = 16
    x = rng.standard_normal((5, C, 9, 8))
    w = rng.standard_normal((C * multiplier, 1, 3, 3))
    b = rng.standard_normal(C * multiplier)
    args = ((stride, stride), ((1, 1), (1, 1)), (1, 1), C)
    out = tuple((n + 2 - 3) // stride + 1 for n in (9, 8))
    gy = rng.standard_normal((5, C * multiplier) + out)
    from minicnn.kernels.cpu import depthwise
    Hq, Wq = depthwise._phase_shape(*out, 3, 3, stride, stride, 1, 1)
    assert depthwise._images_per_task(5, C, stride * stride * Hq * Wq) == 2
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(numba_conv, "thread_count", lambda: threads)
        for direction, call in (("forward", lambda f: f(x, w, b, *args, out)),
                                ("grad_input", lambda f: f(gy, w, *args, (9, 8))),
                                ("grad_weight", lambda f: f(x, gy, (3, 3), *args))):
            fast, _ = both(f"depthwise_conv2d_{direction}")
            assert_same(call(fast), call(conv_reference(direction)), numpy.float64, 100)


@settings(max_examples=60, deadline=None)
@given(conv_geometries(), st.integers(0, 2**32 - 1), st.sampled_from([2, 3]), st.booleans(),
       st.sampled_from(["forward", "grad_input"]))
def test_few_pixel_products_by_channels_match_the_reference(geometry, seed, threads, by_channels, direction):
    """An ungrouped forward (input gradient) with few output pixels a
    thread is shared out by output (input) channel, ``_forward_by_channels``
    (``_grad_input_by_channels``), else by tile: both equal the NumPy
    reference."""
    N, C, O, groups, kernel, stride, padding, dilation, in_size, out_size = geometry
    assume(groups == 1)
    rng = numpy.random.default_rng(seed)
    x, w, b = rng.standard_normal((N, C) + in_size), rng.standard_normal((O, C) + kernel), rng.standard_normal(O)
    gy = rng.standard_normal((N, O) + out_size)
    args = (stride, padding, dilation, 1)
    call = {"forward": lambda f: f(x, w, b, *args, out_size), "grad_input": lambda f: f(gy, w, *args, in_size)}
    by = "_forward_by_channels" if direction == "forward" else "_grad_input_by_channels"
    calls = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(numba_conv, "thread_count", lambda: threads)
        patch.setattr(numba_conv, "FORWARD_BY_CHANNELS_PIXELS", 10**9 if by_channels else 0)
        original = getattr(numba_conv, by)
        patch.setattr(numba_conv, by, lambda *a: calls.append(1) or original(*a))
        mine = call[direction](getattr(numba_conv, f"im2col_gemm_{direction}"))
    assert bool(calls) == by_channels and mine.flags.c_contiguous
    assert_same(mine, call[direction](conv_reference(direction)), numpy.float64, 100)


def test_forward_and_input_gradient_by_channels_of_a_3d_convolution():
    rng = numpy.random.default_rng(3)
    x, w, b = rng.standard_normal((2, 3, 4, 5, 6)), rng.standard_normal((7, 3, 2, 3, 3)), rng.standard_normal(7)
    args = ((1, 2, 1), ((1, 0), (1, 1), (0, 2)), (1, 1, 2), 1)
    out = tuple((n + lo + hi - d * (k - 1) - 1) // s + 1 for n, (lo, hi), k, s, d in
                zip((4, 5, 6), args[1], (2, 3, 3), args[0], args[2]))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(numba_conv, "thread_count", lambda: 2)
        patch.setattr(numba_conv, "FORWARD_BY_CHANNELS_PIXELS", 10**9)
        mine = numba_conv.im2col_gemm_forward(x, w, b, *args, out)
        gy = rng.standard_normal(mine.shape)
        gx = numba_conv.im2col_gemm_grad_input(gy, w, *args, (4, 5, 6))
    assert_same(mine, conv_reference("forward")(x, w, b, *args, out), numpy.float64, 100)
    assert_same(gx, conv_reference("grad_input")(gy, w, *args, (4, 5, 6)), numpy.float64, 100)


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 2), st.integers(1, 9), st.integers(1, 7), st.integers(1, 7),
       st.sampled_from([(1, 1), (3, 3), (5, 5), (3, 2)]), st.integers(1, 2), st.integers(1, 2),
       st.sampled_from([numpy.float32, numpy.float64]), st.booleans())
def test_small_depthwise_planes_channels_last_match_the_reference(seed, N, C, H, W, kernel, stride, dilation,
                                                                   dtype, bias):
    """A depthwise forward of at most CHANNELS_LAST_MAX_PIXELS output
    pixels runs channels last: against the NumPy reference, with any
    padding (up to the kernel's reach), stride and dilation."""
    from minicnn.kernels.cpu import depthwise
    rng = numpy.random.default_rng(seed)
    KH, KW = kernel
    padding = ((rng.integers(0, KH), rng.integers(0, KH)), (rng.integers(0, KW), rng.integers(0, KW)))
    out = tuple((n + lo + hi - dilation * (k - 1) - 1) // stride + 1 for n, (lo, hi), k in
                zip((H, W), padding, kernel))
    assume(min(out) >= 1 and N * out[0] * out[1] <= depthwise.CHANNELS_LAST_MAX_PIXELS)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((C, 1, KH, KW)).astype(dtype)
    b = rng.standard_normal(C).astype(dtype) if bias else None
    args = ((stride, stride), padding, (dilation, dilation), C, out)
    calls = []
    with pytest.MonkeyPatch.context() as patch:
        # float32 too: off the 16-channel kernel, which an AVX-512 CPU takes (test_depthwise_lanes)
        patch.setattr(numba_conv.implicit_gemm, "register_tiles", lambda: None)
        original = depthwise.depthwise_forward_channels_last
        patch.setattr(numba_conv, "depthwise_forward_channels_last", lambda *a: calls.append(1) or original(*a))
        fast, _ = both("depthwise_conv2d_forward")
        mine = fast(x, w, b, *args)
    assert calls
    assert_same(mine, conv_reference("forward")(x, w, b, *args), dtype, 100)


def test_col2im_accepts_any_layout():
    """A cols array that is not the kernels' own layout is copied, not misread."""
    rng = numpy.random.default_rng(0)
    cols = rng.standard_normal((2, 3, 2, 2, 4, 5))
    fast, numpy_version = both("col2im")
    args = ((5, 6), (1, 1), ((0, 0), (0, 0)), (1, 1))
    numpy.testing.assert_allclose(fast(cols, *args), numpy_version(cols, *args), rtol=1e-12)
    numpy.testing.assert_allclose(fast(numpy.asfortranarray(cols), *args), numpy_version(cols, *args), rtol=1e-12)


# -- the strategy's paths --------------------------------------------------
#: One layer per path of the strategy: the path, x shape, w shape, stride,
#: padding, dilation, groups. Winograd is taken where the backend has it
#: (Numba) once WINOGRAD_MIN_TILES is lifted; elsewhere those layers are
#: im2col's.
PATH_CASES = {
    "depthwise": ("depthwise", (2, 4, 7, 6), (8, 1, 3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1), 4),
    "dense": ("dense", (3, 4, 4, 6), (6, 4, 4, 3), (1, 3), ((0, 0), (0, 0)), (1, 2), 1),
    "winograd F(2x2)": ("winograd", (2, 3, 6, 7), (5, 3, 3, 3), (1, 1), ((1, 0), (2, 1)), (1, 1), 1),
    "winograd F(4x4)": ("winograd", (2, 3, 9, 8), (5, 3, 3, 3), (1, 1), ((1, 1), (0, 2)), (1, 1), 1),
    "winograd F(2x2, 5x5)": ("winograd", (2, 3, 7, 8), (4, 3, 5, 5), (1, 1), ((2, 1), (0, 3)), (1, 1), 1),
    "pointwise": ("pointwise", (2, 6, 7, 5), (4, 3, 1, 1), (2, 2), ((0, 0), (0, 0)), (1, 1), 2),
    "pointwise stride 1": ("pointwise", (2, 3, 4, 5), (4, 3, 1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1), 1),
    "im2col": ("im2col", (2, 4, 7, 6), (6, 4, 3, 2), (2, 1), ((1, 0), (2, 1)), (1, 2), 1),
    "grouped im2col": ("im2col", (2, 4, 7, 6), (6, 2, 3, 2), (2, 1), ((1, 0), (2, 1)), (1, 2), 2),
}
#: The paths of PATH_CASES' few-channel groups where the backend has the
#: direct kernels (Numba): the forward; the gradients (stride 2 here) stay
#: im2col's.
DIRECT_PATHS = {"grouped im2col": {"forward": "grouped"}}


def path_case(name, rng):
    """(ConvGeometry, x, w, b, gy) of PATH_CASES[name]."""
    _, x_shape, w_shape, stride, padding, dilation, groups = PATH_CASES[name]
    in_size = x_shape[2:]
    out_size = tuple((n + lo + hi - d * (k - 1) - 1) // s + 1 for n, (lo, hi), k, s, d in
                     zip(in_size, padding, w_shape[2:], stride, dilation))
    geometry = ConvGeometry(w_shape[2:], stride, padding, dilation, groups, in_size, out_size)
    arrays = [rng.standard_normal(shape) for shape in
              (x_shape, w_shape, w_shape[:1], (x_shape[0], w_shape[0]) + out_size)]
    return (geometry, *arrays)


def use_winograd(patch, name):
    """Let the small layers of PATH_CASES take Winograd, by F(4x4) where
    ``name`` says so, else by F(2x2) (5x5 ones too)."""
    patch.setattr(conv_strategy, "WINOGRAD_MIN_TILES", 0)
    patch.setattr(conv_strategy, "WINOGRAD_MIN_SIZE", 0)
    patch.setattr(conv_strategy, "WINOGRAD_4X4_MIN_SIZE", 0 if "4x4" in name else 10**9)
    for rule in ("WINOGRAD_5X5_MIN_TILES", "WINOGRAD_5X5_MIN_SIZE", "WINOGRAD_5X5_MIN_CHANNELS"):
        patch.setattr(conv_strategy, rule, 0)
    patch.setattr(conv_strategy, "WINOGRAD_5X5_YIELDS", (0, 0))
    patch.setattr(conv_strategy, "WINOGRAD_GRAD_INPUT_YIELDS", (0, 0))


@pytest.mark.parametrize("name", sorted(PATH_CASES))
def test_every_path_matches_the_reference(backend, name, monkeypatch):
    use_winograd(monkeypatch, name)
    g, x, w, b, gy = path_case(name, numpy.random.default_rng(len(name)))
    path = PATH_CASES[name][0]
    if path == "winograd" and backend == "numpy":
        path = "im2col"
    m = (4 if "4x4" in name else 2) if path == "winograd" else 0
    N, C = x.shape[:2]
    # Winograd's output: gy's for gx, else y's
    for size, direction in ((g.out_size, "forward"), (g.in_size, "grad_input"), (g.out_size, "grad_weight")):
        expected = DIRECT_PATHS.get(name, {}).get(direction, path) if backend != "numpy" else path
        assert conv_strategy.conv_path(numpy, N, C, g.groups, g.kernel_size, g.stride, g.padding, g.dilation,
                                       g.out_size, size, direction) == (expected, m)
    args = (g.stride, g.padding, g.dilation, g.groups)
    calls = {"forward": (x, w, b, *args, g.out_size), "grad_input": (gy, w, *args, g.in_size),
             "grad_weight": (x, gy, g.kernel_size, *args)}
    for direction in DIRECTIONS:
        assert_same(strategy(direction)(*calls[direction]), conv_reference(direction)(*calls[direction]), numpy.float64,
                    scale=100)


def conv_forward_and_backward():
    """Every path's conv2d forward and backward (whose input gradient is
    conv_transpose2d's forward)."""
    rng = numpy.random.default_rng(6)
    for name in PATH_CASES:
        geometry, x, w, b, gy = path_case(name, rng)
        x, w, b = (mc.tensor(a, requires_grad=True) for a in (x, w, b))
        (Conv2d.apply(x, w, b, geometry=geometry) * mc.tensor(gy)).sum().backward()


def test_the_numpy_backend_calls_no_numba_primitive(monkeypatch):
    """set_backend('numpy') means NumPy for every primitive conv2d reaches,
    and the default backend does use the Numba ones."""
    use_winograd(monkeypatch, "F(2x2)")
    called = []

    def recorded(primitive, fn):
        def record(*args, **kwargs):
            called.append(primitive)
            return fn(*args, **kwargs)
        return record
    for primitive in registry.primitives():
        fast = registry.implementations(primitive).get("numba")
        if fast is not None:
            monkeypatch.setitem(registry._implementations[primitive], "numba", recorded(primitive, fast))
    with selected("numpy"):
        conv_forward_and_backward()
    assert called == []
    conv_forward_and_backward()
    expected = {f"{path}_{direction}" for path in ("depthwise_conv2d", "im2col_gemm") for direction in DIRECTIONS}
    expected |= {"winograd_conv2d", "winograd_conv2d_grad_weight", "batched_matmul", "batched_matmul_sum"}
    assert expected <= set(called)


# -- torch parity with each backend ---------------------------------------
F32 = dict(rtol=1e-4, atol=1e-5)
CONV_CASES = {  # input shape, weight shape, keyword arguments
    "plain": ((2, 3, 7, 6), (4, 3, 3, 3), {}),
    "stride2_pad1": ((2, 2, 7, 7), (3, 2, 3, 3), dict(stride=2, padding=1)),
    "dilated_strided": ((1, 2, 9, 8), (2, 2, 3, 2), dict(dilation=(1, 3), stride=(2, 1))),
    "same_even_kernel": ((1, 2, 5, 6), (3, 2, 4, 2), dict(padding="same")),
    "groups2": ((2, 4, 6, 5), (6, 2, 3, 3), dict(groups=2, padding=1)),
    "depthwise_x2_strided": ((2, 3, 7, 6), (6, 1, 3, 3), dict(groups=3, stride=2, padding=1)),
    "single_channel": ((2, 1, 8, 8), (4, 1, 5, 5), {}),
    "pointwise_strided": ((2, 3, 5, 5), (4, 3, 1, 1), dict(stride=2)),
    "one_pixel_like_lenet_c5": ((2, 4, 5, 5), (3, 4, 5, 5), {}),
    "one_pixel_dilated_window": ((2, 2, 4, 6), (3, 2, 2, 3), dict(dilation=2, stride=3)),
}
TRANSPOSE_CASES = {  # input shape, weight shape (C, O / groups, KH, KW), keyword arguments
    "stride2_outpad1": ((1, 2, 4, 3), (2, 2, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    "groups2": ((2, 4, 3, 4), (4, 3, 3, 3), dict(groups=2, stride=2, padding=1, output_padding=1)),
    "depthwise": ((2, 3, 4, 4), (3, 2, 3, 3), dict(groups=3, dilation=2)),
    "pointwise": ((2, 3, 4, 4), (3, 2, 1, 1), {}),
}


@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("name", sorted(CONV_CASES))
def test_conv2d_matches_torch_with_each_backend(backend, name, dtype):
    x_shape, w_shape, kw = CONV_CASES[name]
    rng = numpy.random.default_rng(3)
    arrays = [rng.standard_normal(s) for s in (x_shape, w_shape, w_shape[:1])]
    check_parity(lambda x, w, b: F.conv2d(x, w, b, **kw),
                 lambda x, w, b: torch.nn.functional.conv2d(x, w, b, **kw),
                 arrays, dtype=dtype, noncontiguous_inputs=name == "plain",
                 **(F32 if dtype == numpy.float32 else {}))


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("name", sorted(TRANSPOSE_CASES))
def test_conv_transpose2d_matches_torch_with_each_backend(backend, name, dtype):
    x_shape, w_shape, kw = TRANSPOSE_CASES[name]
    rng = numpy.random.default_rng(4)
    bias = w_shape[1] * kw.get("groups", 1)
    arrays = [rng.standard_normal(s) for s in (x_shape, w_shape, (bias,))]
    check_parity(lambda x, w, b: F.conv_transpose2d(x, w, b, **kw),
                 lambda x, w, b: torch.nn.functional.conv_transpose2d(x, w, b, **kw),
                 arrays, dtype=dtype, **(F32 if dtype == numpy.float32 else {}))


def second_order_grads():
    """x.grad and w.grad after backward through the gradient of a conv:
    that runs Conv2dGradWeight's and ConvTranspose2d's own backward."""
    rng = numpy.random.default_rng(5)
    x = mc.tensor(rng.standard_normal((2, 2, 6, 5)), requires_grad=True)
    w = mc.tensor(rng.standard_normal((3, 2, 3, 3)), requires_grad=True)
    y = F.conv2d(x, w, stride=2, padding=1)
    (y * y).sum().backward(create_graph=True)
    (w.grad * w.grad).sum().backward()
    return x.grad.data.copy(), w.grad.data.copy()


def test_double_backward_is_the_same_with_each_backend():
    previous = registry.get_backend()
    try:
        registry.set_backend("numpy")
        expected = second_order_grads()
        registry.set_backend("numba")
        for mine, theirs in zip(second_order_grads(), expected):
            numpy.testing.assert_allclose(mine, theirs, rtol=1e-10)
    finally:
        registry.set_backend(previous)


def test_backend_selection():
    previous = registry.get_backend()
    try:
        mc.set_backend("numpy")
        assert mc.get_backend() == "numpy"
        assert registry.lookup("im2col_gemm_forward", numpy) is conv_strategy.im2col_gemm_forward
        assert registry.find("winograd_conv2d", numpy) is None
        mc.set_backend("numba")
        assert registry.lookup("im2col_gemm_forward", numpy).__wrapped__ is numba_conv.im2col_gemm_forward
        assert registry.find("winograd_conv2d", numpy) is not None
        with pytest.raises(ValueError, match="backend must be one of"):
            mc.set_backend("fortran")
    finally:
        registry.set_backend(previous)


# -- a clamp in the output pass (a fused model's ReLU / ReLU6) ----------------
CLAMPS = [(0.0, numpy.inf), (0.0, 6.0), (-0.5, 0.25)]


def assert_clamped_as_clip(x, w, b, stride, padding, dilation, groups, out_size, clamp):
    """conv_forward with ``clamp`` is exactly clip(conv_forward without it),
    NaN kept: the kernels sum the same products either way."""
    plain = conv_strategy.conv_forward(x, w, b, stride, padding, dilation, groups, out_size)
    clamped = conv_strategy.conv_forward(x, w, b, stride, padding, dilation, groups, out_size, clamp)
    assert clamped.dtype == plain.dtype
    numpy.testing.assert_array_equal(clamped, numpy.clip(plain, *clamp))


@settings(max_examples=60, deadline=None)
@given(conv_geometries(), st.sampled_from([numpy.float32, numpy.float64]), st.sampled_from(CLAMPS),
       st.sampled_from(["auto", "numpy"]), st.booleans(), st.integers(0, 2**32 - 1))
def test_a_clamp_in_the_output_pass_equals_clipping_after(geometry, dtype, clamp, backend, bias, seed):
    N, C, O, groups, kernel, stride, padding, dilation, in_size, out_size = geometry
    rng = numpy.random.default_rng(seed)
    x = rng.standard_normal((N, C) + in_size).astype(dtype)
    x.reshape(-1)[rng.integers(x.size)] = numpy.nan                # NaN stays NaN through the clamp
    w = rng.standard_normal((O, C // groups) + kernel).astype(dtype)
    b = rng.standard_normal(O).astype(dtype) if bias else None
    registry.set_backend(backend)
    assert_clamped_as_clip(x, w, b, stride, padding, dilation, groups, out_size, clamp)


#: Layers of real size, one for each way the CPU kernels add the bias:
#: (x shape, w shape, stride, padding, groups).
CLAMPED_LAYERS = [
    ((1, 64, 56, 56), (96, 64, 1, 1), (1, 1), 0, 1),       # pointwise, one image: blocks of rows
    ((3, 24, 14, 14), (40, 24, 1, 1), (1, 1), 0, 1),       # pointwise, whole images a thread
    ((16, 96, 4, 4), (576, 96, 1, 1), (1, 1), 0, 1),       # pointwise, small maps side by side
    ((1, 32, 56, 56), (32, 1, 3, 3), (1, 1), 1, 32),       # depthwise, planar (or 16 channels a vector)
    ((2, 40, 14, 14), (40, 1, 3, 3), (2, 2), 1, 40),       # depthwise, 16 channels a vector where the CPU has them
    ((1, 72, 3, 3), (72, 1, 3, 3), (1, 1), 1, 72),         # depthwise, small planes channels last
    ((2, 3, 33, 33), (16, 3, 3, 3), (2, 2), 1, 1),         # im2col, bands of rows
    ((8, 16, 5, 5), (24, 16, 2, 2), (1, 1), 0, 1),         # im2col, several images a tile / few pixels
    ((2, 16, 20, 20), (32, 16, 3, 3), (1, 1), 1, 1),       # Winograd or the implicit GEMM: clamped after
]


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("x_shape, w_shape, stride, pad, groups", CLAMPED_LAYERS)
def test_a_clamp_in_the_output_pass_on_each_path(x_shape, w_shape, stride, pad, groups, dtype):
    rng = numpy.random.default_rng(9)
    x = rng.standard_normal(x_shape).astype(dtype)
    x[0, 0, 1, 1] = numpy.nan
    w = (rng.standard_normal(w_shape) / numpy.sqrt(numpy.prod(w_shape[1:]))).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    padding = ((pad, pad), (pad, pad))
    out_size = tuple((n + 2 * pad - k) // s + 1 for n, k, s in zip(x_shape[2:], w_shape[2:], stride))
    for clamp in CLAMPS:
        assert_clamped_as_clip(x, w, b, stride, padding, (1, 1), groups, out_size, clamp)
