"""The shared pieces of mc.models.detection against torchvision's:
GeneralizedRCNNTransform (resize, normalize, batch, box resizing and
postprocess), the anchor generators, BoxCoder / BoxLinearCoder, Matcher /
SSDMatcher, the GIoU box loss, FrozenBatchNorm2d and the FPN backbones
(keys, frozen stages, outputs)."""
import numpy
import pytest
import torch
import torchvision
from torchvision.models.detection import _utils as tv_utils
from torchvision.models.detection import anchor_utils as tv_anchors
from torchvision.models.detection import backbone_utils as tv_backbones
from torchvision.models.detection.image_list import ImageList as TvImageList
from torchvision.models.detection.transform import GeneralizedRCNNTransform as TvTransform

import minicnn as mc
from minicnn.models.detection import _utils as det_utils
from minicnn.models.detection import (AnchorGenerator, DefaultBoxGenerator, FrozenBatchNorm2d,
                                      GeneralizedRCNNTransform, ImageList, mobilenet_backbone, resnet_fpn_backbone)
from minicnn.nn.skip_init import no_init
from zoo_check import assert_relative

torch.set_num_threads(1)
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _random_boxes(rng, n, size=100.0):
    xy = rng.random((n, 2)) * size * 0.7
    wh = rng.random((n, 2)) * size * 0.3 + 1.0
    return numpy.concatenate([xy, xy + wh], axis=1)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("fixed_size", [None, (72, 56)])
def test_transform_matches_torchvision(training, fixed_size):
    rng = numpy.random.default_rng(0)
    images = [rng.random((3, 45, 70)), rng.random((3, 61, 50)), rng.random((3, 33, 33))]
    targets = [{"boxes": _random_boxes(rng, 3, 40), "labels": numpy.array([1, 2, 3])} for _ in images]
    mine = GeneralizedRCNNTransform(64, 100, MEAN, STD, size_divisible=16, fixed_size=fixed_size)
    theirs = TvTransform(64, 100, MEAN, STD, size_divisible=16, fixed_size=fixed_size)
    mine.train(training)
    theirs.train(training)
    m_list, m_targets = mine([mc.from_numpy(i.copy()) for i in images],
                             [{k: mc.from_numpy(v.copy()) for k, v in t.items()} for t in targets])
    t_list, t_targets = theirs([torch.from_numpy(i) for i in images],
                               [{k: torch.from_numpy(v) for k, v in t.items()} for t in targets])
    assert m_list.tensors.shape == tuple(t_list.tensors.shape)
    assert m_list.image_sizes == [tuple(s) for s in t_list.image_sizes]
    assert_relative(m_list.tensors.numpy(), t_list.tensors.numpy(), 1e-12, "batched images")
    for m_t, t_t in zip(m_targets, t_targets):
        numpy.testing.assert_array_equal(m_t["boxes"].numpy(), t_t["boxes"].numpy())
    originals = [tuple(i.shape[1:]) for i in images]
    detections = [_random_boxes(rng, 4, 60) for _ in images]
    m_post = mine.postprocess([{"boxes": mc.from_numpy(d.copy())} for d in detections], m_list.image_sizes,
                              originals)
    t_post = theirs.postprocess([{"boxes": torch.from_numpy(d)} for d in detections], t_list.image_sizes, originals)
    for a, b in zip(m_post, t_post):
        numpy.testing.assert_array_equal(a["boxes"].numpy(), b["boxes"].numpy())


def test_transform_bad_input():
    transform = GeneralizedRCNNTransform(64, 100, MEAN, STD)
    with pytest.raises(ValueError, match="3d tensors"):
        transform([mc.zeros(1, 3, 8, 8)])
    with pytest.raises(TypeError, match="floating"):
        transform([mc.zeros(3, 8, 8, dtype=mc.int64)])
    with pytest.raises(ValueError, match="channels"):
        transform([mc.zeros(1, 8, 8)])
    with pytest.raises(ValueError, match=r"images\[0\] has no pixels: shape \(3, 8, 0\)"):
        transform([mc.zeros(3, 8, 0)])


def test_anchor_generators_match_torchvision():
    sizes = ((32, 40, 50), (64, 80, 101))
    shapes = [(8, 10), (4, 5)]
    m_feats = [mc.zeros(1, 2, *s, dtype=mc.float64) for s in shapes]
    t_feats = [torch.zeros(1, 2, *s, dtype=torch.float64) for s in shapes]
    m_images = ImageList(mc.zeros(2, 3, 64, 80), [(64, 70), (50, 80)])
    t_images = TvImageList(torch.zeros(2, 3, 64, 80), [(64, 70), (50, 80)])
    mine = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * 2)(m_images, m_feats)
    theirs = tv_anchors.AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * 2)(t_images, t_feats)
    for a, b in zip(mine, theirs):
        assert a.dtype == numpy.float64
        numpy.testing.assert_array_equal(a.numpy(), b.numpy())
    for kwargs in ({"min_ratio": 0.2, "max_ratio": 0.95}, {"scales": [0.1, 0.3, 0.7], "steps": [8, 16]},
                   {"clip": False}):
        mine = DefaultBoxGenerator([[2], [2, 3]], **kwargs)(m_images, m_feats)
        theirs = tv_anchors.DefaultBoxGenerator([[2], [2, 3]], **kwargs)(t_images, t_feats)
        for a, b in zip(mine, theirs):
            numpy.testing.assert_array_equal(a.numpy(), b.numpy())


def test_box_coders_match_torchvision():
    rng = numpy.random.default_rng(1)
    anchors, boxes = _random_boxes(rng, 20), _random_boxes(rng, 20)
    codes = rng.standard_normal((20, 8)) * 3    # some dw, dh above the clip
    mine, theirs = det_utils.BoxCoder((10.0, 10.0, 5.0, 5.0)), tv_utils.BoxCoder((10.0, 10.0, 5.0, 5.0))
    numpy.testing.assert_allclose(mine.encode_single(mc.from_numpy(boxes), mc.from_numpy(anchors)).numpy(),
                                  theirs.encode_single(torch.from_numpy(boxes), torch.from_numpy(anchors)).numpy(),
                                  rtol=1e-13, atol=1e-13)
    numpy.testing.assert_allclose(mine.decode(mc.from_numpy(codes), [mc.from_numpy(anchors)]).numpy(),
                                  theirs.decode(torch.from_numpy(codes), [torch.from_numpy(anchors)]).numpy(),
                                  rtol=1e-13)
    linear_m, linear_t = det_utils.BoxLinearCoder(), tv_utils.BoxLinearCoder()
    numpy.testing.assert_allclose(linear_m.encode(mc.from_numpy(anchors), mc.from_numpy(boxes)).numpy(),
                                  linear_t.encode(torch.from_numpy(anchors), torch.from_numpy(boxes)).numpy(),
                                  rtol=1e-13)
    numpy.testing.assert_allclose(linear_m.decode(mc.from_numpy(codes[:, :4]), mc.from_numpy(anchors)).numpy(),
                                  linear_t.decode(torch.from_numpy(codes[:, :4]), torch.from_numpy(anchors)).numpy(),
                                  rtol=1e-13)


def test_giou_box_loss_and_its_gradient_match_torchvision():
    rng = numpy.random.default_rng(2)
    anchors, boxes, codes = _random_boxes(rng, 12), _random_boxes(rng, 12), rng.standard_normal((12, 4)) * 0.3
    coder_m, coder_t = det_utils.BoxCoder((1.0, 1.0, 1.0, 1.0)), tv_utils.BoxCoder((1.0, 1.0, 1.0, 1.0))
    m_codes = mc.tensor(codes, requires_grad=True)
    t_codes = torch.tensor(codes, requires_grad=True)
    for kind in ("giou", "l1", "smooth_l1"):
        mine = det_utils._box_loss(kind, coder_m, anchors, boxes, m_codes)
        theirs = tv_utils._box_loss(kind, coder_t, torch.from_numpy(anchors), torch.from_numpy(boxes), t_codes)
        mine.backward()
        theirs.backward()
        assert_relative(mine.numpy_copy(), theirs.detach().numpy(), 1e-12, f"{kind} loss")
        assert_relative(m_codes.grad.numpy(), t_codes.grad.numpy(), 1e-12, f"{kind} gradient")
        m_codes.grad, t_codes.grad = None, None


@pytest.mark.parametrize("low_quality", [False, True])
def test_matchers_match_torchvision(low_quality):
    rng = numpy.random.default_rng(3)
    iou = rng.random((5, 40)) * 0.7
    iou[:, 7] = iou[:, 3]                       # ties for a box's best anchor
    mine = det_utils.Matcher(0.5, 0.4, low_quality)(mc.from_numpy(iou))
    theirs = tv_utils.Matcher(0.5, 0.4, low_quality)(torch.from_numpy(iou))
    numpy.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    mine = det_utils.SSDMatcher(0.5)(mc.from_numpy(iou))
    theirs = tv_utils.SSDMatcher(0.5)(torch.from_numpy(iou))
    numpy.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    with pytest.raises(ValueError, match="No ground-truth boxes"):
        det_utils.Matcher(0.5, 0.4)(mc.zeros(0, 4))
    with pytest.raises(ValueError, match="low_threshold"):
        det_utils.Matcher(0.4, 0.5)


def test_frozen_batch_norm_matches_torchvision():
    rng = numpy.random.default_rng(4)
    state = {"weight": rng.standard_normal(6), "bias": rng.standard_normal(6),
             "running_mean": rng.standard_normal(6), "running_var": rng.random(6) + 0.5}
    mine, theirs = FrozenBatchNorm2d(6), torchvision.ops.misc.FrozenBatchNorm2d(6)
    mine.load_state_dict(state)
    theirs.load_state_dict({k: torch.from_numpy(v).float() for k, v in state.items()})
    assert list(mine.state_dict()) == list(theirs.state_dict()) and not list(mine.parameters())
    x = rng.standard_normal((2, 6, 3, 4))
    assert_relative(mine.double()(mc.from_numpy(x)).numpy_copy(),
                    theirs.double()(torch.from_numpy(x)).numpy(), 1e-12, "FrozenBatchNorm2d")
    with pytest.raises(ValueError, match=r"\(N, 6, H, W\)"):
        mine(mc.zeros(2, 5, 3, 3))


def test_resnet_fpn_backbone_matches_torchvision():
    torch.manual_seed(0)
    theirs = tv_backbones.resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=2)
    with no_init():
        mine = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=2)
    assert [(k, tuple(v.shape)) for k, v in mine.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in theirs.state_dict().items()]
    assert [(n, p.requires_grad) for n, p in mine.named_parameters()] == \
        [(n, p.requires_grad) for n, p in theirs.named_parameters()]
    mine.load_state_dict(theirs.state_dict())
    mine, theirs = mine.double().eval(), theirs.double().eval()
    x = numpy.random.default_rng(5).standard_normal((1, 3, 64, 48))
    with mc.no_grad():
        ours = mine(mc.from_numpy(x.copy()))
    with torch.no_grad():
        reference = theirs(torch.from_numpy(x))
    assert list(ours) == list(reference) == ["0", "1", "2", "3", "pool"]
    for key in reference:
        assert_relative(ours[key].numpy(), reference[key].numpy(), 1e-10, f"FPN level {key}")


@pytest.mark.parametrize("fpn", [False, True])
def test_mobilenet_backbone_structure(fpn):
    theirs = tv_backbones.mobilenet_backbone(backbone_name="mobilenet_v3_large", weights=None, fpn=fpn,
                                             trainable_layers=3)
    with no_init():
        mine = mobilenet_backbone(backbone_name="mobilenet_v3_large", weights=None, fpn=fpn, trainable_layers=3)
    assert [(k, tuple(v.shape)) for k, v in mine.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in theirs.state_dict().items()]
    assert [(n, p.requires_grad) for n, p in mine.named_parameters()] == \
        [(n, p.requires_grad) for n, p in theirs.named_parameters()]
    assert mine.out_channels == 256


def test_backbone_bad_arguments():
    with pytest.raises(ValueError, match="range"):
        resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=6)
    with pytest.raises(ValueError, match="unknown backbone_name"):
        resnet_fpn_backbone(backbone_name="resnet7", weights=None)
    with pytest.raises(ValueError, match="downloads nothing"):
        mobilenet_backbone(backbone_name="mobilenet_v2", weights="IMAGENET1K_V1", fpn=True)


@pytest.mark.parametrize("seed", range(4))
def test_top_candidates_are_a_stable_sorts_first_k(seed):
    # The partition shortcut must pick exactly what a stable descending sort
    # picks: the same scores, ties (many, from few distinct values, and
    # 0.0 against -0.0) in index order, NaN last.
    rng = numpy.random.default_rng(seed)
    for trial in range(400):
        n, k = int(rng.integers(1, 80)), int(rng.integers(0, 90))
        scores = (rng.integers(0, 4, n) if trial % 2 else rng.standard_normal(n)).astype(numpy.float32)
        if trial % 5 == 0:
            scores[rng.integers(0, n)] = numpy.nan
        if trial % 9 == 0:
            scores[::2] = -0.0
        expected = numpy.argsort(-scores, kind="stable")[:k]
        numpy.testing.assert_array_equal(det_utils.top_candidates(scores, k), expected, err_msg=f"{scores}, k={k}")
