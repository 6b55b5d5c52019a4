"""torch's quantized state as minicnn holds it, for the tests that load a
model torch converted into the same model minicnn converted, and the
torch engine those tests compare with."""
import pytest
import torch

from minicnn import ao


def from_torch(value):
    """A torch state_dict value as minicnn holds it: quantized tensors as
    QTensors, tensors as arrays, (weight, bias) pairs element-wise."""
    if isinstance(value, tuple):
        return tuple(from_torch(v) for v in value)
    if not isinstance(value, torch.Tensor):
        return value
    if not value.is_quantized:
        return value.detach().numpy()
    q = value.int_repr().numpy()
    if value.qscheme() == torch.per_channel_affine:
        return ao._make_per_channel_quantized_tensor(q, value.q_per_channel_scales().numpy(),
                                                     value.q_per_channel_zero_points().numpy(),
                                                     value.q_per_channel_axis())
    return ao._make_per_tensor_quantized_tensor(q, value.q_scale(), value.q_zero_point())


@pytest.fixture(autouse=True)
def fbgemm_engine():
    """torch's fbgemm engine for each test of a module that imports this
    fixture, restored afterwards: minicnn's integer arithmetic is fbgemm's
    (torch's "x86" engine may send convs to oneDNN, which rounds some ties
    differently)."""
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    yield
    torch.backends.quantized.engine = previous
