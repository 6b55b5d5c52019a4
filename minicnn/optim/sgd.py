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
from ..autograd import no_grad
from ..tensor import Tensor
from .optimizer import Optimizer, check_hyperparameter


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

    def step(self, closure=None):
        """One update of every parameter that has a gradient."""
        loss = self._evaluate(closure)
        with no_grad():
            for group in self.param_groups:
                lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
                weight_decay, nesterov = group["weight_decay"], group["nesterov"]
                for p in self._params_with_grad(group):
                    g = -p.grad.data if group["maximize"] else p.grad.data
                    if weight_decay != 0:
                        g = g + weight_decay * p.data
                    if momentum != 0:
                        state = self.state[p]
                        buf = state.get("momentum_buffer")
                        if buf is None:
                            # The first step starts the buffer at the gradient itself,
                            # undamped, as torch does.
                            buf = state["momentum_buffer"] = Tensor._wrap(g.copy())
                        else:
                            buf.data *= momentum
                            buf.data += (1 - dampening) * g
                        g = g + momentum * buf.data if nesterov else buf.data
                    p.data -= lr * g
        return loss
