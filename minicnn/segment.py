"""Semantic segmentation end to end: training (``python -m minicnn train
--task segment``) and predicting a colour mask for an image (``python -m
minicnn segment``).

    python -m minicnn train --task segment --model fcn8s_small --dataset digit_scenes
    python -m minicnn segment scene.png --model fcn8s_small \\
        --weights checkpoints/fcn8s_small-digit_scenes.safetensors --out overlay.png

Training runs ``minicnn.train``'s loop (progress bar, a checkpoint after
every epoch, ``--resume``, ``--overwrite``, the SGD one-cycle recipe)
with the ``Segmentation`` task defined here, which differs from
classification in two ways:

* the target of an image is a mask, one class per pixel, so the loss is
  the cross entropy averaged over every pixel of the batch (pixels
  marked ``ignore_index`` left out), plus ``aux_weight`` (0.5, as in
  torchvision's reference recipe) times that of the auxiliary output for
  the models that have one;
* the score is not accuracy but the mean IoU over the classes, with the
  pixel accuracy beside it, both from one confusion matrix summed over
  the held-out scenes (``mc.metrics``).

``--dataset digit_scenes``: ``mc.datasets.digit_scenes``' 2,000 training
and 500 held-out scenes of 64 x 64 pixels, as (image, mask) pairs.
"""
import os
import sys

import numpy

from . import datasets, one_image
from .functional import cross_entropy
from .metrics import ConfusionMatrix
from .one_image import load_model_and_image, rgb_picture, run_one
from .tensor import Tensor
from .utils.data import Dataset

#: The digits and the background, as mc.datasets.digit_scenes labels them.
NUM_CLASSES = 11

#: The colour of each class in overlays (RGB): the background is left
#: unpainted, the ten digits get ten well-separated colours.
PALETTE = numpy.array([
    (0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)], dtype=numpy.uint8)


def _check_masks(scores, target, ignore_index, what):
    """A clear error for a mask that does not fit (N, K, H, W) ``scores``."""
    if target.dtype.kind not in "iu":
        raise TypeError(f"{what}: the mask must hold integer class indices, got dtype {target.dtype}")
    n, k = scores.shape[:2]
    if tuple(target.shape) != (n,) + tuple(scores.shape[2:]):
        raise ValueError(f"{what}: the mask has shape {tuple(target.shape)}, the scores {tuple(scores.shape)}; "
                         f"expected a mask of shape {(n,) + tuple(scores.shape[2:])}")
    values = target.data[target.data != ignore_index]
    bad = values[(values < 0) | (values >= k)]
    if bad.size:
        raise ValueError(f"{what}: the mask holds class {int(bad.max() if (bad >= k).any() else bad.min())}, "
                         f"but the model predicts {k} classes (0..{k - 1}); mark pixels to skip with "
                         f"ignore_index={ignore_index}")


def segmentation_loss(output, target, ignore_index=255, aux_weight=0.5):
    """Mean per-pixel cross entropy of ``output`` ((N, K, H, W) scores, or
    a dict {"out": ..., "aux": ...} as torchvision's models return) against
    ``target`` (N, H, W) class indices; pixels equal to ``ignore_index``
    do not count; an "aux" output adds ``aux_weight`` times its own loss."""
    outputs = output if isinstance(output, dict) else {"out": output}
    loss = None
    for key, scores in outputs.items():
        _check_masks(scores, target, ignore_index, "segmentation_loss")
        term = cross_entropy(scores, target, ignore_index=ignore_index)
        loss = term if loss is None else loss + aux_weight * term
    return loss


def _scores(output):
    """The main (N, K, H, W) scores of a model's output."""
    return output["out"] if isinstance(output, dict) else output


class MeanIoU:
    """The task's metric: a confusion matrix over the batches given to
    ``update(output, masks)``; ``value`` is its mean IoU, ``counts`` the
    pixel accuracy and the per-class IoUs (for ``train``'s result)."""
    name = "mean_iou"

    def __init__(self, num_classes=NUM_CLASSES, ignore_index=255):
        self.matrix = ConfusionMatrix(num_classes, ignore_index=ignore_index)

    def update(self, output, masks):
        scores = _scores(output)
        _check_masks(scores, masks, self.matrix.ignore_index, "mean IoU")
        self.matrix.update(scores.argmax(1), masks)

    @property
    def value(self):
        return self.matrix.compute()["mean_iou"]

    @property
    def counts(self):
        scores = self.matrix.compute()
        return {"pixel_accuracy": scores["pixel_accuracy"], "iou": [float(v) for v in scores["iou"]]}

    def __str__(self):
        return f"{self.value:.3f} (pixel accuracy {self.matrix.compute()['pixel_accuracy']:.3f})"


class Segmentation:
    """A class per pixel: targets are (N, H, W) int64 masks, outputs
    (N, K, H, W) scores or torchvision's {"out", "aux"} dict; the loss is
    ``segmentation_loss``, the metric the mean IoU (``MeanIoU``)."""

    def __init__(self, num_classes=NUM_CLASSES, ignore_index=255, aux_weight=0.5):
        self.num_classes, self.ignore_index, self.aux_weight = num_classes, ignore_index, aux_weight

    def loss(self, output, target):
        return segmentation_loss(output, target, self.ignore_index, self.aux_weight)

    def metric(self):
        return MeanIoU(self.num_classes, self.ignore_index)


class SceneMasks(Dataset):
    """digit_scenes samples as (image, mask) pairs, which batch with the
    default collate (the boxes, a different number per scene, are left
    out); ``classes`` as the scenes'."""

    def __init__(self, scenes):
        self.scenes = scenes
        self.classes = scenes.classes

    def __getitem__(self, index):
        image, target = self.scenes[index]
        return image, target["mask"]

    def __len__(self):
        return len(self.scenes)


def digit_scene_masks():
    """(train, test) for ``--dataset digit_scenes``: the default digit
    scenes (2,000 training and 500 held-out 64 x 64 scenes) as
    (image, mask) pairs."""
    return SceneMasks(datasets.digit_scenes(train=True)), SceneMasks(datasets.digit_scenes(train=False))


#: The models ``segment`` runs: every segmentation builder of the zoo.
MODELS = ["fcn8s_small", "fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101",
          "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"]


# -- predicting a mask for one image --------------------------------------------
def predict(net, image):
    """(H, W) int64 class of every pixel of ``image``, a (C, H, W) float
    Tensor or array, by ``net`` in eval mode."""
    data = image.data if isinstance(image, Tensor) else numpy.asarray(image)
    return _scores(run_one(net, data)).argmax(1).numpy()[0]


def overlay(image, mask, alpha=0.5):
    """An (H, W, 3) uint8 picture: ``image`` ((C, H, W) floats in [0, 1])
    in grey or colour, with every pixel of a class other than 0 painted
    in PALETTE's colour of its class at opacity ``alpha``."""
    image = numpy.asarray(image, dtype=numpy.float64)
    if image.ndim != 3 or image.shape[0] not in (1, 3) or image.shape[1:] != mask.shape:
        raise ValueError(f"overlay: image must be (1 or 3, H, W) and mask (H, W) of the same H, W, "
                         f"got {image.shape} and {mask.shape}")
    if mask.min() < 0 or mask.max() >= len(PALETTE):
        raise ValueError(f"overlay: mask holds classes outside 0..{len(PALETTE) - 1}")
    rgb = rgb_picture(image)
    painted = mask > 0
    rgb[painted] = (1 - alpha) * rgb[painted] + alpha * PALETTE[mask[painted]]
    return rgb.round().astype(numpy.uint8)


def segment_file(path, model="fcn8s_small", weights=None, out=None, scale=1):
    """Read the image at ``path``, predict its mask with ``model`` holding
    ``weights`` (a training checkpoint or a state dict file) and write the
    overlay PNG to ``out`` (default: PATH without extension +
    ``.overlay.png``), enlarged ``scale`` times (nearest neighbour, to see
    small scenes). Returns (out, {class name: pixels}) for the classes found."""
    from PIL import Image

    net, image = load_model_and_image(path, model, MODELS, weights, NUM_CLASSES, "paints random classes")
    mask = predict(net, image)
    picture = overlay(image, mask)
    if scale != 1:
        picture = picture.repeat(scale, axis=0).repeat(scale, axis=1)
    out = out or os.path.splitext(path)[0] + ".overlay.png"
    Image.fromarray(picture).save(out)
    counts = numpy.bincount(mask.ravel(), minlength=NUM_CLASSES)
    found = {datasets.DigitScenes.classes[c]: int(counts[c]) for c in range(1, NUM_CLASSES) if counts[c]}
    return out, found


def add_arguments(parser):
    """The options of ``python -m minicnn segment``."""
    parser.add_argument("image", help="an image file (PNG, JPEG, ...)")
    one_image.add_arguments(parser, "fcn8s_small", MODELS, "segment", "the overlay PNG (default: IMAGE.overlay.png)",
                            scale=1)


def main(args):
    """Run ``segment_file`` from parsed ``args``; returns the exit status."""
    try:
        out, found = segment_file(args.image, args.model, args.weights, args.out, args.scale)
    except (FileNotFoundError, ValueError) as e:
        print(f"python -m minicnn segment: error: {e}", file=sys.stderr)
        return 2
    print(f"{args.image}: " + (", ".join(f"digit {name} ({pixels} pixels)" for name, pixels in found.items())
                               or "nothing but background"))
    print(f"overlay written to {out}")
    return 0
