"""DistributedDataParallel: one model replica per process, gradients
averaged over the processes during backward.

Notation
--------
P processes (``mc.distributed``), each with the same model and its own
share of every batch, B / P samples. Each computes the gradient g_r of
its own loss (the mean over its samples); the average (1/P) Σ_r g_r is
the gradient of the mean loss over all B samples, the gradient one
process on the whole batch would get (exactly so unless a layer mixes
samples: batch norm, see ``SyncBatchNorm``). So after the average every
replica takes the same optimizer step and the replicas stay identical.

How the average is overlapped with backward
-------------------------------------------
The parameters are packed, in reverse order of registration (roughly
the order backward produces their gradients), into *buckets* of about
``bucket_cap_mb`` MiB (the first one 1 MiB, so communication starts
early), each a flat array. Every parameter has a post-accumulate-grad
hook: when backward has finished its gradient, the hook copies it into
its bucket; when a bucket is full, its sum over the ranks starts as a
non-blocking MPI ``Iallreduce`` while backward goes on with the layers
below. Buckets start strictly in order (MPI matches collectives by their
order, and bucket 3 may fill before bucket 2 on one rank). A callback
queued for the end of backward starts any bucket still waiting (those
with parameters that got no gradient), waits for all of them and writes
the averages back to ``.grad``: by ``optimizer.step()`` every gradient is
the average. ``last_wait_seconds`` is the time that wait took, the part
of the communication backward did not hide.

A parameter that got no gradient on this rank contributes zeros, and one
flag per parameter travels in its bucket: a parameter unused on every
rank keeps its ``.grad`` (None, say) untouched, as torch does. So, unlike
torch, ``find_unused_parameters`` is not needed (it is accepted and
ignored).

MPI makes progress on a non-blocking collective only inside MPI calls;
the hooks test the buckets in flight each time, which is enough to move
them along while backward computes.
"""
import contextlib
import time

import numpy

from ... import autograd
from ... import distributed
from ...tensor import Tensor
from ..module import Module

#: torch's size of the first bucket (``dist._DEFAULT_FIRST_BUCKET_BYTES``).
_FIRST_BUCKET_BYTES = 1024 * 1024


class _Bucket:
    """Parameters whose gradients travel together: one flat buffer holding
    their gradients back to back, then one used-flag per parameter."""

    def __init__(self, params):
        self.params = params
        self.offsets = numpy.cumsum([0] + [p.data.size for p in params]).tolist()
        self.flags = self.offsets[-1]          # where the used-flags start
        self.buffer = numpy.zeros(self.flags + len(params), params[0].dtype)
        self.ready = [False] * len(params)
        self.waiting = len(params)
        self.request = None


def _buckets(params, cap_bytes):
    """Split ``params`` (already in reverse registration order) into
    buckets of one dtype each, the first of at most 1 MiB and the others
    of at most ``cap_bytes`` (a larger parameter gets a bucket alone)."""
    buckets, current, size, cap = [], [], 0, min(_FIRST_BUCKET_BYTES, cap_bytes)
    for p in params:
        if current and (size + p.data.nbytes > cap or p.dtype != current[0].dtype):
            buckets.append(_Bucket(current))
            current, size, cap = [], 0, cap_bytes
        current.append(p)
        size += p.data.nbytes
    if current:
        buckets.append(_Bucket(current))
    return buckets


class DistributedDataParallel(Module):
    """Wrap ``module`` so that its gradients are averaged over the ranks of
    ``mc.distributed`` during backward (torch's
    ``nn.parallel.DistributedDataParallel``).

    At construction every parameter and buffer is broadcast from rank 0,
    so all replicas start equal. ``forward`` calls ``module`` (first
    broadcasting its buffers, e.g. batch norm's running statistics, from
    rank 0 when ``broadcast_buffers``, as torch does); ``backward`` of the
    loss averages the gradients in buckets of ``bucket_cap_mb`` MiB
    (default 25), overlapped with backward (see the module docstring).
    ``no_sync()`` skips the averaging for gradient accumulation.
    ``module`` is the wrapped model (its ``state_dict`` keys are those of
    this wrapper without the ``module.`` prefix, as in torch).

    ``device_ids``, ``output_device``, ``dim``, ``process_group``,
    ``gradient_as_bucket_view`` and ``static_graph`` are accepted for
    torch's signature and must keep their defaults (one host device per
    process, the default group); ``find_unused_parameters`` is accepted and
    not needed."""

    def __init__(self, module, device_ids=None, output_device=None, dim=0, broadcast_buffers=True,
                 init_sync=True, process_group=None, bucket_cap_mb=None, find_unused_parameters=False,
                 check_reduction=False, gradient_as_bucket_view=False, static_graph=False):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: module must be a mc.nn.Module, got {type(module).__name__}")
        if not distributed.is_initialized():
            raise ValueError("DistributedDataParallel: the default process group has not been initialized; "
                             "call mc.distributed.init_process_group() first")
        for name, value, default in (("device_ids", device_ids, None), ("output_device", output_device, None),
                                     ("dim", dim, 0), ("process_group", process_group, None),
                                     ("gradient_as_bucket_view", gradient_as_bucket_view, False)):
            if value != default:
                raise ValueError(f"DistributedDataParallel: {name}={value!r} is not supported "
                                 f"(one host device per process, the default group); leave it out")
        bucket_cap_mb = 25 if bucket_cap_mb is None else bucket_cap_mb
        if not bucket_cap_mb > 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be positive, got {bucket_cap_mb!r}")
        self.module = module
        self.broadcast_buffers = broadcast_buffers
        self.bucket_cap_mb = bucket_cap_mb
        self.require_backward_grad_sync = True
        self.last_wait_seconds = 0.0
        self._MPI, self._comm = distributed.collectives._private_communicator("DistributedDataParallel")
        self._world_size = self._comm.Get_size()
        self._sync_buffers_next = True
        if init_sync:
            self._broadcast([p.data for p in module.parameters()])
            self._sync_buffers()

        params = [p for p in module.parameters() if p.requires_grad]
        for p in params:
            if type(p.data) is not numpy.ndarray:
                raise TypeError(f"DistributedDataParallel: parameters must be on the host (MPI backend), got a "
                                f"parameter on {p.device}")
        self._buckets = _buckets(params[::-1], int(bucket_cap_mb * 1024 * 1024))
        self._slot = {id(p): (bucket, k) for bucket in self._buckets for k, p in enumerate(bucket.params)}
        self._next = 0                 # the next bucket to start
        self._pass_started = False
        self._hook_handles = [p.register_post_accumulate_grad_hook(self._grad_ready) for p in params]

    # -- forward ---------------------------------------------------------
    def forward(self, *inputs, **kwargs):
        if self._pass_started:
            # A backward that raised after some buckets had started: the
            # ranks no longer agree on which exchanges are in flight.
            raise RuntimeError("DistributedDataParallel: expected to have finished reduction in the prior "
                               "iteration before starting a new one (the previous backward did not complete)")
        if self.broadcast_buffers and self._sync_buffers_next:
            self._sync_buffers()
        # torch broadcasts again before the next forward only after one
        # whose backward will be synchronized (not under no_sync, not in no_grad).
        self._sync_buffers_next = autograd.is_grad_enabled() and self.require_backward_grad_sync
        return self.module(*inputs, **kwargs)

    def _sync_buffers(self):
        self._broadcast([b.data for b in self.module.buffers()])

    def _broadcast(self, arrays):
        """Copy rank 0's ``arrays`` into every rank's, one message per dtype."""
        by_dtype = {}
        for a in arrays:
            by_dtype.setdefault(a.dtype, []).append(a)
        for dtype, group in by_dtype.items():
            flat = numpy.concatenate([a.ravel() for a in group]) if group else numpy.empty(0, dtype)
            self._comm.Bcast(flat, root=0)
            start = 0
            for a in group:
                a[...] = flat[start:start + a.size].reshape(a.shape)
                autograd.bump_version(a)
                start += a.size

    @contextlib.contextmanager
    def no_sync(self):
        """Inside this block backward only accumulates into ``.grad``; the
        first backward after it averages the accumulated gradients."""
        previous = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = previous

    # -- backward --------------------------------------------------------
    def _grad_ready(self, param):
        """A parameter's post-accumulate-grad hook: copy its gradient into
        its bucket and start every bucket that is now complete, in order."""
        if not self.require_backward_grad_sync:
            return
        if not self._pass_started:
            self._pass_started = True
            autograd.queue_callback(self._finish_pass)
        bucket, k = self._slot[id(param)]
        start, end = bucket.offsets[k], bucket.offsets[k + 1]
        bucket.buffer[start:end] = param.grad.data.ravel()
        bucket.buffer[bucket.flags + k] = 1
        bucket.ready[k] = True
        bucket.waiting -= 1
        self._start_ready_buckets()
        self._progress()

    def _start_ready_buckets(self, all_of_them=False):
        while self._next < len(self._buckets):
            bucket = self._buckets[self._next]
            if bucket.waiting and not all_of_them:
                return
            for k, ready in enumerate(bucket.ready):
                if not ready:      # no gradient here: zeros, and flag 0
                    bucket.buffer[bucket.offsets[k]:bucket.offsets[k + 1]] = 0
                    bucket.buffer[bucket.flags + k] = 0
            bucket.request = self._comm.Iallreduce(self._MPI.IN_PLACE, bucket.buffer, op=self._MPI.SUM)
            self._next += 1

    def _progress(self):
        """Let MPI move the exchanges in flight along (it does so only
        inside MPI calls)."""
        requests = [b.request for b in self._buckets[:self._next]]
        if requests:
            self._MPI.Request.Testall(requests)

    def _finish_pass(self):
        """Queued for the end of backward: start the buckets still waiting,
        wait for all, and write the averages back into ``.grad``."""
        started = time.perf_counter()
        self._start_ready_buckets(all_of_them=True)
        self._MPI.Request.Waitall([b.request for b in self._buckets])
        self.last_wait_seconds = time.perf_counter() - started
        for bucket in self._buckets:
            for k, p in enumerate(bucket.params):
                if bucket.buffer[bucket.flags + k] > 0:       # used on some rank
                    average = bucket.buffer[bucket.offsets[k]:bucket.offsets[k + 1]] / self._world_size
                    p.grad = Tensor._wrap(average.reshape(p.shape))
            bucket.ready = [False] * len(bucket.params)
            bucket.waiting = len(bucket.params)
            bucket.request = None
        self._next = 0
        self._pass_started = False
