"""Model architectures, torchvision's names: ``mc.models.lenet5()``; and the helpers
for classifying images with pretrained ImageNet weights (``imagenet.py``)."""
from .lenet import LeNet5, lenet5  # noqa: F401
from .registry import get_model, list_models, register_model  # noqa: F401
from .mobilenetv2 import *  # noqa: F401,F403
from .mobilenetv3 import *  # noqa: F401,F403
from .shufflenetv2 import *  # noqa: F401,F403
from .mnasnet import *  # noqa: F401,F403
from .efficientnet import *  # noqa: F401,F403
from .googlenet import *  # noqa: F401,F403
from .inception import *  # noqa: F401,F403
from .densenet import *  # noqa: F401,F403
from .book import *  # noqa: F401,F403
from .alexnet import *  # noqa: F401,F403
from .vgg import *  # noqa: F401,F403
from .resnet import *  # noqa: F401,F403
from .squeezenet import *  # noqa: F401,F403
from .regnet import *  # noqa: F401,F403
from .convnext import *  # noqa: F401,F403
from .cifar_resnet import *  # noqa: F401,F403
from .revnet import *  # noqa: F401,F403
from . import segmentation  # noqa: F401
from . import video  # noqa: F401
from . import detection  # noqa: F401
from .segmentation.fcn8s import FCN8sSmall, fcn8s_small  # noqa: F401
from .imagenet import imagenet_categories, imagenet_transforms, decode_predictions, classify  # noqa: F401


def __getattr__(name):
    # mc.models.quantization (quantizable models) imports mc.ao, which
    # loads on first use so that ``import minicnn`` stays fast.
    if name == "quantization":
        import importlib
        return importlib.import_module(".quantization", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
