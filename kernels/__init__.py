"""Compute kernels below the ops: Numba CPU kernels in ``kernels.cpu``,
CUDA kernels (``.cu`` sources launched through CuPy) in ``kernels.cuda``.

Each kernel is compiled lazily, on first use, with ``cache=True``, so
``import minicnn`` stays fast and later processes reuse the compiled code.
"""
import os

# Numba's parallel loops run on a "threading layer". Its default here is
# OpenMP, whose thread pool competes with the separate OpenMP runtime of
# torch (imported side by side in tests and benchmarks) and with
# OpenBLAS's threads: a LeNet-5 training step measured 204 ms with the
# OpenMP layer and 16 ms with Numba's own "workqueue" layer on 2 cores.
# The variable must be set before the first parallel kernel runs; a user's
# own setting wins.
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
