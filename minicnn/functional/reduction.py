"""Reductions: sum, mean, var, std, max/min, amax/amin, argmax/argmin,
topk.

Backward of a reduction broadcasts the gradient back over the reduced
dims: every element that went into a sum receives the sum's gradient.
``_keep`` reshapes a gradient reduced without ``keepdim`` so it broadcasts.
"""
import builtins
import collections
import numbers

from ..autograd import Function
from ..backend import get_array_module
from ..tensor import Tensor  # defined before tensor.py imports the ops
from .utils import normalize_dims
from .shape import broadcast_to, reshape

MaxResult = collections.namedtuple("MaxResult", ["values", "indices"])
TopkResult = collections.namedtuple("TopkResult", ["values", "indices"])


def _keep(gy, in_shape, dims):
    """Reshape gradient ``gy`` of a reduction over ``dims`` to keepdim form."""
    shape = tuple(1 if i in dims else n for i, n in enumerate(in_shape))
    return reshape(gy, shape)


class Sum(Function):
    def __init__(self, dims, keepdim):
        self.dims, self.keepdim = dims, keepdim

    def forward(self, x):
        self.in_shape = x.shape
        return x.sum(axis=self.dims, keepdims=self.keepdim)

    def backward(self, gy):
        return broadcast_to(_keep(gy, self.in_shape, self.dims), self.in_shape)


class Amax(Function):
    """max over dims; ties share the gradient equally (as torch's amax)."""

    pick = "max"

    def __init__(self, dims, keepdim):
        self.dims, self.keepdim = dims, keepdim

    def forward(self, x):
        y = getattr(x, self.pick)(axis=self.dims, keepdims=True)
        hits = (x == y).astype(x.dtype)
        self.share = hits / hits.sum(axis=self.dims, keepdims=True)
        return y if self.keepdim else y.reshape([n for i, n in enumerate(x.shape) if i not in self.dims])

    def backward(self, gy):
        return _keep(gy, self.share.shape, self.dims) * Tensor._wrap(self.share)


class Amin(Amax):
    pick = "min"


class MaxDim(Function):
    """max along one dim, returning (values, indices); the gradient goes to
    the element the index names."""

    pick = "argmax"

    def __init__(self, dim, keepdim):
        self.dim, self.keepdim = dim, keepdim

    def forward(self, x):
        xp = get_array_module(x)
        idx = getattr(xp, self.pick)(x, axis=self.dim)
        idx = xp.expand_dims(idx, self.dim)
        values = xp.take_along_axis(x, idx, axis=self.dim)
        self.in_shape, self.idx = x.shape, idx
        if not self.keepdim:
            values, idx = values.squeeze(self.dim), idx.squeeze(self.dim)
        return values, idx.astype("int64")

    def backward(self, gy, gidx):
        return MaxDimGrad.apply(_keep(gy, self.in_shape, (self.dim,)), idx=self.idx, dim=self.dim, shape=self.in_shape)


class MinDim(MaxDim):
    pick = "argmin"


class TopK(Function):
    """The k largest (or smallest) entries along one dim, in order, and
    their indices; the gradient goes back to the entries chosen (as for
    MaxDim, with k indices instead of one)."""

    def __init__(self, k, dim, largest):
        self.k, self.dim, self.largest = k, dim, largest

    def forward(self, x):
        xp = get_array_module(x)
        dim = self.dim
        if self.largest:
            # Descending order with ties in index order: a stable ascending
            # sort of the reversed axis, read backwards. NaN, which sorts
            # last, comes first, as torch counts NaN as the largest value.
            reversed_order = xp.argsort(xp.flip(x, dim), axis=dim, kind="stable")
            order = x.shape[dim] - 1 - xp.flip(reversed_order, dim)
        else:
            order = xp.argsort(x, axis=dim, kind="stable")
        idx = xp.take(order, xp.arange(self.k), axis=dim)
        self.in_shape, self.idx = x.shape, idx
        return xp.take_along_axis(x, idx, axis=dim), idx.astype("int64")

    def backward(self, gy, gidx):
        return MaxDimGrad.apply(gy, idx=self.idx, dim=self.dim, shape=self.in_shape)


class MaxDimGrad(Function):
    def __init__(self, idx, dim, shape):
        self.idx, self.dim, self.shape = idx, dim, shape

    def forward(self, gy):
        xp = get_array_module(gy)
        gx = xp.zeros(self.shape, dtype=gy.dtype)
        xp.put_along_axis(gx, self.idx, gy, axis=self.dim)
        return gx

    def backward(self, ggx):
        xp = get_array_module(ggx.data)
        return Tensor._wrap(xp.take_along_axis(ggx.data, self.idx, axis=self.dim))


# -- the functional API -------------------------------------------------
def _dims(input, dim):
    return normalize_dims(dim, input.ndim) if input.ndim else ()


def sum(input, dim=None, keepdim=False):
    """Sum over ``dim`` (None: all dims)."""
    dims = _dims(input, dim)
    if input.dtype.kind == "b":
        input = input.to("int64")
    return Sum.apply(input, dims=dims, keepdim=keepdim)


def mean(input, dim=None, keepdim=False):
    """Mean over ``dim`` (None: all dims); floating inputs only, as in torch."""
    if input.dtype.kind != "f":
        raise TypeError(f"mean: input must be floating point, got dtype {input.dtype}")
    dims = _dims(input, dim)
    count = 1
    for d in dims:
        count *= input.shape[d]
    return sum(input, dim, keepdim) / count


def _correction(unbiased, correction):
    if correction is not None and unbiased is not None:
        raise ValueError("var/std: give either unbiased or correction, not both")
    if correction is not None:
        return correction
    return 1 if unbiased is None or unbiased else 0


def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Variance over ``dim`` with Bessel's ``correction`` (default 1, as in
    torch): sum((x - mean)^2) / (n - correction)."""
    if input.dtype.kind != "f":
        raise TypeError(f"var: input must be floating point, got dtype {input.dtype}")
    c = _correction(unbiased, correction)
    dims = _dims(input, dim)
    count = 1
    for d in dims:
        count *= input.shape[d]
    centered = input - mean(input, dims, keepdim=True)
    return sum(centered * centered, dims, keepdim) / builtins.max(count - c, 0)


class StdFromVar(Function):
    """s = sqrt(v), with torch's gradient where s == 0 (a constant input):
    0, not gs / (2 s) = inf, which times the zero deviations (x - mean)
    of var's backward would be nan."""

    def forward(self, v):
        self.save_for_backward(v)
        return get_array_module(v).sqrt(v)

    def backward(self, gs):
        from .elementwise import where
        (v,) = self.saved_tensors
        zero = v.data == 0
        s = where(zero, 1.0, v.sqrt())  # 1 where s == 0, so the division cannot warn
        return where(zero, 0.0, gs / (2 * s))


def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Square root of ``var``; its gradient is 0 where std is 0, as torch's."""
    return StdFromVar.apply(var(input, dim, unbiased, keepdim, correction=correction))


def _max_or_min(input, dim, keepdim, full, along):
    if dim is None:
        if input.data.size == 0:
            raise ValueError(f"max/min of an empty tensor of shape {input.shape}")
        return full.apply(input, dims=_dims(input, None), keepdim=False)
    if not isinstance(dim, numbers.Integral):
        raise TypeError(f"max/min: dim must be an int, got {dim!r}")
    if input.ndim == 0:
        # A scalar is its own max along dim 0 (or -1), at index 0; keepdim
        # keeps the shape (), as in torch.
        normalize_dims(dim, 0)
        values, indices = along.apply(reshape(input, (1,)), dim=0, keepdim=False)
        return MaxResult(values, indices)
    d = normalize_dims(dim, input.ndim)[0]
    return MaxResult(*along.apply(input, dim=d, keepdim=keepdim))


def max(input, dim=None, keepdim=False):
    """The largest element, or with ``dim`` a (values, indices) pair."""
    return _max_or_min(input, dim, keepdim, Amax, MaxDim)


def min(input, dim=None, keepdim=False):
    """The smallest element, or with ``dim`` a (values, indices) pair."""
    return _max_or_min(input, dim, keepdim, Amin, MinDim)


def amax(input, dim=(), keepdim=False):
    """Max over ``dim`` (``()`` or None: all dims); ties share the gradient."""
    return Amax.apply(input, dims=_dims(input, dim if dim != () else None), keepdim=keepdim)


def amin(input, dim=(), keepdim=False):
    """Min over ``dim``; ties share the gradient."""
    return Amin.apply(input, dims=_dims(input, dim if dim != () else None), keepdim=keepdim)


def _arg(input, dim, keepdim, name):
    xp = get_array_module(input.data)
    fn = getattr(xp, name)
    if dim is None:
        return Tensor._wrap(xp.asarray(fn(input.data), dtype="int64"))
    d = normalize_dims(dim, input.ndim)[0]
    out = fn(input.data, axis=d)
    if keepdim and input.ndim:           # a 0-d input gives a 0-d index, keepdim or not (torch)
        out = xp.expand_dims(out, d)
    return Tensor._wrap(out.astype("int64"))


def argmax(input, dim=None, keepdim=False):
    """Index of the largest element (flattened when ``dim`` is None); no grad."""
    return _arg(input, dim, keepdim, "argmax")


def argmin(input, dim=None, keepdim=False):
    """Index of the smallest element; no grad."""
    return _arg(input, dim, keepdim, "argmin")


def topk(input, k, dim=-1, largest=True, sorted=True):
    """The ``k`` largest (``largest=False``: smallest) entries along
    ``dim`` as (values, indices), as ``torch.topk``: both have ``input``'s
    shape with ``dim`` cut to k. The values come in order, largest (or
    smallest) first, whatever ``sorted`` says (torch only promises an order
    with ``sorted=True``); equal values keep their index order, and NaN
    counts as larger than any number. The gradient flows to the chosen
    entries; indices carry none."""
    if not isinstance(input, Tensor):
        raise TypeError(f"topk: input must be a Tensor, got {type(input).__name__}")
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"topk: k must be an int, got {k!r}")
    if not isinstance(dim, numbers.Integral) or isinstance(dim, bool):
        raise TypeError(f"topk: dim must be an int, got {dim!r}")
    if input.ndim == 0:  # a scalar is its own top-1, as in torch
        if k not in (0, 1):
            raise ValueError(f"topk: k={k} is out of range for a 0-d input (k must be 0 or 1)")
        values, indices = topk(reshape(input, (1,)), 1, 0, largest, sorted)
        return TopkResult(reshape(values, ()), reshape(indices, ()))
    d = normalize_dims(dim, input.ndim)[0]
    if not 0 <= k <= input.shape[d]:
        raise ValueError(f"topk: k={k} is out of range for dim {dim} of size {input.shape[d]} "
                         f"(input shape {input.shape})")
    values, indices = TopK.apply(input, k=int(k), dim=d, largest=bool(largest))
    return TopkResult(values, indices)
