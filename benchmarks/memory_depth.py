"""Training memory against depth: a plain CIFAR ResNet, the same network
with gradient checkpointing, and the RevNet.

    python -m benchmarks.memory_depth             # memory, time and the digits run
    python -m benchmarks.memory_depth --no-digits
    python -m benchmarks --only memory-depth      # the same, from the benchmark runner

Method
------
Each network (10 classes, float32) takes one training step on a fixed
batch of ``BATCH`` random 3x32x32 images: forward, cross-entropy,
backward (no optimizer step; gradients set to None first).

* Memory: the step runs under ``tracemalloc`` (NumPy reports its array
  data to it), after an untimed warm-up step; the peak of traced bytes
  above what was alive before the step is the *step peak*: activations kept
  for backward, gradients and every temporary alive at the worst moment,
  the same bytes ``mc.summary``'s training-memory tests count. The
  *activation memory* is the step peak less the parameters' gradients
  (as many bytes as the parameters), which every variant needs alike.
  Byte counts are deterministic: no repeats.
* Time: without tracemalloc, the median of ``REPEATS`` steps after the
  warm-up; the plain and checkpointed ResNet-110 are timed alternately so
  that a change in the machine's load hits both alike.

Variants: ``resnet`` is ``CifarResNet(depth)`` (basic units up to 110,
the pre-activation bottleneck ResNet-164); ``checkpoint`` the same with
``checkpoint_segments="sqrt"`` (ceil(sqrt(units)) segments of
``checkpoint_sequential``); ``revnet`` the RevNet of the same stage
layout at widths 32-32-64-128 (basic, depth 12n + 2) and the paper's
RevNet-164 (bottleneck, 4x wider stages), with a narrow bottleneck
RevNet-56 beside it to show the bottleneck family flat in depth too.

The digits run (``digits_accuracies``) trains a RevNet and a CIFAR ResNet
of the same depth from the same seed on scikit-learn's 8x8 digits, for a
few seeds, and reports their test accuracies.

Results: ``benchmarks/results/memory_depth.md`` (tables and targets),
``memory_depth.json`` and ``memory_depth.png`` (memory against depth).
"""
import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc

import numpy

BATCH, SIZE, CLASSES, REPEATS = 16, 32, 10, 3
RESNET_DEPTHS = (20, 38, 56, 110, 164)
REVNET_UNITS = {26: 2, 38: 3, 62: 5, 110: 9}           # basic RevNet depth -> units per stage
SEGMENT_SWEEP = (3, 7, 11, 18)                        # ResNet-110 besides ceil(sqrt(54)) = 8 segments
RESULTS = os.path.join(os.path.dirname(__file__), "results")


def build(variant, depth, segments="sqrt"):
    from minicnn.models.cifar_resnet import CifarResNet
    from minicnn.models.revnet import RevNet, revnet164
    if variant in ("resnet", "checkpoint", "checkpoint-k"):
        return CifarResNet(depth, bottleneck=depth == 164,
                           checkpoint_segments=0 if variant == "resnet" else segments)
    if variant == "revnet":
        if depth == 164:
            return revnet164()
        n = REVNET_UNITS[depth]
        return RevNet((n, n, n), (32, 32, 64, 128))
    if variant == "revnet-bottleneck":            # 18n + 2, at RevNet-164's widths
        n = (depth - 2) // 18
        return RevNet((n, n, n), (32, 128, 256, 512), bottleneck=True)
    raise ValueError(variant)


def _step_fn(model):
    import minicnn as mc
    rng = numpy.random.default_rng(0)
    x = mc.tensor(rng.standard_normal((BATCH, 3, SIZE, SIZE)).astype(numpy.float32))
    t = mc.tensor(rng.integers(0, CLASSES, BATCH))
    model.train()

    def step():
        model.zero_grad(set_to_none=True)
        mc.nn.functional.cross_entropy(model(x), t).backward()
    return step


def peak_bytes(step):
    """tracemalloc's peak during ``step()`` above what was alive before."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        step()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def step_seconds(step, repeats=REPEATS):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(variant, depth, segments="sqrt"):
    """{"variant", "depth", "segments", "params_m", "peak_mib", "activation_mib", "step_s"}."""
    model = build(variant, depth, segments)
    step = _step_fn(model)
    step()                                                    # warm-up: Numba kernels loaded
    params = sum(int(p.data.nbytes) for p in model.parameters())
    peak = peak_bytes(step)
    row = {"variant": variant, "depth": depth,
           "segments": model.checkpoint_segments if variant.startswith("checkpoint") else None,
           "params_m": sum(p.data.size for p in model.parameters()) / 1e6,
           "peak_mib": peak / 2**20, "activation_mib": (peak - params) / 2**20, "step_s": step_seconds(step)}
    print(f"  {variant:18s} depth {depth:3d} segments {row['segments']}: peak {row['peak_mib']:7.1f} MiB, "
          f"activations {row['activation_mib']:7.1f} MiB, step {row['step_s']:.2f} s", flush=True)
    return row


def paired_time(depth=110, repeats=7):
    """Median step times of the plain and checkpointed ResNet, alternated,
    and the cores other processes kept busy meanwhile."""
    from benchmarks import load
    steps = {v: _step_fn(build(v, depth)) for v in ("resnet", "checkpoint")}
    for s in steps.values():
        s()
    times = {v: [] for v in steps}
    meter = load.LoadMeter()
    for _ in range(repeats):
        for v, s in steps.items():
            times[v].append(step_seconds(s, 1))
    result = {v: statistics.median(t) for v, t in times.items()}
    result["other_cores"] = meter()
    return result


def digits_accuracies(pairs=((14, (1, 1, 1)), (38, (3, 3, 3))), seeds=(0, 1, 2), epochs=6, batch=32, lr=0.05):
    """Test accuracies of a RevNet (widths 16-16-32-64) and a CIFAR ResNet of
    the same depth, each trained from the same seed with SGD (momentum 0.9,
    weight decay 1e-4) on the 8x8 digits, grey repeated to 3 channels:
    {(depth, seed): {"revnet": acc, "resnet": acc}}."""
    import minicnn as mc
    from minicnn.models.cifar_resnet import CifarResNet
    from minicnn.models.revnet import RevNet

    def arrays(ds):
        xs = numpy.stack([numpy.asarray(ds[i][0].data) for i in range(len(ds))])
        ys = numpy.array([int(ds[i][1]) for i in range(len(ds))])
        return numpy.repeat(xs, 3, axis=1).astype(numpy.float32), ys

    (xtr, ytr), (xte, yte) = arrays(mc.datasets.digits(train=True)), arrays(mc.datasets.digits(train=False))
    results = {}
    for depth, units in pairs:
        for seed in seeds:
            results[depth, seed] = {}
            for name, make in (("revnet", lambda: RevNet(units, (16, 16, 32, 64))),
                               ("resnet", lambda: CifarResNet(depth))):
                mc.manual_seed(seed)
                model = make()
                opt = mc.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
                order = numpy.random.default_rng(seed)
                for _ in range(epochs):
                    model.train()
                    perm = order.permutation(len(xtr))
                    for k in range(0, len(perm), batch):
                        idx = perm[k:k + batch]
                        opt.zero_grad()
                        mc.nn.functional.cross_entropy(model(mc.tensor(xtr[idx])), mc.tensor(ytr[idx])).backward()
                        opt.step()
                model.eval()
                with mc.no_grad():
                    results[depth, seed][name] = float((model(mc.tensor(xte)).data.argmax(1) == yte).mean())
            print(f"  digits depth {depth} seed {seed}: {results[depth, seed]}", flush=True)
    return results


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"resnet": ("plain ResNet (164: bottleneck)", "o-"),
              "checkpoint": ("ResNet, checkpoint_sequential, ceil(sqrt(units)) segments", "s-"),
              "revnet": ("RevNet (basic; 164: bottleneck, 4x wider)", "^-"),
              "revnet-bottleneck": ("RevNet bottleneck at RevNet-164's widths", "v--")}
    for variant, (label, style) in styles.items():
        pts = sorted((r["depth"], r["activation_mib"]) for r in rows if r["variant"] == variant)
        if pts:
            ax.plot(*zip(*pts), style, label=label)
    ax.set_xlabel("depth (layers)")
    ax.set_ylabel("activation memory of a training step (MiB)")
    ax.set_title(f"Training memory against depth, batch {BATCH} x 3x{SIZE}x{SIZE}, float32")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(rows, times, digits):
    by = {(r["variant"], r["depth"]): r for r in rows}
    lines = [f"Batch {BATCH} x 3x{SIZE}x{SIZE}, float32, one training step (forward, cross-entropy, backward). "
             f"Peak: tracemalloc's peak above the memory before the step; activations: the peak less the "
             f"parameters' gradients. Machine: {platform.machine()}, {os.cpu_count()} cores, "
             f"Python {platform.python_version()}.", "",
             "| network | depth | segments | params (M) | step peak (MiB) | activations (MiB) | step (s) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["variant"], r["depth"], r["segments"] or 0)):
        lines.append(f"| {r['variant']} | {r['depth']} | {r['segments'] or ''} | {r['params_m']:.2f} | "
                     f"{r['peak_mib']:.1f} | {r['activation_mib']:.1f} | {r['step_s']:.2f} |")
    lines.append("")
    plain, ck, rev = by.get(("resnet", 110)), by.get(("checkpoint", 110)), by.get(("revnet", 110))
    targets = []
    if plain and ck:
        m = ck["activation_mib"] / plain["activation_mib"]
        t = times["checkpoint"] / times["resnet"]
        targets.append(f"- ResNet-110 with checkpoint_sequential over ceil(sqrt(54)) = 8 segments: activation memory "
                       f"{m:.2f}x the plain step's (target <= 0.3x), time {t:.2f}x (target <= 1.4x; medians "
                       f"of 7 alternated steps: {times['checkpoint']:.2f} s against {times['resnet']:.2f} s, while "
                       f"other processes kept {times['other_cores'] or 0:.1f} of the {os.cpu_count()} cores busy).")
        sweep = sorted((r["segments"], r["activation_mib"] / plain["activation_mib"]) for r in rows
                       if r["variant"] in ("checkpoint", "checkpoint-k") and r["depth"] == 110)
        targets.append("- ResNet-110, activation memory against the number of segments: " +
                       ", ".join(f"{k}: {m:.2f}x" for k, m in sweep) + ".")
    if plain and rev:
        targets.append(f"- RevNet-110: activation memory {rev['activation_mib'] / plain['activation_mib']:.2f}x "
                       f"ResNet-110's (target <= 0.2x).")
    basic = [by[("revnet", d)]["activation_mib"] for d in REVNET_UNITS if ("revnet", d) in by]
    if basic:
        targets.append(f"- Basic RevNets, depth 26 to 110 at the same widths: activation memory from "
                       f"{min(basic):.1f} to {max(basic):.1f} MiB, a spread of {max(basic) / min(basic) - 1:.0%} "
                       f"(flat: target within 10%).")
    if ("revnet", 164) in by and ("revnet", 38) in by:
        r164, r38 = by[("revnet", 164)]["activation_mib"], by[("revnet", 38)]["activation_mib"]
        line = (f"- RevNet-164 against RevNet-38: {r164 / r38:.2f}x (target within 10%). RevNet-164's stages "
                f"are 4x wider (128-256-512 channels against 32-64-128), so each stored activation is 4x larger")
        if ("revnet-bottleneck", 56) in by:
            r56 = by[("revnet-bottleneck", 56)]["activation_mib"]
            line += (f"; at equal width the bottleneck family is flat too: RevNet-164 / bottleneck RevNet-56 "
                     f"= {r164 / r56:.2f}x")
        targets.append(line + ".")
    lines += ["Targets:", ""] + targets
    if digits:
        lines += ["", "Digits (scikit-learn 8x8, 1,437 training and 360 test images), test accuracy after "
                  "6 epochs from the same seed:", "",
                  "| depth | seed | RevNet | ResNet |", "|---:|---:|---:|---:|"]
        for (depth, seed), acc in sorted(digits.items()):
            lines.append(f"| {depth} | {seed} | {acc['revnet']:.3f} | {acc['resnet']:.3f} |")
        for depth in sorted({d for d, _ in digits}):
            rv = [a["revnet"] for (d, _), a in digits.items() if d == depth]
            rs = [a["resnet"] for (d, _), a in digits.items() if d == depth]
            lines.append(f"| {depth} | mean | {statistics.mean(rv):.3f} | {statistics.mean(rs):.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory_depth", description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-digits", action="store_true", help="skip the training run on the digits")
    parser.add_argument("--out", default=RESULTS, help="output folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    rows = []
    print("training memory against depth:", flush=True)
    for depth in RESNET_DEPTHS:
        rows.append(measure("resnet", depth))
        rows.append(measure("checkpoint", depth))
    for segments in SEGMENT_SWEEP:
        rows.append(measure("checkpoint-k", 110, segments))
    for depth in list(REVNET_UNITS) + [164]:
        rows.append(measure("revnet", depth))
    rows.append(measure("revnet-bottleneck", 56))
    times = paired_time()
    digits = None if args.no_digits else digits_accuracies()
    os.makedirs(args.out, exist_ok=True)
    text = report(rows, times, digits)
    with open(os.path.join(args.out, "memory_depth.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "memory_depth.json"), "w") as f:
        json.dump({"rows": rows, "resnet110_times": times,
                   "digits": None if digits is None else
                   [{"depth": d, "seed": s, **acc} for (d, s), acc in sorted(digits.items())]}, f, indent=1)
    plot(rows, os.path.join(args.out, "memory_depth.png"))
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
