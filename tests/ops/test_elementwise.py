"""Elementwise ops against torch: forward, backward, broadcasting, gradcheck."""
import numpy
import pytest
import torch
from hypothesis import given, settings, strategies as st

import minicnn as mc
from parity import case_table_tests, check_parity
from strategies import broadcast_pairs

R = numpy.random.default_rng(7)


def normal(*shape):
    return R.standard_normal(shape)


def positive(*shape):
    return R.uniform(0.5, 2.0, shape)


def away_from_zero(*shape):
    """Values with |x| >= 0.2, so kinks (abs, clamp, max) are not straddled
    by gradcheck's finite differences."""
    x = R.uniform(0.2, 2.0, shape)
    return x * R.choice([-1.0, 1.0], shape)


# name: (minicnn fn, torch fn, inputs)
CASES = {
    "add": (lambda a, b: a + b, lambda a, b: a + b, [normal(3, 4), normal(4)]),
    "radd": (lambda a: 2.5 + a, lambda a: 2.5 + a, [normal(3, 4)]),
    "add_alpha": (lambda a, b: mc.add(a, b, alpha=0.5), lambda a, b: torch.add(a, b, alpha=0.5), [normal(3, 4), normal(3, 1)]),
    "sub": (lambda a, b: a - b, lambda a, b: a - b, [normal(2, 3, 4), normal(3, 1)]),
    "rsub": (lambda a: 1.0 - a, lambda a: 1.0 - a, [normal(5)]),
    "mul": (lambda a, b: a * b, lambda a, b: a * b, [normal(3, 1), normal(1, 4)]),
    "rmul": (lambda a: 3 * a, lambda a: 3 * a, [normal(2, 2)]),
    "div": (lambda a, b: a / b, lambda a, b: a / b, [normal(3, 4), positive(4)]),
    "rdiv": (lambda a: 2.0 / a, lambda a: 2.0 / a, [positive(3, 4)]),
    "neg": (lambda a: -a, lambda a: -a, [normal(3, 4)]),
    "pow_scalar": (lambda a: a ** 3, lambda a: a ** 3, [normal(3, 4)]),
    "pow_half": (lambda a: a ** 0.5, lambda a: a ** 0.5, [positive(3, 4)]),
    "pow_tensor": (lambda a, b: a ** b, lambda a, b: a ** b, [positive(3, 4), normal(4)]),
    "rpow": (lambda a: 2.0 ** a, lambda a: 2.0 ** a, [normal(3, 4)]),
    "exp": (lambda a: a.exp(), lambda a: a.exp(), [normal(3, 4)]),
    "log": (lambda a: a.log(), lambda a: a.log(), [positive(3, 4)]),
    "sqrt": (lambda a: a.sqrt(), lambda a: a.sqrt(), [positive(3, 4)]),
    "abs": (lambda a: a.abs(), lambda a: a.abs(), [away_from_zero(3, 4)]),
    "clamp": (lambda a: a.clamp(-0.5, 0.7), lambda a: a.clamp(-0.5, 0.7), [away_from_zero(4, 5)]),
    "clamp_min": (lambda a: mc.clamp(a, min=0.1), lambda a: torch.clamp(a, min=0.1), [away_from_zero(4, 5)]),
    "maximum": (lambda a, b: mc.maximum(a, b), lambda a, b: torch.maximum(a, b), [normal(3, 4), normal(4)]),
    "minimum": (lambda a, b: mc.minimum(a, b), lambda a, b: torch.minimum(a, b), [normal(3, 4), normal(3, 1)]),
    "where": (lambda a, b: mc.where(a > 0, a, b), lambda a, b: torch.where(a > 0, a, b), [away_from_zero(3, 4), normal(4)]),
    "where_scalar": (lambda a: mc.where(a > 0, a, 0.0), lambda a: torch.where(a > 0, a, 0.0), [away_from_zero(3, 4)]),
}

test_matches_torch, test_matches_torch_noncontiguous, test_gradcheck = case_table_tests(CASES)


def test_maximum_ties_split_the_gradient_like_torch():
    a = numpy.array([1.0, 2.0, 3.0])
    b = numpy.array([1.0, 0.0, 3.0])
    check_parity(lambda x, y: mc.maximum(x, y), lambda x, y: torch.maximum(x, y), [a, b])
    check_parity(lambda x, y: mc.minimum(x, y), lambda x, y: torch.minimum(x, y), [a, b])


def test_pow_tensor_at_zero_base_has_finite_exponent_gradient():
    a = numpy.array([0.0, 1.5, 2.0])
    b = numpy.array([2.0, 1.0, 0.5])
    check_parity(lambda x, y: x ** y, lambda x, y: x ** y, [a, b])


@settings(max_examples=30, deadline=None)
@given(pair=broadcast_pairs(), op=st.sampled_from(["add", "sub", "mul", "div", "maximum"]), seed=st.integers(0, 10**6))
def test_broadcasting_sums_gradients_back_to_each_shape(pair, op, seed):
    rng = numpy.random.default_rng(seed)
    a, b = rng.standard_normal(pair[0]), rng.uniform(0.5, 2.0, pair[1])
    mc_fn = {"add": mc.add, "sub": mc.sub, "mul": mc.mul, "div": mc.div, "maximum": mc.maximum}[op]
    torch_fn = getattr(torch, op)
    check_parity(mc_fn, torch_fn, [a, b])


def test_dtype_promotion_follows_torch():
    f32 = mc.ones(2)
    f64 = mc.ones(2, dtype=mc.float64)
    ints = mc.tensor([1, 2])
    assert (f32 * 2.0).dtype == mc.float32
    assert (f32 + f64).dtype == mc.float64
    assert (ints * 2).dtype == mc.int64
    assert (ints * 2.5).dtype == mc.float32
    assert (ints / 2).dtype == mc.float32


def test_mixed_dtype_gradients_come_back_in_each_inputs_dtype():
    a = mc.ones(3, requires_grad=True)
    b = mc.ones(3, dtype=mc.float64, requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.dtype == mc.float32 and b.grad.dtype == mc.float64


def test_comparisons_give_bool_tensors_without_grad():
    x = mc.tensor([1.0, -2.0, 3.0], requires_grad=True)
    mask = x > 0
    assert mask.dtype == mc.bool and not mask.requires_grad
    assert mask.tolist() == [True, False, True]
    assert (x == 3.0).tolist() == [False, False, True]
    assert (~mask).tolist() == [False, True, False]


def test_broadcast_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(5,\)"):
        mc.ones(3, 4) + mc.ones(5)
    with pytest.raises(ValueError, match=r"where"):
        mc.where(mc.ones(3) > 0, mc.ones(3), mc.ones(4))


def test_where_condition_must_be_bool():
    with pytest.raises(TypeError, match="bool"):
        mc.where(mc.ones(3), mc.ones(3), mc.ones(3))


def test_clamp_needs_a_bound():
    with pytest.raises(ValueError, match="min and max"):
        mc.ones(3).clamp()


def test_unsupported_operand_is_a_type_error():
    with pytest.raises(TypeError, match="expected a Tensor"):
        mc.ones(3) + "a"


@pytest.mark.parametrize("dtype, tol", [(numpy.float64, 1e-12), (numpy.float32, 2e-5)])
@pytest.mark.parametrize("scale_first", [False, True])
@pytest.mark.parametrize("transposed", [False, True])
def test_a_map_times_its_scale_plane_by_plane_matches_torch(dtype, tol, scale_first, transposed, backend):
    """Squeeze-and-excitation's multiply, (N, C, H, W) * (N, C, 1, 1), big
    enough for the plane kernels ("planes_scaled", "planes_dot"): values
    and both gradients torch's, with a random upstream gradient, either
    operand first; a non-contiguous map takes NumPy's broadcast."""
    from minicnn.functional import elementwise
    x = R.standard_normal((3, 5, 40, 33)).astype(dtype)
    s = R.standard_normal((3, 5, 1, 1)).astype(dtype)
    gy = R.standard_normal(x.shape).astype(dtype)
    assert x.size >= elementwise.PLANES_MIN_SIZE
    mx, ms = mc.tensor(x, requires_grad=True), mc.tensor(s, requires_grad=True)
    tx, ts = torch.tensor(x, requires_grad=True), torch.tensor(s, requires_grad=True)
    mine_x, theirs_x = (mx.permute(0, 1, 3, 2), tx.permute(0, 1, 3, 2)) if transposed else (mx, tx)
    mine = ms * mine_x if scale_first else mine_x * ms
    theirs = ts * theirs_x if scale_first else theirs_x * ts
    g = gy.transpose(0, 1, 3, 2) if transposed else gy
    mine.backward(mc.tensor(numpy.ascontiguousarray(g)))
    theirs.backward(torch.tensor(numpy.ascontiguousarray(g)))
    numpy.testing.assert_allclose(mine.detach().numpy(), theirs.detach().numpy(), rtol=tol, atol=tol)
    numpy.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), rtol=tol, atol=tol)
    numpy.testing.assert_allclose(ms.grad.numpy(), ts.grad.numpy(), rtol=tol, atol=tol * 100)


def test_a_map_times_its_scale_passes_gradcheck():
    """In float64, through the plane kernels (double backward takes the
    Tensor products)."""
    from minicnn.functional import elementwise
    x = mc.tensor(R.standard_normal((2, 3, 64, 48)), requires_grad=True)
    s = mc.tensor(R.standard_normal((2, 3, 1, 1)), requires_grad=True)
    assert x.numel() >= elementwise.PLANES_MIN_SIZE
    assert mc.gradcheck(lambda a, b: a * b, (x, s))
