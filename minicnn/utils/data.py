"""Datasets and the DataLoader, with torch.utils.data's names.

A ``Dataset`` is anything with ``__getitem__(i)`` and ``__len__()``; a
sample is whatever ``__getitem__`` returns, typically ``(image, label)``.
The ``DataLoader`` draws indices (in order, or shuffled by a seeded
generator), groups them into batches and merges each batch's samples with
``default_collate``: Tensors and arrays are stacked along a new first
dimension, numbers become 1-d Tensors, tuples and dicts are collated
field by field. With ``num_workers=0`` (the default) loading runs in the
calling process; with ``num_workers > 0`` worker processes load the
batches (see "Worker processes" below).

Randomness (shuffling, ``random_split``) comes from the ``generator``
argument, a ``numpy.random.Generator`` (``mc.random.generator(seed)``), or
from minicnn's global generator (``mc.manual_seed``) when none is given.

Worker processes
----------------
``DataLoader(..., num_workers=n)`` starts n processes (``multiprocessing``)
at the start of each pass (once, with ``persistent_workers=True``). The
main process draws the batches of indices, exactly as with one process,
and deals them out in turn: batch i goes to worker i % n, and at most
``prefetch_factor`` batches per worker are waiting at any time. A worker
reads its samples, collates them, and sends the batch back pickled, with
every Tensor in it as a NumPy array; the main process makes the arrays
Tensors again and hands the batches out in order, whichever worker
finishes first. So the batches are the same as with ``num_workers=0``.

Each worker is seeded as torch seeds them: one base seed is drawn per
pass, and worker k seeds Python's ``random``, minicnn's global generator
(``mc.manual_seed``) with ``base_seed + k`` and NumPy's global
``numpy.random`` with a seed derived from both, so every worker has its
own random stream and the same seed gives the same streams again. (torch
draws the base seed from the generator itself, in both modes; minicnn
draws it from a child of the generator, ``Generator.spawn``, which leaves
the shuffling stream as it is, so a shuffled order is the same whatever
``num_workers``.)
``get_worker_info()`` tells code running in a worker which worker it is.
An exception in a worker is raised again in the main process, of the same
type, with the worker's traceback in its message. Workers ignore Ctrl-C
(it reaches the whole process group): the main process gets the
KeyboardInterrupt and stops them. They stop when a pass ends, when the
loop is left early (``break``, an exception) and the iterator is dropped,
and when the main process dies.
"""
import bisect
import math
import multiprocessing
import numbers
import pickle
import queue
import random as pyrandom
import signal
import time
import traceback

import numpy

from .. import random
from ..backend import get_array_module
from ..tensor import Tensor


class Dataset:
    """Base class: subclasses define ``__getitem__`` and ``__len__``."""

    def __getitem__(self, index):  # abstract
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __len__(self):  # abstract
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    def __add__(self, other):
        return ConcatDataset([self, other])


class TensorDataset(Dataset):
    """Samples are the i-th rows of the given Tensors (or arrays), which
    must agree in their first dimension: ``TensorDataset(images, labels)[i]
    == (images[i], labels[i])``."""

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        for i, t in enumerate(tensors):
            if not isinstance(t, Tensor) and not hasattr(t, "shape"):
                raise TypeError(f"TensorDataset: argument {i} must be a Tensor or an array, got {type(t).__name__}")
            if len(t.shape) == 0:
                raise ValueError(f"TensorDataset: argument {i} is 0-d; each tensor needs a first (sample) dimension")
        sizes = [t.shape[0] for t in tensors]
        if len(set(sizes)) != 1:
            raise ValueError(f"TensorDataset: tensors must have the same first dimension, got sizes {sizes}")
        self.tensors = tensors

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __len__(self):
        return self.tensors[0].shape[0]


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = [int(i) for i in indices]

    def __getitem__(self, index):
        return self.dataset[self.indices[index]]

    def __len__(self):
        return len(self.indices)


class ConcatDataset(Dataset):
    """The samples of several datasets, one after another."""

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset needs at least one dataset")
        self.cumulative_sizes = list(numpy.cumsum([len(d) for d in self.datasets]))

    def __len__(self):
        return int(self.cumulative_sizes[-1])

    def __getitem__(self, index):
        if index < 0:
            if -index > len(self):
                raise IndexError(f"index {index} is out of range for a dataset of length {len(self)}")
            index += len(self)
        which = bisect.bisect_right(self.cumulative_sizes, index)
        if which == len(self.datasets):
            raise IndexError(f"index {index} is out of range for a dataset of length {len(self)}")
        start = self.cumulative_sizes[which - 1] if which > 0 else 0
        return self.datasets[which][int(index - start)]


def random_split(dataset, lengths, generator=None):
    """Split ``dataset`` at random into disjoint Subsets of the given
    ``lengths``: sample counts that add up to ``len(dataset)``, or
    fractions that add up to 1 (then the rounding remainder is handed out
    one sample at a time, from the first subset on, as torch does)."""
    n = len(dataset)
    lengths = list(lengths)
    if not lengths or any(isinstance(x, bool) or not isinstance(x, numbers.Real) or x < 0 for x in lengths):
        raise ValueError(f"random_split: lengths must be non-negative numbers, got {lengths}")
    if all(isinstance(x, numbers.Integral) for x in lengths):
        if sum(lengths) != n:
            raise ValueError(f"random_split: lengths {lengths} add up to {sum(lengths)}, not len(dataset)={n}")
    else:
        if not math.isclose(sum(lengths), 1.0) or any(x > 1 for x in lengths):
            raise ValueError(f"random_split: fractions {lengths} must each be in [0, 1] and add up to 1")
        counts = [int(math.floor(n * frac)) for frac in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        lengths = counts
    order = _generator(generator, "random_split").permutation(n)
    bounds = numpy.cumsum([0] + lengths)
    return [Subset(dataset, order[lo:hi].tolist()) for lo, hi in zip(bounds[:-1], bounds[1:])]


# -- samplers --------------------------------------------------------------
class SequentialSampler:
    """Indices 0, 1, ..., len(data_source) - 1."""

    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self):
        return len(self.data_source)


class RandomSampler:
    """A fresh random permutation of the indices on every pass."""

    def __init__(self, data_source, generator=None):
        self.data_source = data_source
        self.generator = generator

    def __iter__(self):
        order = _generator(self.generator, "RandomSampler").permutation(len(self.data_source))
        return iter(order.tolist())

    def __len__(self):
        return len(self.data_source)


class BatchSampler:
    """Lists of ``batch_size`` indices from ``sampler``; the last, shorter
    one is dropped when ``drop_last``."""

    def __init__(self, sampler, batch_size, drop_last):
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.drop_last = bool(drop_last)

    def __iter__(self):
        batch = []
        for index in self.sampler:
            batch.append(index)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self):
        if self.drop_last:
            return len(self.sampler) // self.batch_size
        return -(-len(self.sampler) // self.batch_size)


# -- loading -----------------------------------------------------------------
class DataLoader:
    """Iterate over ``dataset`` in batches.

    ``DataLoader(dataset, batch_size=1, shuffle=False, sampler=None,
    batch_sampler=None, num_workers=0, collate_fn=None, pin_memory=False,
    drop_last=False, timeout=0, worker_init_fn=None,
    multiprocessing_context=None, generator=None, *, prefetch_factor=None,
    persistent_workers=False)``: torch's arguments, in torch's order.
    ``shuffle=True`` draws a new order on every pass from ``generator``;
    ``drop_last`` drops a last, incomplete batch. ``pin_memory`` has no
    effect (there is no page-locked memory to pin into).

    ``num_workers > 0`` loads in that many worker processes (see the module
    docstring): ``worker_init_fn(worker_id)`` runs in each worker after it
    is seeded; ``prefetch_factor`` (default 2) batches per worker are
    requested ahead; ``timeout`` > 0 raises RuntimeError when a batch takes
    longer than that many seconds; ``persistent_workers`` keeps the workers
    (and their random streams) from one pass to the next;
    ``multiprocessing_context`` is a start method name ('fork', 'spawn',
    'forkserver') or a context, by default 'fork' where the platform has it.
    With 'spawn' or 'forkserver' the dataset, ``collate_fn`` and
    ``worker_init_fn`` must be picklable (defined at the top level of a
    module), and a script must start its loop under
    ``if __name__ == "__main__":``. Workers send NumPy arrays, so batches
    made in a worker are CPU Tensors that do not require grad.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, sampler=None, batch_sampler=None, num_workers=0,
                 collate_fn=None, pin_memory=False, drop_last=False, timeout=0, worker_init_fn=None,
                 multiprocessing_context=None, generator=None, *, prefetch_factor=None, persistent_workers=False):
        if isinstance(num_workers, bool) or not isinstance(num_workers, numbers.Integral) or num_workers < 0:
            raise ValueError(
                f"DataLoader: num_workers must be a non-negative int (0 loads in this process), got {num_workers!r}")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler and shuffle=True are mutually exclusive")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError(
                    "DataLoader: batch_sampler is mutually exclusive with batch_size, shuffle, sampler and drop_last")
            batch_size = None
        elif batch_size is not None:
            if sampler is None:
                sampler = RandomSampler(dataset, generator) if shuffle else SequentialSampler(dataset)
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        elif drop_last:
            raise ValueError("DataLoader: drop_last=True needs a batch_size")
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(f"DataLoader: collate_fn must be callable, got {type(collate_fn).__name__}")
        self._check_worker_options(num_workers, timeout, worker_init_fn, multiprocessing_context,
                                   prefetch_factor, persistent_workers)
        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler if sampler is not None else SequentialSampler(dataset)
        self.batch_sampler = batch_sampler
        self.generator = generator
        self.pin_memory = pin_memory
        self.num_workers = int(num_workers)
        # batch_size=None means "no batching": samples come out one by one, unmerged.
        self.collate_fn = collate_fn or (default_collate if batch_sampler is not None else _identity)
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.prefetch_factor = 2 if prefetch_factor is None and num_workers > 0 else prefetch_factor
        self.persistent_workers = persistent_workers
        self._workers = None   # the live _WorkerPool when persistent_workers

    @staticmethod
    def _check_worker_options(num_workers, timeout, worker_init_fn, context, prefetch_factor, persistent_workers):
        if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or timeout < 0:
            raise ValueError(f"DataLoader: timeout must be a non-negative number of seconds, got {timeout!r}")
        if worker_init_fn is not None and not callable(worker_init_fn):
            raise TypeError(f"DataLoader: worker_init_fn must be callable, got {type(worker_init_fn).__name__}")
        if num_workers == 0:
            for name, value, default in (("prefetch_factor", prefetch_factor, None),
                                         ("persistent_workers", persistent_workers, False),
                                         ("multiprocessing_context", context, None)):
                if value != default:
                    raise ValueError(f"DataLoader: {name}={value!r} needs worker processes (num_workers > 0), "
                                     "but num_workers=0")
            return
        if prefetch_factor is not None and (isinstance(prefetch_factor, bool) or
                                            not isinstance(prefetch_factor, numbers.Integral) or prefetch_factor < 1):
            raise ValueError(f"DataLoader: prefetch_factor must be a positive int, got {prefetch_factor!r}")
        if isinstance(context, str):
            methods = multiprocessing.get_all_start_methods()
            if context not in methods:
                raise ValueError(
                    f"DataLoader: multiprocessing_context {context!r} is not a start method of this platform "
                    f"({', '.join(methods)})")
        elif context is not None and not isinstance(context, multiprocessing.context.BaseContext):
            raise TypeError(
                "DataLoader: multiprocessing_context must be a start method name or a multiprocessing context, "
                f"got {type(context).__name__}")

    def __iter__(self):
        if self.num_workers == 0:
            return self._load_here()
        if self.persistent_workers:
            if self._workers is None or self._workers.closed:
                self._workers = _WorkerPool(self)
            return self._workers.start_pass()
        # The pool lives as long as this iterator: dropping the iterator
        # (end of the loop, break, an exception) stops the workers.
        return _WorkerPool(self).start_pass()

    def _load_here(self):
        if self.batch_sampler is None:
            for index in self.sampler:
                yield self.collate_fn(self.dataset[index])
            return
        for indices in self.batch_sampler:
            yield self.collate_fn([self.dataset[i] for i in indices])

    def _context(self):
        """The multiprocessing context the workers start from."""
        context = self.multiprocessing_context
        if context is None:
            # fork starts fast and needs nothing picklable; elsewhere
            # (Windows, macOS by default) take the platform's method.
            context = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
        if isinstance(context, multiprocessing.context.BaseContext):
            return context
        return multiprocessing.get_context(context)

    def _base_seed(self):
        """One seed for this pass's workers, drawn from a child of the
        generator (``spawn``) so the shuffling stream is left as it is: the
        batches are the same as with ``num_workers=0``."""
        generator = _generator(self.generator, "DataLoader")
        try:
            child = generator.spawn(1)[0]
        except TypeError:        # a generator without a SeedSequence: draw from it directly
            child = generator
        return int(child.integers(2 ** 62))

    def __len__(self):
        return len(self.batch_sampler) if self.batch_sampler is not None else len(self.sampler)


# -- worker processes --------------------------------------------------------
class WorkerInfo:
    """What ``get_worker_info()`` returns in a worker: its ``id`` (0 ...
    num_workers - 1), ``num_workers``, its ``seed`` and its copy of the
    ``dataset`` (a dataset can use these to split an iterable source)."""

    def __init__(self, id, num_workers, seed, dataset):
        self.id = id
        self.num_workers = num_workers
        self.seed = seed
        self.dataset = dataset

    def __repr__(self):
        return f"WorkerInfo(id={self.id}, num_workers={self.num_workers}, seed={self.seed})"


_worker_info = None


def get_worker_info():
    """In a DataLoader worker process, its ``WorkerInfo``; ``None`` in the
    main process."""
    return _worker_info


#: Seconds between checks, while waiting, that the other side is still alive.
_STATUS_INTERVAL = 2.0
#: Seconds a stopping worker gets to finish before it is terminated.
_JOIN_TIMEOUT = 5.0


class _TensorData:
    """A Tensor's array on its way from a worker to the main process."""

    def __init__(self, array):
        self.array = array


def _to_arrays(value):
    """``value`` with every Tensor replaced by a ``_TensorData``."""
    if isinstance(value, Tensor):
        return _TensorData(value.data if isinstance(value.data, numpy.ndarray) else value.numpy_copy())
    return _map_fields(value, _to_arrays)


def _to_tensors(value):
    """The inverse of ``_to_arrays``."""
    if isinstance(value, _TensorData):
        return Tensor._wrap(value.array)
    return _map_fields(value, _to_tensors)


def _map_fields(value, fn):
    if isinstance(value, dict):
        return {key: fn(field) for key, field in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):     # a namedtuple
        return type(value)(*(fn(field) for field in value))
    if isinstance(value, (tuple, list)):
        return type(value)(fn(field) for field in value)
    return value


class _WorkerError:
    """An exception raised in a worker, sent to the main process to raise
    there: its type (when it can be pickled) and the worker's traceback."""

    def __init__(self, worker_id, error):
        self.type = type(error)
        try:
            pickle.dumps(self.type)
        except Exception:        # a class defined inside a function cannot travel
            self.type = RuntimeError
        self.message = (f"Caught {type(error).__name__} in DataLoader worker process {worker_id}.\n"
                        f"Original {traceback.format_exc()}")

    def reraise(self):
        try:
            error = self.type(self.message)
        except Exception:        # an exception type whose constructor wants other arguments
            error = RuntimeError(self.message)
        raise error


def _worker_loop(dataset, index_queue, result_queue, done, collate_fn, auto_collation, base_seed, worker_id,
                 num_workers, worker_init_fn):
    """The body of worker process ``worker_id``: seed, then turn batches of
    indices from ``index_queue`` into pickled batches on ``result_queue``
    until told to stop (``None`` or ``done``) or the main process is gone."""
    global _worker_info
    # Ctrl-C reaches every process of the terminal's group; the main
    # process handles it and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    seed = base_seed + worker_id
    pyrandom.seed(seed)
    random.manual_seed(seed)
    numpy.random.seed(numpy.random.SeedSequence([worker_id, base_seed]).generate_state(4))
    _worker_info = WorkerInfo(worker_id, num_workers, seed, dataset)
    # As torch: the workers are the parallelism, each kernel runs on one thread.
    from ..kernels.cpu.threads import set_num_threads
    set_num_threads(1)
    init_error = None
    if worker_init_fn is not None:
        try:
            worker_init_fn(worker_id)
        except Exception as error:
            init_error = _WorkerError(worker_id, error)
    parent = multiprocessing.parent_process()
    while not done.is_set():
        try:
            task = index_queue.get(timeout=_STATUS_INTERVAL)
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                break
            continue
        if task is None or done.is_set():
            break
        epoch, position, indices = task
        if init_error is not None:
            result_queue.put((epoch, position, init_error))
            continue
        try:
            if auto_collation:
                batch = collate_fn([dataset[i] for i in indices])
            else:
                batch = collate_fn(dataset[indices])
            # Pickled here, not by the queue's thread, so that a batch that
            # cannot be pickled is an error the main process hears about.
            result = pickle.dumps(_to_arrays(batch), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as error:
            result = _WorkerError(worker_id, error)
        result_queue.put((epoch, position, result))
    # The main process has stopped reading: do not wait to flush the queue.
    result_queue.cancel_join_thread()


class _WorkerPool:
    """The worker processes of one DataLoader and the iterator over one pass.

    Batch ``position`` of a pass goes to worker ``position % num_workers``;
    results that arrive early wait in ``pending`` until their turn. Each
    pass has a number (``epoch``) that travels with its tasks, so results
    of an abandoned pass are recognised and dropped.
    """

    def __init__(self, loader):
        self.dataset = loader.dataset
        self.sampler = loader.sampler
        self.batch_sampler = loader.batch_sampler
        self.num_workers = loader.num_workers
        self.prefetch = loader.prefetch_factor * loader.num_workers
        self.timeout = loader.timeout
        self.persistent = loader.persistent_workers
        self.closed = False
        self.epoch = 0
        context = loader._context()
        self.done = context.Event()
        self.result_queue = context.Queue()
        self.index_queues, self.workers = [], []
        base_seed = loader._base_seed()
        for worker_id in range(self.num_workers):
            index_queue = context.Queue()
            worker = context.Process(
                target=_worker_loop, daemon=True,
                args=(self.dataset, index_queue, self.result_queue, self.done, loader.collate_fn,
                      self.batch_sampler is not None, base_seed, worker_id, self.num_workers,
                      loader.worker_init_fn))
            self.index_queues.append(index_queue)
            try:
                worker.start()
            except (pickle.PicklingError, AttributeError, TypeError) as error:
                self.shutdown()
                raise TypeError(
                    f"DataLoader: cannot start worker processes with the {context.get_start_method()!r} method: "
                    f"the dataset, collate_fn and worker_init_fn must be picklable (defined at the top level "
                    f"of a module) ({error})") from error
            self.workers.append(worker)

    def start_pass(self):
        """Begin a new pass over the sampler and return self as its iterator."""
        self.epoch += 1
        self.batches = iter(self.batch_sampler if self.batch_sampler is not None else self.sampler)
        self.sent = self.received = 0
        self.pending = {}
        self.exhausted = False
        for _ in range(self.prefetch):
            self._send_next()
        return self

    def _send_next(self):
        if self.exhausted:
            return
        try:
            indices = next(self.batches)
        except StopIteration:
            self.exhausted = True
            return
        self.index_queues[self.sent % self.num_workers].put((self.epoch, self.sent, indices))
        self.sent += 1

    def __iter__(self):
        return self

    def __next__(self):
        if self.closed:
            raise StopIteration
        try:
            if self.received == self.sent and self.exhausted:
                if not self.persistent:
                    self.shutdown()
                raise StopIteration
            while self.received not in self.pending:
                self._receive()
        except (KeyboardInterrupt, RuntimeError):   # Ctrl-C, a timeout or a dead worker: stop them all
            self.shutdown()
            raise
        try:
            result = self.pending.pop(self.received)
            self.received += 1
            self._send_next()
            batch = None if isinstance(result, _WorkerError) else _to_tensors(pickle.loads(result))
        except KeyboardInterrupt:       # Ctrl-C here too: the traceback would keep self, and the workers, alive
            self.shutdown()
            raise
        if isinstance(result, _WorkerError):
            # The traceback keeps this frame: without self in it, dropping
            # the iterator still stops the workers while the error is handled.
            del self
            result.reraise()
        return batch

    def _receive(self):
        """Wait for one result of this pass, checking now and then that the
        workers are alive and the timeout has not passed."""
        deadline = time.monotonic() + self.timeout if self.timeout > 0 else None
        while True:
            wait = _STATUS_INTERVAL
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - time.monotonic()))
            try:
                epoch, position, result = self.result_queue.get(timeout=wait)
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise RuntimeError(f"DataLoader timed out after {self.timeout} seconds waiting for a batch")
                for worker_id, worker in enumerate(self.workers):
                    if not worker.is_alive():
                        raise RuntimeError(
                            f"DataLoader worker {worker_id} (pid {worker.pid}) exited unexpectedly "
                            f"with exit code {worker.exitcode}")
                continue
            if epoch == self.epoch:
                self.pending[position] = result
                return

    def __len__(self):
        return len(self.batch_sampler) if self.batch_sampler is not None else len(self.sampler)

    def shutdown(self):
        """Stop the workers and wait for them (terminating any that do not
        stop in time), so that no process outlives the loop."""
        if self.closed:
            return
        self.closed = True
        self.done.set()
        for index_queue in self.index_queues:
            index_queue.put(None)
        for worker in self.workers:
            worker.join(_JOIN_TIMEOUT)
        for worker in self.workers:
            if worker.is_alive():
                worker.terminate()
                worker.join()
        for q in self.index_queues + [self.result_queue]:
            q.cancel_join_thread()
            q.close()

    def __del__(self):
        # Also at interpreter exit, when parts of the world may be gone.
        try:
            self.shutdown()
        except Exception:
            pass


def default_collate(batch):
    """Merge a list of samples into a batch, as torch's default_collate:

    - Tensors (N of shape S) -> one Tensor of shape (N, *S);
    - NumPy arrays -> the same, as a Tensor;
    - Python ints -> an int64 Tensor of shape (N,); floats -> float64;
      bools -> bool; NumPy scalars keep their dtype;
    - strings -> the list as it is;
    - tuples, lists and dicts -> collated field by field, same container.
    """
    if not isinstance(batch, (list, tuple)) or not batch:
        raise ValueError("default_collate: expected a non-empty list of samples")
    first = batch[0]
    if isinstance(first, Tensor):
        _check_same_shapes([s.shape for s in batch], "Tensors")
        if any(s.requires_grad for s in batch):
            from ..functional import stack
            return stack(list(batch))
        xp = get_array_module(first.data)
        return Tensor._wrap(xp.stack([s.data for s in batch]))
    if isinstance(first, numpy.ndarray) or get_array_module(first) is not numpy:
        _check_same_shapes([s.shape for s in batch], "arrays")
        return Tensor._wrap(get_array_module(first).stack(batch))
    if isinstance(first, (bool, numpy.bool_)):
        return Tensor._wrap(numpy.array(batch, dtype=numpy.bool_))
    if isinstance(first, numpy.generic):
        return Tensor._wrap(numpy.array(batch, dtype=first.dtype))
    if isinstance(first, numbers.Integral):
        return Tensor._wrap(numpy.array(batch, dtype=numpy.int64))
    if isinstance(first, numbers.Real):
        return Tensor._wrap(numpy.array(batch, dtype=numpy.float64))
    if isinstance(first, str):
        return list(batch)
    if isinstance(first, dict):
        return {key: default_collate([sample[key] for sample in batch]) for key in first}
    if isinstance(first, (tuple, list)):
        if len({len(sample) for sample in batch}) != 1:
            raise ValueError("default_collate: the samples of a batch have different numbers of fields")
        fields = [default_collate(list(field)) for field in zip(*batch)]
        return tuple(fields) if isinstance(first, tuple) else fields
    raise TypeError(
        f"default_collate: cannot batch samples of type {type(first).__name__}; expected Tensors, arrays, "
        "numbers, strings, or tuples, lists and dicts of them (or pass collate_fn=)")


def _check_same_shapes(shapes, what):
    if len(set(shapes)) != 1:
        raise ValueError(f"default_collate: {what} in a batch must have the same shape, got {sorted(set(shapes))}")


def _identity(sample):
    return sample


def _generator(generator, caller):
    """The generator to draw from: the one given, or minicnn's global one."""
    if generator is None:
        return random.default_generator()
    if not isinstance(generator, numpy.random.Generator):
        raise TypeError(
            f"{caller}: generator must be a numpy.random.Generator (mc.random.generator(seed)), "
            f"got {type(generator).__name__}")
    return generator


from .distributed_sampler import DistributedSampler  # noqa: E402,F401  (torch.utils.data has it too)
