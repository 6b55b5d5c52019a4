"""Shared test set-up: one thread per test process, and tests/parity.py and
tests/strategies.py importable from every test folder."""
import os
import sys

# The suite runs as `pytest -n 2` on 2 cores: two worker processes, each of
# which would otherwise start a BLAS and a Numba thread pool as wide as the
# machine. Oversubscribed pools make every small kernel call wait for
# threads (milliseconds each), so each worker gets one thread. This must
# happen before NumPy or Numba are imported; pytest loads this file first,
# and the workers inherit the environment.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy
import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def rng():
    """A seeded NumPy generator, fresh for every test."""
    return numpy.random.default_rng(1234)


@pytest.fixture(params=["numpy", "numba"])
def backend(request):
    """Run the test with this CPU backend selected (kernels/registry.py),
    then restore the previous one."""
    from minicnn.kernels import registry
    previous = registry.get_backend()
    registry.set_backend(request.param)
    yield request.param
    registry.set_backend(previous)
