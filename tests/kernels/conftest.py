"""The kernel tests test the CPU kernels: each starts with the default
backend ("auto", the kernels where they exist), whatever MINICNN_BACKEND
the suite runs under (CI also runs it with "numpy"); a test that wants a
particular backend sets it itself."""
import pytest

from minicnn.kernels import registry


@pytest.fixture(autouse=True)
def kernels_backend():
    previous = registry.get_backend()
    registry.set_backend("auto")
    yield
    registry.set_backend(previous)


@pytest.fixture
def fast_kernel(monkeypatch):
    """The strategy as on a CPU where the implicit kernels (both
    orientations) run at full speed: a rule's answer must not depend on
    the machine running the tests."""
    monkeypatch.setitem(registry._implementations["conv_register_tiles"], "numba", lambda: "avx512")
