"""Lookup tables: embedding (rows of a weight matrix picked by index) and
one_hot.

Notation: V the number of embeddings (rows of the table), D the embedding
dim; ``input`` holds indices of any shape S, the result has shape S + (D,).

The gradient of a lookup y = W[i] is a scatter-add: every output row adds
its gradient into the row of W it was read from, so a row read k times
gets the sum of k gradients. ``padding_idx`` names a row that never gets
any (its lookups are padding, not data); ``scale_grad_by_freq`` divides
the gradient of each row by how often it was read in this call.
"""
import numbers

from .. import dtypes
from ..autograd import Function, no_grad
from ..backend import get_array_module
from ..tensor import Tensor  # defined before tensor.py imports the ops
from .utils import check_float


class Embedding(Function):
    """y = W[i] for indices i (an array, a constant of the op); W: (V, D)."""

    def __init__(self, indices, padding_idx, scale_grad_by_freq):
        self.indices = indices
        self.padding_idx = padding_idx
        self.scale_grad_by_freq = scale_grad_by_freq

    def forward(self, weight):
        self.table_shape = weight.shape
        return weight[self.indices]

    def backward(self, gy):
        # The scatter-add is a kernel on arrays (add.at): its result is a
        # plain array, so this gradient is not differentiated again.
        xp = get_array_module(gy.data)
        flat = self.indices.reshape(-1)
        rows = gy.data.reshape(flat.shape[0], self.table_shape[1])
        if self.scale_grad_by_freq:
            counts = xp.bincount(flat, minlength=self.table_shape[0])
            rows = rows / counts[flat].astype(rows.dtype)[:, None]
        gw = xp.zeros(self.table_shape, dtype=gy.dtype)
        xp.add.at(gw, flat, rows)
        if self.padding_idx is not None:
            gw[self.padding_idx] = 0
        return gw


def _check_indices(input, num_embeddings, name):
    if not isinstance(input, Tensor):
        raise TypeError(f"{name}: input must be a Tensor of indices, got {type(input).__name__}")
    if input.dtype.kind not in "iu":
        raise TypeError(f"{name}: input must hold indices (an integer tensor), got dtype {input.dtype}")
    idx = input.data
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= num_embeddings):
        bad = idx[(idx < 0) | (idx >= num_embeddings)]
        raise ValueError(
            f"{name}: index out of range: input holds {bad.reshape(-1)[:5].tolist()}, "
            f"the table has {num_embeddings} rows (indices 0..{num_embeddings - 1})")


def _renorm_rows_(weight, indices, max_norm, norm_type):
    """Scale, in place, every row of ``weight`` read by ``indices`` whose
    ``norm_type``-norm exceeds ``max_norm`` down to norm max_norm (torch's
    embedding_renorm_, with its 1e-7 added to the norm)."""
    xp = get_array_module(weight.data)
    rows = xp.unique(indices.reshape(-1))
    picked = weight.data[rows]
    norms = xp.linalg.norm(picked, ord=norm_type, axis=1) if picked.size else xp.zeros(0, picked.dtype)
    too_long = norms > max_norm
    scale = (max_norm / (norms[too_long] + 1e-7)).astype(picked.dtype)
    weight.data[rows[too_long]] = picked[too_long] * scale[:, None]


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    """Rows of ``weight`` (V, D) at the indices ``input`` (any shape S):
    a tensor of shape S + (D,).

    ``padding_idx`` (negative counts from the end) gets no gradient.
    ``max_norm``: before the lookup, every row that is looked up and has a
    ``norm_type``-norm above max_norm is scaled in place, in ``weight``
    itself, down to that norm (as torch does; weight changes even though
    no optimizer step ran). ``sparse=True`` (torch's sparse gradients) is
    not supported: minicnn has no sparse tensors, so it raises ValueError.
    """
    if not isinstance(weight, Tensor) or weight.ndim != 2:
        shape = weight.shape if isinstance(weight, Tensor) else type(weight).__name__
        raise ValueError(f"embedding: weight must be a 2-D Tensor (num_embeddings, embedding_dim), got {shape}")
    check_float(weight, "embedding", "weight")
    num_embeddings = weight.shape[0]
    padding_idx = _check_padding_idx(padding_idx, num_embeddings, "embedding")
    if sparse:
        raise ValueError("embedding: sparse=True is not supported (minicnn has no sparse gradients)")
    _check_indices(input, num_embeddings, "embedding")
    if max_norm is not None:
        if not isinstance(max_norm, numbers.Real) or max_norm < 0:
            raise ValueError(f"embedding: max_norm must be a non-negative number or None, got {max_norm!r}")
        with no_grad():
            _renorm_rows_(weight, input.data, max_norm, norm_type)
    return Embedding.apply(weight, indices=input.data, padding_idx=padding_idx,
                           scale_grad_by_freq=bool(scale_grad_by_freq))


def _check_padding_idx(padding_idx, num_embeddings, name):
    """``padding_idx`` in [0, num_embeddings) (negative counts from the end), or None."""
    if padding_idx is None:
        return None
    if not isinstance(padding_idx, numbers.Integral) or isinstance(padding_idx, bool):
        raise TypeError(f"{name}: padding_idx must be an int or None, got {type(padding_idx).__name__}")
    if not -num_embeddings <= padding_idx < num_embeddings:
        raise ValueError(
            f"{name}: padding_idx must be within [-{num_embeddings}, {num_embeddings}) for "
            f"num_embeddings={num_embeddings}, got {padding_idx}")
    return int(padding_idx) % num_embeddings


def one_hot(tensor, num_classes=-1):
    """int64 tensor of shape tensor.shape + (num_classes,) with a 1 at each
    index of ``tensor`` and 0 elsewhere. ``num_classes=-1`` takes
    max(tensor) + 1 (an error for an empty tensor, as in torch). torch
    accepts only int64 input; minicnn takes any integer dtype."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"one_hot: tensor must be a Tensor, got {type(tensor).__name__}")
    if tensor.dtype.kind not in "iu":
        raise TypeError(f"one_hot: tensor must hold class indices (an integer tensor), got dtype {tensor.dtype}")
    if not isinstance(num_classes, numbers.Integral) or isinstance(num_classes, bool):
        raise TypeError(f"one_hot: num_classes must be an int, got {type(num_classes).__name__}")
    xp = get_array_module(tensor.data)
    idx = tensor.data
    if idx.size and int(idx.min()) < 0:
        raise ValueError(f"one_hot: class values must be non-negative, got {int(idx.min())}")
    if num_classes == -1:
        if idx.size == 0:
            raise ValueError("one_hot: cannot infer num_classes from an empty tensor; pass num_classes")
        num_classes = int(idx.max()) + 1
    elif num_classes < 0:
        raise ValueError(f"one_hot: num_classes must be -1 or non-negative, got {num_classes}")
    elif idx.size and int(idx.max()) >= num_classes:
        raise ValueError(f"one_hot: class values must be smaller than num_classes={num_classes}, "
                         f"got {int(idx.max())}")
    classes = xp.arange(num_classes)
    return Tensor._wrap((idx[..., None] == classes).astype(dtypes.int64))
