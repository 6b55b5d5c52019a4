"""The one-stage detectors of mc.models.detection against torchvision:
the same state_dict keys, the same detections in eval mode (float64:
same count and labels, boxes and scores to 1e-7 relative) for two
score thresholds and a detections_per_img cap, the same loss dict in
training mode (1e-8) and the same gradient of every parameter, for
images of different sizes in one batch; parameter counts as
torchvision's table; bad input.

Images are small (min_size 64, max_size 80) and the models have 4
classes, to keep the float64 runs cheap. With random weights every
RetinaNet score sits near the prior 0.01, so the thresholds are just
above it. SSD's hard negative mining is deterministic (a stable sort of
the negatives' losses) and torchvision's sort gives the same ranks when
the losses are distinct, as they are here."""
import pytest
import torch

import minicnn as mc
from detection_check import (TARGETS, check_bad_images_and_targets, check_detections, check_training, pair,
                             sample_images)
from minicnn.nn.skip_init import no_init

torch.set_num_threads(1)

# mc.ops.nms's NumPy reference (MINICNN_BACKEND=numpy) divides 0 by 0 for
# boxes clipped to zero area (IoU nan: not suppressed, as in torchvision)
# and NumPy warns.
ZERO_AREA_NMS = pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")


@pytest.mark.slow
@ZERO_AREA_NMS
def test_retinanet_detections_losses_and_gradients():
    mine, tv = pair("retinanet_resnet50_fpn", num_classes=4, min_size=64, max_size=80, score_thresh=0.01005)
    images = sample_images()
    many = check_detections(mine, tv, images)
    assert all(c > 10 for c in many)
    for m in (mine, tv):
        m.score_thresh, m.detections_per_img = 0.0102, 20
    few = check_detections(mine, tv, images)
    assert all(0 < c <= 20 for c in few) and few != many
    check_training(mine, tv, images, grad_rtol=1e-9)


@pytest.mark.slow
@ZERO_AREA_NMS
def test_retinanet_v2_detections_losses_and_gradients():
    """v2: P6 from C5, GroupNorm in the head, the GIoU box loss. Its
    random scores spread wider (0.013 to 0.034), so the thresholds are
    higher than v1's."""
    mine, tv = pair("retinanet_resnet50_fpn_v2", num_classes=4, min_size=64, max_size=80, score_thresh=0.01)
    images = sample_images()
    assert check_detections(mine, tv, images) == [300, 300]
    for m in (mine, tv):
        m.score_thresh, m.nms_thresh = 0.025, 0.3
    few = check_detections(mine, tv, images)
    assert all(0 < c < 300 for c in few)
    check_training(mine, tv, images, grad_rtol=1e-9)


@pytest.mark.slow
@ZERO_AREA_NMS
def test_ssdlite_detections():
    """SSD's post-processing (softmax, per-class top-k, NMS) on SSDlite at
    160 x 160, two thresholds."""
    mine, tv = pair("ssdlite320_mobilenet_v3_large", kaiming=True, num_classes=4, score_thresh=0.5,
                    detections_per_img=50)
    for m in (mine, tv):
        m.transform.fixed_size = (160, 160)
    images = sample_images()
    assert check_detections(mine, tv, images) == [50, 50]
    for m in (mine, tv):
        m.score_thresh, m.nms_thresh, m.detections_per_img = 0.9995, 0.3, 300
    few = check_detections(mine, tv, images)
    assert all(0 < c < 50 for c in few)


@pytest.mark.slow
@ZERO_AREA_NMS
def test_ssd300_detections_losses_and_gradients():
    """SSD300's VGG-16 backbone (conv4_3 L2-normalised and scaled by
    ``scale_weight``, the dilated fc6 / fc7 convs, four extra blocks) at
    268 x 268, the smallest size whose last extra block still has a 1 x 1
    map (SSD resizes every image to ``transform.fixed_size``): the
    detections of one image, then the losses and gradients of two. The
    VGG layers up to conv4_3 (plain convs and ReLUs, compared elsewhere)
    are frozen in both models for the training comparison: their
    backward at full resolution would triple the test's time."""
    mine, tv = pair("ssd300_vgg16", num_classes=4)
    for m in (mine, tv):
        m.transform.fixed_size = (268, 268)
    images = sample_images()
    assert check_detections(mine, tv, images[:1]) == [200]
    for m in (mine, tv):
        for p in m.backbone.features.parameters():
            p.requires_grad_(False)
    check_training(mine, tv, images, grad_rtol=1e-9)


@pytest.mark.slow
@ZERO_AREA_NMS
def test_fcos_detections_losses_and_gradients():
    mine, tv = pair("fcos_resnet50_fpn", num_classes=4, min_size=64, max_size=80, score_thresh=0.1)
    images = sample_images()
    many = check_detections(mine, tv, images)
    assert all(c > 10 for c in many)
    for m in (mine, tv):
        m.score_thresh, m.nms_thresh = 0.102, 0.3
    few = check_detections(mine, tv, images)
    assert all(0 < c for c in few) and few != many
    check_training(mine, tv, images, grad_rtol=1e-9)


@pytest.mark.slow
def test_ssdlite_losses_and_gradients():
    """SSD's losses (matching, hard negative mining) and gradients, on
    SSDlite at 160 x 160."""
    mine, tv = pair("ssdlite320_mobilenet_v3_large", kaiming=True, num_classes=4)
    for m in (mine, tv):
        m.transform.fixed_size = (160, 160)
    # The backbone's gradients come back through ~60 batch norms in
    # training mode, several over 3 x 3 or smaller maps of 2 images whose
    # variance is tiny: round-off grows to ~1e-8 relative (in both
    # frameworks; a wrong formula would show as 1e-3), hence 1e-7 here.
    check_training(mine, tv, sample_images(), grad_rtol=1e-7)
    # An image without objects: all its anchors are background.
    check_training(mine, tv, sample_images(), grad_rtol=1e-7, targets=[{"boxes": [], "labels": []}, TARGETS[1]])


@pytest.mark.parametrize("name, millions", [("ssd300_vgg16", 35_641_826), ("ssdlite320_mobilenet_v3_large", 3_440_060),
                                            ("retinanet_resnet50_fpn", 34_014_999),
                                            ("retinanet_resnet50_fpn_v2", 38_198_935),
                                            ("fcos_resnet50_fpn", 32_269_600)])
def test_parameter_counts(name, millions):
    """mc.summary's count, torchvision's table. The table's RetinaNet v1
    and FCOS have a pretrained backbone with FrozenBatchNorm2d, whose
    scales and shifts are buffers: without pretrained weights they are
    BatchNorm2d parameters, 53,120 more. (SSD resizes every image to its
    fixed size; the others are built small: the sizes change no
    parameter.)"""
    with no_init():
        model = mc.models.get_model(name, **({} if name.startswith("ssd") else {"min_size": 64, "max_size": 64}))
    total = mc.summary(model, (3, 64, 64), training_memory=False).total_params
    assert total == sum(p.numel() for p in model.parameters())
    if name in ("retinanet_resnet50_fpn", "fcos_resnet50_fpn"):
        norms = sum(p.numel() for m in model.backbone.body.modules() if isinstance(m, mc.nn.BatchNorm2d)
                    for p in m.parameters())
        assert norms == 53_120
        total -= norms
    assert total == millions


def test_summary_of_a_detector():
    """mc.summary runs a detector on a (1, 3, H, W) batch (a detector also
    takes a batch tensor as its list of images): torchvision's table gives
    SSDlite 3.44M parameters and 0.583 G operations (multiply-adds)."""
    with no_init():
        model = mc.models.detection.ssdlite320_mobilenet_v3_large()
    table = mc.summary(model, (3, 320, 320), training_memory=False)
    assert table.total_params == 3_440_060
    assert round(table.total_mult_adds / 1e9, 3) == 0.583


@pytest.fixture(scope="module")
def small_retinanet():
    with no_init():
        return mc.models.detection.retinanet_resnet50_fpn(num_classes=3, min_size=64, max_size=64)


def test_bad_input(small_retinanet):
    model = small_retinanet
    check_bad_images_and_targets(model)
    model.eval()
    with pytest.raises(ValueError, match="images is an empty list"):
        model([])
    with pytest.raises(TypeError, match="floating"):
        model([mc.zeros(3, 32, 32, dtype=mc.int64)])
    with pytest.raises(ValueError, match="downloads nothing"):
        mc.models.detection.ssd300_vgg16(weights="COCO_V1")
    with pytest.raises(TypeError, match="score_tresh"), no_init():
        mc.models.detection.fcos_resnet50_fpn(score_tresh=0.3)       # a typo: torchvision ignores it
    with pytest.raises(ValueError, match="num_classes"), no_init():
        mc.models.detection.retinanet_resnet50_fpn(num_classes=0)
