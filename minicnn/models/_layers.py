"""Helper layers shared by several model families (torchvision keeps them
in ``torchvision.ops.misc`` and ``torchvision.models._utils``).

* ``Conv2dNormActivation``: the conv -> norm -> activation unit that
  MobileNet, EfficientNet, RegNet, ... are built from.
* ``_make_divisible``: the channel rounding of the TensorFlow MobileNet
  code, used when a width multiplier scales the channel counts.
* ``StochasticDepth``: drops whole residual branches at random while
  training (Huang et al., 2016, "Deep Networks with Stochastic Depth").
* ``Permute``: reorders the dims (ConvNeXt moves channels last).
* ``LayerNorm2d``: LayerNorm over the channels of (N, C, H, W) input.
* ``_check_weights``: what every builder does with torchvision's
  ``weights`` argument (minicnn downloads nothing).
"""
from .. import functional as F
from .. import nn
from .. import random
from ..backend import get_array_module
from ..tensor import Tensor
from ..nn._utils import ntuple


def _check_weights(weights, builder):
    """Accept ``weights=None`` only: minicnn has no download code. A
    ValueError explains how to get torchvision's pretrained weights in."""
    if weights is not None:
        raise ValueError(
            f"{builder}: minicnn downloads nothing (got weights={weights!r}). Build the model with "
            f"weights=None and load the weights file torchvision downloaded (in ~/.cache/torch/hub/checkpoints/) "
            f"into it, torch not needed: model.load_state_dict(mc.load_weights(path)). With torch at hand, "
            f"model.load_state_dict(torchvision.models.{builder}(weights=...).state_dict()) works too.")


def _make_divisible(v, divisor, min_value=None):
    """``v`` rounded to the nearest multiple of ``divisor`` (at least
    ``min_value``, default ``divisor``), rounding up instead when rounding
    down would lose more than 10% of ``v``: hardware likes channel counts
    that are multiples of 8."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def init_mobile_weights(model, init_linear=None):
    """The initialisation torchvision gives MobileNetV2/V3 and
    EfficientNet: He normal (fan_out) for convs, zero biases, identity
    batch/group norms, and for Linear weights ``init_linear(linear)``,
    by default N(0, 0.01)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            if init_linear is None:
                nn.init.normal_(m.weight, 0, 0.01)
            else:
                init_linear(m)
            nn.init.zeros_(m.bias)


class Conv2dNormActivation(nn.Sequential):
    """Conv2d, then ``norm_layer`` (default BatchNorm2d), then
    ``activation_layer`` (default ReLU): (N, C_in, H, W) -> (N, C_out, OH, OW).

    Children are named "0", "1", "2" (torchvision's Sequential layout, so
    the state_dict keys match). ``padding=None`` keeps "same"-style padding
    ``(kernel_size - 1) // 2 * dilation``; ``bias=None`` gives the conv a
    bias only when there is no norm layer (a norm's shift makes it useless).
    ``norm_layer`` or ``activation_layer`` None leaves that layer out.
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=None, groups=1,
                 norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU, dilation=1, inplace=True, bias=None,
                 conv_layer=nn.Conv2d):
        if padding is None:
            if isinstance(kernel_size, int) and isinstance(dilation, int):
                padding = (kernel_size - 1) // 2 * dilation
            else:
                kernel_size = ntuple(kernel_size, "kernel_size")
                dilation = ntuple(dilation, "dilation")
                padding = tuple((k - 1) // 2 * d for k, d in zip(kernel_size, dilation))
        if bias is None:
            bias = norm_layer is None
        layers = [conv_layer(in_channels, out_channels, kernel_size, stride, padding, dilation=dilation,
                             groups=groups, bias=bias)]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            # GELU and friends take no ``inplace``: inplace=None leaves it out.
            params = {} if inplace is None else {"inplace": inplace}
            layers.append(activation_layer(**params))
        super().__init__(*layers)
        self.out_channels = out_channels


def stochastic_depth(input, p, mode, training=True):
    """Zero the input with probability ``p`` and scale what survives by
    1 / (1 - p), so the expected value is unchanged. ``mode="row"`` draws
    once per sample (each row of the batch is kept or dropped whole),
    ``mode="batch"`` once for the whole batch. The identity when not
    training or when p is 0."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"stochastic_depth: drop probability has to be between 0 and 1, got {p}")
    if mode not in ("batch", "row"):
        raise ValueError(f"stochastic_depth: mode has to be either 'batch' or 'row', got {mode!r}")
    if not training or p == 0.0:
        return input
    survival_rate = 1.0 - p
    size = (input.shape[0],) + (1,) * (input.ndim - 1) if mode == "row" else (1,) * input.ndim
    xp = get_array_module(input.data)
    noise = (random.uniform(size, input.dtype, xp) < survival_rate).astype(input.dtype)
    if survival_rate > 0.0:
        noise /= input.dtype.type(survival_rate)
    return input * Tensor._wrap(noise)


class StochasticDepth(nn.Module):
    """Module form of ``stochastic_depth`` (``mode`` "row" or "batch"); the
    identity in eval mode."""

    def __init__(self, p, mode):
        super().__init__()
        self.p = p
        self.mode = mode

    def forward(self, input):
        return stochastic_depth(input, self.p, self.mode, self.training)

    def __repr__(self):
        return f"{type(self).__name__}(p={self.p}, mode={self.mode})"


class Permute(nn.Module):
    """Reorder the dims of the input: ``Permute([0, 2, 3, 1])`` turns
    (N, C, H, W) into (N, H, W, C)."""

    def __init__(self, dims):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return F.permute(x, self.dims)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of (N, C, H, W) input, separately at each
    pixel: channels are moved last, normalized, and moved back."""

    def forward(self, x):
        x = F.permute(x, (0, 2, 3, 1))
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return F.permute(x, (0, 3, 1, 2))
