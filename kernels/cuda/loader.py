"""Compile the CUDA sources of this folder with CuPy and launch their kernels.

Each ``.cu`` file is compiled with NVRTC (through ``cupy.RawModule``) once
per floating dtype, with ``scalar_t`` defined as ``float`` or ``double``,
and the module is cached for the life of the process (CuPy also keeps the
compiled binary on disk, keyed by the source text and options, so a later
process skips NVRTC; CuPy compiles with ``-ftz=true``, so float32
denormals flush to zero). ``common.h`` is pasted into the source text rather
than found on an include path, so that it is part of that key: an edit to
it recompiles every kernel.

Launching
---------
``launch(source, kernel, dtype, threads, *args)`` runs a one-dimensional
grid of blocks of ``BLOCK`` threads. The kernels loop grid-stride over
their elements, so any grid covers any size; the grid is capped at
``MAX_BLOCKS`` blocks. Arguments are what the kernel's parameters are, in
order: arrays (their device pointers) and NumPy scalars of the exact C
type (``i32``, ``i64``, ``f64`` below; a bare Python int would be passed
with whatever width CuPy picks).

The function that actually launches is replaceable (``use_launcher``): the
tests run the same wrappers, with NumPy arrays, on a CPU emulation of the
thread model, which is how the kernels are checked without a GPU.

Memory: every array the wrappers allocate comes from CuPy's memory pool
(CuPy's default allocator), so the per-call temporaries (partial sums,
column matrices) reuse freed blocks instead of calling cudaMalloc.
"""
import contextlib
import functools
import importlib
import os
import re

import numpy

SOURCE_DIR = os.path.dirname(os.path.abspath(__file__))
BLOCK = 256
MAX_BLOCKS = 1 << 16

#: The C type ``scalar_t`` stands for, per NumPy dtype.
SCALAR_TYPES = {numpy.dtype(numpy.float32): "float", numpy.dtype(numpy.float64): "double"}

_KERNEL = re.compile(r'extern "C" __global__ void (\w+)\s*\(')


def i32(value):
    """``value`` as a C int argument."""
    return numpy.int32(value)


def i64(value):
    """``value`` as a C long long (index_t) argument."""
    return numpy.int64(value)


def f64(value):
    """``value`` as a C double argument."""
    return numpy.float64(value)


def array_module(array):
    """numpy for a NumPy array, cupy for a CuPy one (imported only then)."""
    return numpy if isinstance(array, numpy.ndarray) else importlib.import_module("cupy")


def scalar_type(dtype):
    """The C type of ``dtype``; TypeError for dtypes the kernels lack."""
    dtype = numpy.dtype(dtype)
    if dtype not in SCALAR_TYPES:
        raise TypeError(f"the CUDA kernels support float32 and float64, got dtype {dtype}")
    return SCALAR_TYPES[dtype]


def source_path(source):
    """The path of ``source``, a file name in this folder."""
    return os.path.join(SOURCE_DIR, source)


def source_files():
    """The names of every kernel source, e.g. ``["batchnorm.cu", ...]``."""
    return sorted(f for f in os.listdir(SOURCE_DIR) if f.endswith(".cu"))


def kernel_names(source):
    """The ``extern "C"`` kernels that ``source`` defines, in order."""
    with open(source_path(source), encoding="utf-8") as f:
        return _KERNEL.findall(f.read())


def source_code(source):
    """The text NVRTC compiles: ``source`` with ``common.h`` pasted in."""
    with open(source_path(source), encoding="utf-8") as f:
        code = f.read()
    with open(source_path("common.h"), encoding="utf-8") as f:
        common = f.read()
    return code.replace('#include "common.h"\n', common, 1)


def compile_options(dtype):
    """The NVRTC options for ``dtype``: only the definition of scalar_t."""
    return (f"-Dscalar_t={scalar_type(dtype)}",)


@functools.lru_cache(maxsize=None)
def _module(source, dtype):
    cupy = importlib.import_module("cupy")
    return cupy.RawModule(code=source_code(source), options=compile_options(dtype))


def _cupy_launcher(source, kernel, dtype, grid, block, args):
    _module(source, numpy.dtype(dtype)).get_function(kernel)(grid, block, args)


_launcher = _cupy_launcher


@contextlib.contextmanager
def use_launcher(launcher):
    """Run kernels with ``launcher(source, kernel, dtype, grid, block,
    args)`` inside the block (the CPU emulation in the tests)."""
    global _launcher
    previous, _launcher = _launcher, launcher
    try:
        yield
    finally:
        _launcher = previous


def launch(source, kernel, dtype, threads, *args):
    """Run ``kernel`` of ``source`` compiled for ``dtype`` on enough threads
    for ``threads`` elements (nothing at all for none)."""
    scalar_type(dtype)
    if threads <= 0:
        return
    blocks = min(-(-threads // BLOCK), MAX_BLOCKS)
    _launcher(source, kernel, numpy.dtype(dtype), (blocks, 1, 1), (BLOCK, 1, 1), args)


def partial_count(terms, sums, threads=1 << 16, least=16):
    """Into how many partial sums to split each of ``sums`` sums of
    ``terms`` terms: enough for about ``threads`` threads in all, with at
    least ``least`` terms per thread."""
    return max(1, min(-(-threads // max(sums, 1)), -(-terms // least)))
