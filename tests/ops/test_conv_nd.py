"""conv1d, conv3d, conv_transpose1d, conv_transpose3d and their layers
against torch: a grid of geometries, hypothesis-drawn ones, gradcheck,
double-backward pieces, the Numba kernels of ranks other than 2 and bad
arguments. The 2-D ops, the N = 2 case of the same code, keep their own
tests (test_conv.py, test_conv_transpose.py); the layers are tested in
tests/nn/test_conv_nd_layers.py."""
import numpy
import pytest
import torch
from hypothesis import assume, given, settings, strategies as st

import minicnn as mc
import minicnn.nn.functional as F
from minicnn.functional.conv import ConvGeometry, ConvNd, ConvNdGradWeight
from minicnn.functional.conv_transpose import ConvTransposeNd
from minicnn.kernels import registry
from parity import check_parity, gradcheck_inputs

# torch warns that it copies the input for asymmetric 'same' padding.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

R = numpy.random.default_rng(19)
F32 = dict(rtol=1e-4, atol=1e-5)  # convolutions sum many products: float32 needs looser bounds
TF = torch.nn.functional
OPS = {name: (getattr(F, name), getattr(TF, name))
       for name in ("conv1d", "conv3d", "conv_transpose1d", "conv_transpose3d")}


def n(*shape):
    return R.standard_normal(shape)


def fns(op, bias, **kw):
    """(minicnn, torch) functions of (x, w[, b]) for ``op`` with the same arguments."""
    mine, theirs = OPS[op]
    if bias:
        return lambda x, w, b: mine(x, w, b, **kw), lambda x, w, b: theirs(x, w, b, **kw)
    return lambda x, w: mine(x, w, **kw), lambda x, w: theirs(x, w, **kw)


# name: (op, input shape, weight shape, bias, keyword arguments)
CASES = {
    "1d_plain": ("conv1d", (2, 3, 9), (4, 3, 3), True, {}),
    "1d_strided_padded_dilated": ("conv1d", (2, 2, 11), (3, 2, 3), True, dict(stride=2, padding=2, dilation=2)),
    "1d_groups": ("conv1d", (1, 4, 7), (6, 2, 2), False, dict(groups=2, padding=(1,))),
    "1d_depthwise": ("conv1d", (2, 3, 8), (6, 1, 3), True, dict(groups=3, padding=1)),
    "1d_pointwise": ("conv1d", (2, 4, 5), (3, 4, 1), True, dict(stride=2)),
    "1d_same_even": ("conv1d", (1, 2, 6), (3, 2, 4), True, dict(padding="same")),
    "1d_valid": ("conv1d", (2, 2, 5), (2, 2, 5), True, dict(padding="valid")),
    "3d_plain": ("conv3d", (2, 2, 4, 5, 4), (3, 2, 3, 3, 3), True, dict(padding=1)),
    "3d_no_bias_mixed": ("conv3d", (1, 3, 5, 4, 6), (2, 3, 2, 3, 2), False,
                         dict(stride=(2, 1, 3), padding=(0, 1, 2), dilation=(1, 2, 1))),
    "3d_groups": ("conv3d", (2, 4, 3, 4, 4), (6, 2, 1, 3, 3), True, dict(groups=2, padding=(0, 1, 1))),
    "3d_depthwise": ("conv3d", (1, 3, 4, 4, 3), (3, 1, 3, 1, 1), True, dict(groups=3, padding=(1, 0, 0))),
    "3d_pointwise": ("conv3d", (2, 4, 3, 4, 5), (3, 4, 1, 1, 1), True, dict(stride=(1, 2, 2))),
    "3d_dense": ("conv3d", (2, 3, 2, 3, 3), (4, 3, 2, 3, 3), True, {}),
    "3d_same": ("conv3d", (1, 2, 3, 5, 4), (2, 2, 2, 3, 4), True, dict(padding="same", dilation=(2, 1, 1))),
    "t1d_plain": ("conv_transpose1d", (2, 3, 5), (3, 2, 3), True, {}),
    "t1d_strided": ("conv_transpose1d", (2, 4, 4), (4, 3, 3), True,
                    dict(stride=3, padding=1, output_padding=2, groups=2)),
    "t1d_dilated": ("conv_transpose1d", (1, 2, 4), (2, 2, 2), False, dict(dilation=3, output_padding=2)),
    "t3d_plain": ("conv_transpose3d", (2, 2, 2, 3, 3), (2, 3, 3, 3, 3), True, {}),
    "t3d_strided": ("conv_transpose3d", (1, 4, 2, 3, 2), (4, 1, 2, 3, 2), True,
                    dict(stride=(2, 1, 3), padding=(1, 1, 0), output_padding=(1, 0, 2), groups=2)),
    "t3d_dilated": ("conv_transpose3d", (1, 2, 3, 2, 3), (2, 2, 2, 2, 1), False,
                    dict(dilation=(2, 1, 3), output_padding=(1, 0, 2))),
    "t3d_pointwise": ("conv_transpose3d", (2, 3, 2, 3, 2), (3, 2, 1, 1, 1), True, dict(stride=2, output_padding=1)),
}
NAMES = sorted(CASES)


def inputs_of(name):
    op, x_shape, w_shape, bias, kw = CASES[name]
    out_channels = w_shape[1] * kw.get("groups", 1) if op.startswith("conv_transpose") else w_shape[0]
    arrays = [n(*x_shape), n(*w_shape)] + ([n(out_channels)] if bias else [])
    return fns(op, bias, **kw), arrays


NONCONTIGUOUS = {"1d_groups", "3d_plain", "3d_groups", "t1d_strided", "t3d_strided"}


@pytest.mark.parametrize("name, dtype, noncontiguous",
                         [(name, dtype, False) for name in NAMES for dtype in (numpy.float64, numpy.float32)] +
                         [(name, numpy.float64, True) for name in sorted(NONCONTIGUOUS)])
def test_matches_torch(name, dtype, noncontiguous):
    (mine, theirs), arrays = inputs_of(name)
    tol = F32 if dtype == numpy.float32 else {}
    check_parity(mine, theirs, arrays, dtype=dtype, noncontiguous_inputs=noncontiguous, **tol)


@pytest.mark.parametrize("name", ["1d_strided_padded_dilated", "1d_depthwise", "3d_no_bias_mixed", "3d_depthwise",
                                  "t1d_strided", "t3d_strided"])
def test_gradcheck(name):
    (mine, _), arrays = inputs_of(name)
    assert mc.gradcheck(mine, gradcheck_inputs(arrays))


@pytest.mark.parametrize("op, x_shape, w_shape", [
    ("conv1d", (3, 7), (2, 3, 3)), ("conv3d", (2, 3, 4, 4), (3, 2, 2, 2, 2)),
    ("conv_transpose1d", (3, 4), (3, 2, 3)), ("conv_transpose3d", (2, 2, 3, 2), (2, 3, 2, 2, 2)),
])
def test_unbatched_input(op, x_shape, w_shape):
    check_parity(*fns(op, False, padding=1), [n(*x_shape), n(*w_shape)])


def test_transpose_is_the_adjoint_of_conv3d():
    """<conv_transpose3d(x, w), z> = <x, conv3d(z, w)> for the same arguments."""
    kw = dict(stride=(2, 1, 3), padding=(1, 0, 1), dilation=(1, 2, 1), groups=2)
    x, w = mc.tensor(n(2, 4, 3, 3, 2)), mc.tensor(n(4, 3, 3, 2, 3))
    y = F.conv_transpose3d(x, w, output_padding=(1, 0, 2), **kw)
    z = mc.tensor(n(*y.shape))
    lhs = float((y.data * z.data).sum())
    rhs = float((x.data * F.conv3d(z, w, **kw).data).sum())
    assert abs(lhs - rhs) <= 1e-10 * abs(lhs)


@pytest.mark.parametrize("kw", [dict(padding=1), dict(padding=(2, 1, 1), stride=(2, 1, 1), dilation=(2, 1, 1))])
def test_frames_path_matches_torch(kw):
    """3x3 slices with enough tiles run as 2-D convolutions frame by frame
    (Winograd on the CPU); the depth taps' frame ranges must add up."""
    from minicnn.functional import conv_strategy
    x_shape, w_shape = (1, 2, 7, 18, 18), (3, 2, 3, 3, 3)
    stride, dilation = kw.get("stride", (1, 1, 1)), kw.get("dilation", (1, 1, 1))
    padding = tuple((p, p) for p in (kw["padding"] if isinstance(kw["padding"], tuple) else (1, 1, 1)))
    out_size = tuple((i + 2 * p - d * (k - 1) - 1) // s + 1
                     for i, (p, _), k, s, d in zip(x_shape[2:], padding, w_shape[2:], stride, dilation))
    path, _ = conv_strategy.conv_path(numpy, 1, 2, 1, w_shape[2:], stride, padding, dilation, out_size, out_size)
    assert path == ("frames" if registry.find("winograd_conv2d", numpy) else "im2col")
    check_parity(*fns("conv3d", True, **kw), [n(*x_shape), n(*w_shape), n(3)], dtype=numpy.float32, **F32)


# -- double backward: the ops backward is made of are differentiable too ----
GEOMETRIES = [
    # kernel, stride, padding, dilation, groups, in_size, out_size
    ConvGeometry((2,), (2,), ((1, 1),), (2,), 2, (6,), (3,)),
    ConvGeometry((2, 1, 3), (1, 2, 1), ((1, 0), (0, 0), (1, 2)), (1, 1, 2), 2, (3, 4, 4), (3, 2, 3)),
]


@pytest.mark.parametrize("g", GEOMETRIES)
def test_backward_ops_are_differentiable(g):
    N, C, O = 2, 4, 2
    x, gy = n(N, C, *g.in_size), n(N, O, *g.out_size)
    w = n(O, C // g.groups, *g.kernel_size)
    assert mc.gradcheck(lambda x, gy: ConvNdGradWeight.apply(x, gy, geometry=g), gradcheck_inputs([x, gy]))
    assert mc.gradcheck(lambda x, w: ConvNd.apply(x, w, geometry=g), gradcheck_inputs([x, w]))
    assert mc.gradcheck(lambda gy, w: ConvTransposeNd.apply(gy, w, geometry=g), gradcheck_inputs([gy, w]))


def test_second_derivative_matches_torch():
    """d/dx and d/dw of <grad_x conv3d(x, w), v>, through the graph backward builds."""
    x, w, gy, v = n(1, 2, 3, 4, 3), n(3, 2, 3, 3, 3), n(1, 3, 3, 4, 3), n(1, 2, 3, 4, 3)
    kw = dict(padding=(1, 1, 1), stride=1)
    X, W = mc.tensor(x, requires_grad=True), mc.tensor(w, requires_grad=True)
    gx, = mc.autograd.grad(F.conv3d(X, W, **kw), [X], mc.tensor(gy), create_graph=True)
    (gx * mc.tensor(v)).sum().backward()
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tgx, = torch.autograd.grad(TF.conv3d(tx, tw, **kw), [tx], torch.tensor(gy), create_graph=True)
    (tgx * torch.tensor(v)).sum().backward()
    numpy.testing.assert_allclose(gx.data, tgx.detach().numpy(), rtol=1e-10)
    numpy.testing.assert_allclose(W.grad.data, tw.grad.numpy(), rtol=1e-10)


# -- hypothesis: random geometries ------------------------------------------
def _draw_kernels(draw, rank, max_stride):
    """groups, channels per group in and out, and kernel, stride, dilation (one value per dim)."""
    groups, cg, og = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    kernel, stride, dilation = ([draw(st.integers(1, top)) for _ in range(rank)] for top in (3, max_stride, 2))
    return groups, cg, og, kernel, stride, dilation


@st.composite
def conv_configs(draw, rank):
    """(x shape, w shape, bias, kwargs, seed) of a conv of ``rank`` dims."""
    groups, cg, og, kernel, stride, dilation = _draw_kernels(draw, rank, 2)
    padding = [draw(st.integers(0, 2)) for _ in range(rank)]
    # Sizes for which the dilated kernel fits in the padded input.
    size = [max(1, d * (k - 1) + 1 - 2 * p) + draw(st.integers(0, 3)) for k, d, p in zip(kernel, dilation, padding)]
    kwargs = dict(stride=tuple(stride), padding=tuple(padding), dilation=tuple(dilation), groups=groups)
    return ((draw(st.integers(1, 2)), groups * cg, *size), (groups * og, cg, *kernel), draw(st.booleans()), kwargs,
            draw(st.integers(0, 2**32 - 1)))


@st.composite
def transpose_configs(draw, rank):
    """(x shape, w shape, bias, kwargs, seed) of a transposed conv of ``rank`` dims."""
    groups, cg, og, kernel, stride, dilation = _draw_kernels(draw, rank, 3)
    output_padding = [draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation)]
    size = [draw(st.integers(1, 3)) for _ in range(rank)]
    # Padding no larger than keeps the output non-empty.
    padding = [draw(st.integers(0, max(0, ((i - 1) * s + d * (k - 1) + o) // 2)))
               for i, s, d, k, o in zip(size, stride, dilation, kernel, output_padding)]
    kwargs = dict(stride=tuple(stride), padding=tuple(padding), output_padding=tuple(output_padding),
                  dilation=tuple(dilation), groups=groups)
    return ((draw(st.integers(1, 2)), groups * cg, *size), (groups * cg, og, *kernel), draw(st.booleans()), kwargs,
            draw(st.integers(0, 2**32 - 1)))


def _check_random(op, config, dtype, noncontiguous):
    x_shape, w_shape, bias, kw, seed = config
    rng = numpy.random.default_rng(seed)
    out_channels = w_shape[1] * kw["groups"] if op.startswith("conv_transpose") else w_shape[0]
    arrays = [rng.standard_normal(x_shape), rng.standard_normal(w_shape)]
    arrays += [rng.standard_normal(out_channels)] if bias else []
    tol = F32 if dtype == numpy.float32 else {}
    check_parity(*fns(op, bias, **kw), arrays, dtype=dtype, noncontiguous_inputs=noncontiguous, **tol)


DRAWN = dict(dtype=st.sampled_from([numpy.float64, numpy.float32]), noncontiguous=st.booleans())


@settings(max_examples=15, deadline=None)
@given(config=st.one_of(conv_configs(1).map(lambda c: ("conv1d", c)), conv_configs(3).map(lambda c: ("conv3d", c))),
       **DRAWN)
def test_random_convolutions_match_torch(config, dtype, noncontiguous):
    _check_random(*config, dtype, noncontiguous)


@settings(max_examples=15, deadline=None)
@given(config=st.one_of(transpose_configs(1).map(lambda c: ("conv_transpose1d", c)),
                        transpose_configs(3).map(lambda c: ("conv_transpose3d", c))), **DRAWN)
def test_random_transposed_convolutions_match_torch(config, dtype, noncontiguous):
    _check_random(*config, dtype, noncontiguous)


@settings(max_examples=20, deadline=None)
@given(rank=st.sampled_from([1, 3]), config=conv_configs(3), data=st.data())
def test_numba_im2col_and_col2im_match_the_reference(rank, config, data):
    """The row kernels (every rank but 2) against the NumPy references."""
    if not registry.numba_available():
        pytest.skip("numba is not installed")
    x_shape, w_shape, _, kw, seed = config
    x_shape, kernel = x_shape[:2] + x_shape[2:][-rank:], w_shape[2:][-rank:]
    stride, dilation = kw["stride"][-rank:], kw["dilation"][-rank:]
    padding = tuple((p, data.draw(st.integers(0, 2))) for p in kw["padding"][-rank:])
    out_size = tuple((i + lo + hi - d * (k - 1) - 1) // s + 1
                     for i, (lo, hi), k, s, d in zip(x_shape[2:], padding, kernel, stride, dilation))
    assume(min(out_size) >= 1)         # a smaller padding after may leave no room for the kernel
    rng = numpy.random.default_rng(seed)
    x = rng.standard_normal(x_shape)
    fast, reference = (registry.implementations("im2col")[b] for b in ("numba", "numpy"))
    cols = reference(x, kernel, stride, padding, dilation, out_size)
    numpy.testing.assert_array_equal(fast(x, kernel, stride, padding, dilation, out_size), cols)
    c = rng.standard_normal(cols.shape)
    fast, reference = (registry.implementations("col2im")[b] for b in ("numba", "numpy"))
    numpy.testing.assert_allclose(fast(c, x_shape[2:], stride, padding, dilation),
                                  reference(c, x_shape[2:], stride, padding, dilation), rtol=1e-12, atol=1e-12)


# -- bad arguments --------------------------------------------------------
def t(*shape):
    return mc.tensor(numpy.ones(shape))


BAD = [
    ("conv3d_3d_input", F.conv3d, (t(3, 5, 5), t(2, 3, 3, 3, 3)), {},
     "conv3d: input must be 5-D \\(N, C, D, H, W\\) or 4-D \\(C, D, H, W\\), got shape \\(3, 5, 5\\)"),
    ("conv3d_image", F.conv3d, (t(1, 3, 5, 5), t(2, 3, 3, 3, 3)), {},
     "input of shape \\(1, 3, 5, 5\\) has 1 channels, but weight of shape \\(2, 3, 3, 3, 3\\) .* expects 3 "
     "\\(a 4-D input is one unbatched \\(C, D, H, W\\) sample; a batch is 5-D \\(N, C, D, H, W\\)\\)"),
    ("conv3d_4d_weight", F.conv3d, (t(1, 3, 4, 5, 5), t(2, 3, 3, 3)), {},
     "weight must be 5-D .* got shape \\(2, 3, 3, 3\\)"),
    ("conv3d_kernel_too_big", F.conv3d, (t(1, 1, 2, 5, 5), t(1, 1, 3, 3, 3)), dict(padding=(0, 1, 1)),
     "kernel \\(3, 3, 3\\) .* larger than the padded input \\(2, 7, 7\\) \\(input shape \\(1, 1, 2, 5, 5\\)"),
    ("conv3d_groups", F.conv3d, (t(1, 3, 4, 4, 4), t(2, 1, 3, 3, 3)), dict(groups=2),
     "in_channels=3 \\(input shape \\(1, 3, 4, 4, 4\\)\\) is not divisible by groups=2"),
    ("conv3d_channels", F.conv3d, (t(1, 4, 4, 4, 4), t(2, 3, 3, 3, 3)), {},
     "has 4 channels, but weight of shape \\(2, 3, 3, 3, 3\\)"),
    ("conv3d_stride_pair", F.conv3d, (t(1, 1, 4, 4, 4), t(1, 1, 3, 3, 3)), dict(stride=(1, 2)),
     "stride must be an int or a triple of ints, got \\(1, 2\\)"),
    ("conv3d_same_strided", F.conv3d, (t(1, 1, 4, 4, 4), t(1, 1, 3, 3, 3)), dict(padding="same", stride=2),
     "padding='same' .* stride"),
    ("conv1d_3d_weight_2d_input", F.conv1d, (t(5, 5, 5, 5), t(2, 5, 3)), {},
     "conv1d: input must be 3-D \\(N, C, L\\) or 2-D \\(C, L\\), got shape \\(5, 5, 5, 5\\)"),
    ("conv1d_kernel_too_big", F.conv1d, (t(1, 1, 4), t(1, 1, 3)), dict(dilation=2),
     "kernel \\(3,\\) with dilation \\(2,\\) spans \\(5,\\), larger than the padded input \\(4,\\)"),
    ("conv1d_groups", F.conv1d, (t(1, 4, 4), t(3, 2, 3)), dict(groups=2), "out_channels=3 .* groups=2"),
    ("conv_transpose3d_image", F.conv_transpose3d, (t(1, 3, 5, 5), t(3, 2, 3, 3, 3)), {},
     "input of shape \\(1, 3, 5, 5\\) has 1 channels, .*a 4-D input is one unbatched"),
    ("conv_transpose3d_6d", F.conv_transpose3d, (t(1, 1, 3, 5, 5, 5), t(3, 2, 3, 3, 3)), {},
     "conv_transpose3d: input must be 5-D .* got shape \\(1, 1, 3, 5, 5, 5\\)"),
    ("conv_transpose3d_groups", F.conv_transpose3d, (t(1, 3, 2, 2, 2), t(3, 2, 3, 3, 3)), dict(groups=2),
     "in_channels=3 .* groups=2"),
    ("conv_transpose3d_outpad", F.conv_transpose3d, (t(1, 1, 2, 2, 2), t(1, 1, 3, 3, 3)),
     dict(stride=(2, 1, 1), output_padding=(1, 1, 0)),
     "output_padding \\(1, 1, 0\\) must be smaller than either stride \\(2, 1, 1\\) or dilation \\(1, 1, 1\\)"),
    ("conv_transpose1d_empty_output", F.conv_transpose1d, (t(1, 1, 1), t(1, 1, 1)), dict(padding=1),
     "output size \\(-1,\\) is below 1"),
]


@pytest.mark.parametrize("name, op, args, kwargs, match", BAD, ids=[b[0] for b in BAD])
def test_bad_arguments_raise_value_error(name, op, args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        op(*args, **kwargs)
