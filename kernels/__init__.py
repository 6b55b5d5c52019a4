"""Compute kernels below the ops: Numba CPU kernels in ``minicnn.kernels.cpu``,
CUDA kernels (``.cu`` sources launched through CuPy) in
``minicnn.kernels.cuda``, the registry that picks one (``registry``) and
the convolution arithmetic they share (``geometry``).

This folder sits at the top of the repository and installs as
``minicnn.kernels``. Its modules import only the standard library, NumPy,
Numba and CuPy, and each other. Each kernel is compiled lazily, on first
use, with ``cache=True``, so ``import minicnn`` stays fast and later
processes reuse the compiled code. Nothing here changes the environment:
the CPU kernels share out their work on one pool of their own
(``cpu/threads.py``), never on Numba's ``prange`` pool.
"""
