"""Hypothesis strategies for shapes, broadcasting pairs and arrays."""
import numpy
from hypothesis import strategies as st

dims = st.integers(min_value=1, max_value=4)


def shapes(min_dims=0, max_dims=4, max_side=4):
    """Array shapes with every side in [1, max_side]."""
    return st.lists(st.integers(1, max_side), min_size=min_dims, max_size=max_dims).map(tuple)


@st.composite
def broadcast_pairs(draw, max_dims=4, max_side=4):
    """Two shapes that broadcast together: a base shape, and the other with
    some dims set to 1 and some leading dims dropped (either way round)."""
    base = draw(shapes(1, max_dims, max_side))
    other = [1 if draw(st.booleans()) else n for n in base]
    other = tuple(other[draw(st.integers(0, len(other))):])
    return (base, other) if draw(st.booleans()) else (other, base)


@st.composite
def arrays(draw, shape, low=-2.0, high=2.0):
    """A float64 array of ``shape`` with values drawn via a hypothesis seed."""
    seed = draw(st.integers(0, 2**32 - 1))
    return numpy.random.default_rng(seed).uniform(low, high, size=shape)
