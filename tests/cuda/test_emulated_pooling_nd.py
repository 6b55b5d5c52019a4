"""The 1-D and 3-D pools on the GPU path, checked on the CPU through the
emulation harness of ``test_emulated_kernels.py``: the public functions
run with the CUDA pooling kernels (emulated), as on a GPU, against the
same calls on the CPU kernels: outputs, indices and input gradients."""
import numpy
import pytest

import minicnn as mc
import minicnn.nn.functional as F
from test_emulated_kernels import cuda_primitives, emulated_gpu  # noqa: F401
from test_pool_bn_kernels import close

CASES = [
    (F.max_pool3d, (2, 3, 5, 6, 7), dict(kernel_size=3, stride=2, padding=1, return_indices=True)),
    (F.max_pool3d, (1, 2, 4, 5, 5), dict(kernel_size=(2, 1, 2), dilation=(2, 1, 1), ceil_mode=True,
                                         return_indices=True)),
    (F.max_pool1d, (2, 3, 11), dict(kernel_size=4, stride=3, padding=2, ceil_mode=True, return_indices=True)),
    (F.avg_pool3d, (2, 2, 5, 6, 6), dict(kernel_size=(2, 3, 3), stride=(1, 2, 2), padding=(1, 1, 0),
                                         count_include_pad=False)),
    (F.avg_pool1d, (2, 3, 9), dict(kernel_size=3, stride=2, padding=1)),
    (F.adaptive_max_pool3d, (2, 2, 5, 4, 6), dict(output_size=(2, 3, 4), return_indices=True)),
    (F.adaptive_avg_pool3d, (2, 2, 3, 4, 5), dict(output_size=1)),
    (F.adaptive_avg_pool1d, (2, 3, 7), dict(output_size=3)),
]


def _run(pool, x, gy_seed, kw):
    """(outputs as arrays, input gradient) of ``pool`` on x for a random
    upstream gradient."""
    t = mc.tensor(x, requires_grad=True)
    out = pool(t, **kw)
    outs = out if isinstance(out, tuple) else (out,)
    gy = numpy.random.default_rng(gy_seed).standard_normal(outs[0].shape)
    outs[0].backward(mc.tensor(gy))
    return [o.detach().numpy() for o in outs], t.grad.numpy()


@pytest.mark.parametrize("pool,shape,kw", CASES, ids=lambda v: getattr(v, "__name__", str(v)))
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_pools_on_the_cuda_kernels_match_the_cpu(pool, shape, kw, dtype):
    rng = numpy.random.default_rng(0)
    x = (rng.permutation(int(numpy.prod(shape))).reshape(shape) / 10).astype(dtype)  # no ties
    expected, expected_grad = _run(pool, x, 1, kw)
    with cuda_primitives():
        got, grad = _run(pool, x, 1, kw)
    for g, e in zip(got, expected):
        if e.dtype.kind == "i":
            numpy.testing.assert_array_equal(g, e)
        else:
            close(g, e, dtype)
    close(grad, expected_grad, dtype)
