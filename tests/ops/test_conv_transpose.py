"""conv_transpose2d against torch: a grid, hypothesis-drawn geometries,
gradcheck, the adjoint relation with conv2d, and bad arguments."""
import numpy
import pytest
import torch
from hypothesis import given, settings, strategies as st

import minicnn as mc
import minicnn.nn.functional as F
from minicnn.functional.conv_transpose import ConvTranspose2d
from minicnn.functional.conv import ConvGeometry
from parity import check_parity, gradcheck_inputs

R = numpy.random.default_rng(11)
F32 = dict(rtol=1e-4, atol=1e-5)


def n(*shape):
    return R.standard_normal(shape)


def fns(bias, **kw):
    if bias:
        return (lambda x, w, b: F.conv_transpose2d(x, w, b, **kw),
                lambda x, w, b: torch.nn.functional.conv_transpose2d(x, w, b, **kw))
    return (lambda x, w: F.conv_transpose2d(x, w, **kw),
            lambda x, w: torch.nn.functional.conv_transpose2d(x, w, **kw))


# name: (input shape, weight shape (C, O / groups, KH, KW), bias, kwargs)
CASES = {
    "plain": ((2, 3, 4, 5), (3, 2, 3, 3), True, {}),
    "no_bias_batch1": ((1, 2, 3, 3), (2, 3, 2, 2), False, {}),
    "stride2": ((2, 2, 3, 4), (2, 3, 3, 3), True, dict(stride=2)),
    "stride2_pad1_outpad1": ((1, 2, 4, 3), (2, 2, 3, 3), True, dict(stride=2, padding=1, output_padding=1)),
    "stride_pair_outpad_pair": ((2, 2, 3, 4), (2, 1, 3, 2), True, dict(stride=(3, 2), output_padding=(2, 1))),
    "padding_pair": ((1, 2, 5, 4), (2, 2, 3, 4), True, dict(padding=(1, 2))),
    "dilation": ((1, 2, 4, 4), (2, 2, 3, 3), False, dict(dilation=2, padding=1)),
    "outpad_below_dilation": ((1, 2, 4, 3), (2, 2, 3, 2), True, dict(dilation=(3, 2), output_padding=(2, 1))),
    "groups2": ((2, 4, 3, 4), (4, 3, 3, 3), True, dict(groups=2, stride=2, padding=1, output_padding=1)),
    "depthwise_x2": ((2, 3, 4, 3), (3, 2, 2, 3), True, dict(groups=3, stride=(1, 2))),
    "pointwise": ((2, 4, 3, 5), (4, 3, 1, 1), True, {}),
    "pointwise_groups": ((1, 4, 3, 3), (4, 2, 1, 1), False, dict(groups=2)),
    "pointwise_outpad_dilation": ((1, 2, 3, 3), (2, 2, 1, 1), True, dict(dilation=2, output_padding=1)),
    "pointwise_strided": ((1, 2, 3, 3), (2, 2, 1, 1), True, dict(stride=2, output_padding=1)),
    "crop_to_1": ((1, 1, 1, 2), (1, 2, 3, 3), True, dict(padding=1)),
}
NAMES = sorted(CASES)


def inputs_of(name):
    x_shape, w_shape, bias, kw = CASES[name]
    arrays = [n(*x_shape), n(*w_shape)] + ([n(w_shape[1] * kw.get("groups", 1))] if bias else [])
    return fns(bias, **kw), arrays


@pytest.mark.parametrize("name", NAMES)
def test_matches_torch_float64(name):
    (mine, theirs), arrays = inputs_of(name)
    check_parity(mine, theirs, arrays, dtype=numpy.float64)


@pytest.mark.parametrize("name", NAMES)
def test_matches_torch_float32(name):
    (mine, theirs), arrays = inputs_of(name)
    check_parity(mine, theirs, arrays, dtype=numpy.float32, **F32)


@pytest.mark.parametrize("name", ["plain", "groups2", "stride_pair_outpad_pair", "pointwise"])
def test_matches_torch_noncontiguous(name):
    (mine, theirs), arrays = inputs_of(name)
    check_parity(mine, theirs, arrays, noncontiguous_inputs=True)


@pytest.mark.parametrize("name", ["no_bias_batch1", "stride2_pad1_outpad1", "outpad_below_dilation",
                                  "groups2", "pointwise_outpad_dilation"])
def test_gradcheck(name):
    (mine, _), arrays = inputs_of(name)
    assert mc.gradcheck(mine, gradcheck_inputs(arrays))


def test_unbatched_input():
    check_parity(lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, groups=2),
                 lambda x, w, b: torch.nn.functional.conv_transpose2d(x, w, b, stride=2, groups=2),
                 [n(4, 3, 2), n(4, 1, 3, 3), n(2)])


def test_is_the_adjoint_of_conv2d():
    """<conv_transpose2d(x, w), z> = <x, conv2d(z, w)> for the same arguments."""
    kw = dict(stride=(2, 3), padding=(1, 0), dilation=(1, 2), groups=2)
    x, w = mc.tensor(n(2, 4, 3, 3)), mc.tensor(n(4, 3, 3, 2))
    y = F.conv_transpose2d(x, w, output_padding=(1, 2), **kw)
    z = mc.tensor(n(*y.shape))
    lhs = float((y.data * z.data).sum())
    rhs = float((x.data * F.conv2d(z, w, **kw).data).sum())
    assert abs(lhs - rhs) <= 1e-10 * abs(lhs)


def test_transpose_op_is_differentiable():
    """ConvTranspose2d is conv2d's input gradient; its own backward must
    hold up under gradcheck, for double backward through conv2d."""
    g = ConvGeometry((2, 3), (2, 1), ((1, 0), (0, 1)), (1, 2), 2, (5, 6), (3, 3))
    x, w = n(1, 4, *g.out_size), n(4, 1, *g.kernel_size)
    assert mc.gradcheck(lambda x, w: ConvTranspose2d.apply(x, w, geometry=g), gradcheck_inputs([x, w]))


@st.composite
def configs(draw):
    groups = draw(st.integers(1, 3))
    cg, og = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    oph = draw(st.integers(0, max(sh, dh) - 1))
    opw = draw(st.integers(0, max(sw, dw) - 1))
    h, w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    # Padding no larger than keeps the output non-empty.
    ph = draw(st.integers(0, max(0, ((h - 1) * sh + dh * (kh - 1) + oph) // 2)))
    pw = draw(st.integers(0, max(0, ((w - 1) * sw + dw * (kw - 1) + opw) // 2)))
    x_shape = (draw(st.integers(1, 2)), groups * cg, h, w)
    w_shape = (groups * cg, og, kh, kw)
    kwargs = dict(stride=(sh, sw), padding=(ph, pw), output_padding=(oph, opw), dilation=(dh, dw), groups=groups)
    return x_shape, w_shape, draw(st.booleans()), kwargs, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=25, deadline=None)
@given(configs(), st.sampled_from([numpy.float64, numpy.float32]), st.booleans())
def test_random_geometries_match_torch(config, dtype, noncontiguous):
    x_shape, w_shape, bias, kw, seed = config
    rng = numpy.random.default_rng(seed)
    arrays = [rng.standard_normal(x_shape), rng.standard_normal(w_shape)]
    arrays += [rng.standard_normal(w_shape[1] * kw["groups"])] if bias else []
    tol = F32 if dtype == numpy.float32 else {}
    check_parity(*fns(bias, **kw), arrays, dtype=dtype, noncontiguous_inputs=noncontiguous, **tol)


def t(*shape, dtype=numpy.float64):
    return mc.tensor(numpy.ones(shape, dtype=dtype))


BAD = [
    ("input_2d", (t(3, 4), t(3, 2, 3, 3)), {}, "input must be 4-D .* got shape \\(3, 4\\)"),
    ("weight_2d", (t(1, 3, 4, 4), t(3, 2)), {}, "weight must be 4-D"),
    ("channels", (t(1, 3, 4, 4), t(2, 2, 3, 3)), {}, "has 3 channels, but weight of shape \\(2, 2, 3, 3\\) expects 2"),
    ("in_not_divisible", (t(1, 3, 4, 4), t(3, 2, 3, 3)), dict(groups=2), "in_channels=3 .* groups=2"),
    ("groups_zero", (t(1, 2, 4, 4), t(2, 2, 3, 3)), dict(groups=0), "groups must be a positive int"),
    ("output_below_1", (t(1, 1, 1, 1), t(1, 1, 1, 1)), dict(padding=1), "output size \\(-1, -1\\) is below 1"),
    ("outpad_too_big", (t(1, 1, 3, 3), t(1, 1, 3, 3)), dict(stride=2, output_padding=(2, 0)),
     "output_padding \\(2, 0\\) must be smaller than either stride \\(2, 2\\) or dilation \\(1, 1\\)"),
    ("outpad_stride1", (t(1, 1, 3, 3), t(1, 1, 3, 3)), dict(output_padding=1), "output_padding"),
    ("negative_outpad", (t(1, 1, 3, 3), t(1, 1, 3, 3)), dict(output_padding=-1), "output_padding must be >= 0"),
    ("negative_padding", (t(1, 1, 3, 3), t(1, 1, 3, 3)), dict(padding=(0, -2)), "padding must be >= 0"),
    ("stride_zero", (t(1, 1, 3, 3), t(1, 1, 3, 3)), dict(stride=0), "stride must be >= 1"),
    ("dilation_zero", (t(1, 1, 3, 3), t(1, 1, 3, 3)), dict(dilation=(0, 1)), "dilation must be >= 1"),
    ("bias_shape", (t(1, 2, 3, 3), t(2, 3, 3, 3), t(2)), dict(groups=2), "bias must have shape \\(6,\\) .* got \\(2,\\)"),
]


@pytest.mark.parametrize("name, args, kwargs, match", BAD, ids=[b[0] for b in BAD])
def test_bad_arguments_raise_value_error(name, args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        F.conv_transpose2d(*args, **kwargs)


@pytest.mark.parametrize("args, kwargs, match", [
    ((t(1, 1, 3, 3, dtype=numpy.int64), t(1, 1, 3, 3)), {}, "input must be a floating-point tensor"),
    ((t(1, 1, 3, 3), t(1, 1, 3, 3, dtype=numpy.int64)), {}, "weight must be a floating-point tensor"),
    ((t(1, 1, 3, 3), t(1, 1, 3, 3)), dict(padding="same"), "padding must be an int or a pair"),
])
def test_bad_types_raise_type_error(args, kwargs, match):
    with pytest.raises(TypeError, match=match):
        F.conv_transpose2d(*args, **kwargs)
