"""Compute kernels below the ops: Numba CPU kernels in ``kernels.cpu``
(CuPy CUDA kernels follow in ``kernels.cuda``).

Each kernel is compiled lazily, on first use, with ``cache=True``, so
``import minicnn`` stays fast and later processes reuse the compiled code.
"""
