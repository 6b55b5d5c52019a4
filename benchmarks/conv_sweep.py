"""The conv sweep: conv2d over a grid of geometries drawn the way real
networks use them, minicnn against torch, forward and forward+backward.

    python -m benchmarks.conv_sweep               # the whole grid (GRID)
    python -m benchmarks.conv_sweep --quick       # every QUICK_EVERY-th row
    python -m benchmarks --only conv-sweep        # the same, from the benchmark runner

The benchmark table's seven conv layers are a fixed list; an engine tuned
to them can still be slow on the geometries they do not name. ``GRID`` is
an explicit list of layers, each taken from a network (the ``source``
column): kernels 1, 3, 5, 7, 1x7 and 7x1; strides 1 and 2; dilations 1
and 2; groups 1, 2, 4, 32 and depthwise; 16 to 512 channels; output maps
7x7 to 112x112; batches 1 to 32. Padding is "same" (dilation * (k - 1) / 2
per side), as in those networks. Batches are kept where one call stays
well under a second on 2 cores.

Timing is ``run.py``'s, case for case (``run.run_cases``: warm-up, each
timed call right after an untimed one of the same framework, a pause
between frameworks, medians, the ratio's range over the repeats) and so
is the load detection (``load.py``: each case and the whole run is marked
unreliable when other processes kept the cores busy). float32.

Summary: the geometric mean and the worst case of the ratio (minicnn
time / torch time), forward and forward+backward. Results:
``benchmarks/results/conv_sweep.md`` (the whole grid as a table, the
summary and the machine's load), ``conv_sweep.json`` and
``conv_sweep.png``: a heat map, one panel per direction, rows the kernel,
columns the grouping (dense, groups 2-4, groups 32, depthwise) by stride
and dilation, each cell the geometric mean of its cases' ratios.
"""
import argparse
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import load, run  # noqa: E402  (after the path is set)

#: Every QUICK_EVERY-th row of GRID makes the --quick subset.
QUICK_EVERY = 6
DEFAULT_REPEATS, QUICK_REPEATS = 5, 3


@dataclass(frozen=True)
class Layer:
    """One conv2d geometry: input (n, c, h, w), o output channels, a kernel
    (kh, kw), stride, dilation and groups; "same" padding."""
    source: str
    n: int
    c: int
    size: int
    o: int
    kernel: tuple
    stride: int = 1
    dilation: int = 1
    groups: int = 1

    @property
    def padding(self):
        return tuple(self.dilation * (k - 1) // 2 for k in self.kernel)

    @property
    def out_size(self):
        """The output map's side: (H + 2p - d (k - 1) - 1) / s + 1, per axis."""
        return tuple((self.size + 2 * p - self.dilation * (k - 1) - 1) // self.stride + 1
                     for k, p in zip(self.kernel, self.padding))

    @property
    def grouping(self):
        if self.groups == 1:
            return "dense"
        if self.groups == self.c == self.o:
            return "depthwise"
        return f"groups {self.groups}"

    @property
    def kernel_name(self):
        kh, kw = self.kernel
        return f"{kh}x{kw}"

    def flops(self):
        """Forward FLOPs: 2 * N * O * OH * OW * (C / groups) * KH * KW."""
        oh, ow = self.out_size
        return 2 * self.n * self.o * oh * ow * (self.c // self.groups) * self.kernel[0] * self.kernel[1]

    def name(self):
        extra = "".join([f" d{self.dilation}" if self.dilation > 1 else "",
                         f" {self.grouping}" if self.groups > 1 else ""])
        return f"{self.n}x{self.c}x{self.size}x{self.size} -> {self.o}, {self.kernel_name}/{self.stride}{extra}"


def _l(source, n, c, size, o, k, stride=1, dilation=1, groups=1):
    return Layer(source, n, c, size, o, (k, k) if isinstance(k, int) else tuple(k), stride, dilation, groups)


# The grid: real layers of real networks (torchvision's definitions unless
# said otherwise); "dw" marks depthwise (groups = channels).
GRID = [
    # ResNet-18/34 (basic blocks) and its stem
    _l("ResNet-18 stem", 1, 3, 224, 64, 7, 2),
    _l("ResNet-18 stem", 4, 3, 224, 64, 7, 2),
    _l("ResNet-18 layer1 3x3", 8, 64, 56, 64, 3),
    _l("ResNet-18 layer1 3x3", 1, 64, 56, 64, 3),
    _l("ResNet-18 layer2 first 3x3/2", 8, 64, 56, 128, 3, 2),
    _l("ResNet-18 layer2 shortcut 1x1/2", 8, 64, 56, 128, 1, 2),
    _l("ResNet-18 layer2 3x3", 8, 128, 28, 128, 3),
    _l("ResNet-18 layer3 first 3x3/2", 8, 128, 28, 256, 3, 2),
    _l("ResNet-18 layer3 3x3", 8, 256, 14, 256, 3),
    _l("ResNet-18 layer4 first 3x3/2", 8, 256, 14, 512, 3, 2),
    _l("ResNet-18 layer4 3x3", 1, 512, 7, 512, 3),
    _l("ResNet-18 layer4 3x3", 16, 512, 7, 512, 3),
    # ResNet-50 (bottlenecks)
    _l("ResNet-50 layer1 1x1 reduce", 8, 256, 56, 64, 1),
    _l("ResNet-50 layer1 1x1 expand", 8, 64, 56, 256, 1),
    _l("ResNet-50 layer2 3x3/2", 8, 128, 56, 128, 3, 2),
    _l("ResNet-50 layer2 shortcut 1x1/2", 8, 256, 56, 512, 1, 2),
    _l("ResNet-50 layer3 1x1 reduce", 32, 512, 14, 256, 1),
    _l("ResNet-50 layer4 1x1", 1, 512, 7, 512, 1),
    # VGG-16
    _l("VGG-16 conv2_1", 1, 64, 112, 128, 3),
    _l("VGG-16 conv4_2", 1, 512, 28, 512, 3),
    _l("VGG-16 conv5_1", 2, 512, 14, 512, 3),
    # ResNeXt-50 32x4d (groups 32)
    _l("ResNeXt-50 layer1 3x3 g32", 8, 128, 56, 128, 3, groups=32),
    _l("ResNeXt-50 layer2 first 3x3/2 g32", 8, 256, 56, 256, 3, 2, groups=32),
    _l("ResNeXt-50 layer2 3x3 g32", 1, 256, 28, 256, 3, groups=32),
    _l("ResNeXt-50 layer3 first 3x3/2 g32", 1, 512, 28, 512, 3, 2, groups=32),
    _l("ResNeXt-50 layer3 3x3 g32", 32, 512, 14, 512, 3, groups=32),
    _l("ResNeXt-50 layer4 3x3 g32 (width 1024 halved)", 8, 512, 7, 512, 3, groups=32),
    # RegNetX (group width 16) and AlexNet's two-GPU split (groups 2)
    _l("RegNetX-400MF stage1 3x3/2 g2", 8, 32, 56, 32, 3, 2, groups=2),
    _l("RegNetX-400MF stage1 3x3 g2", 32, 32, 28, 32, 3, groups=2),
    _l("RegNetX-800MF stage1 3x3/2 g4", 8, 64, 56, 64, 3, 2, groups=4),
    _l("RegNetX-800MF stage1 3x3 g4", 8, 64, 28, 64, 3, groups=4),
    _l("RegNetX-800MF stage2 3x3 g8->g4 (width 64)", 16, 64, 14, 64, 3, groups=4),
    _l("AlexNet (Krizhevsky 2012) conv2 5x5 g2", 4, 96, 27, 256, 5, groups=2),
    _l("AlexNet (Krizhevsky 2012) conv4 3x3 g2", 8, 384, 13, 384, 3, groups=2),
    _l("ShuffleNet v1 g4 1x1 reduce", 8, 272, 28, 68, 1, groups=4),
    _l("ShuffleNet v1 g4 1x1 expand", 8, 68, 28, 272, 1, groups=4),
    # MobileNetV2 (depthwise 3x3 and pointwise 1x1)
    _l("MobileNetV2 block1 dw", 8, 32, 112, 32, 3, groups=32),
    _l("MobileNetV2 block2 dw/2", 8, 96, 112, 96, 3, 2, groups=96),
    _l("MobileNetV2 block3 dw", 8, 144, 56, 144, 3, groups=144),
    _l("MobileNetV2 block3 dw", 1, 144, 56, 144, 3, groups=144),
    _l("MobileNetV2 block4 dw/2", 8, 144, 56, 144, 3, 2, groups=144),
    _l("MobileNetV2 block7 dw", 32, 192, 28, 192, 3, groups=192),
    _l("MobileNetV2 block11 dw", 8, 384, 14, 384, 3, groups=384),
    _l("MobileNetV2 block3 1x1 expand", 8, 24, 56, 144, 1),
    _l("MobileNetV2 block3 1x1 project", 8, 144, 56, 24, 1),
    _l("MobileNetV2 block11 1x1 project", 32, 384, 14, 64, 1),
    _l("ShuffleNetV2 stage2 dw", 32, 58, 28, 58, 3, groups=58),
    _l("ShuffleNetV2 stage3 dw/2", 8, 116, 28, 116, 3, 2, groups=116),
    # EfficientNet-B0 / MobileNetV3 (depthwise 5x5)
    _l("EfficientNet-B0 stage3 dw 5x5/2", 8, 144, 56, 144, 5, 2, groups=144),
    _l("EfficientNet-B0 stage3 dw 5x5", 8, 240, 28, 240, 5, groups=240),
    _l("EfficientNet-B0 stage5 dw 5x5 (expansion 480)", 1, 480, 14, 480, 5, groups=480),
    _l("MobileNetV3-Small dw 5x5/2", 8, 288, 14, 288, 5, 2, groups=288),
    # GoogLeNet / Inception (dense 5x5; factorized 1x7 and 7x1)
    _l("GoogLeNet inception3a 5x5", 8, 16, 28, 32, 5),
    _l("GoogLeNet inception3b 5x5", 8, 32, 28, 96, 5),
    _l("Inception-style 5x5 'same' (issue 25)", 4, 192, 28, 64, 5),
    _l("GoogLeNet inception4a 5x5", 32, 16, 14, 48, 5),
    _l("Inception-v3 Mixed_6b 1x7", 8, 128, 17, 128, (1, 7)),
    _l("Inception-v3 Mixed_6b 7x1", 8, 128, 17, 192, (7, 1)),
    _l("Inception-v3 Mixed_6e 1x7", 8, 192, 17, 192, (1, 7)),
    _l("Inception-v3 Mixed_6e 7x1", 1, 192, 17, 192, (7, 1)),
    # ConvNeXt (depthwise 7x7)
    _l("ConvNeXt-T stage1 dw 7x7", 8, 96, 56, 96, 7, groups=96),
    _l("ConvNeXt-T stage2 dw 7x7", 8, 192, 28, 192, 7, groups=192),
    _l("ConvNeXt-T stage3 dw 7x7", 32, 384, 14, 384, 7, groups=384),
    # Dilated networks (dilation 2)
    _l("DeepLabV3 ResNet-50 layer3 3x3 d2 (output stride 8)", 1, 256, 28, 256, 3, dilation=2),
    _l("DRN-C-26 layer5 3x3 d2", 2, 256, 28, 256, 3, dilation=2),
    _l("DeepLabV3+ atrous separable dw 3x3 d2", 8, 256, 28, 256, 3, dilation=2, groups=256),
    _l("ResNeXt DeepLab layer3 3x3 d2 g32", 2, 512, 28, 512, 3, dilation=2, groups=32),
    # DenseNet-121 and SqueezeNet
    _l("DenseNet-121 block2 1x1 bottleneck", 8, 256, 28, 128, 1),
    _l("DenseNet-121 block2 3x3 growth", 8, 128, 28, 32, 3),
    _l("DenseNet-121 block4 3x3 growth", 32, 128, 7, 32, 3),
    _l("SqueezeNet fire2 expand 3x3", 8, 16, 55, 64, 3),
]


def sweep_cases(layers=GRID, device="cpu"):
    """One ``cases.Case`` per layer and direction (fwd, fwd+bwd), group
    ``conv-sweep``; the layer's source is its note."""
    from benchmarks.cases import Case, _data, _op_case  # imports torch
    import minicnn.nn.functional as F
    import torch.nn.functional as TF

    def build(layer, backward):
        kw = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
        fan_in = layer.c // layer.groups * layer.kernel[0] * layer.kernel[1]
        x = _data(layer.n, layer.c, layer.size, layer.size)
        w = _data(layer.o, layer.c // layer.groups, *layer.kernel) * (2 / fan_in) ** 0.5
        return _op_case([x, w], lambda x, w: F.conv2d(x, w, **kw), lambda x, w: TF.conv2d(x, w, **kw),
                        backward, device)

    return [Case("conv-sweep", f"{layer.name()} {'fwd+bwd' if backward else 'fwd'}",
                 lambda layer=layer, backward=backward: build(layer, backward),
                 flops=layer.flops() * (3 if backward else 1), notes=[layer.source])
            for layer in layers for backward in (False, True)]


def quick_layers():
    return GRID[::QUICK_EVERY]


# -- summary and report --------------------------------------------------
def _direction(row):
    return "fwd+bwd" if row["case"].endswith("fwd+bwd") else "fwd"


def summary(rows):
    """{direction: (geometric mean, worst ratio, worst case's name, cases)}
    over the rows that were timed."""
    result = {}
    for direction in ("fwd", "fwd+bwd"):
        timed = [r for r in rows if r["ratio"] is not None and _direction(r) == direction]
        if timed:
            worst = max(timed, key=lambda r: r["ratio"])
            result[direction] = (run._geomean([r["ratio"] for r in timed]), worst["ratio"], worst["case"],
                                 len(timed))
    return result


#: Heat-map rows (kernels) and columns (grouping, stride, dilation).
KERNELS = ["1x1", "3x3", "5x5", "7x7", "1x7", "7x1"]
GROUPINGS = ["dense", "groups 2-4", "groups 32", "depthwise"]


def _cell(layer):
    grouping = "groups 2-4" if layer.grouping in ("groups 2", "groups 4") else layer.grouping
    column = f"{grouping}\n/{layer.stride}" + (f" d{layer.dilation}" if layer.dilation > 1 else "")
    return layer.kernel_name, column


def heat_map_cells(rows, layers):
    """{direction: {(kernel, column): [ratios]}} for the heat map: each
    row matched to its layer by name."""
    by_name = {layer.name(): layer for layer in layers}
    cells = {"fwd": {}, "fwd+bwd": {}}
    for r in rows:
        if r["ratio"] is None:
            continue
        direction = _direction(r)
        layer = by_name[r["case"][: -len(direction) - 1]]
        cells[direction].setdefault(_cell(layer), []).append(r["ratio"])
    return cells


def write_chart(rows, layers, info, path):
    """Two heat maps (fwd, fwd+bwd): kernel x (grouping, stride,
    dilation), coloured by the geometric mean ratio on a log scale
    centred on 1 (blue: minicnn faster, red: slower), cases per cell
    noted."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.colors
    import matplotlib.pyplot as plt
    import numpy
    cells = heat_map_cells(rows, layers)
    columns = sorted({c for d in cells.values() for _, c in d},
                     key=lambda c: (GROUPINGS.index(c.split("\n")[0]), c))
    kernels = [k for k in KERNELS if any(k == kk for d in cells.values() for kk, _ in d)]
    fig, axes = plt.subplots(1, 2, figsize=(2.2 + 1.15 * len(columns) * 2, 1.2 + 0.55 * len(kernels)),
                             squeeze=False)
    norm = matplotlib.colors.LogNorm(vmin=0.25, vmax=4.0)
    for ax, direction in zip(axes[0], ("fwd", "fwd+bwd")):
        grid = numpy.full((len(kernels), len(columns)), numpy.nan)
        for (k, c), ratios in cells[direction].items():
            grid[kernels.index(k), columns.index(c)] = run._geomean(ratios)
        image = ax.imshow(numpy.ma.masked_invalid(grid), cmap="coolwarm", norm=norm, aspect="auto")
        for (k, c), ratios in cells[direction].items():
            i, j = kernels.index(k), columns.index(c)
            ax.text(j, i, f"{grid[i, j]:.2f}\n({len(ratios)})", ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(columns)), columns, fontsize=7)
        ax.set_yticks(range(len(kernels)), kernels, fontsize=8)
        ax.set_facecolor("#dddddd")  # cells no network in the grid fills
        ax.set_title(f"conv2d {direction}", fontsize=9)
    bar = fig.colorbar(image, ax=axes[0].tolist(), label="minicnn / torch time (geometric mean; cases)")
    bar.set_ticks([0.25, 0.5, 1, 2, 4], labels=["0.25", "0.5", "1", "2", "4"])
    bar.minorticks_off()
    reliable = (info.get("load") or {}).get("reliable", True)
    fig.suptitle(f"conv sweep, {info['threads']} threads, {info['cpu']}"
                 + ("" if reliable else " - UNRELIABLE: machine under load"), fontsize=9)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def markdown(rows, layers, info, quick=False):
    """The report: method line, load verdict, summary and the whole grid."""
    lines = [f"Measured {info['date']} on **{info['cpu']}**, {info['cores']} cores, {info['threads']} threads for "
             f"both frameworks; torch {info['torch']}, NumPy {info['numpy']}, Numba {info['numba']}; load average "
             f"{info.get('load_average')} at the start. conv2d float32, {len(layers)} geometries x (fwd, fwd+bwd); "
             f"median of repeats after warm-up, ratio = minicnn time / torch time (below 1: minicnn is faster), "
             f"with its range over the repeats. Method: `benchmarks/conv_sweep.py`."
             + (" **Quick subset.**" if quick else "")]
    lines += run._load_markdown(info.get("load"))
    lines += ["", "| direction | cases | geometric mean | worst | worst case |", "|---|---:|---:|---:|---|"]
    for direction, (geomean, worst, worst_case, count) in summary(rows).items():
        lines.append(f"| {direction} | {count} | **{geomean:.2f}** | **{worst:.2f}** | {worst_case} |")
    lines += ["", "| source | case | minicnn ms | torch ms | ratio | range | minicnn GFLOP/s | torch GFLOP/s | "
              "busy elsewhere, cores |", "|---|---|---:|---:|---:|---|---:|---:|---:|"]
    fmt = run._fmt
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['notes']} | {r['case']} | | | | | | {r['status']} | |")
            continue
        lines.append(f"| {r['notes']} | {r['case']} | {fmt(r['minicnn_ms'])} | {fmt(r['torch_ms'])} | "
                     f"**{fmt(r['ratio'])}** | {fmt(r.get('ratio_min'))}-{fmt(r.get('ratio_max'))} | "
                     f"{fmt(r['minicnn_gflops'], 1)} | {fmt(r['torch_gflops'], 1)} | "
                     f"{run._busy_cell(r.get('other_cores'))} |")
    return "\n".join(lines)


def write_results(rows, layers, info, out_dir, quick=False):
    """conv_sweep.md, conv_sweep.json and conv_sweep.png in ``out_dir``;
    returns the markdown."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = markdown(rows, layers, info, quick)
    timed = any(r["ratio"] is not None for r in rows)
    (out_dir / "conv_sweep.md").write_text("# Conv sweep\n\n" + text
                                           + ("\n\n![conv sweep heat map](conv_sweep.png)\n" if timed else "\n"))
    verdict = info.get("load")
    payload = {"machine": info, "quick": quick, "cases": rows,
               "summary": {d: dict(zip(("geomean", "worst", "worst_case", "cases"), v))
                           for d, v in summary(rows).items()},
               "reliable": verdict["reliable"] if verdict else None,
               "unreliable_because": verdict["reasons"] if verdict else None}
    (out_dir / "conv_sweep.json").write_text(json.dumps(payload, indent=2) + "\n")
    if timed:
        write_chart(rows, layers, info, out_dir / "conv_sweep.png")
    return text


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.conv_sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"every {QUICK_EVERY}th geometry, fewer repeats")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for both frameworks")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before timing")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"timed calls per case (default {DEFAULT_REPEATS}, quick {QUICK_REPEATS})")
    parser.add_argument("--out", default=str(run.RESULTS), help="output folder (default benchmarks/results)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    run.limit_threads(args.threads)  # before torch is imported by the cases
    layers = quick_layers() if args.quick else GRID
    cases = sweep_cases(layers)
    repeats = args.repeats or (QUICK_REPEATS if args.quick else DEFAULT_REPEATS)
    info = run.machine_info(args.threads)
    print(f"conv sweep: {len(cases)} cases, {args.threads} threads, {info['cpu']}")
    before = load.measure_before()
    whole_run = load.LoadMeter()
    rows = run.run_cases(cases, args.warmup, repeats)
    info["load"] = load.assess(before, whole_run(), info["load_average"], load.load_average(), len(load.cores()))
    if not info["load"]["reliable"]:
        print("UNRELIABLE: other processes competed for the cores: " + "; ".join(info["load"]["reasons"]))
    text = write_results(rows, layers, info, args.out, args.quick)
    print(text)
    print(f"written to {args.out}")
    return rows


if __name__ == "__main__":
    main()
