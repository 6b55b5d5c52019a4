"""What the benchmarks that run on their own share: the same torchvision
model built on both sides, their command line, and either the markdown table
of ratios the whole-model inference benchmarks (``detection.py``,
``segmentation.py``) write or the plain run that ``video.py`` and
``quantized.py`` print.
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


def parser(description, warmup=1, repeats=5):
    """The command line every such benchmark takes: --threads, --warmup, --repeats
    (``warmup`` and ``repeats`` are their defaults)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed calls before timing")
    parser.add_argument("--repeats", type=int, default=repeats, help="timed calls of each framework")
    return parser


def run_and_print(cases, args, device="cpu"):
    """Time ``cases`` on ``device`` under ``args``' thread count, warm-up and
    repeats, printing the machine line and one line per case; no file is written.

    Returns the exit status: 0 when every case ran, 1 otherwise.
    """
    run.limit_threads(args.threads)
    synchronize = run._cuda_synchronize if device == "cuda" else run._no_synchronize
    info = run.machine_info(args.threads, device)
    print(f"{info['cpu']}, {args.threads} threads, load average {info['load_average']}")
    rows = run.run_cases(cases, args.warmup, args.repeats, synchronize=synchronize)
    return 0 if all(row["status"] == "ok" for row in rows) else 1


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
