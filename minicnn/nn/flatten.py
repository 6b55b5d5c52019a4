"""Flatten and Unflatten: reshape layers for use inside Sequential."""
from .. import functional as F
from ..functional.utils import normalize_dim
from ._utils import is_int
from .module import Module


class Flatten(Module):
    """Merge dims ``start_dim..end_dim`` into one: (N, C, H, W) -> (N, C*H*W)
    with the defaults (the batch dim is kept)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, input):
        return F.flatten(input, self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Split dim ``dim`` into ``unflattened_size``: with dim=1 and (C, H, W),
    (N, C*H*W) -> (N, C, H, W). One size may be -1 (inferred)."""

    def __init__(self, dim, unflattened_size):
        super().__init__()
        if not is_int(dim):
            raise TypeError(f"Unflatten: dim must be an int, got {type(dim).__name__}")
        if not isinstance(unflattened_size, (tuple, list)) or not all(is_int(s) for s in unflattened_size):
            raise TypeError(f"Unflatten: unflattened_size must be a tuple of ints, got {unflattened_size!r}")
        self.dim = dim
        self.unflattened_size = unflattened_size

    def forward(self, input):
        dim = normalize_dim(self.dim, input.ndim)
        try:
            return F.reshape(input, input.shape[:dim] + tuple(self.unflattened_size) + input.shape[dim + 1:])
        except ValueError:
            raise ValueError(f"Unflatten: unflattened_size {self.unflattened_size} does not fit dim {self.dim} "
                             f"of size {input.shape[dim]} (input shape {input.shape})") from None

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"
