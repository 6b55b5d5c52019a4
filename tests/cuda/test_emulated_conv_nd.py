"""The CUDA im2col / col2im of 1 and 3 spatial dims (``im2col.cu`` runs
every rank as three dims), checked on the CPU through the emulation
harness of ``test_emulated_kernels.py``: the kernels against the NumPy
references, and conv1d / conv3d's three directions run by the conv
strategy with the CUDA primitives, as on a GPU."""
import numpy
from hypothesis import assume, given, strategies as st

from minicnn.functional import conv_strategy
from test_emulated_kernels import DIRECTIONS, SETTINGS, cuda_primitives, emulated_gpu, reference  # noqa: F401
from test_emulated_kernels import test_im2col_and_col2im_match_reference as two_dims
from test_pool_bn_kernels import close, values


@st.composite
def geometries(draw):
    """(kernel, stride, padding, dilation, in_size, out_size) of 1 or 3 dims."""
    rank = draw(st.sampled_from([1, 3]))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    stride = tuple(draw(st.integers(1, 2)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(rank))
    padding = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(rank))
    in_size = tuple(draw(st.integers(1, 5)) for _ in range(rank))
    out_size = tuple((i + lo + hi - d * (k - 1) - 1) // s + 1
                     for i, (lo, hi), k, s, d in zip(in_size, padding, kernel, stride, dilation))
    assume(min(out_size) >= 1)
    return kernel, stride, padding, dilation, in_size, out_size


@SETTINGS
@given(geometry=geometries(), batch=st.integers(1, 2), channels=st.integers(1, 3),
       dtype=st.sampled_from([numpy.float32, numpy.float64]), seed=st.integers(0, 2**16))
def test_im2col_and_col2im_match_reference(geometry, batch, channels, dtype, seed):
    """The 2-D test's checks (``test_emulated_kernels``) on geometries of 1 and 3 dims."""
    two_dims.hypothesis.inner_test(geometry, batch, channels, dtype, seed)


@SETTINGS
@given(geometry=geometries(), groups=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_convolutions_match_the_reference(geometry, groups, seed):
    """Each direction of a grouped conv1d / conv3d, from the strategy with
    the CUDA primitives, against the NumPy reference (im2col + GEMM)."""
    kernel, stride, padding, dilation, in_size, out_size = geometry
    dtype = numpy.float64
    x = values(seed, (2, 2 * groups) + in_size, dtype)
    w = values(seed + 1, (2 * groups, 2) + kernel, dtype)
    gy = values(seed + 2, (2, 2 * groups) + out_size, dtype)
    calls = {"forward": (x, w, None, stride, padding, dilation, groups, out_size),
             "grad_input": (gy, w, stride, padding, dilation, groups, in_size),
             "grad_weight": (x, gy, kernel, stride, padding, dilation, groups)}
    expected = {d: reference(f"im2col_gemm_{d}")(*calls[d]) for d in DIRECTIONS}
    with cuda_primitives():
        for d in DIRECTIONS:
            close(getattr(conv_strategy, f"conv_{d}")(*calls[d]), expected[d], dtype)
