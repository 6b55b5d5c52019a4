"""interpolate as separable 1-D passes (issue 26): torch's values and
gradients on many sizes, NaN and inf reaching only the outputs whose taps
read them, memory proportional to the data (no output x input matrix),
and torch's refusals of sizes that are not ints and of infinite scales."""
import math
import tracemalloc

import numpy
import pytest
import torch
import torch.nn.functional as TF

import minicnn as mc
import minicnn.nn.functional as F
from parity import check_parity, gradcheck_inputs

R = numpy.random.default_rng(26)

LINEAR = {3: "linear", 4: "bilinear", 5: "trilinear"}

# (input spatial shape, resize keywords): up, down, odd, mixed, one axis
# kept (copied, as torch does), a scale whose size rounds back to I.
RESIZES = [
    ((7,), dict(size=19)), ((19,), dict(size=7)), ((5,), dict(scale_factor=2.7)), ((9,), dict(scale_factor=0.45)),
    ((1,), dict(size=4)), ((4,), dict(size=1)),
    ((5, 6), dict(size=(11, 3))), ((8, 3), dict(size=(3, 13))), ((6, 6), dict(scale_factor=(1.1, 2.5))),
    ((7, 5), dict(scale_factor=0.7)), ((7, 5), dict(scale_factor=1.7, recompute_scale_factor=True)),
    ((4, 9), dict(size=(4, 20))), ((3, 3), dict(scale_factor=3)), ((13, 11), dict(size=(6, 7))),
    ((3, 4, 5), dict(size=(5, 3, 9))), ((4, 2, 3), dict(scale_factor=(0.6, 2, 1.5))),
]


def _fn(lib, mode, align_corners, kw):
    return lambda x: lib.interpolate(x, mode=mode, align_corners=align_corners, **kw)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("spatial,kw", RESIZES, ids=str)
def test_linear_modes_match_torch(spatial, kw, align_corners):
    """Forward and backward (random upstream gradient) in float64 and
    float32, non-contiguous input, and a float64 gradcheck."""
    mode = LINEAR[len(spatial) + 2]
    mc_fn, torch_fn = _fn(F, mode, align_corners, kw), _fn(TF, mode, align_corners, kw)
    x = R.standard_normal((2, 3) + spatial)
    check_parity(mc_fn, torch_fn, [x], dtype=numpy.float64)
    check_parity(mc_fn, torch_fn, [x], dtype=numpy.float32)
    check_parity(mc_fn, torch_fn, [x], dtype=numpy.float64, noncontiguous_inputs=True)
    assert mc.gradcheck(mc_fn, gradcheck_inputs([R.standard_normal((1, 2) + spatial)]))


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("seed", range(12))
def test_random_bilinear_sizes_match_torch(seed, dtype):
    rng = numpy.random.default_rng(seed)
    h, w = rng.integers(1, 40, 2)
    if seed % 2:
        kw = dict(size=tuple(int(s) for s in rng.integers(1, 60, 2)))
    else:
        kw = dict(scale_factor=tuple(float(f) for f in rng.uniform(1.0 / min(h, w) + 0.01, 4.0, 2)))
    ac = bool(seed % 3 == 0)
    check_parity(_fn(F, "bilinear", ac, kw), _fn(TF, "bilinear", ac, kw), [rng.standard_normal((2, 2, h, w))],
                 dtype=dtype)


@pytest.mark.parametrize("kw", [dict(scale_factor=2), dict(size=(5, 3))], ids=str)
def test_double_backward(kw):
    """Backward is the adjoint pass, itself differentiable: gradcheck of
    the gradient as a function of the upstream gradient and of x."""
    x = mc.tensor(R.standard_normal((1, 2, 3, 4)), requires_grad=True)

    def gx(g, x):
        with mc.enable_grad():
            y = F.interpolate(x * x, mode="bilinear", **kw)
            (grad,) = mc.autograd.grad(y, x, g, create_graph=True)
        return grad
    out_shape = F.interpolate(x, mode="bilinear", **kw).shape
    assert mc.gradcheck(gx, (mc.tensor(R.standard_normal(out_shape), requires_grad=True), x))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # parity helper on nan
@pytest.mark.parametrize("bad", [numpy.nan, numpy.inf, -numpy.inf])
@pytest.mark.parametrize("mode,align_corners,shape,size", [
    ("bilinear", False, (6, 6), (12, 12)), ("bilinear", True, (6, 6), (12, 12)),
    ("bilinear", False, (9, 7), (4, 3)), ("linear", False, (8,), (21,)), ("trilinear", True, (3, 4, 4), (5, 7, 2)),
    ("nearest", None, (6, 6), (13, 11)),
], ids=str)
def test_nan_and_inf_stay_local(mode, align_corners, shape, size, bad):
    """One bad pixel reaches only the outputs whose taps read it (it made
    all 144 outputs of a 6x6 -> 12x12 resize nan; torch: 25)."""
    x = R.standard_normal((1, 2) + shape)
    x[(0, 1) + tuple(n // 2 for n in shape)] = bad
    out = check_parity(_fn(F, mode, align_corners, dict(size=size)), _fn(TF, mode, align_corners, dict(size=size)),
                       [x], grad=False)[0].numpy()
    spread = (~numpy.isfinite(out)).sum()
    assert spread < out[0, 1].size / 2
    assert spread > 0 or any(o < i for o, i in zip(size, shape))  # a downsampling may skip the pixel
    assert numpy.isfinite(out[0, 0]).all()


@pytest.mark.parametrize("mode,align_corners", [("bilinear", False), ("bilinear", True), ("nearest", None)])
def test_nan_upstream_gradient_stays_local(mode, align_corners):
    """The adjoint scatters a nan gradient only to the inputs that output
    read, as torch's backward does."""
    x = R.standard_normal((1, 1, 6, 5))
    g = R.standard_normal((1, 1, 11, 9))
    g[0, 0, 4, 6] = numpy.nan
    x_mc, x_t = mc.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    F.interpolate(x_mc, size=(11, 9), mode=mode, align_corners=align_corners).backward(mc.tensor(g))
    TF.interpolate(x_t, size=(11, 9), mode=mode, align_corners=align_corners).backward(torch.tensor(g))
    mine, theirs = x_mc.grad.numpy(), x_t.grad.numpy()
    numpy.testing.assert_array_equal(numpy.isnan(mine), numpy.isnan(theirs))
    assert 0 < numpy.isnan(mine).sum() <= 4
    numpy.testing.assert_allclose(mine[~numpy.isnan(mine)], theirs[~numpy.isnan(theirs)], rtol=1e-12, atol=1e-12)


def test_memory_is_proportional_to_the_data():
    """(1, 1, 2, 50000) -> (2, 500000): the dense 500000 x 50000 matrix
    asked for 93 GiB; the taps are a few arrays of 500000 entries. Peak
    allocation of forward and backward: a small multiple of the output's
    4 MB."""
    x = mc.ones(1, 1, 2, 50000, requires_grad=True)
    tracemalloc.start()
    try:
        y = F.interpolate(x, size=(2, 500000), mode="bilinear")
        y.backward(mc.ones(1, 1, 2, 500000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32e6, f"peak {peak / 1e6:.1f} MB"
    x_t = torch.ones(1, 1, 2, 50000, requires_grad=True)
    y_t = TF.interpolate(x_t, size=(2, 500000), mode="bilinear")
    y_t.backward(torch.ones(1, 1, 2, 500000))
    numpy.testing.assert_allclose(y.detach().numpy(), y_t.detach().numpy(), rtol=1e-6)
    numpy.testing.assert_allclose(x.grad.numpy(), x_t.grad.numpy(), rtol=1e-5)


@pytest.mark.parametrize("size", [True, (True, 2), 2.0, (2.0, 3), "4"], ids=repr)
def test_size_must_be_ints(size):
    """size=True resized to 1 x 1; torch raises a TypeError."""
    with pytest.raises(TypeError):
        TF.interpolate(torch.ones(1, 1, 4, 4), size=size)
    with pytest.raises(TypeError, match=r"interpolate: size must be an int or a tuple of 2 ints, got"):
        F.interpolate(mc.ones(1, 1, 4, 4), size=size)


@pytest.mark.parametrize("scale", [math.inf, (2, math.inf), 1e30, 3e18], ids=repr)
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_infinite_scale_factor_is_a_value_error(scale, mode):
    """scale_factor=inf raised OverflowError; torch: "value cannot be
    converted to type int64_t without overflow"."""
    with pytest.raises(RuntimeError, match="overflow"):
        TF.interpolate(torch.ones(1, 1, 4, 4), scale_factor=scale, mode=mode)
    with pytest.raises(ValueError, match=r"interpolate: scale_factor .* gives an output size .* too large for "
                                         r"input of shape \(1, 1, 4, 4\)"):
        F.interpolate(mc.ones(1, 1, 4, 4), scale_factor=scale, mode=mode)


@pytest.mark.parametrize("kw", [dict(size=(4, 5)), dict(scale_factor=1.1)], ids=str)
def test_same_size_is_a_new_tensor_with_torch_values(kw):
    x = R.standard_normal((1, 2, 4, 5))
    out = check_parity(_fn(F, "bilinear", False, kw), _fn(TF, "bilinear", False, kw), [x])[0]
    x_mc = mc.tensor(x)
    y = F.interpolate(x_mc, mode="bilinear", **kw)
    y.data[...] = 0
    assert x_mc.numpy().any() and out.shape == x.shape
