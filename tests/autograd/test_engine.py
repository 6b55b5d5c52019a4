"""The backward engine: order, accumulation, depth, memory, no_grad, errors."""
import gc
import weakref

import numpy
import pytest

import minicnn as mc
from minicnn.autograd import Function


def test_a_20000_op_chain_backpropagates_without_recursion():
    x = mc.tensor([1.0], dtype=mc.float64, requires_grad=True)
    y = x
    for _ in range(20_000):
        y = y * 1.0001
    y.sum().backward()
    assert x.grad.item() == pytest.approx(1.0001 ** 20_000, rel=1e-9)


def test_diamond_graph_sums_both_paths():
    x = mc.tensor([2.0, -1.0], dtype=mc.float64, requires_grad=True)
    a = x * x
    b = x * 3.0
    (a + b + a).sum().backward()
    numpy.testing.assert_allclose(x.grad.numpy(), 4 * x.detach().numpy() + 3)


def test_same_tensor_twice_in_one_op():
    x = mc.tensor([3.0], requires_grad=True)
    (x * x).backward(mc.ones(1))
    assert x.grad.item() == 6.0


def test_gradients_accumulate_across_backward_calls():
    x = mc.tensor([1.0, 2.0], requires_grad=True)
    (x * 2).sum().backward()
    (x * 3).sum().backward()
    assert x.grad.tolist() == [5.0, 5.0]
    x.grad = None
    (x * 4).sum().backward()
    assert x.grad.tolist() == [4.0, 4.0]


def test_grad_of_two_leaves_is_not_shared_memory():
    a = mc.ones(3, requires_grad=True)
    b = mc.ones(3, requires_grad=True)
    (a + b).sum().backward()
    a.grad.data *= 10
    assert b.grad.tolist() == [1.0, 1.0, 1.0]


# -- a leaf keeps the gradient array it is handed, when nothing else can see it
class Fresh(Function):
    """y = 2x; backward returns a new array and notes which (by id only:
    holding it would keep a second reference)."""
    returned = None

    def forward(self, x):
        return 2 * x

    def backward(self, gy):
        gx = 2 * gy.data
        Fresh.returned = id(gx)
        return gx


class Keeping(Function):
    """y = 2x; backward returns an array it also keeps."""

    def forward(self, x):
        return 2 * x

    def backward(self, gy):
        self.kept = 2 * gy.data
        return self.kept


def test_a_fresh_gradient_becomes_the_leafs_grad_without_a_copy():
    x = mc.ones(4, requires_grad=True)
    Fresh.apply(x).backward(mc.ones(4))
    assert id(x.grad.data) == Fresh.returned
    assert x.grad.tolist() == [2.0] * 4


def test_a_gradient_held_elsewhere_is_copied():
    x = mc.ones(4, requires_grad=True)
    y = Keeping.apply(x)
    node = y.grad_fn
    y.backward(mc.ones(4), retain_graph=True)
    x.grad.data *= 10
    assert node.kept.tolist() == [2.0] * 4


@pytest.mark.parametrize("through", [lambda t: t, lambda t: t + 0, lambda t: t.reshape(2, 2).reshape(4)])
def test_the_gradient_given_to_backward_is_never_kept(through):
    """Ops that pass their gradient through hand the caller's array on."""
    x = mc.ones(4, requires_grad=True)
    given = mc.tensor([1.0, 2.0, 3.0, 4.0])
    y = through(x)
    y.backward(given)
    x.grad.data *= 10
    assert given.tolist() == [1.0, 2.0, 3.0, 4.0]


def test_a_gradient_sent_to_a_leaf_and_on_through_the_graph_is_not_shared():
    """a + b*2 sends one array to leaf a and to the node b*2: a keeps
    it, and b's gradient, computed from it afterwards, is its own."""
    a = mc.ones(3, requires_grad=True)
    b = mc.ones(3, requires_grad=True)
    c = mc.ones(3, requires_grad=True)
    (Fresh.apply(a + b * 2) + c).sum().backward()
    for first, second in [(a, b), (a, c), (b, c)]:
        assert not numpy.shares_memory(first.grad.data, second.grad.data)
    a.grad.data *= 10
    assert b.grad.tolist() == [4.0] * 3 and c.grad.tolist() == [1.0] * 3


def test_model_gradients_are_separate_arrays():
    model = mc.nn.Sequential(mc.nn.Conv2d(2, 4, 3), mc.nn.BatchNorm2d(4), mc.nn.ReLU(), mc.nn.Flatten(),
                             mc.nn.Linear(4 * 3 * 3, 3))
    x = mc.randn(2, 2, 5, 5)
    mc.nn.functional.cross_entropy(model(x), mc.tensor([0, 2])).backward()
    grads = [p.grad.data for p in model.parameters()]
    for i, g in enumerate(grads):
        for h in grads[i + 1:]:
            assert not numpy.shares_memory(g, h)


def test_second_backward_needs_retain_graph():
    x = mc.ones(3, requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_retain_graph_keeps_buffers_for_a_second_backward():
    x = mc.tensor([0.5, 1.5], dtype=mc.float64, requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    y.backward()
    numpy.testing.assert_allclose(x.grad.numpy(), 2 * first)


def test_saved_buffers_are_freed_after_backward():
    x = mc.randn(1000, requires_grad=True)
    loss = x.exp().sum()
    exp_node = loss.grad_fn.edges[0][0]
    saved = weakref.ref(exp_node.saved_tensors[0].data)
    loss.backward()
    gc.collect()
    assert saved() is None
    assert exp_node._saved == () and exp_node._released


def test_ops_save_only_what_backward_needs():
    a = mc.randn(3, requires_grad=True)
    b = mc.randn(3, requires_grad=True)
    assert (a + b).grad_fn._saved == ()           # add needs no values
    assert len((a * b).grad_fn._saved) == 2       # mul needs both inputs
    relu = mc.relu(a).grad_fn
    assert relu._saved == () and relu.slope.shape == (3,)   # a mask, not the input
    assert (a * b).grad_fn._saved[0] is a         # a saved input is the Tensor, not a copy


def test_no_grad_records_nothing_and_works_as_a_decorator():
    x = mc.ones(2, requires_grad=True)
    with mc.no_grad():
        y = x * 2
    assert not y.requires_grad and y.grad_fn is None and y.is_leaf

    @mc.no_grad()
    def double(t):
        return t * 2

    assert double(x).grad_fn is None
    assert mc.is_grad_enabled()
    with mc.no_grad():
        with mc.enable_grad():
            assert (x * 2).requires_grad


def test_only_unused_outputs_of_split_get_zero_gradient():
    x = mc.tensor(numpy.arange(6.0), requires_grad=True)
    first, second = x.split(3)
    (second * 2).sum().backward()
    assert x.grad.tolist() == [0, 0, 0, 2, 2, 2]


def test_branch_that_receives_no_gradient_is_skipped():
    x = mc.ones(3, requires_grad=True)
    idx = x.max(0).indices          # an integer output: no gradient flows there
    y = x * 2
    y.sum().backward()
    assert x.grad.tolist() == [2.0, 2.0, 2.0]
    assert not idx.requires_grad


def test_detach_cuts_the_graph():
    x = mc.ones(2, requires_grad=True)
    y = (x * 2).detach() * x
    y.sum().backward()
    assert x.grad.tolist() == [2.0, 2.0]


def test_is_leaf_and_non_leaf_grads():
    x = mc.ones(2, requires_grad=True)
    y = x * 2
    assert x.is_leaf and not y.is_leaf
    y.sum().backward()
    assert y.grad is None and x.grad is not None


def test_backward_of_a_non_scalar_needs_a_gradient():
    y = mc.ones(2, 3, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match=r"scalar outputs.*shape \(2, 3\)"):
        y.backward()
    with pytest.raises(ValueError, match=r"gradient has shape \(3,\) but the tensor has shape \(2, 3\)"):
        y.backward(mc.ones(3))


def test_backward_on_a_tensor_without_grad_is_an_error():
    with pytest.raises(RuntimeError, match="does not require grad"):
        mc.ones(2).sum().backward()


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="floating-point"):
        mc.tensor([1, 2], requires_grad=True)


def test_a_backward_returning_the_wrong_shape_is_reported():
    class Broken(Function):
        def forward(self, x):
            return x * 2

        def backward(self, gy):
            return gy.sum()

    x = mc.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"Broken.backward returned a gradient of shape \(\) for an input of shape \(3,\)"):
        Broken.apply(x).sum().backward()


def test_leaf_in_place_change_under_grad_is_refused():
    w = mc.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place operation"):
        w.zero_()
    with mc.no_grad():
        w.zero_()
    assert w.tolist() == [0.0, 0.0, 0.0]


def test_float64_stays_float64_end_to_end():
    x = mc.randn(4, 3, dtype=mc.float64, requires_grad=True)
    w = mc.randn(2, 3, dtype=mc.float64, requires_grad=True)
    loss = mc.nn.functional.cross_entropy(mc.nn.functional.linear(x, w).tanh(), mc.tensor([0, 1, 1, 0]))
    assert loss.dtype == mc.float64
    loss.backward()
    assert x.grad.dtype == mc.float64 and w.grad.dtype == mc.float64


def test_a_saved_output_is_differentiable_in_double_backward():
    # exp's backward is gy * y with y its saved output: the second
    # derivative must come through y (torch gives exp(x) * g * h).
    import torch
    r = numpy.random.default_rng(4)
    x, g, h = r.standard_normal(6), r.standard_normal(6), r.standard_normal(6)
    m = mc.tensor(x, requires_grad=True)
    m.exp().backward(mc.tensor(g), create_graph=True)
    first = m.grad
    m.grad = None
    first.backward(mc.tensor(h))
    t = torch.tensor(x, requires_grad=True)
    (first_t,) = torch.autograd.grad(t.exp(), t, torch.tensor(g), create_graph=True)
    (second_t,) = torch.autograd.grad(first_t, t, torch.tensor(h))
    numpy.testing.assert_allclose(m.grad.numpy(), second_t.numpy(), rtol=1e-13)
