"""Peak memory of one ResNet-18 training step, minicnn against torch.

Method
------
Each framework is measured in a fresh subprocess
(``python -m benchmarks.memory minicnn|torch THREADS``), the same way:

1. build ResNet-18 (10 classes), an SGD optimizer with momentum and a
   fixed batch of 16 images, 3x64x64;
2. run one warm-up step, so that lazy work is done before measuring:
   Numba kernels loaded, momentum buffers made, thread pools started;
3. ``zero_grad`` (gradients freed), ``gc.collect()`` and glibc's
   ``malloc_trim(0)``, which returns freed heap pages to the system; read
   the resident set size (``VmRSS`` in /proc/self/status): the *baseline*
   (weights, momentum buffers, the batch, the libraries);
4. reset the kernel's peak-RSS counter (write ``5`` to
   /proc/self/clear_refs), run one step, read the peak (``VmHWM``).

The step's peak is ``VmHWM - baseline``: the activations saved for
backward, the gradients and every temporary alive at the worst moment.

Caveats: RSS counts pages, not bytes asked for, so allocator behaviour
(glibc arenas, pages kept after a free, torch's or OpenBLAS's own
buffers) is part of what is measured, for both frameworks alike; a page
freed and reused inside the step is counted once, so the number is a
lower bound of what was allocated in total. Without /proc (not Linux) the
peak cannot be reset and the measurement is skipped.
"""
import ctypes
import gc
import json
import os
import sys

BATCH, CLASSES, SIZE = 16, 10, 64


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _trim():
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: freed pages may stay resident, which only raises the baseline


def _minicnn_step():
    import numpy
    import minicnn as mc
    import minicnn.nn.functional as F
    model = mc.models.resnet18(num_classes=CLASSES).train()
    opt = mc.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = numpy.random.default_rng(0)
    x = mc.tensor(rng.standard_normal((BATCH, 3, SIZE, SIZE)).astype(numpy.float32))
    t = mc.tensor(rng.integers(0, CLASSES, BATCH))

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), t).backward()
        opt.step()
    return step, opt


def _torch_step():
    import numpy
    import torch
    import torchvision
    model = torchvision.models.resnet18(num_classes=CLASSES).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = numpy.random.default_rng(0)
    x = torch.tensor(rng.standard_normal((BATCH, 3, SIZE, SIZE)).astype(numpy.float32))
    t = torch.tensor(rng.integers(0, CLASSES, BATCH))

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), t).backward()
        opt.step()
    return step, opt


def measure(framework, threads):
    """{"baseline_mib", "peak_mib", "step_mib"} of one training step."""
    if framework == "torch":
        import torch
        torch.set_num_threads(threads)
        step, opt = _torch_step()
    else:
        import minicnn as mc
        mc.set_num_threads(threads)
        step, opt = _minicnn_step()
    step()
    opt.zero_grad()
    _trim()
    baseline = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    step()
    peak = _status_kib("VmHWM")
    return {"baseline_mib": baseline / 1024, "peak_mib": peak / 1024, "step_mib": (peak - baseline) / 1024}


def main(argv=None):
    args = argv or sys.argv[1:]
    if len(args) != 2 or args[0] not in ("minicnn", "torch") or not args[1].isdigit() or int(args[1]) < 1:
        sys.exit(f"usage: python -m benchmarks.memory minicnn|torch THREADS (a positive int); got {' '.join(args)!r}")
    print(json.dumps(measure(args[0], int(args[1]))))


if __name__ == "__main__":
    if not os.path.exists("/proc/self/clear_refs"):
        sys.exit("benchmarks.memory: needs Linux's /proc/self/clear_refs")
    main()
