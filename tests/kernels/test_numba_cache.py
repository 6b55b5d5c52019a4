"""Numba's disk cache of the CPU kernels is stamped with the whole package
(``kernels/cpu/cache.py``): a kernel's saved code holds the helpers it
inlines from other files, so an edit to ``loops.py`` must recompile the
kernels of every file, and an unchanged package must reuse the cache."""
import importlib
import os
import pkgutil
import shutil
import subprocess
import sys
import textwrap

import numpy
import pytest

from minicnn.kernels import cpu
from minicnn.kernels.cpu import cache

# A kernel in a file of its own, whose whole work is a helper of loops.py,
# inlined: the copy of the package below gets both.
PROBE_HELPER = textwrap.dedent('''

    @numba.njit(inline="always")
    def _probe_value():
        return 1  # the probe's value
''')
PROBE_KERNEL = textwrap.dedent('''
    import numba

    from .loops import JIT, _probe_value


    @numba.njit(**JIT)
    def probe():
        return _probe_value()
''')
RUN_PROBE = ("from kernels.cpu.probe import probe; "
             "print(probe(), sum(probe.stats.cache_hits.values()), probe.stats.cache_path)")


def test_stamp_follows_contents(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("y = 2\n")
    (tmp_path / "notes.txt").write_text("not source\n")
    stamp = cache.package_stamp(str(tmp_path))
    assert cache.package_stamp(str(tmp_path)) == stamp
    os.utime(tmp_path / "a.py", ns=(1, 1))                 # touched, not edited
    (tmp_path / "notes.txt").write_text("other\n")
    assert cache.package_stamp(str(tmp_path)) == stamp
    (tmp_path / "b.py").write_text("y = 3\n")              # same size, other contents
    edited = cache.package_stamp(str(tmp_path))
    assert edited != stamp
    (tmp_path / "c.py").write_text("")
    assert cache.package_stamp(str(tmp_path)) not in (stamp, edited)


def _cached_dispatchers(module):
    return [f for f in vars(module).values() if getattr(f, "_cache", None) is not None
            and hasattr(f._cache, "_impl") and f.__module__ == module.__name__]


def test_every_cached_kernel_is_stamped_with_the_package():
    assert cache.install()
    modules = [importlib.import_module(f"{cpu.__name__}.{m.name}") for m in pkgutil.iter_modules(cpu.__path__)]
    kernels = [f for module in modules for f in _cached_dispatchers(module)]
    winograd = importlib.import_module(f"{cpu.__name__}.winograd")
    kernels += winograd.kernels(2, numpy.float32)          # made on demand, in a closure
    assert len(kernels) > 30
    stamp = cache.package_stamp()
    for kernel in kernels:
        locator = kernel._cache._impl.locator
        assert isinstance(locator, cache._PackageStamp), kernel
        assert locator.get_source_stamp() == stamp, kernel


@pytest.mark.parametrize("cache_dir", [True, False], ids=["NUMBA_CACHE_DIR", "in-tree"])
def test_editing_a_helper_recompiles_its_callers(tmp_path, cache_dir):
    """In a copy of the package: a kernel is compiled, then reused from
    the cache; loops.py is edited, and the kernel, in another file, gives
    the new helper's result instead of loading its stale code."""
    root = os.path.dirname(os.path.dirname(cpu.__file__))
    shutil.copytree(root, tmp_path / "kernels", ignore=shutil.ignore_patterns("__pycache__", "cuda"))
    package = tmp_path / "kernels" / "cpu"
    loops = package / "loops.py"
    loops.write_text(loops.read_text() + PROBE_HELPER)
    (package / "probe.py").write_text(PROBE_KERNEL)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env["PYTHONPATH"] = str(tmp_path)
    if cache_dir:
        env["NUMBA_CACHE_DIR"] = str(tmp_path / "numba-cache")

    def run():
        out = subprocess.run([sys.executable, "-c", RUN_PROBE], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        value, hits, path = out.stdout.split()
        assert path.startswith(str(tmp_path))
        return int(value), int(hits)

    assert run() == (1, 0)                                  # compiled and saved
    assert run() == (1, 1)                                  # unchanged: loaded from the cache
    loops.write_text(loops.read_text().replace("return 1  # the probe's value", "return 2"))
    assert run() == (2, 0)                                  # loops.py edited: compiled anew


def test_import_minicnn_does_not_import_numba():
    code = "import sys, minicnn, minicnn.kernels.cpu; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False"]
