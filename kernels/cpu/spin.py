"""Keeping the cores awake between parallel calls, in a virtual machine.

Why
---
``threads.py``'s pool threads sleep between parallel calls (a blocked
thread uses no CPU), and the caller sleeps while it waits for them. When
no thread is left to run, a core goes idle; in a virtual machine an idle
virtual core is handed back to the host, and waking a thread on it then
takes tens to hundreds of microseconds. A network's forward pass is
hundreds of parallel calls a few microseconds of Python apart: each of
them paid that wake-up, twice (the pool's thread, then the caller). OpenMP
runtimes such as torch's avoid it by spinning for a while before they
sleep.

How
---
While minicnn is running parallel calls, one *keeper* thread per thread
of the pool (the caller's included) spins at the lowest priority (nice
19): the cores stay awake, and any other thread ready to run, minicnn's
or another process's, preempts the keeper at once. ``keep_warm(posted,
spins)`` is that spin: a Numba function compiled with ``nogil`` (the
keepers never hold the GIL while they spin) that reads the pool's call
counter ``posted`` and returns once ``spins`` reads in a row have seen no
new call; the keeper then sleeps until the next one. Every
``READS_PER_YIELD`` reads it yields the core (``sched_yield``) to a
thread waiting for it.

A plain load in a loop would not do: nothing in the loop writes the
counter, so the compiler may read it once and spin on a register.
``_load_acquire`` is an atomic load (LLVM's ``load atomic ... acquire``),
read from memory every time. The writer is Python, ``posted[0] += 1``
under the GIL. ``spins_for`` turns a time into a count of reads,
measured once per process.
"""
import time

import numba
import numpy
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from . import cache

cache.install()


@intrinsic
def _load_acquire(typingctx, array):
    """array[0] of an int64 array, read by an atomic acquire load."""
    if not (isinstance(array, types.Array) and array.dtype == types.int64):
        return None

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.load_atomic(data, "acquire", 8)
    return types.int64(array), codegen


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


#: Reads of the counter between two yields of the core.
READS_PER_YIELD = 64


@numba.njit(cache=True, nogil=True)
def keep_warm(posted, spins):
    """Read posted[0] (an int64 array) until ``spins`` reads in a row have
    seen the same value; returns that value."""
    seen = _load_acquire(posted)
    quiet = 0
    while quiet < spins:
        value = _load_acquire(posted)
        if value != seen:
            seen, quiet = value, 0
        else:
            quiet += 1
        if quiet % READS_PER_YIELD == READS_PER_YIELD - 1:
            _sched_yield()
    return seen


_reads_per_second = None


def spins_for(seconds):
    """How many reads of ``keep_warm`` take about ``seconds``, measured
    (once) on a counter that never changes."""
    global _reads_per_second
    if _reads_per_second is None:
        counter = numpy.zeros(1, numpy.int64)
        keep_warm(counter, 1)                               # compiled (or loaded) first
        reads = 1 << 14
        start = time.perf_counter()
        keep_warm(counter, reads)
        _reads_per_second = reads / max(time.perf_counter() - start, 1e-9)
    return max(1, int(seconds * _reads_per_second))
