"""Ctrl-C in the middle of parallel kernels: a child process runs conv2d
forward and backward on two threads while this test sends it SIGINT at
random moments; after every interrupt the next calls must give the same
numbers as before, and nothing may hang."""
import os
import queue
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

CHILD = textwrap.dedent("""
    import faulthandler, signal, sys
    faulthandler.register(signal.SIGUSR1, all_threads=True)   # the test asks for the stacks of a hung child
    import numpy
    import minicnn as mc
    import minicnn.nn.functional as F

    mc.set_num_threads(2)
    rng = numpy.random.default_rng(0)
    x = mc.tensor(rng.standard_normal((8, 32, 24, 24)).astype(numpy.float32), requires_grad=True)
    w1 = mc.tensor(rng.standard_normal((32, 32, 3, 3)).astype(numpy.float32) * 0.1, requires_grad=True)
    w2 = mc.tensor(rng.standard_normal((32, 32, 5, 5)).astype(numpy.float32) * 0.1, requires_grad=True)
    w3 = mc.tensor(rng.standard_normal((32, 1, 3, 3)).astype(numpy.float32), requires_grad=True)
    gy = mc.tensor(rng.standard_normal((8, 32, 12, 12)).astype(numpy.float32))

    def step():
        for t in (x, w1, w2, w3):
            t.grad = None
        h = F.relu(F.conv2d(x, w1, padding=1))            # Winograd or im2col, threads
        h = F.conv2d(h, w2, padding=2)                    # tiled im2col + GEMM
        h = F.max_pool2d(F.conv2d(h, w3, padding=1, groups=32), 2)   # depthwise, pooling
        (h * gy).sum().backward()
        return [h.data.copy()] + [t.grad.data.copy() for t in (x, w1, w2, w3)]

    def same(a, b):
        return all(numpy.array_equal(u, v) for u, v in zip(a, b))

    reference = step()
    interrupts = checks = 0
    while True:
        try:
            print("go", flush=True)                        # the test sends SIGINT after reading this
            while True:
                assert same(step(), reference), "a call after an interrupt gave other numbers"
                checks += 1
        except KeyboardInterrupt:
            interrupts += 1
        for _ in range(2):                                 # the next calls are right
            assert same(step(), reference), "a call after an interrupt gave other numbers"
        if sys.stdin.readline().strip() == "stop":
            break
    print("done", interrupts, checks, flush=True)
""")


@pytest.mark.slow
def test_sigint_during_parallel_conv_leaves_correct_results_and_no_hang(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, OMP_NUM_THREADS="2", MINICNN_BACKEND="auto")
    child = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in child.stdout] + [lines.put("")],
                     daemon=True).start()
    rounds = 25
    chooser = random.Random(1)
    try:
        for i in range(rounds):
            try:
                line = lines.get(timeout=600 if i == 0 else 120)   # the first may compile every kernel
            except queue.Empty:
                child.send_signal(signal.SIGUSR1)
                time.sleep(2)
                child.kill()
                pytest.fail(f"the child hung after {i} interrupts; its threads:\n{child.stderr.read()}")
            if line.strip() != "go":
                child.wait(timeout=60)
                pytest.fail(f"the child stopped after {i} interrupts: {line}{child.stderr.read()}")
            time.sleep(chooser.uniform(0.0, 0.08))         # forward, backward, or between calls
            child.send_signal(signal.SIGINT)
            child.stdin.write("stop\n" if i == rounds - 1 else "next\n")
            child.stdin.flush()
        child.wait(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    err = child.stderr.read()
    assert child.returncode == 0, err
    words = lines.get(timeout=5).split()
    assert words[0] == "done" and int(words[1]) == rounds, (words, err)
    assert int(words[2]) > 0, words                       # calls also ran to completion in between
