"""Issue 26, "silent NaNs and wrong answers": each case is a reproducer of
an input where minicnn returned NaN (or accepted what torch refuses), and
checks what torch 2.14 does instead: the same number, or the same refusal
(as a TypeError / ValueError naming the argument)."""
import numpy
import pytest
import torch
import torch.nn.functional as TF

import minicnn as mc
import minicnn.nn.functional as F
from parity import check_parity

R = numpy.random.default_rng(26)


def ints(shape):
    return mc.tensor(numpy.arange(int(numpy.prod(shape)), dtype=numpy.int64).reshape(shape))


# -- dropout of an integer tensor -----------------------------------------

@pytest.mark.parametrize("call", [
    lambda x: F.dropout(x, 0.5),
    lambda x: F.dropout(x.to("bool"), 0.3),
    lambda x: F.dropout2d(x, 0.5),
    lambda x: mc.nn.Dropout(0.2)(x),
], ids=["dropout", "bool", "dropout2d", "module"])
def test_dropout_of_integers_is_a_type_error(call):
    """Was NaN everywhere (the 1 / (1 - p) scale cast to int); torch raises."""
    x = ints((2, 3, 2, 2))
    with pytest.raises(TypeError, match="floating-point.*dtype (int64|bool)"):
        call(x)


@pytest.mark.parametrize("kw", [dict(p=0.5, training=False), dict(p=0.0), dict(p=1.0)], ids=str)
def test_dropout_of_integers_where_torch_computes(kw):
    """Eval, p=0 and p=1 need no scaling: torch returns the integers (or
    zeros), and so does minicnn."""
    x = numpy.arange(6, dtype=numpy.int64).reshape(2, 3)
    expected = TF.dropout(torch.from_numpy(x), **kw).numpy()
    out = F.dropout(mc.tensor(x), **kw)
    assert out.dtype == numpy.int64
    numpy.testing.assert_array_equal(out.numpy(), expected)


# -- batch norm: eps <= 0, and mixed dtypes --------------------------------

@pytest.mark.parametrize("eps", [0, 0.0, -1e-5])
def test_batch_norm_module_refuses_nonpositive_eps_in_training(eps):
    """BatchNorm2d(eps=0) gave NaN on a constant input; torch builds the
    layer but its training forward raises "eps must be positive"."""
    bn = mc.nn.BatchNorm2d(3, eps=eps)
    with pytest.raises(ValueError, match=r"eps must be positive during training, got"):
        bn(mc.ones(2, 3, 2, 2))
    with pytest.raises(ValueError, match=r"eps must be positive during training"):
        torch.nn.BatchNorm2d(3, eps=eps)(torch.ones(2, 3, 2, 2))
    with pytest.raises(ValueError, match=r"eps must be positive during training"):
        F.batch_norm(mc.ones(2, 3, 2, 2), None, None, training=True, eps=eps)
    with pytest.raises(ValueError, match=r"eps must be positive during training"):
        mc.nn.BatchNorm1d(3, eps=eps, track_running_stats=False).eval()(mc.ones(4, 3))


def test_batch_norm_eps_zero_in_eval_is_allowed_as_in_torch():
    x = R.standard_normal((2, 3, 2, 2))
    mean, var = R.standard_normal(3), R.uniform(0.5, 2, 3)
    check_parity(lambda x: F.batch_norm(x, mc.tensor(mean), mc.tensor(var), eps=0.0),
                 lambda x: TF.batch_norm(x, torch.tensor(mean), torch.tensor(var), eps=0.0), [x])


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("name", ["running_mean", "running_var", "weight", "bias"])
def test_batch_norm_mixed_dtypes_are_a_type_error(name, training):
    """float64 input with float32 statistics (or weight) was converted
    silently; torch refuses ("mixed dtype")."""
    kw = dict(running_mean=mc.zeros(3, dtype=mc.float64), running_var=mc.ones(3, dtype=mc.float64),
              weight=mc.ones(3, dtype=mc.float64), bias=mc.zeros(3, dtype=mc.float64))
    kw[name] = kw[name].to(mc.float32)
    x = mc.tensor(R.standard_normal((2, 3, 2, 2)))
    with pytest.raises(TypeError, match=f"input has dtype float64 but {name} has dtype float32"):
        F.batch_norm(x, training=training, **kw)


def test_batch_norm_module_refuses_float64_input():
    bn = mc.nn.BatchNorm2d(3)
    x = R.standard_normal((2, 3, 2, 2))
    with pytest.raises(RuntimeError, match="mixed dtype"):
        torch.nn.BatchNorm2d(3)(torch.from_numpy(x))
    for mode in (bn.train, bn.eval):
        mode()
        with pytest.raises(TypeError, match="input has dtype float64 but running_mean has dtype float32"):
            bn(mc.tensor(x))
    bn.double()(mc.tensor(x))  # converted, it runs


# -- cross_entropy / nll_loss with every target ignored --------------------

def _ignored_cases():
    for reduction in ("mean", "sum", "none"):
        for weighted in (False, True):
            yield reduction, weighted


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # parity helper on nan
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("reduction,weighted", list(_ignored_cases()), ids=str)
@pytest.mark.parametrize("shape", [(3, 4), (2, 4, 3)], ids=str)
def test_cross_entropy_all_targets_ignored(shape, reduction, weighted, label_smoothing, dtype):
    """Loss as torch's (nan for 'mean', 0 otherwise) and a gradient of 0:
    it was nan, and one such batch ruined the weights."""
    x = R.standard_normal(shape)
    target = numpy.full(shape[:1] + shape[2:], -100, dtype=numpy.int64)
    w = R.uniform(0.5, 2, shape[1]) if weighted else None
    args = [x, target] + ([w] if weighted else [])

    def fn(lib):
        def f(x, t, w=None):
            return lib.cross_entropy(x, t, weight=w, reduction=reduction, label_smoothing=label_smoothing)
        return f
    check_parity(fn(F), fn(TF), args, dtype=dtype, constant_inputs=(2,))
    x_mc = mc.tensor(x.astype(dtype), requires_grad=True)
    loss = F.cross_entropy(x_mc, mc.tensor(target), weight=None if w is None else mc.tensor(w.astype(dtype)),
                           reduction=reduction, label_smoothing=label_smoothing)
    loss.sum().backward()
    assert numpy.all(x_mc.grad.numpy() == 0)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_loss_all_targets_ignored(reduction, weighted):
    x = R.standard_normal((4, 3))
    t = numpy.full(4, 2, dtype=numpy.int64)
    args = [x, t] + ([R.uniform(0.5, 2, 3)] if weighted else [])

    def fn(lib):
        return lambda x, t, w=None: lib.nll_loss(x, t, weight=w, ignore_index=2, reduction=reduction)
    check_parity(fn(F), fn(TF), args, constant_inputs=(2,))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("loss,label_smoothing", [("cross_entropy", 0.0), ("cross_entropy", 0.2), ("nll_loss", 0.0)])
def test_zero_total_weight_with_a_target_that_counts(loss, label_smoothing):
    """Class weight 0 on the only targets that are not ignored: torch's
    'mean' is 0 / 0 and the gradient nan on those rows, 0 on the ignored
    one; minicnn gives the same, nan where torch has nan."""
    x = R.standard_normal((3, 4))
    t = numpy.array([0, -100, 0])
    w = numpy.array([0.0, 1, 1, 1])
    kw = dict(label_smoothing=label_smoothing) if loss == "cross_entropy" else {}
    check_parity(lambda x, t, w: getattr(F, loss)(x, t, weight=w, **kw),
                 lambda x, t, w: getattr(TF, loss)(x, t, weight=w, **kw), [x, t, w], constant_inputs=(2,))


# -- std / var of a constant ----------------------------------------------

@pytest.mark.parametrize("fn", ["std", "var"])
@pytest.mark.parametrize("kw", [{}, dict(unbiased=False), dict(correction=0), dict(dim=1),
                                dict(dim=(0, 2), keepdim=True, correction=0), dict(dim=-1, unbiased=True)], ids=str)
def test_std_of_a_constant_has_gradient_zero(fn, kw):
    """std's gradient was gs / (2 std) * (x - mean) = inf * 0 = nan; torch
    masks it to 0 where std == 0."""
    x = numpy.full((2, 3, 4), 1.5)
    x[1] = R.standard_normal((3, 4))  # half constant, half not: both branches
    for dtype in (numpy.float64, numpy.float32):
        check_parity(lambda x: getattr(x, fn)(**kw), lambda x: getattr(x, fn)(**kw), [x], dtype=dtype)


def test_std_gradcheck():
    x = mc.tensor(R.standard_normal((3, 5)), requires_grad=True)
    assert mc.gradcheck(lambda x: x.std(dim=1), (x,))
    assert mc.gradcheck(lambda x: x.std(correction=0), (x,))


# -- set_grad_enabled as a function ---------------------------------------

def test_set_grad_enabled_as_a_function():
    x = mc.ones(2, requires_grad=True)
    try:
        mc.set_grad_enabled(False)
        assert not mc.is_grad_enabled()
        assert not (x * 2).requires_grad
        assert not (x * 2).requires_grad  # still off: until re-enabled
        mc.set_grad_enabled(True)
        assert mc.is_grad_enabled()
        assert (x * 2).requires_grad
    finally:
        mc.set_grad_enabled(True)


# -- lenient where torch refuses ------------------------------------------

@pytest.mark.parametrize("value", [2.5, 2.0, True], ids=repr)
def test_avg_pool2d_divisor_override_must_be_an_int(value):
    with pytest.raises(TypeError, match="divisor_override"):
        TF.avg_pool2d(torch.ones(1, 1, 4, 4), 2, divisor_override=value)
    with pytest.raises(TypeError, match=f"avg_pool2d: divisor_override must be an int, got "
                                        f"{type(value).__name__} {value!r}"):
        F.avg_pool2d(mc.ones(1, 1, 4, 4), 2, divisor_override=value)


@pytest.mark.parametrize("value", [-1, 3, numpy.int64(5)], ids=repr)
def test_avg_pool2d_int_divisor_override_as_torch(value):
    x = R.standard_normal((1, 2, 4, 4))
    check_parity(lambda x: F.avg_pool2d(x, 2, divisor_override=value),
                 lambda x: TF.avg_pool2d(x, 2, divisor_override=int(value)), [x])


def test_linear_refuses_integer_input():
    x = mc.tensor(numpy.ones((2, 3), dtype=numpy.int64))
    with pytest.raises(RuntimeError):
        torch.nn.Linear(3, 2)(torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="linear: input must be a floating-point tensor, got dtype int64"):
        mc.nn.Linear(3, 2)(x)
