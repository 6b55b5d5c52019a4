"""mc.datasets.ImageFolder against torchvision's on the same folders, and
``python -m minicnn train`` on a folder of images."""
import os
import re

import numpy
import pytest

import minicnn as mc
from minicnn import train as training
from minicnn.__main__ import main

torchvision = pytest.importorskip("torchvision")
Image = pytest.importorskip("PIL.Image")


def write_png(path, seed, size=(6, 5), mode="RGB"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = numpy.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=numpy.uint8)
    Image.fromarray(pixels).convert(mode).save(path)


@pytest.fixture
def folder(tmp_path):
    """Three classes (their names unsorted on disk), a nested image, an
    upper-case extension, a grey image, and files that are not images."""
    root = tmp_path / "images"
    files = ["zebra/b.png", "zebra/a.PNG", "apple/x/deep.png", "apple/top.png", "mango/1.png", "mango/0.png"]
    for seed, name in enumerate(files):
        write_png(str(root / name), seed, mode="L" if name == "mango/1.png" else "RGB")
    (root / "apple" / "notes.txt").write_text("not an image")
    (root / "readme.png").write_text("a file at the root is no class")
    return root


def test_image_folder_lists_what_torchvision_lists(folder):
    ours = mc.datasets.ImageFolder(str(folder))
    theirs = torchvision.datasets.ImageFolder(str(folder))
    assert ours.classes == theirs.classes == ["apple", "mango", "zebra"]
    assert ours.class_to_idx == theirs.class_to_idx
    assert ours.samples == theirs.samples and ours.imgs == ours.samples
    assert ours.targets == theirs.targets
    assert len(ours) == len(theirs) == 6
    assert ours.extensions == theirs.extensions and ours.root == str(folder)
    for (image, target), (pil, their_target) in zip(ours, theirs):
        assert target == their_target
        assert image.dtype == mc.uint8 and image.shape == (3, 5, 6)
        numpy.testing.assert_array_equal(image.numpy(), numpy.asarray(pil).transpose(2, 0, 1))


def test_image_folder_options_behave_as_torchvision(folder):
    only_zebra = lambda path: "zebra" in path       # noqa: E731
    with pytest.raises(FileNotFoundError, match="Found no valid file for the classes apple, mango"):
        mc.datasets.ImageFolder(str(folder), is_valid_file=only_zebra)
    ours = mc.datasets.ImageFolder(folder, is_valid_file=only_zebra, allow_empty=True,
                                   transform=lambda image: image.shape, target_transform=lambda t: t * 10,
                                   loader=mc.transforms.read_image)
    theirs = torchvision.datasets.ImageFolder(str(folder), is_valid_file=only_zebra, allow_empty=True)
    assert ours.samples == theirs.samples and ours.extensions is None
    assert ours[0] == ((3, 5, 6), 20)
    os.remove(folder / "mango" / "0.png")
    os.remove(folder / "mango" / "1.png")
    with pytest.raises(FileNotFoundError, match="no valid file for the classes mango. Supported extensions are: .jpg"):
        mc.datasets.ImageFolder(str(folder))
    with pytest.raises(FileNotFoundError, match="Couldn't find any class folder"):
        mc.datasets.ImageFolder(str(folder / "zebra"))
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        mc.datasets.ImageFolder(str(folder / "nowhere"))
    with pytest.raises(TypeError, match="root must be a path"):
        mc.datasets.ImageFolder(3)


def small_folder(root, per_class=5, classes=("circle", "square", "stripes")):
    for c, name in enumerate(classes):
        for i in range(per_class):
            write_png(str(root / name / f"{i}.png"), 100 * c + i, size=(12, 10))
    return root


@pytest.mark.slow
def test_train_on_an_image_folder(tmp_path, monkeypatch, capsys):
    root = small_folder(tmp_path / "shapes")
    monkeypatch.chdir(tmp_path)
    # LeNet-5 takes one channel: the RGB images are turned grey, resized to 32x32.
    assert main(["train", "--dataset", "shapes", "--epochs", "1", "--batch-size", "4", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"test accuracy [0-9.]+ \([0-3]/3\)", out), out      # one held-out image per class
    saved = mc.load(str(tmp_path / "checkpoints" / "lenet5-shapes.safetensors"))
    assert saved["settings"]["dataset"] == "imagefolder" and saved["settings"]["data_dir"] == str(root)
    assert saved["settings"]["image_size"] == 32
    assert saved["model"]["classifier.3.weight"].shape == (3, 84)

    # The same folder split into train/ and val/, named with --data-dir; resnet18 at 32x32, 3 channels.
    split = tmp_path / "split"
    small_folder(split / "train", per_class=2)
    small_folder(split / "val", per_class=1)
    result = training.train(model="resnet18", dataset="imagefolder", data_dir=str(split), image_size=32, epochs=1,
                            batch_size=3, checkpoint=str(tmp_path / "r.safetensors"), progress=False,
                            log=lambda line: None)
    assert result["total"] == 3 and result["epochs"] == 1


def test_a_folder_names_an_image_folder_run_however_it_is_given(tmp_path, monkeypatch):
    root = small_folder(tmp_path / "shapes", per_class=1)
    monkeypatch.chdir(tmp_path)
    for given in (dict(dataset="shapes"), dict(data_dir="shapes"), dict(dataset="imagefolder", data_dir="shapes"),
                  dict(dataset=str(root), data_dir=str(root))):
        settings = training._given_settings(given)
        assert (settings["dataset"], settings["data_dir"]) == ("imagefolder", str(root)), given
    with pytest.raises(ValueError, match="data_dir is for image folders; dataset 'digits' takes none"):
        training._given_settings(dict(dataset="digits", data_dir="shapes"))
    with pytest.raises(ValueError, match="data_dir 'nowhere' is not a folder"):
        training._given_settings(dict(data_dir="nowhere"))


def test_the_held_out_split_of_a_folder_is_stratified_and_seeded(tmp_path):
    root = small_folder(tmp_path / "shapes", per_class=10)
    train_a, test_a = training.image_folder(str(root), 32, seed=0)
    train_b, test_b = training.image_folder(str(root), 32, seed=0)
    _, test_c = training.image_folder(str(root), 32, seed=1)
    assert test_a.indices == test_b.indices != test_c.indices
    assert not set(train_a.indices) & set(test_a.indices) and len(train_a) + len(test_a) == 30
    assert sorted(test_a.dataset.targets[i] for i in test_a.indices) == [0, 0, 1, 1, 2, 2]   # a fifth of each class
    image, label = test_a[0]
    assert image.shape == (3, 32, 32) and image.dtype == mc.float32
