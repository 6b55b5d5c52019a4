"""Special functions on the GPU: CuPy's own (``cupyx.scipy.special``),
registered as the CUDA versions of the registry's primitives."""


def erf(x):
    """Elementwise error function of a float CuPy array."""
    import cupyx.scipy.special
    return cupyx.scipy.special.erf(x)
