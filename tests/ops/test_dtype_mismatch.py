"""Products between float32 and float64 operands raise, as torch's do
(a RuntimeError there): matmul, linear (functional and nn.Linear), conv2d
and conv_transpose2d. A silent float64 result would double the memory and
time of everything after it. The messages name both dtypes."""
import numpy
import pytest
import torch

import minicnn as mc
import minicnn.nn.functional as F

R = numpy.random.default_rng(0)


def _pair(shape_a, shape_b, dtype_a, dtype_b):
    return (mc.tensor(R.standard_normal(shape_a).astype(dtype_a)),
            mc.tensor(R.standard_normal(shape_b).astype(dtype_b)))


OPS = {
    "matmul": (lambda a, b: a @ b, (2, 3), (3, 4), "matmul: input has dtype {a} but other has dtype {b}"),
    "matmul_1d": (mc.matmul, (3,), (3,), "matmul: input has dtype {a} but other has dtype {b}"),
    "linear": (F.linear, (2, 3), (4, 3), "linear: input has dtype {a} but weight has dtype {b}"),
    "conv2d": (F.conv2d, (1, 2, 5, 5), (3, 2, 3, 3), "conv2d: input has dtype {a} but weight has dtype {b}"),
    "conv_transpose2d": (F.conv_transpose2d, (1, 2, 5, 5), (2, 3, 3, 3),
                         "conv_transpose2d: input has dtype {a} but weight has dtype {b}"),
}
TORCH = {"matmul": torch.matmul, "matmul_1d": torch.matmul, "linear": torch.nn.functional.linear,
         "conv2d": torch.nn.functional.conv2d, "conv_transpose2d": torch.nn.functional.conv_transpose2d}
DTYPES = [(numpy.float32, numpy.float64), (numpy.float64, numpy.float32)]


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("dtype_a,dtype_b", DTYPES)
def test_mixed_float_dtypes_raise_as_torch(name, dtype_a, dtype_b):
    fn, shape_a, shape_b, message = OPS[name]
    a, b = _pair(shape_a, shape_b, dtype_a, dtype_b)
    with pytest.raises(RuntimeError):
        TORCH[name](torch.from_numpy(a.numpy()), torch.from_numpy(b.numpy()))
    expected = message.format(a=numpy.dtype(dtype_a), b=numpy.dtype(dtype_b))
    with pytest.raises(TypeError, match=expected):
        fn(a, b)


@pytest.mark.parametrize("name", ["linear", "conv2d", "conv_transpose2d"])
def test_a_bias_of_the_other_dtype_raises(name):
    fn, shape_a, shape_b, _ = OPS[name]
    a, w = _pair(shape_a, shape_b, numpy.float32, numpy.float32)
    out_channels = w.shape[1] if name == "conv_transpose2d" else w.shape[0]
    bias = mc.tensor(R.standard_normal(out_channels))
    with pytest.raises(TypeError, match=f"{name}: input has dtype float32 but bias has dtype float64"):
        fn(a, w, bias)


def test_integer_and_float_matmul_raise_as_torch():
    a, b = mc.tensor(numpy.arange(6).reshape(2, 3)), mc.tensor(R.standard_normal((3, 2)).astype(numpy.float32))
    with pytest.raises(RuntimeError):
        torch.from_numpy(a.numpy()) @ torch.from_numpy(b.numpy())
    with pytest.raises(TypeError, match="matmul: input has dtype int64 but other has dtype float32"):
        a @ b


def test_nn_linear_refuses_a_float64_input():
    """The case the issue found: float64 data into a float32 layer used to
    come back float64."""
    layer = mc.nn.Linear(3, 2)
    x = mc.tensor(R.standard_normal((4, 3)))
    with pytest.raises(TypeError, match="linear: input has dtype float64 but weight has dtype float32"):
        layer(x)
    assert layer(x.to("float32")).dtype == numpy.float32


def test_linear_with_an_integer_input_raises():
    with pytest.raises(TypeError, match="linear: input must be a floating-point tensor, got dtype int64"):
        F.linear(mc.tensor(numpy.arange(3).reshape(1, 3)), mc.zeros((2, 3)))


def test_same_dtypes_still_work():
    for dtype in (numpy.float32, numpy.float64):
        a, b = _pair((2, 3), (3, 4), dtype, dtype)
        assert (a @ b).dtype == dtype
        assert F.linear(a, b.T.contiguous()).dtype == dtype
