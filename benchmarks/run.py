"""Run the benchmarks: minicnn against torch, in one process, on the CPU
or the GPU.

    python -m benchmarks                 # the full set (several minutes)
    python -m benchmarks --quick         # a reduced set, under a minute
    python benchmarks/run.py --threads 1 --repeats 9
    python -m benchmarks --device cuda   # minicnn/CuPy against torch/cuDNN
    python -m benchmarks --contention    # only the slowdown beside busy processes

Both frameworks get the same thread count (``--threads``, default
``os.cpu_count()``): ``torch.set_num_threads`` and ``mc.set_num_threads``
(which also makes NumPy's BLAS single-threaded: minicnn shares out its
GEMMs among its own threads). Each case builds its data once,
warms both sides up (``--warmup`` calls: Numba compiles or loads its
kernels, torch picks its algorithms), then times ``--repeats`` calls of
each, alternating minicnn and torch so that a change in the machine's
load hits both alike, and reports the medians. The ratio is minicnn's
time over torch's: below 1 minicnn is faster.

Each timed call comes right after an untimed call of the same framework,
as in a training loop, where one step follows another, and each
framework's pair of calls starts ``SWITCH_PAUSE_S`` (30 ms) after the
other's ended. Without both, a timing measures the switch instead:

* torch's OpenMP threads busy-wait for more work after each call, for
  about 20 ms, on the cores minicnn's threads then need (minicnn's spin
  for 2 ms, ``kernels/cpu/threads.py``). Measured on 2
  cores, the depthwise 3x3 forward: 2.5 ms back to back, 7.5 ms straight
  after a torch call, 4.8 ms 5 ms after it, 3.8 ms 10 ms after it.
* a core left idle for a few ms takes 0.05-0.3 ms to wake up in a VM:
  the untimed call wakes them, for both frameworks. It does not make
  them as fast as back to back: on this project's VM a small layer's
  timed call after the pause took up to 2x its back-to-back time
  (``kernels/cpu/placement.py``).

The warm-up calls (``warm_up``) keep the same pause.

The full run also measures the peak memory of a training step
(``memory.py``), the time of ``import minicnn`` and each framework's
slowdown beside busy processes (``contention.py``).

Every run also measures how busy other processes keep the cores
(``load.py``): for a second before the run, during each case and over
the whole run. A case timed while they used more than
``load.OTHER_CORES_LIMIT`` cores is marked in the tables, and a run with
such load before or during it is marked unreliable, with the reason, in
the printed report, ``results.md``, ``results.json`` (``"load"``) and the
README.

Results go to ``benchmarks/results/`` (``--quick``: ``results/quick/``,
``--contention``: ``results/contention/``): ``results.md`` (tables,
targets, machine), ``results.csv`` and ``results.json`` (one row per
case; the JSON also holds memory, import time and contention),
``contention.csv`` (one row per workload and load) and ``ratios.png``
(the ratios as a bar chart). ``--update-readme`` also copies the
markdown into README.md between the ``<!-- benchmarks:start -->`` and
``<!-- benchmarks:end -->`` markers.

On the GPU (``--device cuda``, results in ``results/cuda/``) kernels run
asynchronously: a call returns when its work is queued, not done. So every
timed call is followed by a synchronization of both CuPy's and torch's
device (``_cuda_synchronize``), and the clock starts on an idle GPU. The
targets and the CPU peak-memory measurement apply to the CPU run only.
"""
import argparse
import csv
import datetime
import importlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import load  # noqa: E402  (after the path is set)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
#: Sizes of torch's OpenMP and MKL pools, read when torch is loaded;
#: minicnn reads OMP_NUM_THREADS as its default too.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
README_START, README_END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"
#: Seconds between one framework's calls and the other's: longer than
#: torch's OpenMP threads spin after a call (~20 ms; minicnn's sleep at once).
SWITCH_PAUSE_S = 0.03

# name, what is measured, the largest ratio that meets the target
TARGETS = [
    ("conv2d fwd+bwd, geometric mean of the 7 layers", "conv_geomean", 1.0),
    ("conv2d fwd+bwd, worst layer", "conv_worst", 1.5),
    ("depthwise conv2d fwd+bwd", "depthwise", 1.0),
    ("ResNet-18 training step", "resnet_step", 1.2),
    ("LeNet-5 training step", "lenet_step", 1.5),
    ("resnet18 inference", "resnet_inference", 1.0),
    ("ResNet-18 training step, peak memory", "memory", 1.5),
    ("import minicnn, warm Numba cache (seconds)", "import_s", 1.0),
    ("slowdown under load, minicnn / torch", "contention", 1.0),
]


# -- set-up --------------------------------------------------------------
def limit_threads(threads):
    """Give both frameworks ``threads`` threads. The environment only
    counts before torch is imported (``main`` calls this first, and the
    child processes inherit it); the calls set the pools themselves."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    import torch
    import minicnn as mc
    torch.set_num_threads(threads)
    mc.set_num_threads(threads)


def machine_info(threads, device="cpu"):
    """What the numbers depend on: CPU (or GPU), cores, threads and versions."""
    import numba
    import numpy
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    # "AMD EPYC" names several generations; which kernels run depends on the
    # vector width (minicnn's tiles, OpenBLAS's and torch's kernels alike).
    import llvmlite.binding
    features = llvmlite.binding.get_host_cpu_features()
    cpu += f" ({llvmlite.binding.get_host_cpu_name()}, {'AVX-512' if features.get('avx512f') else 'no AVX-512'})"
    return {
        "cpu": cpu, "cores": os.cpu_count(), "threads": threads, "python": platform.python_version(),
        "numpy": numpy.__version__, "torch": torch.__version__, "numba": numba.__version__,
        "platform": platform.platform(), "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        # Other processes' load skews the ratios (threads wait for cores): say how busy the machine was.
        "load_average": load.load_average(),
        "device": device,
        "gpu": torch.cuda.get_device_name() if device != "cpu" else None,
    }


# -- timing --------------------------------------------------------------
def _no_synchronize():
    pass


def _cuda_synchronize():
    """Wait for every queued kernel of both frameworks (the GPU runs them
    asynchronously: without this a timing measures only the launches)."""
    import torch
    import minicnn as mc
    mc.cuda.synchronize()
    torch.cuda.synchronize()


def _seconds(fn, synchronize=_no_synchronize):
    synchronize()
    start = time.perf_counter()
    fn()
    synchronize()
    return time.perf_counter() - start


def warm_up(mc_fn, torch_fn, calls):
    """``calls`` untimed calls of each framework, ``SWITCH_PAUSE_S`` apart
    as the timed ones are: called back to back, torch's threads still
    spinning took the cores from minicnn's, whose pool took that for a busy
    machine and let its workers loose (``kernels/cpu/threads.py``) for the
    first timed calls."""
    for _ in range(calls):
        time.sleep(SWITCH_PAUSE_S)
        mc_fn()
        time.sleep(SWITCH_PAUSE_S)
        torch_fn()


def time_case(case, warmup, repeats, synchronize=_no_synchronize):
    """One result row for ``case``: median milliseconds of each framework,
    their ratio and GFLOP/s. A case that is skipped or fails gives a row
    that says why instead of stopping the run. ``synchronize`` waits for
    the device after each call (``_cuda_synchronize`` on the GPU)."""
    row = {"group": case.group, "case": case.name, "minicnn_ms": None, "torch_ms": None, "ratio": None,
           "ratio_min": None, "ratio_max": None,
           "minicnn_gflops": None, "torch_gflops": None, "status": "ok", "notes": "; ".join(case.notes),
           "other_cores": None}
    if case.skip:
        row["status"] = f"skipped: {case.skip}"
        return row
    try:
        mc_fn, torch_fn = case.build()
        warm_up(mc_fn, torch_fn, warmup)
        mc_times, torch_times = [], []
        meter = load.LoadMeter()
        for _ in range(case.repeats or repeats):
            time.sleep(SWITCH_PAUSE_S)  # the other framework's threads stop spinning (module docstring)
            mc_fn()                     # untimed: the timed call follows one of its own
            mc_times.append(_seconds(mc_fn, synchronize))
            time.sleep(SWITCH_PAUSE_S)
            torch_fn()
            torch_times.append(_seconds(torch_fn, synchronize))
    except Exception as error:  # one broken case must not lose the others' results
        row["status"] = f"error: {type(error).__name__}: {error}"
        return row
    row["other_cores"] = meter()
    mc_s, torch_s = statistics.median(mc_times), statistics.median(torch_times)
    # The range of the ratio over the repeats: each repeat's pair of calls ran close in time.
    pair_ratios = [m / t for m, t in zip(mc_times, torch_times)]
    row.update(minicnn_ms=mc_s * 1e3, torch_ms=torch_s * 1e3, ratio=mc_s / torch_s,
               ratio_min=min(pair_ratios), ratio_max=max(pair_ratios))
    if case.flops:
        row.update(minicnn_gflops=case.flops / mc_s / 1e9, torch_gflops=case.flops / torch_s / 1e9)
    return row


def run_cases(cases, warmup, repeats, log=print, synchronize=_no_synchronize):
    """Time every case in order; a list of result rows."""
    rows = []
    for case in cases:
        row = time_case(case, warmup, repeats, synchronize)
        rows.append(row)
        log(_progress_line(row))
    return rows


def _progress_line(row):
    if row["status"] != "ok":
        return f"  {row['group']:<16} {row['case']:<48} {row['status']}"
    return (f"  {row['group']:<16} {row['case']:<48} minicnn {row['minicnn_ms']:9.2f} ms   "
            f"torch {row['torch_ms']:9.2f} ms   ratio {row['ratio']:5.2f}"
            + (f"   UNRELIABLE: other processes used {row['other_cores']:.2f} cores"
               if load.busy_elsewhere(row.get("other_cores")) else ""))


# -- memory and start-up (subprocesses) ----------------------------------
def measure_memory(threads):
    """Peak memory of a ResNet-18 training step in each framework, each
    measured in a fresh subprocess (see ``benchmarks/memory.py``)."""
    result = {}
    for framework in ("minicnn", "torch"):
        proc = subprocess.run([sys.executable, "-m", "benchmarks.memory", framework, str(threads)],
                              cwd=ROOT, env=_child_env(), capture_output=True, text=True)
        if proc.returncode != 0:
            return {"status": f"error: {framework}: {proc.stderr.strip().splitlines()[-1:]}"}
        result[framework] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["ratio"] = result["minicnn"]["step_mib"] / result["torch"]["step_mib"]
    result["status"] = "ok"
    return result


def measure_import(repeats=3):
    """Median seconds of ``import minicnn`` in a fresh interpreter (Numba's
    cache is warm after the benchmarks ran)."""
    code = "import time; t = time.perf_counter(); import minicnn; print(time.perf_counter() - t)"
    times = []
    for _ in range(repeats):
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_child_env(),
                              capture_output=True, text=True, check=True)
        times.append(float(proc.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def _child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


# -- summary -------------------------------------------------------------
def _geomean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def target_values(rows, memory, import_s, contention=None):
    """The measured value of each target (None when it was not measured).
    Under load, the worst ratio of slowdowns counts, and only when every
    workload and load was measured."""
    ratio = {(r["group"], r["case"]): r["ratio"] for r in rows if r["ratio"] is not None}
    conv = [v for (g, name), v in ratio.items() if g == "conv2d" and name.endswith("fwd+bwd")]
    full_conv = len(conv) == 7

    def find(group, start):
        return next((v for (g, n), v in ratio.items() if g == group and n.startswith(start)), None)
    return {
        "conv_geomean": _geomean(conv) if full_conv else None,
        "conv_worst": max(conv) if full_conv else None,
        "depthwise": next((v for (g, n), v in ratio.items() if g == "conv2d" and " dw " in n
                           and n.endswith("fwd+bwd")), None),
        "resnet_step": find("train", "ResNet-18"),
        "lenet_step": find("train", "LeNet-5"),
        "resnet_inference": find("inference", "resnet18"),
        "memory": memory.get("ratio") if memory else None,
        "import_s": import_s,
        "contention": max(r["ratio"] for r in contention)
        if contention and all(r["status"] == "ok" for r in contention) else None,
    }


def summarize(rows, memory, import_s, contention=None):
    """[(target, measured, limit, met)] for the targets that were measured."""
    values = target_values(rows, memory, import_s, contention)
    return [(label, values[key], limit, values[key] <= limit)
            for label, key, limit in TARGETS if values[key] is not None]


# -- writers -------------------------------------------------------------
def _fmt(value, digits=2):
    return "" if value is None else f"{value:.{digits}f}"


def _busy_cell(other_cores):
    """A row's "busy elsewhere, cores" cell, in bold and marked unreliable past the limit."""
    busy = _fmt(other_cores)
    return f"**{busy}: unreliable**" if load.busy_elsewhere(other_cores) else busy


def markdown(rows, memory, import_s, info, quick=False, contention=None):
    """The report: machine, tables per group, targets, memory, slowdown
    under load and method."""
    where = (f"**{info['gpu']}** (minicnn through CuPy, torch through cuDNN/cuBLAS, synchronized timings), "
             f"host {info['cpu']}" if info.get("gpu") else f"**{info['cpu']}**")
    lines = [
        f"Measured {info['date']} on {where}, {info['cores']} cores, {info['threads']} threads "
        f"for both frameworks; Python {info['python']}, NumPy {info['numpy']}, Numba {info['numba']}, "
        f"torch {info['torch']}; load average {info.get('load_average')} at the start. float32; median of "
        f"repeats after warm-up; ratio = minicnn time / torch time (below 1: minicnn is faster)."
        + (" **Quick set.**" if quick else ""),
    ]
    lines += _load_markdown(info.get("load"))
    if rows:
        lines += ["", "| group | case | minicnn ms | torch ms | ratio | minicnn GFLOP/s | torch GFLOP/s | "
                  "busy elsewhere, cores |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['group']} | {r['case']} | | | | | {r['status']} | |")
            continue
        lines.append(f"| {r['group']} | {r['case']} | {_fmt(r['minicnn_ms'])} | {_fmt(r['torch_ms'])} | "
                     f"**{_fmt(r['ratio'])}** | {_fmt(r['minicnn_gflops'], 1)} | {_fmt(r['torch_gflops'], 1)} | "
                     f"{_busy_cell(r.get('other_cores'))} |")
    summary = summarize(rows, memory, import_s, contention) if not info.get("gpu") else []  # the CPU's targets
    if summary:
        lines += ["", "| target | measured | limit | met |", "|---|---:|---:|:---:|"]
        lines += [f"| {label} | {value:.2f} | {limit:.2f} | {'yes' if met else 'no'} |"
                  for label, value, limit, met in summary]
    if memory:
        lines += ["", "Peak memory of a ResNet-18 training step (16x3x64x64, SGD with momentum), "
                  "peak resident set during the step minus the resident set before it, each framework "
                  "in a fresh process (method and caveats: `benchmarks/memory.py`):", ""]
        if memory["status"] == "ok":
            m, t = memory["minicnn"], memory["torch"]
            lines += ["| | minicnn | torch | ratio |", "|---|---:|---:|---:|",
                      f"| step peak, MiB | {m['step_mib']:.0f} | {t['step_mib']:.0f} | **{memory['ratio']:.2f}** |",
                      f"| resident before the step, MiB | {m['baseline_mib']:.0f} | {t['baseline_mib']:.0f} | |"]
        else:
            lines.append(memory["status"])
    if import_s is not None:
        lines += ["", f"`import minicnn` with a warm Numba cache: {import_s:.2f} s (median of 3 fresh "
                  "interpreters)."]
    if contention:
        lines += ["", _contention_markdown(contention)]
    return "\n".join(lines) + "\n"


def _load_markdown(verdict):
    """The lines that say how busy other processes kept the cores, and,
    if too busy, that the numbers are unreliable and why."""
    if verdict is None:
        return []
    measured = (f"Other processes kept {_fmt(verdict['other_cores_before'])} of the {verdict['cores']} cores busy "
                f"before the run and {_fmt(verdict['other_cores_during'])} during it (load average "
                f"{verdict['load_average_before']} before, {verdict['load_average_after']} after; method: "
                f"`benchmarks/load.py`).")
    if verdict["reliable"]:
        return ["", measured]
    return ["", f"**UNRELIABLE: other processes competed for the cores: {'; '.join(verdict['reasons'])}. "
            f"The times below measure the load as much as the code; rerun on an idle machine.** {measured}"]


def _contention_markdown(contention):
    repeats = max((r["repeats"] for r in contention if r["status"] == "ok"), default=0)
    lines = ["Slowdown under load: each workload timed as above, then beside 1 and 2 busy processes (a "
             f"Python loop each); slowdown = median loaded time / median idle time over {repeats} repeats, "
             "ratio = minicnn's slowdown / torch's (below 1: minicnn suffers less from the load), with its "
             "range over the repeats; the target takes the worst ratio (method: `benchmarks/contention.py`):",
             "", "| workload | busy | minicnn idle ms | minicnn loaded ms | minicnn slowdown | torch idle ms | "
             "torch loaded ms | torch slowdown | ratio | range |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in contention:
        if r["status"] != "ok":
            lines.append(f"| {r['workload']} | {r['busy']} | | | | | | | | {r['status']} |")
            continue
        lines.append(f"| {r['workload']} | {r['busy']} | {_fmt(r['minicnn_idle_ms'])} | "
                     f"{_fmt(r['minicnn_loaded_ms'])} | {_fmt(r['minicnn_slowdown'])} | {_fmt(r['torch_idle_ms'])} | "
                     f"{_fmt(r['torch_loaded_ms'])} | {_fmt(r['torch_slowdown'])} | **{_fmt(r['ratio'])}** | "
                     f"{_fmt(r['ratio_min'])}-{_fmt(r['ratio_max'])} |")
    return "\n".join(lines)


FIELDS = ["group", "case", "minicnn_ms", "torch_ms", "ratio", "ratio_min", "ratio_max", "minicnn_gflops",
          "torch_gflops", "status", "notes", "other_cores"]
CONTENTION_FIELDS = ["workload", "busy", "repeats", "minicnn_idle_ms", "minicnn_loaded_ms", "minicnn_slowdown",
                     "torch_idle_ms", "torch_loaded_ms", "torch_slowdown", "ratio", "ratio_min", "ratio_max", "status"]


def write_csv(rows, path, fields=FIELDS):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def write_json(rows, memory, import_s, info, path, contention=None):
    summary = [{"target": label, "measured": value, "limit": limit, "met": met}
               for label, value, limit, met in summarize(rows, memory, import_s, contention)]
    verdict = info.get("load")
    payload = {"machine": info, "cases": rows, "memory": memory, "import_s": import_s, "contention": contention,
               "targets": summary, "reliable": verdict["reliable"] if verdict else None,
               "unreliable_because": verdict["reasons"] if verdict else None}
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)
        f.write("\n")


def write_chart(rows, info, path):
    """Horizontal bars: minicnn / torch time per case, log scale, 1 marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    timed = [r for r in rows if r["ratio"] is not None]
    groups = list(dict.fromkeys(r["group"] for r in timed))
    colours = {g: plt.get_cmap("tab10")(i % 10) for i, g in enumerate(groups)}
    fig, ax = plt.subplots(figsize=(9, 0.28 * len(timed) + 1.6))
    y = range(len(timed))[::-1]
    ax.barh(list(y), [r["ratio"] for r in timed], color=[colours[r["group"]] for r in timed])
    ax.set_yticks(list(y), [f"{r['group']}: {r['case']}" for r in timed], fontsize=7)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())  # 0.5, 1, 2: not 5x10^-1
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks([t for t in (0.25, 0.5, 1, 2, 4, 8, 16) if t <= 2 * max(r["ratio"] for r in timed)])
    ax.set_xlabel("time ratio minicnn / torch (log scale; < 1: minicnn faster)")
    where = info.get("gpu") or f"{info['threads']} threads, {info['cpu']}"
    ax.set_title(f"minicnn vs torch, {where}", fontsize=9)
    for yi, r in zip(y, timed):
        ax.text(r["ratio"], yi, f" {r['ratio']:.2f}", va="center", fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # keep the long case names
    plt.close(fig)


def write_results(rows, memory, import_s, info, out_dir, quick=False, contention=None):
    """results.md, results.csv, results.json, and where measured
    contention.csv and ratios.png, in ``out_dir``; returns the markdown."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = markdown(rows, memory, import_s, info, quick, contention)
    timed = any(r["ratio"] is not None for r in rows)
    (out_dir / "results.md").write_text("# Benchmark results\n\n" + text
                                        + ("\n![ratios](ratios.png)\n" if timed else ""))
    write_csv(rows, out_dir / "results.csv")
    write_json(rows, memory, import_s, info, out_dir / "results.json", contention)
    if contention is not None:
        write_csv(contention, out_dir / "contention.csv", CONTENTION_FIELDS)
    if timed:
        write_chart(rows, info, out_dir / "ratios.png")
    return text


def update_readme(text, readme=ROOT / "README.md", chart="benchmarks/results/ratios.png"):
    """Replace what lies between the README's benchmark markers."""
    content = readme.read_text()
    start, end = content.index(README_START) + len(README_START), content.index(README_END)
    readme.write_text(content[:start] + "\n" + text + f"\n![minicnn / torch time ratios]({chart})\n"
                      + content[end:])


# -- command line --------------------------------------------------------
def check_cuda():
    """Stop with the reason when either framework cannot use the GPU."""
    import torch
    import minicnn as mc
    if not mc.cuda.is_available():
        raise SystemExit(f"--device cuda: minicnn cannot use a GPU here: {mc.cuda.cuda_unavailable_reason()}")
    if not torch.cuda.is_available():
        raise SystemExit("--device cuda: this torch build sees no GPU; the comparison needs torch on cuda too")


#: ``--only NAME`` for the benchmarks that run on their own, each with its
#: own report under benchmarks/results: NAME -> (module, the options of
#: this command it passes on).
SECTIONS = {
    "distributed": ("distributed", ()),             # data-parallel training on 2 MPI ranks
    "detection-ops": ("detection_ops", ("threads",)),   # NMS and RoIAlign against torchvision
    "detection": ("detection", ("threads",)),       # whole detectors, one image
    "segmentation": ("segmentation", ("threads",)),  # FCN and LR-ASPP at 520 x 520
    "video": ("video", ("threads",)),               # r2plus1d_18 and 3-D pooling
    "memory-depth": ("memory_depth", ()),           # training memory against depth: ResNet, checkpointed, RevNet
    "conv-sweep": ("conv_sweep", ("threads", "quick")),  # conv2d over real networks' geometries
    "quantized": ("quantized", ("threads",)),       # int8 layers and models against torch's int8
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a reduced set, under a minute")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="run both frameworks on the CPU or on the GPU (CuPy against torch/cuDNN)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for both frameworks")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before timing")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per case (default 9, quick 5)")
    parser.add_argument("--only", default=None,
                        help="run only the cases whose group or name contains this, or one of the benchmarks that "
                             f"run on their own: {', '.join(SECTIONS)}")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    parser.add_argument("--contention", action="store_true",
                        help="run only the slowdown beside busy processes (contention.py; CPU)")
    parser.add_argument("--out", default=None, help="output folder (default benchmarks/results[/quick|/contention])")
    parser.add_argument("--update-readme", action="store_true", help="copy the table into README.md")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.only in SECTIONS:
        module, options = SECTIONS[args.only]
        argv = (["--threads", str(args.threads)] if "threads" in options else []) + \
            (["--quick"] if "quick" in options and args.quick else [])
        return importlib.import_module(f"benchmarks.{module}").main(argv)
    if args.contention and args.device != "cpu":
        raise SystemExit("--contention measures the CPU only")
    limit_threads(args.threads)  # before cases imports torch
    synchronize = _no_synchronize
    if args.device == "cuda":
        check_cuda()
        synchronize = _cuda_synchronize
    from benchmarks import cases as case_module
    from benchmarks import contention as contention_module
    cases = case_module.quick_cases(args.device) if args.quick else case_module.all_cases(args.device)
    if args.only:
        cases = [c for c in cases if args.only in c.group or args.only in c.name]
    if args.contention:
        cases = []
    repeats = args.repeats or (5 if args.quick else 9)
    info = machine_info(args.threads, args.device)
    print(f"minicnn vs torch: {len(cases)} cases, {args.threads} threads, {info['gpu'] or info['cpu']}")
    before = load.measure_before()
    whole_run = load.LoadMeter()
    rows = run_cases(cases, args.warmup, repeats, synchronize=synchronize)
    cpu_extras = not (args.quick or args.only or args.contention or args.device != "cpu")
    contention = None
    if cpu_extras or args.contention:
        print("slowdown beside busy processes:")
        contention = contention_module.measure(args.warmup, args.repeats or contention_module.REPEATS)
    memory = measure_memory(args.threads) if cpu_extras and not args.no_memory else None
    import_s = measure_import() if cpu_extras else None
    info["load"] = load.assess(before, whole_run(), info["load_average"], load.load_average(), len(load.cores()))
    if not info["load"]["reliable"]:
        print("UNRELIABLE: other processes competed for the cores: " + "; ".join(info["load"]["reasons"]))
    out = Path(args.out) if args.out else RESULTS / ("cuda" if args.device == "cuda" else "") / (
        "quick" if args.quick else "contention" if args.contention else "")
    text = write_results(rows, memory, import_s, info, out, args.quick, contention)
    if args.update_readme:
        update_readme(text)
    print(text)
    print(f"written to {out}")
    return rows


if __name__ == "__main__":
    main()
