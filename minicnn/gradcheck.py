"""Numerical gradient checking: is an op's backward right?

How to check your own op
------------------------
Write the op (a ``Function`` subclass, or any function of Tensors), make
small float64 inputs that require grad, and call::

    x = mc.randn(3, 4, dtype=mc.float64, requires_grad=True)
    mc.gradcheck(lambda x: my_op(x), (x,))

It returns True or raises ``GradcheckError`` naming the input, the worst
element's index, and the numeric and analytic derivatives there.

What it does
------------
Let y = f(x) and pick a random upstream gradient v (random, not ones: a
gradient of ones hides errors that cancel in a sum). The scalar
L(x) = <v, f(x)> has gradient dL/dx = J^T v, which is exactly what
backward computes from v. The numeric side perturbs x and takes central
differences, (L(x + eps e) - L(x - eps e)) / (2 eps), error O(eps^2):

* every element e_i of inputs with at most ``max_elements`` elements;
* ``n_directions`` random unit directions d for larger inputs, compared
  with the analytic directional derivative <dL/dx, d>.

A pair passes when |numeric - analytic| <= atol + rtol * |numeric|. Use
float64: in float32 the rounding error of L swamps the difference.
"""
import numpy

from . import autograd
from .backend import get_array_module
from .tensor import Tensor


class GradcheckError(AssertionError):
    """The analytic gradient disagrees with the numeric one."""


def _outputs(fn, inputs):
    out = fn(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o for o in outs if isinstance(o, Tensor) and o.dtype.kind == "f"]


def _objective(fn, inputs, upstream):
    """L = sum_k <v_k, y_k> evaluated without recording a graph."""
    with autograd.no_grad():
        outs = _outputs(fn, inputs)
    return sum(float((o.data * v).sum()) for o, v in zip(outs, upstream))


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, max_elements=512, n_directions=16, seed=0):
    """Compare the backward of ``fn`` with central differences.

    ``inputs`` is a Tensor or a tuple of them (and other arguments, passed
    through); those with ``requires_grad`` are checked and must be float64.
    Returns True, or raises ``GradcheckError``.
    """
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad; pass tensors with requires_grad=True")
    for i in checked:
        if inputs[i].dtype != numpy.float64:
            raise TypeError(
                f"gradcheck: input {i} has dtype {inputs[i].dtype}; use float64 "
                "(float32 rounding swamps the finite differences)")
    rng = numpy.random.default_rng(seed)

    outs = _outputs(fn, inputs)
    if not outs:
        raise ValueError("gradcheck: fn returned no floating-point tensor")
    upstream = []
    for o in outs:
        xp = get_array_module(o.data)
        upstream.append(xp.asarray(rng.standard_normal(o.shape)).astype(o.dtype))

    # Analytic: one backward pass with the random upstream gradients.
    saved_grads = [inputs[i].grad for i in checked]
    for i in checked:
        inputs[i].grad = None
    roots = [(o, v) for o, v in zip(outs, upstream) if o.requires_grad]
    if roots:
        autograd.run_backward([o for o, _ in roots], [Tensor._wrap(v) for _, v in roots])
    analytic = {}
    for i in checked:
        g = inputs[i].grad
        analytic[i] = numpy.zeros(inputs[i].shape) if g is None else numpy.asarray(g.numpy_copy(), numpy.float64)
    for i, g in zip(checked, saved_grads):
        inputs[i].grad = g

    for i in checked:
        x = inputs[i]
        if not x.data.flags.c_contiguous:
            raise ValueError(f"gradcheck: input {i} must be contiguous so it can be perturbed in place")
        flat = x.data.reshape(-1)  # a view: writing to it perturbs x
        if x.data.size <= max_elements:
            probes = [("element", k, None) for k in range(x.data.size)]
        else:
            probes = []
            for k in range(n_directions):
                d = rng.standard_normal(x.shape)
                probes.append(("direction", k, d / numpy.linalg.norm(d)))
        worst = None
        for kind, k, d in probes:
            numeric = _central_difference(fn, inputs, upstream, x, flat, k, d, eps)
            ana = analytic[i].reshape(-1)[k] if kind == "element" else float((analytic[i] * d).sum())
            excess = abs(numeric - ana) - (atol + rtol * abs(numeric))
            if excess > 0 and (worst is None or excess > worst[0]):
                worst = (excess, kind, k, numeric, ana)
        if worst is not None:
            _, kind, k, numeric, ana = worst
            where = (f"element {tuple(int(j) for j in numpy.unravel_index(k, x.shape))}" if kind == "element"
                     else f"random direction #{k}")
            raise GradcheckError(
                f"gradcheck failed for input {i} (shape {x.shape}) at {where}: "
                f"numeric {numeric:.10g}, analytic {ana:.10g}, "
                f"difference {abs(numeric - ana):.3g} > atol {atol} + rtol {rtol} * |numeric|")
    return True


def _central_difference(fn, inputs, upstream, x, flat, k, direction, eps):
    """(L(x + eps e) - L(x - eps e)) / (2 eps) along element k or a direction."""
    original = x.data.copy()
    try:
        if direction is None:
            flat[k] = original.reshape(-1)[k] + eps
            plus = _objective(fn, inputs, upstream)
            flat[k] = original.reshape(-1)[k] - eps
            minus = _objective(fn, inputs, upstream)
        else:
            xp = get_array_module(x.data)
            step = xp.asarray(direction * eps).astype(x.dtype)
            x.data[...] = original + step
            plus = _objective(fn, inputs, upstream)
            x.data[...] = original - step
            minus = _objective(fn, inputs, upstream)
    finally:
        x.data[...] = original
    return (plus - minus) / (2 * eps)


def gradgradcheck(fn, inputs, grad_outputs=None, eps=1e-6, atol=1e-5, rtol=1e-3, max_elements=512,
                  n_directions=16, seed=0):
    """Check second derivatives, as torch's ``gradgradcheck``: ``gradcheck``
    of the map (inputs, v) -> J(inputs)^T v, the first derivative computed
    with ``autograd.grad(..., create_graph=True)``, so the backward of the
    backward is compared with central differences of the backward.

    ``grad_outputs`` gives v, one float64 Tensor per output of ``fn``
    (random ones that require grad when left out). Returns True, or raises
    ``GradcheckError``."""
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    differentiable = [x for x in inputs if isinstance(x, Tensor) and x.requires_grad]
    if not differentiable:
        raise ValueError("gradgradcheck: no input requires grad; pass tensors with requires_grad=True")
    with autograd.no_grad():
        outs = _outputs(fn, inputs)
    if grad_outputs is None:
        rng = numpy.random.default_rng(seed + 1)
        grad_outputs = tuple(
            Tensor(get_array_module(o.data).asarray(rng.standard_normal(o.shape)), requires_grad=True)
            for o in outs)
    else:
        grad_outputs = (grad_outputs,) if isinstance(grad_outputs, Tensor) else tuple(grad_outputs)
    if len(grad_outputs) != len(outs):
        raise ValueError(f"gradgradcheck: got {len(grad_outputs)} grad_outputs for {len(outs)} outputs of fn")
    n = len(inputs)

    def first_derivative(*args):
        xs, vs = args[:n], args[n:]
        with autograd.enable_grad():   # gradcheck evaluates under no_grad; this needs a graph
            ys = _outputs(fn, xs)
            diff = [x for x in xs if isinstance(x, Tensor) and x.requires_grad]
            return autograd.grad(ys, diff, vs, create_graph=True, materialize_grads=True)

    return gradcheck(first_derivative, inputs + tuple(grad_outputs), eps=eps, atol=atol, rtol=rtol,
                     max_elements=max_elements, n_directions=n_directions, seed=seed)
