"""Inception v3 against torchvision: eval-mode logits and feature maps at
the smallest input (75 x 75), the auxiliary classifier on its 17 x 17 map
(the whole net would need 299 x 299 input for it: too slow here), and
the training-mode outputs (InceptionOutputs) with a small stand-in
auxiliary head that works at 75 x 75."""
import numpy
import pytest
import torch
import torchvision

import minicnn as mc
from parity import check_parity
from zoo_check import assert_relative, build_pair, check_eval, check_weights_refused

LAYERS = ["Conv2d_2b_3x3", "maxpool2", "Mixed_5b", "Mixed_6a", "Mixed_6e.branch7x7dbl_5", "Mixed_7c"]


def test_registered():
    assert "inception_v3" in mc.models.list_models()
    model = mc.models.get_model("inception_v3", num_classes=10, aux_logits=False, init_weights=False)
    assert isinstance(model, mc.models.Inception3)
    assert model.AuxLogits is None and model.fc.out_features == 10


def test_weights_refused():
    check_weights_refused(mc.models.inception_v3)


@pytest.fixture(scope="module")
def pair():
    return build_pair("inception_v3", init_weights=True, transform_input=True)


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_eval_parity_smallest_input(pair, dtype):
    errors = check_eval(*pair, (1, 3, 75, 75), dtype, layers=LAYERS)
    print(errors)


def test_aux_classifier_parity():
    """InceptionAux in training mode (batch norm on batch statistics) on
    the 17 x 17 map it is built for: output and input gradient."""
    torch.manual_seed(0)
    tv_aux = torchvision.models.inception.InceptionAux(768, 10).double()
    mc_aux = mc.models.inception.InceptionAux(768, 10)
    mc_aux.load_state_dict(tv_aux.state_dict())
    mc_aux.double()
    x = numpy.random.default_rng(0).standard_normal((2, 768, 17, 17))
    check_parity(mc_aux, tv_aux, [x], dtype=numpy.float64, rtol=1e-9, atol=1e-9)


def test_train_outputs_with_aux_logits():
    """Training mode returns InceptionOutputs(logits, aux_logits). The real
    auxiliary head needs a 17 x 17 map; here both models get the same small
    head (global pool + linear) so that 75 x 75 input works, and dropout is
    off so both compute the same."""
    mc_model, tv_model = build_pair("inception_v3", init_weights=False, dropout=0.0, num_classes=10)
    tv_model.AuxLogits = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                             torch.nn.Linear(768, 10))
    mc_model.AuxLogits = mc.nn.Sequential(mc.nn.AdaptiveAvgPool2d(1), mc.nn.Flatten(), mc.nn.Linear(768, 10))
    mc_model.AuxLogits.load_state_dict(tv_model.AuxLogits.state_dict())
    mc_model.double().train()
    tv_model.double().train()
    x = numpy.random.default_rng(0).standard_normal((4, 3, 75, 75))
    mc_out = mc_model(mc.from_numpy(x.copy()))
    with torch.no_grad():
        tv_out = tv_model(torch.from_numpy(x))
    assert isinstance(mc_out, mc.models.InceptionOutputs)
    assert mc_out._fields == tv_out._fields == ("logits", "aux_logits")
    for field, m, t in zip(mc_out._fields, mc_out, tv_out):
        print(field, assert_relative(m.numpy_copy(), t.numpy(), 1e-9, f"train {field}"))

