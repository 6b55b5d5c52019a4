"""Receptive field, jump and output size of every layer of a model.

Notation (per spatial axis, H and W computed separately)
--------------------------------------------------------
r      receptive field: how many input pixels one output pixel of the
       layer depends on (the width of the window it sees in the image);
j      jump: how many input pixels apart two neighbouring output pixels'
       windows are (the product of the strides so far);
start  where the window of output pixel 0 is centred, in input pixel
       coordinates (pixel i's centre is at i; a negative start means the
       window reaches into the padding).

The network's input has r = 1, j = 1, start = 0. A convolution or pooling
with kernel k, stride s, padding p and dilation d (its taps span
d (k - 1) + 1 pixels) gives

    j_out     = j_in * s
    r_out     = r_in + d (k - 1) j_in
    start_out = start_in + (d (k - 1) / 2 - p) j_in

(Dumoulin and Visin, "A guide to convolution arithmetic", 2016; Araujo
et al., "Computing receptive fields of convolutional neural networks",
Distill 2019). A layer that keeps the size (activation, batch norm,
dropout) passes r, j and start through. An adaptive pooling to an output
that divides the input is a pooling with k = s = input / output; when it
does not divide, k is the widest bin and s the average bin spacing (torch
bins overlap then), an upper bound. A layer that flattens an image (or the
first layer after a plain ``flatten`` in ``forward``) sees the whole of
it: a pooling with k = s = the image's size.

How it is computed: ``receptive_field`` runs the model once on zeros with
a forward hook on every leaf module (a module with no children), so the
layers are met in the order they run, and each layer's input is traced to
the layer that produced it. Where a value comes from several layers
(ResNet's ``out + identity``, Inception's concatenation, both made by
plain ops between modules), the input is traced back through the autograd
graph to every layer that fed it, and the branch with the largest
receptive field is taken (with its jump and start): the receptive field
of a sum is the union of its terms' fields, which for these centred
windows is the largest one. Geometry changed by plain functional calls
inside ``forward`` (``F.max_pool2d`` written out instead of an
``nn.MaxPool2d``) is not seen: such a model gets exact numbers only where
every size change is a module. Transposed convolutions and upsampling
are refused.
"""
import math

from ..kernels.geometry import pair


def _key(edge):
    """A hashable name for a place in the graph: an edge (what
    ``Function.edges`` and ``Tensor._edge()`` give) is a creator node and
    its output slot, or the tensor itself for a leaf."""
    return (id(edge[0]), edge[1]) if isinstance(edge, tuple) else ("leaf", id(edge))


def _widest(states):
    """The state with the largest receptive field (area, then jump)."""
    return max(states, key=lambda s: (s[0][0][0] * s[0][0][1], s[0][1]))


_INPUT = ((1, 1), (1, 1), (0.0, 0.0))  # r, j, start of the network's input


class _Tracer:
    """The (r, j, start) of every tensor a hooked layer produced, with its
    (H, W) (None once flattened)."""

    def __init__(self, x):
        self.state = {_key(x._edge()): (_INPUT, tuple(x.shape[2:]))}
        self.alive = [x]  # keep the tensors alive, so no id is reused during the run

    def lookup(self, t):
        """The state of ``t``: its own, or the widest of the states of the
        hooked layers it was computed from (walked back through the graph)."""
        found, seen = [], set()
        stack = [t._edge()]
        while stack:
            edge = stack.pop()
            if edge is None:
                continue
            if _key(edge) in self.state:
                found.append(self.state[_key(edge)])
            elif isinstance(edge, tuple) and id(edge[0]) not in seen:
                seen.add(id(edge[0]))
                stack.extend(edge[0].edges)
        if not found:  # made from constants only: it sees the input as it is
            return _INPUT, tuple(t.shape[2:]) if t.ndim == 4 else None
        return _widest(found)

    def record(self, t, state, hw):
        self.state[_key(t._edge())] = (state, hw)
        self.alive.append(t)


def _window(module, in_hw, out_hw):
    """(kind, kernel, stride, padding, dilation) of ``module`` as a sliding
    window over its input, per axis; None if it keeps the geometry."""
    from .. import nn
    if isinstance(module, (nn.ConvTranspose2d, nn.Upsample)):
        raise ValueError(f"receptive_field: {type(module).__name__} upsamples, which the receptive-field "
                         f"recurrence does not cover")
    if isinstance(module, nn.Conv2d):
        k, d, s = module.kernel_size, module.dilation, module.stride
        if module.padding == "same":
            p = tuple((di * (ki - 1)) // 2 for ki, di in zip(k, d))
        elif module.padding == "valid":
            p = (0, 0)
        else:
            p = module.padding
        return "conv", k, s, p, d
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        d = pair(getattr(module, "dilation", 1), "dilation")
        return ("pool", pair(module.kernel_size, "kernel_size"), pair(module.stride, "stride"),
                pair(module.padding, "padding"), d)
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        k = tuple(max(math.ceil((i + 1) * n / o) - (i * n) // o for i in range(o)) for n, o in zip(in_hw, out_hw))
        s = tuple(n // o if n % o == 0 else n / o for n, o in zip(in_hw, out_hw))
        return "adaptive pool", k, s, (0, 0), (1, 1)
    if out_hw is None:  # Flatten, or a Linear given an image: it sees all of it
        return "global", in_hw, in_hw, (0, 0), (1, 1)
    if out_hw != in_hw:
        raise ValueError(f"receptive_field: {type(module).__name__} changes the size from {in_hw} to {out_hw}, "
                         f"and is not a convolution or pooling whose window is known")
    return None


def _step(state, window):
    (r, j, start), (_, k, s, p, d) = state, window
    r_out = tuple(ri + di * (ki - 1) * ji for ri, ji, ki, di in zip(r, j, k, d))
    start_out = tuple(st + (di * (ki - 1) / 2 - pi) * ji for st, ji, ki, pi, di in zip(start, j, k, p, d))
    j_out = tuple(ji * si for ji, si in zip(j, s))
    return r_out, j_out, start_out


class ReceptiveFieldTable(list):
    """The list of per-layer dicts ``receptive_field`` returns; printing
    it (``print(table)``) shows them as a table."""

    def __str__(self):
        return format_receptive_field(self)


def receptive_field(model, input_size):
    """The receptive field of every leaf layer of ``model`` on an input of
    ``input_size`` (C, H, W) (one image; no batch dimension).

    Returns a list (a ``ReceptiveFieldTable``: ``print`` it for a table)
    with one dict per call of a leaf module, in the order they run:

    * ``name``: the module's dotted name in ``model``;
    * ``kind``: its class name;
    * ``output_size``: its output's shape without the batch dimension;
    * ``receptive_field``, ``jump``, ``start``: (H, W) pairs, the r, j and
      start of the module docstring.

    The model runs once, in eval mode (its training flags are restored),
    on zeros with gradients recorded (so branches can be traced). The
    numbers are exact for a chain of convolutions, poolings and layers that
    keep the size; where branches meet, the widest branch is taken (see
    the module docstring).
    """
    from ..autograd import enable_grad
    from ..creation import zeros
    from ..tensor import Tensor
    if (not isinstance(input_size, (tuple, list)) or len(input_size) != 3
            or not all(isinstance(n, int) and n > 0 for n in input_size)):
        raise ValueError(f"receptive_field: input_size must be (C, H, W) of positive ints, got {input_size!r}")
    param = next(iter(model.parameters()), None)
    x = zeros((1,) + tuple(input_size), dtype=None if param is None else param.dtype,
              device=None if param is None else param.device, requires_grad=True)
    tracer, rows, handles = _Tracer(x), ReceptiveFieldTable(), []

    def hook(module, args, output):
        inputs = [a for a in args if isinstance(a, Tensor)]
        if not inputs or not isinstance(output, Tensor):
            return
        state, hw = _widest(tracer.lookup(t) for t in inputs)
        x_in = inputs[0]
        out_hw = tuple(output.shape[2:]) if output.ndim == 4 else None
        if x_in.ndim == 4:
            window = _window(module, tuple(x_in.shape[2:]), out_hw)
        elif hw is not None:  # flattened by a plain op since the last layer: it sees the whole map
            window = ("global", hw, hw, (0, 0), (1, 1))
        else:
            window = None
        if window is not None:
            state = _step(state, window)
        tracer.record(output, state, out_hw)
        r, j, start = state
        rows.append(dict(name=names[module], kind=type(module).__name__, output_size=tuple(output.shape[1:]),
                         receptive_field=_tidy(r), jump=_tidy(j), start=_tidy(start)))

    names = {m: name for name, m in model.named_modules() if not any(True for _ in m.children())}
    modes = [(m, m.training) for m in model.modules()]
    try:
        for m in names:
            handles.append(m.register_forward_hook(hook))
        model.eval()
        with enable_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        for m, training in modes:
            m.training = training
    return rows


def _tidy(pair_):
    """Whole numbers as ints, so tables and comparisons read naturally."""
    return tuple(int(v) if float(v).is_integer() else v for v in pair_)


def _fmt(pair_):
    return str(pair_[0]) if pair_[0] == pair_[1] else f"{pair_[0]}x{pair_[1]}"


def format_receptive_field(rows):
    """The rows of ``receptive_field`` as a text table: layer, kind, output
    size, receptive field, jump and start (one number where H and W agree,
    else HxW)."""
    header = ("Layer", "Kind", "Output size", "RF", "Jump", "Start")
    lines = [(r["name"], r["kind"], "x".join(str(n) for n in r["output_size"]), _fmt(r["receptive_field"]),
              _fmt(r["jump"]), _fmt(tuple(round(v, 2) if isinstance(v, float) else v for v in r["start"])))
             for r in rows]
    widths = [max(len(str(c)) for c in column) for column in zip(header, *lines)]
    out = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths)),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)) for line in lines]
    return "\n".join(out)
