"""nn.ReversibleBlock and nn.ReversibleSequence: the block against torch
(forward and backward), the sequence's reconstructing backward against the
same blocks run with stored activations, memory flat in depth, bad input.

Tolerance for reconstructed gradients: float64 rtol 1e-12. Rebuilding a
block's input subtracts f and g from the output again, which is exact in
real arithmetic but rounds: x2 comes back within an ulp of y2 (about 1e-16
relative to the activations), and f and g evaluated there differ by that
amount times their slopes; over the few blocks here that stays near 1e-15,
far below 1e-12, while any mistake in the algorithm is of order 1."""
import gc
import tracemalloc

import numpy
import pytest
import torch

import minicnn as mc
from minicnn import nn
from parity import check_parity, gradcheck_inputs

torch.set_num_threads(1)
rng = numpy.random.default_rng(0)


def branch(channels, dropout=0.0):
    """A pre-activation residual function, with dropout when asked."""
    layers = [nn.BatchNorm2d(channels), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers, nn.Conv2d(channels, channels, 3, padding=1))


def make_sequence(blocks=4, channels=4, dropout=0.2):
    mc.manual_seed(0)
    return nn.ReversibleSequence(
        [nn.ReversibleBlock(branch(channels // 2, dropout), branch(channels // 2, dropout))
         for _ in range(blocks)]).double()


class ConvWith(nn.Module):
    """A 3x3 conv with the given weight tensor (so that check_parity sees
    its gradient)."""

    def __init__(self, weight):
        super().__init__()
        self.weight = [weight]          # a list: not registered as a parameter

    def forward(self, x):
        return mc.nn.functional.conv2d(x, self.weight[0], padding=1)


def test_block_matches_torch():
    """y1 = x1 + f(x2), y2 = x2 + g(y1) with f, g convs, against the same
    formula in torch with the same weights."""
    w = [rng.standard_normal((2, 2, 3, 3)) for _ in range(2)]
    x = rng.standard_normal((2, 4, 5, 5))

    def mc_fn(x, wf, wg):
        return nn.ReversibleBlock(ConvWith(wf), ConvWith(wg))(x)

    def torch_fn(x, wf, wg):
        x1, x2 = x.chunk(2, dim=1)
        y1 = x1 + torch.nn.functional.conv2d(x2, wf, padding=1)
        return torch.cat((y1, x2 + torch.nn.functional.conv2d(y1, wg, padding=1)), dim=1)

    check_parity(mc_fn, torch_fn, [x] + w, dtype=numpy.float64)
    check_parity(mc_fn, torch_fn, [x] + w, dtype=numpy.float32, rtol=1e-4)
    check_parity(mc_fn, torch_fn, [x] + w, dtype=numpy.float64, noncontiguous_inputs=True)


def test_inverse_rebuilds_the_input():
    block = make_sequence(blocks=1, dropout=0.0).blocks[0].eval()
    x = mc.tensor(rng.standard_normal((2, 4, 5, 5)))
    with mc.no_grad():
        numpy.testing.assert_allclose(block.inverse(block(x)).data, x.data, rtol=0, atol=1e-13)


def step(stored):
    """A training step of four blocks with batch norm and dropout, either
    through ReversibleSequence or through nn.Sequential of the same blocks
    (which stores the activations)."""
    seq = make_sequence()
    x = mc.tensor(rng_x := numpy.random.default_rng(1).standard_normal((3, 4, 6, 6)), requires_grad=True)
    gy = numpy.random.default_rng(2).standard_normal(rng_x.shape)
    mc.manual_seed(7)
    y = (nn.Sequential(*seq.blocks) if stored else seq)(x)
    y.backward(mc.tensor(gy))
    return seq, {"y": y.data, "x.grad": x.grad.data,
                 **{f"grad {n}": p.grad.data for n, p in seq.named_parameters()},
                 **{f"buffer {n}": b.data.copy() for n, b in seq.named_buffers()},
                 "rng": mc.random.get_rng_state()["state"]["state"]}


def test_reconstructing_backward_equals_the_stored_activation_run():
    _, stored = step(stored=True)
    _, rebuilt = step(stored=False)
    assert rebuilt.keys() == stored.keys()
    numpy.testing.assert_array_equal(rebuilt["y"], stored["y"])        # the same forward arithmetic
    assert rebuilt["rng"] == stored["rng"]                               # dropout drew once per layer
    for key in stored:
        if key.startswith("buffer"):                                     # batch norm updated once
            numpy.testing.assert_array_equal(rebuilt[key], stored[key], err_msg=key)
        elif key.endswith("grad") or key.startswith("grad"):
            numpy.testing.assert_allclose(rebuilt[key], stored[key], rtol=1e-12, atol=1e-12, err_msg=key)


def test_autograd_grad_and_no_grad():
    seq = make_sequence(dropout=0.0)
    x = mc.tensor(rng.standard_normal((2, 4, 5, 5)), requires_grad=True)
    params = list(seq.parameters())
    grads = mc.autograd.grad(seq(x).sum(), [x] + params)
    assert all(p.grad is None for p in params)
    expected = mc.autograd.grad(nn.Sequential(*seq.blocks)(x).sum(), [x] + params)
    for g, e in zip(grads, expected):
        numpy.testing.assert_allclose(g.data, e.data, rtol=1e-12, atol=1e-12)
    seq.eval()
    with mc.no_grad():
        y = seq(x)
    assert y.grad_fn is None
    numpy.testing.assert_array_equal(y.data, nn.Sequential(*seq.blocks)(x).data)


def test_gradcheck():
    mc.manual_seed(0)
    seq = nn.ReversibleSequence([nn.ReversibleBlock(nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Tanh()),
                                                    nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Tanh()))
                                 for _ in range(2)]).double()
    assert mc.gradcheck(seq, gradcheck_inputs([rng.standard_normal((2, 2, 4, 4))]))


def test_double_backward_is_refused():
    seq = make_sequence(dropout=0.0)
    x = mc.tensor(rng.standard_normal((2, 4, 5, 5)), requires_grad=True)
    with pytest.raises(RuntimeError, match="does not support double backward"):
        mc.autograd.grad(seq(x).sum(), [x], create_graph=True)


def _training_peak(model, x):
    model.zero_grad(set_to_none=True)
    model(x).sum().backward()                   # warm up outside tracemalloc: kernels compiled
    model.zero_grad(set_to_none=True)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        model(x).sum().backward()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_memory_is_flat_in_depth():
    """2 blocks against 8: the reversible step's peak grows by little more
    than the extra weights' gradients, the stored one's by 4x its
    activations over a fixed part (deterministic byte counts)."""
    x = mc.tensor(rng.standard_normal((8, 8, 16, 16)))
    peaks = {}
    for blocks in (2, 8):
        seq = make_sequence(blocks=blocks, channels=8, dropout=0.0)
        for name, model in (("reversible", seq), ("stored", nn.Sequential(*seq.blocks))):
            peaks[name, blocks] = _training_peak(model, x)
    assert peaks["reversible", 8] < 1.1 * peaks["reversible", 2], peaks
    assert peaks["stored", 8] > 2 * peaks["stored", 2], peaks
    assert peaks["reversible", 8] < 0.5 * peaks["stored", 8], peaks


def test_bad_input():
    with pytest.raises(TypeError, match="f must be an nn.Module, got function"):
        nn.ReversibleBlock(lambda t: t, nn.Identity())
    with pytest.raises(TypeError, match=r"blocks\[1\] must be a ReversibleBlock, got Conv2d"):
        nn.ReversibleSequence([nn.ReversibleBlock(nn.Identity(), nn.Identity()), nn.Conv2d(2, 2, 1)])
    odd = mc.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"even number of channels C, got \(2, 3, 4, 4\)"):
        nn.ReversibleBlock(nn.Identity(), nn.Identity())(odd)
    with pytest.raises(ValueError, match=r"even number of channels C, got \(2, 3, 4, 4\)"):
        make_sequence()(odd)
    x = mc.randn(2, 4, 4, 4, requires_grad=True)
    changes_shape = nn.ReversibleBlock(nn.Conv2d(2, 3, 1), nn.Identity())
    with pytest.raises(ValueError, match=r"f must keep the shape of its input half \(2, 2, 4, 4\), got \(2, 3, 4, 4\)"):
        changes_shape(x)
    with pytest.raises(ValueError, match=r"f must keep the shape"):
        nn.ReversibleSequence([changes_shape])(x)
    strided = nn.ReversibleBlock(nn.Identity(), nn.Conv2d(2, 2, 1, stride=2))
    with pytest.raises(ValueError, match=r"g must keep the shape of its input half \(2, 2, 4, 4\), got \(2, 2, 2, 2\)"):
        nn.ReversibleSequence([strided])(x)
