"""fuse_modules: merge conv + bn (+ relu) and linear (+ bn) (+ relu) into
single modules before quantization.

In eval mode BatchNorm is an affine map per channel, so it folds into the
conv in front of it. With ``r = 1 / sqrt(running_var + eps)``::

    W' = W * (gamma * r)                 (per output channel)
    b' = (b - running_mean) * r * gamma + beta

computed in float32 in torch's order (``fuse_conv_bn_weights``), so the
fused weights equal torch's bit for bit. Linear + BatchNorm1d uses torch's
other grouping, ``(b - running_mean) * (gamma * r) + beta``.
"""
import copy

import numpy

from ...nn import BatchNorm1d, BatchNorm2d, Conv2d, Identity, Linear, ReLU
from ...nn.parameter import Parameter
from ..nn.intrinsic import ConvReLU2d, LinearReLU


def _bn_arrays(bn, n, fn):
    if bn.num_features != n:
        raise ValueError(f"{fn}: BatchNorm has {bn.num_features} features, the layer before it {n} outputs")
    if not bn.track_running_stats or bn.running_mean is None:
        raise ValueError(f"{fn}: BatchNorm without running statistics cannot be folded")
    mean, var = bn.running_mean.data, bn.running_var.data
    gamma = bn.weight.data if bn.weight is not None else numpy.ones_like(mean)
    beta = bn.bias.data if bn.bias is not None else numpy.zeros_like(mean)
    rsqrt = 1 / numpy.sqrt(var + var.dtype.type(bn.eps))
    return mean, gamma, beta, rsqrt


def fuse_conv_bn_eval(conv, bn):
    """A copy of ``conv`` with eval-mode ``bn`` folded into its weight and bias."""
    if conv.training or bn.training:
        raise ValueError("fuse_conv_bn_eval: conv and bn must be in eval mode")
    mean, gamma, beta, rsqrt = _bn_arrays(bn, conv.out_channels, "fuse_conv_bn_eval")
    fused = copy.deepcopy(conv)
    w = conv.weight.data
    b = conv.bias.data if conv.bias is not None else numpy.zeros_like(mean)
    shape = (-1,) + (1,) * (w.ndim - 1)
    fused.weight = Parameter(w * (gamma * rsqrt).reshape(shape))
    fused.bias = Parameter((b - mean) * rsqrt * gamma + beta)
    return fused


def fuse_linear_bn_eval(linear, bn):
    """A copy of ``linear`` with eval-mode BatchNorm1d ``bn`` folded in."""
    if linear.training or bn.training:
        raise ValueError("fuse_linear_bn_eval: linear and bn must be in eval mode")
    mean, gamma, beta, rsqrt = _bn_arrays(bn, linear.out_features, "fuse_linear_bn_eval")
    fused = copy.deepcopy(linear)
    scale = gamma * rsqrt
    b = linear.bias.data if linear.bias is not None else numpy.zeros_like(mean)
    fused.weight = Parameter(linear.weight.data * scale[:, None])
    fused.bias = Parameter((b - mean) * scale + beta)
    return fused


def _conv_bn(conv, bn):
    return fuse_conv_bn_eval(conv, bn)


def _conv_bn_relu(conv, bn, relu):
    return ConvReLU2d(fuse_conv_bn_eval(conv, bn), relu)


_FUSERS = {
    (Conv2d, BatchNorm2d): _conv_bn,
    (Conv2d, BatchNorm2d, ReLU): _conv_bn_relu,
    (Conv2d, ReLU): ConvReLU2d,
    (Linear, ReLU): LinearReLU,
    (Linear, BatchNorm1d): fuse_linear_bn_eval,
}


def fuse_known_modules(mod_list):
    """Fuse a list of modules: the first becomes the fused module, the rest
    ``Identity``. Forward hooks of the last module and pre-hooks of the
    first move to the fused module, as in torch."""
    kinds = tuple(type(m) for m in mod_list)
    fuser = _FUSERS.get(kinds)
    if fuser is None:
        known = ", ".join("+".join(k.__name__ for k in key) for key in _FUSERS)
        raise ValueError(f"fuse_modules: cannot fuse {'+'.join(k.__name__ for k in kinds)}; "
                         f"known sequences: {known}")
    if any(m.training for m in mod_list):
        raise ValueError("fuse_modules: modules must be in eval mode (call model.eval() first); "
                         "quantization-aware training is not supported")
    fused = fuser(*mod_list)
    fused._forward_pre_hooks.update(mod_list[0]._forward_pre_hooks)
    fused._forward_hooks.update(mod_list[-1]._forward_hooks)
    identities = []
    for _ in mod_list[1:]:
        identity = Identity()
        identity.training = mod_list[0].training
        identities.append(identity)
    return [fused] + identities


def _parent(model, dotted):
    *path, name = dotted.split(".")
    parent = model
    for part in path:
        parent = getattr(parent, part)
    return parent, name


def fuse_modules(model, modules_to_fuse, inplace=False):
    """Fuse each list of submodule names in ``modules_to_fuse`` (or one
    list of names) into one module; returns the model (a deep copy unless
    ``inplace``).

    Sequences: conv+bn, conv+bn+relu, conv+relu, linear+relu, linear+bn.
    The first name gets the fused module, the others ``Identity``.
    """
    if not inplace:
        model = copy.deepcopy(model)
    groups = [modules_to_fuse] if all(isinstance(n, str) for n in modules_to_fuse) else modules_to_fuse
    for names in groups:
        modules = []
        for name in names:
            try:
                modules.append(model.get_submodule(name))
            except AttributeError as error:
                raise ValueError(f"fuse_modules: model has no submodule {name!r}") from error
        for name, module in zip(names, fuse_known_modules(modules)):
            parent, attr = _parent(model, name)
            setattr(parent, attr, module)
    return model
