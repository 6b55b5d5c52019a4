"""Run by test_distributed.py under ``mpiexec -n 2``: the NCCL path of the
collectives (minicnn/distributed/nccl.py) on GPU Tensors, by emulation.
No GPU here, so ``cupy`` is a fake: its arrays hold NumPy arrays and its
NCCL communicator finds them again by their "device pointer" and runs the
collective with MPI on the host. What this checks is minicnn's side: the
unique id's rendezvous, the counts, dtypes, reductions and roots handed to
NCCL, the AVG division, the copy back into non-contiguous views, the
version bumps and the async Work. Every rank checks its own results."""
import itertools
import types

import numpy
from mpi4py import MPI

import minicnn as mc
import minicnn.distributed as dist
from minicnn.distributed import ReduceOp, nccl as nccl_path

from collectives_check import assert_refused, close

_memory = {}                  # fake device pointer -> the NumPy array behind it
_pointers = itertools.count(4096, 4096)
_calls = []                   # (name, count, dtype, op or root) as NCCL received them


class FakeGpuArray:
    """A stand-in for a CuPy array: NumPy underneath, a device and a pointer."""

    def __init__(self, array, base=None):
        self.array, self.base = array, base
        self.device = types.SimpleNamespace(id=0)
        self.data = types.SimpleNamespace(ptr=next(_pointers))
        _memory[self.data.ptr] = array

    shape = property(lambda self: self.array.shape)
    dtype = property(lambda self: self.array.dtype)
    ndim = property(lambda self: self.array.ndim)
    size = property(lambda self: self.array.size)
    flags = property(lambda self: self.array.flags)

    def __getitem__(self, index):
        return FakeGpuArray(self.array[index], base=self)

    def __setitem__(self, index, value):
        self.array[index] = value.array if isinstance(value, FakeGpuArray) else value

    def __itruediv__(self, value):
        self.array /= value
        return self

    def get(self):
        return self.array.copy()


class FakeNcclCommunicator:
    """NCCL's calls, done by MPI on the arrays behind the pointers."""

    def __init__(self, size, unique_id, rank):
        ids = MPI.COMM_WORLD.allgather(unique_id)
        assert all(i == ids[0] for i in ids) and unique_id == b"unique-id-of-rank-0", ids
        assert (size, rank) == (MPI.COMM_WORLD.Get_size(), MPI.COMM_WORLD.Get_rank())

    def allReduce(self, send, recv, count, dtype, op, stream):
        _calls.append(("allReduce", count, dtype, op))
        assert send == recv and _memory[recv].size == count
        MPI.COMM_WORLD.Allreduce(MPI.IN_PLACE, _memory[recv], op=op)

    def bcast(self, buffer, count, dtype, root, stream):
        _calls.append(("bcast", count, dtype, root))
        MPI.COMM_WORLD.Bcast(_memory[buffer], root=root)

    def allGather(self, send, recv, count, dtype, stream):
        _calls.append(("allGather", count, dtype, None))
        MPI.COMM_WORLD.Allgather(_memory[send], _memory[recv])

    def reduceScatter(self, send, recv, count, dtype, op, stream):
        _calls.append(("reduceScatter", count, dtype, op))
        MPI.COMM_WORLD.Reduce_scatter_block(_memory[send], _memory[recv], op=op)


class FakeEvent:
    done = True

    def record(self, stream):
        self.stream = stream

    def synchronize(self):
        pass


fake_nccl = types.SimpleNamespace(
    get_unique_id=lambda: b"unique-id-of-rank-0", NcclCommunicator=FakeNcclCommunicator,
    NCCL_SUM=MPI.SUM, NCCL_PROD=MPI.PROD, NCCL_MIN=MPI.MIN, NCCL_MAX=MPI.MAX,
    **{name: name for name in nccl_path.NCCL_TYPES.values()})
fake_cupy = types.SimpleNamespace(
    cuda=types.SimpleNamespace(nccl=fake_nccl, get_current_stream=lambda: types.SimpleNamespace(ptr=7),
                               Event=FakeEvent),
    ascontiguousarray=lambda a: FakeGpuArray(numpy.ascontiguousarray(a.array)),
    empty=lambda shape, dtype: FakeGpuArray(numpy.empty(shape, dtype)),
    empty_like=lambda a: FakeGpuArray(numpy.empty_like(a.array)),
    stack=lambda arrays: FakeGpuArray(numpy.stack([a.array for a in arrays])))
nccl_path.cupy_module = lambda: fake_cupy


def gpu(array):
    return mc.Tensor._wrap(FakeGpuArray(numpy.array(array)))


def main():
    dist.init_process_group()
    rank, size = dist.get_rank(), dist.get_world_size()
    values = [numpy.arange(6.0).reshape(2, 3) * (r + 1) - r for r in range(size)]
    for op, expected in ((ReduceOp.SUM, sum(values)), (ReduceOp.AVG, sum(values) / size),
                         (ReduceOp.MAX, numpy.maximum.reduce(values)), (ReduceOp.PRODUCT,
                                                                         numpy.multiply.reduce(values))):
        t = gpu(values[rank])
        version = t._version
        assert dist.all_reduce(t, op=op) is None
        close(t.data.array, expected)
        assert t._version > version
    assert _calls[0] == ("allReduce", 6, "NCCL_FLOAT64", MPI.SUM), _calls[0]
    # A non-contiguous view: reduced in a contiguous copy, written back; async.
    base = gpu(numpy.tile(values[rank], (1, 2)))
    view = base[:, ::2]
    work = dist.all_reduce(view, async_op=True)
    assert work.wait() and work.is_completed()
    close(base.data.array[:, ::2], sum(numpy.tile(v, (1, 2))[:, ::2] for v in values))
    close(base.data.array[:, 1::2], numpy.tile(values[rank], (1, 2))[:, 1::2])
    # Integers, broadcast from the last rank, all_gather, reduce_scatter.
    t = gpu(numpy.array([rank, 10 * rank], dtype=numpy.int32))
    dist.all_reduce(t, op=ReduceOp.MIN)
    assert t.data.array.tolist() == [0, 0] and _calls[-1][2] == "NCCL_INT32"
    t = gpu(values[rank])
    dist.broadcast(t, src=size - 1)
    close(t.data.array, values[size - 1])
    assert _calls[-1] == ("bcast", 6, "NCCL_FLOAT64", size - 1)
    gathered = [gpu(numpy.zeros((2, 3))) for _ in range(size)]
    dist.all_gather(gathered, gpu(values[rank]))
    for r in range(size):
        close(gathered[r].data.array, values[r])
    out = gpu(numpy.zeros(3))
    dist.reduce_scatter(out, [gpu(numpy.full(3, k + 100.0 * rank)) for k in range(size)], op=ReduceOp.AVG)
    close(out.data.array, numpy.full(3, (size * rank + 100.0 * sum(range(size))) / size))
    assert _calls[-1] == ("reduceScatter", 3, "NCCL_FLOAT64", MPI.SUM)
    # Bad input: a dtype NCCL lacks, host and GPU tensors mixed in one call.
    assert_refused(((lambda: dist.all_reduce(gpu(numpy.ones(2, numpy.complex128))), TypeError),
                    (lambda: dist.all_gather([mc.zeros(2, 3, dtype=mc.float64)] * size, gpu(values[rank])),
                     TypeError)))
    print(f"rank {rank}: ok", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
