"""Pictures of a network's insides, drawn with matplotlib.

    fig = mc.viz.filters(model.features[0])           # conv filters as a grid
    fig = mc.viz.feature_maps(model, image, "features.3")
    fig = mc.viz.history(history, path="run.history.png")
    fig = mc.viz.saliency(model, image)
    fig = mc.viz.grad_cam(model, image, "features.3")

Each function returns a ``matplotlib.figure.Figure`` built without pyplot:
nothing is shown, nothing global is left open, and the figure is freed like
any object once dropped (Jupyter displays a returned figure; ``fig.savefig``
writes it). The arrays drawn are kept on the figure (``filters_shown``,
``maps_shown``, ``saliency_map``, ``cam``) so they can be inspected or
tested; the numbers behind saliency and Grad-CAM are in
``minicnn.viz.attribution``.
"""
import math

import numpy
from matplotlib.figure import Figure

from ..autograd import no_grad
from ..nn.module import Module
from ..tensor import Tensor
from .attribution import _batch_of_one, _evaluating, find_layer, grad_cam_map, last_map, outputs_of, saliency_map

#: Inches per cell of an image grid.
_CELL = 1.2


def filters(conv_or_weight, ncols=None):
    """The filters of a convolution as a grid of O images.

    ``conv_or_weight`` is a conv module (anything with a 4-d ``weight``,
    e.g. ``nn.Conv2d``) or a weight Tensor (O, C, KH, KW). A filter with
    C == 3 is drawn in colour (its channels as RGB), otherwise its channels
    are averaged into one grey image. Each filter is scaled on its own to
    [0, 1] (min to max; a constant filter shows as 0.5 grey), because
    filters differ in magnitude and one shared scale would hide most.
    ``ncols`` defaults to ceil(sqrt(O)). The images drawn are
    ``fig.filters_shown``: (O, KH, KW) or (O, KH, KW, 3)."""
    weight = getattr(conv_or_weight, "weight", None) if isinstance(conv_or_weight, Module) else conv_or_weight
    if not isinstance(weight, Tensor):
        raise TypeError(f"filters: expected a conv module or a weight Tensor, got {type(conv_or_weight).__name__}")
    if weight.ndim != 4:
        raise ValueError(f"filters: the weight must have shape (O, C, KH, KW), got {weight.shape}")
    w = weight.numpy_copy().astype(numpy.float64)
    images = w.transpose(0, 2, 3, 1) if w.shape[1] == 3 else w.mean(axis=1)
    shown = numpy.stack([_unit_range(image) for image in images])
    fig, axes = _grid(len(shown), ncols, "filters")
    for ax, image in zip(axes, shown):
        ax.imshow(image, cmap=None if image.ndim == 3 else "gray", vmin=0, vmax=1, interpolation="nearest")
    channels = {1: "", 3: ", RGB"}.get(w.shape[1], f", mean of {w.shape[1]} channels")
    fig.suptitle(f"{len(shown)} filters, {weight.shape[2]}x{weight.shape[3]}{channels}")
    fig.filters_shown = shown
    return fig


def feature_maps(model, image, layer, max_maps=32):
    """The output channels of ``layer`` (a module of ``model`` or its
    dotted name) when ``model`` sees ``image`` (a Tensor (C, H, W) or
    (1, C, H, W)): one image per channel, the first ``max_maps`` of them.

    The model runs in eval mode under ``no_grad`` with a forward hook on
    the layer. Each map keeps its own colour scale (viridis, from its min
    to its max). The maps drawn are ``fig.maps_shown``: (n, h, w)."""
    if isinstance(max_maps, bool) or not isinstance(max_maps, int) or max_maps <= 0:
        raise ValueError(f"feature_maps: max_maps must be a positive int, got {max_maps!r}")
    x = _batch_of_one(image, "feature_maps")
    target = find_layer(model, layer, "feature_maps")
    with outputs_of(target) as captured, _evaluating(model, "feature_maps"), no_grad():
        model(x)
    out = last_map(captured, "feature_maps", "the layer", "(1, K, h, w) maps")
    maps = out.numpy_copy()[0, :max_maps]
    fig, axes = _grid(len(maps), None, "feature_maps")
    for k, (ax, m) in enumerate(zip(axes, maps)):
        ax.imshow(m, cmap="viridis", interpolation="nearest")
        ax.set_title(str(k), fontsize=7)
    name = layer if isinstance(layer, str) else type(target).__name__
    fig.suptitle(f"{name}: {len(maps)} of {out.shape[1]} maps, {out.shape[2]}x{out.shape[3]}")
    fig.maps_shown = maps
    return fig


def history(history, path=None):
    """Loss and accuracies per epoch, from the list of dicts ``train()``
    stores (keys ``loss``, ``train_accuracy``, ``test_accuracy``): two
    panels side by side. With ``path`` the figure is also saved there as
    PNG."""
    if not isinstance(history, (list, tuple)) or not history:
        raise ValueError("history: expected a non-empty list of per-epoch dicts")
    keys = ("loss", "train_accuracy", "test_accuracy")
    for i, entry in enumerate(history):
        if not isinstance(entry, dict) or any(key not in entry for key in keys):
            raise ValueError(f"history: entry {i} must be a dict with keys {keys}, got {entry!r}")
    epochs = numpy.arange(1, len(history) + 1)
    fig = Figure(figsize=(9, 3.5), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, [e["loss"] for e in history], "o-", color="tab:red")
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="loss")
    acc_ax.plot(epochs, [e["train_accuracy"] for e in history], "o-", label="train")
    acc_ax.plot(epochs, [e["test_accuracy"] for e in history], "s-", label="test")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    acc_ax.legend()
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if path is not None:
        fig.savefig(path, format="png", dpi=100)
    return fig


def saliency(model, image, target=None):
    """The image beside its saliency map (``attribution.saliency_map``:
    |d score / d pixel|, max over channels) for class ``target`` (default:
    the predicted class). The map drawn is ``fig.saliency_map``."""
    smap = saliency_map(model, image, target)
    label = _predicted(model, image) if target is None else target
    fig = Figure(figsize=(6, 3.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    _show_image(left, image)
    left.set_title("image")
    shown = right.imshow(smap, cmap="hot", interpolation="nearest")
    fig.colorbar(shown, ax=right, shrink=0.8)
    right.set_title(f"saliency, class {label}")
    right.axis("off")
    fig.saliency_map = smap
    return fig


def grad_cam(model, image, target_layer, class_index=None):
    """The image beside its Grad-CAM (``attribution.grad_cam_map``) for
    ``class_index`` (default: the predicted class) at ``target_layer``,
    drawn over the image. The map drawn is ``fig.cam``, (H, W) in [0, 1]."""
    cam = grad_cam_map(model, image, target_layer, class_index)
    label = _predicted(model, image) if class_index is None else class_index
    fig = Figure(figsize=(6, 3.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    _show_image(left, image)
    left.set_title("image")
    _show_image(right, image)
    shown = right.imshow(cam, cmap="jet", alpha=0.5, vmin=0, vmax=1, interpolation="bilinear")
    fig.colorbar(shown, ax=right, shrink=0.8)
    name = target_layer if isinstance(target_layer, str) else type(target_layer).__name__
    right.set_title(f"Grad-CAM at {name}, class {label}")
    fig.cam = cam
    return fig


def _unit_range(a):
    """``a`` scaled to [0, 1] from its min to its max; constant -> 0.5."""
    low, high = a.min(), a.max()
    return (a - low) / (high - low) if high > low else numpy.full_like(a, 0.5)


def _grid(n, ncols, op):
    """A figure with ``n`` image axes in rows of ``ncols``; spare cells and
    all ticks are hidden. Returns (figure, the n axes)."""
    if ncols is None:
        ncols = math.ceil(math.sqrt(n))
    elif isinstance(ncols, bool) or not isinstance(ncols, int) or ncols <= 0:
        raise ValueError(f"{op}: ncols must be a positive int, got {ncols!r}")
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(_CELL * ncols, _CELL * nrows + 0.4), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    return fig, list(axes[:n])


def _show_image(ax, image):
    """Draw an input image (C, H, W) or (1, C, H, W): grey for one channel,
    colour for three (each scaled to [0, 1] together), else the channel
    mean."""
    x = _batch_of_one(image, "image").numpy_copy()[0].astype(numpy.float64)
    if x.shape[0] == 3:
        ax.imshow(_unit_range(x.transpose(1, 2, 0)))
    else:
        ax.imshow(x.mean(axis=0), cmap="gray")
    ax.axis("off")


def _predicted(model, image):
    """The class the model predicts for ``image``."""
    with _evaluating(model, "predict"), no_grad():
        return int(model(_batch_of_one(image, "predict")).numpy_copy()[0].argmax())
