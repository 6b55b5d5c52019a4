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
thread, the others on the threads of one pool (a standard
``concurrent.futures.ThreadPoolExecutor``). The threads run at the same
time because the Numba kernels (compiled ``nogil=True``) and NumPy's
matmul release the GIL. ``parallel_parts`` hands out a kernel's parts one
at a time, so a thread that loses its core to another process does fewer
parts instead of holding up the others.

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

Idle and interrupted
--------------------
The pool's threads sleep while there is no work: an idle process uses no
CPU, and on a machine shared with other processes the threads do not burn
time slices that the busy ones need. While parallel calls come (a forward
pass, a training step), ``workers + 1`` *keepers* spin at the lowest
priority for ``KEEP_WARM_SECONDS`` after each call, so that the cores are
not idle, and slow to wake in a virtual machine, when the next call wakes
a thread (``spin.py``; Linux only, where a thread's priority is its
own). Any thread ready to run preempts a keeper, so they take only time
that no one else wants. Ctrl-C during a parallel call is held
back (SIGINT blocked on the main thread, and for good on the pool's) until
the call's groups are done, then raised as ``KeyboardInterrupt``: an
exception raised at an arbitrary point inside the executor's own locking
could leave the pool hung. A call that fails in any group (or is
interrupted where the signal could not be held back) cancels the groups
that have not started, waits for those that have (they write into the
caller's arrays), and re-raises: the pool is then idle and the next call
is correct.

The pool is used by one caller at a time: a call from another thread
while it is busy (or from inside one of its groups) runs its groups one
after another on that thread.
"""
import concurrent.futures
import functools
import itertools
import numbers
import os
import signal
import sys
import threading

import numpy

from . import allocator

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
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return ()
    libraries = ThreadpoolController().select(user_api="blas").lib_controllers
    numpy_prefix = os.path.join(os.path.dirname(os.path.dirname(numpy.__file__)), "numpy")
    own = tuple(lib for lib in libraries if lib.filepath.startswith(numpy_prefix))
    return own or tuple(libraries)


def _apply(threads):
    """Make ``threads`` the setting: BLAS single-threaded (minicnn's pool
    splits the GEMMs), the pool resized on its next use; and glibc's malloc
    tuned (``allocator.py``)."""
    global _num_threads
    allocator.tune()
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


#: How long the keepers (``spin.py``) keep the cores awake after the last
#: parallel call: longer than the gaps between the calls of a forward or
#: backward pass, short enough that an idle process soon uses no CPU.
KEEP_WARM_SECONDS = 2e-3


class _Pool:
    """An executor with ``workers`` threads, for one process (a forked child
    has none of its parent's threads), the lock of its one caller, and on
    Linux ``workers + 1`` keepers (``spin.py``): threads of the lowest
    priority that spin while parallel calls come, so that the cores are
    awake when the next one wakes a thread. ``posted`` counts the calls."""

    def __init__(self, workers):
        self.workers = workers
        self.pid = os.getpid()
        self.busy = threading.Lock()
        self.executor = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="minicnn",
                                                              initializer=_block_ctrl_c)
        self.posted = numpy.zeros(1, numpy.int64)
        self.changed = threading.Condition()
        self.keepers_asleep = 0
        self.closed = False
        if KEEP_WARM_SECONDS > 0 and sys.platform.startswith("linux"):   # a thread's priority is its own
            from . import spin                      # compiles (or loads) the spin on first use
            self.spin, self.spins = spin, spin.spins_for(KEEP_WARM_SECONDS)
            for index in range(workers + 1):
                threading.Thread(target=self._keep, name=f"minicnn-keeper-{index}", daemon=True).start()

    def _keep(self):
        """A keeper: at nice 19, spin while calls come, sleep between bursts."""
        _block_ctrl_c()
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        seen = -1
        while True:
            with self.changed:
                # Counted as asleep before the last look at ``posted``:
                # ``post`` bumps it, then looks at ``keepers_asleep`` (both
                # under the GIL), so either this look sees the bump or
                # ``post`` sees this keeper and wakes it.
                self.keepers_asleep += 1
                while self.posted[0] == seen and not self.closed:
                    self.changed.wait()
                self.keepers_asleep -= 1
                if self.closed:
                    return
            seen = self.spin.keep_warm(self.posted, self.spins)

    def post(self):
        """Count a parallel call; wake the keepers if they sleep (while they
        spin, that costs nothing more)."""
        self.posted[0] += 1
        if self.keepers_asleep:
            with self.changed:
                self.changed.notify_all()

    def close(self):
        """Let the threads end: a larger pool replaces this one."""
        self.executor.shutdown(wait=False)          # its threads end once idle
        with self.changed:
            self.closed = True
            self.changed.notify_all()


_pool = None


def _get_pool(workers):
    """The pool, with at least ``workers`` threads (a new one after a
    fork)."""
    global _pool
    if _pool is None or _pool.workers < workers or _pool.pid != os.getpid():
        if _pool is not None and _pool.pid == os.getpid():
            _pool.close()
        _pool = _Pool(workers)
    return _pool


def _settle(futures, cancelled):
    """Stop the tasks of a call that failed: cancel those not started, tell
    the running ones (``cancelled``), and wait for them, since they write
    into the caller's arrays. A second Ctrl-C while waiting does not cut
    the wait short: the first one is already on its way to the caller."""
    cancelled.append(True)
    for future in futures:
        future.cancel()
    while True:
        try:
            concurrent.futures.wait(futures)
            return
        except KeyboardInterrupt:
            continue


def run_in_parallel(work, groups, cancelled=None):
    """[work(group) for group in groups], the groups on separate threads.
    One group, or a pool already busy, runs here, one group after another.
    ``cancelled``: a list that a failed call appends True to before it
    waits for the groups still running, so that long work can stop early.
    An exception in any group (the first, in group order) or an interrupt
    is raised here once no group is running any more."""
    if len(groups) <= 1:
        return [work(group) for group in groups]
    pool = _get_pool(len(groups) - 1)
    acquired = False
    held_back = _hold_back_ctrl_c()
    try:
        acquired = pool.busy.acquire(blocking=False)
        if not acquired:
            return [work(group) for group in groups]
        pool.post()
        futures = []
        try:
            for group in groups[1:]:
                futures.append(pool.executor.submit(work, group))
            first = work(groups[0])
            return [first] + [future.result() for future in futures]
        except BaseException:
            _settle(futures, [] if cancelled is None else cancelled)
            raise
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
