"""Gradient clipping, torch's ``clip_grad_norm_`` and ``clip_grad_value_``.

Both change ``.grad`` of the parameters in place, between
``loss.backward()`` and ``optimizer.step()``::

    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
    optimizer.step()

The total norm treats all the gradients as one long vector: it is the
norm of the per-tensor norms (for p > 0, ||(||g_1||, ..., ||g_k||)||_p is
the p-norm of the concatenation; for p = 0 it is, as in torch, the number
of tensors with a non-zero gradient). ``foreach`` is accepted for torch's
signature and ignored: there are no fused multi-tensor kernels here, and
the result is the same.
"""
import math
import numbers

import numpy

from ... import dtypes
from ...autograd import no_grad
from ...backend import get_array_module
from ...tensor import Tensor


def _tensor_list(tensors, name, function):
    """A Tensor or an iterable of them (consumed once) as a list."""
    if isinstance(tensors, Tensor):
        return [tensors]
    try:
        tensors = list(tensors)
    except TypeError:
        raise TypeError(f"{function}: {name} must be a Tensor or an iterable of Tensors, "
                        f"got {type(tensors).__name__}") from None
    for t in tensors:
        if not isinstance(t, Tensor):
            raise TypeError(f"{function}: {name} must hold Tensors, got a {type(t).__name__}")
    return tensors


def _norm_type(norm_type, function):
    try:
        return float(norm_type)             # 'inf' and math.inf alike
    except (TypeError, ValueError):
        raise TypeError(f"{function}: norm_type must be a number or 'inf', got {norm_type!r}") from None


def _vector_norm(array, p):
    """The p-norm of all the elements of ``array``, in its dtype (as
    torch.linalg.vector_norm): max |a| for inf, min |a| for -inf, the
    count of non-zeros for 0."""
    xp = get_array_module(array)
    flat = array.reshape(-1)
    if flat.size == 0:
        return xp.zeros((), dtype=array.dtype)
    return xp.asarray(xp.linalg.norm(flat, ord=p), dtype=array.dtype)


def get_total_norm(tensors, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """The ``norm_type``-norm of ``tensors`` viewed as one vector, as a 0-d
    Tensor (float32 0 when there are none). With ``error_if_nonfinite`` a
    nan or infinite norm raises RuntimeError (as torch)."""
    tensors = _tensor_list(tensors, "tensors", "get_total_norm")
    p = _norm_type(norm_type, "get_total_norm")
    if not tensors:
        return Tensor._wrap(numpy.zeros((), dtype=dtypes.default_float))
    xp = get_array_module(tensors[0].data)
    norms = xp.stack([_vector_norm(t.data, p) for t in tensors])
    total = _vector_norm(norms, p)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(
            f"The total norm of order {p} for gradients from `parameters` is non-finite, so it cannot be "
            "clipped. To disable this error and scale the gradients by the non-finite norm anyway, "
            "set `error_if_nonfinite=False`")
    return Tensor._wrap(total)


def clip_grads_with_norm_(parameters, max_norm, total_norm, foreach=None):
    """Scale every ``.grad`` of ``parameters`` in place by
    min(max_norm / (total_norm + 1e-6), 1), with a ``total_norm`` computed
    beforehand (``get_total_norm``)."""
    parameters = _tensor_list(parameters, "parameters", "clip_grads_with_norm_")
    if not isinstance(max_norm, numbers.Real):
        raise TypeError(f"clip_grads_with_norm_: max_norm must be a number, got {type(max_norm).__name__}")
    if not isinstance(total_norm, Tensor):
        raise TypeError(f"clip_grads_with_norm_: total_norm must be a Tensor, got {type(total_norm).__name__}")
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    # torch's arithmetic, in the dtype of total_norm.
    total = total_norm.data
    coef = get_array_module(total).minimum(total.dtype.type(max_norm) / (total + total.dtype.type(1e-6)), 1)
    # An infinite gradient times the coefficient 0 is nan, as in torch.
    with no_grad(), numpy.errstate(invalid="ignore"):
        for g in grads:
            g.data *= coef.astype(g.dtype)


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Scale the gradients of ``parameters`` (a Tensor or an iterable of
    them) in place so that their total ``norm_type``-norm is at most
    ``max_norm``; return the total norm before clipping, a 0-d Tensor.

    The scale is min(max_norm / (total + 1e-6), 1): gradients are only
    ever shrunk."""
    parameters = _tensor_list(parameters, "parameters", "clip_grad_norm_")
    grads = [p.grad for p in parameters if p.grad is not None]
    total_norm = get_total_norm(grads, norm_type, error_if_nonfinite, foreach)
    clip_grads_with_norm_(parameters, max_norm, total_norm, foreach)
    return total_norm


def clip_grad_value_(parameters, clip_value, foreach=None):
    """Clamp every ``.grad`` of ``parameters`` in place to
    [-clip_value, clip_value] (nan stays nan)."""
    parameters = _tensor_list(parameters, "parameters", "clip_grad_value_")
    if not isinstance(clip_value, numbers.Real) or math.isnan(clip_value):
        raise TypeError(f"clip_grad_value_: clip_value must be a number, got {clip_value!r}")
    clip_value = float(clip_value)
    for p in parameters:
        if p.grad is not None:
            get_array_module(p.grad.data).clip(p.grad.data, -clip_value, clip_value, out=p.grad.data)
