"""Detection ops with torchvision.ops' names, arguments and semantics:
box geometry, non-maximum suppression, RoI pooling, the feature pyramid
and the detection losses."""
from .boxes import (box_area, box_iou, generalized_box_iou, box_convert, clip_boxes_to_image,  # noqa: F401
                    remove_small_boxes)
from .nms import nms, batched_nms  # noqa: F401
from .roi_align import roi_align, RoIAlign  # noqa: F401
from .roi_pool import roi_pool, RoIPool  # noqa: F401
from .poolers import MultiScaleRoIAlign  # noqa: F401
from .feature_pyramid_network import (FeaturePyramidNetwork, ExtraFPNBlock, LastLevelMaxPool,  # noqa: F401
                                      LastLevelP6P7)
from .losses import sigmoid_focal_loss, generalized_box_iou_loss  # noqa: F401
