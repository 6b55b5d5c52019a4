"""The autograd graph of a result, drawn with Graphviz.

What is drawn
-------------
``graph(output)`` walks the graph the engine will run backward through
(``minicnn/autograd.py``): from ``output.grad_fn`` along every node's
``edges``. It draws

- one box per recorded ``Function`` node: its op name (the class name),
  the shape of each output (``node._outputs_meta``) and the bytes it keeps
  for backward (``saved_bytes``);
- one oval per leaf that requires grad (an edge that is a Tensor), named
  after the parameter it is when ``params`` names it, else by its shape;
- one edge per recorded edge, from the node (or leaf) that made the input
  to the node that consumed it, so the picture reads in the forward
  direction; an input used twice (``x * x``) is two edges;
- the output itself, as a grey oval fed by its node.

Inputs that do not require grad (the images, the labels) have no edge in
the graph (the engine records None for them) and are not drawn.

The result is a ``graphviz.Digraph``: ``g.source`` is the DOT text, which
needs nothing else; rendering to SVG or PNG needs Graphviz's ``dot``
program (``save_graph``). Like torchviz's ``make_dot``, but the saved bytes
are read from the engine rather than guessed.
"""
import os
import shutil

from ..autograd import _SavedOutput, run_backward
from ..backend import get_array_module
from ..summary import _format_bytes      # decimal units, as mc.summary prints them
from ..tensor import Tensor

#: Node attributes that are the graph's structure or bookkeeping, not data
#: kept for backward.
_STRUCTURE = frozenset(("edges", "_outputs_meta", "needs_input_grad", "_saved_versions", "_tensor_hooks",
                        "_retained", "recording", "_released"))

_FREED = ("{node} was freed by a backward pass; draw the graph before backward(), or call "
          "backward(retain_graph=True)")


# -- reading the engine's graph ------------------------------------------
def _is_array(value):
    return hasattr(value, "nbytes") and hasattr(value, "shape") and hasattr(value, "dtype")


def _collect_arrays(value, found, depth=0):
    """Add to ``found`` (id -> array) the arrays ``value`` holds: an array,
    a saved Tensor, a saved output, or a tuple / list of them."""
    if isinstance(value, Tensor):
        value = value.data
    elif isinstance(value, _SavedOutput):
        value = value.array
    if _is_array(value):
        found.setdefault(id(value), value)
    elif isinstance(value, (tuple, list)) and depth < 2:
        for v in value:
            _collect_arrays(v, found, depth + 1)


def saved_arrays(node):
    """The arrays ``node`` keeps for its backward, each once: what
    ``save_for_backward`` kept (a saved input as its Tensor's array, a saved
    output as the array) and the arrays forward stored as attributes (max
    pooling's argmax, dropout's mask). A saved input or parameter is a
    reference to memory that exists anyway, not a copy; it is listed all
    the same, since the node keeps it alive."""
    if node._released:
        raise ValueError(_FREED.format(node=repr(node)))
    found = {}
    for key, value in vars(node).items():
        if key not in _STRUCTURE:
            _collect_arrays(value, found)
    return list(found.values())


def saved_bytes(node):
    """The bytes of ``saved_arrays(node)`` (a view counts its own size)."""
    return sum(int(a.nbytes) for a in saved_arrays(node))


def _walk(outputs):
    """The nodes behind ``outputs`` in topological order (a node after every
    node that feeds it) and the leaves they reach, in order of discovery.
    Iterative post-order, like the engine: a 20,000-op chain is fine."""
    order, leaves, seen = [], {}, set()
    for t in outputs:
        if t.grad_fn is None:
            if t.requires_grad:
                leaves.setdefault(id(t), t)
            continue
        stack = [(t.grad_fn, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if node in seen:
                continue
            seen.add(node)
            if node._released:
                raise ValueError(_FREED.format(node=repr(node)))
            stack.append((node, True))
            for edge in reversed(node.edges):
                if isinstance(edge, Tensor):
                    leaves.setdefault(id(edge), edge)
                elif edge is not None and edge[0] not in seen:
                    stack.append((edge[0], False))
    return order, list(leaves.values())


def _norm(g):
    data = g.data if isinstance(g, Tensor) else g
    xp = get_array_module(data)
    return float(xp.sqrt(xp.sum(xp.square(data.astype(xp.float64)))))


def edge_gradient_norms(outputs, nodes, leaves):
    """{(node, i): the L2 norm of the gradient node's backward sends along
    its edge i}, from one backward pass of ones (the gradient of the sum of
    the outputs) run by the engine with ``retain_graph=True``.

    Each node's ``backward`` is wrapped for the pass (an instance attribute
    that shadows the method, removed afterwards) to see what it returns per
    input: that is the gradient on one edge, before the engine sums the
    edges that meet at a tensor used twice. Leaves' ``.grad`` are not
    touched (the pass runs like ``autograd.grad`` with the leaves as its
    inputs); tensor hooks run as in any backward."""
    norms = {}

    def spy(node, backward):
        def run(*gys):
            gxs = backward(*gys)
            for i, g in enumerate(gxs if isinstance(gxs, tuple) else (gxs,)):
                if g is not None and i < len(node.edges) and node.edges[i] is not None:
                    norms[(node, i)] = _norm(g)
            return gxs
        return run

    for node in nodes:
        node.backward = spy(node, node.backward)
    try:
        roots = [t for t in outputs if t.requires_grad]
        ones = [Tensor._wrap(get_array_module(t.data).ones_like(t.data)) for t in roots]
        if leaves:
            run_backward(roots, ones, retain_graph=True, inputs=leaves)
    finally:
        for node in nodes:
            vars(node).pop("backward", None)
    return norms


# -- grouping by module, for collapse=True -------------------------------
def _module_of(name, depth):
    """'layer1.0.conv1.weight' -> 'layer1.0' at depth 2 (the module path
    without the parameter's own name, cut to ``depth`` parts)."""
    parts = name.split(".")[:-1] or [name]
    return ".".join(parts[:depth])


def _groups(nodes, param_names, depth):
    """node -> the module group it belongs to, or None. A node that uses a
    parameter belongs to that parameter's module; one that uses none joins
    the group of the latest node that feeds it (the residual add of a
    ResNet block joins the block, not the one before it, whose output it
    also adds)."""
    position = {node: k for k, node in enumerate(nodes)}
    group = {}
    for node in nodes:
        own = [_module_of(param_names[id(e)], depth) for e in node.edges
               if isinstance(e, Tensor) and id(e) in param_names]
        if own:
            group[node] = own[0]
            continue
        parents = [e[0] for e in node.edges if isinstance(e, tuple)]
        group[node] = group[max(parents, key=position.get)] if parents else None
    return group


def _runs(names, group_nodes, successors):
    """Merge consecutive repeated groups: a group joins the run before it
    when they are siblings ('layer1.1' after 'layer1.0'), run the same op
    sequence, and the run's last group feeds it. Returns lists of names."""
    runs = []
    for name in names:
        if runs:
            last = runs[-1][-1]
            siblings = last.rpartition(".")[0] == name.rpartition(".")[0] and "." in name
            same = [n.name for n in group_nodes[last]] == [n.name for n in group_nodes[name]]
            if siblings and same and name in successors[last]:
                runs[-1].append(name)
                continue
        runs.append([name])
    return runs


# -- drawing --------------------------------------------------------------
def _shapes(node):
    shapes = [tuple(shape) for shape, _, _ in node._outputs_meta]
    return ", ".join(str(s) for s in shapes)


def _node_label(node, show_saved):
    lines = [node.name, _shapes(node)]
    if show_saved:
        lines.append(f"saved {_format_bytes(saved_bytes(node))}")
    return "\n".join(lines)


def _leaf_label(leaf, param_names):
    name = param_names.get(id(leaf))
    shape = str(tuple(leaf.shape))
    return f"{name}\n{shape}" if name is not None else f"leaf\n{shape}"


def graph(output, params=None, show_saved=True, grad_norms=False, collapse=False):
    """The autograd graph of ``output`` (a Tensor, or a sequence of them) as
    a ``graphviz.Digraph`` (see the module docstring for what is drawn).

    params:     a dict name -> Tensor (``dict(model.named_parameters())``)
                that names the leaves; other leaves are labelled by shape.
    show_saved: write in each node the bytes it keeps for backward.
    grad_norms: label each edge with the norm of the gradient that flows
                along it in backward, from a backward pass of ones (for a
                scalar loss, the loss's own gradient) that ``graph`` runs
                with ``retain_graph=True``: call it before ``backward()``
                or after ``backward(retain_graph=True)``. Leaves' ``.grad``
                are left alone.
    collapse:   draw one box per module group instead of one per op: the
                nodes using a parameter of module ``layer1.0.conv1`` form
                group ``layer1.0`` (``collapse=True``, the first two parts
                of the name; an int n keeps n parts), parameter-free ops
                join the group that feeds them, and consecutive sibling
                groups with the same ops (``layer1.1``, ``layer1.2``) merge
                into one box marked with the count. Needs ``params``.

    The DOT node names are ``fn<id(node)>`` for a Function node,
    ``leaf<id(tensor)>`` for a leaf, ``group<id>`` for a collapsed group and
    ``output<k>`` for the k-th output, so ``g.node(name, color=...)`` can
    restyle one. Raises ValueError when the graph was freed by a backward
    pass."""
    import graphviz

    outputs = [output] if isinstance(output, Tensor) else list(output)
    for k, t in enumerate(outputs):
        if not isinstance(t, Tensor):
            raise TypeError(f"graph: output must be a Tensor or a sequence of Tensors, got "
                            f"{type(t).__name__} at index {k}")
    if collapse and not params:
        raise ValueError("graph: collapse=True groups the nodes by the module of the parameters they use; "
                         "pass params=dict(model.named_parameters())")
    param_names = {id(t): name for name, t in (params or {}).items()}
    nodes, leaves = _walk(outputs)
    norms = edge_gradient_norms(outputs, nodes, leaves) if grad_norms else {}

    g = graphviz.Digraph("autograd", graph_attr={"rankdir": "TB"},
                         node_attr={"shape": "box", "style": "filled", "fillcolor": "white",
                                    "fontname": "monospace", "fontsize": "10"})
    unit = {}                                   # node or leaf id -> the DOT node that shows it
    for leaf in leaves:
        unit[id(leaf)] = f"leaf{id(leaf)}"
    for node in nodes:
        unit[id(node)] = f"fn{id(node)}"

    if collapse:
        depth = 2 if collapse is True else int(collapse)
        group = _groups(nodes, param_names, depth)
        group_nodes = {}
        for node in nodes:
            if group[node] is not None:
                group_nodes.setdefault(group[node], []).append(node)
        successors = {name: set() for name in group_nodes}
        for node in nodes:
            for e in node.edges:
                if isinstance(e, tuple) and group[e[0]] is not None and group[e[0]] != group[node] \
                        and group[node] is not None:
                    successors[group[e[0]]].add(group[node])
        grouped_params = {id(e) for node in nodes if group[node] is not None
                          for e in node.edges if isinstance(e, Tensor) and id(e) in param_names}
        for run in _runs(list(group_nodes), group_nodes, successors):
            members = [n for name in run for n in group_nodes[name]]
            ops = {}
            for n in group_nodes[run[0]]:
                ops[n.name] = ops.get(n.name, 0) + 1
            title = run[0] if len(run) == 1 else f"{run[0]} .. {run[-1]}  (x{len(run)})"
            lines = [title, ", ".join(f"{op} x{c}" if c > 1 else op for op, c in ops.items()),
                     _shapes(group_nodes[run[-1]][-1])]
            if show_saved:
                lines.append(f"saved {_format_bytes(sum(saved_bytes(n) for n in members))}")
            dot_name = f"group{id(members[0])}"
            g.node(dot_name, "\n".join(lines), fillcolor="lightblue")
            for n in members:
                unit[id(n)] = dot_name
                for e in n.edges:
                    if isinstance(e, Tensor) and id(e) in grouped_params:
                        unit[id(e)] = dot_name
        drawn_leaves = [leaf for leaf in leaves if not unit[id(leaf)].startswith("group")]
        drawn_nodes = [node for node in nodes if group[node] is None]
    else:
        drawn_leaves, drawn_nodes = leaves, nodes

    for leaf in drawn_leaves:
        g.node(unit[id(leaf)], _leaf_label(leaf, param_names), shape="ellipse", fillcolor="lightyellow")
    for node in drawn_nodes:
        g.node(unit[id(node)], _node_label(node, show_saved))

    drawn_edges = set()
    for node in nodes:
        for i, e in enumerate(node.edges):
            if e is None:
                continue
            parent = e if isinstance(e, Tensor) else e[0]
            tail, head = unit[id(parent)], unit[id(node)]
            if collapse:
                if tail == head or (tail, head) in drawn_edges:
                    continue                    # inside a group, or already linked
                drawn_edges.add((tail, head))
            label = []
            if isinstance(e, tuple) and len(parent._outputs_meta) > 1:
                label.append(f"out {e[1]}")
            if (node, i) in norms and not collapse:
                label.append(f"|g| {norms[(node, i)]:.3g}")
            g.edge(tail, head, label="\n".join(label) or None)

    for k, t in enumerate(outputs):
        name = f"output{k}"
        g.node(name, f"output\n{tuple(t.shape)}", shape="ellipse", fillcolor="lightgrey")
        source = t if t.grad_fn is None else t.grad_fn
        if id(source) in unit:
            g.edge(unit[id(source)], name)
    return g


def save_graph(output, path, **kwargs):
    """Draw ``graph(output, **kwargs)`` into ``path``: the DOT text for a
    ``.dot`` (or ``.gv``) file, which needs nothing else; any other suffix
    (``.svg``, ``.png``, ``.pdf``) is rendered by Graphviz's ``dot``
    program, and a RuntimeError says so when it is not installed. Returns
    the Digraph."""
    g = graph(output, **kwargs)
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower().lstrip(".")
    if suffix in ("dot", "gv"):
        with open(path, "w", encoding="utf-8") as f:
            f.write(g.source)
        return g
    if not suffix:
        raise ValueError(f"save_graph: path {path!r} has no suffix; use .dot, .svg or .png")
    if shutil.which("dot") is None:
        raise RuntimeError(
            f"save_graph: rendering {path!r} needs Graphviz's `dot` program, which is not on PATH; install "
            f"Graphviz (apt install graphviz, brew install graphviz, conda install graphviz) or save to a "
            f".dot file and render it elsewhere")
    with open(path, "wb") as f:
        f.write(g.pipe(format=suffix))
    return g
