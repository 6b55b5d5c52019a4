"""Image transforms with torchvision's names (``mc.transforms``), on
channels-first images, without PIL.

An image is a Tensor or a NumPy array of shape (..., H, W): (H, W),
(C, H, W) or a batch (N, C, H, W); a transform returns the same kind of
object it was given. Only the last two (spatial) dimensions are touched,
so one random draw (a flip, a crop position) applies to every image of a
batch alike, as in torchvision. Transforms work on the data and record no
autograd graph. Random choices draw from minicnn's global generator, so
``mc.manual_seed`` makes them repeatable.

    train_transform = mc.transforms.Compose([
        mc.transforms.RandomCrop(32, padding=4),
        mc.transforms.RandomHorizontalFlip(),
        mc.transforms.Normalize(mean=[0.5], std=[0.25]),
    ])
"""
import numbers

import numpy

from . import random
from .backend import get_array_module
from .tensor import Tensor


class Compose:
    """Apply ``transforms`` one after another."""

    def __init__(self, transforms):
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"Compose: every transform must be callable, got {type(t).__name__}")

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self):
        body = "".join(f"\n    {t!r}" for t in self.transforms)
        return f"Compose({body}\n)"


class ToTensor:
    """A NumPy image of shape (H, W, C) or (H, W) -> a Tensor of shape
    (C, H, W). uint8 values are scaled from [0, 255] to float32 [0, 1];
    other dtypes keep their values, as torchvision's ToTensor does."""

    def __call__(self, pic):
        if isinstance(pic, Tensor):
            pic = pic.data
        if not hasattr(pic, "ndim") or pic.ndim not in (2, 3):
            raise ValueError(
                f"ToTensor: expected an (H, W) or (H, W, C) array, got {getattr(pic, 'shape', type(pic).__name__)}")
        xp = get_array_module(pic)
        chw = pic[None] if pic.ndim == 2 else xp.moveaxis(pic, -1, 0)
        chw = xp.ascontiguousarray(chw)
        if chw.dtype == numpy.uint8:
            chw = chw.astype(numpy.float32) / numpy.float32(255)
        return Tensor._wrap(chw)

    def __repr__(self):
        return "ToTensor()"


class Normalize:
    """(image - mean[c]) / std[c] for each channel c of a float image of
    shape (..., C, H, W)."""

    def __init__(self, mean, std, inplace=False):
        self.mean = _as_sequence(mean, "mean")
        self.std = _as_sequence(std, "std")
        if any(s == 0 for s in self.std):
            raise ValueError(f"Normalize: std must not contain zeros, got {self.std}")
        self.inplace = inplace

    def __call__(self, img):
        x, wrap = _unwrap(img, "Normalize")
        if x.dtype.kind != "f":
            raise TypeError(f"Normalize: the image must be floating point, got dtype {x.dtype}")
        if x.ndim < 3:
            raise ValueError(f"Normalize: expected an image of shape (..., C, H, W), got {x.shape}")
        channels = x.shape[-3]
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, channels):
                raise ValueError(f"Normalize: {name} has {len(values)} values but the image has {channels} channels")
        xp = get_array_module(x)
        mean = xp.asarray(self.mean, dtype=x.dtype).reshape(-1, 1, 1)
        std = xp.asarray(self.std, dtype=x.dtype).reshape(-1, 1, 1)
        if self.inplace:
            x -= mean
            x /= std
            return wrap(x)
        return wrap((x - mean) / std)

    def __repr__(self):
        return f"Normalize(mean={self.mean}, std={self.std})"


class RandomHorizontalFlip:
    """Mirror the image left to right with probability ``p``."""

    def __init__(self, p=0.5):
        self.p = _probability(p, "RandomHorizontalFlip")

    def __call__(self, img):
        x, wrap = _unwrap(img, "RandomHorizontalFlip")
        if random.default_generator().random() < self.p:
            x = x[..., ::-1].copy()
        return wrap(x)

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"


class RandomVerticalFlip:
    """Mirror the image top to bottom with probability ``p``."""

    def __init__(self, p=0.5):
        self.p = _probability(p, "RandomVerticalFlip")

    def __call__(self, img):
        x, wrap = _unwrap(img, "RandomVerticalFlip")
        if random.default_generator().random() < self.p:
            x = x[..., ::-1, :].copy()
        return wrap(x)

    def __repr__(self):
        return f"RandomVerticalFlip(p={self.p})"


_PADDING_MODES = ("constant", "edge", "reflect", "symmetric")


class Pad:
    """Pad the borders. ``padding``: an int (all sides), (left/right,
    top/bottom) or (left, top, right, bottom). ``padding_mode``:
    ``"constant"`` (with ``fill``), ``"edge"``, ``"reflect"`` (mirror
    without repeating the edge) or ``"symmetric"`` (repeating it)."""

    def __init__(self, padding, fill=0, padding_mode="constant"):
        self.padding = _parse_padding(padding)
        if not isinstance(fill, numbers.Real):
            raise TypeError(f"Pad: fill must be a number, got {type(fill).__name__}")
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"Pad: padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
        self.fill = fill
        self.padding_mode = padding_mode

    def __call__(self, img):
        x, wrap = _unwrap(img, "Pad")
        return wrap(_pad(x, self.padding, self.fill, self.padding_mode))

    def __repr__(self):
        return f"Pad(padding={self.padding}, fill={self.fill}, padding_mode={self.padding_mode!r})"


class RandomCrop:
    """Cut out a ``size`` (an int for a square, or (h, w)) window at a
    random position, after padding the image by ``padding`` (see Pad) and,
    with ``pad_if_needed``, up to ``size`` where it is smaller."""

    def __init__(self, size, padding=None, pad_if_needed=False, fill=0, padding_mode="constant"):
        self.size = _parse_size(size, "RandomCrop")
        self.padding = None if padding is None else _parse_padding(padding)
        self.pad_if_needed = pad_if_needed
        self.fill = fill
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"RandomCrop: padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
        self.padding_mode = padding_mode

    def __call__(self, img):
        x, wrap = _unwrap(img, "RandomCrop")
        if self.padding is not None:
            x = _pad(x, self.padding, self.fill, self.padding_mode)
        th, tw = self.size
        if self.pad_if_needed:
            extra_w, extra_h = max(tw - x.shape[-1], 0), max(th - x.shape[-2], 0)
            if extra_w or extra_h:
                x = _pad(x, (extra_w, extra_h, extra_w, extra_h), self.fill, self.padding_mode)
        h, w = x.shape[-2:]
        if th > h or tw > w:
            raise ValueError(f"RandomCrop: crop size {(th, tw)} is larger than the (padded) image {(h, w)}")
        rng = random.default_generator()
        top = int(rng.integers(0, h - th + 1))
        left = int(rng.integers(0, w - tw + 1))
        return wrap(x[..., top:top + th, left:left + tw].copy())

    def __repr__(self):
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class Resize:
    """Resize to ``size``: (h, w), or an int that the shorter side is
    resized to, keeping the aspect ratio (the longer side is rounded down),
    as torchvision does. ``interpolation`` is ``"bilinear"`` (half-pixel
    centres, torch's ``align_corners=False``) or ``"nearest"``. There is no
    antialiasing (torch's ``antialias=False``): shrinking by a large factor
    skips pixels. Integer images are rounded back to their dtype."""

    def __init__(self, size, interpolation="bilinear"):
        if isinstance(size, (list, tuple)) and len(size) == 1:
            size = size[0]
        self.size = size if isinstance(size, numbers.Integral) else _parse_size(size, "Resize")
        if isinstance(self.size, numbers.Integral) and (isinstance(size, bool) or self.size <= 0):
            raise ValueError(f"Resize: size must be positive, got {size!r}")
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"Resize: interpolation must be 'bilinear' or 'nearest', got {interpolation!r}")
        self.interpolation = interpolation

    def __call__(self, img):
        x, wrap = _unwrap(img, "Resize")
        h, w = x.shape[-2:]
        if isinstance(self.size, numbers.Integral):
            short, long = (w, h) if w <= h else (h, w)
            new_short, new_long = int(self.size), int(self.size * long / short)
            out_h, out_w = (new_long, new_short) if w <= h else (new_short, new_long)
        else:
            out_h, out_w = self.size
        return wrap(resize(x, (out_h, out_w), self.interpolation))

    def __repr__(self):
        return f"Resize(size={self.size}, interpolation={self.interpolation!r})"


def resize(x, size, interpolation="bilinear"):
    """Resize the array ``x`` of shape (..., H, W) to (..., *size).

    Output pixel i sits at input coordinate (i + 0.5) * H / out_H - 0.5
    (pixel centres line up; clamped at 0). Bilinear mixes the two
    neighbouring rows (and columns) by the fractional part; nearest takes
    floor(i * H / out_H), torch's "nearest".
    """
    xp = get_array_module(x)
    out_h, out_w = size
    integer = x.dtype.kind in "iub"
    work = x.astype(numpy.float32) if integer else x
    if interpolation == "nearest":
        rows = xp.asarray(_nearest_indices(x.shape[-2], out_h))
        cols = xp.asarray(_nearest_indices(x.shape[-1], out_w))
        out = work[..., rows, :][..., cols]
    else:
        r0, r1, fr = (xp.asarray(a) for a in _linear_indices(x.shape[-2], out_h, work.dtype))
        c0, c1, fc = (xp.asarray(a) for a in _linear_indices(x.shape[-1], out_w, work.dtype))
        # Along the width first, then the height: torch's order of operations.
        across = work[..., c0] * (1 - fc) + work[..., c1] * fc
        out = across[..., r0, :] * (1 - fr)[:, None] + across[..., r1, :] * fr[:, None]
    if integer:
        info = numpy.iinfo(x.dtype) if x.dtype.kind in "iu" else None
        out = xp.round(out)
        if info is not None:
            out = xp.clip(out, info.min, info.max)
        out = out.astype(x.dtype)
    return xp.ascontiguousarray(out)


def _linear_indices(n_in, n_out, dtype):
    """For each output position: the two input neighbours and the weight
    of the second."""
    scale = n_in / n_out
    src = numpy.maximum((numpy.arange(n_out) + 0.5) * scale - 0.5, 0.0)
    i0 = numpy.minimum(numpy.floor(src).astype(numpy.int64), n_in - 1)
    i1 = numpy.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(dtype)


def _nearest_indices(n_in, n_out):
    return numpy.minimum(numpy.floor(numpy.arange(n_out) * (n_in / n_out)).astype(numpy.int64), n_in - 1)


def _pad(x, padding, fill, mode):
    left, top, right, bottom = padding
    widths = [(0, 0)] * (x.ndim - 2) + [(top, bottom), (left, right)]
    xp = get_array_module(x)
    if mode == "constant":
        return xp.pad(x, widths, mode="constant", constant_values=fill)
    if mode == "reflect" and (max(top, bottom) >= x.shape[-2] or max(left, right) >= x.shape[-1]):
        raise ValueError(f"Pad: reflect padding {padding} must be smaller than the image {x.shape[-2:]}")
    return xp.pad(x, widths, mode=mode)


def _parse_padding(padding):
    """(left, top, right, bottom) from an int, a pair or a 4-tuple."""
    if isinstance(padding, numbers.Integral) and not isinstance(padding, bool):
        padding = (padding,) * 4
    elif isinstance(padding, (list, tuple)) and len(padding) in (1, 2, 4):
        padding = tuple(padding) * (4 // len(padding))
    else:
        raise TypeError(f"padding must be an int or a sequence of 1, 2 or 4 ints, got {padding!r}")
    if not all(isinstance(p, numbers.Integral) and not isinstance(p, bool) and p >= 0 for p in padding):
        raise ValueError(f"padding must be non-negative ints, got {padding!r}")
    return tuple(int(p) for p in padding)


def _parse_size(size, owner):
    """(h, w) from an int or a pair of positive ints."""
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        size = (size, size)
    if not (isinstance(size, (list, tuple)) and len(size) == 2
            and all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0 for s in size)):
        raise ValueError(f"{owner}: size must be a positive int or a pair (h, w) of them, got {size!r}")
    return tuple(int(s) for s in size)


def _as_sequence(values, name):
    if isinstance(values, numbers.Real):
        values = [values]
    values = [float(v) for v in values]
    if not values:
        raise ValueError(f"Normalize: {name} must not be empty")
    return values


def _probability(p, owner):
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p <= 1:
        raise ValueError(f"{owner}: p must be a probability in [0, 1], got {p!r}")
    return float(p)


def _unwrap(img, owner):
    """The image's array, and a function that wraps a result back into
    the kind of object the caller gave (Tensor or array)."""
    if isinstance(img, Tensor):
        array, wrap = img.data, Tensor._wrap
    elif hasattr(img, "shape") and hasattr(img, "dtype"):
        array, wrap = img, (lambda a: a)
    else:
        raise TypeError(f"{owner}: expected a Tensor or an array image, got {type(img).__name__}")
    if array.ndim < 2:
        raise ValueError(f"{owner}: expected an image of shape (..., H, W), got shape {array.shape}")
    return array, wrap
