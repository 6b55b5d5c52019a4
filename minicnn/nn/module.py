"""Module: the base class of every layer and model.

A Module owns three ordered tables, filled by plain attribute assignment as
in torch:

``_parameters``  name -> Parameter (or None, e.g. ``bias=False``)
``_buffers``     name -> Tensor (or None): state that is saved but not
                 learned, such as BatchNorm's ``running_mean``
``_modules``     name -> child Module (or None)

``self.weight = Parameter(...)`` lands in ``_parameters``,
``self.conv = Conv2d(...)`` in ``_modules``, and ``register_buffer`` puts a
Tensor in ``_buffers``. Every walk over the tree (``parameters()``,
``state_dict()``, ``train()``, ``to()``) visits these tables in insertion
order, so names and order match torch's: a model built the same way in both
frameworks has the same ``state_dict`` keys (``features.0.weight``,
``bn.running_var``, ...), and a torch state_dict loads directly.
"""
import collections
import itertools
from collections.abc import Mapping

import numpy

from .. import dtypes
from ..autograd import Function, is_grad_enabled, no_grad
from ..device import Device, move_array
from ..tensor import Tensor
from .parameter import Parameter, is_lazy


class StateDictError(ValueError, RuntimeError):
    """A state_dict that does not fit the module. It is a ValueError (bad
    input, minicnn's convention) and a RuntimeError (what torch raises), so
    code written for either catches it."""


class _IncompatibleKeys(collections.namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    """What ``load_state_dict`` returns: the keys the module expected but
    did not get, and the keys it got but does not have."""

    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return f"_IncompatibleKeys(missing_keys={self.missing_keys}, unexpected_keys={self.unexpected_keys})"

    __str__ = __repr__


class RemovableHandle:
    """Returned by ``register_forward_hook``: ``handle.remove()`` (or leaving
    a ``with handle:`` block) unregisters the hook."""

    _ids = itertools.count()

    def __init__(self, *tables):
        self.id = next(RemovableHandle._ids)
        self._tables = tables

    def remove(self):
        for table in self._tables:
            table.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.remove()


class _Identity(Function):
    """Passes its inputs through and hands the gradients that come back to
    ``on_backward``, whose return value goes on (the module backward hooks'
    way in: torch's BackwardHookFunction)."""

    def __init__(self, on_backward):
        self.on_backward = on_backward

    def forward(self, *xs):
        return xs

    def backward(self, *gys):
        return tuple(self.on_backward(gys))


class _BackwardHooks:
    """One call of a module with backward hooks: the identity nodes around
    its inputs and outputs, and the gradient w.r.t. the outputs, kept from
    the outputs' node (which runs first in backward) for the inputs'."""

    def __init__(self, module):
        self.module = module
        self.grad_output = None

    def wrap_inputs(self, args):
        self.tensor_positions = [k for k, a in enumerate(args) if isinstance(a, Tensor)]
        self.n_inputs = len(self.tensor_positions)
        # Positions in args of the inputs that require grad: only they are wrapped.
        self.input_positions = [k for k in self.tensor_positions if args[k].requires_grad]
        if not self.input_positions:
            return args
        wrapped = _Identity.apply(*(args[k] for k in self.input_positions), on_backward=self._input_grads)
        args = list(args)
        for k, t in zip(self.input_positions, wrapped):
            args[k] = t
        return tuple(args)

    def wrap_outputs(self, output):
        outputs = output if isinstance(output, (tuple, list)) else (output,)
        positions = [k for k, o in enumerate(outputs) if isinstance(o, Tensor) and o.requires_grad]
        if not positions:
            return output
        self.n_outputs = len(outputs)
        self.output_positions = positions
        wrapped = _Identity.apply(*(outputs[k] for k in positions), on_backward=self._output_grads)
        new = list(outputs)
        for k, t in zip(positions, wrapped):
            new[k] = t
        if isinstance(output, Tensor):
            return new[0]
        return type(output)(new)

    def _output_grads(self, gys):
        grad_output = [None] * self.n_outputs
        for k, g in zip(self.output_positions, gys):
            grad_output[k] = g
        grad_output = tuple(grad_output)
        for hook in list(self.module._backward_pre_hooks.values()):
            result = hook(self.module, grad_output)
            if result is not None:
                grad_output = _check_replacement(result, grad_output, "backward pre-hook", "grad_output")
        self.grad_output = grad_output
        if not self.input_positions:    # no input needs a gradient: the hooks see Nones now, as in torch
            self._call_hooks((None,) * self.n_inputs)
        return [grad_output[k] for k in self.output_positions]

    def _input_grads(self, gys):
        # grad_input has one entry per Tensor argument, None for those that
        # were not wrapped (they do not require grad).
        received = dict(zip(self.input_positions, gys))
        grad_input = self._call_hooks(tuple(received.get(k) for k in self.tensor_positions))
        by_position = dict(zip(self.tensor_positions, grad_input))
        return [by_position[k] for k in self.input_positions]

    def _call_hooks(self, grad_input):
        for hook in list(self.module._backward_hooks.values()):
            result = hook(self.module, grad_input, self.grad_output)
            if result is not None:
                grad_input = _check_replacement(result, grad_input, "backward hook", "grad_input")
        return grad_input


def _check_replacement(result, old, kind, what):
    """A hook's replacement gradients: a tuple as long as the one given."""
    result = tuple(result) if isinstance(result, (tuple, list)) else (result,)
    if len(result) != len(old):
        raise RuntimeError(f"a {kind} returned {len(result)} entries for {what}; expected {len(old)}")
    for new, given in zip(result, old):
        if new is not None and given is not None and new.shape != given.shape:
            raise RuntimeError(f"a {kind} returned a {what} of shape {new.shape} for one of shape {given.shape}")
    return result


def _addindent(text, spaces):
    """Indent every line of ``text`` but the first (for nested reprs)."""
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    return lines[0] + "\n" + "\n".join(" " * spaces + line for line in lines[1:])


def _check_name(name, kind):
    if not isinstance(name, str):
        raise TypeError(f"{kind} name must be a str, got {type(name).__name__}")
    if name == "":
        raise ValueError(f"{kind} name can't be empty")
    if "." in name:
        raise ValueError(f'{kind} name can\'t contain ".", got {name!r}')


def _as_array(value, key):
    """A state_dict value as an array: a minicnn Tensor, a NumPy array, or
    anything with ``.numpy()`` (a torch tensor) or ``__array__``."""
    if isinstance(value, Tensor):
        return value.data
    if not isinstance(value, numpy.ndarray) and callable(getattr(value, "numpy", None)):
        # A torch tensor that requires grad refuses .numpy(): detach it first.
        value = value.detach().numpy() if callable(getattr(value, "detach", None)) else value.numpy()
    try:
        array = numpy.asarray(value)
    except Exception as e:  # noqa: BLE001 - any failure means "not array-like"
        raise TypeError(f"load_state_dict: the value for {key!r} ({type(value).__name__}) "
                        f"cannot be read as an array: {e}") from None
    if array.dtype.kind not in "fiub":
        raise TypeError(f"load_state_dict: the value for {key!r} is not numeric (dtype {array.dtype})")
    return array


def _parse_to_args(args, kwargs):
    """``to(dtype)``, ``to(device)``, ``to(device, dtype)``, ``to(tensor)``,
    keywords ``device=``, ``dtype=``: returns (device or None, dtype or None)."""
    device = kwargs.pop("device", None)
    dtype = kwargs.pop("dtype", None)
    kwargs.pop("non_blocking", None)  # copies are synchronous here: nothing to choose
    if kwargs:
        raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
    for a in args:
        if isinstance(a, Device) or (isinstance(a, str) and a.split(":")[0] in ("cpu", "cuda")):
            device = a
        elif isinstance(a, Tensor):
            device, dtype = a.device, a.dtype
        else:
            dtype = a
    if device is not None:
        device = Device(device)
    if dtype is not None:
        dtype = dtypes.as_dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"Module.to only accepts floating point dtypes, got {dtype}")
    return device, dtype


class Module:
    """Base class of layers and models. Subclasses call ``super().__init__()``
    first, assign parameters, buffers and submodules as attributes, and
    define ``forward``; calling the module runs hooks around ``forward``."""

    def __init__(self):
        # object.__setattr__ because our __setattr__ needs these tables.
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", collections.OrderedDict())
        object.__setattr__(self, "_buffers", collections.OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers_set", set())
        object.__setattr__(self, "_modules", collections.OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", collections.OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks_with_kwargs", {})
        object.__setattr__(self, "_forward_hooks", collections.OrderedDict())
        object.__setattr__(self, "_forward_hooks_with_kwargs", {})
        object.__setattr__(self, "_backward_hooks", collections.OrderedDict())
        object.__setattr__(self, "_backward_pre_hooks", collections.OrderedDict())

    def forward(self, *args, **kwargs):  # abstract
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required "forward" function')

    # -- calling -------------------------------------------------------
    def __call__(self, *args, **kwargs):
        for hook_id, hook in list(self._forward_pre_hooks.items()):
            if hook_id in self._forward_pre_hooks_with_kwargs:
                result = hook(self, args, kwargs)
                if result is not None:
                    if not (isinstance(result, tuple) and len(result) == 2):
                        raise TypeError("a forward pre-hook registered with with_kwargs=True must "
                                        f"return None or a tuple (args, kwargs), got {result!r}")
                    args, kwargs = result
            else:
                result = hook(self, args)
                if result is not None:
                    args = result if isinstance(result, tuple) else (result,)
        backward_hooks = None
        if (self._backward_hooks or self._backward_pre_hooks) and is_grad_enabled():
            backward_hooks = _BackwardHooks(self)
            args = backward_hooks.wrap_inputs(args)
        output = self.forward(*args, **kwargs)
        for hook_id, hook in list(self._forward_hooks.items()):
            if hook_id in self._forward_hooks_with_kwargs:
                result = hook(self, args, kwargs, output)
            else:
                result = hook(self, args, output)
            if result is not None:
                output = result
        if backward_hooks is not None:
            output = backward_hooks.wrap_outputs(output)
        return output

    def register_forward_hook(self, hook, *, prepend=False, with_kwargs=False):
        """Call ``hook(module, args, output)`` after every forward (with
        ``with_kwargs=True``: ``hook(module, args, kwargs, output)``). A
        return value other than None replaces the output."""
        handle = RemovableHandle(self._forward_hooks, self._forward_hooks_with_kwargs)
        self._forward_hooks[handle.id] = hook
        if with_kwargs:
            self._forward_hooks_with_kwargs[handle.id] = True
        if prepend:
            self._forward_hooks.move_to_end(handle.id, last=False)
        return handle

    def register_forward_pre_hook(self, hook, *, prepend=False, with_kwargs=False):
        """Call ``hook(module, args)`` before every forward; a return value
        other than None replaces the positional arguments (with
        ``with_kwargs=True``: ``hook(module, args, kwargs)`` returning None
        or ``(args, kwargs)``)."""
        handle = RemovableHandle(self._forward_pre_hooks, self._forward_pre_hooks_with_kwargs)
        self._forward_pre_hooks[handle.id] = hook
        if with_kwargs:
            self._forward_pre_hooks_with_kwargs[handle.id] = True
        if prepend:
            self._forward_pre_hooks.move_to_end(handle.id, last=False)
        return handle

    def register_full_backward_hook(self, hook, prepend=False):
        """Call ``hook(module, grad_input, grad_output)`` once the gradients
        w.r.t. the module's positional Tensor inputs are computed, as
        torch's: ``grad_input`` has one entry per positional Tensor argument
        (None for one that does not require grad), ``grad_output`` one per
        Tensor output. A tuple it returns replaces ``grad_input``. The
        inputs and outputs are passed through an identity node to catch
        their gradients, so they are views of the tensors given and
        returned: an in-place op on them while recording raises (as in
        torch)."""
        handle = RemovableHandle(self._backward_hooks)
        self._backward_hooks[handle.id] = hook
        if prepend:
            self._backward_hooks.move_to_end(handle.id, last=False)
        return handle

    def register_full_backward_pre_hook(self, hook, prepend=False):
        """Call ``hook(module, grad_output)`` once the gradients w.r.t. the
        module's outputs are computed, before those w.r.t. its inputs; a
        tuple it returns replaces ``grad_output``."""
        handle = RemovableHandle(self._backward_pre_hooks)
        self._backward_pre_hooks[handle.id] = hook
        if prepend:
            self._backward_pre_hooks.move_to_end(handle.id, last=False)
        return handle

    # -- registration ----------------------------------------------------
    def register_parameter(self, name, param):
        """Add a parameter (or None: a declared but absent one, like
        ``bias=False``) under ``name``."""
        if "_parameters" not in self.__dict__:
            raise AttributeError("cannot assign parameter before Module.__init__() call")
        _check_name(name, "parameter")
        if hasattr(self, name) and name not in self._parameters:
            raise ValueError(f"attribute {name!r} already exists")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign {type(param).__name__!r} object to parameter {name!r} "
                            "(mc.nn.Parameter or None required)")
        self._parameters[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        """Add a buffer: a Tensor that belongs to the module's state (saved
        in ``state_dict`` unless ``persistent=False``, moved by ``to()``)
        but is not a parameter. ``tensor`` may be None."""
        if "_buffers" not in self.__dict__:
            raise AttributeError("cannot assign buffer before Module.__init__() call")
        _check_name(name, "buffer")
        if hasattr(self, name) and name not in self._buffers:
            raise ValueError(f"attribute {name!r} already exists")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign {type(tensor).__name__!r} object to buffer {name!r} "
                            "(a Tensor or None required)")
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers_set.discard(name)
        else:
            self._non_persistent_buffers_set.add(name)

    def add_module(self, name, module):
        """Add a child module (or None) under ``name``."""
        if "_modules" not in self.__dict__:
            raise AttributeError("cannot assign module before Module.__init__() call")
        _check_name(name, "module")
        if hasattr(self, name) and name not in self._modules:
            raise ValueError(f"attribute {name!r} already exists")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        self._modules[name] = module

    register_module = add_module

    def __setattr__(self, name, value):
        params, buffers, modules = (self.__dict__.get(t) for t in ("_parameters", "_buffers", "_modules"))

        def forget(name, keep):
            # Drop ``name`` from every other table; in ``keep`` it is
            # replaced where it stands, so the order does not change.
            self.__dict__.pop(name, None)
            for table in (params, buffers, modules):
                if table is not None and table is not keep:
                    table.pop(name, None)
            self.__dict__.get("_non_persistent_buffers_set", set()).discard(name)

        if isinstance(value, Parameter):
            if params is None:
                raise AttributeError("cannot assign parameters before Module.__init__() call")
            forget(name, keep=params)
            self.register_parameter(name, value)
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__!r} as parameter {name!r} "
                                "(mc.nn.Parameter or None expected)")
            params[name] = None
        elif isinstance(value, Module):
            if modules is None:
                raise AttributeError("cannot assign module before Module.__init__() call")
            forget(name, keep=modules)
            modules[name] = value
        elif modules is not None and name in modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__!r} as child module {name!r} "
                                "(a Module or None expected)")
            modules[name] = None
        elif buffers is not None and name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign {type(value).__name__!r} as buffer {name!r} "
                                "(a Tensor or None expected)")
            buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # Only called when normal lookup fails: look in the three tables.
        # (self.__dict__ is read directly so that a half-built object, as
        # pickle makes one, does not recurse.)
        for table in ("_parameters", "_buffers", "_modules"):
            entries = self.__dict__.get(table)
            if entries is not None and name in entries:
                return entries[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for table in (self._parameters, self._buffers, self._modules):
            if name in table:
                del table[name]
                self._non_persistent_buffers_set.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules))

    # -- walking the tree ------------------------------------------------
    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        """(dotted name, module) for this module and every descendant,
        depth first; a module reachable twice is listed once unless
        ``remove_duplicate=False``."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is None:
                continue
            child_prefix = prefix + ("." if prefix else "") + name
            yield from module.named_modules(memo, child_prefix, remove_duplicate)

    def modules(self):
        """This module and every descendant."""
        for _, module in self.named_modules():
            yield module

    def named_children(self):
        """(name, module) for the direct children."""
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self):
        for _, module in self.named_children():
            yield module

    def _named_members(self, table, prefix, recurse, remove_duplicate):
        modules = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse else [(prefix, self)]
        seen = set()
        for module_prefix, module in modules:
            for name, value in getattr(module, table).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield module_prefix + ("." if module_prefix else "") + name, value

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        """(dotted name, Parameter) for every parameter, in registration
        order; a parameter shared by two modules is listed once."""
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        """Every parameter (what an optimizer is given)."""
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        for _, buffer in self.named_buffers(recurse=recurse):
            yield buffer

    def get_submodule(self, target):
        """The module at dotted path ``target`` ('' is this module)."""
        module = self
        if target == "":
            return module
        walked = []
        for name in target.split("."):
            child = module._modules.get(name) if isinstance(module, Module) else None
            if child is None:
                where = ".".join(walked) or type(self).__name__
                raise AttributeError(f"{where} has no submodule {name!r} (looking up {target!r})")
            walked.append(name)
            module = child
        return module

    def apply(self, fn):
        """Call ``fn(module)`` on every child (recursively), then on self;
        returns self. Typical use: custom initialisation."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # -- modes and gradients ---------------------------------------------
    def train(self, mode=True):
        """Training mode (dropout active, batch norm uses batch statistics)
        for this module and every descendant; returns self."""
        if not isinstance(mode, bool):
            raise TypeError(f"train(): mode must be a bool, got {type(mode).__name__}")
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self):
        """Evaluation mode: same as ``train(False)``."""
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        """Set ``requires_grad`` of every parameter (False freezes them)."""
        for param in self.parameters():
            param.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        """Forget the gradients: set them to None (default) or to zeros."""
        for param in self.parameters():
            if param.grad is None:
                continue
            if set_to_none:
                param.grad = None
            else:
                param.grad.data[...] = 0

    # -- state -----------------------------------------------------------
    def state_dict(self, destination=None, prefix="", keep_vars=False):
        """An ordered dict of every parameter and persistent buffer under
        its dotted name (torch's keys). Values share memory with the
        module; with ``keep_vars=False`` they are detached Tensors."""
        if destination is None:
            destination = collections.OrderedDict()
        for name, param in self._parameters.items():
            if param is not None:
                destination[prefix + name] = param if keep_vars else param.detach()
        for name, buffer in self._buffers.items():
            if buffer is not None and name not in self._non_persistent_buffers_set:
                destination[prefix + name] = buffer if keep_vars else buffer.detach()
        for name, module in self._modules.items():
            if module is not None:
                module.state_dict(destination, prefix + name + ".", keep_vars)
        return destination

    def load_state_dict(self, state_dict, strict=True, assign=False):
        """Copy the values of ``state_dict`` into the parameters and buffers
        of the same names (in place, so optimizers keep their references).
        With ``assign=True`` (as torch's) each parameter and buffer takes the
        value's array itself instead, with its dtype, sharing its memory (a
        torch CPU tensor's too): nothing is copied, and a parameter stays
        the same Parameter object; a floating parameter refuses a
        non-floating value (TypeError).

        Values may be minicnn Tensors, NumPy arrays or anything with
        ``.numpy()`` or ``__array__`` (torch tensors load directly); they
        are cast to each target's dtype. Every key is checked before
        anything is copied, so a failed load leaves the module unchanged.
        With ``strict=True`` missing or unexpected keys are an error; shape
        mismatches always are. Returns ``(missing_keys, unexpected_keys)``.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"load_state_dict: expected a mapping (dict), got {type(state_dict).__name__}")
        targets = self.state_dict(keep_vars=True)
        missing = [key for key in targets if key not in state_dict]
        unexpected = [key for key in state_dict if key not in targets]
        errors, copies = [], []
        for key, target in targets.items():
            if key not in state_dict:
                continue
            if hasattr(target, "convert_state"):     # not an array (quantized modules: ao/nn/quantized)
                try:
                    copies.append((target, target.convert_state(state_dict[key])))
                except (TypeError, ValueError) as error:
                    errors.append(f"{key}: {error}")
                continue
            value = _as_array(state_dict[key], key)
            if assign and target.dtype.kind == "f" and value.dtype.kind != "f":
                raise TypeError(f"load_state_dict(assign=True): {key} is floating, the value's dtype "
                                f"is {value.dtype}")
            if is_lazy(target):
                copies.append((target, value))
                continue
            if value.shape != target.data.shape:
                errors.append(f"size mismatch for {key}: copying a param with shape {value.shape} from "
                              f"checkpoint, the shape in current model is {target.data.shape}.")
                continue
            copies.append((target, value))
        if strict and unexpected:
            errors.insert(0, "Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected) + ".")
        if strict and missing:
            errors.insert(0, "Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ".")
        if errors:
            raise StateDictError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                                 + "\n\t".join(errors))
        with no_grad():
            for target, value in copies:
                if hasattr(target, "convert_state"):
                    target.store_state(value)
                    continue
                if is_lazy(target):
                    target.materialize(value.shape)
                if assign:
                    target.data = move_array(value, Device(target.device))
                    continue
                xp_array = target.data
                xp_array[...] = move_array(value, Device(target.device)).astype(xp_array.dtype, copy=False)
        return _IncompatibleKeys(missing, unexpected)

    # -- dtype and device ------------------------------------------------
    def _apply(self, fn):
        """Replace the array of every parameter, gradient and buffer by
        ``fn(array)``. Parameters keep their identity (optimizers built
        before ``to()`` still hold them)."""
        for tensors in (self.parameters(), self.buffers()):
            for t in tensors:
                t.data = fn(t.data)
                if t.grad is not None:
                    t.grad = Tensor._wrap(fn(t.grad.data))
        return self

    def to(self, *args, **kwargs):
        """``to(dtype)``, ``to(device)``, ``to(device, dtype)`` or
        ``to(tensor)``: move every parameter and buffer to the device and
        cast the floating ones to the dtype (integer buffers such as
        ``num_batches_tracked`` keep theirs); returns self."""
        device, dtype = _parse_to_args(args, dict(kwargs))

        def convert(array):
            if device is not None:
                array = move_array(array, device)
            if dtype is not None and array.dtype.kind == "f":
                array = array.astype(dtype, copy=False)
            return array

        return self._apply(convert)

    def float(self):
        return self.to(dtypes.float32)

    def double(self):
        return self.to(dtypes.float64)

    def half(self):
        return self.to(dtypes.float16)

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to("cuda" if device is None else f"cuda:{int(device)}")

    # -- printing ----------------------------------------------------------
    def extra_repr(self):
        """The settings shown inside this module's parentheses (override it)."""
        return ""

    def _get_name(self):
        return type(self).__name__

    def __repr__(self):
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({name}): " + _addindent(repr(module), 2) for name, module in self._modules.items()]
        lines = extra_lines + child_lines
        body = ""
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                body = extra_lines[0]
            else:
                body = "\n  " + "\n  ".join(lines) + "\n"
        return f"{self._get_name()}({body})"

