"""kernels/cpu/placement.py: the pool's workers each on a core of their
own, the caller stepping off theirs, and all of them let loose on a busy
machine."""
import json
import os
import subprocess
import sys

import pytest

from minicnn.kernels.cpu import placement


@pytest.fixture
def four_cores(monkeypatch):
    """A process allowed on cores 0-3, its caller on core 2."""
    monkeypatch.delenv("MINICNN_PIN_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(placement, "current_core", lambda: 2)


def test_the_workers_take_the_cores_the_caller_is_not_on(four_cores):
    where = placement.Placement(3)
    assert where.cores == [2, 0, 1, 3]
    assert where.bound and where.version == 1


@pytest.mark.parametrize("workers", [1, 2, 4, 7])
def test_nothing_is_pinned_unless_the_threads_are_as_many_as_the_cores(four_cores, workers):
    where = placement.Placement(workers)
    assert where.cores is None and not where.bound
    assert where.settle(1, 0) == 0          # nothing to apply: no system call


def test_the_environment_turns_pinning_off(four_cores, monkeypatch):
    monkeypatch.setenv("MINICNN_PIN_THREADS", "0")
    assert placement.Placement(3).cores is None


def test_nothing_is_pinned_where_the_core_is_unknown(four_cores, monkeypatch):
    monkeypatch.setattr(placement, "current_core", lambda: None)
    assert placement.Placement(3).cores is None


def test_loosen_and_bind_count_their_changes(four_cores):
    where = placement.Placement(3)
    where.loosen()
    where.loosen()
    assert not where.bound and where.version == 2
    where.bind()
    where.bind()
    assert where.bound and where.version == 3


# A process of 2 threads on 2 of the machine's cores: where its threads run.
CHILD = """
import json, os, threading
allowed = set(sorted(os.sched_getaffinity(0))[:2])
os.sched_setaffinity(0, allowed)
from minicnn.kernels.cpu import placement, threads
threads.set_num_threads(2)
threads.run_in_parallel(lambda group: group, [0, 1])
pool = threads._pool
# Another process busy on these cores (the tests run 2 at a time) would let the
# workers loose (a spin losing its core twice) and nothing would be pinned: until
# the busy check below, the machine never looks busy, and the pool binds again.
pool._lost_core = lambda switches: False
pool.busy_at = float("-inf")
threads.run_in_parallel(lambda group: group, [0, 1])
worker = next(t for t in threading.enumerate() if t.name == "minicnn-1")

def mask(tid=0):
    return sorted(os.sched_getaffinity(tid))

out = {"allowed": sorted(allowed), "cores": pool.placement.cores, "worker": mask(worker.native_id)}
if pool.placement.cores:
    # The caller put on the worker's core, then given its cores back: it stays there ...
    # ... until a call moves it off first. Unbound, the kernel may move it back before
    # its group reads its core (another process busy on the free one): up to 5 tries.
    for _ in range(5):
        os.sched_setaffinity(0, {pool.placement.cores[1]})
        os.sched_setaffinity(0, allowed)
        out["caller_before"] = placement.current_core()
        out["caller_in_call"] = threads.run_in_parallel(lambda group: placement.current_core(), [0, 1])[0]
        if out["caller_in_call"] != pool.placement.cores[1]:
            break
    out["caller_after"] = mask()

    # Put on the worker's core during the call (as a worker's wake-up of it
    # often does): it is moved off when the call ends, not only at the next.
    def land_on_the_workers_core(group):
        if group == 0:
            os.sched_setaffinity(0, {pool.placement.cores[1]})
            os.sched_setaffinity(0, allowed)
        return placement.current_core()
    out["caller_landed"], _ = threads.run_in_parallel(land_on_the_workers_core, [0, 1])
    out["caller_after_call"] = placement.current_core()
    out["caller_after_call_mask"] = mask()
    del pool._lost_core
    # Two switches to other threads in a row: a busy machine; the worker is let loose.
    switches = iter(range(100))
    threads._switches = lambda: next(switches)
    pool.last_lost_core = float("-inf")
    out["busy"] = [pool._lost_core(0) for _ in range(3)]
    threads.run_in_parallel(lambda group: group, [0, 1])
    out["worker_loose"] = mask(worker.native_id)
    pool.busy_at = float("-inf")            # long ago: pinned again from the next call
    threads.run_in_parallel(lambda group: group, [0, 1])
    out["worker_bound_again"] = mask(worker.native_id)
print(json.dumps(out))
"""


def _child(**environment):
    env = dict(os.environ, **environment)
    env.pop("OMP_NUM_THREADS", None)
    result = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


needs_two_cores = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2 or placement.current_core() is None,
    reason="pinning needs Linux's sched_getaffinity / sched_getcpu and 2 cores")


@needs_two_cores
def test_the_worker_is_pinned_and_the_caller_steps_off_its_core():
    out = _child()
    allowed = out["allowed"]
    assert sorted(out["cores"]) == allowed
    worker_core = out["cores"][1]
    assert out["worker"] == [worker_core]
    assert out["caller_before"] == worker_core
    assert out["caller_in_call"] != worker_core
    assert out["caller_after"] == allowed          # moved, not bound
    assert out["caller_landed"] == worker_core
    assert out["caller_after_call"] != worker_core
    assert out["caller_after_call_mask"] == allowed
    assert out["busy"] == [False, False, True]
    assert out["worker_loose"] == allowed
    assert out["worker_bound_again"] == [worker_core]


@needs_two_cores
def test_with_pinning_off_the_worker_runs_anywhere():
    out = _child(MINICNN_PIN_THREADS="0")
    assert out["cores"] is None
    assert out["worker"] == out["allowed"]
