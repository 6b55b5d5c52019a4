"""Compute kernels below the ops: Numba CPU kernels in ``kernels.cpu``,
CUDA kernels (``.cu`` sources launched through CuPy) in ``kernels.cuda``.

Each kernel is compiled lazily, on first use, with ``cache=True``, so
``import minicnn`` stays fast and later processes reuse the compiled code.
"""
import os

# minicnn's kernels share out their work on the threads of one pool of
# their own (kernels/cpu/threads.py), not with Numba's ``prange``; but
# ``numba.get_num_threads()``, the thread-count setting that pool reads,
# starts Numba's "threading layer". Its default here is OpenMP, whose
# runtime competes with torch's (imported side by side in tests and
# benchmarks): a LeNet-5 training step measured 204 ms with it and 16 ms
# with Numba's own "workqueue" layer on 2 cores, when the kernels still
# used ``prange``. The variable must be set before the layer starts; a
# user's own setting wins.
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
