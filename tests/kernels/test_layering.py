"""The kernels sit below minicnn: every module of kernels/ imports only
the standard library, the array and compiler libraries, and other
modules of kernels/ (geometry.py for the convolution arithmetic), never
minicnn itself."""
import ast
import pathlib
import sys

import pytest

KERNELS = pathlib.Path(__file__).resolve().parents[2] / "kernels"
#: Third-party imports a kernel may make: arrays and compilers, and
#: threadpoolctl, through which threads.py makes NumPy's BLAS single-threaded.
ALLOWED = {"numpy", "numba", "llvmlite", "cupy", "cupyx", "cuda", "threadpoolctl"}
MODULES = sorted(KERNELS.rglob("*.py"))


def _imports(path):
    """(module name or None, relative level) of every import in the file."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, 0) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.module, node.level


def test_the_kernels_folder_has_modules():
    assert len(MODULES) > 15


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(KERNELS)))
def test_a_kernel_module_imports_nothing_of_minicnn(path):
    depth = len(path.relative_to(KERNELS).parts) - 1          # packages between kernels/ and the file
    for module, level in _imports(path):
        if level:
            assert level <= depth + 1, f"{path.name} imports above kernels/: {'.' * level}{module}"
            continue
        top = module.split(".")[0]
        assert top in sys.stdlib_module_names or top in ALLOWED, f"{path.name} imports {module}"
