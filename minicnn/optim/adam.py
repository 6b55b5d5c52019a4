"""Adam and AdamW: adaptive moment estimation (Kingma & Ba, 2015), and
Adam with decoupled weight decay (Loshchilov & Hutter, 2019), with torch's
update order and defaults.

Notation (per parameter p with gradient g; t counts this parameter's steps)
--------
    g <- -g                                      if maximize
    p <- p * (1 - lr * weight_decay)             AdamW (decoupled decay)
    g <- g + weight_decay * p                    Adam  (L2 penalty in the gradient)
    m <- m + (1 - beta1) * (g - m)               first moment (a lerp)
    v <- beta2 * v + (1 - beta2) * g * g         second moment
    v_max <- max(v_max, v)                       if amsgrad; then use v_max for v
    p <- p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)
"""
import numbers

from ..backend import get_array_module
from ..tensor import Tensor
from .optimizer import Optimizer, check_hyperparameter


class Adam(Optimizer):
    """``Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
    amsgrad=False, *, maximize=False, decoupled_weight_decay=False)``.

    State per parameter: ``"step"`` (an int), ``"exp_avg"``,
    ``"exp_avg_sq"`` and, with amsgrad, ``"max_exp_avg_sq"`` (Tensors of
    the parameter's shape).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 maximize=False, decoupled_weight_decay=False):
        name = type(self).__name__
        check_hyperparameter(name, "lr", lr)
        check_hyperparameter(name, "eps", eps)
        check_hyperparameter(name, "weight_decay", weight_decay)
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2
                and all(isinstance(b, numbers.Real) for b in betas)):
            raise TypeError(f"{name}: betas must be a pair of numbers (beta1, beta2), got {betas!r}")
        check_hyperparameter(name, "betas[0]", betas[0], 0.0, 1.0, high_open=True)
        check_hyperparameter(name, "betas[1]", betas[1], 0.0, 1.0, high_open=True)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=bool(amsgrad),
                        maximize=bool(maximize), decoupled_weight_decay=bool(decoupled_weight_decay))
        super().__init__(params, defaults)

    def _update(self, p, group):
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        weight_decay, amsgrad = group["weight_decay"], group["amsgrad"]
        xp = get_array_module(p.data)
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = Tensor._wrap(xp.zeros_like(p.data))
            state["exp_avg_sq"] = Tensor._wrap(xp.zeros_like(p.data))
            if amsgrad:
                state["max_exp_avg_sq"] = Tensor._wrap(xp.zeros_like(p.data))
        state["step"] += 1
        step = state["step"]
        exp_avg, exp_avg_sq = state["exp_avg"].data, state["exp_avg_sq"].data

        g = -p.grad.data if group["maximize"] else p.grad.data
        if weight_decay != 0:
            if group["decoupled_weight_decay"]:
                p.data *= 1 - lr * weight_decay
            else:
                g = g + weight_decay * p.data
        exp_avg += (1 - beta1) * (g - exp_avg)
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * (g * g)

        step_size = lr / (1 - beta1 ** step)
        bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
        if amsgrad:
            max_exp_avg_sq = state["max_exp_avg_sq"].data
            xp.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
            second_moment = max_exp_avg_sq
        else:
            second_moment = exp_avg_sq
        denom = xp.sqrt(second_moment) / bias_correction2_sqrt + eps
        p.data -= step_size * exp_avg / denom


class AdamW(Adam):
    """``AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
    weight_decay=1e-2, amsgrad=False, *, maximize=False)``: Adam whose
    weight decay shrinks the parameters directly (``p *= 1 - lr *
    weight_decay``) instead of adding ``weight_decay * p`` to the gradient,
    so the decay is not rescaled by the adaptive denominator."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)
