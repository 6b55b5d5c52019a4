"""What every quantizable model shares: ReLU6 -> ReLU, the fusion call of
``fuse_model``, and the post-training static quantization of a float model
(fuse, attach observers, calibrate, convert).

torchvision's ``quantize_model`` calibrates on one random 299 x 299 image
and then loads downloaded int8 weights over the result; minicnn downloads
nothing, so ``quantize_model`` here calibrates on the batches the caller
gives and the converted model *is* the result.
"""
from ... import functional as F
from ... import nn
from ...autograd import no_grad
from ...creation import tensor
from ...tensor import Tensor
from .._layers import _check_weights


_QUANTIZE_DOC = """

    ``quantize=True`` returns the converted int8 model. torchvision builds
    it and loads downloaded int8 weights; minicnn downloads nothing, so it
    quantizes this model itself: pass ``calibration_data`` (an iterable of
    (N, 3, H, W) batches the observers see before ``convert``), and
    ``float_state_dict`` to start from trained float weights instead of a
    random initialisation; ``backend`` (default "x86") picks the qconfig.
    See :func:`quantize_model`. Other ``kwargs`` go to the model class;
    ``weights`` must be None and ``progress`` is unused."""


def _is_quantized(x):
    from ...ao import QTensor
    return isinstance(x, QTensor)


def _adaptive_avg_pool2d(x, output_size):
    """F.adaptive_avg_pool2d for float Tensors and quantized tensors alike
    (torch's op takes both; minicnn's quantized version is separate)."""
    if _is_quantized(x):
        from ...ao.nn.quantized import functional as qF
        return qF.adaptive_avg_pool2d(x, output_size)
    return F.adaptive_avg_pool2d(x, output_size)


def _max_pool2d(x, kernel_size, stride):
    """F.max_pool2d for float Tensors and quantized tensors alike."""
    if _is_quantized(x):
        from ...ao.nn.quantized import functional as qF
        return qF.max_pool2d(x, kernel_size, stride)
    return F.max_pool2d(x, kernel_size=kernel_size, stride=stride)


def _avg_pool2d(x, kernel_size, stride, padding=0):
    """F.avg_pool2d for float Tensors and quantized tensors alike."""
    if _is_quantized(x):
        from ...ao.nn.quantized import functional as qF
        return qF.avg_pool2d(x, kernel_size, stride, padding)
    return F.avg_pool2d(x, kernel_size=kernel_size, stride=stride, padding=padding)


def _replace_relu(module):
    """Replace every ReLU / ReLU6 (exactly those types) by a fresh ReLU, as
    torchvision does: fbgemm fuses conv + bn + ReLU, not ReLU6, and each
    quantized ReLU needs its own module. Changes the float numerics where
    ReLU6 clipped (MobileNetV2), exactly as torchvision's quantizable
    model does."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.ReLU or type(child) is nn.ReLU6:
                setattr(parent, name, nn.ReLU())


def _fuse_modules(model, modules_to_fuse, is_qat):
    """fuse_modules in place; ``is_qat`` None means ``model.training``.

    minicnn has no quantization-aware training (torch's
    ``fuse_modules_qat``): a model in training mode is refused."""
    from ...ao.quantization import fuse_modules
    if is_qat is None:
        is_qat = model.training
    if is_qat:
        raise ValueError("fuse_model: quantization-aware training (is_qat=True, or a model in training mode) is "
                         "not supported; call model.eval() before fuse_model()")
    return fuse_modules(model, modules_to_fuse, inplace=True)


def quantize_model(model, calibration_data, backend="x86"):
    """Post-training static quantization of a quantizable float ``model``,
    in place: ``eval()``, ``qconfig = get_default_qconfig(backend)``,
    ``fuse_model()``, ``prepare``, one forward per batch of
    ``calibration_data`` (an iterable of (N, 3, H, W) Tensors or arrays:
    the observers record the activation ranges), ``convert``. Returns the
    converted model.

    The batches decide the activation scales: use images like those the
    model will see (a few hundred are usually enough).
    """
    from ...ao import quantization as quant
    if calibration_data is None:
        raise ValueError("quantize_model: calibration_data is required (an iterable of (N, 3, H, W) batches): "
                         "minicnn has no pretrained int8 weights, so the activation ranges are measured on your "
                         "batches")
    if not hasattr(model, "fuse_model"):
        raise TypeError(f"quantize_model: model must be a quantizable model (with fuse_model), "
                        f"got {type(model).__name__}")
    model.eval()
    model.qconfig = quant.get_default_qconfig(backend)
    model.fuse_model()
    quant.prepare(model, inplace=True)
    batches = 0
    with no_grad():
        for batch in calibration_data:
            model(batch if isinstance(batch, Tensor) else tensor(batch))
            batches += 1
    if batches == 0:
        raise ValueError("quantize_model: calibration_data gave no batches")
    quant.convert(model, inplace=True)
    return model


def _build(builder, make_model, weights, quantize, kwargs):
    """What every builder does after checking its own arguments: pop the
    quantization arguments (``calibration_data``, ``backend``,
    ``float_state_dict``) out of ``kwargs``, build the float quantizable
    model with the rest, swap ReLU6 for ReLU, load float weights, and
    quantize when asked."""
    _check_weights(weights, builder)
    calibration_data = kwargs.pop("calibration_data", None)
    backend = kwargs.pop("backend", "x86")
    float_state_dict = kwargs.pop("float_state_dict", None)
    if not quantize and calibration_data is not None:
        raise ValueError(f"{builder}: calibration_data is only used with quantize=True")
    model = make_model(**kwargs)
    _replace_relu(model)
    if float_state_dict is not None:
        model.load_state_dict(float_state_dict)
    if quantize:
        quantize_model(model, calibration_data, backend)
    return model
