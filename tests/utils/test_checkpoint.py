"""mc.utils.checkpoint: checkpoint and checkpoint_sequential give the plain
run's outputs and gradients bit for bit (float64, each parameter used once,
so the arithmetic is the same), draw the same dropout masks, update batch
norm's running statistics once, work with autograd.grad and create_graph,
keep less memory, and refuse bad input clearly."""
import gc
import tracemalloc

import numpy
import pytest
import torch
import torch.utils.checkpoint

import minicnn as mc
from minicnn import nn
from minicnn.nn import functional as F
from minicnn.utils.checkpoint import checkpoint, checkpoint_sequential
from parity import check_parity, gradcheck_inputs

torch.set_num_threads(1)
rng = numpy.random.default_rng(0)
X = rng.standard_normal((2, 3, 5, 5))
GY = rng.standard_normal((2, 2, 5, 5))


def make_net():
    """Conv, batch norm, ReLU and dropout: every kind of layer a recompute
    must get right (saved inputs, running statistics, random masks)."""
    mc.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.3),
        nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.3),
        nn.Conv2d(4, 2, 1)).double()


def run(how, x_requires_grad=True):
    """One training step of make_net on X, backward from GY: everything it
    leaves behind, to compare between ways of running the net."""
    net = make_net()
    x = mc.tensor(X, requires_grad=x_requires_grad)
    mc.manual_seed(5)
    y = how(net, x)
    y.backward(mc.tensor(GY))
    return {
        "y": y.data, "x.grad": x.grad.data if x_requires_grad else None,
        **{f"grad {name}": p.grad.data for name, p in net.named_parameters()},
        **{f"buffer {name}": b.data.copy() for name, b in net.named_buffers()},
        "rng": mc.random.get_rng_state()["state"]["state"],
    }


def assert_same(result, expected):
    assert result.keys() == expected.keys()
    for key in expected:
        if key == "rng":
            assert result[key] == expected[key], "the generator ends in a different state"
        elif expected[key] is not None:
            numpy.testing.assert_array_equal(result[key], expected[key], err_msg=key)


PLAIN = run(lambda net, x: net(x))


def test_checkpoint_is_bit_identical_to_the_plain_run():
    # Buffers included: batch norm's statistics and batch count moved once.
    assert_same(run(lambda net, x: checkpoint(net, x)), PLAIN)


@pytest.mark.parametrize("segments", [1, 2, 4, 9])
def test_checkpoint_sequential_is_bit_identical_to_the_plain_run(segments):
    assert_same(run(lambda net, x: checkpoint_sequential(net, segments, x)), PLAIN)
    assert_same(run(lambda net, x: checkpoint_sequential(list(net), segments, x)), PLAIN)


def test_parameters_get_gradients_when_the_input_does_not_require_grad():
    # torch's non-reentrant variant; the reentrant one would give them none.
    result = run(lambda net, x: checkpoint(net, x), x_requires_grad=False)
    assert_same(result, {**PLAIN, "x.grad": None})


def test_without_preserve_rng_state_the_recompute_draws_other_masks():
    result = run(lambda net, x: checkpoint(net, x, preserve_rng_state=False))
    numpy.testing.assert_array_equal(result["y"], PLAIN["y"])
    assert not numpy.array_equal(result["grad 0.weight"], PLAIN["grad 0.weight"])


def test_autograd_grad_reaches_inputs_and_parameters_and_leaves_grad_alone():
    net = make_net()
    x = mc.tensor(X, requires_grad=True)
    mc.manual_seed(5)
    y = checkpoint(net, x)
    params = list(net.parameters())
    grads = mc.autograd.grad(y, [x] + params, mc.tensor(GY))
    numpy.testing.assert_array_equal(grads[0].data, PLAIN["x.grad"])
    for (name, _), g in zip(net.named_parameters(), grads[1:]):
        numpy.testing.assert_array_equal(g.data, PLAIN[f"grad {name}"])
    assert all(p.grad is None for p in params) and x.grad is None


def test_create_graph_gives_the_plain_second_derivatives():
    """A gradient penalty: d/dtheta of |dL/dx|^2 flows back through the
    checkpointed segment and on into the layer before it."""
    def step(checkpointed):
        mc.manual_seed(0)
        first, second = nn.Sequential(nn.Linear(3, 4), nn.Tanh()).double(), \
            nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2)).double()
        x = mc.tensor(X[0, 0, :, :3], requires_grad=True)
        h = first(x)
        y = checkpoint(second, h) if checkpointed else second(h)
        loss = (y * y).sum()
        (gx,) = mc.autograd.grad(loss, [x], create_graph=True)
        ((gx * gx).sum() + loss).backward()
        return [x.grad.data] + [p.grad.data for p in list(first.parameters()) + list(second.parameters())]

    for got, expected in zip(step(True), step(False)):
        # The same terms, summed in another order: equal to float64 rounding.
        numpy.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-15)


def test_parity_with_torch_checkpoint_and_gradcheck():
    x, w = rng.standard_normal((4, 3)), rng.standard_normal((5, 3))

    def mc_fn(x, w):
        return checkpoint(lambda a, b: F.tanh(F.linear(a, b)) * a.sum(), x, w)

    def torch_fn(x, w):
        return torch.utils.checkpoint.checkpoint(lambda a, b: torch.tanh(torch.nn.functional.linear(a, b)) * a.sum(),
                                                 x, w, use_reentrant=False)

    check_parity(mc_fn, torch_fn, [x, w], dtype=numpy.float64)
    check_parity(mc_fn, torch_fn, [x, w], dtype=numpy.float32)
    check_parity(mc_fn, torch_fn, [x, w], dtype=numpy.float64, noncontiguous_inputs=True)
    assert mc.gradcheck(mc_fn, gradcheck_inputs([x, w]))


def test_tuple_outputs_keyword_arguments_and_unused_outputs():
    a = mc.tensor(X[0, 0], requires_grad=True)

    def fn(t, scale=1.0):
        return t * scale, (t * t).sum()

    y, s = checkpoint(fn, a, scale=3.0)
    assert isinstance(y, mc.Tensor) and isinstance(s, mc.Tensor)
    y.backward(mc.tensor(GY[0, 0]))             # s gets no gradient
    numpy.testing.assert_array_equal(a.grad.data, 3.0 * GY[0, 0])


def test_batch_norm_statistics_move_once_where_torch_moves_them_twice():
    """The documented difference: torch's recompute updates the running
    statistics a second time; minicnn's does not."""
    bn = nn.BatchNorm2d(3).double()
    checkpoint(bn, mc.tensor(X, requires_grad=True)).sum().backward()
    plain = nn.BatchNorm2d(3).double()
    plain(mc.tensor(X))
    numpy.testing.assert_array_equal(bn.running_mean.data, plain.running_mean.data)
    numpy.testing.assert_array_equal(bn.running_var.data, plain.running_var.data)
    assert int(bn.num_batches_tracked.data) == 1

    tbn = torch.nn.BatchNorm2d(3).double()
    torch.utils.checkpoint.checkpoint(tbn, torch.tensor(X, requires_grad=True), use_reentrant=False).sum().backward()
    assert int(tbn.num_batches_tracked) == 2


def test_under_no_grad_it_only_calls_the_function():
    calls = []

    def fn(t):
        calls.append(1)
        return t * 2

    with mc.no_grad():
        y = checkpoint(fn, mc.tensor(X, requires_grad=True))
    assert calls == [1] and not y.requires_grad and y.grad_fn is None


def test_an_input_changed_in_place_before_backward_is_refused():
    x = mc.tensor(X, requires_grad=True)
    h = x * 1.0
    y = checkpoint(lambda t: t * t, h)
    h.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def _peak_of_step(step):
    """tracemalloc's peak of NumPy array bytes during ``step()``, above what
    was alive before it."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        step()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_checkpoint_sequential_keeps_less_memory():
    """36 linear-tanh layers: the plain step keeps 36 activations, 6
    segments about 6 + 6 of them, plus the weights' gradients, kept small
    here (deterministic byte counts; linear layers have no scratch buffers
    to blur the count)."""
    mc.manual_seed(0)
    net = nn.Sequential(*[m for _ in range(36) for m in (nn.Linear(32, 32), nn.Tanh())]).double()
    x = mc.tensor(rng.standard_normal((512, 32)))

    def step(segments):
        net.zero_grad(set_to_none=True)
        y = checkpoint_sequential(net, segments, x) if segments else net(x)
        y.sum().backward()

    step(6)
    plain, checkpointed = _peak_of_step(lambda: step(0)), _peak_of_step(lambda: step(6))
    assert checkpointed < 0.5 * plain, (checkpointed, plain)


def test_bad_input():
    net = make_net()
    x = mc.tensor(X, requires_grad=True)
    with pytest.raises(ValueError, match=r"segments must be an int from 1 to the number of layers \(9\), got 10"):
        checkpoint_sequential(net, 10, x)
    with pytest.raises(ValueError, match="segments"):
        checkpoint_sequential(net, 0, x)
    with pytest.raises(TypeError, match="must return a Tensor or a tuple of Tensors, got a list holding float"):
        checkpoint(lambda t: [t.sum().item()], x)
    with pytest.raises(TypeError, match="got a tuple holding Tensor, int"):
        checkpoint(lambda t: (t * 2, 3), x)
    with pytest.raises(ValueError, match="only the non-reentrant"):
        checkpoint(net, x, use_reentrant=True)
    with pytest.raises(ValueError, match="only the non-reentrant"):
        checkpoint_sequential(net, 2, x, use_reentrant=True)
    with pytest.raises(ValueError, match="unexpected keyword arguments: foo"):
        checkpoint_sequential(net, 2, x, foo=1)
    with pytest.raises(TypeError, match="function must be callable"):
        checkpoint(3, x)


def test_summary_counts_what_a_checkpointed_forward_keeps():
    """mc.summary's training memory is what the forward keeps for backward:
    with checkpointing, the segment inputs instead of every activation."""
    plain = mc.summary(mc.models.resnet20(), (3, 16, 16), batch_size=2).training_bytes
    checkpointed = mc.summary(mc.models.resnet20(checkpoint_segments=3), (3, 16, 16), batch_size=2).training_bytes
    assert 0 < checkpointed < 0.5 * plain, (checkpointed, plain)
