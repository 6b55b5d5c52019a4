"""The ``Optimizer`` base class: parameter groups, per-parameter state,
``zero_grad`` and ``state_dict`` / ``load_state_dict``, as in torch.

Notation
--------
``param_groups``
    a list of dicts. Each holds ``"params"`` (a list of Tensors) and the
    hyperparameters for those Tensors (``"lr"``, ``"momentum"``, ...); a
    hyperparameter a group does not give is taken from the optimizer's
    ``defaults``. Changing ``optimizer.param_groups[0]["lr"]`` changes the
    learning rate from the next step on: that is all a scheduler does.
``state``
    a dict from each parameter Tensor to a dict of its buffers (momentum,
    running averages, the step count), created on the parameter's first
    step.

A step changes the parameters' arrays (``p.data``) in place, outside the
autograd graph, and reads the gradients from ``p.grad``. Parameters whose
``grad`` is None are skipped.
"""
import copy
import numbers
from collections import defaultdict

import numpy

from ..autograd import enable_grad, no_grad
from ..backend import get_array_module
from ..device import move_array
from ..tensor import Tensor


class Optimizer:
    """Base class of every optimizer.

    ``params`` is an iterable of Tensors, or of dicts (parameter groups)
    each with a ``"params"`` entry plus any hyperparameters that override
    ``defaults`` for that group. A subclass defines ``_update(p, group)``,
    its rule for one parameter; ``step`` applies it to each.
    """

    def __init__(self, params, defaults):
        if isinstance(params, Tensor):
            raise TypeError(
                "params must be an iterable of Tensors or of dicts (parameter groups), "
                "got a single Tensor; wrap it in a list")
        self.defaults = defaults
        self.state = defaultdict(dict)
        self.param_groups = []
        groups = list(params)
        if not groups:
            raise ValueError("params is empty: the optimizer got no parameters to optimize")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group):
        """Add a group of parameters (a dict with ``"params"``) with its own
        hyperparameters, e.g. to unfreeze layers while fine-tuning."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError("param_group must have a 'params' entry")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError(
                "params must be an ordered collection (a list), not a set: the order of a set "
                "changes between runs, and state_dict() identifies parameters by position")
        params = list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(
                    f"an optimizer can only optimize Tensors, but one of the params is a {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor (one computed from other tensors)")
            if p.dtype.kind != "f":
                raise TypeError(f"an optimizer can only optimize floating-point Tensors, got dtype {p.dtype}")
        if len({id(p) for p in params}) != len(params):
            raise ValueError("param_group contains the same parameter more than once")
        seen = {id(p) for group in self.param_groups for p in group["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        group = dict(param_group)
        group["params"] = params
        for name, default in self.defaults.items():
            group.setdefault(name, default)
        self.param_groups.append(group)

    def zero_grad(self, set_to_none=True):
        """Reset the gradients of all parameters: to None (the default,
        which frees the arrays) or to zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad = Tensor._wrap(get_array_module(p.grad.data).zeros_like(p.grad.data))

    def step(self, closure=None):
        """Update every parameter that has a gradient (``_update``, one
        parameter at a time, outside the graph); return the loss that
        ``closure`` (if given) recomputes."""
        loss = self._evaluate(closure)
        with no_grad():
            for group in self.param_groups:
                for p in self._params_with_grad(group):
                    self._update(p, group)
        return loss

    def _update(self, p, group):  # abstract
        """One step for parameter ``p`` with the hyperparameters of ``group``."""
        raise NotImplementedError(f"{type(self).__name__} must define _update")

    def _evaluate(self, closure):
        """Run ``closure`` with gradients enabled (step() itself runs
        outside the graph); return its loss, or None."""
        if closure is None:
            return None
        with enable_grad():
            return closure()

    def _params_with_grad(self, group):
        """The parameters of ``group`` that received a gradient, each with
        its state on its own device."""
        params = [p for p in group["params"] if p.grad is not None]
        for p in params:
            self._follow_device(p)
        return params

    def _follow_device(self, p):
        """Move the state buffers of ``p`` to where ``p`` now lives: after
        ``module.to(device)`` the optimizer's state follows its parameters
        at the next step. Costs a type comparison per buffer when nothing
        moved."""
        state = self.state.get(p)
        if not state:
            return
        kind = type(p.data)
        for name, value in state.items():
            if isinstance(value, Tensor) and (
                    type(value.data) is not kind or (kind is not numpy.ndarray and value.device != p.device)):
                state[name] = Tensor._wrap(move_array(value.data, p.device))

    # -- saving and restoring ----------------------------------------
    def state_dict(self):
        """The optimizer's state as a dict, as torch lays it out::

            {"state": {0: {"momentum_buffer": Tensor, ...}, 1: {...}},
             "param_groups": [{"lr": 0.1, ..., "params": [0, 1]}, ...]}

        Parameters are numbered by their position across the groups; the
        parameters themselves are not saved. The Tensors in ``"state"`` are
        the optimizer's own buffers (as in torch), so save the dict before
        stepping again, or deep-copy it.
        """
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {index[id(p)]: dict(s) for p, s in self.state.items() if id(p) in index}
        return {"state": dict(sorted(state.items())), "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore a ``state_dict()`` saved from an optimizer built on
        parameters of the same shapes, in the same groups and order. Buffers
        are copied and cast to their parameter's dtype."""
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError("state_dict must be a dict with exactly the keys 'state' and 'param_groups'")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"state_dict has {len(saved_groups)} parameter groups but the optimizer has "
                f"{len(self.param_groups)}")
        by_index = {}
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"parameter group {i} of state_dict has {len(saved['params'])} parameters but "
                    f"the optimizer's has {len(group['params'])}")
            by_index.update(zip(saved["params"], group["params"]))

        state = defaultdict(dict)
        for key, buffers in state_dict["state"].items():
            if key not in by_index:
                raise ValueError(f"state_dict['state'] has an entry for parameter {key!r}, which no group lists")
            p = by_index[key]
            state[p] = {name: _copy_buffer(value, p, f"state[{key}][{name!r}]") for name, value in buffers.items()}

        groups = []
        for group, saved in zip(self.param_groups, saved_groups):
            new = copy.deepcopy({k: v for k, v in saved.items() if k != "params"})
            new["params"] = group["params"]
            groups.append(new)
        self.state = state
        self.param_groups = groups

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {k}: {group[k]}" for k in sorted(group) if k != "params")
        lines.append(")")
        return "\n".join(lines)


def _copy_buffer(value, param, where):
    """A fresh copy of a saved state value: Tensors and arrays become
    Tensors of the parameter's dtype (and shape, for per-element buffers)
    on its device; numbers pass through."""
    if isinstance(value, (numbers.Number, str)) or value is None:
        return value
    array = value.data if isinstance(value, Tensor) else value
    if not hasattr(array, "shape"):
        raise TypeError(f"state_dict {where}: expected a Tensor, an array or a number, got {type(value).__name__}")
    if array.ndim and tuple(array.shape) != tuple(param.shape):
        raise ValueError(f"state_dict {where} has shape {tuple(array.shape)} but its parameter has shape {param.shape}")
    xp = get_array_module(param.data)
    return Tensor._wrap(xp.array(array, dtype=param.dtype))


def check_hyperparameter(owner, name, value, low=0.0, high=None, high_open=False):
    """Check that the hyperparameter ``name`` is a real number in
    [low, high] (or [low, high) when ``high_open``); raise TypeError or
    ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a number, got {type(value).__name__}")
    if value < low or (high is not None and (value >= high if high_open else value > high)):
        interval = f"[{low}, {high}{')' if high_open else ']'}" if high is not None else f">= {low}"
        raise ValueError(f"{owner}: {name} must be {'in ' if high is not None else ''}{interval}, got {value}")
    return value
