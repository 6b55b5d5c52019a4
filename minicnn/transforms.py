"""Image transforms with torchvision's names (``mc.transforms``), on
channels-first images. Only ``read_image``, which reads image files,
needs Pillow.

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

For pretrained ImageNet classifiers, ``ImageClassification`` is
torchvision's ``weights.transforms()`` preset (antialiased resize, centre
crop, ImageNet normalisation); ``VideoClassification`` is the video
models' preset, for clips of frames (T, C, H, W).
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


class CenterCrop:
    """Cut out the central ``size`` (an int for a square, or (h, w))
    window; see ``center_crop``."""

    def __init__(self, size):
        if isinstance(size, (list, tuple)) and len(size) == 1:
            size = size[0]
        self.size = _parse_size(size, "CenterCrop")

    def __call__(self, img):
        x, wrap = _unwrap(img, "CenterCrop")
        return wrap(center_crop(x, self.size))

    def __repr__(self):
        return f"CenterCrop(size={self.size})"


def center_crop(x, size):
    """The central (h, w) = ``size`` window of the array ``x`` of shape
    (..., H, W), as torchvision's ``center_crop``.

    An image smaller than the crop is first padded with zeros up to it,
    half of the missing rows (columns) on each side, the odd one going to
    the bottom (right). When H - h is odd the window cannot sit exactly in
    the middle: it starts at round((H - h) / 2) with Python's round, which
    rounds halves to even (a surplus of 1 row leaves 0 above, 3 leave 2),
    as torchvision's does.
    """
    th, tw = size
    h, w = x.shape[-2:]
    if th > h or tw > w:
        missing_h, missing_w = max(th - h, 0), max(tw - w, 0)
        x = _pad(x, (missing_w // 2, missing_h // 2, (missing_w + 1) // 2, (missing_h + 1) // 2), 0, "constant")
        h, w = x.shape[-2:]
    top, left = int(round((h - th) / 2)), int(round((w - tw) / 2))
    return x[..., top:top + th, left:left + tw].copy()


_INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


class Resize:
    """Resize to ``size``: (h, w), or an int that the shorter side is
    resized to, keeping the aspect ratio (the longer side is rounded down),
    as torchvision does. ``interpolation``: ``"nearest"``, ``"bilinear"``
    or ``"bicubic"`` (see ``resize``). ``antialias=True`` widens the filter
    when shrinking, so every input pixel counts (the default, as in
    torchvision); ``False`` reads only the few pixels nearest each output
    pixel and so skips detail when shrinking by a large factor.
    Integer images are rounded back to their dtype."""

    def __init__(self, size, interpolation="bilinear", antialias=True):
        if isinstance(size, (list, tuple)) and len(size) == 1:
            size = size[0]
        self.size = size if isinstance(size, numbers.Integral) else _parse_size(size, "Resize")
        if isinstance(self.size, numbers.Integral) and (isinstance(size, bool) or self.size <= 0):
            raise ValueError(f"Resize: size must be positive, got {size!r}")
        self.interpolation = _check_interpolation(interpolation, "Resize")
        self.antialias = bool(antialias)

    def __call__(self, img):
        x, wrap = _unwrap(img, "Resize")
        out_size = resized_shape(x.shape[-2:], self.size)
        if out_size == tuple(x.shape[-2:]):
            return wrap(x)  # torchvision returns the image itself when nothing changes
        return wrap(resize(x, out_size, self.interpolation, self.antialias))

    def __repr__(self):
        return f"Resize(size={self.size}, interpolation={self.interpolation!r}, antialias={self.antialias})"


def resized_shape(shape, size):
    """The (h, w) that ``Resize(size)`` gives an image of spatial ``shape``
    (h, w): ``size`` itself when it is a pair; for an int, the shorter side
    becomes ``size`` and the longer one ``int(size * long / short)``."""
    if not isinstance(size, numbers.Integral):
        return tuple(size)
    h, w = shape
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = int(size), int(size * long / short)
    return (new_long, new_short) if w <= h else (new_short, new_long)


def resize(x, size, interpolation="bilinear", antialias=False):
    """Resize the array ``x`` of shape (..., H, W) to (..., *size), as
    torch's ``interpolate(..., align_corners=False, antialias=...)`` does.

    Resizing is separable: the width is resampled first, then the height
    (torch's order). Along one axis of n_in pixels resized to n_out, with
    scale = n_in / n_out, output pixel i sits at input coordinate
    (i + 0.5) * scale - 0.5 (pixel centres line up) and is a weighted sum
    of the input pixels near it:

    * nearest: input pixel floor(i * scale), torch's "nearest".
    * bilinear: the two neighbours of the coordinate (clamped at 0),
      weighted by the fractional part.
    * bicubic: the four neighbours, weighted by Keys' cubic with a = -0.75
      (torch's choice); indices beyond the border repeat the edge pixel.
    * antialias (bilinear or bicubic; ignored for nearest): when shrinking,
      the filter (a triangle, or Keys' cubic with a = -0.5 as in PIL) is
      stretched by the scale factor, so each output pixel averages all the
      input pixels it covers instead of sampling two or four of them. The
      weights are normalised to sum to 1, which also handles the borders.
      When enlarging it is the plain filter (antialiased bilinear then
      equals bilinear).

    Float images are computed in their own dtype. Integer images are
    computed in float32 and rounded back (clamped to the dtype's range),
    as torchvision does with uint8.
    """
    _check_interpolation(interpolation, "resize")
    xp = get_array_module(x)
    out_h, out_w = size
    integer = x.dtype.kind in "iub"
    work = x.astype(numpy.float32) if integer else x
    if interpolation == "nearest":
        rows = xp.asarray(_nearest_indices(x.shape[-2], out_h))
        cols = xp.asarray(_nearest_indices(x.shape[-1], out_w))
        out = work[..., rows, :][..., cols]
    else:
        out = work
        for axis, n_out in ((-1, out_w), (-2, out_h)):  # width first, then height: torch's order
            if out.shape[axis] != n_out:  # an axis of unchanged size is left alone, as in torch
                indices, weights = _filter_taps(out.shape[axis], n_out, interpolation, antialias, work.dtype)
                out = _resample(out, axis, xp.asarray(indices), xp.asarray(weights))
    if integer:
        out = xp.round(out)
        if x.dtype.kind in "iu":
            info = numpy.iinfo(x.dtype)
            out = xp.clip(out, info.min, info.max)
        out = out.astype(x.dtype)
    return xp.ascontiguousarray(out)


def _resample(x, axis, indices, weights):
    """Along ``axis`` (-1 or -2): output[i] = sum over taps t of
    weights[i, t] * x[indices[i, t]], added tap by tap in order, each
    step one fused multiply-add, as torch does. ``indices`` and
    ``weights`` are (n_out, taps)."""
    if axis == -2:
        weights = weights[:, :, None]  # broadcast along the width
    out = None
    for t in range(indices.shape[1]):
        tap = x[..., indices[:, t]] if axis == -1 else x[..., indices[:, t], :]
        out = tap * weights[:, t] if out is None else _fma(tap, weights[:, t], out)
    return out


def _fma(a, b, c):
    """a * b + c rounded once to the dtype of ``c``, as a fused
    multiply-add instruction does. torch's compiled kernels use them;
    rounding the same way keeps float32 results equal to torch's for
    almost every pixel (within an ulp for the rest), so a uint8 image
    rounds back to the same integers but for the rare value within float32
    error of a half. In float64 (whose products NumPy cannot hold exactly)
    it is plain a * b + c."""
    if c.dtype.itemsize >= 8:
        return a * b + c
    return (a.astype(numpy.float64) * b.astype(numpy.float64) + c.astype(numpy.float64)).astype(c.dtype)


def _filter_taps(n_in, n_out, interpolation, antialias, dtype):
    """The input pixels each output pixel reads along one axis and their
    weights: (indices, weights), each of shape (n_out, taps)."""
    dtype = numpy.dtype(dtype)
    if antialias:
        return _antialias_taps(n_in, n_out, interpolation, dtype)
    # The source coordinate, rounded to ``dtype`` once as torch's fused
    # multiply-add does: float32 coordinates of a few hundred carry only
    # about 1e-5 of precision, and matching torch's rounding keeps the
    # float32 results within a few ulp of torch's.
    scale = dtype.type(n_in) / dtype.type(n_out)
    src = (float(scale) * (numpy.arange(n_out) + 0.5) - 0.5).astype(dtype)
    if interpolation == "bilinear":
        src = numpy.maximum(src, 0)
        i0 = numpy.minimum(numpy.floor(src).astype(numpy.int64), n_in - 1)
        i1 = numpy.minimum(i0 + 1, n_in - 1)
        frac = src - i0.astype(dtype)
        return numpy.stack([i0, i1], axis=1), numpy.stack([1 - frac, frac], axis=1)
    # bicubic: the four neighbours floor(src) - 1 ... floor(src) + 2 at
    # distances 1 + t, t, 1 - t, 2 - t from the coordinate.
    i0 = numpy.floor(src).astype(numpy.int64)
    t = src - i0.astype(dtype)
    a = dtype.type(-0.75)
    weights = numpy.stack([_cubic(1 + t, a), _cubic(t, a), _cubic(1 - t, a), _cubic(2 - t, a)], axis=1)
    indices = numpy.clip(i0[:, None] + numpy.arange(-1, 3), 0, n_in - 1)
    return indices, weights


def _antialias_taps(n_in, n_out, interpolation, dtype):
    """torch's (and PIL's) antialiased filter taps. The filter has radius
    1 (triangle) or 2 (cubic) input pixels; shrinking by scale > 1
    stretches it to radius * scale, so it covers every input pixel that
    falls under the output pixel. Each step is rounded to ``dtype`` or
    float64 where torch's C++ rounds it, so that float32 images get
    torch's bilinear weights bit for bit (bicubic ones within an ulp)."""
    scale = dtype.type(n_in) / dtype.type(n_out)
    stretch = max(float(scale), 1.0)  # 1 when enlarging: the plain filter
    radius = 1 if interpolation == "bilinear" else 2
    support = dtype.type(radius * stretch)
    inverse = float(dtype.type(1 / stretch))
    centre = (float(scale) * (numpy.arange(n_out) + 0.5)).astype(dtype)
    # The window [lo, hi) of input pixels under the stretched filter
    # (truncated like torch's int casts), cut to the image.
    lo = numpy.maximum(((centre - support).astype(numpy.float64) + 0.5).astype(numpy.int64), 0)
    hi = numpy.minimum(((centre + support).astype(numpy.float64) + 0.5).astype(numpy.int64), n_in)
    taps = int((hi - lo).max())
    indices = lo[:, None] + numpy.arange(taps)
    offset = (indices.astype(dtype) - centre[:, None]).astype(numpy.float64)
    distance = numpy.abs(((offset + 0.5) * inverse).astype(dtype))
    if interpolation == "bilinear":
        weights = numpy.maximum(1 - distance, 0)
    else:
        weights = _pil_cubic(distance)
    weights = numpy.where(indices < hi[:, None], weights, 0).astype(dtype)
    total = weights[:, 0].copy()
    for t in range(1, taps):  # summed in order, as torch does
        total += weights[:, t]
    return numpy.minimum(indices, n_in - 1), weights / total[:, None]


def _pil_cubic(d):
    """The cubic kernel (a = -0.5) at distance ``d`` >= 0 as PIL writes it
    and torch copies it for antialiasing: near 0 in float64, beyond 1 in
    the dtype of ``d`` with fused multiply-adds."""
    a = -0.5
    wide = d.astype(numpy.float64)
    near = ((a + 2) * wide - (a + 3)) * wide * wide + 1
    one, four, five, eight = (numpy.asarray(v, dtype=d.dtype) for v in (1, 4, 5, 8))
    far = _fma(_fma(d - five, d, eight), d, -four * one).astype(numpy.float64) * a
    return numpy.where(d < 1, near, numpy.where(d < 2, far, 0)).astype(d.dtype)


def _cubic(d, a):
    """Keys' cubic convolution kernel at distance ``d`` (0 beyond 2), in
    the dtype of ``d``, with torch's fused multiply-adds."""
    d = numpy.abs(d)
    a = numpy.asarray(a, dtype=d.dtype)
    near = _fma(_fma(a + 2, d, -(a + 3)) * d, d, numpy.ones_like(d))  # ((a + 2) d - (a + 3)) d^2 + 1, |d| <= 1
    far = _fma(_fma(_fma(a, d, -5 * a), d, 8 * a), d, -4 * a)  # ((a d - 5a) d + 8a) d - 4a, 1 < |d| < 2
    return numpy.where(d <= 1, near, numpy.where(d < 2, far, 0)).astype(d.dtype)


def _nearest_indices(n_in, n_out):
    return numpy.minimum(numpy.floor(numpy.arange(n_out) * (n_in / n_out)).astype(numpy.int64), n_in - 1)


def _check_interpolation(interpolation, owner):
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"{owner}: interpolation must be one of {_INTERPOLATIONS}, got {interpolation!r}")
    return interpolation


#: The mean and std of ImageNet's training images per channel (R, G, B),
#: which torchvision's pretrained classifiers expect their input
#: normalised with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _Preset:
    """What the classification presets share: ``resize``, ``crop`` and
    ``normalize`` transforms, their arguments as properties, and the
    steps between reading and the model."""

    @property
    def crop_size(self):
        return self.crop.size

    @property
    def resize_size(self):
        return self.resize.size

    @property
    def mean(self):
        return self.normalize.mean

    @property
    def std(self):
        return self.normalize.std

    @property
    def interpolation(self):
        return self.resize.interpolation

    def _resize_crop_normalize(self, x, owner, what):
        """Resize and crop the array x (..., C, H, W), scale uint8 to float32
        [0, 1] (a float image is cast to float32), then normalize."""
        if x.dtype != numpy.uint8 and x.dtype.kind != "f":
            raise TypeError(f"{owner}: {what} must be uint8 in [0, 255] or float in [0, 1], got dtype {x.dtype}")
        x = self.crop(self.resize(x))
        if x.dtype == numpy.uint8:
            x = x.astype(numpy.float32) / numpy.float32(255)
        else:
            x = x.astype(numpy.float32)
        return self.normalize(x)


class ImageClassification(_Preset):
    """torchvision's preprocessing for ImageNet classifiers (the
    ``ImageClassification`` preset that ``weights.transforms()`` returns):

    1. resize so the shorter side is ``resize_size`` (an int), keeping the
       aspect ratio, with ``interpolation`` (``"bilinear"``, ``"bicubic"``
       or ``"nearest"``) and ``antialias`` (see ``resize``);
    2. cut out the central ``crop_size`` (an int, or (h, w)) window;
    3. scale a uint8 image from [0, 255] to float32 [0, 1];
    4. normalise each channel: (x - mean[c]) / std[c].

    The input is an image (3, H, W) or a batch (N, 3, H, W) (one channel
    per ``mean`` value), uint8 in [0, 255] (``read_image`` gives that) or
    float in [0, 1], as a Tensor or an array; the output is float32 of
    shape (..., 3, crop_h, crop_w), of the same kind. A uint8 image is
    resized in float32 and rounded back to uint8 before the crop, as
    torchvision treats a uint8 tensor; a float image stays float until
    the final cast to float32 (torchvision's ``convert_image_dtype``).

        preprocess = mc.transforms.ImageClassification(crop_size=224, resize_size=256)
        batch = preprocess(mc.transforms.read_image("cat.jpg"))[None]  # (1, 3, 224, 224)

    ``mc.models.imagenet_transforms(name)`` builds the preset each
    pretrained model of the zoo was evaluated with.
    """

    def __init__(self, *, crop_size, resize_size=256, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 interpolation="bilinear", antialias=True):
        if isinstance(resize_size, (list, tuple)) and len(resize_size) == 1:
            resize_size = resize_size[0]
        if isinstance(resize_size, bool) or not isinstance(resize_size, numbers.Integral) or resize_size <= 0:
            raise ValueError(f"ImageClassification: resize_size must be a positive int (the shorter side), "
                             f"got {resize_size!r}")
        self.resize = Resize(int(resize_size), interpolation, antialias)
        self.crop = CenterCrop(crop_size)
        self.normalize = Normalize(mean, std)

    @property
    def antialias(self):
        return self.resize.antialias

    def __call__(self, img):
        x, wrap = _unwrap(img, "ImageClassification")
        channels = len(self.mean)
        if x.ndim not in (3, 4) or x.shape[-3] != channels:
            raise ValueError(
                f"ImageClassification: expected an image of shape ({channels}, H, W) or a batch "
                f"(N, {channels}, H, W), got shape {x.shape}; convert grayscale or RGBA images to RGB "
                f"first (read_image does)")
        return wrap(self._resize_crop_normalize(x, "ImageClassification", "the image"))

    def __repr__(self):
        return (f"ImageClassification(crop_size={self.crop_size}, resize_size={self.resize_size}, "
                f"mean={self.mean}, std={self.std}, interpolation={self.interpolation!r}, "
                f"antialias={self.antialias})")


#: The mean and std per channel (R, G, B) of Kinetics-400's frames, which
#: torchvision's pretrained video classifiers expect.
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


class VideoClassification(_Preset):
    """torchvision's preprocessing for video classifiers (the
    ``VideoClassification`` preset of its video weights), frame by frame:

    1. resize to ``resize_size``: (h, w), or an int (or one int in a
       sequence) that the shorter side becomes, keeping the aspect ratio,
       with ``interpolation`` and, as torchvision hard-codes it, no
       antialiasing;
    2. cut out the central ``crop_size`` (an int, or (h, w)) window;
    3. scale uint8 frames from [0, 255] to float32 [0, 1];
    4. normalise each channel: (x - mean[c]) / std[c];
    5. move time behind the channels: (T, C, H, W) -> (C, T, h, w), the
       clip layout of the video models.

    The input is a clip (T, C, H, W) or a batch (N, T, C, H, W), as frames
    are read (one channel per ``mean`` value), uint8 in [0, 255] or float
    in [0, 1], as a Tensor or an array; the output is float32 (C, T, h, w)
    or (N, C, T, h, w), of the same kind.

        preprocess = mc.transforms.VideoClassification(crop_size=(112, 112), resize_size=(128, 171))
        clip = preprocess(frames)[None]        # (1, 3, T, 112, 112) for mc.models.video.r3d_18()
    """

    def __init__(self, *, crop_size, resize_size, mean=KINETICS_MEAN, std=KINETICS_STD,
                 interpolation="bilinear"):
        self.resize = Resize(resize_size, interpolation, antialias=False)
        self.crop = CenterCrop(crop_size)
        self.normalize = Normalize(mean, std)

    def __call__(self, vid):
        x, wrap = _unwrap(vid, "VideoClassification")
        channels = len(self.mean)
        if x.ndim not in (4, 5) or x.shape[-3] != channels:
            raise ValueError(
                f"VideoClassification: expected a clip of shape (T, {channels}, H, W) or a batch "
                f"(N, T, {channels}, H, W), got shape {x.shape}")
        x = self._resize_crop_normalize(x, "VideoClassification", "the frames")   # every frame alike
        xp = get_array_module(x)
        return wrap(xp.ascontiguousarray(xp.swapaxes(x, -4, -3)))   # (..., T, C, h, w) -> (..., C, T, h, w)

    def __repr__(self):
        return (f"VideoClassification(crop_size={self.crop_size}, resize_size={self.resize_size}, "
                f"mean={self.mean}, std={self.std}, interpolation={self.interpolation!r})")


def read_image(path, mode="RGB", apply_exif_orientation=False):
    """Read an image file (JPEG, PNG, or anything else Pillow reads) into a
    uint8 Tensor of shape (C, H, W), as ``torchvision.io.read_image`` does.

    ``mode``: ``"RGB"`` (the default: 3 channels; grayscale and palette
    images are expanded, an alpha channel is dropped), ``"L"`` (grayscale,
    1 channel), or None to keep the channels the file has.
    ``apply_exif_orientation=True`` turns the image the way the camera's
    EXIF tag says, so it is upright as image viewers show it.
    """
    from PIL import Image, ImageOps  # Pillow is needed only to read files

    if mode not in ("RGB", "L", None):
        raise ValueError(f"read_image: mode must be 'RGB', 'L' or None, got {mode!r}")
    with Image.open(path) as image:
        if apply_exif_orientation:
            image = ImageOps.exif_transpose(image)
        if mode is not None:
            image = image.convert(mode)
        pixels = numpy.asarray(image)
    if pixels.dtype != numpy.uint8:
        raise ValueError(f"read_image: {path} holds {pixels.dtype} pixels (mode {image.mode}); "
                         f"pass mode='RGB' or 'L' to convert them to uint8")
    chw = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return Tensor._wrap(numpy.ascontiguousarray(chw))


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
