"""Data-parallel training: mc.distributed, DistributedDataParallel,
SyncBatchNorm, DistributedSampler.

The MPI tests run a script of this folder under ``mpiexec -n 2`` in a
subprocess (each rank checks its own results and fails loudly), with a
timeout so that a hang fails the test instead of the suite; they are
skipped, with the reason, only where mpi4py or mpiexec are missing (CI
installs both: the ``test`` extra has mpi4py and the mpich wheel). The
others compare with torch in this process, without MPI."""
import importlib.util
import os
import shutil
import subprocess
import sys
import time

import numpy
import pytest
import torch

import minicnn as mc
from parity import check_parity, gradcheck_inputs

HERE = os.path.dirname(os.path.abspath(__file__))


def _mpiexec():
    """The mpiexec beside this Python (the mpich wheel installs it in the
    venv's bin), else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.path.exists(beside) else shutil.which("mpiexec")


def _why_no_mpi():
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed (pip install 'minicnn[distributed]')"
    if _mpiexec() is None:
        return "no mpiexec (pip install mpich, or install an MPI library)"
    return None


needs_mpi = pytest.mark.skipif(_why_no_mpi() is not None, reason=str(_why_no_mpi()))


def run_ranks(script, *args, ranks=2, timeout=120):
    """Run tests/distributed/``script`` on ``ranks`` MPI ranks, one thread
    each; returns the CompletedProcess (stdout and stderr together)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(os.path.dirname(HERE)),
                                                      env.get("PYTHONPATH")]))
    return subprocess.run([_mpiexec(), "-n", str(ranks), sys.executable, os.path.join(HERE, script), *args],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, env=env)


def _check_ok(result, ranks=2):
    assert result.returncode == 0, result.stdout[-4000:]
    for r in range(ranks):
        assert f"rank {r}: ok" in result.stdout, result.stdout[-4000:]


@needs_mpi
def test_collectives_ddp_buckets_no_sync_unused_parameters_and_buffers():
    _check_ok(run_ranks("collectives_check.py"))


@needs_mpi
def test_gpu_tensors_go_through_nccl_emulated():
    """The collectives on GPU Tensors hand NCCL the right counts, types,
    reductions and roots and finish AVG, views and async Work as on MPI
    (a fake CuPy whose NCCL runs MPI on host buffers: no GPU here)."""
    _check_ok(run_ranks("nccl_check.py"))


@needs_mpi
def test_two_ranks_with_sync_batchnorm_equal_one_process_and_without_it_per_rank_statistics():
    _check_ok(run_ranks("equivalence_check.py"))


@needs_mpi
def test_a_failing_rank_aborts_the_others_with_its_error():
    started = time.perf_counter()
    result = run_ranks("failure_check.py", timeout=60)
    elapsed = time.perf_counter() - started
    assert result.returncode != 0
    assert "rank 1 failed: ValueError: deliberate failure on rank 1" in result.stdout, result.stdout[-4000:]
    assert "passed the barrier" not in result.stdout
    assert elapsed < 30, f"the abort took {elapsed:.1f} s"


# -- without MPI ---------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 7, 10, 12])
@pytest.mark.parametrize("replicas", [1, 3, 4, 11])
@pytest.mark.parametrize("drop_last", [False, True])
def test_distributed_sampler_index_lists_match_torch(n, replicas, drop_last):
    data = list(range(n))
    for rank in range(replicas):
        ours = mc.utils.data.DistributedSampler(data, num_replicas=replicas, rank=rank, shuffle=False,
                                                drop_last=drop_last)
        theirs = torch.utils.data.DistributedSampler(data, num_replicas=replicas, rank=rank, shuffle=False,
                                                     drop_last=drop_last)
        assert list(ours) == list(theirs) and len(ours) == len(theirs)
        # Shuffled: the permutation is NumPy's (seed + epoch), the rest torch's:
        # our indices are that permutation read at torch's unshuffled positions.
        ours = mc.utils.data.DistributedSampler(data, num_replicas=replicas, rank=rank, seed=5, drop_last=drop_last)
        ours.set_epoch(2)
        permutation = numpy.random.default_rng(5 + 2).permutation(n)
        assert list(ours) == [int(permutation[i]) for i in theirs]


def test_distributed_sampler_shuffles_per_epoch_and_shares_cover_the_dataset():
    shares = [mc.utils.data.DistributedSampler(range(10), num_replicas=2, rank=r) for r in range(2)]
    first = [list(s) for s in shares]
    assert sorted(first[0] + first[1]) == list(range(10))
    assert [list(s) for s in shares] == first            # same epoch, same order
    for s in shares:
        s.set_epoch(1)
    assert [list(s) for s in shares] != first
    with pytest.raises(ValueError, match=r"Invalid rank 2, rank should be in the interval \[0, 1\]"):
        mc.utils.data.DistributedSampler(range(4), num_replicas=2, rank=2)
    with pytest.raises(RuntimeError, match="init_process_group"):
        mc.utils.data.DistributedSampler(range(4))


def _input(shape=(3, 4, 5, 2), seed=0):
    return numpy.random.default_rng(seed).standard_normal(shape) * 2 + 1


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_sync_batchnorm_in_one_process_is_batchnorm_like_torch(dtype):
    # Without an initialized group torch's SyncBatchNorm is batch norm, and so is ours.
    rtol = 1e-10 if dtype == numpy.float64 else 1e-5
    x, gy = _input(), _input(seed=1)
    ours, theirs = mc.nn.SyncBatchNorm(4, momentum=0.3), torch.nn.SyncBatchNorm(4, momentum=0.3)
    for layer, lib in ((ours, mc), (theirs, torch)):
        layer.to(dtype=lib.float64 if dtype == numpy.float64 else lib.float32)
        layer.weight.data[...] = lib.tensor(numpy.linspace(0.5, 2, 4).astype(dtype))
        layer.bias.data[...] = lib.tensor(numpy.linspace(-1, 1, 4).astype(dtype))
    xs = [mc.tensor(x.astype(dtype), requires_grad=True), torch.tensor(x.astype(dtype), requires_grad=True)]
    ys = [ours(xs[0]), theirs(xs[1])]
    ys[0].backward(mc.tensor(gy.astype(dtype)))
    ys[1].backward(torch.tensor(gy.astype(dtype)))
    for a, b in ((ys[0], ys[1]), (xs[0].grad, xs[1].grad), (ours.weight.grad, theirs.weight.grad),
                 (ours.bias.grad, theirs.bias.grad), (ours.running_mean, theirs.running_mean),
                 (ours.running_var, theirs.running_var)):
        numpy.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=rtol, atol=rtol)
    check_parity(lambda x: mc.nn.SyncBatchNorm(4).to(dtype=x.dtype)(x),
                 lambda x: torch.nn.SyncBatchNorm(4).to(dtype=x.dtype)(x), [x], dtype=dtype,
                 noncontiguous_inputs=True)
    if dtype == numpy.float64:
        mc.gradcheck(lambda x: mc.nn.SyncBatchNorm(4).double()(x), gradcheck_inputs([_input((4, 4, 3))]))


def test_sync_batchnorm_checks_its_input():
    with pytest.raises(ValueError, match="expected 2D or 3D or 4D or 5D input, got 1D"):
        mc.nn.SyncBatchNorm(4)(mc.randn(4))
    with pytest.raises(ValueError, match=r"expected 4 channels \(dim 1\)"):
        mc.nn.SyncBatchNorm(4)(mc.randn(2, 3, 5))
    with pytest.raises(ValueError, match="process_group"):
        mc.nn.SyncBatchNorm(4, process_group="world")


def test_convert_sync_batchnorm_like_torch():
    def build(nn):
        inner = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, momentum=None, eps=1e-3))
        return nn.Sequential(inner, nn.BatchNorm1d(5, affine=False), nn.Linear(2, 2))
    ours, theirs = build(mc.nn), build(torch.nn)
    ours[1].eval()
    theirs[1].eval()
    kept = {name: p for name, p in ours.named_parameters()}
    ours = mc.nn.SyncBatchNorm.convert_sync_batchnorm(ours)
    theirs = torch.nn.SyncBatchNorm.convert_sync_batchnorm(theirs)
    for (name, a), (other, b) in zip(ours.named_modules(), theirs.named_modules()):
        assert name == other and type(a).__name__ == type(b).__name__
        assert a.training == b.training
        if type(a).__name__ == "SyncBatchNorm":
            assert (a.eps, a.momentum, a.affine, a.track_running_stats) == (b.eps, b.momentum, b.affine,
                                                                            b.track_running_stats)
    assert all(p is kept[name] for name, p in ours.named_parameters())      # the same Parameters, as torch
    assert list(ours.state_dict()) == list(theirs.state_dict())


def test_distributed_names_need_an_initialized_group_and_mpi4py_is_loaded_lazily():
    assert not mc.distributed.is_initialized()
    with pytest.raises(ValueError, match="init_process_group"):
        mc.distributed.get_rank()
    with pytest.raises(ValueError, match="init_process_group"):
        mc.nn.parallel.DistributedDataParallel(mc.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="backend must be 'mpi'"):
        mc.distributed.init_process_group("nccl")
    assert mc.nn.DistributedDataParallel is mc.nn.parallel.DistributedDataParallel
    code = "import sys, minicnn; assert 'mpi4py' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_launch_helpers(monkeypatch):
    from minicnn.distributed import launch
    assert launch.without_option(["train", "--nproc", "2", "--epochs=3", "--nproc=4", "--lr", "1"], "--nproc") == \
        ["train", "--epochs=3", "--lr", "1"]
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert launch.launched_size() == 1
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "3")
    assert launch.launched_size() == 3
    monkeypatch.delenv("OMPI_COMM_WORLD_SIZE")
    assert launch.join() == (0, 1) and launch.parallel_model(mc.nn.Linear(2, 2)).__class__ is mc.nn.Linear


def test_seeded_samples_augment_a_sample_alike_in_any_order_and_leave_the_global_stream_alone():
    from minicnn.distributed.launch import SeededSamples
    images = mc.utils.data.TensorDataset(mc.tensor(numpy.arange(5 * 36.0).reshape(5, 1, 6, 6)))
    crop = mc.transforms.RandomCrop(6, padding=2)

    class Augmented(mc.utils.data.Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return crop(images[i][0]).numpy()
    samples = SeededSamples(Augmented(), seed=3)
    mc.manual_seed(0)
    forward = [samples[i] for i in range(5)]
    after = mc.rand(3).numpy()
    mc.manual_seed(0)
    backward = [samples[i] for i in reversed(range(5))][::-1]
    assert all((a == b).all() for a, b in zip(forward, backward))
    numpy.testing.assert_array_equal(mc.rand(3).numpy(), after)     # the global stream goes on untouched
    mc.manual_seed(0)
    numpy.testing.assert_array_equal(mc.rand(3).numpy(), after)
    samples.set_epoch(1)
    assert any((a != b).any() for a, b in zip(forward, [samples[i] for i in range(5)]))


def _train_cli(*options, cwd, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(os.path.dirname(HERE)), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "minicnn", "train", "--no-progress", *options], cwd=cwd, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)


@needs_mpi
@pytest.mark.slow
def test_train_cli_two_ranks_of_batch_32_equal_one_process_of_batch_64(tmp_path):
    one = _train_cli("--epochs", "1", "--batch-size", "64", "--checkpoint", "one.safetensors", cwd=tmp_path)
    assert one.returncode == 0, one.stdout[-3000:]
    two = _train_cli("--epochs", "1", "--batch-size", "32", "--nproc", "2", "--checkpoint", "two.safetensors",
                     cwd=tmp_path)
    assert two.returncode == 0, two.stdout[-3000:]
    assert two.stdout.count("epoch 1/1:") == 1, two.stdout      # rank 0 alone prints
    a, b = mc.load(str(tmp_path / "one.safetensors")), mc.load(str(tmp_path / "two.safetensors"))
    assert b["ranks"] == 2 and b["settings"]["batch_size"] == 32
    for name, weight in a["model"].items():
        # The same 22 steps on the same images; float32 sums in another order.
        numpy.testing.assert_allclose(b["model"][name].numpy(), weight.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)


def _ten_images(folder):
    """An ImageFolder of two classes of five 8x8 images: 2 batches of 2 per rank."""
    from PIL import Image
    rng = numpy.random.default_rng(0)
    for label in ("a", "b"):
        os.makedirs(folder / "images" / label)
        for k in range(5):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=numpy.uint8)).save(
                folder / "images" / label / f"{k}.png")


@needs_mpi
@pytest.mark.slow
def test_train_cli_resumes_a_two_rank_run_on_two_ranks_only(tmp_path):
    _ten_images(tmp_path)
    common = ("--dataset", "images", "--batch-size", "2", "--checkpoint", "run.safetensors")
    first = _train_cli("--epochs", "1", "--nproc", "2", *common, cwd=tmp_path)
    assert first.returncode == 0, first.stdout[-3000:]
    resumed = _train_cli("--epochs", "2", "--nproc", "2", "--resume", *common, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert resumed.stdout.count("resuming from run.safetensors after epoch 1") == 1, resumed.stdout
    state = mc.load(str(tmp_path / "run.safetensors"))
    assert state["epoch"] == 2 and state["ranks"] == 2
    alone = _train_cli("--epochs", "3", "--resume", *common, cwd=tmp_path)
    assert alone.returncode == 2 and "trained on 2 process(es), this run has 1" in alone.stdout, alone.stdout


@needs_mpi
@pytest.mark.slow
def test_a_rank_failing_mid_epoch_ends_the_run_and_keeps_the_last_checkpoint(tmp_path):
    _ten_images(tmp_path)
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(os.path.dirname(HERE)), env.get("PYTHONPATH")]))
    result = subprocess.run([_mpiexec(), "-n", "2", sys.executable, os.path.join(HERE, "train_failure_check.py")],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=120)
    assert result.returncode != 0
    assert "rank 1 failed: deliberate failure on rank 1 in epoch 2" in result.stdout, result.stdout[-3000:]
    state = mc.load(str(tmp_path / "run.safetensors"))         # loads: complete, checksums and all
    assert state["epoch"] == 1 and len(state["history"]) == 1
