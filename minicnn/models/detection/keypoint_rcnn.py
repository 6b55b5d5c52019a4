"""Keypoint R-CNN (He et al. 2017, Mask R-CNN's keypoint variant) as
torchvision builds it: the module names, arguments, defaults, state_dict
keys and outputs of ``torchvision.models.detection.keypoint_rcnn``.

Faster R-CNN (faster_rcnn.py) with a keypoint branch in its RoIHeads: 14
x 14 features of each proposal through ``KeypointRCNNHeads`` (eight 3x3
convs of 512 + ReLU) and ``KeypointRCNNPredictor`` (a 4x4 stride-2
transposed conv, then x2 bilinear upsampling): one 56 x 56 heatmap per
keypoint. Training adds "loss_keypoint" (targets need "keypoints"
(K, P, 3) float32, (x, y, visibility)); eval adds "keypoints" (D, P, 3)
and "keypoints_scores" (D, P) (roi_heads.heatmaps_to_keypoints).

``keypointrcnn_resnet50_fpn``: 2 classes (background, person), 17
keypoints (COCO's), images resized with a shorter side drawn from 640 ..
800 in training and 800 in eval; 59.1M parameters.

Differences from torchvision: as faster_rcnn.py says (``weights`` and
``weights_backbone`` must be None).
"""
from ..registry import register_model
from .faster_rcnn import FasterRCNN, _rcnn_arguments, _resnet50_fpn, _roi_pool
from .roi_heads import KeypointRCNNHeads, KeypointRCNNPredictor

__all__ = ["KeypointRCNN", "keypointrcnn_resnet50_fpn"]


class KeypointRCNN(FasterRCNN):
    """FasterRCNN's arguments (``min_size`` default (640, ..., 800)), then
    ``keypoint_roi_pool`` (default a 14 x 14 MultiScaleRoIAlign),
    ``keypoint_head``, ``keypoint_predictor`` and ``num_keypoints``
    (default 17)."""

    def __init__(self, backbone, num_classes=None, min_size=None, max_size=1333, image_mean=None, image_std=None,
                 rpn_anchor_generator=None, rpn_head=None, rpn_pre_nms_top_n_train=2000, rpn_pre_nms_top_n_test=1000,
                 rpn_post_nms_top_n_train=2000, rpn_post_nms_top_n_test=1000, rpn_nms_thresh=0.7,
                 rpn_fg_iou_thresh=0.7, rpn_bg_iou_thresh=0.3, rpn_batch_size_per_image=256, rpn_positive_fraction=0.5,
                 rpn_score_thresh=0.0, box_roi_pool=None, box_head=None, box_predictor=None, box_score_thresh=0.05,
                 box_nms_thresh=0.5, box_detections_per_img=100, box_fg_iou_thresh=0.5, box_bg_iou_thresh=0.5,
                 box_batch_size_per_image=512, box_positive_fraction=0.25, bbox_reg_weights=None,
                 keypoint_roi_pool=None, keypoint_head=None, keypoint_predictor=None, num_keypoints=None, **kwargs):
        keypoint_roi_pool = _roi_pool(keypoint_roi_pool, "keypoint_roi_pool", 14)
        if min_size is None:
            min_size = (640, 672, 704, 736, 768, 800)
        if num_keypoints is not None and keypoint_predictor is not None:
            raise ValueError("num_keypoints should be None when keypoint_predictor is specified")
        if num_keypoints is None:
            num_keypoints = 17
        out_channels = backbone.out_channels
        if keypoint_head is None:
            keypoint_head = KeypointRCNNHeads(out_channels, tuple(512 for _ in range(8)))
        if keypoint_predictor is None:
            keypoint_predictor = KeypointRCNNPredictor(512, num_keypoints)
        super().__init__(
            backbone, num_classes, min_size, max_size, image_mean, image_std, rpn_anchor_generator, rpn_head,
            rpn_pre_nms_top_n_train, rpn_pre_nms_top_n_test, rpn_post_nms_top_n_train, rpn_post_nms_top_n_test,
            rpn_nms_thresh, rpn_fg_iou_thresh, rpn_bg_iou_thresh, rpn_batch_size_per_image, rpn_positive_fraction,
            rpn_score_thresh, box_roi_pool, box_head, box_predictor, box_score_thresh, box_nms_thresh,
            box_detections_per_img, box_fg_iou_thresh, box_bg_iou_thresh, box_batch_size_per_image,
            box_positive_fraction, bbox_reg_weights, **kwargs)
        self.roi_heads.keypoint_roi_pool = keypoint_roi_pool
        self.roi_heads.keypoint_head = keypoint_head
        self.roi_heads.keypoint_predictor = keypoint_predictor


@register_model
def keypointrcnn_resnet50_fpn(*, weights=None, progress=True, num_classes=None, num_keypoints=None,
                              weights_backbone=None, trainable_backbone_layers=None, **kwargs):
    """Keypoint R-CNN, ResNet-50-FPN backbone, 59.1M parameters (2
    classes, 17 keypoints); ``kwargs`` go to KeypointRCNN."""
    num_classes, trainable = _rcnn_arguments("keypointrcnn_resnet50_fpn", weights, weights_backbone, num_classes,
                                             trainable_backbone_layers, default_classes=2)
    if num_keypoints is None:
        num_keypoints = 17
    return KeypointRCNN(_resnet50_fpn(trainable, v2=False), num_classes, num_keypoints=num_keypoints, **kwargs)
