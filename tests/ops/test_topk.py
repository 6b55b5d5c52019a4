"""mc.topk against torch.topk: values, indices and the gradient."""
import numpy
import pytest
import torch

import minicnn as mc
from parity import case_table_tests

R = numpy.random.default_rng(5)


def distinct(*shape):
    """Distinct values in random order, so the top k are unambiguous
    (torch does not promise an order among ties)."""
    n = int(numpy.prod(shape))
    return R.permutation(numpy.linspace(-2, 2, n)).reshape(shape)


def both(k, **kwargs):
    """The same topk call for minicnn and torch, returning both outputs."""
    return (lambda x: tuple(mc.topk(x, k, **kwargs)), lambda x: tuple(torch.topk(x, k, **kwargs)))


CASES = {
    "last_dim": (*both(3), [distinct(4, 7)]),
    "dim0": (*both(2, dim=0), [distinct(5, 3)]),
    "middle_dim_3d": (*both(2, dim=1), [distinct(2, 6, 3)]),
    "negative_dim": (*both(1, dim=-2), [distinct(3, 4, 2)]),
    "smallest": (*both(3, largest=False), [distinct(2, 6)]),
    "k_equals_size": (*both(5), [distinct(3, 5)]),
    "k_zero": (*both(0), [distinct(3, 5)]),
    "one_dim": (*both(4), [distinct(9)]),
}
test_matches_torch, test_matches_torch_noncontiguous, test_gradcheck = case_table_tests(CASES)


def test_result_has_torch_field_names_and_dtypes():
    values, indices = result = mc.topk(mc.tensor(distinct(3, 4), dtype=mc.float32), 2)
    assert result.values is values and result.indices is indices
    assert values.dtype == mc.float32 and indices.dtype == mc.int64
    assert values.shape == indices.shape == (3, 2)
    assert not indices.requires_grad
    x = mc.tensor(distinct(3, 4))
    method, function = x.topk(2, dim=0, largest=False), mc.topk(x, 2, dim=0, largest=False)
    numpy.testing.assert_array_equal(method.values.numpy(), function.values.numpy())


def test_ties_keep_index_order_and_the_gradient_goes_to_the_chosen():
    x = mc.tensor([[1.0, 3.0, 3.0, 2.0, 3.0]], requires_grad=True)
    values, indices = mc.topk(x, 2)
    assert indices.tolist() == [[1, 2]] and values.tolist() == [[3.0, 3.0]]
    assert mc.topk(x, 2, largest=False).indices.tolist() == [[0, 3]]
    values.sum().backward()
    assert x.grad.tolist() == [[0.0, 1.0, 1.0, 0.0, 0.0]]


def test_nan_counts_as_largest_like_torch():
    x = numpy.array([1.0, numpy.nan, 3.0, -1.0])
    for largest in (True, False):
        mine = mc.topk(mc.tensor(x), 4, largest=largest)
        theirs = torch.topk(torch.tensor(x), 4, largest=largest)
        numpy.testing.assert_array_equal(mine.values.numpy(), theirs.values.numpy())
        assert mine.indices.tolist() == theirs.indices.tolist()


def test_integer_input_and_scalar_input():
    x = numpy.array([[4, 9, 1], [7, 2, 8]])
    mine, theirs = mc.topk(mc.tensor(x), 2), torch.topk(torch.tensor(x), 2)
    assert mine.values.tolist() == theirs.values.tolist() and mine.values.dtype == mc.int64
    assert mine.indices.tolist() == theirs.indices.tolist()
    scalar = mc.topk(mc.tensor(2.5), 1)
    assert scalar.values.shape == () and scalar.values.item() == 2.5 and scalar.indices.item() == 0


def test_double_backward_matches_torch():
    # d/dx of sum(topk(x)^3) is 3 x^2 at the chosen entries; its own
    # gradient 6 x there checks that the backward is differentiable.
    x = distinct(3, 5)
    t = torch.tensor(x, requires_grad=True)
    (g,) = torch.autograd.grad(torch.topk(t, 2).values.pow(3).sum(), t, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), t)
    m = mc.tensor(x, requires_grad=True)
    mc.topk(m, 2).values.pow(3).sum().backward(create_graph=True)
    first = m.grad
    m.grad = None
    first.sum().backward()
    numpy.testing.assert_allclose(first.detach().numpy(), g.detach().numpy(), rtol=1e-12)
    numpy.testing.assert_allclose(m.grad.numpy(), gg.numpy(), rtol=1e-12)


@pytest.mark.parametrize("call, error, match", [
    (lambda x: mc.topk(x, 6), ValueError, r"k=6 is out of range for dim -1 of size 5 \(input shape \(2, 5\)\)"),
    (lambda x: mc.topk(x, -1), ValueError, "k=-1 is out of range"),
    (lambda x: mc.topk(x, 2.0), TypeError, "k must be an int"),
    (lambda x: mc.topk(x, True), TypeError, "k must be an int"),
    (lambda x: mc.topk(x, 1, dim=2), ValueError, "dim"),
    (lambda x: mc.topk(x.numpy(), 1), TypeError, "must be a Tensor"),
    (lambda x: mc.topk(mc.tensor(1.0), 2), ValueError, "0-d"),
])
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call(mc.tensor(distinct(2, 5)))
