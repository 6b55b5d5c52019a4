"""DistributedSampler: each rank's share of a dataset's indices, torch's
``torch.utils.data.DistributedSampler``.

Notation
--------
n samples, P ranks (``num_replicas``). Each epoch the indices 0 .. n-1,
shuffled or not, are made a multiple of P long, then dealt round-robin:
rank r takes positions r, r + P, r + 2P, ... So the ranks' shares are
disjoint and together cover every sample once per epoch, except:

* ``drop_last=False`` pads the list by repeating its start (wrapping
  round as often as needed) to ceil(n / P) * P indices: a few samples are
  seen twice, and every rank takes the same number of steps;
* ``drop_last=True`` cuts the list to floor(n / P) * P (when n is not a
  multiple of P): a few samples are skipped this epoch.

Shuffling draws a permutation from a generator seeded with
``seed + epoch``: identical on every rank (they must agree), different
each epoch once ``set_epoch(epoch)`` is called before each. The
permutation comes from NumPy's generator, so for a given seed it differs
from torch's (torch's ``randperm``); everything after it is torch's.
"""
import math
import numbers

import numpy

from .. import distributed


class DistributedSampler:
    """This rank's indices of ``dataset`` (see the module docstring).
    ``num_replicas`` and ``rank`` default to the process group's world
    size and rank (``mc.distributed``)."""

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False):
        if num_replicas is None or rank is None:
            if not distributed.is_initialized():
                raise RuntimeError("DistributedSampler: give num_replicas and rank, or call "
                                   "mc.distributed.init_process_group() first")
            num_replicas = distributed.get_world_size() if num_replicas is None else num_replicas
            rank = distributed.get_rank() if rank is None else rank
        for name, value in (("num_replicas", num_replicas), ("rank", rank), ("seed", seed)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"DistributedSampler: {name} must be an int, got {value!r}")
        if num_replicas < 1:
            raise ValueError(f"DistributedSampler: num_replicas must be at least 1, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"Invalid rank {rank}, rank should be in the interval [0, {num_replicas - 1}]")
        self.dataset, self.num_replicas, self.rank = dataset, int(num_replicas), int(rank)
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), drop_last
        self.epoch = 0
        n = len(dataset)
        if drop_last and n % self.num_replicas:
            self.num_samples = math.ceil((n - self.num_replicas) / self.num_replicas)
        else:
            self.num_samples = math.ceil(n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def __iter__(self):
        n = len(self.dataset)
        if self.shuffle:
            indices = numpy.random.default_rng(self.seed + self.epoch).permutation(n).tolist()
        else:
            indices = list(range(n))
        if not self.drop_last:
            missing = self.total_size - len(indices)
            indices += (indices * math.ceil(missing / len(indices)))[:missing] if missing else []
        else:
            indices = indices[:self.total_size]
        return iter(indices[self.rank:self.total_size:self.num_replicas])

    def __len__(self):
        return self.num_samples

    def set_epoch(self, epoch):
        """Use ``epoch`` in the next shuffle's seed: call it at the start of
        every epoch, with the same value on every rank."""
        self.epoch = epoch
