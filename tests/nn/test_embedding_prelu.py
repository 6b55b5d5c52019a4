"""PReLU (F.prelu and nn.PReLU), nn.Softmax2d, embedding (F.embedding and
nn.Embedding: padding_idx, max_norm, scale_grad_by_freq) and F.one_hot
against torch."""
import numpy
import pytest
import torch
import torch.nn.functional as TF

import minicnn as mc
import minicnn.nn.functional as F
from layer_check import check_layer
from parity import assert_close, check_parity, gradcheck_inputs

R = numpy.random.default_rng(11)


def with_zeros(shape):
    """Random values with a few exact zeros (where x > 0 switches)."""
    x = R.standard_normal(shape)
    x.reshape(-1)[::5] = 0.0
    return x


PRELU_CASES = {
    "nchw_per_channel": [with_zeros((2, 3, 4, 4)), R.uniform(-0.5, 0.5, 3)],
    "nchw_shared": [with_zeros((2, 3, 4, 4)), R.uniform(-0.5, 0.5, 1)],
    "nc_per_channel": [with_zeros((5, 4)), R.uniform(-0.5, 0.5, 4)],
    "ncl_per_channel": [with_zeros((2, 3, 5)), R.uniform(-0.5, 0.5, 3)],
    "1d_shared": [with_zeros((6,)), R.uniform(-0.5, 0.5, 1)],
    "0d_input": [numpy.array(-1.5), R.uniform(-0.5, 0.5, 1)],
    "0d_weight": [with_zeros((2, 3, 2)), numpy.array(0.3)],
    "empty_batch": [numpy.zeros((0, 3, 2)), R.uniform(-0.5, 0.5, 3)],
}


@pytest.mark.parametrize("name", sorted(PRELU_CASES))
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_prelu_matches_torch(name, dtype):
    check_parity(F.prelu, TF.prelu, PRELU_CASES[name], dtype=dtype)


@pytest.mark.parametrize("name", sorted(PRELU_CASES))
def test_prelu_noncontiguous_and_gradcheck(name):
    inputs = PRELU_CASES[name]
    check_parity(F.prelu, TF.prelu, inputs, noncontiguous_inputs=True)
    x, w = inputs
    # gradcheck away from the kink at 0, where the derivative jumps.
    x = numpy.where(numpy.abs(x) < 0.1, 0.5, x)
    assert mc.gradcheck(F.prelu, gradcheck_inputs([x, w]))


def test_prelu_double_backward_matches_torch():
    # No exact zeros: there torch's second derivative takes x = 0 as
    # positive (x >= 0), its first derivative as negative (x > 0).
    x, w = R.standard_normal((2, 3, 4, 4)), R.uniform(-0.5, 0.5, 3)
    g = R.standard_normal(x.shape)
    h = R.standard_normal(x.shape)
    xm, wm = mc.tensor(x, requires_grad=True), mc.tensor(w, requires_grad=True)
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    F.prelu(xm, wm).backward(mc.tensor(g), create_graph=True)
    gx_m, gw_m = xm.grad, wm.grad
    xm.grad = wm.grad = None
    gx_t, gw_t = torch.autograd.grad(TF.prelu(xt, wt), [xt, wt], torch.tensor(g), create_graph=True)
    assert_close(gx_m.detach().numpy(), gx_t.detach().numpy(), 1e-12, 1e-14, "gx")
    assert_close(gw_m.detach().numpy(), gw_t.detach().numpy(), 1e-12, 1e-14, "gw")
    ((gx_m * mc.tensor(h)).sum() + gw_m.sum()).backward()
    second_x, second_w = torch.autograd.grad((gx_t * torch.tensor(h)).sum() + gw_t.sum(), [xt, wt])
    assert_close(xm.grad.numpy_copy(), second_x.numpy(), 1e-12, 1e-14, "d2/dx")
    assert_close(wm.grad.numpy_copy(), second_w.numpy(), 1e-12, 1e-14, "d2/dw")


def test_prelu_bad_arguments():
    with pytest.raises(ValueError, match=r"weight has 2 elements; input of shape \(2, 3\) needs 1 or its "
                                         r"channel count 3"):
        F.prelu(mc.randn(2, 3), mc.randn(2))
    with pytest.raises(ValueError, match="channel count 1"):
        F.prelu(mc.randn(3), mc.randn(3))
    with pytest.raises(ValueError, match=r"weight must be a 0-d or 1-D tensor, got shape \(1, 3\)"):
        F.prelu(mc.randn(2, 3), mc.randn(1, 3))
    with pytest.raises(TypeError, match="prelu: input must be a floating-point tensor"):
        F.prelu(mc.tensor([1, 2]), mc.randn(1))
    with pytest.raises(TypeError, match="weight has dtype float64 but input has dtype float32"):
        F.prelu(mc.randn(2, 3), mc.randn(3).double())
    with pytest.raises(ValueError, match="PReLU: num_parameters must be a positive int"):
        mc.nn.PReLU(0)


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("num_parameters,shape", [(1, (2, 3, 4, 4)), (3, (2, 3, 4, 4)), (4, (5, 4)), (1, (7,))])
def test_prelu_module_matches_torch(dtype, num_parameters, shape):
    def factory(nn):
        layer = nn.PReLU(num_parameters, init=0.1)
        with torch.no_grad():
            if isinstance(layer, torch.nn.Module):
                layer.weight.uniform_(-0.5, 0.5)       # distinct slopes, copied into minicnn by check_layer
        return layer
    check_layer(factory, [shape], dtype=dtype)
    assert mc.nn.PReLU().weight.numpy_copy().tolist() == [0.25]
    assert mc.nn.PReLU(3, init=-0.5).weight.numpy_copy().tolist() == [-0.5] * 3


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 4, 5)])
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_softmax2d_matches_torch(shape, dtype):
    check_layer(lambda nn: nn.Softmax2d(), [shape], dtype=dtype)


def test_softmax2d_bad_input():
    with pytest.raises(ValueError, match=r"Softmax2d: expected a 3-D or 4-D input, got shape \(2, 3\)"):
        mc.nn.Softmax2d()(mc.randn(2, 3))


# Embedding.

TABLE = R.standard_normal((7, 4))
INDICES = numpy.array([[0, 2, 2, 6], [1, 2, 0, 0], [3, 3, 3, 5]])
EMBEDDING_CASES = {
    "plain": (dict(), INDICES),
    "padding": (dict(padding_idx=2), INDICES),
    "negative_padding": (dict(padding_idx=-1), INDICES),
    "scale_grad_by_freq": (dict(scale_grad_by_freq=True), INDICES),
    "scaled_and_padding": (dict(scale_grad_by_freq=True, padding_idx=0), INDICES),
    "1d_int32": (dict(), INDICES[0].astype(numpy.int32)),
    "0d": (dict(), numpy.array(4)),
    "empty": (dict(), numpy.zeros((2, 0), dtype=numpy.int64)),
    "3d": (dict(padding_idx=3), R.integers(0, 7, (2, 3, 2))),
}


@pytest.mark.parametrize("name", sorted(EMBEDDING_CASES))
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_embedding_matches_torch(name, dtype):
    kwargs, indices = EMBEDDING_CASES[name]
    check_parity(lambda w, i: F.embedding(i, w, **kwargs), lambda w, i: TF.embedding(i, w, **kwargs),
                 [TABLE, indices], dtype=dtype)


@pytest.mark.parametrize("name", sorted(EMBEDDING_CASES))
def test_embedding_noncontiguous_and_gradcheck(name):
    kwargs, indices = EMBEDDING_CASES[name]
    check_parity(lambda w, i: F.embedding(i, w, **kwargs), lambda w, i: TF.embedding(i, w, **kwargs),
                 [TABLE, indices], noncontiguous_inputs=True)
    # padding_idx and scale_grad_by_freq change the gradient on purpose (it is
    # no longer the derivative), so only the plain lookup is gradchecked.
    if not kwargs:
        assert mc.gradcheck(lambda w, i: F.embedding(i, w), gradcheck_inputs([TABLE, indices]))


def test_padding_row_gets_no_gradient():
    weight = mc.tensor(TABLE, requires_grad=True)
    F.embedding(mc.tensor(INDICES), weight, padding_idx=2).backward(mc.tensor(R.standard_normal((3, 4, 4))))
    assert not weight.grad.numpy_copy()[2].any()
    assert weight.grad.numpy_copy()[0].any()


@pytest.mark.parametrize("max_norm,norm_type", [(1.0, 2.0), (0.5, 1.0), (1.2, 3.0), (0.8, float("inf"))])
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_embedding_max_norm_renormalizes_rows_in_place_as_torch(max_norm, norm_type, dtype):
    table = (TABLE * 2).astype(dtype)
    table[4] *= 0.01                          # one short row, left alone
    indices = numpy.array([[0, 2, 4], [2, 5, 4]])
    w_mc = mc.tensor(table.copy(), requires_grad=True)
    w_torch = torch.tensor(table.copy(), requires_grad=True)
    out_mc = F.embedding(mc.tensor(indices), w_mc, max_norm=max_norm, norm_type=norm_type)
    out_torch = TF.embedding(torch.tensor(indices), w_torch, max_norm=max_norm, norm_type=norm_type)
    rtol = 1e-12 if dtype == numpy.float64 else 1e-6
    assert_close(w_mc.numpy_copy(), w_torch.detach().numpy(), rtol, 0.0, "weight after renorm")
    assert_close(out_mc.numpy_copy(), out_torch.detach().numpy(), rtol, 0.0, "output")
    # Independent check: looked-up rows have norm <= max_norm, the others are untouched.
    norms = numpy.linalg.norm(w_mc.numpy_copy().astype(numpy.float64), ord=norm_type, axis=1)
    assert numpy.all(norms[[0, 2, 4, 5]] <= max_norm * (1 + 1e-6))
    numpy.testing.assert_array_equal(w_mc.numpy_copy()[[1, 3, 6]], table[[1, 3, 6]])
    numpy.testing.assert_array_equal(w_mc.numpy_copy()[4], table[4])
    g = R.standard_normal(out_mc.shape).astype(dtype)
    out_mc.backward(mc.tensor(g))
    out_torch.backward(torch.tensor(g))
    assert_close(w_mc.grad.numpy_copy(), w_torch.grad.numpy(), rtol, 0.0, "gradient")


def test_embedding_module_matches_torch():
    for kwargs in [dict(), dict(padding_idx=1), dict(padding_idx=-2, max_norm=1.5, norm_type=1.0),
                   dict(scale_grad_by_freq=True)]:
        theirs = torch.nn.Embedding(7, 4, **kwargs).double()
        mine = mc.nn.Embedding(7, 4, **kwargs).double()
        assert repr(mine) == repr(theirs)
        assert list(mine.state_dict()) == list(theirs.state_dict())
        mine.load_state_dict(theirs.state_dict())
        out_mc, out_torch = mine(mc.tensor(INDICES)), theirs(torch.tensor(INDICES))
        assert_close(out_mc.numpy_copy(), out_torch.detach().numpy(), 1e-12, 0.0, "output")
        g = R.standard_normal(out_mc.shape)
        out_mc.backward(mc.tensor(g))
        out_torch.backward(torch.tensor(g))
        assert_close(mine.weight.grad.numpy_copy(), theirs.weight.grad.numpy(), 1e-12, 0.0, "gradient")


def test_embedding_module_initialisation_and_from_pretrained():
    mc.manual_seed(0)
    layer = mc.nn.Embedding(500, 8, padding_idx=3)
    w = layer.weight.numpy_copy()
    assert w.shape == (500, 8) and w.dtype == numpy.float32 and layer.weight.requires_grad
    assert not w[3].any()
    rest = numpy.delete(w, 3, axis=0)
    assert abs(rest.mean()) < 0.05 and abs(rest.std() - 1) < 0.05          # N(0, 1)
    table = mc.tensor(TABLE)
    frozen = mc.nn.Embedding.from_pretrained(table, padding_idx=1)
    assert not frozen.weight.requires_grad
    numpy.testing.assert_array_equal(frozen.weight.numpy_copy(), TABLE)   # the padding row is kept
    assert repr(frozen) == repr(torch.nn.Embedding.from_pretrained(torch.tensor(TABLE), padding_idx=1))
    assert mc.nn.Embedding.from_pretrained(table, freeze=False).weight.requires_grad
    given = mc.nn.Embedding(7, 4, _weight=table)
    numpy.testing.assert_array_equal(given.weight.numpy_copy(), TABLE)
    assert mc.nn.Embedding(7, 4, _freeze=True).weight.requires_grad is False


def test_embedding_bad_arguments():
    weight = mc.randn(5, 3)
    with pytest.raises(ValueError, match=r"index out of range: input holds \[5, -1\], the table has 5 rows"):
        F.embedding(mc.tensor([0, 5, -1]), weight)
    with pytest.raises(TypeError, match="embedding: input must hold indices .* got dtype float32"):
        F.embedding(mc.randn(3), weight)
    with pytest.raises(ValueError, match=r"weight must be a 2-D Tensor .* got \(5,\)"):
        F.embedding(mc.tensor([0]), mc.randn(5))
    with pytest.raises(ValueError, match=r"padding_idx must be within \[-5, 5\) for num_embeddings=5, got 5"):
        F.embedding(mc.tensor([0]), weight, padding_idx=5)
    with pytest.raises(ValueError, match="sparse=True is not supported"):
        F.embedding(mc.tensor([0]), weight, sparse=True)
    with pytest.raises(ValueError, match="Embedding: sparse=True is not supported"):
        mc.nn.Embedding(5, 3, sparse=True)
    with pytest.raises(ValueError, match=r"_weight has shape \(5, 3\), expected \(4, 3\)"):
        mc.nn.Embedding(4, 3, _weight=weight)
    with pytest.raises(ValueError, match="padding_idx must be within"):
        mc.nn.Embedding(4, 3, padding_idx=-5)
    with pytest.raises(ValueError, match="Embedding: embedding_dim must be a non-negative int"):
        mc.nn.Embedding(4, -3)
    with pytest.raises(ValueError, match="max_norm must be a non-negative number"):
        F.embedding(mc.tensor([0]), weight, max_norm=-1.0)


@pytest.mark.parametrize("values,num_classes", [([0, 2, 1], -1), ([[3, 0], [1, 1]], 5), (1, 3), (2, -1),
                                                (numpy.zeros((0, 2), dtype=numpy.int64), 4), ([0, 0], 1)])
def test_one_hot_matches_torch(values, num_classes):
    values = numpy.asarray(values, dtype=numpy.int64)
    mine = F.one_hot(mc.tensor(values), num_classes)
    theirs = TF.one_hot(torch.tensor(values), num_classes)
    assert mine.dtype == numpy.int64 and not mine.requires_grad
    numpy.testing.assert_array_equal(mine.numpy_copy(), theirs.numpy())


def test_one_hot_bad_arguments():
    with pytest.raises(ValueError, match="class values must be non-negative, got -1"):
        F.one_hot(mc.tensor([0, -1]))
    with pytest.raises(ValueError, match="class values must be smaller than num_classes=3, got 3"):
        F.one_hot(mc.tensor([3]), 3)
    with pytest.raises(ValueError, match="cannot infer num_classes from an empty tensor"):
        F.one_hot(mc.tensor(numpy.zeros(0, dtype=numpy.int64)))
    with pytest.raises(TypeError, match="one_hot: tensor must hold class indices .* got dtype float32"):
        F.one_hot(mc.randn(3))
    with pytest.raises(TypeError, match="num_classes must be an int"):
        F.one_hot(mc.tensor([1]), 2.0)
