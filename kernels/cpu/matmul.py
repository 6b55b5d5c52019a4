"""Matrix products shared out among minicnn's threads.

NumPy's BLAS runs single-threaded under minicnn (``threads.py``: one pool,
not two), so a large product outside the convolutions, a linear layer's,
would use one core. ``matmul(a, b)`` cuts the product into one block per
thread, each a single-threaded BLAS call writing its part of the result:

    a (..., n, k) @ b (k, m) -> (..., n, m)

with a's rows flattened to R = n * (its batch) rows: blocks of rows when
R >= m, else blocks of b's columns (a linear layer on a small batch has
few rows and many outputs). A column block of the result is still a BLAS
operand (unit stride along a row), so no block is copied. Products too
small for threads to pay, and batched products with a batched b, are one
``numpy.matmul``.
"""
import numpy

from .threads import run_in_parallel, split, thread_count

#: Multiply-adds below which a product runs on one thread: handing work to
#: another thread costs ~20-50 us, a core does ~50 GFLOP/s in float32.
PARALLEL_MACS = 1 << 21


def matmul(a, b):
    """a @ b for a (..., n, k) and a 2-D b (k, m), as ``numpy.matmul``."""
    threads = thread_count()
    if threads == 1 or a.ndim < 2 or b.ndim != 2 or a.size * b.shape[1] < PARALLEL_MACS:
        return numpy.matmul(a, b)
    k, m = b.shape
    rows = a.reshape(-1, k)
    out = numpy.empty((rows.shape[0], m), numpy.result_type(a, b))
    if rows.shape[0] >= m:
        def block(span):
            numpy.matmul(rows[span], b, out=out[span])
        spans = split(range(rows.shape[0]), threads)
    else:
        def block(span):
            numpy.matmul(rows, b[:, span], out=out[:, span])
        spans = split(range(m), threads)
    run_in_parallel(block, [slice(span.start, span.stop) for span in spans])
    return out.reshape(a.shape[:-1] + (m,))
