"""What the detect and segment tests share: training on a few digit
scenes (a stand-in for the task's dataset) and checking that a run
interrupted in its last epoch resumes to the very same weights."""
import pytest

import minicnn as mc
from minicnn import train as training
from test_train import assert_same_weights, interrupted_in_epoch


def install_small_scenes(monkeypatch, table, wrap, num_train, num_test=8):
    """Make ``table["digit_scenes"]`` (a task's dataset registry) load
    ``num_train`` training and ``num_test`` test scenes, each wrapped in
    ``wrap`` (the task's Dataset): the real pipeline, fast. Returns the
    function that installs them (again, after a monkeypatch.undo)."""
    def small():
        return (wrap(mc.datasets.digit_scenes(True, num_scenes=num_train)),
                wrap(mc.datasets.digit_scenes(False, num_scenes=num_test)))

    def install():
        monkeypatch.setitem(table, "digit_scenes", small)
    install()
    return install


def train_interrupt_resume(tmp_path, monkeypatch, reinstall, **settings):
    """Train with ``settings`` (``training.train``'s keywords) once in
    full, then again interrupted at the start of its last epoch and
    resumed; asserts the interrupted run kept the epochs before and that
    the resumed one ends with the full run's weights and history.
    ``reinstall`` puts back the small scenes the monkeypatch.undo drops.
    Returns (the full run's result, the resumed run's, the resumed checkpoint's path)."""
    quiet = dict(progress=False, log=lambda line: None, **settings)
    full = training.train(checkpoint=str(tmp_path / "full.safetensors"), **quiet)

    path = str(tmp_path / "run.safetensors")
    epochs = settings["epochs"]
    interrupted_in_epoch(epochs, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        training.train(checkpoint=path, **quiet)
    assert mc.load(path)["epoch"] == epochs - 1
    monkeypatch.undo()
    reinstall()
    resumed = training.train(checkpoint=path, resume=True, progress=False, log=lambda line: None)
    assert_same_weights(path, tmp_path / "full.safetensors")
    return full, resumed, path
