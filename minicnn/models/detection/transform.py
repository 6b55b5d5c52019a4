"""``GeneralizedRCNNTransform``: what every torchvision detector does to
its list of images before the backbone sees them, and to its boxes after
(torchvision's ``torchvision.models.detection.transform``).

Before:

1. normalize each image: (image - mean) / std per channel;
2. resize it, keeping its aspect ratio, by
   scale = min(min_size / shorter side, max_size / longer side)
   (the shorter side becomes ``min_size`` unless the longer side would
   pass ``max_size``), with bilinear interpolation at that scale factor:
   the new size is floor(side * scale) and the sampling uses the
   recomputed ratio side / new side (``recompute_scale_factor=True``),
   as torch.nn.functional.interpolate does; ``fixed_size`` (SSD) resizes
   to one size instead. The targets' boxes are scaled by the same ratios;
3. batch the images into one zero-padded tensor (N, C, H, W) whose H and
   W are multiples of ``size_divisible`` (so every stride of the backbone
   divides them) and keep each image's own size.

After (``postprocess``, eval mode): scale the detected boxes from the
resized image back to the original one.

The box ratios are computed in float32, as torchvision computes them
(new side / old side as float32 tensors), so float64 boxes match its
to the last bit. Target masks are resized (nearest) as in torchvision;
pasting predicted masks back (Mask R-CNN) is not here. Unlike
torchvision, which ignores keyword arguments it does not know (a typo in
a detector's keywords lands here), an unknown keyword is a TypeError.
"""
import math

import numpy

from ... import functional as F
from ... import nn
from ...backend import get_array_module
from ...random import default_generator
from ...tensor import Tensor
from .image_list import ImageList

__all__ = ["GeneralizedRCNNTransform", "resize_boxes", "resize_keypoints"]


def _ratios(new_size, original_size):
    """(ratio_h, ratio_w) = new / old, rounded to float32 as torchvision's."""
    return tuple(float(numpy.float32(s) / numpy.float32(s_orig)) for s, s_orig in zip(new_size, original_size))


def resize_boxes(boxes, original_size, new_size):
    """xyxy ``boxes`` (K, 4) of an image of ``original_size`` (h, w) scaled
    to an image of ``new_size`` (h, w)."""
    ratio_h, ratio_w = _ratios(new_size, original_size)
    xp = get_array_module(boxes.data)
    scale = xp.asarray([ratio_w, ratio_h, ratio_w, ratio_h], dtype=boxes.dtype) if boxes.dtype.kind == "f" \
        else xp.asarray([ratio_w, ratio_h, ratio_w, ratio_h], dtype=xp.float32)
    return boxes * Tensor._wrap(scale)


def resize_keypoints(keypoints, original_size, new_size):
    """``keypoints`` (K, P, 3) (x, y, visibility) scaled as resize_boxes scales boxes."""
    ratio_h, ratio_w = _ratios(new_size, original_size)
    xp = get_array_module(keypoints.data)
    return keypoints * Tensor._wrap(xp.asarray([ratio_w, ratio_h, 1.0], dtype=keypoints.dtype))


def _resize_image_and_masks(image, self_min_size, self_max_size, target=None, fixed_size=None):
    """(C, H, W) ``image`` resized as the module docstring says; masks in
    ``target`` resized to the same size (nearest)."""
    h, w = image.shape[-2:]
    if fixed_size is not None:
        size, scale_factor, recompute = [fixed_size[1], fixed_size[0]], None, None
    else:
        size, scale_factor, recompute = None, min(self_min_size / min(h, w), self_max_size / max(h, w)), True
    image = F.interpolate(image[None], size=size, scale_factor=scale_factor, mode="bilinear",
                          recompute_scale_factor=recompute, align_corners=False)[0]
    if target is not None and "masks" in target:
        masks = target["masks"][:, None].float()
        masks = F.interpolate(masks, size=size, scale_factor=scale_factor, recompute_scale_factor=recompute)
        target["masks"] = Tensor._wrap(masks.data[:, 0].astype("uint8"))
    return image, target


class GeneralizedRCNNTransform(nn.Module):
    """forward(images, targets=None) -> (ImageList, targets) with the
    images normalized with ``image_mean`` / ``image_std``, resized by
    ``min_size`` / ``max_size`` (or to ``fixed_size`` = (width, height)),
    batched with ``size_divisible``; targets' boxes resized alike (the
    caller's dicts are not modified). In training a tuple ``min_size``
    picks one of its sizes at random per image (minicnn's generator)."""

    def __init__(self, min_size, max_size, image_mean, image_std, size_divisible=32, fixed_size=None, **kwargs):
        super().__init__()
        if not isinstance(min_size, (list, tuple)):
            min_size = (min_size,)
        self.min_size = min_size
        self.max_size = max_size
        self.image_mean = image_mean
        self.image_std = image_std
        self.size_divisible = size_divisible
        self.fixed_size = fixed_size
        self._skip_resize = kwargs.pop("_skip_resize", False)
        if kwargs:
            raise TypeError(f"GeneralizedRCNNTransform: unexpected keyword arguments {sorted(kwargs)}")

    def forward(self, images, targets=None):
        images = list(images)
        if targets is not None:
            targets = [dict(t) for t in targets]
        for i in range(len(images)):
            image = images[i]
            if image.ndim != 3:
                raise ValueError(f"images is expected to be a list of 3d tensors of shape [C, H, W], got "
                                 f"{tuple(image.shape)}")
            if 0 in image.shape[1:]:
                # torchvision divides by the zero side while resizing.
                raise ValueError(f"images[{i}] has no pixels: shape {tuple(image.shape)}")
            image = self.normalize(image)
            image, target = self.resize(image, targets[i] if targets is not None else None)
            images[i] = image
            if targets is not None:
                targets[i] = target
        image_sizes = [tuple(img.shape[-2:]) for img in images]
        return ImageList(self.batch_images(images, size_divisible=self.size_divisible), image_sizes), targets

    def normalize(self, image):
        if image.dtype.kind != "f":
            raise TypeError(f"Expected input images to be of floating type (in range [0, 1]), but found type "
                            f"{image.dtype} instead")
        if len(self.image_mean) != image.shape[0] or len(self.image_std) != image.shape[0]:
            raise ValueError(f"GeneralizedRCNNTransform: image_mean and image_std have {len(self.image_mean)} and "
                             f"{len(self.image_std)} values for an image of {image.shape[0]} channels")
        xp = get_array_module(image.data)
        mean = Tensor._wrap(xp.asarray(self.image_mean, dtype=image.dtype)[:, None, None])
        std = Tensor._wrap(xp.asarray(self.image_std, dtype=image.dtype)[:, None, None])
        return (image - mean) / std

    def torch_choice(self, k):
        """One of the sizes ``k``, uniformly (minicnn's random generator)."""
        return k[int(default_generator().random() * len(k))] if len(k) > 1 else k[0]

    def resize(self, image, target=None):
        h, w = image.shape[-2:]
        if self.training:
            if self._skip_resize:
                return image, target
            size = self.torch_choice(self.min_size)
        else:
            size = self.min_size[-1]
        image, target = _resize_image_and_masks(image, size, self.max_size, target, self.fixed_size)
        if target is None:
            return image, target
        target["boxes"] = resize_boxes(target["boxes"], (h, w), image.shape[-2:])
        if "keypoints" in target:
            target["keypoints"] = resize_keypoints(target["keypoints"], (h, w), image.shape[-2:])
        return image, target

    def max_by_axis(self, the_list):
        return [max(sizes) for sizes in zip(*the_list)]

    def batch_images(self, images, size_divisible=32):
        """(N, C, H, W): the images zero-padded at the bottom and right to
        the largest H and W, rounded up to multiples of ``size_divisible``."""
        channels, height, width = self.max_by_axis([list(img.shape) for img in images])
        stride = float(size_divisible)
        height = int(math.ceil(float(height) / stride) * stride)
        width = int(math.ceil(float(width) / stride) * stride)
        padded = []
        for img in images:
            if img.shape[0] != channels:
                raise ValueError(f"GeneralizedRCNNTransform: images have different numbers of channels "
                                 f"({img.shape[0]} and {channels})")
            pad = (0, width - img.shape[2], 0, height - img.shape[1])
            padded.append(F.pad(img, pad) if any(pad) else img)
        return F.stack(padded, dim=0)

    def postprocess(self, result, image_shapes, original_image_sizes):
        """Eval mode: each result's "boxes" (and "keypoints") scaled from the
        resized image's size back to the original's."""
        if self.training:
            return result
        for i, (pred, im_s, o_im_s) in enumerate(zip(result, image_shapes, original_image_sizes)):
            result[i]["boxes"] = resize_boxes(pred["boxes"], im_s, o_im_s)
            if "keypoints" in pred:
                result[i]["keypoints"] = resize_keypoints(pred["keypoints"], im_s, o_im_s)
        return result

    def __repr__(self):
        indent = "\n    "
        return (f"{type(self).__name__}({indent}Normalize(mean={self.image_mean}, std={self.image_std})"
                f"{indent}Resize(min_size={self.min_size}, max_size={self.max_size}, mode='bilinear')\n)")
