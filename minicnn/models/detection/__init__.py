"""Object detection models with torchvision's names, arguments, module
names and state_dict keys (``mc.models.detection.retinanet_resnet50_fpn()``),
and the pieces they share: the transform (resize, normalize, batch), the
anchor generators, box coders and matchers, detection backbones. Each
builder is also in the model registry (``mc.models.get_model("ssd300_vgg16")``).

A detector takes a list of (3, H, W) float images in [0, 1] (any sizes)
and returns, in eval mode, one dict per image {"boxes" (K, 4) xyxy in the
image's pixels, "scores" (K,), "labels" (K,) int64}; in training mode,
given targets (one dict per image, "boxes" and "labels"), a dict of
losses to sum and backpropagate."""
from .anchor_utils import AnchorGenerator, DefaultBoxGenerator  # noqa: F401
from .backbone_utils import BackboneWithFPN, mobilenet_backbone, resnet_fpn_backbone  # noqa: F401
from .frozen_batch_norm import FrozenBatchNorm2d  # noqa: F401
from .image_list import ImageList  # noqa: F401
from .transform import GeneralizedRCNNTransform  # noqa: F401
from .ssd import *  # noqa: F401,F403
from .ssdlite import *  # noqa: F401,F403
from .retinanet import *  # noqa: F401,F403
from .generalized_rcnn import GeneralizedRCNN  # noqa: F401
from .rpn import *  # noqa: F401,F403
from .roi_heads import *  # noqa: F401,F403
from .faster_rcnn import *  # noqa: F401,F403
from .mask_rcnn import *  # noqa: F401,F403
from .keypoint_rcnn import *  # noqa: F401,F403
from .fcos import *  # noqa: F401,F403
from .yolo import *  # noqa: F401,F403
