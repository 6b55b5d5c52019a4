"""``IntermediateLayerGetter``: run the first children of a model and
return some of their outputs by name, torchvision's
``torchvision.models._utils.IntermediateLayerGetter``.

Segmentation and detection models reuse a classification network as a
*backbone*: they need its feature maps at one or more depths, not its
logits. The getter keeps the model's children up to the last one asked
for (the pooling and classifier after it are dropped, so they cost no
parameters), calls them in order, and collects the outputs of the named
ones into an ordered dict::

    backbone = IntermediateLayerGetter(resnet50(), {"layer3": "aux", "layer4": "out"})
    features = backbone(x)      # {"aux": (N, 1024, H/16, W/16), "out": (N, 2048, H/32, W/32)}

It assumes what torchvision assumes: the model's forward calls its
children once each, in the order they were registered, and does nothing
between them (no flatten, no residual addition). ResNet's children and a
Sequential's items satisfy that. Parameter names keep the child's name
(``layer4.0.conv1.weight``), so the state_dict keys are the backbone's
own, minus the dropped children.
"""
from collections import OrderedDict

from .. import nn

__all__ = ["IntermediateLayerGetter"]


class IntermediateLayerGetter(nn.ModuleDict):
    """The children of ``model`` up to the last key of ``return_layers``;
    ``forward(x)`` returns an OrderedDict {new name: output} of the
    children named in ``return_layers`` ({child name: new name}), in call
    order."""

    def __init__(self, model, return_layers):
        children = [name for name, _ in model.named_children()]
        missing = [name for name in return_layers if str(name) not in children]
        if missing:
            raise ValueError(f"IntermediateLayerGetter: return_layers {missing} are not children of the model "
                             f"(its children: {children})")
        wanted = {str(k): str(v) for k, v in return_layers.items()}
        layers = OrderedDict()
        remaining = set(wanted)
        for name, module in model.named_children():
            layers[name] = module
            remaining.discard(name)
            if not remaining:
                break
        super().__init__(layers)
        self.return_layers = wanted

    def forward(self, x):
        out = OrderedDict()
        for name, module in self.items():
            x = module(x)
            if name in self.return_layers:
                out[self.return_layers[name]] = x
        return out
