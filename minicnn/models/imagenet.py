"""Classifying images with torchvision's pretrained ImageNet weights.

    import minicnn as mc

    model = mc.models.resnet50()
    model.load_state_dict(mc.load_weights("resnet50-11ad3fa6.pth"))
    preprocess = mc.models.imagenet_transforms("resnet50")
    mc.models.classify(model, "cat.jpg", transform=preprocess)
    # [('tabby', 0.52), ('tiger cat', 0.31), ('Egyptian cat', 0.11), ...]

* ``imagenet_categories()``: the 1,000 class names; class i is entry i.
* ``imagenet_transforms(model, weights=None)``: the preprocessing a
  model's pretrained weights were evaluated with (torchvision's
  ``weights.transforms()``), as ``mc.transforms.ImageClassification``.
* ``decode_predictions(logits, k=5)``: the k most probable classes of
  each image, as (category, probability) pairs.
* ``classify(model, image, k=5)``: read, preprocess, run and decode in
  one call.

The class names and the presets are data copied from torchvision 0.29
(``torchvision.models._meta._IMAGENET_CATEGORIES`` and each weights
enum's ``transforms()``); minicnn does not import torchvision.
"""
import collections
import functools
import numbers
import os
from importlib import resources

import numpy

from .. import transforms
from ..autograd import no_grad
from ..functional import softmax, topk
from ..tensor import Tensor

#: One set of torchvision's pretrained ImageNet weights: its name in the
#: weights enum, its checkpoint file name (the end of its download URL),
#: and the preprocessing it was evaluated with.
Preset = collections.namedtuple(
    "Preset", ["weights", "file", "crop_size", "resize_size", "interpolation", "mean", "std"],
    defaults=[transforms.IMAGENET_MEAN, transforms.IMAGENET_STD])

#: model name -> its pretrained ImageNet weights, torchvision's DEFAULT
#: first. Only efficientnet_v2_l normalises differently (mean = std = 0.5).
#: vgg16's IMAGENET1K_FEATURES (a feature extractor with no classifier) is
#: left out.
_PRESETS = {name: [Preset(*row) for row in rows] for name, rows in {
    "alexnet": [("IMAGENET1K_V1", "alexnet-owt-7be5be79.pth", 224, 256, "bilinear")],
    "convnext_base": [("IMAGENET1K_V1", "convnext_base-6075fbad.pth", 224, 232, "bilinear")],
    "convnext_large": [("IMAGENET1K_V1", "convnext_large-ea097f82.pth", 224, 232, "bilinear")],
    "convnext_small": [("IMAGENET1K_V1", "convnext_small-0c510722.pth", 224, 230, "bilinear")],
    "convnext_tiny": [("IMAGENET1K_V1", "convnext_tiny-983f1562.pth", 224, 236, "bilinear")],
    "densenet121": [("IMAGENET1K_V1", "densenet121-a639ec97.pth", 224, 256, "bilinear")],
    "densenet161": [("IMAGENET1K_V1", "densenet161-8d451a50.pth", 224, 256, "bilinear")],
    "densenet169": [("IMAGENET1K_V1", "densenet169-b2777c0a.pth", 224, 256, "bilinear")],
    "densenet201": [("IMAGENET1K_V1", "densenet201-c1103571.pth", 224, 256, "bilinear")],
    "efficientnet_b0": [("IMAGENET1K_V1", "efficientnet_b0_rwightman-7f5810bc.pth", 224, 256, "bicubic")],
    "efficientnet_b1": [
        ("IMAGENET1K_V2", "efficientnet_b1-c27df63c.pth", 240, 255, "bilinear"),
        ("IMAGENET1K_V1", "efficientnet_b1_rwightman-bac287d4.pth", 240, 256, "bicubic"),
    ],
    "efficientnet_b2": [("IMAGENET1K_V1", "efficientnet_b2_rwightman-c35c1473.pth", 288, 288, "bicubic")],
    "efficientnet_b3": [("IMAGENET1K_V1", "efficientnet_b3_rwightman-b3899882.pth", 300, 320, "bicubic")],
    "efficientnet_b4": [("IMAGENET1K_V1", "efficientnet_b4_rwightman-23ab8bcd.pth", 380, 384, "bicubic")],
    "efficientnet_b5": [("IMAGENET1K_V1", "efficientnet_b5_lukemelas-1a07897c.pth", 456, 456, "bicubic")],
    "efficientnet_b6": [("IMAGENET1K_V1", "efficientnet_b6_lukemelas-24a108a5.pth", 528, 528, "bicubic")],
    "efficientnet_b7": [("IMAGENET1K_V1", "efficientnet_b7_lukemelas-c5b4e57e.pth", 600, 600, "bicubic")],
    "efficientnet_v2_l": [
        ("IMAGENET1K_V1", "efficientnet_v2_l-59c71312.pth", 480, 480, "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    ],
    "efficientnet_v2_m": [("IMAGENET1K_V1", "efficientnet_v2_m-dc08266a.pth", 480, 480, "bilinear")],
    "efficientnet_v2_s": [("IMAGENET1K_V1", "efficientnet_v2_s-dd5fe13b.pth", 384, 384, "bilinear")],
    "googlenet": [("IMAGENET1K_V1", "googlenet-1378be20.pth", 224, 256, "bilinear")],
    "inception_v3": [("IMAGENET1K_V1", "inception_v3_google-0cc3c7bd.pth", 299, 342, "bilinear")],
    "mnasnet0_5": [("IMAGENET1K_V1", "mnasnet0.5_top1_67.823-3ffadce67e.pth", 224, 256, "bilinear")],
    "mnasnet0_75": [("IMAGENET1K_V1", "mnasnet0_75-7090bc5f.pth", 224, 232, "bilinear")],
    "mnasnet1_0": [("IMAGENET1K_V1", "mnasnet1.0_top1_73.512-f206786ef8.pth", 224, 256, "bilinear")],
    "mnasnet1_3": [("IMAGENET1K_V1", "mnasnet1_3-a4c69d6f.pth", 224, 232, "bilinear")],
    "mobilenet_v2": [
        ("IMAGENET1K_V2", "mobilenet_v2-7ebf99e0.pth", 224, 232, "bilinear"),
        ("IMAGENET1K_V1", "mobilenet_v2-b0353104.pth", 224, 256, "bilinear"),
    ],
    "mobilenet_v3_large": [
        ("IMAGENET1K_V2", "mobilenet_v3_large-5c1a4163.pth", 224, 232, "bilinear"),
        ("IMAGENET1K_V1", "mobilenet_v3_large-8738ca79.pth", 224, 256, "bilinear"),
    ],
    "mobilenet_v3_small": [("IMAGENET1K_V1", "mobilenet_v3_small-047dcff4.pth", 224, 256, "bilinear")],
    "regnet_x_16gf": [
        ("IMAGENET1K_V2", "regnet_x_16gf-ba3796d7.pth", 224, 232, "bilinear"),
        ("IMAGENET1K_V1", "regnet_x_16gf-2007eb11.pth", 224, 256, "bilinear"),
    ],
    "regnet_x_1_6gf": [
        ("IMAGENET1K_V2", "regnet_x_1_6gf-a12f2b72.pth", 224, 232, "bilinear"),
        ("IMAGENET1K_V1", "regnet_x_1_6gf-e3633e7f.pth", 224, 256, "bilinear"),
    ],
    "regnet_x_32gf": [
        ("IMAGENET1K_V2", "regnet_x_32gf-6eb8fdc6.pth", 224, 232, "bilinear"),
        ("IMAGENET1K_V1", "regnet_x_32gf-9d47f8d0.pth", 224, 256, "bilinear"),
    ],
    "regnet_x_3_2gf": [
        ("IMAGENET1K_V2", "regnet_x_3_2gf-7071aa85.pth", 224, 232, "bilinear"),
        ("IMAGENET1K_V1", "regnet_x_3_2gf-f342aeae.pth", 224, 256, "bilinear"),
    ],
    "regnet_x_400mf": [
        ("IMAGENET1K_V2", "regnet_x_400mf-62229a5f.pth", 224, 232, "bilinear"),
        ("IMAGENET1K_V1", "regnet_x_400mf-adf1edd5.pth", 224, 256, "bilinear"),
    ],
    "regnet_x_800mf": [
        ("IMAGENET1K_V2", "regnet_x_800mf-94a99ebd.pth", 224, 232, "bilinear"),
        ("IMAGENET1K_V1", "regnet_x_800mf-ad17e45c.pth", 224, 256, "bilinear"),
    ],
    "regnet_x_8gf": [
        ("IMAGENET1K_V2", "regnet_x_8gf-2b70d774.pth", 224, 232, "bilinear"),
        ("IMAGENET1K_V1", "regnet_x_8gf-03ceed89.pth", 224, 256, "bilinear"),
    ],
    "regnet_y_128gf": [
        ("IMAGENET1K_SWAG_E2E_V1", "regnet_y_128gf_swag-c8ce3e52.pth", 384, 384, "bicubic"),
        ("IMAGENET1K_SWAG_LINEAR_V1", "regnet_y_128gf_lc_swag-cbe8ce12.pth", 224, 224, "bicubic"),
    ],
    "regnet_y_16gf": [
        ("IMAGENET1K_V2", "regnet_y_16gf-3e4a00f9.pth", 224, 232, "bilinear"),
        ("IMAGENET1K_V1", "regnet_y_16gf-9e6ed7dd.pth", 224, 256, "bilinear"),
        ("IMAGENET1K_SWAG_E2E_V1", "regnet_y_16gf_swag-43afe44d.pth", 384, 384, "bicubic"),
        ("IMAGENET1K_SWAG_LINEAR_V1", "regnet_y_16gf_lc_swag-f3ec0043.pth", 224, 224, "bicubic"),
    ],
    "regnet_y_1_6gf": [
        ("IMAGENET1K_V2", "regnet_y_1_6gf-0d7bc02a.pth", 224, 232, "bilinear"),
        ("IMAGENET1K_V1", "regnet_y_1_6gf-b11a554e.pth", 224, 256, "bilinear"),
    ],
    "regnet_y_32gf": [
        ("IMAGENET1K_V2", "regnet_y_32gf-8db6d4b5.pth", 224, 232, "bilinear"),
        ("IMAGENET1K_V1", "regnet_y_32gf-4dee3f7a.pth", 224, 256, "bilinear"),
        ("IMAGENET1K_SWAG_E2E_V1", "regnet_y_32gf_swag-04fdfa75.pth", 384, 384, "bicubic"),
        ("IMAGENET1K_SWAG_LINEAR_V1", "regnet_y_32gf_lc_swag-e1583746.pth", 224, 224, "bicubic"),
    ],
    "regnet_y_3_2gf": [
        ("IMAGENET1K_V2", "regnet_y_3_2gf-9180c971.pth", 224, 232, "bilinear"),
        ("IMAGENET1K_V1", "regnet_y_3_2gf-b5a9779c.pth", 224, 256, "bilinear"),
    ],
    "regnet_y_400mf": [
        ("IMAGENET1K_V2", "regnet_y_400mf-e6988f5f.pth", 224, 232, "bilinear"),
        ("IMAGENET1K_V1", "regnet_y_400mf-c65dace8.pth", 224, 256, "bilinear"),
    ],
    "regnet_y_800mf": [
        ("IMAGENET1K_V2", "regnet_y_800mf-58fc7688.pth", 224, 232, "bilinear"),
        ("IMAGENET1K_V1", "regnet_y_800mf-1b27b58c.pth", 224, 256, "bilinear"),
    ],
    "regnet_y_8gf": [
        ("IMAGENET1K_V2", "regnet_y_8gf-dc2b1b54.pth", 224, 232, "bilinear"),
        ("IMAGENET1K_V1", "regnet_y_8gf-d0d0e4a8.pth", 224, 256, "bilinear"),
    ],
    "resnet101": [
        ("IMAGENET1K_V2", "resnet101-cd907fc2.pth", 224, 232, "bilinear"),
        ("IMAGENET1K_V1", "resnet101-63fe2227.pth", 224, 256, "bilinear"),
    ],
    "resnet152": [
        ("IMAGENET1K_V2", "resnet152-f82ba261.pth", 224, 232, "bilinear"),
        ("IMAGENET1K_V1", "resnet152-394f9c45.pth", 224, 256, "bilinear"),
    ],
    "resnet18": [("IMAGENET1K_V1", "resnet18-f37072fd.pth", 224, 256, "bilinear")],
    "resnet34": [("IMAGENET1K_V1", "resnet34-b627a593.pth", 224, 256, "bilinear")],
    "resnet50": [
        ("IMAGENET1K_V2", "resnet50-11ad3fa6.pth", 224, 232, "bilinear"),
        ("IMAGENET1K_V1", "resnet50-0676ba61.pth", 224, 256, "bilinear"),
    ],
    "resnext101_32x8d": [
        ("IMAGENET1K_V2", "resnext101_32x8d-110c445d.pth", 224, 232, "bilinear"),
        ("IMAGENET1K_V1", "resnext101_32x8d-8ba56ff5.pth", 224, 256, "bilinear"),
    ],
    "resnext101_64x4d": [("IMAGENET1K_V1", "resnext101_64x4d-173b62eb.pth", 224, 232, "bilinear")],
    "resnext50_32x4d": [
        ("IMAGENET1K_V2", "resnext50_32x4d-1a0047aa.pth", 224, 232, "bilinear"),
        ("IMAGENET1K_V1", "resnext50_32x4d-7cdf4587.pth", 224, 256, "bilinear"),
    ],
    "shufflenet_v2_x0_5": [("IMAGENET1K_V1", "shufflenetv2_x0.5-f707e7126e.pth", 224, 256, "bilinear")],
    "shufflenet_v2_x1_0": [("IMAGENET1K_V1", "shufflenetv2_x1-5666bf0f80.pth", 224, 256, "bilinear")],
    "shufflenet_v2_x1_5": [("IMAGENET1K_V1", "shufflenetv2_x1_5-3c479a10.pth", 224, 232, "bilinear")],
    "shufflenet_v2_x2_0": [("IMAGENET1K_V1", "shufflenetv2_x2_0-8be3c8ee.pth", 224, 232, "bilinear")],
    "squeezenet1_0": [("IMAGENET1K_V1", "squeezenet1_0-b66bff10.pth", 224, 256, "bilinear")],
    "squeezenet1_1": [("IMAGENET1K_V1", "squeezenet1_1-b8a52dc0.pth", 224, 256, "bilinear")],
    "vgg11": [("IMAGENET1K_V1", "vgg11-8a719046.pth", 224, 256, "bilinear")],
    "vgg11_bn": [("IMAGENET1K_V1", "vgg11_bn-6002323d.pth", 224, 256, "bilinear")],
    "vgg13": [("IMAGENET1K_V1", "vgg13-19584684.pth", 224, 256, "bilinear")],
    "vgg13_bn": [("IMAGENET1K_V1", "vgg13_bn-abd245e5.pth", 224, 256, "bilinear")],
    "vgg16": [("IMAGENET1K_V1", "vgg16-397923af.pth", 224, 256, "bilinear")],
    "vgg16_bn": [("IMAGENET1K_V1", "vgg16_bn-6c64b313.pth", 224, 256, "bilinear")],
    "vgg19": [("IMAGENET1K_V1", "vgg19-dcbb9e9d.pth", 224, 256, "bilinear")],
    "vgg19_bn": [("IMAGENET1K_V1", "vgg19_bn-c79401a0.pth", 224, 256, "bilinear")],
    "wide_resnet101_2": [
        ("IMAGENET1K_V2", "wide_resnet101_2-d733dc28.pth", 224, 232, "bilinear"),
        ("IMAGENET1K_V1", "wide_resnet101_2-32ee1156.pth", 224, 256, "bilinear"),
    ],
    "wide_resnet50_2": [
        ("IMAGENET1K_V2", "wide_resnet50_2-9ba9bcbe.pth", 224, 232, "bilinear"),
        ("IMAGENET1K_V1", "wide_resnet50_2-95faca4d.pth", 224, 256, "bilinear"),
    ],

}.items()}


@functools.lru_cache(maxsize=1)
def _categories():
    text = resources.files(__package__).joinpath("data", "imagenet_categories.txt").read_text(encoding="utf-8")
    return tuple(text.splitlines())


def imagenet_categories():
    """The 1,000 ImageNet class names in torchvision's order and spelling
    (a list of str): logit i of a pretrained classifier is for class
    ``imagenet_categories()[i]``."""
    return list(_categories())


def imagenet_transforms(model, weights=None):
    """The preprocessing that ``model``'s pretrained ImageNet weights were
    evaluated with: an ``mc.transforms.ImageClassification`` with
    torchvision's resize size, crop size, interpolation, mean and std.

    ``model``: a model name of the zoo (``"resnet50"``). ``weights``: None
    or ``"DEFAULT"`` for torchvision's default weights of that model, a
    weights name (``"IMAGENET1K_V1"``), or a checkpoint file name or path
    (``"resnet50-0676ba61.pth"``) as torchvision downloads it. Versions of
    one model can differ: resnet50's IMAGENET1K_V1 resizes to 256,
    IMAGENET1K_V2 to 232.
    """
    preset = _find_preset(model, weights)
    return transforms.ImageClassification(
        crop_size=preset.crop_size, resize_size=preset.resize_size, mean=preset.mean, std=preset.std,
        interpolation=preset.interpolation)


def _find_preset(model, weights=None):
    """The Preset of ``model`` named by ``weights`` (see
    ``imagenet_transforms``); ValueError listing the choices if none is."""
    if model not in _PRESETS:
        raise ValueError(f"no pretrained ImageNet weights are known for model {model!r}; "
                         f"known models: {', '.join(sorted(_PRESETS))}")
    presets = _PRESETS[model]
    if weights is None or weights == "DEFAULT":
        return presets[0]
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f"weights must be a weights name or a file name, got {type(weights).__name__}")
    file_name = os.path.basename(os.fspath(weights))
    for preset in presets:
        if weights == preset.weights or file_name == preset.file:
            return preset
    choices = ", ".join(f"{p.weights} ({p.file})" for p in presets)
    raise ValueError(f"unknown weights {weights!r} for {model}; torchvision's are: {choices}")


def _preset_for_file(model, path):
    """The Preset whose checkpoint file name is the name of ``path``, or
    None (a renamed or converted file)."""
    name = os.path.basename(os.fspath(path))
    return next((p for p in _PRESETS.get(model, ()) if p.file == name), None)


def decode_predictions(logits, k=5, categories=None):
    """The ``k`` most probable classes of each image.

    ``logits``: the model's output of shape (N, C), a Tensor or an array
    (for one image, pass ``logits[None]``). Probabilities are
    softmax(logits) over the C classes. ``categories``: the C class names
    (default: ``imagenet_categories()``, which needs C = 1000).

    Returns a list of N lists of k (category, probability) pairs, most
    probable first.
    """
    if not isinstance(logits, Tensor):
        if not hasattr(logits, "shape") or not hasattr(logits, "dtype"):
            raise TypeError(f"decode_predictions: logits must be a Tensor or an array, got {type(logits).__name__}")
        logits = Tensor._wrap(numpy.asarray(logits))
    if logits.ndim != 2:
        raise ValueError(f"decode_predictions: logits must have shape (N, C), got {logits.shape}; "
                         f"for one image pass logits[None]")
    if logits.dtype.kind != "f":
        raise TypeError(f"decode_predictions: logits must be floating point, got dtype {logits.dtype}")
    names = _categories() if categories is None else list(categories)
    if len(names) != logits.shape[1]:
        raise ValueError(f"decode_predictions: logits have {logits.shape[1]} classes (shape {logits.shape}) "
                         f"but there are {len(names)} categories" +
                         ("; pass categories= for a model that is not an ImageNet classifier"
                          if categories is None else ""))
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= len(names):
        raise ValueError(f"decode_predictions: k must be an int from 1 to {len(names)} (the number of classes), "
                         f"got {k!r}")
    with no_grad():
        probabilities, indices = topk(softmax(logits.detach(), dim=1), int(k), dim=1)
    return [[(names[i], float(p)) for p, i in zip(row_p, row_i)]
            for row_p, row_i in zip(probabilities.tolist(), indices.tolist())]


def classify(model, image, k=5, transform=None, categories=None):
    """Classify ``image`` with ``model``: the k most probable classes as
    (category, probability) pairs, most probable first.

    ``image``: a file path (read with ``mc.transforms.read_image``, turned
    upright by its EXIF orientation), or an image (3, H, W) or a batch
    (N, 3, H, W) as a Tensor or an array, uint8 in [0, 255] or float in
    [0, 1]. ``transform``: the preprocessing, by default torchvision's
    ImageNet preset with resize 256 and crop 224; pass
    ``imagenet_transforms(name)`` for the exact preset of a model's
    weights. ``categories``: see ``decode_predictions``.

    The model runs in evaluation mode (batch norm uses its running
    statistics, dropout is off) without recording gradients; its training
    mode is restored afterwards. Returns one list of k pairs for a path or
    a single image, and a list of them, one per image, for a batch.
    """
    if isinstance(image, (str, os.PathLike)):
        image = transforms.read_image(image, apply_exif_orientation=True)
    if not isinstance(image, Tensor) and not (hasattr(image, "shape") and hasattr(image, "dtype")):
        raise TypeError(f"classify: image must be a path, a Tensor or an array, got {type(image).__name__}")
    if image.ndim not in (3, 4):
        raise ValueError(f"classify: image must have shape (3, H, W) or (N, 3, H, W), got {tuple(image.shape)}")
    single = image.ndim == 3
    if transform is None:
        transform = transforms.ImageClassification(crop_size=224)
    batch = transform(image if isinstance(image, Tensor) else Tensor._wrap(numpy.asarray(image)))
    if single:
        batch = batch[None]
    parameter = next(iter(model.parameters()), None)
    if parameter is not None:
        batch = batch.to(parameter.device)  # where the model lives (a GPU, with CuPy)
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            logits = model(batch)
    finally:
        model.train(was_training)
    predictions = decode_predictions(logits, k, categories)
    return predictions[0] if single else predictions
