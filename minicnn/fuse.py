"""Fused inference: ``mc.fuse(model)`` returns a new model for eval in
which each convolution does the work of the layers that follow it.

    fused = mc.fuse(model)          # model itself is left as it was
    with mc.no_grad():
        logits = fused(images)

Six rewrites, all exact in real arithmetic (float32 results differ from
the unfused model's by rounding only):

* **Batch norm folded into the conv before it.** In eval a batch norm is
  the per-channel affine map ``y = (z - mean) * s + beta`` with
  ``s = gamma / sqrt(var + eps)``, and ``z = conv(x, W) + b`` is linear in
  ``W`` and ``b``; so ``y = conv(x, W * s) + (b - mean) * s + beta``: a conv
  whose weight's output channel ``o`` is scaled by ``s[o]``, with a new
  bias. (Computed in float64, then cast to the weight's dtype.) The norm
  layer disappears. Batch norms without running statistics
  (``track_running_stats=False``) normalize with the batch's statistics
  even in eval: they are left alone.
* **The conv itself** runs straight through the strategy's kernel call
  under no_grad, without the module call, F.conv2d's checks and the
  autograd node around it (its weights are frozen and nothing is
  recorded; hooks on the conv, a padding mode but zeros or an input the
  conv refuses go through the module as before).
* **The activation after it**: ReLU and ReLU6, clamps, are applied by
  the conv's kernel as it adds the bias, each block of the output while
  it is in cache (the pointwise, depthwise and im2col paths; the others
  clamp in one pass after); SiLU and Hardswish run in place on the
  conv's output array. No second tensor either way.
* **The residual add** of a residual block (ResNet's BasicBlock and
  Bottleneck, MobileNetV2's InvertedResidual, EfficientNet's MBConv) goes
  into the last conv's output the same way, before its activation (a
  ReLU in the same parallel pass as the add):
  ``relu(bn(conv(x)) + shortcut)`` becomes one ``FusedConv`` call.
* **A batch norm with no conv before it** (DenseNet's norm1 on the
  concatenated maps, its transitions' norm), and the ReLU or ReLU6 after
  it, run as one pass: ``min(max(x a + c, lo), hi)`` per channel
  (``FusedNorm``).
* **Squeeze-and-excitation** (``nn.SqueezeExcitation``, in EfficientNet
  and MobileNetV3) on the arrays: the plane means, two small matrix
  products for its 1x1 convs, and the map times its gate in one pass,
  without a module call or an autograd node per step
  (``FusedSqueezeExcitation``).

Where the patterns are found: in every ``nn.Sequential`` (one that runs its
children in order: a subclass with its own ``forward`` is not touched),
runs of conv [-> batch norm] [-> activation] (so torchvision-style
``Conv2dNormActivation``, VGG's and DenseNet's stems, the detection heads)
and batch norm -> ReLU / ReLU6 with no conv before;
the four residual block classes above, DenseNet's dense layer (its
bottleneck conv with the batch norm and ReLU after it), ResNet's stem and
``nn.SqueezeExcitation`` (not a subclass of it), whose ``forward`` is
known.
Anything else is copied unchanged, so a model fuses partly rather than
wrongly. The folded layers' places in a Sequential are kept by
``nn.Identity`` modules, so indexing and slicing a Sequential still work.

Training: the fused model is for inference only. ``fuse`` returns it in
eval mode; a ``FusedConv`` in train mode raises a RuntimeError (its batch
norms are gone, there is nothing to update: train the unfused model and
fuse again). Gradients: the folded weights do not require grad; under
autograd with an input that requires grad (saliency maps, adversarial
examples), ``FusedConv`` computes the same values out of place, so the
graph is recorded and gradients reach the input.

One public form: the function ``mc.fuse(model)``; ``nn.Module`` gets no
``fuse`` method, so modules keep torch's attributes and nothing else.

torch has ``torch.ao.quantization.fuse_modules`` (named lists of modules,
for quantization) and ``torch.fx``-based fusion; ``mc.fuse`` takes no
names: it finds the patterns by walking the module tree.
"""
import copy
import math

import numpy

from . import nn
from .autograd import is_grad_enabled
from .backend import get_array_module
from .functional.conv import _padding
from .functional import elementwise, normalization, pooling  # noqa: F401  (register the primitives used below)
from .functional.conv_strategy import conv_forward
from .kernels import registry
from .kernels.geometry import conv_output_shape
from .models import densenet, efficientnet, mobilenetv2, resnet
from .models.detection.frozen_batch_norm import FrozenBatchNorm2d
from .nn import functional as F
from .nn.conv import _Conv
from .nn.normalization import _BatchNorm
from .tensor import Tensor

#: Activations run in place on a conv's output: module class -> f(tensor, inplace).
ACTIVATIONS = {nn.ReLU: F.relu, nn.ReLU6: F.relu6, nn.SiLU: F.silu, nn.Hardswish: F.hardswish}
#: The activations that are a clamp, module class -> (lo, hi): a conv's
#: kernel applies them as it adds the bias (``conv_forward``'s ``clamp``).
CLAMPS = {nn.ReLU: (0.0, math.inf), nn.ReLU6: (0.0, 6.0)}


def fuse(model):
    """A new model computing what ``model`` computes in eval, with batch
    norms folded into the convs before them and activations and residual
    adds run in place on the convs' outputs (module docstring). ``model``
    is not changed. The result is in eval mode and refuses train mode."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"fuse: model must be an nn.Module, got {type(model).__name__}")
    fused = _fuse(copy.deepcopy(model))
    return fused.eval()


class FusedConv(nn.Module):
    """``conv`` with a batch norm folded in, then ``+ residual`` (when
    given) and ``activation``, both in place on the conv's output:
    (N, C_in, *spatial) -> (N, C_out, *out_spatial), as ``conv``.

    ``FusedConv(conv, norm=None, activation=None)`` takes a copy of
    ``conv``; ``norm`` a BatchNorm (with running statistics) or
    FrozenBatchNorm2d over its output channels; ``activation`` a module
    of ``ACTIVATIONS`` or None.
    """

    def __init__(self, conv, norm=None, activation=None):
        super().__init__()
        if not _is_conv(conv):
            raise TypeError(f"FusedConv: conv must be a Conv1d/2d/3d module, got {type(conv).__name__}")
        if norm is not None and not _foldable(norm, conv):
            raise ValueError(f"FusedConv: cannot fold {norm!r} into {conv!r} (a batch norm over the conv's "
                             f"{conv.out_channels} output channels, with running statistics, is needed)")
        if activation is not None and type(activation) not in ACTIVATIONS:
            raise TypeError(f"FusedConv: activation must be one of "
                            f"{', '.join(c.__name__ for c in ACTIVATIONS)} or None, got {type(activation).__name__}")
        self.conv = copy.deepcopy(conv)
        weight, bias = _folded(conv, norm) if norm is not None else (conv.weight.data, _bias(conv))
        self.conv.weight = nn.Parameter(weight.copy(), requires_grad=False)
        self.conv.bias = nn.Parameter(bias.copy(), requires_grad=False) if bias is not None else None
        self.activation = activation
        self.folded_norm = type(norm).__name__ if norm is not None else None
        self._geometries = {}           # input size -> (padding, output size), or None: see _direct

    def forward(self, input, residual=None):
        if self.training:
            raise RuntimeError("FusedConv: a fused model is for inference only (its batch norms are folded "
                               "into the convs): call .eval(), or train the unfused model and mc.fuse it again")
        if _recording(input, residual):
            return self._recorded(self.conv(input), residual)
        # On the arrays, the activation goes where it costs least: a ReLU /
        # ReLU6 into the conv's output pass (no residual) or the add's pass
        # (a residual, added first); any other activation in place after.
        bounds = CLAMPS.get(type(self.activation))         # (lo, hi) for ReLU / ReLU6, else None
        in_kernel = bounds if residual is None else None
        y = self._direct(input, in_kernel)
        if y is None:                                       # the module runs itself: nothing clamped
            y, in_kernel = self.conv(input), None
            if _recording(y, residual):
                return self._recorded(y, residual)
        if residual is not None:
            if residual.shape != y.shape:
                raise ValueError(f"FusedConv: residual of shape {tuple(residual.shape)} does not match the "
                                 f"conv's output {tuple(y.shape)}")
            lo, hi = bounds if bounds is not None else (-math.inf, math.inf)
            registry.lookup("add_clamp_into", get_array_module(y.data))(y.data, residual.data, lo, hi)
        clamped = bounds is not None and (in_kernel is not None or residual is not None)
        if self.activation is not None and not clamped:
            ACTIVATIONS[type(self.activation)](y, inplace=True)   # the conv's fresh output: nobody else holds it
        return y

    def _recorded(self, y, residual):
        """The conv's output ``y`` + ``residual``, activated, out of place:
        a graph is recorded, and gradients must reach the input."""
        if residual is not None:
            y = y + residual
        return ACTIVATIONS[type(self.activation)](y) if self.activation is not None else y

    def _direct(self, input, clamp=None):
        """The conv's output straight from the strategy's ``conv_forward``
        (clamped to ``clamp`` = (lo, hi) where given, in the kernel's output
        pass), or None where the conv module must run itself (hooks on it, a
        padding mode but zeros, an input it would refuse: its checks and
        messages stay its own). A fused conv's weights are frozen and
        nothing is recorded, so the module call, the argument checks and
        the autograd node that ``F.conv2d`` makes around the kernel (tens of
        microseconds a call; EfficientNet-B0 makes 81) are skipped. The
        padding and output size are worked out once per input size."""
        conv = self.conv
        if (conv._forward_hooks or conv._forward_pre_hooks or conv.padding_mode != "zeros"
                or not isinstance(input, Tensor) or input.ndim != conv.weight.ndim
                or input.shape[1] != conv.in_channels or input.dtype != conv.weight.dtype):
            return None
        in_size = tuple(input.shape[2:])
        if in_size not in self._geometries:
            padding = _padding(type(conv).__name__, conv.padding, conv.kernel_size, conv.stride, conv.dilation)
            out_size = tuple(conv_output_shape(in_size, conv.kernel_size, conv.stride, padding, conv.dilation))
            self._geometries[in_size] = (padding, out_size) if min(out_size) >= 1 else None
        geometry = self._geometries[in_size]
        if geometry is None:
            return None
        padding, out_size = geometry
        bias = conv.bias.data if conv.bias is not None else None
        return Tensor._wrap(conv_forward(input.data, conv.weight.data, bias, conv.stride, padding, conv.dilation,
                                         conv.groups, out_size, clamp))

    def extra_repr(self):
        return f"folded_norm={self.folded_norm}"


def _recording(*tensors):
    """Whether an op on ``tensors`` (None: absent) records a graph."""
    return is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


# -- the rewrites ---------------------------------------------------------
def _is_conv(module):
    return isinstance(module, _Conv)


def _foldable(norm, conv):
    """Whether ``norm`` is an eval-mode affine map per output channel of
    ``conv``: a batch norm with running statistics of the right size (any
    size where ``conv`` is None)."""
    if isinstance(norm, FrozenBatchNorm2d):
        stats = norm.running_mean
    elif isinstance(norm, _BatchNorm):
        stats = norm.running_mean if norm.track_running_stats else None
    else:
        return False
    return stats is not None and (conv is None or norm.num_features == conv.out_channels)


def _bias(conv):
    return conv.bias.data if conv.bias is not None else None


def _norm_affine(norm):
    """(s, c) in float64: the eval batch norm ``norm`` as the per-channel
    map z s + c, s = gamma / sqrt(var + eps), c = beta - mean s."""
    xp = get_array_module(norm.running_mean.data)
    mean = norm.running_mean.data.astype(numpy.float64)
    var = norm.running_var.data.astype(numpy.float64)
    gamma = norm.weight.data.astype(numpy.float64) if norm.weight is not None else xp.ones_like(mean)
    beta = norm.bias.data.astype(numpy.float64) if norm.bias is not None else xp.zeros_like(mean)
    scale = gamma / xp.sqrt(var + norm.eps)
    return scale, beta - mean * scale


def _folded(conv, norm):
    """(W * s, b * s + c) for the norm's map z s + c (``_norm_affine``) per
    output channel; in float64, returned in the weight's dtype."""
    xp = get_array_module(conv.weight.data)
    scale, shift = _norm_affine(norm)
    bias = conv.bias.data.astype(numpy.float64) if conv.bias is not None else xp.zeros_like(scale)
    weight = conv.weight.data.astype(numpy.float64) * scale.reshape((-1,) + (1,) * (conv.weight.ndim - 1))
    dtype = conv.weight.data.dtype
    return weight.astype(dtype), (bias * scale + shift).astype(dtype)


def _fuse(module):
    """``module`` with its patterns fused (children replaced in place)."""
    rule = _BLOCK_RULES.get(type(module))
    if rule is not None and _FOLDABLE.get(type(module), _block_foldable)(module):
        return rule(module)
    for name, child in list(module._modules.items()):
        if child is not None:
            module._modules[name] = _fuse(child)
    if type(module).forward is nn.Sequential.forward:
        _fuse_sequential(module)
    return module


def _fuse_sequential(seq):
    """Replace each run conv [-> norm] [-> activation] of ``seq`` by a
    FusedConv, and each norm -> ReLU / ReLU6 with no conv before it by a
    FusedNorm, followed by Identity modules (the Sequential keeps its
    length and its children's names)."""
    items = list(seq._modules.items())
    i = 0
    while i < len(items):
        name, conv = items[i]
        if not _is_conv(conv):
            i += _fuse_norm(seq, items, i)
            continue
        j = i + 1
        norm = items[j][1] if j < len(items) and _foldable(items[j][1], conv) else None
        j += norm is not None
        activation = items[j][1] if j < len(items) and type(items[j][1]) in ACTIVATIONS else None
        j += activation is not None
        if j > i + 1:
            seq._modules[name] = FusedConv(conv, norm, activation)
            for other, _ in items[i + 1:j]:
                seq._modules[other] = nn.Identity()
        i = j


def _fuse_norm(seq, items, i):
    """Where ``items[i]`` of ``seq`` (no conv) is a batch norm followed by a
    ReLU or ReLU6, a FusedNorm and an Identity in their places. How many
    items that took: 2, else 1."""
    (name, norm), (after_name, after) = items[i], items[i + 1] if i + 1 < len(items) else (None, None)
    if not FusedNorm.applies(norm, after):
        return 1
    seq._modules[name], seq._modules[after_name] = FusedNorm(norm, after), nn.Identity()
    return 2


class FusedBasicBlock(nn.Module):
    """ResNet's BasicBlock fused: relu(conv2(relu(conv1(x))) + shortcut(x)),
    batch norms folded, the add and the last ReLU in conv2's output."""

    def __init__(self, block):
        super().__init__()
        self.conv1 = FusedConv(block.conv1, block.bn1, block.relu)
        self.conv2 = FusedConv(block.conv2, block.bn2, block.relu)
        self.downsample = _fuse(block.downsample) if block.downsample is not None else None

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        return self.conv2(self.conv1(x), residual=identity)


class FusedBottleneck(nn.Module):
    """ResNet's Bottleneck fused: 1x1 -> 3x3 -> 1x1 with the add and the
    last ReLU in the third conv's output."""

    def __init__(self, block):
        super().__init__()
        self.conv1 = FusedConv(block.conv1, block.bn1, block.relu)
        self.conv2 = FusedConv(block.conv2, block.bn2, block.relu)
        self.conv3 = FusedConv(block.conv3, block.bn3, block.relu)
        self.downsample = _fuse(block.downsample) if block.downsample is not None else None

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        return self.conv3(self.conv2(self.conv1(x)), residual=identity)


class FusedNorm(nn.Module):
    """A batch norm with no conv before it to fold into, and the ReLU or
    ReLU6 after it (DenseNet's norm1 -> relu1 on the concatenated maps, its
    transitions' norm -> relu), in one pass over the input:
    min(max(x a + c, lo), hi) per channel, with a = gamma / sqrt(var + eps)
    and c = beta - mean a computed once (in float64, cast to the norm's
    dtype); (N, C, *) -> the same shape. Where a graph is recorded (an
    input that requires grad), the norm and the activation run as modules."""

    @classmethod
    def applies(cls, norm, activation):
        """Whether ``norm`` is a batch norm with running statistics and
        ``activation`` a ReLU or ReLU6."""
        return _foldable(norm, None) and type(activation) in CLAMPS

    def __init__(self, norm, activation):
        super().__init__()
        if not self.applies(norm, activation):
            raise ValueError(f"FusedNorm: needs a batch norm with running statistics and a ReLU or ReLU6, "
                             f"got {type(norm).__name__} and {type(activation).__name__}")
        self.norm, self.activation = copy.deepcopy(norm).eval(), activation
        dtype = norm.running_mean.data.dtype
        scale, shift = _norm_affine(norm)
        self.scale, self.shift = scale.astype(dtype), shift.astype(dtype)
        self.lo, self.hi = CLAMPS[type(activation)]

    def forward(self, input):
        if self.training:
            raise RuntimeError("FusedNorm: a fused model is for inference only: call .eval()")
        if ((is_grad_enabled() and input.requires_grad) or input.ndim < 2
                or input.shape[1] != self.scale.shape[0] or input.dtype != self.scale.dtype):
            return self.activation(self.norm(input))    # a graph to record, or the norm's own checks and messages
        data = input.data
        return Tensor._wrap(registry.lookup("affine_clamp", get_array_module(data))(data, self.scale, self.shift,
                                                                                     self.lo, self.hi))


class FusedSqueezeExcitation(nn.Module):
    """``nn.SqueezeExcitation`` (EfficientNet's, MobileNetV3's) run on the
    arrays: the squeeze the global average pool's kernel, fc1 and fc2 (1x1
    convs of a 1x1 map) two small matrix products, their activations the block's
    own modules, and the map times its gate in one parallel pass
    (``planes_scaled``); (N, C, H, W) -> the same shape. Through the
    modules, the five small ops cost more in calls (a conv's checks,
    autograd node and path choice) than in arithmetic: one block of
    EfficientNet-B0 at batch 1, 0.28-0.79 ms -> 0.16-0.38. Where a graph
    is recorded, a hook is on the pool or a conv, or the input is not what
    the block takes, the block runs as itself."""

    def __init__(self, block):
        super().__init__()
        if type(block) is not nn.SqueezeExcitation:
            raise TypeError(f"FusedSqueezeExcitation: block must be an nn.SqueezeExcitation, "
                            f"got {type(block).__name__}")
        self.block = copy.deepcopy(block).eval()
        self.fc1, self.fc2 = (self._product(conv) for conv in (block.fc1, block.fc2))

    @staticmethod
    def _product(conv):
        """(w^T, b) of a 1x1 conv of a 1x1 map as s @ w^T + b: s (N, C_in),
        w^T (C_in, C_out), b (C_out,) (zeros for a conv without bias)."""
        xp = get_array_module(conv.weight.data)
        wt = xp.ascontiguousarray(conv.weight.data.reshape(conv.out_channels, conv.in_channels).T)
        b = conv.bias.data.copy() if conv.bias is not None else xp.zeros(conv.out_channels, wt.dtype)
        return wt, b

    def forward(self, input):
        if self.training:
            raise RuntimeError("FusedSqueezeExcitation: a fused model is for inference only: call .eval()")
        block = self.block
        hooked = any(m._forward_hooks or m._forward_pre_hooks for m in (block.avgpool, block.fc1, block.fc2))
        if (hooked or (is_grad_enabled() and input.requires_grad) or input.ndim != 4
                or input.shape[1] != self.fc1[0].shape[0] or input.dtype != self.fc1[0].dtype):
            return block(input)
        x = input.data
        N, C = x.shape[:2]
        (w1t, b1), (w2t, b2) = self.fc1, self.fc2
        xp = get_array_module(x)
        squeezed = registry.lookup("adaptive_avg_pool2d_forward", xp)(x, (1, 1)).reshape(N, C)      # plane means
        hidden = block.activation(Tensor._wrap(squeezed @ w1t + b1)).data                     # (N, C / r)
        gate = block.scale_activation(Tensor._wrap(hidden @ w2t + b2)).data                   # (N, C)
        scaled = registry.lookup("planes_scaled", xp)
        return Tensor._wrap(scaled(x.reshape(N * C, -1), gate.reshape(N * C)).reshape(x.shape))


class FusedDenseLayer(nn.Module):
    """DenseNet's dense layer fused: the concatenated maps through norm1 and
    relu1 in one pass (``FusedNorm``: a batch norm before a conv, with a
    ReLU between, cannot be folded into the conv), then the 1x1 conv with
    norm2 folded in and relu2 in its output, then the 3x3 conv. The
    layer's dropout is the identity in eval, the only mode a fused model
    runs in."""

    def __init__(self, layer):
        super().__init__()
        self.norm1, self.relu1 = layer.norm1, layer.relu1
        if FusedNorm.applies(layer.norm1, layer.relu1):
            self.norm1, self.relu1 = FusedNorm(layer.norm1, layer.relu1), nn.Identity()
        self.conv1 = FusedConv(layer.conv1, layer.norm2, layer.relu2)
        self.conv2 = layer.conv2

    def forward(self, input):
        features = F.cat([input] if isinstance(input, Tensor) else list(input), 1)
        return self.conv2(self.conv1(self.relu1(self.norm1(features))))


class FusedResidual(nn.Module):
    """x + body(x) where body is a fused Sequential ending in a FusedConv
    with no activation (MobileNetV2's InvertedResidual, EfficientNet's
    MBConv in eval, where stochastic depth is the identity): the add goes
    into that last conv's output."""

    def __init__(self, body):
        super().__init__()
        self.body = body
        if _last_fused_conv(body) is None:
            raise ValueError("FusedResidual: the body must end in a conv [-> norm] without an activation")

    def forward(self, x):
        return _run_with_residual(self.body, x, x)


def _tail(seq):
    """(modules before the last non-Identity child, that child)."""
    children = [m for m in seq._modules.values() if m is not None]
    while children and isinstance(children[-1], nn.Identity):
        children.pop()
    return children[:-1], children[-1] if children else None


def _last_fused_conv(seq):
    _, last = _tail(seq)
    if isinstance(last, nn.Sequential) and type(last).forward is nn.Sequential.forward:
        return _last_fused_conv(last)
    return last if isinstance(last, FusedConv) and last.activation is None else None


def _run_with_residual(seq, x, residual):
    head, last = _tail(seq)
    for module in head:
        x = module(x)
    if isinstance(last, FusedConv):
        return last(x, residual=residual)
    return _run_with_residual(last, x, residual)


def _fuse_residual_block(block, attribute):
    """The block's body (its child ``attribute``) fused; wrapped in a
    FusedResidual when the block adds its input, else alone (the block's
    forward is then just ``body(x)``). A body whose last norm cannot be
    folded keeps its block, and the block's own add."""
    body = _fuse(block._modules[attribute])
    if not block.use_res_connect:
        return body
    if _last_fused_conv(body) is None:
        block._modules[attribute] = body
        return block
    return FusedResidual(body)


def _fuse_resnet(model):
    """ResNet's stem, conv1 -> bn1 -> relu called by name in its forward:
    the fused conv takes conv1's place, Identity modules bn1's and relu's
    (the blocks have ReLUs of their own); then the stages."""
    model.conv1 = FusedConv(model.conv1, model.bn1, model.relu)
    model.bn1, model.relu = nn.Identity(), nn.Identity()
    for name, child in list(model._modules.items()):
        if name != "conv1" and child is not None:
            model._modules[name] = _fuse(child)
    return model


def _block_foldable(block):
    """Whether each of a ResNet block's convs has a foldable norm after it
    (a block built with, say, GroupNorm is fused as any other module)."""
    pairs = [(getattr(block, f"conv{i}", None), getattr(block, f"bn{i}", None)) for i in (1, 2, 3)]
    return all(_foldable(bn, conv) for conv, bn in pairs if conv is not None)


_BLOCK_RULES = {
    resnet.ResNet: _fuse_resnet,
    resnet.BasicBlock: FusedBasicBlock,
    resnet.Bottleneck: FusedBottleneck,
    mobilenetv2.InvertedResidual: lambda block: _fuse_residual_block(block, "conv"),
    efficientnet.MBConv: lambda block: _fuse_residual_block(block, "block"),
    densenet._DenseLayer: FusedDenseLayer,
    nn.SqueezeExcitation: FusedSqueezeExcitation,
}
#: What a block rule needs folded, where not ``_block_foldable``'s convN -> bnN.
_FOLDABLE = {densenet._DenseLayer: lambda layer: _foldable(layer.norm2, layer.conv1)
             and type(layer.relu2) in ACTIVATIONS}
