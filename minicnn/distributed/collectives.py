"""The process group and its collectives, on MPI through mpi4py, with
torch.distributed's names.

Notation
--------
``P`` processes (ranks 0 .. P-1, ``get_world_size()`` / ``get_rank()``)
each run the same program on their own data, started by an MPI launcher
(``mpiexec -n P python train.py``, on one machine or many). A collective is
a call that every rank makes, in the same order, on arrays of the same
shape; it returns on each rank when that rank's part is done:

* ``all_reduce(t, op)``: every rank's ``t`` becomes op(t_0, ..., t_{P-1}),
  elementwise (SUM, AVG, PRODUCT, MIN, MAX);
* ``broadcast(t, src)``: every rank's ``t`` becomes rank ``src``'s;
* ``all_gather(ts, t)``: ``ts[r]`` becomes rank r's ``t``, on every rank;
* ``reduce_scatter(out, ins, op)``: rank r's ``out`` becomes
  op(ins[r] of rank 0, ..., ins[r] of rank P-1), i.e. the r-th slice of an
  all_reduce of the concatenated ``ins``;
* ``barrier()``: returns once every rank has entered it.

As in torch, collectives write into the Tensors they are given (in place,
outside autograd), and ``async_op=True`` returns a ``Work`` whose
``wait()`` finishes the call (an MPI non-blocking collective underneath).

Host (NumPy) Tensors go through MPI; GPU (CuPy) Tensors through NCCL
(``nccl.py``: the same calls, enqueued on the current CUDA stream).
DistributedDataParallel and SyncBatchNorm exchange host arrays only.

mpi4py is imported by ``init_process_group`` only: ``import minicnn``
neither needs it nor starts MPI.
"""
import enum
import sys
import time
import traceback

import numpy

from .. import autograd
from ..tensor import Tensor
from . import nccl


class ReduceOp(enum.Enum):
    """How ``all_reduce`` and ``reduce_scatter`` combine the ranks' values
    (torch's ``dist.ReduceOp``). AVG is SUM divided by the world size
    (floating point only)."""

    SUM = "sum"
    AVG = "avg"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"


class _Group:
    """The default process group: the MPI communicator and this rank."""

    def __init__(self, MPI):
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.previous_excepthook = sys.excepthook

    def abort(self, message, status):
        """Print ``message`` on stderr and end every rank with ``status``.
        The launcher forwards each rank's output through a pipe and drops
        what it has not yet read when an abort tears the job down (measured
        with MPICH's mpiexec: the last line lost in 3 of 100 aborts); the
        pause gives it time to pass the message on (0 lost in 100)."""
        sys.stderr.write(message)
        sys.stderr.flush()
        time.sleep(ABORT_PAUSE_SECONDS)
        self.comm.Abort(status)     # ends this process too


ABORT_PAUSE_SECONDS = 0.5
_group = None


def is_available():
    """True when mpi4py can be imported (the ``distributed`` extra:
    ``pip install 'minicnn[distributed]'``)."""
    import importlib.util
    return importlib.util.find_spec("mpi4py") is not None


def is_mpi_available():
    """torch's name for ``is_available``: MPI is the only backend here."""
    return is_available()


def is_initialized():
    """True between ``init_process_group`` and ``destroy_process_group``."""
    return _group is not None


def init_process_group(backend="mpi", init_method=None, timeout=None, world_size=-1, rank=-1, store=None,
                       group_name="", pg_options=None, device_id=None):
    """Join the default process group: every rank started by the MPI
    launcher (``mpiexec -n P ...``; a program started without one is a
    group of one). The world size and rank come from MPI, as with torch's
    ``backend="mpi"``: ``world_size`` and ``rank``, if given, must agree.
    ``init_method``, ``store``, ``timeout``, ``group_name``, ``pg_options``
    and ``device_id`` are accepted for torch's signature and unused (MPI's
    launcher does the rendezvous).

    From here on an exception that reaches the top of any rank prints
    "rank R failed: ..." with its traceback and aborts every rank
    (``MPI_Abort``), so a failing rank never leaves the others waiting in a
    collective forever."""
    global _group
    if backend is not None and str(backend).lower() != "mpi":
        raise ValueError(f"init_process_group: backend must be 'mpi' (the only backend of minicnn), got {backend!r}")
    if _group is not None:
        raise RuntimeError("trying to initialize the default process group twice!")
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise RuntimeError("init_process_group: mpi4py is not installed; pip install 'minicnn[distributed]' "
                           "(mpi4py and an MPI library such as the mpich wheel)") from e
    group = _Group(MPI)
    for name, given, actual in (("world_size", world_size, group.size), ("rank", rank, group.rank)):
        if given not in (-1, None) and given != actual:
            raise ValueError(f"init_process_group: {name}={given} but MPI started this process with "
                             f"{name}={actual}; leave it out (MPI's launcher decides)")
    _group = group
    sys.excepthook = _abort_all_ranks


def _abort_all_ranks(kind, error, tb):
    """sys.excepthook while the group is up: say which rank failed and why,
    then end every rank; the others would otherwise wait for this one in
    their next collective, forever."""
    group = _group
    if group.size > 1:
        message = "".join(traceback.format_exception(kind, error, tb))
        group.abort(f"rank {group.rank} failed: {kind.__name__}: {error}\n{message}", 1)
    else:
        group.previous_excepthook(kind, error, tb)


def destroy_process_group(group=None):
    """Leave the default group (MPI itself stays up until the process
    ends, as mpi4py finalizes it at exit)."""
    global _group
    current = _current("destroy_process_group")
    sys.excepthook = current.previous_excepthook
    _group = None


def _current(op):
    if _group is None:
        raise ValueError(f"{op}: the default process group has not been initialized; "
                         f"call mc.distributed.init_process_group() first")
    return _group


def get_rank(group=None):
    """This process's rank, 0 .. world_size - 1."""
    return _current("get_rank").rank


def get_world_size(group=None):
    """How many processes the group has."""
    return _current("get_world_size").size


class Work:
    """A collective started with ``async_op=True``: ``wait()`` finishes it
    (and its in-place write), ``is_completed()`` asks without waiting."""

    def __init__(self, request, finish):
        self.request, self.finish, self.done = request, finish, False

    def is_completed(self):
        if not self.done and self.request.Test():
            self._complete()
        return self.done

    def wait(self, timeout=None):
        if not self.done:
            self.request.Wait()
            self._complete()
        return True

    def _complete(self):
        self.done = True
        self.finish()


def _array(tensor, op, name):
    """The array of Tensor ``tensor`` (NumPy or CuPy), checked."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(tensor).__name__}")
    return tensor.data


def _check_op(op, array, where):
    if not isinstance(op, ReduceOp):
        raise TypeError(f"{where}: op must be a mc.distributed.ReduceOp, got {op!r}")
    if op is ReduceOp.AVG and array.dtype.kind != "f":
        raise TypeError(f"{where}: ReduceOp.AVG needs a floating-point tensor, got dtype {array.dtype}")


def _mpi_op(group, op):
    MPI = group.MPI
    return {ReduceOp.SUM: MPI.SUM, ReduceOp.AVG: MPI.SUM, ReduceOp.PRODUCT: MPI.PROD,
            ReduceOp.MIN: MPI.MIN, ReduceOp.MAX: MPI.MAX}[op]


def _run(start, array, result, finish, async_op):
    """Run an MPI collective that writes ``result`` (a contiguous array),
    then ``finish()`` (copy back into a non-contiguous ``array``, divide for
    AVG, bump its version); blocking, or as a Work."""
    def complete():
        finish()
        if result is not array:
            array[...] = result
        autograd.bump_version(array)
    if async_op:
        return Work(start(nonblocking=True), complete)
    start(nonblocking=False)
    complete()
    return None


def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op=False):
    """Replace ``tensor`` on every rank by op over the ranks' tensors."""
    g = _current("all_reduce")
    array = _array(tensor, "all_reduce", "tensor")
    _check_op(op, array, "all_reduce")
    if nccl.is_gpu_array(array):
        return nccl.all_reduce(g, array, op, async_op)
    buffer = numpy.ascontiguousarray(array)

    def start(nonblocking):
        call = g.comm.Iallreduce if nonblocking else g.comm.Allreduce
        return call(g.MPI.IN_PLACE, buffer, op=_mpi_op(g, op))

    def finish():
        if op is ReduceOp.AVG:
            buffer[...] /= g.size
    return _run(start, array, buffer, finish, async_op)


def broadcast(tensor, src, group=None, async_op=False):
    """Replace ``tensor`` on every rank by rank ``src``'s."""
    g = _current("broadcast")
    array = _array(tensor, "broadcast", "tensor")
    if not isinstance(src, int) or not 0 <= src < g.size:
        raise ValueError(f"broadcast: src must be a rank in [0, {g.size}), got {src!r}")
    if nccl.is_gpu_array(array):
        return nccl.broadcast(g, array, src, async_op)
    buffer = numpy.ascontiguousarray(array)

    def start(nonblocking):
        return (g.comm.Ibcast if nonblocking else g.comm.Bcast)(buffer, root=src)
    return _run(start, array, buffer, lambda: None, async_op)


def _check_list(tensors, like, op, name, size):
    if not isinstance(tensors, (list, tuple)) or len(tensors) != size:
        raise ValueError(f"{op}: {name} must be a list of world_size={size} Tensors, got "
                         f"{len(tensors) if isinstance(tensors, (list, tuple)) else type(tensors).__name__}")
    arrays = [_array(t, op, f"{name}[{r}]") for r, t in enumerate(tensors)]
    for r, a in enumerate(arrays):
        if a.shape != like.shape or a.dtype != like.dtype:
            raise ValueError(f"{op}: {name}[{r}] has shape {a.shape} and dtype {a.dtype}, expected shape "
                             f"{like.shape} and dtype {like.dtype}")
        if nccl.is_gpu_array(a) != nccl.is_gpu_array(like):
            raise TypeError(f"{op}: {name}[{r}] is on {tensors[r].device} but the other tensor is not; "
                            f"a collective takes host tensors only or GPU tensors only")
    return arrays


def all_gather(tensor_list, tensor, group=None, async_op=False):
    """Fill ``tensor_list[r]`` with rank r's ``tensor``, on every rank."""
    g = _current("all_gather")
    array = _array(tensor, "all_gather", "tensor")
    outputs = _check_list(tensor_list, array, "all_gather", "tensor_list", g.size)
    if nccl.is_gpu_array(array):
        return nccl.all_gather(g, array, outputs, async_op)
    send = numpy.ascontiguousarray(array)
    gathered = numpy.empty((g.size,) + array.shape, array.dtype)

    def start(nonblocking):
        return (g.comm.Iallgather if nonblocking else g.comm.Allgather)(send, gathered)

    def finish():
        for r, out in enumerate(outputs):
            out[...] = gathered[r]
            autograd.bump_version(out)
    return _run(start, gathered, gathered, finish, async_op)


def reduce_scatter(output, input_list, op=ReduceOp.SUM, group=None, async_op=False):
    """Rank r's ``output`` becomes op over the ranks of their ``input_list[r]``."""
    g = _current("reduce_scatter")
    array = _array(output, "reduce_scatter", "output")
    _check_op(op, array, "reduce_scatter")
    inputs = _check_list(input_list, array, "reduce_scatter", "input_list", g.size)
    if nccl.is_gpu_array(array):
        return nccl.reduce_scatter(g, array, inputs, op, async_op)
    send = numpy.stack(inputs)
    result = numpy.empty_like(send[0])

    def start(nonblocking):
        call = g.comm.Ireduce_scatter_block if nonblocking else g.comm.Reduce_scatter_block
        return call(send, result, op=_mpi_op(g, op))

    def finish():
        if op is ReduceOp.AVG:
            result[...] /= g.size
    return _run(start, array, result, finish, async_op)


def barrier(group=None, async_op=False, device_ids=None):
    """Return once every rank has called ``barrier``."""
    g = _current("barrier")
    if async_op:
        return Work(g.comm.Ibarrier(), lambda: None)
    g.comm.Barrier()
    return None


def _private_communicator(op):
    """A duplicate of the group's MPI communicator, for one user of
    collectives whose calls must never be matched with anybody else's:
    MPI matches collectives by their order on a communicator, and
    DistributedDataParallel starts its exchanges in an order that may
    interleave differently with SyncBatchNorm's on different ranks.
    Returns (MPI module, communicator)."""
    g = _current(op)
    return g.MPI, g.comm.Dup()
