"""MultiScaleRoIAlign: RoIAlign from the pyramid level that suits each
region's size (torchvision.ops.MultiScaleRoIAlign).

An FPN gives feature maps at strides 4, 8, 16, 32 (levels k = 2..5: a
map of level k is 2^-k the image's size). A small region is best read
from a fine map, a large one from a coarse map. The FPN paper's rule
(Lin et al. 2017, eq. 1) sends a region of w x h pixels to

    k = floor(k0 + log2(sqrt(w h) / s0) + eps),  clamped to [k_min, k_max]

with the canonical scale s0 = 224 (an ImageNet-sized region) going to
the canonical level k0 = 4; eps = 1e-6 keeps an exact power of two on
its level despite rounding. Each map's scale is inferred from its size
against the largest image, s = 2^round(log2(map size / image size)), so
k_min = -log2(finest scale) and k_max = -log2(coarsest scale).

The module remembers the scales (and the level mapper) from its first
call, as torchvision's does.
"""
import math

import numpy

from .. import functional as F
from ..backend import get_array_module
from ..nn import Module
from ..tensor import Tensor
from .boxes import box_area
from .roi_align import roi_align

__all__ = ["MultiScaleRoIAlign", "LevelMapper"]


class LevelMapper:
    """Sends each box to a pyramid level by the FPN rule (see the module
    docstring): ``mapper(boxlists)`` -> int64 Tensor (K,) of levels
    counted from ``k_min`` (0 = the finest map)."""

    def __init__(self, k_min, k_max, canonical_scale=224, canonical_level=4, eps=1e-6):
        self.k_min, self.k_max = k_min, k_max
        self.s0, self.lvl0, self.eps = canonical_scale, canonical_level, eps

    def __call__(self, boxlists):
        areas = [box_area(b).data for b in boxlists]
        xp = get_array_module(areas[0])
        s = xp.sqrt(xp.concatenate(areas))
        t = s.dtype.type
        levels = xp.floor(t(self.lvl0) + xp.log2(s / t(self.s0)) + t(self.eps))
        levels = xp.clip(levels, self.k_min, self.k_max)
        return Tensor._wrap(levels.astype(xp.int64) - self.k_min)


def _infer_scale(feature, image_size):
    """2^round(log2(map height / image height)): the map's scale, a power of two."""
    approx = float(feature.shape[-2]) / float(image_size[0])
    return 2.0 ** float(numpy.round(numpy.log2(numpy.float32(approx))))


class MultiScaleRoIAlign(Module):
    """RoIAlign over the maps of ``featmap_names``, each box from its level.

    forward(x, boxes, image_shapes): ``x`` a dict name -> (N, C, H_l, W_l)
    (maps not named are ignored), ``boxes`` a list of N Tensors (L_i, 4)
    in image coordinates, ``image_shapes`` the N (height, width) of the
    images -> (sum L_i, C, PH, PW), in the order of the boxes."""

    def __init__(self, featmap_names, output_size, sampling_ratio, *, canonical_scale=224, canonical_level=4):
        super().__init__()
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        self.featmap_names = featmap_names
        self.sampling_ratio = sampling_ratio
        self.output_size = tuple(output_size)
        self.scales = None
        self.map_levels = None
        self.canonical_scale = canonical_scale
        self.canonical_level = canonical_level

    def _setup_scales(self, features, image_shapes):
        if not image_shapes:
            raise ValueError("MultiScaleRoIAlign: image_shapes must list the (height, width) of every image, got none")
        largest = (max(s[0] for s in image_shapes), max(s[1] for s in image_shapes))
        self.scales = [_infer_scale(f, largest) for f in features]
        k_min = int(-math.log2(self.scales[0]))
        k_max = int(-math.log2(self.scales[-1]))
        self.map_levels = LevelMapper(k_min, k_max, self.canonical_scale, self.canonical_level)

    def forward(self, x, boxes, image_shapes):
        features = [v for k, v in x.items() if k in self.featmap_names]
        if not features:
            raise ValueError(f"MultiScaleRoIAlign: none of featmap_names {self.featmap_names} is among the maps "
                             f"{list(x)}")
        if self.scales is None or self.map_levels is None:
            self._setup_scales(features, image_shapes)
        if len(features) == 1:
            return roi_align(features[0], boxes, self.output_size, self.scales[0], self.sampling_ratio)
        xp = get_array_module(features[0].data)
        levels = self.map_levels(boxes).data
        index = xp.concatenate([xp.full(b.shape[0], i, dtype=boxes[0].dtype) for i, b in enumerate(boxes)])
        rois = xp.concatenate([index[:, None], xp.concatenate([b.data for b in boxes])], 1)
        # Each level pools its own boxes; the pieces are put back in the
        # boxes' order by one gather with the inverse permutation.
        order, pieces = [], []
        for level, (feature, scale) in enumerate(zip(features, self.scales)):
            members = xp.nonzero(levels == level)[0]
            order.append(members)
            pieces.append(roi_align(feature, Tensor._wrap(rois[members].astype(feature.dtype)), self.output_size,
                                    scale, self.sampling_ratio))
        inverse = xp.empty(rois.shape[0], dtype=xp.int64)
        inverse[xp.concatenate(order)] = xp.arange(rois.shape[0])
        return F.cat(pieces, 0)[inverse]

    def __repr__(self):
        return (f"{self.__class__.__name__}(featmap_names={self.featmap_names}, "
                f"output_size={self.output_size}, sampling_ratio={self.sampling_ratio})")
