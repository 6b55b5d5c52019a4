"""Semantic segmentation models, torchvision's names and state_dict keys
(``mc.models.segmentation.fcn_resnet50()``), and the book's small FCN-8s
(``fcn8s_small``). Every builder is also in the model registry
(``mc.models.get_model("deeplabv3_resnet50")``)."""
from .fcn import *  # noqa: F401,F403
from .deeplabv3 import *  # noqa: F401,F403
from .lraspp import *  # noqa: F401,F403
from .fcn8s import *  # noqa: F401,F403
