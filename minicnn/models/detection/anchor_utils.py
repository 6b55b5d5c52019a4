"""Anchor generators (torchvision's
``torchvision.models.detection.anchor_utils``): the reference boxes a
one-stage detector classifies and refines, one set per feature-map cell.

``AnchorGenerator`` (RetinaNet, FCOS, Faster R-CNN): per feature map, a
"cell" of boxes centred on 0, one per (size s, aspect ratio r = h / w),
of width s / sqrt(r) and height s sqrt(r), corners rounded to integers;
the cell is shifted to every position (x * stride_w, y * stride_h) of the
map, stride = padded image size // map size. Anchors of one image are
listed level by level, within a level position by position (row-major),
within a position size-major over the cell: the order of the heads'
outputs.

``DefaultBoxGenerator`` (SSD): per map k of size f_k, boxes centred on
the cells ((j + 0.5) / f_k, (i + 0.5) / f_k) in units of the image (f_k
is image size / step when ``steps`` are given), of scale s_k and
sqrt(s_k s_{k+1}) (two squares), and s_k sqrt(a) by s_k / sqrt(a) and
its transpose per extra aspect ratio a; the scales run linearly from
``min_ratio`` to ``max_ratio`` unless given. ``clip`` clamps the widths
and heights to [0, 1]. Boxes are then scaled to pixels of the padded
image, xyxy.

As in torchvision, the cell shapes and the SSD centres are computed in
float32 and then cast to the features' dtype, so float64 models get
torchvision's float64 anchors exactly.
"""
import math

import numpy

from ... import nn
from ...backend import get_array_module
from ...tensor import Tensor

__all__ = ["AnchorGenerator", "DefaultBoxGenerator"]


class AnchorGenerator(nn.Module):
    """``sizes`` (one tuple per feature map) and ``aspect_ratios`` (one
    tuple per map, or one tuple for all); forward(image_list, feature_maps)
    -> one (A, 4) Tensor of xyxy anchors per image (the same for all)."""

    def __init__(self, sizes=((128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),)):
        super().__init__()
        if not isinstance(sizes[0], (list, tuple)):
            sizes = tuple((s,) for s in sizes)
        if not isinstance(aspect_ratios[0], (list, tuple)):
            aspect_ratios = (aspect_ratios,) * len(sizes)
        if len(sizes) != len(aspect_ratios):
            raise ValueError(f"AnchorGenerator: sizes and aspect_ratios must have one entry per feature map, got "
                             f"{len(sizes)} and {len(aspect_ratios)}")
        self.sizes = sizes
        self.aspect_ratios = aspect_ratios
        self.cell_anchors = [self.generate_anchors(s, a) for s, a in zip(sizes, aspect_ratios)]

    def generate_anchors(self, scales, aspect_ratios, dtype=numpy.float32):
        """(len(aspect_ratios) * len(scales), 4) boxes centred on 0, in float32."""
        scales = numpy.asarray(scales, dtype=dtype)
        aspect_ratios = numpy.asarray(aspect_ratios, dtype=dtype)
        h_ratios = numpy.sqrt(aspect_ratios)
        w_ratios = dtype(1) / h_ratios
        ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)
        hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
        # numpy.round and torch.round both round halves to even.
        return numpy.round(numpy.stack([-ws, -hs, ws, hs], axis=1) / dtype(2))

    def num_anchors_per_location(self):
        return [len(s) * len(a) for s, a in zip(self.sizes, self.aspect_ratios)]

    def grid_anchors(self, grid_sizes, strides, xp=numpy, dtype=numpy.float32):
        """Per feature map: (H W len(cell), 4) anchors, the cell at every stride."""
        if not len(grid_sizes) == len(strides) == len(self.cell_anchors):
            raise ValueError(f"AnchorGenerator: {len(grid_sizes)} feature maps for {len(self.cell_anchors)} "
                             f"anchor sizes / aspect ratios: there must be one per feature map")
        anchors = []
        for (grid_h, grid_w), (stride_h, stride_w), base in zip(grid_sizes, strides, self.cell_anchors):
            shift_x = xp.arange(grid_w, dtype=xp.int64) * stride_w
            shift_y = xp.arange(grid_h, dtype=xp.int64) * stride_h
            shift_y, shift_x = xp.meshgrid(shift_y, shift_x, indexing="ij")
            shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
            shifts = xp.stack((shift_x, shift_y, shift_x, shift_y), axis=1).astype(dtype)
            anchors.append((shifts[:, None, :] + xp.asarray(base, dtype=dtype)[None, :, :]).reshape(-1, 4))
        return anchors

    def forward(self, image_list, feature_maps):
        grid_sizes = [tuple(f.shape[-2:]) for f in feature_maps]
        image_size = image_list.tensors.shape[-2:]
        xp = get_array_module(feature_maps[0].data)
        strides = [(image_size[0] // g[0], image_size[1] // g[1]) for g in grid_sizes]
        per_level = self.grid_anchors(grid_sizes, strides, xp, feature_maps[0].dtype)
        anchors = xp.concatenate(per_level, axis=0)
        return [Tensor._wrap(anchors) for _ in image_list.image_sizes]


class DefaultBoxGenerator(nn.Module):
    """SSD's default boxes, as the module docstring says: ``aspect_ratios``
    one list per feature map; forward(image_list, feature_maps) -> one
    (A, 4) Tensor of xyxy boxes per image."""

    def __init__(self, aspect_ratios, min_ratio=0.15, max_ratio=0.9, scales=None, steps=None, clip=True):
        super().__init__()
        if steps is not None and len(aspect_ratios) != len(steps):
            raise ValueError("aspect_ratios and steps should have the same length")
        self.aspect_ratios = aspect_ratios
        self.steps = steps
        self.clip = clip
        num_outputs = len(aspect_ratios)
        if scales is None:
            if num_outputs > 1:
                range_ratio = max_ratio - min_ratio
                self.scales = [min_ratio + range_ratio * k / (num_outputs - 1.0) for k in range(num_outputs)]
                self.scales.append(1.0)
            else:
                self.scales = [min_ratio, max_ratio]
        else:
            if len(scales) != num_outputs + 1:
                raise ValueError(f"DefaultBoxGenerator: scales must have one more entry than aspect_ratios "
                                 f"({num_outputs + 1}), got {len(scales)}")
            self.scales = scales
        self._wh_pairs = self._generate_wh_pairs(num_outputs)

    def _generate_wh_pairs(self, num_outputs):
        pairs = []
        for k in range(num_outputs):
            s_k = self.scales[k]
            s_prime_k = math.sqrt(self.scales[k] * self.scales[k + 1])
            wh = [[s_k, s_k], [s_prime_k, s_prime_k]]
            for ar in self.aspect_ratios[k]:
                sq_ar = math.sqrt(ar)
                w, h = self.scales[k] * sq_ar, self.scales[k] / sq_ar
                wh.extend([[w, h], [h, w]])
            pairs.append(numpy.asarray(wh, dtype=numpy.float32))
        return pairs

    def num_anchors_per_location(self):
        return [2 + 2 * len(r) for r in self.aspect_ratios]

    def _grid_default_boxes(self, grid_sizes, image_size):
        """(A, 4) boxes (cx, cy, w, h) in units of the image, float32."""
        f32 = numpy.float32
        boxes = []
        for k, (f_h, f_w) in enumerate(grid_sizes):
            if self.steps is not None:
                x_f_k, y_f_k = image_size[1] / self.steps[k], image_size[0] / self.steps[k]
            else:
                y_f_k, x_f_k = f_h, f_w
            shifts_x = (numpy.arange(f_w).astype(f32) + f32(0.5)) / f32(x_f_k)
            shifts_y = (numpy.arange(f_h).astype(f32) + f32(0.5)) / f32(y_f_k)
            shift_y, shift_x = numpy.meshgrid(shifts_y, shifts_x, indexing="ij")
            centres = numpy.stack([shift_x.reshape(-1), shift_y.reshape(-1)], axis=-1)
            wh = numpy.clip(self._wh_pairs[k], 0, 1) if self.clip else self._wh_pairs[k]
            centres = numpy.repeat(centres, len(wh), axis=0)
            boxes.append(numpy.concatenate([centres, numpy.tile(wh, (f_h * f_w, 1))], axis=1))
        return numpy.concatenate(boxes, axis=0)

    def __repr__(self):
        return (f"{type(self).__name__}(aspect_ratios={self.aspect_ratios}, clip={self.clip}, "
                f"scales={self.scales}, steps={self.steps})")

    def forward(self, image_list, feature_maps):
        grid_sizes = [tuple(f.shape[-2:]) for f in feature_maps]
        image_size = image_list.tensors.shape[-2:]
        dtype = feature_maps[0].dtype
        xp = get_array_module(feature_maps[0].data)
        boxes = xp.asarray(self._grid_default_boxes(grid_sizes, image_size).astype(dtype))
        x_y_size = xp.asarray([image_size[1], image_size[0]], dtype=dtype)
        boxes = xp.concatenate([(boxes[:, :2] - 0.5 * boxes[:, 2:]) * x_y_size,
                                (boxes[:, :2] + 0.5 * boxes[:, 2:]) * x_y_size], axis=-1)
        return [Tensor._wrap(boxes) for _ in image_list.image_sizes]
