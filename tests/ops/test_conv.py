"""conv2d against torch: a grid of geometries, hypothesis-drawn ones,
gradcheck, double-backward pieces, bad arguments, and conv_output_size."""
import numpy
import pytest
import torch
from hypothesis import given, settings, strategies as st

import minicnn as mc
import minicnn.nn.functional as F
from minicnn.functional.conv import Conv2d, Conv2dGradWeight, ConvGeometry
from minicnn.utils import conv_output_size, conv_transpose_output_size, pair
from parity import check_parity, gradcheck_inputs

# torch warns that it copies the input for asymmetric 'same' padding.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

R = numpy.random.default_rng(7)
F32 = dict(rtol=1e-4, atol=1e-5)  # conv sums K products: float32 needs looser bounds


def n(*shape):
    return R.standard_normal(shape)


def conv_fns(bias, **kw):
    """(minicnn, torch) functions of (x, w[, b]) with the same arguments."""
    if bias:
        return (lambda x, w, b: F.conv2d(x, w, b, **kw),
                lambda x, w, b: torch.nn.functional.conv2d(x, w, b, **kw))
    return (lambda x, w: F.conv2d(x, w, **kw),
            lambda x, w: torch.nn.functional.conv2d(x, w, **kw))


# name: (input shape, weight shape, bias, keyword arguments)
CASES = {
    "plain_3x3": ((2, 3, 6, 5), (4, 3, 3, 3), True, {}),
    "no_bias": ((2, 3, 6, 5), (4, 3, 3, 3), False, {}),
    "batch1_odd": ((1, 1, 7, 5), (2, 1, 3, 3), True, {}),
    "stride2_pad1": ((2, 2, 7, 7), (3, 2, 3, 3), True, dict(stride=2, padding=1)),
    "stride_pair": ((1, 2, 9, 8), (3, 2, 3, 2), True, dict(stride=(3, 2))),
    "pad_asym_pair": ((2, 2, 5, 6), (3, 2, 3, 3), True, dict(padding=(1, 2))),
    "dilation2": ((1, 2, 8, 7), (2, 2, 3, 3), True, dict(dilation=2, padding=1)),
    "dilation_pair": ((1, 2, 8, 9), (2, 2, 3, 2), False, dict(dilation=(1, 3), stride=(2, 1))),
    "nonsquare_kernel": ((2, 3, 5, 7), (2, 3, 2, 4), True, dict(padding=(0, 1))),
    "kernel_equals_input": ((2, 2, 3, 4), (3, 2, 3, 4), True, {}),
    "groups2": ((2, 4, 6, 5), (6, 2, 3, 3), True, dict(groups=2, padding=1)),
    "groups3_strided": ((1, 6, 7, 6), (3, 2, 2, 3), False, dict(groups=3, stride=2)),
    "depthwise": ((2, 3, 6, 6), (3, 1, 3, 3), True, dict(groups=3, padding=1)),
    "depthwise_x2": ((2, 3, 6, 5), (6, 1, 3, 3), True, dict(groups=3)),
    "depthwise_x3_strided_dilated": ((1, 2, 9, 8), (6, 1, 3, 2), True, dict(groups=2, stride=2, dilation=2)),
    "pointwise": ((2, 4, 5, 3), (6, 4, 1, 1), True, {}),
    "pointwise_groups": ((2, 4, 5, 3), (6, 2, 1, 1), True, dict(groups=2)),
    "pointwise_strided": ((2, 3, 5, 5), (2, 3, 1, 1), True, dict(stride=2)),
    "pointwise_padded": ((1, 3, 3, 4), (2, 3, 1, 1), False, dict(padding=1)),
    "same_odd": ((2, 2, 5, 6), (3, 2, 3, 3), True, dict(padding="same")),
    "same_even_kernel": ((1, 2, 5, 6), (3, 2, 4, 2), True, dict(padding="same")),
    "same_dilated_groups": ((1, 4, 6, 5), (4, 2, 2, 3), False, dict(padding="same", dilation=(3, 2), groups=2)),
    "valid": ((2, 2, 6, 5), (3, 2, 3, 2), True, dict(padding="valid")),
    "leftover_rows": ((1, 1, 8, 8), (1, 1, 3, 3), False, dict(stride=3)),
}
NAMES = sorted(CASES)


def inputs_of(name):
    x_shape, w_shape, bias, kw = CASES[name]
    arrays = [n(*x_shape), n(*w_shape)] + ([n(w_shape[0])] if bias else [])
    return conv_fns(bias, **kw), arrays


@pytest.mark.parametrize("name", NAMES)
def test_matches_torch_float64(name):
    (mine, theirs), arrays = inputs_of(name)
    check_parity(mine, theirs, arrays, dtype=numpy.float64)


@pytest.mark.parametrize("name", NAMES)
def test_matches_torch_float32(name):
    (mine, theirs), arrays = inputs_of(name)
    check_parity(mine, theirs, arrays, dtype=numpy.float32, **F32)


@pytest.mark.parametrize("name", ["plain_3x3", "groups2", "depthwise_x2", "pointwise", "same_even_kernel"])
def test_matches_torch_noncontiguous(name):
    (mine, theirs), arrays = inputs_of(name)
    check_parity(mine, theirs, arrays, noncontiguous_inputs=True)


@pytest.mark.parametrize("name", ["batch1_odd", "stride2_pad1", "dilation_pair", "groups3_strided",
                                  "depthwise_x3_strided_dilated", "pointwise_groups", "same_even_kernel"])
def test_gradcheck(name):
    (mine, _), arrays = inputs_of(name)
    assert mc.gradcheck(mine, gradcheck_inputs(arrays))


def test_unbatched_input():
    check_parity(lambda x, w, b: F.conv2d(x, w, b, padding=1, groups=2),
                 lambda x, w, b: torch.nn.functional.conv2d(x, w, b, padding=1, groups=2),
                 [n(4, 5, 6), n(2, 2, 3, 3), n(2)])


def test_only_some_inputs_need_grad():
    x, w = n(2, 3, 5, 5), n(4, 3, 3, 3)
    for x_grad, w_grad in [(True, False), (False, True)]:
        X = mc.tensor(x, requires_grad=x_grad)
        W = mc.tensor(w, requires_grad=w_grad)
        tx = torch.tensor(x, requires_grad=x_grad)
        tw = torch.tensor(w, requires_grad=w_grad)
        gy = n(2, 4, 3, 3)
        F.conv2d(X, W, stride=1).backward(mc.tensor(gy))
        torch.nn.functional.conv2d(tx, tw).backward(torch.tensor(gy))
        for mine, theirs in [(X, tx), (W, tw)]:
            if theirs.requires_grad:
                numpy.testing.assert_allclose(mine.grad.numpy(), theirs.grad.numpy(), rtol=1e-10)
            else:
                assert mine.grad is None


def test_backward_keeps_only_input_and_weight():
    """The memory choice of conv.py: no columns are held for backward."""
    X = mc.tensor(n(1, 2, 5, 5), requires_grad=True)
    W = mc.tensor(n(3, 2, 3, 3), requires_grad=True)
    y = F.conv2d(X, W)
    saved = y.grad_fn._saved
    assert len(saved) == 2 and saved[0] is X and saved[1] is W
    assert not [k for k, v in vars(y.grad_fn).items() if isinstance(v, numpy.ndarray)]


# -- double backward: the ops backward is made of are differentiable too ----
GEOMETRIES = [
    # kernel, stride, padding, dilation, groups, in_size, out_size
    ConvGeometry((2, 3), (2, 1), ((1, 1), (0, 2)), (1, 2), 2, (5, 6), (3, 4)),
    ConvGeometry((1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1), 1, (3, 4), (3, 4)),
]


@pytest.mark.parametrize("g", GEOMETRIES)
def test_grad_weight_op_is_differentiable(g):
    N, C, O = 2, 4, 2
    x, gy = n(N, C, *g.in_size), n(N, O, *g.out_size)
    assert mc.gradcheck(lambda x, gy: Conv2dGradWeight.apply(x, gy, geometry=g), gradcheck_inputs([x, gy]))
    w = n(O, C // g.groups, *g.kernel_size)
    assert mc.gradcheck(lambda x, w: Conv2d.apply(x, w, geometry=g), gradcheck_inputs([x, w]))


# -- hypothesis: random geometries ------------------------------------------
@st.composite
def conv_configs(draw):
    groups = draw(st.integers(1, 3))
    cg, og = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    # Sizes for which the dilated kernel fits in the padded input.
    h = max(1, dh * (kh - 1) + 1 - 2 * ph) + draw(st.integers(0, 4))
    w = max(1, dw * (kw - 1) + 1 - 2 * pw) + draw(st.integers(0, 4))
    x_shape = (draw(st.integers(1, 2)), groups * cg, h, w)
    w_shape = (groups * og, cg, kh, kw)
    kwargs = dict(stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), groups=groups)
    return x_shape, w_shape, draw(st.booleans()), kwargs, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=25, deadline=None)
@given(conv_configs(), st.sampled_from([numpy.float64, numpy.float32]), st.booleans())
def test_random_geometries_match_torch(config, dtype, noncontiguous):
    x_shape, w_shape, bias, kw, seed = config
    rng = numpy.random.default_rng(seed)
    arrays = [rng.standard_normal(x_shape), rng.standard_normal(w_shape)]
    arrays += [rng.standard_normal(w_shape[0])] if bias else []
    tol = F32 if dtype == numpy.float32 else {}
    check_parity(*conv_fns(bias, **kw), arrays, dtype=dtype, noncontiguous_inputs=noncontiguous, **tol)


# -- bad arguments --------------------------------------------------------
def t(*shape, dtype=numpy.float64):
    return mc.tensor(numpy.ones(shape, dtype=dtype))


BAD = [
    ("input_2d", (t(3, 4), t(2, 3, 3, 3)), {}, "input must be 4-D .* got shape \\(3, 4\\)"),
    ("input_5d", (t(1, 1, 3, 4, 4), t(2, 3, 3, 3)), {}, "input must be 4-D"),
    ("weight_3d", (t(1, 3, 4, 4), t(2, 3, 3)), {}, "weight must be 4-D .* \\(2, 3, 3\\)"),
    ("channels", (t(1, 3, 5, 5), t(2, 4, 3, 3)), {}, "has 3 channels, but weight of shape \\(2, 4, 3, 3\\)"),
    ("in_not_divisible", (t(1, 3, 5, 5), t(2, 1, 3, 3)), dict(groups=2), "in_channels=3 .* groups=2"),
    ("out_not_divisible", (t(1, 4, 5, 5), t(3, 2, 3, 3)), dict(groups=2), "out_channels=3 .* groups=2"),
    ("groups_zero", (t(1, 4, 5, 5), t(4, 2, 3, 3)), dict(groups=0), "groups must be a positive int"),
    ("kernel_too_big", (t(1, 1, 2, 5), t(1, 1, 3, 3)), {}, "kernel \\(3, 3\\) .* larger than the padded input \\(2, 5\\)"),
    ("output_below_1", (t(1, 1, 4, 4), t(1, 1, 3, 3)), dict(dilation=2), "output size would be below 1"),
    ("negative_padding", (t(1, 1, 4, 4), t(1, 1, 3, 3)), dict(padding=-1), "padding must be >= 0 .* \\(-1, -1\\)"),
    ("stride_zero", (t(1, 1, 4, 4), t(1, 1, 3, 3)), dict(stride=(1, 0)), "stride must be >= 1 .* \\(1, 0\\)"),
    ("dilation_zero", (t(1, 1, 4, 4), t(1, 1, 3, 3)), dict(dilation=0), "dilation must be >= 1"),
    ("stride_triple", (t(1, 1, 4, 4), t(1, 1, 3, 3)), dict(stride=(1, 1, 1)), "stride must be an int or a pair"),
    ("same_strided", (t(1, 1, 4, 4), t(1, 1, 3, 3)), dict(padding="same", stride=2), "padding='same' .* stride"),
    ("padding_word", (t(1, 1, 4, 4), t(1, 1, 3, 3)), dict(padding="full"), "padding must be .* 'same'"),
    ("bias_shape", (t(1, 1, 4, 4), t(2, 1, 3, 3), t(1)), {}, "bias must have shape \\(2,\\) .* got \\(1,\\)"),
    ("bias_2d", (t(1, 1, 4, 4), t(2, 1, 3, 3), t(2, 1)), {}, "bias must have shape \\(2,\\)"),
]


@pytest.mark.parametrize("name, args, kwargs, match", BAD, ids=[b[0] for b in BAD])
def test_bad_arguments_raise_value_error(name, args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        F.conv2d(*args, **kwargs)


@pytest.mark.parametrize("args, kwargs, match", [
    ((t(1, 1, 4, 4, dtype=numpy.int64), t(1, 1, 3, 3)), {}, "input must be a floating-point tensor, got dtype int64"),
    ((t(1, 1, 4, 4), t(1, 1, 3, 3, dtype=numpy.int32)), {}, "weight must be a floating-point tensor"),
    ((t(1, 1, 4, 4), t(1, 1, 3, 3), t(1, dtype=numpy.int64)), {}, "bias must be a floating-point tensor"),
    ((t(1, 1, 4, 4), t(1, 1, 3, 3, dtype=numpy.float32)), {}, "input has dtype float64 but weight has dtype float32"),
    ((t(1, 1, 4, 4), t(1, 1, 3, 3)), dict(stride=1.5), "stride must be an int or a pair"),
])
def test_bad_types_raise_type_error(args, kwargs, match):
    with pytest.raises(TypeError, match=match):
        F.conv2d(*args, **kwargs)


# -- conv arithmetic --------------------------------------------------------
def test_conv_output_size_matches_torch():
    checked = 0
    for i in range(1, 8):
        for k in range(1, 4):
            for s in range(1, 4):
                for p in range(3):
                    for d in range(1, 3):
                        o = conv_output_size(i, k, s, p, d)
                        if o < 1:
                            assert i + 2 * p < d * (k - 1) + 1  # only when the kernel does not fit
                            continue
                        x = torch.zeros(1, 1, i, 1)
                        w = torch.zeros(1, 1, k, 1)
                        y = torch.nn.functional.conv2d(x, w, stride=(s, 1), padding=(p, 0), dilation=(d, 1))
                        assert y.shape[2] == o, (i, k, s, p, d)
                        checked += 1
    assert checked > 200


def test_conv_transpose_output_size_matches_torch_and_inverts_conv():
    for i in range(1, 6):
        for k in range(1, 4):
            for s in range(1, 4):
                for p in range(2):
                    for d in range(1, 3):
                        for op in range(max(s, d)):
                            o = conv_transpose_output_size(i, k, s, p, d, op)
                            if o < 1:
                                continue
                            x = torch.zeros(1, 1, i, 1)
                            w = torch.zeros(1, 1, k, 1)
                            y = torch.nn.functional.conv_transpose2d(
                                x, w, stride=(s, 1), padding=(p, 0), output_padding=(op, 0), dilation=(d, 1))
                            assert y.shape[2] == o, (i, k, s, p, d, op)
                            if op < s:  # the floor of conv2d absorbs output_padding < stride
                                assert conv_output_size(o, k, s, p, d) == i


def test_pair():
    assert pair(3, "stride") == (3, 3)
    assert pair((1, 2), "stride") == (1, 2)
    assert pair([numpy.int64(4), 5], "stride") == (4, 5)
    assert pair(0, "padding", min_value=0) == (0, 0)
    with pytest.raises(ValueError, match="stride must be >= 1 in each dim, got \\(2, 0\\)"):
        pair((2, 0), "stride", min_value=1)
    with pytest.raises(ValueError, match="kernel_size must be an int or a pair of ints, got \\(1, 2, 3\\)"):
        pair((1, 2, 3), "kernel_size")
    for bad in [1.0, "2", True, (1, 2.5), None]:
        with pytest.raises(TypeError, match="kernel_size"):
            pair(bad, "kernel_size")


def test_utils_namespace():
    assert mc.utils.conv_output_size(5, 3, 2, 1) == 3
    assert mc.utils.conv_transpose_output_size(3, 3, 2, 1, 1, 1) == 6
