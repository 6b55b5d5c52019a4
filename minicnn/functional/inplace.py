"""In-place ops: ``add_``, ``mul_``, ``clamp_``, ``copy_``, ``t[idx] = v`` ...

An in-place op writes its result into the tensor's own array and bumps the
array's version (``autograd.bump_version``), under ``no_grad`` or not.

Where a graph is recorded (grad enabled and the tensor or an operand
requires grad) the op is recorded as torch records it: the result is
computed out of place from an alias of the tensor (a Tensor on the same
array, with the tensor's node), written into the array, and the tensor
moves to the result's node. Everything that consumes the tensor afterwards
differentiates through the op; everything that consumed it before keeps
the old node, and a node that saved the old values finds the version
changed and raises instead of using the new ones. An op whose backward
needs the old values itself (``mul_``: the gradient of the other factor
is the old tensor) gets a copy of them, as torch saves "original self".

Refused while recording, as in torch: an in-place op on a leaf that
requires grad. Refused where torch would rewrite history and minicnn does
not: an in-place op on a view of a tensor in the graph, or on a tensor
that has live views in the graph (torch regenerates the views' nodes).
"""
from ..autograd import Function, bump_version, is_grad_enabled, no_grad
from ..backend import get_array_module
from ..tensor import Tensor  # defined before tensor.py imports the ops
from .shape import getitem, sum_to
from .utils import as_tensor

LEAF = "a leaf Variable that requires grad is being used in an in-place operation."


class InplaceShapeError(ValueError, RuntimeError):
    """The result of an in-place op does not have the tensor's shape. A
    ValueError (minicnn's convention for bad input) and a RuntimeError
    (what torch raises)."""


def _alias(t, copy):
    """A Tensor standing for ``t`` as the op's input: ``t``'s node, and
    ``t``'s array (or a copy of its values, for a backward that needs them
    after the array is overwritten)."""
    alias = Tensor._wrap(t.data.copy() if copy else t.data)
    alias.requires_grad, alias.grad_fn, alias._output_index = t.requires_grad, t.grad_fn, t._output_index
    return alias


def _check_views(t, name):
    if t._view_of is not None:
        raise RuntimeError(
            f"{name}: this tensor is a view of another tensor in the graph (an output of reshape, "
            f"permute, indexing, ...); an in-place op on it while recording is not supported "
            f"(torch rewrites the base's history, minicnn does not). Clone it first or apply the op "
            f"out of place")
    if any(v() is not None for v in t.__dict__.get("_views", ())):
        raise RuntimeError(
            f"{name}: views of this tensor (outputs of reshape, permute, indexing, ...) are still in "
            f"the graph; an in-place op on it while recording is not supported (torch regenerates "
            f"the views' history, minicnn does not). Apply the op out of place")


def apply_inplace(t, name, compute, operands=(), needs_original=False):
    """Overwrite ``t`` with ``compute(t_alias, *operands)`` (a Tensor of
    ``t``'s shape), recorded where a graph is; returns ``t``."""
    recording = is_grad_enabled() and (
        t.requires_grad or any(isinstance(o, Tensor) and o.requires_grad for o in operands))
    if not recording:
        with no_grad():
            result = compute(t, *operands)
        _write(t, result, name)
        return t
    if t.requires_grad and t.grad_fn is None:
        raise RuntimeError(LEAF)
    _check_views(t, name)
    result = compute(_alias(t, needs_original), *operands)
    _write(t, result, name)
    old_node, old_index = t.grad_fn, t._output_index
    t.requires_grad, t.grad_fn, t._output_index = result.requires_grad, result.grad_fn, result._output_index
    if t.retains_grad:
        # As in torch: .grad is the gradient w.r.t. the new value. (Hooks
        # stay where they were registered, on the old value.)
        del old_node._retained[old_index]
        t.retains_grad = False
        t.retain_grad()
    return t


def _write(t, result, name):
    """Copy ``result`` into ``t``'s array (same shape, cast to t's dtype)."""
    if result.shape != t.shape:
        raise InplaceShapeError(
            f"{name}: output with shape {t.shape} doesn't match the broadcast shape {result.shape}")
    if result.dtype.kind == "f" and t.dtype.kind != "f":
        raise RuntimeError(f"{name}: result type {result.dtype} can't be cast to the desired output "
                           f"type {t.dtype}")
    if result.data is not t.data:
        t.data[...] = result.data
    bump_version(t.data)


class Overwrite(Function):
    """The tensor's values replaced by ``src`` (broadcast to its shape and
    cast to its dtype), as ``copy_``, ``fill_`` and ``zero_`` do: the old
    values get a zero gradient (as in torch), ``src`` the gradient summed
    back to its shape."""

    def forward(self, target, src):
        self.src_shape, self.src_dtype = src.shape, src.dtype
        xp = get_array_module(target)
        return xp.broadcast_to(src, target.shape).astype(target.dtype)

    def backward(self, gy):
        g_target = gy * 0 if self.needs_input_grad[0] else None
        g_src = sum_to(gy, self.src_shape).to(self.src_dtype) if self.needs_input_grad[1] else None
        return g_target, g_src


class IndexPut(Function):
    """``target[key] = value`` out of place: the target's gradient is zero
    where the value was written; the value's is the gradient there, summed
    back to its shape."""

    def __init__(self, key):
        self.key = key

    def forward(self, target, value):
        self.value_shape, self.value_dtype = value.shape, value.dtype
        out = target.copy()
        out[self.key] = value
        if self.recording:
            kept = get_array_module(target).ones(target.shape, dtype=target.dtype)
            kept[self.key] = 0
            self.kept = kept
        return out

    def backward(self, gy):
        g_target = gy * Tensor._wrap(self.kept) if self.needs_input_grad[0] else None
        g_value = None
        if self.needs_input_grad[1]:
            g_value = sum_to(getitem(gy, self.key), self.value_shape).to(self.value_dtype)
        return g_target, g_value


def overwrite(t, src, name):
    """``t`` with every value replaced by ``src`` (broadcast), in place."""
    src = as_tensor(src, t.data)
    try:
        get_array_module(t.data).broadcast_shapes(src.shape, t.shape)
    except ValueError:
        raise InplaceShapeError(f"{name}: the source of shape {src.shape} cannot be broadcast to "
                                f"the tensor's shape {t.shape}") from None
    if not (is_grad_enabled() and (t.requires_grad or src.requires_grad)):
        t.data[...] = src.data
        bump_version(t.data)
        return t
    return apply_inplace(t, name, lambda alias, s: Overwrite.apply(alias, s), (src,))


def setitem(t, key, value):
    """``t[key] = value``, in place."""
    from ..tensor import _index_arrays
    key = _index_arrays(key)
    if isinstance(key, list):
        key = get_array_module(t.data).asarray(key)
    value = as_tensor(value, t.data)
    if not (is_grad_enabled() and (t.requires_grad or value.requires_grad)):
        t.data[key] = value.data
        bump_version(t.data)
        return t
    if value.dtype.kind == "f" and t.dtype.kind != "f":
        raise RuntimeError(f"__setitem__: a value of dtype {value.dtype} can't be written into a tensor of "
                           f"dtype {t.dtype}")
    return apply_inplace(t, "__setitem__", lambda alias, v: IndexPut.apply(alias, v, key=key), (value,))
