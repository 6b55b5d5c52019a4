"""Losses against torch: cross_entropy (indices, probabilities, weights,
ignore_index, label_smoothing, reductions, k-dim), nll_loss, mse_loss,
binary_cross_entropy_with_logits."""
import itertools

import numpy
import pytest
import torch.nn.functional as TF

import minicnn as mc
import minicnn.nn.functional as F
from parity import check_parity, gradcheck_inputs

R = numpy.random.default_rng(21)
LOGITS = R.standard_normal((6, 5)) * 2
TARGET = numpy.array([0, 4, 2, 2, 1, 3])
TARGET_IGNORED = numpy.array([0, -100, 2, 2, -100, 3])
WEIGHT = R.uniform(0.5, 2.0, 5)
LOGITS_2D = R.standard_normal((2, 4, 3, 2))
TARGET_2D = R.integers(0, 4, (2, 3, 2))


def ce(reduction, label_smoothing, weighted, ignore):
    target = TARGET_IGNORED if ignore else TARGET
    weight = WEIGHT if weighted else None

    def mine(x, t, *w):
        return F.cross_entropy(x, t, weight=w[0] if w else None, reduction=reduction, label_smoothing=label_smoothing)

    def theirs(x, t, *w):
        return TF.cross_entropy(x, t, weight=w[0] if w else None, reduction=reduction, label_smoothing=label_smoothing)

    inputs = [LOGITS, target] + ([weight] if weighted else [])
    return mine, theirs, inputs


CE_GRID = list(itertools.product(["mean", "sum", "none"], [0.0, 0.15], [False, True], [False, True]))


@pytest.mark.parametrize("reduction,label_smoothing,weighted,ignore", CE_GRID)
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_cross_entropy_grid(reduction, label_smoothing, weighted, ignore, dtype):
    mine, theirs, inputs = ce(reduction, label_smoothing, weighted, ignore)
    check_parity(mine, theirs, inputs, dtype=dtype, constant_inputs=(2,))


@pytest.mark.parametrize("reduction,label_smoothing,weighted,ignore", CE_GRID[::3])
def test_cross_entropy_gradcheck(reduction, label_smoothing, weighted, ignore):
    mine, _, inputs = ce(reduction, label_smoothing, weighted, ignore)
    args = gradcheck_inputs(inputs, requires_grad=[True, False, False])
    assert mc.gradcheck(mine, args)


OTHER = {
    "ce_probabilities": (lambda x, p: F.cross_entropy(x, p.softmax(1)),
                         lambda x, p: TF.cross_entropy(x, p.softmax(1)), [LOGITS, R.standard_normal((6, 5))]),
    "ce_probabilities_smoothed_weighted": (
        lambda x, p, w: F.cross_entropy(x, p.softmax(1), weight=w, label_smoothing=0.1, reduction="sum"),
        lambda x, p, w: TF.cross_entropy(x, p.softmax(1), weight=w, label_smoothing=0.1, reduction="sum"),
        [LOGITS, R.standard_normal((6, 5)), WEIGHT], (2,)),
    "ce_spatial": (lambda x, t: F.cross_entropy(x, t, label_smoothing=0.1),
                   lambda x, t: TF.cross_entropy(x, t, label_smoothing=0.1), [LOGITS_2D, TARGET_2D]),
    "ce_unbatched": (lambda x, t: F.cross_entropy(x, t), lambda x, t: TF.cross_entropy(x, t),
                     [LOGITS[0], numpy.array(3)]),
    "nll_mean": (lambda x, t: F.nll_loss(x.log_softmax(1), t), lambda x, t: TF.nll_loss(x.log_softmax(1), t),
                 [LOGITS, TARGET]),
    "nll_weighted_ignored": (lambda x, t, w: F.nll_loss(x, t, weight=w, ignore_index=2),
                             lambda x, t, w: TF.nll_loss(x, t, weight=w, ignore_index=2), [LOGITS, TARGET, WEIGHT], (2,)),
    "nll_none_spatial": (lambda x, t: F.nll_loss(x, t, reduction="none"),
                         lambda x, t: TF.nll_loss(x, t, reduction="none"), [LOGITS_2D, TARGET_2D]),
    "mse_mean": (F.mse_loss, TF.mse_loss, [LOGITS, LOGITS * 0.5 + 0.1]),
    "mse_sum": (lambda a, b: F.mse_loss(a, b, reduction="sum"), lambda a, b: TF.mse_loss(a, b, reduction="sum"),
                [LOGITS, R.standard_normal((6, 5))]),
    "mse_none": (lambda a, b: F.mse_loss(a, b, reduction="none"), lambda a, b: TF.mse_loss(a, b, reduction="none"),
                 [LOGITS, R.standard_normal((6, 5))]),
    "bce": (F.binary_cross_entropy_with_logits, TF.binary_cross_entropy_with_logits,
            [LOGITS * 5, R.uniform(0, 1, (6, 5))]),
    "bce_weights": (lambda x, t, w, pw: F.binary_cross_entropy_with_logits(x, t, weight=w, pos_weight=pw, reduction="sum"),
                    lambda x, t, w, pw: TF.binary_cross_entropy_with_logits(x, t, weight=w, pos_weight=pw, reduction="sum"),
                    [LOGITS, R.uniform(0, 1, (6, 5)), R.uniform(0, 1, (6, 1)), WEIGHT], (2, 3)),
    "bce_none_huge_logits": (lambda x, t: F.binary_cross_entropy_with_logits(x, t, reduction="none"),
                             lambda x, t: TF.binary_cross_entropy_with_logits(x, t, reduction="none"),
                             [numpy.array([-500.0, -30.0, 0.0, 30.0, 500.0]), numpy.array([1.0, 0.0, 0.5, 1.0, 0.0])]),
}
OTHER_NAMES = sorted(OTHER)


@pytest.mark.parametrize("name", OTHER_NAMES)
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_other_losses_match_torch(name, dtype):
    mine, theirs, inputs, *constant = OTHER[name]
    check_parity(mine, theirs, inputs, dtype=dtype, constant_inputs=constant[0] if constant else ())


@pytest.mark.parametrize("name", OTHER_NAMES)
def test_other_losses_noncontiguous(name):
    mine, theirs, inputs, *constant = OTHER[name]
    check_parity(mine, theirs, inputs, noncontiguous_inputs=True, constant_inputs=constant[0] if constant else ())


@pytest.mark.parametrize("name", OTHER_NAMES)
def test_other_losses_gradcheck(name):
    mine, _, inputs, *constant = OTHER[name]
    requires = [i not in (constant[0] if constant else ()) for i in range(len(inputs))]
    assert mc.gradcheck(mine, gradcheck_inputs(inputs, requires_grad=requires))


def test_cross_entropy_is_stable_for_large_logits():
    x = numpy.array([[1e4, 0.0, -1e4], [0.0, 5e3, 0.0]])
    check_parity(lambda a, t: F.cross_entropy(a, t), lambda a, t: TF.cross_entropy(a, t), [x, numpy.array([2, 1])])


def test_bad_targets_and_arguments():
    x = mc.randn(4, 3)
    with pytest.raises(ValueError, match=r"target values must be in \[0, 3\)"):
        F.cross_entropy(x, mc.tensor([0, 1, 3, 0]))
    with pytest.raises(ValueError, match=r"needs a target of shape \(4,\), got \(5,\)"):
        F.cross_entropy(x, mc.tensor([0, 1, 2, 0, 1]))
    with pytest.raises(TypeError, match="class indices"):
        F.nll_loss(x, mc.tensor([0.0, 1.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(x, mc.tensor([0, 1, 2, 0]), reduction="avg")
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\)"):
        F.cross_entropy(x, mc.tensor([0, 1, 2, 0]), weight=mc.ones(4))
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(x, mc.tensor([0, 1, 2, 0]), label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"input has shape \(4, 3\) but target has shape \(4,\)"):
        F.mse_loss(x, mc.randn(4))
    with pytest.raises(ValueError, match="binary_cross_entropy_with_logits"):
        F.binary_cross_entropy_with_logits(x, mc.randn(3))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_double_backward_matches_torch(reduction):
    """Class-index cross-entropy is one op with its own backward
    (SoftmaxCrossEntropy): with create_graph=True its gradient must be
    differentiable again, weights and ignored targets included."""
    import torch
    g = R.standard_normal(6) if reduction == "none" else R.standard_normal(())
    h = R.standard_normal(LOGITS.shape)
    mine = mc.tensor(LOGITS, requires_grad=True)
    theirs = torch.tensor(LOGITS, requires_grad=True)
    kwargs = dict(weight=WEIGHT, reduction=reduction)
    F.cross_entropy(mine, mc.tensor(TARGET_IGNORED), **{**kwargs, "weight": mc.tensor(WEIGHT)}).backward(
        mc.tensor(g), create_graph=True)
    loss = TF.cross_entropy(theirs, torch.tensor(TARGET_IGNORED), **{**kwargs, "weight": torch.tensor(WEIGHT)})
    (first,) = torch.autograd.grad(loss, theirs, torch.tensor(g), create_graph=True)
    numpy.testing.assert_allclose(mine.grad.detach().numpy(), first.detach().numpy(), rtol=1e-12, atol=1e-15)
    gx = mine.grad
    mine.grad = None
    (gx * mc.tensor(h)).sum().backward()
    (second,) = torch.autograd.grad((first * torch.tensor(h)).sum(), theirs)
    numpy.testing.assert_allclose(mine.grad.numpy(), second.numpy(), rtol=1e-10, atol=1e-14)
