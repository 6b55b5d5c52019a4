"""What the whole-model inference benchmarks (``detection.py``,
``segmentation.py``) share: the same torchvision model built on both sides,
their command line, and the markdown table of ratios they write.
"""
import argparse
import os

from benchmarks import run


def twin_models(name, kwargs, device="cpu"):
    """torchvision's ``name`` (random weights, seed 0) and minicnn's, holding the same weights, both in eval mode."""
    import torch
    import torchvision

    import minicnn as mc
    from minicnn.nn.skip_init import no_init

    torch.manual_seed(0)
    torch_model = torchvision.models.get_model(name, weights=None, weights_backbone=None, **kwargs).to(device).eval()
    with no_init():   # the weights are overwritten just below: skip minicnn's own initialisation
        mc_model = mc.models.get_model(name, **kwargs)
    mc_model.load_state_dict(torch_model.state_dict())
    return mc_model.to(device).eval(), torch_model


def parser(description):
    """The command line every inference benchmark takes: --threads, --warmup, --repeats."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before timing")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of each framework")
    return parser


def run_and_report(cases, args, title, first_column, target_ratio, name):
    """Time ``cases`` under ``args``' thread count and repeats, print the table of
    ratios against ``target_ratio`` and write it to ``benchmarks/results/<name>/results.md``.

    Returns the rows of ``run.run_cases``.
    """
    run.limit_threads(args.threads)
    for case in cases:
        case.repeats = args.repeats
    rows = run.run_cases(cases, args.warmup, args.repeats)
    info = run.machine_info(args.threads)
    lines = [f"# {title}, minicnn vs torch ({info['cpu']}, {info['threads']} threads, "
             f"load average {info['load_average']} at the start)", "",
             f"| {first_column} | minicnn ms | torch ms | ratio | target |", "|---|---:|---:|---:|---:|"]
    for row in rows:
        if row["status"] != "ok":
            lines.append(f"| {row['case']} | {row['status']} | | | |")
            continue
        met = "met" if row["ratio"] <= target_ratio else "missed"
        lines.append(f"| {row['case']} | {row['minicnn_ms']:.1f} | {row['torch_ms']:.1f} | {row['ratio']:.2f} | "
                     f"<= {target_ratio} {met} |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = run.RESULTS / name
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(text)
    return rows
