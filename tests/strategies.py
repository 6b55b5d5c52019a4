"""Hypothesis strategies for shapes, broadcasting pairs and arrays, and the
arrays of a convolution drawn from a hypothesis seed."""
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


def conv_arrays(data, N, C, O, groups, kernel, in_size, out_size, dtype, bias):
    """(x, w, b, gy) of a convolution, standard normal, from a seed drawn
    with ``data`` (hypothesis's ``st.data()``): x (N, C, *in_size), w (O,
    C / groups, *kernel), b (O,) or None where not ``bias``, gy (N, O,
    *out_size)."""
    rng = numpy.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((N, C) + tuple(in_size)).astype(dtype)
    w = rng.standard_normal((O, C // groups) + tuple(kernel)).astype(dtype)
    b = rng.standard_normal(O).astype(dtype) if bias else None
    gy = rng.standard_normal((N, O) + tuple(out_size)).astype(dtype)
    return x, w, b, gy


@st.composite
def conv_geometries(draw, groups, in_per_group, out_per_group, kernels, strides, max_padding, extra, images):
    """(N, C, O, groups, kernel, stride, padding, dilation, in_size,
    out_size) of a 2-D convolution: G drawn from the strategy ``groups``,
    C and O G times a multiplier from the ranges ``in_per_group`` and
    ``out_per_group``, a kernel from ``kernels``, a stride per dim from
    the ranges ``strides``, dilation 1 or 2 per dim, symmetric padding
    ((p, p) per dim, p up to ``max_padding``), each input side the least
    that gives an output of one pixel plus up to ``extra``, N from 1 to
    ``images``."""
    G = draw(groups)
    C, O = G * draw(st.integers(*in_per_group)), G * draw(st.integers(*out_per_group))
    kernel = draw(st.sampled_from(kernels))
    stride = tuple(draw(st.integers(*run)) for run in strides)
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = tuple((p, p) for p in (draw(st.integers(0, max_padding)), draw(st.integers(0, max_padding))))
    reach = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
    in_size = tuple(max(1, r - 2 * p[0]) + draw(st.integers(0, extra)) for r, p in zip(reach, padding))
    out_size = tuple((n + 2 * p[0] - r) // s + 1 for n, p, r, s in zip(in_size, padding, reach, stride))
    return draw(st.integers(1, images)), C, O, G, kernel, stride, padding, dilation, in_size, out_size
