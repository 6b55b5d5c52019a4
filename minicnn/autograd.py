"""Reverse-mode automatic differentiation: Function nodes and the engine.

Notation
--------
Every differentiable op is a subclass of ``Function`` with two methods:

``forward(self, *xs)``
    receives the inputs' raw arrays (NumPy or CuPy) and returns the output
    array, or a tuple of them. It keeps only what backward needs:
    ``self.save_for_backward(...)`` for arrays (an input saved this way
    comes back in backward as that very input Tensor, an output as a
    Tensor whose grad_fn is this node), plain attributes for shapes and
    other small things.

``backward(self, *gys)``
    receives one upstream gradient per output, as Tensors, and returns one
    gradient per input: a Tensor, a raw array, or None for an input that
    needs none. Formulas written with Tensor ops are themselves
    differentiable, which is what makes double backward possible.

``Function.apply(*inputs, **kwargs)`` builds the node (kwargs go to
``__init__``), runs forward and, when gradients are enabled and some input
requires them, records the node in the graph.

The graph
---------
A node keeps *edges* to where each input's gradient goes: the input's own
creator node (for an intermediate tensor) or the input Tensor itself (for a
leaf that requires grad). It keeps no reference to its outputs and no input
data unless forward saved it, so the memory alive during backward is what
the ops chose to save.

The engine (``backward``) walks the graph iteratively: one depth-first pass
counts, for every node, how many edges lead into it; then a work list runs
a node once all of its consumers have sent their gradients (Kahn's
topological order). No recursion, so a 20,000-op chain is fine. After a node
has run, its saved buffers and edges are released unless
``retain_graph=True``.
"""
import contextlib
import threading

import numpy

from .backend import get_array_module

# The Tensor class. tensor.py imports this module before it defines Tensor,
# so it fills this name in once the class exists: an import statement
# inside apply() would cost about a microsecond on every op.
Tensor = None

_state = threading.local()


def is_grad_enabled():
    """True unless inside ``no_grad()``."""
    return getattr(_state, "grad_enabled", True)


@contextlib.contextmanager
def set_grad_enabled(mode):
    """Context manager that turns gradient recording on or off."""
    previous = is_grad_enabled()
    _state.grad_enabled = bool(mode)
    try:
        yield
    finally:
        _state.grad_enabled = previous


def no_grad():
    """Context manager (and decorator) in which ops record nothing."""
    return set_grad_enabled(False)


def enable_grad():
    """Context manager that re-enables recording inside ``no_grad()``."""
    return set_grad_enabled(True)


_SECOND_BACKWARD = (
    "trying to backward through the graph a second time (or to use saved values after "
    "they were freed); pass retain_graph=True to the first backward() to keep them")


class Function:
    """A node of the autograd graph; subclass it to define an op."""

    #: True when backward wants zero arrays (not None) for outputs that
    #: received no gradient, e.g. ``split`` when only one chunk is used.
    zero_fill_missing = False

    def forward(self, *xs):  # abstract
        raise NotImplementedError(f"{type(self).__name__} must define forward")

    def backward(self, *gys):  # abstract
        raise NotImplementedError(f"{type(self).__name__} does not support backward")

    def save_for_backward(self, *arrays):
        """Keep arrays for backward (see the module docstring)."""
        self._saved = arrays

    @property
    def saved_tensors(self):
        """What ``save_for_backward`` kept, as Tensors."""
        if self._released:
            raise RuntimeError(f"{type(self).__name__}: {_SECOND_BACKWARD}")
        return tuple(s.unpack(self) if isinstance(s, _SavedOutput) else
                     s if s is None or isinstance(s, Tensor) else Tensor._wrap(s) for s in self._saved)

    def _release(self):
        # Subclasses may keep arrays as attributes too: drop everything, the
        # edges included, so the graph behind this node can be freed.
        self.__dict__.clear()
        self._saved = ()
        self._released = True

    @classmethod
    def apply(cls, *inputs, **kwargs):
        """Run the op on Tensors ``inputs``; keyword args go to ``__init__``."""
        if len(inputs) > 1:
            _check_one_device(cls, inputs)
        fn = cls(**kwargs) if kwargs else cls()
        fn._saved = ()
        fn._released = False
        # Whether this call is recorded: forward may skip computing what
        # only backward needs (a mask, say) when it is not.
        fn.recording = is_grad_enabled() and any(x.requires_grad for x in inputs)
        outputs = fn.forward(*[x.data for x in inputs])
        single = not isinstance(outputs, tuple)
        if single:
            outputs = (outputs,)

        if not fn.recording:
            fn._saved = ()
            results = tuple(Tensor._wrap(y) for y in outputs)
            return results[0] if single else results

        # A saved input array becomes a reference to its input Tensor, a
        # saved output array a _SavedOutput.
        if fn._saved:
            by_id = {id(x.data): x for x in inputs}
            by_id.update((id(y), _SavedOutput(y, i)) for i, y in enumerate(outputs) if y.dtype.kind == "f")
            fn._saved = tuple(s if s is None else by_id.get(id(s), s) for s in fn._saved)
        fn.needs_input_grad = tuple(x.requires_grad for x in inputs)
        fn.edges = tuple(x._edge() if x.requires_grad else None for x in inputs)
        xp = get_array_module(*outputs)
        fn._outputs_meta = tuple((y.shape, y.dtype, xp) for y in outputs)
        results = []
        for i, y in enumerate(outputs):
            t = Tensor._wrap(y)
            if y.dtype.kind == "f":  # integer outputs (indices) carry no gradient
                t.requires_grad = True
                t.grad_fn = fn
                t._output_index = i
            results.append(t)
        return results[0] if single else tuple(results)

    def __repr__(self):
        return f"<{type(self).__name__}Backward>"


class _SavedOutput:
    """An output array a node saved for its backward (tanh and sigmoid
    differentiate through their output). It comes back as a Tensor whose
    grad_fn is the node, so a gradient built from it is differentiable
    again, through the node (double backward). The node keeps the array,
    not that Tensor: Tensor -> node -> Tensor would be a reference cycle,
    which only the cyclic garbage collector frees, late."""

    def __init__(self, array, index):
        self.array, self.index = array, index

    def unpack(self, node):
        t = Tensor._wrap(self.array)
        t.requires_grad = True
        t.grad_fn = node
        t._output_index = self.index
        return t


def _check_one_device(cls, inputs):
    """RuntimeError naming both devices when ``inputs`` live on different
    ones. All-NumPy inputs (the common case) cost one type() per input."""
    kind = type(inputs[0].data)
    if kind is numpy.ndarray and all(type(x.data) is kind for x in inputs[1:]):
        return
    from .device import device_of
    devices = list(dict.fromkeys(device_of(x.data) for x in inputs))
    if len(devices) > 1:
        raise RuntimeError(
            f"{cls.__name__}: expected all inputs on one device, got {devices[0]} and {devices[1]}; "
            f"move them with .to(device) first")


def _as_grad_tensor(g, shape, dtype, owner):
    """Check one gradient returned by ``owner.backward`` and wrap it as a
    Tensor of the input's dtype (mixed-dtype ops promote their output)."""
    if not isinstance(g, Tensor):
        g = Tensor._wrap(g)
    if g.shape != shape:
        raise RuntimeError(
            f"{type(owner).__name__}.backward returned a gradient of shape {g.shape} "
            f"for an input of shape {shape}")
    if g.dtype != dtype:
        g = g.to(dtype)
    return g


def run_backward(roots, grads, retain_graph=False, create_graph=False):
    """Backpropagate ``grads`` (Tensors) from ``roots`` (Tensors) to every
    leaf that requires grad, accumulating into ``leaf.grad``."""
    # The caller's arrays: a leaf must copy them rather than keep them as
    # its .grad (Tensor._accumulate), even when an op passes one through.
    given = {id(g.data) for g in grads}
    pending = {}  # node -> list of gradients received, one slot per output
    start_nodes = []
    for root, g in zip(roots, grads):
        node = root.grad_fn
        if node is None:
            if root.requires_grad:
                root._accumulate(g)
            continue
        if node._released:
            raise RuntimeError(f"{type(node).__name__}: {_SECOND_BACKWARD}")
        slots = pending.setdefault(node, [None] * len(node._outputs_meta))
        i = root._output_index
        slots[i] = g if slots[i] is None else slots[i] + g
        start_nodes.append(node)
    start_nodes = list(dict.fromkeys(start_nodes))

    # Pass 1: count how many edges lead into each node.
    consumers = {}
    stack = list(start_nodes)
    seen = set(stack)
    while stack:
        node = stack.pop()
        for edge in node.edges:
            if edge is None or isinstance(edge, Tensor):
                continue
            parent = edge[0]
            if parent._released:
                raise RuntimeError(f"{type(parent).__name__}: {_SECOND_BACKWARD}")
            consumers[parent] = consumers.get(parent, 0) + 1
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)

    # Pass 2: run each node once every consumer has sent its gradient.
    ready = [n for n in start_nodes if consumers.get(n, 0) == 0]
    with set_grad_enabled(create_graph):
        while ready:
            node = ready.pop()
            slots = pending.pop(node, None)
            if slots is None or all(g is None for g in slots):
                gxs = (None,) * len(node.edges)  # nothing flowed in: nothing flows out
            else:
                if node.zero_fill_missing:
                    slots = [
                        g if g is not None else Tensor._wrap(xp.zeros(shape, dtype))
                        for g, (shape, dtype, xp) in zip(slots, node._outputs_meta)
                    ]
                gxs = node.backward(*slots)
                if not isinstance(gxs, tuple):
                    gxs = (gxs,)
                if len(gxs) != len(node.edges):
                    raise RuntimeError(
                        f"{type(node).__name__}.backward returned {len(gxs)} gradients "
                        f"for {len(node.edges)} inputs")
            gxs = list(gxs)
            for i, edge in enumerate(node.edges):
                gx, gxs[i] = gxs[i], None       # let go: a leaf may keep the array (Tensor._accumulate)
                if edge is None:
                    continue
                if isinstance(edge, Tensor):  # a leaf: accumulate into .grad
                    if gx is not None:
                        gx = _as_grad_tensor(gx, edge.shape, edge.dtype, node)
                        edge._accumulate(gx, owned=id(gx.data) not in given)
                    continue
                parent, index = edge
                if gx is not None:
                    gx = _as_grad_tensor(gx, *parent._outputs_meta[index][:2], node)
                    parent_slots = pending.setdefault(parent, [None] * len(parent._outputs_meta))
                    old = parent_slots[index]
                    parent_slots[index] = gx if old is None else old + gx
                consumers[parent] -= 1
                if consumers[parent] == 0:
                    ready.append(parent)
            if not retain_graph:
                node._release()
