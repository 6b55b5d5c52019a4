"""Loss modules: torch's classes around the losses of
``minicnn.functional.loss``, with torch's arguments, defaults and order.

    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    loss = criterion(logits, target)

``reduction`` is 'mean' (the default), 'sum' or 'none' (KLDivLoss also
takes 'batchmean'). torch's deprecated ``size_average`` and ``reduce``
are accepted, with a warning, and turned into ``reduction`` as torch
does: reduce=False gives 'none', else size_average=False gives 'sum',
else 'mean'. Class weights and ``pos_weight`` are buffers, so
``module.to(device)`` moves them and ``state_dict`` saves them.
"""
import warnings

from .. import functional as F
from ..tensor import Tensor
from .module import Module


def _legacy_reduction(size_average, reduce):
    """torch's mapping of the deprecated (size_average, reduce) pair."""
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    if size_average and reduce:
        reduction = "mean"
    elif reduce:
        reduction = "sum"
    else:
        reduction = "none"
    warnings.warn(f"size_average and reduce are deprecated; use reduction='{reduction}' instead", UserWarning,
                  stacklevel=4)
    return reduction


class _Loss(Module):
    """Holds ``reduction`` (checked here, not at the first call)."""

    _reductions = ("none", "mean", "sum")

    def __init__(self, size_average=None, reduce=None, reduction="mean"):
        super().__init__()
        if size_average is not None or reduce is not None:
            reduction = _legacy_reduction(size_average, reduce)
        if reduction not in self._reductions:
            options = ", ".join(repr(r) for r in self._reductions)
            raise ValueError(f"{type(self).__name__}: reduction must be one of {options}, got {reduction!r}")
        self.reduction = reduction


class _WeightedLoss(_Loss):
    """A loss with per-class weights, kept as the buffer ``weight``."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        _check_optional_tensor(weight, "weight", type(self).__name__)
        self.register_buffer("weight", weight)


def _check_optional_tensor(value, name, owner):
    if value is not None and not isinstance(value, Tensor):
        raise TypeError(f"{owner}: {name} must be a Tensor or None, got {type(value).__name__}")


class L1Loss(_Loss):
    """Mean absolute error |input - target|."""

    def forward(self, input, target):
        return F.l1_loss(input, target, reduction=self.reduction)


class MSELoss(_Loss):
    """Mean squared error (input - target)^2."""

    def forward(self, input, target):
        return F.mse_loss(input, target, reduction=self.reduction)


class SmoothL1Loss(_Loss):
    """Squared below ``beta``, absolute above (``F.smooth_l1_loss``)."""

    def __init__(self, size_average=None, reduce=None, reduction="mean", beta=1.0):
        super().__init__(size_average, reduce, reduction)
        self.beta = beta

    def forward(self, input, target):
        return F.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(_Loss):
    """Squared below ``delta``, linear with slope delta above (``F.huber_loss``)."""

    def __init__(self, reduction="mean", delta=1.0):
        super().__init__(reduction=reduction)
        self.delta = delta

    def forward(self, input, target):
        return F.huber_loss(input, target, reduction=self.reduction, delta=self.delta)


class NLLLoss(_WeightedLoss):
    """Negative log-likelihood of log-probabilities at class indices."""

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index

    def forward(self, input, target):
        return F.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                          reduction=self.reduction)


class CrossEntropyLoss(_WeightedLoss):
    """log_softmax over the class dim (dim 1, or 0 for an unbatched input)
    followed by the negative log-likelihood; the target holds class
    indices or class probabilities (``F.cross_entropy``)."""

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                 label_smoothing=0.0):
        super().__init__(weight, size_average, reduce, reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1], got {label_smoothing}")
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input, target):
        return F.cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)


class BCELoss(_WeightedLoss):
    """Binary cross-entropy of probabilities in [0, 1] (``F.binary_cross_entropy``)."""

    def forward(self, input, target):
        return F.binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Sigmoid and binary cross-entropy in one stable expression; ``weight``
    scales each element's loss, ``pos_weight`` the positive term of each
    class (``F.binary_cross_entropy_with_logits``). Both are buffers."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean", pos_weight=None):
        super().__init__(size_average, reduce, reduction)
        _check_optional_tensor(weight, "weight", "BCEWithLogitsLoss")
        _check_optional_tensor(pos_weight, "pos_weight", "BCEWithLogitsLoss")
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, weight=self.weight, reduction=self.reduction,
                                                  pos_weight=self.pos_weight)


class KLDivLoss(_Loss):
    """KL(target || model) with ``input`` the model's log-probabilities;
    ``reduction='batchmean'`` gives the divergence per sample
    (``F.kl_div``)."""

    _reductions = ("none", "mean", "sum", "batchmean")

    def __init__(self, size_average=None, reduce=None, reduction="mean", log_target=False):
        super().__init__(size_average, reduce, reduction)
        self.log_target = log_target

    def forward(self, input, target):
        return F.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)
