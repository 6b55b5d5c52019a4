"""mc.ops.FeaturePyramidNetwork (with LastLevelMaxPool and LastLevelP6P7)
and MultiScaleRoIAlign against torchvision.ops: state_dict keys, outputs,
gradients of the inputs and the weights; and the detection losses
sigmoid_focal_loss and generalized_box_iou_loss."""
from collections import OrderedDict

import numpy
import pytest
import torch
import torchvision
from torchvision.ops import feature_pyramid_network as tv_fpn

import minicnn as mc
from minicnn import nn, ops
from parity import assert_close, case_table_tests

R = numpy.random.default_rng(5)
SHAPES = [(2, 3, 16, 12), (2, 5, 8, 6), (2, 4, 3, 3)]     # odd sizes: the top-down upsampling is not 2x


def pair(extra, norm, dtype=numpy.float64):
    channels = [s[1] for s in SHAPES]
    torch.manual_seed(0)
    tv_extra = {"maxpool": tv_fpn.LastLevelMaxPool(), "p6p7": tv_fpn.LastLevelP6P7(4, 6),
                "p6p7_from_p5": tv_fpn.LastLevelP6P7(6, 6), None: None}[extra]
    mc_extra = {"maxpool": ops.LastLevelMaxPool(), "p6p7": ops.LastLevelP6P7(4, 6),
                "p6p7_from_p5": ops.LastLevelP6P7(6, 6), None: None}[extra]
    tv = torchvision.ops.FeaturePyramidNetwork(channels, 6, tv_extra, torch.nn.BatchNorm2d if norm else None)
    mine = ops.FeaturePyramidNetwork(channels, 6, mc_extra, nn.BatchNorm2d if norm else None)
    state = tv.state_dict()
    assert list(mine.state_dict()) == list(state)
    mine.load_state_dict(state)
    return (mine.double(), tv.double()) if dtype == numpy.float64 else (mine.float(), tv.float())


@pytest.mark.parametrize("extra,norm", [(None, False), ("maxpool", False), ("p6p7", False),
                                        ("p6p7_from_p5", True)])
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_fpn_matches_torchvision(extra, norm, dtype):
    mine, tv = pair(extra, norm, dtype)
    arrays = [R.standard_normal(s).astype(dtype) for s in SHAPES]
    names = ["feat0", "feat2", "feat3"]
    x_mc = OrderedDict((n, mc.tensor(a, requires_grad=True)) for n, a in zip(names, arrays))
    x_tv = OrderedDict((n, torch.tensor(a, requires_grad=True)) for n, a in zip(names, arrays))
    out_mc, out_tv = mine(x_mc), tv(x_tv)
    assert list(out_mc) == list(out_tv)
    rtol = 1e-10 if dtype == numpy.float64 else 1e-4
    grads = []
    for k in out_tv:
        assert_close(out_mc[k].numpy_copy(), out_tv[k].detach().numpy(), rtol, rtol, f"output {k}")
        grads.append(R.standard_normal(out_tv[k].shape).astype(dtype))
    mc.autograd.run_backward(list(out_mc.values()), [mc.tensor(g) for g in grads])
    torch.autograd.backward(list(out_tv.values()), [torch.tensor(g) for g in grads])
    for n in names:
        assert_close(x_mc[n].grad.numpy(), x_tv[n].grad.numpy(), rtol, rtol, f"gradient of {n}")
    tv_params = dict(tv.named_parameters())
    for name, p in mine.named_parameters():
        assert_close(p.grad.numpy(), tv_params[name].grad.numpy(), rtol, rtol, f"gradient of {name}")


def test_fpn_refuses_bad_arguments():
    with pytest.raises(ValueError, match="in_channels=0"):
        ops.FeaturePyramidNetwork([3, 0], 4)
    with pytest.raises(TypeError, match="extra_blocks must be an ExtraFPNBlock"):
        ops.FeaturePyramidNetwork([3], 4, extra_blocks=nn.ReLU())
    with pytest.raises(ValueError, match="built for 2 maps, got 1"):
        ops.FeaturePyramidNetwork([3, 4], 4)(OrderedDict(a=mc.zeros(1, 3, 4, 4)))


def image_boxes(n, size):
    xy = R.uniform(0, size * 0.8, (n, 2))
    return numpy.concatenate([xy, xy + R.uniform(2, size * 0.9, (n, 2))], 1)


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("names", [["p2", "p3", "p4", "p5"], ["p3"]])
def test_multiscale_roi_align_matches_torchvision(dtype, names):
    """Maps of strides 4..32 of 200 x 160 images; boxes from 2 to 180
    pixels, so they spread over every level (canonical scale 56, level 3)."""
    shapes = {"p2": (3, 3, 50, 40), "p3": (3, 3, 25, 20), "p4": (3, 3, 13, 10), "p5": (3, 3, 7, 5),
              "unused": (3, 3, 4, 4)}
    arrays = {k: R.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    boxes = [image_boxes(6, 160).astype(dtype), image_boxes(0, 160).astype(dtype), image_boxes(5, 150).astype(dtype)]
    image_shapes = [(200, 160), (190, 150), (180, 160)]
    kwargs = dict(canonical_scale=56, canonical_level=3)
    mine = ops.MultiScaleRoIAlign(names, (3, 2), 2, **kwargs)
    tv = torchvision.ops.MultiScaleRoIAlign(names, (3, 2), 2, **kwargs)
    x_mc = OrderedDict((k, mc.tensor(a, requires_grad=True)) for k, a in arrays.items())
    x_tv = OrderedDict((k, torch.tensor(a, requires_grad=True)) for k, a in arrays.items())
    y_mc = mine(x_mc, [mc.tensor(b) for b in boxes], image_shapes)
    y_tv = tv(x_tv, [torch.tensor(b) for b in boxes], image_shapes)
    assert mine.scales == tv.scales
    rtol = 1e-10 if dtype == numpy.float64 else 1e-5
    assert_close(y_mc.numpy_copy(), y_tv.detach().numpy(), rtol, rtol, "output")
    g = R.standard_normal(y_tv.shape).astype(dtype)
    y_mc.backward(mc.tensor(g))
    y_tv.backward(torch.tensor(g))
    for k in names:
        assert_close(x_mc[k].grad.numpy(), x_tv[k].grad.numpy(), rtol, rtol, f"gradient of {k}")
    assert repr(mine) == repr(tv)


def test_level_mapper_matches_torchvision():
    from torchvision.ops.poolers import LevelMapper
    b = image_boxes(200, 800)
    b[:4] = [[0, 0, 224, 224], [0, 0, 112, 112], [0, 0, 448, 448], [0, 0, 1, 1]]   # exact powers of two
    mine = ops.poolers.LevelMapper(2, 5)([mc.tensor(b[:120]), mc.tensor(b[120:])])
    expected = LevelMapper(2, 5)([torch.tensor(b[:120]), torch.tensor(b[120:])])
    numpy.testing.assert_array_equal(mine.numpy(), expected.numpy())
    assert set(mine.numpy()) == {0, 1, 2, 3}


LOGITS, TARGETS = R.standard_normal((4, 6)), (R.random((4, 6)) < 0.3).astype(numpy.float64)
SOFT = R.random((4, 6))
B1, B2 = image_boxes(7, 20), image_boxes(7, 20)
B2[:2] = B1[:2] + 40                                                  # pairs that do not overlap
TV = torchvision.ops
CASES = {
    "focal_default": (ops.sigmoid_focal_loss, TV.sigmoid_focal_loss, [LOGITS, TARGETS]),
    "focal_soft_mean": (lambda x, t: ops.sigmoid_focal_loss(x, t, 0.6, 1.5, "mean"),
                        lambda x, t: TV.sigmoid_focal_loss(x, t, 0.6, 1.5, "mean"), [LOGITS, SOFT]),
    "focal_no_alpha_sum": (lambda x, t: ops.sigmoid_focal_loss(x, t, -1, 3, "sum"),
                           lambda x, t: TV.sigmoid_focal_loss(x, t, -1, 3, "sum"), [LOGITS, SOFT]),
    "giou_loss": (ops.generalized_box_iou_loss, TV.generalized_box_iou_loss, [B1, B2]),
    "giou_loss_mean": (lambda a, b: ops.generalized_box_iou_loss(a, b, "mean"),
                       lambda a, b: TV.generalized_box_iou_loss(a, b, "mean"), [B1, B2]),
    "giou_loss_sum_eps": (lambda a, b: ops.generalized_box_iou_loss(a, b, "sum", eps=0.1),
                          lambda a, b: TV.generalized_box_iou_loss(a, b, "sum", eps=0.1), [B1, B2]),
}
test_losses_match_torchvision, test_losses_noncontiguous, test_losses_gradcheck = case_table_tests(CASES)


def test_losses_of_nothing_and_bad_input():
    empty = mc.zeros(0, 4, dtype=mc.float64)
    assert ops.generalized_box_iou_loss(empty, empty, "mean").item() == 0.0
    assert ops.generalized_box_iou_loss(empty, empty).shape == (0,)
    with pytest.raises(ValueError, match=r"same shape, got \(3, 4\) and \(2, 4\)"):
        ops.generalized_box_iou_loss(mc.zeros(3, 4), mc.zeros(2, 4))
    with pytest.raises(ValueError, match=r"same shape, got \(3, 2\) and \(3,\)"):
        ops.sigmoid_focal_loss(mc.zeros(3, 2), mc.zeros(3))
    with pytest.raises(ValueError, match="alpha must be in"):
        ops.sigmoid_focal_loss(mc.zeros(3), mc.zeros(3), alpha=2)
    with pytest.raises(ValueError, match="reduction must be"):
        ops.sigmoid_focal_loss(mc.zeros(3), mc.zeros(3), reduction="avg")
