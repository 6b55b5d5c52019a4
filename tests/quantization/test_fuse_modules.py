"""fuse_modules against torch's: the same fused module types and the same
folded weights, bit for bit in float32."""
import numpy
import pytest
import torch
import torch.ao.quantization as tq

import minicnn as mc
from minicnn.ao import quantization as mq
from pairs import FUSE_GROUPS, build_pair, conv_bn_relu


def test_fused_weights_equal_torch(rng):
    theirs, ours = build_pair(conv_bn_relu, rng)
    fused_theirs = tq.fuse_modules(theirs, FUSE_GROUPS)
    fused_ours = mq.fuse_modules(ours, FUSE_GROUPS)
    assert [type(m).__name__ for m in fused_ours.children()] == [type(m).__name__ for m in fused_theirs.children()]
    state = fused_ours.state_dict()
    for key, value in fused_theirs.state_dict().items():
        numpy.testing.assert_array_equal(state[key].numpy(), value.numpy(), err_msg=key)
    x = rng.standard_normal((2, 3, 7, 7)).astype(numpy.float32)
    with torch.no_grad():
        expected = fused_theirs(torch.from_numpy(x)).numpy()
    numpy.testing.assert_allclose(fused_ours(mc.tensor(x)).detach().numpy(), expected, rtol=1e-5, atol=1e-5)
    numpy.testing.assert_allclose(ours(mc.tensor(x)).detach().numpy(), expected, rtol=1e-4, atol=1e-4)


def test_fuse_copies_unless_inplace(rng):
    _, ours = build_pair(conv_bn_relu, rng)
    fused = mq.fuse_modules(ours, ["0", "1", "2"])
    assert type(ours[0]) is mc.nn.Conv2d and type(fused[0]) is mc.ao.nn.intrinsic.ConvReLU2d
    assert type(fused[1]) is mc.nn.Identity and type(fused[2]) is mc.nn.Identity
    same = mq.fuse_modules(ours, ["0", "1", "2"], inplace=True)
    assert same is ours and type(ours[0]) is mc.ao.nn.intrinsic.ConvReLU2d


def test_bad_input(rng):
    _, ours = build_pair(conv_bn_relu, rng)
    with pytest.raises(ValueError, match="cannot fuse BatchNorm2d\\+ReLU"):
        mq.fuse_modules(ours, ["1", "2"])
    with pytest.raises(ValueError, match="no submodule 'conv9'"):
        mq.fuse_modules(ours, ["conv9", "1"])
    ours.train()
    with pytest.raises(ValueError, match="eval mode"):
        mq.fuse_modules(ours, ["0", "1"])
