"""Concatenation shared out among the threads.

``numpy.concatenate`` copies on one thread. A network that concatenates
its feature maps (DenseNet: every dense layer joins all the maps before
it, so the copies grow with the square of the depth) spends a sizable
part of a forward pass there: DenseNet-121's fused forward at batch 8,
37 ms of ~380 on the concatenations. The copies are independent, so the
threads take a share each: with at least as many leading rows (the
dims before ``axis``, images for a channel concatenation) as threads,
a run of rows of every input each; with fewer (one image), a share of
each input's contiguous block. NumPy's slice assignment releases the
GIL for such copies, so the threads copy at once. The result is
``numpy.concatenate``'s, element for element (a copy has no rounding).
"""
import math

import numpy

from .threads import run_in_parallel, split, thread_count


#: Fewest elements in all for the copies to be shared out: smaller ones
#: are in cache, where one thread copies them at 20-30 GB/s, faster than
#: a parallel call pays for (8 x 896 x 14x14: 0.20 ms by NumPy, 0.31 on
#: two threads; 8 x 384 x 28x28: 0.80 -> 0.45; 8 x 224 x 56x56: 2.6 ->
#: 1.7).
MIN_SIZE = 1 << 21


def concatenate(arrays, axis):
    """numpy.concatenate(arrays, axis) for arrays of one dtype, C-contiguous
    (anything else, or too little to share, goes to NumPy itself)."""
    arrays = [numpy.asarray(a) for a in arrays]
    first = arrays[0]
    total = sum(a.size for a in arrays)
    threads = thread_count()
    if (threads == 1 or total < MIN_SIZE or any(a.dtype != first.dtype for a in arrays)
            or not all(a.flags.c_contiguous for a in arrays)):
        return numpy.concatenate(arrays, axis=axis)
    shape = list(first.shape)
    shape[axis] = sum(a.shape[axis] for a in arrays)
    out = numpy.empty(shape, first.dtype)
    outer = math.prod(shape[:axis])
    rows = out.reshape(outer, -1)                     # each leading row: the inputs' blocks side by side
    blocks, start = [], 0
    for a in arrays:
        width = a.size // outer if outer else 0
        blocks.append((a.reshape(outer, width), start, width))
        start += width
    if outer >= threads:
        def work(mine):                 # a run of leading rows of every input
            for a, at, width in blocks:
                rows[mine, at:at + width] = a[mine]
        run_in_parallel(work, [slice(run.start, run.stop) for run in split(range(outer), threads)])
        return out

    def work_columns(part):             # a share of each input's block, all leading rows
        for a, at, width in blocks:
            lo, hi = width * part // threads, width * (part + 1) // threads
            rows[:, at + lo:at + hi] = a[:, lo:hi]
    run_in_parallel(work_columns, list(range(threads)))
    return out
