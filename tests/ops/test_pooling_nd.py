"""1-D and 3-D pooling against torch: max/avg/adaptive pools over
hypothesis-drawn geometries, indices, ties and NaN, double backward, and
bad input. (The 2-D pools, which these run through, are
tests/ops/test_pooling.py.)"""
import numpy
import pytest
import torch.nn.functional as TF
from hypothesis import given, settings, strategies as st

import minicnn as mc
import minicnn.nn.functional as F
from parity import check_parity, gradcheck_inputs

R = numpy.random.default_rng(7)


@pytest.fixture(autouse=True)
def _fresh_rng():
    global R
    R = numpy.random.default_rng(7)


def distinct(*shape):
    """Distinct values in random order (no ties: max gradients are well
    defined and finite differences never swap a maximum)."""
    n = int(numpy.prod(shape))
    return (R.permutation(n).reshape(shape) / n * 4 - 2).astype(numpy.float64)


POOLS = {1: (F.max_pool1d, TF.max_pool1d, F.avg_pool1d, TF.avg_pool1d),
         3: (F.max_pool3d, TF.max_pool3d, F.avg_pool3d, TF.avg_pool3d)}
ADAPTIVE = {1: (F.adaptive_max_pool1d, TF.adaptive_max_pool1d, F.adaptive_avg_pool1d, TF.adaptive_avg_pool1d),
            3: (F.adaptive_max_pool3d, TF.adaptive_max_pool3d, F.adaptive_avg_pool3d, TF.adaptive_avg_pool3d)}


@st.composite
def pool_configs(draw, n, dilation=True):
    """Window arguments for n spatial dims and an input shape they fit, as
    tests/ops/test_pooling.py draws them for 2-D."""
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(n))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(n))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    dil = tuple(draw(st.integers(1, 2)) for _ in range(n)) if dilation else (1,) * n
    # At least the dilated kernel's span: a window of padding only gives
    # -inf and an index outside the input in torch.
    spatial = tuple(d * (k - 1) + 1 + draw(st.integers(0, 3)) for k, d in zip(kernel, dil))
    batch = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    if draw(st.booleans()):
        batch = batch[1:]  # unbatched
    kw = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=draw(st.booleans()))
    if dilation:
        kw["dilation"] = dil
    return kw, batch + spatial


@pytest.mark.parametrize("n", [1, 3])
@settings(max_examples=20, deadline=None)
@given(data=st.data(), dtype=st.sampled_from([numpy.float64, numpy.float32]), noncontiguous=st.booleans())
def test_max_pool_random_configs(n, data, dtype, noncontiguous):
    kw, shape = data.draw(pool_configs(n))
    mc_pool, torch_pool = POOLS[n][:2]
    check_parity(lambda x: mc_pool(x, return_indices=True, **kw),
                 lambda x: torch_pool(x, return_indices=True, **kw),
                 [distinct(*shape)], dtype=dtype, noncontiguous_inputs=noncontiguous)


@pytest.mark.parametrize("n", [1, 3])
@settings(max_examples=20, deadline=None)
@given(data=st.data(), count_include_pad=st.booleans(), dtype=st.sampled_from([numpy.float64, numpy.float32]),
       noncontiguous=st.booleans())
def test_avg_pool_random_configs(n, data, count_include_pad, dtype, noncontiguous):
    kw, shape = data.draw(pool_configs(n, dilation=False))
    kw = dict(kw, count_include_pad=count_include_pad)
    if n == 3:
        kw["divisor_override"] = data.draw(st.sampled_from([None, 3, -2]))
    mc_pool, torch_pool = POOLS[n][2:]
    check_parity(lambda x: mc_pool(x, **kw), lambda x: torch_pool(x, **kw),
                 [R.standard_normal(shape)], dtype=dtype, noncontiguous_inputs=noncontiguous)


@pytest.mark.parametrize("n", [1, 3])
@settings(max_examples=20, deadline=None)
@given(data=st.data(), dtype=st.sampled_from([numpy.float64, numpy.float32]), noncontiguous=st.booleans())
def test_adaptive_pools_random_sizes(n, data, dtype, noncontiguous):
    spatial = tuple(data.draw(st.integers(1, 7)) for _ in range(n))
    size = tuple(data.draw(st.one_of(st.none(), st.integers(1, 7))) for _ in range(n))
    if n == 1 or data.draw(st.booleans()):
        size = size[0] if size[0] is not None else 3  # an int (None alone is not a size)
    x = distinct(2, 2, *spatial)
    mc_max, torch_max, mc_avg, torch_avg = ADAPTIVE[n]
    check_parity(lambda x: mc_max(x, size, True), lambda x: torch_max(x, size, True), [x], dtype=dtype,
                 noncontiguous_inputs=noncontiguous)
    check_parity(lambda x: mc_avg(x, size), lambda x: torch_avg(x, size), [x], dtype=dtype,
                 noncontiguous_inputs=noncontiguous)


# -- gradcheck and double backward ---------------------------------------
GRADCHECK_CASES = [
    (F.max_pool1d, (1, 2, 9), dict(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True)),
    (F.avg_pool1d, (1, 2, 9), dict(kernel_size=4, stride=3, padding=2, ceil_mode=True, count_include_pad=False)),
    (F.max_pool3d, (1, 2, 4, 5, 5), dict(kernel_size=(2, 3, 3), stride=(1, 2, 2), padding=(1, 1, 1))),
    (F.max_pool3d, (1, 1, 5, 4, 6), dict(kernel_size=(3, 1, 2), stride=(2, 1, 2), dilation=(2, 1, 1),
                                         ceil_mode=True)),
    (F.avg_pool3d, (1, 2, 4, 5, 5), dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
    (F.avg_pool3d, (1, 1, 5, 4, 4), dict(kernel_size=(2, 2, 1), divisor_override=3)),
    (F.adaptive_max_pool1d, (1, 2, 7), dict(output_size=3)),
    (F.adaptive_avg_pool1d, (1, 2, 7), dict(output_size=4)),
    (F.adaptive_max_pool3d, (1, 2, 3, 5, 4), dict(output_size=(2, 3, None))),
    (F.adaptive_avg_pool3d, (1, 2, 3, 5, 4), dict(output_size=(1, 2, 3))),
    (F.adaptive_max_pool3d, (1, 2, 2, 3, 3), dict(output_size=1)),
    (F.adaptive_avg_pool3d, (2, 2, 3, 3), dict(output_size=(1, 1, 1))),
]


@pytest.mark.parametrize("pool,shape,kw", GRADCHECK_CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_gradcheck(pool, shape, kw):
    mc.gradcheck(lambda x: pool(x, **kw), gradcheck_inputs([distinct(*shape)]))


def _grad(fn, x, g):
    """dL/dx for L = <g, fn(x)>, differentiable (create_graph)."""
    x.grad = None
    with mc.enable_grad():
        fn(x).backward(g, create_graph=True)
    return x.grad


@pytest.mark.parametrize("pool,shape,kw", [
    (F.max_pool3d, (1, 2, 4, 5, 5), dict(kernel_size=3, stride=2, padding=1)),
    (F.avg_pool3d, (1, 2, 4, 5, 5), dict(kernel_size=(2, 3, 3), stride=(1, 2, 2))),
    (F.adaptive_max_pool3d, (1, 2, 3, 5, 4), dict(output_size=2)),
    (F.max_pool1d, (1, 2, 7), dict(kernel_size=3, stride=2, padding=1)),
], ids=lambda v: getattr(v, "__name__", str(v)))
def test_double_backward(pool, shape, kw):
    x = mc.tensor(distinct(*shape), requires_grad=True)
    out_shape = pool(x, **kw).shape
    g = mc.tensor(R.standard_normal(out_shape), requires_grad=True)
    square = pool in (F.avg_pool3d,)  # linear ops need a square for a non-zero second derivative
    mc.gradcheck(lambda g: _grad(lambda x: pool(x, **kw) ** (2 if square else 1), x, g), (g,))


@pytest.mark.parametrize("noncontiguous", [False, True])
def test_global_pools_one_bin(noncontiguous):
    """Output size 1 (the video ResNets' head) takes a one-pass path."""
    x = distinct(2, 3, 3, 4, 5)
    check_parity(lambda x: F.adaptive_max_pool3d(x, 1, True), lambda x: TF.adaptive_max_pool3d(x, 1, True), [x],
                 noncontiguous_inputs=noncontiguous)
    check_parity(lambda x: F.adaptive_avg_pool3d(x, (1, 1, 1)), lambda x: TF.adaptive_avg_pool3d(x, (1, 1, 1)),
                 [x], dtype=numpy.float32, noncontiguous_inputs=noncontiguous)


# -- ties and NaN (the separable 3-D pool keeps torch's rules) -----------
def test_max_pool3d_ties_pick_torchs_first_maximum():
    """Integer values in a small range: many equal maxima per window, and
    torch keeps the first in (t, h, w) order."""
    x = R.integers(0, 3, size=(2, 2, 5, 6, 6)).astype(numpy.float64)
    check_parity(lambda x: F.max_pool3d(x, 3, 2, 1, return_indices=True),
                 lambda x: TF.max_pool3d(x, 3, 2, 1, return_indices=True), [x], grad=False)
    check_parity(lambda x: F.adaptive_max_pool3d(x, (2, 4, 3), return_indices=True),
                 lambda x: TF.adaptive_max_pool3d(x, (2, 4, 3), return_indices=True), [x], grad=False)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_max_pool3d_nan_propagates_like_torch():
    x = distinct(1, 2, 4, 5, 5)
    x[0, 0, 1, 2, 3] = x[0, 0, 2, 1, 1] = x[0, 1, 0, 0, 0] = numpy.nan
    check_parity(lambda x: F.max_pool3d(x, 2, 1, return_indices=True),
                 lambda x: TF.max_pool3d(x, 2, 1, return_indices=True), [x], grad=False)


def test_max_pool3d_frame_window_skips_the_time_stage():
    """A (1, KH, KW) window (S3D's) is one 2-D pool of the frames."""
    x = distinct(2, 3, 4, 7, 7)
    check_parity(lambda x: F.max_pool3d(x, (1, 3, 3), (1, 2, 2), (0, 1, 1), return_indices=True),
                 lambda x: TF.max_pool3d(x, (1, 3, 3), (1, 2, 2), (0, 1, 1), return_indices=True), [x])
    check_parity(lambda x: F.max_pool3d(x, (2, 1, 1), return_indices=True),
                 lambda x: TF.max_pool3d(x, (2, 1, 1), return_indices=True), [x])


# -- bad input -----------------------------------------------------------
def _x(*shape):
    return mc.tensor(R.standard_normal(shape))


@pytest.mark.parametrize("call,match", [
    (lambda: F.max_pool3d(_x(2, 4, 4), 2), r"max_pool3d: expected 4-D \(C, T, H, W\) or 5-D .*\(2, 4, 4\)"),
    (lambda: F.avg_pool3d(_x(1, 1, 1, 2, 4, 4), 2), r"avg_pool3d: .*\(1, 1, 1, 2, 4, 4\)"),
    (lambda: F.max_pool1d(_x(1, 2, 3, 4), 2), r"max_pool1d: expected 2-D \(C, L\) or 3-D .*\(1, 2, 3, 4\)"),
    (lambda: F.adaptive_avg_pool3d(_x(2, 4, 4), 1), r"adaptive_avg_pool3d: .*\(2, 4, 4\)"),
    (lambda: F.max_pool3d(_x(1, 1, 2, 5, 5), 3), r"\(1, 1, 2, 5, 5\) is too small for kernel_size \(3, 3, 3\)"),
    (lambda: F.avg_pool1d(_x(1, 1, 3), 6, padding=1), r"\(1, 1, 3\) is too small .*would be \(0,\)"),
    (lambda: F.max_pool1d(_x(1, 1, 9), 3, dilation=5), r"too small"),
    (lambda: F.max_pool3d(_x(1, 1, 4, 4, 4), 2, padding=(0, 2, 0)), r"padding \(0, 2, 0\) must be at most half"),
    (lambda: F.max_pool3d(_x(1, 1, 4, 4, 4), (2, 2)), r"max_pool3d: kernel_size must be an int or a triple of ints"),
    (lambda: F.avg_pool3d(_x(1, 1, 4, 4, 4), 2, stride=(1, 0, 1)), r"stride must be >= 1"),
    (lambda: F.avg_pool3d(_x(1, 1, 4, 4, 4), 2, divisor_override=0), r"divisor_override"),
    (lambda: F.adaptive_max_pool3d(_x(1, 1, 4, 4, 4), (2, 0, 1)), r"output_size must be >= 1"),
    (lambda: F.adaptive_avg_pool1d(_x(1, 1, 4), -1), r"output_size"),
])
def test_bad_arguments_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("call,match", [
    (lambda: F.max_pool3d(mc.tensor(numpy.ones((1, 1, 2, 2, 2), numpy.int64)), 2), r"dtype int64"),
    (lambda: F.avg_pool1d(_x(1, 1, 4), 2.0), r"kernel_size"),
    (lambda: F.max_pool3d(_x(1, 1, 4, 4, 4), (2, True, 2)), r"kernel_size"),
    (lambda: F.adaptive_avg_pool3d(_x(1, 1, 4, 4, 4), (2, 2)), r"output_size"),
    (lambda: F.avg_pool3d(_x(1, 1, 4, 4, 4), 2, divisor_override=1.5), r"divisor_override must be an int"),
])
def test_bad_types_raise_type_error(call, match):
    with pytest.raises(TypeError, match=match):
        call()
