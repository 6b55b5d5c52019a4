"""mc.nn.init against torch.nn.init, and every layer's default
initialisation against torch's: the same distribution (a two-sample
Kolmogorov-Smirnov distance between minicnn's and torch's values), the
same bounds, and the moments the formula predicts."""
import math

import numpy
import pytest
import torch

import minicnn as mc
from minicnn import nn
from minicnn.nn import init


def ks_distance(a, b):
    """The largest gap between the empirical CDFs of samples a and b."""
    a, b = numpy.sort(numpy.ravel(a)), numpy.sort(numpy.ravel(b))
    points = numpy.concatenate([a, b])
    cdf_a = numpy.searchsorted(a, points, side="right") / a.size
    cdf_b = numpy.searchsorted(b, points, side="right") / b.size
    return float(numpy.abs(cdf_a - cdf_b).max())


def assert_same_distribution(mine, theirs):
    """mine and theirs (arrays of >= ~20,000 values) look drawn from one
    distribution: KS distance below 0.03 (the 99.9% critical value for
    20,000 values a side is about 0.02)."""
    mine = numpy.asarray(mine, dtype=numpy.float64)
    theirs = numpy.asarray(theirs, dtype=numpy.float64)
    d = ks_distance(mine, theirs)
    assert d < 0.03, f"KS distance {d:.4f}: minicnn mean {mine.mean():.4g} std {mine.std():.4g}, " \
                     f"torch mean {theirs.mean():.4g} std {theirs.std():.4g}"


@pytest.fixture(autouse=True)
def seeded():
    mc.manual_seed(0)
    torch.manual_seed(0)


@pytest.mark.parametrize("nonlinearity, param", [
    ("linear", None), ("conv2d", None), ("conv_transpose2d", None), ("sigmoid", None), ("tanh", None),
    ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", math.sqrt(5)), ("selu", None),
])
def test_calculate_gain(nonlinearity, param):
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(torch.nn.init.calculate_gain(nonlinearity, param))


def test_calculate_gain_errors():
    with pytest.raises(ValueError, match="unsupported nonlinearity 'swish'"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="negative_slope"):
        init.calculate_gain("leaky_relu", "steep")


@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 2, 2), (2, 6, 3, 1, 2)])
def test_fan_in_and_fan_out(shape):
    expected = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert init._calculate_fan_in_and_fan_out(mc.empty(*shape)) == expected


def test_fan_needs_two_dims():
    with pytest.raises(ValueError, match=r"fewer than 2 dimensions \(shape \(5,\)\)"):
        init._calculate_fan_in_and_fan_out(mc.empty(5))


SHAPE = (200, 50, 2, 2)  # 40,000 values; fan_in 200, fan_out 800

# id: (minicnn call, torch call) on a tensor of SHAPE
RANDOM_INITS = {
    "uniform": (lambda t: init.uniform_(t, -2.0, 3.0), lambda t: torch.nn.init.uniform_(t, -2.0, 3.0)),
    "normal": (lambda t: init.normal_(t, 1.0, 0.5), lambda t: torch.nn.init.normal_(t, 1.0, 0.5)),
    "trunc_normal": (lambda t: init.trunc_normal_(t, 0.1, 1.0, -1.0, 0.5),
                     lambda t: torch.nn.init.trunc_normal_(t, 0.1, 1.0, -1.0, 0.5)),
    "xavier_uniform": (lambda t: init.xavier_uniform_(t, gain=2.0),
                       lambda t: torch.nn.init.xavier_uniform_(t, gain=2.0)),
    "xavier_normal": (init.xavier_normal_, torch.nn.init.xavier_normal_),
    "kaiming_uniform": (init.kaiming_uniform_, torch.nn.init.kaiming_uniform_),
    "kaiming_uniform_sqrt5": (lambda t: init.kaiming_uniform_(t, a=math.sqrt(5)),
                              lambda t: torch.nn.init.kaiming_uniform_(t, a=math.sqrt(5))),
    "kaiming_uniform_fan_out_relu": (
        lambda t: init.kaiming_uniform_(t, mode="fan_out", nonlinearity="relu"),
        lambda t: torch.nn.init.kaiming_uniform_(t, mode="fan_out", nonlinearity="relu")),
    "kaiming_normal": (init.kaiming_normal_, torch.nn.init.kaiming_normal_),
    "kaiming_normal_fan_out_relu": (
        lambda t: init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu"),
        lambda t: torch.nn.init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu")),
}


@pytest.mark.parametrize("name", list(RANDOM_INITS))
def test_random_init_has_torchs_distribution(name):
    mine_fn, theirs_fn = RANDOM_INITS[name]
    t = mc.zeros(*SHAPE)
    assert mine_fn(t) is t  # in place, returns its argument
    theirs = theirs_fn(torch.zeros(SHAPE)).numpy()
    assert t.dtype == numpy.float32
    assert_same_distribution(t.numpy(), theirs)
    if "normal" not in name or name == "trunc_normal":  # bounded: the same support as torch's
        assert t.numpy().min() >= theirs.min() - 0.01 * theirs.std()
        assert t.numpy().max() <= theirs.max() + 0.01 * theirs.std()


def test_kaiming_and_xavier_moments():
    fan_in, fan_out = 200, 800
    t = init.kaiming_normal_(mc.zeros(*SHAPE), mode="fan_in", nonlinearity="relu")
    assert t.numpy().std() == pytest.approx(math.sqrt(2 / fan_in), rel=0.02)
    t = init.kaiming_uniform_(mc.zeros(*SHAPE), a=math.sqrt(5))
    bound = 1 / math.sqrt(fan_in)  # sqrt(3) * sqrt(2 / (1 + 5)) / sqrt(fan_in)
    assert numpy.abs(t.numpy()).max() <= bound and numpy.abs(t.numpy()).max() > 0.99 * bound
    t = init.xavier_uniform_(mc.zeros(*SHAPE))
    assert t.numpy().std() == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.02)


def test_constant_inits_and_dtypes():
    t = mc.zeros(3, 4, dtype=mc.float64)
    assert (init.constant_(t, 0.25).numpy() == 0.25).all() and t.dtype == numpy.float64
    assert (init.ones_(t).numpy() == 1).all()
    assert (init.zeros_(t).numpy() == 0).all()


def test_init_works_on_parameters_that_require_grad_and_is_not_recorded():
    p = nn.Parameter(mc.zeros(30, 20))
    init.kaiming_uniform_(p)
    assert p.grad_fn is None and p.requires_grad and p.numpy_copy().std() > 0


def test_seeding_makes_init_repeatable_and_generator_is_used():
    mc.manual_seed(5)
    a = nn.Linear(10, 10).weight.numpy_copy()
    mc.manual_seed(5)
    b = nn.Linear(10, 10).weight.numpy_copy()
    numpy.testing.assert_array_equal(a, b)
    g1, g2 = mc.random.generator(3), mc.random.generator(3)
    numpy.testing.assert_array_equal(init.normal_(mc.zeros(5), generator=g1).numpy(),
                                     init.normal_(mc.zeros(5), generator=g2).numpy())


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64, numpy.float16])
def test_init_draws_in_place_the_numbers_a_new_array_gets(dtype):
    """normal_ and uniform_ draw straight into a contiguous tensor (no
    temporary of its size): the numbers ``minicnn.random`` draws into a new
    array, scaled alike; a strided tensor (a view) gets the same numbers
    through a copy, written into its base."""
    fills = [(lambda t: init.normal_(t, 0.5, 2.0), lambda shape: mc.random.normal(shape, dtype, mean=0.5, std=2.0)),
             (lambda t: init.uniform_(t, -1.0, 3.0), lambda shape: mc.random.uniform(shape, dtype, low=-1.0, high=3.0))]
    for fill, draw in fills:
        mc.manual_seed(7)
        expected = draw((40, 30))
        assert expected.dtype == dtype and expected.std() > 0.5
        mc.manual_seed(7)
        contiguous = fill(mc.zeros(40, 30, dtype=dtype))
        numpy.testing.assert_array_equal(contiguous.numpy(), expected)
        base = numpy.zeros((40, 60), dtype)
        mc.manual_seed(7)
        fill(mc.from_numpy(base[:, ::2]))
        numpy.testing.assert_array_equal(base[:, ::2], expected)
        assert (base[:, 1::2] == 0).all()


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_init_of_a_big_tensor_allocates_no_array_of_its_size(dtype):
    import tracemalloc
    t = mc.zeros(1000, 1000, dtype=dtype)
    tracemalloc.start()
    try:
        for fill in (lambda: init.kaiming_normal_(t), lambda: init.xavier_uniform_(t)):
            tracemalloc.reset_peak()
            fill()
            assert tracemalloc.get_traced_memory()[1] < t.numpy().nbytes // 10
    finally:
        tracemalloc.stop()
    assert 0.02 < t.numpy().std() < 0.1


def test_init_errors():
    with pytest.raises(TypeError, match="must be floating point"):
        init.uniform_(mc.zeros(3, dtype=mc.int64))
    with pytest.raises(ValueError, match=r"mode must be 'fan_in' or 'fan_out', got 'fan_avg'"):
        init.kaiming_normal_(mc.zeros(3, 3), mode="fan_avg")
    with pytest.raises(ValueError, match=r"a \(1.0\) must be less than b \(0.0\)"):
        init.trunc_normal_(mc.zeros(3), a=1.0, b=0.0)


def test_zero_element_tensor_is_left_alone():
    assert init.kaiming_uniform_(mc.zeros(0, 3)).shape == (0, 3)
    layer = nn.Linear(0, 3)
    assert (layer.bias.numpy_copy() == 0).all()


# -- default initialisation of every layer with parameters ---------------------------
# id: (factory of nn -> layer); both layers' parameters are compared by name.
LAYER_DEFAULTS = {
    "linear": lambda nn: nn.Linear(400, 100),
    "lazy_linear": lambda nn: nn.LazyLinear(100),
    "conv2d": lambda nn: nn.Conv2d(32, 64, 3),
    "conv2d_groups": lambda nn: nn.Conv2d(32, 96, (3, 2), groups=4),
    "conv_transpose2d": lambda nn: nn.ConvTranspose2d(64, 96, 3, groups=2),
    "batchnorm2d": lambda nn: nn.BatchNorm2d(40),
    "layernorm": lambda nn: nn.LayerNorm((8, 5)),
    "groupnorm": lambda nn: nn.GroupNorm(4, 40),
}


@pytest.mark.parametrize("name", list(LAYER_DEFAULTS))
def test_default_initialisation_matches_torch(name):
    mine, theirs = LAYER_DEFAULTS[name](nn), LAYER_DEFAULTS[name](torch.nn)
    if name == "lazy_linear":
        mine(mc.zeros(2, 400))
        theirs(torch.zeros(2, 400))
    their_params = dict(theirs.named_parameters())
    for key, param in mine.named_parameters():
        values, expected = param.numpy_copy(), their_params[key].detach().numpy()
        assert values.shape == expected.shape and values.dtype == expected.dtype
        if expected.std() == 0:  # constant inits (norm layers): exactly equal
            numpy.testing.assert_array_equal(values, expected)
            continue
        # Bounds of the uniform distributions: same support as torch.
        bound = 1 / math.sqrt(init._calculate_fan_in_and_fan_out(their_params["weight"])[0])
        assert numpy.abs(values).max() <= bound
        assert numpy.abs(values).max() > 0.95 * bound
        if values.size >= 20000:
            assert_same_distribution(values, expected)
        else:  # a bias: compare the moments of U(-bound, bound)
            assert abs(values.mean()) < 4 * bound / math.sqrt(3 * values.size)
            assert values.std() == pytest.approx(bound / math.sqrt(3), rel=0.25)


def test_batchnorm_buffers_start_like_torch():
    mine, theirs = nn.BatchNorm1d(5), torch.nn.BatchNorm1d(5)
    for key, value in theirs.state_dict().items():
        assert mine.state_dict()[key].dtype == value.numpy().dtype
        numpy.testing.assert_array_equal(mine.state_dict()[key].numpy(), value.numpy())
