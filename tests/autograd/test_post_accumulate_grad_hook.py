"""Tensor.register_post_accumulate_grad_hook and autograd.queue_callback,
the two hooks DistributedDataParallel is built on, against torch."""
import numpy
import pytest
import torch

import minicnn as mc
from minicnn import autograd


def _graph(lib, w1, w2, x):
    """A leaf used twice (w1) and one used once (w2): the hook of w1 must
    see both contributions summed."""
    h = (x @ w1).tanh()
    return ((h @ w2) * (x @ w1).sum()).sum()


def test_post_accumulate_hooks_see_the_summed_grad_once_per_pass_like_torch():
    rng = numpy.random.default_rng(0)
    arrays = [rng.standard_normal(s) for s in ((3, 3), (3, 2), (4, 3))]
    seen = {}
    for name, lib, make in (("mc", mc, lambda a: mc.tensor(a, requires_grad=True)),
                            ("torch", torch, lambda a: torch.tensor(a, requires_grad=True))):
        w1, w2 = make(arrays[0]), make(arrays[1])
        x = make(arrays[2]).detach()
        calls = []
        for label, w in (("w1", w1), ("w2", w2)):
            w.register_post_accumulate_grad_hook(lambda t, label=label: calls.append((label, t.grad.numpy().copy())))
        w1.grad = make(numpy.ones((3, 3))).detach()      # accumulation: the hook sees the total
        _graph(lib, w1, w2, x).backward()
        seen[name] = calls
    assert [label for label, _ in seen["mc"]] == [label for label, _ in seen["torch"]]
    assert len(seen["mc"]) == 2
    for (_, a), (_, b) in zip(seen["mc"], seen["torch"]):
        numpy.testing.assert_allclose(a, b, rtol=1e-12)


def test_post_accumulate_hook_runs_before_the_rest_of_backward():
    # The hook of the last layer's weight runs while the first layer's
    # gradient is still to be computed: what lets DDP overlap communication.
    w1 = mc.randn(3, 3, requires_grad=True)
    w2 = mc.randn(3, 3, requires_grad=True)
    order = []
    w1.register_post_accumulate_grad_hook(lambda t: order.append("w1"))
    w2.register_post_accumulate_grad_hook(lambda t: order.append("w2"))
    ((mc.randn(2, 3) @ w1).relu() @ w2).sum().backward()
    assert order == ["w2", "w1"]


def test_post_accumulate_hook_skips_autograd_grad_and_unreached_leaves_and_can_be_removed():
    w = mc.randn(3, requires_grad=True)
    unused = mc.randn(3, requires_grad=True)
    calls = []
    handle = w.register_post_accumulate_grad_hook(lambda t: calls.append("w"))
    unused.register_post_accumulate_grad_hook(lambda t: calls.append("unused"))
    mc.autograd.grad((w * 2).sum(), w)
    assert calls == []
    (w * 2).sum().backward()
    assert calls == ["w"]
    handle.remove()
    (w * 2).sum().backward()
    assert calls == ["w"]


def test_post_accumulate_hook_after_a_tensor_hook_and_on_a_root_leaf():
    w = mc.randn(3, requires_grad=True)
    w.register_hook(lambda g: g * 10)
    grads = []
    w.register_post_accumulate_grad_hook(lambda t: grads.append(t.grad.numpy().copy()))
    (w * 2).sum().backward()
    numpy.testing.assert_array_equal(grads[0], numpy.full(3, 20.0, dtype=w.dtype))


def test_post_accumulate_hook_refusals():
    with pytest.raises(RuntimeError, match="doesn't require gradient"):
        mc.randn(2).register_post_accumulate_grad_hook(print)
    with pytest.raises(RuntimeError, match="non-leaf"):
        (mc.randn(2, requires_grad=True) * 2).register_post_accumulate_grad_hook(print)


def test_queue_callback_runs_once_after_every_grad_and_hook():
    w1 = mc.randn(3, requires_grad=True)
    w2 = mc.randn(3, requires_grad=True)
    events = []

    def hook(t):
        if not events:
            autograd.queue_callback(lambda: events.append(("callback", w1.grad is not None and w2.grad is not None)))
        events.append("hook")
    w1.register_post_accumulate_grad_hook(hook)
    w2.register_post_accumulate_grad_hook(hook)
    (w1 * w2).sum().backward()
    assert events == ["hook", "hook", ("callback", True)]
    with pytest.raises(RuntimeError, match="during a backward pass"):
        autograd.queue_callback(print)
