"""DataLoader with worker processes: the same batches as one process, one
random stream per worker, get_worker_info, errors raised in the main
process, and no process left behind however the loop ends.

Kept small (2 workers, a few samples) and free of timing assertions: the
timeouts below only bound a test that would otherwise hang."""
import collections
import multiprocessing
import os
import pickle
import random
import select
import signal
import subprocess
import sys
import textwrap

import numpy
import pytest

import minicnn as mc
from minicnn.utils import data
from minicnn.utils.data import DataLoader, TensorDataset, get_worker_info

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the worker tests use fork")

Pair = collections.namedtuple("Pair", "image label")


def children():
    """Process ids of this process's live children (/proc where there is one)."""
    if not os.path.isdir("/proc"):
        return {p.pid for p in multiprocessing.active_children()}
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:          # it ended while we looked
            continue
        if int(fields[1]) == os.getpid() and not _is_resource_tracker(entry):
            found.add(int(entry))
    return found


def _is_resource_tracker(pid):
    # 'spawn' starts multiprocessing's resource tracker once per process,
    # to live as long as it; it is not a DataLoader worker.
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"resource_tracker" in f.read()
    except OSError:
        return False


@pytest.fixture
def no_orphans():
    """Fails the test if it leaves a child process alive."""
    before = children()
    yield
    left = children() - before
    assert not left, f"child processes left alive: {sorted(left)}"


class Numbered(data.Dataset):
    """Sample i: a (2, 3) float32 image filled with i, the label i, a dict field."""

    def __len__(self):
        return 11

    def __getitem__(self, i):
        return Pair(numpy.full((2, 3), i, dtype=numpy.float32), i), {"square": mc.tensor([float(i * i)])}


class RandomDraws(data.Dataset):
    """Sample i: who drew it (worker id, seed, pid) and one draw from each
    random source a worker has."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        info = get_worker_info()
        return (info.id, info.seed, os.getpid(), random.random(), numpy.random.random(),
                float(mc.random.default_generator().random()))


class Failing(data.Dataset):
    def __len__(self):
        return 6

    def __getitem__(self, i):
        if i == 4:
            raise KeyError(f"sample {i} is missing")
        return numpy.float64(i)


class Dying(data.Dataset):
    def __len__(self):
        return 6

    def __getitem__(self, i):
        if i == 3:
            os._exit(3)
        return numpy.float64(i)


def as_plain(batch):
    """A batch with Tensors turned into (type name, dtype, values), to compare."""
    if isinstance(batch, (mc.Tensor, numpy.ndarray)):
        return (type(batch).__name__, str(batch.dtype), batch.tolist() if isinstance(batch, numpy.ndarray)
                else batch.numpy().tolist())
    if isinstance(batch, dict):
        return {k: as_plain(v) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return (type(batch).__name__, [as_plain(v) for v in batch])
    return batch


def passes(loader, n=2):
    return [[as_plain(b) for b in loader] for _ in range(n)]


@pytest.mark.parametrize("options", [
    dict(batch_size=3),
    dict(batch_size=4, drop_last=True),
    dict(batch_size=None),
    dict(batch_size=3, prefetch_factor=1),
    dict(batch_size=2, persistent_workers=True),
])
def test_same_batches_as_one_process(options, no_orphans):
    expected = passes(DataLoader(Numbered(), **{k: v for k, v in options.items()
                                                if k not in ("prefetch_factor", "persistent_workers")}))
    loader = DataLoader(Numbered(), num_workers=2, **options)
    assert passes(loader) == expected
    del loader


def test_same_shuffled_batches_as_one_process_for_the_same_generator_seed(no_orphans):
    expected = passes(DataLoader(Numbered(), batch_size=3, shuffle=True, generator=mc.random.generator(7)), 3)
    got = passes(DataLoader(Numbered(), batch_size=3, shuffle=True, generator=mc.random.generator(7),
                            num_workers=2), 3)
    assert got == expected
    assert expected[0] != expected[1]               # a new order every pass


def draws(loader):
    """(worker id, seed, pid, Python draw, NumPy draw, minicnn draw) per sample."""
    return [row for batch in loader for row in zip(*(field.numpy().tolist() for field in batch))]


def without_pid(rows):
    return [row[:2] + row[3:] for row in rows]


def test_each_worker_has_its_own_reproducible_random_streams(no_orphans):
    first = draws(DataLoader(RandomDraws(), batch_size=2, num_workers=2, generator=mc.random.generator(3)))
    again = draws(DataLoader(RandomDraws(), batch_size=2, num_workers=2, generator=mc.random.generator(3)))
    assert without_pid(first) == without_pid(again)
    by_worker = {w: [row for row in first if row[0] == w] for w in (0, 1)}
    assert [row[0] for row in first] == [0, 0, 1, 1, 0, 0, 1, 1]      # batch k goes to worker k % 2
    (seed0,), (seed1,) = {row[1] for row in by_worker[0]}, {row[1] for row in by_worker[1]}
    assert seed1 == seed0 + 1                        # base_seed + worker_id, as torch
    for source in (3, 4, 5):                         # Python's random, NumPy's, minicnn's
        assert by_worker[0][0][source] != by_worker[1][0][source]
        # The stream is the one seed gives: worker 1's first minicnn draw is mc.manual_seed(seed1)'s.
    assert by_worker[1][0][5] == float(mc.random.generator(seed1).random())
    assert by_worker[1][0][3] == random.Random(seed1).random()
    other = draws(DataLoader(RandomDraws(), batch_size=2, num_workers=2, generator=mc.random.generator(4)))
    assert other[0][1] != seed0


def test_global_seed_reproduces_worker_streams_and_each_pass_gets_new_seeds(no_orphans):
    mc.manual_seed(11)
    loader = DataLoader(RandomDraws(), batch_size=4, num_workers=2)
    one, two = draws(loader), draws(loader)
    mc.manual_seed(11)
    assert without_pid(draws(DataLoader(RandomDraws(), batch_size=4, num_workers=2))) == without_pid(one)
    assert one[0][1] != two[0][1]


def test_persistent_workers_keep_their_processes_and_streams(no_orphans):
    loader = DataLoader(RandomDraws(), batch_size=2, num_workers=2, persistent_workers=True,
                        generator=mc.random.generator(0))
    one, two = draws(loader), draws(loader)
    assert {row[2] for row in one} == {row[2] for row in two}     # the same two processes
    assert {row[1] for row in one} == {row[1] for row in two}     # seeded once
    assert [row[3] for row in one] != [row[3] for row in two]     # their streams go on
    assert len(children() & {row[2] for row in one}) == 2
    del loader                                                    # garbage-collected: workers stop


def test_get_worker_info_and_worker_init_fn(no_orphans):
    assert get_worker_info() is None

    class Report(data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            info = get_worker_info()
            return (info.id, info.num_workers, type(info.dataset).__name__, os.environ.get("MC_TEST_INIT", ""))

    def init(worker_id):
        os.environ["MC_TEST_INIT"] = f"init {worker_id}"

    rows = [row for batch in DataLoader(Report(), batch_size=1, num_workers=2, worker_init_fn=init,
                                        collate_fn=lambda b: b) for row in batch]
    assert rows == [(0, 2, "Report", "init 0"), (1, 2, "Report", "init 1"),
                    (0, 2, "Report", "init 0"), (1, 2, "Report", "init 1")]
    assert "MC_TEST_INIT" not in os.environ


def test_worker_error_is_raised_in_the_main_process(no_orphans):
    with pytest.raises(KeyError) as caught:
        for _ in DataLoader(Failing(), batch_size=2, num_workers=2):
            pass
    message = str(caught.value)
    assert "Caught KeyError in DataLoader worker process 0" in message
    assert "Original Traceback" in message
    assert 'raise KeyError(f"sample {i} is missing")' in message      # the worker's own line
    assert "sample 4 is missing" in message
    del caught


def test_worker_init_fn_error_is_raised_in_the_main_process(no_orphans):
    def init(worker_id):
        raise ValueError(f"cannot set up worker {worker_id}")

    with pytest.raises(ValueError, match="cannot set up worker 0"):
        list(DataLoader(Numbered(), batch_size=2, num_workers=2, worker_init_fn=init))


def test_a_worker_that_dies_is_reported(no_orphans):
    with pytest.raises(RuntimeError, match=r"worker 1 \(pid \d+\) exited unexpectedly with exit code 3"):
        list(DataLoader(Dying(), batch_size=3, num_workers=2))


def test_timeout(monkeypatch, no_orphans):
    class Stuck(data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            import time
            time.sleep(60)

    monkeypatch.setattr(data, "_JOIN_TIMEOUT", 0.5)       # the stuck worker is terminated, not waited for
    with pytest.raises(RuntimeError, match="timed out after 0.5 seconds"):
        list(DataLoader(Stuck(), num_workers=1, timeout=0.5))


def test_break_and_exception_in_the_loop_stop_the_workers(no_orphans):
    before = children()
    for _ in DataLoader(Numbered(), batch_size=1, num_workers=2):
        assert len(children() - before) == 2
        break
    assert children() == before
    with pytest.raises(ZeroDivisionError):
        for _ in DataLoader(Numbered(), batch_size=1, num_workers=2):
            1 / 0
    assert children() == before


def test_spawn_works_and_refuses_what_cannot_be_pickled(no_orphans):
    images = numpy.arange(24, dtype=numpy.float64).reshape(6, 2, 2)
    labels = numpy.arange(6)
    dataset = TensorDataset(images, labels)
    expected = passes(DataLoader(dataset, batch_size=4), 1)
    assert passes(DataLoader(dataset, batch_size=4, num_workers=2, multiprocessing_context="spawn"), 1) == expected
    with pytest.raises(TypeError, match=r"'spawn' method.*picklable"):
        list(DataLoader(dataset, batch_size=4, num_workers=2, multiprocessing_context="spawn",
                        collate_fn=lambda b: b))


INTERRUPTED = textwrap.dedent("""
    import os, sys, time, numpy
    from minicnn.utils.data import DataLoader

    class Slow:
        def __len__(self):
            return 10000

        def __getitem__(self, i):
            time.sleep(0.01)
            return numpy.float64(i)

    def children():
        found = []
        for entry in os.listdir("/proc"):
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == os.getpid():
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
        return found

    if __name__ == "__main__":
        try:
            for k, batch in enumerate(DataLoader(Slow(), batch_size=2, num_workers=2)):
                if k == 0:
                    print("running", children(), flush=True)
            print("finished", flush=True)
        except KeyboardInterrupt:
            print("interrupted", children(), flush=True)
""")


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_ctrl_c_stops_the_workers(tmp_path):
    script = tmp_path / "interrupted.py"
    script.write_text(INTERRUPTED)
    # A new session, so that the signal goes to the script's process group
    # (main process and workers), as Ctrl-C in a terminal does.
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
    try:
        ready, _, _ = select.select([child.stdout], [], [], 120)
        assert ready, "the script did not start loading within 120 s"
        first = child.stdout.readline()
        assert first.startswith("running"), first + child.stderr.read()
        assert len(eval(first.split(" ", 1)[1])) == 2                  # two workers were running
        os.killpg(child.pid, signal.SIGINT)
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert out.strip() == "interrupted []", out + err
    assert "KeyboardInterrupt" not in err, err                    # no worker printed one


def test_batches_cross_as_arrays_and_come_back_as_tensors(no_orphans):
    def collate(samples):           # keeps the namedtuple (default_collate makes it a tuple)
        batch = data.default_collate(samples)
        return Pair(*batch[0]), batch[1]

    (pair, extra), = list(DataLoader(Numbered(), batch_size=11, num_workers=1, collate_fn=collate))
    assert isinstance(pair, Pair) and isinstance(pair.image, mc.Tensor) and isinstance(extra["square"], mc.Tensor)
    assert pair.image.shape == (11, 2, 3) and pair.image.dtype == numpy.float32
    assert data._to_tensors(pickle.loads(pickle.dumps(data._to_arrays(mc.ones(2))))).numpy().tolist() == [1.0, 1.0]


def test_bad_arguments():
    d = Numbered()
    with pytest.raises(ValueError, match="num_workers"):
        DataLoader(d, num_workers=-1)
    with pytest.raises(ValueError, match="timeout"):
        DataLoader(d, num_workers=2, timeout=-1)
    with pytest.raises(ValueError, match="prefetch_factor=2 needs worker processes"):
        DataLoader(d, prefetch_factor=2)
    with pytest.raises(ValueError, match="persistent_workers=True needs worker processes"):
        DataLoader(d, persistent_workers=True)
    with pytest.raises(ValueError, match="multiprocessing_context='fork' needs worker processes"):
        DataLoader(d, multiprocessing_context="fork")
    with pytest.raises(ValueError, match="prefetch_factor must be a positive int"):
        DataLoader(d, num_workers=2, prefetch_factor=0)
    with pytest.raises(ValueError, match="'threads' is not a start method"):
        DataLoader(d, num_workers=2, multiprocessing_context="threads")
    with pytest.raises(TypeError, match="multiprocessing_context must be"):
        DataLoader(d, num_workers=2, multiprocessing_context=3)
    with pytest.raises(TypeError, match="worker_init_fn must be callable"):
        DataLoader(d, num_workers=2, worker_init_fn=5)
