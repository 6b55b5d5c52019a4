"""Object detection end to end: training (``python -m minicnn train
--task detect``) and drawing the boxes a detector finds in an image
(``python -m minicnn detect``).

    python -m minicnn train --task detect --model yolo_small --dataset digit_scenes
    python -m minicnn detect scene.png --model yolo_small \\
        --weights checkpoints/yolo_small-digit_scenes.safetensors --out boxes.png

Training runs ``minicnn.train``'s loop (progress bar, a checkpoint after
every epoch, ``--resume``, ``--overwrite``, the SGD one-cycle recipe)
with the ``Detection`` task defined here, which differs from
classification in three ways:

* a detector is called as torchvision calls one: in training mode with
  the targets, ``model(images, targets)``, returning a dict of losses,
  whose sum is the loss (``Detection.forward`` and ``Detection.loss``);
* a scene has a different number of boxes each, so a sample's target is
  one (M, 5) array, a row [x1, y1, x2, y2, label] per box padded with
  rows of label 0 (the background: no box) to the dataset's most boxes,
  which the default collate batches into (N, M, 5) (``SceneBoxes``);
  ``boxes_and_labels`` turns a batch back into torchvision's target dicts;
* the score is COCO's mean average precision of the detections on the
  held-out scenes (``mc.metrics.mean_average_precision``): mAP@0.5 is the
  run's metric, mAP@[.5:.95] is shown beside it. Training batches are
  not scored (the model returns losses there, not detections), so the
  train metric of the log and the progress bar reads nan.

``--dataset digit_scenes``: ``mc.datasets.digit_scenes``' 2,000 training
and 500 held-out scenes of 64 x 64 pixels, with their boxes and labels.
"""
import math
import os
import sys

import numpy

from . import datasets, one_image
from .detection_metrics import mean_average_precision
from .one_image import load_model_and_image, rgb_picture, run_one
from .segment import NUM_CLASSES, PALETTE
from .tensor import Tensor
from .utils.data import Dataset

#: The models ``detect`` runs: detectors that take an (N, C, H, W) batch.
MODELS = ["yolo_small"]


def boxes_and_labels(targets):
    """torchvision's targets, one dict {"boxes" (G, 4), "labels" (G,)} of
    Tensors per image, from a batch of padded targets (N, M, 5) (rows
    [x1, y1, x2, y2, label]; rows of label 0 are padding)."""
    rows = targets.numpy() if isinstance(targets, Tensor) else numpy.asarray(targets)
    if rows.ndim != 3 or rows.shape[2] != 5:
        raise ValueError(f"detection targets must be (N, M, 5) rows [x1, y1, x2, y2, label] (padding rows of label "
                         f"0), got shape {rows.shape}; train --task detect on --dataset digit_scenes")
    out = []
    for image in rows:
        real = image[image[:, 4] > 0]
        out.append({"boxes": Tensor._wrap(numpy.ascontiguousarray(real[:, :4], numpy.float32)),
                    "labels": Tensor._wrap(real[:, 4].astype(numpy.int64))})
    return out


class MeanAveragePrecision:
    """The task's metric: the detections and ground truths of the batches
    given to ``update(detections, targets)`` (a loss dict, from a training
    batch, is skipped), scored by ``mean_average_precision``. ``value`` is
    mAP@0.5 (nan before any detections), ``counts`` mAP@0.5 and
    mAP@[.5:.95] (for ``train``'s result)."""
    name = "map50"

    def __init__(self):
        self.detections, self.truths = [], []
        self._scores = None

    def update(self, output, targets):
        if isinstance(output, dict):
            return
        truths = boxes_and_labels(targets)
        if len(output) != len(truths):
            raise ValueError(f"mAP: {len(output)} detection dicts for {len(truths)} images")
        self.detections += output
        self.truths += truths
        self._scores = None

    def _computed(self):
        if self._scores is None:
            self._scores = (mean_average_precision(self.detections, self.truths) if self.truths
                            else {"map": math.nan, "map_50": math.nan})
        return self._scores

    @property
    def value(self):
        return self._computed()["map_50"]

    @property
    def counts(self):
        scores = self._computed()
        return {"map_50": scores["map_50"], "map": scores["map"]}

    def __str__(self):
        return f"{self.value:.3f} (mAP@[.5:.95] {self._computed()['map']:.3f})"


class SceneBoxes(Dataset):
    """digit_scenes samples as (image, padded targets (M, 5)), which batch
    with the default collate (module docstring); M is the most boxes any
    scene of ``scenes`` holds; ``classes`` as the scenes'."""

    def __init__(self, scenes):
        self.scenes = scenes
        self.classes = scenes.classes
        self.rows = max(1, max(len(b) for b in scenes.boxes))

    def __getitem__(self, index):
        image, target = self.scenes[index]
        rows = numpy.zeros((self.rows, 5), numpy.float32)
        boxes = target["boxes"].numpy()
        rows[:len(boxes), :4] = boxes
        rows[:len(boxes), 4] = target["labels"].numpy()
        return image, Tensor._wrap(rows)

    def __len__(self):
        return len(self.scenes)


def digit_scene_boxes():
    """(train, test) for ``--task detect --dataset digit_scenes``: the
    default digit scenes (2,000 training and 500 held-out 64 x 64 scenes)
    with padded box targets."""
    return SceneBoxes(datasets.digit_scenes(train=True)), SceneBoxes(datasets.digit_scenes(train=False))


class Detection:
    """Boxes and labels per image: targets are padded (N, M, 5) rows, the
    model a torchvision-style detector (a loss dict in training mode,
    detection dicts in eval mode); the loss is the sum of the loss dict,
    the metric COCO's mAP (``MeanAveragePrecision``). ``datasets``: the
    datasets the task trains on (name -> loader of (train, test)), at
    their own image size (the boxes are in their pixels)."""

    datasets = {"digit_scenes": digit_scene_boxes}

    def forward(self, net, images, targets):
        """``net``'s output on a batch: its losses in training mode, its detections in eval mode."""
        if net.training:
            return net(images, boxes_and_labels(targets))
        return net(images)

    def loss(self, output, target):
        if not isinstance(output, dict) or not output:
            raise TypeError(f"the detect task needs a detector that returns a dict of losses in training mode, got "
                            f"{type(output).__name__}; see `python -m minicnn detect --help` for the detectors")
        return sum(output.values())

    def metric(self):
        return MeanAveragePrecision()


# -- drawing the boxes found in one image ---------------------------------------
def draw_boxes(image, detections, scale=4, names=datasets.DigitScenes.classes):
    """A PIL image: ``image`` ((C, H, W) floats in [0, 1]) in grey or
    colour, enlarged ``scale`` times (nearest neighbour), with each box of
    ``detections`` (a dict of ``boxes`` (D, 4) xyxy pixels, ``labels``,
    ``scores``) drawn in PALETTE's colour of its label and captioned
    "NAME SCORE"."""
    from PIL import Image, ImageDraw

    image = numpy.asarray(image)
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"draw_boxes: image must be (1 or 3, H, W), got {image.shape}")
    picture = Image.fromarray(rgb_picture(image).round().astype(numpy.uint8))
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    draw = ImageDraw.Draw(picture)
    boxes, labels, scores = (numpy.asarray(_numpy(detections[k])) for k in ("boxes", "labels", "scores"))
    for box, label, score in zip(boxes * scale, labels, scores):
        colour = tuple(int(v) for v in PALETTE[int(label) % len(PALETTE)])
        draw.rectangle([float(v) for v in box], outline=colour, width=max(1, scale // 2))
        draw.text((float(box[0]) + 2, float(box[1]) + 1), f"{names[int(label)]} {score:.2f}", fill=colour)
    return picture


def _numpy(value):
    return value.numpy() if isinstance(value, Tensor) else value


def detect_file(path, model="yolo_small", weights=None, out=None, scale=4, score_threshold=0.5):
    """Read the image at ``path``, find its objects with ``model`` holding
    ``weights`` (a training checkpoint or a state dict file), keep those
    scoring at least ``score_threshold`` and write the picture of their
    boxes (``draw_boxes``) to ``out`` (default: PATH without extension +
    ``.boxes.png``). Returns (out, the detections kept: a dict of arrays)."""
    if not 0 <= score_threshold <= 1:
        raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold}")
    net, image = load_model_and_image(path, model, MODELS, weights, NUM_CLASSES, "finds random boxes")
    found = run_one(net, image)[0]
    keep = found["scores"].numpy() >= score_threshold
    kept = {key: value.numpy()[keep] for key, value in found.items()}
    out = out or os.path.splitext(path)[0] + ".boxes.png"
    draw_boxes(image, kept, scale).save(out)
    return out, kept


def add_arguments(parser):
    """The options of ``python -m minicnn detect``."""
    parser.add_argument("image", help="an image file (PNG, JPEG, ...); H and W multiples of the model's stride (8)")
    one_image.add_arguments(parser, "yolo_small", MODELS, "detect", "the PNG with the boxes (default: IMAGE.boxes.png)",
                            scale=4)
    parser.add_argument("--score-threshold", type=float, default=0.5,
                        help="draw the detections scoring at least this (default 0.5)")


def main(args):
    """Run ``detect_file`` from parsed ``args``; returns the exit status."""
    try:
        out, kept = detect_file(args.image, args.model, args.weights, args.out, args.scale, args.score_threshold)
    except (FileNotFoundError, ValueError) as e:
        print(f"python -m minicnn detect: error: {e}", file=sys.stderr)
        return 2
    names = datasets.DigitScenes.classes
    found = [f"digit {names[label]} ({score:.2f}) at {', '.join(f'{v:.0f}' for v in box)}"
             for box, label, score in zip(kept["boxes"], kept["labels"], kept["scores"])]
    print(f"{args.image}: " + ("; ".join(found) or "nothing found"))
    print(f"boxes drawn in {out}")
    return 0
