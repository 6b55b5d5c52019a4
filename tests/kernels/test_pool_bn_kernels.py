"""The Numba pooling and batch-norm kernels against their NumPy references.

Two layers of checks:

* kernel == reference: every primitive's ``"numba"`` version is called
  side by side with its ``"numpy"`` version on hypothesis-generated
  geometries, in float32 and float64. Maxima and their offsets must agree
  exactly; sums agree up to rounding (the kernels accumulate in float64,
  the references in the array's dtype).
* op == torch with each backend: a representative slice of the torch
  parity tests of the ops, run once with ``set_backend("numpy")`` and once
  with ``set_backend("numba")``.
"""
import numpy
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import HealthCheck, assume, example, given, settings, strategies as st

import minicnn as mc
import minicnn.nn.functional as F
from minicnn.kernels import registry
from minicnn.functional import normalization, pooling  # noqa: F401  (registers the primitives)
from minicnn.functional.pooling import _avg_divisor, _windows
from parity import check_parity

pytest.importorskip("numba")

DTYPES = [numpy.float32, numpy.float64]
# Compilation happens inside the first examples, so no per-example deadline.
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def both(primitive):
    """The (numpy, numba) versions of a primitive."""
    impls = registry.implementations(primitive)
    return impls["numpy"], impls["numba"]


def close(actual, expected, dtype):
    """Equal up to the rounding of a sum in ``dtype``."""
    rtol, atol = (1e-5, 1e-6) if dtype == numpy.float32 else (1e-12, 1e-13)
    numpy.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape


def values(seed, shape, dtype, ties=False):
    """Random values; with ``ties``, drawn from a few levels so that windows
    hold equal maxima (both versions must keep the first)."""
    rng = numpy.random.default_rng(seed)
    x = rng.integers(-3, 3, size=shape) if ties else rng.uniform(-2, 2, size=shape)
    return x.astype(dtype)


@st.composite
def pool_configs(draw, dilation=True):
    """An input shape and pool arguments that ``_windows`` accepts."""
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if dilation else (1, 1)
    ceil_mode = draw(st.booleans())
    try:
        win = _windows("pool", shape, kernel, stride, padding, dil, ceil_mode)
    except ValueError:
        assume(False)
    return shape, win, ceil_mode


# -- kernel == reference -------------------------------------------------
@SETTINGS
@given(config=pool_configs(), dtype=st.sampled_from(DTYPES), ties=st.booleans(), seed=st.integers(0, 2**16))
def test_max_pool_kernels_match_reference(config, dtype, ties, seed):
    shape, win, _ = config
    x = values(seed, shape, dtype, ties)
    (ref_fwd, fast_fwd), (ref_bwd, fast_bwd) = both("max_pool2d_forward"), both("max_pool2d_backward")
    y, arg = fast_fwd(x, win)
    y_ref, arg_ref = ref_fwd(x, win)
    numpy.testing.assert_array_equal(y, y_ref)
    numpy.testing.assert_array_equal(arg, arg_ref)
    assert arg.dtype == arg_ref.dtype
    y_alone, no_arg = fast_fwd(x, win, False)      # a forward no backward follows: the maxima only
    numpy.testing.assert_array_equal(y_alone, y_ref)
    assert no_arg is None and ref_fwd(x, win, False)[1] is None
    gy = values(seed + 1, y.shape, dtype)
    close(fast_bwd(gy, win, arg), ref_bwd(gy, win, arg_ref), dtype)


@SETTINGS
@given(config=pool_configs(dilation=False), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**16),
       count_include_pad=st.booleans(), override=st.sampled_from([None, 3]))
def test_avg_pool_kernels_match_reference(config, dtype, seed, count_include_pad, override):
    shape, win, _ = config
    x = values(seed, shape, dtype)
    divisor = _avg_divisor(numpy, win, count_include_pad, override, dtype)
    (ref_fwd, fast_fwd), (ref_bwd, fast_bwd) = both("avg_pool2d_forward"), both("avg_pool2d_backward")
    y = fast_fwd(x, win, divisor)
    close(y, ref_fwd(x, win, divisor), dtype)
    gy = values(seed + 1, y.shape, dtype)
    close(fast_bwd(gy, win, divisor), ref_bwd(gy, win, divisor), dtype)


@pytest.mark.parametrize("fill", [-numpy.inf, numpy.nan])
@pytest.mark.parametrize("geometry", [((3, 3), (2, 2), (1, 1), (1, 1)), ((2, 3), (1, 2), (1, 1), (2, 1))], ids=str)
def test_max_pool_kernels_match_reference_on_non_finite_windows(geometry, fill):
    """Windows of -inf keep offset 0, on the padding for border windows: the
    kernels' fast interior path must not send their gradient anywhere. NaN
    windows keep the last NaN."""
    kernel, stride, padding, dilation = geometry
    x = values(0, (2, 2, 7, 6), numpy.float32)
    x[0] = fill
    x[1, :, 2:5, 1:4] = fill
    win = _windows("pool", x.shape, kernel, stride, padding, dilation, False)
    (ref_fwd, fast_fwd), (ref_bwd, fast_bwd) = both("max_pool2d_forward"), both("max_pool2d_backward")
    (y, arg), (y_ref, arg_ref) = fast_fwd(x, win), ref_fwd(x, win)
    numpy.testing.assert_array_equal(y, y_ref)
    numpy.testing.assert_array_equal(arg, arg_ref)
    numpy.testing.assert_array_equal(fast_fwd(x, win, False)[0], y_ref)
    gy = values(1, y.shape, numpy.float32)
    close(fast_bwd(gy, win, arg), ref_bwd(gy, win, arg_ref), numpy.float32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", [((2, 2), (2, 2), (0, 0), False), ((3, 3), (2, 2), (1, 1), True),
                                      ((3, 2), (1, 3), (1, 0), False), ((3, 2), (3, 2), (0, 0), False),
                                      ((2, 3), (2, 3), (0, 0), True)], ids=str)
def test_avg_pool_kernels_equal_the_reference_exactly(geometry, dtype):
    """The kernels add the same values in the same order as the reference
    (a depthwise conv with taps of 1; 1 * v is exact), so the results are
    equal, not just close. The backward fills blocks where the windows
    tile the input: the first and fourth geometries (the first leaving a
    row uncovered); the last one's ceil_mode window sticks out."""
    kernel, stride, padding, ceil_mode = geometry
    x = values(2, (3, 2, 9, 8), dtype)
    win = _windows("pool", x.shape, kernel, stride, padding, (1, 1), ceil_mode)
    divisor = _avg_divisor(numpy, win, False, None, dtype)
    (ref_fwd, fast_fwd), (ref_bwd, fast_bwd) = both("avg_pool2d_forward"), both("avg_pool2d_backward")
    y = fast_fwd(x, win, divisor)
    numpy.testing.assert_array_equal(y, ref_fwd(x, win, divisor))
    gy = values(3, y.shape, dtype)
    numpy.testing.assert_array_equal(fast_bwd(gy, win, divisor), ref_bwd(gy, win, divisor))


@SETTINGS
@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
       oh=st.integers(1, 6), ow=st.integers(1, 6), dtype=st.sampled_from(DTYPES), ties=st.booleans(),
       seed=st.integers(0, 2**16))
def test_adaptive_pool_kernels_match_reference(n, c, h, w, oh, ow, dtype, ties, seed):
    x = values(seed, (n, c, h, w), dtype, ties)
    gy = values(seed + 1, (n, c, oh, ow), dtype)
    (ref_fwd, fast_fwd), (ref_bwd, fast_bwd) = (both("adaptive_avg_pool2d_forward"),
                                                both("adaptive_avg_pool2d_backward"))
    close(fast_fwd(x, (oh, ow)), ref_fwd(x, (oh, ow)), dtype)
    close(fast_bwd(gy, (h, w)), ref_bwd(gy, (h, w)), dtype)

    (ref_fwd, fast_fwd), (ref_bwd, fast_bwd) = (both("adaptive_max_pool2d_forward"),
                                                both("adaptive_max_pool2d_backward"))
    (y, idx), (y_ref, idx_ref) = fast_fwd(x, (oh, ow)), ref_fwd(x, (oh, ow))
    numpy.testing.assert_array_equal(y, y_ref)
    numpy.testing.assert_array_equal(idx, idx_ref)
    assert idx.dtype == numpy.int64
    close(fast_bwd(gy, idx, x.shape), ref_bwd(gy, idx_ref, x.shape), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3, 7, 7), (1, 4, 1, 5), (3, 2, 6, 1)], ids=str)
def test_global_average_pool_kernels_match_reference(shape, dtype):
    """Output (1, 1) takes the kernels' flat global-pooling path."""
    x, gy = values(0, shape, dtype), values(1, shape[:2] + (1, 1), dtype)
    (ref_fwd, fast_fwd), (ref_bwd, fast_bwd) = (both("adaptive_avg_pool2d_forward"),
                                                both("adaptive_avg_pool2d_backward"))
    close(fast_fwd(x, (1, 1)), ref_fwd(x, (1, 1)), dtype)
    close(fast_bwd(gy, shape[2:]), ref_bwd(gy, shape[2:]), dtype)


@st.composite
def bn_shapes(draw):
    """(N, C), (N, C, L) or (N, C, H, W) with more than one value per channel."""
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    shape += tuple(draw(st.lists(st.integers(1, 5), max_size=2)))
    assume(numpy.prod(shape) // shape[1] > 1)
    return shape


@SETTINGS
@given(shape=bn_shapes(), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**16),
       affine=st.sampled_from(["both", "weight", "bias", "none"]), offset=st.sampled_from([0.0, 100.0]))
@example(shape=(2, 2), dtype=numpy.float32, seed=1, affine="both", offset=100.0)
def test_batch_norm_kernels_match_reference(shape, dtype, seed, affine, offset):
    """Training and eval, forward and backward; ``offset`` puts the mean far
    from zero, where a careless one-pass variance loses its digits."""
    rng = numpy.random.default_rng(seed)
    c = shape[1]
    x = (rng.standard_normal(shape) + offset).astype(dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    w = rng.uniform(0.5, 1.5, c).astype(dtype) if affine in ("both", "weight") else None
    b = rng.standard_normal(c).astype(dtype) if affine in ("both", "bias") else None
    (ref_fwd, fast_fwd), (ref_bwd, fast_bwd) = both("batch_norm_forward"), both("batch_norm_backward")
    eps = 1e-5
    # The shifted sums are more accurate than float32's own mean/var, so
    # float32 gets a tolerance relative to the spread, not to the offset.
    tol = dict(rtol=2e-4, atol=2e-4) if dtype == numpy.float32 else dict(rtol=1e-9, atol=1e-9)

    y, mean, var = fast_fwd(x, w, b, eps)
    y_ref, mean_ref, var_ref = ref_fwd(x, w, b, eps)
    # The expected values are the reference evaluated in float64 on the same
    # inputs: for a float32 batch of two values near 100, the reference's own
    # float32 mean is the less accurate side (seen: y 0.99646 vs the exact
    # 0.99695, which the kernel gets).
    exact = ref_fwd(*(None if a is None else a.astype(numpy.float64) for a in (x, w, b)), eps)
    for a, e, r in zip((y, mean, var), exact, (y_ref, mean_ref, var_ref)):
        numpy.testing.assert_allclose(a, e.astype(dtype), **tol)
        assert a.dtype == r.dtype and a.shape == r.shape

    running_mean, running_var = mean_ref + 0.1, var_ref * 1.5
    y, _, _ = fast_fwd(x, w, b, eps, running_mean, running_var)
    y_ref, _, _ = ref_fwd(x, w, b, eps, running_mean, running_var)
    numpy.testing.assert_allclose(y, y_ref, **tol)

    for training in (True, False):
        inv_std = (1 / numpy.sqrt(var_ref + eps)).astype(dtype)
        grads = fast_bwd(gy, x, mean_ref, inv_std, w, training)
        grads_ref = ref_bwd(gy, x, mean_ref, inv_std, w, training)
        for a, e in zip(grads, grads_ref):
            numpy.testing.assert_allclose(a, e, **tol)
            assert a.dtype == e.dtype and a.shape == e.shape


@SETTINGS
@given(shape=st.lists(st.integers(1, 5), min_size=2, max_size=4).map(tuple), dtype=st.sampled_from(DTYPES),
       seed=st.integers(0, 2**16), bounds=st.sampled_from([(0.0, numpy.inf), (0.0, 6.0), (-numpy.inf, numpy.inf)]))
def test_affine_clamp_kernel_matches_reference(shape, dtype, seed, bounds):
    """An eval batch norm and the ReLU / ReLU6 after it in one pass
    (``mc.fuse``'s FusedNorm): the same products and sums in the same
    order as the reference, so the same bits; NaN stays NaN."""
    rng = numpy.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    x.reshape(-1)[rng.integers(0, x.size)] = numpy.nan
    a, offset = rng.uniform(-2, 2, shape[1]).astype(dtype), rng.standard_normal(shape[1]).astype(dtype)
    ref, fast = both("affine_clamp")
    y, y_ref = fast(x, a, offset, *bounds), ref(x, a, offset, *bounds)
    assert y.dtype == y_ref.dtype == dtype and y.shape == y_ref.shape == shape
    numpy.testing.assert_array_equal(y, y_ref)
    finite = y[~numpy.isnan(y)]
    assert numpy.isnan(y).sum() == 1 and numpy.all(finite >= bounds[0]) and numpy.all(finite <= bounds[1])
    expected = numpy.clip(x.astype(numpy.float64) * a.reshape((-1,) + (1,) * (len(shape) - 2))
                          + offset.reshape((-1,) + (1,) * (len(shape) - 2)), *bounds)
    numpy.testing.assert_allclose(y, expected, rtol=1e-6 if dtype == numpy.float32 else 1e-15, atol=1e-6)


def test_kernels_accept_non_contiguous_input():
    x = numpy.random.default_rng(0).standard_normal((2, 3, 8, 6)).transpose(0, 1, 3, 2)
    win = _windows("pool", x.shape, (3, 3), (2, 2), (1, 1), (1, 1), False)
    (ref, fast) = both("max_pool2d_forward")
    numpy.testing.assert_array_equal(fast(x, win)[0], ref(x, win)[0])
    (ref, fast) = both("batch_norm_forward")
    numpy.testing.assert_allclose(fast(x, None, None, 1e-5)[0], ref(x, None, None, 1e-5)[0], rtol=1e-12)


# -- the ops against torch, with each backend ----------------------------
def test_backend_fixture_selects_the_kernels(backend):
    x = mc.randn(1, 1, 4, 4)
    fn = registry.lookup("max_pool2d_forward", numpy)
    assert fn is registry.implementations("max_pool2d_forward")[backend]
    assert F.max_pool2d(x, 2).shape == (1, 1, 2, 2)


def distinct(rng, *shape):
    """Distinct values in random order, so no max pool window holds a tie."""
    n = int(numpy.prod(shape))
    return rng.permutation(n).reshape(shape) / n * 4 - 2


POOLS = [
    (lambda x: F.max_pool2d(x, 3, 2, 1, return_indices=True),
     lambda x: TF.max_pool2d(x, 3, 2, 1, return_indices=True)),
    (lambda x: F.max_pool2d(x, (2, 3), (1, 2), (1, 1), dilation=(2, 1), ceil_mode=True),
     lambda x: TF.max_pool2d(x, (2, 3), (1, 2), (1, 1), dilation=(2, 1), ceil_mode=True)),
    (lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
     lambda x: TF.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False)),
    (lambda x: F.avg_pool2d(x, 2, divisor_override=3), lambda x: TF.avg_pool2d(x, 2, divisor_override=3)),
    (lambda x: F.adaptive_avg_pool2d(x, (3, 2)), lambda x: TF.adaptive_avg_pool2d(x, (3, 2))),
    (lambda x: F.adaptive_max_pool2d(x, (4, 3), return_indices=True),
     lambda x: TF.adaptive_max_pool2d(x, (4, 3), return_indices=True)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(len(POOLS)))
def test_pool_ops_match_torch(backend, case, dtype, rng):
    mc_fn, torch_fn = POOLS[case]
    x = distinct(rng, 2, 3, 7, 8)
    check_parity(mc_fn, torch_fn, [x], dtype=dtype)
    check_parity(mc_fn, torch_fn, [x], dtype=dtype, noncontiguous_inputs=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (2, 3, 4, 5)], ids=str)
def test_batch_norm_matches_torch(backend, shape, training, dtype, rng):
    c = shape[1]
    x, w, b = rng.standard_normal(shape) + 3, rng.uniform(0.5, 1.5, c), rng.standard_normal(c)
    rm, rv = rng.standard_normal(c), rng.uniform(0.5, 2, c)
    check_parity(lambda x, w, b: F.batch_norm(x, mc.tensor(rm.astype(dtype)), mc.tensor(rv.astype(dtype)),
                                              w, b, training=training),
                 lambda x, w, b: TF.batch_norm(x, torch.tensor(rm.astype(dtype)), torch.tensor(rv.astype(dtype)),
                                               w, b, training=training),
                 [x, w, b], dtype=dtype)


def test_batch_norm_running_stats_match_torch(backend, rng):
    x = rng.standard_normal((4, 3, 5, 2)) * 2 + 1
    ours, theirs = mc.nn.BatchNorm2d(3).double(), torch.nn.BatchNorm2d(3).double()
    for _ in range(2):
        ours(mc.tensor(x))
        theirs(torch.tensor(x))
    numpy.testing.assert_allclose(ours.running_mean.numpy(), theirs.running_mean.numpy(), rtol=1e-12)
    numpy.testing.assert_allclose(ours.running_var.numpy(), theirs.running_var.numpy(), rtol=1e-12)
