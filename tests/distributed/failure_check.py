"""Run by test_distributed.py under ``mpiexec -n 2``: rank 1 raises while
rank 0 waits for it in a collective; the group must end at once with
rank 1's error, not hang."""
import minicnn.distributed as dist

dist.init_process_group("mpi")
if dist.get_rank() == 1:
    raise ValueError("deliberate failure on rank 1")
dist.barrier()          # rank 1 never comes: without the abort this waits forever
print("rank 0 passed the barrier: the failure went unnoticed")
