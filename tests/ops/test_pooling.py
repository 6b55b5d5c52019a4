"""Pooling against torch: max/avg/adaptive pools, indices, depth pooling."""
import numpy
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings, strategies as st

import minicnn as mc
import minicnn.nn.functional as F
from parity import check_parity, gradcheck_inputs

R = numpy.random.default_rng(5)


@pytest.fixture(autouse=True)
def _fresh_rng():
    """Reseed R for every test, so a test's data does not depend on which
    tests ran before it (pytest-xdist changes that order)."""
    global R
    R = numpy.random.default_rng(5)


def distinct(*shape):
    """Distinct values in random order, spread over [-2, 2): max pooling has
    no ties, so its gradient is well defined (and finite differences with
    eps 1e-6 never swap a maximum)."""
    n = int(numpy.prod(shape))
    return (R.permutation(n).reshape(shape) / n * 4 - 2).astype(numpy.float64)


def check_all(mc_fn, torch_fn, x, gradcheck_x=None):
    """float64, float32 and non-contiguous parity, and a float64 gradcheck."""
    check_parity(mc_fn, torch_fn, [x], dtype=numpy.float64)
    check_parity(mc_fn, torch_fn, [x], dtype=numpy.float32)
    check_parity(mc_fn, torch_fn, [x], dtype=numpy.float64, noncontiguous_inputs=True)
    mc.gradcheck(mc_fn, gradcheck_inputs([x if gradcheck_x is None else gradcheck_x]))


SHAPES = [(2, 3, 7, 8), (1, 1, 9, 5), (3, 6, 7)]  # non-square, odd, batch 1, unbatched

MAX_CASES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=1),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0)),
    dict(kernel_size=(2, 4), stride=(1, 3), padding=(0, 2), ceil_mode=True),
    dict(kernel_size=3, stride=2, ceil_mode=True),
    dict(kernel_size=2, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=3, dilation=2),
    dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), dilation=(3, 2), ceil_mode=True),
    dict(kernel_size=5, stride=4, padding=2, ceil_mode=True),
    dict(kernel_size=(1, 3), stride=[]),
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kw", MAX_CASES, ids=str)
def test_max_pool2d(kw, shape):
    x = distinct(*shape)
    check_all(lambda x: F.max_pool2d(x, return_indices=True, **kw),
              lambda x: TF.max_pool2d(x, return_indices=True, **kw), x,
              gradcheck_x=distinct(*(1,) * (len(shape) - 2), *shape[-2:]))


def test_max_pool2d_without_indices_returns_a_tensor():
    x = distinct(2, 2, 6, 6)
    y = check_parity(lambda x: F.max_pool2d(x, 2), lambda x: TF.max_pool2d(x, 2), [x])
    assert len(y) == 1


def test_max_pool2d_indices_are_int64_and_carry_no_gradient():
    x = mc.tensor(distinct(1, 2, 4, 4), requires_grad=True)
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    assert idx.dtype == numpy.int64 and not idx.requires_grad
    assert y.requires_grad


def test_max_pool2d_keeps_only_a_byte_per_output():
    x = mc.tensor(distinct(2, 3, 8, 8), requires_grad=True)
    y = F.max_pool2d(x, 3, 1, 1)
    node = y.grad_fn
    assert node.arg.dtype == numpy.uint8 and node.arg.shape == y.shape
    assert node._saved == ()


@pytest.mark.parametrize("kw", MAX_CASES[:4], ids=str)
def test_max_pool2d_without_a_graph_matches_torch(kw):
    """Under no_grad (and on an input that needs no gradient) the pool
    computes the maxima only, no offsets: the same values as torch's,
    NaN kept, and nothing saved for a backward."""
    x = distinct(2, 3, 9, 8).astype(numpy.float32)
    x[0, 1, 4, 4] = numpy.nan
    expected = TF.max_pool2d(torch.from_numpy(x), **kw).numpy()
    with mc.no_grad():
        y = F.max_pool2d(mc.tensor(x, requires_grad=True), **kw)
    numpy.testing.assert_array_equal(y.numpy(), expected)
    numpy.testing.assert_array_equal(F.max_pool2d(mc.tensor(x), **kw).numpy(), expected)
    assert y.grad_fn is None


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # parity on inf/nan
def test_max_pool2d_nan_propagates_like_torch():
    x = distinct(1, 1, 4, 4)
    x[0, 0, 1, 2] = numpy.nan
    check_parity(lambda x: F.max_pool2d(x, 2, 1, return_indices=True),
                 lambda x: TF.max_pool2d(x, 2, 1, return_indices=True), [x], grad=False)


def test_max_pool2d_double_backward():
    x = mc.tensor(distinct(1, 2, 5, 5), requires_grad=True)
    g = mc.tensor(R.standard_normal((1, 2, 3, 3)), requires_grad=True)

    def grad_of_x(g):
        (gx,) = _grad(lambda x: F.max_pool2d(x, 3, 2, 1), x, g)
        return gx
    mc.gradcheck(grad_of_x, (g,))


def _grad(fn, x, g):
    """dL/dx for L = <g, fn(x)>, differentiable (create_graph). Grad is
    enabled even inside gradcheck's no_grad evaluations, which need it."""
    x.grad = None
    with mc.enable_grad():
        y = fn(x)
        y.backward(g, create_graph=True)
    gx = x.grad
    x.grad = None
    return (gx,)


AVG_CASES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=1, padding=1),
    dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
    dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0)),
    dict(kernel_size=(2, 4), stride=(1, 3), padding=(0, 2), ceil_mode=True),
    dict(kernel_size=(2, 4), stride=(1, 3), padding=(1, 2), ceil_mode=True, count_include_pad=False),
    dict(kernel_size=3, stride=2, ceil_mode=True),
    dict(kernel_size=2, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=3, stride=2, padding=1, divisor_override=4),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False, divisor_override=2),
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kw", AVG_CASES, ids=str)
def test_avg_pool2d(kw, shape):
    x = R.standard_normal(shape)
    check_all(lambda x: F.avg_pool2d(x, **kw), lambda x: TF.avg_pool2d(x, **kw), x,
              gradcheck_x=R.standard_normal((1,) * (len(shape) - 2) + shape[-2:]))


def test_avg_pool2d_double_backward():
    x = mc.tensor(R.standard_normal((1, 2, 5, 5)), requires_grad=True)
    g = mc.tensor(R.standard_normal((1, 2, 3, 3)), requires_grad=True)
    mc.gradcheck(lambda g: _grad(lambda x: F.avg_pool2d(x, 3, 2, 1) ** 2, x, g)[0], (g,))


ADAPTIVE_SIZES = [1, 2, (3, 2), (None, 3), (4, None), (5, 7), (7, 9), (10, 3)]


@pytest.mark.parametrize("shape", [(2, 3, 7, 8), (3, 5, 6)], ids=str)
@pytest.mark.parametrize("size", ADAPTIVE_SIZES, ids=str)
def test_adaptive_avg_pool2d(size, shape):
    check_all(lambda x: F.adaptive_avg_pool2d(x, size), lambda x: TF.adaptive_avg_pool2d(x, size),
              R.standard_normal(shape), gradcheck_x=R.standard_normal((1, 2) + shape[-2:]))


@pytest.mark.parametrize("shape", [(2, 3, 7, 8), (3, 5, 6)], ids=str)
@pytest.mark.parametrize("size", ADAPTIVE_SIZES, ids=str)
def test_adaptive_max_pool2d(size, shape):
    check_all(lambda x: F.adaptive_max_pool2d(x, size, return_indices=True),
              lambda x: TF.adaptive_max_pool2d(x, size, return_indices=True), distinct(*shape),
              gradcheck_x=distinct(1, 2, *shape[-2:]))


def test_adaptive_max_pool2d_double_backward():
    x = mc.tensor(distinct(1, 2, 5, 6), requires_grad=True)
    g = mc.tensor(R.standard_normal((1, 2, 4, 4)), requires_grad=True)
    mc.gradcheck(lambda g: _grad(lambda x: F.adaptive_max_pool2d(x, 4), x, g)[0], (g,))
    g = mc.tensor(R.standard_normal((1, 2, 4, 3)), requires_grad=True)
    mc.gradcheck(lambda g: _grad(lambda x: F.adaptive_avg_pool2d(x, (4, 3)) ** 2, x, g)[0], (g,))


@pytest.mark.parametrize("kernel,stride,shape", [
    (2, None, (2, 6, 3, 4)), (3, None, (1, 9, 2, 2)), (3, 2, (2, 7, 3, 2)), (1, None, (2, 3, 2, 2)),
    (2, 3, (2, 8, 2, 3)), (4, None, (8, 3, 3))])
def test_depth_max_pool2d(kernel, stride, shape):
    s = kernel if stride is None else stride
    check_all(lambda x: F.depth_max_pool2d(x, kernel, stride),
              lambda x: x.unfold(-3, kernel, s).amax(-1), distinct(*shape))


def test_depth_max_pool2d_is_the_books_reshape_and_max():
    x = distinct(2, 6, 3, 4)
    check_parity(lambda x: F.depth_max_pool2d(x, 3),
                 lambda x: x.reshape(2, 2, 3, 3, 4).amax(2), [x])
    y = F.depth_max_pool2d(mc.tensor(x), 2).numpy()
    numpy.testing.assert_array_equal(y, x.reshape(2, 3, 2, 3, 4).max(2))


@st.composite
def pool_configs(draw, dilation=True):
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if dilation else (1, 1)
    ceil_mode = draw(st.booleans())
    # At least the dilated kernel's span, plus a few: smaller inputs can
    # give a dilated window whose taps all fall in the padding, where
    # torch returns -inf and an index outside the plane.
    hw = tuple(d * (k - 1) + 1 + draw(st.integers(0, 4)) for k, d in zip(kernel, dil))
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    return dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode), dil, (n, c) + hw


@settings(max_examples=25, deadline=None)
@given(pool_configs(), st.sampled_from([numpy.float64, numpy.float32]), st.booleans())
def test_max_pool2d_random_configs(config, dtype, noncontiguous):
    kw, dilation, shape = config
    check_parity(lambda x: F.max_pool2d(x, dilation=dilation, return_indices=True, **kw),
                 lambda x: TF.max_pool2d(x, dilation=dilation, return_indices=True, **kw),
                 [distinct(*shape)], dtype=dtype, noncontiguous_inputs=noncontiguous)


@settings(max_examples=25, deadline=None)
@given(pool_configs(dilation=False), st.booleans(), st.sampled_from([None, 3]),
       st.sampled_from([numpy.float64, numpy.float32]), st.booleans())
def test_avg_pool2d_random_configs(config, count_include_pad, divisor, dtype, noncontiguous):
    kw, _, shape = config
    kw = dict(kw, count_include_pad=count_include_pad, divisor_override=divisor)
    check_parity(lambda x: F.avg_pool2d(x, **kw), lambda x: TF.avg_pool2d(x, **kw),
                 [R.standard_normal(shape)], dtype=dtype, noncontiguous_inputs=noncontiguous)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.one_of(st.none(), st.integers(1, 9)),
       st.one_of(st.none(), st.integers(1, 9)), st.sampled_from([numpy.float64, numpy.float32]))
def test_adaptive_pools_random_sizes(h, w, oh, ow, dtype):
    x = distinct(2, 2, h, w)
    check_parity(lambda x: F.adaptive_max_pool2d(x, (oh, ow), True),
                 lambda x: TF.adaptive_max_pool2d(x, (oh, ow), True), [x], dtype=dtype)
    check_parity(lambda x: F.adaptive_avg_pool2d(x, (oh, ow)),
                 lambda x: TF.adaptive_avg_pool2d(x, (oh, ow)), [x], dtype=dtype)


# -- bad input -----------------------------------------------------------
def _x(*shape):
    return mc.tensor(R.standard_normal(shape))


@pytest.mark.parametrize("call,match", [
    (lambda: F.max_pool2d(_x(4, 4), 2), r"3-D \(C, H, W\) or 4-D .* shape \(4, 4\)"),
    (lambda: F.avg_pool2d(_x(1, 1, 1, 4, 4), 2), r"shape \(1, 1, 1, 4, 4\)"),
    (lambda: F.max_pool2d(_x(1, 1, 3, 3), 4), r"\(1, 1, 3, 3\) is too small for kernel_size \(4, 4\)"),
    (lambda: F.max_pool2d(_x(1, 1, 5, 5), 3, dilation=3), r"too small"),
    (lambda: F.avg_pool2d(_x(1, 1, 1, 9), (4, 2), padding=(1, 0)), r"too small.*would be \(0, 4\)"),
    (lambda: F.max_pool2d(_x(1, 1, 4, 4), 2, stride=0), r"stride must be >= 1"),
    (lambda: F.avg_pool2d(_x(1, 1, 4, 4), 2, stride=(1, 0)), r"stride must be >= 1"),
    (lambda: F.max_pool2d(_x(1, 1, 4, 4), 0), r"kernel_size must be >= 1"),
    (lambda: F.max_pool2d(_x(1, 1, 4, 4), 3, padding=-1), r"padding must be >= 0"),
    (lambda: F.max_pool2d(_x(1, 1, 4, 4), 3, padding=2), r"padding \(2, 2\) must be at most half of kernel_size"),
    (lambda: F.avg_pool2d(_x(1, 1, 4, 4), (4, 2), padding=(1, 2)), r"at most half"),
    (lambda: F.max_pool2d(_x(1, 1, 4, 4), 3, dilation=0), r"dilation must be >= 1"),
    (lambda: F.max_pool2d(_x(1, 1, 4, 4), (2, 2, 2)), r"kernel_size"),
    (lambda: F.avg_pool2d(_x(1, 1, 4, 4), 2, divisor_override=0), r"divisor_override"),
    (lambda: F.adaptive_avg_pool2d(_x(1, 1, 4, 4), 0), r"output_size must be >= 1"),
    (lambda: F.adaptive_max_pool2d(_x(1, 1, 4, 4), (2, -1)), r"output_size .*\(2, -1\)"),
    (lambda: F.adaptive_max_pool2d(_x(4, 4), 2), r"4-D"),
    (lambda: F.depth_max_pool2d(_x(1, 5, 2, 2), 2), r"5 channels .*\(1, 5, 2, 2\).*kernel_size 2"),
    (lambda: F.depth_max_pool2d(_x(1, 2, 2, 2), 3), r"2 channels"),
    (lambda: F.depth_max_pool2d(_x(1, 4, 2, 2), 2, stride=0), r"stride must be >= 1"),
    (lambda: F.depth_max_pool2d(_x(4, 2), 2), r"shape \(4, 2\)"),
])
def test_bad_arguments_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bad_types_raise_type_error():
    with pytest.raises(TypeError, match="dtype int64"):
        F.max_pool2d(mc.tensor(numpy.ones((1, 1, 4, 4), dtype=numpy.int64)), 2)
    with pytest.raises(TypeError, match="kernel_size"):
        F.avg_pool2d(_x(1, 1, 4, 4), 2.5)
    with pytest.raises(TypeError, match="output_size"):
        F.adaptive_avg_pool2d(_x(1, 1, 4, 4), "2")
