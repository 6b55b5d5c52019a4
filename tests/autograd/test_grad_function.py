"""mc.autograd.grad against torch.autograd.grad (first and second order),
and gradgradcheck."""
import numpy
import pytest
import torch

import minicnn as mc
from minicnn import GradcheckError

F = mc.nn.functional
TF = torch.nn.functional
R = numpy.random.default_rng(5)


def _np(t):
    return None if t is None else (t.numpy_copy() if isinstance(t, mc.Tensor) else t.detach().numpy())


def _close(a, b, rtol=1e-12):
    numpy.testing.assert_allclose(_np(a), _np(b), rtol=rtol, atol=1e-13)


def _graph(T, make, functional):
    """A small network: conv, tanh, a product with a second input, a sum."""
    x = make(R.standard_normal((2, 2, 5, 5)), requires_grad=True)
    w = make(R.standard_normal((3, 2, 3, 3)) * 0.3, requires_grad=True)
    b = make(R.standard_normal((3, 1, 1)), requires_grad=True)
    h = functional.conv2d(x, w, padding=1).tanh()
    y = h * b
    return x, w, b, h, y


def _both(fn):
    state = R.bit_generator.state
    mine = fn(mc, mc.tensor, F)
    R.bit_generator.state = state
    theirs = fn(torch, torch.tensor, TF)
    return mine, theirs


def test_grad_returns_torchs_tuple_and_leaves_dot_grad_alone():
    def run(T, make, functional):
        x, w, b, h, y = _graph(T, make, functional)
        gy = make(numpy.random.default_rng(1).standard_normal(tuple(y.shape)))
        grads = T.autograd.grad(y, (x, b, h), grad_outputs=gy)
        assert isinstance(grads, tuple) and len(grads) == 3
        assert x.grad is None and w.grad is None and b.grad is None
        assert not any(g.requires_grad for g in grads)
        return grads
    mine, theirs = _both(run)
    for a, b in zip(mine, theirs):
        _close(a, b)


def test_grad_of_several_outputs_sums_their_contributions():
    def run(T, make, functional):
        x, w, b, h, y = _graph(T, make, functional)
        return T.autograd.grad([y.sum(), (h * h).mean()], [w, x])
    mine, theirs = _both(run)
    for a, b in zip(mine, theirs):
        _close(a, b)


def test_unused_inputs_raise_unless_allowed_as_in_torch():
    for T in (torch, mc):
        x = T.ones(3, dtype=T.float64, requires_grad=True)
        unused = T.ones(2, dtype=T.float64, requires_grad=True)
        y = (x * 2).sum()
        with pytest.raises(RuntimeError, match="The differentiated Tensor at index 1 appears to not have been "
                                               "used in the graph. Set allow_unused=True"):
            T.autograd.grad(y, [x, unused], retain_graph=True)
        gx, gu = T.autograd.grad(y, [x, unused], allow_unused=True, retain_graph=True)
        assert gu is None and gx.tolist() == [2.0, 2.0, 2.0]
        gx, gu = T.autograd.grad(y, [x, unused], materialize_grads=True, retain_graph=True)
        assert gu.tolist() == [0.0, 0.0]
        with pytest.raises(ValueError, match="Expected allow_unused to be True or not passed when "
                                             "materialize_grads=True"):
            T.autograd.grad(y, [x, unused], materialize_grads=True, allow_unused=False)


def test_grad_argument_errors_are_torchs():
    for T in (torch, mc):
        x = T.ones(3, dtype=T.float64, requires_grad=True)
        with pytest.raises(RuntimeError, match="element 0 of tensors does not require grad"):
            T.autograd.grad(T.ones(3).sum(), x)
        with pytest.raises(RuntimeError, match="One of the differentiated Tensors does not require grad"):
            T.autograd.grad((x * 2).sum(), T.ones(3))
        with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar outputs"):
            T.autograd.grad(x * 2, x)
        y = (x * x).sum()
        T.autograd.grad(y, x)                              # frees the graph: retain_graph defaults to False
        with pytest.raises(RuntimeError, match="backward through the graph a second time"):
            T.autograd.grad(y, x)


def test_create_graph_gives_torchs_second_derivatives():
    def run(T, make, functional):
        x, w, b, h, y = _graph(T, make, functional)
        gx, gw = T.autograd.grad((y * y).sum(), (x, w), create_graph=True)
        assert gx.requires_grad and gw.requires_grad
        v = make(numpy.random.default_rng(2).standard_normal(tuple(x.shape)))
        (hvp,) = T.autograd.grad((gx * v).sum(), x, retain_graph=True)
        ((gw * gw).sum() + (gx * v).sum()).backward()
        return hvp, x.grad, w.grad, b.grad
    mine, theirs = _both(run)
    for a, b in zip(mine, theirs):
        _close(a, b, rtol=1e-10)


def test_grad_through_an_inplace_op_and_a_hooked_non_leaf_matches_torch():
    def run(T, make, functional):
        x, w, b, h, y = _graph(T, make, functional)
        y.add_(b * 2)
        y.register_hook(lambda g: g * 0.5)
        return T.autograd.grad((y * y).sum(), (x, b, w))
    mine, theirs = _both(run)
    for a, b in zip(mine, theirs):
        _close(a, b)


# -- gradgradcheck -----------------------------------------------------------
def _x(*shape):
    return mc.tensor(R.standard_normal(shape), requires_grad=True)


@pytest.mark.parametrize("name, fn, inputs", [
    ("tanh_of_product", lambda a, b: (a * b).tanh(), lambda: (_x(3, 4), _x(3, 4))),
    ("sigmoid", lambda a: a.sigmoid(), lambda: (_x(2, 5),)),
    ("log_softmax", lambda a: F.log_softmax(a, dim=1), lambda: (_x(3, 4),)),
    ("conv2d", lambda a, w: F.conv2d(a, w, padding=1), lambda: (_x(1, 2, 4, 4), _x(3, 2, 3, 3))),
    ("div_pow", lambda a, b: a / (b * b + 1) ** 1.5, lambda: (_x(4,), _x(4,))),
])
def test_gradgradcheck_passes_on_ops_with_double_backward(name, fn, inputs):
    assert mc.autograd.gradgradcheck(fn, inputs())


def test_gradgradcheck_catches_a_backward_that_is_not_differentiable_correctly():
    class Cube(mc.Function):
        def forward(self, x):
            self.x = x
            return x ** 3

        def backward(self, gy):
            return gy * mc.Tensor._wrap(3 * self.x ** 2)     # a constant: loses d/dx of the derivative

    x = _x(4)
    assert mc.autograd.gradcheck(lambda t: Cube.apply(t), (x,))
    with pytest.raises(GradcheckError, match="gradcheck failed for input 0"):
        mc.autograd.gradgradcheck(lambda t: Cube.apply(t), (x,))


def test_autograd_gradcheck_is_mc_gradcheck():
    assert mc.autograd.gradcheck is mc.gradcheck
    with pytest.raises(AttributeError):
        mc.autograd.no_such_name
