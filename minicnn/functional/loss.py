"""Losses: cross_entropy, nll_loss, mse_loss, l1_loss, smooth_l1_loss,
huber_loss, binary_cross_entropy, binary_cross_entropy_with_logits, kl_div.

They are compositions of differentiable ops (log_softmax, indexing, sums),
so their gradients come from the ops' own backward formulas; except the
commonest one, cross-entropy at class indices without label smoothing,
which is one op (``SoftmaxCrossEntropy``) with the textbook gradient
softmax(x) - onehot(t): as a composite it is seven ops forward and a dozen
backward, most of the time of a small net's step.

Notation: N batch, C classes; input (N, C) or (N, C, d1, ...), class-index
target (N,) or (N, d1, ...).

Differences from torch, all deliberate:

* torch's deprecated ``size_average`` and ``reduce`` arguments are not
  taken by these functions (the loss modules of ``minicnn.nn`` accept
  them, and turn them into ``reduction`` as torch does).
* The regression losses (mse, l1, smooth_l1, huber) refuse an input and
  a target of different shapes, where torch warns and broadcasts:
  broadcasting a loss is almost always a bug.

As in torch, 'mean' over no elements at all is nan (0 / 0), 'sum' is 0.
"""
import math
import numbers

import numpy

from ..autograd import Function, is_grad_enabled
from ..backend import get_array_module
from ..tensor import Tensor  # defined before tensor.py imports the ops
from .activation import log_softmax, softmax
from .elementwise import abs as abs_, exp, log, where
from .reduction import sum as sum_
from .shape import permute, reshape
from .utils import broadcast_shapes, check_float


def _check_reduction(reduction, name):
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{name}: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


def _reduce(losses, reduction):
    """Apply ``reduction`` to elementwise losses."""
    if reduction == "none":
        return losses
    total = sum_(losses)
    if reduction == "sum":
        return total
    # torch's mean of no elements is nan; dividing by 0 would warn.
    return total / losses.numel() if losses.numel() else total * math.nan


def _check_same_shape(input, target, name):
    if input.shape != target.shape:
        raise ValueError(f"{name}: input has shape {input.shape} but target has shape {target.shape}")


def _classes_last(input, name):
    """(N, C, d1, ...) -> (M, C) with the class dim last; (C,) -> (1, C)."""
    if input.ndim == 1:
        return reshape(input, (1, -1))
    if input.ndim > 2:
        dims = (0,) + tuple(range(2, input.ndim)) + (1,)
        input = permute(input, dims)
    return reshape(input, (-1, input.shape[-1]))


def _check_class_target(input, target, name):
    if target.dtype.kind not in "iu":
        raise TypeError(f"{name}: target must hold class indices (an integer tensor), got dtype {target.dtype}")
    expected = input.shape[:1] + input.shape[2:] if input.ndim > 1 else ()
    if target.shape != expected:
        raise ValueError(
            f"{name}: input of shape {input.shape} needs a target of shape {expected}, got {target.shape}")


def _check_weight(weight, n_classes, name):
    if weight is not None and weight.shape != (n_classes,):
        raise ValueError(f"{name}: weight must have shape ({n_classes},) for {n_classes} classes, got {weight.shape}")


def _class_targets(input, target, weight, ignore_index, name):
    """Check class-index targets; (rows, t, w): input as (M, C) rows with
    the class dim last, the M targets with ignored ones set to class 0
    (safe to index with), each row's weight w[t] (0 where ignored), an
    array of input's dtype, and the mask of the rows not ignored."""
    _check_class_target(input, target, name)
    n_classes = input.shape[1] if input.ndim > 1 else input.shape[0]
    _check_weight(weight, n_classes, name)
    xp = get_array_module(input.data)
    rows = _classes_last(input, name)
    t = target.data.reshape(-1)
    valid = t != ignore_index
    bad = valid & ((t < 0) | (t >= n_classes))
    if bad.any():
        raise ValueError(
            f"{name}: target values must be in [0, {n_classes}) or ignore_index={ignore_index}; "
            f"found {t[bad][:5].tolist()}")
    safe_t = xp.where(valid, t, 0)
    w = valid.astype(input.dtype) if weight is None else weight.data[safe_t] * valid
    return rows, safe_t, w.astype(input.dtype), valid


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood of log-probabilities ``input`` at the class
    indices ``target``: -w[t] * input[i, t]. 'mean' divides by the sum of
    the weights of the targets that are not ``ignore_index``."""
    _check_reduction(reduction, "nll_loss")
    logp, t, w, valid = _class_targets(input, target, weight, ignore_index, "nll_loss")
    xp = get_array_module(input.data)
    if reduction == "none":
        losses = -logp[xp.arange(t.shape[0]), t] * Tensor._wrap(w)
        return reshape(losses, target.shape)
    # Only the rows that count enter the sum, so an ignored row's gradient
    # is exactly 0 even when the upstream one is nan ('mean' of no targets:
    # a product with a 0 weight would give 0 * nan = nan; torch gives 0).
    rows = xp.nonzero(valid)[0]
    total = sum_(-logp[rows, t[rows]] * Tensor._wrap(w[rows]))
    return total if reduction == "sum" else _weighted_mean(total, w)


def _weighted_mean(total, w):
    """total / sum(w); nan (0 / 0) when the weights sum to 0 (every target
    ignored, say), as in torch, whose gradient then is nan for the rows
    that count and 0 for the ignored ones."""
    w_sum = float(w.sum())
    return total / w_sum if w_sum != 0 else total * math.nan


class SoftmaxCrossEntropy(Function):
    """Cross-entropy of logit rows x (M, C) at class indices t: loss_i =
    -w_i log softmax(x_i)[t_i], reduced by 'none', 'sum' or 'mean' (sum /
    sum of w), w_i the weight of t_i (0 for an ignored target). The
    gradient is the textbook one,

        gx_i = w_i (softmax(x_i) - onehot(t_i)) * gy   (/ sum of w for 'mean')

    The forward computes log_softmax as ``log_softmax`` does (the max
    subtracted first), so the losses are the composite's."""

    def __init__(self, t, w, valid, reduction):
        self.t, self.w, self.valid, self.reduction = t, w, valid, reduction

    def forward(self, x):
        xp = get_array_module(x)
        shifted = x - x.max(axis=1, keepdims=True)
        logp = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        losses = -logp[xp.arange(x.shape[0]), self.t] * self.w
        self.logp = logp
        self.save_for_backward(x)
        if self.reduction == "none":
            return losses
        total = losses.sum()
        if self.reduction == "sum":
            return total
        with numpy.errstate(invalid="ignore"):  # every target ignored: 0 / 0 = nan, as torch's
            return total / self.w.sum()

    def backward(self, gy):
        xp = get_array_module(self.logp)
        scale = self.w    # (M,)
        if self.reduction == "mean":
            # Weights summing to 0: torch's gradient is nan for the rows that
            # count (0 / 0) and exactly 0 for the ignored ones. (No host sync
            # on the sum: this is every training step's loss.)
            with numpy.errstate(invalid="ignore", divide="ignore"):
                scale = xp.where(self.valid, self.w / self.w.sum(), 0)
        onehot = xp.zeros_like(self.logp)
        onehot[xp.arange(onehot.shape[0]), self.t] = 1
        if is_grad_enabled():           # a graph of the gradient: Tensor ops, differentiable again
            (x,) = self.saved_tensors
            g = reshape(gy * Tensor._wrap(scale), (-1, 1))
            return (softmax(x, 1) - Tensor._wrap(onehot)) * g
        g = (gy.data * scale).reshape(-1, 1)
        return (xp.exp(self.logp) - onehot) * g


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """log_softmax over the class dim followed by nll_loss (one op,
    ``SoftmaxCrossEntropy``, for class indices without label smoothing).

    ``target`` holds class indices, or class probabilities of the input's
    shape. ``label_smoothing`` eps mixes the target with the uniform
    distribution: (1 - eps) * nll + eps * mean over classes of -w[c] logp[c].
    """
    _check_reduction(reduction, "cross_entropy")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    if input.ndim == 0:
        raise ValueError("cross_entropy: input must have a class dim, got a 0-d tensor")
    class_dim = 1 if input.ndim > 1 else 0
    n_classes = input.shape[class_dim]
    _check_weight(weight, n_classes, "cross_entropy")

    if target.dtype.kind == "f":  # class probabilities
        if target.shape != input.shape:
            raise ValueError(f"cross_entropy: probability target must match input shape {input.shape}, got {target.shape}")
        logp = log_softmax(input, class_dim)
        probs = target * (1 - label_smoothing) + label_smoothing / n_classes
        wlogp = logp if weight is None else logp * _class_weights(weight, input.ndim, class_dim)
        losses = -sum_(probs * wlogp, class_dim)
        if reduction == "none":
            return losses
        total = sum_(losses)
        return total if reduction == "sum" else total / max(losses.data.size, 1)

    if label_smoothing == 0.0:
        rows, t, w, valid = _class_targets(input, target, weight, ignore_index, "cross_entropy")
        losses = SoftmaxCrossEntropy.apply(rows, t=t, w=w, valid=valid, reduction=reduction)
        return reshape(losses, target.shape) if reduction == "none" else losses
    logp = log_softmax(input, class_dim)
    nll = nll_loss(logp, target, weight, ignore_index, reduction)
    _check_class_target(input, target, "cross_entropy")
    xp = get_array_module(input.data)
    valid = target.data != ignore_index
    wlogp = logp if weight is None else logp * _class_weights(weight, input.ndim, class_dim)
    smooth = -sum_(wlogp, class_dim) / n_classes
    if reduction == "none":
        return nll * (1 - label_smoothing) + where(Tensor._wrap(valid), smooth, 0.0) * label_smoothing
    smooth_total = sum_(reshape(smooth, (-1,))[xp.nonzero(valid.reshape(-1))[0]])  # the rows that count: see nll_loss
    if reduction == "mean":
        t = xp.where(valid, target.data, 0)
        w = valid.astype(input.dtype) if weight is None else weight.data[t] * valid
        smooth_total = _weighted_mean(smooth_total, w)
    return nll * (1 - label_smoothing) + smooth_total * label_smoothing


def _class_weights(weight, ndim, class_dim):
    """Reshape per-class weights (C,) to broadcast along the class dim."""
    shape = [1] * ndim
    shape[class_dim] = -1
    return reshape(weight, tuple(shape))


def mse_loss(input, target, reduction="mean"):
    """Mean squared error. Unlike torch (which warns and broadcasts),
    mismatched shapes are an error here: broadcasting a loss is almost
    always a bug."""
    _check_reduction(reduction, "mse_loss")
    _check_same_shape(input, target, "mse_loss")
    diff = input - target
    return _reduce(diff * diff, reduction)


def l1_loss(input, target, reduction="mean"):
    """Mean absolute error |input - target|; its gradient at a zero
    difference is 0, as in torch (sign(0) = 0)."""
    _check_reduction(reduction, "l1_loss")
    _check_same_shape(input, target, "l1_loss")
    return _reduce(abs_(input - target), reduction)


def huber_loss(input, target, reduction="mean", delta=1.0):
    """Huber loss of d = input - target: quadratic near 0, linear beyond
    ``delta`` (the two pieces meet with the same slope):

        l = d^2 / 2                  where |d| < delta
            delta (|d| - delta / 2)  elsewhere
    """
    _check_reduction(reduction, "huber_loss")
    _check_same_shape(input, target, "huber_loss")
    if not isinstance(delta, numbers.Real) or isinstance(delta, bool) or not delta > 0:
        raise ValueError(f"huber_loss: delta must be a positive number, got {delta!r}")
    diff = input - target
    size = abs_(diff)
    near = (size < delta).data
    return _reduce(where(near, diff * diff * 0.5, (size - 0.5 * delta) * delta), reduction)


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    """Smooth L1 loss of d = input - target: the Huber loss with
    delta = ``beta``, divided by ``beta``, so that the linear piece has
    slope 1 whatever beta is:

        l = d^2 / (2 beta)   where |d| < beta
            |d| - beta / 2   elsewhere

    ``beta=0`` is the L1 loss."""
    _check_reduction(reduction, "smooth_l1_loss")
    _check_same_shape(input, target, "smooth_l1_loss")
    if not isinstance(beta, numbers.Real) or isinstance(beta, bool) or not beta >= 0:
        raise ValueError(f"smooth_l1_loss: beta must be a non-negative number, got {beta!r}")
    if beta == 0:
        return l1_loss(input, target, reduction)
    diff = input - target
    size = abs_(diff)
    near = (size < beta).data
    return _reduce(where(near, diff * diff * 0.5 / beta, size - 0.5 * beta), reduction)


# torch's floor of x (1 - x) is 1e-12 rounded to float32, whatever the
# dtype: that is what it divides by at x = 0 or 1.
_BCE_EPS = float(numpy.float32(1e-12))


class BinaryCrossEntropy(Function):
    """Elementwise binary cross-entropy of probabilities x against targets t:

        l = -(t log x + (1 - t) log(1 - x))

    with each log clamped at -100, as torch does, so that x = 0 or 1 gives
    a finite loss. The gradients are torch's:

        gx = gy (x - t) / max(x (1 - x), 1e-12)   (1e-12 in float32)
        gt = gy (log(1 - x) - log x)        (unclamped: infinite at 0 and 1)
    """

    def forward(self, x, t):
        xp = get_array_module(x)
        self.save_for_backward(x, t)
        with numpy.errstate(divide="ignore"):   # log(0) is -inf, then clamped
            log_x = xp.maximum(xp.log(x), -100)
            log_1mx = xp.maximum(xp.log1p(-x), -100)
        return -(t * log_x + (1 - t) * log_1mx)

    def backward(self, gy):
        x, t = self.saved_tensors
        gx = gt = None
        if self.needs_input_grad[0]:
            gx = gy * (x - t) / (x * (1 - x)).clamp(min=_BCE_EPS)
        if self.needs_input_grad[1]:
            with numpy.errstate(divide="ignore"):
                gt = gy * (log(1 - x) - log(x))
        return gx, gt


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """Binary cross-entropy of probabilities ``input`` (in [0, 1]) against
    ``target`` of the same shape, times ``weight`` (which must broadcast
    to the input's shape); see ``BinaryCrossEntropy``. Prefer
    ``binary_cross_entropy_with_logits`` on logits: it is stable where the
    sigmoid saturates."""
    _check_reduction(reduction, "binary_cross_entropy")
    check_float(input, "binary_cross_entropy")
    if input.shape != target.shape:
        raise ValueError(
            f"binary_cross_entropy: input has shape {input.shape} but target has shape {target.shape}; "
            "they must be the same")
    if input.numel() and not bool(((input.data >= 0) & (input.data <= 1)).all()):
        raise ValueError("binary_cross_entropy: all elements of input must be between 0 and 1")
    target = target if target.dtype == input.dtype else target.to(input.dtype)
    losses = BinaryCrossEntropy.apply(input, target)
    if weight is not None:
        if broadcast_shapes(weight.shape, input.shape, "binary_cross_entropy: weight", "input") != input.shape:
            raise ValueError(
                f"binary_cross_entropy: weight of shape {weight.shape} must broadcast to the input's "
                f"shape {input.shape}")
        losses = losses * weight
    return _reduce(losses, reduction)


def kl_div(input, target, reduction="mean", log_target=False):
    """Kullback-Leibler divergence KL(target || model) pointwise, with
    ``input`` the model's log-probabilities:

        l = t (log t - input)          (0 where t = 0, as torch's xlogy)
        l = e^t (t - input)            with log_target=True (t = log-probabilities)

    ``reduction='batchmean'`` divides the sum by the batch size
    input.shape[0] (1 for a 0-d input): the true KL divergence per sample;
    'mean' divides by the number of elements, as torch does. Input and
    target broadcast together, as in torch."""
    if reduction not in ("none", "mean", "sum", "batchmean"):
        raise ValueError(f"kl_div: reduction must be 'none', 'mean', 'sum' or 'batchmean', got {reduction!r}")
    check_float(input, "kl_div")
    check_float(target, "kl_div", "target")
    broadcast_shapes(input.shape, target.shape, "kl_div: input", "target")
    if log_target:
        losses = exp(target) * (target - input)
    else:
        # xlogy(t, t): log of 1 where t = 0, so 0 * log 0 counts as 0
        # (and the gradient there stays finite).
        safe = where((target.data == 0), 1.0, target)
        losses = target * log(safe) - target * input
    if reduction != "batchmean":
        return _reduce(losses, reduction)
    batch = input.shape[0] if input.ndim else 1
    total = sum_(losses)
    return total / batch if batch else total * math.nan


class Softplus(Function):
    """log(1 + e^x), computed as max(x, 0) + log1p(e^-|x|) so it never
    overflows; its derivative is sigmoid(x)."""

    def forward(self, x):
        xp = get_array_module(x)
        self.save_for_backward(x)
        return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))

    def backward(self, gy):
        from .activation import sigmoid
        (x,) = self.saved_tensors
        return gy * sigmoid(x)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    """Sigmoid plus binary cross-entropy in one stable expression:
    l = (1 - t) x + (1 + (pw - 1) t) softplus(-x), times ``weight``.

    ``pos_weight`` pw weighs the positive term of each class: it
    broadcasts against the input as torch's does, so (C,) for an (N, C)
    input and (C, 1, 1) for (N, C, H, W)."""
    _check_reduction(reduction, "binary_cross_entropy_with_logits")
    if input.shape != target.shape:
        raise ValueError(
            f"binary_cross_entropy_with_logits: input has shape {input.shape} but target has shape {target.shape}")
    name = "binary_cross_entropy_with_logits"
    if pos_weight is not None:
        broadcast_shapes(pos_weight.shape, input.shape, f"{name}: pos_weight", "input")
    if weight is not None:
        broadcast_shapes(weight.shape, input.shape, f"{name}: weight", "input")
    target = target if target.dtype == input.dtype else target.to(input.dtype)
    scale = 1 if pos_weight is None else 1 + (pos_weight - 1) * target
    losses = (1 - target) * input + scale * Softplus.apply(-input)
    if weight is not None:
        losses = losses * weight
    return _reduce(losses, reduction)

