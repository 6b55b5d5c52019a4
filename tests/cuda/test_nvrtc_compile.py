"""Every CUDA source compiles with NVRTC, for sm_80 and sm_90, in float32
and float64, with no warning at all.

NVRTC is the compiler CuPy's RawModule uses; the ``cuda-bindings`` package
calls it without a GPU or a driver, so this runs in CI. NVRTC has no
-Werror, so "warnings as errors" is checked as "the compile log is empty".
The text compiled is exactly what the loader hands CuPy
(``loader.source_code``, ``loader.compile_options``), with the options
CuPy's RawModule adds to every NVRTC compile. When nvcc is on the
machine, it compiles the same text with ``-Werror all-warnings`` as well.
"""
import os
import shutil
import subprocess

import numpy
import pytest

from minicnn.kernels.cuda import loader

nvrtc = pytest.importorskip("cuda.bindings.nvrtc", reason="the cuda-bindings package (NVRTC) is not installed")

ARCHS = ["sm_80", "sm_90"]
DTYPES = [numpy.float32, numpy.float64]
SOURCES = loader.source_files()
# What cupy.RawModule adds to the options it is given (cupy/cuda/compiler.py,
# CuPy 14): float32 denormals flushed to zero, and functions device-side
# unless marked otherwise.
CUPY_OPTIONS = ["-ftz=true", "--device-as-default-execution-space"]


def _check(result, what):
    err = result[0] if isinstance(result, tuple) else result
    assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS, f"{what}: {err}"
    return result[1:] if isinstance(result, tuple) and len(result) > 1 else None


def nvrtc_compile(code, name, options):
    """(succeeded, log, cubin size) of one NVRTC compile."""
    (program,) = _check(nvrtc.nvrtcCreateProgram(code.encode(), name.encode(), 0, [], []), "nvrtcCreateProgram")
    try:
        encoded = [o.encode() for o in options]
        (result,) = nvrtc.nvrtcCompileProgram(program, len(encoded), encoded)
        (size,) = _check(nvrtc.nvrtcGetProgramLogSize(program), "nvrtcGetProgramLogSize")
        # NVRTC writes into this buffer, so it must be a fresh, mutable
        # one: b" " * 1 is CPython's shared one-byte b" ", and writing the
        # log's terminating NUL into it corrupted every b" " in the process
        # (torch.save then wrote broken pickles).
        log = bytearray(size)
        _check(nvrtc.nvrtcGetProgramLog(program, log), "nvrtcGetProgramLog")
        cubin_size = 0
        if result == nvrtc.nvrtcResult.NVRTC_SUCCESS:
            (cubin_size,) = _check(nvrtc.nvrtcGetCUBINSize(program), "nvrtcGetCUBINSize")
        return result == nvrtc.nvrtcResult.NVRTC_SUCCESS, bytes(log).rstrip(b"\0 ").decode(), cubin_size
    finally:
        nvrtc.nvrtcDestroyProgram(program)


def test_there_are_kernel_sources():
    assert {"im2col.cu", "pooling.cu", "batchnorm.cu", "depthwise.cu"} <= set(SOURCES)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("source", SOURCES)
def test_source_compiles_without_warnings(source, arch, dtype):
    ok, log, cubin_size = nvrtc_compile(loader.source_code(source), source,
                                        [f"--gpu-architecture={arch}", *loader.compile_options(dtype), *CUPY_OPTIONS])
    assert ok, f"{source} ({arch}, {numpy.dtype(dtype)}) does not compile:\n{log}"
    assert log == "", f"{source} ({arch}, {numpy.dtype(dtype)}) compiles with warnings:\n{log}"
    assert cubin_size > 0


def test_a_warning_fails_the_check():
    """The empty-log rule catches what -Werror would."""
    ok, log, _ = nvrtc_compile('extern "C" __global__ void k(float* y) { int unused; y[0] = 1; }', "k.cu",
                               ["--gpu-architecture=sm_80"])
    assert ok and "unused" in log


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_nvcc_compiles_with_werror(tmp_path, dtype):
    """nvcc -Werror all-warnings, device code only (-cubin), both archs."""
    for source in SOURCES:
        path = tmp_path / source
        path.write_text(loader.source_code(source), encoding="utf-8")
        for arch in ARCHS:
            run = subprocess.run(["nvcc", "-cubin", f"-arch={arch}", "-Werror", "all-warnings",
                                  *loader.compile_options(dtype), "-o", os.devnull, str(path)],
                                 capture_output=True, text=True)
            assert run.returncode == 0, f"nvcc {source} ({arch}):\n{run.stdout}{run.stderr}"
