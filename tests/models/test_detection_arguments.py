"""Every threshold and count argument of the detector classes (RetinaNet,
FCOS, SSD, Faster R-CNN) is honoured as torchvision honours it: for each
argument, a model built with a value that binds gives torchvision's
detections (float64: same count and labels, boxes and scores to 1e-7
relative) or torchvision's loss dict and gradients (1e-8), and
torchvision's own output with that value differs from its output with the
default (so the value really binds: an argument minicnn ignored would
fail the comparison). Then, per family: an image without objects in
training, outputs when nothing is detected, and bad images and targets.

The models are the real detector classes around a tiny two-level
backbone (two strided 3 x 3 convs, 32 channels) with narrow heads, so a
forward costs milliseconds and every argument can get its own model.
Their weights are torchvision's, redrawn as N(0, 1 / fan_in) (biases
N(0, 0.1)) so the scores spread over (0, 1) instead of sitting at the
prior, and copied into minicnn's twin.

The samplers' sizes (rpn_batch_size_per_image, rpn_positive_fraction,
box_*) draw at random, with minicnn's generator: their counts are
compared with torchvision's sampler directly."""
from collections import OrderedDict
from types import SimpleNamespace

import numpy
import pytest
import torch
import torchvision
import torchvision.ops as tv_ops
from torchvision.models.detection import anchor_utils, faster_rcnn, fcos as tv_fcos, retinanet as tv_retinanet
from torchvision.models.detection import _utils as tv_utils, ssd as tv_ssd

import minicnn as mc
from detection_check import (TARGETS, check_bad_images_and_targets, check_detections, check_training, sample_images,
                             target_pair)
from minicnn.models.detection import _utils as det_utils
from minicnn.nn.skip_init import no_init

torch.set_num_threads(1)
det = mc.models.detection
# torchvision's classes under minicnn's flat names.
tv_det = SimpleNamespace(AnchorGenerator=anchor_utils.AnchorGenerator,
                         DefaultBoxGenerator=anchor_utils.DefaultBoxGenerator, RetinaNet=tv_retinanet.RetinaNet,
                         RetinaNetHead=tv_retinanet.RetinaNetHead, FCOS=tv_fcos.FCOS, FCOSHead=tv_fcos.FCOSHead,
                         SSD=tv_ssd.SSD, SSDHead=tv_ssd.SSDHead, FasterRCNN=faster_rcnn.FasterRCNN,
                         TwoMLPHead=faster_rcnn.TwoMLPHead, FastRCNNPredictor=faster_rcnn.FastRCNNPredictor)
SIZES = {"min_size": 64, "max_size": 96}

# mc.ops.nms's NumPy reference (MINICNN_BACKEND=numpy) divides 0 by 0 for
# boxes clipped to zero area (IoU nan: not suppressed, as in torchvision)
# and NumPy warns.
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")


def tiny_backbone(nn, lib):
    """Feature maps "0" (stride 4) and "1" (stride 8), 32 channels, built
    from ``nn`` (torch.nn or mc.nn: the same module names and keys) and
    ``lib`` (torch or minicnn). The first conv also sees the pixel's row
    and column (scaled to [0, 1)): otherwise the anchors over a batch's
    zero padding, seeing zeros only, all score the same, and NMS and top-k
    pick among exact ties in an arbitrary order."""

    class TinyBackbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.c4 = nn.Sequential(nn.Conv2d(5, 32, 3, stride=4, padding=1), nn.ReLU())
            self.c8 = nn.Sequential(nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU())
            self.out_channels = 32

        def forward(self, x):
            n, _, h, w = x.shape
            rows, columns = numpy.mgrid[0:h, 0:w] / max(h, w)
            where = numpy.broadcast_to(numpy.stack([rows, columns])[None], (n, 2, h, w)).astype(numpy.float64)
            a = self.c4(lib.cat([x, lib.from_numpy(where.copy())], 1))
            return OrderedDict([("0", a), ("1", self.c8(a))])

    return TinyBackbone()


def retinanet(nn, lib, d, ops, **kwargs):
    anchors = d.AnchorGenerator(((16,), (32,)), ((0.5, 1.0, 2.0),) * 2)
    return d.RetinaNet(tiny_backbone(nn, lib), num_classes=4, anchor_generator=anchors,
                       head=d.RetinaNetHead(32, 3, 4), **SIZES, **kwargs)


def fcos(nn, lib, d, ops, **kwargs):
    anchors = d.AnchorGenerator(((8,), (16,)), ((1.0,),) * 2)
    return d.FCOS(tiny_backbone(nn, lib), num_classes=4, anchor_generator=anchors,
                  head=d.FCOSHead(32, 1, 4, num_convs=1), **SIZES, **kwargs)


def ssd(nn, lib, d, ops, **kwargs):
    anchors = d.DefaultBoxGenerator([[2], [2, 3]])
    return d.SSD(tiny_backbone(nn, lib), anchors, (64, 64), 4, head=d.SSDHead([32, 32], [4, 6], 4), **kwargs)


def fasterrcnn(nn, lib, d, ops, **kwargs):
    """RPN and RoI heads on both levels; the samplers take every candidate
    (batch sizes above their count), so training does not depend on
    either framework's random permutation."""
    arguments = {**SIZES, "rpn_batch_size_per_image": 100000, "box_batch_size_per_image": 100000, **kwargs}
    anchors = d.AnchorGenerator(((16,), (32,)), ((0.5, 1.0, 2.0),) * 2)
    return d.FasterRCNN(tiny_backbone(nn, lib), rpn_anchor_generator=anchors,
                        box_roi_pool=ops.MultiScaleRoIAlign(["0", "1"], 7, 2),
                        box_head=d.TwoMLPHead(32 * 7 * 7, 32), box_predictor=d.FastRCNNPredictor(32, 4), **arguments)


def twins(build, **kwargs):
    """(minicnn model, torchvision model) from ``build`` with ``kwargs``,
    float64, the same seeded spread-out weights."""
    torch.manual_seed(0)
    tv = build(torch.nn, torch, tv_det, tv_ops, **kwargs)
    with torch.no_grad():
        for p in tv.parameters():
            p.normal_(0.0, (1.0 / p[0].numel()) ** 0.5 if p.dim() > 1 else 0.1)
    with no_init():
        mine = build(mc.nn, mc, det, mc.ops, **kwargs)
    mine.load_state_dict(tv.state_dict())
    return mine.double(), tv.double()


def _tv_detections(tv, images):
    tv.eval()
    with torch.no_grad():
        return tv([torch.from_numpy(i) for i in images])


def _differ(a, b):
    """Whether two lists of torchvision detections differ."""
    return any(x["boxes"].shape != y["boxes"].shape or not torch.equal(x["boxes"], y["boxes"]) for x, y in zip(a, b))


def _tv_losses(tv, images):
    tv.train()
    return {k: float(v.detach()) for k, v in tv([torch.from_numpy(i) for i in images], target_pair()[1]).items()}


EVAL = [(retinanet, {"score_thresh": 0.6}), (retinanet, {"nms_thresh": 0.2}), (retinanet, {"detections_per_img": 7}),
        (retinanet, {"topk_candidates": 20}),
        (fcos, {"score_thresh": 0.53}), (fcos, {"nms_thresh": 0.2}), (fcos, {"detections_per_img": 7}),
        (fcos, {"topk_candidates": 20}),
        (ssd, {"score_thresh": 0.5}), (ssd, {"nms_thresh": 0.2}), (ssd, {"detections_per_img": 7}),
        (ssd, {"topk_candidates": 5}),
        (fasterrcnn, {"rpn_pre_nms_top_n_test": 30}), (fasterrcnn, {"rpn_post_nms_top_n_test": 8}),
        (fasterrcnn, {"rpn_nms_thresh": 0.3}), (fasterrcnn, {"rpn_score_thresh": 0.6}),
        (fasterrcnn, {"box_score_thresh": 0.31}), (fasterrcnn, {"box_nms_thresh": 0.1}),
        (fasterrcnn, {"box_detections_per_img": 7}), (fasterrcnn, {"bbox_reg_weights": (1.0, 2.0, 3.0, 4.0)})]


@pytest.mark.parametrize("build, kwargs", EVAL, ids=[f"{b.__name__}-{next(iter(k))}" for b, k in EVAL])
def test_inference_arguments_are_honoured(build, kwargs):
    images = sample_images()
    default = _tv_detections(twins(build)[1], images)
    mine, tv = twins(build, **kwargs)
    counts = check_detections(mine, tv, images)
    assert all(c > 0 for c in counts)
    assert _differ(_tv_detections(tv, images), default), f"{kwargs} does not bind"


TRAIN = [(retinanet, {"fg_iou_thresh": 0.3, "bg_iou_thresh": 0.2}),
         (fcos, {"center_sampling_radius": 0.7}),
         (ssd, {"iou_thresh": 0.3}), (ssd, {"positive_fraction": 0.5}),
         (fasterrcnn, {"rpn_fg_iou_thresh": 0.5, "rpn_bg_iou_thresh": 0.2}),
         (fasterrcnn, {"rpn_pre_nms_top_n_train": 30}), (fasterrcnn, {"rpn_post_nms_top_n_train": 8}),
         (fasterrcnn, {"box_fg_iou_thresh": 0.3, "box_bg_iou_thresh": 0.2}),
         (fasterrcnn, {"bbox_reg_weights": (1.0, 2.0, 3.0, 4.0)})]


@pytest.mark.parametrize("build, kwargs", TRAIN, ids=[f"{b.__name__}-{next(iter(k))}" for b, k in TRAIN])
def test_training_arguments_are_honoured(build, kwargs):
    images = sample_images()
    default = _tv_losses(twins(build)[1], images)
    mine, tv = twins(build, **kwargs)
    check_training(mine, tv, images)
    assert _tv_losses(tv, images) != default, f"{kwargs} does not bind"


@pytest.mark.parametrize("batch_size, fraction", [(8, 0.25), (20, 0.5), (100, 0.9), (3, 0.0)])
def test_sampler_takes_torchvisions_numbers_of_positives_and_negatives(batch_size, fraction):
    """BalancedPositiveNegativeSampler (the RPN's rpn_batch_size_per_image /
    rpn_positive_fraction, the RoI heads' box_* ones): per image, as many
    positives (matched index >= 1) and negatives (0) as torchvision's,
    drawn from those (never an ignored -1), reproducibly under
    mc.manual_seed. The draw itself uses minicnn's generator, so which
    ones are picked differs from torchvision (the models' comparisons use
    batch sizes that take every candidate)."""
    rng = numpy.random.default_rng(7)
    matched = [rng.integers(-1, 4, 60), rng.integers(-1, 1, 30), numpy.full(10, 2)]
    ours = det_utils.BalancedPositiveNegativeSampler(batch_size, fraction)
    theirs = tv_utils.BalancedPositiveNegativeSampler(batch_size, fraction)
    mc.manual_seed(3)
    pos, neg = ours([mc.from_numpy(m) for m in matched])
    tv_pos, tv_neg = theirs([torch.from_numpy(m) for m in matched])
    for m, p, n, tp, tn in zip(matched, pos, neg, tv_pos, tv_neg):
        p, n = p.numpy().astype(bool), n.numpy().astype(bool)
        assert (p.sum(), n.sum()) == (int(tp.sum()), int(tn.sum()))
        assert (m[p] >= 1).all() and (m[n] == 0).all()
    mc.manual_seed(3)
    again = ours([mc.from_numpy(m) for m in matched])
    for a, b in zip(pos + neg, again[0] + again[1]):
        numpy.testing.assert_array_equal(a.numpy(), b.numpy())


FAMILIES = [retinanet, fcos, ssd, fasterrcnn]


@pytest.mark.parametrize("build", FAMILIES, ids=[b.__name__ for b in FAMILIES])
def test_an_image_without_objects_trains_as_in_torchvision(build):
    """An empty box list (every anchor / proposal of that image
    background): torchvision's losses and gradients."""
    mine, tv = twins(build)
    check_training(mine, tv, sample_images(), targets=[{"boxes": [], "labels": []}, TARGETS[1]])


NOTHING = {retinanet: {"score_thresh": 1.0}, fcos: {"score_thresh": 1.0}, ssd: {"score_thresh": 1.0},
           fasterrcnn: {"box_score_thresh": 1.0}}


@pytest.mark.parametrize("build", FAMILIES, ids=[b.__name__ for b in FAMILIES])
def test_no_detections_give_torchvisions_empty_outputs(build):
    """A threshold nothing passes: per image, torchvision's keys with empty
    tensors of its shapes and dtypes."""
    images = sample_images()
    mine, tv = twins(build, **NOTHING[build])
    mine.eval()
    with mc.no_grad():
        ours = mine([mc.from_numpy(i.copy()) for i in images])
    for a, b in zip(ours, _tv_detections(tv, images)):
        assert sorted(a) == sorted(b)
        for key in b:
            assert a[key].shape == tuple(b[key].shape) and a[key].shape[0] == 0, key
            assert a[key].dtype == numpy.dtype(str(b[key].dtype).replace("torch.", "")), key


@pytest.mark.parametrize("build", FAMILIES, ids=[b.__name__ for b in FAMILIES])
def test_bad_images_and_targets_are_refused(build):
    """detection_check.check_bad_images_and_targets: clear errors where
    torchvision asserts, fails deep inside, or (for miscounted targets
    and labels) goes on."""
    check_bad_images_and_targets(twins(build)[0])


BUILDERS = ["fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2", "fasterrcnn_mobilenet_v3_large_fpn",
            "fasterrcnn_mobilenet_v3_large_320_fpn", "retinanet_resnet50_fpn", "retinanet_resnet50_fpn_v2",
            "fcos_resnet50_fpn", "ssd300_vgg16", "ssdlite320_mobilenet_v3_large", "maskrcnn_resnet50_fpn",
            "maskrcnn_resnet50_fpn_v2", "keypointrcnn_resnet50_fpn"]
_MATCHER = ["high_threshold", "low_threshold", "allow_low_quality_matches"]
_SAMPLER = ["batch_size_per_image", "positive_fraction"]
_POOL = ["featmap_names", "output_size", "sampling_ratio"]
SETTINGS = (["score_thresh", "nms_thresh", "detections_per_img", "topk_candidates", "center_sampling_radius",
             "neg_to_pos_ratio", "box_coder.weights", "box_coder.bbox_xform_clip", "box_coder.normalize_by_size"]
            + [f"proposal_matcher.{a}" for a in _MATCHER]
            + [f"transform.{a}" for a in ["min_size", "max_size", "image_mean", "image_std", "size_divisible",
                                          "fixed_size"]]
            + [f"{g}.{a}" for g in ("anchor_generator", "rpn.anchor_generator")
               for a in ["sizes", "aspect_ratios", "scales", "steps", "clip"]]
            + [f"rpn.{a}" for a in ["_pre_nms_top_n", "_post_nms_top_n", "nms_thresh", "score_thresh", "min_size",
                                    "box_coder.weights"]]
            + [f"{h}.proposal_matcher.{a}" for h in ("rpn", "roi_heads") for a in _MATCHER]
            + [f"{h}.fg_bg_sampler.{a}" for h in ("rpn", "roi_heads") for a in _SAMPLER]
            + [f"roi_heads.{a}" for a in ["score_thresh", "nms_thresh", "detections_per_img", "box_coder.weights"]]
            + [f"roi_heads.{p}.{a}" for p in ("box_roi_pool", "mask_roi_pool", "keypoint_roi_pool") for a in _POOL])


MISSING = object()


def _setting(model, path):
    """The value at ``path`` (dotted attributes) as plain Python (tuples
    as lists), or MISSING where the model has no such attribute."""
    for name in path.split("."):
        if not hasattr(model, name):
            return MISSING
        model = getattr(model, name)
    if isinstance(model, dict):
        return {k: _plain(v) for k, v in model.items()}
    return _plain(model)


def _plain(value):
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value.item() if hasattr(value, "item") else value


@pytest.mark.parametrize("name", BUILDERS)
def test_builders_defaults_are_torchvisions(name):
    """Each builder's settings (thresholds, top-n, samplers, matchers, box
    coders, anchors, transform sizes and normalisation, RoI pools) as
    torchvision's builder sets them (its model built on the meta device:
    no memory, no initialisation). The comparisons above use the classes'
    arguments; this checks the builders' defaults."""
    with torch.device("meta"):
        tv = torchvision.models.get_model(name, weights=None, weights_backbone=None)
    with no_init():
        mine = mc.models.get_model(name)
    compared = 0
    for path in SETTINGS:
        expected = _setting(tv, path)
        if expected is MISSING:
            continue
        assert _setting(mine, path) == expected, path
        compared += 1
    assert compared >= 13
