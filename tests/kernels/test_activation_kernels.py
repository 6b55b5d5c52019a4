"""The fused Numba sigmoid, SiLU and ReLU (kernels/cpu/activation.py)
against their NumPy references, on hypothesis-drawn arrays with extreme
values."""
import numpy
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import torch

import minicnn as mc
import minicnn.nn.functional as F
from minicnn.kernels import registry
from parity import check_parity

pytest.importorskip("numba")

# Both sides are float32 (or float64) computations, each within ~3 ulp of
# the exact value (the kernels' exp within 1, then a division and a
# product; 4M float32 draws: sigmoid 2.6 ulp, NumPy's own 3.2), so up to
# 2.8e-7 apart: 1 ulp is 6e-8 to 1.2e-7 of a float32. Below the float32
# normal range (SiLU under -87, where e^x is subnormal) both lose relative
# precision, hence ATOL.
RTOL = {numpy.float32: 4e-7, numpy.float64: 1e-15}
ATOL = {numpy.float32: 1e-37, numpy.float64: 0}


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([numpy.float32, numpy.float64]), st.data())
def test_fused_activations_match_the_reference(dtype, data):
    x = data.draw(hnp.arrays(dtype, hnp.array_shapes(max_dims=4, max_side=6),
                             elements=st.floats(-200, 200, width=32 if dtype == numpy.float32 else 64)
                             | st.sampled_from([0.0, -0.0, numpy.inf, -numpy.inf, numpy.nan])))
    if data.draw(st.booleans()) and x.ndim >= 2:
        x = x.T                       # non-contiguous input
    for name in ("sigmoid", "silu"):
        fast, reference = (registry.implementations(name)[b] for b in ("numba", "numpy"))
        with numpy.errstate(invalid="ignore", over="ignore"):
            mine, expected = fast(x), reference(x)
        assert mine.shape == expected.shape and mine.dtype == expected.dtype
        numpy.testing.assert_allclose(mine, expected, rtol=RTOL[dtype], atol=ATOL[dtype])


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([numpy.float32, numpy.float64]), st.data())
def test_silu_backward_matches_the_reference(dtype, data):
    """SiLU's input gradient in one pass, against the NumPy formula, on
    finite values (large ones included), non-contiguous inputs too."""
    shape = data.draw(hnp.array_shapes(max_dims=4, max_side=6))
    width = 32 if dtype == numpy.float32 else 64
    x = data.draw(hnp.arrays(dtype, shape, elements=st.floats(-90, 90, width=width)))
    gy = data.draw(hnp.arrays(dtype, shape, elements=st.floats(-10, 10, width=width)))
    if data.draw(st.booleans()) and x.ndim >= 2:
        x, gy = x.T, gy.T
    fast, reference = (registry.implementations("silu_backward")[b] for b in ("numba", "numpy"))
    mine, expected = fast(gy, x), reference(gy, x)
    assert mine.shape == expected.shape and mine.dtype == expected.dtype == dtype
    tol = 4e-6 if dtype == numpy.float32 else 1e-13
    numpy.testing.assert_allclose(mine, expected, rtol=tol, atol=tol * numpy.abs(gy).max(initial=0))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([numpy.float32, numpy.float64]), st.data())
def test_relu_clamp_and_their_masked_gradient_match_the_reference(dtype, data):
    shapes = hnp.array_shapes(max_dims=4, max_side=6)
    special = st.sampled_from([0.0, -0.0, numpy.inf, -numpy.inf, numpy.nan])
    x = data.draw(hnp.arrays(dtype, shapes, elements=st.floats(-5, 5, width=32) | special))
    gy = data.draw(hnp.arrays(dtype, x.shape, elements=st.floats(-5, 5, width=32) | special))
    if data.draw(st.booleans()) and x.ndim >= 2:
        x, gy = x.T, gy.T                    # non-contiguous inputs
    relu, relu_reference = (registry.implementations("relu")[b] for b in ("numba", "numpy"))
    (y, mask), (y_ref, mask_ref) = relu(x), relu_reference(x)
    assert y.dtype == x.dtype and mask.dtype == bool
    numpy.testing.assert_array_equal(y, y_ref)            # NaN where x is NaN, in both
    numpy.testing.assert_array_equal(mask, mask_ref)
    masked, masked_reference = (registry.implementations("masked_gradient")[b] for b in ("numba", "numpy"))
    numpy.testing.assert_array_equal(masked(gy, mask), masked_reference(gy, mask))
    # hardtanh / ReLU6: the clamp and its mask, 1 strictly inside (lo, hi)
    clamp, clamp_reference = (registry.implementations("clamp_with_mask")[b] for b in ("numba", "numpy"))
    for lo, hi in ((0.0, 6.0), (-1.0, 1.0), (-2.5, 0.0)):
        (y, mask), (y_ref, mask_ref) = clamp(x, lo, hi), clamp_reference(x, lo, hi)
        assert y.dtype == x.dtype and mask.dtype == bool
        numpy.testing.assert_array_equal(y, y_ref)
        numpy.testing.assert_array_equal(mask, mask_ref)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([numpy.float32, numpy.float64]), st.data())
def test_clamp_and_silu_into_an_output_match_the_reference(dtype, data):
    """The clamp (ReLU without its mask, ReLU6, hardtanh) and the SiLU
    that write into ``out``: a fresh array, or x itself (in place),
    contiguous or not."""
    special = st.sampled_from([0.0, -0.0, numpy.inf, -numpy.inf, numpy.nan])
    x = data.draw(hnp.arrays(dtype, hnp.array_shapes(max_dims=4, max_side=6),
                             elements=st.floats(-50, 50, width=32) | special))
    if data.draw(st.booleans()) and x.ndim >= 2:
        x = x.T
    in_place = data.draw(st.booleans())
    calls = [("clamp_into", lambda f, a, out, lo=lo, hi=hi: f(a, lo, hi, out))
             for lo, hi in ((0, numpy.inf), (0.0, 6.0), (-2.5, 3.0))]
    calls.append(("silu", lambda f, a, out: f(a, out=out)))
    for name, call in calls:
        source = x.copy(order="K")
        out = source if in_place else numpy.empty_like(x)
        fast, reference = (registry.implementations(name)[b] for b in ("numba", "numpy"))
        with numpy.errstate(invalid="ignore", over="ignore"):     # -inf * 0 in SiLU: NaN, as torch
            expected = call(reference, x.copy(), numpy.empty_like(x))
            result = call(fast, source, out)
        assert result is out
        numpy.testing.assert_allclose(out, expected, rtol=RTOL[dtype], atol=ATOL[dtype])


def test_relu_backward_through_the_mask_matches_torch_and_drops_nan_off_it():
    x = mc.tensor([-1.0, 2.0, 0.0, 3.0], requires_grad=True)
    F.relu(x).backward(mc.tensor([numpy.nan, 5.0, numpy.nan, numpy.nan]))
    tx = torch.tensor([-1.0, 2.0, 0.0, 3.0], requires_grad=True)
    torch.nn.functional.relu(tx).backward(torch.tensor([numpy.nan, 5.0, numpy.nan, numpy.nan]))
    numpy.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())        # [0, 5, 0, nan]


def test_blocks_and_threads_cover_every_element(monkeypatch):
    """Arrays cut into several blocks on several threads, with a block
    that ends mid-run."""
    from minicnn.kernels.cpu import activation
    monkeypatch.setattr(activation, "BLOCK", 1000)
    monkeypatch.setattr(activation, "PARALLEL_SIZE", 10)
    monkeypatch.setattr(activation, "thread_count", lambda: 3)
    x = numpy.random.default_rng(0).standard_normal((7, 1001)) * 30
    for name in ("sigmoid", "silu"):
        fast, reference = (registry.implementations(name)[b] for b in ("numba", "numpy"))
        numpy.testing.assert_allclose(fast(x), reference(x), rtol=1e-15, atol=0)


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("name", ["sigmoid", "silu"])
def test_activations_match_torch_with_each_backend(backend, name, dtype):
    x = numpy.random.default_rng(2).standard_normal((4, 5, 6)) * 8
    check_parity(getattr(F, name), getattr(torch.nn.functional, name), [x], dtype=dtype,
                 noncontiguous_inputs=True)


def test_sgd_matches_torch_with_each_backend(backend):
    rng = numpy.random.default_rng(3)
    start, grads = rng.standard_normal((3, 4)).astype(numpy.float32), rng.standard_normal((3, 3, 4))
    mine = mc.tensor(start.copy(), requires_grad=True)
    theirs = torch.tensor(start.copy(), requires_grad=True)
    mc_opt = mc.optim.SGD([mine], lr=0.1, momentum=0.9, weight_decay=1e-2, nesterov=True)
    torch_opt = torch.optim.SGD([theirs], lr=0.1, momentum=0.9, weight_decay=1e-2, nesterov=True)
    for g in grads.astype(numpy.float32):
        mine.grad, theirs.grad = mc.tensor(g.copy()), torch.tensor(g.copy())
        mc_opt.step()
        torch_opt.step()
    numpy.testing.assert_allclose(mine.detach().numpy(), theirs.detach().numpy(), rtol=1e-6, atol=1e-7)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([numpy.float32, numpy.float64]), st.sampled_from([(0.0, numpy.inf), (0.0, 6.0),
                                                                          (-numpy.inf, numpy.inf)]), st.data())
def test_residual_add_and_clamp_in_one_pass_match_the_reference(dtype, bounds, data):
    """A residual add and the ReLU / ReLU6 after it (or the add alone), in
    place, bit for bit as NumPy's add then clip: infinities and NaN too,
    a transposed shortcut (NumPy's fallback) and an array large enough for
    the threads."""
    special = st.sampled_from([0.0, -0.0, numpy.inf, -numpy.inf, numpy.nan])
    y = data.draw(hnp.arrays(dtype, hnp.array_shapes(min_dims=2, max_dims=4, max_side=6),
                             elements=st.floats(-8, 8, width=32) | special))
    r = data.draw(hnp.arrays(dtype, y.shape, elements=st.floats(-8, 8, width=32) | special))
    large = numpy.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).standard_normal((3, 300, 401)).astype(dtype)
    fast, reference = (registry.implementations("add_clamp_into")[b] for b in ("numba", "numpy"))
    for y_in, shortcut in ((y, r), (y, r.T.copy().T), (large, large[:, ::-1].copy())):
        mine, expected = y_in.copy(), y_in.copy()
        with numpy.errstate(invalid="ignore"):            # inf + -inf
            assert fast(mine, shortcut, *bounds) is mine
            reference(expected, shortcut, *bounds)
        numpy.testing.assert_array_equal(mine, expected)
