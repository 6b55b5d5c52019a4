"""The vectorizable float32 exp of kernels/cpu/exp.py, and the one-pass
float32 sigmoid and SiLU built on it (kernels/cpu/activation.py), against
float64 references."""
import numba
import numpy
import pytest
from hypothesis import given, settings, strategies as st

pytest.importorskip("numba")
from minicnn.kernels.cpu import activation, exp  # noqa: E402


@numba.njit(**dict(exp.EXP_JIT, cache=False))     # compiled as the kernels' loops are (FMA where the CPU has it)
def _exp_all(t, out):
    for i in range(t.size):
        out[i] = exp.exp_nonpositive(t[i])


def ulps(a, b):
    """Units in the last place between float32 arrays of one sign."""
    return numpy.abs(a.view(numpy.int32).astype(numpy.int64) - b.view(numpy.int32).astype(numpy.int64))


def test_exp_is_within_one_unit_in_the_last_place_down_to_the_denormals():
    # Every magnitude from 1e-45 to 104 (log-spaced), an even grid of
    # [-104, 0], the denormal range (t < -87.3) and the edges.
    t = numpy.concatenate([-numpy.logspace(-45, numpy.log10(104), 400_001), numpy.linspace(-104, 0, 400_001),
                           numpy.linspace(-104, -87, 100_001),
                           [0.0, -0.0, -87.33654, -87.33655, -103.97, -104.0]]).astype(numpy.float32)
    out = numpy.empty_like(t)
    _exp_all(t, out)
    expected = numpy.exp(t.astype(numpy.float64)).astype(numpy.float32)     # exp, correctly rounded to float32
    assert ulps(out, expected).max() <= 1
    assert (out[t == 0] == 1).all()
    assert (out[t < -87.34] < numpy.finfo(numpy.float32).tiny).all() and (out[t > -87.33] > 0).all()


def test_exp_below_the_float32_range_is_zero_and_infinities_are_limits():
    t = numpy.array([-104.5, -200.0, -1e30, -numpy.inf], numpy.float32)
    out = numpy.empty_like(t)
    _exp_all(t, out)
    assert out.tolist() == [0.0, 0.0, 0.0, 0.0]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-120, 120, width=32), min_size=1, max_size=300), st.booleans())
def test_float32_sigmoid_and_silu_match_float64(values, in_place):
    x = numpy.array(values, numpy.float32)
    x64 = x.astype(numpy.float64)
    sigmoid64 = 1 / (1 + numpy.exp(-x64))
    numpy.testing.assert_allclose(activation.sigmoid(x), sigmoid64, rtol=3e-7, atol=1e-44)
    out = x.copy() if in_place else None
    silu = activation.silu(out if in_place else x, out)
    assert silu.dtype == numpy.float32 and (silu is out if in_place else True)
    # Below t = -87.3, e = exp(t) is a denormal, exact only to 2^-149 (1.4e-45),
    # and silu(x) ~ x * e carries that times |x|.
    numpy.testing.assert_allclose(silu, x64 * sigmoid64, rtol=3e-7, atol=120 * 1.5e-45)


def test_float32_special_values_as_torch():
    torch = pytest.importorskip("torch")
    x = numpy.array([numpy.nan, numpy.inf, -numpy.inf, 0.0, -0.0, 88.0, -88.0], numpy.float32)
    for mine, theirs in [(activation.sigmoid(x), torch.sigmoid(torch.from_numpy(x))),
                         (activation.silu(x), torch.nn.functional.silu(torch.from_numpy(x)))]:
        numpy.testing.assert_allclose(mine, theirs.numpy(), rtol=3e-7, atol=1e-37)
        assert numpy.array_equal(numpy.isnan(mine), numpy.isnan(theirs.numpy()))
