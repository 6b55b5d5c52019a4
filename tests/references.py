"""The NumPy references of the convolution kernels, run as such: with the
NumPy backend selected, so that nothing they call is a Numba primitive."""
import contextlib

from minicnn.kernels import registry


@contextlib.contextmanager
def selected(backend):
    """The CPU backend ``backend`` inside the block."""
    previous = registry.get_backend()
    registry.set_backend(backend)
    try:
        yield
    finally:
        registry.set_backend(previous)


def conv_reference(direction):
    """conv2d's ``direction`` ("forward", "grad_input", "grad_weight")
    computed by the NumPy reference: im2col, then one matmul, with NumPy's
    own im2col / col2im."""
    im2col_gemm = registry.implementations(f"im2col_gemm_{direction}")["numpy"]

    def run(*args):
        with selected("numpy"):
            return im2col_gemm(*args)
    return run
