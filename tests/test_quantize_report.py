"""``python -m minicnn quantize``: the int8 report of a quantizable model."""
import numpy
import pytest

import minicnn as mc
import minicnn.models.quantization as mcq
from minicnn.__main__ import main
from minicnn.quantize_report import digits_as_trained


@pytest.mark.slow
def test_report_of_a_checkpoint(tmp_path, capsys):
    mc.manual_seed(3)
    model = mcq.resnet18(num_classes=10).eval()
    path = tmp_path / "r18.safetensors"
    mc.save_weights(model.state_dict(), path)
    assert main(["quantize", "resnet18", "--checkpoint", str(path), "--size", "32", "--repeats", "1",
                 "--calibration-batches", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    weights, speed, accuracy = lines[1].split(), lines[2].split(), lines[3].split()
    float_mib, int8_mib = float(weights[1]), float(weights[4])
    # int8 weights are a quarter of float32's; biases, scales and zero points add a little
    assert 3.5 < float_mib / int8_mib < 4.0
    assert float(speed[1]) > 0 and float(speed[4]) > 0
    # the float model's accuracy, computed here from the same file
    images, labels = digits_as_trained(False)
    with mc.no_grad():
        predicted = model(mc.tensor(images)).numpy().argmax(1)
    float_top1, int8_top1 = float(accuracy[1]) / 100, float(accuracy[4]) / 100
    assert float_top1 == pytest.approx(numpy.mean(predicted == labels), abs=5e-5)
    # predictions that agree score alike: the accuracies differ by at most the disagreement
    agreement = float(lines[3].split("agree on ")[1].rstrip("%)")) / 100
    assert abs(float_top1 - int8_top1) <= 1 - agreement + 1e-3
    assert f"{len(labels)} images" in lines[3]


def test_bad_arguments(capsys):
    assert main(["quantize", "lenet5"]) == 2
    assert "must be one of mc.models.quantization's" in capsys.readouterr().err
    assert main(["quantize", "resnet18", "--size", "16"]) == 2
    assert "--size must be at least 32" in capsys.readouterr().err
    assert main(["quantize", "resnet18", "--checkpoint", "/nonexistent/r18.safetensors", "--size", "32"]) == 2
    assert "r18.safetensors" in capsys.readouterr().err
