"""The losses added for torch ports against torch: l1, smooth_l1, huber,
binary_cross_entropy, kl_div, pos_weight of binary_cross_entropy_with_logits
(functional forms: every reduction, float64 and float32, non-contiguous,
gradcheck), the loss modules of mc.nn (arguments, buffers, legacy
size_average / reduce), empty and 0-d inputs, and bad arguments."""
import itertools
import warnings

import numpy
import pytest
import torch
import torch.nn.functional as TF

import minicnn as mc
import minicnn.nn.functional as F
from parity import check_parity, gradcheck_inputs

R = numpy.random.default_rng(17)
X = R.standard_normal((4, 5)) * 1.5
Y = R.standard_normal((4, 5)) * 1.5
PROBS = R.uniform(0.02, 0.98, (4, 5))
LABELS = R.uniform(0, 1, (4, 5))
LOGP = numpy.log(R.dirichlet(numpy.ones(5), 4))
Q = R.dirichlet(numpy.ones(5), 4)
X4 = R.standard_normal((2, 3, 2, 2)) * 2
LABELS4 = R.uniform(0, 1, (2, 3, 2, 2))
REDUCTIONS = ["mean", "sum", "none"]


def pair(name, **kwargs):
    """(minicnn fn, torch fn) of the loss ``name`` with keyword args; the
    third positional input, if any, is the weight."""
    def mine(*a):
        return getattr(F, name)(*a[:2], **({"weight": a[2]} if len(a) > 2 else {}), **kwargs)

    def theirs(*a):
        return getattr(TF, name)(*a[:2], **({"weight": a[2]} if len(a) > 2 else {}), **kwargs)
    return mine, theirs


CASES = {}
for red in REDUCTIONS:
    CASES[f"l1_{red}"] = pair("l1_loss", reduction=red) + ([X, Y], ())
    CASES[f"huber_{red}"] = pair("huber_loss", reduction=red) + ([X, Y], ())
    CASES[f"huber_delta0.4_{red}"] = pair("huber_loss", reduction=red, delta=0.4) + ([X, Y], ())
    CASES[f"smooth_l1_{red}"] = pair("smooth_l1_loss", reduction=red) + ([X, Y], ())
    CASES[f"smooth_l1_beta2.5_{red}"] = pair("smooth_l1_loss", reduction=red, beta=2.5) + ([X, Y], ())
    CASES[f"smooth_l1_beta0_{red}"] = pair("smooth_l1_loss", reduction=red, beta=0.0) + ([X, Y], ())
    CASES[f"bce_{red}"] = pair("binary_cross_entropy", reduction=red) + ([PROBS, LABELS], ())
    # torch's binary_cross_entropy has no gradient for weight: constant here.
    CASES[f"bce_weight_{red}"] = pair("binary_cross_entropy", reduction=red) + (
        [PROBS, LABELS, R.uniform(0.5, 2, (5,))], (2,))
    CASES[f"bce_weight_full_{red}"] = pair("binary_cross_entropy", reduction=red) + (
        [PROBS, LABELS, R.uniform(0.5, 2, (4, 5))], (2,))
for red in REDUCTIONS + ["batchmean"]:
    CASES[f"kl_{red}"] = pair("kl_div", reduction=red) + ([LOGP, Q], ())
    CASES[f"kl_log_target_{red}"] = pair("kl_div", reduction=red, log_target=True) + ([LOGP, numpy.log(Q)], ())
    CASES[f"kl_4d_{red}"] = pair("kl_div", reduction=red) + ([X4 - 3, LABELS4 + 0.1], ())
    CASES[f"kl_broadcast_{red}"] = pair("kl_div", reduction=red) + ([LOGP, Q[0]], ())
for red, (pw_shape, w_shape) in itertools.product(REDUCTIONS, [((5,), (5,)), ((1,), (4, 1)), ((4, 5), None)]):
    inputs = [X, LABELS, R.uniform(0.2, 3, pw_shape)] + ([R.uniform(0.5, 2, w_shape)] if w_shape else [])

    def mine(x, t, pw, *w, red=red):
        return F.binary_cross_entropy_with_logits(x, t, weight=w[0] if w else None, pos_weight=pw, reduction=red)

    def theirs(x, t, pw, *w, red=red):
        return TF.binary_cross_entropy_with_logits(x, t, weight=w[0] if w else None, pos_weight=pw, reduction=red)
    # torch's binary_cross_entropy_with_logits has no gradient for the weights.
    CASES[f"bce_logits_pos_weight{pw_shape}_weight{w_shape}_{red}"] = (mine, theirs, inputs, (2, 3))
for red in REDUCTIONS:
    # pos_weight (C, 1, 1) broadcasts over the class dim of (N, C, H, W).
    def mine(x, t, pw, red=red):
        return F.binary_cross_entropy_with_logits(x, t, pos_weight=pw, reduction=red)

    def theirs(x, t, pw, red=red):
        return TF.binary_cross_entropy_with_logits(x, t, pos_weight=pw, reduction=red)
    CASES[f"bce_logits_pos_weight_nchw_{red}"] = (mine, theirs, [X4, LABELS4, R.uniform(0.2, 3, (3, 1, 1))], (2,))
NAMES = sorted(CASES)


def _kl_quiet(fn):
    """torch warns on kl_div(reduction='mean'); the warning is not under test."""
    def run(*a):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return fn(*a)
    return run


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_matches_torch(name, dtype):
    mine, theirs, inputs, constant = CASES[name]
    check_parity(mine, _kl_quiet(theirs), inputs, dtype=dtype, constant_inputs=constant)


@pytest.mark.parametrize("name", NAMES)
def test_noncontiguous(name):
    mine, theirs, inputs, constant = CASES[name]
    check_parity(mine, _kl_quiet(theirs), inputs, noncontiguous_inputs=True, constant_inputs=constant)


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck(name):
    mine, _, inputs, constant = CASES[name]
    requires = [i not in constant for i in range(len(inputs))]
    assert mc.gradcheck(mine, gradcheck_inputs(inputs, requires_grad=requires))


@pytest.mark.parametrize("fn,beta_name", [("huber_loss", "delta"), ("smooth_l1_loss", "beta")])
def test_quadratic_linear_boundary_and_zero_difference(fn, beta_name):
    """Differences exactly 0, at +-delta and on both sides: the pieces and
    their gradients (sign(0) = 0 for l1) must be torch's."""
    x = numpy.array([0.0, 1.0, -1.0, 0.999, 1.001, -3.0, 2.5])
    t = numpy.zeros_like(x)
    for value in (1.0, 0.5):
        check_parity(lambda a, b: getattr(F, fn)(a, b, reduction="none", **{beta_name: value}),
                     lambda a, b: getattr(TF, fn)(a, b, reduction="none", **{beta_name: value}), [x, t])
    check_parity(lambda a, b: F.l1_loss(a, b, reduction="none"), lambda a, b: TF.l1_loss(a, b, reduction="none"),
                 [x, t])


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf - inf, 0 * inf in parity
def test_binary_cross_entropy_at_0_and_1():
    """log is clamped at -100 (finite loss); the input's gradient divides by
    max(x (1 - x), 1e-12) and the target's is log(1 - x) - log(x), as torch."""
    p = numpy.array([0.0, 1.0, 0.0, 1.0, 0.5, 1e-300])
    t = numpy.array([1.0, 0.0, 0.0, 1.0, 0.3, 1.0])
    check_parity(lambda a, b: F.binary_cross_entropy(a, b, reduction="none"),
                 lambda a, b: TF.binary_cross_entropy(a, b, reduction="none"), [p, t])
    check_parity(lambda a, b: F.binary_cross_entropy(a, b), lambda a, b: TF.binary_cross_entropy(a, b), [p, t],
                 dtype=numpy.float32, constant_inputs=(1,))


def test_kl_div_zero_target_counts_as_zero():
    q = Q.copy()
    q[0, 1] = 0.0
    check_parity(lambda a, b: F.kl_div(a, b, reduction="none"), lambda a, b: TF.kl_div(a, b, reduction="none"),
                 [LOGP, q], constant_inputs=(1,))


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
                                  "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(), (0,), (3, 0)])
def test_empty_and_0d_inputs(name, reduction, shape):
    """0-d inputs, and empty ones: 'mean' of nothing is nan, 'sum' 0, as torch."""
    x = R.uniform(0.1, 0.9, shape)
    t = R.uniform(0.1, 0.9, shape)
    check_parity(lambda a, b: getattr(F, name)(a, b, reduction=reduction),
                 _kl_quiet(lambda a, b: getattr(TF, name)(a, b, reduction=reduction)), [x, t])


def test_kl_div_batchmean_of_0d_and_empty():
    for shape in [(), (0, 3)]:
        x, t = R.uniform(-2, -0.1, shape), R.uniform(0.1, 0.9, shape)
        check_parity(lambda a, b: F.kl_div(a, b, reduction="batchmean"),
                     lambda a, b: TF.kl_div(a, b, reduction="batchmean"), [x, t])


def test_bad_arguments():
    x, y = mc.randn(3, 4), mc.randn(3, 4)
    with pytest.raises(ValueError, match=r"l1_loss: input has shape \(3, 4\) but target has shape \(4,\)"):
        F.l1_loss(x, mc.randn(4))
    with pytest.raises(ValueError, match="l1_loss: reduction must be"):
        F.l1_loss(x, y, reduction="batchmean")
    with pytest.raises(ValueError, match="smooth_l1_loss: beta must be a non-negative number, got -1"):
        F.smooth_l1_loss(x, y, beta=-1.0)
    with pytest.raises(ValueError, match="huber_loss: delta must be a positive number, got 0"):
        F.huber_loss(x, y, delta=0.0)
    with pytest.raises(ValueError, match=r"huber_loss: input has shape \(3, 4\) but target has shape \(3, 1\)"):
        F.huber_loss(x, mc.randn(3, 1))
    with pytest.raises(ValueError, match="binary_cross_entropy: all elements of input must be between 0 and 1"):
        F.binary_cross_entropy(x, mc.rand(3, 4))
    with pytest.raises(ValueError, match=r"binary_cross_entropy: input has shape \(3, 4\) but target"):
        F.binary_cross_entropy(mc.rand(3, 4), mc.rand(4))
    with pytest.raises(ValueError, match=r"binary_cross_entropy: weight of shape \(2, 3, 4\) must broadcast"):
        F.binary_cross_entropy(mc.rand(3, 4), mc.rand(3, 4), weight=mc.rand(2, 3, 4))
    with pytest.raises(TypeError, match="binary_cross_entropy: input must be a floating-point tensor"):
        F.binary_cross_entropy(mc.tensor([0, 1]), mc.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"pos_weight has shape \(3,\), input has shape \(3, 4\)"):
        F.binary_cross_entropy_with_logits(x, mc.rand(3, 4), pos_weight=mc.rand(3))
    with pytest.raises(ValueError, match=r"weight has shape \(5,\), input has shape \(3, 4\)"):
        F.binary_cross_entropy_with_logits(x, mc.rand(3, 4), weight=mc.rand(5))
    with pytest.raises(ValueError, match="kl_div: reduction must be 'none', 'mean', 'sum' or 'batchmean'"):
        F.kl_div(x, y, reduction="avg")
    with pytest.raises(ValueError, match=r"kl_div: input has shape \(3, 4\), target has shape \(3,\)"):
        F.kl_div(x, mc.rand(3))
    with pytest.raises(TypeError, match="kl_div: target must be a floating-point tensor"):
        F.kl_div(x, mc.tensor([[1, 0, 0, 0]] * 3))


# The modules: the same numbers as the functional forms, and torch's
# constructor arguments.

MODULES = [
    ("L1Loss", dict(), [X, Y]),
    ("L1Loss", dict(reduction="sum"), [X, Y]),
    ("MSELoss", dict(reduction="none"), [X, Y]),
    ("SmoothL1Loss", dict(beta=0.5), [X, Y]),
    ("HuberLoss", dict(delta=2.0, reduction="sum"), [X, Y]),
    ("BCELoss", dict(), [PROBS, LABELS]),
    ("BCEWithLogitsLoss", dict(reduction="none"), [X, LABELS]),
    ("KLDivLoss", dict(reduction="batchmean"), [LOGP, Q]),
    ("KLDivLoss", dict(reduction="sum", log_target=True), [LOGP, numpy.log(Q)]),
    ("CrossEntropyLoss", dict(label_smoothing=0.2, ignore_index=1), [X, numpy.array([0, 1, 4, 2])]),
    ("NLLLoss", dict(reduction="sum"), [LOGP, numpy.array([0, 1, 4, 2])]),
]


@pytest.mark.parametrize("name,kwargs,inputs", MODULES, ids=[f"{m[0]}{m[1]}" for m in MODULES])
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_modules_match_torch(name, kwargs, inputs, dtype):
    mine, theirs = getattr(mc.nn, name)(**kwargs), getattr(torch.nn, name)(**kwargs)
    assert repr(mine) == repr(theirs)
    check_parity(mine, theirs, inputs, dtype=dtype)


WEIGHTED = [
    ("CrossEntropyLoss", "weight", [X, numpy.array([0, 1, 4, 2])]),
    ("NLLLoss", "weight", [LOGP, numpy.array([0, 1, 4, 2])]),
    ("BCELoss", "weight", [PROBS, LABELS]),
    ("BCEWithLogitsLoss", "weight", [X, LABELS]),
    ("BCEWithLogitsLoss", "pos_weight", [X, LABELS]),
]


@pytest.mark.parametrize("name,argument,inputs", WEIGHTED, ids=[f"{w[0]}-{w[1]}" for w in WEIGHTED])
def test_weights_are_buffers_and_used(name, argument, inputs):
    w = R.uniform(0.5, 2.0, 5)
    mine = getattr(mc.nn, name)(**{argument: mc.tensor(w)})
    theirs = getattr(torch.nn, name)(**{argument: torch.tensor(w)})
    assert sorted(mine.state_dict()) == sorted(theirs.state_dict())
    assert [n for n, _ in mine.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert list(mine.parameters()) == []
    check_parity(mine, theirs, inputs)
    mine32 = mine.to(numpy.float32)
    assert getattr(mine32, argument).dtype == numpy.float32


@pytest.mark.parametrize("size_average,reduce", [(None, False), (False, None), (True, True), (False, True)])
def test_legacy_size_average_and_reduce(size_average, reduce):
    with pytest.warns(UserWarning, match="deprecated"):
        mine = mc.nn.MSELoss(size_average=size_average, reduce=reduce)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = torch.nn.MSELoss(size_average=size_average, reduce=reduce)
    assert mine.reduction == theirs.reduction
    with pytest.warns(UserWarning):
        mine = mc.nn.CrossEntropyLoss(None, size_average, -100, reduce)
    check_parity(mine, theirs_ce(size_average, reduce), [X, numpy.array([0, 1, 4, 2])])


def theirs_ce(size_average, reduce):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.nn.CrossEntropyLoss(None, size_average, -100, reduce)


def test_module_bad_arguments():
    with pytest.raises(ValueError, match=r"L1Loss: reduction must be one of 'none', 'mean', 'sum', got 'avg'"):
        mc.nn.L1Loss(reduction="avg")
    with pytest.raises(ValueError, match="KLDivLoss: reduction must be one of .*'batchmean'"):
        mc.nn.KLDivLoss(reduction="batch")
    with pytest.raises(ValueError, match="MSELoss: reduction"):
        mc.nn.MSELoss(reduction="batchmean")
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        mc.nn.CrossEntropyLoss(label_smoothing=-0.1)
    with pytest.raises(TypeError, match="CrossEntropyLoss: weight must be a Tensor or None, got list"):
        mc.nn.CrossEntropyLoss(weight=[1.0, 2.0])
    with pytest.raises(TypeError, match="BCEWithLogitsLoss: pos_weight must be a Tensor or None"):
        mc.nn.BCEWithLogitsLoss(pos_weight=numpy.ones(3))
    with pytest.raises(ValueError, match="smooth_l1_loss: beta"):
        mc.nn.SmoothL1Loss(beta=-2.0)(mc.randn(2), mc.randn(2))
