"""AlexNet against torchvision: eval-mode logits and feature maps at the
smallest input it accepts (63 x 63, where the features end at 1 x 1 and
the adaptive pool repeats that pixel 6 x 6 times). 61M parameters: checked
in float32 only, and marked slow."""
import numpy
import pytest

import minicnn as mc
from zoo_check import build_pair, check_eval, check_weights_refused


def test_registered():
    assert "alexnet" in mc.models.list_models()
    model = mc.models.get_model("alexnet", num_classes=10, dropout=0.2)
    assert isinstance(model, mc.models.AlexNet)
    assert model.classifier[6].out_features == 10 and model.classifier[0].p == 0.2


def test_weights_refused():
    check_weights_refused(mc.models.alexnet)


def test_input_too_small():
    # The check comes before any layer runs, so no model (over 60M
    # parameters) needs building to see it.
    with pytest.raises(ValueError, match="H, W >= 63"):
        mc.models.AlexNet.forward(None, mc.zeros(1, 3, 62, 62))


@pytest.mark.slow
def test_eval_parity():
    mc_model, tv_model = build_pair("alexnet")
    print(check_eval(mc_model, tv_model, (1, 3, 63, 63), numpy.float32,
                     layers=["features.2", "features.12", "avgpool", "classifier.5"]))
