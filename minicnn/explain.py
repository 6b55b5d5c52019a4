"""Walk one small op through its steps, printing every matrix on the way.

``mc.explain.conv2d(x, w)`` shows how a convolution becomes im2col, one
matrix product (GEMM) and, backward, col2im; ``max_pool2d`` shows how the
argmax of each window routes the gradient; ``batch_norm`` shows the
training-mode forward and the closed-form backward. Each function

* prints every intermediate array with its shape and a one-line
  explanation to ``file`` (``sys.stdout`` by default; pass an
  ``io.StringIO()`` to keep the text),
* asserts that each step equals what minicnn's own op computes (the
  forward with ``F.conv2d`` / ``F.max_pool2d`` / ``F.batch_norm``, the
  backward with autograd) and raises ``AssertionError`` naming the step
  where they disagree,
* returns a dict of the arrays, by step name.

The steps are written as plain loops over array indices, the way a
textbook states them: they are meant for small inputs (a few pixels, two
or three channels), not for speed. Inputs may be Tensors or NumPy arrays
of float32 or float64; use float64, so that every comparison holds to
about 1e-10 (float32 is compared to 1e-4 relative). Everything runs on
the CPU with NumPy.

Notation
--------
N batch, C channels, H, W image size, O output channels, KH, KW kernel
size, OH, OW output size, L = OH * OW output positions; stride (sh, sw),
padding (ph, pw) on each side, dilation (dh, dw).
"""
import sys

import numpy

from . import functional as F
from .autograd import enable_grad
from .creation import tensor
from .kernels import registry
from .kernels.geometry import conv_output_size, pair
from .tensor import Tensor
from .functional import im2col as _primitives  # noqa: F401  (registers the im2col and col2im primitives)


def _as_array(value, name, op):
    """``value`` (a Tensor or array-like) as a NumPy float32/float64 array."""
    array = value.numpy_copy() if isinstance(value, Tensor) else numpy.asarray(value)
    if array.dtype not in (numpy.float32, numpy.float64):
        raise TypeError(f"explain.{op}: {name} must be float32 or float64 (float64 recommended), "
                        f"got dtype {array.dtype}")
    return numpy.ascontiguousarray(array)


def _tolerance(dtype):
    return (1e-10, 1e-12) if dtype == numpy.float64 else (1e-4, 1e-5)


def _check(op, step, got, expected, reference):
    """Raise AssertionError unless ``got`` equals ``expected`` (from ``reference``)."""
    got, expected = numpy.asarray(got), numpy.asarray(expected)
    rtol, atol = _tolerance(got.dtype)
    if got.shape != expected.shape or not numpy.allclose(got, expected, rtol=rtol, atol=atol):
        diff = (numpy.abs(got - expected).max() if got.shape == expected.shape
                else f"shapes {got.shape} and {expected.shape}")
        raise AssertionError(f"explain.{op}: step '{step}' disagrees with {reference} (max |difference| {diff})")


def _show(file, name, array, text):
    print(f"\n{name}  shape {tuple(numpy.shape(array))}: {text}", file=file)
    print(numpy.array2string(numpy.asarray(array), precision=4, suppress_small=True, max_line_width=110),
          file=file)


def _upstream(grad_output, shape, dtype, op):
    """The upstream gradient: the one given, or a random one (seeded, so a
    rerun prints the same numbers; not all ones, which would hide a
    transposed or mis-summed step)."""
    if grad_output is None:
        return numpy.random.default_rng(0).standard_normal(shape).astype(dtype)
    gy = _as_array(grad_output, "grad_output", op).astype(dtype)
    if gy.shape != shape:
        raise ValueError(f"explain.{op}: grad_output must have the output's shape {shape}, got {gy.shape}")
    return gy


def _autograd(fn, arrays, gy):
    """Run minicnn's op ``fn`` on Tensors made from ``arrays`` and
    backpropagate ``gy``: (output array, [input gradient arrays])."""
    with enable_grad():
        inputs = [tensor(a, requires_grad=True) for a in arrays]
        out = fn(*inputs)
        out.backward(tensor(gy))
    return out.detach().numpy_copy(), [t.grad.numpy_copy() for t in inputs]


def _taps(N, C, KH, KW, OH, OW, sh, sw, dh, dw):
    """The map im2col reads and col2im writes back, entry by entry:
    (n, c, row, column, hp, wp) says that cols[n, row, column] is
    xpad[n, c, hp, wp], with row = (c, kh, kw) flattened, column = (oh, ow)
    flattened, hp = oh*sh + kh*dh and wp = ow*sw + kw*dw."""
    for n in range(N):
        for c in range(C):
            for kh in range(KH):
                for kw in range(KW):
                    row = (c * KH + kh) * KW + kw
                    for oh in range(OH):
                        for ow in range(OW):
                            yield n, c, row, oh * OW + ow, oh * sh + kh * dh, ow * sw + kw * dw


def conv2d(x, w, stride=1, padding=0, dilation=1, file=None, grad_output=None):
    """Convolve ``x`` (N, C, H, W) with ``w`` (O, C, KH, KW) step by step.

    Forward: pad; im2col (an explicit loop, checked against the registry's
    ``im2col`` primitive, the one ``F.conv2d`` and ``F.unfold`` use); the
    GEMM ``w.reshape(O, C*KH*KW) @ cols``; the reshape to y (N, O, OH, OW),
    checked against ``F.conv2d``. Backward for ``grad_output`` gy (random
    if not given): gw = gy_rows @ cols^T summed over the batch; gcols =
    W^T @ gy_rows; col2im (an explicit loop, checked against the ``col2im``
    primitive) gives gx; gx and gw are checked against autograd.

    Returns a dict with xpad, cols (N, C*KH*KW, L), w_rows (O, C*KH*KW),
    y_rows (N, O, L), y, gy, gy_rows, gw, gcols and gx. No bias and no
    groups (a bias only adds to each row of y_rows; its gradient is gy
    summed over N, OH and OW).
    """
    op = "conv2d"
    file = sys.stdout if file is None else file
    x, w = _as_array(x, "x", op), _as_array(w, "w", op)
    (sh, sw), (ph, pw), (dh, dw) = (pair(stride, "stride", 1), pair(padding, "padding", 0),
                                    pair(dilation, "dilation", 1))
    if x.ndim != 4 or w.ndim != 4 or x.shape[1] != w.shape[1]:
        raise ValueError(f"explain.conv2d: x must be (N, C, H, W) and w (O, C, KH, KW) with the same C, "
                         f"got x {x.shape} and w {w.shape}")
    w = w.astype(x.dtype)
    N, C, H, W = x.shape
    O, _, KH, KW = w.shape
    OH, OW = conv_output_size(H, KH, sh, ph, dh), conv_output_size(W, KW, sw, pw, dw)
    if OH < 1 or OW < 1:
        raise ValueError(f"explain.conv2d: the dilated {KH}x{KW} kernel does not fit in x {x.shape} "
                         f"padded by {(ph, pw)}")
    L = OH * OW
    print(f"conv2d: x {x.shape}, w {w.shape}, stride {(sh, sw)}, padding {(ph, pw)}, dilation {(dh, dw)} "
          f"-> y {(N, O, OH, OW)}", file=file)

    xpad = numpy.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    _show(file, "xpad", xpad, f"x with {ph} row(s) and {pw} column(s) of zeros on each side")

    # im2col by hand: column (oh, ow) of image n holds the C*KH*KW pixels
    # that the kernel covers when its top-left tap sits at (oh*sh, ow*sw).
    taps = list(_taps(N, C, KH, KW, OH, OW, sh, sw, dh, dw))
    cols = numpy.empty((N, C * KH * KW, L), dtype=x.dtype)
    for n, c, row, column, hp, wp in taps:
        cols[n, row, column] = xpad[n, c, hp, wp]
    im2col = registry.lookup("im2col", numpy)
    blocks = im2col(x, (KH, KW), (sh, sw), ((ph, ph), (pw, pw)), (dh, dw), (OH, OW))  # (N, C, KH, KW, OH, OW)
    _check(op, "im2col", cols, blocks.reshape(N, C * KH * KW, L), "the registry's im2col primitive")
    _show(file, "cols", cols, "im2col: one column per output position, rows (c, kh, kw): "
                              "cols[n, (c,kh,kw), (oh,ow)] = xpad[n, c, oh*sh + kh*dh, ow*sw + kw*dw]")

    w_rows = w.reshape(O, C * KH * KW)
    _show(file, "w_rows", w_rows, "the weight as a matrix: one row per output channel, columns (c, kh, kw)")
    y_rows = w_rows @ cols  # (O, CKK) @ (N, CKK, L) -> (N, O, L): one GEMM per image
    _show(file, "y_rows", y_rows, "the GEMM w_rows @ cols: output channel by output position")
    y = y_rows.reshape(N, O, OH, OW)
    gy = _upstream(grad_output, y.shape, x.dtype, op)
    y_ref, (gx_ref, gw_ref) = _autograd(
        lambda a, b: F.conv2d(a, b, stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw)), (x, w), gy)
    _check(op, "y", y, y_ref, "F.conv2d")
    _show(file, "y", y, "y_rows with each row's L positions laid out as an OH x OW image")

    _show(file, "gy", gy, "the upstream gradient dLoss/dy" + (" (random)" if grad_output is None else ""))
    gy_rows = gy.reshape(N, O, L)
    _show(file, "gy_rows", gy_rows, "gy as a matrix per image, like y_rows")
    gw = (gy_rows @ cols.transpose(0, 2, 1)).sum(axis=0).reshape(O, C, KH, KW)
    _check(op, "gw", gw, gw_ref, "autograd's weight gradient")
    _show(file, "gw", gw, "gy_rows @ cols^T summed over the batch, reshaped like w: "
                          "each weight times every pixel it multiplied")
    gcols = w_rows.T @ gy_rows  # (CKK, O) @ (N, O, L) -> (N, CKK, L)
    _show(file, "gcols", gcols, "w_rows^T @ gy_rows: the gradient of every entry of cols")

    # col2im by hand, the adjoint of the loop above: every entry of gcols
    # goes back to the pixel it was copied from, so a pixel seen by several
    # windows sums their gradients; entries on the padding are dropped.
    gxpad = numpy.zeros_like(xpad)
    for n, c, row, column, hp, wp in taps:
        gxpad[n, c, hp, wp] += gcols[n, row, column]
    gx = gxpad[:, :, ph:ph + H, pw:pw + W]
    col2im = registry.lookup("col2im", numpy)
    gx_primitive = col2im(gcols.reshape(N, C, KH, KW, OH, OW), (H, W), (sh, sw), ((ph, ph), (pw, pw)), (dh, dw))
    _check(op, "col2im", gx, gx_primitive, "the registry's col2im primitive")
    _check(op, "gx", gx, gx_ref, "autograd's input gradient")
    _show(file, "gx", gx, "col2im(gcols): each pixel's gradient is the sum over the windows that saw it, "
                          "the padding cropped away")
    return dict(xpad=xpad, cols=cols, w_rows=w_rows, y_rows=y_rows, y=y, gy=gy, gy_rows=gy_rows,
                gw=gw, gcols=gcols, gx=gx)


def max_pool2d(x, kernel_size, stride=None, padding=0, file=None, grad_output=None):
    """Max-pool ``x`` (N, C, H, W) step by step and route the gradient.

    Forward: pad with -inf; cut out every KH x KW window; take each
    window's maximum and its argmax, also given as torch's index
    ``row * W + col`` into the unpadded input plane. Backward for
    ``grad_output`` gy (random if not given): each gy entry goes, whole,
    to the one input pixel that won its window (pixels that win several
    overlapping windows sum them; the others get zero). y and the indices
    are checked against ``F.max_pool2d(..., return_indices=True)``, gx
    against autograd. With ties the first maximum (row-major) wins here;
    use distinct values to compare with another library.

    Returns a dict with xpad, windows (N, C, OH, OW, KH, KW), argmax (the
    flat position inside each window), indices, y, gy and gx.
    """
    op = "max_pool2d"
    file = sys.stdout if file is None else file
    x = _as_array(x, "x", op)
    (KH, KW) = pair(kernel_size, "kernel_size", 1)
    (sh, sw) = (KH, KW) if stride is None else pair(stride, "stride", 1)
    (ph, pw) = pair(padding, "padding", 0)
    if x.ndim != 4:
        raise ValueError(f"explain.max_pool2d: x must be (N, C, H, W), got shape {x.shape}")
    if 2 * ph > KH or 2 * pw > KW:
        raise ValueError(f"explain.max_pool2d: padding {(ph, pw)} must be at most half of kernel_size {(KH, KW)}")
    N, C, H, W = x.shape
    OH, OW = conv_output_size(H, KH, sh, ph), conv_output_size(W, KW, sw, pw)
    if OH < 1 or OW < 1:
        raise ValueError(f"explain.max_pool2d: the {KH}x{KW} window does not fit in x {x.shape} padded by {(ph, pw)}")
    print(f"max_pool2d: x {x.shape}, kernel {(KH, KW)}, stride {(sh, sw)}, padding {(ph, pw)} "
          f"-> y {(N, C, OH, OW)}", file=file)

    xpad = numpy.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-numpy.inf)
    _show(file, "xpad", xpad, "x padded with -inf, which never wins a window")
    windows = numpy.empty((N, C, OH, OW, KH, KW), dtype=x.dtype)
    for oh in range(OH):
        for ow in range(OW):
            windows[:, :, oh, ow] = xpad[:, :, oh * sh:oh * sh + KH, ow * sw:ow * sw + KW]
    _show(file, "windows", windows, "windows[n, c, oh, ow] = xpad[n, c, oh*sh : oh*sh+KH, ow*sw : ow*sw+KW]")

    flat = windows.reshape(N, C, OH, OW, KH * KW)
    argmax = flat.argmax(axis=-1)
    y = numpy.take_along_axis(flat, argmax[..., None], axis=-1)[..., 0]
    # Where each winner sits in the unpadded input plane (torch's indices).
    rows = numpy.arange(OH)[:, None] * sh + argmax // KW - ph
    cols = numpy.arange(OW)[None, :] * sw + argmax % KW - pw
    indices = rows * W + cols
    _show(file, "argmax", argmax, "the position of each window's maximum inside the window, kh * KW + kw")
    _show(file, "indices", indices, "the same position in the input plane, row * W + col (torch's return_indices)")

    gy = _upstream(grad_output, y.shape, x.dtype, op)
    with enable_grad():
        xt = tensor(x, requires_grad=True)
        y_t, indices_t = F.max_pool2d(xt, (KH, KW), (sh, sw), (ph, pw), return_indices=True)
        y_t.backward(tensor(gy))
    _check(op, "indices", indices, indices_t.numpy_copy(), "F.max_pool2d's indices")
    _check(op, "y", y, y_t.detach().numpy_copy(), "F.max_pool2d")
    _show(file, "y", y, "the maximum of each window")

    _show(file, "gy", gy, "the upstream gradient dLoss/dy" + (" (random)" if grad_output is None else ""))
    # The max passes its input through unchanged, so its derivative is 1
    # for the winner and 0 for the rest of the window.
    gx = numpy.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    i = indices[n, c, oh, ow]
                    gx[n, c, i // W, i % W] += gy[n, c, oh, ow]
    _check(op, "gx", gx, xt.grad.numpy_copy(), "autograd's input gradient")
    _show(file, "gx", gx, "each gy entry added at the pixel that won its window; everything else 0")
    return dict(xpad=xpad, windows=windows, argmax=argmax, indices=indices, y=y, gy=gy, gx=gx)


def batch_norm(x, eps=1e-5, file=None, grad_output=None):
    """Batch-normalize ``x`` (N, C) or (N, C, H, W) in training mode, and
    backpropagate ``grad_output`` gy (random if not given) by the closed
    formula, step by step.

    Each channel is normalized over its M = N * H * W values (no affine
    weight and bias: their gradients, sum(gy * x_hat) and sum(gy), are
    printed along the way):

        mean = sum(x) / M,  var = sum((x - mean)^2) / M  (biased, as torch)
        inv_std = 1 / sqrt(var + eps),  x_hat = (x - mean) inv_std

        gx = (1/M) inv_std (M gy - sum(gy) - x_hat sum(gy x_hat))

    y = x_hat is checked against ``F.batch_norm(x, None, None,
    training=True)``, gx against autograd. Returns a dict with mean, var,
    inv_std, x_hat, y, gy, sum_gy, sum_gy_xhat and gx (the per-channel
    arrays shaped (C,)).
    """
    op = "batch_norm"
    file = sys.stdout if file is None else file
    x = _as_array(x, "x", op)
    if x.ndim not in (2, 4):
        raise ValueError(f"explain.batch_norm: x must be (N, C) or (N, C, H, W), got shape {x.shape}")
    axes = (0,) + tuple(range(2, x.ndim))  # every axis but the channel
    M = x.size // x.shape[1]
    if M < 2:
        raise ValueError(f"explain.batch_norm: each channel needs more than one value, got x of shape {x.shape}")
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)  # a (C,) vector broadcast over the other axes
    print(f"batch_norm (training): x {x.shape}, {x.shape[1]} channels of M = {M} values each, eps {eps}", file=file)

    mean = x.sum(axis=axes) / M
    _show(file, "mean", mean, "each channel's mean over the batch (and pixels)")
    var = ((x - mean.reshape(shape)) ** 2).sum(axis=axes) / M
    _show(file, "var", var, "each channel's biased variance (divided by M, as torch normalizes)")
    inv_std = 1.0 / numpy.sqrt(var + eps)
    _show(file, "inv_std", inv_std, "1 / sqrt(var + eps)")
    x_hat = (x - mean.reshape(shape)) * inv_std.reshape(shape)
    y = x_hat

    gy = _upstream(grad_output, x.shape, x.dtype, op)
    y_ref, (gx_ref,) = _autograd(lambda t: F.batch_norm(t, None, None, training=True, eps=eps), (x,), gy)
    _check(op, "x_hat", x_hat, y_ref, "F.batch_norm")
    _show(file, "x_hat", x_hat, "(x - mean) * inv_std: each channel now has mean 0 and variance ~1; y = x_hat")

    _show(file, "gy", gy, "the upstream gradient dLoss/dy" + (" (random)" if grad_output is None else ""))
    sum_gy = gy.sum(axis=axes)
    _show(file, "sum_gy", sum_gy, "sum of gy per channel (also the gradient of an affine bias)")
    sum_gy_xhat = (gy * x_hat).sum(axis=axes)
    _show(file, "sum_gy_xhat", sum_gy_xhat, "sum of gy * x_hat per channel (also the gradient of an affine weight)")
    # Every x moves the mean and the variance, so its gradient is gy minus
    # what flows back through those two batch statistics.
    gx = (inv_std.reshape(shape) / M) * (M * gy - sum_gy.reshape(shape) - x_hat * sum_gy_xhat.reshape(shape))
    _check(op, "gx", gx, gx_ref, "autograd's input gradient")
    _show(file, "gx", gx, "(1/M) inv_std (M gy - sum_gy - x_hat sum_gy_xhat)")
    return dict(mean=mean, var=var, inv_std=inv_std, x_hat=x_hat, y=y, gy=gy, sum_gy=sum_gy,
                sum_gy_xhat=sum_gy_xhat, gx=gx)
