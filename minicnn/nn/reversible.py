"""Reversible residual blocks (Gomez et al., 2017, "The Reversible Residual
Network: Backpropagation Without Storing Activations").

Notation
--------
x: (N, C, *), split along the channels into halves x1, x2 of C / 2 each.
f, g: modules mapping (N, C / 2, *) to the same shape.

    y1 = x1 + f(x2)            x2 = y2 - g(y1)
    y2 = x2 + g(y1)            x1 = y1 - f(x2)

The right column inverts the left one: a block's input can be recomputed
from its output. ``ReversibleSequence`` uses that to store nothing but its
final output: its backward walks the blocks from last to first, and for
each block, given the output y and its gradient dy,

1. evaluates g(y1) with a graph, backpropagates dy2 through it
   (dy1 += (dg/dy1)^T dy2, and g's parameter gradients), and subtracts it
   to get x2;
2. evaluates f(x2) with a graph, backpropagates the total dy1 through it
   (dx2 = dy2 + (df/dx2)^T dy1, and f's parameter gradients), and
   subtracts it to get x1; dx1 = dy1;

so each block's f and g run twice (forward, and once in backward, which
both reconstructs and differentiates), and memory holds one block's graph
at a time whatever the depth.

Reconstruction is exact in real arithmetic, not in floating point:
x2 = (x2 + g) - g is x2 up to a rounding of y2, and each block's error
passes on, amplified by f and g, to the blocks before it. Gradients
therefore equal a stored-activation run to rounding (about 1e-12 relative
in float64 for a few blocks), not bit for bit. In training mode batch norm
inside f or g updates its running statistics once (the recompute skips
it, ``minicnn.utils.checkpoint.recomputing``), and dropout draws the same
masks (the generator's state before each f and g is kept: a few hundred
bytes per block).
"""
from .. import functional as F
from .. import random
from ..autograd import Function, grad, is_grad_enabled, no_grad
from ..backend import get_array_module
from ..tensor import Tensor
from ..utils.checkpoint import recomputation
from .containers import ModuleList
from .module import Module

__all__ = ["ReversibleBlock", "ReversibleSequence"]


def _halves(array, where):
    if array.ndim < 2 or array.shape[1] % 2:
        raise ValueError(f"{where}: expected input of shape (N, C, *) with an even number of channels C, "
                         f"got {tuple(array.shape)}")
    c = array.shape[1] // 2
    return array[:, :c], array[:, c:]


def _check_same_shape(name, out, half):
    if not isinstance(out, Tensor):
        raise TypeError(f"ReversibleBlock: {name} must return a Tensor, got {type(out).__name__}")
    if out.shape != half.shape:
        raise ValueError(f"ReversibleBlock: {name} must keep the shape of its input half {tuple(half.shape)}, "
                         f"got {tuple(out.shape)}")


class ReversibleBlock(Module):
    """y1 = x1 + f(x2), y2 = x2 + g(y1) over the two channel halves of x
    (module docstring). Called on its own it is an ordinary module whose
    graph stores its activations; inside a ``ReversibleSequence`` it stores
    none."""

    def __init__(self, f, g):
        super().__init__()
        for name, m in (("f", f), ("g", g)):
            if not isinstance(m, Module):
                raise TypeError(f"ReversibleBlock: {name} must be an nn.Module, got {type(m).__name__}")
        self.f = f
        self.g = g

    def forward(self, x):
        _halves(x.data, "ReversibleBlock")
        x1, x2 = F.chunk(x, 2, dim=1)
        fx = self.f(x2)
        _check_same_shape("f", fx, x1)
        y1 = x1 + fx
        gy = self.g(y1)
        _check_same_shape("g", gy, x2)
        return F.cat((y1, x2 + gy), dim=1)

    def inverse(self, y):
        """The input x whose output is ``y`` (to rounding)."""
        _halves(y.data, "ReversibleBlock")
        y1, y2 = F.chunk(y, 2, dim=1)
        x2 = y2 - self.g(y1)
        return F.cat((y1 - self.f(x2), x2), dim=1)


class _Reversible(Function):
    """The whole sequence as one node. Inputs: x, then every parameter of
    the blocks that requires grad; saved: the output only."""

    def __init__(self, blocks, params, preserve_rng_state):
        self.blocks, self.params, self.preserve = blocks, params, preserve_rng_state

    def forward(self, x, *params):
        self.states = []
        y = Tensor._wrap(x)
        with no_grad():
            for block in self.blocks:
                y1, y2 = _halves(y.data, "ReversibleSequence")
                before_f = random.get_rng_state() if self.preserve else None
                fx = block.f(Tensor._wrap(y2))
                _check_same_shape("f", fx, Tensor._wrap(y1))
                z1 = y1 + fx.data
                before_g = random.get_rng_state() if self.preserve else None
                gz = block.g(Tensor._wrap(z1))
                _check_same_shape("g", gz, Tensor._wrap(y2))
                y = Tensor._wrap(get_array_module(x).concatenate((z1, y2 + gz.data), axis=1))
                self.states.append((before_f, before_g))
        self.save_for_backward(y.data)
        return y.data

    def backward(self, gy):
        if is_grad_enabled():
            raise RuntimeError("ReversibleSequence does not support double backward (create_graph=True): its "
                               "backward rebuilds activations without a graph; use nn.Sequential(*blocks)")
        (y,) = self.saved_tensors
        y, dy = y.data, gy.data
        xp = get_array_module(y)
        slot = {id(p): k for k, p in enumerate(self.params)}
        param_grads = [None] * len(self.params)

        def backprop(module, inp, out, g_out):
            """Backpropagate ``g_out`` through ``out = module(inp)``; the
            gradient for ``inp`` (and the parameters' go to param_grads)."""
            own = [p for p in module.parameters() if id(p) in slot]
            if not out.requires_grad:       # f or g ignores its input and has no parameters
                return xp.zeros_like(inp.data)
            found = grad(out, [inp] + own, Tensor._wrap(g_out), allow_unused=True)
            for p, g in zip(own, found[1:]):
                if g is not None:
                    k = slot[id(p)]
                    param_grads[k] = g.data if param_grads[k] is None else param_grads[k] + g.data
            return found[0].data if found[0] is not None else xp.zeros_like(inp.data)

        for block, (before_f, before_g) in zip(reversed(self.blocks), reversed(self.states)):
            y1, y2 = _halves(y, "ReversibleSequence")
            dy1, dy2 = _halves(dy, "ReversibleSequence")
            with recomputation(before_g):
                z1 = Tensor._wrap(y1).requires_grad_()
                gz = block.g(z1)
            dy1 = dy1 + backprop(block.g, z1, gz, dy2)
            x2 = y2 - gz.data
            del gz
            with recomputation(before_f):
                w2 = Tensor._wrap(x2).requires_grad_()
                fx = block.f(w2)
            dx2 = dy2 + backprop(block.f, w2, fx, dy1)
            y = xp.concatenate((y1 - fx.data, x2), axis=1)
            dy = xp.concatenate((dy1, dx2), axis=1)
            del fx
        return (dy, *param_grads)


class ReversibleSequence(Module):
    """``ReversibleBlock``s applied in order, whose backward reconstructs
    each block's input from its output instead of storing it (module
    docstring): training memory does not grow with the number of blocks.

    ``preserve_rng_state``: keep the generator's state before each f and g
    so that dropout inside draws the same masks in backward (default True).
    Under ``no_grad``, or when nothing requires grad, the blocks simply
    run. Double backward through it is not supported.
    """

    def __init__(self, blocks, preserve_rng_state=True):
        super().__init__()
        blocks = list(blocks)
        for k, b in enumerate(blocks):
            if not isinstance(b, ReversibleBlock):
                raise TypeError(f"ReversibleSequence: blocks[{k}] must be a ReversibleBlock, "
                                f"got {type(b).__name__}")
        self.blocks = ModuleList(blocks)
        self.preserve_rng_state = preserve_rng_state

    def forward(self, x):
        if not isinstance(x, Tensor):
            raise TypeError(f"ReversibleSequence: input must be a Tensor, got {type(x).__name__}")
        _halves(x.data, "ReversibleSequence")
        params = list({id(p): p for p in self.parameters() if p.requires_grad}.values())
        if not is_grad_enabled() or not (x.requires_grad or params):
            for block in self.blocks:
                x = block(x)
            return x
        return _Reversible.apply(x, *params, blocks=list(self.blocks), params=params,
                                 preserve_rng_state=self.preserve_rng_state)

    def __len__(self):
        return len(self.blocks)
