"""mc.viz.graph: the drawing is checked against the engine's graph walked
here independently (one DOT node per recorded Function reachable from the
output, one DOT edge per recorded edge, leaves named after the parameters),
the saved bytes against the arrays each op is known to keep, the edge
gradient norms against gradients computed by backward() and
autograd.grad, and the DOT text is parsed back with pydot."""
import importlib
import subprocess
import sys

import numpy
import pytest

pytest.importorskip("graphviz")
pydot = pytest.importorskip("pydot")

import minicnn as mc  # noqa: E402
import minicnn.nn.functional as F  # noqa: E402
from minicnn.__main__ import main  # noqa: E402
from minicnn.viz import graph, save_graph, saved_bytes  # noqa: E402
from minicnn.viz.graph import edge_gradient_norms  # noqa: E402

# the module; ``minicnn.viz.graph`` as an attribute is the function
viz_graph_module = importlib.import_module("minicnn.viz.graph")

# pydot's parser calls pyparsing names that pyparsing 3 deprecates
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pydot")


# -- an independent walk of the engine's graph -----------------------------
def recorded(output):
    """(the Function nodes reachable from ``output``, the list of recorded
    edges as (tail name, head name) in DOT naming), by a plain stack walk
    over ``grad_fn.edges``."""
    nodes, edges, stack = set(), [], [output.grad_fn]
    while stack:
        node = stack.pop()
        if node in nodes:
            continue
        nodes.add(node)
        for edge in node.edges:
            if edge is None:
                continue
            if isinstance(edge, mc.Tensor):
                edges.append((f"leaf{id(edge)}", f"fn{id(node)}"))
            else:
                edges.append((f"fn{id(edge[0])}", f"fn{id(node)}"))
                stack.append(edge[0])
    return nodes, edges


def parse(g):
    """The DOT text parsed by pydot: {node name: label}, [(tail, head, label)]."""
    (parsed,) = pydot.graph_from_dot_data(g.source)
    nodes = {n.get_name(): (n.get("label") or "").strip('"') for n in parsed.get_nodes()
             if n.get_name() not in ("node", "graph", "edge")}
    edges = [(e.get_source(), e.get_destination(), (e.get("label") or "").strip('"')) for e in parsed.get_edges()]
    return nodes, edges


def lenet_step(batch=2):
    mc.manual_seed(0)
    model = mc.models.get_model("lenet5")
    x = mc.randn(batch, 1, 32, 32)
    loss = F.cross_entropy(model(x), mc.tensor([3, 7, 1][:batch]))
    return model, loss


# -- structure ----------------------------------------------------------
def test_small_graph_by_hand():
    a = mc.randn(3, 4, dtype=mc.float64, requires_grad=True)
    b = mc.randn(3, 4, dtype=mc.float64, requires_grad=True)
    c = mc.randn(3, 4, dtype=mc.float64)                 # no grad: no edge, not drawn
    h = a * b
    y = (h + c).tanh() * h                               # h feeds two nodes
    out = y.sum()
    nodes, edges = parse(graph(out, params={"alpha": a, "beta": b}))
    fn_nodes = {name for name in nodes if name.startswith("fn")}
    assert fn_nodes == {f"fn{id(n)}" for n in recorded(out)[0]}
    assert len(fn_nodes) == 5                            # Mul, Add, Tanh, Mul, Sum
    assert nodes[f"leaf{id(a)}"].split("\n") == ["alpha", "(3, 4)"]
    assert nodes[f"leaf{id(b)}"].split("\n") == ["beta", "(3, 4)"]
    assert f"leaf{id(c)}" not in nodes and len(nodes) == 5 + 2 + 1   # + the output
    assert sorted(e[:2] for e in edges if e[1] != "output0") == sorted(recorded(out)[1])
    assert (f"fn{id(out.grad_fn)}", "output0", "") in edges
    label = nodes[f"fn{id(h.grad_fn)}"].split("\n")
    assert label[0] == "Mul" and label[1] == "(3, 4)" and label[2] == "saved 192 B"   # a and b, 2 x 12 x 8


def test_unnamed_leaves_are_labelled_by_shape():
    w = mc.randn(2, 5, requires_grad=True)
    out = (w * 2.0).sum()
    nodes, _ = parse(graph(out))
    assert nodes[f"leaf{id(w)}"].split("\n") == ["leaf", "(2, 5)"]


def test_multi_output_node_labels_which_output():
    x = mc.randn(4, 6, requires_grad=True)
    first, second = mc.split(x, 3, dim=1)
    out = (first * second).sum()
    nodes, edges = parse(graph(out))
    split = f"fn{id(first.grad_fn)}"
    assert nodes[split].split("\n")[1] == "(4, 3), (4, 3)"
    assert sorted(e[2] for e in edges if e[0] == split) == ["out 0", "out 1"]


def test_saved_bytes_are_what_the_ops_keep():
    x = mc.randn(2, 3, 8, 8, requires_grad=True)
    w = mc.randn(4, 3, 3, 3, requires_grad=True)
    y = F.conv2d(x, w)
    assert saved_bytes(y.grad_fn) == x.data.nbytes + w.data.nbytes          # conv keeps x and w
    t = y.tanh()
    assert saved_bytes(t.grad_fn) == t.data.nbytes                          # tanh keeps its output
    sq = x * x
    assert saved_bytes(sq.grad_fn) == x.data.nbytes                         # one array, saved twice
    p = F.max_pool2d(t, 2)
    idx = [v for v in vars(p.grad_fn).values() if isinstance(v, numpy.ndarray)]
    assert saved_bytes(p.grad_fn) == sum(a.nbytes for a in idx) > 0         # the argmax only, not t
    assert saved_bytes(p.grad_fn) < t.data.nbytes
    d = F.dropout(x, 0.5, training=True)
    assert saved_bytes(d.grad_fn) == d.grad_fn.mask.nbytes
    r = x.reshape(2, -1)
    assert saved_bytes(r.grad_fn) == 0
    nodes, _ = parse(graph(d.sum() + r.sum()))
    assert nodes[f"fn{id(d.grad_fn)}"].split("\n")[2] == "saved 1.54 kB"   # 2 x 3 x 8 x 8 float32
    nodes, _ = parse(graph(d.sum(), show_saved=False))
    assert len(nodes[f"fn{id(d.grad_fn)}"].split("\n")) == 2


def test_lenet5_step():
    model, loss = lenet_step()
    params = dict(model.named_parameters())
    g = graph(loss, params=params)
    nodes, edges = parse(g)
    functions, recorded_edges = recorded(loss)
    assert {n for n in nodes if n.startswith("fn")} == {f"fn{id(n)}" for n in functions}
    assert sorted(e[:2] for e in edges if e[1] != "output0") == sorted(recorded_edges)
    leaf_names = sorted(label.split("\n")[0] for n, label in nodes.items() if n.startswith("leaf"))
    assert leaf_names == sorted(params)
    for name, p in params.items():
        assert nodes[f"leaf{id(p)}"].split("\n") == [name, str(tuple(p.shape))]
    ops = sorted(label.split("\n")[0] for n, label in nodes.items() if n.startswith("fn"))
    assert ops.count("Conv2d") == 3 and ops.count("Linear") == 2 and ops.count("Tanh") == 4
    loss.backward()                                          # frees the graph
    with pytest.raises(ValueError, match="retain_graph=True"):
        graph(loss)


def test_resnet50_forward_collapses():
    mc.manual_seed(0)
    model = mc.models.get_model("resnet50")
    params = dict(model.named_parameters())
    out = model(mc.zeros(2, 3, 32, 32)).sum()
    full_nodes, full_edges = parse(graph(out, params=params))
    functions, recorded_edges = recorded(out)
    assert len([n for n in full_nodes if n.startswith("fn")]) == len(functions)
    assert len([e for e in full_edges if e[1] != "output0"]) == len(recorded_edges)
    nodes, edges = parse(graph(out, params=params, collapse=True))
    assert len(nodes) < len(full_nodes) // 10
    titles = [label.split("\n")[0] for label in nodes.values()]
    # one box per first block, one per run of identical blocks after it
    for expected in ("layer1.0", "layer1.1 .. layer1.2  (x2)", "layer2.1 .. layer2.3  (x3)",
                     "layer3.1 .. layer3.5  (x5)", "layer4.0"):
        assert expected in titles
    block = nodes[[n for n, label in nodes.items() if label.startswith("layer1.0")][0]].split("\n")
    assert block[1] == "Conv2d x4, BatchNorm x4, ReLU x3, Add"     # with the downsample branch
    # the blocks form a chain and every parameter is inside a box
    assert not any(n.startswith("leaf") for n in nodes)
    node_names = set(nodes)
    assert all(tail in node_names and head in node_names for tail, head, _ in edges)
    assert len(edges) == len(set((t, h) for t, h, _ in edges))


def test_collapse_needs_params():
    out = (mc.randn(3, requires_grad=True) * 2).sum()
    with pytest.raises(ValueError, match="params"):
        graph(out, collapse=True)


def test_output_must_be_tensors():
    with pytest.raises(TypeError, match="index 0"):
        graph([numpy.zeros(3)])


# -- gradient norms -----------------------------------------------------
def test_grad_norms_match_backward():
    model, loss = lenet_step()
    params = dict(model.named_parameters())
    # the activations, to compare with the gradients reaching them
    acts = []
    handles = [m.register_forward_hook(lambda m, i, o: acts.append(o)) for m in model.features]
    loss = F.cross_entropy(model(mc.randn(2, 1, 32, 32)), mc.tensor([3, 7]))
    for h in handles:
        h.remove()
    g = graph(loss, params=params, grad_norms=True)
    assert all(p.grad is None for p in params.values())            # graph's own pass leaves .grad alone
    nodes, edges = parse(g)
    labels = {(t, h): label for t, h, label in edges}
    act_grads = mc.autograd.grad(loss, acts, retain_graph=True)
    loss.backward()
    for name, p in params.items():
        expected = numpy.linalg.norm(p.grad.numpy().astype(numpy.float64))
        consumer = next(h for t, h, _ in edges if t == f"leaf{id(p)}")
        assert float(labels[(f"leaf{id(p)}", consumer)].removeprefix("|g| ")) == pytest.approx(expected, rel=5e-3)
    for act, ga in zip(acts, act_grads):
        tail = f"fn{id(act.grad_fn)}"
        (head,) = [h for t, h, _ in edges if t == tail]
        expected = numpy.linalg.norm(ga.numpy().astype(numpy.float64))
        assert float(labels[(tail, head)].removeprefix("|g| ")) == pytest.approx(expected, rel=5e-3)


def test_grad_norms_are_per_edge_not_summed():
    x = mc.randn(5, 4, dtype=mc.float64, requires_grad=True)
    h = x.tanh()
    u, v = h * 2.0, h * 3.0
    out = u.sum() + v.sum()
    nodes, leaves = viz_graph_module._walk([out])
    norms = edge_gradient_norms([out], nodes, leaves)
    ones = numpy.sqrt(20.0)
    assert norms[(u.grad_fn, 0)] == pytest.approx(2.0 * ones, rel=1e-12)
    assert norms[(v.grad_fn, 0)] == pytest.approx(3.0 * ones, rel=1e-12)
    (gx,) = mc.autograd.grad(out, [x], retain_graph=True)
    assert norms[(h.grad_fn, 0)] == pytest.approx(numpy.linalg.norm(gx.numpy()), rel=1e-12)
    assert "backward" not in vars(h.grad_fn)                       # the spies are gone
    out.backward()                                                  # and the graph still runs
    numpy.testing.assert_allclose(x.grad.numpy(), gx.numpy(), rtol=1e-12)


# -- files and the command line --------------------------------------------
def test_save_graph_writes_dot(tmp_path):
    _, loss = lenet_step()
    g = save_graph(loss, tmp_path / "step.dot")
    assert (tmp_path / "step.dot").read_text() == g.source
    with pytest.raises(ValueError, match="suffix"):
        save_graph(loss, tmp_path / "step")


def test_save_graph_without_dot_says_so(tmp_path, monkeypatch):
    _, loss = lenet_step()
    monkeypatch.setattr(viz_graph_module.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="Graphviz's `dot` program"):
        save_graph(loss, tmp_path / "step.svg")
    assert not (tmp_path / "step.svg").exists()


@pytest.mark.skipif(viz_graph_module.shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_save_graph_renders_svg(tmp_path):
    _, loss = lenet_step()
    save_graph(loss, tmp_path / "step.svg")
    assert "<svg" in (tmp_path / "step.svg").read_text()


def test_cli_writes_the_graph(tmp_path, capsys):
    out = tmp_path / "lenet5.dot"
    assert main(["graph", "lenet5", "--out", str(out)]) == 0
    (parsed,) = pydot.graph_from_dot_data(out.read_text())
    labels = [(n.get("label") or "").strip('"') for n in parsed.get_nodes()]
    assert any(label.startswith("features.0.weight") for label in labels)
    assert any(label.startswith("SoftmaxCrossEntropy") for label in labels)
    assert main(["graph", "no_such_model", "--out", str(out)]) == 1
    assert "unknown model" in capsys.readouterr().err


def test_cli_without_dot_fails_clearly(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(viz_graph_module.shutil, "which", lambda name: None)
    assert main(["graph", "lenet5", "--out", str(tmp_path / "g.png")]) == 1
    assert "dot" in capsys.readouterr().err


def test_import_minicnn_loads_neither_graphviz_nor_matplotlib():
    code = ("import sys, minicnn; assert 'minicnn.viz' not in sys.modules; minicnn.viz.graph; "
            "assert 'graphviz' not in sys.modules and 'matplotlib' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
