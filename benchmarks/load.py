"""How busy the machine is apart from the benchmark: timings taken while
other processes compete for the cores are not minicnn's or torch's speed
(under load, torch's LeNet-5 step once took 407-940 ms instead of 7).

Method
------
A *sample* (``take_sample``) reads three clocks at once: wall time, the
CPU time spent on the cores this process may run on (the ``cpuN`` lines
of ``/proc/stat``, restricted to ``os.sched_getaffinity``: user, nice,
system, irq, softirq and steal, which is time the hypervisor gave to
other machines), and this process's own CPU time including its children
that have ended (``os.times``: the memory and import subprocesses, the
busy processes of ``contention.py`` once stopped). Between two samples,

    other cores = (machine CPU time - own CPU time) / wall time

is how many of our cores other processes kept busy on average.
``LoadMeter`` measures it from its creation to each call. ``run.py``
measures it for one second before the run (nothing of ours runs then),
for each case, and over the whole run; ``assess`` turns these and the
load averages into a verdict: the results are unreliable when other
processes used more than ``OTHER_CORES_LIMIT`` cores before or during
the run.

Caveats: a child of ours still running at a sample counts as another
process until it ends (the harness samples when none runs). Without
``/proc/stat`` (macOS, Windows), only the 1-minute load average before
the run is judged, against ``LOAD_AVERAGE_LIMIT``. A container limited
by a CPU quota rather than by a cpuset sees its whole cpuset's load.
"""
import os
import time
from dataclasses import dataclass

#: Other processes may use this many of our cores, on average, before
#: the timings are marked unreliable: a quarter of a core already takes
#: one core from a 4-thread run a quarter of the time.
OTHER_CORES_LIMIT = 0.25
#: Without /proc/stat: the 1-minute load average (all the machine's
#: runnable threads, ours excluded since we idle before the run) allowed.
LOAD_AVERAGE_LIMIT = 0.5
#: Seconds the load is measured before the run, with nothing of ours running.
BEFORE_S = 1.0


@dataclass(frozen=True)
class Sample:
    wall_s: float
    machine_s: float | None  # None where /proc/stat cannot be read
    own_s: float


def cores():
    """The cores this process may run on."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count()))


def machine_cpu_seconds(cpus, path="/proc/stat"):
    """CPU seconds spent on ``cpus`` since boot by everything (idle and
    iowait excluded, steal included); None where ``path`` is unreadable."""
    ticks_per_s = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    wanted = {f"cpu{n}" for n in cpus}
    busy = 0
    try:
        with open(path) as f:
            for line in f:
                fields = line.split()
                if fields and fields[0] in wanted:
                    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
                    busy += user + nice + system + irq + softirq + steal
    except (OSError, ValueError):
        return None
    return busy / ticks_per_s


def take_sample():
    own = os.times()
    return Sample(wall_s=time.monotonic(), machine_s=machine_cpu_seconds(cores()),
                  own_s=own.user + own.system + own.children_user + own.children_system)


def other_cores(first, last):
    """Cores other processes kept busy on average between two samples
    (None without /proc/stat or over no time)."""
    wall = last.wall_s - first.wall_s
    if first.machine_s is None or last.machine_s is None or wall <= 0:
        return None
    others = (last.machine_s - first.machine_s) - (last.own_s - first.own_s)
    return max(others, 0.0) / wall


class LoadMeter:
    """Cores other processes used since the meter was made: ``meter()``.
    ``sample`` is the clock (``take_sample``; the tests pass a fake)."""

    def __init__(self, sample=None):
        self._sample = sample or take_sample
        self._first = self._sample()

    def __call__(self):
        return other_cores(self._first, self._sample())


def measure_before(seconds=None, sample=None):
    """Cores other processes used during ``seconds`` (``BEFORE_S``) of
    our idling."""
    meter = LoadMeter(sample)
    time.sleep(BEFORE_S if seconds is None else seconds)
    return meter()


def load_average():
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def assess(before, during, load_average_before, load_average_after, core_count,
           limit=OTHER_CORES_LIMIT, load_limit=LOAD_AVERAGE_LIMIT):
    """The verdict on a run: a dict with the measurements, ``reliable``
    and, when it is not, ``reasons`` (sentences saying what competed)."""
    reasons = []
    for when, value in (("before", before), ("during", during)):
        if value is not None and value > limit:
            reasons.append(f"other processes kept {value:.2f} of the {core_count} cores busy {when} the run "
                           f"(limit {limit:.2f})")
    if before is None and load_average_before is not None and load_average_before > load_limit:
        reasons.append(f"the load average was {load_average_before:.2f} before the run (limit {load_limit:.2f}; "
                       f"no /proc/stat to measure other processes directly)")
    return {"cores": core_count, "other_cores_before": before, "other_cores_during": during,
            "load_average_before": load_average_before, "load_average_after": load_average_after,
            "limit": limit, "reliable": not reasons, "reasons": reasons}


def busy_elsewhere(value, limit=OTHER_CORES_LIMIT):
    """Whether a case's own measurement says that it ran under load."""
    return value is not None and value > limit
