"""``ImageList``: a batch of images of different sizes, padded into one
tensor, with the size each image had before padding (torchvision's
``torchvision.models.detection.image_list.ImageList``)."""

__all__ = ["ImageList"]


class ImageList:
    """``tensors`` (N, C, H_pad, W_pad), the images zero-padded at the
    bottom and right; ``image_sizes`` [(h_i, w_i)], each image's own size,
    so boxes can be clipped to the image and not to the padding."""

    def __init__(self, tensors, image_sizes):
        self.tensors = tensors
        self.image_sizes = image_sizes

    def to(self, device):
        return ImageList(self.tensors.to(device), self.image_sizes)
