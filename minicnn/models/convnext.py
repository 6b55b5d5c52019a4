"""ConvNeXt (Liu et al., 2022, "A ConvNet for the 2020s"), laid out as
torchvision lays it out, so torchvision's state_dicts load unchanged.

The idea: take a ResNet and modernise it step by step with the design
choices of vision transformers, keeping it a pure ConvNet: a "patchify"
stem (4x4 conv, stride 4), stage depths 3:3:9:3, large 7x7 depthwise
kernels, an inverted bottleneck (4x wider in the middle), fewer
normalisations and activations, LayerNorm instead of BatchNorm, GELU
instead of ReLU, and separate downsampling layers between stages. Each
block:

    x -> 7x7 depthwise conv -> (to channels last) LayerNorm -> Linear C->4C
      -> GELU -> Linear 4C->C -> (to channels first) -> * layer_scale
      -> stochastic depth -> + x

The Linear layers act on the channel dim at each pixel, so with channels
last they are 1x1 convs. ``layer_scale`` (one learned number per channel,
initialised to 1e-6) starts every residual branch near zero, which
stabilises training of deep stacks.

Layout: ``features`` = [stem (4x4 conv stride 4, LayerNorm2d), stage 1,
downsample (LayerNorm2d, 2x2 conv stride 2), stage 2, downsample, stage 3,
downsample, stage 4]; ``avgpool``; ``classifier`` = [LayerNorm2d, Flatten,
Linear]. Inputs must be at least 32x32 (five halvings leave 1x1).
"""
from functools import partial

from .. import nn
from .. import ones
from ._layers import Conv2dNormActivation, LayerNorm2d, Permute, StochasticDepth, _check_weights
from .registry import register_model

__all__ = ["ConvNeXt", "CNBlock", "CNBlockConfig",
           "convnext_tiny", "convnext_small", "convnext_base", "convnext_large"]


class CNBlock(nn.Module):
    """The ConvNeXt block (see the module docstring): (N, dim, H, W) ->
    (N, dim, H, W). ``norm_layer`` acts on channels-last input (default
    LayerNorm with eps 1e-6)."""

    def __init__(self, dim, layer_scale, stochastic_depth_prob, norm_layer=None):
        super().__init__()
        if norm_layer is None:
            norm_layer = partial(nn.LayerNorm, eps=1e-6)
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim, bias=True),
            Permute([0, 2, 3, 1]),                       # (N, C, H, W) -> (N, H, W, C)
            norm_layer(dim),
            nn.Linear(in_features=dim, out_features=4 * dim, bias=True),
            nn.GELU(),
            nn.Linear(in_features=4 * dim, out_features=dim, bias=True),
            Permute([0, 3, 1, 2]),                       # back to (N, C, H, W)
        )
        # (dim, 1, 1) so that it broadcasts over (N, dim, H, W).
        self.layer_scale = nn.Parameter(ones(dim, 1, 1) * layer_scale)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")

    def forward(self, input):
        result = self.layer_scale * self.block(input)
        result = self.stochastic_depth(result)
        return result + input


class CNBlockConfig:
    """A stage: ``num_layers`` blocks of ``input_channels``, then a
    downsampling layer to ``out_channels`` (None: the last stage, no
    downsampling)."""

    def __init__(self, input_channels, out_channels, num_layers):
        self.input_channels = input_channels
        self.out_channels = out_channels
        self.num_layers = num_layers

    def __repr__(self):
        return (f"{type(self).__name__}(input_channels={self.input_channels}, "
                f"out_channels={self.out_channels}, num_layers={self.num_layers})")


class ConvNeXt(nn.Module):
    """A ConvNeXt from a list of stage configs: (N, 3, H, W) ->
    (N, num_classes). ``stochastic_depth_prob`` is the drop probability of
    the last block (growing linearly from 0 at the first);
    ``layer_scale`` the initial value of every block's scale."""

    def __init__(self, block_setting, stochastic_depth_prob=0.0, layer_scale=1e-6, num_classes=1000,
                 block=None, norm_layer=None, **kwargs):
        super().__init__()
        if not block_setting:
            raise ValueError("ConvNeXt: block_setting must not be empty")
        if not all(isinstance(s, CNBlockConfig) for s in block_setting):
            raise TypeError("ConvNeXt: block_setting must be a list of CNBlockConfig")
        block = CNBlock if block is None else block
        norm_layer = partial(LayerNorm2d, eps=1e-6) if norm_layer is None else norm_layer

        # Stem: non-overlapping 4x4 patches, like a vision transformer's.
        layers = [Conv2dNormActivation(3, block_setting[0].input_channels, kernel_size=4, stride=4, padding=0,
                                       norm_layer=norm_layer, activation_layer=None, bias=True)]
        total_blocks = sum(cnf.num_layers for cnf in block_setting)
        block_id = 0
        for cnf in block_setting:
            stage = []
            for _ in range(cnf.num_layers):
                sd_prob = stochastic_depth_prob * block_id / (total_blocks - 1.0)
                stage.append(block(cnf.input_channels, layer_scale, sd_prob))
                block_id += 1
            layers.append(nn.Sequential(*stage))
            if cnf.out_channels is not None:
                layers.append(nn.Sequential(
                    norm_layer(cnf.input_channels),
                    nn.Conv2d(cnf.input_channels, cnf.out_channels, kernel_size=2, stride=2),
                ))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)

        last = block_setting[-1]
        last_channels = last.out_channels if last.out_channels is not None else last.input_channels
        self.classifier = nn.Sequential(
            norm_layer(last_channels), nn.Flatten(1), nn.Linear(last_channels, num_classes))

        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.features(x)
        x = self.avgpool(x)
        return self.classifier(x)


# name: (channels of the four stages, blocks per stage, default stochastic_depth_prob)
_CONFIGS = {
    "convnext_tiny": ((96, 192, 384, 768), (3, 3, 9, 3), 0.1),
    "convnext_small": ((96, 192, 384, 768), (3, 3, 27, 3), 0.4),
    "convnext_base": ((128, 256, 512, 1024), (3, 3, 27, 3), 0.5),
    "convnext_large": ((192, 384, 768, 1536), (3, 3, 27, 3), 0.5),
}


def _convnext(arch, weights, kwargs):
    _check_weights(weights, arch)
    channels, depths, sd_prob = _CONFIGS[arch]
    outs = channels[1:] + (None,)
    block_setting = [CNBlockConfig(c, out, n) for c, out, n in zip(channels, outs, depths)]
    stochastic_depth_prob = kwargs.pop("stochastic_depth_prob", sd_prob)
    return ConvNeXt(block_setting, stochastic_depth_prob=stochastic_depth_prob, **kwargs)


@register_model
def convnext_tiny(*, weights=None, progress=True, **kwargs):
    """ConvNeXt-T (28.6M parameters). ``kwargs`` go to ConvNeXt:
    num_classes, stochastic_depth_prob (0.1), layer_scale, block, norm_layer."""
    return _convnext("convnext_tiny", weights, kwargs)


@register_model
def convnext_small(*, weights=None, progress=True, **kwargs):
    """ConvNeXt-S (50.2M parameters); stochastic_depth_prob 0.4."""
    return _convnext("convnext_small", weights, kwargs)


@register_model
def convnext_base(*, weights=None, progress=True, **kwargs):
    """ConvNeXt-B (88.6M parameters); stochastic_depth_prob 0.5."""
    return _convnext("convnext_base", weights, kwargs)


@register_model
def convnext_large(*, weights=None, progress=True, **kwargs):
    """ConvNeXt-L (197.8M parameters); stochastic_depth_prob 0.5."""
    return _convnext("convnext_large", weights, kwargs)
