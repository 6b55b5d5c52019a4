"""Digit scenes: images with several handwritten digits on them, for
segmentation and detection, built offline from real scans:
``mc.datasets.digit_scenes()``.

Each scene is a size x size canvas (dark, with a little sensor noise) on
which one to ``max_digits`` of scikit-learn's scanned 8x8 digits (UCI
"optdigits", 1,797 images, 0-16 grey levels) are pasted, each enlarged
bilinearly to a random side between ``size * 3/16`` and ``size * 7/16``
pixels, at a random position where it overlaps no digit already placed
(the boxes, with one pixel of margin, never touch, so there is no
occlusion), at a random contrast between 0.6 and 1.

Per sample:

* ``image``: float32 (C, H, W) in [0, 1], C = ``channels`` (1, or 3
  copies of the grey level for models that want RGB);
* ``target["mask"]``: int64 (H, W), the class of every pixel: 0 for the
  background, ``d + 1`` for the ink of digit d (so 1..10 for the digits
  0..9); ink is where the enlarged scan is at least 0.3 of full scale;
* ``target["boxes"]``: float32 (K, 4), one box per digit, (x1, y1, x2, y2)
  in pixels, the tightest box around that digit's ink with x2, y2 one
  past the last inked column and row (so x2 - x1 is the width; note that
  torchvision's ``masks_to_boxes`` gives the last column itself);
* ``target["labels"]``: int64 (K,), the class of each box (``d + 1``, as
  in the mask: 0 stays the background, as torchvision's detectors want).

The split is by source digit: the 1,797 scans are split as
``mc.datasets.digits`` splits them (stratified, 20% held out, seed 0),
whatever ``seed`` is, and training scenes are built from the training
scans only, test scenes from the held-out ones, so no test scene shows a
scan seen in training. ``seed`` (with ``train``) only drives the scenes'
layout: the same arguments always give the same scenes.
"""
import numpy

from .tensor import Tensor
from .transforms import resize as _resize
from .utils.data import Dataset

__all__ = ["DigitScenes", "digit_scenes", "SCENE_CLASSES"]

#: The mask's classes: 0 background, then the digits 0..9 as 1..10.
SCENE_CLASSES = ["background"] + [str(d) for d in range(10)]

#: A pixel of an enlarged scan is ink from this fraction of full scale.
INK_THRESHOLD = 0.3


def _source_split(train):
    """(images (n, 8, 8) in [0, 1], digits (n,), indices into
    load_digits) of the training or the held-out scans."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    train_idx, test_idx = train_test_split(numpy.arange(len(bunch.images)), test_size=0.2, stratify=bunch.target,
                                           random_state=0)
    idx = numpy.sort(train_idx if train else test_idx)
    return bunch.images[idx] / 16.0, bunch.target[idx], idx


def _place(rng, size, side, taken, tries=50):
    """Top-left (y, x) for a side x side square on the canvas that keeps a
    pixel of margin from every box in ``taken``; None if ``tries`` random
    positions all collide."""
    for _ in range(tries):
        y, x = (int(v) for v in rng.integers(0, size - side + 1, size=2))
        if all(y + side + 1 <= t[1] or t[3] + 1 <= y or x + side + 1 <= t[0] or t[2] + 1 <= x for t in taken):
            return y, x
    return None


def _scene(rng, size, max_digits, images, digits):
    """One scene: (canvas (H, W) float32, mask (H, W) int64, boxes (K, 4),
    labels (K,), the indices into ``images`` of the scans used)."""
    canvas = numpy.abs(rng.normal(0.0, 0.05, (size, size)))
    mask = numpy.zeros((size, size), dtype=numpy.int64)
    boxes, labels, used, squares = [], [], [], []
    for _ in range(int(rng.integers(1, max_digits + 1))):
        k = int(rng.integers(len(images)))
        side = int(rng.integers(size * 3 // 16, size * 7 // 16 + 1))
        where = _place(rng, size, side, squares)
        if where is None:
            continue                       # the canvas is full: fewer digits
        y, x = where
        scan = _resize(images[k][None], (side, side))[0].clip(0.0, 1.0)
        ink = scan >= INK_THRESHOLD
        rows, cols = numpy.nonzero(ink)
        if rows.size == 0:
            continue
        region = canvas[y:y + side, x:x + side]
        numpy.maximum(region, rng.uniform(0.6, 1.0) * scan, out=region)
        mask[y:y + side, x:x + side][ink] = digits[k] + 1
        squares.append((x, y, x + side, y + side))
        boxes.append((x + cols.min(), y + rows.min(), x + cols.max() + 1, y + rows.max() + 1))
        labels.append(digits[k] + 1)
        used.append(k)
    return (canvas.clip(0.0, 1.0).astype(numpy.float32), mask, numpy.array(boxes, dtype=numpy.float32).reshape(-1, 4),
            numpy.array(labels, dtype=numpy.int64), numpy.array(used, dtype=numpy.int64))


class DigitScenes(Dataset):
    """Scenes held in memory (module docstring): ``images`` (N, C, H, W)
    float32, ``masks`` (N, H, W) int64, ``boxes`` and ``labels`` (lists of
    N arrays), ``sources`` (N arrays: the load_digits indices of the scans
    in each scene), ``classes`` (SCENE_CLASSES). ``dataset[i]`` is
    ``(transform(image), {"mask", "boxes", "labels"})`` with Tensors."""

    classes = SCENE_CLASSES

    def __init__(self, images, masks, boxes, labels, sources, transform=None):
        self.images, self.masks = images, masks
        self.boxes, self.labels, self.sources = boxes, labels, sources
        self.transform = transform

    def __getitem__(self, index):
        image = Tensor._wrap(self.images[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, {"mask": Tensor._wrap(self.masks[index]), "boxes": Tensor._wrap(self.boxes[index]),
                       "labels": Tensor._wrap(self.labels[index])}

    def __len__(self):
        return len(self.images)

    def __repr__(self):
        return (f"{type(self).__name__}({len(self)} scenes of shape {tuple(self.images.shape[1:])}, "
                f"{sum(len(b) for b in self.boxes)} digits)")


def digit_scenes(train=True, *, size=64, num_scenes=None, max_digits=4, channels=1, seed=0, transform=None):
    """The digit scenes (module docstring): ``num_scenes`` canvases of
    ``size`` x ``size`` (default 2,000 for training, 500 for testing)
    with 1 to ``max_digits`` digits each, images with ``channels`` (1 or
    3) channels. Returns a DigitScenes; ``transform`` is applied to each
    image (not to the mask)."""
    for name, value, low in (("size", size, 16), ("max_digits", max_digits, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"digit_scenes: {name} must be an int >= {low}, got {value!r}")
    if num_scenes is None:
        num_scenes = 2000 if train else 500
    if isinstance(num_scenes, bool) or not isinstance(num_scenes, int) or num_scenes < 1:
        raise ValueError(f"digit_scenes: num_scenes must be a positive int, got {num_scenes!r}")
    if channels not in (1, 3):
        raise ValueError(f"digit_scenes: channels must be 1 or 3, got {channels!r}")
    images, digits, source_index = _source_split(train)
    rng = numpy.random.default_rng([int(seed), int(bool(train))])
    canvases, masks, boxes, labels, sources = [], [], [], [], []
    for _ in range(num_scenes):
        canvas, mask, box, label, used = _scene(rng, size, max_digits, images, digits)
        canvases.append(canvas)
        masks.append(mask)
        boxes.append(box)
        labels.append(label)
        sources.append(source_index[used])
    data = numpy.repeat(numpy.stack(canvases)[:, None], channels, axis=1)
    return DigitScenes(numpy.ascontiguousarray(data), numpy.stack(masks), boxes, labels, sources, transform)
