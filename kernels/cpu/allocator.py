"""glibc's malloc, kept from handing large blocks back to the system.

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

``tune()`` fixes the threshold at its ceiling, 32 MB (blocks below it
come from the heap and are reused from call to call), and raises the
*trim threshold* (how much free memory at the top of the heap glibc keeps
instead of returning) to ``TRIM_BYTES``. ResNet-18's training step at 64
px, batch 16: 117-149 ms against 140-230 (7 alternating processes each);
EfficientNet-B0's at 96 px within the noise; the processes' peak resident
memory unchanged (335-338 MB either way).

It is process-wide, as the BLAS setting of ``threads.py`` is: minicnn
applies it when its kernels first run (``threads.get_num_threads``). Set
``MINICNN_MALLOC_TUNING=0`` to leave malloc alone. Elsewhere than glibc
(musl, macOS, Windows) it does nothing.
"""
import ctypes
import functools
import os

#: mallopt's parameter numbers (glibc's malloc.h).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: glibc's ceiling for the mmap threshold on 64-bit systems.
MMAP_THRESHOLD_BYTES = 32 << 20
TRIM_BYTES = 256 << 20


@functools.cache
def tune():
    """Set glibc's mmap and trim thresholds (module docstring) once;
    whether they were set."""
    if os.environ.get("MINICNN_MALLOC_TUNING", "1") == "0":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):          # not glibc
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_BYTES))
