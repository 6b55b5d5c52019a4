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
call, as torchvision's does. All levels fill one output, each region's
rows read from its level's map (one ``multiscale_roi_align_forward``
call), so no per-level pieces are joined and put back in order.
"""
import math

import numpy

from ..autograd import Function
from ..backend import get_array_module
from ..kernels import registry
from ..nn import Module
from ..tensor import Tensor
from .boxes import box_area
from ._rois import check_input, output_pair
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


@registry.register("multiscale_roi_align_forward", "numpy")
def multiscale_roi_align_forward_reference(rois, levels, pooled, scales, sampling_ratio, aligned, *maps):
    """rois (K, 5), levels (K,) ints, maps[l] (N, C, H_l, W_l) read at
    scales[l] -> (K, C, PH, PW): region k pooled by roi_align from
    maps[levels[k]]."""
    xp = get_array_module(maps[0])
    forward = registry.lookup("roi_align_forward", xp)
    y = xp.empty((rois.shape[0], maps[0].shape[1]) + tuple(pooled), dtype=maps[0].dtype)
    for level, (x, scale) in enumerate(zip(maps, scales)):
        members = xp.nonzero(levels == level)[0]
        y[members] = forward(x, rois[members], pooled, scale, sampling_ratio, aligned)
    return y


registry.register("multiscale_roi_align_forward", "numba",
                  "minicnn.kernels.cpu.roi_align:multiscale_roi_align_forward")


class MultiScaleRoIAlignFunction(Function):
    """maps (N, C, H_l, W_l), one per level -> (K, C, PH, PW), region k
    from level ``levels[k]``; the rois and levels are constants. The
    gradient of each map is roi_align's of its own regions."""

    def __init__(self, rois, levels, pooled, scales, sampling_ratio):
        self.rois, self.levels, self.pooled, self.scales = rois, levels, pooled, scales
        self.sampling_ratio = int(sampling_ratio)

    def forward(self, *maps):
        self.shapes = [x.shape for x in maps]
        xp = get_array_module(maps[0])
        return registry.lookup("multiscale_roi_align_forward", xp)(
            self.rois, self.levels, self.pooled, self.scales, self.sampling_ratio, False,
            *[xp.ascontiguousarray(x) for x in maps])

    def backward(self, gy):
        g = gy.data
        xp = get_array_module(g)
        backward = registry.lookup("roi_align_backward", xp)
        grads = []
        for level, (shape, scale) in enumerate(zip(self.shapes, self.scales)):
            members = xp.nonzero(self.levels == level)[0]
            grads.append(backward(xp.ascontiguousarray(g[members]), self.rois[members], shape, scale,
                                  self.sampling_ratio, False))
        return tuple(grads)


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
        for feature in features:
            check_input(feature, "MultiScaleRoIAlign")
        pooled = output_pair(self.output_size, "MultiScaleRoIAlign")
        xp = get_array_module(features[0].data)
        levels = self.map_levels(boxes).data
        index = xp.concatenate([xp.full(b.shape[0], i, dtype=boxes[0].dtype) for i, b in enumerate(boxes)])
        rois = xp.concatenate([index[:, None], xp.concatenate([b.data for b in boxes])], 1)
        return MultiScaleRoIAlignFunction.apply(*features, rois=rois.astype(features[0].dtype), levels=levels,
                                                pooled=pooled, scales=tuple(self.scales),
                                                sampling_ratio=self.sampling_ratio)

    def __repr__(self):
        return (f"{self.__class__.__name__}(featmap_names={self.featmap_names}, "
                f"output_size={self.output_size}, sampling_ratio={self.sampling_ratio})")
