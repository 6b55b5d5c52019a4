"""Special functions NumPy lacks, as Numba ufuncs.

``erf(x)`` is needed by the exact GELU. NumPy has no erf; ``math.erf`` is
exact but scalar, so it is compiled into a ufunc with ``numba.vectorize``
the first time it is used (and cached on disk for later processes).
"""
import math

_erf_ufunc = None


def erf(x):
    """Elementwise error function of a float32/float64 NumPy array."""
    global _erf_ufunc
    if _erf_ufunc is None:
        import numba

        from . import cache
        cache.install()                 # the package's cache stamp, as for the other kernels

        @numba.vectorize(["float32(float32)", "float64(float64)"], cache=True)
        def _erf(v):
            return math.erf(v)

        _erf_ufunc = _erf
    return _erf_ufunc(x)
