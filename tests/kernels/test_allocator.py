"""glibc's malloc tuned by minicnn (``kernels/cpu/allocator.py``): once
minicnn is imported, a large array (below glibc's 32 MB ceiling
on the mmap threshold, or above it) comes from the heap (reused from
call to call) instead of a fresh mapping of its own, and NumPy asks for
no transparent huge pages; ``MINICNN_MALLOC_TUNING=0`` leaves both
alone."""
import os
import subprocess
import sys

import pytest

pytest.importorskip("numba")

# In a fresh process: set minicnn's kernels up, allocate an array of
# ``megabytes`` and print the share of it that glibc mapped on its own
# (mallinfo2's hblkhd: the bytes in mmap'ed blocks).
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
a = numpy.ones(({megabytes} << 20) // 8)
print((libc.mallinfo2().hblkhd - before) / ({megabytes} << 20))
"""


def _mapped_share(tuning, megabytes):
    env = dict(os.environ, MINICNN_MALLOC_TUNING=tuning)
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(megabytes=megabytes)], env=env,
                         capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
@pytest.mark.parametrize("megabytes", [24, 40])
def test_large_arrays_come_from_the_heap(megabytes):
    from minicnn.kernels.cpu import allocator
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        pytest.skip("not glibc 2.33 or later (no mallinfo2)")
    assert allocator.tune()
    assert _mapped_share("1", megabytes) == 0
    assert _mapped_share("0", megabytes) >= 1          # untuned: a mapping of its own, the array and a header


# In a fresh process: print whether NumPy asks for transparent huge pages
# before and after ``import minicnn`` (no kernel run yet: a model's
# parameters are allocated before any; ``_set_madvise_hugepage`` returns
# the setting it replaces: set it back).
HUGE_PAGES = """
from numpy._core.multiarray import _set_madvise_hugepage
def asks():
    value = _set_madvise_hugepage(False)
    _set_madvise_hugepage(value)
    return value
before = asks()
import minicnn
print(before, asks())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="NumPy's madvise: Linux only")
@pytest.mark.parametrize("env, tuned", [({}, True), ({"MINICNN_MALLOC_TUNING": "0"}, False),
                                        ({"NUMPY_MADVISE_HUGEPAGE": "1"}, False)])
def test_numpy_asks_for_no_huge_pages_unless_told_to(env, tuned):
    pytest.importorskip("numpy._core.multiarray")
    base = {k: v for k, v in os.environ.items() if k not in ("MINICNN_MALLOC_TUNING", "NUMPY_MADVISE_HUGEPAGE")}
    out = subprocess.run([sys.executable, "-c", HUGE_PAGES], env=dict(base, **env), capture_output=True, text=True,
                         check=True)
    before, after = out.stdout.split()[-2:]
    assert after == ("False" if tuned else before)
    if env.get("NUMPY_MADVISE_HUGEPAGE") == "1":
        assert before == "True"
