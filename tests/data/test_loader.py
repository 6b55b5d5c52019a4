"""Dataset, TensorDataset, DataLoader, default_collate, random_split."""
import numpy
import pytest

import minicnn as mc
from minicnn.utils.data import (
    ConcatDataset, DataLoader, Dataset, Subset, TensorDataset, default_collate, random_split)


def numbered(n=10):
    """Images whose every pixel holds the sample's index, and labels i % 3."""
    images = mc.tensor(numpy.arange(n, dtype=numpy.float32)[:, None, None, None] * numpy.ones((1, 1, 2, 2),
                                                                                             numpy.float32))
    return TensorDataset(images, mc.tensor(numpy.arange(n) % 3))


def indices_of(batch):
    return batch[0].data[:, 0, 0, 0].astype(int).tolist()


def test_batches_in_order():
    loader = DataLoader(numbered(10), batch_size=4)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    assert [indices_of(b) for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    images, labels = batches[0]
    assert isinstance(images, mc.Tensor) and images.shape == (4, 1, 2, 2) and images.dtype == mc.float32
    assert labels.dtype == mc.int64 and labels.tolist() == [0, 1, 2, 0]


def test_drop_last():
    loader = DataLoader(numbered(10), batch_size=4, drop_last=True)
    assert len(loader) == 2
    assert [indices_of(b) for b in loader] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_seeded_shuffle_is_repeatable_and_changes_every_epoch():
    def epochs(seed):
        loader = DataLoader(numbered(10), batch_size=3, shuffle=True, generator=mc.random.generator(seed))
        return [sum((indices_of(b) for b in loader), []) for _ in range(2)]

    first, second = epochs(0)
    assert sorted(first) == list(range(10)) and first != list(range(10))
    assert first != second                      # a new order each pass
    assert epochs(0) == [first, second]         # the same seed, the same orders
    assert epochs(1) != [first, second]


def test_shuffle_without_generator_follows_manual_seed():
    mc.manual_seed(5)
    a = [indices_of(b) for b in DataLoader(numbered(8), batch_size=8, shuffle=True)]
    mc.manual_seed(5)
    b = [indices_of(b) for b in DataLoader(numbered(8), batch_size=8, shuffle=True)]
    assert a == b


def test_collate_of_arrays_ints_floats_strings_and_dicts():
    samples = [
        {"image": numpy.full((2, 3), i, numpy.float32), "label": i, "weight": 0.5 * i, "name": f"s{i}",
         "pair": (mc.tensor([i, i + 1]), numpy.int32(i)), "flag": i % 2 == 0}
        for i in range(3)]
    batch = default_collate(samples)
    assert isinstance(batch["image"], mc.Tensor) and batch["image"].shape == (3, 2, 3)
    assert batch["label"].dtype == mc.int64 and batch["label"].tolist() == [0, 1, 2]
    assert batch["weight"].dtype == mc.float64 and batch["weight"].tolist() == [0.0, 0.5, 1.0]
    assert batch["name"] == ["s0", "s1", "s2"]
    assert isinstance(batch["pair"], tuple) and batch["pair"][0].tolist() == [[0, 1], [1, 2], [2, 3]]
    assert batch["pair"][1].dtype == mc.int32
    assert batch["flag"].dtype == mc.bool and batch["flag"].tolist() == [True, False, True]


def test_collate_refuses_what_it_cannot_batch():
    with pytest.raises(ValueError, match="same shape"):
        default_collate([numpy.zeros(2), numpy.zeros(3)])
    with pytest.raises(TypeError, match="cannot batch samples of type object"):
        default_collate([object(), object()])


def test_custom_collate_fn_and_batch_size_none():
    loader = DataLoader(numbered(4), batch_size=2, collate_fn=lambda samples: len(samples))
    assert list(loader) == [2, 2]
    unbatched = list(DataLoader(numbered(3), batch_size=None))
    assert len(unbatched) == 3 and unbatched[1][0].shape == (1, 2, 2)


class Squares(Dataset):
    def __len__(self):
        return 5

    def __getitem__(self, i):
        return i * i


def test_a_plain_dataset_and_concat():
    assert [b.tolist() for b in DataLoader(Squares(), batch_size=2)] == [[0, 1], [4, 9], [16]]
    both = Squares() + Squares()
    assert isinstance(both, ConcatDataset) and len(both) == 10 and both[7] == 4 and both[-1] == 16
    with pytest.raises(IndexError):
        both[10]


def test_random_split_sizes_and_disjointness():
    data = numbered(10)
    parts = random_split(data, [6, 3, 1], generator=mc.random.generator(0))
    assert [len(p) for p in parts] == [6, 3, 1]
    seen = [i for p in parts for i in p.indices]
    assert sorted(seen) == list(range(10))
    assert all(isinstance(p, Subset) for p in parts)
    assert int(parts[1][0][0].data[0, 0, 0]) == parts[1].indices[0]
    again = random_split(data, [6, 3, 1], generator=mc.random.generator(0))
    assert [p.indices for p in again] == [p.indices for p in parts]


def test_random_split_fractions_hand_out_the_remainder_like_torch():
    import torch.utils.data
    fractions = [0.33, 0.33, 0.34]
    parts = random_split(range(10), fractions, generator=mc.random.generator(0))
    assert [len(p) for p in parts] == [len(p) for p in torch.utils.data.random_split(range(10), fractions)]
    assert sorted(i for p in parts for i in p.indices) == list(range(10))


@pytest.mark.parametrize("lengths, match", [([5, 4], "add up to 9"), ([0.5, 0.6], "add up to 1"),
                                            ([-1, 11], "non-negative")])
def test_random_split_refuses_bad_lengths(lengths, match):
    with pytest.raises(ValueError, match=match):
        random_split(range(10), lengths)


def test_bad_arguments():
    data = numbered(4)
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(data, batch_size=0)
    with pytest.raises(ValueError, match="num_workers"):
        DataLoader(data, num_workers=-1)
    with pytest.raises(TypeError, match="generator"):
        list(DataLoader(data, shuffle=True, generator=42))
    with pytest.raises(ValueError, match="same first dimension"):
        TensorDataset(mc.zeros(3, 2), mc.zeros(4))
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(data, sampler=range(4), shuffle=True)
