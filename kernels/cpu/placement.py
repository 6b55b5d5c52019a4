"""One core each: where ``threads.py``'s pool runs its threads.

Why
---
A parallel call is split evenly: with 2 threads on 2 cores, each does half.
If the kernel puts both threads on one core, the call takes twice as long,
and on this project's VM (2 vCPUs under KVM) it did so often. A thread
that sleeps and is woken tends to be put on the core of the thread that
woke it, busy or not, while the other core, idle, has been halted by the
hypervisor; once two threads share a core, the kernel left them there for
whole calls. Recorded with ``sched_getcpu`` in each group of a 5x5
convolution (8 x 16 x 28x28 -> 32, 2 threads), a call 30 ms after the
last: the groups shared a core in 11 of 15 calls (2.3 ms a call), and in
0 of 15 back to back (1.3 ms). Any pause does it: a data loader between
training steps, a user's code between two inferences.

What
----
So where the pool's threads are as many as the cores the process may run
on (the default, ``set_num_threads``), each worker is pinned to a core of
its own (``sched_setaffinity``), and the caller keeps the one left,
softly: a call that finds its caller on a worker's core first moves the
caller to the free one (pinned for a moment, then its own cores given
back, so that it stays where it landed but is not bound; a thread or
process it starts later inherits the cores it had), and does the same
when it ends, since a worker's wake-up of the caller (or its hand-over
of the GIL) often puts the caller on the worker's core. Every layer of the
conv sweep (``benchmarks/conv_sweep.py``) timed as the benchmarks time
it, the call after an untimed one 30 ms after the last, in processes
pinned and not, alternating, 3 pairs: 0.77x the time unpinned (geometric
mean of 59 layers; small layers 0.52-0.7, long ones 0.9-1.0). Back to
back, and whole training steps (ResNet-18, MobileNetV2, EfficientNet-B0)
and batch-1 inferences: the same (0.98-1.04). What is left of the gap to
back-to-back calls (the 5x5 layer above: 2.3 ms pinned, 1.1 back to
back) is the hypervisor's: a vCPU woken from a halt runs slower for a
few ms, in every thread, pinned or not.

On a busy machine a pinned worker cannot leave a core that another
process keeps busy; so once the pool sees signs of one
(``threads._Pool._lost_core``), for ``threads.LOOSE_SECONDS``, the
workers run on any core. Beside 1 or 2 busy processes
(``benchmarks/contention.py``, 2 runs each way) the slowdowns then
matched the unpinned pool's: the ResNet-18 step 1.68-1.76x against
1.66-1.77x beside one, 2.59-2.65x against 2.57-2.65x beside two; the conv
layer 1.66-1.70x against 1.59-1.66x, 1.98-2.20x against 2.12-2.15x. Let
loose for only the 0.1 s of the spins' back-off, the step's was
1.74-2.33x beside one.

``MINICNN_PIN_THREADS=0`` in the environment turns it off (read when the
pool starts, as ``OMP_PROC_BIND`` is by OpenMP runtimes). With fewer
threads than cores nothing is pinned either: the cores not used may
be another process's (two processes of 2 threads on 4 cores, say), and
pinned workers of several processes would pile onto the same cores. Nor
where the system cannot say which core a thread is on (no
``sched_getcpu``: not Linux) or refuses the pinning.
"""
import ctypes
import os


def _sched_getcpu():
    """glibc's ``sched_getcpu`` (the core the calling thread is on, read
    without a system call where the CPU can say), or None."""
    try:
        function = ctypes.CDLL(None, use_errno=True).sched_getcpu
    except (AttributeError, OSError, TypeError):    # no such function; Windows has no CDLL(None)
        return None
    function.restype, function.argtypes = ctypes.c_int, []
    return function


_getcpu = _sched_getcpu()


def current_core():
    """The core the calling thread runs on now, or None where unknown."""
    if _getcpu is None:
        return None
    core = _getcpu()
    return core if core >= 0 else None


class Placement:
    """Cores for a pool of ``workers`` threads beside its caller: worker i
    (1 <= i <= workers) on ``cores[i]``, the caller on ``cores[0]``, where
    the caller's core is the one it runs on now. ``cores`` is None (no
    pinning: module docstring) unless the threads are exactly as many as
    the cores this process may use, or where ``MINICNN_PIN_THREADS`` is 0.

    While the machine is busy with other work (``threads._Pool`` backs
    off), the workers are let loose (``loosen``), for the kernel to share
    the cores out among all the threads; ``bind`` pins them again. Each
    worker applies a change itself, when it next takes a call
    (``settle``): ``version`` counts the changes."""

    def __init__(self, workers):
        self.cores, self.bound, self.version = None, False, 0
        if os.environ.get("MINICNN_PIN_THREADS", "1").strip() == "0":
            return
        try:
            self.allowed = frozenset(os.sched_getaffinity(0))
        except AttributeError:          # not on Linux
            return
        here = current_core()
        if here is None or here not in self.allowed or len(self.allowed) != workers + 1:
            return
        self.cores = [here] + sorted(self.allowed - {here})
        self.worker_cores = frozenset(self.cores[1:])
        self.bind()

    def bind(self):
        """Pin the workers, each to its core, from their next call."""
        if self.cores is not None and not self.bound:
            self.bound, self.version = True, self.version + 1

    def loosen(self):
        """Let the workers run on any of the process's cores, from their
        next call."""
        if self.bound:
            self.bound, self.version = False, self.version + 1

    def settle(self, index, seen):
        """Run on worker ``index``'s thread before it does a group, with
        the ``version`` it last applied (0 at first): apply the latest, if
        newer (a refusal leaves the thread as it was); returns it."""
        version = self.version
        if version != seen:
            try:
                os.sched_setaffinity(0, {self.cores[index]} if self.bound else self.allowed)
            except OSError:
                pass
        return version

    def step_aside(self):
        """Run by the caller before it posts a call and when the call is
        done (a worker that woke it, or handed it the GIL, may have had it
        put on the worker's core): if the workers are
        pinned and it is on one's core, move it to a core no worker has,
        then give it back its own cores (it stays where it is until the
        kernel moves it)."""
        if not self.bound or current_core() not in self.worker_cores:
            return
        try:
            own = os.sched_getaffinity(0)
            free = own - self.worker_cores
            if free:
                os.sched_setaffinity(0, free)
                os.sched_setaffinity(0, own)
        except OSError:
            pass
