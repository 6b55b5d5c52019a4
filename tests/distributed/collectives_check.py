"""Run by test_distributed.py under ``mpiexec -n 2``: the collectives, the
DistributedDataParallel mechanics (initial broadcast, buffers, no_sync,
unused parameters) on two ranks. Every rank checks its own results and
raises on a mismatch (the test then sees a non-zero exit)."""
import numpy

import minicnn as mc
import minicnn.distributed as dist
from minicnn.distributed import ReduceOp


def close(a, b):
    numpy.testing.assert_allclose(numpy.asarray(a), numpy.asarray(b), rtol=1e-12, atol=0)


def assert_refused(cases):
    """Each (call, error) of ``cases``: call() raises that error."""
    for call, error in cases:
        try:
            call()
        except error:
            pass
        else:
            raise AssertionError(f"expected {error.__name__}")


def params_of(model):
    return dict(model.named_parameters())


def collectives(rank, size):
    values = [numpy.arange(6.0).reshape(2, 3) * (r + 1) - r for r in range(size)]   # rank r's data
    mine = values[rank]
    for op, expected in ((ReduceOp.SUM, sum(values)), (ReduceOp.AVG, sum(values) / size),
                         (ReduceOp.MAX, numpy.maximum.reduce(values)), (ReduceOp.MIN, numpy.minimum.reduce(values)),
                         (ReduceOp.PRODUCT, numpy.multiply.reduce(values))):
        t = mc.tensor(mine.copy())
        version = t._version
        assert dist.all_reduce(t, op=op) is None
        close(t.numpy(), expected)
        assert t._version > version, "all_reduce must count as an in-place change"
    # Integers, a non-contiguous view (written back through it) and async_op.
    t = mc.tensor(numpy.array([rank, 10 * rank], dtype=numpy.int64))
    dist.all_reduce(t, op=ReduceOp.MAX)
    assert t.numpy().tolist() == [size - 1, 10 * (size - 1)]
    base = mc.tensor(numpy.tile(mine, (1, 2)))
    view = base[:, ::2]
    work = dist.all_reduce(view, async_op=True)
    work.wait()
    assert work.is_completed()
    close(view.numpy(), sum(numpy.tile(v, (1, 2))[:, ::2] for v in values))
    close(base.numpy()[:, 1::2], numpy.tile(mine, (1, 2))[:, 1::2])   # the other columns untouched

    t = mc.tensor(mine.copy())
    dist.broadcast(t, src=size - 1)
    close(t.numpy(), values[size - 1])

    gathered = [mc.zeros(2, 3, dtype=mc.float64) for _ in range(size)]
    dist.all_gather(gathered, mc.tensor(mine))
    for r in range(size):
        close(gathered[r].numpy(), values[r])

    # Rank r sends input_list[k] = k + 100 r; output on rank k sums over r.
    inputs = [mc.tensor(numpy.full(3, k + 100.0 * rank)) for k in range(size)]
    out = mc.zeros(3, dtype=mc.float64)
    dist.reduce_scatter(out, inputs, op=ReduceOp.SUM)
    close(out.numpy(), numpy.full(3, size * rank + 100.0 * sum(range(size))))
    dist.barrier()

    assert_refused(((lambda: dist.all_reduce(mc.tensor(mine), op="sum"), TypeError),
                    (lambda: dist.all_reduce(mc.tensor([1, 2]), op=ReduceOp.AVG), TypeError),
                    (lambda: dist.broadcast(mc.tensor(mine), src=size), ValueError),
                    (lambda: dist.all_gather([mc.tensor(mine)] * (size + 1), mc.tensor(mine)), ValueError),
                    (lambda: dist.all_gather([mc.zeros(3)] * size, mc.tensor(mine)), ValueError),
                    (lambda: dist.init_process_group(), RuntimeError),
                    (lambda: mc.nn.parallel.DistributedDataParallel(mc.nn.Linear(2, 2), device_ids=[0]),
                     ValueError)))


class Net(mc.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = mc.nn.Linear(3, 4).double()
        self.bn = mc.nn.BatchNorm1d(4).double()
        self.b = mc.nn.Linear(4, 2).double()
        self.unused = mc.nn.Linear(2, 2).double()      # gets no gradient on any rank
        self.sometimes = mc.nn.Linear(4, 2).double()   # used on rank 1 only

    def forward(self, x, rank=None):
        h = self.bn(self.a(x)).relu()
        y = self.b(h)
        if (dist.get_rank() if rank is None else rank) == 1:
            y = y + self.sometimes(h)
        return y


def ddp_mechanics(rank, size):
    mc.manual_seed(rank)                     # different weights on each rank ...
    net = Net()
    net.bn.running_mean.data[...] = rank
    ddp = mc.nn.parallel.DistributedDataParallel(net, bucket_cap_mb=1e-4)   # tiny buckets: several of them
    assert ddp.module is net and mc.nn.DistributedDataParallel is mc.nn.parallel.DistributedDataParallel
    assert len(ddp._buckets) > 2
    reference = [numpy.empty_like(p.data) for p in net.parameters()]
    for p, r in zip(net.parameters(), reference):
        r[...] = p.data
        dist.broadcast(mc.tensor(r), src=0)
        close(p.data, r)                     # ... made equal by the construction
    close(net.bn.running_mean.numpy(), numpy.zeros(4))
    assert list(ddp.state_dict())[0].startswith("module.")

    rng = numpy.random.default_rng(7)
    x = rng.standard_normal((4, size, 4, 3))    # 4 micro-batches, each split over the ranks
    target = rng.standard_normal((4, size, 4, 2))

    def loss_of(model, k, r):
        return ((model(mc.tensor(x[k, r])) - mc.tensor(target[k, r])) ** 2).mean()

    # Accumulate micro-batches 0..2 under no_sync, then 3 with the exchange.
    with ddp.no_sync():
        for k in range(3):
            loss_of(ddp, k, rank).backward()
    local = {name: p.grad.numpy().copy() for name, p in net.named_parameters() if p.grad is not None}
    loss_of(ddp, 3, rank).backward()
    # The same sums computed locally: every rank's local accumulation, averaged.
    gathered = {}
    for name in ("a.weight", "b.bias", "sometimes.weight"):
        mine = local.get(name)
        # rank 0 never used `sometimes` under no_sync: its accumulated grad is None
        buffer = mc.tensor(numpy.zeros_like(params_of(net)[name].data) if mine is None else mine)
        parts = [mc.zeros_like(buffer) for _ in range(size)]
        dist.all_gather(parts, buffer)
        gathered[name] = parts
    assert net.unused.weight.grad is None, "a parameter unused everywhere keeps grad None"
    assert net.sometimes.weight.grad is not None, "a parameter used on one rank gets the average"
    assert ddp.last_wait_seconds >= 0
    # Rank-to-rank equality of every averaged gradient.
    for name, p in net.named_parameters():
        if p.grad is None:
            continue
        copy = mc.tensor(p.grad.numpy().copy())
        dist.broadcast(copy, src=0)
        close(p.grad.numpy(), copy.numpy())
    # Compare with the accumulated-then-averaged gradients, recomputed from
    # scratch on one replica without DDP (rank 0's weights, every rank's data).
    mc.manual_seed(0)
    plain = Net()
    plain.load_state_dict(net.state_dict())
    total = {name: 0.0 for name in gathered}
    for r in range(size):
        plain.zero_grad()
        for k in range(4):
            ((plain(mc.tensor(x[k, r]), rank=r) - mc.tensor(target[k, r])) ** 2).mean().backward()
        for name in total:
            g = params_of(plain)[name].grad
            total[name] = total[name] + (0 if g is None else g.numpy())
    for name in total:
        numpy.testing.assert_allclose(params_of(net)[name].grad.numpy(), total[name] / size, rtol=1e-9)

    # broadcast_buffers: rank 0's running statistics reach every rank at the
    # next forward (in eval mode, which leaves them alone afterwards).
    net.bn.running_var.data[...] = 1 + rank
    ddp.eval()
    ddp(mc.tensor(x[0, rank]))
    close(net.bn.running_var.numpy(), numpy.ones(4))
    running = mc.tensor(net.bn.running_var.numpy().copy())
    dist.broadcast(running, src=0)
    close(net.bn.running_var.numpy(), running.numpy())


def main():
    dist.init_process_group("mpi")
    rank, size = dist.get_rank(), dist.get_world_size()
    assert dist.is_initialized() and size == 2
    collectives(rank, size)
    ddp_mechanics(rank, size)
    dist.destroy_process_group()
    assert not dist.is_initialized()
    print(f"rank {rank}: ok")


if __name__ == "__main__":
    main()
