"""Run the pieces of one kernel on several cores at once.

A convolution on the CPU is a loop over pieces (tiles of im2col columns,
chunks of Winograd tiles), each a Numba kernel that lays out data and a
GEMM that consumes it. Two ways to use two cores:

* let BLAS split each GEMM across the cores, and run the layout kernels
  on one core in between: the layout work does not scale, and the GEMMs
  of small pieces split poorly;
* give each core whole pieces, kernel and GEMM, with BLAS single-threaded
  inside: everything scales, and each piece's data stays in the cache of
  the core that made it.

This module does the second, for every parallel kernel (pooling, batch
norm, depthwise convolution and the optimizer too, through
``parallel_parts``). ``run_in_parallel(work, groups)`` calls
``work(group)`` for each group: the first on the calling thread, the
others on the threads of one pool (``_Team``), while BLAS is limited to
one thread (through threadpoolctl). The threads run at the same time
because the Numba kernels (compiled ``nogil=True``) and NumPy's matmul
release the GIL.

One pool, and threads that spin
-------------------------------
Every parallel kernel goes through this one pool. Numba's ``prange`` has
a pool of its own, and OpenBLAS another: with three pools, threads just
woken (or spinning) in one take the cores the next kernel's threads
need. Measured on 2 cores, same process, alternating: a ResNet-18
training step took 238 ms with a plain thread pool for the convolutions
plus Numba's and BLAS's pools, 208 ms with Numba and BLAS single-threaded
(so the convolutions alone used two cores), and 172 ms with this pool
running everything (torch: 108 ms); LeNet-5 18.1, 11.9 and 10.4 ms.

The pool's threads do not go to sleep as soon as their work is done:
they busy-wait (``spin.py``) for ``SPIN_SECONDS`` first, as OpenMP's do,
and the caller busy-waits for their results the same way. A thread that
sleeps lets the VM halt its core, and waking it costs 0.05-0.3 ms, where
a call to a spinning thread costs ~0.02 ms. Inside a training step the
calls come so close together that this matters less than one would
think (LeNet-5 13.8 ms without spinning, 13.1 with 0.2 or 2 ms of it;
ResNet-18 no change beyond the noise); a call that follows other work
of 0.5 ms gains 0.1-0.3 ms. Spinning is also why a second pool must not
run beside this one: with Numba's ``prange`` pool still in use, the
same LeNet-5 step took 35 ms. So no kernel here uses ``prange``, and
the pool runs only where BLAS does not spin: when it is single-threaded,
or when OpenBLAS was loaded with a short ``OPENBLAS_THREAD_TIMEOUT``
(``import minicnn`` before NumPy sets one). Otherwise ``thread_count()``
is 1 and every kernel runs on the calling thread, with BLAS's threads
inside each GEMM.

The pool is used by one caller at a time: a call from another thread
while it is busy (or from inside one of its groups) runs its groups one
after another on that thread.
"""
import contextlib
import functools
import itertools
import os
import threading
import time

import numpy

from .spin import spin_until

#: How long the pool's threads and the caller busy-wait before sleeping:
#: long enough to bridge the gap between two parallel calls of a training
#: step, short beside OpenMP's default (200 ms for Intel's).
SPIN_SECONDS = 1e-3
#: Parts per thread in ``parallel_parts``: more balance the load better
#: when a core is shared, each costs a call (LeNet-5, ResNet-18 and
#: MobileNetV2 steps measured the same with 1, 2 and 4).
PARTS_PER_THREAD = 2
#: Fewest elements a kernel should touch before ``parallel_parts`` splits
#: it: handing work to another thread costs ~20 us, and each part a call.
#: The global average pool of 8x512x7x7 (200K elements) took 0.03 ms on
#: one thread and 0.16 ms split in 8 parts.
PARALLEL_SIZE = 1 << 18


@functools.lru_cache(maxsize=None)
def _blas_controller():
    """threadpoolctl's view of the loaded BLAS libraries (None without it)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


@functools.lru_cache(maxsize=None)
def _blas_libraries():
    """threadpoolctl's controllers of the loaded BLAS libraries, found once
    (selecting them costs ~15 us, and every kernel call asks)."""
    controller = _blas_controller()
    return () if controller is None else tuple(controller.select(user_api="blas").lib_controllers)


def _blas_spins():
    """Whether some loaded BLAS has several threads that busy-wait after
    each call (see the module docstring)."""
    if _blas_controller() is None:
        return True
    for library in _blas_libraries():
        short_spin = library.internal_api == "openblas" and "OPENBLAS_THREAD_TIMEOUT" in os.environ
        if library.num_threads > 1 and not short_spin:
            return True
    return False


@contextlib.contextmanager
def _single_threaded_blas():
    """BLAS limited to one thread inside, its thread counts restored after:
    threadpoolctl's ``limit`` does the same, at ~25 us a call."""
    changed = [(library, library.num_threads) for library in _blas_libraries() if library.num_threads != 1]
    for library, _ in changed:
        library.set_num_threads(1)
    try:
        yield
    finally:
        for library, threads in changed:
            library.set_num_threads(threads)


@functools.lru_cache(maxsize=None)
def _cores():
    return os.cpu_count() or 1


def thread_count():
    """Threads to spread one kernel over: Numba's thread count (the
    ``NUMBA_NUM_THREADS`` / ``numba.set_num_threads`` setting, which the
    benchmarks and tests set alongside BLAS's), or 1 where BLAS's threads
    would spin on those cores."""
    import numba
    threads = max(1, min(numba.get_num_threads(), _cores()))
    return 1 if threads > 1 and _blas_spins() else threads


def split(items, parts):
    """``items`` cut into at most ``parts`` runs of consecutive items, as
    even as possible."""
    parts = max(1, min(parts, len(items)))
    size, extra = divmod(len(items), parts)
    runs, start = [], 0
    for i in range(parts):
        stop = start + size + (i < extra)
        runs.append(items[start:stop])
        start = stop
    return runs


class _Team:
    """``workers`` threads that run the groups of ``run`` beside the
    caller. Worker i waits for job number ``posted[i]`` and reports it
    done in ``done[i]``; it spins on the counter first and then sleeps on a
    lock, which ``run`` releases for every job (so nothing is missed when
    the spin gives up just before the job arrives)."""

    def __init__(self, workers):
        self.workers = workers
        self.pid = os.getpid()
        self.busy = threading.Lock()
        self.counters = numpy.zeros(2 * workers, numpy.int64)   # posted[i] at 2i, done[i] at 2i + 1
        self.go = [threading.Lock() for _ in range(workers)]
        self.finished = [threading.Lock() for _ in range(workers)]
        for lock in self.go + self.finished:
            lock.acquire()
        self.jobs = [None] * workers
        self.results = [None] * workers
        self.spins = _spins_per(SPIN_SECONDS)
        self.threads = [threading.Thread(target=self._serve, args=(i,), daemon=True,
                                         name=f"minicnn-{i + 1}") for i in range(workers)]
        for thread in self.threads:
            thread.start()

    def _serve(self, i):
        job = 0
        while True:
            job += 1
            spin_until(self.counters, 2 * i, job, self.spins)
            self.go[i].acquire()
            work, group = self.jobs[i]
            try:
                self.results[i] = (True, work(group))
            except BaseException as error:  # handed to the caller, raised there
                self.results[i] = (False, error)
            self.jobs[i] = None
            self.counters[2 * i + 1] = job
            self.finished[i].release()

    def run(self, work, groups):
        """[work(group) for group in groups], groups[1:] on the workers."""
        others = len(groups) - 1
        for i in range(others):
            self.jobs[i] = (work, groups[i + 1])
            self.counters[2 * i] += 1
            self.go[i].release()
        try:
            first = work(groups[0])
        finally:
            for i in range(others):
                spin_until(self.counters, 2 * i + 1, self.counters[2 * i], self.spins)
                self.finished[i].acquire()
        results = [first]
        for i in range(others):
            ok, result = self.results[i]
            self.results[i] = None
            if not ok:
                raise result
            results.append(result)
        return results


@functools.lru_cache(maxsize=None)
def _spins_per(seconds):
    """Polls of ``spin_until`` that take about ``seconds``."""
    flag = numpy.zeros(1, numpy.int64)
    spin_until(flag, 0, 1, 1)                    # compile or load
    polls = 20000
    start = time.perf_counter()
    spin_until(flag, 0, 1, polls)
    elapsed = max(time.perf_counter() - start, 1e-9)
    return max(1, int(seconds * polls / elapsed))


_team = None


def _get_team(workers):
    """The pool, with at least ``workers`` threads (a new one after a
    fork: the child has none of the parent's threads)."""
    global _team
    if _team is None or _team.workers < workers or _team.pid != os.getpid():
        _team = _Team(workers)
    return _team


def run_in_parallel(work, groups, blas=True):
    """[work(group) for group in groups], the groups on separate threads.
    ``blas``: the groups call BLAS, which is then single-threaded. One
    group, or a pool already busy, runs here, one group after another."""
    if len(groups) <= 1:
        return [work(group) for group in groups]
    team = _get_team(len(groups) - 1)
    if not team.busy.acquire(blocking=False):
        return [work(group) for group in groups]
    try:
        if not blas:
            return team.run(work, groups)
        with _single_threaded_blas():
            return team.run(work, groups)
    finally:
        team.busy.release()


def parallel_parts(kernel, size, *args):
    """kernel(*args, part, parts) for every part in range(parts), shared
    out among the threads as they come free, where ``size`` (the elements
    the kernel touches) is large enough for threads to pay; else
    kernel(*args, 0, 1). The kernel takes its share of its tasks with
    ``loops._share``.

    Each thread takes ``PARTS_PER_THREAD`` parts on average, claimed one
    at a time, not a fixed share: a thread that shares its core with
    another's (torch's OpenMP threads spin ~20 ms after each call) then
    does fewer parts instead of holding up the others."""
    threads = thread_count() if size >= PARALLEL_SIZE else 1
    if threads == 1:
        kernel(*args, 0, 1)
        return
    parts = PARTS_PER_THREAD * threads
    claim = itertools.count().__next__          # atomic: it runs under the GIL

    def work(_):
        part = claim()
        while part < parts:
            kernel(*args, part, parts)
            part = claim()
    run_in_parallel(work, [None] * threads, blas=False)


def matmul_into(out, a, b, add):
    """out = a @ b, or out += a @ b when ``add``: a thread's partial sum
    of products. The first product goes straight into ``out``: on small
    images a weight gradient (O x K) is larger than a tile's work, and a
    zeroed ``out`` plus a temporary to add cost two more passes over it
    (16x512x2x2 3x3 weight gradient: 5.4 -> 3.5 ms)."""
    if add:
        out += numpy.matmul(a, b)
    else:
        numpy.matmul(a, b, out=out)


def sum_in_place(partials):
    """The sum of the threads' partial results (arrays of one shape), added
    into the first one: they can be MBs each (a weight gradient)."""
    total = partials[0]
    for partial in partials[1:]:
        total += partial
    return total
