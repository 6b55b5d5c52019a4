"""One-stage detector inference against torch: ``python -m benchmarks.detection``.

    python -m benchmarks.detection                # ssdlite320 and RetinaNet, one image
    python -m benchmarks.detection --repeats 9

Times ``ssdlite320_mobilenet_v3_large`` (its fixed 320 x 320 input) and
``retinanet_resnet50_fpn`` (``min_size`` 512, ``max_size`` 683) in eval
mode under no_grad on one 3 x 480 x 640 image in [0, 1], the whole
detector: transform, backbone, head, anchors, decoding, NMS. It uses
``run.py``'s harness: the same process, the same thread count for both
frameworks, warm-up calls, each timed call right after an untimed one of
the same framework, medians. Both models hold the same weights
(torchvision's random initialisation copied into minicnn) and the same
score_thresh (0.01 for RetinaNet, whose random scores sit at the prior,
so NMS has work). The target: minicnn at most 1.0x torch's time.
Results are printed and written to
``benchmarks/results/detection/results.md``.
"""
import argparse
import os

import numpy

from benchmarks import run
from benchmarks.cases import Case

#: (model, builder keywords) timed on one 480 x 640 image.
MODELS = [("ssdlite320_mobilenet_v3_large", {}),
          ("retinanet_resnet50_fpn", {"min_size": 512, "max_size": 683, "score_thresh": 0.01})]
TARGET_RATIO = 1.0


def _detection_case(name, kwargs, shape):
    import torch
    import torchvision

    import minicnn as mc
    from minicnn.nn.skip_init import no_init

    torch.manual_seed(0)
    torch_model = torchvision.models.get_model(name, weights=None, weights_backbone=None, **kwargs).eval()
    with no_init():
        mc_model = mc.models.get_model(name, **kwargs)
    mc_model.load_state_dict(torch_model.state_dict())
    mc_model.eval()
    image = numpy.random.default_rng(0).random(shape).astype(numpy.float32)
    mc_images, torch_images = [mc.from_numpy(image.copy())], [torch.from_numpy(image.copy())]

    def mc_fn():
        with mc.no_grad():
            mc_model(mc_images)

    def torch_fn():
        with torch.no_grad():
            torch_model(torch_images)
    return mc_fn, torch_fn


def detection_cases(shape=(3, 480, 640)):
    """One inference case per model of MODELS on one image of ``shape``."""
    cases = []
    for name, kwargs in MODELS:
        case = Case("detection", f"{name} {'x'.join(map(str, shape))}", None, repeats=5)
        case.build = lambda name=name, kwargs=kwargs: _detection_case(name, kwargs, shape)
        cases.append(case)
    return cases


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before timing")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of each framework")
    args = parser.parse_args(argv)
    run.limit_threads(args.threads)
    cases = detection_cases()
    for case in cases:
        case.repeats = args.repeats
    rows = run.run_cases(cases, args.warmup, args.repeats)
    info = run.machine_info(args.threads)
    lines = [f"# One-stage detector inference, minicnn vs torch ({info['cpu']}, {info['threads']} threads, "
             f"load average {info['load_average']} at the start)", "",
             "| model, image | minicnn ms | torch ms | ratio | target |", "|---|---:|---:|---:|---:|"]
    for row in rows:
        if row["status"] != "ok":
            lines.append(f"| {row['case']} | {row['status']} | | | |")
            continue
        lines.append(f"| {row['case']} | {row['minicnn_ms']:.1f} | {row['torch_ms']:.1f} | {row['ratio']:.2f} | "
                     f"<= {TARGET_RATIO} {'met' if row['ratio'] <= TARGET_RATIO else 'missed'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = run.ROOT / "benchmarks" / "results" / "detection"
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(text)
    return rows


if __name__ == "__main__":
    main()
