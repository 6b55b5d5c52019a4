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

Hooks
-----
A hook on a tensor (``Tensor.register_hook``, ``retain_grad``) lives where
its gradient arrives: on the creator node, per output index, for an
intermediate tensor; on the tensor itself for a leaf. The engine calls a
node's hooks once all of that output's gradients have been summed, before
the node runs; a leaf's once all of its gradients in this pass are summed,
before they reach ``.grad``. A hook may return a replacement gradient.
A leaf's post-accumulate hooks (``register_post_accumulate_grad_hook``)
run right after its last gradient of the pass reached ``.grad``, while
backward goes on with the rest of the graph; ``queue_callback`` runs a
function once the whole pass is over.

Version counters and in-place ops
---------------------------------
Every array has a version, bumped by each in-place op on it or on a view
of it (the counter belongs to the array that owns the memory, so a view,
``detach()`` and the tensor share it, as in torch). A node records the
version of every array it saved; ``saved_tensors`` raises torch's "modified
by an inplace operation" error when one has changed since, rather than
computing a gradient from the wrong values. An in-place op that records
moves the tensor to a new node (``minicnn/functional/inplace.py``); a
recorded op whose output shares memory with an input marks that output as
a view of it, which an in-place op while recording refuses (torch rewrites
the history of the view's base, minicnn does not).
"""
import functools
import threading
import weakref

import numpy

from .backend import get_array_module

# The Tensor class. tensor.py imports this module before it defines Tensor,
# so it fills this name in once the class exists: an import statement
# inside apply() would cost about a microsecond on every op.
Tensor = None

_state = threading.local()


def is_grad_enabled():
    """True unless inside ``no_grad()`` (or ``set_grad_enabled(False)``)."""
    return getattr(_state, "grad_enabled", True)


class _GradMode:
    """A context manager and decorator that sets the grad mode for its
    block (or for each call of the decorated function) and restores the
    previous mode on exit, as torch's ``no_grad`` family does."""

    mode = None

    def __enter__(self):
        self.previous = is_grad_enabled()
        if self.mode is not None:
            _state.grad_enabled = self.mode

    def __exit__(self, *exc_info):
        _state.grad_enabled = self.previous

    def _fresh(self):
        """A new manager with the same mode, so nested or recursive calls of
        a decorated function each restore their own previous mode."""
        return type(self)()

    def __call__(self, function):
        @functools.wraps(function)
        def run(*args, **kwargs):
            with self._fresh():
                return function(*args, **kwargs)
        return run


class _NoParamGradMode(_GradMode):
    """Also usable as a bare decorator: ``@no_grad`` as well as ``@no_grad()``."""

    def __new__(cls, function=None, *args, **kwargs):
        self = super().__new__(cls)
        if not callable(function):   # called with no argument, or inference_mode(mode)
            return self
        self.__init__()
        return self(function)


class no_grad(_NoParamGradMode):
    """Context manager (and decorator) in which ops record nothing."""

    mode = False


class enable_grad(_NoParamGradMode):
    """Context manager (and decorator) that re-enables recording inside
    ``no_grad()``."""

    mode = True


class set_grad_enabled(_GradMode):
    """Turn recording on or off. As in torch the call itself sets the mode
    (``mc.set_grad_enabled(False)`` on its own line switches it off); used
    as a context manager or decorator it restores the previous mode on
    exit."""

    def __init__(self, mode):
        self.previous = is_grad_enabled()
        self.mode = bool(mode)
        _state.grad_enabled = self.mode

    def __enter__(self):
        pass

    def _fresh(self):
        return _SetGradMode(self.mode)

    def __call__(self, function):
        _state.grad_enabled = self.previous   # decorating must not change the mode now
        return super().__call__(function)


class _SetGradMode(_GradMode):
    """``set_grad_enabled``'s mode for one call of a decorated function: it
    sets the mode on entering, not on creation."""

    def __init__(self, mode):
        self.mode = mode


class inference_mode(_NoParamGradMode):
    """torch's ``inference_mode``: like ``no_grad`` here (ops record
    nothing). Unlike torch, tensors made inside are ordinary tensors, not
    flagged as inference tensors: they may be used in a recorded graph
    afterwards, and nothing checks that they are not. ``mode=False`` leaves
    the grad mode alone."""

    def __init__(self, mode=True):
        self.mode = False if mode else None

    def _fresh(self):
        return inference_mode(self.mode is False)


# -- version counters ----------------------------------------------------
class _Version:
    """The version of one array owner, with a weak reference to it so that
    an id reused by a later array is not mistaken for it (and the entry
    goes when the array does)."""

    __slots__ = ("value", "ref")


_versions = {}  # id(owner) -> _Version; only arrays that were ever changed in place


def _owner(array):
    """The array that owns ``array``'s memory (itself unless it is a view)."""
    base = array.base
    while base is not None and isinstance(base, type(array)):
        array, base = base, base.base
    return array


def version_of(array):
    """How many in-place ops changed ``array`` (or a view of its memory)."""
    owner = _owner(array)
    entry = _versions.get(id(owner))
    return entry.value if entry is not None and (entry.ref is None or entry.ref() is owner) else 0


def bump_version(array):
    """Record one in-place change of ``array``."""
    owner = _owner(array)
    key = id(owner)
    entry = _versions.get(key)
    if entry is None or (entry.ref is not None and entry.ref() is not owner):
        entry = _Version()
        entry.value = 0

        def forget(_, key=key, entry=entry):
            if _versions.get(key) is entry:
                del _versions[key]
        try:
            entry.ref = weakref.ref(owner, forget)
        except TypeError:
            # An array type without weak references: the entry outlives the
            # array and a later array with its id inherits the count. Harmless:
            # a saved version is compared with the same entry later, and only
            # an in-place op changes it.
            entry.ref = None
        _versions[key] = entry
    entry.value += 1


def _saved_array(s):
    return s.data if isinstance(s, Tensor) else s.array if isinstance(s, _SavedOutput) else s


_MODIFIED = (
    "one of the variables needed for gradient computation has been modified by an inplace "
    "operation: a tensor of shape {shape} saved by {node} is at version {now}; expected version "
    "{then} instead. Hint: clone() it before the in-place op, or apply the op out of place")


_SECOND_BACKWARD = (
    "trying to backward through the graph a second time (or to use saved values after "
    "they were freed); pass retain_graph=True to the first backward() to keep them")


class Function:
    """A node of the autograd graph; subclass it to define an op."""

    #: True when backward wants zero arrays (not None) for outputs that
    #: received no gradient, e.g. ``split`` when only one chunk is used.
    zero_fill_missing = False

    #: output index -> {handle id: hook}: the hooks of the tensors this node
    #: created (``Tensor.register_hook``), and -> weak reference to a tensor
    #: that ``retain_grad()`` asked to keep its gradient.
    _tensor_hooks = None
    _retained = None

    @property
    def name(self):
        """The op's name in reprs and graph drawings: the class name, unless
        one class serves several ops (``ConvNd`` draws as ``Conv2d``)."""
        return type(self).__name__

    def forward(self, *xs):  # abstract
        raise NotImplementedError(f"{type(self).__name__} must define forward")

    def backward(self, *gys):  # abstract
        raise NotImplementedError(f"{type(self).__name__} does not support backward")

    _saved_versions = ()

    def save_for_backward(self, *arrays):
        """Keep arrays for backward (see the module docstring)."""
        self._saved = arrays

    @property
    def saved_tensors(self):
        """What ``save_for_backward`` kept, as Tensors."""
        if self._released:
            raise RuntimeError(f"{type(self).__name__}: {_SECOND_BACKWARD}")
        for s, then in zip(self._saved, self._saved_versions):
            if s is not None and version_of(_saved_array(s)) != then:
                raise RuntimeError(_MODIFIED.format(
                    shape=tuple(_saved_array(s).shape), node=repr(self), now=version_of(_saved_array(s)),
                    then=then))
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
        fn = cls(**kwargs) if kwargs else cls()
        if len(inputs) > 1:
            _check_one_device(fn, inputs)
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
            fn._saved_versions = tuple(None if s is None else version_of(_saved_array(s)) for s in fn._saved)
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
                _mark_view(t, inputs)
            results.append(t)
        return results[0] if single else tuple(results)

    def __repr__(self):
        return f"<{self.name}Backward>"


def _mark_view(t, inputs):
    """Mark ``t`` as a view of the input whose memory its array shares
    (reshape, permute, basic indexing, an identity): an in-place op on
    either must not go unnoticed by the other (``functional/inplace.py``)."""
    y = t.data
    if y.base is None and all(y is not x.data for x in inputs):
        return                      # a fresh array, the common case
    owner = _owner(y)
    for x in inputs:
        if _owner(x.data) is owner:
            t._view_of = x
            views = x.__dict__.setdefault("_views", [])
            views[:] = [v for v in views if v() is not None]
            views.append(weakref.ref(t))
            return


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


def _check_one_device(fn, inputs):
    """RuntimeError naming both devices when ``inputs`` live on different
    ones. All-NumPy inputs (the common case) cost one type() per input."""
    kind = type(inputs[0].data)
    if kind is numpy.ndarray and all(type(x.data) is kind for x in inputs[1:]):
        return
    from .device import device_of
    devices = list(dict.fromkeys(device_of(x.data) for x in inputs))
    if len(devices) > 1:
        raise RuntimeError(
            f"{fn.name}: expected all inputs on one device, got {devices[0]} and {devices[1]}; "
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


def _run_hooks(hooks, g):
    """Call each hook with the gradient; one that returns a Tensor replaces it."""
    for hook in list(hooks.values()):
        new = hook(g)
        if new is not None:
            if not isinstance(new, Tensor):
                raise TypeError(f"a tensor hook must return None or a Tensor, got {type(new).__name__}")
            if new.shape != g.shape:
                raise RuntimeError(f"a tensor hook changed the gradient's shape from {g.shape} to {new.shape}")
            g = new
    return g


def _node_hooks(node, slots):
    """Run the hooks of the tensors ``node`` created on their summed
    gradients (replacing them), then fill the retained ``.grad``s."""
    if node._tensor_hooks:
        for index, hooks in node._tensor_hooks.items():
            if slots[index] is not None and hooks:
                slots[index] = _run_hooks(hooks, slots[index])
    if node._retained:
        for index, ref in node._retained.items():
            t = ref()
            if t is not None and slots[index] is not None:
                t._accumulate(slots[index])


def _needed(start_nodes, input_leaves, input_slots):
    """The nodes whose backward leads to an input of ``autograd.grad``: a
    post-order walk (parents first), iterative like the engine."""
    needed = {}
    for start in start_nodes:
        stack = [(start, False)]
        while stack:
            node, expanded = stack.pop()
            if node in needed:
                continue
            if not expanded:
                stack.append((node, True))
                stack.extend((e[0], False) for e in node.edges if isinstance(e, tuple) and e[0] not in needed)
                continue
            needed[node] = any(
                (e in input_leaves) if isinstance(e, Tensor) else
                e is not None and (e in input_slots or needed[e[0]]) for e in node.edges)
    return needed


def queue_callback(callback):
    """Call ``callback()`` (no arguments) once the backward pass now running
    has finished, every ``.grad`` accumulated and every hook run: torch's
    ``Variable._execution_engine.queue_callback``. Only a hook running
    inside backward may queue one (DistributedDataParallel waits for its
    last gradient exchange this way)."""
    callbacks = getattr(_state, "callbacks", None)
    if callbacks is None:
        raise RuntimeError("queue_callback: can only be called during a backward pass (from a hook)")
    callbacks.append(callback)


def run_backward(roots, grads, retain_graph=False, create_graph=False, inputs=None):
    """``_backpropagate``, then the callbacks its hooks queued
    (``queue_callback``), in order. A backward that raises runs none."""
    outer = getattr(_state, "callbacks", None)
    _state.callbacks = callbacks = []
    try:
        result = _backpropagate(roots, grads, retain_graph, create_graph, inputs)
    finally:
        _state.callbacks = outer   # a backward inside a hook keeps its own list
    for callback in callbacks:
        callback()
    return result


def _run_post_accumulate_hooks(leaf):
    for hook in list(leaf._post_accumulate_hooks.values()):
        hook(leaf)


def _backpropagate(roots, grads, retain_graph=False, create_graph=False, inputs=None):
    """Backpropagate ``grads`` (Tensors) from ``roots`` (Tensors) to every
    leaf that requires grad, accumulating into ``leaf.grad``.

    With ``inputs`` (Tensors), nothing is accumulated: the gradient that
    reaches each input is returned instead, a list with None for an input
    that got none (``autograd.grad``), and only the nodes that lead to an
    input run."""
    # The caller's arrays: a leaf must copy them rather than keep them as
    # its .grad (Tensor._accumulate), even when an op passes one through.
    given = {id(g.data) for g in grads}
    capture = inputs is not None
    if capture:
        input_leaves = {x: k for k, x in enumerate(inputs) if x.grad_fn is None}
        input_slots = {(x.grad_fn, x._output_index): k for k, x in enumerate(inputs) if x.grad_fn is not None}
        captured = [None] * len(inputs)
    deferred = {}  # leaf -> its summed gradient, for leaves with hooks or captured ones
    pending = {}  # node -> list of gradients received, one slot per output
    start_nodes = []
    for root, g in zip(roots, grads):
        node = root.grad_fn
        if node is None:
            if root.requires_grad:
                deferred[root] = g if root not in deferred else deferred[root] + g
            continue
        if node._released:
            raise RuntimeError(f"{type(node).__name__}: {_SECOND_BACKWARD}")
        slots = pending.setdefault(node, [None] * len(node._outputs_meta))
        i = root._output_index
        slots[i] = g if slots[i] is None else slots[i] + g
        start_nodes.append(node)
    start_nodes = list(dict.fromkeys(start_nodes))
    if capture:
        needed = _needed(start_nodes, input_leaves, input_slots)
        input_nodes = {node for node, _ in input_slots}

    # Pass 1: count how many edges lead into each node (with inputs, only
    # into nodes that lead to one or whose output is one), and into each
    # leaf with post-accumulate hooks: they run once its last edge is done.
    consumers = {}
    leaf_edges = {}
    accumulated = set()     # such leaves that got a gradient in this pass
    stack = [n for n in start_nodes if not capture or needed[n]]
    seen = set(stack)
    while stack:
        node = stack.pop()
        for edge in node.edges:
            if edge is None:
                continue
            if isinstance(edge, Tensor):
                if edge._post_accumulate_hooks and not capture:
                    leaf_edges[edge] = leaf_edges.get(edge, 0) + 1
                continue
            parent = edge[0]
            if capture and not (needed[parent] or parent in input_nodes):
                continue
            if parent._released:
                raise RuntimeError(f"{type(parent).__name__}: {_SECOND_BACKWARD}")
            consumers[parent] = consumers.get(parent, 0) + 1
            if parent not in seen and (not capture or needed[parent]):
                seen.add(parent)
                stack.append(parent)

    # Pass 2: run each node once every consumer has sent its gradient.
    ready = [n for n in start_nodes if consumers.get(n, 0) == 0]
    with set_grad_enabled(create_graph):
        while ready:
            node = ready.pop()
            slots = pending.pop(node, None)
            if slots is not None and (node._tensor_hooks or node._retained):
                _node_hooks(node, slots)
            if capture:
                for index in range(len(node._outputs_meta)):
                    k = input_slots.get((node, index))
                    if k is not None:
                        captured[k] = slots[index] if slots is not None else None
                if not needed.get(node, False):
                    continue
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
                    if gx is not None and not (capture and edge not in input_leaves):
                        gx = _as_grad_tensor(gx, edge.shape, edge.dtype, node)
                        if capture or edge._hooks:  # summed first: hooks see the whole gradient, once
                            deferred[edge] = gx if edge not in deferred else deferred[edge] + gx
                        else:
                            edge._accumulate(gx, owned=id(gx.data) not in given)
                            if edge in leaf_edges:
                                accumulated.add(edge)
                    if edge in leaf_edges:
                        leaf_edges[edge] -= 1
                        if leaf_edges[edge] == 0 and edge in accumulated:
                            _run_post_accumulate_hooks(edge)
                    continue
                parent, index = edge
                if capture and not (needed[parent] or parent in input_nodes):
                    continue
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

        for leaf, g in deferred.items():
            if leaf._hooks:
                g = _run_hooks(leaf._hooks, g)
            if capture:
                if leaf in input_leaves:
                    captured[input_leaves[leaf]] = g
            else:
                leaf._accumulate(g)
                if leaf._post_accumulate_hooks:
                    _run_post_accumulate_hooks(leaf)
    return captured if capture else None


def upstream_gradient(y, g, where, output, argument):
    """The gradient to start backward from at output ``y``: ``g`` as a
    Tensor of y's dtype, checked to have y's shape, or ones when ``g`` is
    None, which only a one-element ``y`` allows (as in torch)."""
    if g is None:
        if y.data.size != 1:
            raise RuntimeError(f"{where}grad can be implicitly created only for scalar outputs; {output} has "
                               f"shape {y.shape}, so pass {argument} of that shape")
        return Tensor._wrap(get_array_module(y.data).ones_like(y.data))
    g = g if isinstance(g, Tensor) else Tensor(g)
    if g.shape != y.shape:
        raise ValueError(f"{where}{argument} has shape {g.shape} but {output} has shape {y.shape}")
    return g if g.dtype == y.dtype else g.to(y.dtype)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=None,
         materialize_grads=False):
    """The gradients of ``outputs`` with respect to ``inputs``, as torch's
    ``torch.autograd.grad``: a tuple with one Tensor per input; no ``.grad``
    is touched.

    ``outputs`` and ``inputs`` are Tensors or sequences of them;
    ``grad_outputs`` gives the upstream gradient of each output (None, or a
    None entry, means ones, allowed for one-element outputs only).
    ``retain_graph`` defaults to ``create_graph``; with ``create_graph`` the
    gradients have a graph of their own (double backward). An input the
    outputs do not depend on raises unless ``allow_unused`` (then its
    gradient is None, or zeros with ``materialize_grads``)."""
    outputs = (outputs,) if isinstance(outputs, Tensor) else tuple(outputs)
    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    if allow_unused is None:
        allow_unused = materialize_grads
    elif materialize_grads and not allow_unused:
        raise ValueError("Expected allow_unused to be True or not passed when materialize_grads=True, "
                         "but got: allow_unused=False.")
    if retain_graph is None:
        retain_graph = create_graph
    if grad_outputs is None:
        grad_outputs = (None,) * len(outputs)
    else:
        grad_outputs = (grad_outputs,) if isinstance(grad_outputs, Tensor) else tuple(grad_outputs)
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"grad: got {len(grad_outputs)} grad_outputs for {len(outputs)} outputs")
    for k, x in enumerate(inputs):
        if not isinstance(x, Tensor):
            raise TypeError(f"grad: inputs[{k}] must be a Tensor, got {type(x).__name__}")
        if not x.requires_grad:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
    grads = []
    for k, (y, g) in enumerate(zip(outputs, grad_outputs)):
        if not y.requires_grad:
            raise RuntimeError(f"element {k} of tensors does not require grad and does not have a grad_fn")
        grads.append(upstream_gradient(y, g, "grad(): ", f"outputs[{k}]", f"grad_outputs[{k}]"))
    result = run_backward(list(outputs), grads, retain_graph=retain_graph, create_graph=create_graph,
                          inputs=inputs)
    for k, g in enumerate(result):
        if g is None:
            if not allow_unused:
                raise RuntimeError(
                    f"The differentiated Tensor at index {k} appears to not have been used in the graph. "
                    f"Set allow_unused=True if this is the desired behavior.")
            if materialize_grads:
                result[k] = Tensor._wrap(get_array_module(inputs[k].data).zeros_like(inputs[k].data))
        elif not create_graph and g.requires_grad:
            result[k] = g.detach()
    return tuple(result)


def __getattr__(name):
    # mc.autograd.gradcheck / gradgradcheck, as in torch.autograd; looked up
    # late because gradcheck.py needs this module and the Tensor class first.
    if name in ("gradcheck", "gradgradcheck"):
        import importlib
        return getattr(importlib.import_module("minicnn.gradcheck"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
