"""minicnn's one thread pool: run the pieces of one kernel on several cores.

A convolution on the CPU is a loop over pieces (tiles of im2col columns,
chunks of Winograd tiles), each a Numba kernel that lays out data and a
GEMM that consumes it. Two ways to use several cores:

* let BLAS split each GEMM across the cores, and run the layout kernels
  on one core in between: the layout work does not scale, and the GEMMs
  of small pieces split poorly;
* give each core whole pieces, kernel and GEMM, with BLAS single-threaded
  inside: everything scales, and each piece's data stays in the cache of
  the core that made it.

This module does the second, for every parallel kernel (convolution,
pooling, batch norm, activations, the optimizer). ``run_in_parallel(work,
groups)`` calls ``work(group)`` for each group: the first on the calling
thread, group i on the pool's thread i. The threads run at the same time
because the Numba kernels (compiled ``nogil=True``) and NumPy's matmul
release the GIL. ``parallel_parts`` hands out a kernel's parts one at a
time, so a thread that loses its core to another process does fewer parts
instead of holding up the others.

One setting
-----------
``set_num_threads(n)`` is the number of threads for all of it, as torch's
is: minicnn's pool gets n - 1 threads beside the caller, and NumPy's BLAS
is made single-threaded, once, the first time a kernel asks
(``get_num_threads``): minicnn splits the GEMMs itself, and a second pool
(BLAS's threads spin after each call) would fight this one for the cores.
Unlike torch, which leaves NumPy alone, this changes NumPy's BLAS for the
whole process. The default is ``OMP_NUM_THREADS`` where it is set (torch
reads it too), else the cores this process may run on. Nothing here runs
at import, and Numba's own thread pool (``prange``) is never started.

Spinning, then asleep
---------------------
A call is posted by number (``_Pool.posted``); a worker that has done its
group spins on that number for ``KEEP_WARM_SECONDS`` (``spin.py``), so
that the calls of a forward pass, microseconds of Python apart, find it
awake: on this project's VM a call through a standard executor, whose
threads sleep between calls, cost 65-107 us of waking, through the spin
12-40. The caller spins ``WAIT_SECONDS`` for the workers to finish, then
sleeps. Both spins yield the core every few reads, and both end soon: an
idle process uses no CPU, and on a loaded machine a spinning thread does
not keep a core from the thread it waits for for long.

With as many threads as cores, each worker runs on a core of its own and
the caller keeps off theirs (``placement.py``): two threads on one core
take twice as long over a call split evenly between them; a caller
that a worker's wake-up put on the worker's core steps off again when
the call ends. On a busy machine (``_Pool._lost_core``) the workers are
let loose for ``LOOSE_SECONDS``.

Interrupted
-----------
Ctrl-C during a parallel call is held back (SIGINT blocked on the main
thread, and for good on the pool's) until the call's groups are done,
then raised as ``KeyboardInterrupt``: an exception raised at an arbitrary
point inside the pool's hand-shake could leave it hung. A call that fails
in any group (or is interrupted where the signal could not be held back)
lets no group start that had not, waits for those that have (they write
into the caller's arrays), and re-raises: the pool is then idle and the
next call is correct.

The pool is used by one caller at a time: a call from another thread
while it is busy (or from inside one of its groups) runs its groups one
after another on that thread.
"""
import functools
import itertools
import numbers
import os
import resource
import signal
import threading
import time

import numpy

from . import placement

#: Parts per thread in ``parallel_parts``: more balance the load better
#: when a core is shared, each costs a call.
PARTS_PER_THREAD = 2
#: Fewest elements a kernel should touch before ``parallel_parts`` splits
#: it: handing work to another thread costs ~20-50 us, and each part a call.
PARALLEL_SIZE = 1 << 18

_num_threads = None     # set_num_threads' value; None until set or first asked
_settings_lock = threading.Lock()


def _default_threads():
    """OMP_NUM_THREADS where it is a positive int, else the cores this
    process may run on."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:          # not on Linux
        return os.cpu_count() or 1


@functools.lru_cache(maxsize=None)
def _numpy_blas():
    """threadpoolctl's controllers of the BLAS that NumPy calls, found once
    (a wheel's lies in the numpy or numpy.libs folder; elsewhere, say a
    system NumPy, every BLAS loaded); () without threadpoolctl."""
    environment = dict(os.environ)
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return ()
    finally:
        # threadpoolctl (3.8) sets KMP_DUPLICATE_LIB_OK when imported; the
        # process's environment is the user's, not minicnn's to change.
        for name in set(os.environ) - set(environment):
            del os.environ[name]
    libraries = ThreadpoolController().select(user_api="blas").lib_controllers
    numpy_prefix = os.path.join(os.path.dirname(os.path.dirname(numpy.__file__)), "numpy")
    own = tuple(lib for lib in libraries if lib.filepath.startswith(numpy_prefix))
    return own or tuple(libraries)


def _apply(threads):
    """Make ``threads`` the setting: BLAS single-threaded (minicnn's pool
    splits the GEMMs), the pool resized on its next use. (glibc's malloc
    was tuned at ``import minicnn``: ``allocator.py``.)"""
    global _num_threads
    for library in _numpy_blas():
        if library.num_threads != 1:
            library.set_num_threads(1)
    _num_threads = threads


def set_num_threads(n):
    """Use ``n`` threads (n >= 1) for minicnn's CPU kernels, as
    ``torch.set_num_threads``. NumPy's BLAS is made single-threaded for the
    process: minicnn shares out its GEMMs among its own threads."""
    if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int, got {n!r}")
    with _settings_lock:
        _apply(int(n))


def get_num_threads():
    """The threads minicnn's CPU kernels use (``set_num_threads``)."""
    if _num_threads is None:
        with _settings_lock:
            if _num_threads is None:
                _apply(_default_threads())
    return _num_threads


def thread_count():
    """Threads to spread one kernel over: ``get_num_threads()``."""
    return get_num_threads()


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


#: How long a worker spins for the next call after it has done its group,
#: before it sleeps: longer than the gaps between the calls of a forward or
#: backward pass, short enough that an idle process soon uses no CPU.
KEEP_WARM_SECONDS = 2e-3
#: How long the caller spins for the workers to finish before it sleeps:
#: long enough for the last group of a call that shares its work evenly,
#: short enough that on a loaded machine the caller soon gives its core to
#: a worker that waits for one.
WAIT_SECONDS = 2e-4
#: A spin that finds it lost its core for longer than this asks why
#: (``_Pool._lost_core``) ...
PREEMPTED_SECONDS = 2e-4
#: ... and two such losses to other threads this close together mean a
#: busy machine: no thread of the pool spins again for ``BACK_OFF_SECONDS``,
#: since a thread that spins there takes time from the ones that work.
BUSY_WITHIN_SECONDS = 0.02
BACK_OFF_SECONDS = 0.1
#: ... and the workers, pinned each to a core of its own (``placement.py``),
#: are let loose for this long after the sign that loosened them (a pinned
#: thread cannot leave a core that another process keeps busy), then
#: pinned again: signs seen while loose do not prolong it, since loose
#: threads of the pool may share a core and give them themselves.
LOOSE_SECONDS = 1.0


class _Call:
    """One parallel call, as the workers see it: ``work(groups[i])`` for
    worker i (the caller does group 0), its results and errors by group,
    and ``cancelled``: a list that a failed call appends True to, so that
    workers that have not started skip their group (and long work can stop
    early)."""
    __slots__ = ("number", "work", "groups", "results", "errors", "cancelled")

    def __init__(self, number, work, groups, cancelled):
        self.number, self.work, self.groups, self.cancelled = number, work, groups, cancelled
        self.results = [None] * len(groups)
        self.errors = [None] * len(groups)


class _Pool:
    """``workers`` threads for one process (a forked child has none of its
    parent's threads) and the lock of its one caller. ``posted`` holds the
    latest call's number, ``finished`` counts the groups the workers have
    done, ``caller_asleep`` is 1 while the caller sleeps (``spin.py``)."""

    def __init__(self, workers):
        from . import spin                          # Numba's: imported (and compiled) on first use
        self.spin = spin
        self.workers = workers
        self.pid = os.getpid()
        self.busy = threading.Lock()
        self.posted = numpy.zeros(1, numpy.int64)
        self.finished = numpy.zeros(1, numpy.int64)
        self.caller_asleep = numpy.zeros(1, numpy.int64)
        self.call = None
        self.posted_changed = threading.Condition()   # a sleeping worker waits on it
        self.caller_woken = threading.Condition()     # a sleeping caller waits on it
        self.workers_asleep = 0
        self.closed = False
        self.keep_warm_spins = self.spin.spins_for(KEEP_WARM_SECONDS)
        self.wait_spins = self.spin.spins_for(WAIT_SECONDS)
        self.gap = self.spin.cycles_for(PREEMPTED_SECONDS)
        self.spin_again_at = 0.0
        self.last_lost_core = self.busy_at = float("-inf")
        self.placement = placement.Placement(workers)
        for index in range(1, workers + 1):
            threading.Thread(target=self._work, args=(index,), name=f"minicnn-{index}", daemon=True).start()

    def _spin_for_call(self, seen, finished=False):
        """The latest call's number once it is not ``seen``, or ``seen``
        if none came while this worker spun; with ``finished``, first count
        the group done (and wake the caller if it sleeps)."""
        spins, switches = self._spins(self.keep_warm_spins), _switches()

        def spin_on():
            return self.spin.wait_for_change(self.posted, seen, spins, self.gap)
        if finished:
            latest = self.spin.finish_and_wait(self.finished, self.caller_asleep, self.posted, seen, spins, self.gap)
            if latest == self.spin.WAKE_CALLER:
                with self.caller_woken:
                    self.caller_woken.notify()
                latest = spin_on()
        else:
            latest = spin_on()
        latest = self._past_the_host(latest, switches, spin_on)
        return seen if latest == self.spin.PREEMPTED else latest

    def _spins(self, spins):
        """``spins``, or 0 while the pool backs off a busy machine."""
        return spins if time.perf_counter() >= self.spin_again_at else 0

    def _past_the_host(self, result, switches, spin_on):
        """A spin's ``result``; while that is PREEMPTED by something that
        is no reason to stop (``_lost_core``), ``spin_on()``'s instead.
        PREEMPTED: the machine is busy, stop spinning."""
        while result == self.spin.PREEMPTED and not self._lost_core(switches):
            switches = _switches()      # what the next gap is asked against: a switch already seen is no news
            result = spin_on()
        return result

    def _lost_core(self, switches):
        """After a spin saw a gap in its clock: whether to stop spinning.
        The gap may be the virtual machine's host running something else on
        this virtual core (the thread's count of switches unchanged: spin
        on), or a daemon that ran for a moment (spin on), or a machine busy
        with other work: a second switch within ``BUSY_WITHIN_SECONDS`` of
        the last, and then no thread spins for ``BACK_OFF_SECONDS``."""
        if switches is not None and _switches() == switches:
            return False
        now = time.perf_counter()
        busy = now - self.last_lost_core < BUSY_WITHIN_SECONDS
        self.last_lost_core = now
        if busy:
            self.spin_again_at = now + BACK_OFF_SECONDS
            # Loose, the pool's own threads may share a core and take it
            # from each other: no sign of other work, so it does not put
            # off binding them again; a machine still busy then is seen
            # anew within a call or two.
            if self.placement.bound:
                self.busy_at = now
                self.placement.loosen()
        return busy

    def _work(self, index):
        """Worker ``index``: do group ``index`` of each call that has one,
        spin for the next call, sleep when none comes."""
        _block_ctrl_c()
        seen = placed = 0
        latest = self._spin_for_call(seen)
        while True:
            if latest == seen:
                with self.posted_changed:
                    # Counted as asleep before the last look at ``posted``:
                    # ``run`` bumps it, then looks at ``workers_asleep``
                    # (both under the GIL), so either this look sees the
                    # bump or ``run`` sees this worker and wakes it.
                    self.workers_asleep += 1
                    while self.posted[0] == seen and not self.closed:
                        self.posted_changed.wait()
                    self.workers_asleep -= 1
            call = self.call                # the latest call, numbered at least as ``posted`` says
            if call is None or call.number == seen:     # ``posted`` moved without a call: closed
                return
            seen = call.number
            if index >= len(call.groups):
                latest = self._spin_for_call(seen)
                continue
            placed = self.placement.settle(index, placed)
            if not call.cancelled:
                try:
                    call.results[index] = call.work(call.groups[index])
                except BaseException as error:      # raised on the caller's thread
                    call.errors[index] = error
            latest = self._spin_for_call(seen, finished=True)

    def run(self, work, groups, cancelled):
        """[work(group) for group in groups]: group 0 here, group i on
        worker i; returns once every group is done."""
        if time.perf_counter() - self.busy_at >= LOOSE_SECONDS:
            self.placement.bind()       # the machine has not looked busy for a while
        self.placement.step_aside()
        call = _Call(int(self.posted[0]) + 1, work, groups, cancelled)
        target = int(self.finished[0]) + len(groups) - 1
        self.call = call
        self.posted[0] = call.number
        if self.workers_asleep:
            with self.posted_changed:
                self.posted_changed.notify_all()
        try:
            call.results[0] = work(groups[0])
        except BaseException:
            cancelled.append(True)
            self._wait(target)
            raise
        self._wait(target)
        for error in call.errors:
            if error is not None:
                raise error
        return call.results

    def _wait(self, target):
        """Until the workers have finished ``target`` groups: a spin, then
        sleep. A second Ctrl-C while waiting cannot cut the wait short: the
        workers write into the caller's arrays."""
        spins, switches = self._spins(self.wait_spins), _switches()

        def spin_on():
            return self.spin.wait_for(self.finished, target, spins, self.gap)
        if self._past_the_host(spin_on(), switches, spin_on) != 1:
            with self.caller_woken:
                while not self.spin.caller_sleeps(self.caller_asleep, self.finished, target):
                    self.caller_woken.wait()
                self.caller_asleep[0] = 0
        # Woken by a worker (here, or when it handed back the GIL), the
        # caller is often put on that worker's core, where the worker spins
        # for the next call: the two would take the core from each other
        # (and look like a busy machine) until the next call moved it off.
        self.placement.step_aside()

    def close(self):
        """Let the threads end: a larger pool replaces this one. Called
        with ``busy`` held, so that no call is under way or starts after."""
        with self.posted_changed:
            self.closed = True
            self.posted[0] += 1
            self.posted_changed.notify_all()


def _switches():
    """How many times the kernel has taken the calling thread off its core
    for another thread (``getrusage``'s involuntary context switches); None
    where the system does not count them by thread."""
    return resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw if _THREAD_USAGE else None


_THREAD_USAGE = hasattr(resource, "RUSAGE_THREAD")
_pool = None


def _get_pool(workers):
    """The pool, with at least ``workers`` threads (a new one after a
    fork)."""
    global _pool
    if _pool is None or _pool.workers < workers or _pool.pid != os.getpid():
        old, _pool = _pool, _Pool(workers)
        # The old pool's threads end, unless another thread's call is using
        # it (a race with set_num_threads): then they are left asleep.
        if old is not None and old.pid == os.getpid() and old.busy.acquire(blocking=False):
            old.close()
            old.busy.release()
    return _pool


def run_in_parallel(work, groups, cancelled=None):
    """[work(group) for group in groups], the groups on separate threads.
    One group, or a pool already busy, runs here, one group after another.
    ``cancelled``: a list that a failed call appends True to before it
    waits for the groups still running, so that long work can stop early;
    groups not yet started then do not start.
    An exception in any group (the first, in group order) or an interrupt
    is raised here once no group is running any more."""
    if len(groups) <= 1:
        return [work(group) for group in groups]
    pool = _get_pool(len(groups) - 1)
    acquired = False
    held_back = _hold_back_ctrl_c()
    try:
        acquired = pool.busy.acquire(blocking=False)
        if not acquired or pool.closed:
            return [work(group) for group in groups]
        return pool.run(work, groups, [] if cancelled is None else cancelled)
    finally:
        if acquired:
            pool.busy.release()
        if held_back is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, held_back)   # a Ctrl-C held back is raised now


def _hold_back_ctrl_c():
    """On the main thread, block SIGINT until the call has settled; returns
    the signal mask to restore, or None (elsewhere, or without
    pthread_sigmask). A KeyboardInterrupt raised at an arbitrary point
    inside the executor's or threading's own code (between a lock's
    acquire and its try, say) can leave a lock held or a result unread,
    and a later call hung (it did, about once in a few hundred interrupts
    under load). Held back, a Ctrl-C arrives when the call's groups are
    done, ~a kernel call later; the pool's threads block SIGINT for good
    (``_Pool``), so that the signal waits for the main thread."""
    if not _CAN_MASK or threading.current_thread() is not threading.main_thread():
        return None
    return signal.pthread_sigmask(signal.SIG_BLOCK, _CTRL_C)


def _block_ctrl_c():
    """Run in each of the pool's threads as it starts: SIGINT is for the
    main thread."""
    if _CAN_MASK:
        signal.pthread_sigmask(signal.SIG_BLOCK, _CTRL_C)


_CAN_MASK = hasattr(signal, "pthread_sigmask")
_CTRL_C = {signal.SIGINT}


def parts_for(size, worth=None):
    """The number of parts ``parallel_parts(kernel, size, ..., worth=worth)``
    cuts its work into: ``PARTS_PER_THREAD`` a thread where ``size`` is
    worth the threads, else 1. A kernel whose tasks should divide evenly
    among the parts asks this first."""
    threads = thread_count() if size >= (PARALLEL_SIZE if worth is None else worth) else 1
    return 1 if threads == 1 else PARTS_PER_THREAD * threads


def parallel_parts(kernel, size, *args, worth=None):
    """kernel(*args, part, parts) for every part in range(parts), shared
    out among the threads as they come free, where ``size`` is at least
    ``worth``, enough work for threads to pay; else kernel(*args, 0, 1).
    ``size`` counts the elements the kernel touches, against
    PARALLEL_SIZE (``worth=None``), unless the caller measures its work
    in other units (estimated nanoseconds, multiply-adds) and passes the
    threshold in those. The kernel takes its share of its tasks with ``loops._share``.

    Each thread takes ``PARTS_PER_THREAD`` parts on average, claimed one
    at a time, not a fixed share: a thread that shares its core with
    another process's then does fewer parts instead of holding up the
    others. A failed or interrupted call starts no new part."""
    parts = parts_for(size, worth)
    if parts == 1:
        kernel(*args, 0, 1)
        return
    threads = parts // PARTS_PER_THREAD
    claim = itertools.count().__next__          # atomic: it runs under the GIL
    cancelled = []

    def work(_):
        part = claim()
        while part < parts and not cancelled:
            kernel(*args, part, parts)
            part = claim()
    run_in_parallel(work, [None] * threads, cancelled)


def matmul_into(out, a, b, add):
    """out = a @ b, or out += a @ b when ``add``: a thread's partial sum
    of products. The first product goes straight into ``out``: a zeroed
    ``out`` plus a temporary to add would cost two more passes over it,
    and on small images a weight gradient (O x K) is larger than a tile's
    work."""
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
