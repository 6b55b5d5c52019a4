"""set_backend means what it says: with "numpy", a training step of a
network that uses every kind of op runs no CPU kernel at all; with the
default, it runs them."""
import pytest

import minicnn as mc
import minicnn.nn as nn
import minicnn.nn.functional as F
from minicnn.kernels import registry


class Everything(nn.Module):
    """Convolutions of every path (3x3, 1x1, depthwise, 5x5, one output
    pixel), pooling of every kind, batch norm, the activations that have
    kernels, linear, cross-entropy."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.pointwise = nn.Conv2d(8, 8, 1)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.five = nn.Conv2d(8, 8, 5)
        self.dense = nn.Conv2d(8, 8, 4)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = F.silu(self.pointwise(x)) + F.gelu(x) + F.sigmoid(x)
        x = F.max_pool2d(self.depthwise(x), 2)                       # 16 -> 8
        x = F.avg_pool2d(F.hardtanh(x), 1) + F.adaptive_avg_pool2d(x, 8) + F.adaptive_max_pool2d(x, 8)
        x = self.dense(self.five(x))                                 # 8 -> 4 -> 1
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def _step(seed=0):
    mc.manual_seed(seed)
    model = Everything()
    optimizer = mc.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = mc.randn(2, 3, 16, 16, dtype=mc.float64).float()
    loss = F.cross_entropy(model(x), mc.tensor([1, 3]))
    loss.backward()
    optimizer.step()
    return loss.item(), [p.data.copy() for p in model.parameters()]


@pytest.fixture
def cpu_kernels(monkeypatch):
    """Every CPU kernel of the registry replaced by a recorder that calls
    the real one: the names of the kernels that ran."""
    ran = []
    for primitive in registry.primitives():
        implementations = registry.implementations(primitive)
        if "numba" not in implementations:
            continue

        def recorder(*args, _name=primitive, _real=implementations["numba"], **kwargs):
            ran.append(_name)
            return _real(*args, **kwargs)
        monkeypatch.setitem(registry._implementations[primitive], "numba", recorder)
    return ran


def test_the_numpy_backend_runs_no_cpu_kernel_and_the_default_runs_them(cpu_kernels):
    previous = registry.get_backend()
    try:
        registry.set_backend("numpy")
        loss_numpy, params_numpy = _step()
        assert cpu_kernels == []
        registry.set_backend("auto")
        loss_auto, params_auto = _step()
    finally:
        registry.set_backend(previous)
    assert {"im2col_gemm_forward", "depthwise_conv2d_forward", "max_pool2d_forward", "batch_norm_forward", "sgd_update", "matmul", "erf",
            "silu", "relu"} <= set(cpu_kernels)
    assert loss_auto == pytest.approx(loss_numpy, rel=1e-5)
    for mine, reference in zip(params_auto, params_numpy):
        assert abs(mine - reference).max() < 1e-4
