"""Classifying images with pretrained weights, end to end against
torchvision: mc.models.classify / decode_predictions and
``python -m minicnn classify``.

The "pretrained" model is torchvision's resnet18 with seeded random
weights and batch-norm statistics moved away from 0 and 1 (so eval mode
matters), saved with torch.save under torchvision's file name for it."""
import argparse

import numpy
import pytest
import torch
import torchvision
from PIL import Image

import minicnn as mc
import minicnn.classify as cli
from minicnn.__main__ import main as minicnn_main
from parity import randomize_batch_norms

TORCHVISION_FILE = "resnet18-f37072fd.pth"  # ResNet18_Weights.IMAGENET1K_V1


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The weights file, a PNG and a JPEG of a photo, and torchvision's
    top-5 (probabilities, indices) for each image."""
    folder = tmp_path_factory.mktemp("classify")
    torch.manual_seed(0)
    model = torchvision.models.resnet18()
    randomize_batch_norms(model, torch.Generator().manual_seed(1), spread=0.2)
    model.eval()
    weights = folder / TORCHVISION_FILE
    torch.save(model.state_dict(), weights)

    photo = (mc.datasets.sample_images().numpy()[1] * 255).round().astype(numpy.uint8).transpose(1, 2, 0)
    images = [folder / "flower.png", folder / "flower.jpg"]
    Image.fromarray(photo).save(images[0])
    Image.fromarray(photo).save(images[1], quality=90)

    # torchvision's documented recipe: weights.transforms() on the decoded
    # uint8 image, softmax over the logits (Pillow decodes, as minicnn does)
    preprocess = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()
    expected = []
    for path in images:
        pixels = torch.from_numpy(numpy.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1).copy())
        with torch.no_grad():
            probabilities = model(preprocess(pixels)[None]).softmax(1)[0]
        values, indices = probabilities.topk(5)
        expected.append((values.numpy(), indices.tolist()))
    assert expected[0][0][0] > 0.05  # a peaked distribution: the comparison means something
    return dict(weights=weights, images=images, expected=expected)


def assert_matches(pairs, expected, atol=1e-5):
    values, indices = expected
    categories = mc.models.imagenet_categories()
    assert [name for name, _ in pairs] == [categories[i] for i in indices]
    numpy.testing.assert_allclose([p for _, p in pairs], values, rtol=0, atol=atol)


def test_classify_matches_torchvision(setup):
    model = mc.models.resnet18()
    model.load_state_dict(mc.load_weights(setup["weights"]))
    model.train()
    preprocess = mc.models.imagenet_transforms("resnet18")
    pairs = mc.models.classify(model, str(setup["images"][0]), transform=preprocess)
    assert_matches(pairs, setup["expected"][0])
    assert model.training  # classify ran it in eval mode and put it back


def test_command_line_matches_torchvision(setup, capsys):
    argv = ["classify"] + [str(p) for p in setup["images"]] + ["--model", "resnet18", "--weights",
                                                               str(setup["weights"])]
    assert minicnn_main(argv) == 0          # python -m minicnn classify ...
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "resnet18, resize 256, crop 224, bilinear (torchvision's IMAGENET1K_V1 preprocessing)"
    categories = mc.models.imagenet_categories()
    for n, (path, (values, indices)) in enumerate(zip(setup["images"], setup["expected"])):
        block = lines[1 + 6 * n: 7 + 6 * n]
        assert block[0] == str(path)
        for line, p, i in zip(block[1:], values, indices):
            percent, name = line.split("%  ")
            assert name == categories[i] and abs(float(percent) - 100 * p) <= 0.006


def test_classify_files_returns_the_numbers(setup):
    description, predictions = cli.classify_files(setup["images"], "resnet18", setup["weights"], top=5)
    for pairs, expected in zip(predictions, setup["expected"]):
        assert_matches(pairs, expected)


def test_preprocessing_follows_the_weights_file_name():
    # resnet50's two torchvision weights resize differently: 256 (V1), 232 (V2, the DEFAULT)
    transform, line = cli.preprocessing("resnet50", "/downloads/resnet50-0676ba61.pth")
    assert transform.resize_size == 256 and line.endswith("(torchvision's IMAGENET1K_V1 preprocessing)")
    transform, line = cli.preprocessing("resnet50", "my-resnet50.safetensors")
    assert transform.resize_size == 232 and line.endswith("(torchvision's IMAGENET1K_V2 preprocessing)")
    transform, line = cli.preprocessing("efficientnet_b3", None, resize_size=330, interpolation="bilinear")
    assert line == "efficientnet_b3, resize 330, crop 300, bilinear"
    assert transform.crop_size == (300, 300)


def test_command_line_refuses_random_weights_unless_asked(setup, capsys):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    image = str(setup["images"][0])
    assert cli.main(parser.parse_args([image, "--model", "squeezenet1_1"])) == 2
    assert "--weights FILE is required" in capsys.readouterr().err
    assert cli.main(parser.parse_args([image, "--model", "squeezenet1_1", "--random-weights", "--top", "3"])) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("RANDOM WEIGHTS: the classes mean nothing") and len(out) == 5


@pytest.mark.parametrize("argv, message", [
    (["missing.jpg", "--weights", "w.pth"], "No such file"),
    (["{image}", "--model", "resnet34", "--weights", "{weights}"], "Missing key"),
    (["{image}", "--weights", "{weights}", "--top", "0"], "--top must be an int from 1 to 1000"),
    (["{image}", "--weights", "{weights}", "--random-weights"], "either --weights or --random-weights"),
])
def test_command_line_errors(setup, capsys, argv, message):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    argv = [a.format(image=setup["images"][0], weights=setup["weights"]) for a in argv]
    assert cli.main(parser.parse_args(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m minicnn classify: error: ") and message in err


def test_decode_predictions_matches_torch_softmax_topk(rng):
    logits = rng.standard_normal((3, 1000)).astype(numpy.float32) * 4
    values, indices = torch.from_numpy(logits).softmax(1).topk(4)
    categories = mc.models.imagenet_categories()
    decoded = mc.models.decode_predictions(mc.tensor(logits), k=4)
    assert len(decoded) == 3
    for pairs, v, i in zip(decoded, values.numpy(), indices.tolist()):
        assert [name for name, _ in pairs] == [categories[j] for j in i]
        numpy.testing.assert_allclose([p for _, p in pairs], v, rtol=1e-6)
    # arrays too, and any number of classes with their own names
    assert mc.models.decode_predictions(numpy.array([[0.0, 2.0, 1.0]]), 2, categories="abc")[0][0][0] == "b"


@pytest.mark.parametrize("logits, kwargs, error, match", [
    (numpy.zeros(1000), {}, ValueError, r"shape \(N, C\), got \(1000,\); for one image pass logits\[None\]"),
    (numpy.zeros((2, 10)), {}, ValueError, "10 classes .* 1000 categories; pass categories="),
    (numpy.zeros((2, 3)), dict(k=4, categories="abc"), ValueError, "k must be an int from 1 to 3"),
    (numpy.zeros((2, 3), dtype=numpy.int64), dict(categories="abc"), TypeError, "floating point"),
    ([[1.0, 2.0]], {}, TypeError, "Tensor or an array"),
])
def test_decode_predictions_bad_arguments(logits, kwargs, error, match):
    with pytest.raises(error, match=match):
        mc.models.decode_predictions(logits, **kwargs)


def test_classify_a_batch_with_any_model(rng):
    model = mc.nn.Sequential(mc.nn.Flatten(), mc.nn.Linear(3 * 4 * 4, 3), mc.nn.Dropout(0.5))
    batch = rng.random((2, 3, 10, 12)).astype(numpy.float32)
    preset = mc.transforms.ImageClassification(crop_size=4, resize_size=5)
    result = mc.models.classify(model, batch, k=2, transform=preset, categories=["cat", "dog", "fox"])
    assert len(result) == 2 and all(len(pairs) == 2 for pairs in result)
    with mc.no_grad():
        logits = model.eval()(preset(mc.tensor(batch)))
    assert result == mc.models.decode_predictions(logits, 2, ["cat", "dog", "fox"])  # eval: no dropout
    with pytest.raises(ValueError, match=r"shape \(3, H, W\) or \(N, 3, H, W\), got \(10, 12\)"):
        mc.models.classify(model, batch[0, 0], transform=preset, categories="abc")
