"""GoogLeNet against torchvision: eval-mode logits and feature maps at the
smallest input (15 x 15) and at 64 x 64, and training mode with the
auxiliary classifiers: all three outputs, every parameter gradient and the
running statistics, in float64.

With torchvision's initialisation (weights of std 0.01) and fresh batch-norm
statistics (mean 0, variance 1), the eval-mode activations shrink layer
after layer until the logits are exactly ``fc.bias``, and comparing them
would test nothing. The eval tests therefore first measure the running
statistics on a random batch (``calibrated_pair``), which keeps every layer
at unit scale as a trained network would be."""
import numpy
import pytest
import torch

import minicnn as mc
from minicnn.autograd import run_backward
from zoo_check import assert_relative, build_pair, check_eval, check_weights_refused

LAYERS = ["conv1", "maxpool2", "inception3a", "inception4a.branch3", "inception5b"]


def calibrated_pair(input_shape, **kwargs):
    """``build_pair("googlenet", **kwargs)`` with torchvision's batch-norm
    running statistics set to those of one random batch of ``input_shape``
    (momentum None: after one batch, the running average is that batch's),
    then copied into minicnn's model."""
    mc_model, tv_model = build_pair("googlenet", init_weights=True, **kwargs)
    for m in tv_model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    torch.manual_seed(1)
    with torch.no_grad():
        tv_model.train()(torch.randn(input_shape))
    mc_model.load_state_dict(tv_model.state_dict())
    return mc_model, tv_model


def test_registered():
    assert "googlenet" in mc.models.list_models()
    model = mc.models.get_model("googlenet", num_classes=10, aux_logits=False)
    assert isinstance(model, mc.models.GoogLeNet)
    assert model.aux1 is None and model.fc.out_features == 10


def test_weights_refused():
    check_weights_refused(mc.models.googlenet)


def test_init_weights():
    """torchvision's init: conv and linear weights ~ N(0, 0.01^2) truncated
    to [-2, 2] (no value beyond a few std), batch norm weight 1, bias 0."""
    model = mc.models.googlenet(init_weights=True)
    w = model.inception4e.branch2[1].conv.weight.detach().numpy()
    assert abs(w.std() - 0.01) < 0.001 and numpy.abs(w).max() < 0.1
    assert (model.conv1.bn.weight.detach().numpy() == 1).all() and (model.conv1.bn.bias.detach().numpy() == 0).all()


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_eval_parity_smallest_input(dtype):
    mc_model, tv_model = calibrated_pair((2, 3, 15, 15))
    errors = check_eval(mc_model, tv_model, (2, 3, 15, 15), dtype, layers=LAYERS)
    print(errors)


def test_eval_parity_transform_input():
    mc_model, tv_model = calibrated_pair((1, 3, 64, 64), transform_input=True, num_classes=10)
    errors = check_eval(mc_model, tv_model, (1, 3, 64, 64), numpy.float64, layers=LAYERS)
    print(errors)


def test_train_parity_with_aux_logits():
    """Training mode returns GoogLeNetOutputs(logits, aux_logits2,
    aux_logits1); dropout is off so both frameworks compute the same."""
    mc_model, tv_model = build_pair("googlenet", init_weights=True, dropout=0.0, dropout_aux=0.0)
    mc_model.double().train()
    tv_model.double().train()
    rng = numpy.random.default_rng(0)
    x = rng.standard_normal((2, 3, 64, 64))

    mc_out = mc_model(mc.from_numpy(x.copy()))
    tv_out = tv_model(torch.from_numpy(x.copy()))
    assert isinstance(mc_out, mc.models.GoogLeNetOutputs)
    assert mc_out._fields == tv_out._fields == ("logits", "aux_logits2", "aux_logits1")
    for field, m, t in zip(mc_out._fields, mc_out, tv_out):
        assert_relative(m.numpy_copy(), t.detach().numpy(), 1e-9, f"train {field}")

    upstream = [rng.standard_normal(tuple(t.shape)) for t in tv_out]
    run_backward(list(mc_out), [mc.from_numpy(g.copy()) for g in upstream])
    torch.autograd.backward(list(tv_out), [torch.from_numpy(g) for g in upstream])
    mc_params = dict(mc_model.named_parameters())
    tv_params = dict(tv_model.named_parameters())
    assert list(mc_params) == list(tv_params)
    worst = 0.0
    for name, p in tv_params.items():
        assert mc_params[name].grad is not None, f"no gradient for {name}"
        worst = max(worst, assert_relative(mc_params[name].grad.numpy(), p.grad.numpy(), 1e-9,
                                           f"gradient of {name}"))
    tv_buffers = dict(tv_model.named_buffers())
    for name, b in mc_model.named_buffers():
        assert_relative(b.numpy(), tv_buffers[name].numpy(), 1e-9, f"buffer {name}")
    print("worst gradient error", worst)


def test_eval_and_no_aux_return_plain_logits():
    model = mc.models.googlenet(num_classes=5, aux_logits=False).train()
    out = model(mc.randn(2, 3, 32, 32))
    assert isinstance(out, mc.Tensor) and out.shape == (2, 5)
