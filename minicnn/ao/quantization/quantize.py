"""prepare and convert: torch's eager-mode post-training quantization.

``prepare`` gives every module the ``qconfig`` of its nearest ancestor
that has one, and attaches an output observer (``activation_post_process``
child, filled by a forward hook) to each module that will be quantized:
QuantStub, Conv2d, Linear, Hardswish, the fused ConvReLU2d / LinearReLU (one
observer after the ReLU) and FloatFunctional (observed inside its methods).
DeQuantStub gets none.

``convert`` swaps each observed module for its quantized version
(``DEFAULT_STATIC_QUANT_MODULE_MAPPINGS``, torch's default mapping) built
from its observers, and also swaps ReLU, Hardsigmoid, MaxPool2d, AdaptiveAvgPool2d,
Flatten and Dropout for versions that accept quantized tensors (torch
needs no swap there: its float ops take quantized tensors).
"""
import copy
import warnings

from ... import nn as float_nn
from ..nn import intrinsic as nni
from ..nn import quantized as nnq
from ..nn.intrinsic import quantized as nniq
from .stubs import DeQuantStub, QuantStub

DEFAULT_STATIC_QUANT_MODULE_MAPPINGS = {
    QuantStub: nnq.Quantize,
    DeQuantStub: nnq.DeQuantize,
    float_nn.Conv2d: nnq.Conv2d,
    float_nn.Linear: nnq.Linear,
    nni.ConvReLU2d: nniq.ConvReLU2d,
    nni.LinearReLU: nniq.LinearReLU,
    nnq.FloatFunctional: nnq.QFunctional,
    float_nn.Hardswish: nnq.Hardswish,
}

# Float modules whose ops refuse quantized tensors in minicnn: swapped for
# subclasses that take both, whatever their qconfig.
QUANTIZED_TENSOR_MODULE_MAPPINGS = {
    float_nn.ReLU: nnq.ReLU,
    float_nn.Hardsigmoid: nnq.Hardsigmoid,
    float_nn.MaxPool2d: nnq.MaxPool2d,
    float_nn.AdaptiveAvgPool2d: nnq.AdaptiveAvgPool2d,
    float_nn.Flatten: nnq.Flatten,
}


def propagate_qconfig_(module, qconfig_parent=None):
    """Set ``.qconfig`` on every submodule: its own if it has one, else its
    parent's (in place)."""
    qconfig = getattr(module, "qconfig", qconfig_parent)
    module.qconfig = qconfig
    for child in module.children():
        propagate_qconfig_(child, qconfig)


def _observer_forward_hook(module, input, output):
    module.activation_post_process(output)


def _observed(module):
    return getattr(module, "qconfig", None) is not None


def _add_observer_(module):
    for child in module.children():
        if isinstance(child, nnq.FloatFunctional):
            if _observed(child):
                child.activation_post_process = child.qconfig.activation()
        elif isinstance(child, (nni.ConvReLU2d, nni.LinearReLU)) or type(child) in (QuantStub, float_nn.Conv2d,
                                                                                   float_nn.Linear, float_nn.Hardswish):
            if _observed(child):
                child.activation_post_process = child.qconfig.activation()
                child.register_forward_hook(_observer_forward_hook)
        else:
            _add_observer_(child)


def prepare(model, inplace=False):
    """Attach observers (see the module docstring); returns the model (a
    deep copy unless ``inplace``). Set ``model.qconfig`` (or submodules'
    ``qconfig``) first. Unlike torch, which only warns, a model in which no
    module gets a qconfig is refused."""
    if not inplace:
        model = copy.deepcopy(model)
    propagate_qconfig_(model)
    if not any(_observed(m) for m in model.modules()):
        raise ValueError("prepare: no module has a qconfig; set model.qconfig = "
                         "mc.ao.quantization.get_default_qconfig('x86') first")
    _add_observer_(model)
    return model


def _copy_hooks(old, new):
    for hook_id, hook in old._forward_pre_hooks.items():
        new._forward_pre_hooks[hook_id] = hook
    for hook_id, hook in old._forward_hooks.items():
        if hook is not _observer_forward_hook:
            new._forward_hooks[hook_id] = hook


def swap_module(mod, mapping):
    """The quantized replacement of ``mod`` (or ``mod`` itself)."""
    new = mod
    if _observed(mod) and type(mod) in mapping:
        new = mapping[type(mod)].from_float(mod)
    elif type(mod) in QUANTIZED_TENSOR_MODULE_MAPPINGS:
        new = QUANTIZED_TENSOR_MODULE_MAPPINGS[type(mod)].from_float(mod)
    elif type(mod) is float_nn.Dropout:
        new = float_nn.Identity()
    if new is not mod:
        _copy_hooks(mod, new)
    return new


def _convert(module, mapping):
    for name, child in list(module.named_children()):
        if not isinstance(child, (nni.ConvReLU2d, nni.LinearReLU)):
            _convert(child, mapping)
        setattr(module, name, swap_module(child, mapping))


def _remove_qconfig(module):
    for m in module.modules():
        if "qconfig" in m.__dict__:
            del m.__dict__["qconfig"]
        if "activation_post_process" in m._modules and not isinstance(m, (nnq.FloatFunctional, nnq.QFunctional)):
            del m._modules["activation_post_process"]
        for hook_id, hook in list(m._forward_hooks.items()):
            if hook is _observer_forward_hook:
                del m._forward_hooks[hook_id]


def convert(module, mapping=None, inplace=False, remove_qconfig=True):
    """Swap observed modules for quantized ones (see the module docstring);
    returns the model (a deep copy unless ``inplace``).

    Raises ValueError if the model was never prepared, or if the observer
    of a QuantStub, conv or linear has seen no data (torch only warns and
    uses scale 1, zero point 0). A FloatFunctional never called gets
    torch's defaults with the same warning (torchvision's models keep
    unused ones).
    """
    from .observer import ObserverBase
    if not any(isinstance(m, ObserverBase) for m in module.modules()):
        raise ValueError("convert: the model has no observers; call mc.ao.quantization.prepare(model) "
                         "and run calibration data through it first")
    if not inplace:
        module = copy.deepcopy(module)
    if module.training:
        warnings.warn("convert: the model is in training mode; quantized inference assumes eval mode")
    _convert(module, DEFAULT_STATIC_QUANT_MODULE_MAPPINGS if mapping is None else mapping)
    if remove_qconfig:
        _remove_qconfig(module)
    return module
