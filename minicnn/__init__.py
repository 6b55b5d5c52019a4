"""minicnn: a convolutional-network engine written from scratch on NumPy.

``import minicnn as mc`` gives a small tensor with reverse-mode autograd
(``mc.tensor``, ``mc.Tensor``, ``mc.no_grad``), the ops in
``mc.nn.functional`` and a numerical gradient checker (``mc.gradcheck``).
"""
from .dtypes import float16, float32, float64, int32, int64, uint8, bool_ as bool  # noqa: F401
from .tensor import Tensor  # noqa: F401
from .autograd import Function, no_grad, enable_grad, set_grad_enabled, is_grad_enabled  # noqa: F401
from .autograd import inference_mode  # noqa: F401
from .creation import (  # noqa: F401
    tensor, as_tensor, from_numpy, zeros, ones, empty, full, arange, linspace, rand, randn, randint,
    randperm, zeros_like, ones_like, empty_like, rand_like, randn_like, full_like)
from .random import manual_seed, seed  # noqa: F401
from .device import Device as device  # noqa: F401
from .gradcheck import gradcheck, GradcheckError  # noqa: F401
from .functional import (  # noqa: F401
    add, sub, mul, div, neg, pow, exp, log, sqrt, abs, clamp, clip, maximum, minimum, where,
    sum, mean, var, std, max, min, amax, amin, argmax, argmin, topk,
    reshape, flatten, permute, transpose, unsqueeze, squeeze, broadcast_to, cat, stack, split,
    chunk, matmul, sigmoid, tanh, relu, softmax, log_softmax, isfinite)
from . import functional, nn  # noqa: F401
from . import optim, utils, datasets, transforms, models  # noqa: F401
from . import cuda  # noqa: F401
from . import distributed  # noqa: F401
from . import explain  # noqa: F401
from . import metrics  # noqa: F401
from . import ops  # noqa: F401
from .serialization import save, load  # noqa: F401
from .summary import summary  # noqa: F401
from .fuse import fuse  # noqa: F401
from .weights import load_weights, save_weights, UnsafeWeightsError  # noqa: F401
from .kernels.registry import set_backend, get_backend  # noqa: F401
from .kernels.cpu.threads import set_num_threads, get_num_threads  # noqa: F401
from .kernels.cpu import allocator as _allocator

# glibc's malloc and NumPy's huge pages set before the first parameter is
# allocated (kernels/cpu/allocator.py; MINICNN_MALLOC_TUNING=0 leaves them).
_allocator.tune()

__version__ = "0.1.0"

_QUANTIZED_NAMES = ("QTensor", "quantize_per_tensor", "quantize_per_channel", "quint8", "qint8", "qint32",
                    "per_tensor_affine", "per_channel_affine", "per_tensor_symmetric", "per_channel_symmetric",
                    "_make_per_tensor_quantized_tensor", "_make_per_channel_quantized_tensor")


def __getattr__(name):
    # mc.viz loads on first use, like torch's lazily imported submodules:
    # its pictures need matplotlib and graphviz, which `import minicnn`
    # must not pull in.
    if name == "viz":
        import importlib
        return importlib.import_module(".viz", __name__)
    # mc.ao (quantized int8 inference) loads on first use too; its public
    # names (mc.quantize_per_tensor, mc.quint8, ...) are torch's top-level ones.
    if name in ("ao", "quantization"):
        import importlib
        return importlib.import_module("." + name, __name__)
    if name in _QUANTIZED_NAMES:
        from .ao import qtensor
        return getattr(qtensor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
