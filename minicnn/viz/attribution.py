"""Which pixels a classifier's answer depends on: saliency and Grad-CAM.

Notation: an image x of shape (C, H, W), the model's class scores
s = model(x[None])[0] (the logits, before any softmax), the score of the
class asked about s_c (default: the predicted class, argmax s).

- Saliency (Simonyan, Vedaldi & Zisserman 2014, "Deep Inside
  Convolutional Networks"): the gradient of s_c with respect to the
  pixels, its absolute value, the maximum over the colour channels:
  ``M[i, j] = max_k |d s_c / d x[k, i, j]|``, shape (H, W).
- Grad-CAM (Selvaraju et al. 2017): the activation A of a layer, shape
  (K, h, w); each channel's weight is the spatial mean of the gradient,
  ``w_k = mean_ij d s_c / d A[k, i, j]``; the map is
  ``relu(sum_k w_k A[k])`` (h, w), upsampled bilinearly to (H, W) with
  ``interpolate`` (``align_corners=False``), then divided by its maximum so
  it lies in [0, 1] (all zeros when nothing in the layer argues for the
  class).

Both run the model in eval mode (dropout off, batch norm on its running
statistics, as at inference) and put its mode back afterwards; both take
gradients with ``mc.autograd.grad``, so no parameter's ``.grad`` changes.
"""
import contextlib

import numpy

from ..autograd import enable_grad, grad
from ..functional import interpolate
from ..nn.module import Module
from ..tensor import Tensor


def saliency_map(model, image, target=None):
    """|d score / d pixel|, maximum over channels: a NumPy array (H, W).

    ``image`` is a Tensor (C, H, W) or (1, C, H, W); ``target`` the class
    whose score is differentiated (default: the predicted class)."""
    x = _batch_of_one(image, "saliency_map").detach().requires_grad_()
    with _evaluating(model, "saliency_map"), enable_grad():
        scores = model(x)
        score = _class_score(scores, target, "saliency_map", "target")
        (gx,) = grad(score, [x])
    return numpy.abs(gx.numpy_copy()[0]).max(axis=0)


def grad_cam_map(model, image, target_layer, class_index=None):
    """Grad-CAM of ``class_index`` (default: the predicted class) at
    ``target_layer`` (a module of ``model`` or its dotted name, e.g.
    ``"features.3"``): a NumPy array (H, W) in [0, 1], upsampled to the
    image's size. ``image`` is a Tensor (C, H, W) or (1, C, H, W)."""
    x = _batch_of_one(image, "grad_cam_map").detach()
    layer = find_layer(model, target_layer, "grad_cam_map")
    with outputs_of(layer) as captured, _evaluating(model, "grad_cam_map"), enable_grad():
        scores = model(x)
        activation = last_map(captured, "grad_cam_map", "target_layer", "a (1, K, h, w) Tensor")
        score = _class_score(scores, class_index, "grad_cam_map", "class_index")
        (g,) = grad(score, [activation])
    a, g = activation.detach(), g.detach()
    weights = g.mean(dim=(2, 3), keepdim=True)                    # (1, K, 1, 1): w_k
    cam = (weights * a).sum(dim=1, keepdim=True).relu()              # (1, 1, h, w)
    cam = interpolate(cam, size=tuple(x.shape[2:]), mode="bilinear", align_corners=False)
    cam = cam.numpy_copy()[0, 0]
    peak = cam.max()
    return cam / peak if peak > 0 else numpy.zeros_like(cam)


def find_layer(model, layer, op):
    """The submodule ``layer`` of ``model``: given as a module (it must be
    one of the model's) or as a dotted name."""
    if not isinstance(model, Module):
        raise TypeError(f"{op}: model must be a Module, got {type(model).__name__}")
    if isinstance(layer, str):
        try:
            return model.get_submodule(layer)
        except AttributeError as e:
            raise ValueError(f"{op}: the model has no layer named {layer!r} ({e})") from None
    if not isinstance(layer, Module):
        raise TypeError(f"{op}: layer must be a Module or a dotted name, got {type(layer).__name__}")
    if not any(m is layer for m in model.modules()):
        raise ValueError(f"{op}: layer {type(layer).__name__} is not a submodule of the model")
    return layer


@contextlib.contextmanager
def outputs_of(layer):
    """A list that collects ``layer``'s outputs while the block runs (a
    forward hook, removed at the end)."""
    captured = []
    handle = layer.register_forward_hook(lambda module, args, output: captured.append(output))
    try:
        yield captured
    finally:
        handle.remove()


def last_map(captured, op, subject, expected):
    """The last output ``outputs_of`` collected, which must be one image's
    (1, K, h, w) maps; ``subject`` and ``expected`` word the errors."""
    if not captured:
        raise ValueError(f"{op}: {subject} was not called by the model's forward")
    out = captured[-1]
    if not isinstance(out, Tensor) or out.ndim != 4:
        raise ValueError(f"{op}: {subject} must output {expected}, got {getattr(out, 'shape', type(out).__name__)}")
    return out


def _batch_of_one(image, op):
    """``image`` as a batch of one, (1, C, H, W)."""
    if not isinstance(image, Tensor):
        raise TypeError(f"{op}: image must be a Tensor, got {type(image).__name__}")
    if image.ndim == 3:
        return image.reshape(1, *image.shape)
    if image.ndim == 4 and image.shape[0] == 1:
        return image
    raise ValueError(f"{op}: image must have shape (C, H, W) or (1, C, H, W), got {image.shape}")


def _class_score(scores, index, op, name):
    """The scalar score s_c of the one image; c defaults to the argmax."""
    if scores.ndim != 2 or scores.shape[0] != 1:
        raise ValueError(f"{op}: the model must return scores of shape (1, num_classes), got {scores.shape}")
    classes = scores.shape[1]
    if index is None:
        index = int(scores.detach().numpy_copy()[0].argmax())
    elif isinstance(index, bool) or not isinstance(index, (int, numpy.integer)) or not 0 <= index < classes:
        raise ValueError(f"{op}: {name} must be a class index in [0, {classes}), got {index!r}")
    return scores[0, int(index)]


class _evaluating:
    """Runs the model in eval mode and restores each module's own mode."""

    def __init__(self, model, op):
        if not isinstance(model, Module):
            raise TypeError(f"{op}: model must be a Module, got {type(model).__name__}")
        self.model = model

    def __enter__(self):
        self.modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()

    def __exit__(self, *exc):
        for module, training in self.modes:
            module.training = training
