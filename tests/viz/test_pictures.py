"""mc.viz pictures and their numbers: the arrays behind each figure are
checked against computations made here (a filter grid holds the filters,
feature maps equal the layer's activation, saliency equals the gradient
by finite differences and by torch, Grad-CAM equals a hand computation and
torch's), every rendered PNG has visible content, and ``train`` writes its
history plot next to its checkpoint."""
import io
import sys

import numpy
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.image  # noqa: E402
import torch  # noqa: E402

import minicnn as mc  # noqa: E402
from minicnn import nn  # noqa: E402
from minicnn import train as training  # noqa: E402
from minicnn.__main__ import main  # noqa: E402
from minicnn.utils.data import Subset  # noqa: E402
from minicnn.viz import attribution, pictures  # noqa: E402


def rendered(fig):
    """The figure as RGBA pixels, written as PNG and read back."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    buffer.seek(0)
    return matplotlib.image.imread(buffer, format="png")


def assert_not_blank(fig):
    pixels = rendered(fig)
    assert pixels.ndim == 3 and pixels.shape[0] > 50 and pixels.shape[1] > 50
    assert pixels[..., :3].var() > 1e-4


def images_of(fig):
    """The arrays of every image drawn on visible axes, in axes order."""
    return [numpy.asarray(image.get_array()) for ax in fig.axes for image in ax.get_images()]


def set_weights(module, rng):
    """Fill every parameter of ``module`` with seeded float64 normals."""
    for p in module.parameters():
        p.data[...] = rng.standard_normal(p.shape)
    return module


def torch_copy(model, torch_model):
    """``torch_model`` with ``model``'s parameters (same names), float64."""
    torch_model = torch_model.double()
    with torch.no_grad():
        for name, p in torch_model.named_parameters():
            p.copy_(torch.from_numpy(numpy.array(dict(model.named_parameters())[name].data)))
    return torch_model.eval()


# -- filters -----------------------------------------------------------------
def test_filter_grid_holds_each_filter_scaled_to_unit_range(rng):
    w = rng.standard_normal((5, 2, 3, 4))
    w[3] = 0.25                                      # a constant filter
    fig = pictures.filters(mc.tensor(w), ncols=2)
    shown = images_of(fig)
    assert len(shown) == 5
    for o in range(5):
        mean = w[o].mean(axis=0)
        expected = numpy.full((3, 4), 0.5) if o == 3 else (mean - mean.min()) / (mean.max() - mean.min())
        numpy.testing.assert_allclose(shown[o], expected, rtol=1e-12, atol=1e-12)
        numpy.testing.assert_allclose(fig.filters_shown[o], expected, rtol=1e-12, atol=1e-12)
    # 5 filters in rows of 2: a 3 x 2 grid whose sixth cell is empty.
    visible = [ax for ax in fig.axes if ax.get_images()]
    assert [ax.get_subplotspec().get_geometry()[:2] for ax in visible] == [(3, 2)] * 5
    assert len(fig.axes) == 6
    assert_not_blank(fig)


def test_filters_of_a_conv_module_and_rgb_filters(rng):
    conv = set_weights(nn.Conv2d(3, 4, 3), rng)
    fig = pictures.filters(conv)
    w = numpy.array(conv.weight.data, dtype=numpy.float64)
    for o, image in enumerate(images_of(fig)):
        rgb = w[o].transpose(1, 2, 0)
        assert image.shape == (3, 3, 3)
        numpy.testing.assert_allclose(image, (rgb - rgb.min()) / (rgb.max() - rgb.min()), rtol=1e-6, atol=1e-7)
    assert len(images_of(fig)) == 4
    assert_not_blank(fig)


def test_filters_refuses_what_is_not_a_conv_weight():
    with pytest.raises(ValueError, match=r"\(O, C, KH, KW\).*\(3, 4\)"):
        pictures.filters(mc.randn(3, 4))
    with pytest.raises(TypeError, match="conv module or a weight Tensor"):
        pictures.filters(numpy.zeros((1, 1, 3, 3)))
    with pytest.raises(TypeError, match="ReLU"):
        pictures.filters(nn.ReLU())
    with pytest.raises(ValueError, match="ncols"):
        pictures.filters(mc.randn(2, 1, 3, 3), ncols=0)


# -- feature maps --------------------------------------------------------------
def small_convnet(rng):
    return set_weights(nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3), nn.ReLU()),
                       rng)


def test_feature_maps_are_the_layers_activation(rng):
    model = small_convnet(rng)
    image = mc.tensor(rng.standard_normal((1, 9, 9)).astype(numpy.float32))
    expected = model[1](model[0](image.reshape(1, 1, 9, 9))).detach().numpy()[0]   # after the first ReLU
    fig = pictures.feature_maps(model, image, "1", max_maps=4)
    shown = images_of(fig)
    assert len(shown) == 4
    for k in range(4):
        numpy.testing.assert_array_equal(shown[k], expected[k])
    numpy.testing.assert_array_equal(fig.maps_shown, expected[:4])
    assert_not_blank(fig)

    # The layer given as a module; the whole activation when max_maps allows.
    fig = pictures.feature_maps(model, image.reshape(1, 1, 9, 9), model[2])
    expected = model[2](model[1](model[0](image.reshape(1, 1, 9, 9)))).detach().numpy()[0]
    assert len(images_of(fig)) == 5
    numpy.testing.assert_array_equal(numpy.stack(images_of(fig)), expected)
    assert not model[2]._forward_hooks, "the hook is removed afterwards"


def test_feature_maps_run_in_eval_mode_without_a_graph_and_restore_the_mode(rng):
    model = set_weights(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Dropout(0.9)), rng)
    model.train()
    image = mc.randn(1, 6, 6)
    fig = pictures.feature_maps(model, image, "1")
    # In training mode dropout would zero 90% of the values; in eval mode
    # it passes the convolution's output through unchanged.
    with mc.no_grad():
        expected = model[0](image.reshape(1, 1, 6, 6)).numpy()[0]
    numpy.testing.assert_array_equal(fig.maps_shown, expected)
    assert model.training and model[1].training


def test_feature_maps_refuses_bad_layers_and_images(rng):
    model = small_convnet(rng)
    image = mc.randn(1, 9, 9)
    with pytest.raises(ValueError, match="no layer named 'features'"):
        pictures.feature_maps(model, image, "features")
    with pytest.raises(ValueError, match="not a submodule"):
        pictures.feature_maps(model, image, nn.ReLU())
    with pytest.raises(ValueError, match=r"\(C, H, W\) or \(1, C, H, W\).*\(2, 1, 9, 9\)"):
        pictures.feature_maps(model, mc.randn(2, 1, 9, 9), "0")
    with pytest.raises(ValueError, match="max_maps"):
        pictures.feature_maps(model, image, "0", max_maps=0)
    flat = nn.Sequential(nn.Flatten(), nn.Linear(81, 2))
    with pytest.raises(ValueError, match=r"\(1, K, h, w\)"):
        pictures.feature_maps(flat, image, "1")


# -- saliency ------------------------------------------------------------------
def tiny_classifier(rng):
    """Conv -> tanh -> linear in float64, with seeded weights."""
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 3 * 3, 4))
    for p in model.parameters():
        p.data = rng.standard_normal(p.shape)
    return model


def torch_tiny_classifier(model):
    return torch_copy(model, torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Tanh(), torch.nn.Flatten(),
                                                 torch.nn.Linear(2 * 3 * 3, 4)))


def test_saliency_is_the_largest_absolute_pixel_gradient(rng):
    model = tiny_classifier(rng)
    x = rng.standard_normal((3, 5, 5))
    result = attribution.saliency_map(model, mc.tensor(x), target=2)

    # Central finite differences of the class-2 score, one pixel at a time.
    def score(array):
        with mc.no_grad():
            return model(mc.tensor(array[None])).numpy()[0, 2]
    gradient = numpy.zeros_like(x)
    eps = 1e-6
    for index in numpy.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += eps
        down[index] -= eps
        gradient[index] = (score(up) - score(down)) / (2 * eps)
    assert result.shape == (5, 5)
    numpy.testing.assert_allclose(result, numpy.abs(gradient).max(axis=0), rtol=1e-6, atol=1e-9)

    # torch's autograd on the same network.
    xt = torch.tensor(x[None], requires_grad=True)
    torch_tiny_classifier(model)(xt)[0, 2].backward()
    numpy.testing.assert_allclose(result, xt.grad[0].abs().amax(dim=0).numpy(), rtol=1e-10, atol=1e-12)


def test_saliency_defaults_to_the_predicted_class_and_leaves_the_model_alone(rng):
    model = tiny_classifier(rng)
    x = mc.tensor(rng.standard_normal((1, 3, 5, 5)))
    with mc.no_grad():
        predicted = int(model(x).numpy()[0].argmax())
    numpy.testing.assert_array_equal(attribution.saliency_map(model, x),
                                     attribution.saliency_map(model, x, target=predicted))
    assert all(p.grad is None for p in model.parameters()), "no parameter gradient accumulates"
    assert model.training
    fig = pictures.saliency(model, x)
    numpy.testing.assert_array_equal(fig.saliency_map, attribution.saliency_map(model, x))
    assert any(numpy.array_equal(image, fig.saliency_map) for image in images_of(fig))
    assert f"class {predicted}" in fig.axes[1].get_title()
    assert_not_blank(fig)
    with pytest.raises(ValueError, match=r"target must be a class index in \[0, 4\), got 4"):
        attribution.saliency_map(model, x, target=4)
    with pytest.raises(TypeError, match="image must be a Tensor"):
        attribution.saliency_map(model, numpy.zeros((3, 5, 5)))


# -- Grad-CAM ------------------------------------------------------------------
def conv2d_by_hand(x, w, b, stride, padding):
    """A direct convolution (C, H, W) * (O, C, KH, KW) with explicit loops."""
    x = numpy.pad(x, ((0, 0), (padding, padding), (padding, padding)))
    o, _, kh, kw = w.shape
    oh, ow = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    y = numpy.empty((o, oh, ow))
    for k in range(o):
        for i in range(oh):
            for j in range(ow):
                patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw]
                y[k, i, j] = (patch * w[k]).sum() + b[k]
    return y


def test_grad_cam_matches_a_hand_computation(rng):
    """conv (stride 2) -> ReLU [target] -> global average pool -> linear:
    d s_c / d A[k, i, j] = W[c, k] / (h w) everywhere, so Grad-CAM's weights
    are W[c, k] / (h w) and the map is relu(sum_k W[c, k] A_k / (h w)),
    upsampled (align_corners=False bilinear: each output pixel reads the
    input at (i + 0.5) / 2 - 0.5, clamped at 0) and divided by its max."""
    model = nn.Sequential(nn.Conv2d(1, 3, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(3, 4))
    for p in model.parameters():
        p.data = rng.standard_normal(p.shape)
    x = rng.standard_normal((1, 8, 8))
    conv, fc = model[0], model[4]
    a = numpy.maximum(conv2d_by_hand(x, conv.weight.data, conv.bias.data, 2, 1), 0)     # (3, 4, 4)
    scores = fc.weight.data @ a.mean(axis=(1, 2)) + fc.bias.data
    for c in range(4):
        cam = numpy.maximum(numpy.tensordot(fc.weight.data[c] / 16, a, axes=1), 0)        # (4, 4)
        # Bilinear 4 -> 8, align_corners=False, written out along each axis.
        source = numpy.clip((numpy.arange(8) + 0.5) / 2 - 0.5, 0, 3)
        low = numpy.floor(source).astype(int)
        high = numpy.minimum(low + 1, 3)
        t = source - low
        rows = cam[low] * (1 - t)[:, None] + cam[high] * t[:, None]
        up = rows[:, low] * (1 - t) + rows[:, high] * t
        expected = up / up.max() if up.max() > 0 else numpy.zeros((8, 8))
        result = attribution.grad_cam_map(model, mc.tensor(x), "1", class_index=c)
        assert result.shape == (8, 8)
        numpy.testing.assert_allclose(result, expected, rtol=1e-10, atol=1e-12)
    # The default class is the predicted one.
    numpy.testing.assert_array_equal(attribution.grad_cam_map(model, mc.tensor(x), model[1]),
                                     attribution.grad_cam_map(model, mc.tensor(x), "1",
                                                              class_index=int(scores.argmax())))


def test_grad_cam_matches_torch_autograd_with_a_nonlinear_head(rng):
    """After the target layer the score depends on position (conv, tanh,
    linear), so the gradient is not uniform: torch's autograd gives it."""
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 3, 3),
                          nn.Tanh(), nn.Flatten(), nn.Linear(3 * 3 * 3, 5))
    for p in model.parameters():
        p.data = rng.standard_normal(p.shape)
    reference = torch_copy(model, torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Conv2d(4, 3, 3),
        torch.nn.Tanh(), torch.nn.Flatten(), torch.nn.Linear(3 * 3 * 3, 5)))
    x = rng.standard_normal((2, 10, 10))
    for c in range(5):
        a = reference[:3](torch.tensor(x[None]))                         # (1, 4, 5, 5)
        a.retain_grad()
        reference[3:](a)[0, c].backward()
        weights = a.grad.mean(dim=(2, 3), keepdim=True)
        cam = torch.relu((weights * a).sum(dim=1, keepdim=True))
        cam = torch.nn.functional.interpolate(cam, size=(10, 10), mode="bilinear", align_corners=False)[0, 0]
        expected = (cam / cam.max() if cam.max() > 0 else torch.zeros_like(cam)).detach().numpy()
        result = attribution.grad_cam_map(model, mc.tensor(x), "2", class_index=c)
        numpy.testing.assert_allclose(result, expected, rtol=1e-10, atol=1e-12)
    assert all(p.grad is None for p in model.parameters())
    assert not model[2]._forward_hooks


def test_grad_cam_is_zero_when_nothing_argues_for_the_class(rng):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2))
    model[0].weight.data[...] = 0.0
    model[0].bias.data[...] = 1.0                     # A = 1 everywhere
    model[4].weight.data[...] = -1.0                  # every channel lowers every score
    cam = attribution.grad_cam_map(model, mc.ones(1, 6, 6), "1", class_index=0)
    numpy.testing.assert_array_equal(cam, numpy.zeros((6, 6)))


def test_grad_cam_figure_and_errors(rng):
    model = mc.models.lenet5()
    image = mc.tensor(rng.standard_normal((1, 32, 32)).astype(numpy.float32))
    fig = pictures.grad_cam(model, image, "features.3")
    numpy.testing.assert_array_equal(fig.cam, attribution.grad_cam_map(model, image, "features.3"))
    assert any(numpy.array_equal(shown, fig.cam) for shown in images_of(fig))
    assert 0 <= fig.cam.min() and fig.cam.max() <= 1 and fig.cam.shape == (32, 32)
    assert_not_blank(fig)
    with pytest.raises(ValueError, match=r"\(1, K, h, w\)"):
        attribution.grad_cam_map(model, image, "classifier")
    with pytest.raises(ValueError, match="class_index"):
        attribution.grad_cam_map(model, image, "features.3", class_index=-1)
    with pytest.raises(TypeError, match="model must be a Module"):
        attribution.grad_cam_map(lambda x: x, image, nn.ReLU())


# -- history -----------------------------------------------------------------------
HISTORY = [dict(loss=2.1, train_accuracy=0.3, test_accuracy=0.35), dict(loss=0.9, train_accuracy=0.7,
                                                                          test_accuracy=0.72),
           dict(loss=0.4, train_accuracy=0.9, test_accuracy=0.88)]


def test_history_plots_each_series_per_epoch(tmp_path):
    path = tmp_path / "run.png"
    fig = pictures.history(HISTORY, path=str(path))
    loss_ax, acc_ax = fig.axes
    (loss_line,) = loss_ax.get_lines()
    train_line, test_line = acc_ax.get_lines()
    numpy.testing.assert_array_equal(loss_line.get_xdata(), [1, 2, 3])
    numpy.testing.assert_array_equal(loss_line.get_ydata(), [2.1, 0.9, 0.4])
    numpy.testing.assert_array_equal(train_line.get_ydata(), [0.3, 0.7, 0.9])
    numpy.testing.assert_array_equal(test_line.get_ydata(), [0.35, 0.72, 0.88])
    pixels = matplotlib.image.imread(str(path))
    assert pixels[..., :3].var() > 1e-4
    assert_not_blank(fig)
    with pytest.raises(ValueError, match="non-empty list"):
        pictures.history([])
    with pytest.raises(ValueError, match="entry 1 .*test_accuracy"):
        pictures.history([HISTORY[0], dict(loss=1.0, train_accuracy=0.5)])


@pytest.fixture
def tiny_digits(monkeypatch):
    """The real digits pipeline on 48 training and 16 test images."""
    def tiny():
        train_set, test_set = training.digits_32x32()
        train_part, test_part = Subset(train_set, range(48)), Subset(test_set, range(16))
        train_part.classes = test_part.classes = train_set.classes
        return train_part, test_part
    monkeypatch.setitem(training.DATASETS, "digits", tiny)


def test_train_writes_the_history_plot_next_to_its_checkpoint(tmp_path, tiny_digits):
    checkpoint = tmp_path / "runs" / "lenet.safetensors"
    assert main(["train", "--checkpoint", str(checkpoint), "--epochs", "2", "--batch-size", "16",
                 "--no-progress"]) == 0
    png = tmp_path / "runs" / "lenet.history.png"
    assert training.history_plot_path(str(checkpoint)) == str(png)
    pixels = matplotlib.image.imread(str(png))
    assert pixels[..., :3].var() > 1e-4
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["lenet.history.png", "lenet.safetensors"]


def test_train_without_matplotlib_logs_one_line_and_draws_nothing(tmp_path, tiny_digits, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)      # import matplotlib now raises ImportError
    lines = []
    training.train(epochs=2, batch_size=16, checkpoint=str(tmp_path / "c.safetensors"), progress=False,
                   log=lines.append)
    assert [line for line in lines if "not installed" in line] == [
        "matplotlib is not installed: no history plot (pip install 'minicnn[viz]' to get one)"]
    assert not (tmp_path / "c.history.png").exists()
