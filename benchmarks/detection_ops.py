"""Detection ops against torchvision, in one process, on the CPU:

* NMS of 10,000 boxes (random, in a 1000 x 1000 image, threshold 0.5);
* RoIAlign forward + backward: 256 regions on a (2, 256, 50, 50) map,
  7 x 7 output, sampling ratio 2, spatial scale 1/16 (the Faster R-CNN
  box head's shape), a random upstream gradient.

    python -m benchmarks.detection_ops            # or: python -m benchmarks --only detection-ops
    python -m benchmarks.detection_ops --threads 1 --repeats 15

Both frameworks get the same thread count (default: every core this
process may use). Each case warms up (Numba compiles or loads its
cache), then the two frameworks alternate, ``--repeats`` calls each, so a
change in the machine's load hits both; the medians are reported with
their ratio, minicnn / torchvision (target <= 1.0). The results also go
to ``benchmarks/results/detection_ops.md``.
"""
import argparse
import os
import statistics
import time
from pathlib import Path

import numpy

RESULTS = Path(__file__).resolve().parent / "results"


def _nms_case(rng):
    import torch
    import torchvision

    import minicnn as mc
    xy = rng.uniform(0, 1000, (10_000, 2))
    boxes = numpy.concatenate([xy, xy + rng.uniform(10, 120, (10_000, 2))], 1).astype(numpy.float32)
    scores = rng.random(10_000).astype(numpy.float32)
    b_mc, s_mc = mc.tensor(boxes), mc.tensor(scores)
    b_tv, s_tv = torch.from_numpy(boxes), torch.from_numpy(scores)
    kept = mc.ops.nms(b_mc, s_mc, 0.5).numpy()
    assert numpy.array_equal(kept, torchvision.ops.nms(b_tv, s_tv, 0.5).numpy()), "NMS results differ"
    return (lambda: mc.ops.nms(b_mc, s_mc, 0.5), lambda: torchvision.ops.nms(b_tv, s_tv, 0.5))


def _roi_align_case(rng):
    import torch
    import torchvision

    import minicnn as mc
    x = rng.standard_normal((2, 256, 50, 50)).astype(numpy.float32)
    xy = rng.uniform(0, 700, (256, 2))
    rois = numpy.concatenate([rng.integers(0, 2, (256, 1)), xy, xy + rng.uniform(16, 300, (256, 2))],
                             1).astype(numpy.float32)
    g = rng.standard_normal((256, 256, 7, 7)).astype(numpy.float32)
    x_mc, r_mc, g_mc = mc.tensor(x, requires_grad=True), mc.tensor(rois), mc.tensor(g)
    x_tv, r_tv, g_tv = torch.tensor(x, requires_grad=True), torch.from_numpy(rois), torch.from_numpy(g)

    def mine():
        x_mc.grad = None
        mc.ops.roi_align(x_mc, r_mc, (7, 7), 1 / 16, 2).backward(g_mc)

    def theirs():
        x_tv.grad = None
        torchvision.ops.roi_align(x_tv, r_tv, (7, 7), 1 / 16, 2).backward(g_tv)

    mine(), theirs()
    assert numpy.allclose(x_mc.grad.numpy(), x_tv.grad.numpy(), rtol=1e-4, atol=1e-5), "RoIAlign gradients differ"
    return mine, theirs


CASES = {"nms, 10k boxes": _nms_case, "roi_align fwd+bwd, 256 rois, (2,256,50,50), 7x7, sampling 2": _roi_align_case}


def measure(threads, repeats, warmup=2, seed=0):
    """[(case, minicnn ms, torchvision ms, ratio)], medians."""
    import torch

    import minicnn as mc
    torch.set_num_threads(threads)
    mc.set_num_threads(threads)
    rng = numpy.random.default_rng(seed)
    rows = []
    for name, build in CASES.items():
        mine, theirs = build(rng)
        for _ in range(warmup):
            mine(), theirs()
        times = {mine: [], theirs: []}
        for _ in range(repeats):
            for fn in (mine, theirs):
                start = time.perf_counter()
                fn()
                times[fn].append(time.perf_counter() - start)
        ms_mine, ms_theirs = (1000 * statistics.median(times[f]) for f in (mine, theirs))
        rows.append((name, ms_mine, ms_theirs, ms_mine / ms_theirs))
    return rows


def report(rows, threads):
    lines = [f"Detection ops on the CPU, {threads} thread(s), medians (minicnn / torchvision, target <= 1.0)", "",
             "| case | minicnn ms | torchvision ms | ratio |", "|---|---|---|---|"]
    lines += [f"| {name} | {a:.2f} | {b:.2f} | {r:.2f}x |" for name, a, b, r in rows]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.detection_ops", description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)
    text = report(measure(args.threads, args.repeats), args.threads)
    print(text, end="")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "detection_ops.md").write_text(text)
    return 0


if __name__ == "__main__":
    main()
