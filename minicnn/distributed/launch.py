"""What ``python -m minicnn train`` needs to run on several ranks.

    python -m minicnn train --nproc 2 ...       # starts: mpiexec -n 2 python -m minicnn train ...
    mpiexec -n 2 python -m minicnn train ...    # the same, started by hand (or across machines)

Each rank builds the same model from the same seed and trains it under
``DistributedDataParallel`` (its batch norms made ``SyncBatchNorm``s) on
its share of every epoch (``DistributedSampler``): ``--batch-size`` is
per rank, as in torch, so P ranks of batch B take the steps one process
of batch P * B takes, on the same images. Augmentation draws from a
generator seeded by (seed, epoch, sample index) for each sample
(``SeededSamples``), so a sample is augmented the same way whichever rank
loads it: with ranks that split the batches evenly (P divides the
training-set size and the global batch), P ranks end with the weights of
one process of batch P * B, up to float rounding. Only rank 0 prints and
writes checkpoints; every rank reads the checkpoint to resume (on several
machines it must be on a shared file system).

A rank's MPI rank and world size come from the variables its launcher
sets (MPICH and Intel MPI: ``PMI_RANK`` / ``PMI_SIZE``; Open MPI:
``OMPI_COMM_WORLD_RANK`` / ``OMPI_COMM_WORLD_SIZE``), read without
importing mpi4py, so a run of one process never starts MPI.
"""
import os
import shutil
import sys

import numpy

from .. import random
from ..utils.data import Dataset
from . import collectives

_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")


def launched_size():
    """How many ranks the MPI launcher started with this process (1 when
    it was not started by one)."""
    for name in _SIZE_VARIABLES:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 1


def mpiexec():
    """The mpiexec beside this Python (the mpich wheel installs it in the
    environment's bin), else the one on PATH; None if there is none."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.path.exists(beside) else shutil.which("mpiexec")


def without_option(argv, option):
    """``argv`` without ``option`` and its value (``--opt V`` or ``--opt=V``)."""
    kept, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word == option:
            skip = True
        elif not word.startswith(option + "="):
            kept.append(word)
    return kept


def run_under_mpiexec(nproc, argv):
    """Run ``python -m minicnn *argv`` on ``nproc`` ranks under mpiexec;
    returns its exit status."""
    import subprocess
    launcher = mpiexec()
    if launcher is None:
        raise RuntimeError("--nproc needs MPI: pip install 'minicnn[distributed]' (mpi4py and the mpich wheel, "
                           "which brings mpiexec)")
    command = [launcher, "-n", str(nproc), sys.executable, "-m", "minicnn", *argv]
    try:
        return subprocess.run(command).returncode
    except KeyboardInterrupt:     # mpiexec passes Ctrl-C on to the ranks; rank 0 says how to resume
        return 130


def join():
    """(rank, world size): joins the process group when the launcher
    started several ranks (once), else (0, 1)."""
    if launched_size() > 1 and not collectives.is_initialized():
        collectives.init_process_group("mpi")
    if collectives.is_initialized():
        return collectives.get_rank(), collectives.get_world_size()
    return 0, 1


def is_rank_zero():
    """True on rank 0, and in a run of one process."""
    return not collectives.is_initialized() or collectives.get_rank() == 0


def parallel_model(net):
    """``net`` ready to train on every rank: its batch norms synchronized
    and wrapped in DistributedDataParallel (which also copies rank 0's
    weights to the others); ``net`` itself on a single process."""
    if not collectives.is_initialized() or collectives.get_world_size() == 1:
        return net
    from ..nn import SyncBatchNorm
    from ..nn.parallel import DistributedDataParallel
    return DistributedDataParallel(SyncBatchNorm.convert_sync_batchnorm(net))


def fail(message, status=1):
    """End a run after an error: on several ranks, print it with this
    rank's number and abort them all (the others would otherwise wait for
    this one forever); alone, just return ``status``."""
    if collectives.is_initialized() and collectives.get_world_size() > 1:
        group = collectives._current("fail")
        group.abort(f"rank {group.rank} failed: {message}\n", status)
    return status


class SeededSamples(Dataset):
    """``dataset`` whose sample ``index`` is loaded (and augmented) with the
    global generator seeded by (``seed``, ``epoch``, ``index``), its stream
    restored afterwards: the augmentation of a sample depends on neither
    the order samples are loaded in nor the rank that loads it. Call
    ``set_epoch`` at the start of each epoch."""

    def __init__(self, dataset, seed):
        self.dataset, self.seed, self.epoch = dataset, int(seed), 0

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        state = random.get_rng_state()
        random.manual_seed(int(numpy.random.SeedSequence([self.seed, self.epoch, int(index)]).generate_state(1)[0]))
        try:
            return self.dataset[index]
        finally:
            random.set_rng_state(state)

    def __getattr__(self, name):
        # classes, transform, ...: the wrapped dataset's
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)
