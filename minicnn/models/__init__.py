"""Model architectures, torchvision's names: ``mc.models.lenet5()``."""
from .lenet import LeNet5, lenet5  # noqa: F401
from .registry import get_model, list_models, register_model  # noqa: F401
from .mobilenetv2 import *  # noqa: F401,F403
from .efficientnet import *  # noqa: F401,F403
