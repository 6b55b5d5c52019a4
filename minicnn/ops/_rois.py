"""The two ways torchvision.ops takes regions of interest, as one array.

``boxes`` is either a Tensor (K, 5) of rows (batch index, x1, y1, x2,
y2), or a list with one Tensor (L_i, 4) of xyxy boxes per image, which
is the same as the rows (i, box) of every box of image i, in order.
"""
from ..backend import get_array_module
from ..tensor import Tensor


def as_rois(boxes, input, op):
    """``boxes`` as a (K, 5) array of ``input``'s dtype, with each batch
    index checked against ``input``'s N."""
    if isinstance(boxes, (list, tuple)):
        for i, b in enumerate(boxes):
            if not isinstance(b, Tensor):
                raise TypeError(f"{op}: boxes[{i}] must be a Tensor, got {type(b).__name__}")
            if b.ndim != 2 or b.shape[1] != 4:
                raise ValueError(f"{op}: boxes as a list must hold Tensor[L, 4], got boxes[{i}] of shape "
                                 f"{tuple(b.shape)}")
        xp = get_array_module(input.data)
        parts = [xp.concatenate([xp.full((b.shape[0], 1), i, dtype=input.dtype), b.data.astype(input.dtype)], 1)
                 for i, b in enumerate(boxes)]
        rois = xp.concatenate(parts, 0) if parts else xp.zeros((0, 5), dtype=input.dtype)
    elif isinstance(boxes, Tensor):
        if boxes.ndim != 2 or boxes.shape[1] != 5:
            raise ValueError(f"{op}: boxes as a Tensor must be Tensor[K, 5] (batch index, x1, y1, x2, y2), got "
                             f"shape {tuple(boxes.shape)}")
        if boxes.dtype != input.dtype:
            raise TypeError(f"{op}: boxes must have input's dtype {input.dtype}, got {boxes.dtype}")
        rois = boxes.data
    else:
        raise TypeError(f"{op}: boxes must be a Tensor[K, 5] or a list of Tensor[L, 4], got {type(boxes).__name__}")
    index = rois[:, 0].astype(int)
    if rois.shape[0] and (index.min() < 0 or index.max() >= input.shape[0]):
        raise ValueError(f"{op}: a box's batch index {int(index.min() if index.min() < 0 else index.max())} is "
                         f"outside the input's batch of {input.shape[0]} (input shape {tuple(input.shape)})")
    return get_array_module(rois).ascontiguousarray(rois)


def check_input(input, op):
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: input must be a Tensor, got {type(input).__name__}")
    if input.ndim != 4:
        raise ValueError(f"{op}: input must be (N, C, H, W), got shape {tuple(input.shape)}")
    if input.dtype.kind != "f":
        raise TypeError(f"{op}: input must be floating point, got dtype {input.dtype}")


def output_pair(output_size, op):
    """``output_size``, an int or (height, width), as a pair of positive ints."""
    size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if len(size) == 1:
        size = (size[0], size[0])
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
        raise ValueError(f"{op}: output_size must be a positive int or (height, width), got {output_size!r}")
    return size
