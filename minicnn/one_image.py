"""What the one-image commands (``python -m minicnn segment`` and
``python -m minicnn detect``) share: a zoo model loaded with trained
weights together with the image it runs on, the model's output on that
one image, and the image as an RGB picture to draw on.
"""
import numpy

from . import models
from .autograd import no_grad
from .tensor import Tensor


def load_model_and_image(path, model, choices, weights, num_classes, untrained):
    """(net, image): ``model`` (one of ``choices``) of ``num_classes``
    classes holding ``weights`` (a training checkpoint or a state dict
    file), and the image at ``path`` as (C, H, W) float32 in [0, 1] with
    the model's C (1: grey, 3: RGB). ``untrained`` ends the error raised
    when ``weights`` is None: what a model with random weights would do."""
    from .classify import _state_dict
    from .finetune import input_channels
    from .transforms import read_image
    from .weights import load_weights

    if model not in choices:
        raise ValueError(f"model must be one of {choices}, got {model!r}")
    if weights is None:
        raise ValueError(f"--weights is required: a model with random weights {untrained}")
    net = models.get_model(model, num_classes=num_classes)
    channels = input_channels(net)
    net.load_state_dict(_state_dict(load_weights(weights), weights))
    image = read_image(path, mode="L" if channels == 1 else "RGB").numpy().astype(numpy.float32) / 255
    return net, image


def run_one(net, image):
    """``net``'s output, in eval mode without a graph, on a batch of the one (C, H, W) ``image`` (an array)."""
    net.eval()
    with no_grad():
        return net(Tensor._wrap(numpy.ascontiguousarray(image[None])))


def rgb_picture(image):
    """(H, W, 3) float64 in [0, 255] from ``image``, (1 or 3, H, W) floats
    in [0, 1] (values outside are clipped); grey is repeated into the
    three channels. Not rounded, so that colours can be blended into it."""
    image = numpy.asarray(image, dtype=numpy.float64)
    rgb = numpy.repeat(image, 3, axis=0) if image.shape[0] == 1 else image
    return rgb.transpose(1, 2, 0).clip(0.0, 1.0) * 255


def add_arguments(parser, default_model, models, task, out_help, scale):
    """The options both commands take after their image: ``--model`` (one of
    ``models``), ``--weights`` (a checkpoint of ``train --task TASK``),
    ``--out`` (``out_help``) and ``--scale`` (default ``scale``)."""
    parser.add_argument("--model", choices=models, default=default_model,
                        help=f"architecture (default: {default_model})")
    parser.add_argument("--weights", required=True, metavar="FILE",
                        help=f"a checkpoint of `python -m minicnn train --task {task}`, or a state dict file")
    parser.add_argument("--out", metavar="FILE", help=out_help)
    parser.add_argument("--scale", type=int, default=scale,
                        help=f"enlarge the picture this many times (default {scale})")
