"""mc.gradcheck: passes correct backward formulas, catches wrong ones."""
import re

import numpy
import pytest

import minicnn as mc
from minicnn.autograd import Function


class Reversed(Function):
    """Identity forward whose backward reverses the gradient: right only for
    an upstream gradient that is the same everywhere (such as ones)."""

    def forward(self, x):
        return x.copy()

    def backward(self, gy):
        return gy.data[::-1].copy()


class Doubled(Function):
    """y = x^2 with a backward that is off by a factor (4x instead of 2x)."""

    def forward(self, x):
        self.save_for_backward(x)
        return x * x

    def backward(self, gy):
        (x,) = self.saved_tensors
        return gy * 4 * x


def test_correct_ops_pass():
    x = mc.randn(3, 4, dtype=mc.float64, requires_grad=True)
    w = mc.randn(5, 4, dtype=mc.float64, requires_grad=True)
    assert mc.gradcheck(lambda x, w: (x @ w.T).tanh().softmax(1), (x, w))


def test_a_wrong_backward_is_reported_with_index_and_values():
    x = mc.tensor([0.5, -1.0, 2.0], dtype=mc.float64, requires_grad=True)
    with pytest.raises(mc.GradcheckError) as info:
        mc.gradcheck(lambda t: Doubled.apply(t), (x,))
    message = str(info.value)
    assert "input 0" in message and "element (" in message
    numeric = float(re.search(r"numeric (\S+),", message).group(1))
    analytic = float(re.search(r"analytic (\S+),", message).group(1))
    assert analytic == pytest.approx(2 * numeric, rel=1e-6)     # 4x instead of 2x


def test_a_bug_hidden_by_an_upstream_gradient_of_ones_is_caught():
    x = mc.randn(6, dtype=mc.float64, requires_grad=True)
    y = Reversed.apply(x)
    y.backward(mc.ones(6, dtype=mc.float64))
    assert x.grad.tolist() == [1.0] * 6          # looks right with ones...
    with pytest.raises(mc.GradcheckError):
        mc.gradcheck(lambda t: Reversed.apply(t), (x,))   # ...random upstream exposes it


def test_large_inputs_use_random_directions_and_still_catch_errors():
    x = mc.randn(40, 40, dtype=mc.float64, requires_grad=True)
    assert mc.gradcheck(lambda t: (t * t).sum(1), (x,), max_elements=100)
    with pytest.raises(mc.GradcheckError, match="random direction"):
        mc.gradcheck(lambda t: Doubled.apply(t), (x,), max_elements=100)


def test_inputs_are_restored_and_grads_untouched():
    x = mc.randn(3, dtype=mc.float64, requires_grad=True)
    before = x.detach().numpy().copy()
    mc.gradcheck(lambda t: t.exp(), (x,))
    numpy.testing.assert_array_equal(x.detach().numpy(), before)
    assert x.grad is None


def test_misuse_is_explained():
    with pytest.raises(TypeError, match="float64"):
        mc.gradcheck(lambda t: t * 2, (mc.ones(2, requires_grad=True),))
    with pytest.raises(ValueError, match="no input requires grad"):
        mc.gradcheck(lambda t: t * 2, (mc.ones(2, dtype=mc.float64),))
