"""Fitting a zoo model to new data: transfer learning.

    net = finetune.pretrained("resnet18", "resnet18-f37072fd.pth", num_classes=5, freeze_backbone=True)

builds the model as the weights file has it (1000 ImageNet classes, or
whatever head the file holds), loads the file (``mc.load_weights``:
torchvision's ``.pth``, safetensors, npz), then replaces the classifier
with a new one for ``num_classes`` and, with ``freeze_backbone``, leaves
only that classifier trainable: the recipe of torchvision's fine-tuning
tutorials, ``model.fc = nn.Linear(model.fc.in_features, 5)``, found for
every family without knowing its attribute names.

The classifier is the model's last ``Linear`` layer (``fc`` in ResNet,
``classifier.6`` in VGG, ``classifier.3`` in MobileNet v3, ...), or, in a
model without one (SqueezeNet), its last ``Conv2d``: torchvision's models
all end with their classifier, and register it last.
"""
from . import models
from .classify import _state_dict
from .nn import Conv2d, Linear
from .weights import load_weights


def input_channels(net):
    """The channels ``net`` takes: its first convolution's ``in_channels``."""
    for module in net.modules():
        if isinstance(module, Conv2d):
            return module.in_channels
    raise ValueError(f"{type(net).__name__} has no Conv2d: cannot tell how many channels its images have")


def classifier_head(net):
    """(dotted name, module) of ``net``'s classifier: its last Linear
    layer, or, in a model without one (SqueezeNet), its last Conv2d."""
    found = [(name, m) for name, m in net.named_modules() if isinstance(m, Linear)]
    found = found or [(name, m) for name, m in net.named_modules() if isinstance(m, Conv2d)]
    if not found:
        raise ValueError(f"{type(net).__name__} has no Linear or Conv2d layer to use as its classifier")
    return found[-1]


def replace_head(net, num_classes):
    """Give ``net`` a new classifier (``classifier_head``'s layer, freshly
    initialised, with ``num_classes`` outputs and the old one's other
    arguments); returns the new layer."""
    name, old = classifier_head(net)
    if isinstance(old, Linear):
        new = Linear(old.in_features, num_classes, bias=old.bias is not None)
    else:
        new = Conv2d(old.in_channels, num_classes, old.kernel_size, old.stride, old.padding, old.dilation,
                     old.groups, old.bias is not None)
    parent, _, attribute = name.rpartition(".")
    setattr(net.get_submodule(parent), attribute, new)
    return new


def freeze_all_but(net, head):
    """Turn off ``requires_grad`` on every parameter of ``net`` but
    ``head``'s. Batch-norm layers still update their running statistics in
    training mode, as in torch after ``requires_grad_(False)``."""
    net.requires_grad_(False)
    head.requires_grad_(True)


def pretrained(name, weights, num_classes, freeze_backbone=False):
    """Zoo model ``name`` with the weights in the file ``weights`` and a new
    classifier for ``num_classes`` (see the module docstring). A file that
    does not fit the model raises ValueError naming both."""
    state = _state_dict(load_weights(weights), weights)
    net = models.get_model(name)
    head_name, head = classifier_head(net)
    stored = state.get(head_name + ".weight")
    outputs = head.out_features if isinstance(head, Linear) else head.out_channels
    if stored is not None and stored.shape[0] != outputs:      # e.g. the weights of an earlier 10-class run
        net = models.get_model(name, num_classes=stored.shape[0])
    try:
        net.load_state_dict(state)
    except (KeyError, ValueError, RuntimeError) as e:
        raise ValueError(f"the weights in {weights} do not fit {name}: {e}") from None
    head = replace_head(net, num_classes)
    if freeze_backbone:
        freeze_all_but(net, head)
    return net
