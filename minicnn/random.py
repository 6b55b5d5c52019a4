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


def uniform(shape, dtype, xp=numpy, generator=None, low=0.0, high=1.0, out=None):
    """U(low, high) samples of ``shape`` and ``dtype`` on the module ``xp``,
    drawn in that precision (see ``_draw``); into ``out`` when given (see
    ``_draw``), which is returned."""
    values = _draw((generator or _generator).random, shape, dtype, out)
    if (low, high) != (0.0, 1.0):       # as NumPy's Generator.uniform: low + (high - low) * U(0, 1)
        values *= high - low
        values += low
    return _finish(values, dtype, xp)


def normal(shape, dtype, xp=numpy, generator=None, mean=0.0, std=1.0, out=None):
    """N(mean, std^2) samples of ``shape`` and ``dtype`` on the module
    ``xp``, drawn in that precision (see ``_draw``); into ``out`` when
    given (see ``_draw``), which is returned."""
    values = _draw((generator or _generator).standard_normal, shape, dtype, out)
    if (mean, std) != (0.0, 1.0):       # as NumPy's Generator.normal: mean + std * N(0, 1)
        values *= std
        values += mean
    return _finish(values, dtype, xp)


def _draw(sample, shape, dtype, out=None):
    """``sample(shape)`` in the precision of ``dtype``: float32 and float16
    draw float32 (NumPy draws no float16), so a float32 tensor never
    passes through a float64 array twice its size; everything else draws
    float64, the stream that seeded float64 results have always had.

    ``out``, a C-contiguous NumPy array of ``shape`` whose dtype is the
    precision drawn in, takes the samples itself: the same numbers, and no
    temporary as large as the tensor (a VGG's 100M-value classifier
    weight); otherwise ``out`` is ignored."""
    precise = numpy.float32 if numpy.dtype(dtype) in (numpy.float32, numpy.float16) else numpy.float64
    shape = (shape,) if isinstance(shape, (int, numpy.integer)) else tuple(shape)
    if isinstance(out, numpy.ndarray) and out.dtype == precise and out.flags.c_contiguous and out.shape == shape:
        return sample(dtype=precise, out=out)
    return sample(shape, dtype=precise)


def _finish(values, dtype, xp):
    values = values.astype(dtype, copy=False)
    return values if xp is numpy else xp.asarray(values)
