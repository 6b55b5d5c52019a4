"""Image data: small real images that ship with scikit-learn, so nothing
is downloaded (``mc.datasets.digits()``, ``mc.datasets.sample_images()``),
and folders of image files in torchvision's layout
(``mc.datasets.ImageFolder``).

Images are float32 in [0, 1], channels first, like everything in minicnn
(``ImageFolder`` gives what its loader reads: uint8 by default).
"""
import os

import numpy

from .tensor import Tensor
from .transforms import read_image, resize as _resize
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


#: The file endings ``ImageFolder`` takes by default (torchvision's list).
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def default_loader(path):
    """``ImageFolder``'s loader: the image at ``path`` as a uint8 RGB
    Tensor (3, H, W) (``mc.transforms.read_image``)."""
    return read_image(path, mode="RGB")


class ImageFolder(Dataset):
    """Images arranged in one folder per class, as torchvision's
    ``ImageFolder`` reads them::

        root/cat/001.png
        root/cat/nested/002.jpg
        root/dog/xyz.png

    The classes are the sub-folders of ``root``, sorted by name, numbered
    from 0 in that order (``class_to_idx``); a class's images are every
    file below its folder (sub-folders included, links followed) whose
    name ends with one of ``IMG_EXTENSIONS`` (any case), or, when
    ``is_valid_file`` is given, every file it accepts; they are listed in
    sorted order. ``dataset[i]`` is ``(transform(loader(path)),
    target_transform(class_index))``.

    Attributes as in torchvision: ``classes`` (sorted names),
    ``class_to_idx``, ``samples`` (a list of (path, class_index), also
    ``imgs``), ``targets`` (the class index of each sample), ``root``,
    ``loader``, ``extensions`` (None when ``is_valid_file`` is given).

    Differs from torchvision in one way: the default ``loader`` returns a
    uint8 Tensor (3, H, W) (``mc.transforms.read_image``) instead of a PIL
    image, since minicnn's transforms take channels-first tensors (the same
    as torchvision's ``loader=torchvision.io.decode_image``). A ``root``
    without class folders, or a class folder without an image
    (``allow_empty=False``), raises FileNotFoundError, as in torchvision.
    """

    def __init__(self, root, transform=None, target_transform=None, loader=default_loader, is_valid_file=None,
                 allow_empty=False):
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"ImageFolder: root must be a path, got {type(root).__name__}")
        self.root = os.path.expanduser(os.fspath(root))
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"ImageFolder: {self.root} is not a folder")
        self.extensions = IMG_EXTENSIONS if is_valid_file is None else None
        self.classes = sorted(entry.name for entry in os.scandir(self.root) if entry.is_dir())
        if not self.classes:
            raise FileNotFoundError(f"Couldn't find any class folder in {self.root}.")
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}
        valid = is_valid_file or (lambda path: path.lower().endswith(IMG_EXTENSIONS))
        self.samples = []
        for name in self.classes:
            folder = os.path.join(self.root, name)
            for directory, _, files in sorted(os.walk(folder, followlinks=True)):
                self.samples += [(os.path.join(directory, file), self.class_to_idx[name]) for file in sorted(files)
                                 if valid(os.path.join(directory, file))]
        empty = sorted(set(self.classes) - {self.classes[index] for _, index in self.samples})
        if empty and not allow_empty:
            message = f"Found no valid file for the classes {', '.join(empty)}. "
            if self.extensions is not None:
                message += f"Supported extensions are: {', '.join(self.extensions)}"
            raise FileNotFoundError(message)
        self.imgs = self.samples
        self.targets = [index for _, index in self.samples]
        self.loader = loader
        self.transform = transform
        self.target_transform = target_transform

    def __getitem__(self, index):
        path, target = self.samples[index]
        sample = self.loader(path)
        if self.transform is not None:
            sample = self.transform(sample)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return sample, target

    def __len__(self):
        return len(self.samples)

    def __repr__(self):
        return f"ImageFolder({len(self)} images in {len(self.classes)} classes, root {self.root!r})"
