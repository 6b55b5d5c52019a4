"""0-d and empty inputs for every elementwise op and activation, against
torch: the shapes torch's own OpInfo samples try first, where a kernel that
flattens (``ascontiguousarray`` makes a 0-d array 1-d) or a reduction with
no identity (the max in softmax) goes wrong.

The sweep covers every name that ``minicnn.functional`` exports, except
those of the families listed in ``OTHER_FAMILIES`` (reductions, shapes,
convolutions, ...: not elementwise, tested in their own files). Each
covered name has one or more entries in ``TABLE``: the minicnn call and
torch's, run on the same inputs for each of the edge shapes. A function
exported later from ``elementwise.py`` or ``activation.py``, or from a new
module, makes ``test_every_elementwise_export_is_in_the_table`` fail until
it has an entry here.

Each case compares, with ``check_parity``: shape, dtype, values and (for
float inputs) the gradient of every input with a random upstream gradient,
in float64 and float32; where torch refuses an input, minicnn must refuse
it too, with a ValueError or TypeError.
"""
import dataclasses
import itertools
from typing import Callable

import numpy
import pytest
import torch
import torch.nn.functional as TF

import minicnn as mc
import minicnn.functional as F
from parity import check_parity, gradcheck_inputs

#: Modules of minicnn.functional whose exports are not elementwise.
OTHER_FAMILIES = {"reduction", "shape", "linalg", "loss", "conv", "conv_transpose", "pooling",
                  "normalization", "interpolate", "fold", "lookup"}


@dataclasses.dataclass
class Case:
    """``mc_fn`` and ``torch_fn`` take ``arity`` tensors; ``domain``
    'positive' keeps inputs in (0.5, 2.5) (log, sqrt, a pow's base);
    ``grad`` False for ops with no gradient (comparisons, casts to int);
    ``gradcheck`` False where a float32 step inside defeats finite
    differences; ``rtol`` in float64 where torch itself is less exact;
    ``shapes`` replaces the sweep's unary shapes where an op is defined
    only for some ranks."""
    mc_fn: Callable
    torch_fn: Callable
    arity: int = 1
    domain: str = "real"
    grad: bool = True
    gradcheck: bool = True
    rtol: float = None
    shapes: list = None


def unary(mc_fn, torch_fn, **kw):
    return Case(mc_fn, torch_fn, 1, **kw)


def binary(mc_fn, torch_fn, **kw):
    return Case(mc_fn, torch_fn, 2, **kw)


TABLE = {
    # elementwise.py
    "add": [binary(F.add, torch.add), binary(lambda a, b: F.add(a, b, alpha=2), lambda a, b: torch.add(a, b, alpha=2))],
    "sub": [binary(F.sub, torch.sub), binary(lambda a, b: F.sub(a, b, alpha=3), lambda a, b: torch.sub(a, b, alpha=3))],
    "mul": [binary(F.mul, torch.mul), unary(lambda a: F.mul(a, 2.5), lambda a: torch.mul(a, 2.5))],
    "div": [binary(F.div, torch.div), unary(lambda a: F.div(a, 4.0), lambda a: torch.div(a, 4.0))],
    "neg": [unary(F.neg, torch.neg)],
    "pow": [binary(F.pow, torch.pow, domain="positive"),
            unary(lambda a: F.pow(a, 3), lambda a: torch.pow(a, 3))],
    "exp": [unary(F.exp, torch.exp)],
    "log": [unary(F.log, torch.log, domain="positive")],
    "sqrt": [unary(F.sqrt, torch.sqrt, domain="positive")],
    "abs": [unary(F.abs, torch.abs)],
    "clamp": [unary(lambda a: F.clamp(a, -0.5, 0.8), lambda a: torch.clamp(a, -0.5, 0.8)),
              unary(lambda a: F.clamp(a, max=0.3), lambda a: torch.clamp(a, max=0.3)),
              Case(F.clamp, torch.clamp, 3),
              binary(lambda a, lo: F.clamp(a, min=lo), lambda a, lo: torch.clamp(a, min=lo))],
    "clip": [unary(lambda a: F.clip(a, -0.5, 0.8), lambda a: torch.clip(a, -0.5, 0.8)),
             Case(F.clip, torch.clip, 3)],
    "maximum": [binary(F.maximum, torch.maximum)],
    "minimum": [binary(F.minimum, torch.minimum)],
    # The condition is the first input's sign (it gets no gradient).
    "where": [Case(lambda c, a, b: F.where(c > 0, a, b), lambda c, a, b: torch.where(c > 0, a, b), 3)],
    # There and back, so the upstream gradient has the input's dtype in both frameworks.
    "cast": [unary(lambda a: F.cast(F.cast(a, numpy.float32), a.dtype), lambda a: a.to(torch.float32).to(a.dtype),
                   gradcheck=False),
             unary(lambda a: F.cast(a, numpy.int64), lambda a: a.to(torch.int64), grad=False)],
    "clone": [unary(F.clone, torch.clone)],
    "compare": [binary(lambda a, b: F.compare("greater", a, b), torch.gt, grad=False),
                binary(lambda a, b: F.compare("less_equal", a, b), torch.le, grad=False)],
    "logical_not": [unary(lambda a: F.logical_not(a > 0), lambda a: torch.logical_not(a > 0), grad=False)],
    "eq": [binary(F.eq, torch.eq, grad=False), unary(lambda a: F.eq(a, a), lambda a: torch.eq(a, a), grad=False)],
    "isfinite": [unary(F.isfinite, torch.isfinite, grad=False)],
    # activation.py
    "relu": [unary(F.relu, torch.relu)],
    "relu6": [unary(lambda a: F.relu6(a * 4), lambda a: TF.relu6(a * 4))],
    "hardtanh": [unary(F.hardtanh, TF.hardtanh),
                 unary(lambda a: F.hardtanh(a, -0.5, 0.8), lambda a: TF.hardtanh(a, -0.5, 0.8))],
    "leaky_relu": [unary(lambda a: F.leaky_relu(a, 0.2), lambda a: TF.leaky_relu(a, 0.2))],
    "elu": [unary(lambda a: F.elu(a, 0.7), lambda a: TF.elu(a, 0.7))],
    "sigmoid": [unary(F.sigmoid, torch.sigmoid)],
    "tanh": [unary(F.tanh, torch.tanh)],
    # torch's float64 backward multiplies by a float32 1/6 (tests/ops/test_activation.py).
    "hardsigmoid": [unary(lambda a: F.hardsigmoid(a * 4), lambda a: TF.hardsigmoid(a * 4), rtol=1e-7)],
    "hardswish": [unary(lambda a: F.hardswish(a * 4), lambda a: TF.hardswish(a * 4))],
    "silu": [unary(F.silu, TF.silu)],
    "gelu": [unary(F.gelu, TF.gelu),
             unary(lambda a: F.gelu(a, approximate="tanh"), lambda a: TF.gelu(a, approximate="tanh"))],
    "softmax": [unary(lambda a: F.softmax(a, -1), lambda a: torch.softmax(a, -1)),
                unary(lambda a: F.softmax(a, 0), lambda a: torch.softmax(a, 0))],
    "log_softmax": [unary(lambda a: F.log_softmax(a, -1), lambda a: torch.log_softmax(a, -1)),
                    unary(lambda a: F.log_softmax(a, 0), lambda a: torch.log_softmax(a, 0))],
    # parametric_activation.py (prelu): one slope for every element, the form a 0-d input allows.
    "prelu": [unary(lambda a: F.prelu(a, mc.tensor(numpy.array([0.25], a.dtype))),
                    lambda a: TF.prelu(a, torch.tensor([0.25], dtype=a.dtype)))],
    # dropout.py: elementwise, random in training; in eval the identity.
    "dropout": [unary(lambda a: F.dropout(a, 0.5, training=False), lambda a: TF.dropout(a, 0.5, training=False)),
                unary(lambda a: F.dropout(a, 0.0), lambda a: TF.dropout(a, 0.0))],
    # dropout2d: (N, C, H, W) or (C, H, W) only; torch takes other ranks with a
    # deprecation warning, minicnn refuses them (test_dropout2d_refuses_other_ranks).
    "dropout2d": [unary(lambda a: F.dropout2d(a, 0.5, training=False), lambda a: TF.dropout2d(a, 0.5, training=False),
                        shapes=[(0, 3, 2, 2), (2, 0, 3, 3), (2, 3, 0, 2), (1, 1, 2, 0)])],
}

#: The edge shapes: 0-d, and empty with the zero first, in the middle, alone.
UNARY_SHAPES = [(), (0,), (2, 0, 3), (0, 4)]
#: Broadcasting pairs (and triples) with a 0-d or an empty operand.
NARY_SHAPES = {
    2: [((), ()), ((), (3,)), ((3,), ()), ((0,), ()), ((), (0,)), ((2, 0, 3), (1, 3)), ((0, 3), (2, 1, 1)),
        ((0,), (1,))],
    3: [((), (), ()), ((), (3,), ()), ((0, 3), (), (3,)), ((2, 0, 1), (1, 3), ())],
}


def _exported_elementwise():
    """(name, module) for every export of minicnn.functional outside OTHER_FAMILIES."""
    out = []
    for name in F.__all__:
        value = getattr(F, name)
        if not callable(value):
            continue
        module = getattr(value, "__module__", "").rsplit(".", 1)[-1]
        if module not in OTHER_FAMILIES:
            out.append((name, module))
    return out


def test_every_elementwise_export_is_in_the_table():
    missing = [f"{name} (from {module}.py)" for name, module in _exported_elementwise() if name not in TABLE]
    assert not missing, (f"exported elementwise ops / activations with no entry in the 0-d / empty sweep: "
                         f"{missing}; add them to TABLE in {__file__}")


def test_the_table_holds_only_exported_names():
    exported = {name for name, _ in _exported_elementwise()}
    assert set(TABLE) <= exported, f"TABLE names no exported op: {sorted(set(TABLE) - exported)}"


def _inputs(case, shapes, seed):
    rng = numpy.random.default_rng(seed)
    arrays = []
    for shape in shapes:
        if case.domain == "positive":
            arrays.append(rng.uniform(0.5, 2.5, shape))
        else:
            # Away from 0 so no input sits on a kink (relu, abs, clamp's bounds are not
            # hit exactly by continuous values).
            arrays.append(rng.standard_normal(shape))
    return arrays


def _sweep():
    for name in sorted(TABLE):
        for k, case in enumerate(TABLE[name]):
            if case.arity == 1:
                shapes = [(s,) for s in (UNARY_SHAPES if case.shapes is None else case.shapes)]
            else:
                shapes = NARY_SHAPES[case.arity]
            for shapes_ in shapes:
                yield pytest.param(name, k, shapes_, id=f"{name}-{k}-{'x'.join(map(str, shapes_))}")


def _torch_refuses(case, arrays):
    try:
        case.torch_fn(*[torch.from_numpy(a) for a in arrays])
        return None
    except (RuntimeError, ValueError, IndexError, TypeError) as e:
        return e


@pytest.mark.parametrize("name,k,shapes", list(_sweep()))
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_matches_torch(name, k, shapes, dtype):
    case = TABLE[name][k]
    for seed in (0, 1):                       # two draws: both signs for a 0-d input, most of the time
        arrays = [a.astype(dtype) for a in _inputs(case, shapes, seed)]
        refused = _torch_refuses(case, arrays)
        if refused is not None:
            with pytest.raises((ValueError, TypeError)):
                case.mc_fn(*[mc.from_numpy(a) for a in arrays])
            return
        rtol = case.rtol if dtype == numpy.float64 else None
        check_parity(case.mc_fn, case.torch_fn, arrays, dtype=dtype, grad=case.grad, seed=seed, rtol=rtol)


@pytest.mark.parametrize("name,k,shapes", [p for p in _sweep() if () in p.values[2]])
def test_0d_noncontiguous_and_gradcheck(name, k, shapes):
    """The 0-d cases also with non-contiguous operands (where the other
    operand is not 0-d) and through a float64 gradcheck."""
    case = TABLE[name][k]
    arrays = _inputs(case, shapes, 2)
    if _torch_refuses(case, arrays) is not None:
        pytest.skip("torch refuses this input (test_matches_torch checks minicnn refuses it too)")
    check_parity(case.mc_fn, case.torch_fn, arrays, grad=case.grad, noncontiguous_inputs=True, rtol=case.rtol)
    if case.grad and case.gradcheck:
        assert mc.gradcheck(case.mc_fn, gradcheck_inputs(arrays))


@pytest.mark.parametrize("name,k,shapes", [p for p in _sweep() if TABLE[p.values[0]][p.values[1]].arity == 1])
def test_shape_without_a_graph(name, k, shapes):
    """Inside no_grad the activations take other paths (ReLU writes no
    mask; the clamps run in one parallel pass): the same shapes there."""
    case = TABLE[name][k]
    arrays = _inputs(case, shapes, 3)
    if _torch_refuses(case, arrays) is not None:
        pytest.skip("torch refuses this input")
    expected = case.torch_fn(torch.from_numpy(arrays[0]))
    with mc.no_grad():
        out = case.mc_fn(mc.from_numpy(arrays[0]))
    assert out.shape == tuple(expected.shape) and out.dtype == expected.detach().numpy().dtype
    numpy.testing.assert_allclose(out.numpy_copy(), expected.detach().numpy(), rtol=1e-12, atol=1e-15)


def test_dropout2d_refuses_other_ranks():
    for shape in [(), (0,), (2, 3)]:
        with pytest.raises(ValueError, match=r"dropout2d: expected 3-D or 4-D input, got shape"):
            F.dropout2d(mc.zeros(shape), 0.5, training=False)


# -- the other 0-d / empty cases of the issue, outside the elementwise sweep ---------
def test_max_min_with_a_dim_on_0d_give_int64_indices():
    x = numpy.array(0.7)
    for keepdim, dim in itertools.product((False, True), (0, -1)):
        for mc_fn, torch_fn in ((mc.max, torch.max), (mc.min, torch.min)):
            outs = check_parity(lambda t: tuple(mc_fn(t, dim, keepdim)), lambda t: tuple(torch_fn(t, dim, keepdim)),
                                [x])
            assert outs[1].dtype == numpy.int64


@pytest.mark.parametrize("fn", ["argmax", "argmin"])
def test_argmax_argmin_on_0d_keep_shape_0d(fn):
    t = torch.tensor(0.7)
    x = mc.tensor(numpy.array(0.7))
    for dim, keepdim in itertools.product((None, 0, -1), (False, True)):
        expected = getattr(torch, fn)(t, dim, keepdim)
        got = getattr(mc, fn)(x, dim, keepdim)
        assert got.shape == tuple(expected.shape) and got.dtype == numpy.int64 and int(got.item()) == 0


def test_max_with_a_dim_out_of_range_on_0d_raises():
    with pytest.raises(ValueError, match="dim=1 is out of range"):
        mc.max(mc.tensor(numpy.array(0.7)), 1)


@pytest.mark.parametrize("dims", [(0, 0), (0, -1), (-1, -1)])
def test_transpose_of_0d(dims):
    out = check_parity(lambda t: t.transpose(*dims), lambda t: t.transpose(*dims), [numpy.array(0.7)])
    assert out[0].shape == ()


def test_transpose_of_0d_out_of_range_raises():
    with pytest.raises(ValueError, match="dim1=1 is out of range"):
        mc.tensor(numpy.array(0.7)).transpose(0, 1)


@pytest.mark.parametrize("shape", [(0, 3), (2, 0)])
def test_linear_with_an_empty_side(shape):
    """in_features = 0: torch returns the bias broadcast (a sum of no
    terms); a batch of 0 rows: an empty result, with zero weight and bias
    gradients."""
    rng = numpy.random.default_rng(4)
    rows, features = shape
    x, w, b = rng.standard_normal((rows, features)), rng.standard_normal((5, features)), rng.standard_normal(5)
    check_parity(F.linear, TF.linear, [x, w, b])
    check_parity(F.linear, TF.linear, [x, w])


@pytest.mark.parametrize("shape", [(0, 4, 2, 2), (0, 4)])
def test_group_norm_of_an_empty_batch(shape):
    rng = numpy.random.default_rng(5)
    x, w, b = rng.standard_normal(shape), rng.standard_normal(4), rng.standard_normal(4)
    check_parity(lambda x, w, b: F.group_norm(x, 2, w, b), lambda x, w, b: TF.group_norm(x, 2, w, b), [x, w, b])


@pytest.mark.parametrize("shape", [(3, 4, 0), (0, 4, 0), (2, 4, 3, 0)])
def test_group_norm_without_spatial_positions_raises_as_torch(shape):
    with pytest.raises(RuntimeError, match="HxW"):
        TF.group_norm(torch.zeros(shape), 2)
    with pytest.raises(ValueError, match=r"group_norm: input of shape .* has no spatial positions"):
        F.group_norm(mc.zeros(shape), 2)


@pytest.mark.parametrize("shape,normalized", [((0, 3), (3,)), ((2, 0), (0,)), ((0, 2, 3), (2, 3))])
def test_layer_norm_of_an_empty_input(shape, normalized):
    rng = numpy.random.default_rng(8)
    x, w, b = rng.standard_normal(shape), rng.standard_normal(normalized), rng.standard_normal(normalized)
    check_parity(lambda x, w, b: F.layer_norm(x, normalized, w, b), lambda x, w, b: TF.layer_norm(x, normalized, w, b),
                 [x, w, b])


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(0, 3, 2, 2), (0, 3), (2, 3, 0)])
def test_batch_norm_of_an_empty_batch(training, shape):
    """torch returns an empty result in both modes and leaves the running
    statistics as they were; nn.BatchNorm2d still counts the batch."""
    rng = numpy.random.default_rng(6)
    x, w, b = rng.standard_normal(shape), rng.standard_normal(3), rng.standard_normal(3)
    mean, var = rng.standard_normal(3), rng.uniform(0.5, 2.0, 3)
    stats_mc = [mc.tensor(mean.copy()), mc.tensor(var.copy())]
    stats_torch = [torch.tensor(mean.copy()), torch.tensor(var.copy())]
    check_parity(lambda x, w, b: F.batch_norm(x, *stats_mc, w, b, training=training),
                 lambda x, w, b: TF.batch_norm(x, *stats_torch, w, b, training=training), [x, w, b])
    for m, t in zip(stats_mc, stats_torch):
        numpy.testing.assert_array_equal(m.numpy(), t.numpy())
        numpy.testing.assert_array_equal(m.numpy(), mean if m is stats_mc[0] else var)


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm2d_module_on_an_empty_batch(training):
    ours, theirs = mc.nn.BatchNorm2d(3), torch.nn.BatchNorm2d(3)
    ours.train(training)
    theirs.train(training)
    x = numpy.zeros((0, 3, 4, 4), numpy.float32)
    y_mc, y_t = ours(mc.tensor(x, requires_grad=True)), theirs(torch.tensor(x, requires_grad=True))
    assert y_mc.shape == tuple(y_t.shape)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        numpy.testing.assert_array_equal(getattr(ours, name).numpy(), getattr(theirs, name).numpy())


def test_softmax_over_an_empty_dim():
    check_parity(lambda x: F.softmax(x, 1), lambda x: torch.softmax(x, 1), [numpy.zeros((2, 0))])
    check_parity(lambda x: F.log_softmax(x, 1), lambda x: torch.log_softmax(x, 1), [numpy.zeros((2, 0, 3))])


@pytest.mark.parametrize("fn", ["sigmoid", "silu", "relu"])
def test_fused_kernels_keep_0d(fn):
    """The Numba kernels (``kernels/cpu/activation.py``) themselves: a 0-d
    array in, a 0-d array out (ascontiguousarray would give shape (1,))."""
    from minicnn.kernels.cpu import activation
    out = getattr(activation, fn)(numpy.array(0.7))
    out = out[0] if isinstance(out, tuple) else out
    assert isinstance(out, numpy.ndarray) and out.shape == ()
    gx = activation.masked_gradient(numpy.array(2.0), numpy.array(True))
    assert gx.shape == () and gx == 2.0


# -- one-element tuples for conv and pooling arguments -------------------------------
@pytest.mark.parametrize("mc_fn,torch_fn,w_shape", [
    (lambda x, w: F.conv2d(x, w, stride=(2,), padding=(1,), dilation=(1,)),
     lambda x, w: TF.conv2d(x, w, stride=(2,), padding=(1,), dilation=(1,)), (3, 2, 3, 3)),
    (lambda x, w: F.conv_transpose2d(x, w, stride=(2,), padding=(1,), output_padding=(1,), dilation=(1,)),
     lambda x, w: TF.conv_transpose2d(x, w, stride=(2,), padding=(1,), output_padding=(1,), dilation=(1,)),
     (2, 3, 3, 3)),
    (lambda x: F.avg_pool2d(x, (2,), stride=(1,), padding=(1,)),
     lambda x: TF.avg_pool2d(x, (2,), stride=(1,), padding=(1,)), None),
    (lambda x: F.max_pool2d(x, (3,), stride=(2,), padding=(1,), dilation=(1,)),
     lambda x: TF.max_pool2d(x, (3,), stride=(2,), padding=(1,), dilation=(1,)), None),
])
def test_one_element_tuples_stand_for_both_dims(mc_fn, torch_fn, w_shape):
    rng = numpy.random.default_rng(7)
    inputs = [rng.standard_normal((1, 2, 6, 6))] + ([] if w_shape is None else [rng.standard_normal(w_shape)])
    check_parity(mc_fn, torch_fn, inputs)


def test_three_element_tuples_are_still_refused():
    with pytest.raises(ValueError, match=r"padding must be an int or a pair of ints, got \(1, 1, 1\)"):
        F.avg_pool2d(mc.zeros((1, 1, 4, 4)), 2, padding=(1, 1, 1))


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_binary_cross_entropy_with_logits_of_0d(reduction):
    """Its backward runs sigmoid's fused kernel, which made a 0-d gradient 1-d."""
    logits, target = numpy.array(0.7), numpy.array(1.0)
    check_parity(lambda x, t: F.binary_cross_entropy_with_logits(x, t, reduction=reduction),
                 lambda x, t: TF.binary_cross_entropy_with_logits(x, t, reduction=reduction), [logits, target])
