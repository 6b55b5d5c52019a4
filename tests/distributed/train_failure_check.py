"""Run by test_distributed.py under ``mpiexec -n 2`` in a folder holding
``images/``: ``python -m minicnn train`` for 2 epochs, where rank 1 raises
after the first batch of epoch 2. Rank 0 has saved epoch 1 by then (it
could not start epoch 2's first exchange without rank 1); the run must
end at once, with rank 1's error, and leave that checkpoint intact."""
import minicnn.distributed as dist
from minicnn import train as training
from minicnn.__main__ import main

real_epoch = training._train_one_epoch


class FailingLoader:
    """The loader, raising after its first batch."""

    def __init__(self, loader):
        self.loader = loader

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for k, batch in enumerate(self.loader):
            if k == 1:
                raise OSError("deliberate failure on rank 1 in epoch 2")
            yield batch


def epoch_that_fails_on_rank_1(*args):
    args = list(args)
    if dist.get_rank() == 1 and args[5].startswith("epoch 2/"):
        args[1] = FailingLoader(args[1])
    return real_epoch(*args)


training._train_one_epoch = epoch_that_fails_on_rank_1
raise SystemExit(main(["train", "--dataset", "images", "--batch-size", "2", "--epochs", "2", "--no-progress",
                       "--checkpoint", "run.safetensors"]))
