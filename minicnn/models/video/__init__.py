"""Video classification models, torchvision's names and state_dict keys
(``mc.models.video.r3d_18()``): the video ResNets R3D, MC3 and R(2+1)D
(``resnet.py``) and S3D (``s3d.py``), for (N, 3, T, H, W) clips. Every
builder is also in the model registry (``mc.models.get_model("s3d")``)."""
from .resnet import *  # noqa: F401,F403
from .s3d import *  # noqa: F401,F403
