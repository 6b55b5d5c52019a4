"""Slowdown under load: minicnn and torch beside busy processes.

On a machine shared with other work, a framework's threads do not get
every core they ask for. How much a framework slows down then depends on
its runtime: whether a thread that lost its core holds up the others,
whether idle threads spin on cores that the busy processes need. This
module measures it.

Method
------
Two workloads (``workloads``): a 16x96x28x28 -> 96, 3x3 convolution,
forward + backward, and the ResNet-18 training step of ``cases.py``.
Each is built once and warmed up, then, ``REPEATS`` times:

1. both frameworks are timed with nothing else started by the harness
   (*idle*);
2. for k in ``LOADS`` (1 and 2): k busy processes are started
   (``busy_processes``: each a Python loop on one core, started before the
   clock runs), both frameworks are timed again (*loaded*), and the
   processes are stopped.

Each timing follows ``run.py``'s protocol: an untimed call of the same
framework first, ``SWITCH_PAUSE_S`` between one framework's calls and the
other's. The framework that goes first alternates from one repeat to the
next, so that neither always meets the busy processes fresh.

For each framework, slowdown = median loaded time / median idle time;
the ratio is minicnn's slowdown over torch's (below 1: minicnn suffers
less from the load). The range is that of the ratio computed within each
repeat (idle and loaded times measured seconds apart), which shows how
much of the ratio is noise.

Caveats: *idle* means without the harness's processes, not a quiet
machine; other processes' load enters both measurements alike. The busy
processes are plain CPU loops: they compete for cores, not for memory
bandwidth or caches, as most other work would too.
"""
import contextlib
import statistics
import subprocess
import sys
import time

from benchmarks.cases import conv_case, resnet_step_case
from benchmarks.run import SWITCH_PAUSE_S, _seconds, warm_up

#: (N, C, H=W, O, kernel, stride, groups, note), as ``cases.CONV_LAYERS``.
CONV_LAYER = (16, 96, 28, 96, 3, 1, 1, "a mid-network 3x3 layer")
#: Numbers of busy processes beside the timed framework.
LOADS = (1, 2)
#: Repeats of the idle and loaded timings of each workload.
REPEATS = 7
#: A busy process stops by itself after this many seconds, should the
#: harness die before stopping it (one repeat's loaded timings take a few).
BUSY_LIMIT_S = 60.0

# Spins on the clock until its deadline, after saying that it has started.
BUSY_CODE = """\
import sys, time
deadline = time.monotonic() + float(sys.argv[1])
print("busy", flush=True)
while time.monotonic() < deadline:
    pass
"""


def start_busy(limit_s=BUSY_LIMIT_S):
    """A child process that keeps one core busy for ``limit_s`` seconds and
    prints one line ("busy") when it starts."""
    return subprocess.Popen([sys.executable, "-c", BUSY_CODE, str(limit_s)], stdout=subprocess.PIPE,
                            text=True)


@contextlib.contextmanager
def busy_processes(count, limit_s=BUSY_LIMIT_S):
    """Run the body beside ``count`` busy processes (a list of their
    ``Popen``), all of them running before the body starts; they are killed
    on the way out, however the body ends."""
    processes = []
    try:
        for _ in range(count):
            processes.append(start_busy(limit_s))
        for process in processes:
            # Its Python takes tens of ms to start: time nothing before it burns.
            if process.stdout.readline() != "busy\n":
                raise RuntimeError(f"a busy process did not start (exit status {process.wait()})")
        yield processes
    finally:
        for process in processes:
            process.kill()
        for process in processes:
            process.wait()
            process.stdout.close()


def workloads():
    """The cases timed under load, on the CPU: the convolution and the
    ResNet-18 step."""
    return [conv_case(CONV_LAYER, backward=True), resnet_step_case()]


def _time_both(fns, times):
    """Append one timed call of each framework to ``times[name]``, in the
    order of ``fns`` ([(name, fn)]), each after an untimed call."""
    for name, fn in fns:
        time.sleep(SWITCH_PAUSE_S)  # the other framework's threads stop spinning (run.py)
        fn()
        times[name].append(_seconds(fn))


def slowdown_row(workload, busy, idle, loaded):
    """One result row from the seconds of each repeat: ``idle[name]`` and
    ``loaded[name]``, lists over repeats, for name in minicnn and torch."""
    row = {"workload": workload, "busy": busy, "status": "ok"}
    for name in ("minicnn", "torch"):
        idle_s, loaded_s = statistics.median(idle[name]), statistics.median(loaded[name])
        row.update({f"{name}_idle_ms": idle_s * 1e3, f"{name}_loaded_ms": loaded_s * 1e3,
                    f"{name}_slowdown": loaded_s / idle_s})
    row["ratio"] = row["minicnn_slowdown"] / row["torch_slowdown"]
    per_repeat = [(mc_loaded / mc_idle) / (torch_loaded / torch_idle) for mc_idle, mc_loaded, torch_idle, torch_loaded
                  in zip(idle["minicnn"], loaded["minicnn"], idle["torch"], loaded["torch"])]
    row.update(ratio_min=min(per_repeat), ratio_max=max(per_repeat), repeats=len(per_repeat))
    return row


def measure_case(case, warmup, repeats=REPEATS, loads=LOADS):
    """The rows of one workload, one per number of busy processes. A
    workload that is skipped or fails gives rows that say why."""
    if case.skip:
        return [{"workload": case.name, "busy": busy, "status": f"skipped: {case.skip}"} for busy in loads]
    try:
        mc_fn, torch_fn = case.build()
        warm_up(mc_fn, torch_fn, warmup)
        idle = {"minicnn": [], "torch": []}
        loaded = {busy: {"minicnn": [], "torch": []} for busy in loads}
        for repeat in range(repeats):
            fns = [("minicnn", mc_fn), ("torch", torch_fn)][::1 if repeat % 2 == 0 else -1]
            _time_both(fns, idle)
            for busy in loads:
                with busy_processes(busy):
                    _time_both(fns, loaded[busy])
    except Exception as error:  # one broken workload must not lose the other's results
        return [{"workload": case.name, "busy": busy, "status": f"error: {type(error).__name__}: {error}"}
                for busy in loads]
    return [slowdown_row(case.name, busy, idle, loaded[busy]) for busy in loads]


def measure(warmup, repeats=REPEATS, log=print):
    """Every workload's rows, on the CPU."""
    rows = []
    for case in workloads():
        for row in measure_case(case, warmup, repeats):
            rows.append(row)
            log(_progress_line(row))
    return rows


def _progress_line(row):
    where = f"  {row['workload']:<40} {row['busy']} busy"
    if row["status"] != "ok":
        return f"{where}   {row['status']}"
    return (f"{where}   minicnn x{row['minicnn_slowdown']:.2f}   torch x{row['torch_slowdown']:.2f}   "
            f"ratio {row['ratio']:.2f} ({row['ratio_min']:.2f}-{row['ratio_max']:.2f})")

