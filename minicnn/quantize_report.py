"""``python -m minicnn quantize MODEL``: what int8 quantization does to one
of ``mc.models.quantization``'s models, measured in minicnn.

    python -m minicnn quantize resnet18                         # size and speed
    python -m minicnn train --model resnet18 --dataset digits --image-size 32 --epochs 3 \\
        --checkpoint r18.safetensors
    python -m minicnn quantize resnet18 --checkpoint r18.safetensors   # ... and accuracy

The float model is fused, calibrated and converted
(``mc.models.quantization.quantize_model``, torch's default x86 qconfig);
the report gives

* weight size: the float32 and the int8 state dict as ``mc.save`` writes
  them (int8 weights take a byte where float32 takes four; biases stay
  float32 and every layer adds its scales and zero points);
* speed: one image of ``--size`` pixels (224 by default), float32 against
  int8, medians of ``--repeats`` alternating calls after a warm-up;
* accuracy, with ``--checkpoint`` (a model trained on the digits at
  32 x 32 by ``python -m minicnn train``): top-1 of the float and the int8
  model on the held-out digits, calibrated on ``--calibration-batches``
  training batches (the training images as they are, without the random
  shifts of training, so that the numbers repeat), and how often the two
  predict the same digit.

Without a checkpoint the weights are random (seeded) and calibration uses
random batches. The same comparison against torch's quantized engine is
``python -m benchmarks.quantization`` (minicnn itself never imports torch).
"""
import os
import statistics
import sys
import tempfile
import time

import numpy

#: Images per calibration batch, as ``benchmarks/quantization.py`` uses.
CALIBRATION_BATCH = 32
#: The builders of ``mc.models.quantization``.
MODELS = ("resnet18", "resnet50", "resnext101_32x8d", "mobilenet_v2", "mobilenet_v3_large", "shufflenet_v2_x1_0",
          "googlenet", "inception_v3")


def digits_as_trained(train):
    """(images (N, 3, 32, 32) float32, labels (N,) int64) of the digits as
    ``train --image-size 32`` feeds a 3-channel model, without the
    training set's random shifts."""
    from .train import FittedInput, digits_32x32

    train_set, test_set = digits_32x32()
    train_set.transform = test_set.transform
    data = FittedInput(train_set if train else test_set, 3, 32)
    images = numpy.stack([data[i][0].numpy() for i in range(len(data))])
    labels = numpy.array([int(data[i][1]) for i in range(len(data))])
    return images, labels


def _saved_bytes(state_dict):
    """Bytes of ``state_dict`` in an ``mc.save`` file."""
    from .serialization import save

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "state.mc")
        save(state_dict, path)
        return os.path.getsize(path)


def _predict(model, images, batch=256):
    from .autograd import no_grad
    from .creation import tensor

    with no_grad():
        return numpy.concatenate([model(tensor(images[i:i + batch])).numpy().argmax(1)
                                  for i in range(0, len(images), batch)])


def median_times(runs, x, repeats, warmup=1):
    """{name: median seconds} of each ``runs[name](x)``, the runs
    alternating ``repeats`` times after ``warmup`` untimed rounds (a change
    in the machine's load hits all of them alike)."""
    times = {name: [] for name in runs}
    for _ in range(warmup):
        for run in runs.values():
            run(x)
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run(x)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def quantization_report(model_name, checkpoint=None, size=224, repeats=5, calibration_batches=8, seed=0):
    """{measure: value} for ``model_name`` (module docstring): bytes and
    milliseconds of the float32 and int8 models, and with ``checkpoint``
    their top-1 accuracies on the held-out digits and their agreement."""
    import copy

    from .random import manual_seed
    from .autograd import no_grad
    from .classify import _state_dict
    from .models import quantization as mcq
    from .creation import tensor
    from .weights import load_weights

    if model_name not in MODELS:
        raise ValueError(f"model must be one of mc.models.quantization's {list(MODELS)}, got {model_name!r}")
    kwargs = {"aux_logits": False} if model_name in ("googlenet", "inception_v3") else {}
    manual_seed(seed)
    rng = numpy.random.default_rng(seed)
    if checkpoint is not None:
        float_model = getattr(mcq, model_name)(num_classes=10, **kwargs)
        float_model.load_state_dict(_state_dict(load_weights(checkpoint), checkpoint))
        train_images, _ = digits_as_trained(True)
        calibration = [train_images[i * CALIBRATION_BATCH:(i + 1) * CALIBRATION_BATCH]
                       for i in range(calibration_batches)]
    else:
        float_model = getattr(mcq, model_name)(**kwargs)
        calibration = [rng.standard_normal((2, 3, size, size)).astype(numpy.float32)
                       for _ in range(calibration_batches)]
    float_model.eval()
    int8_model = mcq.quantize_model(copy.deepcopy(float_model), [tensor(b) for b in calibration])
    report = {"float32 weights, bytes": _saved_bytes(float_model.state_dict()),
              "int8 weights, bytes": _saved_bytes(int8_model.state_dict())}

    def runner(model):
        def run(x):
            with no_grad():
                return model(x)
        return run
    x = tensor(rng.standard_normal((1, 3, size, size)).astype(numpy.float32))
    times = median_times({"float32": runner(float_model), "int8": runner(int8_model)}, x, repeats)
    report["float32 ms"], report["int8 ms"] = 1000 * times["float32"], 1000 * times["int8"]
    if checkpoint is not None:
        test_images, test_labels = digits_as_trained(False)
        float_predictions, int8_predictions = _predict(float_model, test_images), _predict(int8_model, test_images)
        report["float32 top-1"] = float(numpy.mean(float_predictions == test_labels))
        report["int8 top-1"] = float(numpy.mean(int8_predictions == test_labels))
        report["float32 / int8 agreement"] = float(numpy.mean(float_predictions == int8_predictions))
        report["test images"] = len(test_labels)
    return report


def format_report(model_name, size, report):
    """The report as text lines."""
    lines = [f"{model_name}: float32 vs int8 (fused, calibrated, converted; x86 qconfig)",
             f"  weights   {report['float32 weights, bytes'] / 2**20:8.2f} MiB float32  "
             f"{report['int8 weights, bytes'] / 2**20:8.2f} MiB int8  "
             f"({report['float32 weights, bytes'] / report['int8 weights, bytes']:.2f}x smaller)",
             f"  speed     {report['float32 ms']:8.2f} ms float32   {report['int8 ms']:8.2f} ms int8    "
             f"({report['float32 ms'] / report['int8 ms']:.2f}x faster; batch 1, {size} x {size})"]
    if "int8 top-1" in report:
        lines.append(f"  accuracy  {100 * report['float32 top-1']:8.2f} % float32  {100 * report['int8 top-1']:8.2f} %"
                     f" int8     (held-out digits: {report['test images']} images; the two agree on "
                     f"{100 * report['float32 / int8 agreement']:.1f}%)")
    return lines


def add_arguments(parser):
    """The options of ``python -m minicnn quantize``."""
    parser.add_argument("model", help="a model of mc.models.quantization (resnet18, mobilenet_v2, ...)")
    parser.add_argument("--checkpoint", help="the model trained on the digits at 32 x 32 (python -m minicnn train "
                                             "--model MODEL --dataset digits --image-size 32 --checkpoint FILE): "
                                             "adds float vs int8 accuracy")
    parser.add_argument("--size", type=int, default=224, help="input size for the timing (default 224)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of each model (default 5)")
    parser.add_argument("--calibration-batches", type=int, default=8,
                        help="batches the observers see before conversion (default 8)")


def main(args):
    """Print ``quantization_report``; returns the exit status."""
    if args.size < 32 or args.repeats < 1 or args.calibration_batches < 1:
        print("python -m minicnn quantize: error: --size must be at least 32, --repeats and --calibration-batches "
              f"at least 1; got {args.size}, {args.repeats}, {args.calibration_batches}", file=sys.stderr)
        return 2
    try:
        report = quantization_report(args.model, args.checkpoint, args.size, args.repeats, args.calibration_batches)
    except (FileNotFoundError, ValueError) as e:
        print(f"python -m minicnn quantize: error: {e}", file=sys.stderr)
        return 2
    print("\n".join(format_report(args.model, args.size, report)))
    return 0
