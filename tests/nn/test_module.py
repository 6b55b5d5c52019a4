"""Module machinery against torch: registration by attribute, the tree
walks, state_dict keys and loading (from torch), strict / non-strict
errors, train / eval, zero_grad, apply, hooks, to(dtype), copying, repr,
Parameter, and the containers."""
import collections
import copy
import pickle

import numpy
import pytest
import torch

import minicnn as mc
from minicnn import nn


def make_net(lib):
    """The same small CNN written against ``lib`` (torch or minicnn)."""

    class Net(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.features = lib.nn.Sequential(
                lib.nn.Conv2d(3, 4, 3, padding=1), lib.nn.BatchNorm2d(4), lib.nn.ReLU(), lib.nn.MaxPool2d(2))
            self.blocks = lib.nn.ModuleList([lib.nn.Linear(64, 16), lib.nn.Linear(16, 16)])
            self.heads = lib.nn.ModuleDict({"cls": lib.nn.Linear(16, 3), "aux": lib.nn.Linear(16, 1)})
            self.dropout = lib.nn.Dropout(0.5)
            self.scale = lib.nn.Parameter(lib.ones(3))
            self.register_buffer("offset", lib.zeros(3) + 0.5)
            self.register_buffer("scratch", lib.zeros(2), persistent=False)

        def forward(self, x):
            x = self.features(x).flatten(1)
            for block in self.blocks:
                x = block(x).relu()
            x = self.dropout(x)
            return self.heads["cls"](x) * self.scale + self.offset + self.heads["aux"](x)

    return Net()


def names(pairs):
    return [name for name, _ in pairs]


@pytest.fixture
def nets():
    """(minicnn net, torch net) in float64, the torch weights loaded into minicnn."""
    torch.manual_seed(0)
    theirs = make_net(torch).double()
    mine = make_net(mc).double()
    mine.load_state_dict(theirs.state_dict())
    return mine, theirs


# -- registration and walks ------------------------------------------------------
def test_tree_walks_match_torch(nets):
    mine, theirs = nets
    assert names(mine.named_parameters()) == names(theirs.named_parameters())
    assert names(mine.named_buffers()) == names(theirs.named_buffers())
    assert names(mine.named_modules()) == names(theirs.named_modules())
    assert names(mine.named_children()) == names(theirs.named_children())
    assert [type(m).__name__ for m in mine.modules()] == [type(m).__name__ for m in theirs.modules()]
    assert [type(m).__name__ for m in mine.children()] == [type(m).__name__ for m in theirs.children()]
    assert len(list(mine.parameters())) == len(list(theirs.parameters()))
    assert len(list(mine.buffers())) == len(list(theirs.buffers()))
    assert names(mine.named_parameters(recurse=False)) == ["scale"]
    assert names(mine.named_parameters(prefix="net")) == names(theirs.named_parameters(prefix="net"))


def test_state_dict_keys_and_repr_match_torch(nets):
    mine, theirs = nets
    assert list(mine.state_dict()) == list(theirs.state_dict())
    assert "scratch" not in mine.state_dict()  # non-persistent buffer
    assert repr(mine) == repr(theirs)
    for key, value in mine.state_dict().items():
        assert isinstance(value, mc.Tensor) and not value.requires_grad
        assert value.dtype == theirs.state_dict()[key].numpy().dtype


def test_state_dict_values_share_memory_and_keep_vars():
    layer = nn.Linear(2, 2)
    state = layer.state_dict()
    assert state["weight"].data is layer.weight.data
    assert layer.state_dict(keep_vars=True)["weight"] is layer.weight
    assert list(layer.state_dict(prefix="fc.")) == ["fc.weight", "fc.bias"]


def test_shared_parameters_are_listed_once():
    a = nn.Linear(3, 3)
    model = nn.Sequential(a, nn.ReLU(), a)
    assert names(model.named_parameters()) == ["0.weight", "0.bias"]
    assert names(model.named_modules()) == ["", "0", "1"]
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]  # as torch


def test_loading_a_torch_state_dict_gives_the_same_outputs(nets):
    mine, theirs = nets
    x = numpy.random.default_rng(0).standard_normal((4, 3, 8, 8))
    mine.eval()
    theirs.eval()
    expected = theirs(torch.tensor(x)).detach().numpy()
    numpy.testing.assert_allclose(mine(mc.tensor(x)).detach().numpy(), expected, rtol=1e-10, atol=1e-12)
    # Training mode: dropout differs between frameworks, so switch it off in both.
    mine.train()
    theirs.train()
    mine.dropout.p = theirs.dropout.p = 0.0
    expected = theirs(torch.tensor(x)).detach().numpy()
    numpy.testing.assert_allclose(mine(mc.tensor(x)).detach().numpy(), expected, rtol=1e-10, atol=1e-12)
    for key, value in theirs.state_dict().items():  # running statistics updated alike
        numpy.testing.assert_allclose(mine.state_dict()[key].numpy(), value.numpy(), rtol=1e-10)


def test_load_state_dict_accepts_arrays_and_array_likes():
    class ArrayLike:
        def __init__(self, array):
            self.array = array

        def __array__(self, dtype=None, copy=None):
            return self.array

    layer = nn.Linear(2, 3)
    weight = numpy.arange(6.0).reshape(3, 2)
    bias = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)  # a torch parameter, not yet detached
    assert repr(layer.load_state_dict({"weight": ArrayLike(weight), "bias": bias})) == "<All keys matched successfully>"
    numpy.testing.assert_array_equal(layer.weight.numpy_copy(), weight)
    assert layer.weight.dtype == numpy.float32  # cast to the target's dtype
    layer.load_state_dict({"weight": mc.tensor(weight * 2), "bias": [0, 0, 0]})
    numpy.testing.assert_array_equal(layer.weight.numpy_copy(), weight * 2)


def test_load_state_dict_copies_in_place():
    layer = nn.Linear(2, 2)
    weight = layer.weight
    source = {"weight": numpy.ones((2, 2)), "bias": numpy.zeros(2)}
    layer.load_state_dict(source)
    assert layer.weight is weight  # an optimizer holding it sees the new values
    source["weight"][...] = 5  # and the module does not alias the source
    assert (layer.weight.numpy_copy() == 1).all()


def test_load_state_dict_assign_takes_the_values_arrays_like_torch():
    """assign=True: the module holds the state dict's arrays (a torch
    tensor's memory too), with their dtype; the Parameter objects stay."""
    source = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3)).double()
    mine = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    theirs = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    weight = mine[0].weight
    mine.load_state_dict(source.state_dict(), assign=True)
    theirs.load_state_dict(source.state_dict(), assign=True)
    assert mine[0].weight is weight and mine[0].weight.requires_grad
    for key, value in theirs.state_dict().items():
        assert mine.state_dict()[key].dtype == value.numpy().dtype, key      # float64, int64: the source's
    with torch.no_grad():
        source[0].weight.add_(1.0)                   # the memory is shared, not copied
    numpy.testing.assert_array_equal(mine[0].weight.numpy_copy(), source[0].weight.detach().numpy())
    with pytest.raises(TypeError, match="weight is floating"):
        nn.Linear(2, 3).load_state_dict({"weight": numpy.ones((3, 2), dtype=numpy.int64), "bias": numpy.zeros(3)},
                                        assign=True)
    lazy = nn.LazyLinear(3)
    lazy.load_state_dict({"weight": numpy.ones((3, 2)), "bias": numpy.zeros(3)}, assign=True)
    assert lazy.weight.shape == (3, 2) and lazy.weight.dtype == numpy.float64


def test_load_state_dict_errors_list_keys_and_shapes():
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    good = model.state_dict()
    bad = {k: v for k, v in good.items() if k != "1.running_var"}
    bad["0.weight"] = numpy.zeros((4, 2))
    bad["extra.weight"] = numpy.zeros(1)
    before = model[0].weight.numpy_copy()
    with pytest.raises(ValueError) as info:
        model.load_state_dict(bad)
    message = str(info.value)
    assert message.startswith("Error(s) in loading state_dict for Sequential:")
    assert 'Missing key(s) in state_dict: "1.running_var".' in message
    assert 'Unexpected key(s) in state_dict: "extra.weight".' in message
    assert ("size mismatch for 0.weight: copying a param with shape (4, 2) from checkpoint, "
            "the shape in current model is (3, 2).") in message
    numpy.testing.assert_array_equal(model[0].weight.numpy_copy(), before)  # nothing was copied
    with pytest.raises(RuntimeError):  # what torch raises, for code written for torch
        model.load_state_dict(bad)


def test_load_state_dict_non_strict_returns_missing_and_unexpected_like_torch():
    state = {"0.weight": numpy.ones((3, 2)), "2.weight": numpy.ones(1)}
    mine = nn.Sequential(nn.Linear(2, 3), nn.ReLU()).load_state_dict(state, strict=False)
    theirs = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU()).load_state_dict(
        {k: torch.tensor(v) for k, v in state.items()}, strict=False)
    assert mine.missing_keys == theirs.missing_keys == ["0.bias"]
    assert mine.unexpected_keys == theirs.unexpected_keys == ["2.weight"]
    missing, unexpected = mine
    assert (missing, unexpected) == (["0.bias"], ["2.weight"])
    assert repr(mine) == repr(theirs)
    with pytest.raises(ValueError, match="size mismatch for weight"):
        nn.Linear(2, 3).load_state_dict({"weight": numpy.ones((2, 2))}, strict=False)


def test_load_state_dict_bad_values():
    with pytest.raises(TypeError, match="expected a mapping"):
        nn.Linear(2, 2).load_state_dict([("weight", numpy.ones((2, 2)))])
    with pytest.raises(TypeError, match="the value for 'weight' is not numeric"):
        nn.Linear(2, 2).load_state_dict({"weight": "heavy", "bias": numpy.ones(2)})


def test_lazy_linear():
    layer = nn.LazyLinear(4)
    assert isinstance(layer.weight, nn.UninitializedParameter)
    assert repr(layer) == repr(torch.nn.LazyLinear(4))
    weight = layer.weight
    y = layer(mc.randn(2, 7))
    assert y.shape == (2, 4) and type(layer) is nn.Linear and layer.in_features == 7
    assert layer.weight is weight and type(weight) is nn.Parameter  # materialized in place
    assert repr(layer) == "Linear(in_features=7, out_features=4, bias=True)"
    # Loading a torch state_dict fixes the shapes too.
    theirs = torch.nn.Linear(5, 4)
    lazy = nn.LazyLinear(4)
    lazy.load_state_dict(theirs.state_dict())
    x = numpy.random.default_rng(0).standard_normal((3, 5)).astype(numpy.float32)
    numpy.testing.assert_allclose(lazy(mc.tensor(x)).detach().numpy(),
                                  theirs(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-6)
    assert lazy.in_features == 5


# -- modes, gradients, apply, hooks ------------------------------------------------
def test_train_eval_reach_every_module_and_change_dropout_and_batchnorm():
    model = nn.Sequential(nn.BatchNorm1d(3), nn.Dropout(0.5))
    assert all(m.training for m in model.modules())
    assert model.eval() is model and not any(m.training for m in model.modules())
    x = mc.randn(200, 3) * 3 + 1
    numpy.testing.assert_allclose(model(x).detach().numpy(), ((x - 0) / numpy.sqrt(1 + 1e-5)).numpy(), rtol=1e-6)
    model.train()
    y = model(x).detach().numpy()
    assert 0.3 < (y == 0).mean() < 0.7  # dropout active
    kept = y[y != 0]
    assert abs(kept.mean()) < 0.3 and abs(kept.std() - 2 * 1.0) < 0.4  # normalized, then scaled by 2
    with pytest.raises(TypeError, match="mode must be a bool"):
        model.train("yes")


def test_dropout_statistics():
    mc.manual_seed(0)
    x = mc.ones(100, 100)
    y = nn.Dropout(0.3)(x).numpy()
    assert abs((y == 0).mean() - 0.3) < 0.02
    numpy.testing.assert_allclose(y[y != 0], 1 / 0.7, rtol=1e-6)
    y = nn.Dropout2d(0.5)(mc.ones(50, 40, 3, 3)).numpy()
    per_channel = y.reshape(50, 40, 9)
    assert ((per_channel == 0).all(axis=2) | (per_channel == 2).all(axis=2)).all()  # whole channels
    assert abs((per_channel[:, :, 0] == 0).mean() - 0.5) < 0.05
    assert (nn.Dropout(0.3).eval()(x).numpy() == 1).all()


def test_zero_grad():
    layer = nn.Linear(3, 2)
    layer(mc.randn(4, 3)).sum().backward()
    assert layer.weight.grad is not None
    layer.zero_grad(set_to_none=False)
    assert (layer.weight.grad.numpy() == 0).all()
    layer.zero_grad()
    assert layer.weight.grad is None and layer.bias.grad is None


def test_requires_grad_freezes_parameters():
    layer = nn.Linear(3, 2).requires_grad_(False)
    assert not any(p.requires_grad for p in layer.parameters())


def test_apply_visits_children_first_like_torch():
    seen_mine, seen_theirs = [], []
    make_net(mc).apply(lambda m: seen_mine.append(type(m).__name__))
    make_net(torch).apply(lambda m: seen_theirs.append(type(m).__name__))
    assert seen_mine == seen_theirs

    def init_linear(m):
        if isinstance(m, nn.Linear):
            nn.init.constant_(m.weight, 0.5)

    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2)))
    assert model.apply(init_linear) is model
    assert (model[1][0].weight.numpy_copy() == 0.5).all()


def test_forward_hooks():
    layer = nn.Linear(3, 2)
    calls = []
    handle = layer.register_forward_hook(lambda m, args, out: calls.append((m, args[0].shape, out.shape)))
    x = mc.randn(4, 3)
    layer(x)
    assert calls == [(layer, (4, 3), (4, 2))]
    handle.remove()
    layer(x)
    assert len(calls) == 1

    # A hook's return value replaces the output; prepend puts a hook first.
    order = []
    layer.register_forward_hook(lambda m, a, out: order.append("second") or out * 0)
    layer.register_forward_hook(lambda m, a, out: order.append("first"), prepend=True)
    assert (layer(x).numpy_copy() == 0).all() and order == ["first", "second"]

    # Pre-hooks may replace the input; with_kwargs hooks see keyword arguments.
    conv = nn.ConvTranspose2d(2, 2, 3, stride=2)
    conv.register_forward_pre_hook(lambda m, args: args[0] * 0)
    seen = []
    conv.register_forward_hook(lambda m, args, kwargs, out: seen.append(kwargs), with_kwargs=True)
    out = conv(mc.randn(1, 2, 3, 3), output_size=(8, 8))
    assert out.shape == (1, 2, 8, 8) and seen == [{"output_size": (8, 8)}]
    numpy.testing.assert_allclose(out.numpy_copy(), numpy.broadcast_to(conv.bias.numpy_copy()[:, None, None],
                                                                       (1, 2, 8, 8)))
    with layer.register_forward_hook(lambda m, a, out: out + 1):  # removed when the block ends
        pass
    assert len(layer._forward_hooks) == 2


def test_hook_collects_activations_of_a_model():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    shapes = {}
    for name, module in model.named_children():
        module.register_forward_hook(lambda m, a, out, name=name: shapes.__setitem__(name, out.shape))
    model(mc.randn(5, 1, 4, 4))
    assert shapes == {"0": (5, 2, 2, 2), "1": (5, 2, 2, 2), "2": (5, 8), "3": (5, 2)}


# -- dtype and device ------------------------------------------------------------
def test_to_dtype_converts_floating_parameters_and_buffers():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    weight = model[0].weight
    model(mc.randn(2, 1, 4, 4)).sum().backward()
    assert model.double() is model
    assert all(p.dtype == numpy.float64 for p in model.parameters())
    assert model[0].weight is weight  # same Parameter object, new array
    assert weight.grad.dtype == numpy.float64
    assert model[1].running_mean.dtype == numpy.float64
    assert model[1].num_batches_tracked.dtype == numpy.int64  # integer buffers keep their dtype
    assert model(mc.randn(2, 1, 4, 4, dtype=mc.float64)).dtype == numpy.float64
    model.to(mc.float32)
    assert all(t.dtype == numpy.float32 for t in model.state_dict().values() if t.dtype.kind == "f")
    model.to("float64").to("cpu").to(device="cpu", dtype=mc.float32).float()
    assert model[0].weight.dtype == numpy.float32 and model[0].weight.device == mc.device("cpu")
    model.to(mc.zeros(1, dtype=mc.float64))  # a tensor's dtype and device
    assert model[0].weight.dtype == numpy.float64
    with pytest.raises(TypeError, match="only accepts floating point dtypes, got int64"):
        model.to(mc.int64)


def test_factory_dtype_argument():
    assert nn.Conv2d(1, 2, 3, dtype=mc.float64).weight.dtype == numpy.float64
    assert nn.BatchNorm2d(2, dtype="float64").running_var.dtype == numpy.float64
    assert nn.LazyLinear(3, dtype=mc.float64)(mc.randn(2, 4, dtype=mc.float64)).dtype == numpy.float64


# -- copying ---------------------------------------------------------------------
def test_deepcopy_and_pickle_round_trip():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.LazyLinear(3))
    model(mc.randn(2, 1, 5, 5))
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert repr(clone) == repr(model)
        assert type(clone[0].weight) is nn.Parameter and clone[0].weight.requires_grad
        for key, value in model.state_dict().items():
            numpy.testing.assert_array_equal(clone.state_dict()[key].numpy(), value.numpy())
        clone[0].weight.data[...] = 0
        assert model[0].weight.numpy_copy().any()  # independent copies
    lazy = pickle.loads(pickle.dumps(nn.LazyLinear(2)))
    assert isinstance(lazy.weight, nn.UninitializedParameter) and lazy(mc.randn(1, 3)).shape == (1, 2)


# -- attribute rules -------------------------------------------------------------
def test_attribute_assignment_rules():
    m = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="cannot assign 'Tensor' as parameter 'weight'"):
        m.weight = mc.zeros(2, 2)
    m.bias = None
    assert m.bias is None and names(m.named_parameters()) == ["weight"]
    m.bias = nn.Parameter(mc.zeros(2))
    assert names(m.named_parameters()) == ["weight", "bias"]
    m.extra = nn.Linear(1, 1)
    assert "extra" in dict(m.named_children())
    del m.extra
    assert "extra" not in dict(m.named_children())
    with pytest.raises(AttributeError, match="'Linear' object has no attribute 'extra'"):
        m.extra  # noqa: B018
    bn = nn.BatchNorm1d(2)
    with pytest.raises(TypeError, match="cannot assign 'list' as buffer 'running_mean'"):
        bn.running_mean = [0, 0]
    bn.running_mean = mc.zeros(2)
    assert "running_mean" in bn.state_dict()
    with pytest.raises(ValueError, match="attribute 'weight' already exists"):
        bn.register_buffer("weight", mc.zeros(2))
    with pytest.raises(ValueError, match=r'buffer name can\'t contain "."'):
        bn.register_buffer("a.b", mc.zeros(2))
    with pytest.raises(TypeError, match="cannot assign 'ndarray' object to buffer 'stats'"):
        bn.register_buffer("stats", numpy.zeros(2))
    with pytest.raises(TypeError, match="int is not a Module subclass"):
        bn.add_module("child", 3)

    class Early(nn.Module):
        def __init__(self):
            self.weight = nn.Parameter(mc.zeros(1))

    with pytest.raises(AttributeError, match=r"before Module.__init__\(\) call"):
        Early()


def test_forward_must_be_defined():
    with pytest.raises(NotImplementedError, match='Module \\[Module\\] is missing the required "forward"'):
        nn.Module()(mc.zeros(1))


def test_get_submodule():
    model = make_net(mc)
    assert model.get_submodule("features.1") is model.features[1]
    assert model.get_submodule("") is model
    with pytest.raises(AttributeError, match="features has no submodule 'nine'"):
        model.get_submodule("features.nine")


# -- Parameter -------------------------------------------------------------------
def test_parameter():
    t = mc.tensor([1.0, 2.0])
    p = nn.Parameter(t)
    assert isinstance(p, mc.Tensor) and p.requires_grad and p.is_leaf and p.data is t.data
    assert repr(p) == repr(torch.nn.Parameter(torch.tensor([1.0, 2.0])))
    assert not nn.Parameter(t, requires_grad=False).requires_grad
    assert type(p * 2) is mc.Tensor
    with pytest.raises(TypeError, match="only floating-point tensors can require gradients"):
        nn.Parameter(mc.tensor([1, 2]))


# -- containers ------------------------------------------------------------------
def test_sequential_indexing_matches_torch():
    def build(lib):
        return lib.nn.Sequential(lib.nn.ReLU(), lib.nn.Tanh(), lib.nn.Sigmoid(), lib.nn.ELU())

    mine, theirs = build(mc), build(torch)
    assert len(mine) == 4 and type(mine[1]) is nn.Tanh and type(mine[-1]) is nn.ELU
    assert repr(mine[1:3]) == repr(theirs[1:3])  # a Sequential keeping the keys "1", "2"
    assert isinstance(mine[::2], nn.Sequential) and len(mine[::2]) == 2
    assert [type(m) for m in mine] == [nn.ReLU, nn.Tanh, nn.Sigmoid, nn.ELU]
    for seq in (mine, theirs):
        del seq[0]
        seq.insert(1, type(seq[0])())
        seq.append(type(seq[0])())
        seq[0] = type(seq[-1])()
        seq.pop(2)
        seq.extend([type(seq[1])()])
    assert repr(mine) == repr(theirs)
    with pytest.raises(IndexError, match="index 9 is out of range for Sequential of length"):
        mine[9]  # noqa: B018
    named = nn.Sequential(collections.OrderedDict([("conv", nn.Conv2d(1, 1, 1)), ("act", nn.ReLU())]))
    assert list(named.state_dict()) == ["conv.weight", "conv.bias"] and named.act is named[1]


def test_module_list_matches_torch():
    def build(lib):
        layers = lib.nn.ModuleList([lib.nn.Linear(2, 2) for _ in range(3)])
        layers.append(lib.nn.ReLU())
        layers.extend([lib.nn.Linear(2, 2), lib.nn.Linear(2, 2)])
        layers.insert(1, lib.nn.Tanh())
        layers += [lib.nn.ReLU()]
        del layers[0]
        return layers

    mine, theirs = build(mc), build(torch)
    assert repr(mine) == repr(theirs)  # the compact "(0-1): 2 x Linear(...)" form
    assert list(mine.state_dict()) == list(theirs.state_dict())
    assert len(mine) == len(theirs) and type(mine[-1]) is nn.ReLU
    assert repr(mine[1:3]) == repr(theirs[1:3])
    assert repr(nn.ModuleList()) == repr(torch.nn.ModuleList()) == "ModuleList()"
    with pytest.raises(TypeError, match="expects an iterable of Modules"):
        nn.ModuleList(nn.Linear(1, 1))


def test_module_dict_matches_torch():
    def build(lib):
        d = lib.nn.ModuleDict({"b": lib.nn.Linear(1, 2)})
        d["a"] = lib.nn.Linear(2, 1)
        d.update([("c", lib.nn.ReLU())])
        return d

    mine, theirs = build(mc), build(torch)
    assert repr(mine) == repr(theirs)
    assert list(mine.state_dict()) == list(theirs.state_dict())
    assert list(mine) == list(mine.keys()) == ["b", "a", "c"] and "a" in mine and len(mine) == 3
    assert type(mine.pop("c")) is nn.ReLU and "c" not in mine
    assert [type(v) for v in mine.values()] == [nn.Linear, nn.Linear]
    with pytest.raises(TypeError, match="mapping or \\(key, module\\) pairs"):
        mine.update([nn.ReLU()])


@pytest.mark.parametrize("build", [
    lambda nn: nn.Conv2d(3, 8, 3, stride=2, padding=(1, 2), dilation=2, groups=1, bias=False,
                         padding_mode="circular"),
    lambda nn: nn.Conv2d(4, 8, 3, groups=4, padding="valid"),
    lambda nn: nn.ConvTranspose2d(4, 8, 2, stride=2, output_padding=1, groups=2, dilation=3),
    lambda nn: nn.BatchNorm2d(16, eps=1e-3, momentum=None, affine=False, track_running_stats=False),
    lambda nn: nn.MaxPool2d((3, 2), stride=1, padding=1, dilation=2, ceil_mode=True),
    lambda nn: nn.AvgPool2d(3, stride=(2, 1), padding=1),
    lambda nn: nn.AdaptiveMaxPool2d((5, None)),
    lambda nn: nn.Upsample(size=4, mode="bilinear"),
    lambda nn: nn.Unflatten(-1, [2, 3]),
    lambda nn: nn.Dropout2d(0.25, inplace=True),
    lambda nn: nn.Hardswish(inplace=True),
    lambda nn: nn.Hardsigmoid(inplace=True),
    lambda nn: nn.SiLU(inplace=True),
    lambda nn: nn.ELU(inplace=True),
    lambda nn: nn.Softmax(),
])
def test_repr_matches_torch(build):
    assert repr(build(nn)) == repr(build(torch.nn))
