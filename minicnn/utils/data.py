"""Datasets and the DataLoader, with torch.utils.data's names.

A ``Dataset`` is anything with ``__getitem__(i)`` and ``__len__()``; a
sample is whatever ``__getitem__`` returns, typically ``(image, label)``.
The ``DataLoader`` draws indices (in order, or shuffled by a seeded
generator), groups them into batches and merges each batch's samples with
``default_collate``: Tensors and arrays are stacked along a new first
dimension, numbers become 1-d Tensors, tuples and dicts are collated
field by field. Loading runs in the calling process.

Randomness (shuffling, ``random_split``) comes from the ``generator``
argument, a ``numpy.random.Generator`` (``mc.random.generator(seed)``), or
from minicnn's global generator (``mc.manual_seed``) when none is given.
"""
import bisect
import math
import numbers

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
    drop_last=False, *, generator=None)``: torch's arguments, in torch's
    order. ``shuffle=True`` draws a new order on every pass from
    ``generator``; ``drop_last`` drops a last, incomplete batch. Loading
    happens in this process (``num_workers`` must be 0) and ``pin_memory``
    has no effect (there is no page-locked memory to pin into).
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, sampler=None, batch_sampler=None, num_workers=0,
                 collate_fn=None, pin_memory=False, drop_last=False, *, generator=None):
        if num_workers != 0:
            raise ValueError(f"DataLoader: num_workers must be 0 (minicnn loads in this process), got {num_workers}")
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
        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler if sampler is not None else SequentialSampler(dataset)
        self.batch_sampler = batch_sampler
        self.generator = generator
        self.pin_memory = pin_memory
        self.num_workers = num_workers
        # batch_size=None means "no batching": samples come out one by one, unmerged.
        self.collate_fn = collate_fn or (default_collate if batch_sampler is not None else _identity)

    def __iter__(self):
        if self.batch_sampler is None:
            for index in self.sampler:
                yield self.collate_fn(self.dataset[index])
            return
        for indices in self.batch_sampler:
            yield self.collate_fn([self.dataset[i] for i in indices])

    def __len__(self):
        return len(self.batch_sampler) if self.batch_sampler is not None else len(self.sampler)


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
