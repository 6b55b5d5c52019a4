"""Mask R-CNN (He et al. 2017) as torchvision builds it: the module
names, arguments, defaults, state_dict keys and outputs of
``torchvision.models.detection.mask_rcnn``.

Faster R-CNN (faster_rcnn.py) with a third branch in its RoIHeads: 14 x 14
features of each proposal (MultiScaleRoIAlign) through ``MaskRCNNHeads``
(four 3x3 convs of 256 + ReLU) and ``MaskRCNNPredictor`` (a 2x2 stride-2
transposed conv, ReLU, a 1x1 conv): a 28 x 28 mask logit map per class.
Training adds "loss_mask" (targets need "masks" (K, H, W) uint8); eval
adds "masks" (D, 1, H, W): the detected class's mask probabilities
pasted into the original image (roi_heads.paste_masks_in_image).

* ``maskrcnn_resnet50_fpn``: 44.4M parameters (91 classes);
* ``maskrcnn_resnet50_fpn_v2``: Faster R-CNN v2's backbone and heads,
  and BatchNorm in the mask head; 46.4M.

Differences from torchvision: as faster_rcnn.py says (``weights`` and
``weights_backbone`` must be None).
"""
from ... import nn
from ..registry import register_model
from .faster_rcnn import FasterRCNN, _rcnn_arguments, _resnet50_fpn, _roi_pool, _v2_heads
from .roi_heads import MaskRCNNHeads, MaskRCNNPredictor

__all__ = ["MaskRCNN", "maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2"]


class MaskRCNN(FasterRCNN):
    """FasterRCNN's arguments, then ``mask_roi_pool`` (default a 14 x 14
    MultiScaleRoIAlign), ``mask_head`` and ``mask_predictor`` (defaults as
    the module docstring says)."""

    def __init__(self, backbone, num_classes=None, min_size=800, max_size=1333, image_mean=None, image_std=None,
                 rpn_anchor_generator=None, rpn_head=None, rpn_pre_nms_top_n_train=2000, rpn_pre_nms_top_n_test=1000,
                 rpn_post_nms_top_n_train=2000, rpn_post_nms_top_n_test=1000, rpn_nms_thresh=0.7,
                 rpn_fg_iou_thresh=0.7, rpn_bg_iou_thresh=0.3, rpn_batch_size_per_image=256, rpn_positive_fraction=0.5,
                 rpn_score_thresh=0.0, box_roi_pool=None, box_head=None, box_predictor=None, box_score_thresh=0.05,
                 box_nms_thresh=0.5, box_detections_per_img=100, box_fg_iou_thresh=0.5, box_bg_iou_thresh=0.5,
                 box_batch_size_per_image=512, box_positive_fraction=0.25, bbox_reg_weights=None, mask_roi_pool=None,
                 mask_head=None, mask_predictor=None, **kwargs):
        mask_roi_pool = _roi_pool(mask_roi_pool, "mask_roi_pool", 14)
        if num_classes is not None and mask_predictor is not None:
            raise ValueError("num_classes should be None when mask_predictor is specified")
        out_channels = backbone.out_channels
        if mask_head is None:
            mask_head = MaskRCNNHeads(out_channels, (256, 256, 256, 256), 1)
        if mask_predictor is None:
            mask_predictor = MaskRCNNPredictor(256, 256, num_classes)
        super().__init__(
            backbone, num_classes, min_size, max_size, image_mean, image_std, rpn_anchor_generator, rpn_head,
            rpn_pre_nms_top_n_train, rpn_pre_nms_top_n_test, rpn_post_nms_top_n_train, rpn_post_nms_top_n_test,
            rpn_nms_thresh, rpn_fg_iou_thresh, rpn_bg_iou_thresh, rpn_batch_size_per_image, rpn_positive_fraction,
            rpn_score_thresh, box_roi_pool, box_head, box_predictor, box_score_thresh, box_nms_thresh,
            box_detections_per_img, box_fg_iou_thresh, box_bg_iou_thresh, box_batch_size_per_image,
            box_positive_fraction, bbox_reg_weights, **kwargs)
        self.roi_heads.mask_roi_pool = mask_roi_pool
        self.roi_heads.mask_head = mask_head
        self.roi_heads.mask_predictor = mask_predictor


@register_model
def maskrcnn_resnet50_fpn(*, weights=None, progress=True, num_classes=None, weights_backbone=None,
                          trainable_backbone_layers=None, **kwargs):
    """Mask R-CNN, ResNet-50-FPN backbone, 44.4M parameters (91 classes);
    ``kwargs`` go to MaskRCNN."""
    num_classes, trainable = _rcnn_arguments("maskrcnn_resnet50_fpn", weights, weights_backbone, num_classes,
                                             trainable_backbone_layers)
    return MaskRCNN(_resnet50_fpn(trainable, v2=False), num_classes=num_classes, **kwargs)


@register_model
def maskrcnn_resnet50_fpn_v2(*, weights=None, progress=True, num_classes=None, weights_backbone=None,
                             trainable_backbone_layers=None, **kwargs):
    """Mask R-CNN v2 (Faster R-CNN v2 and a BatchNorm mask head), 46.4M
    parameters (91 classes)."""
    num_classes, trainable = _rcnn_arguments("maskrcnn_resnet50_fpn_v2", weights, weights_backbone, num_classes,
                                             trainable_backbone_layers)
    backbone = _resnet50_fpn(trainable, v2=True)
    mask_head = MaskRCNNHeads(backbone.out_channels, [256, 256, 256, 256], 1, norm_layer=nn.BatchNorm2d)
    return MaskRCNN(backbone, num_classes=num_classes, mask_head=mask_head, **_v2_heads(backbone), **kwargs)
