"""ReduceLROnPlateau and CosineAnnealingWarmRestarts against
torch.optim.lr_scheduler: the lr of each of two parameter groups after
every step, on the same sequence of metrics / epochs."""
import math
import warnings

import numpy
import pytest
import torch

import minicnn as mc
from minicnn.optim import lr_scheduler


def make_optimizers(lr=0.1, second_lr=0.3):
    mine = mc.optim.SGD([dict(params=[mc.zeros(2, requires_grad=True)]),
                         dict(params=[mc.zeros(3, requires_grad=True)], lr=second_lr)], lr=lr)
    theirs = torch.optim.SGD([dict(params=[torch.zeros(2, requires_grad=True)]),
                              dict(params=[torch.zeros(3, requires_grad=True)], lr=second_lr)], lr=lr)
    return mine, theirs


def lrs(optimizer):
    return [group["lr"] for group in optimizer.param_groups]


# A noisy metric that improves, stalls, gets worse and improves again:
# every branch of the plateau logic is taken.
_R = numpy.random.default_rng(3)
METRICS = list(numpy.concatenate([
    numpy.linspace(1.0, 0.5, 6), numpy.full(8, 0.5) + _R.uniform(0, 1e-5, 8), numpy.linspace(0.5, 0.8, 6),
    numpy.linspace(0.49, 0.2, 5), numpy.full(15, 0.2000001)]))

PLATEAU_CASES = [
    dict(),
    dict(patience=0),
    dict(patience=2, factor=0.5),
    dict(patience=1, cooldown=3, factor=0.5),
    dict(mode="max", patience=2, factor=0.3),
    dict(patience=2, threshold=0.05, threshold_mode="abs"),
    dict(mode="max", patience=1, threshold=0.1, threshold_mode="abs"),
    dict(patience=0, threshold=0.0),
    dict(patience=1, factor=0.1, min_lr=0.001),
    dict(patience=1, factor=0.5, min_lr=[0.02, 0.05]),
    dict(patience=0, factor=0.9999999, eps=1e-8),     # steps of lr below eps are skipped
]


@pytest.mark.parametrize("kwargs", PLATEAU_CASES, ids=[str(k) for k in PLATEAU_CASES])
def test_reduce_lr_on_plateau_matches_torch(kwargs):
    opt_mc, opt_torch = make_optimizers()
    mine = lr_scheduler.ReduceLROnPlateau(opt_mc, **kwargs)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(opt_torch, **kwargs)
    assert lrs(opt_mc) == lrs(opt_torch)
    metrics = METRICS if kwargs.get("mode") != "max" else [-m for m in METRICS]
    changes = 0
    for k, metric in enumerate(metrics):
        before = lrs(opt_mc)
        mine.step(metric)
        theirs.step(metric)
        assert lrs(opt_mc) == lrs(opt_torch), f"step {k}: {lrs(opt_mc)} != torch's {lrs(opt_torch)}"
        assert mine.get_last_lr() == theirs.get_last_lr()
        assert (mine.num_bad_epochs, mine.cooldown_counter, mine.best, mine.last_epoch) == (
            theirs.num_bad_epochs, theirs.cooldown_counter, theirs.best, theirs.last_epoch)
        changes += lrs(opt_mc) != before
    if kwargs.get("eps") is None:
        assert changes > 0          # the sequence does reach a plateau


def test_reduce_lr_on_plateau_takes_a_0d_tensor_and_resumes_from_state_dict():
    opt_mc, opt_torch = make_optimizers()
    mine = lr_scheduler.ReduceLROnPlateau(opt_mc, patience=1, cooldown=1, factor=0.5)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(opt_torch, patience=1, cooldown=1, factor=0.5)
    for metric in METRICS[:10]:
        mine.step(mc.tensor(metric))
        theirs.step(torch.tensor(metric))
    state = mine.state_dict()
    assert "optimizer" not in state
    opt2, _ = make_optimizers()
    for group, lr in zip(opt2.param_groups, lrs(opt_mc)):
        group["lr"] = lr
    resumed = lr_scheduler.ReduceLROnPlateau(opt2)
    resumed.load_state_dict(state)
    for metric in METRICS[10:]:
        resumed.step(metric)
        theirs.step(metric)
        assert lrs(opt2) == lrs(opt_torch)


def test_reduce_lr_on_plateau_bad_arguments():
    opt, _ = make_optimizers()
    with pytest.raises(ValueError, match="factor must be < 1.0"):
        lr_scheduler.ReduceLROnPlateau(opt, factor=1.0)
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
        lr_scheduler.ReduceLROnPlateau(opt, mode="lowest")
    with pytest.raises(ValueError, match="threshold_mode must be 'rel' or 'abs'"):
        lr_scheduler.ReduceLROnPlateau(opt, threshold_mode="relative")
    with pytest.raises(ValueError, match="min_lr has 3 values for 2 parameter groups"):
        lr_scheduler.ReduceLROnPlateau(opt, min_lr=[0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="patience must be a non-negative int"):
        lr_scheduler.ReduceLROnPlateau(opt, patience=-1)
    with pytest.raises(TypeError, match="Optimizer"):
        lr_scheduler.ReduceLROnPlateau(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1))
    scheduler = lr_scheduler.ReduceLROnPlateau(opt)
    with pytest.raises(ValueError):
        scheduler.step("not a number")


WARM_CASES = [dict(T_0=3), dict(T_0=4, T_mult=2), dict(T_0=2, T_mult=3, eta_min=0.01), dict(T_0=1)]


@pytest.mark.parametrize("kwargs", WARM_CASES, ids=[str(k) for k in WARM_CASES])
def test_warm_restarts_match_torch_step_by_step(kwargs):
    opt_mc, opt_torch = make_optimizers()
    mine = lr_scheduler.CosineAnnealingWarmRestarts(opt_mc, **kwargs)
    theirs = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt_torch, **kwargs)
    assert lrs(opt_mc) == lrs(opt_torch)
    restarts = 0
    for k in range(30):
        opt_mc.step()
        opt_torch.step()
        mine.step()
        theirs.step()
        numpy.testing.assert_allclose(lrs(opt_mc), lrs(opt_torch), rtol=1e-15, atol=0, err_msg=f"step {k}")
        assert (mine.T_cur, mine.T_i, mine.last_epoch) == (theirs.T_cur, theirs.T_i, theirs.last_epoch)
        restarts += mine.T_cur == 0
    assert restarts >= 2
    # Independent check of the formula at the last step.
    t_cur, t_i = mine.T_cur, mine.T_i
    eta_min = kwargs.get("eta_min", 0.0)
    expected = eta_min + (0.1 - eta_min) * (1 + math.cos(math.pi * t_cur / t_i)) / 2
    assert lrs(opt_mc)[0] == pytest.approx(expected, rel=1e-14)


@pytest.mark.parametrize("kwargs", WARM_CASES, ids=[str(k) for k in WARM_CASES])
def test_warm_restarts_fractional_epochs_match_torch(kwargs):
    """step(epoch) once per batch with fractional epochs, jumps back and
    forth, then plain step() calls interleaved (torch allows both)."""
    opt_mc, opt_torch = make_optimizers()
    mine = lr_scheduler.CosineAnnealingWarmRestarts(opt_mc, **kwargs)
    theirs = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt_torch, **kwargs)
    iters = 7
    epochs = [e + i / iters for e in range(12) for i in range(iters)] + [3.5, 0.25, 20.0, 0, 13.999]
    for k, epoch in enumerate(epochs):
        mine.step(epoch)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs.step(epoch)
        numpy.testing.assert_allclose(lrs(opt_mc), lrs(opt_torch), rtol=1e-13, atol=1e-16, err_msg=f"epoch {epoch}")
        assert mine.last_epoch == theirs.last_epoch
        if k % 5 == 0:
            mine.step()
            theirs.step()
            numpy.testing.assert_allclose(lrs(opt_mc), lrs(opt_torch), rtol=1e-13, atol=1e-16)


def test_warm_restarts_state_dict_resumes():
    opt_mc, opt_torch = make_optimizers()
    mine = lr_scheduler.CosineAnnealingWarmRestarts(opt_mc, T_0=3, T_mult=2)
    theirs = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt_torch, T_0=3, T_mult=2)
    for _ in range(5):
        mine.step()
        theirs.step()
    state = mine.state_dict()
    opt2, _ = make_optimizers()
    resumed = lr_scheduler.CosineAnnealingWarmRestarts(opt2, T_0=3, T_mult=2)
    resumed.load_state_dict(state)
    for _ in range(12):
        resumed.step()
        theirs.step()
        numpy.testing.assert_allclose(lrs(opt2), lrs(opt_torch), rtol=1e-15)


def test_warm_restarts_bad_arguments():
    opt, _ = make_optimizers()
    with pytest.raises(ValueError, match="T_0 must be a positive int"):
        lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=0)
    with pytest.raises(ValueError, match="T_0 must be a positive int"):
        lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=2.5)
    with pytest.raises(ValueError, match="T_mult must be an int >= 1"):
        lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=2, T_mult=0)
    with pytest.raises(TypeError, match="eta_min must be a number"):
        lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=2, eta_min="0")
    scheduler = lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=2)
    with pytest.raises(ValueError, match="epoch must be a number >= 0"):
        scheduler.step(-1)
