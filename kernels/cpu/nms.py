"""Non-maximum suppression compiled with Numba: the greedy loop of
``minicnn/ops/nms.py`` (read its docstring for the rules), with the
contract of its NumPy reference ``nms_reference``.

The boxes are first gathered in score order into four coordinate arrays
(and their areas), so the inner loop, the IoU of the kept box with every
later one still in play, reads memory in order. All arithmetic stays in
the boxes' dtype, as the reference's (and torchvision's) does.
"""
import numba
import numpy

from .loops import JIT as _JIT


@numba.njit(**_JIT)
def _suppress(x1, y1, x2, y2, areas, iou_threshold, zero, kept):
    """Greedy NMS over boxes already in decreasing score order: writes the
    positions of the kept ones into ``kept`` and returns how many."""
    n = x1.shape[0]
    in_play = numpy.ones(n, dtype=numpy.bool_)
    count = 0
    for i in range(n):
        if not in_play[i]:
            continue
        kept[count] = i
        count += 1
        for j in range(i + 1, n):
            if not in_play[j]:
                continue
            w = max(min(x2[i], x2[j]) - max(x1[i], x1[j]), zero)
            h = max(min(y2[i], y2[j]) - max(y1[i], y1[j]), zero)
            inter = w * h
            if inter / (areas[i] + areas[j] - inter) > iou_threshold:
                in_play[j] = False
    return count


def nms(boxes, scores, iou_threshold):
    """boxes (N, 4) xyxy, scores (N,) -> int64 indices of the kept boxes,
    best score first."""
    n = scores.shape[0]
    # Stable, descending, NaN first: the order torch's sort gives.
    order = (n - 1 - numpy.argsort(scores[::-1], kind="stable"))[::-1]
    x1, y1, x2, y2 = (numpy.ascontiguousarray(boxes[order, i]) for i in range(4))
    areas = (x2 - x1) * (y2 - y1)
    kept = numpy.empty(n, dtype=numpy.int64)
    count = _suppress(x1, y1, x2, y2, areas, float(iou_threshold), boxes.dtype.type(0), kept)
    return order[kept[:count]].astype(numpy.int64)
