"""batch_norm, layer_norm, group_norm and local_response_norm against torch."""
import numpy
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings, strategies as st

import minicnn as mc
import minicnn.nn.functional as F
from parity import check_parity, gradcheck_inputs

R = numpy.random.default_rng(11)


@pytest.fixture(autouse=True)
def _fresh_rng():
    """Reseed R for every test, so a test's data does not depend on which
    tests ran before it (pytest-xdist changes that order)."""
    global R
    R = numpy.random.default_rng(11)

BN_SHAPES = [(4, 3), (3, 2, 5), (2, 3, 4, 5), (1, 2, 3, 3)]  # 2-D, 3-D, 4-D, batch 1


def bn_inputs(shape):
    c = shape[1]
    # Shifted and scaled per channel, so the normalization does something.
    per_channel = (1, c) + (1,) * (len(shape) - 2)
    x = R.standard_normal(shape) * R.uniform(0.5, 3, per_channel) + R.normal(0, 2, per_channel)
    return [x, R.standard_normal(c), R.uniform(0.5, 2, c), R.standard_normal(c), R.standard_normal(c)]


@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", ["both", "weight", "bias", "none"])
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_batch_norm_matches_torch(shape, training, affine, dtype):
    x, rm, rv, w, b = bn_inputs(shape)
    w = w if affine in ("both", "weight") else None
    b = b if affine in ("both", "bias") else None
    for noncontiguous in (False, True):
        check_parity(lambda x, rm, rv, w, b: F.batch_norm(x, rm, rv, w, b, training, 0.1, 1e-5),
                     lambda x, rm, rv, w, b: TF.batch_norm(x, rm, rv, w, b, training, 0.1, 1e-5),
                     [x, rm, rv, w, b], dtype=dtype, constant_inputs=(1, 2), noncontiguous_inputs=noncontiguous)


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 4, 5)], ids=str)
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_gradcheck(shape, training):
    x, rm, rv, w, b = bn_inputs(shape)
    rm_t, rv_t = mc.tensor(rm), mc.tensor(rv)
    mc.gradcheck(lambda x, w, b: F.batch_norm(x, rm_t, rv_t, w, b, training, momentum=0.0),
                 gradcheck_inputs([x, w, b]))
    mc.gradcheck(lambda x: F.batch_norm(x, None, None, training=True), gradcheck_inputs([x]))


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5, 2)], ids=str)
@pytest.mark.parametrize("momentum", [0.1, 0.3, None])
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_batch_norm_running_stats_follow_torch(shape, momentum, dtype):
    """Several training steps, then eval: the running statistics (updated
    in place) and the eval output match torch's BatchNorm layer."""
    c = shape[1]
    layer = (torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d)(c, momentum=momentum).to(
        torch.float64 if dtype == numpy.float64 else torch.float32)
    rm, rv = mc.zeros(c, dtype=dtype), mc.ones(c, dtype=dtype)
    w, b = (mc.tensor(p.detach().numpy().copy()) for p in (layer.weight, layer.bias))
    for step in range(1, 5):
        x = (R.standard_normal(shape) * step + step).astype(dtype)
        y = F.batch_norm(mc.tensor(x), rm, rv, w, b, training=True, momentum=momentum,
                         num_batches_tracked=step)
        expected = layer(torch.from_numpy(x))
        numpy.testing.assert_allclose(y.numpy(), expected.detach().numpy(), rtol=1e-5, atol=1e-5)
    rtol = 1e-12 if dtype == numpy.float64 else 1e-5
    numpy.testing.assert_allclose(rm.numpy(), layer.running_mean.numpy(), rtol=rtol, atol=rtol)
    numpy.testing.assert_allclose(rv.numpy(), layer.running_var.numpy(), rtol=rtol, atol=rtol)
    layer.eval()
    x = R.standard_normal(shape).astype(dtype)
    y = F.batch_norm(mc.tensor(x), rm, rv, w, b, training=False)
    numpy.testing.assert_allclose(y.numpy(), layer(torch.from_numpy(x)).detach().numpy(), rtol=rtol, atol=rtol)


def test_batch_norm_updates_running_stats_under_no_grad_and_not_in_eval():
    x, rm, rv, _, _ = bn_inputs((4, 2, 3, 3))
    rm_t, rv_t = mc.tensor(rm.copy()), mc.tensor(rv.copy())
    with mc.no_grad():
        F.batch_norm(mc.tensor(x), rm_t, rv_t, training=True)
    assert not numpy.allclose(rm_t.numpy(), rm)
    before = rm_t.numpy().copy()
    F.batch_norm(mc.tensor(x), rm_t, rv_t, training=False)
    numpy.testing.assert_array_equal(rm_t.numpy(), before)


def test_batch_norm_has_no_double_backward():
    x = mc.tensor(R.standard_normal((4, 2)), requires_grad=True)
    y = F.batch_norm(x, None, None, training=True)
    with pytest.raises(RuntimeError, match="double backward"):
        y.backward(mc.tensor(R.standard_normal((4, 2))), create_graph=True)


@pytest.mark.parametrize("call,match", [
    (lambda x, v: F.batch_norm(mc.tensor(R.standard_normal(3)), v, v), r"shape \(N, C\).*got shape \(3,\)"),
    (lambda x, v: F.batch_norm(x, mc.zeros(4), v), r"running_mean must have shape \(3,\) .*\(2, 3, 4, 4\), got \(4,\)"),
    (lambda x, v: F.batch_norm(x, v, mc.ones(3, 1)), r"running_var must have shape \(3,\)"),
    (lambda x, v: F.batch_norm(x, v, v, weight=mc.ones(2)), r"weight must have shape \(3,\)"),
    (lambda x, v: F.batch_norm(x, v, v, bias=mc.ones(5)), r"bias must have shape \(3,\)"),
    (lambda x, v: F.batch_norm(x, None, None), r"needed in eval mode"),
    (lambda x, v: F.batch_norm(x, v, None, training=True), r"both running_mean and running_var"),
    (lambda x, v: F.batch_norm(mc.tensor(R.standard_normal((1, 3))), v, v, training=True),
     r"more than 1 value per channel .*\(1, 3\)"),
    (lambda x, v: F.batch_norm(x, v, v, training=True, momentum=None), r"num_batches_tracked"),
])
def test_batch_norm_bad_arguments(call, match):
    x = mc.tensor(R.standard_normal((2, 3, 4, 4)))
    with pytest.raises(ValueError, match=match):
        call(x, mc.zeros(3))


# -- layer_norm / group_norm / local_response_norm ------------------------
# layer_norm and group_norm are composed from a handful of Tensor ops, so
# float32 rounding adds up differently than in torch's fused kernel; the
# input gradient is a near-cancellation (gy - mean(gy) - x̂ mean(gy x̂)), so
# compare it at torch.testing's float32 atol (1e-5) rather than 1e-6.
F32_ATOL = 1e-5


def check_all(mc_fn, torch_fn, inputs, small_inputs=None):
    check_parity(mc_fn, torch_fn, inputs, dtype=numpy.float64)
    check_parity(mc_fn, torch_fn, inputs, dtype=numpy.float32, atol=F32_ATOL)
    check_parity(mc_fn, torch_fn, inputs, dtype=numpy.float64, noncontiguous_inputs=True)
    mc.gradcheck(mc_fn, gradcheck_inputs(inputs if small_inputs is None else small_inputs))


@pytest.mark.parametrize("shape,normalized", [
    ((3, 5), 5), ((2, 3, 4), (4,)), ((2, 3, 4, 5), (3, 4, 5)), ((2, 3, 4, 5), [4, 5])], ids=str)
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm(shape, normalized, affine):
    ns = (normalized,) if isinstance(normalized, int) else tuple(normalized)
    x = R.standard_normal(shape) * 3 + 1
    params = [R.standard_normal(ns), R.standard_normal(ns)] if affine else [None, None]
    check_all(lambda x, w, b: F.layer_norm(x, normalized, w, b, 1e-5),
              lambda x, w, b: TF.layer_norm(x, ns, w, b, 1e-5), [x] + params)


@pytest.mark.parametrize("shape,groups", [
    ((2, 6, 3, 4), 3), ((2, 6, 3, 4), 1), ((2, 6, 3, 4), 6), ((3, 4, 5), 2), ((1, 4, 2, 2), 2), ((4, 8), 2)], ids=str)
@pytest.mark.parametrize("affine", [True, False])
def test_group_norm(shape, groups, affine):
    c = shape[1]
    x = R.standard_normal(shape) * 2 - 1
    params = [R.standard_normal(c), R.standard_normal(c)] if affine else [None, None]
    check_all(lambda x, w, b: F.group_norm(x, groups, w, b, 1e-5),
              lambda x, w, b: TF.group_norm(x, groups, w, b, 1e-5), [x] + params)


@pytest.mark.parametrize("shape", [(2, 5, 3, 4), (2, 7, 6), (1, 3, 2, 2, 2)], ids=str)
@pytest.mark.parametrize("size,alpha,beta,k", [
    (5, 1e-4, 0.75, 1.0), (2, 0.5, 0.75, 1.0), (3, 1.0, 0.5, 2.0), (1, 0.3, 1.5, 0.5), (9, 0.2, 0.75, 1.0)])
def test_local_response_norm(shape, size, alpha, beta, k):
    x = R.standard_normal(shape) * 2
    check_all(lambda x: F.local_response_norm(x, size, alpha, beta, k),
              lambda x: TF.local_response_norm(x, size, alpha, beta, k), [x])


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 3), st.integers(1, 4), st.integers(1, 6),
       st.sampled_from([numpy.float64, numpy.float32]))
def test_group_and_layer_norm_random_shapes(n, groups, per_group, h, size, dtype):
    c = groups * per_group
    # At least 4 elements per group: tinier groups make the gradient a
    # near-total cancellation that float32 cannot resolve.
    x = R.standard_normal((n, c, h, 4))
    w, b = R.standard_normal(c), R.standard_normal(c)
    atol = F32_ATOL if dtype == numpy.float32 else None
    check_parity(lambda x, w, b: F.group_norm(x, groups, w, b), lambda x, w, b: TF.group_norm(x, groups, w, b),
                 [x, w, b], dtype=dtype, atol=atol)
    check_parity(lambda x: F.layer_norm(x, (h, 4)), lambda x: TF.layer_norm(x, (h, 4)), [x], dtype=dtype, atol=atol)
    check_parity(lambda x: F.local_response_norm(x, size), lambda x: TF.local_response_norm(x, size),
                 [x], dtype=dtype)


def test_composed_norms_have_double_backward():
    x = mc.tensor(R.standard_normal((2, 4, 3)), requires_grad=True)
    g = mc.tensor(R.standard_normal((2, 4, 3)), requires_grad=True)

    def grad_of(fn):
        def gx(g):
            x.grad = None
            with mc.enable_grad():
                fn(x).backward(g, create_graph=True)
            out, x.grad = x.grad, None
            return out
        return gx
    mc.gradcheck(grad_of(lambda x: F.group_norm(x, 2)), (g,))
    mc.gradcheck(grad_of(lambda x: F.local_response_norm(x, 3, alpha=0.5)), (g,))


@pytest.mark.parametrize("call,match", [
    (lambda x: F.layer_norm(x, (3, 4)),
     r"normalized_shape \(3, 4\) must be the trailing dims of input shape \(2, 6, 4, 5\)"),
    (lambda x: F.layer_norm(x, (2, 6, 4, 5, 1)), r"normalized_shape"),
    (lambda x: F.layer_norm(x, 5, weight=mc.ones(4)), r"weight must have shape \(5,\)"),
    (lambda x: F.group_norm(x, 4), r"6 channels of input shape \(2, 6, 4, 5\) are not divisible into num_groups=4"),
    (lambda x: F.group_norm(x, 0), r"num_groups=0"),
    (lambda x: F.group_norm(x, 3, bias=mc.ones(3)), r"bias must have shape \(6,\)"),
    (lambda x: F.group_norm(mc.ones(3), 1), r"shape \(N, C, \*\)"),
    (lambda x: F.local_response_norm(mc.ones(2, 3), 2), r"3 or more dims, got shape \(2, 3\)"),
    (lambda x: F.local_response_norm(x, 0), r"size must be a positive int"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call(mc.tensor(R.standard_normal((2, 6, 4, 5))))


def test_integer_input_is_a_type_error():
    x = mc.tensor(numpy.ones((2, 3, 2, 2), dtype=numpy.int64))
    for call in (lambda: F.batch_norm(x, None, None, training=True), lambda: F.layer_norm(x, 2),
                 lambda: F.group_norm(x, 1), lambda: F.local_response_norm(x, 2)):
        with pytest.raises(TypeError, match="dtype int64"):
            call()
