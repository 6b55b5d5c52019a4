"""The lr schedules against torch.optim.lr_scheduler: the lrs (and, for
OneCycleLR, the momenta) of two parameter groups over 20+ steps."""
import warnings

import numpy
import pytest
import torch

import minicnn as mc
from minicnn.optim import lr_scheduler

STEPS = 25


def make_optimizers(name, kwargs):
    mine = getattr(mc.optim, name)(
        [dict(params=[mc.zeros(2, requires_grad=True)]), dict(params=[mc.zeros(3, requires_grad=True)], lr=0.3)],
        **kwargs)
    theirs = getattr(torch.optim, name)(
        [dict(params=[torch.zeros(2, requires_grad=True)]), dict(params=[torch.zeros(3, requires_grad=True)], lr=0.3)],
        **kwargs)
    return mine, theirs


def group_values(optimizer):
    values = []
    for group in optimizer.param_groups:
        values.append(group["lr"])
        if "momentum" in group:
            values.append(group["momentum"])
        if "betas" in group:
            values.extend(group["betas"])
    return values


CASES = [
    ("StepLR", dict(step_size=3, gamma=0.5), "SGD", dict(lr=0.1)),
    ("MultiStepLR", dict(milestones=[2, 5, 5, 9], gamma=0.3), "SGD", dict(lr=0.1)),
    ("CosineAnnealingLR", dict(T_max=7), "SGD", dict(lr=0.1)),
    ("CosineAnnealingLR", dict(T_max=5, eta_min=0.01), "Adam", dict(lr=0.1)),
    ("OneCycleLR", dict(max_lr=0.5, total_steps=STEPS), "SGD", dict(lr=0.1, momentum=0.9)),
    ("OneCycleLR", dict(max_lr=[0.5, 1.0], epochs=5, steps_per_epoch=5, anneal_strategy="linear"),
     "SGD", dict(lr=0.1, momentum=0.9)),
    ("OneCycleLR", dict(max_lr=0.01, total_steps=STEPS, three_phase=True, pct_start=0.25), "Adam", dict()),
    ("OneCycleLR", dict(max_lr=0.01, total_steps=STEPS, cycle_momentum=False, div_factor=10.0,
                        final_div_factor=100.0), "RMSprop", dict()),
]


def step_both(case, steps):
    name, kwargs, opt_name, opt_kwargs = case
    opt_mc, opt_torch = make_optimizers(opt_name, opt_kwargs)
    sched_mc = getattr(lr_scheduler, name)(opt_mc, **kwargs)
    sched_torch = getattr(torch.optim.lr_scheduler, name)(opt_torch, **kwargs)
    yield sched_mc, sched_torch
    for _ in range(steps):
        opt_mc.step()
        opt_torch.step()
        sched_mc.step()
        sched_torch.step()
        yield sched_mc, sched_torch


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[2]}-{i}" for i, c in enumerate(CASES)])
def test_schedule_matches_torch(case):
    steps = STEPS - 1 if case[0] == "OneCycleLR" else STEPS  # OneCycleLR's schedule ends there
    for sched_mc, sched_torch in step_both(case, steps):
        numpy.testing.assert_allclose(sched_mc.get_last_lr(), sched_torch.get_last_lr(), rtol=1e-13, atol=0)
        numpy.testing.assert_allclose(group_values(sched_mc.optimizer), group_values(sched_torch.optimizer),
                                      rtol=1e-13, atol=0)
    assert sched_mc.last_epoch == sched_torch.last_epoch


def test_schedule_survives_a_state_dict_round_trip():
    """Stop a OneCycle schedule halfway, rebuild optimizer and scheduler
    from their state dicts, finish: the same lrs as an unbroken run."""
    case = CASES[4]
    reference = [s.get_last_lr() for s, _ in step_both(case, STEPS - 1)]
    opt, _ = make_optimizers("SGD", dict(lr=0.1, momentum=0.9))
    sched = lr_scheduler.OneCycleLR(opt, max_lr=0.5, total_steps=STEPS)
    lrs = [sched.get_last_lr()]
    for _ in range(10):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr())
    opt_state, sched_state = opt.state_dict(), sched.state_dict()
    assert "optimizer" not in sched_state

    opt, _ = make_optimizers("SGD", dict(lr=0.1, momentum=0.9))
    opt.load_state_dict(opt_state)
    sched = lr_scheduler.OneCycleLR(opt, max_lr=0.5, total_steps=STEPS, last_epoch=10)
    sched.load_state_dict(sched_state)
    for _ in range(STEPS - 11):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr())
    numpy.testing.assert_allclose(lrs, reference, rtol=1e-13)


def test_multistep_milestones_survive_a_plain_dict():
    opt, _ = make_optimizers("SGD", dict(lr=1.0))
    sched = lr_scheduler.MultiStepLR(opt, milestones=[1, 1, 3], gamma=0.5)
    state = sched.state_dict()
    state["milestones"] = dict(state["milestones"])
    sched.load_state_dict(state)
    sched.step()
    assert sched.get_last_lr() == [0.25, 0.075]


def test_resuming_without_initial_lr_is_refused():
    opt, _ = make_optimizers("SGD", dict(lr=0.1))
    with pytest.raises(KeyError, match="initial_lr"):
        lr_scheduler.StepLR(opt, step_size=2, last_epoch=3)


@pytest.mark.parametrize("make, error, match", [
    (lambda o: lr_scheduler.StepLR(o, step_size=0), ValueError, "step_size"),
    (lambda o: lr_scheduler.MultiStepLR(o, milestones=[1.5]), TypeError, "milestones"),
    (lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=0), ValueError, "T_max"),
    (lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.1), ValueError, "total_steps"),
    (lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=10, pct_start=2.0), ValueError, "pct_start"),
    (lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=10, anneal_strategy="exp"), ValueError,
     "anneal_strategy"),
    (lambda o: lr_scheduler.OneCycleLR(o, max_lr=[0.1], total_steps=10), ValueError, "max_lr"),
    (lambda o: lr_scheduler.StepLR(object(), step_size=1), TypeError, "Optimizer"),
])
def test_bad_arguments_are_refused(make, error, match):
    opt, _ = make_optimizers("SGD", dict(lr=0.1, momentum=0.9))
    with pytest.raises(error, match=match):
        make(opt)


def test_onecycle_refuses_to_step_past_its_end():
    opt, _ = make_optimizers("SGD", dict(lr=0.1, momentum=0.9))
    sched = lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=3)
    for _ in range(3):
        sched.step()
    with pytest.raises(ValueError, match="total_steps=3"):
        sched.step()


@pytest.fixture(autouse=True)
def _quiet_torch():
    # torch warns when lr_scheduler.step() runs before optimizer.step() in
    # the error tests; that ordering is not what they check.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield
