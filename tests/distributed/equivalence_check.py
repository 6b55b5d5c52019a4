"""Run by test_distributed.py under ``mpiexec -n 2``: data-parallel
training equals one process on the whole batch.

Every rank trains, from the same initial weights, on its half of each
batch of a small conv net with batch norm, for a few SGD steps:

* DDP with SyncBatchNorm must end with the parameters (and running
  statistics) of one process training the same net on the whole batches;
* DDP with plain BatchNorm must end with the parameters of one process
  that normalizes each half with its own statistics (the two half-batch
  losses averaged): the per-rank batch statistics are the whole difference;
* and the two must differ, so that the first check could fail.

Every rank computes the one-process references itself, in float64."""
import numpy

import minicnn as mc
import minicnn.distributed as dist
from minicnn.nn.parallel import DistributedDataParallel

STEPS, BATCH = 3, 8


def net():
    mc.manual_seed(0)
    return mc.nn.Sequential(
        mc.nn.Conv2d(3, 4, 3, padding=1), mc.nn.BatchNorm2d(4), mc.nn.ReLU(),
        mc.nn.Conv2d(4, 6, 3, stride=2), mc.nn.BatchNorm2d(6), mc.nn.ReLU(),
        mc.nn.AdaptiveAvgPool2d(1), mc.nn.Flatten(), mc.nn.Linear(6, 5)).double()


def train(model, step_loss):
    """STEPS SGD steps; step_loss(model, images, labels) is one step's loss."""
    rng = numpy.random.default_rng(3)
    optimizer = mc.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    for _ in range(STEPS):
        images = mc.tensor(rng.standard_normal((BATCH, 3, 8, 8)))
        labels = mc.tensor(rng.integers(0, 5, BATCH))
        optimizer.zero_grad()
        step_loss(model, images, labels).backward()
        optimizer.step()
    return model


def relative_error(a, b):
    """max |a - b| / max |b| over every array of two state dicts."""
    return max(float(numpy.abs(a[k].numpy() - b[k].numpy()).max() / numpy.abs(b[k].numpy()).max())
               for k in b if b[k].dtype.kind == "f")


def main():
    dist.init_process_group("mpi")
    rank, size = dist.get_rank(), dist.get_world_size()
    share = BATCH // size
    mine = slice(rank * share, (rank + 1) * share)

    def ranks_half(model, images, labels):
        return mc.nn.functional.cross_entropy(model(images[mine]), labels[mine])

    def whole_batch(model, images, labels):
        return mc.nn.functional.cross_entropy(model(images), labels)

    def halves_separately(model, images, labels):
        losses = [mc.nn.functional.cross_entropy(model(images[r * share:(r + 1) * share]),
                                                 labels[r * share:(r + 1) * share]) for r in range(size)]
        return sum(losses) / size

    synced = train(DistributedDataParallel(mc.nn.SyncBatchNorm.convert_sync_batchnorm(net())), ranks_half)
    one_process = train(net(), whole_batch)
    error = synced_error = relative_error(synced.module.state_dict(), one_process.state_dict())
    assert error <= 1e-10, f"DDP + SyncBatchNorm differs from one process by {error:.3g} (relative)"

    per_rank = train(DistributedDataParallel(net()), ranks_half)
    emulated = train(net(), halves_separately)
    params = lambda m: {k: v for k, v in m.state_dict().items() if "running" not in k}   # noqa: E731
    error = relative_error(params(per_rank.module), params(emulated))
    assert error <= 1e-10, f"DDP + BatchNorm differs from per-half batch norm by {error:.3g} (relative)"
    gap = relative_error(params(per_rank.module), params(one_process))
    assert gap > 1e-6, f"per-rank and whole-batch statistics gave the same parameters ({gap:.3g}): the test is blind"
    print(f"rank {rank}: ok; SyncBatchNorm matches one process ({synced_error:.2g}), per-rank BatchNorm differs by {gap:.2g}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
