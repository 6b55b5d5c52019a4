"""Pooling: max_pool, avg_pool, adaptive_avg_pool and adaptive_max_pool
over 1, 2 or 3 spatial dims (``max_pool1d`` ... ``adaptive_max_pool3d``),
and depth_max_pool2d (max over groups of neighbouring channels).

Notation
--------
N batch, C channels, H, W input height and width; KH, KW kernel size;
SH, SW stride; PH, PW padding; DH, DW dilation; OH, OW output size.
Input is (N, C, H, W) or unbatched (C, H, W); output (N, C, OH, OW).
1-D pools take (N, C, L), 3-D pools (N, C, T, H, W) with T frames.

Every pool is computed by the 2-D machinery below: a 1-D pool is a 2-D
pool of a one-row image, and a 3-D pool is two 2-D pools, over the
(H, W) of every frame and then over T, since a max or a mean over a box
(a 3-D window or adaptive bin) is separable (see "pools of 1 and 3
spatial dims"). Arguments are checked, and errors name the shapes, in
the caller's own number of dims first.

How a window op is computed
---------------------------
Output (oh, ow) reads the input rows ``oh*SH - PH + kh*DH`` for kh in
range(KH), and likewise the columns. For one kernel offset (kh, kw) the
values read by *all* outputs form one strided slice of the padded input::

    xpad[:, :, kh*DH : kh*DH + (OH-1)*SH + 1 : SH, kw*DW : kw*DW + (OW-1)*SW + 1 : SW]

which has shape (N, C, OH, OW). So a pool is a loop over the KH*KW offsets,
each step an elementwise op on whole arrays: max keeps a running maximum,
avg a running sum. Backward loops over the same offsets and adds each
output's gradient back into the slice it was read from (the adjoint of
taking a slice). No copy of the windows (im2col) is made, and only array
ops that CuPy also has are used.

Output size (torch's rule): ``O = floor((I + 2P - D*(K-1) - 1) / S) + 1``,
rounded up instead with ``ceil_mode``, but the last window must start
inside the input or the left padding. Windows that run past the right
padding (ceil_mode) see -inf (max) or nothing (avg).

Memory
------
* max_pool2d keeps, per output element, *which* of the KH*KW offsets held
  the maximum: one byte (uint8) for windows of up to 256 elements, so
  N*C*OH*OW bytes in all, an eighth of torch's int64 indices and never the
  windows themselves (KH*KW times the output). The int64 flat indices are
  built only when ``return_indices=True``. The cost: backward loops over
  the KH*KW offsets again instead of doing one scatter.
* avg_pool2d keeps only the (OH, OW) divisors.
* adaptive_avg_pool2d keeps nothing but the input size.
* adaptive_max_pool2d keeps int64 flat indices, N*C*OH*OW * 8 bytes: its
  bins have different sizes, so there is no common kernel offset to store.
* depth_max_pool2d is a max_pool2d whose window slides along the channels,
  so it keeps one byte per output too.

Every backward here is written with Functions whose own backward is the
adjoint (scatter <-> gather), so double backward works.

Kernels
-------
The array work of each pool goes through the kernel registry
(``kernels/registry.py``): the functions registered as ``"numpy"`` below
are the readable reference, and ``kernels/cpu/pooling.py`` has Numba
versions that walk each window directly, one thread per (n, c) plane,
with the same contracts and results. The Functions only ask
``registry.lookup(primitive, xp)`` which one to run.
"""
import numbers

from minicnn.kernels import registry
from minicnn.kernels.geometry import ntuple

from ..autograd import Function
from ..backend import get_array_module
from ..tensor import Tensor  # defined before tensor.py imports the ops
from .utils import check_float
from .shape import reshape


# -- window geometry -----------------------------------------------------
class _Windows:
    """Where each kernel offset of a 2-D pool reads from. (``_windows``
    also builds one for 1-D and 3-D pools, for their checked arguments
    and output size only: those run as 2-D pools.)

    The padded input is an (N, C, LH, LW) array whose position 0 is input
    row -PH; LH is what the last window needs ((OH-1)*SH + DH*(KH-1) + 1),
    which may be more than H + 2*PH (ceil_mode) or less (rows no window
    reads).
    """

    def __init__(self, in_hw, kernel, stride, padding, dilation, out_hw):
        self.in_hw, self.kernel, self.stride = in_hw, kernel, stride
        self.padding, self.dilation, self.out_hw = padding, dilation, out_hw
        self.extent = tuple((o - 1) * s + d * (k - 1) + 1
                            for o, s, d, k in zip(out_hw, stride, dilation, kernel))
        # How many input rows/cols lie inside the padded extent.
        self.used = tuple(min(i, e - p) for i, e, p in zip(in_hw, self.extent, padding))

    def pad(self, x, value):
        """x (N, C, H, W) inside an (N, C, LH, LW) array filled with ``value``."""
        xp = get_array_module(x)
        (uh, uw), (ph, pw) = self.used, self.padding
        xpad = xp.full(x.shape[:2] + self.extent, value, dtype=x.dtype)
        xpad[:, :, ph:ph + uh, pw:pw + uw] = x[:, :, :uh, :uw]
        return xpad

    def unpad(self, gpad):
        """The adjoint of ``pad``: the part of gpad that lies on the input."""
        xp = get_array_module(gpad)
        (uh, uw), (ph, pw) = self.used, self.padding
        gx = xp.zeros(gpad.shape[:2] + self.in_hw, dtype=gpad.dtype)
        gx[:, :, :uh, :uw] = gpad[:, :, ph:ph + uh, pw:pw + uw]
        return gx

    def offsets(self):
        """(k, index) for each kernel offset k = kh*KW + kw; ``xpad[index]``
        is what every output's window holds at that offset."""
        (kh_, kw_), (sh, sw), (dh, dw), (oh, ow) = self.kernel, self.stride, self.dilation, self.out_hw
        for kh in range(kh_):
            rows = slice(kh * dh, kh * dh + (oh - 1) * sh + 1, sh)
            for kw in range(kw_):
                cols = slice(kw * dw, kw * dw + (ow - 1) * sw + 1, sw)
                yield kh * kw_ + kw, (slice(None), slice(None), rows, cols)

    def offset_dtype(self):
        return "uint8" if self.kernel[0] * self.kernel[1] <= 256 else "int32"

    def flat_index(self, arg):
        """torch's indices: the offset k of each output as row * W + col of
        its input plane."""
        xp = get_array_module(arg)
        (_, kw_), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = (
            self.kernel, self.stride, self.padding, self.dilation, self.out_hw)
        arg = arg.astype("int64")
        rows = (xp.arange(oh) * sh - ph)[:, None] + (arg // kw_) * dh
        cols = xp.arange(ow) * sw - pw + (arg % kw_) * dw
        return rows * self.in_hw[1] + cols


def _window_sum(xpad, win, arg=None):
    """Sum over the kernel offsets of ``xpad``'s slices: every offset
    (avg pool), or only the offset ``arg`` names (gathering a max)."""
    xp = get_array_module(xpad)
    y = xp.zeros(xpad.shape[:2] + win.out_hw, dtype=xpad.dtype)
    for k, index in win.offsets():
        v = xpad[index]
        y += v if arg is None else xp.where(arg == k, v, 0)
    return y


def _window_spread(g, win, arg=None):
    """The adjoint of ``_window_sum``: add g (N, C, OH, OW) into every
    offset's slice (or only the one ``arg`` names) and drop the padding."""
    xp = get_array_module(g)
    gpad = xp.zeros(g.shape[:2] + win.extent, dtype=g.dtype)
    for k, index in win.offsets():
        # One offset's slice never repeats a position, so += is a scatter.
        gpad[index] += g if arg is None else xp.where(arg == k, g, 0)
    return win.unpad(gpad)


# -- max pooling ---------------------------------------------------------
class MaxPool2d(Function):
    """y = max over each window; gx routes gy to where the max was."""

    def __init__(self, win, return_indices):
        self.win, self.return_indices = win, return_indices

    def forward(self, x):
        # The offsets only where a backward or the caller needs them (without: 0.90-0.96 of the time)
        offsets = self.recording or self.return_indices
        y, arg = registry.lookup("max_pool2d_forward", get_array_module(x))(x, self.win, offsets)
        self.arg = arg  # one small int per output: all backward needs
        if self.return_indices:
            return y, self.win.flat_index(arg)
        return y

    def backward(self, gy, gindices=None):
        return _MaxScatter.apply(gy, win=self.win, arg=self.arg)


@registry.register("max_pool2d_forward", "numpy")
def _max_pool2d_forward(x, win, offsets=True):
    """x (N, C, H, W) -> (y, arg): the max of each window (N, C, OH, OW)
    and the kernel offset k = kh*KW + kw where it lies (None where
    ``offsets`` is False: no backward to come)."""
    xp = get_array_module(x)
    xpad = win.pad(x, -xp.inf)  # padding never wins a max
    y, arg = None, None
    for k, index in win.offsets():
        v = xpad[index]
        if y is None:
            y, arg = v.copy(), xp.zeros(v.shape, dtype=win.offset_dtype())
            continue
        # Strict > keeps the first maximum of a tie; a NaN always wins
        # (torch's rule), so NaNs propagate.
        better = (v > y) | xp.isnan(v)
        y = xp.where(better, v, y)
        arg[better] = k
    return y, arg if offsets else None


@registry.register("max_pool2d_backward", "numpy")
def _max_pool2d_backward(gy, win, arg):
    """gy (N, C, OH, OW) -> gx (N, C, H, W), zero but at the maxima."""
    return _window_spread(gy, win, arg)


registry.register("max_pool2d_forward", "numba", "minicnn.kernels.cpu.pooling:max_pool2d_forward")
registry.register("max_pool2d_backward", "numba", "minicnn.kernels.cpu.pooling:max_pool2d_backward")


class _MaxScatter(Function):
    """gy (N, C, OH, OW) -> gx (N, C, H, W): each output's gradient goes to
    the input position that held its maximum."""

    def __init__(self, win, arg):
        self.win, self.arg = win, arg

    def forward(self, gy):
        return registry.lookup("max_pool2d_backward", get_array_module(gy))(gy, self.win, self.arg)

    def backward(self, ggx):
        return _MaxGather.apply(ggx, win=self.win, arg=self.arg)


class _MaxGather(Function):
    """x (N, C, H, W) -> the values at the saved maxima (N, C, OH, OW)."""

    def __init__(self, win, arg):
        self.win, self.arg = win, arg

    def forward(self, x):
        return _window_sum(self.win.pad(x, 0), self.win, self.arg)

    def backward(self, gy):
        return _MaxScatter.apply(gy, win=self.win, arg=self.arg)


# -- average pooling -----------------------------------------------------
class AvgPool2d(Function):
    """y = window sum / divisor; gx spreads gy / divisor over each window.
    Its own adjoint is ``_AvgSpread``, so double backward works."""

    def __init__(self, win, divisor):
        self.win, self.divisor = win, divisor

    def forward(self, x):
        return registry.lookup("avg_pool2d_forward", get_array_module(x))(x, self.win, self.divisor)

    def backward(self, gy):
        return _AvgSpread.apply(gy, win=self.win, divisor=self.divisor)


class _AvgSpread(Function):
    def __init__(self, win, divisor):
        self.win, self.divisor = win, divisor

    def forward(self, gy):
        return registry.lookup("avg_pool2d_backward", get_array_module(gy))(gy, self.win, self.divisor)

    def backward(self, ggx):
        return AvgPool2d.apply(ggx, win=self.win, divisor=self.divisor)


@registry.register("avg_pool2d_forward", "numpy")
def _avg_pool2d_forward(x, win, divisor):
    """x (N, C, H, W) -> window sums / divisor, (N, C, OH, OW)."""
    return _window_sum(win.pad(x, 0), win) / divisor


@registry.register("avg_pool2d_backward", "numpy")
def _avg_pool2d_backward(gy, win, divisor):
    """gy (N, C, OH, OW) -> gx (N, C, H, W): gy / divisor over each window."""
    return _window_spread(gy / divisor, win)


registry.register("avg_pool2d_forward", "numba", "minicnn.kernels.cpu.pooling:avg_pool2d_forward")
registry.register("avg_pool2d_backward", "numba", "minicnn.kernels.cpu.pooling:avg_pool2d_backward")


def _avg_divisor(xp, win, count_include_pad, divisor_override, dtype):
    """What each window's sum is divided by, (OH, OW) (torch's rule): the
    window clipped to the padded input, or to the input itself when
    padding is not counted. Positions past the right padding (ceil_mode)
    never count."""
    if divisor_override is not None:
        return xp.asarray(divisor_override, dtype=dtype)
    counts = []
    for i, o, k, s, p in zip(win.in_hw, win.out_hw, win.kernel, win.stride, win.padding):
        start = xp.arange(o) * s - p
        end = xp.minimum(start + k, i + p)
        if not count_include_pad:
            start, end = xp.maximum(start, 0), xp.minimum(end, i)
        counts.append(end - start)
    return (counts[0][:, None] * counts[1][None, :]).astype(dtype)


# -- adaptive pooling ----------------------------------------------------
def _bins(xp, i, o):
    """torch's adaptive bins along one axis: output j pools input
    [floor(j*i/o), ceil((j+1)*i/o)). Neighbouring bins may overlap."""
    j = xp.arange(o)
    return (j * i) // o, -((-(j + 1) * i) // o)


def _averaging_matrix(xp, i, o, dtype):
    """(o, i) matrix whose row j averages bin j: 1/len on the bin, 0 elsewhere."""
    start, end = _bins(xp, i, o)
    cols = xp.arange(i)
    inside = (cols >= start[:, None]) & (cols < end[:, None])
    return (inside / (end - start)[:, None]).astype(dtype)


@registry.register("adaptive_avg_pool2d_forward", "numpy")
def _adaptive_avg_pool2d_forward(x, out_hw):
    """Averaging over bins is linear and separable: y = A_h x A_w^T with the
    averaging matrices A_h (OH, H) and A_w (OW, W)."""
    xp = get_array_module(x)
    (h, w), (oh, ow) = x.shape[2:], out_hw
    ah, aw = _averaging_matrix(xp, h, oh, x.dtype), _averaging_matrix(xp, w, ow, x.dtype)
    return xp.matmul(xp.matmul(ah, x), aw.T)


@registry.register("adaptive_avg_pool2d_backward", "numpy")
def _adaptive_avg_pool2d_backward(gy, in_hw):
    """The adjoint of the forward: gx = A_h^T gy A_w."""
    xp = get_array_module(gy)
    (h, w), (oh, ow) = in_hw, gy.shape[2:]
    ah, aw = _averaging_matrix(xp, h, oh, gy.dtype), _averaging_matrix(xp, w, ow, gy.dtype)
    return xp.matmul(xp.matmul(ah.T, gy), aw)


registry.register("adaptive_avg_pool2d_forward", "numba", "minicnn.kernels.cpu.pooling:adaptive_avg_pool2d_forward")
registry.register("adaptive_avg_pool2d_backward", "numba", "minicnn.kernels.cpu.pooling:adaptive_avg_pool2d_backward")


class AdaptiveAvgPool2d(Function):
    """The mean of each of the (OH, OW) bins; backward spreads each bin's
    gradient evenly over it (``_AdaptiveAvgSpread``, the adjoint)."""

    def __init__(self, out_hw):
        self.out_hw = out_hw

    def forward(self, x):
        self.in_hw = x.shape[2:]
        return registry.lookup("adaptive_avg_pool2d_forward", get_array_module(x))(x, self.out_hw)

    def backward(self, gy):
        return _AdaptiveAvgSpread.apply(gy, in_hw=self.in_hw)


class _AdaptiveAvgSpread(Function):
    def __init__(self, in_hw):
        self.in_hw = in_hw

    def forward(self, gy):
        self.out_hw = gy.shape[2:]
        return registry.lookup("adaptive_avg_pool2d_backward", get_array_module(gy))(gy, self.in_hw)

    def backward(self, ggx):
        return AdaptiveAvgPool2d.apply(ggx, out_hw=self.out_hw)


@registry.register("adaptive_max_pool2d_forward", "numpy")
def _adaptive_max_pool2d_forward(x, out_hw):
    """x (N, C, H, W) -> (y, idx): the max of each bin and its int64 flat
    index row * W + col. Bins differ in size, so the loop runs over the
    largest bin's offsets with indices clamped to the bin's last element (a
    repeat never wins a strict >)."""
    xp = get_array_module(x)
    (h, w), (oh, ow) = x.shape[2:], out_hw
    (h0, h1), (w0, w1) = _bins(xp, h, oh), _bins(xp, w, ow)
    y, idx = None, None
    for i in range(int((h1 - h0).max())):
        rows = xp.minimum(h0 + i, h1 - 1)[:, None]
        for j in range(int((w1 - w0).max())):
            cols = xp.minimum(w0 + j, w1 - 1)[None, :]
            v = x[:, :, rows, cols]
            flat = xp.broadcast_to(rows * w + cols, v.shape)
            if y is None:
                y, idx = v, flat.copy()
                continue
            better = (v > y) | xp.isnan(v)
            y = xp.where(better, v, y)
            idx = xp.where(better, flat, idx)
    return y, idx


@registry.register("adaptive_max_pool2d_backward", "numpy")
def _adaptive_max_pool2d_backward(gy, idx, in_shape):
    """gy (N, C, OH, OW) added into zeros of ``in_shape`` (N, C, H, W) at
    the flat plane indices ``idx``; overlapping bins may name a position
    twice, hence bincount."""
    xp = get_array_module(gy)
    n, c, h, w = in_shape
    plane = xp.arange(n * c).reshape(n, c, 1, 1) * (h * w)
    gx = xp.bincount((plane + idx).ravel(), weights=gy.ravel(), minlength=n * c * h * w)
    return gx.astype(gy.dtype).reshape(in_shape)


registry.register("adaptive_max_pool2d_forward", "numba", "minicnn.kernels.cpu.pooling:adaptive_max_pool2d_forward")
registry.register("adaptive_max_pool2d_backward", "numba", "minicnn.kernels.cpu.pooling:adaptive_max_pool2d_backward")


class AdaptiveMaxPool2d(Function):
    """Max over each bin; keeps the int64 flat index of each max."""

    def __init__(self, out_hw, return_indices):
        self.out_hw, self.return_indices = out_hw, return_indices

    def forward(self, x):
        y, idx = registry.lookup("adaptive_max_pool2d_forward", get_array_module(x))(x, self.out_hw)
        self.in_shape, self.idx = x.shape, idx
        return (y, idx) if self.return_indices else y

    def backward(self, gy, gindices=None):
        return _FlatScatter.apply(gy, idx=self.idx, shape=self.in_shape)


class _FlatScatter(Function):
    """gy (N, C, OH, OW) added into zeros (N, C, H, W) at flat plane indices
    ``idx``; overlapping bins may name a position twice, hence bincount."""

    def __init__(self, idx, shape):
        self.idx, self.shape = idx, shape

    def forward(self, gy):
        return registry.lookup("adaptive_max_pool2d_backward", get_array_module(gy))(gy, self.idx, self.shape)

    def backward(self, ggx):
        return _FlatGather.apply(ggx, idx=self.idx)


class _FlatGather(Function):
    def __init__(self, idx):
        self.idx = idx

    def forward(self, x):
        xp = get_array_module(x)
        self.in_shape = x.shape
        n, c = x.shape[:2]
        planes = x.reshape(n, c, -1)
        return xp.take_along_axis(planes, self.idx.reshape(n, c, -1), axis=2).reshape(self.idx.shape)

    def backward(self, gy):
        return _FlatScatter.apply(gy, idx=self.idx, shape=self.in_shape)


# -- argument checking ---------------------------------------------------
_SPATIAL = {1: "L", 2: "H, W", 3: "T, H, W"}


def _batched(input, op, n=2):
    """(N, C, *S) input with n spatial dims S, and whether it came
    unbatched as (C, *S)."""
    if input.ndim not in (n + 1, n + 2):
        names = _SPATIAL[n]
        raise ValueError(f"{op}: expected {n + 1}-D (C, {names}) or {n + 2}-D (N, C, {names}) input, "
                         f"got shape {tuple(input.shape)}")
    check_float(input, op)
    if input.ndim == n + 1:
        return reshape(input, (1,) + input.shape), True
    if 0 in input.shape[1:]:
        raise ValueError(f"{op}: input of shape {tuple(input.shape)} has an empty C or spatial dim")
    return input, False


def _unbatched(out, unbatched):
    if not unbatched:
        return out
    if isinstance(out, tuple):
        return tuple(reshape(t, t.shape[1:]) for t in out)
    return reshape(out, out.shape[1:])


def _ntuple(value, n, name, min_value):
    """``value`` as n ints: ``kernels.geometry.ntuple`` plus the
    one-element sequence that torch's pools accept for every dim."""
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    return ntuple(value, n, name, min_value)


def _windows(op, shape, kernel_size, stride, padding, dilation, ceil_mode):
    """Check a pool's arguments against the input shape (N, C, *S), any
    number of spatial dims; the _Windows."""
    n = len(shape) - 2
    kernel = _ntuple(kernel_size, n, f"{op}: kernel_size", 1)
    no_stride = stride is None or (isinstance(stride, (tuple, list)) and not stride)  # torch: [] too
    stride = kernel if no_stride else _ntuple(stride, n, f"{op}: stride", 1)
    padding = _ntuple(padding, n, f"{op}: padding", 0)
    dilation = _ntuple(dilation, n, f"{op}: dilation", 1)
    if any(p > k // 2 for p, k in zip(padding, kernel)):
        raise ValueError(f"{op}: padding {padding} must be at most half of kernel_size {kernel}")
    out = []
    for i, k, s, p, d in zip(shape[2:], kernel, stride, padding, dilation):
        span = i + 2 * p - d * (k - 1) - 1
        o = (span + (s - 1 if ceil_mode else 0)) // s + 1
        if ceil_mode and (o - 1) * s >= i + p:
            o -= 1  # the last window must start inside the input or the left padding
        out.append(o)
    if min(out) < 1:
        raise ValueError(
            f"{op}: input of shape {tuple(shape)} is too small for kernel_size {kernel} with "
            f"padding {padding} and dilation {dilation}: the output size would be {tuple(out)}")
    return _Windows(tuple(shape[2:]), kernel, stride, padding, dilation, tuple(out))


def _adaptive_size(op, shape, output_size):
    """output_size (an int, None, or one per spatial dim with None entries
    keeping the input size) as a tuple."""
    n = len(shape) - 2
    if output_size is None or isinstance(output_size, numbers.Integral):
        output_size = (output_size,) * n
    if not isinstance(output_size, (tuple, list)) or len(output_size) != n:
        raise TypeError(f"{op}: output_size must be an int, None or {n} of them, got {output_size!r}")
    size = tuple(shape[2 + i] if o is None else o for i, o in enumerate(output_size))
    if not all(isinstance(o, numbers.Integral) for o in size) or min(size) < 1:
        raise ValueError(f"{op}: output_size must be >= 1 (or None), got {tuple(output_size)} "
                         f"for input of shape {tuple(shape)}")
    return tuple(int(o) for o in size)


# -- pools of 1 and 3 spatial dims ---------------------------------------
# A 1-D pool is the 2-D pool of an (N, C, 1, L) image with a (1, K) window.
#
# A 3-D window is a box, and a max or a mean over a box is separable: over
# (H, W) in every frame first, a 2-D pool of the (N, C*T, H, W) frames,
# then over T, a 2-D pool with a (KT, 1) window of (N, C, T, OH*OW). The
# max keeps torch's rules: the first of equal maxima in (t, h, w) order is
# the first in the earliest frame that holds it, and a NaN wins in each
# stage. A mean's divisor is the product of its per-axis counts (clipped
# to the padded or the bare input, as count_include_pad says), so the mean
# of a box is the mean over T of the means over (H, W); adaptive bins are
# boxes too. Each stage runs the 2-D kernels (Numba, CUDA) and their
# backward (double backward too), at the cost of the (N, C, T, OH, OW)
# output of the first stage kept between them.
def _pick(values, axes, rest):
    """The 2-D argument of the stage over ``axes`` of a 3-D one: axes (1, 2)
    are the frames' (H, W), axis (0,) is T with ``rest`` for the other dim."""
    return tuple(values[a] for a in axes) + (rest,) * (2 - len(axes))


def _separable_pool(x, out_size, stage, keeps, with_indices):
    """A 3-D pool of x (N, C, T, H, W) as two 2-D stages: ``stage(x4, axes)``
    pools x4 over ``axes`` (see ``_pick``); ``keeps(axes)`` says a stage
    would leave its input as it is, so it is skipped. Returns
    (N, C, OT, OH, OW), and with_indices torch's t*H*W + h*W + w."""
    n, c, t, h, w = x.shape
    ot, oh, ow = out_size
    idx_hw = idx_t = None
    y = reshape(x, (n, c, t, h * w))
    if not keeps((1, 2)):
        y = stage(reshape(x, (n, c * t, h, w)), (1, 2))
        if with_indices:
            y, idx_hw = y
        y = reshape(y, (n, c, t, oh * ow))
    if not keeps((0,)):
        y = stage(y, (0,))
        if with_indices:
            y, idx_t = y
    y = reshape(y, (n, c, ot, oh, ow))
    if not with_indices:
        return y
    xp = get_array_module(x.data)
    if idx_t is None:
        idx_t = xp.broadcast_to(xp.arange(t * oh * ow).reshape(1, 1, t, oh * ow), (n, c, t, oh * ow))
    else:
        idx_t = idx_t.data
    # idx_t is flat in the second stage's (T, OH*OW) plane: it names the
    # frame, and the first stage's index in that frame says where in it.
    if idx_hw is None:
        within = idx_t % (oh * ow)
    else:
        within = xp.take_along_axis(idx_hw.data.reshape(n, c, -1), idx_t.reshape(n, c, -1), axis=2)
    idx = (idx_t // (oh * ow)) * (h * w) + within.reshape(idx_t.shape)
    return y, Tensor._wrap(idx.reshape(y.shape))


def _window_stage(win, pool2d, **kwargs):
    """``_separable_pool``'s stage and keeps for the window ``win``."""
    def stage(x, axes):
        dilation = {} if pool2d is avg_pool2d else dict(dilation=_pick(win.dilation, axes, 1))
        return pool2d(x, _pick(win.kernel, axes, 1), _pick(win.stride, axes, 1),
                      _pick(win.padding, axes, 0), **dilation, **kwargs)

    def keeps(axes):
        return all(win.kernel[a] == 1 and win.stride[a] == 1 and win.padding[a] == 0 for a in axes)
    return stage, keeps


def _reshape_out(out, shape):
    """A pool's output (and indices, if it gave them) reshaped to ``shape``."""
    if isinstance(out, tuple):
        return tuple(reshape(t, shape) for t in out)
    return reshape(out, shape)


def _lift(x):
    """(N, C, L) -> (N, C, 1, L), for a 1-D pool run as a 2-D one."""
    return reshape(x, x.shape[:2] + (1,) + x.shape[2:])


def _drop(out):
    """The inverse of ``_lift`` on a pool's output (and indices)."""
    if isinstance(out, tuple):
        return tuple(map(_drop, out))
    return reshape(out, out.shape[:2] + out.shape[3:])


# -- the functional API --------------------------------------------------
def _max_pool(op, n, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    """max_pool1d/2d/3d: the checks for n spatial dims, then 2-D pools."""
    x, unbatched = _batched(input, op, n)
    win = _windows(op, x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    return_indices = bool(return_indices)
    if n == 2:
        out = MaxPool2d.apply(x, win=win, return_indices=return_indices)
    elif n == 1:
        out = _drop(max_pool2d(_lift(x), (1,) + win.kernel, (1,) + win.stride, (0,) + win.padding,
                               (1,) + win.dilation, ceil_mode, return_indices))
    else:
        stage, keeps = _window_stage(win, max_pool2d, ceil_mode=ceil_mode, return_indices=return_indices)
        out = _separable_pool(x, win.out_hw, stage, keeps, return_indices)
    return _unbatched(out, unbatched)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max over windows of K along L of (N, C, L) or (C, L) input, as
    max_pool2d; indices are positions along L."""
    return _max_pool("max_pool1d", 1, input, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max over KH x KW windows (stride defaults to kernel_size; padding is
    -inf). With ``return_indices`` also gives, as int64, where each max
    lies: ``row * W + col`` in its input plane (torch's indices)."""
    return _max_pool("max_pool2d", 2, input, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices)


def max_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max over KT x KH x KW windows of (N, C, T, H, W) or (C, T, H, W)
    input, as max_pool2d; indices are ``t*H*W + h*W + w``."""
    return _max_pool("max_pool3d", 3, input, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices)


def _check_divisor(op, divisor_override):
    if divisor_override is None:
        return
    # torch takes an int only (2.5 or True is a TypeError there) and any
    # int but zero, negative ones included.
    if isinstance(divisor_override, bool) or not isinstance(divisor_override, numbers.Integral):
        raise TypeError(f"{op}: divisor_override must be an int, got "
                        f"{type(divisor_override).__name__} {divisor_override!r}")
    if divisor_override == 0:
        raise ValueError(f"{op}: divisor_override must not be zero")


def _avg_pool(op, n, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    """avg_pool1d/2d/3d: the checks for n spatial dims, then 2-D pools."""
    x, unbatched = _batched(input, op, n)
    win = _windows(op, x.shape, kernel_size, stride, padding, 1, ceil_mode)
    _check_divisor(op, divisor_override)
    if n == 2:
        divisor = _avg_divisor(get_array_module(x.data), win, count_include_pad, divisor_override, x.dtype)
        out = AvgPool2d.apply(x, win=win, divisor=divisor)
    elif n == 1:
        out = _drop(avg_pool2d(_lift(x), (1,) + win.kernel, (1,) + win.stride, (0,) + win.padding,
                               ceil_mode, count_include_pad))
    else:
        # With an override the stages only sum (divisor 1), then one division.
        stage, keeps = _window_stage(win, avg_pool2d, ceil_mode=ceil_mode, count_include_pad=count_include_pad,
                                     divisor_override=None if divisor_override is None else 1)
        out = _separable_pool(x, win.out_hw, stage, keeps, False)
        if divisor_override is not None:
            out = out / divisor_override
    return _unbatched(out, unbatched)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Mean over windows of K along L of (N, C, L) or (C, L) input, as
    avg_pool2d (torch's avg_pool1d has no divisor_override either)."""
    return _avg_pool("avg_pool1d", 1, input, kernel_size, stride, padding, ceil_mode, count_include_pad, None)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Mean over KH x KW windows (stride defaults to kernel_size; padding is
    zeros). The divisor is the window size clipped to the padded input, to
    the input alone if not ``count_include_pad``, or ``divisor_override``."""
    return _avg_pool("avg_pool2d", 2, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override)


def avg_pool3d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Mean over KT x KH x KW windows of (N, C, T, H, W) or (C, T, H, W)
    input, with avg_pool2d's divisor rules."""
    return _avg_pool("avg_pool3d", 3, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override)


def _adaptive(op, n, input, output_size, function, pool2d, return_indices=None):
    """adaptive_{avg,max}_pool1d/2d/3d: the checks for n spatial dims, then
    2-D pools. ``return_indices`` is None for the average pools."""
    x, unbatched = _batched(input, op, n)
    out_size = _adaptive_size(op, x.shape, output_size)
    kwargs = {} if return_indices is None else dict(return_indices=bool(return_indices))
    if n == 2:
        out = function.apply(x, out_hw=out_size, **kwargs)
    elif n == 1:
        out = _drop(pool2d(_lift(x), (1,) + out_size, **kwargs))
    elif out_size == (1, 1, 1):
        # One bin (the video models' head): the whole clip as one row, one
        # 2-D pass, whose flat indices are already t*H*W + h*W + w.
        n_, c, t, h, w = x.shape
        out = pool2d(reshape(x, (n_, c, 1, t * h * w)), 1, **kwargs)
        out = _reshape_out(out, (n_, c, 1, 1, 1))
    else:
        def stage(x4, axes):
            return pool2d(x4, _pick(out_size, axes, None), **kwargs)

        def keeps(axes):  # a bin per position copies the axis
            return all(out_size[a] == x.shape[2 + a] for a in axes)
        out = _separable_pool(x, out_size, stage, keeps, bool(return_indices))
    return _unbatched(out, unbatched)


def adaptive_avg_pool1d(input, output_size):
    """Average over O bins along L of (N, C, L) or (C, L) input."""
    return _adaptive("adaptive_avg_pool1d", 1, input, output_size, AdaptiveAvgPool2d, adaptive_avg_pool2d)


def adaptive_avg_pool2d(input, output_size):
    """Average over (OH, OW) bins that tile the input: bin j of an axis of
    length I covers [floor(j*I/O), ceil((j+1)*I/O))."""
    return _adaptive("adaptive_avg_pool2d", 2, input, output_size, AdaptiveAvgPool2d, adaptive_avg_pool2d)


def adaptive_avg_pool3d(input, output_size):
    """Average over (OT, OH, OW) bins of (N, C, T, H, W) or (C, T, H, W)
    input; ``adaptive_avg_pool3d(x, 1)`` is global average pooling."""
    return _adaptive("adaptive_avg_pool3d", 3, input, output_size, AdaptiveAvgPool2d, adaptive_avg_pool2d)


def adaptive_max_pool1d(input, output_size, return_indices=False):
    """Max over the bins of ``adaptive_avg_pool1d``; indices along L."""
    return _adaptive("adaptive_max_pool1d", 1, input, output_size, AdaptiveMaxPool2d, adaptive_max_pool2d,
                     return_indices)


def adaptive_max_pool2d(input, output_size, return_indices=False):
    """Max over the bins of ``adaptive_avg_pool2d``; indices as max_pool2d's."""
    return _adaptive("adaptive_max_pool2d", 2, input, output_size, AdaptiveMaxPool2d, adaptive_max_pool2d,
                     return_indices)


def adaptive_max_pool3d(input, output_size, return_indices=False):
    """Max over the bins of ``adaptive_avg_pool3d``; indices as max_pool3d's."""
    return _adaptive("adaptive_max_pool3d", 3, input, output_size, AdaptiveMaxPool2d, adaptive_max_pool2d,
                     return_indices)


def depth_max_pool2d(input, kernel_size, stride=None):
    """Max over groups of ``kernel_size`` neighbouring channels, as the
    DepthPool layer of Geron's *Hands-On Machine Learning*: a max pool whose
    window slides along C instead of H and W. (N, C, H, W) -> (N, OC, H, W)
    with OC = (C - kernel_size) // stride + 1; stride defaults to
    kernel_size, giving C // kernel_size groups. C must be covered exactly
    ((C - kernel_size) % stride == 0): no channel is silently dropped.

    The channels become the rows of a one-channel image, (N, 1, C, H*W),
    pooled by a (kernel_size, 1) window, which gives this op max_pool2d's
    backward and memory use (one byte per output).
    """
    op = "depth_max_pool2d"
    x, unbatched = _batched(input, op)
    stride = kernel_size if stride is None else stride
    for name, v in (("kernel_size", kernel_size), ("stride", stride)):
        if not isinstance(v, numbers.Integral) or isinstance(v, bool):
            raise TypeError(f"{op}: {name} must be an int, got {v!r}")
        if v < 1:
            raise ValueError(f"{op}: {name} must be >= 1, got {v}")
    n, c, h, w = x.shape
    if kernel_size > c or (c - kernel_size) % stride:
        raise ValueError(
            f"{op}: the {c} channels of input shape {tuple(input.shape)} are not covered by windows of "
            f"kernel_size {kernel_size} and stride {stride} (need (C - kernel_size) % stride == 0)")
    y = max_pool2d(reshape(x, (n, 1, c, h * w)), (kernel_size, 1), (stride, 1))
    return _unbatched(reshape(y, (n, y.shape[2], h, w)), unbatched)


__all__ = ["max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
           "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
           "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d", "depth_max_pool2d"]
