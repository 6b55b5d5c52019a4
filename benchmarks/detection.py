"""Detector inference against torch: ``python -m benchmarks.detection``.

    python -m benchmarks.detection                # ssdlite320, Faster R-CNN 320, RetinaNet
    python -m benchmarks.detection --repeats 9

Times ``ssdlite320_mobilenet_v3_large`` (its fixed 320 x 320 input),
``fasterrcnn_mobilenet_v3_large_320_fpn`` (resized to 320 at most, its
RPN and RoI heads included) and ``retinanet_resnet50_fpn`` (``min_size``
512, ``max_size`` 683) in eval mode under no_grad on one 3 x 480 x 640 image in [0, 1], the whole
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
import numpy

from benchmarks import inference
from benchmarks.cases import Case, no_grad_fns

#: (model, builder keywords) timed on one 480 x 640 image.
MODELS = [("ssdlite320_mobilenet_v3_large", {}),
          ("fasterrcnn_mobilenet_v3_large_320_fpn", {}),
          ("retinanet_resnet50_fpn", {"min_size": 512, "max_size": 683, "score_thresh": 0.01})]
TARGET_RATIO = 1.0


def _detection_case(name, kwargs, shape):
    import torch

    import minicnn as mc

    mc_model, torch_model = inference.twin_models(name, kwargs)
    image = numpy.random.default_rng(0).random(shape).astype(numpy.float32)
    mc_images, torch_images = [mc.from_numpy(image.copy())], [torch.from_numpy(image.copy())]
    return no_grad_fns(mc_model, mc_images, torch_model, torch_images)


def detection_cases(shape=(3, 480, 640)):
    """One inference case per model of MODELS on one image of ``shape``."""
    cases = []
    for name, kwargs in MODELS:
        case = Case("detection", f"{name} {'x'.join(map(str, shape))}", None, repeats=5)
        case.build = lambda name=name, kwargs=kwargs: _detection_case(name, kwargs, shape)
        cases.append(case)
    return cases


def main(argv=None):
    args = inference.parser(__doc__.split("\n\n")[0]).parse_args(argv)
    return inference.run_and_report(detection_cases(), args, "Detector inference", "model, image", TARGET_RATIO,
                                    "detection")


if __name__ == "__main__":
    main()
