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
import argparse
import os

from benchmarks import run
from benchmarks.cases import Case, inference_fns

#: (model, builder keywords) timed at 520 x 520, batch 1.
MODELS = [("lraspp_mobilenet_v3_large", {}), ("fcn_resnet50", {"aux_loss": True})]
TARGET_RATIO = 1.0


def _segmentation_case(name, kwargs, shape, case, device):
    import torch
    import torchvision

    import minicnn as mc
    from minicnn.nn.skip_init import no_init

    torch.manual_seed(0)
    torch_model = torchvision.models.get_model(name, weights=None, weights_backbone=None, **kwargs).to(device).eval()
    with no_init():
        mc_model = mc.models.get_model(name, **kwargs)
    mc_model.load_state_dict(torch_model.state_dict())
    return inference_fns(mc_model.to(device).eval(), torch_model, shape, case, device)


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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before timing")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of each framework")
    parser.add_argument("--size", type=int, default=520)
    args = parser.parse_args(argv)
    run.limit_threads(args.threads)
    cases = segmentation_cases(size=args.size)
    for case in cases:
        case.repeats = args.repeats
    rows = run.run_cases(cases, args.warmup, args.repeats)
    info = run.machine_info(args.threads)
    lines = [f"# Segmentation inference, minicnn vs torch ({info['cpu']}, {info['threads']} threads, "
             f"load average {info['load_average']} at the start)", "",
             "| model | minicnn ms | torch ms | ratio | target |", "|---|---:|---:|---:|---:|"]
    for row in rows:
        if row["status"] != "ok":
            lines.append(f"| {row['case']} | {row['status']} | | | |")
            continue
        lines.append(f"| {row['case']} | {row['minicnn_ms']:.1f} | {row['torch_ms']:.1f} | {row['ratio']:.2f} | "
                     f"<= {TARGET_RATIO} {'met' if row['ratio'] <= TARGET_RATIO else 'missed'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = run.ROOT / "benchmarks" / "results" / "segmentation"
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(text)
    return rows


if __name__ == "__main__":
    main()
