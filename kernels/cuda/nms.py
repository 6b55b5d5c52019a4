"""Non-maximum suppression on the GPU (``nms.cu``), with the contract of
the NumPy reference ``nms_reference`` in ``minicnn/ops/nms.py``: the
boxes are sorted by score here (a stable descending sort, as there),
the suppression mask and the greedy scan run on the device, and only
the kept count comes back to the host."""
from .loader import array_module, f64, i32, i64, launch

WORD = 64


def nms(boxes, scores, iou_threshold):
    """boxes (N, 4) xyxy, scores (N,) -> int64 indices of the kept boxes,
    best score first."""
    xp = array_module(boxes)
    n = scores.shape[0]
    order = (n - 1 - xp.argsort(scores[::-1], kind="stable"))[::-1]
    sorted_boxes = xp.ascontiguousarray(boxes[order])
    areas = xp.ascontiguousarray((sorted_boxes[:, 2] - sorted_boxes[:, 0]) * (sorted_boxes[:, 3] - sorted_boxes[:, 1]))
    words = -(-n // WORD)
    mask = xp.empty(n * words, dtype=xp.int64)
    launch("nms.cu", "nms_mask", boxes.dtype, n * words, sorted_boxes, areas, mask, i64(n), i32(words),
           f64(iou_threshold))
    removed = xp.zeros(words, dtype=xp.int64)
    kept = xp.empty(n, dtype=xp.int64)
    count = xp.zeros(1, dtype=xp.int64)
    launch("nms.cu", "nms_scan", boxes.dtype, 1, mask, removed, kept, count, i64(n), i32(words))
    return order[kept[:int(count[0])]].astype(xp.int64)
