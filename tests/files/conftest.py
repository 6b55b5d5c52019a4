"""Running a loader in a fresh process, with bounded time and memory.

``load_bounded(path)`` loads ``path`` with ``mc.load_weights`` (or
``mc.load``) in a subprocess whose address space is limited to what it
held after importing minicnn plus twice the file's size plus 100 MB
(RLIMIT_AS): an allocation beyond it fails there instead of swapping this
machine. The child reports what it loaded and how much its resident
memory grew (its peak, VmHWM, minus its resident size before the load).
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

MB = 1 << 20

_CHILD = textwrap.dedent("""
    import json, os, resource, sys
    import numpy
    import minicnn as mc
    from minicnn import torch_pickle

    def status(field):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024

    path, loader, extra, allowance = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    if extra != "-":
        torch_pickle.MAX_EXTRA_BYTES = int(extra)
    limit = status("VmSize") + allowance
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    before = status("VmRSS")
    report = {}
    try:
        loaded = (mc.load_weights if loader == "load_weights" else mc.load)(path)
        report["outcome"] = "loaded"
        tensors = {}
        for name, value in (loaded.items() if isinstance(loaded, dict) else []):
            a = value.data if isinstance(value, mc.Tensor) else value
            if isinstance(a, numpy.ndarray):
                tensors[str(name)] = {"shape": list(a.shape), "strides": list(a.strides),
                                      "writeable": bool(a.flags.writeable), "dtype": str(a.dtype),
                                      "first": a.flat[0].item() if a.size else None,
                                      "last": a[(-1,) * a.ndim].item() if a.size else None}
        report["tensors"] = tensors
    except Exception as e:
        report["outcome"] = type(e).__name__
        report["error"] = str(e)
    report["growth"] = status("VmHWM") - before
    print(json.dumps(report))
""")


def load_bounded(path, loader="load_weights", max_extra_bytes=None, timeout=120):
    """What loading ``path`` did in a bounded subprocess: a dict with
    ``outcome`` ("loaded" or the exception's type name), ``error``,
    ``tensors`` (per name: shape, strides, writeable, dtype, first and
    last value) and ``growth`` (bytes of resident memory the load added).
    Asserts the acceptance bound: growth under 2x the file plus 100 MB."""
    size = os.path.getsize(path)
    allowance = 2 * size + 100 * MB
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), loader, "-" if max_extra_bytes is None else str(max_extra_bytes),
         str(allowance)],
        capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["growth"] < allowance, f"loading {path} ({size} bytes) grew the process by {report['growth']}"
    return report


@pytest.fixture
def bounded():
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc/self/status")
    return load_bounded
