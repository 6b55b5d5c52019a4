"""The detect task and command (minicnn/detect.py) and the book's YOLO-style
detector (mc.models.detection.yolo_small): target encoding, the loss, the
detections' format, a short training run that resumes, the PNG of boxes."""
import math

import numpy
import pytest
from PIL import Image

import minicnn as mc
from minicnn import detect
from minicnn import train as training
from minicnn.__main__ import main
from minicnn.models.detection.yolo import NO_OBJECT, decode_boxes, encode_targets, yolo_small

from scene_training import install_small_scenes, train_interrupt_resume


def test_encoding_puts_a_box_in_the_cell_of_its_centre():
    # Centre (20, 24), size 20 x 8: cell row 24 // 8 = 3, column 20 // 8 = 2.
    grid = encode_targets([{"boxes": numpy.array([[10.0, 20.0, 30.0, 28.0]]), "labels": numpy.array([4])}],
                          (8, 8), stride=8, prior=16.0)
    assert grid["objectness"].sum() == 1 and grid["objectness"][0, 3, 2] == 1
    numpy.testing.assert_allclose(grid["boxes"][0, :, 3, 2], [0.5, 0.0, math.log(20 / 16), math.log(8 / 16)],
                                  rtol=1e-6)
    assert grid["labels"][0, 3, 2] == 3 and (grid["labels"] == NO_OBJECT).sum() == 63


def test_encoding_then_decoding_gives_the_boxes_back():
    scenes = mc.datasets.digit_scenes(True, num_scenes=20, size=64)
    targets = [{"boxes": b, "labels": l} for b, l in zip(scenes.boxes, scenes.labels)]
    grid = encode_targets(targets, (8, 8), stride=8, prior=16.0)
    decoded = decode_boxes(grid["boxes"].astype(numpy.float64), stride=8, prior=16.0)
    for n, target in enumerate(targets):
        rows, cols = numpy.nonzero(grid["objectness"][n])
        assert len(rows) == len(target["boxes"])                      # digit scenes: one centre per cell
        found = sorted(map(tuple, numpy.round(decoded[n, rows, cols], 4)))
        numpy.testing.assert_allclose(found, sorted(map(tuple, target["boxes"].astype(numpy.float64))), atol=1e-4)
        labels = sorted(grid["labels"][n, rows, cols] + 1)
        assert labels == sorted(target["labels"])


def test_shared_cell_keeps_the_larger_box():
    boxes = numpy.array([[0.0, 0.0, 15.0, 15.0], [4.0, 4.0, 10.0, 10.0]])
    grid = encode_targets([{"boxes": boxes, "labels": numpy.array([1, 2])}], (2, 2), stride=8, prior=16.0)
    assert grid["objectness"].sum() == 1 and grid["labels"][0, 0, 0] == 0        # label 1, the 15 x 15 box


def small_batch(n=8, size=32):
    scenes = mc.datasets.digit_scenes(True, num_scenes=n, size=size)
    targets = [{"boxes": mc.tensor(b), "labels": mc.tensor(l)} for b, l in zip(scenes.boxes, scenes.labels)]
    return mc.tensor(scenes.images), targets


def test_loss_falls_on_a_short_run():
    mc.manual_seed(0)
    images, targets = small_batch()
    net = yolo_small(widths=(8, 16, 16, 32))
    net.train()
    optimizer = mc.optim.Adam(net.parameters(), lr=0.01)
    losses = []
    for _ in range(15):
        loss_dict = net(images, targets)
        assert sorted(loss_dict) == ["loss_box", "loss_classifier", "loss_objectness"]
        loss = sum(loss_dict.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_eval_output_is_torchvisions_list_of_dicts():
    mc.manual_seed(0)
    images, _ = small_batch(n=3)
    net = yolo_small(widths=(8, 16, 16, 32), score_thresh=0.0, detections_per_img=7)
    with mc.no_grad():
        net.head.bias.data[0] = 5.0                     # every cell sure of an object: plenty of boxes
    net.eval()
    detections = net(images)
    assert isinstance(detections, list) and len(detections) == 3
    for found in detections:
        assert sorted(found) == ["boxes", "labels", "scores"]
        boxes, scores, labels = found["boxes"].numpy(), found["scores"].numpy(), found["labels"].numpy()
        assert boxes.shape == (7, 4) and scores.shape == (7,) and labels.dtype == numpy.int64
        assert (numpy.diff(scores) <= 0).all() and ((labels >= 1) & (labels <= 10)).all()
        assert (boxes >= 0).all() and (boxes <= 32).all() and (boxes[:, 2:] >= boxes[:, :2]).all()
    net.score_thresh = 0.999
    assert all(len(found["boxes"]) == 0 for found in net(images))


def test_bad_input_is_refused():
    net = yolo_small(widths=(8, 16, 16, 32))
    images, targets = small_batch(n=2)
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\), got \(1, 32, 32\)"):
        net(images[0])
    with pytest.raises(ValueError, match="multiples of the stride 8"):
        net.eval()(mc.zeros(1, 1, 30, 32))
    net.train()
    with pytest.raises(ValueError, match="targets should not be None"):
        net(images)
    with pytest.raises(ValueError, match=r"targets\[1\] lacks \['labels'\]"):
        net(images, [targets[0], {"boxes": targets[1]["boxes"]}])
    with pytest.raises(ValueError, match="list of 2 dicts"):
        net(images, targets[:1])
    with pytest.raises(ValueError, match="x2 <= x1"):
        net(images, [targets[0], {"boxes": mc.tensor([[5.0, 5.0, 2.0, 9.0]]), "labels": mc.tensor([1])}])
    for label in (0, 11):       # the background, and one past the last of the 11 classes
        with pytest.raises(ValueError, match=r"\['labels'\] must lie in \[1, 11\) .* got values in \[%d, %d\]"
                           % (label, label)):
            net(images, [targets[0], {"boxes": mc.tensor([[2.0, 2.0, 9.0, 9.0]]), "labels": mc.tensor([label])}])
    with pytest.raises(ValueError, match=r"\(N, M, 5\)"):
        detect.boxes_and_labels(mc.zeros(2, 5))
    with pytest.raises(ValueError, match="trains on \\['digit_scenes'\\], not 'digits'"):
        training.train(task="detect", model="yolo_small", dataset="digits", checkpoint="unused.safetensors",
                       progress=False, log=lambda line: None)


def test_detect_refuses_to_resize_the_scenes(tmp_path, small_scenes):
    with pytest.raises(ValueError, match=r"as they are, \(1, 64, 64\); yolo_small takes \(1, 32, 32\)"):
        training.train(task="detect", model="yolo_small", dataset="digit_scenes", image_size=32,
                       checkpoint=str(tmp_path / "run.safetensors"), progress=False, log=lambda line: None)
    assert not (tmp_path / "run.safetensors").exists()


def test_padded_targets_round_trip_and_metric():
    scenes = mc.datasets.digit_scenes(False, num_scenes=6)
    data = detect.SceneBoxes(scenes)
    batch = mc.utils.data.default_collate([data[i] for i in range(6)])[1]
    targets = detect.boxes_and_labels(batch)
    for target, boxes, labels in zip(targets, scenes.boxes, scenes.labels):
        numpy.testing.assert_array_equal(target["boxes"].numpy(), boxes)
        numpy.testing.assert_array_equal(target["labels"].numpy(), labels)
    metric = detect.Detection().metric()
    metric.update({"loss_box": mc.tensor(1.0)}, batch)               # a training batch: not scored
    assert math.isnan(metric.value)
    perfect = [dict(t, scores=mc.ones(len(t["labels"]))) for t in targets]
    metric.update(perfect, batch)
    assert metric.value == 1.0 and metric.counts == {"map_50": 1.0, "map": 1.0}


@pytest.fixture
def small_scenes(monkeypatch):
    """16 training and 8 test scenes; the function that installs them again."""
    return install_small_scenes(monkeypatch, training.TASKS["detect"].datasets, detect.SceneBoxes, 16)


@pytest.mark.slow
def test_train_detect_saves_and_resumes(tmp_path, small_scenes, monkeypatch):
    full, resumed, _ = train_interrupt_resume(tmp_path, monkeypatch, small_scenes, task="detect", model="yolo_small",
                                              dataset="digit_scenes", epochs=2, batch_size=8, lr=0.05)
    history = mc.load(str(tmp_path / "full.safetensors"))["history"]
    assert len(history) == 2 and 0.0 <= full["test_map50"] <= 1.0 and 0.0 <= full["map"] <= full["map_50"]
    assert resumed["test_map50"] == full["test_map50"]


@pytest.mark.slow
def test_epoch_lines_show_no_train_map(tmp_path, small_scenes):
    """Training batches give a detector's losses, not detections: the epoch
    line leaves the train metric out instead of printing nan."""
    lines = []
    training.train(checkpoint=str(tmp_path / "run.safetensors"), task="detect", model="yolo_small",
                   dataset="digit_scenes", epochs=1, batch_size=8, lr=0.05, progress=False, log=lines.append)
    epoch_line = next(line for line in lines if line.startswith("epoch 1/1"))
    assert "nan" not in epoch_line and "train map50" not in epoch_line and "test map50" in epoch_line


def test_detect_command_draws_the_boxes(tmp_path, capsys):
    mc.manual_seed(0)
    net = yolo_small()
    with mc.no_grad():                      # a detector that sees a "7" (label 8) centred in every cell
        net.head.weight.data[...] = 0
        net.head.bias.data[...] = 0
        net.head.bias.data[0] = 10.0
        net.head.bias.data[5 + 7] = 10.0
    weights = str(tmp_path / "w.safetensors")
    mc.save(net.state_dict(), weights)
    found = {"boxes": numpy.array([[4.0, 6.0, 20.0, 22.0]]), "labels": numpy.array([8]), "scores": numpy.array([0.9])}
    picture = numpy.asarray(detect.draw_boxes(numpy.zeros((1, 16, 24)), found, scale=2))
    assert picture.shape == (32, 48, 3)
    numpy.testing.assert_array_equal(picture[12, 8:40].min(0), detect.PALETTE[8])    # the box's top edge, x 8..39

    Image.fromarray(numpy.zeros((32, 40), numpy.uint8)).save(tmp_path / "scene.png")
    out = tmp_path / "boxes.png"
    assert main(["detect", str(tmp_path / "scene.png"), "--weights", weights, "--out", str(out),
                 "--score-threshold", "0"]) == 0
    drawn = numpy.asarray(Image.open(out))
    assert drawn.shape == (128, 160, 3)
    assert (drawn == detect.PALETTE[8]).all(-1).any() and "digit 7" in capsys.readouterr().out

    assert main(["detect", str(tmp_path / "missing.png"), "--weights", weights]) == 2
    assert "error" in capsys.readouterr().err
