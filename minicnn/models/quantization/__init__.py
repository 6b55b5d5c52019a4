"""Quantizable classification models, torchvision's
``torchvision.models.quantization``: the float architectures with
QuantStub / DeQuantStub around them, FloatFunctional modules for the adds,
products and concatenations, and ``fuse_model()``. ``quantize=True``
returns the int8 model, quantized from float weights on the caller's
calibration batches (see :func:`quantize_model`): minicnn has no
downloadable int8 weights."""
from .resnet import *  # noqa: F401,F403
from .mobilenetv2 import *  # noqa: F401,F403
from .mobilenetv3 import *  # noqa: F401,F403
from .shufflenetv2 import *  # noqa: F401,F403
from .googlenet import *  # noqa: F401,F403
from .inception import *  # noqa: F401,F403
from .utils import quantize_model  # noqa: F401
