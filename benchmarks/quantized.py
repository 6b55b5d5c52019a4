"""The quantized int8 cases: minicnn's integer convolutions against
torch's fbgemm ones, and each framework's float32 convolution on the same
layer for the int8 / float32 ratio (conventions and timing as in
``cases.py`` and ``run.py``).

    python -m benchmarks.quantized                  # all threads
    python -m benchmarks.quantized --threads 1 --repeats 9

Models: ResNet-18 and MobileNet v2 whole-model inference at batch 1,
224 x 224: the quantizable model, fused, calibrated on one image and
converted with the x86 qconfig, in each framework (torch's engine x86),
and each framework's float32 model in eval mode under no_grad.

Layers (batch 1, 3x3, padding 1, ResNet-18 / MobileNet v2 sizes): 64
channels at 56x56, 128 channels at 28x28, and a depthwise 96-channel
layer at 28x28. The quantized layers take quint8 input (scale 0.05, zero
point 64) and per-channel symmetric qint8 weights, and return quint8, as
after ``convert``; the float ones run in eval mode under no_grad.
"""
import warnings

import numpy
import torch
import torch.ao.nn.quantized as tnnq

import minicnn as mc
from benchmarks import inference
from benchmarks.cases import Case, _data, no_grad_fns

LAYERS = [(64, 56, 1), (128, 28, 1), (96, 28, 96)]   # channels, size, groups


def _flops(channels, size, groups):
    return 2 * channels * size * size * (channels // groups) * 9


def _int8_case(channels, size, groups):
    from minicnn.ao.nn import quantized as nnq
    warnings.filterwarnings("ignore", message=".*quantized tensor creation.*")
    torch.backends.quantized.engine = "fbgemm"
    x = _data(1, channels, size, size)
    w = _data(channels, channels // groups, 3, 3) * numpy.float32(0.1)
    scales = numpy.abs(w).reshape(channels, -1).max(axis=1).astype(numpy.float64) / 127.5
    zero_points = numpy.zeros(channels, numpy.int64)
    ours = nnq.Conv2d(channels, channels, 3, padding=1, groups=groups)
    ours.set_weight_bias(mc.quantize_per_channel(mc.tensor(w), scales, zero_points, 0, mc.qint8),
                         numpy.zeros(channels, numpy.float32))
    theirs = tnnq.Conv2d(channels, channels, 3, padding=1, groups=groups)
    theirs.set_weight_bias(torch.quantize_per_channel(torch.from_numpy(w), torch.from_numpy(scales),
                                                      torch.from_numpy(zero_points), 0, torch.qint8),
                           torch.zeros(channels))
    ours.scale, ours.zero_point = theirs.scale, theirs.zero_point = 0.1, 64
    qx = mc.quantize_per_tensor(mc.tensor(x), 0.05, 64, mc.quint8)
    tx = torch.quantize_per_tensor(torch.from_numpy(x), 0.05, 64, torch.quint8)
    return (lambda: ours(qx)), (lambda: theirs(tx))


def _float_case(channels, size, groups):
    x = _data(1, channels, size, size)
    ours = mc.nn.Conv2d(channels, channels, 3, padding=1, groups=groups).eval()
    theirs = torch.nn.Conv2d(channels, channels, 3, padding=1, groups=groups).eval()
    return no_grad_fns(ours, mc.tensor(x), theirs, torch.from_numpy(x))


MODELS = ["resnet18", "mobilenet_v2"]


def _quantized_minicnn(name, x):
    """minicnn's converted int8 model, calibrated on ``x``. MobileNet v2's
    blocks without a residual keep an unused ``skip_add`` (as torchvision's
    do) whose observer sees no data, and minicnn's ``convert`` refuses an
    unobserved FloatFunctional (torch's falls back to scale 1.0): those are
    dropped before ``convert`` here."""
    from minicnn.ao import quantization as quant
    model = getattr(mc.models.quantization, name)(quantize=False).eval()
    model.fuse_model()
    model.qconfig = quant.get_default_qconfig("x86")
    quant.prepare(model, inplace=True)
    with mc.no_grad():
        model(mc.tensor(x))
    for module in list(model.modules()):
        if hasattr(module, "use_res_connect") and not module.use_res_connect and hasattr(module, "skip_add"):
            del module.skip_add
    return quant.convert(model, inplace=True)


def _int8_model_case(name):
    import torchvision.models.quantization as tvq
    warnings.filterwarnings("ignore", message=".*quantized tensor creation.*")
    torch.backends.quantized.engine = "x86"
    x = _data(1, 3, 224, 224)
    ours = _quantized_minicnn(name, x)
    theirs = getattr(tvq, name)(weights=None, quantize=False).eval()
    theirs.fuse_model()
    theirs.qconfig = torch.ao.quantization.get_default_qconfig("x86")
    torch.ao.quantization.prepare(theirs, inplace=True)
    tx = torch.from_numpy(x)
    with torch.no_grad():
        theirs(tx)
    torch.ao.quantization.convert(theirs, inplace=True)
    mx = mc.tensor(x)

    def run_theirs():
        with torch.no_grad():
            return theirs(tx)
    return (lambda: ours(mx)), run_theirs


def _float_model_case(name):
    import torchvision
    x = _data(1, 3, 224, 224)
    ours = getattr(mc.models, name)().eval()
    theirs = getattr(torchvision.models, name)().eval()
    return no_grad_fns(ours, mc.tensor(x), theirs, torch.from_numpy(x))


def quantized_cases():
    cases = []
    for name in MODELS:
        cases.append(Case("model int8", f"{name} 1x3x224x224", lambda n=name: _int8_model_case(n)))
        cases.append(Case("model fp32", f"{name} 1x3x224x224", lambda n=name: _float_model_case(n)))
    for channels, size, groups in LAYERS:
        name = f"{channels}x{size}x{size} 3x3" + (" depthwise" if groups > 1 else "")
        flops = _flops(channels, size, groups)
        cases.append(Case("qconv2d int8", name, lambda l=(channels, size, groups): _int8_case(*l), flops=flops))
        cases.append(Case("conv2d fp32", name, lambda l=(channels, size, groups): _float_case(*l), flops=flops))
    return cases


def main(argv=None):
    args = inference.parser(__doc__.split("\n\n")[0], warmup=2, repeats=9).parse_args(argv)
    return inference.run_and_print(quantized_cases(), args)


if __name__ == "__main__":
    raise SystemExit(main())
