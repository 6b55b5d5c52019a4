"""The benchmark cases: each one builds the same work for minicnn and torch.

A ``Case`` is cheap to list; its arrays and models are made only by
``build()``, which returns two callables taking no arguments, one
iteration each (minicnn's and torch's), fed the same float32 data. So a
run holds the memory of one case at a time.

Conventions, identical on both sides:

* ``fwd`` runs under no_grad (inputs that need no gradient, as in
  inference); ``fwd+bwd`` runs the forward with every input requiring
  grad, then ``backward`` with a fixed random upstream gradient, then
  drops the gradients (so no iteration pays to accumulate into the last).
* Training steps: ``zero_grad``, forward, cross-entropy, backward and an
  SGD step (momentum 0.9) on a fixed batch.
* Inference: ``eval()`` mode under no_grad; the ``inference-fused`` group
  runs minicnn's model through ``mc.fuse`` (torch eager fuses nothing).
* Device: every case runs on the CPU by default, or on ``device="cuda"``
  (``python -m benchmarks --device cuda``): the same arrays copied to the
  GPU, minicnn through CuPy against torch through cuDNN / cuBLAS. The
  harness then synchronizes both after every call (``run.py``).

FLOPs count a multiply-add as 2. A convolution's forward is
2 * N * O * OH * OW * (C / groups) * KH * KW; its backward computes two
products of the same size (the input and the weight gradients), so
fwd+bwd counts 3x. Models are counted by torch's ``FlopCounterMode``
(convolutions and matrix products). Pooling and batch norm are memory
bound: they get no GFLOP/s.
"""
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy
import torch
import torch.nn.functional as TF
import torchvision
from torch.utils.flop_counter import FlopCounterMode

import minicnn as mc
import minicnn.nn.functional as F

SEED = 0


@dataclass
class Case:
    group: str                      # conv2d, pool, norm, train, inference
    name: str
    build: Callable                 # () -> (minicnn_fn, torch_fn)
    flops: Optional[float] = None   # per iteration; None: not counted here
    quick: bool = False             # part of the --quick set
    repeats: Optional[int] = None   # overrides the run's default (slow cases)
    skip: str = ""                  # a reason not to run it, reported as such
    notes: list = field(default_factory=list)


def _data(*shape):
    return numpy.random.default_rng(SEED).standard_normal(shape).astype(numpy.float32)


def _pair(array, requires_grad=False, device="cpu"):
    """The same values as a minicnn and a torch tensor on ``device``."""
    return (mc.tensor(array.copy(), requires_grad=requires_grad, device=device),
            torch.tensor(array.copy(), requires_grad=requires_grad, device=device))


def _op_case(inputs, mc_op, torch_op, backward, device="cpu"):
    """(minicnn_fn, torch_fn) for one op on ``inputs`` (arrays): forward
    under no_grad, or forward + backward with a fixed upstream gradient."""
    mc_in, torch_in = zip(*(_pair(a, backward, device) for a in inputs))

    if not backward:
        def mc_fn():
            with mc.no_grad():
                mc_op(*mc_in)

        def torch_fn():
            with torch.no_grad():
                torch_op(*torch_in)
        return mc_fn, torch_fn

    with torch.no_grad():
        gy = _data(*torch_op(*torch_in).shape)
    mc_gy, torch_gy = _pair(gy, device=device)

    def mc_fn():
        mc_op(*mc_in).backward(mc_gy)
        for t in mc_in:
            t.grad = None

    def torch_fn():
        torch_op(*torch_in).backward(torch_gy)
        for t in torch_in:
            t.grad = None
    return mc_fn, torch_fn


# -- convolutions --------------------------------------------------------
# (N, C, H=W, O, kernel, stride, groups, where such a layer is found)
CONV_LAYERS = [
    (8, 3, 224, 64, 7, 2, 1, "ResNet stem"),
    (8, 64, 56, 64, 3, 1, 1, "ResNet stage 1"),
    (8, 128, 28, 128, 3, 1, 1, "ResNet stage 2"),
    (8, 256, 14, 256, 3, 1, 1, "ResNet stage 3"),
    (8, 512, 7, 512, 3, 1, 1, "ResNet stage 4"),
    (32, 32, 56, 32, 3, 1, 32, "depthwise"),
    (8, 64, 56, 128, 1, 2, 1, "1x1 downsample"),
]


def conv_name(layer):
    n, c, hw, o, k, s, groups, _ = layer
    kind = " dw" if groups > 1 else ""
    return f"{n}x{c}x{hw}x{hw} -> {o}, {k}x{k}/{s}{kind}"


def conv_flops(layer):
    """Forward FLOPs: 2 * N * O * OH * OW * (C / groups) * KH * KW."""
    n, c, hw, o, k, s, groups, _ = layer
    out = (hw + 2 * (k // 2) - k) // s + 1
    return 2 * n * o * out * out * (c // groups) * k * k


def _conv_case(layer, backward, device):
    n, c, hw, o, k, s, groups, _ = layer
    kw = dict(stride=s, padding=k // 2, groups=groups)
    x, w = _data(n, c, hw, hw), _data(o, c // groups, k, k) * (2 / (c // groups * k * k)) ** 0.5
    return _op_case([x, w], lambda x, w: F.conv2d(x, w, **kw), lambda x, w: TF.conv2d(x, w, **kw), backward,
                    device)


# conv_transpose2d: the 2x upsampling of a DCGAN / U-Net decoder,
# (N, C, H=W, O, kernel, stride, padding) -> (N, O, 2H, 2W).
TRANSPOSE_LAYER = (8, 128, 28, 64, 4, 2, 1)


def _transpose_case(backward, device):
    n, c, hw, o, k, s, p = TRANSPOSE_LAYER
    x, w = _data(n, c, hw, hw), _data(c, o, k, k) * 0.05
    return _op_case([x, w], lambda x, w: F.conv_transpose2d(x, w, stride=s, padding=p),
                    lambda x, w: TF.conv_transpose2d(x, w, stride=s, padding=p), backward, device)


def _transpose_flops():
    """The same products as the convolution it is the adjoint of: each of
    the N*H*W input pixels meets an O x KH x KW slice of the kernel per
    input channel."""
    n, c, hw, o, k, _, _ = TRANSPOSE_LAYER
    return 2 * n * c * hw * hw * o * k * k


# -- pooling and batch norm ----------------------------------------------
def _unary_case(shape, mc_op, torch_op, backward, device):
    return lambda: _op_case([_data(*shape)], mc_op, torch_op, backward, device)


def _batch_norm_case(shape, training, backward, device):
    c = shape[1]
    (mc_mean, torch_mean), (mc_var, torch_var) = (_pair(numpy.zeros(c, numpy.float32), device=device),
                                                  _pair(numpy.ones(c, numpy.float32), device=device))
    return _op_case([_data(*shape), numpy.ones(c, numpy.float32), numpy.zeros(c, numpy.float32)],
                    lambda x, w, b: F.batch_norm(x, mc_mean, mc_var, w, b, training=training),
                    lambda x, w, b: TF.batch_norm(x, torch_mean, torch_var, w, b, training=training),
                    backward, device)


# -- whole models --------------------------------------------------------
def _torch_lenet5():
    """torch's twin of ``mc.models.lenet5``."""
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(16, 120, 5), nn.Tanh(),
        nn.Flatten(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10))


def _torch_model(name, **kwargs):
    return getattr(torchvision.models, name)(**kwargs)


def _model_flops(model, x, backward):
    """FLOPs of one forward (and backward) of a torch model, counted by torch."""
    counter = FlopCounterMode(display=False)
    with counter:
        y = model(x)
        if backward:
            y.sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def _train_case(mc_model, torch_model, shape, classes, case, device):
    """One SGD training step of each model on the same batch."""
    (mc_x, torch_x), (mc_t, torch_t) = (
        _pair(_data(*shape), device=device),
        _pair(numpy.random.default_rng(SEED).integers(0, classes, shape[0]), device=device))
    mc_model.to(device).train()
    torch_model.to(device).train()
    mc_opt = mc.optim.SGD(mc_model.parameters(), lr=0.01, momentum=0.9)
    torch_opt = torch.optim.SGD(torch_model.parameters(), lr=0.01, momentum=0.9)
    case.flops = _model_flops(torch_model, torch_x, backward=True)

    def mc_fn():
        mc_opt.zero_grad()
        F.cross_entropy(mc_model(mc_x), mc_t).backward()
        mc_opt.step()

    def torch_fn():
        torch_opt.zero_grad()
        TF.cross_entropy(torch_model(torch_x), torch_t).backward()
        torch_opt.step()
    return mc_fn, torch_fn


def _inference_case(name, shape, case, device, fused=False):
    """Eval-mode forward of both models; ``fused``: minicnn's model through
    ``mc.fuse`` (batch norms folded, activations and residual adds in the
    convs' output) against torch's eager model, which fuses nothing."""
    mc_model, torch_model = mc.models.get_model(name).to(device).eval(), _torch_model(name).to(device).eval()
    if fused:
        mc_model = mc.fuse(mc_model)
    return inference_fns(mc_model, torch_model, shape, case, device)


def inference_fns(mc_model, torch_model, shape, case, device):
    """(minicnn_fn, torch_fn): one no_grad forward of each eval-mode model
    on the same random input of ``shape``; sets ``case.flops``."""
    mc_x, torch_x = _pair(_data(*shape), device=device)
    with torch.no_grad():
        case.flops = _model_flops(torch_model, torch_x, backward=False)
    return no_grad_fns(mc_model, mc_x, torch_model, torch_x)


def no_grad_fns(mc_model, mc_input, torch_model, torch_input):
    """(minicnn_fn, torch_fn): one call of each model on its input under its
    framework's no_grad, the output dropped."""
    def mc_fn():
        with mc.no_grad():
            mc_model(mc_input)

    def torch_fn():
        with torch.no_grad():
            torch_model(torch_input)
    return mc_fn, torch_fn


def _missing_model(name):
    if name not in mc.models.list_models():
        return f"mc.models has no {name} yet"
    return ""


# -- the case list -------------------------------------------------------
QUICK_CONVS = {1, 5}  # one dense 3x3 layer and the depthwise one


def conv_case(layer, backward, device="cpu", quick=False):
    """The conv2d case of ``layer`` (a ``CONV_LAYERS`` tuple), forward or
    forward + backward."""
    return Case("conv2d", f"{conv_name(layer)} {'fwd+bwd' if backward else 'fwd'}",
                lambda: _conv_case(layer, backward, device), flops=conv_flops(layer) * (3 if backward else 1),
                quick=quick, notes=[layer[-1]])


def resnet_step_case(device="cpu"):
    """One SGD step of ResNet-18 (10 classes) on 16 images of 3x64x64."""
    # More repeats than the slow cases' 5: on a shared 2-core machine the
    # step's ratio swung 1.10-1.36 between runs of 5.
    case = Case("train", "ResNet-18 step, 16x3x64x64, 10 classes", None, repeats=11,
                skip=_missing_model("resnet18"))
    case.build = lambda: _train_case(mc.models.resnet18(num_classes=10), _torch_model("resnet18", num_classes=10),
                                     (16, 3, 64, 64), 10, case, device)
    return case


def all_cases(device="cpu"):
    """Every case of the full run, in report order, on ``device``."""
    cases = []
    for i, layer in enumerate(CONV_LAYERS):
        for backward in (False, True):
            cases.append(conv_case(layer, backward, device, quick=backward and i in QUICK_CONVS))
    n, c, hw, o, k, s, p = TRANSPOSE_LAYER
    for backward in (False, True):
        cases.append(Case(
            "conv_transpose2d", f"{n}x{c}x{hw}x{hw} -> {o}, {k}x{k}/{s} {'fwd+bwd' if backward else 'fwd'}",
            lambda backward=backward: _transpose_case(backward, device),
            flops=_transpose_flops() * (3 if backward else 1)))
    from benchmarks.conv_nd import conv_nd_cases  # conv1d and conv3d; that module imports this one
    cases += conv_nd_cases(device)

    pool_shape, avg_shape, gap_shape = (8, 64, 112, 112), (8, 128, 56, 56), (8, 512, 7, 7)
    for backward in (False, True):
        suffix = "fwd+bwd" if backward else "fwd"
        cases += [
            Case("pool", f"max_pool2d 3x3/2 8x64x112x112 {suffix}",
                 _unary_case(pool_shape, lambda x: F.max_pool2d(x, 3, 2, 1),
                             lambda x: TF.max_pool2d(x, 3, 2, 1), backward, device),
                 quick=backward),
            Case("pool", f"avg_pool2d 2x2/2 8x128x56x56 {suffix}",
                 _unary_case(avg_shape, lambda x: F.avg_pool2d(x, 2),
                             lambda x: TF.avg_pool2d(x, 2), backward, device)),
            Case("pool", f"adaptive_avg_pool2d 8x512x7x7 -> 1 {suffix}",
                 _unary_case(gap_shape, lambda x: F.adaptive_avg_pool2d(x, 1),
                             lambda x: TF.adaptive_avg_pool2d(x, 1), backward, device)),
        ]
    bn_shape = (8, 64, 112, 112)
    cases += [
        Case("norm", "batch_norm train 8x64x112x112 fwd",
             lambda: _batch_norm_case(bn_shape, training=True, backward=False, device=device)),
        Case("norm", "batch_norm train 8x64x112x112 fwd+bwd",
             lambda: _batch_norm_case(bn_shape, training=True, backward=True, device=device), quick=True),
        Case("norm", "batch_norm eval 8x64x112x112 fwd",
             lambda: _batch_norm_case(bn_shape, training=False, backward=False, device=device)),
    ]

    lenet = Case("train", "LeNet-5 step, 64x1x32x32", None, quick=True)
    lenet.build = lambda: _train_case(mc.models.lenet5(), _torch_lenet5(), (64, 1, 32, 32), 10, lenet,
                                      device)
    cases.append(lenet)
    cases.append(resnet_step_case(device))
    # The mobile nets' steps of issue 25's targets (<= 1.2 of torch): their
    # depthwise layers, SiLU (EfficientNet) and ReLU6 (MobileNetV2).
    for name, label in (("mobilenet_v2", "MobileNetV2"), ("efficientnet_b0", "EfficientNet-B0")):
        case = Case("train", f"{label} step, 16x3x96x96, 10 classes", None, repeats=7, skip=_missing_model(name))
        case.build = lambda name=name, case=case: _train_case(mc.models.get_model(name, num_classes=10),
                                                              _torch_model(name, num_classes=10),
                                                              (16, 3, 96, 96), 10, case, device)
        cases.append(case)

    for name in ("resnet18", "mobilenet_v2", "efficientnet_b0"):
        case = Case("inference", f"{name} 8x3x224x224", None, repeats=7, skip=_missing_model(name))
        case.build = lambda name=name, case=case: _inference_case(name, (8, 3, 224, 224), case, device)
        cases.append(case)
    # python -m benchmarks --only inference-fused
    # (fused and unfused side by side: the speed-up of fusion is the ratio of their ratios)
    for name in ("resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0", "densenet121"):
        for batch in (1, 8):
            for fused in (False, True):
                case = Case("inference-fused", f"{name} {batch}x3x224x224 {'fused' if fused else 'unfused'}",
                            None, repeats=7, skip=_missing_model(name))
                case.build = lambda name=name, batch=batch, case=case, fused=fused: _inference_case(
                    name, (batch, 3, 224, 224), case, device, fused)
                cases.append(case)
    return cases


def quick_cases(device="cpu"):
    """The reduced set of ``--quick``: a minute or less."""
    return [case for case in all_cases(device) if case.quick]
