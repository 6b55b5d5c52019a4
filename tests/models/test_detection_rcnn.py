"""The two-stage detectors of mc.models.detection (Faster, Mask and
Keypoint R-CNN) against torchvision: the same state_dict keys, the same
detections in eval mode (float64: same count and labels, boxes, scores,
masks and keypoints to 1e-7 relative) with the score threshold and the
detections cap honoured, the same loss dict in training mode (1e-8) and,
for Faster R-CNN, the same gradient of every parameter; parameter counts
as torchvision's table; bad input.

Images are small (min_size 96, max_size 128), the models have 4
classes and keep few proposals (pre / post NMS top-n), to keep the
float64 runs cheap.

Sampling made deterministic: the RPN and the RoI heads each draw a
random sample of anchors / proposals (BalancedPositiveNegativeSampler,
torch.randperm in torchvision, minicnn's generator here). Both models are
built with ``rpn_batch_size_per_image`` and ``box_batch_size_per_image``
of 100000, larger than the number of candidates, so the sampler takes
every positive and every negative and the sample does not depend on the
permutation (the losses read the sample as a mask, in index order).

torchvision's "loss_objectness" is float32 even for a float64 model (its
RPN labels are float32 and binary_cross_entropy_with_logits returns the
target's dtype); it is compared at float32's 1e-7, its gradient (float64)
as tightly as the others."""
import numpy
import pytest
import torch
import torchvision

import minicnn as mc
from detection_check import (IMAGES, TARGETS, check_bad_images_and_targets, check_detections, check_training, pair,
                             sample_images)
from minicnn.nn.skip_init import no_init

torch.set_num_threads(1)

SMALL = {"num_classes": 4, "min_size": 96, "max_size": 128, "rpn_pre_nms_top_n_test": 100,
         "rpn_post_nms_top_n_test": 30, "rpn_pre_nms_top_n_train": 100, "rpn_post_nms_top_n_train": 30,
         "rpn_batch_size_per_image": 100000, "box_batch_size_per_image": 100000}


def _check_thresholds(mine, tv, images, score_thresh):
    """Detections at the default settings, then with a higher score
    threshold and a cap of 5 per image: fewer, and the same as torchvision's."""
    many = check_detections(mine, tv, images)
    assert all(c > 5 for c in many)
    for m in (mine, tv):
        m.roi_heads.score_thresh, m.roi_heads.detections_per_img = score_thresh, 5
    few = check_detections(mine, tv, images)
    assert all(0 < c <= 5 for c in few) and few != many


@pytest.mark.slow
def test_fasterrcnn_detections_losses_and_gradients():
    mine, tv = pair("fasterrcnn_resnet50_fpn", **SMALL)
    images = sample_images()
    _check_thresholds(mine, tv, images, score_thresh=0.27)
    check_training(mine, tv, images)


@pytest.mark.slow
def test_fasterrcnn_mobilenet_320_detections():
    """The MobileNetV3 backbone, and the RPN's score threshold (0.05 in this builder)."""
    mine, tv = pair("fasterrcnn_mobilenet_v3_large_320_fpn", num_classes=4, min_size=128, max_size=160)
    assert mine.rpn.score_thresh == 0.05
    assert sum(check_detections(mine, tv, sample_images())) > 0


# torchvision's table, and the same figures as its weights' metadata.
TABLE = [("fasterrcnn_resnet50_fpn", "41.8", 41_755_286), ("fasterrcnn_resnet50_fpn_v2", "43.7", 43_712_278),
         ("fasterrcnn_mobilenet_v3_large_fpn", "19.4", 19_386_354),
         ("fasterrcnn_mobilenet_v3_large_320_fpn", "19.4", 19_386_354),
         ("maskrcnn_resnet50_fpn", "44.4", 44_401_393), ("maskrcnn_resnet50_fpn_v2", "46.4", 46_359_409),
         ("keypointrcnn_resnet50_fpn", "59.1", 59_137_258)]


@pytest.mark.parametrize("name, millions, exact", TABLE)
def test_parameter_counts(name, millions, exact):
    """mc.summary's count, on a (3, 64, 64) image (the model built small:
    the sizes and proposal counts change no parameter). The table's v1
    models have a pretrained backbone with FrozenBatchNorm2d, whose
    scales and shifts are buffers: without pretrained weights they are
    BatchNorm2d parameters, left out of the comparison."""
    assert torchvision.models.get_model_weights(name).DEFAULT.meta["num_params"] == exact
    with no_init():
        model = mc.models.get_model(name, min_size=64, max_size=64, rpn_post_nms_top_n_test=10,
                                    box_detections_per_img=2)
    total = mc.summary(model, (3, 64, 64), training_memory=False).total_params
    assert total == sum(p.numel() for p in model.parameters())
    if not name.endswith("_v2"):
        total -= sum(p.numel() for m in model.backbone.body.modules() if isinstance(m, mc.nn.BatchNorm2d)
                     for p in m.parameters())
    assert total == exact
    assert f"{total / 1e6:.1f}" == millions


@pytest.fixture(scope="module")
def small_fasterrcnn():
    with no_init():
        return mc.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(num_classes=3, min_size=64, max_size=64)


def test_bad_input(small_fasterrcnn):
    model = small_fasterrcnn
    check_bad_images_and_targets(model)
    with pytest.raises(ValueError, match="num_classes should not be None"):
        mc.models.detection.FasterRCNN(model.backbone)
    with pytest.raises(ValueError, match="pre_nms_top_n"):
        mc.models.detection.RegionProposalNetwork(model.rpn.anchor_generator, model.rpn.head, 0.7, 0.3, 256, 0.5,
                                                  {"train": 10}, {"training": 10, "testing": 10}, 0.7)


def _small_heads_pair(kind):
    """Mask or Keypoint R-CNN on a ResNet-18-FPN backbone with narrow
    mask / keypoint heads (the branch's code at a fraction of the
    builders' cost; the builders' full heads are checked by their
    state_dict keys and test_builders_detections). The mask head has v2's
    BatchNorm (the v1 head, without, is maskrcnn_resnet50_fpn's)."""
    from torchvision.models.detection import backbone_utils as tv_backbones
    from torchvision.models.detection import faster_rcnn as tv_faster
    from torchvision.models.detection import keypoint_rcnn as tv_keypoint
    from torchvision.models.detection import mask_rcnn as tv_mask

    sizes = {k: v for k, v in SMALL.items() if k != "num_classes"}

    def build(nn, faster, mask, keypoint, backbone):
        if kind == "mask":
            return mask.MaskRCNN(backbone, box_predictor=faster.FastRCNNPredictor(1024, 4),
                                 mask_head=mask.MaskRCNNHeads(256, (32, 32), 1, norm_layer=nn.BatchNorm2d),
                                 mask_predictor=mask.MaskRCNNPredictor(32, 16, 4), **sizes)
        return keypoint.KeypointRCNN(backbone, box_predictor=faster.FastRCNNPredictor(1024, 2),
                                     keypoint_head=keypoint.KeypointRCNNHeads(256, (32, 32)),
                                     keypoint_predictor=keypoint.KeypointRCNNPredictor(32, 5), **sizes)

    torch.manual_seed(0)
    tv = build(torch.nn, tv_faster, tv_mask, tv_keypoint,
               tv_backbones.resnet_fpn_backbone(backbone_name="resnet18", weights=None))
    det = mc.models.detection
    with no_init():
        mine = build(mc.nn, det, det, det, det.resnet_fpn_backbone(backbone_name="resnet18", weights=None))
    assert list(mine.state_dict()) == list(tv.state_dict())
    mine.load_state_dict(tv.state_dict())
    return mine.double(), tv.double()


def _masks(i):
    """uint8 masks (K, H, W): each box filled, with random holes."""
    rng = numpy.random.default_rng(i + 1)
    _, h, w = IMAGES[i]
    masks = numpy.zeros((len(TARGETS[i]["boxes"]), h, w), dtype=numpy.uint8)
    for k, (x1, y1, x2, y2) in enumerate(TARGETS[i]["boxes"]):
        masks[k, int(y1):int(y2), int(x1):int(x2)] = 1
    return {"masks": masks * (rng.random(masks.shape) < 0.8).astype(numpy.uint8)}


def _keypoints(i):
    """float32 keypoints (K, 5, 3): random points in each box (one on its
    right edge), visibility 0, 1 or 2; every box a person (label 1)."""
    rng = numpy.random.default_rng(i + 1)
    boxes = numpy.asarray(TARGETS[i]["boxes"])
    t = rng.random((len(boxes), 5, 2))
    xy = boxes[:, None, :2] + t * (boxes[:, None, 2:] - boxes[:, None, :2])
    xy[:, 0, 0] = boxes[:, 2]
    visibility = rng.integers(0, 3, (len(boxes), 5, 1))
    visibility[:, :2] = 2
    return {"keypoints": numpy.concatenate([xy, visibility], axis=2).astype(numpy.float32),
            "labels": numpy.ones(len(boxes), dtype=numpy.int64)}


@pytest.mark.slow
def test_maskrcnn_detections_and_losses():
    mine, tv = _small_heads_pair("mask")
    images = sample_images()
    for m in (mine, tv):
        m.roi_heads.detections_per_img = 4
    assert all(c == 4 for c in check_detections(mine, tv, images))
    check_training(mine, tv, images, extra=_masks, gradients=False)


@pytest.mark.slow
def test_keypointrcnn_detections_and_losses():
    mine, tv = _small_heads_pair("keypoint")
    images = sample_images()
    for m in (mine, tv):
        m.roi_heads.score_thresh, m.roi_heads.detections_per_img = 0.4, 4
    assert all(c > 0 for c in check_detections(mine, tv, images))
    check_training(mine, tv, images, extra=_keypoints, gradients=False)


@pytest.mark.slow
@pytest.mark.parametrize("name, detections", [("maskrcnn_resnet50_fpn", 3), ("keypointrcnn_resnet50_fpn", 1)])
def test_builders_detections(name, detections):
    """The builders' full mask head (four 256-channel convs) and keypoint
    head (eight 512-channel convs, 17 keypoints): masks, keypoints and
    their scores as torchvision's, for the best one or three detections
    per image (the keypoint head costs ~4 GMAC per detection)."""
    sizes = {k: v for k, v in SMALL.items() if k != "num_classes"}
    mine, tv = pair(name, num_classes=2 if name.startswith("keypoint") else 4, box_score_thresh=0.0,
                    box_detections_per_img=detections, **sizes)
    assert check_detections(mine, tv, sample_images()) == [detections, detections]


@pytest.mark.parametrize("name", ["maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2", "keypointrcnn_resnet50_fpn"])
def test_state_dict_keys(name):
    """The builders' full models: torchvision's keys and shapes (its model
    built on the meta device: no memory, no initialisation)."""
    with torch.device("meta"):
        tv = torchvision.models.get_model(name, weights=None, weights_backbone=None)
    with no_init():
        mine = mc.models.get_model(name)
    assert [(k, tuple(v.shape)) for k, v in mine.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in tv.state_dict().items()]


@pytest.fixture(scope="module")
def small_mask_and_keypoint():
    det = mc.models.detection
    with no_init():
        mask = det.MaskRCNN(det.resnet_fpn_backbone(backbone_name="resnet18", weights=None),
                            box_predictor=det.FastRCNNPredictor(1024, 3), min_size=64, max_size=64,
                            rpn_post_nms_top_n_train=10, rpn_post_nms_top_n_test=10,
                            mask_head=det.MaskRCNNHeads(256, (8,), 1), mask_predictor=det.MaskRCNNPredictor(8, 8, 3))
        keypoint = det.KeypointRCNN(det.resnet_fpn_backbone(backbone_name="resnet18", weights=None), num_classes=2,
                                    min_size=64, max_size=64, rpn_post_nms_top_n_train=10,
                                    rpn_post_nms_top_n_test=10, keypoint_head=det.KeypointRCNNHeads(256, (8,)),
                                    keypoint_predictor=det.KeypointRCNNPredictor(8, 3))
    return mask, keypoint


def test_mask_and_keypoint_targets_and_empty_cases(small_mask_and_keypoint):
    """Missing "masks" / "keypoints" keys are named; an image without boxes
    trains (every proposal background); no detection gives empty masks
    and keypoints of the right shapes."""
    mask, keypoint = small_mask_and_keypoint
    image = [mc.rand(3, 40, 50)]
    box = {"boxes": mc.tensor([[5.0, 5.0, 30.0, 30.0]]), "labels": mc.tensor([1])}
    mask.train()
    keypoint.train()
    with pytest.raises(ValueError, match="masks"):
        mask(image, [box])
    with pytest.raises(ValueError, match="keypoints"):
        keypoint(image, [box])
    with pytest.raises(ValueError, match=r"keypoints'\] must have shape \(1, K, 3\)"):
        keypoint(image, [{**box, "keypoints": mc.zeros(1, 3)}])
    empty = {"boxes": mc.zeros(0, 4), "labels": mc.zeros(0, dtype=mc.int64)}
    losses = mask(image, [{**empty, "masks": mc.zeros(0, 40, 50, dtype=mc.uint8)}])
    assert sorted(losses) == ["loss_box_reg", "loss_classifier", "loss_mask", "loss_objectness", "loss_rpn_box_reg"]
    assert float(losses["loss_mask"].detach()) == 0 and float(losses["loss_box_reg"].detach()) == 0
    losses = keypoint(image, [{**empty, "keypoints": mc.zeros(0, 3, 3)}])
    assert float(losses["loss_keypoint"].detach()) == 0
    for model in (mask, keypoint):
        model.eval()
        model.roi_heads.score_thresh = 0.99
        with mc.no_grad():
            (out,) = model(image)
        assert out["boxes"].shape == (0, 4)
        if model is mask:
            assert out["masks"].shape == (0, 1, 40, 50)
        else:
            assert out["keypoints"].shape == (0, 3, 3) and out["keypoints_scores"].shape == (0, 3)
    assert mask.roi_heads.has_mask() and not keypoint.roi_heads.has_mask()


@pytest.mark.slow
def test_fasterrcnn_v2_detections_losses_and_gradients():
    """The v2 recipe: BatchNorm in the FPN, a two-conv RPN head, the conv
    box head. For the gradients the ResNet-50 body (the same as v1's,
    whose gradients test_fasterrcnn_detections_losses_and_gradients
    compares) is frozen in both models: its float64 backward would
    triple the test's time."""
    mine, tv = pair("fasterrcnn_resnet50_fpn_v2", **SMALL)
    for m in (mine, tv):
        m.roi_heads.detections_per_img = 8
    images = sample_images()
    assert sum(check_detections(mine, tv, images)) > 0
    for m in (mine, tv):
        for p in m.backbone.body.parameters():
            p.requires_grad_(False)
    check_training(mine, tv, images)
