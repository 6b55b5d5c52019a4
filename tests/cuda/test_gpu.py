"""minicnn on a GPU against torch on the same GPU: op parity for every
family of ops, forward and backward, and model parity for resnet18 and
mobilenet_v2 (eval in float32 and float64, a training step in float64).

Run with ``pytest -m gpu``. Every test here is skipped, with the reason,
when CuPy or a GPU is missing, or when torch was built without CUDA.
TF32 is turned off in torch (CuPy's cuBLAS calls do not use it), so
float32 is compared with float32.
"""
import os
import sys

import numpy
import pytest
import torch
import torch.nn.functional as TF

import minicnn as mc
import minicnn.nn.functional as F
from minicnn.kernels import registry
from minicnn.autograd import run_backward
from minicnn.device import cuda_unavailable_reason
from parity import TOLERANCES, assert_close

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models"))
from zoo_check import assert_relative, build_pair  # noqa: E402


def _skip_reason():
    if not mc.cuda.is_available():
        return f"minicnn cannot use CUDA: {cuda_unavailable_reason()}"
    if not torch.cuda.is_available():
        return "torch cannot use CUDA (a CPU build, or no driver)"
    return None


SKIP_REASON = _skip_reason()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(SKIP_REASON is not None, reason=str(SKIP_REASON))]

if torch.cuda.is_available():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

DTYPES = [numpy.float64, numpy.float32]


def gpu_parity(mc_fn, torch_fn, arrays, dtype, rtol=None, seed=0):
    """Run mc_fn on cuda tensors and torch_fn on torch cuda tensors of the
    same values; compare every output and, for a random upstream gradient,
    every float input's gradient. Integer arrays stay integer (targets)."""
    dtype = numpy.dtype(dtype).type
    default_rtol, atol = TOLERANCES[dtype]
    rtol = default_rtol if rtol is None else rtol
    mc_in, torch_in = [], []
    for a in arrays:
        floating = a.dtype.kind == "f"
        a = a.astype(dtype) if floating else a
        mc_in.append(mc.tensor(a, device="cuda", requires_grad=floating))
        torch_in.append(torch.tensor(a, device="cuda", requires_grad=floating))
    mc_out, torch_out = mc_fn(*mc_in), torch_fn(*torch_in)
    mc_out = mc_out if isinstance(mc_out, tuple) else (mc_out,)
    torch_out = torch_out if isinstance(torch_out, tuple) else (torch_out,)
    rng = numpy.random.default_rng(seed)
    roots, grads, torch_roots, torch_grads = [], [], [], []
    for i, (m, t) in enumerate(zip(mc_out, torch_out)):
        assert m.device == mc.device("cuda"), f"output {i} is on {m.device}"
        assert_close(m.numpy_copy(), t.detach().cpu().numpy(), rtol, atol, f"output {i}")
        if m.requires_grad:
            g = rng.standard_normal(tuple(t.shape)).astype(dtype)
            roots.append(m)
            grads.append(mc.tensor(g, device="cuda"))
            torch_roots.append(t)
            torch_grads.append(torch.tensor(g, device="cuda"))
    run_backward(roots, grads)
    torch.autograd.backward(torch_roots, torch_grads)
    for i, (m, t) in enumerate(zip(mc_in, torch_in)):
        if m.requires_grad:
            assert m.grad is not None and m.grad.device == mc.device("cuda"), f"gradient of input {i}"
            assert_close(m.grad.numpy_copy(), t.grad.cpu().numpy(), rtol, atol, f"gradient of input {i}")


def normal(*shape, seed=0):
    return numpy.random.default_rng(seed).standard_normal(shape)


def distinct(*shape, seed=0):
    """Distinct values in random order: no max pool window holds a tie."""
    n = int(numpy.prod(shape))
    return numpy.random.default_rng(seed).permutation(n).reshape(shape) / n * 4 - 2


RM, RV = numpy.linspace(-1, 1, 3), numpy.linspace(0.5, 2, 3)

# (name, minicnn function, torch function, input arrays, float32 rtol)
OPS = [
    ("add_broadcast", lambda a, b: a + b, lambda a, b: a + b, [normal(2, 3, 4), normal(3, 1, seed=1)], None),
    ("mul_div", lambda a, b: a * b / (b * b + 1), lambda a, b: a * b / (b * b + 1),
     [normal(3, 4), normal(3, 4, seed=1)], None),
    ("exp_log", lambda a: mc.log(mc.exp(a) + 1), lambda a: torch.log(torch.exp(a) + 1), [normal(5, 4)], None),
    ("activations", lambda a: F.relu(a) + F.gelu(a) + F.sigmoid(a) + F.tanh(a) + F.silu(a) + F.hardswish(a),
     lambda a: TF.relu(a) + TF.gelu(a) + torch.sigmoid(a) + torch.tanh(a) + TF.silu(a) + TF.hardswish(a),
     [normal(4, 5)], None),
    ("reductions", lambda a: (a.sum(1), a.mean((0, 2)), mc.var(a, 1), mc.amax(a, 2)),
     lambda a: (a.sum(1), a.mean((0, 2)), torch.var(a, 1), torch.amax(a, 2)), [distinct(2, 3, 4)], None),
    ("softmax", lambda a: (F.softmax(a, 1), F.log_softmax(a, 1)),
     lambda a: (TF.softmax(a, 1), TF.log_softmax(a, 1)), [normal(3, 5)], None),
    ("linear", lambda x, w, b: F.linear(x, w, b), lambda x, w, b: TF.linear(x, w, b),
     [normal(4, 6), normal(5, 6, seed=1), normal(5, seed=2)], 1e-5),
    ("shape", lambda a, b: mc.cat([a.permute(0, 2, 1).reshape(2, -1), b], 1),
     lambda a, b: torch.cat([a.permute(0, 2, 1).reshape(2, -1), b], 1), [normal(2, 3, 4), normal(2, 5, seed=1)],
     None),
    ("conv2d", lambda x, w, b: F.conv2d(x, w, b, padding=1), lambda x, w, b: TF.conv2d(x, w, b, padding=1),
     [normal(2, 3, 9, 8), normal(4, 3, 3, 3, seed=1), normal(4, seed=2)], 1e-4),
    ("conv2d_strided_dilated", lambda x, w: F.conv2d(x, w, stride=2, padding=2, dilation=2),
     lambda x, w: TF.conv2d(x, w, stride=2, padding=2, dilation=2), [normal(2, 3, 11, 10), normal(4, 3, 3, 2, seed=1)],
     1e-4),
    ("conv2d_grouped", lambda x, w: F.conv2d(x, w, groups=2, padding="same"),
     lambda x, w: TF.conv2d(x, w, groups=2, padding="same"), [normal(2, 4, 7, 7), normal(6, 2, 2, 3, seed=1)], 1e-4),
    ("conv2d_depthwise", lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1, groups=3),
     lambda x, w, b: TF.conv2d(x, w, b, stride=2, padding=1, groups=3),
     [normal(2, 3, 9, 9), normal(6, 1, 3, 3, seed=1), normal(6, seed=2)], 1e-4),
    ("conv2d_pointwise", lambda x, w: F.conv2d(x, w), lambda x, w: TF.conv2d(x, w),
     [normal(2, 5, 6, 6), normal(4, 5, 1, 1, seed=1)], 1e-4),
    ("conv_transpose2d", lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1),
     lambda x, w, b: TF.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1),
     [normal(2, 4, 5, 5), normal(4, 3, 3, 3, seed=1), normal(3, seed=2)], 1e-4),
    ("max_pool2d", lambda x: F.max_pool2d(x, 3, 2, 1, return_indices=True),
     lambda x: TF.max_pool2d(x, 3, 2, 1, return_indices=True), [distinct(2, 3, 9, 8)], None),
    ("max_pool2d_dilated_ceil", lambda x: F.max_pool2d(x, (2, 3), (1, 2), (1, 1), dilation=(2, 1), ceil_mode=True),
     lambda x: TF.max_pool2d(x, (2, 3), (1, 2), (1, 1), dilation=(2, 1), ceil_mode=True), [distinct(2, 3, 7, 8)],
     None),
    ("avg_pool2d", lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
     lambda x: TF.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False), [normal(2, 3, 7, 8)], None),
    ("adaptive_avg_pool2d", lambda x: F.adaptive_avg_pool2d(x, (3, 2)), lambda x: TF.adaptive_avg_pool2d(x, (3, 2)),
     [normal(2, 3, 7, 8)], None),
    ("adaptive_max_pool2d", lambda x: F.adaptive_max_pool2d(x, (4, 3), return_indices=True),
     lambda x: TF.adaptive_max_pool2d(x, (4, 3), return_indices=True), [distinct(2, 3, 7, 8)], None),
    ("batch_norm_train", lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
     lambda x, w, b: TF.batch_norm(x, None, None, w, b, training=True),
     [normal(4, 3, 5, 6) + 3, normal(3, seed=1), normal(3, seed=2)], 1e-4),
    ("batch_norm_eval",
     lambda x, w, b: F.batch_norm(x, mc.tensor(RM.astype(x.dtype), device="cuda"),
                                  mc.tensor(RV.astype(x.dtype), device="cuda"), w, b),
     lambda x, w, b: TF.batch_norm(x, torch.tensor(RM, dtype=x.dtype, device="cuda"),
                                   torch.tensor(RV, dtype=x.dtype, device="cuda"), w, b),
     [normal(4, 3, 5, 6), normal(3, seed=1), normal(3, seed=2)], 1e-4),
    ("layer_group_norm", lambda x: F.layer_norm(x, (5, 6)) + F.group_norm(x, 2),
     lambda x: TF.layer_norm(x, (5, 6)) + TF.group_norm(x, 2), [normal(2, 4, 5, 6)], 1e-4),
    ("cross_entropy", lambda x, t: F.cross_entropy(x, t), lambda x, t: TF.cross_entropy(x, t),
     [normal(6, 5), numpy.array([0, 4, 2, 1, 3, 2])], None),
    ("interpolate", lambda x: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False),
     lambda x: TF.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False), [normal(2, 3, 4, 5)], None),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("case", OPS, ids=[c[0] for c in OPS])
def test_op_matches_torch_on_cuda(case, dtype):
    _, mc_fn, torch_fn, arrays, rtol32 = case
    gpu_parity(mc_fn, torch_fn, arrays, dtype, rtol=rtol32 if dtype == numpy.float32 else None)


def test_cuda_kernels_are_the_ones_used():
    import cupy
    for primitive in ("im2col", "depthwise_conv2d_forward", "max_pool2d_forward", "batch_norm_backward"):
        assert registry.lookup(primitive, cupy).__module__.startswith("minicnn.kernels.cuda.")


# -- models --------------------------------------------------------------
MODELS = [("resnet18", {}, (2, 3, 48, 48)), ("mobilenet_v2", {"dropout": 0.0}, (2, 3, 48, 48))]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("name, kwargs, shape", MODELS, ids=[m[0] for m in MODELS])
def test_model_eval_matches_torch_on_cuda(name, kwargs, shape, dtype):
    mc_model, tv_model = build_pair(name, **kwargs)
    torch_dtype = torch.float64 if dtype == numpy.float64 else torch.float32
    mc_model.to("cuda", dtype).eval()
    tv_model.to("cuda", torch_dtype).eval()
    x = numpy.random.default_rng(0).standard_normal(shape).astype(dtype)
    with mc.no_grad():
        ours = mc_model(mc.tensor(x, device="cuda"))
    with torch.no_grad():
        theirs = tv_model(torch.tensor(x, device="cuda"))
    assert ours.device == mc.device("cuda")
    assert_relative(ours.numpy_copy(), theirs.cpu().numpy(), 1e-9 if dtype == numpy.float64 else 1e-4, "logits")


@pytest.mark.parametrize("name, kwargs, shape", MODELS, ids=[m[0] for m in MODELS])
def test_model_training_step_matches_torch_on_cuda(name, kwargs, shape):
    """Training mode in float64: logits, every parameter's gradient, the
    running statistics, and the parameters after one SGD step with momentum."""
    mc_model, tv_model = build_pair(name, **kwargs)
    mc_model.to("cuda", mc.float64).train()
    tv_model.to("cuda", torch.float64).train()
    rng = numpy.random.default_rng(0)
    x = rng.standard_normal(shape)
    ours, theirs = mc_model(mc.tensor(x, device="cuda")), tv_model(torch.tensor(x, device="cuda"))
    assert_relative(ours.numpy_copy(), theirs.detach().cpu().numpy(), 1e-9, "train logits")
    g = rng.standard_normal(tuple(theirs.shape))
    ours.backward(mc.tensor(g, device="cuda"))
    theirs.backward(torch.tensor(g, device="cuda"))
    tv_params = dict(tv_model.named_parameters())
    floor = 1e-6 * max(float(p.grad.abs().max()) for p in tv_params.values())
    for pname, p in mc_model.named_parameters():
        assert p.grad.device == mc.device("cuda")
        assert_relative(p.grad.numpy_copy(), tv_params[pname].grad.cpu().numpy(), 1e-9, f"gradient of {pname}",
                        floor=floor)
    tv_buffers = dict(tv_model.named_buffers())
    for bname, b in mc_model.named_buffers():
        assert_relative(b.numpy_copy(), tv_buffers[bname].cpu().numpy(), 1e-9, f"buffer {bname}",
                        floor=1e-6 * max(float(t.abs().max()) for t in tv_buffers.values()))


# -- devices, state and memory ----------------------------------------------
def test_mixing_devices_names_both():
    a, b = mc.ones(3, device="cuda"), mc.ones(3)
    with pytest.raises(RuntimeError, match="cuda:0 and cpu|cpu and cuda:0"):
        a + b
    with pytest.raises(RuntimeError, match="cpu and cuda:0"):
        F.conv2d(mc.ones(1, 1, 3, 3), mc.ones(1, 1, 2, 2, device="cuda"))


def test_tensor_moves_and_gradients_flow_back():
    x = mc.randn(3, 4, requires_grad=True)
    y = x.cuda() * 2
    assert y.is_cuda and y.cpu().device == mc.device("cpu")
    y.sum().backward()
    assert x.grad.device == mc.device("cpu")
    numpy.testing.assert_array_equal(x.grad.numpy(), numpy.full((3, 4), 2.0, dtype=numpy.float32))
    assert mc.zeros(2, 3, device="cuda").is_cuda and mc.arange(5, device="cuda:0").is_cuda


def test_module_and_optimizer_state_follow_to(tmp_path):
    model = mc.nn.Sequential(mc.nn.Conv2d(3, 4, 3), mc.nn.BatchNorm2d(4))
    optimizer = mc.optim.Adam(model.parameters(), lr=1e-2)
    x = mc.randn(2, 3, 6, 6)
    model(x).sum().backward()
    optimizer.step()  # state created on the CPU
    model.to("cuda")
    assert all(p.is_cuda for p in model.parameters()) and all(b.is_cuda for b in model.buffers())
    optimizer.zero_grad()
    model(x.cuda()).sum().backward()
    optimizer.step()
    for state in optimizer.state.values():
        assert all(v.is_cuda for v in state.values() if isinstance(v, mc.Tensor))
    mc.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, tmp_path / "ckpt")
    loaded = mc.load(tmp_path / "ckpt")
    assert all(t.device == mc.device("cpu") for t in loaded["model"].values())
    numpy.testing.assert_array_equal(loaded["model"]["0.weight"].numpy(), model[0].weight.detach().numpy_copy())


def test_memory_helpers():
    mc.cuda.synchronize()
    before = mc.cuda.memory_allocated()
    x = mc.zeros(1 << 20, device="cuda")
    assert mc.cuda.memory_allocated() >= before + 4 * (1 << 20)
    assert mc.cuda.memory_reserved() >= mc.cuda.memory_allocated()
    del x
    mc.cuda.empty_cache()
    assert mc.cuda.device_count() >= 1 and isinstance(mc.cuda.get_device_name(), str)


def test_benchmark_harness_on_cuda(tmp_path):
    """``python -m benchmarks --device cuda`` in miniature: the tiny cases
    run on the GPU with synchronized timings and report GPU and ratio."""
    from benchmarks import cases, run
    tiny = [c for c in cases.quick_cases("cuda") if c.group in ("conv2d", "norm")]
    rows = run.run_cases(tiny, warmup=1, repeats=2, log=lambda line: None, synchronize=run._cuda_synchronize)
    assert [r["status"] for r in rows] == ["ok"] * len(tiny)
    assert all(r["ratio"] > 0 for r in rows)
    text = run.write_results(rows, None, None, run.machine_info(1, "cuda"), tmp_path)
    assert torch.cuda.get_device_name() in text
