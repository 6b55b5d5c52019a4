"""interpolate (nearest, linear, bilinear) against torch."""
import numpy
import pytest
import torch.nn.functional as TF
from hypothesis import given, settings, strategies as st

import minicnn as mc
import minicnn.nn.functional as F
from parity import check_parity, gradcheck_inputs

R = numpy.random.default_rng(3)


@pytest.fixture(autouse=True)
def _fresh_rng():
    """Reseed R for every test, so a test's data does not depend on which
    tests ran before it (pytest-xdist changes that order)."""
    global R
    R = numpy.random.default_rng(3)

RESIZES = [dict(size=(7, 9)), dict(size=(3, 2)), dict(size=(5, 6)), dict(size=(10, 12)), dict(size=1),
           dict(scale_factor=2), dict(scale_factor=1.7), dict(scale_factor=(0.6, 2.3)), dict(scale_factor=1.1),
           dict(scale_factor=(3, 0.5)), dict(scale_factor=2.5, recompute_scale_factor=True)]
MODES = [("nearest", None), ("bilinear", False), ("bilinear", True), ("bilinear", None)]


def check_all(mc_fn, torch_fn, x, small):
    check_parity(mc_fn, torch_fn, [x], dtype=numpy.float64)
    check_parity(mc_fn, torch_fn, [x], dtype=numpy.float32)
    check_parity(mc_fn, torch_fn, [x], dtype=numpy.float64, noncontiguous_inputs=True)
    mc.gradcheck(mc_fn, gradcheck_inputs([small]))


@pytest.mark.parametrize("mode,align_corners", MODES, ids=str)
@pytest.mark.parametrize("kw", RESIZES, ids=str)
def test_interpolate_2d(kw, mode, align_corners):
    def fns(lib):
        return lambda x: lib.interpolate(x, mode=mode, align_corners=align_corners, **kw)
    check_all(fns(F), fns(TF), R.standard_normal((2, 3, 5, 6)), R.standard_normal((1, 1, 5, 6)))


@pytest.mark.parametrize("mode,align_corners", [("nearest", None), ("linear", False), ("linear", True)], ids=str)
@pytest.mark.parametrize("kw", [dict(size=11), dict(size=4), dict(scale_factor=1.3), dict(scale_factor=(3,)),
                                dict(size=(1,))], ids=str)
def test_interpolate_1d(kw, mode, align_corners):
    def fns(lib):
        return lambda x: lib.interpolate(x, mode=mode, align_corners=align_corners, **kw)
    check_all(fns(F), fns(TF), R.standard_normal((2, 3, 6)), R.standard_normal((1, 2, 6)))


@pytest.mark.parametrize("mode,align_corners", [("nearest", None), ("trilinear", False), ("trilinear", True)],
                         ids=str)
@pytest.mark.parametrize("kw", [dict(size=(3, 5, 4)), dict(scale_factor=(2, 0.5, 1.5))], ids=str)
def test_interpolate_3d(kw, mode, align_corners):
    def fns(lib):
        return lambda x: lib.interpolate(x, mode=mode, align_corners=align_corners, **kw)
    check_all(fns(F), fns(TF), R.standard_normal((1, 2, 3, 4, 5)), R.standard_normal((1, 1, 3, 4, 2)))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # parity on inf/nan
def test_nearest_keeps_inf_where_torch_does():
    x = R.standard_normal((1, 1, 3, 3))
    x[0, 0, 1, 1] = numpy.inf
    check_parity(lambda x: F.interpolate(x, size=(5, 7)), lambda x: TF.interpolate(x, size=(5, 7)), [x], grad=False)


def test_bilinear_matches_on_a_ramp():
    """Upsampling a linear ramp with align_corners=True gives a finer ramp."""
    x = mc.tensor(numpy.arange(4, dtype=numpy.float64).reshape(1, 1, 1, 4))
    y = F.interpolate(x, size=(1, 7), mode="bilinear", align_corners=True)
    numpy.testing.assert_allclose(y.numpy().ravel(), numpy.arange(7) / 2)


def test_bilinear_double_backward():
    x = mc.tensor(R.standard_normal((1, 2, 3, 4)), requires_grad=True)

    def gx(g):
        x.grad = None
        with mc.enable_grad():
            (F.interpolate(x, scale_factor=2, mode="bilinear") ** 2).backward(g, create_graph=True)
        out, x.grad = x.grad, None
        return out
    mc.gradcheck(gx, (mc.tensor(R.standard_normal((1, 2, 6, 8)), requires_grad=True),))


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.data(),
       st.sampled_from(MODES), st.sampled_from([numpy.float64, numpy.float32]))
def test_interpolate_random_sizes(h, w, data, mode, dtype):
    """Random sizes and scale factors, where torch's float32 index
    arithmetic decides which pixel is read."""
    if data.draw(st.booleans()):
        kw = dict(size=(data.draw(st.integers(1, 13)), data.draw(st.integers(1, 13))))
    else:
        scales = tuple(data.draw(st.floats(1.0 / n + 1e-3, 3.0)) for n in (h, w))
        kw = dict(scale_factor=scales)
    x = R.standard_normal((1, 2, h, w))
    check_parity(lambda x: F.interpolate(x, mode=mode[0], align_corners=mode[1], **kw),
                 lambda x: TF.interpolate(x, mode=mode[0], align_corners=mode[1], **kw),
                 [x], dtype=dtype, noncontiguous_inputs=data.draw(st.booleans()))


@pytest.mark.parametrize("call,match", [
    (lambda x: F.interpolate(x), r"exactly one of size and scale_factor"),
    (lambda x: F.interpolate(x, size=4, scale_factor=2), r"exactly one of size and scale_factor"),
    (lambda x: F.interpolate(x, size=(4, 4, 4)), r"2 ints for input of shape \(1, 2, 3, 4\)"),
    (lambda x: F.interpolate(x, size=(0, 4)), r"output size \(0, 4\) .*\(1, 2, 3, 4\) must be >= 1"),
    (lambda x: F.interpolate(x, scale_factor=0.1), r"output size \(0, 0\)"),
    (lambda x: F.interpolate(x, scale_factor=-2), r"scale_factor must be a positive number"),
    (lambda x: F.interpolate(x, scale_factor=2, mode="bicubic"), r"mode must be one of"),
    (lambda x: F.interpolate(x, scale_factor=2, mode="linear"), r"'linear' expects input with 3 dims"),
    (lambda x: F.interpolate(mc.ones(1, 2, 3), scale_factor=2, mode="bilinear"), r"shape \(1, 2, 3\)"),
    (lambda x: F.interpolate(mc.ones(2, 3), size=2), r"got shape \(2, 3\)"),
    (lambda x: F.interpolate(x, scale_factor=2, align_corners=True), r"align_corners can only be set"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call(mc.tensor(R.standard_normal((1, 2, 3, 4))))


def test_integer_input_is_a_type_error():
    with pytest.raises(TypeError, match="dtype int64"):
        F.interpolate(mc.tensor(numpy.ones((1, 1, 2, 2), dtype=numpy.int64)), scale_factor=2)
