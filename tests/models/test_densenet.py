"""DenseNet-121/161/169/201 against torchvision: eval-mode logits and
feature maps at the smallest input (29 x 29) in float64 and float32, and
densenet121 in training mode (float64 logits, every parameter gradient,
running statistics) at 64 x 64, where the last block still has 2 x 2 maps
(at 1 x 1 a training-mode batch norm of batch 2 sees only two values per
channel and amplifies round-off)."""
import numpy
import pytest

import minicnn as mc
from zoo_check import build_pair, check_eval, check_train, check_weights_refused

NAMES = ["densenet121", "densenet161", "densenet169", "densenet201"]
# Not features.norm5: torchvision's forward applies an in-place ReLU to its
# output, which would change the recorded map afterwards.
LAYERS = ["features.pool0", "features.denseblock1", "features.transition1.conv",
          "features.denseblock3.denselayer2", "features.transition3", "features.denseblock4"]


@pytest.mark.parametrize("name", NAMES)
def test_registered_and_weights_refused(name):
    assert name in mc.models.list_models()
    check_weights_refused(getattr(mc.models, name))


def test_get_model_arguments():
    model = mc.models.get_model("densenet121", num_classes=10, drop_rate=0.1, memory_efficient=True)
    assert isinstance(model, mc.models.DenseNet)
    assert model.classifier.out_features == 10
    assert model.features.denseblock4.denselayer16.drop_rate == 0.1
    # 64 + 6*32 = 256 -> 128, + 12*32 = 512 -> 256, + 24*32 = 1024 -> 512, + 16*32 = 1024.
    assert model.classifier.in_features == 1024


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("name", NAMES)
def test_eval_parity_smallest_input(name, dtype):
    # drop_rate and memory_efficient change nothing in eval mode.
    kwargs = {"drop_rate": 0.2, "memory_efficient": True} if name == "densenet169" else {}
    mc_model, tv_model = build_pair(name, **kwargs)
    errors = check_eval(mc_model, tv_model, (1, 3, 29, 29), dtype, layers=LAYERS)
    print(name, errors)


def test_train_parity_densenet121():
    mc_model, tv_model = build_pair("densenet121")
    errors = check_train(mc_model, tv_model, (2, 3, 64, 64))
    print(errors)
