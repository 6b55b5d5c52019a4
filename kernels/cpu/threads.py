"""Run the pieces of one convolution on several cores at once.

A convolution on the CPU is a loop over pieces (tiles of im2col columns,
chunks of Winograd tiles), each a Numba kernel that lays out data and a
GEMM that consumes it. Two ways to use two cores:

* let BLAS split each GEMM across the cores, and run the layout kernels
  on one core in between: the layout work does not scale, and the GEMMs
  of small pieces split poorly;
* give each core whole pieces, kernel and GEMM, with BLAS single-threaded
  inside: everything scales, and each piece's data stays in the cache of
  the core that made it.

This module does the second. ``run_in_parallel(work, groups)`` calls
``work(group)`` for each group on a thread of its own, while BLAS is
limited to one thread (through threadpoolctl). The threads run at the
same time because both the Numba kernels (compiled ``nogil=True``) and
NumPy's matmul release the GIL.

Numba's own ``prange`` cannot do this: a parallel Numba kernel between
two multithreaded GEMMs brings up a second pool whose threads fight
OpenBLAS's for the cores (both spin for a while after each call).

The same fight happens here if BLAS's threads spin: any GEMM outside a
convolution (a Linear layer, a 1x1 conv) wakes them, and OpenBLAS's then
busy-wait ~0.1 s for more work (MKL's ~0.2 s) on the cores these threads
run on: a ResNet-18 training step took 291 ms with threads, 225 without.
So the convolutions run in parallel only where BLAS does not spin: when
it is single-threaded, or when OpenBLAS was loaded with a short
``OPENBLAS_THREAD_TIMEOUT`` (``import minicnn`` before NumPy sets one;
then the step took 222 ms, and 212 ms with BLAS single-threaded
throughout). Otherwise they run one piece after another, with BLAS's
threads inside each GEMM.
"""
import concurrent.futures
import functools
import os


@functools.lru_cache(maxsize=None)
def _executor(workers):
    return concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="minicnn-conv")


@functools.lru_cache(maxsize=None)
def _blas_controller():
    """threadpoolctl's view of the loaded BLAS libraries (None without it)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


def _blas_spins():
    """Whether some loaded BLAS has several threads that busy-wait after
    each call (see the module docstring)."""
    controller = _blas_controller()
    if controller is None:
        return True
    for library in controller.select(user_api="blas").lib_controllers:
        short_spin = library.internal_api == "openblas" and "OPENBLAS_THREAD_TIMEOUT" in os.environ
        if library.num_threads > 1 and not short_spin:
            return True
    return False


@functools.lru_cache(maxsize=None)
def _cores():
    return os.cpu_count() or 1


def thread_count():
    """Cores to spread one convolution over: Numba's thread count (the
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


def run_in_parallel(work, groups):
    """[work(group) for group in groups], the groups on separate threads
    with BLAS single-threaded. One group (or no threadpoolctl) runs here,
    as is."""
    controller = _blas_controller() if len(groups) > 1 else None
    if controller is None:
        return [work(group) for group in groups]
    with controller.limit(limits=1, user_api="blas"):
        return list(_executor(len(groups)).map(work, groups))


def sum_in_place(partials):
    """The sum of the threads' partial results (arrays of one shape), added
    into the first one: they can be MBs each (a weight gradient)."""
    total = partials[0]
    for partial in partials[1:]:
        total += partial
    return total
