"""Segmentation inference against torch: ``python -m benchmarks.segmentation``.

    python -m benchmarks.segmentation             # both models, 520 x 520, batch 1
    python -m benchmarks.segmentation --repeats 9

Times ``lraspp_mobilenet_v3_large`` and ``fcn_resnet50`` (with its
auxiliary head, as torchvision's weights have it) in eval mode under
no_grad on one 3 x 520 x 520 image, torchvision's evaluation size, with
``run.py``'s harness: the same process, the same thread count for both
frameworks, warm-up calls, each timed call right after an untimed one of
the same framework, medians. Both models hold the same weights
(torchvision's random initialisation copied into minicnn). The target:
minicnn at most 1.0x torch's time. Results are printed and written to
``benchmarks/results/segmentation/results.md``.
"""
from benchmarks import inference
from benchmarks.cases import Case, inference_fns

#: (model, builder keywords) timed at 520 x 520, batch 1.
MODELS = [("lraspp_mobilenet_v3_large", {}), ("fcn_resnet50", {"aux_loss": True})]
TARGET_RATIO = 1.0


def _segmentation_case(name, kwargs, shape, case, device):
    mc_model, torch_model = inference.twin_models(name, kwargs, device)
    return inference_fns(mc_model, torch_model, shape, case, device)


def segmentation_cases(device="cpu", size=520):
    """One inference case per model of MODELS, batch 1 at ``size`` squared."""
    cases = []
    for name, kwargs in MODELS:
        case = Case("segmentation", f"{name} 1x3x{size}x{size}", None, repeats=5)
        case.build = lambda name=name, kwargs=kwargs, case=case: _segmentation_case(
            name, kwargs, (1, 3, size, size), case, device)
        cases.append(case)
    return cases


def main(argv=None):
    parser = inference.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=520)
    args = parser.parse_args(argv)
    return inference.run_and_report(segmentation_cases(size=args.size), args, "Segmentation inference", "model",
                                    TARGET_RATIO, "segmentation")


if __name__ == "__main__":
    main()
