"""Waiting without sleeping: the spins of ``threads.py``'s pool.

Why
---
A network's forward pass is hundreds of parallel calls, each a few
microseconds of Python after the last. If the pool's threads slept
between them, every call would wake a thread (and the caller, when it
waits for the others, would sleep and be woken in turn). In a virtual
machine a wake-up costs 30-100 us, as much as a small layer's work.
OpenMP runtimes such as torch's avoid it by spinning for a while before
they sleep; so does the pool: a worker that has done its group spins
until the next call comes or ``KEEP_WARM_SECONDS`` pass, and the caller
spins a short while for the workers to finish before it sleeps.

How
---
The pool's state that the spins watch is held in one-element int64
arrays: ``posted`` (the number of the latest call), ``finished`` (groups
done, counted by the workers), ``caller_asleep`` (1 while the caller
sleeps). The spins are Numba functions compiled with ``nogil``: a thread
that spins does not hold the GIL, so the others run Python meanwhile.
Every ``READS_PER_YIELD`` reads a spin yields its core (``sched_yield``)
to any thread waiting for it, so that on a loaded machine a spinning
thread gives way to the one it waits for.

A spin must not keep a core from work that needs it. Every
``READS_PER_YIELD`` reads it also looks at the CPU's cycle counter: a gap
of more than ``gap`` cycles since the last look means the thread was off
its core, and the spin returns PREEMPTED for the pool to ask why
(``threads._Pool._lost_core``: on a busy machine the pool stops spinning
for a while). x86's ``pause`` between reads was tried and dropped: no
call got faster, and a hypervisor may take a run of them for a thread
waiting on a lock and deschedule its virtual core (pause-loop exiting).

A plain load in a loop would not do: nothing in the loop writes the
counter, so the compiler may read it once and spin on a register. The
loads here are atomic (LLVM's ``load atomic``) and read memory every
time. ``finish_and_wait`` and ``caller_sleeps`` are the two halves of a
hand-shake (a worker counts its group done, then looks whether the caller
sleeps; the caller says it sleeps, then looks at the count): both write,
then read, sequentially consistent, so at least one of them sees the
other's write and no wake-up is lost.
"""
import time

import numba
import numpy
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from . import cache

cache.install()


def _int64_array(array):
    """Whether the Numba type ``array`` is an int64 array (what the atomics
    below accept)."""
    return isinstance(array, types.Array) and array.dtype == types.int64


def _data(context, builder, array_type, array):
    return context.make_array(array_type)(context, builder, array).data


@intrinsic
def _load(typingctx, array):
    """array[0] of an int64 array, read by a sequentially consistent atomic
    load."""
    if not _int64_array(array):
        return None

    def codegen(context, builder, signature, args):
        return builder.load_atomic(_data(context, builder, signature.args[0], args[0]), "seq_cst", 8)
    return types.int64(array), codegen


@intrinsic
def _store(typingctx, array, value):
    """array[0] = value (int64), a sequentially consistent atomic store."""
    if not _int64_array(array):
        return None

    def codegen(context, builder, signature, args):
        builder.store_atomic(args[1], _data(context, builder, signature.args[0], args[0]), "seq_cst", 8)
        return context.get_dummy_value()
    return types.none(array, types.int64), codegen


@intrinsic
def _add(typingctx, array, value):
    """array[0] += value (int64), atomically; returns the value before."""
    if not _int64_array(array):
        return None

    def codegen(context, builder, signature, args):
        return builder.atomic_rmw("add", _data(context, builder, signature.args[0], args[0]), args[1], "seq_cst")
    return types.int64(array, types.int64), codegen


@intrinsic
def _cycles(typingctx):
    """The CPU's cycle counter (x86's time-stamp counter; 0 where LLVM
    has none): a clock that costs ~20 cycles to read."""
    def codegen(context, builder, signature, args):
        function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(64), []),
                                                  "llvm.readcyclecounter")
        return builder.call(function, [])
    return types.int64(), codegen


@intrinsic
def _sched_yield(typingctx):
    """The C library's sched_yield(): give the core to another thread that
    is ready to run on it, if any; else return at once."""
    def codegen(context, builder, signature, args):
        function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []),
                                                  "sched_yield")
        builder.call(function, [])
        return context.get_dummy_value()
    return types.none(), codegen


#: Reads of a counter between two yields of the core (and looks at the clock).
READS_PER_YIELD = 64
#: What a spin returns when it finds that it lost its core for a while.
PREEMPTED = -2
#: What ``finish_and_wait`` returns when the caller sleeps and must be woken.
WAKE_CALLER = -1


@numba.njit(cache=True, nogil=True)
def _spin(counter, value, reach, spins, gap):
    """Read counter[0] (an int64 array) until it differs from ``value``
    (``reach`` False) or is at least ``value`` (``reach`` True), at most
    ``spins`` times; returns the last value read, or PREEMPTED as soon as
    more than ``gap`` cycles passed between two looks at the clock: another
    thread had the core."""
    read = _load(counter)
    reads = 0
    last = _cycles()
    while (read < value if reach else read == value) and reads < spins:
        reads += 1
        if reads % READS_PER_YIELD == 0:
            _sched_yield()
            now = _cycles()
            if now - last > gap:
                return PREEMPTED
            last = now
        read = _load(counter)
    return read


@numba.njit(cache=True, nogil=True)
def wait_for_change(counter, seen, spins, gap):
    """Read counter[0] until it differs from ``seen``, at most ``spins``
    times; returns the last value read (``seen`` if it never changed), or
    PREEMPTED (``_spin``)."""
    return _spin(counter, seen, False, spins, gap)


@numba.njit(cache=True, nogil=True)
def wait_for(counter, target, spins, gap):
    """Read counter[0] until it reaches ``target``, at most ``spins`` times;
    returns 1 if it did, 0 if not, or PREEMPTED (``_spin``)."""
    read = _spin(counter, target, True, spins, gap)
    return PREEMPTED if read == PREEMPTED else int(read >= target)


@numba.njit(cache=True, nogil=True)
def finish_and_wait(finished, caller_asleep, posted, seen, spins, gap):
    """A worker's end of a call: finished[0] += 1; then WAKE_CALLER if the
    caller sleeps, else ``wait_for_change(posted, seen, spins, gap)``. One
    function, so that the worker does not hold the GIL when the caller sees
    the count and wants it back."""
    _add(finished, 1)
    if _load(caller_asleep):
        return WAKE_CALLER
    return wait_for_change(posted, seen, spins, gap)


@numba.njit(cache=True, nogil=True)
def caller_sleeps(caller_asleep, finished, target):
    """The caller's end of the hand-shake: caller_asleep[0] = 1, then
    whether finished[0] has reached ``target`` after all (then it need not
    sleep)."""
    _store(caller_asleep, 1)
    return _load(finished) >= target


@numba.njit(cache=True, nogil=True)
def _cycles_now():
    return _cycles()


_rates = None


def _measure_rates():
    """(reads of ``wait_for_change`` a second, cycles of ``_cycles`` a
    second), measured once a process on a counter that never changes."""
    global _rates
    if _rates is None:
        counter = numpy.zeros(1, numpy.int64)
        never = numpy.iinfo(numpy.int64).max
        wait_for_change(counter, 0, 1, never)               # compiled (or loaded) first
        _cycles_now()
        reads = 1 << 16
        start, cycles = time.perf_counter(), _cycles_now()
        wait_for_change(counter, 0, reads, never)
        seconds, cycles = max(time.perf_counter() - start, 1e-9), _cycles_now() - cycles
        _rates = reads / seconds, cycles / seconds
    return _rates


def spins_for(seconds):
    """How many reads of ``wait_for_change`` take about ``seconds``."""
    return max(1, int(seconds * _measure_rates()[0]))


def cycles_for(seconds):
    """How many of the clock's cycles make ``seconds`` (the ``gap`` of the
    spins); the largest int64 where the CPU has no cycle counter, so that a
    spin never thinks itself preempted."""
    rate = _measure_rates()[1]
    return max(1, int(seconds * rate)) if rate > 0 else int(numpy.iinfo(numpy.int64).max)
