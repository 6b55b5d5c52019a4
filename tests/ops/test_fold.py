"""F.unfold / F.fold and nn.Unfold / nn.Fold against torch: a grid of
geometries, float64 and float32, non-contiguous inputs, gradcheck, the
adjoint relation, double backward, and bad arguments."""
import numpy
import pytest
import torch

import minicnn as mc
import minicnn.nn.functional as F
from minicnn.kernels import registry
from parity import check_parity, gradcheck_inputs

R = numpy.random.default_rng(5)
TF = torch.nn.functional

# name: (image shape (N, C, H, W) or (C, H, W), kwargs)
CASES = {
    "plain": ((2, 3, 5, 6), dict(kernel_size=3)),
    "kernel_pair": ((2, 2, 5, 4), dict(kernel_size=(2, 3))),
    "stride2_overlap": ((1, 2, 7, 7), dict(kernel_size=3, stride=2)),
    "stride_gt_kernel": ((2, 2, 7, 8), dict(kernel_size=2, stride=3)),
    "padding": ((2, 3, 4, 5), dict(kernel_size=3, padding=1)),
    "dilation": ((1, 2, 7, 6), dict(kernel_size=2, dilation=(3, 2))),
    "everything": ((2, 3, 8, 7), dict(kernel_size=(3, 2), dilation=(2, 1), padding=(1, 2), stride=(2, 3))),
    "unbatched": ((3, 5, 4), dict(kernel_size=2, padding=1, stride=2)),
    "kernel_1x1": ((2, 4, 3, 3), dict(kernel_size=1)),
    "single_block": ((1, 2, 3, 4), dict(kernel_size=(3, 4))),
}
NAMES = sorted(CASES)


def fold_inputs(name):
    """A columns array of the shape unfold gives for the case, and the image size."""
    shape, kw = CASES[name]
    L = TF.unfold(torch.zeros(shape), **kw).shape
    return R.standard_normal(tuple(L)), shape[-2:]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_unfold_matches_torch(name, dtype):
    shape, kw = CASES[name]
    check_parity(lambda x: F.unfold(x, **kw), lambda x: TF.unfold(x, **kw), [R.standard_normal(shape)], dtype=dtype)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_fold_matches_torch(name, dtype):
    _, kw = CASES[name]
    cols, size = fold_inputs(name)
    check_parity(lambda c: F.fold(c, size, **kw), lambda c: TF.fold(c, size, **kw), [cols], dtype=dtype)


@pytest.mark.parametrize("name", ["plain", "everything", "unbatched"])
def test_noncontiguous_inputs_match_torch(name):
    shape, kw = CASES[name]
    check_parity(lambda x: F.unfold(x, **kw), lambda x: TF.unfold(x, **kw), [R.standard_normal(shape)],
                 noncontiguous_inputs=True)
    cols, size = fold_inputs(name)
    check_parity(lambda c: F.fold(c, size, **kw), lambda c: TF.fold(c, size, **kw), [cols],
                 noncontiguous_inputs=True)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_every_cpu_backend_matches_torch(backend, monkeypatch):
    # The ops call the registry's primitives: both CPU versions must agree with torch.
    monkeypatch.setattr(registry, "_backend", backend)
    shape, kw = CASES["everything"]
    check_parity(lambda x: F.unfold(x, **kw), lambda x: TF.unfold(x, **kw), [R.standard_normal(shape)])
    cols, size = fold_inputs("everything")
    check_parity(lambda c: F.fold(c, size, **kw), lambda c: TF.fold(c, size, **kw), [cols])


@pytest.mark.parametrize("name", ["everything", "stride2_overlap", "unbatched"])
def test_gradcheck(name):
    shape, kw = CASES[name]
    assert mc.gradcheck(lambda x: F.unfold(x, **kw), gradcheck_inputs([R.standard_normal(shape)]))
    cols, size = fold_inputs(name)
    assert mc.gradcheck(lambda c: F.fold(c, size, **kw), gradcheck_inputs([cols]))


@pytest.mark.parametrize("name", ["everything", "padding"])
def test_fold_is_the_adjoint_of_unfold(name):
    # <unfold(x), c> = <x, fold(c)> for any x and c.
    shape, kw = CASES[name]
    x = R.standard_normal(shape)
    cols, size = fold_inputs(name)
    left = numpy.sum(F.unfold(mc.tensor(x), **kw).numpy() * cols)
    right = numpy.sum(x * F.fold(mc.tensor(cols), size, **kw).numpy())
    assert abs(left - right) <= 1e-12 * max(1.0, abs(left))


def test_double_backward_matches_torch():
    # The gradient of sum(unfold(x)**2) is fold(2 unfold(x)): differentiate
    # it again, with random upstream gradients both times.
    shape, kw = CASES["everything"]
    x = R.standard_normal(shape)
    g = R.standard_normal(TF.unfold(torch.zeros(shape), **kw).shape)
    h = R.standard_normal(shape)
    t = torch.tensor(x, requires_grad=True)
    (first_t,) = torch.autograd.grad(TF.unfold(t, **kw) ** 2, t, torch.tensor(g), create_graph=True)
    (second_t,) = torch.autograd.grad(TF.fold(TF.unfold(first_t, **kw), shape[-2:], **kw), t, torch.tensor(h))
    m = mc.tensor(x, requires_grad=True)
    (F.unfold(m, **kw) ** 2).backward(mc.tensor(g), create_graph=True)
    first = m.grad
    m.grad = None
    F.fold(F.unfold(first, **kw), shape[-2:], **kw).backward(mc.tensor(h))
    numpy.testing.assert_allclose(first.detach().numpy(), first_t.detach().numpy(), rtol=1e-12, atol=1e-14)
    numpy.testing.assert_allclose(m.grad.numpy(), second_t.numpy(), rtol=1e-10, atol=1e-13)


def test_modules_match_torch():
    kw = dict(kernel_size=(3, 2), dilation=(2, 1), padding=(1, 2), stride=(2, 3))
    x = R.standard_normal((2, 3, 8, 7))
    check_parity(lambda x: mc.nn.Unfold(**kw)(x), lambda x: torch.nn.Unfold(**kw)(x), [x])
    cols, size = fold_inputs("everything")
    check_parity(lambda c: mc.nn.Fold(size, **kw)(c), lambda c: torch.nn.Fold(size, **kw)(c), [cols])
    assert repr(mc.nn.Unfold(**kw)) == repr(torch.nn.Unfold(**kw))
    assert repr(mc.nn.Fold(size, **kw)) == repr(torch.nn.Fold(size, **kw))


def test_empty_batch():
    assert F.unfold(mc.zeros(0, 3, 5, 6), 2).shape == (0, 12, 20)
    assert F.fold(mc.zeros(0, 12, 20), (5, 6), 2).shape == (0, 3, 5, 6)


def test_bad_arguments():
    x = mc.zeros(1, 3, 5, 6)
    with pytest.raises(ValueError, match=r"L=19 columns"):
        F.fold(mc.zeros(1, 12, 19), (5, 6), 2)
    with pytest.raises(ValueError, match=r"output_size=\(5, 6\).*4 x 5 = 20"):
        F.fold(mc.zeros(1, 12, 19), (5, 6), 2)
    with pytest.raises(ValueError, match=r"13 rows.*multiple of KH \* KW = 4"):
        F.fold(mc.zeros(1, 13, 20), (5, 6), 2)
    with pytest.raises(ValueError, match="kernel_size"):
        F.fold(mc.zeros(1, 12, 20), (2, 2), 3)
    with pytest.raises(ValueError, match="output_size"):
        F.fold(mc.zeros(1, 12, 20), (0, 6), 2)
    with pytest.raises(ValueError, match=r"fold: input must be 3-D.*\(12,\)"):
        F.fold(mc.zeros(12), (5, 6), 2)
    with pytest.raises(ValueError, match=r"unfold: input of shape \(1, 3, 5, 6\).*grid of \(-1, 0\)"):
        F.unfold(x, 7)
    with pytest.raises(ValueError, match=r"unfold: input must be 4-D.*\(3, 5\)"):
        F.unfold(mc.zeros(3, 5), 2)
    with pytest.raises(ValueError, match=r"non-empty.*\(1, 0, 5, 6\)"):
        F.unfold(mc.zeros(1, 0, 5, 6), 2)
    with pytest.raises(ValueError, match="stride"):
        F.unfold(x, 2, stride=0)
    with pytest.raises(ValueError, match="dilation"):
        F.unfold(x, 2, dilation=0)
    with pytest.raises(ValueError, match="padding"):
        F.unfold(x, 2, padding=-1)
    with pytest.raises(ValueError, match="kernel_size"):
        F.unfold(x, (2, 2, 2))
    with pytest.raises(TypeError, match="kernel_size"):
        F.unfold(x, 2.5)
    with pytest.raises(TypeError, match="floating-point"):
        F.unfold(mc.tensor(numpy.zeros((1, 3, 5, 6), dtype=numpy.int64)), 2)
