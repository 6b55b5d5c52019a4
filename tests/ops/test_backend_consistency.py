"""One behaviour on every CPU backend (issue 26): the ops whose kernels
Numba compiles (convolutions, pools, batch norm, activations) given empty
inputs, float16 inputs and byte-swapped arrays, run with each backend
(the ``backend`` fixture) and compared with torch, forward and backward.

torch is the spec for empty and float16 inputs. It refuses byte-swapped
arrays (``torch.from_numpy`` raises), so those are compared with torch on
the same values in native order. Where minicnn differs from torch on
purpose (a conv2d input of 0 channels) the test says so.
"""
import sys
import tracemalloc

import numpy
import pytest
import torch
import torch.nn.functional as TF

import minicnn as mc
import minicnn.nn.functional as F
from minicnn.kernels import registry
from parity import assert_close

SWAPPED = numpy.dtype(numpy.float32).newbyteorder("S")   # big-endian float32 on this little-endian machine

# name -> (minicnn op, torch op, input shapes, indices of inputs that take no gradient)
OPS = {
    "conv2d": (lambda x, w, b: F.conv2d(x, w, b, padding=1), lambda x, w, b: TF.conv2d(x, w, b, padding=1),
               ((2, 3, 7, 7), (4, 3, 3, 3), (4,)), ()),
    "conv2d_pointwise": (lambda x, w: F.conv2d(x, w, stride=2), lambda x, w: TF.conv2d(x, w, stride=2),
                         ((2, 4, 5, 5), (6, 4, 1, 1)), ()),
    "conv2d_depthwise": (lambda x, w: F.conv2d(x, w, groups=3), lambda x, w: TF.conv2d(x, w, groups=3),
                         ((2, 3, 6, 6), (6, 1, 3, 3)), ()),
    "conv2d_dense": (lambda x, w: F.conv2d(x, w), lambda x, w: TF.conv2d(x, w), ((2, 3, 3, 3), (5, 3, 3, 3)), ()),
    "conv_transpose2d": (lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2),
                         lambda x, w, b: TF.conv_transpose2d(x, w, b, stride=2),
                         ((2, 3, 5, 5), (3, 4, 3, 3), (4,)), ()),
    "max_pool2d": (lambda x: F.max_pool2d(x, 3, 2, 1), lambda x: TF.max_pool2d(x, 3, 2, 1), ((2, 3, 7, 7),), ()),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 2), lambda x: TF.avg_pool2d(x, 2), ((2, 3, 6, 6),), ()),
    "adaptive_avg_pool2d": (lambda x: F.adaptive_avg_pool2d(x, (3, 2)),
                            lambda x: TF.adaptive_avg_pool2d(x, (3, 2)), ((2, 3, 7, 5),), ()),
    "adaptive_max_pool2d": (lambda x: F.adaptive_max_pool2d(x, (3, 2)),
                            lambda x: TF.adaptive_max_pool2d(x, (3, 2)), ((2, 3, 7, 5),), ()),
    "batch_norm_train": (lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
                         lambda x, w, b: TF.batch_norm(x, None, None, w, b, training=True),
                         ((4, 3, 5, 5), (3,), (3,)), ()),
    "batch_norm_eval": (lambda x, m, v, w, b: F.batch_norm(x, m, v, w, b, training=False),
                        lambda x, m, v, w, b: TF.batch_norm(x, m, v, w, b, training=False),
                        ((4, 3, 5, 5), (3,), (3,), (3,), (3,)), (1, 2)),
    "relu": (F.relu, TF.relu, ((2, 3, 4, 4),), ()),
    "sigmoid": (F.sigmoid, torch.sigmoid, ((2, 3, 4, 4),), ()),
    "silu": (F.silu, TF.silu, ((2, 3, 4, 4),), ()),
}

# Empty variants of the inputs above that torch computes: a batch of 0
# for every op, and 0 channels where torch takes them.
EMPTY = {name: (((0,) + shapes[0][1:],) + shapes[1:]) for name, (_, _, shapes, _) in OPS.items()}
EMPTY.update({
    "batch_norm_train_no_channels": ((4, 0, 5, 5),),
})
EMPTY_OPS = {**OPS,
             # torch's affine batch_norm fails on 0 channels (IndexError), the plain one computes
             "batch_norm_train_no_channels": (lambda x: F.batch_norm(x, None, None, training=True),
                                              lambda x: TF.batch_norm(x, None, None, training=True), None, ())}


def arrays(shapes, dtype, constant=(), seed=0):
    """Random inputs; the running variance of batch_norm_eval (input 2) positive."""
    rng = numpy.random.default_rng(seed)
    out = [rng.standard_normal(s).astype(dtype) for s in shapes]
    if 2 in constant:
        out[2] = numpy.abs(out[2]) + numpy.asarray(0.5, dtype)
    return out


def run_minicnn(fn, inputs, constant, upstream_seed=1):
    """Outputs and input gradients (None for constants) of ``fn`` on
    tensors made from ``inputs`` (arrays of any dtype or byte order)."""
    tensors = [mc.from_numpy(a.copy()) for a in inputs]
    for i, t in enumerate(tensors):
        t.requires_grad_(i not in constant)
    y = fn(*tensors)
    gy = numpy.random.default_rng(upstream_seed).standard_normal(y.shape).astype(y.dtype.newbyteorder("="))
    y.backward(mc.from_numpy(gy))
    grads = [None if i in constant else (numpy.zeros(t.shape, t.dtype) if t.grad is None else t.grad.numpy_copy())
             for i, t in enumerate(tensors)]
    return y.numpy_copy(), grads


def run_torch(fn, inputs, constant, upstream_seed=1):
    tensors = [torch.from_numpy(numpy.ascontiguousarray(a, a.dtype.newbyteorder("="))) for a in inputs]
    for i, t in enumerate(tensors):
        t.requires_grad_(i not in constant)
    y = fn(*tensors)
    gy = numpy.random.default_rng(upstream_seed).standard_normal(tuple(y.shape)).astype(y.detach().numpy().dtype)
    y.backward(torch.from_numpy(gy))
    grads = [None if i in constant else (numpy.zeros(t.shape, t.detach().numpy().dtype) if t.grad is None
                                         else t.grad.numpy())
             for i, t in enumerate(tensors)]
    return y.detach().numpy(), grads


def compare(mine, theirs, rtol, atol, dtype):
    (y, grads), (ty, tgrads) = mine, theirs
    assert y.dtype.newbyteorder("=") == dtype, f"output dtype {y.dtype}, expected {dtype}"
    assert_close(y, ty, rtol, atol, "output")
    for i, (g, tg) in enumerate(zip(grads, tgrads)):
        if tg is None:
            continue
        assert g.dtype.newbyteorder("=") == dtype, f"gradient {i} dtype {g.dtype}, expected {dtype}"
        assert_close(g, tg, rtol, atol, f"gradient of input {i}")


# -- empty inputs: torch's shapes, zero gradients ---------------------------
@pytest.mark.parametrize("name", sorted(EMPTY))
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_empty_inputs_match_torch(name, dtype, backend):
    fn, torch_fn, _, constant = EMPTY_OPS[name]
    inputs = arrays(EMPTY[name], dtype, constant)
    compare(run_minicnn(fn, inputs, constant), run_torch(torch_fn, inputs, constant), 1e-10, 1e-12, dtype)


def test_conv2d_of_no_input_channels_is_the_bias(backend):
    """Documented difference: torch returns (N, 0, OH, OW) for an input of
    0 channels; minicnn returns what its shape rule says, (N, O, OH, OW),
    each value a sum of no taps plus the bias; so the bias gradient is gy
    summed (torch's is zero) and those of x and w are empty."""
    x, w, b = arrays(((2, 0, 6, 6), (4, 0, 3, 3), (4,)), numpy.float64)
    (y, (gx, gw, gb)) = run_minicnn(lambda x, w, b: F.conv2d(x, w, b), [x, w, b], ())
    gy = numpy.random.default_rng(1).standard_normal((2, 4, 4, 4))
    numpy.testing.assert_array_equal(y, numpy.broadcast_to(b.reshape(4, 1, 1), (2, 4, 4, 4)))
    assert gx.shape == (2, 0, 6, 6) and gw.shape == (4, 0, 3, 3)
    numpy.testing.assert_allclose(gb, gy.sum(axis=(0, 2, 3)), rtol=1e-12)
    assert TF.conv2d(*map(torch.from_numpy, (x, w, b))).shape == (2, 0, 4, 4)   # torch's, which we do not copy


@pytest.mark.parametrize("op, weight", [(F.conv2d, (0, 3, 3, 3)), (F.conv_transpose2d, (0, 4, 3, 3))])
def test_weight_without_rows_is_refused_as_torch_does(op, weight, backend):
    x, w = mc.zeros(2, 3, 6, 6), mc.zeros(*weight)
    with pytest.raises(ValueError, match=r"weight must have at least 1 row in dimension 0.*\(0, "):
        op(x, w)
    with pytest.raises(RuntimeError):
        getattr(TF, op.__name__)(torch.zeros(2, 3, 6, 6), torch.zeros(*weight))


def test_conv_transpose2d_of_no_output_channels_is_empty(backend):
    """Documented difference: torch's CPU build fails in oneDNN on a weight
    (C, 0, KH, KW); minicnn returns (N, 0, OH, OW), the adjoint of a conv2d
    of 0 input channels, and zero gradients."""
    x, w, b = arrays(((2, 3, 5, 5), (3, 0, 3, 3), (0,)), numpy.float64)
    (y, (gx, gw, gb)) = run_minicnn(lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2), [x, w, b], ())
    assert y.shape == (2, 0, 11, 11) and gw.shape == (3, 0, 3, 3) and gb.shape == (0,)
    numpy.testing.assert_array_equal(gx, numpy.zeros((2, 3, 5, 5)))
    with pytest.raises(RuntimeError):
        TF.conv_transpose2d(*map(torch.from_numpy, (x, w, b)), stride=2)


def test_conv2d_of_an_empty_map_with_padding_reads_only_padding(backend):
    """A batch of 0 with a 0-row map, padded: torch gives (0, O, 2, 10)."""
    x, w, b = arrays(((0, 3, 0, 8), (4, 3, 1, 1), (4,)), numpy.float64)
    fn = (lambda x, w, b: F.conv2d(x, w, b, padding=1), lambda x, w, b: TF.conv2d(x, w, b, padding=1))
    compare(run_minicnn(fn[0], [x, w, b], ()), run_torch(fn[1], [x, w, b], ()), 1e-10, 1e-12, numpy.float64)


# -- float16: computed in float16, as torch does on the CPU -----------------
@pytest.mark.parametrize("name", sorted(OPS))
def test_float16_matches_torch(name, backend):
    fn, torch_fn, shapes, constant = OPS[name]
    inputs = arrays(shapes, numpy.float16, constant)
    # float16 keeps 11 bits: a few rounding steps of 2^-11 each, relative
    # to the largest value (conv sums of 27 products reach ~10).
    compare(run_minicnn(fn, inputs, constant), run_torch(torch_fn, inputs, constant), 1e-2, 1e-2,
            numpy.float16)


# -- byte-swapped arrays: computed, the values of their native copies -------
@pytest.mark.parametrize("name", sorted(OPS))
def test_byte_swapped_arrays_match_torch_on_native_copies(name, backend):
    fn, torch_fn, shapes, constant = OPS[name]
    native = arrays(shapes, numpy.float32, constant)
    swapped = [a.astype(SWAPPED) for a in native]
    assert sys.byteorder == "little" and not swapped[0].dtype.isnative
    compare(run_minicnn(fn, swapped, constant), run_torch(torch_fn, native, constant), 1e-4, 1e-5,
            numpy.float32)


# -- the same answer from both backends --------------------------------------
@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("kind", ["float16", "byte-swapped", "empty"])
def test_both_backends_give_identical_results(name, kind):
    """Numba compiles no float16 and no byte-swapped arrays; the registry
    runs the NumPy reference for them, so both backends agree exactly on
    float16 and on empty inputs. Byte-swapped inputs agree to float32
    rounding: their gradients flow back in native order, which the Numba
    kernels take."""
    fn, _, shapes, constant = OPS[name]
    if kind == "float16":
        inputs = arrays(shapes, numpy.float16, constant)
    elif kind == "byte-swapped":
        inputs = [a.astype(SWAPPED) for a in arrays(shapes, numpy.float32, constant)]
    else:
        inputs = arrays(EMPTY[name], numpy.float32, constant)
    previous = registry.get_backend()
    try:
        results = []
        for backend in ("numpy", "numba"):
            registry.set_backend(backend)
            results.append(run_minicnn(fn, inputs, constant))
    finally:
        registry.set_backend(previous)
    rtol = 1e-5 if kind == "byte-swapped" else 0.0
    (y0, g0), (y1, g1) = results
    numpy.testing.assert_allclose(y1, y0, rtol=rtol, atol=rtol)
    for a, b in zip(g0, g1):
        if a is not None:
            numpy.testing.assert_allclose(b, a, rtol=rtol, atol=rtol)


def test_winograd_converts_float16_and_casts_back():
    """Winograd has no NumPy reference: its Numba kernel computes float16
    input in float32 and returns float16, close to torch's float16."""
    previous = registry.get_backend()
    try:
        registry.set_backend("numba")
        x, w = arrays(((8, 4, 20, 20), (5, 4, 3, 3)), numpy.float16)
        assert registry.find("winograd_conv2d", numpy) is not None
        y = F.conv2d(mc.from_numpy(x), mc.from_numpy(w))
    finally:
        registry.set_backend(previous)
    assert y.dtype == numpy.float16
    assert_close(y.numpy(), TF.conv2d(torch.from_numpy(x), torch.from_numpy(w)).numpy(), 1e-2, 1e-2, "output")


# -- random draws in the requested precision ---------------------------------
# (draw, peak bound in tensor sizes): drawing in float64 would add 2x (the
# 8-byte samples) to each. The init functions hold the draw and the
# tensor (2x); trunc_normal_ its three masks as well (0.75x).
@pytest.mark.parametrize("draw, bound", [
    (lambda: mc.rand(2000, 2000), 1.5),
    (lambda: mc.nn.init.normal_(mc.empty(2000, 2000), 1.0, 2.0), 2.5),
    (lambda: mc.nn.init.uniform_(mc.empty(2000, 2000), -1.0, 1.0), 2.5),
    (lambda: mc.nn.init.trunc_normal_(mc.empty(2000, 2000)), 3.0)])
def test_float32_draws_do_not_build_float64_arrays(draw, bound):
    size = 2000 * 2000 * 4
    tracemalloc.start()
    try:
        t = draw()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert t.dtype == numpy.float32 and t.shape == (2000, 2000)
    assert peak < bound * size, f"peak {peak / size:.2f} x the tensor's size"


def test_randn_float32_draw_peaks_at_its_own_size():
    size = 2000 * 2000 * 4
    tracemalloc.start()
    try:
        mc.randn(2000, 2000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * size, f"peak {peak / size:.2f} x the tensor's size"


def test_float64_draws_keep_numpy_float64_stream():
    mc.manual_seed(5)
    a, b = mc.rand(7, dtype=mc.float64).numpy(), mc.randn(7, dtype=mc.float64).numpy()
    t = mc.nn.init.normal_(mc.empty(3, 4, dtype=mc.float64), 1.5, 0.25).numpy().copy()
    u = mc.nn.init.uniform_(mc.empty(3, 4, dtype=mc.float64), -2.0, 3.0).numpy().copy()
    g = numpy.random.default_rng(5)
    numpy.testing.assert_array_equal(a, g.random(7))
    numpy.testing.assert_array_equal(b, g.standard_normal(7))
    numpy.testing.assert_array_equal(t, g.normal(1.5, 0.25, size=(3, 4)))
    numpy.testing.assert_array_equal(u, g.uniform(-2.0, 3.0, size=(3, 4)))


@pytest.mark.parametrize("dtype", [mc.float32, mc.float16])
def test_low_precision_draws_have_the_right_distribution(dtype):
    mc.manual_seed(0)
    n = mc.randn(200000, dtype=dtype).numpy().astype(numpy.float64)
    u = mc.rand(200000, dtype=dtype).numpy().astype(numpy.float64)
    assert abs(n.mean()) < 0.01 and abs(n.std() - 1) < 0.01
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.01 and u.min() >= 0


def test_randint_draws_in_a_narrow_dtype_and_keeps_the_int64_stream():
    mc.manual_seed(2)
    numpy.testing.assert_array_equal(mc.randint(0, 10, (50,)).numpy(),
                                     numpy.random.default_rng(2).integers(0, 10, size=(50,)))
    size = 2000 * 2000 * 4
    tracemalloc.start()
    try:
        t = mc.randint(-5, 100, (2000, 2000), dtype=mc.int32)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    values = t.numpy()
    assert values.dtype == numpy.int32 and values.min() == -5 and values.max() == 99
    assert peak < 1.5 * size, f"peak {peak / size:.2f} x the tensor's size"
