"""The CIFAR ResNets and RevNets: sizes against the papers' tables, depth
as the papers count it, RevNet gradients against the same network with
stored activations, checkpointed ResNet gradients against the plain run,
and a short training run on the digits (slow; benchmarks/memory_depth.py
has the longer one)."""
import numpy
import pytest

import minicnn as mc
from minicnn import nn
from minicnn.models.cifar_resnet import CifarResNet
from minicnn.models.revnet import RevNet

from benchmarks.memory_depth import digits_accuracies

# Parameters in millions, 10 classes: He et al. 2015 (table 6) and 2016
# (table 2) for the ResNets, Gomez et al. 2017 (table 1) for the RevNets.
PAPER_PARAMS = {
    "resnet20": 0.27, "resnet32": 0.46, "resnet56": 0.85, "resnet110": 1.7, "resnet164": 1.7,
    "revnet38": 0.46, "revnet110": 1.73, "revnet164": 1.75,
}


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS))
def test_parameter_counts_and_depth_match_the_papers(name):
    model = mc.models.get_model(name)
    params = sum(p.data.size for p in model.parameters()) / 1e6
    # RevNet-164 comes out 5% under the paper's 1.75M (the paper does not
    # give its bottleneck layout in full); the others within 3%.
    assert abs(params - PAPER_PARAMS[name]) <= (0.06 if name == "revnet164" else 0.03) * PAPER_PARAMS[name], params
    # The papers' depth: weighted layers on the main path (convs and the
    # classifier; projection shortcuts do not count).
    layers = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len([n for n in layers if "shortcut" not in n]) == int(name[6:]), layers


def test_forward_shapes_and_registry():
    x = mc.randn(2, 3, 8, 8)
    for name in ("resnet20", "revnet38"):
        assert name in mc.models.list_models()
        model = mc.models.get_model(name, num_classes=7).eval()
        with mc.no_grad():
            assert model(x).shape == (2, 7)


def _gradients(model, x, gy):
    model.zero_grad(set_to_none=True)
    mc.manual_seed(3)
    y = model(x)
    y.backward(gy)
    return [y.data] + [p.grad.data for p in model.parameters()] + [b.data.copy() for b in model.buffers()]


def test_revnet_gradients_equal_the_stored_activation_run():
    """The same RevNet with every ReversibleSequence replaced by nn.Sequential
    of its blocks stores its activations; float64 rtol 1e-10: reconstruction
    rounds (tests/nn/test_reversible.py), here over 7 blocks and 3 stages."""
    mc.manual_seed(0)
    model = RevNet((3, 2, 2), (8, 8, 16, 16)).double()
    x = mc.tensor(numpy.random.default_rng(0).standard_normal((2, 3, 8, 8)))
    gy = mc.tensor(numpy.random.default_rng(1).standard_normal((2, 10)))
    state = {k: v.clone() for k, v in model.state_dict().items()}   # state_dict shares the buffers
    rebuilt = _gradients(model, x, gy)
    model.load_state_dict(state)
    for stage in (model.stage1, model.stage2, model.stage3):
        for k, m in enumerate(stage):
            if isinstance(m, nn.ReversibleSequence):
                stage[k] = nn.Sequential(*m.blocks)
    stored = _gradients(model, x, gy)
    for got, expected in zip(rebuilt, stored):
        numpy.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12 * numpy.abs(expected).max())


def test_checkpointed_resnet_is_bit_identical():
    x = mc.tensor(numpy.random.default_rng(0).standard_normal((2, 3, 8, 8)))
    gy = mc.tensor(numpy.random.default_rng(1).standard_normal((2, 10)))
    results = []
    for segments in (0, "sqrt"):
        mc.manual_seed(0)
        results.append(_gradients(mc.models.resnet20(checkpoint_segments=segments).double(), x, gy))
    for got, expected in zip(*results):
        numpy.testing.assert_array_equal(got, expected)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"depth must be 6n \+ 2 for n >= 1 with bottleneck=False, got 21"):
        CifarResNet(21)
    with pytest.raises(ValueError, match=r"depth must be 9n \+ 2"):
        CifarResNet(50, bottleneck=True)
    with pytest.raises(ValueError, match=r"checkpoint_segments must be 0, 'sqrt' or an int up to the number of units "
                                         r"\(9\), got 10"):
        mc.models.resnet20(checkpoint_segments=10)
    with pytest.raises(ValueError, match="units must be 3 ints"):
        RevNet((3, 3))
    with pytest.raises(ValueError, match="channels must be 4 even ints"):
        RevNet(channels=(32, 33, 64, 112))
    with pytest.raises(ValueError, match=r"expects input of shape \(N, 3, H, W\)"):
        mc.models.revnet38()(mc.randn(2, 1, 8, 8))


@pytest.mark.slow
def test_revnet_and_resnet_learn_the_digits_alike():
    """RevNet and ResNet of depth 14, 3 epochs on the 8x8 digits from each
    of 3 seeds (the benchmark trains longer, over more depths): each above
    0.8 (chance: 0.1), their mean accuracies within 0.04. One seed was too
    few: its gap moved with the CPU's float32 round-off (under 0.05 on a
    Zen 4, 0.056 on a Zen 3, where the 3 seeds' means differ by 0.019), and
    so does a single run's accuracy (RevNet from seed 1: 0.86 on one Zen 4
    host, above 0.9 on the others; the means there 0.92 and 0.95)."""
    results = digits_accuracies(pairs=((14, (1, 1, 1)),), seeds=(0, 1, 2), epochs=3)
    assert min(acc for runs in results.values() for acc in runs.values()) > 0.8, results
    mean = {name: numpy.mean([runs[name] for runs in results.values()]) for name in ("revnet", "resnet")}
    assert abs(mean["revnet"] - mean["resnet"]) < 0.04, results
