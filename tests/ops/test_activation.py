"""Activations, softmax and dropout against torch."""
import numpy
import pytest
import torch
import torch.nn.functional as TF

import minicnn as mc
import minicnn.nn.functional as F
from parity import check_parity, gradcheck_inputs

R = numpy.random.default_rng(9)


def away_from_kinks(*shape, kinks=(0.0,), scale=4.0):
    """Normal values nudged at least 0.05 away from each kink, so finite
    differences never straddle a point where the derivative jumps."""
    x = R.standard_normal(shape) * scale
    for k in kinks:
        near = numpy.abs(x - k) < 0.05
        x[near] = k + 0.1 * numpy.sign(x[near] - k + 1e-12)
    return x


CASES = {
    "relu": (F.relu, TF.relu, (0.0,)),
    "relu6": (F.relu6, TF.relu6, (0.0, 6.0)),
    "hardtanh": (lambda x: F.hardtanh(x, -2.0, 3.0), lambda x: TF.hardtanh(x, -2.0, 3.0), (-2.0, 3.0)),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), lambda x: TF.leaky_relu(x, 0.2), (0.0,)),
    "leaky_relu_default": (F.leaky_relu, TF.leaky_relu, (0.0,)),
    "elu": (lambda x: F.elu(x, alpha=0.7), lambda x: TF.elu(x, alpha=0.7), (0.0,)),
    "sigmoid": (F.sigmoid, torch.sigmoid, ()),
    "tanh": (F.tanh, torch.tanh, ()),
    "hardsigmoid": (F.hardsigmoid, TF.hardsigmoid, (-3.0, 3.0)),
    "hardswish": (F.hardswish, TF.hardswish, (-3.0, 3.0)),
    "silu": (F.silu, TF.silu, ()),
    "gelu": (F.gelu, TF.gelu, ()),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"), lambda x: TF.gelu(x, approximate="tanh"), ()),
    "softmax": (lambda x: F.softmax(x, dim=1), lambda x: TF.softmax(x, dim=1), ()),
    "softmax_last": (lambda x: F.softmax(x, -1), lambda x: TF.softmax(x, -1), ()),
    "log_softmax": (lambda x: F.log_softmax(x, 1), lambda x: TF.log_softmax(x, 1), ()),
    "log_softmax_dim0": (lambda x: F.log_softmax(x, 0), lambda x: TF.log_softmax(x, 0), ()),
}
NAMES = sorted(CASES)
INPUTS = {name: away_from_kinks(3, 4, 5, kinks=CASES[name][2]) for name in NAMES}


def rtol_for(name, dtype):
    # torch computes hardsigmoid's backward with the float32 constant 1/6
    # even in float64, so it is exact only to float32 precision.
    return 1e-7 if name == "hardsigmoid" and dtype == numpy.float64 else None


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_matches_torch(name, dtype):
    mc_fn, torch_fn, _ = CASES[name]
    check_parity(mc_fn, torch_fn, [INPUTS[name]], dtype=dtype, rtol=rtol_for(name, dtype))


@pytest.mark.parametrize("name", NAMES)
def test_matches_torch_noncontiguous(name):
    mc_fn, torch_fn, _ = CASES[name]
    check_parity(mc_fn, torch_fn, [INPUTS[name]], noncontiguous_inputs=True, rtol=rtol_for(name, numpy.float64))


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck(name):
    mc_fn, _, _ = CASES[name]
    assert mc.gradcheck(mc_fn, gradcheck_inputs([INPUTS[name] / 4]))


@pytest.mark.parametrize("name", ["relu", "relu6", "hardtanh", "hardsigmoid", "hardswish", "leaky_relu", "elu"])
def test_gradient_at_the_kinks_matches_torch(name):
    mc_fn, torch_fn, kinks = CASES[name]
    x = numpy.array(list(kinks) + [k + d for k in kinks for d in (-1e-3, 1e-3)])
    check_parity(mc_fn, torch_fn, [x], rtol=rtol_for(name, numpy.float64))


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "silu", "elu", "softmax", "log_softmax"])
def test_double_backward_matches_torch(name):
    # The gradient's own gradient, with random upstream gradients both
    # times: checks that each backward is itself differentiable, also where
    # it is written with the op's saved output (tanh, sigmoid, softmax).
    mc_fn, torch_fn, _ = CASES[name]
    x, g, h = INPUTS[name], R.standard_normal((3, 4, 5)), R.standard_normal((3, 4, 5))
    t = torch.tensor(x, requires_grad=True)
    (first_t,) = torch.autograd.grad(torch_fn(t), t, torch.tensor(g), create_graph=True)
    (second_t,) = torch.autograd.grad(first_t, t, torch.tensor(h))
    m = mc.tensor(x, requires_grad=True)
    mc_fn(m).backward(mc.tensor(g), create_graph=True)
    first = m.grad
    m.grad = None
    first.backward(mc.tensor(h))
    numpy.testing.assert_allclose(first.detach().numpy(), first_t.detach().numpy(), rtol=1e-12, atol=1e-15)
    numpy.testing.assert_allclose(m.grad.numpy(), second_t.numpy(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_softmax_and_log_softmax_are_stable_for_huge_logits(dtype):
    x = numpy.array([[1000.0, 0.0, -1000.0], [3e4, 3e4 + 1, -5.0]])
    check_parity(lambda t: F.log_softmax(t, 1), lambda t: TF.log_softmax(t, 1), [x], dtype=dtype)
    check_parity(lambda t: F.softmax(t, 1), lambda t: TF.softmax(t, 1), [x], dtype=dtype)
    check_parity(F.sigmoid, torch.sigmoid, [numpy.array([-800.0, 800.0, 0.0])], dtype=dtype)


def test_dropout_scales_survivors_and_is_identity_in_eval():
    mc.manual_seed(0)
    x = mc.ones(2000, requires_grad=True)
    y = F.dropout(x, p=0.25)
    values = set(numpy.unique(y.detach().numpy()).tolist())
    assert values <= {0.0, numpy.float32(1 / 0.75)}
    assert abs((y.detach().numpy() == 0).mean() - 0.25) < 0.04
    y.backward(mc.ones(2000))
    numpy.testing.assert_array_equal(x.grad.numpy(), y.detach().numpy())
    assert F.dropout(x, 0.5, training=False) is x
    assert (F.dropout(x, 1.0).detach().numpy() == 0).all()


def test_dropout_is_repeatable_with_a_seed():
    mc.manual_seed(3)
    a = F.dropout(mc.ones(50)).numpy().copy()
    mc.manual_seed(3)
    b = F.dropout(mc.ones(50)).numpy()
    numpy.testing.assert_array_equal(a, b)


def test_dropout2d_drops_whole_channels():
    mc.manual_seed(1)
    y = F.dropout2d(mc.ones(4, 8, 3, 3), p=0.5).numpy()
    per_channel = y.reshape(4, 8, 9)
    assert ((per_channel == 0).all(-1) | (per_channel == 2).all(-1)).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        F.dropout(mc.ones(3), p=1.5)
    with pytest.raises(ValueError, match="pass dim"):
        F.softmax(mc.ones(3))
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(mc.ones(3), approximate="fast")
    with pytest.raises(TypeError, match="floating-point"):
        F.relu(mc.tensor([1, 2]))
    with pytest.raises(ValueError, match="dropout2d"):
        F.dropout2d(mc.ones(3, 3))


# -- inplace=True -------------------------------------------------------
# (mc function, torch function), each taking (x, inplace).
INPLACE = {
    "relu": (F.relu, TF.relu),
    "relu6": (F.relu6, TF.relu6),
    "hardtanh": (lambda x, i: F.hardtanh(x, -2.0, 3.0, i), lambda x, i: TF.hardtanh(x, -2.0, 3.0, i)),
    "leaky_relu": (lambda x, i: F.leaky_relu(x, 0.2, i), lambda x, i: TF.leaky_relu(x, 0.2, i)),
    "elu": (lambda x, i: F.elu(x, 0.7, i), lambda x, i: TF.elu(x, 0.7, i)),
    "hardsigmoid": (F.hardsigmoid, TF.hardsigmoid),
    "hardswish": (F.hardswish, TF.hardswish),
    "silu": (F.silu, TF.silu),
}


@pytest.mark.parametrize("name", sorted(INPLACE))
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("transposed", [False, True])
def test_inplace_without_a_graph_overwrites_the_input_as_torch_does(name, dtype, transposed, backend):
    mc_fn, torch_fn = INPLACE[name]
    x = R.standard_normal((4, 6, 5)).astype(dtype) * 5
    x[0, 0, :3] = [numpy.nan, numpy.inf, -numpy.inf]
    mine, theirs = mc.tensor(x.copy()), torch.tensor(x.copy())
    if transposed:                                # a non-contiguous view: written through to its base
        mine, theirs = mine.permute(2, 0, 1), theirs.permute(2, 0, 1)
    with mc.no_grad(), numpy.errstate(invalid="ignore"):     # -inf * 0 in hardswish and silu: NaN, as torch
        result = mc_fn(mine, True)
    torch_fn(theirs, True)
    assert result is mine
    tol = dict(rtol=1e-6, atol=1e-7) if dtype == numpy.float32 else dict(rtol=1e-14, atol=1e-16)
    numpy.testing.assert_allclose(mine.numpy(), theirs.numpy(), **tol)
    assert not numpy.array_equal(mine.numpy(), x.transpose(2, 0, 1) if transposed else x, equal_nan=True)


@pytest.mark.parametrize("name", sorted(INPLACE))
def test_inplace_while_recording_overwrites_the_input_with_torchs_gradient(name):
    """While recording, as in torch, the (non-leaf) input is overwritten,
    returned, and moved to the activation's node; values and gradients
    are torch's."""
    mc_fn, torch_fn = INPLACE[name]
    x = away_from_kinks(3, 4, kinks=(-3.0, -2.0, 0.0, 3.0, 6.0))
    gy = R.standard_normal(x.shape)
    mine = mc.tensor(x.copy(), requires_grad=True)
    theirs = torch.tensor(x.copy(), requires_grad=True)
    given = mine * 1
    y = mc_fn(given, True)
    expected = torch_fn(theirs * 1, True)
    assert y is given
    numpy.testing.assert_array_equal(mine.detach().numpy(), x)
    y.backward(mc.tensor(gy))
    expected.backward(torch.tensor(gy))
    numpy.testing.assert_allclose(y.detach().numpy(), expected.detach().numpy(), rtol=1e-14, atol=1e-16)
    numpy.testing.assert_allclose(mine.grad.numpy(), theirs.grad.numpy(), rtol=1e-7 if name == "hardsigmoid" else 1e-14,
                                  atol=1e-16)


@pytest.mark.parametrize("name", ["relu", "relu6", "hardtanh"])
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_inplace_while_recording_computes_over_the_input(name, dtype, backend, monkeypatch):
    """ReLU, ReLU6 and hardtanh in place while recording write their
    output over the input's own array (their backward needs the mask
    alone): no result array to copy in, the values and gradients torch's."""
    from minicnn.functional import inplace
    written = []
    original = inplace._write
    monkeypatch.setattr(inplace, "_write", lambda t, result, op: written.append(result.data is t.data) or
                        original(t, result, op))
    mc_fn, torch_fn = INPLACE[name]
    x = away_from_kinks(5, 7, kinks=(-2.0, 0.0, 3.0, 6.0)).astype(dtype)
    gy = R.standard_normal(x.shape).astype(dtype)
    mine = mc.tensor(x.copy(), requires_grad=True)
    theirs = torch.tensor(x.copy(), requires_grad=True)
    given = mine * 1
    array = given.data
    y = mc_fn(given, True)
    expected = torch_fn(theirs * 1, True)
    assert y is given and y.data is array and written == [True]
    y.backward(mc.tensor(gy))
    expected.backward(torch.tensor(gy))
    numpy.testing.assert_array_equal(y.detach().numpy(), expected.detach().numpy())
    numpy.testing.assert_array_equal(mine.grad.numpy(), theirs.grad.numpy())


def test_inplace_modules_overwrite_their_input_in_eval():
    x = R.standard_normal((2, 3, 4, 4)).astype(numpy.float32)
    for make, torch_make in ((lambda: mc.nn.ReLU(inplace=True), lambda: torch.nn.ReLU(inplace=True)),
                             (lambda: mc.nn.ReLU6(inplace=True), lambda: torch.nn.ReLU6(inplace=True)),
                             (lambda: mc.nn.SiLU(inplace=True), lambda: torch.nn.SiLU(inplace=True)),
                             (lambda: mc.nn.LeakyReLU(0.3, inplace=True), lambda: torch.nn.LeakyReLU(0.3, True))):
        mine, theirs = mc.tensor(x.copy()), torch.tensor(x.copy())
        with mc.no_grad():
            assert make()(mine) is mine
        torch_make()(theirs)
        numpy.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-6)
        kept = mc.tensor(x.copy())                # inplace=False never touches the input
        with mc.no_grad():
            make().__class__()(kept)
        numpy.testing.assert_array_equal(kept.numpy(), x)


@pytest.mark.parametrize("name", ["relu", "relu6", "hardtanh"])
def test_clamps_without_a_graph_match_torch(name, backend):
    """Without a graph ReLU keeps no mask and the clamps run the
    "clamp_into" primitive; NaN and infinities as torch, any layout."""
    mc_fn, torch_fn = INPLACE[name]
    x = R.standard_normal((5, 4, 3)) * 8
    x[0, 0] = [numpy.nan, numpy.inf, -numpy.inf]
    for a in (x, x.transpose(2, 0, 1)):
        with mc.no_grad():
            mine = mc_fn(mc.tensor(a), False)
        numpy.testing.assert_array_equal(mine.numpy(), torch_fn(torch.tensor(a), False).numpy())
