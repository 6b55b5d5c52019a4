"""Embedding: a learnt lookup table of ``num_embeddings`` vectors of size
``embedding_dim``, indexed by integer tensors (``F.embedding``).

torch's ``sparse=True`` (sparse gradients) is refused with a ValueError:
minicnn has no sparse tensors. Everything else is torch's, including
``max_norm`` rescaling the looked-up rows of ``weight`` in place.
"""
from .. import functional as F
from ..autograd import no_grad
from ..functional.lookup import _check_padding_idx
from ..tensor import Tensor
from . import init
from ._utils import is_int, new_parameter
from .module import Module
from .parameter import Parameter


class Embedding(Module):
    """y = weight[input]: input of indices (any shape S) -> S + (embedding_dim,).

    ``weight`` (num_embeddings, embedding_dim) starts as N(0, 1), with the
    row ``padding_idx`` (if given) zeroed; that row never gets a gradient.
    ``_weight`` supplies the table instead (shape checked); ``_freeze``
    makes it not require grad.
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None, norm_type=2.0,
                 scale_grad_by_freq=False, sparse=False, _weight=None, _freeze=False, device=None, dtype=None):
        super().__init__()
        for name, value in (("num_embeddings", num_embeddings), ("embedding_dim", embedding_dim)):
            if not is_int(value) or value < 0:
                raise ValueError(f"Embedding: {name} must be a non-negative int, got {value!r}")
        if sparse:
            raise ValueError("Embedding: sparse=True is not supported (minicnn has no sparse gradients)")
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.padding_idx = _check_padding_idx(padding_idx, num_embeddings, "Embedding")
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.scale_grad_by_freq = scale_grad_by_freq
        self.sparse = sparse
        if _weight is None:
            self.weight = new_parameter((num_embeddings, embedding_dim), device, dtype)
            self.weight.requires_grad_(not _freeze)
            self.reset_parameters()
        else:
            if not isinstance(_weight, Tensor):
                raise TypeError(f"Embedding: _weight must be a Tensor, got {type(_weight).__name__}")
            if _weight.shape != (num_embeddings, embedding_dim):
                raise ValueError(
                    f"Embedding: _weight has shape {_weight.shape}, expected "
                    f"({num_embeddings}, {embedding_dim}) for num_embeddings and embedding_dim")
            self.weight = Parameter(_weight, requires_grad=not _freeze)

    def reset_parameters(self):
        """Draw fresh N(0, 1) rows; the padding row is zeroed."""
        init.normal_(self.weight)
        self._fill_padding_idx_with_zero()

    def _fill_padding_idx_with_zero(self):
        if self.padding_idx is not None:
            with no_grad():
                self.weight.data[self.padding_idx] = 0

    def forward(self, input):
        return F.embedding(input, self.weight, self.padding_idx, self.max_norm, self.norm_type,
                           self.scale_grad_by_freq, self.sparse)

    def extra_repr(self):
        text = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            text += f", padding_idx={self.padding_idx}"
        if self.max_norm is not None:
            text += f", max_norm={self.max_norm}"
        if self.norm_type != 2:
            text += f", norm_type={self.norm_type}"
        if self.scale_grad_by_freq:
            text += ", scale_grad_by_freq=True"
        return text

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, padding_idx=None, max_norm=None, norm_type=2.0,
                        scale_grad_by_freq=False, sparse=False):
        """An Embedding whose table is ``embeddings`` (a 2-D Tensor, used
        as it is: its padding row is not zeroed); ``freeze`` keeps it fixed
        in training."""
        if not isinstance(embeddings, Tensor) or embeddings.ndim != 2:
            shape = embeddings.shape if isinstance(embeddings, Tensor) else type(embeddings).__name__
            raise ValueError(f"Embedding.from_pretrained: embeddings must be a 2-D Tensor, got {shape}")
        rows, cols = embeddings.shape
        return cls(rows, cols, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse,
                   _weight=embeddings, _freeze=freeze)
