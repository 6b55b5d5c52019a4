"""``GeneralizedRCNN``: the skeleton every R-CNN detector shares
(torchvision's ``torchvision.models.detection.generalized_rcnn``):

    images -> transform -> backbone -> rpn (proposals) -> roi_heads
           -> detections scaled back to the original images

forward(images, targets=None): ``images`` a list of (3, H, W) float
images in [0, 1] (any sizes); in training ``targets`` one dict per image
with "boxes" (K, 4) xyxy in pixels and int64 "labels" (K,) (and "masks"
(K, H, W) uint8 for Mask R-CNN, "keypoints" (K, P, 3) float32 for
Keypoint R-CNN), and the result is the dict of losses of the RPN and the
heads; in eval a list of dicts {"boxes", "labels", "scores"} (and
"masks" (D, 1, H, W) probabilities pasted into the original image,
"keypoints" (D, P, 3) and "keypoints_scores" (D, P)).

Differences from torchvision: bad input raises ValueError / TypeError
where torchvision asserts; the masks are pasted here rather than in
GeneralizedRCNNTransform.postprocess.
"""
from collections import OrderedDict

from ... import nn
from ...tensor import Tensor
from . import _utils as det_utils
from .roi_heads import paste_masks_in_image

__all__ = ["GeneralizedRCNN"]


class GeneralizedRCNN(nn.Module):
    """``backbone`` (a map or a dict of maps), ``rpn``
    (RegionProposalNetwork), ``roi_heads`` (RoIHeads), ``transform``
    (GeneralizedRCNNTransform), run as the module docstring says."""

    def __init__(self, backbone, rpn, roi_heads, transform):
        super().__init__()
        self.transform = transform
        self.backbone = backbone
        self.rpn = rpn
        self.roi_heads = roi_heads

    def forward(self, images, targets=None):
        image_list, targets, original_image_sizes = det_utils.transform_inputs(self, images, targets)
        features = self.backbone(image_list.tensors)
        if isinstance(features, Tensor):
            features = OrderedDict([("0", features)])
        proposals, proposal_losses = self.rpn(image_list, features, targets)
        detections, detector_losses = self.roi_heads(features, proposals, image_list.image_sizes, targets)
        if self.training:
            return {**detector_losses, **proposal_losses}
        detections = self.transform.postprocess(detections, image_list.image_sizes, original_image_sizes)
        for detection, original_size in zip(detections, original_image_sizes):
            if "masks" in detection:
                detection["masks"] = paste_masks_in_image(detection["masks"], detection["boxes"], original_size)
        return detections
