"""Small real image data that ships with scikit-learn, so nothing is
downloaded: ``mc.datasets.digits()`` and ``mc.datasets.sample_images()``.

Images are float32 in [0, 1], channels first, like everything in minicnn.
"""
import numpy

from .tensor import Tensor
from .transforms import resize as _resize
from .utils.data import Dataset
from .scenes import DigitScenes, digit_scenes  # noqa: F401


class ImageDataset(Dataset):
    """Labelled images held in memory.

    ``data``: a float32 Tensor (N, C, H, W); ``targets``: an int64 Tensor
    (N,); ``classes``: the class names. ``dataset[i]`` is
    ``(transform(image), label)`` with the image a (C, H, W) Tensor and the
    label a Python int (after ``target_transform``, if given).
    """

    def __init__(self, data, targets, classes, transform=None, target_transform=None):
        if data.ndim != 4:
            raise ValueError(f"ImageDataset: data must have shape (N, C, H, W), got {data.shape}")
        if targets.shape != data.shape[:1]:
            raise ValueError(f"ImageDataset: targets must have shape ({data.shape[0]},), got {targets.shape}")
        self.data = data if isinstance(data, Tensor) else Tensor(data)
        self.targets = targets if isinstance(targets, Tensor) else Tensor(targets)
        self.classes = list(classes)
        self.transform = transform
        self.target_transform = target_transform

    def __getitem__(self, index):
        image = Tensor._wrap(self.data.data[index])
        label = int(self.targets.data[index])
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return image, label

    def __len__(self):
        return self.data.shape[0]

    def __repr__(self):
        return (f"{type(self).__name__}({len(self)} images of shape {tuple(self.data.shape[1:])}, "
                f"{len(self.classes)} classes)")


def digits(train=True, *, resize=None, pad=0, test_size=0.2, seed=0, transform=None, target_transform=None):
    """scikit-learn's handwritten digits (UCI "optdigits"): 1,797 real
    scans of the digits 0-9, 8x8 pixels, 1 channel.

    ``train`` picks the training or the test part of a stratified split
    (each digit appears in the same proportion in both) that holds out
    ``test_size`` of the images (a fraction, or a count), drawn with
    ``seed``: the same arguments always give the same split, and the two
    parts never share an image.

    ``resize`` (an int or (h, w)) resizes the images bilinearly and ``pad``
    then adds a border of zeros; ``resize=28, pad=2`` gives 32x32 images
    with the digit in the central 28x28, the way LeNet-5 saw MNIST.
    Pixel values are scaled from 0..16 to [0, 1].
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise ValueError(f"digits: pad must be a non-negative int, got {pad!r}")
    bunch = load_digits()
    images = (bunch.images / 16.0).astype(numpy.float32)[:, None]     # (1797, 1, 8, 8)
    if resize is not None:
        size = (resize, resize) if isinstance(resize, int) else tuple(resize)
        if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
            raise ValueError(f"digits: resize must be a positive int or a pair (h, w) of them, got {resize!r}")
        images = _resize(images, size)
    if pad:
        images = numpy.pad(images, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    train_idx, test_idx = train_test_split(
        numpy.arange(len(images)), test_size=test_size, stratify=bunch.target, random_state=seed)
    idx = numpy.sort(train_idx if train else test_idx)
    return ImageDataset(numpy.ascontiguousarray(images[idx]), bunch.target[idx].astype(numpy.int64),
                        [str(name) for name in bunch.target_names], transform, target_transform)


def sample_images():
    """scikit-learn's two sample photographs (a Chinese temple and a
    flower, 427x640 RGB) as a float32 Tensor of shape (2, 3, 427, 640) in
    [0, 1]."""
    from sklearn.datasets import load_sample_images

    photos = numpy.stack(load_sample_images().images)                  # (2, 427, 640, 3) uint8
    return Tensor._wrap(numpy.ascontiguousarray(photos.transpose(0, 3, 1, 2)).astype(numpy.float32) / 255)
