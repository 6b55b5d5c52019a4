"""Every op of minicnn as a function on Tensors (``mc.nn.functional``
re-exports them as ``F``). One module per family; each op's forward and
backward sit side by side in its Function class."""
from .elementwise import (  # noqa: F401
    add, sub, mul, div, neg, pow, exp, log, sqrt, abs, clamp, clip, maximum, minimum,
    where, cast, clone, compare, logical_not, eq, isfinite)
from .reduction import sum, mean, var, std, max, min, amax, amin, argmax, argmin, topk  # noqa: F401
from .shape import (  # noqa: F401
    reshape, view, flatten, permute, transpose, unsqueeze, squeeze, broadcast_to, expand,
    sum_to, contiguous, getitem, cat, stack, split, chunk, pad)
from .linalg import matmul, linear  # noqa: F401
from .activation import (  # noqa: F401
    relu, relu6, hardtanh, leaky_relu, elu, sigmoid, tanh, hardsigmoid, hardswish, silu, gelu,
    softmax, log_softmax)
from .dropout import dropout, dropout2d  # noqa: F401
from .loss import (  # noqa: F401
    cross_entropy, nll_loss, mse_loss, l1_loss, smooth_l1_loss, huber_loss, binary_cross_entropy,
    binary_cross_entropy_with_logits, kl_div)
from .lookup import embedding, one_hot  # noqa: F401
from .parametric_activation import prelu  # noqa: F401
from .conv import conv1d, conv2d, conv3d  # noqa: F401
from .conv_transpose import conv_transpose1d, conv_transpose2d, conv_transpose3d  # noqa: F401
from .pooling import (  # noqa: F401
    max_pool1d, max_pool2d, max_pool3d, avg_pool1d, avg_pool2d, avg_pool3d,
    adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d,
    adaptive_max_pool1d, adaptive_max_pool2d, adaptive_max_pool3d, depth_max_pool2d)
from .normalization import batch_norm, layer_norm, group_norm, local_response_norm  # noqa: F401
from .interpolate import interpolate  # noqa: F401
from .fold import fold, unfold  # noqa: F401

import types as _types

__all__ = [name for name, value in dict(globals()).items()
           if not name.startswith("_") and not isinstance(value, _types.ModuleType)]
