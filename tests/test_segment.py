"""Segmentation end to end: the task's loss and metric against torch and
mc.metrics, the colour overlay, ``python -m minicnn train --task segment``
on a few small scenes (the loss falls, --resume continues bit for bit)
and ``python -m minicnn segment`` writing the overlay PNG; bad masks."""
import numpy
import pytest
import torch
from PIL import Image

import minicnn as mc
from minicnn import metrics, segment
from minicnn import train as training
from minicnn.__main__ import main
from scene_training import install_small_scenes, train_interrupt_resume


def test_loss_is_torchs_cross_entropy_with_aux():
    rng = numpy.random.default_rng(0)
    out, aux = rng.standard_normal((2, 2, 5, 4, 6))
    mask = rng.integers(0, 5, (2, 4, 6))
    mask[0, 0] = 255
    loss = segment.segmentation_loss({"out": mc.tensor(out), "aux": mc.tensor(aux)}, mc.tensor(mask))
    t_mask = torch.from_numpy(mask)
    expected = (torch.nn.functional.cross_entropy(torch.from_numpy(out), t_mask, ignore_index=255)
                + 0.5 * torch.nn.functional.cross_entropy(torch.from_numpy(aux), t_mask, ignore_index=255))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    plain = segment.segmentation_loss(mc.tensor(out), mc.tensor(mask))       # a plain Tensor: no aux term
    assert plain.item() == pytest.approx(
        torch.nn.functional.cross_entropy(torch.from_numpy(out), t_mask, ignore_index=255).item(), rel=1e-12)


def test_metric_is_the_confusion_matrix_mean_iou():
    rng = numpy.random.default_rng(1)
    metric = segment.Segmentation(num_classes=4).metric()
    scores, masks = rng.standard_normal((3, 4, 4, 5, 5)), rng.integers(0, 4, (3, 4, 5, 5))
    for s, m in zip(scores, masks):
        metric.update({"out": mc.tensor(s)}, mc.tensor(m))
    cm = metrics.confusion_matrix(scores.argmax(2), masks, 4)
    assert metric.value == metrics.mean_iou(cm) and metric.counts["pixel_accuracy"] == metrics.pixel_accuracy(cm)


def test_masks_that_do_not_fit_are_refused():
    scores = mc.zeros(2, 11, 8, 8)
    with pytest.raises(ValueError, match=r"holds class 11, but the model predicts 11 classes \(0..10\)"):
        segment.segmentation_loss(scores, mc.tensor(numpy.full((2, 8, 8), 11)))
    with pytest.raises(ValueError, match=r"holds class -1"):
        segment.segmentation_loss(scores, mc.tensor(numpy.full((2, 8, 8), -1)))
    with pytest.raises(ValueError, match=r"mask has shape \(2,\), the scores \(2, 11, 8, 8\)"):
        segment.segmentation_loss(scores, mc.tensor([1, 2]))            # class labels, not masks
    with pytest.raises(TypeError, match="integer class indices"):
        segment.segmentation_loss(scores, mc.zeros(2, 8, 8))
    with pytest.raises(ValueError, match="holds class 12"):
        segment.Segmentation().metric().update(scores, mc.tensor(numpy.full((2, 8, 8), 12)))


def test_overlay_paints_classes_over_the_image():
    image = numpy.full((1, 2, 3), 0.5)
    mask = numpy.array([[0, 1, 10], [0, 0, 3]])
    picture = segment.overlay(image, mask, alpha=0.5)
    assert picture.shape == (2, 3, 3) and picture.dtype == numpy.uint8
    grey = round(0.5 * 255)
    assert (picture[0, 0] == grey).all() and (picture[1, 1] == grey).all()          # background unpainted
    for (i, j), c in (((0, 1), 1), ((0, 2), 10), ((1, 2), 3)):
        numpy.testing.assert_array_equal(picture[i, j], numpy.round(0.5 * 127.5 + 0.5 * segment.PALETTE[c]))
    with pytest.raises(ValueError, match="same H, W"):
        segment.overlay(image, mask[:, :2])


@pytest.fixture
def small_scenes(monkeypatch):
    """32 training and 8 test scenes; the function that installs them again."""
    return install_small_scenes(monkeypatch, training.DATASETS, segment.SceneMasks, 32)


@pytest.mark.slow
def test_training_lowers_the_loss_and_resumes(tmp_path, small_scenes, monkeypatch):
    full, resumed, path = train_interrupt_resume(tmp_path, monkeypatch, small_scenes, task="segment",
                                                 model="fcn8s_small", dataset="digit_scenes", epochs=3,
                                                 batch_size=16, lr=0.05)
    history = mc.load(str(tmp_path / "full.safetensors"))["history"]
    assert history[-1]["loss"] < 0.7 * history[0]["loss"]
    assert 0.0 <= full["test_mean_iou"] <= 1.0 and len(full["iou"]) == 11
    assert resumed["test_mean_iou"] == full["test_mean_iou"]

    # The segment command, with the checkpoint just trained.
    scenes = mc.datasets.digit_scenes(False, num_scenes=1, size=48)
    Image.fromarray((scenes.images[0, 0] * 255).round().astype(numpy.uint8)).save(tmp_path / "scene.png")
    out = tmp_path / "overlay.png"
    assert main(["segment", str(tmp_path / "scene.png"), "--model", "fcn8s_small", "--weights", path,
                 "--out", str(out), "--scale", "2"]) == 0
    picture = numpy.asarray(Image.open(out))
    assert picture.shape == (96, 96, 3)
    net = mc.models.fcn8s_small(num_classes=11)
    net.load_state_dict(mc.load(path)["model"])
    image = numpy.asarray(Image.open(tmp_path / "scene.png").convert("RGB"), numpy.float32).transpose(2, 0, 1) / 255
    expected = segment.overlay(image, segment.predict(net, image))
    numpy.testing.assert_array_equal(picture[::2, ::2], expected)


def test_segment_command_errors(tmp_path, capsys):
    assert main(["segment", str(tmp_path / "missing.png"), "--weights", str(tmp_path / "w.safetensors")]) == 2
    assert "error" in capsys.readouterr().err
