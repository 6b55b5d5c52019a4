"""Data-parallel training on several processes (torch.distributed's names),
on MPI through mpi4py: ``mpiexec -n P python train.py`` on one machine or
many. The process group and its collectives are in ``collectives.py``;
``DistributedDataParallel`` is in ``minicnn.nn.parallel``, ``SyncBatchNorm``
in ``minicnn.nn`` and ``DistributedSampler`` in ``minicnn.utils.data``."""
from .collectives import (  # noqa: F401
    ReduceOp, Work, init_process_group, destroy_process_group, is_initialized, is_available, is_mpi_available,
    get_rank, get_world_size, all_reduce, broadcast, all_gather, reduce_scatter, barrier)
