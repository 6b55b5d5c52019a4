"""Data-parallel training on this machine: the ResNet-18 training step of
the benchmark table (10 classes, a batch of 16 images of 3x64x64, SGD
with momentum) on 2 MPI ranks of 1 thread each, each rank taking 8 of
the 16 images under DistributedDataParallel, against 1 process of 2
threads taking all 16.

    python -m benchmarks.distributed            # or: python -m benchmarks --only distributed
    python -m benchmarks.distributed --steps 9 --rounds 2

Each configuration runs under ``mpiexec`` in a child process (the two
alternate ``--rounds`` times, so a change in the machine's load hits
both), warms up, then times ``--steps`` steps; a step is zero_grad,
forward, backward, optimizer step, timed on rank 0 (the ranks keep pace:
each waits for the other's gradients). Reported, as medians:

* the step time of each configuration and their ratio (below 1 the two
  ranks are faster);
* the exposed communication time: how long backward's end waits for the
  gradient exchanges still in flight (``DistributedDataParallel``'s
  ``last_wait_seconds``), against the 10% of the step it should stay
  under; the exchanges started earlier overlapped with backward;
* the time one blocking allreduce of all the gradients (11.2 M floats,
  45 MB) takes alone, what the step would pay without the overlap.

Results go to ``benchmarks/results/distributed.md``. Needs mpi4py and an
MPI library (``pip install 'minicnn[distributed]'``).
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
GLOBAL_BATCH, IMAGE, CLASSES = 16, 64, 10
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def worker(threads, steps, warmup):
    """Run under mpiexec: time the training step on this rank; rank 0
    prints one JSON line with the medians."""
    import numpy

    import minicnn as mc
    import minicnn.distributed as dist
    mc.set_num_threads(threads)
    dist.init_process_group("mpi")
    rank, size = dist.get_rank(), dist.get_world_size()
    mc.manual_seed(0)
    model = mc.models.resnet18(num_classes=CLASSES)
    if size > 1:
        model = mc.nn.parallel.DistributedDataParallel(model)
    rng = numpy.random.default_rng(rank)
    x = mc.tensor(rng.standard_normal((GLOBAL_BATCH // size, 3, IMAGE, IMAGE)).astype(numpy.float32))
    labels = mc.tensor(rng.integers(0, CLASSES, GLOBAL_BATCH // size))
    optimizer = mc.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    times, waits = [], []
    for step in range(warmup + steps):
        started = time.perf_counter()
        optimizer.zero_grad()
        mc.nn.functional.cross_entropy(model(x), labels).backward()
        optimizer.step()
        if step >= warmup:
            times.append(time.perf_counter() - started)
            waits.append(model.last_wait_seconds if size > 1 else 0.0)
    allreduce = None
    if size > 1:
        from mpi4py import MPI
        flat = numpy.concatenate([p.grad.data.ravel() for p in model.parameters()])
        spans = []
        for _ in range(5):
            MPI.COMM_WORLD.Barrier()
            started = time.perf_counter()
            MPI.COMM_WORLD.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
            spans.append(time.perf_counter() - started)
        allreduce = statistics.median(spans)
    if rank == 0:
        print("RESULT " + json.dumps(dict(ranks=size, threads=threads, step_s=statistics.median(times),
                                          wait_s=statistics.median(waits), allreduce_s=allreduce,
                                          mpi=mpi_version())))
    dist.destroy_process_group()


def mpi_version():
    from mpi4py import MPI
    return MPI.Get_library_version().splitlines()[0].strip()


def mpiexec():
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else "mpiexec"


def launch(ranks, threads, steps, warmup):
    """One configuration in a child process under mpiexec; its result dict."""
    env = dict(os.environ, **{name: str(threads) for name in THREAD_VARIABLES})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    command = [mpiexec(), "-n", str(ranks), sys.executable, "-m", "benchmarks.distributed", "--worker",
               "--threads", str(threads), "--steps", str(steps), "--warmup", str(warmup)]
    out = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                         cwd=ROOT, timeout=1800)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode or not lines:
        raise SystemExit(f"{' '.join(command)} failed:\n{out.stdout[-3000:]}")
    return json.loads(lines[0][len("RESULT "):])


def measure(steps=9, warmup=3, rounds=2, log=print):
    """Alternate the two configurations ``rounds`` times; the median of
    each quantity over the rounds."""
    load_before = os.getloadavg()[0]
    runs = {"2x1": [], "1x2": []}
    for round_ in range(rounds):
        for key, (ranks, threads) in (("2x1", (2, 1)), ("1x2", (1, 2))):
            result = launch(ranks, threads, steps, warmup)
            runs[key].append(result)
            log(f"round {round_ + 1}: {ranks} rank(s) x {threads} thread(s): step {result['step_s'] * 1e3:.0f} ms"
                + (f", exposed wait {result['wait_s'] * 1e3:.1f} ms" if ranks > 1 else ""))
    two, one = runs["2x1"], runs["1x2"]
    median = lambda runs, key: statistics.median(r[key] for r in runs)   # noqa: E731
    return dict(step_2x1=median(two, "step_s"), step_1x2=median(one, "step_s"), wait=median(two, "wait_s"),
                allreduce=median(two, "allreduce_s"), mpi=two[0]["mpi"], steps=steps, rounds=rounds,
                load=(load_before, os.getloadavg()[0]))


def markdown(r):
    ratio = r["step_2x1"] / r["step_1x2"]
    share = r["wait"] / r["step_2x1"]
    return "\n".join([
        "# Data-parallel training: 2 MPI ranks against 1 process",
        "",
        f"ResNet-18 training step, {GLOBAL_BATCH}x3x{IMAGE}x{IMAGE}, {CLASSES} classes, SGD with momentum "
        f"(the benchmark table's step); medians of {r['steps']} steps x {r['rounds']} rounds. "
        f"Written by `python -m benchmarks.distributed` on {datetime.date.today().isoformat()}.",
        "",
        "| configuration | step (ms) | images/s |",
        "|---|---:|---:|",
        f"| 1 process x 2 threads, batch {GLOBAL_BATCH} | {r['step_1x2'] * 1e3:.0f} | "
        f"{GLOBAL_BATCH / r['step_1x2']:.1f} |",
        f"| 2 ranks x 1 thread, batch {GLOBAL_BATCH // 2} each (DistributedDataParallel) | "
        f"{r['step_2x1'] * 1e3:.0f} | {GLOBAL_BATCH / r['step_2x1']:.1f} |",
        "",
        f"- step time, 2 ranks / 1 process: **{ratio:.2f}** (below 1 the ranks are faster)",
        f"- exposed communication per step (waiting for the allreduce after backward ends): "
        f"{r['wait'] * 1e3:.1f} ms, **{share:.1%}** of the step (target < 10%: "
        f"{'met' if share < 0.1 else 'not met'})",
        f"- one blocking allreduce of all 11.2 M gradients (45 MB) alone: {r['allreduce'] * 1e3:.1f} ms, "
        f"what the step would pay without the overlap",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
        f"{r['load'][0]:.2f} before and {r['load'][1]:.2f} after; {r['mpi']}."]
        + ([f"Measured under load (other processes competed for the {os.cpu_count()} cores): the times are "
            f"inflated and the ratio need not be an idle machine's."]
           if max(r["load"]) > 0.5 * os.cpu_count() else [])
        + [""])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=9, help="timed steps per run (default 9)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the two configurations (default 2)")
    parser.add_argument("--out", default=str(RESULTS / "distributed.md"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.threads, args.steps, args.warmup)
    text = markdown(measure(args.steps, args.warmup, args.rounds))
    Path(args.out).write_text(text)
    print(text)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
