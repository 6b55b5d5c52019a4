"""Neural-network building blocks, torch's ``nn``: ``Module`` and
``Parameter``, containers, layers, ``init``; ``mc.nn.functional`` holds the
ops."""
from . import functional, init, utils  # noqa: F401
from .parameter import Parameter, UninitializedParameter  # noqa: F401
from .module import Module  # noqa: F401
from .skip_init import no_init, skip_init  # noqa: F401
from .containers import Sequential, ModuleList, ModuleDict  # noqa: F401
from .linear import Identity, Linear, LazyLinear  # noqa: F401
from .flatten import Flatten, Unflatten  # noqa: F401
from .conv import Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d  # noqa: F401
from .pooling import (  # noqa: F401
    MaxPool1d, MaxPool2d, MaxPool3d, AvgPool1d, AvgPool2d, AvgPool3d,
    AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveAvgPool3d, AdaptiveMaxPool1d, AdaptiveMaxPool2d, AdaptiveMaxPool3d)
from .normalization import (  # noqa: F401
    BatchNorm1d, BatchNorm2d, BatchNorm3d, LayerNorm, GroupNorm, LocalResponseNorm)
from .dropout import Dropout, Dropout2d  # noqa: F401
from .activation import (  # noqa: F401
    ReLU, ReLU6, LeakyReLU, ELU, Sigmoid, Tanh, Hardsigmoid, Hardswish, SiLU, GELU, Softmax, LogSoftmax)
from .activation import PReLU, Softmax2d  # noqa: F401
from .sparse import Embedding  # noqa: F401
from .loss import (  # noqa: F401
    L1Loss, MSELoss, SmoothL1Loss, HuberLoss, NLLLoss, CrossEntropyLoss, BCELoss, BCEWithLogitsLoss, KLDivLoss)
from .upsampling import Upsample  # noqa: F401
from .fold import Fold, Unfold  # noqa: F401
from .blocks import SeparableConv2d, DepthPool, SqueezeExcitation  # noqa: F401
from .reversible import ReversibleBlock, ReversibleSequence  # noqa: F401
from .sync_batchnorm import SyncBatchNorm  # noqa: F401
from . import parallel  # noqa: F401
from .parallel import DistributedDataParallel  # noqa: F401
