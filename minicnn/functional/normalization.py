"""Normalization: batch_norm, layer_norm, group_norm, local_response_norm.

Notation
--------
N batch, C channels, H, W height and width; L a length. ``*`` stands for
any trailing dims. x the input, x̂ the normalized input, y the output,
gy / gx their gradients, w / b the per-channel weight and bias.

Each normalizer computes x̂ = (x - mean) / σ with σ = sqrt(var + eps) and
the *biased* variance, over a different set of elements:

* batch_norm: per channel, over N and every spatial position (N, *);
* layer_norm: per sample, over the trailing ``normalized_shape`` dims;
* group_norm: per sample and group of C / G channels;
* local_response_norm: not a mean/variance normalization but AlexNet's
  divide-by-the-neighbouring-channels (see its docstring).

batch_norm is a Function with an explicit backward (it is the hot one in a
CNN); the other three are short compositions of differentiable Tensor
ops, so their backward (and double backward) comes from autograd.

Batch norm backward
-------------------
With n = N * H * W elements per channel, y = w x̂ + b and x̂ = (x - μ) / σ,
where μ and σ depend on x too, the chain rule collapses to::

    gb = Σ gy        gw = Σ gy x̂
    gx = (w / σ) (gy - mean(gy) - x̂ mean(gy x̂))

The two mean terms are the gradient flowing through μ and σ; in eval mode
μ and σ are the running statistics (constants) and gx = (w / σ) gy.

Memory: batch_norm keeps the input x (an activation-sized array, as a
saved x̂ would be) and per channel μ and 1/σ (2C numbers); backward
recomputes x̂ from them, one extra elementwise pass instead of a second
activation-sized array. Its backward returns arrays: batch_norm has no
double backward, and backward with ``create_graph=True`` raises.

Kernels: batch norm's forward and backward go through the kernel registry
(``kernels/registry.py``). The ``"numpy"`` versions below are the readable
reference; ``kernels/cpu/batchnorm.py`` has Numba versions that take one
channel per thread and fuse each direction into one kernel (the
statistics in one pass, then the normalization while the channel is
still in the cache).
"""
import math
import numbers
import numpy

from minicnn.kernels import registry

from .. import autograd
from ..autograd import Function
from ..backend import get_array_module
from .elementwise import clone
from .utils import check_float
from .shape import pad, reshape


def _per_channel(v, x):
    """A (C,) vector shaped to broadcast over x (N, C, *)."""
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


@registry.register("batch_norm_forward", "numpy")
def _batch_norm_forward(x, weight, bias, eps, mean=None, var=None):
    """y = w (x - μ) / sqrt(var + eps) + b per channel of x (N, C, *);
    weight and bias may be None. Without ``mean`` and ``var`` (training)
    the batch's own statistics are used. Returns (y, mean, var), var biased."""
    xp = get_array_module(x)
    if mean is None:
        axes = (0,) + tuple(range(2, x.ndim))  # all dims but the channels
        mean, var = x.mean(axis=axes), x.var(axis=axes)
    y = (x - _per_channel(mean, x)) * _per_channel(1 / xp.sqrt(var + eps), x)
    if weight is not None:
        y = y * _per_channel(weight, x)
    if bias is not None:
        y = y + _per_channel(bias, x)
    return y, mean, var


@registry.register("batch_norm_backward", "numpy")
def _batch_norm_backward(gy, x, mean, inv_std, weight, training):
    """(gx, gw, gb) for the upstream gradient gy (N, C, *), given the saved
    input x, the μ and 1/σ its forward used and the weight (or None)."""
    axes = (0,) + tuple(range(2, x.ndim))
    xhat = (x - _per_channel(mean, x)) * _per_channel(inv_std, x)
    gb = gy.sum(axis=axes)
    gw = (gy * xhat).sum(axis=axes)
    scale = _per_channel(inv_std if weight is None else inv_std * weight, x)
    if training:
        n = x.size // x.shape[1]
        gx = scale * (gy - _per_channel(gb / n, x) - xhat * _per_channel(gw / n, x))
    else:
        gx = scale * gy
    return gx, gw, gb


@registry.register("affine_clamp", "numpy")
def _affine_clamp(x, a, offset, lo, hi):
    """min(max(x a + offset, lo), hi) per channel of x (N, C, *), a and
    offset (C,): an eval batch norm (a = w / sqrt(var + eps), offset = b -
    mean a) and the ReLU (lo 0, hi inf) or ReLU6 after it, as ``mc.fuse``
    runs them. NaN stays NaN."""
    y = x * _per_channel(a, x) + _per_channel(offset, x)
    return get_array_module(x).clip(y, lo, hi, out=y)


registry.register("batch_norm_forward", "numba", "minicnn.kernels.cpu.batchnorm:batch_norm_forward")
registry.register("affine_clamp", "numba", "minicnn.kernels.cpu.batchnorm:affine_clamp")
registry.register("batch_norm_backward", "numba", "minicnn.kernels.cpu.batchnorm:batch_norm_backward")


def update_running_stats(running_mean, running_var, mean, var, n, momentum):
    """Move the running statistics (C,) toward a batch's ``mean`` and biased
    ``var`` (C,), computed over ``n`` values per channel, in place and
    outside the graph: r = (1 - momentum) r + momentum * batch.

    The variance stored is the unbiased var n / (n - 1): it estimates the
    population's, as torch's does.
    """
    running_mean[...] = (1 - momentum) * running_mean + momentum * mean
    running_var[...] = (1 - momentum) * running_var + momentum * var * (n / (n - 1))


def batch_norm_grads(fn, gx, gw, gb):
    """The gradients a batch norm Function ``fn`` returns for (x, w?, b?):
    gw and gb only where ``fn`` was given a weight and a bias, None where
    that input needs no gradient."""
    grads = (gx,)
    if fn.has_weight:
        grads += (gw if fn.needs_input_grad[1] else None,)
    if fn.has_bias:
        grads += (gb if fn.needs_input_grad[-1] else None,)
    return grads


class BatchNorm(Function):
    """y = w (x - μ) / σ + b per channel; inputs x and, if given, w and b.

    Training: μ and var are the batch's own (backward then differentiates
    through them), and the running statistics, if given, are updated in
    place with ``momentum``. Eval: μ and var are ``mean`` and ``var``, the
    running statistics (copies, so that a later training step does not
    change what backward uses).
    """

    def __init__(self, training, eps, has_weight, has_bias, mean=None, var=None,
                 running_mean=None, running_var=None, momentum=None):
        self.training, self.eps, self.mean, self.var = training, eps, mean, var
        self.running_mean, self.running_var, self.momentum = running_mean, running_var, momentum
        self.has_weight, self.has_bias = has_weight, has_bias

    def forward(self, x, *params):
        w = params[0] if self.has_weight else None
        b = params[-1] if self.has_bias else None
        forward = registry.lookup("batch_norm_forward", get_array_module(x))
        if self.training:
            y, mean, var = forward(x, w, b, self.eps)
            if self.running_mean is not None:
                update_running_stats(self.running_mean, self.running_var, mean, var, x.size // x.shape[1],
                                     self.momentum)
        else:
            y, mean, var = forward(x, w, b, self.eps, self.mean, self.var)
        self.mean, self.inv_std = mean, 1 / get_array_module(var).sqrt(var + self.eps)
        self.save_for_backward(x, w)
        return y

    def backward(self, gy):
        if autograd.is_grad_enabled():
            raise RuntimeError("batch_norm: double backward is not supported (backward with create_graph=True)")
        x, w = self.saved_tensors
        backward = registry.lookup("batch_norm_backward", get_array_module(gy.data))
        gx, gw, gb = backward(gy.data, x.data, self.mean, self.inv_std, None if w is None else w.data,
                              self.training)
        return batch_norm_grads(self, gx, gw, gb)


def _check_channel_vector(t, name, c, x, op):
    if t is not None and tuple(t.shape) != (c,):
        raise ValueError(f"{op}: {name} must have shape ({c},) for input of shape {x.shape}, got {t.shape}")


def _check_statistics_dtype(input, op, **tensors):
    """TypeError unless every given tensor has the input's dtype, as torch
    requires (float64 input with float32 running statistics is an error
    there, not a silent conversion); float16 input may come with float32
    ones (torch's mixed precision)."""
    for name, t in tensors.items():
        if t is None or t.dtype == input.dtype:
            continue
        if input.dtype == numpy.float16 and t.dtype == numpy.float32:
            continue
        raise TypeError(f"{op}: input has dtype {input.dtype} but {name} has dtype {t.dtype}; "
                        f"they must be the same (convert one with .to())")


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5, *, num_batches_tracked=None):
    """Normalize each channel of (N, C, *) input: (N, C), (N, C, L),
    (N, C, H, W) or (N, C, T, H, W).

    Training: the batch's mean and biased variance normalize, and the
    running statistics (if given) are updated in place, without gradient::

        running_mean = (1 - m) running_mean + m mean
        running_var  = (1 - m) running_var  + m var * n / (n - 1)   (unbiased)

    with m = ``momentum``. ``momentum=None`` is a cumulative average: then
    m = 1 / ``num_batches_tracked``, the number of batches seen *including*
    this one (what torch's BatchNorm layers do; nn.BatchNorm2d passes its
    counter after incrementing it). Eval: the running statistics normalize.
    """
    op = "batch_norm"
    check_float(input, op)
    if input.ndim < 2:
        raise ValueError(f"{op}: expected input of shape (N, C), (N, C, L), (N, C, H, W) or (N, C, T, H, W), "
                         f"got shape {input.shape}")
    c = input.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        _check_channel_vector(t, name, c, input, op)
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{op}: give both running_mean and running_var, or neither")
    if input.data.size == 0:
        # Nothing to normalize: an empty result (weight and bias get zero
        # gradients) and the running statistics left alone, in both modes,
        # as in torch.
        return _affine(clone(input), weight, bias, (1, c) + (1,) * (input.ndim - 2))
    if not training:
        if running_mean is None:
            raise ValueError(f"{op}: running_mean and running_var are needed in eval mode (training=False)")
        _check_statistics_dtype(input, op, running_mean=running_mean, running_var=running_var,
                                weight=weight, bias=bias)
        # Copies (astype copies): a later training step must not change what backward uses.
        return BatchNorm.apply(*_present(input, weight, bias), training=False, eps=eps,
                               has_weight=weight is not None, has_bias=bias is not None,
                               mean=running_mean.data.astype(input.dtype),
                               var=running_var.data.astype(input.dtype))

    n = input.data.size // max(c, 1)
    if n <= 1:
        raise ValueError(f"{op}: expected more than 1 value per channel when training, "
                         f"got input of shape {input.shape}")
    if running_mean is not None:
        if momentum is None:
            if num_batches_tracked is None or int(num_batches_tracked) < 1:
                raise ValueError(f"{op}: momentum=None (cumulative average) needs num_batches_tracked >= 1, "
                                 f"got {num_batches_tracked!r}")
            momentum = 1.0 / int(num_batches_tracked)
        elif not isinstance(momentum, numbers.Real):
            raise TypeError(f"{op}: momentum must be a number or None, got {momentum!r}")
    if not eps > 0:
        # A constant channel has variance 0: 0 / sqrt(0 + eps) needs eps > 0.
        # torch refuses in training only (in eval the running variance is
        # usually positive), and so does minicnn.
        raise ValueError(f"{op}: eps must be positive during training, got {eps!r}")
    _check_statistics_dtype(input, op, running_mean=running_mean, running_var=running_var,
                            weight=weight, bias=bias)
    return BatchNorm.apply(*_present(input, weight, bias), training=True, eps=eps,
                           has_weight=weight is not None, has_bias=bias is not None,
                           running_mean=None if running_mean is None else running_mean.data,
                           running_var=None if running_var is None else running_var.data,
                           momentum=momentum)


def _present(*tensors):
    return tuple(t for t in tensors if t is not None)


def _affine(y, weight, bias, shape):
    """y * weight + bias with both reshaped to ``shape`` (either may be None)."""
    if weight is not None:
        y = y * reshape(weight, shape)
    if bias is not None:
        y = y + reshape(bias, shape)
    return y


def _normalize(x, dims, eps):
    """(x - mean) / sqrt(var + eps) over ``dims``, biased variance."""
    xc = x - x.mean(dims, keepdim=True)
    var = (xc * xc).mean(dims, keepdim=True)
    return xc / (var + eps).sqrt()


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalize each sample over its trailing dims ``normalized_shape``
    (e.g. (C, H, W)); weight and bias have that shape (elementwise affine)."""
    op = "layer_norm"
    check_float(input, op)
    if isinstance(normalized_shape, numbers.Integral):
        normalized_shape = (normalized_shape,)
    shape = tuple(int(s) for s in normalized_shape)
    if not shape or input.shape[input.ndim - len(shape):] != shape or len(shape) > input.ndim:
        raise ValueError(f"{op}: normalized_shape {shape} must be the trailing dims of input shape {input.shape}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(f"{op}: {name} must have shape {shape} (normalized_shape), got {t.shape}")
    if input.data.size == 0:                 # nothing to normalize (a mean of nothing would be 0 / 0)
        return _affine(clone(input), weight, bias, shape)
    dims = tuple(range(input.ndim - len(shape), input.ndim))
    return _affine(_normalize(input, dims, eps), weight, bias, shape)


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Split the C channels of (N, C, *) input into ``num_groups`` groups of
    C / G channels and normalize each (sample, group) over its channels and
    positions; then a per-channel affine."""
    op = "group_norm"
    check_float(input, op)
    if input.ndim < 2:
        raise ValueError(f"{op}: expected input of shape (N, C, *), got shape {input.shape}")
    n, c = input.shape[:2]
    if not isinstance(num_groups, numbers.Integral) or num_groups < 1 or c % num_groups:
        raise ValueError(f"{op}: the {c} channels of input shape {input.shape} are not divisible "
                         f"into num_groups={num_groups!r} groups")
    for name, t in (("weight", weight), ("bias", bias)):
        _check_channel_vector(t, name, c, input, op)
    if not math.prod(input.shape[2:]):       # torch refuses this too, batch empty or not
        raise ValueError(f"{op}: input of shape {input.shape} has no spatial positions to normalize over")
    if input.data.size == 0:                 # an empty batch: nothing to normalize
        return _affine(clone(input), weight, bias, (1, c) + (1,) * (input.ndim - 2))
    per_group = c // num_groups * math.prod(input.shape[2:])
    grouped = reshape(input, (n, num_groups, per_group))
    y = reshape(_normalize(grouped, 2, eps), input.shape)
    return _affine(y, weight, bias, (1, c) + (1,) * (input.ndim - 2))


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0):
    """AlexNet's local response normalization across channels (torch's
    exact definition)::

        y[c] = x[c] / (k + alpha / size * Σ_{c'} x[c']^2) ^ beta

    where c' runs over ``size`` channels, from c - size//2 to
    c + (size-1)//2, and channels outside [0, C) count as zero. Input
    (N, C, *) with at least one trailing dim.
    """
    op = "local_response_norm"
    check_float(input, op)
    if input.ndim < 3:
        raise ValueError(f"{op}: expected input of shape (N, C, *) with 3 or more dims, got shape {input.shape}")
    if not isinstance(size, numbers.Integral) or size < 1:
        raise ValueError(f"{op}: size must be a positive int, got {size!r}")
    c = input.shape[1]
    # Zero-pad the channel dim (pad's list starts with the last dim), then
    # add the ``size`` shifted copies: the sum over each channel window.
    sq = pad(input * input, [0, 0] * (input.ndim - 2) + [size // 2, (size - 1) // 2])
    window = sq[:, 0:c]
    for j in range(1, size):
        window = window + sq[:, j:j + c]
    return input / (window * (alpha / size) + k) ** beta


__all__ = ["batch_norm", "layer_norm", "group_norm", "local_response_norm"]
