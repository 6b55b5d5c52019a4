"""Stochastic gradient descent, with momentum, dampening, Nesterov momentum
and L2 weight decay: torch's update, step for step.

Notation (per parameter p with gradient g, one step)
--------
    g <- -g                               if maximize
    g <- g + weight_decay * p             if weight_decay != 0
    b <- g                                on the first step (momentum != 0)
    b <- momentum * b + (1 - dampening) * g   afterwards
    g <- g + momentum * b  if nesterov,  else  g <- b
    p <- p - lr * g
"""
from minicnn.kernels import registry

from ..backend import get_array_module
from ..tensor import Tensor
from .optimizer import Optimizer, check_hyperparameter


def sgd_update(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, maximize, first):
    """One step of the update above on arrays, in place: p and, with
    momentum, buf (``first``: the buffer is new and takes g). The NumPy
    reference of the ``"sgd_update"`` primitive; the Numba version
    (``kernels/cpu/optim.py``) does the same in one pass over the arrays."""
    if maximize:
        g = -g
    if weight_decay != 0:
        g = g + weight_decay * p
    if momentum != 0:
        if first:
            buf[...] = g
        else:
            buf *= momentum
            buf += (1 - dampening) * g
        g = g + momentum * buf if nesterov else buf
    p -= lr * g


registry.register("sgd_update", "numpy", sgd_update)
registry.register("sgd_update", "numba", "minicnn.kernels.cpu.optim:sgd_update")


class SGD(Optimizer):
    """``SGD(params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
    nesterov=False, *, maximize=False)``.

    State per parameter: ``"momentum_buffer"`` (a Tensor of the parameter's
    shape) when momentum is used.
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False):
        check_hyperparameter("SGD", "lr", lr)
        check_hyperparameter("SGD", "momentum", momentum)
        check_hyperparameter("SGD", "dampening", dampening)
        check_hyperparameter("SGD", "weight_decay", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(
                f"SGD: nesterov=True requires momentum > 0 and dampening = 0, "
                f"got momentum={momentum}, dampening={dampening}")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=bool(nesterov), maximize=bool(maximize))
        super().__init__(params, defaults)

    def _update(self, p, group):
        buf, first = None, False
        if group["momentum"] != 0:
            state = self.state[p]
            if state.get("momentum_buffer") is None:
                state["momentum_buffer"] = Tensor._wrap(get_array_module(p.data).empty_like(p.data))
                first = True
            buf = state["momentum_buffer"].data
        update = registry.lookup("sgd_update", get_array_module(p.data))
        update(p.data, p.grad.data, buf, group["lr"], group["momentum"], group["dampening"],
               group["weight_decay"], group["nesterov"], group["maximize"], first)
