"""Classifying images with pretrained weights: ``python -m minicnn classify``.

    python -m minicnn classify cat.jpg --model resnet50 --weights resnet50-11ad3fa6.pth

reads each image, preprocesses it as torchvision does for those weights,
runs the model and prints the ``--top`` most probable ImageNet classes:

    resnet50, resize 232, crop 224, bilinear (torchvision's IMAGENET1K_V2 preprocessing)
    cat.jpg
       52.31%  tabby
       30.87%  tiger cat
       ...

The weights: any file ``mc.load_weights`` reads (torchvision's ``.pth``
checkpoints as downloaded, safetensors, npz), holding a state dict with
torchvision's parameter names. ``--weights`` is required: a model with
random weights names random classes with confidence. ``--random-weights``
runs without (to try the pipeline, or time it); its output means nothing.

The preprocessing: when the weights file keeps torchvision's name
(``resnet50-0676ba61.pth``), the preset of those weights
(IMAGENET1K_V1: resize 256); otherwise the preset of the model's DEFAULT
weights (IMAGENET1K_V2 for resnet50: resize 232). ``--resize-size``,
``--crop-size`` and ``--interpolation`` override it, e.g. for weights
trained elsewhere.

The model runs fused (``mc.fuse``: batch norms folded into the convs,
activations and residual adds in the convs' output pass), as it only
infers; the outputs equal the unfused model's to float32 rounding.
"""
import sys
from collections.abc import Mapping

from . import transforms
from .autograd import no_grad
from .functional import stack
from .fuse import fuse
from .models import decode_predictions, get_model
from .models.imagenet import _PRESETS, _find_preset, _preset_for_file
from .weights import load_weights


def classify_files(images, model="resnet50", weights=None, top=5, resize_size=None, crop_size=None,
                   interpolation=None, random_weights=False):
    """Classify the image files ``images`` (a list of paths) with ``model``
    (a zoo name) and the weights file ``weights``.

    Returns (description, predictions): a line saying which model and
    preprocessing ran, and one list of ``top`` (category, probability)
    pairs per image. Raises ValueError for bad arguments (no weights, an
    unknown model, weights that do not fit the model), FileNotFoundError
    or OSError for files that cannot be read.
    """
    if model not in _PRESETS:
        raise ValueError(f"model must be one of the models with pretrained ImageNet weights "
                         f"({', '.join(sorted(_PRESETS))}), got {model!r}")
    if weights is None and not random_weights:
        raise ValueError("--weights FILE is required: a model with random weights names random classes. "
                         "Pass --random-weights to run without (the output then means nothing)")
    if weights is not None and random_weights:
        raise ValueError("give either --weights or --random-weights, not both")
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= 1000:
        raise ValueError(f"--top must be an int from 1 to 1000, got {top!r}")

    transform, description = preprocessing(model, weights, resize_size, crop_size, interpolation)
    if random_weights:
        description += ", RANDOM WEIGHTS: the classes mean nothing"
    # The images first: an unreadable one fails before the slow part.
    batch = stack([transform(transforms.read_image(path, apply_exif_orientation=True)) for path in images])
    net = get_model(model)
    if weights is not None:
        net.load_state_dict(_state_dict(load_weights(weights), weights))
    # Only inference here: batch norms folded into the convs, activations in their output (mc.fuse).
    net = fuse(net.eval())
    with no_grad():
        logits = net(batch)
    return description, decode_predictions(logits, top)


def preprocessing(model, weights=None, resize_size=None, crop_size=None, interpolation=None):
    """The ImageClassification preset for ``model`` with the weights file
    ``weights`` (see the module docstring), with any of ``resize_size``,
    ``crop_size`` and ``interpolation`` overridden; and a line describing
    it. Returns (transform, description)."""
    preset = (weights is not None and _preset_for_file(model, weights)) or _find_preset(model)
    transform = transforms.ImageClassification(
        crop_size=preset.crop_size if crop_size is None else crop_size,
        resize_size=preset.resize_size if resize_size is None else resize_size,
        interpolation=preset.interpolation if interpolation is None else interpolation,
        mean=preset.mean, std=preset.std)
    crop_h, crop_w = transform.crop_size
    description = (f"{model}, resize {transform.resize_size}, crop {crop_h if crop_h == crop_w else (crop_h, crop_w)}, "
                   f"{transform.interpolation}")
    if all(v is None for v in (resize_size, crop_size, interpolation)):
        description += f" (torchvision's {preset.weights} preprocessing)"
    return transform, description


def _state_dict(loaded, path):
    """The state dict inside what ``load_weights`` returned: the mapping
    itself, or a training checkpoint's ``"state_dict"`` / ``"model"``."""
    if isinstance(loaded, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(loaded.get(key), Mapping):
                return loaded[key]
        return loaded
    raise ValueError(f"{path} holds a {type(loaded).__name__}, not a state dict")


def add_arguments(parser):
    """The options of ``python -m minicnn classify``."""
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...)")
    parser.add_argument("--model", choices=sorted(_PRESETS), default="resnet50", metavar="MODEL",
                        help="architecture, a model with pretrained ImageNet weights in torchvision "
                             "(default: resnet50)")
    parser.add_argument("--weights", metavar="FILE", help="the pretrained weights (.pth, .safetensors, .npz)")
    parser.add_argument("--random-weights", action="store_true",
                        help="run without weights; the classes printed then mean nothing")
    parser.add_argument("--top", type=int, default=5, help="how many classes to print (default: 5)")
    parser.add_argument("--resize-size", type=int, help="resize the shorter side to this (default: the weights' "
                                                        "preset)")
    parser.add_argument("--crop-size", type=int, help="centre crop size (default: the weights' preset)")
    parser.add_argument("--interpolation", choices=["bilinear", "bicubic"],
                        help="resize interpolation (default: the weights' preset)")


def main(args):
    """Run ``classify_files`` from parsed command-line ``args`` and print
    the predictions; returns the exit status."""
    try:
        description, predictions = classify_files(
            args.images, model=args.model, weights=args.weights, top=args.top, resize_size=args.resize_size,
            crop_size=args.crop_size, interpolation=args.interpolation, random_weights=args.random_weights)
    except (OSError, ValueError) as e:  # OSError: unreadable files; ValueError: bad arguments or weights
        message = " ".join(str(e).split())  # one line, whatever the message holds
        print(f"python -m minicnn classify: error: {message}", file=sys.stderr)
        return 2
    print(description)
    for path, pairs in zip(args.images, predictions):
        print(path)
        for name, probability in pairs:
            print(f"  {100 * probability:6.2f}%  {name}")
    return 0
