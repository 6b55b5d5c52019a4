"""glibc's malloc, kept from handing large blocks back to the system, and
NumPy's arrays kept off transparent huge pages.

A training step allocates and frees arrays of a few MB by the hundred
(each layer's output, its saved inputs, the gradients, the kernels'
buffers). glibc serves a block of at least its *mmap threshold* with a
fresh ``mmap`` and returns it with ``munmap`` when freed, so the next array
of that size starts on new pages: one page fault per 4 KB the first time
each page is written, a cost paid again on every call. The threshold
starts at 128 KB and rises by itself to the size of the largest such
block freed (up to 32 MB), so how fast a convolution runs depended on
what the process had freed before: 16 x 64 x 16x16 -> 64 3x3 (Winograd)
took 3.6-4.1 ms as the first kernel of a process and 1.4-1.6 ms after one
im2col call had freed an 8 MB buffer (2 threads, same process). Which
kernels ran first decided the speed of a whole training step.

Above 32 MB glibc maps every block whatever the threshold, and on a
virtual machine a page the guest has given back can cost far more than
a fault when next touched (the host hands it out again): MobileNetV2's
first expansion at batch 8, 8 x 16 x 112x112 -> 96 1x1 (a 38.5 MB
output), took 200-300 ms a call for seconds on end, against 6-7 ms, and
torch's same convolution in the same process 45-60 ms against 8-10.

``tune()`` therefore turns glibc's own mappings off (``M_MMAP_MAX`` 0:
every block comes from the heap, and a freed one is reused by the next
call) and raises the *trim threshold* (how much free memory at the top
of the heap glibc keeps instead of returning) to ``TRIM_BYTES``.
ResNet-18's training step at 64 px, batch 16: 117-149 ms against 140-230
(7 alternating processes each, with the 32 MB threshold this replaced);
EfficientNet-B0's at 96 px within the noise; the processes' peak
resident memory unchanged (335-338 MB either way). The price: a large
block freed in the middle of the heap stays resident until it is reused
(or ``malloc_trim`` is called), as a caching allocator's blocks do.

NumPy asks Linux for transparent huge pages (``madvise(MADV_HUGEPAGE)``)
on every array of 4 MB or more; torch does not by default. Where huge
pages are granted on demand ("madvise" in
/sys/kernel/mm/transparent_hugepage/enabled) the first write of each
2 MB of a fresh array takes a whole huge page, and on a virtual machine
whose host has reclaimed the guest's free memory each of those cost
milliseconds: 1.6 GB of fresh 16 MB arrays took 2-16.5 s to fill with
huge pages, 0.9-1.1 s without (the same process, each way, 4 runs). A
model's first calls pay it on every new array: ResNet-18 (2 threads, 4
alternating processes each way) built in 480-600 ms with them and
197-261 without, its first training step (64 px, batch 16) took
1.8-2.3 s against 1.3-1.5, its first 224 px forward at batch 8
674-857 ms against 248-341; steady steps were the same or faster
without (benchmarks/results/NOTES.md). ``tune()`` turns NumPy's request
off, unless ``NUMPY_MADVISE_HUGEPAGE`` is set (the user chose).

It is process-wide, as the BLAS setting of ``threads.py`` is, so torch
in the same process (the benchmarks) allocates the same way: minicnn
applies it when it is imported (before a model's parameters are
allocated). Set
``MINICNN_MALLOC_TUNING=0`` to leave malloc and NumPy alone. Elsewhere
than glibc (musl, macOS, Windows) the malloc part does nothing.
"""
import ctypes
import functools
import os

#: mallopt's parameter numbers (glibc's malloc.h).
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
TRIM_BYTES = 256 << 20


@functools.cache
def tune():
    """Turn glibc's mappings of their own off, set its trim threshold and
    turn NumPy's huge-page requests off (module docstring), once; whether
    both malloc settings were set."""
    if os.environ.get("MINICNN_MALLOC_TUNING", "1") == "0":
        return False
    _numpy_huge_pages_off()
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):          # not glibc
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_BYTES))


def _numpy_huge_pages_off():
    """Stop NumPy from asking for transparent huge pages on new arrays,
    unless ``NUMPY_MADVISE_HUGEPAGE`` says what the user wants; whether it
    was turned off. NumPy has no public switch but that variable, read at
    its import: its private ``_set_madvise_hugepage`` (NumPy 1.x and 2.x)."""
    if "NUMPY_MADVISE_HUGEPAGE" in os.environ:
        return False
    try:
        from numpy._core.multiarray import _set_madvise_hugepage
    except ImportError:
        try:
            from numpy.core.multiarray import _set_madvise_hugepage
        except ImportError:                    # a NumPy without it
            return False
    _set_madvise_hugepage(False)
    return True
