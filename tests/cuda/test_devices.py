"""Devices on any machine: ``mc.device`` parsing, what ``mc.cuda`` says
without a GPU, the device-mixing error, optimizer state following its
parameters, and the CUDA primitives' registration. (The same behaviour on
a real GPU is in test_gpu.py.)

Where a test needs an array "on a GPU" without one, ``FakeGpuArray``
stands in: it has what minicnn looks at to place an array (``.device.id``)
and to bring it back (``.get()``).
"""
import inspect
import re
import types

import numpy
import pytest

import minicnn as mc
from minicnn.kernels import registry
from minicnn.kernels.cuda import PRIMITIVES
from minicnn.device import cuda_unavailable_reason

UNAVAILABLE = cuda_unavailable_reason()
needs_no_cuda = pytest.mark.skipif(UNAVAILABLE is None, reason="CUDA is available here; see test_gpu.py")


class FakeGpuArray:
    """A stand-in for a CuPy array on GPU ``index``, holding a NumPy array."""

    def __init__(self, array, index=0):
        self.array, self.device = array, types.SimpleNamespace(id=index)
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim

    def get(self):
        return self.array


# -- mc.device -----------------------------------------------------------
def test_device_parsing():
    assert mc.device("cpu").type == "cpu" and mc.device("cpu").index is None
    assert mc.device("cuda") == mc.device("cuda:0") == "cuda:0"
    gpu1 = mc.device("cuda:1")
    assert (gpu1.type, gpu1.index, str(gpu1)) == ("cuda", 1, "cuda:1")
    assert repr(gpu1) == "device(type='cuda', index=1)"
    assert mc.device(gpu1) == gpu1 and mc.device("cuda", 2) == "cuda:2"
    assert len({mc.device("cuda"), mc.device("cuda:0"), mc.device("cpu")}) == 2


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "cuda:-1", "cpu:0", ""])
def test_bad_device_names_are_refused(spec):
    with pytest.raises(ValueError, match="'cpu', 'cuda' or 'cuda:N'"):
        mc.device(spec)


# -- without CUDA ----------------------------------------------------------
@needs_no_cuda
def test_cuda_reports_why_it_is_unavailable():
    assert mc.cuda.is_available() is False
    assert mc.cuda.device_count() == 0
    assert UNAVAILABLE  # e.g. "CuPy is not installed (pip install 'minicnn[cuda]')"
    for ask in (mc.cuda.synchronize, mc.cuda.memory_allocated, mc.cuda.empty_cache, mc.cuda.current_device):
        with pytest.raises(RuntimeError, match=re.escape("CUDA is not available: " + UNAVAILABLE)):
            ask()


@needs_no_cuda
def test_asking_for_cuda_explains_why_not():
    x = mc.ones(2, 3)
    for ask in (lambda: x.cuda(), lambda: x.to("cuda:0"), lambda: mc.zeros(2, device="cuda"),
                lambda: mc.tensor([1.0], device=mc.device("cuda")), lambda: mc.nn.Linear(2, 2).to("cuda")):
        with pytest.raises(RuntimeError, match=re.escape("cannot move a tensor to cuda:0: " + UNAVAILABLE)):
            ask()


def test_cpu_is_unchanged():
    x = mc.randn(2, 3, requires_grad=True)
    assert x.device == mc.device("cpu") and not x.is_cuda
    assert x.to("cpu") is x and x.cpu() is x
    assert mc.zeros(2, device="cpu").device == "cpu"
    model = mc.nn.Linear(3, 2).to("cpu")
    assert all(p.device == "cpu" for p in model.parameters())


# -- mixing devices ----------------------------------------------------------
def test_mixing_devices_is_an_error_naming_both():
    cpu = mc.ones(3)
    gpu = mc.Tensor._wrap(FakeGpuArray(numpy.ones(3, dtype=numpy.float32)))
    with pytest.raises(RuntimeError, match=r"Add: expected all inputs on one device, got cpu and cuda:0"):
        cpu + gpu
    with pytest.raises(RuntimeError, match=r"got cuda:0 and cuda:1"):
        mc.Tensor._wrap(FakeGpuArray(numpy.ones(3), 0)) * mc.Tensor._wrap(FakeGpuArray(numpy.ones(3), 1))
    with pytest.raises(RuntimeError, match=r"Conv2d: expected all inputs on one device, got cpu and cuda:0"):
        w = mc.Tensor._wrap(FakeGpuArray(numpy.ones((1, 1, 2, 2), dtype=numpy.float32)))
        mc.nn.functional.conv2d(mc.ones(1, 1, 3, 3), w)


def test_optimizer_state_follows_its_parameter():
    """A state buffer left on another device (the parameter was moved by
    module.to after a step) is moved to the parameter's at the next step."""
    p = mc.nn.Parameter(mc.ones(3))
    optimizer = mc.optim.SGD([p], lr=0.1, momentum=0.9)
    p.grad = mc.ones(3)
    optimizer.step()
    optimizer.state[p]["momentum_buffer"] = mc.Tensor._wrap(FakeGpuArray(numpy.full(3, 2.0, numpy.float32)))
    optimizer.step()
    buf = optimizer.state[p]["momentum_buffer"]
    assert isinstance(buf.data, numpy.ndarray)
    numpy.testing.assert_allclose(buf.numpy(), 0.9 * 2.0 + 1.0)


# -- the CUDA primitives ---------------------------------------------------
@pytest.mark.parametrize("primitive", sorted(PRIMITIVES))
def test_cuda_primitive_has_the_reference_signature(primitive):
    impls = registry.implementations(primitive)
    assert impls["cuda"].__module__ == f"minicnn.kernels.cuda.{PRIMITIVES[primitive]}"
    ours, theirs = inspect.signature(impls["cuda"]), inspect.signature(impls["numpy"])
    assert list(ours.parameters) == list(theirs.parameters)
    assert [p.default for p in ours.parameters.values()] == [p.default for p in theirs.parameters.values()]


def test_numpy_arrays_never_get_cuda_kernels():
    for primitive in PRIMITIVES:
        assert not registry.lookup(primitive, numpy).__module__.startswith("minicnn.kernels.cuda")
