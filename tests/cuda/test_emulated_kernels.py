"""The CUDA kernels' numbers, checked on the CPU.

Each ``.cu`` source is compiled as C++ against the emulation header
(``emulation/cuda_emulation.h``: every thread of a launch runs in turn),
and the GPU wrappers of ``kernels/cuda`` run on NumPy arrays with the
emulated launcher in place of CuPy. So what is tested is the code the GPU
runs, wrappers, grid sizes and kernels alike, against each primitive's
NumPy reference (for convolutions: the conv strategy run with the CUDA
primitives, as on a GPU, against the NumPy reference), on the hypothesis-generated configurations of the Numba
kernels' tests (``tests/kernels``, ``tests/property``). Maxima and their
offsets must agree exactly; sums agree up to rounding.
"""
import contextlib
import os
import sys
import types

import numpy
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

HERE = os.path.dirname(os.path.abspath(__file__))
for folder in (os.path.join(HERE, "emulation"), os.path.join(HERE, "..", "kernels"),
               os.path.join(HERE, "..", "property")):
    if folder not in sys.path:
        sys.path.insert(0, folder)

import emulator  # noqa: E402
from minicnn.kernels import registry  # noqa: E402
from minicnn.kernels.cuda import batchnorm, conv, im2col, loader, nms, pooling, roi_align  # noqa: E402
from minicnn.functional import conv_strategy, normalization, pooling as pool_ops  # noqa: E402,F401
from minicnn.functional.im2col import col2im as col2im_reference, im2col as im2col_reference  # noqa: E402
from test_conv_kernels import PATH_CASES, path_case, use_winograd  # noqa: E402
from test_im2col_adjoint import geometries  # noqa: E402
from test_pool_bn_kernels import bn_shapes, close, pool_configs, values  # noqa: E402

DTYPES = [numpy.float32, numpy.float64]
DIRECTIONS = ("forward", "grad_input", "grad_weight")
SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module", autouse=True)
def emulated_gpu():
    """Build the emulated kernels (once for all sessions; see emulator.py)
    and route every launch to them."""
    if emulator.compiler() is None:
        pytest.skip("no host C++ compiler (g++) to build the emulated kernels")
    emulator.build_all()
    with loader.use_launcher(emulator.launcher):
        yield


def reference(primitive):
    return registry.implementations(primitive)["numpy"]


# -- im2col / col2im -----------------------------------------------------
@SETTINGS
@given(geometry=geometries(), batch=st.integers(1, 2), channels=st.integers(1, 3),
       dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**16))
def test_im2col_and_col2im_match_reference(geometry, batch, channels, dtype, seed):
    kernel, stride, padding, dilation, in_size, out_size = geometry
    x = values(seed, (batch, channels) + in_size, dtype)
    cols = im2col.im2col(x, kernel, stride, padding, dilation, out_size)
    numpy.testing.assert_array_equal(cols, im2col_reference(x, kernel, stride, padding, dilation, out_size))
    c = values(seed + 1, cols.shape, dtype)
    close(im2col.col2im(c, in_size, stride, padding, dilation),
          col2im_reference(c, in_size, stride, padding, dilation), dtype)


# -- conv2d: the strategy with the CUDA primitives ----------------------------
CUPY_ARRAYS = types.SimpleNamespace(__name__="cupy")


@contextlib.contextmanager
def cuda_primitives():
    """The registry answers for NumPy arrays what it answers for CuPy ones,
    so the conv strategy runs the CUDA primitives (emulated) on NumPy
    arrays, as it would on a GPU."""
    find = registry.find
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(registry, "find", lambda primitive, xp: find(primitive, CUPY_ARRAYS))
        yield


def check_conv_directions(calls, dtype):
    """Each of conv2d's directions, from the strategy with the CUDA
    primitives, against the NumPy reference (im2col + GEMM)."""
    expected = {d: reference(f"im2col_gemm_{d}")(*calls[d]) for d in DIRECTIONS}
    with cuda_primitives():
        for d in DIRECTIONS:
            close(getattr(conv_strategy, f"conv2d_{d}")(*calls[d]), expected[d], dtype)


@st.composite
def conv_configs(draw):
    """(x shape, w shape, stride, padding, dilation, groups, out_size):
    ungrouped, grouped and depthwise (with multiplier) convolutions,
    padding asymmetric as 'same' makes it, and 1x1 kernels without it."""
    kind = draw(st.sampled_from(["ungrouped", "grouped", "depthwise", "pointwise"]))
    n = draw(st.integers(1, 2))
    if kind == "depthwise":
        groups = c = draw(st.integers(1, 4))
        cg, o = 1, c * draw(st.integers(1, 2))
    else:
        groups = draw(st.integers(2, 3)) if kind == "grouped" else 1
        cg = draw(st.integers(1, 3))
        c, o = cg * groups, groups * draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(2))
    if kind == "pointwise":
        kernel, padding = (1, 1), ((0, 0), (0, 0))
    in_size = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    out_size = tuple((i + lo + hi - d * (k - 1) - 1) // s + 1
                     for i, (lo, hi), k, s, d in zip(in_size, padding, kernel, stride, dilation))
    assume(min(out_size) >= 1)
    return (n, c) + in_size, (o, cg) + kernel, stride, padding, dilation, groups, out_size


@SETTINGS
@given(config=conv_configs(), dtype=st.sampled_from(DTYPES), bias=st.booleans(), seed=st.integers(0, 2**16))
def test_conv_with_the_cuda_primitives_matches_reference(config, dtype, bias, seed):
    x_shape, w_shape, stride, padding, dilation, groups, out_size = config
    x, w = values(seed, x_shape, dtype), values(seed + 1, w_shape, dtype)
    b = values(seed + 2, w_shape[:1], dtype) if bias else None
    gy = values(seed + 3, (x_shape[0], w_shape[0]) + out_size, dtype)
    args = (stride, padding, dilation, groups)
    check_conv_directions({"forward": (x, w, b, *args, out_size), "grad_input": (gy, w, *args, x_shape[2:]),
                           "grad_weight": (x, gy, w_shape[2:], *args)}, dtype)


@pytest.mark.parametrize("name", sorted(PATH_CASES))
def test_every_conv_path_with_the_cuda_primitives_matches_reference(name, monkeypatch):
    """The strategy's paths on a GPU: Winograd's layers go to im2col there."""
    use_winograd(monkeypatch, name)
    g, x, w, b, gy = path_case(name, numpy.random.default_rng(len(name)))
    with cuda_primitives():
        path, _ = conv_strategy.conv_path(numpy, x.shape[0], x.shape[1], g.groups, g.kernel_size, g.stride,
                                          g.padding, g.dilation, g.out_size, g.out_size)
    assert path == ("im2col" if PATH_CASES[name][0] == "winograd" else PATH_CASES[name][0])
    args = (g.stride, g.padding, g.dilation, g.groups)
    check_conv_directions({"forward": (x, w, b, *args, g.out_size), "grad_input": (gy, w, *args, g.in_size),
                           "grad_weight": (x, gy, g.kernel_size, *args)}, numpy.float64)


# -- pooling -------------------------------------------------------------
@SETTINGS
@given(config=pool_configs(), dtype=st.sampled_from(DTYPES), ties=st.booleans(), seed=st.integers(0, 2**16))
def test_max_pool_kernels_match_reference(config, dtype, ties, seed):
    shape, win, _ = config
    x = values(seed, shape, dtype, ties)
    y, arg = pooling.max_pool2d_forward(x, win)
    y_ref, arg_ref = reference("max_pool2d_forward")(x, win)
    numpy.testing.assert_array_equal(y, y_ref)
    numpy.testing.assert_array_equal(arg, arg_ref)
    assert arg.dtype == arg_ref.dtype
    gy = values(seed + 1, y.shape, dtype)
    close(pooling.max_pool2d_backward(gy, win, arg), reference("max_pool2d_backward")(gy, win, arg_ref), dtype)


def test_max_pool_large_window_uses_int32_offsets_and_nan_wins():
    x = values(0, (1, 2, 20, 20), numpy.float64)
    x[0, 1, 3, 4] = numpy.nan
    win = pool_ops._windows("pool", x.shape, (17, 17), (3, 3), (0, 0), (1, 1), False)
    assert win.offset_dtype() == "int32"
    (y, arg), (y_ref, arg_ref) = pooling.max_pool2d_forward(x, win), reference("max_pool2d_forward")(x, win)
    numpy.testing.assert_array_equal(y, y_ref)
    numpy.testing.assert_array_equal(arg, arg_ref)
    assert arg.dtype == numpy.int32 and numpy.isnan(y[0, 1]).any()
    gy = values(1, y.shape, numpy.float64)
    close(pooling.max_pool2d_backward(gy, win, arg), reference("max_pool2d_backward")(gy, win, arg_ref),
          numpy.float64)


@SETTINGS
@given(config=pool_configs(dilation=False), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**16),
       count_include_pad=st.booleans(), override=st.sampled_from([None, 3]))
def test_avg_pool_kernels_match_reference(config, dtype, seed, count_include_pad, override):
    shape, win, _ = config
    x = values(seed, shape, dtype)
    divisor = pool_ops._avg_divisor(numpy, win, count_include_pad, override, dtype)
    y = pooling.avg_pool2d_forward(x, win, divisor)
    close(y, reference("avg_pool2d_forward")(x, win, divisor), dtype)
    gy = values(seed + 1, y.shape, dtype)
    close(pooling.avg_pool2d_backward(gy, win, divisor), reference("avg_pool2d_backward")(gy, win, divisor), dtype)


@SETTINGS
@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
       oh=st.integers(1, 6), ow=st.integers(1, 6), dtype=st.sampled_from(DTYPES), ties=st.booleans(),
       seed=st.integers(0, 2**16))
def test_adaptive_pool_kernels_match_reference(n, c, h, w, oh, ow, dtype, ties, seed):
    x = values(seed, (n, c, h, w), dtype, ties)
    gy = values(seed + 1, (n, c, oh, ow), dtype)
    close(pooling.adaptive_avg_pool2d_forward(x, (oh, ow)), reference("adaptive_avg_pool2d_forward")(x, (oh, ow)),
          dtype)
    close(pooling.adaptive_avg_pool2d_backward(gy, (h, w)), reference("adaptive_avg_pool2d_backward")(gy, (h, w)),
          dtype)
    (y, idx), (y_ref, idx_ref) = (pooling.adaptive_max_pool2d_forward(x, (oh, ow)),
                                  reference("adaptive_max_pool2d_forward")(x, (oh, ow)))
    numpy.testing.assert_array_equal(y, y_ref)
    numpy.testing.assert_array_equal(idx, idx_ref)
    assert idx.dtype == numpy.int64
    close(pooling.adaptive_max_pool2d_backward(gy, idx, x.shape),
          reference("adaptive_max_pool2d_backward")(gy, idx_ref, x.shape), dtype)


# -- batch norm ----------------------------------------------------------
@SETTINGS
@given(shape=bn_shapes(), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**16),
       affine=st.sampled_from(["both", "weight", "bias", "none"]), offset=st.sampled_from([0.0, 100.0]))
def test_batch_norm_kernels_match_reference(shape, dtype, seed, affine, offset):
    """Training and eval, forward and backward; ``offset`` puts the mean far
    from zero, where an unshifted one-pass variance loses its digits."""
    rng = numpy.random.default_rng(seed)
    c = shape[1]
    x = (rng.standard_normal(shape) + offset).astype(dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    w = rng.uniform(0.5, 1.5, c).astype(dtype) if affine in ("both", "weight") else None
    b = rng.standard_normal(c).astype(dtype) if affine in ("both", "bias") else None
    eps = 1e-5
    # The shifted float64 sums are more accurate than float32's own mean and
    # var, so float32 gets a tolerance relative to the spread, not the offset.
    tol = dict(rtol=2e-4, atol=2e-4) if dtype == numpy.float32 else dict(rtol=1e-9, atol=1e-9)
    forward, backward = reference("batch_norm_forward"), reference("batch_norm_backward")

    results, expected = batchnorm.batch_norm_forward(x, w, b, eps), forward(x, w, b, eps)
    for a, e in zip(results, expected):
        numpy.testing.assert_allclose(a, e, **tol)
        assert a.dtype == e.dtype and a.shape == e.shape
    mean, var = expected[1], expected[2]

    running_mean, running_var = mean + 0.1, var * 1.5
    numpy.testing.assert_allclose(batchnorm.batch_norm_forward(x, w, b, eps, running_mean, running_var)[0],
                                  forward(x, w, b, eps, running_mean, running_var)[0], **tol)
    inv_std = (1 / numpy.sqrt(var + eps)).astype(dtype)
    for training in (True, False):
        for a, e in zip(batchnorm.batch_norm_backward(gy, x, mean, inv_std, w, training),
                        backward(gy, x, mean, inv_std, w, training)):
            numpy.testing.assert_allclose(a, e, **tol)
            assert a.dtype == e.dtype and a.shape == e.shape


# -- the wrappers' contracts and the harness itself -------------------------
def test_wrappers_accept_non_contiguous_input():
    x = values(0, (2, 3, 8, 6), numpy.float64).transpose(0, 1, 3, 2)
    win = pool_ops._windows("pool", x.shape, (3, 3), (2, 2), (1, 1), (1, 1), False)
    numpy.testing.assert_array_equal(pooling.max_pool2d_forward(x, win)[0], reference("max_pool2d_forward")(x, win)[0])
    numpy.testing.assert_allclose(batchnorm.batch_norm_forward(x, None, None, 1e-5)[0],
                                  reference("batch_norm_forward")(x, None, None, 1e-5)[0], rtol=1e-12)
    args = (values(1, (6, 1, 3, 3), numpy.float64), None, (1, 1), ((1, 1), (1, 1)), (1, 1), 3, (6, 8))
    numpy.testing.assert_allclose(conv.depthwise_conv2d_forward(x, *args),
                                  reference("depthwise_conv2d_forward")(x, *args), rtol=1e-12)


def test_kernels_refuse_other_dtypes():
    x = numpy.zeros((1, 1, 4, 4), dtype=numpy.float16)
    with pytest.raises(TypeError, match="float32 and float64, got dtype float16"):
        pooling.adaptive_avg_pool2d_forward(x, (2, 2))


def test_emulator_checks_argument_types():
    """A scalar of the wrong width would read garbage on a GPU: here it is an error."""
    x, y = numpy.zeros((1, 1, 4, 4), numpy.float32), numpy.zeros((1, 1, 2, 2), numpy.float32)
    args = (x, y, loader.i64(4), loader.i32(4), loader.i32(4), loader.i32(2), loader.i32(2))
    loader.launch("pooling.cu", "adaptive_avg_pool2d_forward", numpy.float32, 4, *args)
    with pytest.raises(TypeError, match="argument 2: expected a NumPy int64 scalar"):
        loader.launch("pooling.cu", "adaptive_avg_pool2d_forward", numpy.float32, 4, x, y, 4, *args[3:])
    with pytest.raises(TypeError, match="argument 1: expected a C-contiguous float32 array"):
        loader.launch("pooling.cu", "adaptive_avg_pool2d_forward", numpy.float32, 4, x, y.astype(numpy.float64),
                      *args[2:])


def test_every_kernel_is_exercised():
    """Every kernel of every source appears in a wrapper, so the tests above reach it."""
    wrappers = "".join(open(m.__file__, encoding="utf-8").read() for m in (batchnorm, conv, im2col, pooling, nms,
                                                                            roi_align))
    for source in loader.source_files():
        for name in loader.kernel_names(source):
            stem = name[:-3] if name.endswith("_u8") else name[:-4] if name.endswith("_i32") else name
            assert f'"{stem}' in wrappers, f"{source}: kernel {name} is not launched by any wrapper"
