"""Tensor creation, dtype inference and attributes."""
import numpy
import pytest
import torch

import minicnn as mc


@pytest.mark.parametrize("data", [[1.0, 2.0], 3.5, [[1, 2], [3, 4]], [True, False], [1, 2.5],
                                  numpy.float64(2.0), numpy.array([1, 2], dtype=numpy.int32),
                                  numpy.ones((2, 2)), numpy.ones(3, dtype=numpy.float32)])
def test_dtype_inference_matches_torch(data):
    expected = torch.tensor(data).dtype
    got = mc.tensor(data).dtype
    assert str(got) == str(expected).replace("torch.", "")


def test_explicit_dtype_and_copy_semantics():
    a = numpy.arange(3.0)
    t = mc.tensor(a, dtype=mc.float32)
    assert t.dtype == mc.float32
    t_copy = mc.tensor(a)
    a[0] = 99
    assert t_copy.tolist()[0] == 0.0         # tensor() copies
    shared = mc.from_numpy(a)
    a[1] = 42
    assert shared.tolist()[1] == 42.0        # from_numpy shares
    assert mc.tensor(a, dtype="float64").dtype == mc.float64


@pytest.mark.parametrize("factory", ["zeros", "ones", "empty", "rand", "randn"])
def test_factories_shapes_and_dtypes(factory):
    fn = getattr(mc, factory)
    assert fn(2, 3).shape == (2, 3) and fn(2, 3).dtype == mc.float32
    assert fn((4,), dtype=mc.float64).dtype == mc.float64
    assert fn(2, requires_grad=True).requires_grad


def test_other_factories():
    assert mc.arange(5).dtype == mc.int64 and mc.arange(5).tolist() == [0, 1, 2, 3, 4]
    assert mc.arange(0, 1, 0.25).dtype == mc.float32
    assert mc.full((2, 2), 7).dtype == mc.int64
    assert mc.full((2, 2), 7.0).tolist() == [[7.0, 7.0], [7.0, 7.0]]
    assert mc.zeros_like(mc.ones(2, dtype=mc.float64)).dtype == mc.float64
    assert mc.randint(0, 5, (100,)).numpy().max() < 5


def test_manual_seed_makes_random_tensors_repeatable():
    mc.manual_seed(123)
    a = mc.randn(5).numpy().copy()
    mc.manual_seed(123)
    assert numpy.array_equal(a, mc.randn(5).numpy())
    values = mc.randn(20000, dtype=mc.float64).numpy()
    assert abs(values.mean()) < 0.03 and abs(values.std() - 1) < 0.03


def test_attributes():
    t = mc.randn(2, 3, 4)
    assert t.shape == (2, 3, 4) and t.ndim == 3 and t.dim() == 3
    assert t.size() == (2, 3, 4) and t.size(-1) == 4 and t.numel() == 24 and len(t) == 2
    assert t.T.shape == (4, 3, 2)
    assert mc.tensor([[2.5]]).item() == 2.5
    assert isinstance(t.numpy(), numpy.ndarray)
    assert t.is_leaf and not t.requires_grad and t.grad is None
    assert str(t.device) == "cpu"


def test_numpy_of_a_tensor_that_requires_grad_needs_detach():
    t = mc.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="detach"):
        t.numpy()
    assert t.detach().numpy().tolist() == [1.0, 1.0]


def test_item_of_many_elements_is_an_error():
    with pytest.raises(ValueError, match=r"one-element.*\(2,\)"):
        mc.ones(2).item()


def test_to_dtype_is_differentiable():
    x = mc.tensor([1.0, 2.0], requires_grad=True)
    y = x.to(mc.float64)
    assert y.dtype == mc.float64
    (y * y).sum().backward()
    assert x.grad.dtype == mc.float32 and x.grad.tolist() == [2.0, 4.0]
    assert x.double().dtype == mc.float64 and x.float() is x


def test_repr_looks_like_torch():
    assert repr(mc.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(mc.tensor([1.0], requires_grad=True)) == "tensor([1.], requires_grad=True)"
    assert "dtype=float64" in repr(mc.tensor([1.0], dtype=mc.float64))
    assert "grad_fn=<MulBackward>" in repr(mc.tensor([1.0], requires_grad=True) * 2)


def test_bad_input_to_factories():
    with pytest.raises(ValueError, match="non-negative"):
        mc.zeros(-1)
    with pytest.raises(TypeError, match="unknown dtype"):
        mc.zeros(2, dtype="float128")
    with pytest.raises(ValueError, match="cannot build a tensor"):
        mc.tensor([[1.0, 2.0], [3.0]])
    with pytest.raises(TypeError, match="from_numpy"):
        mc.from_numpy([1, 2])
    with pytest.raises(TypeError, match="seed must be an int"):
        mc.manual_seed(1.5)


def test_cuda_is_explained_when_unavailable():
    from minicnn.device import cuda_unavailable_reason
    reason = cuda_unavailable_reason()
    if reason is None:
        pytest.skip("a GPU is present: nothing to explain")
    with pytest.raises(RuntimeError, match="cannot move a tensor to cuda"):
        mc.ones(2).to("cuda")
