"""SGD, Adam, AdamW and RMSprop against torch.optim: the same parameters
and the same gradients for five steps, compared after every step in
float64 to 1e-12, for every option that changes the update."""
import copy

import numpy
import pytest
import torch

import minicnn as mc

SHAPES = [(3, 4), (4,), (2, 2, 3)]
STEPS = 5


def gradients(params, step, rng_seed=0):
    """A gradient for each parameter that depends on the parameter (so the
    two runs would drift apart if one update were wrong) plus noise that
    is the same for both runs."""
    noise = numpy.random.default_rng(rng_seed + step)
    return [(numpy.sin(3 * p) + p ** 2 - noise.standard_normal(p.shape)).astype(p.dtype) for p in params]


def run_both(mc_cls, torch_cls, kwargs, dtype=numpy.float64, groups=None, steps=STEPS, skip=None):
    """Step both optimizers ``steps`` times; yield their parameters (and
    the optimizers) after each step. ``skip`` = (step, index) leaves one
    parameter without a gradient on that step."""
    rng = numpy.random.default_rng(42)
    init = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    mine = [mc.tensor(a, requires_grad=True) for a in init]
    theirs = [torch.tensor(a, requires_grad=True) for a in init]
    if groups is None:
        opt_mc, opt_torch = mc_cls(mine, **kwargs), torch_cls(theirs, **kwargs)
    else:
        opt_mc = mc_cls([dict(g, params=[mine[i] for i in g["params"]]) for g in groups], **kwargs)
        opt_torch = torch_cls([dict(g, params=[theirs[i] for i in g["params"]]) for g in groups], **kwargs)
    for step in range(steps):
        opt_mc.zero_grad()
        opt_torch.zero_grad()
        grads = gradients([t.detach().numpy() for t in theirs], step)
        for i, (m, t, g) in enumerate(zip(mine, theirs, grads)):
            if skip == (step, i):
                continue
            m.grad = mc.tensor(g)
            t.grad = torch.tensor(g)
        opt_mc.step()
        opt_torch.step()
        yield mine, theirs, opt_mc, opt_torch


def assert_same(mine, theirs, rtol=1e-12, atol=1e-14):
    for m, t in zip(mine, theirs):
        numpy.testing.assert_allclose(m.data, t.detach().numpy(), rtol=rtol, atol=atol)


SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.1, momentum=0.9, dampening=0.5),
    dict(lr=0.1, momentum=0.9, nesterov=True),
    dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1),
    dict(lr=0.1, weight_decay=0.1),
    dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.05, maximize=True),
]
ADAM_CASES = [
    dict(),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.01, amsgrad=True),
    dict(lr=0.01, amsgrad=True, weight_decay=0.1),
    dict(lr=0.02, betas=(0.8, 0.9), eps=1e-6),
    dict(lr=0.01, maximize=True),
    dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
]
ADAMW_CASES = [
    dict(),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.01, weight_decay=0.1, amsgrad=True),
    dict(lr=0.01, weight_decay=0.0),
    dict(lr=0.01, maximize=True),
]
RMSPROP_CASES = [
    dict(),
    dict(lr=0.01, centered=True),
    dict(lr=0.01, momentum=0.9),
    dict(lr=0.01, momentum=0.9, centered=True),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.01, alpha=0.9, eps=1e-6, momentum=0.5, centered=True, weight_decay=0.01),
    dict(lr=0.01, maximize=True),
]
CASES = ([("SGD", k) for k in SGD_CASES] + [("Adam", k) for k in ADAM_CASES]
         + [("AdamW", k) for k in ADAMW_CASES] + [("RMSprop", k) for k in RMSPROP_CASES])


def classes(name):
    return getattr(mc.optim, name), getattr(torch.optim, name)


@pytest.mark.parametrize("name, kwargs", CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_five_steps_match_torch(name, kwargs):
    for mine, theirs, opt_mc, opt_torch in run_both(*classes(name), kwargs):
        assert_same(mine, theirs)
    # The buffers themselves match torch's, under torch's names.
    for m, t in zip(mine, theirs):
        state_mc, state_torch = opt_mc.state[m], opt_torch.state[t]
        for key, value in state_torch.items():
            if value is None:
                continue
            if key == "step":
                assert state_mc["step"] == int(value.item())
            else:
                numpy.testing.assert_allclose(state_mc[key].data, value.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop"])
def test_float32_matches_torch(name):
    kwargs = dict(lr=0.01, momentum=0.9) if name in ("SGD", "RMSprop") else dict(lr=0.01)
    for mine, theirs, _, _ in run_both(*classes(name), kwargs, dtype=numpy.float32):
        assert all(m.dtype == mc.float32 for m in mine)
        assert_same(mine, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, kwargs", [("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", dict(lr=0.01)),
                                          ("RMSprop", dict(lr=0.01, momentum=0.5))])
def test_param_groups_with_their_own_hyperparameters(name, kwargs):
    groups = [dict(params=[0, 2], lr=0.3), dict(params=[1], weight_decay=0.2)]
    for mine, theirs, opt_mc, opt_torch in run_both(*classes(name), kwargs, groups=groups):
        assert_same(mine, theirs)
    assert opt_mc.param_groups[0]["lr"] == 0.3 and opt_mc.param_groups[1]["lr"] == kwargs["lr"]


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop"])
def test_a_parameter_without_gradient_is_skipped(name):
    kwargs = dict(lr=0.1, momentum=0.9) if name != "Adam" else dict(lr=0.1)
    for mine, theirs, _, _ in run_both(*classes(name), kwargs, skip=(2, 1)):
        assert_same(mine, theirs)


@pytest.mark.parametrize("name, kwargs", [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
                                          ("Adam", dict(lr=0.01, amsgrad=True)),
                                          ("AdamW", dict(lr=0.01)),
                                          ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True))])
def test_state_dict_round_trip_continues_the_same_run(name, kwargs):
    """Three steps, save, load into a fresh optimizer, two more steps: the
    same as five uninterrupted steps."""
    mc_cls, torch_cls = classes(name)
    runs = list(run_both(mc_cls, torch_cls, kwargs))
    mine, theirs, _, _ = runs[-1]                     # after 5 steps

    rng = numpy.random.default_rng(42)
    params = [mc.tensor(rng.standard_normal(s), requires_grad=True) for s in SHAPES]
    opt = mc_cls(params, **kwargs)
    for step in range(STEPS):
        if step == 3:
            saved = copy.deepcopy(opt.state_dict())
            saved_params = [p.data.copy() for p in params]
            # A fresh optimizer (different hyperparameters, overwritten by the load).
            params = [mc.tensor(a, requires_grad=True) for a in saved_params]
            opt = mc_cls(params, lr=123.0)
            opt.load_state_dict(saved)
            assert opt.param_groups[0]["lr"] == kwargs["lr"]
        opt.zero_grad()
        for p, g in zip(params, gradients([p.data for p in params], step)):
            p.grad = mc.tensor(g)
        opt.step()
    assert_same(params, theirs)


def test_state_dict_layout_follows_torch():
    p, q = mc.zeros(2, requires_grad=True), mc.zeros(3, requires_grad=True)
    opt = mc.optim.SGD([dict(params=[p], lr=0.5), dict(params=[q])], lr=0.1, momentum=0.9)
    p.grad, q.grad = mc.ones(2), mc.ones(3)
    opt.step()
    sd = opt.state_dict()
    assert list(sd["state"]) == [0, 1]
    assert sorted(sd["state"][0]) == ["momentum_buffer"]
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1]]
    assert sd["param_groups"][0]["lr"] == 0.5 and sd["param_groups"][1]["lr"] == 0.1
    # Loading copies the buffers: stepping the loaded optimizer leaves sd alone.
    opt2 = mc.optim.SGD([dict(params=[p]), dict(params=[q])], momentum=0.9)
    opt2.load_state_dict(sd)
    before = sd["state"][0]["momentum_buffer"].data.copy()
    opt2.step()
    numpy.testing.assert_array_equal(sd["state"][0]["momentum_buffer"].data, before)


def test_load_state_dict_rejects_a_mismatch():
    p, q = mc.zeros(2, requires_grad=True), mc.zeros(3, requires_grad=True)
    opt = mc.optim.Adam([p, q])
    p.grad, q.grad = mc.ones(2), mc.ones(3)
    opt.step()
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="parameter groups"):
        mc.optim.Adam([dict(params=[p]), dict(params=[q])]).load_state_dict(sd)
    with pytest.raises(ValueError, match="has 2 parameters"):
        mc.optim.Adam([p]).load_state_dict(sd)
    with pytest.raises(ValueError, match="shape"):
        mc.optim.Adam([q, p]).load_state_dict(sd)
    with pytest.raises(ValueError, match="'state' and 'param_groups'"):
        opt.load_state_dict({"state": {}})


def test_zero_grad():
    p = mc.ones(3, requires_grad=True)
    opt = mc.optim.SGD([p], lr=0.1)
    p.grad = mc.ones(3)
    opt.zero_grad(set_to_none=False)
    numpy.testing.assert_array_equal(p.grad.data, numpy.zeros(3, numpy.float32))
    opt.zero_grad()
    assert p.grad is None


def test_step_with_closure_returns_the_loss():
    w = mc.tensor([1.0, -2.0], dtype=mc.float64, requires_grad=True)
    opt = mc.optim.SGD([w], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss

    with mc.no_grad():  # step enables gradients for the closure itself
        loss = opt.step(closure)
    assert loss.item() == 5.0
    numpy.testing.assert_allclose(w.data, [0.5, -1.0])


def test_the_update_does_not_record_a_graph():
    w = mc.ones(2, requires_grad=True)
    opt = mc.optim.Adam([w], lr=0.1)
    (w * 3).sum().backward()
    opt.step()
    assert w.is_leaf and w.requires_grad


@pytest.mark.parametrize("make, match", [
    (lambda p: mc.optim.SGD(p, lr=-0.1), "lr must be >= 0"),
    (lambda p: mc.optim.SGD(p, lr="0.1"), "lr must be a number"),
    (lambda p: mc.optim.SGD(p, momentum=-0.5), "momentum"),
    (lambda p: mc.optim.SGD(p, nesterov=True), "nesterov"),
    (lambda p: mc.optim.SGD(p, momentum=0.9, dampening=0.1, nesterov=True), "nesterov"),
    (lambda p: mc.optim.Adam(p, betas=(1.0, 0.999)), r"betas\[0\]"),
    (lambda p: mc.optim.Adam(p, betas=(0.9, -0.1)), r"betas\[1\]"),
    (lambda p: mc.optim.Adam(p, betas=0.9), "pair"),
    (lambda p: mc.optim.AdamW(p, eps=-1e-8), "eps"),
    (lambda p: mc.optim.RMSprop(p, alpha=-0.1), "alpha"),
    (lambda p: mc.optim.RMSprop(p, weight_decay=-1), "weight_decay"),
])
def test_bad_hyperparameters_are_refused(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make([mc.zeros(2, requires_grad=True)])


def test_bad_params_are_refused():
    p = mc.zeros(2, requires_grad=True)
    with pytest.raises(TypeError, match="single Tensor"):
        mc.optim.SGD(p)
    with pytest.raises(ValueError, match="empty"):
        mc.optim.SGD([])
    with pytest.raises(TypeError, match="not a set"):
        mc.optim.SGD([{"params": {p}}])
    with pytest.raises(TypeError, match="only optimize Tensors"):
        mc.optim.SGD([numpy.zeros(2)])
    with pytest.raises(ValueError, match="more than once"):
        mc.optim.SGD([p, p])
    with pytest.raises(ValueError, match="more than one parameter group"):
        mc.optim.SGD([{"params": [p]}, {"params": [p]}])
    with pytest.raises(ValueError, match="non-leaf"):
        mc.optim.SGD([p * 2])
    with pytest.raises(TypeError, match="floating-point"):
        mc.optim.SGD([mc.tensor([1, 2])])


def test_repr_lists_the_groups():
    text = repr(mc.optim.SGD([mc.zeros(1, requires_grad=True)], lr=0.5))
    assert text.startswith("SGD (") and "Parameter Group 0" in text and "lr: 0.5" in text
