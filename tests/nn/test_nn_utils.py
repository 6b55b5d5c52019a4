"""mc.nn.utils against torch.nn.utils: clip_grad_norm_ (every norm type,
the returned total norm, grads only shrunk, error_if_nonfinite),
get_total_norm / clip_grads_with_norm_, clip_grad_value_,
parameters_to_vector / vector_to_parameters."""
import math

import numpy
import pytest
import torch

import minicnn as mc
from parity import assert_close

R = numpy.random.default_rng(5)
SHAPES = [(3, 4), (5,), (2, 1, 3), ()]


def make_params(dtype, scale=1.0, shapes=SHAPES, with_none=True):
    """The same parameters with the same gradients in both frameworks; the
    last one has no gradient when ``with_none``."""
    mine, theirs = [], []
    for k, shape in enumerate(shapes):
        value = R.standard_normal(shape).astype(dtype)
        grad = (R.standard_normal(shape) * scale).astype(dtype)
        p_mc, p_torch = mc.tensor(value, requires_grad=True), torch.tensor(value, requires_grad=True)
        if not (with_none and k == len(shapes) - 1):
            p_mc.grad = mc.tensor(grad.copy())
            p_torch.grad = torch.tensor(grad.copy())
        mine.append(p_mc)
        theirs.append(p_torch)
    return mine, theirs


def assert_grads_equal(mine, theirs, rtol, atol=0.0):
    for p_mc, p_torch in zip(mine, theirs):
        assert (p_mc.grad is None) == (p_torch.grad is None)
        if p_mc.grad is not None:
            assert p_mc.grad.dtype == p_torch.grad.numpy().dtype
            assert_close(p_mc.grad.numpy_copy(), p_torch.grad.numpy(), rtol, atol, "grad")


@pytest.mark.parametrize("norm_type", [2.0, 1, 3.5, math.inf, "inf", -math.inf, 0.0])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_clip_grad_norm_matches_torch(norm_type, max_norm, dtype):
    mine, theirs = make_params(dtype, scale=2.0)
    before = [p.grad.numpy_copy() for p in mine if p.grad is not None]
    total_mc = mc.nn.utils.clip_grad_norm_(mine, max_norm, norm_type=norm_type)
    total_torch = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)
    assert isinstance(total_mc, mc.Tensor) and total_mc.shape == ()
    assert total_mc.dtype == total_torch.numpy().dtype
    rtol = 1e-12 if dtype == numpy.float64 else 1e-5
    assert_close(total_mc.numpy_copy(), total_torch.numpy(), rtol, 0.0, "total norm")
    assert_grads_equal(mine, theirs, rtol)
    if norm_type == 0.0:
        return                      # the "norm" of the per-tensor counts: torch's definition, checked above
    # Independent of torch: the norm of the concatenation; shrunk only.
    flat = numpy.concatenate([g.reshape(-1).astype(numpy.float64) for g in before])
    expected = numpy.linalg.norm(flat, ord=float(norm_type))
    assert float(total_mc.item()) == pytest.approx(expected, rel=1e-5)
    if expected > max_norm:
        after = numpy.concatenate([p.grad.numpy_copy().reshape(-1) for p in mine if p.grad is not None])
        assert numpy.linalg.norm(after.astype(numpy.float64), ord=float(norm_type)) == pytest.approx(
            max_norm, rel=1e-4)
    elif expected <= max_norm:
        for g, p in zip(before, [p for p in mine if p.grad is not None]):
            numpy.testing.assert_array_equal(p.grad.numpy_copy(), g)


def test_clip_grad_norm_single_tensor_generator_and_no_grads():
    mine, theirs = make_params(numpy.float64, scale=3.0)
    total_mc = mc.nn.utils.clip_grad_norm_(mine[0], 1.0)
    total_torch = torch.nn.utils.clip_grad_norm_(theirs[0], 1.0)
    assert_close(total_mc.numpy_copy(), total_torch.numpy(), 1e-12, 0.0, "total norm")
    total_mc = mc.nn.utils.clip_grad_norm_((p for p in mine), 0.1)
    total_torch = torch.nn.utils.clip_grad_norm_((p for p in theirs), 0.1)
    assert_close(total_mc.numpy_copy(), total_torch.numpy(), 1e-12, 0.0, "total norm")
    assert_grads_equal(mine, theirs, 1e-12)
    empty = mc.nn.utils.clip_grad_norm_([mc.zeros(3, requires_grad=True)], 1.0)
    assert empty.item() == 0.0 and empty.dtype == torch.nn.utils.clip_grad_norm_(
        [torch.zeros(3, requires_grad=True)], 1.0).numpy().dtype
    assert mc.nn.utils.clip_grad_norm_([], 1.0).item() == 0.0


def test_clip_grad_norm_on_a_model_after_backward():
    torch.manual_seed(0)
    theirs = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2)).double()
    mine = mc.nn.Sequential(mc.nn.Linear(4, 3), mc.nn.ReLU(), mc.nn.Linear(3, 2)).double()
    mine.load_state_dict(theirs.state_dict())
    x = R.standard_normal((5, 4)) * 10
    (mine(mc.tensor(x)) ** 2).sum().backward()
    (theirs(torch.tensor(x)) ** 2).sum().backward()
    total_mc = mc.nn.utils.clip_grad_norm_(mine.parameters(), 2.0)
    total_torch = torch.nn.utils.clip_grad_norm_(theirs.parameters(), 2.0)
    assert total_mc.item() > 2.0
    assert_close(total_mc.numpy_copy(), total_torch.numpy(), 1e-12, 0.0, "total norm")
    assert_grads_equal(list(mine.parameters()), list(theirs.parameters()), 1e-12)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf - inf, 0 * inf in parity
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_clip_grad_norm_nonfinite(bad):
    mine, theirs = make_params(numpy.float64)
    mine[0].grad.data[0, 0] = bad
    theirs[0].grad[0, 0] = bad
    with pytest.raises(RuntimeError, match="non-finite"):
        mc.nn.utils.clip_grad_norm_(mine, 1.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError, match="non-finite"):
        torch.nn.utils.clip_grad_norm_(theirs, 1.0, error_if_nonfinite=True)
    total_mc = mc.nn.utils.clip_grad_norm_(mine, 1.0)
    total_torch = torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    assert_close(total_mc.numpy_copy(), total_torch.numpy(), 0.0, 0.0, "total norm")
    assert_grads_equal(mine, theirs, 0.0)


def test_get_total_norm_and_clip_grads_with_norm():
    mine, theirs = make_params(numpy.float32, scale=2.0)
    grads_mc = [p.grad for p in mine if p.grad is not None]
    grads_torch = [p.grad for p in theirs if p.grad is not None]
    total_mc = mc.nn.utils.get_total_norm(grads_mc, 3.0)
    total_torch = torch.nn.utils.get_total_norm(grads_torch, 3.0)
    assert_close(total_mc.numpy_copy(), total_torch.numpy(), 1e-6, 0.0, "total norm")
    mc.nn.utils.clip_grads_with_norm_(mine, 0.3, total_mc)
    torch.nn.utils.clip_grads_with_norm_(theirs, 0.3, total_torch)
    assert_grads_equal(mine, theirs, 1e-6)


@pytest.mark.parametrize("clip_value", [0.5, 3, 0.0])
def test_clip_grad_value_matches_torch(clip_value):
    mine, theirs = make_params(numpy.float64, scale=2.0)
    mine[1].grad.data[0] = math.nan
    theirs[1].grad[0] = math.nan
    assert mc.nn.utils.clip_grad_value_(mine, clip_value) is None
    torch.nn.utils.clip_grad_value_(theirs, clip_value)
    assert_grads_equal(mine, theirs, 0.0)
    for p in mine[:-1]:
        finite = p.grad.numpy_copy()[~numpy.isnan(p.grad.numpy_copy())]
        assert numpy.all(numpy.abs(finite) <= clip_value)


def test_clip_bad_arguments():
    mine, _ = make_params(numpy.float64)
    with pytest.raises(TypeError, match="clip_grad_norm_: parameters must be a Tensor or an iterable"):
        mc.nn.utils.clip_grad_norm_(3, 1.0)
    with pytest.raises(TypeError, match="clip_grad_norm_: parameters must hold Tensors, got a ndarray"):
        mc.nn.utils.clip_grad_norm_([numpy.ones(3)], 1.0)
    with pytest.raises(TypeError, match="norm_type must be a number or 'inf'"):
        mc.nn.utils.clip_grad_norm_(mine, 1.0, norm_type="euclid")
    with pytest.raises(TypeError, match="clip_grads_with_norm_: max_norm must be a number"):
        mc.nn.utils.clip_grad_norm_(mine, "1")
    with pytest.raises(TypeError, match="clip_grad_value_: clip_value must be a number"):
        mc.nn.utils.clip_grad_value_(mine, None)


def test_parameters_to_vector_and_back_match_torch():
    mine, theirs = make_params(numpy.float64, with_none=False)
    v_mc = mc.nn.utils.parameters_to_vector(mine)
    v_torch = torch.nn.utils.parameters_to_vector(theirs)
    assert_close(v_mc.numpy_copy(), v_torch.detach().numpy(), 0.0, 0.0, "vector")
    # Differentiable: a random upstream gradient reaches every parameter.
    g = R.standard_normal(v_mc.shape)
    for p in mine:
        p.grad = None
    v_mc.backward(mc.tensor(g))
    start = 0
    for p in mine:
        n = p.numel()
        numpy.testing.assert_array_equal(p.grad.numpy_copy(), g[start:start + n].reshape(p.shape))
        start += n

    new = R.standard_normal(v_mc.shape)
    mc.nn.utils.vector_to_parameters(mc.tensor(new), mine)
    torch.nn.utils.vector_to_parameters(torch.tensor(new), theirs)
    for p_mc, p_torch in zip(mine, theirs):
        assert p_mc.shape == tuple(p_torch.shape)
        numpy.testing.assert_array_equal(p_mc.numpy_copy(), p_torch.detach().numpy())


def test_vector_to_parameters_on_a_module_and_bad_arguments():
    model = mc.nn.Linear(3, 2)
    vector = mc.nn.utils.parameters_to_vector(model.parameters()).detach()
    assert vector.shape == (8,)
    mc.nn.utils.vector_to_parameters(vector * 2, model.parameters())
    numpy.testing.assert_array_equal(mc.nn.utils.parameters_to_vector(model.parameters()).numpy_copy(),
                                     vector.numpy_copy() * 2)
    with pytest.raises(TypeError, match="vector_to_parameters: vec must be a Tensor, got ndarray"):
        mc.nn.utils.vector_to_parameters(numpy.zeros(8), model.parameters())
    with pytest.raises(ValueError, match="vec has 7 elements, the parameters 8"):
        mc.nn.utils.vector_to_parameters(mc.zeros(7), model.parameters())
    with pytest.raises(ValueError, match=r"vec must be 1-D, got shape \(2, 4\)"):
        mc.nn.utils.vector_to_parameters(mc.zeros(2, 4), model.parameters())
    with pytest.raises(ValueError, match="parameters is empty"):
        mc.nn.utils.parameters_to_vector([])
