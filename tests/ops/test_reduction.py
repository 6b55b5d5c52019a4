"""Reductions against torch: sum, mean, var, std, max/min, amax/amin, argmax."""
import numpy
import pytest
import torch
from hypothesis import given, settings, strategies as st

import minicnn as mc
from parity import case_table_tests, check_parity
from strategies import shapes

R = numpy.random.default_rng(11)


def distinct(*shape):
    """Distinct values in random order: max/min have a unique winner."""
    n = int(numpy.prod(shape))
    return R.permutation(numpy.linspace(-2, 2, n)).reshape(shape)


X = R.standard_normal((3, 4, 5))

CASES = {
    "sum_all": (lambda x: x.sum(), lambda x: x.sum(), [X]),
    "sum_dim": (lambda x: x.sum(1), lambda x: x.sum(1), [X]),
    "sum_dims_keep": (lambda x: x.sum((0, 2), keepdim=True), lambda x: x.sum((0, 2), keepdim=True), [X]),
    "sum_neg_dim": (lambda x: mc.sum(x, -1), lambda x: torch.sum(x, -1), [X]),
    "mean_all": (lambda x: x.mean(), lambda x: x.mean(), [X]),
    "mean_dims": (lambda x: x.mean((1, 2)), lambda x: x.mean((1, 2)), [X]),
    "var_all": (lambda x: x.var(), lambda x: x.var(), [X]),
    "var_dim_biased": (lambda x: x.var(1, unbiased=False), lambda x: x.var(1, unbiased=False), [X]),
    "var_correction": (lambda x: x.var((0, 2), correction=2, keepdim=True),
                       lambda x: x.var((0, 2), correction=2, keepdim=True), [X]),
    "std_dim": (lambda x: x.std(0), lambda x: x.std(0), [X]),
    "max_all": (lambda x: x.max(), lambda x: x.max(), [distinct(3, 4)]),
    "max_dim": (lambda x: x.max(1), lambda x: x.max(1), [distinct(3, 4, 2)]),
    "max_dim_keep": (lambda x: x.max(-1, keepdim=True), lambda x: x.max(-1, keepdim=True), [distinct(3, 4)]),
    "min_all": (lambda x: x.min(), lambda x: x.min(), [distinct(3, 4)]),
    "min_dim": (lambda x: x.min(0), lambda x: x.min(0), [distinct(3, 4)]),
    "amax": (lambda x: x.amax((0, 2)), lambda x: x.amax((0, 2)), [distinct(3, 4, 2)]),
    "amin_keep": (lambda x: x.amin(1, keepdim=True), lambda x: x.amin(1, keepdim=True), [distinct(3, 4)]),
}
test_matches_torch, test_matches_torch_noncontiguous, test_gradcheck = case_table_tests(CASES)


def test_ties_share_the_gradient_like_torch():
    x = numpy.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]])
    check_parity(lambda t: t.max(), lambda t: t.max(), [x])
    check_parity(lambda t: t.amax(1), lambda t: t.amax(1), [x])
    check_parity(lambda t: t.amin(0), lambda t: t.amin(0), [x])


def test_argmax_argmin_match_torch_and_carry_no_grad():
    x = distinct(4, 5)
    t = torch.from_numpy(x)
    m = mc.tensor(x, requires_grad=True)
    assert m.argmax().item() == t.argmax().item()
    assert m.argmax(1).tolist() == t.argmax(1).tolist()
    assert m.argmin(0, keepdim=True).tolist() == t.argmin(0, keepdim=True).tolist()
    assert m.argmax(1).dtype == mc.int64 and not m.argmax(1).requires_grad


def test_max_with_dim_returns_values_and_indices():
    x = distinct(3, 4)
    values, indices = mc.tensor(x).max(1)
    expected = torch.from_numpy(x).max(1)
    numpy.testing.assert_array_equal(values.numpy(), expected.values.numpy())
    assert indices.tolist() == expected.indices.tolist()


@settings(max_examples=30, deadline=None)
@given(shape=shapes(1, 4), data=st.data())
def test_sum_and_mean_over_random_dims(shape, data):
    dims = data.draw(st.lists(st.integers(0, len(shape) - 1), unique=True, min_size=1))
    keepdim = data.draw(st.booleans())
    x = numpy.random.default_rng(len(shape)).standard_normal(shape)
    check_parity(lambda t: t.sum(tuple(dims), keepdim), lambda t: t.sum(tuple(dims), keepdim), [x])
    check_parity(lambda t: t.mean(tuple(dims), keepdim), lambda t: t.mean(tuple(dims), keepdim), [x])


def test_bad_dims_are_clear_errors():
    x = mc.ones(2, 3)
    with pytest.raises(ValueError, match="dim=2 is out of range"):
        x.sum(2)
    with pytest.raises(ValueError, match="repeats"):
        x.sum((0, 0))
    with pytest.raises(TypeError, match="floating point"):
        mc.tensor([1, 2]).mean()
    with pytest.raises(ValueError, match="empty"):
        mc.zeros(0).max()
