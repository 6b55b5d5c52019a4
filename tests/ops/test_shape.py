"""Shape ops against torch: reshape/view/flatten, permute/transpose,
(un)squeeze, expand, indexing, cat/stack/split/chunk, pad, contiguous."""
import numpy
import pytest
import torch
from hypothesis import given, settings, strategies as st

import minicnn as mc
import minicnn.nn.functional as F
from parity import case_table_tests, check_parity
from strategies import shapes

R = numpy.random.default_rng(5)
X = R.standard_normal((2, 3, 4))
Y = R.standard_normal((2, 2, 4))

CASES = {
    "reshape": (lambda x: x.reshape(6, 4), lambda x: x.reshape(6, 4), [X]),
    "reshape_infer": (lambda x: x.reshape(-1, 2), lambda x: x.reshape(-1, 2), [X]),
    "view": (lambda x: x.view((4, 6)), lambda x: x.reshape(4, 6), [X]),
    "flatten": (lambda x: x.flatten(), lambda x: x.flatten(), [X]),
    "flatten_from_1": (lambda x: mc.flatten(x, 1), lambda x: torch.flatten(x, 1), [X]),
    "permute": (lambda x: x.permute(2, 0, 1), lambda x: x.permute(2, 0, 1), [X]),
    "transpose": (lambda x: x.transpose(0, -1), lambda x: x.transpose(0, -1), [X]),
    "T": (lambda x: x[0].T, lambda x: x[0].T, [X]),
    "unsqueeze": (lambda x: x.unsqueeze(1), lambda x: x.unsqueeze(1), [X]),
    "unsqueeze_end": (lambda x: x.unsqueeze(-1), lambda x: x.unsqueeze(-1), [X]),
    "squeeze_all": (lambda x: x[:, :1].squeeze(), lambda x: x[:, :1].squeeze(), [X]),
    "squeeze_dim": (lambda x: x[:, :1].squeeze(1), lambda x: x[:, :1].squeeze(1), [X]),
    "expand": (lambda x: x[:, :1].expand(2, 5, 4), lambda x: x[:, :1].expand(2, 5, 4), [X]),
    "expand_new_dims": (lambda x: x.expand(3, -1, -1, -1), lambda x: x.expand(3, -1, -1, -1), [X]),
    "contiguous": (lambda x: x.transpose(0, 2).contiguous(), lambda x: x.transpose(0, 2).contiguous(), [X]),
    "getitem_int": (lambda x: x[1], lambda x: x[1], [X]),
    "getitem_slices": (lambda x: x[:, 1:, ::2], lambda x: x[:, 1:, ::2], [X]),
    "getitem_negative": (lambda x: x[-1, :-1], lambda x: x[-1, :-1], [X]),
    "getitem_ellipsis_none": (lambda x: x[..., None, 2], lambda x: x[..., None, 2], [X]),
    "getitem_int_array": (lambda x: x[[1, 0, 1]], lambda x: x[[1, 0, 1]], [X]),
    "getitem_repeated_pairs": (lambda x: x[mc.tensor([0, 1, 1]), mc.tensor([2, 0, 0])],
                               lambda x: x[torch.tensor([0, 1, 1]), torch.tensor([2, 0, 0])], [X]),
    "getitem_mask": (lambda x: x[x > 0], lambda x: x[x > 0], [X]),
    "cat": (lambda x, y: mc.cat([x, y], 1), lambda x, y: torch.cat([x, y], 1), [X, Y]),
    "cat_neg_dim": (lambda x, y: mc.cat([x, x, y], -2), lambda x, y: torch.cat([x, x, y], -2), [X, Y]),
    "stack": (lambda x: mc.stack([x, x * 2], 1), lambda x: torch.stack([x, x * 2], 1), [X]),
    "split_size": (lambda x: x.split(3, -1), lambda x: x.split(3, -1), [X]),
    "split_sections": (lambda x: x.split([1, 2], 1), lambda x: x.split([1, 2], 1), [X]),
    "split_one_used": (lambda x: x.split(2, 2)[1], lambda x: x.split(2, 2)[1], [X]),
    "chunk": (lambda x: x.chunk(3, 2), lambda x: x.chunk(3, 2), [X]),
    "pad_constant": (lambda x: F.pad(x, (1, 2)), lambda x: torch.nn.functional.pad(x, (1, 2)), [X]),
    "pad_value_2d": (lambda x: F.pad(x, (1, 0, 2, 1), value=0.5), lambda x: torch.nn.functional.pad(x, (1, 0, 2, 1), value=0.5), [X]),
    "pad_crop": (lambda x: F.pad(x, (-1, 2, 0, -1)), lambda x: torch.nn.functional.pad(x, (-1, 2, 0, -1)), [X]),
    "pad_reflect": (lambda x: F.pad(x, (3, 1, 2, 2), mode="reflect"),
                    lambda x: torch.nn.functional.pad(x, (3, 1, 2, 2), mode="reflect"), [X]),
    "pad_replicate": (lambda x: F.pad(x, (4, 1, 0, 3), mode="replicate"),
                      lambda x: torch.nn.functional.pad(x, (4, 1, 0, 3), mode="replicate"), [X]),
    "pad_circular": (lambda x: F.pad(x, (2, 1, 1, 3), mode="circular"),
                     lambda x: torch.nn.functional.pad(x, (2, 1, 1, 3), mode="circular"), [X]),
}
test_matches_torch, test_matches_torch_noncontiguous, test_gradcheck = case_table_tests(CASES)


@settings(max_examples=30, deadline=None)
@given(shape=shapes(1, 4), data=st.data())
def test_random_permutations_and_reshapes(shape, data):
    dims = tuple(data.draw(st.permutations(range(len(shape)))))
    x = numpy.random.default_rng(1).standard_normal(shape)
    check_parity(lambda t: t.permute(*dims).reshape(-1), lambda t: t.permute(*dims).reshape(-1), [x])


def test_bad_shapes_are_clear_errors():
    x = mc.ones(2, 3)
    with pytest.raises(ValueError, match=r"shape \(4, 2\) is invalid for an input of 6 elements"):
        x.reshape(4, 2)
    with pytest.raises(ValueError, match="only one dimension can be -1"):
        x.reshape(-1, -1)
    with pytest.raises(ValueError, match="not a permutation"):
        x.permute(0, 0)
    with pytest.raises(ValueError, match=r"cannot broadcast a tensor of shape \(2, 3\) to shape \(2, 4\)"):
        x.expand(2, 4)
    with pytest.raises(ValueError, match=r"tensor 0 has shape \(2, 3\), tensor 1 has shape \(3, 3\)"):
        mc.cat([x, mc.ones(3, 3)], 1)
    with pytest.raises(ValueError, match="same shape"):
        mc.stack([x, mc.ones(3, 2)])
    with pytest.raises(ValueError, match="do not add up to 3"):
        x.split([1, 1], 1)
    with pytest.raises(ValueError, match="reflect padding"):
        F.pad(mc.ones(1, 1, 3), (3, 0), mode="reflect")
    with pytest.raises(ValueError, match="even number"):
        F.pad(x, (1,))
    with pytest.raises(IndexError, match=r"shape \(2, 3\)"):
        x[5]
