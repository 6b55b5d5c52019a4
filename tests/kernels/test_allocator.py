"""glibc's malloc tuned by minicnn (``kernels/cpu/allocator.py``): once
minicnn's kernels are set up, an array below the 32 MB threshold comes
from the heap (reused from call to call) instead of a fresh mapping of
its own; ``MINICNN_MALLOC_TUNING=0`` leaves malloc alone."""
import os
import subprocess
import sys

import pytest

pytest.importorskip("numba")

# In a fresh process: set minicnn's kernels up, allocate a 24 MB array and
# print the share of it that glibc mapped on its own (mallinfo2's hblkhd:
# the bytes in mmap'ed blocks).
SCRIPT = """
import ctypes, numpy
import minicnn
minicnn.get_num_threads()
class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Mallinfo2
before = libc.mallinfo2().hblkhd
a = numpy.ones((24 << 20) // 8)
print((libc.mallinfo2().hblkhd - before) / (24 << 20))
"""


def _mapped_share(tuning):
    env = dict(os.environ, MINICNN_MALLOC_TUNING=tuning)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_large_arrays_come_from_the_heap():
    from minicnn.kernels.cpu import allocator
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        pytest.skip("not glibc 2.33 or later (no mallinfo2)")
    assert allocator.tune()
    assert _mapped_share("1") == 0
    assert _mapped_share("0") >= 1          # untuned: a mapping of its own, 24 MB and a header
