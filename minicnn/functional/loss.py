"""Losses: cross_entropy, nll_loss, mse_loss, binary_cross_entropy_with_logits.

They are compositions of differentiable ops (log_softmax, indexing, sums),
so their gradients come from the ops' own backward formulas; except the
commonest one, cross-entropy at class indices without label smoothing,
which is one op (``SoftmaxCrossEntropy``) with the textbook gradient
softmax(x) - onehot(t): as a composite it is seven ops forward and a dozen
backward, most of the time of a small net's step.

Notation: N batch, C classes; input (N, C) or (N, C, d1, ...), class-index
target (N,) or (N, d1, ...).
"""
from ..autograd import Function, is_grad_enabled
from ..backend import get_array_module
from ..tensor import Tensor  # defined before tensor.py imports the ops
from .activation import log_softmax, softmax
from .reduction import sum as sum_
from .shape import permute, reshape
from .utils import as_tensor


def _check_reduction(reduction, name):
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{name}: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


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
    (safe to index with), and each row's weight w[t] (0 where ignored),
    an array of input's dtype."""
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
    return rows, safe_t, w.astype(input.dtype)


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood of log-probabilities ``input`` at the class
    indices ``target``: -w[t] * input[i, t]. 'mean' divides by the sum of
    the weights of the targets that are not ``ignore_index``."""
    _check_reduction(reduction, "nll_loss")
    logp, t, w = _class_targets(input, target, weight, ignore_index, "nll_loss")
    xp = get_array_module(input.data)
    w = Tensor._wrap(w)
    picked = logp[xp.arange(t.shape[0]), t]
    losses = -picked * w
    if reduction == "none":
        return reshape(losses, target.shape)
    total = sum_(losses)
    return total if reduction == "sum" else total / sum_(w)


class SoftmaxCrossEntropy(Function):
    """Cross-entropy of logit rows x (M, C) at class indices t: loss_i =
    -w_i log softmax(x_i)[t_i], reduced by 'none', 'sum' or 'mean' (sum /
    sum of w), w_i the weight of t_i (0 for an ignored target). The
    gradient is the textbook one,

        gx_i = w_i (softmax(x_i) - onehot(t_i)) * gy   (/ sum of w for 'mean')

    The forward computes log_softmax as ``log_softmax`` does (the max
    subtracted first), so the losses are the composite's."""

    def __init__(self, t, w, reduction):
        self.t, self.w, self.reduction = t, w, reduction

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
        return total if self.reduction == "sum" else total / self.w.sum()

    def backward(self, gy):
        xp = get_array_module(self.logp)
        scale = self.w / self.w.sum() if self.reduction == "mean" else self.w    # (M,)
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
        rows, t, w = _class_targets(input, target, weight, ignore_index, "cross_entropy")
        losses = SoftmaxCrossEntropy.apply(rows, t=t, w=w, reduction=reduction)
        return reshape(losses, target.shape) if reduction == "none" else losses
    logp = log_softmax(input, class_dim)
    nll = nll_loss(logp, target, weight, ignore_index, reduction)
    _check_class_target(input, target, "cross_entropy")
    valid = as_tensor((target.data != ignore_index).astype(input.dtype), input.data)
    wlogp = logp if weight is None else logp * _class_weights(weight, input.ndim, class_dim)
    smooth = -sum_(wlogp, class_dim) * valid / n_classes
    if reduction == "none":
        return nll * (1 - label_smoothing) + smooth * label_smoothing
    smooth_total = sum_(smooth)
    if reduction == "mean":
        xp = get_array_module(input.data)
        t = xp.where(target.data != ignore_index, target.data, 0)
        w = valid.data if weight is None else weight.data[t] * valid.data
        smooth_total = smooth_total / float(w.sum())
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
    if input.shape != target.shape:
        raise ValueError(f"mse_loss: input has shape {input.shape} but target has shape {target.shape}")
    diff = input - target
    squared = diff * diff
    if reduction == "none":
        return squared
    total = sum_(squared)
    return total if reduction == "sum" else total / max(squared.data.size, 1)


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
    l = (1 - t) x + (1 + (pw - 1) t) softplus(-x), times ``weight``."""
    _check_reduction(reduction, "binary_cross_entropy_with_logits")
    if input.shape != target.shape:
        raise ValueError(
            f"binary_cross_entropy_with_logits: input has shape {input.shape} but target has shape {target.shape}")
    target = target if target.dtype == input.dtype else target.to(input.dtype)
    scale = 1 if pos_weight is None else 1 + (pos_weight - 1) * target
    losses = (1 - target) * input + scale * Softplus.apply(-input)
    if weight is not None:
        losses = losses * weight
    if reduction == "none":
        return losses
    total = sum_(losses)
    return total if reduction == "sum" else total / max(losses.data.size, 1)

