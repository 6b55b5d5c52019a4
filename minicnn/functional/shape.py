"""Shape ops: reshape, permute, squeeze, expand, indexing, cat/stack,
split/chunk and pad.

None of them changes a value, only where it sits, so each backward puts
the gradient back where the value came from: reshape back, permute by the
inverse permutation, expand by summing (``sum_to``), indexing by scattering
into zeros, cat by slicing.
"""
import numbers

import numpy

from minicnn.kernels import registry

from ..autograd import Function
from ..backend import get_array_module
from .utils import normalize_dim, normalize_dims


class Reshape(Function):
    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        self.in_shape = x.shape
        return x.reshape(self.shape)

    def backward(self, gy):
        return reshape(gy, self.in_shape)


class Permute(Function):
    def __init__(self, dims):
        self.dims = dims

    def forward(self, x):
        return x.transpose(self.dims)

    def backward(self, gy):
        inverse = [0] * len(self.dims)
        for i, d in enumerate(self.dims):
            inverse[d] = i
        return permute(gy, tuple(inverse))


class BroadcastTo(Function):
    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        self.in_shape = x.shape
        return get_array_module(x).broadcast_to(x, self.shape)

    def backward(self, gy):
        return sum_to(gy, self.in_shape)


class SumTo(Function):
    """Sum a broadcast array back to ``shape`` (the adjoint of broadcasting)."""

    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        self.in_shape = x.shape
        lead = x.ndim - len(self.shape)
        axes = tuple(range(lead)) + tuple(
            lead + i for i, n in enumerate(self.shape) if n == 1 and x.shape[lead + i] != 1)
        y = x.sum(axis=axes, keepdims=True) if axes else x
        return y.reshape(self.shape) if lead else y

    def backward(self, gy):
        return broadcast_to(gy, self.in_shape)


class Contiguous(Function):
    def forward(self, x):
        return get_array_module(x).ascontiguousarray(x)

    def backward(self, gy):
        return gy


class GetItem(Function):
    """x[key]; backward scatters the gradient into zeros (adding where an
    integer-array index repeats a position)."""

    def __init__(self, key):
        self.key = key

    def forward(self, x):
        self.in_shape, self.in_dtype = x.shape, x.dtype
        return x[self.key]

    def backward(self, gy):
        return GetItemGrad.apply(gy, key=self.key, shape=self.in_shape)


class GetItemGrad(Function):
    def __init__(self, key, shape):
        self.key, self.shape = key, shape

    def forward(self, gy):
        xp = get_array_module(gy)
        gx = xp.zeros(self.shape, dtype=gy.dtype)
        if _is_basic_index(self.key):
            gx[self.key] = gy
        else:
            xp.add.at(gx, self.key, gy)
        return gx

    def backward(self, ggx):
        return getitem(ggx, self.key)


def _is_basic_index(key):
    """True when ``key`` uses only ints, slices, None and Ellipsis (so no
    position is selected twice and plain assignment is a correct scatter)."""
    parts = key if isinstance(key, tuple) else (key,)
    return all(isinstance(k, (numbers.Integral, slice, type(None), type(Ellipsis))) for k in parts)


class Cat(Function):
    def __init__(self, dim):
        self.dim = dim

    def forward(self, *xs):
        self.sizes = [x.shape[self.dim] for x in xs]
        return registry.lookup("concatenate", get_array_module(*xs))(xs, self.dim)

    def backward(self, gy):
        return tuple(split(gy, self.sizes, self.dim))


class Split(Function):
    zero_fill_missing = True

    def __init__(self, sizes, dim):
        self.sizes, self.dim = sizes, dim

    def forward(self, x):
        bounds, start = [], 0
        for n in self.sizes:
            bounds.append((start, start + n))
            start += n
        index = [slice(None)] * x.ndim
        outs = []
        for lo, hi in bounds:
            index[self.dim] = slice(lo, hi)
            outs.append(x[tuple(index)])
        return tuple(outs)

    def backward(self, *gys):
        return cat(gys, self.dim)


class Pad(Function):
    """Pad the trailing dims; ``pad`` is torch's flat list, last dim first:
    (left, right, top, bottom, ...)."""

    def __init__(self, pad, mode, value):
        self.pad, self.mode, self.value = pad, mode, value

    def forward(self, x):
        xp = get_array_module(x)
        self.in_shape = x.shape
        widths = [(0, 0)] * x.ndim
        for i in range(len(self.pad) // 2):
            widths[x.ndim - 1 - i] = (self.pad[2 * i], self.pad[2 * i + 1])
        self.widths = widths
        if self.mode in ("reflect", "replicate") and min(min(w) for w in widths) < 0:
            # Reflection and replication stay about the input's own edges
            # when the other side is cropped (torch's rule): gather each
            # axis from its source indices.
            y = x
            for axis, (lo, hi) in enumerate(widths):
                if lo or hi:
                    y = xp.take(y, _pad_source_index(xp, x.shape[axis], lo, hi, self.mode), axis=axis)
            return y
        # constant and circular crop first, then pad what is left.
        cropped = x[tuple(slice(max(-lo, 0), n - max(-hi, 0)) for (lo, hi), n in zip(widths, x.shape))]
        grow = [(max(lo, 0), max(hi, 0)) for lo, hi in widths]
        if self.mode == "constant":
            return xp.pad(cropped, grow, mode="constant", constant_values=self.value)
        return xp.pad(cropped, grow, mode={"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[self.mode])

    def backward(self, gy):
        return PadGrad.apply(gy, widths=self.widths, mode=self.mode, shape=self.in_shape)


class PadGrad(Function):
    """The adjoint of Pad: each padded position sends its gradient to the
    input position it copied (for constant mode: nowhere)."""

    def __init__(self, widths, mode, shape):
        self.widths, self.mode, self.shape = widths, mode, shape

    def forward(self, gy):
        xp = get_array_module(gy)
        g = gy
        for axis, (lo, hi) in enumerate(self.widths):
            if lo == 0 and hi == 0:
                continue
            n = self.shape[axis]
            source = _pad_source_index(xp, n, lo, hi, self.mode)
            moved = xp.moveaxis(g, axis, 0)
            keep = source >= 0  # constant padding and cropped positions go nowhere
            out = xp.zeros((n,) + moved.shape[1:], dtype=g.dtype)
            xp.add.at(out, source[keep], moved[keep])
            g = xp.moveaxis(out, 0, axis)
        return g

    def backward(self, ggx):
        return pad(ggx, [w for lo_hi in reversed(self.widths) for w in lo_hi], self.mode, 0.0)


def _pad_source_index(xp, n, lo, hi, mode):
    """For each position of a padded axis, the input index it copies (-1
    for a constant). Negative pads crop; circular padding wraps around
    what the crop leaves, the others reflect or replicate about the
    input's own edges (as torch does)."""
    if mode == "circular":
        start, kept = max(-lo, 0), n - max(-lo, 0) - max(-hi, 0)
        if kept == 0:
            return xp.arange(0)
        return start + xp.arange(-max(lo, 0), kept + max(hi, 0)) % kept
    positions = xp.arange(-lo, n + hi)
    if mode == "constant":
        return xp.where((positions >= 0) & (positions < n), positions, -1)
    if mode == "replicate":
        return xp.clip(positions, 0, n - 1)
    period = 2 * (n - 1)  # reflect without repeating the edge
    folded = positions % period if period else positions * 0
    return xp.where(folded < n, folded, period - folded)


# -- the functional API -------------------------------------------------
def _resolve_shape(shape, numel, what):
    """Fill one -1 in ``shape``; ValueError when the sizes do not match."""
    shape = tuple(int(s) for s in shape)
    if shape.count(-1) > 1:
        raise ValueError(f"{what}: only one dimension can be -1, got {shape}")
    if any(s < -1 for s in shape):
        raise ValueError(f"{what}: invalid shape {shape}")
    known = 1
    for s in shape:
        if s != -1:
            known *= s
    if -1 in shape:
        if known == 0 or numel % known:
            raise ValueError(f"{what}: shape {shape} is invalid for an input of {numel} elements")
        shape = tuple(numel // known if s == -1 else s for s in shape)
    elif known != numel:
        raise ValueError(f"{what}: shape {shape} is invalid for an input of {numel} elements")
    return shape


def reshape(input, shape):
    """``input`` with a new shape of the same number of elements (-1 is inferred)."""
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    shape = _resolve_shape(shape, input.data.size, f"reshape of a tensor of shape {input.shape}")
    if shape == input.shape:
        return input
    return Reshape.apply(input, shape=shape)


def view(input, shape):
    """Same as ``reshape`` here. (torch's view fails on non-contiguous data;
    minicnn copies when NumPy must.)"""
    return reshape(input, shape)


def flatten(input, start_dim=0, end_dim=-1):
    """Merge dims ``start_dim..end_dim`` into one."""
    if input.ndim == 0:
        return reshape(input, (1,))
    s = normalize_dim(start_dim, input.ndim, "start_dim")
    e = normalize_dim(end_dim, input.ndim, "end_dim")
    if s > e:
        raise ValueError(f"flatten: start_dim ({start_dim}) comes after end_dim ({end_dim})")
    shape = input.shape[:s] + (-1,) + input.shape[e + 1:]
    if 0 in input.shape:
        size = 1
        for n in input.shape[s:e + 1]:
            size *= n
        shape = input.shape[:s] + (size,) + input.shape[e + 1:]
    return reshape(input, shape)


def permute(input, dims):
    """Reorder the dims; ``dims`` is a permutation of range(ndim)."""
    dims = tuple(normalize_dim(d, input.ndim, "dims") for d in dims)
    if sorted(dims) != list(range(input.ndim)):
        raise ValueError(f"permute: dims {dims} is not a permutation of the {input.ndim} dims of shape {input.shape}")
    if dims == tuple(range(input.ndim)):
        return input
    return Permute.apply(input, dims=dims)


def transpose(input, dim0, dim1):
    """Swap two dims. A 0-d tensor accepts dims 0 and -1 and comes back
    unchanged, as in torch."""
    a, b = normalize_dim(dim0, input.ndim, "dim0"), normalize_dim(dim1, input.ndim, "dim1")
    if input.ndim == 0:
        return permute(input, ())
    dims = list(range(input.ndim))
    dims[a], dims[b] = dims[b], dims[a]
    return permute(input, tuple(dims))


def unsqueeze(input, dim):
    """Insert a dim of size 1 at ``dim`` (in [-ndim-1, ndim])."""
    d = normalize_dim(dim, input.ndim + 1, "dim")
    return reshape(input, input.shape[:d] + (1,) + input.shape[d:])


def squeeze(input, dim=None):
    """Drop dims of size 1 (all of them, or those in ``dim`` that are 1)."""
    dims = normalize_dims(dim, input.ndim) if input.ndim else ()
    shape = tuple(n for i, n in enumerate(input.shape) if not (i in dims and n == 1))
    return reshape(input, shape)


def broadcast_to(input, shape):
    """View ``input`` broadcast to ``shape`` (NumPy rules)."""
    shape = tuple(shape)
    if shape == input.shape:
        return input
    try:
        if numpy.broadcast_shapes(input.shape, shape) != shape:
            raise ValueError
    except ValueError:
        raise ValueError(f"cannot broadcast a tensor of shape {input.shape} to shape {shape}") from None
    return BroadcastTo.apply(input, shape=shape)


def expand(input, sizes):
    """torch's expand: ``broadcast_to`` where -1 keeps a dim's size."""
    sizes = tuple(sizes)
    lead = len(sizes) - input.ndim
    if lead < 0:
        raise ValueError(f"expand: {len(sizes)} sizes given for a tensor with {input.ndim} dims")
    shape = tuple(input.shape[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(sizes))
    return broadcast_to(input, shape)


def sum_to(input, shape):
    """Sum ``input`` down to ``shape`` (undo a broadcast); a no-op when equal."""
    shape = tuple(shape)
    if input.shape == shape:
        return input
    return SumTo.apply(input, shape=shape)


def contiguous(input):
    """A C-contiguous copy when the data is not already contiguous."""
    if input.data.flags.c_contiguous:
        return input
    return Contiguous.apply(input)


def getitem(input, key):
    """``input[key]``: ints, slices, None, Ellipsis, integer arrays, bool masks."""
    from ..tensor import Tensor, _index_arrays
    key = _index_arrays(key)
    if isinstance(key, list):
        key = get_array_module(input.data).asarray(key)
    try:
        probe = input.data[key]
    except IndexError as e:
        raise IndexError(f"index {key!r} is invalid for a tensor of shape {input.shape}: {e}") from None
    if not input.requires_grad:
        return Tensor._wrap(probe)
    return GetItem.apply(input, key=key)


def cat(tensors, dim=0):
    """Join tensors along an existing dim; all other dims must match."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty sequence of tensors")
    d = normalize_dim(dim, tensors[0].ndim)
    first = tensors[0].shape
    for i, t in enumerate(tensors):
        if t.ndim != len(first) or any(a != b for j, (a, b) in enumerate(zip(t.shape, first)) if j != d):
            raise ValueError(
                f"cat: tensors must have the same shape except in dim {dim}; "
                f"tensor 0 has shape {first}, tensor {i} has shape {t.shape}")
    return Cat.apply(*tensors, dim=d)


def stack(tensors, dim=0):
    """Join tensors of equal shape along a new dim."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty sequence of tensors")
    for i, t in enumerate(tensors):
        if t.shape != tensors[0].shape:
            raise ValueError(f"stack: all tensors must have the same shape; tensor 0 has shape "
                             f"{tensors[0].shape}, tensor {i} has shape {t.shape}")
    d = normalize_dim(dim, tensors[0].ndim + 1)
    return cat([unsqueeze(t, d) for t in tensors], d)


def split(input, split_size_or_sections, dim=0):
    """Split into chunks of ``split_size`` (the last may be smaller) or of
    the given list of sizes, which must add up to the dim's length."""
    d = normalize_dim(dim, input.ndim)
    n = input.shape[d]
    if isinstance(split_size_or_sections, numbers.Integral):
        size = int(split_size_or_sections)
        if size <= 0:
            raise ValueError(f"split: split_size must be positive, got {size}")
        sizes = [size] * (n // size) + ([n % size] if n % size else [])
        sizes = sizes or [0]
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if sum(sizes) != n or any(s < 0 for s in sizes):
            raise ValueError(f"split: sections {sizes} do not add up to {n}, the size of dim {dim} of shape {input.shape}")
    return list(Split.apply(input, sizes=sizes, dim=d)) if len(sizes) > 1 else [input]


def chunk(input, chunks, dim=0):
    """Split into ``chunks`` pieces of ceil(n / chunks) (torch's rule)."""
    if not isinstance(chunks, numbers.Integral) or chunks <= 0:
        raise ValueError(f"chunk: chunks must be a positive int, got {chunks!r}")
    n = input.shape[normalize_dim(dim, input.ndim)]
    size = max(-(-n // chunks), 1)
    return split(input, size, dim)


def pad(input, pad, mode="constant", value=0.0):
    """Pad (or, with negative amounts, crop) the trailing dims.

    ``pad`` is torch's flat tuple, starting with the last dim:
    ``(left, right)`` pads W, ``(left, right, top, bottom)`` pads W and H.
    Modes: ``'constant'`` (with ``value``), ``'reflect'`` (mirror without
    repeating the edge), ``'replicate'`` (repeat the edge), ``'circular'``.
    """
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise ValueError(f"pad: expected an even number of values for at most {input.ndim} dims, got {pad}")
    if mode not in ("constant", "reflect", "replicate", "circular"):
        raise ValueError(f"pad: mode must be 'constant', 'reflect', 'replicate' or 'circular', got {mode!r}")
    for i in range(len(pad) // 2):
        dim = input.ndim - 1 - i
        n = input.shape[dim]
        lo, hi = pad[2 * i], pad[2 * i + 1]
        kept = n + min(lo, 0) + min(hi, 0)        # what the crops leave
        if mode in ("constant", "circular") and kept < 0:
            raise ValueError(f"pad: padding ({lo}, {hi}) crops more than the size {n} of dim {dim} "
                             f"of input shape {input.shape}")
        if mode in ("reflect", "replicate") and n + lo + hi < 1:
            raise ValueError(f"pad: padding ({lo}, {hi}) leaves {n + lo + hi} elements of dim {dim} "
                             f"of input shape {input.shape}; {mode} padding needs at least 1")
        if mode == "reflect" and (lo >= n or hi >= n):
            raise ValueError(
                f"pad: reflect padding ({lo}, {hi}) must be less than the size {n} of dim "
                f"{dim} of input shape {input.shape}")
        if mode == "circular" and (lo > kept or hi > kept):
            raise ValueError(f"pad: circular padding ({lo}, {hi}) exceeds the {kept} elements left of dim {dim} "
                             f"of input shape {input.shape} (it may wrap around at most once)")
    if not any(pad):
        return input
    return Pad.apply(input, pad=pad, mode=mode, value=value)


def concatenate_reference(arrays, axis):
    """The "concatenate" primitive: ``xp.concatenate``, the NumPy / CuPy
    version (the CPU kernels share the copies out among the threads)."""
    return get_array_module(*arrays).concatenate(arrays, axis=axis)


registry.register("concatenate", "numpy", concatenate_reference)
registry.register("concatenate", "numba", "minicnn.kernels.cpu.concatenate:concatenate")
