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
import numpy
import pytest
import torch
import torchvision

import minicnn as mc
from minicnn.nn.skip_init import no_init
from zoo_check import assert_relative

torch.set_num_threads(1)

# mc.ops.nms's NumPy reference (MINICNN_BACKEND=numpy) divides 0 by 0 for
# boxes clipped to zero area (IoU nan: not suppressed, as in torchvision)
# and NumPy warns.
ZERO_AREA_NMS = pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")

IMAGES = [(3, 90, 120), (3, 110, 100)]
TARGETS = [{"boxes": [[10.0, 20.0, 60.0, 70.0], [30.0, 5.0, 80.0, 50.0]], "labels": [1, 3]},
           {"boxes": [[5.0, 5.0, 95.0, 100.0]], "labels": [2]}]


def _pair(name, kaiming=False, **kwargs):
    """(minicnn model, torchvision model) in float64 with torchvision's
    seeded random weights; ``kaiming`` redraws every conv weight with He's
    normal init first (SSDlite's N(0, 0.03) weights shrink the features to
    1e-14 by the last map: every score ties, and tie order is arbitrary)."""
    torch.manual_seed(0)
    tv = torchvision.models.get_model(name, weights=None, weights_backbone=None, **kwargs)
    if kaiming:
        with torch.no_grad():
            for module in tv.modules():
                if isinstance(module, torch.nn.Conv2d):
                    module.weight.normal_(0.0, (2.0 / module.weight[0].numel()) ** 0.5)
    with no_init():
        mine = mc.models.get_model(name, **kwargs)
    assert list(mine.state_dict()) == list(tv.state_dict())
    mine.load_state_dict(tv.state_dict())
    return mine.double(), tv.double()


def _images():
    rng = numpy.random.default_rng(0)
    return [rng.random(shape) for shape in IMAGES]


def _check_detections(mine, tv, images):
    mine.eval()
    tv.eval()
    with mc.no_grad():
        ours = mine([mc.from_numpy(i.copy()) for i in images])
    with torch.no_grad():
        theirs = tv([torch.from_numpy(i) for i in images])
    counts = []
    for a, b in zip(ours, theirs):
        assert sorted(a) == sorted(b)
        assert len(a["boxes"]) == len(b["boxes"])
        counts.append(len(b["boxes"]))
        if len(b["boxes"]):
            numpy.testing.assert_array_equal(a["labels"].numpy(), b["labels"].numpy())
            assert_relative(a["boxes"].numpy(), b["boxes"].numpy(), 1e-7, "boxes")
            assert_relative(a["scores"].numpy(), b["scores"].numpy(), 1e-7, "scores")
    return counts


def _check_training(mine, tv, images, grad_rtol=1e-9, targets=TARGETS):
    mine.train()
    tv.train()
    for p in list(mine.parameters()) + list(tv.parameters()):
        p.grad = None
    boxes = [numpy.asarray(t["boxes"], dtype=numpy.float64).reshape(-1, 4) for t in targets]
    labels = [numpy.asarray(t["labels"], dtype=numpy.int64) for t in targets]
    ours = mine([mc.from_numpy(i.copy()) for i in images],
                [{"boxes": mc.from_numpy(b.copy()), "labels": mc.from_numpy(c.copy())} for b, c in zip(boxes, labels)])
    theirs = tv([torch.from_numpy(i) for i in images],
                [{"boxes": torch.from_numpy(b), "labels": torch.from_numpy(c)} for b, c in zip(boxes, labels)])
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        assert_relative(ours[key].numpy_copy(), theirs[key].detach().numpy(), 1e-8, f"loss {key}")
    sum(ours.values()).backward()
    sum(theirs.values()).backward()
    tv_params = dict(tv.named_parameters())
    floor = 1e-6 * max(float(p.grad.abs().max()) for p in tv_params.values())
    for name, p in mine.named_parameters():
        assert_relative(p.grad.numpy(), tv_params[name].grad.numpy(), grad_rtol, f"gradient of {name}", floor=floor)


@pytest.mark.slow
@ZERO_AREA_NMS
def test_retinanet_detections_losses_and_gradients():
    mine, tv = _pair("retinanet_resnet50_fpn", num_classes=4, min_size=64, max_size=80, score_thresh=0.01005)
    images = _images()
    many = _check_detections(mine, tv, images)
    assert all(c > 10 for c in many)
    for m in (mine, tv):
        m.score_thresh, m.detections_per_img = 0.0102, 20
    few = _check_detections(mine, tv, images)
    assert all(0 < c <= 20 for c in few) and few != many
    _check_training(mine, tv, images)


@pytest.mark.slow
def test_retinanet_v2_losses_and_gradients():
    """v2: P6 from C5, GroupNorm in the head, the GIoU box loss."""
    mine, tv = _pair("retinanet_resnet50_fpn_v2", num_classes=4, min_size=64, max_size=80)
    _check_training(mine, tv, _images())


@pytest.mark.slow
@ZERO_AREA_NMS
def test_ssdlite_detections():
    """SSD's post-processing (softmax, per-class top-k, NMS) on SSDlite at
    160 x 160, two thresholds."""
    mine, tv = _pair("ssdlite320_mobilenet_v3_large", kaiming=True, num_classes=4, score_thresh=0.5,
                     detections_per_img=50)
    for m in (mine, tv):
        m.transform.fixed_size = (160, 160)
    images = _images()
    assert _check_detections(mine, tv, images) == [50, 50]
    for m in (mine, tv):
        m.score_thresh, m.nms_thresh, m.detections_per_img = 0.9995, 0.3, 300
    few = _check_detections(mine, tv, images)
    assert all(0 < c < 50 for c in few)


@pytest.mark.slow
@ZERO_AREA_NMS
def test_fcos_detections_losses_and_gradients():
    mine, tv = _pair("fcos_resnet50_fpn", num_classes=4, min_size=64, max_size=80, score_thresh=0.1)
    images = _images()
    many = _check_detections(mine, tv, images)
    assert all(c > 10 for c in many)
    for m in (mine, tv):
        m.score_thresh, m.nms_thresh = 0.102, 0.3
    few = _check_detections(mine, tv, images)
    assert all(0 < c for c in few) and few != many
    _check_training(mine, tv, images)


@pytest.mark.slow
def test_ssdlite_losses_and_gradients():
    """SSD's losses (matching, hard negative mining) and gradients, on
    SSDlite at 160 x 160."""
    mine, tv = _pair("ssdlite320_mobilenet_v3_large", kaiming=True, num_classes=4)
    for m in (mine, tv):
        m.transform.fixed_size = (160, 160)
    # The backbone's gradients come back through ~60 batch norms in
    # training mode, several over 3 x 3 or smaller maps of 2 images whose
    # variance is tiny: round-off grows to ~1e-8 relative (in both
    # frameworks; a wrong formula would show as 1e-3), hence 1e-7 here.
    _check_training(mine, tv, _images(), grad_rtol=1e-7)
    # An image without objects: all its anchors are background.
    _check_training(mine, tv, _images(), grad_rtol=1e-7, targets=[{"boxes": [], "labels": []}, TARGETS[1]])


@pytest.mark.parametrize("name, millions", [("ssd300_vgg16", 35_641_826), ("ssdlite320_mobilenet_v3_large", 3_440_060),
                                            ("retinanet_resnet50_fpn", 34_014_999),
                                            ("retinanet_resnet50_fpn_v2", 38_198_935),
                                            ("fcos_resnet50_fpn", 32_269_600)])
def test_parameter_counts(name, millions):
    """torchvision's table (counted directly: mc.summary runs a model on
    one tensor, a detector takes a list of images). The table's RetinaNet
    v1 and FCOS have a pretrained backbone with FrozenBatchNorm2d, whose scales and
    shifts are buffers: without pretrained weights they are BatchNorm2d
    parameters, 53,120 more."""
    with no_init():
        model = mc.models.get_model(name)
    total = sum(p.numel() for p in model.parameters())
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
    model.eval()
    with pytest.raises(ValueError, match="3d tensors"):
        model([mc.zeros(1, 3, 32, 32)])
    with pytest.raises(TypeError, match="list"):
        model(mc.zeros(3, 32, 32))
    with pytest.raises(ValueError, match="images is an empty list"):
        model([])
    with pytest.raises(TypeError, match="floating"):
        model([mc.zeros(3, 32, 32, dtype=mc.int64)])
    model.train()
    image = [mc.zeros(3, 32, 32)]
    with pytest.raises(ValueError, match="targets should not be None"):
        model(image)
    with pytest.raises(ValueError, match="missing the key 'labels'"):
        model(image, [{"boxes": mc.tensor([[1.0, 1.0, 5.0, 5.0]])}])
    with pytest.raises(ValueError, match=r"shape \[N, 4\]"):
        model(image, [{"boxes": mc.tensor([1.0, 1.0, 5.0, 5.0]), "labels": mc.tensor([1])}])
    with pytest.raises(ValueError, match="positive height and width.*index 0"):
        model(image, [{"boxes": mc.tensor([[6.0, 1.0, 5.0, 5.0]]), "labels": mc.tensor([1])}])
    with pytest.raises(ValueError, match="downloads nothing"):
        mc.models.detection.ssd300_vgg16(weights="COCO_V1")
    with pytest.raises(TypeError, match="score_tresh"), no_init():
        mc.models.detection.fcos_resnet50_fpn(score_tresh=0.3)       # a typo: torchvision ignores it
    with pytest.raises(ValueError, match="num_classes"), no_init():
        mc.models.detection.retinanet_resnet50_fpn(num_classes=0)
