"""SqueezeNet 1.0 and 1.1 against torchvision: eval-mode logits and feature
maps in float64 and float32, at their smallest inputs (21 x 21 and
17 x 17, where every ceil-mode pool keeps a partial window) and at 64 x 64."""
import numpy
import pytest

import minicnn as mc
from zoo_check import build_pair, check_eval, check_weights_refused

SMALLEST = {"squeezenet1_0": 21, "squeezenet1_1": 17}
# Not the convs themselves: torchvision applies their ReLUs in place, which
# would change the output its hook recorded.
LAYERS = ["features.2", "features.3.squeeze_activation", "features.3", "features.12", "classifier.2"]


def test_registered():
    for name in SMALLEST:
        assert name in mc.models.list_models()
        model = mc.models.get_model(name, num_classes=10)
        assert isinstance(model, mc.models.SqueezeNet) and model.classifier[1].out_channels == 10
    with pytest.raises(ValueError, match="1_0 or 1_1"):
        mc.models.SqueezeNet("1_2")


@pytest.mark.parametrize("name", SMALLEST)
def test_weights_refused(name):
    check_weights_refused(getattr(mc.models, name))


def test_init_scheme():
    """torchvision's: convs kaiming_uniform_ with its defaults (fan_in,
    leaky_relu of slope a=0: gain sqrt(2)), the final conv N(0, 0.01^2),
    biases zero."""
    mc.manual_seed(0)
    model = mc.models.squeezenet1_1()
    w = model.features[12].expand3x3.weight.detach().numpy()     # (256, 64, 3, 3)
    bound = numpy.sqrt(3) * numpy.sqrt(2) / numpy.sqrt(64 * 9)
    assert 0.99 * bound < numpy.abs(w).max() <= bound * (1 + 1e-6)
    final = model.classifier[1].weight.detach().numpy()
    assert abs(final.std() - 0.01) < 0.0005
    assert all((m.bias.detach().numpy() == 0).all() for m in model.modules() if isinstance(m, mc.nn.Conv2d))


@pytest.mark.parametrize("name", SMALLEST)
@pytest.mark.parametrize("size", ["smallest", 64])
def test_eval_parity(name, size):
    size = SMALLEST[name] if size == "smallest" else size
    mc_model, tv_model = build_pair(name)
    for dtype in (numpy.float64, numpy.float32):
        print(name, size, check_eval(mc_model, tv_model, (2, 3, size, size), dtype, layers=LAYERS))
