"""The global random number generator: ``mc.manual_seed`` seeds it, and
every random op (``mc.randn``, dropout, initialisation, shuffling) draws
from it, so one seed makes a whole run repeatable.

minicnn draws from NumPy's PCG64 generator, so seeded numbers differ from
torch's for the same seed; the distributions are the same.
"""
import numpy

_generator = numpy.random.default_rng()


def manual_seed(seed):
    """Reseed the global generator; returns it."""
    global _generator
    if not isinstance(seed, (int, numpy.integer)) or isinstance(seed, bool):
        raise TypeError(f"manual_seed: seed must be an int, got {type(seed).__name__}")
    _generator = numpy.random.default_rng(int(seed))
    return _generator


seed = manual_seed


def default_generator():
    """The global ``numpy.random.Generator``."""
    return _generator


def generator(seed=None):
    """A new independent generator (``mc.Generator`` style), seeded or not."""
    return numpy.random.default_rng(seed)


def get_rng_state():
    """The global generator's state, as a dict (JSON-friendly)."""
    return _generator.bit_generator.state


def set_rng_state(state):
    _generator.bit_generator.state = state


def uniform(shape, dtype, xp=numpy, generator=None):
    """Uniform [0, 1) samples of ``shape`` on the module ``xp``."""
    values = (generator or _generator).random(shape, dtype=numpy.float64).astype(dtype, copy=False)
    return values if xp is numpy else xp.asarray(values)


def normal(shape, dtype, xp=numpy, generator=None):
    """Standard normal samples of ``shape`` on the module ``xp``."""
    values = (generator or _generator).standard_normal(shape, dtype=numpy.float64).astype(dtype, copy=False)
    return values if xp is numpy else xp.asarray(values)
