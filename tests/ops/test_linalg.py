"""matmul (batched, broadcast, 1-D cases) and linear against torch."""
import numpy
import pytest
import torch
from hypothesis import given, settings, strategies as st

import minicnn as mc
import minicnn.nn.functional as F
from parity import case_table_tests, check_parity

R = numpy.random.default_rng(3)


def n(*shape):
    return R.standard_normal(shape)


CASES = {
    "mm": (lambda a, b: a @ b, lambda a, b: a @ b, [n(3, 4), n(4, 5)]),
    "batched": (lambda a, b: a @ b, lambda a, b: a @ b, [n(2, 3, 4), n(2, 4, 5)]),
    "broadcast_batch": (lambda a, b: mc.matmul(a, b), lambda a, b: torch.matmul(a, b), [n(2, 1, 3, 4), n(3, 4, 2)]),
    "matrix_vector": (lambda a, b: a @ b, lambda a, b: a @ b, [n(2, 3, 4), n(4)]),
    "vector_matrix": (lambda a, b: a @ b, lambda a, b: a @ b, [n(4), n(2, 4, 3)]),
    "dot": (lambda a, b: a @ b, lambda a, b: a @ b, [n(4), n(4)]),
    "linear": (lambda x, w, b: F.linear(x, w, b), lambda x, w, b: torch.nn.functional.linear(x, w, b), [n(5, 4), n(3, 4), n(3)]),
    "linear_nobias_3d": (lambda x, w: F.linear(x, w), lambda x, w: torch.nn.functional.linear(x, w), [n(2, 5, 4), n(3, 4)]),
    "linear_1d": (lambda x, w, b: F.linear(x, w, b), lambda x, w, b: torch.nn.functional.linear(x, w, b), [n(4), n(3, 4), n(3)]),
}
test_matches_torch, test_matches_torch_noncontiguous, test_gradcheck = case_table_tests(CASES)


@settings(max_examples=25, deadline=None)
@given(batch_a=st.lists(st.integers(1, 3), max_size=2), batch_b=st.lists(st.integers(1, 3), max_size=2),
       n_=st.integers(1, 4), k=st.integers(1, 4), m=st.integers(1, 4))
def test_random_batched_shapes(batch_a, batch_b, n_, k, m):
    batch_b = [1 if i < len(batch_a) and batch_a[-1 - i] != b and b != 1 else b
               for i, b in enumerate(batch_b)]
    a, b = R.standard_normal(tuple(batch_a) + (n_, k)), R.standard_normal(tuple(batch_b) + (k, m))
    try:
        numpy.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        return
    check_parity(lambda x, y: x @ y, lambda x, y: x @ y, [a, b])


def test_array_on_the_left_of_a_tensor():
    a, b = n(3, 4), n(4, 2)
    check_parity(lambda t: a @ t, lambda t: torch.from_numpy(a) @ t, [b])


def test_linear_double_backward_and_frozen_weights_match_torch():
    """linear is one op with its own backward: its gradient must be
    differentiable again (create_graph=True), and inputs that need no
    gradient get none."""
    x, w, b, g, h = n(2, 5, 4), n(3, 4), n(3), n(2, 5, 3), n(2, 5, 4)
    mine = [mc.tensor(a, requires_grad=True) for a in (x, w, b)]
    theirs = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    F.linear(*mine).backward(mc.tensor(g), create_graph=True)
    (tgx,) = torch.autograd.grad(torch.nn.functional.linear(*theirs), theirs[:1], torch.tensor(g), create_graph=True)
    gx = mine[0].grad
    numpy.testing.assert_allclose(gx.detach().numpy(), tgx.detach().numpy(), rtol=1e-13)
    for t in mine:
        t.grad = None
    (gx * mc.tensor(h)).sum().backward()
    (tgx * torch.tensor(h)).sum().backward()
    numpy.testing.assert_allclose(mine[1].grad.numpy(), theirs[1].grad.numpy(), rtol=1e-12)
    frozen_w, frozen_b = mc.tensor(w), mc.tensor(b)
    xs = mc.tensor(x, requires_grad=True)
    F.linear(xs, frozen_w, frozen_b).backward(mc.tensor(g))
    assert frozen_w.grad is None and frozen_b.grad is None
    numpy.testing.assert_allclose(xs.grad.numpy(), g @ w, rtol=1e-13)


def test_mismatched_inner_dims_name_both_shapes():
    with pytest.raises(ValueError, match=r"shapes \(3, 4\) and \(5, 2\) cannot be multiplied"):
        mc.ones(3, 4) @ mc.ones(5, 2)
    with pytest.raises(ValueError, match="batch dims"):
        mc.ones(2, 3, 4) @ mc.ones(3, 4, 5)
    with pytest.raises(ValueError, match="at least 1 dim"):
        mc.matmul(mc.tensor(1.0), mc.ones(2))


def test_linear_checks_feature_counts():
    with pytest.raises(ValueError, match=r"input of shape \(2, 5\) has 5 features but weight of shape \(3, 4\) expects 4"):
        F.linear(mc.ones(2, 5), mc.ones(3, 4))
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\)"):
        F.linear(mc.ones(2, 4), mc.ones(3, 4), mc.ones(4))
