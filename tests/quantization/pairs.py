"""The same small float model in torch and in minicnn, with the same
weights and BatchNorm statistics, for the quantization tests."""
import numpy
import torch

import minicnn as mc


def copy_weights(theirs, ours):
    """Load torch module ``theirs``'s state into minicnn module ``ours``."""
    state = {k: v.detach().numpy().copy() for k, v in theirs.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    ours.load_state_dict(state, strict=False)
    return ours


def randomize_batchnorm(model, rng):
    """Non-trivial running statistics and affine parameters (torch model)."""
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = m.num_features
            with torch.no_grad():
                m.running_mean.copy_(torch.from_numpy(rng.standard_normal(n).astype(numpy.float32) * 0.2))
                m.running_var.copy_(torch.from_numpy(rng.uniform(0.5, 2.0, n).astype(numpy.float32)))
                m.weight.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, n).astype(numpy.float32)))
                m.bias.copy_(torch.from_numpy(rng.standard_normal(n).astype(numpy.float32) * 0.1))


def conv_bn_relu(nn):
    """conv (no bias) + bn + relu, conv + bn, conv + relu, linear + bn, linear + relu."""
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Conv2d(6, 5, 3, stride=2), nn.BatchNorm2d(5),
        nn.Conv2d(5, 4, 1), nn.ReLU(),
        nn.Flatten(), nn.Linear(36, 7), nn.BatchNorm1d(7), nn.Linear(7, 3), nn.ReLU())


FUSE_GROUPS = [["0", "1", "2"], ["3", "4"], ["5", "6"], ["8", "9"], ["10", "11"]]


def build_pair(make, rng):
    """(torch model, minicnn model) built by ``make(nn)`` with the same state."""
    torch.manual_seed(int(rng.integers(1 << 30)))
    theirs = make(torch.nn)
    randomize_batchnorm(theirs, rng)
    ours = copy_weights(theirs, make(mc.nn))
    return theirs.eval(), ours.eval()
