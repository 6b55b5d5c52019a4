"""No temporary files left behind by a save that is interrupted.

``mc.save`` and ``mc.save_weights`` write ``.NAME.<hex>.tmp`` beside the
target and rename it over the target. A SIGTERM during the write must
remove it; a SIGKILL cannot be caught, so the next save to the same path
removes the temporary files of killed saves (and only those). Each case
runs a save in a subprocess whose write stalls midway (a hook in place of
``serialization._write_all``), then signals it.
"""
import os
import signal
import subprocess
import sys
import textwrap
import threading

import numpy
import pytest

import minicnn as mc
from minicnn import serialization

pytestmark = pytest.mark.skipif(os.name != "posix", reason="signals and flock are POSIX")

_SAVER = textwrap.dedent("""
    import signal, sys, time
    import minicnn as mc
    from minicnn import serialization

    path, how, handler = sys.argv[1], sys.argv[2], sys.argv[3]

    def stalling_write(file, payload):
        file.write(payload[:len(payload) // 2])
        file.flush()
        print("writing", flush=True)
        if sys.stdin.readline() != "go on\\n":  # stalls until the test says so (or kills us)
            raise SystemExit(5)
        file.write(payload[len(payload) // 2:])

    serialization._write_all = stalling_write
    if handler == "raises":
        def on_sigterm(signum, frame):
            raise SystemExit(3)
        signal.signal(signal.SIGTERM, on_sigterm)
    state = {"w": mc.arange(250000, dtype=mc.float32)}
    mc.save(state, path) if how == "save" else mc.save_weights(state, path)
    if handler == "raises":
        assert signal.getsignal(signal.SIGTERM) is on_sigterm, "the previous handler was not restored"
    print("saved", flush=True)
""")


def start_saver(path, how="save", handler="default"):
    """A subprocess saving to ``path``, stalled halfway through its write."""
    process = subprocess.Popen([sys.executable, "-c", _SAVER, str(path), how, handler], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert line == "writing\n", process.stderr.read()
    return process


def temp_files(directory):
    return sorted(n for n in os.listdir(directory) if n.endswith(".tmp"))


def old_checkpoint(path):
    mc.save({"w": mc.tensor([1.0, 2.0, 3.0])}, path)


def assert_old_checkpoint(path):
    numpy.testing.assert_array_equal(mc.load(path)["w"].data, [1.0, 2.0, 3.0])


@pytest.mark.parametrize("how", ["save", "save_weights"])
def test_sigterm_during_a_save_removes_its_temporary_file(tmp_path, how):
    path = tmp_path / "ckpt.safetensors"
    old_checkpoint(path)
    saver = start_saver(path, how)
    assert len(temp_files(tmp_path)) == 1
    saver.send_signal(signal.SIGTERM)
    saver.communicate(timeout=60)
    assert saver.returncode == -signal.SIGTERM  # it still dies of the SIGTERM, as it would have
    assert temp_files(tmp_path) == []
    assert_old_checkpoint(path)


def test_sigterm_calls_the_previous_handler_and_cleans_up_after_it(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    old_checkpoint(path)
    saver = start_saver(path, handler="raises")
    saver.send_signal(signal.SIGTERM)
    saver.communicate(timeout=60)
    assert saver.returncode == 3  # the program's own handler ran (SystemExit(3))
    assert temp_files(tmp_path) == []
    assert_old_checkpoint(path)


def test_the_previous_handler_is_restored_after_a_save(tmp_path):
    saver = start_saver(tmp_path / "ckpt.safetensors", handler="raises")
    out, err = saver.communicate("go on\n", timeout=60)
    assert saver.returncode == 0 and out == "saved\n", err
    assert temp_files(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # (pytest's own: untouched by saves here)


def test_a_save_from_another_thread_leaves_signal_handlers_alone(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def save():
        mc.save({"w": mc.ones(3)}, tmp_path / "t.safetensors")
        seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=save)
    thread.start()
    thread.join(60)
    assert seen == [before] and signal.getsignal(signal.SIGTERM) is before
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize("how", ["save", "save_weights"])
def test_the_next_save_removes_the_temporary_files_of_killed_saves(tmp_path, how):
    path = tmp_path / "ckpt.safetensors"
    old_checkpoint(path)
    for _ in range(3):
        saver = start_saver(path, how)  # (which first removes the file the last one left)
        saver.kill()  # SIGKILL: nothing can clean up
        saver.communicate(timeout=60)
        assert len(temp_files(tmp_path)) == 1
    assert_old_checkpoint(path)
    # Files of other paths, and names that are not minicnn's, stay.
    others = [".other.safetensors.0123456789ab.tmp", ".ckpt.safetensors.0123456789ab.tmp.bak",
              ".ckpt.safetensors.xyz.tmp", ".ckpt.safetensors.0123456789AB.tmp", "ckpt.safetensors.0123456789ab.tmp"]
    for name in others:
        (tmp_path / name).write_bytes(b"not ours")
    state = {"w": mc.tensor([4.0, 5.0])}
    mc.save(state, path) if how == "save" else mc.save_weights(state, path)
    assert sorted(os.listdir(tmp_path)) == sorted(others + ["ckpt.safetensors"])
    numpy.testing.assert_array_equal(mc.load(path)["w"].data, [4.0, 5.0])


def test_a_save_in_progress_elsewhere_keeps_its_temporary_file(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    saver = start_saver(path)
    (theirs,) = temp_files(tmp_path)
    mc.save({"w": mc.tensor([4.0])}, path)  # a concurrent save to the same path: it must not take theirs
    assert temp_files(tmp_path) == [theirs]
    out, err = saver.communicate("go on\n", timeout=60)
    assert saver.returncode == 0 and out == "saved\n", err
    assert temp_files(tmp_path) == []
    assert mc.load(path)["w"].shape == (250000,)  # the last save to finish wins


def test_an_exception_during_the_write_removes_the_temporary_file(tmp_path, monkeypatch):
    def write_then_interrupt(file, payload):
        file.write(payload[:10])
        raise KeyboardInterrupt

    monkeypatch.setattr(serialization, "_write_all", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        mc.save({"w": mc.ones(3)}, tmp_path / "t.safetensors")
    assert os.listdir(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


@pytest.mark.slow
def test_sigterm_during_a_large_real_save_leaves_nothing(tmp_path):
    # No hook: a 200 MB save, signalled as soon as its temporary file exists.
    path = tmp_path / "big.safetensors"
    old_checkpoint(path)
    code = (f"import minicnn as mc; mc.save({{'w': mc.ones(50 * 2 ** 20)}}, {str(path)!r}); print('saved')")
    saver = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not temp_files(tmp_path) and saver.poll() is None:
            threading.Event().wait(0.001)
        saver.send_signal(signal.SIGTERM)
        out, err = saver.communicate(timeout=120)
    finally:
        saver.kill()
    assert temp_files(tmp_path) == []
    assert saver.returncode in (0, -signal.SIGTERM), err
    # The old checkpoint, or the new one if the signal came after the rename.
    if mc.load(path)["w"].shape != (50 * 2 ** 20,):
        assert_old_checkpoint(path)
