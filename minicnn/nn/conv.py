"""Convolution layers: Conv1d, Conv2d, Conv3d and their transposes
ConvTranspose1d, ConvTranspose2d, ConvTranspose3d.

Notation (2-D): input (N, C_in, H, W), output (N, C_out, OH, OW), kernel
(KH, KW), g = groups. 1-D layers have one spatial dim (L), 3-D ones three
(D, H, W); every geometry argument has one value per spatial dim.

* Conv2d weight: (C_out, C_in / g, KH, KW)
* ConvTranspose2d weight: (C_in, C_out / g, KH, KW) (the layout of the
  conv2d it is the adjoint of, as in torch)
* bias: (C_out,)

Initialisation (torch's): weight ~ kaiming_uniform_(a=sqrt(5)), i.e.
U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = weight.shape[1] * KH * KW,
and bias ~ the same uniform. (For ConvTranspose2d, weight.shape[1] is
C_out / g: torch computes fan_in from the weight's layout, and so do we.)
"""
import math

from .. import functional as F
from ..functional.conv import LAYOUTS
from ..kernels.geometry import conv_transpose_output_size, tuple_name
from . import init
from ._utils import check_positive, is_int, new_parameter, ntuple
from .module import Module

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


class _ConvNd(Module):
    """What every convolution layer shares: argument checks, parameters,
    initialisation and the repr. A subclass sets ``_rank``, its number of
    spatial dims."""

    _rank = 2

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, transposed,
                 output_padding, groups, bias, padding_mode, device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        check_positive(in_channels, "in_channels", name)
        check_positive(out_channels, "out_channels", name)
        check_positive(groups, "groups", name)
        if in_channels % groups:
            raise ValueError(f"{name}: in_channels={in_channels} must be divisible by groups={groups}")
        if out_channels % groups:
            raise ValueError(f"{name}: out_channels={out_channels} must be divisible by groups={groups}")
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"{name}: padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
        rank = self._rank
        kernel_size = ntuple(kernel_size, "kernel_size", rank)
        stride = ntuple(stride, "stride", rank)
        dilation = ntuple(dilation, "dilation", rank)
        for arg, values in (("kernel_size", kernel_size), ("stride", stride), ("dilation", dilation)):
            if min(values) < 1:
                raise ValueError(f"{name}: {arg} must be >= 1 in each dim, got {values}")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"{name}: padding must be an int, {tuple_name(rank)}, 'valid' or 'same', "
                                 f"got {padding!r}")
            if padding == "same" and stride != (1,) * rank:
                raise ValueError(f"{name}: padding='same' is not supported for strided convolutions "
                                 f"(stride={stride})")
        else:
            padding = ntuple(padding, "padding", rank)
            if min(padding) < 0:
                raise ValueError(f"{name}: padding must be >= 0 in each dim, got {padding}")

        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.transposed = transposed
        self.output_padding = output_padding
        self.groups = groups
        self.padding_mode = padding_mode
        if transposed:
            shape = (in_channels, out_channels // groups) + kernel_size
        else:
            shape = (out_channels, in_channels // groups) + kernel_size
        self.weight = new_parameter(shape, device, dtype)
        if bias:
            self.bias = new_parameter((out_channels,), device, dtype)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        """Draw fresh weights from the default distributions."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            if fan_in != 0:
                bound = 1 / math.sqrt(fan_in)
                init.uniform_(self.bias, -bound, bound)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * len(self.padding):
            s += f", padding={self.padding}"
        if self.dilation != (1,) * len(self.dilation):
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * len(self.output_padding):
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class _Conv(_ConvNd):
    """Conv1d, Conv2d and Conv3d: the convolution of ``_rank`` spatial dims."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, False,
                         (0,) * self._rank, groups, bias, padding_mode, device, dtype)
        # F.pad's amounts for non-zero padding modes, last dim first:
        # (left, right, top, bottom) in 2-D. 'same' puts an odd extra pixel last.
        if self.padding == "valid":
            totals = ((0, 0),) * self._rank
        elif self.padding == "same":
            totals = tuple((t // 2, t - t // 2) for t in
                           (d * (k - 1) for k, d in zip(self.kernel_size, self.dilation)))
        else:
            totals = tuple((p, p) for p in self.padding)
        self._reversed_padding_repeated_twice = sum(reversed(totals), ())

    def forward(self, input):
        conv = _FUNCTIONS[self._rank]
        if self.padding_mode != "zeros":
            padded = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return conv(padded, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
        return conv(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class Conv1d(_Conv):
    """1-D convolution: (N, C_in, L) -> (N, C_out, OL) with
    OL = floor((L + 2 padding - dilation (K - 1) - 1) / stride) + 1.

    Arguments as Conv2d's, each geometry argument an int or a 1-tuple.
    """

    _rank = 1


class Conv2d(_Conv):
    """2-D convolution: (N, C_in, H, W) -> (N, C_out, OH, OW) with
    OH = floor((H + 2 padding - dilation (KH - 1) - 1) / stride) + 1.

    ``padding`` is an int, a pair, ``'valid'`` or ``'same'``;
    ``padding_mode`` says what the padded pixels hold: ``'zeros'``,
    ``'reflect'``, ``'replicate'`` or ``'circular'``.
    """

    _rank = 2


class Conv3d(_Conv):
    """3-D convolution of clips: (N, C_in, D, H, W) -> (N, C_out, OD, OH, OW),
    each output size as Conv2d's along its dim.

    Arguments as Conv2d's, each geometry argument an int or a (D, H, W)
    triple.
    """

    _rank = 3


class _ConvTranspose(_ConvNd):
    """ConvTranspose1d, 2d and 3d: the transposed convolution of ``_rank``
    spatial dims."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
                 groups=1, bias=True, dilation=1, padding_mode="zeros", device=None, dtype=None):
        name = type(self).__name__
        if padding_mode != "zeros":
            raise ValueError(f'{name}: only "zeros" padding_mode is supported, got {padding_mode!r}')
        if isinstance(padding, str):
            raise ValueError(f"{name}: padding must be an int or {tuple_name(self._rank)}, got {padding!r}")
        output_padding = ntuple(output_padding, "output_padding", self._rank)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, True, output_padding,
                         groups, bias, padding_mode, device, dtype)

    def _output_padding(self, input, output_size):
        """The output_padding that makes the output size ``output_size``
        (which may also list the batch and channel dims)."""
        if output_size is None:
            return self.output_padding
        name, rank = type(self).__name__, self._rank
        output_size = tuple(output_size)
        if len(output_size) == input.ndim:
            output_size = output_size[-rank:]
        if len(output_size) != rank or not all(is_int(s) for s in output_size):
            raise ValueError(f"{name}: output_size must have {rank} sizes (optionally with the leading dims "
                             f"of input shape {input.shape}), got {output_size}")
        smallest = tuple(conv_transpose_output_size(n, k, s, p, d) for n, k, s, p, d in
                         zip(input.shape[-rank:], self.kernel_size, self.stride, self.padding, self.dilation))
        largest = tuple(m + s - 1 for m, s in zip(smallest, self.stride))
        if not all(lo <= size <= hi for size, lo, hi in zip(output_size, smallest, largest)):
            raise ValueError(f"{name}: requested an output size of {output_size}, but valid sizes range "
                             f"from {smallest} to {largest} (for an input of {tuple(input.shape[-rank:])})")
        return tuple(size - lo for size, lo in zip(output_size, smallest))

    def forward(self, input, output_size=None):
        rank = self._rank
        if input.ndim not in (rank + 1, rank + 2):
            batched, unbatched = LAYOUTS[rank]
            raise ValueError(f"{type(self).__name__}: input must be {batched} or {unbatched}, got shape {input.shape}")
        output_padding = self._output_padding(input, output_size)
        return _TRANSPOSED[rank](input, self.weight, self.bias, self.stride, self.padding, output_padding,
                                 self.groups, self.dilation)


class ConvTranspose1d(_ConvTranspose):
    """Transposed 1-D convolution: (N, C_in, L) -> (N, C_out, OL) with
    OL = (L - 1) stride - 2 padding + dilation (K - 1) + output_padding + 1.
    Arguments as ConvTranspose2d's."""

    _rank = 1


class ConvTranspose2d(_ConvTranspose):
    """Transposed convolution (the adjoint of Conv2d, often used to
    upsample): (N, C_in, H, W) -> (N, C_out, OH, OW) with
    OH = (H - 1) stride - 2 padding + dilation (KH - 1) + output_padding + 1.

    ``forward(input, output_size)`` may ask for a given (OH, OW) instead of
    passing ``output_padding``.
    """

    _rank = 2


class ConvTranspose3d(_ConvTranspose):
    """Transposed 3-D convolution: (N, C_in, D, H, W) -> (N, C_out, OD, OH,
    OW), each size as ConvTranspose2d's along its dim. Arguments as
    ConvTranspose2d's."""

    _rank = 3


_FUNCTIONS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_TRANSPOSED = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
