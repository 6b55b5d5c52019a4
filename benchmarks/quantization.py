"""Whole quantized models, minicnn against torch, in one process on the CPU:

* speed: a quantizable model (default resnet18, batch 1, 224 x 224) in
  float32 and in int8, in minicnn and in torch (x86 engine); the two
  frameworks hold the same weights and are calibrated on the same random
  batches. Each call warms up, then the four alternate ``--repeats``
  times (a change in the machine's load hits all of them); medians.
* accuracy: a ResNet-18 trained on the digits at 32 x 32
  (``python -m minicnn train --model resnet18 --dataset digits
  --image-size 32 --epochs 3 --checkpoint FILE``) loaded into the
  quantizable ResNet-18, calibrated on ``--calibration-batches`` training
  batches and converted in minicnn and in torch: top-1 accuracy of the
  float and int8 models on the held-out digits and the agreement of their
  predictions. Without ``--checkpoint`` the accuracy part is skipped.

    python -m benchmarks.quantization --checkpoint r18.safetensors
    python -m benchmarks.quantization --model googlenet --size 64 --threads 1

The results go to ``benchmarks/results/quantization.md``.
"""
import argparse
import os
from pathlib import Path

import numpy

RESULTS = Path(__file__).resolve().parent / "results"


def _pair(name, num_classes=1000, state_dict=None, seed=0, **kwargs):
    """torchvision's quantizable float model (seeded, or ``state_dict``)
    and minicnn's with the same weights, both in eval mode."""
    import torch
    import torchvision.models.quantization as tvq

    import minicnn.models.quantization as mcq
    torch.manual_seed(seed)
    tv_model = getattr(tvq, name)(num_classes=num_classes, **kwargs)
    mc_model = getattr(mcq, name)(num_classes=num_classes, **kwargs)
    if state_dict is None:
        state_dict = tv_model.state_dict()
    else:
        tv_model.load_state_dict({k: torch.from_numpy(numpy.asarray(v)) for k, v in state_dict.items()})
    mc_model.load_state_dict(state_dict)
    return mc_model.eval(), tv_model.eval()


def _quantize_both(mc_model, tv_model, batches):
    """The quantized copies of both models, calibrated on ``batches``."""
    import copy

    import torch

    import minicnn as mc
    import minicnn.models.quantization as mcq
    torch.backends.quantized.engine = "x86"
    tv_q = copy.deepcopy(tv_model)
    tv_q.fuse_model()
    tv_q.qconfig = torch.ao.quantization.get_default_qconfig("x86")
    torch.ao.quantization.prepare(tv_q, inplace=True)
    with torch.no_grad():
        for batch in batches:
            tv_q(torch.from_numpy(batch))
    torch.ao.quantization.convert(tv_q, inplace=True)
    mc_q = mcq.quantize_model(copy.deepcopy(mc_model), [mc.tensor(batch) for batch in batches])
    return mc_q, tv_q


def _runner(model, framework):
    import torch

    import minicnn as mc
    if framework == "torch":
        def run(x):
            with torch.no_grad():
                return model(torch.from_numpy(x)).numpy()
    else:
        def run(x):
            with mc.no_grad():
                return model(mc.tensor(x)).numpy()
    return run


def measure_speed(name, size, repeats, seed=0, warmup=2, **kwargs):
    """{what: median seconds} for minicnn / torch float32 / int8."""
    rng = numpy.random.default_rng(seed)
    mc_model, tv_model = _pair(name, **kwargs)
    batches = [rng.standard_normal((1, 3, size, size)).astype(numpy.float32) for _ in range(4)]
    mc_q, tv_q = _quantize_both(mc_model, tv_model, batches)
    runs = {"minicnn float32": _runner(mc_model, "minicnn"), "minicnn int8": _runner(mc_q, "minicnn"),
            "torch float32": _runner(tv_model, "torch"), "torch int8": _runner(tv_q, "torch")}
    from minicnn.quantize_report import median_times
    return median_times(runs, rng.standard_normal((1, 3, size, size)).astype(numpy.float32), repeats, warmup)


def measure_accuracy(checkpoint, calibration_batches, batch_size=32):
    """{what: value}: float / int8 top-1 accuracy in both frameworks and
    the float-int8 agreement of the predictions."""
    import minicnn as mc
    saved = mc.load(checkpoint)
    state = saved["model"] if "model" in saved else saved
    state = {k: v.numpy() if hasattr(v, "numpy") else v for k, v in state.items()}
    mc_model, tv_model = _pair("resnet18", num_classes=10, state_dict=state)
    from minicnn.quantize_report import digits_as_trained
    train_images, _ = digits_as_trained(True)
    test_images, test_labels = digits_as_trained(False)
    batches = [train_images[i * batch_size:(i + 1) * batch_size] for i in range(calibration_batches)]
    mc_q, tv_q = _quantize_both(mc_model, tv_model, batches)
    predictions = {}
    for what, model, framework in [("minicnn float32", mc_model, "minicnn"), ("minicnn int8", mc_q, "minicnn"),
                                   ("torch float32", tv_model, "torch"), ("torch int8", tv_q, "torch")]:
        run = _runner(model, framework)
        predictions[what] = numpy.concatenate([run(test_images[i:i + 256]).argmax(1)
                                               for i in range(0, len(test_images), 256)])
    result = {f"{what} top-1": float(numpy.mean(p == test_labels)) for what, p in predictions.items()}
    result["minicnn float/int8 agreement"] = float(numpy.mean(predictions["minicnn float32"]
                                                              == predictions["minicnn int8"]))
    result["minicnn int8 / torch int8 agreement"] = float(numpy.mean(predictions["minicnn int8"]
                                                                     == predictions["torch int8"]))
    result["test images"] = len(test_labels)
    return result


def report(name, size, threads, speed, accuracy):
    lines = ["# Quantized int8 inference: whole models", "",
             f"{name}, batch 1, {size} x {size}, {threads} thread(s), medians of the repeats after warm-up; "
             "torch's int8 engine is x86 (fbgemm).", "",
             "| run | ms | / minicnn float32 | / torch same dtype |", "|---|---|---|---|"]
    for what, seconds in speed.items():
        other = speed["torch " + what.split()[-1]]
        lines.append(f"| {what} | {1000 * seconds:.1f} | {seconds / speed['minicnn float32']:.2f} | "
                     f"{seconds / other:.2f} |")
    if accuracy:
        lines += ["", "ResNet-18 trained on the digits (32 x 32), quantized after training "
                  "(x86 qconfig, calibrated on training batches), on the held-out digits:", "",
                  "| measure | value |", "|---|---|"]
        lines += [f"| {what} | {value:.4f} |" if isinstance(value, float) else f"| {what} | {value} |"
                  for what, value in accuracy.items()]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18", help="a model of mc.models.quantization (default resnet18)")
    parser.add_argument("--size", type=int, default=224, help="input size for the timing (default 224)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--checkpoint", help="a ResNet-18 trained on the digits at 32 x 32 (see above)")
    parser.add_argument("--calibration-batches", type=int, default=8)
    args = parser.parse_args(argv)
    import torch

    import minicnn as mc
    torch.set_num_threads(args.threads)
    mc.set_num_threads(args.threads)
    kwargs = {"aux_logits": False} if args.model in ("googlenet", "inception_v3") else {}
    speed = measure_speed(args.model, args.size, args.repeats, **kwargs)
    accuracy = measure_accuracy(args.checkpoint, args.calibration_batches) if args.checkpoint else None
    text = report(args.model, args.size, args.threads, speed, accuracy)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "quantization.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
