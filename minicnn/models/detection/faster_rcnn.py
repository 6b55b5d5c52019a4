"""Faster R-CNN (Ren et al. 2015, "Faster R-CNN: Towards Real-Time Object
Detection with Region Proposal Networks") as torchvision builds it: the
module names, arguments, defaults, state_dict keys and outputs of
``torchvision.models.detection.faster_rcnn``.

A two-stage detector: a region proposal network (rpn.py) proposes boxes
that may hold an object, then RoIHeads (roi_heads.py) pools a 7 x 7
feature per proposal from the FPN level that suits its size, classifies
it and refines its box per class. GeneralizedRCNN (generalized_rcnn.py)
runs the whole.

* ``fasterrcnn_resnet50_fpn``: ResNet-50 layer1..layer4 into a
  256-channel FPN with a max-pooled P6 (strides 4 to 64); anchors of
  sizes 32..512 (one per level), aspect ratios 1:2, 1:1, 2:1; box head
  TwoMLPHead (two fully connected layers of 1024). 41.8M parameters.
* ``fasterrcnn_resnet50_fpn_v2`` (Li et al. 2021, "Benchmarking
  Detection Transfer Learning with Vision Transformers"): BatchNorm in
  the FPN, two convs in the RPN head, a box head of four 3x3
  conv-BatchNorm-ReLU and one Linear (FastRCNNConvFCHead). 43.7M.
* ``fasterrcnn_mobilenet_v3_large_fpn`` / ``_320_fpn``: MobileNetV3-Large's
  last two stages into an FPN (3 levels, anchors 32..512 at each level);
  the 320 version resizes images to 320 (max 640) and keeps 150
  proposals. Both drop proposals scoring under 0.05. 19.4M.

Differences from torchvision: ``weights`` and ``weights_backbone`` must be
None (minicnn downloads nothing), so, as torchvision does without
pretrained weights, the backbones use BatchNorm2d and every stage is
trainable; bad input raises ValueError / TypeError where torchvision
asserts.
"""
from ... import nn
from ...ops import MultiScaleRoIAlign
from .._layers import _check_weights
from . import _utils as det_utils
from ..mobilenetv3 import mobilenet_v3_large
from ..registry import register_model
from ..resnet import resnet50
from .anchor_utils import AnchorGenerator
from .backbone_utils import _mobilenet_extractor, _resnet_fpn_extractor, _validate_trainable_layers
from .generalized_rcnn import GeneralizedRCNN
from .roi_heads import FastRCNNConvFCHead, FastRCNNPredictor, RoIHeads, TwoMLPHead
from .rpn import RegionProposalNetwork, RPNHead
from .ssd import check_num_classes

__all__ = ["FasterRCNN", "fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2",
           "fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_mobilenet_v3_large_320_fpn"]


def _default_anchorgen():
    anchor_sizes = ((32,), (64,), (128,), (256,), (512,))
    return AnchorGenerator(anchor_sizes, ((0.5, 1.0, 2.0),) * len(anchor_sizes))


class FasterRCNN(GeneralizedRCNN):
    """Faster R-CNN around ``backbone`` (with ``out_channels``), as the
    module docstring says. ``num_classes`` counts the background (class
    0); the rpn_* arguments configure the RegionProposalNetwork, the
    box_* ones the RoIHeads, ``min_size`` / ``max_size`` / ``image_mean``
    / ``image_std`` (and ``kwargs``) the GeneralizedRCNNTransform."""

    def __init__(self, backbone, num_classes=None, min_size=800, max_size=1333, image_mean=None, image_std=None,
                 rpn_anchor_generator=None, rpn_head=None, rpn_pre_nms_top_n_train=2000, rpn_pre_nms_top_n_test=1000,
                 rpn_post_nms_top_n_train=2000, rpn_post_nms_top_n_test=1000, rpn_nms_thresh=0.7,
                 rpn_fg_iou_thresh=0.7, rpn_bg_iou_thresh=0.3, rpn_batch_size_per_image=256, rpn_positive_fraction=0.5,
                 rpn_score_thresh=0.0, box_roi_pool=None, box_head=None, box_predictor=None, box_score_thresh=0.05,
                 box_nms_thresh=0.5, box_detections_per_img=100, box_fg_iou_thresh=0.5, box_bg_iou_thresh=0.5,
                 box_batch_size_per_image=512, box_positive_fraction=0.25, bbox_reg_weights=None, **kwargs):
        det_utils.check_backbone(backbone)
        det_utils.check_anchor_generator(rpn_anchor_generator, "rpn_anchor_generator")
        box_roi_pool = _roi_pool(box_roi_pool, "box_roi_pool", 7)
        if num_classes is not None and box_predictor is not None:
            raise ValueError("num_classes should be None when box_predictor is specified")
        if num_classes is None and box_predictor is None:
            raise ValueError("num_classes should not be None when box_predictor is not specified")
        out_channels = backbone.out_channels
        if rpn_anchor_generator is None:
            rpn_anchor_generator = _default_anchorgen()
        if rpn_head is None:
            rpn_head = RPNHead(out_channels, rpn_anchor_generator.num_anchors_per_location()[0])
        rpn = RegionProposalNetwork(
            rpn_anchor_generator, rpn_head, rpn_fg_iou_thresh, rpn_bg_iou_thresh, rpn_batch_size_per_image,
            rpn_positive_fraction, {"training": rpn_pre_nms_top_n_train, "testing": rpn_pre_nms_top_n_test},
            {"training": rpn_post_nms_top_n_train, "testing": rpn_post_nms_top_n_test}, rpn_nms_thresh,
            score_thresh=rpn_score_thresh)
        representation_size = 1024
        if box_head is None:
            resolution = box_roi_pool.output_size[0]
            box_head = TwoMLPHead(out_channels * resolution ** 2, representation_size)
        if box_predictor is None:
            box_predictor = FastRCNNPredictor(representation_size, num_classes)
        roi_heads = RoIHeads(box_roi_pool, box_head, box_predictor, box_fg_iou_thresh, box_bg_iou_thresh,
                             box_batch_size_per_image, box_positive_fraction, bbox_reg_weights, box_score_thresh,
                             box_nms_thresh, box_detections_per_img)
        transform = det_utils.imagenet_transform(min_size, max_size, image_mean, image_std, **kwargs)
        super().__init__(backbone, rpn, roi_heads, transform)


def _rcnn_arguments(builder, weights, weights_backbone, num_classes, trainable_backbone_layers, max_value=5,
                    default_classes=91):
    """(num_classes, trainable layers) of a builder without pretrained weights."""
    _check_weights(weights, builder)
    _check_weights(weights_backbone, builder + " (weights_backbone)")
    num_classes = default_classes if num_classes is None else check_num_classes(builder, num_classes)
    return num_classes, _validate_trainable_layers(False, trainable_backbone_layers, max_value, 3)


def _roi_pool(roi_pool, name, output_size):
    """The argument ``name``: ``roi_pool`` if given (TypeError unless a
    MultiScaleRoIAlign), else the default one, ``output_size`` squared
    over the FPN levels "0" to "3", as torchvision's R-CNNs build it."""
    if roi_pool is None:
        return MultiScaleRoIAlign(featmap_names=["0", "1", "2", "3"], output_size=output_size, sampling_ratio=2)
    if not isinstance(roi_pool, MultiScaleRoIAlign):
        raise TypeError(f"{name} should be of type MultiScaleRoIAlign or None instead of {type(roi_pool)}")
    return roi_pool


def _resnet50_fpn(trainable, v2):
    """ResNet-50 with BatchNorm2d into an FPN (v2: with BatchNorm2d too)."""
    return _resnet_fpn_extractor(resnet50(norm_layer=nn.BatchNorm2d), trainable,
                                 norm_layer=nn.BatchNorm2d if v2 else None)


def _v2_heads(backbone):
    """The v2 recipe's anchor generator, two-conv RPN head and conv box head."""
    anchor_generator = _default_anchorgen()
    rpn_head = RPNHead(backbone.out_channels, anchor_generator.num_anchors_per_location()[0], conv_depth=2)
    box_head = FastRCNNConvFCHead((backbone.out_channels, 7, 7), [256, 256, 256, 256], [1024],
                                  norm_layer=nn.BatchNorm2d)
    return {"rpn_anchor_generator": anchor_generator, "rpn_head": rpn_head, "box_head": box_head}


@register_model
def fasterrcnn_resnet50_fpn(*, weights=None, progress=True, num_classes=None, weights_backbone=None,
                            trainable_backbone_layers=None, **kwargs):
    """Faster R-CNN, ResNet-50-FPN backbone, 41.8M parameters (91
    classes); ``kwargs`` go to FasterRCNN."""
    num_classes, trainable = _rcnn_arguments("fasterrcnn_resnet50_fpn", weights, weights_backbone, num_classes,
                                             trainable_backbone_layers)
    return FasterRCNN(_resnet50_fpn(trainable, v2=False), num_classes=num_classes, **kwargs)


@register_model
def fasterrcnn_resnet50_fpn_v2(*, weights=None, progress=True, num_classes=None, weights_backbone=None,
                               trainable_backbone_layers=None, **kwargs):
    """Faster R-CNN v2 (BatchNorm FPN, two-conv RPN head, conv box head),
    43.7M parameters (91 classes)."""
    num_classes, trainable = _rcnn_arguments("fasterrcnn_resnet50_fpn_v2", weights, weights_backbone, num_classes,
                                             trainable_backbone_layers)
    backbone = _resnet50_fpn(trainable, v2=True)
    return FasterRCNN(backbone, num_classes=num_classes, **_v2_heads(backbone), **kwargs)


def _fasterrcnn_mobilenet_v3_large_fpn(builder, weights, num_classes, weights_backbone, trainable_backbone_layers,
                                       **kwargs):
    num_classes, trainable = _rcnn_arguments(builder, weights, weights_backbone, num_classes,
                                             trainable_backbone_layers, max_value=6)
    backbone = _mobilenet_extractor(mobilenet_v3_large(norm_layer=nn.BatchNorm2d), True, trainable)
    anchor_sizes = ((32, 64, 128, 256, 512),) * 3
    anchor_generator = AnchorGenerator(anchor_sizes, ((0.5, 1.0, 2.0),) * len(anchor_sizes))
    return FasterRCNN(backbone, num_classes, rpn_anchor_generator=anchor_generator, **kwargs)


@register_model
def fasterrcnn_mobilenet_v3_large_320_fpn(*, weights=None, progress=True, num_classes=None, weights_backbone=None,
                                          trainable_backbone_layers=None, **kwargs):
    """Faster R-CNN, MobileNetV3-Large-FPN backbone, images resized to 320
    (max 640), 150 proposals, 19.4M parameters (91 classes)."""
    defaults = {"min_size": 320, "max_size": 640, "rpn_pre_nms_top_n_test": 150, "rpn_post_nms_top_n_test": 150,
                "rpn_score_thresh": 0.05}
    return _fasterrcnn_mobilenet_v3_large_fpn("fasterrcnn_mobilenet_v3_large_320_fpn", weights, num_classes,
                                              weights_backbone, trainable_backbone_layers, **{**defaults, **kwargs})


@register_model
def fasterrcnn_mobilenet_v3_large_fpn(*, weights=None, progress=True, num_classes=None, weights_backbone=None,
                                      trainable_backbone_layers=None, **kwargs):
    """Faster R-CNN, MobileNetV3-Large-FPN backbone, 19.4M parameters (91
    classes)."""
    return _fasterrcnn_mobilenet_v3_large_fpn("fasterrcnn_mobilenet_v3_large_fpn", weights, num_classes,
                                              weights_backbone, trainable_backbone_layers,
                                              **{"rpn_score_thresh": 0.05, **kwargs})
