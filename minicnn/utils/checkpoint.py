"""Gradient checkpointing, torch's ``torch.utils.checkpoint``: trade compute
for memory by not keeping a segment's activations for backward and
recomputing them when backward reaches the segment.

Notation
--------
A segment is a function ``y = s(x; theta)`` of tensor arguments ``x`` and
of the parameters ``theta`` it uses. A plain forward keeps, for backward,
everything the ops inside ``s`` save (conv inputs, batch norm's normalized
input, ...): memory that grows with the depth of ``s``. ``checkpoint(s, x)``
keeps only ``x`` (alive anyway: it is the previous layer's output) and
puts one node in the graph, whose backward

1. restores the random number generator to its state before the forward,
   so that dropout draws the same masks;
2. runs ``s`` again with gradients on (batch norm's running statistics are
   not updated a second time, see below);
3. backpropagates the upstream gradient ``gy`` through that fresh graph:
   ``gx = (dy/dx)^T gy`` and ``gtheta = (dy/dtheta)^T gy``, by the same ops
   in the same order as a plain run, so the gradients are identical to the
   last bit (when each parameter is used once inside ``s``; several uses
   are summed in a possibly different order).

``checkpoint_sequential(layers, k, x)`` cuts a chain of n layers into k
segments and checkpoints all but the last: it keeps the k segment inputs
plus, while backward runs, one segment's activations, about k + n / k
layers' worth instead of n. k = sqrt(n) gives the minimum, 2 sqrt(n),
for one extra forward.

How the node finds ``theta``
----------------------------
Before the node exists the forward runs ``s`` once with gradients on, on
detached copies of ``x``, and walks the graph it made back to its leaves:
the tensors requiring grad that ``s`` used (parameters, tensors it closes
over) become inputs of the node beside ``x``, so ``mc.autograd.grad`` with
respect to a parameter sees them. The graph is dropped at once, so the
peak memory of the forward is one segment's activations, which the
recompute needs in backward anyway. This is torch's non-reentrant variant
(``use_reentrant=False``) in behaviour: gradients reach the parameters even
when no input requires grad, ``autograd.grad`` works, keyword arguments
are passed through.

Differences from torch
----------------------
* Only the non-reentrant variant exists; ``use_reentrant=True`` raises
  (its gradients are the same wherever it works). ``use_reentrant``
  defaults to False; torch warns and picks True when it is not given.
* torch updates batch norm's running statistics twice for a checkpointed
  segment in training mode (once in the forward, once in the recompute,
  so they move by ``1 - (1 - momentum)^2`` of the way and
  ``num_batches_tracked`` counts 2). minicnn updates them once, as a plain
  run does: batch norm reads ``recomputing()`` and skips the update.
* Tensors nested inside list or dict arguments are treated like tensors
  the function closes over: they receive gradients if they are leaves; a
  non-leaf one is differentiated through its own history within the
  checkpoint's backward (correct, but that history runs again).
"""
import contextlib
import threading

from .. import random
from ..autograd import Function, enable_grad, grad, is_grad_enabled
from ..tensor import Tensor

__all__ = ["checkpoint", "checkpoint_sequential", "checkpointing", "recomputing"]

_state = threading.local()


def checkpointing():
    """True while a checkpointed segment runs, in its forward or in its
    recompute: the graph its layers record there is not what the step
    keeps (``mc.summary`` counts only the segment's inputs)."""
    return getattr(_state, "segment", False) or recomputing()


def recomputing():
    """True while a checkpoint (or a reversible block) reruns a forward for
    its backward: layers with side effects (batch norm's running
    statistics) must not apply them a second time."""
    return getattr(_state, "recomputing", False)


@contextlib.contextmanager
def recomputation(rng_state=None):
    """Rerun a forward: ``recomputing()`` is True, gradients are on, and the
    global generator starts from ``rng_state`` (when given) and is put back
    afterwards, so the rerun draws what the first run drew without
    changing what the program draws next."""
    previous = recomputing()
    current = random.get_rng_state() if rng_state is not None else None
    _state.recomputing = True
    try:
        if rng_state is not None:
            random.set_rng_state(rng_state)
        with enable_grad():
            yield
    finally:
        _state.recomputing = previous
        if current is not None:
            random.set_rng_state(current)


def _check_reentrant(use_reentrant, where):
    if use_reentrant:
        raise ValueError(
            f"{where}: use_reentrant=True is not available; minicnn implements only the non-reentrant "
            f"checkpoint (use_reentrant=False), whose gradients are the same and which also works with "
            f"autograd.grad and keyword arguments")


def _output_tensors(output, where):
    """The Tensors of ``function``'s output: a Tensor or a tuple / list of
    them; anything else is a TypeError naming what came back."""
    items = (output,) if isinstance(output, Tensor) else output
    if not isinstance(items, (tuple, list)) or not all(isinstance(t, Tensor) for t in items):
        got = type(output).__name__ if not isinstance(output, (tuple, list)) else \
            f"a {type(output).__name__} holding " + ", ".join(type(t).__name__ for t in output)
        raise TypeError(f"{where}: the function must return a Tensor or a tuple of Tensors, got {got}")
    return tuple(items)


def _used_leaves(outputs, own):
    """The leaf tensors requiring grad behind ``outputs``, in the order first
    met, except those in ``own`` (ids): an iterative walk of the graph."""
    found, seen = {}, set()
    stack = [t.grad_fn for t in outputs if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        for edge in node.edges:
            if isinstance(edge, Tensor):
                if id(edge) not in own:
                    found.setdefault(id(edge), edge)
            elif edge is not None:
                stack.append(edge[0])
    return list(found.values())


class _Seam(Function):
    """The identity, joining a recomputed segment to the tensor it was
    recomputed from, so that gradients made with ``create_graph`` depend on
    that tensor."""

    def forward(self, x):
        return x

    def backward(self, gy):
        return gy


class _Checkpoint(Function):
    """One node standing for a whole segment. Inputs: the segment's tensor
    arguments, then the leaves it used; outputs: the segment's outputs,
    computed before the node was made and handed over as ``outputs``."""

    def __init__(self, rerun, n_args, leaves, outputs, rng_state):
        self.rerun, self.n_args, self.leaves = rerun, n_args, leaves
        self.outputs, self.rng_state = outputs, rng_state

    def forward(self, *arrays):
        self.save_for_backward(*arrays[:self.n_args])
        outputs, self.outputs = self.outputs, None
        return outputs

    def backward(self, *gys):
        create_graph = is_grad_enabled()
        args = self.saved_tensors
        seams = []
        with recomputation(self.rng_state):
            if create_graph:
                # The segment reruns on its real inputs through a seam whose
                # edge is cut while the inner backward runs (the inner
                # backward must stop there; the outer one continues past it)
                # and restored after, so second derivatives flow to x.
                inputs = [_Seam.apply(x) if x.requires_grad else x for x in args]
                seams = [(t.grad_fn, t.grad_fn.edges) for t in inputs if t.grad_fn is not None]
            else:
                inputs = [x.detach().requires_grad_(x.requires_grad) for x in args]
            outputs = _output_tensors(self.rerun(inputs), "checkpoint")
        wanted = [(y, g) for y, g in zip(outputs, gys) if g is not None and y.requires_grad]
        leaves = self.leaves
        targets = [t for t, need in zip(inputs + leaves, self.needs_input_grad) if need]
        if not wanted or not targets:
            return (None,) * len(self.needs_input_grad)
        for node, _ in seams:
            node.edges = (None,)
        try:
            # retain_graph: a non-leaf tensor the segment closes over is
            # differentiated through its own (outer) history here, which the
            # outer backward still needs.
            found = iter(grad([y for y, _ in wanted], targets, [g for _, g in wanted], retain_graph=True,
                              create_graph=create_graph, allow_unused=True))
        finally:
            for node, edges in seams:
                node.edges = edges
        return tuple(next(found) if need else None for need in self.needs_input_grad)


def checkpoint(function, *args, use_reentrant=False, preserve_rng_state=True, **kwargs):
    """``function(*args, **kwargs)``, keeping for backward only the tensor
    arguments and recomputing the rest when backward gets here (the module
    docstring says how, and where it differs from torch).

    ``function``: returns a Tensor or a tuple of Tensors. ``args``: its
    positional arguments; the Tensors among them are saved and receive
    gradients. ``preserve_rng_state=False`` skips saving and restoring the
    random generator (dropout inside would then draw different masks in
    the recompute). Under ``no_grad`` this is just ``function(*args,
    **kwargs)``.
    """
    _check_reentrant(use_reentrant, "checkpoint")
    if not callable(function):
        raise TypeError(f"checkpoint: function must be callable, got {type(function).__name__}")
    if not is_grad_enabled():
        return function(*args, **kwargs)
    slots = [k for k, a in enumerate(args) if isinstance(a, Tensor)]
    args = list(args)

    def rerun(tensors):
        call = list(args)
        for k, t in zip(slots, tensors):
            call[k] = t
        return function(*call, **kwargs)

    tensors = [args[k] for k in slots]
    detached = [x.detach().requires_grad_(x.requires_grad) for x in tensors]
    rng_state = random.get_rng_state() if preserve_rng_state else None
    outer, _state.segment = checkpointing(), True
    try:
        output = rerun(detached)
    finally:
        _state.segment = outer
    outputs = _output_tensors(output, "checkpoint")
    if not any(y.requires_grad for y in outputs):
        return output       # nothing to differentiate: nothing was recorded
    leaves = _used_leaves(outputs, {id(x) for x in detached})
    node_output = _Checkpoint.apply(*tensors, *leaves, rerun=rerun, n_args=len(tensors), leaves=leaves,
                                    outputs=tuple(y.data for y in outputs), rng_state=rng_state)
    return node_output[0] if isinstance(output, Tensor) else type(output)(node_output)


def checkpoint_sequential(functions, segments, input, use_reentrant=False, **kwargs):
    """Run ``functions`` (an ``nn.Sequential`` or a list of callables) one
    after the other on ``input``, cut into ``segments`` pieces of
    ``len(functions) // segments`` layers; every piece but the last runs
    under ``checkpoint``, the last (which holds the remaining layers) runs
    normally, as in torch. The only keyword argument is
    ``preserve_rng_state`` (default True).

    Differs from torch: ``segments`` larger than the number of layers, or
    below 1, is a ValueError (torch fails with a ``range()`` error or runs
    everything unsaved); ``use_reentrant`` defaults to False.
    """
    _check_reentrant(use_reentrant, "checkpoint_sequential")
    preserve = kwargs.pop("preserve_rng_state", True)
    if kwargs:
        raise ValueError("checkpoint_sequential: unexpected keyword arguments: " + ", ".join(kwargs))
    from ..nn import Sequential
    if isinstance(functions, Sequential):
        functions = list(functions.children())
    else:
        functions = list(functions)
    if not all(callable(f) for f in functions):
        raise TypeError("checkpoint_sequential: functions must be an nn.Sequential or a list of callables")
    if isinstance(segments, bool) or not isinstance(segments, int) or not 1 <= segments <= len(functions):
        raise ValueError(f"checkpoint_sequential: segments must be an int from 1 to the number of layers "
                         f"({len(functions)}), got {segments!r}")

    def run(start, end):
        def forward(x):
            for f in functions[start:end]:
                x = f(x)
            return x
        return forward

    size = len(functions) // segments
    for start in range(0, size * (segments - 1), size):
        input = checkpoint(run(start, start + size), input, use_reentrant=False, preserve_rng_state=preserve)
    return run(size * (segments - 1), len(functions))(input)
