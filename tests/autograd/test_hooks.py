"""Tensor hooks, retain_grad, module backward and forward-pre hooks, and the
grad-mode context managers, against torch."""
import numpy
import pytest
import torch

import minicnn as mc

R = numpy.random.default_rng(11)


def _frameworks():
    return ((mc, mc.tensor), (torch, torch.tensor))


def _close(a, b, rtol=1e-12):
    numpy.testing.assert_allclose(numpy.asarray(a), numpy.asarray(b), rtol=rtol, atol=1e-14)


def _np(t):
    return None if t is None else (t.numpy_copy() if isinstance(t, mc.Tensor) else t.detach().numpy())


# -- Tensor.register_hook ---------------------------------------------------
def test_hooks_see_torchs_gradients_fire_in_order_and_replace_them():
    x0, w0, gy = R.standard_normal(4), R.standard_normal(4), R.standard_normal(4)
    logs = []
    for T, make in _frameworks():
        log = []
        x, w = make(x0, requires_grad=True), make(w0, requires_grad=True)
        y = x * w
        z = y.tanh()
        y.register_hook(lambda g: log.append(("y1", _np(g).copy())))
        y.register_hook(lambda g: g * 3)                     # replaces the gradient
        y.register_hook(lambda g: log.append(("y3", _np(g).copy())))
        x.register_hook(lambda g: log.append(("x", _np(g).copy())) or g + 1)
        z.register_hook(lambda g: log.append(("z", _np(g).copy())))
        z.backward(make(gy))
        logs.append((log, _np(x.grad), _np(w.grad)))
    (mine, mx, mw), (theirs, tx, tw) = logs
    assert [name for name, _ in mine] == [name for name, _ in theirs] == ["z", "y1", "y3", "x"]
    for (_, a), (_, b) in zip(mine, theirs):
        _close(a, b)
    _close(mx, tx)
    _close(mw, tw)


def _hooked(run):
    """x -> y = 2x, with hooks on x and y that log what they see (y's also
    replaces it); ``run(T, x, y)`` differentiates. Per framework: the log
    and what run returned."""
    x0 = R.standard_normal(3)
    results = []
    for T, make in _frameworks():
        seen = []
        x = make(x0, requires_grad=True)
        y = x * 2
        y.register_hook(lambda g: seen.append(("y", _np(g).copy())) or g * 3)
        x.register_hook(lambda g: seen.append(("x", _np(g).copy())))
        results.append((seen, run(T, x, y)))
    (mine, mine_result), (theirs, theirs_result) = results
    assert [name for name, _ in mine] == [name for name, _ in theirs] == ["y", "x"]
    for (_, a), (_, b) in zip(mine, theirs):
        _close(a, b)
    return mine_result, theirs_result


def test_a_hook_fires_once_with_the_sum_when_the_tensor_is_used_twice():
    mine, theirs = _hooked(lambda T, x, y: (y * y + y.exp() + x * 5).sum().backward() or _np(x.grad))
    _close(mine, theirs)


def test_removed_hook_no_longer_fires_and_hooks_need_requires_grad():
    x = mc.ones(3, requires_grad=True)
    seen = []
    handle = x.register_hook(lambda g: seen.append(1))
    (x * 2).sum().backward()
    handle.remove()
    (x * 2).sum().backward()
    assert seen == [1]
    for T in (torch, mc):
        with pytest.raises(RuntimeError, match="cannot register a hook on a tensor that doesn't require gradient"):
            T.zeros(3).register_hook(lambda g: g)


def test_hooks_fire_in_autograd_grad_as_in_torch():
    mine, theirs = _hooked(lambda T, x, y: (T.autograd.grad((y * y).sum(), x)[0], x.grad))
    _close(_np(mine[0]), _np(theirs[0]))
    assert mine[1] is None and theirs[1] is None


# -- retain_grad ---------------------------------------------------------------
def test_retain_grad_keeps_the_hooked_gradient_and_accumulates_as_torch():
    x0, gy = R.standard_normal((2, 3)), R.standard_normal((2, 3))
    results = []
    for T, make in _frameworks():
        x = make(x0, requires_grad=True)
        y = x.sigmoid()
        assert not y.retains_grad
        y.retain_grad()
        y.register_hook(lambda g: g * 0.5)           # retained .grad is after the hooks, as torch
        z = y * y
        z.backward(make(gy), retain_graph=True)
        first = _np(y.grad).copy()
        z.backward(make(gy))
        results.append((y.retains_grad, x.retains_grad, first, _np(y.grad), _np(x.grad)))
    mine, theirs = results
    assert mine[:2] == theirs[:2] == (True, False)
    for a, b in zip(mine[2:], theirs[2:]):
        _close(a, b)


def test_retain_grad_on_a_leaf_is_a_no_op_and_needs_requires_grad():
    x = mc.ones(2, requires_grad=True)
    x.retain_grad()
    (x * 3).sum().backward()
    assert x.grad.tolist() == [3.0, 3.0] and not x.retains_grad
    for T in (torch, mc):
        with pytest.raises(RuntimeError, match="can't retain_grad on Tensor that has requires_grad=False"):
            T.zeros(2).retain_grad()


# -- module hooks ------------------------------------------------------------
def _pair(kind):
    if kind == "linear":
        mine, theirs, shape = mc.nn.Linear(5, 3).double(), torch.nn.Linear(5, 3).double(), (4, 5)
    else:
        mine, theirs, shape = mc.nn.Conv2d(2, 3, 3, padding=1).double(), torch.nn.Conv2d(2, 3, 3, padding=1).double(), \
            (2, 2, 5, 5)
    theirs.load_state_dict({k: torch.tensor(v.numpy_copy()) for k, v in mine.state_dict().items()})
    return mine, theirs, shape


def _backward_through(kind, register):
    """The module pair on the same input (a non-leaf), after
    ``register(module, log)`` added hooks, backward from tanh of the output
    with a random upstream gradient. Per framework: (log, x.grad,
    weight.grad, bias.grad)."""
    mc.manual_seed(0)
    mine, theirs, shape = _pair(kind)
    x0 = numpy.random.default_rng(0).standard_normal(shape)
    results = []
    for make, module in ((mc.tensor, mine), (torch.tensor, theirs)):
        log = []
        register(module, log)
        x = make(x0, requires_grad=True)
        y = module(x * 1)
        gy = numpy.random.default_rng(3).standard_normal(tuple(y.shape))
        (y.tanh() * make(gy)).sum().backward()
        results.append((log, _np(x.grad), _np(module.weight.grad), _np(module.bias.grad)))
    return results


@pytest.mark.parametrize("kind", ["linear", "conv2d"])
def test_full_backward_hook_sees_torchs_grad_input_and_grad_output(kind):
    def register(module, log):
        module.register_full_backward_pre_hook(lambda m, go: log.append(("pre", [_np(g) for g in go])))
        module.register_full_backward_hook(
            lambda m, gi, go: log.append(("hook", [_np(g) for g in gi], [_np(g) for g in go])))

    (mine_rec, *mine), (theirs_rec, *theirs) = _backward_through(kind, register)
    assert [r[0] for r in mine_rec] == [r[0] for r in theirs_rec] == ["pre", "hook"]
    _close(mine_rec[0][1][0], theirs_rec[0][1][0])
    assert len(mine_rec[1][1]) == len(theirs_rec[1][1]) == 1
    _close(mine_rec[1][1][0], theirs_rec[1][1][0])       # grad_input
    _close(mine_rec[1][2][0], theirs_rec[1][2][0])       # grad_output
    for a, b in zip(mine, theirs):
        _close(a, b)


@pytest.mark.parametrize("kind", ["linear", "conv2d"])
def test_backward_hooks_replace_grad_input_and_grad_output_as_torch(kind):
    def register(module, log):
        module.register_full_backward_pre_hook(lambda m, go: (go[0] * 2,))
        module.register_full_backward_hook(lambda m, gi, go: (gi[0] - 1,))

    (_, *mine), (_, *theirs) = _backward_through(kind, register)
    for a, b in zip(mine, theirs):
        _close(a, b)
    (_, x_grad, w_grad, b_grad), _ = _backward_through(kind, lambda module, log: None)
    _close(mine[0], 2 * x_grad - 1)                      # grad_input: the doubled one, minus 1
    _close(mine[1], 2 * w_grad)
    _close(mine[2], 2 * b_grad)


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")      # torch's, saying what is tested
def test_backward_hook_with_inputs_that_need_no_gradient_gets_nones_as_torch():
    mine, theirs, shape = _pair("linear")
    x0 = R.standard_normal(shape)
    records = []
    for T, make, module in ((mc, mc.tensor, mine), (torch, torch.tensor, theirs)):
        rec = []
        handle = module.register_full_backward_hook(lambda m, gi, go: rec.append((gi, _np(go[0]))))
        module(make(x0)).sum().backward()
        handle.remove()
        module(make(x0)).sum().backward()
        records.append(rec)
    assert len(records[0]) == len(records[1]) == 1
    assert records[0][0][0] == records[1][0][0] == (None,)
    _close(records[0][0][1], records[1][0][1])


def test_forward_pre_hook_replaces_args_and_kwargs_as_torch():
    class Scale(torch.nn.Module):
        def forward(self, x, factor=1.0):
            return x * factor

    class McScale(mc.nn.Module):
        def forward(self, x, factor=1.0):
            return x * factor

    x0 = R.standard_normal(3)
    outs = []
    for module, make in ((McScale(), mc.tensor), (Scale(), torch.tensor)):
        module.register_forward_pre_hook(lambda m, args: (args[0] + 1,))
        module.register_forward_pre_hook(lambda m, args, kwargs: (args, {"factor": kwargs["factor"] * 10}),
                                         with_kwargs=True)
        outs.append(_np(module(make(x0), factor=2.0)))
    _close(outs[0], outs[1])
    _close(outs[0], (x0 + 1) * 20)


# -- grad modes --------------------------------------------------------------
def _modes(T):
    seen = []

    @T.no_grad()
    def with_call():
        return T.is_grad_enabled()

    @T.no_grad
    def bare():
        return T.is_grad_enabled()

    @T.enable_grad()
    def enabled():
        return T.is_grad_enabled()

    @T.set_grad_enabled(False)
    def disabled():
        return T.is_grad_enabled()

    @T.inference_mode()
    def inference():
        return T.is_grad_enabled()

    seen += [with_call(), bare(), T.is_grad_enabled(), disabled(), T.is_grad_enabled()]
    with T.no_grad():
        seen += [T.is_grad_enabled(), enabled()]
        with T.enable_grad():
            seen.append(T.is_grad_enabled())
        with T.set_grad_enabled(True):
            seen.append(T.is_grad_enabled())
        seen.append(T.is_grad_enabled())
    with T.inference_mode():
        seen.append(T.is_grad_enabled())
    with T.inference_mode(False):
        seen.append(T.is_grad_enabled())
    seen.append(inference())
    T.set_grad_enabled(False)                          # the call alone switches the mode
    seen.append(T.is_grad_enabled())
    T.set_grad_enabled(True)
    seen.append(T.is_grad_enabled())
    return seen


def test_grad_modes_as_context_managers_and_decorators_behave_as_torchs():
    assert _modes(mc) == _modes(torch)


def test_inference_mode_records_nothing():
    x = mc.ones(3, requires_grad=True)
    with mc.inference_mode():
        y = x * 2
    assert y.grad_fn is None and not y.requires_grad
