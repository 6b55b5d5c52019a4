"""The GPU path of ``mc.distributed``'s collectives: Tensors whose arrays
are CuPy arrays are exchanged by NCCL, through CuPy's bindings
(``cupy.cuda.nccl``), as torch's ``backend="nccl"`` does; host Tensors keep
going through MPI. The API is the same for both.

The NCCL communicator is made at the first collective on a GPU Tensor:
rank 0 draws NCCL's unique id and MPI broadcasts it to the others (MPI is
the rendezvous, as in ChainerMN), then every rank joins on its *current*
CUDA device. Choose it before that first call, one GPU per rank, e.g.
``cupy.cuda.Device(rank % cupy.cuda.runtime.getDeviceCount()).use()``
(torch's ``torch.cuda.set_device(local_rank)``).

Ordering: each call is enqueued on the current CUDA stream, after the
kernels that produced its input and before any kernel enqueued later, so
the result is ready for every later GPU op without the host waiting. The
AVG division and the copy back into a non-contiguous Tensor are enqueued
behind it on the same stream. ``async_op=True`` returns a ``Work`` whose
``wait()`` waits for an event recorded after all of it, which is what a
host-side reader (``.cpu()``, ``.item()``) needs; the stream order alone
is what GPU readers need.

Tested here by emulation only (a fake ``cupy`` whose communicator runs
MPI on host buffers, tests/distributed/nccl_check.py): no GPU was lent to
this project's machines when it was written.
"""
import numpy

from .. import autograd
from ..backend import cupy_module

#: NumPy dtype name -> the name of CuPy's NCCL data-type constant.
NCCL_TYPES = {"int8": "NCCL_INT8", "uint8": "NCCL_UINT8", "int32": "NCCL_INT32", "int64": "NCCL_INT64",
              "float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64"}

#: ReduceOp name -> the name of CuPy's NCCL reduction constant (AVG is a
#: SUM divided by the world size afterwards, as on MPI).
NCCL_OPS = {"SUM": "NCCL_SUM", "AVG": "NCCL_SUM", "PRODUCT": "NCCL_PROD", "MIN": "NCCL_MIN", "MAX": "NCCL_MAX"}


class NcclCommunicator:
    """NCCL over the ranks of the MPI group ``group``, on this process's
    current CUDA device."""

    def __init__(self, group, cupy):
        self.cupy, self.nccl, self.size = cupy, cupy.cuda.nccl, group.size
        unique_id = self.nccl.get_unique_id() if group.rank == 0 else None
        unique_id = group.comm.bcast(unique_id, root=0)
        self.comm = self.nccl.NcclCommunicator(group.size, unique_id, group.rank)

    def dtype(self, array, op):
        name = NCCL_TYPES.get(numpy.dtype(array.dtype).name)
        if name is None:
            raise TypeError(f"{op}: NCCL has no type for dtype {array.dtype}; "
                            f"it takes {', '.join(NCCL_TYPES)}")
        return getattr(self.nccl, name)

    def reduction(self, op):
        return getattr(self.nccl, NCCL_OPS[op.name])

    def run(self, array, result, enqueue, average, async_op):
        """Enqueue ``enqueue(stream_ptr)`` (the NCCL call writing
        ``result``), then the AVG division and the copy back into
        ``array``; returns a Work for ``async_op``."""
        stream = self.cupy.cuda.get_current_stream()
        enqueue(stream.ptr)
        if average:
            result /= self.size
        if result is not array:
            array[...] = result
        autograd.bump_version(array)
        if not async_op:
            return None
        from .collectives import Work
        event = self.cupy.cuda.Event()
        event.record(stream)
        return Work(_EventRequest(event), lambda: None)


class _EventRequest:
    """A CUDA event dressed as the MPI request ``Work`` waits on."""

    def __init__(self, event):
        self.event = event

    def Test(self):
        return self.event.done

    def Wait(self):
        self.event.synchronize()


def is_gpu_array(array):
    """Whether ``array`` is a CuPy array (anything but a NumPy one)."""
    return not isinstance(array, (numpy.ndarray, numpy.generic))


def communicator(group):
    """The group's NCCL communicator, made on first use."""
    if getattr(group, "nccl", None) is None:
        cupy = cupy_module()
        if cupy is None:
            raise RuntimeError("a GPU Tensor needs CuPy for the NCCL collectives (pip install 'minicnn[cuda]')")
        group.nccl = NcclCommunicator(group, cupy)
    return group.nccl


def _contiguous(nccl, array):
    return array if array.flags.c_contiguous else nccl.cupy.ascontiguousarray(array)


def all_reduce(group, array, op, async_op):
    nccl = communicator(group)
    buffer = _contiguous(nccl, array)
    dtype, reduction = nccl.dtype(array, "all_reduce"), nccl.reduction(op)
    return nccl.run(array, buffer,
                    lambda stream: nccl.comm.allReduce(buffer.data.ptr, buffer.data.ptr, buffer.size, dtype,
                                                       reduction, stream),
                    op.name == "AVG", async_op)


def broadcast(group, array, src, async_op):
    nccl = communicator(group)
    buffer = _contiguous(nccl, array)
    dtype = nccl.dtype(array, "broadcast")
    return nccl.run(array, buffer,
                    lambda stream: nccl.comm.bcast(buffer.data.ptr, buffer.size, dtype, src, stream),
                    False, async_op)


def all_gather(group, array, outputs, async_op):
    """``outputs[r]`` (arrays) becomes rank r's ``array``."""
    nccl = communicator(group)
    send = _contiguous(nccl, array)
    gathered = nccl.cupy.empty((group.size,) + tuple(array.shape), array.dtype)
    dtype = nccl.dtype(array, "all_gather")

    def enqueue(stream):
        nccl.comm.allGather(send.data.ptr, gathered.data.ptr, send.size, dtype, stream)
        for r, out in enumerate(outputs):
            out[...] = gathered[r]
            autograd.bump_version(out)
    return nccl.run(gathered, gathered, enqueue, False, async_op)


def reduce_scatter(group, array, inputs, op, async_op):
    """``array`` becomes op over the ranks of their ``inputs[rank]``."""
    nccl = communicator(group)
    send = nccl.cupy.stack(inputs)
    result = nccl.cupy.empty_like(send[0])
    dtype, reduction = nccl.dtype(array, "reduce_scatter"), nccl.reduction(op)
    return nccl.run(array, result,
                    lambda stream: nccl.comm.reduceScatter(send.data.ptr, result.data.ptr, result.size, dtype,
                                                           reduction, stream),
                    op.name == "AVG", async_op)
