"""im2col and col2im: col2im is the exact adjoint (transpose) of im2col,
<im2col(x), c> = <x, col2im(c)>, and im2col copies the pixels its
definition names."""
import numpy
from hypothesis import given, settings, strategies as st

from minicnn.functional.im2col import col2im, im2col
from strategies import arrays


@st.composite
def geometries(draw):
    """Kernel, stride, asymmetric padding, dilation, input size, and an
    output grid no larger than what fits (smaller ones happen in
    conv_transpose2d's adjoint)."""
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(2))
    in_size, out_size = [], []
    for k, s, d, (lo, hi) in zip(kernel, stride, dilation, padding):
        span = d * (k - 1) + 1
        size = max(1, span - lo - hi) + draw(st.integers(0, 4))
        fits = (size + lo + hi - span) // s + 1
        in_size.append(size)
        out_size.append(draw(st.integers(1, fits)))
    return kernel, stride, padding, dilation, tuple(in_size), tuple(out_size)


@settings(max_examples=50, deadline=None)
@given(st.data(), geometries(), st.integers(1, 2), st.integers(1, 3))
def test_col2im_is_the_adjoint_of_im2col(data, geometry, batch, channels):
    kernel, stride, padding, dilation, in_size, out_size = geometry
    x = data.draw(arrays((batch, channels) + in_size))
    c = data.draw(arrays((batch, channels) + kernel + out_size))
    cols = im2col(x, kernel, stride, padding, dilation, out_size)
    back = col2im(c, in_size, stride, padding, dilation)
    assert cols.shape == c.shape and back.shape == x.shape
    lhs, rhs = numpy.vdot(cols, c), numpy.vdot(x, back)
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, numpy.abs(cols).sum() * numpy.abs(c).max())


@settings(max_examples=25, deadline=None)
@given(st.data(), geometries())
def test_im2col_copies_the_pixel_each_tap_sees(data, geometry):
    kernel, stride, padding, dilation, in_size, out_size = geometry
    x = data.draw(arrays((1, 2) + in_size))
    cols = im2col(x, kernel, stride, padding, dilation, out_size)
    xpad = numpy.pad(x, ((0, 0), (0, 0)) + padding)
    for kh in range(kernel[0]):
        for kw in range(kernel[1]):
            for oh in range(out_size[0]):
                for ow in range(out_size[1]):
                    pixel = xpad[:, :, oh * stride[0] + kh * dilation[0], ow * stride[1] + kw * dilation[1]]
                    assert (cols[:, :, kh, kw, oh, ow] == pixel).all()


def test_default_output_grid_is_the_largest_that_fits():
    x = numpy.arange(2 * 7 * 6, dtype=numpy.float64).reshape(1, 2, 7, 6)
    cols = im2col(x, (3, 2), (2, 3), ((1, 0), (0, 2)), (1, 2))
    # H: (7 + 1 - 3) // 2 + 1 = 3;  W: (6 + 2 - 3) // 3 + 1 = 2
    assert cols.shape == (1, 2, 3, 2, 3, 2)
