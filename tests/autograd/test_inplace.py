"""In-place ops and version counters, against torch: the same graph built in
both, float64, random upstream gradients."""
import numpy
import pytest
import torch

import minicnn as mc
from minicnn.functional.inplace import InplaceShapeError

F = mc.nn.functional
LEAF = "a leaf Variable that requires grad is being used in an in-place operation"
MODIFIED = "one of the variables needed for gradient computation has been modified by an inplace operation"

R = numpy.random.default_rng(7)
MASK = numpy.array([[True, False, False, True], [False, False, True, False], [True, True, False, False]])
ROWS = numpy.array([2, 0])


def _values(shape, low=0.2):
    """Random values at least ``low`` away from 0 (division, clamp kinks)."""
    v = R.uniform(low, 1.5, shape)
    return v * R.choice([-1.0, 1.0], shape)


# name -> (the op on a tensor y of shape (3, 4) with operand b, for minicnn and
# for torch (``T`` is the framework), the operand's shape or None).
OPS = {
    "add_": (lambda y, b, T: y.add_(b, alpha=0.5), (3, 4)),
    "add_broadcast": (lambda y, b, T: y.add_(b), (4,)),
    "add_number": (lambda y, b, T: y.add_(2.5), None),
    "sub_": (lambda y, b, T: y.sub_(b, alpha=2.0), (3, 1)),
    "mul_": (lambda y, b, T: y.mul_(b), (3, 4)),
    "mul_number": (lambda y, b, T: y.mul_(-3.0), None),
    "div_": (lambda y, b, T: y.div_(b), (4,)),
    "clamp_": (lambda y, b, T: y.clamp_(-0.5, 0.7), None),
    "clamp_min_only": (lambda y, b, T: y.clamp_(min=-0.1), None),
    "copy_": (lambda y, b, T: y.copy_(b), (3, 4)),
    "copy_broadcast": (lambda y, b, T: y.copy_(b), (1, 4)),
    "zero_": (lambda y, b, T: y.zero_(), None),
    "fill_number": (lambda y, b, T: y.fill_(2.5), None),
    "fill_tensor": (lambda y, b, T: y.fill_(b), ()),
    "relu_": (lambda y, b, T: y.relu_(), None),
    "masked_fill_number": (lambda y, b, T: y.masked_fill_(T.tensor(MASK), 1.5), None),
    "masked_fill_tensor": (lambda y, b, T: y.masked_fill_(T.tensor(MASK), b), ()),
    "setitem_slice": (lambda y, b, T: y.__setitem__((slice(1, None), slice(None, None, 2)), b), (2, 2)),
    "setitem_broadcast": (lambda y, b, T: y.__setitem__(1, b), (1,)),
    "setitem_rows": (lambda y, b, T: y.__setitem__(T.tensor(ROWS), b), (2, 4)),
    "setitem_mask_number": (lambda y, b, T: y.__setitem__(T.tensor(MASK), -2.0), None),
    "setitem_number": (lambda y, b, T: y.__setitem__((0, 1), 4.0), None),
}


def _run(T, x, w, b, op, gy, g_before):
    """y = x * w; a consumer of y before the op that saves nothing of y
    (y + 1); the op; a product of the new y. Returns y, x.grad, b.grad."""
    y = x * w
    before = y + 1
    op(y, b, T)
    loss = (y * y * gy).sum() + (before * g_before).sum()
    loss.backward()
    return y, x.grad, None if b is None else b.grad


def _noncontiguous(a):
    """The values of ``a`` in memory that is not C-contiguous."""
    if a.ndim == 0:
        return a
    buffer = numpy.empty(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    buffer[..., ::2] = a
    return buffer[..., ::2]


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("dtype, tol", [(numpy.float64, 1e-12), (numpy.float32, 1e-5)])
def test_inplace_op_records_torchs_graph(name, dtype, tol):
    op, b_shape = OPS[name]
    x, w = _values((3, 4)).astype(dtype), _values((3, 4)).astype(dtype)
    b = None if b_shape is None else _values(b_shape).astype(dtype)
    gy, g_before = R.standard_normal((3, 4)).astype(dtype), R.standard_normal((3, 4)).astype(dtype)

    def inputs(make, b):
        return (make(x, requires_grad=True), make(w), None if b is None else make(b, requires_grad=True))

    theirs = _run(torch, *inputs(torch.tensor, b), op, torch.tensor(gy), torch.tensor(g_before))
    for operand in (b, None if b is None else _noncontiguous(b)):
        mine = _run(mc, *inputs(mc.tensor, operand), op, mc.tensor(gy), mc.tensor(g_before))
        assert mine[0].dtype == dtype and mine[0].grad_fn is not None and mine[0].requires_grad
        numpy.testing.assert_allclose(mine[0].numpy_copy(), theirs[0].detach().numpy(), rtol=tol, atol=tol)
        numpy.testing.assert_allclose(mine[1].numpy(), theirs[1].numpy(), rtol=tol, atol=tol)
        if b is not None:
            numpy.testing.assert_allclose(mine[2].numpy(), theirs[2].numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("name", sorted(OPS))
def test_inplace_op_passes_gradcheck(name):
    op, b_shape = OPS[name]
    w = mc.tensor(_values((3, 4)))
    inputs = [mc.tensor(_values((3, 4)), requires_grad=True)]
    if b_shape is not None:
        inputs.append(mc.tensor(_values(b_shape), requires_grad=True))

    def fn(x, b=None):
        y = x * w
        op(y, b, mc)
        return y * y
    assert mc.gradcheck(fn, tuple(inputs))


def test_retained_grad_follows_the_inplace_op_and_hooks_stay_as_in_torch():
    x0 = R.standard_normal(3)
    results = []
    for T, make in ((mc, mc.tensor), (torch, torch.tensor)):
        seen = []
        x = make(x0, requires_grad=True)
        y = x * 2
        y.retain_grad()
        y.register_hook(lambda g: seen.append(g.tolist()))   # the gradient w.r.t. the old value
        y.mul_(3)
        (y * y).sum().backward()
        results.append((y.grad.tolist(), seen, y.retains_grad))
    assert results[0][2] is results[1][2] is True
    numpy.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-14)
    numpy.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-14)


def test_inplace_on_a_plain_tensor_with_an_operand_that_requires_grad_joins_the_graph():
    b = _values((3,))
    for T, make in ((mc, mc.tensor), (torch, torch.tensor)):
        y = T.zeros(3, dtype=T.float64)
        bt = make(b, requires_grad=True)
        y.add_(bt)
        assert y.requires_grad and not y.is_leaf
        (y * y).sum().backward()
        if T is mc:
            mine = bt.grad.numpy()
        else:
            numpy.testing.assert_allclose(mine, bt.grad.numpy(), rtol=1e-14)


def test_inplace_activation_while_recording_matches_torch_and_feeds_later_ops():
    x = _values((2, 5))
    gy = R.standard_normal((2, 5))
    results = []
    for T, make, fn in ((mc, mc.tensor, F.silu), (torch, torch.tensor, torch.nn.functional.silu)):
        xt = make(x, requires_grad=True)
        h = xt * 2
        out = fn(h, inplace=True)
        assert out is h
        (h.tanh() * make(gy)).sum().backward()
        results.append((h.detach().numpy(), xt.grad.numpy()))
    numpy.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-14)
    numpy.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-12)


# -- version counters -----------------------------------------------------
# Graphs where torch raises: a node saved the values the in-place op changed.
RAISES = {
    "saved_output_of_sigmoid": lambda T, x, b: (lambda y: (y.add_(1), y)[1])(x.sigmoid()),
    "saved_output_of_exp": lambda T, x, b: (lambda y: (y.mul_(2), y)[1])(x.exp()),
    "saved_input_of_mul": lambda T, x, b: (lambda y: (lambda z: (y.sub_(b), z)[1])(y * b))(x * 1),
    "inplace_activation_on_a_saved_output": lambda T, x, b: (
        lambda y: T.nn.functional.relu(y, inplace=True))(x.tanh()),
    "changed_through_detach": lambda T, x, b: (lambda y: (lambda z: (y.detach().add_(1), z)[1])(y * b))(x * 1),
    "setitem_on_a_saved_output": lambda T, x, b: (lambda y: (y.__setitem__(0, 5.0), y)[1])(x.sigmoid()),
}

# Graphs where torch does not: what was saved is not what changed.
FINE = {
    "mul_by_a_constant_saves_no_output": lambda T, x, b: (lambda y: (y.add_(b), y)[1])(x * 2),
    "add_saves_nothing": lambda T, x, b: (lambda y: (y.mul_(b), y)[1])(x + 1),
    "exp_then_a_copy_changed": lambda T, x, b: (lambda y: (lambda z: (z.add_(1), z * y)[1])(y + 0))(x.exp()),
    "inplace_after_every_use": lambda T, x, b: (lambda y: (y.clamp_(-0.3, 0.3), y.sum())[1])(x * b),
}


@pytest.mark.parametrize("name", sorted(RAISES))
def test_backward_raises_where_torch_raises(name):
    x, b = _values((4,)), _values((4,))
    with pytest.raises(RuntimeError, match=MODIFIED):
        RAISES[name](torch, torch.tensor(x, requires_grad=True), torch.tensor(b, requires_grad=True)).sum().backward()
    with pytest.raises(RuntimeError, match=MODIFIED):
        RAISES[name](mc, mc.tensor(x, requires_grad=True), mc.tensor(b, requires_grad=True)).sum().backward()


@pytest.mark.parametrize("name", sorted(FINE))
def test_no_error_where_torch_gives_none_and_the_same_gradients(name):
    x, b = _values((4,)), _values((4,))
    gy = R.standard_normal(4)
    grads = []
    for T, make in ((torch, torch.tensor), (mc, mc.tensor)):
        xt, bt = make(x, requires_grad=True), make(b, requires_grad=True)
        out = FINE[name](T, xt, bt)
        (out * make(gy)).sum().backward()
        grads.append([None if t.grad is None else t.grad.numpy() for t in (xt, bt)])
    for mine, theirs in zip(grads[1], grads[0]):
        assert (mine is None) == (theirs is None)
        if mine is not None:
            numpy.testing.assert_allclose(mine, theirs, rtol=1e-12)


def test_an_optimizer_step_between_forward_and_backward_raises_as_in_torch():
    for T in (torch, mc):
        w = T.ones(3, dtype=T.float64, requires_grad=True)
        loss = (w * w).sum()
        with T.no_grad():
            w.add_(T.ones(3, dtype=T.float64), alpha=-0.1)
        with pytest.raises(RuntimeError, match=MODIFIED):
            loss.backward()


def test_versions_count_inplace_ops_and_are_shared_by_views_as_torchs():
    for T in (torch, mc):
        t = T.zeros(2, 3, dtype=T.float64)
        view = t.detach()
        seen = [t._version]
        t.add_(1)
        t.mul_(2.0)
        t[0] = 3.0
        seen.append(t._version)
        view.zero_()
        t.reshape(6).fill_(1.0)
        seen += [t._version, view._version]
        t + 1                                      # an out-of-place op changes nothing
        seen.append(t._version)
        if T is torch:
            expected = seen
    assert seen == expected == [0, 3, 5, 5, 5]


# -- under no_grad: the array is modified, nothing recorded -----------------
def test_optimizer_style_update_under_no_grad_matches_torch():
    p0, g = _values((3, 4)), R.standard_normal((3, 4))
    results = []
    for T, make in ((mc, mc.tensor), (torch, torch.tensor)):
        p = make(p0, requires_grad=True)
        with T.no_grad():
            out = p.add_(make(g), alpha=-0.1)
            p.mul_(0.9).sub_(make(g), alpha=0.01).clamp_(-1.0, 1.0)
            p.div_(2.0)
        assert out is p and p.is_leaf and p.requires_grad and p.grad_fn is None
        results.append(p.detach().numpy().copy())
    numpy.testing.assert_allclose(results[0], results[1], rtol=1e-15)


def test_leaf_that_requires_grad_is_refused_outside_no_grad_as_in_torch():
    for T in (torch, mc):
        w = T.ones(3, dtype=T.float64, requires_grad=True)
        for op in (lambda: w.add_(1), lambda: w.mul_(2), lambda: w.zero_(), lambda: w.fill_(1.0),
                   lambda: w.copy_(T.zeros(3, dtype=T.float64)), lambda: w.relu_(),
                   lambda: w.__setitem__(0, 2.0), lambda: T.nn.functional.relu(w, inplace=True)):
            with pytest.raises(RuntimeError, match=LEAF):
                op()
        assert w.tolist() == [1.0, 1.0, 1.0]


def test_bad_inplace_arguments_raise_like_torch():
    for T in (torch, mc):
        with pytest.raises(RuntimeError, match=r"doesn't match the broadcast shape"):
            T.zeros(3).add_(T.zeros(2, 3))
        with pytest.raises(RuntimeError, match=r"can't be cast to the desired output type"):
            T.zeros(3, dtype=T.int64).add_(1.5)
    with pytest.raises(ValueError, match=r"output with shape \(3,\) doesn't match the broadcast shape \(2, 3\)"):
        mc.zeros(3).add_(mc.zeros(2, 3))
    assert issubclass(InplaceShapeError, ValueError) and issubclass(InplaceShapeError, RuntimeError)
    with pytest.raises(TypeError, match="mask must be a bool Tensor"):
        mc.zeros(3).masked_fill_(mc.tensor([1, 0, 1]), 1.0)
    with pytest.raises(ValueError, match=r"fill_: value must be a number or a 0-dim tensor, got shape \(2,\)"):
        mc.zeros(3).fill_(mc.zeros(2))


def test_inplace_on_a_view_in_the_graph_is_refused_documented_difference():
    """torch rewrites the base's history (CopySlices); minicnn refuses
    rather than computing a wrong gradient for the base."""
    x = mc.tensor(_values((2, 3)), requires_grad=True)
    y = x * 1
    view = y.reshape(3, 2)
    with pytest.raises(RuntimeError, match="view of another tensor in the graph"):
        view.mul_(2)
    with pytest.raises(RuntimeError, match="views of this tensor"):
        y.add_(1)
    del view
    y.add_(1)                                      # the view is gone: nothing can go stale
    y.sum().backward()
    numpy.testing.assert_array_equal(x.grad.numpy(), numpy.ones((2, 3)))
