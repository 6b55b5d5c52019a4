"""F.pad with negative amounts: torch crops. constant and circular crop
first and pad what is left; reflect and replicate keep reflecting about
the input's own edges. Forward and backward against torch."""
import numpy
import pytest
import torch

import minicnn as mc
import minicnn.nn.functional as F
from parity import check_parity, gradcheck_inputs

MODES = ["constant", "reflect", "replicate", "circular"]
# (left, right) on a length-5 axis: crop one side, pad the other, crop both.
AMOUNTS = [(-1, 2), (2, -1), (-2, -1), (-1, -1), (3, -2), (-3, 2), (-4, 3), (0, -4)]


def _torch_accepts(mode, amounts, length=5):
    try:
        torch.nn.functional.pad(torch.zeros(1, 1, length), amounts, mode=mode)
        return True
    except RuntimeError:
        return False


CASES = [(m, a) for m in MODES for a in AMOUNTS if _torch_accepts(m, a)]


@pytest.mark.parametrize("mode,amounts", CASES)
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_1d_matches_torch(mode, amounts, dtype):
    x = numpy.random.default_rng(0).standard_normal((2, 3, 5))
    check_parity(lambda t: F.pad(t, amounts, mode=mode), lambda t: torch.nn.functional.pad(t, amounts, mode=mode),
                 [x], dtype=dtype)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("amounts", [(-1, 2, 1, -2), (1, -1, -1, 0), (-1, -1, -1, -1)])
def test_2d_matches_torch_noncontiguous(mode, amounts):
    x = numpy.random.default_rng(1).standard_normal((2, 3, 4, 5))
    check_parity(lambda t: F.pad(t, amounts, mode=mode), lambda t: torch.nn.functional.pad(t, amounts, mode=mode),
                 [x], noncontiguous_inputs=True)


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck(mode):
    x = numpy.random.default_rng(2).standard_normal((1, 2, 4, 5))
    assert mc.gradcheck(lambda t: F.pad(t, (-1, 2, 2, -1), mode=mode), gradcheck_inputs([x]))


def test_double_backward_matches_torch():
    """PadGrad's own backward is pad again: a gradient of a gradient."""
    x = numpy.random.default_rng(3).standard_normal((1, 1, 5))
    for mode in MODES:
        xm = mc.tensor(x, requires_grad=True)
        xt = torch.tensor(x, requires_grad=True)
        g = numpy.random.default_rng(4).standard_normal((1, 1, 6))
        gm = mc.tensor(g, requires_grad=True)
        gt = torch.tensor(g, requires_grad=True)
        F.pad(xm, (-1, 2), mode=mode).backward(gm, create_graph=True)
        (dt,) = torch.autograd.grad([torch.nn.functional.pad(xt, (-1, 2), mode=mode)], [xt], [gt], create_graph=True)
        numpy.testing.assert_allclose(xm.grad.detach().numpy(), dt.detach().numpy(), rtol=1e-12)
        w = numpy.random.default_rng(5).standard_normal(dt.shape)
        xm.grad.backward(mc.tensor(w))
        (ggt,) = torch.autograd.grad([dt], [gt], [torch.tensor(w)])
        numpy.testing.assert_allclose(gm.grad.numpy(), ggt.numpy(), rtol=1e-12)


@pytest.mark.parametrize("mode,amounts", [(m, a) for m in MODES for a in [(-3, -3), (-6, 1), (2, -6), (-5, 0)]
                                          if not _torch_accepts(m, a)])
def test_refused_where_torch_refuses(mode, amounts):
    with pytest.raises(ValueError, match=r"pad: .*input shape \(1, 1, 5\)"):
        F.pad(mc.zeros((1, 1, 5)), amounts, mode=mode)
