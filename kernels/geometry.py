"""Convolution arithmetic: how big the output of a convolution is.

Along one spatial dim, let

    i   the input size          k   the kernel size
    s   the stride              p   the padding on each side
    d   the dilation

A dilated kernel has k taps spaced d apart, so it spans ``d (k - 1) + 1``
pixels (its effective size). The padded input has ``i + 2p`` pixels, and
the kernel is placed at offsets 0, s, 2s, ... for as long as it still fits,
which gives

    o = floor((i + 2p - d (k - 1) - 1) / s) + 1          (conv)

A transposed convolution maps size o back to size i. The floor makes that
inverse ambiguous: every i in ``[i0, i0 + s)`` gives the same o. torch
picks the smallest, ``i0 = (o - 1) s - 2p + d (k - 1) + 1``, and lets
``output_padding`` in ``[0, s)`` pick another:

    i = (o - 1) s - 2p + d (k - 1) + output_padding + 1  (conv_transpose)

so a conv with the same k, s, p, d maps a transposed convolution's output
back to the size of its input. (Read as functions of the input, the
transposed conv's ``i`` is its output; the names above keep the conv's
point of view.) A convolution of any number of spatial dims (conv1d,
conv2d, conv3d) applies these along each dim independently.
"""
import numbers


def tuple_name(n):
    """How a tuple of n values is named in messages: "a pair" for 2."""
    return {1: "a 1-tuple", 2: "a pair", 3: "a triple"}.get(n, f"a tuple of {n}")


def ntuple(value, n, name, min_value=None):
    """``value`` as a tuple of ``n`` ints, one per spatial dim.

    ``value`` is an int (used for every dim) or a sequence of ``n`` ints.
    Raises TypeError for anything else and ValueError naming ``name`` when
    a value is below ``min_value``.
    """
    # The common cases first, without the checks' cost (a conv call makes
    # three of these): a plain int, or a tuple of n plain ints.
    if type(value) is int:
        result = (value,) * n
        if min_value is None or value >= min_value:
            return result
    elif type(value) is tuple and len(value) == n and all(type(v) is int for v in value):
        if min_value is None or min(value) >= min_value:
            return value
    what = f"an int or {tuple_name(n)} of ints"
    if _is_int(value):
        result = (int(value),) * n
    elif isinstance(value, (tuple, list)):
        if len(value) != n:
            raise ValueError(f"{name} must be {what}, got {tuple(value)} ({len(value)} values)")
        if not all(_is_int(v) for v in value):
            raise TypeError(f"{name} must be {what}, got {tuple(value)!r}")
        result = tuple(int(v) for v in value)
    else:
        raise TypeError(f"{name} must be {what}, got {type(value).__name__} {value!r}")
    if min_value is not None and min(result) < min_value:
        raise ValueError(f"{name} must be >= {min_value} in each dim, got {result}")
    return result


def pair(value, name, min_value=None):
    """``value`` as a tuple of two ints, one per spatial dim (H, W): ``ntuple`` with n = 2."""
    return ntuple(value, 2, name, min_value)


def _is_int(v):
    # bool is an Integral in Python, but stride=True is a mistake, not 1.
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def conv_output_size(i, k, s=1, p=0, d=1):
    """Output size of a convolution along one dim (see the module docstring):
    ``floor((i + 2p - d (k - 1) - 1) / s) + 1``.

    Pure arithmetic: a result below 1 means the (dilated) kernel does not
    fit in the padded input; conv2d turns that into a ValueError.
    """
    return (i + 2 * p - d * (k - 1) - 1) // s + 1


def conv_output_shape(in_size, kernel_size, stride, padding, dilation):
    """``conv_output_size`` along every spatial dim, ``padding`` one
    (before, after) pair per dim, so that the asymmetric padding of
    'same' enters as the padded size."""
    return tuple(conv_output_size(n + lo + hi, k, s, 0, d) for n, k, s, (lo, hi), d in
                 zip(in_size, kernel_size, stride, padding, dilation))


def conv_transpose_output_size(i, k, s=1, p=0, d=1, output_padding=0):
    """Output size of a transposed convolution along one dim:
    ``(i - 1) s - 2p + d (k - 1) + output_padding + 1``, the input size of
    the conv2d that maps it back to ``i`` (see the module docstring)."""
    return (i - 1) * s - 2 * p + d * (k - 1) + output_padding + 1
