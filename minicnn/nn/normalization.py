"""Normalization layers: BatchNorm1d, BatchNorm2d, BatchNorm3d, LayerNorm,
GroupNorm, LocalResponseNorm.

BatchNorm keeps running estimates of each channel's mean and variance as
buffers (``running_mean``, ``running_var``) and counts the training batches
it has seen (``num_batches_tracked``, an int64 buffer). In training mode it
normalizes with the batch's statistics and updates the estimates:

    running = (1 - momentum) * running + momentum * batch_statistic

or, with ``momentum=None``, the plain average of all batches so far
(momentum 1 / num_batches_tracked). In eval mode it normalizes with the
estimates. With ``track_running_stats=False`` there are no estimates and
the batch's statistics are used in both modes.
"""
import numbers

from .. import dtypes
from .. import functional as F
from ..tensor import Tensor
from ..utils.checkpoint import recomputing
from . import init
from ._utils import check_positive, is_int, new_array, new_parameter
from .module import Module


def _make_affine(module, enabled, shape, bias, device, dtype):
    """Give ``module`` the learnable per-feature scale ``weight`` and shift
    ``bias`` of ``shape`` (either registered as None when disabled), as the
    normalization layers all do."""
    if enabled:
        module.weight = new_parameter(shape, device, dtype)
        if bias:
            module.bias = new_parameter(shape, device, dtype)
        else:
            module.register_parameter("bias", None)
    else:
        module.register_parameter("weight", None)
        module.register_parameter("bias", None)


def _reset_affine(module):
    """weight 1 and bias 0: the identity affine."""
    if module.weight is not None:
        init.ones_(module.weight)
    if module.bias is not None:
        init.zeros_(module.bias)


class _BatchNorm(Module):
    """BatchNorm over the channel dim 1 of (N, C, *) input; subclasses fix
    the accepted input ranks."""

    _input_dims = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 device=None, dtype=None, *, bias=True):
        super().__init__()
        name = type(self).__name__
        check_positive(num_features, "num_features", name)
        if momentum is not None and (not isinstance(momentum, numbers.Real) or isinstance(momentum, bool)):
            raise TypeError(f"{name}: momentum must be a number or None, got {momentum!r}")
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        _make_affine(self, affine, (num_features,), bias, device, dtype)
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(new_array((num_features,), device, dtype, 0.0)))
            self.register_buffer("running_var", Tensor(new_array((num_features,), device, dtype, 1.0)))
            self.register_buffer("num_batches_tracked", Tensor(new_array((), device, dtypes.int64, 0)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self):
        """Forget the running statistics: mean 0, variance 1, no batches."""
        if self.track_running_stats:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
            self.num_batches_tracked.data[...] = 0

    def reset_parameters(self):
        """Running statistics reset; weight 1 and bias 0 (the identity affine)."""
        self.reset_running_stats()
        _reset_affine(self)

    def _check_input(self, input):
        if input.ndim not in self._input_dims:
            expected = " or ".join(f"{d}D" for d in self._input_dims)
            raise ValueError(f"{type(self).__name__}: expected {expected} input, got {input.ndim}D input "
                             f"of shape {input.shape}")
        if input.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}: expected {self.num_features} channels (dim 1), "
                             f"got input of shape {input.shape}")

    def forward(self, input):
        self._check_input(input)
        # A checkpoint's recompute of this forward (utils/checkpoint.py) must
        # not update the estimates a second time.
        update = self.training and self.track_running_stats and not recomputing()
        if update:
            self.num_batches_tracked.data[...] += 1
        # Batch statistics in training, and in eval when there are no estimates.
        use_batch_stats = self.training or self.running_mean is None
        stats = (self.running_mean, self.running_var) if update or not use_batch_stats else (None, None)
        return F.batch_norm(input, *stats, self.weight, self.bias,
                            use_batch_stats, self.momentum, self.eps,
                            num_batches_tracked=self.num_batches_tracked)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalization of (N, C) or (N, C, L) input, per channel C."""

    _input_dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalization of (N, C, H, W) input, per channel C."""

    _input_dims = (4,)


class BatchNorm3d(_BatchNorm):
    """Batch normalization of (N, C, T, H, W) input, per channel C (video
    models' clips)."""

    _input_dims = (5,)


class LayerNorm(Module):
    """Normalize each sample over its trailing ``normalized_shape`` dims,
    then scale and shift elementwise (weight and bias of that shape)."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, device=None, dtype=None):
        super().__init__()
        if is_int(normalized_shape):
            normalized_shape = (normalized_shape,)
        normalized_shape = tuple(normalized_shape)
        if not normalized_shape or not all(is_int(n) and n >= 1 for n in normalized_shape):
            raise ValueError(f"LayerNorm: normalized_shape must be positive ints, got {normalized_shape}")
        self.normalized_shape = normalized_shape
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        _make_affine(self, elementwise_affine, normalized_shape, bias, device, dtype)
        self.reset_parameters()

    def reset_parameters(self):
        _reset_affine(self)

    def forward(self, input):
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"bias={self.bias is not None}")


class GroupNorm(Module):
    """Split the channels into ``num_groups`` groups and normalize each
    (sample, group); then a per-channel affine (weight and bias (C,))."""

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, device=None, dtype=None, *, bias=True):
        super().__init__()
        check_positive(num_groups, "num_groups", "GroupNorm")
        check_positive(num_channels, "num_channels", "GroupNorm")
        if num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_channels={num_channels} must be divisible by num_groups={num_groups}")
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        _make_affine(self, affine, (num_channels,), bias, device, dtype)
        self.reset_parameters()

    def reset_parameters(self):
        _reset_affine(self)

    def forward(self, input):
        if input.ndim < 2 or input.shape[1] != self.num_channels:
            raise ValueError(f"GroupNorm: expected input of shape (N, {self.num_channels}, *), got {input.shape}")
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
                f"bias={self.bias is not None}")


class LocalResponseNorm(Module):
    """AlexNet's normalization across neighbouring channels:
    y[c] = x[c] / (k + alpha / size * sum of x^2 over ``size`` channels around c) ^ beta."""

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        check_positive(size, "size", "LocalResponseNorm")
        self.size = size
        self.alpha = alpha
        self.beta = beta
        self.k = k

    def forward(self, input):
        return F.local_response_norm(input, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
