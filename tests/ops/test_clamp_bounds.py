"""clamp / clip with Tensor bounds: minimum(maximum(input, min), max), as
torch computes it, broadcasting, differentiable in input, min and max
(an element equal to a bound shares its gradient with it half and half,
as in torch)."""
import numpy
import pytest
import torch

import minicnn as mc
import minicnn.nn.functional as F
from parity import check_parity, gradcheck_inputs

R = numpy.random.default_rng(0)

CASES = {
    "both, same shape": ((3, 4), (3, 4), (3, 4)),
    "both, broadcast": ((2, 3, 4), (4,), (3, 1)),
    "bounds broadcast the input": ((4,), (3, 4), (2, 1, 1)),
    "min only": ((3, 4), (4,), None),
    "max only": ((3, 4), None, (3, 1)),
}


def _case(name):
    shape_x, shape_lo, shape_hi = CASES[name]
    arrays = [R.standard_normal(shape_x)]
    arrays += [] if shape_lo is None else [R.standard_normal(shape_lo) - 0.5]
    arrays += [] if shape_hi is None else [R.standard_normal(shape_hi) + 0.5]

    def call(clamp, x, *bounds):
        lo = bounds[0] if shape_lo is not None else None
        hi = bounds[-1] if shape_hi is not None else None
        return clamp(x, lo, hi)
    return arrays, (lambda *t: call(mc.clamp, *t)), (lambda *t: call(torch.clamp, *t))


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_matches_torch(name, dtype):
    arrays, mc_fn, torch_fn = _case(name)
    check_parity(mc_fn, torch_fn, arrays, dtype=dtype)


@pytest.mark.parametrize("name", sorted(CASES))
def test_noncontiguous_and_gradcheck(name):
    arrays, mc_fn, torch_fn = _case(name)
    check_parity(mc_fn, torch_fn, arrays, noncontiguous_inputs=True)
    assert mc.gradcheck(mc_fn, gradcheck_inputs(arrays))


def test_ties_and_crossed_bounds_match_torch():
    """x on a bound (the gradient is shared) and min > max (the result is
    max, which takes the whole gradient)."""
    # Every order of x, min and max, ties included: x on min, on max, on
    # both; min == max with x below, above; min > max with x anywhere.
    x = numpy.array([0.0, 1.0, 2.0, 3.0, 4.0, 1.0, 1.0, 2.0, 1.0, 1.0, 2.0, 0.0, 3.0, 1.0])
    lo = numpy.array([1.0, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 1.0, 1.0, 0.0])
    hi = numpy.array([2.0, 2.0, 2.0, 3.0, 0.5, 1.0, 2.0, 2.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    check_parity(mc.clamp, torch.clamp, [x, lo, hi])
    check_parity(lambda a, b, c: a.clip(b, c), lambda a, b, c: a.clip(b, c), [x, lo, hi])


def test_integer_bounds_take_the_input_dtype():
    x = mc.tensor(numpy.array([-2.5, 0.5, 7.0], numpy.float32))
    y = F.clamp(x, mc.tensor(numpy.array([0, 0, 0])), mc.tensor(numpy.array([1, 1, 5])))
    expected = torch.clamp(torch.tensor([-2.5, 0.5, 7.0]), torch.tensor([0, 0, 0]), torch.tensor([1, 1, 5]))
    assert y.dtype == numpy.float32 == expected.numpy().dtype
    numpy.testing.assert_array_equal(y.numpy(), expected.numpy())


def test_bounds_that_do_not_broadcast_raise():
    with pytest.raises(ValueError, match=r"clamp: input has shape \(3, 4\), min has shape \(3,\)"):
        F.clamp(mc.zeros((3, 4)), mc.zeros((3,)))
