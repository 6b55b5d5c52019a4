"""The Numba SGD update (kernels/cpu/optim.py) against its NumPy reference
(minicnn/optim/sgd.py) on hypothesis-drawn hyperparameters."""
import numpy
import pytest
from hypothesis import given, settings, strategies as st

from minicnn.kernels import registry

pytest.importorskip("numba")

RTOL = {numpy.float32: 1e-6, numpy.float64: 1e-15}


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([(7,), (3, 4, 5), (1,)]),
       st.sampled_from([numpy.float32, numpy.float64]), st.sampled_from([0.0, 0.9]),
       st.sampled_from([0.0, 0.3]), st.sampled_from([0.0, 1e-2]), st.booleans(), st.booleans(),
       st.booleans(), st.booleans())
def test_sgd_update_matches_the_reference(seed, shape, dtype, momentum, dampening, weight_decay,
                                          nesterov, maximize, first, transposed):
    if nesterov and (momentum == 0 or dampening != 0):
        nesterov = False   # torch refuses that combination
    rng = numpy.random.default_rng(seed)
    p, g, buf = (rng.standard_normal(shape).astype(dtype) for _ in range(3))
    if transposed:     # a non-contiguous gradient: the kernel updates contiguous copies
        g = numpy.ascontiguousarray(g.T).T
    fast, reference = (registry.implementations("sgd_update")[b] for b in ("numba", "numpy"))
    results = []
    for update in (fast, reference):
        mine_p, mine_buf = p.copy(), buf.copy() if momentum else None
        update(mine_p, g, mine_buf, 0.1, momentum, dampening, weight_decay, nesterov, maximize, first)
        results.append((mine_p, mine_buf))
    (p1, b1), (p2, b2) = results
    numpy.testing.assert_allclose(p1, p2, rtol=RTOL[dtype], atol=RTOL[dtype])
    assert not numpy.array_equal(p1, p)   # the parameter moved
    if momentum:
        numpy.testing.assert_allclose(b1, b2, rtol=RTOL[dtype], atol=RTOL[dtype])
