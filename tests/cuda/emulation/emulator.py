"""Run the CUDA kernels of ``kernels/cuda`` on the CPU, on NumPy arrays.

Each ``.cu`` source is compiled by the host C++ compiler, once per dtype
(``-Dscalar_t=float`` / ``double``), as C++ with ``cuda_emulation.h``
included first, into a shared library that exports
``emu_launch_<kernel>`` for every kernel (see that header for the thread
model: a launch runs every thread of the grid in turn). ``launcher`` has
the signature of ``kernels.cuda.loader``'s launchers, so

    with loader.use_launcher(emulator.launcher):
        y = kernels.cuda.pooling.max_pool2d_forward(x, win)   # x a NumPy array

runs the GPU wrapper code, kernels included, on the CPU.

Arguments are checked against the kernel's parameter list, read from the
preprocessed source: an array must be C-contiguous and of the pointer's
element type, a scalar a NumPy scalar of the parameter's exact C type.
A mistake there (an int where the kernel takes a 64-bit index) would read
garbage on a GPU too, so here it is an error.

The libraries are built in parallel the first time they are needed and
kept in a folder of the temporary directory named by a hash of the
sources, the header and the flags: later test sessions (and the other
xdist workers) reuse them, and any edit rebuilds them.
"""
import ctypes
import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile

import numpy

from minicnn.kernels.cuda import loader

HEADER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cuda_emulation.h")
# -O1 compiles quickly and still inlines the index arithmetic; -Wall -Wextra
# -Werror holds the kernels to the same no-warning rule as NVRTC.
FLAGS = ("-std=c++14", "-O1", "-fPIC", "-shared", "-Wall", "-Wextra", "-Werror")

#: The NumPy dtype of each C type a kernel parameter may have (pointers:
#: of the element), ``scalar_t`` standing for the dtype compiled for.
C_TYPES = {"int": numpy.int32, "index_t": numpy.int64, "long long": numpy.int64, "double": numpy.float64,
           "unsigned char": numpy.uint8, "float": numpy.float32}


def compiler():
    """The host C++ compiler, or None."""
    return shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")


def _build_dir():
    digest = hashlib.sha256()
    for path in [HEADER, loader.source_path("common.h")] + [loader.source_path(s) for s in loader.source_files()]:
        with open(path, "rb") as f:
            digest.update(f.read())
    digest.update(" ".join(FLAGS).encode())
    return os.path.join(tempfile.gettempdir(), f"minicnn-cuda-emulation-{digest.hexdigest()[:16]}")


def _library_path(source, dtype):
    return os.path.join(_build_dir(), f"{source[:-3]}_{loader.scalar_type(dtype)}.so")


def _compile_command(source, dtype, output):
    """g++ on a two-line C++ file: the .cu source, then one EMU_EXPORT per kernel."""
    stub = output[:-3] + ".cpp"
    with open(stub, "w", encoding="utf-8") as f:
        f.write(f'#include "{loader.source_path(source)}"\n')
        f.writelines(f"EMU_EXPORT({name})\n" for name in loader.kernel_names(source))
    return [compiler(), *FLAGS, f"-Dscalar_t={loader.scalar_type(dtype)}", "-include", HEADER,
            "-I", loader.SOURCE_DIR, stub, "-o", output]


def build_all():
    """Compile every (source, dtype) library that is not built yet, in
    parallel; raise RuntimeError with the compiler's messages on failure."""
    os.makedirs(_build_dir(), exist_ok=True)
    jobs = []
    for source in loader.source_files():
        for dtype in loader.SCALAR_TYPES:
            path = _library_path(source, dtype)
            if not os.path.exists(path):
                # Build under a private name, then rename: another process
                # may be building the same library at the same time.
                partial = f"{path[:-3]}.{os.getpid()}.so"
                jobs.append((path, partial, subprocess.Popen(
                    _compile_command(source, dtype, partial), stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT, text=True)))
    errors = []
    for path, partial, job in jobs:
        out, _ = job.communicate()
        if job.returncode:
            errors.append(f"{os.path.basename(path)}:\n{out}")
        else:
            os.replace(partial, path)
    if errors:
        raise RuntimeError("compiling the emulated kernels failed:\n" + "\n".join(errors))


@functools.lru_cache(maxsize=None)
def library(source, dtype):
    """The loaded shared library of ``source`` for ``dtype``."""
    path = _library_path(source, dtype)
    if not os.path.exists(path):
        build_all()
    return ctypes.CDLL(path)


@functools.lru_cache(maxsize=None)
def parameters(source):
    """{kernel: [(C type, is_pointer), ...]} from the preprocessed source."""
    text = subprocess.run([compiler(), "-E", "-P", "-x", "c++", "-Dscalar_t=scalar_t", "-I", loader.SOURCE_DIR,
                           loader.source_path(source)], check=True, capture_output=True, text=True).stdout
    signatures = {}
    for name, params in re.findall(r'extern "C" __global__ void (\w+)\s*\(([^)]*)\)', text):
        parsed = []
        for param in params.split(","):
            words = param.replace("*", " * ").replace("__restrict__", " ").replace("const", " ").split()
            pointer = "*" in words
            parsed.append((" ".join(w for w in words[:-1] if w != "*"), pointer))
        signatures[name] = parsed
    return signatures


def _argument(value, ctype, pointer, dtype, where):
    """A buffer holding the argument's C value (what args[i] points to)."""
    expected = numpy.dtype(dtype if ctype == "scalar_t" else C_TYPES[ctype])
    if pointer:
        if not isinstance(value, numpy.ndarray):
            raise TypeError(f"{where}: expected an array, got {type(value).__name__}")
        if value.dtype != expected or not value.flags.c_contiguous:
            raise TypeError(f"{where}: expected a C-contiguous {expected} array, got "
                            f"{value.dtype} (C-contiguous: {value.flags.c_contiguous})")
        return numpy.array(value.ctypes.data, dtype=numpy.uintp)
    if not isinstance(value, numpy.generic) or value.dtype != expected:
        raise TypeError(f"{where}: expected a NumPy {expected} scalar, got {value!r} ({type(value).__name__})")
    return numpy.array(value)


def launcher(source, kernel, dtype, grid, block, args):
    """Run ``kernel`` of ``source`` for ``dtype`` over ``grid`` x ``block``
    threads on the CPU; the launcher signature of ``kernels.cuda.loader``."""
    params = parameters(source)[kernel]
    if len(args) != len(params):
        raise TypeError(f"{kernel}: takes {len(params)} arguments, got {len(args)}")
    buffers = [_argument(a, t, p, dtype, f"{kernel} argument {i}") for i, (a, (t, p)) in enumerate(zip(args, params))]
    pointers = (ctypes.c_void_p * len(buffers))(*(b.ctypes.data for b in buffers))
    run = getattr(library(source, numpy.dtype(dtype)), "emu_launch_" + kernel)
    run.argtypes = [ctypes.c_uint] * 6 + [ctypes.c_void_p]
    run.restype = None
    run(*grid, *block, pointers)
