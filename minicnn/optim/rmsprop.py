"""RMSprop (Hinton's lecture 6e): divide the gradient by a running root
mean square of recent gradients; optionally centered (divide by an
estimate of the standard deviation instead) and with momentum. torch's
update order and defaults.

Notation (per parameter p with gradient g, one step)
--------
    g <- -g                                   if maximize
    g <- g + weight_decay * p                 if weight_decay != 0
    s <- alpha * s + (1 - alpha) * g * g      running mean of g**2
    a <- a + (1 - alpha) * (g - a)            running mean of g, if centered
    d <- sqrt(s - a * a) + eps   if centered, else  sqrt(s) + eps
    b <- momentum * b + g / d;  p <- p - lr * b     if momentum > 0
    p <- p - lr * g / d                             otherwise
"""
from ..backend import get_array_module
from ..tensor import Tensor
from .optimizer import Optimizer, check_hyperparameter


class RMSprop(Optimizer):
    """``RMSprop(params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0,
    momentum=0, centered=False, *, maximize=False)``.

    State per parameter: ``"step"`` (an int), ``"square_avg"``, and
    ``"momentum_buffer"`` (momentum > 0) and ``"grad_avg"`` (centered),
    Tensors of the parameter's shape.
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False, *,
                 maximize=False):
        check_hyperparameter("RMSprop", "lr", lr)
        check_hyperparameter("RMSprop", "alpha", alpha)
        check_hyperparameter("RMSprop", "eps", eps)
        check_hyperparameter("RMSprop", "weight_decay", weight_decay)
        check_hyperparameter("RMSprop", "momentum", momentum)
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                        centered=bool(centered), maximize=bool(maximize))
        super().__init__(params, defaults)

    def _update(self, p, group):
        lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
        weight_decay, momentum, centered = group["weight_decay"], group["momentum"], group["centered"]
        xp = get_array_module(p.data)
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["square_avg"] = Tensor._wrap(xp.zeros_like(p.data))
            if momentum > 0:
                state["momentum_buffer"] = Tensor._wrap(xp.zeros_like(p.data))
            if centered:
                state["grad_avg"] = Tensor._wrap(xp.zeros_like(p.data))
        state["step"] += 1

        g = -p.grad.data if group["maximize"] else p.grad.data
        if weight_decay != 0:
            g = g + weight_decay * p.data
        square_avg = state["square_avg"].data
        square_avg *= alpha
        square_avg += (1 - alpha) * (g * g)
        if centered:
            grad_avg = state["grad_avg"].data
            grad_avg += (1 - alpha) * (g - grad_avg)
            avg = xp.sqrt(square_avg - grad_avg * grad_avg) + eps
        else:
            avg = xp.sqrt(square_avg) + eps
        if momentum > 0:
            buf = state["momentum_buffer"].data
            buf *= momentum
            buf += g / avg
            p.data -= lr * buf
        else:
            p.data -= lr * g / avg
