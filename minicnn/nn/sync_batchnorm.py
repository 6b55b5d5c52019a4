"""SyncBatchNorm: batch normalization whose batch statistics are those of
the whole batch, spread over the ranks of ``mc.distributed``.

Notation
--------
P ranks; rank r holds n_r samples-times-positions per channel of its
input x_r (N_r, C, *), n = Σ n_r in all. Per channel:

Forward. Each rank computes its own count n_r, mean μ_r and sum of
squared deviations M_r = Σ (x_r - μ_r)^2; one ``Allgather`` gives every
rank all three, and the whole batch's are (Chan et al.'s pairwise
combination, which never subtracts two large sums)::

    μ = Σ n_r μ_r / n        var = (Σ M_r + Σ n_r (μ_r - μ)^2) / n   (biased)

Then x̂ = (x - μ) / σ, σ = sqrt(var + eps), y = w x̂ + b, as BatchNorm.

Backward. BatchNorm's gx = (w / σ) (gy - mean(gy) - x̂ mean(gy x̂)), where
both means run over the whole batch: one ``Allreduce`` of the two
per-channel sums Σ gy and Σ gy x̂ (2C numbers) gives them. The weight's
and bias's gradients are this rank's own sums, as in torch: the
gradients of w and b are averaged over the ranks by
DistributedDataParallel like every other parameter's.

The running statistics are updated as BatchNorm's, with the whole
batch's μ and unbiased variance var n / (n - 1); every rank computes the
same numbers.
"""
from .. import autograd
from .. import distributed
from ..autograd import Function
from ..backend import get_array_module
from ..functional.normalization import batch_norm_grads, update_running_stats
from ..kernels import registry
from .normalization import _BatchNorm


def _per_channel(v, x):
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


class _SyncBatchNormFunction(Function):
    """y = w (x - μ) / σ + b with μ and σ over every rank's x (training)."""

    def __init__(self, comm, MPI, eps, has_weight, has_bias, running_mean, running_var, momentum):
        self.comm, self.MPI, self.eps = comm, MPI, eps
        self.has_weight, self.has_bias = has_weight, has_bias
        self.running_mean, self.running_var, self.momentum = running_mean, running_var, momentum

    def forward(self, x, *params):
        w = params[0] if self.has_weight else None
        b = params[-1] if self.has_bias else None
        xp = get_array_module(x)
        axes = (0,) + tuple(range(2, x.ndim))
        c = x.shape[1]
        n_local = x.size // c
        mine = xp.zeros((1 + 2 * c,), x.dtype)
        if n_local:
            mean_local = x.mean(axis=axes)
            mine[0] = n_local
            mine[1:1 + c] = mean_local
            mine[1 + c:] = ((x - _per_channel(mean_local, x)) ** 2).sum(axis=axes)
        everyone = xp.empty((self.comm.Get_size(), 1 + 2 * c), x.dtype)
        self.comm.Allgather(mine, everyone)
        counts, means, squares = everyone[:, :1], everyone[:, 1:1 + c], everyone[:, 1 + c:]
        n = int(counts.sum())
        if n <= 1:
            raise ValueError(f"SyncBatchNorm: expected more than 1 value per channel over all ranks when "
                             f"training, got {n} (this rank's input has shape {x.shape})")
        mean = (counts * means).sum(axis=0) / n
        var = (squares.sum(axis=0) + (counts * (means - mean) ** 2).sum(axis=0)) / n
        y, _, _ = registry.lookup("batch_norm_forward", xp)(x, w, b, self.eps, mean, var)
        if self.running_mean is not None:
            update_running_stats(self.running_mean, self.running_var, mean, var, n, self.momentum)
        self.n, self.mean, self.inv_std = n, mean, 1 / xp.sqrt(var + self.eps)
        self.save_for_backward(x, w)
        return y

    def backward(self, gy):
        if autograd.is_grad_enabled():
            raise RuntimeError("SyncBatchNorm: double backward is not supported (backward with create_graph=True)")
        x, w = self.saved_tensors
        x, gy = x.data, gy.data
        xp = get_array_module(x)
        axes = (0,) + tuple(range(2, x.ndim))
        c = x.shape[1]
        xhat = (x - _per_channel(self.mean, x)) * _per_channel(self.inv_std, x)
        sums = xp.concatenate([gy.sum(axis=axes), (gy * xhat).sum(axis=axes)])
        gb, gw = sums[:c].copy(), sums[c:].copy()       # this rank's own, as torch
        self.comm.Allreduce(self.MPI.IN_PLACE, sums, op=self.MPI.SUM)
        scale = self.inv_std if w is None else self.inv_std * w.data
        gx = _per_channel(scale, x) * (gy - _per_channel(sums[:c] / self.n, x)
                                       - xhat * _per_channel(sums[c:] / self.n, x))
        return batch_norm_grads(self, gx, gw, gb)


class SyncBatchNorm(_BatchNorm):
    """Batch normalization of (N, C, *) input with the statistics of the
    whole batch over all ranks of ``mc.distributed`` (torch's
    ``nn.SyncBatchNorm``; see the module docstring).

    In eval mode, and in a process where ``mc.distributed`` is not
    initialized (or has one rank), it is plain BatchNorm, as in torch.
    ``process_group`` must be None (the default group). Input may be 2D to
    5D, what BatchNorm1d to BatchNorm3d take (torch's takes any (N, C, *))."""

    _input_dims = (2, 3, 4, 5)

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 process_group=None, device=None, dtype=None):
        if process_group is not None:
            raise ValueError("SyncBatchNorm: process_group must be None (only the default group exists)")
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)

    def forward(self, input):
        use_batch_stats = self.training or self.running_mean is None
        if not (use_batch_stats and distributed.is_initialized() and distributed.get_world_size() > 1):
            return super().forward(input)
        self._check_input(input)
        if input.dtype.kind != "f":
            raise TypeError(f"SyncBatchNorm: input must be floating point, got dtype {input.dtype}")
        momentum = self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data[...] += 1
            if momentum is None:     # a cumulative average, as BatchNorm
                momentum = 1.0 / int(self.num_batches_tracked.data)
        update = self.training and self.running_mean is not None
        if not hasattr(self, "_comm"):
            # A communicator of its own: MPI matches collectives by order,
            # and DistributedDataParallel's run interleaved with these.
            self._MPI, self._comm = distributed.collectives._private_communicator("SyncBatchNorm")
        params = tuple(p for p in (self.weight, self.bias) if p is not None)
        return _SyncBatchNormFunction.apply(
            input, *params, comm=self._comm, MPI=self._MPI, eps=self.eps, has_weight=self.weight is not None,
            has_bias=self.bias is not None, running_mean=self.running_mean.data if update else None,
            running_var=self.running_var.data if update else None, momentum=momentum)

    @classmethod
    def convert_sync_batchnorm(cls, module, process_group=None):
        """``module`` with every BatchNorm layer inside it (or itself)
        replaced by a SyncBatchNorm holding the same parameters (the very
        Parameter objects), running statistics and training mode, as
        torch's."""
        if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
            converted = cls(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats, process_group)
            if module.affine:
                converted.weight = module.weight
                converted.bias = module.bias
            converted.running_mean = module.running_mean
            converted.running_var = module.running_var
            converted.num_batches_tracked = module.num_batches_tracked
            converted.training = module.training
            return converted
        for name, child in list(module.named_children()):
            module.add_module(name, cls.convert_sync_batchnorm(child, process_group))
        return module
