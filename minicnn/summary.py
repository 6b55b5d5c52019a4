"""Model summary: ``mc.summary(model, input_size)``, a table of layers.

    >>> s = mc.summary(mc.models.resnet50(), (3, 224, 224))
    >>> print(s)                                  # the table
    >>> s.total_params, s.total_mult_adds         # 25557032, 4089184256
    >>> s.inference_bytes, s.training_bytes       # activation memory

One row per module call, in call order, children indented under their
parent: name, type, output shape, parameters, multiply-adds and the size
of the output; then the totals. As in torchinfo, the model runs on an
input of zeros while forward hooks on every module record each call.
``input_size`` is the shape of *one* sample, (C, H, W) for images and
(C, D, H, W) for clips, without the batch dim; ``batch_size`` gives the
batch.

What is counted
---------------
Parameters: every element of ``model.parameters()``, a shared parameter
once, whether or not the forward uses it (GoogLeNet's auxiliary
classifiers count, though only training runs them). A row shows the
parameters of its module, children included, on the module's first call.

Multiply-adds: those of the convolution layers (Conv1d/2d/3d,
ConvTranspose1d/2d/3d) and Linear, one per product in their sums::

    Conv2d            N * O * OH * OW  *  (C / groups) * KH * KW
    ConvTranspose2d   N * C * H * W    *  (O / groups) * KH * KW
    Linear            (rows of x)      *  out_features * in_features

(1-D and 3-D convolutions alike: every output, or input, position times
the product of the kernel's sizes.)

Every output of a conv is a dot product over the C / groups input
channels times KH * KW taps (dilation spreads the taps, it does not add
any); a transposed conv scatters every *input* value into (O / groups) *
KH * KW outputs. The model runs in eval mode. This is the convention of
torchvision's table of models, whose "GFLOPS" column holds exactly these
multiply-adds in billions (counted over convolution and matrix-product
ops, eval mode, batch 1, at each model's crop size: resnet50 4.09), and
of the ResNet paper, whose "FLOPs" are multiply-adds too. Bias
additions, batch norm, activations, pooling and residual additions are
not counted: a few percent more, memory-bound, and their cost depends on
how they are implemented. Only layers are seen: a ``F.conv2d`` called
directly in some ``forward`` is not counted (the zoo has none).

Memory, in bytes of array data (``params_bytes`` holds the parameters):

``inference_bytes``
    the most activation bytes alive at once in a no_grad forward in eval
    mode, the input included: a plain chain holds a layer's input and
    output, a residual block also its input until the addition, a
    DenseNet block every feature map it concatenates. Sampled at every
    module call; the scratch one op needs while it runs (an im2col tile,
    at most 8 MB with the Numba kernels) comes on top.
``training_bytes``
    what a training-mode forward leaves alive for backward: every array
    the autograd graph saved, each counted once, plus the input and the
    output. In minicnn a conv and a batch norm keep their inputs, a ReLU
    and a max pool one byte per output (a mask, an argmax), dropout its
    mask (see each op's Memory notes). Gradients
    (one more ``params_bytes``) and optimizer state come on top.

Both are taken from the engine itself rather than from a table of rules:
a no_grad forward tracks which arrays are alive, and a second, training
forward walks the graph its ops recorded, so a change to what an op
saves shows in the summary. To keep that pass as small as an inference,
the graph is cut after every leaf module: once its nodes are counted,
its output is replaced by a detached copy, and the nodes are freed. The
model's state is left as it was (train/eval flags, batch-norm running
statistics, the random generator).

Where the compute goes, a ResNet-50 lesson: ``resnet50()`` (torchvision's
"v1.5", the stride of a downsampling bottleneck in its 3x3 conv) costs
4.09 billion multiply-adds, ``resnet50(stride_in_1x1=True)`` (the
paper's "v1", the stride in the first 1x1 conv) 3.86 billion, with the
same parameters. A conv costs in proportion to its *output* pixels: in
v1.5 the first 1x1 conv of each of the three downsampling blocks runs
on the full-resolution map, four times the pixels, 77 million
multiply-adds more per block. v1 saves them by reading only one input
pixel in four (its stride-2 1x1 conv skips the rest); v1.5 lets the 3x3
conv see them all, which is why it is the more accurate of the two.
"""
import math
import numbers
import weakref

from . import dtypes, random
from .autograd import no_grad, set_grad_enabled
from .creation import zeros
from .nn.conv import _ConvNd
from .nn.linear import Linear
from .nn.module import Module
from .tensor import Tensor
from .utils.checkpoint import checkpointing

__all__ = ["summary", "ModelSummary", "LayerInfo"]


# -- multiply-adds per layer type ----------------------------------------
def _conv_mult_adds(module, inputs, output):
    """A convolution: each of the N*O*OH*OW outputs sums (C / groups) *
    KH * KW products. A transposed one: each of the N*C*H*W inputs is
    multiplied into (O / groups) * KH * KW outputs. Any number of spatial
    dims: KH * KW is the product of the kernel's sizes."""
    taps = math.prod(module.kernel_size)
    if module.transposed:
        return inputs[0].data.size * (module.out_channels // module.groups) * taps
    return output.data.size * (module.in_channels // module.groups) * taps


def _linear_mult_adds(module, inputs, output):
    """Each output sums in_features products."""
    return output.data.size * module.in_features


#: layer type -> multiply-adds of one call, ``fn(module, inputs, output)``.
_MULT_ADDS = ((_ConvNd, _conv_mult_adds),
              (Linear, _linear_mult_adds))


def _layer_mult_adds(module, inputs, output):
    for layer_type, count in _MULT_ADDS:
        if isinstance(module, layer_type):
            return count(module, inputs, output)
    return 0


# -- walking tensors and arrays ------------------------------------------
def _tensors(value):
    """The Tensors in a forward's arguments or output (a Tensor, or a
    tuple / list / namedtuple / dict of them, nested)."""
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _tensors(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)


def _map_tensors(fn, value):
    """``value`` with ``fn`` applied to each Tensor in it (same structure)."""
    if isinstance(value, Tensor):
        return fn(value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
        return type(value)(*(_map_tensors(fn, v) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_map_tensors(fn, v) for v in value)
    if isinstance(value, dict):
        return {k: _map_tensors(fn, v) for k, v in value.items()}
    return value


def _owner(array):
    """The array that owns ``array``'s memory (a view's base, followed to
    the end): two views of one buffer are one allocation."""
    while isinstance(getattr(array, "base", None), type(array)):
        array = array.base
    return array


def _is_array(value):
    return hasattr(value, "nbytes") and hasattr(value, "base") and hasattr(value, "shape")


class _ArraySet:
    """A set of arrays, each counted once by its owner, that does not keep
    them alive. ``live_bytes`` is the size of those still alive;
    ``total_bytes`` of all ever added."""

    def __init__(self):
        self._members = {}          # id(owner) -> weakref to the owner
        self.live_bytes = 0
        self.total_bytes = 0

    def add(self, array):
        owner = _owner(array)
        key = id(owner)
        if key in self._members:
            return
        nbytes = int(owner.nbytes)

        def forget(_ref, key=key, nbytes=nbytes):
            # The array was freed: its id may now be reused by a new one.
            del self._members[key]
            self.live_bytes -= nbytes

        try:
            self._members[key] = weakref.ref(owner, forget)
        except TypeError:  # an array type without weak references: keep it
            self._members[key] = owner
        self.live_bytes += nbytes
        self.total_bytes += nbytes


# -- the rows ------------------------------------------------------------
class LayerInfo:
    """One module call: ``name`` (dotted, as in ``named_modules``; "" for a
    model that is a single layer), ``type`` (class name), ``depth`` (1 for
    the model's children), ``output_shape``
    (a tuple, or a list of tuples for several outputs), ``params`` (of the
    module and its children; 0 on a repeated call, ``recursive`` True),
    ``mult_adds`` (of this call, children included), ``output_bytes`` and
    ``is_leaf`` (a module without children)."""

    __slots__ = ("name", "type", "depth", "output_shape", "params", "recursive", "mult_adds",
                 "output_bytes", "is_leaf")

    def __init__(self, name, type, depth, is_leaf):
        self.name, self.type, self.depth, self.is_leaf = name, type, depth, is_leaf
        self.output_shape, self.params, self.recursive, self.mult_adds, self.output_bytes = None, 0, False, 0, 0

    def __repr__(self):
        return (f"LayerInfo({self.name!r}, {self.type}, output_shape={self.output_shape}, "
                f"params={self.params}, mult_adds={self.mult_adds}, output_bytes={self.output_bytes})")


class ModelSummary:
    """What ``summary`` found; ``str(summary)`` is the table.

    Attributes: ``layers`` (a LayerInfo per module call, in call order),
    ``input_shape`` (with the batch dim), ``output_shape``, ``dtype``,
    ``depth`` (rows deeper than this are folded into their parent when
    printed), ``total_params``, ``trainable_params``,
    ``non_trainable_params``, ``total_mult_adds``, and in bytes
    ``input_bytes``, ``output_bytes``, ``params_bytes``,
    ``inference_bytes``, ``training_bytes`` (None when the training pass
    was skipped or failed; ``training_note`` says why).
    """

    def __init__(self, model_name, layers, input_shape, output_shape, dtype, depth):
        self.model_name = model_name
        self.layers = layers
        self.input_shape, self.output_shape = input_shape, output_shape
        self.dtype, self.depth = dtype, depth
        self.total_params = self.trainable_params = 0  # filled in by summary()
        self.total_mult_adds = 0
        self.input_bytes = self.output_bytes = self.params_bytes = 0
        self.inference_bytes = 0
        self.training_bytes, self.training_note = None, None

    @property
    def non_trainable_params(self):
        return self.total_params - self.trainable_params

    def __repr__(self):
        return (f"ModelSummary({self.model_name}, input {list(self.input_shape)}: "
                f"{self.total_params:,} params, {self.total_mult_adds:,} mult-adds)")

    def __str__(self):
        header = ("Layer (type)", "Output shape", "Params", "Mult-adds", "Output")
        rows = [header]
        for layer in self.layers:
            if layer.depth > self.depth:
                continue
            params = "(recursive)" if layer.recursive else (f"{layer.params:,}" if layer.params else "--")
            label = f"{layer.name} ({layer.type})" if layer.name else layer.type
            rows.append(("  " * (layer.depth - 1) + label,
                         _format_shape(layer.output_shape),
                         params,
                         f"{layer.mult_adds:,}" if layer.mult_adds else "--",
                         _format_bytes(layer.output_bytes)))
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        width = sum(widths) + 2 * (len(widths) - 1)

        def line(row):
            first = row[0].ljust(widths[0])
            return "  ".join([first] + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:])])

        out = [f"{self.model_name}: input {_format_shape(self.input_shape)} {self.dtype}", "=" * width,
               line(header), "=" * width]
        out += [line(row) for row in rows[1:]]
        training = (_format_bytes(self.training_bytes) if self.training_bytes is not None
                    else f"not measured ({self.training_note})")
        out += ["=" * width,
                f"Total params: {self.total_params:,}",
                f"Trainable params: {self.trainable_params:,}",
                f"Non-trainable params: {self.non_trainable_params:,}",
                f"Total mult-adds: {self.total_mult_adds:,} ({_format_count(self.total_mult_adds)})",
                "-" * width,
                f"Input: {_format_bytes(self.input_bytes)}",
                f"Output: {_format_bytes(self.output_bytes)}",
                f"Parameters: {_format_bytes(self.params_bytes)} (gradients as much again when training)",
                f"Inference memory (activations alive at once, no_grad): {_format_bytes(self.inference_bytes)}",
                f"Training memory (activations kept for backward): {training}",
                "=" * width]
        return "\n".join(out)


def _format_shape(shape):
    if shape is None:
        return "--"
    if shape and isinstance(shape[0], tuple):
        return ", ".join(_format_shape(s) for s in shape)
    return "[" + ", ".join(str(n) for n in shape) + "]"


def _format_bytes(nbytes):
    """Decimal units, as in "a 200 x 150 x 100 float32 output is 12 MB"."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.2f} {unit}"
    return f"{nbytes} B"


def _format_count(n):
    """4089184256 -> '4.09 G' (the scale torchvision's GFLOPS are given in)."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(n)


# -- the two passes --------------------------------------------------------
class _Hooks:
    """Forward pre-hooks and hooks on every module of a model, removed on
    exit. ``before(name, module, args)`` and ``after(name, module, args,
    output)`` are called around each module call; ``after`` may return a
    replacement output."""

    def __init__(self, model, before, after):
        self._handles = []
        for name, module in model.named_modules():
            self._handles.append(module.register_forward_pre_hook(
                lambda module, args, name=name: before(name, module, args)))
            self._handles.append(module.register_forward_hook(
                lambda module, args, output, name=name: after(name, module, args, output)))

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        for handle in self._handles:
            handle.remove()


class _ShapePass:
    """The no_grad, eval-mode forward: the rows, the multiply-adds, and the
    peak of the activation bytes alive at once."""

    def __init__(self):
        self.layers = []
        self._stack = []            # (LayerInfo or None for the model, its multiply-adds so far)
        self._seen_modules = set()
        self.total_mult_adds = 0
        self.live = _ArraySet()
        self.peak_bytes = 0

    def _track(self, value):
        for t in _tensors(value):
            self.live.add(t.data)
        self.peak_bytes = max(self.peak_bytes, self.live.live_bytes)

    def before(self, name, module, args):
        self._track(args)
        is_leaf = not any(True for _ in module.children())
        if not self._stack and not is_leaf:      # the model itself: the totals, not a row
            self._stack.append([None, 0])
            return
        # (A model that is a single layer is its own one row.)
        layer = LayerInfo(name, type(module).__name__, depth=max(len(self._stack), 1), is_leaf=is_leaf)
        self.layers.append(layer)
        self._stack.append([layer, 0])

    def after(self, name, module, args, output):
        self._track(output)
        layer, mult_adds = self._stack.pop()
        mult_adds += _layer_mult_adds(module, args, output)
        if self._stack:
            self._stack[-1][1] += mult_adds
        else:
            self.total_mult_adds = mult_adds
        if layer is None:
            return None
        layer.mult_adds = mult_adds
        shapes = [tuple(t.shape) for t in _tensors(output)]
        layer.output_shape = shapes[0] if len(shapes) == 1 else shapes
        layer.output_bytes = sum(int(t.data.nbytes) for t in _tensors(output))
        # Parameters are counted after the call, when a lazy layer has its
        # shapes; a module called again shows its parameters only once.
        if id(module) in self._seen_modules:
            layer.recursive = any(True for _ in module.parameters())
        else:
            self._seen_modules.add(id(module))
            layer.params = sum(int(p.data.size) for p in module.parameters())
        return None


class _SavedPass:
    """The training-mode forward with autograd on: adds up what the graph
    keeps for backward, cutting it after every leaf module."""

    # Function attributes that hold graph structure, not saved data.
    _STRUCTURE = ("edges", "_outputs_meta", "needs_input_grad")

    def __init__(self, model):
        self.saved = _ArraySet()
        self._visited = weakref.WeakSet()        # nodes already walked
        # Parameters and buffers are the model's state, not activations
        # (batch norm's node holds the running statistics it updates).
        self._state = {id(_owner(t.data)) for t in list(model.parameters()) + list(model.buffers())}

    def _add(self, value, depth=0):
        """Count the arrays in a node attribute (an array, a Tensor, or a
        tuple / list of them)."""
        if isinstance(value, Tensor):
            value = value.data
        if _is_array(value):
            if id(_owner(value)) not in self._state:
                self.saved.add(value)
        elif isinstance(value, (tuple, list)) and depth < 2:
            for v in value:
                self._add(v, depth + 1)

    def _walk(self, output):
        """Count the saved arrays of every node behind ``output`` not yet
        walked; the walk stops at leaf tensors (parameters, the input, the
        cut outputs of earlier layers)."""
        stack = [t.grad_fn for t in _tensors(output) if t.grad_fn is not None]
        while stack:
            node = stack.pop()
            if node in self._visited:
                continue
            self._visited.add(node)
            for key, value in vars(node).items():
                if key not in self._STRUCTURE:
                    self._add(value)
            for edge in node.edges:
                if edge is not None and not isinstance(edge, Tensor):
                    stack.append(edge[0])

    def after(self, name, module, args, output):
        if checkpointing():
            return None     # a checkpointed segment keeps only its inputs (utils/checkpoint.py)
        self._walk(output)
        if any(True for _ in module.children()):
            return None
        # A leaf module: its nodes are counted, so hand the next layer a
        # detached copy; nothing then refers to the nodes, which are freed.
        return _map_tensors(_cut, output)


def _cut(t):
    if t.grad_fn is None:
        return t
    return Tensor._wrap(t.data).requires_grad_(True)


def _run_training_pass(model, x):
    """training_bytes of ``model`` on ``x``, restoring the model's state."""
    counter = _SavedPass(model)
    modes = [(m, m.training) for m in model.modules()]
    buffers = [(m, name, b, b.data.copy()) for m in model.modules()
               for name, b in m._buffers.items() if b is not None]
    rng_state = random.get_rng_state()
    # The pass hands each layer a fresh leaf (``_cut``), on which an in-place
    # layer may not act, as in torch; run those out of place: the arrays
    # kept for backward are the same (an in-place activation computes out
    # of place and copies in).
    in_place = [m for m in model.modules() if getattr(m, "inplace", False) is True]
    try:
        for m in in_place:
            m.inplace = False
        model.train()
        with set_grad_enabled(True), _Hooks(model, lambda *a: None, counter.after):
            output = model(x)
        counter.saved.add(x.data)
        for t in _tensors(output):
            counter.saved.add(t.data)
        return counter.saved.total_bytes
    finally:
        for m in in_place:
            m.inplace = True
        for m, mode in modes:
            object.__setattr__(m, "training", mode)
        for m, name, b, data in buffers:     # batch norm's running statistics
            m._buffers[name] = b
            b.data[...] = data
        random.set_rng_state(rng_state)


# -- the entry point -------------------------------------------------------
def _check_input_size(input_size):
    if isinstance(input_size, numbers.Integral) and not isinstance(input_size, bool):
        input_size = (input_size,)
    try:
        size = tuple(input_size)
    except TypeError:
        raise TypeError(f"summary: input_size must be a tuple of ints such as (3, 224, 224), "
                        f"got {input_size!r}") from None
    if not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) for n in size):
        raise TypeError(f"summary: input_size must be a tuple of ints such as (3, 224, 224), got {input_size!r}")
    if not 1 <= len(size) <= 4:
        raise ValueError(
            f"summary: input_size is the shape of one sample without the batch dim, (C, H, W) for "
            f"images, (C, D, H, W) for clips, so 1 to 4 ints; got {len(size)}: {size}" +
            (" (give the batch as batch_size=...)" if len(size) == 5 else ""))
    if min(size) < 1:
        raise ValueError(f"summary: input_size must be positive, got {size}")
    return tuple(int(n) for n in size)


def summary(model, input_size, batch_size=1, *, dtype=None, depth=3, training_memory=True):
    """A table of ``model``'s layers for an input of ``batch_size`` samples
    of shape ``input_size`` (one sample, without the batch dim: (C, H, W)
    for images). Returns a ModelSummary; ``print`` it for the table.

    ``dtype``: of the input (default: the model's parameters', else
    float32). ``depth``: how many levels of nested modules the table
    shows (deeper calls still count in their parents and the totals).
    ``training_memory=False`` skips the second, training-mode forward
    that measures ``training_bytes`` (then None).

    The module docstring says what is counted and how.
    """
    if not isinstance(model, Module):
        raise TypeError(f"summary: model must be a minicnn nn.Module, got {type(model).__name__}")
    size = _check_input_size(input_size)
    if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"summary: batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(depth, numbers.Integral) or isinstance(depth, bool) or depth < 0:
        raise ValueError(f"summary: depth must be an int >= 0, got {depth!r}")
    params = [p for p in model.parameters()]
    floating = [p for p in params if p.dtype.kind == "f"]
    if dtype is None:
        dtype = floating[0].dtype if floating else dtypes.default_float
    dtype = dtypes.as_dtype(dtype)
    device = floating[0].device if floating else None
    x = zeros((int(batch_size),) + size, dtype=dtype, device=device)

    shapes = _ShapePass()
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with no_grad(), _Hooks(model, shapes.before, shapes.after):
            output = model(x)
    except ValueError as e:
        if len(size) != 4:
            raise
        # Four ints are a clip; they may also be a batch of images given by mistake.
        raise ValueError(f"summary: input_size {size} is read as one (C, D, H, W) clip, which the model refused "
                         f"({e}); for a batch of images give (C, H, W) and batch_size=...") from e
    finally:
        for m, mode in modes:
            object.__setattr__(m, "training", mode)

    outputs = [tuple(t.shape) for t in _tensors(output)]
    result = ModelSummary(type(model).__name__, shapes.layers, tuple(x.shape),
                          outputs[0] if len(outputs) == 1 else outputs, dtype, int(depth))
    params = list(model.parameters())            # lazy layers have their shapes now
    result.total_params = sum(int(p.data.size) for p in params)
    result.trainable_params = sum(int(p.data.size) for p in params if p.requires_grad)
    result.params_bytes = sum(int(p.data.nbytes) for p in params)
    result.total_mult_adds = shapes.total_mult_adds
    result.input_bytes = int(x.data.nbytes)
    result.output_bytes = sum(int(t.data.nbytes) for t in _tensors(output))
    result.inference_bytes = shapes.peak_bytes
    del output

    if not training_memory:
        result.training_note = "training_memory=False"
        return result
    try:
        result.training_bytes = _run_training_pass(model, x)
    except ValueError as e:
        # Typically batch norm in training mode over a single value per
        # channel (batch size 1 on a 1 x 1 map): a batch that cannot train.
        result.training_note = f"the training-mode forward raised ValueError: {e}"
    return result
