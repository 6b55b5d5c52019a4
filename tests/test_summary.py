"""mc.summary: the book's worked examples, the counting rules against torch's
flop counter, memory against what a real forward keeps alive (measured
with tracemalloc), argument errors, model state, no_init, and the
``models`` / ``summary`` commands. The zoo against torchvision's table
and the ResNet paper is in tests/models/test_summary_zoo.py."""
import gc
import os
import tracemalloc

import numpy
import pytest
import torch

import minicnn as mc
from minicnn import nn
from minicnn.__main__ import main
from minicnn.nn import init
from minicnn.nn.skip_init import no_init, skip_init


# -- the book's worked examples ------------------------------------------
def test_same_conv_on_an_rgb_image():
    """A 5x5 'same' conv with 200 filters on a 150 x 100 RGB image: (5*5*3 + 1)
    * 200 = 15,200 parameters, 200 * 150 * 100 outputs of 5*5*3 products
    each = 225 million multiplications, and a float32 output of
    200 * 150 * 100 * 4 bytes = 12 MB."""
    s = mc.summary(nn.Conv2d(3, 200, 5, padding="same"), (3, 150, 100))
    assert s.total_params == 15_200
    assert s.total_mult_adds == 225_000_000
    assert s.output_bytes == 12_000_000
    assert s.output_shape == (1, 200, 150, 100)
    (row,) = s.layers                                   # a single layer is its own one row
    assert (row.type, row.params, row.mult_adds, row.output_bytes) == ("Conv2d", 15_200, 225_000_000, 12_000_000)
    assert "12.00 MB" in str(s)


def test_inception_bottleneck():
    """5x5 conv 192 -> 32 channels on 28 x 28: 120M multiplications; a 1x1
    bottleneck to 16 channels first: 2.4M + 10M = 12.4M."""
    direct = mc.summary(nn.Conv2d(192, 32, 5, padding=2), (192, 28, 28))
    assert round(direct.total_mult_adds / 1e6) == 120                  # 120,422,400

    bottleneck = mc.summary(nn.Sequential(nn.Conv2d(192, 16, 1), nn.Conv2d(16, 32, 5, padding=2)),
                            (192, 28, 28))
    reduce, conv = bottleneck.layers
    assert round(reduce.mult_adds / 1e5) / 10 == 2.4                    # 2,408,448
    assert round(conv.mult_adds / 1e6) == 10                            # 10,035,200
    assert round(bottleneck.total_mult_adds / 1e5) / 10 == 12.4


# -- the counting rules against an independent count -----------------------
class _TorchModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=2, padding=1),
            torch.nn.BatchNorm2d(8),
            torch.nn.ReLU(),
            torch.nn.Conv2d(8, 12, 3, padding=2, dilation=2, groups=4, bias=False),
            torch.nn.Conv2d(12, 12, 5, padding=2, groups=12),
            torch.nn.ConvTranspose2d(12, 6, 3, stride=2, padding=1, output_padding=1, groups=3),
            torch.nn.MaxPool2d(2))
        self.fc = torch.nn.Linear(11, 7)

    def forward(self, x):
        return self.fc(self.features(x)[:, :, :, :11])


class _MinicnnModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 12, 3, padding=2, dilation=2, groups=4, bias=False),
            nn.Conv2d(12, 12, 5, padding=2, groups=12),
            nn.ConvTranspose2d(12, 6, 3, stride=2, padding=1, output_padding=1, groups=3),
            nn.MaxPool2d(2))
        self.fc = nn.Linear(11, 7)

    def forward(self, x):
        return self.fc(self.features(x)[:, :, :, :11])


def test_mult_adds_and_params_match_torch():
    """Strided, dilated, grouped and depthwise convs, a grouped transposed
    conv and a Linear on 4-D input: the multiply-adds are half of what
    torch's FlopCounterMode counts (it counts 2 FLOPs per multiply-add,
    bias and batch norm not at all), the parameters torch's numel()."""
    from torch.utils.flop_counter import FlopCounterMode
    torch_model = _TorchModel().eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        torch_model(torch.zeros(2, 3, 30, 26))
    s = mc.summary(_MinicnnModel(), (3, 30, 26), batch_size=2)
    assert s.total_mult_adds * 2 == counter.get_total_flops()
    assert s.total_params == sum(p.numel() for p in torch_model.parameters())
    # The rows add up to the totals, and a container's row to its children's.
    leaves = [layer for layer in s.layers if layer.is_leaf]
    assert sum(layer.mult_adds for layer in leaves) == s.total_mult_adds
    assert sum(layer.params for layer in leaves) == s.total_params
    features = s.layers[0]
    assert features.name == "features" and features.depth == 1
    assert features.mult_adds == sum(layer.mult_adds for layer in leaves if layer.name.startswith("features."))


def test_rows_shapes_and_table():
    s = mc.summary(mc.models.lenet5(), (1, 32, 32), batch_size=4)
    names = [layer.name for layer in s.layers]
    assert names[:3] == ["features", "features.0", "features.1"]
    conv = s.layers[1]
    assert (conv.type, conv.output_shape, conv.params) == ("Conv2d", (4, 6, 28, 28), 6 * 25 + 6)
    assert conv.mult_adds == 4 * 6 * 28 * 28 * 25
    assert conv.output_bytes == 4 * 6 * 28 * 28 * 4
    assert s.input_shape == (4, 1, 32, 32) and s.output_shape == (4, 10)
    table = str(s)
    assert "features.0 (Conv2d)" in table and "[4, 6, 28, 28]" in table
    assert "Total params: 61,706" in table
    shallow = str(mc.summary(mc.models.lenet5(), (1, 32, 32), depth=1))
    assert "features (Sequential)" in shallow and "features.0" not in shallow


def test_shared_module_params_counted_once():
    """A module called twice (weight sharing) shows its parameters once."""
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(5, 5)

        def forward(self, x):
            return self.fc(self.fc(x))

    s = mc.summary(Twice(), (5,), batch_size=3)
    first, second = s.layers
    assert (first.params, first.recursive) == (30, False)
    assert (second.params, second.recursive) == (0, True)
    assert s.total_params == 30
    assert s.total_mult_adds == 2 * 3 * 5 * 5
    assert "(recursive)" in str(s)


def test_lazy_layer_counted_after_its_first_call():
    s = mc.summary(nn.Sequential(nn.Flatten(), nn.LazyLinear(4)), (2, 3, 3))
    assert s.total_params == 18 * 4 + 4
    assert s.layers[1].params == 18 * 4 + 4


# -- memory against a real forward -----------------------------------------
_NUMPY = numpy.lib.tracemalloc_domain   # NumPy reports its array data to tracemalloc in this domain


def _array_bytes():
    """Bytes of NumPy array data allocated now (while tracemalloc traces)."""
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.DomainFilter(True, _NUMPY)])
    return sum(trace.size for trace in snapshot.traces)


def _measure(model, shape):
    """What a real forward of ``model`` on zeros of ``shape`` keeps alive:
    (array bytes alive after a training-mode forward while its graph is
    held, the most array bytes alive at any module call of a no_grad
    eval forward, tracemalloc's peak of that forward, scratch included)."""
    model.train()
    model(mc.zeros(*shape))                          # warm up: Numba compiles on first use
    model.eval()
    with mc.no_grad():
        model(mc.zeros(*shape))
    samples = None                                   # a list while the eval forward is sampled

    def sample(*args):
        if samples is not None:
            samples.append(_array_bytes())

    # Hooks before tracing starts, so that tracemalloc need not skip them.
    handles = [m.register_forward_pre_hook(sample) for m in model.modules()]
    handles += [m.register_forward_hook(sample) for m in model.modules()]
    gc.collect()
    tracemalloc.start()
    try:
        model.train()
        base = _array_bytes()
        x = mc.zeros(*shape)
        y = model(x)                                     # the graph lives as long as y
        training = _array_bytes() - base
        del x, y
        gc.collect()

        model.eval()
        base = _array_bytes()
        samples = []
        tracemalloc.reset_peak()
        start = tracemalloc.get_traced_memory()[0]
        x = mc.zeros(*shape)
        with mc.no_grad():
            y = model(x)
        peak = tracemalloc.get_traced_memory()[1] - start
        del x, y
        return training, max(samples) - base, peak
    finally:
        tracemalloc.stop()
        for handle in handles:
            handle.remove()


def _small_cnn():
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.5), nn.Linear(32 * 8 * 8, 10))


@pytest.mark.parametrize("build, shape", [
    (_small_cnn, (4, 3, 32, 32)),
    (mc.models.resnet18, (2, 3, 64, 64)),           # residual blocks
    (mc.models.mobilenet_v2, (2, 3, 64, 64)),       # ReLU6, depthwise convs, dropout
    pytest.param(mc.models.efficientnet_b0, (2, 3, 64, 64), marks=pytest.mark.slow),  # SiLU, SE, stochastic depth
    pytest.param(mc.models.densenet121, (2, 3, 64, 64), marks=pytest.mark.slow),      # concatenations
], ids=["small_cnn", "resnet18", "mobilenet_v2", "efficientnet_b0", "densenet121"])
def test_memory_matches_a_real_forward(build, shape):
    """The summary's inference and training memory against what a real
    forward of minicnn holds, measured by tracemalloc. The issue asks for
    10%; both sides count the same arrays, so they agree to the byte here,
    and 2% is what is asserted."""
    mc.manual_seed(0)
    model = build()
    s = mc.summary(model, shape[1:], batch_size=shape[0])
    training, inference, peak = _measure(model, shape)
    assert s.training_bytes == pytest.approx(training, rel=0.02)
    assert s.inference_bytes == pytest.approx(inference, rel=0.02)
    # Scratch inside the ops (an im2col tile, a Winograd chunk) comes on top of
    # the activations, so the true peak is above the summary's figure.
    assert peak >= s.inference_bytes


def test_memory_scales_with_batch_and_dtype():
    """Activations grow with the batch and the item size; what does not:
    batch norm's per-channel mean and 1/sigma (2 C floats per layer), and
    max pool's argmax and ReLU's mask (one byte per output, whatever the
    dtype)."""
    model = mc.models.resnet18()
    one = mc.summary(model, (3, 64, 64))
    four = mc.summary(model, (3, 64, 64), batch_size=4)
    assert four.inference_bytes == 4 * one.inference_bytes
    statistics = sum(2 * m.num_features * 4 for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert four.training_bytes == 4 * one.training_bytes - 3 * statistics
    double = mc.summary(model.double(), (3, 64, 64))
    assert double.dtype == mc.float64
    assert double.inference_bytes == 2 * one.inference_bytes
    argmax = 64 * 16 * 16                       # the stem's max pool output, (64, 16, 16), in bytes
    relu_masks = sum(int(numpy.prod(row.output_shape)) for row in one.layers if row.type == "ReLU")
    assert relu_masks > 0
    assert double.training_bytes == 2 * one.training_bytes - argmax - relu_masks


def test_training_memory_skipped_or_impossible():
    s = mc.summary(mc.models.resnet18(), (3, 64, 64), training_memory=False)
    assert s.training_bytes is None and "training_memory=False" in str(s)
    # Batch norm in training mode needs more than one value per channel:
    # inception_v3's auxiliary classifier reaches 1 x 1 at batch size 1.
    with no_init():
        model = mc.models.inception_v3()
    s = mc.summary(model, (3, 299, 299))
    assert s.training_bytes is None and "more than 1 value per channel" in s.training_note
    assert s.total_mult_adds > 0


# -- the model's state is left alone ---------------------------------------
def test_model_state_is_restored():
    mc.manual_seed(0)
    model = mc.models.mobilenet_v2()            # batch norm and dropout
    model.train()
    model.features[0].eval()
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    generator_state = mc.random.get_rng_state()
    mc.summary(model, (3, 32, 32), batch_size=2)
    assert model.training and not model.features[0].training and model.features[1].training
    after = model.state_dict()
    for key, value in before.items():
        numpy.testing.assert_array_equal(after[key].numpy(), value, err_msg=key)
    assert mc.random.get_rng_state() == generator_state
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


# -- bad arguments ---------------------------------------------------------
def test_bad_arguments():
    with pytest.raises(TypeError, match="model"):
        mc.summary(torch.nn.Linear(2, 2), (2,))
    with pytest.raises(ValueError, match="input_size.*batch_size"):
        mc.summary(nn.Conv2d(3, 4, 3), (1, 3, 8, 8))
    with pytest.raises(ValueError, match="input_size"):
        mc.summary(nn.Conv2d(3, 4, 3), ())
    with pytest.raises(TypeError, match="input_size"):
        mc.summary(nn.Conv2d(3, 4, 3), "3x8x8")
    with pytest.raises(TypeError, match="input_size"):
        mc.summary(nn.Conv2d(3, 4, 3), (3, 8.0, 8))
    with pytest.raises(ValueError, match="input_size"):
        mc.summary(nn.Conv2d(3, 4, 3), (3, 0, 8))
    with pytest.raises(ValueError, match="batch_size"):
        mc.summary(nn.Conv2d(3, 4, 3), (3, 8, 8), batch_size=0)
    with pytest.raises(ValueError, match="depth"):
        mc.summary(nn.Conv2d(3, 4, 3), (3, 8, 8), depth=-1)


# -- no_init ---------------------------------------------------------------
def test_no_init_builds_the_same_model_with_zeros():
    reference = mc.models.resnet18()
    with no_init():
        model = mc.models.resnet18()
    ref_state, state = reference.state_dict(), model.state_dict()
    assert list(state) == list(ref_state)
    for key, value in state.items():
        assert value.shape == ref_state[key].shape
    assert not any(p.detach().numpy().any() for p in model.parameters())
    model.load_state_dict(ref_state)                        # and it loads weights as usual
    numpy.testing.assert_array_equal(model.conv1.weight.detach().numpy(), reference.conv1.weight.detach().numpy())


def test_no_init_restores_the_initialisers():
    originals = (init.kaiming_uniform_, init.normal_)
    with pytest.raises(RuntimeError):
        with no_init():
            assert init.kaiming_uniform_ is not originals[0]
            raise RuntimeError("building failed")
    assert (init.kaiming_uniform_, init.normal_) == originals
    layer = nn.Linear(50, 50)
    assert layer.weight.detach().numpy().any()                       # initialised again outside the block
    layer = skip_init(nn.Linear, 50, 50)
    assert not layer.weight.detach().numpy().any()


def _resident_bytes():
    """This process's resident memory now (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads /proc/self/statm (Linux)")
def test_no_init_is_cheap_for_a_huge_model():
    """regnet_y_128gf has 644,812,894 parameters (torchvision's table):
    2.6 GB of float32, none of it written when built without init, so the
    resident memory hardly moves."""
    expected = 644_812_894
    before = _resident_bytes()
    with no_init():
        model = mc.models.regnet_y_128gf()
    assert sum(p.data.size for p in model.parameters()) == expected
    assert _resident_bytes() - before < 0.1 * 4 * expected


# -- the command line --------------------------------------------------------
def test_models_command(capsys):
    assert main(["models", "--filter", "resnet1"]) == 0
    out = capsys.readouterr().out
    # torchvision's table: resnet18 11,689,512, resnet101 44,549,160, resnet152 60,192,808,
    # wide_resnet101_2 126,886,696.
    for count in ("11,689,512", "44,549,160", "60,192,808", "126,886,696"):
        assert count in out
    listed = [name for name in mc.models.list_models() if "resnet1" in name]   # CIFAR's resnet110 too
    assert f"{len(listed)} models" in out and len(listed) >= 4 and "resnet50" not in out
    assert main(["models", "--filter", "no-such-model"]) == 1


@pytest.mark.slow
def test_models_command_lists_the_whole_zoo(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in mc.models.list_models():
        assert f"\n{name} " in out
    assert f"{len(mc.models.list_models())} models" in out
    assert "644,812,894" in out                              # regnet_y_128gf, as torchvision counts it


def test_summary_command(capsys):
    assert main(["summary", "lenet5"]) == 0                  # at its own input size, 1 x 32 x 32
    out = capsys.readouterr().out
    assert "[1, 1, 32, 32]" in out and "Total params: 61,706" in out
    assert main(["summary", "resnet18", "--input-size", "3", "64", "64", "--batch-size", "2",
                 "--depth", "1", "--no-training-memory"]) == 0
    out = capsys.readouterr().out
    assert "[2, 3, 64, 64]" in out and "Total params: 11,689,512" in out
    assert "layer1 (Sequential)" in out and "layer1.0" not in out
    assert main(["summary", "no_such_model"]) == 1
    assert "unknown model" in capsys.readouterr().err
    assert main(["summary", "lenet5", "--input-size", "3", "32", "32"]) == 1     # LeNet-5 takes 1 channel
    assert "(N, 1, 32, 32)" in capsys.readouterr().err
    assert main(["summary", "lenet5", "--batch-size", "0"]) == 1
    assert "batch_size" in capsys.readouterr().err


def test_in_place_layers_are_counted_and_left_in_place():
    """ResNet's ReLUs are in place: the training pass runs them out of
    place on its cut graph (an in-place op on a leaf that requires grad is
    refused, as in torch) and sets them back afterwards."""
    model = mc.models.resnet18()
    in_place = [m for m in model.modules() if getattr(m, "inplace", False)]
    assert in_place
    assert mc.summary(model, (3, 64, 64), batch_size=2).training_bytes > 0
    assert all(m.inplace is True for m in in_place)
